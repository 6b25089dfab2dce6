/* threadpool.c — persistent workers woken by a job generation counter.
 *
 * Protocol: the caller publishes (fn, ctx), bumps `generation`, wakes
 * sleepers, runs part 0 itself and waits until `pending` drops to zero.
 * A worker that sees a new generation runs its part and decrements
 * `pending`.  Spinning first keeps the latency of back-to-back jobs low;
 * the condition variable keeps an idle pool asleep.
 */
#include "util/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"

#define THREADPOOL_PAUSE 4096  /* busy polls before yielding the core */
#define THREADPOOL_SPIN  20000 /* polls in all before a worker goes to sleep */

/* One poll's wait: a pause hint while spinning briefly, then yielding, so
 * back-to-back jobs start within nanoseconds but an oversubscribed machine
 * is not starved. */
static inline void poll_wait(int spins) {
    if (spins < THREADPOOL_PAUSE) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        sched_yield();
    }
}

typedef struct worker {
    threadpool *pool;
    int ith;
    pthread_t thread;
    int started;
} worker;

struct threadpool {
    int n_threads;
    worker *workers; /* (n_threads - 1) */
    threadpool_fn fn;
    void *ctx;
    atomic_uint generation;
    atomic_int pending;
    atomic_int stop;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
};

static void *worker_main(void *arg) {
    worker *w = arg;
    threadpool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_acquire)) {
            if (++spins < THREADPOOL_SPIN) {
                poll_wait(spins);
                continue;
            }
            pthread_mutex_lock(&p->mutex);
            while (atomic_load_explicit(&p->generation, memory_order_acquire) == seen &&
                   !atomic_load_explicit(&p->stop, memory_order_acquire)) {
                pthread_cond_wait(&p->wake, &p->mutex);
            }
            pthread_mutex_unlock(&p->mutex);
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        seen = gen;
        p->fn(p->ctx, w->ith, p->n_threads);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

hearth_status threadpool_create(int n_threads, threadpool **out, hearth_error *err) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "thread count %d is outside 1..1024",
                         n_threads);
    }
    threadpool *p = calloc(1, sizeof *p);
    if (!p) return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the thread pool");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            threadpool_free(p);
            return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the thread pool");
        }
    }
    for (int i = 0; i < n_threads - 1; i++) {
        worker *w = &p->workers[i];
        w->pool = p;
        w->ith = i + 1;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            threadpool_free(p);
            return error_set(err, HEARTH_ERR_NOMEM, "cannot start worker thread %d", i + 1);
        }
        w->started = 1;
    }
    *out = p;
    return HEARTH_OK;
}

void threadpool_free(threadpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mutex);
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
    for (int i = 0; p->workers && i < p->n_threads - 1; i++) {
        if (p->workers[i].started) pthread_join(p->workers[i].thread, NULL);
    }
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mutex);
    free(p->workers);
    free(p);
}

int threadpool_size(const threadpool *p) {
    return p->n_threads;
}

void threadpool_run(threadpool *p, threadpool_fn fn, void *ctx) {
    if (p->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_release);
    pthread_mutex_lock(&p->mutex);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_acq_rel);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
    fn(ctx, 0, p->n_threads);
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) != 0; spins++) {
        poll_wait(spins);
    }
}

void threadpool_split(int64_t n, int ith, int nth, int64_t *begin, int64_t *end) {
    int64_t per = n / nth, extra = n % nth;
    *begin = ith * per + (ith < extra ? ith : extra);
    *end = *begin + per + (ith < extra ? 1 : 0);
}

int threadpool_n_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
