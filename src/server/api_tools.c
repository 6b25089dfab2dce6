/* api_tools.c — tools in chat requests and replies (see api_tools.h). */
#include "server/api_tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD(param, ...) api_fail(e, 400, "invalid_request_error", NULL, param, __VA_ARGS__)
#define MAX_TOOLS       128

/* JSON text as the templates' tojson writes it: ", " and ": " separators. */
static char *tojson(json_t *j) {
    return json_dumps(j, JSON_ENCODE_ANY);
}

bool api_tools_parse(json_t *body, json_t *msgs, size_t n, chat_family chat, api_tools *t,
                     api_error *e) {
    memset(t, 0, sizeof *t);
    json_t *tools = json_object_get(body, "tools");
    size_t n_defs = 0;
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) return BAD("tools", "'tools' must be an array");
        n_defs = json_array_size(tools);
        if (n_defs > MAX_TOOLS) return BAD("tools", "at most %d tools", MAX_TOOLS);
    }
    size_t n_calls = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *tc = json_object_get(json_array_get(msgs, i), "tool_calls");
        if (tc && !json_is_null(tc) && !json_is_array(tc)) {
            return BAD("messages", "messages[%zu].tool_calls must be an array", i);
        }
        n_calls += json_is_array(tc) ? json_array_size(tc) : 0;
    }
    if (n_defs == 0 && n_calls == 0) return true;
    if (!chat_has_tools(chat)) {
        return BAD("tools", "the %s chat template has no tool-call format (chatml and qwen3 do)",
                   chat_family_name(chat));
    }
    t->defs = calloc(n_defs ? n_defs : 1, sizeof *t->defs);
    t->calls = calloc(n_calls ? n_calls : 1, sizeof *t->calls);
    t->n_calls = calloc(n, sizeof *t->n_calls);
    if (!t->defs || !t->calls || !t->n_calls) {
        return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    for (size_t i = 0; i < n_defs; i++) {
        json_t *d = json_array_get(tools, i);
        json_t *f = json_object_get(d, "function");
        if (!json_is_object(d) || !json_is_string(json_object_get(d, "type")) ||
            strcmp(json_string_value(json_object_get(d, "type")), "function") != 0 ||
            !json_is_object(f) || !json_is_string(json_object_get(f, "name"))) {
            return BAD("tools",
                       "tools[%zu] must be {\"type\": \"function\", \"function\": {\"name\": …}}",
                       i);
        }
        if (!(t->defs[i] = tojson(d))) {
            return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        }
        t->ct.n_defs++;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *tc = json_object_get(json_array_get(msgs, i), "tool_calls");
        size_t k;
        json_t *c;
        json_array_foreach(tc, k, c) {
            json_t *f = json_object_get(c, "function");
            json_t *name = json_object_get(f, "name"), *args = json_object_get(f, "arguments");
            if (!json_is_string(name)) {
                return BAD("messages", "messages[%zu].tool_calls[%zu].function.name is required", i,
                           k);
            }
            chat_tool_call *out = &t->calls[t->n_all_calls];
            out->name = strdup(json_string_value(name));
            out->arguments = json_is_string(args) ? strdup(json_string_value(args))
                             : args               ? tojson(args)
                                                  : strdup("{}");
            t->n_all_calls++;
            t->n_calls[i]++;
            if (!out->name || !out->arguments) {
                return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
            }
        }
    }
    t->ct.defs = (const char *const *)t->defs;
    t->ct.calls = t->calls;
    t->ct.n_calls = t->n_calls;
    return true;
}

void api_tools_free(api_tools *t) {
    for (size_t i = 0; t->defs && i < t->ct.n_defs; i++) free(t->defs[i]);
    for (size_t i = 0; t->calls && i < t->n_all_calls; i++) {
        free((char *)t->calls[i].name);
        free((char *)t->calls[i].arguments);
    }
    free(t->defs);
    free(t->calls);
    free(t->n_calls);
    memset(t, 0, sizeof *t);
}

json_t *api_tool_calls_json(const char *text, size_t n, const char *id_prefix,
                            size_t *content_len) {
    static const char open[] = "<tool_call>", close[] = "</tool_call>";
    const char *first = text ? memmem(text, n, open, sizeof open - 1) : NULL;
    if (!first) return NULL;
    json_t *calls = json_array();
    const char *p = first, *end = text + n;
    size_t k = 0;
    while (p && p < end) {
        const char *body = p + sizeof open - 1;
        const char *stop = memmem(body, (size_t)(end - body), close, sizeof close - 1);
        if (!stop) break;
        json_t *j = json_loadb(body, (size_t)(stop - body), 0, NULL);
        json_t *name = json_object_get(j, "name");
        if (json_is_string(name)) {
            json_t *args = json_object_get(j, "arguments");
            char *args_text = args ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            char id[96];
            snprintf(id, sizeof id, "%s-%zu", id_prefix, k++);
            json_t *f = json_object();
            json_object_set(f, "name", name);
            json_object_set_new(f, "arguments", json_string(args_text ? args_text : "{}"));
            json_t *c = json_object();
            json_object_set_new(c, "id", json_string(id));
            json_object_set_new(c, "type", json_string("function"));
            json_object_set_new(c, "function", f);
            json_array_append_new(calls, c);
            free(args_text);
        }
        json_decref(j);
        p = stop + sizeof close - 1;
        p = memmem(p, (size_t)(end - p), open, sizeof open - 1);
    }
    if (json_array_size(calls) == 0) {
        json_decref(calls);
        return NULL;
    }
    size_t len = (size_t)(first - text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ')) len--;
    *content_len = len;
    return calls;
}
