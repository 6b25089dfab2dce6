/* vocab.c — building a tokenizer from the tokenizer.ggml.* metadata of a
 * GGUF file, and the small queries on it.
 *
 * The metadata is hostile: every array length is checked against the
 * vocabulary size, every id against the vocabulary, every size in 64-bit
 * arithmetic before it is narrowed, and anything hearth cannot honour fails
 * with a message naming the key.  Everything kept is copied, so the GGUF
 * file may be closed once tokenizer_create returns.
 *
 * Defaults and the special-token rules follow llama.cpp's vocabulary loader
 * (src/llama-vocab.cpp, llama_vocab::impl::load), which produced the test
 * vectors; departures are noted where they are made.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

/* Far above any real vocabulary (the largest are ~260k tokens); bounds the
 * memory a hostile file can make us allocate per entry. */
#define TOK_MAX_VOCAB  (1 << 24)
#define TOK_MAX_MERGES (1 << 24)
/* Room for "[EMPTY_<id>]" and its NUL. */
#define EMPTY_TEXT_MAX 24

/* ---------------------------------------------------------------- hashing */

uint64_t tok_hash(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a final mix for the low bits */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static uint64_t pair_hash(const char *l, size_t nl, const char *r, size_t nr) {
    return tok_hash(l, nl) * 0x9e3779b97f4a7c15ull ^ tok_hash(r, nr);
}

static hearth_status table_init(tok_table *t, uint64_t n_keys, const char *what,
                                hearth_error *err) {
    uint64_t size = 16;
    while (size < 2 * n_keys) size *= 2;
    t->slots = malloc(size * sizeof *t->slots);
    if (!t->slots) {
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the %s table (%llu slots)", what,
                         (unsigned long long)size);
    }
    memset(t->slots, 0xFF, size * sizeof *t->slots); /* every slot -1 */
    t->mask = size - 1;
    return HEARTH_OK;
}

hearth_token tok_find(const hearth_tokenizer *tok, const char *p, size_t n) {
    const tok_table *t = &tok->by_text;
    for (uint64_t i = tok_hash(p, n) & t->mask;; i = (i + 1) & t->mask) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        size_t len;
        const char *s = tok_text(tok, id, &len);
        if (len == n && memcmp(s, p, n) == 0) return id;
    }
}

/* Inserts id under its text; an id already there with the same text is
 * replaced (llama.cpp keeps the last of duplicate texts). */
static void text_insert(hearth_tokenizer *tok, int32_t id) {
    size_t n;
    const char *p = tok_text(tok, id, &n);
    tok_table *t = &tok->by_text;
    for (uint64_t i = tok_hash(p, n) & t->mask;; i = (i + 1) & t->mask) {
        int32_t old = t->slots[i];
        if (old >= 0) {
            size_t len;
            const char *s = tok_text(tok, old, &len);
            if (len != n || memcmp(s, p, n) != 0) continue;
        }
        t->slots[i] = id;
        return;
    }
}

static void merge_parts(const hearth_tokenizer *tok, int32_t r, const char **l, size_t *nl,
                        const char **rt, size_t *nr) {
    uint32_t off = tok->merge_off[r], left = tok->merge_left[r];
    *l = tok->merge_text + off;
    *nl = left;
    *rt = tok->merge_text + off + left + 1;
    *nr = tok->merge_off[r + 1] - off - left - 1;
}

int32_t tok_merge_rank(const hearth_tokenizer *tok, const char *l, size_t nl, const char *r,
                       size_t nr) {
    const tok_table *t = &tok->merges;
    for (uint64_t i = pair_hash(l, nl, r, nr) & t->mask;; i = (i + 1) & t->mask) {
        int32_t rank = t->slots[i];
        if (rank < 0) return -1;
        const char *ml, *mr;
        size_t mnl, mnr;
        merge_parts(tok, rank, &ml, &mnl, &mr, &mnr);
        if (mnl == nl && mnr == nr && memcmp(ml, l, nl) == 0 && memcmp(mr, r, nr) == 0) {
            return rank;
        }
    }
}

/* Inserts merge rank unless the same pair is already there (the first,
 * lowest rank wins, as with llama.cpp's emplace). */
static void merge_insert(hearth_tokenizer *tok, int32_t rank) {
    const char *l, *r;
    size_t nl, nr;
    merge_parts(tok, rank, &l, &nl, &r, &nr);
    tok_table *t = &tok->merges;
    for (uint64_t i = pair_hash(l, nl, r, nr) & t->mask;; i = (i + 1) & t->mask) {
        int32_t old = t->slots[i];
        if (old < 0) {
            t->slots[i] = rank;
            return;
        }
        const char *ml, *mr;
        size_t mnl, mnr;
        merge_parts(tok, old, &ml, &mnl, &mr, &mnr);
        if (mnl == nl && mnr == nr && memcmp(ml, l, nl) == 0 && memcmp(mr, r, nr) == 0) return;
    }
}

/* ---------------------------------------------------------------- metadata */

static bool type_is_int(gguf_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_INT8 || t == GGUF_TYPE_UINT16 ||
           t == GGUF_TYPE_INT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

static bool type_is_signed(gguf_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

/* Reads a token id key into *id (left alone when the key is absent).  -1
 * and 0xFFFFFFFF mean "no such token".  Any other value outside the
 * vocabulary is an error when strict, else it is taken as "none" (keys
 * hearth never uses, which some converters fill with vocab_size). */
static hearth_status read_id(const gguf_file *f, const char *key, int32_t n_vocab, bool strict,
                             hearth_token *id, hearth_error *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return HEARTH_OK;
    if (!type_is_int(kv->type)) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "metadata '%s' is a %s, expected a token id",
                         key, gguf_type_name(kv->type));
    }
    bool neg = type_is_signed(kv->type) && kv->v.i64 < 0;
    uint64_t v = kv->v.u64;
    if ((neg && kv->v.i64 == -1) || (!neg && (v == UINT32_MAX || v == UINT64_MAX))) {
        *id = -1;
        return HEARTH_OK;
    }
    if (neg || v >= (uint64_t)n_vocab) {
        if (!strict) {
            *id = -1;
            return HEARTH_OK;
        }
        if (neg) {
            return error_set(err, HEARTH_ERR_BAD_MODEL, "metadata '%s' is %lld, not a token id",
                             key, (long long)kv->v.i64);
        }
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "metadata '%s' is %llu, outside the vocabulary of %d tokens", key,
                         (unsigned long long)v, n_vocab);
    }
    *id = (hearth_token)v;
    return HEARTH_OK;
}

/* An optional numeric array (of integers when ints) that must have one
 * entry per token. */
static hearth_status per_token_array(const gguf_file *f, const char *key, uint64_t n_vocab,
                                     bool ints, const gguf_kv **out, hearth_error *err) {
    *out = NULL;
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return HEARTH_OK;
    if (kv->type != GGUF_TYPE_ARRAY || kv->v.arr.strs || kv->v.arr.type == GGUF_TYPE_ARRAY ||
        kv->v.arr.type == GGUF_TYPE_STRING || (ints && !type_is_int(kv->v.arr.type))) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "metadata '%s' is not an array of %s", key,
                         ints ? "integers" : "numbers");
    }
    if (kv->v.arr.n != n_vocab) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "metadata '%s' has %llu entries but tokenizer.ggml.tokens has %llu", key,
                         (unsigned long long)kv->v.arr.n, (unsigned long long)n_vocab);
    }
    *out = kv;
    return HEARTH_OK;
}

static uint8_t attr_from_type(int64_t type) {
    switch (type) {
    case 1: return TOK_ATTR_NORMAL;
    case 2: return TOK_ATTR_UNKNOWN;
    case 3: return TOK_ATTR_CONTROL;
    case 4: return TOK_ATTR_USER_DEFINED;
    case 5: return TOK_ATTR_UNUSED;
    case 6: return TOK_ATTR_BYTE;
    default: return TOK_ATTR_UNDEFINED;
    }
}

/* Copies a metadata string into buf for an error message: cut to fit, with
 * control bytes shown as '?' so the message stays one line. */
static const char *show_str(gguf_str s, char *buf, size_t cap) {
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[i] = (char)(c < 0x20 || c == 0x7F ? '?' : c);
    }
    buf[n] = '\0';
    return buf;
}

/* tokenizer.ggml.model and .pre: which algorithm, which pre-tokenizer, and
 * the defaults they bring. */
static hearth_status load_kind(const gguf_file *f, hearth_tokenizer *tok, bool *no_bos,
                               hearth_error *err) {
    gguf_str model, pre = {NULL, 0};
    hearth_status st = gguf_get_str_req(f, "tokenizer.ggml.model", &model, err);
    if (st == HEARTH_OK) st = gguf_get_str(f, "tokenizer.ggml.pre", &pre, err);
    if (st != HEARTH_OK) return st;
    char name[64];
    show_str(model, name, sizeof name);
    *no_bos = false;
    if (gguf_str_eq(model, "llama")) {
        /* The pre-tokenizer name is ignored for SentencePiece, as in llama.cpp. */
        tok->kind = TOK_KIND_SPM;
        tok->add_bos = true;
        tok->add_space_prefix = true;
        return HEARTH_OK;
    }
    if (gguf_str_eq(model, "gpt2")) {
        tok->kind = TOK_KIND_BPE;
        pretok_info info = {PRETOK_DEFAULT, false, false, false};
        if (pre.ptr && pre.len > 0) {
            char pname[64];
            show_str(pre, pname, sizeof pname);
            if (pre.len >= sizeof pname || memchr(pre.ptr, 0, pre.len) ||
                !pretok_lookup(pname, &info)) {
                return error_set(err, HEARTH_ERR_UNSUPPORTED,
                                 "unknown pre-tokenizer '%s' (tokenizer.ggml.pre)", pname);
            }
        }
        tok->pre = (int)info.family;
        tok->add_bos = info.add_bos;
        tok->ignore_merges = info.ignore_merges;
        *no_bos = info.no_bos;
        return HEARTH_OK;
    }
    if (gguf_str_eq(model, "bert") || gguf_str_eq(model, "t5") || gguf_str_eq(model, "rwkv")) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "tokenizer '%s' is not supported (hearth runs 'llama' and 'gpt2')", name);
    }
    if (gguf_str_eq(model, "no_vocab") || gguf_str_eq(model, "none")) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "the model has no vocabulary ('%s')", name);
    }
    return error_set(err, HEARTH_ERR_UNSUPPORTED, "unknown tokenizer model '%s'", name);
}

/* tokenizer.ggml.tokens, .scores and .token_type, and the text table. */
static hearth_status load_tokens(const gguf_file *f, hearth_tokenizer *tok, hearth_error *err) {
    const gguf_kv *tokens = NULL;
    hearth_status st = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tokens, err);
    if (st != HEARTH_OK) return st;
    if (!tokens) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "the model has no tokenizer.ggml.tokens");
    }
    uint64_t n = tokens->v.arr.n;
    if (n == 0) return error_set(err, HEARTH_ERR_BAD_MODEL, "tokenizer.ggml.tokens is empty");
    if (n > TOK_MAX_VOCAB) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "a vocabulary of %llu tokens is above hearth's limit of %d",
                         (unsigned long long)n, TOK_MAX_VOCAB);
    }
    tok->n_vocab = (int32_t)n;
    const gguf_kv *scores = NULL, *types = NULL;
    if ((st = per_token_array(f, "tokenizer.ggml.scores", n, false, &scores, err)) ||
        (st = per_token_array(f, "tokenizer.ggml.token_type", n, true, &types, err))) {
        return st;
    }

    /* Sizes first, in 64 bits (the strings lie apart in the file, so their
     * sum is at most its size); an empty text becomes "[EMPTY_<id>]". */
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = tokens->v.arr.strs[i].len;
        total += len ? len : EMPTY_TEXT_MAX;
    }
    if (total >= UINT32_MAX) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "token texts total %llu bytes, above hearth's limit of 4 GiB",
                         (unsigned long long)total);
    }
    tok->text = malloc(total ? total : 1);
    tok->text_off = malloc((n + 1) * sizeof *tok->text_off);
    tok->score = malloc(n * sizeof *tok->score);
    tok->attr = malloc(n);
    tok->eog = calloc(n, 1);
    if (!tok->text || !tok->text_off || !tok->score || !tok->attr || !tok->eog) {
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for a vocabulary of %llu tokens",
                         (unsigned long long)n);
    }
    uint32_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = tokens->v.arr.strs[i];
        tok->text_off[i] = off;
        if (s.len) {
            memcpy(tok->text + off, s.ptr, s.len);
            off += (uint32_t)s.len;
        } else {
            off += (uint32_t)snprintf(tok->text + off, EMPTY_TEXT_MAX, "[EMPTY_%llu]",
                                      (unsigned long long)i);
        }
        double score = scores ? gguf_arr_f64(scores, i) : 0.0;
        if (isnan(score)) {
            return error_set(err, HEARTH_ERR_BAD_MODEL,
                             "tokenizer.ggml.scores[%llu] is not a number", (unsigned long long)i);
        }
        /* (a double beyond float's range would be undefined to convert) */
        tok->score[i] = score > FLT_MAX ? INFINITY : score < -FLT_MAX ? -INFINITY : (float)score;
        tok->attr[i] = TOK_ATTR_NORMAL;
        if (types) tok->attr[i] = attr_from_type(gguf_arr_i64(types, i));
    }
    tok->text_off[n] = off;

    if ((st = table_init(&tok->by_text, n, "token text", err))) return st;
    for (uint64_t i = 0; i < n; i++) text_insert(tok, (int32_t)i);
    return HEARTH_OK;
}

/* tokenizer.ggml.merges: "left right" strings, split at the first space
 * after the first byte; a merge without one can never apply and is skipped
 * (llama.cpp files it under an empty pair). */
static hearth_status load_merges(const gguf_file *f, hearth_tokenizer *tok, hearth_error *err) {
    const gguf_kv *merges = NULL;
    hearth_status st = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges, err);
    if (st != HEARTH_OK) return st;
    if (!merges) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "a BPE ('gpt2') tokenizer needs tokenizer.ggml.merges");
    }
    uint64_t n = merges->v.arr.n;
    if (n > TOK_MAX_MERGES) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "%llu merges are above hearth's limit of %d",
                         (unsigned long long)n, TOK_MAX_MERGES);
    }
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += merges->v.arr.strs[i].len;
    if (total >= UINT32_MAX) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "merges total %llu bytes, above hearth's limit of 4 GiB",
                         (unsigned long long)total);
    }
    tok->merge_text = malloc(total ? total : 1);
    tok->merge_off = malloc((n + 1) * sizeof *tok->merge_off);
    tok->merge_left = malloc((n ? n : 1) * sizeof *tok->merge_left);
    if (!tok->merge_text || !tok->merge_off || !tok->merge_left) {
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for %llu merges",
                         (unsigned long long)n);
    }
    if ((st = table_init(&tok->merges, n, "merge", err))) return st;
    uint32_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = merges->v.arr.strs[i];
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        tok->merge_off[i] = off;
        tok->merge_left[i] = sp ? (uint32_t)(sp - s.ptr) : 0;
        memcpy(tok->merge_text + off, s.ptr, s.len);
        off += (uint32_t)s.len;
        tok->merge_off[i + 1] = off;
        if (sp) merge_insert(tok, (int32_t)i);
    }
    tok->merge_off[n] = off;
    tok->n_merges = (int32_t)n;
    return HEARTH_OK;
}

/* Texts llama.cpp recognises as end-of-turn and fill-in-the-middle tokens
 * when the metadata does not name them; a token found this way becomes a
 * control token.  The octal escapes spell DeepSeek's full-width bars and
 * U+2581: "<｜end▁of▁sentence｜>", "<｜fim▁begin｜>" and so on. */
static const char *const eot_texts[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
    "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>",
    NULL};
static const char *const eom_texts[] = {"<|eom_id|>", NULL};
static const char *const fim_pre_texts[] = {"<|fim_prefix|>", "<fim-prefix>",
                                            "<\357\275\234fim\342\226\201begin\357\275\234>",
                                            "<PRE>", NULL};
static const char *const fim_suf_texts[] = {"<|fim_suffix|>", "<fim-suffix>",
                                            "<\357\275\234fim\342\226\201hole\357\275\234>",
                                            "<SUF>", NULL};
static const char *const fim_mid_texts[] = {"<|fim_middle|>", "<fim-middle>",
                                            "<\357\275\234fim\342\226\201end\357\275\234>", "<MID>",
                                            NULL};
static const char *const fim_pad_texts[] = {"<|fim_pad|>", "<fim-pad>", "<PAD>", NULL};
static const char *const fim_rep_texts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
                                            NULL};
static const char *const fim_sep_texts[] = {"<|file_sep|>", NULL};
/* Texts that always end a generation. */
static const char *const eog_texts[] = {"<|eot_id|>",    "<|im_end|>", "<|end|>", "<end_of_turn>",
                                        "<|endoftext|>", "<|eom_id|>", "<EOT>",   NULL};

static hearth_token find_cstr(const hearth_tokenizer *tok, const char *s) {
    return tok_find(tok, s, strlen(s));
}

/* When *id is unset, the first of texts in the vocabulary becomes it. */
static void detect_by_text(hearth_tokenizer *tok, hearth_token *id, const char *const *texts) {
    if (*id >= 0) return;
    for (int i = 0; texts[i]; i++) {
        hearth_token t = find_cstr(tok, texts[i]);
        if (t >= 0) {
            *id = t;
            tok->attr[t] = TOK_ATTR_CONTROL;
            return;
        }
    }
}

typedef struct id_key {
    const char *key;
    bool strict;
} id_key;

/* The special token ids, their defaults, end-of-generation tokens and the
 * add_bos / add_eos / add_space_prefix flags. */
static hearth_status load_special(const gguf_file *f, hearth_tokenizer *tok, bool no_bos,
                                  hearth_error *err) {
    int32_t n = tok->n_vocab;
    /* SentencePiece defaults as llama.cpp's; for BPE llama.cpp defaults BOS
     * and EOS to id 11, an accident of history hearth does not repeat. */
    tok->bos = tok->eos = tok->eot = tok->eom = tok->unk = -1;
    if (tok->kind == TOK_KIND_SPM) {
        tok->unk = 0;
        tok->bos = n > 1 ? 1 : -1;
        tok->eos = n > 2 ? 2 : -1;
    }
    hearth_token fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1;
    hearth_token fim_sep = -1, ignored = -1;
    hearth_status st;
    if ((st = read_id(f, "tokenizer.ggml.bos_token_id", n, true, &tok->bos, err)) ||
        (st = read_id(f, "tokenizer.ggml.eos_token_id", n, true, &tok->eos, err)) ||
        (st = read_id(f, "tokenizer.ggml.eot_token_id", n, true, &tok->eot, err)) ||
        (st = read_id(f, "tokenizer.ggml.eom_token_id", n, true, &tok->eom, err)) ||
        (st = read_id(f, "tokenizer.ggml.unknown_token_id", n, true, &tok->unk, err)) ||
        (st = read_id(f, "tokenizer.ggml.seperator_token_id", n, false, &ignored, err)) ||
        (st = read_id(f, "tokenizer.ggml.padding_token_id", n, false, &ignored, err)) ||
        (st = read_id(f, "tokenizer.ggml.cls_token_id", n, false, &ignored, err)) ||
        (st = read_id(f, "tokenizer.ggml.mask_token_id", n, false, &ignored, err)) ||
        (st = read_id(f, "tokenizer.ggml.prefix_token_id", n, false, &fim_pre, err)) ||
        (st = read_id(f, "tokenizer.ggml.suffix_token_id", n, false, &fim_suf, err)) ||
        (st = read_id(f, "tokenizer.ggml.middle_token_id", n, false, &fim_mid, err)) ||
        (st = read_id(f, "tokenizer.ggml.fim_pre_token_id", n, false, &fim_pre, err)) ||
        (st = read_id(f, "tokenizer.ggml.fim_suf_token_id", n, false, &fim_suf, err)) ||
        (st = read_id(f, "tokenizer.ggml.fim_mid_token_id", n, false, &fim_mid, err)) ||
        (st = read_id(f, "tokenizer.ggml.fim_pad_token_id", n, false, &fim_pad, err)) ||
        (st = read_id(f, "tokenizer.ggml.fim_rep_token_id", n, false, &fim_rep, err)) ||
        (st = read_id(f, "tokenizer.ggml.fim_sep_token_id", n, false, &fim_sep, err))) {
        return st;
    }
    if (no_bos) tok->bos = -1;

    bool add_bos_set = gguf_find(f, "tokenizer.ggml.add_bos_token") != NULL;
    bool add_eos_set = gguf_find(f, "tokenizer.ggml.add_eos_token") != NULL;
    if ((st = gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &tok->add_bos, err)) ||
        (st = gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &tok->add_eos, err)) ||
        (st = gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &tok->add_space_prefix, err))) {
        return st;
    }
    /* A default that cannot be honoured is dropped; a file that asks for it
     * is malformed. */
    if (tok->add_bos && tok->bos < 0) {
        if (add_bos_set) {
            return error_set(err, HEARTH_ERR_BAD_MODEL,
                             "tokenizer.ggml.add_bos_token is set but there is no BOS token");
        }
        tok->add_bos = false;
    }
    if (tok->add_eos && tok->eos < 0) {
        if (add_eos_set) {
            return error_set(err, HEARTH_ERR_BAD_MODEL,
                             "tokenizer.ggml.add_eos_token is set but there is no EOS token");
        }
        tok->add_eos = false;
    }

    detect_by_text(tok, &tok->eot, eot_texts);
    detect_by_text(tok, &tok->eom, eom_texts);
    detect_by_text(tok, &fim_pre, fim_pre_texts);
    detect_by_text(tok, &fim_suf, fim_suf_texts);
    detect_by_text(tok, &fim_mid, fim_mid_texts);
    detect_by_text(tok, &fim_pad, fim_pad_texts);
    detect_by_text(tok, &fim_rep, fim_rep_texts);
    detect_by_text(tok, &fim_sep, fim_sep_texts);

    const hearth_token eog_ids[] = {fim_pad, fim_rep, fim_sep, tok->eos, tok->eot, tok->eom};
    for (size_t i = 0; i < sizeof eog_ids / sizeof eog_ids[0]; i++) {
        if (eog_ids[i] >= 0) tok->eog[eog_ids[i]] = 1;
    }
    for (int i = 0; eog_texts[i]; i++) {
        hearth_token t = find_cstr(tok, eog_texts[i]);
        if (t >= 0) {
            tok->eog[t] = 1;
            tok->attr[t] = TOK_ATTR_CONTROL;
        }
    }
    return HEARTH_OK;
}

/* Sort key of a special token: longer texts first, then lower ids. */
typedef struct special_key {
    uint32_t len;
    int32_t id;
} special_key;

static int cmp_special(const void *a, const void *b) {
    const special_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static bool name_contains(gguf_str name, const char *needle) {
    size_t n = strlen(needle);
    for (uint64_t i = 0; i + n <= name.len; i++) {
        size_t j = 0;
        while (j < n && (char)((name.ptr[i + j] >= 'A' && name.ptr[i + j] <= 'Z')
                                   ? name.ptr[i + j] - 'A' + 'a'
                                   : name.ptr[i + j]) == needle[j]) {
            j++;
        }
        if (j == n) return true;
    }
    return false;
}

static void set_strip(hearth_tokenizer *tok, const char *text, uint8_t flag, bool on) {
    hearth_token t = find_cstr(tok, text);
    if (t < 0) return;
    if (on) {
        tok->attr[t] |= flag;
    } else {
        tok->attr[t] &= (uint8_t)~flag;
    }
}

/* The list of special tokens, longest first (ties by id, where llama.cpp's
 * unstable sort leaves the order open), and the strip flags llama.cpp sets
 * by model name. */
static hearth_status build_special(const gguf_file *f, hearth_tokenizer *tok, hearth_error *err) {
    int32_t n = 0;
    for (int32_t i = 0; i < tok->n_vocab; i++) n += (tok->attr[i] & TOK_ATTR_SPECIAL) != 0;
    size_t cap = n ? (size_t)n : 1;
    tok->special = malloc(cap * sizeof *tok->special);
    special_key *keys = malloc(cap * sizeof *keys);
    if (!tok->special || !keys) {
        free(keys);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for %d special tokens", n);
    }
    n = 0;
    for (int32_t i = 0; i < tok->n_vocab; i++) {
        if (!(tok->attr[i] & TOK_ATTR_SPECIAL)) continue;
        keys[n].len = tok->text_off[i + 1] - tok->text_off[i];
        keys[n++].id = i;
    }
    qsort(keys, (size_t)n, sizeof *keys, cmp_special);
    for (int32_t i = 0; i < n; i++) tok->special[i] = keys[i].id;
    tok->n_special = n;
    free(keys);

    gguf_str name = {NULL, 0}, pre = {NULL, 0};
    hearth_error ignore;
    gguf_get_str(f, "general.name", &name, &ignore);
    gguf_get_str(f, "tokenizer.ggml.pre", &pre, &ignore);
    if (name_contains(pre, "jina-v2-de") || name_contains(pre, "jina-v2-es") ||
        name_contains(pre, "jina-v2-code")) {
        set_strip(tok, "<mask>", TOK_ATTR_LSTRIP, true);
    } else if (name_contains(name, "phi-3") || name_contains(name, "phi3")) {
        for (int32_t i = 0; i < n; i++) tok->attr[tok->special[i]] |= TOK_ATTR_RSTRIP;
        set_strip(tok, "</s>", TOK_ATTR_RSTRIP, true);
        set_strip(tok, "<unk>", TOK_ATTR_RSTRIP, false);
        set_strip(tok, "<s>", TOK_ATTR_RSTRIP, false);
        set_strip(tok, "<|endoftext|>", TOK_ATTR_RSTRIP, false);
    }
    return HEARTH_OK;
}

static const char hex_digits[] = "0123456789ABCDEF";

/* SentencePiece byte fallback ("<0xXX>", else the byte as a one-byte
 * token) and the byte-level BPE alphabet (GPT-2's bytes_to_unicode). */
static void build_bytes(hearth_tokenizer *tok) {
    for (int b = 0; b < 256; b++) {
        char name[6] = {'<', '0', 'x', hex_digits[b >> 4], hex_digits[b & 15], '>'};
        char one = (char)b;
        hearth_token t = tok_find(tok, name, sizeof name);
        tok->byte_token[b] = t >= 0 ? t : tok_find(tok, &one, 1);
    }
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)extra++;
        uint8_t buf[4];
        tok->byte_enc_len[b] = (uint8_t)utf8_encode(cp, buf);
        memcpy(tok->byte_enc[b], buf, tok->byte_enc_len[b]);
    }
}

/* ---------------------------------------------------------------- public */

hearth_status tokenizer_create(const gguf_file *f, hearth_tokenizer **out, hearth_error *err) {
    if (!out) return error_set(err, HEARTH_ERR_INVALID_ARG, "tokenizer_create: out is NULL");
    *out = NULL;
    if (!f) return error_set(err, HEARTH_ERR_INVALID_ARG, "tokenizer_create: no GGUF file");
    hearth_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return error_set(err, HEARTH_ERR_NOMEM, "out of memory for a tokenizer");
    bool no_bos = false;
    hearth_status st;
    if ((st = load_kind(f, tok, &no_bos, err)) || (st = load_tokens(f, tok, err)) ||
        (tok->kind == TOK_KIND_BPE && (st = load_merges(f, tok, err))) ||
        (st = load_special(f, tok, no_bos, err)) || (st = build_special(f, tok, err))) {
        hearth_tokenizer_free(tok);
        return st;
    }
    build_bytes(tok);
    if ((st = tok_build_pieces(tok, err)) ||
        (tok->kind == TOK_KIND_BPE && (st = pretok_compile(tok, err)))) {
        hearth_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return HEARTH_OK;
}

hearth_status hearth_tokenizer_load(const char *path, hearth_tokenizer **out, hearth_error *err) {
    if (!out) return error_set(err, HEARTH_ERR_INVALID_ARG, "hearth_tokenizer_load: out is NULL");
    *out = NULL;
    if (!path) return error_set(err, HEARTH_ERR_INVALID_ARG, "hearth_tokenizer_load: no path");
    gguf_file *f = NULL;
    hearth_status st = gguf_open(path, true, &f, err);
    if (st != HEARTH_OK) return st;
    st = tokenizer_create(f, out, err);
    gguf_close(f);
    if (st != HEARTH_OK) error_prefix(err, st, "%s", path);
    return st;
}

void hearth_tokenizer_free(hearth_tokenizer *tok) {
    if (!tok) return;
    for (int i = 0; i < tok->n_re; i++) pcre2_code_free(tok->re[i]);
    free(tok->text);
    free(tok->text_off);
    free(tok->score);
    free(tok->attr);
    free(tok->eog);
    free(tok->by_text.slots);
    free(tok->piece);
    free(tok->piece_off);
    free(tok->merge_text);
    free(tok->merge_off);
    free(tok->merge_left);
    free(tok->merges.slots);
    free(tok->special);
    free(tok);
}

int32_t hearth_tokenizer_n_vocab(const hearth_tokenizer *tok) {
    return tok ? tok->n_vocab : 0;
}

size_t hearth_tokenizer_max_piece(const hearth_tokenizer *tok) {
    return tok ? tok->max_piece_len : 0;
}

hearth_token hearth_tokenizer_bos(const hearth_tokenizer *tok) {
    return tok ? tok->bos : -1;
}

hearth_token hearth_tokenizer_eos(const hearth_tokenizer *tok) {
    return tok ? tok->eos : -1;
}

bool hearth_tokenizer_is_eog(const hearth_tokenizer *tok, hearth_token id) {
    return tok && id >= 0 && id < tok->n_vocab && tok->eog[id];
}
