/* sections.c — `hearth run --sections N`: a long text as bounded sections.
 *
 * The prompt is the topic; the outline comes from --outline FILE or from
 * the model.  Each section is printed (its heading as "## …", then its
 * text) as soon as it and every section before it are done; the summary
 * on stderr says how many sections there were, the tokens each kept and
 * how each ended, and how often the loop guard stepped in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/sections.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool cli_parse_section_tokens(const char *s, uint32_t *min_tokens, uint32_t *max_tokens) {
    const char *dots = strstr(s, "..");
    long long lo, hi;
    if (dots) {
        char a[32];
        size_t n = (size_t)(dots - s);
        if (n == 0 || n >= sizeof a) {
            cli_error("--section-tokens expects N or MIN..MAX, got '%s'", s);
            return false;
        }
        memcpy(a, s, n);
        a[n] = '\0';
        if (!cli_parse_int("--section-tokens", a, 1, 8192, &lo) ||
            !cli_parse_int("--section-tokens", dots + 2, 1, 8192, &hi)) {
            return false;
        }
        if (lo > hi) {
            cli_error("--section-tokens %s: the minimum is above the maximum", s);
            return false;
        }
    } else {
        if (!cli_parse_int("--section-tokens", s, 1, 8192, &hi)) return false;
        lo = hi * 5 / 8 > 0 ? hi * 5 / 8 : 1;
    }
    *min_tokens = (uint32_t)lo;
    *max_tokens = (uint32_t)hi;
    return true;
}

typedef struct run_state {
    const cli_sections_opts *o;
    const hearth_tokenizer *tok;
    bool printed;
} run_state;

static bool on_section(const hearth_section_info *s, void *arg) {
    run_state *rs = arg;
    if (s->index == HEARTH_SECTION_OUTLINE) {
        if (rs->o->verbose)
            fprintf(stderr, "hearth: outline (%u tokens):\n%s", s->n_tokens, s->text);
        return true;
    }
    if (rs->o->verbose) {
        fprintf(stderr, "hearth: section %u: %u tokens kept of %u, prompt %u, ended by %s%s%s\n",
                s->index + 1, s->n_tokens, s->n_generated, s->n_prompt,
                hearth_section_end_name(s->end), s->end == HEARTH_SECTION_LOOP ? " " : "",
                s->end == HEARTH_SECTION_LOOP ? hearth_loop_kind_name(s->loop) : "");
    }
    if (rs->o->ids || s->end == HEARTH_SECTION_SKIPPED) return true;
    printf("%s## %s\n\n", rs->printed ? "\n" : "", s->heading);
    fwrite(s->text, 1, s->text_len, stdout);
    putchar('\n');
    fflush(stdout);
    rs->printed = true;
    return true;
}

/* Reads a whole small file; NULL after an error line. */
static char *read_text(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        cli_error("cannot open outline file '%s'", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (buf) n = fread(buf, 1, cap, fp);
    bool bad = ferror(fp) != 0 || !buf || (n == cap && fgetc(fp) != EOF);
    fclose(fp);
    if (bad) {
        free(buf);
        cli_error("cannot read outline file '%s' (at most 64 KiB)", path);
        return NULL;
    }
    buf[n] = '\0';
    if (strlen(buf) != n) {
        free(buf);
        cli_error("outline file '%s' holds a NUL byte", path);
        return NULL;
    }
    return buf;
}

int cli_run_sections(const hearth_model *model, const hearth_context_params *cp,
                     const cli_sections_opts *o) {
    hearth_sections_params p = hearth_sections_default_params();
    char *topic = malloc(o->topic_len + 1);
    char *outline = NULL;
    hearth_sections *g = NULL;
    int rc = 1;
    if (!topic) {
        cli_error("out of memory");
        return 1;
    }
    memcpy(topic, o->topic, o->topic_len);
    topic[o->topic_len] = '\0';
    if (strlen(topic) != o->topic_len) {
        cli_error("the prompt holds a NUL byte");
        goto out;
    }
    if (o->outline_file && !(outline = read_text(o->outline_file))) goto out;
    p.topic = topic;
    p.outline = outline;
    p.n_sections = o->n_sections;
    if (o->min_tokens) p.min_tokens = o->min_tokens;
    if (o->max_tokens) p.max_tokens = o->max_tokens;
    if (o->tail_tokens >= 0) p.tail_tokens = (uint32_t)o->tail_tokens;
    p.order = o->order;
    p.sampling = o->sampling;
    p.guard.action = o->guard;
    const hearth_tokenizer *tok = hearth_model_tokenizer(model);
    hearth_error err;
    if (hearth_sections_create(tok, &p, &g, &err) != HEARTH_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    run_state rs = {o, tok, false};
    double t0 = now_s();
    if (hearth_sections_run(g, model, cp, on_section, &rs, &err) != HEARTH_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    double dt = now_s() - t0;
    hearth_sections_result r;
    hearth_sections_result_get(g, &r);
    if (o->ids) {
        hearth_token ids[4096];
        size_t n = 0;
        if (hearth_tokenize(tok, topic, o->topic_len, HEARTH_TOKENIZE_ADD_SPECIAL, ids, 4096, &n,
                            &err) != HEARTH_OK) {
            n = 0;
        }
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
        for (size_t i = 0; i < r.n_tokens; i++) printf(i ? " %d" : "%d", r.tokens[i]);
        putchar('\n');
    }
    fflush(stdout);
    fprintf(stderr, "hearth: %u sections, tokens kept:", r.n_sections);
    for (uint32_t i = 0; i < r.n_sections; i++) fprintf(stderr, " %u", r.section_tokens[i]);
    fprintf(stderr, "; ended by:");
    for (uint32_t i = 0; i < r.n_sections; i++) {
        fprintf(stderr, " %s", hearth_section_end_name(r.section_end[i]));
    }
    fprintf(stderr, "; loop guard %s: %u stops, %u findings%s\n",
            o->guard == HEARTH_LOOP_OFF        ? "off"
            : o->guard == HEARTH_LOOP_PENALIZE ? "penalize"
                                               : "stop",
            r.n_guard_stops, r.n_guard_findings, r.repetition ? "; stopped: repetition" : "");
    fprintf(stderr, "hearth: generated %u tokens (%zu kept) in %.1f ms (%.1f tok/s)\n",
            r.n_generated, r.n_tokens, dt * 1e3, dt > 0 ? (double)r.n_generated / dt : 0.0);
    rc = 0;
out:
    hearth_sections_free(g);
    free(outline);
    free(topic);
    return rc;
}
