/* synth.h — random-weight GGUF models of real shapes (private). */
#ifndef HEARTH_CONVERT_SYNTH_H
#define HEARTH_CONVERT_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "hearth.h"

typedef struct synth_params {
    const char *arch; /* "llama", "qwen3", "qwen3moe" */
    uint32_t n_layer;
    uint32_t n_embd;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t head_dim;
    uint32_t n_ff;     /* dense feed-forward size */
    uint32_t n_expert; /* 0: dense */
    uint32_t n_expert_used;
    uint32_t n_ff_exp;
    uint32_t n_vocab;
    uint32_t n_ctx;
    float rope_base;
    bool qk_norm;  /* qwen3-style per-head q/k norms */
    uint32_t type; /* hearth_dtype of the matrices */
} synth_params;

/* Fills *out with a named preset (type left as 0 = F32). */
hearth_status synth_preset(const char *name, synth_params *out, hearth_error *err);
/* Writes the model to path. */
hearth_status synth_write(const synth_params *s, const char *path,
                          void (*progress)(double done, void *arg), void *arg, hearth_error *err);

#endif
