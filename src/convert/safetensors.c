/* safetensors.c — validating reader for safetensors files and checkpoint
 * directories.
 *
 * The JSON header is parsed with jansson (duplicate keys rejected).  For each
 * tensor the dtype must be one hearth converts (F32, F16, BF16), the shape
 * at most 4 dims, and data_offsets a range inside the data section whose
 * length equals the element count times the element size, all in checked
 * 64-bit arithmetic.  Shard names from an index file must be plain file
 * names: a checkpoint cannot make hearth open files outside its directory.
 */
#include "convert/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

#define ST_MAX_HEADER (256u << 20) /* a header this large is not a checkpoint */

typedef struct st_file {
    const uint8_t *base;
    uint64_t size;
    bool mapped;
} st_file;

struct st_set {
    st_file *files;
    uint32_t n_files;
    st_tensor *tensors;
    uint64_t n_tensors, cap_tensors;
    uint64_t *slots; /* name hash table: index + 1, 0 empty */
    uint64_t n_slots;
};

uint32_t st_dtype_size(st_dtype t) {
    return t == ST_F32 ? 4 : 2;
}

const char *st_dtype_name(st_dtype t) {
    switch (t) {
    case ST_F32: return "F32";
    case ST_F16: return "F16";
    case ST_BF16: return "BF16";
    }
    return "?";
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static hearth_status add_tensor(st_set *s, st_tensor *t, hearth_error *err) {
    if (s->n_tensors == s->cap_tensors) {
        uint64_t cap = s->cap_tensors ? s->cap_tensors * 2 : 64;
        st_tensor *p = realloc(s->tensors, (size_t)cap * sizeof *p);
        if (!p) return error_set(err, HEARTH_ERR_NOMEM, "out of memory for tensor list");
        s->tensors = p;
        s->cap_tensors = cap;
    }
    s->tensors[s->n_tensors++] = *t;
    return HEARTH_OK;
}

/* Builds the name table once all files are read; rejects duplicates. */
static hearth_status index_names(st_set *s, hearth_error *err) {
    uint64_t cap = 64;
    while (cap < s->n_tensors * 2) cap <<= 1;
    s->slots = calloc((size_t)cap, sizeof *s->slots);
    if (!s->slots) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    s->n_slots = cap;
    for (uint64_t i = 0; i < s->n_tensors; i++) {
        uint64_t j = name_hash(s->tensors[i].name) & (cap - 1);
        while (s->slots[j]) {
            if (!strcmp(s->tensors[s->slots[j] - 1].name, s->tensors[i].name)) {
                return error_set(err, HEARTH_ERR_BAD_MODEL, "tensor '%s' appears twice",
                                 s->tensors[i].name);
            }
            j = (j + 1) & (cap - 1);
        }
        s->slots[j] = i + 1;
    }
    return HEARTH_OK;
}

const st_tensor *st_set_find(const st_set *s, const char *name) {
    if (!s->slots) return NULL;
    uint64_t j = name_hash(name) & (s->n_slots - 1);
    while (s->slots[j]) {
        const st_tensor *t = &s->tensors[s->slots[j] - 1];
        if (!strcmp(t->name, name)) return t;
        j = (j + 1) & (s->n_slots - 1);
    }
    return NULL;
}

uint64_t st_set_count(const st_set *s) {
    return s->n_tensors;
}
const st_tensor *st_set_at(const st_set *s, uint64_t i) {
    return &s->tensors[i];
}

static bool json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Validates one header entry and appends the tensor. */
static hearth_status parse_entry(st_set *s, const st_file *f, uint64_t data_start, const char *name,
                                 const json_t *v, hearth_error *err) {
    const json_t *dtype = json_object_get(v, "dtype");
    const json_t *shape = json_object_get(v, "shape");
    const json_t *offs = json_object_get(v, "data_offsets");
    if (!json_is_object(v) || !json_is_string(dtype) || !json_is_array(shape) ||
        !json_is_array(offs) || json_array_size(offs) != 2) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "tensor '%s': header entry needs dtype, shape and two data_offsets", name);
    }
    st_tensor t;
    memset(&t, 0, sizeof t);
    const char *d = json_string_value(dtype);
    if (!strcmp(d, "F32")) {
        t.dtype = ST_F32;
    } else if (!strcmp(d, "F16")) {
        t.dtype = ST_F16;
    } else if (!strcmp(d, "BF16")) {
        t.dtype = ST_BF16;
    } else {
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "tensor '%s' has dtype %s; hearth converts F32, F16 and BF16", name, d);
    }
    size_t nd = json_array_size(shape);
    if (nd > ST_MAX_DIMS) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "tensor '%s' has %zu dimensions, at most %d",
                         name, nd, ST_MAX_DIMS);
    }
    t.n_dims = (uint32_t)nd;
    t.n_elems = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t dim;
        if (!json_u64(json_array_get(shape, i), &dim)) {
            return error_set(err, HEARTH_ERR_BAD_MODEL, "tensor '%s': shape[%zu] is not a size",
                             name, i);
        }
        if (dim != 0 && t.n_elems > UINT64_MAX / 8 / dim) {
            return error_set(err, HEARTH_ERR_BAD_MODEL, "tensor '%s': element count overflows",
                             name);
        }
        t.shape[i] = dim;
        t.n_elems *= dim;
    }
    uint64_t begin, end;
    if (!json_u64(json_array_get(offs, 0), &begin) || !json_u64(json_array_get(offs, 1), &end) ||
        begin > end) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "tensor '%s': bad data_offsets", name);
    }
    uint64_t data_size = f->size - data_start;
    if (end > data_size) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "tensor '%s': data_offsets [%llu, %llu) run past the %llu data bytes",
                         name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_size);
    }
    t.nbytes = end - begin;
    if (t.nbytes != t.n_elems * st_dtype_size(t.dtype)) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "tensor '%s': %llu bytes of data for %llu %s elements", name,
                         (unsigned long long)t.nbytes, (unsigned long long)t.n_elems, d);
    }
    t.data = f->base + data_start + begin;
    size_t len = strlen(name);
    t.name = malloc(len + 1);
    if (!t.name) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    memcpy(t.name, name, len + 1);
    hearth_status st = add_tensor(s, &t, err);
    if (st != HEARTH_OK) free(t.name);
    return st;
}

static int cmp_data(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    uintptr_t px = (uintptr_t)x->data, py = (uintptr_t)y->data;
    return px < py ? -1 : px > py;
}

/* Tensors first..n_tensors of a file must not share bytes. */
static hearth_status check_overlap(st_set *s, uint64_t first, hearth_error *err) {
    uint64_t n = s->n_tensors - first;
    if (n < 2) return HEARTH_OK;
    const st_tensor **order = malloc((size_t)n * sizeof *order);
    if (!order) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) order[i] = &s->tensors[first + i];
    qsort(order, (size_t)n, sizeof *order, cmp_data);
    hearth_status st = HEARTH_OK;
    for (uint64_t i = 1; i < n; i++) {
        const st_tensor *a = order[i - 1], *b = order[i];
        if (a->nbytes && b->nbytes &&
            (const uint8_t *)a->data + a->nbytes > (const uint8_t *)b->data) {
            st = error_set(err, HEARTH_ERR_BAD_MODEL, "tensors '%s' and '%s' overlap in the file",
                           a->name, b->name);
            break;
        }
    }
    free(order);
    return st;
}

/* Parses the header of file f and adds its tensors to s. */
static hearth_status parse_file(st_set *s, const st_file *f, hearth_error *err) {
    uint64_t hlen;
    if (f->size < 8) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "not a safetensors file: %llu bytes",
                         (unsigned long long)f->size);
    }
    memcpy(&hlen, f->base, 8);
    if (hlen > f->size - 8 || hlen > ST_MAX_HEADER) {
        return error_set(err, HEARTH_ERR_BAD_MODEL,
                         "safetensors header of %llu bytes does not fit the %llu-byte file",
                         (unsigned long long)hlen, (unsigned long long)f->size);
    }
    json_error_t jerr;
    json_t *root =
        json_loadb((const char *)f->base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "safetensors header is not JSON: %s (at %d)",
                         jerr.text, jerr.position);
    }
    hearth_status st = HEARTH_OK;
    if (!json_is_object(root)) {
        st = error_set(err, HEARTH_ERR_BAD_MODEL, "safetensors header is not a JSON object");
    }
    uint64_t first = s->n_tensors;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (st != HEARTH_OK) break;
        if (!strcmp(key, "__metadata__")) continue;
        st = parse_entry(s, f, 8 + hlen, key, v, err);
    }
    json_decref(root);
    if (st == HEARTH_OK) st = check_overlap(s, first, err);
    return st;
}

static hearth_status map_file(const char *path, st_file *f, hearth_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error_set(err, HEARTH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return error_set(err, HEARTH_ERR_IO, "%s: not a regular file", path);
    }
    f->size = (uint64_t)sb.st_size;
    if (f->size == 0) {
        close(fd);
        return error_set(err, HEARTH_ERR_BAD_MODEL, "%s: empty file", path);
    }
    void *p = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        return error_set(err, HEARTH_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    }
    f->base = p;
    f->mapped = true;
    return HEARTH_OK;
}

/* Adds one file (by path) to the set. */
static hearth_status add_file(st_set *s, const char *path, hearth_error *err) {
    st_file *files = realloc(s->files, (s->n_files + 1) * sizeof *files);
    if (!files) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    s->files = files;
    st_file *f = &s->files[s->n_files];
    memset(f, 0, sizeof *f);
    hearth_status st = map_file(path, f, err);
    if (st != HEARTH_OK) return st;
    s->n_files++;
    st = parse_file(s, f, err);
    if (st != HEARTH_OK) error_prefix(err, st, "%s", path);
    return st;
}

/* True for a plain file name: no directory part, not "." or "..". */
static bool plain_name(const char *n) {
    return n[0] && !strchr(n, '/') && strcmp(n, ".") && strcmp(n, "..");
}

/* Shard names from the index's weight_map, each once, in first-seen order. */
static hearth_status open_index(st_set *s, const char *dir, const char *index_path,
                                hearth_error *err) {
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        return error_set(err, HEARTH_ERR_BAD_MODEL, "%s: not valid JSON: %s (line %d)", index_path,
                         jerr.text, jerr.line);
    }
    json_t *map = json_object_get(root, "weight_map");
    hearth_status st = HEARTH_OK;
    if (!json_is_object(map)) {
        st = error_set(err, HEARTH_ERR_BAD_MODEL, "%s: no weight_map object", index_path);
    }
    const char **seen = NULL;
    size_t n_seen = 0;
    const char *key;
    json_t *v;
    if (st == HEARTH_OK) {
        seen = calloc(json_object_size(map) + 1, sizeof *seen);
        if (!seen) st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    if (st == HEARTH_OK) {
        json_object_foreach(map, key, v) {
            const char *file = json_string_value(v);
            if (!file || !plain_name(file)) {
                st = error_set(err, HEARTH_ERR_BAD_MODEL,
                               "%s: tensor '%s' maps to '%s', which is not a file name in the "
                               "checkpoint directory",
                               index_path, key, file ? file : "(not a string)");
                break;
            }
            bool dup = false;
            for (size_t i = 0; i < n_seen && !dup; i++) dup = !strcmp(seen[i], file);
            if (dup) continue;
            seen[n_seen++] = file;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, file);
            st = add_file(s, path, err);
            if (st != HEARTH_OK) break;
        }
    }
    free(seen);
    json_decref(root);
    return st;
}

hearth_status st_set_open_dir(const char *dir, st_set **out, hearth_error *err) {
    *out = NULL;
    st_set *s = calloc(1, sizeof *s);
    if (!s) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    hearth_status st;
    if (access(path, R_OK) == 0) {
        st = open_index(s, dir, path, err);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        st = add_file(s, path, err);
    }
    if (st == HEARTH_OK) st = index_names(s, err);
    if (st != HEARTH_OK) {
        st_set_free(s);
        return st;
    }
    *out = s;
    return HEARTH_OK;
}

hearth_status st_set_open_memory(const void *data, size_t size, st_set **out, hearth_error *err) {
    *out = NULL;
    st_set *s = calloc(1, sizeof *s);
    if (!s) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    s->files = calloc(1, sizeof *s->files);
    hearth_status st = s->files ? HEARTH_OK : error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    if (st == HEARTH_OK) {
        s->files[0].base = data;
        s->files[0].size = size;
        s->n_files = 1;
        st = parse_file(s, &s->files[0], err);
    }
    if (st == HEARTH_OK) st = index_names(s, err);
    if (st != HEARTH_OK) {
        st_set_free(s);
        return st;
    }
    *out = s;
    return HEARTH_OK;
}

void st_set_free(st_set *s) {
    if (!s) return;
    for (uint64_t i = 0; i < s->n_tensors; i++) free(s->tensors[i].name);
    for (uint32_t i = 0; i < s->n_files; i++) {
        if (s->files[i].mapped) munmap((void *)s->files[i].base, (size_t)s->files[i].size);
    }
    free(s->files);
    free(s->tensors);
    free(s->slots);
    free(s);
}
