/* test_chat_tools.c — tools through the chat template and back.
 *
 * The rendered text is compared with what Qwen3's published Jinja template
 * (tokenizer_config.json of ../shared/vocab/qwen3-tokenizer_config.json)
 * prints for the same messages and tools, rendered once with jinja2 3.1.6
 * and HF's tojson (", " and ": " separators); the reply side turns
 * <tool_call> blocks into OpenAI tool_calls with finish_reason
 * "tool_calls".
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"
#include "server/api_tools.h"
#include "server/chat.h"
#include "test.h"

/* s equals want (false for NULL). */
static bool is(const char *s, const char *want) {
    return s && !strcmp(s, want);
}

static const char tools_json[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"add\",\"description\":\"Add two numbers.\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{"
    "\"type\":\"integer\"}},\"required\":[\"a\",\"b\"]}}}]";

static const char tools_block[] =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": "
    "\"function\", \"function\": {\"name\": \"add\", \"description\": \"Add two numbers.\", "
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, "
    "\"b\": {\"type\": \"integer\"}}, \"required\": [\"a\", \"b\"]}}}\n</tools>\n\nFor each "
    "function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call><|im_end|>\n";

/* Renders body's messages and tools as text with family f. */
static char *render(chat_family f, const char *body_text) {
    json_t *body = json_loads(body_text, 0, NULL);
    json_t *msgs = json_object_get(body, "messages");
    size_t n = json_array_size(msgs);
    chat_message cm[8];
    for (size_t i = 0; i < n && i < 8; i++) {
        json_t *m = json_array_get(msgs, i);
        chat_role_parse(json_string_value(json_object_get(m, "role")), &cm[i].role);
        json_t *c = json_object_get(m, "content");
        cm[i].content = json_is_string(c) ? json_string_value(c) : "";
        cm[i].len = json_is_string(c) ? json_string_length(c) : 0;
    }
    api_tools t;
    api_error e;
    char *out = NULL;
    size_t len = 0;
    chat_options opt = {true, true};
    if (api_tools_parse(body, msgs, n, f, &t, &e)) {
        hearth_error err;
        if (chat_render_text_tools(f, NULL, cm, n, &opt, &t.ct, &out, &len, &err) != HEARTH_OK) {
            printf("  render: %s\n", err.msg);
        }
    } else {
        printf("  tools: %s\n", e.message);
    }
    api_tools_free(&t);
    json_decref(body);
    return out;
}

TEST(qwen3_tools_match_the_jinja_template) {
    char body[4096];
    snprintf(body, sizeof body,
             "{\"tools\": %s, \"messages\": [{\"role\": \"system\", \"content\": \"You add.\"}, "
             "{\"role\": \"user\", \"content\": \"Sum 3 and 4\"}, {\"role\": \"assistant\", "
             "\"content\": \"\", \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\", "
             "\"function\": {\"name\": \"add\", \"arguments\": {\"a\": 3, \"b\": 4}}}]}, "
             "{\"role\": \"tool\", \"content\": \"7\"}]}",
             tools_json);
    char want[4096];
    snprintf(want, sizeof want,
             "<|im_start|>system\nYou add.\n\n%s<|im_start|>user\nSum 3 and 4<|im_end|>\n"
             "<|im_start|>assistant\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 3, "
             "\"b\": 4}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n7\n"
             "</tool_response><|im_end|>\n<|im_start|>assistant\n",
             tools_block);
    char *got = render(CHAT_QWEN3, body);
    CHECKF(got && !strcmp(got, want), "got:\n%s\nwant:\n%s", got ? got : "(null)", want);
    free(got);
    /* No system message: the tools turn stands alone. */
    snprintf(body, sizeof body,
             "{\"tools\": %s, \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}",
             tools_json);
    snprintf(want, sizeof want,
             "<|im_start|>system\n%s<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
             tools_block);
    got = render(CHAT_QWEN3, body);
    CHECKF(got && !strcmp(got, want), "got:\n%s\nwant:\n%s", got ? got : "(null)", want);
    free(got);
    /* Arguments given as a string (OpenAI's form) are written as they are. */
    got = render(CHAT_CHATML,
                 "{\"messages\": [{\"role\": \"assistant\", \"content\": \"ok\", \"tool_calls\": "
                 "[{\"function\": {\"name\": \"f\", \"arguments\": \"{\\\"x\\\":1}\"}}]}]}");
    CHECK(got && !strcmp(got, "<|im_start|>assistant\nok\n<tool_call>\n{\"name\": \"f\", "
                              "\"arguments\": {\"x\":1}}\n</tool_call><|im_end|>\n"
                              "<|im_start|>assistant\n"));
    free(got);
}

TEST(bad_tools_are_refused) {
    json_t *body = json_loads("{\"tools\": [{\"type\": \"function\"}]}", 0, NULL);
    json_t *msgs = json_array();
    api_tools t;
    api_error e;
    CHECK(!api_tools_parse(body, msgs, 0, CHAT_QWEN3, &t, &e) && !strcmp(e.param, "tools"));
    api_tools_free(&t);
    CHECK(!api_tools_parse(body, msgs, 0, CHAT_LLAMA3, &t, &e) && strstr(e.message, "llama3"));
    api_tools_free(&t);
    json_decref(body);
    json_decref(msgs);
}

TEST(tool_calls_in_a_reply) {
    const char *text = "Let me add.\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 3, "
                       "\"b\": 4}}\n</tool_call>\n<tool_call>\n{\"name\": \"mul\", "
                       "\"arguments\": {}}\n</tool_call>";
    size_t content = 0;
    json_t *calls = api_tool_calls_json(text, strlen(text), "chatcmpl-x", &content);
    REQUIRE(calls && json_array_size(calls) == 2);
    CHECK(content == strlen("Let me add."));
    json_t *f = json_object_get(json_array_get(calls, 0), "function");
    CHECK(is(json_string_value(json_object_get(f, "name")), "add"));
    CHECK(is(json_string_value(json_object_get(f, "arguments")), "{\"a\":3,\"b\":4}"));
    CHECK(is(json_string_value(json_object_get(json_array_get(calls, 1), "id")), "chatcmpl-x-1"));
    json_decref(calls);
    CHECK(!api_tool_calls_json("no calls here", 13, "x", &content));
    CHECK(!api_tool_calls_json("<tool_call>not json</tool_call>", 31, "x", &content));
    /* The whole response: content before the calls, finish_reason tool_calls. */
    api_meta m;
    memset(&m, 0, sizeof m);
    m.kind = API_CHAT;
    snprintf(m.id, sizeof m.id, "chatcmpl-1");
    m.model = "m";
    m.tools = true;
    sched_delta usage;
    memset(&usage, 0, sizeof usage);
    json_t *r = api_response_json(&m, text, strlen(text), NULL, 0, SCHED_FINISH_STOP, &usage);
    json_t *choice = json_array_get(json_object_get(r, "choices"), 0);
    CHECK(is(json_string_value(json_object_get(choice, "finish_reason")), "tool_calls"));
    json_t *msg = json_object_get(choice, "message");
    CHECK(is(json_string_value(json_object_get(msg, "content")), "Let me add."));
    CHECK(json_array_size(json_object_get(msg, "tool_calls")) == 2);
    json_decref(r);
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    RUN(qwen3_tools_match_the_jinja_template);
    RUN(bad_tools_are_refused);
    RUN(tool_calls_in_a_reply);
    return test_finish();
}
