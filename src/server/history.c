/* history.c — the metrics ring behind GET /v1/metrics (see history.h).
 *
 * Rates and means are taken between consecutive samples from the
 * scheduler's cumulative counters (generated tokens, the time-to-first-token
 * histogram's sum and count), so a sample says what happened during its
 * interval, not since the start.  The ring is allocated once; the sampler
 * thread reads the scheduler (under its lock, in sched_get_stats) and the
 * process's memory outside the ring's lock, then appends under it.
 */
#include "server/history.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/error.h"

/* One snapshot. */
typedef struct sample {
    double t; /* unix seconds */
    double tokens_per_s;
    double class_tokens_per_s[SCHED_N_CLASS];
    double ttft_s[SCHED_N_CLASS]; /* mean over the interval; NAN when no first token came */
    uint32_t waiting[SCHED_N_CLASS], running[SCHED_N_CLASS], paused[SCHED_N_CLASS];
    uint64_t preemptions, evictions; /* totals since the start */
    uint32_t kv_slots, kv_slots_busy;
    uint64_t kv_positions, kv_positions_used, kv_positions_cached;
    uint64_t resident_bytes, locked_bytes, committed_bytes, model_resident_bytes;
    uint64_t budget_bytes; /* HEARTH_BUDGET_UNLIMITED: none */
} sample;

/* The cumulative counters the next sample's rates start from. */
typedef struct counters {
    double mono; /* CLOCK_MONOTONIC seconds */
    uint64_t generated[SCHED_N_CLASS];
    uint64_t ttft_count[SCHED_N_CLASS];
    double ttft_sum[SCHED_N_CLASS];
} counters;

struct history {
    sched *s;
    unsigned interval_ms;
    sample *ring;        /* (cap) */
    size_t cap, n, head; /* head: the next slot written */
    counters last;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    pthread_t thread;
    bool thread_started;
};

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double unix_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Takes one sample; only the sampler thread (and history_start before it
 * runs) calls this, so h->last needs no lock. */
static void take_sample(history *h) {
    sched_stats st;
    sched_get_stats(h->s, &st);
    hearth_memory_report mr;
    hearth_memory_report_get(sched_model(h->s), &mr);
    sample x;
    memset(&x, 0, sizeof x);
    x.t = unix_s();
    counters now;
    now.mono = mono_s();
    double dt = now.mono - h->last.mono;
    bool first = h->n == 0;
    for (int c = 0; c < SCHED_N_CLASS; c++) {
        now.generated[c] = st.generated_tokens[c];
        now.ttft_count[c] = st.ttft[c].count;
        now.ttft_sum[c] = st.ttft[c].sum;
        uint64_t dn = now.generated[c] - h->last.generated[c];
        x.class_tokens_per_s[c] = !first && dt > 0 ? (double)dn / dt : 0.0;
        x.tokens_per_s += x.class_tokens_per_s[c];
        uint64_t dc = now.ttft_count[c] - h->last.ttft_count[c];
        x.ttft_s[c] = !first && dc > 0 ? (now.ttft_sum[c] - h->last.ttft_sum[c]) / (double)dc : NAN;
        x.waiting[c] = st.waiting[c];
        x.running[c] = st.running[c];
        x.paused[c] = st.paused[c];
    }
    x.preemptions = st.preemptions;
    x.evictions = st.evictions;
    x.kv_slots = st.kv_slots;
    x.kv_slots_busy = st.kv_slots_busy;
    x.kv_positions = st.kv_positions;
    x.kv_positions_used = st.kv_positions_used;
    x.kv_positions_cached = st.kv_positions_cached;
    x.resident_bytes = mr.resident_bytes;
    x.locked_bytes = mr.locked_bytes;
    x.committed_bytes = mr.committed_bytes;
    x.model_resident_bytes = mr.mapped_resident_bytes;
    x.budget_bytes = mr.budget_bytes;
    h->last = now;
    pthread_mutex_lock(&h->mu);
    h->ring[h->head] = x;
    h->head = (h->head + 1) % h->cap;
    if (h->n < h->cap) h->n++;
    pthread_mutex_unlock(&h->mu);
}

static void *sampler(void *arg) {
    history *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += h->interval_ms / 1000;
        until.tv_nsec += (long)(h->interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!h->stopping && pthread_cond_timedwait(&h->cv, &h->mu, &until) == 0) {
        }
        if (h->stopping) break;
        pthread_mutex_unlock(&h->mu);
        take_sample(h);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

hearth_status history_start(sched *s, unsigned interval_ms, size_t cap, history **out,
                            hearth_error *err) {
    *out = NULL;
    if (interval_ms == 0 || cap < 2 || cap > 1000000) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "bad metrics history settings");
    }
    history *h = calloc(1, sizeof *h);
    if (!h) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    h->ring = calloc(cap, sizeof *h->ring);
    if (!h->ring) {
        free(h);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    h->s = s;
    h->interval_ms = interval_ms;
    h->cap = cap;
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    take_sample(h);
    if (pthread_create(&h->thread, NULL, sampler, h) != 0) {
        history_stop(h);
        return error_set(err, HEARTH_ERR_IO, "cannot start the metrics sampler thread");
    }
    h->thread_started = true;
    *out = h;
    return HEARTH_OK;
}

void history_stop(history *h) {
    if (!h) return;
    if (h->thread_started) {
        pthread_mutex_lock(&h->mu);
        h->stopping = true;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
    }
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h->ring);
    free(h);
}

/* ---------------------------------------------------------------- JSON */

static json_t *num_or_null(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

/* Appends v (consumed) to the column o[key]. */
static void push(json_t *o, const char *key, json_t *v) {
    json_array_append_new(json_object_get(o, key), v);
}

/* Appends one value per class to the columns o[key][class name]. */
static void push_classes(json_t *o, const char *key, const double *v) {
    json_t *per = json_object_get(o, key);
    for (int c = 0; c < SCHED_N_CLASS; c++)
        push(per, sched_class_name((sched_class)c), num_or_null(v[c]));
}

static void push_classes_u32(json_t *o, const char *key, const uint32_t *v) {
    json_t *per = json_object_get(o, key);
    for (int c = 0; c < SCHED_N_CLASS; c++) {
        push(per, sched_class_name((sched_class)c), json_integer(v[c]));
    }
}

static void push_u64(json_t *o, const char *key, uint64_t v) {
    push(o, key, json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v));
}

json_t *history_json(history *h, double since) {
    /* Copy the wanted samples out under the lock, format without it. */
    sample *v = malloc(h->cap * sizeof *v);
    if (!v) return NULL;
    size_t n = 0;
    pthread_mutex_lock(&h->mu);
    for (size_t k = 0; k < h->n; k++) {
        const sample *x = &h->ring[(h->head + h->cap - h->n + k) % h->cap];
        if (x->t > since) v[n++] = *x;
    }
    pthread_mutex_unlock(&h->mu);

    json_t *root = json_object(), *cols = json_object(), *classes = json_array();
    for (int c = 0; c < SCHED_N_CLASS; c++) {
        json_array_append_new(classes, json_string(sched_class_name((sched_class)c)));
    }
    json_object_set_new(root, "object", json_string("metrics"));
    json_object_set_new(root, "interval_s", json_real(h->interval_ms / 1000.0));
    json_object_set_new(root, "window_s", json_real(h->interval_ms / 1000.0 * (double)h->cap));
    json_object_set_new(root, "classes", classes);
    json_object_set_new(root, "n", json_integer((json_int_t)n));
    /* Every column exists even when no sample is new. */
    static const char *const flat[] = {"t",
                                       "tokens_per_s",
                                       "preemptions",
                                       "evictions",
                                       "kv_slots",
                                       "kv_slots_busy",
                                       "kv_positions",
                                       "kv_positions_used",
                                       "kv_positions_cached",
                                       "resident_bytes",
                                       "locked_bytes",
                                       "committed_bytes",
                                       "model_resident_bytes",
                                       "budget_bytes"};
    static const char *const per_class[] = {"class_tokens_per_s", "ttft_s", "waiting", "running",
                                            "paused"};
    for (size_t k = 0; k < sizeof flat / sizeof flat[0]; k++) {
        json_object_set_new(cols, flat[k], json_array());
    }
    for (size_t k = 0; k < sizeof per_class / sizeof per_class[0]; k++) {
        json_t *col = json_object();
        for (int c = 0; c < SCHED_N_CLASS; c++) {
            json_object_set_new(col, sched_class_name((sched_class)c), json_array());
        }
        json_object_set_new(cols, per_class[k], col);
    }
    for (size_t i = 0; i < n; i++) {
        const sample *x = &v[i];
        push(cols, "t", json_real(x->t));
        push(cols, "tokens_per_s", json_real(x->tokens_per_s));
        push_classes(cols, "class_tokens_per_s", x->class_tokens_per_s);
        push_classes(cols, "ttft_s", x->ttft_s);
        push_classes_u32(cols, "waiting", x->waiting);
        push_classes_u32(cols, "running", x->running);
        push_classes_u32(cols, "paused", x->paused);
        push_u64(cols, "preemptions", x->preemptions);
        push_u64(cols, "evictions", x->evictions);
        push_u64(cols, "kv_slots", x->kv_slots);
        push_u64(cols, "kv_slots_busy", x->kv_slots_busy);
        push_u64(cols, "kv_positions", x->kv_positions);
        push_u64(cols, "kv_positions_used", x->kv_positions_used);
        push_u64(cols, "kv_positions_cached", x->kv_positions_cached);
        push_u64(cols, "resident_bytes", x->resident_bytes);
        push_u64(cols, "locked_bytes", x->locked_bytes);
        push_u64(cols, "committed_bytes", x->committed_bytes);
        push_u64(cols, "model_resident_bytes", x->model_resident_bytes);
        if (x->budget_bytes == HEARTH_BUDGET_UNLIMITED) {
            push(cols, "budget_bytes", json_null());
        } else {
            push_u64(cols, "budget_bytes", x->budget_bytes);
        }
    }
    free(v);
    json_object_set_new(root, "samples", cols);
    return root;
}
