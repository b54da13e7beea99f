/*
 * lossy_encode.c - encoding one tensor of a fine-tune with a deltatensors
 * strategy against its parent's float32 reconstruction, and storing the
 * resulting arrays as chunk streams (commit --strategy sparse|quantized|int4).
 *
 * The delta f32(ft) - f32(parent) is produced piece by piece on demand, on
 * every worker of the pool at once: the codecs make a few passes over it
 * (top-k histograms, min/max). A tensor of at most WD_LOSSY_CACHE_ELEMS
 * elements is read once and kept; a larger one is read again each pass
 * (pread of the fine-tune, the parent's pieces decoded anew).
 * The delta is pairdelta.c's reader (the fine-tune's tensor as side a, the
 * parent as stored side b), which tells the encoder of each parent piece
 * it decodes (the parent cache keeps them) and lends its slot buffers to
 * the sparse gathers and the reconstruction while no delta is read.
 * Memory: per worker slot the reader's two buffers, lent at their largest
 * (lend_bytes: 4 MiB each, the fine-tune's side up to 8 MiB for a float64
 * tensor), a piece scratch and a codec chunk; the cache (at most 4 x
 * WD_LOSSY_CACHE_ELEMS bytes) and, for int4, quantized and sparse, the
 * parent cache (as much; the rebuilt pieces use the reader's idle slot
 * buffers); the codec's outputs (the encoded arrays; sparse streams them
 * out and keeps at most WD_SPARSE_KEEP entries, 12 bytes each; int4 keeps
 * its outliers and streams its codes a window of units at a time, see
 * encode_int4).
 * The worker slots and the cache belong to a wd_lossy_encoder and serve
 * every tensor of a commit: allocated anew per tensor, their pages were
 * faulted in again each time.
 */
#include "lossy_encode.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_lowbit.h"
#include "error.h"
#include "lowbit_store.h"
#include "pairdelta.h"
#include "piece.h"
#include "pipeline.h"

struct wd_lossy_encoder {
    wd_repo *repo;
    const wd_folder *folder;
    struct wd_pool *pool;
    int nreaders;
    wd__pair_delta *pd;                   /* the delta, a slot per worker */
    wd_tref ft;                           /* side a: the tensor being encoded */
    const wd_stored_tensor *parent;       /* side b */
    float *cache;    /* WD_LOSSY_CACHE_ELEMS floats, allocated for a tensor that fits */
    /* The parent's float32 pieces of a tensor of at most
     * WD_LOSSY_CACHE_ELEMS elements, kept as the first pass decodes them so
     * the reconstruction (recon_pass) needs no second decode: par_state[k]
     * is 0 (not kept), 1 (being copied by one worker) or 2 (kept). */
    float *par_cache; /* WD_LOSSY_CACHE_ELEMS floats */
    _Atomic unsigned char *par_state;
    void *par_state_mem; /* par_state, to free (free() takes no _Atomic) */
    size_t par_pieces;
    struct recon_job *recon_jobs; /* 2 x recon_batch, set up at the first rebuild */
    size_t recon_batch;
    /* Elements of the current tensor read so far (every pass, every
     * worker); reported by worker slot 0, the calling thread. */
    atomic_uint_fast64_t read;
    wd_lossy_progress_fn progress;
    void *progress_ud;
    /* Kept from tensor to tensor, so their pages are faulted in once: */
    struct wd_codec_scratch *scratch; /* the codecs' buffers */
    struct sparse_gather *sparse;     /* sparse arrays' chunks on their way to the store */
    int64_t *keep_idx;                /* sparse entries for the rebuild: keep_cap <= WD_SPARSE_KEEP */
    float *keep_val;
    size_t keep_cap;
};

/* wd__pd_piece_fn: copies parent piece k into the encoder's parent cache
 * if the tensor fits and no other worker has (two may load the same piece
 * when codec units straddle pieces). */
static void keep_parent_piece(void *ud, int side, uint64_t k, const float *par, size_t n)
{
    wd_lossy_encoder *enc = ud;
    if (side != 1 || k >= enc->par_pieces)
        return;
    unsigned char expect = 0;
    if (!atomic_compare_exchange_strong(&enc->par_state[k], &expect, 1))
        return;
    memcpy(enc->par_cache + k * enc->parent->chunk_elems, par, n * sizeof *par);
    atomic_store(&enc->par_state[k], 2);
}

/* wd_delta_read_par_fn: the pair reader's deltas (one float32 subtraction
 * each, as deltatensors computes f32(ft) - f32(base)), counted for the
 * progress worker slot 0 reports. */
static int read_delta_par(void *ud, int worker, uint64_t begin, size_t count, float *out)
{
    wd_lossy_encoder *enc = ud;
    int rc = wd__pair_delta_read_par(enc->pd, worker, begin, count, out);
    if (rc)
        return rc;
    uint64_t read = atomic_fetch_add(&enc->read, count) + count;
    if (worker == 0 && enc->progress)
        enc->progress(enc->progress_ud, read);
    return 0;
}

static int read_delta(void *ud, uint64_t begin, size_t count, float *out)
{
    return read_delta_par(ud, 0, begin, count, out);
}

/* What the encoder borrows of a reader slot's buffer i (0: the fine-tune's
 * raw bytes, 1: the parent's piece): 4 MiB, room for 4 chunks of
 * WD_CHUNK_TARGET bytes; buffer 0 also for the codec's largest read
 * (WD_CODEC_CHUNK elements of the fine-tune's dtype), so no read grows it
 * and what was lent stays where it is. */
static size_t lend_bytes(const wd_lossy_encoder *enc, int i)
{
    size_t four = 4 * (size_t)WD_CHUNK_TARGET, rd = WD_CODEC_CHUNK * wd__dtype_size(enc->ft.dtype);
    return i == 0 && rd > four ? rd : four;
}

static uint8_t *lend(wd_lossy_encoder *enc, int worker, int i)
{
    return wd__pair_delta_lend(enc->pd, worker, i, lend_bytes(enc, i));
}

/* Entries of a sorted index array before each piece boundary. */
static int piece_index(wd_lossy *L, const void *idx, unsigned idx_bytes, uint64_t count, uint64_t n, uint64_t ce)
{
    L->n_pieces = (size_t)(n ? (n + ce - 1) / ce : 0);
    L->before = malloc((L->n_pieces + 1) * sizeof *L->before);
    if (!L->before)
        return WD_NOMEM();
    uint64_t j = 0;
    for (size_t k = 0; k <= L->n_pieces; k++) {
        uint64_t bound = k * ce;
        while (j < count && (uint64_t)wd__idx_at(idx, idx_bytes, j) < bound)
            j++;
        L->before[k] = k == L->n_pieces ? count : j;
    }
    return 0;
}

/* ---- Sparse entries to the store -----------------------------------------
 *
 * The entries go to the store as the encoder hands them out (index order),
 * so memory stays bounded whatever k is (163 MB of entries for the
 * Qwen-0.5B embedding at sparsity 0.9 were held before). Each array's bytes
 * are gathered into whole WD_ASTREAM_CHUNK chunks, cut exactly as one
 * wd__astream_append of the whole array would cut them; whenever the
 * encoder leaves the pool idle (between its batches of units, and for the
 * last batch's merge), the gathered chunks are transformed, hashed and
 * compressed on every worker slot at once, then stored in order by the
 * calling thread. Done on the calling thread as they came, this work made
 * the final pass wait on one core (55% of a sparse commit on the main
 * thread, the other core idle). When the gather is full while the encoder's
 * workers are busy, its chunks are prepared on the calling thread instead
 * (low sparsities: more entries than chunks a batch).
 * Memory: per array two WD_ASTREAM_CHUNK chunks a worker slot and their
 * compressed forms, one transformed chunk a slot; kept in the encoder
 * from tensor to tensor. A cached tensor's chunks sit in the pair reader's
 * idle slot buffers (lent); a bigger one's (its caches freed meanwhile) in buffers of
 * their own, freed when cached tensors come. */
#define GATHER_SLOTS(nslots) ((size_t)(nslots) * 2)
/* A cached tensor's chunks are gathered in the pair reader's slot buffers,
 * idle from the first pass (which fills the cache) to the rebuild: 8
 * chunks a slot in its two lent buffers (lend_bytes), 4 of which the
 * gathers take. */
_Static_assert((size_t)WD_CHUNK_TARGET >= WD_ASTREAM_CHUNK, "a lent buffer holds 4 chunks");

typedef struct {
    wd_astream_writer w;
    wd_dtype dt;
    int transform;
    uint8_t **raw;            /* slots buffers of WD_ASTREAM_CHUNK bytes, own or borrowed */
    uint8_t **own;            /* slots buffers of a tensor over the cache, or NULL */
    wd_astream_chunk *chunks; /* slots: their prepared forms (enc borrowed from a worker slot) */
    size_t full;              /* whole chunks gathered, not stored yet */
    size_t fill;              /* bytes in raw[full] */
} chunk_gather;

struct sparse_gather {
    chunk_gather g[2]; /* indices, values */
    size_t slots;      /* GATHER_SLOTS(nslots) an array */
    int nslots;        /* worker slots: 1 without a pool */
    wd_buf *wenc;      /* nslots transformed-chunk buffers */
    /* per tensor */
    wd_pool *pool;     /* NULL: every chunk prepared on the calling thread */
    void *const *cctx; /* per worker slot */
    int level;
    int idle;          /* the encoder leaves the pool alone */
    wd_lossy *L;
    uint64_t ce, emitted, next_bound;
    size_t next_piece;     /* before[0 .. next_piece) are known */
    wd_sparse_delta *keep; /* optional: room for every entry, for the rebuild */
};

static void sparse_gather_free(struct sparse_gather *s)
{
    if (!s)
        return;
    for (int a = 0; a < 2; a++) {
        chunk_gather *g = &s->g[a];
        for (size_t i = 0; i < s->slots; i++) {
            if (g->own)
                free(g->own[i]);
            if (g->chunks)
                wd__astream_chunk_free(&g->chunks[i]);
        }
        free(g->raw);
        free(g->own);
        free(g->chunks);
        wd__astream_writer_free(&g->w);
    }
    for (int w = 0; s->wenc && w < s->nslots; w++)
        wd__buf_free(&s->wenc[w]);
    free(s->wenc);
    free(s);
}

static int sparse_gather_new(struct sparse_gather **out, int nslots)
{
    struct sparse_gather *s = calloc(1, sizeof *s);
    if (!s)
        return WD_NOMEM();
    s->nslots = nslots;
    s->slots = GATHER_SLOTS(nslots);
    int ok = (s->wenc = calloc((size_t)nslots, sizeof *s->wenc)) != NULL;
    for (int a = 0; ok && a < 2; a++) {
        chunk_gather *g = &s->g[a];
        ok = (g->raw = calloc(s->slots, sizeof *g->raw)) && (g->own = calloc(s->slots, sizeof *g->own)) &&
             (g->chunks = calloc(s->slots, sizeof *g->chunks));
    }
    if (!ok) {
        sparse_gather_free(s);
        return WD_NOMEM();
    }
    *out = s;
    return 0;
}

/* Frees the buffers only a tensor over the cache uses. */
static void sparse_gather_trim(struct sparse_gather *s)
{
    for (int a = 0; s && a < 2; a++)
        for (size_t i = 0; i < s->slots; i++) {
            free(s->g[a].own[i]);
            s->g[a].own[i] = NULL;
        }
}

/* Points the gathers' slots at their buffers for a tensor of n elements:
 * the idle reader buffers for a cached one, else their own. */
static int sparse_gather_place(struct sparse_gather *s, wd_lossy_encoder *enc, uint64_t n)
{
    for (int a = 0; a < 2; a++)
        for (size_t i = 0; i < s->slots; i++) {
            chunk_gather *g = &s->g[a];
            if (n <= WD_LOSSY_CACHE_ELEMS) {
                size_t j = (size_t)a * s->slots + i; /* < 4 x nslots */
                uint8_t *b = lend(enc, (int)(j / 8), j % 8 < 4);
                if (!b)
                    return WD_ENOMEM;
                g->raw[i] = b + (j % 4) * WD_ASTREAM_CHUNK;
            } else {
                if (!g->own[i] && !(g->own[i] = malloc(WD_ASTREAM_CHUNK)))
                    return WD_NOMEM();
                g->raw[i] = g->own[i];
            }
        }
    return 0;
}

/* Prepares chunk i of gather g (len bytes) on worker slot worker. */
static int gather_prep_one(struct sparse_gather *s, chunk_gather *g, size_t i, int worker, size_t len)
{
    wd_astream_chunk *c = &g->chunks[i];
    c->enc = s->wenc[worker];
    int rc = wd__astream_chunk_prepare(c, g->dt, g->transform, s->cctx[worker], s->level, g->raw[i], len);
    s->wenc[worker] = c->enc;
    memset(&c->enc, 0, sizeof c->enc);
    return rc;
}

/* wd_pool_fn over the whole chunks of both arrays, indices' first. */
static int gather_prep(void *p, size_t i, int worker)
{
    struct sparse_gather *s = p;
    chunk_gather *g = &s->g[0];
    if (i >= g->full) {
        i -= g->full;
        g = &s->g[1];
    }
    return gather_prep_one(s, g, i, worker, WD_ASTREAM_CHUNK);
}

/* Stores g's prepared whole chunks in order and moves the partial one to
 * the front. */
static int gather_store(chunk_gather *g)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < g->full; i++)
        rc = wd__astream_add_chunk(&g->w, &g->chunks[i]);
    if (rc)
        return rc;
    if (g->fill) { /* else raw[full] may be past the slots */
        uint8_t *t = g->raw[0];
        g->raw[0] = g->raw[g->full];
        g->raw[g->full] = t;
    }
    g->full = 0;
    return 0;
}

/* Prepares and stores the whole chunks gathered so far: on the pool when
 * the encoder leaves it idle, else here. */
static int gather_flush(struct sparse_gather *s)
{
    size_t n = s->g[0].full + s->g[1].full;
    int rc = 0;
    if (!n)
        return 0;
    if (s->pool && s->idle && n >= 2) {
        rc = wd__pool_run(s->pool, n, gather_prep, s);
    } else {
        for (size_t i = 0; !rc && i < n; i++)
            rc = gather_prep(s, i, 0);
    }
    for (int a = 0; !rc && a < 2; a++)
        rc = gather_store(&s->g[a]);
    return rc;
}

static int gather_add(struct sparse_gather *s, chunk_gather *g, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        size_t room = WD_ASTREAM_CHUNK - g->fill, take = len < room ? len : room;
        memcpy(g->raw[g->full] + g->fill, p, take);
        g->fill += take;
        p += take;
        len -= take;
        if (g->fill == WD_ASTREAM_CHUNK) {
            g->full++;
            g->fill = 0;
            int rc = g->full == s->slots ? gather_flush(s) : 0; /* no room for the next chunk */
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* wd_sparse_sink.pool_idle */
static int sparse_idle(void *ud, int idle)
{
    struct sparse_gather *s = ud;
    s->idle = idle;
    return idle ? gather_flush(s) : 0;
}

static int sparse_emit(void *ud, const int64_t *idx, const float *val, size_t count)
{
    struct sparse_gather *o = ud;
    for (size_t e = 0; e < count; e++) {
        while ((uint64_t)idx[e] >= o->next_bound && o->next_piece <= o->L->n_pieces) {
            o->L->before[o->next_piece++] = o->emitted + e;
            o->next_bound += o->ce;
        }
    }
    if (o->keep) {
        if (o->emitted + count > o->keep->k)
            return wd__error(WD_ERROR, "sparse: more entries than the %llu selected",
                             (unsigned long long)o->keep->k);
        memcpy(o->keep->indices + o->emitted, idx, count * sizeof *idx);
        memcpy(o->keep->values + o->emitted, val, count * sizeof *val);
    }
    o->emitted += count;
    int rc = gather_add(o, &o->g[0], idx, count * sizeof *idx);
    return rc ? rc : gather_add(o, &o->g[1], val, count * sizeof *val);
}

/* Stores the last chunks of both arrays (the encoder is done with the
 * pool) and completes their descriptions. */
static int gather_finish(struct sparse_gather *s)
{
    s->idle = 1;
    int rc = gather_flush(s);
    for (int a = 0; !rc && a < 2; a++) {
        chunk_gather *g = &s->g[a];
        if (g->fill && !(rc = gather_prep_one(s, g, 0, 0, g->fill)))
            rc = wd__astream_add_chunk(&g->w, &g->chunks[0]);
        g->fill = 0;
        if (!rc)
            rc = wd__astream_finish(&g->w);
    }
    return rc;
}

static int encode_sparse_streamed(wd_lossy_encoder *enc, const wd_lossy_sink *sink, wd_lossy *L,
                                  const wd_delta_src *ds, double sparsity, uint64_t n, uint64_t ce,
                                  wd_codec_fidelity *fid, wd_sparse_delta *keep)
{
    int nslots = enc->pool ? wd__pool_size(enc->pool) : 1;
    int rc = enc->sparse ? 0 : sparse_gather_new(&enc->sparse, nslots);
    if (rc)
        return rc;
    struct sparse_gather *o = enc->sparse;
    if ((rc = sparse_gather_place(o, enc, n)))
        return rc;
    o->pool = enc->pool && sink->worker_cctx ? enc->pool : NULL;
    o->cctx = o->pool ? sink->worker_cctx : &sink->cctx;
    o->level = sink->level;
    o->idle = 0;
    o->L = L;
    o->ce = ce;
    o->emitted = 0;
    o->next_bound = 0;
    o->next_piece = 0;
    o->keep = keep;
    for (int a = 0; a < 2; a++)
        o->g[a].full = o->g[a].fill = 0;
    L->n_pieces = (size_t)(n ? (n + ce - 1) / ce : 0);
    if (!(L->before = malloc((L->n_pieces + 1) * sizeof *L->before)))
        return WD_NOMEM();
    o->g[0].dt = WD_DT_I64;
    o->g[0].transform = WD_AT_GAPS;
    o->g[1].dt = WD_DT_F32;
    o->g[1].transform = WD_AT_PLANES;
    for (int a = 0; a < 2; a++) {
        wd__astream_writer_free(&o->g[a].w);
        wd__astream_writer_init(&o->g[a].w, sink->cs, sink->put, sink->put_arg, sink->cctx, sink->level,
                                &L->arrays[a ? WD__WF_VALUES : WD__WF_INDICES], a ? WD__WF_VALUES : WD__WF_INDICES,
                                o->g[a].dt, o->g[a].transform);
    }
    uint64_t k = 0;
    wd_sparse_sink ss = {sparse_emit, sparse_idle, o};
    rc = wd__sparse_encode_sink(ds, sparsity, &ss, &k, fid);
    while (!rc && o->next_piece <= L->n_pieces)
        L->before[o->next_piece++] = o->emitted;
    if (!rc)
        rc = gather_finish(o);
    return rc;
}

/* An array going to the store as its bytes arrive, whole chunks prepared
 * on the pool: each worker copies its chunk (the gap transform works in
 * place), transforms, hashes and compresses it; the calling thread then
 * stores them in order. Bytes short of a whole chunk wait in the writer,
 * so the chunks are those of one wd__astream_append of the whole array.
 * Memory: per worker slot a WD_ASTREAM_CHUNK copy and the chunk's encoded
 * and compressed forms (3 MiB a slot in flight; two a slot measured no
 * faster), plus the writer's pending chunk. */
typedef struct {
    wd_astream_writer w;
    wd_pool *pool; /* NULL: every byte through the writer */
    void *const *cctx; /* per worker slot */
    wd_dtype dt;
    int transform, level;
    size_t batch;             /* chunks prepared at once: a worker slot each */
    wd_astream_chunk *chunks; /* batch of them */
    uint8_t **copy;           /* batch WD_ASTREAM_CHUNK buffers */
    const uint8_t *data;      /* the bytes being prepared */
} array_out;

static int array_out_init(array_out *o, const wd_lossy_sink *sink, wd_pool *pool, wd_lossy *L, int field, wd_dtype dt,
                          int transform)
{
    memset(o, 0, sizeof *o);
    wd__astream_writer_init(&o->w, sink->cs, sink->put, sink->put_arg, sink->cctx, sink->level, &L->arrays[field], field,
                            dt, transform);
    o->dt = dt;
    o->transform = transform;
    o->level = sink->level;
    if (!pool || !sink->worker_cctx)
        return 0;
    o->pool = pool;
    o->cctx = sink->worker_cctx;
    o->batch = (size_t)wd__pool_size(pool);
    o->chunks = calloc(o->batch, sizeof *o->chunks);
    o->copy = calloc(o->batch, sizeof *o->copy);
    if (!o->chunks || !o->copy)
        return WD_NOMEM();
    for (size_t i = 0; i < o->batch; i++)
        if (!(o->copy[i] = malloc(WD_ASTREAM_CHUNK)))
            return WD_NOMEM();
    return 0;
}

static int prep_chunk(void *p, size_t i, int worker)
{
    array_out *o = p;
    memcpy(o->copy[i], o->data + i * WD_ASTREAM_CHUNK, WD_ASTREAM_CHUNK);
    return wd__astream_chunk_prepare(&o->chunks[i], o->dt, o->transform, o->cctx[worker], o->level, o->copy[i],
                                     WD_ASTREAM_CHUNK);
}

/* The next nbytes of the array. */
static int array_out_add(array_out *o, const uint8_t *data, size_t nbytes)
{
    int rc = 0;
    if (o->w.pending.len) { /* complete the chunk the last call left open */
        size_t room = WD_ASTREAM_CHUNK - o->w.pending.len, take = nbytes < room ? nbytes : room;
        if ((rc = wd__astream_append(&o->w, data, take)))
            return rc;
        data += take;
        nbytes -= take;
    }
    size_t whole = nbytes / WD_ASTREAM_CHUNK;
    /* one chunk alone gains nothing from the pool */
    for (size_t c0 = 0; o->pool && whole >= 2 && !rc && c0 < whole; c0 += o->batch) {
        size_t nb = whole - c0 < o->batch ? whole - c0 : o->batch;
        o->data = data + c0 * WD_ASTREAM_CHUNK;
        rc = wd__pool_run(o->pool, nb, prep_chunk, o);
        for (size_t i = 0; !rc && i < nb; i++)
            rc = wd__astream_add_chunk(&o->w, &o->chunks[i]);
    }
    if (o->pool && whole >= 2) {
        data += whole * WD_ASTREAM_CHUNK;
        nbytes -= whole * WD_ASTREAM_CHUNK;
    }
    return rc ? rc : wd__astream_append(&o->w, data, nbytes);
}

static void array_out_free(array_out *o)
{
    for (size_t i = 0; i < o->batch; i++) {
        if (o->chunks)
            wd__astream_chunk_free(&o->chunks[i]);
        if (o->copy)
            free(o->copy[i]);
    }
    free(o->chunks);
    free(o->copy);
    wd__astream_writer_free(&o->w);
}

/* Stores a whole array as a chunk stream. */
static int store_array(const wd_lossy_sink *sink, wd_pool *pool, wd_lossy *L, int field, wd_dtype dt, int transform,
                       const void *data, uint64_t nbytes)
{
    array_out o;
    int rc = array_out_init(&o, sink, pool, L, field, dt, transform);
    if (!rc)
        rc = array_out_add(&o, data, (size_t)nbytes);
    if (!rc)
        rc = wd__astream_finish(&o.w);
    array_out_free(&o);
    return rc;
}

/* ---- The reconstruction, for the commit's model hash --------------------
 *
 * Right after a quantized encoding its arrays are still in memory (int4:
 * as each window of codes arrives, with the outliers), and for a tensor the
 * cache holds, so are the parent's float32 pieces: the
 * pieces checkout will write are rebuilt from them (the codec's own apply,
 * narrowed to the dtype) on the pool's worker threads, while the calling
 * thread hands the finished ones, in order, to the caller's hash. Without
 * this the commit decoded the parent and the stored arrays a second time,
 * a third of a lossy commit's time. Memory: none of its own; two batches of
 * at most RECON_BATCH native pieces (1 MiB each) sit in the reader slots'
 * fine-tune buffers, the float32 work in their parent-piece buffers (both
 * lent) or in place in the parent cache. */
#define RECON_BATCH 16

typedef struct recon_job {
    uint64_t k;
    size_t nbytes;
    uint8_t *nat; /* WD_CHUNK_TARGET bytes, in a reader slot's fine-tune buffer */
} recon_job;

/* The rebuilt pieces go to the reader slots' fine-tune buffers, idle while
 * no delta is read (room for 4 native pieces of WD_CHUNK_TARGET bytes), so
 * the rebuild adds nothing to the peak, which comes with the largest
 * tensor's arrays. */
static int recon_jobs_get(wd_lossy_encoder *enc, recon_job **out, size_t *batch)
{
    if (!enc->recon_jobs) {
        size_t b = (size_t)enc->nreaders < RECON_BATCH ? (size_t)enc->nreaders : RECON_BATCH;
        if (!(enc->recon_jobs = calloc(2 * b, sizeof *enc->recon_jobs)))
            return WD_NOMEM();
        enc->recon_batch = b;
    }
    /* lent anew each time: a buffer may have grown for another tensor */
    for (size_t i = 0; i < 2 * enc->recon_batch; i++) {
        uint8_t *b = lend(enc, (int)(i / 4), 0);
        if (!b)
            return WD_ENOMEM;
        enc->recon_jobs[i].nat = b + (i % 4) * (size_t)WD_CHUNK_TARGET;
    }
    *out = enc->recon_jobs;
    *batch = enc->recon_batch;
    return 0;
}

typedef struct {
    wd_lossy_encoder *enc;
    const wd_int4_delta *i4; /* one of these four; int4's codes are a window, */
    const uint8_t *codes;    /* codes[0] holding element codes_at's code (even) */
    uint64_t codes_at;
    const wd_quant_delta *q;
    const wd_sparse_delta *sp;
    const wd_stored_tensor *stored; /* the new tensor as stored: rebuilt as checkout would */
    recon_job *jobs;
    wd_dtype dtype;
    uint64_t ce, n;
} recon_ctx;

static int recon_piece(void *p, size_t i, int worker)
{
    recon_ctx *c = p;
    recon_job *j = &c->jobs[i];
    wd_lossy_encoder *enc = c->enc;
    uint64_t begin = j->k * c->ce;
    size_t n = (size_t)(c->n - begin < c->ce ? c->n - begin : c->ce);
    float *f;
    int rc = 0;
    j->nbytes = n * wd__dtype_size(c->dtype);
    if (c->stored) /* its arrays and its parent from the store, as checkout reads them */
        return wd__pair_delta_decode(enc->pd, worker, enc->repo, c->stored, j->k, WD_PIECE_NATIVE, j->nat);
    if (j->k < enc->par_pieces && atomic_load(&enc->par_state[j->k]) == 2) {
        f = enc->par_cache + begin; /* its last use: rebuilt in place */
    } else {
        /* the slot's parent-piece buffer, which the reader then forgets */
        if (!(f = (float *)(void *)lend(enc, worker, 1)))
            return WD_ENOMEM;
        rc = wd__pair_delta_decode(enc->pd, worker, enc->repo, enc->parent, j->k, WD_PIECE_F32, f);
    }
    if (!rc)
        rc = c->i4 ? (wd__int4_apply_codes(c->i4, begin, f, n, c->codes + (begin - c->codes_at) / 2), 0)
           : c->q  ? wd__quant_apply(c->q, begin, f, n)
                   : wd__sparse_apply(c->sp, begin, f, n);
    if (rc)
        return rc;
    wd__from_f32(j->nat, f, n, c->dtype);
    return 0;
}

/* Rebuilds pieces [next, npieces) and hands them to emit in order. */
static int recon_pass(wd_lossy_encoder *enc, const wd_st_tensor *t, uint64_t ce, uint64_t next, uint64_t npieces,
                      const recon_ctx *how, wd_lossy_recon_fn emit, void *emit_ud)
{
    recon_job *jobs = NULL;
    size_t batch = 0;
    int rc = recon_jobs_get(enc, &jobs, &batch);
    if (rc)
        return rc;
    recon_ctx c[2] = {*how, *how};
    for (int i = 0; i < 2; i++) {
        c[i].enc = enc;
        c[i].jobs = jobs + (size_t)i * batch;
        c[i].dtype = t->dtype;
        c[i].ce = ce;
        c[i].n = t->nelem;
    }
    size_t nb[2] = {0, 0};
    int cur = 0, running = 0;
    while (!rc && (next < npieces || nb[cur])) {
        if (!nb[cur]) { /* the first batch */
            for (; nb[cur] < batch && next < npieces; nb[cur]++)
                c[cur].jobs[nb[cur]].k = next++;
            if (enc->pool) {
                wd__pool_start(enc->pool, nb[cur], recon_piece, &c[cur]);
                running = 1;
            } else {
                for (size_t i = 0; !rc && i < nb[cur]; i++)
                    rc = recon_piece(&c[cur], i, 0);
            }
            continue;
        }
        if (running) {
            running = 0;
            if ((rc = wd__pool_wait(enc->pool)))
                break;
        }
        int nxt = !cur;
        nb[nxt] = 0;
        for (; nb[nxt] < batch && next < npieces; nb[nxt]++)
            c[nxt].jobs[nb[nxt]].k = next++;
        if (nb[nxt] && enc->pool) {
            wd__pool_start(enc->pool, nb[nxt], recon_piece, &c[nxt]);
            running = 1;
        }
        for (size_t i = 0; !rc && i < nb[cur]; i++)
            rc = emit(emit_ud, c[cur].jobs[i].nat, c[cur].jobs[i].nbytes);
        nb[cur] = 0;
        if (!enc->pool)
            for (size_t i = 0; !rc && i < nb[nxt]; i++)
                rc = recon_piece(&c[nxt], i, 0);
        cur = nxt;
    }
    if (running)
        wd__pool_wait(enc->pool);
    return rc;
}

/* A sparse tensor: its entries go to the store as they are made, and, with
 * recon, it is rebuilt for the model hash. For a tensor the parent cache
 * holds (in_cache) with at most WD_SPARSE_KEEP entries, the entries are
 * also kept in memory and applied to the cached parent pieces; otherwise
 * the tensor is rebuilt from the store as checkout will read it. */
static int encode_sparse(wd_lossy_encoder *enc, const wd_lossy_sink *sink, wd_lossy *L, const wd_delta_src *ds,
                         const wd_folder_tensor *src, const wd_stored_tensor *parent, double sparsity,
                         wd_codec_fidelity *fid, int in_cache, wd_lossy_recon_fn recon, void *recon_ud)
{
    const wd_st_tensor *t = src->t;
    uint64_t ce = parent->chunk_elems;
    wd_sparse_delta keep = {0}; /* its arrays are the encoder's */
    int valid = sparsity >= 0.0 && sparsity < 1.0; /* else the encoder says what is wrong */
    if (recon && in_cache && valid && (keep.k = wd__sparse_k(t->nelem, sparsity)) <= WD_SPARSE_KEEP) {
        keep.n = t->nelem;
        size_t cap_v = enc->keep_cap;
        if (wd__scratch_grow((void **)&enc->keep_idx, &enc->keep_cap, (size_t)keep.k, sizeof *enc->keep_idx) ||
            wd__scratch_grow((void **)&enc->keep_val, &cap_v, (size_t)keep.k, sizeof *enc->keep_val)) {
            enc->keep_cap = 0;
            return WD_NOMEM();
        }
        keep.indices = enc->keep_idx;
        keep.values = enc->keep_val;
    }
    int rc = encode_sparse_streamed(enc, sink, L, ds, sparsity, t->nelem, ce, fid, keep.indices ? &keep : NULL);
    if (!rc && recon && keep.indices) {
        rc = recon_pass(enc, t, ce, 0, (t->nelem + ce - 1) / ce, &(recon_ctx){.sp = &keep}, recon, recon_ud);
    } else if (!rc && recon) {
        /* Read only: the struct's fields are not const. */
        wd_stored_tensor st = {.name = (char *)(uintptr_t)src->name, .dtype = t->dtype, .ndim = t->ndim, .nelem = t->nelem,
                               .nbytes = t->nbytes, .chunk_elems = ce, .lossy = L,
                               .parent = (wd_stored_tensor *)(uintptr_t)parent};
        memcpy(st.shape, t->shape, sizeof(uint64_t) * (size_t)t->ndim);
        snprintf(st.encoding, sizeof st.encoding, "%s", wd__lossy_encoding(WD__WS_SPARSE));
        if (sink->flush)
            rc = sink->flush(sink->put_arg);
        if (!rc)
            rc = recon_pass(enc, t, ce, 0, (t->nelem + ce - 1) / ce, &(recon_ctx){.stored = &st}, recon, recon_ud);
    }
    return rc;
}

/* The int4 codes as the encoder hands them out, a window at a time: the
 * window's pieces rebuilt for the model hash, then its bytes stored. */
typedef struct {
    wd_lossy_encoder *enc;
    const wd_st_tensor *t;
    uint64_t ce;
    array_out packed;
    wd_lossy_recon_fn recon;
    void *recon_ud;
} int4_out;

static int int4_window(void *ud, const wd_int4_delta *e, uint64_t begin, uint64_t end, uint8_t *codes)
{
    int4_out *o = ud;
    uint64_t ce = o->ce;
    /* a piece rebuilt from two windows would need the first one's codes kept */
    if (begin % ce || (end % ce && end != e->n))
        return wd__error(WD_ERROR, "int4: codes of [%llu, %llu) cut a piece of %llu elements", (unsigned long long)begin,
                         (unsigned long long)end, (unsigned long long)ce);
    int rc = 0;
    if (o->recon)
        rc = recon_pass(o->enc, o->t, ce, begin / ce, (end + ce - 1) / ce,
                        &(recon_ctx){.i4 = e, .codes = codes, .codes_at = begin}, o->recon, o->recon_ud);
    return rc ? rc : array_out_add(&o->packed, codes, (size_t)((end - begin + 1) / 2));
}

/* An int4 tensor: its codes stored (and, with recon, rebuilt) as they are
 * made, then its outliers. Memory: the encoder's window of codes and the
 * outliers (about 1% of the elements, 6 bytes each), not the n / 2 code
 * bytes (68 MB for the Qwen-0.5B embedding were held before). */
static int encode_int4(wd_lossy_encoder *enc, const wd_lossy_sink *sink, wd_lossy *L, wd_delta_src *ds,
                       const wd_st_tensor *t, uint64_t ce, double outlier_fraction, wd_codec_fidelity *fid,
                       wd_lossy_recon_fn recon, void *recon_ud)
{
    /* Windows are whole units: units a multiple of the piece keep the
     * pieces inside windows (the default chunk is one for every dtype). */
    if (WD_CODEC_CHUNK % ce)
        ds->chunk = (size_t)(ce < WD_CODEC_CHUNK ? WD_CODEC_CHUNK / ce * ce : ce);
    int4_out o = {.enc = enc, .t = t, .ce = ce, .recon = recon, .recon_ud = recon_ud};
    wd_int4_delta e = {0};
    int rc = array_out_init(&o.packed, sink, enc->pool, L, WD__WF_PACKED, WD_DT_U8, WD_AT_RAW);
    if (!rc)
        rc = wd__int4_encode_stream(&e, ds, outlier_fraction, fid, int4_window, &o);
    if (!rc)
        rc = wd__astream_finish(&o.packed.w);
    if (!rc) {
        L->layout = 2;
        L->scale = e.scale;
        L->zero_point = e.zero_point;
        rc = piece_index(L, e.outlier_idx, e.idx_bytes, e.n_outliers, t->nelem, ce);
    }
    if (!rc)
        rc = store_array(sink, enc->pool, L, WD__WF_OUTLIER_IDX, e.idx_bytes == 4 ? WD_DT_I32 : WD_DT_I64, WD_AT_GAPS,
                         e.outlier_idx, e.n_outliers * e.idx_bytes);
    if (!rc)
        rc = store_array(sink, enc->pool, L, WD__WF_OUTLIER_VALS, WD_DT_F16, WD_AT_PLANES, e.outlier_vals,
                         e.n_outliers * 2);
    array_out_free(&o.packed);
    wd__int4_clear(&e);
    return rc;
}

int wd__lossy_encoder_new(wd_lossy_encoder **out, wd_repo *repo, const wd_folder *folder, struct wd_pool *pool,
                          wd_lossy_progress_fn progress, void *progress_ud)
{
    wd_lossy_encoder *enc = calloc(1, sizeof *enc);
    if (!enc)
        return WD_NOMEM();
    enc->repo = repo;
    enc->folder = folder;
    enc->pool = pool;
    enc->nreaders = pool ? wd__pool_size(pool) : 1;
    enc->progress = progress;
    enc->progress_ud = progress_ud;
    atomic_init(&enc->read, 0);
    int rc = wd__codec_scratch_new(&enc->scratch);
    if (!rc)
        rc = wd__pair_delta_new(&enc->pd, enc->nreaders);
    if (!rc)
        wd__pair_delta_hook(enc->pd, keep_parent_piece, enc);
    /* Pieces are at least WD_CHUNK_TARGET / 8 elements (8-byte dtypes). */
    size_t max_pieces = WD_LOSSY_CACHE_ELEMS / (WD_CHUNK_TARGET / 8) + 1;
    if (!rc && !(enc->par_state = enc->par_state_mem = calloc(max_pieces, sizeof *enc->par_state)))
        rc = WD_NOMEM();
    if (rc) {
        wd__lossy_encoder_free(enc);
        return rc;
    }
    *out = enc;
    return 0;
}

void wd__lossy_encoder_free(wd_lossy_encoder *enc)
{
    if (!enc)
        return;
    wd__pair_delta_free(enc->pd);
    free(enc->cache);
    free(enc->par_cache);
    free(enc->par_state_mem);
    free(enc->recon_jobs);
    wd__codec_scratch_free(enc->scratch);
    sparse_gather_free(enc->sparse);
    free(enc->keep_idx);
    free(enc->keep_val);
    free(enc);
}

int wd__lossy_encode_tensor(wd_lossy_encoder *enc, const wd_folder_tensor *src, const wd_stored_tensor *parent,
                            int strategy, double option, const wd_lossy_sink *sink, wd_lossy **out,
                            wd_codec_fidelity *fid, wd_lossy_recon_fn recon, void *recon_ud, int *recon_done)
{
    wd_pool *pool = enc->pool;
    wd__tref_folder(&enc->ft, enc->folder, (size_t)(src - enc->folder->tensors));
    enc->parent = parent;
    wd__pd_side a = {.ref = &enc->ft}, b = {.repo = enc->repo, .st = parent};
    wd__pair_delta_set(enc->pd, &a, &b);
    atomic_store(&enc->read, 0);
    const wd_st_tensor *t = src->t;
    *recon_done = 0;
    /* The parent cache serves a tensor the codec's cache holds whole. */
    int rebuild = recon && (strategy == WD__WS_INT4 || strategy == WD__WS_QUANTIZED || strategy == WD__WS_SPARSE);
    int fits = t->nelem <= WD_LOSSY_CACHE_ELEMS;
    enc->par_pieces = 0;
    if (rebuild && fits && !enc->par_cache &&
        !(enc->par_cache = malloc(WD_LOSSY_CACHE_ELEMS * sizeof *enc->par_cache)))
        return WD_NOMEM();
    if (!fits) { /* a big tensor: hand both caches' pages back while its arrays are made */
        free(enc->par_cache);
        enc->par_cache = NULL;
        free(enc->cache);
        enc->cache = NULL;
    } else if (!enc->cache) {
        /* and the other way round: what only a big tensor needs goes */
        wd__codec_scratch_trim(enc->scratch);
        sparse_gather_trim(enc->sparse);
        if (!(enc->cache = malloc(WD_LOSSY_CACHE_ELEMS * sizeof *enc->cache)))
            return WD_NOMEM();
    }
    if (rebuild && fits)
        enc->par_pieces = (size_t)((t->nelem + parent->chunk_elems - 1) / parent->chunk_elems);
    for (size_t k = 0; k < enc->par_pieces; k++)
        atomic_store(&enc->par_state[k], 0);
    wd_lossy *L = calloc(1, sizeof *L);
    int rc = !L ? WD_NOMEM() : 0;
    wd_delta_src ds = {.n = t->nelem, .read = read_delta, .ud = enc, .pool = pool, .read_par = read_delta_par,
                       .cache_elems = WD_LOSSY_CACHE_ELEMS, .cache_buf = enc->cache, .scratch = enc->scratch};
    uint64_t ce = parent->chunk_elems;
    if (!rc) {
        L->strategy = strategy;
        if (strategy == WD__WS_LOWBIT) { /* (issue 11) */
            rc = wd__lowbit_store(sink, L, &ds, src->name, t->ndim, t->shape, option, fid);
        } else if (strategy == WD__WS_SPARSE) {
            rc = encode_sparse(enc, sink, L, &ds, src, parent, option, fid, rebuild && fits, recon, recon_ud);
            if (!rc && rebuild)
                *recon_done = 1;
        } else if (strategy == WD__WS_QUANTIZED) {
            wd_quant_delta q = {0};
            uint64_t rows;
            wd__quant_layout(t->ndim, t->shape, &rows, &L->n_cols);
            rc = wd__quant_encode(&q, &ds, L->n_cols, fid);
            if (!rc && recon &&
                !(rc = recon_pass(enc, t, ce, 0, (t->nelem + ce - 1) / ce, &(recon_ctx){.q = &q}, recon, recon_ud)))
                *recon_done = 1;
            if (!rc)
                rc = store_array(sink, pool, L, WD__WF_SCALES, WD_DT_F16, WD_AT_PLANES, q.scales, rows * 2);
            if (!rc)
                rc = store_array(sink, pool, L, WD__WF_PACKED_SIGNS, WD_DT_U8, WD_AT_RAW, q.packed_signs, (t->nelem + 7) / 8);
            wd__quant_clear(&q);
        } else {
            rc = encode_int4(enc, sink, L, &ds, t, ce, option, fid, recon, recon_ud);
            if (!rc && recon)
                *recon_done = 1;
        }
    }
    enc->par_pieces = 0;
    if (rc) {
        wd__lossy_free(L);
        return rc;
    }
    *out = L;
    return 0;
}
