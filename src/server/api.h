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

typedef enum api_kind { API_CHAT = 0, API_COMPLETION = 1 } api_kind;

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
} api_env;

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
    bool tools;                    /* chat with "tools": replies carry tool_calls */
} api_request;

/* Copies the submitter name s[0..len) into out (SCHED_MAX_USER + 1 bytes),
 * cut at a UTF-8 character boundary and at the first control character. */
void api_copy_user(const char *s, size_t len, char *out);

/* Parses body (a JSON object) for endpoint kind.  priority_header is the
 * X-Hearth-Priority header or NULL.  On failure fills e and returns false;
 * api_request_free is safe either way. */
bool api_parse(const api_env *env, api_kind kind, json_t *body, const char *priority_header,
               api_request *req, api_error *e);
void api_request_free(api_request *req);

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
