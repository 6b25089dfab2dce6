/* test_agents.c — the agents module without a model.
 *
 * Config: every kind of bad file is refused with the line a reader would
 * point at (checked against the line numbers of the files written here).
 * Store: a run claimed and never finished (the process died) is found
 * "running" on reopening, marked interrupted and retried within the
 * agent's retries; outputs committed before are intact; query_store reads
 * and cannot write.  Tools: paths that leave the data folder, by ".." or a
 * symbolic link, are refused.  Runtime: a scripted engine that answers
 * with tool calls first drives the tool loop (read_file, write_output,
 * query_store, call_agent) and an "after" chain, so every step is checked
 * exactly.
 */
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agents/agents.h"
#include "agents/store.h"
#include "agents/tools.h"
#include "test.h"

static int case_no;

/* The content of message i of a request's messages array (NULL when absent). */
static const char *msg_content(const json_t *msgs, size_t i) {
    return json_string_value(json_object_get(json_array_get(msgs, i), "content"));
}

/* s equals want / holds needle (false for NULL). */
static bool is(const char *s, const char *want) {
    return s && !strcmp(s, want);
}
static bool has(const char *s, const char *needle) {
    return s && strstr(s, needle);
}

/* Writes text to a new folder's agents.yaml; returns the file's path. */
static const char *write_config(const char *text) {
    static char path[512];
    char dir[400];
    snprintf(dir, sizeof dir, "%s/cfg%d", test_tmpdir(), case_no++);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/agents.yaml", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Loading text must fail with "PATH:LINE: …needle…". */
static void expect_error(const char *text, int line, const char *needle) {
    const char *path = write_config(text);
    agents_config *cfg = NULL;
    hearth_error err = {HEARTH_OK, ""};
    hearth_status st = agents_config_load(path, &cfg, &err);
    CHECKF(st != HEARTH_OK && !cfg, "expected an error for line %d (%s)", line, needle);
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    CHECKF(!strncmp(err.msg, prefix, strlen(prefix)), "want prefix '%s', got '%s'", prefix,
           err.msg);
    CHECKF(strstr(err.msg, needle) != NULL, "want '%s' in '%s'", needle, err.msg);
    agents_config_free(cfg);
}

TEST(config_errors_name_file_and_line) {
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    colour: red\n",
                 4, "unknown key 'colour'");
    expect_error("store: x.db\n"
                 "agentz: []\n",
                 2, "unknown key 'agentz'");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    triggers:\n"
                 "      - interval: 10 minutes\n",
                 5, "bad trigger 'interval: 10 minutes'");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    triggers:\n"
                 "      - daily: \"25:00\"\n",
                 5, "bad trigger 'daily: 25:00'");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    triggers:\n"
                 "      - hourly: 3\n",
                 5, "unknown trigger 'hourly'");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    description: no prompt here\n",
                 2, "agent 'a' has no 'prompt'");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    tools:\n"
                 "      - read_file: [notes, ../b/secret.txt]\n",
                 5, "the read_file path '../b/secret.txt' escapes agent 'a''s data folder");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    inputs:\n"
                 "      - file: /etc/passwd\n",
                 5, "outside agent 'a''s data folder");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    triggers: [{after: c}]\n"
                 "  - name: b\n"
                 "    prompt: hi\n"
                 "    triggers: [{after: a}]\n"
                 "  - name: c\n"
                 "    prompt: hi\n"
                 "    triggers:\n"
                 "      - api\n"
                 "      - after: b\n",
                 7, "a cycle of agent triggers (after): a <- c <- b <- a");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    triggers: [{after: nobody}]\n",
                 4, "no agent named 'nobody'");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "  - name: a\n"
                 "    prompt: again\n",
                 4, "a second agent named 'a'");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: [unclosed\n",
                 4, "not valid YAML");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    inputs:\n"
                 "      - query: DELETE FROM runs\n",
                 5, "query refused");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    output: json_schema\n",
                 4, "needs a 'schema'");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    limits:\n"
                 "      timeout: soon\n",
                 5, "'timeout' must be a duration");
    expect_error("agents:\n"
                 "  - name: a\n"
                 "    prompt: hi\n"
                 "    engine: ftp://x\n",
                 4, "'engine' must be local or an http:// URL");
    /* A file that is not there: line 0. */
    agents_config *cfg = NULL;
    hearth_error err;
    CHECK(agents_config_load("/nonexistent/agents.yaml", &cfg, &err) != HEARTH_OK);
    CHECK(!strncmp(err.msg, "/nonexistent/agents.yaml:0: ", 28));
}

TEST(config_valid) {
    const char *path = write_config("store: s.db\n"
                                    "workers: 2\n"
                                    "agents:\n"
                                    "  - name: news\n"
                                    "    description: takes news files\n"
                                    "    class: tool\n"
                                    "    prompt: |\n"
                                    "      You read news.\n"
                                    "    triggers:\n"
                                    "      - inbox: \"*.json\"\n"
                                    "      - interval: 10m\n"
                                    "      - daily: \"07:30\"\n"
                                    "      - api\n"
                                    "    tools: [read_file, {call_agent: [parse]}]\n"
                                    "    limits: {max_tokens: 64, timeout: 2m, retries: 3}\n"
                                    "    request: {temperature: 0, seed: 7}\n"
                                    "  - name: parse\n"
                                    "    prompt: parse\n"
                                    "    engine: http://127.0.0.1:9/v1\n"
                                    "    output: json_schema\n"
                                    "    schema:\n"
                                    "      type: object\n"
                                    "      properties: {title: {type: string}}\n"
                                    "      required: [title]\n"
                                    "    triggers: [{after: news}]\n");
    agents_config *cfg = NULL;
    hearth_error err = {HEARTH_OK, ""};
    REQUIRE(agents_config_load(path, &cfg, &err) == HEARTH_OK);
    CHECK(cfg->n_agents == 2 && cfg->workers == 2);
    CHECK(strstr(cfg->store_path, "/s.db") != NULL && cfg->store_path[0] == '/');
    const agent_def *a = &cfg->agents[0];
    CHECK(!strcmp(a->name, "news") && a->cls == SCHED_TOOL &&
          !strcmp(a->prompt, "You read news.\n"));
    CHECK(a->n_triggers == 4);
    CHECK(a->triggers[0].type == AGENT_TRIGGER_INBOX && !strcmp(a->triggers[0].spec, "*.json"));
    CHECK(a->triggers[1].type == AGENT_TRIGGER_INTERVAL && a->triggers[1].every_s == 600);
    CHECK(a->triggers[2].type == AGENT_TRIGGER_DAILY && a->triggers[2].minute_of_day == 450);
    CHECK(a->triggers[3].type == AGENT_TRIGGER_API);
    CHECK(a->tools == (AGENT_TOOL_READ_FILE | AGENT_TOOL_CALL_AGENT));
    CHECK(a->n_callable == 1 && a->callable[0] == 1);
    CHECK(a->max_tokens == 64 && a->timeout_s == 120 && a->retries == 3);
    CHECK(a->request_json != NULL);
    json_t *req = json_loads(a->request_json, 0, NULL);
    CHECK(json_integer_value(json_object_get(req, "seed")) == 7);
    json_decref(req);
    CHECK(a->engine == NULL);
    const agent_def *b = &cfg->agents[1];
    CHECK(b->engine && !strcmp(b->engine, "http://127.0.0.1:9/v1"));
    CHECK(b->output == AGENT_OUTPUT_JSON_SCHEMA && strstr(b->schema_json, "\"required\""));
    CHECK(b->triggers[0].type == AGENT_TRIGGER_AFTER && b->triggers[0].after == 0);
    agents_config_free(cfg);
}

/* The example set loads as it is shipped. */
TEST(notebook_example_loads) {
    agents_config *cfg = NULL;
    hearth_error err = {HEARTH_OK, ""};
    CHECKF(agents_config_load("examples/notebook/agents.yaml", &cfg, &err) == HEARTH_OK, "%s",
           err.msg);
    CHECK(cfg && cfg->n_agents == 12);
    agents_config_free(cfg);
}

TEST(paths_confined) {
    CHECK(agents_path_is_confined("a.txt"));
    CHECK(agents_path_is_confined("./notes/a.txt"));
    CHECK(agents_path_is_confined("notes/../a.txt"));
    CHECK(!agents_path_is_confined("../a.txt"));
    CHECK(!agents_path_is_confined("notes/../../a.txt"));
    CHECK(!agents_path_is_confined("/etc/passwd"));
    CHECK(!agents_path_is_confined(""));
    char dir[400], path[600], outside[600];
    snprintf(dir, sizeof dir, "%s/sandbox", test_tmpdir());
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/sub", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/sub/ok.txt", dir);
    write_file(path, "inside");
    snprintf(outside, sizeof outside, "%s/secret.txt", test_tmpdir());
    write_file(outside, "secret");
    snprintf(path, sizeof path, "%s/link.txt", dir);
    CHECK(symlink(outside, path) == 0);
    snprintf(path, sizeof path, "%s/linkdir", dir);
    CHECK(symlink(test_tmpdir(), path) == 0);
    char err[300];
    size_t len;
    bool cut;
    char *s = tools_read_confined(dir, "sub/ok.txt", 100, &len, &cut, err, sizeof err);
    CHECK(s && !strcmp(s, "inside") && len == 6 && !cut);
    free(s);
    s = tools_read_confined(dir, "sub/../sub/ok.txt", 3, &len, &cut, err, sizeof err);
    CHECK(s && !strcmp(s, "ins") && cut);
    free(s);
    CHECK(!tools_read_confined(dir, "link.txt", 100, &len, &cut, err, sizeof err));
    CHECKF(strstr(err, "symbolic link"), "%s", err);
    CHECK(!tools_read_confined(dir, "linkdir/secret.txt", 100, &len, &cut, err, sizeof err));
    CHECKF(strstr(err, "symbolic link"), "%s", err);
    CHECK(!tools_read_confined(dir, "../secret.txt", 100, &len, &cut, err, sizeof err));
    CHECKF(strstr(err, "outside"), "%s", err);
    CHECK(!tools_read_confined(dir, "sub", 100, &len, &cut, err, sizeof err));
}

static int three_retries(void *ctx, const char *agent) {
    (void)ctx;
    return !strcmp(agent, "a") ? 1 : !strcmp(agent, "b") ? 0 : -1;
}

TEST(store_crash_recovery) {
    char path[512];
    snprintf(path, sizeof path, "%s/recover.db", test_tmpdir());
    agent_store *st = NULL;
    hearth_error err;
    REQUIRE(store_open(path, &st, &err) == HEARTH_OK);
    long long id1, id2, id3, id4;
    CHECK(store_enqueue(st, "a", "api", "first", 1, &id1, &err) == HEARTH_OK);
    CHECK(store_enqueue(st, "b", "api", NULL, 1, &id2, &err) == HEARTH_OK);
    CHECK(store_enqueue(st, "a", "interval", NULL, 1, &id3, &err) == HEARTH_OK);
    CHECK(store_enqueue(st, "gone", "api", NULL, 1, &id4, &err) == HEARTH_OK);
    agent_run r1, r2, r3;
    REQUIRE(store_claim(st, &r1) && r1.id == id1 && r1.status == RUN_RUNNING);
    REQUIRE(store_claim(st, &r2) && r2.id == id2);
    /* a has a running run: its second one waits; "gone" is next. */
    REQUIRE(store_claim(st, &r3) && r3.id == id4);
    agent_run_free(&r3);
    CHECK(!store_claim(st, &r3));
    const char *next[] = {"b"};
    run_result res = {RUN_SUCCEEDED, "output one", NULL, 10, 3,        "[]",
                      "abc",         false,        next, 1,  "after:a"};
    CHECK(store_finish(st, &r1, &res, &err) == HEARTH_OK);
    agent_run_free(&r1);
    /* The process dies here: r2 is left running. */
    agent_run_free(&r2);
    store_close(st);
    REQUIRE(store_open(path, &st, &err) == HEARTH_OK);
    CHECK(store_recover(st, three_retries, NULL, &err) == 2); /* r2 and the "gone" run */
    agent_run got;
    REQUIRE(store_get_run(st, id1, &got));
    CHECK(got.status == RUN_SUCCEEDED && !strcmp(got.output, "output one"));
    CHECK(got.prompt_tokens == 10 && got.completion_tokens == 3 && got.finished_at > 0);
    agent_run_free(&got);
    REQUIRE(store_get_run(st, id2, &got));
    CHECK(got.status == RUN_INTERRUPTED && got.error && strstr(got.error, "interrupted"));
    agent_run_free(&got);
    /* b allows 0 retries: no new attempt of run 2; the after-run queued
     * with r1's success is there; a's second run is still queued. */
    agent_run *runs = NULL;
    size_t n = store_list_runs(st, "b", 10, &runs);
    CHECK(n == 2);
    if (n == 2) {
        CHECK(!strcmp(runs[0].trigger, "after:a") && runs[0].status == RUN_QUEUED);
        CHECK(!strcmp(runs[0].input, "output one"));
        CHECK(runs[1].id == id2);
    }
    for (size_t i = 0; i < n; i++) agent_run_free(&runs[i]);
    free(runs);
    /* An agent with retries: its interrupted run comes back as attempt 2. */
    REQUIRE(store_claim(st, &r1) && r1.id == id3);
    store_close(st);
    REQUIRE(store_open(path, &st, &err) == HEARTH_OK);
    CHECK(store_recover(st, three_retries, NULL, &err) == 1);
    REQUIRE(store_last_run(st, "a", &got));
    CHECK(got.status == RUN_QUEUED && got.attempt == 2 && !strcmp(got.trigger, "interval"));
    agent_run_free(&got);
    agent_run_free(&r1);
    /* The unknown agent's run was marked too, and nothing retries it. */
    REQUIRE(store_get_run(st, id4, &got));
    CHECK(got.status == RUN_INTERRUPTED);
    agent_run_free(&got);
    CHECK(store_last_run(st, "gone", &got) && got.id == id4);
    agent_run_free(&got);
    store_close(st);
}

TEST(query_store_read_only) {
    char path[512];
    snprintf(path, sizeof path, "%s/query.db", test_tmpdir());
    agent_store *st = NULL;
    hearth_error err;
    REQUIRE(store_open(path, &st, &err) == HEARTH_OK);
    long long id;
    CHECK(store_enqueue(st, "a", "api", "x", 1, &id, &err) == HEARTH_OK);
    CHECK(store_add_record(st, "a", id, "k", "v", &err) == HEARTH_OK);
    json_t *rows = store_query(st, "SELECT agent, trigger FROM runs", 10, &err);
    REQUIRE(rows && json_array_size(rows) == 1);
    CHECK(is(json_string_value(json_object_get(json_array_get(rows, 0), "trigger")), "api"));
    json_decref(rows);
    rows = store_query(st, "SELECT key, content FROM records", 10, &err);
    CHECK(rows && json_array_size(rows) == 1);
    json_decref(rows);
    static const char *const refused[] = {
        "DELETE FROM runs",
        "UPDATE runs SET status = 'failed'",
        "INSERT INTO records (agent, content, created_at) VALUES ('x', 'y', 0)",
        "DROP TABLE runs",
        "SELECT 1; DELETE FROM runs",
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "PRAGMA journal_mode=DELETE",
        "SELECT * FROM inbox_seen",
        "SELECT * FROM sqlite_master",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        rows = store_query(st, refused[i], 10, &err);
        CHECKF(!rows, "not refused: %s", refused[i]);
        json_decref(rows);
    }
    /* A query that would run for ever is stopped. */
    rows = store_query(st,
                       "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                       "SELECT max(x) FROM c",
                       10, &err);
    CHECKF(!rows && has(err.msg, "interrupt"), "%s", err.msg);
    json_decref(rows);
    rows = store_query(st, "SELECT count(*) AS n FROM runs", 10, &err);
    CHECK(rows && json_integer_value(json_object_get(json_array_get(rows, 0), "n")) == 1);
    json_decref(rows);
    store_close(st);
}

/* ---------------------------------------------------------------- a scripted engine */

typedef struct script {
    atomic_int calls;
    json_t *bodies; /* every request seen */
    pthread_mutex_t mu;
} script;

static json_t *reply_text(const char *text) {
    return json_pack("{s:[{s:{s:s, s:s}, s:s}], s:{s:i, s:i}}", "choices", "message", "role",
                     "assistant", "content", text, "finish_reason", "stop", "usage",
                     "prompt_tokens", 7, "completion_tokens", 5);
}

/* The engine: agents whose prompt starts with "tools" call every tool
 * once (the Qwen <tool_call> text form for read_file, tool_calls for the
 * rest) and then answer; "fail" fails; every other agent echoes the first
 * line of its input. */
static bool scripted(void *ctx, json_t *body, int timeout_ms, const atomic_bool *stop, json_t **out,
                     char *err, size_t cap) {
    (void)timeout_ms;
    (void)stop;
    script *sc = ctx;
    atomic_fetch_add(&sc->calls, 1);
    pthread_mutex_lock(&sc->mu);
    json_array_append_new(sc->bodies, json_deep_copy(body));
    pthread_mutex_unlock(&sc->mu);
    json_t *msgs = json_object_get(body, "messages");
    const char *sys = msg_content(msgs, 0);
    const char *user = msg_content(msgs, 1);
    size_t n = json_array_size(msgs);
    if (!strncmp(sys, "fail", 4)) {
        snprintf(err, cap, "scripted failure");
        return false;
    }
    if (!strncmp(sys, "tools", 5)) {
        if (n == 2) {
            *out = reply_text("Let me look.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": "
                              "{\"path\": \"facts.txt\"}}\n</tool_call>");
            return true;
        }
        if (n == 4) {
            *out = json_pack(
                "{s:[{s:{s:s, s:n, s:[{s:s, s:s, s:{s:s, s:s}}, {s:s, s:s, s:{s:s, s:s}}, {s:s, "
                "s:s, s:{s:s, s:s}}, {s:s, s:s, s:{s:s, s:s}}]}}], s:{s:i, s:i}}",
                "choices", "message", "role", "assistant", "content", "tool_calls", "id", "c1",
                "type", "function", "function", "name", "write_output", "arguments",
                "{\"key\": \"fact\", \"content\": \"water is wet\"}", "id", "c2", "type",
                "function", "function", "name", "query_store", "arguments",
                "{\"sql\": \"SELECT key, content FROM records\"}", "id", "c3", "type", "function",
                "function", "name", "read_file", "arguments", "{\"path\": \"../escape.txt\"}", "id",
                "c4", "type", "function", "function", "name", "call_agent", "arguments",
                "{\"agent\": \"echo\", \"input\": \"from tools\"}", "usage", "prompt_tokens", 7,
                "completion_tokens", 5);
            return true;
        }
        *out = reply_text("done with tools");
        return true;
    }
    const char *nl = strchr(user, '\n');
    char first[200];
    snprintf(first, sizeof first, "%s saw: %.*s", sys, nl ? (int)(nl - user) : 100, user);
    *out = reply_text(first);
    return true;
}

static bool wait_runs(agents_rt *rt, const char *agent, size_t want, const char *status,
                      int timeout_ms, json_t **runs_out) {
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        agents_reply r;
        char path[128];
        snprintf(path, sizeof path, "%s/runs", agent);
        agents_route(rt, "GET", path, "50", NULL, 0, &r);
        json_t *data = json_object_get(r.json, "data");
        size_t done = 0, i;
        json_t *run;
        json_array_foreach(data, i, run) {
            done += is(json_string_value(json_object_get(run, "status")), status);
        }
        if (done >= want) {
            *runs_out = json_incref(data);
            json_decref(r.json);
            return true;
        }
        json_decref(r.json);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    *runs_out = NULL;
    return false;
}

TEST(runtime_tool_loop_and_chain) {
    const char *path =
        write_config("workers: 2\n"
                     "agents:\n"
                     "  - name: tooler\n"
                     "    prompt: tools user\n"
                     "    class: tool\n"
                     "    tools: [read_file, write_output, query_store, call_agent]\n"
                     "    triggers: [api]\n"
                     "  - name: echo\n"
                     "    prompt: echo\n"
                     "    triggers: [api]\n"
                     "  - name: ingest\n"
                     "    prompt: ingest\n"
                     "    triggers: [{inbox: \"*.json\"}]\n"
                     "  - name: draft\n"
                     "    prompt: draft\n"
                     "    triggers: [{after: ingest}]\n"
                     "  - name: check\n"
                     "    prompt: check\n"
                     "    triggers: [{after: draft}]\n"
                     "    inputs: [{file: facts.txt}]\n"
                     "  - name: ticker\n"
                     "    prompt: tick\n"
                     "    triggers: [{interval: 1s}]\n"
                     "  - name: flaky\n"
                     "    prompt: fail always\n"
                     "    limits: {retries: 2}\n");
    agents_config *cfg = NULL;
    hearth_error err = {HEARTH_OK, ""};
    REQUIRE(agents_config_load(path, &cfg, &err) == HEARTH_OK);
    char dir[512], file[600];
    snprintf(dir, sizeof dir, "%s", cfg->data_dir);
    script sc;
    atomic_init(&sc.calls, 0);
    sc.bodies = json_array();
    pthread_mutex_init(&sc.mu, NULL);
    agents_rt *rt = NULL;
    agent_engine eng = {scripted, &sc};
    REQUIRE(agents_create(cfg, eng, &rt, &err) == HEARTH_OK);
    snprintf(file, sizeof file, "%s/tooler/facts.txt", dir);
    write_file(file, "the sky is blue");
    snprintf(file, sizeof file, "%s/check/facts.txt", dir);
    write_file(file, "fact list");
    REQUIRE(agents_start(rt, &err) == HEARTH_OK);

    /* The tool loop. */
    agents_reply r;
    agents_route(rt, "POST", "tooler/run", NULL, "{\"input\": \"go\"}", 15, &r);
    CHECK(r.status == 202 && json_integer_value(json_object_get(r.json, "id")) > 0);
    CHECK(is(json_string_value(json_object_get(r.json, "agent")), "tooler"));
    CHECK(is(json_string_value(json_object_get(r.json, "trigger")), "api"));
    json_decref(r.json);
    json_t *runs = NULL;
    CHECK(wait_runs(rt, "tooler", 1, "succeeded", 5000, &runs));
    json_t *run = json_array_get(runs, 0);
    /* write_output with a key stores a record; the run's output is the
     * closing message; tokens add up over the three rounds. */
    CHECK(run && is(json_string_value(json_object_get(run, "output")), "done with tools"));
    CHECK(json_integer_value(json_object_get(run, "prompt_tokens")) == 21);
    CHECK(json_integer_value(json_object_get(run, "completion_tokens")) == 15);
    json_decref(runs);
    /* The third request carries every tool result. */
    json_t *third = NULL;
    for (size_t i = 0; i < json_array_size(sc.bodies); i++) {
        json_t *b = json_array_get(sc.bodies, i);
        if (json_array_size(json_object_get(b, "messages")) == 9) third = b;
    }
    REQUIRE(third);
    json_t *msgs = json_object_get(third, "messages");
    CHECK(is(json_string_value(json_object_get(third, "priority")), "tool"));
    CHECK(json_array_size(json_object_get(third, "tools")) == 4);
    CHECK(has(msg_content(msgs, 1), "Input:\n---\ngo\n"));
    CHECK(is(msg_content(msgs, 3), "the sky is blue"));
    CHECK(is(msg_content(msgs, 5), "recorded 'fact'"));
    CHECK(is(msg_content(msgs, 6), "[{\"key\":\"fact\",\"content\":\"water is wet\"}]"));
    CHECK(has(msg_content(msgs, 7), "error: the path '../escape.txt' is outside"));
    CHECK(has(msg_content(msgs, 8), "\"status\":\"queued\""));
    /* call_agent queued a run of echo. */
    CHECK(wait_runs(rt, "echo", 1, "succeeded", 5000, &runs));
    run = json_array_get(runs, 0);
    CHECK(run && is(json_string_value(json_object_get(run, "trigger")), "call:tooler"));
    CHECK(run &&
          is(json_string_value(json_object_get(run, "output")), "echo saw: Trigger: call:tooler"));
    json_decref(runs);

    /* A dropped file flows ingest → draft → check. */
    snprintf(file, sizeof file, "%s/ingest/inbox/.n1.tmp", dir);
    write_file(file, "{\"title\": \"Rain\"}");
    char dest[600];
    snprintf(dest, sizeof dest, "%s/ingest/inbox/n1.json", dir);
    CHECK(rename(file, dest) == 0);
    CHECK(wait_runs(rt, "check", 1, "succeeded", 8000, &runs));
    run = json_array_get(runs, 0);
    CHECK(run && is(json_string_value(json_object_get(run, "trigger")), "after:draft"));
    json_t *inputs = json_object_get(run, "inputs");
    CHECK(json_array_size(inputs) == 2);
    CHECK(is(json_string_value(json_object_get(json_array_get(inputs, 1), "name")), "facts.txt"));
    json_decref(runs);
    CHECK(wait_runs(rt, "ingest", 1, "succeeded", 100, &runs));
    CHECK(is(json_string_value(json_object_get(json_array_get(runs, 0), "trigger")),
             "inbox:n1.json"));
    json_decref(runs);

    /* An interval of a second fires, again and again. */
    CHECK(wait_runs(rt, "ticker", 2, "succeeded", 5000, &runs));
    CHECK(is(json_string_value(json_object_get(json_array_get(runs, 0), "trigger")), "interval"));
    json_decref(runs);

    /* Failures retry up to the limit: attempts 1, 2, 3. */
    agents_route(rt, "POST", "flaky/run", NULL, "", 0, &r);
    CHECK(r.status == 202);
    json_decref(r.json);
    CHECK(wait_runs(rt, "flaky", 3, "failed", 5000, &runs));
    CHECK(json_array_size(runs) == 3);
    CHECK(json_integer_value(json_object_get(json_array_get(runs, 0), "attempt")) == 3);
    CHECK(has(json_string_value(json_object_get(json_array_get(runs, 0), "error")),
              "scripted failure"));
    json_decref(runs);

    /* The API's answers to bad requests. */
    agents_route(rt, "GET", "nobody", NULL, NULL, 0, &r);
    CHECK(r.status == 404 && !r.json && !strcmp(r.code, "agent_not_found"));
    agents_route(rt, "GET", "echo/runs", "0", NULL, 0, &r);
    CHECK(r.status == 400 && !strcmp(r.param, "limit"));
    agents_route(rt, "POST", "echo/run", NULL, "{\"input\": 5}", 12, &r);
    CHECK(r.status == 400 && !strcmp(r.param, "input"));
    agents_route(rt, "POST", "echo/run", NULL, "[1", 2, &r);
    CHECK(r.status == 400);
    agents_route(rt, "GET", "echo/run", NULL, NULL, 0, &r);
    CHECK(r.status == 405);
    agents_list(rt, &r);
    CHECK(r.status == 200 && json_array_size(json_object_get(r.json, "data")) == 7);
    json_t *first = json_array_get(json_object_get(r.json, "data"), 0);
    CHECK(is(json_string_value(json_object_get(first, "class")), "tool"));
    CHECK(json_is_object(json_object_get(first, "last_run")));
    json_decref(r.json);
    agents_free(rt);
    json_decref(sc.bodies);
    pthread_mutex_destroy(&sc.mu);
}

int main(void) {
    test_init("test_agents");
    RUN(config_errors_name_file_and_line);
    RUN(config_valid);
    RUN(notebook_example_loads);
    RUN(paths_confined);
    RUN(store_crash_recovery);
    RUN(query_store_read_only);
    RUN(runtime_tool_loop_and_chain);
    return test_finish();
}
