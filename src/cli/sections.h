/* sections.h — `hearth run --sections`: sectional generation on the command line. */
#ifndef HEARTH_CLI_SECTIONS_H
#define HEARTH_CLI_SECTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hearth.h"

typedef struct cli_sections_opts {
    const char *topic; /* the prompt: what to write */
    size_t topic_len;
    const char *outline_file; /* NULL: the model writes the outline */
    uint32_t n_sections;      /* 0 with an outline: one per line */
    uint32_t min_tokens, max_tokens;
    long long tail_tokens; /* -1: the default */
    hearth_sections_order order;
    hearth_loop_action guard;
    hearth_sampler_params sampling;
    bool ids; /* print the topic's ids and the kept ids instead of text */
    bool verbose;
} cli_sections_opts;

/* Parses --section-tokens: "N" (max N, min 5/8 of it) or "MIN..MAX";
 * prints an error and returns false when it is neither. */
bool cli_parse_section_tokens(const char *s, uint32_t *min_tokens, uint32_t *max_tokens);

/* Runs the generation on a loaded model; streams each section to stdout
 * as it completes in order and prints the summary (sections, tokens per
 * section, guard stops, speed) to stderr.  Returns the exit status. */
int cli_run_sections(const hearth_model *model, const hearth_context_params *cp,
                     const cli_sections_opts *o);

#endif
