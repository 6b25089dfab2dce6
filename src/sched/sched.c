/* sched.c — the engine thread, its queue and its KV slots (see sched.h).
 *
 * Locking: one mutex (s->mu) guards the queue, the slot owners, every
 * request's shared output and the statistics.  The engine thread takes it
 * to reap cancelled requests, admit waiting ones and plan a step, drops it
 * for the forward pass and sampling (which touch only the context and
 * engine-private request fields), then takes it again to publish the new
 * text and finish what is done.  Other threads only ever touch shared
 * fields, under the mutex, and wait on their request's condition variable.
 *
 * A request is reference counted: one hold for the caller (dropped by
 * sched_release) and one for the engine (dropped when it finishes).
 */
#include "sched/sched.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "sched/policy.h"
#include "util/error.h"
#include "util/threadpool.h"

#define SCHED_MAX_PARALLEL 256
#define RATE_RING          64 /* samples of (time, generated tokens) for tokens/s */
#define RATE_WINDOW_S      5.0

const double sched_bucket_bounds[SCHED_N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};

typedef struct kv_slot {
    sched_request *owner; /* NULL: free (its tokens stay as a cached prefix) */
    hearth_token *tokens; /* (n_ctx) the tokens whose keys and values the slot holds */
    uint32_t n;
    double last_used;
} kv_slot;

struct sched_request {
    /* fixed at submission */
    sched *s;
    uint64_t id;
    sched_class cls;
    uint32_t n_prompt;
    uint32_t max_tokens; /* generated tokens at most */
    char *stop_text;     /* the stop strings back to back */
    const char *stop[SCHED_MAX_STOP];
    size_t stop_len[SCHED_MAX_STOP];
    size_t n_stop;
    hearth_token *stop_tokens; /* (n_stop_tokens) */
    size_t n_stop_tokens;
    bool logprobs;
    uint32_t top_logprobs;
    hearth_grammar *grammar;  /* owned; attached to smp */
    hearth_loop_guard *guard; /* owned; attached to smp */
    hearth_loop_action loop_action;
    hearth_token (*sample_fn)(void *arg, const float *logits, bool *end);
    void *sample_arg;
    double t_submit;
    char user[SCHED_MAX_USER + 1]; /* who submitted it, for sched_list */
    pthread_cond_t cv;             /* signalled on news for sched_poll */

    /* under s->mu */
    int refs;
    sched_request *prev, *next; /* the queue, while waiting */
    bool queued;
    bool cancel;
    double wait_total; /* seconds spent waiting or paused, for aging */
    double wait_since; /* start of the current wait; < 0 while advancing */
    char *out;         /* released text not yet polled */
    size_t n_out, cap_out;
    sched_token *out_tok; /* token details not yet polled */
    size_t n_out_tok, cap_out_tok;
    bool out_first;
    sched_finish finish;
    char error[256];
    uint32_t pub_cached, pub_gen;
    const char *pub_state;
    int32_t pub_slot;
    uint32_t n_paused;  /* steps it sat out (see sched_seq_info) */
    uint32_t n_evicted; /* slots lost to a higher class */

    /* the engine's own */
    hearth_token *tokens; /* (n_ctx + 1) prompt, then generated tokens */
    uint32_t n_tokens;
    uint32_t n_fed; /* tokens[0..n_fed) are in the slot's cache */
    int32_t slot;   /* -1 while waiting */
    bool admitted_once;
    hearth_sampler *smp;
    hearth_detok detok;
    char *piece; /* (piece_cap) one token's text */
    char *held;  /* text not yet released: a stop string may be forming */
    size_t n_held, cap_held;
    uint32_t n_gen;
    double t_last_token;
    /* the last step, from planning to publishing */
    uint32_t take;     /* tokens fed */
    int32_t logit_row; /* batch index of its logits, -1 none */
    bool sampled;      /* a token was added */
    bool loop_hit;     /* the guard found a loop at this token */
    bool has_tok;      /* tok holds its details */
    sched_token tok;   /* logprobs of the sampled token */
    size_t n_release;  /* bytes of held that may go out */
    sched_finish fin;  /* NONE, or how it ends */
};

struct sched {
    const hearth_model *model;
    const hearth_tokenizer *tok;
    sched_params p;
    hearth_context *ctx;
    int32_t n_vocab;
    size_t piece_cap;
    kv_slot *slots; /* (n_parallel) */
    /* the batch of one step */
    hearth_token *b_tok;  /* (n_batch) */
    int32_t *b_pos;       /* (n_batch) */
    int32_t *b_seq;       /* (n_batch) */
    bool *b_logits;       /* (n_batch) */
    policy_seq *pseq;     /* (n_parallel) */
    uint32_t *take;       /* (n_parallel) */
    sched_request **cand; /* (n_parallel) the running sequences of a step */
    size_t n_cand;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t work; /* the engine waits here when idle */
    bool stopping;
    sched_request *q_head, *q_tail; /* waiting, in arrival order */
    uint64_t next_id;
    sched_stats st; /* counters; the gauges are filled in by sched_get_stats */
    uint64_t kv_used, kv_cached;
    double rate_t[RATE_RING];
    uint64_t rate_n[RATE_RING];
    unsigned rate_at, rate_count;
    uint64_t generated_all;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *sched_class_name(sched_class c) {
    switch (c) {
    case SCHED_INTERACTIVE: return "interactive";
    case SCHED_TOOL: return "tool";
    case SCHED_BACKGROUND: return "background";
    default: return "?";
    }
}

bool sched_class_parse(const char *str, size_t len, sched_class *out) {
    for (int c = 0; c < SCHED_N_CLASS; c++) {
        const char *name = sched_class_name((sched_class)c);
        if (strlen(name) == len && !memcmp(name, str, len)) {
            *out = (sched_class)c;
            return true;
        }
    }
    return false;
}

const char *sched_finish_name(sched_finish f) {
    switch (f) {
    case SCHED_FINISH_STOP: return "stop";
    case SCHED_FINISH_LENGTH: return "length";
    case SCHED_FINISH_CANCELLED: return "cancelled";
    case SCHED_FINISH_ERROR: return "error";
    case SCHED_FINISH_REPETITION: return "repetition";
    default: return "none";
    }
}

sched_params sched_default_params(void) {
    sched_params p;
    memset(&p, 0, sizeof p);
    p.n_parallel = 4;
    p.n_ctx = 0;
    p.n_batch = 128;
    p.n_threads = 0;
    p.kv_type = HEARTH_KV_F16;
    p.aging_ms = 3000;
    p.queue_limit[SCHED_INTERACTIVE] = 64;
    p.queue_limit[SCHED_TOOL] = 128;
    p.queue_limit[SCHED_BACKGROUND] = 256;
    p.prefix_cache = true;
    p.fit_budget = true;
    return p;
}

void sched_delta_free(sched_delta *d) {
    if (!d) return;
    free(d->text);
    free(d->tokens);
    d->text = NULL;
    d->tokens = NULL;
    d->n_text = d->cap_text = d->n_tokens = d->cap_tokens = 0;
}

/* Grows *buf (of *cap elements of size sz) to hold need elements. */
static bool grow(void **buf, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / sz) return false;
        c *= 2;
    }
    void *p = realloc(*buf, c * sz);
    if (!p) return false;
    *buf = p;
    *cap = c;
    return true;
}

static void hist_add(sched_histogram *h, double v) {
    int b = 0;
    while (b < SCHED_N_BUCKETS && v > sched_bucket_bounds[b]) b++;
    h->counts[b]++;
    h->count++;
    h->sum += v;
}

/* ---------------------------------------------------------------- requests */

static void request_free(sched_request *r) {
    if (!r) return;
    hearth_sampler_free(r->smp);
    hearth_grammar_free(r->grammar);
    hearth_loop_guard_free(r->guard);
    free(r->stop_text);
    free(r->stop_tokens);
    free(r->tokens);
    free(r->piece);
    free(r->held);
    free(r->out);
    free(r->out_tok);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* Drops one hold; frees the request with the last.  Caller holds s->mu. */
static void request_unref(sched_request *r) {
    if (--r->refs == 0) request_free(r);
}

static sched_class effective(const sched *s, const sched_request *r, double now) {
    double wait = r->wait_total + (r->wait_since >= 0 ? now - r->wait_since : 0.0);
    return policy_effective_class(r->cls, wait, s->p.aging_ms);
}

static void wait_begin(sched_request *r, double now) {
    if (r->wait_since < 0) r->wait_since = now;
}

static void wait_end(sched_request *r, double now) {
    if (r->wait_since >= 0) {
        r->wait_total += now - r->wait_since;
        r->wait_since = -1.0;
    }
}

static void queue_remove(sched *s, sched_request *r) {
    if (!r->queued) return;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->q_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        s->q_tail = r->prev;
    r->prev = r->next = NULL;
    r->queued = false;
}

/* Inserts r keeping the queue in arrival order (evicted sequences go back
 * to where they arrived). */
static void queue_insert(sched *s, sched_request *r) {
    sched_request *at = s->q_tail;
    while (at && (at->t_submit > r->t_submit || (at->t_submit == r->t_submit && at->id > r->id))) {
        at = at->prev;
    }
    r->prev = at;
    r->next = at ? at->next : s->q_head;
    if (r->next)
        r->next->prev = r;
    else
        s->q_tail = r;
    if (at)
        at->next = r;
    else
        s->q_head = r;
    r->queued = true;
}

/* Ends a request: frees its slot (the tokens stay cached), records the
 * outcome and drops the engine's hold.  Caller holds s->mu. */
static void finish(sched *s, sched_request *r, sched_finish f, const char *msg, double now) {
    queue_remove(s, r);
    if (r->slot >= 0) {
        kv_slot *sl = &s->slots[r->slot];
        sl->owner = NULL;
        sl->last_used = now;
        r->slot = -1;
    }
    r->finish = f;
    if (msg) snprintf(r->error, sizeof r->error, "%s", msg);
    r->pub_state = "finished";
    r->pub_slot = -1;
    s->st.finished[r->cls][f]++;
    pthread_cond_broadcast(&r->cv);
    request_unref(r);
}

/* ---------------------------------------------------------------- submission */

static sched_submit_status submit(sched *s, const sched_request_params *p, sched_request **out,
                                  hearth_error *err);

sched_submit_status sched_submit(sched *s, const sched_request_params *p, sched_request **out,
                                 hearth_error *err) {
    sched_submit_status st = submit(s, p, out, err);
    if (st != SCHED_SUBMIT_OK) {
        /* Refused: the grammar and the guard were handed over all the same. */
        hearth_grammar_free(p->grammar);
        hearth_loop_guard_free(p->guard);
    }
    return st;
}

static sched_submit_status submit(sched *s, const sched_request_params *p, sched_request **out,
                                  hearth_error *err) {
    *out = NULL;
    const uint32_t n_ctx = s->p.n_ctx;
    if (!p->prompt || p->n_prompt == 0) {
        error_set(err, HEARTH_ERR_INVALID_ARG, "the prompt is empty");
        return SCHED_SUBMIT_INVALID;
    }
    if ((unsigned)p->cls >= SCHED_N_CLASS) {
        error_set(err, HEARTH_ERR_INVALID_ARG, "unknown priority class %d", (int)p->cls);
        return SCHED_SUBMIT_INVALID;
    }
    if (p->n_prompt >= n_ctx) {
        error_set(err, HEARTH_ERR_CONTEXT_FULL,
                  "the prompt is %zu tokens; the context holds %u (prompt and completion)",
                  p->n_prompt, n_ctx);
        return SCHED_SUBMIT_TOO_LONG;
    }
    for (size_t i = 0; i < p->n_prompt; i++) {
        if (p->prompt[i] < 0 || p->prompt[i] >= s->n_vocab) {
            error_set(err, HEARTH_ERR_INVALID_ARG,
                      "prompt token %d at index %zu is outside the vocabulary (0..%d)",
                      p->prompt[i], i, s->n_vocab - 1);
            return SCHED_SUBMIT_INVALID;
        }
    }
    if (p->n_stop > SCHED_MAX_STOP || p->top_logprobs > SCHED_MAX_TOP_LOGPROB) {
        error_set(err, HEARTH_ERR_INVALID_ARG, "at most %d stop strings and %d top logprobs",
                  SCHED_MAX_STOP, SCHED_MAX_TOP_LOGPROB);
        return SCHED_SUBMIT_INVALID;
    }
    size_t stop_bytes = 0, max_stop = 0;
    for (size_t i = 0; i < p->n_stop; i++) {
        size_t L = p->stop[i] ? strlen(p->stop[i]) : 0;
        if (L == 0 || L > SCHED_MAX_STOP_LEN) {
            error_set(err, HEARTH_ERR_INVALID_ARG, "stop string %zu must have 1 to %d bytes", i,
                      SCHED_MAX_STOP_LEN);
            return SCHED_SUBMIT_INVALID;
        }
        stop_bytes += L + 1;
        if (L > max_stop) max_stop = L;
    }
    if (p->n_stop_tokens > 64) {
        error_set(err, HEARTH_ERR_INVALID_ARG, "at most 64 stop tokens");
        return SCHED_SUBMIT_INVALID;
    }
    if (p->sample_fn && (p->grammar || p->guard)) {
        error_set(err, HEARTH_ERR_INVALID_ARG,
                  "a request that samples for itself has no grammar "
                  "or loop guard of the scheduler's");
        return SCHED_SUBMIT_INVALID;
    }
    if ((unsigned)p->loop_action > HEARTH_LOOP_PENALIZE) {
        error_set(err, HEARTH_ERR_INVALID_ARG, "unknown loop guard action %d", (int)p->loop_action);
        return SCHED_SUBMIT_INVALID;
    }

    sched_request *r = calloc(1, sizeof *r);
    if (!r) {
        error_set(err, HEARTH_ERR_NOMEM, "out of memory");
        return SCHED_SUBMIT_FAILED;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    r->s = s;
    r->cls = p->cls;
    if (p->user) snprintf(r->user, sizeof r->user, "%s", p->user);
    r->n_prompt = (uint32_t)p->n_prompt;
    /* Generation ends once a sampled token has no position left to go to:
     * as `hearth run`, the last fed position is n_ctx - 1. */
    uint32_t room = n_ctx - r->n_prompt + 1;
    r->max_tokens = p->max_tokens == 0 || p->max_tokens > room ? room : p->max_tokens;
    r->logprobs = p->logprobs || p->top_logprobs > 0;
    r->top_logprobs = p->top_logprobs;
    r->slot = -1;
    r->logit_row = -1;
    r->wait_since = -1.0;
    r->pub_slot = -1;
    r->pub_state = "waiting";
    r->piece = malloc(s->piece_cap);
    r->cap_held = max_stop + 2 * s->piece_cap + 64;
    r->held = malloc(r->cap_held);
    r->tokens = malloc(((size_t)n_ctx + 1) * sizeof *r->tokens);
    if (stop_bytes) r->stop_text = malloc(stop_bytes);
    if (p->n_stop_tokens) r->stop_tokens = malloc(p->n_stop_tokens * sizeof *r->stop_tokens);
    hearth_status st = HEARTH_OK;
    if (!r->piece || !r->held || !r->tokens || (stop_bytes && !r->stop_text) ||
        (p->n_stop_tokens && !r->stop_tokens)) {
        error_set(err, HEARTH_ERR_NOMEM, "out of memory");
        request_free(r);
        return SCHED_SUBMIT_FAILED;
    }
    r->sample_fn = p->sample_fn;
    r->sample_arg = p->sample_arg;
    if (!r->sample_fn) {
        st = hearth_sampler_create(&p->sampling, s->n_vocab, &r->smp, err);
        if (st != HEARTH_OK) {
            request_free(r);
            return st == HEARTH_ERR_NOMEM ? SCHED_SUBMIT_FAILED : SCHED_SUBMIT_INVALID;
        }
    }
    memcpy(r->tokens, p->prompt, p->n_prompt * sizeof *r->tokens);
    r->n_tokens = r->n_prompt;
    for (size_t i = 0; r->smp && i < p->n_prompt; i++) hearth_sampler_accept(r->smp, p->prompt[i]);
    char *at = r->stop_text;
    for (size_t i = 0; i < p->n_stop; i++) {
        size_t L = strlen(p->stop[i]);
        memcpy(at, p->stop[i], L + 1);
        r->stop[i] = at;
        r->stop_len[i] = L;
        at += L + 1;
    }
    r->n_stop = p->n_stop;
    if (p->n_stop_tokens) {
        memcpy(r->stop_tokens, p->stop_tokens, p->n_stop_tokens * sizeof *r->stop_tokens);
    }
    r->n_stop_tokens = p->n_stop_tokens;
    hearth_detok_reset(&r->detok, 0);
    r->detok.started = p->text_continues;

    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        request_free(r);
        error_set(err, HEARTH_ERR_INVALID_ARG, "the server is shutting down");
        return SCHED_SUBMIT_FAILED;
    }
    uint32_t waiting = 0;
    for (sched_request *q = s->q_head; q; q = q->next) waiting += q->cls == p->cls;
    if (waiting >= s->p.queue_limit[p->cls]) {
        s->st.rejected[p->cls]++;
        pthread_mutex_unlock(&s->mu);
        request_free(r);
        error_set(err, HEARTH_ERR_INVALID_ARG, "the %s queue is full (%u waiting)",
                  sched_class_name(p->cls), waiting);
        return SCHED_SUBMIT_QUEUE_FULL;
    }
    /* Taken over only now that nothing can refuse the request; attached
     * after the prompt, which is not grammar text nor generated. */
    r->grammar = p->grammar;
    r->guard = p->guard;
    r->loop_action = p->loop_action;
    if (r->grammar) {
        hearth_grammar_set_budget(r->grammar, r->max_tokens);
        hearth_sampler_set_grammar(r->smp, r->grammar);
    }
    if (r->guard) hearth_sampler_set_loop_guard(r->smp, r->guard);
    r->id = ++s->next_id;
    r->t_submit = now_s();
    r->wait_since = r->t_submit;
    r->refs = 2;
    queue_insert(s, r);
    s->st.requests[r->cls]++;
    s->st.prompt_tokens[r->cls] += r->n_prompt;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    *out = r;
    return SCHED_SUBMIT_OK;
}

uint64_t sched_request_id(const sched_request *r) {
    return r->id;
}

bool sched_poll(sched_request *r, int timeout_ms, sched_delta *d) {
    sched *s = r->s;
    d->n_text = 0;
    d->n_tokens = 0;
    d->first = false;
    pthread_mutex_lock(&s->mu);
    if (timeout_ms > 0 && r->n_out == 0 && r->n_out_tok == 0 && !r->out_first &&
        r->finish == SCHED_FINISH_NONE) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv, &s->mu, &ts);
    }
    bool ok = grow((void **)&d->text, &d->cap_text, r->n_out, 1) &&
              grow((void **)&d->tokens, &d->cap_tokens, r->n_out_tok, sizeof *d->tokens);
    if (ok) {
        if (r->n_out) memcpy(d->text, r->out, r->n_out);
        d->n_text = r->n_out;
        if (r->n_out_tok) memcpy(d->tokens, r->out_tok, r->n_out_tok * sizeof *d->tokens);
        d->n_tokens = r->n_out_tok;
        r->n_out = 0;
        r->n_out_tok = 0;
        d->first = r->out_first;
        r->out_first = false;
    } else if (r->finish == SCHED_FINISH_NONE) {
        r->cancel = true;
        pthread_cond_signal(&s->work);
    }
    d->finish = r->finish;
    if (!ok) {
        d->finish = SCHED_FINISH_ERROR;
        snprintf(d->error, sizeof d->error, "out of memory for the response");
    } else if (r->finish == SCHED_FINISH_ERROR) {
        snprintf(d->error, sizeof d->error, "%s", r->error);
    }
    d->n_prompt = r->n_prompt;
    d->n_cached = r->pub_cached;
    d->n_generated = r->pub_gen;
    bool done = d->finish != SCHED_FINISH_NONE && r->n_out == 0;
    pthread_mutex_unlock(&s->mu);
    return done;
}

void sched_cancel(sched_request *r) {
    sched *s = r->s;
    pthread_mutex_lock(&s->mu);
    if (r->finish == SCHED_FINISH_NONE) {
        r->cancel = true;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
}

void sched_release(sched_request *r) {
    if (!r) return;
    sched *s = r->s;
    pthread_mutex_lock(&s->mu);
    if (r->finish == SCHED_FINISH_NONE) {
        r->cancel = true;
        pthread_cond_signal(&s->work);
    }
    request_unref(r);
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- the engine: admission */

/* The free slot a prompt should start in: the one sharing its longest
 * prefix, then the least recently used.  -1 when none is free. */
static int32_t pick_free_slot(sched *s, const sched_request *r, uint32_t *prefix) {
    int32_t best = -1;
    uint32_t best_len = 0;
    for (uint32_t i = 0; i < s->p.n_parallel; i++) {
        const kv_slot *sl = &s->slots[i];
        if (sl->owner) continue;
        uint32_t L = s->p.prefix_cache
                         ? policy_prefix_len(sl->tokens, sl->n, r->tokens, r->n_tokens - 1)
                         : 0;
        if (best < 0 || L > best_len ||
            (L == best_len && sl->last_used < s->slots[best].last_used)) {
            best = (int32_t)i;
            best_len = L;
        }
    }
    *prefix = best_len;
    return best;
}

/* Puts r into slot i, reusing the longest cached prefix of its tokens: the
 * slot's own, or a longer one copied from another slot. */
static void start(sched *s, sched_request *r, int32_t i, uint32_t own_prefix, double now) {
    kv_slot *sl = &s->slots[i];
    uint32_t L = own_prefix;
    if (s->p.prefix_cache) {
        int32_t from = -1;
        uint32_t best = L;
        for (uint32_t j = 0; j < s->p.n_parallel; j++) {
            if ((int32_t)j == i) continue;
            const kv_slot *o = &s->slots[j];
            uint32_t Lj = policy_prefix_len(o->tokens, o->n, r->tokens, r->n_tokens - 1);
            if (Lj > best) {
                best = Lj;
                from = (int32_t)j;
            }
        }
        if (from >= 0 && hearth_kv_copy(s->ctx, i, from, (int32_t)best, NULL) == HEARTH_OK) {
            memcpy(sl->tokens, s->slots[from].tokens, best * sizeof *sl->tokens);
            L = best;
        }
    } else {
        L = 0;
    }
    hearth_kv_truncate(s->ctx, i, (int32_t)L);
    sl->n = L;
    sl->owner = r;
    r->slot = i;
    r->n_fed = L;
    queue_remove(s, r);
    wait_end(r, now);
    if (!r->admitted_once) {
        r->admitted_once = true;
        r->pub_cached = L < r->n_prompt ? L : r->n_prompt;
        s->st.cached_tokens[r->cls] += r->pub_cached;
    }
    r->pub_slot = i;
    r->pub_state = "prefill";
}

/* Sends a running sequence back to the queue; it keeps every token and
 * will recompute its cache when it runs again. */
static void evict(sched *s, sched_request *v, double now) {
    kv_slot *sl = &s->slots[v->slot];
    sl->owner = NULL;
    sl->last_used = now;
    v->slot = -1;
    v->n_fed = 0;
    v->pub_slot = -1;
    v->pub_state = "waiting";
    v->n_evicted++;
    wait_begin(v, now);
    queue_insert(s, v);
    s->st.evictions++;
}

/* Moves waiting requests into slots, best first, evicting worse-class
 * sequences when no slot is free.  Caller holds s->mu. */
static void admit(sched *s, double now) {
    for (;;) {
        sched_request *best = NULL;
        policy_seq bq = {SCHED_BACKGROUND, 0, 0, 0};
        for (sched_request *q = s->q_head; q; q = q->next) {
            policy_seq pq = {effective(s, q, now), q->t_submit, q->id, 0};
            if (!best || policy_before(&pq, &bq)) {
                best = q;
                bq = pq;
            }
        }
        if (!best) return;
        uint32_t prefix = 0;
        int32_t i = pick_free_slot(s, best, &prefix);
        if (i < 0) {
            size_t n = 0;
            for (uint32_t k = 0; k < s->p.n_parallel; k++) {
                sched_request *o = s->slots[k].owner;
                s->cand[n] = o;
                s->pseq[n] = (policy_seq){effective(s, o, now), o->t_submit, o->id, 0};
                n++;
            }
            int v = policy_victim(s->pseq, n, bq.eff);
            if (v < 0) return;
            i = s->cand[v]->slot;
            evict(s, s->cand[v], now);
            prefix = s->p.prefix_cache ? policy_prefix_len(s->slots[i].tokens, s->slots[i].n,
                                                           best->tokens, best->n_tokens - 1)
                                       : 0;
        }
        start(s, best, i, prefix, now);
    }
}

/* Finishes cancelled requests, queued or running.  Caller holds s->mu. */
static void reap(sched *s, double now) {
    for (uint32_t i = 0; i < s->p.n_parallel; i++) {
        sched_request *r = s->slots[i].owner;
        if (r && r->cancel) finish(s, r, SCHED_FINISH_CANCELLED, NULL, now);
    }
    sched_request *q = s->q_head;
    while (q) {
        sched_request *next = q->next;
        if (q->cancel) finish(s, q, SCHED_FINISH_CANCELLED, NULL, now);
        q = next;
    }
}

/* ---------------------------------------------------------------- the engine: a step */

/* Chooses this step's tokens and fills the batch; returns its size.
 * Caller holds s->mu. */
static uint32_t plan(sched *s, double now) {
    size_t n = 0;
    for (uint32_t i = 0; i < s->p.n_parallel; i++) {
        sched_request *r = s->slots[i].owner;
        if (!r) continue;
        s->cand[n] = r;
        s->pseq[n] = (policy_seq){effective(s, r, now), r->t_submit, r->id, r->n_tokens - r->n_fed};
        n++;
    }
    s->n_cand = n;
    uint32_t preempted = 0;
    policy_plan(s->pseq, n, s->p.n_batch, s->take, &preempted);
    s->st.preemptions += preempted;
    uint32_t nb = 0;
    for (size_t k = 0; k < n; k++) {
        sched_request *r = s->cand[k];
        uint32_t t = s->take[k];
        r->take = t;
        r->logit_row = -1;
        r->sampled = false;
        r->loop_hit = false;
        r->has_tok = false;
        r->n_release = 0;
        r->fin = SCHED_FINISH_NONE;
        if (t == 0) {
            wait_begin(r, now);
            r->pub_state = "paused";
            r->n_paused++;
            continue;
        }
        wait_end(r, now);
        r->pub_state = r->n_tokens - r->n_fed > 1 ? "prefill" : "decode";
        for (uint32_t j = 0; j < t; j++) {
            s->b_tok[nb] = r->tokens[r->n_fed + j];
            s->b_pos[nb] = (int32_t)(r->n_fed + j);
            s->b_seq[nb] = r->slot;
            s->b_logits[nb] = false;
            nb++;
        }
        if (r->n_fed + t == r->n_tokens) {
            s->b_logits[nb - 1] = true;
            r->logit_row = (int32_t)(nb - 1);
        }
    }
    return nb;
}

/* Log-probabilities of the sampled token and the best alternatives. */
static void fill_logprobs(const sched *s, sched_request *r, const float *logits, hearth_token id) {
    int32_t nv = s->n_vocab;
    float mx = -INFINITY;
    for (int32_t i = 0; i < nv; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int32_t i = 0; i < nv; i++) sum += exp((double)(logits[i] - mx));
    float lse = mx + (float)log(sum);
    sched_token *t = &r->tok;
    t->id = id;
    t->logprob = logits[id] - lse;
    uint32_t k = r->top_logprobs;
    t->n_top = 0;
    for (int32_t i = 0; i < nv && k > 0; i++) {
        float v = logits[i];
        uint32_t n = t->n_top;
        if (n == k && v <= logits[t->top_id[n - 1]]) continue;
        uint32_t at = n < k ? n : k - 1;
        while (at > 0 && logits[t->top_id[at - 1]] < v) {
            t->top_id[at] = t->top_id[at - 1];
            at--;
        }
        t->top_id[at] = i;
        if (n < k) t->n_top++;
    }
    for (uint32_t j = 0; j < t->n_top; j++) t->top_logprob[j] = logits[t->top_id[j]] - lse;
    r->has_tok = true;
}

static void held_append(sched_request *r, const char *text, size_t n) {
    /* cap_held leaves room for the longest stop string's tail plus two
     * pieces, and at most that much is ever held. */
    if (n > r->cap_held - r->n_held) n = r->cap_held - r->n_held;
    memcpy(r->held + r->n_held, text, n);
    r->n_held += n;
}

/* Decides how much held text goes out; a stop string ends the request. */
static void scan_stops(sched_request *r, bool final) {
    size_t stop_at;
    size_t ok = policy_stop_scan(r->held, r->n_held, r->stop, r->stop_len, r->n_stop, &stop_at);
    if (stop_at != SIZE_MAX) {
        r->n_held = stop_at;
        r->n_release = stop_at;
        r->fin = SCHED_FINISH_STOP;
    } else {
        r->n_release = final ? r->n_held : ok;
    }
}

/* Samples the next token of r from its logits, outside the lock. */
static void sample(sched *s, sched_request *r) {
    const float *logits = hearth_get_logits(s->ctx, (uint32_t)r->logit_row);
    bool end = false;
    hearth_token id = r->sample_fn ? r->sample_fn(r->sample_arg, logits, &end)
                                   : hearth_sampler_sample(r->smp, logits);
    if (id < 0 && !r->sample_fn) {
        /* The grammar allows no token: a grammar that cannot go on. */
        r->sampled = true;
        snprintf(r->error, sizeof r->error, "%s", hearth_sampler_error(r->smp));
        r->fin = SCHED_FINISH_ERROR;
        return;
    }
    bool eog = id < 0 || hearth_tokenizer_is_eog(s->tok, id);
    for (size_t i = 0; i < r->n_stop_tokens && !eog; i++) eog = r->stop_tokens[i] == id;
    r->sampled = true;
    if (eog) {
        size_t n = hearth_detok_flush(&r->detok, r->piece, s->piece_cap);
        held_append(r, r->piece, n);
        scan_stops(r, true);
        if (r->fin == SCHED_FINISH_NONE) r->fin = SCHED_FINISH_STOP;
        return;
    }
    if (r->logprobs) fill_logprobs(s, r, logits, id);
    if (r->smp) hearth_sampler_accept(r->smp, id);
    r->tokens[r->n_tokens++] = id;
    r->n_gen++;
    size_t n = hearth_detok_push(&r->detok, s->tok, id, r->piece, s->piece_cap);
    held_append(r, r->piece, n);
    scan_stops(r, false);
    if (r->fin != SCHED_FINISH_NONE) return;
    sched_finish ends = SCHED_FINISH_NONE;
    if (r->guard && hearth_sampler_loop_found(r->smp) != HEARTH_LOOP_NONE) {
        r->loop_hit = true;
        if (r->loop_action == HEARTH_LOOP_STOP || r->loop_action == HEARTH_LOOP_STOP_SECTION) {
            ends = SCHED_FINISH_REPETITION;
        }
    }
    if (end || (r->grammar && hearth_grammar_is_done(r->grammar))) ends = SCHED_FINISH_STOP;
    if (ends == SCHED_FINISH_NONE && (r->n_gen >= r->max_tokens || r->n_tokens > s->p.n_ctx)) {
        ends = SCHED_FINISH_LENGTH;
    }
    if (ends != SCHED_FINISH_NONE) {
        n = hearth_detok_flush(&r->detok, r->piece, s->piece_cap);
        held_append(r, r->piece, n);
        scan_stops(r, true);
        if (r->fin == SCHED_FINISH_NONE) r->fin = ends;
    }
}

/* Hands r's new text and token to its reader.  Caller holds s->mu. */
static void publish(sched *s, sched_request *r, double now) {
    if (!r->sampled) return;
    if (r->loop_hit) {
        s->st.loop_triggers[r->cls][r->loop_action]++;
        r->loop_hit = false;
    }
    bool ok = grow((void **)&r->out, &r->cap_out, r->n_out + r->n_release, 1);
    if (ok && r->has_tok) {
        ok = grow((void **)&r->out_tok, &r->cap_out_tok, r->n_out_tok + 1, sizeof *r->out_tok);
        if (ok) r->out_tok[r->n_out_tok++] = r->tok;
    }
    if (!ok) {
        finish(s, r, SCHED_FINISH_ERROR, "out of memory for the output", now);
        return;
    }
    if (r->n_release) memcpy(r->out + r->n_out, r->held, r->n_release);
    r->n_out += r->n_release;
    memmove(r->held, r->held + r->n_release, r->n_held - r->n_release);
    r->n_held -= r->n_release;
    if (r->pub_gen == 0 && (r->n_gen > 0 || r->fin != SCHED_FINISH_NONE)) {
        hist_add(&s->st.ttft[r->cls], now - r->t_submit);
        r->out_first = true;
    } else if (r->n_gen > r->pub_gen) {
        hist_add(&s->st.token_time[r->cls], now - r->t_last_token);
    }
    s->st.generated_tokens[r->cls] += r->n_gen - r->pub_gen;
    s->generated_all += r->n_gen - r->pub_gen;
    r->t_last_token = now;
    r->pub_gen = r->n_gen;
    if (r->fin != SCHED_FINISH_NONE) {
        finish(s, r, r->fin, NULL, now);
    } else {
        pthread_cond_broadcast(&r->cv);
    }
}

static void rate_sample(sched *s, double now) {
    unsigned last = (s->rate_at + RATE_RING - 1) % RATE_RING;
    if (s->rate_count > 0 && now - s->rate_t[last] < 0.1) return;
    s->rate_t[s->rate_at] = now;
    s->rate_n[s->rate_at] = s->generated_all;
    s->rate_at = (s->rate_at + 1) % RATE_RING;
    if (s->rate_count < RATE_RING) s->rate_count++;
}

static void *engine_main(void *arg) {
    sched *s = arg;
    hearth_error err;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        double now = now_s();
        reap(s, now);
        admit(s, now);
        uint32_t nb = plan(s, now);
        if (nb == 0) {
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);

        double t0 = now_s();
        hearth_batch b = {nb, s->b_tok, s->b_pos, s->b_seq, s->b_logits};
        hearth_status st = hearth_decode(s->ctx, &b, &err);
        if (st == HEARTH_OK) {
            for (size_t k = 0; k < s->n_cand; k++) {
                sched_request *r = s->cand[k];
                if (r->take == 0) continue;
                kv_slot *sl = &s->slots[r->slot];
                memcpy(sl->tokens + r->n_fed, r->tokens + r->n_fed, r->take * sizeof *sl->tokens);
                r->n_fed += r->take;
                sl->n = r->n_fed;
                if (r->logit_row >= 0) sample(s, r);
            }
        }
        double t1 = now_s();

        pthread_mutex_lock(&s->mu);
        s->st.steps++;
        s->st.step_tokens += nb;
        hist_add(&s->st.step_time, t1 - t0);
        for (size_t k = 0; k < s->n_cand; k++) {
            sched_request *r = s->cand[k];
            if (r->take == 0) continue;
            if (st != HEARTH_OK) {
                hearth_kv_truncate(s->ctx, r->slot, 0);
                s->slots[r->slot].n = 0;
                finish(s, r, SCHED_FINISH_ERROR, err.msg, t1);
            } else {
                publish(s, r, t1);
            }
        }
        s->kv_used = s->kv_cached = 0;
        for (uint32_t i = 0; i < s->p.n_parallel; i++) {
            if (s->slots[i].owner)
                s->kv_used += s->slots[i].n;
            else
                s->kv_cached += s->slots[i].n;
        }
        rate_sample(s, t1);
    }
    /* Shutting down: everything still open ends with an error. */
    double now = now_s();
    for (uint32_t i = 0; i < s->p.n_parallel; i++) {
        if (s->slots[i].owner) {
            finish(s, s->slots[i].owner, SCHED_FINISH_ERROR, "the server is shutting down", now);
        }
    }
    while (s->q_head) finish(s, s->q_head, SCHED_FINISH_ERROR, "the server is shutting down", now);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---------------------------------------------------------------- lifetime */

hearth_status sched_create(const hearth_model *model, const sched_params *params, sched **out,
                           hearth_error *err) {
    *out = NULL;
    sched_params p = params ? *params : sched_default_params();
    const model_hparams *hp = &model->hp;
    if (p.n_ctx == 0) p.n_ctx = hp->n_ctx_train && hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (p.n_parallel == 0 || p.n_parallel > SCHED_MAX_PARALLEL) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "parallel sequences %u outside 1..%d",
                         p.n_parallel, SCHED_MAX_PARALLEL);
    }
    if (p.n_ctx < 8 || p.n_ctx > (1u << 24) || p.n_batch == 0 || p.n_batch > 65536) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "context %u (8..16777216) or batch %u (1..65536) out of range", p.n_ctx,
                         p.n_batch);
    }
    if (p.n_batch < p.n_parallel) p.n_batch = p.n_parallel;
    uint64_t elem = p.kv_type == HEARTH_KV_F32 ? 4 : 2;
    uint64_t per_slot =
        (uint64_t)hp->n_layer * hp->n_head_kv * (hp->head_dim + hp->head_dim_v) * elem * p.n_ctx;

    sched *s = calloc(1, sizeof *s);
    if (!s) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    s->model = model;
    s->tok = hearth_model_tokenizer(model);
    s->n_vocab = hearth_model_n_vocab(model);
    s->piece_cap = 3 * hearth_tokenizer_max_piece(s->tok) + 8;

    /* One context for every slot; a step samples at most one token per
     * sequence, so that many rows of logits.  When the model's memory
     * budget cannot hold them all, fewer slots (the context refuses before
     * it allocates anything). */
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = p.n_ctx;
    cp.n_batch = p.n_batch;
    cp.n_threads = p.n_threads > 0 ? p.n_threads : threadpool_n_cpus();
    cp.kv_type = p.kv_type;
    hearth_status st;
    for (;;) {
        cp.n_seq = p.n_parallel;
        cp.n_outputs = p.n_parallel;
        st = hearth_context_create(model, &cp, &s->ctx, err);
        if (st != HEARTH_ERR_OVER_BUDGET || !p.fit_budget || p.n_parallel == 1) break;
        p.n_parallel--;
    }
    p.n_threads = cp.n_threads;
    s->p = p;
    if (st != HEARTH_OK) {
        sched_free(s);
        return st;
    }
    s->slots = calloc(p.n_parallel, sizeof *s->slots);
    s->b_tok = calloc(p.n_batch, sizeof *s->b_tok);
    s->b_pos = calloc(p.n_batch, sizeof *s->b_pos);
    s->b_seq = calloc(p.n_batch, sizeof *s->b_seq);
    s->b_logits = calloc(p.n_batch, sizeof *s->b_logits);
    s->pseq = calloc(p.n_parallel, sizeof *s->pseq);
    s->take = calloc(p.n_parallel, sizeof *s->take);
    s->cand = calloc(p.n_parallel, sizeof *s->cand);
    bool ok = s->slots && s->b_tok && s->b_pos && s->b_seq && s->b_logits && s->pseq && s->take &&
              s->cand;
    for (uint32_t i = 0; ok && i < p.n_parallel; i++) {
        s->slots[i].tokens = malloc((size_t)p.n_ctx * sizeof(hearth_token));
        ok = s->slots[i].tokens != NULL;
    }
    if (!ok) {
        sched_free(s);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the scheduler");
    }
    s->st.kv_bytes = per_slot * p.n_parallel;
    s->st.weight_bytes = model->weight_bytes;
    if (pthread_create(&s->thread, NULL, engine_main, s) != 0) {
        sched_free(s);
        return error_set(err, HEARTH_ERR_NOMEM, "cannot start the engine thread");
    }
    s->thread_started = true;
    *out = s;
    return HEARTH_OK;
}

void sched_shutdown(sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    if (s->thread_started) {
        pthread_join(s->thread, NULL);
        s->thread_started = false;
    }
}

void sched_free(sched *s) {
    if (!s) return;
    sched_shutdown(s);
    hearth_context_free(s->ctx);
    for (uint32_t i = 0; s->slots && i < s->p.n_parallel; i++) free(s->slots[i].tokens);
    free(s->slots);
    free(s->b_tok);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_logits);
    free(s->pseq);
    free(s->take);
    free(s->cand);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const sched_params *sched_get_params(const sched *s) {
    return &s->p;
}

const hearth_model *sched_model(const sched *s) {
    return s->model;
}

/* ---------------------------------------------------------------- introspection */

void sched_get_stats(sched *s, sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    memset(out->waiting, 0, sizeof out->waiting);
    memset(out->running, 0, sizeof out->running);
    memset(out->paused, 0, sizeof out->paused);
    for (sched_request *q = s->q_head; q; q = q->next) out->waiting[q->cls]++;
    out->kv_slots = s->p.n_parallel;
    out->kv_slots_busy = 0;
    for (uint32_t i = 0; i < s->p.n_parallel; i++) {
        const sched_request *r = s->slots[i].owner;
        if (!r) continue;
        out->kv_slots_busy++;
        out->running[r->cls]++;
        if (r->wait_since >= 0) out->paused[r->cls]++;
    }
    out->kv_positions = (uint64_t)s->p.n_parallel * s->p.n_ctx;
    out->kv_positions_used = s->kv_used;
    out->kv_positions_cached = s->kv_cached;
    double now = now_s();
    out->tokens_per_s = 0.0;
    if (s->rate_count > 1) {
        unsigned last = (s->rate_at + RATE_RING - 1) % RATE_RING;
        unsigned first = last;
        for (unsigned k = 1; k < s->rate_count; k++) {
            unsigned i = (last + RATE_RING - k) % RATE_RING;
            if (now - s->rate_t[i] > RATE_WINDOW_S) break;
            first = i;
        }
        double dt = now - s->rate_t[first];
        if (first != last && dt > 0 && now - s->rate_t[last] < RATE_WINDOW_S) {
            out->tokens_per_s = (double)(s->rate_n[last] - s->rate_n[first]) / dt;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

void sched_count_loops(sched *s, sched_class cls, hearth_loop_action action, uint32_t n) {
    if ((unsigned)cls >= SCHED_N_CLASS || (unsigned)action > HEARTH_LOOP_PENALIZE) return;
    pthread_mutex_lock(&s->mu);
    s->st.loop_triggers[cls][action] += n;
    pthread_mutex_unlock(&s->mu);
}

static void seq_info(const sched *s, const sched_request *r, double now, sched_seq_info *o) {
    o->id = r->id;
    o->cls = r->cls;
    o->effective = effective(s, r, now);
    o->state = r->pub_state;
    o->age_s = now - r->t_submit;
    o->n_prompt = r->n_prompt;
    o->n_cached = r->pub_cached;
    o->n_generated = r->pub_gen;
    o->slot = r->pub_slot;
    o->paused_steps = r->n_paused;
    o->evictions = r->n_evicted;
    memcpy(o->user, r->user, sizeof o->user);
}

size_t sched_list(sched *s, sched_seq_info *out, size_t cap) {
    pthread_mutex_lock(&s->mu);
    double now = now_s();
    size_t n = 0;
    for (uint32_t i = 0; i < s->p.n_parallel; i++) {
        const sched_request *r = s->slots[i].owner;
        if (!r) continue;
        if (n < cap) seq_info(s, r, now, &out[n]);
        n++;
    }
    /* The queue in serving order: a selection sort over what is printed. */
    size_t first_q = n;
    for (const sched_request *q = s->q_head; q; q = q->next) {
        if (n < cap) seq_info(s, q, now, &out[n]);
        n++;
    }
    size_t end = n < cap ? n : cap;
    for (size_t i = first_q; i < end; i++) {
        for (size_t j = i + 1; j < end; j++) {
            bool swap = out[j].effective < out[i].effective ||
                        (out[j].effective == out[i].effective && out[j].age_s > out[i].age_s);
            if (swap) {
                sched_seq_info t = out[i];
                out[i] = out[j];
                out[j] = t;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}
