/* test.h — the small harness every unit test program uses.
 *
 * A test program defines test functions with TEST(name) and lists them in
 * main with RUN(name).  Each RUN prints one line, "ok   prog/name" or
 * "FAIL prog/name", after the messages of any failed CHECK; tests/run.sh
 * counts those lines across all programs.  test_finish() returns the exit
 * status (non-zero when anything failed).
 */
#ifndef HEARTH_TEST_H
#define HEARTH_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TEST(name) static void name(void)

/* Records a failure without stopping the test. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) test_fail(__FILE__, __LINE__, "%s", #cond);                                   \
    } while (0)
/* Records a failure with a printf-style explanation. */
#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__);                                   \
    } while (0)
/* Records a failure and returns from the test. */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test_fail(__FILE__, __LINE__, "%s", #cond);                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define RUN(name) test_run(#name, name)

void test_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void test_run(const char *name, void (*fn)(void));
/* Sets the program name used in result lines. */
void test_init(const char *prog);
int test_finish(void);

/* Path of a file under the shared folder beside the checkout
 * ($HEARTH_SHARED, default "../shared"); returns a static buffer. */
const char *test_shared(const char *rel);
/* Reads a whole file; returns NULL when it cannot.  Caller frees. */
char *test_read_file(const char *path, size_t *len);
/* Parses whitespace-separated integers from text into out (at most cap);
 * returns how many were read. */
size_t test_parse_ints(const char *text, int32_t *out, size_t cap);
/* A directory for scratch files of this run (created on first use). */
const char *test_tmpdir(void);

/* The hearth binary under test: $HEARTH_BIN, else build/<kind>/hearth for
 * a test at build/<kind>/tests/<name> (argv0).  A static buffer. */
const char *test_hearth_bin(const char *argv0);

/* A `hearth serve` process started by a test. */
typedef struct test_proc {
    int pid;
    int port;           /* 0 when it did not start */
    char err_path[512]; /* its stderr */
} test_proc;

/* Starts `BIN serve ARGS --port 0` (stdin closed, stderr to a file) and
 * reads the port from its "listening on" line; when it does not start,
 * prints its stderr and returns port 0. */
test_proc test_serve_start(const char *bin, const char *args);
/* SIGTERM, then checks a clean exit (status 0) and a stderr without
 * sanitizer reports. */
void test_serve_stop(test_proc *p);

#endif
