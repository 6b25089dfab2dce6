/* loader.c — turning a GGUF file into a hearth_model.
 *
 * Reads the hyper-parameters of the architecture named by
 * general.architecture, binds every weight by its llama.cpp tensor name and
 * checks its type and shape against the hyper-parameters, so the forward
 * pass never meets a tensor of the wrong size.  Everything that can be wrong
 * with a file is reported here, naming the tensor or key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/dtype.h"
#include "util/error.h"

/* Architectures the forward pass runs, and how each rotates positions. */
typedef struct arch_info {
    const char *name;
    rope_mode rope;
} arch_info;

static const arch_info arch_table[] = {
    {"llama", ROPE_MODE_NORM},
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
                         "unsupported architecture '%s' (hearth runs: llama)", hp->arch);
    }
    hp->rope = ai->rope;
    const char *a = hp->arch;
    hp->rope_base = 10000.0f;
    hp->norm_eps = 1e-5f;
    if ((st = hp_u32(f, a, "context_length", &hp->n_ctx_train, true, err)) ||
        (st = hp_u32(f, a, "embedding_length", &hp->n_embd, true, err)) ||
        (st = hp_u32(f, a, "block_count", &hp->n_layer, true, err)) ||
        (st = hp_u32(f, a, "feed_forward_length", &hp->n_ff, true, err)) ||
        (st = hp_u32(f, a, "attention.head_count", &hp->n_head, true, err))) {
        return st;
    }
    hp->n_head_kv = hp->n_head;
    if ((st = hp_u32(f, a, "attention.head_count_kv", &hp->n_head_kv, false, err))) return st;
    if (hp->n_embd == 0 || hp->n_layer == 0 || hp->n_ff == 0 || hp->n_head == 0 ||
        hp->n_head_kv == 0 || hp->n_ctx_train == 0) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "hyper-parameters must be positive: embedding %u, layers %u, ffn %u, "
                         "heads %u, kv heads %u, context %u",
                         hp->n_embd, hp->n_layer, hp->n_ff, hp->n_head, hp->n_head_kv,
                         hp->n_ctx_train);
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

/* Binds tensor name to w, checking it is (ne0, ne1) — ne1 = 0 for a vector —
 * and of a type the kernels multiply (vectors must be F32). */
static hearth_status bind(const gguf_file *f, const char *name, int64_t ne0, int64_t ne1, weight *w,
                          uint64_t *bytes, hearth_error *err) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) return error_set(err, HEARTH_ERR_BAD_MODEL, "tensor '%s' is missing", name);
    int64_t want1 = ne1 ? ne1 : 1;
    uint32_t want_dims = ne1 ? 2 : 1;
    if ((int64_t)t->ne[0] != ne0 || (int64_t)t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1 ||
        (t->n_dims != want_dims && !(t->n_dims == 2 && ne1 == 0))) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%lld, %lld]",
                         name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                         (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], (long long)ne0,
                         (long long)want1);
    }
    w->data = t->data;
    w->type = t->type;
    w->ne0 = ne0;
    w->ne1 = want1;
    w->row_bytes = dtype_row_bytes(t->type, (uint64_t)ne0);
    w->kt = kernel_traits_get(t->type);
    if (ne1 == 0 && t->type != HEARTH_DTYPE_F32) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "tensor '%s' has type %s; norms must be F32",
                         name, hearth_dtype_name(t->type));
    }
    if (ne1 != 0 && !w->kt) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "tensor '%s' has type %s, which hearth cannot multiply yet", name,
                         hearth_dtype_name(t->type));
    }
    *bytes += t->nbytes;
    return HEARTH_OK;
}

static hearth_status bind_layer(const gguf_file *f, const model_hparams *hp, uint32_t il,
                                layer_weights *l, uint64_t *bytes, hearth_error *err) {
    int64_t e = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim;
    int64_t k = (int64_t)hp->n_head_kv * hp->head_dim, v = (int64_t)hp->n_head_kv * hp->head_dim_v;
    int64_t o = (int64_t)hp->n_head * hp->head_dim_v, ff = hp->n_ff;
    struct {
        const char *suffix;
        int64_t ne0, ne1;
        weight *w;
    } specs[] = {
        {"attn_norm", e, 0, &l->attn_norm}, {"attn_q", e, q, &l->wq},
        {"attn_k", e, k, &l->wk},           {"attn_v", e, v, &l->wv},
        {"attn_output", o, e, &l->wo},      {"ffn_norm", e, 0, &l->ffn_norm},
        {"ffn_gate", e, ff, &l->w_gate},    {"ffn_up", e, ff, &l->w_up},
        {"ffn_down", ff, e, &l->w_down},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%u.%s.weight", il, specs[i].suffix);
        hearth_status st = bind(f, name, specs[i].ne0, specs[i].ne1, specs[i].w, bytes, err);
        if (st != HEARTH_OK) return st;
    }
    return HEARTH_OK;
}

/* The most common matrix type, by element count, for the description line. */
static const char *dominant_type(const hearth_model *m) {
    uint64_t by_type[HEARTH_DTYPE_COUNT] = {0};
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const layer_weights *l = &m->layers[il];
        const weight *ws[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            by_type[ws[i]->type] += (uint64_t)ws[i]->ne0 * (uint64_t)ws[i]->ne1;
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
    hearth_status st =
        bind(f, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->token_embd, &bytes, err);
    if (st == HEARTH_OK)
        st = bind(f, "output_norm.weight", hp->n_embd, 0, &m->output_norm, &bytes, err);
    if (st != HEARTH_OK) return st;
    hp->tied_output = gguf_find_tensor(f, "output.weight") == NULL;
    if (hp->tied_output) {
        m->output = m->token_embd;
    } else {
        st = bind(f, "output.weight", hp->n_embd, hp->n_vocab, &m->output, &bytes, err);
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
    snprintf(m->desc, sizeof m->desc,
             "%s, %u layers, dim %u, %u/%u heads, ffn %u, vocab %u, %s, %.1f MiB", hp->arch,
             hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->n_ff, hp->n_vocab,
             dominant_type(m), (double)bytes / (1024.0 * 1024.0));
    return HEARTH_OK;
}

hearth_status hearth_model_load(const char *path, const hearth_model_params *params,
                                hearth_model **out, hearth_error *err) {
    *out = NULL;
    hearth_model_params defaults = hearth_model_default_params();
    if (!params) params = &defaults;
    hearth_model *m = calloc(1, sizeof *m);
    if (!m) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    hearth_status st = gguf_open(path, params->use_mmap, &m->file, err);
    if (st == HEARTH_OK) {
        st = read_hparams(m->file, &m->hp, err);
        if (st == HEARTH_OK) st = bind_model(m, err);
        if (st == HEARTH_OK) st = tokenizer_create(m->file, &m->tok, err);
        if (st == HEARTH_OK && hearth_tokenizer_n_vocab(m->tok) != (int32_t)m->hp.n_vocab) {
            st = error_set(err, HEARTH_ERR_BAD_MODEL,
                           "the tokenizer has %d tokens but token_embd.weight has %u rows",
                           hearth_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
        }
        if (st != HEARTH_OK) error_prefix(err, st, "%s", path);
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
    hearth_tokenizer_free(m->tok);
    free(m->layers);
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
const char *hearth_model_desc(const hearth_model *m) {
    return m->desc;
}
