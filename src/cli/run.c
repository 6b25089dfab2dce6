/* run.c — `hearth run`: generate a continuation of a prompt.
 *
 * Plans the memory of the model and context (refusing, with the
 * breakdown, what does not fit --memory-budget), loads the model, encodes
 * the prompt (with BOS when the vocabulary wants it), feeds it in
 * batches, then samples token by token, streaming text to stdout as whole
 * UTF-8 characters (or, with --ids, printing the prompt ids and the
 * generated ids on two lines).  Timings go to stderr.  Every bad input —
 * a missing model, a bad flag value, a prompt longer than the context, a
 * budget too small — is one error line and a non-zero exit, with nothing
 * on stdout.
 *
 * --json-schema and --grammar attach a grammar to the sampler (after the
 * prompt, with -n as its token budget so the text always ends complete);
 * --loop-guard attaches a loop guard; --sections hands the whole run to
 * sectional generation (sections.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/sections.h"
#include "hearth.h"
#include "util/threadpool.h"

static const char run_usage[] =
    "usage: hearth run -m MODEL [-p PROMPT] [options]\n"
    "\n"
    "Generates a continuation of PROMPT with the GGUF model MODEL and streams it to stdout.\n"
    "Prompt and generation speed are printed to stderr after the run.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE        GGUF model to load (required)\n"
    "  -p, --prompt TEXT       prompt text (default: empty, generation starts from BOS)\n"
    "  -f, --file FILE         read the prompt from FILE\n"
    "  -n, --n-predict N       tokens to generate (default 256; -1 = until the end of text or\n"
    "                          the context is full)\n"
    "  -c, --ctx N             context size in tokens (default: the model's, at most 4096)\n"
    "  -t, --threads N         threads (default: one per CPU core)\n"
    "      --temp T            temperature; 0 = greedy (default 0.8)\n"
    "      --top-k K           keep the K most likely tokens; 0 = off (default 40)\n"
    "      --top-p P           keep the smallest set of tokens with probability >= P; 1 = off\n"
    "                          (default 0.95)\n"
    "      --min-p P           drop tokens less likely than P x the most likely; 0 = off\n"
    "                          (default 0.05)\n"
    "      --repeat-penalty R  divide the logits of recent tokens by R; 1 = off (default 1)\n"
    "      --presence-penalty A   subtract A from logits of recent tokens (default 0)\n"
    "      --frequency-penalty A  subtract A x count from logits of recent tokens (default 0)\n"
    "      --repeat-last-n N   how many recent tokens the penalties consider (default 64)\n"
    "      --seed S            random seed; the same seed gives the same output\n"
    "                          (default: from the clock)\n"
    "      --ids               print the prompt ids and the generated ids (space-separated,\n"
    "                          one line each) instead of text\n"
    "      --json-schema FILE  only write JSON that the JSON schema in FILE accepts\n"
    "      --grammar FILE      only write text of the GBNF grammar in FILE\n"
    "      --loop-guard stop|penalize|off  what to do on a loop (a repeating cycle, a span\n"
    "                          seen before, few distinct 4-grams): end the generation, or\n"
    "                          lower the logits that continue it (default off; with\n"
    "                          --sections stop, which ends the section)\n"
    "      --sections N        write the text as N bounded sections from an outline, the\n"
    "                          prompt being the topic (0 with --outline: one per heading)\n"
    "      --outline FILE      the outline: one heading per line (default: the model writes it)\n"
    "      --section-tokens N|MIN..MAX  a section ends at a sentence end after MIN tokens, by\n"
    "                          MAX at the latest (default 250..400; N alone: 5/8 N..N)\n"
    "      --section-order chained|parallel|alternate  chained: each section carries the tail\n"
    "                          of the one before; parallel: none, all run at once;\n"
    "                          alternate: every second one does (default chained)\n"
    "      --section-tail N    tokens of the previous section in a prompt (default 48)\n"
    "      --kv-type f16|f32   KV cache element type (default f16)\n";

/* In pieces: C11 compilers need only take string literals of 4095 bytes. */
static const char run_usage_tail[] =
    "      --verbose           describe the model and context, and print the memory table,\n"
    "                          on stderr\n"
    "  -h, --help              show this help\n";

typedef struct run_opts {
    const char *model;
    const char *prompt;
    const char *prompt_file;
    long long n_predict;
    long long n_ctx;
    long long n_threads;
    bool ids;
    bool verbose;
    bool seed_given;
    hearth_model_params mp;
    hearth_kv_type kv_type;
    hearth_sampler_params sp;
    const char *json_schema; /* --json-schema FILE */
    const char *grammar;     /* --grammar FILE */
    bool guard_given;
    hearth_loop_action guard;
    long long sections; /* -1: not sectional */
    bool section_flag;  /* a flag only --sections takes was given */
    cli_sections_opts so;
} run_opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Parses argv into o; returns 0 to go on, or the exit status (0 after
 * --help, 2 on a bad flag). */
static int parse_run_args(int argc, char **argv, run_opts *o, bool *done) {
    *done = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        long long ll;
#define VALUE()                                                                                    \
    do {                                                                                           \
        if (!(v = cli_value(argc, argv, &i))) return 2;                                            \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(run_usage, stdout);
            fputs(CLI_MEMORY_USAGE, stdout);
            fputs(run_usage_tail, stdout);
            *done = true;
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            VALUE();
            o->model = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            VALUE();
            o->prompt = v;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            VALUE();
            o->prompt_file = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            VALUE();
            if (!cli_parse_int(a, v, -1, 1 << 30, &o->n_predict)) return 2;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            VALUE();
            if (!cli_parse_int(a, v, 1, 1 << 24, &o->n_ctx)) return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            VALUE();
            if (!cli_parse_int(a, v, 1, 1024, &o->n_threads)) return 2;
        } else if (!strcmp(a, "--temp")) {
            VALUE();
            if (!cli_parse_float(a, v, 0.0, 100.0, &o->sp.temperature)) return 2;
        } else if (!strcmp(a, "--top-k")) {
            VALUE();
            if (!cli_parse_int(a, v, 0, 1 << 30, &ll)) return 2;
            o->sp.top_k = (int32_t)ll;
        } else if (!strcmp(a, "--top-p")) {
            VALUE();
            if (!cli_parse_float(a, v, 1e-6, 1.0, &o->sp.top_p)) return 2;
        } else if (!strcmp(a, "--min-p")) {
            VALUE();
            if (!cli_parse_float(a, v, 0.0, 1.0, &o->sp.min_p)) return 2;
        } else if (!strcmp(a, "--repeat-penalty")) {
            VALUE();
            if (!cli_parse_float(a, v, 1e-3, 1e3, &o->sp.repeat_penalty)) return 2;
        } else if (!strcmp(a, "--presence-penalty")) {
            VALUE();
            if (!cli_parse_float(a, v, -100.0, 100.0, &o->sp.presence_penalty)) return 2;
        } else if (!strcmp(a, "--frequency-penalty")) {
            VALUE();
            if (!cli_parse_float(a, v, -100.0, 100.0, &o->sp.frequency_penalty)) return 2;
        } else if (!strcmp(a, "--repeat-last-n")) {
            VALUE();
            if (!cli_parse_int(a, v, 0, 1 << 20, &ll)) return 2;
            o->sp.penalty_last_n = (int32_t)ll;
        } else if (!strcmp(a, "--seed")) {
            VALUE();
            if (!cli_parse_u64(a, v, &o->sp.seed)) return 2;
            o->seed_given = true;
        } else if (!strcmp(a, "--ids")) {
            o->ids = true;
        } else if (!strcmp(a, "--kv-type")) {
            VALUE();
            if (!strcmp(v, "f16")) {
                o->kv_type = HEARTH_KV_F16;
            } else if (!strcmp(v, "f32")) {
                o->kv_type = HEARTH_KV_F32;
            } else {
                cli_error("--kv-type expects f16 or f32, got '%s'", v);
                return 2;
            }
        } else if (!strcmp(a, "--verbose")) {
            o->verbose = true;
        } else if (!strcmp(a, "--json-schema")) {
            VALUE();
            o->json_schema = v;
        } else if (!strcmp(a, "--grammar")) {
            VALUE();
            o->grammar = v;
        } else if (!strcmp(a, "--loop-guard")) {
            VALUE();
            if (!hearth_loop_action_parse(v, &o->guard)) {
                cli_error("--loop-guard expects stop, penalize or off, got '%s'", v);
                return 2;
            }
            o->guard_given = true;
        } else if (!strcmp(a, "--sections")) {
            VALUE();
            if (!cli_parse_int(a, v, 0, HEARTH_SECTIONS_MAX, &o->sections)) return 2;
        } else if (!strcmp(a, "--outline")) {
            VALUE();
            o->so.outline_file = v;
            o->section_flag = true;
        } else if (!strcmp(a, "--section-tokens")) {
            VALUE();
            if (!cli_parse_section_tokens(v, &o->so.min_tokens, &o->so.max_tokens)) return 2;
            o->section_flag = true;
        } else if (!strcmp(a, "--section-order")) {
            VALUE();
            o->section_flag = true;
            if (!strcmp(v, "chained")) {
                o->so.order = HEARTH_SECTIONS_CHAINED;
            } else if (!strcmp(v, "parallel")) {
                o->so.order = HEARTH_SECTIONS_PARALLEL;
            } else if (!strcmp(v, "alternate")) {
                o->so.order = HEARTH_SECTIONS_ALTERNATE;
            } else {
                cli_error("--section-order expects chained, parallel or alternate, got '%s'", v);
                return 2;
            }
        } else if (!strcmp(a, "--section-tail")) {
            VALUE();
            if (!cli_parse_int(a, v, 0, 1024, &o->so.tail_tokens)) return 2;
            o->section_flag = true;
        } else {
            bool matched;
            int rc = cli_memory_flag(argc, argv, &i, &o->mp, &matched);
            if (rc != 0) return rc;
            if (!matched) {
                cli_error("unknown option '%s' for run (see hearth run --help)", a);
                return 2;
            }
        }
#undef VALUE
    }
    if (!o->model) {
        cli_error("run needs a model: -m MODEL (see hearth run --help)");
        return 2;
    }
    if (o->prompt && o->prompt_file) {
        cli_error("give the prompt with -p or -f, not both");
        return 2;
    }
    if (o->json_schema && o->grammar) {
        cli_error("give --json-schema or --grammar, not both");
        return 2;
    }
    if (o->sections < 0 && o->section_flag) {
        cli_error(
            "--outline, --section-tokens, --section-order and --section-tail need --sections");
        return 2;
    }
    if (o->sections >= 0 && (o->json_schema || o->grammar)) {
        cli_error("--sections writes prose: it does not take --json-schema or --grammar");
        return 2;
    }
    if (o->sections == 0 && !o->so.outline_file) {
        cli_error("--sections 0 needs --outline (one section per heading)");
        return 2;
    }
    return 0;
}

/* Reads a grammar or schema file into a NUL-terminated buffer; NULL after
 * an error line. */
static char *read_constraint_file(const char *flag, const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        cli_error("%s: cannot open '%s'", flag, path);
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    if (buf) n = fread(buf, 1, cap, fp);
    bool bad = !buf || ferror(fp) || (n == cap && fgetc(fp) != EOF);
    fclose(fp);
    if (bad) {
        free(buf);
        cli_error("%s: cannot read '%s' (at most 1 MiB)", flag, path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Reads a prompt file; NULL (after an error line) when it cannot. */
static char *read_prompt_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        cli_error("cannot open prompt file '%s'", path);
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, fp);
        n += r;
        if (r == 0) break;
        if (n == cap) {
            char *grown = cap < ((size_t)1 << 30) ? realloc(buf, cap * 2) : NULL;
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    bool bad = ferror(fp) != 0;
    fclose(fp);
    if (!buf || bad) {
        free(buf);
        cli_error("cannot read prompt file '%s'", path);
        return NULL;
    }
    *len = n;
    return buf;
}

static void print_ids(const hearth_token *ids, size_t n) {
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
}

/* Feeds ids[0..n) to sequence 0 starting at position pos0, in batches;
 * the logits of the last token are left in the context at batch index *last. */
static hearth_status feed(hearth_context *ctx, const hearth_token *ids, size_t n, int32_t pos0,
                          uint32_t n_batch, int32_t *pos_buf, int32_t *seq_buf, uint32_t *last,
                          hearth_error *err) {
    for (size_t at = 0; at < n; at += n_batch) {
        uint32_t m = (uint32_t)(n - at < n_batch ? n - at : n_batch);
        for (uint32_t i = 0; i < m; i++) {
            pos_buf[i] = pos0 + (int32_t)(at + i);
            seq_buf[i] = 0;
        }
        hearth_batch b = {m, ids + at, pos_buf, seq_buf, NULL};
        hearth_status st = hearth_decode(ctx, &b, err);
        if (st != HEARTH_OK) return st;
        *last = m - 1;
    }
    return HEARTH_OK;
}

int cli_run(int argc, char **argv) {
    run_opts o;
    memset(&o, 0, sizeof o);
    o.n_predict = 256;
    o.sp = hearth_sampler_default_params();
    o.kv_type = HEARTH_KV_F16;
    o.mp = hearth_model_default_params();
    o.guard = HEARTH_LOOP_OFF;
    o.sections = -1;
    o.so.tail_tokens = -1;
    bool done;
    int rc = parse_run_args(argc, argv, &o, &done);
    if (rc != 0 || done) return rc;
    if (!o.seed_given) o.sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);

    size_t prompt_len = 0;
    char *prompt_buf = NULL;
    const char *prompt = o.prompt ? o.prompt : "";
    if (o.prompt_file) {
        prompt_buf = read_prompt_file(o.prompt_file, &prompt_len);
        if (!prompt_buf) return 1;
        prompt = prompt_buf;
    } else {
        prompt_len = strlen(prompt);
    }

    hearth_error err = {HEARTH_OK, ""};
    hearth_model *model = NULL;
    hearth_context *ctx = NULL;
    hearth_sampler *smp = NULL;
    hearth_token *ids = NULL;
    int32_t *pos_buf = NULL, *seq_buf = NULL;
    char *piece = NULL;
    char *constraint = NULL;
    hearth_grammar_vocab *gvocab = NULL;
    hearth_grammar *grammar = NULL;
    hearth_loop_guard *guard = NULL;
    hearth_loop_kind loop_found = HEARTH_LOOP_NONE;
    rc = 1;

    /* Plan first: a model and context that do not fit the budget (or the
     * memlock limit) are refused before a byte of weights is read.  The
     * first plan learns the model's context length, which sets -c's
     * default. */
    hearth_memory_plan plan;
    hearth_status st = hearth_model_plan(o.model, &o.mp, NULL, &plan, &err);
    hearth_context_params cp = hearth_context_default_params();
    if (st == HEARTH_OK || st == HEARTH_ERR_OVER_BUDGET || st == HEARTH_ERR_OS_LIMIT) {
        uint32_t n_train = plan.n_ctx_train;
        cp.n_ctx = o.n_ctx ? (uint32_t)o.n_ctx : (n_train < 4096 ? n_train : 4096);
        cp.n_threads = o.n_threads ? (int)o.n_threads : threadpool_n_cpus();
        cp.kv_type = o.kv_type;
        cp.n_batch = cp.n_ctx < 512 ? cp.n_ctx : 512;
        cp.n_outputs = 1; /* only the last token's logits are sampled */
        st = hearth_model_plan(o.model, &o.mp, &cp, &plan, &err);
    }
    if (st != HEARTH_OK) {
        cli_error("%s", err.msg);
        goto out;
    }

    cli_progress progress;
    cli_progress_init(&progress);
    o.mp.progress = cli_progress_fn;
    o.mp.progress_arg = &progress;
    double t_load = now_s();
    if (hearth_model_load(o.model, &o.mp, &model, &err) != HEARTH_OK) {
        cli_progress_done(&progress);
        cli_error("%s", err.msg);
        goto out;
    }
    t_load = now_s() - t_load;
    cli_progress_done(&progress);
    const hearth_tokenizer *tok = hearth_model_tokenizer(model);
    if (o.sections >= 0) {
        o.so.topic = prompt;
        o.so.topic_len = prompt_len;
        o.so.n_sections = (uint32_t)o.sections;
        o.so.guard = o.guard_given ? o.guard : HEARTH_LOOP_STOP_SECTION;
        o.so.sampling = o.sp;
        o.so.ids = o.ids;
        o.so.verbose = o.verbose;
        rc = cli_run_sections(model, &cp, &o.so);
        goto out;
    }

    /* Count the prompt's tokens first, then encode into room for the prompt
     * and the whole context. */
    size_t n_prompt = 0;
    st = hearth_tokenize(tok, prompt, prompt_len, HEARTH_TOKENIZE_ADD_SPECIAL, NULL, 0, &n_prompt,
                         &err);
    if (st == HEARTH_ERR_BUFFER_TOO_SMALL) {
        ids = malloc((n_prompt + (size_t)cp.n_ctx) * sizeof *ids);
        if (!ids) {
            cli_error("out of memory for a prompt of %zu tokens", n_prompt);
            goto out;
        }
        st = hearth_tokenize(tok, prompt, prompt_len, HEARTH_TOKENIZE_ADD_SPECIAL, ids, n_prompt,
                             &n_prompt, &err);
    }
    if (st != HEARTH_OK) {
        cli_error("cannot tokenize the prompt: %s", err.msg);
        goto out;
    }
    if (n_prompt == 0 || !ids) {
        cli_error("the prompt is empty and the model has no BOS token to start from");
        goto out;
    }
    if (n_prompt >= cp.n_ctx) {
        cli_error("the prompt is %zu tokens, longer than the context of %u tokens (use -c)",
                  n_prompt, cp.n_ctx);
        goto out;
    }
    if (hearth_context_create(model, &cp, &ctx, &err) != HEARTH_OK ||
        hearth_sampler_create(&o.sp, hearth_model_n_vocab(model), &smp, &err) != HEARTH_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    pos_buf = malloc(cp.n_batch * sizeof *pos_buf);
    seq_buf = malloc(cp.n_batch * sizeof *seq_buf);
    if (!pos_buf || !seq_buf) {
        cli_error("out of memory");
        goto out;
    }
    if (o.verbose) {
        fprintf(stderr, "hearth: model %s (loaded in %.0f ms)\n", hearth_model_desc(model),
                t_load * 1e3);
        fprintf(stderr, "hearth: context %u tokens, %d threads, seed %llu\n", cp.n_ctx,
                cp.n_threads, (unsigned long long)o.sp.seed);
        hearth_memory_report mr;
        hearth_memory_report_get(model, &mr);
        hearth_memory_report_print(&mr, stderr);
    }

    double t0 = now_s();
    uint32_t last = 0;
    if (feed(ctx, ids, n_prompt, 0, cp.n_batch, pos_buf, seq_buf, &last, &err) != HEARTH_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    double t_prompt = now_s() - t0;
    for (size_t i = 0; i < n_prompt; i++) hearth_sampler_accept(smp, ids[i]);
    /* Grammar and loop guard see generated tokens only: attached after the prompt. */
    if (o.json_schema || o.grammar) {
        size_t len = 0;
        const char *flag = o.json_schema ? "--json-schema" : "--grammar";
        constraint = read_constraint_file(flag, o.json_schema ? o.json_schema : o.grammar, &len);
        if (!constraint) goto out;
        st = hearth_grammar_vocab_create(tok, &gvocab, &err);
        if (st == HEARTH_OK) {
            st = o.json_schema ? hearth_grammar_create_from_json_schema(gvocab, constraint, len,
                                                                        &grammar, &err)
                               : hearth_grammar_create_from_gbnf(gvocab, constraint, len, NULL,
                                                                 &grammar, &err);
        }
        if (st != HEARTH_OK) {
            cli_error("%s: %s", flag, err.msg);
            goto out;
        }
        if (o.n_predict > 0) hearth_grammar_set_budget(grammar, (uint32_t)o.n_predict);
        hearth_sampler_set_grammar(smp, grammar);
    }
    if (o.guard != HEARTH_LOOP_OFF) {
        hearth_loop_guard_params gp = hearth_loop_guard_default_params();
        gp.action = o.guard;
        if (hearth_loop_guard_create(&gp, &guard, &err) != HEARTH_OK) {
            cli_error("%s", err.msg);
            goto out;
        }
        hearth_sampler_set_loop_guard(smp, guard);
    }

    if (o.ids) {
        print_ids(ids, n_prompt);
    } else {
        fwrite(prompt, 1, prompt_len, stdout);
        fflush(stdout);
    }
    hearth_detok dt;
    hearth_detok_reset(&dt, 0);
    /* The prompt text was printed as given, so generated text continues it. */
    if (prompt_len > 0) dt.started = true;

    hearth_token *gen = ids + n_prompt;
    size_t n_gen = 0;
    size_t limit = o.n_predict < 0 ? SIZE_MAX : (size_t)o.n_predict;
    size_t piece_cap = 3 * hearth_tokenizer_max_piece(tok) + 8;
    piece = malloc(piece_cap);
    if (!piece) {
        cli_error("out of memory");
        goto out;
    }
    t0 = now_s();
    while (n_gen < limit) {
        hearth_token next = hearth_sampler_sample(smp, hearth_get_logits(ctx, last));
        if (next < 0) {
            cli_error("%s", hearth_sampler_error(smp));
            goto out;
        }
        if (hearth_tokenizer_is_eog(tok, next)) break;
        hearth_sampler_accept(smp, next);
        loop_found = hearth_sampler_loop_found(smp);
        gen[n_gen++] = next;
        if (!o.ids) {
            size_t len = hearth_detok_push(&dt, tok, next, piece, piece_cap);
            fwrite(piece, 1, len, stdout);
            fflush(stdout);
        }
        size_t pos = n_prompt + n_gen - 1;
        if (n_gen == limit || pos >= cp.n_ctx) break;
        if (loop_found != HEARTH_LOOP_NONE && o.guard != HEARTH_LOOP_PENALIZE) break;
        if (grammar && hearth_grammar_is_done(grammar)) break;
        if (feed(ctx, &next, 1, (int32_t)pos, cp.n_batch, pos_buf, seq_buf, &last, &err) !=
            HEARTH_OK) {
            cli_error("%s", err.msg);
            goto out;
        }
    }
    double t_gen = now_s() - t0;
    if (o.ids) {
        print_ids(gen, n_gen);
    } else {
        size_t len = hearth_detok_flush(&dt, piece, piece_cap);
        fwrite(piece, 1, len, stdout);
        putchar('\n');
    }
    fflush(stdout);
    if (loop_found != HEARTH_LOOP_NONE && o.guard != HEARTH_LOOP_PENALIZE) {
        hearth_loop_report lr;
        hearth_loop_guard_report_get(guard, &lr);
        fprintf(stderr, "hearth: stopped: repetition (%s%s", hearth_loop_kind_name(loop_found),
                lr.period ? "" : ")\n");
        if (lr.period) fprintf(stderr, " of period %u)\n", lr.period);
    }
    fprintf(stderr,
            "hearth: prompt %zu tokens in %.1f ms (%.1f tok/s), generation %zu tokens in %.1f ms "
            "(%.1f tok/s)\n",
            n_prompt, t_prompt * 1e3, t_prompt > 0 ? (double)n_prompt / t_prompt : 0.0, n_gen,
            t_gen * 1e3, t_gen > 0 ? (double)n_gen / t_gen : 0.0);
    rc = 0;
out:
    hearth_grammar_free(grammar);
    hearth_grammar_vocab_free(gvocab);
    hearth_loop_guard_free(guard);
    free(constraint);
    free(piece);
    free(pos_buf);
    free(seq_buf);
    free(ids);
    free(prompt_buf);
    hearth_sampler_free(smp);
    hearth_context_free(ctx);
    hearth_model_free(model);
    return rc;
}
