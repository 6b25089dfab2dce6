/* fuzz_api.c — libFuzzer target for the OpenAI request parser of the server.
 *
 * The first input byte picks the endpoint (chat or completions) and the
 * chat template family; the rest is the HTTP body.  It goes through what a
 * connection thread does with a body: JSON parsing, field validation,
 * rendering the conversation with the family's template and tokenizing it
 * (stories260K's SentencePiece vocabulary from $HEARTH_SHARED, default
 * ../shared), then building the error object or, on success, a response
 * and a stream chunk.  Beyond "no crash, no sanitizer report": a request
 * that parses has a prompt that fits the context and sane sampling values,
 * and a failure always names an HTTP 4xx/5xx status and a message.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"
#include "server/api.h"
#include "server/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static hearth_tokenizer *tok;
static hearth_grammar_vocab *gvocab;

static void load(void) {
    const char *root = getenv("HEARTH_SHARED");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", root && *root ? root : "../shared");
    hearth_error err;
    if (hearth_tokenizer_load(path, &tok, &err) != HEARTH_OK) {
        fprintf(stderr, "fuzz_api: %s\n", err.msg);
        __builtin_trap();
    }
    if (hearth_grammar_vocab_create(tok, &gvocab, &err) != HEARTH_OK) {
        fprintf(stderr, "fuzz_api: %s\n", err.msg);
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) load();
    if (size < 1) return 0;
    api_env env = {tok, (chat_family)(data[0] % CHAT_N_FAMILY), 128, hearth_tokenizer_n_vocab(tok),
                   gvocab};
    api_kind kind = (data[0] >> 6) & 1   ? API_SECTIONS
                    : (data[0] >> 4) & 1 ? API_COMPLETION
                                         : API_CHAT;
    const char *prio = (data[0] >> 5) & 1 ? "tool" : NULL;
    json_error_t jerr;
    json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, &jerr);
    if (!body) return 0;
    api_request req;
    api_error e;
    bool parsed = api_parse(&env, kind, body, prio, &req, &e);
    if (parsed && req.sec.on) {
        /* A sectional request the planner must accept, and its first prompt. */
        hearth_sections *g = NULL;
        hearth_error err;
        if (hearth_sections_create(tok, &req.sec.p, &g, &err) != HEARTH_OK) __builtin_trap();
        hearth_section_job job;
        hearth_status st = hearth_sections_next_job(g, &job, &err);
        if (st != HEARTH_OK && st != HEARTH_ERR_CONTEXT_FULL) __builtin_trap();
        hearth_sections_free(g);
    } else if (parsed) {
        if (req.sp.grammar) {
            /* The mask of the first token. */
            static float logits[1024];
            int32_t nv = env.n_vocab < 1024 ? env.n_vocab : 1024;
            hearth_error err;
            hearth_grammar_apply(req.sp.grammar, logits, nv, &err);
        }
        if (req.n_prompt == 0 || req.n_prompt >= env.n_ctx || req.sp.max_tokens > env.n_ctx ||
            !(req.sp.sampling.top_p > 0.0f) || (unsigned)req.sp.cls >= SCHED_N_CLASS) {
            __builtin_trap();
        }
        for (size_t i = 0; i < req.n_prompt; i++) {
            if (req.prompt[i] < 0 || req.prompt[i] >= env.n_vocab) __builtin_trap();
        }
        api_meta m;
        memset(&m, 0, sizeof m);
        m.kind = kind;
        snprintf(m.id, sizeof m.id, "x");
        m.model = "m";
        m.tok = tok;
        m.logprobs = req.sp.logprobs;
        sched_token t;
        memset(&t, 0, sizeof t);
        t.id = req.prompt[0];
        t.n_top = req.sp.top_logprobs;
        for (uint32_t k = 0; k < t.n_top; k++) t.top_id[k] = req.prompt[k % req.n_prompt];
        sched_delta u;
        memset(&u, 0, sizeof u);
        json_t *r = api_response_json(&m, "ok", 2, &t, 1, SCHED_FINISH_STOP, &u);
        json_t *c = api_chunk_json(&m, "ok", 2, &t, 1, true, SCHED_FINISH_NONE);
        char *s1 = json_dumps(r, JSON_COMPACT), *s2 = json_dumps(c, JSON_COMPACT);
        if (!s1 || !s2) __builtin_trap();
        free(s1);
        free(s2);
        json_decref(r);
        json_decref(c);
    } else {
        if (e.status < 400 || e.status > 599 || !e.message[0]) __builtin_trap();
        json_t *j = api_error_json(&e);
        char *s = json_dumps(j, JSON_COMPACT);
        if (!s) __builtin_trap();
        free(s);
        json_decref(j);
    }
    api_request_free(&req);
    json_decref(body);
    return 0;
}
