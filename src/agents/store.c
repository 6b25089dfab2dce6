/* store.c — the agents' SQLite store (see store.h).
 *
 * synchronous=NORMAL in WAL mode: a committed transaction survives the
 * process being killed (the WAL is in the file system before the commit
 * returns); only a power loss may roll back the last commits.
 */
#include "agents/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "util/error.h"

#define QUERY_MAX_S 5.0 /* a query_store query is stopped after this long */

struct agent_store {
    sqlite3 *db; /* read-write */
    sqlite3 *ro; /* read-only, for query_store */
    pthread_mutex_t mu;
    pthread_mutex_t ro_mu; /* one query at a time on ro (its deadline below) */
    double ro_deadline;
};

static const char *const status_names[] = {"queued", "running", "succeeded", "failed",
                                           "interrupted"};

const char *run_status_name(run_status s) {
    return (unsigned)s <= RUN_INTERRUPTED ? status_names[s] : "?";
}

static run_status status_parse(const char *s) {
    for (int i = 0; i <= RUN_INTERRUPTED; i++) {
        if (s && !strcmp(s, status_names[i])) return (run_status)i;
    }
    return RUN_FAILED;
}

double store_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS runs ("
    " id INTEGER PRIMARY KEY, agent TEXT NOT NULL, trigger TEXT NOT NULL, input TEXT,"
    " status TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 1, retry_of INTEGER,"
    " queued_at REAL NOT NULL, started_at REAL, finished_at REAL,"
    " prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,"
    " inputs TEXT, prompt_hash TEXT, error TEXT, output TEXT);"
    "CREATE INDEX IF NOT EXISTS runs_by_agent ON runs(agent, id);"
    "CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status, id);"
    "CREATE TABLE IF NOT EXISTS records ("
    " id INTEGER PRIMARY KEY, agent TEXT NOT NULL, run_id INTEGER, key TEXT,"
    " content TEXT NOT NULL, created_at REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS inbox_seen ("
    " agent TEXT NOT NULL, file TEXT NOT NULL, size INTEGER, mtime INTEGER, run_id INTEGER,"
    " PRIMARY KEY (agent, file, size, mtime));"
    "CREATE TABLE IF NOT EXISTS trigger_state ("
    " agent TEXT NOT NULL, idx INTEGER NOT NULL, last_fired REAL NOT NULL,"
    " PRIMARY KEY (agent, idx));";

static hearth_status db_error(sqlite3 *db, hearth_error *err, const char *what) {
    return error_set(err, HEARTH_ERR_IO, "agents store: %s: %s", what, sqlite3_errmsg(db));
}

/* Reading only: the tables query_store may see, nothing written, no
 * ATTACH, no PRAGMA. */
static int ro_authorizer(void *ctx, int action, const char *a, const char *b, const char *c,
                         const char *d) {
    (void)ctx;
    (void)b;
    (void)c;
    (void)d;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE: return SQLITE_OK;
    case SQLITE_READ:
        if (a && (!strcmp(a, "runs") || !strcmp(a, "records"))) return SQLITE_OK;
        return SQLITE_DENY;
    default: return SQLITE_DENY;
    }
}

/* Progress handler: a query past its deadline is interrupted (a recursive
 * query can otherwise run for ever). */
static int ro_progress(void *ctx) {
    const agent_store *st = ctx;
    return store_now() > st->ro_deadline;
}

hearth_status store_open(const char *path, agent_store **out, hearth_error *err) {
    *out = NULL;
    agent_store *st = calloc(1, sizeof *st);
    if (!st) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->ro_mu, NULL);
    hearth_status hs = HEARTH_OK;
    char *msg = NULL;
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        hs = error_set(err, HEARTH_ERR_IO, "agents store %s: %s", path,
                       st->db ? sqlite3_errmsg(st->db) : "cannot open");
    } else {
        sqlite3_busy_timeout(st->db, 5000);
        if (sqlite3_exec(st->db,
                         "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                         "PRAGMA foreign_keys=ON;",
                         NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(st->db, schema_sql, NULL, NULL, &msg) != SQLITE_OK) {
            hs = error_set(err, HEARTH_ERR_IO, "agents store %s: %s", path, msg ? msg : "?");
        } else if (sqlite3_open_v2(path, &st->ro, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
            hs = error_set(err, HEARTH_ERR_IO, "agents store %s (read-only): %s", path,
                           st->ro ? sqlite3_errmsg(st->ro) : "cannot open");
        } else {
            sqlite3_busy_timeout(st->ro, 5000);
            sqlite3_set_authorizer(st->ro, ro_authorizer, NULL);
            sqlite3_progress_handler(st->ro, 10000, ro_progress, st);
        }
    }
    sqlite3_free(msg);
    if (hs != HEARTH_OK) {
        store_close(st);
        return hs;
    }
    *out = st;
    return HEARTH_OK;
}

void store_close(agent_store *st) {
    if (!st) return;
    sqlite3_close(st->ro);
    sqlite3_close(st->db);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->ro_mu);
    free(st);
}

void agent_run_free(agent_run *r) {
    if (!r) return;
    free(r->agent);
    free(r->trigger);
    free(r->input);
    free(r->error);
    free(r->output);
    free(r->inputs);
    free(r->prompt_hash);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- helpers (lock held) */

static bool exec_locked(agent_store *st, const char *sql) {
    return sqlite3_exec(st->db, sql, NULL, NULL, NULL) == SQLITE_OK;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v) {
    if (v) {
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    } else {
        sqlite3_bind_null(s, i);
    }
}

static char *col_text(sqlite3_stmt *s, int i) {
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? strdup((const char *)t) : NULL;
}

#define RUN_COLUMNS                                                                                \
    "id, agent, trigger, input, status, attempt, queued_at, started_at, finished_at, "             \
    "prompt_tokens, completion_tokens, error, output, inputs, prompt_hash"

static void read_run(sqlite3_stmt *s, agent_run *r) {
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(s, 0);
    r->agent = col_text(s, 1);
    r->trigger = col_text(s, 2);
    r->input = col_text(s, 3);
    r->status = status_parse((const char *)sqlite3_column_text(s, 4));
    r->attempt = sqlite3_column_int(s, 5);
    r->queued_at = sqlite3_column_double(s, 6);
    r->started_at = sqlite3_column_double(s, 7);
    r->finished_at = sqlite3_column_double(s, 8);
    r->prompt_tokens = sqlite3_column_int64(s, 9);
    r->completion_tokens = sqlite3_column_int64(s, 10);
    r->error = col_text(s, 11);
    r->output = col_text(s, 12);
    r->inputs = col_text(s, 13);
    r->prompt_hash = col_text(s, 14);
}

static bool enqueue_locked(agent_store *st, const char *agent, const char *trigger,
                           const char *input, int attempt, long long retry_of, long long *id) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO runs (agent, trigger, input, status, attempt, retry_of, "
                           "queued_at) VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                           -1, &s, NULL) != SQLITE_OK) {
        return false;
    }
    bind_text(s, 1, agent);
    bind_text(s, 2, trigger);
    bind_text(s, 3, input);
    sqlite3_bind_int(s, 4, attempt);
    if (retry_of > 0) {
        sqlite3_bind_int64(s, 5, retry_of);
    } else {
        sqlite3_bind_null(s, 5);
    }
    sqlite3_bind_double(s, 6, store_now());
    bool ok = sqlite3_step(s) == SQLITE_DONE;
    sqlite3_finalize(s);
    if (ok && id) *id = sqlite3_last_insert_rowid(st->db);
    return ok;
}

/* ---------------------------------------------------------------- runs */

hearth_status store_enqueue(agent_store *st, const char *agent, const char *trigger,
                            const char *input, int attempt, long long *id, hearth_error *err) {
    pthread_mutex_lock(&st->mu);
    bool ok = enqueue_locked(st, agent, trigger, input, attempt, 0, id);
    hearth_status hs = ok ? HEARTH_OK : db_error(st->db, err, "queueing a run");
    pthread_mutex_unlock(&st->mu);
    return hs;
}

int store_recover(agent_store *st, int (*retries_of)(void *ctx, const char *agent), void *ctx,
                  hearth_error *err) {
    pthread_mutex_lock(&st->mu);
    int n = 0;
    bool ok = exec_locked(st, "BEGIN IMMEDIATE");
    sqlite3_stmt *s = NULL;
    if (ok) {
        ok = sqlite3_prepare_v2(st->db,
                                "SELECT id, agent, trigger, input, attempt FROM runs WHERE "
                                "status = 'running' ORDER BY id",
                                -1, &s, NULL) == SQLITE_OK;
    }
    /* Collect first: the statement is read while the table changes. */
    typedef struct item {
        long long id;
        char *agent, *trigger, *input;
        int attempt;
    } item;
    item *items = NULL;
    size_t n_items = 0, cap = 0;
    while (ok && sqlite3_step(s) == SQLITE_ROW) {
        if (n_items == cap) {
            cap = cap ? 2 * cap : 8;
            item *p = realloc(items, cap * sizeof *p);
            if (!p) {
                ok = false;
                break;
            }
            items = p;
        }
        item *it = &items[n_items++];
        it->id = sqlite3_column_int64(s, 0);
        it->agent = col_text(s, 1);
        it->trigger = col_text(s, 2);
        it->input = col_text(s, 3);
        it->attempt = sqlite3_column_int(s, 4);
    }
    sqlite3_finalize(s);
    s = NULL;
    double now = store_now();
    for (size_t i = 0; ok && i < n_items; i++) {
        item *it = &items[i];
        ok = sqlite3_prepare_v2(st->db,
                                "UPDATE runs SET status = 'interrupted', finished_at = ?, error = "
                                "'interrupted: the server stopped during the run' WHERE id = ?",
                                -1, &s, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_double(s, 1, now);
            sqlite3_bind_int64(s, 2, it->id);
            ok = sqlite3_step(s) == SQLITE_DONE;
        }
        sqlite3_finalize(s);
        s = NULL;
        n++;
        int retries = it->agent ? retries_of(ctx, it->agent) : -1;
        if (ok && retries >= 0 && it->attempt <= retries) {
            ok = enqueue_locked(st, it->agent, it->trigger, it->input, it->attempt + 1, it->id,
                                NULL);
        }
    }
    for (size_t i = 0; i < n_items; i++) {
        free(items[i].agent);
        free(items[i].trigger);
        free(items[i].input);
    }
    free(items);
    /* Queued runs of agents that are gone can never run. */
    if (ok) {
        ok = sqlite3_prepare_v2(st->db, "SELECT DISTINCT agent FROM runs WHERE status = 'queued'",
                                -1, &s, NULL) == SQLITE_OK;
        char *gone[64];
        size_t n_gone = 0;
        while (ok && sqlite3_step(s) == SQLITE_ROW && n_gone < 64) {
            const char *a = (const char *)sqlite3_column_text(s, 0);
            if (a && retries_of(ctx, a) < 0) gone[n_gone++] = strdup(a);
        }
        sqlite3_finalize(s);
        s = NULL;
        for (size_t i = 0; i < n_gone; i++) {
            if (ok && gone[i] &&
                sqlite3_prepare_v2(st->db,
                                   "UPDATE runs SET status = 'failed', finished_at = ?, error = "
                                   "'the agent is no longer configured' WHERE status = 'queued' "
                                   "AND agent = ?",
                                   -1, &s, NULL) == SQLITE_OK) {
                sqlite3_bind_double(s, 1, now);
                bind_text(s, 2, gone[i]);
                ok = sqlite3_step(s) == SQLITE_DONE;
                sqlite3_finalize(s);
                s = NULL;
            }
            free(gone[i]);
        }
    }
    if (ok) ok = exec_locked(st, "COMMIT");
    if (!ok) {
        db_error(st->db, err, "recovering interrupted runs");
        exec_locked(st, "ROLLBACK");
        n = -1;
    }
    pthread_mutex_unlock(&st->mu);
    return n;
}

bool store_claim(agent_store *st, agent_run *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&st->mu);
    bool found = false;
    sqlite3_stmt *s = NULL;
    if (exec_locked(st, "BEGIN IMMEDIATE")) {
        if (sqlite3_prepare_v2(st->db,
                               "SELECT " RUN_COLUMNS " FROM runs r WHERE status = 'queued' AND "
                               "NOT EXISTS (SELECT 1 FROM runs x WHERE x.status = 'running' AND "
                               "x.agent = r.agent) ORDER BY id LIMIT 1",
                               -1, &s, NULL) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW) {
            read_run(s, out);
            found = true;
        }
        sqlite3_finalize(s);
        s = NULL;
        if (found && sqlite3_prepare_v2(
                         st->db, "UPDATE runs SET status = 'running', started_at = ? WHERE id = ?",
                         -1, &s, NULL) == SQLITE_OK) {
            out->started_at = store_now();
            out->status = RUN_RUNNING;
            sqlite3_bind_double(s, 1, out->started_at);
            sqlite3_bind_int64(s, 2, out->id);
            found = sqlite3_step(s) == SQLITE_DONE;
        }
        sqlite3_finalize(s);
        if (found && !exec_locked(st, "COMMIT")) found = false;
        if (!found) exec_locked(st, "ROLLBACK");
    }
    if (!found) agent_run_free(out);
    pthread_mutex_unlock(&st->mu);
    return found;
}

hearth_status store_finish(agent_store *st, const agent_run *run, const run_result *res,
                           hearth_error *err) {
    pthread_mutex_lock(&st->mu);
    bool ok = exec_locked(st, "BEGIN IMMEDIATE");
    sqlite3_stmt *s = NULL;
    if (ok) {
        ok = sqlite3_prepare_v2(st->db,
                                "UPDATE runs SET status = ?, finished_at = ?, output = ?, error = "
                                "?, prompt_tokens = ?, completion_tokens = ?, inputs = ?, "
                                "prompt_hash = ? WHERE id = ?",
                                -1, &s, NULL) == SQLITE_OK;
    }
    if (ok) {
        bind_text(s, 1, run_status_name(res->status));
        sqlite3_bind_double(s, 2, store_now());
        bind_text(s, 3, res->output);
        bind_text(s, 4, res->error);
        sqlite3_bind_int64(s, 5, res->prompt_tokens);
        sqlite3_bind_int64(s, 6, res->completion_tokens);
        bind_text(s, 7, res->inputs);
        bind_text(s, 8, res->prompt_hash);
        sqlite3_bind_int64(s, 9, run->id);
        ok = sqlite3_step(s) == SQLITE_DONE;
    }
    sqlite3_finalize(s);
    if (ok && res->status == RUN_SUCCEEDED) {
        for (size_t i = 0; ok && i < res->n_next; i++) {
            ok =
                enqueue_locked(st, res->next_agents[i], res->next_trigger, res->output, 1, 0, NULL);
        }
    }
    if (ok && res->retry) {
        ok = enqueue_locked(st, run->agent, run->trigger, run->input, run->attempt + 1, run->id,
                            NULL);
    }
    if (ok) ok = exec_locked(st, "COMMIT");
    hearth_status hs = HEARTH_OK;
    if (!ok) {
        hs = db_error(st->db, err, "recording the end of a run");
        exec_locked(st, "ROLLBACK");
    }
    pthread_mutex_unlock(&st->mu);
    return hs;
}

hearth_status store_requeue(agent_store *st, long long id, hearth_error *err) {
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    bool ok =
        sqlite3_prepare_v2(st->db,
                           "UPDATE runs SET status = 'queued', started_at = NULL WHERE id = ? "
                           "AND status = 'running'",
                           -1, &s, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(s, 1, id);
        ok = sqlite3_step(s) == SQLITE_DONE;
    }
    sqlite3_finalize(s);
    hearth_status hs = ok ? HEARTH_OK : db_error(st->db, err, "requeueing a run");
    pthread_mutex_unlock(&st->mu);
    return hs;
}

static bool get_one(agent_store *st, const char *sql, long long id, const char *text,
                    agent_run *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    bool found = false;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK) {
        if (text) {
            bind_text(s, 1, text);
        } else {
            sqlite3_bind_int64(s, 1, id);
        }
        if (sqlite3_step(s) == SQLITE_ROW) {
            read_run(s, out);
            found = true;
        }
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return found;
}

bool store_get_run(agent_store *st, long long id, agent_run *out) {
    return get_one(st, "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?", id, NULL, out);
}

bool store_last_run(agent_store *st, const char *agent, agent_run *out) {
    return get_one(st, "SELECT " RUN_COLUMNS " FROM runs WHERE agent = ? ORDER BY id DESC LIMIT 1",
                   0, agent, out);
}

char *store_last_output(agent_store *st, const char *agent) {
    agent_run r;
    if (!get_one(st,
                 "SELECT " RUN_COLUMNS " FROM runs WHERE agent = ? AND status = 'succeeded' "
                 "ORDER BY id DESC LIMIT 1",
                 0, agent, &r)) {
        return NULL;
    }
    char *o = r.output;
    r.output = NULL;
    agent_run_free(&r);
    return o;
}

size_t store_list_runs(agent_store *st, const char *agent, size_t limit, agent_run **out) {
    *out = NULL;
    if (limit == 0) return 0;
    agent_run *runs = calloc(limit, sizeof *runs);
    if (!runs) return 0;
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    size_t n = 0;
    if (sqlite3_prepare_v2(
            st->db, "SELECT " RUN_COLUMNS " FROM runs WHERE agent = ? ORDER BY id DESC LIMIT ?", -1,
            &s, NULL) == SQLITE_OK) {
        bind_text(s, 1, agent);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)limit);
        while (n < limit && sqlite3_step(s) == SQLITE_ROW) read_run(s, &runs[n++]);
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    *out = runs;
    return n;
}

hearth_status store_add_record(agent_store *st, const char *agent, long long run_id,
                               const char *key, const char *content, hearth_error *err) {
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    bool ok = sqlite3_prepare_v2(st->db,
                                 "INSERT INTO records (agent, run_id, key, content, created_at) "
                                 "VALUES (?, ?, ?, ?, ?)",
                                 -1, &s, NULL) == SQLITE_OK;
    if (ok) {
        bind_text(s, 1, agent);
        sqlite3_bind_int64(s, 2, run_id);
        bind_text(s, 3, key);
        bind_text(s, 4, content);
        sqlite3_bind_double(s, 5, store_now());
        ok = sqlite3_step(s) == SQLITE_DONE;
    }
    sqlite3_finalize(s);
    hearth_status hs = ok ? HEARTH_OK : db_error(st->db, err, "writing a record");
    pthread_mutex_unlock(&st->mu);
    return hs;
}

/* ---------------------------------------------------------------- triggers */

bool store_inbox_seen(agent_store *st, const char *agent, const char *file, long long size,
                      long long mtime) {
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    bool seen = true; /* on a database error, take nothing */
    if (sqlite3_prepare_v2(st->db,
                           "SELECT 1 FROM inbox_seen WHERE agent = ? AND file = ? AND size = ? "
                           "AND mtime = ?",
                           -1, &s, NULL) == SQLITE_OK) {
        bind_text(s, 1, agent);
        bind_text(s, 2, file);
        sqlite3_bind_int64(s, 3, size);
        sqlite3_bind_int64(s, 4, mtime);
        int rc = sqlite3_step(s);
        seen = rc == SQLITE_ROW || rc != SQLITE_DONE;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return seen;
}

hearth_status store_inbox_take(agent_store *st, const char *agent, const char *file, long long size,
                               long long mtime, long long *run_id, hearth_error *err) {
    char trig[600];
    snprintf(trig, sizeof trig, "inbox:%s", file);
    pthread_mutex_lock(&st->mu);
    bool ok = exec_locked(st, "BEGIN IMMEDIATE");
    if (ok) ok = enqueue_locked(st, agent, trig, file, 1, 0, run_id);
    sqlite3_stmt *s = NULL;
    if (ok) {
        ok = sqlite3_prepare_v2(st->db,
                                "INSERT OR REPLACE INTO inbox_seen (agent, file, size, mtime, "
                                "run_id) VALUES (?, ?, ?, ?, ?)",
                                -1, &s, NULL) == SQLITE_OK;
    }
    if (ok) {
        bind_text(s, 1, agent);
        bind_text(s, 2, file);
        sqlite3_bind_int64(s, 3, size);
        sqlite3_bind_int64(s, 4, mtime);
        sqlite3_bind_int64(s, 5, *run_id);
        ok = sqlite3_step(s) == SQLITE_DONE;
    }
    sqlite3_finalize(s);
    if (ok) ok = exec_locked(st, "COMMIT");
    hearth_status hs = HEARTH_OK;
    if (!ok) {
        hs = db_error(st->db, err, "taking an inbox file");
        exec_locked(st, "ROLLBACK");
    }
    pthread_mutex_unlock(&st->mu);
    return hs;
}

double store_trigger_last(agent_store *st, const char *agent, size_t index) {
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    double t = 0;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT last_fired FROM trigger_state WHERE agent = ? AND idx = ?", -1,
                           &s, NULL) == SQLITE_OK) {
        bind_text(s, 1, agent);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)index);
        if (sqlite3_step(s) == SQLITE_ROW) t = sqlite3_column_double(s, 0);
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return t;
}

hearth_status store_trigger_fire(agent_store *st, const char *agent, size_t index, double when,
                                 const char *trigger, long long *run_id, hearth_error *err) {
    pthread_mutex_lock(&st->mu);
    bool ok = exec_locked(st, "BEGIN IMMEDIATE");
    sqlite3_stmt *s = NULL;
    if (ok) {
        ok = sqlite3_prepare_v2(st->db,
                                "INSERT OR REPLACE INTO trigger_state (agent, idx, last_fired) "
                                "VALUES (?, ?, ?)",
                                -1, &s, NULL) == SQLITE_OK;
    }
    if (ok) {
        bind_text(s, 1, agent);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)index);
        sqlite3_bind_double(s, 3, when);
        ok = sqlite3_step(s) == SQLITE_DONE;
    }
    sqlite3_finalize(s);
    if (ok) ok = enqueue_locked(st, agent, trigger, NULL, 1, 0, run_id);
    if (ok) ok = exec_locked(st, "COMMIT");
    hearth_status hs = HEARTH_OK;
    if (!ok) {
        hs = db_error(st->db, err, "recording a trigger");
        exec_locked(st, "ROLLBACK");
    }
    pthread_mutex_unlock(&st->mu);
    return hs;
}

/* ---------------------------------------------------------------- query_store */

static json_t *column_json(sqlite3_stmt *s, int i) {
    switch (sqlite3_column_type(s, i)) {
    case SQLITE_INTEGER: return json_integer(sqlite3_column_int64(s, i));
    case SQLITE_FLOAT: return json_real(sqlite3_column_double(s, i));
    case SQLITE_NULL: return json_null();
    case SQLITE_BLOB: return json_string("(blob)");
    default: {
        const char *t = (const char *)sqlite3_column_text(s, i);
        json_t *j = json_stringn(t ? t : "", (size_t)sqlite3_column_bytes(s, i));
        return j ? j : json_string("(not UTF-8)");
    }
    }
}

static json_t *run_query(sqlite3 *db, const char *sql, size_t max_rows, hearth_error *err) {
    sqlite3_stmt *s = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, &tail) != SQLITE_OK) {
        error_set(err, HEARTH_ERR_BAD_INPUT, "query refused: %s", sqlite3_errmsg(db));
        return NULL;
    }
    while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';')) tail++;
    if (!s || (tail && *tail) || !sqlite3_stmt_readonly(s)) {
        sqlite3_finalize(s);
        error_set(err, HEARTH_ERR_BAD_INPUT, "query refused: one read-only SELECT only");
        return NULL;
    }
    json_t *rows = json_array();
    int rc;
    size_t n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < max_rows) {
        json_t *row = json_object();
        for (int i = 0; i < sqlite3_column_count(s); i++) {
            const char *name = sqlite3_column_name(s, i);
            json_object_set_new(row, name ? name : "?", column_json(s, i));
        }
        json_array_append_new(rows, row);
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        error_set(err, HEARTH_ERR_BAD_INPUT, "query failed: %s", sqlite3_errmsg(db));
        json_decref(rows);
        rows = NULL;
    }
    sqlite3_finalize(s);
    return rows;
}

json_t *store_query(agent_store *st, const char *sql, size_t max_rows, hearth_error *err) {
    /* Not under the store's mutex: WAL lets the read-only connection read
     * beside the writer. */
    pthread_mutex_lock(&st->ro_mu);
    st->ro_deadline = store_now() + QUERY_MAX_S;
    json_t *rows = run_query(st->ro, sql, max_rows, err);
    pthread_mutex_unlock(&st->ro_mu);
    return rows;
}

hearth_status store_check_query(const char *sql, hearth_error *err) {
    sqlite3 *db = NULL;
    hearth_status hs = HEARTH_OK;
    if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(db, schema_sql, NULL, NULL, NULL) != SQLITE_OK) {
        hs = error_set(err, HEARTH_ERR_NOMEM, "cannot check the query");
    } else {
        sqlite3_set_authorizer(db, ro_authorizer, NULL);
        json_t *r = run_query(db, sql, 0, err);
        if (!r) hs = HEARTH_ERR_BAD_INPUT;
        json_decref(r);
    }
    sqlite3_close(db);
    return hs;
}
