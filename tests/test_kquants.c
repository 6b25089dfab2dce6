/* test_kquants.c — the K-quants Q4_K, Q5_K, Q6_K, their activation type
 * Q8_K, and Q5_0 / Q5_1 (the K-quant mixes' fallbacks) against llama.cpp
 * and against themselves.
 *
 * tests/data/kquants holds float rows and what llama.cpp's quantizers and
 * dequantizers made of them (see its PROVENANCE.md): our dequantization of
 * its bytes must give its floats bit for bit, and our quantizers must write
 * its bytes.  On random data with heavy tails, quantize -> dequantize must
 * stay within an NMSE bound per type, and every dot kernel (the reference
 * and the one this CPU uses) must equal a double-precision dot of the
 * dequantized rows.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"
#include "util/dtype.h"

#define FIXTURE_N    16384 /* values in the fixture: 8 rows of 2048 */
#define FIXTURE_COLS 2048

typedef struct ktype {
    const char *name; /* file stem in tests/data/kquants */
    uint32_t type;
    quantize_row_fn quantize;
    dequantize_row_fn dequantize;
    size_t n; /* values in its fixture files (a prefix of input.f32) */
} ktype;

/* The K-quants, their activation type, and the mixes' fallback types. */
static const ktype ktypes[] = {
    {"q4_K", HEARTH_DTYPE_Q4_K, quantize_row_q4_K_ref, dequantize_row_q4_K_ref, FIXTURE_N},
    {"q5_K", HEARTH_DTYPE_Q5_K, quantize_row_q5_K_ref, dequantize_row_q5_K_ref, FIXTURE_N},
    {"q6_K", HEARTH_DTYPE_Q6_K, quantize_row_q6_K_ref, dequantize_row_q6_K_ref, FIXTURE_N},
    {"q8_K", HEARTH_DTYPE_Q8_K, quantize_row_q8_K_ref, dequantize_row_q8_K_ref, FIXTURE_N},
    {"q5_0", HEARTH_DTYPE_Q5_0, quantize_row_q5_0_ref, dequantize_row_q5_0_ref, 2 * FIXTURE_COLS},
    {"q5_1", HEARTH_DTYPE_Q5_1, quantize_row_q5_1_ref, dequantize_row_q5_1_ref, 2 * FIXTURE_COLS},
};
#define N_KTYPES (sizeof ktypes / sizeof ktypes[0])

static uint64_t rng_state = 0x853c49e6748fea9bull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
/* Roughly normal values with 2% outliers 20x larger (heavy tails). */
static float rnd_weight(void) {
    float u = 0;
    for (int i = 0; i < 4; i++) u += (float)rnd() / 4294967296.0f - 0.5f;
    if (rnd() % 50 == 0) u *= 20.0f;
    return u;
}

/* Reads tests/data/kquants/<name>; NULL (after a failed check) when the
 * file is missing or not want bytes long. */
static void *read_fixture(const char *name, size_t want) {
    char path[256];
    snprintf(path, sizeof path, "tests/data/kquants/%s", name);
    size_t len = 0;
    void *p = test_read_file(path, &len);
    CHECKF(p && len == want, "%s: missing or %zu bytes, expected %zu", path, len, want);
    if (p && len != want) {
        free(p);
        return NULL;
    }
    return p;
}

TEST(layouts_agree_with_dtype_table) {
    CHECK(sizeof(block_q4_K) == dtype_block_bytes(HEARTH_DTYPE_Q4_K));
    CHECK(sizeof(block_q5_K) == dtype_block_bytes(HEARTH_DTYPE_Q5_K));
    CHECK(sizeof(block_q6_K) == dtype_block_bytes(HEARTH_DTYPE_Q6_K));
    CHECK(sizeof(block_q8_K) == dtype_block_bytes(HEARTH_DTYPE_Q8_K));
    CHECK(sizeof(block_q5_0) == dtype_block_bytes(HEARTH_DTYPE_Q5_0));
    CHECK(sizeof(block_q5_1) == dtype_block_bytes(HEARTH_DTYPE_Q5_1));
    for (size_t k = 0; k < N_KTYPES; k++) {
        bool kq = k < 4;
        CHECK(dtype_block_size(ktypes[k].type) == (kq ? QK_K : 32));
        const kernel_traits *ref = kernel_traits_ref(ktypes[k].type);
        const kernel_traits *cpu = kernel_traits_get(ktypes[k].type);
        REQUIRE(ref && cpu);
        CHECK(ref->act_type == (kq ? HEARTH_DTYPE_Q8_K : HEARTH_DTYPE_Q8_0));
        CHECK(ref->dequantize && ref->quantize_act && ref->vec_dot);
        CHECK(cpu->dequantize && cpu->quantize_act && cpu->vec_dot);
        if (k != 3) CHECK(kernel_weight_quantizer(ktypes[k].type) == ktypes[k].quantize);
    }
}

/* Our dequantization of llama.cpp's bytes gives its floats exactly. */
TEST(dequantize_matches_llama_cpp) {
    for (size_t k = 0; k < N_KTYPES; k++) {
        char name[32];
        size_t n = ktypes[k].n;
        size_t bytes = dtype_row_bytes(ktypes[k].type, n);
        snprintf(name, sizeof name, "%s.bin", ktypes[k].name);
        uint8_t *q = read_fixture(name, bytes);
        snprintf(name, sizeof name, "%s.f32", ktypes[k].name);
        float *want = read_fixture(name, n * sizeof(float));
        float *got = malloc(n * sizeof(float));
        if (q && want && got) {
            ktypes[k].dequantize(q, got, (int64_t)n);
            size_t diff = 0, first = 0;
            for (size_t i = n; i-- > 0;) {
                if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
                    diff++;
                    first = i;
                }
            }
            printf("  %s: %zu of %zu dequantized values differ from llama.cpp's\n", ktypes[k].name,
                   diff, n);
            CHECKF(diff == 0, "%s: first difference at %zu: %.9g vs %.9g", ktypes[k].name, first,
                   (double)got[first], (double)want[first]);
            /* The dispatched kernel dequantizes the same way. */
            kernel_traits_get(ktypes[k].type)->dequantize(q, got, (int64_t)n);
            CHECKF(memcmp(got, want, n * sizeof(float)) == 0, "%s: dispatched dequantize",
                   ktypes[k].name);
        }
        free(q);
        free(want);
        free(got);
    }
}

/* Our quantizers write llama.cpp's bytes: the number of differing blocks
 * is reported and must be 0. */
TEST(quantize_matches_llama_cpp) {
    float *x = read_fixture("input.f32", FIXTURE_N * sizeof(float));
    for (size_t k = 0; x && k < N_KTYPES; k++) {
        size_t bb = dtype_block_bytes(ktypes[k].type);
        size_t nb = ktypes[k].n / dtype_block_size(ktypes[k].type);
        size_t row_bytes = dtype_row_bytes(ktypes[k].type, FIXTURE_COLS);
        char name[32];
        snprintf(name, sizeof name, "%s.bin", ktypes[k].name);
        uint8_t *want = read_fixture(name, nb * bb);
        uint8_t *got = malloc(nb * bb);
        if (want && got) {
            memset(got, 0xA5, nb * bb);
            /* Row by row, as a tensor is quantized. */
            for (size_t r = 0; r < ktypes[k].n / FIXTURE_COLS; r++) {
                ktypes[k].quantize(x + r * FIXTURE_COLS, got + r * row_bytes, FIXTURE_COLS);
            }
            size_t diff = 0;
            for (size_t b = 0; b < nb; b++) diff += memcmp(got + b * bb, want + b * bb, bb) != 0;
            printf("  %s: %zu of %zu blocks differ from llama.cpp's quantizer\n", ktypes[k].name,
                   diff, nb);
            CHECKF(diff == 0, "%s: %zu blocks differ", ktypes[k].name, diff);
        }
        free(want);
        free(got);
    }
    free(x);
}

/* Quantize -> dequantize error, normalized by the signal, on heavy-tailed
 * data, for the K-quants and (as yardsticks) Q4_0 and Q8_0. */
TEST(nmse_bounds) {
    enum { N = QK_K * 64 };
    static float x[N], y[N];
    static uint8_t q[N * 2];
    for (int i = 0; i < N; i++) x[i] = rnd_weight();
    /* Rows of very different magnitudes, a zero and a constant super-block. */
    for (int i = 0; i < QK_K * 8; i++) x[i] *= 1e-3f;
    for (int i = QK_K * 8; i < QK_K * 16; i++) x[i] *= 1e3f;
    memset(x + QK_K * 20, 0, QK_K * sizeof(float));
    for (int i = QK_K * 21; i < QK_K * 22; i++) x[i] = 0.25f;
    const struct {
        uint32_t type;
        double bound;
    } cases[] = {
        {HEARTH_DTYPE_Q4_0, 0.035},  {HEARTH_DTYPE_Q5_0, 0.0090}, {HEARTH_DTYPE_Q5_1, 0.0035},
        {HEARTH_DTYPE_Q4_K, 0.012},  {HEARTH_DTYPE_Q5_K, 0.0032}, {HEARTH_DTYPE_Q6_K, 0.0012},
        {HEARTH_DTYPE_Q8_0, 1.6e-4}, {HEARTH_DTYPE_Q8_K, 8e-4},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint32_t t = cases[c].type;
        quantize_row_fn quant =
            t == HEARTH_DTYPE_Q8_K ? quantize_row_q8_K_ref : kernel_weight_quantizer(t);
        REQUIRE(quant);
        quant(x, q, N);
        kernel_traits_ref(t)->dequantize(q, y, N);
        /* Per 256-value block, so the large rows do not drown the small. */
        double nmse = 0;
        int blocks = 0;
        for (int b = 0; b < N / QK_K; b++) {
            double err = 0, sig = 0;
            for (int i = b * QK_K; i < (b + 1) * QK_K; i++) {
                err += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
                sig += (double)x[i] * x[i];
            }
            if (sig == 0) {
                CHECKF(err == 0, "%s: zero block not reproduced", hearth_dtype_name(t));
                continue;
            }
            nmse += err / sig;
            blocks++;
        }
        nmse /= blocks;
        printf("  %-5s NMSE %.3e (bound %.1e)\n", hearth_dtype_name(t), nmse, cases[c].bound);
        CHECKF(nmse < cases[c].bound, "%s NMSE %g above %g", hearth_dtype_name(t), nmse,
               cases[c].bound);
    }
}

/* Each dot kernel (reference and dispatched) equals a double-precision dot
 * of the dequantized rows, at several lengths (whole super-blocks, which
 * the 32-element fallback types take too). */
TEST(dot_products_match_dequantized) {
    enum { MAXN = QK_K * 20 };
    static float w[MAXN], a[MAXN], wd[MAXN], ad[MAXN];
    static uint8_t wq[MAXN * 2], aq[MAXN * 4];
    const int64_t sizes[] = {QK_K, 2 * QK_K, 3 * QK_K, 7 * QK_K, 20 * QK_K};
    for (size_t k = 0; k < N_KTYPES; k++) {
        if (ktypes[k].type == HEARTH_DTYPE_Q8_K) continue;
        for (int variant = 0; variant < 2; variant++) {
            const kernel_traits *kt =
                variant ? kernel_traits_get(ktypes[k].type) : kernel_traits_ref(ktypes[k].type);
            const kernel_traits *ka =
                variant ? kernel_traits_get(kt->act_type) : kernel_traits_ref(kt->act_type);
            REQUIRE(kt && ka && ka->dequantize);
            double worst = 0;
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                int64_t n = sizes[s];
                for (int trial = 0; trial < 5; trial++) {
                    for (int64_t i = 0; i < n; i++) {
                        w[i] = rnd_weight();
                        a[i] = rnd_weight() * (trial == 4 ? 1e-4f : 1.0f);
                    }
                    if (trial == 3) memset(a, 0, QK_K * sizeof(float)); /* a zero block */
                    ktypes[k].quantize(w, wq, n);
                    kt->quantize_act(a, aq, n);
                    ktypes[k].dequantize(wq, wd, n);
                    ka->dequantize(aq, ad, n);
                    double ref = 0, mag = 0;
                    for (int64_t i = 0; i < n; i++) {
                        ref += (double)wd[i] * ad[i];
                        mag += fabs((double)wd[i] * ad[i]);
                    }
                    float got = kt->vec_dot(n, wq, aq);
                    double rel = fabs(got - ref) / (mag + 1e-30);
                    if (rel > worst) worst = rel;
                    CHECKF(rel <= 2e-6, "%s %s n=%lld: %.9g vs %.9g", ktypes[k].name,
                           variant ? "dispatched" : "reference", (long long)n, (double)got, ref);
                }
            }
            printf("  %s %-10s worst relative error %.2e\n", ktypes[k].name,
                   variant ? "dispatched" : "reference", worst);
        }
    }
}

/* Blocks of zeros, constants and values too small for an f16 scale come
 * back as zeros or the constant, never NaN. */
TEST(degenerate_blocks) {
    static float x[QK_K], y[QK_K];
    static uint8_t q[QK_K * 2];
    const float fills[] = {0.0f, 1.0f, -3.5f, 1e-9f, 1e-30f};
    for (size_t k = 0; k < N_KTYPES; k++) {
        for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
            for (int i = 0; i < QK_K; i++) x[i] = fills[f];
            ktypes[k].quantize(x, q, QK_K);
            ktypes[k].dequantize(q, y, QK_K);
            for (int i = 0; i < QK_K; i++) {
                CHECKF(isfinite(y[i]) && fabsf(y[i] - x[i]) <= 0.02f * fabsf(x[i]) + 1e-7f,
                       "%s fill %g: element %d -> %g", ktypes[k].name, (double)fills[f], i,
                       (double)y[i]);
                if (y[i] != y[i] || fabsf(y[i] - x[i]) > 0.02f * fabsf(x[i]) + 1e-7f) break;
            }
        }
    }
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    RUN(layouts_agree_with_dtype_table);
    RUN(dequantize_matches_llama_cpp);
    RUN(quantize_matches_llama_cpp);
    RUN(nmse_bounds);
    RUN(dot_products_match_dequantized);
    RUN(degenerate_blocks);
    return test_finish();
}
