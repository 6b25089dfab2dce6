/* engine.c — the remote engine: an agent's request POSTed with libcurl to
 * another OpenAI-compatible server (another hearth, vLLM, SGLang …).
 *
 * The body is the one the local engine gets; the reply is the server's
 * chat.completion object.  HEARTH_REMOTE_API_KEY, when set, is sent as the
 * bearer token.  A progress callback ends the transfer as soon as the
 * runtime stops.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agents.h"

#define REPLY_MAX ((size_t)64 << 20) /* a reply larger than this is refused */

typedef struct reply_buf {
    char *s;
    size_t n, cap;
    bool too_big;
} reply_buf;

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg) {
    reply_buf *b = arg;
    size_t k = size * nmemb;
    if (b->n + k > REPLY_MAX) {
        b->too_big = true;
        return 0;
    }
    if (b->n + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + k + 1) cap *= 2;
        char *q = realloc(b->s, cap);
        if (!q) return 0;
        b->s = q;
        b->cap = cap;
    }
    memcpy(b->s + b->n, p, k);
    b->n += k;
    b->s[b->n] = '\0';
    return k;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    return atomic_load((const atomic_bool *)arg) ? 1 : 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

bool agent_remote_complete(void *ctx, json_t *body, int timeout_ms, const atomic_bool *stop,
                           json_t **out, char *err, size_t err_cap) {
    const char *base = ctx;
    *out = NULL;
    pthread_once(&curl_once, curl_init_once);
    char url[2048];
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') bl--;
    snprintf(url, sizeof url, "%.*s/chat/completions", (int)bl, base);
    char *text = json_dumps(body, JSON_COMPACT);
    CURL *c = curl_easy_init();
    if (!text || !c) {
        free(text);
        if (c) curl_easy_cleanup(c);
        snprintf(err, err_cap, "out of memory");
        return false;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    const char *key = getenv("HEARTH_REMOTE_API_KEY");
    char auth[512];
    if (key && *key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    reply_buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 1));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)stop);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(text);
    bool ok = false;
    if (rc != CURLE_OK) {
        snprintf(err, err_cap, "%s: %s", url,
                 b.too_big ? "the reply is too large" : curl_easy_strerror(rc));
    } else {
        json_t *j = b.s ? json_loadb(b.s, b.n, 0, NULL) : NULL;
        if (status != 200) {
            const char *m =
                json_string_value(json_object_get(json_object_get(j, "error"), "message"));
            snprintf(err, err_cap, "%s: HTTP %ld%s%.300s", url, status, m ? ": " : "", m ? m : "");
            json_decref(j);
        } else if (!json_is_object(j)) {
            snprintf(err, err_cap, "%s: the reply is not a JSON object", url);
            json_decref(j);
        } else {
            *out = j;
            ok = true;
        }
    }
    free(b.s);
    return ok;
}
