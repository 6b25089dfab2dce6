/* fuzz_gguf.c — libFuzzer target for the GGUF reader and the tokenizer
 * loader that reads GGUF metadata.
 *
 * Any input must either open cleanly or fail with an error; on success
 * every key, array element and tensor is touched so the sanitizers see any
 * pointer that escaped the file, and a tokenizer is built from the metadata
 * when it has one.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = NULL;
    hearth_error err;
    if (gguf_open_memory(data, size, &f, &err) != HEARTH_OK) return 0;
    uint64_t h = 0;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        h += kv->key.len ? (uint8_t)kv->key.ptr[kv->key.len - 1] : 0;
        if (kv->type == GGUF_TYPE_STRING && kv->v.str.len) h += (uint8_t)kv->v.str.ptr[0];
        if (kv->type != GGUF_TYPE_ARRAY) continue;
        for (uint64_t j = 0; j < kv->v.arr.n && j < 4096; j++) {
            if (kv->v.arr.strs) {
                h += kv->v.arr.strs[j].len ? (uint8_t)kv->v.arr.strs[j].ptr[0] : 0;
            } else if (gguf_type_size(kv->v.arr.type)) {
                h += (uint64_t)gguf_arr_i64(kv, j);
            }
        }
        char key[80];
        gguf_str_copy(kv->key, key, sizeof key);
        if (gguf_find(f, key) == NULL && kv->key.len < sizeof key) __builtin_trap();
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (t->nbytes)
            h += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
    }
    hearth_tokenizer *tok = NULL;
    if (tokenizer_create(f, &tok, &err) == HEARTH_OK) {
        hearth_token ids[64];
        size_t n = 0;
        const char *text = "Hello world, 123 <s> \xc3\xa1";
        hearth_tokenize(tok, text, strlen(text), HEARTH_TOKENIZE_ADD_SPECIAL, ids, 64, &n, &err);
        hearth_tokenizer_free(tok);
        h += n;
    }
    sink = h;
    gguf_close(f);
    return 0;
}
