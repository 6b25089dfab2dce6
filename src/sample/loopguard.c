/* loopguard.c — watching a generated token stream for loops.
 *
 * Small models (and large ones far past their comfort zone) fall into
 * loops: one token over and over, a phrase of a few tokens, a sentence, or
 * a paragraph that keeps coming back with small changes.  The guard sees
 * one token at a time and keeps three cheap checks:
 *
 *  - cycles: for every period p in 1..max_period, the length of the run of
 *    latest tokens that equal the token p before them.  A run that covers
 *    enough tokens and enough whole periods is a cycle.  O(max_period) per
 *    token, exact.
 *  - collapse: the number of distinct n-grams among the n-grams of the
 *    last window tokens, kept in a counting hash table as n-grams enter and
 *    leave the window.  Loops with variations ("it was too big, it was too
 *    fast, it was too big …") break the runs of the cycle check but not
 *    this one.  n-grams of a single repeated token are not counted: runs
 *    (indentation, rules of dashes) are the period-1 cycle's business.
 *    O(1) per token.
 *  - spans: whether the latest span_len tokens occurred before anywhere in
 *    the history — a long-range repeat beyond max_period, or (with an
 *    index shared between the sections of one document) a section copying
 *    another.  Rolling hashes of the latest span_len - 1 tokens key an
 *    index of what followed each such n-gram; one bounded lookup per token.
 *
 * Legitimate repetition — list markers, indentation, a repeated word or
 * short phrase — repeats short stretches with different tokens between
 * them, so it trips neither the run lengths nor the span length, and keeps
 * the distinct-n-gram ratio high.
 *
 * Everything is sized at creation; pushing and penalizing allocate
 * nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"
#include "sample/loopguard.h"
#include "util/error.h"

#define MAX_PERIOD     256
#define MAX_SPAN       1024
#define MAX_WINDOW     8192
#define MAX_HISTORY    (1u << 22)
#define MAX_DISTINCT_N 8
#define SPAN_WALK      64 /* entries a span lookup follows at most */
#define SPAN_FOUND     32 /* distinct continuations a lookup reports at most */

/* Bases of the two rolling hashes (odd, so multiplication mod 2^64 is a bijection). */
#define BASE_KEY   0x100000001b3ull
#define BASE_CHECK 0x9e3779b97f4a7c15ull

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 1;
    while (c < n && c < (1u << 31)) c <<= 1;
    return c;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* ---------------------------------------------------------------- span index */

hearth_status span_index_init(span_index *x, uint32_t cap, hearth_error *err) {
    memset(x, 0, sizeof *x);
    x->cap = pow2_at_least(cap < 64 ? 64 : cap);
    x->n_buckets = x->cap;
    x->key = malloc((size_t)x->cap * sizeof *x->key);
    x->check = malloc((size_t)x->cap * sizeof *x->check);
    x->next = malloc((size_t)x->cap * sizeof *x->next);
    x->prev = malloc((size_t)x->cap * sizeof *x->prev);
    x->head = malloc((size_t)x->n_buckets * sizeof *x->head);
    if (!x->key || !x->check || !x->next || !x->prev || !x->head) {
        span_index_free(x);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for a span index of %u entries",
                         cap);
    }
    span_index_clear(x);
    return HEARTH_OK;
}

void span_index_free(span_index *x) {
    if (!x) return;
    free(x->key);
    free(x->check);
    free(x->next);
    free(x->prev);
    free(x->head);
    memset(x, 0, sizeof *x);
}

void span_index_clear(span_index *x) {
    for (uint32_t i = 0; i < x->n_buckets; i++) x->head[i] = -1;
    x->n_added = 0;
}

void span_index_add(span_index *x, uint64_t key, uint64_t check, int32_t next) {
    uint64_t s = x->n_added++;
    uint32_t slot = (uint32_t)(s & (x->cap - 1));
    uint32_t b = (uint32_t)(key & (x->n_buckets - 1));
    x->key[slot] = key;
    x->check[slot] = check;
    x->next[slot] = next;
    x->prev[slot] = x->head[b];
    x->head[b] = (int64_t)s;
}

uint32_t span_index_find(const span_index *x, uint64_t key, uint64_t check, int32_t *out,
                         uint32_t cap) {
    uint32_t n = 0;
    int64_t oldest = (int64_t)(x->n_added > x->cap ? x->n_added - x->cap : 0);
    int64_t s = x->head[key & (x->n_buckets - 1)];
    for (int walk = 0; s >= oldest && walk < SPAN_WALK && n < cap; walk++) {
        uint32_t slot = (uint32_t)((uint64_t)s & (x->cap - 1));
        if (x->key[slot] == key && x->check[slot] == check) {
            int32_t t = x->next[slot];
            bool seen = false;
            for (uint32_t i = 0; i < n && !seen; i++) seen = out[i] == t;
            if (!seen) out[n++] = t;
        }
        s = x->prev[slot];
    }
    return n;
}

/* ---------------------------------------------------------------- the guard */

struct hearth_loop_guard {
    hearth_loop_guard_params p;
    int32_t *recent; /* (rcap) ring of the latest tokens; token i at i & (rcap - 1) */
    uint32_t rcap;   /* power of two > every look-back below */
    uint64_t n;      /* tokens pushed since the reset */

    uint32_t *run; /* (max_period + 1) run[p]: latest tokens equal to the one p before */
    bool in_cycle; /* a cycle was reported and still runs */

    uint32_t ng_win;    /* n-grams in a full window: distinct_window - distinct_n + 1 */
    uint64_t *ng_ring;  /* (ng_win) hashes of the window's n-grams, oldest overwritten */
    uint64_t ng_seen;   /* n-grams ever entered */
    uint64_t *ng_key;   /* (ng_mask + 1) counting table, 0 = empty slot */
    uint32_t *ng_count; /* (ng_mask + 1) */
    uint32_t ng_mask;
    uint32_t n_distinct; /* keys in the table */
    uint32_t n_window;   /* n-grams in the window */
    bool collapsed;

    span_index own;    /* history of this stream */
    span_index *spans; /* the index in use: &own or a shared one */
    uint64_t span_key; /* hashes of the latest span_len - 1 tokens */
    uint64_t span_check;
    uint64_t pow_key; /* BASE_KEY^(span_len - 1) */
    uint64_t pow_check;
    bool in_span;

    hearth_loop_report rep;
    int32_t *pen; /* (pen_cap) scratch: tokens to penalize */
    uint32_t pen_cap;
};

hearth_loop_guard_params hearth_loop_guard_default_params(void) {
    hearth_loop_guard_params p;
    memset(&p, 0, sizeof p);
    p.action = HEARTH_LOOP_STOP_SECTION;
    p.max_period = 50;
    p.cycle_min_tokens = 16;
    p.cycle_min_repeats = 4;
    p.distinct_n = 4;
    p.distinct_window = 200;
    p.distinct_min = 0.5f;
    p.span_len = 24;
    p.history = 8192;
    p.penalty = 100.0f;
    return p;
}

const char *hearth_loop_kind_name(hearth_loop_kind kind) {
    switch (kind) {
    case HEARTH_LOOP_NONE: return "none";
    case HEARTH_LOOP_CYCLE: return "cycle";
    case HEARTH_LOOP_COLLAPSE: return "collapse";
    case HEARTH_LOOP_SPAN: return "span";
    }
    return "unknown";
}

bool hearth_loop_action_parse(const char *s, hearth_loop_action *out) {
    if (!s) return false;
    if (!strcmp(s, "off")) {
        *out = HEARTH_LOOP_OFF;
    } else if (!strcmp(s, "stop")) {
        *out = HEARTH_LOOP_STOP_SECTION;
    } else if (!strcmp(s, "stop-repetition") || !strcmp(s, "repetition")) {
        *out = HEARTH_LOOP_STOP;
    } else if (!strcmp(s, "penalize") || !strcmp(s, "penalise")) {
        *out = HEARTH_LOOP_PENALIZE;
    } else {
        return false;
    }
    return true;
}

static hearth_status check_params(const hearth_loop_guard_params *p, hearth_error *err) {
    if ((unsigned)p->action > HEARTH_LOOP_PENALIZE) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "loop guard: unknown action %d",
                         (int)p->action);
    }
    if (p->max_period > MAX_PERIOD) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "loop guard: max_period %u is over %d",
                         p->max_period, MAX_PERIOD);
    }
    if (p->max_period && (p->cycle_min_tokens < 1 || p->cycle_min_tokens > 4096 ||
                          p->cycle_min_repeats < 2 || p->cycle_min_repeats > 64)) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "loop guard: cycle_min_tokens %u must be in [1, 4096] and "
                         "cycle_min_repeats %u in [2, 64]",
                         p->cycle_min_tokens, p->cycle_min_repeats);
    }
    if (p->distinct_window &&
        (p->distinct_n < 1 || p->distinct_n > MAX_DISTINCT_N || p->distinct_window > MAX_WINDOW ||
         p->distinct_window < 2 * p->distinct_n || !(p->distinct_min >= 0.0f) ||
         !(p->distinct_min <= 1.0f))) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "loop guard: distinct_n %u must be in [1, %d], distinct_window %u in "
                         "[2 x n, %d], distinct_min %g in [0, 1]",
                         p->distinct_n, MAX_DISTINCT_N, p->distinct_window, MAX_WINDOW,
                         (double)p->distinct_min);
    }
    if (p->span_len && (p->span_len < 2 || p->span_len > MAX_SPAN || p->history < p->span_len ||
                        p->history > MAX_HISTORY)) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "loop guard: span_len %u must be in [2, %d] and history %u in "
                         "[span_len, %u]",
                         p->span_len, MAX_SPAN, p->history, MAX_HISTORY);
    }
    if (!(p->penalty >= 0.0f) || !isfinite(p->penalty)) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "loop guard: penalty %g must be finite and >= 0", (double)p->penalty);
    }
    return HEARTH_OK;
}

hearth_status hearth_loop_guard_create(const hearth_loop_guard_params *params,
                                       hearth_loop_guard **out, hearth_error *err) {
    *out = NULL;
    if (!params) return error_set(err, HEARTH_ERR_INVALID_ARG, "loop guard: NULL params");
    hearth_status st = check_params(params, err);
    if (st != HEARTH_OK) return st;
    hearth_loop_guard *g = calloc(1, sizeof *g);
    if (!g) return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the loop guard");
    g->p = *params;
    const hearth_loop_guard_params *p = &g->p;
    uint64_t look = (uint64_t)p->max_period + 1;
    if (p->span_len > look) look = p->span_len;
    if ((uint64_t)p->distinct_window + 1 > look) look = (uint64_t)p->distinct_window + 1;
    g->rcap = pow2_at_least(look + 1);
    g->recent = calloc(g->rcap, sizeof *g->recent);
    g->run = calloc((size_t)p->max_period + 1, sizeof *g->run);
    if (p->distinct_window) {
        g->ng_win = p->distinct_window - p->distinct_n + 1;
        g->ng_mask = pow2_at_least(2ull * g->ng_win) - 1;
        g->ng_ring = calloc(g->ng_win, sizeof *g->ng_ring);
        g->ng_key = calloc((size_t)g->ng_mask + 1, sizeof *g->ng_key);
        g->ng_count = calloc((size_t)g->ng_mask + 1, sizeof *g->ng_count);
    }
    g->pen_cap = p->max_period + 2 * SPAN_FOUND + p->distinct_window + 1;
    g->pen = malloc(g->pen_cap * sizeof *g->pen);
    bool ok = g->recent && g->run && g->pen &&
              (!p->distinct_window || (g->ng_ring && g->ng_key && g->ng_count));
    if (!ok) {
        hearth_loop_guard_free(g);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the loop guard");
    }
    if (p->span_len) {
        st = span_index_init(&g->own, p->history, err);
        if (st != HEARTH_OK) {
            hearth_loop_guard_free(g);
            return st;
        }
        g->spans = &g->own;
        g->pow_key = g->pow_check = 1;
        for (uint32_t i = 0; i + 1 < p->span_len; i++) {
            g->pow_key *= BASE_KEY;
            g->pow_check *= BASE_CHECK;
        }
    }
    hearth_loop_guard_reset(g);
    *out = g;
    return HEARTH_OK;
}

void hearth_loop_guard_free(hearth_loop_guard *g) {
    if (!g) return;
    free(g->recent);
    free(g->run);
    free(g->ng_ring);
    free(g->ng_key);
    free(g->ng_count);
    free(g->pen);
    span_index_free(&g->own);
    free(g);
}

void hearth_loop_guard_reset(hearth_loop_guard *g) {
    if (!g) return;
    g->n = 0;
    memset(g->run, 0, ((size_t)g->p.max_period + 1) * sizeof *g->run);
    g->in_cycle = false;
    if (g->p.distinct_window) {
        memset(g->ng_key, 0, ((size_t)g->ng_mask + 1) * sizeof *g->ng_key);
        memset(g->ng_count, 0, ((size_t)g->ng_mask + 1) * sizeof *g->ng_count);
    }
    g->ng_seen = 0;
    g->n_distinct = 0;
    g->n_window = 0;
    g->collapsed = false;
    if (g->p.span_len && g->spans == &g->own) span_index_clear(&g->own);
    g->span_key = g->span_check = 0;
    g->in_span = false;
    memset(&g->rep, 0, sizeof g->rep);
    g->rep.distinct_ratio = 1.0f;
}

void loop_guard_share_spans(hearth_loop_guard *g, span_index *shared) {
    if (!g || !g->p.span_len) return;
    g->spans = shared ? shared : &g->own;
}

const hearth_loop_guard_params *hearth_loop_guard_params_of(const hearth_loop_guard *g) {
    return g ? &g->p : NULL;
}

void hearth_loop_guard_report_get(const hearth_loop_guard *g, hearth_loop_report *out) {
    if (!g || !out) return;
    *out = g->rep;
}

static inline int32_t recent_at(const hearth_loop_guard *g, uint64_t i) {
    return g->recent[i & (g->rcap - 1)];
}

/* The cycle threshold of period p: run length that makes a loop. */
static inline uint32_t cycle_limit(const hearth_loop_guard_params *p, uint32_t period) {
    uint32_t by_repeats = (p->cycle_min_repeats - 1) * period;
    return by_repeats > p->cycle_min_tokens ? by_repeats : p->cycle_min_tokens;
}

/* ---- distinct n-grams: a counting table with backward-shift deletion */

static void ng_add(hearth_loop_guard *g, uint64_t h) {
    uint32_t i = (uint32_t)h & g->ng_mask;
    while (g->ng_key[i] && g->ng_key[i] != h) i = (i + 1) & g->ng_mask;
    if (!g->ng_key[i]) {
        g->ng_key[i] = h;
        g->n_distinct++;
    }
    g->ng_count[i]++;
}

static void ng_remove(hearth_loop_guard *g, uint64_t h) {
    uint32_t i = (uint32_t)h & g->ng_mask;
    while (g->ng_key[i] != h) {
        if (!g->ng_key[i]) return; /* not held: cannot happen */
        i = (i + 1) & g->ng_mask;
    }
    if (--g->ng_count[i]) return;
    g->n_distinct--;
    /* Shift later members of the probe run back into the hole. */
    uint32_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & g->ng_mask;
        if (!g->ng_key[j]) break;
        uint32_t home = (uint32_t)g->ng_key[j] & g->ng_mask;
        /* j may move to hole when its home is not in (hole, j] cyclically. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays) continue;
        g->ng_key[hole] = g->ng_key[j];
        g->ng_count[hole] = g->ng_count[j];
        hole = j;
    }
    g->ng_key[hole] = 0;
    g->ng_count[hole] = 0;
}

/* Hash of the n tokens ending at index last (never 0). */
static uint64_t ngram_hash(const hearth_loop_guard *g, uint64_t last, uint32_t n) {
    uint64_t h = 0x243f6a8885a308d3ull;
    for (uint32_t k = 0; k < n; k++) h = mix64(h ^ (uint32_t)recent_at(g, last - k)) + k;
    return h | 1;
}

/* Adds id to the stream.  A context token (seed) only moves the windows:
 * it is not looked up, indexed, counted or reported. */
static hearth_loop_kind feed(hearth_loop_guard *g, hearth_token id, bool seed) {
    const hearth_loop_guard_params *p = &g->p;
    uint64_t i = g->n; /* index of id */
    hearth_loop_kind found = HEARTH_LOOP_NONE;

    /* Spans: does id continue an earlier occurrence of the latest
     * span_len - 1 tokens?  Look up before recording, so a span never
     * matches itself. */
    uint32_t m = p->span_len ? p->span_len - 1 : 0;
    bool span_now = false;
    if (p->span_len && i >= m && !seed) {
        int32_t next[SPAN_FOUND];
        uint32_t k = span_index_find(g->spans, g->span_key, g->span_check, next, SPAN_FOUND);
        for (uint32_t j = 0; j < k && !span_now; j++) span_now = next[j] == id;
        span_index_add(g->spans, g->span_key, g->span_check, id);
    }

    /* Cycles, before id enters the ring (rcap > max_period keeps its slot
     * apart from the ones read). */
    uint32_t cyc_period = 0, cyc_run = 0;
    for (uint32_t per = 1; per <= p->max_period; per++) {
        if (i >= per && recent_at(g, i - per) == id) {
            g->run[per]++;
        } else {
            g->run[per] = 0;
        }
        if (!cyc_period && g->run[per] >= cycle_limit(p, per)) {
            cyc_period = per;
            cyc_run = g->run[per];
        }
    }
    g->recent[i & (g->rcap - 1)] = id;
    g->n = i + 1;
    if (seed) cyc_period = 0;

    if (p->span_len) {
        uint64_t v = (uint64_t)id + 1;
        g->span_key = g->span_key * BASE_KEY + v;
        g->span_check = g->span_check * BASE_CHECK + v;
        if (i >= m) { /* drop the token that left the (span_len - 1)-gram */
            uint64_t old = (uint64_t)recent_at(g, i - m) + 1;
            g->span_key -= old * g->pow_key;
            g->span_check -= old * g->pow_check;
        }
    }

    /* n-grams of one repeated token (indentation, a rule of dashes) are the
     * period-1 cycle check's business; counting them would make every
     * indented block look collapsed. */
    bool run_of_one = p->distinct_n > 1 && p->max_period >= 1 && g->run[1] + 1 >= p->distinct_n;
    if (p->distinct_window && i + 1 >= p->distinct_n && !run_of_one && !seed) {
        uint64_t h = ngram_hash(g, i, p->distinct_n);
        uint32_t slot = (uint32_t)(g->ng_seen % g->ng_win);
        if (g->n_window == g->ng_win) {
            ng_remove(g, g->ng_ring[slot]);
        } else {
            g->n_window++;
        }
        g->ng_ring[slot] = h;
        g->ng_seen++;
        ng_add(g, h);
        if (g->n_window == g->ng_win) {
            g->rep.distinct_ratio = (float)g->n_distinct / (float)g->n_window;
            bool low = g->rep.distinct_ratio < p->distinct_min;
            if (low && !g->collapsed) {
                g->rep.n_collapse++;
                g->rep.kind = HEARTH_LOOP_COLLAPSE;
                g->rep.period = 0;
                g->rep.loop_tokens = 0;
                g->rep.at = g->n;
                found = HEARTH_LOOP_COLLAPSE;
            }
            g->collapsed = low;
        }
    }

    if (cyc_period && !g->in_cycle) {
        g->rep.n_cycle++;
        g->rep.kind = HEARTH_LOOP_CYCLE;
        g->rep.period = cyc_period;
        g->rep.loop_tokens = cyc_run;
        g->rep.at = g->n;
        found = HEARTH_LOOP_CYCLE;
    }
    g->in_cycle = cyc_period != 0;
    if (span_now && !g->in_span && found != HEARTH_LOOP_CYCLE) {
        g->rep.n_span++;
        g->rep.kind = HEARTH_LOOP_SPAN;
        g->rep.period = 0;
        g->rep.loop_tokens = p->span_len;
        g->rep.at = g->n;
        found = HEARTH_LOOP_SPAN;
    }
    g->in_span = span_now;
    return found;
}

hearth_loop_kind hearth_loop_guard_push(hearth_loop_guard *g, hearth_token id) {
    if (!g || id < 0 || g->p.action == HEARTH_LOOP_OFF) return HEARTH_LOOP_NONE;
    return feed(g, id, false);
}

void loop_guard_seed(hearth_loop_guard *g, const int32_t *t, size_t n) {
    if (!g || g->p.action == HEARTH_LOOP_OFF) return;
    for (size_t i = 0; i < n; i++) {
        if (t[i] >= 0) feed(g, t[i], true);
    }
}

uint32_t hearth_loop_guard_penalize(hearth_loop_guard *g, float *logits, int32_t n_vocab) {
    if (!g || !logits || g->p.action != HEARTH_LOOP_PENALIZE || g->n == 0) return 0;
    const hearth_loop_guard_params *p = &g->p;
    uint32_t n = 0;
    uint64_t i = g->n; /* index the next token will take */
    for (uint32_t per = 1; per <= p->max_period && per <= i; per++) {
        if (g->run[per] + 1 >= cycle_limit(p, per)) g->pen[n++] = recent_at(g, i - per);
    }
    if (p->span_len && i >= p->span_len - 1) {
        n += span_index_find(g->spans, g->span_key, g->span_check, g->pen + n, SPAN_FOUND);
    }
    if (p->distinct_window && g->collapsed && p->distinct_n > 1) {
        /* Tokens that followed the latest distinct_n - 1 tokens inside the window. */
        uint32_t k = p->distinct_n - 1;
        uint64_t lo = i > p->distinct_window ? i - p->distinct_window : 0;
        for (uint64_t e = lo + k - 1; e + 1 < i && n < g->pen_cap; e++) {
            bool same = true;
            for (uint32_t j = 0; j < k && same; j++) {
                same = recent_at(g, e - j) == recent_at(g, i - 1 - j);
            }
            if (same) g->pen[n++] = recent_at(g, e + 1);
        }
    }
    uint32_t lowered = 0;
    for (uint32_t a = 0; a < n; a++) {
        int32_t t = g->pen[a];
        if (t < 0 || t >= n_vocab) continue;
        bool dup = false;
        for (uint32_t b = 0; b < a && !dup; b++) dup = g->pen[b] == t;
        if (dup) continue;
        logits[t] -= p->penalty;
        lowered++;
    }
    return lowered;
}

/* ---------------------------------------------------------------- measures */

double loop_distinct_ratio(const int32_t *t, size_t len, uint32_t n) {
    if (n == 0 || len < n) return 1.0;
    size_t total = len - n + 1;
    size_t cap = pow2_at_least(2 * (uint64_t)total);
    uint64_t *keys = calloc(cap, sizeof *keys);
    if (!keys) return 1.0;
    size_t distinct = 0;
    for (size_t s = 0; s < total; s++) {
        uint64_t h = 0x243f6a8885a308d3ull;
        for (uint32_t k = 0; k < n; k++) h = mix64(h ^ (uint32_t)t[s + k]) + k;
        h |= 1;
        size_t at = h & (cap - 1);
        while (keys[at] && keys[at] != h) at = (at + 1) & (cap - 1);
        if (!keys[at]) {
            keys[at] = h;
            distinct++;
        }
    }
    free(keys);
    return (double)distinct / (double)total;
}

size_t loop_longest_repeat(const int32_t *t, size_t len, size_t *a, size_t *b) {
    if (a) *a = 0;
    if (b) *b = 0;
    if (len < 2) return 0;
    /* row[j] for the current i: the common length of the suffixes at i and
     * j > i, built from the row of i + 1 (so j runs upwards). */
    uint32_t *row = calloc(len + 1, sizeof *row);
    if (!row) return 0;
    size_t best = 0;
    for (size_t i = len; i-- > 0;) {
        for (size_t j = i + 1; j < len; j++) {
            row[j] = t[i] == t[j] ? row[j + 1] + 1 : 0;
            if (row[j] > best) {
                best = row[j];
                if (a) *a = i;
                if (b) *b = j;
            }
        }
        row[i] = 0;
    }
    free(row);
    return best;
}
