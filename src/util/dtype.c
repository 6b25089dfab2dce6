/* dtype.c — the table of GGUF tensor types (names, block sizes). */
#include "util/dtype.h"

#include <stddef.h>

typedef struct dtype_info {
    const char *name;
    uint32_t block_size;  /* elements per block */
    uint32_t block_bytes; /* bytes per block */
} dtype_info;

/* Sizes as the GGUF format defines them; K-quants use 256-element super-blocks. */
static const dtype_info dtype_table[HEARTH_DTYPE_COUNT] = {
    [HEARTH_DTYPE_F32] = {"F32", 1, 4},
    [HEARTH_DTYPE_F16] = {"F16", 1, 2},
    [HEARTH_DTYPE_Q4_0] = {"Q4_0", 32, 18},
    [HEARTH_DTYPE_Q4_1] = {"Q4_1", 32, 20},
    [HEARTH_DTYPE_Q5_0] = {"Q5_0", 32, 22},
    [HEARTH_DTYPE_Q5_1] = {"Q5_1", 32, 24},
    [HEARTH_DTYPE_Q8_0] = {"Q8_0", 32, 34},
    [HEARTH_DTYPE_Q8_1] = {"Q8_1", 32, 36},
    [HEARTH_DTYPE_Q2_K] = {"Q2_K", 256, 84},
    [HEARTH_DTYPE_Q3_K] = {"Q3_K", 256, 110},
    [HEARTH_DTYPE_Q4_K] = {"Q4_K", 256, 144},
    [HEARTH_DTYPE_Q5_K] = {"Q5_K", 256, 176},
    [HEARTH_DTYPE_Q6_K] = {"Q6_K", 256, 210},
    [HEARTH_DTYPE_Q8_K] = {"Q8_K", 256, 292},
    [HEARTH_DTYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [HEARTH_DTYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [HEARTH_DTYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [HEARTH_DTYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [HEARTH_DTYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [HEARTH_DTYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [HEARTH_DTYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [HEARTH_DTYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [HEARTH_DTYPE_I8] = {"I8", 1, 1},
    [HEARTH_DTYPE_I16] = {"I16", 1, 2},
    [HEARTH_DTYPE_I32] = {"I32", 1, 4},
    [HEARTH_DTYPE_I64] = {"I64", 1, 8},
    [HEARTH_DTYPE_F64] = {"F64", 1, 8},
    [HEARTH_DTYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [HEARTH_DTYPE_BF16] = {"BF16", 1, 2},
    [HEARTH_DTYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [HEARTH_DTYPE_TQ2_0] = {"TQ2_0", 256, 66},
};

static const dtype_info *dtype_lookup(uint32_t type) {
    if (type >= HEARTH_DTYPE_COUNT || dtype_table[type].name == NULL) return NULL;
    return &dtype_table[type];
}

const char *hearth_dtype_name(hearth_dtype type) {
    const dtype_info *info = dtype_lookup((uint32_t)type);
    return info ? info->name : NULL;
}

bool dtype_is_known(uint32_t type) {
    return dtype_lookup(type) != NULL;
}

uint32_t dtype_block_size(uint32_t type) {
    const dtype_info *info = dtype_lookup(type);
    return info ? info->block_size : 0;
}

uint32_t dtype_block_bytes(uint32_t type) {
    const dtype_info *info = dtype_lookup(type);
    return info ? info->block_bytes : 0;
}

uint64_t dtype_row_bytes(uint32_t type, uint64_t n) {
    const dtype_info *info = dtype_lookup(type);
    if (!info || n % info->block_size != 0) return 0;
    return n / info->block_size * info->block_bytes;
}
