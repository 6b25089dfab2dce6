/* config.h — agent definitions read from a YAML file (private to agents).
 *
 * The file is hostile input: every key is checked against the keys this
 * version knows, every value for its type and range, every path for
 * staying inside the agent's data folder, and the `after:` triggers for
 * cycles.  The first problem found is reported as "FILE:LINE: message"
 * and nothing is loaded.  docs in examples/notebook/agents.yaml show every
 * key in use.
 */
#ifndef HEARTH_AGENTS_CONFIG_H
#define HEARTH_AGENTS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hearth.h"
#include "sched/sched.h"

/* Values are never renumbered. */
typedef enum agent_trigger_type {
    AGENT_TRIGGER_INTERVAL = 0, /* every N seconds */
    AGENT_TRIGGER_DAILY = 1,    /* once a day at HH:MM local time */
    AGENT_TRIGGER_INBOX = 2,    /* a new file in its inbox folder (matching a glob) */
    AGENT_TRIGGER_AFTER = 3,    /* another agent's run succeeded */
    AGENT_TRIGGER_API = 4,      /* POST /v1/agents/NAME/run */
    AGENT_TRIGGER_N = 5
} agent_trigger_type;

/* "interval", "daily", "inbox", "after", "api". */
const char *agent_trigger_name(agent_trigger_type t);

typedef struct agent_trigger {
    agent_trigger_type type;
    char *spec;        /* as written: "10m", "07:30", "*.json", "ingest", "" */
    long long every_s; /* interval: seconds */
    int minute_of_day; /* daily: 0..1439 */
    size_t after;      /* after: index of the agent whose runs fire this one */
    int line;
} agent_trigger;

typedef enum agent_input_type {
    AGENT_INPUT_FILE = 0,  /* a file in the agent's data folder */
    AGENT_INPUT_AGENT = 1, /* the latest successful output of another agent */
    AGENT_INPUT_QUERY = 2, /* rows of a read-only query over the store */
} agent_input_type;

typedef struct agent_input {
    agent_input_type type;
    char *value;  /* relative path, agent name or SQL */
    size_t agent; /* AGENT_INPUT_AGENT: its index */
    int line;
} agent_input;

typedef enum agent_output {
    AGENT_OUTPUT_TEXT = 0,
    AGENT_OUTPUT_SECTIONS = 1,    /* long-form: the request asks for sectional generation */
    AGENT_OUTPUT_JSON_SCHEMA = 2, /* response_format json_schema */
} agent_output;

/* "text", "sections", "json_schema". */
const char *agent_output_name(agent_output o);

/* Tools an agent may call (bit set). */
enum {
    AGENT_TOOL_READ_FILE = 1u << 0,
    AGENT_TOOL_LIST_INBOX = 1u << 1,
    AGENT_TOOL_WRITE_OUTPUT = 1u << 2,
    AGENT_TOOL_QUERY_STORE = 1u << 3,
    AGENT_TOOL_CALL_AGENT = 1u << 4,
};
#define AGENT_N_TOOLS 5
extern const char *const agent_tool_names[AGENT_N_TOOLS]; /* by bit index */

typedef struct agent_def {
    char *name;
    char *description; /* "" when none */
    char *prompt;      /* the role prompt (system message) */
    sched_class cls;   /* SCHED_TOOL or SCHED_BACKGROUND */
    bool enabled;
    char *engine; /* NULL: the local model; else an OpenAI base URL ("http://h:p/v1") */
    char *model;  /* model name sent in requests ("" for the server's default) */
    char *folder; /* absolute path of its data folder (created at start) */
    agent_trigger *triggers;
    size_t n_triggers;
    agent_input *inputs;
    size_t n_inputs;
    agent_output output;
    char *schema_json;  /* json_schema: the schema as compact JSON */
    long long sections; /* sections: how many (0 = the server decides) */
    unsigned tools;     /* AGENT_TOOL_* bits */
    char **read_paths;  /* read_file limited to these (relative) paths; none = the whole folder */
    size_t n_read_paths;
    size_t *callable; /* call_agent: indexes of the agents it may call; none = any */
    size_t n_callable;
    char *request_json;      /* extra request fields (a JSON object), NULL for none */
    uint32_t max_tokens;     /* per model call */
    uint32_t timeout_s;      /* per run */
    uint32_t retries;        /* further attempts after a failure or an interruption */
    uint32_t max_tool_calls; /* tool-call rounds per run */
    size_t max_input_bytes;  /* each input is cut to this many bytes */
    int line;
} agent_def;

typedef struct agents_config {
    char *path;       /* the file as given */
    char *dir;        /* absolute folder of the file: relative paths start here */
    char *store_path; /* absolute path of the SQLite file */
    char *data_dir;   /* absolute folder holding each agent's data folder */
    unsigned workers; /* runs at once */
    agent_def *agents;
    size_t n_agents;
} agents_config;

/* Reads and validates the file at path.  On failure returns NULL status
 * with err->msg "PATH:LINE: message" (LINE 0 when the file cannot be read
 * at all). */
hearth_status agents_config_load(const char *path, agents_config **out, hearth_error *err);
void agents_config_free(agents_config *cfg);

/* The agent called name, or NULL. */
const agent_def *agents_config_find(const agents_config *cfg, const char *name, size_t *index);

/* True when rel is a relative path that stays inside its folder by its
 * text alone ("a/../b" yes, "../x", "/etc", "a/../../x" no). */
bool agents_path_is_confined(const char *rel);

#endif
