/* dtype.h — sizes of the tensor element types that GGUF files can hold.
 *
 * A tensor of type T stores its rows as blocks of dtype_block_size(T)
 * elements taking dtype_block_bytes(T) bytes each.  The gguf reader uses
 * this table to validate tensor sizes; kernels/quant.h holds the block
 * layouts themselves and checks them against this table at compile time.
 */
#ifndef HEARTH_UTIL_DTYPE_H
#define HEARTH_UTIL_DTYPE_H

#include <stdbool.h>
#include <stdint.h>

#include "hearth.h"

/* Elements per block (1 for plain types); 0 for an unknown type. */
uint32_t dtype_block_size(uint32_t type);
/* Bytes per block; 0 for an unknown type. */
uint32_t dtype_block_bytes(uint32_t type);
bool dtype_is_known(uint32_t type);
/* Bytes taken by a row of n elements, or 0 when n is not a whole number of
 * blocks or the type is unknown. */
uint64_t dtype_row_bytes(uint32_t type, uint64_t n);

#endif
