/* gguf_write.c — writing GGUF v3 files.
 *
 * Metadata is appended to a byte buffer as each key is set; tensors are
 * recorded (name, type, shape, data pointer) and laid out at write time,
 * each at an offset aligned to GGUF_DEFAULT_ALIGNMENT.  The result is read
 * back by gguf_open, which the tests use to check the round trip.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "util/dtype.h"
#include "util/error.h"

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static bool bytes_put(bytes *b, const void *src, size_t n) {
    if (n > SIZE_MAX - b->n) return false;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) {
            if (cap > SIZE_MAX / 2) return false;
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
    return true;
}

static bool bytes_u32(bytes *b, uint32_t v) {
    return bytes_put(b, &v, 4);
}
static bool bytes_u64(bytes *b, uint64_t v) {
    return bytes_put(b, &v, 8);
}
static bool bytes_str(bytes *b, const char *s, uint64_t n) {
    return bytes_u64(b, n) && bytes_put(b, s, (size_t)n);
}

typedef struct pending_tensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;
    const void *data; /* or NULL when fill produces the bytes */
    gguf_fill_fn fill;
    void *fill_arg;
} pending_tensor;

struct gguf_writer {
    bytes kv; /* serialized metadata entries */
    uint64_t n_kv;
    char **keys; /* (n_kv) for duplicate checks */
    pending_tensor *tensors;
    uint64_t n_tensors, cap_tensors;
    uint64_t alignment; /* general.alignment when set, else the default */
    uint64_t data_size; /* aligned size of the data section (set by layout) */
};

hearth_status gguf_writer_create(gguf_writer **out, hearth_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return error_set(err, HEARTH_ERR_NOMEM, "out of memory for a GGUF writer");
    return HEARTH_OK;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->keys);
    free(w->tensors);
    free(w->kv.p);
    free(w);
}

static hearth_status nomem(hearth_error *err) {
    return error_set(err, HEARTH_ERR_NOMEM, "out of memory while building a GGUF file");
}

/* Starts a metadata entry: checks the key is new, writes key and type. */
static hearth_status kv_begin(gguf_writer *w, const char *key, gguf_type type, hearth_error *err) {
    for (uint64_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->keys[i], key)) {
            return error_set(err, HEARTH_ERR_INVALID_ARG, "metadata key '%s' set twice", key);
        }
    }
    char **keys = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *keys);
    if (!keys) return nomem(err);
    w->keys = keys;
    size_t n = strlen(key);
    if (n == 0) return error_set(err, HEARTH_ERR_INVALID_ARG, "empty metadata key");
    char *copy = malloc(n + 1);
    if (!copy) return nomem(err);
    memcpy(copy, key, n + 1);
    if (!bytes_str(&w->kv, key, n) || !bytes_u32(&w->kv, (uint32_t)type)) {
        free(copy);
        return nomem(err);
    }
    w->keys[w->n_kv++] = copy;
    return HEARTH_OK;
}

static hearth_status kv_scalar(gguf_writer *w, const char *key, gguf_type type, const void *v,
                               hearth_error *err) {
    hearth_status st = kv_begin(w, key, type, err);
    if (st != HEARTH_OK) return st;
    return bytes_put(&w->kv, v, gguf_type_size(type)) ? HEARTH_OK : nomem(err);
}

hearth_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, hearth_error *err) {
    /* The alignment the file declares is the one its tensors must follow. */
    if (!strcmp(key, "general.alignment") && v != 0 && (v & (v - 1)) == 0) w->alignment = v;
    return kv_scalar(w, key, GGUF_TYPE_UINT32, &v, err);
}
hearth_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, hearth_error *err) {
    return kv_scalar(w, key, GGUF_TYPE_INT32, &v, err);
}
hearth_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v, hearth_error *err) {
    return kv_scalar(w, key, GGUF_TYPE_UINT64, &v, err);
}
hearth_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v, hearth_error *err) {
    return kv_scalar(w, key, GGUF_TYPE_FLOAT32, &v, err);
}
hearth_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, hearth_error *err) {
    uint8_t b = v ? 1 : 0;
    return kv_scalar(w, key, GGUF_TYPE_BOOL, &b, err);
}

hearth_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v,
                                  hearth_error *err) {
    hearth_status st = kv_begin(w, key, GGUF_TYPE_STRING, err);
    if (st != HEARTH_OK) return st;
    return bytes_str(&w->kv, v, strlen(v)) ? HEARTH_OK : nomem(err);
}

hearth_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem, const void *data,
                                  uint64_t n, hearth_error *err) {
    uint32_t size = gguf_type_size(elem);
    if (size == 0 || n > SIZE_MAX / size) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "metadata '%s': bad array element type %s",
                         key, gguf_type_name(elem));
    }
    hearth_status st = kv_begin(w, key, GGUF_TYPE_ARRAY, err);
    if (st != HEARTH_OK) return st;
    if (!bytes_u32(&w->kv, (uint32_t)elem) || !bytes_u64(&w->kv, n) ||
        !bytes_put(&w->kv, data, (size_t)(n * size))) {
        return nomem(err);
    }
    return HEARTH_OK;
}

hearth_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                                      const uint64_t *lens, uint64_t n, hearth_error *err) {
    hearth_status st = kv_begin(w, key, GGUF_TYPE_ARRAY, err);
    if (st != HEARTH_OK) return st;
    if (!bytes_u32(&w->kv, GGUF_TYPE_STRING) || !bytes_u64(&w->kv, n)) return nomem(err);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = lens ? lens[i] : strlen(strs[i]);
        if (!bytes_str(&w->kv, strs[i], len)) return nomem(err);
    }
    return HEARTH_OK;
}

/* Bytes taken in the file by the elements of an array value that starts
 * at p (element type and count already read), for arrays of strings or of
 * arrays.  The file was validated by gguf_open, so the walk stays inside. */
static uint64_t array_span(gguf_type elem, uint64_t n, const uint8_t *p) {
    uint64_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        if (elem == GGUF_TYPE_STRING) {
            memcpy(&len, p + off, 8);
            off += 8 + len;
            continue;
        }
        uint32_t inner;
        memcpy(&inner, p + off, 4);
        memcpy(&len, p + off + 4, 8);
        off += 12;
        uint32_t size = gguf_type_size((gguf_type)inner);
        off += size ? len * size : array_span((gguf_type)inner, len, p + off);
    }
    return off;
}

hearth_status gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv, hearth_error *err) {
    char *key = malloc((size_t)kv->key.len + 1);
    if (!key) return nomem(err);
    gguf_str_copy(kv->key, key, (size_t)kv->key.len + 1);
    hearth_status st = HEARTH_OK;
    uint32_t size = gguf_type_size(kv->type);
    if (kv->type == GGUF_TYPE_UINT32) {
        st = gguf_writer_set_u32(w, key, (uint32_t)kv->v.u64, err); /* may set the alignment */
    } else if (size > 0) {
        /* The value union holds it widened; the file's little-endian bytes
         * are its low bytes (floats are re-narrowed). */
        uint8_t raw[8];
        if (kv->type == GGUF_TYPE_FLOAT32) {
            float f = (float)kv->v.f64;
            memcpy(raw, &f, 4);
        } else if (kv->type == GGUF_TYPE_FLOAT64) {
            memcpy(raw, &kv->v.f64, 8);
        } else {
            memcpy(raw, &kv->v.u64, 8);
        }
        st = kv_scalar(w, key, kv->type, raw, err);
    } else if (kv->type == GGUF_TYPE_STRING) {
        st = kv_begin(w, key, GGUF_TYPE_STRING, err);
        if (st == HEARTH_OK && !bytes_str(&w->kv, kv->v.str.ptr, kv->v.str.len)) st = nomem(err);
    } else {
        gguf_type elem = kv->v.arr.type;
        uint32_t esize = gguf_type_size(elem);
        uint64_t span = 0;
        if (elem == GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < kv->v.arr.n; i++) span += 8 + kv->v.arr.strs[i].len;
        } else {
            span = esize ? kv->v.arr.n * esize : array_span(elem, kv->v.arr.n, kv->v.arr.data);
        }
        st = kv_begin(w, key, GGUF_TYPE_ARRAY, err);
        if (st == HEARTH_OK &&
            (!bytes_u32(&w->kv, (uint32_t)elem) || !bytes_u64(&w->kv, kv->v.arr.n))) {
            st = nomem(err);
        }
        if (st == HEARTH_OK && elem == GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < kv->v.arr.n && st == HEARTH_OK; i++) {
                if (!bytes_str(&w->kv, kv->v.arr.strs[i].ptr, kv->v.arr.strs[i].len)) {
                    st = nomem(err);
                }
            }
        } else if (st == HEARTH_OK && span > SIZE_MAX) {
            st = nomem(err);
        } else if (st == HEARTH_OK && !bytes_put(&w->kv, kv->v.arr.data, (size_t)span)) {
            st = nomem(err);
        }
    }
    free(key);
    return st;
}

static hearth_status add_pending(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                 const uint64_t *ne, const void *data, gguf_fill_fn fill,
                                 void *fill_arg, hearth_error *err) {
    size_t name_len = strlen(name);
    if (name_len == 0 || name_len > GGUF_MAX_NAME_LEN || n_dims == 0 || n_dims > GGUF_MAX_DIMS ||
        !dtype_is_known(type)) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "tensor '%s': bad name length, dimension count %u or type %u", name,
                         n_dims, type);
    }
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        if (!strcmp(w->tensors[i].name, name)) {
            return error_set(err, HEARTH_ERR_INVALID_ARG, "tensor '%s' added twice", name);
        }
    }
    uint64_t rows = 1;
    for (uint32_t d = 1; d < n_dims; d++) {
        if (ne[d] == 0 || rows > UINT64_MAX / ne[d]) {
            return error_set(err, HEARTH_ERR_INVALID_ARG, "tensor '%s': bad shape", name);
        }
        rows *= ne[d];
    }
    uint64_t row = dtype_row_bytes(type, ne[0]);
    if (row == 0 || rows > UINT64_MAX / row) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "tensor '%s': %llu elements per row is not a whole number of %s blocks",
                         name, (unsigned long long)ne[0], hearth_dtype_name(type));
    }
    if (w->n_tensors == w->cap_tensors) {
        uint64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
        pending_tensor *t = realloc(w->tensors, (size_t)cap * sizeof *t);
        if (!t) return nomem(err);
        w->tensors = t;
        w->cap_tensors = cap;
    }
    pending_tensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = malloc(name_len + 1);
    if (!t->name) return nomem(err);
    memcpy(t->name, name, name_len + 1);
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = row * rows;
    t->data = data;
    t->fill = fill;
    t->fill_arg = fill_arg;
    w->n_tensors++;
    return HEARTH_OK;
}

hearth_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                                     uint32_t n_dims, const uint64_t *ne, const void *data,
                                     hearth_error *err) {
    return add_pending(w, name, type, n_dims, ne, data, NULL, NULL, err);
}

hearth_status gguf_writer_add_tensor_fill(gguf_writer *w, const char *name, uint32_t type,
                                          uint32_t n_dims, const uint64_t *ne, gguf_fill_fn fill,
                                          void *arg, hearth_error *err) {
    return add_pending(w, name, type, n_dims, ne, NULL, fill, arg, err);
}

/* The bytes of tensor t: its data, or what fill writes into *buf (grown as
 * needed).  NULL after an error. */
static const void *tensor_bytes(const pending_tensor *t, uint8_t **buf, uint64_t *cap,
                                hearth_error *err) {
    if (!t->fill) return t->data;
    if (t->nbytes > *cap) {
        uint8_t *p = realloc(*buf, (size_t)(t->nbytes ? t->nbytes : 1));
        if (!p) {
            error_set(err, HEARTH_ERR_NOMEM, "out of memory for tensor '%s' (%llu bytes)", t->name,
                      (unsigned long long)t->nbytes);
            return NULL;
        }
        *buf = p;
        *cap = t->nbytes;
    }
    if (t->fill(t->fill_arg, *buf, t->nbytes, err) != HEARTH_OK) return NULL;
    return *buf;
}

static uint64_t writer_alignment(const gguf_writer *w) {
    return w->alignment ? w->alignment : GGUF_DEFAULT_ALIGNMENT;
}

static size_t tensor_pad(const gguf_writer *w, const pending_tensor *t) {
    uint64_t a = writer_alignment(w);
    return (size_t)((a - t->nbytes % a) % a);
}

/* Gives each tensor its aligned offset in the data section. */
static void layout(gguf_writer *w) {
    w->data_size = 0;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        w->tensors[i].offset = w->data_size;
        w->data_size += w->tensors[i].nbytes + tensor_pad(w, &w->tensors[i]);
    }
}

/* Serializes header, metadata and tensor infos, padded to the alignment. */
static hearth_status build_head(gguf_writer *w, bytes *h, hearth_error *err) {
    layout(w);
    bool ok = bytes_put(h, "GGUF", 4) && bytes_u32(h, 3) && bytes_u64(h, w->n_tensors) &&
              bytes_u64(h, w->n_kv) && bytes_put(h, w->kv.p, w->kv.n);
    for (uint64_t i = 0; ok && i < w->n_tensors; i++) {
        const pending_tensor *t = &w->tensors[i];
        ok = bytes_str(h, t->name, strlen(t->name)) && bytes_u32(h, t->n_dims);
        for (uint32_t d = 0; ok && d < t->n_dims; d++) ok = bytes_u64(h, t->ne[d]);
        ok = ok && bytes_u32(h, t->type) && bytes_u64(h, t->offset);
    }
    uint64_t a = writer_alignment(w);
    for (size_t pad = (size_t)((a - h->n % a) % a); ok && pad > 0; pad--) ok = bytes_put(h, "", 1);
    return ok ? HEARTH_OK : nomem(err);
}

/* Writes n zero bytes of padding. */
static bool put_zeros(bytes *b, FILE *fp, size_t n) {
    static const uint8_t zeros[64] = {0};
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        if (b ? !bytes_put(b, zeros, k) : fwrite(zeros, 1, k, fp) != k) return false;
        n -= k;
    }
    return true;
}

hearth_status gguf_writer_write_memory(gguf_writer *w, uint8_t **out, size_t *len,
                                       hearth_error *err) {
    *out = NULL;
    bytes h = {0};
    hearth_status st = build_head(w, &h, err);
    uint8_t *buf = NULL;
    uint64_t cap = 0;
    for (uint64_t i = 0; st == HEARTH_OK && i < w->n_tensors; i++) {
        const pending_tensor *t = &w->tensors[i];
        const void *src = tensor_bytes(t, &buf, &cap, err);
        if (!src) {
            st = err ? err->code : HEARTH_ERR_INTERNAL;
        } else if (!bytes_put(&h, src, (size_t)t->nbytes) ||
                   !put_zeros(&h, NULL, tensor_pad(w, t))) {
            st = nomem(err);
        }
    }
    free(buf);
    if (st != HEARTH_OK) {
        free(h.p);
        return st;
    }
    *out = h.p;
    *len = h.n;
    return HEARTH_OK;
}

hearth_status gguf_writer_write_file(gguf_writer *w, const char *path,
                                     void (*progress)(double done, void *arg), void *arg,
                                     hearth_error *err) {
    bytes h = {0};
    hearth_status st = build_head(w, &h, err);
    if (st != HEARTH_OK) return st;
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        free(h.p);
        return error_set(err, HEARTH_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    bool ok = fwrite(h.p, 1, h.n, fp) == h.n;
    free(h.p);
    uint64_t written = 0, cap = 0;
    uint8_t *buf = NULL;
    for (uint64_t i = 0; ok && i < w->n_tensors; i++) {
        const pending_tensor *t = &w->tensors[i];
        const void *src = tensor_bytes(t, &buf, &cap, err);
        if (!src) {
            free(buf);
            fclose(fp);
            remove(path);
            return err ? err->code : HEARTH_ERR_INTERNAL;
        }
        size_t pad = tensor_pad(w, t);
        ok = fwrite(src, 1, (size_t)t->nbytes, fp) == t->nbytes && put_zeros(NULL, fp, pad);
        written += t->nbytes + pad;
        if (progress && w->data_size) progress((double)written / (double)w->data_size, arg);
    }
    free(buf);
    if (fclose(fp) != 0) ok = false;
    if (!ok) {
        remove(path);
        return error_set(err, HEARTH_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return HEARTH_OK;
}
