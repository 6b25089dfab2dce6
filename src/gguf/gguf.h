/* gguf.h — reading GGUF v2/v3 files.
 *
 * gguf_open maps a file read-only and validates all of it before returning:
 * header, every metadata key and value (nested arrays included), every tensor
 * descriptor and the data section, all in 64-bit arithmetic against the file
 * size.  After a successful open, every pointer and length reachable from
 * the gguf_file lies inside the mapping, so callers may use them without
 * further bounds checks.  Strings in the file are not NUL-terminated: they
 * are handed out as gguf_str (pointer + length).
 *
 * Metadata values are not aligned in the file; numeric array elements are
 * read through the accessors, which copy them out.
 */
#ifndef HEARTH_GGUF_H
#define HEARTH_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hearth.h"

/* Metadata value types, numbered as in the file format. */
typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT = 13
} gguf_type;

#define GGUF_MAX_DIMS          4
#define GGUF_DEFAULT_ALIGNMENT 32
/* Limits on hostile files, far above anything real. */
#define GGUF_MAX_NAME_LEN    256   /* tensor name bytes */
#define GGUF_MAX_KEY_LEN     65535 /* metadata key bytes */
#define GGUF_MAX_ARRAY_DEPTH 4     /* nested arrays */

typedef struct gguf_str {
    const char *ptr; /* into the mapping; not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    gguf_type type;
    union {
        uint64_t u64; /* UINT8..UINT64 and BOOL, zero-extended */
        int64_t i64;  /* INT8..INT64, sign-extended */
        double f64;   /* FLOAT32, FLOAT64 */
        gguf_str str; /* STRING */
        struct {
            gguf_type type;      /* element type */
            uint64_t n;          /* element count */
            const uint8_t *data; /* first element in the mapping (numeric arrays) */
            gguf_str *strs;      /* (n) for string arrays, else NULL */
        } arr;
    } v;
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* elements along each dim, ne[0] fastest; unused dims are 1 */
    uint32_t type;              /* hearth_dtype */
    uint64_t offset;            /* from the start of the data section */
    uint64_t nbytes;
    const void *data; /* into the mapping */
} gguf_tensor;

typedef struct gguf_file {
    const uint8_t *base; /* the whole file */
    uint64_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset; /* start of the data section in the file */
    uint64_t n_kv;
    gguf_kv *kv; /* (n_kv) */
    uint64_t n_tensors;
    gguf_tensor *tensors; /* (n_tensors) */
    /* ownership of base */
    bool mapped; /* base came from mmap (else malloc or borrowed) */
    bool owns_base;
} gguf_file;

/* Opens and validates path.  use_mmap = false reads the file into memory. */
hearth_status gguf_open(const char *path, bool use_mmap, gguf_file **out, hearth_error *err);
/* gguf_open reporting ("reading", bytes done, file size) to progress (may
 * be NULL) while a file is read into memory. */
hearth_status gguf_open_progress(const char *path, bool use_mmap, hearth_progress_fn progress,
                                 void *progress_arg, gguf_file **out, hearth_error *err);
/* Validates a file image held by the caller, who keeps it alive and
 * unchanged until gguf_close (used by the fuzzer and tests). */
hearth_status gguf_open_memory(const void *data, size_t size, gguf_file **out, hearth_error *err);
void gguf_close(gguf_file *f);

/* Metadata lookup by key; NULL when absent. */
const gguf_kv *gguf_find(const gguf_file *f, const char *key);
/* Tensor lookup by name; NULL when absent. */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* True when s equals the NUL-terminated c. */
bool gguf_str_eq(gguf_str s, const char *c);
/* Copies s into buf as a NUL-terminated string, cut to cap-1 bytes. */
void gguf_str_copy(gguf_str s, char *buf, size_t cap);

/* Typed getters: HEARTH_OK, or HEARTH_ERR_BAD_MODEL naming the key when it
 * is absent (only for the _req forms), of the wrong type, or out of range.
 * The plain forms leave *out unchanged and return HEARTH_OK when absent. */
hearth_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, hearth_error *err);
hearth_status gguf_get_u32_req(const gguf_file *f, const char *key, uint32_t *out,
                               hearth_error *err);
hearth_status gguf_get_f32(const gguf_file *f, const char *key, float *out, hearth_error *err);
hearth_status gguf_get_bool(const gguf_file *f, const char *key, bool *out, hearth_error *err);
hearth_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, hearth_error *err);
hearth_status gguf_get_str_req(const gguf_file *f, const char *key, gguf_str *out,
                               hearth_error *err);
/* An array of any element type: *out points at the kv (NULL when absent). */
hearth_status gguf_get_arr(const gguf_file *f, const char *key, gguf_type elem, const gguf_kv **out,
                           hearth_error *err);

/* Element i (< arr.n) of a numeric array, converted. */
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);

/* Size in bytes of one value of a fixed-size type, 0 for STRING/ARRAY. */
uint32_t gguf_type_size(gguf_type t);
const char *gguf_type_name(gguf_type t);

/* ---------------------------------------------------------------- writer */

/* Builds a GGUF v3 file: metadata is serialized as it is set, tensors are
 * laid out in the order added.  Tensor data is referenced, not copied: it
 * must stay valid until the file is written.  Used by convert, quantize,
 * synth and the tests. */
typedef struct gguf_writer gguf_writer;

hearth_status gguf_writer_create(gguf_writer **out, hearth_error *err);
void gguf_writer_free(gguf_writer *w);

hearth_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, hearth_error *err);
hearth_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, hearth_error *err);
hearth_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v, hearth_error *err);
hearth_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v, hearth_error *err);
hearth_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, hearth_error *err);
hearth_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v,
                                  hearth_error *err);
/* An array of n fixed-size elements of type elem, read from data. */
hearth_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem, const void *data,
                                  uint64_t n, hearth_error *err);
/* An array of n strings; lens may be NULL for NUL-terminated strings. */
hearth_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                                      const uint64_t *lens, uint64_t n, hearth_error *err);
/* Copies one metadata entry of a file opened with gguf_open (any type,
 * arrays of arrays included) under its own key.  general.alignment, when
 * copied, sets the writer's alignment as gguf_writer_set_u32 does. */
hearth_status gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv, hearth_error *err);
/* Adds a tensor of type with n_dims dims ne[]; data holds its bytes. */
hearth_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                                     uint32_t n_dims, const uint64_t *ne, const void *data,
                                     hearth_error *err);
/* Adds a tensor whose bytes are produced only when the file is written:
 * fill(arg, buf, nbytes, err) must write all nbytes into buf.  This lets a
 * converter stream a model larger than memory through one buffer. */
typedef hearth_status (*gguf_fill_fn)(void *arg, void *buf, uint64_t nbytes, hearth_error *err);
hearth_status gguf_writer_add_tensor_fill(gguf_writer *w, const char *name, uint32_t type,
                                          uint32_t n_dims, const uint64_t *ne, gguf_fill_fn fill,
                                          void *arg, hearth_error *err);
/* Writes the file; progress (0..1) is reported to progress when not NULL. */
hearth_status gguf_writer_write_file(gguf_writer *w, const char *path,
                                     void (*progress)(double done, void *arg), void *arg,
                                     hearth_error *err);
/* Returns the whole file in a malloc'd buffer (caller frees). */
hearth_status gguf_writer_write_memory(gguf_writer *w, uint8_t **out, size_t *len,
                                       hearth_error *err);

#endif
