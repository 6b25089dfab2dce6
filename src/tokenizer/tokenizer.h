/* tokenizer.h — building a tokenizer from GGUF metadata (private).
 *
 * The public calls (hearth_tokenize, hearth_detokenize, the streaming
 * detokenizer) are declared in hearth.h; this header adds what other modules
 * need: creating a tokenizer from an already opened GGUF file.
 */
#ifndef HEARTH_TOKENIZER_H
#define HEARTH_TOKENIZER_H

#include "gguf/gguf.h"
#include "hearth.h"

/* Reads tokenizer.ggml.* from f.  The tokenizer copies what it keeps, so f
 * may be closed afterwards. */
hearth_status tokenizer_create(const gguf_file *f, hearth_tokenizer **out, hearth_error *err);

#endif
