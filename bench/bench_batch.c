/* bench_batch.c — decode steps of several sequences as one batch.
 *
 * Loads MODEL, fills N sequences with a short prompt each, then times
 * decode steps that carry one token of each of n sequences (every token
 * with logits, as the scheduler's decode steps do) for n = 1, 2, 4, 8, 12
 * and 16: milliseconds a step and tokens a second over all n sequences.
 * The logits are only copied out, not sampled, so this is the engine's
 * share of a step of `hearth serve --parallel n`.
 *
 * usage: bench_batch -m MODEL [--device cpu|cuda] [-s STEPS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hearth.h"

#define MAX_SEQ 16
#define PROMPT  16

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *path = NULL, *dev = "auto";
    int steps = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m"))
            path = argv[i + 1];
        else if (!strcmp(argv[i], "--device"))
            dev = argv[i + 1];
        else if (!strcmp(argv[i], "-s"))
            steps = atoi(argv[i + 1]);
    }
    if (!path || steps < 1 || steps > 900) {
        fprintf(stderr, "usage: bench_batch -m MODEL [--device cpu|cuda] [-s STEPS (1..900)]\n");
        return 2;
    }
    hearth_model_params mp = hearth_model_default_params();
    mp.device = !strcmp(dev, "cuda")  ? HEARTH_DEVICE_CUDA
                : !strcmp(dev, "cpu") ? HEARTH_DEVICE_CPU
                                      : HEARTH_DEVICE_AUTO;
    hearth_model *m = NULL;
    hearth_context *c = NULL;
    hearth_error err = {HEARTH_OK, ""};
    if (hearth_model_load(path, &mp, &m, &err) != HEARTH_OK) {
        fprintf(stderr, "bench_batch: %s\n", err.msg);
        return 1;
    }
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = 1024;
    cp.n_seq = MAX_SEQ;
    cp.n_batch = PROMPT > MAX_SEQ ? PROMPT : MAX_SEQ;
    cp.n_outputs = MAX_SEQ;
    if (hearth_context_create(m, &cp, &c, &err) != HEARTH_OK) {
        fprintf(stderr, "bench_batch: %s\n", err.msg);
        hearth_model_free(m);
        return 1;
    }
    const int32_t nv = hearth_model_n_vocab(m);
    hearth_token tok[PROMPT];
    int32_t pos[PROMPT], seq[PROMPT];
    bool want[MAX_SEQ];
    int32_t next_pos[MAX_SEQ];
    int rc = 0;
    for (int s = 0; s < MAX_SEQ && rc == 0; s++) {
        for (int i = 0; i < PROMPT; i++) {
            tok[i] = (hearth_token)((31 * i + 17 * s + 1) % nv);
            pos[i] = i;
            seq[i] = s;
        }
        hearth_batch b = {PROMPT, tok, pos, seq, NULL};
        if (hearth_decode(c, &b, &err) != HEARTH_OK) rc = 1;
        next_pos[s] = PROMPT;
    }
    printf("| streams | ms/step | tok/s (all streams) |\n| ------- | ------- | ------------------- "
           "|\n");
    static const int ns[] = {1, 2, 4, 8, 12, 16};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0] && rc == 0; k++) {
        const int n = ns[k];
        double t0 = 0;
        for (int st = -2; st < steps && rc == 0; st++) { /* two untimed: warm-up, graph */
            if (st == 0) t0 = now_s();
            for (int i = 0; i < n; i++) {
                tok[i] = (hearth_token)((7 * (st + 2) + 13 * i + 3) % nv);
                seq[i] = i;
                pos[i] = next_pos[i]++;
                want[i] = true;
            }
            hearth_batch b = {(uint32_t)n, tok, pos, seq, want};
            if (hearth_decode(c, &b, &err) != HEARTH_OK) rc = 1;
        }
        const double dt = (now_s() - t0) / steps;
        if (rc == 0) printf("| %7d | %7.3f | %19.1f |\n", n, dt * 1e3, n / dt);
    }
    if (rc) fprintf(stderr, "bench_batch: %s\n", err.msg);
    hearth_context_free(c);
    hearth_model_free(m);
    return rc;
}
