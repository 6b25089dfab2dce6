/* cli.h — the hearth command line: subcommands and flag parsing helpers. */
#ifndef HEARTH_CLI_H
#define HEARTH_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "hearth.h"

/* Each subcommand gets argv after its name and returns the exit status. */
int cli_run(int argc, char **argv);
int cli_convert(int argc, char **argv);
int cli_synth(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_agents(int argc, char **argv);

/* Prints "hearth: error: <msg>" to stderr (one line). */
void cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Strict number parsers: the whole string must be a number within
 * [lo, hi]; otherwise they print an error naming flag and return false. */
bool cli_parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out);
bool cli_parse_float(const char *flag, const char *s, double lo, double hi, float *out);
bool cli_parse_u64(const char *flag, const char *s, uint64_t *out);

/* Returns the value after a flag, or prints an error when it is missing. */
const char *cli_value(int argc, char **argv, int *i);

/* ---- memory flags (memflags.c) ---- */

/* Help lines for the flags cli_memory_flag takes. */
#define CLI_MEMORY_USAGE                                                                           \
    "      --no-mmap           read the model into memory instead of mapping it read-only\n"       \
    "      --no-repack         keep Q4_0/Q8_0 rows as stored (--no-mmap repacks them)\n"           \
    "      --mlock             pin weights, KV cache and scratch in RAM (checks RLIMIT_MEMLOCK\n"  \
    "                          first; implies --prefault)\n"                                       \
    "      --prefault          touch every page of the model and context at startup\n"             \
    "      --memory-budget SIZE  most memory the model, KV cache and scratch may take, e.g.\n"     \
    "                          20G or 512M (K, M, G, T are powers of 1024) or 'unlimited';\n"      \
    "                          refused before loading when over it (default 90% of physical "      \
    "RAM)\n"                                                                                       \
    "      --compute-type auto|f32|f16|bf16|file  type unquantized weight matrices are cast to\n"  \
    "                          at load; auto: bf16 with AVX512_BF16, f16 with F16C, else f32\n"    \
    "                          (default file: as stored)\n"                                        \
    "      --device auto|cpu|cuda  where the model runs (default auto: the GPU if any)\n"

/* Parses a size such as "20G", "512M", "1.5G", "4096" (bytes) or
 * "unlimited" (HEARTH_BUDGET_UNLIMITED); prints an error naming flag and
 * returns false when it is not one. */
bool cli_parse_size(const char *flag, const char *s, uint64_t *out);
/* When argv[*i] is one of the memory flags (--no-mmap, --mlock,
 * --prefault, --memory-budget, --compute-type) sets *matched, applies it
 * to mp (taking its value) and returns 0, or 2 after an error line for a
 * bad value; otherwise clears *matched. */
int cli_memory_flag(int argc, char **argv, int *i, hearth_model_params *mp, bool *matched);

/* One updating progress line on stderr while a large model loads; silent
 * unless stderr is a terminal.  Pass cli_progress_fn and the struct as
 * hearth_model_params.progress and progress_arg. */
typedef struct cli_progress {
    bool enabled, shown, line_open;
    const char *phase;
    int last_pct;
    double t0;
} cli_progress;
void cli_progress_init(cli_progress *p);
void cli_progress_fn(const char *phase, uint64_t done, uint64_t total, void *arg);
/* Ends the line and states the load time, when anything was shown. */
void cli_progress_done(cli_progress *p);

#endif
