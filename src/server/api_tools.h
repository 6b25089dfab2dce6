/* api_tools.h — OpenAI tools in chat requests and tool calls in replies
 * (private to the server).
 *
 * A request's "tools" (function definitions) and its assistant messages'
 * "tool_calls" become the chat template's chat_tools; a reply's text holds
 * the model's calls as <tool_call>{json}</tool_call> blocks (the format the
 * ChatML and Qwen3 templates teach), which become the message's
 * "tool_calls" with finish_reason "tool_calls".
 */
#ifndef HEARTH_SERVER_API_TOOLS_H
#define HEARTH_SERVER_API_TOOLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "server/api.h"
#include "server/chat.h"

typedef struct api_tools {
    chat_tools ct;
    char **defs;           /* owned JSON texts */
    chat_tool_call *calls; /* owned name and arguments texts */
    size_t n_all_calls;
    size_t *n_calls; /* per message */
} api_tools;

/* Reads body.tools and messages[i].tool_calls (msgs has n items).  False
 * with e filled on a malformed one; api_tools_free is safe either way. */
bool api_tools_parse(json_t *body, json_t *msgs, size_t n, chat_family chat, api_tools *t,
                     api_error *e);
void api_tools_free(api_tools *t);

/* The <tool_call> blocks of text[0..n) as an OpenAI tool_calls array, or
 * NULL when there are none; *content_len gets the length of the text before
 * the first block (the message's content). */
json_t *api_tool_calls_json(const char *text, size_t n, const char *id_prefix, size_t *content_len);

#endif
