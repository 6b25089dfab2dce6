/* gen.h — sectional generation through the scheduler (private).
 *
 * hearth_sections_run drives a sectional generation on a context of its
 * own; a server has one engine and one KV cache for everyone, so there
 * the planner's jobs become scheduler requests instead: each section (and
 * the outline) is a sequence of its own at the request's priority class,
 * sections that do not wait for another's tail run at once and share the
 * engine's batches with every other request, and the planner's samplers
 * (with their loop guards) pick each token on the engine thread.
 *
 * A runner is driven step by step by one thread (a connection thread: it
 * waits in gen_runner_step, so a stream can hand out each section as soon
 * as it is ready).  The engine thread reaches the planner only through
 * the runner's mutex.
 */
#ifndef HEARTH_GEN_H
#define HEARTH_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include "hearth.h"
#include "sched/sched.h"

typedef struct gen_runner gen_runner;

typedef struct gen_runner_params {
    sched_class cls;
    const char *user;                /* the submitter for the queue view, or NULL */
    hearth_loop_action guard_action; /* the planner's, for counting loops in the metrics */
} gen_runner_params;

/* Prepares to run g (which must outlive the runner) on s.  Nothing is
 * submitted before the first step. */
hearth_status gen_runner_create(sched *s, hearth_sections *g, const gen_runner_params *p,
                                gen_runner **out, hearth_error *err);
/* One round: submits every job that may start, waits up to timeout_ms
 * for news from the running ones, ends those that finished, and calls cb
 * for each section now ready in order (the outline first, when the model
 * wrote it); cb returning false stops the generation.  Returns true when
 * the generation is over (see gen_runner_error). */
bool gen_runner_step(gen_runner *r, int timeout_ms, hearth_section_fn cb, void *arg);
/* Stops the generation: running sections are cancelled, the rest skipped. */
void gen_runner_stop(gen_runner *r);
/* Why the generation failed ("" when it did not): a sequence that ended in
 * an error, or a job the scheduler refused.  *status gets the HTTP-ish
 * kind: 0 none, 503 busy or shutting down, 400 a prompt too long, 500 else. */
const char *gen_runner_error(const gen_runner *r, int *status);
/* Cancels what still runs, waits until the engine has let go of it, and
 * frees the runner.  Accepts NULL. */
void gen_runner_free(gen_runner *r);

#endif
