/* q5.c — scalar reference kernels for Q5_0 and Q5_1.
 *
 * These two 32-element formats matter because llama.cpp's K-quant mixes
 * fall back to them for matrices whose rows are not whole 256-element
 * super-blocks (Q4_K -> Q5_0, Q5_K -> Q5_1): files people download hold
 * them, and `hearth quantize` writes them in the same places.  As in
 * ref.c, the quantizers reproduce the reference implementation's bytes.
 * Activations are Q8_0; Q5_1's offset meets the sum of each activation
 * block's quants.
 */
#include <float.h>
#include <math.h>

#include "kernels/kernels.h"

/* Quant j (0..31) of a Q5_0/Q5_1 block, 0..31. */
static inline int q5_value(const uint8_t *qs, const uint8_t *qh4, int j) {
    uint32_t qh =
        (uint32_t)qh4[0] | (uint32_t)qh4[1] << 8 | (uint32_t)qh4[2] << 16 | (uint32_t)qh4[3] << 24;
    int lo = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
    return lo | (int)((qh >> j) & 1) << 4;
}

/* Packs 32 quants (0..31) into qs and qh. */
static void q5_pack(const uint8_t *q, uint8_t *qs, uint8_t *qh4) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
        qh |= (uint32_t)(q[j] >> 4) << j | (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh4[k] = (uint8_t)(qh >> (8 * k));
}

/* The element of largest magnitude maps to 0 (-16 after the offset):
 * scale = max / -16, q = min(31, trunc(x / scale + 16.5)). */
void quantize_row_q5_0_ref(const float *x, void *y, int64_t n) {
    block_q5_0 *b = y;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK5_0; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        float d = max / -16, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = hearth_f32_to_fp16(d);
        uint8_t q[QK5_0];
        for (int j = 0; j < QK5_0; j++) {
            int v = (int8_t)(x[j] * id + 16.5f);
            q[j] = (uint8_t)(v > 31 ? 31 : v);
        }
        q5_pack(q, b[i].qs, b[i].qh);
    }
}

/* Offset = the block minimum, scale = range / 31, q = trunc((x - m) / d + 0.5). */
void quantize_row_q5_1_ref(const float *x, void *y, int64_t n) {
    block_q5_1 *b = y;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK5_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        float d = (max - min) / 31, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = hearth_f32_to_fp16(d);
        b[i].m = hearth_f32_to_fp16(min);
        uint8_t q[QK5_1];
        for (int j = 0; j < QK5_1; j++) q[j] = (uint8_t)((x[j] - min) * id + 0.5f);
        q5_pack(q, b[i].qs, b[i].qh);
    }
}

void dequantize_row_q5_0_ref(const void *x, float *y, int64_t n) {
    const block_q5_0 *b = x;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        float d = hearth_fp16_to_f32(b[i].d);
        for (int j = 0; j < QK5_0; j++) y[i * QK5_0 + j] = (q5_value(b[i].qs, b[i].qh, j) - 16) * d;
    }
}

void dequantize_row_q5_1_ref(const void *x, float *y, int64_t n) {
    const block_q5_1 *b = x;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        float d = hearth_fp16_to_f32(b[i].d), m = hearth_fp16_to_f32(b[i].m);
        for (int j = 0; j < QK5_1; j++) y[i * QK5_1 + j] = q5_value(b[i].qs, b[i].qh, j) * d + m;
    }
}

float vec_dot_q5_0_q8_0_ref(int64_t n, const void *w, const void *a) {
    const block_q5_0 *x = w;
    const block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        int32_t s = 0;
        for (int j = 0; j < QK5_0; j++) s += (q5_value(x[i].qs, x[i].qh, j) - 16) * y[i].qs[j];
        sum += (float)s * (hearth_fp16_to_f32(x[i].d) * hearth_fp16_to_f32(y[i].d));
    }
    return sum;
}

float vec_dot_q5_1_q8_0_ref(int64_t n, const void *w, const void *a) {
    const block_q5_1 *x = w;
    const block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        int32_t s = 0, sa = 0;
        for (int j = 0; j < QK5_1; j++) {
            s += q5_value(x[i].qs, x[i].qh, j) * y[i].qs[j];
            sa += y[i].qs[j];
        }
        float da = hearth_fp16_to_f32(y[i].d);
        sum += (float)s * (hearth_fp16_to_f32(x[i].d) * da) +
               (float)sa * (hearth_fp16_to_f32(x[i].m) * da);
    }
    return sum;
}
