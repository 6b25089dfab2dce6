/* test_util.c — the thread pool and error helpers. */
#include <stdatomic.h>
#include <string.h>

#include "test.h"
#include "util/error.h"
#include "util/threadpool.h"

typedef struct count_job {
    atomic_int hits[1000];
    atomic_int calls;
} count_job;

static void count_worker(void *arg, int ith, int nth) {
    count_job *j = arg;
    int64_t b, e;
    threadpool_split(1000, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&j->hits[i], 1);
    atomic_fetch_add(&j->calls, 1);
}

TEST(pool_runs_every_part_once) {
    for (int n = 1; n <= 4; n++) {
        threadpool *p;
        hearth_error err;
        REQUIRE(threadpool_create(n, &p, &err) == HEARTH_OK);
        static count_job j;
        memset(&j, 0, sizeof j);
        for (int round = 0; round < 500; round++) threadpool_run(p, count_worker, &j);
        CHECK(atomic_load(&j.calls) == 500 * n);
        for (int i = 0; i < 1000; i++) CHECKF(atomic_load(&j.hits[i]) == 500, "n=%d i=%d", n, i);
        threadpool_free(p);
    }
}

TEST(split_partitions) {
    for (int64_t n = 0; n < 50; n++) {
        for (int nth = 1; nth <= 7; nth++) {
            int64_t next = 0;
            for (int ith = 0; ith < nth; ith++) {
                int64_t b, e;
                threadpool_split(n, ith, nth, &b, &e);
                CHECK(b == next && e >= b && e - b <= n / nth + 1);
                next = e;
            }
            CHECK(next == n);
        }
    }
}

TEST(bad_pool_size) {
    threadpool *p;
    hearth_error err;
    CHECK(threadpool_create(0, &p, &err) == HEARTH_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "thread count 0") != NULL);
}

TEST(error_prefix_fits) {
    hearth_error err;
    char long_msg[600];
    memset(long_msg, 'x', sizeof long_msg - 1);
    long_msg[sizeof long_msg - 1] = '\0';
    error_set(&err, HEARTH_ERR_IO, "%s", long_msg);
    CHECK(strlen(err.msg) == sizeof err.msg - 1);
    CHECK(error_prefix(&err, HEARTH_ERR_IO, "file.gguf") == HEARTH_ERR_IO);
    CHECK(strncmp(err.msg, "file.gguf: xxx", 14) == 0);
    CHECK(strlen(err.msg) == sizeof err.msg - 1);
    CHECK(!strcmp(hearth_status_name(HEARTH_ERR_BAD_MODEL), "bad model"));
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    RUN(pool_runs_every_part_once);
    RUN(split_partitions);
    RUN(bad_pool_size);
    RUN(error_prefix_fits);
    return test_finish();
}
