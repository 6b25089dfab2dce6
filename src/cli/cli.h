/* cli.h — the hearth command line: subcommands and flag parsing helpers. */
#ifndef HEARTH_CLI_H
#define HEARTH_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* Each subcommand gets argv after its name and returns the exit status. */
int cli_run(int argc, char **argv);
int cli_convert(int argc, char **argv);
int cli_synth(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_eval(int argc, char **argv);

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

#endif
