/* gguf.c — a validating GGUF v2/v3 reader.
 *
 * The whole file is checked once, up front, by a cursor that never reads a
 * byte it has not proven to be inside the file: every count, length, offset
 * and size is compared against the bytes that remain, in 64-bit arithmetic
 * with explicit overflow checks, before it is used.  Allocation sizes are
 * therefore bounded by the file size.  Error messages say what was wrong,
 * where (offset, key or tensor) and which limit it broke.
 */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/dtype.h"
#include "util/error.h"

/* ---------------------------------------------------------------- cursor */

typedef struct gguf_cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t off;
    hearth_error *err;
} gguf_cursor;

static uint64_t cursor_left(const gguf_cursor *c) {
    return c->size - c->off;
}

/* Fails unless n more bytes are available; what names the field for the error. */
static hearth_status cursor_need(gguf_cursor *c, uint64_t n, const char *what) {
    if (n > cursor_left(c)) {
        return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                         "truncated file: %s needs %llu bytes at offset %llu but the file has "
                         "%llu bytes",
                         what, (unsigned long long)n, (unsigned long long)c->off,
                         (unsigned long long)c->size);
    }
    return HEARTH_OK;
}

static hearth_status cursor_read(gguf_cursor *c, void *dst, uint64_t n, const char *what) {
    hearth_status st = cursor_need(c, n, what);
    if (st != HEARTH_OK) return st;
    memcpy(dst, c->base + c->off, (size_t)n);
    c->off += n;
    return HEARTH_OK;
}

static hearth_status cursor_u32(gguf_cursor *c, uint32_t *v, const char *what) {
    return cursor_read(c, v, sizeof *v, what);
}

static hearth_status cursor_u64(gguf_cursor *c, uint64_t *v, const char *what) {
    return cursor_read(c, v, sizeof *v, what);
}

/* A length-prefixed string of at most max_len bytes. */
static hearth_status cursor_str(gguf_cursor *c, gguf_str *s, uint64_t max_len, const char *what) {
    uint64_t len;
    uint64_t at = c->off;
    hearth_status st = cursor_u64(c, &len, what);
    if (st != HEARTH_OK) return st;
    if (len > max_len) {
        return error_set(
            c->err, HEARTH_ERR_BAD_MODEL, "%s at offset %llu has length %llu, above the limit %llu",
            what, (unsigned long long)at, (unsigned long long)len, (unsigned long long)max_len);
    }
    st = cursor_need(c, len, what);
    if (st != HEARTH_OK) return st;
    s->ptr = (const char *)(c->base + c->off);
    s->len = len;
    c->off += len;
    return HEARTH_OK;
}

/* ---------------------------------------------------------------- types */

uint32_t gguf_type_size(gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64: return 8;
    case GGUF_TYPE_STRING:
    case GGUF_TYPE_ARRAY:
    case GGUF_TYPE_COUNT: return 0;
    }
    return 0;
}

const char *gguf_type_name(gguf_type t) {
    static const char *const names[GGUF_TYPE_COUNT] = {
        "u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
        "bool", "string", "array", "u64", "i64", "f64",
    };
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "unknown";
}

/* Decodes one fixed-size scalar at p (unaligned) into kv's value union. */
static void scalar_decode(gguf_type t, const uint8_t *p, gguf_kv *kv) {
    switch (t) {
    case GGUF_TYPE_UINT8: kv->v.u64 = p[0]; break;
    case GGUF_TYPE_INT8: kv->v.i64 = (int8_t)p[0]; break;
    case GGUF_TYPE_BOOL: kv->v.u64 = p[0] != 0; break;
    case GGUF_TYPE_UINT16: {
        uint16_t x;
        memcpy(&x, p, 2);
        kv->v.u64 = x;
        break;
    }
    case GGUF_TYPE_INT16: {
        int16_t x;
        memcpy(&x, p, 2);
        kv->v.i64 = x;
        break;
    }
    case GGUF_TYPE_UINT32: {
        uint32_t x;
        memcpy(&x, p, 4);
        kv->v.u64 = x;
        break;
    }
    case GGUF_TYPE_INT32: {
        int32_t x;
        memcpy(&x, p, 4);
        kv->v.i64 = x;
        break;
    }
    case GGUF_TYPE_FLOAT32: {
        float x;
        memcpy(&x, p, 4);
        kv->v.f64 = x;
        break;
    }
    case GGUF_TYPE_UINT64: memcpy(&kv->v.u64, p, 8); break;
    case GGUF_TYPE_INT64: memcpy(&kv->v.i64, p, 8); break;
    case GGUF_TYPE_FLOAT64: memcpy(&kv->v.f64, p, 8); break;
    case GGUF_TYPE_STRING:
    case GGUF_TYPE_ARRAY:
    case GGUF_TYPE_COUNT: break;
    }
}

/* ---------------------------------------------------------------- name table */

/* Open-addressing hash set over key and tensor names, for duplicate checks
 * and lookups.  Slots hold index + 1 (0 = empty). */
typedef struct name_table {
    uint64_t *slots;
    uint64_t cap; /* power of two */
} name_table;

static uint64_t name_hash(const char *p, uint64_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static hearth_status name_table_init(name_table *t, uint64_t n, hearth_error *err) {
    uint64_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    t->slots = calloc((size_t)cap, sizeof *t->slots);
    t->cap = cap;
    if (!t->slots)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for %llu names",
                         (unsigned long long)n);
    return HEARTH_OK;
}

static bool str_eq2(gguf_str a, const char *p, uint64_t n) {
    return a.len == n && memcmp(a.ptr, p, (size_t)n) == 0;
}

/* Returns the slot for name: either empty or holding the same name. */
static uint64_t *name_table_slot(const name_table *t, const char *p, uint64_t n,
                                 gguf_str (*name_of)(const void *items, uint64_t i),
                                 const void *items) {
    uint64_t mask = t->cap - 1;
    for (uint64_t i = name_hash(p, n) & mask;; i = (i + 1) & mask) {
        uint64_t *slot = &t->slots[i];
        if (*slot == 0 || str_eq2(name_of(items, *slot - 1), p, n)) return slot;
    }
}

static gguf_str kv_name(const void *items, uint64_t i) {
    return ((const gguf_kv *)items)[i].key;
}
static gguf_str tensor_name(const void *items, uint64_t i) {
    return ((const gguf_tensor *)items)[i].name;
}

/* The file keeps its two tables after the parse; they live past the public
 * struct so gguf.h stays simple. */
typedef struct gguf_file_impl {
    gguf_file pub;
    name_table kv_names;
    name_table tensor_names;
} gguf_file_impl;

/* ---------------------------------------------------------------- parsing */

/* Minimum bytes a metadata entry and a tensor descriptor take in the file,
 * used to reject absurd counts before allocating for them. */
#define GGUF_MIN_KV_BYTES     14u /* key length + 1 key byte + type + 1 value byte */
#define GGUF_MIN_TENSOR_BYTES 33u /* name length + 1 + n_dims + 1 dim + type + offset */

static hearth_status parse_value(gguf_cursor *c, gguf_kv *kv, gguf_type type, int depth,
                                 const char *what);

/* Validates an array value whose element type and count are read here. */
static hearth_status parse_array(gguf_cursor *c, gguf_kv *kv, int depth, const char *what) {
    uint32_t elem;
    uint64_t n;
    hearth_status st = cursor_u32(c, &elem, what);
    if (st == HEARTH_OK) st = cursor_u64(c, &n, what);
    if (st != HEARTH_OK) return st;
    if (elem >= GGUF_TYPE_COUNT) {
        return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                         "%s: unknown array element type %u at offset %llu", what, elem,
                         (unsigned long long)(c->off - 12));
    }
    kv->v.arr.type = (gguf_type)elem;
    kv->v.arr.n = n;
    kv->v.arr.data = c->base + c->off;
    kv->v.arr.strs = NULL;
    uint32_t size = gguf_type_size((gguf_type)elem);
    if (size > 0) {
        if (n > cursor_left(c) / size) {
            return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                             "%s: array of %llu %s elements at offset %llu runs past the end of "
                             "the file (%llu bytes left)",
                             what, (unsigned long long)n, gguf_type_name((gguf_type)elem),
                             (unsigned long long)c->off, (unsigned long long)cursor_left(c));
        }
        c->off += n * size;
        return HEARTH_OK;
    }
    /* Strings take at least 8 bytes each, nested arrays at least 12. */
    uint64_t min_elem = elem == GGUF_TYPE_STRING ? 8 : 12;
    if (n > cursor_left(c) / min_elem) {
        return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                         "%s: array count %llu at offset %llu cannot fit in the %llu bytes left",
                         what, (unsigned long long)n, (unsigned long long)c->off,
                         (unsigned long long)cursor_left(c));
    }
    if (elem == GGUF_TYPE_STRING) {
        kv->v.arr.strs = malloc((size_t)(n ? n : 1) * sizeof(gguf_str));
        if (!kv->v.arr.strs) {
            return error_set(c->err, HEARTH_ERR_NOMEM, "%s: out of memory for %llu strings", what,
                             (unsigned long long)n);
        }
        for (uint64_t i = 0; i < n; i++) {
            st = cursor_str(c, &kv->v.arr.strs[i], UINT64_MAX, what);
            if (st != HEARTH_OK) return st;
        }
        return HEARTH_OK;
    }
    if (depth >= GGUF_MAX_ARRAY_DEPTH) {
        return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                         "%s: arrays nested deeper than %d at offset %llu", what,
                         GGUF_MAX_ARRAY_DEPTH, (unsigned long long)c->off);
    }
    for (uint64_t i = 0; i < n; i++) {
        gguf_kv inner;
        memset(&inner, 0, sizeof inner);
        st = parse_value(c, &inner, GGUF_TYPE_ARRAY, depth + 1, what);
        if (inner.type == GGUF_TYPE_ARRAY) free(inner.v.arr.strs);
        if (st != HEARTH_OK) return st;
    }
    return HEARTH_OK;
}

static hearth_status parse_value(gguf_cursor *c, gguf_kv *kv, gguf_type type, int depth,
                                 const char *what) {
    kv->type = type;
    uint32_t size = gguf_type_size(type);
    if (size > 0) {
        hearth_status st = cursor_need(c, size, what);
        if (st != HEARTH_OK) return st;
        scalar_decode(type, c->base + c->off, kv);
        c->off += size;
        return HEARTH_OK;
    }
    if (type == GGUF_TYPE_STRING) return cursor_str(c, &kv->v.str, UINT64_MAX, what);
    return parse_array(c, kv, depth, what);
}

static hearth_status parse_kvs(gguf_cursor *c, gguf_file_impl *g) {
    gguf_file *f = &g->pub;
    hearth_status st = name_table_init(&g->kv_names, f->n_kv, c->err);
    if (st != HEARTH_OK) return st;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        char what[96];
        snprintf(what, sizeof what, "metadata entry #%llu key", (unsigned long long)i);
        st = cursor_str(c, &kv->key, GGUF_MAX_KEY_LEN, what);
        if (st != HEARTH_OK) return st;
        if (kv->key.len == 0 || memchr(kv->key.ptr, 0, (size_t)kv->key.len)) {
            return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                             "metadata entry #%llu has an empty key or one with a NUL byte",
                             (unsigned long long)i);
        }
        char keybuf[72];
        gguf_str_copy(kv->key, keybuf, sizeof keybuf);
        snprintf(what, sizeof what, "metadata '%s'", keybuf);
        uint32_t type;
        st = cursor_u32(c, &type, what);
        if (st != HEARTH_OK) return st;
        if (type >= GGUF_TYPE_COUNT) {
            return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                             "metadata '%s': unknown value type %u at offset %llu", keybuf, type,
                             (unsigned long long)(c->off - 4));
        }
        st = parse_value(c, kv, (gguf_type)type, 0, what);
        if (st != HEARTH_OK) return st;
        uint64_t *slot = name_table_slot(&g->kv_names, kv->key.ptr, kv->key.len, kv_name, f->kv);
        if (*slot != 0) {
            return error_set(c->err, HEARTH_ERR_BAD_MODEL, "metadata key '%s' appears twice",
                             keybuf);
        }
        *slot = i + 1;
    }
    return HEARTH_OK;
}

static hearth_status read_alignment(gguf_file *f, hearth_error *err) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find(f, "general.alignment");
    if (!kv) return HEARTH_OK;
    if (kv->type != GGUF_TYPE_UINT32) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "metadata 'general.alignment' has type %s, expected u32",
                         gguf_type_name(kv->type));
    }
    uint64_t a = kv->v.u64;
    if (a == 0 || (a & (a - 1)) != 0) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "metadata 'general.alignment' is %llu, not a power of two",
                         (unsigned long long)a);
    }
    f->alignment = a;
    return HEARTH_OK;
}

static hearth_status parse_tensors(gguf_cursor *c, gguf_file_impl *g) {
    gguf_file *f = &g->pub;
    hearth_status st = name_table_init(&g->tensor_names, f->n_tensors, c->err);
    if (st != HEARTH_OK) return st;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        char what[GGUF_MAX_NAME_LEN + 64];
        snprintf(what, sizeof what, "tensor #%llu name", (unsigned long long)i);
        st = cursor_str(c, &t->name, GGUF_MAX_NAME_LEN, what);
        if (st != HEARTH_OK) return st;
        if (t->name.len == 0 || memchr(t->name.ptr, 0, (size_t)t->name.len)) {
            return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                             "tensor #%llu has an empty name or one with a NUL byte",
                             (unsigned long long)i);
        }
        char name[GGUF_MAX_NAME_LEN + 1];
        gguf_str_copy(t->name, name, sizeof name);
        snprintf(what, sizeof what, "tensor '%s'", name);
        st = cursor_u32(c, &t->n_dims, what);
        if (st != HEARTH_OK) return st;
        if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) {
            return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                             "tensor '%s' has %u dimensions; the limit is 1 to %d", name, t->n_dims,
                             GGUF_MAX_DIMS);
        }
        uint64_t n_elems = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
            t->ne[d] = 1;
            if (d >= t->n_dims) continue;
            st = cursor_u64(c, &t->ne[d], what);
            if (st != HEARTH_OK) return st;
            if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX / n_elems) {
                return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                                 "tensor '%s': dimension %u is %llu, which is zero or makes the "
                                 "element count overflow",
                                 name, d, (unsigned long long)t->ne[d]);
            }
            n_elems *= t->ne[d];
        }
        st = cursor_u32(c, &t->type, what);
        if (st != HEARTH_OK) return st;
        if (!dtype_is_known(t->type)) {
            return error_set(c->err, HEARTH_ERR_BAD_MODEL, "tensor '%s' has unknown type %u", name,
                             t->type);
        }
        uint64_t row = dtype_row_bytes(t->type, t->ne[0]);
        if (row == 0) {
            return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                             "tensor '%s': row length %llu is not a multiple of the %s block size "
                             "%u",
                             name, (unsigned long long)t->ne[0], hearth_dtype_name(t->type),
                             dtype_block_size(t->type));
        }
        uint64_t n_rows = n_elems / t->ne[0];
        if (n_rows > UINT64_MAX / row) {
            return error_set(c->err, HEARTH_ERR_BAD_MODEL, "tensor '%s': byte size overflows",
                             name);
        }
        t->nbytes = row * n_rows;
        st = cursor_u64(c, &t->offset, what);
        if (st != HEARTH_OK) return st;
        if (t->offset % f->alignment != 0) {
            return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                             "tensor '%s': data offset %llu is not a multiple of the alignment "
                             "%llu",
                             name, (unsigned long long)t->offset, (unsigned long long)f->alignment);
        }
        uint64_t *slot =
            name_table_slot(&g->tensor_names, t->name.ptr, t->name.len, tensor_name, f->tensors);
        if (*slot != 0) {
            return error_set(c->err, HEARTH_ERR_BAD_MODEL, "tensor name '%s' appears twice", name);
        }
        *slot = i + 1;
    }
    return HEARTH_OK;
}

/* Places the data section and checks every tensor lies inside the file. */
static hearth_status place_data(gguf_cursor *c, gguf_file *f) {
    uint64_t pad = (f->alignment - c->off % f->alignment) % f->alignment;
    f->data_offset = c->off + pad;
    if (f->n_tensors == 0) return HEARTH_OK;
    if (f->data_offset > f->size) {
        return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                         "truncated file: the tensor data section starts at offset %llu but the "
                         "file has %llu bytes",
                         (unsigned long long)f->data_offset, (unsigned long long)f->size);
    }
    uint64_t data_size = f->size - f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            char name[GGUF_MAX_NAME_LEN + 1];
            gguf_str_copy(t->name, name, sizeof name);
            return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                             "tensor '%s': data at offset %llu + %llu bytes runs past the end of "
                             "the data section (%llu bytes)",
                             name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                             (unsigned long long)data_size);
        }
        t->data = f->base + f->data_offset + t->offset;
    }
    return HEARTH_OK;
}

static hearth_status parse_header(gguf_cursor *c, gguf_file *f) {
    char magic[4];
    hearth_status st = cursor_read(c, magic, 4, "magic");
    if (st != HEARTH_OK) {
        return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                         "not a GGUF file: %llu bytes is too short for the header",
                         (unsigned long long)c->size);
    }
    if (memcmp(magic, "GGUF", 4) != 0) {
        return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                         "not a GGUF file: bad magic %02x %02x %02x %02x (expected \"GGUF\")",
                         (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2],
                         (uint8_t)magic[3]);
    }
    st = cursor_u32(c, &f->version, "version");
    if (st != HEARTH_OK) return st;
    if (f->version == 1) {
        return error_set(c->err, HEARTH_ERR_UNSUPPORTED,
                         "GGUF version 1 is not supported (only 2 and 3); re-convert the model");
    }
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xffff) == 0) {
            return error_set(c->err, HEARTH_ERR_UNSUPPORTED,
                             "GGUF version field 0x%08x: big-endian GGUF files are not supported",
                             f->version);
        }
        return error_set(c->err, HEARTH_ERR_UNSUPPORTED,
                         "GGUF version %u is not supported (only 2 and 3)", f->version);
    }
    st = cursor_u64(c, &f->n_tensors, "tensor count");
    if (st == HEARTH_OK) st = cursor_u64(c, &f->n_kv, "metadata count");
    if (st != HEARTH_OK) return st;
    uint64_t left = cursor_left(c);
    if (f->n_kv > left / GGUF_MIN_KV_BYTES) {
        return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                         "metadata count %llu cannot fit in the %llu bytes after the header",
                         (unsigned long long)f->n_kv, (unsigned long long)left);
    }
    if (f->n_tensors > left / GGUF_MIN_TENSOR_BYTES) {
        return error_set(c->err, HEARTH_ERR_BAD_MODEL,
                         "tensor count %llu cannot fit in the %llu bytes after the header",
                         (unsigned long long)f->n_tensors, (unsigned long long)left);
    }
    return HEARTH_OK;
}

static hearth_status gguf_parse(gguf_file_impl *g, hearth_error *err) {
    gguf_file *f = &g->pub;
    gguf_cursor c = {f->base, f->size, 0, err};
    hearth_status st = parse_header(&c, f);
    if (st != HEARTH_OK) return st;
    f->kv = calloc((size_t)(f->n_kv ? f->n_kv : 1), sizeof *f->kv);
    f->tensors = calloc((size_t)(f->n_tensors ? f->n_tensors : 1), sizeof *f->tensors);
    if (!f->kv || !f->tensors) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    st = parse_kvs(&c, g);
    if (st == HEARTH_OK) st = read_alignment(f, err);
    if (st == HEARTH_OK) st = parse_tensors(&c, g);
    if (st == HEARTH_OK) st = place_data(&c, f);
    return st;
}

/* ---------------------------------------------------------------- open/close */

static hearth_status gguf_finish_open(gguf_file_impl *g, gguf_file **out, hearth_error *err) {
    hearth_status st = gguf_parse(g, err);
    if (st != HEARTH_OK) {
        gguf_close(&g->pub);
        return st;
    }
    *out = &g->pub;
    return HEARTH_OK;
}

hearth_status gguf_open_memory(const void *data, size_t size, gguf_file **out, hearth_error *err) {
    *out = NULL;
    gguf_file_impl *g = calloc(1, sizeof *g);
    if (!g) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    g->pub.base = data;
    g->pub.size = size;
    return gguf_finish_open(g, out, err);
}

static hearth_status read_whole(int fd, uint8_t *buf, uint64_t size, const char *path,
                                hearth_progress_fn progress, void *progress_arg,
                                hearth_error *err) {
    /* Chunks small enough for progress to move, large enough to cost nothing. */
    const uint64_t chunk = (uint64_t)64 << 20;
    uint64_t done = 0, reported = 0;
    if (progress) progress("reading", 0, size, progress_arg);
    while (done < size) {
        if (progress && done - reported >= chunk) {
            progress("reading", done, size, progress_arg);
            reported = done;
        }
        uint64_t want = size - done < chunk ? size - done : chunk;
        ssize_t r = read(fd, buf + done, (size_t)want);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            return error_set(err, HEARTH_ERR_IO, "%s: read failed at byte %llu: %s", path,
                             (unsigned long long)done, r < 0 ? strerror(errno) : "early end");
        }
        done += (uint64_t)r;
    }
    if (progress) progress("reading", size, size, progress_arg);
    return HEARTH_OK;
}

hearth_status gguf_open(const char *path, bool use_mmap, gguf_file **out, hearth_error *err) {
    return gguf_open_progress(path, use_mmap, NULL, NULL, out, err);
}

hearth_status gguf_open_progress(const char *path, bool use_mmap, hearth_progress_fn progress,
                                 void *progress_arg, gguf_file **out, hearth_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error_set(err, HEARTH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return error_set(err, HEARTH_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return error_set(err, HEARTH_ERR_IO, "%s: not a regular file", path);
    }
    gguf_file_impl *g = calloc(1, sizeof *g);
    if (!g) {
        close(fd);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    gguf_file *f = &g->pub;
    f->size = (uint64_t)sb.st_size;
    f->owns_base = true;
    hearth_status st = HEARTH_OK;
    if (f->size == 0) {
        st = error_set(err, HEARTH_ERR_BAD_MODEL, "%s: not a GGUF file: the file is empty", path);
    } else if (use_mmap) {
        void *p = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            st = error_set(err, HEARTH_ERR_IO, "%s: mmap of %llu bytes failed: %s", path,
                           (unsigned long long)f->size, strerror(errno));
        } else {
            f->base = p;
            f->mapped = true;
        }
    } else {
        /* Anonymous memory asked to be backed by huge pages: the forward
         * pass jumps between experts' matrices, and 4 KiB pages would make
         * every jump a TLB miss. */
        void *p =
            mmap(NULL, (size_t)f->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            st = error_set(err, HEARTH_ERR_NOMEM, "%s: cannot allocate %llu bytes", path,
                           (unsigned long long)f->size);
        } else {
#ifdef MADV_HUGEPAGE
            madvise(p, (size_t)f->size, MADV_HUGEPAGE);
#endif
            f->base = p;
            f->mapped = true;
            st = read_whole(fd, p, f->size, path, progress, progress_arg, err);
        }
    }
    close(fd);
    if (st != HEARTH_OK) {
        gguf_close(f);
        return st;
    }
    st = gguf_finish_open(g, out, err);
    if (st != HEARTH_OK) error_prefix(err, st, "%s", path);
    return st;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    gguf_file_impl *g = (gguf_file_impl *)f;
    if (f->kv) {
        for (uint64_t i = 0; i < f->n_kv; i++) {
            if (f->kv[i].type == GGUF_TYPE_ARRAY) free(f->kv[i].v.arr.strs);
        }
    }
    free(f->kv);
    free(f->tensors);
    free(g->kv_names.slots);
    free(g->tensor_names.slots);
    if (f->owns_base && f->base) {
        if (f->mapped) {
            munmap((void *)f->base, (size_t)f->size);
        } else {
            free((void *)f->base);
        }
    }
    free(g);
}

/* ---------------------------------------------------------------- lookup */

const gguf_kv *gguf_find(const gguf_file *f, const char *key) {
    const gguf_file_impl *g = (const gguf_file_impl *)f;
    if (!g->kv_names.slots) return NULL;
    uint64_t *slot = name_table_slot(&g->kv_names, key, strlen(key), kv_name, f->kv);
    return *slot ? &f->kv[*slot - 1] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    const gguf_file_impl *g = (const gguf_file_impl *)f;
    if (!g->tensor_names.slots) return NULL;
    uint64_t *slot = name_table_slot(&g->tensor_names, name, strlen(name), tensor_name, f->tensors);
    return *slot ? &f->tensors[*slot - 1] : NULL;
}

bool gguf_str_eq(gguf_str s, const char *c) {
    return str_eq2(s, c, strlen(c));
}

void gguf_str_copy(gguf_str s, char *buf, size_t cap) {
    if (cap == 0) return;
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = '\0';
}

/* ---------------------------------------------------------------- typed getters */

static bool type_is_unsigned(gguf_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 ||
           t == GGUF_TYPE_UINT64;
}

static bool type_is_signed(gguf_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

static hearth_status wrong_type(hearth_error *err, const char *key, gguf_type got,
                                const char *want) {
    return error_set(err, HEARTH_ERR_BAD_MODEL, "metadata '%s' has type %s, expected %s", key,
                     gguf_type_name(got), want);
}

hearth_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, hearth_error *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return HEARTH_OK;
    uint64_t v;
    if (type_is_unsigned(kv->type)) {
        v = kv->v.u64;
    } else if (type_is_signed(kv->type) && kv->v.i64 >= 0) {
        v = (uint64_t)kv->v.i64;
    } else {
        return wrong_type(err, key, kv->type, "a non-negative integer");
    }
    if (v > UINT32_MAX) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "metadata '%s' is %llu, above %u", key,
                         (unsigned long long)v, UINT32_MAX);
    }
    *out = (uint32_t)v;
    return HEARTH_OK;
}

hearth_status gguf_get_u32_req(const gguf_file *f, const char *key, uint32_t *out,
                               hearth_error *err) {
    if (!gguf_find(f, key)) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "required metadata '%s' is missing", key);
    }
    return gguf_get_u32(f, key, out, err);
}

hearth_status gguf_get_f32(const gguf_file *f, const char *key, float *out, hearth_error *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return HEARTH_OK;
    if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64) {
        *out = (float)kv->v.f64;
    } else if (type_is_unsigned(kv->type)) {
        *out = (float)kv->v.u64;
    } else if (type_is_signed(kv->type)) {
        *out = (float)kv->v.i64;
    } else {
        return wrong_type(err, key, kv->type, "a number");
    }
    return HEARTH_OK;
}

hearth_status gguf_get_bool(const gguf_file *f, const char *key, bool *out, hearth_error *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return HEARTH_OK;
    if (kv->type != GGUF_TYPE_BOOL) return wrong_type(err, key, kv->type, "bool");
    *out = kv->v.u64 != 0;
    return HEARTH_OK;
}

hearth_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, hearth_error *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return HEARTH_OK;
    if (kv->type != GGUF_TYPE_STRING) return wrong_type(err, key, kv->type, "string");
    *out = kv->v.str;
    return HEARTH_OK;
}

hearth_status gguf_get_str_req(const gguf_file *f, const char *key, gguf_str *out,
                               hearth_error *err) {
    if (!gguf_find(f, key)) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "required metadata '%s' is missing", key);
    }
    return gguf_get_str(f, key, out, err);
}

hearth_status gguf_get_arr(const gguf_file *f, const char *key, gguf_type elem, const gguf_kv **out,
                           hearth_error *err) {
    *out = NULL;
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return HEARTH_OK;
    if (kv->type != GGUF_TYPE_ARRAY) return wrong_type(err, key, kv->type, "array");
    if (kv->v.arr.type != elem) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "metadata '%s' is an array of %s, expected an array of %s", key,
                         gguf_type_name(kv->v.arr.type), gguf_type_name(elem));
    }
    *out = kv;
    return HEARTH_OK;
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i) {
    gguf_kv tmp;
    gguf_type t = kv->v.arr.type;
    scalar_decode(t, kv->v.arr.data + i * gguf_type_size(t), &tmp);
    if (type_is_signed(t)) return tmp.v.i64;
    if (t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) {
        /* Hostile floats (NaN, huge) must not reach an undefined cast. */
        double f = tmp.v.f64;
        if (!(f > -9.2e18 && f < 9.2e18)) return 0;
        return (int64_t)f;
    }
    return tmp.v.u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)tmp.v.u64;
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i) {
    gguf_kv tmp;
    gguf_type t = kv->v.arr.type;
    scalar_decode(t, kv->v.arr.data + i * gguf_type_size(t), &tmp);
    if (t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) return tmp.v.f64;
    if (type_is_signed(t)) return (double)tmp.v.i64;
    return (double)tmp.v.u64;
}
