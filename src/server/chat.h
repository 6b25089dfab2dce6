/* chat.h — chat templates rendered natively (private to the server).
 *
 * A GGUF model carries its chat template as Jinja text
 * (tokenizer.chat_template).  hearth does not run Jinja: it recognises the
 * template's family by its markers and renders that family's format in C.
 * Rendering produces token ids directly, with the template's control
 * tokens placed by id and message text tokenized as plain text, so a user
 * who types "<|im_end|>" gets those characters, not the control token.
 */
#ifndef HEARTH_SERVER_CHAT_H
#define HEARTH_SERVER_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "hearth.h"

/* Values are never renumbered. */
typedef enum chat_family {
    CHAT_NONE = 0,    /* no template: chat completions are refused */
    CHAT_CHATML = 1,  /* <|im_start|>role\n…<|im_end|> */
    CHAT_QWEN3 = 2,   /* ChatML with <think> handling and enable_thinking */
    CHAT_LLAMA3 = 3,  /* <|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|> */
    CHAT_LLAMA2 = 4,  /* <s>[INST] <<SYS>>…<</SYS>> … [/INST] … </s> */
    CHAT_MISTRAL = 5, /* <s>[INST] … [/INST]…</s> */
    CHAT_GEMMA = 6,   /* <start_of_turn>user\n…<end_of_turn> */
    CHAT_N_FAMILY = 7
} chat_family;

/* "chatml", "qwen3", "llama3", "llama2", "mistral", "gemma" ("none"). */
const char *chat_family_name(chat_family f);
/* Parses a family name as --chat-template takes it. */
bool chat_family_parse(const char *name, chat_family *out);
/* The family of a Jinja template by its markers; CHAT_NONE when unknown. */
chat_family chat_detect(const char *tmpl, size_t len);

typedef enum chat_role {
    CHAT_ROLE_SYSTEM = 0, /* also "developer" */
    CHAT_ROLE_USER = 1,
    CHAT_ROLE_ASSISTANT = 2,
    CHAT_ROLE_TOOL = 3,
} chat_role;

/* Parses an OpenAI role name; false when it is none. */
bool chat_role_parse(const char *name, chat_role *out);

typedef struct chat_message {
    chat_role role;
    const char *content; /* UTF-8, may hold NUL bytes */
    size_t len;
} chat_message;

typedef struct chat_options {
    bool add_generation_prompt; /* end with the assistant's header (default true) */
    bool enable_thinking;       /* qwen3: false adds the empty <think></think> block */
} chat_options;

/* Renders the conversation as text, control tokens written out — what the
 * Jinja template would print.  *out is malloc'd and NUL-terminated. */
hearth_status chat_render_text(chat_family f, const hearth_tokenizer *tok, const chat_message *msgs,
                               size_t n, const chat_options *opt, char **out, size_t *len,
                               hearth_error *err);

/* Renders and tokenizes the conversation: control tokens of the template by
 * id, message text as plain text.  *out is malloc'd. */
hearth_status chat_render_tokens(chat_family f, const hearth_tokenizer *tok,
                                 const chat_message *msgs, size_t n, const chat_options *opt,
                                 hearth_token **out, size_t *n_out, hearth_error *err);

/* Tools (OpenAI "tools" and assistant "tool_calls") for the families that
 * have a tool-call format: ChatML and Qwen3 list the tools in the system
 * turn inside <tools></tools> and write each call as
 * <tool_call>\n{"name": …, "arguments": …}\n</tool_call>; the other
 * families render the conversation without them. */
typedef struct chat_tool_call {
    const char *name;      /* NUL-terminated */
    const char *arguments; /* JSON text, NUL-terminated */
} chat_tool_call;

typedef struct chat_tools {
    const char *const *defs; /* (n_defs) each tool as JSON text, as the template's tojson */
    size_t n_defs;
    const chat_tool_call *calls; /* every call of the conversation, in message order */
    const size_t *n_calls;       /* (n messages) calls of each message; NULL for none */
} chat_tools;

/* chat_render_text and chat_render_tokens with tools (tools may be NULL). */
hearth_status chat_render_text_tools(chat_family f, const hearth_tokenizer *tok,
                                     const chat_message *msgs, size_t n, const chat_options *opt,
                                     const chat_tools *tools, char **out, size_t *len,
                                     hearth_error *err);
hearth_status chat_render_tokens_tools(chat_family f, const hearth_tokenizer *tok,
                                       const chat_message *msgs, size_t n, const chat_options *opt,
                                       const chat_tools *tools, hearth_token **out, size_t *n_out,
                                       hearth_error *err);

/* True when family f renders tools. */
bool chat_has_tools(chat_family f);

/* Control tokens that end an assistant turn in this family (besides the
 * vocabulary's end-of-generation tokens); returns how many were written. */
size_t chat_stop_tokens(chat_family f, const hearth_tokenizer *tok, hearth_token *out, size_t cap);

#endif
