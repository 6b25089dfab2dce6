/* quantize.c — `hearth quantize`: an F32/F16/BF16 GGUF model to Q8_0, Q4_0,
 * the K-quants or llama.cpp's Q4_K_M / Q5_K_M mixes. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "convert/quantize.h"
#include "util/dtype.h"

static void print_usage(FILE *out) {
    fputs("usage: hearth quantize IN.gguf OUT.gguf TYPE [-t N]\n"
          "\n"
          "Quantizes the weight matrices of an F32, F16 or BF16 GGUF model.  Which tensor gets\n"
          "which type follows llama-quantize (without an importance matrix), and the bytes are\n"
          "the ones it writes: vectors, norms and expert routers stay as they are, and a matrix\n"
          "whose rows are not whole blocks of its type falls back (Q4_K -> Q5_0, Q5_K -> Q5_1,\n"
          "Q6_K -> Q8_0, else F16) with a note.  All metadata is copied; general.file_type is\n"
          "set as llama.cpp numbers it.\n"
          "\n"
          "types:\n",
          out);
    size_t n;
    const quant_scheme *s = quant_scheme_list(&n);
    for (size_t i = 0; i < n; i++) fprintf(out, "  %-8s %s\n", s[i].name, s[i].about);
    fputs("  (llama-quantize's Q4_K and Q5_K mean Q4_K_M and Q5_K_M; here they mean every\n"
          "  matrix in that type)\n"
          "\n"
          "options:\n"
          "  -t, --threads N   threads (default: one per CPU)\n"
          "  -h, --help        show this help\n",
          out);
}

typedef struct progress_state {
    bool tty;       /* draw the progress line */
    bool line_open; /* a progress line is on screen */
    int last_pct;
    const char *last_name;
} progress_state;

static void on_progress(uint64_t done, uint64_t total, const char *name, void *arg) {
    progress_state *ps = arg;
    if (!ps->tty) return;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (name && pct == ps->last_pct && ps->last_name && !strcmp(name, ps->last_name)) return;
    ps->last_pct = pct;
    ps->last_name = name;
    fprintf(stderr, "\r\033[Khearth: quantizing %3d%% %s", pct, name ? name : "");
    ps->line_open = name != NULL;
    if (!name) fputc('\n', stderr);
    fflush(stderr);
}

static void on_message(const char *msg, void *arg) {
    progress_state *ps = arg;
    if (ps->line_open) fputc('\n', stderr);
    ps->line_open = false;
    fprintf(stderr, "hearth: note: %s\n", msg);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cli_quantize(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0;
    long long threads = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            print_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            const char *v = cli_value(argc, argv, &i);
            if (!v || !cli_parse_int(a, v, 1, 1024, &threads)) return 2;
        } else if (a[0] == '-' && a[1] != '\0') {
            cli_error("unknown option '%s' for quantize (see hearth quantize --help)", a);
            return 2;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            cli_error("quantize takes IN.gguf OUT.gguf TYPE (see hearth quantize --help)");
            return 2;
        }
    }
    if (n_pos != 3) {
        cli_error("quantize needs IN.gguf OUT.gguf TYPE (see hearth quantize --help)");
        return 2;
    }
    const quant_scheme *scheme = quant_scheme_find(pos[2]);
    if (!scheme) {
        size_t n;
        const quant_scheme *s = quant_scheme_list(&n);
        char list[256] = "";
        for (size_t i = 0; i < n; i++) {
            strncat(list, s[i].name, sizeof list - strlen(list) - 1);
            if (i + 1 < n) strncat(list, ", ", sizeof list - strlen(list) - 1);
        }
        cli_error("unknown quantization type '%s' (one of %s)", pos[2], list);
        return 2;
    }
    if (!strcmp(pos[0], pos[1])) {
        cli_error("quantize would overwrite its input '%s'", pos[0]);
        return 2;
    }
    progress_state ps = {isatty(2) == 1, false, -1, NULL};
    quantize_params p = {scheme, (int)threads, on_progress, on_message, &ps};
    quantize_report rep;
    hearth_error err = {HEARTH_OK, ""};
    double t0 = now_s();
    if (quantize_file(pos[0], pos[1], &p, &rep, &err) != HEARTH_OK) {
        if (ps.line_open) fputc('\n', stderr);
        cli_error("%s", err.msg);
        return 1;
    }
    char types[512] = "";
    for (uint32_t t = 0; t < HEARTH_DTYPE_COUNT; t++) {
        if (!rep.n_by_type[t]) continue;
        size_t len = strlen(types);
        snprintf(types + len, sizeof types - len, "%s%s %llu", len ? ", " : "",
                 hearth_dtype_name(t), (unsigned long long)rep.n_by_type[t]);
    }
    fprintf(stderr,
            "hearth: wrote %s (%s) in %.1f s: %llu tensors (%llu converted, %llu at a fallback "
            "type), %.2f MiB -> %.2f MiB; %s\n",
            pos[1], scheme->name, now_s() - t0, (unsigned long long)rep.n_tensors,
            (unsigned long long)rep.n_converted, (unsigned long long)rep.n_fallback,
            (double)rep.bytes_in / (1 << 20), (double)rep.bytes_out / (1 << 20), types);
    return 0;
}
