/* test_convert.c — Hugging Face checkpoints through convert, against
 * PyTorch/transformers.
 *
 * tests/data/hf holds tiny random-weight checkpoints of each architecture
 * (llama, qwen2, qwen3, qwen3_moe, qwen2_moe, mixtral) made by
 * tools/golden/hf_fixtures.py, with what transformers computed for them in
 * float64: the logits of every position of a 24-token sequence, a greedy
 * continuation, and the tokenizer's encodings of a few strings.  Each is
 * converted to GGUF here, loaded and run; the logits must match.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "convert/safetensors.h"
#include "hearth.h"
#include "test.h"
#include "util/dtype.h"

static const char *archs[] = {"llama", "qwen2", "qwen3", "qwen3_moe", "qwen2_moe", "mixtral"};
enum { N_ARCHS = 6, MAX_IDS = 64 };

typedef struct golden {
    int32_t ids[MAX_IDS];
    int n_ids;
    int32_t prompt[MAX_IDS], cont[MAX_IDS];
    int n_prompt, n_cont;
    float *logits; /* (n_ids, n_vocab) */
    int n_vocab;
    json_t *root;
} golden;

static int read_int_array(const json_t *a, int32_t *out, int cap) {
    int n = 0;
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) {
        if (n < cap) out[n++] = (int32_t)json_integer_value(v);
    }
    return n;
}

static bool load_golden(const char *arch, golden *g) {
    char path[512];
    memset(g, 0, sizeof *g);
    snprintf(path, sizeof path, "tests/data/hf/%s/golden.json", arch);
    g->root = json_load_file(path, 0, NULL);
    if (!g->root) return false;
    g->n_ids = read_int_array(json_object_get(g->root, "ids"), g->ids, MAX_IDS);
    g->n_prompt = read_int_array(json_object_get(g->root, "greedy_prompt"), g->prompt, MAX_IDS);
    g->n_cont = read_int_array(json_object_get(g->root, "greedy_continuation"), g->cont, MAX_IDS);
    const json_t *shape = json_object_get(g->root, "logits_shape");
    g->n_vocab = (int)json_integer_value(json_array_get(shape, 1));
    snprintf(path, sizeof path, "tests/data/hf/%s/golden.logits.f32le", arch);
    size_t len = 0;
    g->logits = (float *)test_read_file(path, &len);
    return g->logits && len == (size_t)g->n_ids * (size_t)g->n_vocab * sizeof(float);
}

static void golden_free(golden *g) {
    free(g->logits);
    json_decref(g->root);
}

static bool convert(const char *arch, uint32_t type, char *out, size_t cap) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/data/hf/%s", arch);
    snprintf(out, cap, "%s/%s-%s.gguf", test_tmpdir(), arch, hearth_dtype_name(type));
    convert_params p = {type, NULL, NULL};
    hearth_error err;
    if (convert_hf_dir(dir, out, &p, &err) != HEARTH_OK) {
        printf("  convert %s: %s\n", arch, err.msg);
        return false;
    }
    return true;
}

/* Runs all golden ids in one batch and compares every position's logits.
 * Returns the max |diff| relative to the largest |logit|; *top1 counts
 * positions whose argmax agrees. */
static double run_logits(const char *path, const golden *g, hearth_kv_type kv, int *top1) {
    hearth_model *m = NULL;
    hearth_context *c = NULL;
    hearth_error err;
    double rel = INFINITY;
    *top1 = 0;
    if (hearth_model_load(path, NULL, &m, &err) != HEARTH_OK) {
        printf("  load: %s\n", err.msg);
        return rel;
    }
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = 128;
    cp.n_batch = 64;
    cp.n_threads = 2;
    cp.kv_type = kv;
    int32_t pos[MAX_IDS], seq[MAX_IDS];
    bool want[MAX_IDS];
    for (int i = 0; i < g->n_ids; i++) {
        pos[i] = i;
        seq[i] = 0;
        want[i] = true;
    }
    hearth_batch b = {(uint32_t)g->n_ids, g->ids, pos, seq, want};
    if (hearth_model_n_vocab(m) == g->n_vocab &&
        hearth_context_create(m, &cp, &c, &err) == HEARTH_OK &&
        hearth_decode(c, &b, &err) == HEARTH_OK) {
        double max_diff = 0, max_abs = 0;
        for (int t = 0; t < g->n_ids; t++) {
            const float *l = hearth_get_logits(c, (uint32_t)t);
            const float *r = g->logits + (size_t)t * g->n_vocab;
            int a = 0, ra = 0;
            for (int i = 0; i < g->n_vocab; i++) {
                max_diff = fmax(max_diff, fabs((double)l[i] - r[i]));
                max_abs = fmax(max_abs, fabs((double)r[i]));
                if (l[i] > l[a]) a = i;
                if (r[i] > r[ra]) ra = i;
            }
            *top1 += a == ra;
        }
        rel = max_diff / max_abs;
    } else {
        printf("  run: %s\n", err.msg);
    }
    hearth_context_free(c);
    hearth_model_free(m);
    return rel;
}

TEST(f32_logits_match_transformers) {
    for (int a = 0; a < N_ARCHS; a++) {
        golden g;
        REQUIRE(load_golden(archs[a], &g));
        char path[512];
        if (!convert(archs[a], HEARTH_DTYPE_F32, path, sizeof path)) {
            CHECKF(false, "%s: convert failed", archs[a]);
            golden_free(&g);
            continue;
        }
        int top1;
        double rel = run_logits(path, &g, HEARTH_KV_F32, &top1);
        printf("  %-10s f32: max |logit diff| / max |logit| = %.2e, top-1 %d/%d\n", archs[a], rel,
               top1, g.n_ids);
        CHECKF(rel <= 1e-3, "%s: relative logit error %g", archs[a], rel);
        CHECKF(top1 == g.n_ids, "%s: top-1 agrees at %d of %d positions", archs[a], top1, g.n_ids);
        golden_free(&g);
    }
}

TEST(half_types_stay_close) {
    /* bf16 weights are the checkpoint's own values (the activations are
     * rounded to bf16 in the dot products); f16 rounds the weights. */
    uint32_t types[2] = {HEARTH_DTYPE_BF16, HEARTH_DTYPE_F16};
    for (int a = 0; a < N_ARCHS; a++) {
        golden g;
        REQUIRE(load_golden(archs[a], &g));
        for (int k = 0; k < 2; k++) {
            char path[512];
            if (!convert(archs[a], types[k], path, sizeof path)) {
                CHECKF(false, "%s: convert failed", archs[a]);
                continue;
            }
            int top1;
            double rel = run_logits(path, &g, HEARTH_KV_F16, &top1);
            printf("  %-10s %-4s: relative logit error %.2e, top-1 %d/%d\n", archs[a],
                   hearth_dtype_name(types[k]), rel, top1, g.n_ids);
            CHECKF(rel < 0.03, "%s %s: relative logit error %g", archs[a],
                   hearth_dtype_name(types[k]), rel);
            CHECKF(top1 >= g.n_ids - 2, "%s %s: top-1 agrees at %d of %d", archs[a],
                   hearth_dtype_name(types[k]), top1, g.n_ids);
        }
        golden_free(&g);
    }
}

/* Greedy continuation of the golden prompt; returns how many tokens equal
 * transformers' (a part at a near tie counts as a full match). */
static int greedy_match(const char *arch, const char *path, const golden *g, hearth_kv_type kv) {
    hearth_model *m = NULL;
    hearth_context *c = NULL;
    hearth_error err;
    int match = -1;
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = 128;
    cp.n_threads = 2;
    cp.kv_type = kv;
    int32_t pos[MAX_IDS], seq[MAX_IDS] = {0};
    for (int i = 0; i < MAX_IDS; i++) pos[i] = i;
    hearth_batch b = {(uint32_t)g->n_prompt, g->prompt, pos, seq, NULL};
    if (hearth_model_load(path, NULL, &m, &err) != HEARTH_OK ||
        hearth_context_create(m, &cp, &c, &err) != HEARTH_OK ||
        hearth_decode(c, &b, &err) != HEARTH_OK) {
        printf("  %s: %s\n", arch, err.msg);
        goto out;
    }
    /* transformers generated with min_new_tokens, which bans the end token. */
    char cfg_path[256];
    snprintf(cfg_path, sizeof cfg_path, "tests/data/hf/%s/config.json", arch);
    json_t *cfg = json_load_file(cfg_path, 0, NULL);
    int eos = (int)json_integer_value(json_object_get(cfg, "eos_token_id"));
    json_decref(cfg);
    uint32_t last = (uint32_t)g->n_prompt - 1;
    match = 0;
    for (int i = 0; i < g->n_cont; i++) {
        const float *l = hearth_get_logits(c, last);
        int best = eos == 0 ? 1 : 0;
        for (int v = 0; v < g->n_vocab; v++) {
            if (v != eos && l[v] > l[best]) best = v;
        }
        if (best != g->cont[i]) {
            /* Allowed only where transformers' choice was a near tie for us too. */
            float gap = l[best] - l[g->cont[i]];
            if (gap < 1e-4f * fabsf(l[best])) match = g->n_cont;
            break;
        }
        match++;
        hearth_token t = best;
        hearth_batch one = {1, &t, &pos[g->n_prompt + i], seq, NULL};
        if (hearth_decode(c, &one, &err) != HEARTH_OK) break;
        last = 0;
    }
out:
    hearth_context_free(c);
    hearth_model_free(m);
    return match;
}

TEST(greedy_continuation_matches_transformers) {
    uint32_t types[3] = {HEARTH_DTYPE_F32, HEARTH_DTYPE_F16, HEARTH_DTYPE_BF16};
    for (int a = 0; a < N_ARCHS; a++) {
        golden g;
        REQUIRE(load_golden(archs[a], &g));
        REQUIRE(g.n_cont == 32);
        for (int k = 0; k < 3; k++) {
            char path[512];
            REQUIRE(convert(archs[a], types[k], path, sizeof path));
            int match = greedy_match(archs[a], path, &g, k == 0 ? HEARTH_KV_F32 : HEARTH_KV_F16);
            printf("  %-10s %-4s: greedy continuation equal for %d/%d tokens\n", archs[a],
                   hearth_dtype_name(types[k]), match, g.n_cont);
            /* F32 must match all the way; the half types for the first 16 tokens. */
            int need = k == 0 ? g.n_cont : 16;
            CHECKF(match >= need, "%s %s: greedy continuation equal for %d of %d tokens", archs[a],
                   hearth_dtype_name(types[k]), match, g.n_cont);
        }
        golden_free(&g);
    }
}

TEST(tokenizers_match_transformers) {
    for (int a = 0; a < N_ARCHS; a++) {
        golden g;
        REQUIRE(load_golden(archs[a], &g));
        char path[512];
        REQUIRE(convert(archs[a], HEARTH_DTYPE_F32, path, sizeof path));
        hearth_tokenizer *tok = NULL;
        hearth_error err;
        REQUIRE(hearth_tokenizer_load(path, &tok, &err) == HEARTH_OK);
        const char *text;
        json_t *ids;
        json_object_foreach(json_object_get(g.root, "tokenizer"), text, ids) {
            int32_t want[256];
            int n_want = read_int_array(ids, want, 256);
            hearth_token got[256];
            size_t n_got = 0;
            hearth_status st = hearth_tokenize(
                tok, text, strlen(text), HEARTH_TOKENIZE_PARSE_SPECIAL, got, 256, &n_got, &err);
            bool same = st == HEARTH_OK && (int)n_got == n_want &&
                        memcmp(got, want, n_got * sizeof *got) == 0;
            CHECKF(same, "%s: '%s' encodes to %zu ids, transformers gives %d", archs[a], text,
                   n_got, n_want);
        }
        hearth_tokenizer_free(tok);
        golden_free(&g);
    }
}

TEST(bad_checkpoints_are_refused) {
    hearth_error err;
    convert_params p = {HEARTH_DTYPE_F32, NULL, NULL};
    char out[512];
    snprintf(out, sizeof out, "%s/bad.gguf", test_tmpdir());
    CHECK(convert_hf_dir("/nonexistent-dir", out, &p, &err) == HEARTH_ERR_BAD_MODEL);
    CHECK(strstr(err.msg, "config.json") != NULL);

    /* Hostile safetensors headers. */
    struct {
        const char *header;
        const char *needle;
    } cases[] = {
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,999]}}", "run past"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", "bytes of data"},
        {"{\"w\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", "dtype I64"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", "dimensions"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,16]}}",
         "overflow"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "data_offsets"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "shape[0]"},
        {"{\"w\":{\"dtype\":\"F32\"}}", "needs dtype"},
        {"[1,2,3]", "not a JSON object"},
        {"{\"w\": ", "not JSON"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         "not JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t hl = strlen(cases[i].header);
        size_t len = 8 + hl + 16;
        uint8_t *buf = calloc(1, len);
        REQUIRE(buf);
        uint64_t h = hl;
        memcpy(buf, &h, 8);
        memcpy(buf + 8, cases[i].header, hl);
        st_set *s = NULL;
        hearth_status st = st_set_open_memory(buf, len, &s, &err);
        CHECKF(st != HEARTH_OK && strstr(err.msg, cases[i].needle), "case %zu: status %d '%s'", i,
               st, st == HEARTH_OK ? "" : err.msg);
        st_set_free(s);
        free(buf);
    }
    /* Two tensors sharing bytes. */
    const char *overlap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    {
        size_t hl = strlen(overlap), len = 8 + hl + 16;
        uint8_t *buf = calloc(1, len);
        REQUIRE(buf);
        uint64_t h = hl;
        memcpy(buf, &h, 8);
        memcpy(buf + 8, overlap, hl);
        st_set *s = NULL;
        CHECK(st_set_open_memory(buf, len, &s, &err) == HEARTH_ERR_BAD_MODEL);
        CHECKF(strstr(err.msg, "overlap") != NULL, "%s", err.msg);
        st_set_free(s);
        free(buf);
    }
    /* A header length past the end of the file. */
    uint8_t tiny[12] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    st_set *s = NULL;
    CHECK(st_set_open_memory(tiny, sizeof tiny, &s, &err) == HEARTH_ERR_BAD_MODEL);
}

/* Copies a fixture directory into the scratch folder, with one file changed. */
static void copy_fixture(const char *arch, const char *dst, const char *trunc_file, size_t keep,
                         const char *arch_name) {
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json",
                           "tokenizer_config.json"};
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dst);
    if (system(cmd) != 0) return;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char src[512], out[512];
        snprintf(src, sizeof src, "tests/data/hf/%s/%s", arch, files[i]);
        snprintf(out, sizeof out, "%s/%s", dst, files[i]);
        size_t len = 0;
        char *data = test_read_file(src, &len);
        if (!data) continue;
        if (trunc_file && !strcmp(files[i], trunc_file) && keep < len) len = keep;
        FILE *fp = fopen(out, "wb");
        if (fp) {
            if (arch_name && !strcmp(files[i], "config.json")) {
                char *at = strstr(data, "LlamaForCausalLM");
                if (at) {
                    fwrite(data, 1, (size_t)(at - data), fp);
                    fputs(arch_name, fp);
                    fputs(at + strlen("LlamaForCausalLM"), fp);
                }
            } else {
                fwrite(data, 1, len, fp);
            }
            fclose(fp);
        }
        free(data);
    }
}

TEST(broken_checkpoint_directories) {
    hearth_error err;
    convert_params p = {HEARTH_DTYPE_F32, NULL, NULL};
    char dir[512], out[512];
    snprintf(out, sizeof out, "%s/broken.gguf", test_tmpdir());
    /* The data section cut short. */
    snprintf(dir, sizeof dir, "%s/truncated-ckpt", test_tmpdir());
    copy_fixture("llama", dir, "model.safetensors", 200000, NULL);
    CHECK(convert_hf_dir(dir, out, &p, &err) == HEARTH_ERR_BAD_MODEL);
    CHECKF(strstr(err.msg, "run past") != NULL, "%s", err.msg);
    /* Cut inside the header. */
    snprintf(dir, sizeof dir, "%s/truncated-header", test_tmpdir());
    copy_fixture("llama", dir, "model.safetensors", 100, NULL);
    CHECK(convert_hf_dir(dir, out, &p, &err) == HEARTH_ERR_BAD_MODEL);
    CHECKF(strstr(err.msg, "header") != NULL, "%s", err.msg);
    /* An architecture hearth does not convert. */
    snprintf(dir, sizeof dir, "%s/gptj-ckpt", test_tmpdir());
    copy_fixture("llama", dir, NULL, 0, "GPTJForCausalLM");
    CHECK(convert_hf_dir(dir, out, &p, &err) == HEARTH_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "GPTJForCausalLM") != NULL, "%s", err.msg);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    RUN(f32_logits_match_transformers);
    RUN(half_types_stay_close);
    RUN(greedy_continuation_matches_transformers);
    RUN(tokenizers_match_transformers);
    RUN(bad_checkpoints_are_refused);
    RUN(broken_checkpoint_directories);
    return test_finish();
}
