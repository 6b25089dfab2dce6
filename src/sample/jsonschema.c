/* jsonschema.c — a JSON schema as a GBNF grammar of the JSON it allows.
 *
 * Each schema node becomes a rule; shared rules cover the plain types
 * (string, number, integer, boolean, null, any value).  Objects list their
 * properties in the schema's order, required ones always, optional ones
 * maybe; the commas between them are handled by two chains of rules —
 * "nothing written yet" and "something written" — one rule pair per
 * property, so the grammar stays linear in the number of properties.
 * Arrays use bounded repetition for minItems/maxItems, strings for
 * minLength/maxLength (counted in characters, as validators do; \u escapes
 * of surrogates are left out so one escape is one character).  Numbers are
 * bounded to 16 digits before and after the point and a two-digit
 * exponent: every one parses to a finite double.
 *
 * Whitespace between tokens is "", " " or a newline with up to 20 blanks,
 * so a model may pretty-print but never pad forever.
 *
 * Anything the translation cannot honour exactly is refused, naming the
 * keyword and its place in the schema, rather than silently producing
 * JSON that a validator would reject.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"
#include "util/error.h"

#define MAX_DEPTH  64
#define MAX_OUT    (16u << 20) /* bytes of grammar text */
#define MAX_REPEAT 100000      /* minItems, maxItems, minLength, maxLength */
#define MAX_REFS   4096

typedef struct conv {
    json_t *root;
    char *out;
    size_t n, cap;
    uint32_t n_rules;
    struct {
        char *ref;
        uint32_t rule;
    } refs[MAX_REFS];
    uint32_t n_refs;
    bool use_value, use_string, use_number, use_integer, use_char;
    uint32_t want_rule; /* json_schema_rule_path: the rule whose schema path to find */
    bool found;
    char found_path[512];
    hearth_error *err;
    hearth_status code;
    bool failed;
} conv;

static bool fail(conv *c, hearth_status code, const char *path, const char *fmt, ...)
    HEARTH_PRINTF(4, 5);

static bool fail(conv *c, hearth_status code, const char *path, const char *fmt, ...) {
    if (c->failed) return false;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->code = error_set(c->err, code, "%s: %s", path, msg);
    c->failed = true;
    return false;
}

static bool put(conv *c, const char *s, size_t n) {
    if (c->failed) return false;
    if (n > MAX_OUT - c->n) {
        return fail(c, HEARTH_ERR_UNSUPPORTED, "#",
                    "the schema is too large (its grammar would "
                    "exceed 16 MiB)");
    }
    if (c->n + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->n + n + 1) cap *= 2;
        char *g = realloc(c->out, cap);
        if (!g) {
            c->code = error_set(c->err, HEARTH_ERR_NOMEM, "out of memory for the grammar");
            c->failed = true;
            return false;
        }
        c->out = g;
        c->cap = cap;
    }
    memcpy(c->out + c->n, s, n);
    c->n += n;
    c->out[c->n] = '\0';
    return true;
}

static bool puts_(conv *c, const char *s) {
    return put(c, s, strlen(s));
}

static bool putf(conv *c, const char *fmt, ...) HEARTH_PRINTF(2, 3);
static bool putf(conv *c, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) return fail(c, HEARTH_ERR_INTERNAL, "#", "format");
    return put(c, buf, (size_t)n);
}

/* Writes text as a GBNF string literal. */
static bool put_literal(conv *c, const char *s, size_t n) {
    if (!put(c, "\"", 1)) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            if (!put(c, esc, 2)) return false;
        } else if (ch < 0x20 || ch == 0x7F) {
            snprintf(esc, sizeof esc, "\\x%02X", ch);
            if (!put(c, esc, 4)) return false;
        } else if (!put(c, (const char *)&ch, 1)) {
            return false;
        }
    }
    return put(c, "\"", 1);
}

/* Writes a JSON value's compact text as a GBNF literal. */
static bool put_json_literal(conv *c, const json_t *v, const char *path) {
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text) return fail(c, HEARTH_ERR_BAD_INPUT, path, "a value that cannot be written as JSON");
    bool ok = put_literal(c, text, strlen(text));
    free(text);
    return ok;
}

/* Appends "/seg" to a path for messages (JSON-pointer escaped, truncated). */
static void path_join(char *out, size_t cap, const char *base, const char *seg) {
    size_t n = (size_t)snprintf(out, cap, "%s/", base);
    if (n >= cap) return;
    for (const char *s = seg; *s && n + 3 < cap; s++) {
        if (*s == '~') {
            out[n++] = '~';
            out[n++] = '0';
        } else if (*s == '/') {
            out[n++] = '~';
            out[n++] = '1';
        } else {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
}

static uint32_t new_rule(conv *c) {
    return c->n_rules++;
}

/* Reads a non-negative integer keyword (absent: *out = dflt). */
static bool read_count(conv *c, json_t *schema, const char *key, const char *path, uint64_t dflt,
                       uint64_t *out) {
    json_t *v = json_object_get(schema, key);
    *out = dflt;
    if (!v) return true;
    double d;
    if (json_is_integer(v)) {
        d = (double)json_integer_value(v);
    } else if (json_is_real(v)) {
        d = json_real_value(v);
        if (d != (double)(long long)d) {
            return fail(c, HEARTH_ERR_BAD_INPUT, path, "%s must be a whole number", key);
        }
    } else {
        return fail(c, HEARTH_ERR_BAD_INPUT, path, "%s must be a number", key);
    }
    if (d < 0) return fail(c, HEARTH_ERR_BAD_INPUT, path, "%s must not be negative", key);
    if (d > MAX_REPEAT) {
        return fail(c, HEARTH_ERR_UNSUPPORTED, path, "%s %.0f is over the supported %d", key, d,
                    MAX_REPEAT);
    }
    *out = (uint64_t)d;
    return true;
}

/* " x{lo,hi}" for a repetition (hi UINT64_MAX: unbounded). */
static bool put_repeat(conv *c, const char *x, uint64_t lo, uint64_t hi) {
    if (hi == UINT64_MAX) {
        return putf(c, " %s{%llu,}", x, (unsigned long long)lo);
    }
    if (hi == 0) return true;
    return putf(c, " %s{%llu,%llu}", x, (unsigned long long)lo, (unsigned long long)hi);
}

/* ---------------------------------------------------------------- types */

enum {
    T_NULL = 1 << 0,
    T_BOOLEAN = 1 << 1,
    T_INTEGER = 1 << 2,
    T_NUMBER = 1 << 3,
    T_STRING = 1 << 4,
    T_ARRAY = 1 << 5,
    T_OBJECT = 1 << 6,
    T_ALL = 0x7F,
};

static unsigned type_bit(const char *s) {
    static const char *names[] = {"null",   "boolean", "integer", "number",
                                  "string", "array",   "object"};
    for (unsigned i = 0; i < 7; i++) {
        if (!strcmp(s, names[i])) return 1u << i;
    }
    return 0;
}

/* Whether v is of one of the types in mask (an integral number is an integer). */
static bool value_has_type(const json_t *v, unsigned mask) {
    switch (json_typeof(v)) {
    case JSON_NULL: return mask & T_NULL;
    case JSON_TRUE:
    case JSON_FALSE: return mask & T_BOOLEAN;
    case JSON_INTEGER: return mask & (T_INTEGER | T_NUMBER);
    case JSON_REAL: {
        double d = json_real_value(v);
        return (mask & T_NUMBER) || ((mask & T_INTEGER) && d == (double)(long long)d);
    }
    case JSON_STRING: return mask & T_STRING;
    case JSON_ARRAY: return mask & T_ARRAY;
    case JSON_OBJECT: return mask & T_OBJECT;
    }
    return false;
}

static uint64_t utf8_chars(const char *s, size_t n) {
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* ---------------------------------------------------------------- schemas */

static bool gen(conv *c, json_t *schema, const char *path, int depth, uint32_t *rule);

static const char *const annotations[] = {
    "title", "description", "default",    "examples", "$schema",   "$id", "$comment",
    "$defs", "definitions", "deprecated", "readOnly", "writeOnly", NULL};
static const char *const supported[] = {"type",  "properties", "required",  "additionalProperties",
                                        "items", "minItems",   "maxItems",  "enum",
                                        "const", "minLength",  "maxLength", "anyOf",
                                        "$ref",  NULL};

static bool in_list(const char *k, const char *const *list) {
    for (int i = 0; list[i]; i++) {
        if (!strcmp(k, list[i])) return true;
    }
    return false;
}

/* Refuses keywords hearth cannot honour; counts the constraining ones. */
static bool check_keywords(conv *c, json_t *schema, const char *path, int *n_constraints) {
    const char *k;
    json_t *v;
    *n_constraints = 0;
    json_object_foreach(schema, k, v) {
        (void)v;
        if (in_list(k, annotations) || !strncmp(k, "x-", 2)) continue;
        if (!in_list(k, supported)) {
            return fail(c, HEARTH_ERR_UNSUPPORTED, path, "keyword '%s' is not supported", k);
        }
        (*n_constraints)++;
    }
    return true;
}

/* The rule of a $ref, generating the target the first time. */
static bool gen_ref(conv *c, const char *ref, const char *path, int depth, uint32_t *rule) {
    for (uint32_t i = 0; i < c->n_refs; i++) {
        if (!strcmp(c->refs[i].ref, ref)) {
            *rule = c->refs[i].rule;
            return true;
        }
    }
    json_t *target = NULL;
    if (!strcmp(ref, "#")) {
        target = c->root;
    } else {
        const char *name = NULL;
        json_t *defs = NULL;
        if (!strncmp(ref, "#/$defs/", 8)) {
            name = ref + 8;
            defs = json_object_get(c->root, "$defs");
        } else if (!strncmp(ref, "#/definitions/", 14)) {
            name = ref + 14;
            defs = json_object_get(c->root, "definitions");
        } else {
            return fail(c, HEARTH_ERR_UNSUPPORTED, path,
                        "$ref '%.200s' is not supported (only '#', '#/$defs/NAME' and "
                        "'#/definitions/NAME')",
                        ref);
        }
        /* Unescape the JSON pointer segment (~1 is '/', ~0 is '~'). */
        char key[512];
        size_t n = 0;
        for (const char *s = name; *s && n + 1 < sizeof key; s++) {
            if (s[0] == '~' && s[1] == '1') {
                key[n++] = '/';
                s++;
            } else if (s[0] == '~' && s[1] == '0') {
                key[n++] = '~';
                s++;
            } else if (*s == '/') {
                return fail(c, HEARTH_ERR_UNSUPPORTED, path, "$ref '%.200s' goes too deep", ref);
            } else {
                key[n++] = *s;
            }
        }
        key[n] = '\0';
        target = json_is_object(defs) ? json_object_get(defs, key) : NULL;
        if (!target) return fail(c, HEARTH_ERR_BAD_INPUT, path, "$ref '%.200s' not found", ref);
    }
    if (c->n_refs == MAX_REFS) {
        return fail(c, HEARTH_ERR_UNSUPPORTED, path, "more than %d distinct $refs", MAX_REFS);
    }
    uint32_t r = new_rule(c);
    if (!c->found && c->want_rule == r) {
        snprintf(c->found_path, sizeof c->found_path, "%s", ref);
        c->found = true;
    }
    c->refs[c->n_refs].ref = strdup(ref);
    if (!c->refs[c->n_refs].ref) return fail(c, HEARTH_ERR_NOMEM, path, "out of memory");
    c->refs[c->n_refs].rule = r;
    c->n_refs++;
    uint32_t body;
    if (!gen(c, target, ref, depth + 1, &body)) return false;
    *rule = r;
    return putf(c, "r%u ::= r%u\n", r, body);
}

/* An object: the properties in order (see the file comment). */
static bool gen_object(conv *c, json_t *schema, const char *path, int depth, uint32_t *rule) {
    json_t *props = json_object_get(schema, "properties");
    json_t *req = json_object_get(schema, "required");
    json_t *ap = json_object_get(schema, "additionalProperties");
    char sub[512];
    if (props && !json_is_object(props)) {
        return fail(c, HEARTH_ERR_BAD_INPUT, path, "properties must be an object");
    }
    if (req && !json_is_array(req)) {
        return fail(c, HEARTH_ERR_BAD_INPUT, path, "required must be an array");
    }
    if (ap && !json_is_boolean(ap) && !json_is_object(ap)) {
        return fail(c, HEARTH_ERR_BAD_INPUT, path,
                    "additionalProperties must be a boolean or a "
                    "schema");
    }
    size_t n_req = req ? json_array_size(req) : 0;
    for (size_t i = 0; i < n_req; i++) {
        json_t *k = json_array_get(req, i);
        if (!json_is_string(k)) {
            return fail(c, HEARTH_ERR_BAD_INPUT, path, "required must list strings");
        }
        if (!props || !json_object_get(props, json_string_value(k))) {
            return fail(c, HEARTH_ERR_UNSUPPORTED, path,
                        "required property '%.200s' is not in properties", json_string_value(k));
        }
    }
    size_t n = props ? json_object_size(props) : 0;
    if (n == 0) {
        uint32_t r = new_rule(c);
        *rule = r;
        if (json_is_false(ap)) return putf(c, "r%u ::= \"{\" ws \"}\"\n", r);
        uint32_t val;
        if (json_is_object(ap) && json_object_size(ap) > 0) {
            path_join(sub, sizeof sub, path, "additionalProperties");
            if (!gen(c, ap, sub, depth + 1, &val)) return false;
        } else {
            c->use_value = true;
            val = UINT32_MAX;
        }
        c->use_string = true;
        char vname[32];
        if (val == UINT32_MAX) {
            snprintf(vname, sizeof vname, "value");
        } else {
            snprintf(vname, sizeof vname, "r%u", val);
        }
        return putf(c,
                    "r%u ::= \"{\" ws ( string ws \":\" ws %s ws ( \",\" ws string ws \":\" ws %s "
                    "ws )* )? \"}\"\n",
                    r, vname, vname);
    }
    /* kv_i rules first, then the two chains. */
    uint32_t base = c->n_rules;
    c->n_rules += (uint32_t)(3 * n + 3); /* r: object, kv[n], a[n+1], b[n+1] */
    uint32_t r = base, kv0 = base + 1, a0 = kv0 + (uint32_t)n, b0 = a0 + (uint32_t)n + 1;
    *rule = r;
    const char *key;
    json_t *ps;
    size_t i = 0;
    bool *required = calloc(n, sizeof *required);
    if (!required) return fail(c, HEARTH_ERR_NOMEM, path, "out of memory");
    bool ok = true;
    json_object_foreach(props, key, ps) {
        for (size_t j = 0; j < n_req; j++) {
            if (!strcmp(json_string_value(json_array_get(req, j)), key)) required[i] = true;
        }
        char p2[512];
        path_join(p2, sizeof p2, path, "properties");
        path_join(sub, sizeof sub, p2, key);
        uint32_t val;
        ok = gen(c, ps, sub, depth + 1, &val);
        if (!ok) break;
        json_t *ks = json_string(key);
        ok = ks && putf(c, "r%u ::= ", kv0 + (uint32_t)i) && put_json_literal(c, ks, sub) &&
             putf(c, " ws \":\" ws r%u ws\n", val);
        json_decref(ks);
        if (!ok) break;
        i++;
    }
    for (i = 0; ok && i < n; i++) {
        uint32_t kv = kv0 + (uint32_t)i, a = a0 + (uint32_t)i, b = b0 + (uint32_t)i;
        ok = putf(c, "r%u ::= r%u r%u%s", a, kv, b + 1, required[i] ? "" : " | ") &&
             (required[i] || putf(c, "r%u", a + 1)) && puts_(c, "\n") &&
             putf(c, "r%u ::= \",\" ws r%u r%u%s", b, kv, b + 1, required[i] ? "" : " | ") &&
             (required[i] || putf(c, "r%u", b + 1)) && puts_(c, "\n");
    }
    free(required);
    return ok && putf(c, "r%u ::= \"\"\nr%u ::= \"\"\n", a0 + (uint32_t)n, b0 + (uint32_t)n) &&
           putf(c, "r%u ::= \"{\" ws r%u \"}\"\n", r, a0);
}

static bool gen_array(conv *c, json_t *schema, const char *path, int depth, uint32_t *rule) {
    if (json_object_get(schema, "prefixItems")) {
        return fail(c, HEARTH_ERR_UNSUPPORTED, path, "keyword 'prefixItems' is not supported");
    }
    json_t *items = json_object_get(schema, "items");
    char sub[512];
    path_join(sub, sizeof sub, path, "items");
    char item[32];
    if (items && json_is_array(items)) {
        return fail(c, HEARTH_ERR_UNSUPPORTED, path, "items as an array (tuples) is not supported");
    }
    if (!items || json_is_true(items) || (json_is_object(items) && !json_object_size(items))) {
        c->use_value = true;
        snprintf(item, sizeof item, "value");
    } else {
        uint32_t v;
        if (!gen(c, items, sub, depth + 1, &v)) return false;
        snprintf(item, sizeof item, "r%u", v);
    }
    uint64_t lo, hi;
    if (!read_count(c, schema, "minItems", path, 0, &lo) ||
        !read_count(c, schema, "maxItems", path, UINT64_MAX, &hi)) {
        return false;
    }
    if (hi < lo) return fail(c, HEARTH_ERR_BAD_INPUT, path, "maxItems is below minItems");
    uint32_t r = new_rule(c), more = new_rule(c);
    *rule = r;
    if (!putf(c, "r%u ::= \",\" ws %s ws\n", more, item)) return false;
    char more_name[32];
    snprintf(more_name, sizeof more_name, "r%u", more);
    if (hi == 0) return putf(c, "r%u ::= \"[\" ws \"]\"\n", r);
    if (lo == 0) {
        return putf(c, "r%u ::= \"[\" ws ( %s ws", r, item) &&
               put_repeat(c, more_name, 0, hi == UINT64_MAX ? hi : hi - 1) &&
               puts_(c, " )? \"]\"\n");
    }
    return putf(c, "r%u ::= \"[\" ws %s ws", r, item) &&
           put_repeat(c, more_name, lo - 1, hi == UINT64_MAX ? hi : hi - 1) && puts_(c, " \"]\"\n");
}

static bool gen_string(conv *c, json_t *schema, const char *path, uint32_t *rule) {
    uint64_t lo, hi;
    if (!read_count(c, schema, "minLength", path, 0, &lo) ||
        !read_count(c, schema, "maxLength", path, UINT64_MAX, &hi)) {
        return false;
    }
    if (hi < lo) return fail(c, HEARTH_ERR_BAD_INPUT, path, "maxLength is below minLength");
    uint32_t r = new_rule(c);
    *rule = r;
    if (lo == 0 && hi == UINT64_MAX) {
        c->use_string = true;
        return putf(c, "r%u ::= string\n", r);
    }
    c->use_char = true;
    return putf(c, "r%u ::= \"\\\"\"", r) && put_repeat(c, "char", lo, hi) &&
           puts_(c, " \"\\\"\"\n");
}

/* enum / const: the values that also satisfy the type and string bounds. */
static bool gen_enum(conv *c, json_t *schema, json_t *values, const char *path, unsigned types,
                     uint32_t *rule) {
    uint64_t lo, hi;
    if (!read_count(c, schema, "minLength", path, 0, &lo) ||
        !read_count(c, schema, "maxLength", path, UINT64_MAX, &hi)) {
        return false;
    }
    uint32_t r = new_rule(c);
    *rule = r;
    if (!putf(c, "r%u ::=", r)) return false;
    size_t kept = 0;
    for (size_t i = 0; i < json_array_size(values); i++) {
        json_t *v = json_array_get(values, i);
        if (!value_has_type(v, types)) continue;
        if (json_is_string(v)) {
            uint64_t k = utf8_chars(json_string_value(v), json_string_length(v));
            if (k < lo || k > hi) continue;
        }
        if ((kept++ && !puts_(c, " |")) || !puts_(c, " ") || !put_json_literal(c, v, path)) {
            return false;
        }
    }
    if (!kept) {
        return fail(c, HEARTH_ERR_BAD_INPUT, path,
                    "no value of enum/const satisfies the schema's other keywords");
    }
    return puts_(c, "\n");
}

static bool gen_node(conv *c, json_t *schema, const char *path, int depth, uint32_t *rule);

/* Translates one schema node; remembers the path of the node that made
 * the rule json_schema_rule_path looks for (the innermost one). */
static bool gen(conv *c, json_t *schema, const char *path, int depth, uint32_t *rule) {
    uint32_t start = c->n_rules;
    bool ok = gen_node(c, schema, path, depth, rule);
    if (!c->found && c->want_rule >= start && c->want_rule < c->n_rules) {
        snprintf(c->found_path, sizeof c->found_path, "%s", path);
        c->found = true;
    }
    return ok;
}

static bool gen_node(conv *c, json_t *schema, const char *path, int depth, uint32_t *rule) {
    if (c->failed) return false;
    if (depth > MAX_DEPTH) {
        return fail(c, HEARTH_ERR_UNSUPPORTED, path, "the schema nests deeper than %d levels",
                    MAX_DEPTH);
    }
    if (json_is_false(schema)) {
        return fail(c, HEARTH_ERR_BAD_INPUT, path, "the schema false allows nothing");
    }
    if (json_is_true(schema)) {
        c->use_value = true;
        *rule = new_rule(c);
        return putf(c, "r%u ::= value\n", *rule);
    }
    if (!json_is_object(schema)) {
        return fail(c, HEARTH_ERR_BAD_INPUT, path, "a schema must be an object or a boolean");
    }
    int n_constraints;
    if (!check_keywords(c, schema, path, &n_constraints)) return false;
    json_t *ref = json_object_get(schema, "$ref");
    if (ref) {
        if (!json_is_string(ref))
            return fail(c, HEARTH_ERR_BAD_INPUT, path, "$ref must be a string");
        if (n_constraints > 1) {
            return fail(c, HEARTH_ERR_UNSUPPORTED, path,
                        "$ref beside other constraining keywords is not supported");
        }
        return gen_ref(c, json_string_value(ref), path, depth, rule);
    }
    json_t *any = json_object_get(schema, "anyOf");
    if (any) {
        if (!json_is_array(any) || json_array_size(any) == 0) {
            return fail(c, HEARTH_ERR_BAD_INPUT, path, "anyOf must be a non-empty array");
        }
        if (n_constraints > 1) {
            return fail(c, HEARTH_ERR_UNSUPPORTED, path,
                        "anyOf beside other constraining keywords is not supported");
        }
        size_t n = json_array_size(any);
        uint32_t *subs = malloc(n * sizeof *subs);
        if (!subs) return fail(c, HEARTH_ERR_NOMEM, path, "out of memory");
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            char sub[512], idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            char p2[512];
            path_join(p2, sizeof p2, path, "anyOf");
            path_join(sub, sizeof sub, p2, idx);
            ok = gen(c, json_array_get(any, i), sub, depth + 1, &subs[i]);
        }
        if (ok) {
            *rule = new_rule(c);
            ok = putf(c, "r%u ::=", *rule);
            for (size_t i = 0; i < n && ok; i++) ok = putf(c, "%s r%u", i ? " |" : "", subs[i]);
            ok = ok && puts_(c, "\n");
        }
        free(subs);
        return ok;
    }

    /* The types allowed. */
    unsigned types = 0;
    json_t *type = json_object_get(schema, "type");
    if (json_is_string(type)) {
        types = type_bit(json_string_value(type));
        if (!types) {
            return fail(c, HEARTH_ERR_BAD_INPUT, path, "unknown type '%.100s'",
                        json_string_value(type));
        }
    } else if (json_is_array(type)) {
        for (size_t i = 0; i < json_array_size(type); i++) {
            json_t *t = json_array_get(type, i);
            unsigned bit = json_is_string(t) ? type_bit(json_string_value(t)) : 0;
            if (!bit) return fail(c, HEARTH_ERR_BAD_INPUT, path, "type lists an unknown type");
            types |= bit;
        }
        if (!types) return fail(c, HEARTH_ERR_BAD_INPUT, path, "type is an empty list");
    } else if (type) {
        return fail(c, HEARTH_ERR_BAD_INPUT, path, "type must be a string or a list of strings");
    } else {
        types = T_ALL;
    }

    json_t *en = json_object_get(schema, "enum"), *cn = json_object_get(schema, "const");
    if (en && cn) {
        return fail(c, HEARTH_ERR_UNSUPPORTED, path, "enum together with const is not supported");
    }
    if (en) {
        if (!json_is_array(en) || !json_array_size(en)) {
            return fail(c, HEARTH_ERR_BAD_INPUT, path, "enum must be a non-empty array");
        }
        return gen_enum(c, schema, en, path, types, rule);
    }
    if (cn) {
        json_t *one = json_array();
        if (!one || json_array_append(one, cn)) {
            json_decref(one);
            return fail(c, HEARTH_ERR_NOMEM, path, "out of memory");
        }
        bool ok = gen_enum(c, schema, one, path, types, rule);
        json_decref(one);
        return ok;
    }
    if (!type) {
        /* No type: what the other keywords imply, else any value. */
        if (json_object_get(schema, "properties") || json_object_get(schema, "required") ||
            json_object_get(schema, "additionalProperties")) {
            types = T_OBJECT;
        } else if (json_object_get(schema, "items") || json_object_get(schema, "minItems") ||
                   json_object_get(schema, "maxItems")) {
            types = T_ARRAY;
        } else if (json_object_get(schema, "minLength") || json_object_get(schema, "maxLength")) {
            types = T_STRING;
        } else {
            c->use_value = true;
            *rule = new_rule(c);
            return putf(c, "r%u ::= value\n", *rule);
        }
    }
    uint32_t alts[8];
    int n_alts = 0;
    if (types & T_OBJECT) {
        if (!gen_object(c, schema, path, depth, &alts[n_alts++])) return false;
    }
    if (types & T_ARRAY) {
        if (!gen_array(c, schema, path, depth, &alts[n_alts++])) return false;
    }
    if (types & T_STRING) {
        if (!gen_string(c, schema, path, &alts[n_alts++])) return false;
    }
    *rule = new_rule(c);
    if (!putf(c, "r%u ::=", *rule)) return false;
    bool first = true;
    for (int i = 0; i < n_alts; i++) {
        if (!putf(c, "%s r%u", first ? "" : " |", alts[i])) return false;
        first = false;
    }
    struct {
        unsigned bit;
        const char *text;
    } simple[] = {{T_NUMBER, "number"},
                  {T_INTEGER, "integer"},
                  {T_BOOLEAN, "( \"true\" | \"false\" )"},
                  {T_NULL, "\"null\""}};
    for (int i = 0; i < 4; i++) {
        if (!(types & simple[i].bit)) continue;
        if (simple[i].bit == T_INTEGER && (types & T_NUMBER)) continue; /* number has them */
        if (simple[i].bit == T_NUMBER) c->use_number = true;
        if (simple[i].bit == T_INTEGER) c->use_integer = true;
        if (!putf(c, "%s %s", first ? "" : " |", simple[i].text)) return false;
        first = false;
    }
    return puts_(c, "\n");
}

static const char shared_rules[] = "ws ::= \"\" | \" \" | \"\\n\" [ \\t]{0,20}\n";
static const char value_rules[] =
    "value ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
    "object ::= \"{\" ws ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value ws )* "
    ")? \"}\"\n"
    "array ::= \"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\"\n";
static const char string_rules[] = "string ::= \"\\\"\" char* \"\\\"\"\n";
static const char char_rules[] =
    "char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" hex4 )\n"
    "hex4 ::= ( [0-9a-cA-CeEfF] hex hex | [dD] [0-7] hex ) hex\n"
    "hex ::= [0-9a-fA-F]\n";
static const char number_rules[] =
    "number ::= integer ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?\n";
static const char integer_rules[] = "integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} )\n";

/* Translates schema; with want_rule != UINT32_MAX only looks for its path. */
static hearth_status translate(const char *schema, size_t len, uint32_t want_rule, char **out,
                               size_t *out_len, char *path, size_t path_cap, hearth_error *err);

hearth_status json_schema_gbnf(const char *schema, size_t len, char **out, size_t *out_len,
                               hearth_error *err) {
    return translate(schema, len, UINT32_MAX, out, out_len, NULL, 0, err);
}

bool json_schema_rule_path(const char *schema, size_t len, uint32_t rule, char *path, size_t cap) {
    char *out = NULL;
    size_t n = 0;
    path[0] = '\0';
    hearth_status st = translate(schema, len, rule, &out, &n, path, cap, NULL);
    free(out);
    return st == HEARTH_OK && path[0];
}

static hearth_status translate(const char *schema, size_t len, uint32_t want_rule, char **out,
                               size_t *out_len, char *path, size_t path_cap, hearth_error *err) {
    *out = NULL;
    *out_len = 0;
    if (!schema && len) return error_set(err, HEARTH_ERR_INVALID_ARG, "JSON schema: NULL text");
    json_error_t je;
    json_t *root =
        json_loadb(schema ? schema : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root) {
        return error_set(err, HEARTH_ERR_BAD_INPUT, "JSON schema: not JSON: %s (line %d column %d)",
                         je.text, je.line, je.column);
    }
    conv *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(root);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the JSON schema");
    }
    c->root = root;
    c->err = err;
    c->want_rule = want_rule;
    uint32_t top;
    bool ok =
        gen(c, root, "#", 0, &top) && putf(c, "root ::= r%u\n", top) && puts_(c, shared_rules);
    if (ok && c->use_value) c->use_string = c->use_number = true;
    if (ok && c->use_string) c->use_char = true;
    if (ok && c->use_number) c->use_integer = true;
    if (ok && c->use_value) ok = puts_(c, value_rules);
    if (ok && c->use_string) ok = puts_(c, string_rules);
    if (ok && c->use_char) ok = puts_(c, char_rules);
    if (ok && c->use_number) ok = puts_(c, number_rules);
    if (ok && c->use_integer) ok = puts_(c, integer_rules);
    hearth_status st = HEARTH_OK;
    if (!ok) {
        st = c->code != HEARTH_OK ? c->code : HEARTH_ERR_INTERNAL;
        if (st != HEARTH_ERR_NOMEM) error_prefix(err, st, "JSON schema");
        free(c->out);
    } else {
        *out = c->out;
        *out_len = c->n;
        if (path && c->found) snprintf(path, path_cap, "%s", c->found_path);
    }
    for (uint32_t i = 0; i < c->n_refs; i++) free(c->refs[i].ref);
    free(c);
    json_decref(root);
    return st;
}
