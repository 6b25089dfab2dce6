/* convert.c — `hearth convert`: Hugging Face checkpoints to GGUF. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "convert/convert.h"
#include "util/dtype.h"

static const char convert_usage[] =
    "usage: hearth convert DIR OUT.gguf [--type f32|f16|bf16]\n"
    "       hearth convert --vocab-only TOKENIZER.json [--tokenizer-config CONFIG.json] OUT.gguf\n"
    "\n"
    "Converts a Hugging Face checkpoint directory (config.json, model.safetensors or sharded\n"
    "model-*.safetensors with model.safetensors.index.json, tokenizer.json,\n"
    "tokenizer_config.json) to a GGUF model with llama.cpp's tensor names and keys.\n"
    "Architectures: Llama, Mistral, Mixtral, Qwen2, Qwen3, Qwen2-MoE, Qwen3-MoE.\n"
    "With --vocab-only, writes a GGUF holding only the tokenizer of TOKENIZER.json.\n"
    "\n"
    "options:\n"
    "  --type T                  element type of the weight matrices: f32, f16 or bf16\n"
    "                            (default bf16); norms and biases stay f32\n"
    "  --vocab-only              convert a tokenizer.json alone\n"
    "  --tokenizer-config FILE   tokenizer_config.json for --vocab-only (special tokens,\n"
    "                            chat template)\n"
    "  -h, --help                show this help\n";

/* Draws a progress bar on stderr (only called when stderr is a terminal). */
static void progress_bar(double done, void *arg) {
    (void)arg;
    int width = 40, filled = (int)(done * width + 0.5);
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++) fputc(i < filled ? '#' : ' ', stderr);
    fprintf(stderr, "] %3.0f%%", done * 100.0);
    if (done >= 1.0) fputc('\n', stderr);
    fflush(stderr);
}

int cli_convert(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL};
    int n_pos = 0;
    const char *tcfg = NULL;
    bool vocab_only = false;
    uint32_t type = HEARTH_DTYPE_BF16;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(convert_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--type")) {
            const char *v = cli_value(argc, argv, &i);
            if (!v) return 2;
            if (!strcmp(v, "f32")) {
                type = HEARTH_DTYPE_F32;
            } else if (!strcmp(v, "f16")) {
                type = HEARTH_DTYPE_F16;
            } else if (!strcmp(v, "bf16")) {
                type = HEARTH_DTYPE_BF16;
            } else {
                cli_error("--type expects f32, f16 or bf16, got '%s'", v);
                return 2;
            }
        } else if (!strcmp(a, "--vocab-only")) {
            vocab_only = true;
        } else if (!strcmp(a, "--tokenizer-config")) {
            if (!(tcfg = cli_value(argc, argv, &i))) return 2;
        } else if (a[0] == '-' && a[1] != '\0') {
            cli_error("unknown option '%s' for convert (see hearth convert --help)", a);
            return 2;
        } else if (n_pos < 2) {
            pos[n_pos++] = a;
        } else {
            cli_error("convert takes an input and an output (see hearth convert --help)");
            return 2;
        }
    }
    if (n_pos != 2) {
        cli_error("convert needs an input and an output file (see hearth convert --help)");
        return 2;
    }
    hearth_error err = {HEARTH_OK, ""};
    hearth_status st;
    if (vocab_only) {
        st = convert_hf_tokenizer(pos[0], tcfg, pos[1], &err);
    } else {
        convert_params p = {type, isatty(2) ? progress_bar : NULL, NULL};
        st = convert_hf_dir(pos[0], pos[1], &p, &err);
    }
    if (st != HEARTH_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    return 0;
}
