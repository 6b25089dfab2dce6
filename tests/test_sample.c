/* test_sample.c — the sampler chain.
 *
 * Greedy must be the argmax; with no truncation the empirical distribution
 * of many draws must match the softmax of the logits (a chi-square bound);
 * top-k / top-p / min-p must never return a token outside the set the
 * definition allows; penalties must change the argmax as their formulas
 * say; a seed must reproduce a run.  (The match with llama2.c's seeded
 * sampler on a real model is checked in test_cli.)
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "hearth.h"
#include "test.h"

static hearth_sampler *make(hearth_sampler_params p, int32_t n) {
    hearth_sampler *s = NULL;
    hearth_error err;
    if (hearth_sampler_create(&p, n, &s, &err) != HEARTH_OK) return NULL;
    return s;
}

static hearth_sampler_params plain(float temp) {
    hearth_sampler_params p = hearth_sampler_default_params();
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 1234;
    return p;
}

TEST(greedy_is_argmax) {
    float logits[100];
    for (int i = 0; i < 100; i++) logits[i] = sinf((float)i * 1.7f) * 5.0f;
    int best = 0;
    for (int i = 1; i < 100; i++)
        if (logits[i] > logits[best]) best = i;
    hearth_sampler *s = make(plain(0.0f), 100);
    REQUIRE(s);
    for (int k = 0; k < 5; k++) CHECK(hearth_sampler_sample(s, logits) == best);
    hearth_sampler_free(s);
    /* top_k = 1 is greedy at any temperature. */
    hearth_sampler_params p = plain(5.0f);
    p.top_k = 1;
    s = make(p, 100);
    REQUIRE(s);
    for (int k = 0; k < 20; k++) CHECK(hearth_sampler_sample(s, logits) == best);
    hearth_sampler_free(s);
}

/* Draws n samples and returns counts (size 8). */
static void histogram(hearth_sampler_params p, const float *logits, int n, int *counts) {
    memset(counts, 0, 8 * sizeof *counts);
    hearth_sampler *s = make(p, 8);
    if (!s) return;
    for (int i = 0; i < n; i++) counts[hearth_sampler_sample(s, logits)]++;
    hearth_sampler_free(s);
}

TEST(distribution_matches_softmax) {
    const float logits[8] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f, 2.5f, -3.0f};
    const float temps[] = {1.0f, 0.7f, 1.6f};
    for (size_t ti = 0; ti < 3; ti++) {
        float t = temps[ti];
        double p[8], z = 0;
        for (int i = 0; i < 8; i++) z += p[i] = exp(logits[i] / t);
        int counts[8];
        enum { N = 40000 };
        histogram(plain(t), logits, N, counts);
        double chi2 = 0;
        for (int i = 0; i < 8; i++) {
            double e = N * p[i] / z;
            chi2 += (counts[i] - e) * (counts[i] - e) / e;
        }
        /* 7 degrees of freedom: P(chi2 > 24.3) ~ 0.001. */
        CHECKF(chi2 < 24.3, "temperature %g: chi-square %g", (double)t, chi2);
    }
}

TEST(truncation_sets) {
    const float logits[8] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f, 2.5f, -3.0f};
    /* sorted: 4 (3.0), 6 (2.5), 1 (2.0), 0 (1.0), 2, 5, 3, 7 */
    int counts[8];
    hearth_sampler_params p = plain(1.0f);
    p.top_k = 3;
    histogram(p, logits, 5000, counts);
    CHECK(counts[4] > 0 && counts[6] > 0 && counts[1] > 0);
    CHECK(counts[0] + counts[2] + counts[3] + counts[5] + counts[7] == 0);

    /* softmax: p4 = .43, p6 = .26, p1 = .16, ... top_p .6 keeps {4, 6}. */
    p = plain(1.0f);
    p.top_p = 0.6f;
    histogram(p, logits, 5000, counts);
    CHECK(counts[4] > 0 && counts[6] > 0);
    CHECK(counts[4] + counts[6] == 5000);

    /* min_p .5: keep tokens with p >= .5 p_max, i.e. logit >= 3 - ln 2: {4, 6}. */
    p = plain(1.0f);
    p.min_p = 0.5f;
    histogram(p, logits, 5000, counts);
    CHECK(counts[4] + counts[6] == 5000 && counts[6] > 0);
}

TEST(penalties) {
    float logits[4] = {2.0f, 1.5f, -1.0f, -1.2f};
    hearth_sampler_params p = plain(0.0f);
    p.repeat_penalty = 2.0f;
    hearth_sampler *s = make(p, 4);
    REQUIRE(s);
    CHECK(hearth_sampler_sample(s, logits) == 0);
    hearth_sampler_accept(s, 0); /* 2.0 / 2 = 1.0 < 1.5 */
    CHECK(hearth_sampler_sample(s, logits) == 1);
    hearth_sampler_free(s);

    /* Negative logits are multiplied: -1.0 * 2 = -2 < -1.2. */
    float neg[2] = {-1.0f, -1.2f};
    s = make(p, 2);
    REQUIRE(s);
    hearth_sampler_accept(s, 0);
    CHECK(hearth_sampler_sample(s, neg) == 1);
    hearth_sampler_free(s);

    /* Frequency: two occurrences x 0.3 = 0.6 > 0.5 gap; presence is per token. */
    p = plain(0.0f);
    p.frequency_penalty = 0.3f;
    s = make(p, 4);
    REQUIRE(s);
    hearth_sampler_accept(s, 0);
    CHECK(hearth_sampler_sample(s, logits) == 0); /* 2.0 - 0.3 > 1.5 */
    hearth_sampler_accept(s, 0);
    CHECK(hearth_sampler_sample(s, logits) == 1); /* 2.0 - 0.6 < 1.5 */
    hearth_sampler_free(s);
    p = plain(0.0f);
    p.presence_penalty = 0.4f;
    s = make(p, 4);
    REQUIRE(s);
    for (int i = 0; i < 5; i++) hearth_sampler_accept(s, 0);
    CHECK(hearth_sampler_sample(s, logits) == 0); /* 2.0 - 0.4 > 1.5 */
    hearth_sampler_free(s);

    /* The window forgets: after last_n other tokens, no penalty. */
    p = plain(0.0f);
    p.repeat_penalty = 2.0f;
    p.penalty_last_n = 3;
    s = make(p, 4);
    REQUIRE(s);
    hearth_sampler_accept(s, 0);
    CHECK(hearth_sampler_sample(s, logits) == 1);
    for (int i = 0; i < 3; i++) hearth_sampler_accept(s, 3);
    CHECK(hearth_sampler_sample(s, logits) == 0);
    hearth_sampler_free(s);
}

TEST(seed_reproduces) {
    float logits[50];
    for (int i = 0; i < 50; i++) logits[i] = cosf((float)i) * 2.0f;
    hearth_sampler_params p = plain(1.0f);
    p.seed = 42;
    hearth_sampler *a = make(p, 50), *b = make(p, 50);
    p.seed = 43;
    hearth_sampler *c = make(p, 50);
    REQUIRE(a && b && c);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 200; i++) {
        hearth_token x = hearth_sampler_sample(a, logits), y = hearth_sampler_sample(b, logits);
        hearth_token z = hearth_sampler_sample(c, logits);
        same_ab += x == y;
        same_ac += x == z;
    }
    CHECK(same_ab == 200);
    CHECK(same_ac < 150);
    hearth_sampler_reset(a);
    hearth_sampler_reset(b);
    CHECK(hearth_sampler_sample(a, logits) == hearth_sampler_sample(b, logits));
    hearth_sampler_free(a);
    hearth_sampler_free(b);
    hearth_sampler_free(c);
}

TEST(bad_params_rejected) {
    hearth_sampler *s;
    hearth_error err;
    hearth_sampler_params p = plain(1.0f);
    p.top_p = 0.0f;
    CHECK(hearth_sampler_create(&p, 10, &s, &err) == HEARTH_ERR_INVALID_ARG);
    p = plain(1.0f);
    p.min_p = 1.5f;
    CHECK(hearth_sampler_create(&p, 10, &s, &err) == HEARTH_ERR_INVALID_ARG);
    p = plain(NAN);
    CHECK(hearth_sampler_create(&p, 10, &s, &err) == HEARTH_ERR_INVALID_ARG);
    p = plain(1.0f);
    CHECK(hearth_sampler_create(&p, 0, &s, &err) == HEARTH_ERR_INVALID_ARG);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    RUN(greedy_is_argmax);
    RUN(distribution_matches_softmax);
    RUN(truncation_sets);
    RUN(penalties);
    RUN(seed_reproduces);
    RUN(bad_params_rejected);
    return test_finish();
}
