/* config.c — the agents file: YAML through libyaml's document API, then
 * validation (see config.h).
 *
 * libyaml builds the whole document as a node graph that keeps each
 * node's position, so every check below can name the line of the value it
 * refuses.  The walk keeps the first error and stops; nothing half-read
 * survives a failure.
 *
 * The file's shape:
 *   store: notebook.db        SQLite file (default agents.db beside the file)
 *   data: data                folder of the agents' data folders (default "data")
 *   workers: 4                runs at once (default 4)
 *   engine: local             default engine of every agent
 *   agents:                   a list of agents, each a mapping:
 *     - name, description, class (tool|background), enabled, engine, model,
 *       prompt (required), triggers, inputs, output (text|sections|json_schema),
 *       schema (with json_schema), sections (with sections), tools, limits
 *       {max_tokens, timeout, retries, tool_calls, input_bytes}, request
 *       (extra fields for every model request)
 */
#include "agents/config.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "agents/store.h"
#include "util/error.h"

const char *const agent_tool_names[AGENT_N_TOOLS] = {"read_file", "list_inbox", "write_output",
                                                     "query_store", "call_agent"};

static const char *const trigger_names[AGENT_TRIGGER_N] = {"interval", "daily", "inbox", "after",
                                                           "api"};

const char *agent_trigger_name(agent_trigger_type t) {
    return (unsigned)t < AGENT_TRIGGER_N ? trigger_names[t] : "?";
}

const char *agent_output_name(agent_output o) {
    switch (o) {
    case AGENT_OUTPUT_SECTIONS: return "sections";
    case AGENT_OUTPUT_JSON_SCHEMA: return "json_schema";
    default: return "text";
    }
}

/* ---------------------------------------------------------------- the walk */

typedef struct walk {
    yaml_document_t *doc;
    const char *path;
    hearth_error *err;
    bool failed;
} walk;

static int line_of(const yaml_node_t *n) {
    return n ? (int)n->start_mark.line + 1 : 0;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static bool
bad(walk *w, const yaml_node_t *n, const char *fmt, ...) {
    if (w->failed) return false;
    w->failed = true;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    error_set(w->err, HEARTH_ERR_BAD_INPUT, "%s:%d: %s", w->path, line_of(n), msg);
    return false;
}

static yaml_node_t *node(walk *w, int id) {
    return yaml_document_get_node(w->doc, id);
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A scalar that is text (not null): the text, else an error. */
static bool want_string(walk *w, const yaml_node_t *n, const char *what, const char **out) {
    const char *s = scalar(n);
    if (!s) return bad(w, n, "'%s' must be a string", what);
    if (strlen(s) != n->data.scalar.length) return bad(w, n, "'%s' holds a NUL byte", what);
    *out = s;
    return true;
}

static bool want_bool(walk *w, const yaml_node_t *n, const char *what, bool *out) {
    const char *s = scalar(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))) {
        *out = true;
        return true;
    }
    if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))) {
        *out = false;
        return true;
    }
    return bad(w, n, "'%s' must be true or false", what);
}

static bool want_int(walk *w, const yaml_node_t *n, const char *what, long long lo, long long hi,
                     long long *out) {
    const char *s = scalar(n);
    char *end = NULL;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || end == s || *end || errno || v < lo || v > hi) {
        return bad(w, n, "'%s' must be an integer from %lld to %lld, got '%.60s'", what, lo, hi,
                   s ? s : "(not a scalar)");
    }
    *out = v;
    return true;
}

/* "90", "90s", "10m", "2h", "1d" → seconds. */
static bool parse_duration(const char *s, long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno || v <= 0) return false;
    long long mul = 1;
    if (!strcmp(end, "") || !strcmp(end, "s")) {
        mul = 1;
    } else if (!strcmp(end, "m")) {
        mul = 60;
    } else if (!strcmp(end, "h")) {
        mul = 3600;
    } else if (!strcmp(end, "d")) {
        mul = 86400;
    } else {
        return false;
    }
    if (v > 366LL * 86400 / mul) return false;
    *out = v * mul;
    return true;
}

static bool want_duration(walk *w, const yaml_node_t *n, const char *what, long long *out) {
    const char *s = scalar(n);
    if (!s || !parse_duration(s, out)) {
        return bad(w, n, "'%s' must be a duration such as 90s, 10m, 2h or 1d, got '%.60s'", what,
                   s ? s : "(not a scalar)");
    }
    return true;
}

static char *dup_or_fail(walk *w, const yaml_node_t *n, const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) bad(w, n, "out of memory");
    return d;
}

/* Iterates a mapping's pairs: key text, key node, value node. */
#define FOR_PAIRS(w, map, k, kn, vn)                                                               \
    for (yaml_node_pair_t *p_ = (map)->data.mapping.pairs.start;                                   \
         p_ < (map)->data.mapping.pairs.top && !(w)->failed; p_++)                                 \
        for (yaml_node_t *kn = node(w, p_->key), *vn = node(w, p_->value); kn; kn = NULL)          \
            for (const char *k = scalar(kn) ? scalar(kn) : ""; k; k = NULL)

static size_t seq_len(const yaml_node_t *n) {
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static yaml_node_t *seq_item(walk *w, const yaml_node_t *n, size_t i) {
    return node(w, n->data.sequence.items.start[i]);
}

/* Rejects a mapping with a repeated key (libyaml keeps both). */
static bool check_unique_keys(walk *w, const yaml_node_t *map) {
    for (yaml_node_pair_t *a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top;
         a++) {
        for (yaml_node_pair_t *b = a + 1; b < map->data.mapping.pairs.top; b++) {
            const char *ka = scalar(node(w, a->key)), *kb = scalar(node(w, b->key));
            if (ka && kb && !strcmp(ka, kb)) {
                return bad(w, node(w, b->key), "the key '%.60s' appears twice", kb);
            }
        }
    }
    return true;
}

/* A YAML value as JSON (scalars typed the YAML 1.1 way for plain scalars:
 * true/false, null, integers and numbers; quoted scalars stay strings). */
static json_t *to_json(walk *w, yaml_node_t *n, int depth) {
    if (depth > 32) {
        bad(w, n, "nested too deeply");
        return NULL;
    }
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = (const char *)n->data.scalar.value;
        if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            if (!strcmp(s, "true")) return json_true();
            if (!strcmp(s, "false")) return json_false();
            if (!strcmp(s, "null") || !strcmp(s, "~") || !*s) return json_null();
            char *end = NULL;
            errno = 0;
            long long v = strtoll(s, &end, 10);
            if (end != s && !*end && !errno) return json_integer(v);
            double d = strtod(s, &end);
            if (end != s && !*end) return json_real(d);
        }
        return json_stringn(s, n->data.scalar.length);
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (size_t i = 0; i < seq_len(n) && a && !w->failed; i++) {
            json_t *v = to_json(w, seq_item(w, n, i), depth + 1);
            if (!v) break;
            json_array_append_new(a, v);
        }
        if (w->failed) {
            json_decref(a);
            return NULL;
        }
        return a;
    }
    if (!check_unique_keys(w, n)) return NULL;
    json_t *o = json_object();
    FOR_PAIRS(w, n, k, kn, vn) {
        json_t *v = to_json(w, vn, depth + 1);
        if (!v) break;
        json_object_set_new(o, k, v);
    }
    if (w->failed) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---------------------------------------------------------------- paths */

bool agents_path_is_confined(const char *rel) {
    if (!rel || !*rel || rel[0] == '/') return false;
    int depth = 0;
    const char *p = rel;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            if (--depth < 0) return false;
        } else if (len > 0 && !(len == 1 && p[0] == '.')) {
            depth++;
        }
        p += len;
        if (*p == '/') p++;
    }
    return true;
}

static char *join_path(const char *dir, const char *rel) {
    if (rel[0] == '/') return strdup(rel);
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, rel);
    return s;
}

/* ---------------------------------------------------------------- one agent */

typedef struct pending_ref {
    char *name; /* an agent name still to resolve */
    const yaml_node_t *at;
    size_t agent;
    int kind; /* 0 after trigger, 1 input, 2 callable */
    size_t index;
} pending_ref;

typedef struct loader {
    walk w;
    agents_config *cfg;
    pending_ref *refs;
    size_t n_refs, cap_refs;
    const char *default_engine; /* NULL: local */
} loader;

static bool add_ref(loader *L, const char *name, const yaml_node_t *at, size_t agent, int kind,
                    size_t index) {
    if (L->n_refs == L->cap_refs) {
        size_t cap = L->cap_refs ? 2 * L->cap_refs : 16;
        pending_ref *p = realloc(L->refs, cap * sizeof *p);
        if (!p) return bad(&L->w, at, "out of memory");
        L->refs = p;
        L->cap_refs = cap;
    }
    char *d = strdup(name);
    if (!d) return bad(&L->w, at, "out of memory");
    L->refs[L->n_refs++] = (pending_ref){d, at, agent, kind, index};
    return true;
}

static bool valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

static bool valid_engine(const char *s) {
    return !strcmp(s, "local") || !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

static bool parse_trigger(loader *L, agent_def *a, size_t ai, yaml_node_t *n, agent_trigger *t) {
    walk *w = &L->w;
    t->line = line_of(n);
    const char *type = NULL;
    yaml_node_t *val = NULL;
    if (n->type == YAML_SCALAR_NODE) {
        type = scalar(n); /* "api" or "inbox" alone */
    } else if (n->type == YAML_MAPPING_NODE &&
               n->data.mapping.pairs.top - n->data.mapping.pairs.start == 1) {
        type = scalar(node(w, n->data.mapping.pairs.start->key));
        val = node(w, n->data.mapping.pairs.start->value);
    }
    if (!type) {
        return bad(w, n,
                   "a trigger is one of 'interval: 10m', 'daily: \"07:30\"', 'inbox: \"*.json\"', "
                   "'after: AGENT' or 'api'");
    }
    const char *v = val ? scalar(val) : NULL;
    if (val && !v) return bad(w, val, "the value of trigger '%.30s' must be a scalar", type);
    const yaml_node_t *at = val ? val : n;
    if (!strcmp(type, "interval")) {
        t->type = AGENT_TRIGGER_INTERVAL;
        if (!v || !parse_duration(v, &t->every_s)) {
            return bad(w, at, "bad trigger 'interval: %.60s': use a duration such as 30s, 10m, 2h",
                       v ? v : "");
        }
    } else if (!strcmp(type, "daily")) {
        t->type = AGENT_TRIGGER_DAILY;
        int hh = -1, mm = -1, used = 0;
        if (!v || sscanf(v, "%2d:%2d%n", &hh, &mm, &used) != 2 || v[used] || hh < 0 || hh > 23 ||
            mm < 0 || mm > 59 || strlen(v) != 5) {
            return bad(w, at,
                       "bad trigger 'daily: %.60s': use a local time HH:MM such as \"07:30\"",
                       v ? v : "");
        }
        t->minute_of_day = hh * 60 + mm;
    } else if (!strcmp(type, "inbox")) {
        t->type = AGENT_TRIGGER_INBOX;
        if (!v || !*v || !strcmp(v, "true")) v = "*";
        if (strchr(v, '/')) {
            return bad(w, at, "bad trigger 'inbox: %.60s': a file name pattern without '/'", v);
        }
    } else if (!strcmp(type, "after")) {
        t->type = AGENT_TRIGGER_AFTER;
        if (!v || !valid_name(v)) return bad(w, at, "bad trigger 'after': it needs an agent name");
        if (!strcmp(v, a->name)) return bad(w, at, "agent '%s' cannot trigger itself", a->name);
        if (!add_ref(L, v, at, ai, 0, (size_t)(t - a->triggers))) return false;
    } else if (!strcmp(type, "api")) {
        t->type = AGENT_TRIGGER_API;
        if (v && strcmp(v, "true") != 0) return bad(w, at, "trigger 'api' takes no value");
        v = "";
    } else {
        return bad(w, n, "unknown trigger '%.60s': use interval, daily, inbox, after or api", type);
    }
    t->spec = dup_or_fail(w, n, v ? v : "");
    return t->spec != NULL;
}

static bool parse_input(loader *L, agent_def *a, size_t ai, yaml_node_t *n, agent_input *in) {
    walk *w = &L->w;
    in->line = line_of(n);
    if (n->type != YAML_MAPPING_NODE ||
        n->data.mapping.pairs.top - n->data.mapping.pairs.start != 1) {
        return bad(w, n, "an input is one of 'file: PATH', 'agent: NAME' or 'query: SQL'");
    }
    const char *type = scalar(node(w, n->data.mapping.pairs.start->key));
    yaml_node_t *val = node(w, n->data.mapping.pairs.start->value);
    const char *v = NULL;
    if (!type || !want_string(w, val, type ? type : "input", &v)) {
        return bad(w, n, "an input is one of 'file: PATH', 'agent: NAME' or 'query: SQL'");
    }
    if (!strcmp(type, "file")) {
        in->type = AGENT_INPUT_FILE;
        if (!agents_path_is_confined(v)) {
            return bad(w, val, "the input file '%.100s' is outside agent '%s''s data folder", v,
                       a->name);
        }
    } else if (!strcmp(type, "agent")) {
        in->type = AGENT_INPUT_AGENT;
        if (!add_ref(L, v, val, ai, 1, (size_t)(in - a->inputs))) return false;
    } else if (!strcmp(type, "query")) {
        in->type = AGENT_INPUT_QUERY;
        hearth_error qe;
        if (store_check_query(v, &qe) != HEARTH_OK) return bad(w, val, "%s", qe.msg);
    } else {
        return bad(w, n, "unknown input '%.60s': use file, agent or query", type);
    }
    in->value = dup_or_fail(w, val, v);
    return in->value != NULL;
}

static bool parse_tools(loader *L, agent_def *a, size_t ai, yaml_node_t *n) {
    walk *w = &L->w;
    if (n->type != YAML_SEQUENCE_NODE) return bad(w, n, "'tools' must be a list of tool names");
    for (size_t i = 0; i < seq_len(n) && !w->failed; i++) {
        yaml_node_t *it = seq_item(w, n, i);
        const char *name = scalar(it);
        yaml_node_t *args = NULL;
        if (it->type == YAML_MAPPING_NODE &&
            it->data.mapping.pairs.top - it->data.mapping.pairs.start == 1) {
            name = scalar(node(w, it->data.mapping.pairs.start->key));
            args = node(w, it->data.mapping.pairs.start->value);
        }
        int bit = -1;
        for (int k = 0; name && k < AGENT_N_TOOLS; k++) {
            if (!strcmp(name, agent_tool_names[k])) bit = k;
        }
        if (bit < 0) {
            return bad(w, it,
                       "unknown tool '%.60s': use read_file, list_inbox, write_output, "
                       "query_store or call_agent",
                       name ? name : "?");
        }
        a->tools |= 1u << bit;
        if (!args) continue;
        unsigned tb = 1u << bit;
        if ((tb != AGENT_TOOL_READ_FILE && tb != AGENT_TOOL_CALL_AGENT) ||
            args->type != YAML_SEQUENCE_NODE) {
            return bad(w, args,
                       "only read_file (paths) and call_agent (agent names) take a list here");
        }
        size_t m = seq_len(args);
        if (tb == AGENT_TOOL_READ_FILE) {
            a->read_paths = calloc(m ? m : 1, sizeof *a->read_paths);
            if (!a->read_paths) return bad(w, args, "out of memory");
        } else {
            a->callable = calloc(m ? m : 1, sizeof *a->callable);
            if (!a->callable) return bad(w, args, "out of memory");
        }
        for (size_t k = 0; k < m && !w->failed; k++) {
            yaml_node_t *pn = seq_item(w, args, k);
            const char *v = NULL;
            if (!want_string(w, pn, name, &v)) return false;
            if (tb == AGENT_TOOL_READ_FILE) {
                if (!agents_path_is_confined(v)) {
                    return bad(w, pn,
                               "the read_file path '%.100s' escapes agent '%s''s data folder", v,
                               a->name);
                }
                if (!(a->read_paths[a->n_read_paths++] = dup_or_fail(w, pn, v))) return false;
            } else {
                if (!add_ref(L, v, pn, ai, 2, a->n_callable++)) return false;
            }
        }
    }
    return !w->failed;
}

static bool parse_limits(walk *w, agent_def *a, yaml_node_t *n) {
    if (n->type != YAML_MAPPING_NODE) return bad(w, n, "'limits' must be a mapping");
    if (!check_unique_keys(w, n)) return false;
    long long v;
    FOR_PAIRS(w, n, k, kn, vn) {
        if (!strcmp(k, "max_tokens")) {
            if (want_int(w, vn, k, 1, 1 << 20, &v)) a->max_tokens = (uint32_t)v;
        } else if (!strcmp(k, "timeout")) {
            if (want_duration(w, vn, k, &v)) a->timeout_s = (uint32_t)v;
        } else if (!strcmp(k, "retries")) {
            if (want_int(w, vn, k, 0, 100, &v)) a->retries = (uint32_t)v;
        } else if (!strcmp(k, "tool_calls")) {
            if (want_int(w, vn, k, 0, 100, &v)) a->max_tool_calls = (uint32_t)v;
        } else if (!strcmp(k, "input_bytes")) {
            if (want_int(w, vn, k, 16, 1 << 24, &v)) a->max_input_bytes = (size_t)v;
        } else {
            bad(w, kn,
                "unknown key 'limits.%.60s': use max_tokens, timeout, retries, tool_calls or "
                "input_bytes",
                k);
        }
    }
    return !w->failed;
}

static bool parse_agent(loader *L, yaml_node_t *n, size_t ai) {
    walk *w = &L->w;
    agent_def *a = &L->cfg->agents[ai];
    a->line = line_of(n);
    a->cls = SCHED_BACKGROUND;
    a->enabled = true;
    a->max_tokens = 256;
    a->timeout_s = 300;
    a->retries = 1;
    a->max_tool_calls = 4;
    a->max_input_bytes = 8192;
    if (n->type != YAML_MAPPING_NODE) return bad(w, n, "each agent must be a mapping");
    if (!check_unique_keys(w, n)) return false;
    /* The name first: later messages use it. */
    FOR_PAIRS(w, n, k, kn, vn) {
        const char *s;
        if (strcmp(k, "name") != 0) continue;
        if (!want_string(w, vn, "name", &s)) return false;
        if (!valid_name(s)) {
            return bad(w, vn, "agent name '%.60s' must be 1-64 letters, digits, '_' or '-'", s);
        }
        if (!(a->name = dup_or_fail(w, vn, s))) return false;
    }
    if (!a->name) return bad(w, n, "an agent needs a 'name'");
    const char *engine = L->default_engine;
    yaml_node_t *schema = NULL, *output_at = NULL;
    FOR_PAIRS(w, n, k, kn, vn) {
        const char *s = NULL;
        long long v;
        if (!strcmp(k, "name")) {
            continue;
        } else if (!strcmp(k, "description")) {
            if (want_string(w, vn, k, &s)) a->description = dup_or_fail(w, vn, s);
        } else if (!strcmp(k, "prompt")) {
            if (want_string(w, vn, k, &s)) a->prompt = dup_or_fail(w, vn, s);
        } else if (!strcmp(k, "class")) {
            if (!want_string(w, vn, k, &s)) break;
            if (!strcmp(s, "tool")) {
                a->cls = SCHED_TOOL;
            } else if (!strcmp(s, "background")) {
                a->cls = SCHED_BACKGROUND;
            } else {
                bad(w, vn, "'class' must be tool or background, got '%.60s'", s);
            }
        } else if (!strcmp(k, "enabled")) {
            want_bool(w, vn, k, &a->enabled);
        } else if (!strcmp(k, "engine")) {
            if (!want_string(w, vn, k, &s)) break;
            if (!valid_engine(s)) {
                bad(w, vn, "'engine' must be local or an http:// URL such as http://host:8080/v1");
            }
            engine = s;
        } else if (!strcmp(k, "model")) {
            if (want_string(w, vn, k, &s)) a->model = dup_or_fail(w, vn, s);
        } else if (!strcmp(k, "triggers")) {
            if (vn->type != YAML_SEQUENCE_NODE) {
                bad(w, vn, "'triggers' must be a list");
                break;
            }
            size_t m = seq_len(vn);
            a->triggers = calloc(m ? m : 1, sizeof *a->triggers);
            if (!a->triggers) {
                bad(w, vn, "out of memory");
                break;
            }
            for (size_t i = 0; i < m && !w->failed; i++) {
                a->n_triggers++;
                parse_trigger(L, a, ai, seq_item(w, vn, i), &a->triggers[i]);
            }
        } else if (!strcmp(k, "inputs")) {
            if (vn->type != YAML_SEQUENCE_NODE) {
                bad(w, vn, "'inputs' must be a list");
                break;
            }
            size_t m = seq_len(vn);
            a->inputs = calloc(m ? m : 1, sizeof *a->inputs);
            if (!a->inputs) {
                bad(w, vn, "out of memory");
                break;
            }
            for (size_t i = 0; i < m && !w->failed; i++) {
                a->n_inputs++;
                parse_input(L, a, ai, seq_item(w, vn, i), &a->inputs[i]);
            }
        } else if (!strcmp(k, "output")) {
            output_at = vn;
            if (!want_string(w, vn, k, &s)) break;
            if (!strcmp(s, "text")) {
                a->output = AGENT_OUTPUT_TEXT;
            } else if (!strcmp(s, "sections")) {
                a->output = AGENT_OUTPUT_SECTIONS;
            } else if (!strcmp(s, "json_schema")) {
                a->output = AGENT_OUTPUT_JSON_SCHEMA;
            } else {
                bad(w, vn, "'output' must be text, sections or json_schema, got '%.60s'", s);
            }
        } else if (!strcmp(k, "schema")) {
            schema = vn;
        } else if (!strcmp(k, "sections")) {
            want_int(w, vn, k, 1, 64, &a->sections);
        } else if (!strcmp(k, "tools")) {
            parse_tools(L, a, ai, vn);
        } else if (!strcmp(k, "limits")) {
            parse_limits(w, a, vn);
        } else if (!strcmp(k, "request")) {
            if (vn->type != YAML_MAPPING_NODE) {
                bad(w, vn, "'request' must be a mapping of request fields");
                break;
            }
            json_t *j = to_json(w, vn, 0);
            if (j) {
                static const char *const reserved[] = {"messages", "stream", "tools", "priority"};
                for (size_t i = 0; i < 4; i++) {
                    if (json_object_get(j, reserved[i])) {
                        bad(w, vn, "'request' cannot set '%s': the runtime sets it", reserved[i]);
                    }
                }
                a->request_json = json_dumps(j, JSON_COMPACT);
                json_decref(j);
            }
        } else {
            (void)v;
            bad(w, kn,
                "unknown key '%.60s' in agent '%s' (known: name, description, prompt, class, "
                "enabled, engine, model, triggers, inputs, output, schema, sections, tools, "
                "limits, request)",
                k, a->name);
        }
    }
    if (w->failed) return false;
    if (!a->prompt || !a->prompt[0]) return bad(w, n, "agent '%s' has no 'prompt'", a->name);
    if (!a->description && !(a->description = dup_or_fail(w, n, ""))) return false;
    if (!a->model && !(a->model = dup_or_fail(w, n, ""))) return false;
    if (engine && strcmp(engine, "local") != 0 && !(a->engine = dup_or_fail(w, n, engine))) {
        return false;
    }
    if (a->output == AGENT_OUTPUT_JSON_SCHEMA) {
        if (!schema)
            return bad(w, output_at, "agent '%s': output json_schema needs a 'schema'", a->name);
        json_t *j = to_json(w, schema, 0);
        if (!j) return false;
        if (!json_is_object(j)) {
            json_decref(j);
            return bad(w, schema, "'schema' must be a mapping (a JSON schema)");
        }
        a->schema_json = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!a->schema_json) return bad(w, schema, "out of memory");
    } else if (schema) {
        return bad(w, schema, "'schema' is only for output: json_schema");
    }
    a->folder = join_path(L->cfg->data_dir, a->name);
    if (!a->folder) return bad(w, n, "out of memory");
    return true;
}

/* ---------------------------------------------------------------- references and cycles */

static bool resolve_refs(loader *L) {
    agents_config *cfg = L->cfg;
    for (size_t i = 0; i < L->n_refs; i++) {
        pending_ref *r = &L->refs[i];
        size_t idx;
        if (!agents_config_find(cfg, r->name, &idx)) {
            return bad(&L->w, r->at, "no agent named '%.64s'", r->name);
        }
        agent_def *a = &cfg->agents[r->agent];
        if (r->kind == 0) a->triggers[r->index].after = idx;
        if (r->kind == 1) a->inputs[r->index].agent = idx;
        if (r->kind == 2) a->callable[r->index] = idx;
    }
    return true;
}

/* Depth-first search over "after" edges (from an agent to the agents its
 * runs wait for); a grey node met again closes a cycle. */
static bool find_cycle(loader *L, size_t i, unsigned char *color, size_t *stack, size_t depth) {
    agents_config *cfg = L->cfg;
    color[i] = 1;
    stack[depth] = i;
    agent_def *a = &cfg->agents[i];
    for (size_t t = 0; t < a->n_triggers; t++) {
        if (a->triggers[t].type != AGENT_TRIGGER_AFTER) continue;
        size_t j = a->triggers[t].after;
        if (color[j] == 1) {
            char path[400] = "";
            size_t at = 0;
            size_t start = depth;
            while (stack[start] != j) start--;
            for (size_t k = start; k <= depth && at < sizeof path; k++) {
                at += (size_t)snprintf(path + at, sizeof path - at, "%s <- ",
                                       cfg->agents[stack[k]].name);
            }
            if (at < sizeof path) snprintf(path + at, sizeof path - at, "%s", cfg->agents[j].name);
            yaml_node_t fake;
            memset(&fake, 0, sizeof fake);
            fake.start_mark.line = (size_t)(a->triggers[t].line - 1);
            return bad(&L->w, &fake, "a cycle of agent triggers (after): %s", path);
        }
        if (color[j] == 0 && !find_cycle(L, j, color, stack, depth + 1)) return false;
    }
    color[i] = 2;
    return true;
}

static bool check_cycles(loader *L) {
    size_t n = L->cfg->n_agents;
    unsigned char *color = calloc(n ? n : 1, 1);
    size_t *stack = calloc(n ? n : 1, sizeof *stack);
    bool ok = color && stack;
    if (!ok) bad(&L->w, NULL, "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        if (color[i] == 0) ok = find_cycle(L, i, color, stack, 0);
    }
    free(color);
    free(stack);
    return ok;
}

/* ---------------------------------------------------------------- the file */

static bool parse_root(loader *L, yaml_node_t *root) {
    walk *w = &L->w;
    agents_config *cfg = L->cfg;
    if (!root || root->type != YAML_MAPPING_NODE) {
        return bad(w, root, "the file must be a mapping with an 'agents' list");
    }
    if (!check_unique_keys(w, root)) return false;
    const char *store = "agents.db", *data = "data";
    yaml_node_t *agents = NULL;
    cfg->workers = 4;
    FOR_PAIRS(w, root, k, kn, vn) {
        long long v;
        if (!strcmp(k, "store")) {
            want_string(w, vn, k, &store);
        } else if (!strcmp(k, "data")) {
            want_string(w, vn, k, &data);
        } else if (!strcmp(k, "workers")) {
            if (want_int(w, vn, k, 1, 64, &v)) cfg->workers = (unsigned)v;
        } else if (!strcmp(k, "engine")) {
            const char *s;
            if (!want_string(w, vn, k, &s)) break;
            if (!valid_engine(s)) {
                bad(w, vn, "'engine' must be local or an http:// URL such as http://host:8080/v1");
            }
            L->default_engine = s;
        } else if (!strcmp(k, "agents")) {
            agents = vn;
        } else {
            bad(w, kn, "unknown key '%.60s' (known: store, data, workers, engine, agents)", k);
        }
    }
    if (w->failed) return false;
    if (!agents) return bad(w, root, "the file has no 'agents' list");
    if (agents->type != YAML_SEQUENCE_NODE || seq_len(agents) == 0) {
        return bad(w, agents, "'agents' must be a non-empty list");
    }
    cfg->store_path = join_path(cfg->dir, store);
    cfg->data_dir = join_path(cfg->dir, data);
    if (!cfg->store_path || !cfg->data_dir) return bad(w, root, "out of memory");
    size_t m = seq_len(agents);
    cfg->agents = calloc(m, sizeof *cfg->agents);
    if (!cfg->agents) return bad(w, agents, "out of memory");
    for (size_t i = 0; i < m && !w->failed; i++) {
        cfg->n_agents++;
        yaml_node_t *an = seq_item(w, agents, i);
        if (!parse_agent(L, an, i)) return false;
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(cfg->agents[j].name, cfg->agents[i].name)) {
                return bad(w, an, "a second agent named '%s' (the first is on line %d)",
                           cfg->agents[i].name, cfg->agents[j].line);
            }
        }
    }
    return resolve_refs(L) && check_cycles(L);
}

/* The absolute folder holding path. */
static char *folder_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return NULL;
    char *slash = strrchr(copy, '/');
    const char *dir = ".";
    if (slash == copy) {
        dir = "/";
    } else if (slash) {
        *slash = '\0';
        dir = copy;
    }
    char *abs = realpath(dir, NULL);
    free(copy);
    return abs;
}

hearth_status agents_config_load(const char *path, agents_config **out, hearth_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        return error_set(err, HEARTH_ERR_IO, "%s:0: cannot open the agents file: %s", path,
                         strerror(errno));
    }
    agents_config *cfg = calloc(1, sizeof *cfg);
    loader L;
    memset(&L, 0, sizeof L);
    L.w.path = path;
    L.w.err = err;
    L.cfg = cfg;
    yaml_parser_t parser;
    yaml_document_t doc;
    bool have_parser = false, have_doc = false;
    if (!cfg || !(cfg->path = strdup(path)) || !(cfg->dir = folder_of(path))) {
        bad(&L.w, NULL, "out of memory or the folder of the file cannot be resolved");
    } else if (!yaml_parser_initialize(&parser)) {
        bad(&L.w, NULL, "out of memory");
    } else {
        have_parser = true;
        yaml_parser_set_input_file(&parser, f);
        if (!yaml_parser_load(&parser, &doc)) {
            yaml_node_t at;
            memset(&at, 0, sizeof at);
            at.start_mark = parser.problem_mark;
            bad(&L.w, &at, "not valid YAML: %s%s%s", parser.problem ? parser.problem : "?",
                parser.context ? " " : "", parser.context ? parser.context : "");
        } else {
            have_doc = true;
            L.w.doc = &doc;
            parse_root(&L, yaml_document_get_root_node(&doc));
        }
    }
    for (size_t i = 0; i < L.n_refs; i++) free(L.refs[i].name);
    free(L.refs);
    if (have_doc) yaml_document_delete(&doc);
    if (have_parser) yaml_parser_delete(&parser);
    fclose(f);
    if (L.w.failed) {
        agents_config_free(cfg);
        return err ? err->code : HEARTH_ERR_BAD_INPUT;
    }
    *out = cfg;
    return HEARTH_OK;
}

static void agent_free(agent_def *a) {
    free(a->name);
    free(a->description);
    free(a->prompt);
    free(a->engine);
    free(a->model);
    free(a->folder);
    for (size_t i = 0; i < a->n_triggers; i++) free(a->triggers[i].spec);
    free(a->triggers);
    for (size_t i = 0; i < a->n_inputs; i++) free(a->inputs[i].value);
    free(a->inputs);
    free(a->schema_json);
    for (size_t i = 0; i < a->n_read_paths; i++) free(a->read_paths[i]);
    free(a->read_paths);
    free(a->callable);
    free(a->request_json);
}

void agents_config_free(agents_config *cfg) {
    if (!cfg) return;
    for (size_t i = 0; i < cfg->n_agents; i++) agent_free(&cfg->agents[i]);
    free(cfg->agents);
    free(cfg->path);
    free(cfg->dir);
    free(cfg->store_path);
    free(cfg->data_dir);
    free(cfg);
}

const agent_def *agents_config_find(const agents_config *cfg, const char *name, size_t *index) {
    for (size_t i = 0; i < cfg->n_agents; i++) {
        if (!strcmp(cfg->agents[i].name, name)) {
            if (index) *index = i;
            return &cfg->agents[i];
        }
    }
    return NULL;
}
