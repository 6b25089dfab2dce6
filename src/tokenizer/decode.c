/* decode.c — token ids back to text: the piece of every token, whole
 * sequences (hearth_detokenize) and the streaming detokenizer.
 *
 * Each token's piece is computed once at load, as llama.cpp's
 * token_to_piece does: SentencePiece turns U+2581 back into spaces and
 * "<0xXX>" tokens into their byte; byte-level BPE maps every code point of
 * the token back to the byte it stands for; control, unknown and
 * user-defined tokens are their text; unused and undefined tokens are empty.
 * A BPE code point outside the byte alphabet is kept as it is (llama.cpp
 * writes "[UNK_BYTE_0x…]" instead).
 *
 * Decoding does not apply llama.cpp's clean_up_tokenization_spaces (which
 * deletes the space in " ," and friends for some BPE vocabularies), so
 * decode(encode(text)) gives text back and the streaming and whole-sequence
 * decoders always agree.
 *
 * The streaming decoder holds back the bytes of a character that later
 * tokens finish (at most three), emits only whole characters and replaces
 * bytes that can never become UTF-8 by U+FFFD at once, so what it emits is
 * always valid UTF-8; hearth_detokenize hands the bytes back as they are.
 * It never allocates.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

/* The byte that BPE code point cp stands for, or -1 (inverse of GPT-2's
 * bytes_to_unicode: printable bytes stand for themselves, the other 68 are
 * U+0100..U+0143 in byte order). */
static int bpe_byte_of(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) {
        return (int)cp;
    }
    if (cp < 0x100 || cp > 0x143) return -1;
    uint32_t k = cp - 0x100;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        if (!printable && k-- == 0) return b;
    }
    return -1;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Writes the piece of token id to out (room for its text length); returns
 * its length.  No piece is longer than the token's text. */
static size_t make_piece(const hearth_tokenizer *tok, int32_t id, const int16_t *byte_of,
                         char *out) {
    size_t n;
    const char *s = tok_text(tok, id, &n);
    uint8_t attr = tok->attr[id];
    if (attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN | TOK_ATTR_USER_DEFINED)) {
        memcpy(out, s, n);
        return n;
    }
    if (tok->kind == TOK_KIND_SPM && (attr & TOK_ATTR_BYTE)) {
        int hi = n == 6 ? hex_value(s[3]) : -1, lo = n == 6 ? hex_value(s[4]) : -1;
        if (n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && hi >= 0 && lo >= 0) {
            out[0] = (char)(hi * 16 + lo);
            return 1;
        }
        memcpy(out, s, n); /* not of the "<0xXX>" form: its text, like a normal token */
        return n;
    }
    if (!(attr & TOK_ATTR_NORMAL)) return 0;
    size_t w = 0;
    if (tok->kind == TOK_KIND_SPM) {
        for (size_t i = 0; i < n; i++) {
            if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                out[w++] = ' ';
                i += 2;
            } else {
                out[w++] = s[i];
            }
        }
        return w;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_classify((const uint8_t *)s + i, n - i, &cp);
        if (k <= 0) { /* not UTF-8: the byte as it is */
            out[w++] = s[i++];
            continue;
        }
        int b = cp < 0x144 ? byte_of[cp] : -1;
        if (b >= 0) {
            out[w++] = (char)b;
        } else {
            memcpy(out + w, s + i, (size_t)k);
            w += (size_t)k;
        }
        i += (size_t)k;
    }
    return w;
}

hearth_status tok_build_pieces(hearth_tokenizer *tok, hearth_error *err) {
    int16_t byte_of[0x144];
    for (uint32_t cp = 0; cp < 0x144; cp++) byte_of[cp] = (int16_t)bpe_byte_of(cp);
    size_t total = tok->text_off[tok->n_vocab];
    tok->piece = malloc(total ? total : 1);
    tok->piece_off = malloc(((size_t)tok->n_vocab + 1) * sizeof *tok->piece_off);
    if (!tok->piece || !tok->piece_off) {
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the token pieces");
    }
    uint32_t off = 0;
    tok->max_piece_len = 0;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        tok->piece_off[id] = off;
        size_t n = make_piece(tok, id, byte_of, tok->piece + off);
        if (n > tok->max_piece_len) tok->max_piece_len = (uint32_t)n;
        off += (uint32_t)n;
    }
    tok->piece_off[tok->n_vocab] = off;
    return HEARTH_OK;
}

/* The text token id decodes to under flags (empty for hidden tokens). */
static const char *piece_of(const hearth_tokenizer *tok, hearth_token id, unsigned flags,
                            size_t *len) {
    if ((tok->attr[id] & TOK_ATTR_HIDDEN) && !(flags & HEARTH_DETOK_RENDER_SPECIAL)) {
        *len = 0;
        return tok->piece;
    }
    *len = tok->piece_off[id + 1] - tok->piece_off[id];
    return tok->piece + tok->piece_off[id];
}

/* Whether decoding under flags removes the space SentencePiece put before
 * the text (llama2.c and llama.cpp print "Once upon", not " Once upon"). */
static bool strips_leading_space(const hearth_tokenizer *tok, unsigned flags) {
    return tok->kind == TOK_KIND_SPM && tok->add_space_prefix &&
           !(flags & HEARTH_DETOK_KEEP_LEADING_SPACE);
}

hearth_status hearth_detokenize(const hearth_tokenizer *tok, const hearth_token *ids, size_t n,
                                unsigned flags, char *out, size_t cap, size_t *n_out,
                                hearth_error *err) {
    if (n_out) *n_out = 0;
    if (!tok || !n_out || (!ids && n) || (!out && cap)) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "hearth_detokenize: NULL argument");
    }
    bool strip = strips_leading_space(tok, flags);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        hearth_token id = ids[i];
        if (id < 0 || id >= tok->n_vocab) {
            return error_set(err, HEARTH_ERR_INVALID_ARG,
                             "token %zu is %d, outside the vocabulary of %d tokens", i, id,
                             tok->n_vocab);
        }
        size_t len;
        const char *p = piece_of(tok, id, flags, &len);
        if (len == 0) continue;
        /* The dummy prefix sits on the first token that shows any text, the
         * BOS before it (hidden) or not. */
        if (strip && p[0] == ' ') {
            p++;
            len--;
        }
        strip = false;
        if (len <= cap && total <= cap - len) memcpy(out + total, p, len);
        total += len;
    }
    *n_out = total;
    if (total > cap) {
        return error_set(err, HEARTH_ERR_BUFFER_TOO_SMALL,
                         "the text is %zu bytes but the buffer holds %zu", total, cap);
    }
    return HEARTH_OK;
}

/* ---------------------------------------------------------------- streaming */

void hearth_detok_reset(hearth_detok *d, unsigned flags) {
    if (!d) return;
    memset(d, 0, sizeof *d);
    d->flags = flags;
    d->started = false;
}

static const uint8_t replacement[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */

/* Appends bytes to out at *w if they all fit; false when they do not. */
static bool put(char *out, size_t cap, size_t *w, const uint8_t *bytes, size_t n) {
    if (n > cap - *w) return false;
    memcpy(out + *w, bytes, n);
    *w += n;
    return true;
}

size_t hearth_detok_push(hearth_detok *d, const hearth_tokenizer *tok, hearth_token id, char *out,
                         size_t cap) {
    if (!d || !tok || id < 0 || id >= tok->n_vocab || (!out && cap)) return 0;
    size_t len;
    const uint8_t *p = (const uint8_t *)piece_of(tok, id, d->flags, &len);
    if (len == 0) return 0;
    if (!d->started && strips_leading_space(tok, d->flags) && p[0] == ' ') {
        p++;
        len--;
    }
    d->started = true;
    /* The bytes to emit are the pending ones, then the piece. */
    uint8_t held[sizeof d->pending];
    size_t n_held = d->n_pending <= 3 ? d->n_pending : 0; /* more is never stored */
    memcpy(held, d->pending, n_held);
    d->n_pending = 0;
    size_t total = n_held + len, pos = 0, w = 0;
    while (pos < total) {
        uint8_t buf[4];
        size_t avail = total - pos < 4 ? total - pos : 4;
        for (size_t j = 0; j < avail; j++) {
            size_t at = pos + j;
            buf[j] = at < n_held ? held[at] : p[at - n_held];
        }
        uint32_t cp;
        int k = utf8_classify(buf, avail, &cp);
        if (k == 0) { /* the start of a character the next tokens finish */
            memcpy(d->pending, buf, avail);
            d->n_pending = (uint32_t)avail;
            break;
        }
        bool fits = k > 0 ? put(out, cap, &w, buf, (size_t)k) : put(out, cap, &w, replacement, 3);
        if (!fits) break; /* cut at a character boundary; the rest is dropped */
        pos += k > 0 ? (size_t)k : (size_t)-k;
    }
    return w;
}

size_t hearth_detok_flush(hearth_detok *d, char *out, size_t cap) {
    if (!d) return 0;
    size_t w = 0;
    if (d->n_pending > 0 && out) put(out, cap, &w, replacement, 3);
    d->n_pending = 0;
    return w;
}
