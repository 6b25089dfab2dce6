/* api.c — OpenAI request parsing and response building (see api.h).
 *
 * Every field a client sends is hostile: each one is checked for its JSON
 * type and range before use, and a failure names the field (OpenAI's
 * "param") in a 400 reply.  Unknown fields are ignored, as OpenAI-compatible
 * servers do, so that SDKs that send newer fields keep working.
 *
 * Sampling defaults are hearth's (those of `hearth run`): temperature 0.8,
 * top_k 40, top_p 0.95, min_p 0.05; temperature 0 is greedy.  max_tokens
 * defaults to 16 for completions (as OpenAI's) and to "until the end of
 * the turn or of the context" for chat.
 */
#include "server/api.h"

#include "server/api_tools.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool api_fail(api_error *e, int status, const char *type, const char *code, const char *param,
              const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

#define BAD(param, ...) api_fail(e, 400, "invalid_request_error", NULL, param, __VA_ARGS__)

json_t *api_error_json(const api_error *e) {
    json_t *err = json_object();
    json_t *msg = json_stringn(e->message, strlen(e->message));
    json_object_set_new(err, "message", msg ? msg : json_string("error"));
    json_object_set_new(err, "type", json_string(e->type ? e->type : "server_error"));
    json_object_set_new(err, "param", e->param[0] ? json_string(e->param) : json_null());
    json_object_set_new(err, "code", e->code ? json_string(e->code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", err);
    return root;
}

/* ---------------------------------------------------------------- field readers */

/* Each reader leaves *out unchanged when the field is absent or null. */

static bool opt_number(json_t *o, const char *key, double lo, double hi, double *out,
                       api_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) return BAD(key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        return BAD(key, "'%s' must be between %g and %g, got %g", key, lo, hi, d);
    }
    *out = d;
    return true;
}

static bool opt_int(json_t *o, const char *key, long long lo, long long hi, long long *out,
                    api_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v)) return BAD(key, "'%s' must be an integer", key);
    long long x = (long long)json_integer_value(v);
    if (x < lo || x > hi) {
        return BAD(key, "'%s' must be between %lld and %lld, got %lld", key, lo, hi, x);
    }
    *out = x;
    return true;
}

static bool opt_bool(json_t *o, const char *key, bool *out, api_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return BAD(key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return true;
}

static bool opt_string(json_t *o, const char *key, json_t **out, api_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_string(v)) return BAD(key, "'%s' must be a string", key);
    *out = v;
    return true;
}

/* ---------------------------------------------------------------- common fields */

static bool parse_priority(json_t *body, const char *header, sched_class *cls, api_error *e) {
    *cls = SCHED_INTERACTIVE;
    json_t *v = NULL;
    if (!opt_string(body, "priority", &v, e)) return false;
    if (v) {
        if (!sched_class_parse(json_string_value(v), json_string_length(v), cls)) {
            return BAD("priority", "unknown priority '%.64s': use interactive, tool or background",
                       json_string_value(v));
        }
        return true;
    }
    if (header && !sched_class_parse(header, strlen(header), cls)) {
        return BAD("priority",
                   "unknown X-Hearth-Priority '%.64s': use interactive, tool or background",
                   header);
    }
    return true;
}

static bool parse_stop(json_t *body, api_request *req, api_error *e) {
    json_t *v = json_object_get(body, "stop");
    if (!v || json_is_null(v)) return true;
    json_t *one[1] = {v};
    json_t **items = one;
    size_t n = 1;
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n > SCHED_MAX_STOP) return BAD("stop", "at most %d stop strings", SCHED_MAX_STOP);
        items = NULL;
    } else if (!json_is_string(v)) {
        return BAD("stop", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = items ? items[i] : json_array_get(v, i);
        if (!json_is_string(s)) return BAD("stop", "'stop' must hold strings only");
        size_t len = json_string_length(s);
        const char *t = json_string_value(s);
        if (len == 0 || len > SCHED_MAX_STOP_LEN || memchr(t, '\0', len)) {
            return BAD("stop", "each stop string must have 1 to %d bytes and no NUL",
                       SCHED_MAX_STOP_LEN);
        }
        req->stop[req->sp.n_stop] = strdup(t);
        if (!req->stop[req->sp.n_stop]) {
            return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        }
        req->sp.stop[req->sp.n_stop] = req->stop[req->sp.n_stop];
        req->sp.n_stop++;
    }
    return true;
}

static uint64_t random_seed(void) {
    static _Atomic uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x =
        (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (++counter * 0x9e3779b97f4a7c15ull);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x ? x : 1;
}

static bool parse_sampling(const api_env *env, json_t *body, api_request *req, api_error *e) {
    hearth_sampler_params *sp = &req->sp.sampling;
    *sp = hearth_sampler_default_params();
    double d;
    long long ll;
    d = sp->temperature;
    if (!opt_number(body, "temperature", 0.0, 100.0, &d, e)) return false;
    sp->temperature = (float)d;
    d = sp->top_p;
    if (!opt_number(body, "top_p", 0.0, 1.0, &d, e)) return false;
    sp->top_p = d > 1e-6 ? (float)d : 1e-6f; /* 0 keeps just the most likely token */
    ll = sp->top_k;
    if (!opt_int(body, "top_k", 0, env->n_vocab, &ll, e)) return false;
    sp->top_k = (int32_t)ll;
    d = sp->min_p;
    if (!opt_number(body, "min_p", 0.0, 1.0, &d, e)) return false;
    sp->min_p = (float)d;
    d = sp->repeat_penalty;
    if (!opt_number(body, "repeat_penalty", 0.01, 100.0, &d, e)) return false;
    sp->repeat_penalty = (float)d;
    d = sp->presence_penalty;
    if (!opt_number(body, "presence_penalty", -2.0, 2.0, &d, e)) return false;
    sp->presence_penalty = (float)d;
    d = sp->frequency_penalty;
    if (!opt_number(body, "frequency_penalty", -2.0, 2.0, &d, e)) return false;
    sp->frequency_penalty = (float)d;
    ll = 0;
    json_t *seed = json_object_get(body, "seed");
    if (seed && !json_is_null(seed)) {
        if (!opt_int(body, "seed", INT64_MIN, INT64_MAX, &ll, e)) return false;
        sp->seed = (uint64_t)ll;
    } else {
        sp->seed = random_seed();
    }
    ll = 1;
    if (!opt_int(body, "n", 1, 1, &ll, e)) {
        return BAD("n", "only n = 1 is supported (send one request per completion)");
    }
    /* max_tokens: 1..n_ctx (larger can never be honoured). */
    ll = req->kind == API_COMPLETION ? 16 : 0;
    const char *mt = "max_tokens";
    if (req->kind == API_CHAT && json_object_get(body, "max_completion_tokens") &&
        !json_is_null(json_object_get(body, "max_completion_tokens"))) {
        mt = "max_completion_tokens";
    }
    json_t *mv = json_object_get(body, mt);
    if (mv && json_is_integer(mv) &&
        (json_integer_value(mv) < 1 || json_integer_value(mv) > (json_int_t)env->n_ctx)) {
        return BAD(mt, "'%s' must be between 1 and the context size %u, got %lld", mt, env->n_ctx,
                   (long long)json_integer_value(mv));
    }
    if (!opt_int(body, mt, 1, env->n_ctx, &ll, e)) return false;
    req->sp.max_tokens = (uint32_t)ll;
    return true;
}

void api_copy_user(const char *s, size_t len, char *out) {
    size_t n = 0;
    while (n < len && n < SCHED_MAX_USER && (unsigned char)s[n] >= 0x20 && s[n] != 0x7f) n++;
    /* Step back over a cut character's continuation bytes and its lead. */
    if (n < len && n == SCHED_MAX_USER) {
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
    }
    memcpy(out, s, n);
    out[n] = '\0';
}

static bool parse_common(const api_env *env, json_t *body, const char *priority_header,
                         api_request *req, api_error *e) {
    json_t *model = NULL, *user = NULL;
    if (!opt_string(body, "model", &model, e)) return false;
    if (!opt_string(body, "user", &user, e)) return false;
    if (user) api_copy_user(json_string_value(user), json_string_length(user), req->user);
    req->sp.user = req->user;
    if (!opt_bool(body, "stream", &req->stream, e)) return false;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return BAD("stream_options", "'stream_options' must be an object");
        if (!opt_bool(so, "include_usage", &req->include_usage, e)) return false;
    }
    if (!parse_priority(body, priority_header, &req->sp.cls, e)) return false;
    if (!parse_sampling(env, body, req, e)) return false;
    if (!parse_stop(body, req, e)) return false;
    return true;
}

/* ---------------------------------------------------------------- prompts */

/* True when text of len bytes cannot fit the context whatever it says: no
 * token stands for more than max_piece bytes.  Saves tokenizing megabytes
 * only to refuse them. */
static bool surely_too_long(const api_env *env, size_t len) {
    size_t piece = hearth_tokenizer_max_piece(env->tok);
    return piece > 0 && len / piece >= env->n_ctx;
}

static bool too_long(const api_env *env, const char *param, size_t len, api_error *e) {
    return api_fail(e, 400, "invalid_request_error", "context_length_exceeded", param,
                    "the prompt is %zu bytes, more than the context of %u tokens can hold", len,
                    env->n_ctx);
}

static bool tokenize_text(const api_env *env, const char *text, size_t len, unsigned flags,
                          api_request *req, const char *param, api_error *e) {
    if (surely_too_long(env, len)) return too_long(env, param, len, e);
    hearth_error err;
    size_t n = 0;
    hearth_status st = hearth_tokenize(env->tok, text, len, flags, NULL, 0, &n, &err);
    if (st != HEARTH_OK && st != HEARTH_ERR_BUFFER_TOO_SMALL) {
        return BAD(param, "cannot tokenize the prompt: %s", err.msg);
    }
    if (n >= env->n_ctx) {
        return api_fail(e, 400, "invalid_request_error", "context_length_exceeded", param,
                        "the prompt is %zu tokens; the context holds %u (prompt and completion)", n,
                        env->n_ctx);
    }
    req->prompt = malloc((n + 1) * sizeof *req->prompt);
    if (!req->prompt) return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    st = hearth_tokenize(env->tok, text, len, flags, req->prompt, n, &req->n_prompt, &err);
    if (st != HEARTH_OK) return BAD(param, "cannot tokenize the prompt: %s", err.msg);
    return true;
}

static bool token_array(const api_env *env, json_t *arr, api_request *req, api_error *e) {
    size_t n = json_array_size(arr);
    if (n >= env->n_ctx) {
        return api_fail(e, 400, "invalid_request_error", "context_length_exceeded", "prompt",
                        "the prompt is %zu tokens; the context holds %u (prompt and completion)", n,
                        env->n_ctx);
    }
    req->prompt = malloc((n + 1) * sizeof *req->prompt);
    if (!req->prompt) return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(arr, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 ||
            json_integer_value(t) >= env->n_vocab) {
            return BAD("prompt", "prompt token %zu is not a token id (0..%d)", i, env->n_vocab - 1);
        }
        req->prompt[i] = (hearth_token)json_integer_value(t);
    }
    req->n_prompt = n;
    return true;
}

static bool parse_completion(const api_env *env, json_t *body, api_request *req, api_error *e) {
    json_t *p = json_object_get(body, "prompt");
    if (!p || json_is_null(p)) return BAD("prompt", "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0)))) {
        p = json_array_get(p, 0);
    }
    bool echo = false;
    if (!opt_bool(body, "echo", &echo, e)) return false;
    if (echo) return BAD("echo", "'echo' is not supported");
    json_t *suffix = json_object_get(body, "suffix");
    if (suffix && !json_is_null(suffix)) return BAD("suffix", "'suffix' is not supported");
    long long best_of = 1;
    if (!opt_int(body, "best_of", 1, 1, &best_of, e)) return false;
    if (json_is_string(p)) {
        size_t len = json_string_length(p);
        if (!tokenize_text(env, json_string_value(p), len, HEARTH_TOKENIZE_ADD_SPECIAL, req,
                           "prompt", e)) {
            return false;
        }
        req->sp.text_continues = len > 0;
    } else if (json_is_array(p)) {
        if (json_array_size(p) > 0 && !json_is_integer(json_array_get(p, 0))) {
            return BAD("prompt", "only one prompt per request is supported");
        }
        if (!token_array(env, p, req, e)) return false;
        req->sp.text_continues = true;
    } else {
        return BAD("prompt", "'prompt' must be a string or an array of token ids");
    }
    if (req->n_prompt == 0) {
        return BAD("prompt", "the prompt is empty and the model adds no start token");
    }
    long long lp = -1;
    if (!opt_int(body, "logprobs", 0, 5, &lp, e)) return false;
    if (lp >= 0) {
        req->sp.logprobs = true;
        req->sp.top_logprobs = (uint32_t)lp;
    }
    return true;
}

/* The text of a message's content: a string, null, or an array of text
 * parts (joined; *owned gets the buffer to free). */
static bool message_content(json_t *m, size_t i, chat_role role, const char **text, size_t *len,
                            char **owned, api_error *e) {
    json_t *c = json_object_get(m, "content");
    *owned = NULL;
    if (!c || json_is_null(c)) {
        if (role == CHAT_ROLE_ASSISTANT) {
            *text = "";
            *len = 0;
            return true;
        }
        return BAD("messages", "messages[%zu].content is required", i);
    }
    if (json_is_string(c)) {
        *text = json_string_value(c);
        *len = json_string_length(c);
        return true;
    }
    if (!json_is_array(c)) {
        return BAD("messages", "messages[%zu].content must be a string or an array of parts", i);
    }
    size_t total = 0, n = json_array_size(c);
    for (size_t k = 0; k < n; k++) {
        json_t *part = json_array_get(c, k);
        json_t *type = json_is_object(part) ? json_object_get(part, "type") : NULL;
        json_t *t = json_is_object(part) ? json_object_get(part, "text") : NULL;
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
            !json_is_string(t)) {
            return BAD("messages",
                       "messages[%zu].content[%zu]: only parts {\"type\": \"text\", \"text\": "
                       "...} are supported",
                       i, k);
        }
        total += json_string_length(t) + 1;
    }
    char *buf = malloc(total + 1);
    if (!buf) return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    size_t at = 0;
    for (size_t k = 0; k < n; k++) {
        json_t *t = json_object_get(json_array_get(c, k), "text");
        if (k > 0) buf[at++] = '\n';
        memcpy(buf + at, json_string_value(t), json_string_length(t));
        at += json_string_length(t);
    }
    buf[at] = '\0';
    *owned = buf;
    *text = buf;
    *len = at;
    return true;
}

static bool parse_chat(const api_env *env, json_t *body, api_request *req, api_error *e) {
    if (env->chat == CHAT_NONE) {
        return BAD(NULL, "this model has no chat template: use /v1/completions, or start "
                         "hearth serve with --chat-template NAME");
    }
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        return BAD("messages", "'messages' must be a non-empty array");
    }
    size_t n = json_array_size(msgs);
    if (n > 100000) return BAD("messages", "too many messages");
    chat_message *cm = calloc(n, sizeof *cm);
    char **owned = calloc(n, sizeof *owned);
    bool ok = cm && owned;
    if (!ok) api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        json_t *role = json_is_object(m) ? json_object_get(m, "role") : NULL;
        if (!json_is_object(m)) {
            ok = BAD("messages", "messages[%zu] must be an object", i);
        } else if (!json_is_string(role) ||
                   !chat_role_parse(json_string_value(role), &cm[i].role)) {
            ok = BAD("messages",
                     "messages[%zu].role must be system, developer, user, assistant or tool", i);
        } else {
            ok = message_content(m, i, cm[i].role, &cm[i].content, &cm[i].len, &owned[i], e);
        }
    }
    size_t total = 0;
    for (size_t i = 0; ok && i < n; i++) total += cm[i].len;
    if (ok && surely_too_long(env, total)) ok = too_long(env, "messages", total, e);
    chat_options opt = {true, true};
    if (ok) ok = opt_bool(body, "enable_thinking", &opt.enable_thinking, e);
    json_t *kw = ok ? json_object_get(body, "chat_template_kwargs") : NULL;
    if (ok && kw && !json_is_null(kw)) {
        if (!json_is_object(kw)) {
            ok = BAD("chat_template_kwargs", "'chat_template_kwargs' must be an object");
        } else {
            ok = opt_bool(kw, "enable_thinking", &opt.enable_thinking, e);
        }
    }
    api_tools tools;
    memset(&tools, 0, sizeof tools);
    if (ok) ok = api_tools_parse(body, msgs, n, env->chat, &tools, e);
    if (ok) {
        hearth_error err;
        req->tools = tools.ct.n_defs > 0;
        hearth_status st = chat_render_tokens_tools(env->chat, env->tok, cm, n, &opt,
                                                    tools.defs ? &tools.ct : NULL, &req->prompt,
                                                    &req->n_prompt, &err);
        if (st == HEARTH_ERR_NOMEM) {
            ok = api_fail(e, 500, "server_error", NULL, NULL, "%s", err.msg);
        } else if (st != HEARTH_OK) {
            ok = BAD("messages", "%s", err.msg);
        } else if (req->n_prompt >= env->n_ctx) {
            ok = api_fail(e, 400, "invalid_request_error", "context_length_exceeded", "messages",
                          "the conversation is %zu tokens; the context holds %u (prompt and "
                          "completion)",
                          req->n_prompt, env->n_ctx);
        } else if (req->n_prompt == 0) {
            ok = BAD("messages", "the conversation renders to no tokens");
        }
    }
    api_tools_free(&tools);
    for (size_t i = 0; owned && i < n; i++) free(owned[i]);
    free(owned);
    free(cm);
    if (!ok) return false;
    req->sp.n_stop_tokens = chat_stop_tokens(env->chat, env->tok, req->stop_tokens, 4);
    req->sp.stop_tokens = req->stop_tokens;
    req->sp.text_continues = false;
    bool lp = false;
    if (!opt_bool(body, "logprobs", &lp, e)) return false;
    long long top = 0;
    if (!opt_int(body, "top_logprobs", 0, SCHED_MAX_TOP_LOGPROB, &top, e)) return false;
    req->sp.logprobs = lp || top > 0;
    req->sp.top_logprobs = (uint32_t)top;
    req->chat_logprobs = true;
    return true;
}

bool api_parse(const api_env *env, api_kind kind, json_t *body, const char *priority_header,
               api_request *req, api_error *e) {
    memset(req, 0, sizeof *req);
    req->kind = kind;
    if (!json_is_object(body)) return BAD(NULL, "the request body must be a JSON object");
    if (!parse_common(env, body, priority_header, req, e)) return false;
    bool ok = kind == API_CHAT         ? parse_chat(env, body, req, e)
              : kind == API_COMPLETION ? parse_completion(env, body, req, e)
                                       : true;
    if (!ok || !api_parse_sections(env, body, req, e)) return false;
    if (!api_parse_structured(env, body, req, e)) return false;
    req->sp.prompt = req->prompt;
    req->sp.n_prompt = req->n_prompt;
    return true;
}

sched_submit_status api_submit(sched *s, api_request *req, sched_request **out, hearth_error *err) {
    sched_submit_status st = sched_submit(s, &req->sp, out, err);
    req->sp.grammar = NULL;
    req->sp.guard = NULL;
    return st;
}

void api_request_free(api_request *req) {
    free(req->prompt);
    req->prompt = NULL;
    hearth_grammar_free(req->sp.grammar);
    hearth_loop_guard_free(req->sp.guard);
    req->sp.grammar = NULL;
    req->sp.guard = NULL;
    free(req->sec.topic);
    free(req->sec.outline);
    req->sec.topic = req->sec.outline = NULL;
    for (size_t i = 0; i < SCHED_MAX_STOP; i++) {
        free(req->stop[i]);
        req->stop[i] = NULL;
    }
}

/* ---------------------------------------------------------------- responses */

/* Copies s[0..n) replacing every invalid UTF-8 sequence by U+FFFD. */
static size_t utf8_sanitize(const unsigned char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
        for (size_t k = 1; ok && k < len; k++) {
            ok = (s[i + k] & 0xc0) == 0x80;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (ok) {
            ok = (len == 1) || (len == 2 && cp >= 0x80) ||
                 (len == 3 && cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff)) ||
                 (len == 4 && cp >= 0x10000 && cp <= 0x10ffff);
        }
        if (ok) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    return o;
}

json_t *api_token_string(const hearth_tokenizer *tok, hearth_token id, json_t **bytes) {
    char small[256];
    char *raw = small;
    size_t n = 0;
    unsigned flags = HEARTH_DETOK_RENDER_SPECIAL | HEARTH_DETOK_KEEP_LEADING_SPACE;
    hearth_status st = hearth_detokenize(tok, &id, 1, flags, small, sizeof small, &n, NULL);
    if (st == HEARTH_ERR_BUFFER_TOO_SMALL) {
        raw = malloc(n);
        if (raw) st = hearth_detokenize(tok, &id, 1, flags, raw, n, &n, NULL);
    }
    if (!raw || st != HEARTH_OK) n = 0;
    char *clean = malloc(3 * n + 1);
    size_t m = clean ? utf8_sanitize((const unsigned char *)(raw ? raw : ""), n, clean) : 0;
    json_t *s = json_stringn(clean ? clean : "", m);
    if (bytes) {
        *bytes = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(*bytes, json_integer((unsigned char)raw[i]));
    }
    free(clean);
    if (raw != small) free(raw);
    return s ? s : json_string("");
}

static json_t *text_json(const char *text, size_t n) {
    /* Generated text is valid UTF-8 (the streaming detokenizer guarantees
     * it); sanitize anyway rather than send a null. */
    json_t *s = json_stringn(text ? text : "", n);
    if (s) return s;
    char *clean = malloc(3 * n + 1);
    if (!clean) return json_string("");
    size_t m = utf8_sanitize((const unsigned char *)text, n, clean);
    s = json_stringn(clean, m);
    free(clean);
    return s ? s : json_string("");
}

static json_t *chat_logprobs_json(const api_meta *m, const sched_token *toks, size_t n) {
    json_t *content = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_object(), *bytes = NULL;
        json_object_set_new(item, "token", api_token_string(m->tok, toks[i].id, &bytes));
        json_object_set_new(item, "logprob", json_real(toks[i].logprob));
        json_object_set_new(item, "bytes", bytes);
        json_t *top = json_array();
        for (uint32_t k = 0; k < toks[i].n_top; k++) {
            json_t *alt = json_object(), *ab = NULL;
            json_object_set_new(alt, "token", api_token_string(m->tok, toks[i].top_id[k], &ab));
            json_object_set_new(alt, "logprob", json_real(toks[i].top_logprob[k]));
            json_object_set_new(alt, "bytes", ab);
            json_array_append_new(top, alt);
        }
        json_object_set_new(item, "top_logprobs", top);
        json_array_append_new(content, item);
    }
    json_t *lp = json_object();
    json_object_set_new(lp, "content", content);
    return lp;
}

static json_t *completion_logprobs_json(const api_meta *m, const sched_token *toks, size_t n,
                                        size_t *offset) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *t = api_token_string(m->tok, toks[i].id, NULL);
        json_array_append_new(offs, json_integer((json_int_t)*offset));
        *offset += json_string_length(t);
        json_array_append_new(tokens, t);
        json_array_append_new(lps, json_real(toks[i].logprob));
        json_t *top = json_object();
        for (uint32_t k = 0; k < toks[i].n_top; k++) {
            json_t *alt = api_token_string(m->tok, toks[i].top_id[k], NULL);
            json_object_set_new(top, json_string_value(alt), json_real(toks[i].top_logprob[k]));
            json_decref(alt);
        }
        json_array_append_new(tops, top);
    }
    json_t *lp = json_object();
    json_object_set_new(lp, "tokens", tokens);
    json_object_set_new(lp, "token_logprobs", lps);
    json_object_set_new(lp, "top_logprobs", tops);
    json_object_set_new(lp, "text_offset", offs);
    return lp;
}

static json_t *finish_json(sched_finish f) {
    if (f == SCHED_FINISH_STOP) return json_string("stop");
    if (f == SCHED_FINISH_LENGTH) return json_string("length");
    if (f == SCHED_FINISH_REPETITION) return json_string("repetition");
    return json_null();
}

static json_t *usage_json(const sched_delta *u) {
    json_t *o = json_object();
    json_object_set_new(o, "prompt_tokens", json_integer(u->n_prompt));
    json_object_set_new(o, "completion_tokens", json_integer(u->n_generated));
    json_object_set_new(o, "total_tokens", json_integer((json_int_t)u->n_prompt + u->n_generated));
    json_t *d = json_object();
    json_object_set_new(d, "cached_tokens", json_integer(u->n_cached));
    json_object_set_new(o, "prompt_tokens_details", d);
    return o;
}

static json_t *envelope(const api_meta *m, const char *object) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(m->id));
    json_object_set_new(o, "object", json_string(object));
    json_object_set_new(o, "created", json_integer(m->created));
    json_object_set_new(o, "model", text_json(m->model, strlen(m->model)));
    json_object_set_new(o, "system_fingerprint", json_string("hearth-" HEARTH_VERSION));
    return o;
}

json_t *api_response_json(const api_meta *m, const char *text, size_t n_text,
                          const sched_token *toks, size_t n_toks, sched_finish finish,
                          const sched_delta *usage) {
    bool chat = m->kind == API_CHAT;
    json_t *o = envelope(m, chat ? "chat.completion" : "text_completion");
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    size_t content_len = n_text;
    json_t *calls =
        chat && m->tools ? api_tool_calls_json(text, n_text, m->id, &content_len) : NULL;
    if (chat) {
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("assistant"));
        json_object_set_new(msg, "content",
                            calls && content_len == 0 ? json_null() : text_json(text, content_len));
        if (calls) json_object_set_new(msg, "tool_calls", calls);
        json_object_set_new(choice, "message", msg);
    } else {
        json_object_set_new(choice, "text", text_json(text, n_text));
    }
    if (m->logprobs) {
        size_t off = 0;
        json_object_set_new(choice, "logprobs",
                            chat ? chat_logprobs_json(m, toks, n_toks)
                                 : completion_logprobs_json(m, toks, n_toks, &off));
    } else {
        json_object_set_new(choice, "logprobs", json_null());
    }
    json_object_set_new(choice, "finish_reason",
                        calls ? json_string("tool_calls") : finish_json(finish));
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage_json(usage));
    return o;
}

json_t *api_chunk_json(api_meta *m, const char *text, size_t n_text, const sched_token *toks,
                       size_t n_toks, bool first, sched_finish finish) {
    bool chat = m->kind == API_CHAT;
    json_t *o = envelope(m, chat ? "chat.completion.chunk" : "text_completion");
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    bool last = finish != SCHED_FINISH_NONE;
    if (chat) {
        json_t *delta = json_object();
        if (first) json_object_set_new(delta, "role", json_string("assistant"));
        if (!last || n_text > 0) json_object_set_new(delta, "content", text_json(text, n_text));
        json_object_set_new(choice, "delta", delta);
    } else {
        json_object_set_new(choice, "text", text_json(text, n_text));
    }
    if (m->logprobs && n_toks > 0) {
        json_object_set_new(choice, "logprobs",
                            chat ? chat_logprobs_json(m, toks, n_toks)
                                 : completion_logprobs_json(m, toks, n_toks, &m->text_offset));
    } else {
        json_object_set_new(choice, "logprobs", json_null());
    }
    json_object_set_new(choice, "finish_reason", finish_json(finish));
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(o, "choices", choices);
    return o;
}

json_t *api_usage_chunk_json(const api_meta *m, const sched_delta *usage) {
    json_t *o = envelope(m, m->kind == API_CHAT ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(o, "choices", json_array());
    json_object_set_new(o, "usage", usage_json(usage));
    return o;
}
