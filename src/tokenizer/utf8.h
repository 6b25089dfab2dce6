/* utf8.h — the tokenizer's UTF-8 encoder and strict decoder (utf8.c), for
 * the modules above it that read or write UTF-8 (grammars). */
#ifndef HEARTH_TOKENIZER_UTF8_H
#define HEARTH_TOKENIZER_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Writes the UTF-8 form of cp (<= 0x10FFFF) to out; returns its length. */
size_t utf8_encode(uint32_t cp, uint8_t out[4]);

/* Classifies the bytes at p[0..n), n >= 1, under strict UTF-8: returns
 * k > 0 when they start with a complete valid character of k bytes (its code
 * point in *cp), 0 when they are a valid but unfinished start of one, and
 * -k when the first k bytes (k >= 1) are the maximal invalid sequence to
 * replace with one U+FFFD. */
int utf8_classify(const uint8_t *p, size_t n, uint32_t *cp);

#endif
