/* memory.c — memory a model can plan: budget, compute-type cast, mlock.
 *
 * Before a byte of weights is read, the planner works out what running a
 * model will hold: the file (mapped read-only, or read into anonymous
 * memory), copies of the unquantized matrices cast to the compute type,
 * less the file pages those copies replace (given back with MADV_DONTNEED
 * once cast), plus the KV cache and scratch of each context, whose exact
 * sizes come from context_plan.  The sum is checked against a budget (by
 * default HEARTH_DEFAULT_BUDGET_PERCENT of physical RAM), and with mlock
 * against RLIMIT_MEMLOCK, so that a model that would swap or fail to lock
 * is refused up front with the whole breakdown.  Contexts reserve their
 * share of the budget when created and give it back when freed.
 *
 * The report side reads what the system says is resident (/proc/self
 * status, mincore) for the table `hearth run --verbose` prints.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "kernels/cpu.h"
#include "model/model.h"
#include "util/dtype.h"
#include "util/error.h"
#include "util/threadpool.h"

/* Progress and pre-faulting move through memory in pieces this large. */
#define CHUNK_BYTES ((uint64_t)256 << 20)

#define STR_(x)                    #x
#define STR(x)                     STR_(x)
#define HEARTH_BUDGET_DEFAULT_TEXT STR(HEARTH_DEFAULT_BUDGET_PERCENT) "% of RAM"

static uint64_t page_size(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (uint64_t)p : 4096;
}

static uint64_t round_up(uint64_t n, uint64_t to) {
    return n > UINT64_MAX - to ? UINT64_MAX : (n + to - 1) / to * to;
}

/* ---------------------------------------------------------------- system figures */

/* The value of "key:" in a /proc file of "key: N kB" lines, in bytes; 0
 * when absent. */
static uint64_t proc_kib(const char *path, const char *key) {
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    char line[256];
    size_t klen = strlen(key);
    uint64_t v = 0;
    while (fgets(line, sizeof line, fp)) {
        if (!strncmp(line, key, klen) && line[klen] == ':') {
            unsigned long long kib = 0;
            if (sscanf(line + klen + 1, "%llu", &kib) == 1) v = (uint64_t)kib * 1024;
            break;
        }
    }
    fclose(fp);
    return v;
}

static uint64_t ram_total(void) {
    uint64_t v = proc_kib("/proc/meminfo", "MemTotal");
    if (v == 0) {
        long pages = sysconf(_SC_PHYS_PAGES);
        if (pages > 0) v = (uint64_t)pages * page_size();
    }
    return v;
}

/* True when this process may lock memory beyond RLIMIT_MEMLOCK
 * (CAP_IPC_LOCK, bit 14, in its effective capabilities). */
static bool has_cap_ipc_lock(void) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) return false;
    char line[256];
    bool has = false;
    while (fgets(line, sizeof line, fp)) {
        unsigned long long caps;
        if (sscanf(line, "CapEff: %llx", &caps) == 1) {
            has = (caps >> 14) & 1;
            break;
        }
    }
    fclose(fp);
    return has;
}

/* "17.32 GiB", "384.0 MiB", "12.0 KiB", "100 B". */
static const char *fmt_bytes(uint64_t n, char *buf, size_t cap) {
    if (n == HEARTH_BUDGET_UNLIMITED) {
        snprintf(buf, cap, "unlimited");
    } else if (n >= ((uint64_t)1 << 30)) {
        snprintf(buf, cap, "%.2f GiB", (double)n / (double)(1u << 30));
    } else if (n >= ((uint64_t)1 << 20)) {
        snprintf(buf, cap, "%.1f MiB", (double)n / (double)(1u << 20));
    } else if (n >= 1024) {
        snprintf(buf, cap, "%.1f KiB", (double)n / 1024.0);
    } else {
        snprintf(buf, cap, "%" PRIu64 " B", n);
    }
    return buf;
}

/* ---------------------------------------------------------------- compute type */

/* The type unquantized matrices are cast to (HEARTH_DTYPE_COUNT: none),
 * and in *why how it was chosen. */
static hearth_dtype compute_dtype(hearth_compute_type t, const char **why) {
    switch (t) {
    case HEARTH_COMPUTE_FILE: *why = "as stored in the file"; return HEARTH_DTYPE_COUNT;
    case HEARTH_COMPUTE_F32: *why = "asked for"; return HEARTH_DTYPE_F32;
    case HEARTH_COMPUTE_F16: *why = "asked for"; return HEARTH_DTYPE_F16;
    case HEARTH_COMPUTE_BF16: *why = "asked for"; return HEARTH_DTYPE_BF16;
    case HEARTH_COMPUTE_AUTO: break;
    }
#if defined(__x86_64__) || defined(__i386__)
    /* CPUID says what the chip has; the kernel features say what the
     * kernels will use (HEARTH_KERNELS may lower them). */
    __builtin_cpu_init();
    const cpu_features *f = cpu_get_features();
    if (__builtin_cpu_supports("avx512bf16") && f->avx512_bf16) {
        *why = "auto: the CPU has AVX512_BF16";
        return HEARTH_DTYPE_BF16;
    }
    /* Not every compiler's __builtin_cpu_supports knows F16C: ask CPUID. */
    unsigned eax, ebx, ecx, edx;
    bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
    if (f16c && __builtin_cpu_supports("avx2") && f->avx2) {
        *why = "auto: the CPU has F16C (no AVX512_BF16)";
        return HEARTH_DTYPE_F16;
    }
#endif
    *why = "auto: the CPU has neither AVX512_BF16 nor F16C";
    return HEARTH_DTYPE_F32;
}

/* ---------------------------------------------------------------- the weights */

size_t model_weight_refs(hearth_model *m, weight_ref *out) {
    size_t n = 0;
#define REF(field, mat)                                                                            \
    do {                                                                                           \
        if (out) out[n] = (weight_ref){&(field), (mat)};                                           \
        n++;                                                                                       \
    } while (0)
    REF(m->token_embd, true);
    REF(m->output_norm, false);
    if (!m->hp.tied_output) REF(m->output, true);
    for (uint32_t il = 0; il < m->hp.n_layer && m->layers; il++) {
        layer_weights *l = &m->layers[il];
        REF(l->attn_norm, false);
        REF(l->bq, false);
        REF(l->bk, false);
        REF(l->bv, false);
        REF(l->q_norm, false);
        REF(l->k_norm, false);
        REF(l->ffn_norm, false);
        REF(l->wq, true);
        REF(l->wk, true);
        REF(l->wv, true);
        REF(l->wo, true);
        REF(l->w_gate, true);
        REF(l->w_up, true);
        REF(l->w_down, true);
        REF(l->gate_inp, true);
        REF(l->gate_exps, true);
        REF(l->up_exps, true);
        REF(l->down_exps, true);
        REF(l->gate_inp_shexp, true);
        REF(l->gate_shexp, true);
        REF(l->up_shexp, true);
        REF(l->down_shexp, true);
    }
#undef REF
    return n;
}

static bool is_float_type(uint32_t t) {
    return t == HEARTH_DTYPE_F32 || t == HEARTH_DTYPE_F16 || t == HEARTH_DTYPE_BF16;
}

static bool should_cast(const weight_ref *r, hearth_dtype to) {
    return to != HEARTH_DTYPE_COUNT && r->matrix && r->w->data && is_float_type(r->w->type) &&
           r->w->type != (uint32_t)to;
}

static uint64_t weight_bytes(const weight *w) {
    return w->data ? w->row_bytes * (uint64_t)w->ne1 * (uint64_t)w->ne2 : 0;
}

static uint64_t cast_copy_bytes(const weight *w, hearth_dtype to) {
    return dtype_row_bytes(to, (uint64_t)w->ne0) * (uint64_t)w->ne1 * (uint64_t)w->ne2;
}

/* The work of casting m's weights to `to`, worked out once and used both
 * by the planner (which only reads the totals) and by the cast itself. */
typedef struct cast_work {
    weight_ref *refs;  /* (n) weights to cast, in the order of their data in the file */
    uint64_t *offsets; /* (n) of each copy in the cast mapping */
    size_t n;
    uint64_t bytes;     /* the cast mapping, whole pages */
    mem_range *release; /* (n_release) whole pages of the file only cast weights occupy */
    size_t n_release;
    uint64_t released; /* their bytes */
} cast_work;

static void cast_work_free(cast_work *cw) {
    free(cw->refs);
    free(cw->offsets);
    free(cw->release);
    memset(cw, 0, sizeof *cw);
}

static int cmp_ref_data(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const weight_ref *)a)->w->data;
    uintptr_t y = (uintptr_t)((const weight_ref *)b)->w->data;
    return x < y ? -1 : x > y;
}

typedef struct span {
    uint64_t start, end; /* byte offsets in the file */
    bool cast;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    /* At one start, kept tensors first: they protect what they cover. */
    return (int)x->cast - (int)y->cast;
}

/* True when data is the start of one of the n weights in refs (sorted by
 * data). */
static bool is_cast_data(const weight_ref *refs, size_t n, const void *data) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uintptr_t v = (uintptr_t)refs[mid].w->data;
        if (v == (uintptr_t)data) return true;
        if (v < (uintptr_t)data) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

static bool add_release(cast_work *cw, const gguf_file *f, uint64_t a, uint64_t b, size_t cap) {
    uint64_t page = page_size();
    uint64_t pa = round_up(a, page), pb = b / page * page;
    if (pb <= pa) return true;
    if (cw->n_release >= cap) return false;
    cw->release[cw->n_release++] = (mem_range){(uint8_t *)f->base + pa, pb - pa};
    cw->released += pb - pa;
    return true;
}

/* Finds the whole pages of the file that only the data of cast weights
 * (and the padding between them) occupies: once those weights are cast,
 * nothing reads the pages again.  A tensor that is not cast protects every
 * page it touches, whatever a hostile file overlaps. */
static hearth_status find_release(cast_work *cw, const gguf_file *f, hearth_error *err) {
    span *spans = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *spans);
    size_t cap = (size_t)f->n_tensors + 1;
    cw->release = malloc(cap * sizeof *cw->release);
    if (!spans || !cw->release) {
        free(spans);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory planning the cast");
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        uint64_t start = (uint64_t)((const uint8_t *)t->data - f->base);
        spans[i] = (span){start, start + t->nbytes, is_cast_data(cw->refs, cw->n, t->data)};
    }
    qsort(spans, (size_t)f->n_tensors, sizeof *spans, cmp_span);
    uint64_t protect_end = f->data_offset; /* header and metadata stay */
    uint64_t rs = 0, re = 0;
    bool open = false, ok = true;
    for (uint64_t i = 0; i < f->n_tensors && ok; i++) {
        const span *s = &spans[i];
        if (s->cast) {
            if (!open) {
                rs = s->start > protect_end ? s->start : protect_end;
                re = s->end;
                open = true;
            } else if (s->end > re) {
                re = s->end;
            }
        } else {
            if (open) ok = add_release(cw, f, rs, re < s->start ? re : s->start, cap);
            open = false;
            if (s->end > protect_end) protect_end = s->end;
        }
    }
    if (open && ok) ok = add_release(cw, f, rs, re, cap);
    free(spans);
    if (!ok) return error_set(err, HEARTH_ERR_INTERNAL, "more released ranges than tensors");
    return HEARTH_OK;
}

static hearth_status cast_work_build(hearth_model *m, hearth_dtype to, cast_work *cw,
                                     hearth_error *err) {
    memset(cw, 0, sizeof *cw);
    if (to == HEARTH_DTYPE_COUNT) return HEARTH_OK;
    size_t n_all = model_weight_refs(m, NULL);
    weight_ref *all = malloc(n_all * sizeof *all);
    if (!all) return error_set(err, HEARTH_ERR_NOMEM, "out of memory planning the cast");
    model_weight_refs(m, all);
    size_t n = 0;
    for (size_t i = 0; i < n_all; i++) {
        if (should_cast(&all[i], to)) all[n++] = all[i];
    }
    cw->refs = all;
    cw->n = n;
    if (n == 0) return HEARTH_OK;
    qsort(cw->refs, n, sizeof *cw->refs, cmp_ref_data);
    cw->offsets = malloc(n * sizeof *cw->offsets);
    if (!cw->offsets) return error_set(err, HEARTH_ERR_NOMEM, "out of memory planning the cast");
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        cw->offsets[i] = at;
        at = round_up(at + cast_copy_bytes(cw->refs[i].w, to), 64);
    }
    cw->bytes = round_up(at, page_size());
    return find_release(cw, m->file, err);
}

/* ---------------------------------------------------------------- planning */

hearth_status model_memory_plan(hearth_model *m, const hearth_model_params *p, hearth_error *err) {
    if ((unsigned)p->compute_type > HEARTH_COMPUTE_BF16) {
        return error_set(err, HEARTH_ERR_INVALID_ARG, "compute type %d is not one of hearth's",
                         (int)p->compute_type);
    }
    model_memory *mem = calloc(1, sizeof *mem);
    if (!mem) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    m->mem = mem;
    mem->mmap = p->use_mmap;
    mem->mlock = p->use_mlock;
    mem->prefault = p->prefault || p->use_mlock;
    mem->ram = ram_total();
    mem->budget = p->memory_budget;
    if (mem->budget == 0) {
        mem->budget_default = true;
        mem->budget =
            mem->ram ? mem->ram / 100 * HEARTH_DEFAULT_BUDGET_PERCENT : HEARTH_BUDGET_UNLIMITED;
    }
    mem->compute_dtype = compute_dtype(p->compute_type, &mem->compute_why);
    cast_work cw;
    hearth_status st = cast_work_build(m, mem->compute_dtype, &cw, err);
    if (st == HEARTH_OK) {
        mem->file_bytes = m->file->size;
        mem->weight_bytes = m->weight_bytes;
        mem->cast_bytes = cw.bytes;
        mem->released_bytes = cw.released;
        mem->n_cast = (uint32_t)cw.n;
        mem->model_bytes = mem->file_bytes - mem->released_bytes + mem->cast_bytes;
        atomic_init(&mem->committed, mem->model_bytes);
        atomic_init(&mem->ctx_kv, 0);
        atomic_init(&mem->ctx_scratch, 0);
        atomic_init(&mem->n_contexts, 0);
    }
    cast_work_free(&cw);
    return st;
}

static const char *budget_desc(const model_memory *mem, char *buf, size_t cap) {
    char b[32], r[32];
    if (mem->budget_default) {
        snprintf(buf, cap, "the default budget of %s (%d%% of %s RAM)",
                 fmt_bytes(mem->budget, b, sizeof b), HEARTH_DEFAULT_BUDGET_PERCENT,
                 fmt_bytes(mem->ram, r, sizeof r));
    } else {
        snprintf(buf, cap, "the budget of %s", fmt_bytes(mem->budget, b, sizeof b));
    }
    return buf;
}

/* "model file X (weights W) - released R + cast copies C" */
static const char *model_breakdown(const model_memory *mem, char *buf, size_t cap) {
    char f[32], w[32], r[32], c[32];
    snprintf(buf, cap, "model file %s (weights %s) - released %s + cast copies %s",
             fmt_bytes(mem->file_bytes, f, sizeof f), fmt_bytes(mem->weight_bytes, w, sizeof w),
             fmt_bytes(mem->released_bytes, r, sizeof r), fmt_bytes(mem->cast_bytes, c, sizeof c));
    return buf;
}

#define MEMLOCK_HOWTO                                                                              \
    "raise it with 'ulimit -l unlimited' in the shell that starts hearth (as root), a "            \
    "'USER - memlock unlimited' line in /etc/security/limits.conf (then log in again), "           \
    "LimitMEMLOCK=infinity for a systemd service, or 'setcap cap_ipc_lock+ep' on the program"

/* Checks that need more bytes may be locked. */
static hearth_status check_memlock(uint64_t need, hearth_error *err) {
    if (has_cap_ipc_lock()) return HEARTH_OK;
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return HEARTH_OK;
    uint64_t locked = proc_kib("/proc/self/status", "VmLck");
    if (locked + need <= (uint64_t)rl.rlim_cur) return HEARTH_OK;
    char n[32], l[32], c[32];
    return error_set(
        err, HEARTH_ERR_OS_LIMIT,
        "mlock of %s%s%s exceeds RLIMIT_MEMLOCK (max locked memory) of %s: " MEMLOCK_HOWTO,
        fmt_bytes(need, n, sizeof n), locked ? " beside " : "",
        locked ? fmt_bytes(locked, l, sizeof l) : "",
        fmt_bytes((uint64_t)rl.rlim_cur, c, sizeof c));
}

hearth_status model_memory_check_load(const model_memory *mem, hearth_error *err) {
    if (mem->model_bytes > mem->budget) {
        char bud[128], brk[256], t[32];
        return error_set(err, HEARTH_ERR_OVER_BUDGET,
                         "the model needs %s, more than %s: %s (before any context)",
                         fmt_bytes(mem->model_bytes, t, sizeof t),
                         budget_desc(mem, bud, sizeof bud), model_breakdown(mem, brk, sizeof brk));
    }
    return mem->mlock ? check_memlock(mem->model_bytes, err) : HEARTH_OK;
}

hearth_status memory_reserve(const hearth_model *m, uint64_t kv_bytes, uint64_t scratch_bytes,
                             const char *what, hearth_error *err) {
    model_memory *mem = m->mem;
    if (!mem) return HEARTH_OK;
    uint64_t need = kv_bytes + scratch_bytes;
    if (mem->mlock) {
        hearth_status st = check_memlock(need, err);
        if (st != HEARTH_OK) return st;
    }
    uint64_t cur = atomic_load(&mem->committed);
    do {
        if (need > mem->budget || cur > mem->budget - need) {
            char bud[128], n[32], kv[32], sc[32], fr[32], md[32], cx[32];
            uint64_t others = cur - mem->model_bytes;
            uint32_t n_ctx = atomic_load(&mem->n_contexts);
            return error_set(
                err, HEARTH_ERR_OVER_BUDGET,
                "%s needs %s (KV cache %s + scratch %s) but only %s of %s is free (model %s, "
                "%u other context%s %s)",
                what, fmt_bytes(need, n, sizeof n), fmt_bytes(kv_bytes, kv, sizeof kv),
                fmt_bytes(scratch_bytes, sc, sizeof sc),
                fmt_bytes(cur < mem->budget ? mem->budget - cur : 0, fr, sizeof fr),
                budget_desc(mem, bud, sizeof bud), fmt_bytes(mem->model_bytes, md, sizeof md),
                n_ctx, n_ctx == 1 ? "" : "s", fmt_bytes(others, cx, sizeof cx));
        }
    } while (!atomic_compare_exchange_weak(&mem->committed, &cur, cur + need));
    atomic_fetch_add(&mem->ctx_kv, kv_bytes);
    atomic_fetch_add(&mem->ctx_scratch, scratch_bytes);
    atomic_fetch_add(&mem->n_contexts, 1);
    return HEARTH_OK;
}

void memory_unreserve(const hearth_model *m, uint64_t kv_bytes, uint64_t scratch_bytes) {
    model_memory *mem = m->mem;
    if (!mem) return;
    atomic_fetch_sub(&mem->committed, kv_bytes + scratch_bytes);
    atomic_fetch_sub(&mem->ctx_kv, kv_bytes);
    atomic_fetch_sub(&mem->ctx_scratch, scratch_bytes);
    atomic_fetch_sub(&mem->n_contexts, 1);
}

/* ---------------------------------------------------------------- casting */

static dequantize_row_fn to_float(uint32_t t) {
    return t == HEARTH_DTYPE_F16    ? dequantize_row_f16_ref
           : t == HEARTH_DTYPE_BF16 ? dequantize_row_bf16_ref
                                    : dequantize_row_f32_ref;
}

static quantize_row_fn from_float(uint32_t t) {
    return t == HEARTH_DTYPE_F16    ? quantize_row_f16_ref
           : t == HEARTH_DTYPE_BF16 ? quantize_row_bf16_ref
                                    : quantize_row_f32_ref;
}

/* Rows [row0, row0 + n_rows) of one weight, converted by the pool's threads. */
typedef struct cast_job {
    const uint8_t *src;
    uint8_t *dst;
    uint64_t src_row, dst_row; /* bytes per row */
    int64_t ne0, row0, n_rows;
    dequantize_row_fn in;
    quantize_row_fn out;
    float *bufs; /* (nth, ne0) */
} cast_job;

static void cast_worker(void *arg, int ith, int nth) {
    const cast_job *j = arg;
    int64_t b, e;
    threadpool_split(j->n_rows, ith, nth, &b, &e);
    float *buf = j->bufs + (size_t)ith * (size_t)j->ne0;
    for (int64_t r = j->row0 + b; r < j->row0 + e; r++) {
        j->in(j->src + (uint64_t)r * j->src_row, buf, j->ne0);
        j->out(buf, j->dst + (uint64_t)r * j->dst_row, j->ne0);
    }
}

static void release(const mem_range *r) {
    madvise(r->ptr, (size_t)r->bytes, MADV_DONTNEED);
}

/* Casts every weight of cw into mem->cast_buf and points the weights at
 * the copies; file pages are given back as soon as every weight on them
 * is cast, so the peak stays near the plan. */
static hearth_status run_cast(hearth_model *m, cast_work *cw, const hearth_model_params *p,
                              hearth_error *err) {
    model_memory *mem = m->mem;
    hearth_dtype to = mem->compute_dtype;
    void *buf =
        mmap(NULL, (size_t)cw->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        char b[32];
        return error_set(err, HEARTH_ERR_NOMEM, "cannot allocate %s for weights cast to %s",
                         fmt_bytes(cw->bytes, b, sizeof b), hearth_dtype_name(to));
    }
#ifdef MADV_HUGEPAGE
    madvise(buf, (size_t)cw->bytes, MADV_HUGEPAGE);
#endif
    mem->cast_buf = buf;
    int64_t widest = 1;
    for (size_t i = 0; i < cw->n; i++) {
        if (cw->refs[i].w->ne0 > widest) widest = cw->refs[i].w->ne0;
    }
    threadpool *pool = NULL;
    hearth_status st = threadpool_create(threadpool_n_cpus(), &pool, err);
    if (st != HEARTH_OK) return st;
    int nth = threadpool_size(pool);
    float *bufs = malloc((size_t)nth * (size_t)widest * sizeof(float));
    if (!bufs) {
        threadpool_free(pool);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for casting");
    }
    uint64_t done = 0, total = cw->bytes;
    size_t next_release = 0;
    if (p->progress) p->progress("casting", 0, total, p->progress_arg);
    for (size_t i = 0; i < cw->n; i++) {
        weight *w = cw->refs[i].w;
        /* Pages wholly before this weight hold only weights cast already. */
        while (next_release < cw->n_release &&
               cw->release[next_release].ptr + cw->release[next_release].bytes <=
                   (const uint8_t *)w->data) {
            release(&cw->release[next_release++]);
        }
        cast_job j = {w->data,
                      mem->cast_buf + cw->offsets[i],
                      w->row_bytes,
                      dtype_row_bytes(to, (uint64_t)w->ne0),
                      w->ne0,
                      0,
                      0,
                      to_float(w->type),
                      from_float(to),
                      bufs};
        int64_t rows = w->ne1 * w->ne2;
        int64_t chunk_rows = (int64_t)(CHUNK_BYTES / (j.dst_row ? j.dst_row : 1));
        if (chunk_rows < 1) chunk_rows = 1;
        for (int64_t r = 0; r < rows; r += chunk_rows) {
            j.row0 = r;
            j.n_rows = rows - r < chunk_rows ? rows - r : chunk_rows;
            threadpool_run(pool, cast_worker, &j);
            done += (uint64_t)j.n_rows * j.dst_row;
            if (p->progress) p->progress("casting", done, total, p->progress_arg);
        }
        w->data = j.dst;
        w->type = to;
        w->row_bytes = j.dst_row;
        w->kt = kernel_traits_get(to);
    }
    while (next_release < cw->n_release) release(&cw->release[next_release++]);
    if (p->progress) p->progress("casting", total, total, p->progress_arg);
    free(bufs);
    threadpool_free(pool);
    if (m->hp.tied_output) m->output = m->token_embd;
    return HEARTH_OK;
}

/* ---------------------------------------------------------------- pinning */

hearth_status memory_pin(void *p, uint64_t n, bool lock, hearth_error *err) {
    if (n == 0) return HEARTH_OK;
    if (lock) {
        if (mlock(p, (size_t)n) != 0) {
            char b[32];
            int e = errno;
            return error_set(err, HEARTH_ERR_OS_LIMIT, "mlock of %s failed: %s; " MEMLOCK_HOWTO,
                             fmt_bytes(n, b, sizeof b), strerror(e));
        }
        return HEARTH_OK;
    }
    /* Writing one byte per page makes the kernel give each page its frame
     * now rather than at the first token. */
    uint64_t page = page_size();
    volatile uint8_t *b = p;
    for (uint64_t off = 0; off < n; off += page) b[off] = 0;
    return HEARTH_OK;
}

/* Reads one byte per page of n bytes at p (a read-only mapping). */
static void touch_read(const uint8_t *p, uint64_t n) {
#ifdef MADV_POPULATE_READ
    if (madvise((void *)p, (size_t)n, MADV_POPULATE_READ) == 0) return;
#endif
    uint64_t page = page_size();
    volatile uint8_t sink = 0;
    for (uint64_t off = 0; off < n; off += page) sink ^= p[off];
    (void)sink;
}

/* Pre-faults or locks the kept pages of the file and the cast copies. */
static hearth_status pin_model(model_memory *mem, const hearth_model_params *p, hearth_error *err) {
    uint64_t total = mem->cast_bytes;
    for (size_t i = 0; i < mem->n_kept; i++) total += mem->kept[i].bytes;
    const char *phase = mem->mlock ? "locking" : "pre-faulting";
    uint64_t done = 0;
    if (p->progress) p->progress(phase, 0, total, p->progress_arg);
    for (size_t i = 0; i <= mem->n_kept; i++) {
        mem_range r = i < mem->n_kept ? mem->kept[i] : (mem_range){mem->cast_buf, mem->cast_bytes};
        for (uint64_t off = 0; off < r.bytes; off += CHUNK_BYTES) {
            uint64_t n = r.bytes - off < CHUNK_BYTES ? r.bytes - off : CHUNK_BYTES;
            if (mem->mlock) {
                hearth_status st = memory_pin(r.ptr + off, n, true, err);
                if (st != HEARTH_OK) return st;
            } else {
                touch_read(r.ptr + off, n);
            }
            done += n;
            if (p->progress) p->progress(phase, done, total, p->progress_arg);
        }
    }
    return HEARTH_OK;
}

hearth_status model_memory_apply(hearth_model *m, const hearth_model_params *p, hearth_error *err) {
    model_memory *mem = m->mem;
    cast_work cw;
    hearth_status st = cast_work_build(m, mem->compute_dtype, &cw, err);
    if (st == HEARTH_OK && (cw.bytes != mem->cast_bytes || cw.released != mem->released_bytes ||
                            m->file->size != mem->file_bytes)) {
        st = error_set(err, HEARTH_ERR_IO, "the file changed while it was being loaded");
    }
    if (st == HEARTH_OK && cw.n > 0) st = run_cast(m, &cw, p, err);
    /* What stays of the file: the complement of the released pages. */
    if (st == HEARTH_OK) {
        mem->kept = malloc((cw.n_release + 1) * sizeof *mem->kept);
        if (!mem->kept) st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    if (st == HEARTH_OK) {
        uint8_t *at = (uint8_t *)m->file->base, *end = at + m->file->size;
        for (size_t i = 0; i <= cw.n_release; i++) {
            uint8_t *stop = i < cw.n_release ? cw.release[i].ptr : end;
            if (stop > at) mem->kept[mem->n_kept++] = (mem_range){at, (uint64_t)(stop - at)};
            if (i < cw.n_release) at = cw.release[i].ptr + cw.release[i].bytes;
        }
        /* The forward pass reads the weights as they are now. */
        size_t n_all = model_weight_refs(m, NULL);
        weight_ref *all = malloc(n_all * sizeof *all);
        if (!all) {
            st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
        } else {
            model_weight_refs(m, all);
            m->weight_bytes = 0;
            for (size_t i = 0; i < n_all; i++) m->weight_bytes += weight_bytes(all[i].w);
            free(all);
        }
    }
    cast_work_free(&cw);
    if (st == HEARTH_OK && mem->prefault) st = pin_model(mem, p, err);
    return st;
}

void model_memory_free(model_memory *mem) {
    if (!mem) return;
    if (mem->cast_buf) munmap(mem->cast_buf, (size_t)mem->cast_bytes);
    free(mem->kept);
    free(mem);
}

/* ---------------------------------------------------------------- public */

hearth_status hearth_model_plan(const char *path, const hearth_model_params *mparams,
                                const hearth_context_params *cparams, hearth_memory_plan *plan,
                                hearth_error *err) {
    memset(plan, 0, sizeof *plan);
    plan->compute_dtype = HEARTH_DTYPE_COUNT;
    plan->compute_why = "";
    hearth_model_params defaults = hearth_model_default_params();
    if (!mparams) mparams = &defaults;
    hearth_model *m = calloc(1, sizeof *m);
    if (!m) return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    /* A mapping: parsing the header reads none of the weights. */
    hearth_status st = gguf_open(path, true, &m->file, err);
    if (st == HEARTH_OK) {
        st = model_bind(m, err);
        if (st == HEARTH_OK) st = model_memory_plan(m, mparams, err);
        if (st != HEARTH_OK) error_prefix(err, st, "%s", path);
    }
    hearth_context_params cp;
    if (st == HEARTH_OK && cparams) {
        st = context_plan(&m->hp, cparams, &cp, &plan->kv_bytes, &plan->scratch_bytes, err);
        if (st == HEARTH_OK) {
            plan->n_ctx = cp.n_ctx;
            plan->n_seq = cp.n_seq;
            plan->n_batch = cp.n_batch;
            plan->n_threads = cp.n_threads;
        }
    }
    if (st != HEARTH_OK) {
        hearth_model_free(m);
        return st;
    }
    const model_memory *mem = m->mem;
    plan->file_bytes = mem->file_bytes;
    plan->weight_bytes = mem->weight_bytes;
    plan->cast_bytes = mem->cast_bytes;
    plan->released_bytes = mem->released_bytes;
    plan->model_bytes = mem->model_bytes;
    plan->total_bytes = mem->model_bytes + plan->kv_bytes + plan->scratch_bytes;
    plan->budget_bytes = mem->budget;
    plan->budget_default = mem->budget_default;
    plan->ram_bytes = mem->ram;
    plan->n_cast = mem->n_cast;
    plan->compute_dtype = mem->compute_dtype;
    plan->compute_why = mem->compute_why;
    plan->n_ctx_train = m->hp.n_ctx_train;
    if (plan->total_bytes > mem->budget) {
        char bud[128], brk[256], t[32], kv[32], sc[32], ctx[64] = "";
        if (cparams) {
            snprintf(ctx, sizeof ctx, " (%u positions x %u sequence%s)", cp.n_ctx, cp.n_seq,
                     cp.n_seq == 1 ? "" : "s");
        }
        st = error_set(err, HEARTH_ERR_OVER_BUDGET,
                       "memory plan of %s exceeds %s: %s + KV cache %s%s + scratch %s",
                       fmt_bytes(plan->total_bytes, t, sizeof t), budget_desc(mem, bud, sizeof bud),
                       model_breakdown(mem, brk, sizeof brk),
                       fmt_bytes(plan->kv_bytes, kv, sizeof kv), ctx,
                       fmt_bytes(plan->scratch_bytes, sc, sizeof sc));
    } else if (mem->mlock) {
        st = check_memlock(plan->total_bytes, err);
    }
    hearth_model_free(m);
    return st;
}

static void row(FILE *fp, const char *name, uint64_t bytes, const char *note) {
    char b[32];
    fprintf(fp, "  %-12s %12s  %s\n", name, fmt_bytes(bytes, b, sizeof b), note);
}

static const char *cast_note(hearth_dtype dt, uint32_t n_cast, const char *why, char *buf,
                             size_t cap) {
    if (dt == HEARTH_DTYPE_COUNT) {
        snprintf(buf, cap, "none: weights run as stored");
    } else {
        snprintf(buf, cap, "%u unquantized matrices as %s (%s)", n_cast, hearth_dtype_name(dt),
                 why);
    }
    return buf;
}

void hearth_memory_plan_print(const hearth_memory_plan *p, FILE *fp) {
    char note[160], r[32];
    fprintf(fp, "hearth: memory plan\n");
    snprintf(note, sizeof note, "weights %s", fmt_bytes(p->weight_bytes, r, sizeof r));
    row(fp, "model file", p->file_bytes, note);
    row(fp, "cast copies", p->cast_bytes,
        cast_note(p->compute_dtype, p->n_cast, p->compute_why, note, sizeof note));
    row(fp, "released", p->released_bytes, "file pages given back once cast");
    snprintf(note, sizeof note, "%u positions x %u sequence%s", p->n_ctx, p->n_seq,
             p->n_seq == 1 ? "" : "s");
    row(fp, "KV cache", p->kv_bytes, note);
    snprintf(note, sizeof note, "batch %u, %d threads", p->n_batch, p->n_threads);
    row(fp, "scratch", p->scratch_bytes, note);
    row(fp, "total", p->total_bytes, "file - released + cast + KV + scratch");
    row(fp, "budget", p->budget_bytes,
        p->budget_default ? "default: " HEARTH_BUDGET_DEFAULT_TEXT : "asked for");
}

/* Bytes of [p, p + n) resident now (mincore), in pieces to bound the vector. */
static uint64_t resident_bytes(const uint8_t *p, uint64_t n) {
    uint64_t page = page_size(), total = 0;
    enum { VEC = 1 << 16 };
    unsigned char *vec = malloc(VEC);
    if (!vec) return 0;
    for (uint64_t off = 0; off < n; off += (uint64_t)VEC * page) {
        uint64_t len = n - off < (uint64_t)VEC * page ? n - off : (uint64_t)VEC * page;
        if (mincore((void *)(p + off), (size_t)len, vec) != 0) break;
        uint64_t pages = (len + page - 1) / page;
        for (uint64_t i = 0; i < pages; i++) total += (vec[i] & 1) ? page : 0;
    }
    free(vec);
    return total > n ? n : total;
}

void hearth_memory_report_get(const hearth_model *m, hearth_memory_report *out) {
    memset(out, 0, sizeof *out);
    out->compute_dtype = HEARTH_DTYPE_COUNT;
    out->compute_why = "";
    out->resident_bytes = proc_kib("/proc/self/status", "VmRSS");
    out->locked_bytes = proc_kib("/proc/self/status", "VmLck");
    out->ram_bytes = proc_kib("/proc/meminfo", "MemTotal");
    out->ram_available_bytes = proc_kib("/proc/meminfo", "MemAvailable");
    const model_memory *mem = m ? m->mem : NULL;
    if (!mem) return;
    out->mapped_bytes = mem->file_bytes;
    /* Released pages may linger in the page cache; they are not the model's. */
    for (size_t i = 0; i < mem->n_kept; i++) {
        out->mapped_resident_bytes += resident_bytes(mem->kept[i].ptr, mem->kept[i].bytes);
    }
    out->released_bytes = mem->released_bytes;
    out->cast_bytes = mem->cast_bytes;
    out->kv_bytes = atomic_load(&mem->ctx_kv);
    out->scratch_bytes = atomic_load(&mem->ctx_scratch);
    out->n_contexts = atomic_load(&mem->n_contexts);
    out->committed_bytes = atomic_load(&mem->committed);
    out->budget_bytes = mem->budget;
    out->budget_default = mem->budget_default;
    out->free_bytes = out->committed_bytes < mem->budget ? mem->budget - out->committed_bytes : 0;
    if (mem->budget == HEARTH_BUDGET_UNLIMITED) out->free_bytes = HEARTH_BUDGET_UNLIMITED;
    out->mmap = mem->mmap;
    out->mlock = mem->mlock;
    out->n_cast = mem->n_cast;
    out->n_repacked = m->n_repacked;
    out->compute_dtype = mem->compute_dtype;
    out->compute_why = mem->compute_why;
}

void hearth_memory_report_print(const hearth_memory_report *r, FILE *fp) {
    char note[192], a[32];
    fprintf(fp, "hearth: memory\n");
    snprintf(note, sizeof note, "model file, %s; %s of it resident (mincore)",
             r->mmap ? "mapped read-only" : "read into memory",
             fmt_bytes(r->mapped_resident_bytes, a, sizeof a));
    row(fp, "mapped", r->mapped_bytes, note);
    row(fp, "released", r->released_bytes, "file pages given back once cast");
    row(fp, "cast copies", r->cast_bytes,
        cast_note(r->compute_dtype, r->n_cast, r->compute_why, note, sizeof note));
    if (r->n_repacked > 0) {
        snprintf(note, sizeof note, "%u quantized matrices rewritten in place for this CPU",
                 r->n_repacked);
        row(fp, "repacked", 0, note);
    }
    snprintf(note, sizeof note, "%u context%s", r->n_contexts, r->n_contexts == 1 ? "" : "s");
    row(fp, "KV cache", r->kv_bytes, note);
    row(fp, "scratch", r->scratch_bytes, note);
    row(fp, "committed", r->committed_bytes, "mapped - released + cast + KV + scratch");
    snprintf(note, sizeof note, "%s",
             r->budget_default ? "default: " HEARTH_BUDGET_DEFAULT_TEXT : "asked for");
    row(fp, "budget", r->budget_bytes, note);
    row(fp, "free", r->free_bytes, "budget - committed");
    row(fp, "resident", r->resident_bytes, "VmRSS of the process");
    row(fp, "locked", r->locked_bytes, r->mlock ? "VmLck (mlock on)" : "VmLck (mlock off)");
    snprintf(note, sizeof note, "MemTotal; %s available",
             fmt_bytes(r->ram_available_bytes, a, sizeof a));
    row(fp, "RAM", r->ram_bytes, note);
}
