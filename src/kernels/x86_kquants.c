/* x86_kquants.c — AVX2 and AVX-512 dot products of K-quant weight rows
 * (Q4_K, Q5_K, Q6_K) with Q8_K activation rows, the Q8_K quantizer, and
 * AVX2 dots for Q5_0 / Q5_1 (the K-quant mixes' fallbacks) with Q8_0.
 *
 * Each function computes what its _ref counterpart in kquants.c computes;
 * tests/test_simd.c holds them to it.  The quants are unsigned (Q4_K 0..15,
 * Q5_K 0..31, Q6_K 0..63), so one vpmaddubsw multiplies them by the signed
 * activation quants and adds neighbours into int16 without overflow; a
 * multiply-add with the sub-block scales as int16 (vpmaddwd, or the VNNI
 * vpdpwssd that also accumulates) then gives int32 sums already weighted by
 * scale, and one float multiply-add per super-block applies d * d_act.  The
 * parts that do not depend on the weight quants — Q4_K/Q5_K's mins and
 * Q6_K's offset of 32 — come from the activation block sums (bsums).
 */
#include "kernels/simd.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>
#include <string.h>

#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
/* -O2 does not unroll the short loops over a block's chunks by itself;
 * their vectors must stay in registers. */
#define UNROLL _Pragma("GCC unroll 4")
#define T_VNNI                                                                                     \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

/* The 8 six-bit scales and 8 mins of a Q4_K/Q5_K super-block, one byte
 * each, from the 12 packed bytes (layout in quant.h). */
static inline void unpack_kscales(const uint8_t *s, uint64_t *scales, uint64_t *mins) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    uint32_t sc_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
    uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    *scales = sc_lo | (uint64_t)sc_hi << 32;
    *mins = m_lo | (uint64_t)m_hi << 32;
}

/* ---------------------------------------------------------------- AVX2 */

T_AVX2 static inline float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* sum_j mins[j] * (bsums[2j] + bsums[2j + 1]) as 8 int32 lanes. */
T_AVX2 static inline __m256i min_sums_avx2(uint64_t mins, const int16_t *bsums) {
    __m128i m = _mm_cvtsi64_si128((long long)mins);
    __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m)); /* m0 m0 m1 m1 ... */
    return _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bsums), m16);
}

/* Selects int16 element j of each 128-bit lane into all its 8 positions. */
#define PICK16(j) _mm256_set1_epi16((short)(((2 * (j) + 1) << 8) | (2 * (j))))

/* Sums of Q4_K/Q5_K quants times activations for one super-block, the 8
 * sub-blocks weighted by their scales.  q[c] holds chunk c's low quants
 * (sub-block 2c) and high quants (2c + 1) as unsigned bytes. */
T_AVX2 static inline __m256i kquant_sums_avx2(const __m256i lo[4], const __m256i hi[4],
                                              const int8_t *act, uint64_t scales) {
    __m256i s16 =
        _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scales)));
    __m256i sum = _mm256_setzero_si256();
    UNROLL
    for (int c = 0; c < 4; c++) {
        __m256i p0 =
            _mm256_maddubs_epi16(lo[c], _mm256_loadu_si256((const __m256i *)(act + 64 * c)));
        __m256i p1 =
            _mm256_maddubs_epi16(hi[c], _mm256_loadu_si256((const __m256i *)(act + 64 * c + 32)));
        p0 = _mm256_madd_epi16(p0, _mm256_shuffle_epi8(s16, PICK16(2 * c)));
        p1 = _mm256_madd_epi16(p1, _mm256_shuffle_epi8(s16, PICK16(2 * c + 1)));
        sum = _mm256_add_epi32(sum, _mm256_add_epi32(p0, p1));
    }
    return sum;
}

T_AVX2 float vec_dot_q4_K_q8_K_avx2(int64_t n, const void *w, const void *a) {
    const block_q4_K *x = w;
    const block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps(), acc_m = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint64_t scales, mins;
        unpack_kscales(x[i].scales, &scales, &mins);
        __m256i lo[4], hi[4];
        UNROLL
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * c));
            lo[c] = _mm256_and_si256(q, m4);
            hi[c] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        }
        __m256i sum = kquant_sums_avx2(lo, hi, y[i].qs, scales);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sum),
                              acc);
        acc_m = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x[i].dmin) * y[i].d),
                                _mm256_cvtepi32_ps(min_sums_avx2(mins, y[i].bsums)), acc_m);
    }
    return hsum256_ps(acc) - hsum256_ps(acc_m);
}

T_AVX2 float vec_dot_q5_K_q8_K_avx2(int64_t n, const void *w, const void *a) {
    const block_q5_K *x = w;
    const block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps(), acc_m = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint64_t scales, mins;
        unpack_kscales(x[i].scales, &scales, &mins);
        __m256i qh = _mm256_loadu_si256((const __m256i *)x[i].qh);
        __m256i lo[4], hi[4];
        UNROLL
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * c));
            /* bits 2c and 2c + 1 of qh moved to bit 4 */
            __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(qh, 4), b4);
            __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(qh, 3), b4);
            lo[c] = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
            hi[c] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
            qh = _mm256_srli_epi16(qh, 2);
        }
        __m256i sum = kquant_sums_avx2(lo, hi, y[i].qs, scales);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sum),
                              acc);
        acc_m = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x[i].dmin) * y[i].d),
                                _mm256_cvtepi32_ps(min_sums_avx2(mins, y[i].bsums)), acc_m);
    }
    return hsum256_ps(acc) - hsum256_ps(acc_m);
}

T_AVX2 float vec_dot_q6_K_q8_K_avx2(int64_t n, const void *w, const void *a) {
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        /* The 16 scales as int16: lane 0 holds chunk 0's 8, lane 1 chunk 1's. */
        __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        /* The offset: 32 * sum_j scale_j * bsums_j, taken off the quant sums. */
        __m256i sum = _mm256_slli_epi32(
            _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), s16), 5);
        sum = _mm256_sub_epi32(_mm256_setzero_si256(), sum);
        UNROLL
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h;
            const int8_t *act = y[i].qs + 128 * h;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)),
                _mm256_or_si256(_mm256_and_si256(l1, m4),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                _mm256_and_si256(qh, m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2)),
            };
            /* Chunk h's 8 scales in both lanes; quarter k uses 2k (low
             * lane, its first 16 quants) and 2k + 1 (high lane). */
            __m256i sh = h ? _mm256_permute2x128_si256(s16, s16, 0x11)
                           : _mm256_permute2x128_si256(s16, s16, 0x00);
            UNROLL
            for (int k = 0; k < 4; k++) {
                __m256i p =
                    _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(act + 32 * k)));
                __m256i pick = _mm256_setr_epi8(
                    (char)(4 * k), (char)(4 * k + 1), (char)(4 * k), (char)(4 * k + 1),
                    (char)(4 * k), (char)(4 * k + 1), (char)(4 * k), (char)(4 * k + 1),
                    (char)(4 * k), (char)(4 * k + 1), (char)(4 * k), (char)(4 * k + 1),
                    (char)(4 * k), (char)(4 * k + 1), (char)(4 * k), (char)(4 * k + 1),
                    (char)(4 * k + 2), (char)(4 * k + 3), (char)(4 * k + 2), (char)(4 * k + 3),
                    (char)(4 * k + 2), (char)(4 * k + 3), (char)(4 * k + 2), (char)(4 * k + 3),
                    (char)(4 * k + 2), (char)(4 * k + 3), (char)(4 * k + 2), (char)(4 * k + 3),
                    (char)(4 * k + 2), (char)(4 * k + 3), (char)(4 * k + 2), (char)(4 * k + 3));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sh, pick)));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sum),
                              acc);
    }
    return hsum256_ps(acc);
}

/* The 32 five-bit quants of a Q5_0/Q5_1 block as bytes 0..31, in element
 * order: nibbles as Q4_0 unpacks them, the fifth bits spread from qh (byte
 * j tests bit j). */
T_AVX2 static inline __m256i unpack_q5_avx2(const uint8_t *qs, const uint8_t *qh4) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i lo =
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0f));
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    __m256i h =
        _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh),
                            _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
                                             2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
    h = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
    return _mm256_or_si256(lo, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
}

/* Q5_0 . Q8_0: quants 0..31 minus 16, as the Q8_0 kernel multiplies signed
 * bytes (|x| times y with x's sign). */
T_AVX2 float vec_dot_q5_0_q8_0_avx2(int64_t n, const void *w, const void *a) {
    const block_q5_0 *x = w;
    const block_q8_0 *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK5_0; i++) {
        __m256i q = _mm256_sub_epi8(unpack_q5_avx2(x[i].qs, x[i].qh), _mm256_set1_epi8(16));
        __m256i ya = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256i p =
            _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(ya, q)),
                              _mm256_set1_epi16(1));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x[i].d) * _cvtsh_ss(y[i].d)),
                              _mm256_cvtepi32_ps(p), acc);
    }
    return hsum256_ps(acc);
}

/* Q5_1 . Q8_0: d * sum(q a) + m * sum(a), per block. */
T_AVX2 float vec_dot_q5_1_q8_0_avx2(int64_t n, const void *w, const void *a) {
    const block_q5_1 *x = w;
    const block_q8_0 *y = a;
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps(), acc_m = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK5_1; i++) {
        __m256i ya = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256i p =
            _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_q5_avx2(x[i].qs, x[i].qh), ya), ones16);
        __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, ya), ones16);
        float da = _cvtsh_ss(y[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x[i].d) * da), _mm256_cvtepi32_ps(p), acc);
        acc_m =
            _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x[i].m) * da), _mm256_cvtepi32_ps(s), acc_m);
    }
    return hsum256_ps(_mm256_add_ps(acc, acc_m));
}

/* Q8_K activations as quantize_row_q8_K_ref writes them.  Products and
 * rounding are the same IEEE operations (vcvtps2dq rounds to nearest even,
 * as the reference does); the scale's sign comes from the first element
 * of largest magnitude. */
T_AVX2 void quantize_row_q8_K_avx2(const float *x, void *y, int64_t n) {
    block_q8_K *b = y;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < QK_K; k += 8)
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        int first = 0;
        while (first < QK_K - 1 && __builtin_fabsf(x[first]) != amax) first++; /* NaN: any */
        float iscale = -127.f / x[first];
        __m256 vs = _mm256_set1_ps(iscale);
        for (int k = 0; k < QK_K; k += 32) {
            __m256i q[4];
            for (int j = 0; j < 4; j++) {
                q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + k + 8 * j)));
                q[j] = _mm256_min_epi32(q[j], _mm256_set1_epi32(127));
            }
            /* 16 sums of 16: lanes of the int32 vectors, before packing */
            for (int j = 0; j < 4; j += 2) {
                __m256i s = _mm256_add_epi32(q[j], q[j + 1]);
                __m128i s4 =
                    _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
                b[i].bsums[(k + 8 * j) / 16] = (int16_t)_mm_cvtsi128_si32(s4);
            }
            __m256i p =
                _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(b[i].qs + k), p);
        }
        b[i].d = 1 / iscale;
    }
}

/* ---------------------------------------------------------------- AVX-512 VNNI */

T_VNNI void quantize_row_q8_K_avx512(const float *x, void *y, int64_t n) {
    block_q8_K *b = y;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int k = 0; k < QK_K; k += 16)
            m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
        float amax = _mm512_reduce_max_ps(m);
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        int first = 0;
        while (first < QK_K - 1 && __builtin_fabsf(x[first]) != amax) first++; /* NaN: any */
        float iscale = -127.f / x[first];
        __m512 vs = _mm512_set1_ps(iscale);
        const __m512i lim = _mm512_set1_epi32(127);
        for (int k = 0; k < QK_K; k += 16) {
            __m512i q = _mm512_min_epi32(
                _mm512_cvtps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(x + k))), lim);
            _mm_storeu_si128((__m128i *)(b[i].qs + k), _mm512_cvtsepi32_epi8(q));
            b[i].bsums[k / 16] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        b[i].d = 1 / iscale;
    }
}

/* One super-block of a weight row decoded for the dot products: its 256
 * quants as unsigned bytes in four vectors, the int16 sub-block scale of
 * each int16 product position (sc[k], matching vpmaddubsw's output for
 * w[k]), and what the offset term needs: the mins (Q4_K, Q5_K) or scales
 * (Q6_K) as int16, one per 16 elements, to meet the activation block sums.
 *
 * The vectors hold the elements in one of two orders (the activations are
 * loaded to match): natural, w[k] = elements 64k .. 64k + 63, or for
 * Q4_K/Q5_K "paired", w[2g] = sub-blocks 4g and 4g + 2, w[2g + 1] = 4g + 1
 * and 4g + 3, the order 64 quant bytes unpack in.  Paired decoding is
 * cheaper; it pays when the activations' reordering is shared (by 4 rows
 * in decode) or a single dot is all there is. */
typedef struct kblock {
    __m512i w[4], sc[4];
    __m256i off16; /* per 16 elements: min (Q4_K/Q5_K) or scale (Q6_K) */
    float d;       /* scale of the quant sums */
    float doff;    /* scale of the offset sums: -dmin, or -32 d for Q6_K */
} kblock;

enum { KIND_Q4_K, KIND_Q5_K, KIND_Q6_K };

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* [v | v >> 4] & 0x0f: a 32-byte chunk's low nibbles, then its high ones. */
T_VNNI static ALWAYS_INLINE __m512i nibbles(const uint8_t *p) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    __m512i b = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
    return _mm512_and_si512(b, _mm512_set1_epi8(0x0f));
}

/* Q4_K/Q5_K: int16 scale vectors (each 256-bit half one sub-block's
 * scale), and the mins duplicated per 16 elements. */
T_VNNI static ALWAYS_INLINE void scale_min_vectors(const uint8_t *packed, bool paired, kblock *b) {
    uint64_t scales, mins;
    unpack_kscales(packed, &scales, &mins);
    __m512i s16 = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scales)));
    UNROLL
    for (int k = 0; k < 4; k++) {
        int lo = paired ? 4 * (k / 2) + k % 2 : 2 * k, hi = paired ? lo + 2 : lo + 1;
        __m512i pick = _mm512_inserti64x4(_mm512_castsi256_si512(PICK16(lo)), PICK16(hi), 1);
        b->sc[k] = _mm512_shuffle_epi8(s16, pick);
    }
    __m128i m = _mm_cvtsi64_si128((long long)mins);
    b->off16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
}

T_VNNI static ALWAYS_INLINE void decode_q4_K(const block_q4_K *x, bool paired, kblock *b) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    UNROLL
    for (int k = 0; k < 4; k += 2) {
        if (paired) {
            __m512i v = _mm512_loadu_si512((const void *)(x->qs + 32 * k));
            b->w[k] = _mm512_and_si512(v, m4);
            b->w[k + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        } else {
            b->w[k] = nibbles(x->qs + 32 * k);
            b->w[k + 1] = nibbles(x->qs + 32 * k + 32);
        }
    }
    scale_min_vectors(x->scales, paired, b);
    b->d = _cvtsh_ss(x->d);
    b->doff = -_cvtsh_ss(x->dmin);
}

T_VNNI static ALWAYS_INLINE void decode_q5_K(const block_q5_K *x, bool paired, kblock *b) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), b4 = _mm512_set1_epi8(0x10);
    __m256i qh = _mm256_loadu_si256((const __m256i *)x->qh);
    if (paired) {
        /* [qh | qh >> 2]: bits 0 and 1 of each byte are then the fifth bits
         * of w[0] and w[1] (sub-blocks 0, 2 and 1, 3); four bits up, of
         * w[2] and w[3]. */
        __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
        UNROLL
        for (int k = 0; k < 4; k += 2) {
            __m512i v = _mm512_loadu_si512((const void *)(x->qs + 32 * k));
            __m512i h0 = _mm512_and_si512(_mm512_slli_epi16(h, 4), b4);
            __m512i h1 = _mm512_and_si512(_mm512_slli_epi16(h, 3), b4);
            b->w[k] = _mm512_ternarylogic_epi32(v, m4, h0, 0xea); /* (v & m4) | h0 */
            b->w[k + 1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 4), m4, h1, 0xea);
            h = _mm512_srli_epi16(h, 4);
        }
    } else {
        /* [qh | qh >> 1]: bit 2k of each byte is then the fifth bit of
         * chunk k's low quants (first half) and high quants (second half). */
        __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 1), 1);
        UNROLL
        for (int k = 0; k < 4; k++) {
            __m512i hk = _mm512_and_si512(_mm512_slli_epi16(h, 4), b4);
            b->w[k] = _mm512_or_si512(nibbles(x->qs + 32 * k), hk);
            h = _mm512_srli_epi16(h, 2);
        }
    }
    scale_min_vectors(x->scales, paired, b);
    b->d = _cvtsh_ss(x->d);
    b->doff = -_cvtsh_ss(x->dmin);
}

/* 0, 1, ..., 31 as int16. */
T_VNNI static ALWAYS_INLINE __m512i position16(void) {
    return _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14,
                            13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
}

T_VNNI static ALWAYS_INLINE void decode_q6_K(const block_q6_K *x, kblock *b) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x30);
    UNROLL
    for (int h = 0; h < 2; h++) {
        __m512i ql = _mm512_loadu_si512((const void *)(x->ql + 64 * h));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
        /* [qh | qh >> 2]: bits 0..1 of each half are the high bits of the
         * low nibbles' quants, bits 4..5 those of the high nibbles'. */
        __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
        b->w[2 * h] = _mm512_ternarylogic_epi32(
            ql, m4, _mm512_and_si512(_mm512_slli_epi16(qh2, 4), m2), 0xea); /* (a & b) | c */
        b->w[2 * h + 1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), m4,
                                                    _mm512_and_si512(qh2, m2), 0xea);
    }
    /* int16 position p of w[k]'s products belongs to sub-block 4k + p / 8. */
    __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    __m512i s16w = _mm512_castsi256_si512(s16);
    UNROLL
    for (int k = 0; k < 4; k++) {
        __m512i idx =
            _mm512_add_epi16(_mm512_srli_epi16(position16(), 3), _mm512_set1_epi16((short)(4 * k)));
        b->sc[k] = _mm512_permutexvar_epi16(idx, s16w);
    }
    b->off16 = s16;
    b->d = _cvtsh_ss(x->d);
    b->doff = -32.0f * b->d;
}

/* 512-bit lanes: the first 256 bits from p, the last from q. */
T_VNNI static ALWAYS_INLINE __m512i join256(const void *p, const void *q) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p)),
                              _mm256_loadu_si256((const __m256i *)q), 1);
}

/* An activation block's quants in the order the weights were decoded in. */
T_VNNI static ALWAYS_INLINE void load_act(const block_q8_K *y, bool paired, __m512i av[4]) {
    UNROLL
    for (int k = 0; k < 4; k += 2) {
        const int8_t *q = y->qs + 64 * k;
        if (paired) {
            av[k] = join256(q, q + 64);
            av[k + 1] = join256(q + 32, q + 96);
        } else {
            av[k] = _mm512_loadu_si512((const void *)q);
            av[k + 1] = _mm512_loadu_si512((const void *)(q + 64));
        }
    }
}

/* acc += the super-block's dot with activation block y, whose quants av
 * holds in b's order (16 float lanes). */
T_VNNI static ALWAYS_INLINE __m512 kblock_dot(const kblock *b, const __m512i av[4],
                                              const block_q8_K *y, __m512 acc) {
    __m512i sum = _mm512_setzero_si512();
    UNROLL
    for (int k = 0; k < 4; k++) {
        sum = _mm512_dpwssd_epi32(sum, _mm512_maddubs_epi16(b->w[k], av[k]), b->sc[k]);
    }
    __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), b->off16);
    acc = _mm512_fmadd_ps(_mm512_set1_ps(b->d * y->d), _mm512_cvtepi32_ps(sum), acc);
    return _mm512_fmadd_ps(_mm512_set1_ps(b->doff * y->d),
                           _mm512_cvtepi32_ps(_mm512_zextsi256_si512(off)), acc);
}

/* Block i of a row; paired applies to Q4_K/Q5_K (Q6_K is natural). */
T_VNNI static ALWAYS_INLINE void decode_kblock(int kind, bool paired, const uint8_t *row, int64_t i,
                                               kblock *b) {
    if (kind == KIND_Q4_K) decode_q4_K((const block_q4_K *)row + i, paired, b);
    if (kind == KIND_Q5_K) decode_q5_K((const block_q5_K *)row + i, paired, b);
    if (kind == KIND_Q6_K) decode_q6_K((const block_q6_K *)row + i, b);
}

/* nr weight rows by NC activation rows: each weight super-block is decoded
 * once for all NC tokens (their activation blocks stay in L1 across the
 * rows); a single token pairs the weights' order with the activations'. */
T_VNNI static ALWAYS_INLINE void ktile(int kind, int NC, int64_t n, const uint8_t *w,
                                       size_t w_stride, int nr, const uint8_t *a, size_t a_stride,
                                       float *y, size_t y_stride) {
    int64_t nb = n / QK_K;
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * w_stride;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                         _mm512_setzero_ps()};
        for (int64_t i = 0; i < nb; i++) {
            kblock b;
            decode_kblock(kind, NC == 1, row, i, &b);
            UNROLL
            for (int c = 0; c < NC; c++) {
                const block_q8_K *yb = (const block_q8_K *)(a + (size_t)c * a_stride) + i;
                __m512i av[4];
                load_act(yb, NC == 1 && kind != KIND_Q6_K, av);
                acc[c] = kblock_dot(&b, av, yb, acc[c]);
            }
        }
        UNROLL
        for (int c = 0; c < NC; c++) y[(size_t)c * y_stride + r] = _mm512_reduce_add_ps(acc[c]);
    }
}

/* Decode: 4 rows against one token, interleaved block by block, so that
 * four independent streams and dependency chains are in flight. */
T_VNNI static ALWAYS_INLINE void krows4(int kind, int64_t n, const uint8_t *w, size_t w_stride,
                                        const uint8_t *a, float *y) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    int64_t nb = n / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const block_q8_K *yb = (const block_q8_K *)a + i;
        __m512i av[4];
        load_act(yb, kind != KIND_Q6_K, av);
        UNROLL
        for (int r = 0; r < 4; r++) {
            kblock b;
            decode_kblock(kind, true, w + (size_t)r * w_stride, i, &b);
            acc[r] = kblock_dot(&b, av, yb, acc[r]);
        }
    }
    /* The four horizontal sums at once: halves, then 128-bit lanes, then
     * within lanes. */
    __m512 t0 = _mm512_add_ps(_mm512_shuffle_f32x4(acc[0], acc[1], 0x44),
                              _mm512_shuffle_f32x4(acc[0], acc[1], 0xee));
    __m512 t1 = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2], acc[3], 0x44),
                              _mm512_shuffle_f32x4(acc[2], acc[3], 0xee));
    __m512 u =
        _mm512_add_ps(_mm512_shuffle_f32x4(t0, t1, 0x88), _mm512_shuffle_f32x4(t0, t1, 0xdd));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, 0x4e));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, 0xb1));
    __m512 sums = _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), u);
    _mm_storeu_ps(y, _mm512_castps512_ps128(sums));
}

T_VNNI static ALWAYS_INLINE void kgemm(int kind, int64_t n, const void *w, size_t w_stride, int nr,
                                       const void *a, size_t a_stride, int nc, float *y,
                                       size_t y_stride) {
    if (nc == 1 && nr == 4) {
        krows4(kind, n, w, w_stride, a, y);
        return;
    }
    switch (nc) {
    case 1: ktile(kind, 1, n, w, w_stride, nr, a, a_stride, y, y_stride); break;
    case 2: ktile(kind, 2, n, w, w_stride, nr, a, a_stride, y, y_stride); break;
    case 3: ktile(kind, 3, n, w, w_stride, nr, a, a_stride, y, y_stride); break;
    default: ktile(kind, 4, n, w, w_stride, nr, a, a_stride, y, y_stride); break;
    }
}

T_VNNI float vec_dot_q4_K_q8_K_avx512(int64_t n, const void *w, const void *a) {
    float y;
    ktile(KIND_Q4_K, 1, n, w, 0, 1, a, 0, &y, 1);
    return y;
}

T_VNNI float vec_dot_q5_K_q8_K_avx512(int64_t n, const void *w, const void *a) {
    float y;
    ktile(KIND_Q5_K, 1, n, w, 0, 1, a, 0, &y, 1);
    return y;
}

T_VNNI float vec_dot_q6_K_q8_K_avx512(int64_t n, const void *w, const void *a) {
    float y;
    ktile(KIND_Q6_K, 1, n, w, 0, 1, a, 0, &y, 1);
    return y;
}

T_VNNI void gemm_q4_K_q8_K_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                                  size_t a_stride, int nc, float *y, size_t y_stride) {
    kgemm(KIND_Q4_K, n, w, w_stride, nr, a, a_stride, nc, y, y_stride);
}

T_VNNI void gemm_q5_K_q8_K_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                                  size_t a_stride, int nc, float *y, size_t y_stride) {
    kgemm(KIND_Q5_K, n, w, w_stride, nr, a, a_stride, nc, y, y_stride);
}

T_VNNI void gemm_q6_K_q8_K_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                                  size_t a_stride, int nc, float *y, size_t y_stride) {
    kgemm(KIND_Q6_K, n, w, w_stride, nr, a, a_stride, nc, y, y_stride);
}

#endif /* x86-64 */
