/* error.c — status names and hearth_error formatting. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *hearth_status_name(hearth_status status) {
    switch (status) {
    case HEARTH_OK: return "ok";
    case HEARTH_ERR_IO: return "i/o error";
    case HEARTH_ERR_BAD_MODEL: return "bad model";
    case HEARTH_ERR_UNSUPPORTED: return "unsupported";
    case HEARTH_ERR_NOMEM: return "out of memory";
    case HEARTH_ERR_INVALID_ARG: return "invalid argument";
    case HEARTH_ERR_CONTEXT_FULL: return "context full";
    case HEARTH_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case HEARTH_ERR_BAD_INPUT: return "bad input";
    case HEARTH_ERR_INTERNAL: return "internal error";
    case HEARTH_ERR_OVER_BUDGET: return "over memory budget";
    case HEARTH_ERR_OS_LIMIT: return "system limit";
    }
    return "unknown status";
}

hearth_status error_set(hearth_error *err, hearth_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

hearth_status error_prefix(hearth_error *err, hearth_status code, const char *fmt, ...) {
    if (!err) return code;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Compose "prefix: old" by hand, cutting the old message to fit. */
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    size_t np = strlen(prefix), no = strlen(old), cap = sizeof err->msg - 1;
    if (np > cap - 2) np = cap - 2;
    if (no > cap - 2 - np) no = cap - 2 - np;
    memcpy(err->msg, prefix, np);
    memcpy(err->msg + np, ": ", 2);
    memcpy(err->msg + np + 2, old, no);
    err->msg[np + 2 + no] = '\0';
    return err->code;
}
