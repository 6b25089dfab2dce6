/* pretok.c — pre-tokenizers of byte-level BPE vocabularies: cutting text
 * into words before the merges run.
 *
 * Each family named by tokenizer.ggml.pre is a list of regexes, as
 * llama.cpp (src/llama-vocab.cpp) defines them; they are applied in turn,
 * each one splitting every current word into its matches and the gaps
 * between matches.  hearth runs them with PCRE2 in UTF + UCP mode, compiled
 * (and JIT-compiled when PCRE2 has a JIT) once per tokenizer.
 *
 * llama.cpp does not run these regexes as written: it replaces every
 * non-ASCII code point by a stand-in byte for its Unicode category (or runs
 * std::wregex with non-ASCII whitespace replaced by \v), and it runs the two
 * most common regexes (GPT-2's and Llama 3's) as hand-written C++ that also
 * matches whitespace the written GPT-2 regex leaves over.  The patterns below
 * are rewritten so that PCRE2 gives the same words:
 *   - \s is llama.cpp's whitespace set (WS below), not PCRE2's, which also
 *     holds U+180E and, in UCP mode, differs on a few other code points;
 *   - the GPT-2 regex gets the trailing |\s+ of the hand-written splitter;
 *   - non-ASCII ranges written as literals exclude whitespace code points,
 *     which llama.cpp had replaced before matching ([一-龥ࠀ-一가-퟿] spans
 *     U+2000..U+200A and U+3000);
 *   - \p{S} does not hold '~', which llama.cpp's ASCII table for \p{S}
 *     leaves out (only DeepSeek-V3 uses \p{S});
 *   - $ is \z, the end of the word, as in ECMAScript;
 *   - capturing groups are non-capturing (nothing reads them, and the JIT
 *     stack grows with captured repeats).
 * The test vectors in shared/vocab hold the families they cover to this.
 */
#include <stdio.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

/* llama.cpp's whitespace: \t \n \v \f \r, space, U+0085, U+00A0, U+1680,
 * U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000. */
#define WSC                                                                                        \
    "\\x{09}-\\x{0D} \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"        \
    "\\x{205F}\\x{3000}"
#define WS  "[" WSC "]"
#define NWS "[^" WSC "]"

/* GPT-2's regex as llama.cpp's hand-written splitter runs it. */
#define RE_GPT2                                                                                    \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WSC "\\p{L}\\p{N}]+|" WS "+(?!" NWS ")|" WS \
    "+"

#define RE_CONTRACTIONS_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3_TAIL                                                                             \
    "| ?[^" WSC "\\p{L}\\p{N}]+[\\r\\n]*|" WS "*[\\r\\n]+|" WS "+(?!" NWS ")|" WS "+"

/* Llama 3 (digits in threes) and Qwen 2 (single digits). */
#define RE_LLAMA3 RE_CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}" RE_LLAMA3_TAIL
#define RE_QWEN2  RE_CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" RE_LLAMA3_TAIL

/* CJK ideographs, U+0800..U+4E00 and Hangul, whitespace excluded. */
#define RE_CJK_HANGUL "(?:(?!" WS ")[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}])+"

/* DeepSeek LLM's letters, as listed in llama.cpp. */
#define RE_DEEPSEEK_LETTERS                                                                        \
    "[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-"       \
    "\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}"  \
    "\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-"        \
    "\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-" \
    "\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}"        \
    "\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-"       \
    "\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-"         \
    "\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-"        \
    "\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"         \
    "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-"         \
    "\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}"         \
    "\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}"         \
    "\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}"        \
    "\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-"       \
    "\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-"            \
    "\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-"         \
    "\\x{1E943}]"

/* Poro / BLOOM / GPT-3 Finnish: words up to whitespace or sentence marks. */
#define RE_PORO " ?[^(" WSC "|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"

#define RE_PUNCT_RUN        "[\\p{P}\\$\\+<=>\\^~\\|]+"
#define RE_PUNCT_RUN_FALCON "[\\p{P}\\$\\+<=>\\^~\\|`]+"

#define MAX_FAMILY_RE 7
typedef struct family_def {
    pretok_family family;
    const char *re[MAX_FAMILY_RE]; /* NULL-terminated */
} family_def;

static const family_def families[] = {
    {PRETOK_DEFAULT, {RE_PUNCT_RUN, RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL}},
    {PRETOK_GPT2, {RE_GPT2, NULL}},
    {PRETOK_LLAMA3, {RE_LLAMA3, NULL}},
    {PRETOK_QWEN2, {RE_QWEN2, NULL}},
    {PRETOK_DEEPSEEK_LLM,
     {"[\\r\\n]", WS "?" RE_DEEPSEEK_LETTERS "+",
      WS "?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3001}-\\x{3002}]+",
      WS "+\\z", RE_CJK_HANGUL, "\\p{N}+", NULL}},
    {PRETOK_DEEPSEEK_CODER,
     {"[\\r\\n]", WS "?\\p{L}+", WS "?\\p{P}+", RE_CJK_HANGUL, "\\p{N}", NULL}},
    {PRETOK_DEEPSEEK3_LLM,
     {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
      "[!\"#$%&'()*+,\\-./"
      ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|(?:~|[^\\r\\n\\p{L}\\p{P}\\p{S}])?[\\p{"
      "L}\\p{M}]+| ?(?:(?!~)[\\p{P}\\p{S}])+[\\r\\n]*|" WS "*[\\r\\n]+|" WS "+(?!" NWS ")|" WS "+",
      NULL}},
    {PRETOK_FALCON, {RE_PUNCT_RUN_FALCON, RE_GPT2, "[0-9][0-9][0-9]", NULL}},
    {PRETOK_STARCODER, {"\\p{N}", RE_GPT2, NULL}},
    {PRETOK_PORO, {RE_PORO, NULL}},
    {PRETOK_VIKING, {RE_PORO, "\\p{N}", NULL}},
    {PRETOK_TEKKEN,
     {"[^\\r\\n\\p{L}\\p{N}]?(?:(?=[\\p{L}])[^a-z])*(?:(?=[\\p{L}])[^A-Z])+|[^\\r\\n\\p{L}\\p{N}]?("
      "?:"
      "(?=[\\p{L}])[^a-z])+(?:(?=[\\p{L}])[^A-Z])*|\\p{N}| ?[^" WSC "\\p{L}\\p{N}]+[\\r\\n/]*|" WS
      "*[\\r\\n]+|" WS "+(?!" NWS ")|" WS "+",
      NULL}},
    {PRETOK_CHAMELEON,
     {"<sentinel:[0-9]+>", "(?:IMGIMG)(?:(?:A|B|C|D|E|F|G|H|I){1,4})Z", "(?:[\\t\\n]|    |  )",
      "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2, NULL}},
};

typedef struct pre_name {
    const char *name;
    pretok_family family;
    bool add_bos, ignore_merges, no_bos;
} pre_name;

/* tokenizer.ggml.pre names, as llama.cpp maps them. */
static const pre_name pre_names[] = {
    {"default", PRETOK_DEFAULT, false, false, false},
    {"llama3", PRETOK_LLAMA3, true, true, false},
    {"llama-v3", PRETOK_LLAMA3, true, true, false},
    {"llama-bpe", PRETOK_LLAMA3, true, true, false},
    {"falcon3", PRETOK_LLAMA3, true, true, false},
    {"dbrx", PRETOK_LLAMA3, false, false, false},
    {"smaug-bpe", PRETOK_LLAMA3, false, false, false},
    {"chatglm-bpe", PRETOK_LLAMA3, false, false, true},
    {"deepseek-llm", PRETOK_DEEPSEEK_LLM, false, false, false},
    {"deepseek-coder", PRETOK_DEEPSEEK_CODER, false, false, false},
    {"deepseek-v3", PRETOK_DEEPSEEK3_LLM, false, false, false},
    {"falcon", PRETOK_FALCON, false, false, false},
    {"mpt", PRETOK_GPT2, false, false, false},
    {"gpt-2", PRETOK_GPT2, false, false, false},
    {"phi-2", PRETOK_GPT2, false, false, false},
    {"jina-es", PRETOK_GPT2, false, false, false},
    {"jina-de", PRETOK_GPT2, false, false, false},
    {"gigachat", PRETOK_GPT2, false, false, false},
    {"jina-v1-en", PRETOK_GPT2, false, false, false},
    {"jina-v2-es", PRETOK_GPT2, false, false, false},
    {"jina-v2-de", PRETOK_GPT2, false, false, false},
    {"jina-v2-code", PRETOK_GPT2, false, false, false},
    {"roberta-bpe", PRETOK_GPT2, false, false, false},
    {"olmo", PRETOK_GPT2, false, false, false},
    {"jais", PRETOK_GPT2, false, false, false},
    {"starcoder", PRETOK_STARCODER, false, false, false},
    {"refact", PRETOK_STARCODER, false, false, false},
    {"command-r", PRETOK_STARCODER, false, false, false},
    {"smollm", PRETOK_STARCODER, false, false, false},
    {"codeshell", PRETOK_STARCODER, false, false, false},
    {"exaone", PRETOK_STARCODER, false, false, false},
    {"minerva-7b", PRETOK_STARCODER, false, false, false},
    {"qwen2", PRETOK_QWEN2, false, false, false},
    {"deepseek-r1-qwen", PRETOK_QWEN2, false, false, false},
    {"stablelm2", PRETOK_QWEN2, false, false, false},
    {"megrez", PRETOK_QWEN2, false, false, false},
    {"poro-chat", PRETOK_PORO, false, false, false},
    {"bloom", PRETOK_PORO, false, false, false},
    {"gpt3-finnish", PRETOK_PORO, false, false, false},
    {"viking", PRETOK_VIKING, false, false, false},
    {"tekken", PRETOK_TEKKEN, true, true, false},
    {"chameleon", PRETOK_CHAMELEON, true, false, false},
};

bool pretok_lookup(const char *name, pretok_info *out) {
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++) {
        if (strcmp(name, pre_names[i].name) == 0) {
            out->family = pre_names[i].family;
            out->add_bos = pre_names[i].add_bos;
            out->ignore_merges = pre_names[i].ignore_merges;
            out->no_bos = pre_names[i].no_bos;
            return true;
        }
    }
    return false;
}

hearth_status pretok_compile(hearth_tokenizer *tok, hearth_error *err) {
    const family_def *def = NULL;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if ((int)families[i].family == tok->pre) def = &families[i];
    }
    if (!def)
        return error_set(err, HEARTH_ERR_INTERNAL, "no regexes for pre-tokenizer %d", tok->pre);
    uint32_t has_jit = 0;
    pcre2_config(PCRE2_CONFIG_JIT, &has_jit);
    for (int i = 0; i < MAX_FAMILY_RE && def->re[i]; i++) {
        int code = 0;
        PCRE2_SIZE at = 0;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)def->re[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code, msg, sizeof msg);
            return error_set(err, HEARTH_ERR_INTERNAL,
                             "pre-tokenizer regex %d does not compile at offset %zu: %s", i,
                             (size_t)at, (const char *)msg);
        }
        tok->re[tok->n_re++] = re;
        /* Without a JIT (or when it fails) PCRE2 interprets the pattern. */
        if (has_jit) pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    }
    return HEARTH_OK;
}

/* Runs re on subject[0..len) from offset start; >= 0 on a match, the
 * PCRE2 error code otherwise.  A JIT that runs out of stack on a long word
 * hands over to the interpreter, which keeps its frames on the heap. */
static int match_at(const pcre2_code *re, const char *subject, size_t len, size_t start,
                    pcre2_match_data *md) {
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, len, start, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        rc = pcre2_match(re, (PCRE2_SPTR)subject, len, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md,
                         NULL);
    }
    return rc;
}

int64_t pretok_split(const hearth_tokenizer *tok, const char *text, size_t len, tok_span *words,
                     tok_span *tmp, pcre2_match_data *md, hearth_error *err) {
    if (len == 0) return 0;
    size_t n = 1;
    words[0].off = 0;
    words[0].len = len;
    for (int r = 0; r < tok->n_re; r++) {
        const pcre2_code *re = tok->re[r];
        size_t m = 0;
        for (size_t w = 0; w < n; w++) {
            const char *s = text + words[w].off;
            size_t sl = words[w].len, done = 0, pos = 0;
            while (pos < sl) {
                int rc = match_at(re, s, sl, pos, md);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0) {
                    PCRE2_UCHAR msg[160];
                    pcre2_get_error_message(rc, msg, sizeof msg);
                    error_set(err, HEARTH_ERR_BAD_INPUT,
                              "pre-tokenizer regex %d failed on a word of %zu bytes: %s", r, sl,
                              (const char *)msg);
                    return -1;
                }
                const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                size_t ms = ov[0], me = ov[1];
                if (me <= ms) { /* an empty match: look again one character on */
                    pos = ms + 1;
                    while (pos < sl && ((uint8_t)s[pos] & 0xC0) == 0x80) pos++;
                    continue;
                }
                if (ms > done) tmp[m++] = (tok_span){words[w].off + done, ms - done};
                tmp[m++] = (tok_span){words[w].off + ms, me - ms};
                done = pos = me;
            }
            if (done < sl) tmp[m++] = (tok_span){words[w].off + done, sl - done};
        }
        memcpy(words, tmp, m * sizeof *words);
        n = m;
    }
    return (int64_t)n;
}
