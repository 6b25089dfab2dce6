/* local_engine.h — the agents' local engine (private to the server).
 *
 * Runs an OpenAI chat-completions body through the same path an HTTP
 * request takes — api_parse, sched_submit at the body's "priority" class,
 * api_response_json — without a socket in between, so agents get every
 * option the API understands and queue behind people chatting.
 */
#ifndef HEARTH_SERVER_LOCAL_ENGINE_H
#define HEARTH_SERVER_LOCAL_ENGINE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "sched/sched.h"
#include "server/api.h"

typedef struct local_engine {
    sched *s;
    api_env env;
    const char *model_id; /* the name responses carry; must outlive the engine */
} local_engine;

/* Fills e for the scheduler's model and the chat family. */
void local_engine_init(local_engine *e, sched *s, chat_family chat, const char *model_id);

/* agent_complete_fn over a local_engine (ctx).  The body's "priority"
 * picks the class (interactive when absent, as for HTTP). */
bool local_engine_complete(void *ctx, json_t *body, int timeout_ms, const atomic_bool *stop,
                           json_t **out, char *err, size_t err_cap);

#endif
