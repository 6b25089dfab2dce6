/* http_sections.h — sectional generation over HTTP (private to the server).
 *
 * POST /v1/sections, and chat completions with "sections": the parsed
 * request (api_parse put the planner's settings in req->sec) runs as a
 * gen_runner on the server's scheduler and is answered as one JSON body
 * or streamed section by section (server-sent events; the shapes are in
 * README.md and sections_http.c).
 */
#ifndef HEARTH_SERVER_HTTP_SECTIONS_H
#define HEARTH_SERVER_HTTP_SECTIONS_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "sched/sched.h"
#include "server/api.h"

/* What the handler needs of the server. */
typedef struct http_sections_env {
    sched *s;
    const api_env *env;
    const char *model_id;
    const atomic_bool *stopping; /* may be NULL for http_sections_run */
    uint64_t id_salt;
} http_sections_env;

/* Answers a parsed request with req->sec.on (kind API_SECTIONS or API_CHAT). */
enum MHD_Result http_sections(const http_sections_env *x, struct MHD_Connection *c, api_kind kind,
                              api_request *req);

/* The same without HTTP, for an in-process caller (agents): runs a parsed
 * request with req->sec.on on the calling thread to its end and returns
 * the whole reply, the body a non-streamed request gets; NULL with e
 * filled when it fails, or when cancelled (may be NULL; asked between
 * steps, arg its argument) says so. */
json_t *http_sections_run(const http_sections_env *x, api_kind kind, api_request *req,
                          bool (*cancelled)(void *), void *arg, api_error *e);

/* http.c's replies, shared with this handler. */
enum MHD_Result http_reply_json(struct MHD_Connection *c, unsigned status, json_t *j);
enum MHD_Result http_reply_error(struct MHD_Connection *c, const api_error *e);
bool http_client_gone(struct MHD_Connection *c);

#endif
