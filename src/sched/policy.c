/* policy.c — the scheduler's decisions (see policy.h).
 *
 * Kept apart from the engine loop so that the rules — class order, aging,
 * FIFO within a class, preemption while a better class takes in its
 * prompt, eviction of the worst and youngest — can be tested on their own.
 */
#include "sched/policy.h"

#include <string.h>

sched_class policy_effective_class(sched_class cls, double wait_s, uint32_t aging_ms) {
    if (aging_ms == 0 || !(wait_s > 0.0)) return cls;
    double levels = wait_s * 1000.0 / (double)aging_ms;
    if (levels >= (double)cls) return SCHED_INTERACTIVE;
    return (sched_class)((int)cls - (int)levels);
}

bool policy_before(const policy_seq *a, const policy_seq *b) {
    if (a->eff != b->eff) return a->eff < b->eff;
    if (a->t_submit != b->t_submit) return a->t_submit < b->t_submit;
    return a->id < b->id;
}

void policy_sort(const policy_seq *seqs, uint32_t *idx, size_t n) {
    /* Insertion sort: n is the number of KV slots, a few dozen at most. */
    for (size_t i = 1; i < n; i++) {
        uint32_t v = idx[i];
        size_t j = i;
        while (j > 0 && policy_before(&seqs[v], &seqs[idx[j - 1]])) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

uint32_t policy_plan(const policy_seq *seqs, size_t n, uint32_t budget, uint32_t *take,
                     uint32_t *preempted) {
    *preempted = 0;
    bool any_prefill = false;
    sched_class best_prefill = SCHED_BACKGROUND;
    for (size_t i = 0; i < n; i++) {
        take[i] = 0;
        if (seqs[i].need > 1 && (!any_prefill || seqs[i].eff < best_prefill)) {
            best_prefill = seqs[i].eff;
            any_prefill = true;
        }
    }
    uint32_t order[4096];
    size_t m = n < 4096 ? n : 4096;
    for (size_t i = 0; i < m; i++) order[i] = (uint32_t)i;
    policy_sort(seqs, order, m);
    /* First one token for every sequence that runs (decoders never wait
     * behind a prompt), then the rest of the budget to prompts in order.
     * Prompts of a class worse than some decoding sequence's share a
     * quarter of the budget, so that they do not stretch the steps (the
     * token latency) of the better class. */
    uint32_t used = 0;
    bool any_decode = false;
    sched_class best_decode = SCHED_BACKGROUND;
    for (size_t k = 0; k < m; k++) {
        const policy_seq *q = &seqs[order[k]];
        if (q->need == 0) continue;
        if (any_prefill && q->eff > best_prefill) {
            (*preempted)++;
            continue;
        }
        if (used == budget) break;
        take[order[k]] = 1;
        used++;
        if (q->need == 1 && !any_decode) {
            any_decode = true;
            best_decode = q->eff; /* serving order: the first is the best */
        }
    }
    uint32_t lower_left = budget / 4;
    for (size_t k = 0; k < m && used < budget; k++) {
        const policy_seq *q = &seqs[order[k]];
        uint32_t *t = &take[order[k]];
        if (*t == 0 || q->need <= 1) continue;
        bool lower = any_decode && q->eff > best_decode;
        uint32_t room = budget - used;
        if (lower) room = lower_left > 1 ? (lower_left - 1 < room ? lower_left - 1 : room) : 0;
        uint32_t more = q->need - 1 < room ? q->need - 1 : room;
        *t += more;
        used += more;
        if (lower) lower_left = lower_left > *t ? lower_left - *t : 0;
    }
    return used;
}

int policy_victim(const policy_seq *running, size_t n, sched_class want) {
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        const policy_seq *q = &running[i];
        if (q->eff <= want) continue;
        if (best < 0) {
            best = (int)i;
            continue;
        }
        const policy_seq *b = &running[best];
        /* Worst class first; within it the youngest: the reverse of the
         * serving order. */
        if (policy_before(b, q)) best = (int)i;
    }
    return best;
}

uint32_t policy_prefix_len(const hearth_token *a, uint32_t na, const hearth_token *b, uint32_t nb) {
    uint32_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

size_t policy_stop_scan(const char *held, size_t n, const char *const *stops,
                        const size_t *stop_len, size_t n_stops, size_t *stop_at) {
    *stop_at = SIZE_MAX;
    for (size_t s = 0; s < n_stops; s++) {
        size_t L = stop_len[s];
        if (L == 0 || L > n) continue;
        const char *hit = memmem(held, n, stops[s], L);
        if (hit && (size_t)(hit - held) < *stop_at) *stop_at = (size_t)(hit - held);
    }
    if (*stop_at != SIZE_MAX) return *stop_at;
    size_t keep = 0;
    for (size_t s = 0; s < n_stops; s++) {
        size_t L = stop_len[s];
        if (L == 0) continue;
        /* Longest k < L with held's last k bytes == the stop's first k. */
        size_t kmax = L - 1 < n ? L - 1 : n;
        for (size_t k = kmax; k > keep; k--) {
            if (!memcmp(held + n - k, stops[s], k)) {
                keep = k;
                break;
            }
        }
    }
    return n - keep;
}
