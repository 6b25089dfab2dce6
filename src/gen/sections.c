/* sections.c — sectional generation: outline → bounded sections → stitched text.
 *
 * A model that degenerates past a few hundred tokens can still write a long
 * text if no single sequence has to be long.  The planner here turns one
 * request into jobs: the outline (unless given), then one job per section,
 * each a fresh sequence whose prompt carries the topic, the outline, the
 * section's heading and the last few tokens of the section before — never
 * the draft — so no sequence grows past prompt + max_tokens.
 *
 * A section ends at the first sentence or paragraph end after min_tokens
 * (a sentence end is seen one token late: "." followed by a token that
 * starts with a space or a newline, so a closing quote stays with its
 * sentence), at max_tokens (cut back to its last sentence end), when the
 * model ends it, or when its loop guard finds a loop (cut back to the last
 * sentence end before the repeated part).  The guards of all sections
 * share one span history, so a section copying another is caught as well.
 *
 * The planner does not run the model: hearth_sections_next_job /
 * _push / _end_job let any batching loop drive it (the server's
 * scheduler), and hearth_sections_run is such a loop on a context of its
 * own — every running section is one sequence, and each step decodes one
 * token of each in one batch.
 *
 * Buffers are sized at creation for max_parallel running jobs; a job's
 * sampler is remade when the job starts (its seed is seed + section), so
 * allocations happen per section, never per token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"
#include "sample/loopguard.h"
#include "util/error.h"

#define MAX_HEADING   200  /* bytes of a heading */
#define PROMPT_TOKENS 8192 /* tokens of one prompt at most */
#define NO_JOB        (UINT32_MAX - 1)

typedef enum job_state { JOB_WAITING = 0, JOB_RUNNING = 1, JOB_DONE = 2 } job_state;

typedef struct section {
    char heading[MAX_HEADING + 1];
    job_state state;
    hearth_section_end end;
    hearth_loop_kind loop;
    hearth_token *tokens; /* (max_tokens) generated */
    uint32_t n_gen, n_keep, n_prompt;
    char *text; /* after the end: the kept tokens' text */
    size_t text_len;
} section;

typedef struct slot {
    uint32_t job; /* section index, HEARTH_SECTION_OUTLINE, or NO_JOB */
    hearth_sampler *smp;
    hearth_loop_guard *guard;
    hearth_token *prompt; /* (PROMPT_TOKENS) */
    size_t n_prompt;
    char *bytes; /* raw bytes of the generated tokens */
    size_t cap_bytes;
    uint32_t *end_off; /* (max_tokens + 1) bytes after each token */
} slot;

struct hearth_sections {
    const hearth_tokenizer *tok;
    hearth_sections_params p;
    int32_t n_vocab;
    size_t max_piece;
    char *topic;

    bool want_outline; /* the model writes the outline */
    job_state outline_state;
    hearth_token *outline_tokens; /* (outline_max_tokens) */
    uint32_t n_outline;
    uint32_t n_outline_prompt; /* tokens of the outline's prompt */
    char *outline;             /* "1. …\n2. …\n" */
    size_t outline_len;
    bool outline_handed;

    section sec[HEARTH_SECTIONS_MAX];
    uint32_t n_sec;
    slot *slots;
    uint32_t n_slots;
    span_index spans; /* shared by the sections' guards */

    uint32_t next_out; /* next section to hand out */
    char *doc;         /* stitched text */
    size_t doc_len, doc_cap;
    hearth_token *kept; /* (n_sec x max_tokens) */
    size_t n_kept;
    uint32_t n_generated, n_guard_stops, n_findings;
    bool stopped, repetition;

    char *scratch; /* prompt text and tail text */
    size_t cap_scratch;
};

const char *hearth_section_end_name(hearth_section_end e) {
    switch (e) {
    case HEARTH_SECTION_RUNNING: return "running";
    case HEARTH_SECTION_BOUNDARY: return "boundary";
    case HEARTH_SECTION_LENGTH: return "length";
    case HEARTH_SECTION_EOG: return "eog";
    case HEARTH_SECTION_LOOP: return "loop";
    case HEARTH_SECTION_CONTEXT: return "context";
    case HEARTH_SECTION_SKIPPED: return "skipped";
    }
    return "unknown";
}

hearth_sections_params hearth_sections_default_params(void) {
    hearth_sections_params p;
    memset(&p, 0, sizeof p);
    p.min_tokens = 250;
    p.max_tokens = 400;
    p.tail_tokens = 48;
    p.outline_max_tokens = 200;
    p.order = HEARTH_SECTIONS_CHAINED;
    p.max_parallel = 8;
    p.headings = true;
    p.sampling = hearth_sampler_default_params();
    p.guard = hearth_loop_guard_default_params();
    p.guard.action = HEARTH_LOOP_STOP_SECTION;
    return p;
}

/* ---------------------------------------------------------------- prompts */

typedef struct writer {
    char *out;
    size_t cap, n;
} writer;

static void w_put(writer *w, const char *s) {
    size_t k = strlen(s);
    if (w->n < w->cap) memcpy(w->out + w->n, s, w->cap - w->n < k ? w->cap - w->n : k);
    w->n += k;
}

size_t hearth_sections_format_plain(const hearth_section_prompt *what, char *out, size_t cap,
                                    void *arg) {
    (void)arg;
    writer w = {out, cap, 0};
    w_put(&w, what->topic);
    if (what->index == HEARTH_SECTION_OUTLINE) {
        char line[64];
        snprintf(line, sizeof line, "\n\nOutline in %u parts:\n1.", what->n_sections);
        w_put(&w, line);
        return w.n;
    }
    w_put(&w, "\n\nOutline:\n");
    w_put(&w, what->outline);
    w_put(&w, "\n");
    if (what->tail[0]) {
        w_put(&w, "... ");
        w_put(&w, what->tail);
        w_put(&w, "\n\n");
    }
    w_put(&w, "## ");
    w_put(&w, what->heading);
    w_put(&w, "\n\n");
    return w.n;
}

/* Copies one outline line into out as a heading: list markers ("#", "-",
 * "*", "1.", "2)") and blanks trimmed, cut at MAX_HEADING bytes on a
 * character boundary.  Returns its length (0: not a heading). */
static size_t clean_heading(const char *s, size_t n, char *out) {
    size_t a = 0;
    while (a < n && (s[a] == ' ' || s[a] == '\t' || s[a] == '#' || s[a] == '-' || s[a] == '*')) {
        a++;
    }
    size_t d = a;
    while (d < n && s[d] >= '0' && s[d] <= '9') d++;
    if (d > a && d < n && (s[d] == '.' || s[d] == ')')) a = d + 1;
    while (a < n && (s[a] == ' ' || s[a] == '\t')) a++;
    while (n > a && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    size_t len = n - a;
    if (len > MAX_HEADING) {
        len = MAX_HEADING;
        while (len > 0 && ((unsigned char)s[a + len] & 0xC0) == 0x80) len--;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[a + i];
        out[i] = c < 0x20 ? ' ' : (char)c;
    }
    out[len] = '\0';
    return len;
}

/* Parses text into headings (up to max); returns how many; with
 * complete_only, an unterminated last line does not count. */
static uint32_t parse_outline(hearth_sections *g, const char *text, size_t n, uint32_t max,
                              bool complete_only, bool store) {
    uint32_t k = 0;
    char tmp[MAX_HEADING + 1];
    for (size_t at = 0; at < n && k < max;) {
        size_t e = at;
        while (e < n && text[e] != '\n') e++;
        if (e == n && complete_only) break;
        size_t len = clean_heading(text + at, e - at, store ? g->sec[k].heading : tmp);
        if (len) k++;
        at = e + 1;
    }
    return k;
}

/* Builds g->outline ("1. …\n…") from the headings. */
static hearth_status build_outline_text(hearth_sections *g, hearth_error *err) {
    size_t cap = (size_t)g->n_sec * (MAX_HEADING + 16) + 1;
    char *o = malloc(cap);
    if (!o) return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the outline");
    size_t n = 0;
    for (uint32_t i = 0; i < g->n_sec; i++) {
        n += (size_t)snprintf(o + n, cap - n, "%u. %s\n", i + 1, g->sec[i].heading);
    }
    free(g->outline);
    g->outline = o;
    g->outline_len = n;
    return HEARTH_OK;
}

/* ---------------------------------------------------------------- create / free */

void hearth_sections_free(hearth_sections *g) {
    if (!g) return;
    for (uint32_t i = 0; i < HEARTH_SECTIONS_MAX; i++) {
        free(g->sec[i].tokens);
        free(g->sec[i].text);
    }
    if (g->slots) {
        for (uint32_t s = 0; s < g->n_slots; s++) {
            hearth_sampler_free(g->slots[s].smp);
            hearth_loop_guard_free(g->slots[s].guard);
            free(g->slots[s].prompt);
            free(g->slots[s].bytes);
            free(g->slots[s].end_off);
        }
        free(g->slots);
    }
    span_index_free(&g->spans);
    free(g->topic);
    free(g->outline_tokens);
    free(g->outline);
    free(g->doc);
    free(g->kept);
    free(g->scratch);
    free(g);
}

hearth_status hearth_sections_create(const hearth_tokenizer *tok, const hearth_sections_params *p,
                                     hearth_sections **out, hearth_error *err) {
    *out = NULL;
    if (!tok || !p) return error_set(err, HEARTH_ERR_INVALID_ARG, "sections: NULL argument");
    if (!p->topic || !p->topic[0]) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "sections: a topic is required");
    }
    if (p->n_sections > HEARTH_SECTIONS_MAX || (!p->outline && p->n_sections == 0)) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "sections: %u sections asked; 1..%d (0 only with an outline)",
                         p->n_sections, HEARTH_SECTIONS_MAX);
    }
    if (p->min_tokens < 1 || p->min_tokens > p->max_tokens || p->max_tokens > 8192 ||
        p->tail_tokens > 1024 || p->outline_max_tokens < 1 || p->outline_max_tokens > 8192 ||
        p->max_parallel < 1 || p->max_parallel > HEARTH_SECTIONS_MAX + 1 ||
        (unsigned)p->order > HEARTH_SECTIONS_ALTERNATE) {
        return error_set(err, HEARTH_ERR_INVALID_ARG,
                         "sections: bounds out of range (need 1 <= min_tokens %u <= max_tokens "
                         "%u <= 8192, tail_tokens %u <= 1024, outline_max_tokens %u in [1, "
                         "8192], max_parallel %u in [1, %d])",
                         p->min_tokens, p->max_tokens, p->tail_tokens, p->outline_max_tokens,
                         p->max_parallel, HEARTH_SECTIONS_MAX + 1);
    }
    hearth_sections *g = calloc(1, sizeof *g);
    if (!g) return error_set(err, HEARTH_ERR_NOMEM, "out of memory for sections");
    g->tok = tok;
    g->p = *p;
    g->n_vocab = hearth_tokenizer_n_vocab(tok);
    g->max_piece = hearth_tokenizer_max_piece(tok);
    g->topic = strdup(p->topic);
    g->p.topic = g->topic;
    g->p.outline = NULL;
    if (!g->p.format) g->p.format = hearth_sections_format_plain;
    hearth_status st = HEARTH_OK;
    if (!g->topic) goto nomem;

    if (p->outline) {
        uint32_t max = p->n_sections ? p->n_sections : HEARTH_SECTIONS_MAX;
        g->n_sec = parse_outline(g, p->outline, strlen(p->outline), max, false, true);
        if (g->n_sec == 0) {
            st = error_set(err, HEARTH_ERR_INVALID_ARG, "sections: the outline has no headings");
            goto fail;
        }
        for (; g->n_sec < p->n_sections; g->n_sec++) {
            snprintf(g->sec[g->n_sec].heading, sizeof g->sec[0].heading, "Part %u", g->n_sec + 1);
        }
        g->outline_state = JOB_DONE;
        g->outline_handed = true;
        if ((st = build_outline_text(g, err)) != HEARTH_OK) goto fail;
    } else {
        g->want_outline = true;
        g->n_sec = p->n_sections;
        g->outline_tokens = malloc(p->outline_max_tokens * sizeof *g->outline_tokens);
        if (!g->outline_tokens) goto nomem;
    }
    for (uint32_t i = 0; i < g->n_sec; i++) {
        g->sec[i].tokens = malloc(p->max_tokens * sizeof *g->sec[i].tokens);
        if (!g->sec[i].tokens) goto nomem;
    }
    g->kept = malloc((size_t)g->n_sec * p->max_tokens * sizeof *g->kept);
    if (!g->kept) goto nomem;

    uint32_t jobs = g->n_sec + (g->want_outline ? 1 : 0);
    g->n_slots = p->max_parallel < jobs ? p->max_parallel : jobs;
    g->slots = calloc(g->n_slots, sizeof *g->slots);
    if (!g->slots) goto nomem;
    uint32_t most = p->max_tokens > p->outline_max_tokens ? p->max_tokens : p->outline_max_tokens;
    for (uint32_t s = 0; s < g->n_slots; s++) {
        slot *sl = &g->slots[s];
        sl->job = NO_JOB;
        sl->prompt = malloc(PROMPT_TOKENS * sizeof *sl->prompt);
        sl->cap_bytes = (size_t)most * (g->max_piece + 1) + 1;
        sl->bytes = malloc(sl->cap_bytes);
        sl->end_off = malloc(((size_t)most + 1) * sizeof *sl->end_off);
        if (!sl->prompt || !sl->bytes || !sl->end_off) goto nomem;
        if (p->guard.action != HEARTH_LOOP_OFF) {
            st = hearth_loop_guard_create(&p->guard, &sl->guard, err);
            if (st != HEARTH_OK) goto fail;
        }
    }
    if (p->guard.action != HEARTH_LOOP_OFF && p->guard.span_len) {
        st = span_index_init(&g->spans, p->guard.history, err);
        if (st != HEARTH_OK) goto fail;
    }
    /* Check the sampling parameters once, up front. */
    hearth_sampler *probe = NULL;
    st = hearth_sampler_create(&p->sampling, g->n_vocab, &probe, err);
    hearth_sampler_free(probe);
    if (st != HEARTH_OK) goto fail;
    g->cap_scratch = 1 << 16;
    g->scratch = malloc(g->cap_scratch);
    if (!g->scratch) goto nomem;
    *out = g;
    return HEARTH_OK;
nomem:
    st = error_set(err, HEARTH_ERR_NOMEM, "out of memory for sections");
fail:
    hearth_sections_free(g);
    return st;
}

/* ---------------------------------------------------------------- jobs */

static slot *slot_of(hearth_sections *g, uint32_t job) {
    for (uint32_t s = 0; s < g->n_slots; s++) {
        if (g->slots[s].job == job) return &g->slots[s];
    }
    return NULL;
}

/* Whether section i may start: its outline exists and the section whose
 * tail it carries is done. */
static int32_t dependency(const hearth_sections *g, uint32_t i) {
    if (g->p.tail_tokens == 0 || i == 0) return -1;
    switch (g->p.order) {
    case HEARTH_SECTIONS_CHAINED: return (int32_t)i - 1;
    case HEARTH_SECTIONS_PARALLEL: return -1;
    case HEARTH_SECTIONS_ALTERNATE: return (i % 2) ? (int32_t)i - 1 : -1;
    }
    return -1;
}

/* Makes room in the scratch buffer for n bytes. */
static bool scratch_reserve(hearth_sections *g, size_t n) {
    if (n <= g->cap_scratch) return true;
    char *s = realloc(g->scratch, n);
    if (!s) return false;
    g->scratch = s;
    g->cap_scratch = n;
    return true;
}

/* The text of the last tail_tokens kept tokens of section d, starting at a
 * word, in g->scratch from offset at; returns its length. */
static size_t tail_text(hearth_sections *g, uint32_t d, size_t at) {
    section *s = &g->sec[d];
    uint32_t k = s->n_keep < g->p.tail_tokens ? s->n_keep : g->p.tail_tokens;
    size_t need = (size_t)k * (g->max_piece + 1) + 1;
    if (!scratch_reserve(g, at + need)) return 0;
    size_t n = 0;
    hearth_error e;
    if (hearth_detokenize(g->tok, s->tokens + s->n_keep - k, k, HEARTH_DETOK_KEEP_LEADING_SPACE,
                          g->scratch + at, need - 1, &n, &e) != HEARTH_OK) {
        n = 0;
    }
    char *t = g->scratch + at;
    size_t a = 0;
    /* Cut mid-text: start at a word (a token that starts with a space does). */
    if (k < s->n_keep && n > 0 && t[0] != ' ' && t[0] != '\n') {
        while (a < n && t[a] != ' ' && t[a] != '\n') a++;
    }
    while (a < n && (t[a] == ' ' || t[a] == '\n')) a++;
    for (size_t i = 0; i < n - a; i++) t[i] = t[a + i] == '\n' ? ' ' : t[a + i];
    t[n - a] = '\0';
    return n - a;
}

/* Formats and tokenizes the prompt of job into sl->prompt. */
static hearth_status make_prompt(hearth_sections *g, uint32_t job, slot *sl, hearth_error *err) {
    hearth_section_prompt what;
    memset(&what, 0, sizeof what);
    what.index = job;
    what.n_sections = g->n_sec;
    what.topic = g->topic;
    what.outline = g->outline ? g->outline : "";
    what.heading = job == HEARTH_SECTION_OUTLINE ? "" : g->sec[job].heading;
    what.tail = "";
    size_t tail_at = 0, tail_len = 0;
    if (job != HEARTH_SECTION_OUTLINE) {
        int32_t d = dependency(g, job);
        if (d >= 0) {
            tail_len = tail_text(g, (uint32_t)d, 0);
            tail_at = tail_len + 1;
        }
    }
    if (g->p.prompt_tokens) {
        what.tail = tail_len ? g->scratch : "";
        size_t n_tok = 0;
        hearth_status st =
            g->p.prompt_tokens(&what, sl->prompt, PROMPT_TOKENS, &n_tok, g->p.format_arg, err);
        if (st == HEARTH_ERR_BUFFER_TOO_SMALL) {
            return error_set(err, HEARTH_ERR_CONTEXT_FULL,
                             "sections: a prompt of %zu tokens is over %d", n_tok, PROMPT_TOKENS);
        }
        if (st != HEARTH_OK) return st;
        if (n_tok == 0) return error_set(err, HEARTH_ERR_INVALID_ARG, "sections: an empty prompt");
        sl->n_prompt = n_tok;
        return HEARTH_OK;
    }
    /* The tail sits at the start of scratch; the prompt text after it. */
    for (int attempt = 0; attempt < 2; attempt++) {
        what.tail = tail_len ? g->scratch : "";
        if (!tail_len && g->cap_scratch > 0) g->scratch[0] = '\0';
        size_t room = g->cap_scratch - tail_at;
        size_t n = g->p.format(&what, g->scratch + tail_at, room, g->p.format_arg);
        if (n <= room) {
            size_t n_tok = 0;
            hearth_status st =
                hearth_tokenize(g->tok, g->scratch + tail_at, n, HEARTH_TOKENIZE_ADD_SPECIAL,
                                sl->prompt, PROMPT_TOKENS, &n_tok, err);
            if (st == HEARTH_ERR_BUFFER_TOO_SMALL) {
                return error_set(err, HEARTH_ERR_CONTEXT_FULL,
                                 "sections: a prompt of %zu tokens is over %d", n_tok,
                                 PROMPT_TOKENS);
            }
            if (st != HEARTH_OK) return st;
            if (n_tok == 0) {
                return error_set(err, HEARTH_ERR_INVALID_ARG, "sections: an empty prompt");
            }
            sl->n_prompt = n_tok;
            return HEARTH_OK;
        }
        if (n > (size_t)1 << 26 || !scratch_reserve(g, tail_at + n + 1)) break;
    }
    return error_set(err, HEARTH_ERR_NOMEM, "sections: no room for a prompt");
}

hearth_status hearth_sections_next_job(hearth_sections *g, hearth_section_job *job,
                                       hearth_error *err) {
    memset(job, 0, sizeof *job);
    if (!g || g->stopped) return HEARTH_OK;
    slot *sl = slot_of(g, NO_JOB);
    if (!sl) return HEARTH_OK;
    uint32_t pick = NO_JOB;
    if (g->want_outline && g->outline_state != JOB_DONE) {
        if (g->outline_state == JOB_WAITING) pick = HEARTH_SECTION_OUTLINE;
    } else {
        for (uint32_t i = 0; i < g->n_sec && pick == NO_JOB; i++) {
            if (g->sec[i].state != JOB_WAITING) continue;
            int32_t d = dependency(g, i);
            if (d < 0 || g->sec[d].state == JOB_DONE) pick = i;
        }
    }
    if (pick == NO_JOB) return HEARTH_OK;
    hearth_status st = make_prompt(g, pick, sl, err);
    if (st != HEARTH_OK) return st;
    hearth_sampler_free(sl->smp);
    sl->smp = NULL;
    hearth_sampler_params sp = g->p.sampling;
    if (pick != HEARTH_SECTION_OUTLINE) sp.seed += pick + 1;
    st = hearth_sampler_create(&sp, g->n_vocab, &sl->smp, err);
    if (st != HEARTH_OK) return st;
    for (size_t i = 0; i < sl->n_prompt; i++) hearth_sampler_accept(sl->smp, sl->prompt[i]);
    if (sl->guard) {
        /* The outline keeps its own history; sections share the document's. */
        loop_guard_share_spans(sl->guard,
                               pick == HEARTH_SECTION_OUTLINE || !g->spans.cap ? NULL : &g->spans);
        hearth_loop_guard_reset(sl->guard);
        /* The stitched text runs on from the section before: a span that
         * crosses the join is a repeat too. */
        int32_t d = pick == HEARTH_SECTION_OUTLINE ? -1 : dependency(g, pick);
        if (d < 0 && pick != HEARTH_SECTION_OUTLINE && pick > 0 &&
            g->sec[pick - 1].state == JOB_DONE) {
            d = (int32_t)pick - 1;
        }
        if (d >= 0 && g->sec[d].end != HEARTH_SECTION_SKIPPED) {
            const section *prev = &g->sec[d];
            uint32_t k = g->p.guard.span_len > 1 ? g->p.guard.span_len - 1 : 0;
            if (k > prev->n_keep) k = prev->n_keep;
            loop_guard_seed(sl->guard, prev->tokens + prev->n_keep - k, k);
        }
        hearth_sampler_set_loop_guard(sl->smp, sl->guard);
    }
    sl->job = pick;
    sl->end_off[0] = 0;
    if (pick == HEARTH_SECTION_OUTLINE) {
        g->outline_state = JOB_RUNNING;
        g->n_outline = 0;
        g->n_outline_prompt = (uint32_t)sl->n_prompt;
    } else {
        g->sec[pick].state = JOB_RUNNING;
        g->sec[pick].n_gen = 0;
        g->sec[pick].n_prompt = (uint32_t)sl->n_prompt;
    }
    job->index = pick;
    job->prompt = sl->prompt;
    job->n_prompt = sl->n_prompt;
    job->max_tokens = pick == HEARTH_SECTION_OUTLINE ? g->p.outline_max_tokens : g->p.max_tokens;
    job->sampler = sl->smp;
    return HEARTH_OK;
}

/* Whether bytes t[0..n) end a sentence: '.', '!' or '?' (not a decimal
 * point), maybe followed by closing quotes or brackets. */
static bool ends_sentence(const char *t, size_t n) {
    while (n > 0) {
        unsigned char c = (unsigned char)t[n - 1];
        if (c == '"' || c == '\'' || c == ')' || c == ']' || c == '*' || c == '_') {
            n--;
        } else if (n >= 3 && (unsigned char)t[n - 3] == 0xE2 && (unsigned char)t[n - 2] == 0x80 &&
                   (c == 0x9D || c == 0x99)) { /* ” ’ */
            n -= 3;
        } else {
            break;
        }
    }
    if (n == 0) return false;
    char c = t[n - 1];
    if (c == '!' || c == '?') return true;
    if (c != '.') return false;
    return n < 2 || t[n - 2] < '0' || t[n - 2] > '9';
}

/* Whether the text of a slot's first k tokens ends at a boundary: a line
 * end, or a sentence end that the next token (if any) starts a new word
 * after. */
static bool boundary_at(const slot *sl, uint32_t k, uint32_t n_gen) {
    if (k == 0) return false;
    size_t e = sl->end_off[k];
    if (e == 0) return false;
    if (sl->bytes[e - 1] == '\n') return true;
    if (!ends_sentence(sl->bytes, e)) return false;
    if (k == n_gen) return true;
    size_t next = sl->end_off[k + 1];
    if (next == e) return true; /* the next token shows no text */
    char c = sl->bytes[e];
    return c == ' ' || c == '\n' || c == '\t';
}

/* The last boundary at or before k tokens, or 0. */
static uint32_t last_boundary(const slot *sl, uint32_t k, uint32_t n_gen) {
    for (uint32_t j = k; j > 0; j--) {
        if (boundary_at(sl, j, n_gen)) return j;
    }
    return 0;
}

static void finish_outline(hearth_sections *g, slot *sl) {
    size_t n = sl->end_off[g->n_outline];
    uint32_t got = parse_outline(g, sl->bytes, n, g->n_sec, false, true);
    for (uint32_t i = got; i < g->n_sec; i++) {
        snprintf(g->sec[i].heading, sizeof g->sec[0].heading, "Part %u", i + 1);
    }
    hearth_error e;
    if (build_outline_text(g, &e) != HEARTH_OK) g->stopped = true;
    g->outline_state = JOB_DONE;
    sl->job = NO_JOB;
}

/* Ends section i (running in sl) with why, cutting what must go. */
static void finish_section(hearth_sections *g, slot *sl, uint32_t i, hearth_section_end why,
                           uint32_t keep) {
    section *s = &g->sec[i];
    if (why == HEARTH_SECTION_LOOP || why == HEARTH_SECTION_LENGTH) {
        uint32_t b = last_boundary(sl, keep, s->n_gen);
        if (b > 0) keep = b;
    }
    s->n_keep = keep;
    s->end = why;
    s->state = JOB_DONE;
    size_t cap = (size_t)keep * (g->max_piece + 1) + 1;
    s->text = malloc(cap);
    s->text_len = 0;
    if (s->text) {
        hearth_error e;
        if (hearth_detokenize(g->tok, s->tokens, keep, 0, s->text, cap - 1, &s->text_len, &e) !=
            HEARTH_OK) {
            s->text_len = 0;
        }
        /* A section starts and ends on its own lines. */
        size_t a = 0, z = s->text_len;
        while (a < z && (s->text[a] == ' ' || s->text[a] == '\n')) a++;
        while (z > a && (s->text[z - 1] == ' ' || s->text[z - 1] == '\n')) z--;
        memmove(s->text, s->text + a, z - a);
        s->text_len = z - a;
        s->text[s->text_len] = '\0';
    }
    sl->job = NO_JOB;
}

hearth_sampler *hearth_sections_job_sampler(hearth_sections *g, uint32_t index) {
    slot *sl = g ? slot_of(g, index) : NULL;
    return sl ? sl->smp : NULL;
}

bool hearth_sections_push(hearth_sections *g, uint32_t index, hearth_token t) {
    if (!g) return true;
    slot *sl = slot_of(g, index);
    if (!sl || t < 0 || t >= g->n_vocab) return true;
    g->n_generated++;
    bool outline = index == HEARTH_SECTION_OUTLINE;
    uint32_t *n = outline ? &g->n_outline : &g->sec[index].n_gen;
    uint32_t max = outline ? g->p.outline_max_tokens : g->p.max_tokens;
    if (*n >= max) return true;
    (outline ? g->outline_tokens : g->sec[index].tokens)[*n] = t;
    size_t len = 0;
    size_t at = sl->end_off[*n];
    hearth_error e;
    if (hearth_detokenize(g->tok, &t, 1, HEARTH_DETOK_KEEP_LEADING_SPACE, sl->bytes + at,
                          sl->cap_bytes - at, &len, &e) != HEARTH_OK) {
        len = 0;
    }
    (*n)++;
    sl->end_off[*n] = (uint32_t)(at + len);

    if (outline) {
        bool enough = parse_outline(g, sl->bytes, at + len, g->n_sec, true, false) >= g->n_sec;
        if (enough || *n >= max) {
            finish_outline(g, sl);
            return true;
        }
        return false;
    }
    section *s = &g->sec[index];
    hearth_loop_kind found = hearth_sampler_loop_found(sl->smp);
    if (found != HEARTH_LOOP_NONE) {
        g->n_findings++;
        hearth_loop_action act = g->p.guard.action;
        if (act == HEARTH_LOOP_STOP_SECTION || act == HEARTH_LOOP_STOP) {
            hearth_loop_report r;
            hearth_loop_guard_report_get(sl->guard, &r);
            uint32_t keep = r.loop_tokens < s->n_gen ? s->n_gen - r.loop_tokens : 0;
            s->loop = found;
            g->n_guard_stops++;
            finish_section(g, sl, index, HEARTH_SECTION_LOOP, keep);
            if (act == HEARTH_LOOP_STOP) {
                g->repetition = true;
                hearth_sections_stop(g);
            }
            return true;
        }
    }
    /* A sentence end is known one token late, a line end at once. */
    if (s->n_gen > g->p.min_tokens && boundary_at(sl, s->n_gen - 1, s->n_gen)) {
        finish_section(g, sl, index, HEARTH_SECTION_BOUNDARY, s->n_gen - 1);
        return true;
    }
    if (s->n_gen >= g->p.min_tokens && len && sl->bytes[at + len - 1] == '\n') {
        finish_section(g, sl, index, HEARTH_SECTION_BOUNDARY, s->n_gen);
        return true;
    }
    if (s->n_gen >= max) {
        finish_section(g, sl, index, HEARTH_SECTION_LENGTH, s->n_gen);
        return true;
    }
    return false;
}

void hearth_sections_end_job(hearth_sections *g, uint32_t index, hearth_section_end why) {
    if (!g) return;
    slot *sl = slot_of(g, index);
    if (!sl) return;
    if (index == HEARTH_SECTION_OUTLINE) {
        finish_outline(g, sl);
    } else {
        finish_section(g, sl, index, why, g->sec[index].n_gen);
    }
}

void hearth_sections_stop(hearth_sections *g) {
    if (!g) return;
    g->stopped = true;
    /* Running sections are dropped: the stitched text ends before them. */
    for (uint32_t s = 0; s < g->n_slots; s++) {
        slot *sl = &g->slots[s];
        if (sl->job == NO_JOB) continue;
        if (sl->job == HEARTH_SECTION_OUTLINE) {
            finish_outline(g, sl);
        } else {
            uint32_t i = sl->job;
            finish_section(g, sl, i, HEARTH_SECTION_LENGTH, g->sec[i].n_gen);
            g->sec[i].end = HEARTH_SECTION_SKIPPED;
        }
    }
    if (g->outline_state != JOB_DONE) g->outline_state = JOB_DONE;
    for (uint32_t i = 0; i < g->n_sec; i++) {
        if (g->sec[i].state == JOB_WAITING) {
            g->sec[i].state = JOB_DONE;
            g->sec[i].end = HEARTH_SECTION_SKIPPED;
        }
    }
}

bool hearth_sections_done(const hearth_sections *g) {
    if (!g) return true;
    if (g->want_outline && g->outline_state != JOB_DONE) return false;
    for (uint32_t i = 0; i < g->n_sec; i++) {
        if (g->sec[i].state != JOB_DONE) return false;
    }
    return true;
}

static bool doc_append(hearth_sections *g, const char *s, size_t n) {
    if (g->doc_len + n + 1 > g->doc_cap) {
        size_t cap = g->doc_cap ? g->doc_cap : 4096;
        while (cap < g->doc_len + n + 1) cap *= 2;
        char *d = realloc(g->doc, cap);
        if (!d) return false;
        g->doc = d;
        g->doc_cap = cap;
    }
    memcpy(g->doc + g->doc_len, s, n);
    g->doc_len += n;
    g->doc[g->doc_len] = '\0';
    return true;
}

bool hearth_sections_next_section(hearth_sections *g, hearth_section_info *out) {
    if (!g || !out) return false;
    memset(out, 0, sizeof *out);
    if (!g->outline_handed) {
        if (g->outline_state != JOB_DONE || !g->outline) return false;
        g->outline_handed = true;
        out->index = HEARTH_SECTION_OUTLINE;
        out->heading = "";
        out->text = g->outline;
        out->text_len = g->outline_len;
        out->n_tokens = out->n_generated = g->n_outline;
        out->n_prompt = g->n_outline_prompt;
        out->end = HEARTH_SECTION_BOUNDARY;
        return true;
    }
    if (g->next_out >= g->n_sec || g->sec[g->next_out].state != JOB_DONE) return false;
    uint32_t i = g->next_out++;
    section *s = &g->sec[i];
    if (s->end != HEARTH_SECTION_SKIPPED) {
        if (g->p.headings) {
            if (g->doc_len) doc_append(g, "\n", 1);
            doc_append(g, "## ", 3);
            doc_append(g, s->heading, strlen(s->heading));
            doc_append(g, "\n\n", 2);
        } else if (g->doc_len) {
            doc_append(g, "\n\n", 2);
        }
        if (s->text) doc_append(g, s->text, s->text_len);
        if (g->p.headings || s->text_len) doc_append(g, "\n", 1);
        memcpy(g->kept + g->n_kept, s->tokens, s->n_keep * sizeof *g->kept);
        g->n_kept += s->n_keep;
    }
    out->index = i;
    out->heading = s->heading;
    out->text = s->text ? s->text : "";
    out->text_len = s->text ? s->text_len : 0;
    out->n_tokens = s->n_keep;
    out->n_generated = s->n_gen;
    out->n_prompt = s->n_prompt;
    out->end = s->end;
    out->loop = s->loop;
    return true;
}

void hearth_sections_result_get(const hearth_sections *g, hearth_sections_result *out) {
    memset(out, 0, sizeof *out);
    if (!g) return;
    out->n_sections = g->n_sec;
    out->text = g->doc ? g->doc : "";
    out->text_len = g->doc_len;
    out->tokens = g->kept;
    out->n_tokens = g->n_kept;
    out->n_generated = g->n_generated;
    out->n_outline = g->n_outline;
    out->n_guard_stops = g->n_guard_stops;
    out->n_guard_findings = g->n_findings;
    out->repetition = g->repetition;
    for (uint32_t i = 0; i < g->n_sec; i++) {
        out->section_tokens[i] = g->sec[i].n_keep;
        out->section_end[i] = g->sec[i].end;
    }
}

/* ---------------------------------------------------------------- the driver */

typedef struct lane {
    uint32_t job; /* NO_JOB when idle */
    hearth_sampler *smp;
    int32_t pos;          /* next position */
    hearth_token pending; /* sampled, not yet decoded */
} lane;

/* Samples the next token of the job in lane l from logits; returns false
 * when the job ended. */
static bool lane_sample(hearth_sections *g, lane *l, const float *logits, uint32_t n_ctx) {
    hearth_token t = hearth_sampler_sample(l->smp, logits);
    if (t < 0 || hearth_tokenizer_is_eog(g->tok, t)) {
        hearth_sections_end_job(g, l->job, HEARTH_SECTION_EOG);
        return false;
    }
    hearth_sampler_accept(l->smp, t);
    if (hearth_sections_push(g, l->job, t)) return false;
    if ((uint32_t)l->pos >= n_ctx) {
        hearth_sections_end_job(g, l->job, HEARTH_SECTION_CONTEXT);
        return false;
    }
    l->pending = t;
    return true;
}

hearth_status hearth_sections_run(hearth_sections *g, const hearth_model *model,
                                  const hearth_context_params *cp, hearth_section_fn cb, void *arg,
                                  hearth_error *err) {
    if (!g || !model) return error_set(err, HEARTH_ERR_INVALID_ARG, "sections: NULL argument");
    hearth_context_params c = cp ? *cp : hearth_context_default_params();
    uint32_t n_train = hearth_model_n_ctx_train(model);
    if (!c.n_ctx) c.n_ctx = n_train < 4096 ? n_train : 4096;
    c.n_seq = g->n_slots;
    c.n_outputs = g->n_slots;
    if (c.n_batch == 0) c.n_batch = 512;
    if (c.n_batch < g->n_slots) c.n_batch = g->n_slots;
    hearth_context *ctx = NULL;
    hearth_status st = hearth_context_create(model, &c, &ctx, err);
    if (st != HEARTH_OK) return st;
    uint32_t nb = c.n_batch;
    hearth_token *b_tok = malloc(nb * sizeof *b_tok);
    int32_t *b_pos = malloc(nb * sizeof *b_pos), *b_seq = malloc(nb * sizeof *b_seq);
    bool *b_out = malloc(nb * sizeof *b_out);
    uint32_t *b_lane = malloc(nb * sizeof *b_lane);
    lane *lanes = calloc(g->n_slots, sizeof *lanes);
    if (!b_tok || !b_pos || !b_seq || !b_out || !b_lane || !lanes) {
        st = error_set(err, HEARTH_ERR_NOMEM, "out of memory for the sections run");
        goto out;
    }
    for (uint32_t s = 0; s < g->n_slots; s++) lanes[s].job = NO_JOB;
    bool go_on = true;
    while (go_on && !hearth_sections_done(g)) {
        /* A lane whose job the planner ended (a stop) goes idle. */
        for (uint32_t s = 0; s < g->n_slots; s++) {
            if (g->slots[s].job != lanes[s].job) lanes[s].job = NO_JOB;
        }
        /* Start what can start; each prompt is prefilled on its own. */
        for (;;) {
            hearth_section_job job;
            st = hearth_sections_next_job(g, &job, err);
            if (st != HEARTH_OK) goto out;
            if (!job.prompt) break;
            slot *sl = slot_of(g, job.index);
            uint32_t s = (uint32_t)(sl - g->slots);
            lane *l = &lanes[s];
            l->job = job.index;
            l->smp = job.sampler;
            hearth_kv_truncate(ctx, (int32_t)s, 0);
            if (job.n_prompt >= c.n_ctx) {
                hearth_sections_end_job(g, job.index, HEARTH_SECTION_CONTEXT);
                l->job = NO_JOB;
                continue;
            }
            for (size_t at = 0; at < job.n_prompt; at += nb) {
                uint32_t m = (uint32_t)(job.n_prompt - at < nb ? job.n_prompt - at : nb);
                for (uint32_t i = 0; i < m; i++) {
                    b_pos[i] = (int32_t)(at + i);
                    b_seq[i] = (int32_t)s;
                    b_out[i] = at + i + 1 == job.n_prompt;
                }
                hearth_batch b = {m, job.prompt + at, b_pos, b_seq, b_out};
                st = hearth_decode(ctx, &b, err);
                if (st != HEARTH_OK) goto out;
            }
            l->pos = (int32_t)job.n_prompt;
            uint32_t last = (uint32_t)((job.n_prompt - 1) % nb);
            if (!lane_sample(g, l, hearth_get_logits(ctx, last), c.n_ctx)) l->job = NO_JOB;
        }
        /* One token of every running section in one batch. */
        uint32_t m = 0;
        for (uint32_t s = 0; s < g->n_slots && m < nb; s++) {
            lane *l = &lanes[s];
            if (l->job == NO_JOB) continue;
            b_tok[m] = l->pending;
            b_pos[m] = l->pos;
            b_seq[m] = (int32_t)s;
            b_out[m] = true;
            b_lane[m] = s;
            m++;
        }
        if (m > 0) {
            hearth_batch b = {m, b_tok, b_pos, b_seq, b_out};
            st = hearth_decode(ctx, &b, err);
            if (st != HEARTH_OK) goto out;
            for (uint32_t j = 0; j < m; j++) {
                lane *l = &lanes[b_lane[j]];
                l->pos++;
                if (!lane_sample(g, l, hearth_get_logits(ctx, j), c.n_ctx)) l->job = NO_JOB;
            }
        } else if (!hearth_sections_done(g)) {
            /* Nothing runs and nothing can start: only a bug gets here. */
            bool waiting = false;
            for (uint32_t i = 0; i < g->n_sec; i++) waiting |= g->sec[i].state == JOB_WAITING;
            if (!waiting) break;
            st = error_set(err, HEARTH_ERR_INTERNAL, "sections: no job can start");
            goto out;
        }
        hearth_section_info info;
        while (go_on && hearth_sections_next_section(g, &info)) {
            if (cb && !cb(&info, arg)) {
                hearth_sections_stop(g);
                go_on = false;
            }
        }
    }
    hearth_section_info info;
    while (hearth_sections_next_section(g, &info)) {
        if (cb && go_on && !cb(&info, arg)) go_on = false;
    }
    st = HEARTH_OK;
out:
    free(b_tok);
    free(b_pos);
    free(b_seq);
    free(b_out);
    free(b_lane);
    free(lanes);
    hearth_context_free(ctx);
    return st;
}
