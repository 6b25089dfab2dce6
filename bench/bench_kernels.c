/* bench_kernels.c — matrix-vector speed of each weight type, in GB/s.
 *
 * Decoding one token reads every weight once, so a kernel's worth is how
 * close its matrix-vector product comes to the machine's memory bandwidth.
 * This program measures that bandwidth (a plain read of a large buffer,
 * threaded) and then, for each weight type, the bytes of weights per
 * second a matvec achieves on a matrix too large for the caches.
 *
 * usage: bench_kernels [-t THREADS] [-r ROWS] [-c COLS] [-n REPEATS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "util/dtype.h"
#include "util/threadpool.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct read_job {
    const uint64_t *buf;
    int64_t n;
    uint64_t sums[64];
} read_job;

static void read_worker(void *arg, int ith, int nth) {
    read_job *j = arg;
    int64_t b, e;
    threadpool_split(j->n, ith, nth, &b, &e);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int64_t i = b; i + 3 < e; i += 4) {
        s0 += j->buf[i];
        s1 += j->buf[i + 1];
        s2 += j->buf[i + 2];
        s3 += j->buf[i + 3];
    }
    j->sums[ith % 64] = s0 + s1 + s2 + s3;
}

typedef struct matvec_job {
    const kernel_traits *kt;
    const uint8_t *w;
    uint64_t row_bytes;
    int64_t rows, cols;
    const void *act;
    float *y;
} matvec_job;

static void matvec_worker(void *arg, int ith, int nth) {
    matvec_job *j = arg;
    int64_t b, e;
    threadpool_split(j->rows, ith, nth, &b, &e);
    for (int64_t r = b; r < e; r++)
        j->y[r] = j->kt->vec_dot(j->cols, j->w + r * j->row_bytes, j->act);
}

int main(int argc, char **argv) {
    int threads = threadpool_n_cpus();
    int64_t rows = 8192, cols = 4096;
    int repeats = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "-r")) rows = atoll(argv[i + 1]);
        if (!strcmp(argv[i], "-c")) cols = atoll(argv[i + 1]);
        if (!strcmp(argv[i], "-n")) repeats = atoi(argv[i + 1]);
    }
    if (threads < 1 || rows < 1 || cols < 256 || cols % 256 || repeats < 1) {
        fprintf(stderr, "usage: bench_kernels [-t THREADS] [-r ROWS] [-c COLS (multiple of 256)] "
                        "[-n REPEATS]\n");
        return 2;
    }
    threadpool *pool;
    hearth_error err;
    if (threadpool_create(threads, &pool, &err) != HEARTH_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }

    /* Bandwidth: read 1 GiB, best of repeats. */
    int64_t n_words = (1ll << 30) / 8;
    uint64_t *buf = malloc((size_t)n_words * 8);
    if (!buf) return 1;
    for (int64_t i = 0; i < n_words; i++) buf[i] = (uint64_t)i;
    read_job rj = {buf, n_words, {0}};
    double best = 1e9;
    for (int r = 0; r < repeats; r++) {
        double t = now_s();
        threadpool_run(pool, read_worker, &rj);
        t = now_s() - t;
        if (t < best) best = t;
    }
    double bw = (double)n_words * 8 / best / 1e9;
    free(buf);
    printf("threads %d, memory read bandwidth %.1f GB/s\n", threads, bw);
    printf("%-6s %10s %10s %9s %8s\n", "type", "MB", "ms/matvec", "GB/s", "of peak");

    uint32_t types[] = {HEARTH_DTYPE_F32,  HEARTH_DTYPE_F16,  HEARTH_DTYPE_BF16, HEARTH_DTYPE_Q8_0,
                        HEARTH_DTYPE_Q4_0, HEARTH_DTYPE_Q6_K, HEARTH_DTYPE_Q5_K, HEARTH_DTYPE_Q4_K};
    float *x = malloc((size_t)cols * sizeof *x);
    float *y = malloc((size_t)rows * sizeof *y);
    float *row = malloc((size_t)cols * sizeof *row);
    void *act = malloc((size_t)cols * 4 + 1024);
    if (!x || !y || !row || !act) return 1;
    for (int64_t i = 0; i < cols; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const kernel_traits *kt = kernel_traits_get(types[t]);
        const kernel_traits *ka = kt ? kernel_traits_get(kt->act_type) : NULL;
        if (!kt || !ka || !kt->vec_dot) continue;
        uint64_t row_bytes = dtype_row_bytes(types[t], (uint64_t)cols);
        uint8_t *w = malloc((size_t)(row_bytes * (uint64_t)rows));
        if (!w) return 1;
        /* Weights: the same random-looking row quantized per type (fills memory). */
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < cols; i++)
                row[i] = (float)(((r + 1) * (i + 3)) % 997) / 997.0f - 0.5f;
            const kernel_traits *kq = kernel_traits_get(types[t]);
            if (types[t] == HEARTH_DTYPE_Q4_0) {
                quantize_row_q4_0_ref(row, w + r * row_bytes, cols);
            } else if (kq->act_type == types[t]) {
                kq->quantize_act(row, w + r * row_bytes, cols);
            } else {
                memset(w + r * row_bytes, 0x11, row_bytes);
            }
        }
        ka->quantize_act(x, act, cols);
        matvec_job j = {kt, w, row_bytes, rows, cols, act, y};
        double tb = 1e9;
        for (int r = 0; r < repeats; r++) {
            double t0 = now_s();
            threadpool_run(pool, matvec_worker, &j);
            double dt = now_s() - t0;
            if (dt < tb) tb = dt;
        }
        double gbs = (double)(row_bytes * (uint64_t)rows) / tb / 1e9;
        printf("%-6s %10.1f %10.3f %9.2f %7.0f%%\n", hearth_dtype_name(types[t]),
               (double)(row_bytes * (uint64_t)rows) / 1e6, tb * 1e3, gbs, 100.0 * gbs / bw);
        free(w);
    }
    free(x);
    free(y);
    free(row);
    free(act);
    threadpool_free(pool);
    return 0;
}
