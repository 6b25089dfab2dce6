/* convert.h — Hugging Face checkpoints and tokenizers to GGUF (private).
 *
 * convert_hf_dir reads a checkpoint directory (config.json, one or more
 * safetensors files, tokenizer.json, tokenizer_config.json) and writes a GGUF
 * file with the tensor names and metadata keys llama.cpp uses, so files move
 * between the two.  convert_hf_tokenizer writes a vocabulary-only GGUF from
 * a tokenizer.json alone.
 */
#ifndef HEARTH_CONVERT_H
#define HEARTH_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "hearth.h"

typedef struct convert_params {
    uint32_t out_type; /* HEARTH_DTYPE_F32, _F16 or _BF16 for the matrices */
    /* progress of the tensor data written, 0..1; may be NULL */
    void (*progress)(double done, void *arg);
    void *progress_arg;
} convert_params;

hearth_status convert_hf_dir(const char *dir, const char *out_path, const convert_params *p,
                             hearth_error *err);

/* Writes the tokenizer.ggml.* keys (and tokenizer.chat_template) for
 * tokenizer_json, with special-token settings from tokenizer_config (may be
 * NULL) and fallbacks from config_json (may be NULL).  The vocabulary is
 * padded with unused tokens up to n_vocab when that is larger (0 = as is). */
hearth_status hf_tokenizer_to_gguf(gguf_writer *w, const char *tokenizer_json,
                                   const char *tokenizer_config, const char *config_json,
                                   uint32_t n_vocab, hearth_error *err);

/* A vocabulary-only GGUF (no tensors) from a tokenizer.json. */
hearth_status convert_hf_tokenizer(const char *tokenizer_json, const char *tokenizer_config,
                                   const char *out_path, hearth_error *err);

#endif
