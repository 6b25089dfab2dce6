/* chat.c — the chat template families (see chat.h).
 *
 * Each family renders a conversation into a list of segments: plain text,
 * a control token named by its text ("<|im_start|>"), or BOS / EOS.  The
 * text form joins them; the token form tokenizes each run of plain text
 * on its own and places control tokens by id.  Runs start at the text's
 * start or right after a control token, which is where tokenizing the
 * whole rendered text with special-token parsing would cut them too, so
 * both forms agree whenever the messages hold no control-token text.
 *
 * Formats follow the families' published Jinja templates:
 *   ChatML   every message "<|im_start|>{role}\n{content}<|im_end|>\n"
 *   Qwen3    ChatML; system first; tool results wrapped in <tool_response>
 *            inside a user turn; an assistant turn's <think> block is kept
 *            only after the last user message; enable_thinking=false adds
 *            "<think>\n\n</think>\n\n" after the generation prompt
 *   Llama-3  BOS, "<|start_header_id|>{role}<|end_header_id|>\n\n{trimmed}<|eot_id|>"
 *   Llama-2  "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>"
 *   Mistral  BOS, "[INST] {user} [/INST]{assistant}</s>"; a system message
 *            goes before the first user message
 *   Gemma    BOS, "<start_of_turn>{user|model}\n{trimmed}<end_of_turn>\n";
 *            a system message goes before the first user message
 * With tools, ChatML and Qwen3 open with a system turn listing them in
 * <tools></tools> (after the conversation's own system message), and an
 * assistant turn's calls follow its content as <tool_call> blocks.
 */
#include "server/chat.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

static const char *const family_names[CHAT_N_FAMILY] = {"none",   "chatml",  "qwen3", "llama3",
                                                        "llama2", "mistral", "gemma"};

const char *chat_family_name(chat_family f) {
    return (unsigned)f < CHAT_N_FAMILY ? family_names[f] : "?";
}

bool chat_family_parse(const char *name, chat_family *out) {
    for (int f = 1; f < CHAT_N_FAMILY; f++) {
        if (!strcmp(name, family_names[f])) {
            *out = (chat_family)f;
            return true;
        }
    }
    return false;
}

static bool has(const char *t, size_t len, const char *needle) {
    return memmem(t, len, needle, strlen(needle)) != NULL;
}

chat_family chat_detect(const char *t, size_t len) {
    if (!t || len == 0) return CHAT_NONE;
    if (has(t, len, "<|im_start|>")) {
        return has(t, len, "enable_thinking") || has(t, len, "<think>") ? CHAT_QWEN3 : CHAT_CHATML;
    }
    if (has(t, len, "<|start_header_id|>")) return CHAT_LLAMA3;
    if (has(t, len, "<start_of_turn>")) return CHAT_GEMMA;
    if (has(t, len, "[INST]")) return has(t, len, "<<SYS>>") ? CHAT_LLAMA2 : CHAT_MISTRAL;
    return CHAT_NONE;
}

bool chat_role_parse(const char *name, chat_role *out) {
    if (!strcmp(name, "system") || !strcmp(name, "developer"))
        *out = CHAT_ROLE_SYSTEM;
    else if (!strcmp(name, "user"))
        *out = CHAT_ROLE_USER;
    else if (!strcmp(name, "assistant"))
        *out = CHAT_ROLE_ASSISTANT;
    else if (!strcmp(name, "tool"))
        *out = CHAT_ROLE_TOOL;
    else
        return false;
    return true;
}

/* ---------------------------------------------------------------- segments */

typedef enum seg_kind { SEG_TEXT, SEG_SPECIAL, SEG_BOS, SEG_EOS } seg_kind;

typedef struct seg {
    seg_kind kind;
    size_t off, len; /* into the builder's text */
} seg;

typedef struct builder {
    char *text;
    size_t n_text, cap_text;
    seg *segs;
    size_t n_segs, cap_segs;
    bool oom;
} builder;

static bool grow(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 256;
    while (c < need) {
        if (c > SIZE_MAX / 4 / sz) return false;
        c *= 2;
    }
    void *q = realloc(*p, c * sz);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static void add(builder *b, seg_kind kind, const char *s, size_t len) {
    if (b->oom) return;
    if (!grow((void **)&b->text, &b->cap_text, b->n_text + len + 1, 1) ||
        !grow((void **)&b->segs, &b->cap_segs, b->n_segs + 1, sizeof *b->segs)) {
        b->oom = true;
        return;
    }
    if (len) memcpy(b->text + b->n_text, s, len);
    b->segs[b->n_segs++] = (seg){kind, b->n_text, len};
    b->n_text += len;
    b->text[b->n_text] = '\0';
}

static void text(builder *b, const char *s) {
    add(b, SEG_TEXT, s, strlen(s));
}
static void textn(builder *b, const char *s, size_t len) {
    add(b, SEG_TEXT, s, len);
}
static void special(builder *b, const char *s) {
    add(b, SEG_SPECIAL, s, strlen(s));
}
static void bos(builder *b) {
    add(b, SEG_BOS, "", 0);
}
static void eos(builder *b) {
    add(b, SEG_EOS, "", 0);
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Jinja's trim / Python's strip() on ASCII whitespace. */
static void trim(const char **s, size_t *len) {
    while (*len > 0 && is_space((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_space((*s)[*len - 1])) (*len)--;
}

static void trim_char(const char **s, size_t *len, char c, bool left, bool right) {
    while (left && *len > 0 && (*s)[0] == c) {
        (*s)++;
        (*len)--;
    }
    while (right && *len > 0 && (*s)[*len - 1] == c) (*len)--;
}

static const char *find(const char *s, size_t len, const char *needle) {
    return memmem(s, len, needle, strlen(needle));
}

/* Last occurrence of needle in s[0..len). */
static const char *find_last(const char *s, size_t len, const char *needle) {
    const char *last = NULL, *at = s;
    size_t nl = strlen(needle);
    while ((at = memmem(at, len - (size_t)(at - s), needle, nl)) != NULL) {
        last = at;
        at++;
    }
    return last;
}

static const char *role_name(chat_role r) {
    switch (r) {
    case CHAT_ROLE_SYSTEM: return "system";
    case CHAT_ROLE_USER: return "user";
    case CHAT_ROLE_ASSISTANT: return "assistant";
    default: return "tool";
    }
}

/* ---------------------------------------------------------------- families */

/* The system turn listing the tools (Qwen's and Hermes' format), holding
 * the conversation's own system message first; returns how many messages
 * it used (0 or 1). */
static size_t tools_system(builder *b, const chat_message *m, size_t n, const chat_tools *t) {
    size_t used = n > 0 && m[0].role == CHAT_ROLE_SYSTEM ? 1 : 0;
    special(b, "<|im_start|>");
    text(b, "system\n");
    if (used) {
        textn(b, m[0].content, m[0].len);
        text(b, "\n\n");
    }
    text(b, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
    for (size_t i = 0; i < t->n_defs; i++) {
        text(b, "\n");
        text(b, t->defs[i]);
    }
    text(b, "\n</tools>\n\nFor each function call, return a json object with function name and "
            "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
            "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
    special(b, "<|im_end|>");
    text(b, "\n");
    return used;
}

/* An assistant turn's tool calls, after its content. */
static void tool_calls(builder *b, const chat_tool_call *c, size_t n, bool had_content) {
    for (size_t k = 0; k < n; k++) {
        if (k > 0 || had_content) text(b, "\n");
        text(b, "<tool_call>\n{\"name\": \"");
        text(b, c[k].name);
        text(b, "\", \"arguments\": ");
        text(b, c[k].arguments);
        text(b, "}\n</tool_call>");
    }
}

/* Where message i's calls start in t->calls. */
static size_t calls_before(const chat_tools *t, size_t i) {
    size_t k = 0;
    for (size_t j = 0; t && t->n_calls && j < i; j++) k += t->n_calls[j];
    return k;
}

static size_t calls_of(const chat_tools *t, size_t i) {
    return t && t->n_calls ? t->n_calls[i] : 0;
}

static void render_chatml(builder *b, const chat_message *m, size_t n, const chat_options *o,
                          const chat_tools *t) {
    size_t i = t && t->n_defs ? tools_system(b, m, n, t) : 0;
    for (; i < n; i++) {
        special(b, "<|im_start|>");
        text(b, role_name(m[i].role));
        text(b, "\n");
        textn(b, m[i].content, m[i].len);
        if (calls_of(t, i)) tool_calls(b, t->calls + calls_before(t, i), calls_of(t, i), m[i].len);
        special(b, "<|im_end|>");
        text(b, "\n");
    }
    if (o->add_generation_prompt) {
        special(b, "<|im_start|>");
        text(b, "assistant\n");
    }
}

static void render_qwen3(builder *b, const chat_message *m, size_t n, const chat_options *o,
                         const chat_tools *t) {
    size_t last_query = n; /* index of the last user message (n: none) */
    for (size_t i = n; i-- > 0;) {
        if (m[i].role == CHAT_ROLE_USER) {
            last_query = i;
            break;
        }
    }
    size_t first = t && t->n_defs ? tools_system(b, m, n, t) : 0;
    for (size_t i = first; i < n; i++) {
        const char *c = m[i].content;
        size_t len = m[i].len;
        if (m[i].role == CHAT_ROLE_USER || m[i].role == CHAT_ROLE_SYSTEM) {
            special(b, "<|im_start|>");
            text(b, role_name(m[i].role));
            text(b, "\n");
            textn(b, c, len);
            special(b, "<|im_end|>");
            text(b, "\n");
        } else if (m[i].role == CHAT_ROLE_ASSISTANT) {
            const char *reason = "";
            size_t rlen = 0;
            const char *end = find(c, len, "</think>");
            if (end) {
                /* reasoning = content.split('</think>')[0].rstrip('\n')
                 *                    .split('<think>')[-1].lstrip('\n') */
                const char *r0 = c;
                size_t r0len = (size_t)(end - c);
                trim_char(&r0, &r0len, '\n', false, true);
                const char *open = find_last(r0, r0len, "<think>");
                if (open) {
                    r0len -= (size_t)(open + 7 - r0);
                    r0 = open + 7;
                }
                trim_char(&r0, &r0len, '\n', true, false);
                reason = r0;
                rlen = r0len;
                /* content = content.split('</think>')[-1].lstrip('\n') */
                const char *after = find_last(c, len, "</think>") + 8;
                len -= (size_t)(after - c);
                c = after;
                trim_char(&c, &len, '\n', true, false);
            }
            special(b, "<|im_start|>");
            text(b, "assistant\n");
            bool after_query = last_query == n || i > last_query;
            if (after_query && (i + 1 == n || rlen > 0)) {
                trim_char(&reason, &rlen, '\n', true, true);
                text(b, "<think>\n");
                textn(b, reason, rlen);
                text(b, "\n</think>\n\n");
                trim_char(&c, &len, '\n', true, false);
            }
            textn(b, c, len);
            if (calls_of(t, i)) tool_calls(b, t->calls + calls_before(t, i), calls_of(t, i), len);
            special(b, "<|im_end|>");
            text(b, "\n");
        } else {
            if (i == 0 || m[i - 1].role != CHAT_ROLE_TOOL) {
                special(b, "<|im_start|>");
                text(b, "user");
            }
            text(b, "\n<tool_response>\n");
            textn(b, c, len);
            text(b, "\n</tool_response>");
            if (i + 1 == n || m[i + 1].role != CHAT_ROLE_TOOL) {
                special(b, "<|im_end|>");
                text(b, "\n");
            }
        }
    }
    if (o->add_generation_prompt) {
        special(b, "<|im_start|>");
        text(b, "assistant\n");
        if (!o->enable_thinking) text(b, "<think>\n\n</think>\n\n");
    }
}

static void render_llama3(builder *b, const chat_message *m, size_t n, const chat_options *o) {
    bos(b);
    for (size_t i = 0; i < n; i++) {
        const char *c = m[i].content;
        size_t len = m[i].len;
        trim(&c, &len);
        special(b, "<|start_header_id|>");
        text(b, m[i].role == CHAT_ROLE_TOOL ? "ipython" : role_name(m[i].role));
        special(b, "<|end_header_id|>");
        text(b, "\n\n");
        textn(b, c, len);
        special(b, "<|eot_id|>");
    }
    if (o->add_generation_prompt) {
        special(b, "<|start_header_id|>");
        text(b, "assistant");
        special(b, "<|end_header_id|>");
        text(b, "\n\n");
    }
}

/* The system message (if the conversation starts with one) for the
 * families that fold it into the first user turn. */
static size_t leading_system(const chat_message *m, size_t n, const char **sys, size_t *len) {
    *sys = NULL;
    *len = 0;
    if (n > 0 && m[0].role == CHAT_ROLE_SYSTEM) {
        *sys = m[0].content;
        *len = m[0].len;
        return 1;
    }
    return 0;
}

static void render_llama2(builder *b, const chat_message *m, size_t n, const chat_options *o) {
    (void)o; /* the format ends with " [/INST]" whether or not a reply follows */
    const char *sys;
    size_t sys_len;
    size_t i = leading_system(m, n, &sys, &sys_len);
    bool first_user = true;
    for (; i < n; i++) {
        const char *c = m[i].content;
        size_t len = m[i].len;
        trim(&c, &len);
        if (m[i].role == CHAT_ROLE_ASSISTANT) {
            text(b, " ");
            textn(b, c, len);
            text(b, " ");
            eos(b);
        } else {
            bos(b);
            text(b, "[INST] ");
            if (first_user && sys) {
                const char *s2 = sys;
                size_t l2 = sys_len;
                trim(&s2, &l2);
                text(b, "<<SYS>>\n");
                textn(b, s2, l2);
                text(b, "\n<</SYS>>\n\n");
            }
            first_user = false;
            textn(b, c, len);
            text(b, " [/INST]");
        }
    }
}

static void render_mistral(builder *b, const chat_message *m, size_t n, const chat_options *o) {
    (void)o;
    const char *sys;
    size_t sys_len;
    size_t i = leading_system(m, n, &sys, &sys_len);
    bool first_user = true;
    bos(b);
    for (; i < n; i++) {
        if (m[i].role == CHAT_ROLE_ASSISTANT) {
            textn(b, m[i].content, m[i].len);
            eos(b);
        } else {
            text(b, "[INST] ");
            if (first_user && sys) {
                textn(b, sys, sys_len);
                text(b, "\n\n");
            }
            first_user = false;
            textn(b, m[i].content, m[i].len);
            text(b, " [/INST]");
        }
    }
}

static void render_gemma(builder *b, const chat_message *m, size_t n, const chat_options *o) {
    const char *sys;
    size_t sys_len;
    size_t i = leading_system(m, n, &sys, &sys_len);
    bool first_user = true;
    bos(b);
    for (; i < n; i++) {
        const char *c = m[i].content;
        size_t len = m[i].len;
        trim(&c, &len);
        special(b, "<start_of_turn>");
        text(b, m[i].role == CHAT_ROLE_ASSISTANT ? "model\n" : "user\n");
        if (first_user && sys && m[i].role != CHAT_ROLE_ASSISTANT) {
            const char *s2 = sys;
            size_t l2 = sys_len;
            trim(&s2, &l2);
            textn(b, s2, l2);
            text(b, "\n\n");
            first_user = false;
        }
        textn(b, c, len);
        special(b, "<end_of_turn>");
        text(b, "\n");
    }
    if (o->add_generation_prompt) {
        special(b, "<start_of_turn>");
        text(b, "model\n");
    }
}

bool chat_has_tools(chat_family f) {
    return f == CHAT_CHATML || f == CHAT_QWEN3;
}

static hearth_status render(chat_family f, const chat_message *m, size_t n, const chat_options *o,
                            const chat_tools *t, builder *b, hearth_error *err) {
    memset(b, 0, sizeof *b);
    switch (f) {
    case CHAT_CHATML: render_chatml(b, m, n, o, t); break;
    case CHAT_QWEN3: render_qwen3(b, m, n, o, t); break;
    case CHAT_LLAMA3: render_llama3(b, m, n, o); break;
    case CHAT_LLAMA2: render_llama2(b, m, n, o); break;
    case CHAT_MISTRAL: render_mistral(b, m, n, o); break;
    case CHAT_GEMMA: render_gemma(b, m, n, o); break;
    default: return error_set(err, HEARTH_ERR_UNSUPPORTED, "the model has no chat template");
    }
    if (b->oom) {
        free(b->text);
        free(b->segs);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory rendering the chat template");
    }
    return HEARTH_OK;
}

/* The text of token id with control tokens written out. */
static bool token_text(const hearth_tokenizer *tok, hearth_token id, char *buf, size_t cap,
                       size_t *len) {
    return id >= 0 &&
           hearth_detokenize(tok, &id, 1,
                             HEARTH_DETOK_RENDER_SPECIAL | HEARTH_DETOK_KEEP_LEADING_SPACE, buf,
                             cap, len, NULL) == HEARTH_OK;
}

hearth_status chat_render_text(chat_family f, const hearth_tokenizer *tok, const chat_message *msgs,
                               size_t n, const chat_options *opt, char **out, size_t *len,
                               hearth_error *err) {
    return chat_render_text_tools(f, tok, msgs, n, opt, NULL, out, len, err);
}

hearth_status chat_render_text_tools(chat_family f, const hearth_tokenizer *tok,
                                     const chat_message *msgs, size_t n, const chat_options *opt,
                                     const chat_tools *tools, char **out, size_t *len,
                                     hearth_error *err) {
    *out = NULL;
    *len = 0;
    builder b;
    hearth_status st = render(f, msgs, n, opt, tools, &b, err);
    if (st != HEARTH_OK) return st;
    char *res = NULL;
    size_t n_res = 0, cap = 0;
    char piece[512];
    bool ok = true;
    for (size_t i = 0; i < b.n_segs && ok; i++) {
        const seg *s = &b.segs[i];
        const char *p = b.text + s->off;
        size_t L = s->len;
        if (s->kind == SEG_BOS || s->kind == SEG_EOS) {
            hearth_token id =
                s->kind == SEG_BOS ? hearth_tokenizer_bos(tok) : hearth_tokenizer_eos(tok);
            if (!token_text(tok, id, piece, sizeof piece, &L)) continue;
            p = piece;
        }
        ok = grow((void **)&res, &cap, n_res + L + 1, 1);
        if (ok) {
            memcpy(res + n_res, p, L);
            n_res += L;
            res[n_res] = '\0';
        }
    }
    free(b.text);
    free(b.segs);
    if (!ok || (!res && !(res = calloc(1, 1)))) {
        free(res);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory rendering the chat template");
    }
    *out = res;
    *len = n_res;
    return HEARTH_OK;
}

/* The id of a control token given by its text; -1 when the vocabulary has
 * no such single token (its text is then plain text). */
static hearth_token special_id(const hearth_tokenizer *tok, const char *s, size_t len) {
    hearth_token a[2], b2[2];
    size_t na = 0, nb = 0;
    if (hearth_tokenize(tok, s, len, HEARTH_TOKENIZE_PARSE_SPECIAL, a, 2, &na, NULL) != HEARTH_OK ||
        na != 1) {
        return -1;
    }
    if (hearth_tokenize(tok, s, len, 0, b2, 2, &nb, NULL) == HEARTH_OK && nb == 1 &&
        b2[0] == a[0]) {
        return -1; /* an ordinary token: keep it in the text run */
    }
    return a[0];
}

typedef struct tokbuf {
    hearth_token *v;
    size_t n, cap;
} tokbuf;

static hearth_status flush_text(const hearth_tokenizer *tok, const char *t, size_t len, tokbuf *o,
                                hearth_error *err) {
    if (len == 0) return HEARTH_OK;
    size_t need = 0;
    hearth_status st = hearth_tokenize(tok, t, len, 0, NULL, 0, &need, err);
    if (st != HEARTH_OK && st != HEARTH_ERR_BUFFER_TOO_SMALL) return st;
    if (!grow((void **)&o->v, &o->cap, o->n + need + 1, sizeof *o->v)) {
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory tokenizing the chat");
    }
    size_t got = 0;
    st = hearth_tokenize(tok, t, len, 0, o->v + o->n, need, &got, err);
    if (st != HEARTH_OK) return st;
    o->n += got;
    return HEARTH_OK;
}

static hearth_status push_id(tokbuf *o, hearth_token id, hearth_error *err) {
    if (!grow((void **)&o->v, &o->cap, o->n + 1, sizeof *o->v)) {
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory tokenizing the chat");
    }
    o->v[o->n++] = id;
    return HEARTH_OK;
}

hearth_status chat_render_tokens(chat_family f, const hearth_tokenizer *tok,
                                 const chat_message *msgs, size_t n, const chat_options *opt,
                                 hearth_token **out, size_t *n_out, hearth_error *err) {
    return chat_render_tokens_tools(f, tok, msgs, n, opt, NULL, out, n_out, err);
}

hearth_status chat_render_tokens_tools(chat_family f, const hearth_tokenizer *tok,
                                       const chat_message *msgs, size_t n, const chat_options *opt,
                                       const chat_tools *tools, hearth_token **out, size_t *n_out,
                                       hearth_error *err) {
    *out = NULL;
    *n_out = 0;
    builder b;
    hearth_status st = render(f, msgs, n, opt, tools, &b, err);
    if (st != HEARTH_OK) return st;
    tokbuf o = {NULL, 0, 0};
    /* A run of plain text is b.text[run_off .. run_off + run_len): the
     * segments are contiguous in b.text, so a run is one slice, unless a
     * control token the vocabulary lacks joins it. */
    char *joined = NULL;
    size_t n_joined = 0, cap_joined = 0;
    for (size_t i = 0; i <= b.n_segs && st == HEARTH_OK; i++) {
        const seg *s = i < b.n_segs ? &b.segs[i] : NULL;
        hearth_token id = -1;
        if (s && s->kind == SEG_SPECIAL) id = special_id(tok, b.text + s->off, s->len);
        if (s && (s->kind == SEG_BOS || s->kind == SEG_EOS)) {
            id = s->kind == SEG_BOS ? hearth_tokenizer_bos(tok) : hearth_tokenizer_eos(tok);
            if (id < 0) continue; /* the vocabulary has none: nothing to place */
        }
        if (s && id < 0) {
            if (!grow((void **)&joined, &cap_joined, n_joined + s->len + 1, 1)) {
                st = error_set(err, HEARTH_ERR_NOMEM, "out of memory tokenizing the chat");
                break;
            }
            memcpy(joined + n_joined, b.text + s->off, s->len);
            n_joined += s->len;
            continue;
        }
        st = flush_text(tok, joined, n_joined, &o, err);
        n_joined = 0;
        if (st == HEARTH_OK && s) st = push_id(&o, id, err);
    }
    free(joined);
    free(b.text);
    free(b.segs);
    if (st != HEARTH_OK) {
        free(o.v);
        return st;
    }
    *out = o.v;
    *n_out = o.n;
    return HEARTH_OK;
}

size_t chat_stop_tokens(chat_family f, const hearth_tokenizer *tok, hearth_token *out, size_t cap) {
    const char *names[2] = {NULL, NULL};
    switch (f) {
    case CHAT_CHATML:
    case CHAT_QWEN3: names[0] = "<|im_end|>"; break;
    case CHAT_LLAMA3:
        names[0] = "<|eot_id|>";
        names[1] = "<|eom_id|>";
        break;
    case CHAT_GEMMA: names[0] = "<end_of_turn>"; break;
    default: break;
    }
    size_t n = 0;
    for (int i = 0; i < 2 && names[i] && n < cap; i++) {
        hearth_token id = special_id(tok, names[i], strlen(names[i]));
        if (id >= 0) out[n++] = id;
    }
    return n;
}
