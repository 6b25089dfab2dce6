/* test_server.c — `hearth serve` as a client sees it.
 *
 * Each case starts the real binary built beside this test
 * (build/<kind>/hearth, so the ASan build is exercised too) on a free port
 * (--port 0; the chosen port is read from its first stdout line), talks
 * HTTP/1.0 to it over a socket, and stops it with SIGTERM, which must end
 * it cleanly (status 0, nothing from the sanitizers on stderr).
 *
 * Covered: every endpoint's shape, greedy completions equal to `hearth run
 * --temp 0`, streaming in OpenAI's chunk format, logprobs, stop strings,
 * the prefix cache in usage, a client that disconnects mid-stream, 503 with
 * Retry-After when a class queue is full, and bad input of every kind
 * answered with the right status and an OpenAI error object while the
 * server stays up (response_format, grammar, loop_guard and /v1/sections
 * included); the dashboard's files served without the key and its
 * endpoints (/v1/metrics, /v1/agents) only with it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "convert/convert.h"
#include "server/api.h"
#include "test.h"

static char hearth_bin[1024];
static char stories[1024];
static char qwen3[1024]; /* converted from tests/data/hf/qwen3: ChatML template */

/* ---------------------------------------------------------------- the process */

typedef test_proc proc;

/* Starts `hearth serve ARGS --port 0 -t 2`; port 0 on failure. */
static proc start(const char *args) {
    char full[4096];
    snprintf(full, sizeof full, "%s -t 2", args);
    return test_serve_start(hearth_bin, full);
}

static void stop_server(proc *p) {
    test_serve_stop(p);
}

/* ---------------------------------------------------------------- HTTP/1.0 client */

typedef struct resp {
    int status;
    char *head; /* status line and headers */
    char *body;
    size_t n_body;
} resp;

static void resp_free(resp *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        s += k;
        n -= (size_t)k;
    }
    return true;
}

/* Sends one request (extra_headers: "Name: value\r\n" lines or "") and
 * reads the reply until the server closes. */
static resp http(int port, const char *method, const char *path, const char *extra_headers,
                 const char *body, size_t n_body) {
    resp r = {0, NULL, NULL, 0};
    int fd = dial(port);
    if (fd < 0) return r;
    char head[2048];
    int k = snprintf(head, sizeof head,
                     "%s %s HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "%sContent-Length: %zu\r\n\r\n",
                     method, path, extra_headers ? extra_headers : "", body ? n_body : 0);
    if (!send_all(fd, head, (size_t)k) || (body && !send_all(fd, body, n_body))) {
        close(fd);
        return r;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
        ssize_t got = recv(fd, buf + n, cap - n, 0);
        if (got <= 0) break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/%*s %d", &r.status) != 1) {
        free(buf);
        return r;
    }
    r.head = strndup(buf, (size_t)(sep - buf));
    r.n_body = n - (size_t)(sep + 4 - buf);
    r.body = malloc(r.n_body + 1);
    memcpy(r.body, sep + 4, r.n_body);
    r.body[r.n_body] = '\0';
    free(buf);
    return r;
}

static resp post(int port, const char *path, const char *body) {
    return http(port, "POST", path, NULL, body, strlen(body));
}

static json_t *body_json(const resp *r) {
    return r->body ? json_loads(r->body, 0, NULL) : NULL;
}

/* Expects an OpenAI error object with this status (and param when given). */
static void expect_error(const resp *r, int status, const char *param, const char *what) {
    CHECKF(r->status == status, "%s: status %d, want %d (%s)", what, r->status, status,
           r->body ? r->body : "");
    json_t *j = body_json(r);
    json_t *e = json_object_get(j, "error");
    CHECKF(json_is_string(json_object_get(e, "message")) &&
               json_is_string(json_object_get(e, "type")),
           "%s: not an error object: %s", what, r->body ? r->body : "");
    if (param) {
        const char *p = json_string_value(json_object_get(e, "param"));
        CHECKF(p && !strcmp(p, param), "%s: param %s, want %s", what, p ? p : "null", param);
    }
    json_decref(j);
}

static bool healthy(int port) {
    resp r = http(port, "GET", "/health", NULL, NULL, 0);
    bool ok = r.status == 200 && r.body && strstr(r.body, "\"ok\"");
    resp_free(&r);
    return ok;
}

/* `hearth run` greedy output for a prompt (the continuation only). */
static char *run_greedy(const char *model, const char *prompt, int n) {
    char out[512], cmd[4096];
    snprintf(out, sizeof out, "%s/run.out", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p '%s' -n %d --temp 0 -t 2 >'%s' 2>/dev/null",
             hearth_bin, model, prompt, n, out);
    if (system(cmd) != 0) return NULL;
    char *text = test_read_file(out, NULL);
    if (!text) return NULL;
    size_t L = strlen(text), P = strlen(prompt);
    if (L > 0 && text[L - 1] == '\n') text[--L] = '\0'; /* run ends with a newline */
    if (L < P || memcmp(text, prompt, P) != 0) {
        free(text);
        return NULL;
    }
    memmove(text, text + P, L - P + 1);
    return text;
}

/* ---------------------------------------------------------------- cases */

TEST(endpoints_and_greedy_completions) {
    char args[2048];
    snprintf(args, sizeof args, "-m '%s' --parallel 4 --ctx 256", stories);
    proc p = start(args);
    REQUIRE(p.port);
    CHECK(healthy(p.port));
    resp r = http(p.port, "GET", "/v1/models", NULL, NULL, 0);
    json_t *j = body_json(&r);
    json_t *m0 = json_array_get(json_object_get(j, "data"), 0);
    CHECK(r.status == 200 && !strcmp(json_string_value(json_object_get(j, "object")), "list"));
    CHECK(!strcmp(json_string_value(json_object_get(m0, "id")), "stories260K"));
    CHECK(!strcmp(json_string_value(json_object_get(m0, "object")), "model"));
    json_decref(j);
    resp_free(&r);
    r = http(p.port, "GET", "/v1/models/stories260K", NULL, NULL, 0);
    CHECK(r.status == 200);
    resp_free(&r);
    r = http(p.port, "GET", "/v1/models/gpt-4", NULL, NULL, 0);
    expect_error(&r, 404, "model", "unknown model");
    resp_free(&r);

    /* Greedy text equals `hearth run --temp 0`. */
    const char *prompts[] = {"Once upon a time", "The little dog", "Lily and Ben went"};
    for (int i = 0; i < 3; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"prompt\": \"%s\", \"max_tokens\": 40, \"temperature\": 0}",
                 prompts[i]);
        r = post(p.port, "/v1/completions", body);
        j = body_json(&r);
        json_t *c = json_array_get(json_object_get(j, "choices"), 0);
        const char *text = json_string_value(json_object_get(c, "text"));
        char *want = run_greedy(stories, prompts[i], 40);
        CHECKF(r.status == 200 && text && want && !strcmp(text, want),
               "'%s': server '%s', run '%s'", prompts[i], text ? text : "?", want ? want : "?");
        CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "text_completion"));
        CHECK(!strcmp(json_string_value(json_object_get(c, "finish_reason")), "length"));
        json_t *u = json_object_get(j, "usage");
        CHECK(json_integer_value(json_object_get(u, "completion_tokens")) == 40);
        CHECK(json_integer_value(json_object_get(u, "total_tokens")) ==
              json_integer_value(json_object_get(u, "prompt_tokens")) + 40);
        CHECK(json_is_integer(
            json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")));
        free(want);
        json_decref(j);
        resp_free(&r);
    }
    /* The same prompt again comes from the prefix cache. */
    r = post(p.port, "/v1/completions",
             "{\"prompt\": \"Once upon a time\", \"max_tokens\": 5, \"temperature\": 0}");
    j = body_json(&r);
    json_t *det = json_object_get(json_object_get(j, "usage"), "prompt_tokens_details");
    CHECKF(json_integer_value(json_object_get(det, "cached_tokens")) > 0, "%s",
           r.body ? r.body : "");
    json_decref(j);
    resp_free(&r);

    /* Stop strings cut the text; finish_reason is "stop". */
    char *full = run_greedy(stories, "Once upon a time", 40);
    REQUIRE(full);
    const char *cut = strstr(full + 10, " ");
    REQUIRE(cut);
    char stop[8], body[512];
    snprintf(stop, sizeof stop, "%.4s", cut);
    snprintf(body, sizeof body,
             "{\"prompt\": \"Once upon a time\", \"max_tokens\": 40, \"temperature\": 0, "
             "\"stop\": [\"%s\"]}",
             stop);
    r = post(p.port, "/v1/completions", body);
    j = body_json(&r);
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    const char *text = json_string_value(json_object_get(c, "text"));
    size_t want = (size_t)(strstr(full, stop) - full);
    CHECKF(text && strlen(text) == want && !strncmp(text, full, want), "stop: '%s'",
           text ? text : "?");
    CHECK(!strcmp(json_string_value(json_object_get(c, "finish_reason")), "stop"));
    json_decref(j);
    resp_free(&r);
    free(full);

    /* Legacy logprobs. */
    r = post(p.port, "/v1/completions",
             "{\"prompt\": \"Once\", \"max_tokens\": 4, \"temperature\": 0, \"logprobs\": 2}");
    j = body_json(&r);
    json_t *lp = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs");
    CHECK(json_array_size(json_object_get(lp, "tokens")) == 4);
    CHECK(json_array_size(json_object_get(lp, "token_logprobs")) == 4);
    CHECK(json_object_size(json_array_get(json_object_get(lp, "top_logprobs"), 0)) == 2);
    CHECK(json_number_value(json_array_get(json_object_get(lp, "token_logprobs"), 0)) <= 0.0);
    json_decref(j);
    resp_free(&r);

    /* Without a chat template, chat is refused with a hint. */
    r = post(p.port, "/v1/chat/completions",
             "{\"messages\": [{\"role\": \"user\", \"content\": "
             "\"hi\"}]}");
    expect_error(&r, 400, NULL, "chat without template");
    CHECK(r.body && strstr(r.body, "--chat-template"));
    resp_free(&r);

    /* Metrics and the queue view. */
    r = http(p.port, "GET", "/metrics", NULL, NULL, 0);
    CHECK(r.status == 200 && r.head && strstr(r.head, "text/plain"));
    const char *names[] = {"hearth_queue_depth{class=\"interactive\"}",
                           "hearth_running_sequences{class=\"background\"}",
                           "hearth_tokens_per_second",
                           "hearth_time_to_first_token_seconds_bucket{class=\"interactive\",le=",
                           "hearth_time_per_output_token_seconds_count{class=\"tool\"}",
                           "hearth_kv_cache_usage_ratio",
                           "hearth_kv_cache_bytes",
                           "process_resident_memory_bytes",
                           "hearth_memory_committed_bytes",
                           "hearth_generated_tokens_total{class=\"interactive\"} 1"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        CHECKF(r.body && strstr(r.body, names[i]), "metrics lack %s", names[i]);
    }
    resp_free(&r);
    r = http(p.port, "GET", "/v1/queue", NULL, NULL, 0);
    j = body_json(&r);
    CHECK(r.status == 200 && json_is_array(json_object_get(j, "sequences")) &&
          json_integer_value(json_object_get(j, "slots")) == 4);
    json_decref(j);
    resp_free(&r);
    stop_server(&p);
}

/* Splits an SSE body into its data payloads; returns how many. */
static size_t sse_events(char *body, char **ev, size_t cap) {
    size_t n = 0;
    for (char *line = strtok(body, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "data: ", 6)) ev[n++] = line + 6;
    }
    return n;
}

TEST(chat_streaming_and_logprobs) {
    char args[2048];
    snprintf(args, sizeof args, "-m '%s' --parallel 2", qwen3);
    proc p = start(args);
    REQUIRE(p.port);
    const char *msg = "{\"model\": \"x\", \"messages\": [{\"role\": \"system\", \"content\": "
                      "\"Be brief.\"}, {\"role\": \"user\", \"content\": [{\"type\": \"text\", "
                      "\"text\": \"Hello\"}]}], \"max_tokens\": 12, \"temperature\": 0";
    char body[1024];
    snprintf(body, sizeof body, "%s}", msg);
    resp r = post(p.port, "/v1/chat/completions", body);
    json_t *j = body_json(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body ? r.body : "");
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    json_t *m = json_object_get(c, "message");
    CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "chat.completion"));
    CHECK(!strncmp(json_string_value(json_object_get(j, "id")), "chatcmpl-", 9));
    CHECK(!strcmp(json_string_value(json_object_get(m, "role")), "assistant"));
    const char *whole = json_string_value(json_object_get(m, "content"));
    CHECK(whole != NULL);
    char *expect = strdup(whole ? whole : "");
    json_decref(j);
    resp_free(&r);

    /* The same request streamed: role first, the same text, a finish
     * chunk, the usage chunk, [DONE]. */
    snprintf(body, sizeof body,
             "%s, \"stream\": true, \"stream_options\": {\"include_usage\": true}}", msg);
    r = post(p.port, "/v1/chat/completions", body);
    CHECK(r.status == 200 && r.head && strstr(r.head, "text/event-stream"));
    char *ev[512];
    size_t n = r.body ? sse_events(r.body, ev, 512) : 0;
    REQUIRE(n >= 3);
    CHECK(!strcmp(ev[n - 1], "[DONE]"));
    char text[4096] = "";
    bool role_first = false, finished = false, usage = false;
    for (size_t i = 0; i + 1 < n; i++) {
        json_t *k = json_loads(ev[i], 0, NULL);
        CHECKF(k != NULL, "event %zu is not JSON: %s", i, ev[i]);
        CHECK(!strcmp(json_string_value(json_object_get(k, "object")), "chat.completion.chunk"));
        json_t *ch = json_array_get(json_object_get(k, "choices"), 0);
        json_t *d = json_object_get(ch, "delta");
        if (i == 0) role_first = json_is_string(json_object_get(d, "role"));
        const char *t = json_string_value(json_object_get(d, "content"));
        if (t) strncat(text, t, sizeof text - strlen(text) - 1);
        if (json_is_string(json_object_get(ch, "finish_reason"))) finished = true;
        json_t *u = json_object_get(k, "usage");
        if (json_is_object(u)) {
            usage = json_array_size(json_object_get(k, "choices")) == 0 &&
                    json_integer_value(json_object_get(u, "completion_tokens")) == 12;
        }
        json_decref(k);
    }
    CHECK(role_first && finished && usage);
    CHECKF(!strcmp(text, expect), "streamed '%s', whole '%s'", text, expect);
    free(expect);
    resp_free(&r);

    /* Chat logprobs. */
    snprintf(body, sizeof body, "%s, \"logprobs\": true, \"top_logprobs\": 3}", msg);
    r = post(p.port, "/v1/chat/completions", body);
    j = body_json(&r);
    json_t *content = json_object_get(
        json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs"), "content");
    CHECKF(json_array_size(content) == 12, "%s", r.body ? r.body : "");
    json_t *first = json_array_get(content, 0);
    CHECK(json_is_string(json_object_get(first, "token")));
    CHECK(json_is_array(json_object_get(first, "bytes")));
    CHECK(json_array_size(json_object_get(first, "top_logprobs")) == 3);
    json_decref(j);
    resp_free(&r);
    stop_server(&p);
}

TEST(bad_input_gets_the_right_error) {
    char args[2048];
    snprintf(args, sizeof args, "-m '%s' --ctx 128 --api-key sekret --max-body 65536", qwen3);
    proc p = start(args);
    REQUIRE(p.port);
    const char *auth = "Authorization: Bearer sekret\r\n";
    typedef struct bad {
        const char *path, *body;
        int status;
        const char *param;
    } bad;
    const bad cases[] = {
        {"/v1/chat/completions", "{\"messages\": [", 400, NULL},
        {"/v1/chat/completions", "", 400, NULL},
        {"/v1/chat/completions", "[1, 2]", 400, NULL},
        {"/v1/chat/completions", "{\"messages\": \"hi\"}", 400, "messages"},
        {"/v1/chat/completions", "{\"messages\": []}", 400, "messages"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}",
         400, "messages"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": 7}]}", 400,
         "messages"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 400,
         "messages"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": \"hot\"}",
         400, "temperature"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": -1}", 400,
         "temperature"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": \"10\"}", 400,
         "max_tokens"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": "
         "1000000000000}",
         400, "max_tokens"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 0}", 400,
         "max_tokens"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream\": \"yes\"}", 400,
         "stream"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"priority\": \"urgent\"}",
         400, "priority"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"priority\": 1}", 400,
         "priority"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"n\": 2}", 400, "n"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": [1]}", 400, "stop"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": [\"\"]}", 400,
         "stop"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 99}", 400,
         "top_logprobs"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"seed\": 1.5}", 400, "seed"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"\\u0000\"}]}",
         400, NULL},
        {"/v1/chat/completions", "{\"a\": 1, \"a\": 2}", 400, NULL},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
         "\"top_p\": 1e999}",
         400, NULL},
        {"/v1/completions", "{\"prompt\": 5}", 400, "prompt"},
        {"/v1/completions", "{\"prompt\": [\"a\", \"b\"]}", 400, "prompt"},
        {"/v1/completions", "{\"prompt\": [1, 2, 99999]}", 400, "prompt"},
        {"/v1/completions", "{\"prompt\": [1, -2]}", 400, "prompt"},
        {"/v1/completions", "{}", 400, "prompt"},
        {"/v1/completions", "{\"prompt\": \"x\", \"logprobs\": 9}", 400, "logprobs"},
        {"/v1/completions", "{\"prompt\": \"x\", \"echo\": true}", 400, "echo"},
        {"/v1/completions", "{\"prompt\": \"x\", \"stream_options\": 3}", 400, "stream_options"},
        {"/v1/completions",
         "{\"prompt\": \"x\", \"response_format\": {\"type\": \"json_schema\", "
         "\"json_schema\": {\"schema\": {\"type\": \"number\", \"maximum\": 1}}}}",
         400, "response_format"},
        {"/v1/completions", "{\"prompt\": \"x\", \"grammar\": \"root ::= [a-\"}", 400, "grammar"},
        {"/v1/completions", "{\"prompt\": \"x\", \"grammar\": 7}", 400, "grammar"},
        {"/v1/completions", "{\"prompt\": \"x\", \"loop_guard\": {\"span\": 1}}", 400,
         "loop_guard"},
        {"/v1/sections", "{\"sections\": 3}", 400, "topic"},
        {"/v1/sections", "{\"topic\": \"x\", \"sections\": 2, \"section_tokens\": \"long\"}", 400,
         "sections"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        resp r = http(p.port, "POST", cases[i].path, auth, cases[i].body, strlen(cases[i].body));
        char what[128];
        snprintf(what, sizeof what, "case %zu %.60s", i, cases[i].body);
        expect_error(&r, cases[i].status, cases[i].param, what);
        resp_free(&r);
    }
    /* An over-long prompt: 400 context_length_exceeded. */
    char *big = malloc(20000);
    strcpy(big, "{\"messages\": [{\"role\": \"user\", \"content\": \"");
    for (int i = 0; i < 400; i++) strcat(big, "Hello world ");
    strcat(big, "\"}]}");
    resp r = http(p.port, "POST", "/v1/chat/completions", auth, big, strlen(big));
    expect_error(&r, 400, "messages", "over-long prompt");
    CHECK(r.body && strstr(r.body, "context_length_exceeded"));
    resp_free(&r);
    free(big);
    /* A body over --max-body: 413. */
    size_t huge_n = 100000;
    char *huge = malloc(huge_n + 1);
    memset(huge, ' ', huge_n);
    huge[huge_n] = '\0';
    r = http(p.port, "POST", "/v1/chat/completions", auth, huge, huge_n);
    CHECKF(r.status == 413, "big body: %d", r.status);
    resp_free(&r);
    free(huge);
    /* Deep nesting. */
    char *deep = malloc(40010);
    memset(deep, '[', 40000);
    deep[40000] = '\0';
    r = http(p.port, "POST", "/v1/chat/completions", auth, deep, 40000);
    expect_error(&r, 400, NULL, "deep nesting");
    resp_free(&r);
    free(deep);
    /* Authentication. */
    const char *ok =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 2}";
    r = http(p.port, "POST", "/v1/chat/completions", NULL, ok, strlen(ok));
    expect_error(&r, 401, NULL, "no key");
    resp_free(&r);
    r = http(p.port, "POST", "/v1/chat/completions", "Authorization: Bearer sekreT\r\n", ok,
             strlen(ok));
    expect_error(&r, 401, NULL, "wrong key");
    resp_free(&r);
    r = http(p.port, "GET", "/v1/models", "Authorization: sekret\r\n", NULL, 0);
    expect_error(&r, 401, NULL, "no Bearer");
    resp_free(&r);
    r = http(p.port, "POST", "/v1/chat/completions", auth, ok, strlen(ok));
    CHECKF(r.status == 200, "with key: %d %s", r.status, r.body ? r.body : "");
    resp_free(&r);
    /* A bad priority header. */
    r = http(p.port, "POST", "/v1/chat/completions",
             "Authorization: Bearer sekret\r\nX-Hearth-Priority: now\r\n", ok, strlen(ok));
    expect_error(&r, 400, "priority", "bad priority header");
    resp_free(&r);
    r = http(p.port, "POST", "/v1/chat/completions",
             "Authorization: Bearer sekret\r\nX-Hearth-Priority: background\r\n", ok, strlen(ok));
    CHECK(r.status == 200);
    resp_free(&r);
    /* Paths and methods. */
    r = http(p.port, "GET", "/v1/nothing", auth, NULL, 0);
    expect_error(&r, 404, NULL, "unknown path");
    resp_free(&r);
    r = http(p.port, "GET", "/v1/chat/completions", auth, NULL, 0);
    expect_error(&r, 405, NULL, "GET on POST");
    resp_free(&r);
    r = http(p.port, "DELETE", "/v1/models", auth, NULL, 0);
    expect_error(&r, 405, NULL, "DELETE");
    resp_free(&r);
    /* Garbage on the socket. */
    int fd = dial(p.port);
    if (fd >= 0) {
        send_all(fd, "\x01\x02\x03 nonsense\r\n\r\n", 17);
        char sink[256];
        while (recv(fd, sink, sizeof sink, 0) > 0) {
        }
        close(fd);
    }
    CHECK(healthy(p.port));
    stop_server(&p);
}

typedef struct bg_call {
    int port;
    int status;
    bool retry_after;
} bg_call;

static void *bg_thread(void *arg) {
    bg_call *c = arg;
    const char *b = "{\"prompt\": \"Once upon a time\", \"max_tokens\": 200, \"priority\": "
                    "\"background\"}";
    resp r = post(c->port, "/v1/completions", b);
    c->status = r.status;
    c->retry_after = r.head && strstr(r.head, "Retry-After: ");
    if (r.status == 503) expect_error(&r, 503, NULL, "queue full");
    resp_free(&r);
    return NULL;
}

TEST(full_queue_is_503_and_disconnects_cancel) {
    char args[2048];
    snprintf(args, sizeof args, "-m '%s' --parallel 1 --ctx 256 --queue-limit 4,4,1", stories);
    proc p = start(args);
    REQUIRE(p.port);
    bg_call calls[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        calls[i] = (bg_call){p.port, 0, false};
        pthread_create(&th[i], NULL, bg_thread, &calls[i]);
    }
    int ok = 0, busy = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ok += calls[i].status == 200;
        if (calls[i].status == 503) {
            busy++;
            CHECK(calls[i].retry_after);
        }
    }
    CHECKF(ok >= 1 && busy >= 1 && ok + busy == 8, "%d ok, %d busy", ok, busy);

    /* A streaming client that hangs up: its sequence is cancelled. */
    int fd = dial(p.port);
    REQUIRE(fd >= 0);
    const char *b = "{\"prompt\": \"Once upon a time\", \"max_tokens\": 250, \"stream\": true}";
    char req[1024];
    snprintf(req, sizeof req,
             "POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(b), b);
    REQUIRE(send_all(fd, req, strlen(req)));
    char first[256];
    CHECK(recv(fd, first, sizeof first, 0) > 0);
    close(fd);
    bool cancelled = false;
    for (int i = 0; i < 200 && !cancelled; i++) {
        resp r = http(p.port, "GET", "/metrics", NULL, NULL, 0);
        cancelled = r.body && strstr(r.body, "hearth_requests_finished_total{class=\"interactive\","
                                             "reason=\"cancelled\"} 1");
        bool length = r.body && strstr(r.body, "hearth_requests_finished_total{class="
                                               "\"interactive\",reason=\"length\"} 1");
        resp_free(&r);
        if (length) break; /* finished before the hang-up was seen */
        usleep(10000);
    }
    CHECK(cancelled);
    CHECK(healthy(p.port));
    stop_server(&p);
}

/* Runs `hearth serve ARGS` expecting it to refuse to start; returns its
 * first output line. */
static void expect_startup_error(const char *args, const char *needle) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' serve %s --port 0 2>&1 </dev/null", hearth_bin, args);
    FILE *fp = popen(cmd, "r");
    REQUIRE(fp);
    char line[1024] = "";
    if (!fgets(line, sizeof line, fp)) line[0] = '\0';
    int st = pclose(fp);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) != 0, "%s: exit %d", args, st);
    CHECKF(strstr(line, "hearth: error: ") && strstr(line, needle), "%s: %s", args, line);
}

TEST(dashboard_files_open_its_data_behind_the_key) {
    char args[2048];
    snprintf(args, sizeof args, "-m '%s' --api-key sekret --parallel 2", stories);
    proc p = start(args);
    REQUIRE(p.port);
    const char *auth = "Authorization: Bearer sekret\r\n";
    /* The page and its files need no key and come with a strict CSP. */
    resp r = http(p.port, "GET", "/", NULL, NULL, 0);
    CHECKF(r.status == 200 && r.head && strstr(r.head, "text/html") &&
               strstr(r.head, "Content-Security-Policy: default-src 'none'") && r.body &&
               strstr(r.body, "<!doctype html>"),
           "GET /: %d", r.status);
    resp_free(&r);
    r = http(p.port, "GET", "/app.js", NULL, NULL, 0);
    CHECK(r.status == 200 && r.head && strstr(r.head, "text/javascript") && r.n_body > 100);
    resp_free(&r);
    r = http(p.port, "HEAD", "/index.html", NULL, NULL, 0);
    CHECK(r.status == 200 && r.n_body == 0);
    resp_free(&r);
    r = http(p.port, "POST", "/", NULL, "{}", 2);
    expect_error(&r, 405, NULL, "POST /");
    resp_free(&r);
    r = http(p.port, "GET", "/../Makefile", NULL, NULL, 0);
    expect_error(&r, 404, NULL, "a path out of the tree");
    resp_free(&r);
    /* Its data endpoints need the key like the rest of the API. */
    const char *data[] = {"/v1/metrics", "/v1/agents", "/v1/queue"};
    for (size_t i = 0; i < 3; i++) {
        r = http(p.port, "GET", data[i], NULL, NULL, 0);
        expect_error(&r, 401, NULL, data[i]);
        resp_free(&r);
    }
    /* A completion, then the history: columns of equal length, the
     * interactive time to first token measured in some sample. */
    const char *one = "{\"prompt\": \"Once upon\", \"max_tokens\": 8, \"user\": \"carol\"}";
    r = http(p.port, "POST", "/v1/completions", auth, one, strlen(one));
    CHECK(r.status == 200);
    resp_free(&r);
    usleep(1300 * 1000); /* one more sample */
    r = http(p.port, "GET", "/v1/metrics", auth, NULL, 0);
    json_t *j = body_json(&r);
    json_t *cols = json_object_get(j, "samples");
    size_t n = json_array_size(json_object_get(cols, "t"));
    CHECKF(r.status == 200 && n >= 2, "metrics: %d, %zu samples", r.status, n);
    CHECK(json_array_size(json_object_get(cols, "resident_bytes")) == n);
    CHECK(json_array_size(json_object_get(cols, "budget_bytes")) == n);
    json_t *ttft = json_object_get(json_object_get(cols, "ttft_s"), "interactive");
    CHECK(json_array_size(ttft) == n);
    size_t measured = 0;
    for (size_t i = 0; i < n; i++) measured += json_is_real(json_array_get(ttft, i));
    CHECKF(measured == 1, "%zu samples with an interactive TTFT", measured);
    double tokens = 0;
    json_t *tps = json_object_get(json_object_get(cols, "class_tokens_per_s"), "interactive");
    for (size_t i = 0; i < n; i++) tokens += json_number_value(json_array_get(tps, i));
    CHECKF(tokens > 0, "tokens/s %g", tokens);
    double last = json_real_value(json_array_get(json_object_get(cols, "t"), n - 1));
    json_decref(j);
    resp_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/v1/metrics?since=%.6f", last + 1000.0);
    r = http(p.port, "GET", path, auth, NULL, 0);
    j = body_json(&r);
    CHECK(r.status == 200 && json_integer_value(json_object_get(j, "n")) == 0 &&
          json_array_size(json_object_get(json_object_get(j, "samples"), "t")) == 0);
    json_decref(j);
    resp_free(&r);
    r = http(p.port, "GET", "/v1/metrics?since=yesterday", auth, NULL, 0);
    expect_error(&r, 400, "since", "bad since");
    resp_free(&r);
    /* No agents yet: an empty list, and no agent by any name. */
    r = http(p.port, "GET", "/v1/agents", auth, NULL, 0);
    j = body_json(&r);
    CHECK(r.status == 200 && !strcmp(json_string_value(json_object_get(j, "object")), "list") &&
          json_is_array(json_object_get(j, "data")) &&
          json_array_size(json_object_get(j, "data")) == 0);
    json_decref(j);
    resp_free(&r);
    r = http(p.port, "POST", "/v1/agents/digest/run", auth, "{}", 2);
    expect_error(&r, 404, "agent", "run an unknown agent");
    resp_free(&r);
    r = http(p.port, "GET", "/v1/agents/digest/runs", NULL, NULL, 0);
    expect_error(&r, 401, NULL, "agent runs without the key");
    resp_free(&r);
    /* The queue's totals. */
    r = http(p.port, "GET", "/v1/queue", auth, NULL, 0);
    j = body_json(&r);
    CHECK(json_is_integer(json_object_get(j, "preemptions_total")) &&
          json_is_integer(json_object_get(j, "evictions_total")) &&
          json_is_integer(json_object_get(j, "paused")));
    json_decref(j);
    resp_free(&r);
    stop_server(&p);
}

TEST(submitter_names_are_cut_at_a_character) {
    char out[SCHED_MAX_USER + 1];
    api_copy_user("alice", 5, out);
    CHECK(!strcmp(out, "alice"));
    api_copy_user("bob\r\nX-Evil: 1", 15, out);
    CHECK(!strcmp(out, "bob"));
    /* 63 ASCII bytes, then a 2-byte character that does not fit. */
    char in[80];
    memset(in, 'a', 63);
    memcpy(in + 63, "\xc3\xa9z", 3);
    api_copy_user(in, 66, out);
    CHECK(strlen(out) == 63);
    /* 62 bytes and the character: it fits exactly. */
    api_copy_user(in + 1, 65, out);
    CHECK(strlen(out) == 64 && !memcmp(out + 62, "\xc3\xa9", 2));
}

TEST(unknown_template_is_a_startup_error) {
    /* A model whose template is no family hearth knows. */
    char dir[512], cmd[2048], model[600], args[2048];
    snprintf(dir, sizeof dir, "%s/oddchat", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "rm -rf '%s' && cp -r tests/data/hf/qwen3 '%s' && sed -i "
             "'s/\"chat_template\": \".*\"/\"chat_template\": \"{{ messages }}\"/' "
             "'%s/tokenizer_config.json'",
             dir, dir, dir);
    REQUIRE(system(cmd) == 0);
    snprintf(model, sizeof model, "%s/oddchat.gguf", test_tmpdir());
    convert_params cp = {HEARTH_DTYPE_F32, NULL, NULL};
    hearth_error err;
    REQUIRE(convert_hf_dir(dir, model, &cp, &err) == HEARTH_OK);
    snprintf(args, sizeof args, "-m '%s'", model);
    expect_startup_error(args, "--chat-template");
    /* The override makes it start. */
    snprintf(args, sizeof args, "-m '%s' --chat-template chatml", model);
    proc p = start(args);
    CHECK(p.port > 0);
    resp r = post(p.port, "/v1/chat/completions",
                  "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
                  "\"max_tokens\": 3}");
    CHECK(r.status == 200);
    resp_free(&r);
    stop_server(&p);
    snprintf(args, sizeof args, "-m '%s' --chat-template jinja", stories);
    expect_startup_error(args, "--chat-template expects");
    snprintf(args, sizeof args, "-m '%s' --memory-budget 1K", stories);
    expect_startup_error(args, "budget");
    /* A budget that holds the model and a few KV slots: fewer slots run. */
    snprintf(args, sizeof args, "-m '%s' --memory-budget 12M --parallel 64", stories);
    p = start(args);
    CHECK(p.port > 0);
    r = http(p.port, "GET", "/v1/queue", NULL, NULL, 0);
    json_t *q = r.body ? json_loads(r.body, 0, NULL) : NULL;
    json_int_t slots = json_integer_value(json_object_get(q, "slots"));
    CHECKF(slots >= 1 && slots < 64, "slots %lld", (long long)slots);
    json_decref(q);
    resp_free(&r);
    stop_server(&p);
    expect_startup_error("-m /nonexistent.gguf", "nonexistent");
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    signal(SIGPIPE, SIG_IGN);
    snprintf(hearth_bin, sizeof hearth_bin, "%s", test_hearth_bin(argv[0]));
    snprintf(stories, sizeof stories, "%s", test_shared("models/stories260K.gguf"));
    snprintf(qwen3, sizeof qwen3, "%s/qwen3.gguf", test_tmpdir());
    convert_params cp = {HEARTH_DTYPE_F32, NULL, NULL};
    hearth_error err;
    if (convert_hf_dir("tests/data/hf/qwen3", qwen3, &cp, &err) != HEARTH_OK) {
        printf("  convert qwen3: %s\n", err.msg);
    }
    RUN(endpoints_and_greedy_completions);
    RUN(chat_streaming_and_logprobs);
    RUN(bad_input_gets_the_right_error);
    RUN(full_queue_is_503_and_disconnects_cancel);
    RUN(unknown_template_is_a_startup_error);
    RUN(dashboard_files_open_its_data_behind_the_key);
    RUN(submitter_names_are_cut_at_a_character);
    return test_finish();
}
