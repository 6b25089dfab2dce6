/* test_memory.c — memory planning, the budget, compute-type casts, mlock.
 *
 * The plan is held against what the process really holds: stories260K is
 * loaded with the weights pre-faulted (read into memory, or mapped and
 * touched) and a context whose KV cache and scratch are pre-faulted too,
 * and the growth of VmRSS over that must equal the planned total within
 * 10%.  A budget below the plan must be refused with the breakdown before
 * the weights are read (the peak RSS, VmHWM reset through
 * /proc/self/clear_refs, stays far below the file size).  Casting to
 * f32/f16/bf16 must keep stories260K's greedy text (llama2.c's reference
 * ids) and the MoE fixture's top-1 tokens (transformers' logits).  --mlock
 * either locks at least the model's bytes or, with the limit lowered in a
 * child without CAP_IPC_LOCK, fails with the message saying how to raise
 * it.
 */
#include <jansson.h>
#include <linux/capability.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "convert/convert.h"
#include "convert/synth.h"
#include "hearth.h"
#include "model/model.h"
#include "test.h"

static const char *model_path;

/* AddressSanitizer replaces mlock with a call that locks nothing, and its
 * redzones and shadow memory add to every heap allocation's footprint. */
#if defined(__SANITIZE_ADDRESS__)
static const bool mlock_real = false;
static const double rss_tolerance = 0.25;
#else
static const bool mlock_real = true;
static const double rss_tolerance = 0.10;
#endif
static const hearth_token prompt_once[] = {1, 403, 407, 261, 378};
enum { N_PROMPT = 5, N_GEN = 60 };

/* A "Key: N kB" figure of /proc/self/status, in bytes. */
static uint64_t status_bytes(const char *key) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) return 0;
    char line[256];
    uint64_t v = 0;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, fp)) {
        unsigned long long kib;
        if (!strncmp(line, key, n) && line[n] == ':' && sscanf(line + n + 1, "%llu", &kib) == 1) {
            v = (uint64_t)kib * 1024;
            break;
        }
    }
    fclose(fp);
    return v;
}

/* Resets VmHWM to the current RSS; false where the kernel does not allow it. */
static bool reset_peak(void) {
    FILE *fp = fopen("/proc/self/clear_refs", "w");
    if (!fp) return false;
    bool ok = fputs("5", fp) >= 0;
    return fclose(fp) == 0 && ok;
}

static hearth_context_params ctx_params(uint32_t n_ctx) {
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = 512;
    cp.n_threads = 2;
    cp.kv_type = HEARTH_KV_F32;
    return cp;
}

static double rel_diff(uint64_t a, uint64_t b) {
    return (double)(a > b ? a - b : b - a) / (double)b;
}

/* Loads model + context with everything pre-faulted and compares the RSS
 * growth with the plan. */
static void check_plan_against_rss(bool use_mmap, hearth_compute_type ct, const char *label) {
    hearth_model_params mp = hearth_model_default_params();
    mp.use_mmap = use_mmap;
    mp.prefault = true;
    mp.compute_type = ct;
    hearth_context_params cp = ctx_params(2048);
    hearth_memory_plan plan;
    hearth_error err;
    REQUIRE(hearth_model_plan(model_path, &mp, &cp, &plan, &err) == HEARTH_OK);
    CHECK(plan.total_bytes == plan.file_bytes - plan.released_bytes + plan.cast_bytes +
                                  plan.kv_bytes + plan.scratch_bytes);

    /* Anonymous memory is what hearth allocates; a mapped file's pages are
     * the page cache's, and how many of them a fault maps at once (large
     * folios, fault-around) is the kernel's choice.  So a mapped model is
     * checked as: anonymous growth = plan less the file's part, and the
     * file's resident pages at most the file. */
    uint64_t before = status_bytes(use_mmap ? "RssAnon" : "VmRSS");
    uint64_t file_before = status_bytes("RssFile");
    hearth_model *m = NULL;
    hearth_context *c = NULL;
    REQUIRE(hearth_model_load(model_path, &mp, &m, &err) == HEARTH_OK);
    if (hearth_context_create(m, &cp, &c, &err) != HEARTH_OK) {
        CHECKF(false, "%s", err.msg);
        hearth_model_free(m);
        return;
    }
    uint64_t after = status_bytes(use_mmap ? "RssAnon" : "VmRSS");
    uint64_t file_grown = status_bytes("RssFile") - file_before;
    uint64_t mapped_part = use_mmap ? plan.file_bytes - plan.released_bytes : 0;
    uint64_t grown = after - before + mapped_part;
    CHECKF(file_grown <= plan.file_bytes + (1u << 16),
           "%s: file pages grew %llu for a %llu-byte file", label, (unsigned long long)file_grown,
           (unsigned long long)plan.file_bytes);
    double d = rel_diff(grown, plan.total_bytes);
    printf("  %-22s planned %8llu bytes (model %llu = file %llu - released %llu + cast %llu, "
           "KV %llu, scratch %llu); RSS grew %8llu (%+.1f%%)\n",
           label, (unsigned long long)plan.total_bytes, (unsigned long long)plan.model_bytes,
           (unsigned long long)plan.file_bytes, (unsigned long long)plan.released_bytes,
           (unsigned long long)plan.cast_bytes, (unsigned long long)plan.kv_bytes,
           (unsigned long long)plan.scratch_bytes, (unsigned long long)grown,
           100.0 * ((double)grown - (double)plan.total_bytes) / (double)plan.total_bytes);
    CHECKF(d <= rss_tolerance, "%s: RSS grew %llu bytes for a plan of %llu", label,
           (unsigned long long)grown, (unsigned long long)plan.total_bytes);
    /* The allocator sized its mappings with the planner's function. */
    CHECK(c->kv_bytes == plan.kv_bytes && c->scratch_bytes == plan.scratch_bytes);
    hearth_memory_report r;
    hearth_memory_report_get(m, &r);
    CHECK(r.committed_bytes == plan.total_bytes);
    CHECK(r.kv_bytes == plan.kv_bytes && r.scratch_bytes == plan.scratch_bytes);
    CHECK(r.cast_bytes == plan.cast_bytes && r.released_bytes == plan.released_bytes);
    CHECK(r.n_contexts == 1 && r.budget_bytes == plan.budget_bytes);
    hearth_context_free(c);
    hearth_memory_report_get(m, &r);
    CHECK(r.n_contexts == 0 && r.committed_bytes == plan.model_bytes);
    hearth_model_free(m);
}

TEST(plan_matches_resident_memory) {
    /* A first load and context outside the measurement: what the C library
     * and the thread pool set up once per process is not the model's. */
    hearth_model *m = NULL;
    hearth_context *c = NULL;
    hearth_context_params cp = ctx_params(64);
    hearth_error err;
    REQUIRE(hearth_model_load(model_path, NULL, &m, &err) == HEARTH_OK);
    if (hearth_context_create(m, &cp, &c, &err) == HEARTH_OK) hearth_context_free(c);
    hearth_model_free(m);
    check_plan_against_rss(false, HEARTH_COMPUTE_FILE, "read, as stored");
    check_plan_against_rss(true, HEARTH_COMPUTE_FILE, "mapped, as stored");
    check_plan_against_rss(false, HEARTH_COMPUTE_F16, "read, cast to f16");
    check_plan_against_rss(true, HEARTH_COMPUTE_BF16, "mapped, cast to bf16");
}

TEST(plan_scales_with_the_context) {
    hearth_model_params mp = hearth_model_default_params();
    hearth_memory_plan a, b, none;
    hearth_error err;
    hearth_context_params ca = ctx_params(256), cb = ctx_params(512);
    REQUIRE(hearth_model_plan(model_path, &mp, &ca, &a, &err) == HEARTH_OK);
    REQUIRE(hearth_model_plan(model_path, &mp, &cb, &b, &err) == HEARTH_OK);
    REQUIRE(hearth_model_plan(model_path, &mp, NULL, &none, &err) == HEARTH_OK);
    /* stories260K: 5 layers, 4 kv heads of 8, F32 keys and values. */
    uint64_t kv_per_pos = 5ull * 2 * 4 * 8 * 4;
    CHECKF(b.kv_bytes - a.kv_bytes >= 256 * kv_per_pos &&
               b.kv_bytes - a.kv_bytes <= 256 * kv_per_pos + 8192,
           "KV %llu -> %llu", (unsigned long long)a.kv_bytes, (unsigned long long)b.kv_bytes);
    CHECK(none.kv_bytes == 0 && none.scratch_bytes == 0 && none.total_bytes == none.model_bytes);
    CHECK(a.n_ctx == 256 && a.n_ctx_train == 2048);
    CHECK(a.budget_default && a.ram_bytes > 0 &&
          a.budget_bytes == a.ram_bytes / 100 * HEARTH_DEFAULT_BUDGET_PERCENT);
    CHECK(a.compute_dtype == HEARTH_DTYPE_COUNT && a.cast_bytes == 0 && a.released_bytes == 0);

    /* The printed plan has a row for every figure. */
    char path[512];
    snprintf(path, sizeof path, "%s/plan.txt", test_tmpdir());
    FILE *fp = fopen(path, "w");
    REQUIRE(fp);
    hearth_memory_plan_print(&b, fp);
    fclose(fp);
    char *text = test_read_file(path, NULL);
    REQUIRE(text);
    const char *rows[] = {"model file", "cast copies", "released", "KV cache",
                          "scratch",    "total",       "budget"};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, "\n  %s ", rows[i]);
        CHECKF(strstr(text, pat) != NULL, "no '%s' row in:\n%s", rows[i], text);
    }
    CHECKF(strstr(text, "512 positions x 1 sequence") != NULL, "%s", text);
    free(text);
}

TEST(budget_below_plan_is_refused) {
    hearth_model_params mp = hearth_model_default_params();
    mp.use_mmap = false;
    hearth_context_params cp = ctx_params(2048);
    hearth_memory_plan plan;
    hearth_error err;
    REQUIRE(hearth_model_plan(model_path, &mp, &cp, &plan, &err) == HEARTH_OK);

    /* One byte short: refused, with every part of the breakdown named. */
    mp.memory_budget = plan.total_bytes - 1;
    hearth_memory_plan over;
    CHECK(hearth_model_plan(model_path, &mp, &cp, &over, &err) == HEARTH_ERR_OVER_BUDGET);
    CHECK(err.code == HEARTH_ERR_OVER_BUDGET);
    const char *parts[] = {"exceeds the budget", "model file", "weights", "released",
                           "cast copies",        "KV cache",   "scratch", "2048 positions"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        CHECKF(strstr(err.msg, parts[i]) != NULL, "no '%s' in: %s", parts[i], err.msg);
    }
    CHECK(strchr(err.msg, '\n') == NULL);
    CHECK(over.total_bytes == plan.total_bytes);
    mp.memory_budget = plan.total_bytes;
    CHECK(hearth_model_plan(model_path, &mp, &cp, &over, &err) == HEARTH_OK);

    /* A load over budget reads nothing.  Planning parses the header on a
     * mapping, and the kernel may map a few MiB of the file around what is
     * touched, so this uses a 64 MiB model: the peak RSS of a refused
     * --no-mmap load must stay far below the file it would have read. */
    {
        char big[512];
        snprintf(big, sizeof big, "%s/big-f32.gguf", test_tmpdir());
        synth_params sp = {
            "llama", 2, 256, 4, 2, 64, 512, 0, 0, 0, 32000, 512, 10000.0f, false, HEARTH_DTYPE_F32};
        REQUIRE(synth_write(&sp, big, NULL, NULL, &err) == HEARTH_OK);
        hearth_model_params bp = hearth_model_default_params();
        bp.use_mmap = false;
        bp.memory_budget = 16u << 20;
        bool peak = reset_peak();
        uint64_t before = status_bytes("VmRSS");
        hearth_model *bm = NULL;
        CHECK(hearth_model_load(big, &bp, &bm, &err) == HEARTH_ERR_OVER_BUDGET);
        CHECK(bm == NULL);
        CHECKF(strstr(err.msg, "model file") != NULL, "%s", err.msg);
        uint64_t top = peak ? status_bytes("VmHWM") : status_bytes("VmRSS");
        printf("  refused load of a 64 MiB model: %s grew %llu bytes\n", peak ? "peak RSS" : "RSS",
               (unsigned long long)(top > before ? top - before : 0));
        CHECKF(top < before + (8u << 20), "RSS grew %llu bytes on a refused load",
               (unsigned long long)(top - before));
        remove(big);
    }

    /* Contexts within the model's budget: the second does not fit until
     * the first is freed. */
    mp.memory_budget = plan.total_bytes + plan.kv_bytes / 2;
    hearth_model *m = NULL;
    REQUIRE(hearth_model_load(model_path, &mp, &m, &err) == HEARTH_OK);
    hearth_context *c1 = NULL, *c2 = NULL;
    REQUIRE(hearth_context_create(m, &cp, &c1, &err) == HEARTH_OK);
    bool peak = reset_peak();
    uint64_t before = status_bytes("VmRSS");
    CHECK(hearth_context_create(m, &cp, &c2, &err) == HEARTH_ERR_OVER_BUDGET && c2 == NULL);
    uint64_t top = peak ? status_bytes("VmHWM") : status_bytes("VmRSS");
    CHECKF(top < before + plan.kv_bytes / 4, "RSS grew %llu bytes on a refused context",
           (unsigned long long)(top - before));
    CHECKF(strstr(err.msg, "KV cache") && strstr(err.msg, "free") && strstr(err.msg, "1 other"),
           "%s", err.msg);
    hearth_context_params small = ctx_params(64);
    small.n_batch = 64;
    CHECK(hearth_context_create(m, &small, &c2, &err) == HEARTH_OK);
    hearth_context_free(c2);
    hearth_context_free(c1);
    CHECK(hearth_context_create(m, &cp, &c2, &err) == HEARTH_OK);
    hearth_context_free(c2);
    hearth_model_free(m);

    mp.memory_budget = HEARTH_BUDGET_UNLIMITED;
    CHECK(hearth_model_plan(model_path, &mp, &cp, &over, &err) == HEARTH_OK);
    mp.compute_type = (hearth_compute_type)99;
    CHECK(hearth_model_load(model_path, &mp, &m, &err) == HEARTH_ERR_INVALID_ARG);
}

/* Greedy ids after prompt_once on model m. */
static int greedy(hearth_model *m, hearth_token *out, int n) {
    hearth_context_params cp = ctx_params(128);
    cp.n_batch = 8;
    hearth_context *c = NULL;
    hearth_error err;
    if (hearth_context_create(m, &cp, &c, &err) != HEARTH_OK) return 0;
    int32_t pos[N_PROMPT] = {0, 1, 2, 3, 4}, seq[N_PROMPT] = {0};
    hearth_batch b = {N_PROMPT, prompt_once, pos, seq, NULL};
    int made = 0;
    uint32_t last = N_PROMPT - 1;
    while (hearth_decode(c, &b, &err) == HEARTH_OK) {
        const float *l = hearth_get_logits(c, last);
        int best = 0;
        for (int i = 1; i < hearth_model_n_vocab(m); i++)
            if (l[i] > l[best]) best = i;
        out[made++] = best;
        if (made == n) break;
        pos[0] = N_PROMPT + made - 1;
        b = (hearth_batch){1, &out[made - 1], pos, seq, NULL};
        last = 0;
    }
    hearth_context_free(c);
    return made;
}

static const char *ct_names[] = {"file", "auto", "f32", "f16", "bf16"};

TEST(compute_types_keep_stories260k_greedy) {
    char *text = test_read_file(
        test_shared(
            "models/reference/stories260K.llama2c.greedy-prompt-Once-upon-a-time.64steps.ids"),
        NULL);
    REQUIRE(text);
    /* Line 2: ids at positions 1..64, the prompt's four then 60 generated. */
    char *line2 = strchr(text, '\n');
    char *ids2 = line2 ? strchr(line2, ':') : NULL;
    int32_t all[80];
    size_t na = ids2 ? test_parse_ints(ids2 + 1, all, 80) : 0;
    free(text);
    REQUIRE(na == 64);
    const int32_t *ref = all + N_PROMPT - 1;
    for (int t = HEARTH_COMPUTE_FILE; t <= HEARTH_COMPUTE_BF16; t++) {
        hearth_model_params mp = hearth_model_default_params();
        mp.compute_type = (hearth_compute_type)t;
        hearth_model *m = NULL;
        hearth_error err;
        if (hearth_model_load(model_path, &mp, &m, &err) != HEARTH_OK) {
            CHECKF(false, "%s: %s", ct_names[t], err.msg);
            continue;
        }
        hearth_memory_report r;
        hearth_memory_report_get(m, &r);
        hearth_token out[N_GEN];
        int n = greedy(m, out, N_GEN), same = 0;
        while (same < n && out[same] == ref[same]) same++;
        printf("  %-4s (%s, %s): %d of %d greedy tokens equal llama2.c's\n", ct_names[t],
               r.compute_dtype == HEARTH_DTYPE_COUNT ? "no cast"
                                                     : hearth_dtype_name(r.compute_dtype),
               r.compute_why, same, N_GEN);
        /* stories260K is F32: f32 (and the file's own types) are exact. */
        bool exact = t == HEARTH_COMPUTE_FILE || t == HEARTH_COMPUTE_F32 ||
                     (t == HEARTH_COMPUTE_AUTO && r.compute_dtype == HEARTH_DTYPE_F32);
        CHECKF(same >= (exact ? N_GEN : 20), "%s: %d of %d equal", ct_names[t], same, N_GEN);
        /* Every matrix is cast, no norm is. */
        if (r.compute_dtype != HEARTH_DTYPE_COUNT && r.compute_dtype != HEARTH_DTYPE_F32) {
            CHECK(r.n_cast == 2 + 5 * 7 && m->token_embd.type == (uint32_t)r.compute_dtype);
            CHECK(m->layers[0].wq.type == (uint32_t)r.compute_dtype);
            CHECK(m->layers[0].attn_norm.type == HEARTH_DTYPE_F32);
            CHECK(m->output_norm.type == HEARTH_DTYPE_F32);
        }
        hearth_model_free(m);
    }
}

/* Logits of the last prompt_once position on model m into out (n_vocab). */
static bool prompt_logits(hearth_model *m, float *out) {
    hearth_context_params cp = ctx_params(64);
    hearth_context *c = NULL;
    hearth_error err;
    if (hearth_context_create(m, &cp, &c, &err) != HEARTH_OK) return false;
    int32_t pos[N_PROMPT] = {0, 1, 2, 3, 4}, seq[N_PROMPT] = {0};
    hearth_batch b = {N_PROMPT, prompt_once, pos, seq, NULL};
    bool ok = hearth_decode(c, &b, &err) == HEARTH_OK;
    if (ok) {
        memcpy(out, hearth_get_logits(c, N_PROMPT - 1),
               (size_t)hearth_model_n_vocab(m) * sizeof *out);
    }
    hearth_context_free(c);
    return ok;
}

/* Read into memory, Q4_0 and Q8_0 matrices are repacked in place for the
 * AVX-512 kernels (where this CPU has them): the same memory, the same
 * logits and greedy text as the mapped file's layout, and --no-repack
 * keeps the file layout. */
static void check_repacked_model(const char *file, uint32_t type) {
    const char *path = test_shared(file);
    hearth_model *mapped = NULL, *read = NULL, *kept = NULL;
    hearth_model_params mp = hearth_model_default_params();
    hearth_error err;
    REQUIRE(hearth_model_load(path, &mp, &mapped, &err) == HEARTH_OK);
    mp.use_mmap = false;
    REQUIRE(hearth_model_load(path, &mp, &read, &err) == HEARTH_OK);
    mp.no_repack = true;
    REQUIRE(hearth_model_load(path, &mp, &kept, &err) == HEARTH_OK);
    hearth_memory_report r0, r1, r2;
    hearth_memory_report_get(mapped, &r0);
    hearth_memory_report_get(read, &r1);
    hearth_memory_report_get(kept, &r2);
    const kernel_traits *kr = kernel_traits_repacked(type);
    printf("  %s: %u matrices repacked (%s)\n", file, r1.n_repacked,
           kr ? "AVX-512 VBMI kernels" : "no repacked layout on this CPU");
    CHECK(r0.n_repacked == 0 && r2.n_repacked == 0);
    CHECK(read->layers[0].wq.type == type);
    if (kr) {
        CHECK(r1.n_repacked > 0 && read->layers[0].wq.kt == kr);
    } else {
        CHECK(r1.n_repacked == 0);
    }
    CHECK(read->weight_bytes == mapped->weight_bytes);
    int nv = hearth_model_n_vocab(mapped);
    float *l0 = malloc((size_t)nv * sizeof *l0), *l1 = malloc((size_t)nv * sizeof *l1);
    REQUIRE(l0 && l1);
    CHECK(prompt_logits(mapped, l0) && prompt_logits(read, l1));
    float worst = 0;
    for (int i = 0; i < nv; i++) worst = fmaxf(worst, fabsf(l0[i] - l1[i]));
    printf("  logits, repacked vs file layout: max abs difference %g\n", (double)worst);
    CHECK(worst <= 1e-5f);
    hearth_token g0[N_GEN], g1[N_GEN], g2[N_GEN];
    int n0 = greedy(mapped, g0, N_GEN), n1 = greedy(read, g1, N_GEN), n2 = greedy(kept, g2, N_GEN);
    CHECK(n0 == N_GEN && n1 == N_GEN && n2 == N_GEN);
    CHECK(memcmp(g0, g1, sizeof g0) == 0 && memcmp(g0, g2, sizeof g0) == 0);
    free(l0);
    free(l1);
    hearth_model_free(mapped);
    hearth_model_free(read);
    hearth_model_free(kept);
}

TEST(no_mmap_repacks_keeping_the_output) {
    check_repacked_model("models/stories260K-q4_0.gguf", HEARTH_DTYPE_Q4_0);
    check_repacked_model("models/stories260K-q8_0.gguf", HEARTH_DTYPE_Q8_0);
}

static int read_int_array(const json_t *a, int32_t *out, int cap) {
    int n = 0;
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) {
        if (n < cap) out[n++] = (int32_t)json_integer_value(v);
    }
    return n;
}

TEST(compute_types_keep_moe_top1) {
    json_t *root = json_load_file("tests/data/hf/qwen3_moe/golden.json", 0, NULL);
    REQUIRE(root);
    int32_t ids[64];
    int n_ids = read_int_array(json_object_get(root, "ids"), ids, 64);
    int n_vocab = (int)json_integer_value(json_array_get(json_object_get(root, "logits_shape"), 1));
    json_decref(root);
    size_t len = 0;
    float *ref = (float *)test_read_file("tests/data/hf/qwen3_moe/golden.logits.f32le", &len);
    REQUIRE(ref && n_ids > 0 && len == (size_t)n_ids * (size_t)n_vocab * sizeof(float));
    char path[512];
    snprintf(path, sizeof path, "%s/qwen3_moe-f32.gguf", test_tmpdir());
    convert_params p = {HEARTH_DTYPE_F32, NULL, NULL};
    hearth_error err;
    if (convert_hf_dir("tests/data/hf/qwen3_moe", path, &p, &err) != HEARTH_OK) {
        CHECKF(false, "convert: %s", err.msg);
        free(ref);
        return;
    }
    int32_t pos[64], seq[64] = {0};
    bool want[64];
    for (int i = 0; i < n_ids; i++) {
        pos[i] = i;
        want[i] = true;
    }
    for (int t = HEARTH_COMPUTE_FILE; t <= HEARTH_COMPUTE_BF16; t++) {
        hearth_model_params mp = hearth_model_default_params();
        mp.compute_type = (hearth_compute_type)t;
        hearth_model *m = NULL;
        hearth_context *c = NULL;
        hearth_context_params cp = ctx_params(64);
        hearth_batch b = {(uint32_t)n_ids, ids, pos, seq, want};
        if (hearth_model_load(path, &mp, &m, &err) != HEARTH_OK ||
            hearth_context_create(m, &cp, &c, &err) != HEARTH_OK ||
            hearth_decode(c, &b, &err) != HEARTH_OK || hearth_model_n_vocab(m) != n_vocab) {
            CHECKF(false, "%s: %s", ct_names[t], err.msg);
            hearth_context_free(c);
            hearth_model_free(m);
            continue;
        }
        int top1 = 0;
        for (int i = 0; i < n_ids; i++) {
            const float *l = hearth_get_logits(c, (uint32_t)i), *r = ref + (size_t)i * n_vocab;
            int a = 0, ra = 0;
            for (int k = 1; k < n_vocab; k++) {
                if (l[k] > l[a]) a = k;
                if (r[k] > r[ra]) ra = k;
            }
            top1 += a == ra;
        }
        hearth_memory_report r;
        hearth_memory_report_get(m, &r);
        printf("  qwen3_moe %-4s: %u tensors cast, top-1 equals transformers' at %d of %d\n",
               ct_names[t], r.n_cast, top1, n_ids);
        bool exact = r.compute_dtype == HEARTH_DTYPE_COUNT || r.compute_dtype == HEARTH_DTYPE_F32;
        CHECKF(top1 >= (exact ? n_ids : n_ids - 2), "%s: top-1 at %d of %d", ct_names[t], top1,
               n_ids);
        /* Stacked experts and the router are matrices too. */
        if (!exact) {
            CHECK(m->layers[0].gate_exps.type == (uint32_t)r.compute_dtype);
            CHECK(m->layers[0].gate_inp.type == (uint32_t)r.compute_dtype);
        }
        hearth_context_free(c);
        hearth_model_free(m);
    }
    free(ref);
}

/* Drops CAP_IPC_LOCK from this process's effective set (so that
 * RLIMIT_MEMLOCK applies to it even as root). */
static void drop_cap_ipc_lock(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return;
    d[0].effective &= ~(1u << CAP_IPC_LOCK);
    syscall(SYS_capset, &h, d);
}

/* In a child: lowers the memlock limit to limit bytes, loads with mlock.
 * Exit 0: locked, VmLck >= the model's bytes; 1: refused with the
 * RLIMIT message; 2: anything else. */
static int mlock_child(rlim_t limit) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        struct rlimit rl = {limit, limit};
        if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) _exit(3);
        drop_cap_ipc_lock();
        hearth_model_params mp = hearth_model_default_params();
        mp.use_mlock = true;
        hearth_context_params cp = ctx_params(256);
        hearth_memory_plan plan;
        hearth_model *m = NULL;
        hearth_context *c = NULL;
        hearth_error err;
        hearth_status st = hearth_model_plan(model_path, &mp, &cp, &plan, &err);
        if (st == HEARTH_OK) st = hearth_model_load(model_path, &mp, &m, &err);
        if (st == HEARTH_OK) st = hearth_context_create(m, &cp, &c, &err);
        int rc = 2;
        if (st == HEARTH_OK) {
            uint64_t locked = status_bytes("VmLck");
            printf("  memlock limit %llu: locked %llu bytes (planned %llu)\n",
                   (unsigned long long)limit, (unsigned long long)locked,
                   (unsigned long long)plan.total_bytes);
            rc = locked >= plan.model_bytes || !mlock_real ? 0 : 2;
        } else if (st == HEARTH_ERR_OS_LIMIT && strstr(err.msg, "RLIMIT_MEMLOCK") &&
                   strstr(err.msg, "ulimit -l") && strstr(err.msg, "limits.conf") &&
                   strstr(err.msg, "cap_ipc_lock")) {
            printf("  memlock limit %llu: %s\n", (unsigned long long)limit, err.msg);
            rc = 1;
        } else {
            printf("  memlock limit %llu: unexpected %s: %s\n", (unsigned long long)limit,
                   hearth_status_name(st), err.msg);
        }
        fflush(stdout);
        hearth_context_free(c);
        hearth_model_free(m);
        _exit(rc);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

TEST(mlock_locks_or_says_how_to_raise_the_limit) {
    /* As the process is: it either locks or explains. */
    hearth_model_params mp = hearth_model_default_params();
    mp.use_mlock = true;
    hearth_model *m = NULL;
    hearth_error err;
    hearth_status st = hearth_model_load(model_path, &mp, &m, &err);
    if (st == HEARTH_OK) {
        hearth_memory_report r;
        hearth_memory_report_get(m, &r);
        CHECKF((r.locked_bytes >= r.committed_bytes || !mlock_real) && r.mlock,
               "locked %llu of %llu", (unsigned long long)r.locked_bytes,
               (unsigned long long)r.committed_bytes);
        hearth_model_free(m);
    } else {
        CHECKF(st == HEARTH_ERR_OS_LIMIT && strstr(err.msg, "ulimit -l"), "%s", err.msg);
    }
    /* A limit far below the plan is refused before anything is locked;
     * one well above it locks. */
    int rc = mlock_child(64 * 1024);
    CHECKF(rc == 1, "child with a 64 KiB limit: exit %d", rc);
    /* Raising the hard limit needs CAP_SYS_RESOURCE: stay under it. */
    struct rlimit rl;
    REQUIRE(getrlimit(RLIMIT_MEMLOCK, &rl) == 0);
    rlim_t enough = (rlim_t)64 << 20;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < enough) enough = rl.rlim_max;
    if (enough >= ((rlim_t)8 << 20)) {
        rc = mlock_child(enough);
        CHECKF(rc == 0, "child with a limit of %llu bytes: exit %d", (unsigned long long)enough,
               rc);
    } else {
        printf("  the hard memlock limit (%llu bytes) is too low to test locking under it\n",
               (unsigned long long)rl.rlim_max);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    static char model[1024];
    snprintf(model, sizeof model, "%s", test_shared("models/stories260K.gguf"));
    model_path = model;
    RUN(plan_matches_resident_memory);
    RUN(plan_scales_with_the_context);
    RUN(budget_below_plan_is_refused);
    RUN(compute_types_keep_stories260k_greedy);
    RUN(compute_types_keep_moe_top1);
    RUN(no_mmap_repacks_keeping_the_output);
    RUN(mlock_locks_or_says_how_to_raise_the_limit);
    return test_finish();
}
