/* local_engine.c — agents' requests into the scheduler (see local_engine.h). */
#include "server/local_engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/http_sections.h"

#define POLL_MS 20

void local_engine_init(local_engine *e, sched *s, chat_family chat, const char *model_id) {
    memset(e, 0, sizeof *e);
    const hearth_model *model = sched_model(s);
    e->s = s;
    e->env.tok = hearth_model_tokenizer(model);
    e->env.chat = chat;
    e->env.n_ctx = sched_get_params(s)->n_ctx;
    e->env.n_vocab = hearth_model_n_vocab(model);
    e->model_id = model_id;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Why a sectional run is to end early: the runtime stops, or the deadline. */
typedef struct sect_wait {
    const atomic_bool *stop;
    double deadline;
} sect_wait;

static bool sect_cancelled(void *arg) {
    const sect_wait *w = arg;
    return atomic_load(w->stop) || now_ms() > w->deadline;
}

/* A request with "sections": the planner's jobs run as sequences of this
 * scheduler at the request's class, as for POST /v1/sections; the reply is
 * the chat completion of the stitched text. */
static bool complete_sections(local_engine *e, api_request *req, int timeout_ms,
                              const atomic_bool *stop, json_t **out, char *err, size_t err_cap) {
    http_sections_env x = {e->s, &e->env, e->model_id, NULL, 0};
    sect_wait w = {stop, now_ms() + (double)timeout_ms};
    api_error ae;
    *out = http_sections_run(&x, API_CHAT, req, sect_cancelled, &w, &ae);
    if (*out) return true;
    if (atomic_load(stop)) {
        snprintf(err, err_cap, "stopped");
    } else if (now_ms() > w.deadline) {
        snprintf(err, err_cap, "timed out after %d ms", timeout_ms);
    } else {
        snprintf(err, err_cap, "%s", ae.message);
    }
    return false;
}

bool local_engine_complete(void *ctx, json_t *body, int timeout_ms, const atomic_bool *stop,
                           json_t **out, char *err, size_t err_cap) {
    local_engine *e = ctx;
    *out = NULL;
    api_request req;
    api_error ae;
    if (!api_parse(&e->env, API_CHAT, body, NULL, &req, &ae)) {
        api_request_free(&req);
        snprintf(err, err_cap, "%s%s%s", ae.param[0] ? ae.param : "", ae.param[0] ? ": " : "",
                 ae.message);
        return false;
    }
    if (req.sec.on) {
        bool ok = complete_sections(e, &req, timeout_ms, stop, out, err, err_cap);
        api_request_free(&req);
        return ok;
    }
    sched_request *r = NULL;
    hearth_error he;
    if (api_submit(e->s, &req, &r, &he) != SCHED_SUBMIT_OK) {
        api_request_free(&req);
        snprintf(err, err_cap, "%s", he.msg);
        return false;
    }
    sched_delta d;
    memset(&d, 0, sizeof d);
    char *text = NULL;
    size_t n = 0, cap = 0;
    bool ok = true;
    double deadline = now_ms() + (double)timeout_ms;
    for (;;) {
        bool finished = sched_poll(r, POLL_MS, &d);
        if (d.n_text > 0) {
            if (n + d.n_text + 1 > cap) {
                size_t c = cap ? cap : 1024;
                while (c < n + d.n_text + 1) c *= 2;
                char *p = realloc(text, c);
                if (!p) {
                    snprintf(err, err_cap, "out of memory");
                    ok = false;
                    break;
                }
                text = p;
                cap = c;
            }
            memcpy(text + n, d.text, d.n_text);
            n += d.n_text;
        }
        if (finished) break;
        if (atomic_load(stop)) {
            snprintf(err, err_cap, "stopped");
            ok = false;
            break;
        }
        if (now_ms() > deadline) {
            snprintf(err, err_cap, "timed out after %d ms", timeout_ms);
            ok = false;
            break;
        }
    }
    if (ok && d.finish != SCHED_FINISH_STOP && d.finish != SCHED_FINISH_LENGTH &&
        d.finish != SCHED_FINISH_REPETITION) {
        snprintf(err, err_cap, "%s",
                 d.finish == SCHED_FINISH_ERROR ? d.error : "the request was cancelled");
        ok = false;
    }
    if (ok) {
        api_meta m;
        memset(&m, 0, sizeof m);
        m.kind = API_CHAT;
        snprintf(m.id, sizeof m.id, "chatcmpl-agent-%llu", (unsigned long long)sched_request_id(r));
        m.created = (long long)time(NULL);
        m.model = e->model_id;
        m.tok = e->env.tok;
        m.tools = req.tools;
        *out = api_response_json(&m, text, n, NULL, 0, d.finish, &d);
        ok = *out != NULL;
        if (!ok) snprintf(err, err_cap, "out of memory");
    }
    sched_release(r); /* cancels it when it still runs */
    sched_delta_free(&d);
    free(text);
    api_request_free(&req);
    return ok;
}
