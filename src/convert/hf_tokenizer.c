/* hf_tokenizer.c — a Hugging Face tokenizer.json as GGUF tokenizer metadata.
 *
 * Byte-level BPE tokenizers (GPT-2, Llama 3, Qwen) become
 * tokenizer.ggml.model = "gpt2" with their tokens, merges and token types;
 * the pre-tokenizer family is recognised from the split regex the file
 * declares (a regex hearth does not know is refused rather than guessed).
 * Added tokens marked special become control tokens, the others
 * user-defined.  BOS/EOS/padding come from tokenizer_config.json, falling
 * back to config.json's ids, and the chat template is carried over.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "util/error.h"

/* GGUF token types, as llama.cpp numbers them. */
enum {
    TOKEN_TYPE_NORMAL = 1,
    TOKEN_TYPE_UNKNOWN = 2,
    TOKEN_TYPE_CONTROL = 3,
    TOKEN_TYPE_USER_DEFINED = 4,
    TOKEN_TYPE_UNUSED = 5,
    TOKEN_TYPE_BYTE = 6,
};

/* Split regexes of the pre-tokenizer families, as tokenizer.json writes them. */
static const struct {
    const char *regex;
    const char *pre;
} known_splits[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "qwen2"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "llama-bpe"},
};

static json_t *load_json(const char *path, hearth_error *err) {
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (!j) {
        error_set(err, HEARTH_ERR_BAD_MODEL, "%s: %s (line %d)", path, jerr.text, jerr.line);
    }
    return j;
}

/* Finds the pre-tokenizer family of a tokenizer.json's pre_tokenizer. */
static hearth_status detect_pre(const json_t *pre, const char **out, hearth_error *err) {
    const char *type = json_string_value(json_object_get(pre, "type"));
    if (type && !strcmp(type, "ByteLevel")) {
        if (json_is_true(json_object_get(pre, "use_regex"))) {
            *out = "gpt-2";
            return HEARTH_OK;
        }
    } else if (type && !strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(pre, "pretokenizers");
        size_t i;
        const json_t *item;
        json_array_foreach(list, i, item) {
            const char *t = json_string_value(json_object_get(item, "type"));
            if (!t || strcmp(t, "Split") != 0) continue;
            const char *re =
                json_string_value(json_object_get(json_object_get(item, "pattern"), "Regex"));
            for (size_t k = 0; re && k < sizeof known_splits / sizeof known_splits[0]; k++) {
                if (!strcmp(re, known_splits[k].regex)) {
                    *out = known_splits[k].pre;
                    return HEARTH_OK;
                }
            }
            return error_set(err, HEARTH_ERR_UNSUPPORTED,
                             "tokenizer.json splits with a regex hearth does not know: %.120s",
                             re ? re : "(none)");
        }
    }
    return error_set(err, HEARTH_ERR_UNSUPPORTED,
                     "tokenizer.json has a pre-tokenizer hearth does not know (type %s)",
                     type ? type : "none");
}

/* The text of a special-token setting: a string or {"content": string}. */
static const char *token_text(const json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

/* An id from config.json (an integer or the first of a list), or -1. */
static long long config_id(const json_t *config, const char *key) {
    const json_t *v = json_object_get(config, key);
    if (json_is_array(v)) v = json_array_get(v, 0);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

typedef struct vocab_build {
    uint64_t n;
    char **text;   /* (n) owned copies, NULL for a gap */
    int32_t *type; /* (n) */
} vocab_build;

static void vocab_free(vocab_build *v) {
    for (uint64_t i = 0; v->text && i < v->n; i++) free(v->text[i]);
    free(v->text);
    free(v->type);
}

static hearth_status vocab_put(vocab_build *v, json_int_t id, const char *text, int32_t type,
                               hearth_error *err) {
    if (id < 0 || (uint64_t)id >= v->n) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "token '%.40s' has id %lld outside 0..%llu",
                         text, (long long)id, (unsigned long long)v->n - 1);
    }
    char *copy = strdup(text);
    if (!copy) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    free(v->text[id]);
    v->text[id] = copy;
    v->type[id] = type;
    return HEARTH_OK;
}

/* Looks a token's text up among the vocabulary (linear: used a few times). */
static long long vocab_find(const vocab_build *v, const char *text) {
    if (!text) return -1;
    for (uint64_t i = 0; i < v->n; i++) {
        if (v->text[i] && !strcmp(v->text[i], text)) return (long long)i;
    }
    return -1;
}

/* Collects merges as "a b" strings (either stored form). */
static hearth_status write_merges(gguf_writer *w, const json_t *merges, hearth_error *err) {
    size_t n = json_array_size(merges);
    char **strs = calloc(n ? n : 1, sizeof *strs);
    if (!strs) return error_set(err, HEARTH_ERR_NOMEM, "out of memory for %zu merges", n);
    hearth_status st = HEARTH_OK;
    for (size_t i = 0; i < n && st == HEARTH_OK; i++) {
        const json_t *m = json_array_get(merges, i);
        if (json_is_string(m)) {
            strs[i] = strdup(json_string_value(m));
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            const char *a = json_string_value(json_array_get(m, 0));
            const char *b = json_string_value(json_array_get(m, 1));
            size_t la = strlen(a), lb = strlen(b);
            strs[i] = malloc(la + lb + 2);
            if (strs[i]) {
                memcpy(strs[i], a, la);
                strs[i][la] = ' ';
                memcpy(strs[i] + la + 1, b, lb + 1);
            }
        } else {
            st =
                error_set(err, HEARTH_ERR_BAD_MODEL, "merge #%zu is neither \"a b\" nor [a, b]", i);
            break;
        }
        if (!strs[i]) st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    if (st == HEARTH_OK) {
        st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)strs, NULL, n,
                                     err);
    }
    for (size_t i = 0; i < n; i++) free(strs[i]);
    free(strs);
    return st;
}

/* Sets tokenizer.ggml.<key>_token_id from tokenizer_config (text) or config
 * (id); returns the id or -1. */
static long long special_id(gguf_writer *w, const vocab_build *v, const json_t *tcfg,
                            const json_t *config, const char *name, hearth_error *err,
                            hearth_status *st) {
    char key[64], cfg_key[64];
    snprintf(key, sizeof key, "%s_token", name);
    snprintf(cfg_key, sizeof cfg_key, "%s_token_id", name);
    long long id = vocab_find(v, token_text(json_object_get(tcfg, key)));
    if (id < 0) id = config_id(config, cfg_key);
    if (id >= 0 && (uint64_t)id < v->n && *st == HEARTH_OK) {
        char gkey[80];
        snprintf(gkey, sizeof gkey, "tokenizer.ggml.%s_token_id", name);
        *st = gguf_writer_set_u32(w, gkey, (uint32_t)id, err);
    }
    return id;
}

hearth_status hf_tokenizer_to_gguf(gguf_writer *w, const char *tokenizer_json,
                                   const char *tokenizer_config, const char *config_json,
                                   uint32_t n_vocab, hearth_error *err) {
    json_t *tok = load_json(tokenizer_json, err);
    if (!tok) return err ? err->code : HEARTH_ERR_BAD_MODEL;
    json_t *tcfg = tokenizer_config ? json_load_file(tokenizer_config, 0, NULL) : NULL;
    json_t *config = config_json ? json_load_file(config_json, 0, NULL) : NULL;
    vocab_build v = {0, NULL, NULL};
    hearth_status st = HEARTH_OK;

    const json_t *model = json_object_get(tok, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    const json_t *added = json_object_get(tok, "added_tokens");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    const char *pre = NULL;
    if (!mtype || strcmp(mtype, "BPE") != 0 || !json_is_object(vocab) || !json_is_array(merges)) {
        st = error_set(err, HEARTH_ERR_UNSUPPORTED,
                       "%s: hearth converts BPE tokenizers with a vocab and merges (model type "
                       "%s)",
                       tokenizer_json, mtype ? mtype : "missing");
    } else if (json_is_true(json_object_get(model, "byte_fallback"))) {
        st = error_set(err, HEARTH_ERR_UNSUPPORTED,
                       "%s: SentencePiece-style tokenizers (byte_fallback) are converted from "
                       "tokenizer.model, not tokenizer.json",
                       tokenizer_json);
    } else {
        st = detect_pre(json_object_get(tok, "pre_tokenizer"), &pre, err);
    }

    /* The vocabulary size: the largest id + 1, at least n_vocab. */
    uint64_t n = n_vocab;
    const char *text;
    json_t *idv;
    if (st == HEARTH_OK) {
        json_object_foreach((json_t *)vocab, text, idv) {
            if (!json_is_integer(idv) || json_integer_value(idv) < 0 ||
                json_integer_value(idv) >= (1 << 24)) {
                st = error_set(err, HEARTH_ERR_BAD_MODEL, "token '%.40s' has a bad id", text);
                break;
            }
            if ((uint64_t)json_integer_value(idv) + 1 > n)
                n = (uint64_t)json_integer_value(idv) + 1;
        }
        size_t i;
        json_t *a;
        json_array_foreach(added, i, a) {
            json_int_t id = json_integer_value(json_object_get(a, "id"));
            if (id >= 0 && id < (1 << 24) && (uint64_t)id + 1 > n) n = (uint64_t)id + 1;
        }
    }
    if (st == HEARTH_OK) {
        v.n = n;
        v.text = calloc(n ? n : 1, sizeof *v.text);
        v.type = calloc(n ? n : 1, sizeof *v.type);
        if (!v.text || !v.type) st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    if (st == HEARTH_OK) {
        json_object_foreach((json_t *)vocab, text, idv) {
            st = vocab_put(&v, json_integer_value(idv), text, TOKEN_TYPE_NORMAL, err);
            if (st != HEARTH_OK) break;
        }
    }
    if (st == HEARTH_OK) {
        size_t i;
        json_t *a;
        json_array_foreach(added, i, a) {
            const char *content = json_string_value(json_object_get(a, "content"));
            if (!content || !json_is_integer(json_object_get(a, "id"))) {
                st =
                    error_set(err, HEARTH_ERR_BAD_MODEL, "added token #%zu lacks id or content", i);
                break;
            }
            int32_t type = json_is_true(json_object_get(a, "special")) ? TOKEN_TYPE_CONTROL
                                                                       : TOKEN_TYPE_USER_DEFINED;
            st = vocab_put(&v, json_integer_value(json_object_get(a, "id")), content, type, err);
            if (st != HEARTH_OK) break;
        }
    }
    /* Gaps (ids no token uses, padding up to the embedding rows) become unused tokens. */
    for (uint64_t i = 0; st == HEARTH_OK && i < v.n; i++) {
        if (v.text[i]) continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%llu]", (unsigned long long)i);
        v.text[i] = strdup(pad);
        v.type[i] = TOKEN_TYPE_UNUSED;
        if (!v.text[i]) st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }

    if (st == HEARTH_OK) st = gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", err);
    if (st == HEARTH_OK) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, err);
    if (st == HEARTH_OK) {
        st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.text, NULL,
                                     v.n, err);
    }
    if (st == HEARTH_OK) {
        st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v.type, v.n, err);
    }
    if (st == HEARTH_OK) st = write_merges(w, merges, err);

    long long bos = special_id(w, &v, tcfg, config, "bos", err, &st);
    special_id(w, &v, tcfg, config, "eos", err, &st);
    special_id(w, &v, tcfg, config, "pad", err, &st);
    special_id(w, &v, tcfg, config, "unk", err, &st);
    if (st == HEARTH_OK) {
        const json_t *add_bos = json_object_get(tcfg, "add_bos_token");
        bool want_bos = json_is_boolean(add_bos) ? json_is_true(add_bos) : bos >= 0 && tcfg;
        st = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", want_bos, err);
    }
    if (st == HEARTH_OK) {
        const json_t *add_eos = json_object_get(tcfg, "add_eos_token");
        st = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", json_is_true(add_eos), err);
    }
    const json_t *tmpl = json_object_get(tcfg, "chat_template");
    if (json_is_array(tmpl)) {
        /* Named templates: keep the default one. */
        size_t i;
        const json_t *t;
        const json_t *found = NULL;
        json_array_foreach(tmpl, i, t) {
            const char *name = json_string_value(json_object_get(t, "name"));
            if (name && !strcmp(name, "default")) found = json_object_get(t, "template");
        }
        tmpl = found;
    }
    if (st == HEARTH_OK && json_is_string(tmpl)) {
        st = gguf_writer_set_str(w, "tokenizer.chat_template", json_string_value(tmpl), err);
    }
    vocab_free(&v);
    json_decref(tok);
    json_decref(tcfg);
    json_decref(config);
    return st;
}

hearth_status convert_hf_tokenizer(const char *tokenizer_json, const char *tokenizer_config,
                                   const char *out_path, hearth_error *err) {
    gguf_writer *w;
    hearth_status st = gguf_writer_create(&w, err);
    if (st != HEARTH_OK) return st;
    st = gguf_writer_set_str(w, "general.architecture", "vocab-only", err);
    if (st == HEARTH_OK)
        st = hf_tokenizer_to_gguf(w, tokenizer_json, tokenizer_config, NULL, 0, err);
    if (st == HEARTH_OK) st = gguf_writer_write_file(w, out_path, NULL, NULL, err);
    gguf_writer_free(w);
    return st;
}
