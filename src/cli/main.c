/* main.c — the hearth executable: dispatches to a subcommand. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "hearth.h"

static const char usage[] =
    "usage: hearth <command> [options]\n"
    "\n"
    "hearth " HEARTH_VERSION " — a local-first LLM inference engine.\n"
    "\n"
    "commands:\n"
    "  run      generate text from a GGUF model (hearth run --help)\n"
    "  serve    serve a model over an OpenAI-compatible HTTP API (hearth serve --help)\n"
    "  agents   list, run and follow the agents of a running server (hearth agents --help)\n"
    "  convert  convert a Hugging Face checkpoint to GGUF (hearth convert --help)\n"
    "  synth    write a random-weight model of a real shape (hearth synth --help)\n"
    "  bench    measure prompt and generation speed (hearth bench --help)\n"
    "  eval     perplexity and KL divergence against a reference (hearth eval --help)\n"
    "  quantize quantize an F32/F16/BF16 model (hearth quantize --help)\n"
    "\n"
    "options:\n"
    "  -h, --help      show this help\n"
    "  --version       print the version\n";

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("hearth: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

bool cli_parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        cli_error("%s expects an integer from %lld to %lld, got '%s'", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_float(const char *flag, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || isnan(v) || v < lo || v > hi) {
        cli_error("%s expects a number from %g to %g, got '%s'", flag, lo, hi, s);
        return false;
    }
    *out = (float)v;
    return true;
}

bool cli_parse_u64(const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (s[0] == '-') {
        cli_error("%s expects a non-negative integer, got '%s'", flag, s);
        return false;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        cli_error("%s expects a non-negative integer, got '%s'", flag, s);
        return false;
    }
    *out = v;
    return true;
}

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_error("%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        puts("hearth " HEARTH_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "run")) return cli_run(argc - 2, argv + 2);
    if (!strcmp(cmd, "serve")) return cli_serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "agents")) return cli_agents(argc - 2, argv + 2);
    if (!strcmp(cmd, "convert")) return cli_convert(argc - 2, argv + 2);
    if (!strcmp(cmd, "synth")) return cli_synth(argc - 2, argv + 2);
    if (!strcmp(cmd, "bench")) return cli_bench(argc - 2, argv + 2);
    if (!strcmp(cmd, "eval")) return cli_eval(argc - 2, argv + 2);
    if (!strcmp(cmd, "quantize")) return cli_quantize(argc - 2, argv + 2);
    cli_error("unknown command '%s' (see hearth --help)", cmd);
    return 2;
}
