/* kquants.c — scalar reference kernels for the K-quants Q4_K, Q5_K and Q6_K,
 * and for Q8_K, the activation format their dot products use.
 *
 * The quantizers are the plain ones of the reference implementation (no
 * importance matrix): they choose every scale and min with the same search
 * and the same single-precision arithmetic, in the same order, so that
 * quantizing a tensor here writes the bytes llama-quantize writes, and
 * files move between the two tools unchanged.  Every float expression below
 * is evaluated as written (C11 without contraction), which is what makes
 * that exact; do not "simplify" them.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/kernels.h"

/* Groups whose largest magnitude is below this are all zero. */
#define GROUP_EPS 1e-15f

/* Rounds to the nearest integer, ties to even: adding 1.5 * 2^23 pushes the
 * fraction out of the mantissa in the default rounding mode; the integer
 * is then read from the low mantissa bits.  Valid for |x| < 2^22, which
 * every caller's value is (for finite inputs). */
static inline int round_even(float x) {
    float biased = x + 12582912.0f;
    uint32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    return (int)(bits & 0x007fffffu) - 0x00400000;
}

static inline int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* ---------------------------------------------------------------- scale search */

/* Quantizes the n values x to L in [0, nmax] as x ~ scale * L - min (min
 * >= 0 is returned in *min_out), minimizing the weighted squared error
 * over a sweep of nstep + 1 candidate ranges around the plain min/max one.
 * Returns the scale.  Laux is scratch of n bytes. */
static float fit_scale_min(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                           float *min_out, uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float lo = x[0], hi = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *min_out = -lo;
        return 0.0f;
    }
    float iscale = nmax / (hi - lo);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clamp_int(round_even(iscale * (x[i] - lo)), 0, nmax);
        float diff = scale * L[i] + lo - x[i];
        best_err += weights[i] * (diff * diff);
    }
    for (int step = 0; step <= nstep; step++) {
        iscale = (rmin + rdelta * step + nmax) / (hi - lo);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(round_even(iscale * (x[i] - lo)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float wl = weights[i] * l;
            sum_l += wl;
            sum_l2 += wl * l;
            sum_xl += wl * x[i];
        }
        /* Least-squares scale and offset for these levels. */
        float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det > 0) {
            float s = (sum_w * sum_xl - sum_x * sum_l) / det;
            float m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if (m > 0) {
                m = 0;
                s = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float diff = s * Laux[i] + m - x[i];
                err += weights[i] * (diff * diff);
            }
            if (err < best_err) {
                memcpy(L, Laux, (size_t)n);
                best_err = err;
                scale = s;
                lo = m;
            }
        }
    }
    *min_out = -lo;
    return scale;
}

/* Quantizes n values x to L in [0, 2 nmax) as x ~ scale * (L - nmax),
 * symmetric, weighting each value's squared error by x^2; tries 18 scales
 * near the one that maps the largest magnitude to -nmax.  Returns the
 * scale (0 for an all-zero group). */
static float fit_scale_symmetric(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sum_lx = 0, sum_l2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sum_lx += w * x[i] * l;
        sum_l2 += w * l * l;
    }
    float scale = sum_l2 ? sum_lx / sum_l2 : 0.0f;
    float best = scale * sum_lx;
    for (int step = -9; step <= 9; step++) {
        if (step == 0) continue;
        iscale = -(nmax + 0.1f * step) / max;
        sum_lx = sum_l2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sum_lx += w * x[i] * l;
            sum_l2 += w * l * l;
        }
        /* Better when sum_lx^2 / sum_l2 (the error it removes) is larger. */
        if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
            for (int i = 0; i < n; i++) {
                L[i] = (int8_t)(nmax + clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1));
            }
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    return scale;
}

/* ---------------------------------------------------------------- Q4_K / Q5_K scales */

/* The 6-bit scale and min of sub-block j from the 12 packed bytes. */
static inline void unpack_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static void pack_scale_min(int j, uint8_t ls, uint8_t lm, uint8_t *s) {
    if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 0x0f) | ((lm & 0x0f) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* One super-block of Q4_K or Q5_K (nmax 15 or 31): fits each 32-weight
 * sub-block, quantizes the 8 scales and 8 mins to 6 bits against the
 * largest of each, then requantizes every weight with the scale and min it
 * will actually be read back with.  Writes d, dmin, scales and the levels
 * L[256]. */
static void quantize_superblock_scale_min(const float *x, int nmax, float rmin, float rdelta,
                                          int nstep, hearth_fp16 *d_out, hearth_fp16 *dmin_out,
                                          uint8_t *scales_out, uint8_t *L) {
    float scales[QK_K / 32], mins[QK_K / 32], weights[32];
    uint8_t Laux[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        const float *xj = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xj[l] * xj[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xj[l]);
        scales[j] =
            fit_scale_min(32, nmax, xj, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(scales_out, 0, K_SCALE_SIZE);
    for (int j = 0; j < QK_K / 32; j++) {
        /* A (rare) negative fit wraps through uint8_t and saturates at 63. */
        uint8_t ls = (uint8_t)round_even(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)round_even(inv_min * mins[j]);
        pack_scale_min(j, ls > 63 ? 63 : ls, lm > 63 ? 63 : lm, scales_out);
    }
    *d_out = hearth_f32_to_fp16(max_scale / 63.f);
    *dmin_out = hearth_f32_to_fp16(max_min / 63.f);
    float d = hearth_fp16_to_f32(*d_out), dmin = hearth_fp16_to_f32(*dmin_out);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        unpack_scale_min(j, scales_out, &sc, &m);
        float dj = d * sc;
        if (dj == 0.0f) continue; /* keep the fit's levels */
        float mj = dmin * m;
        for (int l = 0; l < 32; l++) {
            L[32 * j + l] = (uint8_t)clamp_int(round_even((x[32 * j + l] + mj) / dj), 0, nmax);
        }
    }
}

/* ---------------------------------------------------------------- quantize */

void quantize_row_q4_K_ref(const float *x, void *y, int64_t n) {
    block_q4_K *b = y;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        quantize_superblock_scale_min(x, 15, -1.0f, 0.1f, 20, &b[i].d, &b[i].dmin, b[i].scales, L);
        for (int c = 0; c < QK_K / 64; c++) {
            for (int l = 0; l < 32; l++) {
                b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
            }
        }
    }
}

void quantize_row_q5_K_ref(const float *x, void *y, int64_t n) {
    block_q5_K *b = y;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        quantize_superblock_scale_min(x, 31, -0.5f, 0.1f, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < QK_K / 64; c++) {
            for (int l = 0; l < 32; l++) {
                uint8_t lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                b[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
                b[i].qs[32 * c + l] = (uint8_t)((lo & 0x0f) | ((hi & 0x0f) << 4));
            }
        }
    }
}

void quantize_row_q6_K_ref(const float *x, void *y, int64_t n) {
    block_q6_K *b = y;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_abs = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = fit_scale_symmetric(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs) {
                max_abs = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_abs < GROUP_EPS) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        /* The largest sub-block scale maps to -128 (the sign is the scale's). */
        float iscale = -128.f / max_scale;
        b[i].d = hearth_f32_to_fp16(1 / iscale);
        float d = hearth_fp16_to_f32(b[i].d);
        for (int j = 0; j < QK_K / 16; j++) {
            int s = round_even(iscale * scales[j]);
            b[i].scales[j] = (int8_t)(s > 127 ? 127 : s);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            float dj = d * b[i].scales[j];
            if (dj == 0.0f) continue;
            for (int l = 0; l < 16; l++) {
                L[16 * j + l] = (int8_t)(clamp_int(round_even(x[16 * j + l] / dj), -32, 31) + 32);
            }
        }
        for (int h = 0; h < QK_K / 128; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0x0f) | ((Lh[64 + l] & 0x0f) << 4));
                ql[32 + l] = (uint8_t)((Lh[32 + l] & 0x0f) | ((Lh[96 + l] & 0x0f) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[32 + l] >> 4) << 2) |
                                  ((Lh[64 + l] >> 4) << 4) | ((Lh[96 + l] >> 4) << 6));
            }
        }
    }
}

/* Activations: scale = max / -127 of the signed largest magnitude, so that
 * element maps to -127 exactly; quants rounded to nearest even. */
void quantize_row_q8_K_ref(const float *x, void *y, int64_t n) {
    block_q8_K *b = y;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = round_even(iscale * x[j]);
            b[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += b[i].qs[16 * j + l];
            b[i].bsums[j] = (int16_t)sum;
        }
        b[i].d = 1 / iscale;
    }
}

/* ---------------------------------------------------------------- dequantize */

void dequantize_row_q4_K_ref(const void *x, float *y, int64_t n) {
    const block_q4_K *b = x;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = hearth_fp16_to_f32(b[i].d), dmin = hearth_fp16_to_f32(b[i].dmin);
        for (int c = 0; c < QK_K / 64; c++, y += 64) {
            uint8_t sc, m;
            unpack_scale_min(2 * c, b[i].scales, &sc, &m);
            float d0 = d * sc, m0 = dmin * m;
            unpack_scale_min(2 * c + 1, b[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            const uint8_t *q = b[i].qs + 32 * c;
            for (int l = 0; l < 32; l++) y[l] = d0 * (q[l] & 0x0f) - m0;
            for (int l = 0; l < 32; l++) y[32 + l] = d1 * (q[l] >> 4) - m1;
        }
    }
}

void dequantize_row_q5_K_ref(const void *x, float *y, int64_t n) {
    const block_q5_K *b = x;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = hearth_fp16_to_f32(b[i].d), dmin = hearth_fp16_to_f32(b[i].dmin);
        for (int c = 0; c < QK_K / 64; c++, y += 64) {
            uint8_t sc, m;
            unpack_scale_min(2 * c, b[i].scales, &sc, &m);
            float d0 = d * sc, m0 = dmin * m;
            unpack_scale_min(2 * c + 1, b[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            const uint8_t *q = b[i].qs + 32 * c, *qh = b[i].qh;
            for (int l = 0; l < 32; l++) {
                y[l] = d0 * ((q[l] & 0x0f) | (((qh[l] >> (2 * c)) & 1) << 4)) - m0;
            }
            for (int l = 0; l < 32; l++) {
                y[32 + l] = d1 * ((q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4)) - m1;
            }
        }
    }
}

/* The 6-bit quant k (0..3) of chunk position l, minus the offset 32. */
static inline int q6_value(const uint8_t *ql, const uint8_t *qh, int k, int l) {
    int lo = (k & 1 ? ql[32 + l] : ql[l]) >> (k & 2 ? 4 : 0) & 0x0f;
    int hi = (qh[l] >> (2 * k)) & 3;
    return (lo | (hi << 4)) - 32;
}

void dequantize_row_q6_K_ref(const void *x, float *y, int64_t n) {
    const block_q6_K *b = x;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = hearth_fp16_to_f32(b[i].d);
        for (int h = 0; h < QK_K / 128; h++, y += 128) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            for (int k = 0; k < 4; k++) {
                for (int l = 0; l < 32; l++) {
                    /* (d * scale) * q: the order fixes the rounding. */
                    y[32 * k + l] = d * sc[2 * k + l / 16] * q6_value(ql, qh, k, l);
                }
            }
        }
    }
}

void dequantize_row_q8_K_ref(const void *x, float *y, int64_t n) {
    const block_q8_K *b = x;
    for (int64_t i = 0; i < n / QK_K; i++) {
        for (int j = 0; j < QK_K; j++) y[i * QK_K + j] = b[i].d * b[i].qs[j];
    }
}

/* ---------------------------------------------------------------- dot products */

/* Integer sums per sub-block times the integer scale, summed over the
 * super-block; the mins come from the activation block sums.  One float
 * multiply per super-block for each part. */
float vec_dot_q4_K_q8_K_ref(int64_t n, const void *w, const void *a) {
    const block_q4_K *x = w;
    const block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t sum_q = 0, sum_m = 0;
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t sc, m;
            unpack_scale_min(j, x[i].scales, &sc, &m);
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int8_t *yq = y[i].qs + 32 * j;
            int32_t s = 0;
            for (int l = 0; l < 32; l++) s += (j & 1 ? q[l] >> 4 : q[l] & 0x0f) * yq[l];
            sum_q += sc * s;
            sum_m += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sum += y[i].d * (hearth_fp16_to_f32(x[i].d) * (float)sum_q -
                         hearth_fp16_to_f32(x[i].dmin) * (float)sum_m);
    }
    return sum;
}

float vec_dot_q5_K_q8_K_ref(int64_t n, const void *w, const void *a) {
    const block_q5_K *x = w;
    const block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t sum_q = 0, sum_m = 0;
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t sc, m;
            unpack_scale_min(j, x[i].scales, &sc, &m);
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int8_t *yq = y[i].qs + 32 * j;
            int32_t s = 0;
            for (int l = 0; l < 32; l++) {
                int v = (j & 1 ? q[l] >> 4 : q[l] & 0x0f) | (((x[i].qh[l] >> j) & 1) << 4);
                s += v * yq[l];
            }
            sum_q += sc * s;
            sum_m += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sum += y[i].d * (hearth_fp16_to_f32(x[i].d) * (float)sum_q -
                         hearth_fp16_to_f32(x[i].dmin) * (float)sum_m);
    }
    return sum;
}

float vec_dot_q6_K_q8_K_ref(int64_t n, const void *w, const void *a) {
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t sum_q = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            int h = j / 8, k = (j % 8) / 2, l0 = (j % 2) * 16;
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *yq = y[i].qs + 16 * j;
            int32_t s = 0;
            for (int l = 0; l < 16; l++) s += q6_value(ql, qh, k, l0 + l) * yq[l];
            sum_q += x[i].scales[j] * s;
        }
        sum += y[i].d * hearth_fp16_to_f32(x[i].d) * (float)sum_q;
    }
    return sum;
}

/* Q8_K weights (no file writer produces them, but the format is valid). */
float vec_dot_q8_K_q8_K_ref(int64_t n, const void *w, const void *a) {
    const block_q8_K *x = w, *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t s = 0;
        for (int j = 0; j < QK_K; j++) s += x[i].qs[j] * y[i].qs[j];
        sum += x[i].d * y[i].d * (float)s;
    }
    return sum;
}
