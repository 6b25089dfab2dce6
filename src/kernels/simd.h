/* simd.h — the x86 SIMD kernels and the internal activation format they use
 * (private).
 *
 * Integer dot products on x86 multiply unsigned by signed bytes (AVX2
 * vpmaddubsw, AVX-512 VNNI vpdpbusd).  Q4_0 nibbles are unsigned already and
 * Q8_0 weights become unsigned by adding 128; the difference that offset
 * makes is the activation block's sum times the offset, so activations for
 * these kernels are quantized to block_q8a, which carries its scale as a
 * float and the scaled sum of its quants.
 */
#ifndef HEARTH_KERNELS_SIMD_H
#define HEARTH_KERNELS_SIMD_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* Internal activation types (not GGUF types, so numbered apart). */
enum {
    KERNEL_ACT_Q8A = 1000, /* block_q8a rows */
};

#define QK8A 32
typedef struct block_q8a {
    float d;         /* scale: x ~ d * q */
    float s;         /* d * sum(q), for the offset correction */
    int8_t qs[QK8A]; /* quants in [-127, 127] */
} block_q8a;
HEARTH_STATIC_ASSERT(sizeof(block_q8a) == 40, "block_q8a must be 40 bytes");

/* Bytes of a row of n elements of type, internal activation types included. */
uint64_t kernel_row_bytes(uint32_t type, uint64_t n);

void quantize_row_q8a_ref(const float *x, void *y, int64_t n);
void dequantize_row_q8a_ref(const void *x, float *y, int64_t n);

#if defined(__x86_64__)
/* AVX2 (with FMA and F16C) */
void quantize_row_q8a_avx2(const float *x, void *y, int64_t n);
float vec_dot_q4_0_q8a_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q8_0_q8a_avx2(int64_t n, const void *w, const void *a);
float vec_dot_f32_f32_avx2(int64_t n, const void *w, const void *a);
void quantize_row_f16_avx2(const float *x, void *y, int64_t n);
float vec_dot_f16_f16_avx2(int64_t n, const void *w, const void *a);
float vec_dot_bf16_bf16_avx2(int64_t n, const void *w, const void *a);
/* AVX-512 (F, BW, VL, DQ) and VNNI / BF16 */
void quantize_row_q8a_avx512(const float *x, void *y, int64_t n);
float vec_dot_q4_0_q8a_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q8_0_q8a_avx512(int64_t n, const void *w, const void *a);
float vec_dot_f32_f32_avx512(int64_t n, const void *w, const void *a);
float vec_dot_f16_f16_avx512(int64_t n, const void *w, const void *a);
void quantize_row_bf16_avx512(const float *x, void *y, int64_t n);
float vec_dot_bf16_bf16_avx512(int64_t n, const void *w, const void *a);
void gemm_q4_0_q8a_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                          size_t a_stride, int nc, float *y, size_t y_stride);
void gemm_q8_0_q8a_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                          size_t a_stride, int nc, float *y, size_t y_stride);
#endif

#endif
