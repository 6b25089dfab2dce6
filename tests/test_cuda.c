/* test_cuda.c — the CUDA backend against the CPU engine.
 *
 * The same model is loaded twice, on the CPU and on the GPU, and fed the
 * same tokens: a prompt as one batch (the prefill kernels), then tokens one
 * at a time (the one-token step and its CUDA graph), each next token the
 * CPU's greedy choice.  After every step the GPU's logits must lie within
 * a stated share of the largest CPU logit, and its greedy token must be
 * the CPU's wherever the CPU's top two are further apart than that bound.
 *
 * A second check runs decode steps of several sequences at different
 * positions as one batch (the few-token kernels and their per-size CUDA
 * graphs) against the same sequences decoded one token at a time, with the
 * graphs on and off.
 *
 * Models: stories260K (llama, adjacent-pair RoPE) in F32 with an F32 cache,
 * Q8_0 and Q4_0 with an F16 cache; small random-weight qwen3 (half-split
 * RoPE, q/k norms; Q4_0 and Q4_K) and qwen3moe (routed experts; Q8_0, Q4_0, F16),
 * written here with synth.  Without CUDA in the build, or without a GPU,
 * the program prints why and runs nothing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "convert/synth.h"
#include "hearth.h"
#include "model/device.h"
#include "test.h"

#define N_PROMPT 24
#define N_STEPS  16

static hearth_model *load_on(const char *path, hearth_device dev) {
    hearth_model_params p = hearth_model_default_params();
    p.device = dev;
    hearth_model *m = NULL;
    hearth_error err = {HEARTH_OK, ""};
    if (hearth_model_load(path, &p, &m, &err) != HEARTH_OK) {
        printf("  cannot load %s: %s\n", path, err.msg);
        return NULL;
    }
    return m;
}

static hearth_context *context_for(const hearth_model *m, hearth_kv_type kv, uint32_t n_seq) {
    hearth_context_params p = hearth_context_default_params();
    p.n_ctx = 128;
    p.n_batch = 32;
    p.n_seq = n_seq;
    p.kv_type = kv;
    hearth_context *c = NULL;
    hearth_error err = {HEARTH_OK, ""};
    if (hearth_context_create(m, &p, &c, &err) != HEARTH_OK) {
        printf("  context: %s\n", err.msg);
        return NULL;
    }
    return c;
}

static bool decode(hearth_context *c, const hearth_token *ids, uint32_t n, int32_t pos0) {
    int32_t pos[N_PROMPT], seq[N_PROMPT];
    for (uint32_t i = 0; i < n; i++) {
        pos[i] = pos0 + (int32_t)i;
        seq[i] = 0;
    }
    hearth_batch b = {n, (hearth_token *)ids, pos, seq, NULL};
    hearth_error err = {HEARTH_OK, ""};
    if (hearth_decode(c, &b, &err) != HEARTH_OK) {
        printf("  decode: %s\n", err.msg);
        return false;
    }
    return true;
}

/* Compares the last logits of the two contexts; returns false on a
 * failure (printed), and raises *worst to the error seen. */
static bool compare_rows(const hearth_context *cpu, uint32_t row_a, const hearth_context *gpu,
                         uint32_t row_b, int32_t nv, double tol, double *worst, hearth_token *next,
                         int step) {
    const float *a = hearth_get_logits(cpu, row_a), *b = hearth_get_logits(gpu, row_b);
    if (!a || !b) return false;
    double amax = 0, diff = 0;
    int best = 0, second = -1, gbest = 0;
    for (int32_t i = 0; i < nv; i++) {
        if (!isfinite(b[i])) {
            printf("  step %d: GPU logit %d is %f\n", step, i, (double)b[i]);
            return false;
        }
        amax = fmax(amax, fabs(a[i]));
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        if (a[i] > a[best]) best = i;
        if (b[i] > b[gbest]) gbest = i;
    }
    for (int32_t i = 0; i < nv; i++)
        if (i != best && (second < 0 || a[i] > a[second])) second = i;
    double rel = diff / (amax > 0 ? amax : 1);
    if (rel > *worst) *worst = rel;
    *next = best;
    if (rel > tol) {
        printf("  step %d: max |gpu - cpu| %.3g is %.3g of the largest logit %.3g (bound %.3g)\n",
               step, diff, rel, amax, tol);
        return false;
    }
    if (gbest != best && (a[best] - a[second]) > 2 * tol * amax) {
        printf("  step %d: greedy token %d on the GPU, %d on the CPU (gap %.3g)\n", step, gbest,
               best, (double)(a[best] - a[second]));
        return false;
    }
    return true;
}

static bool compare(const hearth_context *cpu, const hearth_context *gpu, uint32_t row, int32_t nv,
                    double tol, double *worst, hearth_token *next, int step) {
    return compare_rows(cpu, row, gpu, row, nv, tol, worst, next, step);
}

/* Runs the prompt and N_STEPS greedy steps on both devices; tol is the
 * bound on max |gpu - cpu| over max |cpu|. */
static void check_model(const char *path, hearth_kv_type kv, double tol) {
    hearth_model *mc = load_on(path, HEARTH_DEVICE_CPU), *mg = load_on(path, HEARTH_DEVICE_CUDA);
    hearth_context *cc = mc ? context_for(mc, kv, 1) : NULL;
    hearth_context *cg = mg ? context_for(mg, kv, 1) : NULL;
    CHECK(cc && cg);
    if (cc && cg) {
        CHECK(strncmp(hearth_model_device(mg), "cuda", 4) == 0);
        const int32_t nv = hearth_model_n_vocab(mc);
        hearth_token prompt[N_PROMPT], next;
        for (int i = 0; i < N_PROMPT; i++)
            prompt[i] = (hearth_token)(i == 0 ? 1 : (37 * i + 11) % nv);
        double worst = 0;
        bool ok = decode(cc, prompt, N_PROMPT, 0) && decode(cg, prompt, N_PROMPT, 0);
        ok = ok && compare(cc, cg, N_PROMPT - 1, nv, tol, &worst, &next, 0);
        for (int s = 1; ok && s <= N_STEPS; s++) {
            ok = decode(cc, &next, 1, N_PROMPT + s - 1) && decode(cg, &next, 1, N_PROMPT + s - 1);
            ok = ok && compare(cc, cg, 0, nv, tol, &worst, &next, s);
        }
        printf("  %s: worst max|gpu - cpu| / max|cpu| = %.2e (bound %.1e)\n", path, worst, tol);
        CHECK(ok);
    }
    hearth_context_free(cc);
    hearth_context_free(cg);
    hearth_model_free(mc);
    hearth_model_free(mg);
}

#define N_SEQS   5
#define N_BSTEPS 9

/* Decodes n tokens, token i at pos[i] of sequence seq[i], all with logits. */
static bool decode_seqs(hearth_context *c, uint32_t n, const hearth_token *tok, const int32_t *pos,
                        const int32_t *seq) {
    bool want[N_PROMPT];
    for (uint32_t i = 0; i < n; i++) want[i] = true;
    hearth_batch b = {n, tok, pos, seq, n > 1 ? want : NULL};
    hearth_error err = {HEARTH_OK, ""};
    if (hearth_decode(c, &b, &err) != HEARTH_OK) {
        printf("  decode: %s\n", err.msg);
        return false;
    }
    return true;
}

/* N_SEQS sequences with prompts of different lengths, then N_BSTEPS steps
 * that decode the next token of several of them (all, or all but two; in
 * an order that rotates, so the same graph sees other sequences in each
 * row) as one batch in one context and one token at a time in another.
 * Each batched row's logits must lie within tol (of the largest logit) of
 * the lone token's, with the same greedy token.  graphs: the CUDA graphs
 * on or off. */
static void check_batched(const char *path, hearth_kv_type kv, double tol, bool graphs) {
    if (!graphs) setenv("HEARTH_CUDA_GRAPHS", "0", 1);
    hearth_model *m = load_on(path, HEARTH_DEVICE_CUDA);
    hearth_context *cb = m ? context_for(m, kv, N_SEQS) : NULL;
    hearth_context *cs = m ? context_for(m, kv, N_SEQS) : NULL;
    unsetenv("HEARTH_CUDA_GRAPHS");
    CHECK(cb && cs);
    if (cb && cs) {
        const int32_t nv = hearth_model_n_vocab(m);
        hearth_token next[N_SEQS], prompt[N_PROMPT];
        int32_t pos[N_SEQS], seq1[N_PROMPT];
        double worst = 0;
        bool ok = true;
        for (int s = 0; ok && s < N_SEQS; s++) {
            const uint32_t len = 3 + 4 * (uint32_t)s;
            int32_t pp[N_PROMPT];
            for (uint32_t i = 0; i < len; i++) {
                prompt[i] = (hearth_token)(i == 0 ? 1 : (29 * (int)i + 7 * s + 5) % nv);
                pp[i] = (int32_t)i;
                seq1[i] = s;
            }
            hearth_batch b = {len, prompt, pp, seq1, NULL};
            hearth_error err = {HEARTH_OK, ""};
            ok = hearth_decode(cb, &b, &err) == HEARTH_OK &&
                 hearth_decode(cs, &b, &err) == HEARTH_OK;
            ok = ok && compare_rows(cs, len - 1, cb, len - 1, nv, tol, &worst, &next[s], 0);
            pos[s] = (int32_t)len;
        }
        for (int step = 1; ok && step <= N_BSTEPS; step++) {
            const uint32_t n = step % 3 == 0 ? N_SEQS - 2 : N_SEQS;
            hearth_token tok[N_SEQS];
            int32_t bp[N_SEQS], bs[N_SEQS];
            for (uint32_t i = 0; i < n; i++) {
                bs[i] = (int32_t)((i + (uint32_t)step) % N_SEQS);
                tok[i] = next[bs[i]];
                bp[i] = pos[bs[i]];
            }
            ok = decode_seqs(cb, n, tok, bp, bs);
            for (uint32_t i = 0; ok && i < n; i++) {
                const int s = bs[i];
                ok = decode_seqs(cs, 1, &tok[i], &bp[i], &bs[i]) &&
                     compare_rows(cs, 0, cb, i, nv, tol, &worst, &next[s], step);
                pos[s]++;
            }
        }
        printf("  %s, graphs %s: worst max|batched - alone| / max|alone| = %.2e (bound %.1e)\n",
               path, graphs ? "on" : "off", worst, tol);
        CHECK(ok);
    }
    hearth_context_free(cb);
    hearth_context_free(cs);
    hearth_model_free(m);
}

/* A small random-weight model of arch and type written with synth: 8
 * query heads on 2 KV heads, so prefill takes the grouped-query attention
 * kernel (stories260K's 8 on 4 take the per-head one). */
static const char *synth_model(const char *arch, uint32_t type, const char *tag) {
    static char path[512];
    snprintf(path, sizeof path, "%s/cuda-%s.gguf", test_tmpdir(), tag);
    bool moe = !strcmp(arch, "qwen3moe");
    synth_params p = {arch, 2,   256,          8,           2,
                      32,   512, moe ? 16 : 0, moe ? 4 : 0, moe ? 256 : 0,
                      512,  256, 1000000.0f,   true,        type};
    hearth_error err = {HEARTH_OK, ""};
    if (synth_write(&p, path, NULL, NULL, &err) != HEARTH_OK) {
        printf("  synth: %s\n", err.msg);
        return NULL;
    }
    return path;
}

TEST(stories_f32) {
    check_model(test_shared("models/stories260K.gguf"), HEARTH_KV_F32, 1e-4);
}

TEST(stories_q8_0) {
    check_model(test_shared("models/stories260K-q8_0.gguf"), HEARTH_KV_F16, 4e-2);
}

TEST(stories_q4_0) {
    check_model(test_shared("models/stories260K-q4_0.gguf"), HEARTH_KV_F16, 4e-2);
}

TEST(qwen3_q4_0) {
    const char *p = synth_model("qwen3", HEARTH_DTYPE_Q4_0, "qwen3-q4_0");
    REQUIRE(p);
    check_model(p, HEARTH_KV_F16, 2e-2);
}

TEST(qwen3moe_q8_0) {
    const char *p = synth_model("qwen3moe", HEARTH_DTYPE_Q8_0, "qwen3moe-q8_0");
    REQUIRE(p);
    check_model(p, HEARTH_KV_F16, 2e-2);
}

TEST(qwen3moe_q4_0) {
    const char *p = synth_model("qwen3moe", HEARTH_DTYPE_Q4_0, "qwen3moe-q4_0");
    REQUIRE(p);
    check_model(p, HEARTH_KV_F16, 2e-2);
}

TEST(qwen3moe_f16) {
    const char *p = synth_model("qwen3moe", HEARTH_DTYPE_F16, "qwen3moe-f16");
    REQUIRE(p);
    check_model(p, HEARTH_KV_F32, 5e-3);
}

/* K-quants run as F16 on the GPU and with Q8_K activations on the CPU; a
 * dense model, where those roundings cannot flip an expert choice. */
TEST(qwen3_q4_k) {
    const char *p = synth_model("qwen3", HEARTH_DTYPE_Q4_K, "qwen3-q4_k");
    REQUIRE(p);
    check_model(p, HEARTH_KV_F32, 4e-2);
}

TEST(batched_stories) {
    for (int g = 0; g < 2; g++) {
        check_batched(test_shared("models/stories260K.gguf"), HEARTH_KV_F32, 1e-4, g);
        check_batched(test_shared("models/stories260K-q4_0.gguf"), HEARTH_KV_F16, 1e-3, g);
    }
}

TEST(batched_qwen3) {
    const char *p = synth_model("qwen3", HEARTH_DTYPE_Q8_0, "qwen3-q8_0");
    REQUIRE(p);
    for (int g = 0; g < 2; g++) check_batched(p, HEARTH_KV_F16, 1e-3, g);
}

TEST(batched_qwen3moe) {
    static const uint32_t types[2] = {HEARTH_DTYPE_Q4_0, HEARTH_DTYPE_Q8_0};
    for (int t = 0; t < 2; t++) {
        const char *p = synth_model("qwen3moe", types[t], t ? "qwen3moe-q8_0" : "qwen3moe-q4_0");
        REQUIRE(p);
        for (int g = 0; g < 2; g++) check_batched(p, HEARTH_KV_F16, 1e-3, g);
    }
}

/* The converted qwen3_moe checkpoint of tests/data/hf (F16 experts). */
TEST(batched_hf_qwen3moe) {
    char path[512];
    snprintf(path, sizeof path, "%s/cuda-hf-qwen3moe.gguf", test_tmpdir());
    convert_params cp = {HEARTH_DTYPE_F16, NULL, NULL};
    hearth_error err = {HEARTH_OK, ""};
    const hearth_status st = convert_hf_dir("tests/data/hf/qwen3_moe", path, &cp, &err);
    if (st != HEARTH_OK) printf("  convert: %s\n", err.msg);
    REQUIRE(st == HEARTH_OK);
    for (int g = 0; g < 2; g++) check_batched(path, HEARTH_KV_F32, 1e-4, g);
}

/* Long prompts through the tensor-core prefill attention (head_dim 128
 * and 64, f16 cache): a qwen3 model (F16 weights, so that the error left
 * is mostly attention's) of 8 query heads on 2 KV heads, its
 * prompt decoded on the CPU and the GPU in batches of several hundred
 * tokens (lengths that are not multiples of the 64-token tile, a batch
 * that continues a sequence, two sequences in one batch with their
 * boundary inside a tile); every row's logits within tol of the CPU's. */
#define LONG_BATCH 512

static bool long_step(hearth_context *cc, hearth_context *cg, uint32_t n, const int32_t *pos,
                      const int32_t *seq, int32_t nv, double tol, double *worst) {
    static hearth_token tok[LONG_BATCH];
    static bool want[LONG_BATCH];
    for (uint32_t i = 0; i < n; i++) {
        tok[i] = (hearth_token)(pos[i] == 0 ? 1 : (31 * pos[i] + 17 * seq[i] + 3) % nv);
        want[i] = true;
    }
    hearth_batch b = {n, tok, (int32_t *)pos, (int32_t *)seq, want};
    hearth_error err = {HEARTH_OK, ""};
    if (hearth_decode(cc, &b, &err) != HEARTH_OK || hearth_decode(cg, &b, &err) != HEARTH_OK) {
        printf("  decode: %s\n", err.msg);
        return false;
    }
    hearth_token next;
    for (uint32_t i = 0; i < n; i++)
        if (!compare(cc, cg, i, nv, tol, worst, &next, (int)i)) return false;
    return true;
}

static void check_long(uint32_t head_dim, double tol) {
    char path[512];
    snprintf(path, sizeof path, "%s/cuda-qwen3-hd%u.gguf", test_tmpdir(), head_dim);
    synth_params sp = {"qwen3", 2,   256,  8,          2,    head_dim,        512, 0, 0,
                       0,       512, 1024, 1000000.0f, true, HEARTH_DTYPE_F16};
    hearth_error err = {HEARTH_OK, ""};
    REQUIRE(synth_write(&sp, path, NULL, NULL, &err) == HEARTH_OK);
    hearth_model *mc = load_on(path, HEARTH_DEVICE_CPU), *mg = load_on(path, HEARTH_DEVICE_CUDA);
    hearth_context_params p = hearth_context_default_params();
    p.n_ctx = 1024;
    p.n_batch = LONG_BATCH;
    p.n_seq = 2;
    p.kv_type = HEARTH_KV_F16;
    hearth_context *cc = NULL, *cg = NULL;
    if (mc) hearth_context_create(mc, &p, &cc, &err);
    if (mg) hearth_context_create(mg, &p, &cg, &err);
    CHECK(cc && cg);
    if (cc && cg) {
        const int32_t nv = hearth_model_n_vocab(mc);
        static int32_t pos[LONG_BATCH], seq[LONG_BATCH];
        double worst = 0;
        /* sequence 0: 450 tokens, then 100 more at 450..549 */
        for (int i = 0; i < 450; i++) pos[i] = i, seq[i] = 0;
        bool ok = long_step(cc, cg, 450, pos, seq, nv, tol, &worst);
        for (int i = 0; i < 100; i++) pos[i] = 450 + i, seq[i] = 0;
        ok = ok && long_step(cc, cg, 100, pos, seq, nv, tol, &worst);
        /* sequence 1 from 0 (200 tokens) beside sequence 0 at 550.. (311) */
        for (int i = 0; i < 200; i++) pos[i] = i, seq[i] = 1;
        for (int i = 0; i < 311; i++) pos[200 + i] = 550 + i, seq[200 + i] = 0;
        ok = ok && long_step(cc, cg, 511, pos, seq, nv, tol, &worst);
        printf(
            "  head_dim %u, 1061 positions: worst max|gpu - cpu| / max|cpu| = %.2e (bound %.1e)\n",
            head_dim, worst, tol);
        CHECK(ok);
    }
    hearth_context_free(cc);
    hearth_context_free(cg);
    hearth_model_free(mc);
    hearth_model_free(mg);
}

TEST(long_prompts) {
    check_long(128, 5e-3);
    check_long(64, 5e-3);
}

int main(void) {
    test_init("cuda");
    char why[200];
    if (!device_cuda_available(why, sizeof why)) {
        printf("skip cuda: %s\n", why);
        return test_finish();
    }
    RUN(stories_f32);
    RUN(stories_q8_0);
    RUN(stories_q4_0);
    RUN(qwen3_q4_0);
    RUN(qwen3moe_q8_0);
    RUN(qwen3moe_q4_0);
    RUN(qwen3moe_f16);
    RUN(qwen3_q4_k);
    RUN(batched_stories);
    RUN(batched_qwen3);
    RUN(batched_qwen3moe);
    RUN(batched_hf_qwen3moe);
    RUN(long_prompts);
    return test_finish();
}
