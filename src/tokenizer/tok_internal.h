/* tok_internal.h — the tokenizer's shared internals (private to src/tokenizer/).
 *
 * One hearth_tokenizer holds everything that encoding and decoding need,
 * copied out of the GGUF metadata at load time: the token texts, scores and
 * attributes, a hash table from text to id, the BPE merge table, the list of
 * special tokens that are cut out of text before the tokenizer proper runs,
 * the decoded text ("piece") of every token, and the compiled pre-tokenizer
 * regexes.  After tokenizer_create the object is read-only, so one tokenizer
 * may serve any number of threads at once; every call allocates its own
 * scratch space.
 *
 * The behaviour follows llama.cpp's tokenizer (src/llama-vocab.cpp), which
 * produced the test vectors in shared/vocab; where hearth departs from it on
 * purpose, the comment at the departure says so.
 */
#ifndef HEARTH_TOK_INTERNAL_H
#define HEARTH_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hearth.h"
#include "tokenizer/utf8.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* The two tokenizer algorithms hearth runs. */
typedef enum tok_kind {
    TOK_KIND_SPM = 0, /* tokenizer.ggml.model "llama": SentencePiece BPE with byte fallback */
    TOK_KIND_BPE = 1, /* tokenizer.ggml.model "gpt2": byte-level BPE with merges */
} tok_kind;

/* Token attributes, from tokenizer.ggml.token_type (1 normal, 2 unknown,
 * 3 control, 4 user-defined, 5 unused, 6 byte; anything else undefined)
 * plus the strip flags a few models set on their special tokens. */
enum {
    TOK_ATTR_UNDEFINED = 0,
    TOK_ATTR_UNKNOWN = 1u << 0,
    TOK_ATTR_UNUSED = 1u << 1,
    TOK_ATTR_NORMAL = 1u << 2,
    TOK_ATTR_CONTROL = 1u << 3,
    TOK_ATTR_USER_DEFINED = 1u << 4,
    TOK_ATTR_BYTE = 1u << 5,
    TOK_ATTR_LSTRIP = 1u << 6, /* whitespace before the token is dropped when it is cut out */
    TOK_ATTR_RSTRIP = 1u << 7, /* whitespace after it is dropped */
};

/* Tokens cut out of text before tokenizing; with PARSE_SPECIAL all of these,
 * otherwise only the user-defined ones (as llama.cpp and Hugging Face do). */
#define TOK_ATTR_SPECIAL (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)
/* Tokens whose text is not written unless HEARTH_DETOK_RENDER_SPECIAL. */
#define TOK_ATTR_HIDDEN (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)

#define TOK_MAX_REGEX 8

/* An open-addressing hash table of ids keyed by byte strings that live
 * elsewhere (slot = id, or -1 when empty); the size is a power of two at
 * least twice the number of keys, so probes stay short. */
typedef struct tok_table {
    int32_t *slots;
    uint64_t mask; /* number of slots - 1 */
} tok_table;

struct hearth_tokenizer {
    tok_kind kind;
    int pre;         /* pretok_family, for BPE */
    int32_t n_vocab; /* >= 1 */

    /* Token texts exactly as in the file (an empty text becomes "[EMPTY_i]"
     * as in llama.cpp); the text of id i is text[text_off[i] .. text_off[i+1]). */
    char *text;
    uint32_t *text_off; /* (n_vocab + 1) */
    float *score;       /* (n_vocab); 0 when the file has no scores */
    uint8_t *attr;      /* (n_vocab) TOK_ATTR_* bits */
    uint8_t *eog;       /* (n_vocab) 1 for tokens that end a generation */
    tok_table by_text;  /* text -> id; for duplicate texts the last id wins */

    /* What each token decodes to (control tokens included); the piece of id
     * i is piece[piece_off[i] .. piece_off[i+1]). */
    char *piece;
    uint32_t *piece_off; /* (n_vocab + 1) */
    uint32_t max_piece_len;

    /* BPE merges: merge r is "left right" stored in merge_text from
     * merge_off[r], its left part merge_left[r] bytes long; the table maps a
     * (left, right) pair to its rank, the first of duplicates winning. */
    char *merge_text;
    uint32_t *merge_off;  /* (n_merges + 1) */
    uint32_t *merge_left; /* (n_merges) */
    int32_t n_merges;
    tok_table merges;

    /* Special tokens (attr & TOK_ATTR_SPECIAL), longest text first. */
    int32_t *special;
    int32_t n_special;

    hearth_token bos, eos, eot, eom, unk; /* -1 when none */
    bool add_bos, add_eos;
    bool add_space_prefix; /* SPM: a space before the text, stripped again on decode */
    bool ignore_merges;    /* BPE: a word that is a whole token skips the merges */

    hearth_token byte_token[256]; /* SPM byte fallback: id of "<0xXX>", -1 when none */
    uint8_t byte_enc[256][2];     /* BPE: the code point standing for each byte, UTF-8 */
    uint8_t byte_enc_len[256];

    pcre2_code *re[TOK_MAX_REGEX]; /* pre-tokenizer regexes, applied in turn */
    int n_re;
};

/* ---- hashing (vocab.c) */

uint64_t tok_hash(const char *p, size_t n);
/* Id of the token whose text is p[0..n), or -1. */
hearth_token tok_find(const hearth_tokenizer *tok, const char *p, size_t n);
/* Rank of the merge of left and right, or -1. */
int32_t tok_merge_rank(const hearth_tokenizer *tok, const char *l, size_t nl, const char *r,
                       size_t nr);

static inline const char *tok_text(const hearth_tokenizer *tok, int32_t id, size_t *len) {
    *len = tok->text_off[id + 1] - tok->text_off[id];
    return tok->text + tok->text_off[id];
}

/* ---- pre-tokenizer (pretok.c) */

/* Pre-tokenizer families: each is a list of regexes applied in turn. */
typedef enum pretok_family {
    PRETOK_DEFAULT = 0,
    PRETOK_GPT2,
    PRETOK_LLAMA3,
    PRETOK_QWEN2,
    PRETOK_DEEPSEEK_LLM,
    PRETOK_DEEPSEEK_CODER,
    PRETOK_DEEPSEEK3_LLM,
    PRETOK_FALCON,
    PRETOK_STARCODER,
    PRETOK_PORO,
    PRETOK_VIKING,
    PRETOK_TEKKEN,
    PRETOK_CHAMELEON,
} pretok_family;

/* Settings a tokenizer.ggml.pre name implies (llama.cpp's table). */
typedef struct pretok_info {
    pretok_family family;
    bool add_bos;       /* BOS by default */
    bool ignore_merges; /* whole-token words skip the merges */
    bool no_bos;        /* the default BOS id does not apply */
} pretok_info;

/* Looks up a tokenizer.ggml.pre name; false when hearth does not know it. */
bool pretok_lookup(const char *name, pretok_info *out);
/* Compiles the regexes of tok->pre into tok->re (JIT when available). */
hearth_status pretok_compile(hearth_tokenizer *tok, hearth_error *err);

/* A piece of text: bytes [off, off + len) of some buffer. */
typedef struct tok_span {
    size_t off, len;
} tok_span;

/* Splits text[0..len) (valid UTF-8) into words with the tokenizer's regexes:
 * each regex splits every current word into its matches and the gaps
 * between them.  words must have room for len entries (a word is never
 * empty) and tmp the same; returns the number of words, or a negative
 * value after filling err. */
int64_t pretok_split(const hearth_tokenizer *tok, const char *text, size_t len, tok_span *words,
                     tok_span *tmp, pcre2_match_data *md, hearth_error *err);

/* ---- UTF-8 (utf8.c) */

/* Length of the UTF-8 sequence a lead byte announces, as llama.cpp reads it
 * (continuation and invalid bytes count as 1, 0xF0..0xFF as 4). */
static inline size_t utf8_len_lead(uint8_t c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* utf8_encode and utf8_classify: see tokenizer/utf8.h. */

/* Rewrites text[0..len) as valid UTF-8 into out (room for 3 * len bytes),
 * decoding as llama.cpp does: a byte that does not start a well-formed
 * sequence becomes U+FFFD, overlong forms are re-encoded in their short form;
 * surrogates and values above U+10FFFF also become U+FFFD (llama.cpp keeps
 * the first and fails on the second).  Returns the new length. */
size_t utf8_sanitize(const char *text, size_t len, char *out);

/* ---- decoding helpers (decode.c) */

/* Builds tok->piece / piece_off from the texts and attributes. */
hearth_status tok_build_pieces(hearth_tokenizer *tok, hearth_error *err);

#endif
