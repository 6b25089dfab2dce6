/* kernels.cuh — the device kernels of the CUDA backend (included once, by
 * forward.cu).
 *
 * Layout of weights on the device (upload.cu writes it):
 *   F32, F16, BF16  as in the file: rows of ne0 elements, expert matrices
 *                   back to back;
 *   Q4_0            split: q = 16 bytes of nibbles per block (byte j: low
 *                   nibble weight j, high nibble weight j + 16), d = one
 *                   half scale per block, both (rows, ne0 / 32) row-major, so
 *                   a lane reads one block with one 16-byte load;
 *   Q8_0            split likewise: q = 32 signed bytes per block, d = halves.
 * Other types arrive as F16 (converted on the host at upload).
 *
 * Activations for Q4_0/Q8_0 weights are quantized like the CPU engine's
 * Q8_0 activations (scale amax / 127 rounded to f16, quants rounded with
 * the unrounded scale), so both engines multiply the same integers: aq is
 * (rows, KA) int8, ad (rows, KA / 32) floats.
 */
#ifndef HEARTH_CUDA_KERNELS_CUH
#define HEARTH_CUDA_KERNELS_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

enum { DT_F32 = 0, DT_F16 = 1, DT_Q4_0 = 2, DT_Q8_0 = 8, DT_BF16 = 30 };

#define QBLK      32 /* elements per Q4_0 / Q8_0 block */
#define MM_WARPS  4  /* warps per block of the matrix kernels */
#define MM_RPW    2  /* weight rows per warp of the quantized kernel */
#define ATT_WARPS 8  /* warps (position splits) per attention block */
#define ATT_DPL   8  /* head dims per lane: head_dim <= 256 */
#define MAX_EXPERTS 256

/* Which rows of activations and outputs a matrix launch covers.  Dense:
 * active NULL, rows 0..n.  Grouped (mixture of experts): block row y takes
 * expert active[y] (y < *active_n), whose slots off[e] .. off[e] + cnt[e]
 * are output rows; map[slot] (or the slot itself when map is NULL) is the
 * activation row each reads. */
typedef struct mm_groups {
    const int *active, *active_n, *off, *cnt, *map;
    int n;
} mm_groups;

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim a multiple of 32); every thread gets it. */
__device__ float block_sum(float v) {
    __shared__ float part[32];
    v = warp_sum(v);
    const int w = threadIdx.x / 32, l = threadIdx.x % 32;
    __syncthreads(); /* part may still be read by a previous call */
    if (l == 0) part[w] = v;
    __syncthreads();
    v = l < (int)(blockDim.x / 32) ? part[l] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float to_f(float v) {
    return v;
}
__device__ __forceinline__ float to_f(__half v) {
    return __half2float(v);
}

/* Element i of row `row` of a weight in device layout. */
__device__ __forceinline__ float weight_at(int type, const void *q, const __half *d, int64_t ne0,
                                           int64_t row, int64_t i) {
    switch (type) {
    case DT_F32: return ((const float *)q)[row * ne0 + i];
    case DT_F16: return __half2float(((const __half *)q)[row * ne0 + i]);
    case DT_BF16: return __bfloat162float(((const __nv_bfloat16 *)q)[row * ne0 + i]);
    case DT_Q4_0: {
        const int64_t b = row * (ne0 / QBLK) + i / QBLK;
        const int j = (int)(i % QBLK);
        const uint8_t byte = ((const uint8_t *)q)[b * 16 + (j & 15)];
        const int v = j < 16 ? (byte & 15) : (byte >> 4);
        return __half2float(d[b]) * (float)(v - 8);
    }
    case DT_Q8_0: {
        const int64_t b = row * (ne0 / QBLK) + i / QBLK;
        return __half2float(d[b]) * (float)((const int8_t *)q)[b * 32 + i % QBLK];
    }
    default: return 0.0f;
    }
}

/* ---------------------------------------------------------------- upload */

/* Splits n_blocks GGUF Q4_0 blocks (18 bytes: half d, 16 bytes qs) into q
 * and d. */
__global__ void repack_q4_0_cuda(const uint8_t *src, int64_t n_blocks, uint8_t *q, __half *d) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_blocks) return;
    const uint16_t *s = (const uint16_t *)(src + i * 18); /* 2-byte aligned */
    uint16_t v[8];
    for (int k = 0; k < 8; k++) v[k] = s[1 + k];
    d[i] = __ushort_as_half(s[0]);
    uint4 o;
    o.x = v[0] | (uint32_t)v[1] << 16;
    o.y = v[2] | (uint32_t)v[3] << 16;
    o.z = v[4] | (uint32_t)v[5] << 16;
    o.w = v[6] | (uint32_t)v[7] << 16;
    ((uint4 *)q)[i] = o;
}

/* Splits GGUF Q8_0 blocks (34 bytes: half d, 32 quants) into q and d. */
__global__ void repack_q8_0_cuda(const uint8_t *src, int64_t n_blocks, uint8_t *q, __half *d) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_blocks) return;
    const uint16_t *s = (const uint16_t *)(src + i * 34);
    d[i] = __ushort_as_half(s[0]);
    uint32_t w[8];
    for (int k = 0; k < 8; k++) w[k] = s[1 + 2 * k] | (uint32_t)s[2 + 2 * k] << 16;
    ((uint4 *)q)[2 * i] = make_uint4(w[0], w[1], w[2], w[3]);
    ((uint4 *)q)[2 * i + 1] = make_uint4(w[4], w[5], w[6], w[7]);
}

/* ---------------------------------------------------------------- small ops */

/* x[t] = row tok[t] of the embedding (ne0 wide) as floats; grid n. */
__global__ void embed_cuda(int type, const void *q, const __half *d, int64_t ne0, const int *tok,
                           float *x) {
    const int t = blockIdx.x;
    const int64_t row = tok[t];
    for (int64_t i = threadIdx.x; i < ne0; i += blockDim.x)
        x[t * ne0 + i] = weight_at(type, q, d, ne0, row, i);
}

/* cos/sin (n, half) of pos[t] * base^(-2i / n_rot), in double as the CPU
 * engine computes them; grid n. */
__global__ void rope_angles_cuda(const int *pos, float *cs, float *sn, int half, int n_rot,
                                 float base) {
    const int t = blockIdx.x;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const double freq = pow((double)base, -2.0 * i / (double)n_rot);
        double s, c;
        sincos((double)pos[t] * freq, &s, &c);
        cs[t * half + i] = (float)c;
        sn[t * half + i] = (float)s;
    }
}

/* What add_rmsnorm_cuda adds to the residual before the norm: a plain
 * row (add) and/or the weighted sum of a token's k expert outputs (mo,
 * rows pair_slot[t * k + j], weights sel_w[t * k + j]). */
typedef struct norm_add {
    const float *add;
    const float *mo;
    const int *pair_slot;
    const float *sel_w;
    int k;
} norm_add;

/* One warp quantizes the 32 values v (one per lane) into block b of row
 * aq / ad (the CPU engine's Q8_0 activation rounding). */
__device__ __forceinline__ void quantize_block(float v, int8_t *aq_row, float *ad_row, int b) {
    const float amax = warp_max(fabsf(v));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    aq_row[b * QBLK + threadIdx.x % 32] = (int8_t)roundf(v * id);
    if (threadIdx.x % 32 == 0) ad_row[b] = __half2float(__float2half_rn(d));
}

/* Row r (source row map[r], or r): x += the addends of a, then
 * out[r] = x * w / rms(x), and when aq is given the same row quantized
 * (n a multiple of 32); grid rows. */
__global__ void add_rmsnorm_cuda(float *x, norm_add a, const float *w, float *out, int n, float eps,
                                 const int *map, int8_t *aq, float *ad, int ka) {
    __shared__ float s_w[32];
    __shared__ const float *s_mo[32];
    const int r = blockIdx.x;
    const int64_t src = map ? map[r] : r;
    float *__restrict__ xr = x + src * n;
    const bool adds = a.add || a.mo;
    if (a.mo && threadIdx.x < a.k) {
        s_w[threadIdx.x] = a.sel_w[src * a.k + threadIdx.x];
        s_mo[threadIdx.x] = a.mo + (int64_t)a.pair_slot[src * a.k + threadIdx.x] * n;
    }
    __syncthreads();
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        if (a.add) v += a.add[src * n + i];
        if (a.mo) {
            for (int j = 0; j < a.k; j++) v += s_w[j] * s_mo[j][i];
        }
        if (adds) xr[i] = v;
        ss += v * v;
    }
    ss = block_sum(ss);
    const float sc = 1.0f / sqrtf(ss / (float)n + eps);
    if (!aq) {
        for (int i = threadIdx.x; i < n; i += blockDim.x)
            out[(int64_t)r * n + i] = xr[i] * sc * (w ? w[i] : 1.0f);
        return;
    }
    const int warp = threadIdx.x / 32, nw = blockDim.x / 32, lane = threadIdx.x % 32;
    for (int b = warp; b < n / QBLK; b += nw) {
        const int i = b * QBLK + lane;
        const float v = xr[i] * sc * (w ? w[i] : 1.0f);
        out[(int64_t)r * n + i] = v;
        quantize_block(v, aq + (int64_t)r * ka, ad + (int64_t)r * (ka / QBLK), b);
    }
}

/* g = silu(g) * u over n elements. */
__global__ void swiglu_cuda(float *g, const float *u, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float a = g[i];
    g[i] = a / (1.0f + expf(-a)) * u[i];
}

/* Quantizes rows of x (width k, row stride x_stride) to aq / ad; one warp
 * per block of 32. */
__global__ void quantize_act_cuda(const float *x, int64_t x_stride, int k, int rows, int8_t *aq,
                                  float *ad, int ka) {
    const int64_t gw = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32, nbk = k / QBLK;
    if (gw >= (int64_t)rows * nbk) return; /* whole warps leave together */
    const int64_t row = gw / nbk, b = gw % nbk;
    const float v = x[row * x_stride + b * QBLK + lane];
    const float amax = warp_max(fabsf(v));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    aq[row * ka + b * QBLK + lane] = (int8_t)roundf(v * id);
    if (lane == 0) ad[row * (ka / QBLK) + b] = __half2float(__float2half_rn(d));
}

/* ---------------------------------------------------------------- matrices */

__device__ __forceinline__ int dot_q4_0(const int w[4], const int a[8]) {
    int s = 0, sa = 0;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        s = __dp4a(w[k] & 0x0F0F0F0F, a[k], s);
        s = __dp4a((w[k] >> 4) & 0x0F0F0F0F, a[k + 4], s);
    }
#pragma unroll
    for (int k = 0; k < 8; k++) sa = __dp4a(0x01010101, a[k], sa);
    return s - 8 * sa;
}

__device__ __forceinline__ int dot_q8_0(const int w[8], const int a[8]) {
    int s = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) s = __dp4a(w[k], a[k], s);
    return s;
}

/* Resolves a block's group: expert e, first output slot s0, slot count ns;
 * false when the block has no work. */
__device__ __forceinline__ bool mm_group(const mm_groups &g, int &e, int &s0, int &ns) {
    if (!g.active) {
        e = 0;
        s0 = 0;
        ns = g.n;
        return true;
    }
    if ((int)blockIdx.y >= *g.active_n) return false;
    e = g.active[blockIdx.y];
    s0 = g.off[e];
    ns = g.cnt[e];
    return ns > 0;
}

/* y[slot][r] = dot(weight row r of expert e, activation row of slot) for a
 * Q4_0 or Q8_0 weight (ne1 rows of ne0): each warp takes MM_RPW rows, each
 * lane every 32nd block, TT slots at a time (the rows stay in L1 while the
 * slots pass). */
template <int QT, int TT>
__global__ void __launch_bounds__(MM_WARPS * 32)
    mm_q_cuda(const uint8_t *wq, const __half *wd, int64_t ne0, int64_t ne1, const int8_t *aq,
              const float *ad, int ka, float *y, mm_groups g) {
    int e, s0, ns;
    if (!mm_group(g, e, s0, ns)) return;
    constexpr int QB = QT == DT_Q4_0 ? 16 : 32; /* quant bytes per block */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t r0 = ((int64_t)blockIdx.x * MM_WARPS + warp) * MM_RPW;
    if (r0 >= ne1) return;
    const int nb = (int)(ne0 / QBLK), kb = ka / QBLK;
    const uint8_t *wrow[MM_RPW];
    const __half *drow[MM_RPW];
#pragma unroll
    for (int rr = 0; rr < MM_RPW; rr++) {
        const int64_t r = (int64_t)e * ne1 + (r0 + rr < ne1 ? r0 + rr : ne1 - 1);
        wrow[rr] = wq + r * nb * QB;
        drow[rr] = wd + r * nb;
    }
    for (int j0 = 0; j0 < ns; j0 += TT) {
        float acc[MM_RPW][TT];
        int64_t arow[TT];
#pragma unroll
        for (int t = 0; t < TT; t++) {
            const int s = s0 + (j0 + t < ns ? j0 + t : ns - 1);
            arow[t] = g.map ? g.map[s] : s;
#pragma unroll
            for (int rr = 0; rr < MM_RPW; rr++) acc[rr][t] = 0.0f;
        }
        for (int b = lane; b < nb; b += 32) {
            int w[MM_RPW][QB / 4];
            float dw[MM_RPW];
#pragma unroll
            for (int rr = 0; rr < MM_RPW; rr++) {
                const uint4 *p = (const uint4 *)(wrow[rr] + (int64_t)b * QB);
#pragma unroll
                for (int k = 0; k < QB / 16; k++) {
                    const uint4 u = p[k];
                    w[rr][4 * k] = (int)u.x;
                    w[rr][4 * k + 1] = (int)u.y;
                    w[rr][4 * k + 2] = (int)u.z;
                    w[rr][4 * k + 3] = (int)u.w;
                }
                dw[rr] = __half2float(drow[rr][b]);
            }
#pragma unroll
            for (int t = 0; t < TT; t++) {
                const int4 *pa = (const int4 *)(aq + arow[t] * ka + (int64_t)b * QBLK);
                const int4 a0 = pa[0], a1 = pa[1];
                const int a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
                const float da = ad[arow[t] * kb + b];
#pragma unroll
                for (int rr = 0; rr < MM_RPW; rr++) {
                    const int isum = QT == DT_Q4_0 ? dot_q4_0(w[rr], a) : dot_q8_0(w[rr], a);
                    acc[rr][t] += (float)isum * (dw[rr] * da);
                }
            }
        }
#pragma unroll
        for (int t = 0; t < TT; t++) {
#pragma unroll
            for (int rr = 0; rr < MM_RPW; rr++) {
                const float v = warp_sum(acc[rr][t]);
                if (lane == 0 && r0 + rr < ne1 && j0 + t < ns)
                    y[(int64_t)(s0 + j0 + t) * ne1 + r0 + rr] = v;
            }
        }
    }
}

/* The same for F32 / F16 / BF16 weights and float activations x (rows
 * x_stride apart): one row per warp. */
template <int WT, int TT>
__global__ void __launch_bounds__(MM_WARPS * 32)
    mm_f_cuda(const void *wv, int64_t ne0, int64_t ne1, const float *x, int64_t x_stride, float *y,
              mm_groups g) {
    int e, s0, ns;
    if (!mm_group(g, e, s0, ns)) return;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t r = (int64_t)blockIdx.x * MM_WARPS + warp;
    if (r >= ne1) return;
    const int64_t row = (int64_t)e * ne1 + r;
    for (int j0 = blockIdx.z * TT; j0 < ns; j0 += TT * gridDim.z) {
        float acc[TT];
        const float *xr[TT];
#pragma unroll
        for (int t = 0; t < TT; t++) {
            const int s = s0 + (j0 + t < ns ? j0 + t : ns - 1);
            xr[t] = x + (int64_t)(g.map ? g.map[s] : s) * x_stride;
            acc[t] = 0.0f;
        }
        if (ne0 % 128 == 0) { /* four elements per lane: 16-byte activation loads */
            for (int64_t i = 4 * lane; i < ne0; i += 128) {
                float w[4];
                if (WT == DT_F32) {
                    const float4 v = __ldg((const float4 *)((const float *)wv + row * ne0 + i));
                    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
                } else {
                    const uint2 v = __ldg((const uint2 *)((const uint16_t *)wv + row * ne0 + i));
                    const uint16_t h[4] = {(uint16_t)v.x, (uint16_t)(v.x >> 16), (uint16_t)v.y,
                                           (uint16_t)(v.y >> 16)};
#pragma unroll
                    for (int k = 0; k < 4; k++)
                        w[k] = WT == DT_F16 ? __half2float(__ushort_as_half(h[k]))
                                            : __uint_as_float((uint32_t)h[k] << 16);
                }
#pragma unroll
                for (int t = 0; t < TT; t++) {
                    const float4 xv = *(const float4 *)(xr[t] + i);
                    acc[t] += w[0] * xv.x + w[1] * xv.y + w[2] * xv.z + w[3] * xv.w;
                }
            }
        } else {
            for (int64_t i = lane; i < ne0; i += 32) {
                const float w = weight_at(WT, wv, nullptr, ne0, row, i);
#pragma unroll
                for (int t = 0; t < TT; t++) acc[t] += w * xr[t][i];
            }
        }
#pragma unroll
        for (int t = 0; t < TT; t++) {
            const float v = warp_sum(acc[t]);
            if (lane == 0 && j0 + t < ns) y[(int64_t)(s0 + j0 + t) * ne1 + r] = v;
        }
    }
}

/* ---------------------------------------------------------------- attention */

/* Arguments of the q/k/v stage and of attention. */
typedef struct attn_args {
    float *q, *k, *v;              /* (n, n_head * hd), (n, n_kv * hd), (n, n_kv * hdv) */
    const float *bq, *bk, *bv;     /* biases or NULL */
    const float *q_norm, *k_norm;  /* (hd) per-head norms or NULL */
    const float *cs, *sn;          /* (n, n_rot / 2) */
    const int *pos, *seq;          /* (n) */
    void *kc, *vc;                 /* cache: (layers, n_seq, n_ctx, k_row / v_row) */
    int64_t slot0;                 /* layer * n_seq * n_ctx */
    int n_ctx, n_head, n_kv, hd, hdv, n_rot, neox, kv_f32;
    float eps, scale;
    float *out; /* (n, n_head * hdv) */
    int8_t *aq; /* when set, out is also quantized here (rows ka wide) */
    float *ad;
    int ka;
} attn_args;

/* Per (head, token): bias, per-head norm and RoPE of q and k; k and v
 * into the cache.  Grid (n_head + 2 n_kv, n); blockDim >= hd and hdv. */
__global__ void qkv_stage_cuda(attn_args a) {
    __shared__ float buf[512];
    const int t = blockIdx.y, hh = blockIdx.x, d = threadIdx.x;
    const int64_t slot = a.slot0 + (int64_t)a.seq[t] * a.n_ctx + a.pos[t];
    if (hh >= a.n_head + a.n_kv) { /* values */
        const int h = hh - a.n_head - a.n_kv;
        if (d >= a.hdv) return;
        float val = a.v[(int64_t)t * a.n_kv * a.hdv + h * a.hdv + d];
        if (a.bv) val += a.bv[h * a.hdv + d];
        const int64_t o = slot * a.n_kv * a.hdv + h * a.hdv + d;
        if (a.kv_f32)
            ((float *)a.vc)[o] = val;
        else
            ((__half *)a.vc)[o] = __float2half_rn(val);
        return;
    }
    const bool is_q = hh < a.n_head;
    const int h = is_q ? hh : hh - a.n_head;
    float *src = is_q ? a.q + (int64_t)t * a.n_head * a.hd + h * a.hd
                      : a.k + (int64_t)t * a.n_kv * a.hd + h * a.hd;
    const float *bias = is_q ? a.bq : a.bk, *norm = is_q ? a.q_norm : a.k_norm;
    float val = 0.0f;
    if (d < a.hd) val = src[d] + (bias ? bias[h * a.hd + d] : 0.0f);
    if (norm) {
        const float ss = block_sum(val * val);
        const float sc = 1.0f / sqrtf(ss / (float)a.hd + a.eps);
        if (d < a.hd) val = val * sc * norm[d];
    }
    if (d < a.hd) buf[d] = val;
    __syncthreads();
    if (d < a.n_rot) {
        const int half = a.n_rot / 2;
        const float *c = a.cs + (int64_t)t * half, *s = a.sn + (int64_t)t * half;
        if (a.neox) {
            const int i = d < half ? d : d - half;
            const float x0 = buf[i], x1 = buf[i + half];
            val = d < half ? x0 * c[i] - x1 * s[i] : x0 * s[i] + x1 * c[i];
        } else {
            const int i = d / 2;
            const float x0 = buf[2 * i], x1 = buf[2 * i + 1];
            val = (d & 1) == 0 ? x0 * c[i] - x1 * s[i] : x0 * s[i] + x1 * c[i];
        }
    }
    if (d >= a.hd) return;
    if (is_q) {
        src[d] = val;
    } else {
        const int64_t o = slot * a.n_kv * a.hd + h * a.hd + d;
        if (a.kv_f32)
            ((float *)a.kc)[o] = val;
        else
            ((__half *)a.kc)[o] = __float2half_rn(val);
    }
}

/* Causal attention of one query head of one token over its sequence's
 * cached positions 0..pos: the ATT_WARPS warps take every ATT_WARPS-th
 * position (split-K) with an online softmax each, then combine.  Grid
 * (n_head, n). */
template <typename KT>
__global__ void __launch_bounds__(ATT_WARPS * 32) attention_cuda(attn_args a) {
    const int t = blockIdx.y, h = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kvh = h / (a.n_head / a.n_kv), n_pos = a.pos[t] + 1;
    const int64_t base = a.slot0 + (int64_t)a.seq[t] * a.n_ctx;
    const int k_row = a.n_kv * a.hd, v_row = a.n_kv * a.hdv;
    const KT *K = (const KT *)a.kc + base * k_row + kvh * a.hd;
    const KT *V = (const KT *)a.vc + base * v_row + kvh * a.hdv;
    const float *q = a.q + (int64_t)t * a.n_head * a.hd + h * a.hd;
    float qv[ATT_DPL], acc[ATT_DPL];
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) {
        const int d = lane + 32 * i;
        /* an f16 cache meets a query rounded to f16, as on the CPU */
        const float qd = d < a.hd ? q[d] : 0.0f;
        qv[i] = (sizeof(KT) == 2 ? __half2float(__float2half_rn(qd)) : qd) * a.scale;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int p = warp; p < n_pos; p += ATT_WARPS) {
        const KT *kr = K + (int64_t)p * k_row;
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            const int d = lane + 32 * i;
            if (d < a.hd) s += qv[i] * to_f(kr[d]);
        }
        s = warp_sum(s);
        const float mn = fmaxf(m, s), c = expf(m - mn), pe = expf(s - mn);
        l = l * c + pe;
        const KT *vr = V + (int64_t)p * v_row;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            const int d = lane + 32 * i;
            if (d < a.hdv) acc[i] = acc[i] * c + pe * to_f(vr[d]);
        }
        m = mn;
    }
    __shared__ float sm[ATT_WARPS], sl[ATT_WARPS], sacc[ATT_WARPS][32 * ATT_DPL];
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) {
        const int d = lane + 32 * i;
        if (d < a.hdv) sacc[warp][d] = acc[i];
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int w = 0; w < ATT_WARPS; w++) mx = fmaxf(mx, sm[w]);
    float den = 0.0f, f[ATT_WARPS];
    for (int w = 0; w < ATT_WARPS; w++) {
        f[w] = sm[w] == -INFINITY ? 0.0f : expf(sm[w] - mx);
        den += sl[w] * f[w];
    }
    for (int d = threadIdx.x; d < a.hdv; d += blockDim.x) {
        float num = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++) num += sacc[w][d] * f[w];
        const int col = h * a.hdv + d;
        a.out[(int64_t)t * a.n_head * a.hdv + col] = num / den;
        /* hdv a multiple of 32: each warp holds whole blocks */
        if (a.aq) quantize_block(num / den, a.aq + (int64_t)t * a.ka, a.ad + (int64_t)t * (a.ka / QBLK), col / QBLK);
    }
}

/* Attention for prefill, lane per position: a warp takes chunks of 32
 * positions (chunk c0, c0 + stride, ...) with one position per lane (a
 * whole q . k dot product per lane, no reduction per position), folds each
 * chunk into its online softmax (m, l), then adds the chunk's values into
 * acc with the weights broadcast from their lanes.  qs: the query, scaled
 * (and rounded to f16 for an f16 cache).  head_dim a multiple of 8. */
template <typename KT>
__device__ void attend_chunks(const attn_args &a, const float *qs, const KT *K, const KT *V,
                              int n_pos, int c0, int stride, float &m, float &l,
                              float acc[ATT_DPL]) {
    const int lane = threadIdx.x % 32;
    const int k_row = a.n_kv * a.hd, v_row = a.n_kv * a.hdv;
    for (; c0 < n_pos; c0 += stride) {
        const int p = c0 + lane;
        float s = -INFINITY;
        if (p < n_pos) {
            const KT *kr = K + (int64_t)p * k_row;
            float dot = 0.0f;
            for (int d = 0; d < a.hd; d += 8) {
                const uint4 raw = *(const uint4 *)(kr + d); /* 8 halves or 4 floats */
                if (sizeof(KT) == 2) {
                    const __half2 *h2 = (const __half2 *)&raw;
#pragma unroll
                    for (int u = 0; u < 4; u++) {
                        const float2 f = __half22float2(h2[u]);
                        dot += f.x * qs[d + 2 * u] + f.y * qs[d + 2 * u + 1];
                    }
                } else {
                    const float *f = (const float *)&raw;
                    const uint4 raw2 = *(const uint4 *)((const float *)kr + d + 4);
                    const float *f2 = (const float *)&raw2;
#pragma unroll
                    for (int u = 0; u < 4; u++) dot += f[u] * qs[d + u] + f2[u] * qs[d + 4 + u];
                }
            }
            s = dot;
        }
        const float mc = warp_max(s), mn = fmaxf(m, mc);
        const float corr = expf(m - mn), pe = p < n_pos ? expf(s - mn) : 0.0f;
        l = l * corr + warp_sum(pe);
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) acc[i] *= corr;
        const int nj = n_pos - c0 < 32 ? n_pos - c0 : 32;
        for (int j = 0; j < nj; j++) {
            const float w = __shfl_sync(0xffffffffu, pe, j);
            const KT *vr = V + (int64_t)(c0 + j) * v_row;
#pragma unroll
            for (int i = 0; i < ATT_DPL; i++) {
                const int d = lane + 32 * i;
                if (d < a.hdv) acc[i] += w * to_f(vr[d]);
            }
        }
        m = mn;
    }
}

/* Writes one head's output row (and its quantized blocks). */
__device__ __forceinline__ void attn_store(const attn_args &a, int t, int h, int d, float v) {
    const int col = h * a.hdv + d;
    a.out[(int64_t)t * a.n_head * a.hdv + col] = v;
    if (a.aq) quantize_block(v, a.aq + (int64_t)t * a.ka, a.ad + (int64_t)t * (a.ka / QBLK), col / QBLK);
}

/* Prefill attention where several query heads share a KV head: a block per
 * (KV head, token) with one warp per query head of the group, so the
 * group's K and V rows come from L2 once and from L1 for the other warps.
 * Grid (n_kv, n); n_head / n_kv warps (4..32). */
template <typename KT>
__global__ void __launch_bounds__(1024) attention_gqa_cuda(attn_args a) {
    __shared__ float qs[32][32 * ATT_DPL];
    const int t = blockIdx.y, kvh = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int h = kvh * (a.n_head / a.n_kv) + warp, n_pos = a.pos[t] + 1;
    const int64_t base = a.slot0 + (int64_t)a.seq[t] * a.n_ctx;
    const KT *K = (const KT *)a.kc + base * a.n_kv * a.hd + kvh * a.hd;
    const KT *V = (const KT *)a.vc + base * a.n_kv * a.hdv + kvh * a.hdv;
    const float *q = a.q + (int64_t)t * a.n_head * a.hd + h * a.hd;
    for (int d = lane; d < a.hd; d += 32) {
        const float qd = q[d];
        qs[warp][d] = (sizeof(KT) == 2 ? __half2float(__float2half_rn(qd)) : qd) * a.scale;
    }
    __syncwarp();
    float m = -INFINITY, l = 0.0f, acc[ATT_DPL];
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) acc[i] = 0.0f;
    attend_chunks<KT>(a, qs[warp], K, V, n_pos, 0, 32, m, l, acc);
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) {
        const int d = lane + 32 * i;
        if (d < a.hdv) attn_store(a, t, h, d, acc[i] / l);
    }
}

/* Prefill attention per (head, token) block of 4 warps, each taking every
 * fourth chunk, combined at the end as in attention_cuda (heads that share
 * no KV head with enough others for attention_gqa_cuda). */
#define ATP_WARPS 4
template <typename KT>
__global__ void __launch_bounds__(ATP_WARPS * 32) attention_prefill_cuda(attn_args a) {
    __shared__ float qs[32 * ATT_DPL];
    __shared__ float sm[ATP_WARPS], sl[ATP_WARPS], sacc[ATP_WARPS][32 * ATT_DPL];
    const int t = blockIdx.y, h = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kvh = h / (a.n_head / a.n_kv), n_pos = a.pos[t] + 1;
    const int64_t base = a.slot0 + (int64_t)a.seq[t] * a.n_ctx;
    const KT *K = (const KT *)a.kc + base * a.n_kv * a.hd + kvh * a.hd;
    const KT *V = (const KT *)a.vc + base * a.n_kv * a.hdv + kvh * a.hdv;
    const float *q = a.q + (int64_t)t * a.n_head * a.hd + h * a.hd;
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
        const float qd = q[d];
        qs[d] = (sizeof(KT) == 2 ? __half2float(__float2half_rn(qd)) : qd) * a.scale;
    }
    __syncthreads();
    float m = -INFINITY, l = 0.0f, acc[ATT_DPL];
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) acc[i] = 0.0f;
    attend_chunks<KT>(a, qs, K, V, n_pos, warp * 32, ATP_WARPS * 32, m, l, acc);
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) {
        const int d = lane + 32 * i;
        if (d < a.hdv) sacc[warp][d] = acc[i];
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int w = 0; w < ATP_WARPS; w++) mx = fmaxf(mx, sm[w]);
    float den = 0.0f, f[ATP_WARPS];
    for (int w = 0; w < ATP_WARPS; w++) {
        f[w] = sm[w] == -INFINITY ? 0.0f : expf(sm[w] - mx);
        den += sl[w] * f[w];
    }
    for (int d = threadIdx.x; d < a.hdv; d += blockDim.x) {
        float num = 0.0f;
        for (int w = 0; w < ATP_WARPS; w++) num += sacc[w][d] * f[w];
        attn_store(a, t, h, d, num / den);
    }
}

/* ------------------------------------------- tensor-core prefill attention */

#define FA_ROWS 64 /* query rows (tokens) of a block: 16 per warp */
#define FA_KEYS 64 /* cache positions of a K / V tile */

__device__ __forceinline__ void mma_f16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float x, float y) {
    const __half2 h = __floats2half2_rn(x, y);
    return *(const uint32_t *)&h;
}

/* Four 8x8 f16 matrices from shared memory, transposed: lanes 8i..8i+7
 * give the row addresses of matrix i. */
__device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], const __half *p) {
    const unsigned addr = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* 16 bytes global -> shared without a register stage; zeros where !valid. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    const unsigned addr = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(addr), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}

/* Causal prefill attention on the f16 tensor cores (flash attention) for an
 * f16 cache and head_dim == head_dim_v == HD.  A block takes 64 consecutive
 * tokens of the batch and one query head; each warp holds the query
 * fragments of 16 tokens (rounded to f16, as on the CPU) in registers.  K
 * and V tiles of 64 cache positions pass through shared memory (cp.async,
 * rows padded by 16 bytes); per tile a warp forms S = Q K^T with
 * m16n8k16 products (f32 sums), scales and masks it (position <= the
 * token's pos, same sequence), folds it into its rows' online softmax,
 * rounds the weights to f16 and adds P V (V fragments by ldmatrix.trans).
 * Tokens of several sequences in one tile: the block takes each sequence
 * in turn, the other rows masked.  Output staged through shared memory
 * and stored by attn_store.  Grid (n_head, tiles of 64 tokens). */
template <int HD>
__global__ void __launch_bounds__(128, 3) attention_fa_cuda(attn_args a, int n) {
    constexpr int RS = HD + 8; /* tile row stride, halves */
    constexpr int TILE = FA_KEYS * RS;
    constexpr int KV_BYTES = 2 * TILE * 2, OUT_BYTES = FA_ROWS * HD * 4;
    __shared__ __align__(16) unsigned char smem[KV_BYTES > OUT_BYTES ? KV_BYTES : OUT_BYTES];
    __shared__ int rpos[FA_ROWS], rseq[FA_ROWS], rdone[FA_ROWS], s_seq, s_max;
    __half *ks = (__half *)smem, *vs = ks + TILE;
    const int h = blockIdx.x, t0 = (gridDim.y - 1 - blockIdx.y) * FA_ROWS; /* long rows first */
    const int kvh = h / (a.n_head / a.n_kv), k_row = a.n_kv * HD;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    if (threadIdx.x < FA_ROWS) {
        const int t = t0 + threadIdx.x;
        rpos[threadIdx.x] = t < n ? a.pos[t] : -1;
        rseq[threadIdx.x] = t < n ? a.seq[t] : -1;
        rdone[threadIdx.x] = t >= n;
    }
    __syncthreads();
    const int r0 = warp * 16 + g, r1 = r0 + 8;
    const int p0 = rpos[r0], p1 = rpos[r1], sq0 = rseq[r0], sq1 = rseq[r1];
    uint32_t qf[HD / 16][4];
    {
        const float *q0 = a.q + (int64_t)(t0 + r0) * a.n_head * HD + h * HD;
        const float *q1 = a.q + (int64_t)(t0 + r1) * a.n_head * HD + h * HD;
        const float2 z = make_float2(0.0f, 0.0f);
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            const int d = kk * 16 + 2 * c;
            const float2 x0 = p0 >= 0 ? *(const float2 *)(q0 + d) : z;
            const float2 x1 = p1 >= 0 ? *(const float2 *)(q1 + d) : z;
            const float2 x2 = p0 >= 0 ? *(const float2 *)(q0 + d + 8) : z;
            const float2 x3 = p1 >= 0 ? *(const float2 *)(q1 + d + 8) : z;
            qf[kk][0] = pack_half2(x0.x, x0.y);
            qf[kk][1] = pack_half2(x1.x, x1.y);
            qf[kk][2] = pack_half2(x2.x, x2.y);
            qf[kk][3] = pack_half2(x3.x, x3.y);
        }
    }
    float o[HD / 8][4];
#pragma unroll
    for (int i = 0; i < HD / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    for (;;) {
        if (threadIdx.x == 0) { /* the next sequence of the tile and its last position */
            int s = -1, mx = -1;
            for (int r = 0; r < FA_ROWS; r++) {
                if (rdone[r]) continue;
                if (s < 0) s = rseq[r];
                if (rseq[r] == s) {
                    rdone[r] = 1;
                    mx = rpos[r] > mx ? rpos[r] : mx;
                }
            }
            s_seq = s;
            s_max = mx;
        }
        __syncthreads();
        const int s = s_seq, pmax = s_max;
        if (s < 0) break;
        const bool in0 = sq0 == s, in1 = sq1 == s;
        int wmax = max(in0 ? p0 : -1, in1 ? p1 : -1);
        for (int off = 16; off; off >>= 1) wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, off));
        const int64_t base = a.slot0 + (int64_t)s * a.n_ctx;
        const __half *K = (const __half *)a.kc + base * k_row + kvh * HD;
        const __half *V = (const __half *)a.vc + base * k_row + kvh * HD;
        for (int k0 = 0; k0 <= pmax; k0 += FA_KEYS) {
            /* every copy of the tile in flight at once; positions past
             * the last one are zero-filled (a stale cache row could hold
             * anything, and 0 x NaN is NaN) */
#pragma unroll
            for (int i = threadIdx.x; i < FA_KEYS * HD / 8; i += 128) {
                const int r = i / (HD / 8), d = i % (HD / 8) * 8;
                const bool in = k0 + r <= pmax;
                const int64_t at = in ? (int64_t)(k0 + r) * k_row + d : 0;
                cp_async16(ks + r * RS + d, K + at, in);
                cp_async16(vs + r * RS + d, V + at, in);
            }
            asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;" ::: "memory");
            __syncthreads();
            if (k0 <= wmax) {
                float sc[FA_KEYS / 8][4];
#pragma unroll
                for (int j = 0; j < FA_KEYS / 8; j++) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
#pragma unroll
                for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
                    for (int j = 0; j < FA_KEYS / 8; j++) {
                        const __half *kr = ks + (j * 8 + g) * RS + kk * 16 + 2 * c;
                        mma_f16(sc[j], qf[kk], *(const uint32_t *)kr, *(const uint32_t *)(kr + 8));
                    }
                }
                float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
                for (int j = 0; j < FA_KEYS / 8; j++) {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int key = k0 + j * 8 + 2 * c + e;
                        sc[j][e] = in0 && key <= p0 ? sc[j][e] * a.scale : -INFINITY;
                        sc[j][2 + e] = in1 && key <= p1 ? sc[j][2 + e] * a.scale : -INFINITY;
                        mx0 = fmaxf(mx0, sc[j][e]);
                        mx1 = fmaxf(mx1, sc[j][2 + e]);
                    }
                }
                mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
                mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
                mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
                mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
                /* a row with nothing yet subtracts 0: its weights stay 0 */
                const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
                const float b0 = mn0 == -INFINITY ? 0.0f : mn0, b1 = mn1 == -INFINITY ? 0.0f : mn1;
                const float cr0 = expf(m0 - b0), cr1 = expf(m1 - b1);
                float ls0 = 0.0f, ls1 = 0.0f;
#pragma unroll
                for (int j = 0; j < FA_KEYS / 8; j++) {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        sc[j][e] = expf(sc[j][e] - b0);
                        sc[j][2 + e] = expf(sc[j][2 + e] - b1);
                        ls0 += sc[j][e];
                        ls1 += sc[j][2 + e];
                    }
                }
                l0 = l0 * cr0 + ls0;
                l1 = l1 * cr1 + ls1;
                m0 = mn0;
                m1 = mn1;
#pragma unroll
                for (int i = 0; i < HD / 8; i++) {
                    o[i][0] *= cr0;
                    o[i][1] *= cr0;
                    o[i][2] *= cr1;
                    o[i][3] *= cr1;
                }
#pragma unroll
                for (int kk = 0; kk < FA_KEYS / 16; kk++) {
                    const uint32_t pa[4] = {pack_half2(sc[2 * kk][0], sc[2 * kk][1]),
                                            pack_half2(sc[2 * kk][2], sc[2 * kk][3]),
                                            pack_half2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                                            pack_half2(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
                    /* lanes 8i..8i+7: rows of matrix i = (keys +8 for odd i,
                     * dims +8 for i >= 2) */
                    const __half *vr = vs + (kk * 16 + (lane & 7) + (lane & 8)) * RS + (lane >> 4) * 8;
#pragma unroll
                    for (int i = 0; i < HD / 8; i += 2) {
                        uint32_t b[4];
                        ldsm_x4_trans(b, vr + i * 8);
                        mma_f16(o[i], pa, b[0], b[1]);
                        mma_f16(o[i + 1], pa, b[2], b[3]);
                    }
                }
            }
            __syncthreads();
        }
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    float *os = (float *)smem; /* the K / V tiles are done with */
    const float il0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, il1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
#pragma unroll
    for (int i = 0; i < HD / 8; i++) {
        const int d = i * 8 + 2 * c;
        os[r0 * HD + d] = o[i][0] * il0;
        os[r0 * HD + d + 1] = o[i][1] * il0;
        os[r1 * HD + d] = o[i][2] * il1;
        os[r1 * HD + d + 1] = o[i][3] * il1;
    }
    __syncthreads();
    for (int r = warp * 16; r < warp * 16 + 16; r++) {
        if (rpos[r] < 0) continue;
        for (int d = lane; d < HD; d += 32) attn_store(a, t0 + r, h, d, os[r * HD + d]);
    }
}

/* ---------------------------------------------------------------- experts */

/* out[t] = sum over the token's k pairs of weight * expert output; grid n. */
__global__ void moe_combine_cuda(const float *mo, const int *pair_slot, const float *sel_w, int k,
                                 int n_embd, float *out) {
    const int t = blockIdx.x;
    for (int d = threadIdx.x; d < n_embd; d += blockDim.x) {
        float s = 0.0f;
        for (int j = 0; j < k; j++)
            s += sel_w[t * k + j] * mo[(int64_t)pair_slot[t * k + j] * n_embd + d];
        out[(int64_t)t * n_embd + d] = s;
    }
}

/* out[t] += g(t) * sh[t], g = sigmoid(gate[t]) or 1 without a gate; grid n. */
__global__ void shexp_add_cuda(float *out, const float *sh, const float *gate, int n_embd) {
    const int t = blockIdx.x;
    const float g = gate ? 1.0f / (1.0f + expf(-gate[t])) : 1.0f;
    for (int d = threadIdx.x; d < n_embd; d += blockDim.x)
        out[(int64_t)t * n_embd + d] += g * sh[(int64_t)t * n_embd + d];
}

/* ---------------------------------------------------------------- decode */

enum { MV_PLAIN = 0, MV_GLU = 1, MV_XF = 2 };

/* Up to three Q4_0 / Q8_0 matrices of the same input width multiplied by
 * the same activations in one launch (blockIdx.z picks one): Q, K and V;
 * for MV_GLU matrix 0 is the gate and 1 the up projection. */
typedef struct mv_args {
    const uint8_t *q[3];
    const __half *d[3];
    float *y[3];
    int64_t ne1[3];
    int64_t ne0;
    const int8_t *aq; /* activations (rows, ka) int8 ... */
    const float *ad;  /* ... and their scales */
    int ka;
    const float *x; /* MV_XF: float activations, rows ne0 wide */
} mv_args;

/* sum of the 32 weights of a Q4_0 / Q8_0 block times 32 floats x. */
template <int QT>
__device__ __forceinline__ float dot_block_f(const int *w, const float *x) {
    const float4 *x4 = (const float4 *)x;
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < (QT == DT_Q4_0 ? 4 : 8); k++) {
        const float4 xa = x4[k];
        const float xs[4] = {xa.x, xa.y, xa.z, xa.w};
        if (QT == DT_Q4_0) {
            const float4 xb = x4[k + 4];
            const float xh[4] = {xb.x, xb.y, xb.z, xb.w};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int byte = (w[k] >> (8 * i)) & 0xff;
                s += (float)((byte & 15) - 8) * xs[i] + (float)((byte >> 4) - 8) * xh[i];
            }
        } else {
#pragma unroll
            for (int i = 0; i < 4; i++) s += (float)(int8_t)(w[k] >> (8 * i)) * xs[i];
        }
    }
    return s;
}

/* The QB quant bytes of one block as QB / 4 ints, through the read-only cache. */
template <int QB>
__device__ __forceinline__ void load_block(const uint8_t *src, int *w) {
    const uint4 *p = (const uint4 *)src;
#pragma unroll
    for (int k = 0; k < QB / 16; k++) {
        const uint4 v = __ldg(p + k);
        w[4 * k] = (int)v.x;
        w[4 * k + 1] = (int)v.y;
        w[4 * k + 2] = (int)v.z;
        w[4 * k + 3] = (int)v.w;
    }
}

/* Blocks b0 and b0 + 32 (b0 again past the row's nb blocks) of two rows:
 * quants into w[block][row], scales into dw[block][row]. */
template <int QB>
__device__ __forceinline__ void load_two_rows(const uint8_t *const *wrow, const __half *const *drow,
                                              int b0, int nb, int (*w)[2][QB / 4],
                                              float (*dw)[2]) {
#pragma unroll
    for (int u = 0; u < 2; u++) {
        const int b = b0 + 32 * u < nb ? b0 + 32 * u : b0;
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            load_block<QB>(wrow[rr] + (int64_t)b * QB, w[u][rr]);
            dw[u][rr] = __half2float(drow[rr][b]);
        }
    }
}

/* One-token matrix-vector products over quantized weights, memory-bound:
 * each lane loads the blocks lane and lane + 32 of its warp's two rows
 * before it multiplies.  MV_PLAIN: rows 2w, 2w + 1 of matrix z, int8
 * activations.  MV_GLU: row w of gate and up, writes silu(g) * u.  MV_XF:
 * like PLAIN with float activations (the gated product going into down).
 * Grouped launches (experts) walk their slots one at a time. */
template <int QT, int MODE>
__global__ void __launch_bounds__(MM_WARPS * 32) mv_q_cuda(mv_args a, mm_groups g) {
    int e, s0, ns;
    if (!mm_group(g, e, s0, ns)) return;
    constexpr int QB = QT == DT_Q4_0 ? 16 : 32;
    const int z = MODE == MV_GLU ? 0 : blockIdx.z;
    const int64_t ne1 = a.ne1[z];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t r0 = MODE == MV_GLU ? (int64_t)blockIdx.x * MM_WARPS + warp
                                      : ((int64_t)blockIdx.x * MM_WARPS + warp) * 2;
    if (r0 >= ne1) return;
    const int nb = (int)(a.ne0 / QBLK), kb = a.ka / QBLK;
    const uint8_t *wrow[2];
    const __half *drow[2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int mat = MODE == MV_GLU ? rr : z;
        const int64_t r = MODE == MV_GLU ? r0 : (r0 + rr < ne1 ? r0 + rr : ne1 - 1);
        const int64_t row = (int64_t)e * ne1 + r;
        wrow[rr] = a.q[mat] + row * nb * QB;
        drow[rr] = a.d[mat] + row * nb;
    }
    for (int j = 0; j < ns; j++) {
        const int s = s0 + j;
        const int64_t arow = g.map ? g.map[s] : s;
        float acc[2] = {0.0f, 0.0f};
        for (int b0 = lane; b0 < nb; b0 += 64) {
            int w[2][2][QB / 4];
            float dw[2][2];
            load_two_rows<QB>(wrow, drow, b0, nb, w, dw);
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const int b = b0 + 32 * u;
                if (b >= nb) break;
                if (MODE == MV_XF) {
                    const float *xr = a.x + arow * a.ne0 + (int64_t)b * QBLK;
#pragma unroll
                    for (int rr = 0; rr < 2; rr++) acc[rr] += dw[u][rr] * dot_block_f<QT>(w[u][rr], xr);
                } else {
                    const int4 *pa = (const int4 *)(a.aq + arow * a.ka + (int64_t)b * QBLK);
                    const int4 a0 = pa[0], a1 = pa[1];
                    const int av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
                    const float da = a.ad[arow * kb + b];
#pragma unroll
                    for (int rr = 0; rr < 2; rr++) {
                        const int isum = QT == DT_Q4_0 ? dot_q4_0(w[u][rr], av) : dot_q8_0(w[u][rr], av);
                        acc[rr] += (float)isum * (dw[u][rr] * da);
                    }
                }
            }
        }
        const float v0 = warp_sum(acc[0]), v1 = warp_sum(acc[1]);
        if (lane != 0) continue;
        float *y = a.y[z] + (int64_t)s * ne1;
        if (MODE == MV_GLU) {
            y[r0] = v0 / (1.0f + expf(-v0)) * v1;
        } else {
            y[r0] = v0;
            if (r0 + 1 < ne1) y[r0 + 1] = v1;
        }
    }
}

/* MV_GLU for one token's experts (or a dense layer) with the output
 * quantized for the down product: a block of 32 warps computes 32
 * consecutive rows silu(gate) * up of one slot, writes them to y and, as
 * one Q8_0 block, to oq / od (ne1 a multiple of 32). */
template <int QT>
__global__ void __launch_bounds__(1024) mv_glu_q_cuda(mv_args a, mm_groups g, int8_t *oq,
                                                      float *od) {
    int e, s0, ns;
    if (!mm_group(g, e, s0, ns)) return;
    constexpr int QB = QT == DT_Q4_0 ? 16 : 32;
    __shared__ float h[32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t ne1 = a.ne1[0], r = (int64_t)blockIdx.x * 32 + warp;
    const int nb = (int)(a.ne0 / QBLK), kb = a.ka / QBLK;
    const int64_t row = (int64_t)e * ne1 + (r < ne1 ? r : ne1 - 1);
    const uint8_t *wrow[2] = {a.q[0] + row * nb * QB, a.q[1] + row * nb * QB};
    const __half *drow[2] = {a.d[0] + row * nb, a.d[1] + row * nb};
    for (int j = 0; j < ns; j++) {
        const int s = s0 + j;
        const int64_t arow = g.map ? g.map[s] : s;
        float acc[2] = {0.0f, 0.0f};
#pragma unroll 2
        for (int b = lane; b < nb; b += 32) {
            const int4 *pa = (const int4 *)(a.aq + arow * a.ka + (int64_t)b * QBLK);
            const int4 a0 = pa[0], a1 = pa[1];
            const int av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            const float da = a.ad[arow * kb + b];
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
                int w[QB / 4];
                load_block<QB>(wrow[rr] + (int64_t)b * QB, w);
                const int isum = QT == DT_Q4_0 ? dot_q4_0(w, av) : dot_q8_0(w, av);
                acc[rr] += (float)isum * (__half2float(drow[rr][b]) * da);
            }
        }
        const float v0 = warp_sum(acc[0]), v1 = warp_sum(acc[1]);
        if (lane == 0) {
            const float hv = v0 / (1.0f + expf(-v0)) * v1;
            h[warp] = hv;
            if (r < ne1) a.y[0][(int64_t)s * ne1 + r] = hv;
        }
        __syncthreads();
        if (warp == 0) quantize_block(h[lane], oq + (int64_t)s * a.ka, od + (int64_t)s * kb, blockIdx.x);
        __syncthreads();
    }
}

/* ---------------------------------------------------------------- a few tokens */

#define MVN_MAX 16 /* the largest batch the few-token kernels take */

/* Batches of 2..MVN_MAX tokens (decode steps of several sequences): the
 * one-token kernels above with the slot loop moved inside the weight loop,
 * so each weight block is loaded into registers once and multiplied by
 * every slot of the pass (NT at most; more slots take more passes).  Each
 * slot's sums run in the order of the one-token kernels, so a token gets
 * the products it would get alone. */

/* acc += the int8 dot product of weight block w (scale dw) and block b of
 * activation row arow. */
template <int QT>
__device__ __forceinline__ void dot_act(float &acc, const int *w, float dw, const int8_t *aq,
                                        const float *ad, int ka, int64_t arow, int b) {
    const int4 *pa = (const int4 *)(aq + arow * ka + (int64_t)b * QBLK);
    const int4 a0 = pa[0], a1 = pa[1];
    const int av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
    const float da = ad[arow * (ka / QBLK) + b];
    const int isum = QT == DT_Q4_0 ? dot_q4_0(w, av) : dot_q8_0(w, av);
    acc += (float)isum * (dw * da);
}

/* Activation rows of the slots j0 .. j0 + NT of a group (the last one
 * repeated past the end); returns how many are real. */
template <int NT>
__device__ __forceinline__ int pass_rows(const mm_groups &g, int s0, int ns, int j0,
                                         int64_t arow[NT]) {
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const int s = s0 + (j0 + t < ns ? j0 + t : ns - 1);
        arow[t] = g.map ? g.map[s] : s;
    }
    return ns - j0 < NT ? ns - j0 : NT;
}

/* mv_q_cuda's MV_PLAIN for several slots: warp w takes the RP row pairs
 * from 2 RP w of matrix z (RP > 1 for the many short groups of a batch's
 * experts: fewer, longer blocks). */
template <int QT, int NT, int RP>
__global__ void __launch_bounds__(MM_WARPS * 32) mvn_q_cuda(mv_args a, mm_groups g) {
    int e, s0, ns;
    if (!mm_group(g, e, s0, ns)) return;
    constexpr int QB = QT == DT_Q4_0 ? 16 : 32;
    const int z = blockIdx.z;
    const int64_t ne1 = a.ne1[z];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int nb = (int)(a.ne0 / QBLK);
    for (int rp = 0; rp < RP; rp++) {
        const int64_t r0 = (((int64_t)blockIdx.x * MM_WARPS + warp) * RP + rp) * 2;
        if (r0 >= ne1) return;
        const uint8_t *wrow[2];
        const __half *drow[2];
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            const int64_t row = (int64_t)e * ne1 + (r0 + rr < ne1 ? r0 + rr : ne1 - 1);
            wrow[rr] = a.q[z] + row * nb * QB;
            drow[rr] = a.d[z] + row * nb;
        }
        for (int j0 = 0; j0 < ns; j0 += NT) {
            int64_t arow[NT];
            const int nt = pass_rows<NT>(g, s0, ns, j0, arow);
            float acc[NT][2];
#pragma unroll
            for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = 0.0f;
            for (int b0 = lane; b0 < nb; b0 += 64) {
                int w[2][2][QB / 4];
                float dw[2][2];
                load_two_rows<QB>(wrow, drow, b0, nb, w, dw);
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const int b = b0 + 32 * u;
                    if (b >= nb) break;
#pragma unroll
                    for (int t = 0; t < NT; t++) {
                        if (t >= nt) break;
#pragma unroll
                        for (int rr = 0; rr < 2; rr++)
                            dot_act<QT>(acc[t][rr], w[u][rr], dw[u][rr], a.aq, a.ad, a.ka, arow[t], b);
                    }
                }
            }
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t >= nt) break;
                const float v0 = warp_sum(acc[t][0]), v1 = warp_sum(acc[t][1]);
                if (lane == 0) {
                    float *y = a.y[z] + (int64_t)(s0 + j0 + t) * ne1;
                    y[r0] = v0;
                    if (r0 + 1 < ne1) y[r0 + 1] = v1;
                }
            }
        }
    }
}

/* mv_glu_q_cuda for several slots: a block of 16 warps computes 32
 * consecutive rows silu(gate) * up of each slot (two rows a warp, so each
 * lane has four weight blocks in flight), writes them to y and, as one
 * Q8_0 block per slot, to oq / od (ne1 a multiple of 32). */
#define MVN_GLU_THREADS 512
template <int QT, int NT>
__global__ void __launch_bounds__(MVN_GLU_THREADS) mvn_glu_q_cuda(mv_args a, mm_groups g,
                                                                  int8_t *oq, float *od) {
    int e, s0, ns;
    if (!mm_group(g, e, s0, ns)) return;
    constexpr int QB = QT == DT_Q4_0 ? 16 : 32, NW = MVN_GLU_THREADS / 32;
    __shared__ float h[NT][32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t ne1 = a.ne1[0], r0 = (int64_t)blockIdx.x * 32 + warp * 2;
    const int nb = (int)(a.ne0 / QBLK), kb = a.ka / QBLK;
    const uint8_t *wrow[2][2]; /* [row][gate, up] */
    const __half *drow[2][2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int64_t row = (int64_t)e * ne1 + (r0 + rr < ne1 ? r0 + rr : ne1 - 1);
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            wrow[rr][mt] = a.q[mt] + row * nb * QB;
            drow[rr][mt] = a.d[mt] + row * nb;
        }
    }
    for (int j0 = 0; j0 < ns; j0 += NT) {
        int64_t arow[NT];
        const int nt = pass_rows<NT>(g, s0, ns, j0, arow);
        float acc[NT][2][2];
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int rr = 0; rr < 2; rr++) acc[t][rr][0] = acc[t][rr][1] = 0.0f;
        for (int b = lane; b < nb; b += 32) {
            int w[2][2][QB / 4];
            float dw[2][2];
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    load_block<QB>(wrow[rr][mt] + (int64_t)b * QB, w[rr][mt]);
                    dw[rr][mt] = __half2float(drow[rr][mt][b]);
                }
            }
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t >= nt) break;
#pragma unroll
                for (int rr = 0; rr < 2; rr++)
#pragma unroll
                    for (int mt = 0; mt < 2; mt++)
                        dot_act<QT>(acc[t][rr][mt], w[rr][mt], dw[rr][mt], a.aq, a.ad, a.ka,
                                    arow[t], b);
            }
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t >= nt) break;
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
                const float v0 = warp_sum(acc[t][rr][0]), v1 = warp_sum(acc[t][rr][1]);
                if (lane == 0) {
                    const float hv = v0 / (1.0f + expf(-v0)) * v1;
                    h[t][warp * 2 + rr] = hv;
                    if (r0 + rr < ne1) a.y[0][(int64_t)(s0 + j0 + t) * ne1 + r0 + rr] = hv;
                }
            }
        }
        __syncthreads();
        for (int t = warp; t < nt; t += NW) {
            const int64_t s = s0 + j0 + t;
            quantize_block(h[t][lane], oq + s * a.ka, od + s * kb, blockIdx.x);
        }
        __syncthreads();
    }
}

/* Routes n tokens, one warp each (8 per block): softmax of the router
 * logits, the k most probable experts (ties to the lower index) and their
 * weights, renormalised to sum 1 when norm is set. */
__device__ void route_token(const float *p, int ne, int k, int norm, int *sel, float *sel_w) {
    const int lane = threadIdx.x % 32;
    float mx = -INFINITY;
    for (int i = lane; i < ne; i += 32) mx = fmaxf(mx, p[i]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int i = lane; i < ne; i += 32) sum += expf(p[i] - mx);
    sum = warp_sum(sum);
    float pr[MAX_EXPERTS / 32]; /* this lane's experts lane + 32 q; -1 once taken */
#pragma unroll
    for (int q = 0; q < MAX_EXPERTS / 32; q++) {
        const int i = lane + 32 * q;
        pr[q] = i < ne ? expf(p[i] - mx) / sum : -1.0f;
    }
    float wsum = 0.0f, mine = 0.0f;
    for (int j = 0; j < k; j++) {
        float bv = -1.0f;
        int bi = 0x7fffffff;
#pragma unroll
        for (int q = 0; q < MAX_EXPERTS / 32; q++) {
            const int i = lane + 32 * q;
            if (pr[q] > bv || (pr[q] == bv && pr[q] >= 0.0f && i < bi)) {
                bv = pr[q];
                bi = i;
            }
        }
        for (int o = 16; o; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > bv || (ov == bv && oi < bi)) {
                bv = ov;
                bi = oi;
            }
        }
#pragma unroll
        for (int q = 0; q < MAX_EXPERTS / 32; q++)
            if (lane + 32 * q == bi) pr[q] = -1.0f;
        if (lane == j) mine = bv;
        if (lane == 0) sel[j] = bi;
        wsum += bv;
    }
    if (lane < k) sel_w[lane] = norm ? mine / wsum : mine;
}

__global__ void moe_route_cuda(const float *logits, int n, int ne, int k, int norm, int *sel,
                               float *sel_w) {
    const int t = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (t >= n) return;
    route_token(logits + (int64_t)t * ne, ne, k, norm, sel + t * k, sel_w + t * k);
}

/* Groups the n_pairs (token, expert) pairs of sel by expert in one block:
 * counts, offsets (experts in order), the experts with pairs, each slot's
 * token and each pair's slot.  Slots within an expert are in no fixed
 * order: each slot is computed on its own, and the combine reads them
 * through pair_slot, so the results do not depend on it. */
__device__ void group_pairs(const int *sel, int n_pairs, int k, int ne, int *cnt, int *off,
                            int *active, int *active_n, int *slot_tok, int *pair_slot) {
    __shared__ int s_cnt[MAX_EXPERTS], s_off[MAX_EXPERTS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int e = threadIdx.x; e < ne; e += blockDim.x) s_cnt[e] = 0;
    __syncthreads();
    for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) atomicAdd(&s_cnt[sel[p]], 1);
    __syncthreads();
    if (warp == 0) {
        /* exclusive scans of the counts and of the experts with pairs */
        const int per = (ne + 31) / 32, e0 = lane * per;
        int sum = 0, act = 0;
        for (int e = e0; e < e0 + per && e < ne; e++) {
            sum += s_cnt[e];
            act += s_cnt[e] > 0;
        }
        int isum = sum, iact = act;
        for (int o = 1; o < 32; o <<= 1) {
            const int vs = __shfl_up_sync(0xffffffffu, isum, o);
            const int va = __shfl_up_sync(0xffffffffu, iact, o);
            if (lane >= o) {
                isum += vs;
                iact += va;
            }
        }
        int o = isum - sum, na = iact - act;
        for (int e = e0; e < e0 + per && e < ne; e++) {
            s_off[e] = o;
            off[e] = o;
            cnt[e] = s_cnt[e];
            o += s_cnt[e];
            if (s_cnt[e]) active[na++] = e;
        }
        if (lane == 31) *active_n = na;
    }
    __syncthreads();
    for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) {
        const int sl = atomicAdd(&s_off[sel[p]], 1);
        slot_tok[sl] = p / k;
        pair_slot[p] = sl;
    }
}

__global__ void __launch_bounds__(1024)
    moe_group_cuda(const int *sel, int n_pairs, int k, int ne, int *cnt, int *off, int *active,
                   int *active_n, int *slot_tok, int *pair_slot) {
    group_pairs(sel, n_pairs, k, ne, cnt, off, active, active_n, slot_tok, pair_slot);
}

/* Routing and grouping of a batch in one block of 1024 threads: each warp
 * routes tokens as moe_route_cuda does, then the pairs are grouped by
 * expert as moe_group_cuda does (ne <= MAX_EXPERTS): one launch for a
 * one-token step. */
__global__ void __launch_bounds__(1024)
    moe_route_group_cuda(const float *logits, int n, int ne, int k, int norm, int *sel,
                         float *sel_w, int *cnt, int *off, int *active, int *active_n,
                         int *slot_tok, int *pair_slot) {
    const int warp = threadIdx.x / 32, nw = blockDim.x / 32;
    for (int t = warp; t < n; t += nw)
        route_token(logits + (int64_t)t * ne, ne, k, norm, sel + t * k, sel_w + t * k);
    __syncthreads(); /* the block's global stores are seen by the block */
    group_pairs(sel, n * k, k, ne, cnt, off, active, active_n, slot_tok, pair_slot);
}

/* ---------------------------------------------------------------- prefill */

#define MMA_ROWS  64 /* weight rows per block: 16 per warp */
#define MMA_SLOTS 64 /* slots per block tile: 8 tiles of 8 */
#define MMA_KB    4  /* blocks of 32 per shared-memory stage */

__device__ __forceinline__ void mma_s8(int c[4], const int a[4], int b0, int b1) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Products of many slots with a Q4_0 / Q8_0 matrix on the int8 tensor
 * cores.  A block takes 64 weight rows x 64 slots; per stage of 4 blocks
 * of 32 it copies the rows' quants and scales and the slots' int8
 * activations and scales to shared memory (16-byte coalesced loads, rows
 * padded by 16 bytes so fragment reads hit distinct banks), then each
 * warp runs one m16n8k32 product per block and 8-slot tile for its 16
 * rows and scales the integer sums by both scales into float
 * accumulators.  Grid: (row tiles, groups, slot chunks). */
template <int QT>
__global__ void __launch_bounds__(MM_WARPS * 32)
    mm_mma_cuda(const uint8_t *wq, const __half *wd, int64_t ne0, int64_t ne1, const int8_t *aq,
                const float *ad, int ka, float *y, mm_groups g) {
    constexpr int QB = QT == DT_Q4_0 ? 16 : 32;
    constexpr int AS = MMA_KB * QB + 16;    /* bytes per row of the A stage */
    constexpr int BS = MMA_KB * QBLK + 16;  /* bytes per slot of the B stage */
    __shared__ __align__(16) uint8_t sa[MMA_ROWS * AS];
    __shared__ __align__(16) uint8_t sb[MMA_SLOTS * BS];
    __shared__ float sda[MMA_ROWS][MMA_KB], sdb[MMA_SLOTS][MMA_KB];
    __shared__ int64_t srow[MMA_SLOTS];
    int e, s0, ns;
    if (!mm_group(g, e, s0, ns)) return;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    const int64_t r0 = (int64_t)blockIdx.x * MMA_ROWS;
    const int nb = (int)(ne0 / QBLK), kb = ka / QBLK;
    const int wr = warp * 16; /* this warp's first row in the tile */
    for (int j0 = blockIdx.z * MMA_SLOTS; j0 < ns; j0 += MMA_SLOTS * gridDim.z) {
        __syncthreads(); /* the previous tile's readers are done with srow */
        for (int i = threadIdx.x; i < MMA_SLOTS; i += blockDim.x) {
            const int s = s0 + (j0 + i < ns ? j0 + i : ns - 1);
            srow[i] = g.map ? g.map[s] : s;
        }
        float acc[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[nt][c] = 0.0f;
        /* Each thread fetches its share of the next stage into registers
         * while the warps multiply the current one from shared memory. */
        constexpr int NA = MMA_ROWS * MMA_KB * (QB / 16) / (MM_WARPS * 32);
        constexpr int NB = MMA_SLOTS * MMA_KB * 2 / (MM_WARPS * 32);
        uint4 ra_q[NA], rb_q[NB];
        float ra_d[NA], rb_d[NB];
        auto fetch = [&](int b0) {
#pragma unroll
            for (int u = 0; u < NA; u++) {
                const int i = threadIdx.x + u * MM_WARPS * 32;
                const int r = i / (MMA_KB * (QB / 16)), rest = i % (MMA_KB * (QB / 16));
                const int bk = rest / (QB / 16), part = rest % (QB / 16);
                const int64_t row = (int64_t)e * ne1 + (r0 + r < ne1 ? r0 + r : ne1 - 1);
                const int b = b0 + bk < nb ? b0 + bk : nb - 1;
                ra_q[u] = __ldg((const uint4 *)(wq + (row * nb + b) * QB) + part);
                ra_d[u] = __half2float(wd[row * nb + b]);
            }
#pragma unroll
            for (int u = 0; u < NB; u++) {
                const int i = threadIdx.x + u * MM_WARPS * 32;
                const int sl = i / (MMA_KB * 2), rest = i % (MMA_KB * 2);
                const int bk = rest / 2, part = rest % 2;
                const int b = b0 + bk < nb ? b0 + bk : nb - 1;
                rb_q[u] = *((const uint4 *)(aq + srow[sl] * ka + (int64_t)b * QBLK) + part);
                rb_d[u] = ad[srow[sl] * kb + b];
            }
        };
        __syncthreads(); /* srow is written */
        fetch(0);
        for (int b0 = 0; b0 < nb; b0 += MMA_KB) {
            __syncthreads(); /* the previous stage's readers are done */
#pragma unroll
            for (int u = 0; u < NA; u++) {
                const int i = threadIdx.x + u * MM_WARPS * 32;
                const int r = i / (MMA_KB * (QB / 16)), rest = i % (MMA_KB * (QB / 16));
                const int bk = rest / (QB / 16), part = rest % (QB / 16);
                *(uint4 *)(sa + r * AS + bk * QB + part * 16) = ra_q[u];
                if (part == 0) sda[r][bk] = ra_d[u];
            }
#pragma unroll
            for (int u = 0; u < NB; u++) {
                const int i = threadIdx.x + u * MM_WARPS * 32;
                const int sl = i / (MMA_KB * 2), rest = i % (MMA_KB * 2);
                const int bk = rest / 2, part = rest % 2;
                *(uint4 *)(sb + sl * BS + bk * QBLK + part * 16) = rb_q[u];
                if (part == 0) sdb[sl][bk] = rb_d[u];
            }
            __syncthreads();
            if (b0 + MMA_KB < nb) fetch(b0 + MMA_KB);
            const int kmax = nb - b0 < MMA_KB ? nb - b0 : MMA_KB;
            for (int bk = 0; bk < kmax; bk++) {
                int A[4];
                const uint8_t *pa = sa + (wr + gid) * AS + bk * QB + tig * 4;
                const uint8_t *pb = pa + 8 * AS;
                if (QT == DT_Q4_0) {
                    const unsigned va = *(const unsigned *)pa, vb = *(const unsigned *)pb;
                    A[0] = (int)__vsub4(va & 0x0F0F0F0Fu, 0x08080808u);
                    A[1] = (int)__vsub4(vb & 0x0F0F0F0Fu, 0x08080808u);
                    A[2] = (int)__vsub4((va >> 4) & 0x0F0F0F0Fu, 0x08080808u);
                    A[3] = (int)__vsub4((vb >> 4) & 0x0F0F0F0Fu, 0x08080808u);
                } else {
                    A[0] = *(const int *)pa;
                    A[1] = *(const int *)pb;
                    A[2] = *(const int *)(pa + 16);
                    A[3] = *(const int *)(pb + 16);
                }
                const float da = sda[wr + gid][bk], db = sda[wr + gid + 8][bk];
#pragma unroll
                for (int nt = 0; nt < 8; nt++) {
                    const uint8_t *pq = sb + (nt * 8 + gid) * BS + bk * QBLK + tig * 4;
                    int C[4] = {0, 0, 0, 0};
                    mma_s8(C, A, *(const int *)pq, *(const int *)(pq + 16));
                    const float x0 = sdb[nt * 8 + tig * 2][bk], x1 = sdb[nt * 8 + tig * 2 + 1][bk];
                    acc[nt][0] += (float)C[0] * (da * x0);
                    acc[nt][1] += (float)C[1] * (da * x1);
                    acc[nt][2] += (float)C[2] * (db * x0);
                    acc[nt][3] += (float)C[3] * (db * x1);
                }
            }
        }
        const int64_t ra = r0 + wr + gid, rb = ra + 8;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
#pragma unroll
            for (int c = 0; c < 2; c++) {
                const int j = j0 + nt * 8 + tig * 2 + c;
                if (j >= ns) continue;
                float *yr = y + (int64_t)(s0 + j) * ne1;
                if (ra < ne1) yr[ra] = acc[nt][c];
                if (rb < ne1) yr[rb] = acc[nt][2 + c];
            }
        }
    }
}

#endif
