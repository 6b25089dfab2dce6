/* local_engine.c — agents' requests into the scheduler (see local_engine.h). */
#include "server/local_engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    sched_request *r = NULL;
    hearth_error he;
    if (sched_submit(e->s, &req.sp, &r, &he) != SCHED_SUBMIT_OK) {
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
    if (ok && d.finish != SCHED_FINISH_STOP && d.finish != SCHED_FINISH_LENGTH) {
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
