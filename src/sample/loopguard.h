/* loopguard.h — the loop guard's internals other modules use (private).
 *
 * The guard itself (hearth_loop_guard_*) is public in hearth.h.  This header
 * adds two things: a span index that several guards can share, so that the
 * sections of one document see each other's text (a section that starts to
 * copy an earlier one is a loop too), and two measures of repetition for
 * reports and tests.
 */
#ifndef HEARTH_LOOPGUARD_H
#define HEARTH_LOOPGUARD_H

#include <stddef.h>
#include <stdint.h>

#include "hearth.h"

/* A fixed-size index from (span_len - 1)-grams to the tokens that followed
 * them.  Entries are keyed by two independent 64-bit hashes of the n-gram
 * (the second one stands in for comparing the tokens, which may come from
 * different streams); the oldest entries are overwritten once cap are held.
 * Adding and finding never allocate. */
typedef struct span_index {
    uint64_t *key;   /* (cap) first hash of each entry's n-gram */
    uint64_t *check; /* (cap) second hash */
    int32_t *next;   /* (cap) the token that followed */
    int64_t *prev;   /* (cap) serial of the previous entry of the same bucket, or -1 */
    int64_t *head;   /* (n_buckets) serial of the newest entry of each bucket, or -1 */
    uint32_t cap;    /* entries held, a power of two */
    uint32_t n_buckets;
    uint64_t n_added; /* serial of the next entry */
} span_index;

/* Allocates an index for about cap entries (rounded up to a power of two). */
hearth_status span_index_init(span_index *x, uint32_t cap, hearth_error *err);
void span_index_free(span_index *x);
void span_index_clear(span_index *x);
void span_index_add(span_index *x, uint64_t key, uint64_t check, int32_t next);
/* Writes up to cap distinct tokens that followed the n-gram (key, check),
 * newest first, looking at most at 64 entries; returns how many. */
uint32_t span_index_find(const span_index *x, uint64_t key, uint64_t check, int32_t *out,
                         uint32_t cap);

/* Makes g check and record its spans in shared (NULL: its own index again)
 * instead of its own history.  shared must have been made with the same
 * span_len and must outlive g's use of it; guards sharing one index must
 * not run on different threads at once. */
void loop_guard_share_spans(hearth_loop_guard *g, span_index *shared);

/* Feeds t[0..n) to g as context that comes before its stream — the end
 * of the previous section, say — so that spans and cycles running across
 * the join are seen; the tokens themselves are not checked, indexed or
 * counted.  Call right after a reset. */
void loop_guard_seed(hearth_loop_guard *g, const int32_t *t, size_t n);

/* Distinct n-grams / n-grams in t[0..len) (1 when there are none). */
double loop_distinct_ratio(const int32_t *t, size_t len, uint32_t n);
/* Length of the longest stretch of tokens that occurs twice in t[0..len)
 * (the two occurrences may overlap); its two starts go to *a and *b when
 * not NULL.  Quadratic time, linear memory; 0 when it cannot allocate. */
size_t loop_longest_repeat(const int32_t *t, size_t len, size_t *a, size_t *b);

#endif
