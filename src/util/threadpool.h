/* threadpool.h — a persistent pool of worker threads for the forward pass.
 *
 * The pool is created once per context.  threadpool_run calls fn(ctx, ith,
 * nth) on every thread of the pool — the caller's thread is thread 0 — and
 * returns when all have finished.  Workers spin briefly between jobs (a
 * token's forward pass is many short jobs) and then sleep, so an idle pool
 * costs no CPU.
 */
#ifndef HEARTH_UTIL_THREADPOOL_H
#define HEARTH_UTIL_THREADPOOL_H

#include "hearth.h"

typedef struct threadpool threadpool;
typedef void (*threadpool_fn)(void *ctx, int ith, int nth);

/* n_threads counts the caller; 1 means no extra threads. */
hearth_status threadpool_create(int n_threads, threadpool **out, hearth_error *err);
void threadpool_free(threadpool *pool);
int threadpool_size(const threadpool *pool);
/* Runs fn on all threads and waits.  Not reentrant: one job at a time. */
void threadpool_run(threadpool *pool, threadpool_fn fn, void *ctx);

/* Splits [0, n) into nth nearly equal parts; part ith is [*begin, *end). */
void threadpool_split(int64_t n, int ith, int nth, int64_t *begin, int64_t *end);

/* Number of online CPUs (at least 1). */
int threadpool_n_cpus(void);

#endif
