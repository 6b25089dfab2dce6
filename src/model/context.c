/* context.c — KV cache, scratch buffers and the hearth_decode entry point.
 *
 * A context is sized once: n_seq sequences of n_ctx positions, batches of up
 * to n_batch tokens of which up to n_outputs want logits.  hearth_decode
 * validates a batch against that shape and the cache contents (each
 * sequence's positions must continue where its cache ends), then runs the
 * forward pass.  Nothing is allocated per call.
 */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/dtype.h"
#include "util/error.h"

hearth_context_params hearth_context_default_params(void) {
    hearth_context_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 0;
    p.n_batch = 512;
    p.n_seq = 1;
    p.n_threads = 0;
    p.kv_type = HEARTH_KV_F16;
    return p;
}

/* Allocates n * size bytes, failing on overflow; zeroed. */
static void *alloc_array(uint64_t n, uint64_t size) {
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    return calloc((size_t)(n ? n : 1), (size_t)(size ? size : 1));
}

static uint64_t max_u64(uint64_t a, uint64_t b) {
    return a > b ? a : b;
}

/* Bytes of one activation row of width n converted for weights of type t. */
static uint64_t act_bytes(uint32_t t, uint64_t n) {
    const kernel_traits *kt = kernel_traits_get(t);
    return kt ? dtype_row_bytes(kt->act_type, n) : 0;
}

static hearth_status alloc_scratch(hearth_context *ctx, hearth_error *err) {
    const model_hparams *hp = &ctx->model->hp;
    uint64_t nb = ctx->params.n_batch;
    uint64_t nq = (uint64_t)hp->n_head * hp->head_dim, nk = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t nv = (uint64_t)hp->n_head_kv * hp->head_dim_v,
             no = (uint64_t)hp->n_head * hp->head_dim_v;
    uint64_t ff_moe = max_u64(hp->n_ff_exp, hp->n_ff_shexp);
    uint64_t widest = max_u64(max_u64(max_u64(hp->n_embd, hp->n_ff), no), ff_moe);
    /* The largest activation type is F32; size for it and any block padding. */
    ctx->act_row_bytes = (size_t)max_u64(widest * 4, act_bytes(HEARTH_DTYPE_Q8_0, widest));
    int nth = threadpool_size(ctx->pool);
    forward_scratch *s = &ctx->s;
    s->x = alloc_array(nb * hp->n_embd, sizeof(float));
    s->xb = alloc_array(nb * hp->n_embd, sizeof(float));
    s->q = alloc_array(nb * nq, sizeof(float));
    s->k = alloc_array(nb * nk, sizeof(float));
    s->v = alloc_array(nb * nv, sizeof(float));
    s->att = alloc_array(nb * no, sizeof(float));
    s->hb = alloc_array(nb * hp->n_ff, sizeof(float));
    s->hb2 = alloc_array(nb * hp->n_ff, sizeof(float));
    s->rope_cos = alloc_array(nb * (hp->n_rot / 2 + 1), sizeof(float));
    s->rope_sin = alloc_array(nb * (hp->n_rot / 2 + 1), sizeof(float));
    s->act = alloc_array(nb, ctx->act_row_bytes);
    s->scores = alloc_array((uint64_t)nth * ctx->kv.n_ctx, sizeof(float));
    s->qh = alloc_array((uint64_t)nth * hp->head_dim, sizeof(uint16_t));
    s->out_x = alloc_array((uint64_t)ctx->n_outputs_max * hp->n_embd, sizeof(float));
    s->out_rows = alloc_array(nb, sizeof(int32_t));
    s->logits = alloc_array((uint64_t)ctx->n_outputs_max * hp->n_vocab, sizeof(float));
    s->ffn_out = alloc_array(nb * hp->n_embd, sizeof(float));
    uint64_t ne = hp->n_expert ? hp->n_expert : 1, ku = hp->n_expert_used ? hp->n_expert_used : 1;
    s->router = alloc_array(nb * ne, sizeof(float));
    s->sel = alloc_array(nb * ku, sizeof(int32_t));
    s->sel_w = alloc_array(nb * ku, sizeof(float));
    s->exp_count = alloc_array(ne, sizeof(int32_t));
    s->exp_rows = alloc_array(ne * nb, sizeof(int32_t));
    s->moe_in = alloc_array(nb * hp->n_embd, sizeof(float));
    s->moe_g = alloc_array(nb * ff_moe, sizeof(float));
    s->moe_u = alloc_array(nb * ff_moe, sizeof(float));
    s->moe_out = alloc_array(nb * hp->n_embd, sizeof(float));
    s->shexp_gate = alloc_array(nb, sizeof(float));
    if (!s->x || !s->xb || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 ||
        !s->rope_cos || !s->rope_sin || !s->act || !s->scores || !s->qh || !s->out_x ||
        !s->out_rows || !s->logits || !s->ffn_out || !s->router || !s->sel || !s->sel_w ||
        !s->exp_count || !s->exp_rows || !s->moe_in || !s->moe_g || !s->moe_u || !s->moe_out ||
        !s->shexp_gate) {
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the scratch buffers");
    }
    return HEARTH_OK;
}

static hearth_status alloc_kv(hearth_context *ctx, hearth_error *err) {
    const model_hparams *hp = &ctx->model->hp;
    kv_cache *kv = &ctx->kv;
    kv->type = ctx->params.kv_type;
    kv->n_seq = ctx->params.n_seq;
    kv->n_ctx = ctx->params.n_ctx;
    kv->k_row = hp->n_head_kv * hp->head_dim;
    kv->v_row = hp->n_head_kv * hp->head_dim_v;
    kv->elem_bytes = kv->type == HEARTH_KV_F32 ? 4 : 2;
    uint64_t slots = (uint64_t)hp->n_layer * kv->n_seq * kv->n_ctx;
    kv->k = alloc_array(slots * kv->k_row, kv->elem_bytes);
    kv->v = alloc_array(slots * kv->v_row, kv->elem_bytes);
    kv->len = alloc_array(kv->n_seq, sizeof(int32_t));
    kv->next = alloc_array(kv->n_seq, sizeof(int32_t));
    if (!kv->k || !kv->v || !kv->len || !kv->next) {
        return error_set(err, HEARTH_ERR_NOMEM,
                         "out of memory for the KV cache (%u sequences x %u positions x %u layers)",
                         kv->n_seq, kv->n_ctx, hp->n_layer);
    }
    return HEARTH_OK;
}

hearth_status hearth_context_create(const hearth_model *model, const hearth_context_params *params,
                                    hearth_context **out, hearth_error *err) {
    *out = NULL;
    hearth_context_params p = params ? *params : hearth_context_default_params();
    if (p.n_ctx == 0) p.n_ctx = model->hp.n_ctx_train;
    if (p.n_threads <= 0) p.n_threads = threadpool_n_cpus();
    if (p.n_seq == 0) p.n_seq = 1;
    if (p.n_batch == 0) p.n_batch = 512;
    if (p.n_ctx > (1u << 24) || p.n_seq > 4096 || p.n_batch > (1u << 20) ||
        (p.kv_type != HEARTH_KV_F16 && p.kv_type != HEARTH_KV_F32)) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "context of %u positions, %u sequences, batch %u or KV type %d is out of "
                         "range",
                         p.n_ctx, p.n_seq, p.n_batch, (int)p.kv_type);
    }
    hearth_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    ctx->model = model;
    ctx->params = p;
    ctx->n_outputs_max = p.n_batch;
    hearth_status st = threadpool_create(p.n_threads, &ctx->pool, err);
    if (st == HEARTH_OK) st = alloc_kv(ctx, err);
    if (st == HEARTH_OK) st = alloc_scratch(ctx, err);
    if (st != HEARTH_OK) {
        hearth_context_free(ctx);
        return st;
    }
    *out = ctx;
    return HEARTH_OK;
}

void hearth_context_free(hearth_context *ctx) {
    if (!ctx) return;
    threadpool_free(ctx->pool);
    free(ctx->kv.k);
    free(ctx->kv.v);
    free(ctx->kv.len);
    free(ctx->kv.next);
    forward_scratch *s = &ctx->s;
    void *bufs[] = {s->x,     s->xb,      s->q,         s->k,        s->v,       s->att,
                    s->hb,    s->hb2,     s->rope_cos,  s->rope_sin, s->act,     s->scores,
                    s->qh,    s->out_x,   s->out_rows,  s->logits,   s->ffn_out, s->router,
                    s->sel,   s->sel_w,   s->exp_count, s->exp_rows, s->moe_in,  s->moe_g,
                    s->moe_u, s->moe_out, s->shexp_gate};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(ctx);
}

uint32_t hearth_context_n_ctx(const hearth_context *ctx) {
    return ctx->kv.n_ctx;
}

/* Checks every token, sequence id and position of the batch, and that the
 * positions of each sequence continue its cache without gaps. */
static hearth_status validate_batch(hearth_context *ctx, const hearth_batch *b, hearth_error *err) {
    if (b->n == 0) return error_set(err, HEARTH_ERR_INVALID_ARG, "empty batch");
    if (b->n > ctx->params.n_batch) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "batch of %u tokens exceeds n_batch %u", b->n,
                         ctx->params.n_batch);
    }
    if (!b->tokens || !b->pos || !b->seq) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "batch without tokens, positions or sequences");
    }
    const kv_cache *kv = &ctx->kv;
    int32_t n_vocab = (int32_t)ctx->model->hp.n_vocab;
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= n_vocab) {
            return error_set(err, HEARTH_ERR_INVALID_ARG,
                             "token %d at batch index %u is outside "
                             "the vocabulary (%d tokens)",
                             b->tokens[i], i, n_vocab);
        }
        if (b->seq[i] < 0 || (uint32_t)b->seq[i] >= kv->n_seq) {
            return error_set(err, HEARTH_ERR_INVALID_ARG,
                             "sequence id %d at batch index %u is "
                             "outside 0..%u",
                             b->seq[i], i, kv->n_seq - 1);
        }
        if (b->pos[i] < 0 || (uint32_t)b->pos[i] >= kv->n_ctx) {
            return error_set(err, HEARTH_ERR_CONTEXT_FULL,
                             "position %d of sequence %d does not "
                             "fit the context of %u positions",
                             b->pos[i], b->seq[i], kv->n_ctx);
        }
    }
    /* Positions per sequence must be len, len + 1, ... in batch order.  The
     * lengths are updated only once the whole batch is known to be valid. */
    for (uint32_t i = 0; i < b->n; i++) kv->next[b->seq[i]] = kv->len[b->seq[i]];
    for (uint32_t i = 0; i < b->n; i++) {
        int32_t expect = kv->next[b->seq[i]]++;
        if (b->pos[i] != expect) {
            return error_set(err, HEARTH_ERR_INVALID_ARG,
                             "batch index %u: sequence %d expects "
                             "position %d next, got %d",
                             i, b->seq[i], expect, b->pos[i]);
        }
    }
    return HEARTH_OK;
}

hearth_status hearth_decode(hearth_context *ctx, const hearth_batch *b, hearth_error *err) {
    hearth_status st = validate_batch(ctx, b, err);
    if (st != HEARTH_OK) return st;
    uint32_t n_out = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        bool want = b->logits ? b->logits[i] : i + 1 == b->n;
        ctx->s.out_rows[i] = want ? (int32_t)n_out++ : -1;
    }
    model_forward(ctx, b);
    for (uint32_t i = 0; i < b->n; i++) ctx->kv.len[b->seq[i]] = b->pos[i] + 1;
    return HEARTH_OK;
}

const float *hearth_get_logits(const hearth_context *ctx, uint32_t i) {
    if (i >= ctx->params.n_batch || ctx->s.out_rows[i] < 0) return NULL;
    return ctx->s.logits + (size_t)ctx->s.out_rows[i] * ctx->model->hp.n_vocab;
}

void hearth_kv_truncate(hearth_context *ctx, int32_t seq, int32_t from) {
    if (seq < 0 || (uint32_t)seq >= ctx->kv.n_seq || from < 0) return;
    if (from < ctx->kv.len[seq]) ctx->kv.len[seq] = from;
}
