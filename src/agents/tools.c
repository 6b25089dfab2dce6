/* tools.c — the agents' tools (see tools.h). */
#include "agents/tools.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

#define QUERY_MAX_ROWS 100
#define LIST_MAX_FILES 200

/* ---------------------------------------------------------------- schemas */

static json_t *fn(const char *name, const char *desc, json_t *props, const char *const *required,
                  size_t n_required) {
    json_t *params = json_object();
    json_object_set_new(params, "type", json_string("object"));
    json_object_set_new(params, "properties", props);
    json_t *req = json_array();
    for (size_t i = 0; i < n_required; i++) json_array_append_new(req, json_string(required[i]));
    json_object_set_new(params, "required", req);
    json_object_set_new(params, "additionalProperties", json_false());
    json_t *f = json_object();
    json_object_set_new(f, "name", json_string(name));
    json_object_set_new(f, "description", json_string(desc));
    json_object_set_new(f, "parameters", params);
    json_t *t = json_object();
    json_object_set_new(t, "type", json_string("function"));
    json_object_set_new(t, "function", f);
    return t;
}

static json_t *str_prop(const char *desc) {
    json_t *p = json_object();
    json_object_set_new(p, "type", json_string("string"));
    json_object_set_new(p, "description", json_string(desc));
    return p;
}

json_t *tools_schema(const agent_def *a) {
    if (!a->tools) return NULL;
    json_t *tools = json_array();
    if (a->tools & AGENT_TOOL_READ_FILE) {
        static const char *const req[] = {"path"};
        json_t *p = json_object();
        json_object_set_new(p, "path", str_prop("a path relative to your data folder"));
        json_array_append_new(
            tools, fn("read_file", "Read a text file from your data folder.", p, req, 1));
    }
    if (a->tools & AGENT_TOOL_LIST_INBOX) {
        json_array_append_new(tools, fn("list_inbox", "List the files in your inbox folder.",
                                        json_object(), NULL, 0));
    }
    if (a->tools & AGENT_TOOL_WRITE_OUTPUT) {
        static const char *const req[] = {"content"};
        json_t *p = json_object();
        json_object_set_new(p, "content", str_prop("the text to record"));
        json_object_set_new(p, "key",
                            str_prop("optional: store a keyed record instead of the run's output"));
        json_array_append_new(
            tools, fn("write_output", "Record your output (or a keyed record).", p, req, 1));
    }
    if (a->tools & AGENT_TOOL_QUERY_STORE) {
        static const char *const req[] = {"sql"};
        json_t *p = json_object();
        json_object_set_new(p, "sql", str_prop("one SELECT over the tables runs and records"));
        json_array_append_new(
            tools,
            fn("query_store", "Run a read-only SQL query over the agents' store.", p, req, 1));
    }
    if (a->tools & AGENT_TOOL_CALL_AGENT) {
        static const char *const req[] = {"agent", "input"};
        json_t *p = json_object();
        json_object_set_new(p, "agent", str_prop("the name of the agent to run"));
        json_object_set_new(p, "input", str_prop("what to ask it"));
        json_array_append_new(tools, fn("call_agent",
                                        "Queue a run of another agent with an input; returns the "
                                        "run id (its output arrives in the store).",
                                        p, req, 2));
    }
    return tools;
}

/* ---------------------------------------------------------------- confinement */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void
say(char *err, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* Opens rel under folder component by component, never following a
 * symbolic link; flags for the last component.  -1 with err. */
static int open_confined(const char *folder, const char *rel, int flags, char *err, size_t cap) {
    if (!agents_path_is_confined(rel)) {
        say(err, cap, "the path '%.200s' is outside your data folder", rel);
        return -1;
    }
    char *copy = strdup(rel);
    if (!copy) {
        say(err, cap, "out of memory");
        return -1;
    }
    int dir = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        say(err, cap, "your data folder cannot be opened: %s", strerror(errno));
        free(copy);
        return -1;
    }
    /* Components are resolved with a stack of descriptors so that ".."
     * goes back to the parent we opened (never above the folder: the path
     * was checked to stay inside by its text). */
    int stack[64];
    size_t depth = 0;
    stack[depth] = dir;
    char *save = NULL;
    int fd = -1;
    char *parts[64];
    size_t n_parts = 0;
    for (char *p = strtok_r(copy, "/", &save); p && n_parts < 64; p = strtok_r(NULL, "/", &save)) {
        if (strcmp(p, ".") != 0) parts[n_parts++] = p;
    }
    bool ok = n_parts > 0;
    if (!ok) say(err, cap, "the path '%.200s' names no file", rel);
    for (size_t i = 0; ok && i < n_parts; i++) {
        bool last = i + 1 == n_parts;
        if (!strcmp(parts[i], "..")) {
            if (depth == 0 || last) {
                ok = false;
                say(err, cap, "the path '%.200s' is outside your data folder", rel);
                break;
            }
            close(stack[depth--]);
            continue;
        }
        int f = openat(stack[depth], parts[i],
                       (last ? flags : O_RDONLY | O_DIRECTORY) | O_NOFOLLOW | O_CLOEXEC);
        if (f < 0) {
            ok = false;
            struct stat lsb;
            int e = errno;
            if (e == ELOOP ||
                (e == ENOTDIR && fstatat(stack[depth], parts[i], &lsb, AT_SYMLINK_NOFOLLOW) == 0 &&
                 S_ISLNK(lsb.st_mode))) {
                say(err, cap, "'%.200s' goes through a symbolic link: refused", rel);
            } else {
                say(err, cap, "cannot open '%.200s': %s", rel, strerror(e));
            }
            break;
        }
        if (last) {
            fd = f;
        } else if (depth + 1 < 64) {
            stack[++depth] = f;
        } else {
            close(f);
            ok = false;
            say(err, cap, "the path '%.200s' is too deep", rel);
        }
    }
    for (size_t i = 0; i <= depth; i++) close(stack[i]);
    free(copy);
    return ok ? fd : -1;
}

char *tools_read_confined(const char *folder, const char *rel, size_t max, size_t *len, bool *cut,
                          char *err, size_t err_cap) {
    *len = 0;
    *cut = false;
    int fd = open_confined(folder, rel, O_RDONLY, err, err_cap);
    if (fd < 0) return NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        say(err, err_cap, "'%.200s' is not a regular file", rel);
        close(fd);
        return NULL;
    }
    char *buf = malloc(max + 1);
    if (!buf) {
        say(err, err_cap, "out of memory");
        close(fd);
        return NULL;
    }
    size_t n = 0;
    while (n < max) {
        ssize_t k = read(fd, buf + n, max - n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        n += (size_t)k;
    }
    char extra;
    if (n == max && read(fd, &extra, 1) == 1) *cut = true;
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ---------------------------------------------------------------- the tools */

static char *text(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static char *text(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

static const char *arg_string(json_t *args, const char *key) {
    json_t *v = json_object_get(args, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* True when rel is one of the allowed paths or inside one of them. */
static bool read_allowed(const agent_def *a, const char *rel) {
    if (a->n_read_paths == 0) return true;
    while (rel[0] == '.' && rel[1] == '/') rel += 2;
    for (size_t i = 0; i < a->n_read_paths; i++) {
        const char *p = a->read_paths[i];
        while (p[0] == '.' && p[1] == '/') p += 2;
        size_t n = strlen(p);
        while (n > 0 && p[n - 1] == '/') n--;
        if (!strncmp(rel, p, n) && (rel[n] == '\0' || rel[n] == '/') && !strstr(rel, "..")) {
            return true;
        }
    }
    return false;
}

static char *tool_read_file(tool_env *env, json_t *args) {
    const char *path = arg_string(args, "path");
    if (!path) return text("error: read_file needs a string 'path'");
    if (!read_allowed(env->agent, path)) {
        return text("error: read_file may not read '%.200s' (allowed: the paths in the agent's "
                    "tools list)",
                    path);
    }
    char err[300];
    size_t len;
    bool cut;
    char *data = tools_read_confined(env->agent->folder, path, env->agent->max_input_bytes, &len,
                                     &cut, err, sizeof err);
    if (!data) return text("error: %s", err);
    if (!cut) return data;
    char *s = text("%s\n[cut at %zu bytes]", data, len);
    free(data);
    return s;
}

static char *tool_list_inbox(tool_env *env) {
    char err[300];
    int fd = open_confined(env->agent->folder, "inbox", O_RDONLY | O_DIRECTORY, err, sizeof err);
    if (fd < 0) return text("error: %s", err);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return text("error: cannot list the inbox");
    }
    json_t *list = json_array();
    struct dirent *e;
    while ((e = readdir(d)) != NULL && json_array_size(list) < LIST_MAX_FILES) {
        if (e->d_name[0] == '.') continue;
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) {
            continue;
        }
        json_t *f = json_object();
        json_object_set_new(f, "name", json_string(e->d_name));
        json_object_set_new(f, "size", json_integer((json_int_t)sb.st_size));
        json_array_append_new(list, f);
    }
    closedir(d);
    char *s = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    return s;
}

static char *tool_write_output(tool_env *env, json_t *args) {
    const char *content = arg_string(args, "content");
    const char *key = arg_string(args, "key");
    if (!content) return text("error: write_output needs a string 'content'");
    if (key && *key) {
        hearth_error e;
        if (store_add_record(env->store, env->agent->name, env->run_id, key, content, &e) !=
            HEARTH_OK) {
            return text("error: %s", e.msg);
        }
        return text("recorded '%.100s'", key);
    }
    char *copy = strdup(content);
    if (!copy) return text("error: out of memory");
    free(env->output);
    env->output = copy;
    return text("output recorded (%zu bytes)", strlen(content));
}

static char *tool_query_store(tool_env *env, json_t *args) {
    const char *sql = arg_string(args, "sql");
    if (!sql) return text("error: query_store needs a string 'sql'");
    hearth_error e;
    json_t *rows = store_query(env->store, sql, QUERY_MAX_ROWS, &e);
    if (!rows) return text("error: %s", e.msg);
    char *s = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    return s;
}

static char *tool_call_agent(tool_env *env, json_t *args) {
    const char *name = arg_string(args, "agent");
    const char *input = arg_string(args, "input");
    if (!name || !input) return text("error: call_agent needs strings 'agent' and 'input'");
    size_t idx;
    if (!agents_config_find(env->cfg, name, &idx)) return text("error: no agent '%.64s'", name);
    const agent_def *a = env->agent;
    bool allowed = a->n_callable == 0 && strcmp(name, a->name) != 0;
    for (size_t i = 0; i < a->n_callable; i++) allowed |= a->callable[i] == idx;
    if (!allowed) return text("error: agent '%s' may not call '%.64s'", a->name, name);
    char trig[128], err[256];
    snprintf(trig, sizeof trig, "call:%s", a->name);
    long long id = 0;
    if (!env->queue(env->queue_ctx, name, trig, input, &id, err, sizeof err)) {
        return text("error: %s", err);
    }
    return text("{\"run_id\":%lld,\"status\":\"queued\"}", id);
}

char *tools_call(tool_env *env, const char *name, json_t *args) {
    static const unsigned bits[AGENT_N_TOOLS] = {AGENT_TOOL_READ_FILE, AGENT_TOOL_LIST_INBOX,
                                                 AGENT_TOOL_WRITE_OUTPUT, AGENT_TOOL_QUERY_STORE,
                                                 AGENT_TOOL_CALL_AGENT};
    int k = -1;
    for (int i = 0; name && i < AGENT_N_TOOLS; i++) {
        if (!strcmp(name, agent_tool_names[i])) k = i;
    }
    if (k < 0 || !(env->agent->tools & bits[k])) {
        return text("error: no tool '%.64s' for this agent", name ? name : "");
    }
    if (!json_is_object(args)) return text("error: the arguments must be a JSON object");
    switch (bits[k]) {
    case AGENT_TOOL_READ_FILE: return tool_read_file(env, args);
    case AGENT_TOOL_LIST_INBOX: return tool_list_inbox(env);
    case AGENT_TOOL_WRITE_OUTPUT: return tool_write_output(env, args);
    case AGENT_TOOL_QUERY_STORE: return tool_query_store(env, args);
    default: return tool_call_agent(env, args);
    }
}
