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
#define ATT_WARPS 4  /* warps (position splits) per attention block */
#define ATT_DPL   8  /* head dims per lane: head_dim <= 256 */

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

/* Row r (source row map[r], or r): x += add when add is given, then
 * out[r] = x * w / rms(x); grid rows. */
__global__ void add_rmsnorm_cuda(float *x, const float *add, const float *w, float *out, int n,
                                 float eps, const int *map) {
    const int r = blockIdx.x;
    const int64_t src = map ? map[r] : r;
    float *xr = x + src * n;
    const float *ar = add ? add + src * n : nullptr;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        if (ar) {
            v += ar[i];
            xr[i] = v;
        }
        ss += v * v;
    }
    ss = block_sum(ss);
    const float sc = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        out[(int64_t)r * n + i] = xr[i] * sc * (w ? w[i] : 1.0f);
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
    for (int j0 = 0; j0 < ns; j0 += TT) {
        float acc[TT];
        const float *xr[TT];
#pragma unroll
        for (int t = 0; t < TT; t++) {
            const int s = s0 + (j0 + t < ns ? j0 + t : ns - 1);
            xr[t] = x + (int64_t)(g.map ? g.map[s] : s) * x_stride;
            acc[t] = 0.0f;
        }
        for (int64_t i = lane; i < ne0; i += 32) {
            const float w = weight_at(WT, wv, nullptr, ne0, row, i);
#pragma unroll
            for (int t = 0; t < TT; t++) acc[t] += w * xr[t][i];
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
        qv[i] = d < a.hd ? q[d] * a.scale : 0.0f;
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
        a.out[(int64_t)t * a.n_head * a.hdv + h * a.hdv + d] = num / den;
    }
}

/* ---------------------------------------------------------------- experts */

/* Per token (one warp): softmax of the router logits (ne experts), the k
 * most probable (ties to the lower index) and their weights, renormalised
 * to sum 1 when norm is set. */
__global__ void moe_route_cuda(const float *logits, int ne, int k, int norm, int *sel,
                               float *sel_w) {
    const int t = blockIdx.x, lane = threadIdx.x;
    const float *p = logits + (int64_t)t * ne;
    float mx = -INFINITY;
    for (int i = lane; i < ne; i += 32) mx = fmaxf(mx, p[i]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int i = lane; i < ne; i += 32) sum += expf(p[i] - mx);
    sum = warp_sum(sum);
    uint32_t taken = 0; /* bit i: expert lane + 32 i already chosen (ne <= 1024) */
    float wsum = 0.0f;
    for (int j = 0; j < k; j++) {
        float bv = -1.0f;
        int bi = 0x7fffffff;
        for (int i = lane, s = 0; i < ne; i += 32, s++) {
            const float pr = expf(p[i] - mx) / sum;
            if (!(taken >> s & 1u) && (pr > bv || (pr == bv && i < bi))) {
                bv = pr;
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
        if (bi % 32 == lane) taken |= 1u << (bi / 32);
        if (lane == 0) {
            sel[t * k + j] = bi;
            sel_w[t * k + j] = bv;
        }
        wsum += bv;
    }
    __syncwarp(); /* lane 0's stores are seen by the lanes that rescale them */
    if (norm && lane < k) sel_w[t * k + lane] /= wsum;
}

/* Groups the n_pairs (token, expert) pairs by expert, in expert order and
 * within an expert in pair order (the CPU engine's order): cnt, off per
 * expert, the list of experts with pairs, each slot's token (slot_tok) and
 * each pair's slot (pair_slot).  One block. */
__global__ void moe_group_cuda(const int *sel, int n_pairs, int k, int ne, int *cnt, int *off,
                               int *active, int *active_n, int *slot_tok, int *pair_slot) {
    for (int e = threadIdx.x; e < ne; e += blockDim.x) {
        int c = 0;
        for (int p = 0; p < n_pairs; p++) c += sel[p] == e;
        cnt[e] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int o = 0, na = 0;
        for (int e = 0; e < ne; e++) {
            off[e] = o;
            o += cnt[e];
            if (cnt[e]) active[na++] = e;
        }
        *active_n = na;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < ne; e += blockDim.x) {
        if (!cnt[e]) continue;
        int s = off[e];
        for (int p = 0; p < n_pairs; p++) {
            if (sel[p] != e) continue;
            slot_tok[s] = p / k;
            pair_slot[p] = s++;
        }
    }
}

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

#endif
