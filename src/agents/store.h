/* store.h — the agents' SQLite store (private to agents).
 *
 * One database file in WAL mode holds every run (trigger, input, inputs,
 * prompt hash, tokens, timings, status, attempt, output), the records the
 * agents write with write_output, the inbox files already taken and the
 * last firing of each timed trigger.  A run's output and its "succeeded"
 * status are written by one statement, and the runs it triggers are queued
 * in the same transaction, so a process killed at any point loses no
 * completed output and no follow-up run.
 *
 * All calls are serialised by a mutex inside the store; any thread may
 * call them.  query_store goes through a second connection opened
 * read-only, with an authorizer that allows reading and nothing else.
 */
#ifndef HEARTH_AGENTS_STORE_H
#define HEARTH_AGENTS_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hearth.h"

typedef struct agent_store agent_store;

/* Values are never renumbered; names are the API's. */
typedef enum run_status {
    RUN_QUEUED = 0,
    RUN_RUNNING = 1,
    RUN_SUCCEEDED = 2,
    RUN_FAILED = 3,
    RUN_INTERRUPTED = 4,
} run_status;

const char *run_status_name(run_status s);

/* One row of runs.  Strings are owned (run_free). */
typedef struct agent_run {
    long long id;
    char *agent;
    char *trigger; /* "api", "interval", "daily", "inbox:FILE", "after:AGENT", "call:AGENT" */
    char *input;   /* the trigger's input text (API input, upstream output), NULL for none */
    run_status status;
    int attempt;                               /* 1 for the first */
    double queued_at, started_at, finished_at; /* unix seconds; 0 = not yet */
    long long prompt_tokens, completion_tokens;
    char *error;  /* NULL unless failed or interrupted */
    char *output; /* NULL until succeeded */
    char *inputs; /* JSON list of what the prompt held */
    char *prompt_hash;
} agent_run;

void agent_run_free(agent_run *r);

/* Opens (creating) the database at path. */
hearth_status store_open(const char *path, agent_store **out, hearth_error *err);
void store_close(agent_store *st);

/* Queues a run; *id gets its id.  input may be NULL. */
hearth_status store_enqueue(agent_store *st, const char *agent, const char *trigger,
                            const char *input, int attempt, long long *id, hearth_error *err);

/* Crash recovery: every run left "running" becomes "interrupted"; for each
 * one whose agent may still retry (retries_of returns the agent's retry
 * count, or -1 for an agent no longer configured) a new queued run with
 * attempt + 1 is added.  Queued runs of unknown agents are failed.
 * Returns how many were interrupted. */
int store_recover(agent_store *st, int (*retries_of)(void *ctx, const char *agent), void *ctx,
                  hearth_error *err);

/* Takes the oldest queued run whose agent has no running run (an agent
 * runs one at a time, in order), marks it running (now) and fills *out.
 * Returns false when there is none. */
bool store_claim(agent_store *st, agent_run *out);

/* Records the end of run id: status, output/error, tokens, inputs, prompt
 * hash, in one transaction with the follow-up runs: n_next agents queued
 * with trigger next_trigger and input (the output); and, when retry is
 * set, a new queued attempt of the same trigger and input. */
typedef struct run_result {
    run_status status; /* RUN_SUCCEEDED or RUN_FAILED */
    const char *output;
    const char *error;
    long long prompt_tokens, completion_tokens;
    const char *inputs;
    const char *prompt_hash;
    bool retry;
    const char *const *next_agents; /* queued after a success */
    size_t n_next;
    const char *next_trigger;
} run_result;

hearth_status store_finish(agent_store *st, const agent_run *run, const run_result *res,
                           hearth_error *err);

/* Puts a running run back in the queue as it was (a clean shutdown stopped
 * it: that costs no attempt). */
hearth_status store_requeue(agent_store *st, long long id, hearth_error *err);

/* Run id (false when none), or the latest run of agent, or its newest runs. */
bool store_get_run(agent_store *st, long long id, agent_run *out);
bool store_last_run(agent_store *st, const char *agent, agent_run *out);
/* The latest successful output of agent (malloc'd) or NULL. */
char *store_last_output(agent_store *st, const char *agent);
/* Up to limit runs of agent, newest first; returns how many (*out malloc'd). */
size_t store_list_runs(agent_store *st, const char *agent, size_t limit, agent_run **out);

/* write_output with a key: one row of records. */
hearth_status store_add_record(agent_store *st, const char *agent, long long run_id,
                               const char *key, const char *content, hearth_error *err);

/* Inbox files: true when (agent, file, size, mtime) was seen; mark_seen
 * records it and queues the run in one transaction. */
bool store_inbox_seen(agent_store *st, const char *agent, const char *file, long long size,
                      long long mtime);
hearth_status store_inbox_take(agent_store *st, const char *agent, const char *file, long long size,
                               long long mtime, long long *run_id, hearth_error *err);

/* Last firing time of a timed trigger (0 when never); fire records when
 * and queues a run with that trigger name, in one transaction. */
double store_trigger_last(agent_store *st, const char *agent, size_t index);
hearth_status store_trigger_fire(agent_store *st, const char *agent, size_t index, double when,
                                 const char *trigger, long long *run_id, hearth_error *err);

/* Runs sql (one SELECT) on the read-only connection: a JSON array of row
 * objects, at most max_rows.  NULL with err on a refused or bad query. */
json_t *store_query(agent_store *st, const char *sql, size_t max_rows, hearth_error *err);

/* Checks that sql compiles as a read-only query over the store's schema. */
hearth_status store_check_query(const char *sql, hearth_error *err);

double store_now(void);

#endif
