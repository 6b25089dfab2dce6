/* test_cuda.c — the CUDA backend against the CPU engine.
 *
 * The same model is loaded twice, on the CPU and on the GPU, and fed the
 * same tokens: a prompt as one batch (the prefill kernels), then tokens one
 * at a time (the one-token step and its CUDA graph), each next token the
 * CPU's greedy choice.  After every step the GPU's logits must lie within
 * a stated share of the largest CPU logit, and its greedy token must be
 * the CPU's wherever the CPU's top two are further apart than that bound.
 *
 * Models: stories260K (llama, adjacent-pair RoPE) in F32 with an F32 cache,
 * Q8_0 and Q4_0 with an F16 cache; small random-weight qwen3 (half-split
 * RoPE, q/k norms; Q4_0 and Q4_K) and qwen3moe (routed experts; Q8_0, Q4_0, F16),
 * written here with synth.  Without CUDA in the build, or without a GPU,
 * the program prints why and runs nothing.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

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

static hearth_context *context_for(const hearth_model *m, hearth_kv_type kv) {
    hearth_context_params p = hearth_context_default_params();
    p.n_ctx = 128;
    p.n_batch = 32;
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
static bool compare(const hearth_context *cpu, const hearth_context *gpu, uint32_t row, int32_t nv,
                    double tol, double *worst, hearth_token *next, int step) {
    const float *a = hearth_get_logits(cpu, row), *b = hearth_get_logits(gpu, row);
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

/* Runs the prompt and N_STEPS greedy steps on both devices; tol is the
 * bound on max |gpu - cpu| over max |cpu|. */
static void check_model(const char *path, hearth_kv_type kv, double tol) {
    hearth_model *mc = load_on(path, HEARTH_DEVICE_CPU), *mg = load_on(path, HEARTH_DEVICE_CUDA);
    hearth_context *cc = mc ? context_for(mc, kv) : NULL, *cg = mg ? context_for(mg, kv) : NULL;
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
    return test_finish();
}
