/* utf8.c — the UTF-8 rules the tokenizer needs.
 *
 * Two readers live here.  utf8_sanitize reproduces how llama.cpp decodes
 * text before pre-tokenizing it (lenient: it only checks continuation bits),
 * so that byte-level BPE sees the same code points llama.cpp sees; the
 * regexes then run on valid UTF-8.  utf8_classify is strict UTF-8 (no
 * overlongs, no surrogates, nothing above U+10FFFF) and serves the streaming
 * detokenizer, which must emit only whole, valid characters.
 */
#include "tokenizer/tok_internal.h"

size_t utf8_encode(uint32_t cp, uint8_t out[4]) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

int utf8_classify(const uint8_t *p, size_t n, uint32_t *cp) {
    uint8_t c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        v = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        v = c & 0x0Fu;
        if (c == 0xE0) lo = 0xA0; /* no overlongs */
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        v = c & 0x07u;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return -1; /* a continuation byte, C0, C1 or F5..FF */
    }
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return 0;
        uint8_t b = p[i];
        uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) return -i;
        v = (v << 6) | (b & 0x3Fu);
    }
    *cp = v;
    return need;
}

/* One code point as llama.cpp's unicode_cpt_from_utf8 reads it; returns
 * false (consuming one byte) where it would throw. */
static bool lenient_decode(const uint8_t *p, size_t n, size_t *used, uint32_t *cp) {
    uint8_t c = p[0];
    *used = 1;
    if (!(c & 0x80)) {
        *cp = c;
        return true;
    }
    if (!(c & 0x40)) return false;
    size_t need;
    uint32_t v;
    if (!(c & 0x20)) {
        need = 2;
        v = c & 0x1Fu;
    } else if (!(c & 0x10)) {
        need = 3;
        v = c & 0x0Fu;
    } else if (!(c & 0x08)) {
        need = 4;
        v = c & 0x07u;
    } else {
        return false;
    }
    if (need > n) return false;
    for (size_t i = 1; i < need; i++) {
        if ((p[i] & 0xC0) != 0x80) return false;
        v = (v << 6) | (p[i] & 0x3Fu);
    }
    *used = need;
    *cp = v;
    return true;
}

size_t utf8_sanitize(const char *text, size_t len, char *out) {
    const uint8_t *p = (const uint8_t *)text;
    uint8_t *o = (uint8_t *)out;
    size_t i = 0, w = 0;
    while (i < len) {
        if (p[i] < 0x80) { /* the common case */
            o[w++] = p[i++];
            continue;
        }
        size_t used;
        uint32_t cp;
        if (!lenient_decode(p + i, len - i, &used, &cp) || (cp >= 0xD800 && cp <= 0xDFFF) ||
            cp > 0x10FFFF) {
            cp = 0xFFFD;
        }
        i += used;
        w += utf8_encode(cp, o + w);
    }
    return w;
}
