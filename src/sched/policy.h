/* policy.h — the scheduler's decisions as pure functions (private).
 *
 * Everything here works on plain values so that tests can drive it without
 * a model: the effective class of a sequence after aging, the order in
 * which sequences are served, which running sequence to evict, how much of
 * a cached prefix a prompt can reuse, and how much generated text may be
 * released while a stop string could still be forming at its end.
 */
#ifndef HEARTH_SCHED_POLICY_H
#define HEARTH_SCHED_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hearth.h"
#include "sched/sched.h"

/* The class a sequence of class cls is served as after waiting wait_s
 * seconds: one class better for every aging_ms of waiting (never better
 * than interactive); aging_ms == 0 turns aging off. */
sched_class policy_effective_class(sched_class cls, double wait_s, uint32_t aging_ms);

/* What the policy needs to know of one sequence. */
typedef struct policy_seq {
    sched_class eff; /* effective class (after aging) */
    double t_submit; /* arrival time: FIFO within a class */
    uint64_t id;     /* tie-break for equal arrival times */
    uint32_t need;   /* tokens it wants fed this step (> 1: prompt) */
} policy_seq;

/* True when a is served before b: better effective class, then earlier
 * arrival, then lower id. */
bool policy_before(const policy_seq *a, const policy_seq *b);

/* Sorts idx[0..n) so that seqs[idx[i]] are in serving order. */
void policy_sort(const policy_seq *seqs, uint32_t *idx, size_t n);

/* Decides a step for n running sequences (in any order): budget tokens in
 * all.  While some sequence is taking in its prompt, sequences of a worse
 * effective class than the best such one are paused (preempted at this
 * token boundary; their KV stays).  The rest get one token each in serving
 * order (so decoding never waits behind a long prompt), then what is left
 * of the budget goes to prompts in serving order (chunked prefill); the
 * prompts of classes worse than a decoding sequence's get at most a
 * quarter of the budget in all, which keeps that class's steps short.  Writes take[i]
 * (0 = not advanced) and returns the tokens planned.  *preempted counts
 * sequences skipped for priority (not for lack of budget). */
uint32_t policy_plan(const policy_seq *seqs, size_t n, uint32_t budget, uint32_t *take,
                     uint32_t *preempted);

/* Index of the running sequence to evict so that a waiting sequence of
 * effective class want can run: among those of a strictly worse effective
 * class, the worst class, and within it the youngest (latest arrival).
 * -1 when none may be evicted. */
int policy_victim(const policy_seq *running, size_t n, sched_class want);

/* Length of the common prefix of a[0..na) and b[0..nb). */
uint32_t policy_prefix_len(const hearth_token *a, uint32_t na, const hearth_token *b, uint32_t nb);

/* Stop strings over text held back from a stream.  Looks for the earliest
 * occurrence of any stop string in held[0..n).  When there is one, sets
 * *stop_at to its offset and returns it (the bytes before it may go out).
 * Otherwise sets *stop_at = SIZE_MAX and returns how many leading bytes
 * may go out now: all but the longest tail that is a proper prefix of
 * some stop string (it may still complete). */
size_t policy_stop_scan(const char *held, size_t n, const char *const *stops,
                        const size_t *stop_len, size_t n_stops, size_t *stop_at);

#endif
