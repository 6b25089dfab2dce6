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

/* Where a model runs.  AUTO: on a CUDA GPU when hearth was built with CUDA
 * and one is present, else on the CPU. */
typedef enum hearth_device {
    HEARTH_DEVICE_AUTO = 0,
    HEARTH_DEVICE_CPU = 1,
    HEARTH_DEVICE_CUDA = 2,
} hearth_device;

typedef struct hearth_model_params {
    bool use_mmap;  /* map the file read-only (default true); false reads it into memory */
    bool no_repack; /* with use_mmap off, keep the file's layout instead of rewriting matrices
                       in place into the CPU's faster one (default false: repack) */
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
    hearth_device device; /* default HEARTH_DEVICE_AUTO */
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
/* "cpu", or "cuda: <GPU name, memory, compute capability>". */
const char *hearth_model_device(const hearth_model *model);

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
    uint32_t n_repacked;        /* weight tensors rewritten in place into the CPU's faster layout */
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

/* ---------------------------------------------------------------- loop guard */

/* What to do when a loop guard finds a loop.  Values are never renumbered. */
typedef enum hearth_loop_action {
    HEARTH_LOOP_OFF = 0,          /* watch nothing */
    HEARTH_LOOP_STOP_SECTION = 1, /* end the sequence; in sectional generation only this
                                     section ends (cut back to a boundary) and the rest goes on */
    HEARTH_LOOP_STOP = 2,         /* end the generation with finish reason "repetition" */
    HEARTH_LOOP_PENALIZE = 3,     /* go on, lowering the logits of the tokens that would
                                     continue a loop (hearth_loop_guard_penalize) */
} hearth_loop_action;

/* What a loop guard found.  Values are never renumbered. */
typedef enum hearth_loop_kind {
    HEARTH_LOOP_NONE = 0,
    HEARTH_LOOP_CYCLE = 1,    /* the latest tokens repeat with a period of 1..max_period */
    HEARTH_LOOP_COLLAPSE = 2, /* the window holds too few distinct n-grams */
    HEARTH_LOOP_SPAN = 3,     /* the latest span_len tokens occurred before, anywhere in the
                                 history (in sectional generation: in any section) */
} hearth_loop_kind;

/* "none", "cycle", "collapse", "span". */
const char *hearth_loop_kind_name(hearth_loop_kind kind);
/* Parses "off", "stop" (HEARTH_LOOP_STOP_SECTION), "stop-repetition"
 * (HEARTH_LOOP_STOP) or "penalize"/"penalise"; false when s is none of them. */
bool hearth_loop_action_parse(const char *s, hearth_loop_action *out);

typedef struct hearth_loop_guard_params {
    hearth_loop_action action; /* default HEARTH_LOOP_STOP_SECTION */
    /* Cycles: a period p in 1..max_period is a loop once the tokens that
     * equal the token p earlier run to max(cycle_min_tokens,
     * (cycle_min_repeats - 1) x p) in a row (defaults 50, 16, 4). */
    uint32_t max_period; /* at most 256; 0 = no cycle check */
    uint32_t cycle_min_tokens;
    uint32_t cycle_min_repeats;
    /* Collapse: over the last distinct_window tokens, distinct n-grams /
     * n-grams below distinct_min (defaults n = 4, 200 tokens, 0.5).
     * n-grams of one repeated token (indentation) are left to the cycle
     * check. */
    uint32_t distinct_n;      /* 1..8 */
    uint32_t distinct_window; /* at most 8192; 0 = no collapse check */
    float distinct_min;
    /* Spans: the latest span_len tokens equal span_len tokens seen before
     * (default 24; 0 = no span check), among the last history tokens
     * (default 8192). */
    uint32_t span_len; /* 2..1024 */
    uint32_t history;
    float penalty; /* PENALIZE: subtracted from a logit (default 100, i.e. a ban that still
                      leaves the token when nothing else is allowed) */
} hearth_loop_guard_params;

hearth_loop_guard_params hearth_loop_guard_default_params(void);

/* What a guard found so far. */
typedef struct hearth_loop_report {
    hearth_loop_kind kind; /* of the latest finding (NONE when none) */
    uint32_t period;       /* CYCLE: its period in tokens */
    uint32_t loop_tokens;  /* CYCLE, SPAN: trailing tokens that only repeat earlier ones
                              (what a caller that stops may cut); 0 for COLLAPSE */
    uint64_t at;           /* tokens pushed when it was found */
    uint32_t n_cycle, n_collapse, n_span; /* findings since the last reset */
    float distinct_ratio;                 /* of the window now (1 until it is full) */
} hearth_loop_report;

/* Watches one token stream for loops.  Everything is allocated here;
 * pushing a token and penalizing allocate nothing and cost O(max_period +
 * distinct_n) plus a bounded hash lookup.  One guard per sequence. */
typedef struct hearth_loop_guard hearth_loop_guard;

hearth_status hearth_loop_guard_create(const hearth_loop_guard_params *params,
                                       hearth_loop_guard **out, hearth_error *err);
void hearth_loop_guard_free(hearth_loop_guard *g);
/* Forgets the stream (and the findings). */
void hearth_loop_guard_reset(hearth_loop_guard *g);
const hearth_loop_guard_params *hearth_loop_guard_params_of(const hearth_loop_guard *g);
/* Adds the next generated token and returns what it completes: NONE, or
 * the kind of loop found now (each loop is reported once, when it starts).
 * With HEARTH_LOOP_OFF nothing is checked.  The caller acts on a finding
 * as the action says; the guard only reports.  Ids < 0 are ignored. */
hearth_loop_kind hearth_loop_guard_push(hearth_loop_guard *g, hearth_token id);
/* With HEARTH_LOOP_PENALIZE, subtracts params.penalty from the logits
 * (n_vocab of them) of every token that would continue a loop now: the
 * next token of a cycle about to reach its limit, the tokens that followed
 * earlier occurrences of the latest span_len - 1 tokens, and in a
 * collapsed window those that followed the latest distinct_n - 1 tokens.
 * Returns how many logits it lowered (0 for other actions). */
uint32_t hearth_loop_guard_penalize(hearth_loop_guard *g, float *logits, int32_t n_vocab);
void hearth_loop_guard_report_get(const hearth_loop_guard *g, hearth_loop_report *out);

/* ---------------------------------------------------------------- grammars */

/* A tokenizer's vocabulary prepared for grammar masks: every token's bytes
 * (its text as the detokenizer writes it), laid out as a trie in
 * depth-first order, plus the end-of-generation tokens.  Build it once per
 * model (about 35 ms for 150k tokens); it is read-only afterwards, so any
 * number of grammars on any threads may share it.  Control, unknown and
 * unused tokens have no bytes and are never allowed by a grammar; the
 * end-of-generation tokens are allowed exactly when the grammar's text is
 * complete. */
typedef struct hearth_grammar_vocab hearth_grammar_vocab;

hearth_status hearth_grammar_vocab_create(const hearth_tokenizer *tok, hearth_grammar_vocab **out,
                                          hearth_error *err);
void hearth_grammar_vocab_free(hearth_grammar_vocab *v);

/* A grammar and the state of one sequence under it.  The text generated
 * so far is always a prefix of some string of the grammar; sampling masks
 * every token that would break that (hearth_grammar_apply, or the sampler
 * with hearth_sampler_set_grammar).
 *
 * Grammars are GBNF as llama.cpp reads it:
 *     root   ::= "{" ws pair ("," ws pair)* "}"     # comments run to the line end
 *     pair   ::= [a-z]+ ":" ws ("true" | "false" | [0-9]{1,3})
 *     ws     ::= [ \t\n]*
 * Terminals are "literals" and [character classes] (ranges, [^…]
 * negation, escapes \n \r \t \\ \" \] \xHH \uHHHH \UHHHHHHHH) over Unicode
 * code points, matched as UTF-8 bytes; . is any character.  Operators:
 * grouping ( ), alternatives |, repetition * + ? {m} {m,} {m,n}.  Rules
 * may recurse but not on the left (a ::= a "x" is refused).  Every
 * problem — a syntax error (with its line and column), an undefined rule,
 * left recursion, a rule that can never finish, a grammar too large — is
 * an error naming it, never a hang.
 *
 * Matching keeps the set of parser stacks the text so far allows, interns
 * each set as a state and caches its transitions per byte, so a mask walks
 * the vocabulary trie with one table lookup per trie node, skipping every
 * subtree whose prefix is already refused; the masks of recent states are
 * cached too.  Nothing is allocated per token: the caches are sized at
 * creation and emptied when full.  Not thread-safe: one grammar per
 * sequence. */
typedef struct hearth_grammar hearth_grammar;

/* Compiles the GBNF text[0..len) with start rule root (NULL: "root") for
 * the tokens of v, which must outlive the grammar. */
hearth_status hearth_grammar_create_from_gbnf(const hearth_grammar_vocab *v, const char *text,
                                              size_t len, const char *root, hearth_grammar **out,
                                              hearth_error *err);
/* Compiles a JSON schema (UTF-8 JSON text[0..len)) into a grammar of
 * compact JSON (a space or a newline with indentation allowed between
 * tokens).  Supported: type (one or a list), properties, required,
 * additionalProperties (false; true, absent or a schema allow what the
 * properties list — with no properties, any object or a map of that
 * schema), items, minItems, maxItems, enum, const, minLength, maxLength,
 * anyOf, $ref to #/$defs/… or #/definitions/…, nested to 64 levels;
 * string, number, integer, boolean, null, object, array.  {"type":
 * "object"} alone is any JSON object (response_format json_object).
 * Numbers are written with at most 16 digits before and after the point
 * and a two-digit exponent, so every one is a finite double.  Annotations
 * (title, description, default, examples, $schema, $id, $comment) are
 * ignored; any other keyword — pattern, format, minimum, oneOf … — is
 * refused with HEARTH_ERR_UNSUPPORTED naming it and where it is
 * (e.g. "#/properties/age: keyword 'minimum' is not supported"); text that
 * is not JSON or not a schema is HEARTH_ERR_BAD_INPUT. */
hearth_status hearth_grammar_create_from_json_schema(const hearth_grammar_vocab *v,
                                                     const char *schema, size_t len,
                                                     hearth_grammar **out, hearth_error *err);
/* The GBNF a JSON schema compiles to, for inspection: a NUL-terminated
 * string in *out that the caller frees with free(). */
hearth_status hearth_json_schema_to_gbnf(const char *schema, size_t len, char **out,
                                         hearth_error *err);
void hearth_grammar_free(hearth_grammar *g);
/* Back to the start: no text generated yet. */
void hearth_grammar_reset(hearth_grammar *g);
/* Limits the tokens still to come to n (0 = no limit; each accepted token
 * counts one): from then on the mask also refuses tokens after which the
 * grammar could not be finished within the rest, assuming the worst of one
 * byte per token, so a generation capped at n tokens always ends complete
 * when the vocabulary has a token for every byte. */
void hearth_grammar_set_budget(hearth_grammar *g, uint32_t n);
/* Sets to -INFINITY the logits[0..n_logits) of every token the grammar
 * does not allow next (ids past the vocabulary — padded logit rows —
 * included).  Returns HEARTH_OK, or an error when no token is allowed (the
 * grammar is complete and the vocabulary has no end-of-generation token)
 * or its caches cannot hold one step. */
hearth_status hearth_grammar_apply(hearth_grammar *g, float *logits, int32_t n_logits,
                                   hearth_error *err);
/* Advances the grammar by the bytes of token id.  An end-of-generation
 * token is taken when the text is complete.  A token the grammar does not
 * allow is HEARTH_ERR_INVALID_ARG and leaves the state as it was. */
hearth_status hearth_grammar_accept(hearth_grammar *g, hearth_token id, hearth_error *err);
/* Whether the text so far is a whole string of the grammar (it may go on). */
bool hearth_grammar_is_complete(const hearth_grammar *g);
/* Whether it is complete and nothing may follow (only an end token). */
bool hearth_grammar_is_done(const hearth_grammar *g);

/* Attaches a grammar to a sampler (NULL detaches).  From then on
 * hearth_sampler_sample draws only from the tokens the grammar allows
 * (the mask comes before top-k, top-p, min-p and the draw, so they work on
 * the allowed tokens alone), and hearth_sampler_accept advances the
 * grammar.  Attach after the prompt was accepted: prompt tokens are not
 * grammar text.  The sampler borrows g; it must outlive the sampler or be
 * detached.  hearth_sampler_reset does not reset it.  With a grammar,
 * hearth_sampler_sample returns -1 when no token is allowed (see
 * hearth_grammar_apply; hearth_sampler_error says why); end tokens are
 * allowed once the text is complete, and only they when nothing may follow. */
void hearth_sampler_set_grammar(hearth_sampler *s, hearth_grammar *g);
/* Attaches a loop guard (NULL detaches), borrowed as a grammar is:
 * hearth_sampler_accept pushes every token into it, and with
 * HEARTH_LOOP_PENALIZE sampling lowers the logits of tokens that would
 * continue a loop.  After each accept the caller reads
 * hearth_sampler_loop_found (or the guard's report) and acts on STOP. */
void hearth_sampler_set_loop_guard(hearth_sampler *s, hearth_loop_guard *g);
/* What the guard found at the latest accepted token (HEARTH_LOOP_NONE
 * without a guard). */
hearth_loop_kind hearth_sampler_loop_found(const hearth_sampler *s);
/* Why the latest hearth_sampler_sample returned -1, or why the grammar
 * refused a token given to hearth_sampler_accept since ("" when neither). */
const char *hearth_sampler_error(const hearth_sampler *s);

/* ---------------------------------------------------------------- sectional generation */

/* Long texts as bounded sections instead of one runaway completion: (a)
 * an outline — given, or asked of the model — (b) each section generated
 * as its own sequence from a prompt carrying the topic, the outline, its
 * heading and a short tail of the section before (never the whole
 * draft), bounded to min..max tokens and ending at a sentence or
 * paragraph end, (c) the sections stitched in order and handed out one by
 * one as they complete in order.  Sections that do not wait for another's
 * tail run as parallel sequences of one batch.  Every section has a loop
 * guard, and all of them share one span history, so a section that starts
 * to copy another is a loop too. */

#define HEARTH_SECTIONS_MAX    64         /* sections per generation */
#define HEARTH_SECTION_OUTLINE UINT32_MAX /* the job and callback index of the outline */

/* Which sections wait for which.  Values are never renumbered. */
typedef enum hearth_sections_order {
    HEARTH_SECTIONS_CHAINED = 0,   /* each carries the previous one's tail: one at a time */
    HEARTH_SECTIONS_PARALLEL = 1,  /* no tails: all at once */
    HEARTH_SECTIONS_ALTERNATE = 2, /* sections 2, 4, … (1-based) carry the tail of the one
                                      before; 1, 3, 5, … carry none: two waves of parallel
                                      sequences */
} hearth_sections_order;

/* How a section ended.  Values are never renumbered. */
typedef enum hearth_section_end {
    HEARTH_SECTION_RUNNING = 0,
    HEARTH_SECTION_BOUNDARY = 1, /* a sentence or paragraph ended after min_tokens */
    HEARTH_SECTION_LENGTH = 2,   /* max_tokens: cut back to its last sentence end */
    HEARTH_SECTION_EOG = 3,      /* the model ended it */
    HEARTH_SECTION_LOOP = 4,     /* the loop guard stopped it: cut back to the last sentence
                                    end before the loop */
    HEARTH_SECTION_CONTEXT = 5,  /* its sequence ran out of context */
    HEARTH_SECTION_SKIPPED = 6,  /* not written (or dropped unfinished): the generation stopped */
} hearth_section_end;

/* "running", "boundary", "length", "eog", "loop", "context", "skipped". */
const char *hearth_section_end_name(hearth_section_end e);

/* What a prompt is for, handed to a hearth_section_format_fn. */
typedef struct hearth_section_prompt {
    uint32_t index; /* 0-based section, or HEARTH_SECTION_OUTLINE */
    uint32_t n_sections;
    const char *topic;   /* NUL-terminated */
    const char *outline; /* the headings as "1. …\n2. …\n"; "" when asking for it */
    const char *heading; /* this section's; "" for the outline */
    const char *tail;    /* the end of the previous section's text, or "" */
} hearth_section_prompt;

/* Writes the prompt text for what into out (at most cap bytes, no NUL
 * needed) and returns its full length; when that is over cap it is called
 * again with room for it.  hearth_sections_format_plain is the default:
 * plain continuation text for base models; a server passes one that
 * applies the model's chat template. */
typedef size_t (*hearth_section_format_fn)(const hearth_section_prompt *what, char *out, size_t cap,
                                           void *arg);
size_t hearth_sections_format_plain(const hearth_section_prompt *what, char *out, size_t cap,
                                    void *arg);

typedef struct hearth_sections_params {
    const char *topic;           /* what to write (required, NUL-terminated) */
    const char *outline;         /* NULL: the model writes one; else headings one per line
                                    ("#", "-", "*" and "1." prefixes are dropped) */
    uint32_t n_sections;         /* 1..HEARTH_SECTIONS_MAX; 0 with an outline: one per line */
    uint32_t min_tokens;         /* a section ends at the first sentence or paragraph end
                                    after min_tokens (default 250) */
    uint32_t max_tokens;         /* and at max_tokens at the latest (default 400; <= 8192) */
    uint32_t tail_tokens;        /* tokens of the previous section's end in a prompt (default 48) */
    uint32_t outline_max_tokens; /* default 200 */
    hearth_sections_order order; /* default HEARTH_SECTIONS_CHAINED */
    uint32_t max_parallel;       /* sequences at once (default 8) */
    bool headings;               /* put "## heading" before each section's text (default true) */
    hearth_sampler_params sampling;  /* section i draws with seed + i */
    hearth_loop_guard_params guard;  /* default action HEARTH_LOOP_STOP_SECTION; with
                                        HEARTH_LOOP_STOP a loop ends the whole generation */
    hearth_section_format_fn format; /* NULL: hearth_sections_format_plain */
    void *format_arg;
    /* Instead of format and tokenizing its text: writes a prompt's tokens
     * itself (a server placing a chat template's control tokens by id)
     * into out, at most cap, setting *n_out; HEARTH_ERR_BUFFER_TOO_SMALL
     * when they do not fit.  Gets format_arg.  NULL: format. */
    hearth_status (*prompt_tokens)(const hearth_section_prompt *what, hearth_token *out, size_t cap,
                                   size_t *n_out, void *arg, hearth_error *err);
} hearth_sections_params;

hearth_sections_params hearth_sections_default_params(void);

/* One finished section (or the outline), handed out in order. */
typedef struct hearth_section_info {
    uint32_t index;      /* 0-based, or HEARTH_SECTION_OUTLINE */
    const char *heading; /* NUL-terminated ("" for the outline) */
    const char *text;    /* the section's text after cuts (the outline as "1. …\n…") */
    size_t text_len;
    uint32_t n_tokens;    /* tokens kept */
    uint32_t n_generated; /* tokens generated, cut ones included */
    uint32_t n_prompt;    /* tokens of its prompt */
    hearth_section_end end;
    hearth_loop_kind loop; /* the guard's finding when end is HEARTH_SECTION_LOOP */
} hearth_section_info;

/* Receives each section (the outline first, when the model wrote it) as
 * soon as it and all before it are done; the pointers live until the
 * call returns.  Return false to stop the generation. */
typedef bool (*hearth_section_fn)(const hearth_section_info *section, void *arg);

typedef struct hearth_sections hearth_sections;

/* Plans a sectional generation for tok's vocabulary: checks params,
 * allocates everything (max_parallel samplers and guards, prompt and
 * token buffers).  When an outline is given its sections are ready at
 * once; else the outline is the first job. */
hearth_status hearth_sections_create(const hearth_tokenizer *tok, const hearth_sections_params *p,
                                     hearth_sections **out, hearth_error *err);
void hearth_sections_free(hearth_sections *g);

/* Runs the whole generation on model with a context of its own, one
 * sequence per job that may run at once (min(max_parallel, jobs); cp
 * gives n_ctx — default the model's, at most 4096 —, n_batch, n_threads
 * and kv_type; NULL: defaults): prefills each prompt as its job starts,
 * then decodes one token of every running job per batch, and calls cb
 * (may be NULL; false stops) for each section in order.  Returns HEARTH_OK
 * when the generation ran to its end (guard stops are not errors), else
 * the error of a prompt, the context or the forward pass. */
hearth_status hearth_sections_run(hearth_sections *g, const hearth_model *model,
                                  const hearth_context_params *cp, hearth_section_fn cb, void *arg,
                                  hearth_error *err);

/* The same steps one at a time, for a scheduler that runs its own batches:
 *   while (!hearth_sections_done(g)) {
 *       while (hearth_sections_next_job(g, &job, &err) == HEARTH_OK && job.prompt) start it;
 *       for each running job: sample with job.sampler, hearth_sampler_accept(job.sampler, t),
 *           then hearth_sections_push(g, job.index, t): true = stop that sequence;
 *           the sequence ending by itself (end token, context): hearth_sections_end_job;
 *       while (hearth_sections_next_section(g, &info)) stream info;
 *   }
 * A job's prompt and sampler belong to g and stay valid until the job
 * ends. */
typedef struct hearth_section_job {
    uint32_t index;             /* section, or HEARTH_SECTION_OUTLINE */
    const hearth_token *prompt; /* NULL when no job is ready now */
    size_t n_prompt;
    uint32_t max_tokens;     /* the job ends by then (hearth_sections_push says so) */
    hearth_sampler *sampler; /* with the job's loop guard attached */
} hearth_section_job;

hearth_status hearth_sections_next_job(hearth_sections *g, hearth_section_job *job,
                                       hearth_error *err);
/* The sampler of job index while it runs (it belongs to g), else NULL. */
hearth_sampler *hearth_sections_job_sampler(hearth_sections *g, uint32_t index);
/* Records generated token t of job index; true when the job is over. */
bool hearth_sections_push(hearth_sections *g, uint32_t index, hearth_token t);
/* Ends a job from outside (why: EOG, CONTEXT, or LENGTH). */
void hearth_sections_end_job(hearth_sections *g, uint32_t index, hearth_section_end why);
/* Hands out the next finished section in order (the outline first, when
 * the model wrote it); false when none is ready.  The pointers in *out
 * stay valid until the next call on g. */
bool hearth_sections_next_section(hearth_sections *g, hearth_section_info *out);
/* True when every job has ended (or the generation was stopped). */
bool hearth_sections_done(const hearth_sections *g);
/* Stops the generation: running jobs end, the rest is skipped. */
void hearth_sections_stop(hearth_sections *g);

/* What came out: the sections handed out so far (all of them after
 * hearth_sections_run). */
typedef struct hearth_sections_result {
    uint32_t n_sections;
    const char *text; /* the stitched document, owned by g */
    size_t text_len;
    const hearth_token *tokens; /* the kept tokens of all sections in order, owned by g */
    size_t n_tokens;
    uint32_t n_generated;      /* tokens generated, cut ones and the outline included */
    uint32_t n_outline;        /* tokens of the outline the model wrote */
    uint32_t n_guard_stops;    /* sections the loop guard stopped */
    uint32_t n_guard_findings; /* loops the guards found (with penalize: ones that got through) */
    bool repetition;           /* HEARTH_LOOP_STOP ended the whole generation */
    uint32_t section_tokens[HEARTH_SECTIONS_MAX]; /* kept, per section */
    hearth_section_end section_end[HEARTH_SECTIONS_MAX];
} hearth_sections_result;

void hearth_sections_result_get(const hearth_sections *g, hearth_sections_result *out);

#ifdef __cplusplus
}
#endif

#endif /* HEARTH_H */
