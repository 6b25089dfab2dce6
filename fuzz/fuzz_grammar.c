/* fuzz_grammar.c — libFuzzer target for GBNF grammars, JSON schemas and
 * the token mask.
 *
 * The first input byte picks GBNF (even) or a JSON schema (odd); the text
 * runs to the first NUL, and the bytes after it steer a walk: each picks
 * one of the tokens the mask allows (stories260K's vocabulary, which has a
 * token for every byte, from $HEARTH_SHARED, default ../shared).  Beyond
 * "no crash, no hang, no sanitizer report" it checks what must hold:
 *  - a failed compile says why, with a status that is not HEARTH_OK;
 *  - the mask allows something until the grammar is done, and every token
 *    it allows is accepted;
 *  - a complete text of a JSON schema's grammar parses as JSON.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static hearth_tokenizer *tok;
static hearth_grammar_vocab *voc;
static float *logits;

static void load(void) {
    const char *root = getenv("HEARTH_SHARED");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", root && *root ? root : "../shared");
    hearth_error err;
    if (hearth_tokenizer_load(path, &tok, &err) != HEARTH_OK ||
        hearth_grammar_vocab_create(tok, &voc, &err) != HEARTH_OK) {
        fprintf(stderr, "fuzz_grammar: %s\n", err.msg);
        __builtin_trap();
    }
    logits = malloc((size_t)hearth_tokenizer_n_vocab(tok) * sizeof *logits);
    if (!logits) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) load();
    if (size < 1) return 0;
    bool schema = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = strnlen(text, size - 1);
    const uint8_t *steer = data + 1 + len + (len < size - 1 ? 1 : 0);
    size_t n_steer = (size_t)(data + size - steer);

    hearth_error err;
    err.msg[0] = '\0';
    hearth_grammar *g = NULL;
    hearth_status st = schema ? hearth_grammar_create_from_json_schema(voc, text, len, &g, &err)
                              : hearth_grammar_create_from_gbnf(voc, text, len, NULL, &g, &err);
    if (st != HEARTH_OK) {
        if (g || !err.msg[0]) __builtin_trap();
        return 0;
    }
    int32_t nv = hearth_tokenizer_n_vocab(tok);
    char out[8192];
    size_t n_out = 0;
    hearth_grammar_set_budget(g, 48);
    for (size_t step = 0; step < n_steer && step < 48 && !hearth_grammar_is_done(g); step++) {
        for (int32_t t = 0; t < nv; t++) logits[t] = 0.0f;
        if (hearth_grammar_apply(g, logits, nv, &err) != HEARTH_OK)
            break; /* tables full: an error */
        int32_t n_ok = 0;
        for (int32_t t = 0; t < nv; t++) n_ok += logits[t] == 0.0f;
        if (n_ok == 0) __builtin_trap();
        int32_t want = steer[step] % n_ok, pick = -1;
        for (int32_t t = 0; t < nv && pick < 0; t++) {
            if (logits[t] == 0.0f && want-- == 0) pick = t;
        }
        if (hearth_grammar_accept(g, pick, &err) != HEARTH_OK) __builtin_trap();
        if (hearth_tokenizer_is_eog(tok, pick)) break;
        size_t m = 0;
        if (hearth_detokenize(tok, &pick, 1, HEARTH_DETOK_KEEP_LEADING_SPACE, out + n_out,
                              sizeof out - n_out, &m, &err) == HEARTH_OK) {
            n_out += m;
        }
    }
    if (schema && hearth_grammar_is_complete(g) && n_out < sizeof out) {
        json_error_t je;
        json_t *v = json_loadb(out, n_out, JSON_DECODE_ANY, &je);
        if (!v) {
            fprintf(stderr, "not JSON: %.*s (%s)\n", (int)n_out, out, je.text);
            __builtin_trap();
        }
        json_decref(v);
    }
    hearth_grammar_free(g);
    return 0;
}
