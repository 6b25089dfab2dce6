/* test_agents_serve.c — `hearth serve --agents` as a process.
 *
 * Each case starts the real binary built beside this test with an agents
 * file written here, drives it over HTTP (libcurl) and reads its SQLite
 * store directly (libsqlite3), as an operator would:
 *   - a news file dropped in the inbox flows ingest → draft → fact-check →
 *     digest on the small real model, one succeeded row per step, each
 *     step's input the previous step's output;
 *   - kill -9 while a long run is generating, then a restart: the runs that
 *     had completed keep their outputs byte for byte, the killed run is
 *     marked interrupted and retried as attempt 2, which completes;
 *   - an agent with `engine: http://127.0.0.1:PORT/v1` runs on a second
 *     hearth process: the request shows in that server's metrics (at the
 *     agent's class) and not in the first one's;
 *   - a bad agents file: the server prints FILE:LINE: message and exits
 *     with status 1 without listening.
 * Outputs of these tiny models are nonsense text; the flow is what is
 * checked.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

/* s equals want / holds needle (false for NULL). */
static bool is(const char *s, const char *want) {
    return s && !strcmp(s, want);
}
static bool has(const char *s, const char *needle) {
    return s && strstr(s, needle);
}

static char hearth_bin[1024];
static char stories[1024];
static char slow_model[1024]; /* a random-weight llama big enough that runs take seconds */

/* ---------------------------------------------------------------- processes */

typedef test_proc proc;

/* Starts `hearth serve ARGS --port 0 -t 1`; port 0 on failure. */
static proc start(const char *args) {
    char full[4096];
    snprintf(full, sizeof full, "%s -t 1", args);
    return test_serve_start(hearth_bin, full);
}

static void stop_server(proc *p) {
    test_serve_stop(p);
}

static void kill9(proc *p) {
    kill(p->pid, SIGKILL);
    int st = 0;
    waitpid(p->pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    p->pid = -1;
}

/* ---------------------------------------------------------------- HTTP */

typedef struct buf {
    char *s;
    size_t n;
} buf;

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg) {
    buf *b = arg;
    size_t k = size * nmemb;
    char *q = realloc(b->s, b->n + k + 1);
    if (!q) return 0;
    memcpy(q + b->n, p, k);
    b->s = q;
    b->n += k;
    b->s[b->n] = '\0';
    return k;
}

/* GET (body NULL) or POST; returns the parsed JSON reply (NULL when not
 * JSON) and sets *status. */
static json_t *http(int port, const char *path, const char *body, long *status) {
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    buf b = {NULL, 0};
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    *status = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    json_t *j = b.s ? json_loads(b.s, 0, NULL) : NULL;
    free(b.s);
    return j;
}

/* The value of one Prometheus sample line, -1 when absent. */
static double metric(int port, const char *name) {
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    CURL *c = curl_easy_init();
    buf b = {NULL, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_perform(c);
    curl_easy_cleanup(c);
    double v = -1;
    size_t nl = strlen(name);
    for (const char *p = b.s; p && *p;) {
        if (!strncmp(p, name, nl) && p[nl] == ' ') v = atof(p + nl + 1);
        p = strchr(p, '\n');
        if (p) p++;
    }
    free(b.s);
    return v;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls GET /v1/agents/NAME/runs until `want` runs have status; returns
 * the list (newest first) or NULL after timeout_s. */
static json_t *wait_runs(int port, const char *agent, size_t want, const char *status,
                         int timeout_s) {
    char path[256];
    snprintf(path, sizeof path, "/v1/agents/%s/runs?limit=50", agent);
    for (int t = 0; t < timeout_s * 10; t++) {
        long st;
        json_t *j = http(port, path, NULL, &st);
        json_t *data = json_object_get(j, "data");
        size_t n = 0, i;
        json_t *r;
        json_array_foreach(data, i, r) {
            n += is(json_string_value(json_object_get(r, "status")), status);
        }
        if (n >= want) {
            json_incref(data);
            json_decref(j);
            return data;
        }
        json_decref(j);
        sleep_ms(100);
    }
    return NULL;
}

/* ---------------------------------------------------------------- files */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static const char *new_dir(const char *name) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), name);
    mkdir(dir, 0700);
    return dir;
}

/* ---------------------------------------------------------------- SQLite */

typedef struct row {
    long long id;
    char agent[32], trigger[64], status[16];
    int attempt;
    long long retry_of, completion_tokens;
    char *input, *output;
} row;

static size_t read_rows(const char *db_path, row *rows, size_t cap) {
    sqlite3 *db = NULL;
    size_t n = 0;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return 0;
    }
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, agent, trigger, status, attempt, retry_of, "
                           "completion_tokens, input, output FROM runs ORDER BY id",
                           -1, &s, NULL) == SQLITE_OK) {
        while (n < cap && sqlite3_step(s) == SQLITE_ROW) {
            row *r = &rows[n++];
            memset(r, 0, sizeof *r);
            r->id = sqlite3_column_int64(s, 0);
            snprintf(r->agent, sizeof r->agent, "%s", sqlite3_column_text(s, 1));
            snprintf(r->trigger, sizeof r->trigger, "%s", sqlite3_column_text(s, 2));
            snprintf(r->status, sizeof r->status, "%s", sqlite3_column_text(s, 3));
            r->attempt = sqlite3_column_int(s, 4);
            r->retry_of = sqlite3_column_int64(s, 5);
            r->completion_tokens = sqlite3_column_int64(s, 6);
            const unsigned char *in = sqlite3_column_text(s, 7), *out = sqlite3_column_text(s, 8);
            r->input = in ? strdup((const char *)in) : NULL;
            r->output = out ? strdup((const char *)out) : NULL;
        }
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

static void free_rows(row *rows, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(rows[i].input);
        free(rows[i].output);
    }
}

/* ---------------------------------------------------------------- the cases */

static const char flow_yaml[] =
    "store: notebook.db\n"
    "workers: 4\n"
    "agents:\n"
    "  - name: ingest\n"
    "    prompt: You turn a news file into a short note.\n"
    "    triggers: [{inbox: \"*.json\"}]\n"
    "    limits: {max_tokens: 24}\n"
    "  - name: draft\n"
    "    class: tool\n"
    "    prompt: You draft a post from the note.\n"
    "    triggers: [{after: ingest}]\n"
    "    limits: {max_tokens: 24}\n"
    "  - name: factcheck\n"
    "    prompt: You check the draft against the facts.\n"
    "    triggers: [{after: draft}]\n"
    "    inputs: [{file: facts.txt}]\n"
    "    limits: {max_tokens: 24}\n"
    "  - name: digest\n"
    "    prompt: You write the daily digest.\n"
    "    triggers: [{after: factcheck}, {daily: \"07:30\"}]\n"
    "    inputs: [{query: \"SELECT agent, status FROM runs ORDER BY id DESC LIMIT 4\"}]\n"
    "    limits: {max_tokens: 24}\n";

TEST(news_file_flows_through_four_agents) {
    const char *dir = new_dir("flow");
    char cfg[600], path[600], tmp[600], db[600], args[2048];
    snprintf(cfg, sizeof cfg, "%s/agents.yaml", dir);
    write_text(cfg, flow_yaml);
    snprintf(db, sizeof db, "%s/notebook.db", dir);
    snprintf(args, sizeof args,
             "-m '%s' --chat-template chatml --parallel 4 --ctx 512 --agents '%s'", stories, cfg);
    proc p = start(args);
    REQUIRE(p.port);
    long st;
    json_t *list = http(p.port, "/v1/agents", NULL, &st);
    CHECK(st == 200 && json_array_size(json_object_get(list, "data")) == 4);
    json_t *digest = json_array_get(json_object_get(list, "data"), 3);
    json_t *daily = json_array_get(json_object_get(digest, "triggers"), 1);
    CHECK(is(json_string_value(json_object_get(daily, "type")), "daily"));
    CHECK(json_integer_value(json_object_get(daily, "next_run_at")) > time(NULL));
    CHECK(json_is_null(json_object_get(digest, "last_run")));
    json_decref(list);
    snprintf(path, sizeof path, "%s/data/factcheck/facts.txt", dir);
    write_text(path, "The river rose two metres.\nThe bridge stayed open.\n");
    snprintf(tmp, sizeof tmp, "%s/data/ingest/inbox/.news.tmp", dir);
    write_text(tmp, "{\"title\": \"River rises\", \"body\": \"The river rose two metres.\"}\n");
    snprintf(path, sizeof path, "%s/data/ingest/inbox/news1.json", dir);
    CHECK(rename(tmp, path) == 0);
    json_t *runs = wait_runs(p.port, "digest", 1, "succeeded", 60);
    CHECK(runs != NULL);
    json_decref(runs);
    row rows[16];
    size_t n = read_rows(db, rows, 16);
    CHECKF(n == 4, "%zu rows", n);
    static const char *const agents[] = {"ingest", "draft", "factcheck", "digest"};
    static const char *const triggers[] = {"inbox:news1.json", "after:ingest", "after:draft",
                                           "after:factcheck"};
    for (size_t i = 0; i < n && i < 4; i++) {
        CHECKF(!strcmp(rows[i].agent, agents[i]) && !strcmp(rows[i].trigger, triggers[i]),
               "row %zu: %s %s", i, rows[i].agent, rows[i].trigger);
        CHECKF(!strcmp(rows[i].status, "succeeded") && rows[i].output &&
                   rows[i].completion_tokens > 0,
               "row %zu: %s", i, rows[i].status);
        if (i > 0) {
            CHECKF(rows[i].input && rows[i - 1].output &&
                       !strcmp(rows[i].input, rows[i - 1].output),
                   "row %zu's input is not the output before it", i);
        }
    }
    free_rows(rows, n);
    /* The same file again is not taken twice. */
    sleep_ms(700);
    n = read_rows(db, rows, 16);
    CHECK(n == 4);
    free_rows(rows, n);
    /* hearth agents: list, run --wait, runs. */
    char cmd[4096], out[8192];
    snprintf(
        cmd, sizeof cmd,
        "'%s' agents list --url http://127.0.0.1:%d && '%s' agents run draft --input 'by hand' "
        "--wait --url http://127.0.0.1:%d >/dev/null && '%s' agents runs draft --json --url "
        "http://127.0.0.1:%d",
        hearth_bin, p.port, hearth_bin, p.port, hearth_bin, p.port);
    FILE *f = popen(cmd, "r");
    size_t got = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[got] = '\0';
    int status = f ? pclose(f) : -1;
    CHECKF(status == 0, "hearth agents exit status %d: %s", status, out);
    CHECK(strstr(out, "factcheck") && strstr(out, "after draft"));
    const char *js = strchr(out, '{');
    json_t *j = js ? json_loads(js, 0, NULL) : NULL;
    json_t *newest = json_array_get(json_object_get(j, "data"), 0);
    CHECK(newest && is(json_string_value(json_object_get(newest, "trigger")), "api") &&
          is(json_string_value(json_object_get(newest, "status")), "succeeded"));
    json_decref(j);
    stop_server(&p);
}

static const char crash_yaml[] = "store: crash.db\n"
                                 "workers: 2\n"
                                 "agents:\n"
                                 "  - name: quick\n"
                                 "    prompt: Say one thing.\n"
                                 "    triggers: [api]\n"
                                 "    limits: {max_tokens: 6}\n"
                                 "  - name: slow\n"
                                 "    prompt: Write a long story.\n"
                                 "    triggers: [api]\n"
                                 "    limits: {max_tokens: 1500, retries: 2, timeout: 10m}\n";

TEST(kill_9_loses_nothing_completed_and_retries_the_interrupted_run) {
    const char *dir = new_dir("crash");
    char cfg[600], db[600], args[2048];
    snprintf(cfg, sizeof cfg, "%s/agents.yaml", dir);
    write_text(cfg, crash_yaml);
    snprintf(db, sizeof db, "%s/crash.db", dir);
    snprintf(args, sizeof args,
             "-m '%s' --chat-template chatml --parallel 2 --ctx 2048 --agents '%s'", slow_model,
             cfg);
    proc p = start(args);
    REQUIRE(p.port);
    long st;
    for (int i = 0; i < 3; i++) {
        json_t *r = http(p.port, "/v1/agents/quick/run", "{\"input\": \"hello\"}", &st);
        CHECK(st == 202);
        json_decref(r);
    }
    json_t *runs = wait_runs(p.port, "quick", 3, "succeeded", 120);
    CHECK(runs != NULL);
    json_decref(runs);
    json_t *r = http(p.port, "/v1/agents/slow/run", "{}", &st);
    CHECK(st == 202);
    long long slow_id = json_integer_value(json_object_get(r, "id"));
    json_decref(r);
    runs = wait_runs(p.port, "slow", 1, "running", 60);
    CHECK(runs != NULL);
    json_decref(runs);
    sleep_ms(150);
    kill9(&p);

    row before[16], after[16];
    size_t nb = read_rows(db, before, 16);
    CHECKF(nb == 4, "%zu rows before", nb);
    for (size_t i = 0; i < nb; i++) {
        if (!strcmp(before[i].agent, "quick")) {
            CHECK(!strcmp(before[i].status, "succeeded") && before[i].output);
        } else {
            CHECKF(before[i].id == slow_id && !strcmp(before[i].status, "running"),
                   "the slow run is %s at the kill", before[i].status);
        }
    }
    p = start(args);
    REQUIRE(p.port);
    char *e = test_read_file(p.err_path, NULL);
    CHECKF(e && strstr(e, "1 interrupted run(s) recovered"), "stderr: %s", e ? e : "");
    free(e);
    size_t na = read_rows(db, after, 16);
    CHECKF(na == 5, "%zu rows after the restart", na);
    for (size_t i = 0; i < nb && i < na; i++) {
        if (!strcmp(before[i].agent, "quick")) {
            CHECK(!strcmp(after[i].status, "succeeded") && after[i].output &&
                  !strcmp(after[i].output, before[i].output));
        } else {
            CHECKF(!strcmp(after[i].status, "interrupted"), "the killed run is %s",
                   after[i].status);
        }
    }
    if (na == 5) {
        CHECK(!strcmp(after[4].agent, "slow") && after[4].attempt == 2 &&
              after[4].retry_of == slow_id && !strcmp(after[4].trigger, "api"));
    }
    free_rows(before, nb);
    free_rows(after, na);
    /* The retry runs to completion. */
    runs = wait_runs(p.port, "slow", 1, "succeeded", 300);
    CHECK(runs != NULL);
    json_t *done = json_array_get(runs, 0);
    CHECK(done && json_integer_value(json_object_get(done, "attempt")) == 2);
    CHECK(done && json_integer_value(json_object_get(done, "completion_tokens")) > 0);
    json_decref(runs);
    /* A clean stop (SIGTERM) during a run puts it back in the queue at the
     * same attempt; the next start runs it. */
    r = http(p.port, "/v1/agents/slow/run", "{}", &st);
    long long again = json_integer_value(json_object_get(r, "id"));
    json_decref(r);
    runs = wait_runs(p.port, "slow", 1, "running", 60);
    CHECK(runs != NULL);
    json_decref(runs);
    stop_server(&p);
    na = read_rows(db, after, 16);
    CHECKF(na == 6 && after[5].id == again && !strcmp(after[5].status, "queued") &&
               after[5].attempt == 1,
           "after a clean stop: %zu rows, last %s attempt %d", na, na ? after[na - 1].status : "-",
           na ? after[na - 1].attempt : 0);
    free_rows(after, na);
    p = start(args);
    REQUIRE(p.port);
    runs = wait_runs(p.port, "slow", 2, "succeeded", 300);
    CHECK(runs && json_integer_value(json_object_get(json_array_get(runs, 0), "id")) == again);
    json_decref(runs);
    stop_server(&p);
}

TEST(remote_engine_runs_on_a_second_server) {
    char args[2048];
    snprintf(args, sizeof args, "-m '%s' --chat-template chatml --parallel 2 --ctx 512", stories);
    proc b = start(args);
    REQUIRE(b.port);
    const char *dir = new_dir("remote");
    char cfg[600], yaml[1024];
    snprintf(cfg, sizeof cfg, "%s/agents.yaml", dir);
    snprintf(yaml, sizeof yaml,
             "agents:\n"
             "  - name: far\n"
             "    prompt: You run elsewhere.\n"
             "    engine: http://127.0.0.1:%d/v1\n"
             "    triggers: [api]\n"
             "    limits: {max_tokens: 12}\n"
             "  - name: near\n"
             "    prompt: You run here.\n"
             "    triggers: [{after: far}]\n"
             "    limits: {max_tokens: 12}\n",
             b.port);
    write_text(cfg, yaml);
    snprintf(args, sizeof args,
             "-m '%s' --chat-template chatml --parallel 2 --ctx 512 --agents '%s'", stories, cfg);
    proc a = start(args);
    REQUIRE(a.port);
    long st;
    json_t *one = http(a.port, "/v1/agents/far", NULL, &st);
    CHECK(st == 200);
    CHECK(has(json_string_value(json_object_get(one, "engine")), "http://127.0.0.1:"));
    json_decref(one);
    json_t *r = http(a.port, "/v1/agents/far/run", "{\"input\": \"far away\"}", &st);
    CHECK(st == 202);
    json_decref(r);
    json_t *runs = wait_runs(a.port, "near", 1, "succeeded", 60);
    CHECK(runs != NULL);
    json_decref(runs);
    runs = wait_runs(a.port, "far", 1, "succeeded", 1);
    json_t *far = json_array_get(runs, 0);
    CHECK(far && json_integer_value(json_object_get(far, "completion_tokens")) > 0);
    json_decref(runs);
    /* far's request went to b, near's stayed on a. */
    CHECK(metric(b.port, "hearth_requests_total{class=\"background\"}") == 1);
    CHECK(metric(a.port, "hearth_requests_total{class=\"background\"}") == 1);
    stop_server(&a);
    /* A remote that is gone: the run fails with the reason, a stays up. */
    stop_server(&b);
    a = start(args);
    REQUIRE(a.port);
    r = http(a.port, "/v1/agents/far/run", "{}", &st);
    json_decref(r);
    runs = wait_runs(a.port, "far", 2, "failed", 60); /* the first attempt and its retry */
    CHECK(runs != NULL);
    far = json_array_get(runs, 0);
    CHECK(far && has(json_string_value(json_object_get(far, "error")), "engine: http://"));
    json_decref(runs);
    stop_server(&a);
}

/* The output forms through the local engine: a JSON-schema agent's output
 * parses and has the schema's fields and types; a sectional agent's is
 * written as sections (two, from a model-written outline). */
TEST(json_schema_and_sections_outputs) {
    const char *dir = new_dir("forms");
    char cfg[600], args[2048];
    snprintf(cfg, sizeof cfg, "%s/agents.yaml", dir);
    write_text(cfg, "agents:\n"
                    "  - name: parser\n"
                    "    prompt: Extract the name and the age.\n"
                    "    output: json_schema\n"
                    "    schema: {type: object, properties: {name: {type: string, maxLength: 12},\n"
                    "             age: {type: integer}}, required: [name, age],\n"
                    "             additionalProperties: false}\n"
                    "    triggers: [api]\n"
                    "    limits: {max_tokens: 200}\n"
                    "  - name: longform\n"
                    "    prompt: Write a story.\n"
                    "    output: sections\n"
                    "    sections: 2\n"
                    "    triggers: [api]\n"
                    "    limits: {max_tokens: 400}\n");
    snprintf(args, sizeof args,
             "-m '%s' --chat-template chatml --parallel 4 --ctx 1024 --agents '%s'", stories, cfg);
    proc p = start(args);
    REQUIRE(p.port);
    long st;
    json_decref(http(p.port, "/v1/agents/parser/run", "{\"input\": \"Tim is three.\"}", &st));
    CHECK(st == 202);
    json_decref(http(p.port, "/v1/agents/longform/run", "{\"input\": \"a cat\"}", &st));
    CHECK(st == 202);
    json_t *runs = wait_runs(p.port, "parser", 1, "succeeded", 60);
    json_t *run = json_array_get(runs, 0);
    REQUIRE(run);
    json_error_t je;
    json_t *out = json_loads(json_string_value(json_object_get(run, "output")), 0, &je);
    CHECKF(out && json_object_size(out) == 2, "output: %s",
           json_string_value(json_object_get(run, "output")));
    /* maxLength counts characters, not bytes. */
    const char *name = json_string_value(json_object_get(out, "name"));
    size_t chars = 0;
    for (const char *q = name; q && *q; q++) chars += ((unsigned char)*q & 0xc0) != 0x80;
    CHECKF(name && chars <= 12, "output: %s", json_string_value(json_object_get(run, "output")));
    CHECK(json_is_integer(json_object_get(out, "age")));
    json_decref(out);
    json_decref(runs);
    runs = wait_runs(p.port, "longform", 1, "succeeded", 120);
    run = json_array_get(runs, 0);
    REQUIRE(run);
    const char *text = json_string_value(json_object_get(run, "output"));
    /* The stitched document carries one heading per section. */
    size_t headings = 0;
    for (const char *q = text; q && (q = strstr(q, "## ")) != NULL; q += 3) headings++;
    CHECKF(headings == 2, "%zu headings in: %.300s", headings, text ? text : "(null)");
    CHECK(json_integer_value(json_object_get(run, "completion_tokens")) > 0);
    json_decref(runs);
    stop_server(&p);
}

TEST(bad_agents_file_refuses_to_start) {
    const char *dir = new_dir("bad");
    char cfg[600], args[4096];
    snprintf(cfg, sizeof cfg, "%s/agents.yaml", dir);
    write_text(cfg, "agents:\n"
                    "  - name: a\n"
                    "    prompt: hi\n"
                    "    triggers:\n"
                    "      - every: 5m\n");
    snprintf(args, sizeof args, "'%s' serve -m '%s' --agents '%s' --port 0 2>&1 </dev/null",
             hearth_bin, stories, cfg);
    FILE *f = popen(args, "r");
    REQUIRE(f);
    char out[2048] = "";
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    int status = pclose(f);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 1, "exit status %d", status);
    char want[700];
    snprintf(want, sizeof want, "%s:5: unknown trigger 'every'", cfg);
    CHECKF(!strncmp(out, want, strlen(want)), "output: %s", out);
    CHECK(!strstr(out, "listening"));
    snprintf(args, sizeof args, "'%s' agents check '%s' 2>&1", hearth_bin, cfg);
    f = popen(args, "r");
    REQUIRE(f);
    n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    status = pclose(f);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1 && !strncmp(out, want, strlen(want)));
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(hearth_bin, sizeof hearth_bin, "%s", test_hearth_bin(argv[0]));
    snprintf(stories, sizeof stories, "%s", test_shared("models/stories260K.gguf"));
    snprintf(slow_model, sizeof slow_model, "%s/llama-d512.gguf", test_tmpdir());
    char cmd[3072];
    snprintf(cmd, sizeof cmd, "'%s' synth --preset llama-d512 --type q4_0 '%s' >/dev/null 2>&1",
             hearth_bin, slow_model);
    if (system(cmd) != 0) printf("  synth failed: %s\n", cmd);
    RUN(bad_agents_file_refuses_to_start);
    RUN(news_file_flows_through_four_agents);
    RUN(remote_engine_runs_on_a_second_server);
    RUN(kill_9_loses_nothing_completed_and_retries_the_interrupted_run);
    RUN(json_schema_and_sections_outputs);
    curl_global_cleanup();
    return test_finish();
}
