/* bench.c — `hearth bench`: prompt and generation speed of a model.
 *
 * Measures, like llama-bench, prompt processing of p tokens (pp) and
 * generation of n tokens one at a time (tg), each repeated and reported as
 * mean ± standard deviation.  For generation it also states the weight
 * bytes one token reads, the bandwidth that achieves, and that as a share
 * of this machine's read bandwidth, which it measures with the same
 * threads before and after every generation run (each run is held to the
 * bandwidth of its own moment).  Token ids are random: speed does not depend on them.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/cli.h"
#include "hearth.h"
#include "kernels/cpu.h"
#include "model/device.h"
#include "util/threadpool.h"

static const char bench_usage[] =
    "usage: hearth bench -m MODEL [-t N] [-p 128,512] [-n 128] [-r REPS] [--json]\n"
    "\n"
    "Measures prompt processing (pp) and generation (tg) speed of MODEL.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE   GGUF model\n"
    "  -t, --threads N    threads (default: one per core)\n"
    "  -p, --prompt L     prompt lengths to measure, comma-separated (default 128); 0 = none\n"
    "  -n, --gen N        tokens to generate (default 128); 0 = none\n"
    "  -r, --reps R       repetitions of each measurement (default 3)\n"
    "      --json         print the results as JSON instead of a table\n" CLI_MEMORY_USAGE
    "  -h, --help         show this help\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- bandwidth */

typedef struct read_job {
    const uint8_t *buf;
    size_t bytes;
    uint64_t sink[64];
} read_job;

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t read_range_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_xor_si256(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    __m256i x = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    return (uint64_t)_mm256_extract_epi64(x, 0) ^ (uint64_t)_mm256_extract_epi64(x, 3);
}
#endif

static uint64_t read_range(const uint8_t *p, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_get_features()->avx2) return read_range_avx2(p, n);
#endif
    const uint64_t *q = (const uint64_t *)p;
    uint64_t s = 0;
    for (size_t i = 0; i < n / 8; i++) s ^= q[i];
    return s;
}

static void read_worker(void *arg, int ith, int nth) {
    read_job *j = arg;
    int64_t b, e;
    threadpool_split((int64_t)(j->bytes / 4096), ith, nth, &b, &e);
    j->sink[ith % 64] = read_range(j->buf + b * 4096, (size_t)(e - b) * 4096);
}

/* Read bandwidth probe: a buffer larger than the caches, read by the
 * bench's thread count.  On a machine whose memory is shared with other
 * work the bandwidth moves from second to second, so it is measured
 * around every generation run and each run is set against what the memory
 * gave just before and just after it. */
#define PROBE_BYTES ((size_t)512 << 20)

typedef struct probe {
    uint8_t *buf;
    threadpool *pool;
} probe;

static bool probe_open(probe *pr, int threads) {
    hearth_error err;
    pr->buf = aligned_alloc(4096, PROBE_BYTES);
    pr->pool = NULL;
    if (!pr->buf || threadpool_create(threads, &pr->pool, &err) != HEARTH_OK) {
        free(pr->buf);
        pr->buf = NULL;
        return false;
    }
    memset(pr->buf, 1, PROBE_BYTES);
    return true;
}

static void probe_close(probe *pr) {
    threadpool_free(pr->pool);
    free(pr->buf);
}

/* Best of 3 reads of the probe buffer, in bytes/s.  The model's workers
 * are let fall asleep first so that the probe has the cores to itself. */
static double probe_bandwidth(probe *pr) {
    struct timespec nap = {0, 30 * 1000 * 1000};
    nanosleep(&nap, NULL);
    read_job j = {pr->buf, PROBE_BYTES, {0}};
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t = now_s();
        threadpool_run(pr->pool, read_worker, &j);
        t = now_s() - t;
        if (t < best) best = t;
    }
    return (double)PROBE_BYTES / best;
}

/* ---------------------------------------------------------------- runs */

typedef struct stat_acc {
    double v[64];
    int n;
} stat_acc;

static void stat_add(stat_acc *s, double x) {
    if (s->n < 64) s->v[s->n++] = x;
}

static double stat_mean(const stat_acc *s) {
    double m = 0;
    for (int i = 0; i < s->n; i++) m += s->v[i];
    return s->n ? m / s->n : 0.0;
}

static double stat_sd(const stat_acc *s) {
    double m = stat_mean(s), v = 0;
    for (int i = 0; i < s->n; i++) v += (s->v[i] - m) * (s->v[i] - m);
    return s->n > 1 ? sqrt(v / (s->n - 1)) : 0.0;
}

/* Decodes n tokens for sequence 0 from position 0 in batches; returns seconds. */
static double run_prompt(hearth_context *ctx, uint32_t n, uint32_t n_batch, int32_t n_vocab,
                         hearth_token *tok, int32_t *pos, int32_t *seq, hearth_error *err,
                         bool *ok) {
    hearth_kv_truncate(ctx, 0, 0);
    for (uint32_t i = 0; i < n; i++) {
        tok[i] = (hearth_token)(1 + (uint32_t)rand() % (uint32_t)(n_vocab - 1));
        pos[i] = (int32_t)i;
        seq[i] = 0;
    }
    double t = now_s();
    for (uint32_t at = 0; at < n; at += n_batch) {
        uint32_t m = n - at < n_batch ? n - at : n_batch;
        hearth_batch b = {m, tok + at, pos + at, seq + at, NULL};
        if (hearth_decode(ctx, &b, err) != HEARTH_OK) {
            *ok = false;
            return 0.0;
        }
    }
    return now_s() - t;
}

/* Generates n tokens one at a time after a 1-token prompt; returns seconds. */
static double run_gen(hearth_context *ctx, uint32_t n, int32_t n_vocab, hearth_error *err,
                      bool *ok) {
    hearth_kv_truncate(ctx, 0, 0);
    hearth_token t = 1;
    int32_t pos = 0, seq = 0;
    hearth_batch b = {1, &t, &pos, &seq, NULL};
    if (hearth_decode(ctx, &b, err) != HEARTH_OK) {
        *ok = false;
        return 0.0;
    }
    double t0 = now_s();
    for (uint32_t i = 0; i < n; i++) {
        t = (hearth_token)(1 + (uint32_t)rand() % (uint32_t)(n_vocab - 1));
        pos = (int32_t)i + 1;
        if (hearth_decode(ctx, &b, err) != HEARTH_OK) {
            *ok = false;
            return 0.0;
        }
    }
    return now_s() - t0;
}

int cli_bench(int argc, char **argv) {
    const char *model_path = NULL;
    long long threads = 0, n_gen = 128, reps = 3, v;
    uint32_t pp[16] = {128};
    int n_pp = 1;
    bool json = false;
    hearth_model_params mp = hearth_model_default_params();
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(bench_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;

        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(val = cli_value(argc, argv, &i)) || !cli_parse_int(a, val, 1, 1024, &threads))
                return 2;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--gen")) {
            if (!(val = cli_value(argc, argv, &i)) || !cli_parse_int(a, val, 0, 1 << 20, &n_gen))
                return 2;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) {
            if (!(val = cli_value(argc, argv, &i)) || !cli_parse_int(a, val, 1, 64, &reps))
                return 2;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(val = cli_value(argc, argv, &i))) return 2;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", val);
            n_pp = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                if (n_pp == 16 || !cli_parse_int(a, tok, 0, 1 << 20, &v)) return 2;
                if (v > 0) pp[n_pp++] = (uint32_t)v;
            }
        } else {
            bool matched;
            int rc = cli_memory_flag(argc, argv, &i, &mp, &matched);
            if (rc != 0) return rc;
            if (!matched) {
                cli_error("unknown option '%s' for bench (see hearth bench --help)", a);
                return 2;
            }
        }
    }
    if (!model_path) {
        cli_error("bench needs a model: -m MODEL");
        return 2;
    }
    if (threads == 0) threads = threadpool_n_cpus();
    uint32_t max_pp = 0;
    for (int i = 0; i < n_pp; i++) max_pp = pp[i] > max_pp ? pp[i] : max_pp;

    hearth_error err = {HEARTH_OK, ""};
    hearth_model *model = NULL;
    hearth_context *ctx = NULL;
    hearth_token *tok = NULL;
    int32_t *pos = NULL, *seq = NULL;
    int rc = 1;
    if (hearth_model_load(model_path, &mp, &model, &err) != HEARTH_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    hearth_context_params cp = hearth_context_default_params();
    cp.n_threads = (int)threads;
    cp.n_ctx = (max_pp > (uint32_t)n_gen ? max_pp : (uint32_t)n_gen) + 8;
    cp.n_batch = max_pp < 512 ? (max_pp ? max_pp : 1) : 512;
    cp.n_outputs = 1;
    int32_t n_vocab = hearth_model_n_vocab(model);
    tok = malloc((max_pp + 1) * sizeof *tok);
    pos = malloc((max_pp + 1) * sizeof *pos);
    seq = malloc((max_pp + 1) * sizeof *seq);
    if (!tok || !pos || !seq || hearth_context_create(model, &cp, &ctx, &err) != HEARTH_OK) {
        cli_error("%s", err.msg[0] ? err.msg : "out of memory");
        goto out;
    }
    srand(1234);
    bool ok = true;
    stat_acc pp_stats[16], tg_stats;
    memset(pp_stats, 0, sizeof pp_stats);
    memset(&tg_stats, 0, sizeof tg_stats);
    /* One warm-up pass of each, then the counted repetitions. */
    for (int i = 0; i < n_pp && ok; i++) {
        run_prompt(ctx, pp[i], cp.n_batch, n_vocab, tok, pos, seq, &err, &ok);
        for (long long r = 0; r < reps && ok; r++) {
            double t = run_prompt(ctx, pp[i], cp.n_batch, n_vocab, tok, pos, seq, &err, &ok);
            stat_add(&pp_stats[i], pp[i] / t);
        }
    }
    bool gpu = strcmp(hearth_model_device(model), "cpu") != 0;
    double bytes_tok = (double)hearth_model_bytes_per_token(model);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_before_probe = (double)ru.ru_maxrss * 1024.0;
    probe pr = {NULL, NULL};
    bool probing = !gpu && n_gen > 0 && ok && probe_open(&pr, (int)threads);
    stat_acc bw_stats, share_stats;
    memset(&bw_stats, 0, sizeof bw_stats);
    memset(&share_stats, 0, sizeof share_stats);
    if (n_gen > 0 && ok) {
        run_gen(ctx, n_gen < 8 ? (uint32_t)n_gen : 8, n_vocab, &err, &ok);
        double bw_before = probing ? probe_bandwidth(&pr) : 0.0;
        for (long long r = 0; r < reps && ok; r++) {
            double t = run_gen(ctx, (uint32_t)n_gen, n_vocab, &err, &ok);
            stat_add(&tg_stats, (double)n_gen / t);
            if (!probing) continue;
            double bw_after = probe_bandwidth(&pr), bw_run = (bw_before + bw_after) / 2;
            stat_add(&bw_stats, bw_run);
            stat_add(&share_stats, (double)n_gen / t * bytes_tok / bw_run);
            bw_before = bw_after;
        }
    }
    if (probing) probe_close(&pr);
    if (!ok) {
        cli_error("%s", err.msg);
        goto out;
    }
    getrusage(RUSAGE_SELF, &ru);
    /* The peak of the model alone: the probe's buffer taken out. */
    double rss = (double)ru.ru_maxrss * 1024.0 - (probing ? (double)PROBE_BYTES : 0.0);
    double rss_mib = (rss > rss_before_probe ? rss : rss_before_probe) / (1024.0 * 1024.0);
    double bw = gpu ? device_bandwidth(model) : stat_mean(&bw_stats);
    double tg = stat_mean(&tg_stats), gbs = tg * bytes_tok / 1e9;
    double share = gpu ? (bw > 0 ? gbs * 1e9 / bw : 0.0) : stat_mean(&share_stats);
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(hearth_model_desc(model)));
        json_object_set_new(o, "threads", json_integer(threads));
        json_object_set_new(o, "kernels", json_string(cpu_kernel_name()));
        json_object_set_new(o, "device", json_string(hearth_model_device(model)));
        json_object_set_new(o, "read_bandwidth_gbs", json_real(bw / 1e9));
        json_object_set_new(o, "read_bandwidth_sd_gbs", json_real(stat_sd(&bw_stats) / 1e9));
        json_object_set_new(o, "weight_bytes_per_token", json_integer((json_int_t)bytes_tok));
        json_object_set_new(o, "peak_rss_mib", json_real(rss_mib));
        json_t *arr = json_array();
        for (int i = 0; i < n_pp; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "test", json_sprintf("pp%u", pp[i]));
            json_object_set_new(e, "tok_s", json_real(stat_mean(&pp_stats[i])));
            json_object_set_new(e, "sd", json_real(stat_sd(&pp_stats[i])));
            json_array_append_new(arr, e);
        }
        if (n_gen > 0) {
            json_t *e = json_object();
            json_object_set_new(e, "test", json_sprintf("tg%lld", n_gen));
            json_object_set_new(e, "tok_s", json_real(tg));
            json_object_set_new(e, "sd", json_real(stat_sd(&tg_stats)));
            json_object_set_new(e, "ms_per_token", json_real(tg > 0 ? 1e3 / tg : 0.0));
            json_object_set_new(e, "gbs", json_real(gbs));
            json_object_set_new(e, "share_of_bandwidth", json_real(share));
            json_object_set_new(e, "share_sd", json_real(stat_sd(&share_stats)));
            json_array_append_new(arr, e);
        }
        json_object_set_new(o, "results", arr);
        char *s = json_dumps(o, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("model: %s\n", hearth_model_desc(model));
        printf("device: %s\n", hearth_model_device(model));
        hearth_memory_report mr;
        hearth_memory_report_get(model, &mr);
        hearth_memory_report_print(&mr, stdout);
        char bw_text[96];
        if (gpu) {
            snprintf(bw_text, sizeof bw_text, "GPU copy bandwidth %.1f GB/s", bw / 1e9);
        } else if (bw_stats.n > 0) {
            snprintf(bw_text, sizeof bw_text,
                     "read bandwidth %.1f ± %.1f GB/s (around each tg run)", bw / 1e9,
                     stat_sd(&bw_stats) / 1e9);
        } else {
            snprintf(bw_text, sizeof bw_text, "read bandwidth not measured (no tg run)");
        }
        printf("threads %lld, kernels %s, %s, weights per token %.1f MB, peak RSS %.0f MiB\n",
               threads, gpu ? "cuda" : cpu_kernel_name(), bw_text, bytes_tok / 1e6, rss_mib);
        printf("| test   |        tok/s |   ms/tok |  GB/s | of bandwidth |\n");
        printf("| ------ | ------------ | -------- | ----- | ------------ |\n");
        for (int i = 0; i < n_pp; i++) {
            double m = stat_mean(&pp_stats[i]);
            printf("| pp%-4u | %7.1f ± %-4.1f | %8.3f |       |              |\n", pp[i], m,
                   stat_sd(&pp_stats[i]), m > 0 ? 1e3 / m : 0.0);
        }
        if (n_gen > 0) {
            printf("| tg%-4lld | %7.1f ± %-4.1f | %8.3f | %5.1f | %5.0f%% ± %-3.0f |\n", n_gen, tg,
                   stat_sd(&tg_stats), tg > 0 ? 1e3 / tg : 0.0, gbs, 100.0 * share,
                   100.0 * stat_sd(&share_stats));
        }
    }
    rc = 0;
out:
    free(tok);
    free(pos);
    free(seq);
    hearth_context_free(ctx);
    hearth_model_free(model);
    return rc;
}
