/* test_tokenizer.c — tests of the tokenizer module.
 *
 * The golden vectors come from llama.cpp (shared/vocab: its vocab-only GGUFs
 * with 46 test strings and the ids llama.cpp gives them) and llama2.c
 * (shared/models/reference: encodings of the stories260K tok512 vocab).
 * Hugging Face tokenizer.json files stand in for the Qwen 2 and Llama 3
 * GGUFs that are not in shared/: the test turns them into GGUF images in
 * memory, as llama.cpp's converter would, and holds them to llama.cpp's
 * vectors for those vocabularies.  The rest builds tiny GGUF images in
 * memory: special tokens, streaming decode and malformed metadata.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "hearth.h"
#include "test.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---------------------------------------------------------------- helpers */

/* Test strings of a .inp file: each followed by "\n__ggml_vocab_test__\n". */
typedef struct vocab_tests {
    char *data;
    char *str[64];
    size_t len[64];
    int n;
} vocab_tests;

static bool read_inp(const char *path, vocab_tests *t) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t size;
    t->n = 0;
    t->data = test_read_file(path, &size);
    if (!t->data) return false;
    char *p = t->data, *end = t->data + size;
    while (t->n < 64) {
        char *s = memmem(p, (size_t)(end - p), sep, sizeof sep - 1);
        if (!s) break;
        t->str[t->n] = p;
        t->len[t->n] = (size_t)(s - p);
        t->n++;
        p = s + sizeof sep - 1;
    }
    return true;
}

/* Tokenizes s; returns the number of ids (or -1 on error, printing it). */
static long encode(const hearth_tokenizer *tok, const char *s, size_t len, unsigned flags,
                   hearth_token *out, size_t cap) {
    size_t n = 0;
    hearth_error err = {0};
    hearth_status st = hearth_tokenize(tok, s, len, flags, out, cap, &n, &err);
    if (st != HEARTH_OK) {
        test_fail(__FILE__, __LINE__, "hearth_tokenize: %s", err.msg);
        return -1;
    }
    return (long)n;
}

static void format_ids(char *buf, size_t cap, const int32_t *ids, size_t n) {
    size_t w = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && w + 16 < cap; i++) {
        w += (size_t)snprintf(buf + w, cap - w, " %d", ids[i]);
    }
}

static hearth_tokenizer *load_tok(const char *rel) {
    hearth_tokenizer *tok = NULL;
    hearth_error err = {0};
    if (hearth_tokenizer_load(test_shared(rel), &tok, &err) != HEARTH_OK) {
        test_fail(__FILE__, __LINE__, "loading %s: %s", rel, err.msg);
        return NULL;
    }
    return tok;
}

/* Runs the 46 llama.cpp strings of vocab `name` through tok: the ids must
 * be the .out line, and decoding them must give the string back. */
static void check_vectors(const char *name, const hearth_tokenizer *tok) {
    char path[256];
    vocab_tests t;
    snprintf(path, sizeof path, "vocab/ggml-vocab-%s.gguf.inp", name);
    if (!read_inp(test_shared(path), &t)) {
        test_fail(__FILE__, __LINE__, "cannot read %s", test_shared(path));
        return;
    }
    snprintf(path, sizeof path, "vocab/ggml-vocab-%s.gguf.out", name);
    char *outs = test_read_file(test_shared(path), NULL);
    if (!outs) {
        test_fail(__FILE__, __LINE__, "cannot read %s", test_shared(path));
        free(t.data);
        return;
    }
    int pass = 0, lines = 0;
    char *line = outs;
    static int32_t want[4096], got[4096];
    static char dec[16384], a[8192], b[8192];
    for (int i = 0; i < t.n && line; i++, lines++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        size_t nw = test_parse_ints(line, want, 4096);
        line = nl ? nl + 1 : NULL;
        long ng = encode(tok, t.str[i], t.len[i], 0, got, 4096);
        bool ok = ng >= 0 && (size_t)ng == nw && memcmp(want, got, nw * sizeof *got) == 0;
        if (!ok) {
            format_ids(a, sizeof a, want, nw);
            format_ids(b, sizeof b, got, ng < 0 ? 0 : (size_t)ng);
            test_fail(__FILE__, __LINE__, "%s string %d \"%.*s\":\n    expected%s\n    got     %s",
                      name, i, (int)t.len[i], t.str[i], a, b);
            continue;
        }
        /* Decoding gives the string back (the dummy-prefix space removed). */
        size_t nd = 0;
        hearth_error err = {0};
        hearth_status st = hearth_detokenize(tok, got, (size_t)ng, 0, dec, sizeof dec, &nd, &err);
        if (st != HEARTH_OK || nd != t.len[i] || memcmp(dec, t.str[i], nd) != 0) {
            test_fail(__FILE__, __LINE__, "%s string %d \"%.*s\" decodes to \"%.*s\" (%s)", name, i,
                      (int)t.len[i], t.str[i], (int)nd, dec, err.msg);
            continue;
        }
        pass++;
    }
    CHECKF(lines == 46 && t.n == 46, "%s: %d strings, %d expected lines", name, t.n, lines);
    printf("  %s: %d/%d vectors pass\n", name, pass, t.n);
    free(outs);
    free(t.data);
}

static void check_ids(const hearth_tokenizer *tok, const char *text, unsigned flags,
                      const int32_t *want, size_t nw, int line) {
    hearth_token got[64];
    long n = encode(tok, text, strlen(text), flags, got, 64);
    if (n != (long)nw || memcmp(got, want, nw * sizeof *got) != 0) {
        char a[512], b[512];
        format_ids(a, sizeof a, want, nw);
        format_ids(b, sizeof b, got, n < 0 ? 0 : (size_t)n);
        test_fail(__FILE__, line, "\"%s\" (flags %u):\n    expected%s\n    got     %s", text, flags,
                  a, b);
    }
}
#define CHECK_IDS(tok, text, flags, ...)                                                           \
    do {                                                                                           \
        static const int32_t want_[] = {__VA_ARGS__};                                              \
        check_ids(tok, text, flags, want_, sizeof want_ / sizeof want_[0], __LINE__);              \
    } while (0)

/* Where llama.cpp's regex engine differs from PCRE2's defaults (its own
 * whitespace set, code points it hides from literal ranges, falcon's
 * backtick, case-insensitive contractions): ids from llama.cpp c392e509's
 * llama_tokenize (parse_special off) on these strings. */
typedef struct edge_case {
    const char *vocab, *text;
    int32_t ids[24];
    size_t n;
} edge_case;

static const edge_case edge_cases[] = {
    {"deepseek-coder",
     "\344\270\255\343\200\200\346\226\207 a\342\200\203b\342\200\250c",
     {759, 343, 209, 1919, 245, 350, 212, 65, 350, 101, 66},
     11},
    {"deepseek-llm",
     "\xef\xbc\x8c\xe3\x80\x80\xe3\x80\x82 x\xe3\x80\x80\xe3\x80\x80y",
     {19304, 88946, 398, 1376, 88946, 88946, 88},
     7},
    {"gpt-2",
     "a\341\240\216b  \302\240\302\240c \342\200\203d\302\205e",
     {64, 157, 254, 236, 65, 220, 5624, 1849, 66, 220, 447, 225, 67, 126, 227, 68},
     16},
    {"falcon", "(`x`) ~~", {21535, 99, 35192, 204, 6767}, 5},
    {"mpt", "a   \tb\t\tc", {66, 50275, 186, 67, 186, 186, 68}, 7},
    {"deepseek-llm", "\xe1\x9a\x80    \xe3\x80\x80\xc2\xbd", {155, 95300, 251, 88946, 19109}, 5},
    {"qwen2", "x\xc2\x85\xe1\xa0\x8e;q", {87, 126, 227, 123970, 236, 26, 80}, 7},
    {"qwen2",
     "I'S it'LL \xc5\xbf 12345 \r\n\r\n x",
     {40, 13272, 432, 6, 4086, 25917, 123, 220, 16, 17, 18, 19, 20, 23341, 856},
     15},
    {"llama-bpe",
     "I'S it'LL \xc5\xbf 12345 \r\n\r\n x",
     {40, 13575, 433, 6, 4178, 27006, 123, 220, 4513, 1774, 24226, 865},
     12},
};

static void check_edges(const char *vocab, const hearth_tokenizer *tok) {
    for (size_t i = 0; i < sizeof edge_cases / sizeof edge_cases[0]; i++) {
        const edge_case *c = &edge_cases[i];
        if (strcmp(c->vocab, vocab) == 0) check_ids(tok, c->text, 0, c->ids, c->n, __LINE__);
    }
}

static void check_vocab_file(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    double t0 = now_ms();
    hearth_tokenizer *tok = load_tok(rel);
    if (!tok) return;
    double t1 = now_ms();
    check_vectors(name, tok);
    check_edges(name, tok);
    printf("  %s: load %.1f ms, %d tokens\n", name, t1 - t0, hearth_tokenizer_n_vocab(tok));
    hearth_tokenizer_free(tok);
}

/* ---------------------------------------------------------------- GGUF images */

/* A GGUF v3 image with metadata only, built in memory. */
typedef struct gw {
    uint8_t *p;
    size_t n, cap;
    uint64_t n_kv;
} gw;

static void gw_raw(gw *w, const void *d, size_t n) {
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->n + n) cap *= 2;
        uint8_t *p = realloc(w->p, cap);
        if (!p) abort(); /* the test itself is out of memory */
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->n, d, n);
    w->n += n;
}

static void gw_u32(gw *w, uint32_t v) {
    gw_raw(w, &v, 4);
} /* hosts are little-endian */
static void gw_u64(gw *w, uint64_t v) {
    gw_raw(w, &v, 8);
}
static void gw_string(gw *w, const char *s, size_t n) {
    gw_u64(w, n);
    gw_raw(w, s, n);
}
static void gw_key(gw *w, const char *key, uint32_t type) {
    gw_string(w, key, strlen(key));
    gw_u32(w, type);
    w->n_kv++;
}
static void kv_str(gw *w, const char *key, const char *v) {
    gw_key(w, key, 8);
    gw_string(w, v, strlen(v));
}
static void kv_u32(gw *w, const char *key, uint32_t v) {
    gw_key(w, key, 4);
    gw_u32(w, v);
}
static void kv_i32(gw *w, const char *key, int32_t v) {
    gw_key(w, key, 5);
    gw_raw(w, &v, 4);
}
static void kv_bool(gw *w, const char *key, bool v) {
    uint8_t b = v;
    gw_key(w, key, 7);
    gw_raw(w, &b, 1);
}
/* lens NULL: NUL-terminated strings. */
static void kv_strs(gw *w, const char *key, const char *const *v, const size_t *lens, size_t n) {
    gw_key(w, key, 9);
    gw_u32(w, 8);
    gw_u64(w, n);
    for (size_t i = 0; i < n; i++) gw_string(w, v[i], lens ? lens[i] : strlen(v[i]));
}
static void kv_f32s(gw *w, const char *key, const float *v, size_t n) {
    gw_key(w, key, 9);
    gw_u32(w, 6);
    gw_u64(w, n);
    gw_raw(w, v, n * 4);
}
static void kv_i32s(gw *w, const char *key, const int32_t *v, size_t n) {
    gw_key(w, key, 9);
    gw_u32(w, 5);
    gw_u64(w, n);
    gw_raw(w, v, n * 4);
}

/* Header + metadata; no tensors.  Frees the builder; caller frees the image. */
static uint8_t *gw_finish(gw *w, size_t *size) {
    gw out = {0};
    gw_raw(&out, "GGUF", 4);
    gw_u32(&out, 3);
    gw_u64(&out, 0);
    gw_u64(&out, w->n_kv);
    gw_raw(&out, w->p, w->n);
    free(w->p);
    *size = out.n;
    return out.p;
}

/* Builds a tokenizer from the image; the image is freed before returning,
 * so the tokenizer must not point into it. */
static hearth_status tok_from_image(gw *w, hearth_tokenizer **tok, hearth_error *err) {
    size_t size;
    uint8_t *img = gw_finish(w, &size);
    gguf_file *f = NULL;
    *tok = NULL;
    hearth_status st = gguf_open_memory(img, size, &f, err);
    if (st == HEARTH_OK) st = tokenizer_create(f, tok, err);
    gguf_close(f);
    free(img);
    return st;
}

/* ---------------------------------------------------------------- a tiny JSON reader */

/* Enough JSON for tokenizer.json and the llama2.c reference file: strings
 * are decoded into an arena as large as the document (decoding never grows
 * a string), so they stay put while the document is read. */
typedef struct json {
    const char *p, *end;
    char *arena;
    size_t arena_n;
    bool bad;
} json;

static void j_ws(json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) {
        j->p++;
    }
}
static bool j_eat(json *j, char c) {
    j_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}
static unsigned j_hex4(json *j) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = j->p < j->end ? *j->p++ : '0';
        v = v * 16 + (unsigned)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
    }
    return v;
}
static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}
/* Decodes a string to the end of the arena; returns where it starts. */
static char *j_str(json *j, size_t *len) {
    char *o = j->arena + j->arena_n;
    size_t n = 0;
    if (!j_eat(j, '"')) {
        j->bad = true;
        *len = 0;
        return o;
    }
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if (c != '\\' || j->p >= j->end) {
            o[n++] = c;
            continue;
        }
        c = *j->p++;
        switch (c) {
        case 'n': o[n++] = '\n'; break;
        case 't': o[n++] = '\t'; break;
        case 'r': o[n++] = '\r'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'u': {
            unsigned cp = j_hex4(j);
            if (cp >= 0xD800 && cp < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' &&
                j->p[1] == 'u') {
                j->p += 2;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (j_hex4(j) - 0xDC00);
            }
            n += put_utf8(o + n, cp);
            break;
        }
        default: o[n++] = c; break; /* \" \\ \/ */
        }
    }
    if (j->p < j->end) j->p++;
    j->arena_n += n;
    *len = n;
    return o;
}
static long j_int(json *j) {
    j_ws(j);
    char *end;
    long v = strtol(j->p, &end, 10);
    if (end == j->p) j->bad = true;
    j->p = end;
    return v;
}
static void j_skip(json *j) {
    j_ws(j);
    if (j->p >= j->end) {
        j->bad = true;
        return;
    }
    char c = *j->p;
    if (c == '"') {
        size_t n;
        size_t mark = j->arena_n;
        j_str(j, &n);
        j->arena_n = mark;
    } else if (c == '{' || c == '[') {
        j->p++;
        char close = c == '{' ? '}' : ']';
        if (j_eat(j, close)) return;
        do {
            if (c == '{') {
                j_skip(j);
                if (!j_eat(j, ':')) j->bad = true;
            }
            j_skip(j);
        } while (!j->bad && j_eat(j, ','));
        if (!j_eat(j, close)) j->bad = true;
    } else {
        while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']') j->p++;
    }
}
/* Reads an object key (and its colon); false at the end of the object. */
static bool j_key(json *j, bool first, char *key, size_t cap) {
    if (j_eat(j, '}')) return false;
    if (!first && !j_eat(j, ',')) {
        j->bad = true;
        return false;
    }
    size_t mark = j->arena_n, n;
    const char *k = j_str(j, &n);
    snprintf(key, cap, "%.*s", (int)n, k);
    j->arena_n = mark;
    if (!j_eat(j, ':')) j->bad = true;
    return !j->bad;
}
/* Steps to the next array element; false at the end of the array. */
static bool j_next(json *j, bool first) {
    if (j_eat(j, ']')) return false;
    if (!first && !j_eat(j, ',')) j->bad = true;
    return !j->bad;
}

/* ---------------------------------------------------------------- tokenizer.json */

#define HF_MAX_VOCAB  300000
#define HF_MAX_MERGES 400000

/* Turns a Hugging Face byte-level BPE tokenizer.json into the GGUF metadata
 * llama.cpp's converter writes: tokens by id, merges as "left right",
 * added tokens as control tokens when special (or looking like "<|…|>"),
 * else user-defined. */
static hearth_status tok_from_hf_json(const char *path, const char *pre, hearth_tokenizer **tok,
                                      hearth_error *err) {
    size_t size;
    char *doc = test_read_file(path, &size);
    if (!doc) return error_set(err, HEARTH_ERR_IO, "cannot read %s", path);
    json j = {doc, doc + size, malloc(size + 1), 0, false};
    const char **text = calloc(HF_MAX_VOCAB, sizeof *text);
    size_t *tlen = calloc(HF_MAX_VOCAB, sizeof *tlen);
    int32_t *type = calloc(HF_MAX_VOCAB, sizeof *type);
    const char **merge = malloc(HF_MAX_MERGES * sizeof *merge);
    size_t *mlen = malloc(HF_MAX_MERGES * sizeof *mlen);
    long n_vocab = 0, n_merges = 0;
    char key[64];
    if (!j.arena || !text || !tlen || !type || !merge || !mlen) abort();
    if (!j_eat(&j, '{')) j.bad = true;
    for (bool first = true; !j.bad && j_key(&j, first, key, sizeof key); first = false) {
        if (strcmp(key, "added_tokens") == 0 && j_eat(&j, '[')) {
            for (bool f2 = true; j_next(&j, f2); f2 = false) {
                long id = -1;
                const char *content = NULL;
                size_t clen = 0;
                bool special = false;
                if (!j_eat(&j, '{')) j.bad = true;
                for (bool f3 = true; j_key(&j, f3, key, sizeof key); f3 = false) {
                    if (strcmp(key, "id") == 0) {
                        id = j_int(&j);
                    } else if (strcmp(key, "content") == 0) {
                        content = j_str(&j, &clen);
                    } else if (strcmp(key, "special") == 0) {
                        j_ws(&j);
                        special = *j.p == 't';
                        j_skip(&j);
                    } else {
                        j_skip(&j);
                    }
                }
                if (id < 0 || id >= HF_MAX_VOCAB || !content) {
                    j.bad = true;
                    break;
                }
                bool looks = clen >= 4 && memcmp(content, "<|", 2) == 0 &&
                             memcmp(content + clen - 2, "|>", 2) == 0;
                text[id] = content;
                tlen[id] = clen;
                type[id] = special || looks ? 3 : 4;
                if (id + 1 > n_vocab) n_vocab = id + 1;
            }
        } else if (strcmp(key, "model") == 0 && j_eat(&j, '{')) {
            for (bool f2 = true; j_key(&j, f2, key, sizeof key); f2 = false) {
                if (strcmp(key, "vocab") == 0 && j_eat(&j, '{')) {
                    for (bool f3 = true;; f3 = false) {
                        if (j_eat(&j, '}')) break;
                        if (!f3 && !j_eat(&j, ',')) j.bad = true;
                        size_t n;
                        const char *t = j_str(&j, &n);
                        if (!j_eat(&j, ':')) j.bad = true;
                        long id = j_int(&j);
                        if (j.bad || id < 0 || id >= HF_MAX_VOCAB) {
                            j.bad = true;
                            break;
                        }
                        if (!text[id]) {
                            text[id] = t;
                            tlen[id] = n;
                            type[id] = 1;
                        }
                        if (id + 1 > n_vocab) n_vocab = id + 1;
                    }
                } else if (strcmp(key, "merges") == 0 && j_eat(&j, '[')) {
                    for (bool f3 = true; j_next(&j, f3) && n_merges < HF_MAX_MERGES; f3 = false) {
                        size_t a, b;
                        char *m;
                        if (j_eat(&j, '[')) { /* ["left", "right"] */
                            m = j_str(&j, &a);
                            j.arena[j.arena_n++] = ' ';
                            if (!j_eat(&j, ',')) j.bad = true;
                            j_str(&j, &b);
                            if (!j_eat(&j, ']')) j.bad = true;
                            a += 1 + b;
                        } else { /* "left right" */
                            m = j_str(&j, &a);
                        }
                        merge[n_merges] = m;
                        mlen[n_merges++] = a;
                    }
                } else {
                    j_skip(&j);
                }
            }
        } else {
            j_skip(&j);
        }
    }
    hearth_status st = HEARTH_OK;
    for (long i = 0; i < n_vocab && !j.bad; i++) {
        if (!text[i]) j.bad = true; /* no holes in these vocabularies */
    }
    if (j.bad || n_vocab == 0) {
        st = error_set(err, HEARTH_ERR_IO, "cannot parse %s", path);
    } else {
        gw w = {0};
        kv_str(&w, "tokenizer.ggml.model", "gpt2");
        kv_str(&w, "tokenizer.ggml.pre", pre);
        kv_strs(&w, "tokenizer.ggml.tokens", text, tlen, (size_t)n_vocab);
        kv_i32s(&w, "tokenizer.ggml.token_type", type, (size_t)n_vocab);
        kv_strs(&w, "tokenizer.ggml.merges", merge, mlen, (size_t)n_merges);
        st = tok_from_image(&w, tok, err);
    }
    free(doc);
    free(j.arena);
    free(text);
    free(tlen);
    free(type);
    free(merge);
    free(mlen);
    return st;
}

/* ---------------------------------------------------------------- golden vectors */

TEST(vectors_llama_spm) {
    check_vocab_file("llama-spm");
}
TEST(vectors_phi_3) {
    check_vocab_file("phi-3");
}
TEST(vectors_gpt_2) {
    check_vocab_file("gpt-2");
}
TEST(vectors_deepseek_coder) {
    check_vocab_file("deepseek-coder");
}
TEST(vectors_deepseek_llm) {
    check_vocab_file("deepseek-llm");
}
TEST(vectors_falcon) {
    check_vocab_file("falcon");
}
TEST(vectors_starcoder) {
    check_vocab_file("starcoder");
}
TEST(vectors_refact) {
    check_vocab_file("refact");
}
TEST(vectors_mpt) {
    check_vocab_file("mpt");
}

/* Qwen 2 and Llama 3: their GGUFs are not in shared/, their tokenizer.json
 * files are (same regular tokens and merges). */
static void check_hf(const char *json_rel, const char *pre, const char *vectors) {
    hearth_tokenizer *tok = NULL;
    hearth_error err = {0};
    double t0 = now_ms();
    hearth_status st = tok_from_hf_json(test_shared(json_rel), pre, &tok, &err);
    CHECKF(st == HEARTH_OK, "%s: %s", json_rel, err.msg);
    if (!tok) return;
    printf("  %s: parse + load %.1f ms, %d tokens\n", pre, now_ms() - t0,
           hearth_tokenizer_n_vocab(tok));
    check_vectors(vectors, tok);
    check_edges(vectors, tok);
    hearth_tokenizer_free(tok);
}

TEST(vectors_qwen2) {
    check_hf("vocab/qwen3-tokenizer.json", "qwen2", "qwen2");
}
TEST(vectors_llama_bpe) {
    check_hf("vocab/llama3-tokenizer.json", "llama-bpe", "llama-bpe");
}

/* llama2.c's encode() on the stories260K vocabulary (BOS added). */
TEST(llama2c_tok512) {
    hearth_tokenizer *tok = load_tok("models/stories260K.gguf");
    size_t size;
    char *doc = test_read_file(test_shared("models/reference/tok512.llama2c-encode.json"), &size);
    CHECK(doc != NULL);
    if (!tok || !doc) {
        hearth_tokenizer_free(tok);
        free(doc);
        return;
    }
    json j = {doc, doc + size, malloc(size + 1), 0, false};
    REQUIRE(j.arena != NULL);
    int n_cases = 0;
    char key[64];
    if (!j_eat(&j, '[')) j.bad = true;
    for (bool first = true; !j.bad && j_next(&j, first); first = false) {
        const char *text = NULL;
        size_t tl = 0, nw = 0;
        int32_t want[512];
        if (!j_eat(&j, '{')) j.bad = true;
        for (bool f2 = true; j_key(&j, f2, key, sizeof key); f2 = false) {
            if (strcmp(key, "text") == 0) {
                text = j_str(&j, &tl);
            } else if (strcmp(key, "ids_with_bos") == 0 && j_eat(&j, '[')) {
                for (bool f3 = true; j_next(&j, f3) && nw < 512; f3 = false) {
                    want[nw++] = (int32_t)j_int(&j);
                }
            } else {
                j_skip(&j);
            }
        }
        if (!text) break;
        hearth_token got[512];
        long ng = encode(tok, text, tl, HEARTH_TOKENIZE_ADD_SPECIAL, got, 512);
        if (ng != (long)nw || memcmp(got, want, nw * sizeof *got) != 0) {
            char a[4096], b[4096];
            format_ids(a, sizeof a, want, nw);
            format_ids(b, sizeof b, got, ng < 0 ? 0 : (size_t)ng);
            test_fail(__FILE__, __LINE__, "\"%.*s\":\n    expected%s\n    got     %s", (int)tl,
                      text, a, b);
        }
        /* And back: BOS hidden, the dummy-prefix space removed. */
        char dec[1024];
        size_t nd = 0;
        hearth_error err = {0};
        CHECK(hearth_detokenize(tok, want, nw, 0, dec, sizeof dec, &nd, &err) == HEARTH_OK);
        CHECKF(nd == tl && memcmp(dec, text, tl) == 0, "\"%.*s\" decodes to \"%.*s\"", (int)tl,
               text, (int)nd, dec);
        n_cases++;
    }
    CHECKF(!j.bad && n_cases == 13, "read %d cases from the JSON (parse error: %d)", n_cases,
           j.bad);
    free(j.arena);
    free(doc);
    hearth_tokenizer_free(tok);
}

/* ---------------------------------------------------------------- decoding */

/* Strict UTF-8 check of a whole buffer. */
static bool valid_utf8(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t need = c < 0x80                 ? 1
                      : c >= 0xC2 && c <= 0xDF ? 2
                      : c >= 0xE0 && c <= 0xEF ? 3
                      : c >= 0xF0 && c <= 0xF4 ? 4
                                               : 0;
        if (!need || i + need > n) return false;
        for (size_t k = 1; k < need; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
        }
        if (need == 3 && ((c == 0xE0 && p[i + 1] < 0xA0) || (c == 0xED && p[i + 1] > 0x9F))) {
            return false;
        }
        if (need == 4 && ((c == 0xF0 && p[i + 1] < 0x90) || (c == 0xF4 && p[i + 1] > 0x8F))) {
            return false;
        }
        i += need;
    }
    return true;
}

/* Streams ids one at a time: every push must be whole characters, and the
 * whole stream must equal hearth_detokenize's text. */
static void check_stream(const hearth_tokenizer *tok, const hearth_token *ids, size_t n,
                         unsigned flags, const char *want, size_t want_len) {
    hearth_detok d;
    hearth_detok_reset(&d, flags);
    char all[4096], piece[256];
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = hearth_detok_push(&d, tok, ids[i], piece, sizeof piece);
        CHECKF(valid_utf8(piece, k), "push of id %d (#%zu) emitted a partial character", ids[i], i);
        if (total + k <= sizeof all) memcpy(all + total, piece, k);
        total += k;
    }
    size_t k = hearth_detok_flush(&d, piece, sizeof piece);
    CHECKF(k == 0, "flush emitted %zu bytes after a complete text", k);
    CHECKF(total == want_len && memcmp(all, want, want_len) == 0,
           "stream gave \"%.*s\", expected \"%.*s\"", (int)total, all, (int)want_len, want);
}

TEST(stream_utf8) {
    static const char *const texts[] = {"\xc3\xa1", "\xf0\x9f\xa4\x97", "\xe5\xaa\xbd",
                                        "caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\xa6\x99!"};
    static const char *const vocabs[] = {"models/stories260K.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                                         "vocab/ggml-vocab-llama-spm.gguf"};
    for (size_t v = 0; v < 3; v++) {
        hearth_tokenizer *tok = load_tok(vocabs[v]);
        if (!tok) continue;
        for (size_t t = 0; t < 4; t++) {
            hearth_token ids[64];
            long n = encode(tok, texts[t], strlen(texts[t]), HEARTH_TOKENIZE_ADD_SPECIAL, ids, 64);
            if (n < 0) continue;
            check_stream(tok, ids, (size_t)n, 0, texts[t], strlen(texts[t]));
        }
        hearth_tokenizer_free(tok);
    }
    /* stories260K has no token for "á": it is two byte tokens, and the
     * first one alone must not print anything. */
    hearth_tokenizer *tok = load_tok("models/stories260K.gguf");
    if (!tok) return;
    hearth_token ids[8];
    long n = encode(tok, "\xc3\xa1", 2, 0, ids, 8);
    REQUIRE(n == 3 && ids[1] == 198 && ids[2] == 164); /* "▁", <0xC3>, <0xA1> */
    hearth_detok d;
    hearth_detok_reset(&d, HEARTH_DETOK_KEEP_LEADING_SPACE);
    char out[64];
    CHECK(hearth_detok_push(&d, tok, ids[0], out, sizeof out) == 1 && out[0] == ' ');
    CHECK(hearth_detok_push(&d, tok, 198, out, sizeof out) == 0);
    CHECK(hearth_detok_push(&d, tok, 164, out, sizeof out) == 2 && memcmp(out, "\xc3\xa1", 2) == 0);
    /* Invalid sequences become U+FFFD: a lead byte followed by ASCII ... */
    hearth_detok_reset(&d, 0);
    CHECK(hearth_detok_push(&d, tok, 198, out, sizeof out) == 0);
    hearth_token a_byte = 65 + 3; /* <0x41> "A" */
    size_t k = hearth_detok_push(&d, tok, a_byte, out, sizeof out);
    CHECKF(k == 4 && memcmp(out, "\357\277\275A", 4) == 0, "got %zu bytes", k);
    /* ... a lone continuation byte, and a character cut off at the end. */
    k = hearth_detok_push(&d, tok, 0xA1 + 3, out, sizeof out);
    CHECK(k == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0);
    CHECK(hearth_detok_push(&d, tok, 0xE5 + 3, out, sizeof out) == 0);
    CHECK(hearth_detok_push(&d, tok, 0xAA + 3, out, sizeof out) == 0);
    k = hearth_detok_flush(&d, out, sizeof out);
    CHECK(k == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0);
    CHECK(hearth_detok_flush(&d, out, sizeof out) == 0);
    /* An out-of-range id writes nothing. */
    CHECK(hearth_detok_push(&d, tok, 512, out, sizeof out) == 0);
    CHECK(hearth_detok_push(&d, tok, -1, out, sizeof out) == 0);
    hearth_tokenizer_free(tok);
}

/* A piece longer than the buffer is cut, never inside a character. */
TEST(stream_cut) {
    hearth_tokenizer *tok = load_tok("vocab/ggml-vocab-gpt-2.gguf");
    if (!tok) return;
    const char *text = "\xe4\xbd\xa0\xe5\xa5\xbd"; /* 你好 */
    hearth_token ids[16];
    long n = encode(tok, text, strlen(text), 0, ids, 16);
    REQUIRE(n > 0);
    hearth_detok d;
    hearth_detok_reset(&d, 0);
    char out[4];
    size_t total = 0;
    for (long i = 0; i < n; i++) {
        size_t k = hearth_detok_push(&d, tok, ids[i], out, 4);
        CHECK(k <= 4 && valid_utf8(out, k));
        total += k;
    }
    CHECK(total == 3 || total == 6); /* the second character may not fit */
    hearth_tokenizer_free(tok);
}

/* Stream and whole-sequence decoding agree on all 46 strings. */
TEST(stream_matches_detokenize) {
    static const char *const vocabs[] = {"llama-spm", "gpt-2", "deepseek-llm", "mpt"};
    vocab_tests t;
    REQUIRE(read_inp(test_shared("vocab/ggml-vocab-gpt-2.gguf.inp"), &t));
    for (size_t v = 0; v < 4; v++) {
        char rel[128];
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", vocabs[v]);
        hearth_tokenizer *tok = load_tok(rel);
        if (!tok) continue;
        for (int i = 0; i < t.n; i++) {
            static hearth_token ids[4096];
            long n = encode(tok, t.str[i], t.len[i], HEARTH_TOKENIZE_ADD_SPECIAL, ids, 4096);
            if (n < 0) continue;
            check_stream(tok, ids, (size_t)n, 0, t.str[i], t.len[i]);
        }
        hearth_tokenizer_free(tok);
    }
    free(t.data);
}

/* SentencePiece's dummy prefix: removed after BOS unless asked to keep it;
 * BOS itself only shows with RENDER_SPECIAL. */
TEST(detok_leading_space) {
    hearth_tokenizer *tok = load_tok("models/stories260K.gguf");
    if (!tok) return;
    const hearth_token ids[] = {1, 403, 407, 261, 378}; /* BOS "Once upon a time" */
    char out[128];
    size_t n = 0;
    hearth_error err = {0};
    CHECK(hearth_detokenize(tok, ids, 5, 0, out, sizeof out, &n, &err) == HEARTH_OK);
    CHECKF(n == 16 && memcmp(out, "Once upon a time", 16) == 0, "got \"%.*s\"", (int)n, out);
    CHECK(hearth_detokenize(tok, ids + 1, 4, 0, out, sizeof out, &n, &err) == HEARTH_OK);
    CHECKF(n == 16 && memcmp(out, "Once upon a time", 16) == 0, "got \"%.*s\"", (int)n, out);
    CHECK(hearth_detokenize(tok, ids, 5, HEARTH_DETOK_KEEP_LEADING_SPACE, out, sizeof out, &n,
                            &err) == HEARTH_OK);
    CHECKF(n == 17 && memcmp(out, " Once upon a time", 17) == 0, "got \"%.*s\"", (int)n, out);
    CHECK(hearth_detokenize(tok, ids, 5, HEARTH_DETOK_RENDER_SPECIAL, out, sizeof out, &n, &err) ==
          HEARTH_OK);
    CHECKF(n == 20 && memcmp(out, "<s> Once upon a time", 20) == 0, "got \"%.*s\"", (int)n, out);
    /* The streaming decoder does the same. */
    hearth_detok d;
    hearth_detok_reset(&d, 0);
    size_t total = 0;
    for (int i = 0; i < 5; i++) total += hearth_detok_push(&d, tok, ids[i], out + total, 32);
    CHECKF(total == 16 && memcmp(out, "Once upon a time", 16) == 0, "got \"%.*s\"", (int)total,
           out);
    /* Too small a buffer: the size needed is reported. */
    CHECK(hearth_detokenize(tok, ids, 5, 0, out, 10, &n, &err) == HEARTH_ERR_BUFFER_TOO_SMALL);
    CHECK(n == 16);
    CHECK(hearth_detokenize(tok, ids, 5, 0, NULL, 0, &n, &err) == HEARTH_ERR_BUFFER_TOO_SMALL);
    CHECK(n == 16);
    /* Ids outside the vocabulary are an error. */
    const hearth_token bad[] = {403, 512};
    CHECK(hearth_detokenize(tok, bad, 2, 0, out, sizeof out, &n, &err) == HEARTH_ERR_INVALID_ARG);
    CHECKF(strstr(err.msg, "512") != NULL, "message: %s", err.msg);
    hearth_tokenizer_free(tok);
}

/* ---------------------------------------------------------------- special tokens */

/* A tiny SentencePiece vocabulary with special tokens of every kind and no
 * byte tokens (so unknown characters become <unk>). */
static hearth_status tiny_spm(hearth_tokenizer **tok, hearth_error *err) {
    static const char *const text[] = {"<unk>", "<s>",    "</s>",          "\xe2\x96\x81",
                                       "a",     "b",      "\342\226\201a", "<tool>",
                                       "<x>",   "<x><y>", "<y>",           "<|im_end|>"};
    static const float score[] = {0, 0, 0, -1, -2, -2, -1.5f, 0, 0, 0, 0, 0};
    static const int32_t type[] = {2, 3, 3, 1, 1, 1, 1, 4, 3, 3, 3, 4};
    gw w = {0};
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_strs(&w, "tokenizer.ggml.tokens", text, NULL, 12);
    kv_f32s(&w, "tokenizer.ggml.scores", score, 12);
    kv_i32s(&w, "tokenizer.ggml.token_type", type, 12);
    kv_u32(&w, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(&w, "tokenizer.ggml.eos_token_id", 2);
    kv_u32(&w, "tokenizer.ggml.padding_token_id", 0xFFFFFFFFu); /* "none", as stories260K has */
    return tok_from_image(&w, tok, err);
}

TEST(special_tokens_tiny) {
    hearth_tokenizer *tok = NULL;
    hearth_error err = {0};
    REQUIRE(tiny_spm(&tok, &err) == HEARTH_OK);
    const unsigned PS = HEARTH_TOKENIZE_PARSE_SPECIAL;
    /* User-defined tokens are cut out even without PARSE_SPECIAL; the text
     * after a special token gets its own dummy-prefix space (llama.cpp). */
    CHECK_IDS(tok, "a<tool>b", 0, 6, 7, 3, 5);
    /* Control tokens only with PARSE_SPECIAL; without it they are text
     * (here: seven characters the vocabulary lacks, so seven <unk>). */
    CHECK_IDS(tok, "a<x>", PS, 6, 8);
    CHECK_IDS(tok, "a<x>", 0, 6, 0, 0, 0);
    CHECK_IDS(tok, "<s>", PS, 1);
    CHECK_IDS(tok, "<s>", 0, 3, 0, 0, 0);
    /* Longest first. */
    CHECK_IDS(tok, "<x><y>", PS, 9);
    CHECK_IDS(tok, "<y><x>", PS, 10, 8);
    CHECK_IDS(tok, "<x><x><y>", PS, 8, 9);
    /* BOS with ADD_SPECIAL (llama default), EOS not. */
    CHECK_IDS(tok, "a", HEARTH_TOKENIZE_ADD_SPECIAL, 1, 6);
    CHECK_IDS(tok, "", HEARTH_TOKENIZE_ADD_SPECIAL, 1);
    hearth_token none[1];
    CHECK(encode(tok, "", 0, 0, none, 1) == 0);
    /* <|im_end|> was user-defined in the file but looks like an end-of-turn
     * token: it becomes a control token that ends generation. */
    CHECK(hearth_tokenizer_is_eog(tok, 11));
    CHECK(hearth_tokenizer_is_eog(tok, 2));
    CHECK(!hearth_tokenizer_is_eog(tok, 7));
    CHECK_IDS(tok, "<|im_end|>", PS, 11);
    CHECK(hearth_tokenizer_bos(tok) == 1 && hearth_tokenizer_eos(tok) == 2);
    /* Decoding: control tokens are hidden unless rendered, user-defined
     * ones always show. */
    const hearth_token ids[] = {1, 6, 7, 8, 3, 5, 2};
    char out[64];
    size_t n = 0;
    CHECK(hearth_detokenize(tok, ids, 7, 0, out, sizeof out, &n, &err) == HEARTH_OK);
    CHECKF(n == 9 && memcmp(out, "a<tool> b", 9) == 0, "got \"%.*s\"", (int)n, out);
    CHECK(hearth_detokenize(tok, ids, 7, HEARTH_DETOK_RENDER_SPECIAL, out, sizeof out, &n, &err) ==
          HEARTH_OK);
    CHECKF(n == 20 && memcmp(out, "<s> a<tool><x> b</s>", 20) == 0, "got \"%.*s\"", (int)n, out);
    hearth_tokenizer_free(tok);
}

/* The same on real vocabularies: a control token's text becomes its id with
 * PARSE_SPECIAL and stays text without it. */
TEST(special_tokens_real) {
    hearth_tokenizer *tok = load_tok("vocab/ggml-vocab-gpt-2.gguf");
    if (tok) {
        const char *text = "Hello<|endoftext|>world";
        hearth_token ids[64];
        long n = encode(tok, text, strlen(text), HEARTH_TOKENIZE_PARSE_SPECIAL, ids, 64);
        CHECKF(n == 3 && ids[1] == 50256, "n=%ld", n);
        n = encode(tok, text, strlen(text), 0, ids, 64);
        CHECK(n > 3);
        for (long i = 0; i < n; i++) CHECK(ids[i] != 50256);
        CHECK(hearth_tokenizer_is_eog(tok, 50256));
        CHECK(!hearth_tokenizer_is_eog(tok, 0));
        CHECK(!hearth_tokenizer_is_eog(tok, -1));
        CHECK(!hearth_tokenizer_is_eog(tok, 50257));
        /* gpt-2 adds no BOS. */
        n = encode(tok, "Hi", 2, HEARTH_TOKENIZE_ADD_SPECIAL, ids, 64);
        CHECK(n == 1);
        hearth_tokenizer_free(tok);
    }
    tok = load_tok("vocab/ggml-vocab-phi-3.gguf");
    if (tok) {
        /* Phi-3's special tokens swallow the whitespace after them (rstrip). */
        const char *text = "<|user|>\nHi<|end|>";
        hearth_token ids[64], plain[64];
        long n = encode(tok, text, strlen(text), HEARTH_TOKENIZE_PARSE_SPECIAL, ids, 64);
        long m = encode(tok, "Hi", 2, 0, plain, 64);
        CHECKF(n == m + 2 && ids[0] == 32010 && ids[n - 1] == 32007 &&
                   memcmp(ids + 1, plain, (size_t)m * sizeof *ids) == 0,
               "n=%ld m=%ld", n, m);
        CHECK(hearth_tokenizer_is_eog(tok, 32007) && hearth_tokenizer_is_eog(tok, 32000));
        CHECK(hearth_tokenizer_eos(tok) == 32000);
        hearth_tokenizer_free(tok);
    }
    tok = load_tok("vocab/ggml-vocab-deepseek-coder.gguf");
    if (tok) {
        /* deepseek-coder asks for BOS. */
        hearth_token ids[8];
        long n = encode(tok, "x", 1, HEARTH_TOKENIZE_ADD_SPECIAL, ids, 8);
        CHECK(n == 2 && ids[0] == 32013);
        hearth_tokenizer_free(tok);
    }
}

/* ---------------------------------------------------------------- bad metadata */

/* Starts a valid tiny BPE vocabulary: "a", "b", "ab" and the merge "a b". */
static void bpe_base(gw *w, const char *pre) {
    static const char *const text[] = {"a", "b", "ab", "<|endoftext|>"};
    static const char *const merges[] = {"a b"};
    kv_str(w, "tokenizer.ggml.model", "gpt2");
    if (pre) kv_str(w, "tokenizer.ggml.pre", pre);
    kv_strs(w, "tokenizer.ggml.tokens", text, NULL, 4);
    kv_strs(w, "tokenizer.ggml.merges", merges, NULL, 1);
}

static void expect_error(gw *w, hearth_status code, const char *needle, int line) {
    hearth_tokenizer *tok = NULL;
    hearth_error err = {0};
    hearth_status st = tok_from_image(w, &tok, &err);
    if (st != code || !strstr(err.msg, needle) || tok) {
        test_fail(__FILE__, line, "expected %s with \"%s\", got %s: %s", hearth_status_name(code),
                  needle, hearth_status_name(st), err.msg);
    }
    hearth_tokenizer_free(tok);
}

TEST(bad_metadata) {
    static const char *const two[] = {"a", "b"};
    static const float scores3[] = {0, 0, 0};
    static const int32_t types1[] = {1};
    gw w = {0};

    /* The valid base works: "ab" merges, "ba" does not. */
    bpe_base(&w, "gpt-2");
    hearth_tokenizer *tok = NULL;
    hearth_error err = {0};
    CHECKF(tok_from_image(&w, &tok, &err) == HEARTH_OK, "%s", err.msg);
    if (tok) {
        CHECK_IDS(tok, "ab", 0, 2);
        CHECK_IDS(tok, "ba", 0, 1, 0);
        CHECK(hearth_tokenizer_bos(tok) == -1);
        hearth_tokenizer_free(tok);
    }

    w = (gw){0};
    bpe_base(&w, "gpt-2");
    kv_u32(&w, "tokenizer.ggml.bos_token_id", 4);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "bos_token_id", __LINE__);

    w = (gw){0};
    bpe_base(&w, "gpt-2");
    kv_i32(&w, "tokenizer.ggml.eos_token_id", -7);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "eos_token_id", __LINE__);

    w = (gw){0};
    bpe_base(&w, "gpt-2");
    kv_str(&w, "tokenizer.ggml.unknown_token_id", "0");
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "unknown_token_id", __LINE__);

    w = (gw){0};
    bpe_base(&w, "gpt-2");
    kv_f32s(&w, "tokenizer.ggml.scores", scores3, 3);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "'tokenizer.ggml.scores' has 3 entries", __LINE__);

    w = (gw){0};
    bpe_base(&w, "gpt-2");
    kv_i32s(&w, "tokenizer.ggml.token_type", types1, 1);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "token_type", __LINE__);

    w = (gw){0};
    bpe_base(&w, "gpt-2");
    kv_strs(&w, "tokenizer.ggml.scores", two, NULL, 2);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "scores", __LINE__);

    static const float types_f[] = {1, 1, 1, 1};
    w = (gw){0};
    bpe_base(&w, "gpt-2");
    kv_f32s(&w, "tokenizer.ggml.token_type", types_f, 4);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "not an array of integers", __LINE__);

    w = (gw){0};
    bpe_base(&w, "no-such-pre");
    expect_error(&w, HEARTH_ERR_UNSUPPORTED, "no-such-pre", __LINE__);

    w = (gw){0};
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_strs(&w, "tokenizer.ggml.tokens", two, NULL, 2);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "merges", __LINE__);

    w = (gw){0};
    kv_str(&w, "tokenizer.ggml.model", "llama");
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "tokenizer.ggml.tokens", __LINE__);

    w = (gw){0};
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_i32s(&w, "tokenizer.ggml.tokens", types1, 1);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "tokenizer.ggml.tokens", __LINE__);

    w = (gw){0};
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_strs(&w, "tokenizer.ggml.tokens", two, NULL, 0);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "empty", __LINE__);

    w = (gw){0};
    kv_str(&w, "tokenizer.ggml.model", "wordpiece9");
    kv_strs(&w, "tokenizer.ggml.tokens", two, NULL, 2);
    expect_error(&w, HEARTH_ERR_UNSUPPORTED, "wordpiece9", __LINE__);

    w = (gw){0};
    kv_str(&w, "tokenizer.ggml.model", "bert");
    kv_strs(&w, "tokenizer.ggml.tokens", two, NULL, 2);
    expect_error(&w, HEARTH_ERR_UNSUPPORTED, "bert", __LINE__);

    w = (gw){0};
    kv_strs(&w, "tokenizer.ggml.tokens", two, NULL, 2);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "tokenizer.ggml.model", __LINE__);

    const float nan_scores[] = {0.0f, (float)NAN};
    w = (gw){0};
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_strs(&w, "tokenizer.ggml.tokens", two, NULL, 2);
    kv_f32s(&w, "tokenizer.ggml.scores", nan_scores, 2);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "scores[1]", __LINE__);

    w = (gw){0};
    bpe_base(&w, "gpt-2");
    kv_bool(&w, "tokenizer.ggml.add_bos_token", true);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "add_bos_token", __LINE__);

    w = (gw){0};
    bpe_base(&w, "gpt-2");
    kv_u32(&w, "tokenizer.ggml.add_bos_token", 1);
    expect_error(&w, HEARTH_ERR_BAD_MODEL, "add_bos_token", __LINE__);

    /* Keys hearth does not use: out of range means "none", not an error. */
    w = (gw){0};
    bpe_base(&w, "gpt-2");
    kv_u32(&w, "tokenizer.ggml.padding_token_id", 4);
    kv_u32(&w, "tokenizer.ggml.seperator_token_id", 0xFFFFFFFFu);
    kv_i32(&w, "tokenizer.ggml.bos_token_id", -1);
    tok = NULL;
    CHECKF(tok_from_image(&w, &tok, &err) == HEARTH_OK, "%s", err.msg);
    hearth_tokenizer_free(tok);

    /* A two-token llama vocabulary cannot have the default EOS (id 2):
     * there is none, and nothing fails. */
    w = (gw){0};
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_strs(&w, "tokenizer.ggml.tokens", two, NULL, 2);
    tok = NULL;
    CHECKF(tok_from_image(&w, &tok, &err) == HEARTH_OK, "%s", err.msg);
    if (tok) {
        CHECK(hearth_tokenizer_eos(tok) == -1 && hearth_tokenizer_bos(tok) == 1);
        hearth_tokenizer_free(tok);
    }

    /* Files that cannot be read. */
    tok = NULL;
    CHECK(hearth_tokenizer_load("/nonexistent/hearth.gguf", &tok, &err) == HEARTH_ERR_IO);
    CHECK(tok == NULL);
}

/* ---------------------------------------------------------------- the API's edges */

TEST(api_edges) {
    hearth_tokenizer *tok = load_tok("vocab/ggml-vocab-llama-spm.gguf");
    if (!tok) return;
    const char *text = "Hello world, this is a test.";
    hearth_token ids[64];
    size_t n = 0, need = 0;
    hearth_error err = {0};
    CHECK(hearth_tokenize(tok, text, strlen(text), HEARTH_TOKENIZE_ADD_SPECIAL, NULL, 0, &need,
                          &err) == HEARTH_ERR_BUFFER_TOO_SMALL);
    CHECK(need > 3);
    CHECK(hearth_tokenize(tok, text, strlen(text), HEARTH_TOKENIZE_ADD_SPECIAL, ids, 3, &n, &err) ==
          HEARTH_ERR_BUFFER_TOO_SMALL);
    CHECK(n == need && ids[0] == 1);
    CHECK(hearth_tokenize(tok, text, strlen(text), HEARTH_TOKENIZE_ADD_SPECIAL, ids, need, &n,
                          &err) == HEARTH_OK);
    CHECK(n == need);
    CHECK(hearth_tokenize(NULL, text, 1, 0, ids, 64, &n, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(hearth_tokenize(tok, NULL, 1, 0, ids, 64, &n, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(hearth_tokenize(tok, text, 1, 0, ids, 64, NULL, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(hearth_tokenizer_n_vocab(NULL) == 0 && hearth_tokenizer_bos(NULL) == -1);
    CHECK(!hearth_tokenizer_is_eog(NULL, 2));
    hearth_tokenizer_free(NULL);

    /* Bytes that are not UTF-8: SentencePiece keeps them as byte tokens, so
     * they decode exactly; byte-level BPE sees U+FFFD, as llama.cpp does. */
    const char bad[] = "a\xff\xc3(b\xed\xa0\x80";
    size_t bl = sizeof bad - 1;
    long k = encode(tok, bad, bl, 0, ids, 64);
    char out[64];
    CHECK(k > 0 &&
          hearth_detokenize(tok, ids, (size_t)k, 0, out, sizeof out, &n, &err) == HEARTH_OK);
    CHECK(n == bl && memcmp(out, bad, bl) == 0);
    hearth_tokenizer_free(tok);
    tok = load_tok("vocab/ggml-vocab-gpt-2.gguf");
    if (!tok) return;
    k = encode(tok, bad, bl, 0, ids, 64);
    CHECK(k > 0 &&
          hearth_detokenize(tok, ids, (size_t)k, 0, out, sizeof out, &n, &err) == HEARTH_OK);
    const char want[] = "a\xef\xbf\xbd\xef\xbf\xbd(b\xef\xbf\xbd";
    CHECKF(n == sizeof want - 1 && memcmp(out, want, n) == 0, "got \"%.*s\"", (int)n, out);
    /* Broken lead bytes before spaces (once a heap overflow found by the
     * fuzzer: a lead byte swallows part of an escaped space). */
    hearth_tokenizer *spm = load_tok("vocab/ggml-vocab-llama-spm.gguf");
    if (spm) {
        char broken[600];
        for (size_t i = 0; i < sizeof broken; i += 3)
            memcpy(broken + i, i % 2 ? "\xf0  " : "\xdf \xe0", 3);
        static hearth_token many[4096];
        k = encode(spm, broken, sizeof broken, 0, many, 4096);
        CHECK(k > 0);
        hearth_tokenizer_free(spm);
    }
    /* NUL bytes are text like any other. */
    k = encode(tok, "a\0b", 3, 0, ids, 64);
    CHECK(k == 3 && hearth_detokenize(tok, ids, 3, 0, out, sizeof out, &n, &err) == HEARTH_OK &&
          n == 3 && memcmp(out, "a\0b", 3) == 0);
    hearth_tokenizer_free(tok);
}

/* ---------------------------------------------------------------- speed (prints, never fails) */

/* Encodes the 46 strings over and over (about 64 KiB) and a long word
 * without spaces; prints the time per KiB. */
TEST(speed) {
    vocab_tests t;
    REQUIRE(read_inp(test_shared("vocab/ggml-vocab-gpt-2.gguf.inp"), &t));
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    REQUIRE(text != NULL);
    while (len < cap) {
        for (int i = 0; i < t.n && len < cap; i++) {
            size_t n = t.len[i] + 1 < cap - len ? t.len[i] : cap - len - 1;
            memcpy(text + len, t.str[i], n);
            len += n;
            text[len++] = ' ';
        }
    }
    static const char *const vocabs[] = {"llama-spm", "gpt-2", "deepseek-llm", "falcon"};
    hearth_token *ids = malloc(cap * sizeof *ids);
    REQUIRE(ids != NULL);
    for (size_t v = 0; v < 4; v++) {
        char rel[128];
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", vocabs[v]);
        hearth_tokenizer *tok = load_tok(rel);
        if (!tok) continue;
        double t0 = now_ms();
        long n = encode(tok, text, len, 0, ids, cap);
        double t1 = now_ms();
        memset(text, 'x', 4096); /* one 4 KiB word */
        long m = encode(tok, text, 4096, 0, ids, cap);
        double t2 = now_ms();
        printf("  %s: %zu bytes -> %ld tokens in %.2f ms (%.3f ms/KiB); a 4 KiB word -> %ld in "
               "%.2f ms\n",
               vocabs[v], len, n, t1 - t0, (t1 - t0) * 1024.0 / (double)len, m, t2 - t1);
        /* Put the text back for the next vocabulary. */
        len = 0;
        while (len < cap) {
            for (int i = 0; i < t.n && len < cap; i++) {
                size_t k = t.len[i] + 1 < cap - len ? t.len[i] : cap - len - 1;
                memcpy(text + len, t.str[i], k);
                len += k;
                text[len++] = ' ';
            }
        }
        hearth_tokenizer_free(tok);
    }
    free(ids);
    free(text);
    free(t.data);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    RUN(vectors_llama_spm);
    RUN(vectors_phi_3);
    RUN(vectors_gpt_2);
    RUN(vectors_deepseek_coder);
    RUN(vectors_deepseek_llm);
    RUN(vectors_falcon);
    RUN(vectors_starcoder);
    RUN(vectors_refact);
    RUN(vectors_mpt);
    RUN(vectors_qwen2);
    RUN(vectors_llama_bpe);
    RUN(llama2c_tok512);
    RUN(stream_utf8);
    RUN(stream_cut);
    RUN(stream_matches_detokenize);
    RUN(detok_leading_space);
    RUN(special_tokens_tiny);
    RUN(special_tokens_real);
    RUN(bad_metadata);
    RUN(api_edges);
    RUN(speed);
    return test_finish();
}
