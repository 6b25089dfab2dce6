/* device.c — placing a model on the CPU or the CUDA backend.
 *
 * The CUDA backend (src/cuda/) sees the model through plain descriptions
 * (cuda.h): this file fills them from the bound weights and turns the
 * backend's codes and messages into hearth errors.  Without HEARTH_CUDA
 * (a build without `make CUDA=1`) only the CPU is available.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/device.h"
#include "util/error.h"

#ifdef HEARTH_CUDA
#include "cuda/cuda.h"
#endif

bool device_cuda_available(char *why, size_t cap) {
#ifdef HEARTH_CUDA
    if (cuda_device_count() > 0) return true;
    snprintf(why, cap, "no CUDA device found");
    return false;
#else
    snprintf(why, cap, "this build has no CUDA (build with make CUDA=1)");
    return false;
#endif
}

const char *device_model_name(const hearth_model *m) {
    return m->gpu ? m->device_name : "cpu";
}

#ifdef HEARTH_CUDA
static cuda_tensor tensor_desc(const weight *w) {
    cuda_tensor t = {w->data, w->type, w->ne0, w->ne1, w->ne2, w->row_bytes};
    return t;
}

static void dequant_row(uint32_t type, const void *row, float *out, int64_t n) {
    kernel_traits_ref(type)->dequantize(row, out, n);
}

/* Whether the backend can take a weight of this type: natively, or
 * converted to F16 through the reference dequantizer. */
static bool cuda_type_ok(const weight *w) {
    if (!w->data) return true;
    switch (w->type) {
    case HEARTH_DTYPE_F32:
    case HEARTH_DTYPE_F16:
    case HEARTH_DTYPE_BF16:
    case HEARTH_DTYPE_Q4_0:
    case HEARTH_DTYPE_Q8_0: return true;
    default: {
        const kernel_traits *kt = kernel_traits_ref(w->type);
        return kt && kt->dequantize;
    }
    }
}
#endif

hearth_status device_model_init(hearth_model *m, const hearth_model_params *p, hearth_error *err) {
    char why[160];
    hearth_device dev = p->device;
    if (dev == HEARTH_DEVICE_CPU) return HEARTH_OK;
    if (dev == HEARTH_DEVICE_AUTO) {
        if (!device_cuda_available(why, sizeof why)) return HEARTH_OK;
        dev = HEARTH_DEVICE_CUDA;
    }
    if (dev != HEARTH_DEVICE_CUDA) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "unknown device %d", (int)p->device);
    }
    if (!device_cuda_available(why, sizeof why)) {
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "cannot run on CUDA: %s", why);
    }
#ifdef HEARTH_CUDA
    const model_hparams *hp = &m->hp;
    cuda_layer *layers = calloc(hp->n_layer ? hp->n_layer : 1, sizeof *layers);
    if (!layers) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const layer_weights *l = &m->layers[il];
        cuda_layer *c = &layers[il];
#define D(n)                                                                                       \
    do {                                                                                           \
        c->n = tensor_desc(&l->n);                                                                 \
        if (!cuda_type_ok(&l->n)) {                                                                \
            free(layers);                                                                          \
            return error_set(err, HEARTH_ERR_UNSUPPORTED, "CUDA: layer %u " #n " has type %s", il, \
                             hearth_dtype_name(l->n.type));                                        \
        }                                                                                          \
    } while (0)
        D(attn_norm);
        D(wq);
        D(wk);
        D(wv);
        D(wo);
        D(bq);
        D(bk);
        D(bv);
        D(q_norm);
        D(k_norm);
        D(ffn_norm);
        D(w_gate);
        D(w_up);
        D(w_down);
        D(gate_inp);
        D(gate_exps);
        D(up_exps);
        D(down_exps);
        D(gate_inp_shexp);
        D(gate_shexp);
        D(up_shexp);
        D(down_shexp);
#undef D
    }
    if (!cuda_type_ok(&m->token_embd) || !cuda_type_ok(&m->output)) {
        free(layers);
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "CUDA: no kernel for the embedding type %s",
                         hearth_dtype_name(m->token_embd.type));
    }
    cuda_model_desc d;
    memset(&d, 0, sizeof d);
    d.hp = (cuda_hparams){hp->n_vocab,
                          hp->n_embd,
                          hp->n_layer,
                          hp->n_ff,
                          hp->n_head,
                          hp->n_head_kv,
                          hp->head_dim,
                          hp->head_dim_v,
                          hp->n_rot,
                          hp->rope_base,
                          hp->norm_eps,
                          hp->rope == ROPE_MODE_NEOX,
                          hp->n_expert,
                          hp->n_expert_used,
                          hp->n_ff_exp,
                          hp->n_ff_shexp,
                          hp->expert_weights_norm};
    d.token_embd = tensor_desc(&m->token_embd);
    d.output_norm = tensor_desc(&m->output_norm);
    d.output = tensor_desc(&m->output);
    d.layers = layers;
    d.dequant = dequant_row;
    char msg[400];
    cuda_model *cm = NULL;
    uint64_t bytes = 0;
    hearth_status st = cuda_model_upload(&d, &cm, &bytes, msg, sizeof msg);
    free(layers);
    if (st != HEARTH_OK) return error_set(err, st, "CUDA: %s", msg);
    m->gpu = cm;
    m->gpu_bytes = bytes;
    char name[200];
    cuda_device_name(name, sizeof name);
    snprintf(m->device_name, sizeof m->device_name, "cuda: %s", name);
    return HEARTH_OK;
#else
    (void)m;
    return HEARTH_OK;
#endif
}

void device_model_free(hearth_model *m) {
#ifdef HEARTH_CUDA
    cuda_model_free(m->gpu);
#endif
    m->gpu = NULL;
}

hearth_status device_context_init(hearth_context *ctx, hearth_error *err) {
    if (!ctx->model->gpu) return HEARTH_OK;
#ifdef HEARTH_CUDA
    char msg[400];
    const hearth_context_params *p = &ctx->params;
    cuda_ctx *c = NULL;
    hearth_status st =
        cuda_ctx_create(ctx->model->gpu, p->n_ctx, p->n_seq, p->n_batch, ctx->n_outputs_max,
                        p->kv_type == HEARTH_KV_F32, &c, msg, sizeof msg);
    if (st != HEARTH_OK) return error_set(err, st, "CUDA context: %s", msg);
    ctx->gpu = c;
    return HEARTH_OK;
#else
    (void)err;
    return HEARTH_OK;
#endif
}

void device_context_free(hearth_context *ctx) {
#ifdef HEARTH_CUDA
    cuda_ctx_free(ctx->gpu);
#endif
    ctx->gpu = NULL;
}

hearth_status device_forward(hearth_context *ctx, const hearth_batch *b, uint32_t n_out,
                             hearth_error *err) {
#ifdef HEARTH_CUDA
    char msg[400];
    hearth_status st = cuda_forward(ctx->gpu, b->n, b->tokens, b->pos, b->seq, ctx->s.out_rows,
                                    n_out, ctx->s.logits, msg, sizeof msg);
    return st == HEARTH_OK ? HEARTH_OK : error_set(err, st, "CUDA: %s", msg);
#else
    (void)b;
    (void)n_out;
    (void)ctx;
    return error_set(err, HEARTH_ERR_INTERNAL, "no CUDA in this build");
#endif
}

hearth_status device_kv_copy(hearth_context *ctx, int32_t dst, int32_t src, int32_t n_pos,
                             hearth_error *err) {
    if (!ctx->gpu) return HEARTH_OK;
#ifdef HEARTH_CUDA
    char msg[400];
    hearth_status st = cuda_kv_copy(ctx->gpu, dst, src, n_pos, msg, sizeof msg);
    return st == HEARTH_OK ? HEARTH_OK : error_set(err, st, "CUDA: %s", msg);
#else
    (void)dst;
    (void)src;
    (void)n_pos;
    (void)err;
    return HEARTH_OK;
#endif
}

double device_bandwidth(const hearth_model *m) {
#ifdef HEARTH_CUDA
    return m->gpu ? cuda_copy_bandwidth() : 0.0;
#else
    (void)m;
    return 0.0;
#endif
}
