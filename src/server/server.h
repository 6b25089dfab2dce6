/* server.h — the HTTP server of `hearth serve` (private).
 *
 * An OpenAI-compatible API over libmicrohttpd, one thread per connection.
 * Connection threads parse and validate requests, render chat templates,
 * tokenize, and hand sequences to the scheduler; they then wait on the
 * request's output and write it back, as one JSON body or as server-sent
 * events.  They never touch the model context: the scheduler's engine
 * thread is the only one that does.
 */
#ifndef HEARTH_SERVER_H
#define HEARTH_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "hearth.h"
#include "sched/sched.h"
#include "server/api.h"
#include "server/chat.h"

typedef struct server_params {
    const char *host;         /* numeric address or name to bind; default "127.0.0.1" */
    uint16_t port;            /* 0 = a free port chosen by the system */
    const char *api_key;      /* NULL or "": no authentication */
    const char *model_id;     /* the name /v1/models reports */
    chat_family chat;         /* CHAT_NONE: chat completions are refused */
    size_t max_body;          /* request body limit in bytes */
    unsigned max_connections; /* open connections at most */
    struct agents_rt *agents; /* the agents runtime behind /v1/agents; NULL for none */
} server_params;

server_params server_default_params(void);

typedef struct server server;

/* Starts listening; the scheduler must outlive the server. */
hearth_status server_start(sched *s, const server_params *p, server **out, hearth_error *err);

/* The request environment the server parses with (tokenizer, chat
 * template, context size, the grammar vocabulary): in-process callers of
 * api_parse use it to get exactly what HTTP clients get.  Valid until
 * server_stop. */
const api_env *server_api_env(const server *srv);
/* The port actually bound (useful with port 0). */
uint16_t server_port(const server *srv);
/* Stops accepting, ends every open response (open requests are cancelled)
 * and frees the server.  Accepts NULL. */
void server_stop(server *srv);

#endif
