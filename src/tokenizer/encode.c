/* encode.c — text to token ids (hearth_tokenize).
 *
 * Three stages, as in llama.cpp's llama_vocab::impl::tokenize:
 *  1. special tokens are cut out of the text, longest first: with
 *     HEARTH_TOKENIZE_PARSE_SPECIAL every control, unknown and user-defined
 *     token, otherwise only user-defined ones (Hugging Face treats those as
 *     part of the vocabulary's text, e.g. MPT's runs of spaces);
 *  2. each remaining stretch of text is tokenized on its own:
 *     SentencePiece: spaces become U+2581 (one more in front when
 *     add_space_prefix and the stretch starts the text or follows a special
 *     token), then the highest-scoring adjacent pair that is a token merges
 *     until none is left; a piece that is no token falls back to its bytes;
 *     byte-level BPE: the pre-tokenizer regexes cut the text into words,
 *     every byte of a word becomes its stand-in code point, and the
 *     lowest-ranked merge applies until none is left;
 *  3. BOS and EOS are added with HEARTH_TOKENIZE_ADD_SPECIAL as the
 *     vocabulary asks.
 * Merges use a binary heap over a linked list of symbols, so a word of n
 * bytes costs O(n log n).  Scratch space is allocated per call (the
 * tokenizer itself is read-only and may be shared between threads).
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

/* Longest text hearth_tokenize accepts; keeps every scratch size far from
 * overflow (scratch is under 64 bytes per input byte). */
#define TOK_MAX_TEXT ((size_t)1 << 28)

/* Output: ids beyond cap are counted, not written. */
typedef struct emitter {
    hearth_token *out;
    size_t cap, n;
} emitter;

static inline void emit(emitter *e, hearth_token id) {
    if (e->n < e->cap) e->out[e->n] = id;
    e->n++;
}

/* A stretch of the input: text when token < 0, else a special token. */
typedef struct fragment {
    int32_t token;
    size_t off, len;
} fragment;

typedef struct frag_list {
    fragment *v;
    size_t n, cap;
} frag_list;

static bool frag_push(frag_list *l, int32_t token, size_t off, size_t len) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        fragment *v = realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (fragment){token, off, len};
    return true;
}

/* A symbol of the merge loop: bytes [start, start + n) of the work buffer,
 * in a doubly linked list; n == 0 once merged into its left neighbour. */
typedef struct symbol {
    int32_t prev, next;
    uint32_t start, n;
} symbol;

/* A candidate merge of symbol left with the one after it, size bytes
 * together.  SentencePiece orders by score (high first), BPE by rank (low
 * first); both break ties by the leftmost position, as llama.cpp does.  A
 * bigram is stale once either symbol has changed, which shows as a
 * different total size (symbols only ever grow to the right). */
typedef struct bigram {
    union {
        float score;  /* SentencePiece: score of the merged token */
        int32_t rank; /* BPE: rank of the merge */
    } key;
    int32_t left;
    uint32_t size;
} bigram;

typedef struct heap {
    bigram *v;
    size_t n;
    bool by_rank;
} heap;

static inline bool before(const heap *h, const bigram *a, const bigram *b) {
    if (h->by_rank) {
        if (a->key.rank != b->key.rank) return a->key.rank < b->key.rank;
    } else if (a->key.score != b->key.score) {
        return a->key.score > b->key.score;
    }
    return a->left < b->left;
}

static void heap_push(heap *h, bigram b) {
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(h, &b, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = b;
}

static bigram heap_pop(heap *h) {
    bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(h, &h->v[c + 1], &h->v[c])) c++;
        if (!before(h, &h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n > 0) h->v[i] = last;
    return top;
}

/* Per-call scratch, grown as needed. */
typedef struct scratch {
    char *buf; /* SPM: escaped text; BPE: sanitized text */
    size_t buf_cap;
    char *word; /* BPE: one word in stand-in code points */
    size_t word_cap;
    symbol *sym;
    size_t sym_cap;
    bigram *big;
    size_t big_cap;
    tok_span *words, *tmp; /* BPE: the words of the pre-tokenizer */
    size_t words_cap, tmp_cap;
    pcre2_match_data *md;
} scratch;

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    void *q = realloc(*p, need * elem);
    if (!q) return false;
    *p = q;
    *cap = need;
    return true;
}

/* Room for a merge loop over n symbols: every merge queues at most two
 * bigrams, the first pass n - 1. */
static bool reserve_symbols(scratch *s, size_t n) {
    return grow((void **)&s->sym, &s->sym_cap, n + 1, sizeof *s->sym) &&
           grow((void **)&s->big, &s->big_cap, 3 * n + 1, sizeof *s->big);
}

/* Queues the merge of symbol left with the symbol after it, if the pair
 * forms a token (SentencePiece) or is a merge (BPE). */
static void try_bigram(const hearth_tokenizer *tok, const char *buf, const symbol *sym, heap *h,
                       int32_t left) {
    if (left < 0 || sym[left].next < 0) return;
    const symbol *l = &sym[left], *r = &sym[l->next];
    bigram b;
    b.left = left;
    b.size = l->n + r->n;
    if (h->by_rank) {
        b.key.rank = tok_merge_rank(tok, buf + l->start, l->n, buf + r->start, r->n);
        if (b.key.rank < 0) return;
    } else {
        hearth_token id = tok_find(tok, buf + l->start, b.size);
        if (id < 0) return;
        b.key.score = tok->score[id];
    }
    heap_push(h, b);
}

/* Merges the n >= 1 symbols of buf, best pair first, until no pair
 * qualifies. */
static void merge_all(const hearth_tokenizer *tok, const char *buf, symbol *sym, int32_t n,
                      heap *h) {
    for (int32_t i = 0; i + 1 < n; i++) try_bigram(tok, buf, sym, h, i);
    while (h->n > 0) {
        bigram b = heap_pop(h);
        symbol *l = &sym[b.left];
        if (l->n == 0 || l->next < 0) continue;
        symbol *r = &sym[l->next];
        if (l->n + r->n != b.size) continue; /* stale: a side has merged since */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        try_bigram(tok, buf, sym, h, l->prev);
        try_bigram(tok, buf, sym, h, b.left);
    }
}

static void scratch_free(scratch *s) {
    free(s->buf);
    free(s->word);
    free(s->sym);
    free(s->big);
    free(s->words);
    free(s->tmp);
    if (s->md) pcre2_match_data_free(s->md);
}

/* ---------------------------------------------------------------- special tokens */

static bool is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Cuts the special tokens out of text[0..len) into *l, in llama.cpp's
 * order: for each special token, longest first, every occurrence in every
 * stretch of text still unmatched. */
static hearth_status partition(const hearth_tokenizer *tok, const char *text, size_t len,
                               bool parse_special, frag_list *l, frag_list *spare,
                               hearth_error *err) {
    if (len > 0 && !frag_push(l, -1, 0, len)) goto nomem;
    if (tok->n_special == 0 || len == 0) return HEARTH_OK;
    /* Which byte pairs occur in the text: a token with a pair that does not
     * cannot occur either, which rules out most of the thousands of special
     * tokens some vocabularies have without searching the text for each. */
    uint64_t pairs[65536 / 64], bytes[4] = {0, 0, 0, 0};
    memset(pairs, 0, sizeof pairs);
    for (size_t i = 0; i < len; i++) {
        unsigned c = (uint8_t)text[i];
        bytes[c >> 6] |= 1ull << (c & 63);
        if (i + 1 < len) {
            unsigned p = c << 8 | (uint8_t)text[i + 1];
            pairs[p >> 6] |= 1ull << (p & 63);
        }
    }
    for (int32_t k = 0; k < tok->n_special && l->n > 0; k++) {
        int32_t id = tok->special[k];
        uint8_t attr = tok->attr[id];
        if (!parse_special && (attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
        size_t tl;
        const char *t = tok_text(tok, id, &tl);
        if (tl > len) continue;
        unsigned c0 = (uint8_t)t[0];
        bool maybe = (bytes[c0 >> 6] >> (c0 & 63)) & 1;
        for (size_t i = 0; maybe && i + 1 < tl; i++) {
            unsigned p = (unsigned)(uint8_t)t[i] << 8 | (uint8_t)t[i + 1];
            maybe = (pairs[p >> 6] >> (p & 63)) & 1;
        }
        if (!maybe || !memmem(text, len, t, tl)) continue;
        spare->n = 0;
        for (size_t f = 0; f < l->n; f++) {
            fragment fr = l->v[f];
            if (fr.token >= 0) {
                if (!frag_push(spare, fr.token, 0, 0)) goto nomem;
                continue;
            }
            size_t base = fr.off, end = fr.off + fr.len;
            for (;;) {
                const char *m = memmem(text + base, end - base, t, tl);
                if (!m) break;
                size_t at = (size_t)(m - text), left = at - base;
                if (attr & TOK_ATTR_LSTRIP) {
                    while (left > 0 && is_ascii_space(text[base + left - 1])) left--;
                }
                if (left > 0 && !frag_push(spare, -1, base, left)) goto nomem;
                if (!frag_push(spare, id, 0, 0)) goto nomem;
                base = at + tl;
                if (attr & TOK_ATTR_RSTRIP) {
                    while (base < end && is_ascii_space(text[base])) base++;
                }
            }
            if (base < end && !frag_push(spare, -1, base, end - base)) goto nomem;
        }
        frag_list swap = *l;
        *l = *spare;
        *spare = swap;
    }
    return HEARTH_OK;
nomem:
    return error_set(err, HEARTH_ERR_NOMEM, "out of memory splitting %zu bytes of text", len);
}

/* ---------------------------------------------------------------- SentencePiece */

/* Encodes one stretch of text, with a leading space when prefix. */
static hearth_status spm_encode(const hearth_tokenizer *tok, const char *text, size_t len,
                                bool prefix, scratch *s, emitter *e, hearth_error *err) {
    /* Escape spaces: at most 3 bytes per input byte, plus the prefix. */
    if (!grow((void **)&s->buf, &s->buf_cap, 3 * len + 3, 1)) goto nomem;
    char *buf = s->buf;
    size_t bl = 0;
    if (prefix) {
        memcpy(buf, "\xe2\x96\x81", 3);
        bl = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + bl, "\xe2\x96\x81", 3);
            bl += 3;
        } else {
            buf[bl++] = text[i];
        }
    }
    if (bl == 0) return HEARTH_OK;

    /* One symbol per UTF-8 character, as its lead byte announces it (in
     * broken UTF-8 a lead byte may swallow part of an escaped space and
     * leave its other bytes as symbols of their own). */
    size_t n = 0;
    for (size_t off = 0; off < bl; n++) off += utf8_len_lead((uint8_t)buf[off]);
    if (!reserve_symbols(s, n)) goto nomem;
    symbol *sym = s->sym;
    n = 0;
    for (size_t off = 0; off < bl; n++) {
        size_t cl = utf8_len_lead((uint8_t)buf[off]);
        if (cl > bl - off) cl = bl - off;
        sym[n] = (symbol){(int32_t)n - 1, off + cl == bl ? -1 : (int32_t)n + 1, (uint32_t)off,
                          (uint32_t)cl};
        off += cl;
    }
    heap h = {s->big, 0, false};
    merge_all(tok, buf, sym, (int32_t)n, &h);

    for (int32_t i = 0; i != -1; i = sym[i].next) {
        hearth_token id = tok_find(tok, buf + sym[i].start, sym[i].n);
        if (id >= 0) {
            emit(e, id);
            continue;
        }
        for (uint32_t j = 0; j < sym[i].n; j++) {
            uint8_t c = (uint8_t)buf[sym[i].start + j];
            hearth_token bt = tok->byte_token[c] >= 0 ? tok->byte_token[c] : tok->unk;
            if (bt < 0) {
                return error_set(err, HEARTH_ERR_BAD_INPUT,
                                 "cannot encode byte 0x%02X: the vocabulary has no <0x%02X> "
                                 "token and no unknown token",
                                 c, c);
            }
            emit(e, bt);
        }
    }
    return HEARTH_OK;
nomem:
    return error_set(err, HEARTH_ERR_NOMEM, "out of memory encoding %zu bytes", len);
}

/* ---------------------------------------------------------------- byte-level BPE */

/* Encodes one pre-tokenized word of n bytes. */
static hearth_status bpe_word(const hearth_tokenizer *tok, const char *word, size_t n, scratch *s,
                              emitter *e) {
    if (!grow((void **)&s->word, &s->word_cap, 2 * n, 1) || !reserve_symbols(s, n)) {
        return HEARTH_ERR_NOMEM;
    }
    char *w = s->word;
    symbol *sym = s->sym;
    size_t wl = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)word[i];
        sym[i] = (symbol){(int32_t)i - 1, i + 1 == n ? -1 : (int32_t)i + 1, (uint32_t)wl,
                          tok->byte_enc_len[c]};
        memcpy(w + wl, tok->byte_enc[c], tok->byte_enc_len[c]);
        wl += tok->byte_enc_len[c];
    }
    if (tok->ignore_merges) {
        hearth_token id = tok_find(tok, w, wl);
        if (id >= 0) {
            emit(e, id);
            return HEARTH_OK;
        }
    }
    heap h = {s->big, 0, true};
    merge_all(tok, w, sym, (int32_t)n, &h);
    for (size_t i = 0; i < n; i++) {
        if (sym[i].n == 0) continue;
        hearth_token id = tok_find(tok, w + sym[i].start, sym[i].n);
        if (id >= 0) {
            emit(e, id);
            continue;
        }
        /* Not a token although merged (an inconsistent vocabulary): llama.cpp
         * looks each byte of the stand-in text up on its own and drops the
         * ones that are no token. */
        for (uint32_t j = 0; j < sym[i].n; j++) {
            hearth_token bt = tok_find(tok, w + sym[i].start + j, 1);
            if (bt >= 0) emit(e, bt);
        }
    }
    return HEARTH_OK;
}

static hearth_status bpe_encode(const hearth_tokenizer *tok, const char *text, size_t len,
                                scratch *s, emitter *e, hearth_error *err) {
    if (!grow((void **)&s->buf, &s->buf_cap, 3 * len + 1, 1)) goto nomem;
    size_t sl = utf8_sanitize(text, len, s->buf);
    /* Every word holds at least one code point, and there are at most len. */
    if (!grow((void **)&s->words, &s->words_cap, len + 1, sizeof *s->words) ||
        !grow((void **)&s->tmp, &s->tmp_cap, len + 1, sizeof *s->tmp)) {
        goto nomem;
    }
    if (!s->md) {
        s->md = pcre2_match_data_create(16, NULL);
        if (!s->md) goto nomem;
    }
    int64_t nw = pretok_split(tok, s->buf, sl, s->words, s->tmp, s->md, err);
    if (nw < 0) return HEARTH_ERR_BAD_INPUT; /* err is filled */
    for (int64_t i = 0; i < nw; i++) {
        if (bpe_word(tok, s->buf + s->words[i].off, s->words[i].len, s, e) != HEARTH_OK) {
            goto nomem;
        }
    }
    return HEARTH_OK;
nomem:
    return error_set(err, HEARTH_ERR_NOMEM, "out of memory encoding %zu bytes", len);
}

/* ---------------------------------------------------------------- public */

hearth_status hearth_tokenize(const hearth_tokenizer *tok, const char *text, size_t len,
                              unsigned flags, hearth_token *out, size_t cap, size_t *n_out,
                              hearth_error *err) {
    if (n_out) *n_out = 0;
    if (!tok || !n_out || (!text && len) || (!out && cap)) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "hearth_tokenize: NULL argument");
    }
    if (len > TOK_MAX_TEXT) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "a text of %zu bytes is above the tokenizer's limit of %zu", len,
                         TOK_MAX_TEXT);
    }
    bool add_special = (flags & HEARTH_TOKENIZE_ADD_SPECIAL) != 0;
    emitter e = {out, cap, 0};
    frag_list frags = {NULL, 0, 0}, spare = {NULL, 0, 0};
    scratch s;
    memset(&s, 0, sizeof s);
    hearth_status st = partition(tok, text, len, (flags & HEARTH_TOKENIZE_PARSE_SPECIAL) != 0,
                                 &frags, &spare, err);
    if (st == HEARTH_OK) {
        if (add_special && tok->add_bos) emit(&e, tok->bos);
        bool after_special = true; /* SentencePiece: the text start counts as one */
        for (size_t i = 0; i < frags.n && st == HEARTH_OK; i++) {
            fragment fr = frags.v[i];
            if (fr.token >= 0) {
                emit(&e, fr.token);
                after_special = true;
            } else if (tok->kind == TOK_KIND_SPM) {
                st = spm_encode(tok, text + fr.off, fr.len, tok->add_space_prefix && after_special,
                                &s, &e, err);
                after_special = false;
            } else {
                st = bpe_encode(tok, text + fr.off, fr.len, &s, &e, err);
            }
        }
        if (add_special && tok->add_eos) emit(&e, tok->eos);
    }
    free(frags.v);
    free(spare.v);
    scratch_free(&s);
    if (st != HEARTH_OK) return st;
    *n_out = e.n;
    if (e.n > cap) {
        return error_set(err, HEARTH_ERR_BUFFER_TOO_SMALL,
                         "the text encodes to %zu tokens but the buffer holds %zu", e.n, cap);
    }
    return HEARTH_OK;
}
