/* kernels.h — dequantization, quantization and dot products (private).
 *
 * Reference kernels (suffix _ref) are plain scalar C: the yardstick the SIMD
 * and CUDA variants are tested against.  A matrix-vector product multiplies
 * weight rows of some type by an activation row that was first converted to
 * the weight type's "activation type" (Q8_0 for the 4- and 8-bit quants,
 * Q8_K for the K-quants, F16 for F16, BF16 for BF16, F32 for F32), so the
 * inner loop is a dot product of two rows in packed form.
 */
#ifndef HEARTH_KERNELS_H
#define HEARTH_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/quant.h"

/* y[0..n) = the n elements of row x (of the given type) as floats.
 * n must be a multiple of the type's block size. */
typedef void (*dequantize_row_fn)(const void *x, float *y, int64_t n);
/* Packs n floats x into row y of some type (n a multiple of its block size). */
typedef void (*quantize_row_fn)(const float *x, void *y, int64_t n);
/* Dot product of weight row w and activation row a, n elements each. */
typedef float (*vec_dot_fn)(int64_t n, const void *w, const void *a);
/* y[0..n) += a * x[0..n), x a row of some type (attention's value sums). */
typedef void (*axpy_fn)(int64_t n, float a, const void *x, float *y);
/* A tile of dot products: y[c * y_stride + r] = dot(weight row r, activation
 * row c) for r < nr <= 4 weight rows w_stride bytes apart and c < nc <= 4
 * activation rows a_stride bytes apart, n elements each. */
typedef void (*gemm_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                        size_t a_stride, int nc, float *y, size_t y_stride);

typedef struct kernel_traits {
    uint32_t type;     /* hearth_dtype of the weights */
    uint32_t act_type; /* hearth_dtype activations are converted to */
    dequantize_row_fn dequantize;
    quantize_row_fn quantize_act; /* float -> act_type */
    vec_dot_fn vec_dot;           /* (type row) . (act_type row) */
    gemm_fn gemm;                 /* tiles for prefill; NULL: use vec_dot */
    axpy_fn axpy;                 /* y += a * row (F32 and F16 only, for attention) */
    bool gemm_decodes;            /* gemm with one token streams a large matrix at least as fast as
                                     vec_dot row by row: decode uses it too */
} kernel_traits;

/* Attention of one query head over n_pos cached positions of an F16 KV
 * cache: scores = (f16(q) . k_p) * scale, softmax, out = sum of
 * f16(weight_p) * v_p.  k and v point at position 0 of the head; rows are
 * k_stride / v_stride bytes apart.  scores (n_pos floats) and qh (hd
 * halves) are scratch.  out has hdv floats. */
typedef void (*attn_head_f16_fn)(const float *q, const void *k, size_t k_stride, const void *v,
                                 size_t v_stride, int hd, int hdv, int n_pos, float scale,
                                 float *scores, uint16_t *qh, float *out);
void attn_head_f16_ref(const float *q, const void *k, size_t k_stride, const void *v,
                       size_t v_stride, int hd, int hdv, int n_pos, float scale, float *scores,
                       uint16_t *qh, float *out);
/* The fastest attention kernel this CPU has. */
attn_head_f16_fn kernel_attn_head_f16(void);

/* The index of the first largest of x[0..n) (n >= 1), as a scan keeping
 * the first value greater than every one before it: NaNs are never
 * greater, and a NaN x[0] gives 0.  Greedy sampling over a vocabulary. */
typedef int32_t (*argmax_fn)(const float *x, int32_t n);
int32_t argmax_f32_ref(const float *x, int32_t n);
/* The fastest argmax this CPU has. */
argmax_fn kernel_argmax(void);

/* The fastest kernels this CPU has for weights of the given type, or NULL
 * when hearth cannot multiply by that type. */
const kernel_traits *kernel_traits_get(uint32_t type);
/* Repacking at load: a weight type may have a layout this CPU multiplies
 * faster (Q4_0 and Q8_0 with AVX-512 VBMI: each row's quants, then its
 * scales).
 * kernel_traits_repacked gives the kernels for that layout, or NULL when
 * there is none; kernel_repack_row rewrites one row of n elements in place
 * into it, in the same bytes, and returns false (leaving the row as it
 * was) when it cannot.  A repacked weight keeps its type; only its kernels
 * change, dequantize included. */
const kernel_traits *kernel_traits_repacked(uint32_t type);
bool kernel_repack_row(uint32_t type, void *row, int64_t n);
/* The scalar reference kernels for the type (NULL when none). */
const kernel_traits *kernel_traits_ref(uint32_t type);
/* The whole reference table (for the dispatcher). */
const kernel_traits *kernel_traits_ref_table(size_t *n);

/* ---- reference kernels ---- */
void dequantize_row_f32_ref(const void *x, float *y, int64_t n);
void dequantize_row_f16_ref(const void *x, float *y, int64_t n);
void dequantize_row_bf16_ref(const void *x, float *y, int64_t n);
void dequantize_row_q8_0_ref(const void *x, float *y, int64_t n);
void dequantize_row_q4_0_ref(const void *x, float *y, int64_t n);

void quantize_row_f32_ref(const float *x, void *y, int64_t n);
void quantize_row_f16_ref(const float *x, void *y, int64_t n);
void quantize_row_bf16_ref(const float *x, void *y, int64_t n);
void quantize_row_q8_0_ref(const float *x, void *y, int64_t n);
void quantize_row_q4_0_ref(const float *x, void *y, int64_t n);

/* The quantizer that writes weights of type: the reference one, which
 * gives the bytes llama.cpp's quantizer gives (for the K-quants, its plain
 * quantizer without an importance matrix).  NULL for a type hearth cannot
 * write.  Rows must be whole blocks of the type. */
quantize_row_fn kernel_weight_quantizer(uint32_t type);

/* ---- Q5_0, Q5_1 (q5.c): the K-quant mixes' fallbacks ---- */
void dequantize_row_q5_0_ref(const void *x, float *y, int64_t n);
void dequantize_row_q5_1_ref(const void *x, float *y, int64_t n);
void quantize_row_q5_0_ref(const float *x, void *y, int64_t n);
void quantize_row_q5_1_ref(const float *x, void *y, int64_t n);
float vec_dot_q5_0_q8_0_ref(int64_t n, const void *w, const void *a);
float vec_dot_q5_1_q8_0_ref(int64_t n, const void *w, const void *a);

/* ---- K-quants (kquants.c) ---- */
void dequantize_row_q4_K_ref(const void *x, float *y, int64_t n);
void dequantize_row_q5_K_ref(const void *x, float *y, int64_t n);
void dequantize_row_q6_K_ref(const void *x, float *y, int64_t n);
void dequantize_row_q8_K_ref(const void *x, float *y, int64_t n);
void quantize_row_q4_K_ref(const float *x, void *y, int64_t n);
void quantize_row_q5_K_ref(const float *x, void *y, int64_t n);
void quantize_row_q6_K_ref(const float *x, void *y, int64_t n);
void quantize_row_q8_K_ref(const float *x, void *y, int64_t n);
float vec_dot_q4_K_q8_K_ref(int64_t n, const void *w, const void *a);
float vec_dot_q5_K_q8_K_ref(int64_t n, const void *w, const void *a);
float vec_dot_q6_K_q8_K_ref(int64_t n, const void *w, const void *a);
float vec_dot_q8_K_q8_K_ref(int64_t n, const void *w, const void *a);

float vec_dot_f32_f32_ref(int64_t n, const void *w, const void *a);
float vec_dot_f16_f16_ref(int64_t n, const void *w, const void *a);
float vec_dot_bf16_bf16_ref(int64_t n, const void *w, const void *a);
float vec_dot_q8_0_q8_0_ref(int64_t n, const void *w, const void *a);
float vec_dot_q4_0_q8_0_ref(int64_t n, const void *w, const void *a);

void axpy_f32_ref(int64_t n, float a, const void *x, float *y);
void axpy_f16_ref(int64_t n, float a, const void *x, float *y);

#endif
