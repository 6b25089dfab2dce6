/* sample.c — turning logits into the next token.
 *
 * The chain, in order: repetition / presence / frequency penalties over the
 * last penalty_last_n accepted tokens → (greedy stops here when temperature
 * <= 0) → top-k → softmax → top-p → min-p → temperature → a draw.  The draw
 * uses a xorshift64* generator seeded from the params, one 24-bit uniform
 * per token, walked down the kept candidates in descending order — so a
 * seed reproduces a run exactly, and matches llama2.c's sampler for the
 * same seed and a temperature/top-p chain.
 *
 * Every buffer is sized for the vocabulary at creation; sampling allocates
 * nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"
#include "util/error.h"

typedef struct candidate {
    int32_t id;
    float logit;
    float p;
} candidate;

struct hearth_sampler {
    hearth_sampler_params params;
    int32_t n_vocab;
    uint64_t rng;
    candidate *cand;   /* (n_vocab) */
    int32_t *counts;   /* (n_vocab) occurrences in the penalty window */
    int32_t *window;   /* (penalty_last_n) ring of recent tokens */
    int32_t n_window;  /* tokens in the ring */
    int32_t window_at; /* next slot to write */
};

hearth_sampler_params hearth_sampler_default_params(void) {
    hearth_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.penalty_last_n = 64;
    p.seed = 0x5eed;
    return p;
}

static void rng_seed(hearth_sampler *s) {
    /* xorshift never leaves 0; map that seed to a fixed non-zero state. */
    s->rng = s->params.seed ? s->params.seed : 0x9e3779b97f4a7c15ull;
}

static uint32_t rng_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

/* Uniform in [0, 1) with 24 bits. */
static float rng_f32(uint64_t *state) {
    return (float)(rng_u32(state) >> 8) / 16777216.0f;
}

hearth_status hearth_sampler_create(const hearth_sampler_params *params, int32_t n_vocab,
                                    hearth_sampler **out, hearth_error *err) {
    *out = NULL;
    if (n_vocab <= 0) return error_set(err, HEARTH_ERR_INVALID_ARG, "vocabulary size %d", n_vocab);
    const hearth_sampler_params *p = params;
    if (!(p->top_p > 0.0f) || !(p->min_p >= 0.0f) || !(p->min_p <= 1.0f) ||
        !(p->repeat_penalty > 0.0f) || p->penalty_last_n < 0 || p->penalty_last_n > (1 << 20) ||
        isnan(p->temperature) || isnan(p->presence_penalty) || isnan(p->frequency_penalty)) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "sampling parameters out of range: top_p %g must be > 0, min_p %g in "
                         "[0, 1], repeat_penalty %g > 0, penalty window %d in [0, 1048576]",
                         (double)p->top_p, (double)p->min_p, (double)p->repeat_penalty,
                         p->penalty_last_n);
    }
    hearth_sampler *s = calloc(1, sizeof *s);
    if (!s) return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the sampler");
    s->params = *p;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->window = malloc((size_t)(p->penalty_last_n ? p->penalty_last_n : 1) * sizeof *s->window);
    if (!s->cand || !s->counts || !s->window) {
        hearth_sampler_free(s);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the sampler");
    }
    rng_seed(s);
    *out = s;
    return HEARTH_OK;
}

void hearth_sampler_free(hearth_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->counts);
    free(s->window);
    free(s);
}

void hearth_sampler_reset(hearth_sampler *s) {
    memset(s->counts, 0, (size_t)s->n_vocab * sizeof *s->counts);
    s->n_window = 0;
    s->window_at = 0;
    rng_seed(s);
}

void hearth_sampler_accept(hearth_sampler *s, hearth_token id) {
    int32_t cap = s->params.penalty_last_n;
    if (cap == 0 || id < 0 || id >= s->n_vocab) return;
    if (s->n_window == cap) {
        s->counts[s->window[s->window_at]]--;
    } else {
        s->n_window++;
    }
    s->window[s->window_at] = id;
    s->counts[id]++;
    s->window_at = (s->window_at + 1) % cap;
}

/* Penalises the logits of tokens seen in the window. */
static void apply_penalties(hearth_sampler *s) {
    const hearth_sampler_params *p = &s->params;
    if (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f) {
        return;
    }
    for (int32_t i = 0; i < s->n_window; i++) {
        int32_t id = s->window[i];
        int32_t c = s->counts[id];
        if (c <= 0) continue; /* this token's penalty was applied at an earlier slot */
        candidate *cd = &s->cand[id];
        cd->logit =
            cd->logit > 0.0f ? cd->logit / p->repeat_penalty : cd->logit * p->repeat_penalty;
        cd->logit -= (float)c * p->frequency_penalty + p->presence_penalty;
        s->counts[id] = -c; /* mark done; restored below */
    }
    for (int32_t i = 0; i < s->n_window; i++) {
        int32_t id = s->window[i];
        if (s->counts[id] < 0) s->counts[id] = -s->counts[id];
    }
}

static int cmp_desc(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Moves the k largest candidates to the front, sorted descending. */
static void select_top(candidate *c, int32_t n, int32_t k) {
    if (k < n) {
        /* Quickselect partition so only k elements need sorting. */
        int32_t lo = 0, hi = n - 1;
        while (lo < hi) {
            candidate pivot = c[lo + (hi - lo) / 2];
            int32_t i = lo, j = hi;
            while (i <= j) {
                while (cmp_desc(&c[i], &pivot) < 0) i++;
                while (cmp_desc(&c[j], &pivot) > 0) j--;
                if (i <= j) {
                    candidate t = c[i];
                    c[i] = c[j];
                    c[j] = t;
                    i++;
                    j--;
                }
            }
            if (k - 1 <= j) {
                hi = j;
            } else if (k - 1 >= i) {
                lo = i;
            } else {
                break;
            }
        }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_desc);
}

hearth_token hearth_sampler_sample(hearth_sampler *s, const float *logits) {
    const hearth_sampler_params *p = &s->params;
    int32_t n = s->n_vocab;
    for (int32_t i = 0; i < n; i++) {
        s->cand[i].id = i;
        s->cand[i].logit = logits[i];
    }
    apply_penalties(s);

    if (p->temperature <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++) {
            if (s->cand[i].logit > s->cand[best].logit) best = i;
        }
        return best;
    }

    int32_t k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    select_top(s->cand, n, k);
    n = k;

    /* Softmax of the (sorted) survivors. */
    float max = s->cand[0].logit, sum = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        s->cand[i].p = expf(s->cand[i].logit - max);
        sum += s->cand[i].p;
    }
    for (int32_t i = 0; i < n; i++) s->cand[i].p /= sum;

    if (p->top_p < 1.0f) {
        float cum = 0.0f;
        for (int32_t i = 0; i < n; i++) {
            cum += s->cand[i].p;
            if (cum > p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f) {
        float floor_p = s->cand[0].p * p->min_p;
        int32_t keep = 1;
        while (keep < n && s->cand[keep].p >= floor_p) keep++;
        n = keep;
    }

    /* Temperature last, then the draw over the kept candidates. */
    if (p->temperature != 1.0f) {
        float inv_t = 1.0f / p->temperature;
        float m = s->cand[0].logit * inv_t;
        for (int32_t i = 0; i < n; i++) s->cand[i].p = expf(s->cand[i].logit * inv_t - m);
    }
    float total = 0.0f;
    for (int32_t i = 0; i < n; i++) total += s->cand[i].p;
    float r = rng_f32(&s->rng) * total;
    float cdf = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        cdf += s->cand[i].p;
        if (r < cdf) return s->cand[i].id;
    }
    return s->cand[n - 1].id;
}
