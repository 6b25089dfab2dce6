/* http.c — the HTTP side of `hearth serve`: libmicrohttpd, routing, auth,
 * request bodies, JSON replies and server-sent event streams.
 *
 * libmicrohttpd runs one thread per connection, so a connection thread may
 * block: a non-streamed completion waits in the request handler, a stream
 * waits inside the response's content callback.  Both wait on the
 * scheduler in slices of POLL_MS and between slices look at the client's
 * socket; a client that has gone away (or a server that is stopping)
 * cancels its sequence, which the engine drops at its next step.
 *
 * The dashboard's files (web/, embedded at build time) are served at /
 * without the API key: they hold no data.  Everything the page shows comes
 * from endpoints that need the key like the rest of the API: /v1/queue,
 * /v1/metrics (the last minutes, sampled each second) and /v1/agents.
 *
 * Every reply to bad input is an OpenAI error object with a 4xx status:
 * 400 malformed JSON or fields (naming the field), 401 a missing or wrong
 * API key, 404 unknown paths, 405 wrong methods, 413 bodies over the limit,
 * 503 with Retry-After when the request's class queue is full.
 */
#include <arpa/inet.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "agents/agents.h"
#include "server/api.h"
#include "server/history.h"
#include "server/http_sections.h"
#include "server/metrics.h"
#include "server/server.h"
#include "server/sse.h"
#include "server/web.h"
#include "util/error.h"

#define POLL_MS             10   /* a slice of waiting for output between client checks */
#define HISTORY_INTERVAL_MS 1000 /* the metrics history: one sample a second, */
#define HISTORY_SAMPLES     600  /* ten minutes of them */

struct server {
    sched *s;
    server_params p;
    char *api_key;  /* owned copy; NULL for none */
    char *model_id; /* owned copy */
    struct MHD_Daemon *d;
    history *hist; /* the metrics of the last minutes, for GET /v1/metrics */
    uint16_t port;
    api_env env;
    hearth_grammar_vocab *gvocab; /* the vocabulary as grammars see it (env.gvocab) */
    long long started;
    atomic_bool stopping;
    uint64_t id_salt;
};

server_params server_default_params(void) {
    server_params p;
    memset(&p, 0, sizeof p);
    p.host = "127.0.0.1";
    p.port = 8080;
    p.model_id = "model";
    p.max_body = (size_t)4 << 20;
    p.max_connections = 256;
    return p;
}

/* One connection's request body. */
typedef struct conn {
    char *body;
    size_t n, cap;
    bool too_big;
} conn;

/* ---------------------------------------------------------------- replies */

static enum MHD_Result reply_raw(struct MHD_Connection *c, unsigned status, const char *ctype,
                                 char *body, size_t len, const char *retry_after) {
    struct MHD_Response *r =
        body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (retry_after) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Sends j (consumed) as a JSON reply. */
static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *j,
                                  const char *retry_after) {
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
            "\"code\":null}}";
        struct MHD_Response *r =
            MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        enum MHD_Result ret = MHD_queue_response(c, 500, r);
        MHD_destroy_response(r);
        return ret;
    }
    return reply_raw(c, status, "application/json", text, strlen(text), retry_after);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, const api_error *e) {
    return reply_json(c, (unsigned)e->status, api_error_json(e), e->status == 503 ? "1" : NULL);
}

#if defined(__GNUC__)
__attribute__((format(printf, 6, 7)))
#endif
static enum MHD_Result
fail(struct MHD_Connection *c, unsigned status, const char *type, const char *code,
     const char *param, const char *fmt, ...) {
    api_error e;
    e.status = (int)status;
    e.type = type;
    e.code = code;
    snprintf(e.param, sizeof e.param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return reply_error(c, &e);
}

/* ---------------------------------------------------------------- helpers */

/* True when the peer has closed its side of the connection (or it broke). */
static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    struct pollfd pfd = {ci->connect_fd, POLLIN | POLLRDHUP, 0};
    if (poll(&pfd, 1, 0) <= 0) return false;
    if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
    if (pfd.revents & POLLIN) {
        char ch;
        ssize_t k = recv(ci->connect_fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
        return k == 0;
    }
    return false;
}

/* Constant-time comparison of the Authorization header with the key. */
static bool authorized(const server *srv, struct MHD_Connection *c) {
    if (!srv->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    size_t a = strlen(h), b = strlen(srv->api_key);
    unsigned char diff = (unsigned char)(a != b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned char)(h[i] ^ srv->api_key[i]);
    return diff == 0;
}

static void make_meta(server *srv, api_kind kind, const api_request *req, sched_request *r,
                      api_meta *m) {
    memset(m, 0, sizeof *m);
    m->kind = kind;
    uint64_t x = sched_request_id(r) * 0x9e3779b97f4a7c15ull ^ srv->id_salt;
    snprintf(m->id, sizeof m->id, "%s-%016llx", kind == API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)x);
    m->created = (long long)time(NULL);
    m->model = srv->model_id;
    m->tok = srv->env.tok;
    m->logprobs = req->sp.logprobs;
    m->chat_logprobs = req->chat_logprobs;
    m->tools = req->tools && !req->stream;
}

/* ---------------------------------------------------------------- streams */

typedef struct stream {
    server *srv;
    struct MHD_Connection *c;
    sched_request *r;
    sched_delta d;
    api_meta meta;
    bool include_usage;
    bool sent_first; /* the chat role has gone out */
    bool done;       /* [DONE] is in sb */
    sse_buf sb;      /* SSE bytes not yet handed to libmicrohttpd */
} stream;

/* Turns what the last poll brought into SSE events. */
static void stream_format(stream *st, bool finished) {
    sched_delta *d = &st->d;
    bool chat = st->meta.kind == API_CHAT;
    if (d->n_text > 0 || d->n_tokens > 0) {
        sse_json(&st->sb, api_chunk_json(&st->meta, d->text, d->n_text, d->tokens, d->n_tokens,
                                         chat && !st->sent_first, SCHED_FINISH_NONE));
        st->sent_first = true;
    }
    if (!finished) return;
    if (d->finish == SCHED_FINISH_STOP || d->finish == SCHED_FINISH_LENGTH ||
        d->finish == SCHED_FINISH_REPETITION) {
        sse_json(&st->sb,
                 api_chunk_json(&st->meta, "", 0, NULL, 0, chat && !st->sent_first, d->finish));
        if (st->include_usage) sse_json(&st->sb, api_usage_chunk_json(&st->meta, d));
    } else {
        api_error e;
        api_fail(&e, 500, "server_error", NULL, NULL, "%s",
                 d->finish == SCHED_FINISH_ERROR ? d->error : "the request was cancelled");
        sse_json(&st->sb, api_error_json(&e));
    }
    sse_done(&st->sb);
    st->done = true;
}

/* More events for sse_read; false when the client went away. */
static bool stream_produce(void *arg) {
    stream *st = arg;
    if (client_gone(st->c) || atomic_load(&st->srv->stopping)) {
        sched_cancel(st->r);
        return false;
    }
    bool finished = sched_poll(st->r, POLL_MS, &st->d);
    stream_format(st, finished);
    return true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    stream *st = cls;
    return sse_read(&st->sb, &st->done, out, max, stream_produce, st);
}

static void stream_free(void *cls) {
    stream *st = cls;
    sched_release(st->r);
    sched_delta_free(&st->d);
    sse_free(&st->sb);
    free(st);
}

static enum MHD_Result start_stream(server *srv, struct MHD_Connection *c, api_kind kind,
                                    const api_request *req, sched_request *r) {
    stream *st = calloc(1, sizeof *st);
    if (!st) {
        sched_release(r);
        return fail(c, 500, "server_error", NULL, NULL, "out of memory");
    }
    st->srv = srv;
    st->c = c;
    st->r = r;
    st->include_usage = req->include_usage;
    make_meta(srv, kind, req, r, &st->meta);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                                  stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---------------------------------------------------------------- completions */

/* Waits for a whole completion and replies with it. */
static enum MHD_Result complete(server *srv, struct MHD_Connection *c, api_kind kind,
                                const api_request *req, sched_request *r) {
    sched_delta d;
    memset(&d, 0, sizeof d);
    char *text = NULL;
    size_t n_text = 0, cap_text = 0;
    sched_token *toks = NULL;
    size_t n_toks = 0, cap_toks = 0;
    bool oom = false;
    for (;;) {
        bool finished = sched_poll(r, POLL_MS, &d);
        if (d.n_text && n_text + d.n_text > cap_text) {
            size_t cap = cap_text ? cap_text : 1024;
            while (cap < n_text + d.n_text) cap *= 2;
            char *p = realloc(text, cap);
            if (p) {
                text = p;
                cap_text = cap;
            } else {
                oom = true;
            }
        }
        if (!oom && d.n_text) {
            memcpy(text + n_text, d.text, d.n_text);
            n_text += d.n_text;
        }
        if (!oom && d.n_tokens && n_toks + d.n_tokens > cap_toks) {
            size_t cap = cap_toks ? cap_toks : 64;
            while (cap < n_toks + d.n_tokens) cap *= 2;
            sched_token *p = realloc(toks, cap * sizeof *toks);
            if (p) {
                toks = p;
                cap_toks = cap;
            } else {
                oom = true;
            }
        }
        if (!oom && d.n_tokens) {
            memcpy(toks + n_toks, d.tokens, d.n_tokens * sizeof *toks);
            n_toks += d.n_tokens;
        }
        if (finished) break;
        if (oom || client_gone(c) || atomic_load(&srv->stopping)) {
            sched_release(r);
            sched_delta_free(&d);
            free(text);
            free(toks);
            return MHD_NO; /* closes the connection */
        }
    }
    enum MHD_Result ret;
    if (d.finish == SCHED_FINISH_STOP || d.finish == SCHED_FINISH_LENGTH ||
        d.finish == SCHED_FINISH_REPETITION) {
        api_meta m;
        make_meta(srv, kind, req, r, &m);
        ret = reply_json(c, MHD_HTTP_OK,
                         api_response_json(&m, text, n_text, toks, n_toks, d.finish, &d), NULL);
    } else if (atomic_load(&srv->stopping)) {
        ret = fail(c, 503, "server_error", NULL, NULL, "the server is shutting down");
    } else {
        ret = fail(c, 500, "server_error", NULL, NULL, "%s",
                   d.finish == SCHED_FINISH_ERROR ? d.error : "the request was cancelled");
    }
    sched_release(r);
    sched_delta_free(&d);
    free(text);
    free(toks);
    return ret;
}

static enum MHD_Result handle_completion(server *srv, struct MHD_Connection *c, api_kind kind,
                                         conn *cn) {
    json_error_t jerr;
    json_t *body = json_loadb(cn->body ? cn->body : "", cn->n, JSON_REJECT_DUPLICATES, &jerr);
    if (!body) {
        return fail(c, 400, "invalid_request_error", NULL, NULL,
                    "the body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                    jerr.column);
    }
    const char *prio = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Hearth-Priority");
    api_request req;
    api_error e;
    bool ok = api_parse(&srv->env, kind, body, prio, &req, &e);
    json_decref(body);
    if (!ok) {
        api_request_free(&req);
        return reply_error(c, &e);
    }
    /* Who submitted it, for the queue view: the "user" field, else the
     * X-Hearth-User header. */
    const char *user = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Hearth-User");
    if (!req.user[0] && user) api_copy_user(user, strlen(user), req.user);
    if (req.sec.on) {
        http_sections_env x = {srv->s, &srv->env, srv->model_id, &srv->stopping, srv->id_salt};
        enum MHD_Result sret = http_sections(&x, c, kind, &req);
        api_request_free(&req);
        return sret;
    }
    sched_request *r = NULL;
    hearth_error err;
    sched_submit_status ss = api_submit(srv->s, &req, &r, &err);
    enum MHD_Result ret;
    switch (ss) {
    case SCHED_SUBMIT_OK:
        ret = req.stream ? start_stream(srv, c, kind, &req, r) : complete(srv, c, kind, &req, r);
        break;
    case SCHED_SUBMIT_TOO_LONG:
        ret = fail(c, 400, "invalid_request_error", "context_length_exceeded",
                   kind == API_CHAT ? "messages" : "prompt", "%s", err.msg);
        break;
    case SCHED_SUBMIT_QUEUE_FULL:
        ret = fail(c, 503, "server_error", "queue_full", NULL, "%s; retry later", err.msg);
        break;
    case SCHED_SUBMIT_INVALID:
        ret = fail(c, 400, "invalid_request_error", NULL, NULL, "%s", err.msg);
        break;
    default: ret = fail(c, 503, "server_error", NULL, NULL, "%s", err.msg); break;
    }
    api_request_free(&req);
    return ret;
}

/* ---------------------------------------------------------------- other endpoints */

static json_t *model_json(const server *srv) {
    json_t *m = json_object();
    json_object_set_new(m, "id", json_string(srv->model_id));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer(srv->started));
    json_object_set_new(m, "owned_by", json_string("hearth"));
    return m;
}

static enum MHD_Result handle_get(server *srv, struct MHD_Connection *c, const char *url) {
    if (!strcmp(url, "/health")) {
        json_t *j = json_object();
        json_object_set_new(j, "status", json_string("ok"));
        return reply_json(c, MHD_HTTP_OK, j, NULL);
    }
    if (!strcmp(url, "/v1/models")) {
        json_t *j = json_object(), *data = json_array();
        json_object_set_new(j, "object", json_string("list"));
        json_array_append_new(data, model_json(srv));
        json_object_set_new(j, "data", data);
        return reply_json(c, MHD_HTTP_OK, j, NULL);
    }
    if (!strncmp(url, "/v1/models/", 11)) {
        if (!strcmp(url + 11, srv->model_id))
            return reply_json(c, MHD_HTTP_OK, model_json(srv), NULL);
        return fail(c, 404, "invalid_request_error", "model_not_found", "model",
                    "the model '%.200s' does not exist (this server has '%.200s')", url + 11,
                    srv->model_id);
    }
    if (!strcmp(url, "/metrics")) {
        size_t len = 0;
        char *text = metrics_prometheus(srv->s, &len);
        if (!text) return fail(c, 500, "server_error", NULL, NULL, "out of memory");
        return reply_raw(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len,
                         NULL);
    }
    if (!strcmp(url, "/v1/queue")) {
        json_t *j = metrics_queue_json(srv->s);
        if (!j) return fail(c, 500, "server_error", NULL, NULL, "out of memory");
        return reply_json(c, MHD_HTTP_OK, j, NULL);
    }
    if (!strcmp(url, "/v1/metrics")) {
        const char *since = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
        double t = 0.0;
        if (since) {
            char *end = NULL;
            t = strtod(since, &end);
            if (end == since || *end != '\0' || !isfinite(t)) {
                return fail(c, 400, "invalid_request_error", NULL, "since",
                            "'since' must be a time in unix seconds, got '%.64s'", since);
            }
        }
        json_t *j = history_json(srv->hist, t);
        if (!j) return fail(c, 500, "server_error", NULL, NULL, "out of memory");
        return reply_json(c, MHD_HTTP_OK, j, NULL);
    }
    if (!strcmp(url, "/v1/agents")) {
        if (srv->p.agents) {
            agents_reply ar;
            agents_list(srv->p.agents, &ar);
            return reply_json(c, (unsigned)ar.status, ar.json, NULL);
        }
        /* No agents configured: the list is empty. */
        json_t *j = json_object();
        json_object_set_new(j, "object", json_string("list"));
        json_object_set_new(j, "data", json_array());
        return reply_json(c, MHD_HTTP_OK, j, NULL);
    }
    return fail(c, 404, "invalid_request_error", "not_found", NULL, "no such endpoint: GET %.200s",
                url);
}

/* /v1/agents/ID and below: GET (an agent, its runs) and POST (run it now),
 * answered by the agents runtime (src/agents/runtime.c). */
static enum MHD_Result handle_agent(server *srv, struct MHD_Connection *c, const char *method,
                                    const char *url, const conn *cn) {
    const char *id = url + strlen("/v1/agents/");
    if (!srv->p.agents) {
        return fail(c, 404, "invalid_request_error", "agent_not_found", "agent",
                    "no agent '%.*s': no agents are configured", (int)strcspn(id, "/"), id);
    }
    const char *limit = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    agents_reply ar;
    agents_route(srv->p.agents, method, id, limit, cn->body, cn->n, &ar);
    if (ar.json) return reply_json(c, (unsigned)ar.status, ar.json, NULL);
    return fail(c, (unsigned)ar.status, ar.status >= 500 ? "server_error" : "invalid_request_error",
                ar.code, ar.param, "%s", ar.message);
}

/* ---------------------------------------------------------------- the dashboard */

/* What the page may do: load its own scripts and styles and call this
 * server; nothing inline, nothing from anywhere else. */
#define WEB_CSP                                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* Serves an embedded file (static data: no copy). */
static enum MHD_Result handle_static(struct MHD_Connection *c, const web_file *f) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, f->content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "Content-Security-Policy", WEB_CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

typedef enum route {
    ROUTE_NONE,
    ROUTE_GET,
    ROUTE_CHAT,
    ROUTE_COMPLETION,
    ROUTE_SECTIONS,
    ROUTE_AGENT,
    ROUTE_STATIC, /* the dashboard's files: no API key needed */
    ROUTE_BAD_METHOD,
} route;

static route find_route(const char *method, const char *url) {
    bool post = !strcmp(method, MHD_HTTP_METHOD_POST);
    bool get = !strcmp(method, MHD_HTTP_METHOD_GET);
    bool head = !strcmp(method, MHD_HTTP_METHOD_HEAD);
    if (!strcmp(url, "/v1/chat/completions")) return post ? ROUTE_CHAT : ROUTE_BAD_METHOD;
    if (!strcmp(url, "/v1/completions")) return post ? ROUTE_COMPLETION : ROUTE_BAD_METHOD;
    if (!strcmp(url, "/v1/sections")) return post ? ROUTE_SECTIONS : ROUTE_BAD_METHOD;
    if (!strcmp(url, "/health") || !strcmp(url, "/v1/models") || !strncmp(url, "/v1/models/", 11) ||
        !strcmp(url, "/metrics") || !strcmp(url, "/v1/queue") || !strcmp(url, "/v1/metrics") ||
        !strcmp(url, "/v1/agents")) {
        return get ? ROUTE_GET : ROUTE_BAD_METHOD;
    }
    if (!strncmp(url, "/v1/agents/", 11)) return get || post ? ROUTE_AGENT : ROUTE_BAD_METHOD;
    web_file f;
    if (web_find(url, &f)) return get || head ? ROUTE_STATIC : ROUTE_BAD_METHOD;
    return ROUTE_NONE;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    (void)version;
    server *srv = cls;
    conn *cn = *con_cls;
    if (!cn) {
        /* Headers are in; decide what can be decided before the body. */
        cn = calloc(1, sizeof *cn);
        if (!cn) return MHD_NO;
        *con_cls = cn;
        route rt = find_route(method, url);
        if (rt == ROUTE_NONE) {
            return fail(c, 404, "invalid_request_error", "not_found", NULL,
                        "no such endpoint: %.16s %.200s", method, url);
        }
        if (rt == ROUTE_BAD_METHOD) {
            return fail(c, 405, "invalid_request_error", "method_not_allowed", NULL,
                        "%.16s is not allowed on %.200s", method, url);
        }
        if (rt != ROUTE_STATIC && strcmp(url, "/health") != 0 && !authorized(srv, c)) {
            return fail(c, 401, "authentication_error", "invalid_api_key", NULL,
                        "a valid API key is required: send Authorization: Bearer KEY");
        }
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > srv->p.max_body) {
            return fail(c, MHD_HTTP_CONTENT_TOO_LARGE, "invalid_request_error", "request_too_large",
                        NULL, "the body is larger than %zu bytes", srv->p.max_body);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        size_t k = *upload_size;
        *upload_size = 0;
        if (cn->too_big || k > srv->p.max_body - cn->n) {
            cn->too_big = true;
            return MHD_YES;
        }
        if (cn->n + k > cn->cap) {
            size_t cap = cn->cap ? cn->cap : 4096;
            while (cap < cn->n + k) cap *= 2;
            if (cap > srv->p.max_body) cap = srv->p.max_body;
            char *p = realloc(cn->body, cap);
            if (!p) return MHD_NO;
            cn->body = p;
            cn->cap = cap;
        }
        memcpy(cn->body + cn->n, upload, k);
        cn->n += k;
        return MHD_YES;
    }
    if (cn->too_big) {
        return fail(c, MHD_HTTP_CONTENT_TOO_LARGE, "invalid_request_error", "request_too_large",
                    NULL, "the body is larger than %zu bytes", srv->p.max_body);
    }
    switch (find_route(method, url)) {
    case ROUTE_GET: return handle_get(srv, c, url);
    case ROUTE_CHAT: return handle_completion(srv, c, API_CHAT, cn);
    case ROUTE_COMPLETION: return handle_completion(srv, c, API_COMPLETION, cn);
    case ROUTE_SECTIONS: return handle_completion(srv, c, API_SECTIONS, cn);
    case ROUTE_AGENT: return handle_agent(srv, c, method, url, cn);
    case ROUTE_STATIC: {
        web_file f;
        return web_find(url, &f) ? handle_static(c, &f) : MHD_NO;
    }
    default: return MHD_NO; /* answered on the first call */
    }
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    conn *cn = *con_cls;
    if (!cn) return;
    free(cn->body);
    free(cn);
    *con_cls = NULL;
}

/* ---------------------------------------------------------------- lifetime */

const api_env *server_api_env(const server *srv) {
    return &srv->env;
}

hearth_status server_start(sched *s, const server_params *p, server **out, hearth_error *err) {
    *out = NULL;
    server *srv = calloc(1, sizeof *srv);
    if (!srv) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    srv->s = s;
    srv->p = *p;
    if (p->api_key && p->api_key[0]) srv->api_key = strdup(p->api_key);
    srv->model_id = strdup(p->model_id ? p->model_id : "model");
    if ((p->api_key && p->api_key[0] && !srv->api_key) || !srv->model_id) {
        server_stop(srv);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    const hearth_model *model = sched_model(s);
    srv->env.tok = hearth_model_tokenizer(model);
    srv->env.chat = p->chat;
    srv->env.n_ctx = sched_get_params(s)->n_ctx;
    srv->env.n_vocab = hearth_model_n_vocab(model);
    hearth_status gst = hearth_grammar_vocab_create(srv->env.tok, &srv->gvocab, err);
    if (gst != HEARTH_OK) {
        server_stop(srv);
        return gst;
    }
    srv->env.gvocab = srv->gvocab;
    srv->started = (long long)time(NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    srv->id_salt = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)srv;
    atomic_init(&srv->stopping, false);
    hearth_status hst = history_start(s, HISTORY_INTERVAL_MS, HISTORY_SAMPLES, &srv->hist, err);
    if (hst != HEARTH_OK) {
        server_stop(srv);
        return hst;
    }

    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)p->port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const char *host = p->host && p->host[0] ? p->host : "127.0.0.1";
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0 || !ai) {
        server_stop(srv);
        return error_set(err, HEARTH_ERR_INVALID_ARG, "cannot resolve host '%s': %s", host,
                         gai_strerror(gai));
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    srv->d = MHD_start_daemon(flags, p->port, NULL, NULL, handler, srv, MHD_OPTION_SOCK_ADDR,
                              ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, completed, srv,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                              MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->d) {
        server_stop(srv);
        return error_set(err, HEARTH_ERR_IO, "cannot listen on %s port %u (in use?)", host,
                         (unsigned)p->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : p->port;
    *out = srv;
    return HEARTH_OK;
}

uint16_t server_port(const server *srv) {
    return srv->port;
}

void server_stop(server *srv) {
    if (!srv) return;
    atomic_store(&srv->stopping, true);
    if (srv->d) MHD_stop_daemon(srv->d);
    history_stop(srv->hist);
    hearth_grammar_vocab_free(srv->gvocab);
    free(srv->api_key);
    free(srv->model_id);
    free(srv);
}

/* ---------------------------------------------------------------- for sections_http.c */

enum MHD_Result http_reply_json(struct MHD_Connection *c, unsigned status, json_t *j) {
    return reply_json(c, status, j, NULL);
}

enum MHD_Result http_reply_error(struct MHD_Connection *c, const api_error *e) {
    return reply_error(c, e);
}

bool http_client_gone(struct MHD_Connection *c) {
    return client_gone(c);
}
