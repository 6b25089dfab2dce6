/* hearth.h — the one public header of hearth, a local-first LLM inference engine.
 *
 * Everything a program embedding hearth needs is declared here: status codes
 * and errors, loading a GGUF model, tokenizing and detokenizing, running the
 * forward pass over a batch of tokens, and sampling.  Module headers under
 * src/ are private.
 *
 * Conventions: every fallible call returns a hearth_status and, when it fails,
 * fills the caller's hearth_error with a message that names the problem.
 * Objects come in create/free pairs; every _free accepts NULL and
 * half-built objects.  Nothing in this library exits or aborts on bad input.
 */
#ifndef HEARTH_H
#define HEARTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HEARTH_VERSION "0.1.0"

/* ---------------------------------------------------------------- errors */

/* Values are never renumbered: they may be stored or sent over the wire. */
typedef enum hearth_status {
    HEARTH_OK = 0,
    HEARTH_ERR_IO = 1,           /* a file could not be opened, read or mapped */
    HEARTH_ERR_BAD_MODEL = 2,    /* a model or tokenizer file is malformed */
    HEARTH_ERR_UNSUPPORTED = 3,  /* well formed, but uses something hearth does not run */
    HEARTH_ERR_NOMEM = 4,        /* an allocation failed */
    HEARTH_ERR_INVALID_ARG = 5,  /* a caller-supplied value is out of range */
    HEARTH_ERR_CONTEXT_FULL = 6, /* a sequence does not fit its context window */
    HEARTH_ERR_BUFFER_TOO_SMALL =
        7,                    /* an output buffer is too small; the size needed is reported */
    HEARTH_ERR_BAD_INPUT = 8, /* text or request content that cannot be processed */
    HEARTH_ERR_INTERNAL = 9,  /* a broken invariant inside hearth (a bug) */
} hearth_status;

typedef struct hearth_error {
    hearth_status code;
    char msg[512]; /* NUL-terminated, one line, no trailing newline */
} hearth_error;

/* Short stable name of a status, e.g. "bad model". */
const char *hearth_status_name(hearth_status status);

/* ---------------------------------------------------------------- tensor types */

/* Tensor element types, numbered as in GGUF files.  Values are never renumbered. */
typedef enum hearth_dtype {
    HEARTH_DTYPE_F32 = 0,
    HEARTH_DTYPE_F16 = 1,
    HEARTH_DTYPE_Q4_0 = 2,
    HEARTH_DTYPE_Q4_1 = 3,
    HEARTH_DTYPE_Q5_0 = 6,
    HEARTH_DTYPE_Q5_1 = 7,
    HEARTH_DTYPE_Q8_0 = 8,
    HEARTH_DTYPE_Q8_1 = 9,
    HEARTH_DTYPE_Q2_K = 10,
    HEARTH_DTYPE_Q3_K = 11,
    HEARTH_DTYPE_Q4_K = 12,
    HEARTH_DTYPE_Q5_K = 13,
    HEARTH_DTYPE_Q6_K = 14,
    HEARTH_DTYPE_Q8_K = 15,
    HEARTH_DTYPE_IQ2_XXS = 16,
    HEARTH_DTYPE_IQ2_XS = 17,
    HEARTH_DTYPE_IQ3_XXS = 18,
    HEARTH_DTYPE_IQ1_S = 19,
    HEARTH_DTYPE_IQ4_NL = 20,
    HEARTH_DTYPE_IQ3_S = 21,
    HEARTH_DTYPE_IQ2_S = 22,
    HEARTH_DTYPE_IQ4_XS = 23,
    HEARTH_DTYPE_I8 = 24,
    HEARTH_DTYPE_I16 = 25,
    HEARTH_DTYPE_I32 = 26,
    HEARTH_DTYPE_I64 = 27,
    HEARTH_DTYPE_F64 = 28,
    HEARTH_DTYPE_IQ1_M = 29,
    HEARTH_DTYPE_BF16 = 30,
    HEARTH_DTYPE_TQ1_0 = 34,
    HEARTH_DTYPE_TQ2_0 = 35,
    HEARTH_DTYPE_COUNT = 36 /* one past the largest value; not every value below is a type */
} hearth_dtype;

/* Name such as "Q4_0", or NULL when the value is not a known type. */
const char *hearth_dtype_name(hearth_dtype type);

/* ---------------------------------------------------------------- tokenizer */

typedef int32_t hearth_token;
typedef struct hearth_tokenizer hearth_tokenizer;

/* Flags for hearth_tokenize. */
enum {
    HEARTH_TOKENIZE_ADD_SPECIAL = 1u << 0,   /* add BOS/EOS as the vocabulary asks */
    HEARTH_TOKENIZE_PARSE_SPECIAL = 1u << 1, /* text like "<|im_start|>" becomes control tokens */
};

/* Flags for hearth_detokenize and hearth_detok_push. */
enum {
    HEARTH_DETOK_RENDER_SPECIAL = 1u << 0,     /* write control tokens as their text */
    HEARTH_DETOK_KEEP_LEADING_SPACE = 1u << 1, /* do not strip SentencePiece's dummy prefix */
};

/* Loads the tokenizer of a GGUF file (a full model or a vocab-only file). */
hearth_status hearth_tokenizer_load(const char *path, hearth_tokenizer **out, hearth_error *err);
void hearth_tokenizer_free(hearth_tokenizer *tok);

int32_t hearth_tokenizer_n_vocab(const hearth_tokenizer *tok);
hearth_token hearth_tokenizer_bos(const hearth_tokenizer *tok); /* -1 when none */
hearth_token hearth_tokenizer_eos(const hearth_tokenizer *tok); /* -1 when none */
/* Bytes of the longest token text of the vocabulary. */
size_t hearth_tokenizer_max_piece(const hearth_tokenizer *tok);
/* True for tokens that end a generation (EOS, EOT, <|im_end|> …). */
bool hearth_tokenizer_is_eog(const hearth_tokenizer *tok, hearth_token id);

/* Encodes len bytes of UTF-8 text.  Writes at most cap ids to out and sets
 * *n_out to the number of ids the text encodes to; returns
 * HEARTH_ERR_BUFFER_TOO_SMALL when that number exceeds cap. */
hearth_status hearth_tokenize(const hearth_tokenizer *tok, const char *text, size_t len,
                              unsigned flags, hearth_token *out, size_t cap, size_t *n_out,
                              hearth_error *err);

/* Decodes n ids to UTF-8.  Writes at most cap bytes (no NUL) and sets *n_out
 * to the length of the whole text; HEARTH_ERR_BUFFER_TOO_SMALL when it does
 * not fit.  A leading space that SentencePiece added is removed unless
 * HEARTH_DETOK_KEEP_LEADING_SPACE is given. */
hearth_status hearth_detokenize(const hearth_tokenizer *tok, const hearth_token *ids, size_t n,
                                unsigned flags, char *out, size_t cap, size_t *n_out,
                                hearth_error *err);

/* Streaming detokenizer: feed one id at a time and get back only complete
 * UTF-8 characters, so a character split across tokens is never printed
 * half.  The struct is plain data; zero it (or call hearth_detok_reset)
 * before the first token of a sequence. */
typedef struct hearth_detok {
    unsigned flags;
    bool started;       /* text was emitted (or given) already: keep leading spaces */
    uint8_t pending[8]; /* bytes of an unfinished UTF-8 character */
    uint32_t n_pending;
} hearth_detok;

void hearth_detok_reset(hearth_detok *d, unsigned flags);
/* Appends the text of id to out (at most cap bytes); returns the number of
 * bytes written.  A cap of 3 x hearth_tokenizer_max_piece(tok) + 8 always
 * holds a token's text with pending bytes (invalid bytes grow to U+FFFD);
 * text beyond cap is cut, never mid-character. */
size_t hearth_detok_push(hearth_detok *d, const hearth_tokenizer *tok, hearth_token id, char *out,
                         size_t cap);
/* Emits what is pending at the end of a stream (invalid bytes become U+FFFD). */
size_t hearth_detok_flush(hearth_detok *d, char *out, size_t cap);

/* ---------------------------------------------------------------- model */

typedef struct hearth_model hearth_model;

typedef struct hearth_model_params {
    bool use_mmap; /* map the file read-only (default true) */
} hearth_model_params;

hearth_model_params hearth_model_default_params(void);

/* Loads a GGUF model: validates the file, binds every weight, checks every
 * shape against the hyper-parameters. */
hearth_status hearth_model_load(const char *path, const hearth_model_params *params,
                                hearth_model **out, hearth_error *err);
void hearth_model_free(hearth_model *model);

const hearth_tokenizer *hearth_model_tokenizer(const hearth_model *model);
int32_t hearth_model_n_vocab(const hearth_model *model);
uint32_t hearth_model_n_ctx_train(const hearth_model *model);
/* One line describing the model, e.g. "llama 5 layers dim 64 Q4_0". */
const char *hearth_model_desc(const hearth_model *model);
/* Bytes of weights one generated token reads: every matrix of a dense
 * model; for mixture-of-experts layers the router and only the experts a
 * token is routed to (plus a shared expert); one embedding row. */
uint64_t hearth_model_bytes_per_token(const hearth_model *model);

/* ---------------------------------------------------------------- context */

typedef enum hearth_kv_type {
    HEARTH_KV_F16 = 0, /* default: half the memory, the rounding llama.cpp uses */
    HEARTH_KV_F32 = 1,
} hearth_kv_type;

typedef struct hearth_context_params {
    uint32_t n_ctx;   /* positions per sequence; 0 = the model's training context */
    uint32_t n_batch; /* most tokens one hearth_decode call may carry */
    uint32_t n_seq;   /* sequences that share the KV cache */
    int n_threads;    /* 0 = one per online core */
    hearth_kv_type kv_type;
} hearth_context_params;

hearth_context_params hearth_context_default_params(void);

/* A context owns the KV cache, the scratch buffers and the thread pool for
 * running one model.  Everything is allocated here, nothing per token. */
typedef struct hearth_context hearth_context;

hearth_status hearth_context_create(const hearth_model *model, const hearth_context_params *params,
                                    hearth_context **out, hearth_error *err);
void hearth_context_free(hearth_context *ctx);
uint32_t hearth_context_n_ctx(const hearth_context *ctx);

/* A batch of tokens for one forward pass.  Token i goes to sequence seq[i]
 * at position pos[i]; positions of one sequence must follow what its cache
 * holds.  logits[i] asks for that token's output logits. */
typedef struct hearth_batch {
    uint32_t n;
    const hearth_token *tokens; /* (n) */
    const int32_t *pos;         /* (n) */
    const int32_t *seq;         /* (n), each < n_seq */
    const bool *logits;         /* (n); NULL = logits for the last token only */
} hearth_batch;

hearth_status hearth_decode(hearth_context *ctx, const hearth_batch *batch, hearth_error *err);
/* Logits (n_vocab floats) of batch token i from the last hearth_decode, or
 * NULL when they were not asked for. */
const float *hearth_get_logits(const hearth_context *ctx, uint32_t i);
/* Forgets positions >= from of sequence seq (0 clears it). */
void hearth_kv_truncate(hearth_context *ctx, int32_t seq, int32_t from);

/* ---------------------------------------------------------------- sampling */

typedef struct hearth_sampler hearth_sampler;

typedef struct hearth_sampler_params {
    float temperature;       /* <= 0: greedy */
    int32_t top_k;           /* <= 0: off */
    float top_p;             /* >= 1: off */
    float min_p;             /* <= 0: off */
    float repeat_penalty;    /* 1: off; divides positive logits of recent tokens */
    float presence_penalty;  /* 0: off */
    float frequency_penalty; /* 0: off */
    int32_t penalty_last_n;  /* how many recent tokens the penalties look at */
    uint64_t seed;           /* runs with the same seed sample the same tokens */
} hearth_sampler_params;

hearth_sampler_params hearth_sampler_default_params(void);

hearth_status hearth_sampler_create(const hearth_sampler_params *params, int32_t n_vocab,
                                    hearth_sampler **out, hearth_error *err);
void hearth_sampler_free(hearth_sampler *s);
/* Picks the next token from n_vocab logits (not modified). */
hearth_token hearth_sampler_sample(hearth_sampler *s, const float *logits);
/* Records a token of the sequence (prompt or generated) for the penalties. */
void hearth_sampler_accept(hearth_sampler *s, hearth_token id);
void hearth_sampler_reset(hearth_sampler *s);

#ifdef __cplusplus
}
#endif

#endif /* HEARTH_H */
