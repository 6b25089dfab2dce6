/* metrics.h — Prometheus metrics and the queue view (private to the server). */
#ifndef HEARTH_SERVER_METRICS_H
#define HEARTH_SERVER_METRICS_H

#include <jansson.h>
#include <stddef.h>

#include "sched/sched.h"

/* The Prometheus text exposition of the scheduler and the process: queue
 * depth, running and paused sequences per class, request and token
 * counters, tokens/s, time-to-first-token and per-token latency histograms
 * per class, step times, KV cache use and memory.  malloc'd; NULL when out
 * of memory. */
char *metrics_prometheus(sched *s, size_t *len);

/* {"object": "queue", "slots", "n_ctx", "running", "waiting", "paused",
 * "preemptions_total", "evictions_total", "sequences": [{id, class,
 * effective_class, state, age_s, prompt_tokens, cached_tokens,
 * generated_tokens, slot, paused_steps, evictions, user}]}: running
 * sequences first, then the queue in the order it will be served.  The
 * totals count since the start (sequence-steps paused for a higher class,
 * sequences sent back to the queue).  NULL when out of memory. */
json_t *metrics_queue_json(sched *s);

#endif
