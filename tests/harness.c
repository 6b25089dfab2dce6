/* harness.c — implementation of the test harness declared in test.h. */
#include "test.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *test_prog = "test";
static int test_current_failed;
static int test_n_passed;
static int test_n_failed;

void test_init(const char *prog) {
    const char *slash = strrchr(prog, '/');
    test_prog = slash ? slash + 1 : prog;
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "  %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    test_current_failed = 1;
}

void test_run(const char *name, void (*fn)(void)) {
    test_current_failed = 0;
    fn();
    if (test_current_failed) {
        test_n_failed++;
        printf("FAIL %s/%s\n", test_prog, name);
    } else {
        test_n_passed++;
        printf("ok   %s/%s\n", test_prog, name);
    }
    fflush(stdout);
}

int test_finish(void) {
    return test_n_failed ? 1 : 0;
}

const char *test_shared(const char *rel) {
    static char buf[4096];
    const char *root = getenv("HEARTH_SHARED");
    if (!root || !*root) root = "../shared";
    snprintf(buf, sizeof buf, "%s/%s", root, rel);
    return buf;
}

char *test_read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    if (fseek(fp, 0, SEEK_END) != 0) {
        fclose(fp);
        return NULL;
    }
    long size = ftell(fp);
    if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        return NULL;
    }
    char *buf = malloc((size_t)size + 1);
    if (buf && fread(buf, 1, (size_t)size, fp) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    if (!buf) return NULL;
    buf[size] = '\0';
    if (len) *len = (size_t)size;
    return buf;
}

size_t test_parse_ints(const char *text, int32_t *out, size_t cap) {
    size_t n = 0;
    const char *p = text;
    while (*p && n < cap) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) {
            p++;
            continue;
        }
        out[n++] = (int32_t)v;
        p = end;
    }
    return n;
}

const char *test_tmpdir(void) {
    static char dir[256];
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        if (!base || !*base) base = "/tmp";
        snprintf(dir, sizeof dir, "%s/hearth-test-%d", base, (int)getpid());
        mkdir(dir, 0700);
    }
    return dir;
}

const char *test_hearth_bin(const char *argv0) {
    static char bin[1024];
    const char *env = getenv("HEARTH_BIN");
    if (env && *env) {
        snprintf(bin, sizeof bin, "%s", env);
        return bin;
    }
    snprintf(bin, sizeof bin, "%s", argv0);
    char *slash = strrchr(bin, '/');
    if (slash) *slash = '\0';
    slash = strrchr(bin, '/');
    if (slash) {
        snprintf(slash, sizeof bin - (size_t)(slash - bin), "/hearth");
    } else {
        snprintf(bin, sizeof bin, "../hearth");
    }
    return bin;
}

test_proc test_serve_start(const char *bin, const char *args) {
    test_proc p = {-1, 0, ""};
    static int n;
    snprintf(p.err_path, sizeof p.err_path, "%s/serve-%d.err", test_tmpdir(), n++);
    int fds[2];
    if (pipe(fds) != 0) return p;
    p.pid = fork();
    if (p.pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "exec '%s' serve %s --port 0 2>'%s' </dev/null", bin, args,
                 p.err_path);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *fp = fdopen(fds[0], "r");
    char line[512];
    if (fp && fgets(line, sizeof line, fp)) {
        const char *colon = strrchr(line, ':');
        if (strstr(line, "listening on") && colon) p.port = atoi(colon + 1);
    }
    if (fp) fclose(fp);
    if (!p.port) {
        char *e = test_read_file(p.err_path, NULL);
        printf("  server did not start: %s\n", e ? e : "?");
        free(e);
    }
    return p;
}

void test_serve_stop(test_proc *p) {
    if (p->pid <= 0) return;
    kill(p->pid, SIGTERM);
    int st = 0;
    waitpid(p->pid, &st, 0);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit status %d", st);
    char *e = test_read_file(p->err_path, NULL);
    CHECKF(e && !strstr(e, "Sanitizer") && !strstr(e, "runtime error"), "server stderr: %s",
           e ? e : "(none)");
    free(e);
    p->pid = -1;
}
