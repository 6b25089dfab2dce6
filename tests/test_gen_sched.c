/* test_gen_sched.c — constrained and long outputs through the scheduler,
 * in process, the way a caller without HTTP uses them: a JSON body goes
 * through api_parse, then api_submit (or, for sections, http_sections_run).
 *
 * Covered: a GBNF grammar's output matches the language (checked by hand,
 * character by character); the loop guard ends stories260K's greedy loop
 * with SCHED_FINISH_REPETITION and counts it per class and action; a
 * sectional generation driven by the scheduler (sections as requests of
 * their own, sampled by the planner on the engine thread) writes exactly
 * the text hearth_sections_run writes on a context of its own.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"
#include "sched/sched.h"
#include "server/api.h"
#include "server/http_sections.h"
#include "test.h"

static hearth_model *model;
static sched *engine;
static hearth_grammar_vocab *gvocab;
static api_env env;

/* Parses body for kind; false (with the message printed) when refused. */
static bool parse(api_kind kind, const char *body, api_request *req) {
    json_error_t jerr;
    json_t *j = json_loads(body, 0, &jerr);
    api_error e;
    bool ok = j && api_parse(&env, kind, j, NULL, req, &e);
    if (!ok) printf("  parse: %s\n", j ? e.message : jerr.text);
    json_decref(j);
    return ok;
}

/* Submits a parsed request and collects its text; returns how it ended. */
static sched_finish run(api_request *req, char *text, size_t cap) {
    sched_request *r = NULL;
    hearth_error err;
    if (api_submit(engine, req, &r, &err) != SCHED_SUBMIT_OK) {
        printf("  submit: %s\n", err.msg);
        return SCHED_FINISH_ERROR;
    }
    sched_delta d;
    memset(&d, 0, sizeof d);
    size_t n = 0;
    bool done = false;
    while (!done) {
        done = sched_poll(r, 100, &d);
        size_t k = d.n_text < cap - 1 - n ? d.n_text : cap - 1 - n;
        memcpy(text + n, d.text, k);
        n += k;
    }
    text[n] = '\0';
    sched_finish f = d.finish;
    sched_delta_free(&d);
    sched_release(r);
    return f;
}

TEST(grammar_output_is_in_the_language) {
    /* root ::= "the " [a-z]+ (" " [a-z]+)* "." */
    const char *body = "{\"prompt\": \"Once upon a time\", \"max_tokens\": 40, \"temperature\": "
                       "0.9, \"seed\": 5, \"grammar\": \"root ::= \\\"the \\\" [a-z]+ (\\\" \\\" "
                       "[a-z]+)* \\\".\\\"\"}";
    api_request req;
    REQUIRE(parse(API_COMPLETION, body, &req));
    CHECK(req.sp.grammar != NULL && req.sp.loop_action == HEARTH_LOOP_PENALIZE);
    char text[4096];
    sched_finish f = run(&req, text, sizeof text);
    CHECK(req.sp.grammar == NULL); /* handed over */
    api_request_free(&req);
    size_t n = strlen(text);
    bool ok = n >= 6 && !strncmp(text, "the ", 4) && text[n - 1] == '.';
    for (size_t i = 4; ok && i + 1 < n; i++) {
        ok = (text[i] >= 'a' && text[i] <= 'z') ||
             (text[i] == ' ' && text[i + 1] != ' ' && text[i + 1] != '.');
    }
    CHECKF(ok && f == SCHED_FINISH_STOP, "'%s' (finish %s)", text, sched_finish_name(f));
}

TEST(loop_guard_stop_ends_the_loop) {
    sched_stats before, after;
    sched_get_stats(engine, &before);
    api_request req;
    REQUIRE(parse(API_COMPLETION,
                  "{\"prompt\": \"Once upon a time\", \"max_tokens\": 1500, \"temperature\": 0, "
                  "\"loop_guard\": {\"action\": \"stop\", \"span\": 32}, \"priority\": \"tool\"}",
                  &req));
    CHECK(req.sp.loop_action == HEARTH_LOOP_STOP && req.sp.guard != NULL);
    static char text[65536];
    sched_finish f = run(&req, text, sizeof text);
    api_request_free(&req);
    CHECKF(f == SCHED_FINISH_REPETITION, "finish %s", sched_finish_name(f));
    sched_get_stats(engine, &after);
    CHECK(after.loop_triggers[SCHED_TOOL][HEARTH_LOOP_STOP] ==
          before.loop_triggers[SCHED_TOOL][HEARTH_LOOP_STOP] + 1);
    CHECK(after.finished[SCHED_TOOL][SCHED_FINISH_REPETITION] ==
          before.finished[SCHED_TOOL][SCHED_FINISH_REPETITION] + 1);
    /* The completions default watches: the same loop is counted, not cut. */
    REQUIRE(parse(API_COMPLETION,
                  "{\"prompt\": \"Once upon a time\", \"max_tokens\": 1500, \"temperature\": 0, "
                  "\"priority\": \"tool\"}",
                  &req));
    f = run(&req, text, sizeof text);
    api_request_free(&req);
    sched_get_stats(engine, &before);
    CHECKF(f == SCHED_FINISH_LENGTH, "finish %s", sched_finish_name(f));
    CHECK(before.loop_triggers[SCHED_TOOL][HEARTH_LOOP_OFF] >
          after.loop_triggers[SCHED_TOOL][HEARTH_LOOP_OFF]);
}

TEST(scheduled_sections_equal_sections_run) {
    const char *body = "{\"topic\": \"Once upon a time there was a cat.\", \"sections\": 3, "
                       "\"order\": \"alternate\", \"section_tokens\": {\"min\": 30, \"max\": "
                       "60}, \"temperature\": 0}";
    api_request req;
    REQUIRE(parse(API_SECTIONS, body, &req));
    CHECK(req.sec.on && req.sec.p.n_sections == 3);
    /* The planner on a context of its own. */
    hearth_sections *g = NULL;
    hearth_error err;
    REQUIRE(hearth_sections_create(env.tok, &req.sec.p, &g, &err) == HEARTH_OK);
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = 1024;
    cp.n_threads = 2;
    REQUIRE(hearth_sections_run(g, model, &cp, NULL, NULL, &err) == HEARTH_OK);
    hearth_sections_result want;
    hearth_sections_result_get(g, &want);
    CHECKF(want.text_len > 100 && want.n_sections == 3, "%zu bytes", want.text_len);
    /* The same through the scheduler. */
    http_sections_env x = {engine, &env, "stories260K", NULL, 0};
    api_error e;
    json_t *o = http_sections_run(&x, API_SECTIONS, &req, NULL, NULL, &e);
    api_request_free(&req);
    REQUIRE(o);
    const char *text = json_string_value(json_object_get(o, "text"));
    CHECKF(text && !strcmp(text, want.text), "scheduled:\n%s\nalone:\n%s", text ? text : "?",
           want.text);
    json_t *sum = json_object_get(o, "summary");
    CHECK(json_integer_value(json_object_get(sum, "sections")) == 3);
    CHECK(json_integer_value(json_object_get(sum, "guard_stops")) == want.n_guard_stops);
    for (uint32_t i = 0; i < 3; i++) {
        json_int_t k =
            json_integer_value(json_array_get(json_object_get(sum, "tokens_per_section"), i));
        CHECKF(k == want.section_tokens[i] && k <= 60, "section %u: %lld vs %u", i, (long long)k,
               want.section_tokens[i]);
    }
    json_decref(o);
    hearth_sections_free(g);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    const char *path = test_shared("models/stories260K.gguf");
    hearth_error err;
    hearth_model_params mp = hearth_model_default_params();
    if (hearth_model_load(path, &mp, &model, &err) != HEARTH_OK) {
        printf("FAIL load %s: %s\n", path, err.msg);
        return 1;
    }
    sched_params sp = sched_default_params();
    sp.n_parallel = 4;
    sp.n_ctx = 2048;
    sp.n_threads = 2;
    if (sched_create(model, &sp, &engine, &err) != HEARTH_OK ||
        hearth_grammar_vocab_create(hearth_model_tokenizer(model), &gvocab, &err) != HEARTH_OK) {
        printf("FAIL setup: %s\n", err.msg);
        return 1;
    }
    env.tok = hearth_model_tokenizer(model);
    env.chat = CHAT_NONE;
    env.n_ctx = sched_get_params(engine)->n_ctx;
    env.n_vocab = hearth_model_n_vocab(model);
    env.gvocab = gvocab;
    RUN(grammar_output_is_in_the_language);
    RUN(loop_guard_stop_ends_the_loop);
    RUN(scheduled_sections_equal_sections_run);
    sched_free(engine);
    hearth_grammar_vocab_free(gvocab);
    hearth_model_free(model);
    return test_finish();
}
