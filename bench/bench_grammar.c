/* bench_grammar.c — what a grammar mask costs per token on a real vocabulary.
 *
 * Builds the vocabulary trie of a tokenizer (a model or vocab-only GGUF;
 * default: Qwen3's 151,669 tokens converted from
 * $HEARTH_SHARED/vocab/qwen3-tokenizer.json), then for a few JSON schemas
 * and a GBNF grammar generates with random logits — the token with the
 * highest logit among those allowed, so the walk goes everywhere the
 * grammar lets it — and times hearth_grammar_apply for every token:
 * mean, median, 99th percentile and worst, plus the first mask of a fresh
 * grammar (nothing cached) and a sampler draw over the masked logits.
 *
 * usage: bench_grammar [-v VOCAB.gguf] [-n TOKENS] [-r RUNS]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "convert/convert.h"
#include "hearth.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float rnd_logit(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng % 100000) / 1000.0f;
}

typedef struct workload {
    const char *name;
    const char *text;
    bool schema;
} workload;

static const workload loads[] = {
    {"json_object", "{\"type\":\"object\"}", true},
    {"record",
     "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
     "\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"enum\":[\"a\","
     "\"b\",\"c\"]}},\"score\":{\"type\":\"number\"},\"ok\":{\"type\":\"boolean\"}},\"required\":"
     "[\"name\",\"age\",\"tags\",\"score\",\"ok\"],\"additionalProperties\":false}",
     true},
    {"nested",
     "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"label\":{\"type\":\"string\","
     "\"maxLength\":20},\"children\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},"
     "\"maxItems\":3}},\"required\":[\"label\",\"children\"]}},\"$ref\":\"#/$defs/node\"}",
     true},
    {"gbnf_list", "root ::= item (\"\\n\" item)*\nitem ::= \"- \" [A-Za-z ]{1,40}", false},
};

int main(int argc, char **argv) {
    const char *vocab_path = NULL;
    int n_tokens = 300, runs = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v") && i + 1 < argc) {
            vocab_path = argv[++i];
        } else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            n_tokens = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-r") && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: bench_grammar [-v VOCAB.gguf] [-n TOKENS] [-r RUNS]\n");
            return 2;
        }
    }
    if (n_tokens < 1 || runs < 1) return 2;
    hearth_error err;
    char converted[512];
    if (!vocab_path) {
        const char *shared = getenv("HEARTH_SHARED");
        char json[1024], config[1024];
        snprintf(json, sizeof json, "%s/vocab/qwen3-tokenizer.json",
                 shared && *shared ? shared : "../shared");
        snprintf(config, sizeof config, "%s/vocab/qwen3-tokenizer_config.json",
                 shared && *shared ? shared : "../shared");
        snprintf(converted, sizeof converted, "/tmp/bench_grammar_qwen3_%d.gguf", (int)getpid());
        if (convert_hf_tokenizer(json, config, converted, &err) != HEARTH_OK) {
            fprintf(stderr, "bench_grammar: %s (give -v VOCAB.gguf)\n", err.msg);
            return 1;
        }
        vocab_path = converted;
    }
    hearth_tokenizer *tok = NULL;
    hearth_grammar_vocab *voc = NULL;
    if (hearth_tokenizer_load(vocab_path, &tok, &err) != HEARTH_OK) {
        fprintf(stderr, "bench_grammar: %s\n", err.msg);
        return 1;
    }
    if (vocab_path == converted) remove(converted);
    double t0 = now_s();
    if (hearth_grammar_vocab_create(tok, &voc, &err) != HEARTH_OK) {
        fprintf(stderr, "bench_grammar: %s\n", err.msg);
        return 1;
    }
    int32_t nv = hearth_tokenizer_n_vocab(tok);
    printf("vocabulary: %d tokens, trie built in %.1f ms\n", nv, (now_s() - t0) * 1e3);
    float *logits = malloc((size_t)nv * sizeof *logits);
    double *times = malloc((size_t)n_tokens * (size_t)runs * sizeof *times);
    hearth_sampler_params sp = hearth_sampler_default_params();
    hearth_sampler *smp = NULL;
    if (!logits || !times || hearth_sampler_create(&sp, nv, &smp, &err) != HEARTH_OK) return 1;
    printf("%-12s %8s %10s %10s %10s %10s %10s %12s\n", "workload", "tokens", "first ms", "mean ms",
           "p50 ms", "p99 ms", "max ms", "sample ms");
    for (size_t w = 0; w < sizeof loads / sizeof loads[0]; w++) {
        size_t n = 0;
        double first = 0, sample_total = 0;
        int sample_n = 0;
        for (int r = 0; r < runs; r++) {
            hearth_grammar *g = NULL;
            size_t len = strlen(loads[w].text);
            hearth_status st =
                loads[w].schema
                    ? hearth_grammar_create_from_json_schema(voc, loads[w].text, len, &g, &err)
                    : hearth_grammar_create_from_gbnf(voc, loads[w].text, len, NULL, &g, &err);
            if (st != HEARTH_OK) {
                fprintf(stderr, "bench_grammar: %s: %s\n", loads[w].name, err.msg);
                return 1;
            }
            hearth_grammar_set_budget(g, (uint32_t)n_tokens);
            for (int i = 0; i < n_tokens && !hearth_grammar_is_done(g); i++) {
                for (int32_t t = 0; t < nv; t++) logits[t] = rnd_logit();
                double a = now_s();
                if (hearth_grammar_apply(g, logits, nv, &err) != HEARTH_OK) break;
                double d = now_s() - a;
                if (i == 0) first += d;
                times[n++] = d;
                int32_t best = -1;
                for (int32_t t = 0; t < nv; t++) {
                    if (logits[t] > -INFINITY && (best < 0 || logits[t] > logits[best])) best = t;
                }
                if (best < 0 || hearth_tokenizer_is_eog(tok, best)) break;
                if (hearth_grammar_accept(g, best, &err) != HEARTH_OK) break;
            }
            /* The sampler with the grammar attached: mask plus the chain. */
            hearth_grammar_reset(g);
            hearth_sampler_reset(smp);
            hearth_sampler_set_grammar(smp, g);
            for (int i = 0; i < 50 && !hearth_grammar_is_done(g); i++) {
                for (int32_t t = 0; t < nv; t++) logits[t] = rnd_logit();
                double a = now_s();
                hearth_token t = hearth_sampler_sample(smp, logits);
                sample_total += now_s() - a;
                sample_n++;
                if (t < 0 || hearth_tokenizer_is_eog(tok, t)) break;
                hearth_sampler_accept(smp, t);
            }
            hearth_sampler_set_grammar(smp, NULL);
            hearth_grammar_free(g);
        }
        qsort(times, n, sizeof *times, cmp_double);
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += times[i];
        printf("%-12s %8zu %10.3f %10.3f %10.3f %10.3f %10.3f %12.3f\n", loads[w].name, n,
               first / runs * 1e3, n ? sum / (double)n * 1e3 : 0.0, n ? times[n / 2] * 1e3 : 0.0,
               n ? times[(n * 99) / 100] * 1e3 : 0.0, n ? times[n - 1] * 1e3 : 0.0,
               sample_n ? sample_total / sample_n * 1e3 : 0.0);
    }
    hearth_sampler_free(smp);
    free(logits);
    free(times);
    hearth_grammar_vocab_free(voc);
    hearth_tokenizer_free(tok);
    return 0;
}
