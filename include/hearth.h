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
#include <stdio.h>

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
        7,                       /* an output buffer is too small; the size needed is reported */
    HEARTH_ERR_BAD_INPUT = 8,    /* text or request content that cannot be processed */
    HEARTH_ERR_INTERNAL = 9,     /* a broken invariant inside hearth (a bug) */
    HEARTH_ERR_OVER_BUDGET = 10, /* the memory plan exceeds the memory budget */
    HEARTH_ERR_OS_LIMIT = 11,    /* a limit of the system forbids it (e.g. RLIMIT_MEMLOCK) */
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

/* The type unquantized weight matrices (F32, F16, BF16; 2-D and stacked
 * experts, embeddings included) are multiplied in.  Other than
 * HEARTH_COMPUTE_FILE, such matrices are cast at load into new memory;
 * norms and biases stay F32 and quantized matrices are never touched.
 * Values are never renumbered. */
typedef enum hearth_compute_type {
    HEARTH_COMPUTE_FILE = 0, /* keep every weight as the file stores it (default) */
    HEARTH_COMPUTE_AUTO = 1, /* what this CPU multiplies fastest: BF16 with AVX512_BF16,
                                F16 with F16C, else F32 */
    HEARTH_COMPUTE_F32 = 2,
    HEARTH_COMPUTE_F16 = 3,
    HEARTH_COMPUTE_BF16 = 4,
} hearth_compute_type;

/* The default memory budget, in percent of physical RAM (MemTotal). */
#define HEARTH_DEFAULT_BUDGET_PERCENT 90
/* A memory_budget meaning "no budget". */
#define HEARTH_BUDGET_UNLIMITED UINT64_MAX

/* Reports progress of a long step of loading: phase is "reading",
 * "casting", "pre-faulting" or "locking"; done of total bytes. */
typedef void (*hearth_progress_fn)(const char *phase, uint64_t done, uint64_t total, void *arg);

typedef struct hearth_model_params {
    bool use_mmap;  /* map the file read-only (default true); false reads it into memory */
    bool use_mlock; /* pin weights, KV caches and scratch in RAM with mlock(2); the load is
                       refused when RLIMIT_MEMLOCK cannot hold them (default false) */
    bool prefault;  /* touch every page of the weights at load, and of the KV cache and
                       scratch when a context is created (implied by use_mlock) */
    hearth_compute_type compute_type; /* default HEARTH_COMPUTE_FILE */
    /* Bytes the model and all its contexts may hold; 0 (default) means
     * HEARTH_DEFAULT_BUDGET_PERCENT of physical RAM, HEARTH_BUDGET_UNLIMITED
     * none.  A load or context beyond it is refused with
     * HEARTH_ERR_OVER_BUDGET before anything is allocated. */
    uint64_t memory_budget;
    hearth_progress_fn progress; /* may be NULL */
    void *progress_arg;
} hearth_model_params;

hearth_model_params hearth_model_default_params(void);

/* Loads a GGUF model: validates the file, binds every weight, checks every
 * shape against the hyper-parameters.  The weights' memory (the file less
 * pages given back after casting, plus cast copies) is checked against the
 * budget before any of it is read, and with use_mlock against
 * RLIMIT_MEMLOCK (HEARTH_ERR_OS_LIMIT, saying how to raise it). */
hearth_status hearth_model_load(const char *path, const hearth_model_params *params,
                                hearth_model **out, hearth_error *err);
void hearth_model_free(hearth_model *model);

const hearth_tokenizer *hearth_model_tokenizer(const hearth_model *model);
int32_t hearth_model_n_vocab(const hearth_model *model);
uint32_t hearth_model_n_ctx_train(const hearth_model *model);
/* One line describing the model, e.g. "llama 5 layers dim 64 Q4_0". */
const char *hearth_model_desc(const hearth_model *model);
/* A string metadata value of the model file (e.g. "tokenizer.chat_template"):
 * a pointer to len bytes, not NUL-terminated, valid while the model lives;
 * NULL when the key is absent or not a string. */
const char *hearth_model_meta_str(const hearth_model *model, const char *key, size_t *len);
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
    uint32_t n_outputs; /* most tokens of one batch that may ask for logits; 0 = n_batch
                           (a generator needs 1: the logits take n_outputs x n_vocab floats) */
} hearth_context_params;

hearth_context_params hearth_context_default_params(void);

/* A context owns the KV cache, the scratch buffers and the thread pool for
 * running one model.  Everything is allocated here, nothing per token.
 * The KV cache and scratch count against the model's memory budget: a
 * context they do not fit beside the model and its other live contexts is
 * refused with HEARTH_ERR_OVER_BUDGET (freeing a context gives its share
 * back).  With the model's use_mlock they are locked, with prefault
 * touched. */
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
/* Positions sequence seq holds in the cache (0 for an id out of range). */
int32_t hearth_kv_len(const hearth_context *ctx, int32_t seq);
/* Copies the first n_pos cached positions of sequence src, every layer, to
 * sequence dst, which then holds exactly those n_pos positions (its own are
 * dropped).  For a prefix cache: sequences that share a prompt prefix share
 * its keys and values.  HEARTH_ERR_INVALID_ARG when an id is out of range,
 * dst == src, or src holds fewer than n_pos positions. */
hearth_status hearth_kv_copy(hearth_context *ctx, int32_t dst, int32_t src, int32_t n_pos,
                             hearth_error *err);

/* ---------------------------------------------------------------- memory */

/* What running a model will hold in memory, computed from the file's
 * header alone (hearth_model_plan) before anything is loaded.  The figures
 * are exact: they come from the functions the loader and
 * hearth_context_create allocate with. */
typedef struct hearth_memory_plan {
    uint64_t file_bytes;            /* the model file: mapped, or read into memory */
    uint64_t weight_bytes;          /* of which tensor data the model binds */
    uint64_t cast_bytes;            /* new memory for weights cast to the compute type */
    uint64_t released_bytes;        /* file pages given back once their tensors are cast */
    uint64_t model_bytes;           /* file - released + cast: what the loaded model holds */
    uint64_t kv_bytes;              /* KV cache of the context asked for */
    uint64_t scratch_bytes;         /* scratch buffers of that context */
    uint64_t total_bytes;           /* model + KV + scratch */
    uint64_t budget_bytes;          /* the budget it is checked against */
    bool budget_default;            /* HEARTH_DEFAULT_BUDGET_PERCENT of RAM, not asked for */
    uint64_t ram_bytes;             /* physical RAM (MemTotal) */
    uint32_t n_cast;                /* weight tensors cast */
    hearth_dtype compute_dtype;     /* their new type; HEARTH_DTYPE_COUNT when none is asked */
    const char *compute_why;        /* how it was chosen, e.g. "auto: AVX512_BF16" (static) */
    uint32_t n_ctx_train;           /* the model's training context */
    uint32_t n_ctx, n_seq, n_batch; /* the context planned (0 when none) */
    int n_threads;
} hearth_memory_plan;

/* Plans loading path with mparams (NULL: defaults) and creating one
 * context with cparams (NULL: no context, only the model).  Fills *plan
 * and returns HEARTH_OK when it fits the budget; HEARTH_ERR_OVER_BUDGET
 * with the whole breakdown on one line in err when it does not (*plan is
 * filled then too); HEARTH_ERR_OS_LIMIT when use_mlock is asked and
 * RLIMIT_MEMLOCK is too low; the load errors for a bad file. */
hearth_status hearth_model_plan(const char *path, const hearth_model_params *mparams,
                                const hearth_context_params *cparams, hearth_memory_plan *plan,
                                hearth_error *err);
/* Prints the plan as a table (one line per figure) to fp. */
void hearth_memory_plan_print(const hearth_memory_plan *plan, FILE *fp);

/* Where the memory of a loaded model and its live contexts is now. */
typedef struct hearth_memory_report {
    uint64_t mapped_bytes;          /* the model file's memory (mapping or read copy) */
    uint64_t mapped_resident_bytes; /* of it in RAM now (mincore; page cache for a mapping) */
    uint64_t released_bytes;        /* of it given back after casting */
    uint64_t cast_bytes;            /* cast copies of weights */
    uint64_t kv_bytes;              /* KV caches of live contexts */
    uint64_t scratch_bytes;         /* scratch of live contexts */
    uint32_t n_contexts;
    uint64_t committed_bytes; /* model + contexts: what counts against the budget */
    uint64_t budget_bytes;
    bool budget_default;          /* HEARTH_DEFAULT_BUDGET_PERCENT of RAM, not asked for */
    uint64_t free_bytes;          /* budget - committed */
    uint64_t resident_bytes;      /* VmRSS of the process */
    uint64_t locked_bytes;        /* VmLck of the process */
    uint64_t ram_bytes;           /* MemTotal */
    uint64_t ram_available_bytes; /* MemAvailable */
    bool mmap, mlock;
    uint32_t n_cast;            /* weight tensors cast */
    hearth_dtype compute_dtype; /* HEARTH_DTYPE_COUNT when weights run as stored */
    const char *compute_why;    /* static */
} hearth_memory_report;

/* Fills *out for model (the process figures from /proc/self/status; 0
 * where the system does not say). */
void hearth_memory_report_get(const hearth_model *model, hearth_memory_report *out);
/* Prints the report as one table to fp. */
void hearth_memory_report_print(const hearth_memory_report *r, FILE *fp);

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
