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
 * A grammar (hearth_sampler_set_grammar) masks the logits before all of
 * that: only the tokens it allows become candidates, so penalties,
 * truncation and the draw work on those alone.  A loop guard
 * (hearth_sampler_set_loop_guard) sees every accepted token, and with the
 * penalize action lowers the logits of the tokens that would continue a
 * loop before the chain runs.
 *
 * Every buffer is sized for the vocabulary at creation; sampling allocates
 * nothing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"
#include "kernels/kernels.h"
#include "sample/sample_internal.h"
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
    candidate *cand;          /* (n_vocab) */
    int32_t *counts;          /* (n_vocab) occurrences in the penalty window */
    int32_t *window;          /* (penalty_last_n) ring of recent tokens */
    int32_t n_window;         /* tokens in the ring */
    int32_t window_at;        /* next slot to write */
    float *work;              /* (n_vocab) logits after the loop guard's penalty */
    hearth_grammar *grammar;  /* borrowed, may be NULL */
    hearth_loop_guard *guard; /* borrowed, may be NULL */
    hearth_loop_kind found;   /* what the guard found at the latest accept */
    char error[512];          /* why the latest sample returned -1 */
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
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    if (!s->cand || !s->counts || !s->window || !s->work) {
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
    free(s->work);
    free(s);
}

void hearth_sampler_reset(hearth_sampler *s) {
    memset(s->counts, 0, (size_t)s->n_vocab * sizeof *s->counts);
    s->n_window = 0;
    s->window_at = 0;
    rng_seed(s);
}

void hearth_sampler_set_grammar(hearth_sampler *s, hearth_grammar *g) {
    if (s) s->grammar = g;
}

void hearth_sampler_set_loop_guard(hearth_sampler *s, hearth_loop_guard *g) {
    if (!s) return;
    s->guard = g;
    s->found = HEARTH_LOOP_NONE;
}

hearth_loop_kind hearth_sampler_loop_found(const hearth_sampler *s) {
    return s ? s->found : HEARTH_LOOP_NONE;
}

const char *hearth_sampler_error(const hearth_sampler *s) {
    return s ? s->error : "";
}

void hearth_sampler_accept(hearth_sampler *s, hearth_token id) {
    if (id < 0 || id >= s->n_vocab) return;
    if (s->grammar) {
        hearth_error err;
        if (hearth_grammar_accept(s->grammar, id, &err) != HEARTH_OK) {
            snprintf(s->error, sizeof s->error, "%s", err.msg);
        }
    }
    if (s->guard) s->found = hearth_loop_guard_push(s->guard, id);
    int32_t cap = s->params.penalty_last_n;
    if (cap == 0) return;
    if (s->n_window == cap) {
        s->counts[s->window[s->window_at]]--;
    } else {
        s->n_window++;
    }
    s->window[s->window_at] = id;
    s->counts[id]++;
    s->window_at = (s->window_at + 1) % cap;
}

/* Whether any penalty is on. */
static bool has_penalties(const hearth_sampler_params *p) {
    return p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
}

/* Penalises the logits of tokens seen in the window. */
static void apply_penalties(hearth_sampler *s) {
    const hearth_sampler_params *p = &s->params;
    if (!has_penalties(p)) return;
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

/* Keeps only the candidates the grammar allows (in id order); returns how
 * many, or 0 with s->error set. */
static int32_t apply_grammar(hearth_sampler *s) {
    const uint64_t *bits = grammar_mask(s->grammar);
    if (!bits) {
        snprintf(s->error, sizeof s->error, "%s", grammar_error(s->grammar));
        return 0;
    }
    /* Ids past the tokenizer's (padded logit rows) are never allowed. */
    int32_t n = grammar_n_vocab(s->grammar) < s->n_vocab ? grammar_n_vocab(s->grammar) : s->n_vocab;
    int32_t kept = 0;
    for (int32_t w = 0; w * 64 < n; w++) {
        for (uint64_t b = bits[w]; b; b &= b - 1) { /* each set bit, lowest first */
            int32_t id = w * 64 + __builtin_ctzll(b);
            if (id < n) s->cand[kept++] = s->cand[id];
        }
    }
    if (!kept) snprintf(s->error, sizeof s->error, "grammar: no token allowed");
    return kept;
}

hearth_token hearth_sampler_sample(hearth_sampler *s, const float *logits) {
    const hearth_sampler_params *p = &s->params;
    int32_t n = s->n_vocab;
    s->error[0] = '\0';
    if (s->guard && hearth_loop_guard_params_of(s->guard)->action == HEARTH_LOOP_PENALIZE) {
        memcpy(s->work, logits, (size_t)n * sizeof *s->work);
        hearth_loop_guard_penalize(s->guard, s->work, n);
        logits = s->work;
    }
    if (p->temperature <= 0.0f && !s->grammar && !has_penalties(p)) {
        /* plain greedy: the first largest logit, without the candidate list */
        return kernel_argmax()(logits, n);
    }
    for (int32_t i = 0; i < n; i++) {
        s->cand[i].id = i;
        s->cand[i].logit = logits[i];
    }
    apply_penalties(s);
    if (s->grammar && (n = apply_grammar(s)) == 0) return -1;

    if (p->temperature <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++) {
            if (s->cand[i].logit > s->cand[best].logit) best = i;
        }
        return s->cand[best].id;
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
