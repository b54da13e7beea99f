/*
 * save_delta.c - deltatensors' save_delta without a repository: a .wdelta
 * file from a fine-tune and its base, model folders (streaming, piece by
 * piece) or named tensors in memory (save-delta).
 *
 * Behaviour follows deltatensors 0.3.0 (format v2) and 0.2.0 (format v1), read
 * from their source; what they do and where we differ (their crashes):
 *  - the fine-tune and the base must hold the same tensor names and
 *    shapes (deltatensors raises "Key mismatch" / "Shape mismatch"; so do we,
 *    WD_EBADINPUT). Every tensor is encoded, integers included, in sorted order;
 *    float8 tensors are refused (deltatensors cannot convert them either).
 *  - 0-d bf16 tensors crash 0.3.0's writers and tensors under 2 elements crash
 *    0.2.0's int4; deltatensors reads such entries back fine, so we include
 *    them (their fine-tuned values would otherwise be lost). Empty tensors are
 *    left out of quantized files, which deltatensors writes but cannot read
 *    back (ZeroDivisionError); reconstruction copies them through.
 *  - parent_hash covers exactly the tensors a file names: v2 in sorted order;
 *    v1 from folders in 0.2.0's streaming order (grouped by base shard, then
 *    by fine-tune shard, then sorted), which is also its record order; v1 in
 *    memory sorted.
 *
 * Threads (wd_options.threads; the output bytes never depend on them): every
 * codec pass runs on a wd_pool (each worker slot reads the pair through its
 * own scratch: pairdelta.c); the base's parent_hash is computed on a thread
 * of its own meanwhile (the writer takes it late: see
 * wd__wdelta_writer_set_parent); a writer thread checksums and writes one
 * tensor's records while the next is encoded. In memory the same.
 *
 * Memory: the codec's outputs of the tensor being encoded and of the one
 * being written (12 bytes a kept entry for sparse, n/8 bytes + 2 a row for
 * quantized, n/2 bytes + 6 an outlier for int4), the codec's cache (4 x
 * WD_LOSSY_CACHE_ELEMS bytes for tensors that fit) and per worker slot a
 * read chunk's scratch (4 bytes an element of WD_CODEC_CHUNK for bf16; 20
 * for other dtypes): 107 MB peak for int4 on a Qwen2.5-0.5B (its
 * 136M-element embedding); a big sparse tensor streams its entries out
 * (see below).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "dtype.h"
#include "error.h"
#include "folder.h"
#include "lossy_encode.h"
#include "outfile.h"
#include "pairdelta.h"
#include "piece.h"
#include "pipeline.h"
#include "progress.h"
#include "sidejob.h"
#include "strategy.h"
#include "tensorhash.h"
#include "tensorref.h"
#include "wdelta.h"
#include "wdrepo.h"

typedef struct {
    wd_tref ft, base;
} pair;

/* Up to 3 names of a list, for a one-line message. */
static void list_names(char *buf, size_t size, const char *const *names, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && i < 3 && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s'%s'", i ? ", " : "", names[i]);
    if (n > 3 && len < size)
        snprintf(buf + len, size - len, " and %zu more", n - 3);
}

/* Pairs two name-sorted lists; fails like deltatensors' _check_same_keys when
 * the names differ, and on a shape mismatch. *out has min(nf, nb) slots. */
static int pair_up(pair *out, const wd_tref *ft, size_t nf, const wd_tref *base, size_t nb)
{
    const char **only_f = calloc(nf + 1, sizeof *only_f), **only_b = calloc(nb + 1, sizeof *only_b);
    size_t of = 0, ob = 0, np = 0, i = 0, j = 0;
    int rc = only_f && only_b ? 0 : WD_NOMEM();
    while (!rc && (i < nf || j < nb)) {
        int c = i == nf ? 1 : j == nb ? -1 : strcmp(ft[i].name, base[j].name);
        if (c < 0)
            only_f[of++] = ft[i++].name;
        else if (c > 0)
            only_b[ob++] = base[j++].name;
        else {
            out[np].ft = ft[i++];
            out[np++].base = base[j++];
        }
    }
    if (!rc && (of || ob)) {
        char a[600], b[600];
        list_names(a, sizeof a, only_f, of);
        list_names(b, sizeof b, only_b, ob);
        rc = wd__error(WD_EBADINPUT,
                       "key mismatch between fine-tune and base: only in the fine-tune: %s; only "
                       "in the base: %s",
                       of ? a : "none", ob ? b : "none");
    }
    for (size_t k = 0; !rc && k < np; k++) {
        const pair *p = &out[k];
        if (!wd__shape_same(p->ft.ndim, p->ft.shape, p->base.ndim, p->base.shape)) {
            char a[400], b[400];
            wd__shape_fmt(a, sizeof a, p->ft.ndim, p->ft.shape);
            wd__shape_fmt(b, sizeof b, p->base.ndim, p->base.shape);
            rc = wd__error(WD_EBADINPUT, "shape mismatch for '%s': fine-tune %s vs base %s",
                           p->ft.name, a, b);
        }
        const wd_tref *bad = !wd__f32_convertible(p->ft.dtype)     ? &p->ft
                          : !wd__f32_convertible(p->base.dtype) ? &p->base
                                                                : NULL;
        if (!rc && bad)
            rc = wd__error(WD_EBADINPUT,
                           "tensor '%s' is %s: float8 tensors cannot be converted to float32 "
                           "(deltatensors refuses them too)",
                           bad->name, wd__dtype_name(bad->dtype));
    }
    free(only_f);
    free(only_b);
    return rc;
}

/* deltatensors 0.2.0's save_delta_from_paths streaming order (= v1 record
 * and hash order): the sorted names grouped by base shard, shards in the order
 * their first tensor appears; inside a group by fine-tune shard, same rule;
 * inside that sorted. sel[] holds indices into pairs in sorted order. */
static int v020_order(const pair *pairs, const size_t *sel, size_t n, size_t *order)
{
    unsigned char *placed = calloc(n + 1, 1);
    if (!placed)
        return WD_NOMEM();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (placed[i])
            continue;
        size_t bs = pairs[sel[i]].base.shard;
        for (size_t j = i; j < n; j++) {
            if (placed[j] || pairs[sel[j]].base.shard != bs)
                continue;
            size_t fs = pairs[sel[j]].ft.shard;
            for (size_t m = j; m < n; m++) {
                if (!placed[m] && pairs[sel[m]].base.shard == bs && pairs[sel[m]].ft.shard == fs) {
                    placed[m] = 1;
                    order[k++] = sel[m];
                }
            }
        }
    }
    free(placed);
    return 0;
}

static int put_record(wd__wdelta_writer *w, const wd__wdelta_tensor *t, int field, wd_dtype dt,
                      uint64_t count, const void *data)
{
    int rc = wd__wdelta_writer_record(w, t->name, t->name_len, field, dt, 1, &count);
    if (!rc && count)
        rc = wd__wdelta_writer_write(w, data, (size_t)count * wd__dtype_size(dt));
    return rc;
}

/* The codec's buffers kept from tensor to tensor, beside the cache. */
typedef struct {
    float *cache; /* WD_LOSSY_CACHE_ELEMS floats */
    wd_codec_scratch *scr;
} codec_mem;

/* The codec's source for pair p: f32(ft) - f32(base), read on pool. */
static wd_delta_src pair_src(wd__pair_delta *pd, const pair *p, uint64_t n, wd_pool *pool, const codec_mem *m)
{
    wd__pd_side ft = {.ref = &p->ft}, base = {.ref = &p->base};
    wd__pair_delta_set(pd, &ft, &base);
    wd_delta_src src = wd__pair_delta_src(pd, n, pool, m->cache);
    if (n <= WD_LOSSY_CACHE_ELEMS) /* what only a bigger one needs goes back (no-op after the first) */
        wd__codec_scratch_trim(m->scr);
    src.scratch = m->scr;
    return src;
}

/* One tensor's encoded arrays (those of its strategy are filled). */
typedef struct {
    size_t ti;
    wd_sparse_delta sp;
    wd_quant_delta qu;
    wd_int4_delta i4;
} encoded;

static void encoded_clear(encoded *e)
{
    wd__sparse_clear(&e->sp);
    wd__quant_clear(&e->qu);
    wd__int4_clear(&e->i4);
}

/* Encodes tensor ti (header entry t, data p) into *e. Every pass of the
 * codec runs on the pool, pd being the workers' pair-delta reader; a tensor
 * of at most WD_LOSSY_CACHE_ELEMS elements is read once (the codec keeps 4
 * bytes an element). *e holds the codec's output arrays; cleared on error. */
static int encode_tensor(encoded *e, size_t ti, const wd__wdelta_tensor *t, const pair *p,
                         int version, wd_pool *pool, wd__pair_delta *pd, const codec_mem *m)
{
    wd_delta_src src = pair_src(pd, p, t->n, pool, m);
    memset(e, 0, sizeof *e);
    e->ti = ti;
    int rc;
    if (t->strategy == WD__WS_SPARSE) {
        rc = wd__sparse_encode(&e->sp, &src, t->sparsity, NULL);
    } else if (t->strategy == WD__WS_QUANTIZED) {
        rc = wd__quant_encode(&e->qu, &src, t->n_cols, NULL);
    } else {
        rc = wd__int4_encode(&e->i4, &src, t->outlier_fraction, version == 2 ? 2 : 1, NULL);
        if (!rc && e->i4.n_outliers != t->n_outliers)
            rc = wd__error(WD_ERROR, "tensor '%s': %llu outliers, the header says %llu", t->name,
                           (unsigned long long)e->i4.n_outliers,
                           (unsigned long long)t->n_outliers);
    }
    if (rc)
        encoded_clear(e);
    return rc;
}

/* ---- A big sparse tensor, streamed ---------------------------------------
 *
 * A sparse tensor's records are its k indices, then its k values. Held whole,
 * they cost 12 bytes an entry: 163 MB for a 1.4 GB embedding at sparsity 0.9,
 * which set save-delta's peak memory. Above SPARSE_STREAM_BYTES the entries go
 * out as the encoder emits them instead: indices straight into the file (the
 * record's length, k, is known before the first entry), values into an
 * anonymous spill file in $TMPDIR (like sort(1)), copied in after. Format 2
 * only, whose records go tensor by tensor, indices then values (format 1's
 * order comes from deltatensors 0.2.0's dict and may interleave tensors).
 * The bound is low so that the tests' small models take this path too. */
#define SPARSE_STREAM_BYTES ((uint64_t)1 << 20)

/* An unnamed file in $TMPDIR (or /tmp, *dir_out says which): it vanishes
 * with the process, whatever kills it. */
static int spill_open(int *out, const char **dir_out)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    *dir_out = dir;
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        /* file systems without O_TMPFILE: a named file, unlinked at once */
        char *path = NULL;
        if (asprintf(&path, "%s/wdrepo-spill-XXXXXX", dir) < 0)
            return WD_NOMEM();
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0)
            unlink(path);
        free(path);
    }
    if (fd < 0)
        return wd__error_errno(WD_EIO, "cannot create a spill file in '%s' (set TMPDIR to a writable folder)", dir);
    *out = fd;
    return 0;
}

typedef struct {
    wd__wdelta_writer *w;
    int spill;
    uint64_t spilled; /* bytes */
    const char *dir;
} sparse_stream;

static int stream_emit(void *ud, const int64_t *idx, const float *val, size_t count)
{
    sparse_stream *s = ud;
    int rc = wd__wdelta_writer_write(s->w, idx, count * sizeof *idx);
    const uint8_t *p = (const uint8_t *)val;
    size_t left = count * sizeof *val;
    while (!rc && left) {
        ssize_t k = pwrite(s->spill, p, left, (off_t)s->spilled);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return wd__error_errno(WD_EIO, "cannot write the spill file in '%s'", s->dir);
        p += k;
        left -= (size_t)k;
        s->spilled += (uint64_t)k;
    }
    return rc;
}

/* Encodes and writes sparse tensor ti (header entry t) with the writer due
 * for its indices record; the caller's writer thread is idle. Memory: one
 * batch of units' entries (the encoder's) and a 1 MiB copy buffer. */
static int write_sparse_streamed(wd__wdelta_writer *w, size_t ti, const wd__wdelta_tensor *t, const pair *p,
                                 wd_pool *pool, wd__pair_delta *pd, const codec_mem *m)
{
    size_t tj;
    int field;
    if (!wd__wdelta_writer_next(w, &tj, &field) || tj != ti || field != WD__WF_INDICES)
        return wd__error(WD_ERROR, "internal error: .wdelta records out of order at '%s'", t->name);
    wd_delta_src src = pair_src(pd, p, t->n, pool, m);
    uint64_t k = wd__sparse_k(t->n, t->sparsity);
    sparse_stream s = {w, -1, 0, NULL};
    int rc = spill_open(&s.spill, &s.dir);
    if (!rc)
        rc = wd__wdelta_writer_record(w, t->name, t->name_len, WD__WF_INDICES, WD_DT_I64, 1, &k);
    uint64_t got = 0;
    if (!rc)
        rc = wd__sparse_encode_stream(&src, t->sparsity, stream_emit, &s, &got, NULL);
    if (!rc && (got != k || s.spilled != k * sizeof(float)))
        rc = wd__error(WD_ERROR, "tensor '%s': %llu sparse entries, %llu expected", t->name,
                       (unsigned long long)got, (unsigned long long)k);
    if (!rc && (!wd__wdelta_writer_next(w, &tj, &field) || tj != ti || field != WD__WF_VALUES))
        rc = wd__error(WD_ERROR, "internal error: .wdelta records out of order at '%s'", t->name);
    if (!rc)
        rc = wd__wdelta_writer_record(w, t->name, t->name_len, WD__WF_VALUES, WD_DT_F32, 1, &k);
    uint8_t *buf = rc ? NULL : malloc((size_t)1 << 20);
    if (!rc && !buf)
        rc = WD_NOMEM();
    for (uint64_t off = 0; !rc && off < s.spilled;) {
        size_t want = s.spilled - off < ((uint64_t)1 << 20) ? (size_t)(s.spilled - off) : (size_t)1 << 20;
        ssize_t r = pread(s.spill, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = wd__error_errno(WD_EIO, "cannot read the spill file in '%s'", s.dir);
            break;
        }
        rc = wd__wdelta_writer_write(w, buf, (size_t)r);
        off += (uint64_t)r;
    }
    free(buf);
    if (s.spill >= 0)
        close(s.spill);
    return rc;
}

/* Writes e's records (tensor e->ti, header entry t) in the order the writer
 * asks for them; the writer must be due for that tensor. */
static int write_encoded(wd__wdelta_writer *w, const wd__wdelta_tensor *t, const encoded *e)
{
    const wd_sparse_delta *sp = &e->sp;
    const wd_quant_delta *qu = &e->qu;
    const wd_int4_delta *i4 = &e->i4;
    size_t tj;
    int field, rc = 0;
    if (wd__wdelta_writer_next(w, &tj, NULL) && tj != e->ti)
        return wd__error(WD_ERROR, "internal error: .wdelta records out of order at '%s'",
                         t->name);
    while (!rc && wd__wdelta_writer_next(w, &tj, &field) && tj == e->ti) {
        switch (field) {
        case WD__WF_INDICES: rc = put_record(w, t, field, WD_DT_I64, sp->k, sp->indices); break;
        case WD__WF_VALUES: rc = put_record(w, t, field, WD_DT_F32, sp->k, sp->values); break;
        case WD__WF_SCALES:
            rc = put_record(w, t, field, WD_DT_F16, t->n / t->n_cols, qu->scales);
            break;
        case WD__WF_PACKED_SIGNS:
            rc = put_record(w, t, field, WD_DT_U8, (t->n + 7) / 8, qu->packed_signs);
            break;
        case WD__WF_OUTLIER_IDX:
            rc = put_record(w, t, field, i4->idx_bytes == 4 ? WD_DT_I32 : WD_DT_I64,
                            i4->n_outliers, i4->outlier_idx);
            break;
        case WD__WF_OUTLIER_VALS:
            rc = put_record(w, t, field, WD_DT_F16, i4->n_outliers, i4->outlier_vals);
            break;
        case WD__WF_SCALE: rc = put_record(w, t, field, WD_DT_F16, 1, &i4->scale); break;
        case WD__WF_ZERO_POINT:
            rc = put_record(w, t, field, WD_DT_F16, 1, &i4->zero_point);
            break;
        default:
            rc = put_record(w, t, field, WD_DT_U8,
                            wd__int4_packed_len(i4->layout, i4->n, i4->n_outliers), i4->packed);
            break;
        }
    }
    return rc;
}

/* The base's parent_hash, computed on a thread of its own while the
 * tensors are encoded (the writer takes it once it is known). The thread
 * only reads the base and hex until it is done. */
typedef struct {
    const wd_tref *const *refs;
    size_t n;
    char hex[WD_HEX_SIZE];
    wd__sidejob job;
} hash_job;

static int hash_fn(void *ud)
{
    hash_job *j = ud;
    return wd__tref_hash_hex(j->refs, j->n, 0, j->hex, NULL, NULL);
}

/* Gives the writer the parent hash: waiting for it when wait is set,
 * otherwise only when the thread is already done. *joined tracks it. */
static int hash_deliver(hash_job *j, wd__wdelta_writer *w, int wait, int *joined)
{
    if (*joined || (!wait && !wd__sidejob_done(&j->job)))
        return 0;
    *joined = 1;
    int rc = wd__sidejob_join(&j->job);
    return rc ? rc : wd__wdelta_writer_set_parent(w, j->hex);
}

/* The writer's own thread: writes (checksums, copies into the file) one
 * encoded tensor while the pool encodes the next, and gives the writer the
 * parent hash once the hash thread has it. Holds at most one tensor's
 * arrays besides the one being encoded. Everything below mu is shared. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy; /* job holds a tensor not written yet */
    int quit;
    encoded job;
    int rc;         /* first error, sticky; later jobs are only freed */
    char msg[1024]; /* its message (error.c's is per thread) */
    wd__wdelta_writer *w;
    const wd__wdelta_tensor *ts;
    hash_job *hj;
    int joined; /* the hash thread was joined (this thread's until quit) */
    pthread_t th;
} wthread;

static void *writer_main(void *arg)
{
    wthread *x = arg;
    pthread_mutex_lock(&x->mu);
    for (;;) {
        while (!x->busy && !x->quit)
            pthread_cond_wait(&x->cv, &x->mu);
        if (!x->busy)
            break;
        int rc = x->rc;
        pthread_mutex_unlock(&x->mu);
        if (!rc)
            rc = write_encoded(x->w, &x->ts[x->job.ti], &x->job);
        if (!rc)
            rc = hash_deliver(x->hj, x->w, 0, &x->joined);
        encoded_clear(&x->job);
        pthread_mutex_lock(&x->mu);
        if (rc && !x->rc) {
            x->rc = rc;
            snprintf(x->msg, sizeof x->msg, "%s", wd_errmsg());
        }
        x->busy = 0;
        pthread_cond_broadcast(&x->cv);
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* Hands *e to the writer thread once it is done with the previous tensor;
 * *e is the thread's then (or freed, when the writer failed: its error is
 * returned). */
static int writer_give(wthread *x, encoded *e)
{
    pthread_mutex_lock(&x->mu);
    while (x->busy)
        pthread_cond_wait(&x->cv, &x->mu);
    int rc = x->rc;
    if (!rc) {
        x->job = *e;
        x->busy = 1;
        pthread_cond_broadcast(&x->cv);
    }
    pthread_mutex_unlock(&x->mu);
    if (rc) {
        encoded_clear(e);
        return wd__error(rc, "%s", x->msg);
    }
    memset(e, 0, sizeof *e);
    return 0;
}

/* Waits until the writer thread is done with what it was given, so the
 * caller may use the writer itself; returns the thread's error, if any. */
static int writer_sync(wthread *x)
{
    pthread_mutex_lock(&x->mu);
    while (x->busy)
        pthread_cond_wait(&x->cv, &x->mu);
    int rc = x->rc;
    pthread_mutex_unlock(&x->mu);
    return rc ? wd__error(rc, "%s", x->msg) : 0;
}

/* Lets the writer thread finish its last tensor and joins it. */
static int writer_stop(wthread *x)
{
    pthread_mutex_lock(&x->mu);
    while (x->busy)
        pthread_cond_wait(&x->cv, &x->mu);
    x->quit = 1;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
    pthread_join(x->th, NULL);
    return x->rc ? wd__error(x->rc, "%s", x->msg) : 0;
}

/* Writes the .wdelta of pairs[0..np) (sorted by name) to of, which it owns
 * (committed on success, abandoned otherwise). from_paths selects the
 * folder writer's conventions (0.2.0 record order for v1, base_dtype right
 * after dtype for v2); otherwise save_delta's (sorted; base_dtype after the
 * options). hash_out (may be NULL) gets the parent_hash. */
static int save_pairs(wd__outfile *of, const pair *pairs, size_t np,
                      const wd_strategy_opts *so, int version, int from_paths,
                      char *hash_out, const wd_options *opt)
{
    wd__strategy st;
    if (version == 0)
        version = 2;
    if (version != 1 && version != 2) {
        wd__outfile_abort(of);
        return wd__error(WD_EUSAGE, "unknown .wdelta format version %d (valid: 1, 2)", version);
    }
    int rc = wd__strategy_resolve(&st, so, "sparse", WD_STRATEGY_WDELTA);
    if (rc) {
        wd__outfile_abort(of);
        return rc;
    }
    int strategy = st.strategy;
    size_t *sel = calloc(np + 1, sizeof *sel), *order = calloc(np + 1, sizeof *order);
    const wd_tref **hashed = calloc(np + 1, sizeof *hashed);
    wd__wdelta_tensor *ts = calloc(np + 1, sizeof *ts);
    wd__wdelta_writer *w = NULL;
    wd_pool *pool = NULL;
    wd__pair_delta *pd = NULL;
    if (!sel || !order || !hashed || !ts) {
        rc = WD_NOMEM();
        goto done;
    }
    size_t n = 0;
    uint64_t elems = 0;
    for (size_t i = 0; i < np; i++) {
        /* deltatensors cannot read back a quantized entry of an empty tensor */
        if (strategy == WD__WS_QUANTIZED && pairs[i].ft.n == 0)
            continue;
        sel[n++] = i;
    }
    if (version == 1 && from_paths) {
        if ((rc = v020_order(pairs, sel, n, order)))
            goto done;
    } else {
        memcpy(order, sel, n * sizeof *order);
    }
    for (size_t i = 0; i < n; i++) {
        const pair *p = &pairs[order[i]];
        wd__wdelta_tensor *t = &ts[i];
        hashed[i] = &p->base;
        elems += p->ft.n;
        t->name = (char *)(uintptr_t)p->ft.name; /* the writer copies; never written through */
        t->name_len = strlen(p->ft.name);
        t->strategy = strategy;
        t->ndim = p->ft.ndim;
        memcpy(t->shape, p->ft.shape, (size_t)p->ft.ndim * sizeof *t->shape);
        if (version == 2)
            snprintf(t->base_dtype, sizeof t->base_dtype, "%s", wd__dtype_numpy_name(p->base.dtype));
        t->sparsity = st.option;
        t->outlier_fraction = st.option;
        t->n_outliers = wd__int4_n_outliers(p->ft.n, st.option);
        rc = wd__wdelta_tensor_fill_ex(t, version,
                                       !from_paths && version == 2 ? WD__WDELTA_FILL_MEM_ORDER : 0);
        if (rc)
            goto done;
    }

    if ((rc = wd__pool_new(&pool, opt ? opt->threads : 0)))
        goto done;
    if ((rc = wd__pair_delta_new(&pd, wd__pool_size(pool))))
        goto done;
    /* The writer puts parent_hash in the header, and the file's checksum
     * covers the header first: the header goes out with a placeholder, the
     * base is hashed on its own thread while the pool encodes, and the
     * writer patches the hash in as soon as it is known, then checksums
     * what it wrote so far by reading it back (deltatensors patches it in
     * afterwards too; the bytes come out the same). A stream (standard
     * output, a fifo) cannot be patched or read back: for it the base is
     * hashed first. */
    int stream = !wd__outfile_seekable(of);
    char hex_first[WD_HEX_SIZE];
    if (stream && (rc = wd__tref_hash_hex(hashed, n, 0, hex_first, NULL, NULL)))
        goto done;
    rc = wd__wdelta_writer_begin_file(&w, of, version, stream ? hex_first : NULL, strategy, ts, n);
    of = NULL; /* the writer's now, even on error */
    if (rc)
        goto done;
    hash_job hj = {.refs = hashed, .n = n};
    if (!stream && wd__sidejob_start(&hj.job, hash_fn, &hj)) {
        wd__wdelta_writer_abort(w);
        rc = wd__error(WD_ENOMEM, "cannot start a thread");
        goto done;
    }
    /* Records go out in tensor order (v2: ts[] is sorted by name, as the
     * writer orders them; v1: ts[] order); write_encoded checks it. */
    wthread wt = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .w = w,
                  .ts = ts, .hj = &hj, .joined = stream};
    int have_writer = !pthread_create(&wt.th, NULL, writer_main, &wt);
    if (!have_writer)
        rc = wd__error(WD_ENOMEM, "cannot start a thread");
    wd__progress pg;
    wd__progress_start(&pg, opt, "save-delta", elems);
    /* One cache for every tensor (WD_LOSSY_CACHE_ELEMS floats): the codecs
     * are done with it when encode_tensor returns. */
    codec_mem mem = {malloc(WD_LOSSY_CACHE_ELEMS * sizeof *mem.cache), NULL};
    if ((!mem.cache || wd__codec_scratch_new(&mem.scr)) && !rc)
        rc = WD_NOMEM();
    for (size_t ti = 0; !rc && ti < n; ti++) {
        if (ts[ti].strategy == WD__WS_SPARSE && have_writer && version == 2 &&
            wd__sparse_k(ts[ti].n, ts[ti].sparsity) * 12 > SPARSE_STREAM_BYTES) {
            if (!(rc = writer_sync(&wt)))
                rc = write_sparse_streamed(w, ti, &ts[ti], &pairs[order[ti]], pool, pd, &mem);
            wd__progress_add(&pg, ts[ti].n);
            continue;
        }
        encoded e;
        rc = encode_tensor(&e, ti, &ts[ti], &pairs[order[ti]], version, pool, pd, &mem);
        if (!rc)
            rc = writer_give(&wt, &e);
        wd__progress_add(&pg, ts[ti].n);
    }
    free(mem.cache);
    wd__codec_scratch_free(mem.scr);
    if (have_writer) {
        int wrc = writer_stop(&wt);
        if (!rc)
            rc = wrc;
    }
    if (!wt.joined) {
        /* joined on every path, so the thread never outlives pairs */
        int hrc = hash_deliver(&hj, w, 1, &wt.joined);
        if (!rc)
            rc = hrc;
    }
    if (rc)
        wd__wdelta_writer_abort(w);
    else
        rc = wd__wdelta_writer_finish(w);
    if (!rc && hash_out)
        snprintf(hash_out, WD_HEX_SIZE, "%s", stream ? hex_first : hj.hex);
done:
    wd__outfile_abort(of);
    wd__pair_delta_free(pd);
    wd__pool_free(pool);
    free(sel);
    free(order);
    free(hashed);
    free(ts);
    return rc;
}

int wd_save_delta_from_paths(const char *out_path, const char *ft_dir, const char *base_dir,
                             const wd_strategy_opts *so, int format_version,
                             const wd_options *opt)
{
    return wd_save_delta_from_paths_ex(out_path, ft_dir, base_dir, so, format_version,
                                       WD_OUTPUT_FORCE, NULL, opt);
}

int wd_save_delta_from_paths_ex(const char *out_path, const char *ft_dir, const char *base_dir,
                                const wd_strategy_opts *so, int format_version, unsigned flags,
                                char *parent_hash_out, const wd_options *opt)
{
    wd_folder *ft = NULL, *base = NULL;
    wd_tref *fr = NULL, *br = NULL;
    pair *pairs = NULL;
    wd__outfile *of = NULL;
    /* The output is checked before any work; the inputs must survive it,
     * --force or not. */
    const wd__keep keep[] = {{ft_dir, "the fine-tune folder"}, {base_dir, "the base folder"}};
    int rc = wd__outfile_open(&of, out_path, flags, keep, 2);
    if (!rc)
        rc = wd__folder_open(&ft, ft_dir);
    if (!rc)
        rc = wd__folder_open(&base, base_dir);
    if (rc)
        goto done;
    fr = calloc(ft->n_tensors + 1, sizeof *fr);
    br = calloc(base->n_tensors + 1, sizeof *br);
    pairs = calloc(ft->n_tensors + 1, sizeof *pairs);
    if (!fr || !br || !pairs) {
        rc = WD_NOMEM();
        goto done;
    }
    for (size_t i = 0; i < ft->n_tensors; i++)
        wd__tref_folder(&fr[i], ft, i);
    for (size_t i = 0; i < base->n_tensors; i++)
        wd__tref_folder(&br[i], base, i);
    if (!(rc = pair_up(pairs, fr, ft->n_tensors, br, base->n_tensors))) {
        rc = save_pairs(of, pairs, ft->n_tensors, so, format_version, 1, parent_hash_out, opt);
        of = NULL;
    }
done:
    wd__outfile_abort(of);
    free(fr);
    free(br);
    free(pairs);
    wd__folder_close(ft);
    wd__folder_close(base);
    return rc;
}

int wd_save_delta(const char *out_path, const wd_named_tensor *ft, size_t n_ft,
                  const wd_named_tensor *base, size_t n_base, const wd_strategy_opts *so,
                  int format_version)
{
    wd_tref *fr = NULL, *br = NULL;
    wd__outfile *of = NULL;
    pair *pairs = calloc(n_ft + 1, sizeof *pairs);
    int rc = pairs ? wd__tref_mem_set(&fr, ft, n_ft, "fine-tune") : WD_NOMEM();
    if (!rc)
        rc = wd__tref_mem_set(&br, base, n_base, "base");
    if (!rc)
        rc = pair_up(pairs, fr, n_ft, br, n_base);
    /* deltatensors' save_delta replaces the file */
    if (!rc)
        rc = wd__outfile_open(&of, out_path, WD_OUTPUT_FORCE, NULL, 0);
    if (!rc)
        rc = save_pairs(of, pairs, n_ft, so, format_version, 0, NULL, NULL);
    free(fr);
    free(br);
    free(pairs);
    return rc;
}

