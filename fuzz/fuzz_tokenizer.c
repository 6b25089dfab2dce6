/* fuzz_tokenizer.c — libFuzzer target for encoding and decoding text.
 *
 * The first input byte picks a tokenizer and the flags, the rest is the
 * text.  Tokenizers: two tiny ones built in memory (SentencePiece with byte
 * fallback, byte-level BPE with every byte), plus the real vocabularies of
 * shared/vocab when they can be found ($HEARTH_SHARED, default ../shared).
 * Beyond "no crash, no sanitizer report" it checks what must always hold:
 *  - the count reported with a too small buffer is the count written;
 *  - without PARSE_SPECIAL, decoding gives the text back (BPE: after
 *    llama.cpp's UTF-8 repair, which utf8_sanitize reproduces, when every
 *    byte has a token; SentencePiece: for valid UTF-8 without U+2581);
 *  - the streaming decoder emits only valid UTF-8, and the same text as
 *    hearth_detokenize whenever that text is valid UTF-8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TOK 8

static hearth_tokenizer *toks[MAX_TOK];
static bool spm_exact[MAX_TOK]; /* SentencePiece without user-defined tokens */
static bool all_bytes[MAX_TOK]; /* BPE with a token for every byte */
static int n_toks;

/* ---- a minimal GGUF writer for the in-memory vocabularies */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 1024;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) {
    put(b, &v, 4);
}
static void put_u64(buf *b, uint64_t v) {
    put(b, &v, 8);
}
static void put_str(buf *b, const char *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}
static void key(buf *b, const char *k, uint32_t type) {
    put_str(b, k, strlen(k));
    put_u32(b, type);
}

/* Builds a tokenizer from n_kv metadata entries already in kv. */
static void add_image(buf *kv, uint64_t n_kv, bool exact) {
    buf img = {0};
    put(&img, "GGUF", 4);
    put_u32(&img, 3);
    put_u64(&img, 0);
    put_u64(&img, n_kv);
    put(&img, kv->p, kv->n);
    gguf_file *f = NULL;
    hearth_error err;
    if (gguf_open_memory(img.p, img.n, &f, &err) == HEARTH_OK &&
        tokenizer_create(f, &toks[n_toks], &err) == HEARTH_OK) {
        spm_exact[n_toks++] = exact;
    } else {
        fprintf(stderr, "fuzz_tokenizer: built-in vocabulary fails: %s\n", err.msg);
        abort();
    }
    gguf_close(f);
    free(img.p);
    free(kv->p);
}

static void tiny_spm(void) {
    static const char *const words[] = {"\xe2\x96\x81", "a",    "b",     "\342\226\201a", "ab",
                                        "<s>",          "</s>", "<unk>", "<|ctl|>"};
    static const int32_t types[] = {1, 1, 1, 1, 1, 3, 3, 2, 3};
    buf kv = {0};
    key(&kv, "tokenizer.ggml.model", 8);
    put_str(&kv, "llama", 5);
    key(&kv, "tokenizer.ggml.tokens", 9);
    put_u32(&kv, 8);
    put_u64(&kv, 9 + 256);
    for (int i = 0; i < 9; i++) put_str(&kv, words[i], strlen(words[i]));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        put_str(&kv, name, 6);
    }
    key(&kv, "tokenizer.ggml.token_type", 9);
    put_u32(&kv, 5);
    put_u64(&kv, 9 + 256);
    for (int i = 0; i < 9; i++) put(&kv, &types[i], 4);
    for (int b = 0; b < 256; b++) put_u32(&kv, 6);
    key(&kv, "tokenizer.ggml.scores", 9);
    put_u32(&kv, 6);
    put_u64(&kv, 9 + 256);
    for (int i = 0; i < 9 + 256; i++) {
        float s = i < 5 ? -(float)i : 0.0f;
        put(&kv, &s, 4);
    }
    key(&kv, "tokenizer.ggml.bos_token_id", 4);
    put_u32(&kv, 5);
    key(&kv, "tokenizer.ggml.eos_token_id", 4);
    put_u32(&kv, 6);
    key(&kv, "tokenizer.ggml.unknown_token_id", 4);
    put_u32(&kv, 7);
    add_image(&kv, 7, true);
}

static void tiny_bpe(void) {
    buf kv = {0};
    key(&kv, "tokenizer.ggml.model", 8);
    put_str(&kv, "gpt2", 4);
    key(&kv, "tokenizer.ggml.pre", 8);
    put_str(&kv, "llama-bpe", 9);
    key(&kv, "tokenizer.ggml.tokens", 9);
    put_u32(&kv, 8);
    put_u64(&kv, 256 + 3);
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        uint8_t u[4];
        size_t n = utf8_encode(printable ? (uint32_t)b : 256u + (uint32_t)extra++, u);
        put_str(&kv, (const char *)u, n);
    }
    put_str(&kv, "ab", 2);
    put_str(&kv, "\304\240a", 3); /* "Ġa" */
    put_str(&kv, "<|end|>", 7);
    key(&kv, "tokenizer.ggml.merges", 9);
    put_u32(&kv, 8);
    put_u64(&kv, 2);
    put_str(&kv, "a b", 3);
    put_str(&kv, "\xc4\xa0 a", 4);
    key(&kv, "tokenizer.ggml.bos_token_id", 4);
    put_u32(&kv, 258);
    add_image(&kv, 5, false);
}

static void load_shared(const char *name, bool exact) {
    if (n_toks >= MAX_TOK) return;
    const char *root = getenv("HEARTH_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", root && *root ? root : "../shared",
             name);
    hearth_error err;
    if (hearth_tokenizer_load(path, &toks[n_toks], &err) == HEARTH_OK) spm_exact[n_toks++] = exact;
}

static void init(void) {
    tiny_spm();
    tiny_bpe();
    load_shared("llama-spm", true);
    load_shared("gpt-2", false);
    load_shared("deepseek-llm", false);
    load_shared("mpt", false);
    load_shared("falcon", false); /* lacks some control bytes: no round trip */
    for (int i = 0; i < n_toks; i++) {
        all_bytes[i] = true;
        for (int b = 0; b < 256; b++) {
            const hearth_tokenizer *t = toks[i];
            if (tok_find(t, (const char *)t->byte_enc[b], t->byte_enc_len[b]) < 0) {
                all_bytes[i] = false;
            }
        }
    }
}

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_classify((const uint8_t *)s + i, n - i, &cp);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!n_toks) init();
    if (size < 1) return 0;
    const hearth_tokenizer *tok = toks[data[0] % n_toks];
    unsigned flags = (data[0] >> 4) & 3u;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    size_t need = 0;
    hearth_error err;
    hearth_status st = hearth_tokenize(tok, text, len, flags, NULL, 0, &need, &err);
    if (st == HEARTH_ERR_BAD_INPUT) return 0; /* e.g. a regex limit on a pathological word */
    if (st != HEARTH_OK && st != HEARTH_ERR_BUFFER_TOO_SMALL) __builtin_trap();
    hearth_token *ids = malloc((need ? need : 1) * sizeof *ids);
    size_t n = 0;
    if (hearth_tokenize(tok, text, len, flags, ids, need, &n, &err) != HEARTH_OK || n != need) {
        __builtin_trap();
    }
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= hearth_tokenizer_n_vocab(tok)) __builtin_trap();
    }

    size_t cap = 4 * len + 64, nd = 0;
    char *dec = malloc(cap);
    if (hearth_detokenize(tok, ids, n, 0, dec, cap, &nd, &err) != HEARTH_OK) __builtin_trap();
    if (!(flags & HEARTH_TOKENIZE_PARSE_SPECIAL)) {
        if (tok->kind == TOK_KIND_BPE && all_bytes[data[0] % n_toks]) {
            char *want = malloc(3 * len + 1);
            size_t wl = utf8_sanitize(text, len, want);
            if (wl != nd || memcmp(want, dec, wl) != 0) __builtin_trap();
            free(want);
        } else if (spm_exact[data[0] % n_toks] && valid_utf8(text, len) &&
                   !memmem(text, len, "\342\226\201", 3)) {
            /* Not exact, as in llama.cpp: U+2581 in the text decodes as a
             * space, and a broken UTF-8 lead byte swallows the first byte of
             * the U+2581 that stands for the space after it. */
            if (nd != len || memcmp(text, dec, len) != 0) __builtin_trap();
        }
    }

    /* Streaming, with a buffer that sometimes cuts long pieces. */
    hearth_detok d;
    hearth_detok_reset(&d, 0);
    size_t piece_cap = (data[0] & 8) ? 7 : 256, total = 0;
    char *stream = malloc(cap * 3 + 16), piece[256];
    bool cut = false;
    for (size_t i = 0; i < n; i++) {
        size_t k = hearth_detok_push(&d, tok, ids[i], piece, piece_cap);
        if (k > piece_cap || !valid_utf8(piece, k)) __builtin_trap();
        if (total + k <= cap * 3) memcpy(stream + total, piece, k);
        total += k;
    }
    cut = piece_cap < 256;
    size_t k = hearth_detok_flush(&d, piece, piece_cap);
    if (!valid_utf8(piece, k)) __builtin_trap();
    if (total + k <= cap * 3) memcpy(stream + total, piece, k);
    total += k;
    if (!cut && valid_utf8(dec, nd) && (total != nd || memcmp(stream, dec, nd) != 0)) {
        __builtin_trap();
    }
    free(stream);
    free(dec);
    free(ids);
    return 0;
}
