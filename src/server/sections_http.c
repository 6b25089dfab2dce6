/* sections_http.c — POST /v1/sections and chat completions with
 * "sections" (see http_sections.h).
 *
 * The planner (src/gen/sections.c) runs through a gen_runner: each
 * section is a sequence of the request's priority class on the shared
 * engine.  A connection thread drives the runner step by step; a stream
 * hands out every section as soon as it and all before it are done.
 *
 * Stream events (server-sent events, "data: <json>\n\n", then
 * "data: [DONE]"), one per section in order, the outline first when the
 * model wrote it:
 *   {"id", "object": "sections.chunk" (chat: "chat.completion.chunk"),
 *    "created", "model",
 *    "section": {"index": 0-based or null for the outline, "kind",
 *                "heading", "text", "tokens", "generated_tokens",
 *                "prompt_tokens", "end", "loop"},
 *    "choices": [{"index": 0, "delta": {"content": what the section adds
 *                 to the stitched text ("" for the outline)},
 *                 "finish_reason": null}]}
 * and a last one with "choices": [{"index": 0, "delta": {},
 * "finish_reason": "stop" | "repetition"}], "summary" (sections, tokens
 * per section, how each ended, guard stops) and "usage".  The whole
 * reply (not streamed) has the same "sections", "outline" (the headings),
 * "summary" and "usage", and the stitched text as "text" (/v1/sections)
 * or as the assistant message (chat).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gen/gen.h"
#include "server/http_sections.h"
#include "server/sse.h"

#define STEP_MS 10

typedef struct sect_run {
    http_sections_env xs; /* a copy: a stream outlives the handler's call */
    const http_sections_env *x;
    struct MHD_Connection *c;
    api_kind kind;
    hearth_sections *g;
    gen_runner *run;
    char id[48];
    long long created;
    bool stream;
    /* what came out */
    json_t *sections; /* section objects, in order */
    json_t *outline;  /* headings */
    size_t doc_sent;  /* bytes of the stitched text handed out */
    uint64_t prompt_tokens;
    bool sent_first;
    sse_buf sb; /* the stream's bytes */
    bool done;
} sect_run;

static void run_free(sect_run *r) {
    if (!r) return;
    gen_runner_free(r->run);
    hearth_sections_free(r->g);
    json_decref(r->sections);
    json_decref(r->outline);
    sse_free(&r->sb);
    free(r);
}

static json_t *envelope(const sect_run *r, const char *object) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "object", json_string(object));
    json_object_set_new(o, "created", json_integer(r->created));
    json_t *m = json_string(r->x->model_id);
    json_object_set_new(o, "model", m ? m : json_string("model"));
    json_object_set_new(o, "system_fingerprint", json_string("hearth-" HEARTH_VERSION));
    return o;
}

static json_t *usage_json(const sect_run *r, const hearth_sections_result *res) {
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer((json_int_t)r->prompt_tokens));
    json_object_set_new(u, "completion_tokens", json_integer(res->n_generated));
    json_object_set_new(u, "total_tokens",
                        json_integer((json_int_t)(r->prompt_tokens + res->n_generated)));
    return u;
}

static json_t *choice(const char *content, size_t len, bool role, const char *finish) {
    json_t *ch = json_object(), *delta = json_object();
    json_object_set_new(ch, "index", json_integer(0));
    if (role) json_object_set_new(delta, "role", json_string("assistant"));
    if (content) {
        json_t *t = json_stringn(content, len);
        json_object_set_new(delta, "content", t ? t : json_string(""));
    }
    json_object_set_new(ch, "delta", delta);
    json_object_set_new(ch, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *a = json_array();
    json_array_append_new(a, ch);
    return a;
}

/* The runner's callback: one section is ready (in order). */
static bool on_section(const hearth_section_info *s, void *arg) {
    sect_run *r = arg;
    json_t *sj = api_section_json(s);
    r->prompt_tokens += s->n_prompt;
    if (s->index != HEARTH_SECTION_OUTLINE) {
        json_array_append(r->sections, sj);
        json_array_append_new(r->outline, json_string(s->heading));
    }
    if (!r->stream) {
        json_decref(sj);
        return true;
    }
    hearth_sections_result res;
    hearth_sections_result_get(r->g, &res);
    size_t from = r->doc_sent < res.text_len ? r->doc_sent : res.text_len;
    r->doc_sent = res.text_len;
    bool chat = r->kind == API_CHAT;
    json_t *o = envelope(r, chat ? "chat.completion.chunk" : "sections.chunk");
    json_object_set_new(o, "section", sj);
    json_object_set_new(o, "choices",
                        choice(res.text + from, res.text_len - from, chat && !r->sent_first, NULL));
    r->sent_first = true;
    sse_json(&r->sb, o);
    return true;
}

static const char *finish_reason(const hearth_sections_result *res) {
    return res->repetition ? "repetition" : "stop";
}

/* The closing event of a stream, or the error event. */
static void stream_close(sect_run *r) {
    int status = 0;
    const char *msg = gen_runner_error(r->run, &status);
    if (msg[0]) {
        api_error e;
        api_fail(&e, status ? status : 500, "server_error", NULL, NULL, "%s", msg);
        sse_json(&r->sb, api_error_json(&e));
    } else {
        hearth_sections_result res;
        hearth_sections_result_get(r->g, &res);
        bool chat = r->kind == API_CHAT;
        json_t *o = envelope(r, chat ? "chat.completion.chunk" : "sections.chunk");
        json_object_set_new(o, "choices",
                            choice(NULL, 0, chat && !r->sent_first, finish_reason(&res)));
        json_object_set_new(o, "summary", api_sections_summary_json(&res));
        json_object_set_new(o, "usage", usage_json(r, &res));
        sse_json(&r->sb, o);
    }
    sse_done(&r->sb);
    r->done = true;
}

/* More events for sse_read; false when the client went away. */
static bool stream_produce(void *arg) {
    sect_run *r = arg;
    if (http_client_gone(r->c) || atomic_load(r->x->stopping)) {
        gen_runner_stop(r->run);
        return false;
    }
    if (gen_runner_step(r->run, STEP_MS, on_section, r)) stream_close(r);
    return true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    sect_run *r = cls;
    return sse_read(&r->sb, &r->done, out, max, stream_produce, r);
}

static void stream_free(void *cls) {
    run_free(cls);
}

/* Makes the run of a parsed request: planner and runner; NULL with e. */
static sect_run *run_new(const http_sections_env *x, struct MHD_Connection *c, api_kind kind,
                         api_request *req, api_error *e) {
    sect_run *r = calloc(1, sizeof *r);
    if (!r) {
        api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    r->xs = *x;
    r->x = &r->xs;
    r->c = c;
    r->kind = kind;
    r->stream = req->stream && c;
    r->created = (long long)time(NULL);
    r->sections = json_array();
    r->outline = json_array();
    static _Atomic uint64_t counter;
    uint64_t k = (++counter * 0x9e3779b97f4a7c15ull) ^ x->id_salt ^ (uint64_t)r->created;
    snprintf(r->id, sizeof r->id, "%s-%016llx", kind == API_CHAT ? "chatcmpl" : "sect",
             (unsigned long long)k);
    hearth_error err;
    hearth_status st = hearth_sections_create(x->env->tok, &req->sec.p, &r->g, &err);
    if (st == HEARTH_OK) {
        gen_runner_params gp = {req->sp.cls, req->user, req->sec.p.guard.action};
        st = gen_runner_create(x->s, r->g, &gp, &r->run, &err);
    }
    if (st != HEARTH_OK || !r->sections || !r->outline) {
        if (st == HEARTH_ERR_INVALID_ARG) {
            api_fail(e, 400, "invalid_request_error", NULL, "sections", "%s", err.msg);
        } else {
            api_fail(e, 500, "server_error", NULL, NULL, "%s",
                     st != HEARTH_OK ? err.msg : "out of memory");
        }
        run_free(r);
        return NULL;
    }
    return r;
}

/* The whole reply of a finished run. */
static json_t *whole_json(sect_run *r) {
    hearth_sections_result res;
    hearth_sections_result_get(r->g, &res);
    bool chat = r->kind == API_CHAT;
    json_t *o = envelope(r, chat ? "chat.completion" : "sections");
    json_t *text = json_stringn(res.text, res.text_len);
    if (!text) text = json_string("");
    if (chat) {
        json_t *ch = json_object(), *msgj = json_object(), *a = json_array();
        json_object_set_new(msgj, "role", json_string("assistant"));
        json_object_set_new(msgj, "content", text);
        json_object_set_new(ch, "index", json_integer(0));
        json_object_set_new(ch, "message", msgj);
        json_object_set_new(ch, "logprobs", json_null());
        json_object_set_new(ch, "finish_reason", json_string(finish_reason(&res)));
        json_array_append_new(a, ch);
        json_object_set_new(o, "choices", a);
    } else {
        json_object_set_new(o, "text", text);
        json_object_set_new(o, "finish_reason", json_string(finish_reason(&res)));
    }
    json_object_set(o, "outline", r->outline);
    json_object_set(o, "sections", r->sections);
    json_object_set_new(o, "summary", api_sections_summary_json(&res));
    json_object_set_new(o, "usage", usage_json(r, &res));
    return o;
}

/* Steps r to its end; NULL with e when it failed or was cancelled. */
static json_t *run_to_end(sect_run *r, bool (*cancelled)(void *), void *arg, api_error *e) {
    while (!gen_runner_step(r->run, STEP_MS, on_section, r)) {
        if (cancelled && cancelled(arg)) {
            gen_runner_stop(r->run);
            api_fail(e, 499, "server_error", NULL, NULL, "the request was cancelled");
            return NULL;
        }
    }
    int status = 0;
    const char *msg = gen_runner_error(r->run, &status);
    if (msg[0]) {
        api_fail(e, status ? status : 500, "server_error", NULL, NULL, "%s", msg);
        return NULL;
    }
    json_t *o = whole_json(r);
    if (!o) api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    return o;
}

json_t *http_sections_run(const http_sections_env *x, api_kind kind, api_request *req,
                          bool (*cancelled)(void *), void *arg, api_error *e) {
    sect_run *r = run_new(x, NULL, kind, req, e);
    if (!r) return NULL;
    json_t *o = run_to_end(r, cancelled, arg, e);
    run_free(r);
    return o;
}

static bool connection_cancelled(void *arg) {
    sect_run *r = arg;
    return http_client_gone(r->c) || atomic_load(r->x->stopping);
}

enum MHD_Result http_sections(const http_sections_env *x, struct MHD_Connection *c, api_kind kind,
                              api_request *req) {
    api_error e;
    sect_run *r = run_new(x, c, kind, req, &e);
    if (!r) return http_reply_error(c, &e);
    if (!r->stream) {
        json_t *o = run_to_end(r, connection_cancelled, r, &e);
        bool gone = !o && e.status == 499;
        run_free(r);
        if (gone) return MHD_NO; /* closes the connection */
        return o ? http_reply_json(c, 200, o) : http_reply_error(c, &e);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, r, stream_free);
    if (!resp) {
        run_free(r);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}
