/* test_loopguard.c — the loop guard on synthetic token streams.
 *
 * Exact cycles of every period 1..50 must be found (with the cycle check
 * alone: at the token the definition says, with the right period; with
 * every check on: soon after the second copy completes), loops with
 * variations by the collapse check, a long-range copy by the span check
 * (also across guards that share an index, as the sections of one
 * document do).  Streams that repeat legitimately — numbered lists,
 * indented code, a phrase said three times, prose — must not trigger.
 * With the penalize action a greedy "model" that always wants to continue
 * its cycle must be steered away from ever completing one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"
#include "sample/loopguard.h"
#include "test.h"

static uint64_t rng_state = 0x1234567;

static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static hearth_loop_guard *make(hearth_loop_guard_params p) {
    hearth_loop_guard *g = NULL;
    hearth_error err;
    if (hearth_loop_guard_create(&p, &g, &err) != HEARTH_OK) {
        printf("guard: %s\n", err.msg);
        return NULL;
    }
    return g;
}

/* Pushes t[0..n); returns the index of the first finding (or -1), its kind in *kind. */
static long push_all(hearth_loop_guard *g, const int32_t *t, size_t n, hearth_loop_kind *kind) {
    for (size_t i = 0; i < n; i++) {
        hearth_loop_kind k = hearth_loop_guard_push(g, t[i]);
        if (k != HEARTH_LOOP_NONE) {
            if (kind) *kind = k;
            return (long)i;
        }
    }
    return -1;
}

/* A stream: prefix fresh tokens, then a cycle of period p for len tokens. */
static size_t cycle_stream(int32_t *t, size_t prefix, uint32_t p, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < prefix; i++) t[n++] = (int32_t)(1000 + i); /* all distinct */
    int32_t unit[64];
    /* Distinct tokens: the unit's own period is exactly p. */
    for (uint32_t i = 0; i < p; i++) unit[i] = (int32_t)(5000 + i * 7 + rnd(3) * 100000);
    for (size_t i = 0; i < len; i++) t[n++] = unit[i % p];
    return n;
}

TEST(cycles_of_every_period_are_found_exactly) {
    hearth_loop_guard_params p = hearth_loop_guard_default_params();
    p.distinct_window = 0;
    p.span_len = 0;
    hearth_loop_guard *g = make(p);
    REQUIRE(g);
    int32_t t[1200];
    for (uint32_t per = 1; per <= 50; per++) {
        hearth_loop_guard_reset(g);
        size_t n = cycle_stream(t, 100, per, 600);
        hearth_loop_kind kind = HEARTH_LOOP_NONE;
        long at = push_all(g, t, n, &kind);
        /* The run of tokens equal to the one `per` before starts after the
         * first period; it reaches max(16, 3 x per) at the limit. */
        uint32_t limit = 3 * per > 16 ? 3 * per : 16;
        long want = 100 + (long)per + (long)limit - 1;
        CHECKF(kind == HEARTH_LOOP_CYCLE && at == want, "period %u: found %s at %ld, want %ld", per,
               hearth_loop_kind_name(kind), at, want);
        hearth_loop_report r;
        hearth_loop_guard_report_get(g, &r);
        CHECKF(r.period == per && r.loop_tokens == limit && r.n_cycle == 1,
               "period %u: report period %u loop_tokens %u n_cycle %u", per, r.period,
               r.loop_tokens, r.n_cycle);
    }
    hearth_loop_guard_free(g);
}

TEST(cycles_are_found_early_with_every_check) {
    hearth_loop_guard *g = make(hearth_loop_guard_default_params());
    REQUIRE(g);
    int32_t t[1200];
    for (uint32_t per = 1; per <= 50; per++) {
        hearth_loop_guard_reset(g);
        size_t n = cycle_stream(t, 100, per, 600);
        hearth_loop_kind kind = HEARTH_LOOP_NONE;
        long at = push_all(g, t, n, &kind);
        /* At the latest when 24 tokens repeat (the span check), or the
         * cycle limit for short periods. */
        long latest = 100 + (long)per + 24;
        CHECKF(at >= 0 && at <= latest && kind != HEARTH_LOOP_COLLAPSE,
               "period %u: found %s at %ld, latest %ld", per, hearth_loop_kind_name(kind), at,
               latest);
    }
    hearth_loop_guard_free(g);
}

TEST(near_cycles_collapse) {
    /* A period-10 loop with one token changed in every copy: no exact run
     * reaches the limits, the distinct-4-gram ratio falls. */
    hearth_loop_guard *g = make(hearth_loop_guard_default_params());
    REQUIRE(g);
    int32_t t[2000];
    size_t n = 0;
    for (int i = 0; i < 50; i++) t[n++] = 2000 + i;
    for (int rep = 0; rep < 120; rep++) {
        for (int i = 0; i < 10; i++) t[n++] = 3000 + i;
        t[n - 1 - (size_t)rnd(10)] = (int32_t)(9000 + rnd(100000));
    }
    hearth_loop_kind kind = HEARTH_LOOP_NONE;
    long at = push_all(g, t, n, &kind);
    CHECKF(at >= 0 && at < 450, "near cycle found at %ld (%s)", at, hearth_loop_kind_name(kind));
    hearth_loop_guard_free(g);

    /* With the collapse check alone it is a collapse. */
    hearth_loop_guard_params p = hearth_loop_guard_default_params();
    p.max_period = 0;
    p.span_len = 0;
    g = make(p);
    REQUIRE(g);
    kind = HEARTH_LOOP_NONE;
    at = push_all(g, t, n, &kind);
    CHECKF(kind == HEARTH_LOOP_COLLAPSE, "got %s at %ld", hearth_loop_kind_name(kind), at);
    hearth_loop_report r;
    hearth_loop_guard_report_get(g, &r);
    CHECKF(r.distinct_ratio < 0.5f, "ratio %g", (double)r.distinct_ratio);
    hearth_loop_guard_free(g);
}

TEST(short_repeats_do_not_trigger) {
    /* A phrase of 6 said three times in a row, and a cycle of 12 seen only
     * twice: not loops yet. */
    hearth_loop_guard *g = make(hearth_loop_guard_default_params());
    REQUIRE(g);
    size_t m = 0;
    int32_t s[600];
    uint32_t word = 10000;
    for (int phrase = 0; phrase < 8; phrase++) {
        for (int i = 0; i < 10; i++) s[m++] = (int32_t)word++;
        int32_t unit[6];
        for (int i = 0; i < 6; i++) unit[i] = (int32_t)word++;
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < 6; i++) s[m++] = unit[i];
        }
        int32_t cyc[12];
        for (int i = 0; i < 12; i++) cyc[i] = (int32_t)word++;
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < 12; i++) s[m++] = cyc[i];
        }
    }
    long at = push_all(g, s, m, NULL);
    CHECKF(at < 0, "short repeats triggered at %ld of %zu", at, m);
    hearth_loop_guard_free(g);
}

TEST(lists_and_code_do_not_trigger) {
    hearth_loop_guard *g = make(hearth_loop_guard_default_params());
    REQUIRE(g);
    int32_t *t = malloc(20000 * sizeof *t);
    REQUIRE(t);
    /* A numbered list: "<n> . <word> <word> \n", markers repeat, items do not. */
    size_t n = 0;
    enum { DOT = 1, NL = 2, SPACE = 3, COLON = 4, LPAREN = 5, RPAREN = 6 };
    for (int item = 0; item < 400; item++) {
        t[n++] = 100 + item % 100; /* the number (tokens repeat every 100 items) */
        t[n++] = DOT;
        int words = 1 + (int)rnd(4);
        for (int w = 0; w < words; w++) t[n++] = (int32_t)(1000 + rnd(5000));
        t[n++] = NL;
    }
    long at = push_all(g, t, n, NULL);
    CHECKF(at < 0, "a numbered list triggered at %ld", at);

    /* Indented code: runs of up to 12 space tokens, then a statement. */
    hearth_loop_guard_reset(g);
    n = 0;
    for (int line = 0; line < 600; line++) {
        int depth = 1 + (int)rnd(3);
        for (int k = 0; k < 4 * depth; k++) t[n++] = SPACE;
        int len = 2 + (int)rnd(6);
        t[n++] = (int32_t)(7000 + rnd(50)); /* keyword-like */
        for (int k = 0; k < len; k++) {
            t[n++] = rnd(4) == 0 ? (int32_t)(LPAREN + rnd(2)) : (int32_t)(8000 + rnd(3000));
        }
        if (rnd(3) == 0) t[n++] = COLON;
        t[n++] = NL;
    }
    hearth_loop_kind kind = HEARTH_LOOP_NONE;
    at = push_all(g, t, n, &kind);
    CHECKF(at < 0, "indented code triggered (%s) at %ld of %zu", hearth_loop_kind_name(kind), at,
           n);

    /* Random text over a small alphabet: repeats pairs and triples often. */
    hearth_loop_guard_reset(g);
    for (n = 0; n < 5000; n++) t[n] = (int32_t)rnd(30);
    at = push_all(g, t, n, NULL);
    CHECKF(at < 0, "random text over 30 symbols triggered at %ld", at);
    free(t);
    hearth_loop_guard_free(g);
}

TEST(prose_does_not_trigger) {
    hearth_tokenizer *tok = NULL;
    hearth_error err;
    if (hearth_tokenizer_load(test_shared("models/stories260K.gguf"), &tok, &err) != HEARTH_OK) {
        printf("note: stories260K missing, prose test skipped (%s)\n", err.msg);
        return;
    }
    static const char text[] =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
        "park with her friends. One day, she saw a big red ball in the grass. She ran to it and "
        "picked it up. The ball was soft and shiny. Lily wanted to show it to her mom, so she "
        "ran home as fast as she could. Her mom smiled and said, \"What a pretty ball! Where "
        "did you find it?\" Lily told her about the park and the grass and the sun. Her mom "
        "said they could go back to the park tomorrow and play together. The next day, they "
        "packed a basket with apples, bread and juice. They walked to the park and sat under "
        "a tall tree. A little bird came and sang a song. Lily laughed and threw the ball to "
        "her mom. Her mom threw it back. They played until the sun went down, and then they "
        "walked home holding hands. That night, Lily dreamed of birds, balls and apples. When "
        "she woke up, she told her brother Tom about the dream. Tom wanted to come to the park "
        "too. So the three of them went back, and Tom climbed the tall tree while Lily and her "
        "mom watched from below. He saw the whole town from the top: the river, the school, "
        "the shop where they bought bread, and their own little house with the blue door.";
    int32_t ids[2048];
    size_t n = 0;
    REQUIRE(hearth_tokenize(tok, text, sizeof text - 1, 0, ids, 2048, &n, &err) == HEARTH_OK);
    hearth_loop_guard *g = make(hearth_loop_guard_default_params());
    REQUIRE(g);
    long at = push_all(g, ids, n, NULL);
    CHECKF(at < 0, "prose triggered at token %ld of %zu", at, n);
    hearth_loop_report r;
    hearth_loop_guard_report_get(g, &r);
    CHECKF(r.distinct_ratio > 0.9f, "prose distinct ratio %g", (double)r.distinct_ratio);
    hearth_loop_guard_free(g);
    hearth_tokenizer_free(tok);
}

TEST(long_range_copy_is_a_span) {
    hearth_loop_guard *g = make(hearth_loop_guard_default_params());
    REQUIRE(g);
    int32_t t[1000];
    size_t n = 0;
    for (int i = 0; i < 300; i++) t[n++] = 100 + i;
    for (int i = 0; i < 200; i++) t[n++] = 1000 + i;
    for (int i = 0; i < 40; i++) t[n++] = 100 + 50 + i; /* copies 40 tokens from far back */
    hearth_loop_kind kind = HEARTH_LOOP_NONE;
    long at = push_all(g, t, n, &kind);
    CHECKF(kind == HEARTH_LOOP_SPAN && at == 500 + 23, "got %s at %ld", hearth_loop_kind_name(kind),
           at);
    hearth_loop_guard_free(g);
}

TEST(shared_spans_catch_copies_between_guards) {
    hearth_loop_guard_params p = hearth_loop_guard_default_params();
    hearth_loop_guard *a = make(p), *b = make(p);
    REQUIRE(a && b);
    span_index shared;
    hearth_error err;
    REQUIRE(span_index_init(&shared, p.history, &err) == HEARTH_OK);
    loop_guard_share_spans(a, &shared);
    loop_guard_share_spans(b, &shared);
    int32_t t[200];
    for (int i = 0; i < 200; i++) t[i] = 100 + i;
    CHECK(push_all(a, t, 200, NULL) < 0);
    int32_t u[100];
    for (int i = 0; i < 30; i++) u[i] = 5000 + i;
    for (int i = 0; i < 40; i++) u[30 + i] = 100 + 70 + i; /* b copies a */
    hearth_loop_kind kind = HEARTH_LOOP_NONE;
    long at = push_all(b, u, 70, &kind);
    CHECKF(kind == HEARTH_LOOP_SPAN && at == 30 + 23, "got %s at %ld", hearth_loop_kind_name(kind),
           at);
    /* Without sharing, b sees nothing. */
    hearth_loop_guard_free(b);
    b = make(p);
    REQUIRE(b);
    CHECK(push_all(b, u, 70, NULL) < 0);
    span_index_free(&shared);
    hearth_loop_guard_free(a);
    hearth_loop_guard_free(b);
}

TEST(penalize_steers_a_greedy_loop_away) {
    /* The "model" prefers the token that continues its cycle of 7 by a wide
     * margin, then a fresh token.  With the guard penalizing, greedy
     * sampling must never complete a cycle limit or repeat 24 tokens. */
    enum { V = 4000, N = 1500 };
    hearth_loop_guard_params p = hearth_loop_guard_default_params();
    p.action = HEARTH_LOOP_PENALIZE;
    hearth_loop_guard *g = make(p);
    REQUIRE(g);
    hearth_sampler_params sp = hearth_sampler_default_params();
    sp.temperature = 0.0f;
    hearth_sampler *s = NULL;
    hearth_error err;
    REQUIRE(hearth_sampler_create(&sp, V, &s, &err) == HEARTH_OK);
    hearth_sampler_set_loop_guard(s, g);
    float *logits = malloc(V * sizeof *logits);
    int32_t *out = malloc(N * sizeof *out);
    REQUIRE(logits && out);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < V; k++)
            logits[k] = (float)((k * 2654435761u + (unsigned)i * 40503u) % 1000) / 1000.0f;
        if (i >= 7) logits[out[i - 7]] = 50.0f; /* continue the cycle */
        out[i] = hearth_sampler_sample(s, logits);
        hearth_sampler_accept(s, out[i]);
    }
    hearth_loop_report r;
    hearth_loop_guard_report_get(g, &r);
    size_t rep = loop_longest_repeat(out, N, NULL, NULL);
    CHECKF(rep < 24, "longest repeated span %zu", rep);
    CHECKF(r.n_cycle == 0 && r.n_span == 0, "cycles %u spans %u", r.n_cycle, r.n_span);
    /* The same model without a guard loops for ever. */
    hearth_sampler_set_loop_guard(s, NULL);
    hearth_sampler_reset(s);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < V; k++)
            logits[k] = (float)((k * 2654435761u + (unsigned)i * 40503u) % 1000) / 1000.0f;
        if (i >= 7) logits[out[i - 7]] = 50.0f;
        out[i] = hearth_sampler_sample(s, logits);
        hearth_sampler_accept(s, out[i]);
    }
    rep = loop_longest_repeat(out, N, NULL, NULL);
    CHECKF(rep > 1000, "unguarded longest repeat %zu", rep);
    free(logits);
    free(out);
    hearth_sampler_free(s);
    hearth_loop_guard_free(g);
}

TEST(measures) {
    int32_t t[100];
    for (int i = 0; i < 100; i++) t[i] = i;
    CHECK(fabs(loop_distinct_ratio(t, 100, 4) - 1.0) < 1e-9);
    CHECK(loop_longest_repeat(t, 100, NULL, NULL) == 0);
    for (int i = 0; i < 100; i++) t[i] = i % 5; /* period 5 */
    CHECK(fabs(loop_distinct_ratio(t, 100, 4) - 5.0 / 97.0) < 1e-9);
    size_t a, b;
    CHECK(loop_longest_repeat(t, 100, &a, &b) == 95); /* overlapping copies */
    CHECK(b - a == 5);
    int32_t u[] = {1, 2, 3, 9, 9, 1, 2, 3, 4, 7, 1, 2, 3, 4};
    CHECK(loop_longest_repeat(u, 14, NULL, NULL) == 4);
}

TEST(bad_params_are_errors) {
    hearth_loop_guard_params p = hearth_loop_guard_default_params();
    hearth_loop_guard *g = NULL;
    hearth_error err;
    p.max_period = 1000;
    CHECK(hearth_loop_guard_create(&p, &g, &err) == HEARTH_ERR_INVALID_ARG && !g);
    CHECK(strstr(err.msg, "max_period") != NULL);
    p = hearth_loop_guard_default_params();
    p.distinct_min = NAN;
    CHECK(hearth_loop_guard_create(&p, &g, &err) == HEARTH_ERR_INVALID_ARG);
    p = hearth_loop_guard_default_params();
    p.span_len = 1;
    CHECK(hearth_loop_guard_create(&p, &g, &err) == HEARTH_ERR_INVALID_ARG);
    p = hearth_loop_guard_default_params();
    p.penalty = INFINITY;
    CHECK(hearth_loop_guard_create(&p, &g, &err) == HEARTH_ERR_INVALID_ARG);
    p = hearth_loop_guard_default_params();
    p.action = (hearth_loop_action)9;
    CHECK(hearth_loop_guard_create(&p, &g, &err) == HEARTH_ERR_INVALID_ARG);
    hearth_loop_action act;
    CHECK(hearth_loop_action_parse("penalize", &act) && act == HEARTH_LOOP_PENALIZE);
    CHECK(hearth_loop_action_parse("stop", &act) && act == HEARTH_LOOP_STOP_SECTION);
    CHECK(hearth_loop_action_parse("off", &act) && act == HEARTH_LOOP_OFF);
    CHECK(!hearth_loop_action_parse("sometimes", &act));
    /* Off watches nothing; negative ids are ignored. */
    p = hearth_loop_guard_default_params();
    p.action = HEARTH_LOOP_OFF;
    g = make(p);
    REQUIRE(g);
    for (int i = 0; i < 500; i++) CHECK(hearth_loop_guard_push(g, 7) == HEARTH_LOOP_NONE);
    hearth_loop_guard_free(g);
    g = make(hearth_loop_guard_default_params());
    REQUIRE(g);
    for (int i = 0; i < 500; i++) CHECK(hearth_loop_guard_push(g, -1) == HEARTH_LOOP_NONE);
    hearth_loop_guard_free(g);
    hearth_loop_guard_free(NULL);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    RUN(cycles_of_every_period_are_found_exactly);
    RUN(cycles_are_found_early_with_every_check);
    RUN(near_cycles_collapse);
    RUN(short_repeats_do_not_trigger);
    RUN(lists_and_code_do_not_trigger);
    RUN(prose_does_not_trigger);
    RUN(long_range_copy_is_a_span);
    RUN(shared_spans_catch_copies_between_guards);
    RUN(penalize_steers_a_greedy_loop_away);
    RUN(measures);
    RUN(bad_params_are_errors);
    return test_finish();
}
