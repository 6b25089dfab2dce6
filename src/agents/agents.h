/* agents.h — the agents runtime inside `hearth serve --agents FILE`.
 *
 * Agents are defined in a YAML file (config.h).  The runtime fires their
 * triggers from one thread (intervals, daily times, new inbox files;
 * "after" triggers and API calls queue runs directly), records every run
 * in the SQLite store (store.h) and executes queued runs on a few worker
 * threads.  A run builds an OpenAI chat-completions request — role prompt,
 * inputs, tools, output form, limits — and hands it to an engine: the
 * local one goes through the server's own request parsing into the
 * scheduler at the agent's class (tool or background, so a person chatting
 * always goes first); a remote one POSTs the same body to another
 * OpenAI-compatible server.  Tool calls in the reply are executed and
 * their results sent back as tool messages, a bounded number of rounds.
 */
#ifndef HEARTH_AGENTS_H
#define HEARTH_AGENTS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "agents/config.h"
#include "hearth.h"

/* An engine runs one chat completion: body is an OpenAI chat-completions
 * request (borrowed); on success *out gets the response object (owned by
 * the caller).  It gives up after timeout_ms or as soon as *stop is set.
 * On failure it returns false with a one-line reason in err. */
typedef bool (*agent_complete_fn)(void *ctx, json_t *body, int timeout_ms, const atomic_bool *stop,
                                  json_t **out, char *err, size_t err_cap);

typedef struct agent_engine {
    agent_complete_fn complete;
    void *ctx;
} agent_engine;

/* The remote engine: POSTs to BASE_URL/chat/completions with libcurl.
 * ctx is the base URL (a NUL-terminated string that outlives the calls). */
bool agent_remote_complete(void *ctx, json_t *body, int timeout_ms, const atomic_bool *stop,
                           json_t **out, char *err, size_t err_cap);

typedef struct agents_rt agents_rt;

/* Opens the store, recovers runs a crash interrupted, creates the data
 * folders; starts nothing.  Takes ownership of cfg.  local is the engine
 * of agents without a remote one (its ctx must outlive the runtime). */
hearth_status agents_create(agents_config *cfg, agent_engine local, agents_rt **out,
                            hearth_error *err);
/* Starts the trigger thread and the workers. */
hearth_status agents_start(agents_rt *rt, hearth_error *err);
/* Stops the threads (runs in flight are stopped and queued again, to run
 * at the next start), closes the store and frees everything.  Accepts
 * NULL. */
void agents_free(agents_rt *rt);

/* How many runs the last start found interrupted. */
int agents_recovered(const agents_rt *rt);

/* ---------------------------------------------------------------- the HTTP API */

/* A reply to an /v1/agents request: JSON (status 200 or 202), or an error
 * (status 4xx/5xx, code and message). */
typedef struct agents_reply {
    int status;
    json_t *json;     /* owned by the caller; NULL on error */
    const char *code; /* e.g. "agent_not_found" */
    const char *param;
    char message[256];
} agents_reply;

/* GET /v1/agents → {"object":"list","data":[agent…]}. */
void agents_list(agents_rt *rt, agents_reply *out);
/* Everything under /v1/agents/: path is the rest of the URL ("NAME",
 * "NAME/runs", "NAME/run"), method GET or POST, limit the ?limit= value
 * or NULL, body the request body (may be empty). */
void agents_route(agents_rt *rt, const char *method, const char *path, const char *limit,
                  const char *body, size_t n_body, agents_reply *out);

/* Queues a run of agent name with trigger and input (NULL for none);
 * *run_id gets its id.  Fails for an unknown or disabled agent. */
hearth_status agents_queue(agents_rt *rt, const char *name, const char *trigger, const char *input,
                           long long *run_id, hearth_error *err);

#endif
