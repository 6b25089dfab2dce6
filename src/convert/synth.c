/* synth.c — GGUF models with random weights and real shapes, for benchmarks.
 *
 * There is no model hub here, so the models the speed targets name
 * (Qwen3-30B-A3B, a 1024-wide Qwen3-MoE, a 512-wide Llama) are made from
 * their shapes: every tensor llama.cpp and hearth expect, filled with
 * deterministic pseudo-random values of a sensible scale (matrices
 * ~ 1/sqrt(fan_in), norms ~ 1), written block by block straight in the
 * target type so a 17 GB file takes the time of writing it.  The vocabulary
 * is a SentencePiece-style one (byte tokens plus filler pieces) that both
 * engines load.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/synth.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "util/dtype.h"
#include "util/error.h"

/* xorshift64* stream per tensor, seeded from its name. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

/* Roughly normal (sum of four uniforms), unit variance. */
static float rng_normal(rng *r) {
    uint64_t x = rng_next(r);
    float u = 0.0f;
    for (int i = 0; i < 4; i++) u += (float)((x >> (16 * i)) & 0xffff) / 65536.0f;
    return (u - 2.0f) * 1.7320508f;
}

typedef struct synth_tensor {
    char name[96];
    uint32_t type;
    uint32_t n_dims;
    uint64_t ne[4];
    float scale; /* std of the values; 0 for a norm (values near 1) */
    uint64_t seed;
} synth_tensor;

typedef struct synth_plan {
    synth_tensor *t;
    uint32_t n, cap;
} synth_plan;

static uint64_t name_seed(const char *s, uint64_t base) {
    uint64_t h = 1469598103934665603ull ^ base;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h ? h : 1;
}

/* Random bytes in the layout of a K-quant: every sub-block scale (and
 * min) 32, quants uniform, the super-block scale set for a std of
 * t->scale around 0 (quantizing floats would take minutes for the large
 * presets). */
static void fill_random_bytes(rng *r, uint8_t *p, size_t n) {
    for (size_t k = 0; k < n; k += 8) {
        uint64_t x = rng_next(r);
        memcpy(p + k, &x, n - k < 8 ? n - k : 8);
    }
}

static void fill_kquant(const synth_tensor *t, rng *r, void *buf, uint64_t nbytes) {
    uint64_t nb = nbytes / dtype_block_bytes(t->type);
    /* 6-bit scale and min of 32 for all 8 sub-blocks, packed as quant.h says. */
    static const uint8_t scales32[K_SCALE_SIZE] = {0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0,
                                                   0xa0, 0xa0, 0,    0,    0,    0};
    if (t->type == HEARTH_DTYPE_Q4_K || t->type == HEARTH_DTYPE_Q5_K) {
        bool q5 = t->type == HEARTH_DTYPE_Q5_K;
        /* quants uniform on [0, 15] (mean 7.5, std 4.6) or [0, 31] (15.5, 9.2) */
        float d = t->scale / (32.0f * (q5 ? 9.23f : 4.61f)), mean = q5 ? 15.5f : 7.5f;
        hearth_fp16 dh = hearth_f32_to_fp16(d), mh = hearth_f32_to_fp16(d * mean);
        for (uint64_t i = 0; i < nb; i++) {
            if (q5) {
                block_q5_K *b = (block_q5_K *)buf + i;
                b->d = dh;
                b->dmin = mh;
                memcpy(b->scales, scales32, sizeof scales32);
                fill_random_bytes(r, b->qh, sizeof b->qh);
                fill_random_bytes(r, b->qs, sizeof b->qs);
            } else {
                block_q4_K *b = (block_q4_K *)buf + i;
                b->d = dh;
                b->dmin = mh;
                memcpy(b->scales, scales32, sizeof scales32);
                fill_random_bytes(r, b->qs, sizeof b->qs);
            }
        }
        return;
    }
    /* Q6_K: q - 32 uniform on [-32, 31], std 18.5 */
    hearth_fp16 dh = hearth_f32_to_fp16(t->scale / (32.0f * 18.5f));
    for (uint64_t i = 0; i < nb; i++) {
        block_q6_K *b = (block_q6_K *)buf + i;
        fill_random_bytes(r, b->ql, sizeof b->ql);
        fill_random_bytes(r, b->qh, sizeof b->qh);
        memset(b->scales, 32, sizeof b->scales);
        b->d = dh;
    }
}

static hearth_status fill_synth(void *arg, void *buf, uint64_t nbytes, hearth_error *err) {
    const synth_tensor *t = arg;
    rng r = {t->seed};
    uint64_t cols = t->ne[0], rows = nbytes / dtype_row_bytes(t->type, cols);
    uint8_t *out = buf;
    if (t->scale == 0.0f) { /* F32 norm weights near 1 */
        float *f = buf;
        for (uint64_t i = 0; i < cols * rows; i++) f[i] = 1.0f + 0.1f * rng_normal(&r);
        return HEARTH_OK;
    }
    if (t->type == HEARTH_DTYPE_Q4_0) {
        /* Random nibbles are uniform on [-8, 7] steps: std ~ 4.6 steps. */
        block_q4_0 *b = buf;
        uint64_t n = nbytes / sizeof *b;
        hearth_fp16 d = hearth_f32_to_fp16(t->scale / 4.6f);
        for (uint64_t i = 0; i < n; i++) {
            b[i].d = d;
            uint64_t x = rng_next(&r), y = rng_next(&r);
            memcpy(b[i].qs, &x, 8);
            memcpy(b[i].qs + 8, &y, 8);
        }
        return HEARTH_OK;
    }
    if (t->type == HEARTH_DTYPE_Q8_0) {
        block_q8_0 *b = buf;
        uint64_t n = nbytes / sizeof *b;
        hearth_fp16 d = hearth_f32_to_fp16(t->scale / 73.0f); /* uniform int8: std ~ 73.6 */
        for (uint64_t i = 0; i < n; i++) {
            b[i].d = d;
            for (int k = 0; k < 4; k++) {
                uint64_t x = rng_next(&r);
                memcpy(b[i].qs + 8 * k, &x, 8);
            }
        }
        return HEARTH_OK;
    }
    if (t->type == HEARTH_DTYPE_Q4_K || t->type == HEARTH_DTYPE_Q5_K ||
        t->type == HEARTH_DTYPE_Q6_K) {
        fill_kquant(t, &r, buf, nbytes);
        return HEARTH_OK;
    }
    /* Other types: float rows quantized with the reference kernels. */
    quantize_row_fn quant = kernel_weight_quantizer(t->type);
    float *row = malloc((size_t)cols * sizeof *row);
    if (!row) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    uint64_t rb = dtype_row_bytes(t->type, cols);
    for (uint64_t i = 0; i < rows; i++) {
        for (uint64_t c = 0; c < cols; c++) row[c] = t->scale * rng_normal(&r);
        quant(row, out + i * rb, (int64_t)cols);
    }
    free(row);
    return HEARTH_OK;
}

static hearth_status plan_add(synth_plan *p, const char *name, uint32_t type, uint32_t n_dims,
                              uint64_t ne0, uint64_t ne1, uint64_t ne2, float scale,
                              hearth_error *err) {
    if (p->n == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 256;
        synth_tensor *t = realloc(p->t, cap * sizeof *t);
        if (!t) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
        p->t = t;
        p->cap = cap;
    }
    synth_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = scale == 0.0f ? HEARTH_DTYPE_F32 : type;
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->ne[3] = 1;
    t->scale = scale;
    t->seed = name_seed(name, 0x5eed);
    return HEARTH_OK;
}

/* The tensors of the model, in llama.cpp's names and shapes. */
static hearth_status plan_model(synth_plan *p, const synth_params *s, hearth_error *err) {
    uint64_t e = s->n_embd, hd = s->head_dim, q = s->n_head * hd, kv = s->n_head_kv * hd;
    float se = 1.0f / sqrtf((float)e);
    hearth_status st = plan_add(p, "token_embd.weight", s->type, 2, e, s->n_vocab, 1, 1.0f, err);
    for (uint32_t il = 0; il < s->n_layer && st == HEARTH_OK; il++) {
        char n[96];
#define ADD(suffix, dims, a, b, c, scale)                                                          \
    do {                                                                                           \
        snprintf(n, sizeof n, "blk.%u.%s", il, suffix);                                            \
        if (st == HEARTH_OK) st = plan_add(p, n, s->type, dims, a, b, c, scale, err);              \
    } while (0)
        ADD("attn_norm.weight", 1, e, 1, 1, 0.0f);
        ADD("attn_q.weight", 2, e, q, 1, se);
        ADD("attn_k.weight", 2, e, kv, 1, se);
        ADD("attn_v.weight", 2, e, kv, 1, se);
        ADD("attn_output.weight", 2, q, e, 1, 1.0f / sqrtf((float)q));
        if (s->qk_norm) {
            ADD("attn_q_norm.weight", 1, hd, 1, 1, 0.0f);
            ADD("attn_k_norm.weight", 1, hd, 1, 1, 0.0f);
        }
        ADD("ffn_norm.weight", 1, e, 1, 1, 0.0f);
        if (s->n_expert == 0) {
            ADD("ffn_gate.weight", 2, e, s->n_ff, 1, se);
            ADD("ffn_up.weight", 2, e, s->n_ff, 1, se);
            ADD("ffn_down.weight", 2, s->n_ff, e, 1, 1.0f / sqrtf((float)s->n_ff));
        } else {
            uint64_t f = s->n_ff_exp, x = s->n_expert;
            /* The router stays F32, as quantizers leave it. */
            snprintf(n, sizeof n, "blk.%u.ffn_gate_inp.weight", il);
            if (st == HEARTH_OK) st = plan_add(p, n, HEARTH_DTYPE_F32, 2, e, x, 1, se, err);
            ADD("ffn_gate_exps.weight", 3, e, f, x, se);
            ADD("ffn_up_exps.weight", 3, e, f, x, se);
            ADD("ffn_down_exps.weight", 3, f, e, x, 1.0f / sqrtf((float)f));
        }
#undef ADD
    }
    if (st == HEARTH_OK) st = plan_add(p, "output_norm.weight", s->type, 1, e, 1, 1, 0.0f, err);
    if (st == HEARTH_OK) st = plan_add(p, "output.weight", s->type, 2, e, s->n_vocab, 1, se, err);
    return st;
}

/* A SentencePiece-style vocabulary: <unk> <s> </s>, 256 byte tokens, then
 * filler pieces "▁t<i>". */
static hearth_status write_vocab(gguf_writer *w, uint32_t n_vocab, hearth_error *err) {
    char **tokens = calloc(n_vocab, sizeof *tokens);
    float *scores = calloc(n_vocab, sizeof *scores);
    int32_t *types = calloc(n_vocab, sizeof *types);
    hearth_status st =
        tokens && scores && types ? HEARTH_OK : error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < n_vocab && st == HEARTH_OK; i++) {
        char buf[32];
        if (i == 0) {
            snprintf(buf, sizeof buf, "<unk>");
            types[i] = 2;
        } else if (i == 1 || i == 2) {
            snprintf(buf, sizeof buf, i == 1 ? "<s>" : "</s>");
            types[i] = 3;
        } else if (i < 259) {
            snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
            types[i] = 6;
        } else {
            snprintf(buf, sizeof buf, "\xe2\x96\x81t%u", i);
            types[i] = 1;
        }
        scores[i] = -(float)i;
        tokens[i] = strdup(buf);
        if (!tokens[i]) st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    if (st == HEARTH_OK) st = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", err);
    if (st == HEARTH_OK) {
        st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tokens, NULL,
                                     n_vocab, err);
    }
    if (st == HEARTH_OK) {
        st = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, n_vocab,
                                 err);
    }
    if (st == HEARTH_OK) {
        st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n_vocab,
                                 err);
    }
    if (st == HEARTH_OK) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, err);
    if (st == HEARTH_OK) st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, err);
    if (st == HEARTH_OK) st = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0, err);
    for (uint32_t i = 0; tokens && i < n_vocab; i++) free(tokens[i]);
    free(tokens);
    free(scores);
    free(types);
    return st;
}

static const struct {
    const char *name;
    synth_params p;
} presets[] = {
    /* Qwen3-30B-A3B: 48 layers, 2048 wide, 32/4 heads of 128, 128 experts of 768, top-8. */
    {"qwen3-30b-a3b",
     {"qwen3moe", 48, 2048, 32, 4, 128, 6144, 128, 8, 768, 151936, 40960, 1000000.0f, true, 0}},
    /* The MoE benchmark row: 12 layers, 1024 wide, 128 experts of 384, top-8. */
    {"qwen3moe-d1024",
     {"qwen3moe", 12, 1024, 16, 4, 64, 3072, 128, 8, 384, 151936, 40960, 1000000.0f, true, 0}},
    /* Qwen3-0.6B: 28 layers, 1024 wide, 16/8 heads of 128, ffn 3072. */
    {"qwen3-0.6b",
     {"qwen3", 28, 1024, 16, 8, 128, 3072, 0, 0, 0, 151936, 40960, 1000000.0f, true, 0}},
    /* The dense benchmark row: llama, 8 layers, 512 wide, 8/4 heads, ffn 1536, vocab 32000. */
    {"llama-d512", {"llama", 8, 512, 8, 4, 64, 1536, 0, 0, 0, 32000, 4096, 10000.0f, false, 0}},
};

hearth_status synth_preset(const char *name, synth_params *out, hearth_error *err) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (!strcmp(name, presets[i].name)) {
            *out = presets[i].p;
            return HEARTH_OK;
        }
    }
    return error_set(err, HEARTH_ERR_INVALID_ARG,
                     "unknown preset '%s' (qwen3-30b-a3b, qwen3moe-d1024, qwen3-0.6b, llama-d512)",
                     name);
}

hearth_status synth_write(const synth_params *s, const char *path,
                          void (*progress)(double done, void *arg), void *arg, hearth_error *err) {
    if (!kernel_traits_get(s->type) || s->n_layer == 0 || s->n_embd == 0 || s->n_head == 0 ||
        s->n_head_kv == 0 || s->head_dim == 0 || s->n_vocab < 300 ||
        s->n_embd % dtype_block_size(s->type) != 0 ||
        (s->n_expert ? s->n_ff_exp : s->n_ff) % dtype_block_size(s->type) != 0 ||
        (s->n_head * s->head_dim) % dtype_block_size(s->type) != 0) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "synth: bad shape or type (widths must be whole %s blocks, vocab >= 300)",
                         hearth_dtype_name(s->type) ? hearth_dtype_name(s->type) : "?");
    }
    synth_plan plan = {NULL, 0, 0};
    gguf_writer *w = NULL;
    hearth_status st = plan_model(&plan, s, err);
    if (st == HEARTH_OK) st = gguf_writer_create(&w, err);
    const char *a = s->arch;
    char key[128];
#define SET_U32(suffix, v)                                                                         \
    do {                                                                                           \
        snprintf(key, sizeof key, "%s.%s", a, suffix);                                             \
        if (st == HEARTH_OK) st = gguf_writer_set_u32(w, key, (uint32_t)(v), err);                 \
    } while (0)
    if (st == HEARTH_OK) st = gguf_writer_set_str(w, "general.architecture", a, err);
    if (st == HEARTH_OK) st = gguf_writer_set_str(w, "general.name", "synthetic", err);
    SET_U32("context_length", s->n_ctx);
    SET_U32("embedding_length", s->n_embd);
    SET_U32("block_count", s->n_layer);
    SET_U32("feed_forward_length", s->n_ff);
    SET_U32("attention.head_count", s->n_head);
    SET_U32("attention.head_count_kv", s->n_head_kv);
    SET_U32("attention.key_length", s->head_dim);
    SET_U32("attention.value_length", s->head_dim);
    SET_U32("rope.dimension_count", s->head_dim);
    if (s->n_expert) {
        SET_U32("expert_count", s->n_expert);
        SET_U32("expert_used_count", s->n_expert_used);
        SET_U32("expert_feed_forward_length", s->n_ff_exp);
    }
#undef SET_U32
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    if (st == HEARTH_OK) st = gguf_writer_set_f32(w, key, s->rope_base, err);
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    if (st == HEARTH_OK) st = gguf_writer_set_f32(w, key, 1e-6f, err);
    if (st == HEARTH_OK) st = write_vocab(w, s->n_vocab, err);
    for (uint32_t i = 0; i < plan.n && st == HEARTH_OK; i++) {
        synth_tensor *t = &plan.t[i];
        st = gguf_writer_add_tensor_fill(w, t->name, t->type, t->n_dims, t->ne, fill_synth, t, err);
    }
    if (st == HEARTH_OK) st = gguf_writer_write_file(w, path, progress, arg, err);
    gguf_writer_free(w);
    free(plan.t);
    return st;
}
