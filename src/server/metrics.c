/* metrics.c — /metrics (Prometheus text format 0.0.4) and /v1/queue (JSON).
 *
 * Both are snapshots of the scheduler taken under its lock in one call,
 * then formatted without it.
 */
#include "server/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

static void head(sbuf *b, const char *name, const char *type, const char *help) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void per_class_u64(sbuf *b, const char *name, const char *type, const char *help,
                          const uint64_t *v) {
    head(b, name, type, help);
    for (int c = 0; c < SCHED_N_CLASS; c++) {
        sb_printf(b, "%s{class=\"%s\"} %llu\n", name, sched_class_name((sched_class)c),
                  (unsigned long long)v[c]);
    }
}

static void per_class_u32(sbuf *b, const char *name, const char *help, const uint32_t *v) {
    uint64_t w[SCHED_N_CLASS];
    for (int c = 0; c < SCHED_N_CLASS; c++) w[c] = v[c];
    per_class_u64(b, name, "gauge", help, w);
}

static void histogram(sbuf *b, const char *name, const char *labels, const sched_histogram *h) {
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i < SCHED_N_BUCKETS; i++) {
        cum += h->counts[i];
        sb_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, sched_bucket_bounds[i],
                  (unsigned long long)cum);
    }
    cum += h->counts[SCHED_N_BUCKETS];
    sb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    sb_printf(b, "%s_sum%s%s%s %.6f\n", name, open, labels, close, h->sum);
    sb_printf(b, "%s_count%s%s%s %llu\n", name, open, labels, close, (unsigned long long)h->count);
}

static void per_class_histogram(sbuf *b, const char *name, const char *help,
                                const sched_histogram *h) {
    head(b, name, "histogram", help);
    for (int c = 0; c < SCHED_N_CLASS; c++) {
        char labels[64];
        snprintf(labels, sizeof labels, "class=\"%s\"", sched_class_name((sched_class)c));
        histogram(b, name, labels, &h[c]);
    }
}

/* Resident and virtual memory of this process from /proc/self/statm. */
static void process_memory(uint64_t *rss, uint64_t *vsize) {
    *rss = *vsize = 0;
    FILE *fp = fopen("/proc/self/statm", "r");
    if (!fp) return;
    unsigned long long pages = 0, res = 0;
    if (fscanf(fp, "%llu %llu", &pages, &res) == 2) {
        long ps = sysconf(_SC_PAGESIZE);
        *vsize = pages * (uint64_t)(ps > 0 ? ps : 4096);
        *rss = res * (uint64_t)(ps > 0 ? ps : 4096);
    }
    fclose(fp);
}

char *metrics_prometheus(sched *s, size_t *len) {
    sched_stats st;
    sched_get_stats(s, &st);
    sbuf b = {NULL, 0, 0, false};
    per_class_u32(&b, "hearth_queue_depth", "Requests waiting for a KV slot.", st.waiting);
    per_class_u32(&b, "hearth_running_sequences", "Sequences holding a KV slot.", st.running);
    per_class_u32(&b, "hearth_paused_sequences",
                  "Running sequences the last step skipped (preempted by a higher class).",
                  st.paused);
    per_class_u64(&b, "hearth_requests_total", "counter", "Requests accepted.", st.requests);
    per_class_u64(&b, "hearth_requests_rejected_total", "counter",
                  "Requests refused because the class's queue was full.", st.rejected);
    head(&b, "hearth_requests_finished_total", "counter", "Requests finished, by reason.");
    for (int c = 0; c < SCHED_N_CLASS; c++) {
        for (int f = 1; f < SCHED_N_FINISH; f++) {
            sb_printf(&b, "hearth_requests_finished_total{class=\"%s\",reason=\"%s\"} %llu\n",
                      sched_class_name((sched_class)c), sched_finish_name((sched_finish)f),
                      (unsigned long long)st.finished[c][f]);
        }
    }
    head(&b, "hearth_loop_guard_triggers_total", "counter",
         "Loops the loop guard found, by class and by what it did (watch: only counted).");
    static const char *const actions[4] = {"watch", "stop_section", "stop", "penalize"};
    for (int c = 0; c < SCHED_N_CLASS; c++) {
        for (int a = 0; a < 4; a++) {
            sb_printf(&b, "hearth_loop_guard_triggers_total{class=\"%s\",action=\"%s\"} %llu\n",
                      sched_class_name((sched_class)c), actions[a],
                      (unsigned long long)st.loop_triggers[c][a]);
        }
    }
    per_class_u64(&b, "hearth_prompt_tokens_total", "counter",
                  "Prompt tokens of accepted requests.", st.prompt_tokens);
    per_class_u64(&b, "hearth_prompt_cached_tokens_total", "counter",
                  "Prompt tokens served from the prefix cache.", st.cached_tokens);
    per_class_u64(&b, "hearth_generated_tokens_total", "counter", "Tokens generated.",
                  st.generated_tokens);
    head(&b, "hearth_tokens_per_second", "gauge",
         "Generated tokens per second over the last five seconds.");
    sb_printf(&b, "hearth_tokens_per_second %.3f\n", st.tokens_per_s);
    per_class_histogram(&b, "hearth_time_to_first_token_seconds",
                        "Time from accepting a request to its first token.", st.ttft);
    per_class_histogram(&b, "hearth_time_per_output_token_seconds",
                        "Time between consecutive tokens of a sequence.", st.token_time);
    head(&b, "hearth_step_seconds", "histogram", "Duration of one engine step (forward pass).");
    histogram(&b, "hearth_step_seconds", "", &st.step_time);
    head(&b, "hearth_steps_total", "counter", "Engine steps.");
    sb_printf(&b, "hearth_steps_total %llu\n", (unsigned long long)st.steps);
    head(&b, "hearth_step_tokens_total", "counter", "Tokens through the forward pass.");
    sb_printf(&b, "hearth_step_tokens_total %llu\n", (unsigned long long)st.step_tokens);
    head(&b, "hearth_evictions_total", "counter",
         "Running sequences evicted from the KV cache for a higher class (recomputed later).");
    sb_printf(&b, "hearth_evictions_total %llu\n", (unsigned long long)st.evictions);
    head(&b, "hearth_preemptions_total", "counter",
         "Sequence-steps skipped because a higher class was taking in its prompt.");
    sb_printf(&b, "hearth_preemptions_total %llu\n", (unsigned long long)st.preemptions);
    head(&b, "hearth_kv_cache_slots", "gauge", "KV cache slots (parallel sequences).");
    sb_printf(&b, "hearth_kv_cache_slots %u\n", st.kv_slots);
    head(&b, "hearth_kv_cache_slots_busy", "gauge", "KV cache slots held by running sequences.");
    sb_printf(&b, "hearth_kv_cache_slots_busy %u\n", st.kv_slots_busy);
    head(&b, "hearth_kv_cache_positions", "gauge", "KV cache positions in all slots.");
    sb_printf(&b, "hearth_kv_cache_positions %llu\n", (unsigned long long)st.kv_positions);
    head(&b, "hearth_kv_cache_positions_used", "gauge", "Positions held by running sequences.");
    sb_printf(&b, "hearth_kv_cache_positions_used %llu\n",
              (unsigned long long)st.kv_positions_used);
    head(&b, "hearth_kv_cache_positions_cached", "gauge",
         "Positions kept in free slots for the prefix cache.");
    sb_printf(&b, "hearth_kv_cache_positions_cached %llu\n",
              (unsigned long long)st.kv_positions_cached);
    head(&b, "hearth_kv_cache_usage_ratio", "gauge",
         "Fraction of positions held by running sequences.");
    sb_printf(&b, "hearth_kv_cache_usage_ratio %.6f\n",
              st.kv_positions ? (double)st.kv_positions_used / (double)st.kv_positions : 0.0);
    head(&b, "hearth_kv_cache_bytes", "gauge", "Bytes of the KV cache.");
    sb_printf(&b, "hearth_kv_cache_bytes %llu\n", (unsigned long long)st.kv_bytes);
    head(&b, "hearth_model_weight_bytes", "gauge", "Bytes of model weights.");
    sb_printf(&b, "hearth_model_weight_bytes %llu\n", (unsigned long long)st.weight_bytes);
    hearth_memory_report mr;
    hearth_memory_report_get(sched_model(s), &mr);
    head(&b, "hearth_memory_budget_bytes", "gauge",
         "Memory the model and its contexts may hold (+Inf: no budget).");
    if (mr.budget_bytes == HEARTH_BUDGET_UNLIMITED) {
        sb_printf(&b, "hearth_memory_budget_bytes +Inf\n");
    } else {
        sb_printf(&b, "hearth_memory_budget_bytes %llu\n", (unsigned long long)mr.budget_bytes);
    }
    head(&b, "hearth_memory_committed_bytes", "gauge",
         "Memory the model, KV cache and scratch hold (what counts against the budget).");
    sb_printf(&b, "hearth_memory_committed_bytes %llu\n", (unsigned long long)mr.committed_bytes);
    head(&b, "hearth_memory_scratch_bytes", "gauge", "Scratch buffers of the forward pass.");
    sb_printf(&b, "hearth_memory_scratch_bytes %llu\n", (unsigned long long)mr.scratch_bytes);
    head(&b, "hearth_model_resident_bytes", "gauge", "Bytes of the model file resident in RAM.");
    sb_printf(&b, "hearth_model_resident_bytes %llu\n",
              (unsigned long long)mr.mapped_resident_bytes);
    uint64_t rss, vsize;
    process_memory(&rss, &vsize);
    head(&b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    sb_printf(&b, "process_resident_memory_bytes %llu\n", (unsigned long long)rss);
    head(&b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    sb_printf(&b, "process_virtual_memory_bytes %llu\n", (unsigned long long)vsize);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.n;
    return b.p;
}

json_t *metrics_queue_json(sched *s) {
    size_t cap = 64, n;
    sched_seq_info *v = NULL;
    for (;;) {
        sched_seq_info *w = realloc(v, cap * sizeof *v);
        if (!w) {
            free(v);
            return NULL;
        }
        v = w;
        n = sched_list(s, v, cap);
        if (n <= cap) break;
        cap = n + 64;
    }
    const sched_params *p = sched_get_params(s);
    json_t *root = json_object();
    json_t *seqs = json_array();
    size_t running = 0, waiting = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        char id[32];
        snprintf(id, sizeof id, "seq-%llu", (unsigned long long)v[i].id);
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "class", json_string(sched_class_name(v[i].cls)));
        json_object_set_new(o, "effective_class", json_string(sched_class_name(v[i].effective)));
        json_object_set_new(o, "state", json_string(v[i].state));
        json_object_set_new(o, "age_s", json_real(v[i].age_s));
        json_object_set_new(o, "prompt_tokens", json_integer(v[i].n_prompt));
        json_object_set_new(o, "cached_tokens", json_integer(v[i].n_cached));
        json_object_set_new(o, "generated_tokens", json_integer(v[i].n_generated));
        json_object_set_new(o, "slot", v[i].slot >= 0 ? json_integer(v[i].slot) : json_null());
        json_object_set_new(o, "paused_steps", json_integer(v[i].paused_steps));
        json_object_set_new(o, "evictions", json_integer(v[i].evictions));
        /* A name from a header may not be UTF-8; JSON strings must be. */
        json_t *user = json_string(v[i].user);
        json_object_set_new(o, "user", user ? user : json_string("?"));
        json_array_append_new(seqs, o);
        if (v[i].slot >= 0)
            running++;
        else
            waiting++;
    }
    free(v);
    sched_stats st;
    sched_get_stats(s, &st);
    uint32_t paused = 0;
    for (int c = 0; c < SCHED_N_CLASS; c++) paused += st.paused[c];
    json_object_set_new(root, "object", json_string("queue"));
    json_object_set_new(root, "slots", json_integer(p->n_parallel));
    json_object_set_new(root, "n_ctx", json_integer(p->n_ctx));
    json_object_set_new(root, "running", json_integer((json_int_t)running));
    json_object_set_new(root, "waiting", json_integer((json_int_t)waiting));
    json_object_set_new(root, "paused", json_integer(paused));
    json_object_set_new(root, "preemptions_total", json_integer((json_int_t)st.preemptions));
    json_object_set_new(root, "evictions_total", json_integer((json_int_t)st.evictions));
    json_object_set_new(root, "sequences", seqs);
    return root;
}
