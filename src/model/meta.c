/* meta.c — read-only access to a loaded model's GGUF metadata.
 *
 * The server needs a few keys the forward pass never reads (the chat
 * template above all); this hands them out as views into the mapped file
 * instead of copying every string at load time.
 */
#include "hearth.h"
#include "model/model.h"

const char *hearth_model_meta_str(const hearth_model *model, const char *key, size_t *len) {
    if (len) *len = 0;
    if (!model || !model->file || !key) return NULL;
    const gguf_kv *kv = gguf_find(model->file, key);
    if (!kv || kv->type != GGUF_TYPE_STRING) return NULL;
    if (len) *len = (size_t)kv->v.str.len;
    return kv->v.str.ptr;
}
