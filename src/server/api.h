/* api.h — the OpenAI request and response shapes (private to the server).
 *
 * api_parse turns a parsed JSON body into a scheduler request, checking
 * every field's type and range and naming the offending field in the
 * error; the api_*_json functions build the response bodies and stream
 * chunks.  Nothing here does I/O.
 */
#ifndef HEARTH_SERVER_API_H
#define HEARTH_SERVER_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hearth.h"
#include "sched/sched.h"
#include "server/chat.h"

typedef enum api_kind { API_CHAT = 0, API_COMPLETION = 1, API_SECTIONS = 2 } api_kind;

/* Bytes of a grammar or of a JSON schema's text at most: compiling is
 * then bounded too (a few milliseconds; the compilers refuse grammars
 * that expand past their own limits). */
#define API_MAX_GRAMMAR (64 * 1024)

/* An error reply: HTTP status and OpenAI's error object fields. */
typedef struct api_error {
    int status;
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    const char *code; /* NULL or e.g. "context_length_exceeded" */
    char param[64];   /* the offending field, "" for none */
    char message[512];
} api_error;

/* Sets e and returns false (for `return api_fail(...)`). */
bool api_fail(api_error *e, int status, const char *type, const char *code, const char *param,
              const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/* What parsing needs to know about the server. */
typedef struct api_env {
    const hearth_tokenizer *tok;
    chat_family chat;
    uint32_t n_ctx;
    int32_t n_vocab;
    const hearth_grammar_vocab *gvocab; /* for response_format and grammar (NULL: refused) */
} api_env;

/* A sectional generation asked for: POST /v1/sections, or "sections" on
 * a chat completion (the topic is then the last user message). */
typedef struct api_sections {
    bool on;
    hearth_sections_params p; /* topic and outline point into the owned copies below;
                                 sampling is the request's; with a chat template the
                                 prompts are chats (api_section_prompt_tokens) */
    char *topic;
    char *outline;
} api_sections;

typedef struct api_request {
    api_kind kind;
    bool stream;
    bool include_usage; /* stream_options.include_usage */
    bool chat_logprobs; /* chat: logprobs in the chat shape */
    sched_request_params sp;
    hearth_token *prompt; /* (n_prompt) owned */
    size_t n_prompt;
    hearth_token stop_tokens[4];
    char *stop[SCHED_MAX_STOP];    /* owned copies */
    char user[SCHED_MAX_USER + 1]; /* "user": who submitted it (cut at a character
                                      boundary); sp.user points here */
    api_sections sec;
    bool tools; /* chat with "tools": replies carry tool_calls */
} api_request;

/* Copies the submitter name s[0..len) into out (SCHED_MAX_USER + 1 bytes),
 * cut at a UTF-8 character boundary and at the first control character. */
void api_copy_user(const char *s, size_t len, char *out);

/* Parses body (a JSON object) for endpoint kind.  priority_header is the
 * X-Hearth-Priority header or NULL.  On failure fills e and returns false;
 * api_request_free is safe either way.
 *
 * This is the one place the request's fields are understood, for HTTP
 * and in-process callers alike: sampling, stop strings, priority, and
 * (api_gen.c) "response_format" ({"type": "text" | "json_object" |
 * "json_schema", "json_schema": {"name", "schema", "strict"}}) and GBNF
 * "grammar", compiled here into req->sp.grammar so that a bad one is a
 * 400 naming it before anything runs; "loop_guard" ("stop" | "penalize"
 * | "watch" | "off", or an object with "action" and the guard's window
 * settings) into req->sp.guard and loop_action; and "sections" into
 * req->sec.  Then either req->sec.on (http_sections, or in process
 * http_sections_run: server/http_sections.h) or api_submit. */
bool api_parse(const api_env *env, api_kind kind, json_t *body, const char *priority_header,
               api_request *req, api_error *e);
void api_request_free(api_request *req);

/* Submits a parsed request (not a sectional one) to the scheduler; the
 * request's grammar and guard go with it whatever the outcome. */
sched_submit_status api_submit(sched *s, api_request *req, sched_request **out, hearth_error *err);

/* api_gen.c: the fields of constrained and long outputs (see api_parse). */
bool api_parse_structured(const api_env *env, json_t *body, api_request *req, api_error *e);
bool api_parse_sections(const api_env *env, json_t *body, api_request *req, api_error *e);
/* The hearth_sections_params.prompt_tokens of a server with a chat
 * template: each prompt is a chat (arg: the api_env). */
hearth_status api_section_prompt_tokens(const hearth_section_prompt *what, hearth_token *out,
                                        size_t cap, size_t *n_out, void *arg, hearth_error *err);
/* {"index": i or null for the outline, "kind": "section" | "outline",
 * "heading", "text", "tokens", "generated_tokens", "prompt_tokens", "end",
 * "loop": kind or null}. */
json_t *api_section_json(const hearth_section_info *s);
/* {"sections", "tokens_per_section", "ends", "guard_stops", "guard_findings",
 * "repetition", "outline_tokens", "generated_tokens"}. */
json_t *api_sections_summary_json(const hearth_sections_result *r);

/* {"error": {...}} */
json_t *api_error_json(const api_error *e);

/* Identity of one response. */
typedef struct api_meta {
    api_kind kind;
    char id[48];
    long long created;
    const char *model;
    const hearth_tokenizer *tok;
    bool logprobs;      /* include logprobs */
    bool chat_logprobs; /* in the chat shape (else the legacy completions shape) */
    size_t text_offset; /* completions logprobs: bytes of text before this chunk */
    bool tools;         /* <tool_call> blocks in a whole reply become tool_calls */
} api_meta;

/* A whole non-streamed response. */
json_t *api_response_json(const api_meta *m, const char *text, size_t n_text,
                          const sched_token *toks, size_t n_toks, sched_finish finish,
                          const sched_delta *usage);
/* One stream chunk with text (and, for the first chunk of a chat, the
 * role); finish NONE for a chunk in the middle. */
json_t *api_chunk_json(api_meta *m, const char *text, size_t n_text, const sched_token *toks,
                       size_t n_toks, bool first, sched_finish finish);
/* The final usage-only chunk (stream_options.include_usage). */
json_t *api_usage_chunk_json(const api_meta *m, const sched_delta *usage);

/* Text of a token for logprobs, invalid UTF-8 replaced by U+FFFD; raw
 * bytes go to bytes[0..*n_bytes) when bytes is not NULL. */
json_t *api_token_string(const hearth_tokenizer *tok, hearth_token id, json_t **bytes);

#endif
