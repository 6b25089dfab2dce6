/* local_engine.c — agents' requests into the scheduler (see local_engine.h). */
#include "server/local_engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gen/gen.h"

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

/* Counts the prompt tokens of every section (and the outline). */
static bool count_prompt(const hearth_section_info *s, void *arg) {
    *(uint32_t *)arg += s->n_prompt;
    return true;
}

/* A request with "sections": the planner's jobs run as sequences of this
 * scheduler at the request's class (as POST /v1/sections); the reply is a
 * chat completion of the stitched text. */
static bool complete_sections(local_engine *e, api_request *req, int timeout_ms,
                              const atomic_bool *stop, json_t **out, char *err, size_t err_cap) {
    hearth_sections *g = NULL;
    gen_runner *run = NULL;
    hearth_error he;
    hearth_status st = hearth_sections_create(e->env.tok, &req->sec.p, &g, &he);
    if (st == HEARTH_OK) {
        gen_runner_params gp = {req->sp.cls, req->user, req->sec.p.guard.action};
        st = gen_runner_create(e->s, g, &gp, &run, &he);
    }
    if (st != HEARTH_OK) {
        snprintf(err, err_cap, "sections: %s", he.msg);
        hearth_sections_free(g);
        return false;
    }
    uint32_t n_prompt = 0;
    bool ok = true;
    double deadline = now_ms() + (double)timeout_ms;
    while (!gen_runner_step(run, POLL_MS, count_prompt, &n_prompt)) {
        if (atomic_load(stop) || now_ms() > deadline) {
            if (atomic_load(stop)) {
                snprintf(err, err_cap, "stopped");
            } else {
                snprintf(err, err_cap, "timed out after %d ms", timeout_ms);
            }
            gen_runner_stop(run);
            ok = false;
            break;
        }
    }
    int status = 0;
    const char *msg = gen_runner_error(run, &status);
    if (ok && msg[0]) {
        snprintf(err, err_cap, "%s", msg);
        ok = false;
    }
    if (ok) {
        hearth_sections_result res;
        hearth_sections_result_get(g, &res);
        api_meta m;
        memset(&m, 0, sizeof m);
        m.kind = API_CHAT;
        snprintf(m.id, sizeof m.id, "chatcmpl-agent-sections");
        m.created = (long long)time(NULL);
        m.model = e->model_id;
        m.tok = e->env.tok;
        sched_delta usage;
        memset(&usage, 0, sizeof usage);
        usage.n_prompt = n_prompt;
        usage.n_generated = res.n_generated;
        *out =
            api_response_json(&m, res.text, res.text_len, NULL, 0,
                              res.repetition ? SCHED_FINISH_REPETITION : SCHED_FINISH_STOP, &usage);
        ok = *out != NULL;
        if (!ok) snprintf(err, err_cap, "out of memory");
    }
    gen_runner_free(run);
    hearth_sections_free(g);
    return ok;
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
