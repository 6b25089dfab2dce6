/* sample_internal.h — what the sampler needs from the grammar matcher
 * without going through a logits array (private to src/sample/). */
#ifndef HEARTH_SAMPLE_INTERNAL_H
#define HEARTH_SAMPLE_INTERNAL_H

#include <stdint.h>

#include "hearth.h"

/* The tokens g allows next, as a bitset of n_vocab bits owned by g (valid
 * until the next call on g); NULL when none is, with grammar_error
 * saying why. */
const uint64_t *grammar_mask(hearth_grammar *g);
const char *grammar_error(const hearth_grammar *g);
/* Tokens of the vocabulary g was made for (bits of its mask). */
int32_t grammar_n_vocab(const hearth_grammar *g);

#endif
