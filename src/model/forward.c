/* forward.c — the dense decoder forward pass on the CPU.
 *
 * One call processes a batch of tokens that may belong to different
 * sequences: embeddings, then per layer RMSNorm → Q/K/V projections → RoPE →
 * KV-cache store → causal grouped-query attention → output projection →
 * RMSNorm → SwiGLU feed-forward, each added to the residual stream; finally
 * the output norm and projection for the tokens that asked for logits.
 *
 * Matrix products convert their input rows once to the weight type's
 * activation type (Q8_0 for quantized weights, F16 for F16 …) and split the
 * weight rows across the thread pool.  With an F16 KV cache, attention
 * multiplies f16 operands (the query and the softmax weights are rounded to
 * f16), which is how the reference implementation computes it.
 */
#include <math.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "util/dtype.h"

/* ---------------------------------------------------------------- small ops */

void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    if (w) {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale;
    }
}

void rope_apply(float *x, int n_heads, int head_dim, int n_rot, rope_mode mode, const float *cos,
                const float *sin) {
    int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            /* NORM pairs adjacent dims; NEOX pairs dim i with dim i + n_rot/2. */
            int a = mode == ROPE_MODE_NORM ? 2 * i : i;
            int b = mode == ROPE_MODE_NORM ? 2 * i + 1 : i + half;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cos[i] - x1 * sin[i];
            v[b] = x0 * sin[i] + x1 * cos[i];
        }
    }
}

/* cos/sin of pos * base^(-2i / n_rot) for i < n_rot / 2, in double so that
 * long positions keep their precision. */
static void rope_angles(float *cos_out, float *sin_out, int32_t pos, int n_rot, float base) {
    for (int i = 0; i < n_rot / 2; i++) {
        double freq = pow((double)base, -2.0 * i / (double)n_rot);
        double angle = (double)pos * freq;
        cos_out[i] = (float)cos(angle);
        sin_out[i] = (float)sin(angle);
    }
}

static float silu(float x) {
    return x / (1.0f + expf(-x));
}

/* ---------------------------------------------------------------- profile */

/* HEARTH_PROFILE=1 times the phases of the forward pass and prints a table
 * at exit: a diagnostic for kernel work, off (one branch per phase) unless
 * asked for. */
enum { PH_STAGES, PH_QKV, PH_ATTN, PH_WO, PH_ROUTER, PH_EXPERTS, PH_FFN, PH_OUTPUT, PH_COUNT };
static const char *const phase_names[PH_COUNT] = {"stages", "qkv",     "attention", "wo",
                                                  "router", "experts", "dense ffn", "output"};
static double phase_time[PH_COUNT];
static int profile_on = -1;

static double phase_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void profile_print(void) {
    double total = 0;
    for (int i = 0; i < PH_COUNT; i++) total += phase_time[i];
    fprintf(stderr, "hearth profile (%.1f ms in all):\n", total * 1e3);
    for (int i = 0; i < PH_COUNT; i++) {
        fprintf(stderr, "  %-10s %9.1f ms %5.1f%%\n", phase_names[i], phase_time[i] * 1e3,
                total > 0 ? 100.0 * phase_time[i] / total : 0.0);
    }
}

/* Returns the start time when profiling (0 otherwise); phase_end adds. */
static double phase_begin(void) {
    if (profile_on < 0) {
        const char *env = getenv("HEARTH_PROFILE");
        profile_on = env && *env && *env != '0';
        if (profile_on) atexit(profile_print);
    }
    return profile_on ? phase_clock() : 0.0;
}

static void phase_end(int phase, double t0) {
    if (profile_on) phase_time[phase] += phase_clock() - t0;
}

/* ---------------------------------------------------------------- matmul */

typedef struct act_job {
    const kernel_traits *kt;
    const float *x; /* (n_tok, n) */
    int64_t n;
    uint8_t *act; /* (n_tok, stride) */
    size_t stride;
    int64_t n_tok;
} act_job;

static void act_worker(void *arg, int ith, int nth) {
    act_job *j = arg;
    int64_t b, e;
    threadpool_split(j->n_tok, ith, nth, &b, &e);
    for (int64_t t = b; t < e; t++)
        j->kt->quantize_act(j->x + t * j->n, j->act + t * j->stride, j->n);
}

/* Converts n_tok rows of width n to the activation type of w into ctx->s.act. */
static void act_convert(hearth_context *ctx, const weight *w, const float *x, int64_t n_tok) {
    act_job j = {w->kt, x, w->ne0, ctx->s.act, ctx->act_row_bytes, n_tok};
    if (n_tok == 1) {
        act_worker(&j, 0, 1);
    } else {
        threadpool_run(ctx->pool, act_worker, &j);
    }
}

/* Several matrix products run as one parallel job (Q, K and V; gate and
 * up), so the threads meet once instead of once per matrix.  The rows of
 * all tasks form one range split among the threads in units of 4 rows.
 * Each thread takes its share from the front, a few units at a time, so
 * that it streams one run of memory; a thread that finishes early takes
 * what is left of the others' shares from their ends.  On a machine whose
 * cores are also doing other work, no thread then waits at the end of
 * every product for the one that was slowed down. */
#define MM_MAX_TASKS   32
#define MM_MAX_THREADS 64
#define MM_CLAIM_UNITS 8 /* 32 rows a claim */

/* One thread's share of the units: next from the front (low 32 bits) and
 * end (high 32 bits), on a cache line of its own. */
typedef struct mm_span {
    alignas(64) _Atomic uint64_t span;
} mm_span;

typedef struct mm_task {
    const weight *w;
    const uint8_t *act; /* (n_tok, stride) activations in w's act type */
    size_t stride;
    float *y; /* (n_tok, w->ne1) */
    int64_t n_tok;
} mm_task;

typedef struct mm_job {
    mm_task t[MM_MAX_TASKS];
    int n;
    bool tiles;                      /* decode with tiles too (a cache-sized model) */
    int64_t units[MM_MAX_TASKS + 1]; /* prefix sums of each task's 4-row units */
    mm_span share[MM_MAX_THREADS];   /* set by mm_run */
} mm_job;

/* Rows [r0, r1) of one task.  Tiles (4 rows x up to 4 tokens) serve
 * prefill, where a group of rows stays in cache while every token passes
 * over it, and decode of a model small enough to live in the caches, where
 * compute bounds the speed; decoding a large model streams from memory, and
 * there one sequential row at a time keeps the prefetchers on track, unless
 * the layout's 4-row kernel streams as well (repacked rows, which also
 * share the end-of-row reductions of 4 rows). */
static void mm_rows(const mm_task *t, int64_t r0, int64_t r1, bool tiles) {
    const weight *w = t->w;
    const uint8_t *base = w->data;
    if (w->kt->gemm && (t->n_tok >= 2 || tiles || w->kt->gemm_decodes)) {
        for (int64_t r = r0; r < r1; r += 4) {
            int nr = (int)(r1 - r < 4 ? r1 - r : 4);
            for (int64_t k = 0; k < t->n_tok; k += 4) {
                int nc = (int)(t->n_tok - k < 4 ? t->n_tok - k : 4);
                w->kt->gemm(w->ne0, base + (uint64_t)r * w->row_bytes, w->row_bytes, nr,
                            t->act + k * t->stride, t->stride, nc, t->y + k * w->ne1 + r,
                            (size_t)w->ne1);
            }
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const void *row = base + (uint64_t)r * w->row_bytes;
        for (int64_t k = 0; k < t->n_tok; k++) {
            t->y[k * w->ne1 + r] = w->kt->vec_dot(w->ne0, row, t->act + k * t->stride);
        }
    }
}

/* Units [b, e) of the job's tasks. */
static void mm_units(const mm_job *j, int64_t b, int64_t e) {
    for (int i = 0; i < j->n && b < e; i++) {
        int64_t lo = j->units[i], hi = j->units[i + 1];
        if (e <= lo || b >= hi) continue;
        int64_t u0 = b > lo ? b : lo, u1 = e < hi ? e : hi;
        int64_t rows = j->t[i].w->ne1;
        int64_t r0 = (u0 - lo) * 4, r1 = (u1 - lo) * 4 < rows ? (u1 - lo) * 4 : rows;
        mm_rows(&j->t[i], r0, r1, j->tiles);
    }
}

/* Takes up to MM_CLAIM_UNITS units of share k, from its front or its end. */
static bool mm_claim(mm_job *j, int k, bool front, int64_t *b, int64_t *e) {
    uint64_t cur = atomic_load_explicit(&j->share[k].span, memory_order_relaxed);
    for (;;) {
        uint32_t lo = (uint32_t)cur, hi = (uint32_t)(cur >> 32);
        if (lo >= hi) return false;
        uint32_t take = hi - lo < MM_CLAIM_UNITS ? hi - lo : MM_CLAIM_UNITS;
        uint64_t next =
            front ? ((uint64_t)hi << 32) | (lo + take) : ((uint64_t)(hi - take) << 32) | lo;
        if (atomic_compare_exchange_weak_explicit(&j->share[k].span, &cur, next,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            *b = front ? lo : hi - take;
            *e = front ? lo + take : hi;
            return true;
        }
    }
}

static void mm_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    int64_t b, e;
    if (nth > MM_MAX_THREADS) {
        threadpool_split(j->units[j->n], ith, nth, &b, &e);
        mm_units(j, b, e);
        return;
    }
    while (mm_claim(j, ith, true, &b, &e)) mm_units(j, b, e);
    for (int k = 1; k < nth; k++) {
        while (mm_claim(j, (ith + k) % nth, false, &b, &e)) mm_units(j, b, e);
    }
}

static void mm_add(mm_job *j, const weight *w, const uint8_t *act, size_t stride, float *y,
                   int64_t n_tok) {
    mm_task *t = &j->t[j->n];
    t->w = w;
    t->act = act;
    t->stride = stride;
    t->y = y;
    t->n_tok = n_tok;
    j->units[j->n + 1] = j->units[j->n] + (w->ne1 + 3) / 4;
    j->n++;
}

/* Weights up to this size are assumed to stay in the caches between tokens. */
#define CACHE_RESIDENT_BYTES (48ull << 20)

static void mm_run(hearth_context *ctx, mm_job *j) {
    j->tiles = ctx->model->weight_bytes <= CACHE_RESIDENT_BYTES;
    int nth = threadpool_size(ctx->pool);
    for (int k = 0; k < nth && k < MM_MAX_THREADS; k++) {
        int64_t b, e;
        threadpool_split(j->units[j->n], k, nth, &b, &e);
        atomic_store_explicit(&j->share[k].span, ((uint64_t)e << 32) | (uint64_t)b,
                              memory_order_relaxed);
    }
    threadpool_run(ctx->pool, mm_worker, j);
}

/* Multiplies by w the activations already converted into ctx->s.act. */
static void matmul_act(hearth_context *ctx, const weight *w, float *y, int64_t n_tok) {
    mm_job j = {.n = 0};
    mm_add(&j, w, ctx->s.act, ctx->act_row_bytes, y, n_tok);
    mm_run(ctx, &j);
}

void matmul(hearth_context *ctx, const weight *w, const float *x, float *y, int64_t n_tok) {
    act_convert(ctx, w, x, n_tok);
    matmul_act(ctx, w, y, n_tok);
}

/* ---------------------------------------------------------------- attention */

typedef struct attn_job {
    hearth_context *ctx;
    const hearth_batch *batch;
    uint32_t layer;
} attn_job;

/* One (token, head) pair: scores over the sequence's cached positions up to
 * the token's own, softmax, weighted sum of values into s.att.  An F16 cache
 * goes through the attention kernel (the query and the softmax weights are
 * rounded to f16 before they meet the cached keys and values, the
 * reference's arithmetic); an F32 cache through the F32 dot and axpy. */
static void attend_one(attn_job *j, int ith, uint32_t t, uint32_t h) {
    hearth_context *ctx = j->ctx;
    const model_hparams *hp = &ctx->model->hp;
    const kv_cache *kv = &ctx->kv;
    const int hd = (int)hp->head_dim, hdv = (int)hp->head_dim_v;
    const uint32_t kvh = h / (hp->n_head / hp->n_head_kv);
    const int32_t pos = j->batch->pos[t], seq = j->batch->seq[t];
    const size_t slot0 = ((size_t)j->layer * kv->n_seq + (size_t)seq) * kv->n_ctx;
    const float *q = ctx->s.q + (size_t)t * hp->n_head * hd + (size_t)h * hd;
    float *scores = ctx->s.scores + (size_t)ith * kv->n_ctx;
    float *out = ctx->s.att + (size_t)t * hp->n_head * hdv + (size_t)h * hdv;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t k_stride = kv->k_row * kv->elem_bytes, v_stride = kv->v_row * kv->elem_bytes;
    const uint8_t *k0 = kv->k + slot0 * k_stride + (size_t)kvh * hd * kv->elem_bytes;
    const uint8_t *v0 = kv->v + slot0 * v_stride + (size_t)kvh * hdv * kv->elem_bytes;
    if (kv->type == HEARTH_KV_F16) {
        attn_head_f16_fn attn = kernel_attn_head_f16();
        attn(q, k0, k_stride, v0, v_stride, hd, hdv, pos + 1, scale, scores,
             ctx->s.qh + (size_t)ith * hd, out);
        return;
    }
    const kernel_traits *kt = kernel_traits_get(HEARTH_DTYPE_F32);
    float max = -INFINITY;
    for (int32_t p = 0; p <= pos; p++) {
        float sc = kt->vec_dot(hd, k0 + (size_t)p * k_stride, q) * scale;
        scores[p] = sc;
        if (sc > max) max = sc;
    }
    double sum = 0.0;
    for (int32_t p = 0; p <= pos; p++) {
        scores[p] = expf(scores[p] - max);
        sum += scores[p];
    }
    float inv = (float)(1.0 / sum);
    memset(out, 0, (size_t)hdv * sizeof *out);
    for (int32_t p = 0; p <= pos; p++)
        kt->axpy(hdv, scores[p] * inv, v0 + (size_t)p * v_stride, out);
}

static void attn_worker(void *arg, int ith, int nth) {
    attn_job *j = arg;
    uint32_t n_head = j->ctx->model->hp.n_head;
    int64_t b, e;
    threadpool_split((int64_t)j->batch->n * n_head, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++)
        attend_one(j, ith, (uint32_t)(i / n_head), (uint32_t)(i % n_head));
}

/* Writes the batch's keys and values of one layer into the cache. */
static void kv_store(hearth_context *ctx, const hearth_batch *batch, uint32_t layer, int64_t t0,
                     int64_t t1) {
    kv_cache *kv = &ctx->kv;
    for (int64_t t = t0; t < t1; t++) {
        size_t slot =
            ((size_t)layer * kv->n_seq + (size_t)batch->seq[t]) * kv->n_ctx + (size_t)batch->pos[t];
        const float *k = ctx->s.k + (size_t)t * kv->k_row;
        const float *v = ctx->s.v + (size_t)t * kv->v_row;
        uint8_t *kd = kv->k + slot * kv->k_row * kv->elem_bytes;
        uint8_t *vd = kv->v + slot * kv->v_row * kv->elem_bytes;
        if (kv->type == HEARTH_KV_F16) {
            const kernel_traits *f16 = kernel_traits_get(HEARTH_DTYPE_F16);
            f16->quantize_act(k, kd, kv->k_row);
            f16->quantize_act(v, vd, kv->v_row);
        } else {
            memcpy(kd, k, kv->k_row * sizeof(float));
            memcpy(vd, v, kv->v_row * sizeof(float));
        }
    }
}

/* ---------------------------------------------------------------- blocks */

/* y[t] += bias for the n rows of width bias->ne0 (no-op when absent). */
static void add_bias(float *y, const weight *bias, int64_t n) {
    if (!bias->data) return;
    const float *b = bias->data;
    for (int64_t t = 0; t < n; t++) {
        for (int64_t i = 0; i < bias->ne0; i++) y[t * bias->ne0 + i] += b[i];
    }
}

/* RMSNorm of each of n_heads heads of x (qwen3's q/k norm); no-op when absent. */
static void head_norm(float *x, const weight *w, int n_heads, float eps) {
    if (!w->data) return;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * w->ne0;
        rmsnorm(v, v, w->data, w->ne0, eps);
    }
}

/* g = silu(g) * u over n rows of width w, split across threads by rows. */
typedef struct glu_job {
    float *g;
    const float *u;
    int64_t w, n;
} glu_job;

static void glu_worker(void *arg, int ith, int nth) {
    glu_job *j = arg;
    int64_t b, e;
    threadpool_split(j->n, ith, nth, &b, &e);
    for (int64_t i = b * j->w; i < e * j->w; i++) j->g[i] = silu(j->g[i]) * j->u[i];
}

/* out = down(silu(gate(x)) * up(x)) for n rows; g and u are scratch of
 * (n, gate->ne1). */
static void swiglu_ffn(hearth_context *ctx, const weight *gate, const weight *up,
                       const weight *down, const float *x, float *g, float *u, float *out,
                       int64_t n) {
    if (up->kt->act_type == gate->kt->act_type) {
        act_convert(ctx, gate, x, n);
        mm_job j = {.n = 0};
        mm_add(&j, gate, ctx->s.act, ctx->act_row_bytes, g, n);
        mm_add(&j, up, ctx->s.act, ctx->act_row_bytes, u, n);
        mm_run(ctx, &j);
    } else {
        matmul(ctx, gate, x, g, n);
        matmul(ctx, up, x, u, n);
    }
    glu_job gj = {g, u, gate->ne1, n};
    if (n == 1) {
        glu_worker(&gj, 0, 1);
    } else {
        threadpool_run(ctx->pool, glu_worker, &gj);
    }
    matmul(ctx, down, g, out, n);
}

/* Routes each of n tokens to its top-k experts: softmax over the router
 * logits, the k most probable (ties to the lower index), their weights
 * renormalised to sum to 1 when the model asks. */
static void moe_route(hearth_context *ctx, const layer_weights *l, int64_t n) {
    const model_hparams *hp = &ctx->model->hp;
    forward_scratch *s = &ctx->s;
    const int ne = (int)hp->n_expert, k = (int)hp->n_expert_used;
    matmul(ctx, &l->gate_inp, s->xb, s->router, n);
    memset(s->exp_count, 0, (size_t)ne * sizeof *s->exp_count);
    for (int64_t t = 0; t < n; t++) {
        float *p = s->router + t * ne;
        float max = p[0];
        for (int i = 1; i < ne; i++) max = p[i] > max ? p[i] : max;
        double sum = 0.0;
        for (int i = 0; i < ne; i++) sum += p[i] = expf(p[i] - max);
        for (int i = 0; i < ne; i++) p[i] = (float)(p[i] / sum);
        int32_t *sel = s->sel + t * k;
        float *w = s->sel_w + t * k;
        float wsum = 0.0f;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int i = 0; i < ne; i++) {
                bool taken = false;
                for (int q = 0; q < j; q++) taken |= sel[q] == i;
                if (!taken && (best < 0 || p[i] > p[best])) best = i;
            }
            sel[j] = best;
            w[j] = p[best];
            wsum += p[best];
            s->exp_rows[(int64_t)best * ctx->params.n_batch + s->exp_count[best]++] =
                (int32_t)(t * k + j);
        }
        if (hp->expert_weights_norm) {
            for (int j = 0; j < k; j++) w[j] /= wsum;
        }
    }
}

/* The mixture-of-experts feed-forward of s->xb into s->ffn_out.  Tokens are
 * grouped by expert so each expert's weights are read once per batch. */
/* The routed experts of a batch: its n x k (token, expert) pairs are laid
 * out expert by expert, every expert's gate and up products run as one
 * parallel job, then every down product as another — two thread meetings
 * per layer instead of three per expert, which is what decoding one token
 * through 8 of 128 experts needs; in prefill each expert's weights still
 * stream once for all its tokens. */
static void moe_experts_fused(hearth_context *ctx, const layer_weights *l, int64_t n) {
    const model_hparams *hp = &ctx->model->hp;
    forward_scratch *s = &ctx->s;
    const int64_t e = hp->n_embd, k = hp->n_expert_used, f = hp->n_ff_exp;
    const int64_t total = n * k, nb = ctx->params.n_batch;
    const size_t stride = ctx->act_row_bytes;
    int64_t slot = 0;
    for (int64_t x = 0; x < (int64_t)hp->n_expert; x++) {
        const int32_t *rows = s->exp_rows + x * nb;
        for (int64_t i = 0; i < s->exp_count[x]; i++, slot++) {
            memcpy(s->moe_in + slot * e, s->xb + (rows[i] / k) * e, (size_t)e * sizeof(float));
        }
    }
    weight gate0 = weight_expert(&l->gate_exps, 0), down0 = weight_expert(&l->down_exps, 0);
    weight views[MM_MAX_TASKS];
    /* gate and up */
    act_convert(ctx, &gate0, s->moe_in, total);
    mm_job j = {.n = 0};
    slot = 0;
    for (int64_t x = 0; x < (int64_t)hp->n_expert; x++) {
        int64_t cnt = s->exp_count[x];
        if (cnt == 0) continue;
        if (j.n + 2 > MM_MAX_TASKS) {
            mm_run(ctx, &j);
            j.n = 0;
        }
        views[j.n] = weight_expert(&l->gate_exps, x);
        mm_add(&j, &views[j.n], s->act + slot * stride, stride, s->moe_g + slot * f, cnt);
        views[j.n] = weight_expert(&l->up_exps, x);
        mm_add(&j, &views[j.n], s->act + slot * stride, stride, s->moe_u + slot * f, cnt);
        slot += cnt;
    }
    if (j.n) mm_run(ctx, &j);
    glu_job gj = {s->moe_g, s->moe_u, f, total};
    if (total == 1) {
        glu_worker(&gj, 0, 1);
    } else {
        threadpool_run(ctx->pool, glu_worker, &gj);
    }
    /* down */
    act_convert(ctx, &down0, s->moe_g, total);
    j.n = 0;
    slot = 0;
    for (int64_t x = 0; x < (int64_t)hp->n_expert; x++) {
        int64_t cnt = s->exp_count[x];
        if (cnt == 0) continue;
        if (j.n + 1 > MM_MAX_TASKS) {
            mm_run(ctx, &j);
            j.n = 0;
        }
        views[j.n] = weight_expert(&l->down_exps, x);
        mm_add(&j, &views[j.n], s->act + slot * stride, stride, s->moe_out + slot * e, cnt);
        slot += cnt;
    }
    if (j.n) mm_run(ctx, &j);
    /* weighted sum back into each token's row, in the same expert order */
    slot = 0;
    for (int64_t x = 0; x < (int64_t)hp->n_expert; x++) {
        const int32_t *rows = s->exp_rows + x * nb;
        for (int64_t i = 0; i < s->exp_count[x]; i++, slot++) {
            float w = s->sel_w[rows[i]];
            float *dst = s->ffn_out + (rows[i] / k) * e;
            for (int64_t d = 0; d < e; d++) dst[d] += w * s->moe_out[slot * e + d];
        }
    }
}

static void moe_ffn(hearth_context *ctx, const layer_weights *l, int64_t n) {
    const model_hparams *hp = &ctx->model->hp;
    forward_scratch *s = &ctx->s;
    const int64_t e = hp->n_embd;
    double t0 = phase_begin();
    moe_route(ctx, l, n);
    phase_end(PH_ROUTER, t0);
    memset(s->ffn_out, 0, (size_t)(n * e) * sizeof *s->ffn_out);
    moe_experts_fused(ctx, l, n);
    if (!l->gate_shexp.data) return;
    /* The shared expert sees every token, scaled by a sigmoid gate when present. */
    swiglu_ffn(ctx, &l->gate_shexp, &l->up_shexp, &l->down_shexp, s->xb, s->moe_g, s->moe_u,
               s->moe_out, n);
    if (l->gate_inp_shexp.data) matmul(ctx, &l->gate_inp_shexp, s->xb, s->shexp_gate, n);
    for (int64_t t = 0; t < n; t++) {
        float g = l->gate_inp_shexp.data ? 1.0f / (1.0f + expf(-s->shexp_gate[t])) : 1.0f;
        for (int64_t d = 0; d < e; d++) s->ffn_out[t * e + d] += g * s->moe_out[t * e + d];
    }
}

/* ---------------------------------------------------------------- token stages */

/* The per-token work between matrix products (norms, RoPE, cache writes,
 * residual adds) runs split across the threads by tokens, so prefill does
 * not leave the pool idle while one thread walks the batch. */
typedef struct stage_job {
    hearth_context *ctx;
    const hearth_batch *batch;
    const layer_weights *l;
    uint32_t il;
    void (*fn)(const struct stage_job *j, int64_t t0, int64_t t1);
} stage_job;

static void stage_worker(void *arg, int ith, int nth) {
    stage_job *j = arg;
    int64_t b, e;
    threadpool_split(j->batch->n, ith, nth, &b, &e);
    if (b < e) j->fn(j, b, e);
}

static void run_stage(stage_job *j, void (*fn)(const stage_job *, int64_t, int64_t)) {
    j->fn = fn;
    if (j->batch->n == 1) {
        fn(j, 0, 1);
    } else {
        threadpool_run(j->ctx->pool, stage_worker, j);
    }
}

/* Embedding rows and the RoPE angles of each token's position. */
static void stage_embed(const stage_job *j, int64_t t0, int64_t t1) {
    const hearth_model *m = j->ctx->model;
    const model_hparams *hp = &m->hp;
    forward_scratch *s = &j->ctx->s;
    const int64_t e = hp->n_embd;
    const int half = (int)hp->n_rot / 2;
    for (int64_t t = t0; t < t1; t++) {
        const uint8_t *row = (const uint8_t *)m->token_embd.data +
                             (uint64_t)j->batch->tokens[t] * m->token_embd.row_bytes;
        m->token_embd.kt->dequantize(row, s->x + t * e, e);
        rope_angles(s->rope_cos + t * half, s->rope_sin + t * half, j->batch->pos[t],
                    (int)hp->n_rot, hp->rope_base);
    }
}

static void stage_attn_norm(const stage_job *j, int64_t t0, int64_t t1) {
    const model_hparams *hp = &j->ctx->model->hp;
    forward_scratch *s = &j->ctx->s;
    const int64_t e = hp->n_embd;
    for (int64_t t = t0; t < t1; t++) {
        rmsnorm(s->xb + t * e, s->x + t * e, j->l->attn_norm.data, e, hp->norm_eps);
    }
}

/* Biases, q/k norms and RoPE, then the keys and values into the cache. */
static void stage_qk(const stage_job *j, int64_t t0, int64_t t1) {
    const model_hparams *hp = &j->ctx->model->hp;
    forward_scratch *s = &j->ctx->s;
    const layer_weights *l = j->l;
    const int nq = (int)(hp->n_head * hp->head_dim), nk = (int)(hp->n_head_kv * hp->head_dim);
    const int nv = (int)(hp->n_head_kv * hp->head_dim_v), half = (int)hp->n_rot / 2;
    for (int64_t t = t0; t < t1; t++) {
        float *qt = s->q + t * nq, *kt = s->k + t * nk;
        add_bias(qt, &l->bq, 1);
        add_bias(kt, &l->bk, 1);
        add_bias(s->v + t * nv, &l->bv, 1);
        head_norm(qt, &l->q_norm, (int)hp->n_head, hp->norm_eps);
        head_norm(kt, &l->k_norm, (int)hp->n_head_kv, hp->norm_eps);
        const float *c = s->rope_cos + t * half, *sn = s->rope_sin + t * half;
        rope_apply(qt, (int)hp->n_head, (int)hp->head_dim, (int)hp->n_rot, hp->rope, c, sn);
        rope_apply(kt, (int)hp->n_head_kv, (int)hp->head_dim, (int)hp->n_rot, hp->rope, c, sn);
    }
    kv_store(j->ctx, j->batch, j->il, t0, t1);
}

/* x += attention output (in xb); xb = ffn_norm(x). */
static void stage_post_attn(const stage_job *j, int64_t t0, int64_t t1) {
    const model_hparams *hp = &j->ctx->model->hp;
    forward_scratch *s = &j->ctx->s;
    const int64_t e = hp->n_embd;
    for (int64_t t = t0; t < t1; t++) {
        float *x = s->x + t * e, *xb = s->xb + t * e;
        for (int64_t i = 0; i < e; i++) x[i] += xb[i];
        rmsnorm(xb, x, j->l->ffn_norm.data, e, hp->norm_eps);
    }
}

/* x += feed-forward output. */
static void stage_post_ffn(const stage_job *j, int64_t t0, int64_t t1) {
    forward_scratch *s = &j->ctx->s;
    const int64_t e = j->ctx->model->hp.n_embd;
    for (int64_t i = t0 * e; i < t1 * e; i++) s->x[i] += s->ffn_out[i];
}

/* ---------------------------------------------------------------- the pass */

void model_forward(hearth_context *ctx, const hearth_batch *batch) {
    const hearth_model *m = ctx->model;
    const model_hparams *hp = &m->hp;
    forward_scratch *s = &ctx->s;
    const int64_t n = batch->n, e = hp->n_embd;
    stage_job sj = {ctx, batch, NULL, 0, NULL};
    double t0 = phase_begin();
    run_stage(&sj, stage_embed);
    phase_end(PH_STAGES, t0);

    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const layer_weights *l = &m->layers[il];
        sj.l = l;
        sj.il = il;
        t0 = phase_begin();
        run_stage(&sj, stage_attn_norm);
        phase_end(PH_STAGES, t0);
        t0 = phase_begin();
        /* Q, K and V in one job when they share an activation type (the
         * usual case); otherwise one at a time. */
        if (l->wk.kt->act_type == l->wq.kt->act_type && l->wv.kt->act_type == l->wq.kt->act_type) {
            act_convert(ctx, &l->wq, s->xb, n);
            mm_job j = {.n = 0};
            mm_add(&j, &l->wq, s->act, ctx->act_row_bytes, s->q, n);
            mm_add(&j, &l->wk, s->act, ctx->act_row_bytes, s->k, n);
            mm_add(&j, &l->wv, s->act, ctx->act_row_bytes, s->v, n);
            mm_run(ctx, &j);
        } else {
            matmul(ctx, &l->wq, s->xb, s->q, n);
            matmul(ctx, &l->wk, s->xb, s->k, n);
            matmul(ctx, &l->wv, s->xb, s->v, n);
        }
        phase_end(PH_QKV, t0);
        t0 = phase_begin();
        run_stage(&sj, stage_qk);
        phase_end(PH_STAGES, t0);
        t0 = phase_begin();
        attn_job aj = {ctx, batch, il};
        threadpool_run(ctx->pool, attn_worker, &aj);
        phase_end(PH_ATTN, t0);
        t0 = phase_begin();
        matmul(ctx, &l->wo, s->att, s->xb, n);
        phase_end(PH_WO, t0);
        t0 = phase_begin();
        run_stage(&sj, stage_post_attn);
        phase_end(PH_STAGES, t0);
        t0 = phase_begin();
        if (l->gate_inp.data) {
            moe_ffn(ctx, l, n);
            phase_end(PH_EXPERTS, t0);
        } else {
            swiglu_ffn(ctx, &l->w_gate, &l->w_up, &l->w_down, s->xb, s->hb, s->hb2, s->ffn_out, n);
            phase_end(PH_FFN, t0);
        }
        t0 = phase_begin();
        run_stage(&sj, stage_post_ffn);
        phase_end(PH_STAGES, t0);
    }

    int64_t n_out = 0;
    for (int64_t t = 0; t < n; t++) {
        if (s->out_rows[t] < 0) continue;
        rmsnorm(s->out_x + n_out * e, s->x + t * e, m->output_norm.data, e, hp->norm_eps);
        n_out++;
    }
    t0 = phase_begin();
    if (n_out > 0) matmul(ctx, &m->output, s->out_x, s->logits, n_out);
    phase_end(PH_OUTPUT, t0);
}
