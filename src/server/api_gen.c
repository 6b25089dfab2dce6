/* api_gen.c — the request fields of constrained and long outputs (see
 * api.h): response_format and grammar, loop_guard, and sections; and the
 * JSON of sections in replies.
 *
 * A schema or grammar is compiled while the request is parsed, on the
 * connection's thread: a bad one is a 400 that names the field and the
 * problem (the compilers' messages say where: "#/properties/age: keyword
 * 'minimum' is not supported", "grammar: line 2, column 7: …") before
 * anything is queued, and the engine thread never compiles.
 *
 * Loop guard defaults, when the request does not say:
 *   chat completions    stop: a loop ends the reply with finish_reason
 *                       "repetition" rather than burning the shared engine
 *                       until max_tokens;
 *   completions         watch: found loops are counted in the metrics and
 *                       nothing else changes (a raw continuation stays
 *                       exactly what the model writes, as `hearth run`);
 *   with a grammar      penalize: a stop would leave JSON unfinished;
 *   sections            stop the section (the others go on).
 * The plain default looks for repeated spans of 48 tokens rather than the
 * library's 24: a chat reply may legitimately repeat a line of code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"

#define BAD(param, ...) api_fail(e, 400, "invalid_request_error", NULL, param, __VA_ARGS__)
#define OOM()           api_fail(e, 500, "server_error", NULL, NULL, "out of memory")

#define PLAIN_SPAN_LEN 48
#define MAX_TOPIC      (16 * 1024)

/* ---------------------------------------------------------------- response_format, grammar */

static bool compile_schema(const api_env *env, json_t *schema, const char *where, api_request *req,
                           api_error *e) {
    const char *param = "response_format";
    char *text = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) return OOM();
    size_t len = strlen(text);
    bool ok = true;
    if (len > API_MAX_GRAMMAR) {
        ok = BAD(param, "the schema is %zu bytes of JSON; at most %d", len, API_MAX_GRAMMAR);
    } else {
        hearth_error err;
        hearth_status st =
            hearth_grammar_create_from_json_schema(env->gvocab, text, len, &req->sp.grammar, &err);
        if (st == HEARTH_ERR_NOMEM) {
            ok = api_fail(e, 500, "server_error", NULL, param, "%s", err.msg);
        } else if (st != HEARTH_OK) {
            ok = BAD(param, "%s: %s", where, err.msg);
        }
    }
    free(text);
    return ok;
}

static bool parse_response_format(const api_env *env, json_t *rf, api_request *req, api_error *e) {
    const char *P = "response_format";
    if (!json_is_object(rf)) return BAD(P, "'response_format' must be an object");
    json_t *type = json_object_get(rf, "type");
    if (!json_is_string(type)) {
        return BAD(P, "response_format.type must be \"text\", \"json_object\" or \"json_schema\"");
    }
    const char *t = json_string_value(type);
    if (!strcmp(t, "text")) return true;
    if (!strcmp(t, "json_object")) {
        json_t *any = json_pack("{s:s}", "type", "object");
        if (!any) return OOM();
        bool ok = compile_schema(env, any, P, req, e);
        json_decref(any);
        return ok;
    }
    if (strcmp(t, "json_schema") != 0) {
        return BAD(P,
                   "response_format.type '%.64s' is not supported: use \"text\", "
                   "\"json_object\" or \"json_schema\"",
                   t);
    }
    json_t *js = json_object_get(rf, "json_schema");
    if (!json_is_object(js)) {
        return BAD(P, "response_format.json_schema must be an object with a \"schema\"");
    }
    json_t *name = json_object_get(js, "name");
    if (name && !json_is_null(name)) {
        const char *n = json_string_value(name);
        size_t len = n ? json_string_length(name) : 0;
        bool ok = n && len >= 1 && len <= 64;
        for (size_t i = 0; ok && i < len; i++) {
            char c = n[i];
            ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-';
        }
        if (!ok) {
            return BAD(P, "response_format.json_schema.name must be 1 to 64 of a-z, A-Z, 0-9, "
                          "_ and -");
        }
    }
    json_t *strict = json_object_get(js, "strict");
    if (strict && !json_is_null(strict) && !json_is_boolean(strict)) {
        return BAD(P, "response_format.json_schema.strict must be true or false");
    }
    json_t *schema = json_object_get(js, "schema");
    if (!json_is_object(schema)) {
        return BAD(P, "response_format.json_schema.schema must be a JSON schema object");
    }
    return compile_schema(env, schema, "response_format.json_schema.schema", req, e);
}

static bool parse_grammar(const api_env *env, json_t *g, api_request *req, api_error *e) {
    if (!json_is_string(g)) return BAD("grammar", "'grammar' must be a string of GBNF");
    size_t len = json_string_length(g);
    if (len > API_MAX_GRAMMAR) {
        return BAD("grammar", "the grammar is %zu bytes; at most %d", len, API_MAX_GRAMMAR);
    }
    hearth_error err;
    hearth_status st = hearth_grammar_create_from_gbnf(env->gvocab, json_string_value(g), len, NULL,
                                                       &req->sp.grammar, &err);
    if (st == HEARTH_ERR_NOMEM)
        return api_fail(e, 500, "server_error", NULL, "grammar", "%s", err.msg);
    if (st != HEARTH_OK) return BAD("grammar", "%s", err.msg);
    return true;
}

/* ---------------------------------------------------------------- loop_guard */

static bool guard_action(const char *s, bool sections, hearth_loop_action *out, bool *watch,
                         api_error *e) {
    *watch = false;
    if (!sections && !strcmp(s, "watch")) {
        *watch = true;
        *out = HEARTH_LOOP_OFF;
        return true;
    }
    if (!strcmp(s, "stop_all")) s = "stop-repetition";
    if (!hearth_loop_action_parse(s, out)) {
        return BAD("loop_guard",
                   sections ? "unknown loop_guard action '%.32s': use stop (the section), stop_all "
                              "(the whole generation), penalize or off"
                            : "unknown loop_guard action '%.32s': use stop, penalize, watch or off",
                   s);
    }
    /* One sequence: stopping "the section" is stopping it. */
    if (!sections && *out == HEARTH_LOOP_STOP_SECTION) *out = HEARTH_LOOP_STOP;
    return true;
}

static bool guard_u32(json_t *o, const char *key, uint32_t lo, uint32_t hi, uint32_t *out,
                      api_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        return BAD("loop_guard", "loop_guard.%s must be an integer from %u to %u", key, lo, hi);
    }
    *out = (uint32_t)json_integer_value(v);
    return true;
}

/* Reads "loop_guard" into *gp and the action; *watch for "watch". */
static bool parse_guard(json_t *body, bool sections, hearth_loop_guard_params *gp,
                        hearth_loop_action *action, bool *watch, api_error *e) {
    json_t *v = json_object_get(body, "loop_guard");
    if (!v || json_is_null(v)) return true;
    if (json_is_string(v)) return guard_action(json_string_value(v), sections, action, watch, e);
    if (!json_is_object(v)) {
        return BAD("loop_guard", "'loop_guard' must be an action (\"stop\", \"penalize\", "
                                 "\"off\" …) or an object with \"action\" and window settings");
    }
    json_t *a = json_object_get(v, "action");
    if (a && !json_is_null(a)) {
        if (!json_is_string(a)) return BAD("loop_guard", "loop_guard.action must be a string");
        if (!guard_action(json_string_value(a), sections, action, watch, e)) return false;
    }
    if (!guard_u32(v, "window", 0, 8192, &gp->distinct_window, e) ||
        !guard_u32(v, "n", 1, 8, &gp->distinct_n, e) ||
        !guard_u32(v, "max_period", 0, 256, &gp->max_period, e) ||
        !guard_u32(v, "cycle_tokens", 1, 8192, &gp->cycle_min_tokens, e) ||
        !guard_u32(v, "cycle_repeats", 2, 1000, &gp->cycle_min_repeats, e) ||
        !guard_u32(v, "span", 0, 1024, &gp->span_len, e)) {
        return false;
    }
    if (gp->span_len == 1) return BAD("loop_guard", "loop_guard.span must be 0 (off) or 2 to 1024");
    json_t *md = json_object_get(v, "min_distinct");
    if (md && !json_is_null(md)) {
        if (!json_is_number(md) || json_number_value(md) < 0 || json_number_value(md) > 1) {
            return BAD("loop_guard", "loop_guard.min_distinct must be a number from 0 to 1");
        }
        gp->distinct_min = (float)json_number_value(md);
    }
    return true;
}

bool api_parse_structured(const api_env *env, json_t *body, api_request *req, api_error *e) {
    json_t *rf = json_object_get(body, "response_format");
    json_t *gr = json_object_get(body, "grammar");
    bool has_rf = rf && !json_is_null(rf), has_gr = gr && !json_is_null(gr);
    if ((has_rf || has_gr) && req->sec.on) {
        return BAD(has_rf ? "response_format" : "grammar",
                   "sectional generation writes prose: it takes no response_format or grammar");
    }
    if (has_rf && has_gr) return BAD("grammar", "give response_format or grammar, not both");
    if ((has_rf || has_gr) && !env->gvocab) {
        return api_fail(e, 500, "server_error", NULL, has_rf ? "response_format" : "grammar",
                        "constrained decoding is not available on this server");
    }
    if (has_rf && !parse_response_format(env, rf, req, e)) return false;
    if (has_gr && !parse_grammar(env, gr, req, e)) return false;

    hearth_loop_guard_params gp = hearth_loop_guard_default_params();
    if (req->sec.on) {
        gp = req->sec.p.guard;
        hearth_loop_action act = gp.action;
        bool watch = false;
        if (!parse_guard(body, true, &gp, &act, &watch, e)) return false;
        gp.action = act;
        req->sec.p.guard = gp;
        return true;
    }
    gp.span_len = PLAIN_SPAN_LEN;
    hearth_loop_action act = req->sp.grammar         ? HEARTH_LOOP_PENALIZE
                             : req->kind == API_CHAT ? HEARTH_LOOP_STOP
                                                     : HEARTH_LOOP_OFF;
    bool watch = req->kind == API_COMPLETION && !req->sp.grammar;
    if (!parse_guard(body, false, &gp, &act, &watch, e)) return false;
    req->sp.loop_action = act;
    if (act == HEARTH_LOOP_OFF && !watch) return true;
    gp.action = watch ? HEARTH_LOOP_STOP : act; /* a watching guard checks as a stopping one */
    hearth_error err;
    hearth_status st = hearth_loop_guard_create(&gp, &req->sp.guard, &err);
    if (st == HEARTH_ERR_NOMEM) return api_fail(e, 500, "server_error", NULL, NULL, "%s", err.msg);
    if (st != HEARTH_OK) return BAD("loop_guard", "%s", err.msg);
    return true;
}

/* ---------------------------------------------------------------- sections */

static bool sec_u32(json_t *o, const char *key, const char *param, uint32_t lo, uint32_t hi,
                    uint32_t *out, api_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        return BAD(param, "'%s' must be an integer from %u to %u", key, lo, hi);
    }
    *out = (uint32_t)json_integer_value(v);
    return true;
}

static char *copy_text(json_t *s) {
    size_t n = json_string_length(s);
    char *t = malloc(n + 1);
    if (t) {
        memcpy(t, json_string_value(s), n);
        t[n] = '\0';
    }
    return t;
}

/* The options of a sectional generation in o; count_key is "sections" at
 * the top of /v1/sections, "count" inside chat's "sections" object. */
static bool parse_section_opts(json_t *o, const char *count_key, const char *param,
                               api_request *req, api_error *e) {
    hearth_sections_params *p = &req->sec.p;
    if (!sec_u32(o, count_key, param, 1, HEARTH_SECTIONS_MAX, &p->n_sections, e)) return false;
    json_t *ol = json_object_get(o, "outline");
    if (ol && !json_is_null(ol)) {
        size_t total = 0, n = json_is_array(ol) ? json_array_size(ol) : 0;
        if (json_is_string(ol)) {
            total = json_string_length(ol);
        } else if (json_is_array(ol) && n >= 1 && n <= HEARTH_SECTIONS_MAX) {
            for (size_t i = 0; i < n; i++) {
                json_t *h = json_array_get(ol, i);
                if (!json_is_string(h) || json_string_length(h) == 0) {
                    return BAD(param, "outline[%zu] must be a non-empty string", i);
                }
                total += json_string_length(h) + 1;
            }
        } else {
            return BAD(param,
                       "'outline' must be a string of headings, one a line, or an "
                       "array of 1 to %d headings",
                       HEARTH_SECTIONS_MAX);
        }
        if (total > MAX_TOPIC) return BAD(param, "the outline is over %d bytes", MAX_TOPIC);
        req->sec.outline = malloc(total + 1);
        if (!req->sec.outline) return OOM();
        size_t at = 0;
        for (size_t i = 0; json_is_array(ol) && i < n; i++) {
            json_t *h = json_array_get(ol, i);
            memcpy(req->sec.outline + at, json_string_value(h), json_string_length(h));
            at += json_string_length(h);
            req->sec.outline[at++] = '\n';
        }
        if (json_is_string(ol)) {
            memcpy(req->sec.outline, json_string_value(ol), total);
            at = total;
        }
        req->sec.outline[at] = '\0';
        if (strlen(req->sec.outline) != at) return BAD(param, "the outline holds a NUL byte");
        p->outline = req->sec.outline;
    } else if (p->n_sections == 0) {
        return BAD(param, "give '%s' (1 to %d) or an 'outline'", count_key, HEARTH_SECTIONS_MAX);
    }
    json_t *st = json_object_get(o, "section_tokens");
    if (json_is_integer(st)) {
        if (!sec_u32(o, "section_tokens", param, 8, 8192, &p->max_tokens, e)) return false;
        p->min_tokens = p->max_tokens * 5 / 8;
    } else if (json_is_object(st)) {
        if (!sec_u32(st, "min", param, 1, 8192, &p->min_tokens, e) ||
            !sec_u32(st, "max", param, 1, 8192, &p->max_tokens, e)) {
            return false;
        }
        if (p->min_tokens > p->max_tokens) {
            return BAD(param, "section_tokens.min %u is above section_tokens.max %u", p->min_tokens,
                       p->max_tokens);
        }
    } else if (st && !json_is_null(st)) {
        return BAD(param, "'section_tokens' must be a maximum or {\"min\": N, \"max\": N}");
    }
    if (!sec_u32(o, "tail_tokens", param, 0, 1024, &p->tail_tokens, e) ||
        !sec_u32(o, "outline_tokens", param, 1, 8192, &p->outline_max_tokens, e) ||
        !sec_u32(o, "parallel", param, 1, HEARTH_SECTIONS_MAX + 1, &p->max_parallel, e)) {
        return false;
    }
    json_t *order = json_object_get(o, "order");
    if (order && !json_is_null(order)) {
        const char *s = json_string_value(order);
        if (s && !strcmp(s, "chained")) {
            p->order = HEARTH_SECTIONS_CHAINED;
        } else if (s && !strcmp(s, "parallel")) {
            p->order = HEARTH_SECTIONS_PARALLEL;
        } else if (s && !strcmp(s, "alternate")) {
            p->order = HEARTH_SECTIONS_ALTERNATE;
        } else {
            return BAD(param, "'order' must be \"chained\", \"parallel\" or \"alternate\"");
        }
    }
    json_t *h = json_object_get(o, "headings");
    if (h && !json_is_null(h)) {
        if (!json_is_boolean(h)) return BAD(param, "'headings' must be true or false");
        p->headings = json_is_true(h);
    }
    return true;
}

/* The text of the last user message of a chat body. */
static json_t *last_user_text(json_t *body) {
    json_t *msgs = json_object_get(body, "messages");
    for (size_t i = json_array_size(msgs); i-- > 0;) {
        json_t *m = json_array_get(msgs, i);
        json_t *role = json_object_get(m, "role");
        if (json_is_string(role) && !strcmp(json_string_value(role), "user")) {
            json_t *c = json_object_get(m, "content");
            if (json_is_string(c)) return c;
            if (json_is_array(c)) return json_object_get(json_array_get(c, 0), "text");
        }
    }
    return NULL;
}

bool api_parse_sections(const api_env *env, json_t *body, api_request *req, api_error *e) {
    json_t *opt = NULL, *topic = NULL;
    const char *param = "sections";
    if (req->kind == API_SECTIONS) {
        opt = body;
        topic = json_object_get(body, "topic");
        if (!json_is_string(topic) || json_string_length(topic) == 0) {
            return BAD("topic", "'topic' is required: a non-empty string saying what to write");
        }
    } else if (req->kind == API_CHAT) {
        opt = json_object_get(body, "sections");
        if (!opt || json_is_null(opt)) return true;
        if (!json_is_integer(opt) && !json_is_object(opt)) {
            return BAD(param, "'sections' must be a count or an object with \"count\", "
                              "\"outline\", \"section_tokens\" …");
        }
        topic = last_user_text(body);
        if (!json_is_string(topic) || json_string_length(topic) == 0) {
            return BAD("messages", "a sectional reply needs a user message saying what to write");
        }
    } else {
        return true;
    }
    req->sec.on = true;
    req->sec.p = hearth_sections_default_params();
    req->sec.p.sampling = req->sp.sampling;
    if (json_string_length(topic) > MAX_TOPIC) {
        return BAD(req->kind == API_SECTIONS ? "topic" : "messages",
                   "the topic is %zu bytes; at most %d", json_string_length(topic), MAX_TOPIC);
    }
    req->sec.topic = copy_text(topic);
    if (!req->sec.topic) return OOM();
    if (strlen(req->sec.topic) != json_string_length(topic)) {
        return BAD(req->kind == API_SECTIONS ? "topic" : "messages", "the topic holds a NUL byte");
    }
    req->sec.p.topic = req->sec.topic;
    if (json_is_integer(opt)) {
        json_int_t n = json_integer_value(opt);
        if (n < 1 || n > HEARTH_SECTIONS_MAX) {
            return BAD(param, "'sections' must be from 1 to %d", HEARTH_SECTIONS_MAX);
        }
        req->sec.p.n_sections = (uint32_t)n;
    } else if (!parse_section_opts(opt, req->kind == API_SECTIONS ? "sections" : "count", param,
                                   req, e)) {
        return false;
    }
    if (env->chat != CHAT_NONE) {
        req->sec.p.prompt_tokens = api_section_prompt_tokens;
        req->sec.p.format_arg = (void *)env;
    }
    return true;
}

/* ---------------------------------------------------------------- section prompts */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *s) {
    size_t k = strlen(s);
    if (b->oom) return;
    if (b->n + k + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap : 1024) + k + 1;
        char *q = realloc(b->p, cap * 2);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap * 2;
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

hearth_status api_section_prompt_tokens(const hearth_section_prompt *w, hearth_token *out,
                                        size_t cap, size_t *n_out, void *arg, hearth_error *err) {
    const api_env *env = arg;
    sbuf b = {NULL, 0, 0, false};
    char num[96];
    if (w->index == HEARTH_SECTION_OUTLINE) {
        snprintf(num, sizeof num, "Write an outline in %u parts for a text about: ", w->n_sections);
        put(&b, num);
        put(&b, w->topic);
        snprintf(num, sizeof num,
                 "\n\nAnswer with %u lines, one heading each, numbered 1. to %u, and nothing else.",
                 w->n_sections, w->n_sections);
        put(&b, num);
    } else {
        put(&b, "Topic: ");
        put(&b, w->topic);
        put(&b, "\n\nOutline:\n");
        put(&b, w->outline);
        if (w->tail[0]) {
            put(&b, "\nThe text so far ends with: \"…");
            put(&b, w->tail);
            put(&b, "\"\n");
        }
        snprintf(num, sizeof num, "\nWrite part %u of %u, \"", w->index + 1, w->n_sections);
        put(&b, num);
        put(&b, w->heading);
        put(&b, "\": a few paragraphs of plain prose that go on from the text so far. No "
                "heading, no title, no list.");
    }
    if (b.oom) {
        free(b.p);
        if (err) {
            err->code = HEARTH_ERR_NOMEM;
            snprintf(err->msg, sizeof err->msg, "out of memory for a section prompt");
        }
        return HEARTH_ERR_NOMEM;
    }
    chat_message m[2] = {{CHAT_ROLE_SYSTEM, "You write clear, varied prose.", 30},
                         {CHAT_ROLE_USER, b.p, b.n}};
    chat_options opt = {true, false};
    hearth_token *toks = NULL;
    size_t n = 0;
    hearth_status st = chat_render_tokens(env->chat, env->tok, m, 2, &opt, &toks, &n, err);
    free(b.p);
    if (st != HEARTH_OK) return st;
    *n_out = n;
    if (n > cap) {
        free(toks);
        return HEARTH_ERR_BUFFER_TOO_SMALL;
    }
    memcpy(out, toks, n * sizeof *toks);
    free(toks);
    return HEARTH_OK;
}

/* ---------------------------------------------------------------- replies */

json_t *api_section_json(const hearth_section_info *s) {
    bool outline = s->index == HEARTH_SECTION_OUTLINE;
    json_t *o = json_object();
    json_object_set_new(o, "index", outline ? json_null() : json_integer(s->index));
    json_object_set_new(o, "kind", json_string(outline ? "outline" : "section"));
    json_t *h = json_string(s->heading);
    json_object_set_new(o, "heading", h ? h : json_string(""));
    json_t *t = json_stringn(s->text, s->text_len);
    json_object_set_new(o, "text", t ? t : json_string(""));
    json_object_set_new(o, "tokens", json_integer(s->n_tokens));
    json_object_set_new(o, "generated_tokens", json_integer(s->n_generated));
    json_object_set_new(o, "prompt_tokens", json_integer(s->n_prompt));
    json_object_set_new(o, "end", json_string(hearth_section_end_name(s->end)));
    json_object_set_new(o, "loop",
                        s->end == HEARTH_SECTION_LOOP ? json_string(hearth_loop_kind_name(s->loop))
                                                      : json_null());
    return o;
}

json_t *api_sections_summary_json(const hearth_sections_result *r) {
    json_t *o = json_object(), *tok = json_array(), *ends = json_array();
    for (uint32_t i = 0; i < r->n_sections; i++) {
        json_array_append_new(tok, json_integer(r->section_tokens[i]));
        json_array_append_new(ends, json_string(hearth_section_end_name(r->section_end[i])));
    }
    json_object_set_new(o, "sections", json_integer(r->n_sections));
    json_object_set_new(o, "tokens_per_section", tok);
    json_object_set_new(o, "ends", ends);
    json_object_set_new(o, "guard_stops", json_integer(r->n_guard_stops));
    json_object_set_new(o, "guard_findings", json_integer(r->n_guard_findings));
    json_object_set_new(o, "repetition", json_boolean(r->repetition));
    json_object_set_new(o, "outline_tokens", json_integer(r->n_outline));
    json_object_set_new(o, "generated_tokens", json_integer(r->n_generated));
    json_object_set_new(o, "kept_tokens", json_integer((json_int_t)r->n_tokens));
    return o;
}
