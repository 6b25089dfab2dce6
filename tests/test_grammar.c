/* test_grammar.c — GBNF grammars, JSON schemas and the token mask.
 *
 * The vocabulary is the real byte-level BPE of tests/data/hf/qwen3 (384
 * tokens, every byte one of them), converted at test time.  It checks:
 *  - the language of grammars, byte by byte: literals, classes (negated,
 *    non-ASCII, split over UTF-8 bytes), ".", every repetition form,
 *    groups, recursion, comments, escapes;
 *  - every malformed or hostile grammar is an error naming the problem,
 *    quickly (left recursion, rules that never finish, huge expansions …);
 *  - the mask equals brute force (a token is allowed exactly when the
 *    grammar accepts its bytes), and end tokens exactly at complete text;
 *  - a token budget always ends with complete text;
 *  - JSON schemas: fixed ones and 100 random ones, generated with the
 *    sampler on a random-weight model, parse (jansson) and validate (a
 *    small validator here; tests/grammar/ checks the same with ajv);
 *  - bad schemas are errors that name the keyword and where it is;
 *  - the mask cost on the real 151k Qwen3 vocabulary, printed (not judged).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convert/convert.h"
#include "hearth.h"
#include "test.h"

static hearth_tokenizer *tok;
static hearth_grammar_vocab *voc;
static int32_t byte_tok[256]; /* the token whose bytes are exactly one byte, or -1 */
static char model_path[512];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static bool setup(void) {
    char path[512];
    hearth_error err;
    snprintf(path, sizeof path, "%s/qwen3-vocab.gguf", test_tmpdir());
    if (convert_hf_tokenizer("tests/data/hf/qwen3/tokenizer.json",
                             "tests/data/hf/qwen3/tokenizer_config.json", path,
                             &err) != HEARTH_OK ||
        hearth_tokenizer_load(path, &tok, &err) != HEARTH_OK ||
        hearth_grammar_vocab_create(tok, &voc, &err) != HEARTH_OK) {
        printf("  setup: %s\n", err.msg);
        return false;
    }
    for (int b = 0; b < 256; b++) byte_tok[b] = -1;
    for (int32_t id = 0; id < hearth_tokenizer_n_vocab(tok); id++) {
        char buf[64];
        size_t n = 0;
        if (hearth_detokenize(tok, &id, 1, HEARTH_DETOK_KEEP_LEADING_SPACE, buf, sizeof buf, &n,
                              &err) == HEARTH_OK &&
            n == 1 && !hearth_tokenizer_is_eog(tok, id)) {
            byte_tok[(uint8_t)buf[0]] = id;
        }
    }
    convert_params cp = {HEARTH_DTYPE_F32, NULL, NULL};
    snprintf(model_path, sizeof model_path, "%s/qwen3-random.gguf", test_tmpdir());
    if (convert_hf_dir("tests/data/hf/qwen3", model_path, &cp, &err) != HEARTH_OK) {
        printf("  setup: %s\n", err.msg);
        model_path[0] = '\0';
    }
    return true;
}

static hearth_grammar *gbnf(const char *text, hearth_error *err) {
    hearth_grammar *g = NULL;
    if (hearth_grammar_create_from_gbnf(voc, text, strlen(text), NULL, &g, err) != HEARTH_OK) {
        return NULL;
    }
    return g;
}

/* 1: text (fed one byte token at a time) is a complete string of the
 * grammar; 0: it is not; -1: the grammar does not compile. */
static int match(const char *grammar, const char *text, size_t len) {
    hearth_error err;
    hearth_grammar *g = gbnf(grammar, &err);
    if (!g) {
        printf("  compile: %s\n", err.msg);
        return -1;
    }
    int ok = 1;
    for (size_t i = 0; i < len && ok; i++) {
        int32_t t = byte_tok[(uint8_t)text[i]];
        if (t < 0 || hearth_grammar_accept(g, t, &err) != HEARTH_OK) ok = 0;
    }
    if (ok && !hearth_grammar_is_complete(g)) ok = 0;
    hearth_grammar_free(g);
    return ok;
}

#define YES(gr, s) CHECKF(match(gr, s, strlen(s)) == 1, "'%s' should match %s", s, gr)
#define NO(gr, s)  CHECKF(match(gr, s, strlen(s)) == 0, "'%s' should not match %s", s, gr)

TEST(vocabulary_has_every_byte) {
    int missing = 0;
    for (int b = 0; b < 256; b++) missing += byte_tok[b] < 0;
    CHECKF(missing == 0, "%d bytes have no single-byte token", missing);
}

TEST(literals_alternatives_sequences) {
    const char *g = "root ::= \"ab\" | \"cd\" \"e\"";
    YES(g, "ab");
    YES(g, "cde");
    NO(g, "ac");
    NO(g, "a");
    NO(g, "abc");
    NO(g, "");
    YES("root ::= \"\"", "");
    YES("root ::= \"a\\n\\t\\\"\\\\\\x41\\u00e9\\U0001F600\"",
        "a\n\t\"\\A\xc3\xa9\xf0\x9f\x98\x80");
}

TEST(character_classes) {
    YES("root ::= [a-c0-2_]+", "ab_1c");
    NO("root ::= [a-c0-2_]+", "abd");
    YES("root ::= [^abc]", "d");
    NO("root ::= [^abc]", "b");
    YES("root ::= [^abc]", "\xc3\xa9");           /* é: 2 bytes */
    YES("root ::= [^abc]", "\xe2\x82\xac");       /* €: 3 bytes */
    YES("root ::= [^abc]", "\xf0\x9f\x98\x80");   /* 4 bytes */
    NO("root ::= [^abc]", "\xed\xa0\x80");        /* a surrogate is not UTF-8 */
    NO("root ::= [^abc]", "\xc0\x80");            /* overlong */
    YES("root ::= [α-ω]{2}", "\xce\xb2\xce\xb3"); /* βγ */
    NO("root ::= [α-ω]{2}", "ab");
    NO("root ::= [α-ω]{2}", "\xce\x91\xce\xb3"); /* Α is before α */
    YES("root ::= [\\u0100-\\U0010FFFF]", "\xf4\x8f\xbf\xbf");
    NO("root ::= [\\u0100-\\U0010FFFF]", "\xc3\xbf"); /* U+00FF */
    YES("root ::= . . .", "a\xc3\xa9\xe2\x82\xac");
    NO("root ::= .", "\xff");
    YES("root ::= [-a]+ [\\]]", "-a-]");
    YES("root ::= [a-]", "-");
}

TEST(repetitions_and_groups) {
    YES("root ::= \"x\"{2,4}", "xx");
    YES("root ::= \"x\"{2,4}", "xxxx");
    NO("root ::= \"x\"{2,4}", "x");
    NO("root ::= \"x\"{2,4}", "xxxxx");
    YES("root ::= \"x\"{3}", "xxx");
    NO("root ::= \"x\"{3}", "xxxx");
    YES("root ::= \"x\"{2,}", "xxxxxxxx");
    NO("root ::= \"x\"{2,}", "x");
    YES("root ::= \"ab\"? \"c\"", "c");
    YES("root ::= \"ab\"? \"c\"", "abc");
    NO("root ::= \"ab\"? \"c\"", "ac");
    YES("root ::= \"a\"* \"b\"+", "b");
    YES("root ::= \"a\"* \"b\"+", "aaabb");
    NO("root ::= \"a\"* \"b\"+", "aaa");
    const char *g = "root ::= (\"a\" (\"b\" | \"c\")*)+ \"!\"";
    YES(g, "abcab!");
    YES(g, "a!");
    NO(g, "b!");
    YES("root ::= (\"ab\"){0,3}", "");
    YES("root ::= (\"ab\"){0,3}", "ababab");
    NO("root ::= (\"ab\"){0,3}", "abababab");
    /* Long repetitions do not grow the parser state. */
    char text[5001];
    memset(text, 'q', 5000);
    text[5000] = '\0';
    YES("root ::= [q]*", text);
}

TEST(recursion_comments_lines) {
    const char *paren = "root ::= \"(\" root \")\" root | \"\"";
    YES(paren, "(()(()))()");
    NO(paren, "(()");
    NO(paren, ")(");
    const char *g = "# a comment line\n"
                    "root ::= a\n"
                    "       | b   # after an alternative\n"
                    "       | \"#\" # a literal hash\n"
                    "a ::= \"x\" list\n"
                    "list ::= (\",\" [0-9])*\n"
                    "b ::= \"y\"\n";
    YES(g, "x,1,2,3");
    YES(g, "y");
    YES(g, "#");
    NO(g, "x,");
    NO(g, "z");
}

typedef struct bad_case {
    const char *grammar;
    const char *needle;
} bad_case;

TEST(bad_grammars_are_errors) {
    char deep[1200];
    size_t n = (size_t)snprintf(deep, sizeof deep, "root ::= ");
    for (int i = 0; i < 300; i++) deep[n++] = '(';
    deep[n++] = '"';
    deep[n++] = 'a';
    deep[n++] = '"';
    for (int i = 0; i < 300; i++) deep[n++] = ')';
    deep[n] = '\0';
    char huge[4096];
    n = (size_t)snprintf(huge, sizeof huge, "root ::=");
    for (int i = 0; i < 60; i++) n += (size_t)snprintf(huge + n, sizeof huge - n, " x{100000}");
    snprintf(huge + n, sizeof huge - n, "\nx ::= \"a\"\n");
    const bad_case cases[] = {
        {"", "empty grammar"},
        {"   # only a comment\n", "empty grammar"},
        {"root ::= foo", "'foo' is used but never defined"},
        {"root ::= root \"a\" | \"b\"", "left recursion"},
        {"root ::= a\na ::= b \"x\"\nb ::= a | \"\"", "left recursion"},
        {"root ::= (\"\")* \"a\"", "can reach itself"},
        {"root ::= (\"a\"?)+", "can reach itself"},
        {"root ::= \"a\" root", "can never finish"},
        {"root ::= \"x\" | a\na ::= \"y\" a", "'a' can never finish"},
        {"root ::= [^\\x00-\\U0010FFFF]", "matches nothing"},
        {"root ::= \"abc", "unterminated string"},
        {"root ::= [abc", "unterminated character class"},
        {"root ::= \"\\q\"", "unknown escape"},
        {"root ::= \"\\xZZ\"", "bad hexadecimal escape"},
        {"root ::= \"\\uD800\"", "not a Unicode scalar"},
        {"root ::= \"a\"{100001}", "over 100000"},
        {"root ::= \"a\"{3,2}", "n < m"},
        {"root ::= \"a\"{", "expected a number"},
        {"a ::= \"x\"", "no rule named 'root'"},
        {"root ::= \"a\"\nroot ::= \"b\"", "defined twice"},
        {deep, "nested too deep"},
        {"root ::= \"a\" )", "unmatched ')'"},
        {"root ::= (\"a\"", "unclosed '('"},
        {"root := \"a\"", "expected '::='"},
        {"root ::= \"\xff\"", "malformed UTF-8"},
        {"root ::= [z-a]", "out of order"},
        {"root ::= @", "expected a literal"},
        {"::= \"a\"", "expected a rule name"},
        {huge, "too large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hearth_error err;
        err.msg[0] = '\0';
        double t0 = now_s();
        hearth_grammar *g = gbnf(cases[i].grammar, &err);
        double dt = now_s() - t0;
        CHECKF(!g, "case %zu compiled", i);
        hearth_grammar_free(g);
        CHECKF(err.code == HEARTH_ERR_BAD_INPUT, "case %zu: status %d", i, err.code);
        CHECKF(strstr(err.msg, cases[i].needle) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg,
               cases[i].needle);
        CHECKF(dt < 5.0, "case %zu took %.1f s", i, dt);
    }
    /* Syntax errors say where. */
    hearth_error err;
    CHECK(!gbnf("root ::= \"a\"\n\nfoo ::= \"b\" $", &err));
    CHECKF(strstr(err.msg, "line 3 column 13") != NULL, "%s", err.msg);
    /* NULL text with a length, a NULL vocabulary. */
    hearth_grammar *g = NULL;
    CHECK(hearth_grammar_create_from_gbnf(voc, NULL, 3, NULL, &g, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(hearth_grammar_create_from_gbnf(NULL, "root ::= \"a\"", 12, NULL, &g, &err) ==
          HEARTH_ERR_INVALID_ARG);
    CHECK(hearth_grammar_create_from_gbnf(voc, "start ::= \"a\"", 13, "start", &g, &err) ==
          HEARTH_OK);
    hearth_grammar_free(g);
}

/* Allowed tokens by brute force: replay history on a fresh grammar and
 * try each token. */
static void brute_mask(const char *grammar, const int32_t *hist, size_t n, bool *allowed) {
    hearth_error err;
    hearth_grammar *g = gbnf(grammar, &err);
    int32_t nv = hearth_tokenizer_n_vocab(tok);
    for (int32_t t = 0; t < nv; t++) {
        hearth_grammar_reset(g);
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++)
            ok = hearth_grammar_accept(g, hist[i], &err) == HEARTH_OK;
        allowed[t] = ok && hearth_grammar_accept(g, t, &err) == HEARTH_OK;
    }
    hearth_grammar_free(g);
}

TEST(mask_equals_brute_force) {
    char *json = NULL;
    hearth_error err;
    REQUIRE(hearth_json_schema_to_gbnf("{}", 2, &json, &err) == HEARTH_OK);
    const char *grammars[] = {
        json,
        "root ::= (\"ab\" | \"abc\" | [x-z]+ \" \")* \"end\"",
        "root ::= [^\"]{0,12} \"\\\"\"",
        "root ::= \"é\" | \"€uro\" | [😀-🙏] \" !\"",
    };
    int32_t nv = hearth_tokenizer_n_vocab(tok);
    float *logits = malloc((size_t)nv * sizeof *logits);
    bool *allowed = malloc((size_t)nv);
    int32_t hist[64];
    REQUIRE(logits && allowed);
    for (size_t k = 0; k < sizeof grammars / sizeof grammars[0]; k++) {
        for (int walk = 0; walk < 4; walk++) {
            hearth_grammar *g = gbnf(grammars[k], &err);
            REQUIRE(g);
            size_t n = 0;
            for (int step = 0; step < 40; step++) {
                for (int32_t t = 0; t < nv; t++) logits[t] = 0.0f;
                if (hearth_grammar_apply(g, logits, nv, &err) != HEARTH_OK) break;
                brute_mask(grammars[k], hist, n, allowed);
                int bad = 0, n_ok = 0;
                for (int32_t t = 0; t < nv; t++) {
                    bool masked_in = logits[t] == 0.0f;
                    bool want = hearth_tokenizer_is_eog(tok, t) ? hearth_grammar_is_complete(g)
                                                                : allowed[t];
                    bad += masked_in != want;
                    n_ok += masked_in;
                }
                CHECKF(bad == 0, "grammar %zu step %d: %d tokens differ", k, step, bad);
                if (bad || n_ok == 0) break;
                /* Walk on with a random allowed text token. */
                int32_t pick = -1, seen = 0;
                for (int32_t t = 0; t < nv; t++) {
                    if (logits[t] == 0.0f && !hearth_tokenizer_is_eog(tok, t) &&
                        rnd((uint32_t)++seen) == 0) {
                        pick = t;
                    }
                }
                if (pick < 0) break;
                REQUIRE(hearth_grammar_accept(g, pick, &err) == HEARTH_OK);
                hist[n++] = pick;
            }
            hearth_grammar_free(g);
        }
    }
    free(logits);
    free(allowed);
    free(json);
}

TEST(budget_always_finishes) {
    const char *schemas[] = {
        "{}",
        "{\"type\":\"object\"}",
        "{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}",
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"minLength\":5},"
        "\"b\":{\"type\":\"array\",\"minItems\":2,\"items\":{\"type\":\"number\"}}},"
        "\"required\":[\"a\",\"b\"]}",
    };
    int32_t nv = hearth_tokenizer_n_vocab(tok);
    float *logits = malloc((size_t)nv * sizeof *logits);
    REQUIRE(logits);
    for (size_t k = 0; k < sizeof schemas / sizeof schemas[0]; k++) {
        for (uint32_t budget = 30; budget <= 90; budget += 20) {
            for (int rep = 0; rep < 10; rep++) {
                hearth_error err;
                hearth_grammar *g = NULL;
                REQUIRE(hearth_grammar_create_from_json_schema(voc, schemas[k], strlen(schemas[k]),
                                                               &g, &err) == HEARTH_OK);
                hearth_grammar_set_budget(g, budget);
                uint32_t used = 0;
                while (used < budget && !hearth_grammar_is_done(g)) {
                    for (int32_t t = 0; t < nv; t++) logits[t] = (float)rnd(1000);
                    REQUIRE(hearth_grammar_apply(g, logits, nv, &err) == HEARTH_OK);
                    int32_t best = -1;
                    for (int32_t t = 0; t < nv; t++) {
                        if (logits[t] > -INFINITY && !hearth_tokenizer_is_eog(tok, t) &&
                            (best < 0 || logits[t] > logits[best])) {
                            best = t;
                        }
                    }
                    if (best < 0) break; /* only the end token is left */
                    REQUIRE(hearth_grammar_accept(g, best, &err) == HEARTH_OK);
                    used++;
                }
                CHECKF(hearth_grammar_is_complete(g),
                       "schema %zu budget %u: incomplete after %u tokens", k, budget, used);
                hearth_grammar_free(g);
            }
        }
    }
    free(logits);
}

TEST(sampler_applies_the_grammar) {
    hearth_error err;
    hearth_grammar *g = gbnf("root ::= \"yes\" | \"no\"", &err);
    REQUIRE(g);
    int32_t nv = hearth_tokenizer_n_vocab(tok);
    hearth_sampler_params sp = hearth_sampler_default_params();
    sp.temperature = 0.0f;
    hearth_sampler *s = NULL;
    REQUIRE(hearth_sampler_create(&sp, nv, &s, &err) == HEARTH_OK);
    float *logits = calloc((size_t)nv, sizeof *logits);
    REQUIRE(logits);
    logits[byte_tok['x']] = 100.0f; /* the model wants "x" */
    logits[byte_tok['n']] = 1.0f;
    hearth_sampler_accept(s, byte_tok['x']); /* prompt tokens do not reach the grammar */
    hearth_sampler_set_grammar(s, g);
    int32_t t = hearth_sampler_sample(s, logits);
    CHECK(t == byte_tok['n']);
    hearth_sampler_accept(s, t);
    /* Only "o" may follow, whatever the model wants. */
    t = hearth_sampler_sample(s, logits);
    char buf[16];
    size_t n = 0;
    REQUIRE(t >= 0);
    hearth_detokenize(tok, &t, 1, 0, buf, sizeof buf, &n, &err);
    CHECK(n >= 1 && buf[0] == 'o');
    hearth_sampler_accept(s, t);
    /* Complete: the end token is the only choice. */
    t = hearth_sampler_sample(s, logits);
    CHECK(t >= 0 && hearth_tokenizer_is_eog(tok, t));
    /* Sampling at temperature 1 keeps to the grammar too. */
    hearth_sampler_free(s);
    sp = hearth_sampler_default_params();
    sp.temperature = 1.0f;
    sp.top_k = 0;
    REQUIRE(hearth_sampler_create(&sp, nv, &s, &err) == HEARTH_OK);
    for (int rep = 0; rep < 30; rep++) {
        hearth_grammar_reset(g);
        hearth_sampler_set_grammar(s, g);
        for (int32_t k = 0; k < nv; k++) logits[k] = (float)rnd(50) / 10.0f;
        char text[16];
        size_t len = 0;
        for (int step = 0; step < 5; step++) {
            t = hearth_sampler_sample(s, logits);
            REQUIRE(t >= 0);
            if (hearth_tokenizer_is_eog(tok, t)) break;
            hearth_sampler_accept(s, t);
            size_t m = 0;
            hearth_detokenize(tok, &t, 1, 0, text + len, sizeof text - len, &m, &err);
            len += m;
        }
        text[len] = '\0';
        CHECKF(!strcmp(text, "yes") || !strcmp(text, "no"), "sampled '%s'", text);
    }
    /* Logit rows past the tokenizer (padded vocabularies) are never allowed. */
    hearth_sampler_free(s);
    REQUIRE(hearth_sampler_create(&sp, nv + 40, &s, &err) == HEARTH_OK);
    float *wide = malloc((size_t)(nv + 40) * sizeof *wide);
    REQUIRE(wide);
    for (int32_t k = 0; k < nv + 40; k++) wide[k] = k >= nv ? 1000.0f : 0.0f;
    hearth_grammar_reset(g);
    hearth_sampler_set_grammar(s, g);
    for (int rep = 0; rep < 20; rep++) {
        t = hearth_sampler_sample(s, wide);
        CHECKF(t >= 0 && t < nv, "sampled padded id %d", t);
    }
    hearth_grammar_reset(g);
    REQUIRE(hearth_grammar_apply(g, wide, nv + 40, &err) == HEARTH_OK);
    for (int32_t k = nv; k < nv + 40; k++) CHECK(wide[k] == -INFINITY);
    free(wide);
    /* A forced token the grammar refuses leaves it unchanged and says why. */
    hearth_grammar_reset(g);
    CHECK(hearth_grammar_accept(g, byte_tok['q'], &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(hearth_grammar_accept(g, byte_tok['y'], &err) == HEARTH_OK);
    free(logits);
    hearth_sampler_free(s);
    hearth_grammar_free(g);
}

/* ---------------------------------------------------------------- JSON schemas */

static size_t utf8_len(const char *s) {
    size_t k = 0;
    for (; *s; s++) k += ((unsigned char)*s & 0xC0) != 0x80;
    return k;
}

static json_t *resolve(json_t *root, const char *ref) {
    if (!strcmp(ref, "#")) return root;
    if (!strncmp(ref, "#/$defs/", 8))
        return json_object_get(json_object_get(root, "$defs"), ref + 8);
    if (!strncmp(ref, "#/definitions/", 14)) {
        return json_object_get(json_object_get(root, "definitions"), ref + 14);
    }
    return NULL;
}

static bool is_type(const json_t *v, const char *t) {
    if (!strcmp(t, "null")) return json_is_null(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "integer")) {
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    }
    return false;
}

/* A small JSON-schema validator for what the translator supports. */
static bool valid(json_t *v, json_t *s, json_t *root, int depth) {
    if (depth > 80) return false;
    if (json_is_true(s)) return true;
    if (!json_is_object(s)) return false;
    json_t *x;
    if ((x = json_object_get(s, "$ref")))
        return valid(v, resolve(root, json_string_value(x)), root, depth + 1);
    if ((x = json_object_get(s, "anyOf"))) {
        for (size_t i = 0; i < json_array_size(x); i++) {
            if (valid(v, json_array_get(x, i), root, depth + 1)) return true;
        }
        return false;
    }
    if ((x = json_object_get(s, "type"))) {
        bool ok = false;
        if (json_is_string(x)) ok = is_type(v, json_string_value(x));
        for (size_t i = 0; json_is_array(x) && i < json_array_size(x); i++) {
            ok |= is_type(v, json_string_value(json_array_get(x, i)));
        }
        if (!ok) return false;
    }
    if ((x = json_object_get(s, "const")) && !json_equal(v, x)) return false;
    if ((x = json_object_get(s, "enum"))) {
        bool ok = false;
        for (size_t i = 0; i < json_array_size(x); i++)
            ok |= json_equal(v, json_array_get(x, i)) != 0;
        if (!ok) return false;
    }
    if (json_is_string(v)) {
        size_t n = utf8_len(json_string_value(v));
        if ((x = json_object_get(s, "minLength")) && n < (size_t)json_integer_value(x))
            return false;
        if ((x = json_object_get(s, "maxLength")) && n > (size_t)json_integer_value(x))
            return false;
    }
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        if ((x = json_object_get(s, "minItems")) && n < (size_t)json_integer_value(x)) return false;
        if ((x = json_object_get(s, "maxItems")) && n > (size_t)json_integer_value(x)) return false;
        json_t *items = json_object_get(s, "items");
        for (size_t i = 0; items && i < n; i++) {
            if (!valid(json_array_get(v, i), items, root, depth + 1)) return false;
        }
    }
    if (json_is_object(v)) {
        json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
        json_t *ap = json_object_get(s, "additionalProperties");
        for (size_t i = 0; i < json_array_size(req); i++) {
            if (!json_object_get(v, json_string_value(json_array_get(req, i)))) return false;
        }
        const char *k;
        json_t *pv;
        json_object_foreach(v, k, pv) {
            json_t *ps = props ? json_object_get(props, k) : NULL;
            if (ps) {
                if (!valid(pv, ps, root, depth + 1)) return false;
            } else if (json_is_false(ap)) {
                return false;
            } else if (json_is_object(ap) && !valid(pv, ap, root, depth + 1)) {
                return false;
            }
        }
    }
    return true;
}

/* A random schema of what the translator supports. */
static json_t *random_schema(int depth) {
    static const char *names[] = {"name", "age", "tags", "a\"b", "ключ", "x y", "id", "z"};
    uint32_t kind = depth >= 3 ? rnd(6) : rnd(12);
    json_t *s = json_object();
    switch (kind) {
    case 0:
        json_object_set_new(s, "type", json_string("string"));
        if (rnd(2)) json_object_set_new(s, "maxLength", json_integer(rnd(12)));
        if (rnd(3) == 0) json_object_set_new(s, "minLength", json_integer(rnd(3)));
        break;
    case 1: json_object_set_new(s, "type", json_string("number")); break;
    case 2: json_object_set_new(s, "type", json_string("integer")); break;
    case 3: json_object_set_new(s, "type", json_string("boolean")); break;
    case 4: {
        json_t *e = json_array();
        int n = 1 + (int)rnd(4);
        for (int i = 0; i < n; i++) {
            uint32_t w = rnd(4);
            if (w == 0) json_array_append_new(e, json_string(names[rnd(8)]));
            if (w == 1) json_array_append_new(e, json_integer((json_int_t)rnd(100) - 50));
            if (w == 2) json_array_append_new(e, json_null());
            if (w == 3) json_array_append_new(e, json_pack("{s:[i,b]}", "k", 1, 1));
        }
        json_object_set_new(s, "enum", e);
        break;
    }
    case 5: {
        json_t *t = json_array();
        json_array_append_new(t, json_string(rnd(2) ? "string" : "integer"));
        json_array_append_new(t, json_string("null"));
        json_object_set_new(s, "type", t);
        break;
    }
    case 6:
    case 7:
    case 8: {
        json_object_set_new(s, "type", json_string("object"));
        json_t *props = json_object(), *req = json_array();
        int n = (int)rnd(5);
        for (int i = 0; i < n; i++) {
            const char *k = names[rnd(8)];
            if (json_object_get(props, k)) continue;
            json_object_set_new(props, k, random_schema(depth + 1));
            if (rnd(2)) json_array_append_new(req, json_string(k));
        }
        if (n || rnd(2))
            json_object_set_new(s, "properties", props);
        else
            json_decref(props);
        if (json_array_size(req))
            json_object_set_new(s, "required", req);
        else
            json_decref(req);
        uint32_t ap = rnd(3);
        if (ap == 0) json_object_set_new(s, "additionalProperties", json_false());
        if (ap == 1) json_object_set_new(s, "additionalProperties", json_true());
        break;
    }
    case 9:
    case 10: {
        json_object_set_new(s, "type", json_string("array"));
        json_object_set_new(s, "items", random_schema(depth + 1));
        uint32_t lo = rnd(3);
        if (rnd(2)) json_object_set_new(s, "minItems", json_integer(lo));
        if (rnd(2)) json_object_set_new(s, "maxItems", json_integer(lo + rnd(4)));
        break;
    }
    default: {
        json_t *any = json_array();
        json_array_append_new(any, random_schema(depth + 1));
        json_array_append_new(any, random_schema(depth + 1));
        json_object_set_new(s, "anyOf", any);
        break;
    }
    }
    return s;
}

typedef struct gen_ctx {
    hearth_model *model;
    hearth_context *ctx;
    hearth_sampler *smp;
    int32_t nv;
} gen_ctx;

/* Generates with grammar g from a short prompt; the text goes to out (NUL-terminated). */
static bool generate(gen_ctx *c, hearth_grammar *g, uint32_t max_tokens, uint64_t seed, char *out,
                     size_t cap, hearth_error *err) {
    const hearth_tokenizer *mt = hearth_model_tokenizer(c->model);
    hearth_token prompt[16];
    size_t n_prompt = 0;
    if (hearth_tokenize(mt, "JSON:", 5, HEARTH_TOKENIZE_ADD_SPECIAL, prompt, 16, &n_prompt, err) !=
        HEARTH_OK) {
        return false;
    }
    hearth_sampler_free(c->smp);
    c->smp = NULL;
    hearth_sampler_params sp = hearth_sampler_default_params();
    sp.temperature = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = seed;
    if (hearth_sampler_create(&sp, c->nv, &c->smp, err) != HEARTH_OK) return false;
    hearth_kv_truncate(c->ctx, 0, 0);
    int32_t pos[16], seq[16] = {0};
    for (size_t i = 0; i < n_prompt; i++) pos[i] = (int32_t)i;
    hearth_batch b = {(uint32_t)n_prompt, prompt, pos, seq, NULL};
    if (hearth_decode(c->ctx, &b, err) != HEARTH_OK) return false;
    hearth_grammar_set_budget(g, max_tokens);
    hearth_sampler_set_grammar(c->smp, g);
    size_t len = 0;
    uint32_t last = (uint32_t)n_prompt - 1;
    for (uint32_t i = 0; i < max_tokens; i++) {
        hearth_token t = hearth_sampler_sample(c->smp, hearth_get_logits(c->ctx, last));
        if (t >= 0 && hearth_tokenizer_is_eog(mt, t)) break;
        if (t >= 0) hearth_sampler_accept(c->smp, t);
        if (t < 0 || hearth_sampler_error(c->smp)[0]) {
            snprintf(err->msg, sizeof err->msg, "sample: %s", hearth_sampler_error(c->smp));
            return false;
        }
        size_t m = 0;
        hearth_detokenize(mt, &t, 1, HEARTH_DETOK_KEEP_LEADING_SPACE, out + len, cap - len - 1, &m,
                          err);
        len += m;
        int32_t p = (int32_t)(n_prompt + i);
        hearth_batch one = {1, &t, &p, seq, NULL};
        if (hearth_decode(c->ctx, &one, err) != HEARTH_OK) return false;
        last = 0;
    }
    out[len] = '\0';
    return true;
}

static bool gen_open(gen_ctx *c) {
    memset(c, 0, sizeof *c);
    if (!model_path[0]) return false;
    hearth_error err;
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 64;
    cp.n_outputs = 1;
    cp.n_seq = 1;
    cp.n_threads = 1;
    if (hearth_model_load(model_path, NULL, &c->model, &err) != HEARTH_OK ||
        hearth_context_create(c->model, &cp, &c->ctx, &err) != HEARTH_OK) {
        printf("  model: %s\n", err.msg);
        return false;
    }
    c->nv = hearth_model_n_vocab(c->model);
    return true;
}

static void gen_close(gen_ctx *c) {
    hearth_sampler_free(c->smp);
    hearth_context_free(c->ctx);
    hearth_model_free(c->model);
}

/* Compiles schema, generates, parses and validates; false after a message. */
static bool schema_round_trip(gen_ctx *c, hearth_grammar_vocab *mv, json_t *schema, uint64_t seed,
                              FILE *log) {
    char *text = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
    hearth_error err;
    hearth_grammar *g = NULL;
    bool ok = false;
    static char out[1 << 16];
    if (hearth_grammar_create_from_json_schema(mv, text, strlen(text), &g, &err) != HEARTH_OK) {
        printf("  schema %s: %s\n", text, err.msg);
    } else if (!generate(c, g, 160, seed, out, sizeof out, &err)) {
        printf("  schema %s: %s\n", text, err.msg);
    } else {
        json_error_t je;
        json_t *v = json_loads(out, JSON_DECODE_ANY, &je);
        if (!v) {
            printf("  schema %s: output does not parse (%s): %s\n", text, je.text, out);
        } else if (!valid(v, schema, schema, 0)) {
            printf("  schema %s: output does not validate: %s\n", text, out);
        } else {
            ok = true;
        }
        json_decref(v);
        if (log) fprintf(log, "{\"schema\":%s,\"output\":%s}\n", text, ok ? out : "null");
    }
    hearth_grammar_free(g);
    free(text);
    return ok;
}

TEST(json_schema_outputs_validate) {
    gen_ctx c;
    if (!gen_open(&c)) {
        CHECKF(false, "no random-weight model");
        return;
    }
    hearth_grammar_vocab *mv = NULL;
    hearth_error err;
    REQUIRE(hearth_grammar_vocab_create(hearth_model_tokenizer(c.model), &mv, &err) == HEARTH_OK);
    static const char *fixed[] = {
        "{\"type\":\"object\"}",
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
        "\"integer\"},\"email\":{\"type\":\"string\",\"maxLength\":30}},\"required\":[\"name\","
        "\"age\"],\"additionalProperties\":false}",
        "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"enum\":[\"red\",\"green\"]},"
        "\"minItems\":2,\"maxItems\":4}",
        "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
        "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},"
        "\"required\":[\"v\"]}},\"$ref\":\"#/$defs/node\"}",
        "{\"type\":[\"number\",\"null\"]}",
        "{\"const\":{\"fixed\":[1,2,\"three\"]}}",
        "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"boolean\"}}",
        "{\"type\":\"string\",\"minLength\":3,\"maxLength\":3}",
        "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"array\",\"maxItems\":0}]}",
        "true",
    };
    int passed = 0, total = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        json_error_t je;
        json_t *s = json_loads(fixed[i], JSON_DECODE_ANY, &je);
        REQUIRE(s);
        for (uint64_t seed = 1; seed <= 3; seed++) {
            total++;
            passed += schema_round_trip(&c, mv, s, seed * 7919 + i, NULL);
        }
        json_decref(s);
    }
    CHECKF(passed == total, "fixed schemas: %d of %d valid", passed, total);
    char path[512];
    snprintf(path, sizeof path, "%s/random-schemas.jsonl", test_tmpdir());
    FILE *log = fopen(path, "w");
    rng = 20240611;
    passed = 0;
    for (int i = 0; i < 100; i++) {
        json_t *s = random_schema(0);
        passed += schema_round_trip(&c, mv, s, (uint64_t)i + 1, log);
        json_decref(s);
    }
    if (log) fclose(log);
    printf("note: 100 random schemas on a random-weight model: %d outputs parse and validate\n",
           passed);
    CHECKF(passed == 100, "random schemas: %d of 100 valid (see %s)", passed, path);
    hearth_grammar_vocab_free(mv);
    gen_close(&c);
}

typedef struct bad_schema {
    const char *schema;
    hearth_status code;
    const char *needle;
} bad_schema;

TEST(bad_schemas_are_errors) {
    const bad_schema cases[] = {
        {"{\"type\":\"object\",", HEARTH_ERR_BAD_INPUT, "not JSON"},
        {"", HEARTH_ERR_BAD_INPUT, "not JSON"},
        {"[1,2]", HEARTH_ERR_BAD_INPUT, "must be an object or a boolean"},
        {"false", HEARTH_ERR_BAD_INPUT, "allows nothing"},
        {"{\"type\":\"string\",\"pattern\":\"^a\"}", HEARTH_ERR_UNSUPPORTED,
         "#: keyword 'pattern' is not supported"},
        {"{\"properties\":{\"age\":{\"type\":\"integer\",\"minimum\":0}}}", HEARTH_ERR_UNSUPPORTED,
         "#/properties/age: keyword 'minimum' is not supported"},
        {"{\"oneOf\":[{\"type\":\"string\"}]}", HEARTH_ERR_UNSUPPORTED, "'oneOf'"},
        {"{\"type\":\"string\",\"format\":\"date\"}", HEARTH_ERR_UNSUPPORTED, "'format'"},
        {"{\"type\":\"strin\"}", HEARTH_ERR_BAD_INPUT, "unknown type 'strin'"},
        {"{\"type\":7}", HEARTH_ERR_BAD_INPUT, "type must be"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}",
         HEARTH_ERR_UNSUPPORTED, "required property 'b' is not in properties"},
        {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", HEARTH_ERR_BAD_INPUT,
         "maxItems is below minItems"},
        {"{\"type\":\"array\",\"maxItems\":-1}", HEARTH_ERR_BAD_INPUT, "must not be negative"},
        {"{\"type\":\"array\",\"maxItems\":10000000}", HEARTH_ERR_UNSUPPORTED,
         "over the supported"},
        {"{\"type\":\"string\",\"maxLength\":\"5\"}", HEARTH_ERR_BAD_INPUT, "must be a number"},
        {"{\"$ref\":\"#/$defs/missing\"}", HEARTH_ERR_BAD_INPUT, "not found"},
        {"{\"$ref\":\"http://example.com/s.json\"}", HEARTH_ERR_UNSUPPORTED, "is not supported"},
        {"{\"type\":\"object\",\"properties\":{\"me\":{\"$ref\":\"#\"}},\"required\":[\"me\"]}",
         HEARTH_ERR_BAD_INPUT, "can never finish"},
        {"{\"$defs\":{\"d\":{\"$ref\":\"#/$defs/d\"}},\"$ref\":\"#/$defs/d\"}",
         HEARTH_ERR_BAD_INPUT, "#/$defs/d: grammar: rule 'r0' can reach itself"},
        {"{\"enum\":[]}", HEARTH_ERR_BAD_INPUT, "non-empty array"},
        {"{\"type\":\"integer\",\"enum\":[\"a\",\"b\"]}", HEARTH_ERR_BAD_INPUT,
         "no value of enum/const"},
        {"{\"anyOf\":[]}", HEARTH_ERR_BAD_INPUT, "non-empty array"},
        {"{\"type\":\"object\",\"properties\":{\"a\":1}}", HEARTH_ERR_BAD_INPUT,
         "#/properties/a: a schema must be"},
        {"{\"items\":[{\"type\":\"string\"}]}", HEARTH_ERR_UNSUPPORTED, "tuples"},
        {"{\"a\":1,\"a\":2}", HEARTH_ERR_BAD_INPUT, "not JSON"},
        {"{\"properties\":{\"x\":{\"type\":\"string\",\"requried\":true}}}", HEARTH_ERR_UNSUPPORTED,
         "keyword 'requried'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hearth_error err;
        err.msg[0] = '\0';
        hearth_grammar *g = NULL;
        hearth_status st = hearth_grammar_create_from_json_schema(
            voc, cases[i].schema, strlen(cases[i].schema), &g, &err);
        CHECKF(st == cases[i].code && !g, "case %zu (%s): status %d, want %d", i, cases[i].schema,
               st, cases[i].code);
        CHECKF(strstr(err.msg, cases[i].needle) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg,
               cases[i].needle);
        hearth_grammar_free(g);
    }
    /* Deep nesting is refused, not a stack overflow. */
    char deep[8192];
    size_t n = 0;
    for (int i = 0; i < 500; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"items\":");
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{}");
    for (int i = 0; i < 500; i++) deep[n++] = '}';
    deep[n] = '\0';
    hearth_error err;
    hearth_grammar *g = NULL;
    hearth_status st = hearth_grammar_create_from_json_schema(voc, deep, n, &g, &err);
    CHECKF(st != HEARTH_OK && !g, "deep schema: %d", st);
    hearth_grammar_free(g);
}

TEST(qwen3_vocabulary_mask_cost) {
    char json[512], config[512];
    snprintf(json, sizeof json, "%s", test_shared("vocab/qwen3-tokenizer.json"));
    snprintf(config, sizeof config, "%s", test_shared("vocab/qwen3-tokenizer_config.json"));
    FILE *fp = fopen(json, "rb");
    if (!fp) {
        printf("note: %s missing, 151k-vocabulary measurement skipped\n", json);
        return;
    }
    fclose(fp);
    char path[512];
    snprintf(path, sizeof path, "%s/qwen3-151k.gguf", test_tmpdir());
    hearth_error err;
    REQUIRE(convert_hf_tokenizer(json, config, path, &err) == HEARTH_OK);
    hearth_tokenizer *big = NULL;
    hearth_grammar_vocab *bv = NULL;
    REQUIRE(hearth_tokenizer_load(path, &big, &err) == HEARTH_OK);
    double t0 = now_s();
    REQUIRE(hearth_grammar_vocab_create(big, &bv, &err) == HEARTH_OK);
    double t_vocab = now_s() - t0;
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                         "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
                         "\"score\":{\"type\":\"number\"},\"ok\":{\"type\":\"boolean\"}},"
                         "\"required\":[\"name\",\"tags\",\"score\",\"ok\"]}";
    hearth_grammar *g = NULL;
    REQUIRE(hearth_grammar_create_from_json_schema(bv, schema, strlen(schema), &g, &err) ==
            HEARTH_OK);
    int32_t nv = hearth_tokenizer_n_vocab(big);
    float *logits = malloc((size_t)nv * sizeof *logits);
    REQUIRE(logits);
    hearth_grammar_set_budget(g, 200);
    double total = 0, worst = 0;
    int steps = 0;
    char out[1 << 14];
    size_t len = 0;
    for (; steps < 200 && !hearth_grammar_is_done(g); steps++) {
        for (int32_t t = 0; t < nv; t++) logits[t] = (float)rnd(1000);
        double a = now_s();
        REQUIRE(hearth_grammar_apply(g, logits, nv, &err) == HEARTH_OK);
        double d = now_s() - a;
        total += d;
        worst = d > worst ? d : worst;
        int32_t best = -1;
        for (int32_t t = 0; t < nv; t++) {
            if (logits[t] > -INFINITY && (best < 0 || logits[t] > logits[best])) best = t;
        }
        REQUIRE(best >= 0);
        if (hearth_tokenizer_is_eog(big, best)) break;
        REQUIRE(hearth_grammar_accept(g, best, &err) == HEARTH_OK);
        size_t m = 0;
        hearth_detokenize(big, &best, 1, HEARTH_DETOK_KEEP_LEADING_SPACE, out + len,
                          sizeof out - len - 1, &m, &err);
        len += m;
    }
    out[len] = '\0';
    json_error_t je;
    json_t *v = json_loads(out, 0, &je);
    json_t *sj = json_loads(schema, 0, &je);
    CHECKF(v && valid(v, sj, sj, 0), "151k output invalid: %s", out);
    json_decref(v);
    json_decref(sj);
    printf("note: 151k vocabulary (%d tokens): trie built in %.1f ms; mask %.3f ms/token mean, "
           "%.3f ms worst, over %d tokens\n",
           nv, t_vocab * 1e3, total / (steps ? steps : 1) * 1e3, worst * 1e3, steps);
    free(logits);
    hearth_grammar_free(g);
    hearth_grammar_vocab_free(bv);
    hearth_tokenizer_free(big);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    if (!setup()) {
        printf("FAIL test_grammar/setup\n");
        return 1;
    }
    RUN(vocabulary_has_every_byte);
    RUN(literals_alternatives_sequences);
    RUN(character_classes);
    RUN(repetitions_and_groups);
    RUN(recursion_comments_lines);
    RUN(bad_grammars_are_errors);
    RUN(mask_equals_brute_force);
    RUN(budget_always_finishes);
    RUN(sampler_applies_the_grammar);
    RUN(json_schema_outputs_validate);
    RUN(bad_schemas_are_errors);
    RUN(qwen3_vocabulary_mask_cost);
    hearth_grammar_vocab_free(voc);
    hearth_tokenizer_free(tok);
    return test_finish();
}
