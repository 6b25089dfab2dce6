/* web.c — looks up the dashboard's embedded files (see web.h).
 *
 * The arrays come from build/gen/web_assets.h, which the Makefile
 * regenerates whenever a file under web/ changes.  Only exact paths of
 * embedded files match: there is no file system access and no path
 * normalisation to get wrong.
 */
#include "server/web.h"

#include <string.h>

typedef struct embedded_file {
    const char *path;
    const unsigned char *data;
    size_t len;
} embedded_file;

#include "web_assets.h"

/* The MIME type for a file name's extension. */
static const char *content_type(const char *path) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++) {
        if (!strcmp(dot, types[i].ext)) return types[i].type;
    }
    return "application/octet-stream";
}

bool web_find(const char *url, web_file *out) {
    if (!strcmp(url, "/")) url = "/index.html";
    for (size_t i = 0; i < (size_t)embedded_files_count; i++) {
        if (strcmp(url, embedded_files[i].path) != 0) continue;
        out->path = embedded_files[i].path;
        out->content_type = content_type(out->path);
        out->data = embedded_files[i].data;
        out->len = embedded_files[i].len;
        return true;
    }
    return false;
}
