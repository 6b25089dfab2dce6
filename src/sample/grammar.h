/* grammar.h — compiled grammars, shared by the GBNF compiler (grammar.c),
 * the JSON-schema translator (jsonschema.c) and the matcher
 * (grammar_match.c).  Private to src/sample/.
 *
 * A compiled grammar works on bytes: character classes over code points
 * are turned into alternatives of UTF-8 byte ranges at compile time, so
 * the matcher never decodes UTF-8 and a token's bytes can be fed one by
 * one even when a character is split between tokens.
 *
 * Layout, after llama.cpp's: every alternative of every rule is a run of
 * elements ended by GRAM_END, all in one array; a parser position is an
 * index into that array.
 */
#ifndef HEARTH_GRAMMAR_H
#define HEARTH_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hearth.h"

typedef enum gram_type {
    GRAM_END = 0,   /* end of an alternative */
    GRAM_BYTES = 1, /* one byte from the set value */
    GRAM_REF = 2,   /* the rule value */
} gram_type;

typedef struct gram_elem {
    uint32_t type;  /* gram_type */
    uint32_t value; /* set or rule index */
} gram_elem;

#define GRAM_INF UINT32_MAX /* "no finite string" for the minimum lengths below */

typedef struct gram_rules {
    gram_elem *elem; /* (n_elem) */
    uint32_t n_elem;
    uint64_t (*sets)[4]; /* (n_sets) 256-bit byte sets */
    uint32_t n_sets;
    uint32_t n_rules;
    uint32_t *alt_first; /* (n_rules + 1) rule r's alternatives are alts[alt_first[r] ..
                            alt_first[r + 1]) */
    uint32_t *alts;      /* start position of each alternative */
    uint32_t *rule_min;  /* (n_rules) fewest bytes a string of the rule has */
    uint32_t *rem;       /* (n_elem) fewest bytes from a position to the end of its alternative */
    uint32_t root;
} gram_rules;

/* Compiles GBNF text[0..len) with start rule root (NULL: "root"). */
hearth_status gram_compile(const char *text, size_t len, const char *root, gram_rules *out,
                           hearth_error *err);
void gram_rules_free(gram_rules *r);

static inline bool gram_set_has(const uint64_t set[4], uint8_t b) {
    return (set[b >> 6] >> (b & 63)) & 1;
}

/* The GBNF for a JSON schema; *out is NUL-terminated, caller frees. */
hearth_status json_schema_gbnf(const char *schema, size_t len, char **out, size_t *out_len,
                               hearth_error *err);
/* The place in the schema (a JSON pointer such as "#/properties/a") of the
 * node that made rule r<rule> of its GBNF, for error messages; false when
 * there is none. */
bool json_schema_rule_path(const char *schema, size_t len, uint32_t rule, char *path, size_t cap);

#endif
