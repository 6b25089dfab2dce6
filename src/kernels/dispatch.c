/* dispatch.c — the kernels this CPU runs, chosen once.
 *
 * The table starts as a copy of the reference kernels; each entry the CPU
 * has a faster variant for is then replaced (AVX2, AVX-512, VNNI, BF16).
 * A SIMD variant may use a different activation type than the reference —
 * Q8A for the integer dots, F32 for F16/BF16 weights without native
 * support — so callers always convert activations with the entry's own
 * quantize_act.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/simd.h"
#include "util/dtype.h"

#define MAX_TRAITS 32

static kernel_traits table[MAX_TRAITS];
static size_t n_table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

/* ---------------------------------------------------------------- Q8A reference */

void quantize_row_q8a_ref(const float *x, void *y, int64_t n) {
    block_q8a *b = y;
    for (int64_t i = 0; i < n / QK8A; i++) {
        const float *xb = x + i * QK8A;
        float amax = 0.0f;
        for (int j = 0; j < QK8A; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < QK8A; j++) {
            b[i].qs[j] = (int8_t)roundf(xb[j] * id);
            sum += b[i].qs[j];
        }
        /* The scale as Q8_0 stores it (f16): the same quants and scale as
         * the reference, so integer dots agree exactly. */
        b[i].d = hearth_fp16_to_f32(hearth_f32_to_fp16(d));
        b[i].s = b[i].d * (float)sum;
    }
}

void dequantize_row_q8a_ref(const void *x, float *y, int64_t n) {
    const block_q8a *b = x;
    for (int64_t i = 0; i < n / QK8A; i++) {
        for (int j = 0; j < QK8A; j++) y[i * QK8A + j] = b[i].d * (float)b[i].qs[j];
    }
}

/* Quantizes one 32-element block as the reference Q8_0 does: quants q and
 * the f16-rounded scale; returns the sum of the quants. */
static int32_t quantize_block_q8(const float *x, int8_t *q, float *d_out) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < 32; j++) {
        q[j] = (int8_t)roundf(x[j] * id);
        sum += q[j];
    }
    *d_out = hearth_fp16_to_f32(hearth_f32_to_fp16(d));
    return sum;
}

/* Q8X4 rows: full groups, then a compact partial group (see simd.h). */
static void quantize_q8x4(const float *x, void *y, int64_t n, int32_t offset) {
    int64_t nb = n / 32, ng = nb / 4, tail = nb % 4;
    uint8_t *out = y;
    for (int64_t g = 0; g <= ng; g++) {
        int64_t t = g < ng ? 4 : tail;
        if (t == 0) break;
        int8_t *lo = (int8_t *)out, *hi = lo + 16 * t;
        int32_t *corr = (int32_t *)(hi + 16 * t);
        float *d = (float *)(corr + 4 * t);
        for (int64_t b = 0; b < t; b++) {
            int8_t q[32];
            float db;
            int32_t sum = quantize_block_q8(x + (g * 4 + b) * 32, q, &db);
            memcpy(lo + 16 * b, q, 16);
            memcpy(hi + 16 * b, q + 16, 16);
            for (int k = 0; k < 4; k++) {
                corr[4 * b + k] = -offset * sum / 4;
                d[4 * b + k] = db;
            }
        }
        out += 64 * t;
    }
}

void quantize_row_q8x4_o8_ref(const float *x, void *y, int64_t n) {
    quantize_q8x4(x, y, n, 8);
}
void quantize_row_q8x4_o128_ref(const float *x, void *y, int64_t n) {
    quantize_q8x4(x, y, n, 128);
}

void dequantize_row_q8x4_ref(const void *x, float *y, int64_t n) {
    int64_t nb = n / 32, ng = nb / 4, tail = nb % 4;
    const uint8_t *in = x;
    for (int64_t g = 0; g <= ng; g++) {
        int64_t t = g < ng ? 4 : tail;
        if (t == 0) break;
        const int8_t *lo = (const int8_t *)in, *hi = lo + 16 * t;
        const float *d = (const float *)(hi + 16 * t + 16 * t);
        for (int64_t b = 0; b < t; b++) {
            float *yb = y + (g * 4 + b) * 32;
            for (int k = 0; k < 16; k++) {
                yb[k] = d[4 * b] * (float)lo[16 * b + k];
                yb[16 + k] = d[4 * b] * (float)hi[16 * b + k];
            }
        }
        in += 64 * t;
    }
}

/* ---------------------------------------------------------------- repacked Q4_0 */

void dequantize_row_q4_0r_ref(const void *x, float *y, int64_t n) {
    const uint8_t *q = x;
    int64_t nb = n / QK4_0;
    const uint8_t *sc = q + 16 * nb;
    for (int64_t b = 0; b < nb; b++) {
        hearth_fp16 h;
        memcpy(&h, sc + 2 * b, sizeof h);
        float d = hearth_fp16_to_f32(h);
        for (int j = 0; j < 16; j++) {
            y[32 * b + j] = d * (float)((q[16 * b + j] & 15) - 8);
            y[32 * b + 16 + j] = d * (float)((q[16 * b + j] >> 4) - 8);
        }
    }
}

void dequantize_row_q8_0r_ref(const void *x, float *y, int64_t n) {
    const int8_t *q = x;
    int64_t nb = n / QK8_0;
    const uint8_t *sc = (const uint8_t *)x + 32 * nb;
    for (int64_t g = 0; g < nb; g += 4) {
        int64_t t = nb - g < 4 ? nb - g : 4;
        const int8_t *lo = q + 32 * g, *hi = lo + 16 * t;
        for (int64_t j = 0; j < t; j++) {
            hearth_fp16 h;
            memcpy(&h, sc + 2 * (g + j), sizeof h);
            float d = hearth_fp16_to_f32(h);
            for (int k = 0; k < 16; k++) {
                y[32 * (g + j) + k] = d * (float)lo[16 * j + k];
                y[32 * (g + j) + 16 + k] = d * (float)hi[16 * j + k];
            }
        }
    }
}

/* The widest row repacked: its scales are set aside on the stack. */
#define REPACK_MAX_BLOCKS 4096

/* Q4_0: every block's 16 quant bytes in order, then the scales.  Quants
 * move towards the start (16 b <= 18 b + 2), so in block order nothing is
 * overwritten before it is moved. */
static void repack_q4_0(uint8_t *p, int64_t nb, hearth_fp16 *d) {
    const block_q4_0 *blocks = (const block_q4_0 *)p;
    for (int64_t b = 0; b < nb; b++) d[b] = blocks[b].d;
    for (int64_t b = 0; b < nb; b++) memmove(p + 16 * b, p + 18 * b + 2, 16);
    memcpy(p + 16 * nb, d, (size_t)nb * sizeof d[0]);
}

/* Q8_0: each group of 4 blocks (t at the end) as the blocks' first 16
 * quants then their last 16, then the scales.  Group g lands at 128 g,
 * before its own blocks (136 g + 2) and ending before the next group's,
 * so each group is copied out whole and written back in group order. */
static void repack_q8_0(uint8_t *p, int64_t nb, hearth_fp16 *d) {
    const block_q8_0 *blocks = (const block_q8_0 *)p;
    for (int64_t b = 0; b < nb; b++) d[b] = blocks[b].d;
    for (int64_t g = 0; g < nb; g += 4) {
        int64_t t = nb - g < 4 ? nb - g : 4;
        int8_t tmp[128];
        for (int64_t j = 0; j < t; j++) {
            memcpy(tmp + 16 * j, blocks[g + j].qs, 16);
            memcpy(tmp + 16 * t + 16 * j, blocks[g + j].qs + 16, 16);
        }
        memcpy(p + 32 * g, tmp, (size_t)(32 * t));
    }
    memcpy(p + 32 * nb, d, (size_t)nb * sizeof d[0]);
}

bool kernel_repack_row(uint32_t type, void *row, int64_t n) {
    if ((type != HEARTH_DTYPE_Q4_0 && type != HEARTH_DTYPE_Q8_0) || n % 32 ||
        n / 32 > REPACK_MAX_BLOCKS) {
        return false;
    }
    hearth_fp16 d[REPACK_MAX_BLOCKS];
    if (type == HEARTH_DTYPE_Q4_0) {
        repack_q4_0(row, n / 32, d);
    } else {
        repack_q8_0(row, n / 32, d);
    }
    return true;
}

const kernel_traits *kernel_traits_repacked(uint32_t type) {
    return type == HEARTH_DTYPE_Q4_0   ? kernel_traits_get(KERNEL_Q4_0R)
           : type == HEARTH_DTYPE_Q8_0 ? kernel_traits_get(KERNEL_Q8_0R)
                                       : NULL;
}

uint64_t kernel_row_bytes(uint32_t type, uint64_t n) {
    if (type == KERNEL_ACT_Q8A) return n % QK8A ? 0 : n / QK8A * sizeof(block_q8a);
    if (type == KERNEL_ACT_Q8X4_O8 || type == KERNEL_ACT_Q8X4_O128) return n % 32 ? 0 : 2 * n;
    if (type == KERNEL_Q4_0R) return dtype_row_bytes(HEARTH_DTYPE_Q4_0, n);
    if (type == KERNEL_Q8_0R) return dtype_row_bytes(HEARTH_DTYPE_Q8_0, n);
    return dtype_row_bytes(type, n);
}

/* ---------------------------------------------------------------- table */

static kernel_traits *entry(uint32_t type) {
    for (size_t i = 0; i < n_table; i++) {
        if (table[i].type == type) return &table[i];
    }
    if (n_table == MAX_TRAITS) return NULL;
    memset(&table[n_table], 0, sizeof table[n_table]);
    table[n_table].type = type;
    return &table[n_table++];
}

static void build(void) {
    size_t n_ref;
    const kernel_traits *ref = kernel_traits_ref_table(&n_ref);
    for (size_t i = 0; i < n_ref && n_table < MAX_TRAITS; i++) table[n_table++] = ref[i];
#if defined(__x86_64__)
    const cpu_features *f = cpu_get_features();
    if (!f->avx2) return;
    bool wide = f->avx512, vnni = f->avx512_vnni;
    quantize_row_fn q8a = wide ? quantize_row_q8a_avx512 : quantize_row_q8a_avx2;
    kernel_traits *t = entry(KERNEL_ACT_Q8A);
    if (t) {
        *t = (kernel_traits){.type = KERNEL_ACT_Q8A,
                             .act_type = KERNEL_ACT_Q8A,
                             .dequantize = dequantize_row_q8a_ref,
                             .quantize_act = q8a};
    }
    if ((t = entry(HEARTH_DTYPE_Q4_0))) {
        t->act_type = KERNEL_ACT_Q8A;
        t->quantize_act = q8a;
        t->vec_dot = vnni ? vec_dot_q4_0_q8a_avx512 : vec_dot_q4_0_q8a_avx2;
        t->gemm = vnni ? gemm_q4_0_q8a_avx512 : NULL;
    }
    if ((t = entry(HEARTH_DTYPE_Q8_0))) {
        t->act_type = KERNEL_ACT_Q8A;
        t->quantize_act = q8a;
        t->vec_dot = vnni ? vec_dot_q8_0_q8a_avx512 : vec_dot_q8_0_q8a_avx2;
        t->gemm = vnni ? gemm_q8_0_q8a_avx512 : NULL;
    }
    if (vnni && f->avx512_vbmi) {
        /* Byte permutes gather a group of blocks' quants and scales at once. */
        if ((t = entry(KERNEL_ACT_Q8X4_O8))) {
            *t = (kernel_traits){.type = KERNEL_ACT_Q8X4_O8,
                                 .act_type = KERNEL_ACT_Q8X4_O8,
                                 .dequantize = dequantize_row_q8x4_ref,
                                 .quantize_act = quantize_row_q8x4_o8_avx512};
        }
        if ((t = entry(KERNEL_ACT_Q8X4_O128))) {
            *t = (kernel_traits){.type = KERNEL_ACT_Q8X4_O128,
                                 .act_type = KERNEL_ACT_Q8X4_O128,
                                 .dequantize = dequantize_row_q8x4_ref,
                                 .quantize_act = quantize_row_q8x4_o128_avx512};
        }
        if ((t = entry(HEARTH_DTYPE_Q4_0))) {
            t->act_type = KERNEL_ACT_Q8X4_O8;
            t->quantize_act = quantize_row_q8x4_o8_avx512;
            t->vec_dot = vec_dot_q4_0_q8x4_avx512;
            t->gemm = gemm_q4_0_q8x4_avx512;
        }
        if ((t = entry(KERNEL_Q4_0R))) {
            *t = (kernel_traits){.type = KERNEL_Q4_0R,
                                 .act_type = KERNEL_ACT_Q8X4_O8,
                                 .dequantize = dequantize_row_q4_0r_ref,
                                 .quantize_act = quantize_row_q8x4_o8_avx512,
                                 .vec_dot = vec_dot_q4_0r_q8x4_avx512,
                                 .gemm = gemm_q4_0r_q8x4_avx512,
                                 .gemm_decodes = true};
        }
        if ((t = entry(KERNEL_Q8_0R))) {
            *t = (kernel_traits){.type = KERNEL_Q8_0R,
                                 .act_type = KERNEL_ACT_Q8X4_O128,
                                 .dequantize = dequantize_row_q8_0r_ref,
                                 .quantize_act = quantize_row_q8x4_o128_avx512,
                                 .vec_dot = vec_dot_q8_0r_q8x4_avx512,
                                 .gemm = gemm_q8_0r_q8x4_avx512,
                                 .gemm_decodes = true};
        }
        if ((t = entry(HEARTH_DTYPE_Q8_0))) {
            t->act_type = KERNEL_ACT_Q8X4_O128;
            t->quantize_act = quantize_row_q8x4_o128_avx512;
            t->vec_dot = vec_dot_q8_0_q8x4_avx512;
            t->gemm = gemm_q8_0_q8x4_avx512;
        }
    }
    /* Q5_0 / Q5_1 (mixes' fallbacks) keep the reference's Q8_0 activations. */
    if ((t = entry(HEARTH_DTYPE_Q5_0))) t->vec_dot = vec_dot_q5_0_q8_0_avx2;
    if ((t = entry(HEARTH_DTYPE_Q5_1))) t->vec_dot = vec_dot_q5_1_q8_0_avx2;
    /* K-quants keep the reference's Q8_K activations (the same bytes). */
    quantize_row_fn q8k = vnni ? quantize_row_q8_K_avx512 : quantize_row_q8_K_avx2;
    if ((t = entry(HEARTH_DTYPE_Q4_K))) {
        t->quantize_act = q8k;
        t->vec_dot = vnni ? vec_dot_q4_K_q8_K_avx512 : vec_dot_q4_K_q8_K_avx2;
        t->gemm = vnni ? gemm_q4_K_q8_K_avx512 : NULL;
    }
    if ((t = entry(HEARTH_DTYPE_Q5_K))) {
        t->quantize_act = q8k;
        t->vec_dot = vnni ? vec_dot_q5_K_q8_K_avx512 : vec_dot_q5_K_q8_K_avx2;
        t->gemm = vnni ? gemm_q5_K_q8_K_avx512 : NULL;
    }
    if ((t = entry(HEARTH_DTYPE_Q6_K))) {
        t->quantize_act = q8k;
        t->vec_dot = vnni ? vec_dot_q6_K_q8_K_avx512 : vec_dot_q6_K_q8_K_avx2;
        t->gemm = vnni ? gemm_q6_K_q8_K_avx512 : NULL;
    }
    if ((t = entry(HEARTH_DTYPE_F32))) {
        t->vec_dot = wide ? vec_dot_f32_f32_avx512 : vec_dot_f32_f32_avx2;
        t->axpy = wide ? axpy_f32_avx512 : axpy_f32_avx2;
    }
    /* Half-precision weights meet activations rounded to the same type, as
     * in the reference (and llama.cpp): the products are then exact. */
    if ((t = entry(HEARTH_DTYPE_F16))) {
        t->quantize_act = quantize_row_f16_avx2;
        t->vec_dot = wide ? vec_dot_f16_f16_avx512 : vec_dot_f16_f16_avx2;
        t->axpy = wide ? axpy_f16_avx512 : axpy_f16_avx2;
    }
    if ((t = entry(HEARTH_DTYPE_BF16))) {
        t->quantize_act = f->avx512_bf16 ? quantize_row_bf16_avx512 : quantize_row_bf16_ref;
        t->vec_dot = f->avx512_bf16 ? vec_dot_bf16_bf16_avx512 : vec_dot_bf16_bf16_avx2;
    }
#endif
}

attn_head_f16_fn kernel_attn_head_f16(void) {
#if defined(__x86_64__)
    if (cpu_get_features()->avx512) return attn_head_f16_avx512;
#endif
    return attn_head_f16_ref;
}

argmax_fn kernel_argmax(void) {
#if defined(__x86_64__)
    if (cpu_get_features()->avx512) return argmax_f32_avx512;
#endif
    return argmax_f32_ref;
}

const kernel_traits *kernel_traits_get(uint32_t type) {
    pthread_once(&table_once, build);
    for (size_t i = 0; i < n_table; i++) {
        if (table[i].type == type) return &table[i];
    }
    return NULL;
}
