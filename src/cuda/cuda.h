/* cuda.h — the CUDA backend's interface to the rest of hearth (private).
 *
 * Plain C, compiled by both the C side (src/model/device.c, which turns a
 * hearth_model into the description below) and nvcc (the .cu files of src/cuda).  The
 * backend uploads every weight once, keeps the KV cache in device memory
 * and runs the whole forward pass on the GPU; only the logits come back.
 *
 * Without `make CUDA=1` none of this is compiled and device.c reports that
 * the build has no CUDA.
 */
#ifndef HEARTH_CUDA_H
#define HEARTH_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "hearth.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A weight as the loader bound it: ne1 rows of ne0 elements, ne2 such
 * matrices (experts) back to back; data NULL when the model lacks it. */
typedef struct cuda_tensor {
    const void *data;
    uint32_t type; /* hearth_dtype */
    int64_t ne0, ne1, ne2;
    uint64_t row_bytes;
} cuda_tensor;

typedef struct cuda_layer {
    cuda_tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm, ffn_norm;
    cuda_tensor w_gate, w_up, w_down;
    cuda_tensor gate_inp, gate_exps, up_exps, down_exps;
    cuda_tensor gate_inp_shexp, gate_shexp, up_shexp, down_shexp;
} cuda_layer;

typedef struct cuda_hparams {
    uint32_t n_vocab, n_embd, n_layer, n_ff, n_head, n_head_kv, head_dim, head_dim_v, n_rot;
    float rope_base, norm_eps;
    int rope_neox; /* 0: rotate adjacent pairs; 1: rotate halves */
    uint32_t n_expert, n_expert_used, n_ff_exp, n_ff_shexp;
    int expert_weights_norm;
} cuda_hparams;

/* Converts n elements of one row of a type the GPU kernels do not read
 * natively (K-quants, Q5_x) to floats; the upload stores such weights as
 * F16. */
typedef void (*cuda_dequant_fn)(uint32_t type, const void *row, float *out, int64_t n);

typedef struct cuda_model_desc {
    cuda_hparams hp;
    cuda_tensor token_embd, output_norm, output;
    const cuda_layer *layers; /* (n_layer) */
    cuda_dequant_fn dequant;
} cuda_model_desc;

typedef struct cuda_model cuda_model;
typedef struct cuda_ctx cuda_ctx;

/* Number of CUDA devices (0 when none or the driver is missing). */
int cuda_device_count(void);
/* One line naming device 0, its memory and compute capability. */
void cuda_device_name(char *buf, size_t cap);

/* Uploads every weight of d to device 0; *bytes gets the device memory the
 * weights take.  HEARTH_ERR_NOMEM when they do not fit. */
hearth_status cuda_model_upload(const cuda_model_desc *d, cuda_model **out, uint64_t *bytes,
                                char *err, size_t cap);
void cuda_model_free(cuda_model *m);

/* A KV cache of n_seq x n_ctx positions (f16 or f32 elements) and scratch
 * for batches of up to n_batch tokens, n_outputs of them with logits. */
hearth_status cuda_ctx_create(const cuda_model *m, uint32_t n_ctx, uint32_t n_seq, uint32_t n_batch,
                              uint32_t n_outputs, int kv_f32, cuda_ctx **out, char *err,
                              size_t cap);
void cuda_ctx_free(cuda_ctx *c);

/* Runs the forward pass of n tokens (already validated); out_rows[t] is
 * the row of logits token t fills, or -1; logits gets n_out rows. */
hearth_status cuda_forward(cuda_ctx *c, uint32_t n, const int32_t *tokens, const int32_t *pos,
                           const int32_t *seq, const int32_t *out_rows, uint32_t n_out,
                           float *logits, char *err, size_t cap);

/* Copies the first n_pos positions of sequence src to dst in every layer. */
hearth_status cuda_kv_copy(cuda_ctx *c, int32_t dst, int32_t src, int32_t n_pos, char *err,
                           size_t cap);

/* Device-to-device copy bandwidth of device 0 (bytes read + written per
 * second, best of five 1 GiB copies); 0 on failure. */
double cuda_copy_bandwidth(void);

#ifdef __cplusplus
}
#endif

#endif
