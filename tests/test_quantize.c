/* test_quantize.c — `hearth quantize`: which tensor gets which type, the
 * files it writes, and how close the quantized models stay to F32.
 *
 * The models are made here with synth (random weights of llama shapes: a
 * dense 4-layer one and a 2-layer one with 8 experts, rows of 256 so the
 * K-quants fit) plus stories260K, whose 64- and 172-wide rows exercise the
 * fallbacks.  The expected types are llama-quantize's for the same files
 * and schemes (checked against it, llama.cpp c392e50, when this test was
 * written: its output had these types and the very same tensor bytes).
 * Quality: every quantized model decodes the F32 model's own greedy text
 * with a small KL divergence from the F32 logits and mostly the same top
 * token, better with more bits.  Bad input must fail cleanly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "convert/quantize.h"
#include "convert/synth.h"
#include "gguf/gguf.h"
#include "test.h"
#include "util/dtype.h"

static char dense_path[512], moe_path[512], hearth_bin[1024];

static const char *const all_schemes[] = {"Q8_0",   "Q6_K", "Q5_K_M", "Q5_K",
                                          "Q4_K_M", "Q4_K", "Q4_0"};
#define N_SCHEMES (sizeof all_schemes / sizeof all_schemes[0])

static bool make_models(void) {
    hearth_error err;
    synth_params p;
    memset(&p, 0, sizeof p);
    p.arch = "llama";
    p.n_layer = 4;
    p.n_embd = 256;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.head_dim = 64;
    p.n_ff = 512;
    p.n_vocab = 512;
    p.n_ctx = 256;
    p.rope_base = 10000.0f;
    p.type = HEARTH_DTYPE_F32;
    snprintf(dense_path, sizeof dense_path, "%s/dense-f32.gguf", test_tmpdir());
    if (synth_write(&p, dense_path, NULL, NULL, &err) != HEARTH_OK) {
        printf("  synth: %s\n", err.msg);
        return false;
    }
    p.n_layer = 2;
    p.n_ff = 256;
    p.n_expert = 8;
    p.n_expert_used = 2;
    p.n_ff_exp = 256;
    snprintf(moe_path, sizeof moe_path, "%s/moe-f32.gguf", test_tmpdir());
    if (synth_write(&p, moe_path, NULL, NULL, &err) != HEARTH_OK) {
        printf("  synth: %s\n", err.msg);
        return false;
    }
    return true;
}

/* Quantizes in to <tmp>/<tag>-<scheme>.gguf; returns the path (static) or
 * NULL after a failed check.  Fallback messages are counted in *notes. */
static void count_note(const char *msg, void *arg) {
    (void)msg;
    (*(int *)arg)++;
}

static const char *quantize_to(const char *in, const char *tag, const char *scheme, int *notes) {
    static char out[512];
    snprintf(out, sizeof out, "%s/%s-%s.gguf", test_tmpdir(), tag, scheme);
    int n = 0;
    quantize_params p = {quant_scheme_find(scheme), 2, NULL, count_note, &n};
    quantize_report rep;
    hearth_error err;
    if (!p.scheme || quantize_file(in, out, &p, &rep, &err) != HEARTH_OK) {
        CHECKF(false, "%s %s: %s", tag, scheme, p.scheme ? err.msg : "unknown scheme");
        return NULL;
    }
    if (notes) *notes = n;
    CHECK(rep.n_fallback == (uint64_t)n);
    return out;
}

/* The type llama-quantize gives tensor name of the dense (n_expert 0) or
 * 8-expert test model; more_bits(layer) are the _M mixes' favoured layers. */
static uint32_t expected_type(const quant_scheme *s, const char *name, bool moe) {
    int layer = -1;
    sscanf(name, "blk.%d.", &layer);
    bool matrix = strstr(name, "_norm") == NULL && strstr(name, "ffn_gate_inp") == NULL;
    if (!matrix) return HEARTH_DTYPE_F32;
    bool mix_m = !strcmp(s->name, "Q4_K_M") || !strcmp(s->name, "Q5_K_M");
    /* 4 layers: the last eighth and every third after the first give {2, 3};
     * 2 layers: {1}. */
    bool more_bits = moe ? layer == 1 : layer >= 2;
    if (!s->mixed) return s->base_type;
    if (!strcmp(name, "output.weight")) {
        return s->base_type == HEARTH_DTYPE_Q8_0 ? HEARTH_DTYPE_Q8_0 : HEARTH_DTYPE_Q6_K;
    }
    if (strstr(name, "attn_v.weight") || strstr(name, "attn_k.weight")) {
        if (moe) return HEARTH_DTYPE_Q8_0;
        if (strstr(name, "attn_v") && mix_m && more_bits) return HEARTH_DTYPE_Q6_K;
    }
    if (strstr(name, "ffn_down") && mix_m && more_bits) return HEARTH_DTYPE_Q6_K;
    if (strstr(name, "attn_output") && moe && !strcmp(s->name, "Q4_K_M")) return HEARTH_DTYPE_Q5_K;
    return s->base_type;
}

static void check_types(const char *path, const char *scheme, bool moe, const gguf_file *in) {
    gguf_file *f = NULL;
    hearth_error err;
    if (gguf_open(path, true, &f, &err) != HEARTH_OK) {
        CHECKF(false, "%s: %s", path, err.msg);
        return;
    }
    const quant_scheme *s = quant_scheme_find(scheme);
    int wrong = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        char name[128];
        gguf_str_copy(f->tensors[i].name, name, sizeof name);
        uint32_t want = expected_type(s, name, moe);
        if (f->tensors[i].type != want && wrong++ < 3) {
            CHECKF(false, "%s %s: %s is %s, expected %s", moe ? "moe" : "dense", scheme, name,
                   hearth_dtype_name(f->tensors[i].type), hearth_dtype_name(want));
        }
        /* Shapes and order are the input's. */
        CHECK(gguf_str_eq(f->tensors[i].name, name) && i < in->n_tensors &&
              gguf_str_eq(in->tensors[i].name, name) &&
              !memcmp(f->tensors[i].ne, in->tensors[i].ne, sizeof f->tensors[i].ne));
    }
    CHECK(wrong == 0);
    /* Metadata: every key of the input, file type and quantization version set. */
    uint32_t ft = 0, qv = 0;
    CHECK(gguf_get_u32(f, "general.file_type", &ft, &err) == HEARTH_OK && ft == s->file_type);
    CHECK(gguf_get_u32(f, "general.quantization_version", &qv, &err) == HEARTH_OK && qv == 2);
    for (uint64_t i = 0; i < in->n_kv; i++) {
        char key[128];
        gguf_str_copy(in->kv[i].key, key, sizeof key);
        const gguf_kv *kv = gguf_find(f, key);
        CHECKF(kv && kv->type == in->kv[i].type, "%s: key %s lost", scheme, key);
    }
    const gguf_kv *tok_in = gguf_find(in, "tokenizer.ggml.tokens");
    const gguf_kv *tok_out = gguf_find(f, "tokenizer.ggml.tokens");
    REQUIRE(tok_in && tok_out && tok_in->v.arr.n == tok_out->v.arr.n);
    for (uint64_t i = 0; i < tok_in->v.arr.n; i++) {
        CHECK(tok_in->v.arr.strs[i].len == tok_out->v.arr.strs[i].len &&
              !memcmp(tok_in->v.arr.strs[i].ptr, tok_out->v.arr.strs[i].ptr,
                      (size_t)tok_in->v.arr.strs[i].len));
    }
    gguf_close(f);
}

TEST(types_follow_llama_cpp_mixes) {
    gguf_file *dense = NULL, *moe = NULL;
    hearth_error err;
    REQUIRE(gguf_open(dense_path, true, &dense, &err) == HEARTH_OK);
    if (gguf_open(moe_path, true, &moe, &err) != HEARTH_OK) {
        gguf_close(dense);
        REQUIRE(false);
    }
    for (size_t k = 0; k < N_SCHEMES; k++) {
        int notes = -1;
        const char *out = quantize_to(dense_path, "dense", all_schemes[k], &notes);
        CHECK(notes == 0);
        if (out) check_types(out, all_schemes[k], false, dense);
        out = quantize_to(moe_path, "moe", all_schemes[k], &notes);
        CHECK(notes == 0);
        if (out) check_types(out, all_schemes[k], true, moe);
    }
    gguf_close(dense);
    gguf_close(moe);
}

/* ---------------------------------------------------------------- metadata */

/* A byte image builder for metadata of every type, written by hand. */
typedef struct img {
    uint8_t b[1024];
    size_t n;
} img;
static void put(img *m, const void *p, size_t k) {
    memcpy(m->b + m->n, p, k);
    m->n += k;
}
static void put_u32(img *m, uint32_t v) {
    put(m, &v, 4);
}
static void put_u64(img *m, uint64_t v) {
    put(m, &v, 8);
}
static void put_key(img *m, const char *key, gguf_type t) {
    put_u64(m, strlen(key));
    put(m, key, strlen(key));
    put_u32(m, (uint32_t)t);
}

/* quantize copies every metadata entry as it was: scalars of all twelve
 * types, strings, arrays of numbers, of strings and of arrays. */
TEST(metadata_copies_every_type) {
    img m = {{0}, 0};
    put(&m, "GGUF", 4);
    put_u32(&m, 3);
    put_u64(&m, 0);  /* tensors */
    put_u64(&m, 16); /* keys */
    const gguf_type scalars[] = {GGUF_TYPE_UINT8,   GGUF_TYPE_INT8,   GGUF_TYPE_UINT16,
                                 GGUF_TYPE_INT16,   GGUF_TYPE_UINT32, GGUF_TYPE_INT32,
                                 GGUF_TYPE_FLOAT32, GGUF_TYPE_BOOL,   GGUF_TYPE_UINT64,
                                 GGUF_TYPE_INT64,   GGUF_TYPE_FLOAT64};
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        char key[32];
        snprintf(key, sizeof key, "k.scalar%zu", i);
        put_key(&m, key, scalars[i]);
        uint64_t v = 0x8123456789abcdefull; /* negative in the signed types */
        if (scalars[i] == GGUF_TYPE_FLOAT32) {
            float f = -1.25e-3f;
            memcpy(&v, &f, 4);
        } else if (scalars[i] == GGUF_TYPE_FLOAT64) {
            double d = 6.02214076e23;
            memcpy(&v, &d, 8);
        } else if (scalars[i] == GGUF_TYPE_BOOL) {
            v = 1;
        }
        put(&m, &v, gguf_type_size(scalars[i]));
    }
    put_key(&m, "k.string", GGUF_TYPE_STRING);
    put_u64(&m, 6);
    put(&m, "h\xc3\xa9llo", 6);
    put_key(&m, "k.ints", GGUF_TYPE_ARRAY);
    put_u32(&m, GGUF_TYPE_INT16);
    put_u64(&m, 3);
    put(&m, "\x01\x00\xff\xff\x00\x80", 6);
    put_key(&m, "k.strings", GGUF_TYPE_ARRAY);
    put_u32(&m, GGUF_TYPE_STRING);
    put_u64(&m, 2);
    put_u64(&m, 1);
    put(&m, "a", 1);
    put_u64(&m, 0);
    put_key(&m, "k.nested", GGUF_TYPE_ARRAY); /* [[1, 2], ["x"]] */
    put_u32(&m, GGUF_TYPE_ARRAY);
    put_u64(&m, 2);
    put_u32(&m, GGUF_TYPE_UINT8);
    put_u64(&m, 2);
    put(&m, "\x01\x02", 2);
    put_u32(&m, GGUF_TYPE_STRING);
    put_u64(&m, 1);
    put_u64(&m, 1);
    put(&m, "x", 1);
    put_key(&m, "general.alignment", GGUF_TYPE_UINT32);
    put_u32(&m, 64);
    size_t meta_end = m.n;
    while (m.n % 64) m.b[m.n++] = 0;
    gguf_file *f = NULL;
    gguf_writer *w = NULL;
    hearth_error err;
    REQUIRE(gguf_open_memory(m.b, m.n, &f, &err) == HEARTH_OK);
    REQUIRE(f->n_kv == 16 && gguf_writer_create(&w, &err) == HEARTH_OK);
    for (uint64_t i = 0; i < f->n_kv; i++)
        CHECK(gguf_writer_copy_kv(w, &f->kv[i], &err) == HEARTH_OK);
    CHECK(gguf_writer_copy_kv(w, &f->kv[0], &err) == HEARTH_ERR_INVALID_ARG); /* twice */
    uint8_t *out = NULL;
    size_t len = 0;
    CHECK(gguf_writer_write_memory(w, &out, &len, &err) == HEARTH_OK);
    /* The same bytes, padded to the copied alignment. */
    CHECKF(out && len == m.n && !memcmp(out, m.b, meta_end), "copy: %zu bytes, want %zu", len, m.n);
    free(out);
    gguf_writer_free(w);
    gguf_close(f);
}

/* ---------------------------------------------------------------- quality */

enum { N_TOK = 40, MAX_VOCAB = 1024 };

/* Logits of the F32 model's greedy continuation from BOS, decoded by
 * model path with the tokens given (teacher forcing): logits[N_TOK][n_vocab]. */
static bool run_logits(const char *path, hearth_token *toks, bool generate, float *logits,
                       int *n_vocab) {
    hearth_model *m = NULL;
    hearth_context *c = NULL;
    hearth_error err;
    hearth_model_params mp = hearth_model_default_params();
    if (hearth_model_load(path, &mp, &m, &err) != HEARTH_OK) {
        printf("  load %s: %s\n", path, err.msg);
        return false;
    }
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 1;
    cp.n_threads = 2;
    bool ok = hearth_context_create(m, &cp, &c, &err) == HEARTH_OK;
    *n_vocab = hearth_model_n_vocab(m);
    ok = ok && *n_vocab <= MAX_VOCAB;
    for (int i = 0; ok && i < N_TOK; i++) {
        int32_t pos = i, seq = 0;
        hearth_batch b = {1, &toks[i], &pos, &seq, NULL};
        ok = hearth_decode(c, &b, &err) == HEARTH_OK;
        if (!ok) break;
        const float *l = hearth_get_logits(c, 0);
        memcpy(logits + (size_t)i * *n_vocab, l, (size_t)*n_vocab * sizeof(float));
        if (generate && i + 1 < N_TOK) {
            int best = 0;
            for (int v = 1; v < *n_vocab; v++)
                if (l[v] > l[best]) best = v;
            toks[i + 1] = best;
        }
    }
    if (!ok) printf("  %s: %s\n", path, err.msg);
    hearth_context_free(c);
    hearth_model_free(m);
    return ok;
}

/* Mean KL(p_ref || p_q) over the positions, and the share of positions
 * whose top token agrees. */
static void compare_logits(const float *ref, const float *q, int n_vocab, double *kl_mean,
                           double *top1) {
    double kl = 0;
    int agree = 0;
    for (int i = 0; i < N_TOK; i++) {
        const float *a = ref + (size_t)i * n_vocab, *b = q + (size_t)i * n_vocab;
        double ma = a[0], mb = b[0];
        int ta = 0, tb = 0;
        for (int v = 1; v < n_vocab; v++) {
            if (a[v] > ma) ma = a[v], ta = v;
            if (b[v] > mb) mb = b[v], tb = v;
        }
        double za = 0, zb = 0;
        for (int v = 0; v < n_vocab; v++) {
            za += exp(a[v] - ma);
            zb += exp(b[v] - mb);
        }
        double k = 0;
        for (int v = 0; v < n_vocab; v++) {
            double la = a[v] - ma - log(za), lb = b[v] - mb - log(zb);
            k += exp(la) * (la - lb);
        }
        kl += k;
        agree += ta == tb;
    }
    *kl_mean = kl / N_TOK;
    *top1 = (double)agree / N_TOK;
}

TEST(quantized_models_stay_close_to_f32) {
    static float ref[N_TOK * MAX_VOCAB], q[N_TOK * MAX_VOCAB];
    hearth_token toks[N_TOK] = {1};
    int n_vocab = 0, nv = 0;
    REQUIRE(run_logits(dense_path, toks, true, ref, &n_vocab));
    /* KL bounds with a margin over what each scheme gave on this model. */
    const struct {
        const char *scheme;
        double kl_max, top1_min;
    } cases[] = {
        {"Q8_0", 3.5e-4, 0.9},  {"Q6_K", 2.5e-3, 0.75},   {"Q5_K_M", 7.5e-3, 0.65},
        {"Q5_K", 8.5e-3, 0.65}, {"Q4_K_M", 2.5e-2, 0.55}, {"Q4_K", 3e-2, 0.55},
        {"Q4_0", 4e-2, 0.45},
    };
    double kls[sizeof cases / sizeof cases[0]] = {0};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/dense-%s.gguf", test_tmpdir(), cases[k].scheme);
        if (!run_logits(path, toks, false, q, &nv) || nv != n_vocab) {
            CHECKF(false, "%s: cannot run", cases[k].scheme);
            continue;
        }
        double kl, top1;
        compare_logits(ref, q, n_vocab, &kl, &top1);
        printf("  %-7s KL %.2e  top-1 agreement %3.0f%%\n", cases[k].scheme, kl, top1 * 100);
        CHECKF(kl < cases[k].kl_max && top1 >= cases[k].top1_min,
               "%s: KL %g (max %g), top-1 %g (min %g)", cases[k].scheme, kl, cases[k].kl_max, top1,
               cases[k].top1_min);
        kls[k] = kl;
    }
    /* More bits, less divergence: Q8_0 < Q6_K < Q5_K_M < Q4_K_M < Q4_0, and
     * each _M mix beats its plain type. */
    CHECK(kls[0] < kls[1] && kls[1] < kls[2] && kls[2] < kls[4] && kls[4] < kls[6]);
    CHECK(kls[2] < kls[3] && kls[4] < kls[5]);
    /* The expert model runs too. */
    char path[512];
    snprintf(path, sizeof path, "%s/moe-Q4_K_M.gguf", test_tmpdir());
    REQUIRE(run_logits(moe_path, toks, true, ref, &n_vocab));
    REQUIRE(run_logits(path, toks, false, q, &nv));
    double kl, top1;
    compare_logits(ref, q, n_vocab, &kl, &top1);
    printf("  moe Q4_K_M KL %.2e  top-1 agreement %3.0f%%\n", kl, top1 * 100);
    CHECKF(kl < 2.5e-2 && top1 >= 0.6, "moe Q4_K_M: KL %g, top-1 %g", kl, top1);
}

/* stories260K: rows of 64 and 172 elements fit no K-quant super-block; they
 * fall back as llama.cpp's do, each with a note, and the model still runs. */
TEST(rows_that_do_not_fit_fall_back) {
    static char f32[1024];
    snprintf(f32, sizeof f32, "%s", test_shared("models/stories260K.gguf"));
    gguf_file *in = NULL;
    hearth_error err;
    REQUIRE(gguf_open(f32, true, &in, &err) == HEARTH_OK);
    int notes = 0;
    const char *out = quantize_to(f32, "stories", "Q4_K_M", &notes);
    gguf_file *f = NULL;
    if (!out || gguf_open(out, true, &f, &err) != HEARTH_OK) {
        gguf_close(in);
        REQUIRE(false);
    }
    int n_q5 = 0, n_f16 = 0, n_matrix = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        char name[128];
        gguf_str_copy(t->name, name, sizeof name);
        if (t->n_dims < 2) {
            CHECK(t->type == HEARTH_DTYPE_F32);
            continue;
        }
        n_matrix++;
        if (t->ne[0] == 172) {
            CHECKF(t->type == HEARTH_DTYPE_F16, "%s: %s", name, hearth_dtype_name(t->type));
            n_f16++;
        } else if (!strcmp(name, "output.weight")) {
            /* rows of 64 are not whole super-blocks: output gets Q8_0 outright */
            CHECKF(t->type == HEARTH_DTYPE_Q8_0, "%s: %s", name, hearth_dtype_name(t->type));
        } else if (strstr(name, "attn_v") || strstr(name, "ffn_down")) {
            /* the layers that get Q6_K fall back to Q8_0, the others to Q5_0 */
            CHECKF(t->type == HEARTH_DTYPE_Q8_0 || t->type == HEARTH_DTYPE_Q5_0, "%s: %s", name,
                   hearth_dtype_name(t->type));
        } else {
            CHECKF(t->type == HEARTH_DTYPE_Q5_0, "%s: %s", name, hearth_dtype_name(t->type));
            n_q5++;
        }
    }
    CHECK(n_f16 == 5 && n_q5 > 10);
    CHECKF(notes == n_matrix - 1, "%d notes for %d matrices", notes, n_matrix);
    gguf_close(f);
    gguf_close(in);
    /* Q8_0 keeps the 172-wide rows at F16, as llama.cpp's stories260K file does. */
    out = quantize_to(f32, "stories", "Q8_0", &notes);
    CHECK(notes == 5);
    /* Both run. */
    static float ref[N_TOK * MAX_VOCAB], q[N_TOK * MAX_VOCAB];
    hearth_token toks[N_TOK] = {1};
    int nv = 0, nq = 0;
    char path[512];
    snprintf(path, sizeof path, "%s/stories-Q4_K_M.gguf", test_tmpdir());
    REQUIRE(run_logits(f32, toks, true, ref, &nv));
    REQUIRE(run_logits(path, toks, false, q, &nq) && nq == nv);
    double kl, top1;
    compare_logits(ref, q, nv, &kl, &top1);
    printf("  stories260K Q4_K_M (Q5_0/Q8_0/F16) KL %.2e  top-1 agreement %3.0f%%\n", kl,
           top1 * 100);
    CHECKF(kl < 1e-2 && top1 >= 0.8, "stories Q4_K_M: KL %g, top-1 %g", kl, top1);
}

/* ---------------------------------------------------------------- bad input */

/* Runs `hearth ARGS`; returns the exit status, stderr in err_out (static). */
static int run_cli(const char *args, char **err_out) {
    static char *last;
    char err_path[512], cmd[4096];
    snprintf(err_path, sizeof err_path, "%s/cli-stderr", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>'%s' </dev/null", hearth_bin, args, err_path);
    int st = system(cmd);
    free(last);
    last = test_read_file(err_path, NULL);
    if (!last) last = calloc(1, 1);
    *err_out = last;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

TEST(bad_input_fails_cleanly) {
    hearth_error err;
    char out[512];
    snprintf(out, sizeof out, "%s/bad.gguf", test_tmpdir());
    quantize_params p = {quant_scheme_find("Q4_K_M"), 2, NULL, NULL, NULL};
    CHECK(quant_scheme_find("q4_k_m") == p.scheme); /* case-insensitive */
    CHECK(quant_scheme_find("Q3_K") == NULL && quant_scheme_find("") == NULL);
    /* missing file */
    CHECK(quantize_file("/nonexistent/model.gguf", out, &p, NULL, &err) == HEARTH_ERR_IO);
    /* an already quantized model */
    static char q4[1024];
    snprintf(q4, sizeof q4, "%s", test_shared("models/stories260K-q4_0.gguf"));
    CHECK(quantize_file(q4, out, &p, NULL, &err) == HEARTH_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "Q4_0") != NULL, "message: %s", err.msg);
    /* an unwritable output */
    CHECK(quantize_file(dense_path, "/nonexistent/out.gguf", &p, NULL, &err) == HEARTH_ERR_IO);
    /* a NaN in the weights */
    {
        size_t len = 0;
        uint8_t *bytes = (uint8_t *)test_read_file(dense_path, &len);
        gguf_file *f = NULL;
        REQUIRE(bytes && gguf_open_memory(bytes, len, &f, &err) == HEARTH_OK);
        const gguf_tensor *t = gguf_find_tensor(f, "blk.1.attn_q.weight");
        REQUIRE(t && t->type == HEARTH_DTYPE_F32);
        size_t off = (size_t)((const uint8_t *)t->data - bytes) + 4 * (256 * 3 + 7);
        gguf_close(f);
        float nan = NAN;
        memcpy(bytes + off, &nan, 4);
        char nan_path[512];
        snprintf(nan_path, sizeof nan_path, "%s/nan.gguf", test_tmpdir());
        FILE *fp = fopen(nan_path, "wb");
        REQUIRE(fp && fwrite(bytes, 1, len, fp) == len);
        fclose(fp);
        free(bytes);
        CHECK(quantize_file(nan_path, out, &p, NULL, &err) == HEARTH_ERR_BAD_MODEL);
        CHECKF(strstr(err.msg, "blk.1.attn_q.weight") && strstr(err.msg, "row 3"), "message: %s",
               err.msg);
    }
    /* The command line: one error line, usage errors exit 2, failures 1. */
    char args[2048], *e;
    snprintf(args, sizeof args, "quantize '%s' '%s' Q3_K", dense_path, out);
    CHECK(run_cli(args, &e) == 2 && count_lines(e) == 1 && strstr(e, "Q3_K"));
    snprintf(args, sizeof args, "quantize /nonexistent.gguf '%s' Q4_K_M", out);
    CHECK(run_cli(args, &e) == 1 && count_lines(e) == 1 && strstr(e, "nonexistent"));
    snprintf(args, sizeof args, "quantize '%s' '%s' Q4_K_M", q4, out);
    CHECK(run_cli(args, &e) == 1 && count_lines(e) == 1);
    CHECK(run_cli("quantize only-one.gguf", &e) == 2 && count_lines(e) == 1);
    snprintf(args, sizeof args, "quantize '%s' '%s' Q4_K_M -t 0", dense_path, out);
    CHECK(run_cli(args, &e) == 2 && count_lines(e) == 1);
    snprintf(args, sizeof args, "quantize '%s' '%s' Q4_K_M", dense_path, dense_path);
    CHECK(run_cli(args, &e) == 2 && count_lines(e) == 1);
    /* and a good run: a summary line naming the types */
    snprintf(args, sizeof args, "quantize '%s' '%s' q6_k -t 2", dense_path, out);
    CHECKF(run_cli(args, &e) == 0 && strstr(e, "Q6_K") && count_lines(e) == 1, "stderr: %s", e);
    CHECK(run_cli("quantize --help", &e) == 0);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    snprintf(hearth_bin, sizeof hearth_bin, "%s", test_hearth_bin(argv[0]));
    if (!make_models()) {
        printf("FAIL test_quantize/make_models\n");
        return 1;
    }
    RUN(metadata_copies_every_type);
    RUN(types_follow_llama_cpp_mixes);
    RUN(quantized_models_stay_close_to_f32);
    RUN(rows_that_do_not_fit_fall_back);
    RUN(bad_input_fails_cleanly);
    return test_finish();
}
