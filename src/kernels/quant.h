/* quant.h — block layouts of the quantized tensor types, and scalar
 * half-precision conversions.
 *
 * Each block type is defined once, here, and is shared by the C kernels and
 * (later) the CUDA kernels, so the header is plain C that C++ and CUDA also
 * compile.  The layouts are those of GGUF files: a row of n elements is
 * n / QK blocks stored back to back.  Sizes are checked against the dtype
 * table the GGUF reader uses.
 */
#ifndef HEARTH_KERNELS_QUANT_H
#define HEARTH_KERNELS_QUANT_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
#define HEARTH_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define HEARTH_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

typedef uint16_t hearth_fp16; /* IEEE 754 binary16 bits */
typedef uint16_t hearth_bf16; /* bfloat16 bits: the top half of a float */

/* Q4_0: 32 weights as 4-bit values q in [0, 15], w = d * (q - 8). */
#define QK4_0 32
typedef struct block_q4_0 {
    hearth_fp16 d;         /* scale */
    uint8_t qs[QK4_0 / 2]; /* byte j: low nibble = weight j, high nibble = weight j + 16 */
} block_q4_0;
HEARTH_STATIC_ASSERT(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes");

/* Q8_0: 32 weights as signed bytes, w = d * q. */
#define QK8_0 32
typedef struct block_q8_0 {
    hearth_fp16 d;    /* scale */
    int8_t qs[QK8_0]; /* quants */
} block_q8_0;
HEARTH_STATIC_ASSERT(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes");

/* Q5_0: 32 weights as 5-bit values q in [0, 31], w = d * (q - 16).  The
 * fallback of Q4_K for rows that are not whole 256-element super-blocks. */
#define QK5_0 32
typedef struct block_q5_0 {
    hearth_fp16 d;         /* scale */
    uint8_t qh[4];         /* bit j of the little-endian uint32: bit 4 of weight j */
    uint8_t qs[QK5_0 / 2]; /* low 4 bits: byte j = weight j (low nibble), j + 16 (high) */
} block_q5_0;
HEARTH_STATIC_ASSERT(sizeof(block_q5_0) == 22, "block_q5_0 must be 22 bytes");

/* Q5_1: 32 weights as 5-bit values q in [0, 31], w = d * q + m.  The
 * fallback of Q5_K. */
#define QK5_1 32
typedef struct block_q5_1 {
    hearth_fp16 d;         /* scale */
    hearth_fp16 m;         /* offset (the block's minimum) */
    uint8_t qh[4];         /* bit 4 of each weight, as in block_q5_0 */
    uint8_t qs[QK5_1 / 2]; /* low 4 bits, as in block_q5_0 */
} block_q5_1;
HEARTH_STATIC_ASSERT(sizeof(block_q5_1) == 24, "block_q5_1 must be 24 bytes");

/* ---------------------------------------------------------------- K-quants
 *
 * K-quants group 256 weights into a super-block that holds one or two f16
 * scales and, per sub-block of 32 (Q4_K, Q5_K) or 16 (Q6_K) weights, a
 * small integer scale (and min) relative to them.  Within a super-block
 * the quants are stored in 64- or 128-element chunks whose halves or
 * quarters share bytes, so a whole chunk unpacks with a few shifts. */
#define QK_K         256
#define K_SCALE_SIZE 12 /* bytes of packed 6-bit scales and mins (Q4_K, Q5_K) */

/* Q4_K: sub-block j (32 weights) has a 6-bit scale sc_j and a 6-bit min
 * m_j; w = d * sc_j * q - dmin * m_j with q in [0, 15].  Packing of
 * scales[12]: for j < 4, scales[j] bits 0..5 = sc_j and scales[j + 4]
 * bits 0..5 = m_j; for j >= 4, scales[j + 4] = sc_j low 4 bits | m_j low 4
 * bits << 4, and the top 2 bits of sc_j / m_j sit in bits 6..7 of
 * scales[j - 4] / scales[j]. */
typedef struct block_q4_K {
    hearth_fp16 d;                /* scale of the sub-block scales */
    hearth_fp16 dmin;             /* scale of the sub-block mins */
    uint8_t scales[K_SCALE_SIZE]; /* 8 scales and 8 mins, 6 bits each, packed as above */
    uint8_t qs[QK_K / 2];         /* chunk c (64 weights) at qs[32c..32c+32): byte l holds
                                     weight 64c + l (low nibble) and 64c + 32 + l (high) */
} block_q4_K;
HEARTH_STATIC_ASSERT(sizeof(block_q4_K) == 144, "block_q4_K must be 144 bytes");

/* Q5_K: as Q4_K with a fifth bit per quant, q in [0, 31]. */
typedef struct block_q5_K {
    hearth_fp16 d;                /* scale of the sub-block scales */
    hearth_fp16 dmin;             /* scale of the sub-block mins */
    uint8_t scales[K_SCALE_SIZE]; /* 8 scales and 8 mins, packed as in block_q4_K */
    uint8_t qh[QK_K / 8];         /* bit 2c of qh[l]: bit 4 of weight 64c + l; bit 2c + 1:
                                     bit 4 of weight 64c + 32 + l */
    uint8_t qs[QK_K / 2];         /* low 4 bits, laid out as block_q4_K.qs */
} block_q5_K;
HEARTH_STATIC_ASSERT(sizeof(block_q5_K) == 176, "block_q5_K must be 176 bytes");

/* Q6_K: 16 sub-blocks of 16 weights with signed 8-bit scales and no min;
 * w = d * sc_j * (q - 32) with q in [0, 63]. */
typedef struct block_q6_K {
    uint8_t ql[QK_K / 2];     /* low 4 bits; chunk h (128 weights) at ql[64h..64h+64): byte l
                                 (l < 32) holds weight 128h + l (low nibble) and 128h + 64 + l
                                 (high), byte 32 + l holds 128h + 32 + l and 128h + 96 + l */
    uint8_t qh[QK_K / 4];     /* high 2 bits; chunk h at qh[32h..32h+32): bits 2k..2k+1 of
                                 byte l belong to weight 128h + 32k + l */
    int8_t scales[QK_K / 16]; /* scale of each 16-weight sub-block */
    hearth_fp16 d;            /* scale of the scales */
} block_q6_K;
HEARTH_STATIC_ASSERT(sizeof(block_q6_K) == 210, "block_q6_K must be 210 bytes");

/* Q8_K: activations for the K-quant dot products (never stored in files):
 * x ~ d * q, with the sums of each 16 quants precomputed for the min and
 * offset terms of the weights. */
typedef struct block_q8_K {
    float d;                  /* scale (a float, not f16) */
    int8_t qs[QK_K];          /* quants in [-127, 127], in element order */
    int16_t bsums[QK_K / 16]; /* bsums[j] = sum of qs[16j..16j+16) */
} block_q8_K;
HEARTH_STATIC_ASSERT(sizeof(block_q8_K) == 292, "block_q8_K must be 292 bytes");

/* ---------------------------------------------------------------- fp16 / bf16 */

static inline uint32_t hearth_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float hearth_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Exact conversion of a binary16 value to float (subnormals, inf, NaN kept). */
static inline float hearth_fp16_to_f32(hearth_fp16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return hearth_bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return hearth_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* Float to binary16, rounding to nearest even; overflow gives inf. */
static inline hearth_fp16 hearth_f32_to_fp16(float f) {
    uint32_t x = hearth_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) { /* inf or NaN */
        return (hearth_fp16)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    }
    if (absx >= 0x477ff000u) return (hearth_fp16)(sign | 0x7c00u); /* rounds past 65504 */
    if (absx < 0x38800000u) {                                      /* below 2^-14: subnormal */
        /* Scale so the subnormal step 2^-24 becomes 1, then round to even. */
        float v = hearth_bits_f32(absx) * 16777216.0f;
        uint32_t q = (uint32_t)v;
        float rem = v - (float)q;
        if (rem > 0.5f || (rem == 0.5f && (q & 1u))) q++;
        return (hearth_fp16)(sign | q);
    }
    uint32_t exp = (absx >> 23) - 112u;
    uint32_t mant = absx & 0x7fffffu;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* carries into exp correctly */
    return (hearth_fp16)(sign | h);
}

static inline float hearth_bf16_to_f32(hearth_bf16 h) {
    return hearth_bits_f32((uint32_t)h << 16);
}

/* Float to bfloat16, rounding to nearest even; NaN stays NaN. */
static inline hearth_bf16 hearth_f32_to_bf16(float f) {
    uint32_t x = hearth_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (hearth_bf16)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (hearth_bf16)(x >> 16);
}

#endif
