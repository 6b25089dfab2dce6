/* memflags.c — the memory flags of every command that loads a model.
 *
 * --mlock, --prefault, --memory-budget SIZE and --compute-type TYPE fill a
 * hearth_model_params the same way for run (and, as they adopt them,
 * bench and serve); CLI_MEMORY_USAGE in cli.h documents them.  The load
 * progress printer lives here too: it draws one updating line on stderr
 * while a large model is read, cast, pre-faulted or locked, and only when
 * stderr is a terminal.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

bool cli_parse_size(const char *flag, const char *s, uint64_t *out) {
    if (!strcasecmp(s, "unlimited") || !strcasecmp(s, "none")) {
        *out = HEARTH_BUDGET_UNLIMITED;
        return true;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double scale = 1;
    if (end != s) {
        switch (*end) {
        case 'k':
        case 'K':
            scale = 1024.0;
            end++;
            break;
        case 'm':
        case 'M':
            scale = 1024.0 * 1024;
            end++;
            break;
        case 'g':
        case 'G':
            scale = 1024.0 * 1024 * 1024;
            end++;
            break;
        case 't':
        case 'T':
            scale = 1024.0 * 1024 * 1024 * 1024;
            end++;
            break;
        default: break;
        }
        if (scale > 1 && (!strcmp(end, "iB") || !strcmp(end, "B"))) end += strlen(end);
    }
    double bytes = v * scale;
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || !(bytes >= 1.0) ||
        bytes >= 18446744073709549568.0 /* largest double below 2^64 */) {
        cli_error("%s expects a size such as 20G, 512M or 4096 (bytes; K, M, G, T are powers of "
                  "1024) or 'unlimited', got '%s'",
                  flag, s);
        return false;
    }
    *out = (uint64_t)bytes;
    return true;
}

int cli_memory_flag(int argc, char **argv, int *i, hearth_model_params *mp, bool *matched) {
    const char *a = argv[*i];
    *matched = true;
    if (!strcmp(a, "--mlock")) {
        mp->use_mlock = true;
    } else if (!strcmp(a, "--prefault")) {
        mp->prefault = true;
    } else if (!strcmp(a, "--no-mmap")) {
        mp->use_mmap = false;
    } else if (!strcmp(a, "--no-repack")) {
        mp->no_repack = true;
    } else if (!strcmp(a, "--memory-budget")) {
        const char *v = cli_value(argc, argv, i);
        if (!v || !cli_parse_size(a, v, &mp->memory_budget)) return 2;
    } else if (!strcmp(a, "--device")) {
        const char *v = cli_value(argc, argv, i);
        if (!v) return 2;
        if (!strcmp(v, "auto")) {
            mp->device = HEARTH_DEVICE_AUTO;
        } else if (!strcmp(v, "cpu")) {
            mp->device = HEARTH_DEVICE_CPU;
        } else if (!strcmp(v, "cuda")) {
            mp->device = HEARTH_DEVICE_CUDA;
        } else {
            cli_error("--device expects auto, cpu or cuda, got '%s'", v);
            return 2;
        }
    } else if (!strcmp(a, "--compute-type")) {
        const char *v = cli_value(argc, argv, i);
        if (!v) return 2;
        static const struct {
            const char *name;
            hearth_compute_type type;
        } types[] = {{"auto", HEARTH_COMPUTE_AUTO},
                     {"f32", HEARTH_COMPUTE_F32},
                     {"f16", HEARTH_COMPUTE_F16},
                     {"bf16", HEARTH_COMPUTE_BF16},
                     {"file", HEARTH_COMPUTE_FILE}};
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            if (!strcmp(v, types[k].name)) {
                mp->compute_type = types[k].type;
                return 0;
            }
        }
        cli_error("--compute-type expects auto, f32, f16, bf16 or file, got '%s'", v);
        return 2;
    } else {
        *matched = false;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress_init(cli_progress *p) {
    memset(p, 0, sizeof *p);
    p->enabled = isatty(2) == 1;
    p->t0 = now_s();
    p->last_pct = -1;
}

void cli_progress_fn(const char *phase, uint64_t done, uint64_t total, void *arg) {
    cli_progress *p = arg;
    /* Small steps finish before anyone could read a percentage. */
    if (!p->enabled || total < ((uint64_t)64 << 20)) return;
    int pct = (int)(done * 100 / total);
    if (phase == p->phase && pct == p->last_pct) return;
    if (phase != p->phase && p->line_open) fputc('\n', stderr);
    p->phase = phase;
    p->last_pct = pct;
    fprintf(stderr, "\rhearth: %s %3d%% (%.2f of %.2f GiB, %.1f s)", phase, pct,
            (double)done / (1u << 30), (double)total / (1u << 30), now_s() - p->t0);
    p->line_open = done < total;
    if (!p->line_open) fputc('\n', stderr);
    p->shown = true;
    fflush(stderr);
}

void cli_progress_done(cli_progress *p) {
    if (!p->shown) return;
    if (p->line_open) fputc('\n', stderr);
    fprintf(stderr, "hearth: model loaded in %.1f s\n", now_s() - p->t0);
    p->line_open = false;
}
