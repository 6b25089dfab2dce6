/* quantize.h — float GGUF models to quantized ones (private).
 *
 * A scheme names the type most weight matrices get and, for llama.cpp's
 * mixes, the rules that give some tensors more bits (output.weight,
 * attn_v and ffn_down in some layers, the attention of 8-expert models).
 * quantize_plan decides each tensor's type exactly as llama-quantize does
 * for the same scheme (without an importance matrix), so the files match
 * tensor for tensor; quantize_file then writes the model tensor by tensor,
 * every row quantized with the reference quantizers on a thread pool.
 */
#ifndef HEARTH_CONVERT_QUANTIZE_H
#define HEARTH_CONVERT_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "hearth.h"

typedef struct quant_scheme {
    const char *name;   /* as typed on the command line, e.g. "Q4_K_M" */
    uint32_t base_type; /* hearth_dtype of most matrices */
    uint32_t file_type; /* general.file_type, in llama.cpp's numbering (llama_ftype) */
    bool mixed;         /* llama.cpp's per-tensor rules; false: every matrix gets base_type */
    const char *about;  /* one line for the help */
} quant_scheme;

/* The scheme called name (case-insensitive), or NULL. */
const quant_scheme *quant_scheme_find(const char *name);
/* All schemes, in the order the help lists them. */
const quant_scheme *quant_scheme_list(size_t *n);

/* Called with one line of text, e.g. a tensor kept at a fallback type. */
typedef void (*quantize_message_fn)(const char *msg, void *arg);

/* What a tensor becomes. */
typedef struct quant_tensor_plan {
    uint32_t type;   /* output hearth_dtype */
    uint32_t wanted; /* the type the rules chose, before any fallback */
    bool convert;    /* true: rows are converted or quantized; false: bytes copied */
    bool fallback;   /* wanted did not fit the row length */
} quant_tensor_plan;

/* Decides plan[i] for each of f's n_tensors tensors under scheme s.  1-D
 * tensors, norms and routers keep their type; matrices must then be F32,
 * F16 or BF16 unless they already have their target type (else
 * HEARTH_ERR_UNSUPPORTED).  Tensors whose rows are not whole blocks of
 * their type fall back as llama.cpp does (Q4_K -> Q5_0, Q5_K -> Q5_1,
 * Q6_K -> Q8_0, then F16; Q4_0 and Q8_0 -> F16), each with a message
 * (sent only when the whole plan succeeds). */
hearth_status quantize_plan(const gguf_file *f, const quant_scheme *s, quant_tensor_plan *plan,
                            quantize_message_fn message, void *message_arg, hearth_error *err);

typedef struct quantize_params {
    const quant_scheme *scheme;
    int n_threads; /* 0: one per CPU */
    /* Called before each tensor is written (i of n, by name) and once at
     * the end with i == n and name NULL; may be NULL. */
    void (*progress)(uint64_t i, uint64_t n, const char *name, void *arg);
    quantize_message_fn message; /* fallbacks; may be NULL */
    void *arg;                   /* for progress and message */
} quantize_params;

typedef struct quantize_report {
    uint64_t n_tensors;
    uint64_t n_converted;                   /* tensors quantized or converted */
    uint64_t n_fallback;                    /* of those, kept at a fallback type */
    uint64_t bytes_in;                      /* tensor data read */
    uint64_t bytes_out;                     /* tensor data written */
    uint64_t n_by_type[HEARTH_DTYPE_COUNT]; /* output tensors of each type */
} quantize_report;

/* Reads the GGUF model at in_path and writes it to out_path with its
 * matrices quantized under p->scheme: all metadata copied except
 * general.file_type (set to the scheme's) and general.quantization_version
 * (set to 2), tensors in the input's order.  Memory use is one output
 * tensor plus a row per thread.  report may be NULL. */
hearth_status quantize_file(const char *in_path, const char *out_path, const quantize_params *p,
                            quantize_report *report, hearth_error *err);

#endif
