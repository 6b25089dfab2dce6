/* stats.c — figures about a loaded model for benchmarks and reports. */
#include "model/model.h"

static uint64_t matrix_bytes(const weight *w) {
    return w->data ? w->row_bytes * (uint64_t)w->ne1 * (uint64_t)w->ne2 : 0;
}

static uint64_t vector_bytes(const weight *w) {
    return w->data ? (uint64_t)w->ne0 * 4 : 0;
}

uint64_t hearth_model_bytes_per_token(const hearth_model *m) {
    const model_hparams *hp = &m->hp;
    uint64_t total =
        m->token_embd.row_bytes + vector_bytes(&m->output_norm) + matrix_bytes(&m->output);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const layer_weights *l = &m->layers[il];
        const weight *always[] = {&l->wq,         &l->wk,       &l->wv,
                                  &l->wo,         &l->w_gate,   &l->w_up,
                                  &l->w_down,     &l->gate_inp, &l->gate_inp_shexp,
                                  &l->gate_shexp, &l->up_shexp, &l->down_shexp};
        for (size_t i = 0; i < sizeof always / sizeof always[0]; i++)
            total += matrix_bytes(always[i]);
        const weight *vecs[] = {&l->attn_norm, &l->ffn_norm, &l->bq,    &l->bk,
                                &l->bv,        &l->q_norm,   &l->k_norm};
        for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) total += vector_bytes(vecs[i]);
        if (l->gate_exps.data && hp->n_expert > 0) {
            /* Only the routed experts' matrices are read. */
            uint64_t one = (matrix_bytes(&l->gate_exps) + matrix_bytes(&l->up_exps) +
                            matrix_bytes(&l->down_exps)) /
                           hp->n_expert;
            total += one * hp->n_expert_used;
        }
    }
    return total;
}
