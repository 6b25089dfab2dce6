/* forward.cu — the CUDA backend: weights uploaded once, the KV cache and
 * every stage of the forward pass on device 0; only the logits come back.
 *
 * A forward pass is a fixed sequence of kernel launches on one stream:
 * embedding, then per layer RMSNorm → Q/K/V products → bias, q/k norm,
 * RoPE and cache store → attention → output product → residual and
 * RMSNorm → SwiGLU feed-forward or routed experts, and finally the output
 * norm and product for the rows that want logits.  Every launch reads the
 * batch (tokens, positions, sequences) from device memory, so a step of n
 * tokens that all want logits (a decode step of n sequences, n <= MVN_MAX)
 * is captured once per n as a CUDA graph and replayed for every later one.
 * Such small batches read each weight row once and multiply it by all
 * their tokens (mvn_q_cuda, mvn_glu_q_cuda); longer ones take the
 * tensor-core kernels.
 *
 * The mixture of experts stays on the device too: routing (softmax, top-k,
 * renormalisation) and grouping of the (token, expert) pairs by expert are
 * kernels, and the expert products are single launches over all experts
 * (grid.y walks the experts that have pairs), so no step waits for the host.
 */
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda.h"
#include "cuda/kernels.cuh"

/* ---------------------------------------------------------------- errors */

static hearth_status fail(char *err, size_t cap, hearth_status st, const char *fmt, ...) {
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return st;
}

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return fail(err, cap, HEARTH_ERR_INTERNAL, "CUDA: %s failed: %s", #call,               \
                        cudaGetErrorString(e_));                                                   \
    } while (0)

#define CK_ALLOC(ptr, bytes)                                                                       \
    do {                                                                                           \
        const size_t n_ = (size_t)(bytes);                                                         \
        if (cudaMalloc((void **)&(ptr), n_ > 0 ? n_ : 16) != cudaSuccess) {                        \
            cudaGetLastError();                                                                    \
            return fail(err, cap, HEARTH_ERR_NOMEM,                                                \
                        "the GPU is out of memory (%.1f MiB more were asked for)",                 \
                        (double)n_ / 1048576.0);                                                   \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------- weights */

/* A weight on the device (layout in kernels.cuh); type -1 when absent. */
typedef struct dweight {
    int type;
    int64_t ne0, ne1, ne2;
    void *q;   /* values, or the quants of Q4_0 / Q8_0 */
    __half *d; /* block scales of Q4_0 / Q8_0 */
    bool shared; /* points at another dweight's memory (tied output) */
} dweight;

typedef struct dlayer {
    dweight attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm, ffn_norm;
    dweight w_gate, w_up, w_down;
    dweight gate_inp, gate_exps, up_exps, down_exps;
    dweight gate_inp_shexp, gate_shexp, up_shexp, down_shexp;
} dlayer;

struct cuda_model {
    cuda_hparams hp;
    dweight token_embd, output_norm, output;
    dlayer *layers; /* (n_layer) */
    uint64_t bytes;
    int64_t widest_q; /* widest input of a Q4_0 / Q8_0 matrix */
};

/* Upload scratch: raw file bytes on the device, and host floats/halves
 * for the types converted on the host. */
typedef struct upload_buf {
    uint8_t *dev;
    size_t dev_bytes;
    float *hf;
    __half *hh;
    size_t h_elems;
} upload_buf;

static hearth_status upload_tensor(cuda_model *m, const cuda_tensor *t, cuda_dequant_fn deq,
                                   upload_buf *ub, dweight *w, char *err, size_t cap) {
    memset(w, 0, sizeof *w);
    w->type = -1;
    if (!t->data) return HEARTH_OK;
    w->ne0 = t->ne0;
    w->ne1 = t->ne1;
    w->ne2 = t->ne2 ? t->ne2 : 1;
    const int64_t rows = w->ne1 * w->ne2;
    const uint8_t *src = (const uint8_t *)t->data;
    if (t->type == DT_F32 || t->type == DT_F16 || t->type == DT_BF16) {
        const size_t bytes = (size_t)rows * t->row_bytes;
        w->type = (int)t->type;
        CK_ALLOC(w->q, bytes);
        CK(cudaMemcpy(w->q, src, bytes, cudaMemcpyHostToDevice));
        m->bytes += bytes;
        return HEARTH_OK;
    }
    if (t->type == DT_Q4_0 || t->type == DT_Q8_0) {
        const int64_t nb = w->ne0 / QBLK;
        const int qb = t->type == DT_Q4_0 ? 16 : 32;
        w->type = (int)t->type;
        CK_ALLOC(w->q, (size_t)rows * nb * qb);
        CK_ALLOC(w->d, (size_t)rows * nb * sizeof(__half));
        m->bytes += (size_t)rows * nb * (qb + 2);
        if (w->ne0 > m->widest_q) m->widest_q = w->ne0;
        const int64_t chunk = (int64_t)(ub->dev_bytes / t->row_bytes);
        for (int64_t r = 0; r < rows; r += chunk) {
            const int64_t n = rows - r < chunk ? rows - r : chunk;
            CK(cudaMemcpy(ub->dev, src + r * t->row_bytes, (size_t)(n * t->row_bytes),
                          cudaMemcpyHostToDevice));
            const int64_t nblk = n * nb;
            const unsigned grid = (unsigned)((nblk + 255) / 256);
            uint8_t *q = (uint8_t *)w->q + r * nb * qb;
            if (t->type == DT_Q4_0)
                repack_q4_0_cuda<<<grid, 256>>>(ub->dev, nblk, q, w->d + r * nb);
            else
                repack_q8_0_cuda<<<grid, 256>>>(ub->dev, nblk, q, w->d + r * nb);
            CK(cudaGetLastError());
            CK(cudaDeviceSynchronize());
        }
        return HEARTH_OK;
    }
    /* Any other type: rows converted on the host to F16. */
    if (!deq) return fail(err, cap, HEARTH_ERR_UNSUPPORTED, "no conversion for type %u", t->type);
    w->type = DT_F16;
    CK_ALLOC(w->q, (size_t)rows * w->ne0 * sizeof(__half));
    m->bytes += (size_t)rows * w->ne0 * sizeof(__half);
    const int64_t chunk = (int64_t)(ub->h_elems / (size_t)w->ne0);
    if (chunk < 1) return fail(err, cap, HEARTH_ERR_UNSUPPORTED, "row of %lld too wide", (long long)w->ne0);
    for (int64_t r = 0; r < rows; r += chunk) {
        const int64_t n = rows - r < chunk ? rows - r : chunk;
        for (int64_t i = 0; i < n; i++) deq(t->type, src + (r + i) * t->row_bytes, ub->hf + i * w->ne0, w->ne0);
        for (int64_t i = 0; i < n * w->ne0; i++) ub->hh[i] = __float2half_rn(ub->hf[i]);
        CK(cudaMemcpy((__half *)w->q + r * w->ne0, ub->hh, (size_t)(n * w->ne0) * sizeof(__half),
                      cudaMemcpyHostToDevice));
    }
    return HEARTH_OK;
}

static void dweight_free(dweight *w) {
    if (!w->shared) {
        cudaFree(w->q);
        cudaFree(w->d);
    }
    memset(w, 0, sizeof *w);
}

#define LAYER_WEIGHTS(X)                                                                           \
    X(attn_norm) X(wq) X(wk) X(wv) X(wo) X(bq) X(bk) X(bv) X(q_norm) X(k_norm) X(ffn_norm)          \
    X(w_gate) X(w_up) X(w_down) X(gate_inp) X(gate_exps) X(up_exps) X(down_exps)                   \
    X(gate_inp_shexp) X(gate_shexp) X(up_shexp) X(down_shexp)

extern "C" int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" void cuda_device_name(char *buf, size_t cap) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
        snprintf(buf, cap, "no CUDA device");
        return;
    }
    snprintf(buf, cap, "%s, %.1f GiB, compute %d.%d, %d SMs", p.name,
             (double)p.totalGlobalMem / 1073741824.0, p.major, p.minor, p.multiProcessorCount);
}

static hearth_status model_upload(const cuda_model_desc *d, cuda_model *m, char *err, size_t cap) {
    const cuda_hparams *hp = &d->hp;
    if (hp->head_dim > 32 * ATT_DPL || hp->head_dim_v > 32 * ATT_DPL ||
        hp->n_expert > MAX_EXPERTS || hp->n_rot > hp->head_dim || hp->n_expert_used > 32) {
        return fail(err, cap, HEARTH_ERR_UNSUPPORTED,
                    "the CUDA backend runs heads of up to %d dims and up to %d experts (8 of "
                    "them per token at most 32)",
                    32 * ATT_DPL, MAX_EXPERTS);
    }
    /* Refuse early when the weights cannot fit. */
    uint64_t need = 0;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const cuda_layer *l = &d->layers[il];
#define SUM(n) need += l->n.data ? (uint64_t)l->n.ne1 * (l->n.ne2 ? l->n.ne2 : 1) * l->n.row_bytes : 0;
        LAYER_WEIGHTS(SUM)
#undef SUM
    }
    need += (uint64_t)d->token_embd.ne1 * d->token_embd.row_bytes;
    if (d->output.data != d->token_embd.data) need += (uint64_t)d->output.ne1 * d->output.row_bytes;
    size_t free_b = 0, total_b = 0;
    CK(cudaMemGetInfo(&free_b, &total_b));
    if (need + (256ull << 20) > free_b) {
        return fail(err, cap, HEARTH_ERR_NOMEM,
                    "the model's weights take %.2f GiB but the GPU has %.2f GiB free (of %.2f)",
                    (double)need / 1073741824.0, (double)free_b / 1073741824.0,
                    (double)total_b / 1073741824.0);
    }
    upload_buf ub;
    memset(&ub, 0, sizeof ub);
    ub.dev_bytes = 64u << 20;
    ub.h_elems = 4u << 20;
    CK_ALLOC(ub.dev, ub.dev_bytes);
    ub.hf = (float *)malloc(ub.h_elems * sizeof(float));
    ub.hh = (__half *)malloc(ub.h_elems * sizeof(__half));
    hearth_status st = ub.hf && ub.hh ? HEARTH_OK : fail(err, cap, HEARTH_ERR_NOMEM, "out of memory");
    m->layers = (dlayer *)calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers && st == HEARTH_OK) st = fail(err, cap, HEARTH_ERR_NOMEM, "out of memory");
    if (st == HEARTH_OK) st = upload_tensor(m, &d->token_embd, d->dequant, &ub, &m->token_embd, err, cap);
    if (st == HEARTH_OK) st = upload_tensor(m, &d->output_norm, d->dequant, &ub, &m->output_norm, err, cap);
    if (st == HEARTH_OK) {
        if (d->output.data == d->token_embd.data && d->output.type == d->token_embd.type) {
            m->output = m->token_embd;
            m->output.shared = true;
        } else {
            st = upload_tensor(m, &d->output, d->dequant, &ub, &m->output, err, cap);
        }
    }
    for (uint32_t il = 0; il < hp->n_layer && st == HEARTH_OK; il++) {
        const cuda_layer *l = &d->layers[il];
        dlayer *g = &m->layers[il];
#define UP(n)                                                                                      \
    if (st == HEARTH_OK) st = upload_tensor(m, &l->n, d->dequant, &ub, &g->n, err, cap);
        LAYER_WEIGHTS(UP)
#undef UP
    }
    cudaFree(ub.dev);
    free(ub.hf);
    free(ub.hh);
    return st;
}

extern "C" void cuda_model_free(cuda_model *m) {
    if (!m) return;
    if (m->layers) {
        for (uint32_t il = 0; il < m->hp.n_layer; il++) {
            dlayer *g = &m->layers[il];
#define FREE(n) dweight_free(&g->n);
            LAYER_WEIGHTS(FREE)
#undef FREE
        }
    }
    dweight_free(&m->output);
    dweight_free(&m->token_embd);
    dweight_free(&m->output_norm);
    free(m->layers);
    free(m);
}

extern "C" hearth_status cuda_model_upload(const cuda_model_desc *d, cuda_model **out,
                                           uint64_t *bytes, char *err, size_t cap) {
    *out = NULL;
    if (cuda_device_count() == 0) return fail(err, cap, HEARTH_ERR_UNSUPPORTED, "no CUDA device found");
    CK(cudaSetDevice(0));
    cuda_model *m = (cuda_model *)calloc(1, sizeof *m);
    if (!m) return fail(err, cap, HEARTH_ERR_NOMEM, "out of memory");
    m->hp = d->hp;
    hearth_status st = model_upload(d, m, err, cap);
    if (st != HEARTH_OK) {
        cuda_model_free(m);
        return st;
    }
    *bytes = m->bytes;
    *out = m;
    return HEARTH_OK;
}

/* ---------------------------------------------------------------- context */

struct cuda_ctx {
    const cuda_model *m;
    uint32_t n_ctx, n_seq, n_batch, n_out_max, pairs;
    int kv_f32, ka;
    cudaStream_t st;
    int *h_in;                           /* pinned: tokens, pos, seq, out map (4 x n_batch) */
    int *d_in;                           /* the same on the device */
    float *h_logits;                     /* pinned (n_out_max, n_vocab) */
    float *x, *xb, *q, *k, *v, *att;     /* (n_batch, width) */
    float *tmp, *tmp2, *hb, *hb2;        /* (n_batch, n_embd) x2, (n_batch, ff) x2 */
    float *cs, *sn;                      /* (n_batch, n_rot / 2) */
    float *router, *sel_w, *shg;         /* (n_batch, n_expert), (pairs), (n_batch) */
    int *sel, *cnt, *off, *active, *active_n, *slot_tok, *pair_slot;
    float *moe_g, *moe_u, *moe_out;      /* (pairs, n_ff_exp) x2, (pairs, n_embd) */
    float *out_x, *logits;               /* (n_out_max, n_embd), (n_out_max, n_vocab) */
    int8_t *aq, *aq2;                    /* (max(n_batch, pairs), ka) x2 */
    float *ad, *ad2;                     /* (max(n_batch, pairs), ka / 32) x2 */
    void *kc, *vc;                       /* (n_layer, n_seq, n_ctx, k_row / v_row) */
    size_t kv_elem;
    /* graph[n]: the step of n tokens that all want logits (n <= MVN_MAX),
     * captured after one such step ran eagerly (warm[n]: its kernels are
     * loaded) and replayed for every later one */
    cudaGraphExec_t graph[MVN_MAX + 1];
    bool graph_failed[MVN_MAX + 1], warm[MVN_MAX + 1];
    bool graphs_off;
};

extern "C" void cuda_ctx_free(cuda_ctx *c) {
    if (!c) return;
    for (int i = 0; i <= MVN_MAX; i++)
        if (c->graph[i]) cudaGraphExecDestroy(c->graph[i]);
    void *bufs[] = {c->d_in, c->x, c->xb, c->q, c->k, c->v, c->att, c->tmp, c->tmp2, c->hb,
                    c->hb2, c->cs, c->sn, c->router, c->sel_w, c->shg, c->sel, c->cnt, c->off,
                    c->active, c->active_n, c->slot_tok, c->pair_slot, c->moe_g, c->moe_u,
                    c->moe_out, c->out_x, c->logits, c->aq, c->ad, c->aq2, c->ad2, c->kc, c->vc};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    cudaFreeHost(c->h_in);
    cudaFreeHost(c->h_logits);
    if (c->st) cudaStreamDestroy(c->st);
    free(c);
}

static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

static hearth_status ctx_alloc(cuda_ctx *c, char *err, size_t cap) {
    const cuda_hparams *hp = &c->m->hp;
    const int64_t B = c->n_batch, E = hp->n_embd, no = (int64_t)hp->n_head * hp->head_dim_v;
    const int64_t nq = (int64_t)hp->n_head * hp->head_dim, nk = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t nv = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t ff = max64(hp->n_ff, hp->n_ff_shexp), ffe = max64(hp->n_ff_exp, 1);
    const int64_t ne = max64(hp->n_expert, 1), P = c->pairs;
    const int64_t widest = max64(max64(max64(E, no), max64(ff, ffe)), c->m->widest_q);
    c->ka = (int)((widest + 31) / 32 * 32);
    const int64_t arows = max64(B, P);
    CK(cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking));
    CK(cudaMallocHost((void **)&c->h_in, (size_t)(4 * B) * sizeof(int)));
    CK(cudaMallocHost((void **)&c->h_logits, (size_t)c->n_out_max * hp->n_vocab * sizeof(float)));
    CK_ALLOC(c->d_in, (size_t)(4 * B) * sizeof(int));
#define F(p, n) CK_ALLOC(c->p, (size_t)(n) * sizeof(float))
#define I(p, n) CK_ALLOC(c->p, (size_t)(n) * sizeof(int))
    F(x, B * E);
    F(xb, B * E);
    F(q, B * nq);
    F(k, B * nk);
    F(v, B * nv);
    F(att, B * no);
    F(tmp, B * E);
    F(tmp2, B * E);
    F(hb, B * ff);
    F(hb2, B * ff);
    F(cs, B * (hp->n_rot / 2 + 1));
    F(sn, B * (hp->n_rot / 2 + 1));
    F(router, B * ne);
    F(sel_w, P);
    F(shg, B);
    I(sel, P);
    I(cnt, ne);
    I(off, ne);
    I(active, ne);
    I(active_n, 1);
    I(slot_tok, P);
    I(pair_slot, P);
    F(moe_g, hp->n_expert ? P * ffe : 1);
    F(moe_u, hp->n_expert ? P * ffe : 1);
    F(moe_out, hp->n_expert ? P * E : 1);
    F(out_x, (int64_t)c->n_out_max * E);
    F(logits, (int64_t)c->n_out_max * hp->n_vocab);
    F(ad, arows * (c->ka / 32));
    F(ad2, arows * (c->ka / 32));
#undef F
#undef I
    CK_ALLOC(c->aq, (size_t)(arows * c->ka));
    CK_ALLOC(c->aq2, (size_t)(arows * c->ka));
    const size_t slots = (size_t)hp->n_layer * c->n_seq * c->n_ctx;
    c->kv_elem = c->kv_f32 ? 4 : 2;
    CK_ALLOC(c->kc, slots * (size_t)nk * c->kv_elem);
    CK_ALLOC(c->vc, slots * (size_t)nv * c->kv_elem);
    return HEARTH_OK;
}

extern "C" hearth_status cuda_ctx_create(const cuda_model *m, uint32_t n_ctx, uint32_t n_seq,
                                         uint32_t n_batch, uint32_t n_outputs, int kv_f32,
                                         cuda_ctx **out, char *err, size_t cap) {
    *out = NULL;
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return fail(err, cap, HEARTH_ERR_NOMEM, "out of memory");
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_seq = n_seq;
    c->n_batch = n_batch;
    c->n_out_max = n_outputs;
    c->kv_f32 = kv_f32;
    c->pairs = n_batch * (m->hp.n_expert_used ? m->hp.n_expert_used : 1);
    const char *g = getenv("HEARTH_CUDA_GRAPHS");
    c->graphs_off = g && *g == '0';
    hearth_status st = ctx_alloc(c, err, cap);
    if (st != HEARTH_OK) {
        cuda_ctx_free(c);
        return st;
    }
    *out = c;
    return HEARTH_OK;
}

/* ---------------------------------------------------------------- launches */

static mm_groups dense_rows(int n) {
    mm_groups g;
    memset(&g, 0, sizeof g);
    g.n = n;
    return g;
}

static bool is_quant(const dweight *w) {
    return w->type == DT_Q4_0 || w->type == DT_Q8_0;
}

/* Quantizes rows of x (k wide) for the Q4_0 / Q8_0 kernels. */
static void act_quantize(cuda_ctx *c, const float *x, int64_t k, int rows) {
    const int64_t threads = (int64_t)rows * (k / QBLK) * 32;
    quantize_act_cuda<<<(unsigned)((threads + 255) / 256), 256, 0, c->st>>>(x, k, (int)k, rows, c->aq,
                                                                             c->ad, c->ka);
}

/* Quantized weights: the tensor-core kernel for several slots (tt > 1),
 * the dp4a kernel for one. */
template <int QT>
static void launch_q(cuda_ctx *c, const dweight *w, float *y, mm_groups g, int groups, int tt) {
    const uint8_t *q = (const uint8_t *)w->q;
    if (tt == 1) {
        const dim3 grid((unsigned)((w->ne1 + MM_WARPS * MM_RPW - 1) / (MM_WARPS * MM_RPW)),
                        (unsigned)groups);
        mm_q_cuda<QT, 1><<<grid, MM_WARPS * 32, 0, c->st>>>(q, w->d, w->ne0, w->ne1, c->aq, c->ad,
                                                             c->ka, y, g);
        return;
    }
    /* dense products split their slots over grid.z so the grid fills the GPU */
    const int chunks = g.active ? 1 : (g.n + MMA_SLOTS - 1) / MMA_SLOTS;
    const dim3 grid((unsigned)((w->ne1 + MMA_ROWS - 1) / MMA_ROWS), (unsigned)groups,
                    (unsigned)chunks);
    mm_mma_cuda<QT><<<grid, MM_WARPS * 32, 0, c->st>>>(q, w->d, w->ne0, w->ne1, c->aq, c->ad, c->ka,
                                                        y, g);
}

template <int WT>
static void launch_f(cuda_ctx *c, const dweight *w, const float *x, float *y, mm_groups g, dim3 grid,
                     int tt) {
    if (tt == 1)
        mm_f_cuda<WT, 1><<<grid, MM_WARPS * 32, 0, c->st>>>(w->q, w->ne0, w->ne1, x, w->ne0, y, g);
    else
        mm_f_cuda<WT, 4><<<grid, MM_WARPS * 32, 0, c->st>>>(w->q, w->ne0, w->ne1, x, w->ne0, y, g);
}

/* y = W x for the rows g names; x (float, w->ne0 wide rows) must already
 * be in c->aq / c->ad when W is quantized (quantized says so).  groups is
 * the grid's y extent. */
static void matmul(cuda_ctx *c, const dweight *w, const float *x, float *y, mm_groups g, int groups,
                   bool quantized, int tt) {
    if (is_quant(w)) {
        if (!quantized) act_quantize(c, x, w->ne0, g.active ? c->n_batch : g.n);
        if (w->type == DT_Q4_0)
            launch_q<DT_Q4_0>(c, w, y, g, groups, tt);
        else
            launch_q<DT_Q8_0>(c, w, y, g, groups, tt);
        return;
    }
    /* dense products split their slots over grid.z so the grid fills the GPU */
    const int chunks = g.active || tt == 1 ? 1 : (g.n + tt - 1) / tt;
    const dim3 grid((unsigned)((w->ne1 + MM_WARPS - 1) / MM_WARPS), (unsigned)groups,
                    (unsigned)chunks);
    if (w->type == DT_F32)
        launch_f<DT_F32>(c, w, x, y, g, grid, tt);
    else if (w->type == DT_F16)
        launch_f<DT_F16>(c, w, x, y, g, grid, tt);
    else
        launch_f<DT_BF16>(c, w, x, y, g, grid, tt);
}


/* Slots per pass of the few-token kernels (1: the one-token kernels): a
 * group of experts rarely has more than a few, dense rows all n tokens. */
static int pass_slots(mm_groups g, int n) {
    return n == 1 ? 1 : g.active ? 4 : n;
}

/* grid: one block per 2 MM_WARPS rows; grouped launches (experts) give
 * each warp 4 row pairs. */
template <int QT>
static void launch_mvn(cuda_ctx *c, int nt, dim3 grid, const mv_args &a, mm_groups g) {
    const dim3 block(MM_WARPS * 32);
    if (g.active) {
        grid.x = (grid.x + 3) / 4;
        mvn_q_cuda<QT, 4, 4><<<grid, block, 0, c->st>>>(a, g);
    } else if (nt <= 4) {
        mvn_q_cuda<QT, 4, 1><<<grid, block, 0, c->st>>>(a, g);
    } else if (nt <= 8) {
        mvn_q_cuda<QT, 8, 1><<<grid, block, 0, c->st>>>(a, g);
    } else {
        mvn_q_cuda<QT, MVN_MAX, 1><<<grid, block, 0, c->st>>>(a, g);
    }
}

/* Products through mv_q_cuda of nm matrices (one type, one input width)
 * with the same activations: aq / ad, or x for MV_XF.  nt > 1 (MV_PLAIN
 * only): up to nt slots a pass through mvn_q_cuda. */
static void mv(cuda_ctx *c, int mode, const dweight *const *ws, float *const *ys, int nm,
               const float *x, mm_groups g, int groups, const int8_t *aq, const float *ad,
               int nt) {
    mv_args a;
    memset(&a, 0, sizeof a);
    int64_t rows = 0;
    for (int i = 0; i < nm; i++) {
        a.q[i] = (const uint8_t *)ws[i]->q;
        a.d[i] = ws[i]->d;
        a.y[i] = ys[mode == MV_GLU ? 0 : i];
        a.ne1[i] = ws[i]->ne1;
        rows = max64(rows, ws[i]->ne1);
    }
    a.ne0 = ws[0]->ne0;
    a.aq = aq;
    a.ad = ad;
    a.ka = c->ka;
    a.x = x;
    const int per_block = mode == MV_GLU ? MM_WARPS : MM_WARPS * 2;
    const dim3 grid((unsigned)((rows + per_block - 1) / per_block), (unsigned)groups,
                    mode == MV_GLU ? 1u : (unsigned)nm);
    const dim3 block(MM_WARPS * 32);
    const bool q4 = ws[0]->type == DT_Q4_0;
    if (nt > 1) {
        if (q4)
            launch_mvn<DT_Q4_0>(c, nt, grid, a, g);
        else
            launch_mvn<DT_Q8_0>(c, nt, grid, a, g);
    } else if (mode == MV_PLAIN) {
        if (q4)
            mv_q_cuda<DT_Q4_0, MV_PLAIN><<<grid, block, 0, c->st>>>(a, g);
        else
            mv_q_cuda<DT_Q8_0, MV_PLAIN><<<grid, block, 0, c->st>>>(a, g);
    } else if (mode == MV_GLU) {
        if (q4)
            mv_q_cuda<DT_Q4_0, MV_GLU><<<grid, block, 0, c->st>>>(a, g);
        else
            mv_q_cuda<DT_Q8_0, MV_GLU><<<grid, block, 0, c->st>>>(a, g);
    } else {
        if (q4)
            mv_q_cuda<DT_Q4_0, MV_XF><<<grid, block, 0, c->st>>>(a, g);
        else
            mv_q_cuda<DT_Q8_0, MV_XF><<<grid, block, 0, c->st>>>(a, g);
    }
}

static bool same_quant(const dweight *a, const dweight *b) {
    return is_quant(a) && is_quant(b) && a->type == b->type && a->ne0 == b->ne0;
}

/* y = W x for the n rows of x whose activations are already quantized in
 * aq / ad (quantized weights) or for float x. */
static void project(cuda_ctx *c, const dweight *w, const float *x, float *y, int n) {
    if (is_quant(w) && n <= MVN_MAX) {
        float *ys[1] = {y};
        mv(c, MV_PLAIN, &w, ys, 1, NULL, dense_rows(n), 1, c->aq, c->ad, n);
    } else {
        matmul(c, w, x, y, dense_rows(n), 1, is_quant(w), n == 1 ? 1 : 4);
    }
}

/* gate/up (silu(gate) * up into h) of the activations in xb (quantized
 * already when the weights are), for groups g or dense rows.  Returns
 * true when h was also quantized, into aq2 / ad2. */
static bool gate_up(cuda_ctx *c, const dweight *gw, const dweight *uw, const float *x, float *h,
                    float *u, int64_t width, int rows, mm_groups g, int groups, int n) {
    if (n <= MVN_MAX && same_quant(gw, uw)) {
        mv_args a;
        memset(&a, 0, sizeof a);
        a.q[0] = (const uint8_t *)gw->q;
        a.q[1] = (const uint8_t *)uw->q;
        a.d[0] = gw->d;
        a.d[1] = uw->d;
        a.y[0] = h;
        a.ne1[0] = gw->ne1;
        a.ne0 = gw->ne0;
        a.aq = c->aq;
        a.ad = c->ad;
        a.ka = c->ka;
        if (gw->ne1 % QBLK == 0) {
            const dim3 grid((unsigned)(gw->ne1 / 32), (unsigned)groups);
            const bool q4 = gw->type == DT_Q4_0;
            const int nt = pass_slots(g, n);
            if (n == 1 && q4)
                mv_glu_q_cuda<DT_Q4_0><<<grid, 1024, 0, c->st>>>(a, g, c->aq2, c->ad2);
            else if (n == 1)
                mv_glu_q_cuda<DT_Q8_0><<<grid, 1024, 0, c->st>>>(a, g, c->aq2, c->ad2);
            else if (nt <= 4 && q4)
                mvn_glu_q_cuda<DT_Q4_0, 4><<<grid, MVN_GLU_THREADS, 0, c->st>>>(a, g, c->aq2, c->ad2);
            else if (nt <= 4)
                mvn_glu_q_cuda<DT_Q8_0, 4><<<grid, MVN_GLU_THREADS, 0, c->st>>>(a, g, c->aq2, c->ad2);
            else if (q4)
                mvn_glu_q_cuda<DT_Q4_0, 8><<<grid, MVN_GLU_THREADS, 0, c->st>>>(a, g, c->aq2, c->ad2);
            else
                mvn_glu_q_cuda<DT_Q8_0, 8><<<grid, MVN_GLU_THREADS, 0, c->st>>>(a, g, c->aq2, c->ad2);
            return true;
        }
        const dweight *ws[2] = {gw, uw};
        float *ys[1] = {h};
        mv(c, MV_GLU, ws, ys, 2, NULL, g, groups, c->aq, c->ad, 1);
        return false;
    }
    const int tt = n == 1 ? 1 : 4;
    matmul(c, gw, x, h, g, groups, is_quant(gw), tt);
    matmul(c, uw, x, u, g, groups, is_quant(uw), tt);
    const int64_t tot = (int64_t)rows * width;
    swiglu_cuda<<<(unsigned)((tot + 255) / 256), 256, 0, c->st>>>(h, u, tot);
    return false;
}

/* down(h) into y for groups g (rows of h: slots) or dense rows. */
static void down(cuda_ctx *c, const dweight *w, const float *h, float *y, int rows, mm_groups g,
                 int groups, int n, bool h_quantized) {
    if (n <= MVN_MAX && is_quant(w)) {
        float *ys[1] = {y};
        if (h_quantized)
            mv(c, MV_PLAIN, &w, ys, 1, NULL, g, groups, c->aq2, c->ad2, pass_slots(g, n));
        else
            mv(c, MV_XF, &w, ys, 1, h, g, groups, NULL, NULL, 1);
        return;
    }
    if (is_quant(w)) act_quantize(c, h, w->ne0, rows);
    matmul(c, w, h, y, g, groups, true, n == 1 ? 1 : 4);
}

/* Whether the inputs of a block's products are quantized by the norm. */
static bool ffn_wants_q(const dlayer *l) {
    return is_quant(&l->gate_inp) || is_quant(&l->gate_exps) || is_quant(&l->up_exps) ||
           is_quant(&l->w_gate) || is_quant(&l->w_up) || is_quant(&l->gate_shexp) ||
           is_quant(&l->up_shexp) || is_quant(&l->gate_inp_shexp);
}

/* The mixture-of-experts feed-forward of c->xb (n tokens; quantized in
 * aq when the weights are).  Returns what the next norm adds: the
 * weighted expert outputs, or c->tmp when a shared expert is added. */
static norm_add moe_ffn(cuda_ctx *c, const dlayer *l, int n) {
    const cuda_hparams *hp = &c->m->hp;
    const int k = (int)hp->n_expert_used, ne = (int)hp->n_expert, E = (int)hp->n_embd;
    const int pairs = n * k, groups = ne < pairs ? ne : pairs;
    project(c, &l->gate_inp, c->xb, c->router, n);
    if (n <= 32) {
        moe_route_group_cuda<<<1, 1024, 0, c->st>>>(c->router, n, ne, k, hp->expert_weights_norm,
                                                    c->sel, c->sel_w, c->cnt, c->off, c->active,
                                                    c->active_n, c->slot_tok, c->pair_slot);
    } else {
        moe_route_cuda<<<(n + 7) / 8, 256, 0, c->st>>>(c->router, n, ne, k,
                                                       hp->expert_weights_norm, c->sel, c->sel_w);
        moe_group_cuda<<<1, 1024, 0, c->st>>>(c->sel, pairs, k, ne, c->cnt, c->off, c->active,
                                              c->active_n, c->slot_tok, c->pair_slot);
    }
    mm_groups g = {c->active, c->active_n, c->off, c->cnt, c->slot_tok, 0};
    const bool hq = gate_up(c, &l->gate_exps, &l->up_exps, c->xb, c->moe_g, c->moe_u,
                            hp->n_ff_exp, pairs, g, groups, n);
    g.map = NULL;
    down(c, &l->down_exps, c->moe_g, c->moe_out, pairs, g, groups, n, hq);
    norm_add r = {NULL, c->moe_out, c->pair_slot, c->sel_w, k};
    if (l->gate_shexp.type < 0) return r;
    moe_combine_cuda<<<n, 256, 0, c->st>>>(c->moe_out, c->pair_slot, c->sel_w, k, E, c->tmp);
    /* the experts' down products may have replaced xb's quantized rows */
    if (ffn_wants_q(l)) act_quantize(c, c->xb, E, n);
    const bool sq = gate_up(c, &l->gate_shexp, &l->up_shexp, c->xb, c->hb, c->hb2,
                            hp->n_ff_shexp, n, dense_rows(n), 1, n);
    down(c, &l->down_shexp, c->hb, c->tmp2, n, dense_rows(n), 1, n, sq);
    if (l->gate_inp_shexp.type >= 0) project(c, &l->gate_inp_shexp, c->xb, c->shg, n);
    shexp_add_cuda<<<n, 256, 0, c->st>>>(c->tmp, c->tmp2,
                                         l->gate_inp_shexp.type >= 0 ? c->shg : NULL, E);
    norm_add t = {c->tmp, NULL, NULL, NULL, 0};
    return t;
}

/* Threads of a norm block: a few rows get a whole block each. */
static unsigned norm_threads(int rows) {
    return rows <= 8 ? 1024u : 256u;
}

/* Enqueues the whole forward pass of n tokens (inputs already in h_in). */
static void enqueue_forward(cuda_ctx *c, int n, int n_out) {
    const cuda_model *m = c->m;
    const cuda_hparams *hp = &m->hp;
    const int B = (int)c->n_batch, E = (int)hp->n_embd;
    int *d_tok = c->d_in, *d_pos = c->d_in + B, *d_seq = c->d_in + 2 * B, *d_out = c->d_in + 3 * B;
    cudaMemcpyAsync(c->d_in, c->h_in, (size_t)(4 * B) * sizeof(int), cudaMemcpyHostToDevice, c->st);
    embed_cuda<<<n, 256, 0, c->st>>>(m->token_embd.type, m->token_embd.q, m->token_embd.d, E, d_tok,
                                      c->x);
    rope_angles_cuda<<<n, 64, 0, c->st>>>(d_pos, c->cs, c->sn, (int)hp->n_rot / 2, (int)hp->n_rot,
                                          hp->rope_base);
    attn_args a;
    memset(&a, 0, sizeof a);
    a.q = c->q;
    a.k = c->k;
    a.v = c->v;
    a.cs = c->cs;
    a.sn = c->sn;
    a.pos = d_pos;
    a.seq = d_seq;
    a.kc = c->kc;
    a.vc = c->vc;
    a.n_ctx = (int)c->n_ctx;
    a.n_head = (int)hp->n_head;
    a.n_kv = (int)hp->n_head_kv;
    a.hd = (int)hp->head_dim;
    a.hdv = (int)hp->head_dim_v;
    a.n_rot = (int)hp->n_rot;
    a.neox = hp->rope_neox;
    a.kv_f32 = c->kv_f32;
    a.eps = hp->norm_eps;
    a.scale = 1.0f / sqrtf((float)hp->head_dim);
    a.out = c->att;
    a.ka = c->ka;
    const int hd_threads =
        ((hp->head_dim > hp->head_dim_v ? hp->head_dim : hp->head_dim_v) + 31) / 32 * 32;
    const bool e32 = E % QBLK == 0;
    norm_add pend = {NULL, NULL, NULL, NULL, 0};
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const dlayer *l = &m->layers[il];
        const bool qkv_q = e32 && same_quant(&l->wq, &l->wk) && same_quant(&l->wq, &l->wv);
        add_rmsnorm_cuda<<<n, norm_threads(n), 0, c->st>>>(c->x, pend, (const float *)l->attn_norm.q, c->xb, E,
                                               hp->norm_eps, NULL, qkv_q ? c->aq : NULL, c->ad,
                                               c->ka);
        if (qkv_q && n <= MVN_MAX) {
            const dweight *ws[3] = {&l->wq, &l->wk, &l->wv};
            float *ys[3] = {c->q, c->k, c->v};
            mv(c, MV_PLAIN, ws, ys, 3, NULL, dense_rows(n), 1, c->aq, c->ad, n);
        } else {
            const int tt = n == 1 ? 1 : 4;
            matmul(c, &l->wq, c->xb, c->q, dense_rows(n), 1, qkv_q, tt);
            matmul(c, &l->wk, c->xb, c->k, dense_rows(n), 1, qkv_q, tt);
            matmul(c, &l->wv, c->xb, c->v, dense_rows(n), 1, qkv_q, tt);
        }
        a.bq = (const float *)l->bq.q;
        a.bk = (const float *)l->bk.q;
        a.bv = (const float *)l->bv.q;
        a.q_norm = (const float *)l->q_norm.q;
        a.k_norm = (const float *)l->k_norm.q;
        a.slot0 = (int64_t)il * c->n_seq * c->n_ctx;
        const bool att_q = is_quant(&l->wo) && hp->head_dim_v % QBLK == 0;
        a.aq = att_q ? c->aq : NULL;
        a.ad = att_q ? c->ad : NULL;
        qkv_stage_cuda<<<dim3(hp->n_head + 2 * hp->n_head_kv, n), hd_threads, 0, c->st>>>(a);
        const dim3 agrid(hp->n_head, n);
        const uint32_t group = hp->n_head / hp->n_head_kv;
        /* a few tokens (decode steps of several sequences) take the
         * one-token kernel's split over positions */
        const bool fa = n > MVN_MAX && !c->kv_f32 && hp->head_dim == hp->head_dim_v &&
                        (hp->head_dim == 64 || hp->head_dim == 128);
        if (fa) {
            const dim3 fgrid(hp->n_head, (n + FA_ROWS - 1) / FA_ROWS);
            if (hp->head_dim == 128)
                attention_fa_cuda<128><<<fgrid, 128, 0, c->st>>>(a, n);
            else
                attention_fa_cuda<64><<<fgrid, 128, 0, c->st>>>(a, n);
        } else if (n > MVN_MAX && hp->head_dim % 8 == 0 && group >= 4 && group <= 32) {
            if (c->kv_f32)
                attention_gqa_cuda<float><<<dim3(hp->n_head_kv, n), group * 32, 0, c->st>>>(a);
            else
                attention_gqa_cuda<__half><<<dim3(hp->n_head_kv, n), group * 32, 0, c->st>>>(a);
        } else if (n > MVN_MAX && hp->head_dim % 8 == 0) {
            if (c->kv_f32)
                attention_prefill_cuda<float><<<agrid, ATP_WARPS * 32, 0, c->st>>>(a);
            else
                attention_prefill_cuda<__half><<<agrid, ATP_WARPS * 32, 0, c->st>>>(a);
        } else if (c->kv_f32) {
            attention_cuda<float><<<agrid, ATT_WARPS * 32, 0, c->st>>>(a);
        } else {
            attention_cuda<__half><<<agrid, ATT_WARPS * 32, 0, c->st>>>(a);
        }
        if (is_quant(&l->wo) && !att_q) act_quantize(c, c->att, l->wo.ne0, n);
        project(c, &l->wo, c->att, c->tmp, n);
        const norm_add at = {c->tmp, NULL, NULL, NULL, 0};
        const bool fq = e32 && ffn_wants_q(l);
        add_rmsnorm_cuda<<<n, norm_threads(n), 0, c->st>>>(c->x, at, (const float *)l->ffn_norm.q, c->xb, E,
                                               hp->norm_eps, NULL, fq ? c->aq : NULL, c->ad, c->ka);
        if (l->gate_inp.type >= 0) {
            pend = moe_ffn(c, l, n);
        } else {
            const bool hq = gate_up(c, &l->w_gate, &l->w_up, c->xb, c->hb, c->hb2, hp->n_ff, n,
                                    dense_rows(n), 1, n);
            down(c, &l->w_down, c->hb, c->tmp, n, dense_rows(n), 1, n, hq);
            pend.add = c->tmp;
            pend.mo = NULL;
        }
    }
    if (n_out == 0) return;
    const bool oq = e32 && is_quant(&m->output);
    add_rmsnorm_cuda<<<n_out, norm_threads(n_out), 0, c->st>>>(c->x, pend, (const float *)m->output_norm.q,
                                               c->out_x, E, hp->norm_eps, d_out,
                                               oq ? c->aq : NULL, c->ad, c->ka);
    project(c, &m->output, c->out_x, c->logits, n_out);
    cudaMemcpyAsync(c->h_logits, c->logits, (size_t)n_out * hp->n_vocab * sizeof(float),
                    cudaMemcpyDeviceToHost, c->st);
}

extern "C" hearth_status cuda_forward(cuda_ctx *c, uint32_t n, const int32_t *tokens,
                                      const int32_t *pos, const int32_t *seq,
                                      const int32_t *out_rows, uint32_t n_out, float *logits,
                                      char *err, size_t cap) {
    const uint32_t B = c->n_batch;
    if (n == 0 || n > B || n_out > c->n_out_max)
        return fail(err, cap, HEARTH_ERR_INVALID_ARG, "batch of %u tokens (%u logits) too large", n, n_out);
    memcpy(c->h_in, tokens, n * sizeof(int));
    memcpy(c->h_in + B, pos, n * sizeof(int));
    memcpy(c->h_in + 2 * B, seq, n * sizeof(int));
    for (uint32_t t = 0; t < n; t++)
        if (out_rows[t] >= 0) c->h_in[3 * B + out_rows[t]] = (int)t;
    /* Every launch of a step of n tokens that all want logits depends on n
     * alone (tokens, positions, sequences and output rows are read from
     * d_in, copied inside the step), so one graph per n serves them all. */
    const bool graphable = n_out == n && n <= MVN_MAX && !c->graphs_off;
    if (graphable && c->warm[n] && !c->graph_failed[n]) {
        if (!c->graph[n]) {
            cudaGraph_t g = NULL;
            bool ok = cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
            if (ok) {
                enqueue_forward(c, (int)n, (int)n);
                ok = cudaStreamEndCapture(c->st, &g) == cudaSuccess && g;
            }
            ok = ok && cudaGraphInstantiate(&c->graph[n], g, 0) == cudaSuccess;
            if (g) cudaGraphDestroy(g);
            if (!ok) {
                cudaGetLastError();
                c->graph[n] = NULL;
                c->graph_failed[n] = true;
            }
        }
        if (c->graph[n]) {
            CK(cudaGraphLaunch(c->graph[n], c->st));
        } else {
            enqueue_forward(c, (int)n, (int)n);
        }
    } else {
        enqueue_forward(c, (int)n, (int)n_out);
        if (graphable) c->warm[n] = true;
    }
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(c->st));
    memcpy(logits, c->h_logits, (size_t)n_out * c->m->hp.n_vocab * sizeof(float));
    return HEARTH_OK;
}

extern "C" hearth_status cuda_kv_copy(cuda_ctx *c, int32_t dst, int32_t src, int32_t n_pos, char *err,
                                      size_t cap) {
    const cuda_hparams *hp = &c->m->hp;
    const size_t kr = (size_t)hp->n_head_kv * hp->head_dim * c->kv_elem;
    const size_t vr = (size_t)hp->n_head_kv * hp->head_dim_v * c->kv_elem;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const size_t s0 = ((size_t)il * c->n_seq + (size_t)src) * c->n_ctx;
        const size_t d0 = ((size_t)il * c->n_seq + (size_t)dst) * c->n_ctx;
        CK(cudaMemcpyAsync((uint8_t *)c->kc + d0 * kr, (uint8_t *)c->kc + s0 * kr, (size_t)n_pos * kr,
                           cudaMemcpyDeviceToDevice, c->st));
        CK(cudaMemcpyAsync((uint8_t *)c->vc + d0 * vr, (uint8_t *)c->vc + s0 * vr, (size_t)n_pos * vr,
                           cudaMemcpyDeviceToDevice, c->st));
    }
    CK(cudaStreamSynchronize(c->st));
    return HEARTH_OK;
}

extern "C" double cuda_copy_bandwidth(void) {
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
        cudaGetLastError();
        cudaFree(a);
        return 0.0;
    }
    cudaMemset(a, 1, bytes);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float best = 1e30f;
    for (int r = 0; r < 6; r++) {
        cudaEventRecord(e0);
        cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r > 0 && ms < best) best = ms;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * (double)bytes / (best * 1e-3);
}
