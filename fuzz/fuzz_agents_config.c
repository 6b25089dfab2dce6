/* fuzz_agents_config.c — libFuzzer target for the agents file parser.
 *
 * The input is written to a file and loaded as an agents file (YAML through
 * libyaml, then validation).  Beyond "no crash, no sanitizer report": a
 * refused file has a message of the form "PATH:LINE: …" with a line inside
 * the input (or just past its end), and an accepted one has agents that each have a name and a
 * prompt, and "after" triggers that point at other agents.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agents/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz-agents-%d.yaml", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    /* An upper bound of the lines YAML sees: it also breaks lines at CR,
     * NEL (C2 85), LS and PS (E2 80 A8/A9). */
    size_t lines = 1;
    for (size_t i = 0; i < size; i++) {
        lines += data[i] == '\n' || data[i] == '\r' || data[i] == 0x85 || data[i] == 0xa8 ||
                 data[i] == 0xa9;
    }
    agents_config *cfg = NULL;
    hearth_error err;
    if (agents_config_load(path, &cfg, &err) != HEARTH_OK) {
        size_t n = strlen(path);
        if (strncmp(err.msg, path, n) != 0 || err.msg[n] != ':') __builtin_trap();
        long line = strtol(err.msg + n + 1, NULL, 10);
        if (line < 0 || (size_t)line > lines + 1) __builtin_trap();
        return 0;
    }
    for (size_t i = 0; i < cfg->n_agents; i++) {
        const agent_def *a = &cfg->agents[i];
        if (!a->name[0] || !a->prompt[0]) __builtin_trap();
        for (size_t t = 0; t < a->n_triggers; t++) {
            if (a->triggers[t].type == AGENT_TRIGGER_AFTER &&
                (a->triggers[t].after >= cfg->n_agents || a->triggers[t].after == i)) {
                __builtin_trap();
            }
        }
    }
    agents_config_free(cfg);
    return 0;
}
