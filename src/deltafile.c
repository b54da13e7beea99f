/*
 * deltafile.c - deltatensors' own workflow, without a repository: save_delta
 * and load_delta over model folders (streaming, piece by piece) and over named
 * tensors in memory, and inspect() of a .wdelta file.
 *
 * Behaviour follows deltatensors 0.3.0 (format v2) and 0.2.0 (format v1), read
 * from their source; what they do and where we differ (their crashes):
 *  - save: the fine-tune and the base must hold the same tensor names and
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
 *  - load from folders: reconstruct_to_safetensors' folder (one shard
 *    model.safetensors, the file's tensors in hash order then the base's other
 *    tensors sorted, integers and float8 keep their dtype, config.json
 *    rewritten only when an output dtype is given, other non-weight files
 *    copied; config.json goes through a Python-compatible json.loads/dumps
 *    here, and whatever Python would refuse is copied as it is). The base is
 *    verified (hashed while the output is made, nothing kept on a mismatch,
 *    and that error wins over decoding errors as when it was checked first),
 *    restricted to the file's tensors (v1 in record order,
 *    which also verifies the v1 files deltatensors itself cannot); a chain
 *    link's parent_hash (SHA-256 of the previous float32 model) is accepted
 *    when the base folder holds that float32 model. The delta is added in
 *    place (a sparse delta leaves a base -0.0 alone).
 *  - load in memory: load_delta: hashes every given tensor, returns float32
 *    base + decompress(delta) (0.3.0's decompress, so -0.0 + 0.0 = +0.0).
 *
 * Threads (wd_options.threads; the output bytes never depend on them):
 *  - save: every codec pass runs on a wd_pool (each worker slot reads the
 *    pair through its own scratch, pread being thread-safe); the base's
 *    parent_hash is computed on a thread of its own meanwhile (the writer
 *    takes it late: see wd__wdelta_writer_set_parent); a writer thread
 *    checksums and writes one tensor's records while the next is encoded.
 *  - load from folders: pieces of PIECE elements are decoded and written at
 *    their final offsets (pwrite) by the pool, a batch at a time, while the
 *    calling thread hashes the base for the verification in order; the
 *    .wdelta's checksum is checked on a thread of its own. A piece's decoder
 *    finds its first sorted entry by binary search, and the entry ranges of
 *    a tensor's pieces are checked to chain; any decoding error makes the
 *    pieces run again in file order on one slot, so that errors read as
 *    they always did.
 *  - in memory (wd_load_delta): serial.
 *
 * Memory: saving holds the codec's outputs of the tensor being encoded and
 * of the one being written (12 bytes a kept entry for sparse, n/8 bytes + 2
 * a row for quantized, n/2 bytes + 6 an outlier for int4), the codec's cache
 * (4 x WD_LOSSY_CACHE_ELEMS bytes for tensors that fit) and per worker slot
 * a read chunk's scratch (4 bytes an element of WD_CODEC_CHUNK for bf16;
 * 20 for other dtypes): 107 MB peak for int4 on a Qwen2.5-0.5B (its
 * 136M-element embedding), 274 MB for sparse 0.9 (whose embedding alone
 * keeps 13.6M entries, 163 MB). Loading holds per worker slot one piece of
 * PIECE elements (raw bytes, float32 values, output bytes: 5 MiB) and a
 * decoder (the delta entries of a piece plus a 768 KiB block of index
 * entries: ~4 MiB), never a whole tensor or array, and 1 MiB of hashing
 * buffer (13-20 MB peak on the same model at 3 slots); in memory, the
 * outputs plus two pieces.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "dtype.h"
#include "error.h"
#include "folder.h"
#include "half.h"
#include "hash.h"
#include "hfconfig.h"
#include "outdir.h"
#include "outfile.h"
#include "pairdelta.h"
#include "lossy_encode.h"
#include "piece.h"
#include "pipeline.h"
#include "safetensors.h"
#include "sidejob.h"
#include "shardwriter.h"
#include "strategy.h"
#include "tensorhash.h"
#include "tensorref.h"
#include "wdelta.h"
#include "wdelta_decode.h"
#include "wdrepo.h"

enum {
    PIECE = WD__DEC_PIECE, /* elements decoded at a time when loading */
};

static void fmt_shape(char *buf, size_t size, int ndim, const uint64_t *shape)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%llu", i ? "," : "",
                              (unsigned long long)shape[i]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

static int same_shape(int na, const uint64_t *a, int nb, const uint64_t *b)
{
    return na == nb && (na == 0 || !memcmp(a, b, (size_t)na * sizeof *a));
}

/* ---- Progress --------------------------------------------------------------- */

typedef struct {
    const wd_options *opt;
    const char *stage;
    uint64_t done, total, shown;
} progress;

static void prog_start(progress *p, const wd_options *opt, const char *stage, uint64_t total)
{
    p->opt = opt;
    p->stage = stage;
    p->done = p->shown = 0;
    p->total = total;
    if (opt && opt->progress)
        opt->progress(opt->progress_ud, stage, 0, total);
}

/* Reports at most ~500 times over the whole stage, and at its end. */
static void prog_add(progress *p, uint64_t n)
{
    p->done += n;
    if (!p->opt || !p->opt->progress)
        return;
    if (p->done == p->total || p->done - p->shown >= p->total / 512 + 1) {
        p->shown = p->done;
        p->opt->progress(p->opt->progress_ud, p->stage, p->done, p->total);
    }
}

static void prog_done(void *ud, uint64_t bytes)
{
    prog_add(ud, bytes);
}

/* wd__tref_hash in hex, reporting progress to pg. */
static int hash_refs(const wd_tref *const *refs, size_t n, int as_f32, char out[WD_HEX_SIZE],
                     progress *pg)
{
    uint8_t dg[WD_HASH_SIZE];
    int rc = wd__tref_hash(refs, n, as_f32, dg, pg ? prog_done : NULL, pg);
    if (!rc)
        wd__hex(out, dg);
    return rc;
}

/* ---- Saving ----------------------------------------------------------------- */

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
        if (!same_shape(p->ft.ndim, p->ft.shape, p->base.ndim, p->base.shape)) {
            char a[400], b[400];
            fmt_shape(a, sizeof a, p->ft.ndim, p->ft.shape);
            fmt_shape(b, sizeof b, p->base.ndim, p->base.shape);
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

/* The codec's source for pair p: f32(ft) - f32(base), read on pool. */
static wd_delta_src pair_src(wd__pair_delta *pd, const pair *p, uint64_t n, wd_pool *pool, float *cache)
{
    wd__pd_side ft = {.ref = &p->ft}, base = {.ref = &p->base};
    wd__pair_delta_set(pd, &ft, &base);
    return wd__pair_delta_src(pd, n, pool, cache);
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
                         int version, wd_pool *pool, wd__pair_delta *pd, float *cache)
{
    wd_delta_src src = pair_src(pd, p, t->n, pool, cache);
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
                                 wd_pool *pool, wd__pair_delta *pd, float *cache)
{
    size_t tj;
    int field;
    if (!wd__wdelta_writer_next(w, &tj, &field) || tj != ti || field != WD__WF_INDICES)
        return wd__error(WD_ERROR, "internal error: .wdelta records out of order at '%s'", t->name);
    wd_delta_src src = pair_src(pd, p, t->n, pool, cache);
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
    return hash_refs(j->refs, j->n, 0, j->hex, NULL);
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
    if (stream && (rc = hash_refs(hashed, n, 0, hex_first, NULL)))
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
    progress pg;
    prog_start(&pg, opt, "save-delta", elems);
    /* One cache for every tensor (WD_LOSSY_CACHE_ELEMS floats): the codecs
     * are done with it when encode_tensor returns. */
    float *cache = malloc(WD_LOSSY_CACHE_ELEMS * sizeof *cache);
    if (!cache && !rc)
        rc = WD_NOMEM();
    for (size_t ti = 0; !rc && ti < n; ti++) {
        if (ts[ti].strategy == WD__WS_SPARSE && have_writer && version == 2 &&
            wd__sparse_k(ts[ti].n, ts[ti].sparsity) * 12 > SPARSE_STREAM_BYTES) {
            if (!(rc = writer_sync(&wt)))
                rc = write_sparse_streamed(w, ti, &ts[ti], &pairs[order[ti]], pool, pd, cache);
            prog_add(&pg, ts[ti].n);
            continue;
        }
        encoded e;
        rc = encode_tensor(&e, ti, &ts[ti], &pairs[order[ti]], version, pool, pd, cache);
        if (!rc)
            rc = writer_give(&wt, &e);
        prog_add(&pg, ts[ti].n);
    }
    free(cache);
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

static int cmp_tref(const void *a, const void *b)
{
    return strcmp(((const wd_tref *)a)->name, ((const wd_tref *)b)->name);
}

/* Describes a caller's tensor set, sorted by name; duplicate names are
 * refused (a state dict cannot hold them). *out is malloc'd. */
static int mem_refs(wd_tref **out, const wd_named_tensor *x, size_t n, const char *what)
{
    wd_tref *r = calloc(n + 1, sizeof *r);
    int rc = r ? 0 : WD_NOMEM();
    for (size_t i = 0; !rc && i < n; i++)
        rc = wd__tref_mem(&r[i], &x[i], what);
    if (!rc)
        qsort(r, n, sizeof *r, cmp_tref);
    for (size_t i = 1; !rc && i < n; i++)
        if (!strcmp(r[i - 1].name, r[i].name))
            rc = wd__error(WD_EUSAGE, "%s tensors: '%s' given twice", what, r[i].name);
    if (rc) {
        free(r);
        r = NULL;
    }
    *out = r;
    return rc;
}

int wd_save_delta(const char *out_path, const wd_named_tensor *ft, size_t n_ft,
                  const wd_named_tensor *base, size_t n_base, const wd_strategy_opts *so,
                  int format_version)
{
    wd_tref *fr = NULL, *br = NULL;
    wd__outfile *of = NULL;
    pair *pairs = calloc(n_ft + 1, sizeof *pairs);
    int rc = pairs ? mem_refs(&fr, ft, n_ft, "fine-tune") : WD_NOMEM();
    if (!rc)
        rc = mem_refs(&br, base, n_base, "base");
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

/* The file's tensors in the order its parent_hash covers them. */
static const wd__wdelta_tensor *hash_order_at(const wd__wdelta *d, size_t i)
{
    return wd__wdelta_version(d) >= 2 ? wd__wdelta_tensor_at(d, i)
                                      : wd__wdelta_tensor_by_record(d, i);
}

/* ---- Loading onto a base folder --------------------------------------------- */

/* One tensor of the output shard: a base tensor, with the delta the file
 * holds for it (or NULL: copied through), and its output dtype. */
typedef struct {
    wd_tref base;
    const wd__wdelta_tensor *t;
    wd_dtype out;
} out_item;

/* Scratch for one piece: raw base bytes, float32 values, output bytes. */
typedef struct {
    uint8_t *raw;
    float *f;
    uint8_t *out;
} piece_bufs;

/* ---- Loading on the pool -------------------------------------------------------- */

enum {
    LOAD_BATCH = 32,     /* pieces handed to the pool at a time (8M elements) */
};

/* One piece of the output shard: elements [b, b + cnt) of items[item],
 * written at byte off of the file. j0, j1: the sorted entries (sparse
 * indices, int4 outliers) the piece used, [j0, j1), checked afterwards to
 * chain up over each tensor: pieces find their first entry by binary
 * search, which only a sorted array answers consistently. */
typedef struct {
    size_t item;
    uint64_t b, off, j0, j1;
    size_t cnt;
} out_piece;

/* A worker slot's scratch: one piece's buffers (PIECE elements: raw base
 * bytes up to 8 each, float32, output bytes up to 8 each; ~5 MiB) and a
 * decoder (its windows: ~4 MiB) kept while the slot stays on one tensor. */
typedef struct {
    piece_bufs pb;
    wd__wdelta_dec td;
    const out_item *cur; /* the item td decodes, NULL if none */
    uint64_t next_b;     /* where td's last piece ended (no seek needed there) */
} load_slot;

typedef struct {
    const wd__wdelta *d;
    const out_item *items;
    out_piece *pieces;
    size_t p0; /* the running batch's first piece */
    load_slot *slots;
    int fd;
    const char *path;
} load_job;

/* wd_pool_fn: decodes piece p0 + i and writes it at its offset. */
static int load_piece_fn(void *ctx, size_t i, int worker)
{
    load_job *j = ctx;
    out_piece *p = &j->pieces[j->p0 + i];
    const out_item *it = &j->items[p->item];
    load_slot *s = &j->slots[worker];
    size_t es = wd__dtype_size(it->base.dtype), oes = wd__dtype_size(it->out);
    int rc;
    if (!it->t && it->out == it->base.dtype) {
        if (!(rc = wd__tref_read(&it->base, p->b * es, s->pb.raw, p->cnt * es)))
            rc = wd__file_pwrite(j->fd, s->pb.raw, p->cnt * es, p->off, j->path);
        return rc;
    }
    if (it->t && s->cur != it) {
        if (s->cur)
            wd__wdelta_dec_free(&s->td);
        s->cur = NULL;
        if ((rc = wd__wdelta_dec_init(&s->td, j->d, it->t))) {
            wd__wdelta_dec_free(&s->td); /* init cleared it first: frees what it got */
            return rc;
        }
        s->cur = it;
        s->next_b = 0;
    }
    if (it->t && p->b != s->next_b && (rc = wd__wdelta_dec_seek(&s->td, p->b)))
        return rc;
    p->j0 = it->t ? s->td.used : 0;
    rc = wd__tref_f32(&it->base, p->b, p->cnt, s->pb.f, s->pb.raw);
    if (!rc && it->t)
        rc = wd__wdelta_dec_apply(&s->td, p->b, p->cnt, s->pb.f, NULL);
    if (rc) {
        s->next_b = UINT64_MAX; /* the decoder is somewhere: seek next time */
        return rc;
    }
    p->j1 = it->t ? s->td.used : 0;
    s->next_b = p->b + p->cnt;
    wd__tref_from_f32(s->pb.out, s->pb.f, p->cnt, it->out);
    return wd__file_pwrite(j->fd, s->pb.out, p->cnt * oes, p->off, j->path);
}

/* Decodes and writes every piece in file order on worker slot 0, each
 * tensor's decoder walking it from its start without a seek (an empty
 * tensor's decoder is set up too): the first error met is the first in
 * file order, the one reported when loading was serial. */
static int rerun_in_order(load_job *job, size_t np, size_t n)
{
    load_slot *s = &job->slots[0];
    if (s->cur)
        wd__wdelta_dec_free(&s->td);
    s->cur = NULL;
    job->p0 = 0;
    int rc = 0;
    for (size_t i = 0, k = 0; !rc && i < n; i++) {
        const out_item *it = &job->items[i];
        if (it->t && it->base.n == 0) {
            wd__wdelta_dec td;
            rc = wd__wdelta_dec_init(&td, job->d, it->t);
            wd__wdelta_dec_free(&td);
        }
        for (; !rc && k < np && job->pieces[k].item == i; k++)
            rc = load_piece_fn(job, k, 0);
    }
    return rc;
}

/* Whether the pieces of every sparse or int4 tensor used each entry of its
 * sorted array exactly once, in order (see out_piece). */
static int pieces_chain(const out_piece *pieces, size_t np, const out_item *items)
{
    for (size_t i = 0; i < np;) {
        const out_item *it = &items[pieces[i].item];
        const wd__wdelta_tensor *t = it->t;
        int field = !t ? -1
                  : t->strategy == WD__WS_SPARSE ? WD__WF_INDICES
                  : t->strategy == WD__WS_QUANTIZED ? -1
                                                    : WD__WF_OUTLIER_IDX;
        uint64_t next = 0;
        size_t k = i;
        for (; k < np && pieces[k].item == pieces[i].item; k++) {
            if (field >= 0 && pieces[k].j0 != next)
                return 0;
            next = pieces[k].j1;
        }
        if (field >= 0 && next != wd__wdelta_field_of(t, field)->count)
            return 0;
        i = k;
    }
    return 1;
}

/* Writes items[0..n) as one safetensors file at path, header as the
 * safetensors package (and deltatensors' ShardedWriter) lays it out: the
 * pieces are decoded and written at their offsets by the workers, a batch
 * at a time, while the calling
 * thread hashes the base for the verification (items[0..nd), when check is
 * given) and then hands the hash (hex) to check, whose error wins over any
 * decoding error (the base was verified before decoding, and still fails
 * first). A decoding error makes it write the pieces again in file order
 * (rerun_in_order), whose first error is reported, as before; an error
 * hashing the base is returned as it is. */
static int write_shard_par(const char *path, const wd__wdelta *d, const out_item *items,
                           size_t n, size_t nd, int (*check)(void *ud, const char *got),
                           void *check_ud, progress *pg, const wd_options *opt)
{
    int verify = check != NULL;
    wd_st_spec *specs = calloc(n + 1, sizeof *specs);
    size_t np = 0;
    for (size_t i = 0; i < n; i++)
        np += (size_t)((items[i].base.n + PIECE - 1) / PIECE);
    out_piece *pieces = calloc(np + 1, sizeof *pieces);
    wd_pool *pool = NULL;
    load_slot *slots = NULL;
    wd__thash *vh = NULL; /* the verification hash, in step with the pool */
    const wd_tref **vrefs = NULL;
    char *hdr = NULL;
    size_t hlen = 0;
    int nslots = 0, fd = -1, hrc = 0;
    int rc = specs && pieces ? wd__pool_new(&pool, opt ? opt->threads : 0) : WD_NOMEM();
    if (!rc) {
        nslots = wd__pool_size(pool);
        slots = calloc((size_t)nslots, sizeof *slots);
        rc = slots ? 0 : WD_NOMEM();
    }
    for (int w = 0; !rc && w < nslots; w++) {
        piece_bufs *pb = &slots[w].pb;
        pb->raw = malloc((size_t)PIECE * 8);
        pb->f = malloc((size_t)PIECE * sizeof(float));
        pb->out = malloc((size_t)PIECE * 8);
        rc = pb->raw && pb->f && pb->out ? 0 : WD_NOMEM();
    }
    if (!rc && verify) {
        vrefs = calloc(nd + 1, sizeof *vrefs);
        for (size_t i = 0; vrefs && i < nd; i++)
            vrefs[i] = &items[i].base;
        rc = vrefs ? wd__thash_new(&vh, vrefs, nd, 0, NULL, NULL) : WD_NOMEM();
    }
    for (size_t i = 0; !rc && i < n; i++)
        specs[i] = (wd_st_spec){items[i].base.name, items[i].out, items[i].base.ndim,
                                items[i].base.shape};
    if (!rc)
        rc = wd__st_header_build(&hdr, &hlen, specs, n, NULL);
    uint64_t off = 8 + (uint64_t)hlen; /* past the data, once laid out */
    if (!rc) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            size_t oes = wd__dtype_size(items[i].out);
            for (uint64_t b = 0; b < items[i].base.n; b += PIECE) {
                size_t cnt = items[i].base.n - b < PIECE ? (size_t)(items[i].base.n - b) : PIECE;
                pieces[k++] = (out_piece){.item = i, .b = b, .off = off, .cnt = cnt};
                off += cnt * oes;
            }
        }
    }
    if (!rc)
        rc = wd__file_create(path, &fd);
    if (!rc)
        rc = wd__shard_begin(fd, path, hdr, hlen, off - 8 - hlen);
    if (rc) {
        if (fd >= 0)
            wd__file_close(fd, path, rc);
        goto done;
    }
    load_job job = {d, items, pieces, 0, slots, fd, path};
    int drc = 0;    /* decoding or writing failed */
    int hashed = 0; /* the verification hash has had every tensor */
    for (size_t p0 = 0; p0 < np && !drc && !hrc; p0 += LOAD_BATCH) {
        size_t p1 = np - p0 < LOAD_BATCH ? np : p0 + LOAD_BATCH;
        const out_piece *last = &pieces[p1 - 1];
        job.p0 = p0;
        if (verify && !hashed) {
            /* the workers decode while this thread hashes as far */
            wd__pool_start(pool, p1 - p0, load_piece_fn, &job);
            hrc = wd__thash_to(vh, last->item < nd ? last->item : nd, last->b + last->cnt);
            hashed = last->item >= nd;
            drc = wd__pool_wait(pool);
        } else {
            drc = wd__pool_run(pool, p1 - p0, load_piece_fn, &job);
        }
        for (size_t k = p0; k < p1; k++)
            prog_add(pg, pieces[k].cnt * wd__dtype_size(items[pieces[k].item].out));
        if (!drc)
            wd__shard_writeback(fd, pieces[p0].off, last->off + last->cnt * wd__dtype_size(items[last->item].out) -
                                                        pieces[p0].off);
    }
    if (!drc && !hrc && !pieces_chain(pieces, np, items))
        drc = WD_EBADINPUT;
    if (!hrc && verify) {
        uint8_t dg[WD_HASH_SIZE];
        char got[WD_HEX_SIZE];
        if (!(hrc = wd__thash_final(vh, dg))) {
            wd__hex(got, dg);
            hrc = check(check_ud, got);
        }
    }
    /* A decoding error: the pieces again in file order on one slot finds
     * the first one and reports it as serial loading always has (a verify
     * mismatch, though, comes first: the caller checks got before rc).
     * (issue 9) cancelled: no rerun. */
    if (!hrc && drc && drc != WD_ECANCELLED)
        drc = rerun_in_order(&job, np, n);
    rc = wd__file_close(fd, path, hrc ? hrc : drc);
done:
    for (int w = 0; slots && w < nslots; w++) {
        free(slots[w].pb.raw);
        free(slots[w].pb.f);
        free(slots[w].pb.out);
        if (slots[w].cur)
            wd__wdelta_dec_free(&slots[w].td);
    }
    free(slots);
    wd__pool_free(pool);
    wd__thash_free(vh);
    free(vrefs);
    free(specs);
    free(pieces);
    free(hdr);
    return rc;
}

/* Weight files and indexes deltatensors does not copy (reconstruct.py's
 * _WEIGHT_SUFFIXES by pathlib's suffix, and _WEIGHT_INDEXES). */
static int is_weight_file(const char *name)
{
    static const char *const indexes[] = {"model.safetensors.index.json",
                                          "pytorch_model.bin.index.json"};
    static const char *const suffixes[] = {".safetensors", ".bin",     ".pt",   ".pth",   ".ckpt",
                                           ".h5",          ".msgpack", ".gguf", ".wdelta"};
    for (size_t i = 0; i < sizeof indexes / sizeof *indexes; i++)
        if (!strcmp(name, indexes[i]))
            return 1;
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || !dot[1]) /* pathlib: ".bashrc" and "x." have no suffix */
        return 0;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
        if (!strcmp(dot, suffixes[i]))
            return 1;
    return 0;
}

static int copy_other_files(const wd_folder *base, const char *dir, wd_out_dtype out_dtype)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < base->n_files; i++) {
        const char *name = base->files[i].path;
        if (is_weight_file(name))
            continue;
        char *src = NULL, *dst = NULL;
        if (asprintf(&src, "%s/%s", base->dir, name) < 0 || asprintf(&dst, "%s/%s", dir, name) < 0)
            rc = WD_NOMEM();
        else if ((rc = wd__make_parents(dir, name)))
            ;
        else if (!strcmp(name, "config.json") && out_dtype != WD_OUT_ORIGINAL)
            rc = wd__hfconfig_write(src, dst, wd__out_dtype_name(out_dtype));
        else
            rc = wd__file_copy(src, dst);
        free(src);
        free(dst);
    }
    return rc;
}

/* Matches the file's tensors (in hash order) to the base: items[0..nd) get
 * them, mark[] flags their base index. */
static int match_base(out_item *items, unsigned char *mark, const wd__wdelta *d,
                      const wd_folder *base, const char *in_path, const char *base_dir)
{
    for (size_t i = 0; i < wd__wdelta_count(d); i++) {
        const wd__wdelta_tensor *t = hash_order_at(d, i);
        long k = wd__folder_find(base, t->name);
        if (k < 0)
            return wd__error(WD_EMISMATCH, "wrong base: tensor '%s' of '%s' is not in '%s'",
                             t->name, in_path, base_dir);
        wd__tref_folder(&items[i].base, base, (size_t)k);
        items[i].t = t;
        mark[k] = 1;
        if (!same_shape(t->ndim, t->shape, items[i].base.ndim, items[i].base.shape)) {
            char a[400], b[400];
            fmt_shape(a, sizeof a, t->ndim, t->shape);
            fmt_shape(b, sizeof b, items[i].base.ndim, items[i].base.shape);
            return wd__error(WD_EMISMATCH, "wrong base: tensor '%s' has shape %s in '%s' but %s "
                                           "in the .wdelta", t->name, b, base_dir, a);
        }
        if (!wd__f32_convertible(items[i].base.dtype))
            return wd__error(WD_EBADINPUT, "tensor '%s' is %s in '%s': float8 cannot take a "
                                           "float32 delta", t->name,
                             wd__dtype_name(items[i].base.dtype), base_dir);
    }
    return 0;
}

/* The base check: parent_hash over the base's tensors the file names, in
 * its hash order. A chain link's parent_hash is the float32 model of the link
 * before it: that is accepted too when the folder holds that model (tensors
 * hashed as float32, integers converted). */
static int verify_base(const wd__wdelta *d, const out_item *items, size_t nd,
                       const char *in_path, const char *base_dir, const wd_options *opt,
                       const char *got_raw)
{
    const wd_tref **refs = calloc(nd + 1, sizeof *refs);
    if (!refs)
        return WD_NOMEM();
    uint64_t total = 0;
    int all_f32 = 1;
    for (size_t i = 0; i < nd; i++) {
        refs[i] = &items[i].base;
        total += items[i].base.nbytes;
        all_f32 &= items[i].base.dtype == WD_DT_F32;
    }
    char got[WD_HEX_SIZE], got32[WD_HEX_SIZE];
    const char *want = wd__wdelta_parent_hash(d);
    progress pg;
    int rc = 0;
    if (got_raw) { /* hashed already, while the output was written */
        memcpy(got, got_raw, sizeof got);
    } else {
        prog_start(&pg, opt, "verify", total);
        rc = hash_refs(refs, nd, 0, got, &pg);
    }
    if (!rc && strcmp(got, want) && !all_f32) {
        prog_start(&pg, opt, "verify", total);
        if (!(rc = hash_refs(refs, nd, 1, got32, &pg)) && !strcmp(got32, want))
            memcpy(got, got32, sizeof got);
    }
    free(refs);
    if (!rc && strcmp(got, want))
        rc = wd__error(WD_EMISMATCH,
                       "wrong base: '%s' was made against %.12s, but '%s' hashes to %.12s over "
                       "the file's %zu tensors (a chain link's parent is the float32 model of the "
                       "link before it, which a plain base folder cannot verify; --no-verify "
                       "skips the check)",
                       in_path, want, base_dir, got, nd);
    return rc;
}

/* write_shard_par's check: verify_base on the hash it made. */
typedef struct {
    const wd__wdelta *d;
    const out_item *items;
    size_t nd;
    const char *in_path, *base_dir;
    const wd_options *opt;
} verify_ctx;

static int verify_cb(void *ud, const char *got)
{
    const verify_ctx *v = ud;
    return verify_base(v->d, v->items, v->nd, v->in_path, v->base_dir, v->opt, got);
}

/* The .wdelta's own checksum, checked on a thread of its own while the
 * output is made (it used to be read through once before anything else). */
static int sum_fn(void *d)
{
    return wd__wdelta_verify_checksum(d);
}

/* Joins the checksum thread if it runs. A checksum error replaces rc: an
 * open that checks first would have reported it before anything else. */
static int sum_join(wd__sidejob *j, int rc)
{
    int src = wd__sidejob_join(j);
    return src ? src : rc;
}

int wd_load_delta_from_paths(const char *in_path, const char *base_dir, const char *out_dir,
                             wd_out_dtype out_dtype, unsigned flags, const wd_options *opt)
{
    if ((unsigned)out_dtype > WD_OUT_FLOAT16)
        return wd__error(WD_EUSAGE, "unknown output dtype %d", (int)out_dtype);
    /* The output folder is checked (and its temporary sibling made) before
     * any work, so a refused target costs nothing. The inputs must survive
     * any OUT_DIR, --force or not. */
    const wd__keep keep[] = {{base_dir, "the base folder"}, {in_path, "the .wdelta file"}};
    wd__outdir od;
    int rc = wd__outdir_begin(&od, out_dir, flags, keep, 2);
    if (rc)
        return rc;
    const char *tmp = od.tmp.path;

    wd__wdelta *d = NULL;
    wd_folder *base = NULL;
    out_item *items = NULL;
    unsigned char *mark = NULL;
    wd__sidejob sj = {0}; /* the checksum's thread */
    if ((rc = wd__wdelta_open_ex(&d, in_path, WD__WDELTA_OPEN_NO_CHECKSUM)))
        goto done;
    if (wd__sidejob_start(&sj, sum_fn, d) && (rc = wd__wdelta_verify_checksum(d)))
        goto done; /* no thread: checked here */
    if ((rc = wd__folder_open(&base, base_dir)))
        goto done;
    size_t nd = wd__wdelta_count(d), nb = base->n_tensors;
    items = calloc(nb + 1, sizeof *items);
    mark = calloc(nb + 1, 1);
    if (!items || !mark) {
        rc = WD_NOMEM();
        goto done;
    }
    if ((rc = match_base(items, mark, d, base, in_path, base_dir)))
        goto done;
    /* then the base tensors the file does not name, sorted */
    size_t n = nd;
    for (size_t k = 0; k < nb; k++)
        if (!mark[k])
            wd__tref_folder(&items[n++].base, base, k);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].out = wd__dtype_written(items[i].base.dtype, out_dtype);
        total += items[i].base.n * wd__dtype_size(items[i].out);
    }

    char *shard = NULL;
    if (asprintf(&shard, "%s/model.safetensors", tmp) < 0) {
        rc = WD_NOMEM();
        goto done;
    }
    progress pg;
    prog_start(&pg, opt, "load-delta", total);
    /* the base is verified (hashed by this thread) while the pool writes */
    verify_ctx vc = {d, items, nd, in_path, base_dir, opt};
    rc = write_shard_par(shard, d, items, n, nd, flags & WD_LOAD_NO_VERIFY ? NULL : verify_cb, &vc,
                         &pg, opt);
    free(shard);
    if (!rc)
        rc = copy_other_files(base, tmp, out_dtype);
    rc = sum_join(&sj, rc); /* before anything is kept */
    if (!rc) {
        int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        rc = wd__outdir_commit(&od);
    }
done:
    rc = sum_join(&sj, rc); /* joined on every path before d is closed */
    wd__outdir_abort(&od);
    free(items);
    free(mark);
    wd__folder_close(base);
    wd__wdelta_close(d);
    return rc;
}

/* ---- Loading in memory -------------------------------------------------------- */

void wd_named_tensors_free(wd_named_tensor *t, size_t count)
{
    if (!t)
        return;
    for (size_t i = 0; i < count; i++) {
        void *p; /* the library allocated these; const is for the caller */
        memcpy(&p, &t[i].name, sizeof p);
        free(p);
        memcpy(&p, &t[i].data, sizeof p);
        free(p);
    }
    free(t);
}

static const wd_tref *find_ref(const wd_tref *refs, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(refs[mid].name, name);
        if (!c)
            return &refs[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* One tensor of load_delta: base + decompress(delta) in float32, stored as
 * the delta's dtype (float32 in every file deltatensors writes). */
static int load_one(wd_named_tensor *r, const wd__wdelta *d, const wd__wdelta_tensor *t,
                    const wd_tref *b)
{
    wd_dtype odt;
    if (wd__dtype_from_numpy(t->dtype, &odt) ||
        (odt != WD_DT_F32 && odt != WD_DT_F16 && odt != WD_DT_F64))
        return wd__error(WD_EBADINPUT, ".wdelta tensor '%s': unsupported delta dtype '%s'",
                         t->name, t->dtype);
    size_t es = wd__dtype_size(odt);
    if (b->n > SIZE_MAX / es - 1)
        return wd__error(WD_ENOMEM, "tensor '%s' does not fit in memory", t->name);
    char *name = strdup(t->name);
    uint8_t *data = malloc((size_t)b->n * es + 1);
    float *f = malloc(PIECE * sizeof *f), *scratch = malloc(PIECE * sizeof *scratch);
    wd__wdelta_dec td;
    int rc = name && data && f && scratch ? wd__wdelta_dec_init(&td, d, t) : WD_NOMEM();
    if (!rc) {
        for (uint64_t p = 0; !rc && p < b->n; p += PIECE) {
            size_t cnt = b->n - p < PIECE ? (size_t)(b->n - p) : PIECE;
            if (!(rc = wd__tref_f32(b, p, cnt, f, NULL)) && !(rc = wd__wdelta_dec_apply(&td, p, cnt, f, scratch)))
                wd__from_f32(data + p * es, f, cnt, odt);
        }
        wd__wdelta_dec_free(&td);
    }
    free(f);
    free(scratch);
    if (rc) {
        free(name);
        free(data);
        return rc;
    }
    memset(r, 0, sizeof *r);
    r->name = name;
    snprintf(r->dtype, sizeof r->dtype, "%s", wd__dtype_name(odt));
    r->ndim = t->ndim;
    memcpy(r->shape, t->shape, sizeof r->shape);
    r->data = data;
    r->nbytes = b->n * es;
    return 0;
}

int wd_load_delta(wd_named_tensor **out, size_t *out_count, const char *in_path,
                  const wd_named_tensor *base, size_t n_base, int verify)
{
    *out = NULL;
    *out_count = 0;
    wd_tref *br = NULL;
    wd__wdelta *d = NULL;
    wd_named_tensor *res = NULL;
    size_t done = 0;
    int rc = mem_refs(&br, base, n_base, "base");
    if (!rc)
        rc = wd__wdelta_open(&d, in_path);
    if (rc)
        goto fail;
    if (verify) {
        /* deltatensors' load_delta hashes every tensor it is given */
        const wd_tref **refs = calloc(n_base + 1, sizeof *refs);
        char got[WD_HEX_SIZE];
        progress pg = {0};
        if (!refs) {
            rc = WD_NOMEM();
            goto fail;
        }
        for (size_t i = 0; i < n_base; i++)
            refs[i] = &br[i];
        rc = hash_refs(refs, n_base, 0, got, &pg);
        free(refs);
        if (!rc && strcmp(got, wd__wdelta_parent_hash(d)))
            rc = wd__error(WD_EMISMATCH, "wrong base: '%s' was made against %.12s, the given "
                                         "tensors hash to %.12s",
                           in_path, wd__wdelta_parent_hash(d), got);
        if (rc)
            goto fail;
    }
    size_t n = wd__wdelta_count(d);
    if (!(res = calloc(n + 1, sizeof *res))) {
        rc = WD_NOMEM();
        goto fail;
    }
    for (; done < n; done++) {
        const wd__wdelta_tensor *t = wd__wdelta_tensor_at(d, done);
        const wd_tref *b = find_ref(br, n_base, t->name);
        if (!b) {
            rc = wd__error(WD_EMISMATCH, "wrong base: tensor '%s' of '%s' is not among the base "
                                         "tensors", t->name, in_path);
        } else if (!same_shape(t->ndim, t->shape, b->ndim, b->shape)) {
            rc = wd__error(WD_EMISMATCH, "wrong base: tensor '%s' has another shape in the base",
                           t->name);
        } else if (!wd__f32_convertible(b->dtype)) {
            rc = wd__error(WD_EBADINPUT, "base tensor '%s' is %s: float8 cannot take a float32 "
                                         "delta", t->name, wd__dtype_name(b->dtype));
        } else {
            rc = load_one(&res[done], d, t, b);
        }
        if (rc)
            goto fail;
    }
    free(br);
    wd__wdelta_close(d);
    *out = res;
    *out_count = n;
    return 0;
fail:
    wd_named_tensors_free(res, done);
    free(br);
    wd__wdelta_close(d);
    return rc;
}
