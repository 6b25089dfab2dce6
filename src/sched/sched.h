/* sched.h — the scheduler: many requests, one model, one engine thread.
 *
 * A request (a tokenized prompt, sampling settings and a priority class)
 * becomes a sequence.  One engine thread owns the model context; each step
 * it picks which sequences advance (interactive before tool before
 * background, waiting work aging upwards), packs their next tokens —
 * one decode token each, or a chunk of prompt — into one batch, runs one
 * forward pass and samples one token for every sequence whose batch reached
 * its last known token.  Text leaves through a per-request output buffer
 * that any other thread reads with sched_poll.
 *
 * KV memory is n_parallel slots of n_ctx positions.  A sequence holds a
 * slot while it runs; a finished sequence leaves its tokens in the slot,
 * which is how the prefix cache works: a new prompt starts in the slot
 * that shares its longest prefix (or copies that prefix from a busy slot),
 * and only the rest is computed.  When a higher class needs a slot and
 * none is free, the lowest-class, youngest running sequence is evicted: it
 * goes back to the queue with everything it generated so far and is
 * recomputed when it gets a slot again, never dropped.
 *
 * Nothing here knows about HTTP.  Thread safety: every call except
 * sched_create/sched_free may be made from any thread.
 */
#ifndef HEARTH_SCHED_H
#define HEARTH_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hearth.h"

/* Priority classes, best first.  Values index arrays; never renumbered. */
typedef enum sched_class {
    SCHED_INTERACTIVE = 0,
    SCHED_TOOL = 1,
    SCHED_BACKGROUND = 2,
    SCHED_N_CLASS = 3
} sched_class;

/* "interactive", "tool", "background". */
const char *sched_class_name(sched_class c);
/* Parses a class name (exact, lowercase); false when it is none. */
bool sched_class_parse(const char *s, size_t len, sched_class *out);

typedef enum sched_finish {
    SCHED_FINISH_NONE = 0,       /* still running */
    SCHED_FINISH_STOP = 1,       /* an end-of-generation token or a stop string */
    SCHED_FINISH_LENGTH = 2,     /* max_tokens or the context is full */
    SCHED_FINISH_CANCELLED = 3,  /* the client went away */
    SCHED_FINISH_ERROR = 4,      /* see the error text */
    SCHED_FINISH_REPETITION = 5, /* the loop guard found a loop and its action is a stop */
    SCHED_N_FINISH = 6
} sched_finish;

/* "stop", "length", "cancelled", "error", "repetition". */
const char *sched_finish_name(sched_finish f);

typedef struct sched_params {
    uint32_t n_parallel; /* KV slots: sequences that run at once */
    uint32_t n_ctx;      /* positions per slot; 0 = the model's, at most 4096 */
    uint32_t n_batch;    /* tokens one engine step carries (decode + prompt chunks) */
    int n_threads;       /* 0 = one per core */
    hearth_kv_type kv_type;
    bool fit_budget;   /* run fewer than n_parallel sequences when their KV cache and
                          scratch do not fit the model's memory budget (else refuse) */
    uint32_t aging_ms; /* waiting this long lifts a sequence one class; 0 = off */
    uint32_t queue_limit[SCHED_N_CLASS]; /* waiting requests per class */
    bool prefix_cache;                   /* reuse cached prompt prefixes */
} sched_params;

sched_params sched_default_params(void);

#define SCHED_MAX_STOP        16  /* stop strings per request */
#define SCHED_MAX_STOP_LEN    256 /* bytes per stop string */
#define SCHED_MAX_TOP_LOGPROB 20
#define SCHED_MAX_USER        64 /* bytes of a submitter name */

typedef struct sched_request_params {
    const hearth_token *prompt; /* (n_prompt) copied by sched_submit */
    size_t n_prompt;
    sched_class cls;
    uint32_t max_tokens; /* 0 = until the context is full */
    hearth_sampler_params sampling;
    const char *stop[SCHED_MAX_STOP]; /* NUL-terminated, copied */
    size_t n_stop;
    const hearth_token *stop_tokens; /* extra end-of-turn tokens (chat templates), copied */
    size_t n_stop_tokens;
    bool logprobs;         /* report each token's log-probability */
    uint32_t top_logprobs; /* and this many alternatives (<= SCHED_MAX_TOP_LOGPROB) */
    bool text_continues;   /* the output continues text (keep a leading space) */
    const char *user;      /* who submitted it, for the queue view: NULL or "" for nobody;
                              copied, at most SCHED_MAX_USER bytes (callers cut longer names
                              at a character boundary) */
    /* Constrained decoding and the loop guard, each sequence its own.
     * sched_submit takes both over whatever it returns (they are freed
     * with the request, or at once when it is refused), so the caller
     * must not touch them afterwards.  They see generated tokens only.
     * The grammar's budget is set to the request's max_tokens; its text
     * being done ends the request ("stop").  What a loop the guard finds
     * does is loop_action: HEARTH_LOOP_STOP and _STOP_SECTION end the
     * request with SCHED_FINISH_REPETITION, _PENALIZE is the guard's own
     * business in sampling, _OFF only counts it (a guard that watches). */
    hearth_grammar *grammar;
    hearth_loop_guard *guard;
    hearth_loop_action loop_action;
    /* A caller that samples for itself (sectional generation): called on
     * the engine thread, outside the scheduler's lock, with the logits of
     * each step instead of the request's own sampler (and its grammar and
     * guard, which must then be NULL).  Returns the token to add, or -1
     * to end the request as an end token would; *end = true adds the
     * token and then ends it ("stop"). */
    hearth_token (*sample_fn)(void *arg, const float *logits, bool *end);
    void *sample_arg;
} sched_request_params;

/* One generated token, for logprobs. */
typedef struct sched_token {
    hearth_token id;
    float logprob;
    uint32_t n_top;
    hearth_token top_id[SCHED_MAX_TOP_LOGPROB];
    float top_logprob[SCHED_MAX_TOP_LOGPROB];
} sched_token;

/* What sched_poll hands over: buffers owned by the caller, grown by
 * sched_poll as needed (free them with sched_delta_free). */
typedef struct sched_delta {
    char *text; /* new text, not NUL-terminated */
    size_t n_text, cap_text;
    sched_token *tokens; /* new tokens (only with logprobs) */
    size_t n_tokens, cap_tokens;
    /* state after this poll */
    bool first;           /* this delta carries the first generated token */
    sched_finish finish;  /* NONE while running */
    char error[256];      /* for SCHED_FINISH_ERROR */
    uint32_t n_prompt;    /* prompt tokens */
    uint32_t n_cached;    /* of which came from the prefix cache */
    uint32_t n_generated; /* tokens generated so far */
} sched_delta;

void sched_delta_free(sched_delta *d);

typedef struct sched sched;
typedef struct sched_request sched_request;

/* Loads nothing: takes a loaded model (which must outlive the scheduler),
 * creates the context and starts the engine thread. */
hearth_status sched_create(const hearth_model *model, const sched_params *params, sched **out,
                           hearth_error *err);
/* Stops the engine (finishing every open request with an error) and frees
 * everything.  Requests still held by callers must be released first or
 * after: sched_release is safe on a stopped scheduler until sched_free. */
void sched_free(sched *s);
/* Stops the engine thread; open requests finish with "server shutting
 * down".  Idempotent. */
void sched_shutdown(sched *s);

/* The effective settings (n_ctx and n_parallel after budget and defaults). */
const sched_params *sched_get_params(const sched *s);
const hearth_model *sched_model(const sched *s);

typedef enum sched_submit_status {
    SCHED_SUBMIT_OK = 0,
    SCHED_SUBMIT_INVALID = 1,    /* a parameter is out of range (the message says which) */
    SCHED_SUBMIT_TOO_LONG = 2,   /* the prompt does not fit the context */
    SCHED_SUBMIT_QUEUE_FULL = 3, /* the class's queue is at its limit: try again later */
    SCHED_SUBMIT_FAILED = 4,     /* out of memory, or the scheduler is shutting down */
} sched_submit_status;

/* Queues a request (everything in p is copied).  On SCHED_SUBMIT_OK the
 * caller holds *out until sched_release; otherwise err says why. */
sched_submit_status sched_submit(sched *s, const sched_request_params *p, sched_request **out,
                                 hearth_error *err);
/* Waits up to timeout_ms for news, then moves all new output into d.
 * Returns true when d->finish is set (the request is over). */
bool sched_poll(sched_request *r, int timeout_ms, sched_delta *d);
/* Asks the engine to stop the request at the next step boundary. */
void sched_cancel(sched_request *r);
/* Drops the caller's hold (cancelling the request if it still runs). */
void sched_release(sched_request *r);
uint64_t sched_request_id(const sched_request *r);

/* ---------------------------------------------------------------- introspection */

#define SCHED_N_BUCKETS 14
/* Upper bounds (seconds) of the latency histogram buckets; +Inf follows. */
extern const double sched_bucket_bounds[SCHED_N_BUCKETS];

typedef struct sched_histogram {
    uint64_t counts[SCHED_N_BUCKETS + 1]; /* non-cumulative; last = over the largest bound */
    uint64_t count;
    double sum;
} sched_histogram;

typedef struct sched_stats {
    uint32_t waiting[SCHED_N_CLASS]; /* in the queue */
    uint32_t running[SCHED_N_CLASS]; /* holding a slot */
    uint32_t paused[SCHED_N_CLASS];  /* holding a slot, skipped by the last step */
    uint64_t requests[SCHED_N_CLASS];
    uint64_t finished[SCHED_N_CLASS][SCHED_N_FINISH]; /* by sched_finish */
    uint64_t loop_triggers[SCHED_N_CLASS][4];         /* loops found, by hearth_loop_action
                                                         (OFF: a guard that only watches) */
    uint64_t rejected[SCHED_N_CLASS];                 /* queue full */
    uint64_t prompt_tokens[SCHED_N_CLASS];
    uint64_t cached_tokens[SCHED_N_CLASS];
    uint64_t generated_tokens[SCHED_N_CLASS];
    sched_histogram ttft[SCHED_N_CLASS];       /* submit to first token */
    sched_histogram token_time[SCHED_N_CLASS]; /* between tokens of a sequence */
    sched_histogram step_time;
    uint64_t steps;
    uint64_t step_tokens; /* tokens through the forward pass */
    uint64_t evictions;
    uint64_t preemptions; /* sequence-steps skipped for a higher class */
    double tokens_per_s;  /* generated tokens per second over the last few seconds */
    uint32_t kv_slots;
    uint32_t kv_slots_busy;
    uint64_t kv_positions;        /* n_parallel * n_ctx */
    uint64_t kv_positions_used;   /* held by running sequences */
    uint64_t kv_positions_cached; /* kept for the prefix cache in free slots */
    uint64_t kv_bytes;
    uint64_t weight_bytes;
} sched_stats;

void sched_get_stats(sched *s, sched_stats *out);
/* Counts n loops found by a guard the caller runs (sectional generation's
 * sections) as loop_triggers[cls][action]. */
void sched_count_loops(sched *s, sched_class cls, hearth_loop_action action, uint32_t n);

typedef struct sched_seq_info {
    uint64_t id;
    sched_class cls;
    sched_class effective; /* after aging */
    const char *state;     /* "waiting", "prefill", "decode", "paused" */
    double age_s;          /* since submission */
    uint32_t n_prompt;
    uint32_t n_cached;
    uint32_t n_generated;
    int32_t slot;                  /* -1 while waiting */
    uint32_t paused_steps;         /* steps it sat out holding its slot: preempted by a higher class
                                      taking in its prompt (or a full batch) */
    uint32_t evictions;            /* times it lost its slot to a higher class */
    char user[SCHED_MAX_USER + 1]; /* who submitted it; "" for nobody */
} sched_seq_info;

/* Fills up to cap entries (running first, then the queue in the order it
 * would be served) and returns how many sequences there are. */
size_t sched_list(sched *s, sched_seq_info *out, size_t cap);

#endif
