/* convert.c — a Hugging Face checkpoint directory to a GGUF model.
 *
 * config.json picks the architecture and hyper-parameters; each GGUF tensor
 * is described by the checkpoint tensors it comes from and how (a copy, the
 * rows of Q/K reordered for llama's pairwise RoPE, or one matrix per expert
 * stacked into a 3-D tensor).  The data is produced tensor by tensor while
 * the file is written, converted to the requested float type (vectors —
 * norms, biases — stay F32), so memory use is one tensor, not the model.
 */
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "convert/safetensors.h"
#include "kernels/quant.h"
#include "util/dtype.h"
#include "util/error.h"

/* How the checkpoint names its layers' tensors, per architecture family. */
typedef struct hf_arch {
    const char *hf_name;   /* config.json "architectures"[0] */
    const char *gguf_arch; /* general.architecture */
    bool permute_qk;       /* llama: HF rotates halves, GGUF llama rotates pairs */
    const char *moe_block; /* "mlp" or "block_sparse_moe" */
    const char *exp_gate, *exp_up, *exp_down; /* per-expert projection names */
} hf_arch;

static const hf_arch hf_archs[] = {
    {"LlamaForCausalLM", "llama", true, "mlp", "gate_proj", "up_proj", "down_proj"},
    {"MistralForCausalLM", "llama", true, "mlp", "gate_proj", "up_proj", "down_proj"},
    {"MixtralForCausalLM", "llama", true, "block_sparse_moe", "w1", "w3", "w2"},
    {"Qwen2ForCausalLM", "qwen2", false, "mlp", "gate_proj", "up_proj", "down_proj"},
    {"Qwen3ForCausalLM", "qwen3", false, "mlp", "gate_proj", "up_proj", "down_proj"},
    {"Qwen2MoeForCausalLM", "qwen2moe", false, "mlp", "gate_proj", "up_proj", "down_proj"},
    {"Qwen3MoeForCausalLM", "qwen3moe", false, "mlp", "gate_proj", "up_proj", "down_proj"},
};

/* One GGUF tensor and where its bytes come from. */
typedef struct conv_tensor {
    char name[96];
    uint32_t type; /* output hearth_dtype */
    uint32_t n_dims;
    uint64_t ne[4];        /* GGUF order: ne[0] fastest */
    const st_tensor **src; /* (n_src) stacked in order */
    uint32_t n_src;
    uint32_t permute_heads; /* > 0: reorder rows of each of this many heads */
} conv_tensor;

typedef struct conv_plan {
    conv_tensor *t;
    uint32_t n, cap;
    uint64_t total_bytes;
} conv_plan;

typedef struct hf_hparams {
    uint64_t vocab, embd, ff, layers, heads, heads_kv, head_dim, ctx;
    uint64_t n_expert, n_expert_used, ff_exp, ff_shexp;
    double eps, rope_theta;
    bool norm_topk, has_norm_topk;
} hf_hparams;

/* ---------------------------------------------------------------- config */

static bool cfg_u64(const json_t *cfg, const char *key, uint64_t *out) {
    const json_t *v = json_object_get(cfg, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static bool cfg_f64(const json_t *cfg, const char *key, double *out) {
    const json_t *v = json_object_get(cfg, key);
    if (!json_is_number(v)) return false;
    *out = json_number_value(v);
    return true;
}

static hearth_status read_config(const json_t *cfg, const hf_arch **arch, hf_hparams *hp,
                                 hearth_error *err) {
    const char *name = json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0));
    *arch = NULL;
    for (size_t i = 0; name && i < sizeof hf_archs / sizeof hf_archs[0]; i++) {
        if (!strcmp(name, hf_archs[i].hf_name)) *arch = &hf_archs[i];
    }
    if (!*arch) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "config.json: architecture '%s' is not one hearth converts (Llama, "
                         "Mistral, Mixtral, Qwen2, Qwen3, Qwen2-MoE, Qwen3-MoE)",
                         name ? name : "(none)");
    }
    memset(hp, 0, sizeof *hp);
    if (!cfg_u64(cfg, "vocab_size", &hp->vocab) || !cfg_u64(cfg, "hidden_size", &hp->embd) ||
        !cfg_u64(cfg, "num_hidden_layers", &hp->layers) ||
        !cfg_u64(cfg, "num_attention_heads", &hp->heads) ||
        !cfg_u64(cfg, "intermediate_size", &hp->ff)) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "config.json lacks vocab_size, hidden_size, intermediate_size, "
                         "num_hidden_layers or num_attention_heads");
    }
    if (hp->heads == 0 || hp->embd == 0 || hp->layers == 0 || hp->layers > 4096) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "config.json: bad sizes");
    }
    hp->heads_kv = hp->heads;
    cfg_u64(cfg, "num_key_value_heads", &hp->heads_kv);
    hp->head_dim = hp->embd / hp->heads;
    cfg_u64(cfg, "head_dim", &hp->head_dim);
    hp->ctx = 4096;
    cfg_u64(cfg, "max_position_embeddings", &hp->ctx);
    hp->eps = 1e-5;
    cfg_f64(cfg, "rms_norm_eps", &hp->eps);
    hp->rope_theta = 10000.0;
    if (!cfg_f64(cfg, "rope_theta", &hp->rope_theta)) {
        cfg_f64(json_object_get(cfg, "rope_parameters"), "rope_theta", &hp->rope_theta);
    }
    const json_t *scaling = json_object_get(cfg, "rope_scaling");
    const char *rtype =
        json_string_value(json_object_get(json_object_get(cfg, "rope_parameters"), "rope_type"));
    if ((scaling && !json_is_null(scaling)) || (rtype && strcmp(rtype, "default") != 0)) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "config.json asks for RoPE scaling, which hearth does not run yet");
    }
    if (json_is_true(json_object_get(cfg, "use_sliding_window"))) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "config.json asks for sliding-window attention, which hearth does not "
                         "run yet");
    }
    if (!cfg_u64(cfg, "num_experts", &hp->n_expert))
        cfg_u64(cfg, "num_local_experts", &hp->n_expert);
    cfg_u64(cfg, "num_experts_per_tok", &hp->n_expert_used);
    hp->ff_exp = hp->ff;
    cfg_u64(cfg, "moe_intermediate_size", &hp->ff_exp);
    cfg_u64(cfg, "shared_expert_intermediate_size", &hp->ff_shexp);
    const json_t *norm = json_object_get(cfg, "norm_topk_prob");
    hp->has_norm_topk = json_is_boolean(norm);
    hp->norm_topk = json_is_true(norm);
    if (hp->n_expert > 1024 || hp->n_expert_used > hp->n_expert) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "config.json: %llu experts, %llu used",
                         (unsigned long long)hp->n_expert, (unsigned long long)hp->n_expert_used);
    }
    return HEARTH_OK;
}

static hearth_status write_hparams(gguf_writer *w, const hf_arch *arch, const hf_hparams *hp,
                                   const char *name, uint32_t file_type, hearth_error *err) {
    const char *a = arch->gguf_arch;
    char key[128];
    hearth_status st = gguf_writer_set_str(w, "general.architecture", a, err);
    if (st == HEARTH_OK) st = gguf_writer_set_str(w, "general.name", name, err);
    if (st == HEARTH_OK) st = gguf_writer_set_u32(w, "general.file_type", file_type, err);
#define SET_U32(suffix, v)                                                                         \
    do {                                                                                           \
        snprintf(key, sizeof key, "%s.%s", a, suffix);                                             \
        if (st == HEARTH_OK) st = gguf_writer_set_u32(w, key, (uint32_t)(v), err);                 \
    } while (0)
#define SET_F32(suffix, v)                                                                         \
    do {                                                                                           \
        snprintf(key, sizeof key, "%s.%s", a, suffix);                                             \
        if (st == HEARTH_OK) st = gguf_writer_set_f32(w, key, (float)(v), err);                    \
    } while (0)
    SET_U32("context_length", hp->ctx);
    SET_U32("embedding_length", hp->embd);
    SET_U32("block_count", hp->layers);
    /* Mixtral files (llama architecture) give the expert size as the feed-forward length. */
    bool llama_moe = hp->n_expert > 0 && !strcmp(a, "llama");
    SET_U32("feed_forward_length", llama_moe ? hp->ff_exp : hp->ff);
    SET_U32("attention.head_count", hp->heads);
    SET_U32("attention.head_count_kv", hp->heads_kv);
    SET_U32("attention.key_length", hp->head_dim);
    SET_U32("attention.value_length", hp->head_dim);
    SET_U32("rope.dimension_count", hp->head_dim);
    SET_F32("rope.freq_base", hp->rope_theta);
    SET_F32("attention.layer_norm_rms_epsilon", hp->eps);
    if (hp->n_expert > 0) {
        SET_U32("expert_count", hp->n_expert);
        SET_U32("expert_used_count", hp->n_expert_used);
        if (!llama_moe) SET_U32("expert_feed_forward_length", hp->ff_exp);
        if (hp->ff_shexp) SET_U32("expert_shared_feed_forward_length", hp->ff_shexp);
        if (hp->has_norm_topk) {
            snprintf(key, sizeof key, "%s.expert_weights_norm", a);
            if (st == HEARTH_OK) st = gguf_writer_set_bool(w, key, hp->norm_topk, err);
        }
    }
#undef SET_U32
#undef SET_F32
    return st;
}

/* ---------------------------------------------------------------- plan */

static conv_tensor *plan_add(conv_plan *p, hearth_error *err) {
    if (p->n == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 64;
        conv_tensor *t = realloc(p->t, cap * sizeof *t);
        if (!t) {
            error_set(err, HEARTH_ERR_NOMEM, "out of memory");
            return NULL;
        }
        p->t = t;
        p->cap = cap;
    }
    conv_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    return t;
}

static void plan_free(conv_plan *p) {
    for (uint32_t i = 0; i < p->n; i++) free(p->t[i].src);
    free(p->t);
}

/* Adds GGUF tensor gguf_name from the checkpoint tensors names[0..n), which
 * must all have shape rows x cols (or cols for a vector); n > 1 stacks them
 * as experts.  Optional tensors that are absent are skipped. */
static hearth_status plan_tensor(conv_plan *p, const st_set *set, const char *gguf_name,
                                 char names[][160], uint32_t n, uint64_t rows, uint64_t cols,
                                 bool vector, uint32_t out_type, uint32_t permute_heads,
                                 bool optional, hearth_error *err) {
    const st_tensor *first = st_set_find(set, names[0]);
    if (!first) {
        if (optional) return HEARTH_OK;
        return error_set(err, HEARTH_ERR_BAD_MODEL, "checkpoint tensor '%s' is missing", names[0]);
    }
    conv_tensor *t = plan_add(p, err);
    if (!t) return HEARTH_ERR_NOMEM;
    snprintf(t->name, sizeof t->name, "%s", gguf_name);
    t->src = calloc(n, sizeof *t->src);
    if (!t->src) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    t->n_src = n;
    t->permute_heads = permute_heads;
    for (uint32_t i = 0; i < n; i++) {
        const st_tensor *s = st_set_find(set, names[i]);
        if (!s)
            return error_set(err, HEARTH_ERR_BAD_MODEL, "checkpoint tensor '%s' is missing",
                             names[i]);
        bool ok = vector ? (s->n_dims == 1 && s->shape[0] == cols) ||
                               (s->n_dims == 2 && s->shape[0] == 1 && s->shape[1] == cols)
                         : s->n_dims == 2 && s->shape[0] == rows && s->shape[1] == cols;
        if (!ok) {
            return error_set(err, HEARTH_ERR_BAD_MODEL,
                             "checkpoint tensor '%s' has shape [%llu, %llu], expected [%llu, %llu]",
                             names[i], (unsigned long long)s->shape[0],
                             (unsigned long long)(s->n_dims > 1 ? s->shape[1] : 0),
                             (unsigned long long)rows, (unsigned long long)cols);
        }
        t->src[i] = s;
    }
    t->type = vector ? HEARTH_DTYPE_F32 : out_type;
    t->ne[0] = cols;
    t->ne[1] = vector ? 1 : rows;
    t->ne[2] = n;
    t->ne[3] = 1;
    t->n_dims = vector ? 1 : (n > 1 ? 3 : 2);
    p->total_bytes += dtype_row_bytes(t->type, cols) * t->ne[1] * n;
    return HEARTH_OK;
}

/* Plans one layer. */
static hearth_status plan_layer(conv_plan *p, const st_set *set, const hf_arch *arch,
                                const hf_hparams *hp, uint64_t il, uint32_t out_type,
                                hearth_error *err) {
    char g[96], n1[1][160];
    uint64_t e = hp->embd, q = hp->heads * hp->head_dim, kv = hp->heads_kv * hp->head_dim;
    struct {
        const char *hf, *gguf;
        uint64_t rows, cols;
        bool vector, optional;
        uint32_t permute;
    } plain[] = {
        {"input_layernorm.weight", "attn_norm.weight", 1, e, true, false, 0},
        {"self_attn.q_proj.weight", "attn_q.weight", q, e, false, false,
         arch->permute_qk ? (uint32_t)hp->heads : 0},
        {"self_attn.k_proj.weight", "attn_k.weight", kv, e, false, false,
         arch->permute_qk ? (uint32_t)hp->heads_kv : 0},
        {"self_attn.v_proj.weight", "attn_v.weight", kv, e, false, false, 0},
        {"self_attn.o_proj.weight", "attn_output.weight", e, q, false, false, 0},
        {"self_attn.q_proj.bias", "attn_q.bias", 1, q, true, true,
         arch->permute_qk ? (uint32_t)hp->heads : 0},
        {"self_attn.k_proj.bias", "attn_k.bias", 1, kv, true, true,
         arch->permute_qk ? (uint32_t)hp->heads_kv : 0},
        {"self_attn.v_proj.bias", "attn_v.bias", 1, kv, true, true, 0},
        {"self_attn.q_norm.weight", "attn_q_norm.weight", 1, hp->head_dim, true, true, 0},
        {"self_attn.k_norm.weight", "attn_k_norm.weight", 1, hp->head_dim, true, true, 0},
        {"post_attention_layernorm.weight", "ffn_norm.weight", 1, e, true, false, 0},
    };
    hearth_status st = HEARTH_OK;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0] && st == HEARTH_OK; i++) {
        snprintf(n1[0], sizeof n1[0], "model.layers.%llu.%s", (unsigned long long)il, plain[i].hf);
        snprintf(g, sizeof g, "blk.%llu.%s", (unsigned long long)il, plain[i].gguf);
        st = plan_tensor(p, set, g, n1, 1, plain[i].rows, plain[i].cols, plain[i].vector, out_type,
                         plain[i].permute, plain[i].optional, err);
    }
    if (st != HEARTH_OK) return st;

    /* Router present: a mixture-of-experts layer; otherwise dense. */
    snprintf(n1[0], sizeof n1[0], "model.layers.%llu.%s.gate.weight", (unsigned long long)il,
             arch->moe_block);
    if (hp->n_expert == 0 || !st_set_find(set, n1[0])) {
        const char *hf[3] = {"gate_proj", "up_proj", "down_proj"};
        const char *gg[3] = {"ffn_gate", "ffn_up", "ffn_down"};
        for (int i = 0; i < 3 && st == HEARTH_OK; i++) {
            snprintf(n1[0], sizeof n1[0], "model.layers.%llu.mlp.%s.weight", (unsigned long long)il,
                     hf[i]);
            snprintf(g, sizeof g, "blk.%llu.%s.weight", (unsigned long long)il, gg[i]);
            st = plan_tensor(p, set, g, n1, 1, i == 2 ? e : hp->ff, i == 2 ? hp->ff : e, false,
                             out_type, 0, false, err);
        }
        return st;
    }
    snprintf(g, sizeof g, "blk.%llu.ffn_gate_inp.weight", (unsigned long long)il);
    st = plan_tensor(p, set, g, n1, 1, hp->n_expert, e, false, out_type, 0, false, err);
    char(*names)[160] = calloc(hp->n_expert, sizeof *names);
    if (!names) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    const char *hf[3] = {arch->exp_gate, arch->exp_up, arch->exp_down};
    const char *gg[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    for (int i = 0; i < 3 && st == HEARTH_OK; i++) {
        for (uint64_t x = 0; x < hp->n_expert; x++) {
            snprintf(names[x], sizeof names[x], "model.layers.%llu.%s.experts.%llu.%s.weight",
                     (unsigned long long)il, arch->moe_block, (unsigned long long)x, hf[i]);
        }
        snprintf(g, sizeof g, "blk.%llu.%s.weight", (unsigned long long)il, gg[i]);
        st = plan_tensor(p, set, g, names, (uint32_t)hp->n_expert, i == 2 ? e : hp->ff_exp,
                         i == 2 ? hp->ff_exp : e, false, out_type, 0, false, err);
    }
    free(names);
    if (st != HEARTH_OK || hp->ff_shexp == 0) return st;
    const char *shf[3] = {"gate_proj", "up_proj", "down_proj"};
    const char *sgg[3] = {"ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"};
    for (int i = 0; i < 3 && st == HEARTH_OK; i++) {
        snprintf(n1[0], sizeof n1[0], "model.layers.%llu.mlp.shared_expert.%s.weight",
                 (unsigned long long)il, shf[i]);
        snprintf(g, sizeof g, "blk.%llu.%s.weight", (unsigned long long)il, sgg[i]);
        st = plan_tensor(p, set, g, n1, 1, i == 2 ? e : hp->ff_shexp, i == 2 ? hp->ff_shexp : e,
                         false, out_type, 0, false, err);
    }
    snprintf(n1[0], sizeof n1[0], "model.layers.%llu.mlp.shared_expert_gate.weight",
             (unsigned long long)il);
    snprintf(g, sizeof g, "blk.%llu.ffn_gate_inp_shexp.weight", (unsigned long long)il);
    if (st == HEARTH_OK) st = plan_tensor(p, set, g, n1, 1, 1, e, false, out_type, 0, true, err);
    return st;
}

static hearth_status plan_model(conv_plan *p, const st_set *set, const hf_arch *arch,
                                const hf_hparams *hp, uint32_t out_type, hearth_error *err) {
    char n1[1][160];
    snprintf(n1[0], sizeof n1[0], "model.embed_tokens.weight");
    hearth_status st = plan_tensor(p, set, "token_embd.weight", n1, 1, hp->vocab, hp->embd, false,
                                   out_type, 0, false, err);
    for (uint64_t il = 0; il < hp->layers && st == HEARTH_OK; il++) {
        st = plan_layer(p, set, arch, hp, il, out_type, err);
    }
    snprintf(n1[0], sizeof n1[0], "model.norm.weight");
    if (st == HEARTH_OK) {
        st = plan_tensor(p, set, "output_norm.weight", n1, 1, 1, hp->embd, true, out_type, 0, false,
                         err);
    }
    snprintf(n1[0], sizeof n1[0], "lm_head.weight");
    if (st == HEARTH_OK) {
        /* Absent when the output projection is tied to the embeddings. */
        st = plan_tensor(p, set, "output.weight", n1, 1, hp->vocab, hp->embd, false, out_type, 0,
                         true, err);
    }
    return st;
}

/* ---------------------------------------------------------------- data */

static float load_elem(const st_tensor *s, uint64_t i) {
    const uint8_t *p = s->data;
    switch (s->dtype) {
    case ST_F32: {
        float f;
        memcpy(&f, p + i * 4, 4);
        return f;
    }
    case ST_F16: {
        uint16_t h;
        memcpy(&h, p + i * 2, 2);
        return hearth_fp16_to_f32(h);
    }
    case ST_BF16: {
        uint16_t h;
        memcpy(&h, p + i * 2, 2);
        return hearth_bf16_to_f32(h);
    }
    }
    return 0.0f;
}

static void store_elem(uint32_t type, uint8_t *dst, uint64_t i, float v) {
    if (type == HEARTH_DTYPE_F32) {
        memcpy(dst + i * 4, &v, 4);
    } else {
        uint16_t h = type == HEARTH_DTYPE_F16 ? hearth_f32_to_fp16(v) : hearth_f32_to_bf16(v);
        memcpy(dst + i * 2, &h, 2);
    }
}

/* Source row for output row r of a tensor whose heads are reordered: HF
 * keeps the two halves of each head apart, GGUF llama interleaves them. */
static uint64_t source_row(uint64_t r, uint64_t rows, uint32_t heads) {
    if (heads == 0) return r;
    uint64_t hd = rows / heads, half = hd / 2;
    uint64_t h = r / hd, i = (r % hd) / 2, j = r % 2;
    return h * hd + j * half + i;
}

static hearth_status fill_tensor(void *arg, void *buf, uint64_t nbytes, hearth_error *err) {
    const conv_tensor *t = arg;
    uint8_t *dst = buf;
    uint64_t rows = t->ne[1], cols = t->ne[0], esize = t->type == HEARTH_DTYPE_F32 ? 4 : 2;
    (void)err;
    (void)nbytes;
    for (uint32_t x = 0; x < t->n_src; x++) {
        const st_tensor *s = t->src[x];
        /* A vector with permuted heads (a q/k bias) reorders elements, not rows. */
        bool vec_perm = rows == 1 && t->permute_heads;
        for (uint64_t r = 0; r < rows; r++) {
            uint64_t sr = source_row(r, rows, t->permute_heads);
            uint8_t *drow = dst + ((uint64_t)x * rows + r) * cols * esize;
            bool same = (s->dtype == ST_F32 && t->type == HEARTH_DTYPE_F32) ||
                        (s->dtype == ST_F16 && t->type == HEARTH_DTYPE_F16) ||
                        (s->dtype == ST_BF16 && t->type == HEARTH_DTYPE_BF16);
            if (same && !vec_perm) {
                memcpy(drow, (const uint8_t *)s->data + sr * cols * esize, (size_t)(cols * esize));
                continue;
            }
            for (uint64_t c = 0; c < cols; c++) {
                uint64_t sc = vec_perm ? source_row(c, cols, t->permute_heads) : c;
                store_elem(t->type, drow, c, load_elem(s, sr * cols + sc));
            }
        }
    }
    return HEARTH_OK;
}

/* ---------------------------------------------------------------- driver */

static uint32_t file_type_of(uint32_t out_type) {
    /* llama.cpp's numbering: ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_BF16 = 32 */
    return out_type == HEARTH_DTYPE_F32 ? 0 : out_type == HEARTH_DTYPE_F16 ? 1 : 32;
}

hearth_status convert_hf_dir(const char *dir, const char *out_path, const convert_params *p,
                             hearth_error *err) {
    if (p->out_type != HEARTH_DTYPE_F32 && p->out_type != HEARTH_DTYPE_F16 &&
        p->out_type != HEARTH_DTYPE_BF16) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "convert writes f32, f16 or bf16");
    }
    char path[4096], tok_path[4096], tcfg_path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t jerr;
    json_t *cfg = json_load_file(path, 0, &jerr);
    if (!cfg) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "%s: %s (line %d)", path, jerr.text, jerr.line);
    }
    const hf_arch *arch;
    hf_hparams hp;
    st_set *set = NULL;
    gguf_writer *w = NULL;
    conv_plan plan = {NULL, 0, 0, 0};
    hearth_status st = read_config(cfg, &arch, &hp, err);
    if (st == HEARTH_OK) st = st_set_open_dir(dir, &set, err);
    if (st == HEARTH_OK) st = plan_model(&plan, set, arch, &hp, p->out_type, err);
    if (st == HEARTH_OK) st = gguf_writer_create(&w, err);
    if (st == HEARTH_OK) {
        char dcopy[4096];
        snprintf(dcopy, sizeof dcopy, "%s", dir);
        st = write_hparams(w, arch, &hp, basename(dcopy), file_type_of(p->out_type), err);
    }
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);
    snprintf(tcfg_path, sizeof tcfg_path, "%s/tokenizer_config.json", dir);
    if (st == HEARTH_OK) {
        st = hf_tokenizer_to_gguf(w, tok_path, tcfg_path, path, (uint32_t)hp.vocab, err);
    }
    for (uint32_t i = 0; i < plan.n && st == HEARTH_OK; i++) {
        conv_tensor *t = &plan.t[i];
        st =
            gguf_writer_add_tensor_fill(w, t->name, t->type, t->n_dims, t->ne, fill_tensor, t, err);
    }
    if (st == HEARTH_OK)
        st = gguf_writer_write_file(w, out_path, p->progress, p->progress_arg, err);
    gguf_writer_free(w);
    plan_free(&plan);
    st_set_free(set);
    json_decref(cfg);
    return st;
}
