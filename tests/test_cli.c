/* test_cli.c — the hearth executable, run as a user runs it.
 *
 * Each case runs the binary built beside this test (build/<kind>/hearth)
 * through the shell, capturing stdout, stderr and the exit status.  Text
 * output is compared with llama2.c's own output for the same model and
 * settings (greedy, and temperature 1 / top-p 0.9 with seed 133742, which
 * also checks the sampler's random stream); bad input must produce exactly
 * one error line on stderr, nothing on stdout and a non-zero status.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "gguf/gguf.h"
#include "test.h"

static char hearth_bin[1024];
static const char *model_f32;

typedef struct result {
    int status;
    char *out;
    char *err;
} result;

static void result_free(result *r) {
    free(r->out);
    free(r->err);
}

/* Runs `hearth ARGS` (args is shell text) and captures everything. */
static result run(const char *args) {
    result r = {-1, NULL, NULL};
    char out_path[512], err_path[512], cmd[8192];
    snprintf(out_path, sizeof out_path, "%s/stdout", test_tmpdir());
    snprintf(err_path, sizeof err_path, "%s/stderr", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s' </dev/null", hearth_bin, args, out_path,
             err_path);
    int st = system(cmd);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = test_read_file(out_path, NULL);
    r.err = test_read_file(err_path, NULL);
    if (!r.out) r.out = calloc(1, 1);
    if (!r.err) r.err = calloc(1, 1);
    return r;
}

static void rstrip(char *s) {
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ')) s[--n] = '\0';
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Expects failure: non-zero status, empty stdout, one stderr line with needle. */
static void expect_error(const char *args, const char *needle) {
    result r = run(args);
    CHECKF(r.status != 0 && r.status < 128, "%s: status %d", args, r.status);
    CHECKF(r.out[0] == '\0', "%s: wrote to stdout: %.80s", args, r.out);
    CHECKF(count_lines(r.err) == 1 && !strncmp(r.err, "hearth: error: ", 15),
           "%s: stderr is not one error line: %s", args, r.err);
    CHECKF(strstr(r.err, needle) != NULL, "%s: error lacks '%s': %s", args, needle, r.err);
    result_free(&r);
}

/* Compares stdout with a reference text file (trailing whitespace ignored). */
static void expect_text(const char *args, const char *ref_rel) {
    result r = run(args);
    char *ref = test_read_file(test_shared(ref_rel), NULL);
    REQUIRE(ref);
    CHECKF(r.status == 0, "%s: status %d, stderr %s", args, r.status, r.err);
    rstrip(ref);
    rstrip(r.out);
    if (strcmp(ref, r.out) != 0) {
        size_t i = 0;
        while (ref[i] && ref[i] == r.out[i]) i++;
        CHECKF(false, "%s: output differs from %s at byte %zu:\n    ours: %.60s\n    ref:  %.60s",
               args, ref_rel, i, r.out + i, ref + i);
    }
    CHECKF(strstr(r.err, "tok/s") != NULL, "no speed report on stderr: %s", r.err);
    free(ref);
    result_free(&r);
}

TEST(help_documents_every_flag) {
    result r = run("--help");
    CHECK(r.status == 0 && strstr(r.out, "run") != NULL);
    result_free(&r);
    r = run("run --help");
    CHECK(r.status == 0);
    const char *flags[] = {"-m",
                           "-p",
                           "-n",
                           "--temp",
                           "--top-k",
                           "--top-p",
                           "--min-p",
                           "--seed",
                           "-t",
                           "--ids",
                           "--repeat-penalty",
                           "--presence-penalty",
                           "--frequency-penalty",
                           "--repeat-last-n",
                           "-c",
                           "-f",
                           "--kv-type",
                           "--no-mmap",
                           "--verbose"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        char pat[64], pat2[64];
        snprintf(pat, sizeof pat, "%s ", flags[i]);
        snprintf(pat2, sizeof pat2, "%s,", flags[i]);
        CHECKF(strstr(r.out, pat) || strstr(r.out, pat2), "run --help does not document %s",
               flags[i]);
    }
    result_free(&r);
}

TEST(greedy_text_matches_llama2c) {
    char args[1024];
    snprintf(args, sizeof args, "run -m '%s' -p 'Once upon a time' -n 60 --temp 0 -t 2", model_f32);
    expect_text(args,
                "models/reference/stories260K.llama2c.greedy-prompt-Once-upon-a-time.64steps.txt");
    snprintf(args, sizeof args, "run -m '%s' -n 256 --temp 0 --kv-type f32", model_f32);
    expect_text(args, "models/reference/stories260K.llama2c.greedy-from-BOS.256steps.txt");
}

TEST(seeded_sampling_matches_llama2c) {
    /* llama2.c -t 1.0 -p 0.9 -s 133742: temperature then nucleus, one
     * xorshift draw per token.  Top-k and min-p are off to match. */
    char args[1024];
    snprintf(args, sizeof args,
             "run -m '%s' -n 256 --temp 1 --top-p 0.9 --top-k 0 --min-p 0 --seed 133742 "
             "--kv-type f32",
             model_f32);
    expect_text(args, "models/reference/stories260K.llama2c.t1.0-p0.9-seed133742.256steps.txt");
}

TEST(ids_output) {
    char args[1024];
    snprintf(args, sizeof args, "run -m '%s' -p 'Once upon a time' -n 8 --temp 0 --ids", model_f32);
    result r = run(args);
    CHECK(r.status == 0);
    CHECKF(!strcmp(r.out, "1 403 407 261 378\n432 383 286 261 376 298 315 421\n"), "got: %s",
           r.out);
    result_free(&r);
}

TEST(prompt_from_file_and_seed_reproduces) {
    char path[512], args[1024];
    snprintf(path, sizeof path, "%s/prompt.txt", test_tmpdir());
    FILE *fp = fopen(path, "w");
    REQUIRE(fp);
    fputs("Once upon a time", fp);
    fclose(fp);
    snprintf(args, sizeof args, "run -m '%s' -f '%s' -n 30 --seed 7 --temp 0.9", model_f32, path);
    result a = run(args), b = run(args);
    CHECK(a.status == 0 && b.status == 0);
    CHECK(!strncmp(a.out, "Once upon a time", 16));
    CHECK(!strcmp(a.out, b.out));
    result_free(&a);
    result_free(&b);
}

TEST(bad_input_is_one_error_line) {
    char args[2048], path[512];
    expect_error("run -m /nonexistent/model.gguf -p hi", "cannot open");
    expect_error("run -p hi", "needs a model");
    expect_error("frobnicate", "unknown command");
    snprintf(args, sizeof args, "run -m '%s' --temp abc", model_f32);
    expect_error(args, "--temp");
    snprintf(args, sizeof args, "run -m '%s' --top-p 2", model_f32);
    expect_error(args, "--top-p");
    snprintf(args, sizeof args, "run -m '%s' -n 12x", model_f32);
    expect_error(args, "-n");
    snprintf(args, sizeof args, "run -m '%s' -t 0", model_f32);
    expect_error(args, "-t");
    snprintf(args, sizeof args, "run -m '%s' --kv-type q4", model_f32);
    expect_error(args, "--kv-type");
    snprintf(args, sizeof args, "run -m '%s' --bogus", model_f32);
    expect_error(args, "unknown option");
    snprintf(args, sizeof args, "run -m '%s' --seed", model_f32);
    expect_error(args, "needs a value");
    snprintf(args, sizeof args, "run -m '%s' -c 8 -p 'Once upon a time there was a girl'",
             model_f32);
    expect_error(args, "longer than the context");
    snprintf(args, sizeof args, "run -m '%s' -f /nonexistent/prompt.txt", model_f32);
    expect_error(args, "prompt file");

    /* Not a model: a text file; a truncated model; a model of another architecture. */
    snprintf(path, sizeof path, "%s/notes.gguf", test_tmpdir());
    FILE *fp = fopen(path, "w");
    REQUIRE(fp);
    fputs("just some notes\n", fp);
    fclose(fp);
    snprintf(args, sizeof args, "run -m '%s'", path);
    expect_error(args, "not a GGUF file");

    size_t len;
    char *whole = test_read_file(model_f32, &len);
    REQUIRE(whole);
    snprintf(path, sizeof path, "%s/truncated.gguf", test_tmpdir());
    fp = fopen(path, "wb");
    REQUIRE(fp);
    fwrite(whole, 1, len / 2, fp);
    fclose(fp);
    free(whole);
    snprintf(args, sizeof args, "run -m '%s'", path);
    expect_error(args, "runs past the end");

    gguf_writer *w;
    hearth_error err;
    REQUIRE(gguf_writer_create(&w, &err) == HEARTH_OK);
    gguf_writer_set_str(w, "general.architecture", "mamba", &err);
    snprintf(path, sizeof path, "%s/mamba.gguf", test_tmpdir());
    REQUIRE(gguf_writer_write_file(w, path, NULL, NULL, &err) == HEARTH_OK);
    gguf_writer_free(w);
    snprintf(args, sizeof args, "run -m '%s'", path);
    expect_error(args, "unsupported architecture 'mamba'");
}

/* The greedy ids `run --ids` prints after the prompt line, into out. */
static int run_ids(const char *args, int32_t *out, int cap, result *keep) {
    *keep = run(args);
    const char *nl = strchr(keep->out, '\n');
    if (keep->status != 0 || !nl) return 0;
    return (int)test_parse_ints(nl + 1, out, (size_t)cap);
}

TEST(memory_flags_documented_and_checked) {
    result r = run("run --help");
    const char *flags[] = {"--mlock", "--prefault", "--memory-budget", "--compute-type"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, "%s ", flags[i]);
        CHECKF(strstr(r.out, pat) != NULL, "run --help does not document %s", flags[i]);
    }
    CHECKF(strstr(r.out, "90% of physical RAM") != NULL, "the default budget is not stated");
    result_free(&r);
    char args[2048];
    snprintf(args, sizeof args, "run -m '%s' --memory-budget 12X", model_f32);
    expect_error(args, "--memory-budget");
    snprintf(args, sizeof args, "run -m '%s' --memory-budget -5G", model_f32);
    expect_error(args, "--memory-budget");
    snprintf(args, sizeof args, "run -m '%s' --compute-type q4_0", model_f32);
    expect_error(args, "--compute-type");
    snprintf(args, sizeof args, "run -m '%s' --compute-type", model_f32);
    expect_error(args, "needs a value");
}

TEST(memory_budget_below_plan_is_refused) {
    /* stories260K with a 2048-token context plans about 6 MiB. */
    char args[2048];
    snprintf(args, sizeof args, "run -m '%s' -p 'Once upon a time' -n 8 --memory-budget 2M",
             model_f32);
    expect_error(args, "exceeds the budget of 2.0 MiB");
    result r = run(args);
    const char *parts[] = {"model file", "weights", "cast copies",
                           "KV cache",   "scratch", "2048 positions"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        CHECKF(strstr(r.err, parts[i]) != NULL, "breakdown lacks '%s': %s", parts[i], r.err);
    }
    result_free(&r);
    /* The same run with room for the plan works; a smaller context fits
     * the budget that refused the larger one. */
    snprintf(args, sizeof args, "run -m '%s' -p 'Once upon a time' -n 8 --memory-budget 64M",
             model_f32);
    r = run(args);
    CHECKF(r.status == 0 && !strncmp(r.out, "Once upon a time", 16), "status %d: %s", r.status,
           r.err);
    result_free(&r);
    snprintf(args, sizeof args,
             "run -m '%s' -p 'Once upon a time' -n 8 -c 64 -t 2 --memory-budget 2M", model_f32);
    r = run(args);
    CHECKF(r.status == 0, "status %d: %s", r.status, r.err);
    result_free(&r);
}

TEST(compute_types_give_the_same_greedy_output) {
    char *text = test_read_file(
        test_shared(
            "models/reference/stories260K.llama2c.greedy-prompt-Once-upon-a-time.64steps.ids"),
        NULL);
    REQUIRE(text);
    char *line2 = strchr(text, '\n');
    char *ids2 = line2 ? strchr(line2, ':') : NULL;
    int32_t all[80];
    size_t na = ids2 ? test_parse_ints(ids2 + 1, all, 80) : 0;
    free(text);
    REQUIRE(na == 64);
    const int32_t *ref = all + 4; /* after the prompt's four ids */
    const char *types[] = {"f32", "f16", "bf16", "auto"};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char args[2048];
        snprintf(args, sizeof args,
                 "run -m '%s' -p 'Once upon a time' -n 60 --temp 0 --ids -t 2 --compute-type %s "
                 "--verbose",
                 model_f32, types[k]);
        int32_t got[80];
        result r;
        int n = run_ids(args, got, 80, &r);
        int same = 0;
        while (same < n && same < 60 && got[same] == ref[same]) same++;
        printf("  --compute-type %-4s: %d of 60 greedy ids equal llama2.c's\n", types[k], same);
        CHECKF(same >= (k == 0 ? 60 : 20), "--compute-type %s: %d of 60 equal (status %d: %s)",
               types[k], same, r.status, r.err);
        /* --verbose says what auto chose. */
        if (!strcmp(types[k], "auto")) {
            CHECKF(strstr(r.err, "auto: ") != NULL, "auto does not say what it chose: %s", r.err);
        }
        result_free(&r);
    }
}

TEST(verbose_prints_the_memory_table) {
    char args[2048];
    snprintf(args, sizeof args, "run -m '%s' -p 'Once upon a time' -n 4 --verbose --prefault",
             model_f32);
    result r = run(args);
    CHECKF(r.status == 0, "status %d: %s", r.status, r.err);
    const char *rows[] = {"mapped",      "resident", "locked", "KV cache", "scratch",
                          "cast copies", "budget",   "free",   "RAM"};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, "\n  %s ", rows[i]);
        CHECKF(strstr(r.err, pat) != NULL, "the memory table has no '%s' row: %s", rows[i], r.err);
    }
    result_free(&r);
}

TEST(mlock_locks_or_explains_the_limit) {
    char args[2048];
    snprintf(args, sizeof args, "run -m '%s' -p 'Once upon a time' -n 4 --mlock --verbose",
             model_f32);
    result r = run(args);
    if (r.status == 0) {
        /* AddressSanitizer's mlock locks nothing. */
#if !defined(__SANITIZE_ADDRESS__)
        const char *locked = strstr(r.err, "\n  locked ");
        CHECKF(locked && !strstr(locked, "        0 B"), "nothing locked: %s", r.err);
#endif
    } else {
        CHECKF(strstr(r.err, "ulimit -l") != NULL, "status %d: %s", r.status, r.err);
    }
    result_free(&r);
    /* Without CAP_IPC_LOCK and with a 64 KiB limit, the run is refused with
     * the way to raise it (setpriv drops the capability, even for root). */
    if (system("command -v setpriv >/dev/null 2>&1") == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "sh -c 'ulimit -l 64 && exec setpriv --inh-caps=-ipc_lock "
                 "--bounding-set=-ipc_lock \"$0\" \"$@\"' '%s' run -m '%s' -p Once -n 4 --mlock",
                 hearth_bin, model_f32);
        char out_path[512], err_path[512], full[4096];
        snprintf(out_path, sizeof out_path, "%s/stdout", test_tmpdir());
        snprintf(err_path, sizeof err_path, "%s/stderr", test_tmpdir());
        snprintf(full, sizeof full, "%s >'%s' 2>'%s' </dev/null", cmd, out_path, err_path);
        int st = system(full);
        char *out = test_read_file(out_path, NULL), *err = test_read_file(err_path, NULL);
        REQUIRE(out && err);
        if (strstr(err, "setpriv:")) {
            printf("  setpriv cannot drop CAP_IPC_LOCK here: %s", err);
        } else {
            CHECKF(WIFEXITED(st) && WEXITSTATUS(st) != 0, "status %d", st);
            CHECKF(out[0] == '\0', "wrote to stdout: %.80s", out);
            CHECKF(count_lines(err) == 1 && strstr(err, "RLIMIT_MEMLOCK") &&
                       strstr(err, "ulimit -l") && strstr(err, "limits.conf"),
                   "not one line with the way to raise the limit: %s", err);
        }
        free(out);
        free(err);
    }
}

/* hearth bench: pp and tg figures that agree with each other (ms per
 * token, GB/s from the bytes per token, the share of the read bandwidth
 * it measured), the bytes per token within the file's weights, and bad
 * flags refused. */
TEST(bench_reports_speed_and_bandwidth) {
    char args[2048];
    snprintf(args, sizeof args, "bench -m '%s' -t 1 -p 16 -n 8 -r 2 --json", model_f32);
    result r = run(args);
    CHECKF(r.status == 0, "bench: status %d: %s", r.status, r.err);
    json_error_t je;
    json_t *o = json_loads(r.out, 0, &je);
    REQUIRE(o);
    double bw = json_number_value(json_object_get(o, "read_bandwidth_gbs"));
    double bytes = json_number_value(json_object_get(o, "weight_bytes_per_token"));
    gguf_file *f = NULL;
    hearth_error err;
    REQUIRE(gguf_open(model_f32, true, &f, &err) == HEARTH_OK);
    uint64_t all = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) all += f->tensors[i].nbytes;
    gguf_close(f);
    CHECKF(bw > 0.1 && bytes > 0 && bytes <= (double)all, "bandwidth %g GB/s, %g of %llu bytes", bw,
           bytes, (unsigned long long)all);
    json_t *res = json_object_get(o, "results");
    CHECK(json_array_size(res) == 2);
    const char *names[2] = {"pp16", "tg8"};
    for (size_t i = 0; i < 2 && i < json_array_size(res); i++) {
        json_t *e = json_array_get(res, i);
        double tok_s = json_number_value(json_object_get(e, "tok_s"));
        CHECKF(!strcmp(json_string_value(json_object_get(e, "test")), names[i]) && tok_s > 0,
               "result %zu", i);
        if (i == 1) {
            double ms = json_number_value(json_object_get(e, "ms_per_token"));
            double gbs = json_number_value(json_object_get(e, "gbs"));
            double share = json_number_value(json_object_get(e, "share_of_bandwidth"));
            CHECKF(fabs(ms - 1e3 / tok_s) < 1e-6 * ms, "ms/token %g at %g tok/s", ms, tok_s);
            CHECKF(fabs(gbs - tok_s * bytes / 1e9) < 1e-6 * gbs, "%g GB/s", gbs);
            /* each run is held to the bandwidth around it: the mean share is
             * near, not equal to, the mean GB/s over the mean bandwidth */
            CHECKF(share > 0 && share < 4 * gbs / bw + 1e-9, "share %g (%g / %g)", share, gbs, bw);
        }
    }
    json_decref(o);
    result_free(&r);
    snprintf(args, sizeof args, "bench -m '%s' -t 1 -p 16 -n 8 -r 1", model_f32);
    r = run(args);
    CHECK(r.status == 0 && strstr(r.out, "| tg8 ") && strstr(r.out, "of bandwidth") &&
          strstr(r.out, "| pp16 "));
    result_free(&r);
    expect_error("bench", "-m MODEL");
    snprintf(args, sizeof args, "bench -m '%s' -r 0", model_f32);
    expect_error(args, "-r");
    snprintf(args, sizeof args, "bench -m '%s' --threads x", model_f32);
    expect_error(args, "--threads");
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    snprintf(hearth_bin, sizeof hearth_bin, "%s", test_hearth_bin(argv[0]));
    static char model[1024];
    snprintf(model, sizeof model, "%s", test_shared("models/stories260K.gguf"));
    model_f32 = model;
    RUN(help_documents_every_flag);
    RUN(greedy_text_matches_llama2c);
    RUN(seeded_sampling_matches_llama2c);
    RUN(ids_output);
    RUN(prompt_from_file_and_seed_reproduces);
    RUN(bad_input_is_one_error_line);
    RUN(memory_flags_documented_and_checked);
    RUN(memory_budget_below_plan_is_refused);
    RUN(compute_types_give_the_same_greedy_output);
    RUN(verbose_prints_the_memory_table);
    RUN(mlock_locks_or_explains_the_limit);
    RUN(bench_reports_speed_and_bandwidth);
    return test_finish();
}
