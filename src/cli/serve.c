/* serve.c — `hearth serve`: one model, many clients, over HTTP.
 *
 * Loads the model, picks the chat template family (from the GGUF's
 * tokenizer.chat_template or --chat-template), starts the scheduler's
 * engine thread and the HTTP server, prints the address it listens on to
 * stdout ("hearth: listening on http://HOST:PORT"), then waits for SIGINT
 * or SIGTERM and shuts down cleanly: the listener closes, open requests
 * end, the engine stops, everything is freed.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agents.h"
#include "cli/cli.h"
#include "hearth.h"
#include "sched/sched.h"
#include "server/local_engine.h"
#include "server/server.h"

static const char serve_usage[] =
    "usage: hearth serve -m MODEL [options]\n"
    "\n"
    "Serves MODEL over an OpenAI-compatible HTTP API: POST /v1/chat/completions and\n"
    "/v1/completions (stream true or false), GET /v1/models, /health, /metrics (Prometheus)\n"
    "and /v1/queue.  Requests carry a priority class, \"priority\": \"interactive\" (default),\n"
    "\"tool\" or \"background\" (or the header X-Hearth-Priority); higher classes go first,\n"
    "preempt lower ones at token boundaries, and waiting work ages upwards.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE        GGUF model to serve (required)\n"
    "      --host ADDR         address to listen on (default 127.0.0.1)\n"
    "      --port N            TCP port; 0 = any free port (default 8080)\n"
    "      --api-key KEY       require 'Authorization: Bearer KEY' (default: none; also\n"
    "                          from the HEARTH_API_KEY environment variable)\n"
    "      --parallel N        sequences that run at once, each with its own KV slot\n"
    "                          (default 4; fewer when --memory-budget cannot hold them)\n"
    "  -c, --ctx N             context per sequence in tokens (default: the model's, at most\n"
    "                          4096)\n"
    "      --batch N           tokens per engine step: decode tokens plus prompt chunks\n"
    "                          (default 128)\n"
    "      --kv-type f16|f32   KV cache element type (default f16)\n"
    "      --aging-ms MS       waiting this long lifts a request one class; 0 = off\n"
    "                          (default 3000)\n"
    "      --queue-limit I,T,B  waiting requests per class (interactive, tool, background)\n"
    "                          before 503 (default 64,128,256)\n"
    "      --no-prefix-cache   do not reuse cached prompt prefixes\n"
    "      --chat-template NAME  chatml, qwen3, llama3, llama2, mistral or gemma: overrides\n"
    "                          the template detected from the model\n"
    "      --alias NAME        model name reported by /v1/models (default: the file name)\n"
    "      --max-body BYTES    request body limit (default 4194304)\n"
    "      --max-connections N open connections at most (default 256)\n"
    "      --agents FILE       run the agents defined in FILE (YAML) beside the API:\n"
    "                          triggers, tools and a SQLite store of every run; GET\n"
    "                          /v1/agents and POST /v1/agents/NAME/run; a bad FILE is\n"
    "                          reported as FILE:LINE and the server does not start\n"
    "  -t, --threads N         threads for the forward pass (default: one per CPU "
    "core)\n" CLI_MEMORY_USAGE "  -h, --help              show this help\n";

typedef struct serve_opts {
    const char *model;
    const char *host;
    long long port;
    const char *api_key;
    const char *alias;
    const char *chat_template;
    const char *agents;
    long long max_body;
    long long max_connections;
    hearth_model_params mp;
    sched_params sp;
} serve_opts;

static bool parse_queue_limits(const char *s, uint32_t *out) {
    unsigned long long v[3];
    int used = 0;
    if (sscanf(s, "%llu,%llu,%llu%n", &v[0], &v[1], &v[2], &used) != 3 || s[used] != '\0' ||
        v[0] > 1000000 || v[1] > 1000000 || v[2] > 1000000) {
        cli_error("--queue-limit expects three counts I,T,B (each 0..1000000), got '%s'", s);
        return false;
    }
    for (int i = 0; i < 3; i++) out[i] = (uint32_t)v[i];
    return true;
}

static int parse_serve_args(int argc, char **argv, serve_opts *o, bool *done) {
    *done = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        long long ll;
        bool matched = false;
        int mrc = cli_memory_flag(argc, argv, &i, &o->mp, &matched);
        if (mrc != 0) return mrc;
        if (matched) continue;
#define VALUE()                                                                                    \
    do {                                                                                           \
        if (!(v = cli_value(argc, argv, &i))) return 2;                                            \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(serve_usage, stdout);
            *done = true;
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            VALUE();
            o->model = v;
        } else if (!strcmp(a, "--host")) {
            VALUE();
            o->host = v;
        } else if (!strcmp(a, "--port")) {
            VALUE();
            if (!cli_parse_int(a, v, 0, 65535, &o->port)) return 2;
        } else if (!strcmp(a, "--api-key")) {
            VALUE();
            o->api_key = v;
        } else if (!strcmp(a, "--parallel")) {
            VALUE();
            if (!cli_parse_int(a, v, 1, 256, &ll)) return 2;
            o->sp.n_parallel = (uint32_t)ll;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            VALUE();
            if (!cli_parse_int(a, v, 8, 1 << 24, &ll)) return 2;
            o->sp.n_ctx = (uint32_t)ll;
        } else if (!strcmp(a, "--batch")) {
            VALUE();
            if (!cli_parse_int(a, v, 1, 65536, &ll)) return 2;
            o->sp.n_batch = (uint32_t)ll;
        } else if (!strcmp(a, "--kv-type")) {
            VALUE();
            if (!strcmp(v, "f16")) {
                o->sp.kv_type = HEARTH_KV_F16;
            } else if (!strcmp(v, "f32")) {
                o->sp.kv_type = HEARTH_KV_F32;
            } else {
                cli_error("--kv-type expects f16 or f32, got '%s'", v);
                return 2;
            }
        } else if (!strcmp(a, "--aging-ms")) {
            VALUE();
            if (!cli_parse_int(a, v, 0, 86400000, &ll)) return 2;
            o->sp.aging_ms = (uint32_t)ll;
        } else if (!strcmp(a, "--queue-limit")) {
            VALUE();
            if (!parse_queue_limits(v, o->sp.queue_limit)) return 2;
        } else if (!strcmp(a, "--no-prefix-cache")) {
            o->sp.prefix_cache = false;
        } else if (!strcmp(a, "--chat-template")) {
            VALUE();
            o->chat_template = v;
        } else if (!strcmp(a, "--agents")) {
            VALUE();
            o->agents = v;
        } else if (!strcmp(a, "--alias")) {
            VALUE();
            o->alias = v;
        } else if (!strcmp(a, "--max-body")) {
            VALUE();
            if (!cli_parse_int(a, v, 1024, 1LL << 30, &o->max_body)) return 2;
        } else if (!strcmp(a, "--max-connections")) {
            VALUE();
            if (!cli_parse_int(a, v, 1, 65536, &o->max_connections)) return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            VALUE();
            if (!cli_parse_int(a, v, 1, 1024, &ll)) return 2;
            o->sp.n_threads = (int)ll;
        } else {
            cli_error("unknown option '%s' for serve (see hearth serve --help)", a);
            return 2;
        }
#undef VALUE
    }
    if (!o->model) {
        cli_error("serve needs a model: -m MODEL (see hearth serve --help)");
        return 2;
    }
    return 0;
}

/* The model's name for /v1/models: the file name without ".gguf". */
static void model_id_from_path(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, cap, "%s", base);
    size_t n = strlen(out);
    if (n > 5 && !strcmp(out + n - 5, ".gguf")) out[n - 5] = '\0';
}

/* The chat family to use, or false after an error line. */
static bool choose_chat(const hearth_model *model, const char *override, chat_family *out) {
    if (override) {
        if (!chat_family_parse(override, out)) {
            cli_error("--chat-template expects chatml, qwen3, llama3, llama2, mistral or gemma, "
                      "got '%s'",
                      override);
            return false;
        }
        return true;
    }
    size_t len = 0;
    const char *tmpl = hearth_model_meta_str(model, "tokenizer.chat_template", &len);
    if (!tmpl) {
        *out = CHAT_NONE;
        return true;
    }
    *out = chat_detect(tmpl, len);
    if (*out == CHAT_NONE) {
        char head[61];
        size_t k = len < 60 ? len : 60;
        for (size_t i = 0; i < k; i++) {
            head[i] = (tmpl[i] >= 32 && tmpl[i] < 127) ? tmpl[i] : ' ';
        }
        head[k] = '\0';
        cli_error("the model's chat template is not one hearth knows (it starts \"%s\"); pass "
                  "--chat-template chatml|qwen3|llama3|llama2|mistral|gemma",
                  head);
        return false;
    }
    return true;
}

int cli_serve(int argc, char **argv) {
    serve_opts o;
    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.port = 8080;
    o.max_body = 4 << 20;
    o.max_connections = 256;
    o.sp = sched_default_params();
    o.mp = hearth_model_default_params();
    bool done;
    int rc = parse_serve_args(argc, argv, &o, &done);
    if (rc != 0 || done) return rc;
    if (!o.api_key) o.api_key = getenv("HEARTH_API_KEY");

    /* Signals: SIGPIPE is ignored (a client that vanishes must not kill the
     * server); SIGINT and SIGTERM are blocked in every thread and taken by
     * sigwait below.  Set up before any thread starts. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);

    hearth_error err = {HEARTH_OK, ""};
    hearth_model *model = NULL;
    sched *s = NULL;
    server *srv = NULL;
    agents_config *agents_cfg = NULL;
    agents_rt *agents = NULL;
    local_engine engine;
    rc = 1;
    /* The agents file first: a bad one is refused before the model loads. */
    if (o.agents && agents_config_load(o.agents, &agents_cfg, &err) != HEARTH_OK) {
        fprintf(stderr, "%s\n", err.msg);
        goto out;
    }
    /* The model alone must fit the memory budget (refused before a byte of
     * weights is read); the scheduler then fits as many KV slots beside it
     * as it can, up to --parallel. */
    hearth_memory_plan plan;
    if (hearth_model_plan(o.model, &o.mp, NULL, &plan, &err) != HEARTH_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    cli_progress progress;
    cli_progress_init(&progress);
    o.mp.progress = cli_progress_fn;
    o.mp.progress_arg = &progress;
    hearth_status lst = hearth_model_load(o.model, &o.mp, &model, &err);
    cli_progress_done(&progress);
    if (lst != HEARTH_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    chat_family chat;
    if (!choose_chat(model, o.chat_template, &chat)) goto out;
    if (sched_create(model, &o.sp, &s, &err) != HEARTH_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    char model_id[256];
    model_id_from_path(o.model, model_id, sizeof model_id);
    if (agents_cfg) {
        local_engine_init(&engine, s, chat, o.alias ? o.alias : model_id);
        agent_engine local = {local_engine_complete, &engine};
        hearth_status ast = agents_create(agents_cfg, local, &agents, &err);
        agents_cfg = NULL; /* owned by the runtime (freed on failure too) */
        if (ast != HEARTH_OK) {
            cli_error("%s", err.msg);
            goto out;
        }
    }
    server_params p = server_default_params();
    p.host = o.host;
    p.port = (uint16_t)o.port;
    p.api_key = o.api_key;
    p.model_id = o.alias ? o.alias : model_id;
    p.chat = chat;
    p.max_body = (size_t)o.max_body;
    p.max_connections = (unsigned)o.max_connections;
    p.agents = agents;
    if (server_start(s, &p, &srv, &err) != HEARTH_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    if (agents) {
        engine.env = *server_api_env(srv); /* grammars too: the server's vocabulary */
        if (agents_start(agents, &err) != HEARTH_OK) {
            cli_error("%s", err.msg);
            goto out;
        }
        fprintf(stderr, "hearth: agents from %s; %d interrupted run(s) recovered\n", o.agents,
                agents_recovered(agents));
        if (chat == CHAT_NONE) {
            fprintf(stderr, "hearth: the model has no chat template: agents on the local model "
                            "will fail (--chat-template NAME gives it one)\n");
        }
    }
    const sched_params *ep = sched_get_params(s);
    if (ep->n_parallel < o.sp.n_parallel) {
        fprintf(stderr,
                "hearth: %u parallel sequences asked for, %u fit the memory budget beside the "
                "model\n",
                o.sp.n_parallel, ep->n_parallel);
    }
    fprintf(stderr,
            "hearth: model %s; %u parallel sequences of %u tokens, batch %u, %d threads; chat "
            "template %s\n",
            hearth_model_desc(model), ep->n_parallel, ep->n_ctx, ep->n_batch, ep->n_threads,
            chat_family_name(chat));
    if (chat == CHAT_NONE) {
        fprintf(stderr, "hearth: the model has no chat template: /v1/chat/completions is off "
                        "(--chat-template NAME turns it on)\n");
    }
    bool v6 = strchr(o.host, ':') != NULL;
    printf("hearth: listening on http://%s%s%s:%u\n", v6 ? "[" : "", o.host, v6 ? "]" : "",
           (unsigned)server_port(srv));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_set, &sig);
    fprintf(stderr, "hearth: %s, shutting down\n", sig == SIGINT ? "interrupted" : "terminated");
    rc = 0;
out:
    server_stop(srv);
    agents_free(agents); /* before the scheduler: its runs wait on it */
    agents_config_free(agents_cfg);
    sched_free(s);
    hearth_model_free(model);
    return rc;
}
