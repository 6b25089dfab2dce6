/* test_simd.c — every SIMD kernel held to the scalar reference.
 *
 * For each weight type and each instruction-set variant this CPU can run:
 * the activation quantizers must write exactly the reference's bytes, and
 * the dot products (and prefill tiles) must equal the reference dot of the
 * same weights within a tight relative bound — on random data with heavy
 * tails, at sizes that exercise every tail path.  Variants the CPU lacks
 * are reported and skipped.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/simd.h"
#include "test.h"
#include "util/dtype.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    float u = (float)(rng >> 40) / 16777216.0f - 0.5f;
    return (rng & 63) == 0 ? u * 30.0f : u; /* occasional outliers */
}

typedef struct variant {
    const char *name;
    bool available;
    uint32_t w_type;
    quantize_row_fn quant_act;
    vec_dot_fn dot;
    gemm_fn gemm;
} variant;

/* Set while the variants under test read rows rewritten by kernel_repack_row. */
static bool rows_repacked;

enum { MAXN = 4096 + 256 };

/* Compares a dot variant with the reference for size n; returns the
 * relative error against the sum of |products|. */
static double check_dot(const variant *v, int64_t n, bool *ok) {
    static float w[MAXN], a[MAXN];
    static uint8_t wq[MAXN * 4], aq_ref[MAXN * 4], aq[MAXN * 4 + 512];
    for (int64_t i = 0; i < n; i++) {
        w[i] = rnd();
        a[i] = rnd() * 4.0f;
    }
    const kernel_traits *ref = kernel_traits_ref(v->w_type);
    kernel_weight_quantizer(v->w_type)(w, wq, n);
    ref->quantize_act(a, aq_ref, n);
    v->quant_act(a, aq, n);
    double want = ref->vec_dot(n, wq, aq_ref);
    static uint8_t wr[MAXN * 4];
    memcpy(wr, wq, sizeof wr);
    bool packed = !rows_repacked || kernel_repack_row(v->w_type, wr, n);
    double got = v->dot(n, wr, aq);
    /* magnitude: dot of |dequantized values| */
    static float wd[MAXN], ad[MAXN];
    ref->dequantize(wq, wd, n);
    kernel_traits_ref(ref->act_type)->dequantize(aq_ref, ad, n);
    double mag = 0;
    for (int64_t i = 0; i < n; i++) mag += fabs((double)wd[i] * ad[i]);
    double rel = fabs(got - want) / (mag + 1e-30);
    *ok = rel < 1e-5 && packed;
    return rel;
}

static void run_variants(const variant *vs, size_t nv, const int64_t *sizes, size_t ns) {
    for (size_t k = 0; k < nv; k++) {
        if (!vs[k].available) {
            printf("  %s: not available on this CPU\n", vs[k].name);
            continue;
        }
        double worst = 0;
        for (size_t i = 0; i < ns; i++) {
            for (int rep = 0; rep < 4; rep++) {
                bool ok;
                double rel = check_dot(&vs[k], sizes[i], &ok);
                if (rel > worst) worst = rel;
                CHECKF(ok, "%s n=%lld: relative error %g", vs[k].name, (long long)sizes[i], rel);
            }
        }
        printf("  %-28s worst relative error %.2e\n", vs[k].name, worst);
    }
}

static const int64_t quant_sizes[] = {32, 64, 96, 128, 160, 224, 256, 416, 2048, 4096 + 32};

/* A dot variant over rows rewritten by kernel_repack_row. */
static void run_repacked(const variant *v) {
    uint64_t rng_saved = rng; /* the other tests keep their data */
    rows_repacked = true;
    run_variants(v, 1, quant_sizes, sizeof quant_sizes / sizeof quant_sizes[0]);
    rows_repacked = false;
    rng = rng_saved;
}
static const int64_t float_sizes[] = {1,  7,  8,  15,  16,  17,   31,  33,
                                      63, 64, 65, 100, 172, 1000, 4097};

TEST(dot_q4_0) {
    const cpu_features *f = cpu_get_features();
#if defined(__x86_64__)
    variant vs[] = {
        {"q4_0 . q8a avx2", f->avx2, HEARTH_DTYPE_Q4_0, quantize_row_q8a_avx2,
         vec_dot_q4_0_q8a_avx2, NULL},
        {"q4_0 . q8a avx512-vnni", f->avx512_vnni, HEARTH_DTYPE_Q4_0, quantize_row_q8a_avx512,
         vec_dot_q4_0_q8a_avx512, NULL},
        {"q4_0 . q8x4 avx512-vbmi", f->avx512_vnni && f->avx512_vbmi, HEARTH_DTYPE_Q4_0,
         quantize_row_q8x4_o8_avx512, vec_dot_q4_0_q8x4_avx512, NULL},
    };
    run_variants(vs, sizeof vs / sizeof vs[0], quant_sizes,
                 sizeof quant_sizes / sizeof quant_sizes[0]);
    variant repacked = {
        "q4_0 repacked . q8x4 avx512", f->avx512_vnni && f->avx512_vbmi, HEARTH_DTYPE_Q4_0,
        quantize_row_q8x4_o8_avx512,   vec_dot_q4_0r_q8x4_avx512,        NULL};
    run_repacked(&repacked);
#else
    (void)f;
#endif
}

TEST(dot_q8_0) {
    const cpu_features *f = cpu_get_features();
#if defined(__x86_64__)
    variant vs[] = {
        {"q8_0 . q8a avx2", f->avx2, HEARTH_DTYPE_Q8_0, quantize_row_q8a_avx2,
         vec_dot_q8_0_q8a_avx2, NULL},
        {"q8_0 . q8a avx512-vnni", f->avx512_vnni, HEARTH_DTYPE_Q8_0, quantize_row_q8a_avx512,
         vec_dot_q8_0_q8a_avx512, NULL},
        {"q8_0 . q8x4 avx512-vbmi", f->avx512_vnni && f->avx512_vbmi, HEARTH_DTYPE_Q8_0,
         quantize_row_q8x4_o128_avx512, vec_dot_q8_0_q8x4_avx512, NULL},
    };
    run_variants(vs, sizeof vs / sizeof vs[0], quant_sizes,
                 sizeof quant_sizes / sizeof quant_sizes[0]);
    variant repacked = {
        "q8_0 repacked . q8x4 avx512", f->avx512_vnni && f->avx512_vbmi, HEARTH_DTYPE_Q8_0,
        quantize_row_q8x4_o128_avx512, vec_dot_q8_0r_q8x4_avx512,        NULL};
    run_repacked(&repacked);
#else
    (void)f;
#endif
}

/* K-quants: whole super-blocks, odd counts of them, and 4096 + 256 (a
 * tail after a power of two). */
static const int64_t k_sizes[] = {256, 512, 768, 1280, 1792, 4352};

TEST(dot_k_quants) {
    const cpu_features *f = cpu_get_features();
#if defined(__x86_64__)
    variant vs[] = {
        {"q4_K . q8_K avx2", f->avx2, HEARTH_DTYPE_Q4_K, quantize_row_q8_K_avx2,
         vec_dot_q4_K_q8_K_avx2, NULL},
        {"q4_K . q8_K avx512-vnni", f->avx512_vnni, HEARTH_DTYPE_Q4_K, quantize_row_q8_K_avx512,
         vec_dot_q4_K_q8_K_avx512, NULL},
        {"q5_K . q8_K avx2", f->avx2, HEARTH_DTYPE_Q5_K, quantize_row_q8_K_ref,
         vec_dot_q5_K_q8_K_avx2, NULL},
        {"q5_K . q8_K avx512-vnni", f->avx512_vnni, HEARTH_DTYPE_Q5_K, quantize_row_q8_K_ref,
         vec_dot_q5_K_q8_K_avx512, NULL},
        {"q6_K . q8_K avx2", f->avx2, HEARTH_DTYPE_Q6_K, quantize_row_q8_K_ref,
         vec_dot_q6_K_q8_K_avx2, NULL},
        {"q6_K . q8_K avx512-vnni", f->avx512_vnni, HEARTH_DTYPE_Q6_K, quantize_row_q8_K_ref,
         vec_dot_q6_K_q8_K_avx512, NULL},
    };
    run_variants(vs, sizeof vs / sizeof vs[0], k_sizes, sizeof k_sizes / sizeof k_sizes[0]);
    /* and the mixes' 32-element fallbacks */
    variant fb[] = {
        {"q5_0 . q8_0 avx2", f->avx2, HEARTH_DTYPE_Q5_0, quantize_row_q8_0_ref,
         vec_dot_q5_0_q8_0_avx2, NULL},
        {"q5_1 . q8_0 avx2", f->avx2, HEARTH_DTYPE_Q5_1, quantize_row_q8_0_ref,
         vec_dot_q5_1_q8_0_avx2, NULL},
    };
    run_variants(fb, sizeof fb / sizeof fb[0], quant_sizes,
                 sizeof quant_sizes / sizeof quant_sizes[0]);
#else
    (void)f;
#endif
}

TEST(dot_float_types) {
    const cpu_features *f = cpu_get_features();
#if defined(__x86_64__)
    variant vs[] = {
        {"f32 avx2", f->avx2, HEARTH_DTYPE_F32, quantize_row_f32_ref, vec_dot_f32_f32_avx2, NULL},
        {"f32 avx512", f->avx512, HEARTH_DTYPE_F32, quantize_row_f32_ref, vec_dot_f32_f32_avx512,
         NULL},
        {"f16 avx2", f->avx2, HEARTH_DTYPE_F16, quantize_row_f16_avx2, vec_dot_f16_f16_avx2, NULL},
        {"f16 avx512", f->avx512, HEARTH_DTYPE_F16, quantize_row_f16_avx2, vec_dot_f16_f16_avx512,
         NULL},
        {"bf16 avx2", f->avx2, HEARTH_DTYPE_BF16, quantize_row_bf16_ref, vec_dot_bf16_bf16_avx2,
         NULL},
        {"bf16 avx512-bf16", f->avx512_bf16, HEARTH_DTYPE_BF16, quantize_row_bf16_avx512,
         vec_dot_bf16_bf16_avx512, NULL},
    };
    run_variants(vs, sizeof vs / sizeof vs[0], float_sizes,
                 sizeof float_sizes / sizeof float_sizes[0]);
#else
    (void)f;
#endif
}

/* SIMD activation quantizers must produce the reference's bytes exactly. */
TEST(activation_quantizers_match_reference) {
    const cpu_features *f = cpu_get_features();
    static float x[MAXN];
    static uint8_t r[MAXN * 4], s[MAXN * 4];
    for (int64_t i = 0; i < MAXN; i++) x[i] = rnd() * 3.0f;
    for (int i = 0; i < 64; i++) x[i] = (float)(i - 32) * 0.5f; /* exact .5 ties */
    for (int i = 64; i < 96; i++) x[i] = 0.0f;                  /* an all-zero block */
#if defined(__x86_64__)
    struct {
        const char *name;
        bool available;
        quantize_row_fn ref, simd;
        uint32_t type;
    } qs[] = {
        {"q8a avx2", f->avx2, quantize_row_q8a_ref, quantize_row_q8a_avx2, KERNEL_ACT_Q8A},
        {"q8a avx512", f->avx512, quantize_row_q8a_ref, quantize_row_q8a_avx512, KERNEL_ACT_Q8A},
        {"q8x4/8 avx512", f->avx512_vbmi && f->avx512_vnni, quantize_row_q8x4_o8_ref,
         quantize_row_q8x4_o8_avx512, KERNEL_ACT_Q8X4_O8},
        {"q8x4/128 avx512", f->avx512_vbmi && f->avx512_vnni, quantize_row_q8x4_o128_ref,
         quantize_row_q8x4_o128_avx512, KERNEL_ACT_Q8X4_O128},
        {"f16 avx2", f->avx2, quantize_row_f16_ref, quantize_row_f16_avx2, HEARTH_DTYPE_F16},
        {"bf16 avx512", f->avx512_bf16, quantize_row_bf16_ref, quantize_row_bf16_avx512,
         HEARTH_DTYPE_BF16},
    };
    const int64_t sizes[] = {32, 96, 128, 160, 4096, 4096 + 64};
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        if (!qs[k].available) continue;
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            uint64_t bytes = kernel_row_bytes(qs[k].type, (uint64_t)sizes[i]);
            memset(r, 0xAA, bytes);
            memset(s, 0x55, bytes);
            qs[k].ref(x, r, sizes[i]);
            qs[k].simd(x, s, sizes[i]);
            CHECKF(bytes > 0 && memcmp(r, s, bytes) == 0, "%s n=%lld: bytes differ", qs[k].name,
                   (long long)sizes[i]);
        }
    }
#else
    (void)f;
    (void)r;
    (void)s;
#endif
}

/* The Q8_K activation quantizers write the reference's bytes too, on
 * heavy-tailed data, exact ties, zero blocks and a block whose largest
 * magnitude occurs with both signs. */
TEST(q8_K_quantizers_match_reference) {
    const cpu_features *f = cpu_get_features();
#if defined(__x86_64__)
    enum { N = QK_K * 9 };
    static float x[N];
    static block_q8_K r[N / QK_K], s[N / QK_K];
    for (int i = 0; i < N; i++) x[i] = rnd() * 3.0f;
    for (int i = 0; i < 64; i++) x[i] = (float)(i - 32) * 0.5f;
    memset(x + QK_K, 0, QK_K * sizeof(float));
    x[2 * QK_K + 5] = -7.0f;
    x[2 * QK_K + 9] = 7.0f;
    for (int i = 3 * QK_K; i < 4 * QK_K; i++) x[i] *= 1e-30f;
    struct {
        const char *name;
        bool available;
        quantize_row_fn fn;
    } qs[] = {{"q8_K avx2", f->avx2, quantize_row_q8_K_avx2},
              {"q8_K avx512", f->avx512_vnni, quantize_row_q8_K_avx512}};
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        if (!qs[k].available) continue;
        for (int nb = 1; nb <= N / QK_K; nb += 4) {
            memset(r, 0xAA, sizeof r);
            memset(s, 0x55, sizeof s);
            quantize_row_q8_K_ref(x, r, (int64_t)nb * QK_K);
            qs[k].fn(x, s, (int64_t)nb * QK_K);
            CHECKF(memcmp(r, s, (size_t)nb * sizeof r[0]) == 0, "%s, %d blocks: bytes differ",
                   qs[k].name, nb);
        }
    }
#else
    (void)f;
#endif
}

/* Every tile up to 4 x 4 of rows wq (w_stride apart) by activations aq
 * (a_stride apart), n wide, equals the dot kernel of each pair. */
static void check_tiles(const char *what, gemm_fn tile, vec_dot_fn dot, int64_t n,
                        const uint8_t *wq, size_t w_stride, const uint8_t *aq, size_t a_stride) {
    enum { R = 4, C = 4 };
    for (int nr = 1; nr <= R; nr++) {
        for (int nc = 1; nc <= C; nc++) {
            float y[C][R];
            memset(y, 0, sizeof y);
            tile(n, wq, w_stride, nr, aq, a_stride, nc, &y[0][0], R);
            for (int c = 0; c < nc; c++) {
                for (int r = 0; r < nr; r++) {
                    float want = dot(n, wq + (size_t)r * w_stride, aq + (size_t)c * a_stride);
                    CHECKF(fabsf(y[c][r] - want) <= 1e-4f * (fabsf(want) + 1.0f),
                           "%s n=%lld %dx%d [%d][%d]: %g vs %g", what, (long long)n, nr, nc, r, c,
                           (double)y[c][r], (double)want);
                }
            }
        }
    }
}

/* Prefill tiles equal the dot kernel they stand for, for full and partial tiles. */
TEST(gemm_tiles_match_dots) {
    const cpu_features *f = cpu_get_features();
#if defined(__x86_64__)
    if (!f->avx512_vnni) {
        printf("  (no AVX-512 VNNI: no tiles to test)\n");
        return;
    }
    enum { N = 256, R = 4, C = 4 };
    static float w[R][N], a[C][N];
    static uint8_t wq[R][N * 2], aq[C][N * 2];
    gemm_fn tiles[2] = {gemm_q4_0_q8a_avx512, gemm_q8_0_q8a_avx512};
    vec_dot_fn dots[2] = {vec_dot_q4_0_q8a_avx512, vec_dot_q8_0_q8a_avx512};
    for (int k = 0; k < 2; k++) {
        for (int r = 0; r < R; r++) {
            for (int i = 0; i < N; i++) w[r][i] = rnd();
            if (k == 0) {
                quantize_row_q4_0_ref(w[r], wq[r], N);
            } else {
                quantize_row_q8_0_ref(w[r], wq[r], N);
            }
        }
        for (int c = 0; c < C; c++) {
            for (int i = 0; i < N; i++) a[c][i] = rnd();
            quantize_row_q8a_avx512(a[c], aq[c], N);
        }
        check_tiles(k == 0 ? "q4_0 tile" : "q8_0 tile", tiles[k], dots[k], N, wq[0], sizeof wq[0],
                    aq[0], sizeof aq[0]);
    }
#else
    (void)f;
#endif
}

/* Repacked Q4_0 and Q8_0: the rows dequantize to exactly the file's
 * values, and every tile up to 4 x 4 (whole groups and a partial one, the
 * 4-row decode kernel included) equals the repacked dot, which check_dot
 * holds to the reference. */
TEST(repacked_rows_and_tiles) {
    enum { R = 4, C = 4, MAXW = 2048 };
    static const int64_t widths[] = {32, 64, 96, 160, 256, 768, 2048};
    static float w[MAXW], d0[MAXW], d1[MAXW], a[C][MAXW];
    static uint8_t wq[R][MAXW * 2], aq[C][MAXW * 2];
    uint64_t rng_saved = rng; /* the other tests keep their data */
    const cpu_features *f = cpu_get_features();
    bool simd = false;
#if defined(__x86_64__)
    simd = f->avx512_vnni && f->avx512_vbmi;
#endif
    for (int ty = 0; ty < 2; ty++) {
        uint32_t type = ty == 0 ? HEARTH_DTYPE_Q4_0 : HEARTH_DTYPE_Q8_0;
        const kernel_traits *ref = kernel_traits_ref(type);
        for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++) {
            int64_t n = widths[k];
            for (int r = 0; r < R; r++) {
                for (int64_t i = 0; i < n; i++) w[i] = rnd();
                kernel_weight_quantizer(type)(w, wq[r], n);
                ref->dequantize(wq[r], d0, n);
                REQUIRE(kernel_repack_row(type, wq[r], n));
                (ty == 0 ? dequantize_row_q4_0r_ref : dequantize_row_q8_0r_ref)(wq[r], d1, n);
                CHECKF(memcmp(d0, d1, (size_t)n * sizeof d0[0]) == 0,
                       "%s n=%lld row %d dequantizes differently once repacked",
                       hearth_dtype_name(type), (long long)n, r);
            }
#if defined(__x86_64__)
            if (!simd) continue;
            for (int c = 0; c < C; c++) {
                for (int64_t i = 0; i < n; i++) a[c][i] = rnd();
                (ty == 0 ? quantize_row_q8x4_o8_avx512 : quantize_row_q8x4_o128_avx512)(a[c], aq[c],
                                                                                        n);
            }
            if (ty == 0) {
                check_tiles("q4_0 repacked tile", gemm_q4_0r_q8x4_avx512, vec_dot_q4_0r_q8x4_avx512,
                            n, wq[0], sizeof wq[0], aq[0], sizeof aq[0]);
            } else {
                check_tiles("q8_0 repacked tile", gemm_q8_0r_q8x4_avx512, vec_dot_q8_0r_q8x4_avx512,
                            n, wq[0], sizeof wq[0], aq[0], sizeof aq[0]);
            }
#endif
        }
    }
    if (!simd) printf("  (no AVX-512 VBMI: repacked tiles not tested)\n");
    /* Rows that are not whole blocks, and other types, are refused and left alone. */
    memset(wq[0], 7, 64);
    CHECK(!kernel_repack_row(HEARTH_DTYPE_Q4_0, wq[0], 48));
    CHECK(!kernel_repack_row(HEARTH_DTYPE_Q8_0, wq[0], 40));
    CHECK(!kernel_repack_row(HEARTH_DTYPE_F16, wq[0], 32));
    CHECK(wq[0][0] == 7 && wq[0][63] == 7);
    rng = rng_saved;
}

/* K-quant tiles: every nr x nc up to 4 x 4 equals the dot kernel, at one
 * super-block and at several. */
TEST(k_quant_tiles_match_dots) {
    const cpu_features *f = cpu_get_features();
#if defined(__x86_64__)
    if (!f->avx512_vnni) {
        printf("  (no AVX-512 VNNI: no K-quant tiles to test)\n");
        return;
    }
    enum { N = QK_K * 3, R = 4, C = 4 };
    static float w[R][N], a[C][N];
    static uint8_t wq[R][N], aq[C][N * 2];
    const struct {
        uint32_t type;
        gemm_fn tile;
        vec_dot_fn dot;
    } ks[] = {{HEARTH_DTYPE_Q4_K, gemm_q4_K_q8_K_avx512, vec_dot_q4_K_q8_K_avx512},
              {HEARTH_DTYPE_Q5_K, gemm_q5_K_q8_K_avx512, vec_dot_q5_K_q8_K_avx512},
              {HEARTH_DTYPE_Q6_K, gemm_q6_K_q8_K_avx512, vec_dot_q6_K_q8_K_avx512}};
    const int64_t sizes[] = {QK_K, N};
    for (size_t k = 0; k < sizeof ks / sizeof ks[0]; k++) {
        for (size_t si = 0; si < 2; si++) {
            int64_t n = sizes[si];
            for (int r = 0; r < R; r++) {
                for (int i = 0; i < n; i++) w[r][i] = rnd();
                kernel_weight_quantizer(ks[k].type)(w[r], wq[r], n);
            }
            for (int c = 0; c < C; c++) {
                for (int i = 0; i < n; i++) a[c][i] = rnd();
                quantize_row_q8_K_avx512(a[c], aq[c], n);
            }
            for (int nr = 1; nr <= R; nr++) {
                for (int nc = 1; nc <= C; nc++) {
                    float y[C][R];
                    memset(y, 0, sizeof y);
                    ks[k].tile(n, wq[0], sizeof wq[0], nr, aq[0], sizeof aq[0], nc, &y[0][0], R);
                    for (int c = 0; c < nc; c++) {
                        for (int r = 0; r < nr; r++) {
                            /* The tile may sum in another order than the dot:
                             * bound the difference by the products' magnitude. */
                            static float wd[N], ad[N];
                            kernel_traits_ref(ks[k].type)->dequantize(wq[r], wd, n);
                            dequantize_row_q8_K_ref(aq[c], ad, n);
                            double mag = 0;
                            for (int i = 0; i < n; i++) mag += fabs((double)wd[i] * ad[i]);
                            float want = ks[k].dot(n, wq[r], aq[c]);
                            CHECKF(fabs(y[c][r] - want) <= 1e-6 * mag,
                                   "%s tile %dx%d [%d][%d]: %g vs %g",
                                   hearth_dtype_name(ks[k].type), nr, nc, r, c, (double)y[c][r],
                                   (double)want);
                        }
                    }
                }
            }
        }
    }
#else
    (void)f;
#endif
}

/* The attention kernel against the reference: head sizes 8 (stories260K),
 * 64 and 128, lengths from 1 to past a vector. */
TEST(attention_matches_reference) {
    const cpu_features *f = cpu_get_features();
#if defined(__x86_64__)
    if (!f->avx512) {
        printf("  (no AVX-512: no attention kernel to test)\n");
        return;
    }
    enum { MAXP = 300, MAXD = 128 };
    static uint16_t k[MAXP * MAXD * 2], v[MAXP * MAXD * 2];
    static float q[MAXD], sr[MAXP], ss[MAXP], outr[MAXD], outs[MAXD];
    static uint16_t qh[MAXD];
    const int dims[] = {8, 64, 128}, lens[] = {1, 2, 15, 16, 17, 100, 300};
    for (size_t di = 0; di < 3; di++) {
        int hd = dims[di];
        size_t stride = (size_t)hd * 2 * 2; /* rows of two heads: use the first */
        for (int i = 0; i < MAXP * hd * 2; i++) {
            k[i] = hearth_f32_to_fp16(rnd());
            v[i] = hearth_f32_to_fp16(rnd());
        }
        for (int i = 0; i < hd; i++) q[i] = rnd() * 3.0f;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            int n = lens[li];
            float scale = 1.0f / sqrtf((float)hd);
            attn_head_f16_ref(q, k, stride, v, stride, hd, hd, n, scale, sr, qh, outr);
            attn_head_f16_avx512(q, k, stride, v, stride, hd, hd, n, scale, ss, qh, outs);
            float worst = 0, mag = 0;
            for (int d = 0; d < hd; d++) {
                worst = fmaxf(worst, fabsf(outr[d] - outs[d]));
                mag = fmaxf(mag, fabsf(outr[d]));
            }
            /* The softmax weights are rounded to f16 on both sides; a weight
             * near a rounding edge may land one f16 step apart. */
            CHECKF(worst <= 2e-3f * (mag + 1e-3f), "hd %d n %d: max diff %g of %g", hd, n,
                   (double)worst, (double)mag);
        }
    }
#else
    (void)f;
#endif
}

/* Argmax: the first index of the largest value, NaNs never winning, equal
 * to a definition computed apart (the maximum of the non-NaN values, then
 * its first index) and to the scalar scan, on ties, NaNs, infinities and
 * every tail length. */
static int32_t argmax_by_definition(const float *x, int32_t n) {
    if (isnan(x[0])) return 0;
    float m = x[0];
    for (int32_t i = 1; i < n; i++) {
        if (!isnan(x[i]) && x[i] > m) m = x[i];
    }
    for (int32_t i = 0; i < n; i++) {
        if (x[i] == m) return i;
    }
    return -1;
}

TEST(argmax_matches_definition) {
    enum { VOCAB = 151936 };
    static float x[VOCAB];
    uint64_t rng_saved = rng;
    argmax_fn fns[2] = {argmax_f32_ref, kernel_argmax()};
    const int32_t sizes[] = {1, 2, 7, 15, 16, 17, 31, 33, 100, 1000, 4097, VOCAB};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int32_t n = sizes[si];
        for (int trial = 0; trial < 12; trial++) {
            for (int32_t i = 0; i < n; i++) {
                /* few distinct values, so the maximum is often tied */
                x[i] = trial % 3 == 0 ? (float)((int)(rnd() * 8.0f)) : rnd();
            }
            if (trial % 4 == 1 && n > 3) x[(rng >> 20) % (uint64_t)n] = NAN;
            if (trial % 4 == 2) x[n - 1] = INFINITY;
            if (trial % 6 == 5) x[0] = NAN;
            if (trial % 5 == 3 && n > 1) x[n / 2] = -INFINITY;
            int32_t want = argmax_by_definition(x, n);
            for (int k = 0; k < 2; k++) {
                int32_t got = fns[k](x, n);
                CHECKF(got == want, "%s n=%d trial %d: %d, want %d", k == 0 ? "scalar" : "fastest",
                       n, trial, got, want);
            }
        }
    }
    rng = rng_saved;
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    printf("  kernels in use: %s\n", cpu_kernel_name());
    RUN(dot_q4_0);
    RUN(dot_q8_0);
    RUN(dot_k_quants);
    RUN(dot_float_types);
    RUN(activation_quantizers_match_reference);
    RUN(q8_K_quantizers_match_reference);
    RUN(gemm_tiles_match_dots);
    RUN(repacked_rows_and_tiles);
    RUN(k_quant_tiles_match_dots);
    RUN(attention_matches_reference);
    RUN(argmax_matches_definition);
    return test_finish();
}
