/* model.h — hyper-parameters, weights and the forward pass (private).
 *
 * A hearth_model is what loading a GGUF file produces: the hyper-parameters
 * read from metadata, a view of every weight tensor (pointing into the
 * mapped file, or into copies cast to the compute type) whose shape has
 * been checked against them, the tokenizer, and its memory plan.  It is immutable after loading, so
 * any number of contexts may share it.  A hearth_context (context.c) adds the KV cache, scratch
 * buffers and threads, and runs model_forward over a batch.
 */
#ifndef HEARTH_MODEL_H
#define HEARTH_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "hearth.h"
#include "kernels/kernels.h"
#include "util/threadpool.h"

typedef enum rope_mode {
    ROPE_MODE_NORM = 0, /* rotate adjacent pairs (x[2i], x[2i+1]): llama, mistral */
    ROPE_MODE_NEOX = 1, /* rotate halves (x[i], x[i + n_rot/2]): qwen, neox */
} rope_mode;

typedef struct model_hparams {
    char arch[32]; /* general.architecture */
    uint32_t n_vocab;
    uint32_t n_ctx_train; /* context length the model was trained for */
    uint32_t n_embd;      /* model width (dim) */
    uint32_t n_layer;
    uint32_t n_ff; /* feed-forward hidden size */
    uint32_t n_head;
    uint32_t n_head_kv;  /* < n_head for grouped-query attention */
    uint32_t head_dim;   /* per-head size of q and k (key_length) */
    uint32_t head_dim_v; /* per-head size of v (value_length) */
    uint32_t n_rot;      /* leading dims of each head that RoPE rotates */
    float rope_base;     /* theta base */
    float norm_eps;      /* RMSNorm epsilon */
    rope_mode rope;
    bool tied_output; /* output projection is token_embd */
    /* mixture of experts (0 experts: dense) */
    uint32_t n_expert;        /* experts per MoE layer */
    uint32_t n_expert_used;   /* experts each token is routed to (top-k) */
    uint32_t n_ff_exp;        /* hidden size of one expert */
    uint32_t n_ff_shexp;      /* hidden size of the shared expert (0: none) */
    bool expert_weights_norm; /* renormalise the top-k router weights to sum to 1 */
} model_hparams;

/* A weight tensor viewed as a matrix of rows (ne1 rows of ne0 elements),
 * for 1-D tensors one row, and for stacked experts ne2 matrices back to
 * back.  data is NULL for an optional tensor the file does not have. */
typedef struct weight {
    const void *data; /* into the mapped file, or a copy cast to the compute type */
    uint32_t type;    /* hearth_dtype */
    int64_t ne0;      /* elements per row (input width) */
    int64_t ne1;      /* rows (output width) */
    int64_t ne2;      /* matrices (experts); 1 otherwise */
    uint64_t row_bytes;
    const kernel_traits *kt; /* kernels for this type (NULL for F32 vectors) */
} weight;

/* Matrix e of a stack of experts, as a plain 2-D weight. */
static inline weight weight_expert(const weight *w, int64_t e) {
    weight v = *w;
    v.data = (const uint8_t *)w->data + (uint64_t)e * (uint64_t)w->ne1 * w->row_bytes;
    v.ne2 = 1;
    return v;
}

typedef struct layer_weights {
    weight attn_norm; /* (n_embd) F32 */
    weight wq;        /* (n_head * head_dim rows, n_embd cols) */
    weight wk;        /* (n_head_kv * head_dim rows, n_embd cols) */
    weight wv;        /* (n_head_kv * head_dim_v rows, n_embd cols) */
    weight wo;        /* (n_embd rows, n_head * head_dim_v cols) */
    weight bq;        /* (n_head * head_dim) F32 bias, optional (qwen2) */
    weight bk;        /* (n_head_kv * head_dim) F32 bias, optional */
    weight bv;        /* (n_head_kv * head_dim_v) F32 bias, optional */
    weight q_norm;    /* (head_dim) F32 per-head RMSNorm of q, optional (qwen3) */
    weight k_norm;    /* (head_dim) F32 per-head RMSNorm of k, optional */
    weight ffn_norm;  /* (n_embd) F32 */
    /* dense feed-forward (absent in MoE layers) */
    weight w_gate; /* (n_ff rows, n_embd cols) */
    weight w_up;   /* (n_ff rows, n_embd cols) */
    weight w_down; /* (n_embd rows, n_ff cols) */
    /* mixture of experts (absent in dense layers) */
    weight gate_inp;       /* (n_expert rows, n_embd cols) router */
    weight gate_exps;      /* (n_expert x (n_ff_exp rows, n_embd cols)) */
    weight up_exps;        /* (n_expert x (n_ff_exp rows, n_embd cols)) */
    weight down_exps;      /* (n_expert x (n_embd rows, n_ff_exp cols)) */
    weight gate_inp_shexp; /* (1 row, n_embd cols) shared-expert gate, optional */
    weight gate_shexp;     /* (n_ff_shexp rows, n_embd cols), optional */
    weight up_shexp;       /* (n_ff_shexp rows, n_embd cols), optional */
    weight down_shexp;     /* (n_embd rows, n_ff_shexp cols), optional */
} layer_weights;

/* ---------------------------------------------------------------- memory */

/* A stretch of memory the model holds for the forward pass. */
typedef struct mem_range {
    uint8_t *ptr;
    uint64_t bytes;
} mem_range;

/* What a model holds and what its contexts have reserved against the
 * budget (memory.c).  Contexts share the model, so the counters are atomic. */
typedef struct model_memory {
    bool mmap, mlock, prefault;
    uint64_t budget;            /* bytes; HEARTH_BUDGET_UNLIMITED for none */
    bool budget_default;        /* HEARTH_DEFAULT_BUDGET_PERCENT of ram */
    uint64_t ram;               /* MemTotal (0 unknown) */
    hearth_dtype compute_dtype; /* HEARTH_DTYPE_COUNT: weights run as stored */
    const char *compute_why;
    uint64_t file_bytes;     /* the file's memory: mapping or read copy */
    uint64_t weight_bytes;   /* tensor bytes the model binds, as stored in the file */
    uint64_t cast_bytes;     /* the mapping holding cast copies (whole pages) */
    uint64_t released_bytes; /* file pages given back after casting */
    uint64_t model_bytes;    /* file - released + cast */
    uint32_t n_cast;
    uint8_t *cast_buf; /* (cast_bytes) every cast copy, 64-byte aligned each */
    mem_range *kept;   /* (n_kept) the file's memory less released pages */
    size_t n_kept;
    _Atomic uint64_t committed; /* model_bytes + live contexts' KV and scratch */
    _Atomic uint64_t ctx_kv, ctx_scratch;
    _Atomic uint32_t n_contexts;
} model_memory;

struct hearth_model {
    model_hparams hp;
    gguf_file *file;
    hearth_tokenizer *tok;
    weight token_embd;     /* (n_vocab rows, n_embd cols) */
    weight output_norm;    /* (n_embd) F32 */
    weight output;         /* (n_vocab rows, n_embd cols); token_embd when tied */
    layer_weights *layers; /* (n_layer) */
    uint64_t weight_bytes; /* bytes the weights take as the forward pass reads them (cast) */
    uint32_t n_repacked;   /* matrices rewritten into the CPU's faster layout (repack.c) */
    model_memory *mem;     /* NULL only while loading */
    char desc[256];
    void *gpu;             /* the CUDA backend's copy of the weights (device.c); NULL on the CPU */
    uint64_t gpu_bytes;    /* device memory the weights take */
    char device_name[224]; /* "cuda: <GPU>" when gpu is set */
};

/* Reads the hyper-parameters of m->file and binds every weight (loader.c). */
hearth_status model_bind(hearth_model *m, hearth_error *err);
/* Writes m->desc from the weights as they are now (loader.c). */
void model_describe(hearth_model *m);

/* A weight of a model, and whether it is a matrix that is multiplied by
 * (a cast or repack candidate), not a norm or a bias. */
typedef struct weight_ref {
    weight *w;
    bool matrix;
} weight_ref;

/* Every weight of m (the tied output, a view of token_embd, left out);
 * out may be NULL to count them (memory.c). */
size_t model_weight_refs(hearth_model *m, weight_ref *out);

/* Rewrites, in place, the matrices of a model whose weights are in its own
 * writable memory (read with use_mmap off) into the layout this CPU
 * multiplies fastest (kernel_traits_repacked), reporting progress; a
 * mapped file or a model on a GPU is left as it is.  Returns how many
 * matrices were repacked (repack.c). */
uint32_t model_repack(hearth_model *m, const hearth_model_params *p);

/* Plans the memory of m, which is bound but not cast: the compute type of
 * p, what casting costs and gives back, the budget.  Fills a new m->mem
 * and checks nothing. */
hearth_status model_memory_plan(hearth_model *m, const hearth_model_params *p, hearth_error *err);
/* Checks the model's own memory against the budget and, with mlock,
 * against RLIMIT_MEMLOCK. */
hearth_status model_memory_check_load(const model_memory *mem, hearth_error *err);
/* Casts the weights m->mem planned, gives back the file pages they came
 * from, then pre-faults or locks the model's memory, reporting progress. */
hearth_status model_memory_apply(hearth_model *m, const hearth_model_params *p, hearth_error *err);
void model_memory_free(model_memory *mem);
/* Locks (mlock) or, with lock false, touches for writing n bytes at p. */
hearth_status memory_pin(void *p, uint64_t n, bool lock, hearth_error *err);
/* Reserves kv + scratch bytes of a new context against m's budget;
 * HEARTH_ERR_OVER_BUDGET with a breakdown when they do not fit. */
hearth_status memory_reserve(const hearth_model *m, uint64_t kv_bytes, uint64_t scratch_bytes,
                             const char *what, hearth_error *err);
void memory_unreserve(const hearth_model *m, uint64_t kv_bytes, uint64_t scratch_bytes);

/* ---------------------------------------------------------------- KV cache */

/* Keys and values of every layer for n_seq sequences of up to n_ctx
 * positions each.  Layout per layer: k[seq][pos][n_head_kv * head_dim] and
 * v[seq][pos][n_head_kv * head_dim_v], elements of kv_type. */
typedef struct kv_cache {
    hearth_kv_type type;
    uint32_t n_ctx;
    uint32_t n_seq;
    uint32_t k_row; /* elements per position: n_head_kv * head_dim */
    uint32_t v_row; /* n_head_kv * head_dim_v */
    size_t elem_bytes;
    uint8_t *k;    /* (n_layer, n_seq, n_ctx, k_row) */
    uint8_t *v;    /* (n_layer, n_seq, n_ctx, v_row) */
    int32_t *len;  /* (n_seq) positions filled */
    int32_t *next; /* (n_seq) scratch for validating a batch */
} kv_cache;

/* ---------------------------------------------------------------- context */

/* Scratch for one forward pass of up to n_batch tokens; all sized at
 * context creation. */
typedef struct forward_scratch {
    float *x;          /* (n_batch, n_embd) residual stream */
    float *xb;         /* (n_batch, n_embd) normed input of a block */
    float *q;          /* (n_batch, n_head * head_dim) */
    float *k;          /* (n_batch, n_head_kv * head_dim) */
    float *v;          /* (n_batch, n_head_kv * head_dim_v) */
    float *att;        /* (n_batch, n_head * head_dim_v) attention output */
    float *hb;         /* (n_batch, n_ff) gate, then the gated product */
    float *hb2;        /* (n_batch, n_ff) up */
    float *rope_cos;   /* (n_batch, n_rot / 2) */
    float *rope_sin;   /* (n_batch, n_rot / 2) */
    uint8_t *act;      /* (n_batch, max row bytes) activations in a weight's act_type */
    float *scores;     /* (n_threads, n_ctx) attention scores per thread */
    uint16_t *qh;      /* (n_threads, head_dim) a query rounded to f16 for an f16 cache */
    float *out_x;      /* (n_outputs, n_embd) rows that need logits */
    int32_t *out_rows; /* (n_batch) index into logits for each batch token, -1 none */
    float *logits;     /* (n_outputs, n_vocab) */
    /* mixture of experts */
    float *ffn_out;     /* (n_batch, n_embd) feed-forward output */
    float *router;      /* (n_batch, n_expert) router probabilities */
    int32_t *sel;       /* (n_batch, n_expert_used) chosen experts */
    float *sel_w;       /* (n_batch, n_expert_used) their weights */
    int32_t *exp_count; /* (n_expert) tokens routed to each expert */
    int32_t *exp_rows;  /* (n_expert, n_batch) those tokens, as t * n_expert_used + slot */
    float *moe_in;      /* (n_batch, n_embd) inputs gathered for one expert */
    float *moe_g;       /* (n_batch, max(n_ff_exp, n_ff_shexp)) */
    float *moe_u;       /* (n_batch, max(n_ff_exp, n_ff_shexp)) */
    float *moe_out;     /* (n_batch, n_embd) */
    float *shexp_gate;  /* (n_batch) */
} forward_scratch;

struct hearth_context {
    const hearth_model *model;
    hearth_context_params params;
    uint32_t n_outputs_max; /* rows of logits one batch can produce (n_outputs) */
    threadpool *pool;
    kv_cache kv;
    forward_scratch s;
    size_t act_row_bytes;   /* stride of s.act */
    uint8_t *kv_arena;      /* (kv_bytes) one mapping holding every buffer of kv */
    uint8_t *scratch_arena; /* (scratch_bytes) one mapping holding every buffer of s */
    uint64_t kv_bytes, scratch_bytes;
    bool reserved; /* kv_bytes + scratch_bytes are reserved against the model's budget */
    void *gpu;     /* the CUDA backend's KV cache and scratch (device.c); NULL on the CPU */
};

/* Resolves params (0 = default for each field; NULL = all defaults) for
 * model hp into *out, checks their ranges, and gives the exact bytes of
 * the two mappings hearth_context_create makes: the KV cache and the
 * scratch.  The planner and the allocator both use it. */
hearth_status context_plan(const model_hparams *hp, const hearth_context_params *params,
                           hearth_context_params *out, uint64_t *kv_bytes, uint64_t *scratch_bytes,
                           hearth_error *err);

/* Runs the forward pass for a validated batch, filling ctx->s.logits for
 * the rows marked in ctx->s.out_rows.  Positions and sequence ids must
 * already be checked against the cache. */
void model_forward(hearth_context *ctx, const hearth_batch *batch);

/* y[t][r] = dot(W row r, x[t]) for t < n_tok, r < W.ne1: the rows of x
 * (n_tok, W.ne0) are first converted to W's activation type, then the
 * threads split the rows of W.  Exposed for tests and benchmarks. */
void matmul(hearth_context *ctx, const weight *w, const float *x, float *y, int64_t n_tok);

/* y = x * w / rms(x) over n elements (w may be NULL for no weight). */
void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
/* Rotates the first n_rot dims of each of n_heads heads of size head_dim in
 * x by the angles whose cos/sin are given for each pair (n_rot / 2). */
void rope_apply(float *x, int n_heads, int head_dim, int n_rot, rope_mode mode, const float *cos,
                const float *sin);

#endif
