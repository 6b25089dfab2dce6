/* sse.h — the bytes of a server-sent event stream waiting to go out
 * (private to the server): events are appended as they are made and
 * handed to libmicrohttpd's content callback in whatever pieces it asks.
 */
#ifndef HEARTH_SERVER_SSE_H
#define HEARTH_SERVER_SSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct sse_buf {
    char *buf; /* bytes not yet handed out */
    size_t n, off, cap;
    bool oom; /* an append failed: the stream must end with an error */
} sse_buf;

/* Appends "data: <j>\n\n" (j consumed; NULL counts as out of memory). */
void sse_json(sse_buf *b, json_t *j);
/* Appends "data: [DONE]\n\n". */
void sse_done(sse_buf *b);
/* Moves up to max waiting bytes to out; returns how many (0: none wait). */
size_t sse_take(sse_buf *b, char *out, size_t max);
void sse_free(sse_buf *b);

/* The loop of a libmicrohttpd content callback: hands out waiting bytes;
 * when none wait, ends the stream once *done is set, or calls produce
 * (which appends events, and sets *done after the last) until some do.
 * produce returning false (the client went away), or an append that ran
 * out of memory, ends the stream with an error. */
ssize_t sse_read(sse_buf *b, const bool *done, char *out, size_t max, bool (*produce)(void *arg),
                 void *arg);

#endif
