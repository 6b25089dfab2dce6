/* grammar.c — compiling GBNF text into byte-level rules (see grammar.h).
 *
 * The parser reads llama.cpp's GBNF: `name ::= alternatives`, rules in any
 * order, a rule running until the next `name ::=` (so alternatives may be
 * spread over lines), `#` comments.  Groups, repetitions and non-ASCII
 * character classes become synthetic rules:
 *     x?       r ::= x |
 *     x*       r ::= x r |            (right recursion: the matcher's tail
 *                                       call keeps its stack flat)
 *     x+       x r*
 *     x{m,n}   x … x (m times) then n - m nested optionals
 *     [^"\\]   r ::= [ascii] | [\xC2-\xDF][\x80-\xBF] | … (UTF-8 byte ranges)
 *
 * After parsing it checks what would make matching misbehave and refuses
 * the grammar with a message naming the rule: an undefined rule, left
 * recursion (a rule that can reach itself before consuming a byte — the
 * matcher's expansion would never end), and a rule reachable from the root
 * that has no finite string (generation could never finish).  Sizes are
 * bounded (elements, rules, repetition counts, nesting) so hostile text is
 * an error, not a hang or an allocation spree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

#define MAX_ELEMS  (1u << 22) /* elements of all rules together */
#define MAX_RULES  (1u << 20)
#define MAX_REPEAT 100000 /* m and n of x{m,n} */
#define MAX_NEST   200    /* nested parentheses */
#define GRAM_ALT   3      /* builder only: separates alternatives of a body */

typedef struct brule {
    const char *name; /* into the source, or NULL for a synthetic rule */
    uint32_t name_len;
    uint32_t parent; /* synthetic: the named rule it was made for */
    bool defined;
    size_t used_at;  /* source offset of the first reference */
    gram_elem *body; /* alternatives separated by GRAM_ALT */
    uint32_t n_body, cap_body;
} brule;

typedef struct builder {
    const char *src;
    size_t len, pos;
    brule *rules;
    uint32_t n_rules, cap_rules;
    uint64_t (*sets)[4];
    uint32_t n_sets, cap_sets;
    uint32_t *name_ht; /* (ht_cap) named rule indices by name hash, UINT32_MAX = empty */
    uint32_t *set_ht;  /* (ht_cap) set indices by content hash */
    uint32_t ht_cap;   /* power of two, > 2 x (rules + sets) */
    uint64_t n_elems;  /* elements in all bodies, for the size bound */
    uint32_t current;  /* the named rule being parsed (for synthetic names) */
    uint32_t any_char; /* rule of ".", or UINT32_MAX before first use */
    int nest;
    hearth_error *err;
    hearth_status code; /* of the first failure */
    bool failed;
} builder;

/* ---------------------------------------------------------------- errors */

static void where(const builder *b, size_t at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at && i < b->len; i++) {
        if (b->src[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static bool fail_at(builder *b, size_t at, const char *what) {
    if (b->failed) return false;
    int line, col;
    where(b, at, &line, &col);
    b->code = error_set(b->err, HEARTH_ERR_BAD_INPUT, "grammar: %s at line %d column %d", what,
                        line, col);
    b->failed = true;
    return false;
}

static bool fail_nomem(builder *b) {
    if (!b->failed) b->code = error_set(b->err, HEARTH_ERR_NOMEM, "grammar: out of memory");
    b->failed = true;
    return false;
}

static bool fail_size(builder *b) {
    if (!b->failed) {
        b->code = error_set(b->err, HEARTH_ERR_BAD_INPUT,
                            "grammar: too large (more than %u elements or %u rules after expanding "
                            "repetitions)",
                            MAX_ELEMS, MAX_RULES);
    }
    b->failed = true;
    return false;
}

/* Writes a rule's name for messages ("value" or "value (group 3)"). */
static void rule_name(const builder *b, uint32_t r, char *out, size_t cap) {
    const brule *x = &b->rules[r];
    if (x->name) {
        snprintf(out, cap, "%.*s", (int)(x->name_len < 200 ? x->name_len : 200), x->name);
    } else {
        const brule *p = &b->rules[x->parent];
        snprintf(out, cap, "%.*s (a group or repetition inside it)",
                 (int)(p->name_len < 200 ? p->name_len : 200), p->name ? p->name : "?");
    }
}

/* ---------------------------------------------------------------- building */

static bool body_push(builder *b, brule *r, uint32_t type, uint32_t value) {
    if (b->n_elems >= MAX_ELEMS) return fail_size(b);
    if (r->n_body == r->cap_body) {
        uint32_t cap = r->cap_body ? r->cap_body * 2 : 8;
        gram_elem *n = realloc(r->body, cap * sizeof *n);
        if (!n) return fail_nomem(b);
        r->body = n;
        r->cap_body = cap;
    }
    r->body[r->n_body].type = type;
    r->body[r->n_body].value = value;
    r->n_body++;
    b->n_elems++;
    return true;
}

/* Appends a new rule; returns its index or UINT32_MAX. */
static uint32_t rule_add(builder *b, const char *name, uint32_t name_len) {
    if (b->n_rules >= MAX_RULES) {
        fail_size(b);
        return UINT32_MAX;
    }
    if (b->n_rules == b->cap_rules) {
        uint32_t cap = b->cap_rules ? b->cap_rules * 2 : 32;
        brule *n = realloc(b->rules, cap * sizeof *n);
        if (!n) {
            fail_nomem(b);
            return UINT32_MAX;
        }
        b->rules = n;
        b->cap_rules = cap;
    }
    brule *r = &b->rules[b->n_rules];
    memset(r, 0, sizeof *r);
    r->name = name;
    r->name_len = name_len;
    r->parent = name ? b->n_rules : b->current;
    r->used_at = SIZE_MAX;
    return b->n_rules++;
}

static uint32_t synthetic(builder *b) {
    uint32_t r = rule_add(b, NULL, 0);
    if (r != UINT32_MAX) b->rules[r].defined = true;
    return r;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

/* Keeps both hash tables under half full, rebuilding them when they grow. */
static bool ht_reserve(builder *b) {
    uint64_t need = 2 * ((uint64_t)b->n_rules + b->n_sets + 2);
    if (b->ht_cap >= need) return true;
    uint32_t cap = b->ht_cap ? b->ht_cap : 256;
    while (cap < need) cap *= 2;
    uint32_t *names = malloc(cap * sizeof *names), *sets = malloc(cap * sizeof *sets);
    if (!names || !sets) {
        free(names);
        free(sets);
        return fail_nomem(b);
    }
    memset(names, 0xff, cap * sizeof *names);
    memset(sets, 0xff, cap * sizeof *sets);
    for (uint32_t r = 0; r < b->n_rules; r++) {
        if (!b->rules[r].name) continue;
        uint32_t i = (uint32_t)hash_bytes(b->rules[r].name, b->rules[r].name_len) & (cap - 1);
        while (names[i] != UINT32_MAX) i = (i + 1) & (cap - 1);
        names[i] = r;
    }
    for (uint32_t k = 0; k < b->n_sets; k++) {
        uint32_t i = (uint32_t)hash_bytes(b->sets[k], sizeof b->sets[k]) & (cap - 1);
        while (sets[i] != UINT32_MAX) i = (i + 1) & (cap - 1);
        sets[i] = k;
    }
    free(b->name_ht);
    free(b->set_ht);
    b->name_ht = names;
    b->set_ht = sets;
    b->ht_cap = cap;
    return true;
}

static uint32_t rule_find_or_add(builder *b, const char *name, uint32_t name_len) {
    if (!ht_reserve(b)) return UINT32_MAX;
    uint32_t i = (uint32_t)hash_bytes(name, name_len) & (b->ht_cap - 1);
    for (; b->name_ht[i] != UINT32_MAX; i = (i + 1) & (b->ht_cap - 1)) {
        const brule *r = &b->rules[b->name_ht[i]];
        if (r->name_len == name_len && !memcmp(r->name, name, name_len)) return b->name_ht[i];
    }
    uint32_t r = rule_add(b, name, name_len);
    if (r != UINT32_MAX) b->name_ht[i] = r;
    return r;
}

/* Index of a byte set equal to s, added when new. */
static uint32_t set_index(builder *b, const uint64_t s[4]) {
    if (!ht_reserve(b)) return UINT32_MAX;
    uint32_t slot = (uint32_t)hash_bytes(s, 4 * sizeof *s) & (b->ht_cap - 1);
    for (; b->set_ht[slot] != UINT32_MAX; slot = (slot + 1) & (b->ht_cap - 1)) {
        if (!memcmp(b->sets[b->set_ht[slot]], s, sizeof b->sets[0])) return b->set_ht[slot];
    }
    if (b->n_sets == b->cap_sets) {
        uint32_t cap = b->cap_sets ? b->cap_sets * 2 : 64;
        if (cap > MAX_ELEMS) {
            fail_size(b);
            return UINT32_MAX;
        }
        uint64_t(*n)[4] = realloc(b->sets, cap * sizeof *n);
        if (!n) {
            fail_nomem(b);
            return UINT32_MAX;
        }
        b->sets = n;
        b->cap_sets = cap;
    }
    memcpy(b->sets[b->n_sets], s, sizeof b->sets[0]);
    b->set_ht[slot] = b->n_sets;
    return b->n_sets++;
}

static bool push_range(builder *b, brule *r, uint8_t lo, uint8_t hi) {
    uint64_t s[4] = {0, 0, 0, 0};
    for (unsigned c = lo; c <= hi; c++) s[c >> 6] |= 1ull << (c & 63);
    uint32_t i = set_index(b, s);
    return i != UINT32_MAX && body_push(b, r, GRAM_BYTES, i);
}

/* ---------------------------------------------------------------- lexing */

static bool at_end(const builder *b) {
    return b->pos >= b->len;
}
static char peek(const builder *b) {
    return b->pos < b->len ? b->src[b->pos] : '\0';
}

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* Skips blanks, newlines and comments. */
static void skip_space(builder *b) {
    while (!at_end(b)) {
        char c = peek(b);
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            b->pos++;
        } else if (c == '#') {
            while (!at_end(b) && peek(b) != '\n') b->pos++;
        } else {
            break;
        }
    }
}

/* Whether a rule definition ("name ::=") starts at the current position. */
static bool at_definition(builder *b) {
    size_t p = b->pos;
    if (p >= b->len || !is_name_char(b->src[p])) return false;
    while (p < b->len && is_name_char(b->src[p])) p++;
    while (p < b->len && (b->src[p] == ' ' || b->src[p] == '\t')) p++;
    return b->len - p >= 3 && !memcmp(b->src + p, "::=", 3);
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes one UTF-8 character of the source; false on malformed bytes. */
static bool decode_utf8(builder *b, uint32_t *cp) {
    int k = utf8_classify((const uint8_t *)b->src + b->pos, b->len - b->pos, cp);
    if (k <= 0) return fail_at(b, b->pos, "malformed UTF-8");
    b->pos += (size_t)k;
    return true;
}

/* Reads one character of a literal or class, escapes decoded, into *cp. */
static bool read_char(builder *b, uint32_t *cp) {
    if (at_end(b)) return fail_at(b, b->pos, "unexpected end of the grammar");
    if (peek(b) != '\\') return decode_utf8(b, cp);
    size_t at = b->pos;
    b->pos++;
    if (at_end(b)) return fail_at(b, at, "unfinished escape");
    char c = b->src[b->pos++];
    int digits = 0;
    switch (c) {
    case 'n': *cp = '\n'; return true;
    case 'r': *cp = '\r'; return true;
    case 't': *cp = '\t'; return true;
    case '0': *cp = 0; return true;
    case '\\':
    case '"':
    case '\'':
    case '[':
    case ']':
    case '-':
    case '^':
    case '/': *cp = (uint8_t)c; return true;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    default: return fail_at(b, at, "unknown escape");
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int d = at_end(b) ? -1 : hex_digit(peek(b));
        if (d < 0) return fail_at(b, at, "bad hexadecimal escape");
        v = v * 16 + (uint32_t)d;
        b->pos++;
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        return fail_at(b, at, "escape is not a Unicode scalar value");
    }
    *cp = v;
    return true;
}

/* ---------------------------------------------------------------- classes */

typedef struct cp_range {
    uint32_t lo, hi;
} cp_range;

static int cmp_range(const void *x, const void *y) {
    const cp_range *a = x, *b = y;
    return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* Emits the UTF-8 byte-range sequences covering [lo, hi] (one encoded
 * length, no surrogates) as alternatives of rule r, after Rust's
 * utf8-ranges: split until every byte position is a contiguous range. */
static bool emit_utf8_ranges(builder *b, uint32_t r, uint32_t lo, uint32_t hi, bool *first) {
    static const uint32_t bounds[3] = {0x7F, 0x7FF, 0xFFFF};
    for (int i = 0; i < 3; i++) {
        if (lo <= bounds[i] && hi > bounds[i]) {
            return emit_utf8_ranges(b, r, lo, bounds[i], first) &&
                   emit_utf8_ranges(b, r, bounds[i] + 1, hi, first);
        }
    }
    for (int i = 1; i < 4; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0) {
                return emit_utf8_ranges(b, r, lo, lo | m, first) &&
                       emit_utf8_ranges(b, r, (lo | m) + 1, hi, first);
            }
            if ((hi & m) != m) {
                return emit_utf8_ranges(b, r, lo, (hi & ~m) - 1, first) &&
                       emit_utf8_ranges(b, r, hi & ~m, hi, first);
            }
        }
    }
    uint8_t a[4], z[4];
    size_t n = utf8_encode(lo, a);
    utf8_encode(hi, z);
    if (!*first && !body_push(b, &b->rules[r], GRAM_ALT, 0)) return false;
    *first = false;
    for (size_t k = 0; k < n; k++) {
        if (!push_range(b, &b->rules[r], a[k], z[k])) return false;
    }
    return true;
}

/* Sorted, merged code point ranges (no surrogates) as matching elements:
 * sets *only_ascii and fills ascii when they are all ASCII (one byte set
 * does), else makes a rule of UTF-8 alternatives, index in *out_ref. */
static bool emit_class(builder *b, const cp_range *rg, size_t n, uint32_t *out_ref,
                       uint64_t ascii[4], bool *only_ascii) {
    memset(ascii, 0, 4 * sizeof *ascii);
    bool wide = false;
    for (size_t i = 0; i < n; i++) {
        for (uint32_t c = rg[i].lo; c <= rg[i].hi && c < 0x80; c++)
            ascii[c >> 6] |= 1ull << (c & 63);
        if (rg[i].hi >= 0x80) wide = true;
    }
    *only_ascii = !wide;
    if (!wide) return true;
    uint32_t r = synthetic(b);
    if (r == UINT32_MAX) return false;
    bool first = true;
    if (ascii[0] | ascii[1]) {
        uint32_t si = set_index(b, ascii);
        if (si == UINT32_MAX || !body_push(b, &b->rules[r], GRAM_BYTES, si)) return false;
        first = false;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t lo = rg[i].lo < 0x80 ? 0x80 : rg[i].lo;
        if (rg[i].hi < 0x80) continue;
        if (!emit_utf8_ranges(b, r, lo, rg[i].hi, &first)) return false;
    }
    *out_ref = r;
    return true;
}

/* Sorts and merges ranges in place, removes the surrogates; returns the new count. */
static size_t normalize_ranges(cp_range *rg, size_t n) {
    qsort(rg, n, sizeof *rg, cmp_range);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (w && rg[i].lo <= rg[w - 1].hi + 1) {
            if (rg[i].hi > rg[w - 1].hi) rg[w - 1].hi = rg[i].hi;
        } else {
            rg[w++] = rg[i];
        }
    }
    /* Cut out U+D800..U+DFFF (may split one range in two: room for one more). */
    size_t out = 0;
    cp_range tmp[2];
    for (size_t i = 0; i < w; i++) {
        cp_range x = rg[i];
        size_t k = 0;
        if (x.hi < 0xD800 || x.lo > 0xDFFF) {
            tmp[k++] = x;
        } else {
            if (x.lo < 0xD800) tmp[k++] = (cp_range){x.lo, 0xD7FF};
            if (x.hi > 0xDFFF) tmp[k++] = (cp_range){0xE000, x.hi};
        }
        for (size_t j = 0; j < k; j++) rg[out++] = tmp[j];
    }
    return out;
}

/* The rule index for "." (any character), made once. */
static uint32_t any_char_rule(builder *b) {
    if (b->any_char != UINT32_MAX) return b->any_char;
    cp_range rg[3] = {{0, 0x10FFFF}, {0, 0}, {0, 0}};
    size_t n = normalize_ranges(rg, 1);
    uint32_t ref = UINT32_MAX;
    uint64_t ascii[4];
    bool only;
    if (!emit_class(b, rg, n, &ref, ascii, &only)) return UINT32_MAX;
    b->any_char = ref;
    return ref;
}

/* Parses "[...]" at b->pos into elements appended to item. */
static bool parse_class(builder *b, brule *item) {
    size_t start = b->pos;
    b->pos++; /* '[' */
    bool negate = false;
    if (peek(b) == '^') {
        negate = true;
        b->pos++;
    }
    size_t cap = 16, n = 0;
    cp_range *rg = malloc((cap + 1) * sizeof *rg);
    if (!rg) return fail_nomem(b);
    bool ok = true;
    for (;;) {
        if (at_end(b)) {
            ok = fail_at(b, start, "unterminated character class");
            break;
        }
        if (peek(b) == ']') {
            b->pos++;
            break;
        }
        uint32_t lo, hi;
        if (!read_char(b, &lo)) {
            ok = false;
            break;
        }
        hi = lo;
        if (peek(b) == '-' && b->pos + 1 < b->len && b->src[b->pos + 1] != ']') {
            b->pos++;
            if (!read_char(b, &hi)) {
                ok = false;
                break;
            }
            if (hi < lo) {
                ok = fail_at(b, start, "character range out of order");
                break;
            }
        }
        if (n + 2 >= cap) {
            cp_range *g = realloc(rg, (cap * 2 + 1) * sizeof *g);
            if (!g) {
                ok = fail_nomem(b);
                break;
            }
            rg = g;
            cap *= 2;
        }
        rg[n++] = (cp_range){lo, hi};
    }
    if (ok) {
        n = normalize_ranges(rg, n);
        if (negate) { /* complement in [0, 0x10FFFF] */
            cp_range *c = malloc((n + 2) * sizeof *c);
            if (!c) {
                free(rg);
                return fail_nomem(b);
            }
            size_t k = 0;
            uint32_t next = 0;
            for (size_t i = 0; i < n; i++) {
                if (rg[i].lo > next) c[k++] = (cp_range){next, rg[i].lo - 1};
                next = rg[i].hi + 1;
            }
            if (next <= 0x10FFFF) c[k++] = (cp_range){next, 0x10FFFF};
            free(rg);
            rg = c;
            n = normalize_ranges(rg, k);
        }
        if (n == 0) {
            ok = fail_at(b, start, "character class matches nothing");
        } else {
            uint32_t ref = UINT32_MAX;
            uint64_t ascii[4];
            bool only;
            ok = emit_class(b, rg, n, &ref, ascii, &only);
            if (ok && only) {
                uint32_t si = set_index(b, ascii);
                ok = si != UINT32_MAX && body_push(b, item, GRAM_BYTES, si);
            } else if (ok) {
                ok = body_push(b, item, GRAM_REF, ref);
            }
        }
    }
    free(rg);
    return ok;
}

/* ---------------------------------------------------------------- parsing */

static bool parse_alternatives(builder *b, uint32_t rule);

/* Moves item's elements into rule r as its whole body. */
static bool body_take(builder *b, uint32_t r, brule *item) {
    for (uint32_t i = 0; i < item->n_body; i++) {
        if (!body_push(b, &b->rules[r], item->body[i].type, item->body[i].value)) return false;
    }
    return true;
}

/* Appends x (one element) to rule r count times. */
static bool push_copies(builder *b, uint32_t r, gram_elem x, uint32_t count) {
    for (uint32_t i = 0; i < count; i++) {
        if (!body_push(b, &b->rules[r], x.type, x.value)) return false;
    }
    return true;
}

/* A rule "s ::= x s |": zero or more x. */
static uint32_t star_rule(builder *b, gram_elem x) {
    uint32_t s = synthetic(b);
    if (s == UINT32_MAX) return s;
    if (!body_push(b, &b->rules[s], x.type, x.value) || !body_push(b, &b->rules[s], GRAM_REF, s) ||
        !body_push(b, &b->rules[s], GRAM_ALT, 0)) {
        return UINT32_MAX;
    }
    return s;
}

/* Parses an optional repetition operator after an item whose elements are
 * in item, and appends the result to rule target. */
static bool apply_repeat(builder *b, uint32_t target, brule *item, size_t item_at) {
    char c = peek(b);
    if (c != '*' && c != '+' && c != '?' && c != '{') return body_take(b, target, item);
    size_t op_at = b->pos;
    uint32_t m = 0, n = 0;
    bool unbounded = false;
    if (c == '*') {
        unbounded = true;
        b->pos++;
    } else if (c == '+') {
        m = 1;
        unbounded = true;
        b->pos++;
    } else if (c == '?') {
        n = 1;
        b->pos++;
    } else {
        b->pos++;
        skip_space(b);
        uint64_t v = 0;
        bool digits = false;
        while (!at_end(b) && peek(b) >= '0' && peek(b) <= '9') {
            v = v * 10 + (uint64_t)(peek(b) - '0');
            if (v > MAX_REPEAT) return fail_at(b, op_at, "repetition count over 100000");
            digits = true;
            b->pos++;
        }
        if (!digits) return fail_at(b, op_at, "expected a number in {m,n}");
        m = (uint32_t)v;
        n = m;
        skip_space(b);
        if (peek(b) == ',') {
            b->pos++;
            skip_space(b);
            if (peek(b) == '}') {
                unbounded = true;
            } else {
                v = 0;
                digits = false;
                while (!at_end(b) && peek(b) >= '0' && peek(b) <= '9') {
                    v = v * 10 + (uint64_t)(peek(b) - '0');
                    if (v > MAX_REPEAT) return fail_at(b, op_at, "repetition count over 100000");
                    digits = true;
                    b->pos++;
                }
                if (!digits) return fail_at(b, op_at, "expected a number in {m,n}");
                n = (uint32_t)v;
                if (n < m) return fail_at(b, op_at, "repetition {m,n} with n < m");
            }
            skip_space(b);
        }
        if (peek(b) != '}') return fail_at(b, op_at, "expected '}'");
        b->pos++;
    }
    (void)item_at;
    /* One element stands for the item: itself, or a rule holding it. */
    gram_elem x;
    if (item->n_body == 1) {
        x = item->body[0];
    } else {
        uint32_t r = synthetic(b);
        if (r == UINT32_MAX || !body_take(b, r, item)) return false;
        x.type = GRAM_REF;
        x.value = r;
    }
    if (!push_copies(b, target, x, m)) return false;
    if (unbounded) {
        uint32_t s = star_rule(b, x);
        return s != UINT32_MAX && body_push(b, &b->rules[target], GRAM_REF, s);
    }
    if (n == m) return true;
    /* n - m nested optionals: o_1 ::= x | ; o_k ::= x o_{k-1} | */
    uint32_t prev = UINT32_MAX;
    for (uint32_t k = 0; k < n - m; k++) {
        uint32_t o = synthetic(b);
        if (o == UINT32_MAX) return false;
        if (!body_push(b, &b->rules[o], x.type, x.value)) return false;
        if (prev != UINT32_MAX && !body_push(b, &b->rules[o], GRAM_REF, prev)) return false;
        if (!body_push(b, &b->rules[o], GRAM_ALT, 0)) return false;
        prev = o;
    }
    return body_push(b, &b->rules[target], GRAM_REF, prev);
}

/* Parses one item (with its repetition) and appends it to rule target. */
static bool parse_item(builder *b, uint32_t target) {
    brule item;
    memset(&item, 0, sizeof item);
    size_t at = b->pos;
    char c = peek(b);
    bool ok = true;
    if (c == '"') {
        b->pos++;
        for (;;) {
            if (at_end(b)) {
                ok = fail_at(b, at, "unterminated string literal");
                break;
            }
            if (peek(b) == '"') {
                b->pos++;
                break;
            }
            uint32_t cp;
            if (!read_char(b, &cp)) {
                ok = false;
                break;
            }
            uint8_t enc[4];
            size_t k = utf8_encode(cp, enc);
            for (size_t i = 0; i < k && ok; i++) ok = push_range(b, &item, enc[i], enc[i]);
            if (!ok) break;
        }
    } else if (c == '[') {
        ok = parse_class(b, &item);
    } else if (c == '.') {
        b->pos++;
        uint32_t r = any_char_rule(b);
        ok = r != UINT32_MAX && body_push(b, &item, GRAM_REF, r);
    } else if (c == '(') {
        if (++b->nest > MAX_NEST) {
            ok = fail_at(b, at, "parentheses nested too deep");
        } else {
            b->pos++;
            uint32_t r = synthetic(b);
            ok = r != UINT32_MAX && parse_alternatives(b, r);
            if (ok) {
                skip_space(b);
                if (peek(b) != ')') {
                    ok = fail_at(b, at, "unclosed '('");
                } else {
                    b->pos++;
                    ok = body_push(b, &item, GRAM_REF, r);
                }
            }
            b->nest--;
        }
    } else if (is_name_char(c)) {
        size_t s = b->pos;
        while (!at_end(b) && is_name_char(peek(b))) b->pos++;
        uint32_t r = rule_find_or_add(b, b->src + s, (uint32_t)(b->pos - s));
        ok = r != UINT32_MAX;
        if (ok && b->rules[r].used_at == SIZE_MAX) b->rules[r].used_at = s;
        ok = ok && body_push(b, &item, GRAM_REF, r);
    } else {
        ok = fail_at(b, at, "expected a literal, a class, a rule name or '('");
    }
    if (ok) ok = apply_repeat(b, target, &item, at);
    free(item.body);
    return ok;
}

/* Parses alternatives into rule r's body, up to ')', the end or the next
 * rule definition. */
static bool parse_alternatives(builder *b, uint32_t r) {
    for (;;) {
        for (;;) {
            skip_space(b);
            char c = peek(b);
            if (at_end(b) || c == '|' || c == ')' || at_definition(b)) break;
            if (!parse_item(b, r)) return false;
        }
        if (peek(b) != '|') return true;
        b->pos++;
        if (!body_push(b, &b->rules[r], GRAM_ALT, 0)) return false;
    }
}

static bool parse_grammar(builder *b) {
    skip_space(b);
    if (at_end(b)) return fail_at(b, b->pos, "empty grammar");
    while (!at_end(b)) {
        size_t s = b->pos;
        while (!at_end(b) && is_name_char(peek(b))) b->pos++;
        if (b->pos == s) return fail_at(b, s, "expected a rule name");
        uint32_t name_len = (uint32_t)(b->pos - s);
        while (!at_end(b) && (peek(b) == ' ' || peek(b) == '\t')) b->pos++;
        if (b->len - b->pos < 3 || memcmp(b->src + b->pos, "::=", 3) != 0) {
            return fail_at(b, b->pos, "expected '::='");
        }
        b->pos += 3;
        uint32_t r = rule_find_or_add(b, b->src + s, name_len);
        if (r == UINT32_MAX) return false;
        if (b->rules[r].defined) return fail_at(b, s, "rule defined twice");
        b->rules[r].defined = true;
        b->current = r;
        if (!parse_alternatives(b, r)) return false;
        skip_space(b);
        if (peek(b) == ')') return fail_at(b, b->pos, "unmatched ')'");
    }
    return true;
}

/* ---------------------------------------------------------------- analysis */

typedef struct pq_item {
    uint32_t value, rule;
} pq_item;

static void pq_push(pq_item *h, uint32_t *n, pq_item x) {
    uint32_t i = (*n)++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (h[p].value <= x.value) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static pq_item pq_pop(pq_item *h, uint32_t *n) {
    pq_item top = h[0], x = h[--(*n)];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1].value < h[c].value) c++;
        if (h[c].value >= x.value) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = x;
    return top;
}

static uint32_t sat_add(uint32_t a, uint32_t b) {
    return a == GRAM_INF || b == GRAM_INF || a > GRAM_INF - b ? GRAM_INF : a + b;
}

/* Fewest bytes of each rule, by Knuth's generalisation of Dijkstra: an
 * alternative's value is known once all the rules it refers to are. */
static bool compute_min(gram_rules *g, builder *b) {
    uint32_t n_alts = g->alt_first[g->n_rules];
    uint32_t *pending = calloc(n_alts ? n_alts : 1, sizeof *pending);
    uint32_t *sum = calloc(n_alts ? n_alts : 1, sizeof *sum);
    uint32_t *alt_rule = malloc((n_alts ? n_alts : 1) * sizeof *alt_rule);
    uint32_t *use_first = calloc((size_t)g->n_rules + 1, sizeof *use_first);
    uint32_t *elem_alt = malloc((g->n_elem ? g->n_elem : 1) * sizeof *elem_alt);
    bool *done = calloc(g->n_rules ? g->n_rules : 1, sizeof *done);
    /* Heap: one entry per alternative at most, plus re-pushes. */
    pq_item *heap = malloc(((size_t)n_alts + 1) * sizeof *heap);
    uint32_t n_refs = 0;
    for (uint32_t i = 0; i < g->n_elem; i++) n_refs += g->elem[i].type == GRAM_REF;
    uint32_t *uses = malloc((n_refs ? n_refs : 1) * sizeof *uses);
    bool ok = pending && sum && alt_rule && use_first && elem_alt && done && heap && uses;
    if (!ok) {
        fail_nomem(b);
    } else {
        for (uint32_t r = 0; r < g->n_rules; r++) {
            for (uint32_t a = g->alt_first[r]; a < g->alt_first[r + 1]; a++) {
                alt_rule[a] = r;
                for (uint32_t p = g->alts[a]; g->elem[p].type != GRAM_END; p++) {
                    elem_alt[p] = a;
                    if (g->elem[p].type == GRAM_REF) {
                        pending[a]++;
                        use_first[g->elem[p].value + 1]++;
                    } else {
                        sum[a] = sat_add(sum[a], 1);
                    }
                }
            }
        }
        for (uint32_t r = 0; r < g->n_rules; r++) use_first[r + 1] += use_first[r];
        uint32_t *fill = calloc(g->n_rules ? g->n_rules : 1, sizeof *fill);
        if (!fill) {
            ok = fail_nomem(b);
        } else {
            for (uint32_t p = 0; p < g->n_elem; p++) {
                if (g->elem[p].type != GRAM_REF) continue;
                uint32_t r = g->elem[p].value;
                uses[use_first[r] + fill[r]++] = elem_alt[p];
            }
            free(fill);
            uint32_t n_heap = 0;
            for (uint32_t a = 0; a < n_alts; a++) {
                if (!pending[a]) pq_push(heap, &n_heap, (pq_item){sum[a], alt_rule[a]});
            }
            for (uint32_t r = 0; r < g->n_rules; r++) g->rule_min[r] = GRAM_INF;
            while (n_heap) {
                pq_item it = pq_pop(heap, &n_heap);
                if (done[it.rule]) continue;
                done[it.rule] = true;
                g->rule_min[it.rule] = it.value;
                for (uint32_t u = use_first[it.rule]; u < use_first[it.rule + 1]; u++) {
                    uint32_t a = uses[u];
                    sum[a] = sat_add(sum[a], it.value);
                    if (--pending[a] == 0 && !done[alt_rule[a]]) {
                        pq_push(heap, &n_heap, (pq_item){sum[a], alt_rule[a]});
                    }
                }
            }
        }
    }
    free(pending);
    free(sum);
    free(alt_rule);
    free(use_first);
    free(elem_alt);
    free(done);
    free(heap);
    free(uses);
    return ok;
}

/* Refuses left recursion: an edge r -> s when s can come first in r (after
 * elements that can be empty); a cycle means expansion never ends. */
static bool check_left_recursion(gram_rules *g, builder *b) {
    uint32_t n = g->n_rules;
    uint8_t *color = calloc(n ? n : 1, 1); /* 0 new, 1 on the path, 2 finished */
    uint32_t *stack_r = malloc((n ? n : 1) * sizeof *stack_r);
    uint32_t *stack_a = malloc((n ? n : 1) * sizeof *stack_a); /* next alternative */
    uint32_t *stack_p = malloc((n ? n : 1) * sizeof *stack_p); /* next position in it */
    bool ok = color && stack_r && stack_a && stack_p;
    if (!ok) fail_nomem(b);
    for (uint32_t start = 0; ok && start < n; start++) {
        if (color[start]) continue;
        uint32_t depth = 0;
        stack_r[0] = start;
        stack_a[0] = g->alt_first[start];
        stack_p[0] = UINT32_MAX;
        color[start] = 1;
        depth = 1;
        while (depth && ok) {
            uint32_t d = depth - 1, r = stack_r[d];
            /* Find the next left-edge of r. */
            uint32_t next = UINT32_MAX;
            while (stack_a[d] < g->alt_first[r + 1] && next == UINT32_MAX) {
                uint32_t p = stack_p[d] == UINT32_MAX ? g->alts[stack_a[d]] : stack_p[d];
                const gram_elem *e = &g->elem[p];
                if (e->type == GRAM_REF) {
                    next = e->value;
                    /* Past it only while it can be empty. */
                    if (g->rule_min[e->value] == 0) {
                        stack_p[d] = p + 1;
                    } else {
                        stack_a[d]++;
                        stack_p[d] = UINT32_MAX;
                    }
                } else {
                    stack_a[d]++;
                    stack_p[d] = UINT32_MAX;
                }
            }
            if (next == UINT32_MAX) {
                color[r] = 2;
                depth--;
                continue;
            }
            if (color[next] == 1) {
                char name[320];
                rule_name(b, next, name, sizeof name);
                b->code =
                    error_set(b->err, HEARTH_ERR_BAD_INPUT,
                              "grammar: rule '%s' can reach itself without consuming input (left "
                              "recursion, or a repetition of something that can be empty)",
                              name);
                b->failed = true;
                ok = false;
            } else if (color[next] == 0) {
                color[next] = 1;
                stack_r[depth] = next;
                stack_a[depth] = g->alt_first[next];
                stack_p[depth] = UINT32_MAX;
                depth++;
            }
        }
    }
    free(color);
    free(stack_r);
    free(stack_a);
    free(stack_p);
    return ok;
}

/* Refuses rules reachable from the root that have no finite string. */
static bool check_finite(gram_rules *g, builder *b) {
    uint8_t *seen = calloc(g->n_rules ? g->n_rules : 1, 1);
    uint32_t *work = malloc((g->n_rules ? g->n_rules : 1) * sizeof *work);
    bool ok = seen && work;
    if (!ok) fail_nomem(b);
    uint32_t n = 0;
    if (ok) {
        work[n++] = g->root;
        seen[g->root] = 1;
    }
    while (ok && n) {
        uint32_t r = work[--n];
        if (g->rule_min[r] == GRAM_INF) {
            char name[320];
            rule_name(b, r, name, sizeof name);
            b->code =
                error_set(b->err, HEARTH_ERR_BAD_INPUT,
                          "grammar: rule '%s' can never finish (every alternative recurses)", name);
            b->failed = true;
            ok = false;
            break;
        }
        for (uint32_t a = g->alt_first[r]; a < g->alt_first[r + 1]; a++) {
            for (uint32_t p = g->alts[a]; g->elem[p].type != GRAM_END; p++) {
                uint32_t s = g->elem[p].value;
                if (g->elem[p].type == GRAM_REF && !seen[s]) {
                    seen[s] = 1;
                    work[n++] = s;
                }
            }
        }
    }
    free(seen);
    free(work);
    return ok;
}

/* ---------------------------------------------------------------- output */

static bool finish(builder *b, const char *root, gram_rules *g) {
    size_t root_len = strlen(root);
    g->root = UINT32_MAX;
    for (uint32_t r = 0; r < b->n_rules; r++) {
        const brule *x = &b->rules[r];
        if (!x->defined) {
            char msg[300];
            snprintf(msg, sizeof msg, "rule '%.*s' is used but never defined",
                     (int)(x->name_len < 200 ? x->name_len : 200), x->name);
            return fail_at(b, x->used_at == SIZE_MAX ? 0 : x->used_at, msg);
        }
        if (x->name && x->name_len == root_len && !memcmp(x->name, root, root_len)) g->root = r;
    }
    if (g->root == UINT32_MAX) {
        b->code =
            error_set(b->err, HEARTH_ERR_BAD_INPUT, "grammar: no rule named '%.*s' to start from",
                      (int)(root_len < 200 ? root_len : 200), root);
        b->failed = true;
        return false;
    }
    uint64_t n_alts = 0, n_elem = 0;
    for (uint32_t r = 0; r < b->n_rules; r++) {
        const brule *x = &b->rules[r];
        n_alts++;
        for (uint32_t i = 0; i < x->n_body; i++) n_alts += x->body[i].type == GRAM_ALT;
        n_elem += x->n_body + 1; /* every ALT becomes an END, plus the last END */
    }
    if (n_elem > MAX_ELEMS + MAX_RULES) return fail_size(b);
    g->n_rules = b->n_rules;
    g->n_elem = (uint32_t)n_elem;
    g->elem = malloc(n_elem * sizeof *g->elem);
    g->alts = malloc(n_alts * sizeof *g->alts);
    g->alt_first = malloc(((size_t)b->n_rules + 1) * sizeof *g->alt_first);
    g->rule_min = malloc(((size_t)b->n_rules + 1) * sizeof *g->rule_min);
    g->rem = malloc(n_elem * sizeof *g->rem);
    g->n_sets = b->n_sets;
    g->sets = malloc((b->n_sets ? b->n_sets : 1) * sizeof *g->sets);
    if (!g->elem || !g->alts || !g->alt_first || !g->rule_min || !g->rem || !g->sets) {
        return fail_nomem(b);
    }
    if (b->n_sets) memcpy(g->sets, b->sets, b->n_sets * sizeof *g->sets);
    uint32_t e = 0, a = 0;
    for (uint32_t r = 0; r < b->n_rules; r++) {
        const brule *x = &b->rules[r];
        g->alt_first[r] = a;
        g->alts[a++] = e;
        for (uint32_t i = 0; i < x->n_body; i++) {
            if (x->body[i].type == GRAM_ALT) {
                g->elem[e++] = (gram_elem){GRAM_END, 0};
                g->alts[a++] = e;
            } else {
                g->elem[e++] = x->body[i];
            }
        }
        g->elem[e++] = (gram_elem){GRAM_END, 0};
    }
    g->alt_first[b->n_rules] = a;
    if (!compute_min(g, b)) return false;
    for (uint32_t p = g->n_elem; p-- > 0;) {
        const gram_elem *x = &g->elem[p];
        if (x->type == GRAM_END) {
            g->rem[p] = 0;
        } else {
            uint32_t cost = x->type == GRAM_BYTES ? 1 : g->rule_min[x->value];
            g->rem[p] = sat_add(cost, g->rem[p + 1]);
        }
    }
    return check_left_recursion(g, b) && check_finite(g, b);
}

void gram_rules_free(gram_rules *r) {
    if (!r) return;
    free(r->elem);
    free(r->sets);
    free(r->alt_first);
    free(r->alts);
    free(r->rule_min);
    free(r->rem);
    memset(r, 0, sizeof *r);
}

hearth_status gram_compile(const char *text, size_t len, const char *root, gram_rules *out,
                           hearth_error *err) {
    memset(out, 0, sizeof *out);
    if (!text && len) return error_set(err, HEARTH_ERR_INVALID_ARG, "grammar: NULL text");
    builder b;
    memset(&b, 0, sizeof b);
    b.src = text ? text : "";
    b.len = len;
    b.err = err;
    b.any_char = UINT32_MAX;
    bool ok = parse_grammar(&b) && finish(&b, root ? root : "root", out);
    hearth_status st = HEARTH_OK;
    if (!ok) {
        st = b.code != HEARTH_OK ? b.code : HEARTH_ERR_INTERNAL;
        gram_rules_free(out);
    }
    for (uint32_t r = 0; r < b.n_rules; r++) free(b.rules[r].body);
    free(b.rules);
    free(b.sets);
    free(b.name_ht);
    free(b.set_ht);
    return st;
}
