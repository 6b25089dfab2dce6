/* safetensors.h — reading Hugging Face safetensors checkpoints (private).
 *
 * A checkpoint is one or more .safetensors files: an 8-byte little-endian
 * header length, a JSON header mapping tensor names to dtype, shape and byte
 * range, then the data.  The header is hostile input: every range, shape and
 * size is checked against the file before a tensor is handed out.  A set
 * gathers the tensors of every file of a checkpoint directory (sharded or
 * not) under one name lookup.
 */
#ifndef HEARTH_CONVERT_SAFETENSORS_H
#define HEARTH_CONVERT_SAFETENSORS_H

#include <stdint.h>

#include "hearth.h"

#define ST_MAX_DIMS 4

typedef enum st_dtype {
    ST_F32 = 0,
    ST_F16 = 1,
    ST_BF16 = 2,
} st_dtype;

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[ST_MAX_DIMS]; /* as stored: shape[0] is the slowest dimension */
    uint64_t n_elems;
    const void *data; /* into the mapped file */
    uint64_t nbytes;
} st_tensor;

typedef struct st_set st_set;

/* Opens every safetensors file of a checkpoint directory: the shards named
 * by model.safetensors.index.json when it exists, else model.safetensors. */
hearth_status st_set_open_dir(const char *dir, st_set **out, hearth_error *err);
/* Opens one file (used by tests and the fuzzer through st_set_open_memory). */
hearth_status st_set_open_memory(const void *data, size_t size, st_set **out, hearth_error *err);
void st_set_free(st_set *s);

uint64_t st_set_count(const st_set *s);
const st_tensor *st_set_at(const st_set *s, uint64_t i);
/* Tensor by name, NULL when absent. */
const st_tensor *st_set_find(const st_set *s, const char *name);

/* Bytes per element of a dtype. */
uint32_t st_dtype_size(st_dtype t);
const char *st_dtype_name(st_dtype t);

#endif
