/* test_eval.c — `hearth eval` against llama.cpp's llama-perplexity.
 *
 * On stories260K (F32, and Q8_0 / Q4_0 against F32) perplexity and mean KL
 * divergence must be within 5% of what llama-perplexity reported for the
 * same files, text and chunking (tests/data/eval).  Runs the hearth binary
 * built beside this test.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

static char hearth_bin[1024];
static char text_path[512];

/* Runs hearth eval --json and parses its output; NULL on failure. */
static json_t *run_eval(const char *model, const char *ref) {
    char out[512], cmd[8192], mpath[1024], rpath[1100] = "";
    snprintf(out, sizeof out, "%s/eval.json", test_tmpdir());
    snprintf(mpath, sizeof mpath, "%s", test_shared(model)); /* test_shared reuses its buffer */
    if (ref) snprintf(rpath, sizeof rpath, "--ref '%s'", test_shared(ref));
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' %s -f '%s' -c 128 -t 2 --json >'%s' 2>/dev/null",
             hearth_bin, mpath, rpath, text_path, out);
    if (system(cmd) != 0) return NULL;
    return json_load_file(out, 0, NULL);
}

static bool within(double got, double want, double rel) {
    return fabs(got - want) <= rel * want;
}

TEST(perplexity_and_kld_match_llama_cpp) {
    json_t *want = json_load_file("tests/data/eval/llamacpp-stories260K.json", 0, NULL);
    REQUIRE(want);
    json_t *f32 = run_eval("models/stories260K.gguf", NULL);
    REQUIRE(f32);
    double p = json_real_value(json_object_get(f32, "perplexity"));
    double w = json_real_value(json_object_get(json_object_get(want, "f32"), "perplexity"));
    printf("  f32: perplexity %.4f (llama.cpp %.4f)\n", p, w);
    CHECKF(within(p, w, 0.05), "f32 perplexity %g vs %g", p, w);
    json_decref(f32);
    const char *types[] = {"q8_0", "q4_0"};
    for (int i = 0; i < 2; i++) {
        char model[128];
        snprintf(model, sizeof model, "models/stories260K-%s.gguf", types[i]);
        json_t *r = run_eval(model, "models/stories260K.gguf");
        REQUIRE(r);
        json_t *ref = json_object_get(want, types[i]);
        double pq = json_real_value(json_object_get(r, "perplexity"));
        double kld = json_real_value(json_object_get(r, "kld_mean"));
        double p99 = json_real_value(json_object_get(r, "kld_p99"));
        double wp = json_real_value(json_object_get(ref, "perplexity"));
        double wk = json_real_value(json_object_get(ref, "kld_mean"));
        printf("  %s: perplexity %.4f (llama.cpp %.4f), KLD mean %.6f (%.6f), p99 %.6f (%.6f), "
               "top-1 %.1f%%\n",
               types[i], pq, wp, kld, wk, p99, json_real_value(json_object_get(ref, "kld_p99")),
               100 * json_real_value(json_object_get(r, "top1_agreement")));
        CHECKF(within(pq, wp, 0.05), "%s perplexity %g vs %g", types[i], pq, wp);
        CHECKF(within(kld, wk, 0.05), "%s KLD %g vs %g", types[i], kld, wk);
        json_decref(r);
    }
    json_decref(want);
}

TEST(bad_input) {
    char cmd[8192], model[1024], other[1024];
    snprintf(model, sizeof model, "%s", test_shared("models/stories260K.gguf"));
    snprintf(other, sizeof other, "%s", test_shared("vocab/ggml-vocab-gpt-2.gguf"));
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' -f /nonexistent.txt 2>/dev/null >/dev/null",
             hearth_bin, model);
    CHECK(system(cmd) != 0);
    /* A reference that is no model at all. */
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --ref '%s' -f '%s' 2>/dev/null >/dev/null",
             hearth_bin, model, other, text_path);
    CHECK(system(cmd) != 0);
    /* A text shorter than one chunk. */
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' -f '%s' -c 4096 2>/dev/null >/dev/null",
             hearth_bin, model, text_path);
    CHECK(system(cmd) != 0);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    snprintf(hearth_bin, sizeof hearth_bin, "%s", test_hearth_bin(argv[0]));
    /* The text: three reference stories, as llama-perplexity was given. */
    snprintf(text_path, sizeof text_path, "%s/stories.txt", test_tmpdir());
    FILE *out = fopen(text_path, "wb");
    const char *parts[] = {"models/reference/stories260K.llama2c.greedy-from-BOS.256steps.txt",
                           "models/reference/stories260K.llama2c.t1.0-p0.9-seed133742.256steps.txt",
                           "models/reference/stories260K.llama2c.greedy-from-BOS.256steps.txt"};
    for (int i = 0; out && i < 3; i++) {
        size_t len;
        char *s = test_read_file(test_shared(parts[i]), &len);
        if (s) fwrite(s, 1, len, out);
        free(s);
    }
    if (out) fclose(out);
    RUN(perplexity_and_kld_match_llama_cpp);
    RUN(bad_input);
    return test_finish();
}
