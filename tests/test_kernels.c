/* test_kernels.c — block layouts, conversions, reference kernels.
 *
 * References: the CPU's own F16C instructions for half-precision rounding;
 * llama.cpp's quantizer for Q8_0/Q4_0 (the stories260K Q8_0/Q4_0 files were
 * written by it from the F32 file, so quantizing the F32 tensors here must
 * give the same bytes); and, for dot products, a double-precision sum over
 * the dequantized rows.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "test.h"
#include "util/dtype.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) {
    return _cvtsh_ss(h);
}
static bool have_f16c(void) {
    return __builtin_cpu_supports("f16c");
}
#else
static uint16_t hw_f32_to_f16(float f) {
    return hearth_f32_to_fp16(f);
}
static float hw_f16_to_f32(uint16_t h) {
    return hearth_fp16_to_f32(h);
}
static bool have_f16c(void) {
    return false;
}
#endif

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
/* Roughly normal values with occasional large outliers (heavy tails). */
static float rnd_weight(void) {
    float u = 0;
    for (int i = 0; i < 4; i++) u += (float)rnd() / 4294967296.0f - 0.5f;
    if (rnd() % 50 == 0) u *= 20.0f;
    return u;
}

TEST(fp16_matches_hardware) {
    if (!have_f16c()) {
        printf("  (no F16C on this CPU: compared with the reference only)\n");
    }
    /* Every half value converts to float exactly and back to itself. */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = hearth_fp16_to_f32((uint16_t)h);
        uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
        if (exp == 0x1f && mant) {
            CHECKF(isnan(f), "half %04x should be NaN", h);
            continue;
        }
        CHECKF(f == hw_f16_to_f32((uint16_t)h), "half %04x -> %g", h, (double)f);
        CHECKF(hearth_f32_to_fp16(f) == (uint16_t)h, "round trip of half %04x", h);
    }
    /* Random floats across the whole range, ties and the subnormal band. */
    for (int i = 0; i < 2000000; i++) {
        uint32_t bits = rnd();
        if (i % 4 == 1) bits = (bits & 0x807fffffu) | ((uint32_t)(100 + rnd() % 50) << 23);
        if (i % 4 == 2) bits = (bits & 0xffffe000u) | 0x1000u; /* exact tie */
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f)) continue;
        uint16_t want = hw_f32_to_f16(f), got = hearth_f32_to_fp16(f);
        if (!have_f16c()) break;
        CHECKF(got == want, "f32 %08x -> %04x, hardware %04x", bits, got, want);
        if (got != want) break;
    }
}

TEST(bf16_rounding) {
    CHECK(hearth_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(hearth_bf16_to_f32(0x3f80) == 1.0f);
    /* 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to even (1). */
    CHECK(hearth_f32_to_bf16(1.0f + 1.0f / 256.0f) == 0x3f80);
    /* 1 + 3 * 2^-8 ties to the even 1 + 2^-6. */
    CHECK(hearth_f32_to_bf16(1.0f + 3.0f / 256.0f) == 0x3f82);
    CHECK(hearth_f32_to_bf16(-2.5f) == 0xc020);
    CHECK(isnan(hearth_bf16_to_f32(hearth_f32_to_bf16(NAN))));
    CHECK(hearth_bf16_to_f32(hearth_f32_to_bf16(INFINITY)) == INFINITY);
}

TEST(layouts_agree_with_dtype_table) {
    CHECK(sizeof(block_q4_0) == dtype_block_bytes(HEARTH_DTYPE_Q4_0));
    CHECK(QK4_0 == dtype_block_size(HEARTH_DTYPE_Q4_0));
    CHECK(sizeof(block_q8_0) == dtype_block_bytes(HEARTH_DTYPE_Q8_0));
    CHECK(QK8_0 == dtype_block_size(HEARTH_DTYPE_Q8_0));
    uint32_t types[] = {HEARTH_DTYPE_F32, HEARTH_DTYPE_F16, HEARTH_DTYPE_BF16, HEARTH_DTYPE_Q8_0,
                        HEARTH_DTYPE_Q4_0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const kernel_traits *kt = kernel_traits_get(types[i]);
        REQUIRE(kt);
        CHECK(kt->type == types[i]);
        CHECK(dtype_block_size(kt->act_type) <= dtype_block_size(types[i]));
    }
    CHECK(kernel_traits_get(HEARTH_DTYPE_Q4_1) == NULL);
}

/* Quantizing each F32 tensor of stories260K with our reference quantizer
 * gives exactly the bytes llama.cpp wrote for the same tensor. */
static void check_quantizer_against_file(const char *qfile, uint32_t type, quantize_row_fn quant,
                                         int min_tensors) {
    gguf_file *f32 = NULL, *fq = NULL;
    hearth_error err;
    if (gguf_open(test_shared("models/stories260K.gguf"), true, &f32, &err) != HEARTH_OK ||
        gguf_open(test_shared(qfile), true, &fq, &err) != HEARTH_OK) {
        CHECKF(false, "cannot open: %s", err.msg);
        gguf_close(f32);
        return;
    }
    int n_compared = 0;
    for (uint64_t i = 0; i < fq->n_tensors; i++) {
        const gguf_tensor *tq = &fq->tensors[i];
        if (tq->type != type) continue;
        char name[128];
        gguf_str_copy(tq->name, name, sizeof name);
        const gguf_tensor *tf = gguf_find_tensor(f32, name);
        REQUIRE(tf && tf->type == HEARTH_DTYPE_F32 && tf->ne[0] == tq->ne[0]);
        uint8_t *out = malloc((size_t)tq->nbytes);
        REQUIRE(out);
        uint64_t rows = tq->nbytes / dtype_row_bytes(type, tq->ne[0]);
        uint64_t row_bytes = dtype_row_bytes(type, tq->ne[0]);
        for (uint64_t r = 0; r < rows; r++) {
            quant((const float *)tf->data + r * tq->ne[0], out + r * row_bytes, (int64_t)tq->ne[0]);
        }
        size_t diff = 0;
        for (uint64_t b = 0; b < tq->nbytes; b++) diff += out[b] != ((const uint8_t *)tq->data)[b];
        CHECKF(diff == 0, "%s %s: %zu of %llu bytes differ from llama.cpp's quantization", qfile,
               name, diff, (unsigned long long)tq->nbytes);
        free(out);
        n_compared++;
    }
    CHECKF(n_compared >= min_tensors, "%s: only %d %s tensors compared", qfile, n_compared,
           hearth_dtype_name(type));
    gguf_close(f32);
    gguf_close(fq);
}

TEST(q8_0_quantizer_matches_llama_cpp) {
    check_quantizer_against_file("models/stories260K-q8_0.gguf", HEARTH_DTYPE_Q8_0,
                                 quantize_row_q8_0_ref, 30);
}

TEST(q4_0_quantizer_matches_llama_cpp) {
    check_quantizer_against_file("models/stories260K-q4_0.gguf", HEARTH_DTYPE_Q4_0,
                                 quantize_row_q4_0_ref, 30);
}

TEST(f16_tensors_match_llama_cpp) {
    /* ffn_down was stored as F16 by llama.cpp: our rounding must agree. */
    check_quantizer_against_file("models/stories260K-q8_0.gguf", HEARTH_DTYPE_F16,
                                 quantize_row_f16_ref, 5);
}

/* Dequantized values stay within the block's rounding step of the input. */
TEST(dequantize_error_bounds) {
    enum { N = 32 * 37 };
    static float x[N], y[N];
    static block_q8_0 q8[N / 32];
    static block_q4_0 q4[N / 32];
    for (int i = 0; i < N; i++) x[i] = rnd_weight();
    for (int i = 0; i < 32; i++) x[5 * 32 + i] = 0.0f; /* an all-zero block */
    quantize_row_q8_0_ref(x, q8, N);
    dequantize_row_q8_0_ref(q8, y, N);
    for (int b = 0; b < N / 32; b++) {
        float d = hearth_fp16_to_f32(q8[b].d);
        for (int j = 0; j < 32; j++) {
            int i = b * 32 + j;
            /* Half a step, plus the scale's own f16 rounding times 127. */
            CHECKF(fabsf(x[i] - y[i]) <= 0.57f * d + 1e-7f, "q8_0 element %d: %g vs %g", i,
                   (double)x[i], (double)y[i]);
        }
    }
    quantize_row_q4_0_ref(x, q4, N);
    dequantize_row_q4_0_ref(q4, y, N);
    double err2 = 0, sig2 = 0;
    for (int b = 0; b < N / 32; b++) {
        float d = fabsf(hearth_fp16_to_f32(q4[b].d));
        for (int j = 0; j < 32; j++) {
            int i = b * 32 + j;
            CHECKF(fabsf(x[i] - y[i]) <= d * 1.01f + 1e-7f, "q4_0 element %d: %g vs %g", i,
                   (double)x[i], (double)y[i]);
            err2 += (double)(x[i] - y[i]) * (x[i] - y[i]);
            sig2 += (double)x[i] * x[i];
        }
    }
    /* Outliers widen their block's step; 4 bits on such data give ~2.3%. */
    CHECKF(err2 / sig2 < 0.035, "q4_0 NMSE %g", err2 / sig2);
    for (int i = 5 * 32; i < 6 * 32; i++) CHECK(y[i] == 0.0f);
}

/* Each dot kernel equals a double-precision dot of the dequantized rows. */
TEST(dot_products_match_dequantized) {
    enum { N = 32 * 19 };
    static float w[N], a[N], wd[N], ad[N];
    static uint8_t wq[N * 4], aq[N * 4];
    uint32_t types[] = {HEARTH_DTYPE_F32, HEARTH_DTYPE_F16, HEARTH_DTYPE_BF16, HEARTH_DTYPE_Q8_0,
                        HEARTH_DTYPE_Q4_0};
    for (int trial = 0; trial < 20; trial++) {
        for (int i = 0; i < N; i++) {
            w[i] = rnd_weight();
            a[i] = rnd_weight();
        }
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            const kernel_traits *kt = kernel_traits_get(types[t]);
            const kernel_traits *ka = kernel_traits_get(kt->act_type);
            REQUIRE(kt && ka);
            /* Weights in their own format (the reference quantizer of the type),
             * activations in whatever the kernel in use wants. */
            if (types[t] == HEARTH_DTYPE_Q4_0) {
                quantize_row_q4_0_ref(w, wq, N);
            } else {
                kernel_traits_ref(types[t])->quantize_act(w, wq, N);
            }
            ka->quantize_act(a, aq, N);
            kt->dequantize(wq, wd, N);
            ka->dequantize(aq, ad, N);
            double ref = 0, mag = 0;
            for (int i = 0; i < N; i++) {
                ref += (double)wd[i] * ad[i];
                mag += fabs((double)wd[i] * ad[i]);
            }
            float got = kt->vec_dot(N, wq, aq);
            CHECKF(fabs(got - ref) <= 1e-5 * mag + 1e-6, "%s dot: %g vs %g",
                   hearth_dtype_name(types[t]), (double)got, ref);
        }
    }
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    RUN(fp16_matches_hardware);
    RUN(bf16_rounding);
    RUN(layouts_agree_with_dtype_table);
    RUN(q8_0_quantizer_matches_llama_cpp);
    RUN(q4_0_quantizer_matches_llama_cpp);
    RUN(f16_tensors_match_llama_cpp);
    RUN(dequantize_error_bounds);
    RUN(dot_products_match_dequantized);
    return test_finish();
}
