/* test_sched.c — the scheduler: its policy as pure functions, the KV copy
 * it relies on, and the engine thread driven with the stories260K model.
 *
 * The engine tests compare every sequence's greedy tokens with a plain
 * single-sequence run of the same prompt (the loop `hearth run` uses), so
 * batching, chunked prefill, the prefix cache, eviction with recompute and
 * queueing must all leave outputs unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hearth.h"
#include "sched/policy.h"
#include "sched/sched.h"
#include "test.h"

static const char *model_path;

/* ---------------------------------------------------------------- policy */

TEST(aging_lifts_a_class_per_interval) {
    CHECK(policy_effective_class(SCHED_BACKGROUND, 0.0, 1000) == SCHED_BACKGROUND);
    CHECK(policy_effective_class(SCHED_BACKGROUND, 0.999, 1000) == SCHED_BACKGROUND);
    CHECK(policy_effective_class(SCHED_BACKGROUND, 1.0, 1000) == SCHED_TOOL);
    CHECK(policy_effective_class(SCHED_BACKGROUND, 2.5, 1000) == SCHED_INTERACTIVE);
    CHECK(policy_effective_class(SCHED_BACKGROUND, 1e9, 1000) == SCHED_INTERACTIVE);
    CHECK(policy_effective_class(SCHED_TOOL, 1.5, 1000) == SCHED_INTERACTIVE);
    CHECK(policy_effective_class(SCHED_BACKGROUND, 1e9, 0) == SCHED_BACKGROUND); /* off */
}

TEST(serving_order_is_class_then_fifo) {
    policy_seq s[4] = {
        {SCHED_BACKGROUND, 1.0, 1, 1},
        {SCHED_INTERACTIVE, 3.0, 4, 1},
        {SCHED_INTERACTIVE, 2.0, 3, 1},
        {SCHED_TOOL, 0.5, 2, 1},
    };
    uint32_t idx[4] = {0, 1, 2, 3};
    policy_sort(s, idx, 4);
    CHECK(idx[0] == 2 && idx[1] == 1 && idx[2] == 3 && idx[3] == 0);
    /* Equal arrival: the lower id first. */
    policy_seq a = {SCHED_TOOL, 1.0, 7, 1}, b = {SCHED_TOOL, 1.0, 8, 1};
    CHECK(policy_before(&a, &b) && !policy_before(&b, &a));
}

TEST(prefill_of_a_better_class_pauses_worse_ones) {
    /* Background decoders, an interactive prompt arriving: only the
     * interactive prompt (and any interactive decoders) run. */
    policy_seq s[4] = {
        {SCHED_BACKGROUND, 1.0, 1, 1},
        {SCHED_BACKGROUND, 1.1, 2, 1},
        {SCHED_INTERACTIVE, 2.0, 3, 40},
        {SCHED_INTERACTIVE, 0.5, 4, 1},
    };
    uint32_t take[4], pre;
    uint32_t n = policy_plan(s, 4, 256, take, &pre);
    CHECK(take[0] == 0 && take[1] == 0 && take[2] == 40 && take[3] == 1);
    CHECK(n == 41 && pre == 2);
    /* Without a prompt in flight everyone decodes together. */
    s[2].need = 1;
    n = policy_plan(s, 4, 256, take, &pre);
    CHECK(n == 4 && pre == 0 && take[0] == 1 && take[1] == 1);
    /* A background prompt does not pause interactive decoders, but gets
     * only a quarter of the budget while they decode. */
    s[0].need = 100;
    n = policy_plan(s, 4, 256, take, &pre);
    CHECK(take[0] == 64 && take[2] == 1 && take[3] == 1 && take[1] == 1 && pre == 0);
    n = policy_plan(s, 4, 50, take, &pre);
    CHECK(n == 15 && take[3] == 1 && take[2] == 1 && take[0] == 12 && take[1] == 1);
    /* Among equals the budget goes in serving order; the prompt gets what
     * is left. */
    s[2].eff = s[3].eff = SCHED_BACKGROUND;
    n = policy_plan(s, 4, 50, take, &pre);
    CHECK(n == 50 && take[3] == 1 && take[2] == 1 && take[0] == 47 && take[1] == 1);
    /* With nobody decoding, a prompt may use the whole budget. */
    policy_seq solo[2] = {{SCHED_BACKGROUND, 1.0, 1, 500}, {SCHED_BACKGROUND, 2.0, 2, 500}};
    n = policy_plan(solo, 2, 256, take, &pre);
    CHECK(n == 256 && take[0] == 255 && take[1] == 1);
}

TEST(victim_is_worst_class_then_youngest) {
    policy_seq r[4] = {
        {SCHED_BACKGROUND, 1.0, 1, 1},
        {SCHED_BACKGROUND, 5.0, 2, 1},
        {SCHED_TOOL, 9.0, 3, 1},
        {SCHED_INTERACTIVE, 0.1, 4, 1},
    };
    CHECK(policy_victim(r, 4, SCHED_INTERACTIVE) == 1);
    CHECK(policy_victim(r, 4, SCHED_TOOL) == 1);
    CHECK(policy_victim(r, 4, SCHED_BACKGROUND) == -1); /* never an equal class */
    r[0].eff = r[1].eff = SCHED_TOOL;                   /* aged: now tool */
    CHECK(policy_victim(r, 4, SCHED_INTERACTIVE) == 2);
    CHECK(policy_victim(r, 4, SCHED_TOOL) == -1);
}

TEST(prefix_length) {
    hearth_token a[] = {1, 2, 3, 4}, b[] = {1, 2, 9}, c[] = {5};
    CHECK(policy_prefix_len(a, 4, b, 3) == 2);
    CHECK(policy_prefix_len(a, 4, a, 4) == 4);
    CHECK(policy_prefix_len(a, 4, a, 2) == 2);
    CHECK(policy_prefix_len(a, 4, c, 1) == 0);
    CHECK(policy_prefix_len(a, 0, a, 4) == 0);
}

TEST(stop_strings_hold_back_partial_matches) {
    const char *stops[] = {"END", "\n\n"};
    size_t lens[] = {3, 2};
    size_t at;
    CHECK(policy_stop_scan("hello", 5, stops, lens, 2, &at) == 5 && at == SIZE_MAX);
    CHECK(policy_stop_scan("hello E", 7, stops, lens, 2, &at) == 6 && at == SIZE_MAX);
    CHECK(policy_stop_scan("hello EN", 8, stops, lens, 2, &at) == 6 && at == SIZE_MAX);
    CHECK(policy_stop_scan("hello END more", 14, stops, lens, 2, &at) == 6 && at == 6);
    CHECK(policy_stop_scan("a\n", 2, stops, lens, 2, &at) == 1 && at == SIZE_MAX);
    CHECK(policy_stop_scan("a\n\nEND", 6, stops, lens, 2, &at) == 1 && at == 1);
    CHECK(policy_stop_scan("", 0, stops, lens, 2, &at) == 0 && at == SIZE_MAX);
    CHECK(policy_stop_scan("xyz", 3, NULL, NULL, 0, &at) == 3 && at == SIZE_MAX);
    /* "ENEND": the earliest full match wins, the partial "EN" does not. */
    CHECK(policy_stop_scan("ENEND", 5, stops, lens, 2, &at) == 2 && at == 2);
}

/* ---------------------------------------------------------------- reference runs */

/* Greedy tokens of one sequence alone: prompt in one batch, then one token
 * per call, stopping at an end token, max_tokens, or a full context. */
static size_t reference(const hearth_model *m, const hearth_token *p, size_t n, uint32_t n_ctx,
                        size_t max, hearth_token *out) {
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_ctx;
    cp.n_threads = 2;
    hearth_context *c = NULL;
    hearth_error err;
    if (hearth_context_create(m, &cp, &c, &err) != HEARTH_OK) return 0;
    int32_t *pos = malloc(n * sizeof *pos), *seq = calloc(n, sizeof *seq);
    for (size_t i = 0; i < n; i++) pos[i] = (int32_t)i;
    hearth_batch b = {(uint32_t)n, p, pos, seq, NULL};
    size_t k = 0;
    int32_t nv = hearth_model_n_vocab(m);
    const hearth_tokenizer *tok = hearth_model_tokenizer(m);
    if (hearth_decode(c, &b, &err) == HEARTH_OK) {
        const float *lg = hearth_get_logits(c, (uint32_t)n - 1);
        for (;;) {
            hearth_token best = 0;
            for (int32_t i = 1; i < nv; i++) best = lg[i] > lg[best] ? i : best;
            if (hearth_tokenizer_is_eog(tok, best)) break;
            out[k++] = best;
            int32_t at = (int32_t)(n + k - 1);
            if (k == max || (uint32_t)at >= n_ctx) break;
            int32_t zero = 0;
            hearth_batch one = {1, &best, &at, &zero, NULL};
            if (hearth_decode(c, &one, &err) != HEARTH_OK) break;
            lg = hearth_get_logits(c, 0);
        }
    }
    free(pos);
    free(seq);
    hearth_context_free(c);
    return k;
}

static size_t tokenize(const hearth_model *m, const char *text, hearth_token *out, size_t cap) {
    size_t n = 0;
    hearth_tokenize(hearth_model_tokenizer(m), text, strlen(text), HEARTH_TOKENIZE_ADD_SPECIAL, out,
                    cap, &n, NULL);
    return n;
}

TEST(kv_copy_continues_like_the_original) {
    hearth_model *m = NULL;
    hearth_error err;
    REQUIRE(hearth_model_load(model_path, NULL, &m, &err) == HEARTH_OK);
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = 64;
    cp.n_seq = 3;
    cp.n_batch = 64;
    cp.n_threads = 2;
    hearth_context *c = NULL;
    REQUIRE(hearth_context_create(m, &cp, &c, &err) == HEARTH_OK);
    hearth_token p[64];
    size_t n = tokenize(m, "Once upon a time there was a big dog", p, 64);
    REQUIRE(n > 6);
    int32_t pos[64], seq[64];
    for (size_t i = 0; i < n; i++) {
        pos[i] = (int32_t)i;
        seq[i] = 0;
    }
    hearth_batch b = {(uint32_t)n, p, pos, seq, NULL};
    REQUIRE(hearth_decode(c, &b, &err) == HEARTH_OK);
    /* Copy the first 5 positions to sequence 2, feed the rest there: the
     * logits must equal sequence 0's. */
    size_t nv = (size_t)hearth_model_n_vocab(m);
    float *want = malloc(nv * sizeof *want);
    memcpy(want, hearth_get_logits(c, (uint32_t)n - 1), nv * sizeof *want);
    CHECK(hearth_kv_copy(c, 2, 0, 5, &err) == HEARTH_OK);
    CHECK(hearth_kv_len(c, 2) == 5);
    for (size_t i = 5; i < n; i++) seq[i] = 2;
    hearth_batch rest = {(uint32_t)(n - 5), p + 5, pos + 5, seq + 5, NULL};
    REQUIRE(hearth_decode(c, &rest, &err) == HEARTH_OK);
    CHECK(!memcmp(want, hearth_get_logits(c, (uint32_t)(n - 6)), nv * sizeof *want));
    /* Bad arguments are refused. */
    CHECK(hearth_kv_copy(c, 1, 1, 1, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(hearth_kv_copy(c, 1, 0, (int32_t)n + 1, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(hearth_kv_copy(c, 3, 0, 1, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(hearth_kv_copy(c, 1, -1, 1, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(hearth_kv_len(c, 7) == 0);
    free(want);
    hearth_context_free(c);
    hearth_model_free(m);
}

/* ---------------------------------------------------------------- the engine */

typedef struct job {
    const char *prompt;
    sched_class cls;
    uint32_t max_tokens;
    const char *user; /* submitter, NULL for none */
    sched_request *r;
    sched_delta d;
    hearth_token got[512];
    size_t n_got;
    char text[8192];
    size_t n_text;
    sched_finish finish;
    uint32_t n_cached;
    int done_order;
} job;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool submit(sched *s, const hearth_model *m, job *j) {
    hearth_token p[512];
    size_t n = tokenize(m, j->prompt, p, 512);
    sched_request_params rp;
    memset(&rp, 0, sizeof rp);
    rp.prompt = p;
    rp.n_prompt = n;
    rp.cls = j->cls;
    rp.max_tokens = j->max_tokens;
    rp.sampling = hearth_sampler_default_params();
    rp.sampling.temperature = 0;
    rp.logprobs = true;
    rp.text_continues = true;
    rp.user = j->user;
    hearth_error err;
    memset(&j->d, 0, sizeof j->d);
    j->n_got = j->n_text = 0;
    j->finish = SCHED_FINISH_NONE;
    j->done_order = -1;
    sched_submit_status st = sched_submit(s, &rp, &j->r, &err);
    if (st != SCHED_SUBMIT_OK) printf("  submit: %s\n", err.msg);
    return st == SCHED_SUBMIT_OK;
}

/* Moves new output of j along; true once it is finished. */
static bool pump(job *j, int *order) {
    if (j->finish != SCHED_FINISH_NONE) return true;
    bool done = sched_poll(j->r, 0, &j->d);
    for (size_t i = 0; i < j->d.n_tokens && j->n_got < 512; i++)
        j->got[j->n_got++] = j->d.tokens[i].id;
    if (j->d.n_text && j->n_text + j->d.n_text < sizeof j->text) {
        memcpy(j->text + j->n_text, j->d.text, j->d.n_text);
        j->n_text += j->d.n_text;
    }
    if (done) {
        j->finish = j->d.finish;
        j->n_cached = j->d.n_cached;
        j->done_order = (*order)++;
        sched_release(j->r);
        sched_delta_free(&j->d);
    }
    return done;
}

static void run_all(job *jobs, size_t n, int *order) {
    double t0 = now_s();
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < n; i++) all &= pump(&jobs[i], order);
        if (all || now_s() - t0 > 60) break;
        usleep(200);
    }
}

static void check_against_reference(const hearth_model *m, job *j, uint32_t n_ctx) {
    hearth_token p[512], want[512];
    size_t n = tokenize(m, j->prompt, p, 512);
    size_t k = reference(m, p, n, n_ctx, j->max_tokens, want);
    CHECKF(j->finish == SCHED_FINISH_STOP || j->finish == SCHED_FINISH_LENGTH, "'%s': finished %s",
           j->prompt, sched_finish_name(j->finish));
    bool same = k == j->n_got && !memcmp(want, j->got, k * sizeof *want);
    CHECKF(same, "'%s': %zu tokens, reference %zu; differ", j->prompt, j->n_got, k);
    /* The text is the streaming detokenization of those tokens. */
    char ref[8192];
    size_t len = 0;
    hearth_detokenize(hearth_model_tokenizer(m), want, k, HEARTH_DETOK_KEEP_LEADING_SPACE, ref,
                      sizeof ref, &len, NULL);
    CHECKF(len == j->n_text && !memcmp(ref, j->text, len), "'%s': text differs: %.*s | %.*s",
           j->prompt, (int)j->n_text, j->text, (int)len, ref);
}

static const char *prompts[] = {
    "Once upon a time",
    "The little dog ran to the park and saw a big tree with many green leaves",
    "Lily and Ben",
    "One day, a girl named Sue found a shiny red ball in the garden. She",
    "Tom",
    "The sun was hot and the children wanted to play in the water",
    "Once upon a time there was a big bear who liked honey",
    "A cat",
};

static sched *make_sched(hearth_model *m, uint32_t parallel, uint32_t batch, uint32_t aging_ms) {
    sched_params p = sched_default_params();
    p.n_parallel = parallel;
    p.n_ctx = 256;
    p.n_batch = batch;
    p.n_threads = 2;
    p.aging_ms = aging_ms;
    sched *s = NULL;
    hearth_error err;
    if (sched_create(m, &p, &s, &err) != HEARTH_OK) printf("  sched_create: %s\n", err.msg);
    return s;
}

TEST(batched_greedy_equals_single_runs) {
    hearth_model *m = NULL;
    hearth_error err;
    REQUIRE(hearth_model_load(model_path, NULL, &m, &err) == HEARTH_OK);
    /* 8 requests, 3 slots, 16-token steps: queueing, chunked prefill and
     * mixed prefill/decode batches. */
    sched *s = make_sched(m, 3, 16, 0);
    REQUIRE(s);
    job jobs[8];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < 8; i++) {
        jobs[i].prompt = prompts[i];
        jobs[i].cls = (sched_class)(i % 3);
        jobs[i].max_tokens = 40 + 10 * (uint32_t)i;
        REQUIRE(submit(s, m, &jobs[i]));
    }
    int order = 0;
    run_all(jobs, 8, &order);
    for (int i = 0; i < 8; i++) check_against_reference(m, &jobs[i], 256);
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.steps > 0 &&
          st.generated_tokens[0] + st.generated_tokens[1] + st.generated_tokens[2] > 0);
    sched_free(s);
    hearth_model_free(m);
}

TEST(context_end_is_length) {
    hearth_model *m = NULL;
    hearth_error err;
    REQUIRE(hearth_model_load(model_path, NULL, &m, &err) == HEARTH_OK);
    sched *s = make_sched(m, 2, 64, 0);
    REQUIRE(s);
    job j;
    memset(&j, 0, sizeof j);
    j.prompt = "Once upon a time there was a big bear who liked honey";
    j.max_tokens = 0; /* until the context is full */
    REQUIRE(submit(s, m, &j));
    int order = 0;
    run_all(&j, 1, &order);
    check_against_reference(m, &j, 256);
    sched_free(s);
    hearth_model_free(m);
}

TEST(prefix_cache_reuses_finished_and_running_prompts) {
    hearth_model *m = NULL;
    hearth_error err;
    REQUIRE(hearth_model_load(model_path, NULL, &m, &err) == HEARTH_OK);
    sched *s = make_sched(m, 2, 64, 0);
    REQUIRE(s);
    const char *p = "One day, a girl named Sue found a shiny red ball in the garden. She";
    job a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.prompt = b.prompt = p;
    a.max_tokens = b.max_tokens = 20;
    int order = 0;
    REQUIRE(submit(s, m, &a));
    run_all(&a, 1, &order);
    REQUIRE(submit(s, m, &b));
    run_all(&b, 1, &order);
    hearth_token t[512];
    size_t n = tokenize(m, p, t, 512);
    CHECK(a.n_cached == 0);
    CHECKF(b.n_cached == n - 1, "cached %u of %zu", b.n_cached, n);
    check_against_reference(m, &b, 256);
    /* A prompt sharing a prefix with a running sequence copies it. */
    job c, d;
    memset(&c, 0, sizeof c);
    memset(&d, 0, sizeof d);
    c.prompt = "The sun was hot and the children wanted to play in the water";
    c.max_tokens = 200;
    d.prompt = "The sun was hot and the children wanted to eat";
    d.max_tokens = 30;
    REQUIRE(submit(s, m, &c));
    while (!c.d.n_generated && !pump(&c, &order)) usleep(100);
    REQUIRE(submit(s, m, &d));
    job both[2] = {c, d};
    run_all(both, 2, &order);
    hearth_token tc[512], td[512];
    size_t nc = tokenize(m, c.prompt, tc, 512), nd = tokenize(m, d.prompt, td, 512);
    uint32_t shared = policy_prefix_len(tc, (uint32_t)nc, td, (uint32_t)nd);
    CHECKF(both[1].n_cached == shared, "cached %u, shared prefix %u", both[1].n_cached, shared);
    check_against_reference(m, &both[1], 256);
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.cached_tokens[SCHED_INTERACTIVE] == n - 1 + both[0].n_cached + shared);
    sched_free(s);
    hearth_model_free(m);
}

TEST(interactive_evicts_background_which_recomputes) {
    hearth_model *m = NULL;
    hearth_error err;
    REQUIRE(hearth_model_load(model_path, NULL, &m, &err) == HEARTH_OK);
    sched *s = make_sched(m, 1, 32, 0);
    REQUIRE(s);
    job j[3];
    memset(j, 0, sizeof j);
    j[0] = (job){.prompt = prompts[1], .cls = SCHED_BACKGROUND, .max_tokens = 150};
    j[1] = (job){.prompt = prompts[2], .cls = SCHED_BACKGROUND, .max_tokens = 20};
    j[2] = (job){.prompt = prompts[3], .cls = SCHED_INTERACTIVE, .max_tokens = 20};
    int order = 0;
    REQUIRE(submit(s, m, &j[0]));
    /* Wait until the first background request is generating. */
    double t0 = now_s();
    while (j[0].n_got == 0 && !pump(&j[0], &order) && now_s() - t0 < 10) usleep(50);
    REQUIRE(j[0].finish == SCHED_FINISH_NONE);
    REQUIRE(submit(s, m, &j[1]));
    REQUIRE(submit(s, m, &j[2]));
    run_all(j, 3, &order);
    /* The interactive request went first, then the evicted background
     * request (it arrived before the other), then the other. */
    CHECKF(j[2].done_order < j[0].done_order && j[0].done_order < j[1].done_order,
           "finish order %d %d %d", j[0].done_order, j[1].done_order, j[2].done_order);
    for (int i = 0; i < 3; i++) check_against_reference(m, &j[i], 256);
    sched_stats st;
    sched_get_stats(s, &st);
    CHECKF(st.evictions >= 1, "evictions %llu", (unsigned long long)st.evictions);
    sched_free(s);
    hearth_model_free(m);
}

TEST(stop_strings_cut_the_text) {
    hearth_model *m = NULL;
    hearth_error err;
    REQUIRE(hearth_model_load(model_path, NULL, &m, &err) == HEARTH_OK);
    sched *s = make_sched(m, 2, 64, 0);
    REQUIRE(s);
    job j;
    memset(&j, 0, sizeof j);
    j.prompt = "Once upon a time";
    j.max_tokens = 60;
    int order = 0;
    REQUIRE(submit(s, m, &j));
    run_all(&j, 1, &order);
    /* Stop at a word from the middle of the greedy text. */
    char full[8192];
    memcpy(full, j.text, j.n_text);
    full[j.n_text] = '\0';
    const char *cut = strstr(full + 20, " ");
    REQUIRE(cut);
    char stop[8];
    snprintf(stop, sizeof stop, "%.5s", cut);
    hearth_token p[64];
    size_t n = tokenize(m, j.prompt, p, 64);
    sched_request_params rp;
    memset(&rp, 0, sizeof rp);
    rp.prompt = p;
    rp.n_prompt = n;
    rp.max_tokens = 60;
    rp.sampling = hearth_sampler_default_params();
    rp.sampling.temperature = 0;
    rp.stop[0] = "zzzz";
    rp.stop[1] = stop;
    rp.n_stop = 2;
    rp.text_continues = true;
    sched_request *r = NULL;
    REQUIRE(sched_submit(s, &rp, &r, &err) == SCHED_SUBMIT_OK);
    sched_delta d;
    memset(&d, 0, sizeof d);
    char text[8192];
    size_t nt = 0;
    double t0 = now_s();
    for (;;) {
        bool done = sched_poll(r, 20, &d);
        if (d.n_text && nt + d.n_text < sizeof text) {
            memcpy(text + nt, d.text, d.n_text);
            nt += d.n_text;
        }
        if (done || now_s() - t0 > 20) break;
    }
    size_t want = (size_t)(strstr(full, stop) - full);
    CHECK(d.finish == SCHED_FINISH_STOP);
    CHECKF(nt == want && !memcmp(text, full, want), "got %zu bytes '%.*s', want %zu", nt, (int)nt,
           text, want);
    sched_release(r);
    sched_delta_free(&d);
    sched_free(s);
    hearth_model_free(m);
}

TEST(cancel_and_queue_limits) {
    hearth_model *m = NULL;
    hearth_error err;
    REQUIRE(hearth_model_load(model_path, NULL, &m, &err) == HEARTH_OK);
    sched_params p = sched_default_params();
    p.n_parallel = 1;
    p.n_ctx = 256;
    p.n_threads = 1;
    p.queue_limit[SCHED_BACKGROUND] = 1;
    sched *s = NULL;
    REQUIRE(sched_create(m, &p, &s, &err) == HEARTH_OK);
    hearth_token t[64];
    size_t n = tokenize(m, "Once upon a time", t, 64);
    sched_request_params rp;
    memset(&rp, 0, sizeof rp);
    rp.prompt = t;
    rp.n_prompt = n;
    rp.cls = SCHED_BACKGROUND;
    rp.sampling = hearth_sampler_default_params();
    sched_request *r[3] = {NULL, NULL, NULL};
    int accepted = 0, full = 0;
    for (int i = 0; i < 3; i++) {
        sched_submit_status st = sched_submit(s, &rp, &r[i], &err);
        accepted += st == SCHED_SUBMIT_OK;
        full += st == SCHED_SUBMIT_QUEUE_FULL;
    }
    CHECKF(accepted <= 2 && full >= 1, "accepted %d, refused %d", accepted, full);
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.rejected[SCHED_BACKGROUND] == (uint64_t)full);
    /* Cancelling ends a request (running or queued) within a step. */
    sched_delta d;
    memset(&d, 0, sizeof d);
    for (int i = 0; i < 3; i++) {
        if (!r[i]) continue;
        sched_cancel(r[i]);
        double t0 = now_s();
        while (!sched_poll(r[i], 20, &d) && now_s() - t0 < 10) {
        }
        CHECKF(d.finish == SCHED_FINISH_CANCELLED || d.finish == SCHED_FINISH_LENGTH, "finish %s",
               sched_finish_name(d.finish));
        sched_release(r[i]);
    }
    sched_delta_free(&d);
    /* Bad requests. */
    sched_request *bad = NULL;
    rp.n_prompt = 0;
    CHECK(sched_submit(s, &rp, &bad, &err) == SCHED_SUBMIT_INVALID);
    hearth_token big[300];
    for (int i = 0; i < 300; i++) big[i] = 5;
    rp.prompt = big;
    rp.n_prompt = 300;
    CHECK(sched_submit(s, &rp, &bad, &err) == SCHED_SUBMIT_TOO_LONG);
    big[0] = 100000;
    rp.n_prompt = 3;
    CHECK(sched_submit(s, &rp, &bad, &err) == SCHED_SUBMIT_INVALID);
    /* A request still open at shutdown ends with an error, and releasing
     * it afterwards is safe. */
    rp.prompt = t;
    rp.n_prompt = n;
    rp.max_tokens = 0;
    rp.cls = SCHED_INTERACTIVE;
    sched_request *open = NULL;
    REQUIRE(sched_submit(s, &rp, &open, &err) == SCHED_SUBMIT_OK);
    sched_shutdown(s);
    memset(&d, 0, sizeof d);
    CHECK(sched_poll(open, 0, &d));
    CHECK(d.finish == SCHED_FINISH_ERROR || d.finish == SCHED_FINISH_LENGTH ||
          d.finish == SCHED_FINISH_STOP);
    sched_release(open);
    sched_delta_free(&d);
    sched_free(s);
    hearth_model_free(m);
}

TEST(queue_listing) {
    hearth_model *m = NULL;
    hearth_error err;
    REQUIRE(hearth_model_load(model_path, NULL, &m, &err) == HEARTH_OK);
    sched *s = make_sched(m, 1, 64, 0);
    REQUIRE(s);
    job j[3];
    memset(j, 0, sizeof j);
    j[0] = (job){.prompt = prompts[0], .cls = SCHED_INTERACTIVE, .max_tokens = 0};
    j[1] = (job){.prompt = prompts[1], .cls = SCHED_BACKGROUND, .max_tokens = 5, .user = "bob"};
    j[2] = (job){.prompt = prompts[2], .cls = SCHED_TOOL, .max_tokens = 5, .user = "tool-runner"};
    for (int i = 0; i < 3; i++) REQUIRE(submit(s, m, &j[i]));
    sched_seq_info info[8];
    size_t n = sched_list(s, info, 8);
    CHECK(n == 3);
    /* Queued entries come in serving order: tool before background; each
     * says who submitted it. */
    int tool_at = -1, bg_at = -1;
    for (size_t i = 0; i < n && i < 8; i++) {
        if (info[i].cls == SCHED_TOOL) tool_at = (int)i;
        if (info[i].cls == SCHED_BACKGROUND) bg_at = (int)i;
        if (info[i].cls == SCHED_INTERACTIVE) CHECK(info[i].user[0] == '\0');
        CHECK(info[i].evictions == 0);
    }
    CHECK(tool_at >= 0 && bg_at >= 0 && tool_at < bg_at);
    CHECK(!strcmp(info[tool_at].user, "tool-runner") && !strcmp(info[bg_at].user, "bob"));
    CHECK(sched_list(s, info, 1) == 3);
    int order = 0;
    run_all(j, 3, &order);
    CHECK(j[2].done_order < j[1].done_order);
    sched_free(s);
    hearth_model_free(m);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    static char path[4096];
    snprintf(path, sizeof path, "%s", test_shared("models/stories260K.gguf"));
    model_path = path;
    RUN(aging_lifts_a_class_per_interval);
    RUN(serving_order_is_class_then_fifo);
    RUN(prefill_of_a_better_class_pauses_worse_ones);
    RUN(victim_is_worst_class_then_youngest);
    RUN(prefix_length);
    RUN(stop_strings_hold_back_partial_matches);
    RUN(kv_copy_continues_like_the_original);
    RUN(batched_greedy_equals_single_runs);
    RUN(context_end_is_length);
    RUN(prefix_cache_reuses_finished_and_running_prompts);
    RUN(interactive_evicts_background_which_recomputes);
    RUN(stop_strings_cut_the_text);
    RUN(cancel_and_queue_limits);
    RUN(queue_listing);
    return test_finish();
}
