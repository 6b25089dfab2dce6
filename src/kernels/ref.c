/* ref.c — scalar reference kernels for F32, F16, BF16, Q8_0 and Q4_0 (the
 * K-quants' are in kquants.c), and the reference traits table.
 *
 * These define what the numbers mean.  They follow the GGUF block formats
 * exactly, including how a block's scale is chosen when quantizing, so that
 * quantizing a float tensor here gives the same bytes as the reference
 * quantizer that wrote the files people download.
 */
#include <math.h>
#include <stddef.h>

#include "kernels/kernels.h"
#include "util/dtype.h"

/* ---------------------------------------------------------------- dequantize */

void dequantize_row_f32_ref(const void *x, float *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

void dequantize_row_f16_ref(const void *x, float *y, int64_t n) {
    const hearth_fp16 *h = x;
    for (int64_t i = 0; i < n; i++) y[i] = hearth_fp16_to_f32(h[i]);
}

void dequantize_row_bf16_ref(const void *x, float *y, int64_t n) {
    const hearth_bf16 *h = x;
    for (int64_t i = 0; i < n; i++) y[i] = hearth_bf16_to_f32(h[i]);
}

void dequantize_row_q8_0_ref(const void *x, float *y, int64_t n) {
    const block_q8_0 *b = x;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d = hearth_fp16_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; j++) y[i * QK8_0 + j] = d * (float)b[i].qs[j];
    }
}

void dequantize_row_q4_0_ref(const void *x, float *y, int64_t n) {
    const block_q4_0 *b = x;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        float d = hearth_fp16_to_f32(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[i * QK4_0 + j] = d * (float)((b[i].qs[j] & 0x0f) - 8);
            y[i * QK4_0 + j + QK4_0 / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

/* ---------------------------------------------------------------- quantize */

void quantize_row_f32_ref(const float *x, void *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

void quantize_row_f16_ref(const float *x, void *y, int64_t n) {
    hearth_fp16 *h = y;
    for (int64_t i = 0; i < n; i++) h[i] = hearth_f32_to_fp16(x[i]);
}

void quantize_row_bf16_ref(const float *x, void *y, int64_t n) {
    hearth_bf16 *h = y;
    for (int64_t i = 0; i < n; i++) h[i] = hearth_f32_to_bf16(x[i]);
}

/* Scale = max|x| / 127, quants rounded half away from zero. */
void quantize_row_q8_0_ref(const float *x, void *y, int64_t n) {
    block_q8_0 *b = y;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *xb = x + i * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = hearth_f32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) b[i].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

/* The element of largest magnitude maps to -8 exactly: scale = max / -8,
 * quants q = clamp(trunc(x / scale + 8.5), 0..15). */
void quantize_row_q4_0_ref(const float *x, void *y, int64_t n) {
    block_q4_0 *b = y;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *xb = x + i * QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++) {
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = hearth_f32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = (int)(int8_t)(xb[j] * id + 8.5f);
            int q1 = (int)(int8_t)(xb[j + QK4_0 / 2] * id + 8.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* ---------------------------------------------------------------- dot products */

/* Plain-float dots accumulate in double: the reference is the accurate answer. */
float vec_dot_f32_f32_ref(int64_t n, const void *w, const void *a) {
    const float *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * (double)y[i];
    return (float)sum;
}

float vec_dot_f16_f16_ref(int64_t n, const void *w, const void *a) {
    const hearth_fp16 *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        sum += (double)hearth_fp16_to_f32(x[i]) * (double)hearth_fp16_to_f32(y[i]);
    }
    return (float)sum;
}

float vec_dot_bf16_bf16_ref(int64_t n, const void *w, const void *a) {
    const hearth_bf16 *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        sum += (double)hearth_bf16_to_f32(x[i]) * (double)hearth_bf16_to_f32(y[i]);
    }
    return (float)sum;
}

/* Integer dot per block, scaled by the product of the two block scales. */
float vec_dot_q8_0_q8_0_ref(int64_t n, const void *w, const void *a) {
    const block_q8_0 *x = w, *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int32_t si = 0;
        for (int j = 0; j < QK8_0; j++) si += (int32_t)x[i].qs[j] * (int32_t)y[i].qs[j];
        sum += (float)si * (hearth_fp16_to_f32(x[i].d) * hearth_fp16_to_f32(y[i].d));
    }
    return sum;
}

float vec_dot_q4_0_q8_0_ref(int64_t n, const void *w, const void *a) {
    const block_q4_0 *x = w;
    const block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int32_t si = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            si += ((x[i].qs[j] & 0x0f) - 8) * (int32_t)y[i].qs[j];
            si += ((x[i].qs[j] >> 4) - 8) * (int32_t)y[i].qs[j + QK4_0 / 2];
        }
        sum += (float)si * (hearth_fp16_to_f32(x[i].d) * hearth_fp16_to_f32(y[i].d));
    }
    return sum;
}

/* ---------------------------------------------------------------- axpy */

void axpy_f32_ref(int64_t n, float a, const void *x, float *y) {
    const float *v = x;
    for (int64_t i = 0; i < n; i++) y[i] += a * v[i];
}

void axpy_f16_ref(int64_t n, float a, const void *x, float *y) {
    const hearth_fp16 *v = x;
    for (int64_t i = 0; i < n; i++) y[i] += a * hearth_fp16_to_f32(v[i]);
}

/* ---------------------------------------------------------------- attention */

void attn_head_f16_ref(const float *q, const void *k, size_t k_stride, const void *v,
                       size_t v_stride, int hd, int hdv, int n_pos, float scale, float *scores,
                       uint16_t *qh, float *out) {
    quantize_row_f16_ref(q, qh, hd);
    float max = -INFINITY;
    for (int p = 0; p < n_pos; p++) {
        float s = vec_dot_f16_f16_ref(hd, (const uint8_t *)k + (size_t)p * k_stride, qh) * scale;
        scores[p] = s;
        if (s > max) max = s;
    }
    double sum = 0.0;
    for (int p = 0; p < n_pos; p++) {
        scores[p] = expf(scores[p] - max);
        sum += scores[p];
    }
    float inv = (float)(1.0 / sum);
    memset(out, 0, (size_t)hdv * sizeof *out);
    for (int p = 0; p < n_pos; p++) {
        float w = hearth_fp16_to_f32(hearth_f32_to_fp16(scores[p] * inv));
        axpy_f16_ref(hdv, w, (const uint8_t *)v + (size_t)p * v_stride, out);
    }
}

int32_t argmax_f32_ref(const float *x, int32_t n) {
    int32_t best = 0;
    float top = x[0];
    for (int32_t i = 1; i < n; i++) {
        if (x[i] > top) {
            top = x[i];
            best = i;
        }
    }
    return best;
}

/* ---------------------------------------------------------------- traits */

static const kernel_traits traits_table[] = {
    {HEARTH_DTYPE_F32, HEARTH_DTYPE_F32, dequantize_row_f32_ref, quantize_row_f32_ref,
     vec_dot_f32_f32_ref, NULL, axpy_f32_ref, false},
    {HEARTH_DTYPE_F16, HEARTH_DTYPE_F16, dequantize_row_f16_ref, quantize_row_f16_ref,
     vec_dot_f16_f16_ref, NULL, axpy_f16_ref, false},
    {HEARTH_DTYPE_BF16, HEARTH_DTYPE_BF16, dequantize_row_bf16_ref, quantize_row_bf16_ref,
     vec_dot_bf16_bf16_ref, NULL, NULL, false},
    {HEARTH_DTYPE_Q8_0, HEARTH_DTYPE_Q8_0, dequantize_row_q8_0_ref, quantize_row_q8_0_ref,
     vec_dot_q8_0_q8_0_ref, NULL, NULL, false},
    {HEARTH_DTYPE_Q4_0, HEARTH_DTYPE_Q8_0, dequantize_row_q4_0_ref, quantize_row_q8_0_ref,
     vec_dot_q4_0_q8_0_ref, NULL, NULL, false},
    {.type = HEARTH_DTYPE_Q5_0,
     .act_type = HEARTH_DTYPE_Q8_0,
     .dequantize = dequantize_row_q5_0_ref,
     .quantize_act = quantize_row_q8_0_ref,
     .vec_dot = vec_dot_q5_0_q8_0_ref},
    {.type = HEARTH_DTYPE_Q5_1,
     .act_type = HEARTH_DTYPE_Q8_0,
     .dequantize = dequantize_row_q5_1_ref,
     .quantize_act = quantize_row_q8_0_ref,
     .vec_dot = vec_dot_q5_1_q8_0_ref},
    {.type = HEARTH_DTYPE_Q4_K,
     .act_type = HEARTH_DTYPE_Q8_K,
     .dequantize = dequantize_row_q4_K_ref,
     .quantize_act = quantize_row_q8_K_ref,
     .vec_dot = vec_dot_q4_K_q8_K_ref},
    {.type = HEARTH_DTYPE_Q5_K,
     .act_type = HEARTH_DTYPE_Q8_K,
     .dequantize = dequantize_row_q5_K_ref,
     .quantize_act = quantize_row_q8_K_ref,
     .vec_dot = vec_dot_q5_K_q8_K_ref},
    {.type = HEARTH_DTYPE_Q6_K,
     .act_type = HEARTH_DTYPE_Q8_K,
     .dequantize = dequantize_row_q6_K_ref,
     .quantize_act = quantize_row_q8_K_ref,
     .vec_dot = vec_dot_q6_K_q8_K_ref},
    /* The K-quants' activation type (also valid, if unusual, as weights). */
    {.type = HEARTH_DTYPE_Q8_K,
     .act_type = HEARTH_DTYPE_Q8_K,
     .dequantize = dequantize_row_q8_K_ref,
     .quantize_act = quantize_row_q8_K_ref,
     .vec_dot = vec_dot_q8_K_q8_K_ref},
};

quantize_row_fn kernel_weight_quantizer(uint32_t type) {
    switch (type) {
    case HEARTH_DTYPE_F32: return quantize_row_f32_ref;
    case HEARTH_DTYPE_F16: return quantize_row_f16_ref;
    case HEARTH_DTYPE_BF16: return quantize_row_bf16_ref;
    case HEARTH_DTYPE_Q8_0: return quantize_row_q8_0_ref;
    case HEARTH_DTYPE_Q4_0: return quantize_row_q4_0_ref;
    case HEARTH_DTYPE_Q5_0: return quantize_row_q5_0_ref;
    case HEARTH_DTYPE_Q5_1: return quantize_row_q5_1_ref;
    case HEARTH_DTYPE_Q4_K: return quantize_row_q4_K_ref;
    case HEARTH_DTYPE_Q5_K: return quantize_row_q5_K_ref;
    case HEARTH_DTYPE_Q6_K: return quantize_row_q6_K_ref;
    default: return NULL;
    }
}

const kernel_traits *kernel_traits_ref(uint32_t type) {
    for (size_t i = 0; i < sizeof traits_table / sizeof traits_table[0]; i++) {
        if (traits_table[i].type == type) return &traits_table[i];
    }
    return NULL;
}

const kernel_traits *kernel_traits_ref_table(size_t *n) {
    *n = sizeof traits_table / sizeof traits_table[0];
    return traits_table;
}
