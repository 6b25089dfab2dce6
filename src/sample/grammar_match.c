/* grammar_match.c — masking tokens with a compiled grammar.
 *
 * The parser state after some text is the set of stacks of grammar
 * positions that text allows (llama.cpp's representation): each stack's
 * top is a byte set to match next, the rest says where to go on when the
 * rules above finish; the empty stack means the text is complete.  Three
 * things make it fast enough for 150k-token vocabularies:
 *
 *  1. Stacks are hash-consed: a stack is a node (position, parent node),
 *     every distinct stack exists once, so a stack is an integer and two
 *     sets of stacks compare as sorted integer arrays.
 *  2. Each distinct set of stacks is interned as a state with a 256-entry
 *     transition row filled lazily — a DFA built on demand over the
 *     pushdown automaton.  Advancing by a byte is then one table lookup
 *     after the first time.
 *  3. The vocabulary is a trie in depth-first order (node i's subtree ends
 *     at end[i]), so a mask is one linear pass: look up the state for each
 *     node from its parent's, skip the whole subtree when the byte is
 *     refused, mark the tokens that end at accepted nodes.  The masks of
 *     the last few states are kept, since generation inside a string or a
 *     number returns to the same state token after token.
 *
 * Right recursion (x* becomes r ::= x r |) does not grow stacks: a rule
 * reference that ends its alternative pushes no continuation.  Left
 * recursion is refused at compile time, and expansion marks the stacks it
 * queued, so building a state always ends.
 *
 * The tables have fixed capacities, allocated at creation; when they fill
 * up, everything but the current state is dropped and rebuilt on demand.
 * Nothing is allocated per token.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"
#include "sample/grammar.h"
#include "sample/sample_internal.h"
#include "util/error.h"

#define MAX_TOKEN_BYTES 4096 /* longer tokens are never allowed */
#define CAP_NODES       (1u << 16)
#define CAP_STATES      2048
#define CAP_MEMBERS     (1u << 18)
#define N_MASK_CACHE    8

#define T_UNKNOWN  (-1)
#define T_DEAD     (-2)
#define T_OVERFLOW (-3) /* never stored: the tables are full */

/* ---------------------------------------------------------------- vocabulary */

struct hearth_grammar_vocab {
    int32_t n_vocab;
    uint32_t n_words;    /* 64-bit words of a token bitset */
    char *piece;         /* bytes of every token */
    uint32_t *piece_off; /* (n_vocab + 1); empty for tokens a grammar never allows */
    uint8_t *is_eog;     /* (n_vocab) */
    int32_t *eog_ids;    /* (n_eog) the end-of-generation tokens */
    uint32_t n_eog;
    uint32_t n_nodes;
    uint8_t *byte;       /* (n_nodes) byte on the edge into the node */
    uint16_t *depth;     /* (n_nodes) 1 for children of the root */
    uint32_t *end;       /* (n_nodes) index just past the node's subtree */
    uint32_t *tok_first; /* (n_nodes + 1) tokens ending at node i: ids[tok_first[i] ..
                            tok_first[i + 1]) */
    int32_t *ids;
    uint32_t max_depth;
};

/* Merge sort of token ids by their bytes (qsort has no context pointer). */
static int piece_cmp(const hearth_grammar_vocab *v, int32_t a, int32_t b) {
    uint32_t la = v->piece_off[a + 1] - v->piece_off[a];
    uint32_t lb = v->piece_off[b + 1] - v->piece_off[b];
    int c = memcmp(v->piece + v->piece_off[a], v->piece + v->piece_off[b], la < lb ? la : lb);
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return a < b ? -1 : a > b;
}

static void sort_ids(const hearth_grammar_vocab *v, int32_t *ids, int32_t *tmp, size_t n) {
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = piece_cmp(v, ids[i], ids[j]) <= 0 ? ids[i++] : ids[j++];
            while (i < mid) tmp[k++] = ids[i++];
            while (j < hi) tmp[k++] = ids[j++];
        }
        memcpy(ids, tmp, n * sizeof *ids);
    }
}

void hearth_grammar_vocab_free(hearth_grammar_vocab *v) {
    if (!v) return;
    free(v->piece);
    free(v->piece_off);
    free(v->is_eog);
    free(v->eog_ids);
    free(v->byte);
    free(v->depth);
    free(v->end);
    free(v->tok_first);
    free(v->ids);
    free(v);
}

hearth_status hearth_grammar_vocab_create(const hearth_tokenizer *tok, hearth_grammar_vocab **out,
                                          hearth_error *err) {
    *out = NULL;
    if (!tok) return error_set(err, HEARTH_ERR_INVALID_ARG, "grammar vocabulary: NULL tokenizer");
    int32_t n = hearth_tokenizer_n_vocab(tok);
    hearth_grammar_vocab *v = calloc(1, sizeof *v);
    if (!v) return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the grammar vocabulary");
    v->n_vocab = n;
    v->n_words = (uint32_t)(((uint64_t)n + 63) / 64);
    size_t cap = 1 << 20, used = 0;
    size_t max_piece = hearth_tokenizer_max_piece(tok);
    v->piece = malloc(cap);
    v->piece_off = malloc(((size_t)n + 1) * sizeof *v->piece_off);
    v->is_eog = calloc((size_t)n, 1);
    int32_t *order = malloc((size_t)n * sizeof *order);
    int32_t *tmp = malloc((size_t)n * sizeof *tmp);
    hearth_status st = HEARTH_OK;
    if (!v->piece || !v->piece_off || !v->is_eog || !order || !tmp) {
        st = error_set(err, HEARTH_ERR_NOMEM, "out of memory for the grammar vocabulary");
        goto done;
    }
    /* Every token's bytes: what the detokenizer writes for it alone, with
     * SentencePiece's leading space kept (it is real text mid-stream). */
    int32_t n_text = 0;
    for (int32_t id = 0; id < n; id++) {
        v->piece_off[id] = (uint32_t)used;
        v->is_eog[id] = hearth_tokenizer_is_eog(tok, id);
        if (cap - used < max_piece + 1) {
            if (cap > ((size_t)1 << 31)) {
                st = error_set(err, HEARTH_ERR_BAD_MODEL, "token texts over 2 GiB");
                goto done;
            }
            char *g = realloc(v->piece, cap * 2);
            if (!g) {
                st = error_set(err, HEARTH_ERR_NOMEM, "out of memory for the grammar vocabulary");
                goto done;
            }
            v->piece = g;
            cap *= 2;
        }
        size_t len = 0;
        hearth_error e2;
        if (hearth_detokenize(tok, &id, 1, HEARTH_DETOK_KEEP_LEADING_SPACE, v->piece + used,
                              cap - used, &len, &e2) != HEARTH_OK) {
            len = 0;
        }
        if (v->is_eog[id] || len > MAX_TOKEN_BYTES) len = 0;
        used += len;
        if (len) order[n_text++] = id;
    }
    v->piece_off[n] = (uint32_t)used;
    for (int32_t id = 0; id < n; id++) v->n_eog += v->is_eog[id];
    v->eog_ids = malloc((v->n_eog ? v->n_eog : 1) * sizeof *v->eog_ids);
    if (!v->eog_ids) {
        st = error_set(err, HEARTH_ERR_NOMEM, "out of memory for the grammar vocabulary");
        goto done;
    }
    v->n_eog = 0;
    for (int32_t id = 0; id < n; id++) {
        if (v->is_eog[id]) v->eog_ids[v->n_eog++] = id;
    }
    sort_ids(v, order, tmp, (size_t)n_text);

    /* The trie: one node per distinct prefix, created in sorted order. */
    size_t max_nodes = used + 1;
    v->byte = malloc(max_nodes);
    v->depth = malloc(max_nodes * sizeof *v->depth);
    v->end = malloc(max_nodes * sizeof *v->end);
    v->tok_first = calloc(max_nodes + 1, sizeof *v->tok_first);
    v->ids = malloc(((size_t)n_text ? (size_t)n_text : 1) * sizeof *v->ids);
    uint32_t *path = malloc((MAX_TOKEN_BYTES + 1) * sizeof *path);
    if (!v->byte || !v->depth || !v->end || !v->tok_first || !v->ids || !path) {
        free(path);
        st = error_set(err, HEARTH_ERR_NOMEM, "out of memory for the grammar vocabulary");
        goto done;
    }
    uint32_t nodes = 0, depth = 0; /* path[0..depth) are the open nodes */
    const char *prev = NULL;
    uint32_t prev_len = 0;
    for (int32_t k = 0; k < n_text; k++) {
        int32_t id = order[k];
        const char *p = v->piece + v->piece_off[id];
        uint32_t len = v->piece_off[id + 1] - v->piece_off[id];
        uint32_t lcp = 0;
        while (prev && lcp < len && lcp < prev_len && p[lcp] == prev[lcp]) lcp++;
        while (depth > lcp) v->end[path[--depth]] = nodes;
        while (depth < len) {
            v->byte[nodes] = (uint8_t)p[depth];
            v->depth[nodes] = (uint16_t)(depth + 1);
            path[depth++] = nodes++;
        }
        v->tok_first[path[len - 1] + 1]++;
        v->ids[k] = id;
        if (len > v->max_depth) v->max_depth = len;
        prev = p;
        prev_len = len;
    }
    while (depth > 0) v->end[path[--depth]] = nodes;
    free(path);
    v->n_nodes = nodes;
    for (uint32_t i = 0; i < nodes; i++) v->tok_first[i + 1] += v->tok_first[i];
done:
    free(order);
    free(tmp);
    if (st != HEARTH_OK) {
        hearth_grammar_vocab_free(v);
        return st;
    }
    *out = v;
    return HEARTH_OK;
}

/* ---------------------------------------------------------------- grammar */

struct hearth_grammar {
    const hearth_grammar_vocab *v;
    gram_rules g;

    /* Stacks: node 0 is the empty stack; node i is position nd_pos[i] on
     * top of stack nd_parent[i]. */
    uint32_t *nd_pos, *nd_parent;
    uint32_t *nd_min;  /* fewest bytes that finish the stack */
    uint32_t *nd_seen; /* closure stamp */
    uint32_t *nd_ht;   /* (2 x CAP_NODES) hash of (pos, parent) -> node, UINT32_MAX = empty */
    uint32_t n_nd;

    /* States: sets of stacks, sorted. */
    uint32_t *st_first, *st_len, *st_min; /* (CAP_STATES) */
    uint32_t *members;                    /* (CAP_MEMBERS) */
    uint32_t n_members;
    int32_t *trans;  /* (CAP_STATES x 256) next state, T_UNKNOWN or T_DEAD */
    uint32_t *st_ht; /* (2 x CAP_STATES) */
    uint32_t n_st;

    uint32_t stamp;
    uint32_t *work, *emit; /* (CAP_NODES) closure scratch */
    uint32_t n_work, n_emit;
    uint32_t *rebuild; /* (2 x CAP_NODES) positions of the stacks kept across a flush */
    uint32_t *walk;    /* (max_depth + 1) state per trie depth */

    uint32_t cur;    /* current state */
    bool ended;      /* an end-of-generation token was accepted */
    uint32_t budget; /* tokens left; 0 = no budget */
    uint32_t budget_set;

    /* Masks of recent states; mask_state UINT32_MAX = empty. */
    uint64_t *mask; /* (N_MASK_CACHE + 1) x n_words; the last one is for budgeted walks */
    uint32_t mask_state[N_MASK_CACHE];
    uint32_t mask_maxmin[N_MASK_CACHE]; /* largest st_min among the allowed tokens' states */
    uint64_t mask_used[N_MASK_CACHE];
    uint64_t tick;

    char error[256];
};

static uint64_t mix2(uint32_t a, uint32_t b) {
    uint64_t x = ((uint64_t)a << 32 | b) * 0x9e3779b97f4a7c15ull;
    return x ^ (x >> 31);
}

static uint32_t sat_add(uint32_t a, uint32_t b) {
    return a == GRAM_INF || b == GRAM_INF || a > GRAM_INF - b ? GRAM_INF : a + b;
}

/* The node for (pos, parent), made when new; UINT32_MAX when full. */
static uint32_t node(hearth_grammar *m, uint32_t pos, uint32_t parent) {
    uint32_t mask = 2 * CAP_NODES - 1;
    uint32_t i = (uint32_t)mix2(pos, parent) & mask;
    for (; m->nd_ht[i] != UINT32_MAX; i = (i + 1) & mask) {
        uint32_t x = m->nd_ht[i];
        if (m->nd_pos[x] == pos && m->nd_parent[x] == parent) return x;
    }
    if (m->n_nd == CAP_NODES) return UINT32_MAX;
    uint32_t x = m->n_nd++;
    m->nd_pos[x] = pos;
    m->nd_parent[x] = parent;
    m->nd_min[x] = sat_add(m->g.rem[pos], m->nd_min[parent]);
    m->nd_seen[x] = 0;
    m->nd_ht[i] = x;
    return x;
}

/* Queues stack x for the closure unless it was queued already. */
static inline void queue(hearth_grammar *m, uint32_t x) {
    if (m->nd_seen[x] == m->stamp) return;
    m->nd_seen[x] = m->stamp;
    m->work[m->n_work++] = x;
}

static void new_stamp(hearth_grammar *m) {
    if (++m->stamp == 0) {
        memset(m->nd_seen, 0, CAP_NODES * sizeof *m->nd_seen);
        m->stamp = 1;
    }
}

/* Expands the queued stacks until each top is a byte set (or the stack is
 * empty), appending those to emit.  False when the node table is full. */
static bool closure(hearth_grammar *m) {
    const gram_elem *E = m->g.elem;
    while (m->n_work) {
        uint32_t x = m->work[--m->n_work];
        if (x == 0) {
            m->emit[m->n_emit++] = 0;
            continue;
        }
        uint32_t pos = m->nd_pos[x];
        const gram_elem *e = &E[pos];
        if (e->type == GRAM_BYTES) {
            m->emit[m->n_emit++] = x;
        } else if (e->type == GRAM_END) {
            queue(m, m->nd_parent[x]);
        } else {
            /* A reference at the end of its alternative continues with the
             * parent directly: right recursion keeps the stack flat. */
            uint32_t rest =
                E[pos + 1].type == GRAM_END ? m->nd_parent[x] : node(m, pos + 1, m->nd_parent[x]);
            if (rest == UINT32_MAX) return false;
            uint32_t r = e->value;
            for (uint32_t a = m->g.alt_first[r]; a < m->g.alt_first[r + 1]; a++) {
                uint32_t y = node(m, m->g.alts[a], rest);
                if (y == UINT32_MAX) return false;
                queue(m, y);
            }
        }
    }
    return true;
}

/* Heap sort: in place and allocation-free (glibc's qsort may malloc). */
static void sift_down(uint32_t *s, uint32_t i, uint32_t n) {
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && s[c + 1] > s[c]) c++;
        if (s[i] >= s[c]) return;
        uint32_t t = s[i];
        s[i] = s[c];
        s[c] = t;
        i = c;
    }
}

static void sort_u32(uint32_t *s, uint32_t n) {
    if (n <= 16) {
        for (uint32_t i = 1; i < n; i++) {
            uint32_t x = s[i], j = i;
            while (j > 0 && s[j - 1] > x) {
                s[j] = s[j - 1];
                j--;
            }
            s[j] = x;
        }
        return;
    }
    for (uint32_t i = n / 2; i-- > 0;) sift_down(s, i, n);
    for (uint32_t end = n; end-- > 1;) {
        uint32_t t = s[0];
        s[0] = s[end];
        s[end] = t;
        sift_down(s, 0, end);
    }
}

/* Interns emit[0..n_emit) as a state; returns it, or T_OVERFLOW when full. */
static int32_t intern(hearth_grammar *m) {
    uint32_t n = m->n_emit;
    uint32_t *s = m->emit;
    sort_u32(s, n);
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    uint32_t mask = 2 * CAP_STATES - 1;
    uint32_t i = (uint32_t)h & mask;
    for (; m->st_ht[i] != UINT32_MAX; i = (i + 1) & mask) {
        uint32_t t = m->st_ht[i];
        if (m->st_len[t] == n && !memcmp(m->members + m->st_first[t], s, n * sizeof *s)) {
            return (int32_t)t;
        }
    }
    if (m->n_st == CAP_STATES || CAP_MEMBERS - m->n_members < n) return T_OVERFLOW;
    uint32_t t = m->n_st++;
    m->st_first[t] = m->n_members;
    m->st_len[t] = n;
    memcpy(m->members + m->n_members, s, n * sizeof *s);
    m->n_members += n;
    uint32_t mn = GRAM_INF;
    for (uint32_t k = 0; k < n; k++) mn = m->nd_min[s[k]] < mn ? m->nd_min[s[k]] : mn;
    m->st_min[t] = mn;
    for (int b = 0; b < 256; b++) m->trans[(size_t)t * 256 + (size_t)b] = T_UNKNOWN;
    m->st_ht[i] = t;
    return (int32_t)t;
}

/* The state after byte c from state s. */
static int32_t step_slow(hearth_grammar *m, uint32_t s, uint8_t c) {
    const gram_elem *E = m->g.elem;
    new_stamp(m);
    m->n_work = 0;
    m->n_emit = 0;
    const uint32_t *mem = m->members + m->st_first[s];
    for (uint32_t k = 0; k < m->st_len[s]; k++) {
        uint32_t x = mem[k];
        if (x == 0) continue;
        uint32_t pos = m->nd_pos[x];
        if (!gram_set_has(m->g.sets[E[pos].value], c)) continue;
        uint32_t next =
            E[pos + 1].type == GRAM_END ? m->nd_parent[x] : node(m, pos + 1, m->nd_parent[x]);
        if (next == UINT32_MAX) return T_OVERFLOW;
        queue(m, next);
    }
    if (!closure(m)) return T_OVERFLOW;
    int32_t t = m->n_emit ? intern(m) : T_DEAD;
    if (t != T_OVERFLOW) m->trans[(size_t)s * 256 + c] = t;
    return t;
}

static inline int32_t step(hearth_grammar *m, uint32_t s, uint8_t c) {
    int32_t t = m->trans[(size_t)s * 256 + c];
    return t != T_UNKNOWN ? t : step_slow(m, s, c);
}

/* The start state; T_OVERFLOW when the tables cannot hold it. */
static int32_t start_state(hearth_grammar *m) {
    new_stamp(m);
    m->n_work = 0;
    m->n_emit = 0;
    uint32_t r = m->g.root;
    for (uint32_t a = m->g.alt_first[r]; a < m->g.alt_first[r + 1]; a++) {
        uint32_t y = node(m, m->g.alts[a], 0);
        if (y == UINT32_MAX) return T_OVERFLOW;
        queue(m, y);
    }
    if (!closure(m)) return T_OVERFLOW;
    return intern(m);
}

static void clear_tables(hearth_grammar *m) {
    memset(m->nd_ht, 0xff, 2 * CAP_NODES * sizeof *m->nd_ht);
    memset(m->st_ht, 0xff, 2 * CAP_STATES * sizeof *m->st_ht);
    m->n_nd = 1; /* the empty stack */
    m->nd_pos[0] = UINT32_MAX;
    m->nd_parent[0] = 0;
    m->nd_min[0] = 0;
    m->nd_seen[0] = 0;
    m->n_st = 0;
    m->n_members = 0;
    for (int i = 0; i < N_MASK_CACHE; i++) m->mask_state[i] = UINT32_MAX;
}

/* Drops every state but the current one, which is rebuilt from its
 * stacks.  False (with the error set) when even that does not fit. */
static bool flush(hearth_grammar *m) {
    /* Copy out the current stacks as position lists, top first, each
     * preceded by its length. */
    uint32_t cap = 2 * CAP_NODES, used = 0;
    const uint32_t *mem = m->members + m->st_first[m->cur];
    uint32_t n = m->st_len[m->cur];
    for (uint32_t k = 0; k < n; k++) {
        uint32_t len_at = used++;
        if (used > cap) goto too_big;
        uint32_t len = 0;
        for (uint32_t x = mem[k]; x != 0; x = m->nd_parent[x]) {
            if (used == cap) goto too_big;
            m->rebuild[used++] = m->nd_pos[x];
            len++;
        }
        m->rebuild[len_at] = len;
    }
    clear_tables(m);
    m->n_emit = 0;
    for (uint32_t at = 0; at < used;) {
        uint32_t len = m->rebuild[at++];
        uint32_t x = 0;
        for (uint32_t j = len; j-- > 0;) {
            x = node(m, m->rebuild[at + j], x);
            if (x == UINT32_MAX) goto too_big;
        }
        at += len;
        m->emit[m->n_emit++] = x;
    }
    int32_t t = intern(m);
    if (t < 0) goto too_big;
    m->cur = (uint32_t)t;
    return true;
too_big:
    snprintf(m->error, sizeof m->error,
             "grammar: the parser state outgrew its tables (%u stacks, %u states)", CAP_NODES,
             CAP_STATES);
    /* Leave a usable table behind: restart from scratch. */
    clear_tables(m);
    t = start_state(m);
    m->cur = t >= 0 ? (uint32_t)t : 0;
    return false;
}

/* Flushes ahead of time when the tables are half full. */
static bool make_room(hearth_grammar *m) {
    if (m->n_nd < CAP_NODES / 2 && m->n_st < CAP_STATES / 2 && m->n_members < CAP_MEMBERS / 2) {
        return true;
    }
    return flush(m);
}

void hearth_grammar_free(hearth_grammar *m) {
    if (!m) return;
    gram_rules_free(&m->g);
    free(m->nd_pos);
    free(m->nd_parent);
    free(m->nd_min);
    free(m->nd_seen);
    free(m->nd_ht);
    free(m->st_first);
    free(m->st_len);
    free(m->st_min);
    free(m->members);
    free(m->trans);
    free(m->st_ht);
    free(m->work);
    free(m->emit);
    free(m->rebuild);
    free(m->walk);
    free(m->mask);
    free(m);
}

void hearth_grammar_reset(hearth_grammar *m) {
    if (!m) return;
    clear_tables(m);
    int32_t t = start_state(m);
    m->cur = t >= 0 ? (uint32_t)t : 0;
    m->ended = false;
    m->budget = m->budget_set;
    m->error[0] = '\0';
}

/* Takes ownership of the compiled rules g. */
static hearth_status grammar_create(const hearth_grammar_vocab *v, gram_rules *g,
                                    hearth_grammar **out, hearth_error *err) {
    hearth_grammar *m = calloc(1, sizeof *m);
    if (!m) {
        gram_rules_free(g);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the grammar");
    }
    m->v = v;
    m->g = *g;
    memset(g, 0, sizeof *g);
    m->nd_pos = malloc(CAP_NODES * sizeof *m->nd_pos);
    m->nd_parent = malloc(CAP_NODES * sizeof *m->nd_parent);
    m->nd_min = malloc(CAP_NODES * sizeof *m->nd_min);
    m->nd_seen = calloc(CAP_NODES, sizeof *m->nd_seen);
    m->nd_ht = malloc(2 * CAP_NODES * sizeof *m->nd_ht);
    m->st_first = malloc(CAP_STATES * sizeof *m->st_first);
    m->st_len = malloc(CAP_STATES * sizeof *m->st_len);
    m->st_min = malloc(CAP_STATES * sizeof *m->st_min);
    m->members = malloc(CAP_MEMBERS * sizeof *m->members);
    m->trans = malloc((size_t)CAP_STATES * 256 * sizeof *m->trans);
    m->st_ht = malloc(2 * CAP_STATES * sizeof *m->st_ht);
    m->work = malloc(CAP_NODES * sizeof *m->work);
    m->emit = malloc(CAP_NODES * sizeof *m->emit);
    m->rebuild = malloc(2 * CAP_NODES * sizeof *m->rebuild);
    m->walk = malloc(((size_t)v->max_depth + 1) * sizeof *m->walk);
    m->mask = malloc((size_t)(N_MASK_CACHE + 1) * v->n_words * sizeof *m->mask + 8);
    if (!m->nd_pos || !m->nd_parent || !m->nd_min || !m->nd_seen || !m->nd_ht || !m->st_first ||
        !m->st_len || !m->st_min || !m->members || !m->trans || !m->st_ht || !m->work || !m->emit ||
        !m->rebuild || !m->walk || !m->mask) {
        hearth_grammar_free(m);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the grammar");
    }
    clear_tables(m);
    int32_t t = start_state(m);
    if (t < 0) {
        hearth_grammar_free(m);
        return error_set(err, HEARTH_ERR_BAD_INPUT,
                         "grammar: its start state alone outgrows the parser tables");
    }
    m->cur = (uint32_t)t;
    *out = m;
    return HEARTH_OK;
}

hearth_status hearth_grammar_create_from_gbnf(const hearth_grammar_vocab *v, const char *text,
                                              size_t len, const char *root, hearth_grammar **out,
                                              hearth_error *err) {
    *out = NULL;
    if (!v) return error_set(err, HEARTH_ERR_INVALID_ARG, "grammar: NULL vocabulary");
    gram_rules g;
    hearth_status st = gram_compile(text, len, root, &g, err);
    if (st != HEARTH_OK) return st;
    return grammar_create(v, &g, out, err);
}

hearth_status hearth_grammar_create_from_json_schema(const hearth_grammar_vocab *v,
                                                     const char *schema, size_t len,
                                                     hearth_grammar **out, hearth_error *err) {
    *out = NULL;
    if (!v) return error_set(err, HEARTH_ERR_INVALID_ARG, "grammar: NULL vocabulary");
    char *gbnf = NULL;
    size_t n = 0;
    hearth_status st = json_schema_gbnf(schema, len, &gbnf, &n, err);
    if (st != HEARTH_OK) return st;
    gram_rules g;
    st = gram_compile(gbnf, n, "root", &g, err);
    free(gbnf);
    if (st != HEARTH_OK) {
        /* Say where in the schema the rule the compiler names came from. */
        const char *at = err ? strstr(err->msg, "rule 'r") : NULL;
        char path[512];
        if (err && strstr(err->msg, "rule 'root'")) return error_prefix(err, st, "JSON schema: #");
        if (at && at[7] >= '0' && at[7] <= '9' &&
            json_schema_rule_path(schema, len, (uint32_t)strtoul(at + 7, NULL, 10), path,
                                  sizeof path)) {
            return error_prefix(err, st, "JSON schema: %s", path);
        }
        return error_prefix(err, st, "JSON schema");
    }
    return grammar_create(v, &g, out, err);
}

void hearth_grammar_set_budget(hearth_grammar *m, uint32_t n) {
    if (!m) return;
    m->budget_set = n;
    m->budget = n;
}

bool hearth_grammar_is_complete(const hearth_grammar *m) {
    return m && m->st_len[m->cur] > 0 && m->members[m->st_first[m->cur]] == 0;
}

bool hearth_grammar_is_done(const hearth_grammar *m) {
    return m && (m->ended || (m->st_len[m->cur] == 1 && m->members[m->st_first[m->cur]] == 0));
}

/* One pass over the vocabulary trie from state cur: sets the bits of
 * allowed tokens in bits whose end state can finish in limit bytes, and
 * the largest such st_min in *maxmin.  False when the tables filled up. */
static bool walk(hearth_grammar *m, uint32_t limit, uint64_t *bits, uint32_t *maxmin) {
    const hearth_grammar_vocab *v = m->v;
    memset(bits, 0, v->n_words * sizeof *bits);
    uint32_t mx = 0;
    uint32_t *ws = m->walk;
    ws[0] = m->cur;
    for (uint32_t i = 0; i < v->n_nodes;) {
        uint32_t s = ws[v->depth[i] - 1];
        int32_t t = step(m, s, v->byte[i]);
        if (t < 0) {
            if (t == T_OVERFLOW) return false;
            i = v->end[i]; /* refused: skip the subtree */
            continue;
        }
        ws[v->depth[i]] = (uint32_t)t;
        uint32_t a = v->tok_first[i], z = v->tok_first[i + 1];
        if (a != z) {
            uint32_t mn = m->st_min[t];
            if (mn <= limit) {
                if (mn > mx) mx = mn;
                for (uint32_t k = a; k < z; k++) {
                    uint32_t id = (uint32_t)v->ids[k];
                    bits[id >> 6] |= 1ull << (id & 63);
                }
            }
        }
        i++;
    }
    if (hearth_grammar_is_complete(m)) {
        for (uint32_t k = 0; k < v->n_eog; k++) {
            uint32_t id = (uint32_t)v->eog_ids[k];
            bits[id >> 6] |= 1ull << (id & 63);
        }
    }
    *maxmin = mx;
    return true;
}

static bool any_bit(const uint64_t *bits, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (bits[i]) return true;
    }
    return false;
}

const uint64_t *grammar_mask(hearth_grammar *m) {
    const hearth_grammar_vocab *v = m->v;
    if (m->ended) {
        snprintf(m->error, sizeof m->error, "grammar: the generation has ended");
        return NULL;
    }
    if (!make_room(m)) return NULL;
    /* Tokens after this one: a generation with a budget must stay finishable. */
    uint32_t limit = GRAM_INF;
    if (m->budget_set) {
        uint32_t left = m->budget > 0 ? m->budget - 1 : 0;
        if (m->st_min[m->cur] <= left + 1) limit = left;
    }
    m->tick++;
    for (int i = 0; i < N_MASK_CACHE; i++) {
        if (m->mask_state[i] == m->cur && m->mask_maxmin[i] <= limit) {
            m->mask_used[i] = m->tick;
            return m->mask + (size_t)i * v->n_words;
        }
    }
    /* Walk without the limit first (that mask is cached), then with it
     * when the limit cuts. */
    int slot = 0;
    for (int i = 1; i < N_MASK_CACHE; i++) {
        if (m->mask_state[i] == UINT32_MAX ||
            (m->mask_state[slot] != UINT32_MAX && m->mask_used[i] < m->mask_used[slot])) {
            slot = i;
        }
    }
    uint64_t *bits = m->mask + (size_t)slot * v->n_words;
    uint32_t mx = 0;
    bool ok = false;
    for (int attempt = 0; attempt < 2 && !ok; attempt++) {
        m->mask_state[slot] = UINT32_MAX;
        ok = walk(m, GRAM_INF, bits, &mx);
        if (!ok && !flush(m)) return NULL;
        if (!ok) {
            for (int i = 0; i < N_MASK_CACHE; i++) m->mask_state[i] = UINT32_MAX;
        }
    }
    if (!ok) {
        snprintf(m->error, sizeof m->error,
                 "grammar: one token's choices outgrow the parser tables (%u stacks, %u states)",
                 CAP_NODES, CAP_STATES);
        return NULL;
    }
    m->mask_state[slot] = m->cur;
    m->mask_maxmin[slot] = mx;
    m->mask_used[slot] = m->tick;
    if (mx > limit) {
        uint64_t *lim = m->mask + (size_t)N_MASK_CACHE * v->n_words;
        uint32_t mx2;
        if (!walk(m, limit, lim, &mx2)) {
            snprintf(m->error, sizeof m->error, "grammar: parser tables full");
            return NULL;
        }
        if (any_bit(lim, v->n_words)) return lim;
    }
    if (!any_bit(bits, v->n_words)) {
        snprintf(m->error, sizeof m->error,
                 hearth_grammar_is_complete(m)
                     ? "grammar: the text is complete and the vocabulary has no end token"
                     : "grammar: no token of the vocabulary can continue the text");
        return NULL;
    }
    return bits;
}

const char *grammar_error(const hearth_grammar *m) {
    return m->error;
}

int32_t grammar_n_vocab(const hearth_grammar *m) {
    return m->v->n_vocab;
}

hearth_status hearth_grammar_apply(hearth_grammar *m, float *logits, int32_t n_logits,
                                   hearth_error *err) {
    if (!m || !logits || n_logits < 0) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "grammar: NULL argument");
    }
    const uint64_t *bits = grammar_mask(m);
    if (!bits) return error_set(err, HEARTH_ERR_BAD_INPUT, "%s", m->error);
    for (int32_t id = m->v->n_vocab; id < n_logits; id++) logits[id] = -INFINITY;
    int32_t n = m->v->n_vocab < n_logits ? m->v->n_vocab : n_logits;
    for (int32_t w = 0; w * 64 < n; w++) {
        uint64_t b = bits[w];
        if (b == ~0ull) continue;
        int32_t hi = (w + 1) * 64 < n ? (w + 1) * 64 : n;
        for (int32_t id = w * 64; id < hi; id++) {
            if (!((b >> (id & 63)) & 1)) logits[id] = -INFINITY;
        }
    }
    return HEARTH_OK;
}

hearth_status hearth_grammar_accept(hearth_grammar *m, hearth_token id, hearth_error *err) {
    if (!m) return error_set(err, HEARTH_ERR_INVALID_ARG, "grammar: NULL grammar");
    const hearth_grammar_vocab *v = m->v;
    if (id < 0 || id >= v->n_vocab) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "grammar: token %d outside the vocabulary",
                         id);
    }
    if (m->ended) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "grammar: token %d after the end", id);
    }
    if (v->is_eog[id]) {
        if (!hearth_grammar_is_complete(m)) {
            return error_set(err, HEARTH_ERR_INVALID_ARG,
                             "grammar: end token %d before the text is complete", id);
        }
        m->ended = true;
        return HEARTH_OK;
    }
    uint32_t len = v->piece_off[id + 1] - v->piece_off[id];
    const uint8_t *p = (const uint8_t *)v->piece + v->piece_off[id];
    if (len == 0) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "grammar: token %d has no text", id);
    }
    if (!make_room(m)) return error_set(err, HEARTH_ERR_BAD_INPUT, "%s", m->error);
    for (int attempt = 0; attempt < 2; attempt++) {
        uint32_t s = m->cur;
        int32_t t = 0;
        for (uint32_t k = 0; k < len && t >= 0; k++) {
            t = step(m, s, p[k]);
            if (t >= 0) s = (uint32_t)t;
        }
        if (t == T_DEAD) {
            return error_set(err, HEARTH_ERR_INVALID_ARG,
                             "grammar: token %d does not continue the text", id);
        }
        if (t >= 0) {
            m->cur = s;
            if (m->budget > 0) m->budget--;
            return HEARTH_OK;
        }
        if (!flush(m)) break;
    }
    return error_set(err, HEARTH_ERR_BAD_INPUT, "%s",
                     m->error[0] ? m->error : "grammar: parser tables full");
}

hearth_status hearth_json_schema_to_gbnf(const char *schema, size_t len, char **out,
                                         hearth_error *err) {
    size_t n;
    return json_schema_gbnf(schema, len, out, &n, err);
}
