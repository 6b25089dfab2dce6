/* loader.c — turning a GGUF file into a hearth_model.
 *
 * Reads the hyper-parameters of the architecture named by
 * general.architecture, binds every weight by its llama.cpp tensor name and
 * checks its type and shape against the hyper-parameters, so the forward
 * pass never meets a tensor of the wrong size.  Everything that can be wrong
 * with a file is reported here, naming the tensor or key.  The memory the
 * model will hold is planned (memory.c) before the weights are read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/device.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/dtype.h"
#include "util/error.h"

/* Architectures the forward pass runs.  They share one decoder: what
 * differs is how positions rotate, which optional tensors a layer has
 * (q/k/v biases, q/k norms, experts, a shared expert — all found by name)
 * and whether the top-k router weights are renormalised by default. */
typedef struct arch_info {
    const char *name;
    rope_mode rope;
    bool expert_weights_norm; /* default when the file does not say */
} arch_info;

static const arch_info arch_table[] = {
    {"llama", ROPE_MODE_NORM, true}, /* Llama, Mistral; Mixtral when it has experts */
    {"qwen2", ROPE_MODE_NEOX, false},    {"qwen3", ROPE_MODE_NEOX, false},
    {"qwen2moe", ROPE_MODE_NEOX, false}, {"qwen3moe", ROPE_MODE_NEOX, true},
};

static const arch_info *arch_find(gguf_str name) {
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++) {
        if (gguf_str_eq(name, arch_table[i].name)) return &arch_table[i];
    }
    return NULL;
}

hearth_model_params hearth_model_default_params(void) {
    hearth_model_params p;
    memset(&p, 0, sizeof p);
    p.use_mmap = true;
    p.compute_type = HEARTH_COMPUTE_FILE;
    p.memory_budget = 0; /* HEARTH_DEFAULT_BUDGET_PERCENT of RAM */
    return p;
}

/* Reads "<arch>.<suffix>" as u32 into *out; required ones must be present. */
static hearth_status hp_u32(const gguf_file *f, const char *arch, const char *suffix, uint32_t *out,
                            bool required, hearth_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return required ? gguf_get_u32_req(f, key, out, err) : gguf_get_u32(f, key, out, err);
}

static hearth_status hp_f32(const gguf_file *f, const char *arch, const char *suffix, float *out,
                            hearth_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_get_f32(f, key, out, err);
}

static hearth_status read_hparams(const gguf_file *f, model_hparams *hp, hearth_error *err) {
    gguf_str arch;
    hearth_status st = gguf_get_str_req(f, "general.architecture", &arch, err);
    if (st != HEARTH_OK) return st;
    gguf_str_copy(arch, hp->arch, sizeof hp->arch);
    const arch_info *ai = arch_find(arch);
    if (!ai) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "unsupported architecture '%s' (hearth runs: llama, qwen2, qwen3, "
                         "qwen2moe, qwen3moe)",
                         hp->arch);
    }
    hp->rope = ai->rope;
    hp->expert_weights_norm = ai->expert_weights_norm;
    const char *a = hp->arch;
    hp->rope_base = 10000.0f;
    hp->norm_eps = 1e-5f;
    if ((st = hp_u32(f, a, "context_length", &hp->n_ctx_train, true, err)) ||
        (st = hp_u32(f, a, "embedding_length", &hp->n_embd, true, err)) ||
        (st = hp_u32(f, a, "block_count", &hp->n_layer, true, err)) ||
        (st = hp_u32(f, a, "feed_forward_length", &hp->n_ff, false, err)) ||
        (st = hp_u32(f, a, "attention.head_count", &hp->n_head, true, err)) ||
        (st = hp_u32(f, a, "expert_count", &hp->n_expert, false, err)) ||
        (st = hp_u32(f, a, "expert_used_count", &hp->n_expert_used, false, err)) ||
        (st = hp_u32(f, a, "expert_feed_forward_length", &hp->n_ff_exp, false, err)) ||
        (st = hp_u32(f, a, "expert_shared_feed_forward_length", &hp->n_ff_shexp, false, err))) {
        return st;
    }
    char key[96];
    snprintf(key, sizeof key, "%s.expert_weights_norm", a);
    if ((st = gguf_get_bool(f, key, &hp->expert_weights_norm, err))) return st;
    /* Mixtral-style files give the experts' size as the feed-forward length. */
    if (hp->n_expert > 0 && hp->n_ff_exp == 0) hp->n_ff_exp = hp->n_ff;
    hp->n_head_kv = hp->n_head;
    if ((st = hp_u32(f, a, "attention.head_count_kv", &hp->n_head_kv, false, err))) return st;
    if (hp->n_embd == 0 || hp->n_layer == 0 || hp->n_head == 0 || hp->n_head_kv == 0 ||
        hp->n_ctx_train == 0 || (hp->n_ff == 0 && hp->n_expert == 0)) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "hyper-parameters must be positive: embedding %u, layers %u, ffn %u, "
                         "heads %u, kv heads %u, context %u",
                         hp->n_embd, hp->n_layer, hp->n_ff, hp->n_head, hp->n_head_kv,
                         hp->n_ctx_train);
    }
    if (hp->n_expert > 0 && (hp->n_expert > 1024 || hp->n_expert_used == 0 ||
                             hp->n_expert_used > hp->n_expert || hp->n_ff_exp == 0)) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "%u experts with %u used per token and expert size %u: need 1..1024 "
                         "experts, 1..experts used and a positive size",
                         hp->n_expert, hp->n_expert_used, hp->n_ff_exp);
    }
    if (hp->n_layer > 4096 || hp->n_head > 4096 || hp->n_head % hp->n_head_kv != 0) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "%u layers, %u heads and %u kv heads: layers and heads must be at most "
                         "4096 and heads a multiple of kv heads",
                         hp->n_layer, hp->n_head, hp->n_head_kv);
    }
    hp->head_dim = hp->n_embd / hp->n_head;
    if ((st = hp_u32(f, a, "attention.key_length", &hp->head_dim, false, err))) return st;
    hp->head_dim_v = hp->head_dim;
    if ((st = hp_u32(f, a, "attention.value_length", &hp->head_dim_v, false, err))) return st;
    hp->n_rot = hp->head_dim;
    if ((st = hp_u32(f, a, "rope.dimension_count", &hp->n_rot, false, err)) ||
        (st = hp_f32(f, a, "rope.freq_base", &hp->rope_base, err)) ||
        (st = hp_f32(f, a, "attention.layer_norm_rms_epsilon", &hp->norm_eps, err))) {
        return st;
    }
    if (hp->head_dim == 0 || hp->head_dim > 1024 || hp->head_dim_v == 0 || hp->head_dim_v > 1024 ||
        hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "head size %u (value %u) with %u rotary dims: sizes must be 1..1024 and "
                         "rotary dims even and at most the head size",
                         hp->head_dim, hp->head_dim_v, hp->n_rot);
    }
    if (!(hp->rope_base > 0.0f) || !(hp->norm_eps > 0.0f) || !(hp->norm_eps < 1.0f)) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "rope base %g or norm epsilon %g is invalid",
                         (double)hp->rope_base, (double)hp->norm_eps);
    }
    return HEARTH_OK;
}

typedef enum bind_kind {
    BIND_VECTOR, /* (ne0) F32: norms and biases */
    BIND_MATRIX, /* (ne0, ne1) or stacked (ne0, ne1, ne2) of a type the kernels multiply */
} bind_kind;

/* Binds tensor name to w after checking its shape — (ne0) for a vector,
 * (ne0, ne1) or (ne0, ne1, ne2) with ne2 > 1 for a matrix — and type.  An
 * optional tensor that is absent leaves w zeroed and is not an error. */
static hearth_status bind(const gguf_file *f, const char *name, bind_kind kind, int64_t ne0,
                          int64_t ne1, int64_t ne2, bool optional, weight *w, uint64_t *bytes,
                          hearth_error *err) {
    memset(w, 0, sizeof *w);
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        if (optional) return HEARTH_OK;
        return error_set(err, HEARTH_ERR_BAD_MODEL, "tensor '%s' is missing", name);
    }
    if (kind == BIND_VECTOR) ne1 = ne2 = 1;
    if ((int64_t)t->ne[0] != ne0 || (int64_t)t->ne[1] != ne1 || (int64_t)t->ne[2] != ne2 ||
        t->ne[3] != 1) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%lld, %lld, "
                         "%lld]",
                         name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                         (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], (long long)ne0,
                         (long long)ne1, (long long)ne2);
    }
    w->data = t->data;
    w->type = t->type;
    w->ne0 = ne0;
    w->ne1 = ne1;
    w->ne2 = ne2;
    w->row_bytes = dtype_row_bytes(t->type, (uint64_t)ne0);
    w->kt = kernel_traits_get(t->type);
    if (kind == BIND_VECTOR && t->type != HEARTH_DTYPE_F32) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "tensor '%s' has type %s; norms and biases must be F32", name,
                         hearth_dtype_name(t->type));
    }
    if (kind == BIND_MATRIX && !w->kt) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "tensor '%s' has type %s, which hearth cannot multiply yet", name,
                         hearth_dtype_name(t->type));
    }
    *bytes += t->nbytes;
    return HEARTH_OK;
}

typedef struct bind_spec {
    const char *suffix; /* after "blk.N." */
    bind_kind kind;
    int64_t ne0, ne1, ne2;
    bool optional;
    weight *w;
} bind_spec;

static hearth_status bind_specs(const gguf_file *f, uint32_t il, const bind_spec *specs, size_t n,
                                uint64_t *bytes, hearth_error *err) {
    for (size_t i = 0; i < n; i++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%u.%s", il, specs[i].suffix);
        hearth_status st = bind(f, name, specs[i].kind, specs[i].ne0, specs[i].ne1, specs[i].ne2,
                                specs[i].optional, specs[i].w, bytes, err);
        if (st != HEARTH_OK) return st;
    }
    return HEARTH_OK;
}

/* A layer is a mixture-of-experts layer when it has a router. */
static bool layer_is_moe(const gguf_file *f, uint32_t il) {
    char name[96];
    snprintf(name, sizeof name, "blk.%u.ffn_gate_inp.weight", il);
    return gguf_find_tensor(f, name) != NULL;
}

static hearth_status bind_layer(const gguf_file *f, const model_hparams *hp, uint32_t il,
                                layer_weights *l, uint64_t *bytes, hearth_error *err) {
    int64_t e = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim;
    int64_t k = (int64_t)hp->n_head_kv * hp->head_dim, v = (int64_t)hp->n_head_kv * hp->head_dim_v;
    int64_t o = (int64_t)hp->n_head * hp->head_dim_v, hd = hp->head_dim;
    const bind_spec attn[] = {
        {"attn_norm.weight", BIND_VECTOR, e, 1, 1, false, &l->attn_norm},
        {"attn_q.weight", BIND_MATRIX, e, q, 1, false, &l->wq},
        {"attn_k.weight", BIND_MATRIX, e, k, 1, false, &l->wk},
        {"attn_v.weight", BIND_MATRIX, e, v, 1, false, &l->wv},
        {"attn_output.weight", BIND_MATRIX, o, e, 1, false, &l->wo},
        {"attn_q.bias", BIND_VECTOR, q, 1, 1, true, &l->bq},
        {"attn_k.bias", BIND_VECTOR, k, 1, 1, true, &l->bk},
        {"attn_v.bias", BIND_VECTOR, v, 1, 1, true, &l->bv},
        {"attn_q_norm.weight", BIND_VECTOR, hd, 1, 1, true, &l->q_norm},
        {"attn_k_norm.weight", BIND_VECTOR, hd, 1, 1, true, &l->k_norm},
        {"ffn_norm.weight", BIND_VECTOR, e, 1, 1, false, &l->ffn_norm},
    };
    hearth_status st = bind_specs(f, il, attn, sizeof attn / sizeof attn[0], bytes, err);
    if (st != HEARTH_OK) return st;
    if (!layer_is_moe(f, il)) {
        int64_t ff = hp->n_ff;
        if (ff == 0) {
            return error_set(err, HEARTH_ERR_BAD_MODEL,
                             "layer %u has no router but the model gives no feed_forward_length",
                             il);
        }
        const bind_spec dense[] = {
            {"ffn_gate.weight", BIND_MATRIX, e, ff, 1, false, &l->w_gate},
            {"ffn_up.weight", BIND_MATRIX, e, ff, 1, false, &l->w_up},
            {"ffn_down.weight", BIND_MATRIX, ff, e, 1, false, &l->w_down},
        };
        return bind_specs(f, il, dense, sizeof dense / sizeof dense[0], bytes, err);
    }
    if (hp->n_expert == 0) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "layer %u has a router but the model gives no expert_count", il);
    }
    int64_t ne = hp->n_expert, fe = hp->n_ff_exp, fs = hp->n_ff_shexp;
    const bind_spec moe[] = {
        {"ffn_gate_inp.weight", BIND_MATRIX, e, ne, 1, false, &l->gate_inp},
        {"ffn_gate_exps.weight", BIND_MATRIX, e, fe, ne, false, &l->gate_exps},
        {"ffn_up_exps.weight", BIND_MATRIX, e, fe, ne, false, &l->up_exps},
        {"ffn_down_exps.weight", BIND_MATRIX, fe, e, ne, false, &l->down_exps},
    };
    st = bind_specs(f, il, moe, sizeof moe / sizeof moe[0], bytes, err);
    if (st != HEARTH_OK || fs == 0) return st;
    const bind_spec shared[] = {
        {"ffn_gate_inp_shexp.weight", BIND_MATRIX, e, 1, 1, true, &l->gate_inp_shexp},
        {"ffn_gate_shexp.weight", BIND_MATRIX, e, fs, 1, false, &l->gate_shexp},
        {"ffn_up_shexp.weight", BIND_MATRIX, e, fs, 1, false, &l->up_shexp},
        {"ffn_down_shexp.weight", BIND_MATRIX, fs, e, 1, false, &l->down_shexp},
    };
    return bind_specs(f, il, shared, sizeof shared / sizeof shared[0], bytes, err);
}

/* The most common matrix type, by element count, for the description line. */
static const char *dominant_type(const hearth_model *m) {
    uint64_t by_type[HEARTH_DTYPE_COUNT] = {0};
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const layer_weights *l = &m->layers[il];
        const weight *ws[] = {&l->wq,   &l->wk,     &l->wv,        &l->wo,      &l->w_gate,
                              &l->w_up, &l->w_down, &l->gate_exps, &l->up_exps, &l->down_exps};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            if (!ws[i]->data) continue;
            by_type[ws[i]->type] +=
                (uint64_t)ws[i]->ne0 * (uint64_t)ws[i]->ne1 * (uint64_t)ws[i]->ne2;
        }
    }
    uint32_t best = 0;
    for (uint32_t t = 1; t < HEARTH_DTYPE_COUNT; t++) {
        if (by_type[t] > by_type[best]) best = t;
    }
    return hearth_dtype_name(best);
}

static hearth_status bind_model(hearth_model *m, hearth_error *err) {
    const gguf_file *f = m->file;
    model_hparams *hp = &m->hp;
    const gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
    if (!embd) return error_set(err, HEARTH_ERR_BAD_MODEL, "tensor 'token_embd.weight' is missing");
    if (embd->ne[1] == 0 || embd->ne[1] > INT32_MAX) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "token_embd.weight has %llu rows",
                         (unsigned long long)embd->ne[1]);
    }
    hp->n_vocab = (uint32_t)embd->ne[1];
    uint64_t bytes = 0;
    hearth_status st = bind(f, "token_embd.weight", BIND_MATRIX, hp->n_embd, hp->n_vocab, 1, false,
                            &m->token_embd, &bytes, err);
    if (st == HEARTH_OK) {
        st = bind(f, "output_norm.weight", BIND_VECTOR, hp->n_embd, 1, 1, false, &m->output_norm,
                  &bytes, err);
    }
    if (st != HEARTH_OK) return st;
    hp->tied_output = gguf_find_tensor(f, "output.weight") == NULL;
    if (hp->tied_output) {
        m->output = m->token_embd;
    } else {
        st = bind(f, "output.weight", BIND_MATRIX, hp->n_embd, hp->n_vocab, 1, false, &m->output,
                  &bytes, err);
        if (st != HEARTH_OK) return st;
    }
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for %u layers", hp->n_layer);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        st = bind_layer(f, hp, il, &m->layers[il], &bytes, err);
        if (st != HEARTH_OK) return st;
    }
    m->weight_bytes = bytes;
    return HEARTH_OK;
}

void model_describe(hearth_model *m) {
    const model_hparams *hp = &m->hp;
    char experts[64] = "";
    if (hp->n_expert > 0) {
        snprintf(experts, sizeof experts, ", %u experts (%u used, ffn %u)", hp->n_expert,
                 hp->n_expert_used, hp->n_ff_exp);
    }
    snprintf(m->desc, sizeof m->desc,
             "%s, %u layers, dim %u, %u/%u heads, ffn %u%s, vocab %u, %s, %.1f MiB", hp->arch,
             hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->n_ff, experts, hp->n_vocab,
             dominant_type(m), (double)m->weight_bytes / (1024.0 * 1024.0));
}

hearth_status model_bind(hearth_model *m, hearth_error *err) {
    free(m->layers);
    m->layers = NULL;
    memset(&m->hp, 0, sizeof m->hp);
    hearth_status st = read_hparams(m->file, &m->hp, err);
    return st == HEARTH_OK ? bind_model(m, err) : st;
}

hearth_status hearth_model_load(const char *path, const hearth_model_params *params,
                                hearth_model **out, hearth_error *err) {
    *out = NULL;
    hearth_model_params defaults = hearth_model_default_params();
    if (!params) params = &defaults;
    hearth_model *m = calloc(1, sizeof *m);
    if (!m) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    /* The plan is made on a mapping, where parsing the header reads none
     * of the weights: a model over its budget or beyond the memlock limit
     * is refused before its bytes are read. */
    hearth_status st = gguf_open(path, true, &m->file, err);
    if (st == HEARTH_OK) {
        st = model_bind(m, err);
        if (st == HEARTH_OK) st = model_memory_plan(m, params, err);
        if (st == HEARTH_OK) st = model_memory_check_load(m->mem, err);
        if (st == HEARTH_OK && !params->use_mmap) {
            gguf_close(m->file);
            m->file = NULL;
            st = gguf_open_progress(path, false, params->progress, params->progress_arg, &m->file,
                                    err);
            if (st == HEARTH_OK) st = model_bind(m, err);
        }
        if (st == HEARTH_OK) st = tokenizer_create(m->file, &m->tok, err);
        if (st == HEARTH_OK && hearth_tokenizer_n_vocab(m->tok) != (int32_t)m->hp.n_vocab) {
            st = error_set(err, HEARTH_ERR_BAD_MODEL,
                           "the tokenizer has %d tokens but token_embd.weight has %u rows",
                           hearth_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
        }
        if (st == HEARTH_OK) st = model_memory_apply(m, params, err);
        if (st == HEARTH_OK) st = device_model_init(m, params, err);
        if (st == HEARTH_OK) m->n_repacked = model_repack(m, params);
        if (st == HEARTH_OK) model_describe(m);
        /* gguf_open_progress names the file itself. */
        if (st != HEARTH_OK && m->file) error_prefix(err, st, "%s", path);
    }
    if (st != HEARTH_OK) {
        hearth_model_free(m);
        return st;
    }
    *out = m;
    return HEARTH_OK;
}

void hearth_model_free(hearth_model *m) {
    if (!m) return;
    device_model_free(m);
    hearth_tokenizer_free(m->tok);
    free(m->layers);
    model_memory_free(m->mem);
    gguf_close(m->file);
    free(m);
}

const hearth_tokenizer *hearth_model_tokenizer(const hearth_model *m) {
    return m->tok;
}
int32_t hearth_model_n_vocab(const hearth_model *m) {
    return (int32_t)m->hp.n_vocab;
}
uint32_t hearth_model_n_ctx_train(const hearth_model *m) {
    return m->hp.n_ctx_train;
}
const char *hearth_model_device(const hearth_model *m) {
    return device_model_name(m);
}
const char *hearth_model_desc(const hearth_model *m) {
    return m->desc;
}
