/* runtime.c — the agents runtime: triggers, workers, runs (see agents.h).
 *
 * Threads: one trigger thread wakes every TICK_MS, fires the timed
 * triggers that are due and takes new inbox files; `workers` threads claim
 * queued runs from the store (oldest first, one run per agent at a time,
 * so an agent sees its inputs in order) and execute them.  Everything a
 * run needs is in its row, so a queued run survives a restart as it is; a
 * run in flight at a clean stop goes back to the queue, and one that was
 * executing when the process died is found "running" at the next start,
 * marked interrupted and retried (store_recover).
 *
 * A run's request: the role prompt as the system message; a user message
 * with the trigger's input (an inbox file, an upstream agent's output, the
 * API input) and the declared inputs; the agent's tools; max_tokens, the
 * agent's class as "priority", response_format for a JSON schema, the
 * sections option for long-form output, plus the agent's extra request
 * fields.  The prompt hash is FNV-1a 64 over that first request body.
 */
#include "agents/agents.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agents/store.h"
#include "agents/tools.h"
#include "util/error.h"

#define TICK_MS         200  /* trigger thread period */
#define INBOX_SETTLE_S  0.3  /* a file must be this old to be taken (still being written?) */
#define RUNS_LIMIT_MAX  1000 /* ?limit= at most */
#define RUNS_LIMIT_DEF  20
#define MAX_INPUT_BYTES ((size_t)1 << 20) /* POST body "input" */

struct agents_rt {
    agents_config *cfg;
    agent_store *store;
    agent_engine local;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* a run was queued, or stopping */
    atomic_bool stop;
    bool started;
    pthread_t trigger_thread;
    pthread_t *workers;
    size_t n_workers;
    double **next_at; /* [agent][trigger] unix seconds of the next timed firing; 0 = none */
    int recovered;
};

/* ---------------------------------------------------------------- small helpers */

typedef struct strbuf {
    char *s;
    size_t n, cap;
    bool oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + len + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, len);
    b->n += len;
    b->s[b->n] = '\0';
}

static void sb_str(strbuf *b, const char *s) {
    sb_add(b, s, strlen(s));
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
sb_printf(strbuf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        sb_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_add(b, big, (size_t)n);
    free(big);
}

static uint64_t fnv1a64(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool make_dir(const char *path, hearth_error *err) {
    if (mkdir(path, 0755) == 0 || errno == EEXIST) return true;
    error_set(err, HEARTH_ERR_IO, "cannot create the folder %s: %s", path, strerror(errno));
    return false;
}

/* The input text cut to max bytes (at a UTF-8 boundary) with a marker. */
static void sb_cut(strbuf *b, const char *s, size_t max) {
    size_t n = strlen(s);
    if (n <= max) {
        sb_add(b, s, n);
        return;
    }
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80) max--;
    sb_add(b, s, max);
    sb_printf(b, "\n[cut at %zu of %zu bytes]", max, n);
}

/* ---------------------------------------------------------------- triggers */

/* The first time of day minute_of_day (local time) strictly after t. */
static double next_daily(double t, int minute_of_day) {
    time_t now = (time_t)t;
    struct tm tm;
    localtime_r(&now, &tm);
    tm.tm_hour = minute_of_day / 60;
    tm.tm_min = minute_of_day % 60;
    tm.tm_sec = 0;
    tm.tm_isdst = -1;
    time_t at = mktime(&tm);
    if ((double)at <= t) {
        tm.tm_mday += 1;
        tm.tm_isdst = -1;
        at = mktime(&tm);
    }
    return (double)at;
}

static double first_fire(agents_rt *rt, size_t ai, size_t ti, double now) {
    const agent_def *a = &rt->cfg->agents[ai];
    const agent_trigger *t = &a->triggers[ti];
    double last = store_trigger_last(rt->store, a->name, ti);
    if (t->type == AGENT_TRIGGER_INTERVAL) {
        return last > 0 ? last + (double)t->every_s : now + (double)t->every_s;
    }
    if (t->type == AGENT_TRIGGER_DAILY)
        return next_daily(last > now ? last : now, t->minute_of_day);
    return 0;
}

static void signal_workers(agents_rt *rt) {
    pthread_mutex_lock(&rt->mu);
    pthread_cond_broadcast(&rt->wake);
    pthread_mutex_unlock(&rt->mu);
}

static void scan_inbox(agents_rt *rt, const agent_def *a, const agent_trigger *t, double now) {
    char path[4096];
    snprintf(path, sizeof path, "%s/inbox", a->folder);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    bool queued = false;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* hidden and partial files */
        if (fnmatch(t->spec, e->d_name, 0) != 0) continue;
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) {
            continue;
        }
        double mtime = (double)sb.st_mtim.tv_sec + (double)sb.st_mtim.tv_nsec * 1e-9;
        if (now - mtime < INBOX_SETTLE_S) continue;
        long long mt = (long long)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
        if (store_inbox_seen(rt->store, a->name, e->d_name, (long long)sb.st_size, mt)) continue;
        long long id = 0;
        hearth_error err;
        if (store_inbox_take(rt->store, a->name, e->d_name, (long long)sb.st_size, mt, &id, &err) ==
            HEARTH_OK) {
            queued = true;
        } else {
            fprintf(stderr, "hearth: agents: %s\n", err.msg);
        }
    }
    closedir(d);
    if (queued) signal_workers(rt);
}

static void *trigger_main(void *arg) {
    agents_rt *rt = arg;
    while (!atomic_load(&rt->stop)) {
        double now = store_now();
        for (size_t ai = 0; ai < rt->cfg->n_agents; ai++) {
            const agent_def *a = &rt->cfg->agents[ai];
            if (!a->enabled) continue;
            for (size_t ti = 0; ti < a->n_triggers; ti++) {
                const agent_trigger *t = &a->triggers[ti];
                if (t->type == AGENT_TRIGGER_INBOX) {
                    scan_inbox(rt, a, t, now);
                    continue;
                }
                if (t->type != AGENT_TRIGGER_INTERVAL && t->type != AGENT_TRIGGER_DAILY) continue;
                pthread_mutex_lock(&rt->mu);
                double due = rt->next_at[ai][ti];
                pthread_mutex_unlock(&rt->mu);
                if (due <= 0 || now < due) continue;
                hearth_error err;
                long long id;
                if (store_trigger_fire(rt->store, a->name, ti, now, agent_trigger_name(t->type),
                                       &id, &err) != HEARTH_OK) {
                    fprintf(stderr, "hearth: agents: %s\n", err.msg);
                    continue;
                }
                double next = t->type == AGENT_TRIGGER_INTERVAL ? now + (double)t->every_s
                                                                : next_daily(now, t->minute_of_day);
                pthread_mutex_lock(&rt->mu);
                rt->next_at[ai][ti] = next;
                pthread_cond_broadcast(&rt->wake);
                pthread_mutex_unlock(&rt->mu);
            }
        }
        struct timespec ts = {0, TICK_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ---------------------------------------------------------------- one run */

typedef struct run_ctx {
    agents_rt *rt;
    const agent_def *a;
    agent_run *run;
    long long prompt_tokens, completion_tokens;
    char err[512];
} run_ctx;

static bool queue_cb(void *ctx, const char *agent, const char *trigger, const char *input,
                     long long *run_id, char *err, size_t cap) {
    hearth_error e;
    if (agents_queue(ctx, agent, trigger, input, run_id, &e) != HEARTH_OK) {
        snprintf(err, cap, "%s", e.msg);
        return false;
    }
    return true;
}

/* The user message: the trigger's input, then the declared inputs.
 * inputs gets the record of what went in. */
static bool build_input(run_ctx *rc, strbuf *u, json_t *inputs) {
    const agent_def *a = rc->a;
    agent_run *run = rc->run;
    size_t max = a->max_input_bytes;
    sb_printf(u, "Trigger: %s\n", run->trigger);
    if (!strncmp(run->trigger, "inbox:", 6) && run->input) {
        char rel[600], err[300];
        snprintf(rel, sizeof rel, "inbox/%s", run->input);
        size_t len;
        bool cut;
        char *data = tools_read_confined(a->folder, rel, max, &len, &cut, err, sizeof err);
        if (!data) {
            snprintf(rc->err, sizeof rc->err, "inbox file %s: %s", run->input, err);
            return false;
        }
        sb_printf(u, "\nNew file in the inbox: %s\n---\n", run->input);
        sb_add(u, data, len);
        if (cut) sb_printf(u, "\n[cut at %zu bytes]", len);
        sb_str(u, "\n---\n");
        free(data);
        json_t *it = json_pack("{s:s, s:s, s:I}", "type", "inbox", "name", run->input, "bytes",
                               (json_int_t)len);
        json_array_append_new(inputs, it);
    } else if (run->input && run->input[0]) {
        const char *from = strchr(run->trigger, ':');
        if (!strncmp(run->trigger, "after:", 6)) {
            sb_printf(u, "\nOutput of agent %s:\n---\n", from + 1);
        } else if (!strncmp(run->trigger, "call:", 5)) {
            sb_printf(u, "\nRequest from agent %s:\n---\n", from + 1);
        } else {
            sb_str(u, "\nInput:\n---\n");
        }
        sb_cut(u, run->input, max);
        sb_str(u, "\n---\n");
        json_array_append_new(inputs,
                              json_pack("{s:s, s:s, s:I}", "type", "trigger", "name", run->trigger,
                                        "bytes", (json_int_t)strlen(run->input)));
    }
    for (size_t i = 0; i < a->n_inputs; i++) {
        const agent_input *in = &a->inputs[i];
        if (in->type == AGENT_INPUT_FILE) {
            char err[300];
            size_t len;
            bool cut;
            char *data =
                tools_read_confined(a->folder, in->value, max, &len, &cut, err, sizeof err);
            if (!data) {
                snprintf(rc->err, sizeof rc->err, "input file %s: %s", in->value, err);
                return false;
            }
            sb_printf(u, "\nFile %s:\n---\n", in->value);
            sb_add(u, data, len);
            sb_str(u, cut ? "\n[cut]\n---\n" : "\n---\n");
            free(data);
            json_array_append_new(inputs, json_pack("{s:s, s:s, s:I}", "type", "file", "name",
                                                    in->value, "bytes", (json_int_t)len));
        } else if (in->type == AGENT_INPUT_AGENT) {
            const char *other = rc->rt->cfg->agents[in->agent].name;
            char *out = store_last_output(rc->rt->store, other);
            sb_printf(u, "\nLatest output of agent %s:\n---\n", other);
            sb_cut(u, out ? out : "(none yet)", max);
            sb_str(u, "\n---\n");
            json_array_append_new(inputs,
                                  json_pack("{s:s, s:s, s:I}", "type", "agent", "name", other,
                                            "bytes", (json_int_t)(out ? strlen(out) : 0)));
            free(out);
        } else {
            hearth_error e;
            json_t *rows = store_query(rc->rt->store, in->value, 100, &e);
            if (!rows) {
                snprintf(rc->err, sizeof rc->err, "input query: %.480s", e.msg);
                return false;
            }
            char *text = json_dumps(rows, JSON_COMPACT);
            sb_printf(u, "\nQuery %s:\n---\n", in->value);
            sb_cut(u, text ? text : "[]", max);
            sb_str(u, "\n---\n");
            json_array_append_new(inputs,
                                  json_pack("{s:s, s:s, s:I}", "type", "query", "name", in->value,
                                            "rows", (json_int_t)json_array_size(rows)));
            free(text);
            json_decref(rows);
        }
    }
    if (u->oom) snprintf(rc->err, sizeof rc->err, "out of memory");
    return !u->oom;
}

/* The first request body (messages added by the caller). */
static json_t *base_body(const agent_def *a, json_t *tools) {
    json_t *body = NULL;
    if (a->request_json) body = json_loads(a->request_json, 0, NULL);
    if (!body) body = json_object();
    if (a->model[0]) json_object_set_new(body, "model", json_string(a->model));
    json_object_set_new(body, "max_tokens", json_integer(a->max_tokens));
    json_object_set_new(body, "priority",
                        json_string(a->cls == SCHED_TOOL ? "tool" : "background"));
    json_object_set_new(body, "user", json_string(a->name));
    if (tools) json_object_set(body, "tools", tools);
    if (a->output == AGENT_OUTPUT_JSON_SCHEMA) {
        json_t *schema = json_loads(a->schema_json, 0, NULL);
        json_object_set_new(body, "response_format",
                            json_pack("{s:s, s:{s:s, s:o, s:b}}", "type", "json_schema",
                                      "json_schema", "name", a->name, "schema",
                                      schema ? schema : json_object(), "strict", 1));
    } else if (a->output == AGENT_OUTPUT_SECTIONS) {
        json_t *sec = json_object();
        if (a->sections > 0) json_object_set_new(sec, "count", json_integer(a->sections));
        json_object_set_new(body, "sections", sec);
    }
    return body;
}

/* Tool calls in a reply: message.tool_calls, or <tool_call>{json}</tool_call>
 * blocks in the content (the Qwen/Hermes format) when the engine passed
 * the text through.  Returns a new array (possibly empty). */
static json_t *reply_tool_calls(json_t *msg, long long run_id, size_t round) {
    json_t *calls = json_array();
    json_t *tc = json_object_get(msg, "tool_calls");
    if (json_is_array(tc) && json_array_size(tc) > 0) {
        size_t i;
        json_t *c;
        json_array_foreach(tc, i, c) {
            json_t *f = json_object_get(c, "function");
            if (!json_is_object(f)) continue;
            json_array_append(calls, c);
        }
        return calls;
    }
    const char *content = json_string_value(json_object_get(msg, "content"));
    const char *p = content;
    size_t k = 0;
    while (p && (p = strstr(p, "<tool_call>")) != NULL) {
        p += strlen("<tool_call>");
        const char *end = strstr(p, "</tool_call>");
        if (!end) break;
        json_t *j = json_loadb(p, (size_t)(end - p), 0, NULL);
        p = end + strlen("</tool_call>");
        json_t *name = json_object_get(j, "name");
        json_t *args = json_object_get(j, "arguments");
        if (!json_is_string(name)) {
            json_decref(j);
            continue;
        }
        char *args_text = args ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("{}");
        char id[64];
        snprintf(id, sizeof id, "call_%lld_%zu_%zu", run_id, round, k++);
        json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:O, s:s}}", "id", id, "type",
                                               "function", "function", "name", name, "arguments",
                                               args_text ? args_text : "{}"));
        free(args_text);
        json_decref(j);
    }
    return calls;
}

/* Executes one run; fills res (strings point into *keep, freed by the
 * caller).  Returns false when the runtime is stopping mid-run (the run is
 * then left as it is, to be recovered). */
static bool execute(run_ctx *rc, run_result *res, char **keep_output, char **keep_inputs,
                    char **keep_hash) {
    agents_rt *rt = rc->rt;
    const agent_def *a = rc->a;
    double deadline = store_now() + (double)a->timeout_s;
    strbuf u = {0};
    json_t *inputs = json_array();
    json_t *tools = tools_schema(a);
    json_t *body = NULL, *messages = NULL;
    tool_env env = {a, rt->cfg, rt->store, rc->run->id, NULL, queue_cb, rt};
    bool ok = build_input(rc, &u, inputs);
    if (ok) {
        body = base_body(a, tools);
        messages = json_pack("[{s:s, s:s}, {s:s, s:s%}]", "role", "system", "content", a->prompt,
                             "role", "user", "content", u.s, u.n);
        ok = body && messages;
        if (!ok) snprintf(rc->err, sizeof rc->err, "out of memory");
    }
    free(u.s);
    if (ok) {
        json_object_set(body, "messages", messages);
        char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
        char hash[17];
        snprintf(hash, sizeof hash, "%016llx",
                 (unsigned long long)fnv1a64(text ? text : "", text ? strlen(text) : 0));
        *keep_hash = strdup(hash);
        free(text);
    }
    *keep_inputs = json_dumps(inputs, JSON_COMPACT);
    json_decref(inputs);
    agent_engine eng = rt->local;
    if (a->engine) {
        eng.complete = agent_remote_complete;
        eng.ctx = a->engine;
    }
    char *final = NULL;
    bool stopped = false;
    for (size_t round = 0; ok; round++) {
        double left = deadline - store_now();
        if (left <= 0) {
            snprintf(rc->err, sizeof rc->err, "timed out after %us", a->timeout_s);
            ok = false;
            break;
        }
        json_object_set(body, "messages", messages);
        json_t *reply = NULL;
        char err[256] = "";
        ok = eng.complete(eng.ctx, body, (int)(left * 1000.0), &rt->stop, &reply, err, sizeof err);
        if (atomic_load(&rt->stop)) {
            json_decref(reply);
            stopped = true;
            ok = false;
            break;
        }
        if (!ok) {
            snprintf(rc->err, sizeof rc->err, "engine: %s", err[0] ? err : "failed");
            break;
        }
        json_t *usage = json_object_get(reply, "usage");
        rc->prompt_tokens += json_integer_value(json_object_get(usage, "prompt_tokens"));
        rc->completion_tokens += json_integer_value(json_object_get(usage, "completion_tokens"));
        json_t *msg =
            json_object_get(json_array_get(json_object_get(reply, "choices"), 0), "message");
        if (!json_is_object(msg)) {
            snprintf(rc->err, sizeof rc->err, "engine: the reply has no choices[0].message");
            json_decref(reply);
            ok = false;
            break;
        }
        json_t *content = json_object_get(msg, "content");
        json_t *calls = tools ? reply_tool_calls(msg, rc->run->id, round) : json_array();
        if (json_array_size(calls) == 0 || round >= a->max_tool_calls) {
            final = strdup(json_is_string(content) ? json_string_value(content) : "");
            json_decref(calls);
            json_decref(reply);
            break;
        }
        json_t *said = json_is_string(content) ? json_incref(content) : json_string("");
        json_t *assistant =
            json_pack("{s:s, s:o, s:O}", "role", "assistant", "content", said, "tool_calls", calls);
        json_array_append_new(messages, assistant);
        size_t i;
        json_t *c;
        json_array_foreach(calls, i, c) {
            json_t *f = json_object_get(c, "function");
            const char *name = json_string_value(json_object_get(f, "name"));
            json_t *args = json_object_get(f, "arguments");
            json_t *parsed = json_is_string(args) ? json_loads(json_string_value(args), 0, NULL)
                                                  : json_incref(args);
            char *result = tools_call(&env, name, parsed);
            json_decref(parsed);
            json_t *id = json_object_get(c, "id");
            json_array_append_new(messages,
                                  json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id",
                                            json_is_string(id) ? json_string_value(id) : "",
                                            "content", result ? result : "error: out of memory"));
            free(result);
        }
        json_decref(calls);
        json_decref(reply);
    }
    json_decref(body);
    json_decref(messages);
    json_decref(tools);
    if (stopped) {
        free(final);
        free(env.output);
        return false;
    }
    if (ok) {
        /* write_output wins over the closing message. */
        if (env.output) {
            free(final);
            final = env.output;
        }
        *keep_output = final;
        res->status = RUN_SUCCEEDED;
        res->output = final;
    } else {
        free(final);
        free(env.output);
        res->status = RUN_FAILED;
        res->error = rc->err;
        res->retry = rc->run->attempt <= (int)a->retries;
    }
    res->prompt_tokens = rc->prompt_tokens;
    res->completion_tokens = rc->completion_tokens;
    res->inputs = *keep_inputs;
    res->prompt_hash = *keep_hash;
    return true;
}

static void run_one(agents_rt *rt, agent_run *run) {
    size_t ai;
    const agent_def *a = agents_config_find(rt->cfg, run->agent, &ai);
    run_result res;
    memset(&res, 0, sizeof res);
    run_ctx rc;
    memset(&rc, 0, sizeof rc);
    rc.rt = rt;
    rc.a = a;
    rc.run = run;
    char *out = NULL, *inputs = NULL, *hash = NULL;
    const char **next = NULL;
    char next_trigger[128];
    if (!a || !a->enabled) {
        res.status = RUN_FAILED;
        res.error = a ? "the agent is disabled" : "the agent is no longer configured";
    } else if (!execute(&rc, &res, &out, &inputs, &hash)) {
        free(out);
        free(inputs);
        free(hash);
        /* Stopping: back in the queue for the next start, at the same
         * attempt (a kill leaves it "running", which costs one). */
        hearth_error err;
        if (store_requeue(rt->store, run->id, &err) != HEARTH_OK) {
            fprintf(stderr, "hearth: agents: run %lld of %s: %s\n", run->id, run->agent, err.msg);
        }
        return;
    }
    if (a && res.status == RUN_SUCCEEDED) {
        next = calloc(rt->cfg->n_agents, sizeof *next);
        for (size_t i = 0; next && i < rt->cfg->n_agents; i++) {
            const agent_def *b = &rt->cfg->agents[i];
            if (!b->enabled) continue;
            for (size_t t = 0; t < b->n_triggers; t++) {
                if (b->triggers[t].type == AGENT_TRIGGER_AFTER && b->triggers[t].after == ai) {
                    next[res.n_next++] = b->name;
                    break;
                }
            }
        }
        snprintf(next_trigger, sizeof next_trigger, "after:%s", a->name);
        res.next_agents = next;
        res.next_trigger = next_trigger;
    }
    hearth_error err;
    if (store_finish(rt->store, run, &res, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth: agents: run %lld of %s: %s\n", run->id, run->agent, err.msg);
    }
    free(next);
    free(out);
    free(inputs);
    free(hash);
    if (res.n_next > 0 || res.retry) signal_workers(rt);
}

static void *worker_main(void *arg) {
    agents_rt *rt = arg;
    while (!atomic_load(&rt->stop)) {
        agent_run run;
        if (store_claim(rt->store, &run)) {
            run_one(rt, &run);
            agent_run_free(&run);
            continue;
        }
        pthread_mutex_lock(&rt->mu);
        if (!atomic_load(&rt->stop)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 500 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&rt->wake, &rt->mu, &ts);
        }
        pthread_mutex_unlock(&rt->mu);
    }
    return NULL;
}

/* ---------------------------------------------------------------- lifetime */

static int retries_of(void *ctx, const char *agent) {
    agents_rt *rt = ctx;
    const agent_def *a = agents_config_find(rt->cfg, agent, NULL);
    return a ? (int)a->retries : -1;
}

hearth_status agents_create(agents_config *cfg, agent_engine local, agents_rt **out,
                            hearth_error *err) {
    *out = NULL;
    agents_rt *rt = calloc(1, sizeof *rt);
    if (!rt) {
        agents_config_free(cfg);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    rt->cfg = cfg;
    rt->local = local;
    pthread_mutex_init(&rt->mu, NULL);
    pthread_cond_init(&rt->wake, NULL);
    atomic_init(&rt->stop, false);
    hearth_status hs = HEARTH_OK;
    if (!make_dir(cfg->data_dir, err)) hs = HEARTH_ERR_IO;
    for (size_t i = 0; hs == HEARTH_OK && i < cfg->n_agents; i++) {
        char inbox[4096];
        snprintf(inbox, sizeof inbox, "%s/inbox", cfg->agents[i].folder);
        if (!make_dir(cfg->agents[i].folder, err) || !make_dir(inbox, err)) hs = HEARTH_ERR_IO;
    }
    if (hs == HEARTH_OK) hs = store_open(cfg->store_path, &rt->store, err);
    if (hs == HEARTH_OK) {
        rt->recovered = store_recover(rt->store, retries_of, rt, err);
        if (rt->recovered < 0) hs = HEARTH_ERR_IO;
    }
    if (hs == HEARTH_OK) {
        rt->next_at = calloc(cfg->n_agents, sizeof *rt->next_at);
        if (!rt->next_at) hs = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    double now = store_now();
    for (size_t i = 0; hs == HEARTH_OK && i < cfg->n_agents; i++) {
        size_t n = cfg->agents[i].n_triggers;
        rt->next_at[i] = calloc(n ? n : 1, sizeof **rt->next_at);
        if (!rt->next_at[i]) {
            hs = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
            break;
        }
        for (size_t t = 0; t < n; t++) rt->next_at[i][t] = first_fire(rt, i, t, now);
    }
    if (hs != HEARTH_OK) {
        agents_free(rt);
        return hs;
    }
    *out = rt;
    return HEARTH_OK;
}

hearth_status agents_start(agents_rt *rt, hearth_error *err) {
    rt->workers = calloc(rt->cfg->workers, sizeof *rt->workers);
    if (!rt->workers) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    if (pthread_create(&rt->trigger_thread, NULL, trigger_main, rt) != 0) {
        return error_set(err, HEARTH_ERR_INTERNAL, "cannot start the agents' trigger thread");
    }
    rt->started = true;
    for (unsigned i = 0; i < rt->cfg->workers; i++) {
        if (pthread_create(&rt->workers[i], NULL, worker_main, rt) != 0) {
            return error_set(err, HEARTH_ERR_INTERNAL, "cannot start an agents worker");
        }
        rt->n_workers++;
    }
    return HEARTH_OK;
}

void agents_free(agents_rt *rt) {
    if (!rt) return;
    atomic_store(&rt->stop, true);
    signal_workers(rt);
    if (rt->started) pthread_join(rt->trigger_thread, NULL);
    for (size_t i = 0; i < rt->n_workers; i++) pthread_join(rt->workers[i], NULL);
    free(rt->workers);
    store_close(rt->store);
    for (size_t i = 0; rt->next_at && i < rt->cfg->n_agents; i++) free(rt->next_at[i]);
    free(rt->next_at);
    agents_config_free(rt->cfg);
    pthread_cond_destroy(&rt->wake);
    pthread_mutex_destroy(&rt->mu);
    free(rt);
}

int agents_recovered(const agents_rt *rt) {
    return rt->recovered;
}

hearth_status agents_queue(agents_rt *rt, const char *name, const char *trigger, const char *input,
                           long long *run_id, hearth_error *err) {
    const agent_def *a = agents_config_find(rt->cfg, name, NULL);
    if (!a) return error_set(err, HEARTH_ERR_INVALID_ARG, "no agent named '%.64s'", name);
    if (!a->enabled) return error_set(err, HEARTH_ERR_INVALID_ARG, "agent '%s' is disabled", name);
    hearth_status hs = store_enqueue(rt->store, name, trigger, input, 1, run_id, err);
    if (hs == HEARTH_OK) signal_workers(rt);
    return hs;
}

/* ---------------------------------------------------------------- JSON */

static json_t *time_json(double t) {
    return t > 0 ? json_real(t) : json_null();
}

static json_t *run_json(const agent_run *r) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(r->id));
    json_object_set_new(o, "agent", json_string(r->agent ? r->agent : ""));
    json_object_set_new(o, "trigger", json_string(r->trigger ? r->trigger : ""));
    json_object_set_new(o, "status", json_string(run_status_name(r->status)));
    json_object_set_new(o, "attempt", json_integer(r->attempt));
    json_object_set_new(o, "queued_at", time_json(r->queued_at));
    /* A queued run has not started: its started_at is when it was queued. */
    json_object_set_new(o, "started_at",
                        time_json(r->started_at > 0 ? r->started_at : r->queued_at));
    json_object_set_new(o, "finished_at", time_json(r->finished_at));
    json_object_set_new(o, "prompt_tokens", json_integer(r->prompt_tokens));
    json_object_set_new(o, "completion_tokens", json_integer(r->completion_tokens));
    json_object_set_new(o, "error", r->error ? json_string(r->error) : json_null());
    json_object_set_new(o, "output", r->output ? json_string(r->output) : json_null());
    json_object_set_new(o, "prompt_hash",
                        r->prompt_hash ? json_string(r->prompt_hash) : json_null());
    json_t *inputs = r->inputs ? json_loads(r->inputs, 0, NULL) : NULL;
    json_object_set_new(o, "inputs", inputs ? inputs : json_array());
    return o;
}

static json_t *agent_json(agents_rt *rt, size_t ai) {
    const agent_def *a = &rt->cfg->agents[ai];
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(a->name));
    json_object_set_new(o, "name", json_string(a->name));
    json_object_set_new(o, "description", json_string(a->description));
    json_object_set_new(o, "class", json_string(a->cls == SCHED_TOOL ? "tool" : "background"));
    json_object_set_new(o, "enabled", json_boolean(a->enabled));
    json_object_set_new(o, "engine", json_string(a->engine ? a->engine : "local"));
    json_object_set_new(o, "output", json_string(agent_output_name(a->output)));
    json_t *triggers = json_array();
    for (size_t t = 0; t < a->n_triggers; t++) {
        pthread_mutex_lock(&rt->mu);
        double next = rt->next_at[ai][t];
        pthread_mutex_unlock(&rt->mu);
        json_t *tj = json_object();
        json_object_set_new(tj, "type", json_string(agent_trigger_name(a->triggers[t].type)));
        json_object_set_new(tj, "spec", json_string(a->triggers[t].spec));
        json_object_set_new(tj, "next_run_at",
                            next > 0 && a->enabled ? json_integer((json_int_t)next) : json_null());
        json_array_append_new(triggers, tj);
    }
    /* "trigger": the first one, for clients that show a single trigger. */
    json_t *first = json_array_get(triggers, 0);
    json_object_set(o, "trigger", first ? first : json_null());
    json_object_set_new(o, "triggers", triggers);
    json_t *tools = json_array();
    for (int k = 0; k < AGENT_N_TOOLS; k++) {
        if (a->tools & (1u << k)) json_array_append_new(tools, json_string(agent_tool_names[k]));
    }
    json_object_set_new(o, "tools", tools);
    agent_run last;
    json_object_set_new(o, "last_run",
                        store_last_run(rt->store, a->name, &last) ? run_json(&last) : json_null());
    agent_run_free(&last);
    return o;
}

static json_t *list_json(json_t *data) {
    json_t *j = json_object();
    json_object_set_new(j, "object", json_string("list"));
    json_object_set_new(j, "data", data);
    return j;
}

void agents_list(agents_rt *rt, agents_reply *out) {
    memset(out, 0, sizeof *out);
    json_t *data = json_array();
    for (size_t i = 0; i < rt->cfg->n_agents; i++) json_array_append_new(data, agent_json(rt, i));
    out->status = 200;
    out->json = list_json(data);
}

#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static void
reply_error(agents_reply *out, int status, const char *code, const char *param, const char *fmt,
            ...) {
    out->status = status;
    out->json = NULL;
    out->code = code;
    out->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->message, sizeof out->message, fmt, ap);
    va_end(ap);
}

static void post_run(agents_rt *rt, const agent_def *a, const char *body, size_t n_body,
                     agents_reply *out) {
    const char *input = NULL;
    json_t *j = NULL;
    if (n_body > 0) {
        json_error_t je;
        j = json_loadb(body, n_body, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(j)) {
            json_decref(j);
            reply_error(out, 400, NULL, NULL,
                        "the body must be a JSON object such as "
                        "{\"input\": \"...\"}");
            return;
        }
        json_t *in = json_object_get(j, "input");
        if (in && !json_is_null(in)) {
            if (!json_is_string(in)) {
                json_decref(j);
                reply_error(out, 400, NULL, "input", "'input' must be a string");
                return;
            }
            if (json_string_length(in) > MAX_INPUT_BYTES ||
                memchr(json_string_value(in), '\0', json_string_length(in))) {
                json_decref(j);
                reply_error(out, 400, NULL, "input", "'input' must be text of at most %zu bytes",
                            MAX_INPUT_BYTES);
                return;
            }
            input = json_string_value(in);
        }
    }
    if (!a->enabled) {
        json_decref(j);
        reply_error(out, 409, "agent_disabled", NULL, "agent '%s' is disabled", a->name);
        return;
    }
    long long id = 0;
    hearth_error err;
    hearth_status hs = agents_queue(rt, a->name, "api", input, &id, &err);
    json_decref(j);
    agent_run run;
    if (hs != HEARTH_OK || !store_get_run(rt->store, id, &run)) {
        reply_error(out, 500, NULL, NULL, "%s", hs != HEARTH_OK ? err.msg : "run not found");
        return;
    }
    out->status = 202;
    out->json = run_json(&run);
    agent_run_free(&run);
}

void agents_route(agents_rt *rt, const char *method, const char *path, const char *limit,
                  const char *body, size_t n_body, agents_reply *out) {
    memset(out, 0, sizeof *out);
    size_t name_len = strcspn(path, "/");
    char name[80];
    if (name_len == 0 || name_len >= sizeof name) {
        reply_error(out, 404, "agent_not_found", "agent", "no agent '%.*s'", (int)name_len, path);
        return;
    }
    memcpy(name, path, name_len);
    name[name_len] = '\0';
    size_t ai;
    const agent_def *a = agents_config_find(rt->cfg, name, &ai);
    if (!a) {
        reply_error(out, 404, "agent_not_found", "agent", "no agent '%s'", name);
        return;
    }
    const char *rest = path + name_len;
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(rest, "") || !strcmp(rest, "/")) {
        if (!get) {
            reply_error(out, 405, "method_not_allowed", NULL, "use GET on an agent");
            return;
        }
        out->status = 200;
        out->json = agent_json(rt, ai);
        return;
    }
    if (!strcmp(rest, "/run") || (post && !strcmp(rest, "/runs"))) {
        if (!post) {
            reply_error(out, 405, "method_not_allowed", NULL, "use POST to run an agent");
            return;
        }
        post_run(rt, a, body, n_body, out);
        return;
    }
    if (!strcmp(rest, "/runs")) {
        long long n = RUNS_LIMIT_DEF;
        if (limit) {
            char *end = NULL;
            errno = 0;
            n = strtoll(limit, &end, 10);
            if (end == limit || *end || errno || n < 1 || n > RUNS_LIMIT_MAX) {
                reply_error(out, 400, NULL, "limit", "'limit' must be an integer from 1 to %d",
                            RUNS_LIMIT_MAX);
                return;
            }
        }
        agent_run *runs = NULL;
        size_t k = store_list_runs(rt->store, a->name, (size_t)n, &runs);
        json_t *data = json_array();
        for (size_t i = 0; i < k; i++) {
            json_array_append_new(data, run_json(&runs[i]));
            agent_run_free(&runs[i]);
        }
        free(runs);
        out->status = 200;
        out->json = list_json(data);
        return;
    }
    reply_error(out, 404, "not_found", NULL, "no such endpoint under agent '%s': %.100s", name,
                rest);
}
