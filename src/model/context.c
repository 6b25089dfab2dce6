/* context.c — KV cache, scratch buffers and the hearth_decode entry point.
 *
 * A context is sized once: n_seq sequences of n_ctx positions, batches of up
 * to n_batch tokens of which up to n_outputs want logits.  hearth_decode
 * validates a batch against that shape and the cache contents (each
 * sequence's positions must continue where its cache ends), then runs the
 * forward pass.  Nothing is allocated per call.
 *
 * The KV cache and the scratch are two anonymous mappings whose sizes
 * context_plan computes; they are reserved against the model's memory
 * budget before they are made, and locked or pre-faulted when the model
 * was loaded so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/device.h"
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

/* Buffers are laid out one after another in an arena, each 64-byte
 * aligned; with base NULL the layout only measures.  The same layout
 * functions size the arenas (context_plan, which the memory planner calls)
 * and place the buffers, so a plan is exactly what is allocated.  Sizes
 * saturate at UINT64_MAX: an absurd shape fails to allocate instead of
 * wrapping around. */
typedef struct arena {
    uint8_t *base;
    uint64_t used;
} arena;

static uint64_t sat_mul(uint64_t a, uint64_t b) {
    return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Under AddressSanitizer each buffer is fenced by a poisoned redzone, so
 * an overrun of one scratch buffer into the next is still caught as it
 * was when each had its own malloc. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEARTH_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HEARTH_ASAN 1
#endif
#ifdef HEARTH_ASAN
#include <sanitizer/asan_interface.h>
#define ARENA_REDZONE 64
#else
#define ARENA_REDZONE 0
#endif

/* Places n elements of size bytes (at least one, so every buffer is
 * distinct); returns where, or NULL when only measuring. */
static void *carve(arena *a, uint64_t n, uint64_t size) {
    uint64_t off = sat_add(a->used, ARENA_REDZONE + 63) & ~(uint64_t)63;
#ifdef HEARTH_ASAN
    if (a->base) ASAN_POISON_MEMORY_REGION(a->base + a->used, (size_t)(off - a->used));
#endif
    a->used = sat_add(off, sat_mul(n ? n : 1, size));
    return a->base ? a->base + off : NULL;
}

/* Fences the rest of an arena of n bytes after its last buffer. */
static void arena_seal(const arena *a, uint64_t n) {
#ifdef HEARTH_ASAN
    if (a->used < n) ASAN_POISON_MEMORY_REGION(a->base + a->used, (size_t)(n - a->used));
#else
    (void)a;
    (void)n;
#endif
}

static void arena_unmap(uint8_t *p, uint64_t n) {
    if (!p) return;
#ifdef HEARTH_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, (size_t)n);
#endif
    munmap(p, (size_t)n);
}

static uint64_t max_u64(uint64_t a, uint64_t b) {
    return a > b ? a : b;
}

/* Bytes of one activation row of width n converted for weights of type t. */
static uint64_t act_bytes(uint32_t t, uint64_t n) {
    const kernel_traits *kt = kernel_traits_get(t);
    return kt ? dtype_row_bytes(kt->act_type, n) : 0;
}

/* The KV cache: keys, values and the two per-sequence arrays. */
static void layout_kv(arena *a, const model_hparams *hp, const hearth_context_params *p,
                      kv_cache *kv) {
    kv->type = p->kv_type;
    kv->n_seq = p->n_seq;
    kv->n_ctx = p->n_ctx;
    kv->k_row = hp->n_head_kv * hp->head_dim;
    kv->v_row = hp->n_head_kv * hp->head_dim_v;
    kv->elem_bytes = kv->type == HEARTH_KV_F32 ? 4 : 2;
    uint64_t slots = sat_mul(sat_mul(hp->n_layer, kv->n_seq), kv->n_ctx);
    kv->k = carve(a, sat_mul(slots, kv->k_row), kv->elem_bytes);
    kv->v = carve(a, sat_mul(slots, kv->v_row), kv->elem_bytes);
    kv->len = carve(a, kv->n_seq, sizeof(int32_t));
    kv->next = carve(a, kv->n_seq, sizeof(int32_t));
}

/* Rows of logits a context holds: n_outputs, at most n_batch. */
static uint32_t context_n_outputs(const hearth_context_params *p) {
    return p->n_outputs && p->n_outputs < p->n_batch ? p->n_outputs : p->n_batch;
}

/* Every scratch buffer of the forward pass, for p->n_threads threads. */
static void layout_scratch(arena *a, const model_hparams *hp, const hearth_context_params *p,
                           forward_scratch *s, size_t *act_row_bytes) {
    uint64_t nb = p->n_batch, n_out = context_n_outputs(p);
    uint64_t nq = (uint64_t)hp->n_head * hp->head_dim, nk = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t nv = (uint64_t)hp->n_head_kv * hp->head_dim_v,
             no = (uint64_t)hp->n_head * hp->head_dim_v;
    uint64_t ff_moe = max_u64(hp->n_ff_exp, hp->n_ff_shexp);
    uint64_t widest = max_u64(max_u64(max_u64(hp->n_embd, hp->n_ff), no), ff_moe);
    /* The largest activation type is F32; size for it and any block padding. */
    *act_row_bytes = (size_t)max_u64(widest * 4, act_bytes(HEARTH_DTYPE_Q8_0, widest));
    uint64_t nth = (uint64_t)p->n_threads;
    uint64_t ne = hp->n_expert ? hp->n_expert : 1, ku = hp->n_expert_used ? hp->n_expert_used : 1;
    /* (token, expert) pairs of a full batch: every routed pair has its own
     * row, so all experts of a batch run in one job (forward.c). */
    uint64_t pairs = nb * ku;
    s->x = carve(a, nb * hp->n_embd, sizeof(float));
    s->xb = carve(a, nb * hp->n_embd, sizeof(float));
    s->q = carve(a, nb * nq, sizeof(float));
    s->k = carve(a, nb * nk, sizeof(float));
    s->v = carve(a, nb * nv, sizeof(float));
    s->att = carve(a, nb * no, sizeof(float));
    s->hb = carve(a, nb * hp->n_ff, sizeof(float));
    s->hb2 = carve(a, nb * hp->n_ff, sizeof(float));
    s->rope_cos = carve(a, nb * (hp->n_rot / 2 + 1), sizeof(float));
    s->rope_sin = carve(a, nb * (hp->n_rot / 2 + 1), sizeof(float));
    s->act = carve(a, pairs, *act_row_bytes);
    s->scores = carve(a, nth * p->n_ctx, sizeof(float));
    s->qh = carve(a, nth * hp->head_dim, sizeof(uint16_t));
    s->out_x = carve(a, n_out * hp->n_embd, sizeof(float));
    s->out_rows = carve(a, nb, sizeof(int32_t));
    s->logits = carve(a, n_out * hp->n_vocab, sizeof(float));
    s->ffn_out = carve(a, nb * hp->n_embd, sizeof(float));
    s->router = carve(a, nb * ne, sizeof(float));
    s->sel = carve(a, nb * ku, sizeof(int32_t));
    s->sel_w = carve(a, nb * ku, sizeof(float));
    s->exp_count = carve(a, ne, sizeof(int32_t));
    s->exp_rows = carve(a, ne * nb, sizeof(int32_t));
    s->moe_in = carve(a, pairs * hp->n_embd, sizeof(float));
    s->moe_g = carve(a, pairs * ff_moe, sizeof(float));
    s->moe_u = carve(a, pairs * ff_moe, sizeof(float));
    s->moe_out = carve(a, pairs * hp->n_embd, sizeof(float));
    s->shexp_gate = carve(a, nb, sizeof(float));
}

static uint64_t page_round(uint64_t n) {
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    return n > UINT64_MAX - page ? UINT64_MAX : (n + page - 1) / page * page;
}

hearth_status context_plan(const model_hparams *hp, const hearth_context_params *params,
                           hearth_context_params *out, uint64_t *kv_bytes, uint64_t *scratch_bytes,
                           hearth_error *err) {
    hearth_context_params p = params ? *params : hearth_context_default_params();
    if (p.n_ctx == 0) p.n_ctx = hp->n_ctx_train;
    if (p.n_threads <= 0) p.n_threads = threadpool_n_cpus();
    if (p.n_seq == 0) p.n_seq = 1;
    if (p.n_batch == 0) p.n_batch = 512;
    if (p.n_ctx > (1u << 24) || p.n_seq > 4096 || p.n_batch > (1u << 20) || p.n_threads > 1024 ||
        (p.kv_type != HEARTH_KV_F16 && p.kv_type != HEARTH_KV_F32)) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "context of %u positions, %u sequences, batch %u, %d threads or KV type "
                         "%d is out of range",
                         p.n_ctx, p.n_seq, p.n_batch, p.n_threads, (int)p.kv_type);
    }
    arena kv_a = {NULL, 0}, s_a = {NULL, 0};
    kv_cache kv;
    forward_scratch s;
    size_t act_row_bytes;
    layout_kv(&kv_a, hp, &p, &kv);
    layout_scratch(&s_a, hp, &p, &s, &act_row_bytes);
    /* Far beyond any machine, and keeps every sum of plan figures exact. */
    if (kv_a.used > ((uint64_t)1 << 56) || s_a.used > ((uint64_t)1 << 56)) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "context of %u positions x %u sequences needs more memory than any "
                         "machine has",
                         p.n_ctx, p.n_seq);
    }
    *out = p;
    *kv_bytes = page_round(kv_a.used);
    *scratch_bytes = page_round(s_a.used);
    return HEARTH_OK;
}

/* An anonymous mapping of n bytes (zeroed), or NULL. */
static uint8_t *arena_map(uint64_t n) {
    if (n == 0 || n > SIZE_MAX) return NULL;
    void *p = mmap(NULL, (size_t)n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static char *context_what(const hearth_context_params *p, char *buf, size_t cap) {
    snprintf(buf, cap, "a context of %u positions x %u sequence%s (batch %u, %d threads, %s KV)",
             p->n_ctx, p->n_seq, p->n_seq == 1 ? "" : "s", p->n_batch, p->n_threads,
             p->kv_type == HEARTH_KV_F32 ? "f32" : "f16");
    return buf;
}

hearth_status hearth_context_create(const hearth_model *model, const hearth_context_params *params,
                                    hearth_context **out, hearth_error *err) {
    *out = NULL;
    hearth_context_params p;
    uint64_t kv_bytes, scratch_bytes;
    hearth_status st = context_plan(&model->hp, params, &p, &kv_bytes, &scratch_bytes, err);
    if (st != HEARTH_OK) return st;
    char what[160];
    /* Refused before anything is allocated when it does not fit the budget. */
    st = memory_reserve(model, kv_bytes, scratch_bytes, context_what(&p, what, sizeof what), err);
    if (st != HEARTH_OK) return st;
    hearth_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        memory_unreserve(model, kv_bytes, scratch_bytes);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    ctx->model = model;
    ctx->params = p;
    ctx->n_outputs_max = context_n_outputs(&p);
    ctx->reserved = true;
    ctx->kv_bytes = kv_bytes;
    ctx->scratch_bytes = scratch_bytes;
    st = threadpool_create(p.n_threads, &ctx->pool, err);
    if (st == HEARTH_OK) {
        ctx->kv_arena = arena_map(kv_bytes);
        ctx->scratch_arena = arena_map(scratch_bytes);
        if (!ctx->kv_arena || !ctx->scratch_arena) {
            st = error_set(err, HEARTH_ERR_NOMEM,
                           "out of memory for the KV cache (%llu bytes) and scratch (%llu bytes) "
                           "of %s",
                           (unsigned long long)kv_bytes, (unsigned long long)scratch_bytes, what);
        }
    }
    /* Pinned before the layout fences the gaps between buffers. */
    const model_memory *mem = model->mem;
    if (st == HEARTH_OK && mem && (mem->mlock || mem->prefault)) {
        st = memory_pin(ctx->kv_arena, kv_bytes, mem->mlock, err);
        if (st == HEARTH_OK) st = memory_pin(ctx->scratch_arena, scratch_bytes, mem->mlock, err);
    }
    if (st == HEARTH_OK) {
        arena kv_a = {ctx->kv_arena, 0}, s_a = {ctx->scratch_arena, 0};
        layout_kv(&kv_a, &model->hp, &p, &ctx->kv);
        layout_scratch(&s_a, &model->hp, &p, &ctx->s, &ctx->act_row_bytes);
        if (kv_a.used > kv_bytes || s_a.used > scratch_bytes) {
            st = error_set(err, HEARTH_ERR_INTERNAL, "context layout outgrew its plan");
        } else {
            arena_seal(&kv_a, kv_bytes);
            arena_seal(&s_a, scratch_bytes);
        }
    }
    if (st == HEARTH_OK) st = device_context_init(ctx, err);
    if (st != HEARTH_OK) {
        hearth_context_free(ctx);
        return st;
    }
    *out = ctx;
    return HEARTH_OK;
}

void hearth_context_free(hearth_context *ctx) {
    if (!ctx) return;
    device_context_free(ctx);
    threadpool_free(ctx->pool);
    arena_unmap(ctx->kv_arena, ctx->kv_bytes);
    arena_unmap(ctx->scratch_arena, ctx->scratch_bytes);
    if (ctx->reserved) memory_unreserve(ctx->model, ctx->kv_bytes, ctx->scratch_bytes);
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
    if (n_out > ctx->n_outputs_max) {
        for (uint32_t i = 0; i < b->n; i++) ctx->s.out_rows[i] = -1;
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "batch asks for logits of %u tokens; the context holds %u (n_outputs)",
                         n_out, ctx->n_outputs_max);
    }
    if (ctx->gpu) {
        st = device_forward(ctx, b, n_out, err);
        if (st != HEARTH_OK) return st;
    } else {
        model_forward(ctx, b);
    }
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

int32_t hearth_kv_len(const hearth_context *ctx, int32_t seq) {
    if (seq < 0 || (uint32_t)seq >= ctx->kv.n_seq) return 0;
    return ctx->kv.len[seq];
}

hearth_status hearth_kv_copy(hearth_context *ctx, int32_t dst, int32_t src, int32_t n_pos,
                             hearth_error *err) {
    kv_cache *kv = &ctx->kv;
    if (dst < 0 || src < 0 || (uint32_t)dst >= kv->n_seq || (uint32_t)src >= kv->n_seq ||
        dst == src || n_pos < 0 || n_pos > kv->len[src]) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "kv copy of %d positions from sequence %d (holding %d) to %d is out of "
                         "range",
                         n_pos, src, (src >= 0 && (uint32_t)src < kv->n_seq) ? kv->len[src] : -1,
                         dst);
    }
    /* Rows of one sequence are contiguous within a layer: one memcpy per
     * layer for keys and one for values. */
    if (ctx->gpu) {
        hearth_status st = device_kv_copy(ctx, dst, src, n_pos, err);
        if (st != HEARTH_OK) return st;
        kv->len[dst] = n_pos;
        return HEARTH_OK;
    }
    const size_t k_bytes = (size_t)n_pos * kv->k_row * kv->elem_bytes;
    const size_t v_bytes = (size_t)n_pos * kv->v_row * kv->elem_bytes;
    for (uint32_t il = 0; il < ctx->model->hp.n_layer; il++) {
        size_t s0 = ((size_t)il * kv->n_seq + (size_t)src) * kv->n_ctx;
        size_t d0 = ((size_t)il * kv->n_seq + (size_t)dst) * kv->n_ctx;
        memcpy(kv->k + d0 * kv->k_row * kv->elem_bytes, kv->k + s0 * kv->k_row * kv->elem_bytes,
               k_bytes);
        memcpy(kv->v + d0 * kv->v_row * kv->elem_bytes, kv->v + s0 * kv->v_row * kv->elem_bytes,
               v_bytes);
    }
    kv->len[dst] = n_pos;
    return HEARTH_OK;
}
