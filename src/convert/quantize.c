/* quantize.c — `hearth quantize`: F32/F16/BF16 GGUF models to Q8_0, Q4_0,
 * the K-quants and llama.cpp's Q4_K_M / Q5_K_M mixes.
 *
 * Which tensor gets which type follows llama.cpp's quantizer for the same
 * scheme: the same tensors are left alone (vectors, norms, expert routers),
 * the same rules pick the types of the rest, and the rules that count
 * layers walk the tensors in its order (by layer, then by name).  With the
 * reference quantizers writing llama.cpp's bytes, a file quantized here
 * holds the tensor data llama-quantize would write.
 *
 * The output is written tensor by tensor (gguf_writer_add_tensor_fill):
 * each tensor's rows are converted to float and quantized on a thread pool
 * straight into the writer's buffer, so memory use is the input mapping
 * plus one output tensor.
 */
#include "convert/quantize.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kernels/kernels.h"
#include "util/dtype.h"
#include "util/error.h"
#include "util/threadpool.h"

/* llama.cpp's llama_ftype values for the schemes (general.file_type). */
enum {
    FTYPE_MOSTLY_Q4_0 = 2,
    FTYPE_MOSTLY_Q8_0 = 7,
    FTYPE_MOSTLY_Q4_K_S = 14,
    FTYPE_MOSTLY_Q4_K_M = 15,
    FTYPE_MOSTLY_Q5_K_S = 16,
    FTYPE_MOSTLY_Q5_K_M = 17,
    FTYPE_MOSTLY_Q6_K = 18,
};

#define QUANTIZATION_VERSION 2 /* general.quantization_version of current K-quant files */

static const quant_scheme schemes[] = {
    {"Q8_0", HEARTH_DTYPE_Q8_0, FTYPE_MOSTLY_Q8_0, true, "8.5 bits per weight"},
    {"Q6_K", HEARTH_DTYPE_Q6_K, FTYPE_MOSTLY_Q6_K, true, "6.56 bits per weight"},
    {"Q5_K_M", HEARTH_DTYPE_Q5_K, FTYPE_MOSTLY_Q5_K_M, true,
     "Q5_K, with Q6_K for output, half of attn_v and ffn_down"},
    {"Q5_K", HEARTH_DTYPE_Q5_K, FTYPE_MOSTLY_Q5_K_S, false, "every matrix Q5_K (5.5 bits)"},
    {"Q4_K_M", HEARTH_DTYPE_Q4_K, FTYPE_MOSTLY_Q4_K_M, true,
     "Q4_K, with Q6_K for output, half of attn_v and ffn_down"},
    {"Q4_K", HEARTH_DTYPE_Q4_K, FTYPE_MOSTLY_Q4_K_S, false, "every matrix Q4_K (4.5 bits)"},
    {"Q4_0", HEARTH_DTYPE_Q4_0, FTYPE_MOSTLY_Q4_0, true, "4.5 bits per weight, Q6_K output"},
};

const quant_scheme *quant_scheme_find(const char *name) {
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        if (!strcasecmp(name, schemes[i].name)) return &schemes[i];
    }
    return NULL;
}

const quant_scheme *quant_scheme_list(size_t *n) {
    *n = sizeof schemes / sizeof schemes[0];
    return schemes;
}

/* ---------------------------------------------------------------- plan */

/* What the rules need to know about the model. */
typedef struct model_info {
    char arch[64];
    uint32_t n_layer, n_expert, n_head, n_head_kv;
    bool falcon;        /* llama.cpp gives Falcon its own rules */
    bool is_70b;        /* llama.cpp's LLM_TYPE_70B: attn_v gets Q5_K instead of Q4_K */
    bool has_output;    /* else token_embd doubles as the output matrix */
    int n_attention_wv; /* tensors holding V projections */
    int i_attention_wv; /* counters advanced as the rules visit tensors */
    int i_ffn_down, i_ffn_gate, i_ffn_up;
} model_info;

static hearth_status read_model_info(const gguf_file *f, bool mixed, model_info *m,
                                     hearth_error *err) {
    memset(m, 0, sizeof *m);
    gguf_str arch = {NULL, 0};
    hearth_status st = gguf_get_str(f, "general.architecture", &arch, err);
    if (st != HEARTH_OK) return st;
    gguf_str_copy(arch, m->arch, sizeof m->arch);
    m->falcon = !strcmp(m->arch, "falcon");
    char key[128];
    struct {
        const char *suffix;
        uint32_t *dst;
    } keys[] = {{"block_count", &m->n_layer},
                {"expert_count", &m->n_expert},
                {"attention.head_count", &m->n_head},
                {"attention.head_count_kv", &m->n_head_kv}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", m->arch, keys[i].suffix);
        /* Only the layer count matters to every rule; the head counts may
         * be per-layer arrays, which only the 70B test reads. */
        hearth_error ignored;
        if (i == 0) {
            st = gguf_get_u32(f, key, keys[i].dst, err);
            if (st != HEARTH_OK) return st;
        } else if (gguf_get_u32(f, key, keys[i].dst, &ignored) != HEARTH_OK) {
            *keys[i].dst = 0;
        }
    }
    if (mixed && (m->arch[0] == '\0' || m->n_layer == 0)) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "the mixes need general.architecture and <arch>.block_count, which this "
                         "file lacks");
    }
    if (m->n_head_kv == 0) m->n_head_kv = m->n_head;
    /* llama.cpp's model types, as far as its rules here use them. */
    if (m->n_layer == 80) {
        m->is_70b = (!strcmp(m->arch, "llama") && m->n_expert != 8 && m->n_head != m->n_head_kv) ||
                    !strcmp(m->arch, "qwen2") || !strcmp(m->arch, "deci") ||
                    !strcmp(m->arch, "minicpm") || !strcmp(m->arch, "dbrx") ||
                    !strcmp(m->arch, "olmo");
    }
    return HEARTH_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Dimensions as llama.cpp counts them: trailing dims of 1 do not count. */
static uint32_t effective_dims(const gguf_tensor *t) {
    for (uint32_t d = GGUF_MAX_DIMS - 1; d > 0; d--) {
        if (t->ne[d] > 1) return d + 1;
    }
    return 1;
}

/* Whether llama.cpp's quantizer touches a tensor at all. */
static bool is_quantizable(const char *name, const gguf_tensor *t) {
    static const char *const never[] = {
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ssm_conv1d.weight",
        "time_mix_first.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
    };
    if (!ends_with(name, "weight") || effective_dims(t) < 2) return false;
    if (!strcmp(name, "position_embd.weight") || !strcmp(name, "token_types.weight")) return false;
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        if (strstr(name, never[i])) return false;
    }
    return true;
}

/* The layers that get more bits in the _M mixes: the first and last
 * eighth, and every third layer between. */
static bool use_more_bits(int i_layer, int n_layer) {
    return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2;
}

/* The layer of a feed-forward tensor: its counter, or for models with
 * experts (whose tensors need not come in layer order) the number in its
 * name. */
static hearth_status layer_of(const model_info *m, int counter, const char *name, int *layer,
                              hearth_error *err) {
    *layer = counter;
    if (m->n_expert > 1) {
        if (sscanf(name, "blk.%d.", layer) != 1) {
            return error_set(err, HEARTH_ERR_BAD_MODEL, "cannot tell the layer of tensor '%s'",
                             name);
        }
        if (*layer < 0 || (uint32_t)*layer >= m->n_layer) {
            return error_set(err, HEARTH_ERR_BAD_MODEL, "tensor '%s' names layer %d of %u", name,
                             *layer, m->n_layer);
        }
    }
    return HEARTH_OK;
}

/* The type a matrix gets under a mix (llama.cpp's llama_tensor_get_type,
 * for the schemes hearth offers), before the row-length fallback.  Called
 * in llama.cpp's tensor order: it advances the layer counters. */
static hearth_status mixed_type(const quant_scheme *s, model_info *m, const char *name, uint64_t nx,
                                uint32_t *out, hearth_error *err) {
    bool q4km = s->file_type == FTYPE_MOSTLY_Q4_K_M, q5km = s->file_type == FTYPE_MOSTLY_Q5_K_M;
    uint32_t t = s->base_type;
    int il;
    hearth_status st = HEARTH_OK;
    if (!strcmp(name, "output.weight") || (!m->has_output && !strcmp(name, "token_embd.weight"))) {
        if (m->falcon || nx % dtype_block_size(t) != 0) {
            t = HEARTH_DTYPE_Q8_0;
        } else if (t != HEARTH_DTYPE_Q8_0) {
            t = HEARTH_DTYPE_Q6_K;
        }
    } else if (!strcmp(name, "token_embd.weight")) {
        /* no rule for these schemes */
    } else if (strstr(name, "attn_v.weight")) {
        if ((q4km || q5km) && use_more_bits(m->i_attention_wv, m->n_attention_wv)) {
            t = HEARTH_DTYPE_Q6_K;
        }
        /* 8 query heads share each V head there: more bits are cheap. */
        if (m->is_70b && (t == HEARTH_DTYPE_Q3_K || t == HEARTH_DTYPE_Q4_K)) t = HEARTH_DTYPE_Q5_K;
        if (m->n_expert == 8) t = HEARTH_DTYPE_Q8_0;
        m->i_attention_wv++;
    } else if (strstr(name, "attn_k.weight")) {
        if (m->n_expert == 8) t = HEARTH_DTYPE_Q8_0;
    } else if (strstr(name, "attn_q.weight")) {
        /* no rule for these schemes */
    } else if (strstr(name, "ffn_down")) {
        st = layer_of(m, m->i_ffn_down, name, &il, err);
        int nl = (int)m->n_layer;
        if (q4km) {
            if (m->falcon) {
                t = il < nl / 16            ? HEARTH_DTYPE_Q6_K
                    : use_more_bits(il, nl) ? HEARTH_DTYPE_Q5_K
                                            : HEARTH_DTYPE_Q4_K;
            } else if (use_more_bits(il, nl)) {
                t = HEARTH_DTYPE_Q6_K;
            }
        } else if (q5km && use_more_bits(il, nl)) {
            t = HEARTH_DTYPE_Q6_K;
        }
        m->i_ffn_down++;
    } else if (strstr(name, "attn_output.weight")) {
        if (!m->falcon && m->n_expert == 8 && q4km) t = HEARTH_DTYPE_Q5_K;
    } else if (strstr(name, "attn_qkv.weight")) {
        if (q4km) t = HEARTH_DTYPE_Q5_K;
        if (q5km) t = HEARTH_DTYPE_Q6_K;
    } else if (strstr(name, "ffn_gate")) {
        st = layer_of(m, m->i_ffn_gate, name, &il, err);
        m->i_ffn_gate++;
    } else if (strstr(name, "ffn_up")) {
        st = layer_of(m, m->i_ffn_up, name, &il, err);
        m->i_ffn_up++;
    }
    *out = t;
    return st;
}

/* The type llama.cpp falls back to when rows are not whole blocks of t;
 * Q4_0 and Q8_0 (which llama.cpp refuses) go to F16, as its older
 * versions did. */
static uint32_t fallback_type(uint32_t t, uint64_t nx) {
    uint32_t f;
    switch (t) {
    case HEARTH_DTYPE_Q4_K: f = HEARTH_DTYPE_Q5_0; break;
    case HEARTH_DTYPE_Q5_K: f = HEARTH_DTYPE_Q5_1; break;
    case HEARTH_DTYPE_Q6_K: f = HEARTH_DTYPE_Q8_0; break;
    default: f = HEARTH_DTYPE_F16; break;
    }
    return nx % dtype_block_size(f) == 0 ? f : HEARTH_DTYPE_F16;
}

/* llama.cpp's tensor order: by layer number (-1 outside the blocks), then name. */
typedef struct order_item {
    int layer;
    char name[GGUF_MAX_NAME_LEN + 1];
    uint64_t index;
} order_item;

static int order_cmp(const void *a, const void *b) {
    const order_item *x = a, *y = b;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void say(quantize_message_fn message, void *arg, const char *fmt, ...) HEARTH_PRINTF(3, 4);
static void say(quantize_message_fn message, void *arg, const char *fmt, ...) {
    if (!message) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    message(buf, arg);
}

static bool is_float_type(uint32_t t) {
    return t == HEARTH_DTYPE_F32 || t == HEARTH_DTYPE_F16 || t == HEARTH_DTYPE_BF16;
}

hearth_status quantize_plan(const gguf_file *f, const quant_scheme *s, quant_tensor_plan *plan,
                            quantize_message_fn message, void *message_arg, hearth_error *err) {
    model_info m;
    hearth_status st = read_model_info(f, s->mixed, &m, err);
    if (st != HEARTH_OK) return st;
    order_item *order = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *order);
    if (!order) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        order_item *o = &order[i];
        gguf_str_copy(f->tensors[i].name, o->name, sizeof o->name);
        o->index = i;
        o->layer = -1;
        sscanf(o->name, "blk.%d.", &o->layer);
        if (strstr(o->name, "attn_v.weight") || strstr(o->name, "attn_qkv.weight") ||
            strstr(o->name, "attn_kv_b.weight")) {
            m.n_attention_wv++;
        } else if (!strcmp(o->name, "output.weight")) {
            m.has_output = true;
        }
        plan[i] = (quant_tensor_plan){f->tensors[i].type, f->tensors[i].type, false, false};
    }
    qsort(order, (size_t)f->n_tensors, sizeof *order, order_cmp);
    for (uint64_t k = 0; k < f->n_tensors && st == HEARTH_OK; k++) {
        const gguf_tensor *t = &f->tensors[order[k].index];
        const char *name = order[k].name;
        quant_tensor_plan *p = &plan[order[k].index];
        if (!is_quantizable(name, t)) continue;
        uint64_t nx = t->ne[0];
        uint32_t type = s->base_type;
        if (s->mixed) st = mixed_type(s, &m, name, nx, &type, err);
        if (st != HEARTH_OK) break;
        p->wanted = type;
        if (nx % dtype_block_size(type) != 0) {
            type = fallback_type(type, nx);
            p->fallback = true;
        }
        if (type == t->type) continue; /* already there: copied */
        if (!is_float_type(t->type)) {
            st = error_set(err, HEARTH_ERR_UNSUPPORTED,
                           "tensor '%s' is %s: hearth quantize reads F32, F16 or BF16 weights "
                           "(requantizing would compound the rounding)",
                           name, hearth_dtype_name(t->type) ? hearth_dtype_name(t->type) : "?");
            break;
        }
        p->type = type;
        p->convert = true;
    }
    for (uint64_t k = 0; k < f->n_tensors && st == HEARTH_OK; k++) {
        const quant_tensor_plan *p = &plan[order[k].index];
        if (!p->fallback) continue;
        uint32_t w = p->wanted;
        say(message, message_arg,
            "%s: rows of %llu are not whole %u-element blocks of %s; using %s", order[k].name,
            (unsigned long long)f->tensors[order[k].index].ne[0], dtype_block_size(w),
            hearth_dtype_name(w), hearth_dtype_name(p->type));
    }
    free(order);
    return st;
}

/* ---------------------------------------------------------------- writing */

/* State shared by every tensor's fill callback. */
typedef struct quant_run {
    const gguf_file *f;
    const quant_tensor_plan *plan;
    const quantize_params *p;
    threadpool *pool;
    float *scratch; /* (n_threads, max_cols) rows converted to float */
    uint64_t max_cols;
    uint64_t done, total; /* input bytes, for progress */
    /* the tensor being converted */
    const gguf_tensor *t;
    uint8_t *out;
    uint32_t out_type;
    quantize_row_fn quant;
    uint64_t rows, cols, in_row_bytes, out_row_bytes;
    int64_t bad_row[256]; /* per thread: first row holding a non-finite value, or -1 */
} quant_run;

typedef struct fill_arg {
    quant_run *run;
    uint64_t index;
} fill_arg;

static void convert_rows(void *arg, int ith, int nth) {
    quant_run *r = arg;
    int64_t b, e;
    threadpool_split((int64_t)r->rows, ith, nth, &b, &e);
    float *tmp = r->scratch + (uint64_t)ith * r->max_cols;
    const uint8_t *in = r->t->data;
    int slot = ith < 256 ? ith : 255;
    for (int64_t row = b; row < e; row++) {
        const uint8_t *src = in + (uint64_t)row * r->in_row_bytes;
        const float *x = tmp;
        if (r->t->type == HEARTH_DTYPE_F32 && ((uintptr_t)src & 3) == 0) {
            x = (const float *)src; /* read in place */
        } else if (r->t->type == HEARTH_DTYPE_F32) {
            memcpy(tmp, src, (size_t)r->in_row_bytes); /* a file aligned to less than 4 */
        } else if (r->t->type == HEARTH_DTYPE_F16) {
            dequantize_row_f16_ref(src, tmp, (int64_t)r->cols);
        } else {
            dequantize_row_bf16_ref(src, tmp, (int64_t)r->cols);
        }
        /* Hostile or broken weights: a NaN or infinity would poison a
         * whole block (and is undefined behaviour in the rounding). */
        bool finite = true;
        for (uint64_t c = 0; c < r->cols; c++) finite &= isfinite(x[c]) != 0;
        if (!finite) {
            if (r->bad_row[slot] < 0 || row < r->bad_row[slot]) r->bad_row[slot] = row;
            continue;
        }
        r->quant(x, r->out + (uint64_t)row * r->out_row_bytes, (int64_t)r->cols);
    }
}

static hearth_status fill_tensor(void *arg, void *buf, uint64_t nbytes, hearth_error *err) {
    fill_arg *fa = arg;
    quant_run *r = fa->run;
    const gguf_tensor *t = &r->f->tensors[fa->index];
    const quant_tensor_plan *pl = &r->plan[fa->index];
    char name[GGUF_MAX_NAME_LEN + 1];
    gguf_str_copy(t->name, name, sizeof name);
    if (r->p->progress) r->p->progress(r->done, r->total, name, r->p->arg);
    r->done += t->nbytes;
    if (!pl->convert) {
        memcpy(buf, t->data, (size_t)nbytes);
        return HEARTH_OK;
    }
    r->t = t;
    r->out = buf;
    r->out_type = pl->type;
    r->quant = kernel_weight_quantizer(pl->type);
    r->cols = t->ne[0];
    r->rows = t->ne[1] * t->ne[2] * t->ne[3];
    r->in_row_bytes = dtype_row_bytes(t->type, r->cols);
    r->out_row_bytes = dtype_row_bytes(pl->type, r->cols);
    if (!r->quant || r->out_row_bytes * r->rows != nbytes) {
        return error_set(err, HEARTH_ERR_INTERNAL, "tensor '%s': no quantizer for %s", name,
                         hearth_dtype_name(pl->type));
    }
    for (int i = 0; i < 256; i++) r->bad_row[i] = -1;
    threadpool_run(r->pool, convert_rows, r);
    int64_t bad = -1;
    for (int i = 0; i < 256; i++) {
        if (r->bad_row[i] >= 0 && (bad < 0 || r->bad_row[i] < bad)) bad = r->bad_row[i];
    }
    if (bad >= 0) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "tensor '%s': row %lld holds a NaN or infinite value", name,
                         (long long)bad);
    }
    return HEARTH_OK;
}

/* Copies the metadata, replacing the keys that describe the quantization
 * and dropping those of split files (the output is one file). */
static hearth_status copy_metadata(const gguf_file *f, gguf_writer *w, const quant_scheme *s,
                                   hearth_error *err) {
    static const char *const replaced[] = {"general.file_type", "general.quantization_version",
                                           "split.no", "split.count", "split.tensors.count"};
    hearth_status st = HEARTH_OK;
    for (uint64_t i = 0; i < f->n_kv && st == HEARTH_OK; i++) {
        bool skip = false;
        for (size_t k = 0; k < sizeof replaced / sizeof replaced[0]; k++) {
            skip |= gguf_str_eq(f->kv[i].key, replaced[k]);
        }
        if (!skip) st = gguf_writer_copy_kv(w, &f->kv[i], err);
    }
    if (st == HEARTH_OK) {
        st = gguf_writer_set_u32(w, "general.quantization_version", QUANTIZATION_VERSION, err);
    }
    if (st == HEARTH_OK) st = gguf_writer_set_u32(w, "general.file_type", s->file_type, err);
    return st;
}

hearth_status quantize_file(const char *in_path, const char *out_path, const quantize_params *p,
                            quantize_report *report, hearth_error *err) {
    if (!p->scheme) return error_set(err, HEARTH_ERR_INVALID_ARG, "no quantization scheme");
    gguf_file *f = NULL;
    hearth_status st = gguf_open(in_path, true, &f, err);
    if (st != HEARTH_OK) return st;
    uint64_t n = f->n_tensors;
    quant_tensor_plan *plan = calloc(n ? n : 1, sizeof *plan);
    fill_arg *args = calloc(n ? n : 1, sizeof *args);
    quant_run run;
    memset(&run, 0, sizeof run);
    gguf_writer *w = NULL;
    if (!plan || !args) st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    if (st == HEARTH_OK) st = quantize_plan(f, p->scheme, plan, p->message, p->arg, err);
    quantize_report rep;
    memset(&rep, 0, sizeof rep);
    rep.n_tensors = n;
    for (uint64_t i = 0; i < n && st == HEARTH_OK; i++) {
        const gguf_tensor *t = &f->tensors[i];
        rep.bytes_in += t->nbytes;
        rep.n_converted += plan[i].convert;
        rep.n_fallback += plan[i].fallback;
        rep.n_by_type[plan[i].type]++;
        if (plan[i].convert && t->ne[0] > run.max_cols) run.max_cols = t->ne[0];
    }
    int threads = p->n_threads > 0 ? p->n_threads : threadpool_n_cpus();
    if (threads > 256) threads = 256;
    if (st == HEARTH_OK) st = threadpool_create(threads, &run.pool, err);
    if (st == HEARTH_OK && run.max_cols > 0) {
        run.scratch = malloc((size_t)(run.max_cols * (uint64_t)threads * sizeof(float)));
        if (!run.scratch) st = error_set(err, HEARTH_ERR_NOMEM, "out of memory for row buffers");
    }
    run.f = f;
    run.plan = plan;
    run.p = p;
    run.total = rep.bytes_in;
    if (st == HEARTH_OK) st = gguf_writer_create(&w, err);
    if (st == HEARTH_OK) st = copy_metadata(f, w, p->scheme, err);
    for (uint64_t i = 0; i < n && st == HEARTH_OK; i++) {
        const gguf_tensor *t = &f->tensors[i];
        char name[GGUF_MAX_NAME_LEN + 1];
        gguf_str_copy(t->name, name, sizeof name);
        args[i] = (fill_arg){&run, i};
        st = gguf_writer_add_tensor_fill(w, name, plan[i].type, t->n_dims, t->ne, fill_tensor,
                                         &args[i], err);
        rep.bytes_out += dtype_row_bytes(plan[i].type, t->ne[0]) * t->ne[1] * t->ne[2] * t->ne[3];
    }
    if (st == HEARTH_OK) st = gguf_writer_write_file(w, out_path, NULL, NULL, err);
    if (st == HEARTH_OK && p->progress) p->progress(run.total, run.total, NULL, p->arg);
    if (st == HEARTH_OK && report) *report = rep;
    gguf_writer_free(w);
    threadpool_free(run.pool);
    free(run.scratch);
    free(args);
    free(plan);
    gguf_close(f);
    return st;
}
