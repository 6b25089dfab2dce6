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
    KERNEL_ACT_Q8A = 1000,       /* block_q8a rows */
    KERNEL_ACT_Q8X4_O8 = 1001,   /* block_q8x4 rows, correction for offset 8 (Q4_0 weights) */
    KERNEL_ACT_Q8X4_O128 = 1002, /* block_q8x4 rows, correction for offset 128 (Q8_0 weights) */
    KERNEL_Q4_0R = 1003,         /* Q4_0 rows repacked: all quants, then all scales */
    KERNEL_Q8_0R = 1004          /* Q8_0 rows repacked: quants in groups of 4 blocks, then scales */
};

/* Repacked rows (kernel_repack_row): the reference dequantizers. */
void dequantize_row_q4_0r_ref(const void *x, float *y, int64_t n);
void dequantize_row_q8_0r_ref(const void *x, float *y, int64_t n);

#define QK8A 32
typedef struct block_q8a {
    float d;         /* scale: x ~ d * q */
    float s;         /* d * sum(q), for the offset correction */
    int8_t qs[QK8A]; /* quants in [-127, 127] */
} block_q8a;
HEARTH_STATIC_ASSERT(sizeof(block_q8a) == 40, "block_q8a must be 40 bytes");

/* Activations laid out for AVX-512 VNNI against Q4_0/Q8_0 weights: four
 * 32-element blocks per group, their quants split into the first and second
 * halves of each block (the order nibbles unpack in), the offset correction
 * as integers that seed the dot accumulator, and the scales, each replicated
 * over the 4 int32 lanes a block's products land in.  A row ends with a
 * partial group of t < 4 blocks stored compactly: lo[16t] hi[16t] corr[4t]
 * d[4t].  Rows take 2 bytes per element. */
#define QK8X4 128
typedef struct block_q8x4 {
    int8_t lo[64];    /* quants 0..15 of block b at [16b, 16b + 16) */
    int8_t hi[64];    /* quants 16..31 of block b at [16b, 16b + 16) */
    int32_t corr[16]; /* -offset * sum(quants of b) / 4 in lanes 4b..4b+3 */
    float d[16];      /* scale of block b (f16-rounded) in lanes 4b..4b+3 */
} block_q8x4;
HEARTH_STATIC_ASSERT(sizeof(block_q8x4) == 256, "block_q8x4 must be 256 bytes");

/* Bytes of a row of n elements of type, internal activation types included. */
uint64_t kernel_row_bytes(uint32_t type, uint64_t n);

void quantize_row_q8a_ref(const float *x, void *y, int64_t n);
void dequantize_row_q8a_ref(const void *x, float *y, int64_t n);
void quantize_row_q8x4_o8_ref(const float *x, void *y, int64_t n);
void quantize_row_q8x4_o128_ref(const float *x, void *y, int64_t n);
void dequantize_row_q8x4_ref(const void *x, float *y, int64_t n);

#if defined(__x86_64__)
/* AVX2 (with FMA and F16C) */
void quantize_row_q8a_avx2(const float *x, void *y, int64_t n);
float vec_dot_q4_0_q8a_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q8_0_q8a_avx2(int64_t n, const void *w, const void *a);
float vec_dot_f32_f32_avx2(int64_t n, const void *w, const void *a);
void quantize_row_f16_avx2(const float *x, void *y, int64_t n);
float vec_dot_f16_f16_avx2(int64_t n, const void *w, const void *a);
float vec_dot_bf16_bf16_avx2(int64_t n, const void *w, const void *a);
void axpy_f32_avx2(int64_t n, float a, const void *x, float *y);
void axpy_f16_avx2(int64_t n, float a, const void *x, float *y);
/* AVX-512 (F, BW, VL, DQ) and VNNI / BF16 */
void quantize_row_q8a_avx512(const float *x, void *y, int64_t n);
float vec_dot_q4_0_q8a_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q8_0_q8a_avx512(int64_t n, const void *w, const void *a);
float vec_dot_f32_f32_avx512(int64_t n, const void *w, const void *a);
float vec_dot_f16_f16_avx512(int64_t n, const void *w, const void *a);
void axpy_f32_avx512(int64_t n, float a, const void *x, float *y);
void axpy_f16_avx512(int64_t n, float a, const void *x, float *y);
void quantize_row_bf16_avx512(const float *x, void *y, int64_t n);
void attn_head_f16_avx512(const float *q, const void *k, size_t k_stride, const void *v,
                          size_t v_stride, int hd, int hdv, int n_pos, float scale, float *scores,
                          uint16_t *qh, float *out);
float vec_dot_bf16_bf16_avx512(int64_t n, const void *w, const void *a);
int32_t argmax_f32_avx512(const float *x, int32_t n);
/* AVX-512 VNNI + VBMI against block_q8x4 activations */
void quantize_row_q8x4_o8_avx512(const float *x, void *y, int64_t n);
void quantize_row_q8x4_o128_avx512(const float *x, void *y, int64_t n);
float vec_dot_q4_0_q8x4_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q8_0_q8x4_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q4_0r_q8x4_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q8_0r_q8x4_avx512(int64_t n, const void *w, const void *a);
void gemm_q8_0r_q8x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                            size_t a_stride, int nc, float *y, size_t y_stride);
void gemm_q4_0r_q8x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                            size_t a_stride, int nc, float *y, size_t y_stride);
void gemm_q4_0_q8x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                           size_t a_stride, int nc, float *y, size_t y_stride);
void gemm_q8_0_q8x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                           size_t a_stride, int nc, float *y, size_t y_stride);
void gemm_q4_0_q8a_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                          size_t a_stride, int nc, float *y, size_t y_stride);
void gemm_q8_0_q8a_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                          size_t a_stride, int nc, float *y, size_t y_stride);
/* K-quants against Q8_K activations (x86_kquants.c): AVX2, and AVX-512 VNNI */
void quantize_row_q8_K_avx2(const float *x, void *y, int64_t n);
float vec_dot_q5_0_q8_0_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q5_1_q8_0_avx2(int64_t n, const void *w, const void *a);
void quantize_row_q8_K_avx512(const float *x, void *y, int64_t n);
float vec_dot_q4_K_q8_K_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q5_K_q8_K_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q6_K_q8_K_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q4_K_q8_K_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q5_K_q8_K_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q6_K_q8_K_avx512(int64_t n, const void *w, const void *a);
void gemm_q4_K_q8_K_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                           size_t a_stride, int nc, float *y, size_t y_stride);
void gemm_q5_K_q8_K_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                           size_t a_stride, int nc, float *y, size_t y_stride);
void gemm_q6_K_q8_K_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                           size_t a_stride, int nc, float *y, size_t y_stride);
#endif

#endif
