/* eval.c — `hearth eval`: what a quantization costs, measured.
 *
 * Perplexity of a model on a text and, against a reference model (say the
 * F32 or F16 file the quantized one came from), the KL divergence of the
 * next-token distributions per token (mean and 99th percentile), how often
 * both pick the same top token, and the largest logit difference.  Like
 * llama-perplexity, the text is cut into chunks of the context size and the
 * second half of each chunk is scored, so every scored token has at least
 * half a context of history, and each chunk starts with BOS.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "hearth.h"

static const char eval_usage[] =
    "usage: hearth eval -m MODEL -f TEXT [--ref MODEL] [-c CTX] [-t N] [--json]\n"
    "\n"
    "Measures perplexity of MODEL on the text file TEXT; with --ref, also the KL divergence\n"
    "of MODEL's next-token distributions from the reference model's (mean and 99th\n"
    "percentile), top-1 agreement and the largest logit difference.  The text is cut into\n"
    "chunks of CTX tokens and the second half of each chunk is scored.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE   the model to evaluate\n"
    "  -f, --file FILE    the text\n"
    "      --ref FILE     reference model (same vocabulary)\n"
    "  -c, --ctx N        chunk size in tokens (default 128)\n"
    "  -t, --threads N    threads (default: one per core)\n"
    "      --json         print the results as JSON\n"
    "  -h, --help         show this help\n";

typedef struct eval_run {
    hearth_model *model;
    hearth_context *ctx;
} eval_run;

static hearth_status eval_open(const char *path, uint32_t n_ctx, int threads, eval_run *r,
                               hearth_error *err) {
    memset(r, 0, sizeof *r);
    hearth_status st = hearth_model_load(path, NULL, &r->model, err);
    if (st != HEARTH_OK) return st;
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_ctx;
    cp.n_threads = threads;
    cp.kv_type = HEARTH_KV_F32; /* measure the weights, not the cache rounding */
    return hearth_context_create(r->model, &cp, &r->ctx, err);
}

static void eval_close(eval_run *r) {
    hearth_context_free(r->ctx);
    hearth_model_free(r->model);
}

/* Runs one chunk with logits for every position. */
static hearth_status eval_chunk(eval_run *r, const hearth_token *ids, uint32_t n, int32_t *pos,
                                int32_t *seq, bool *want, hearth_error *err) {
    hearth_kv_truncate(r->ctx, 0, 0);
    for (uint32_t i = 0; i < n; i++) {
        pos[i] = (int32_t)i;
        seq[i] = 0;
        want[i] = true;
    }
    hearth_batch b = {n, ids, pos, seq, want};
    return hearth_decode(r->ctx, &b, err);
}

/* log-softmax of x (n) into out; returns nothing. */
static void log_softmax(const float *x, double *out, int32_t n) {
    double max = x[0];
    for (int32_t i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)x[i] - max);
    double lse = max + log(sum);
    for (int32_t i = 0; i < n; i++) out[i] = (double)x[i] - lse;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int argmax(const float *x, int32_t n) {
    int best = 0;
    for (int32_t i = 1; i < n; i++) best = x[i] > x[best] ? i : best;
    return best;
}

int cli_eval(int argc, char **argv) {
    const char *model_path = NULL, *ref_path = NULL, *text_path = NULL;
    long long n_ctx = 128, threads = 0;
    bool json = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(eval_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--ref")) {
            if (!(ref_path = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(text_path = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(a, v, 8, 1 << 16, &n_ctx))
                return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(a, v, 1, 1024, &threads))
                return 2;
        } else {
            cli_error("unknown option '%s' for eval (see hearth eval --help)", a);
            return 2;
        }
    }
    if (!model_path || !text_path) {
        cli_error("eval needs a model and a text: -m MODEL -f TEXT");
        return 2;
    }
    FILE *fp = fopen(text_path, "rb");
    if (!fp) {
        cli_error("cannot open text file '%s'", text_path);
        return 1;
    }
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *text = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (!text || fread(text, 1, (size_t)size, fp) != (size_t)size) {
        fclose(fp);
        free(text);
        cli_error("cannot read text file '%s'", text_path);
        return 1;
    }
    fclose(fp);

    hearth_error err = {HEARTH_OK, ""};
    eval_run run, ref;
    memset(&ref, 0, sizeof ref);
    hearth_token *ids = NULL;
    int32_t *pos = NULL, *seq = NULL;
    bool *want = NULL;
    double *lp = NULL, *lq = NULL, *klds = NULL;
    float *ref_logits = NULL;
    int rc = 1;
    int n_threads = (int)threads;
    if (eval_open(model_path, (uint32_t)n_ctx, n_threads, &run, &err) != HEARTH_OK ||
        (ref_path && eval_open(ref_path, (uint32_t)n_ctx, n_threads, &ref, &err) != HEARTH_OK)) {
        cli_error("%s", err.msg);
        goto out;
    }
    int32_t n_vocab = hearth_model_n_vocab(run.model);
    if (ref_path && hearth_model_n_vocab(ref.model) != n_vocab) {
        cli_error("the reference has %d tokens in its vocabulary, the model %d",
                  hearth_model_n_vocab(ref.model), n_vocab);
        goto out;
    }
    const hearth_tokenizer *tok = hearth_model_tokenizer(run.model);
    size_t n_ids = 0;
    hearth_status st = hearth_tokenize(tok, text, (size_t)size, HEARTH_TOKENIZE_ADD_SPECIAL, NULL,
                                       0, &n_ids, &err);
    if (st == HEARTH_ERR_BUFFER_TOO_SMALL) {
        ids = malloc(n_ids * sizeof *ids);
        st = ids ? hearth_tokenize(tok, text, (size_t)size, HEARTH_TOKENIZE_ADD_SPECIAL, ids, n_ids,
                                   &n_ids, &err)
                 : HEARTH_ERR_NOMEM;
    }
    if (st != HEARTH_OK) {
        cli_error("cannot tokenize the text: %s", err.msg);
        goto out;
    }
    size_t n_chunks = n_ids / (size_t)n_ctx;
    if (n_chunks == 0) {
        cli_error("the text is %zu tokens, shorter than one chunk of %lld", n_ids, n_ctx);
        goto out;
    }
    pos = malloc((size_t)n_ctx * sizeof *pos);
    seq = malloc((size_t)n_ctx * sizeof *seq);
    want = malloc((size_t)n_ctx * sizeof *want);
    lp = malloc((size_t)n_vocab * sizeof *lp);
    lq = malloc((size_t)n_vocab * sizeof *lq);
    klds = malloc(n_chunks * (size_t)n_ctx * sizeof *klds);
    ref_logits = ref_path ? malloc((size_t)n_ctx * (size_t)n_vocab * sizeof *ref_logits) : NULL;
    if (!pos || !seq || !want || !lp || !lq || !klds || (ref_path && !ref_logits)) {
        cli_error("out of memory");
        goto out;
    }
    double nll = 0, ref_nll = 0, max_drift = 0;
    size_t scored = 0, agree = 0;
    uint32_t first = (uint32_t)n_ctx / 2;
    hearth_token bos = hearth_tokenizer_bos(tok);
    for (size_t c = 0; c < n_chunks; c++) {
        hearth_token *chunk = ids + c * (size_t)n_ctx;
        /* Each chunk starts like a document, with BOS (as llama-perplexity
         * does); the token it replaces is never a scored target. */
        if (bos >= 0) chunk[0] = bos;
        if (ref_path) {
            if (eval_chunk(&ref, chunk, (uint32_t)n_ctx, pos, seq, want, &err) != HEARTH_OK) {
                cli_error("%s", err.msg);
                goto out;
            }
            for (uint32_t i = 0; i < (uint32_t)n_ctx; i++) {
                memcpy(ref_logits + (size_t)i * n_vocab, hearth_get_logits(ref.ctx, i),
                       (size_t)n_vocab * sizeof(float));
            }
        }
        if (eval_chunk(&run, chunk, (uint32_t)n_ctx, pos, seq, want, &err) != HEARTH_OK) {
            cli_error("%s", err.msg);
            goto out;
        }
        for (uint32_t i = first; i + 1 < (uint32_t)n_ctx; i++) {
            const float *l = hearth_get_logits(run.ctx, i);
            log_softmax(l, lq, n_vocab);
            nll -= lq[chunk[i + 1]];
            if (ref_path) {
                const float *r = ref_logits + (size_t)i * n_vocab;
                log_softmax(r, lp, n_vocab);
                ref_nll -= lp[chunk[i + 1]];
                double kld = 0;
                for (int32_t v = 0; v < n_vocab; v++) {
                    kld += exp(lp[v]) * (lp[v] - lq[v]);
                    double d = fabs((double)l[v] - r[v]);
                    max_drift = d > max_drift ? d : max_drift;
                }
                klds[scored] = kld < 0 ? 0 : kld;
                agree += argmax(l, n_vocab) == argmax(r, n_vocab);
            }
            scored++;
        }
    }
    double ppl = exp(nll / (double)scored), ref_ppl = exp(ref_nll / (double)scored);
    double kld_mean = 0, kld_p99 = 0;
    if (ref_path) {
        for (size_t i = 0; i < scored; i++) kld_mean += klds[i];
        kld_mean /= (double)scored;
        qsort(klds, scored, sizeof *klds, cmp_double);
        kld_p99 = klds[(size_t)((double)(scored - 1) * 0.99)];
    }
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(model_path));
        json_object_set_new(o, "tokens_scored", json_integer((json_int_t)scored));
        json_object_set_new(o, "chunk", json_integer(n_ctx));
        json_object_set_new(o, "perplexity", json_real(ppl));
        if (ref_path) {
            json_object_set_new(o, "reference", json_string(ref_path));
            json_object_set_new(o, "reference_perplexity", json_real(ref_ppl));
            json_object_set_new(o, "kld_mean", json_real(kld_mean));
            json_object_set_new(o, "kld_p99", json_real(kld_p99));
            json_object_set_new(o, "top1_agreement", json_real((double)agree / (double)scored));
            json_object_set_new(o, "max_logit_drift", json_real(max_drift));
        }
        char *s = json_dumps(o, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("model: %s (%s)\n", model_path, hearth_model_desc(run.model));
        printf("%zu tokens scored in %zu chunks of %lld\n", scored, n_chunks, n_ctx);
        printf("| metric            | value      |\n| ----------------- | ---------- |\n");
        printf("| perplexity        | %10.4f |\n", ppl);
        if (ref_path) {
            printf("| ref perplexity    | %10.4f |\n", ref_ppl);
            printf("| KLD mean          | %10.6f |\n", kld_mean);
            printf("| KLD p99           | %10.6f |\n", kld_p99);
            printf("| top-1 agreement   | %9.2f%% |\n", 100.0 * (double)agree / (double)scored);
            printf("| max logit drift   | %10.4f |\n", max_drift);
        }
    }
    rc = 0;
out:
    free(text);
    free(ids);
    free(pos);
    free(seq);
    free(want);
    free(lp);
    free(lq);
    free(klds);
    free(ref_logits);
    eval_close(&run);
    eval_close(&ref);
    return rc;
}
