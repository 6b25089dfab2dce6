/* device.h — where a model runs: the CPU engine or the CUDA backend
 * (private).
 *
 * A model is placed on a device when it is loaded (hearth_model_params
 * .device): with CUDA its weights are uploaded once and every context made
 * from it keeps its KV cache and scratch on the GPU; hearth_decode then
 * runs the CUDA forward pass instead of model_forward.  A build without
 * CUDA (the default) runs everything on the CPU and refuses
 * HEARTH_DEVICE_CUDA with a clear error.
 */
#ifndef HEARTH_MODEL_DEVICE_H
#define HEARTH_MODEL_DEVICE_H

#include <stdbool.h>

#include "model/model.h"

/* True when this build has CUDA and a CUDA device is present; otherwise
 * false with the reason in why. */
bool device_cuda_available(char *why, size_t cap);

/* Resolves p->device (AUTO: CUDA when available) and, for CUDA, uploads
 * the weights of m. */
hearth_status device_model_init(hearth_model *m, const hearth_model_params *p, hearth_error *err);
void device_model_free(hearth_model *m);

/* Creates the device side of a context (KV cache and scratch on the GPU)
 * when its model runs on one; nothing otherwise. */
hearth_status device_context_init(hearth_context *ctx, hearth_error *err);
void device_context_free(hearth_context *ctx);

/* The forward pass of a validated batch on the context's device: fills
 * ctx->s.logits for the rows ctx->s.out_rows marks (n_out of them). */
hearth_status device_forward(hearth_context *ctx, const hearth_batch *b, uint32_t n_out,
                             hearth_error *err);
/* Copies positions of the device KV cache, as hearth_kv_copy does on the CPU. */
hearth_status device_kv_copy(hearth_context *ctx, int32_t dst, int32_t src, int32_t n_pos,
                             hearth_error *err);

/* A line naming the device a model runs on ("cpu" or the GPU). */
const char *device_model_name(const hearth_model *m);
/* Device memory bandwidth (bytes/s, copy read + write) of the model's GPU;
 * 0 for the CPU. */
double device_bandwidth(const hearth_model *m);

#endif
