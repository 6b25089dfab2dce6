/* runner.c — a sectional generation as scheduler requests (see gen.h).
 *
 * Each job the planner hands out becomes one request whose tokens are
 * picked by sample_job on the engine thread: it takes the runner's mutex,
 * samples with the job's own sampler (grammar-free, loop guard attached),
 * and pushes the token into the planner, which says when the section is
 * over.  The connection thread takes the same mutex for everything else
 * it asks of the planner, so the planner, its samplers and the span
 * history its guards share are only ever touched by one thread at a time.
 * The engine never holds the scheduler's lock while it samples, and the
 * connection thread never waits for the engine while holding the mutex,
 * so the two locks cannot deadlock.
 *
 * The requests' own text is not used (the planner keeps each section's
 * tokens and cuts them at a boundary); polling only drains it and learns
 * how each request ended.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/gen.h"
#include "util/error.h"

#define MAX_JOBS (HEARTH_SECTIONS_MAX + 1)

typedef struct job {
    struct gen_runner *r;
    uint32_t index; /* the planner's section index, or HEARTH_SECTION_OUTLINE */
    sched_request *req;
    bool used;
} job;

struct gen_runner {
    sched *s;
    hearth_sections *g;
    const hearth_tokenizer *tok;
    gen_runner_params p;
    char user[SCHED_MAX_USER + 1];
    pthread_mutex_t mu;
    job jobs[MAX_JOBS];
    sched_delta d; /* drained output */
    bool over;
    int err_status;
    char err[600];
};

/* The engine thread's sampling for one section (see the top). */
static hearth_token sample_job(void *arg, const float *logits, bool *end) {
    job *j = arg;
    gen_runner *r = j->r;
    pthread_mutex_lock(&r->mu);
    hearth_token t = -1;
    hearth_sampler *smp = hearth_sections_job_sampler(r->g, j->index);
    if (smp) {
        t = hearth_sampler_sample(smp, logits);
        if (t < 0 || hearth_tokenizer_is_eog(r->tok, t)) {
            hearth_sections_end_job(r->g, j->index, HEARTH_SECTION_EOG);
            t = -1;
        } else {
            hearth_sampler_accept(smp, t);
            *end = hearth_sections_push(r->g, j->index, t);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return t;
}

hearth_status gen_runner_create(sched *s, hearth_sections *g, const gen_runner_params *p,
                                gen_runner **out, hearth_error *err) {
    *out = NULL;
    if (!s || !g || !p) return error_set(err, HEARTH_ERR_INVALID_ARG, "runner: NULL argument");
    gen_runner *r = calloc(1, sizeof *r);
    if (!r) return error_set(err, HEARTH_ERR_NOMEM, "out of memory for a sections runner");
    r->s = s;
    r->g = g;
    r->tok = hearth_model_tokenizer(sched_model(s));
    r->p = *p;
    if (p->user) snprintf(r->user, sizeof r->user, "%s", p->user);
    r->p.user = r->user;
    pthread_mutex_init(&r->mu, NULL);
    for (int i = 0; i < MAX_JOBS; i++) r->jobs[i].r = r;
    *out = r;
    return HEARTH_OK;
}

static void fail(gen_runner *r, int status, const char *msg) {
    if (!r->err[0]) {
        r->err_status = status;
        snprintf(r->err, sizeof r->err, "%.590s", msg);
    }
    hearth_sections_stop(r->g);
}

/* Submits the jobs the planner has ready.  Caller holds r->mu. */
static void start_jobs(gen_runner *r) {
    for (;;) {
        job *j = NULL;
        for (int i = 0; i < MAX_JOBS && !j; i++) {
            if (!r->jobs[i].used) j = &r->jobs[i];
        }
        if (!j) return;
        hearth_section_job sj;
        hearth_error err;
        if (hearth_sections_next_job(r->g, &sj, &err) != HEARTH_OK) {
            fail(r, 500, err.msg);
            return;
        }
        if (!sj.prompt) return;
        sched_request_params rp;
        memset(&rp, 0, sizeof rp);
        rp.prompt = sj.prompt;
        rp.n_prompt = sj.n_prompt;
        rp.cls = r->p.cls;
        rp.max_tokens = sj.max_tokens;
        rp.sampling = hearth_sampler_default_params();
        rp.user = r->user;
        rp.sample_fn = sample_job;
        rp.sample_arg = j;
        j->index = sj.index;
        sched_submit_status ss = sched_submit(r->s, &rp, &j->req, &err);
        if (ss == SCHED_SUBMIT_OK) {
            j->used = true;
        } else if (ss == SCHED_SUBMIT_TOO_LONG) {
            hearth_sections_end_job(r->g, sj.index, HEARTH_SECTION_CONTEXT);
        } else {
            char msg[600];
            snprintf(msg, sizeof msg, "section %u: %.520s",
                     sj.index == HEARTH_SECTION_OUTLINE ? 0 : sj.index + 1, err.msg);
            fail(r, ss == SCHED_SUBMIT_QUEUE_FULL || ss == SCHED_SUBMIT_FAILED ? 503 : 500, msg);
            return;
        }
    }
}

bool gen_runner_step(gen_runner *r, int timeout_ms, hearth_section_fn cb, void *arg) {
    if (r->over) return true;
    pthread_mutex_lock(&r->mu);
    start_jobs(r);
    pthread_mutex_unlock(&r->mu);
    /* Wait on the first running request; look at the others without waiting. */
    int wait = timeout_ms;
    for (int i = 0; i < MAX_JOBS; i++) {
        job *j = &r->jobs[i];
        if (!j->used) continue;
        bool finished = sched_poll(j->req, wait, &r->d);
        wait = 0;
        if (!finished) continue;
        sched_finish f = r->d.finish;
        pthread_mutex_lock(&r->mu);
        /* A no-op when the planner ended the job itself. */
        hearth_sections_end_job(
            r->g, j->index, f == SCHED_FINISH_LENGTH ? HEARTH_SECTION_CONTEXT : HEARTH_SECTION_EOG);
        if (f == SCHED_FINISH_ERROR || f == SCHED_FINISH_CANCELLED) {
            fail(r, f == SCHED_FINISH_ERROR ? 500 : 503,
                 f == SCHED_FINISH_ERROR ? r->d.error : "a section was cancelled");
        }
        pthread_mutex_unlock(&r->mu);
        sched_release(j->req);
        j->req = NULL;
        j->used = false;
    }
    pthread_mutex_lock(&r->mu);
    hearth_section_info info;
    while (hearth_sections_next_section(r->g, &info)) {
        if (cb && !cb(&info, arg)) {
            hearth_sections_stop(r->g);
            for (int i = 0; i < MAX_JOBS; i++) {
                if (r->jobs[i].used) sched_cancel(r->jobs[i].req);
            }
        }
    }
    bool running = false;
    for (int i = 0; i < MAX_JOBS; i++) running |= r->jobs[i].used;
    if (!running) start_jobs(r);
    for (int i = 0; i < MAX_JOBS; i++) running |= r->jobs[i].used;
    r->over = !running && hearth_sections_done(r->g);
    if (!running && !r->over) {
        /* Nothing runs and nothing could start: the planner is stuck. */
        fail(r, 500, "sections: no section can start");
        while (hearth_sections_next_section(r->g, &info)) {
            if (cb) cb(&info, arg);
        }
        r->over = true;
    }
    if (r->over) {
        /* The loops the guards found, for the metrics. */
        hearth_sections_result res;
        hearth_sections_result_get(r->g, &res);
        hearth_loop_action act = r->p.guard_action;
        uint32_t n = act == HEARTH_LOOP_PENALIZE ? res.n_guard_findings : res.n_guard_stops;
        if (n && act != HEARTH_LOOP_OFF) sched_count_loops(r->s, r->p.cls, act, n);
    }
    pthread_mutex_unlock(&r->mu);
    return r->over;
}

void gen_runner_stop(gen_runner *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    hearth_sections_stop(r->g);
    for (int i = 0; i < MAX_JOBS; i++) {
        if (r->jobs[i].used) sched_cancel(r->jobs[i].req);
    }
    pthread_mutex_unlock(&r->mu);
}

const char *gen_runner_error(const gen_runner *r, int *status) {
    if (status) *status = r ? r->err_status : 0;
    return r ? r->err : "";
}

void gen_runner_free(gen_runner *r) {
    if (!r) return;
    /* The engine may be inside sample_job for a running request: wait
     * until each has finished (a cancelled one does at the next step). */
    for (int i = 0; i < MAX_JOBS; i++) {
        job *j = &r->jobs[i];
        if (!j->used) continue;
        sched_cancel(j->req);
        while (!sched_poll(j->req, 50, &r->d)) {
        }
        sched_release(j->req);
        j->used = false;
    }
    sched_delta_free(&r->d);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
