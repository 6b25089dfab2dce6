/* synth.c — `hearth synth`: write a random-weight model of a real shape. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "convert/synth.h"

static const char synth_usage[] =
    "usage: hearth synth (--preset NAME | --arch A --layers N --dim D --heads H [options])\n"
    "                    [--type T] OUT.gguf\n"
    "\n"
    "Writes a GGUF model with random weights and the shape asked for, for benchmarks.\n"
    "\n"
    "presets:\n"
    "  qwen3-30b-a3b    qwen3moe, 48 layers, dim 2048, 32/4 heads of 128, 128 experts (8 used)\n"
    "                   of 768, vocab 151936\n"
    "  qwen3moe-d1024   qwen3moe, 12 layers, dim 1024, 16/4 heads of 64, 128 experts (8 used)\n"
    "                   of 384, vocab 151936\n"
    "  qwen3-0.6b       qwen3, 28 layers, dim 1024, 16/8 heads of 128, ffn 3072, vocab 151936\n"
    "  llama-d512       llama, 8 layers, dim 512, 8/4 heads of 64, ffn 1536, vocab 32000\n"
    "\n"
    "options (override the preset):\n"
    "  --type T          weight type: f32, f16, bf16, q8_0, q6_k, q5_k, q4_k, q4_0\n"
    "                    (default q4_0; K-quants need widths that are multiples of 256)\n"
    "  --arch A          llama, qwen3 or qwen3moe\n"
    "  --layers N, --dim D, --heads H, --kv-heads K, --head-dim S, --ffn F,\n"
    "  --experts E, --experts-used K, --expert-ffn F, --vocab V, --ctx N\n"
    "  -h, --help        show this help\n";

static void progress_bar(double done, void *arg) {
    (void)arg;
    fprintf(stderr, "\rwriting %3.0f%%", done * 100.0);
    if (done >= 1.0) fputc('\n', stderr);
    fflush(stderr);
}

int cli_synth(int argc, char **argv) {
    synth_params p;
    memset(&p, 0, sizeof p);
    p.type = HEARTH_DTYPE_Q4_0;
    p.n_ctx = 4096;
    p.rope_base = 10000.0f;
    const char *out = NULL;
    hearth_error err = {HEARTH_OK, ""};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v;
        long long ll;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(synth_usage, stdout);
            return 0;
        }
        if (a[0] != '-') {
            if (out) {
                cli_error("synth takes one output file");
                return 2;
            }
            out = a;
            continue;
        }
        if (!(v = cli_value(argc, argv, &i))) return 2;
        if (!strcmp(a, "--preset")) {
            uint32_t type = p.type;
            if (synth_preset(v, &p, &err) != HEARTH_OK) {
                cli_error("%s", err.msg);
                return 2;
            }
            p.type = type;
        } else if (!strcmp(a, "--type")) {
            const struct {
                const char *n;
                uint32_t t;
            } types[] = {{"f32", HEARTH_DTYPE_F32},   {"f16", HEARTH_DTYPE_F16},
                         {"bf16", HEARTH_DTYPE_BF16}, {"q8_0", HEARTH_DTYPE_Q8_0},
                         {"q4_0", HEARTH_DTYPE_Q4_0}, {"q6_k", HEARTH_DTYPE_Q6_K},
                         {"q5_k", HEARTH_DTYPE_Q5_K}, {"q4_k", HEARTH_DTYPE_Q4_K}};
            bool found = false;
            for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
                if (!strcmp(v, types[k].n)) {
                    p.type = types[k].t;
                    found = true;
                }
            }
            if (!found) {
                cli_error("--type expects f32, f16, bf16, q8_0, q6_k, q5_k, q4_k or q4_0, got "
                          "'%s'",
                          v);
                return 2;
            }
        } else if (!strcmp(a, "--arch")) {
            if (strcmp(v, "llama") && strcmp(v, "qwen3") && strcmp(v, "qwen3moe")) {
                cli_error("--arch expects llama, qwen3 or qwen3moe, got '%s'", v);
                return 2;
            }
            p.arch = v;
            p.qk_norm = strcmp(v, "llama") != 0;
        } else {
            struct {
                const char *flag;
                uint32_t *dst;
            } nums[] = {{"--layers", &p.n_layer},
                        {"--dim", &p.n_embd},
                        {"--heads", &p.n_head},
                        {"--kv-heads", &p.n_head_kv},
                        {"--head-dim", &p.head_dim},
                        {"--ffn", &p.n_ff},
                        {"--experts", &p.n_expert},
                        {"--experts-used", &p.n_expert_used},
                        {"--expert-ffn", &p.n_ff_exp},
                        {"--vocab", &p.n_vocab},
                        {"--ctx", &p.n_ctx}};
            bool found = false;
            for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
                if (strcmp(a, nums[k].flag) != 0) continue;
                if (!cli_parse_int(a, v, 0, 1 << 24, &ll)) return 2;
                *nums[k].dst = (uint32_t)ll;
                found = true;
            }
            if (!found) {
                cli_error("unknown option '%s' for synth (see hearth synth --help)", a);
                return 2;
            }
        }
    }
    if (!out || !p.arch) {
        cli_error("synth needs --preset or --arch, and an output file (see hearth synth --help)");
        return 2;
    }
    if (p.n_head_kv == 0) p.n_head_kv = p.n_head;
    if (p.head_dim == 0 && p.n_head) p.head_dim = p.n_embd / p.n_head;
    if (synth_write(&p, out, isatty(2) ? progress_bar : NULL, NULL, &err) != HEARTH_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    return 0;
}
