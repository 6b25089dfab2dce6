/* test_sections.c — sectional generation.
 *
 * The planner alone (synthetic tokens, no model): which jobs may start in
 * each order, where sections end (a sentence end after min_tokens, the
 * cut back at max_tokens and on a loop), the tail carried into the next
 * prompt, the outline the model writes, hand-out in order, bad params.
 * Then with stories260K, the must-show: a single greedy completion of
 * 2,000 tokens loops; sectional generation with the loop guard writes as
 * much with no repeated span of 32 tokens or more (distinct-4-gram ratio
 * and longest repeated span printed for both).  Parallel sections decode
 * in one batch exactly as they would one at a time.  Last, the flags of
 * `hearth run`: --sections, --outline, --section-tokens, --json-schema,
 * --grammar, --loop-guard, and their bad values.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "hearth.h"
#include "sample/loopguard.h"
#include "test.h"

static hearth_model *model;
static const hearth_tokenizer *tok;
static char hearth_bin[1024];

/* Tokens of text (no BOS). */
static size_t toks(const char *text, hearth_token *out, size_t cap) {
    size_t n = 0;
    hearth_error err;
    if (hearth_tokenize(tok, text, strlen(text), 0, out, cap, &n, &err) != HEARTH_OK) return 0;
    return n;
}

static hearth_sections_params small_params(hearth_sections_order order) {
    hearth_sections_params p = hearth_sections_default_params();
    p.topic = "A day out";
    p.outline = "# Morning\n- Noon\n3. Evening\n";
    p.min_tokens = 10;
    p.max_tokens = 30;
    p.tail_tokens = 6;
    p.order = order;
    p.guard.action = HEARTH_LOOP_OFF;
    return p;
}

/* Starts every job that can start now; returns their indices in order. */
static int start_jobs(hearth_sections *g, uint32_t *idx, int cap, hearth_section_job *jobs) {
    int n = 0;
    hearth_error err;
    for (;;) {
        hearth_section_job j;
        if (hearth_sections_next_job(g, &j, &err) != HEARTH_OK || !j.prompt || n == cap) break;
        idx[n] = j.index;
        if (jobs) jobs[n] = j;
        n++;
    }
    return n;
}

/* Pushes the tokens of text into job; returns how many were taken before
 * the job ended (or all). */
static size_t feed(hearth_sections *g, uint32_t job, const char *text, bool *ended) {
    hearth_token t[512];
    size_t n = toks(text, t, 512);
    *ended = false;
    for (size_t i = 0; i < n; i++) {
        if (hearth_sections_push(g, job, t[i])) {
            *ended = true;
            return i + 1;
        }
    }
    return n;
}

static const char *sentences = "The sun was up and the sky was blue and wide. Tom went out to "
                               "the long green field to play with his red ball. He ran and ran "
                               "all day until the sun went down at last.";

TEST(orders_decide_which_jobs_start) {
    hearth_error err;
    uint32_t idx[8];
    hearth_sections *g = NULL;
    hearth_sections_params p = small_params(HEARTH_SECTIONS_CHAINED);
    REQUIRE(hearth_sections_create(tok, &p, &g, &err) == HEARTH_OK);
    CHECK(start_jobs(g, idx, 8, NULL) == 1 && idx[0] == 0);
    CHECK(start_jobs(g, idx, 8, NULL) == 0); /* 1 waits for 0's tail */
    hearth_sections_free(g);

    p = small_params(HEARTH_SECTIONS_PARALLEL);
    REQUIRE(hearth_sections_create(tok, &p, &g, &err) == HEARTH_OK);
    CHECK(start_jobs(g, idx, 8, NULL) == 3);
    hearth_sections_free(g);

    p = small_params(HEARTH_SECTIONS_ALTERNATE);
    REQUIRE(hearth_sections_create(tok, &p, &g, &err) == HEARTH_OK);
    CHECK(start_jobs(g, idx, 8, NULL) == 2 && idx[0] == 0 && idx[1] == 2);
    bool ended;
    feed(g, 0, sentences, &ended);
    CHECK(ended);
    CHECK(start_jobs(g, idx, 8, NULL) == 1 && idx[0] == 1);
    hearth_sections_free(g);

    /* Tails of 0 make the chained order parallel; max_parallel caps it. */
    p = small_params(HEARTH_SECTIONS_CHAINED);
    p.tail_tokens = 0;
    p.max_parallel = 2;
    REQUIRE(hearth_sections_create(tok, &p, &g, &err) == HEARTH_OK);
    CHECK(start_jobs(g, idx, 8, NULL) == 2);
    hearth_sections_free(g);
}

TEST(sections_end_at_boundaries_and_carry_tails) {
    hearth_error err;
    hearth_sections *g = NULL;
    hearth_sections_params p = small_params(HEARTH_SECTIONS_CHAINED);
    REQUIRE(hearth_sections_create(tok, &p, &g, &err) == HEARTH_OK);
    uint32_t idx[4];
    hearth_section_job jobs[4];
    REQUIRE(start_jobs(g, idx, 4, jobs) == 1);
    CHECK(jobs[0].max_tokens == 30 && jobs[0].sampler);
    bool ended;
    size_t used = feed(g, 0, sentences, &ended);
    /* The first sentence end after 10 tokens is seen at the next token. */
    hearth_token t[256];
    size_t first = toks("The sun was up and the sky was blue and wide.", t, 256);
    CHECKF(ended && used == first + 1, "ended %d after %zu tokens, sentence %zu", ended, used,
           first);
    hearth_section_info info;
    REQUIRE(hearth_sections_next_section(g, &info));
    CHECK(info.index == 0 && info.end == HEARTH_SECTION_BOUNDARY && info.n_tokens == first);
    CHECKF(!strcmp(info.text, "The sun was up and the sky was blue and wide."), "text '%s'",
           info.text);
    CHECK(!strcmp(info.heading, "Morning"));
    CHECK(!hearth_sections_next_section(g, &info));
    /* Section 1's prompt: the topic, the outline, its heading and the tail. */
    REQUIRE(start_jobs(g, idx, 4, jobs) == 1 && idx[0] == 1);
    char text[4096];
    size_t n = 0;
    REQUIRE(hearth_detokenize(tok, jobs[0].prompt, jobs[0].n_prompt, 0, text, sizeof text - 1, &n,
                              &err) == HEARTH_OK);
    text[n] = '\0';
    CHECKF(strstr(text, "A day out") && strstr(text, "1. Morning\n2. Noon\n3. Evening") &&
               strstr(text, "## Noon") && strstr(text, "and wide.\n") &&
               !strstr(text, "The sun was up"),
           "prompt: %s", text);
    /* No sentence end before max_tokens: cut back to the last one. */
    feed(g, 1,
         "A bird sang. It sang and sang and sang on the branch of the old oak tree by the "
         "river and it did not stop or rest or fly away from the tree at all",
         &ended);
    CHECK(ended);
    REQUIRE(hearth_sections_next_section(g, &info));
    CHECKF(info.end == HEARTH_SECTION_LENGTH && !strcmp(info.text, "A bird sang."),
           "end %s text '%s'", hearth_section_end_name(info.end), info.text);
    CHECK(info.n_generated == 30);
    /* A paragraph end after min_tokens ends at once. */
    REQUIRE(start_jobs(g, idx, 4, jobs) == 1 && idx[0] == 2);
    used = feed(g, 2, "They ate bread and cheese and apples by the water\nThen they went home.",
                &ended);
    REQUIRE(hearth_sections_next_section(g, &info));
    CHECKF(ended && info.end == HEARTH_SECTION_BOUNDARY &&
               !strcmp(info.text, "They ate bread and cheese and apples by the water"),
           "text '%s'", info.text);
    CHECK(hearth_sections_done(g));
    hearth_sections_result r;
    hearth_sections_result_get(g, &r);
    CHECKF(!strcmp(r.text, "## Morning\n\nThe sun was up and the sky was blue and wide.\n\n## "
                           "Noon\n\nA bird sang.\n\n## Evening\n\nThey ate bread and cheese and "
                           "apples by the water\n"),
           "document: %s", r.text);
    CHECK(r.n_sections == 3 && r.section_end[1] == HEARTH_SECTION_LENGTH);
    hearth_sections_free(g);
}

TEST(sections_hand_out_in_order) {
    hearth_error err;
    hearth_sections *g = NULL;
    hearth_sections_params p = small_params(HEARTH_SECTIONS_PARALLEL);
    REQUIRE(hearth_sections_create(tok, &p, &g, &err) == HEARTH_OK);
    uint32_t idx[4];
    REQUIRE(start_jobs(g, idx, 4, NULL) == 3);
    bool ended;
    feed(g, 2, sentences, &ended);
    hearth_sections_end_job(g, 1, HEARTH_SECTION_EOG);
    hearth_section_info info;
    CHECK(!hearth_sections_next_section(g, &info)); /* 0 is not done */
    feed(g, 0, sentences, &ended);
    for (uint32_t i = 0; i < 3; i++) {
        CHECK(hearth_sections_next_section(g, &info) && info.index == i);
    }
    CHECK(info.end == HEARTH_SECTION_BOUNDARY);
    CHECK(!hearth_sections_next_section(g, &info));
    hearth_sections_free(g);
}

TEST(a_loop_ends_a_section_before_the_loop) {
    hearth_error err;
    hearth_sections *g = NULL;
    hearth_sections_params p = small_params(HEARTH_SECTIONS_CHAINED);
    p.max_tokens = 200;
    p.min_tokens = 150;
    p.guard = hearth_loop_guard_default_params();
    REQUIRE(hearth_sections_create(tok, &p, &g, &err) == HEARTH_OK);
    uint32_t idx[2];
    hearth_section_job job;
    REQUIRE(start_jobs(g, idx, 2, &job) == 1);
    hearth_token t[512];
    size_t n = toks("It was a warm day. The dog ran to the gate. "
                    "It was very big and it was very big and it was very big and it was very big "
                    "and it was very big and it was very big and it was very big and",
                    t, 512);
    bool ended = false;
    for (size_t i = 0; i < n && !ended; i++) {
        hearth_sampler_accept(job.sampler, t[i]); /* the guard sees what the sampler accepts */
        ended = hearth_sections_push(g, 0, t[i]);
    }
    CHECK(ended);
    hearth_section_info info;
    REQUIRE(hearth_sections_next_section(g, &info));
    CHECKF(info.end == HEARTH_SECTION_LOOP && info.loop != HEARTH_LOOP_NONE &&
               !strcmp(info.text, "It was a warm day. The dog ran to the gate."),
           "end %s (%s), text '%s'", hearth_section_end_name(info.end),
           hearth_loop_kind_name(info.loop), info.text);
    hearth_sections_result r;
    hearth_sections_result_get(g, &r);
    CHECK(r.n_guard_stops == 1);
    hearth_sections_free(g);

    /* HEARTH_LOOP_STOP ends the whole generation. */
    p.guard.action = HEARTH_LOOP_STOP;
    REQUIRE(hearth_sections_create(tok, &p, &g, &err) == HEARTH_OK);
    REQUIRE(start_jobs(g, idx, 2, &job) == 1);
    ended = false;
    for (size_t i = 0; i < n && !ended; i++) {
        hearth_sampler_accept(job.sampler, t[i]);
        ended = hearth_sections_push(g, 0, t[i]);
    }
    CHECK(ended && hearth_sections_done(g));
    hearth_sections_result_get(g, &r);
    CHECK(r.repetition && r.section_end[1] == HEARTH_SECTION_SKIPPED);
    hearth_sections_free(g);
}

TEST(the_model_writes_the_outline) {
    hearth_error err;
    hearth_sections *g = NULL;
    hearth_sections_params p = small_params(HEARTH_SECTIONS_PARALLEL);
    p.outline = NULL;
    p.n_sections = 3;
    REQUIRE(hearth_sections_create(tok, &p, &g, &err) == HEARTH_OK);
    uint32_t idx[4];
    hearth_section_job job;
    REQUIRE(start_jobs(g, idx, 4, &job) == 1 && idx[0] == HEARTH_SECTION_OUTLINE);
    char text[1024];
    size_t n = 0;
    hearth_detokenize(tok, job.prompt, job.n_prompt, 0, text, sizeof text - 1, &n, &err);
    text[n] = '\0';
    CHECKF(strstr(text, "Outline in 3 parts:\n1."), "outline prompt: %s", text);
    CHECK(start_jobs(g, idx, 4, NULL) == 0); /* sections wait for the outline */
    bool ended;
    feed(g, HEARTH_SECTION_OUTLINE, " The park\n2. The lake\n\n3) Home again\n4. More", &ended);
    CHECK(ended);
    hearth_section_info info;
    REQUIRE(hearth_sections_next_section(g, &info));
    CHECKF(info.index == HEARTH_SECTION_OUTLINE &&
               !strcmp(info.text, "1. The park\n2. The lake\n3. Home again\n"),
           "outline '%s'", info.text);
    CHECK(start_jobs(g, idx, 4, NULL) == 3);
    hearth_sections_free(g);

    /* Too few headings: the rest are "Part k". */
    REQUIRE(hearth_sections_create(tok, &p, &g, &err) == HEARTH_OK);
    start_jobs(g, idx, 4, NULL);
    hearth_sections_end_job(g, HEARTH_SECTION_OUTLINE, HEARTH_SECTION_EOG);
    REQUIRE(hearth_sections_next_section(g, &info));
    CHECKF(!strcmp(info.text, "1. Part 1\n2. Part 2\n3. Part 3\n"), "outline '%s'", info.text);
    hearth_sections_free(g);
}

static size_t custom_format(const hearth_section_prompt *what, char *out, size_t cap, void *arg) {
    int *calls = arg;
    (*calls)++;
    int n = snprintf(out, cap, "<write part %u: %s>", what->index + 1, what->heading);
    return n < 0 ? 0 : (size_t)n;
}

TEST(prompts_can_be_formatted_by_the_caller) {
    hearth_error err;
    hearth_sections *g = NULL;
    hearth_sections_params p = small_params(HEARTH_SECTIONS_PARALLEL);
    int calls = 0;
    p.format = custom_format;
    p.format_arg = &calls;
    REQUIRE(hearth_sections_create(tok, &p, &g, &err) == HEARTH_OK);
    hearth_section_job jobs[4];
    uint32_t idx[4];
    REQUIRE(start_jobs(g, idx, 4, jobs) == 3);
    CHECK(calls == 3);
    char text[256];
    size_t n = 0;
    hearth_detokenize(tok, jobs[1].prompt, jobs[1].n_prompt, 0, text, sizeof text - 1, &n, &err);
    text[n] = '\0';
    CHECKF(!strcmp(text, "<write part 2: Noon>"), "prompt '%s'", text);
    hearth_sections_free(g);
}

TEST(bad_params_are_errors) {
    hearth_error err;
    hearth_sections *g = NULL;
    hearth_sections_params p = small_params(HEARTH_SECTIONS_CHAINED);
    p.topic = "";
    CHECK(hearth_sections_create(tok, &p, &g, &err) == HEARTH_ERR_INVALID_ARG && !g);
    CHECK(strstr(err.msg, "topic") != NULL);
    p = small_params(HEARTH_SECTIONS_CHAINED);
    p.outline = NULL;
    p.n_sections = 0;
    CHECK(hearth_sections_create(tok, &p, &g, &err) == HEARTH_ERR_INVALID_ARG);
    p.n_sections = 65;
    CHECK(hearth_sections_create(tok, &p, &g, &err) == HEARTH_ERR_INVALID_ARG);
    p = small_params(HEARTH_SECTIONS_CHAINED);
    p.min_tokens = 50;
    CHECK(hearth_sections_create(tok, &p, &g, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "min_tokens") != NULL);
    p = small_params(HEARTH_SECTIONS_CHAINED);
    p.outline = "\n  \n-\n";
    CHECK(hearth_sections_create(tok, &p, &g, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "no headings") != NULL);
    p = small_params(HEARTH_SECTIONS_CHAINED);
    p.sampling.top_p = 0.0f;
    CHECK(hearth_sections_create(tok, &p, &g, &err) == HEARTH_ERR_INVALID_ARG);
    p = small_params(HEARTH_SECTIONS_CHAINED);
    p.guard.action = HEARTH_LOOP_STOP_SECTION;
    p.guard.span_len = 1;
    CHECK(hearth_sections_create(tok, &p, &g, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(!g);
    hearth_sections_free(NULL);
}

/* ---------------------------------------------------------------- with the model */

/* Greedy single completion of n tokens after prompt. */
static size_t greedy_single(const char *prompt, size_t n, hearth_token *out) {
    hearth_error err;
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = (uint32_t)n + 64;
    cp.n_batch = 64;
    cp.n_outputs = 1;
    cp.n_threads = 1;
    hearth_context *ctx = NULL;
    hearth_sampler *s = NULL;
    hearth_sampler_params sp = hearth_sampler_default_params();
    sp.temperature = 0.0f;
    if (hearth_context_create(model, &cp, &ctx, &err) != HEARTH_OK ||
        hearth_sampler_create(&sp, hearth_model_n_vocab(model), &s, &err) != HEARTH_OK) {
        printf("  %s\n", err.msg);
        hearth_context_free(ctx);
        return 0;
    }
    hearth_token ids[64];
    size_t np = 0;
    hearth_tokenize(tok, prompt, strlen(prompt), HEARTH_TOKENIZE_ADD_SPECIAL, ids, 64, &np, &err);
    int32_t pos[64], seq[64] = {0};
    for (size_t i = 0; i < np; i++) pos[i] = (int32_t)i;
    hearth_batch b = {(uint32_t)np, ids, pos, seq, NULL};
    size_t got = 0;
    uint32_t last = (uint32_t)np - 1;
    if (hearth_decode(ctx, &b, &err) == HEARTH_OK) {
        while (got < n) {
            hearth_token t = hearth_sampler_sample(s, hearth_get_logits(ctx, last));
            out[got++] = t;
            int32_t p = (int32_t)(np + got - 1);
            hearth_batch one = {1, &t, &p, seq, NULL};
            if (hearth_decode(ctx, &one, &err) != HEARTH_OK) break;
            last = 0;
        }
    }
    hearth_sampler_free(s);
    hearth_context_free(ctx);
    return got;
}

static hearth_sections *run_sections(hearth_sections_params *p, uint32_t n_ctx) {
    hearth_error err;
    hearth_sections *g = NULL;
    if (hearth_sections_create(tok, p, &g, &err) != HEARTH_OK) {
        printf("  %s\n", err.msg);
        return NULL;
    }
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = 1;
    if (hearth_sections_run(g, model, &cp, NULL, NULL, &err) != HEARTH_OK) {
        printf("  %s\n", err.msg);
        hearth_sections_free(g);
        return NULL;
    }
    return g;
}

static char *headings(int n) {
    static const char *words[] = {"ball", "dog",  "park", "boat", "cat",    "rain",
                                  "cake", "home", "tree", "bird", "flower", "sun"};
    char *s = malloc((size_t)n * 64 + 1);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        k +=
            (size_t)sprintf(s + k, "Lily and the %s %s\n", i % 2 ? "big" : "little", words[i % 12]);
    }
    s[k] = '\0';
    return s;
}

TEST(must_show_stories260k_loops_and_sections_do_not) {
    enum { N = 2000 };
    hearth_token *single = malloc(N * sizeof *single);
    REQUIRE(single);
    size_t n = greedy_single("Once upon a time", N, single);
    REQUIRE(n == N);
    size_t rep1 = loop_longest_repeat(single, n, NULL, NULL);
    double d1 = loop_distinct_ratio(single, n, 4);
    printf("note: single greedy completion: %zu tokens, distinct-4 %.3f, longest repeated span "
           "%zu tokens\n",
           n, d1, rep1);
    CHECKF(rep1 >= 32, "the single completion was supposed to loop (longest repeat %zu)", rep1);
    free(single);

    /* Sections with the guard penalizing: full-length sections. */
    char *outline = headings(8);
    hearth_sections_params p = hearth_sections_default_params();
    p.topic = "Once upon a time";
    p.outline = outline;
    p.sampling.temperature = 0.0f;
    p.guard.action = HEARTH_LOOP_PENALIZE;
    hearth_sections *g = run_sections(&p, 1024);
    REQUIRE(g);
    hearth_sections_result r;
    hearth_sections_result_get(g, &r);
    size_t rep2 = loop_longest_repeat(r.tokens, r.n_tokens, NULL, NULL);
    double d2 = loop_distinct_ratio(r.tokens, r.n_tokens, 4);
    printf("note: 8 sections, guard penalize: %zu tokens kept of %u, distinct-4 %.3f, longest "
           "repeated span %zu tokens\n",
           r.n_tokens, r.n_generated, d2, rep2);
    CHECKF(r.n_tokens >= N, "only %zu tokens", r.n_tokens);
    CHECKF(rep2 < 32, "sections repeat a span of %zu tokens", rep2);
    for (uint32_t i = 0; i < r.n_sections; i++) {
        CHECKF(r.section_tokens[i] >= 250 && r.section_tokens[i] <= 400,
               "section %u kept %u tokens", i, r.section_tokens[i]);
    }
    hearth_sections_free(g);
    free(outline);

    /* Sections with the default guard (stop the section): a section ends
     * when it starts to copy, so more of them for as many tokens. */
    outline = headings(40);
    p = hearth_sections_default_params();
    p.topic = "Once upon a time";
    p.outline = outline;
    p.sampling.temperature = 0.0f;
    g = run_sections(&p, 1024);
    REQUIRE(g);
    hearth_sections_result_get(g, &r);
    size_t rep3 = loop_longest_repeat(r.tokens, r.n_tokens, NULL, NULL);
    double d3 = loop_distinct_ratio(r.tokens, r.n_tokens, 4);
    printf("note: 40 sections, guard stop: %u tokens generated, %zu kept, %u guard stops, "
           "distinct-4 %.3f, longest repeated span %zu tokens\n",
           r.n_generated, r.n_tokens, r.n_guard_stops, d3, rep3);
    CHECKF(r.n_generated >= N, "only %u tokens generated", r.n_generated);
    CHECKF(rep3 < 32, "sections repeat a span of %zu tokens", rep3);
    hearth_sections_free(g);
    free(outline);
}

TEST(parallel_sections_decode_as_if_alone) {
    char *outline = headings(4);
    hearth_sections_params p = hearth_sections_default_params();
    p.topic = "Once upon a time";
    p.outline = outline;
    p.order = HEARTH_SECTIONS_PARALLEL;
    p.min_tokens = 60;
    p.max_tokens = 100;
    p.sampling.temperature = 0.0f;
    p.guard.action = HEARTH_LOOP_OFF; /* a shared guard would make order matter */
    hearth_sections *a = run_sections(&p, 512);
    p.max_parallel = 1;
    hearth_sections *b = run_sections(&p, 512);
    REQUIRE(a && b);
    hearth_sections_result ra, rb;
    hearth_sections_result_get(a, &ra);
    hearth_sections_result_get(b, &rb);
    CHECKF(ra.n_tokens == rb.n_tokens && !strcmp(ra.text, rb.text),
           "4 at once: %zu tokens, one at a time: %zu", ra.n_tokens, rb.n_tokens);
    hearth_sections_free(a);
    hearth_sections_free(b);
    free(outline);
}

/* ---------------------------------------------------------------- hearth run */

typedef struct result {
    int status;
    char *out, *err;
} result;

static result run_cli(const char *args) {
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

static void write_file(const char *name, const char *text, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", test_tmpdir(), name);
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs(text, fp);
        fclose(fp);
    }
}

static void expect_error(const char *args, const char *needle) {
    result r = run_cli(args);
    CHECKF(r.status != 0 && r.status < 128 && r.out[0] == '\0' && strstr(r.err, needle),
           "%s: status %d, stderr '%s'", args, r.status, r.err);
    free(r.out);
    free(r.err);
}

TEST(hearth_run_flags) {
    const char *m = test_shared("models/stories260K.gguf");
    char model_arg[1100], outline[512], schema[512], gbnf[512], args[4096];
    snprintf(model_arg, sizeof model_arg, "run -m '%s' -t 1", m);
    write_file("outline.txt", "The ball\nThe dog\n", outline, sizeof outline);
    write_file("schema.json",
               "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"},\"b\":{\"type\":"
               "\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":3}},\"required\":[\"a\","
               "\"b\"],\"additionalProperties\":false}",
               schema, sizeof schema);
    write_file("yn.gbnf", "root ::= (\"yes\" | \"no\") \"!\"\n", gbnf, sizeof gbnf);

    snprintf(args, sizeof args,
             "%s -p 'Once upon a time' --sections 0 --outline '%s' --section-tokens 40..60 "
             "--temp 0 --verbose",
             model_arg, outline);
    result r = run_cli(args);
    CHECKF(r.status == 0 && !strncmp(r.out, "## The ball\n\n", 13) &&
               strstr(r.out, "\n## The dog\n\n"),
           "sections: status %d, out '%s', err '%s'", r.status, r.out, r.err);
    CHECKF(strstr(r.err, "hearth: 2 sections, tokens kept:") && strstr(r.err, "loop guard stop"),
           "summary: %s", r.err);
    free(r.out);
    free(r.err);

    snprintf(args, sizeof args, "%s -p 'JSON: ' --json-schema '%s' -n 80 --seed 5", model_arg,
             schema);
    r = run_cli(args);
    CHECKF(r.status == 0 && !strncmp(r.out, "JSON: ", 6), "schema: status %d, err %s", r.status,
           r.err);
    json_error_t je;
    json_t *v = json_loads(r.out + (r.status == 0 ? 6 : 0), 0, &je);
    CHECKF(v && json_is_boolean(json_object_get(v, "a")) &&
               json_array_size(json_object_get(v, "b")) <= 3 && json_object_size(v) == 2,
           "schema output: %s", r.out);
    json_decref(v);
    free(r.out);
    free(r.err);

    snprintf(args, sizeof args, "%s -p 'Is it? ' --grammar '%s' --seed 9", model_arg, gbnf);
    r = run_cli(args);
    CHECKF(r.status == 0 && (!strcmp(r.out, "Is it? yes!\n") || !strcmp(r.out, "Is it? no!\n")),
           "grammar: status %d out '%s' err '%s'", r.status, r.out, r.err);
    free(r.out);
    free(r.err);

    /* The loop guard stops a looping greedy run and says so. */
    snprintf(args, sizeof args,
             "%s -p 'Once upon a time' --temp 0 -n 1000 -c 1100 --loop-guard stop", model_arg);
    r = run_cli(args);
    CHECKF(r.status == 0 && strstr(r.err, "hearth: stopped: repetition"), "guard: %s", r.err);
    free(r.out);
    free(r.err);

    char bad_schema[512], bad_gbnf[512];
    write_file("bad.json", "{\"type\":\"string\",\"pattern\":\"a+\"}", bad_schema,
               sizeof bad_schema);
    write_file("bad.gbnf", "root ::= root \"a\"\n", bad_gbnf, sizeof bad_gbnf);
    snprintf(args, sizeof args, "%s --json-schema '%s'", model_arg, bad_schema);
    expect_error(args, "keyword 'pattern' is not supported");
    snprintf(args, sizeof args, "%s --grammar '%s'", model_arg, bad_gbnf);
    expect_error(args, "left recursion");
    snprintf(args, sizeof args, "%s --grammar /nonexistent.gbnf", model_arg);
    expect_error(args, "cannot open");
    snprintf(args, sizeof args, "%s --json-schema '%s' --grammar '%s'", model_arg, schema, gbnf);
    expect_error(args, "not both");
    snprintf(args, sizeof args, "%s --sections 2 --json-schema '%s'", model_arg, schema);
    expect_error(args, "does not take");
    snprintf(args, sizeof args, "%s --sections 0", model_arg);
    expect_error(args, "needs --outline");
    snprintf(args, sizeof args, "%s --sections 65", model_arg);
    expect_error(args, "--sections");
    snprintf(args, sizeof args, "%s --outline '%s'", model_arg, outline);
    expect_error(args, "need --sections");
    snprintf(args, sizeof args, "%s --sections 2 --section-tokens 9..3", model_arg);
    expect_error(args, "minimum is above the maximum");
    snprintf(args, sizeof args, "%s --sections 2 --section-tokens abc", model_arg);
    expect_error(args, "--section-tokens");
    snprintf(args, sizeof args, "%s --loop-guard maybe", model_arg);
    expect_error(args, "--loop-guard expects");
    snprintf(args, sizeof args, "%s --sections 2 --section-order random", model_arg);
    expect_error(args, "--section-order expects");
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    snprintf(hearth_bin, sizeof hearth_bin, "%s", test_hearth_bin(argv[0]));
    hearth_error err;
    if (hearth_model_load(test_shared("models/stories260K.gguf"), NULL, &model, &err) !=
        HEARTH_OK) {
        printf("  %s\nFAIL test_sections/setup\n", err.msg);
        return 1;
    }
    tok = hearth_model_tokenizer(model);
    RUN(orders_decide_which_jobs_start);
    RUN(sections_end_at_boundaries_and_carry_tails);
    RUN(sections_hand_out_in_order);
    RUN(a_loop_ends_a_section_before_the_loop);
    RUN(the_model_writes_the_outline);
    RUN(prompts_can_be_formatted_by_the_caller);
    RUN(bad_params_are_errors);
    RUN(must_show_stories260k_loops_and_sections_do_not);
    RUN(parallel_sections_decode_as_if_alone);
    RUN(hearth_run_flags);
    hearth_model_free(model);
    return test_finish();
}
