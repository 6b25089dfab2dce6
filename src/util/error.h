/* error.h — filling a hearth_error.
 *
 * Every fallible function in hearth reports failure by returning a status
 * and writing a one-line message into the caller's hearth_error (which may
 * be NULL when the caller does not want the text).
 */
#ifndef HEARTH_UTIL_ERROR_H
#define HEARTH_UTIL_ERROR_H

#include "hearth.h"

#if defined(__GNUC__)
#define HEARTH_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define HEARTH_PRINTF(fmt_index, first_arg)
#endif

/* Sets err (when not NULL) to code and the formatted message; returns code
 * so that callers can write `return error_set(err, ...);`. */
hearth_status error_set(hearth_error *err, hearth_status code, const char *fmt, ...)
    HEARTH_PRINTF(3, 4);

/* Prefixes the message already in err with "prefix: " (for context such as a
 * file name); returns err->code, or code when err is NULL. */
hearth_status error_prefix(hearth_error *err, hearth_status code, const char *fmt, ...)
    HEARTH_PRINTF(3, 4);

#endif
