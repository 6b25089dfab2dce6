/* history.h — the last minutes of the server's metrics, for the dashboard
 * (private to the server).
 *
 * A sampler thread snapshots the scheduler and the process once per
 * interval into a ring: tokens per second and mean time to first token
 * per class over the interval, queue and pause counts, KV cache use and
 * memory.  GET /v1/metrics returns the ring as columns (one array per
 * series, ready for a chart), optionally only the samples newer than a
 * time the client already has.
 */
#ifndef HEARTH_SERVER_HISTORY_H
#define HEARTH_SERVER_HISTORY_H

#include <jansson.h>
#include <stddef.h>

#include "hearth.h"
#include "sched/sched.h"

typedef struct history history;

/* Starts sampling s every interval_ms, keeping the last cap samples (the
 * first one is taken before this returns).  s must outlive the history. */
hearth_status history_start(sched *s, unsigned interval_ms, size_t cap, history **out,
                            hearth_error *err);
/* Stops the sampler thread and frees everything.  Accepts NULL. */
void history_stop(history *h);

/* {"object": "metrics", "interval_s", "window_s", "classes": [...],
 *  "samples": {"t": [unix seconds], "tokens_per_s": [...],
 *              "class_tokens_per_s": {"interactive": [...], ...},
 *              "ttft_s": {"interactive": [... or null], ...},
 *              "waiting": {...}, "running": {...}, "paused": {...},
 *              "preemptions": [...], "evictions": [...],
 *              "kv_slots", "kv_slots_busy", "kv_positions", "kv_positions_used",
 *              "kv_positions_cached", "resident_bytes", "locked_bytes",
 *              "committed_bytes", "model_resident_bytes",
 *              "budget_bytes": [... or null when there is no budget]}}
 * holding the samples taken after `since` (unix seconds; 0 for all), oldest
 * first.  NULL when out of memory. */
json_t *history_json(history *h, double since);

#endif
