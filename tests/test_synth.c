/* test_synth.c — the synth presets have the shapes of the models they are
 * named after: their parameter counts match the published totals (model
 * cards: Qwen3-30B-A3B 30.5 B in all, 3.3 B active; Qwen3-0.6B 0.6 B in all,
 * 0.44 B without embeddings), and the benchmark rows keep the issue table's
 * shapes. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "convert/synth.h"
#include "test.h"

typedef struct counts {
    double total;  /* every weight */
    double active; /* what one token reads (top-k experts) */
    double embed;  /* token embedding (+ output matrix when untied) */
} counts;

static counts count(const synth_params *p, bool tied) {
    double d = p->n_embd, q = (double)p->n_head * p->head_dim,
           kv = (double)p->n_head_kv * p->head_dim;
    double attn = d * q + 2.0 * d * kv + q * d;
    double ffn = 3.0 * d * p->n_ff, ffn_active = ffn;
    if (p->n_expert) {
        ffn = 3.0 * d * p->n_ff_exp * p->n_expert + d * p->n_expert;
        ffn_active = 3.0 * d * p->n_ff_exp * p->n_expert_used + d * p->n_expert;
    }
    counts c;
    c.embed = (double)p->n_vocab * d * (tied ? 1.0 : 2.0);
    c.total = p->n_layer * (attn + ffn) + c.embed;
    c.active = p->n_layer * (attn + ffn_active) + c.embed;
    return c;
}

static bool near(double got, double want, double rel) {
    return fabs(got - want) <= rel * want;
}

TEST(presets_match_the_published_sizes) {
    synth_params p;
    hearth_error err;
    REQUIRE(synth_preset("qwen3-30b-a3b", &p, &err) == HEARTH_OK);
    counts c = count(&p, false);
    CHECKF(near(c.total, 30.5e9, 0.01), "30B-A3B total %.3g", c.total);
    CHECKF(near(c.active, 3.3e9, 0.03), "30B-A3B active %.3g", c.active);
    CHECK(!strcmp(p.arch, "qwen3moe") && p.n_expert == 128 && p.n_expert_used == 8 && p.qk_norm);

    REQUIRE(synth_preset("qwen3-0.6b", &p, &err) == HEARTH_OK);
    c = count(&p, true);
    CHECKF(near(c.total - c.embed, 0.44e9, 0.01), "0.6B without embeddings %.3g",
           c.total - c.embed);
    CHECKF(near(c.total, 0.6e9, 0.02), "0.6B total %.3g", c.total);
    CHECK(!strcmp(p.arch, "qwen3") && p.n_expert == 0 && p.qk_norm);

    /* The issue table's rows. */
    REQUIRE(synth_preset("qwen3moe-d1024", &p, &err) == HEARTH_OK);
    CHECK(p.n_layer == 12 && p.n_embd == 1024 && p.n_expert == 128 && p.n_expert_used == 8 &&
          p.n_ff_exp == 384 && p.n_vocab == 151936);
    REQUIRE(synth_preset("llama-d512", &p, &err) == HEARTH_OK);
    CHECK(p.n_layer == 8 && p.n_embd == 512 && p.n_head == 8 && p.n_head_kv == 4 &&
          p.n_ff == 1536 && p.n_vocab == 32000);

    CHECK(synth_preset("qwen3-7b", &p, &err) != HEARTH_OK);
    CHECK(strstr(err.msg, "qwen3-0.6b") != NULL);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    RUN(presets_match_the_published_sizes);
    return test_finish();
}
