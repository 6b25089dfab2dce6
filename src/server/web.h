/* web.h — the dashboard's static files, embedded into the binary (private
 * to the server).
 *
 * The files under web/ are turned into C arrays at build time
 * (tools/embed.sh writes build/gen/web_assets.h); `hearth serve` serves
 * them at / without the API key, since they hold no data: everything the
 * page shows it fetches from the authenticated API.
 */
#ifndef HEARTH_SERVER_WEB_H
#define HEARTH_SERVER_WEB_H

#include <stdbool.h>
#include <stddef.h>

typedef struct web_file {
    const char *path;         /* URL path, e.g. "/app.js" */
    const char *content_type; /* MIME type with charset where it is text */
    const unsigned char *data;
    size_t len;
} web_file;

/* The file served at url ("/" is "/index.html"); false when none is. */
bool web_find(const char *url, web_file *out);

#endif
