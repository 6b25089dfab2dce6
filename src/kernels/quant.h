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
