/* agents.c — `hearth agents`: the agents of a running `hearth serve
 * --agents` over its HTTP API (libcurl), and a check of an agents file.
 *
 * Talking to the server rather than to the SQLite store directly keeps one
 * writer of the store (the server) and works the same against a server on
 * another machine.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agents/config.h"
#include "cli/cli.h"

static const char agents_usage[] =
    "usage: hearth agents <command> [options]\n"
    "\n"
    "The agents of a running `hearth serve --agents FILE`, through its HTTP API.\n"
    "\n"
    "commands:\n"
    "  list                  the agents: class, engine, triggers, last run\n"
    "  run NAME [--input TEXT] [--wait]\n"
    "                        queue a run now; --wait follows it and prints its output\n"
    "                        (exit status 1 when it fails)\n"
    "  runs NAME [--limit N] the agent's runs, newest first (default 20)\n"
    "  check FILE            validate an agents file without starting anything\n"
    "\n"
    "options:\n"
    "  --url URL             the server (default http://127.0.0.1:8080, or $HEARTH_URL)\n"
    "  --api-key KEY         its API key (default $HEARTH_API_KEY)\n"
    "  --json                print the server's JSON instead of a table\n"
    "  -h, --help            show this help\n";

typedef struct client {
    const char *url;
    const char *key;
    bool json;
} client;

typedef struct body {
    char *s;
    size_t n;
} body;

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg) {
    body *b = arg;
    size_t k = size * nmemb;
    char *q = realloc(b->s, b->n + k + 1);
    if (!q) return 0;
    memcpy(q + b->n, p, k);
    b->s = q;
    b->n += k;
    b->s[b->n] = '\0';
    return k;
}

/* GET or POST (post_body not NULL) path; the parsed reply or NULL after an
 * error line. */
static json_t *request(const client *c, const char *path, const char *post_body) {
    char url[2048];
    size_t ul = strlen(c->url);
    while (ul > 0 && c->url[ul - 1] == '/') ul--;
    snprintf(url, sizeof url, "%.*s%s", (int)ul, c->url, path);
    CURL *h = curl_easy_init();
    if (!h) {
        cli_error("cannot start libcurl");
        return NULL;
    }
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[512];
    if (c->key && *c->key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->key);
        hdr = curl_slist_append(hdr, auth);
    }
    body b = {NULL, 0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    if (post_body) curl_easy_setopt(h, CURLOPT_POSTFIELDS, post_body);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    json_t *j = NULL;
    if (rc != CURLE_OK) {
        cli_error("%s: %s (is `hearth serve --agents` running there?)", url,
                  curl_easy_strerror(rc));
    } else {
        j = b.s ? json_loads(b.s, 0, NULL) : NULL;
        if (status >= 400 || !j) {
            const char *m =
                json_string_value(json_object_get(json_object_get(j, "error"), "message"));
            cli_error("%s: HTTP %ld: %s", url, status, m ? m : "the reply is not JSON");
            json_decref(j);
            j = NULL;
        }
    }
    free(b.s);
    return j;
}

static void print_json(json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s) puts(s);
    free(s);
}

static const char *str(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

static void fmt_time(json_t *t, char *out, size_t cap) {
    if (!json_is_number(t)) {
        snprintf(out, cap, "-");
        return;
    }
    time_t s = (time_t)json_number_value(t);
    struct tm tm;
    localtime_r(&s, &tm);
    strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

static int cmd_list(const client *c) {
    json_t *j = request(c, "/v1/agents", NULL);
    if (!j) return 1;
    if (c->json) {
        print_json(j);
        json_decref(j);
        return 0;
    }
    printf("%-16s %-10s %-8s %-12s %-30s %s\n", "NAME", "CLASS", "ENABLED", "OUTPUT", "TRIGGERS",
           "LAST RUN");
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(j, "data"), i, a) {
        char trig[256] = "";
        size_t at = 0, k;
        json_t *t;
        json_array_foreach(json_object_get(a, "triggers"), k, t) {
            const char *spec = str(t, "spec");
            at += (size_t)snprintf(trig + at, at < sizeof trig ? sizeof trig - at : 0, "%s%s%s%s",
                                   k ? "," : "", str(t, "type"),
                                   *spec && strcmp(spec, "-") ? " " : "",
                                   strcmp(spec, "-") ? spec : "");
            if (at >= sizeof trig) break;
        }
        json_t *last = json_object_get(a, "last_run");
        char when[32] = "";
        if (json_is_object(last)) fmt_time(json_object_get(last, "started_at"), when, sizeof when);
        printf("%-16s %-10s %-8s %-12s %-30s %s %s\n", str(a, "name"), str(a, "class"),
               json_is_false(json_object_get(a, "enabled")) ? "no" : "yes", str(a, "output"),
               trig[0] ? trig : "-", json_is_object(last) ? str(last, "status") : "never", when);
    }
    json_decref(j);
    return 0;
}

static void print_runs(json_t *data) {
    printf("%-8s %-12s %-7s %-24s %-8s %-19s %s\n", "ID", "STATUS", "ATTEMPT", "TRIGGER", "TOKENS",
           "STARTED", "OUTPUT / ERROR");
    size_t i;
    json_t *r;
    json_array_foreach(data, i, r) {
        char when[32];
        fmt_time(json_object_get(r, "started_at"), when, sizeof when);
        const char *text = json_string_value(json_object_get(r, "output"));
        if (!text) text = json_string_value(json_object_get(r, "error"));
        char line[61];
        snprintf(line, sizeof line, "%s", text ? text : "");
        for (char *p = line; *p; p++) {
            if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
        }
        printf("%-8lld %-12s %-7lld %-24.24s %-8lld %-19s %s\n",
               (long long)json_integer_value(json_object_get(r, "id")), str(r, "status"),
               (long long)json_integer_value(json_object_get(r, "attempt")), str(r, "trigger"),
               (long long)json_integer_value(json_object_get(r, "completion_tokens")), when, line);
    }
}

static int cmd_runs(const client *c, const char *name, long long limit) {
    char *esc = curl_easy_escape(NULL, name, 0);
    char path[512];
    snprintf(path, sizeof path, "/v1/agents/%s/runs?limit=%lld", esc ? esc : name, limit);
    curl_free(esc);
    json_t *j = request(c, path, NULL);
    if (!j) return 1;
    if (c->json) {
        print_json(j);
    } else {
        print_runs(json_object_get(j, "data"));
    }
    json_decref(j);
    return 0;
}

static int cmd_run(const client *c, const char *name, const char *input, bool wait) {
    char *esc = curl_easy_escape(NULL, name, 0);
    char path[512];
    snprintf(path, sizeof path, "/v1/agents/%s/run", esc ? esc : name);
    json_t *b = json_object();
    if (input) json_object_set_new(b, "input", json_string(input));
    char *text = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    json_t *j = text ? request(c, path, text) : NULL;
    free(text);
    if (!j) {
        curl_free(esc);
        return 1;
    }
    long long id = json_integer_value(json_object_get(j, "id"));
    if (!wait) {
        if (c->json) {
            print_json(j);
        } else {
            printf("queued run %lld of %s\n", id, name);
        }
        json_decref(j);
        curl_free(esc);
        return 0;
    }
    json_decref(j);
    /* Follow it: the run is in the agent's newest runs until it ends. */
    snprintf(path, sizeof path, "/v1/agents/%s/runs?limit=50", esc ? esc : name);
    curl_free(esc);
    for (;;) {
        json_t *list = request(c, path, NULL);
        if (!list) return 1;
        size_t i;
        json_t *r, *found = NULL;
        json_array_foreach(json_object_get(list, "data"), i, r) {
            if (json_integer_value(json_object_get(r, "id")) == id) found = r;
        }
        const char *st = found ? str(found, "status") : "?";
        if (found && strcmp(st, "queued") != 0 && strcmp(st, "running") != 0) {
            int rc = strcmp(st, "succeeded") == 0 ? 0 : 1;
            if (c->json) {
                print_json(found);
            } else if (rc == 0) {
                const char *out = json_string_value(json_object_get(found, "output"));
                printf("%s\n", out ? out : "");
            } else {
                cli_error("run %lld of %s %s: %s", id, name, st, str(found, "error"));
            }
            json_decref(list);
            return rc;
        }
        json_decref(list);
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int cmd_check(const char *file) {
    agents_config *cfg = NULL;
    hearth_error err;
    if (agents_config_load(file, &cfg, &err) != HEARTH_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("%s: %zu agents, store %s\n", file, cfg->n_agents, cfg->store_path);
    agents_config_free(cfg);
    return 0;
}

int cli_agents(int argc, char **argv) {
    client c = {getenv("HEARTH_URL"), getenv("HEARTH_API_KEY"), false};
    if (!c.url || !*c.url) c.url = "http://127.0.0.1:8080";
    const char *pos[2] = {NULL, NULL};
    const char *cmd = NULL, *input = NULL;
    size_t n_pos = 0;
    long long limit = 20;
    bool wait = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(agents_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--url")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            c.url = v;
        } else if (!strcmp(a, "--api-key")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            c.key = v;
        } else if (!strcmp(a, "--json")) {
            c.json = true;
        } else if (!strcmp(a, "--wait")) {
            wait = true;
        } else if (!strcmp(a, "--input")) {
            if (!(input = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--limit")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(a, v, 1, 1000, &limit)) return 2;
        } else if (a[0] == '-') {
            cli_error("unknown option '%s' for agents (see hearth agents --help)", a);
            return 2;
        } else if (!cmd) {
            cmd = a;
        } else if (n_pos < 2) {
            pos[n_pos++] = a;
        } else {
            cli_error("too many arguments (see hearth agents --help)");
            return 2;
        }
    }
    if (!cmd) {
        fputs(agents_usage, stderr);
        return 2;
    }
    bool needs_name = !strcmp(cmd, "run") || !strcmp(cmd, "runs") || !strcmp(cmd, "check");
    if (needs_name && n_pos != 1) {
        cli_error("hearth agents %s needs %s", cmd,
                  strcmp(cmd, "check") ? "an agent name" : "a file");
        return 2;
    }
    if (!strcmp(cmd, "check")) return cmd_check(pos[0]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (!strcmp(cmd, "list")) {
        rc = cmd_list(&c);
    } else if (!strcmp(cmd, "run")) {
        rc = cmd_run(&c, pos[0], input, wait);
    } else if (!strcmp(cmd, "runs")) {
        rc = cmd_runs(&c, pos[0], limit);
    } else {
        cli_error("unknown agents command '%s': use list, run, runs or check", cmd);
        rc = 2;
    }
    curl_global_cleanup();
    return rc;
}
