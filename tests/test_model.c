/* test_model.c — the forward pass against reference implementations.
 *
 * stories260K (F32, Q8_0, Q4_0) is run from token ids so that these tests
 * depend on the model alone.  References in ../shared/models/reference:
 * llama2.c's and llama.cpp's greedy ids and llama.cpp's logits after the
 * prompt "Once upon a time".  The Q8_0/Q4_0 greedy continuations must equal
 * llama.cpp's at least up to the first step where llama.cpp's own top-2
 * margin is below the logit error measured after the prompt.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "hearth.h"
#include "model/model.h"
#include "test.h"

static const hearth_token prompt_once[] = {1, 403, 407, 261, 378};
enum { N_PROMPT = 5 };

static hearth_model *load(const char *rel) {
    hearth_model *m = NULL;
    hearth_error err;
    if (hearth_model_load(test_shared(rel), NULL, &m, &err) != HEARTH_OK) {
        printf("  cannot load %s: %s\n", rel, err.msg);
        return NULL;
    }
    return m;
}

static hearth_context *context(const hearth_model *m, hearth_kv_type kv, int threads,
                               uint32_t n_seq) {
    hearth_context_params p = hearth_context_default_params();
    p.n_ctx = 512;
    p.n_threads = threads;
    p.kv_type = kv;
    p.n_seq = n_seq;
    p.n_batch = 64;
    hearth_context *c = NULL;
    hearth_error err;
    if (hearth_context_create(m, &p, &c, &err) != HEARTH_OK) printf("  %s\n", err.msg);
    return c;
}

/* Decodes ids[0..n) for sequence seq from position pos0 in one batch. */
static bool decode(hearth_context *c, const hearth_token *ids, uint32_t n, int32_t pos0,
                   int32_t seq) {
    int32_t pos[64], seqs[64];
    if (n > 64) return false;
    for (uint32_t i = 0; i < n; i++) {
        pos[i] = pos0 + (int32_t)i;
        seqs[i] = seq;
    }
    hearth_batch b = {n, ids, pos, seqs, NULL};
    hearth_error err;
    if (hearth_decode(c, &b, &err) != HEARTH_OK) {
        printf("  decode: %s\n", err.msg);
        return false;
    }
    return true;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static float top2_margin(const float *x, int n) {
    int a = argmax(x, n), b = a == 0 ? 1 : 0;
    for (int i = 0; i < n; i++)
        if (i != a && x[i] > x[b]) b = i;
    return x[a] - x[b];
}

/* Greedy generation of n tokens after the prompt; returns how many were
 * made.  margins (may be NULL) receives the top-2 logit gap of each step. */
static int greedy_m(hearth_context *c, const hearth_token *prompt, int n_prompt, hearth_token *out,
                    int n, float *margins) {
    if (!decode(c, prompt, (uint32_t)n_prompt, 0, 0)) return 0;
    for (int i = 0; i < n; i++) {
        const float *l = hearth_get_logits(c, i == 0 ? (uint32_t)n_prompt - 1 : 0);
        out[i] = argmax(l, 512);
        if (margins) margins[i] = top2_margin(l, 512);
        if (i + 1 < n && !decode(c, &out[i], 1, n_prompt + i, 0)) return i + 1;
    }
    return n;
}

static int greedy(hearth_context *c, const hearth_token *prompt, int n_prompt, hearth_token *out,
                  int n) {
    return greedy_m(c, prompt, n_prompt, out, n, NULL);
}

/* Reads the reference ids file; returns the count. */
static int read_ids(const char *rel, int32_t *ids, int cap) {
    char *text = test_read_file(test_shared(rel), NULL);
    if (!text) return 0;
    int n = (int)test_parse_ints(text, ids, (size_t)cap);
    free(text);
    return n;
}

static int first_diff(const int32_t *a, const int32_t *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return i;
    return n;
}

TEST(f32_greedy_from_bos_matches_llama2c_and_llama_cpp) {
    hearth_model *m = load("models/stories260K.gguf");
    REQUIRE(m);
    int32_t ref_c[300], ref_cpp[300];
    int n_c =
        read_ids("models/reference/stories260K.llama2c.greedy-from-BOS.256steps.ids", ref_c, 300);
    int n_cpp = read_ids("models/reference/stories260K.llamacpp.f32.greedy-from-BOS.256tok.ids",
                         ref_cpp, 300);
    REQUIRE(n_c >= 255 && n_cpp >= 255);
    /* llama2.c computes in f32 throughout; llama.cpp keeps an f16 KV cache. */
    hearth_kv_type kvs[2] = {HEARTH_KV_F32, HEARTH_KV_F16};
    const int32_t *refs[2] = {ref_c, ref_cpp};
    int nrefs[2] = {n_c, n_cpp};
    for (int k = 0; k < 2; k++) {
        hearth_context *c = context(m, kvs[k], 2, 1);
        REQUIRE(c);
        hearth_token out[300];
        hearth_token bos = 1;
        int n = greedy(c, &bos, 1, out, nrefs[k]);
        int d = first_diff(out, refs[k], n < nrefs[k] ? n : nrefs[k]);
        CHECKF(n == nrefs[k] && d == n, "%s: %d of %d tokens match", k ? "llama.cpp" : "llama2.c",
               d, nrefs[k]);
        hearth_context_free(c);
    }
    hearth_model_free(m);
}

TEST(f32_greedy_prompt_matches_llama2c) {
    hearth_model *m = load("models/stories260K.gguf");
    REQUIRE(m);
    char *text = test_read_file(
        test_shared(
            "models/reference/stories260K.llama2c.greedy-prompt-Once-upon-a-time.64steps.ids"),
        NULL);
    REQUIRE(text);
    /* Line 1: prompt ids with BOS; line 2: ids at positions 1..64 (prompt then generated). */
    char *line2 = strchr(text, '\n');
    REQUIRE(line2);
    *line2++ = '\0';
    char *ids1 = strchr(text, ':'), *ids2 = strchr(line2, ':');
    REQUIRE(ids1 && ids2);
    int32_t p[16], all[80];
    size_t np = test_parse_ints(ids1 + 1, p, 16);
    size_t na = test_parse_ints(ids2 + 1, all, 80);
    free(text);
    REQUIRE(np == N_PROMPT && na == 64);
    CHECK(memcmp(p, prompt_once, sizeof prompt_once) == 0);
    hearth_context *c = context(m, HEARTH_KV_F32, 2, 1);
    REQUIRE(c);
    hearth_token out[64];
    int n_gen = 64 - (N_PROMPT - 1);
    int n = greedy(c, prompt_once, N_PROMPT, out, n_gen);
    int d = first_diff(out, all + N_PROMPT - 1, n_gen);
    CHECKF(n == n_gen && d == n_gen, "%d of %d generated tokens match llama2.c", d, n_gen);
    hearth_context_free(c);
    hearth_model_free(m);
}

/* Max |ours - reference| of the logits after "Once upon a time", and the
 * reference's max |logit|. */
static bool prompt_logit_error(const char *model, const char *ref, hearth_kv_type kv,
                               float *max_diff, float *max_abs) {
    hearth_model *m = load(model);
    if (!m) return false;
    hearth_context *c = context(m, kv, 2, 1);
    size_t len = 0;
    char *raw = test_read_file(test_shared(ref), &len);
    bool ok = c && raw && len == 512 * sizeof(float) && decode(c, prompt_once, N_PROMPT, 0, 0);
    if (ok) {
        const float *l = hearth_get_logits(c, N_PROMPT - 1);
        float r[512];
        memcpy(r, raw, sizeof r);
        *max_diff = *max_abs = 0;
        for (int i = 0; i < 512; i++) {
            *max_diff = fmaxf(*max_diff, fabsf(l[i] - r[i]));
            *max_abs = fmaxf(*max_abs, fabsf(r[i]));
        }
    }
    free(raw);
    hearth_context_free(c);
    hearth_model_free(m);
    return ok;
}

TEST(f32_logits_match_llama_cpp) {
    float diff, mag;
    REQUIRE(prompt_logit_error(
        "models/stories260K.gguf",
        "models/reference/stories260K.llamacpp.f32.logits-after-prompt-Once-upon-a-time.f32le",
        HEARTH_KV_F16, &diff, &mag));
    printf("  f32: max |logit diff| %.3g (max |logit| %.3g)\n", (double)diff, (double)mag);
    CHECKF(diff < 1e-3f, "max-abs logit difference %g", (double)diff);
}

/* Parses llama.cpp's 60-token trace: generated ids and the top-2 margin at
 * each step.  Returns the number of steps. */
static int read_trace(const char *rel, int32_t *ids, float *margin, int cap) {
    char *text = test_read_file(test_shared(rel), NULL);
    if (!text) return 0;
    int n = 0;
    for (char *line = text; line && *line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        int step, id1, id2;
        float l1, l2;
        if (n < cap &&
            sscanf(line, "step %d top5: %d:%f %d:%f", &step, &id1, &l1, &id2, &l2) == 5 &&
            step == n) {
            ids[n] = id1;
            margin[n] = l1 - l2;
            n++;
        }
    }
    free(text);
    return n;
}

static void check_quantized(const char *tag) {
    char model[128], logits[160], trace[160], bos_ids[160];
    snprintf(model, sizeof model, "models/stories260K-%s.gguf", tag);
    snprintf(logits, sizeof logits,
             "models/reference/stories260K.llamacpp.%s.logits-after-prompt-Once-upon-a-time.f32le",
             tag);
    snprintf(trace, sizeof trace,
             "models/reference/stories260K.llamacpp.%s.greedy-prompt-Once-upon-a-time.60tok.txt",
             tag);
    snprintf(bos_ids, sizeof bos_ids,
             "models/reference/stories260K.llamacpp.%s.greedy-from-BOS.256tok.ids", tag);
    float diff, mag;
    REQUIRE(prompt_logit_error(model, logits, HEARTH_KV_F16, &diff, &mag));
    CHECKF(diff <= 0.02f * mag, "%s: logit error %g above 2%% of %g", tag, (double)diff,
           (double)mag);

    int32_t ref[64];
    float margin[64];
    int n_ref = read_trace(trace, ref, margin, 64);
    REQUIRE(n_ref == 60);
    /* The continuation must agree until llama.cpp itself was unsure. */
    int must = n_ref;
    for (int i = 0; i < n_ref; i++) {
        if (margin[i] < fmaxf(diff, 1e-4f)) {
            must = i;
            break;
        }
    }
    hearth_model *m = load(model);
    REQUIRE(m);
    hearth_context *c = context(m, HEARTH_KV_F16, 2, 1);
    REQUIRE(c);
    hearth_token out[64];
    int n = greedy(c, prompt_once, N_PROMPT, out, n_ref);
    int d = first_diff(out, ref, n);
    CHECKF(d >= must, "%s: first difference at step %d, before the first low-margin step %d", tag,
           d, must);
    hearth_context_free(c);

    /* From BOS there are no reference margins; rounding differences (f16 KV
     * cache, summation order) compound along 256 positions, so this only
     * states how far the sequences agree and requires a solid stretch. */
    int32_t ref_bos[300];
    float our_margin[300];
    int n_bos = read_ids(bos_ids, ref_bos, 300);
    c = context(m, HEARTH_KV_F16, 2, 1);
    REQUIRE(c && n_bos >= 250);
    hearth_token bos = 1, gen[300];
    int g = greedy_m(c, &bos, 1, gen, n_bos, our_margin);
    int d_bos = first_diff(gen, ref_bos, g);
    CHECKF(d_bos >= 50, "%s: from BOS we part from llama.cpp already at step %d (margin %g)", tag,
           d_bos, d_bos < g ? (double)our_margin[d_bos] : 0.0);
    printf("  %s: max |logit diff| %.3g (%.2g%% of %.3g); prompt continuation equal for %d/%d "
           "(required %d); from BOS equal for %d/%d (top-2 margin there %.3g)\n",
           tag, (double)diff, 100.0 * diff / mag, (double)mag, d, n_ref, must, d_bos, n_bos,
           d_bos < g ? (double)our_margin[d_bos] : 0.0);
    hearth_context_free(c);
    hearth_model_free(m);
}

TEST(q8_0_matches_llama_cpp) {
    check_quantized("q8_0");
}
TEST(q4_0_matches_llama_cpp) {
    check_quantized("q4_0");
}

/* Feeding a prompt in one batch or token by token, with 1 or 2 threads,
 * gives the same logits; two sequences in one batch do not disturb each other. */
TEST(batching_and_threads_agree) {
    hearth_model *m = load("models/stories260K-q8_0.gguf");
    REQUIRE(m);
    hearth_context *one = context(m, HEARTH_KV_F16, 1, 1);
    hearth_context *two = context(m, HEARTH_KV_F16, 2, 2);
    REQUIRE(one && two);
    REQUIRE(decode(one, prompt_once, N_PROMPT, 0, 0));
    float ref[512];
    memcpy(ref, hearth_get_logits(one, N_PROMPT - 1), sizeof ref);
    for (int i = 0; i < N_PROMPT; i++) REQUIRE(decode(two, &prompt_once[i], 1, i, 1));
    const float *l = hearth_get_logits(two, 0);
    float d = 0;
    for (int i = 0; i < 512; i++) d = fmaxf(d, fabsf(l[i] - ref[i]));
    CHECKF(d < 1e-4f, "token-by-token vs batch: %g", (double)d);

    /* Sequence 0 gets a different prompt in the same batches as sequence 1. */
    hearth_kv_truncate(two, 1, 0);
    hearth_token other[N_PROMPT] = {1, 385, 328, 432, 317};
    hearth_token toks[2 * N_PROMPT];
    int32_t pos[2 * N_PROMPT], seq[2 * N_PROMPT];
    bool want[2 * N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++) {
        toks[2 * i] = other[i];
        toks[2 * i + 1] = prompt_once[i];
        pos[2 * i] = pos[2 * i + 1] = i;
        seq[2 * i] = 0;
        seq[2 * i + 1] = 1;
        want[2 * i] = want[2 * i + 1] = i == N_PROMPT - 1;
    }
    hearth_batch b = {2 * N_PROMPT, toks, pos, seq, want};
    hearth_error err;
    REQUIRE(hearth_decode(two, &b, &err) == HEARTH_OK);
    l = hearth_get_logits(two, 2 * N_PROMPT - 1);
    REQUIRE(l);
    d = 0;
    for (int i = 0; i < 512; i++) d = fmaxf(d, fabsf(l[i] - ref[i]));
    CHECKF(d < 1e-4f, "interleaved sequences: %g", (double)d);
    CHECK(hearth_get_logits(two, 0) == NULL);
    hearth_context_free(one);
    hearth_context_free(two);
    hearth_model_free(m);
}

TEST(neox_rope_is_permuted_norm_rope) {
    /* NeoX rotation of halves equals the adjacent-pair rotation of the
     * vector whose pairs were interleaved: the relation between HF and
     * GGUF Q/K layouts. */
    enum { HD = 16, ROT = 12 };
    float cosv[ROT / 2], sinv[ROT / 2];
    for (int i = 0; i < ROT / 2; i++) {
        double a = 7.0 * pow(10000.0, -2.0 * i / ROT);
        cosv[i] = (float)cos(a);
        sinv[i] = (float)sin(a);
    }
    float neox[2 * HD], norm[2 * HD];
    for (int i = 0; i < 2 * HD; i++) neox[i] = sinf((float)i * 0.37f) + 0.1f * (float)i;
    for (int h = 0; h < 2; h++) {
        for (int i = 0; i < ROT / 2; i++) {
            norm[h * HD + 2 * i] = neox[h * HD + i];
            norm[h * HD + 2 * i + 1] = neox[h * HD + i + ROT / 2];
        }
        for (int i = ROT; i < HD; i++) norm[h * HD + i] = neox[h * HD + i];
    }
    rope_apply(neox, 2, HD, ROT, ROPE_MODE_NEOX, cosv, sinv);
    rope_apply(norm, 2, HD, ROT, ROPE_MODE_NORM, cosv, sinv);
    for (int h = 0; h < 2; h++) {
        for (int i = 0; i < ROT / 2; i++) {
            CHECK(fabsf(norm[h * HD + 2 * i] - neox[h * HD + i]) < 1e-6f);
            CHECK(fabsf(norm[h * HD + 2 * i + 1] - neox[h * HD + i + ROT / 2]) < 1e-6f);
        }
        for (int i = ROT; i < HD; i++) CHECK(norm[h * HD + i] == neox[h * HD + i]);
    }
    /* Rotation keeps each pair's length. */
    float v[HD], w[HD];
    for (int i = 0; i < HD; i++) v[i] = w[i] = (float)i - 3.0f;
    rope_apply(w, 1, HD, ROT, ROPE_MODE_NORM, cosv, sinv);
    for (int i = 0; i < ROT / 2; i++) {
        float a = v[2 * i] * v[2 * i] + v[2 * i + 1] * v[2 * i + 1];
        float b = w[2 * i] * w[2 * i] + w[2 * i + 1] * w[2 * i + 1];
        CHECK(fabsf(a - b) < 1e-4f * (a + 1));
    }
}

TEST(decode_rejects_bad_batches) {
    hearth_model *m = load("models/stories260K.gguf");
    REQUIRE(m);
    hearth_context *c = context(m, HEARTH_KV_F16, 1, 1);
    REQUIRE(c);
    hearth_error err;
    hearth_token bad_tok = 512;
    int32_t pos = 0, seq = 0;
    hearth_batch b = {1, &bad_tok, &pos, &seq, NULL};
    CHECK(hearth_decode(c, &b, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "vocabulary") != NULL);
    hearth_token t = 1;
    seq = 1;
    b.tokens = &t;
    CHECK(hearth_decode(c, &b, &err) == HEARTH_ERR_INVALID_ARG);
    seq = 0;
    pos = 3; /* the cache is empty: position 0 comes first */
    CHECK(hearth_decode(c, &b, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "expects position 0") != NULL);
    pos = 512;
    CHECK(hearth_decode(c, &b, &err) == HEARTH_ERR_CONTEXT_FULL);
    pos = 0;
    CHECK(hearth_decode(c, &b, &err) == HEARTH_OK);
    hearth_context_free(c);
    /* A context made for one row of logits refuses a batch asking for two. */
    hearth_context_params p = hearth_context_default_params();
    p.n_ctx = 16;
    p.n_threads = 1;
    p.n_outputs = 1;
    REQUIRE(hearth_context_create(m, &p, &c, &err) == HEARTH_OK);
    hearth_token two[2] = {1, 403};
    int32_t pos2[2] = {0, 1}, seq2[2] = {0, 0};
    bool want2[2] = {true, true};
    hearth_batch b2 = {2, two, pos2, seq2, want2};
    CHECK(hearth_decode(c, &b2, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "n_outputs") != NULL);
    want2[0] = false;
    CHECK(hearth_decode(c, &b2, &err) == HEARTH_OK);
    CHECK(hearth_get_logits(c, 1) != NULL && hearth_get_logits(c, 0) == NULL);
    hearth_context_free(c);
    hearth_model_free(m);
}

/* Writes a copy of stories260K with one change, for the loader's errors. */
typedef enum { MUT_ARCH, MUT_DROP_TENSOR, MUT_SHAPE, MUT_TYPE, MUT_HEADS } mutation;

static hearth_status load_mutant(mutation mut, hearth_error *err) {
    gguf_file *src;
    if (gguf_open(test_shared("models/stories260K.gguf"), true, &src, err) != HEARTH_OK) {
        return HEARTH_ERR_IO;
    }
    gguf_writer *w;
    gguf_writer_create(&w, err);
    for (uint64_t i = 0; i < src->n_kv; i++) {
        const gguf_kv *kv = &src->kv[i];
        char key[128];
        gguf_str_copy(kv->key, key, sizeof key);
        if (!strcmp(key, "general.architecture")) {
            gguf_writer_set_str(w, key, mut == MUT_ARCH ? "gpt-j" : "llama", err);
        } else if (!strcmp(key, "llama.attention.head_count")) {
            gguf_writer_set_u32(w, key, mut == MUT_HEADS ? 3 : (uint32_t)kv->v.u64, err);
        } else if (kv->type == GGUF_TYPE_UINT32) {
            gguf_writer_set_u32(w, key, (uint32_t)kv->v.u64, err);
        } else if (kv->type == GGUF_TYPE_FLOAT32) {
            gguf_writer_set_f32(w, key, (float)kv->v.f64, err);
        } else if (kv->type == GGUF_TYPE_STRING) {
            char v[64];
            gguf_str_copy(kv->v.str, v, sizeof v);
            gguf_writer_set_str(w, key, v, err);
        } else if (kv->type == GGUF_TYPE_ARRAY && kv->v.arr.type == GGUF_TYPE_STRING) {
            const char **strs = malloc(kv->v.arr.n * sizeof *strs);
            uint64_t *lens = malloc(kv->v.arr.n * sizeof *lens);
            for (uint64_t j = 0; j < kv->v.arr.n; j++) {
                strs[j] = kv->v.arr.strs[j].ptr;
                lens[j] = kv->v.arr.strs[j].len;
            }
            gguf_writer_set_arr_str(w, key, strs, lens, kv->v.arr.n, err);
            free(strs);
            free(lens);
        } else if (kv->type == GGUF_TYPE_ARRAY) {
            gguf_writer_set_arr(w, key, kv->v.arr.type, kv->v.arr.data, kv->v.arr.n, err);
        }
    }
    static uint8_t q41_data[144 * 64]; /* placeholder bytes for a type hearth cannot multiply */
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const gguf_tensor *t = &src->tensors[i];
        char name[128];
        gguf_str_copy(t->name, name, sizeof name);
        bool target = !strcmp(name, "blk.2.attn_q.weight");
        if (target && mut == MUT_DROP_TENSOR) continue;
        uint64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        uint32_t type = t->type;
        const void *data = t->data;
        if (target && mut == MUT_SHAPE) ne[1] = 32;
        if (target && mut == MUT_TYPE) {
            /* 64 x 64 as Q4_1 (20-byte blocks of 32): a type hearth reads but cannot multiply */
            type = HEARTH_DTYPE_Q4_1;
            data = q41_data;
        }
        gguf_writer_add_tensor(w, name, type, t->n_dims, ne, data, err);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/mutant-%d.gguf", test_tmpdir(), (int)mut);
    hearth_status st = gguf_writer_write_file(w, path, NULL, NULL, err);
    gguf_writer_free(w);
    gguf_close(src);
    if (st != HEARTH_OK) return HEARTH_ERR_IO;
    hearth_model *m = NULL;
    st = hearth_model_load(path, NULL, &m, err);
    hearth_model_free(m);
    return st;
}

TEST(loader_errors_name_the_problem) {
    hearth_error err;
    CHECK(load_mutant(MUT_ARCH, &err) == HEARTH_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "unsupported architecture 'gpt-j'") != NULL, "%s", err.msg);
    CHECK(load_mutant(MUT_DROP_TENSOR, &err) == HEARTH_ERR_BAD_MODEL);
    CHECKF(strstr(err.msg, "blk.2.attn_q.weight") && strstr(err.msg, "missing"), "%s", err.msg);
    CHECK(load_mutant(MUT_SHAPE, &err) == HEARTH_ERR_BAD_MODEL);
    CHECKF(strstr(err.msg, "blk.2.attn_q.weight") && strstr(err.msg, "shape"), "%s", err.msg);
    CHECK(load_mutant(MUT_TYPE, &err) == HEARTH_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "blk.2.attn_q.weight") && strstr(err.msg, "Q4_1"), "%s", err.msg);
    CHECK(load_mutant(MUT_HEADS, &err) == HEARTH_ERR_BAD_MODEL);
    hearth_model *m;
    CHECK(hearth_model_load(test_shared("vocab/ggml-vocab-gpt-2.gguf"), NULL, &m, &err) ==
          HEARTH_ERR_UNSUPPORTED);
    CHECK(hearth_model_load("/nonexistent.gguf", NULL, &m, &err) == HEARTH_ERR_IO);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    RUN(f32_greedy_from_bos_matches_llama2c_and_llama_cpp);
    RUN(f32_greedy_prompt_matches_llama2c);
    RUN(f32_logits_match_llama_cpp);
    RUN(q8_0_matches_llama_cpp);
    RUN(q4_0_matches_llama_cpp);
    RUN(batching_and_threads_agree);
    RUN(neox_rope_is_permuted_norm_rope);
    RUN(decode_rejects_bad_batches);
    RUN(loader_errors_name_the_problem);
    return test_finish();
}
