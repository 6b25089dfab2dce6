/* repack.c — weights rewritten at load into the layout this CPU reads fastest.
 *
 * Decoding streams every weight from memory once per token, so what counts
 * is how close a row's dot product comes to the memory's read rate.  A
 * Q4_0 or Q8_0 row as the file stores it interleaves 2-byte scales with
 * the quants (18- and 34-byte blocks): the AVX-512 kernels gather each
 * group of four blocks with byte permutes from loads that straddle cache
 * lines.  The repacked row holds the same bytes as all its quants, in the
 * order the kernel consumes them, then all its scales, so a group is one
 * or two 64-byte loads plus one 8-byte load, and the kernel keeps up with
 * the memory (see kernels/x86.c, decode_q4_0r and decode_q8_0r).
 *
 * Only weights in the model's own memory (the file read with use_mmap off)
 * are rewritten, in place: a mapped file stays shared with the page cache,
 * and a repack there would cost a private copy of every matrix.  Repacking
 * costs no memory and about a memmove of the weights in time.
 */
#include <stdlib.h>

#include "model/model.h"
#include "util/threadpool.h"

typedef struct repack_job {
    uint8_t *data;
    uint64_t row_bytes;
    int64_t ne0, rows;
    uint32_t type;
    int failed; /* rows kernel_repack_row refused: all or none, as repack_target checks */
} repack_job;

static void repack_worker(void *arg, int ith, int nth) {
    repack_job *j = arg;
    int64_t b, e;
    threadpool_split(j->rows, ith, nth, &b, &e);
    for (int64_t r = b; r < e; r++) {
        if (!kernel_repack_row(j->type, j->data + (uint64_t)r * j->row_bytes, j->ne0)) {
            __atomic_fetch_add(&j->failed, 1, __ATOMIC_RELAXED);
        }
    }
}

/* Whether w can be repacked whole: a matrix of a type with a repacked
 * layout, every row of it accepted by the repacker. */
static const kernel_traits *repack_target(const weight_ref *r) {
    const weight *w = r->w;
    if (!r->matrix || !w->data || !w->kt) return NULL;
    const kernel_traits *kt = kernel_traits_repacked(w->type);
    if (!kt || kt == w->kt) return NULL;
    /* Rows of 32-element blocks only (every Q4_0 and Q8_0 row is) and no wider
     * than the repacker's scratch. */
    if (w->ne0 % 32 != 0 || w->ne0 > 32 * 4096) return NULL;
    return kt;
}

uint32_t model_repack(hearth_model *m, const hearth_model_params *p) {
    if (!p || p->use_mmap || p->no_repack || m->gpu) return 0;
    size_t n = model_weight_refs(m, NULL);
    weight_ref *refs = malloc(n * sizeof *refs);
    if (!refs) return 0; /* the file layout works as well, only slower */
    model_weight_refs(m, refs);
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < n; i++) {
        if (repack_target(&refs[i])) {
            total += refs[i].w->row_bytes * (uint64_t)refs[i].w->ne1 * (uint64_t)refs[i].w->ne2;
        }
    }
    threadpool *pool = NULL;
    hearth_error err;
    if (total == 0 || threadpool_create(threadpool_n_cpus(), &pool, &err) != HEARTH_OK) {
        free(refs);
        return 0;
    }
    uint32_t repacked = 0;
    if (p->progress) p->progress("repacking", 0, total, p->progress_arg);
    for (size_t i = 0; i < n; i++) {
        const kernel_traits *kt = repack_target(&refs[i]);
        if (!kt) continue;
        weight *w = refs[i].w;
        /* The file was read into memory the model owns: writable. */
        repack_job j = {
            (uint8_t *)(uintptr_t)w->data, w->row_bytes, w->ne0, w->ne1 * w->ne2, w->type, 0};
        threadpool_run(pool, repack_worker, &j);
        if (j.failed == 0) {
            w->kt = kt;
            repacked++;
        }
        done += w->row_bytes * (uint64_t)j.rows;
        if (p->progress) p->progress("repacking", done, total, p->progress_arg);
    }
    threadpool_free(pool);
    free(refs);
    if (m->hp.tied_output) m->output = m->token_embd;
    return repacked;
}
