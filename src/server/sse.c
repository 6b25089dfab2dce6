/* sse.c — server-sent event bytes waiting to go out (see sse.h). */
#include "server/sse.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

static void append(sse_buf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + len) cap *= 2;
        char *p = realloc(b->buf, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->n, s, len);
    b->n += len;
}

void sse_json(sse_buf *b, json_t *j) {
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        b->oom = true;
        return;
    }
    append(b, "data: ", 6);
    append(b, text, strlen(text));
    append(b, "\n\n", 2);
    free(text);
}

void sse_done(sse_buf *b) {
    append(b, "data: [DONE]\n\n", 14);
}

size_t sse_take(sse_buf *b, char *out, size_t max) {
    if (b->off >= b->n) return 0;
    size_t k = b->n - b->off < max ? b->n - b->off : max;
    memcpy(out, b->buf + b->off, k);
    b->off += k;
    if (b->off == b->n) b->off = b->n = 0;
    return k;
}

void sse_free(sse_buf *b) {
    free(b->buf);
    memset(b, 0, sizeof *b);
}

ssize_t sse_read(sse_buf *b, const bool *done, char *out, size_t max, bool (*produce)(void *arg),
                 void *arg) {
    for (;;) {
        if (b->oom) return MHD_CONTENT_READER_END_WITH_ERROR;
        size_t k = sse_take(b, out, max);
        if (k) return (ssize_t)k;
        if (*done) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!produce(arg)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}
