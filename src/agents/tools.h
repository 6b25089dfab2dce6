/* tools.h — what an agent may do besides generating text (private).
 *
 * The tools follow the OpenAI tools format: tools_schema lists the ones an
 * agent has, and a call names one with JSON arguments.  read_file and
 * list_inbox reach only the agent's own data folder: every path is walked
 * one component at a time with openat(O_NOFOLLOW), so neither ".." nor a
 * symbolic link anywhere on the way can lead outside it.
 */
#ifndef HEARTH_AGENTS_TOOLS_H
#define HEARTH_AGENTS_TOOLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "agents/config.h"
#include "agents/store.h"

/* The "tools" array of a request for agent a (NULL when it has none). */
json_t *tools_schema(const agent_def *a);

/* Reads rel (relative to folder) confined to it, at most max bytes (a
 * longer file is cut and *cut set).  NULL with a reason in err. */
char *tools_read_confined(const char *folder, const char *rel, size_t max, size_t *len, bool *cut,
                          char *err, size_t err_cap);

/* What a tool call may touch. */
typedef struct tool_env {
    const agent_def *agent;
    const agents_config *cfg;
    agent_store *store;
    long long run_id;
    char *output; /* write_output without a key: the run's output (malloc'd) */
    /* call_agent: queues a run; returns false with err filled */
    bool (*queue)(void *ctx, const char *agent, const char *trigger, const char *input,
                  long long *run_id, char *err, size_t err_cap);
    void *queue_ctx;
} tool_env;

/* Runs tool name with arguments args (a JSON object); returns the text
 * for the tool message (malloc'd): the result, or "error: …". */
char *tools_call(tool_env *env, const char *name, json_t *args);

#endif
