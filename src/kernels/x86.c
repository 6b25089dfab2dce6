/* x86.c — AVX2 and AVX-512 kernels.
 *
 * Every function is compiled for its instruction set with a target
 * attribute, so the default build runs on any x86-64 and the dispatcher
 * (dispatch.c) picks what the CPU has.  Each kernel computes what its _ref
 * counterpart computes; tests/test_simd.c holds them to it.
 *
 * Integer dots: Q4_0 nibbles (0..15) and Q8_0 quants + 128 are unsigned
 * bytes multiplied by the signed activation quants; the offset (8 or 128)
 * times each activation block's sum is subtracted once per row through the
 * block's precomputed s = d * sum(q).
 */
#include "kernels/simd.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define T_AVX2   __attribute__((target("avx2,fma,f16c")))
#define T_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#define T_VNNI                                                                                     \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define T_BF16                                                                                     \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

/* ---------------------------------------------------------------- AVX2 */

T_AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T_AVX2 static inline float fp16_avx2(hearth_fp16 h) {
    return _cvtsh_ss(h);
}

/* 32 nibbles of a Q4_0 block as bytes 0..15, in element order. */
T_AVX2 static inline __m256i unpack_q4_avx2(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

/* Sums of products of unsigned u and signed s bytes, as 8 int32 lanes. */
T_AVX2 static inline __m256i dot_us_avx2(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* roundf on 8 lanes: half away from zero, as the reference quantizers round. */
T_AVX2 static inline __m256 roundf_avx2(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, x);
    __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 up = _mm256_cmp_ps(_mm256_sub_ps(a, t), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    t = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
    return _mm256_or_ps(t, _mm256_and_ps(sign, x));
}

T_AVX2 void quantize_row_q8a_avx2(const float *x, void *y, int64_t n) {
    block_q8a *b = y;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK8A; i++) {
        const float *xb = x + i * QK8A;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvttps_epi32(roundf_avx2(_mm256_mul_ps(v[k], vid)));
        /* Pack 32 int32 to int8 (packs interleave 128-bit lanes: fix with a permute). */
        __m256i p01 = _mm256_packs_epi32(q[0], q[1]), p23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)b[i].qs, p);
        __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), p);
        __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        b[i].d = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
        b[i].s = b[i].d * (float)_mm_cvtsi128_si32(s4);
    }
}

T_AVX2 float vec_dot_q4_0_q8a_avx2(int64_t n, const void *w, const void *a) {
    const block_q4_0 *x = w;
    const block_q8a *y = a;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float corr = 0.0f;
    int64_t nb = n / QK4_0, i = 0;
    for (; i + 1 < nb; i += 2) {
        float d0 = fp16_avx2(x[i].d), d1 = fp16_avx2(x[i + 1].d);
        __m256i p0 =
            dot_us_avx2(unpack_q4_avx2(x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));
        __m256i p1 = dot_us_avx2(unpack_q4_avx2(x[i + 1].qs),
                                 _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0 * y[i].d), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d1 * y[i + 1].d), _mm256_cvtepi32_ps(p1), acc1);
        corr += d0 * y[i].s + d1 * y[i + 1].s;
    }
    for (; i < nb; i++) {
        float d0 = fp16_avx2(x[i].d);
        __m256i p0 =
            dot_us_avx2(unpack_q4_avx2(x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0 * y[i].d), _mm256_cvtepi32_ps(p0), acc0);
        corr += d0 * y[i].s;
    }
    return hsum256(_mm256_add_ps(acc0, acc1)) - 8.0f * corr;
}

T_AVX2 float vec_dot_q8_0_q8a_avx2(int64_t n, const void *w, const void *a) {
    const block_q8_0 *x = w;
    const block_q8a *y = a;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t nb = n / QK8_0;
    for (int64_t i = 0; i < nb; i++) {
        __m256i qx = _mm256_loadu_si256((const __m256i *)x[i].qs);
        __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        /* |x| times y with x's sign: unsigned by signed, no offset needed. */
        __m256i p = dot_us_avx2(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
        __m256 d = _mm256_set1_ps(fp16_avx2(x[i].d) * y[i].d);
        if (i & 1) {
            acc1 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc1);
        } else {
            acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0);
        }
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

T_AVX2 float vec_dot_f32_f32_avx2(int64_t n, const void *w, const void *a) {
    const float *x = w, *y = a;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 4; k++) {
            acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * k), _mm256_loadu_ps(y + i + 8 * k),
                                     acc[k]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc[0]);
    }
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

T_AVX2 void quantize_row_f16_avx2(const float *x, void *y, int64_t n) {
    uint16_t *h = y;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) h[i] = hearth_f32_to_fp16(x[i]);
}

T_AVX2 static inline __m256 f16x8_avx2(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

T_AVX2 float vec_dot_f16_f16_avx2(int64_t n, const void *w, const void *a) {
    const uint16_t *x = w, *y = a;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 4; k++) {
            acc[k] = _mm256_fmadd_ps(f16x8_avx2(x + i + 8 * k), f16x8_avx2(y + i + 8 * k), acc[k]);
        }
    }
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(f16x8_avx2(x + i), f16x8_avx2(y + i), acc[0]);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) s += _cvtsh_ss(x[i]) * _cvtsh_ss(y[i]);
    return s;
}

T_AVX2 static inline __m256 bf16x8_avx2(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

T_AVX2 float vec_dot_bf16_bf16_avx2(int64_t n, const void *w, const void *a) {
    const uint16_t *x = w, *y = a;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 4; k++) {
            acc[k] =
                _mm256_fmadd_ps(bf16x8_avx2(x + i + 8 * k), bf16x8_avx2(y + i + 8 * k), acc[k]);
        }
    }
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(bf16x8_avx2(x + i), bf16x8_avx2(y + i), acc[0]);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) s += hearth_bf16_to_f32(x[i]) * hearth_bf16_to_f32(y[i]);
    return s;
}

T_AVX2 void axpy_f32_avx2(int64_t n, float a, const void *x, float *y) {
    const float *v = x;
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(va, _mm256_loadu_ps(v + i), _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * v[i];
}

T_AVX2 void axpy_f16_avx2(int64_t n, float a, const void *x, float *y) {
    const uint16_t *v = x;
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, f16x8_avx2(v + i), _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * _cvtsh_ss(v[i]);
}

/* ---------------------------------------------------------------- AVX-512 */

T_AVX512 void axpy_f32_avx512(int64_t n, float a, const void *x, float *y) {
    const float *v = x;
    __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm512_storeu_ps(y + i,
                         _mm512_fmadd_ps(va, _mm512_loadu_ps(v + i), _mm512_loadu_ps(y + i)));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(
            y + i, m,
            _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, v + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

T_AVX512 void axpy_f16_avx512(int64_t n, float a, const void *x, float *y) {
    const uint16_t *v = x;
    __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + i)));
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, xv, _mm512_loadu_ps(y + i)));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, v + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, xv, _mm512_maskz_loadu_ps(m, y + i)));
    }
}

/* roundf on 16 lanes: half away from zero. */
T_AVX512 static inline __m512 roundf_avx512(__m512 x) {
    __m512 a = _mm512_abs_ps(x);
    __m512 t = _mm512_roundscale_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(a, t), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    t = _mm512_mask_add_ps(t, up, t, _mm512_set1_ps(1.0f));
    return _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(t),
        _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u))));
}

T_AVX512 void quantize_row_q8a_avx512(const float *x, void *y, int64_t n) {
    block_q8a *b = y;
    for (int64_t i = 0; i < n / QK8A; i++) {
        __m512 v0 = _mm512_loadu_ps(x + i * QK8A), v1 = _mm512_loadu_ps(x + i * QK8A + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvttps_epi32(roundf_avx512(_mm512_mul_ps(v0, vid)));
        __m512i q1 = _mm512_cvttps_epi32(roundf_avx512(_mm512_mul_ps(v1, vid)));
        _mm_storeu_si128((__m128i *)b[i].qs, _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(b[i].qs + 16), _mm512_cvtsepi32_epi8(q1));
        b[i].d = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
        b[i].s = b[i].d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/* Two Q4_0 blocks' nibbles as 64 unsigned bytes, each block in element order. */
T_AVX512 static inline __m512i unpack_q4x2_avx512(const uint8_t *qs0, const uint8_t *qs1) {
    __m256i t = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)qs1),
                                 _mm_loadu_si128((const __m128i *)qs0));
    __m512i b = _mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1);
    /* b = [qs0 | qs1 | qs0>>4 | qs1>>4]: reorder 128-bit lanes to [qs0, qs0>>4, qs1, qs1>>4]. */
    b = _mm512_shuffle_i64x2(b, b, _MM_SHUFFLE(3, 1, 2, 0));
    return _mm512_and_si512(b, _mm512_set1_epi8(0x0f));
}

/* Two activation blocks' quants as 64 signed bytes. */
T_AVX512 static inline __m512i load_q8ax2_avx512(const block_q8a *y) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)y[0].qs)),
                              _mm256_loadu_si256((const __m256i *)y[1].qs), 1);
}

/* 16 lanes: the first 8 hold a, the last 8 hold b. */
T_AVX512 static inline __m512 pair_ps(float a, float b) {
    return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

T_VNNI float vec_dot_q4_0_q8a_avx512(int64_t n, const void *w, const void *a) {
    const block_q4_0 *x = w;
    const block_q8a *y = a;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    float corr = 0.0f;
    int64_t nb = n / QK4_0, i = 0;
    for (; i + 3 < nb; i += 4) {
        float d0 = _cvtsh_ss(x[i].d), d1 = _cvtsh_ss(x[i + 1].d);
        float d2 = _cvtsh_ss(x[i + 2].d), d3 = _cvtsh_ss(x[i + 3].d);
        __m512i p0 =
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), unpack_q4x2_avx512(x[i].qs, x[i + 1].qs),
                                load_q8ax2_avx512(y + i));
        __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                         unpack_q4x2_avx512(x[i + 2].qs, x[i + 3].qs),
                                         load_q8ax2_avx512(y + i + 2));
        acc0 = _mm512_fmadd_ps(pair_ps(d0 * y[i].d, d1 * y[i + 1].d), _mm512_cvtepi32_ps(p0), acc0);
        acc1 = _mm512_fmadd_ps(pair_ps(d2 * y[i + 2].d, d3 * y[i + 3].d), _mm512_cvtepi32_ps(p1),
                               acc1);
        corr += d0 * y[i].s + d1 * y[i + 1].s + d2 * y[i + 2].s + d3 * y[i + 3].s;
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (i < nb) s += vec_dot_q4_0_q8a_avx2((nb - i) * QK4_0, x + i, y + i);
    return s - 8.0f * corr;
}

T_VNNI float vec_dot_q8_0_q8a_avx512(int64_t n, const void *w, const void *a) {
    const block_q8_0 *x = w;
    const block_q8a *y = a;
    __m512 acc0 = _mm512_setzero_ps();
    float corr = 0.0f;
    const __m512i off = _mm512_set1_epi8((char)0x80);
    int64_t nb = n / QK8_0, i = 0;
    for (; i + 1 < nb; i += 2) {
        __m512i qx =
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x[i].qs)),
                               _mm256_loadu_si256((const __m256i *)x[i + 1].qs), 1);
        __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(qx, off),
                                        load_q8ax2_avx512(y + i));
        float d0 = _cvtsh_ss(x[i].d), d1 = _cvtsh_ss(x[i + 1].d);
        acc0 = _mm512_fmadd_ps(pair_ps(d0 * y[i].d, d1 * y[i + 1].d), _mm512_cvtepi32_ps(p), acc0);
        corr += d0 * y[i].s + d1 * y[i + 1].s;
    }
    float s = _mm512_reduce_add_ps(acc0) - 128.0f * corr;
    if (i < nb) s += vec_dot_q8_0_q8a_avx2(QK8_0, x + i, y + i);
    return s;
}

T_AVX512 float vec_dot_f32_f32_avx512(int64_t n, const void *w, const void *a) {
    const float *x = w, *y = a;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        for (int k = 0; k < 4; k++) {
            acc[k] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16 * k),
                                     _mm512_loadu_ps(y + i + 16 * k), acc[k]);
        }
    }
    for (; i + 16 <= n; i += 16) {
        acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc[0]);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        acc[1] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i),
                                 acc[1]);
    }
    return _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

T_AVX512 float vec_dot_f16_f16_avx512(int64_t n, const void *w, const void *a) {
    const uint16_t *x = w, *y = a;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        for (int k = 0; k < 4; k++) {
            __m512 wx = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i + 16 * k)));
            __m512 ay = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + i + 16 * k)));
            acc[k] = _mm512_fmadd_ps(wx, ay, acc[k]);
        }
    }
    for (; i + 16 <= n; i += 16) {
        __m512 wx = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i)));
        __m512 ay = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + i)));
        acc[0] = _mm512_fmadd_ps(wx, ay, acc[0]);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 wx = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
        __m512 ay = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, y + i));
        acc[1] = _mm512_fmadd_ps(wx, ay, acc[1]);
    }
    return _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

T_BF16 void quantize_row_bf16_avx512(const float *x, void *y, int64_t n) {
    uint16_t *h = y;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512((void *)(h + i), (__m512i)v);
    }
    for (; i < n; i++) h[i] = hearth_f32_to_bf16(x[i]);
}

T_BF16 float vec_dot_bf16_bf16_avx512(int64_t n, const void *w, const void *a) {
    const uint16_t *x = w, *y = a;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_loadu_si512((const void *)(x + i)),
                                (__m512bh)_mm512_loadu_si512((const void *)(y + i)));
        acc1 = _mm512_dpbf16_ps(acc1, (__m512bh)_mm512_loadu_si512((const void *)(x + i + 32)),
                                (__m512bh)_mm512_loadu_si512((const void *)(y + i + 32)));
    }
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_loadu_si512((const void *)(x + i)),
                                (__m512bh)_mm512_loadu_si512((const void *)(y + i)));
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < n; i++) s += hearth_bf16_to_f32(x[i]) * hearth_bf16_to_f32(y[i]);
    return s;
}

/* ---------------------------------------------------------------- AVX-512 tiles */

/* A tile of up to 4 weight rows by up to 4 activation rows: each pair of
 * blocks of a weight row is unpacked once and multiplied by every
 * activation row.  Partial tiles fall back to the dot kernels. */
#define TILE 4

T_VNNI static void gemm_q8_kernel(int64_t nb, const void *w, size_t w_stride, const void *a,
                                  size_t a_stride, float *y, size_t y_stride, bool q4) {
    __m512 acc[TILE][TILE];
    float corr[TILE][TILE];
    for (int r = 0; r < TILE; r++) {
        for (int c = 0; c < TILE; c++) {
            acc[r][c] = _mm512_setzero_ps();
            corr[r][c] = 0.0f;
        }
    }
    const __m512i off = _mm512_set1_epi8((char)0x80);
    for (int64_t i = 0; i < nb; i += 2) {
        __m512i wq[TILE];
        __m512 wd[TILE];
        float d0[TILE], d1[TILE];
        for (int r = 0; r < TILE; r++) {
            const uint8_t *row = (const uint8_t *)w + r * w_stride;
            if (q4) {
                const block_q4_0 *x = (const block_q4_0 *)row + i;
                wq[r] = unpack_q4x2_avx512(x[0].qs, x[1].qs);
                d0[r] = _cvtsh_ss(x[0].d);
                d1[r] = _cvtsh_ss(x[1].d);
            } else {
                const block_q8_0 *x = (const block_q8_0 *)row + i;
                __m512i q = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x[0].qs)),
                    _mm256_loadu_si256((const __m256i *)x[1].qs), 1);
                wq[r] = _mm512_xor_si512(q, off);
                d0[r] = _cvtsh_ss(x[0].d);
                d1[r] = _cvtsh_ss(x[1].d);
            }
            wd[r] = pair_ps(d0[r], d1[r]);
        }
        for (int c = 0; c < TILE; c++) {
            const block_q8a *ya = (const block_q8a *)((const uint8_t *)a + c * a_stride) + i;
            __m512i aq = load_q8ax2_avx512(ya);
            __m512 ad = pair_ps(ya[0].d, ya[1].d);
            for (int r = 0; r < TILE; r++) {
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r], aq);
                acc[r][c] =
                    _mm512_fmadd_ps(_mm512_mul_ps(wd[r], ad), _mm512_cvtepi32_ps(p), acc[r][c]);
                corr[r][c] += d0[r] * ya[0].s + d1[r] * ya[1].s;
            }
        }
    }
    float offset = q4 ? 8.0f : 128.0f;
    for (int c = 0; c < TILE; c++) {
        for (int r = 0; r < TILE; r++) {
            y[c * y_stride + r] = _mm512_reduce_add_ps(acc[r][c]) - offset * corr[r][c];
        }
    }
}

static void gemm_edges(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                       size_t a_stride, int nc, float *y, size_t y_stride, vec_dot_fn dot) {
    for (int c = 0; c < nc; c++) {
        for (int r = 0; r < nr; r++) {
            y[c * y_stride + r] =
                dot(n, (const uint8_t *)w + r * w_stride, (const uint8_t *)a + c * a_stride);
        }
    }
}

void gemm_q4_0_q8a_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                          size_t a_stride, int nc, float *y, size_t y_stride) {
    int64_t nb = n / QK4_0;
    if (nr == TILE && nc == TILE && nb % 2 == 0) {
        gemm_q8_kernel(nb, w, w_stride, a, a_stride, y, y_stride, true);
    } else {
        gemm_edges(n, w, w_stride, nr, a, a_stride, nc, y, y_stride, vec_dot_q4_0_q8a_avx512);
    }
}

void gemm_q8_0_q8a_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                          size_t a_stride, int nc, float *y, size_t y_stride) {
    int64_t nb = n / QK8_0;
    if (nr == TILE && nc == TILE && nb % 2 == 0) {
        gemm_q8_kernel(nb, w, w_stride, a, a_stride, y, y_stride, false);
    } else {
        gemm_edges(n, w, w_stride, nr, a, a_stride, nc, y, y_stride, vec_dot_q8_0_q8a_avx512);
    }
}

/* ---------------------------------------------------------------- AVX-512 attention */

/* e^x on 16 lanes (x <= ~88): 2^n * p(r) with r = x - n ln 2, |r| <= ln2/2,
 * p a degree-6 Taylor polynomial; relative error below 3e-7. */
T_AVX512 static inline __m512 exp_avx512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __mmask16 lane_mask(int n) {
    return n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
}

T_AVX512 void attn_head_f16_avx512(const float *q, const void *k, size_t k_stride, const void *v,
                                   size_t v_stride, int hd, int hdv, int n_pos, float scale,
                                   float *scores, uint16_t *qh, float *out) {
    /* The query, rounded to f16 as the cache is, then widened once. */
    float qf[512];
    quantize_row_f16_avx2(q, qh, hd);
    for (int d = 0; d < hd; d++) qf[d] = _cvtsh_ss(qh[d]);
    const uint8_t *kb = k, *vb = v;
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int p = 0; p < n_pos; p++) {
        const uint16_t *kr = (const uint16_t *)(kb + (size_t)p * k_stride);
        __m512 acc = _mm512_setzero_ps();
        for (int d = 0; d < hd; d += 16) {
            __mmask16 m = lane_mask(hd - d);
            __m512 kf = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, kr + d));
            acc = _mm512_fmadd_ps(kf, _mm512_maskz_loadu_ps(m, qf + d), acc);
        }
        scores[p] = _mm512_reduce_add_ps(acc) * scale;
    }
    int p = 0;
    for (; p + 16 <= n_pos; p += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(scores + p));
    float max = _mm512_reduce_max_ps(vmax);
    for (; p < n_pos; p++) max = scores[p] > max ? scores[p] : max;
    __m512 vsum = _mm512_setzero_ps(), vm = _mm512_set1_ps(max);
    for (p = 0; p < n_pos; p += 16) {
        __mmask16 m = lane_mask(n_pos - p);
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, scores + p), vm));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(scores + p, m, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
    /* The weights rounded to f16, as they meet the f16 values. */
    for (p = 0; p < n_pos; p += 16) {
        __mmask16 m = lane_mask(n_pos - p);
        __m512 w = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, scores + p), inv);
        w = _mm512_cvtph_ps(_mm512_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm512_mask_storeu_ps(scores + p, m, w);
    }
    for (int d = 0; d < hdv; d += 16) {
        __mmask16 m = lane_mask(hdv - d);
        __m512 acc = _mm512_setzero_ps();
        for (p = 0; p < n_pos; p++) {
            const uint16_t *vr = (const uint16_t *)(vb + (size_t)p * v_stride);
            __m512 vf = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, vr + d));
            acc = _mm512_fmadd_ps(_mm512_set1_ps(scores[p]), vf, acc);
        }
        _mm512_mask_storeu_ps(out + d, m, acc);
    }
}

/* ---------------------------------------------------------------- argmax */

/* Two passes: the largest value (a lane keeps a new value only when it is
 * greater, so NaNs never win), then the first index holding it. */
T_AVX512 int32_t argmax_f32_avx512(const float *x, int32_t n) {
    if (x[0] != x[0]) return 0;
    __m512 acc = _mm512_set1_ps(x[0]);
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        acc = _mm512_mask_mov_ps(acc, _mm512_cmp_ps_mask(v, acc, _CMP_GT_OQ), v);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        acc = _mm512_mask_mov_ps(acc, m & _mm512_cmp_ps_mask(v, acc, _CMP_GT_OQ), v);
    }
    __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(acc));
    for (i = 0; i + 16 <= n; i += 16) {
        __mmask16 eq = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), top, _CMP_EQ_OQ);
        if (eq) return i + __builtin_ctz(eq);
    }
    for (; i < n; i++) {
        if (x[i] == _mm512_cvtss_f32(top)) return i;
    }
    return argmax_f32_ref(x, n); /* not reached */
}

/* ---------------------------------------------------------------- AVX-512 VBMI + VNNI */

#define T_VBMI                                                                                     \
    __attribute__((                                                                                \
        target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi")))

/* A mask of the first n (< 64) bytes, or all 64. */
static inline uint64_t byte_mask(int64_t n) {
    return n >= 64 ? ~0ull : n <= 0 ? 0ull : (1ull << n) - 1;
}

/* Writes one group of t blocks (4, or fewer at the end of a row) in the
 * layout of block_q8x4; returns the bytes written. */
T_VBMI static size_t quantize_group_q8x4(const float *x, uint8_t *out, int64_t t, int32_t offset) {
    int8_t *lo = (int8_t *)out, *hi = lo + 16 * t;
    int32_t *corr = (int32_t *)(hi + 16 * t);
    float *d = (float *)(corr + 4 * t);
    for (int64_t b = 0; b < t; b++) {
        __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvttps_epi32(roundf_avx512(_mm512_mul_ps(v0, vid)));
        __m512i q1 = _mm512_cvttps_epi32(roundf_avx512(_mm512_mul_ps(v1, vid)));
        _mm_storeu_si128((__m128i *)(lo + 16 * b), _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(hi + 16 * b), _mm512_cvtsepi32_epi8(q1));
        int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        _mm_storeu_si128((__m128i *)(corr + 4 * b), _mm_set1_epi32(-offset * sum / 4));
        _mm_storeu_ps(d + 4 * b, _mm_set1_ps(_cvtsh_ss(_cvtss_sh(db, _MM_FROUND_TO_NEAREST_INT))));
    }
    return (size_t)(64 * t);
}

T_VBMI static void quantize_q8x4_avx512(const float *x, void *y, int64_t n, int32_t offset) {
    int64_t nb = n / 32;
    uint8_t *out = y;
    for (int64_t b = 0; b < nb; b += 4) {
        out += quantize_group_q8x4(x + 32 * b, out, nb - b < 4 ? nb - b : 4, offset);
    }
}

void quantize_row_q8x4_o8_avx512(const float *x, void *y, int64_t n) {
    quantize_q8x4_avx512(x, y, n, 8);
}

void quantize_row_q8x4_o128_avx512(const float *x, void *y, int64_t n) {
    quantize_q8x4_avx512(x, y, n, 128);
}

/* Byte indices into a group of 4 blocks of 18 (Q4_0) or 34 (Q8_0) bytes,
 * each block a 2-byte scale then its quants: the 16 quant bytes of each
 * block, and each block's scale bytes repeated for its 4 lanes
 * (qs[j] = size * (j / 16) + 2 + j % 16, d[j] = size * (j / 8) + j % 2). */
typedef struct q8x4_indices {
    uint8_t qs[64];
    uint8_t d[64];
} q8x4_indices;

static const q8x4_indices indices_q4_0 = {
    {
        2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 22, 23, 24, 25,
        26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49,
        50, 51, 52, 53, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71,
    },
    {
        0,  1,  0,  1,  0,  1,  0,  1,  18, 19, 18, 19, 18, 19, 18, 19, 36, 37, 36, 37, 36, 37,
        36, 37, 54, 55, 54, 55, 54, 55, 54, 55, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
        0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    },
};

static const q8x4_indices indices_q8_0 = {
    {
        2,   3,   4,   5,   6,   7,   8,   9,   10,  11,  12,  13,  14,  15,  16,  17,
        36,  37,  38,  39,  40,  41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51,
        70,  71,  72,  73,  74,  75,  76,  77,  78,  79,  80,  81,  82,  83,  84,  85,
        104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119,
    },
    {
        0,  1,  0,  1,  0,  1,  0,  1,  34,  35,  34,  35,  34,  35,  34,  35,
        68, 69, 68, 69, 68, 69, 68, 69, 102, 103, 102, 103, 102, 103, 102, 103,
        0,  0,  0,  0,  0,  0,  0,  0,  0,   0,   0,   0,   0,   0,   0,   0,
        0,  0,  0,  0,  0,  0,  0,  0,  0,   0,   0,   0,   0,   0,   0,   0,
    },
};

/* One group's contribution: integer dots seeded with the correction, then
 * scaled by weight and activation scales.  lanes masks a partial group. */
T_VBMI static inline __m512 group_dot(__m512 acc, __m512i lo, __m512i hi, __m512 dw,
                                      const uint8_t *act, int64_t t, __mmask16 lanes) {
    const int8_t *alo = (const int8_t *)act, *ahi = alo + 16 * t;
    const int32_t *corr = (const int32_t *)(ahi + 16 * t);
    const float *ad = (const float *)(corr + 4 * t);
    __m512i i;
    __m512 d;
    if (t == 4) {
        i = _mm512_loadu_si512((const void *)corr);
        i = _mm512_dpbusd_epi32(i, lo, _mm512_loadu_si512((const void *)alo));
        i = _mm512_dpbusd_epi32(i, hi, _mm512_loadu_si512((const void *)ahi));
        d = _mm512_mul_ps(dw, _mm512_loadu_ps(ad));
    } else {
        __mmask64 mb = byte_mask(16 * t);
        i = _mm512_maskz_loadu_epi32(lanes, corr);
        i = _mm512_dpbusd_epi32(i, lo, _mm512_maskz_loadu_epi8(mb, alo));
        i = _mm512_dpbusd_epi32(i, hi, _mm512_maskz_loadu_epi8(mb, ahi));
        d = _mm512_maskz_mul_ps(lanes, dw, _mm512_maskz_loadu_ps(lanes, ad));
    }
    return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(i), acc);
}

/* A group of t (<= 4) weight blocks decoded for the dot: quants of each
 * block's first and second halves as unsigned bytes, and the scales in the
 * 4 lanes of each block. */
typedef struct wgroup {
    __m512i lo, hi;
    __m512 dw;
} wgroup;

#define ALWAYS_INLINE inline __attribute__((always_inline))

T_VBMI static ALWAYS_INLINE wgroup decode_q4_0(const uint8_t *p, int64_t t) {
    const __m512i idx_qs = _mm512_loadu_si512(indices_q4_0.qs);
    const __m512i idx_d = _mm512_loadu_si512(indices_q4_0.d);
    const __m512i m0f = _mm512_set1_epi8(0x0f);
    __m512i l0, l1;
    if (t == 4) {
        l0 = _mm512_loadu_si512((const void *)p);
        l1 = _mm512_maskz_loadu_epi8(0xff, p + 64);
    } else {
        l0 = _mm512_maskz_loadu_epi8(byte_mask(18 * t), p);
        l1 = _mm512_setzero_si512();
    }
    __m512i qs = _mm512_permutex2var_epi8(l0, idx_qs, l1);
    wgroup g;
    g.lo = _mm512_and_si512(qs, m0f);
    g.hi = _mm512_and_si512(_mm512_srli_epi16(qs, 4), m0f);
    g.dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi8(idx_d, l0)));
    return g;
}

T_VBMI static ALWAYS_INLINE wgroup decode_q8_0(const uint8_t *p, int64_t t) {
    const __m512i idx_qs = _mm512_loadu_si512(indices_q8_0.qs);
    const __m512i idx_d = _mm512_loadu_si512(indices_q8_0.d);
    const __m512i off = _mm512_set1_epi8((char)0x80);
    int64_t bytes = 34 * t;
    /* Windows at 0 and 64 hold the first halves, at 16 and 80 the second. */
    __m512i a0 = _mm512_maskz_loadu_epi8(byte_mask(bytes), p);
    __m512i a1 = _mm512_maskz_loadu_epi8(byte_mask(bytes - 64), p + 64);
    __m512i b0 = _mm512_maskz_loadu_epi8(byte_mask(bytes - 16), p + 16);
    __m512i b1 = _mm512_maskz_loadu_epi8(byte_mask(bytes - 80), p + 80);
    wgroup g;
    g.lo = _mm512_xor_si512(_mm512_permutex2var_epi8(a0, idx_qs, a1), off);
    g.hi = _mm512_xor_si512(_mm512_permutex2var_epi8(b0, idx_qs, b1), off);
    g.dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi8(a0, idx_d, a1)));
    return g;
}

/* The scales of a repacked group: block j's f16 scale in lanes 4j..4j+3. */
T_VBMI static ALWAYS_INLINE __m512 repacked_scales(const uint8_t *sc, int64_t t) {
    const __m256i idx = _mm256_setr_epi16(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m128i d = t == 4 ? _mm_loadl_epi64((const __m128i *)sc)
                       : _mm_maskz_loadu_epi16((__mmask8)((1u << t) - 1), sc);
    return _mm512_cvtph_ps(_mm256_permutexvar_epi16(idx, _mm256_castsi128_si256(d)));
}

/* Q4_0 rows repacked at load (see kernel_repack_row): the 16 quant bytes
 * of every block in order, then every block's f16 scale.  A group of 4
 * blocks is one 64-byte load of quants and one 8-byte load of scales, with
 * no byte permutes, and each row streams as one run of whole lines. */
T_VBMI static ALWAYS_INLINE wgroup decode_q4_0r(const uint8_t *row, int64_t nb, int64_t b,
                                                int64_t t) {
    const __m512i m0f = _mm512_set1_epi8(0x0f);
    __m512i qs = t == 4 ? _mm512_loadu_si512((const void *)(row + 16 * b))
                        : _mm512_maskz_loadu_epi8(byte_mask(16 * t), row + 16 * b);
    wgroup g;
    g.lo = _mm512_and_si512(qs, m0f);
    g.hi = _mm512_and_si512(_mm512_srli_epi16(qs, 4), m0f);
    g.dw = repacked_scales(row + 16 * nb + 2 * b, t);
    return g;
}

/* Q8_0 rows repacked at load: each group of 4 blocks (t at the end of a
 * row) as the first 16 quants of its blocks then their last 16, the
 * activations' own layout, then every block's f16 scale: two loads and
 * a sign flip, no byte permutes. */
T_VBMI static ALWAYS_INLINE wgroup decode_q8_0r(const uint8_t *row, int64_t nb, int64_t b,
                                                int64_t t) {
    const __m512i off = _mm512_set1_epi8((char)0x80);
    const uint8_t *q = row + 32 * b;
    wgroup g;
    if (t == 4) {
        g.lo = _mm512_loadu_si512((const void *)q);
        g.hi = _mm512_loadu_si512((const void *)(q + 64));
    } else {
        g.lo = _mm512_maskz_loadu_epi8(byte_mask(16 * t), q);
        g.hi = _mm512_maskz_loadu_epi8(byte_mask(16 * t), q + 16 * t);
    }
    g.lo = _mm512_xor_si512(g.lo, off);
    g.hi = _mm512_xor_si512(g.hi, off);
    g.dw = repacked_scales(row + 32 * nb + 2 * b, t);
    return g;
}

/* Group b (t blocks) of a row of nb blocks in layout bs: 18 Q4_0, 34 Q8_0,
 * 16 repacked Q4_0, 32 repacked Q8_0 (bytes of quants per block). */
T_VBMI static ALWAYS_INLINE wgroup decode_at(const uint8_t *row, int64_t nb, int64_t b, int64_t t,
                                             int bs) {
    if (bs == 16) return decode_q4_0r(row, nb, b, t);
    if (bs == 32) return decode_q8_0r(row, nb, b, t);
    return bs == 18 ? decode_q4_0(row + 18 * b, t) : decode_q8_0(row + 34 * b, t);
}

/* How far ahead of the block being read a row's bytes are prefetched: the
 * repacked rows stream fast enough to need more requests in flight. */
static inline int64_t prefetch_ahead(int bs) {
    return bs == 16 || bs == 32 ? 6144 : bs == 18 ? 4096 : 2048;
}

/* Dot of one weight row (layout bs, see decode_at) with one activation row. */
T_VBMI static ALWAYS_INLINE float dot_q8x4(int64_t n, const uint8_t *x, const uint8_t *y, int bs) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t nb = n / 32;
    for (int64_t b = 0; b < nb; b += 4) {
        int64_t t = nb - b < 4 ? nb - b : 4;
        const uint8_t *p = x + bs * b;
        _mm_prefetch((const char *)p + prefetch_ahead(bs), _MM_HINT_T0);
        if (bs >= 32) _mm_prefetch((const char *)p + prefetch_ahead(bs) + 64, _MM_HINT_T0);
        wgroup g = decode_at(x, nb, b, t, bs);
        __mmask16 lanes = (__mmask16)((1u << (4 * t)) - 1);
        if (b & 4) {
            acc1 = group_dot(acc1, g.lo, g.hi, g.dw, y + 64 * b, t, lanes);
        } else {
            acc0 = group_dot(acc0, g.lo, g.hi, g.dw, y + 64 * b, t, lanes);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

T_VBMI float vec_dot_q4_0_q8x4_avx512(int64_t n, const void *w, const void *a) {
    return dot_q8x4(n, w, a, 18);
}

T_VBMI float vec_dot_q8_0_q8x4_avx512(int64_t n, const void *w, const void *a) {
    return dot_q8x4(n, w, a, 34);
}

T_VBMI float vec_dot_q4_0r_q8x4_avx512(int64_t n, const void *w, const void *a) {
    return dot_q8x4(n, w, a, 16);
}

T_VBMI float vec_dot_q8_0r_q8x4_avx512(int64_t n, const void *w, const void *a) {
    return dot_q8x4(n, w, a, 32);
}

/* group_dot for a full group (4 blocks), without masks. */
T_VBMI static ALWAYS_INLINE __m512 group_dot4(__m512 acc, wgroup g, const uint8_t *act) {
    __m512i i = _mm512_loadu_si512((const void *)(act + 128));
    i = _mm512_dpbusd_epi32(i, g.lo, _mm512_loadu_si512((const void *)act));
    i = _mm512_dpbusd_epi32(i, g.hi, _mm512_loadu_si512((const void *)(act + 64)));
    __m512 d = _mm512_mul_ps(g.dw, _mm512_loadu_ps((const float *)(act + 192)));
    return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(i), acc);
}

/* Prefill tile: 2 weight rows by 4 activation rows, accumulators in
 * registers.  Each weight group is decoded once for the 4 tokens and each
 * token's activation group is read once for the 2 rows.  Rows or tokens
 * past nr / nc repeat the last one and their results are dropped. */
T_VBMI static ALWAYS_INLINE void tile_q8x4(int64_t n, const uint8_t *w, size_t w_stride, int nr,
                                           const uint8_t *a, size_t a_stride, int nc, float *y,
                                           size_t y_stride, int bs) {
    const uint8_t *r0 = w, *r1 = nr > 1 ? w + w_stride : w;
    const uint8_t *c0 = a, *c1 = a + (nc > 1 ? a_stride : 0);
    const uint8_t *c2 = a + (nc > 2 ? 2 * a_stride : 0), *c3 = a + (nc > 3 ? 3 * a_stride : 0);
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    int64_t nb = n / 32, b = 0;
    for (; b + 4 <= nb; b += 4) {
        wgroup g0 = decode_at(r0, nb, b, 4, bs);
        wgroup g1 = decode_at(r1, nb, b, 4, bs);
        int64_t o = 64 * b;
        a00 = group_dot4(a00, g0, c0 + o);
        a10 = group_dot4(a10, g1, c0 + o);
        a01 = group_dot4(a01, g0, c1 + o);
        a11 = group_dot4(a11, g1, c1 + o);
        a02 = group_dot4(a02, g0, c2 + o);
        a12 = group_dot4(a12, g1, c2 + o);
        a03 = group_dot4(a03, g0, c3 + o);
        a13 = group_dot4(a13, g1, c3 + o);
    }
    if (b < nb) { /* a partial last group */
        int64_t t = nb - b, o = 64 * b;
        __mmask16 lanes = (__mmask16)((1u << (4 * t)) - 1);
        wgroup g0 = decode_at(r0, nb, b, t, bs);
        wgroup g1 = decode_at(r1, nb, b, t, bs);
        a00 = group_dot(a00, g0.lo, g0.hi, g0.dw, c0 + o, t, lanes);
        a10 = group_dot(a10, g1.lo, g1.hi, g1.dw, c0 + o, t, lanes);
        a01 = group_dot(a01, g0.lo, g0.hi, g0.dw, c1 + o, t, lanes);
        a11 = group_dot(a11, g1.lo, g1.hi, g1.dw, c1 + o, t, lanes);
        a02 = group_dot(a02, g0.lo, g0.hi, g0.dw, c2 + o, t, lanes);
        a12 = group_dot(a12, g1.lo, g1.hi, g1.dw, c2 + o, t, lanes);
        a03 = group_dot(a03, g0.lo, g0.hi, g0.dw, c3 + o, t, lanes);
        a13 = group_dot(a13, g1.lo, g1.hi, g1.dw, c3 + o, t, lanes);
    }
    float out[2][4] = {
        {_mm512_reduce_add_ps(a00), _mm512_reduce_add_ps(a01), _mm512_reduce_add_ps(a02),
         _mm512_reduce_add_ps(a03)},
        {_mm512_reduce_add_ps(a10), _mm512_reduce_add_ps(a11), _mm512_reduce_add_ps(a12),
         _mm512_reduce_add_ps(a13)},
    };
    for (int c = 0; c < nc; c++) {
        for (int r = 0; r < nr; r++) y[c * y_stride + r] = out[r][c];
    }
}

/* Eight accumulators reduced to eight floats with shuffles instead of eight
 * separate horizontal sums. */
T_AVX512 static ALWAYS_INLINE __m256 reduce8_avx512(__m512 a, __m512 b, __m512 c, __m512 d,
                                                    __m512 e, __m512 f, __m512 g, __m512 h) {
    __m512 s0 = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
    __m512 s1 = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
    __m512 s2 = _mm512_add_ps(_mm512_shuffle_f32x4(e, f, 0x44), _mm512_shuffle_f32x4(e, f, 0xee));
    __m512 s3 = _mm512_add_ps(_mm512_shuffle_f32x4(g, h, 0x44), _mm512_shuffle_f32x4(g, h, 0xee));
    __m512 t0 =
        _mm512_add_ps(_mm512_shuffle_f32x4(s0, s1, 0x88), _mm512_shuffle_f32x4(s0, s1, 0xdd));
    __m512 t1 =
        _mm512_add_ps(_mm512_shuffle_f32x4(s2, s3, 0x88), _mm512_shuffle_f32x4(s2, s3, 0xdd));
    t0 = _mm512_add_ps(t0, _mm512_permute_ps(t0, 0xb1));
    t0 = _mm512_add_ps(t0, _mm512_permute_ps(t0, 0x4e));
    t1 = _mm512_add_ps(t1, _mm512_permute_ps(t1, 0xb1));
    t1 = _mm512_add_ps(t1, _mm512_permute_ps(t1, 0x4e));
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castps512_ps256(_mm512_permutex2var_ps(t0, idx, t1));
}

/* Prefill tile of 4 weight rows by 4 tokens: 16 accumulators. */
T_VBMI static ALWAYS_INLINE void tile4_q8x4(int64_t n, const uint8_t *w, size_t w_stride,
                                            const uint8_t *a, size_t a_stride, int nc, float *y,
                                            size_t y_stride, int bs) {
    const uint8_t *r0 = w, *r1 = w + w_stride, *r2 = w + 2 * w_stride, *r3 = w + 3 * w_stride;
    const uint8_t *c0 = a, *c1 = a + (nc > 1 ? a_stride : 0);
    const uint8_t *c2 = a + (nc > 2 ? 2 * a_stride : 0), *c3 = a + (nc > 3 ? 3 * a_stride : 0);
    __m512 z = _mm512_setzero_ps();
    __m512 a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
    __m512 a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
    int64_t nb = n / 32;
    for (int64_t b = 0; b < nb; b += 4) {
        int64_t o = 64 * b;
        wgroup g0 = decode_at(r0, nb, b, 4, bs);
        wgroup g1 = decode_at(r1, nb, b, 4, bs);
        a00 = group_dot4(a00, g0, c0 + o);
        a10 = group_dot4(a10, g1, c0 + o);
        a01 = group_dot4(a01, g0, c1 + o);
        a11 = group_dot4(a11, g1, c1 + o);
        a02 = group_dot4(a02, g0, c2 + o);
        a12 = group_dot4(a12, g1, c2 + o);
        a03 = group_dot4(a03, g0, c3 + o);
        a13 = group_dot4(a13, g1, c3 + o);
        wgroup g2 = decode_at(r2, nb, b, 4, bs);
        wgroup g3 = decode_at(r3, nb, b, 4, bs);
        a20 = group_dot4(a20, g2, c0 + o);
        a30 = group_dot4(a30, g3, c0 + o);
        a21 = group_dot4(a21, g2, c1 + o);
        a31 = group_dot4(a31, g3, c1 + o);
        a22 = group_dot4(a22, g2, c2 + o);
        a32 = group_dot4(a32, g3, c2 + o);
        a23 = group_dot4(a23, g2, c3 + o);
        a33 = group_dot4(a33, g3, c3 + o);
    }
    float out[16];
    _mm256_storeu_ps(out, reduce8_avx512(a00, a10, a20, a30, a01, a11, a21, a31));
    _mm256_storeu_ps(out + 8, reduce8_avx512(a02, a12, a22, a32, a03, a13, a23, a33));
    for (int c = 0; c < nc; c++) {
        for (int r = 0; r < 4; r++) y[c * y_stride + r] = out[4 * c + r];
    }
}

#ifndef GEMV_AHEAD
#define GEMV_AHEAD 4096
#endif

/* Decode: 4 weight rows against one token; the token's activation group is
 * loaded once for the 4 rows, and 4 independent streams keep more memory
 * requests in flight than one row at a time. */
T_VBMI static ALWAYS_INLINE void gemv4_q8x4(int64_t n, const uint8_t *w, size_t w_stride,
                                            const uint8_t *a, float *y, int bs) {
    const uint8_t *r0 = w, *r1 = w + w_stride, *r2 = w + 2 * w_stride, *r3 = w + 3 * w_stride;
    __m512 z = _mm512_setzero_ps(), a0 = z, a1 = z, a2 = z, a3 = z;
    int64_t nb = n / 32;
    for (int64_t b = 0; b < nb; b += 4) {
        int64_t o = 64 * b;
        for (int k = 0; k < (bs > 32 ? 3 : bs > 16 ? 2 : 1); k++) {
            int64_t at = bs * b + (bs == 16 || bs == 32 ? GEMV_AHEAD : 2048) + 64 * k;
            _mm_prefetch((const char *)r0 + at, _MM_HINT_T0);
            _mm_prefetch((const char *)r1 + at, _MM_HINT_T0);
            _mm_prefetch((const char *)r2 + at, _MM_HINT_T0);
            _mm_prefetch((const char *)r3 + at, _MM_HINT_T0);
        }
        wgroup g0 = decode_at(r0, nb, b, 4, bs);
        wgroup g1 = decode_at(r1, nb, b, 4, bs);
        wgroup g2 = decode_at(r2, nb, b, 4, bs);
        wgroup g3 = decode_at(r3, nb, b, 4, bs);
        a0 = group_dot4(a0, g0, a + o);
        a1 = group_dot4(a1, g1, a + o);
        a2 = group_dot4(a2, g2, a + o);
        a3 = group_dot4(a3, g3, a + o);
    }
    __m256 r = reduce8_avx512(a0, a1, a2, a3, z, z, z, z);
    _mm_storeu_ps(y, _mm256_castps256_ps128(r));
}

/* Any tile up to 4 x 4 of layout bs: full 4-row tiles of whole groups at
 * once, else 2-row strips. */
T_VBMI static ALWAYS_INLINE void gemm_strips(int64_t n, const void *w, size_t w_stride, int nr,
                                             const void *a, size_t a_stride, int nc, float *y,
                                             size_t y_stride, int bs) {
    if (nr == 4 && n % 128 == 0) {
        if (nc == 1) {
            gemv4_q8x4(n, w, w_stride, a, y, bs);
        } else {
            tile4_q8x4(n, w, w_stride, a, a_stride, nc, y, y_stride, bs);
        }
        return;
    }
    for (int r = 0; r < nr; r += 2) {
        tile_q8x4(n, (const uint8_t *)w + (size_t)r * w_stride, w_stride, nr - r < 2 ? nr - r : 2,
                  a, a_stride, nc, y + r, y_stride, bs);
    }
}

T_VBMI void gemm_q4_0_q8x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                                  size_t a_stride, int nc, float *y, size_t y_stride) {
    gemm_strips(n, w, w_stride, nr, a, a_stride, nc, y, y_stride, 18);
}

T_VBMI void gemm_q8_0_q8x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                                  size_t a_stride, int nc, float *y, size_t y_stride) {
    gemm_strips(n, w, w_stride, nr, a, a_stride, nc, y, y_stride, 34);
}

T_VBMI void gemm_q4_0r_q8x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                                   size_t a_stride, int nc, float *y, size_t y_stride) {
    gemm_strips(n, w, w_stride, nr, a, a_stride, nc, y, y_stride, 16);
}

T_VBMI void gemm_q8_0r_q8x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                                   size_t a_stride, int nc, float *y, size_t y_stride) {
    gemm_strips(n, w, w_stride, nr, a, a_stride, nc, y, y_stride, 32);
}

#endif /* x86-64 */
