/*
 * commit.c - storing model folders: add-base (every tensor whole, plane
 * split) and commit (each tensor as a lossless delta against the same
 * tensor of the parent's reconstruction, or, with a lossy strategy, encoded
 * by deltatensors' codecs through lossy_encode.c).
 *
 * Tensors are cut into pieces of wd__chunk_elems() elements that line up
 * across a base and all its deltas. Pieces flow, tensors in name order,
 * through two alternating batches: workers read the fine-tune's piece,
 * rebuild the parent's, transform, hash and (unless the store has the
 * chunk) compress one batch while the calling thread stores the previous
 * one and feeds its raw pieces to the model hash, which wants exactly that
 * order. Workers reach the database only through the chunk store's
 * any-thread reads; every write stays on the calling thread, in short
 * transactions. A lossy commit then encodes its tensors with the codecs
 * (their passes on the same pool) and hashes its reconstruction on the pool
 * before the final transaction, so the write lock is held for inserts
 * only. Objects become visible in that one transaction; chunks stored
 * before a failure stay unreferenced (gc drops them).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>


#include "codec_lossless.h"
#include "db.h"
#include "error.h"
#include "folder.h"
#include "hash.h"
#include "lossy.h"
#include "lossy_encode.h"
#include "manifest.h"
#include "piece.h"
#include "pipeline.h"
#include "repo_int.h"
#include "strategy.h"
#include "tensorhash.h"


typedef struct {
    const wd_folder_tensor *src;
    wd_stored_tensor *parent; /* NULL: stored whole */
    size_t file_index;
    int64_t ordinal;
    uint64_t chunk_elems;
    wd_buf chunks; /* ids, 32 bytes each */
    uint64_t stored_bytes;
    int all_zero;  /* every piece equal to the parent's */
    int lossy_pending; /* to be encoded with the commit's lossy strategy */
    wd_lossy *lossy;   /* lossy strategies: the encoded arrays, NULL otherwise */
    double rel_error, max_abs_error;
    const char *encoding;
} work_tensor;

typedef struct {
    work_tensor *wt;
    uint64_t k;        /* UINT64_MAX: an empty tensor, there for its name in the model hash */
    size_t nelem;
    uint8_t *raw;      /* the fine-tune's piece, kept for the model hash (WD_CHUNK_TARGET bytes) */
    wd_piece_plan plan;
    uint8_t id[WD_HASH_SIZE];
    int zero;
    uint64_t existing; /* stored size when the store has it, else 0 */
    wd_buf enc, z;
    int codec;
} job;

/* Below this many raw bytes a chunk is compressed without asking the store
 * first whether it has it. */
#define WD_SMALL_CHUNK (64u << 10)

typedef struct {
    ZSTD_CCtx *cctx;
    wd_piece_scratch *ps;
    uint8_t *raw, *par; /* WD_CHUNK_TARGET bytes each */
} scratch;

typedef struct {
    wd_repo *repo;
    const wd_folder *folder;
    int level;
    job *jobs;
    size_t n_jobs;
    scratch *scr;
    int nworkers;
} batch_ctx;

/* One piece, on a worker: read it, rebuild the parent's piece, transform
 * it against that (or split it into planes), hash it, and compress it unless
 * the store already has that chunk. */
static int encode_job(void *ctxp, size_t i, int worker)
{
    batch_ctx *ctx = ctxp;
    job *j = &ctx->jobs[i];
    if (j->k == UINT64_MAX)
        return 0;
    scratch *s = &ctx->scr[worker];
    const wd_folder_tensor *src = j->wt->src;
    wd_dtype dt = src->t->dtype;
    size_t esz = wd__dtype_size(dt), len = j->nelem * esz;
    int rc = wd__st_read(ctx->folder->files[src->file].st, src->t, j->k * j->wt->chunk_elems * esz, j->raw, len);
    if (rc)
        return rc;
    if (j->wt->parent && (rc = wd__piece_fetch(ctx->repo, j->wt->parent, j->k, WD_PIECE_NATIVE, &j->plan)))
        return rc;
    j->enc.len = 0;
    if ((rc = wd__buf_reserve(&j->enc, len + 1)))
        return rc;
    if (j->wt->parent) {
        if ((rc = wd__piece_decode(&j->plan, s->ps, s->par)))
            return rc;
        j->zero = wd__delta_encode(j->enc.data, j->raw, s->par, j->nelem, dt);
    } else {
        wd__planes_encode(j->enc.data, j->raw, j->nelem, dt);
        j->zero = 0;
    }
    j->enc.len = len;
    wd__sha256(j->enc.data, len, j->id);
    /* Skip compressing a chunk the store already has (a re-commit costs a
     * read-transform-hash pass only). Small chunks are compressed anyway:
     * the lookup costs more than they do, and the put finds them present. */
    wd_chunkstore *cs = ctx->repo->store;
    if (len >= WD_SMALL_CHUNK && ((rc = cs->ops->stored_size(cs, j->id, &j->existing)) || j->existing))
        return rc;
    /* Multi-byte elements were split into planes of nelem bytes: compress
     * each plane on its own. */
    return wd__chunk_compress(s->cctx, ctx->level, j->enc.data, j->enc.len, esz > 1 ? j->nelem : 0, &j->z,
                              &j->codec);
}

/* Writing state shared by the whole command. */
typedef struct {
    wd_repo *repo;
    int level;
    wd_chunk_batch batch;
    const wd_options *opt;
    const char *stage;
    uint64_t done, total;
} writer;

static void progress(writer *w)
{
    if (w->opt && w->opt->progress)
        w->opt->progress(w->opt->progress_ud, w->stage, w->done, w->total);
}

/* Stores a byte stream (a shard header, a non-weight file) as raw chunks;
 * appends their ids to ids. read(arg, off, buf, len) supplies the bytes. */
static int store_stream(writer *w, scratch *s, uint64_t size,
                        int (*read)(void *arg, uint64_t off, uint8_t *buf, size_t len), void *arg, wd_buf *ids)
{
    wd_buf z = {0};
    int rc = 0;
    for (uint64_t off = 0; !rc && off < size; off += WD_CHUNK_TARGET) {
        size_t len = size - off < WD_CHUNK_TARGET ? (size_t)(size - off) : WD_CHUNK_TARGET;
        uint8_t id[WD_HASH_SIZE];
        uint64_t have = 0;
        int codec;
        if ((rc = read(arg, off, s->raw, len)))
            break;
        wd__sha256(s->raw, len, id);
        if ((rc = w->repo->store->ops->stored_size(w->repo->store, id, &have)))
            break;
        if (!have) {
            if ((rc = wd__chunk_compress(s->cctx, w->level, s->raw, len, 0, &z, &codec)))
                break;
            rc = wd__chunk_batch_put(&w->batch, id, len, codec, z.data, z.len);
        }
        if (!rc)
            rc = wd__buf_append(ids, id, WD_HASH_SIZE);
    }
    wd__buf_free(&z);
    return rc;
}

static int read_header(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
    const wd_st_file *st = arg;
    memcpy(buf, st->header + off, len);
    return 0;
}

typedef struct {
    int fd;
    const char *path;
} plain_file;

static int read_plain(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
    plain_file *pf = arg;
    while (len) {
        ssize_t n = pread(pf->fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? wd__error_errno(WD_EIO, "cannot read '%s'", pf->path)
                         : wd__error(WD_EIO, "'%s' changed size while being read", pf->path);
        buf += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static void scratch_free(scratch *scr, int n)
{
    for (int i = 0; scr && i < n; i++) {
        ZSTD_freeCCtx(scr[i].cctx);
        wd__piece_scratch_free(scr[i].ps);
        free(scr[i].raw);
        free(scr[i].par);
    }
    free(scr);
}

static void jobs_free(job *jobs, size_t n)
{
    for (size_t i = 0; jobs && i < n; i++) {
        wd__buf_free(&jobs[i].enc);
        wd__buf_free(&jobs[i].z);
        free(jobs[i].raw);
        wd__piece_plan_free(&jobs[i].plan);
    }
    free(jobs);
}

static int scratch_new(scratch **out, int n)
{
    scratch *scr = calloc((size_t)n, sizeof *scr);
    if (!scr)
        return WD_NOMEM();
    for (int i = 0; i < n; i++) {
        scr[i].cctx = ZSTD_createCCtx();
        scr[i].raw = malloc(WD_CHUNK_TARGET);
        scr[i].par = malloc(WD_CHUNK_TARGET);
        if (!scr[i].cctx || !scr[i].raw || !scr[i].par || wd__piece_scratch_new(&scr[i].ps)) {
            scratch_free(scr, n);
            return WD_NOMEM();
        }
    }
    *out = scr;
    return 0;
}

typedef struct {
    wd_buf ids;
} file_rec;

/* The delta id: SHA-256 of the canonical manifest (manifest.c). */
static int delta_id(uint8_t out[WD_HASH_SIZE], const uint8_t parent[WD_HASH_SIZE], const char *strategy,
                    const char *options, const wd_folder *f, file_rec *files, work_tensor *wts)
{
    wd_manifest m;
    wd__manifest_begin(&m, parent, strategy, options);
    for (size_t i = 0; i < f->n_files; i++)
        wd__manifest_file(&m, f->files[i].path, f->files[i].is_shard, f->files[i].size, files[i].ids.data,
                          files[i].ids.len / WD_HASH_SIZE);
    /* Tensors in name order: f->tensors is sorted, and wts parallels it. */
    for (size_t i = 0; i < f->n_tensors; i++) {
        const work_tensor *wt = &wts[i];
        const wd_st_tensor *t = wt->src->t;
        wd__manifest_tensor(&m, wt->src->name, f->files[wt->src->file].path, wt->ordinal, t->dtype, t->ndim, t->shape,
                            wt->encoding, wt->chunk_elems, wt->chunks.data, wt->chunks.len / WD_HASH_SIZE, wt->lossy);
    }
    return wd__manifest_end(&m, out);
}

/* A base folder's id when it is not the model hash's (FORMAT.md section
 * 3): SHA-256 of its description, the model hash and every file's path,
 * kind, size and content chunk ids. */
static int base_folder_id(uint8_t out[WD_HASH_SIZE], const uint8_t model_hash[WD_HASH_SIZE], const wd_folder *f,
                          const file_rec *files)
{
    wd_manifest m;
    wd__manifest_base_begin(&m, model_hash);
    for (size_t i = 0; i < f->n_files; i++)
        wd__manifest_file(&m, f->files[i].path, f->files[i].is_shard, f->files[i].size, files[i].ids.data,
                          files[i].ids.len / WD_HASH_SIZE);
    return wd__manifest_end(&m, out);
}

static int insert_object(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], const uint8_t *parent,
                         const char *strategy, const char *options, const char *message,
                         const uint8_t model_hash[WD_HASH_SIZE], const uint8_t *parent_hash,
                         const wd_folder *f, file_rec *files, work_tensor *wts, uint64_t new_bytes)
{
    sqlite3_stmt *st = NULL;
    int rc = wd__db_prepare(repo->db, &st,
                            "INSERT INTO object(id, kind, parent, strategy, options, message, created, model_hash, "
                            "parent_model_hash, n_tensors, tensor_bytes, new_bytes) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    sqlite3_bind_text(st, 2, parent ? "delta" : "base", -1, SQLITE_STATIC);
    if (parent)
        wd__bind_hash(st, 3, parent);
    sqlite3_bind_text(st, 4, strategy, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, options, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, message ? message : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)time(NULL));
    wd__bind_hash(st, 8, model_hash);
    if (parent_hash)
        wd__bind_hash(st, 9, parent_hash);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)f->n_tensors);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)f->tensor_bytes);
    sqlite3_bind_int64(st, 12, (sqlite3_int64)new_bytes);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE)
        return wd__db_error(repo->db, s, "storing object");

    if ((rc = wd__db_prepare(repo->db, &st,
                             "INSERT INTO file(object, path, is_shard, size, chunks) VALUES (?1, ?2, ?3, ?4, ?5)")))
        return rc;
    for (size_t i = 0; !rc && i < f->n_files; i++) {
        wd__bind_hash(st, 1, id);
        sqlite3_bind_text(st, 2, f->files[i].path, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, f->files[i].is_shard);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)f->files[i].size);
        sqlite3_bind_blob(st, 5, files[i].ids.data ? (const void *)files[i].ids.data : "", (int)files[i].ids.len,
                          SQLITE_STATIC);
        s = sqlite3_step(st);
        sqlite3_reset(st);
        if (s != SQLITE_DONE)
            rc = wd__db_error(repo->db, s, "storing file list");
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;

    if ((rc = wd__db_prepare(repo->db, &st,
                             "INSERT INTO tensor(object, name, file, ordinal, dtype, shape, nbytes, encoding, "
                             "chunk_elems, chunks, stored_bytes, params, rel_error, max_abs_error) "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)")))
        return rc;
    wd_buf shape = {0};
    for (size_t i = 0; !rc && i < f->n_tensors; i++) {
        const work_tensor *wt = &wts[i];
        const wd_st_tensor *t = wt->src->t;
        shape.len = 0;
        if ((rc = wd__shape_format(&shape, t->ndim, t->shape)))
            break;
        wd__bind_hash(st, 1, id);
        sqlite3_bind_text(st, 2, wt->src->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, f->files[wt->src->file].path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, wt->ordinal);
        sqlite3_bind_text(st, 5, wd__dtype_name(t->dtype), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, (const char *)shape.data, (int)shape.len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)t->nbytes);
        sqlite3_bind_text(st, 8, wt->encoding, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 9, (sqlite3_int64)wt->chunk_elems);
        sqlite3_bind_blob(st, 10, wt->chunks.data ? (const void *)wt->chunks.data : "", (int)wt->chunks.len,
                          SQLITE_STATIC);
        sqlite3_bind_int64(st, 11, (sqlite3_int64)wt->stored_bytes);
        if (wt->lossy) {
            sqlite3_bind_text(st, 12, wt->lossy->params_json, -1, SQLITE_STATIC);
            sqlite3_bind_double(st, 13, wt->rel_error);
            sqlite3_bind_double(st, 14, wt->max_abs_error);
        } else {
            sqlite3_bind_null(st, 12);
            sqlite3_bind_null(st, 13);
            sqlite3_bind_null(st, 14);
        }
        s = sqlite3_step(st);
        sqlite3_reset(st);
        if (s != SQLITE_DONE)
            rc = wd__db_error(repo->db, s, "storing tensor list");
        else if (wt->lossy)
            rc = wd__lossy_insert_arrays(repo, id, wt->src->name, wt->lossy);
    }
    wd__buf_free(&shape);
    sqlite3_finalize(st);
    return rc;
}

static int object_exists(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], int *out, uint64_t *stored)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st,
                            "SELECT (SELECT coalesce(sum(stored_bytes), 0) FROM tensor WHERE object = ?1) "
                            "FROM object WHERE id = ?1");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    int s = sqlite3_step(st);
    *out = s == SQLITE_ROW;
    if (*out && stored)
        *stored = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return (s == SQLITE_ROW || s == SQLITE_DONE) ? 0 : wd__db_error(repo->db, s, "looking up object");
}

/* Which base object the folder (model hash model_hash, description
 * folder_id) is or becomes, inside the final transaction so concurrent
 * add-bases agree: the object folder_id if stored; else the object
 * model_hash if stored with exactly these files (*exists set, as for the
 * former); else a new object, id model_hash while that is free (the first
 * folder stored with some weights, and every base before folder ids),
 * folder_id otherwise. */
static int find_base(wd_repo *repo, const uint8_t model_hash[WD_HASH_SIZE], const uint8_t folder_id[WD_HASH_SIZE],
                     uint8_t id[WD_HASH_SIZE], int *exists, uint64_t *stored)
{
    memcpy(id, folder_id, WD_HASH_SIZE);
    int rc = object_exists(repo, folder_id, exists, stored);
    if (rc || *exists)
        return rc;
    if ((rc = object_exists(repo, model_hash, exists, stored)))
        return rc;
    if (!*exists) {
        memcpy(id, model_hash, WD_HASH_SIZE);
        return 0;
    }
    uint8_t theirs[WD_HASH_SIZE];
    if ((rc = wd__manifest_base_stored(repo, model_hash, model_hash, theirs)))
        return rc;
    if (!memcmp(theirs, folder_id, WD_HASH_SIZE))
        memcpy(id, model_hash, WD_HASH_SIZE);
    else
        *exists = 0;
    return 0;
}

/* An object found already stored by a command that stored chunks anyway
 * (it raced an identical one, which got its final transaction in first):
 * those chunks are the object's, so they count in its new_bytes, and the
 * command reports 0 as "already present" says. */
static int credit_new_bytes(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], uint64_t bytes)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st, "UPDATE object SET new_bytes = new_bytes + ?2 WHERE id = ?1");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)bytes);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? 0 : wd__db_error(repo->db, s, "recording new bytes");
}

/* Where the next batch starts: tensor wts[ti], piece next_k. */
typedef struct {
    work_tensor *wts;
    size_t n_tensors, ti;
    uint64_t next_k;
    int hashing;   /* empty tensors get a job too, for their names */
} fill_state;

/* Fills b with the next pieces, tensors in name order: the model hash
 * takes them in that order, so the calling thread hashes each finished
 * batch as it stores it, with no second read of the model. (File order
 * would read more sequentially, but page-cache preads barely care, and the
 * hash would then need a read of its own.) */
static void fill_batch(fill_state *fs, batch_ctx *b, size_t cap, size_t big_cap)
{
    b->n_jobs = 0;
    while (b->n_jobs < cap && fs->ti < fs->n_tensors) {
        work_tensor *wt = &fs->wts[fs->ti];
        /* Lossy tensors are encoded afterwards, by the codecs. */
        uint64_t nelem = wt->lossy_pending ? 0 : wt->src->t->nelem;
        uint64_t npieces = (nelem + wt->chunk_elems - 1) / wt->chunk_elems;
        if (fs->next_k == 0 && npieces == 0 && fs->hashing) {
            job *j = &b->jobs[b->n_jobs++];
            j->wt = wt;
            j->k = UINT64_MAX;
            j->nelem = 0;
            j->existing = 0;
        }
        if (fs->next_k >= npieces) {
            fs->ti++;
            fs->next_k = 0;
            continue;
        }
        uint64_t left = nelem - fs->next_k * wt->chunk_elems;
        size_t n = (size_t)(left < wt->chunk_elems ? left : wt->chunk_elems);
        /* Only the first big_cap job slots ever hold a big piece, so the
         * buffers of the others stay small (see the caller). */
        if (n * wd__dtype_size(wt->src->t->dtype) > WD_SMALL_CHUNK && b->n_jobs >= big_cap)
            break;
        job *j = &b->jobs[b->n_jobs++];
        j->wt = wt;
        j->k = fs->next_k++;
        j->nelem = n;
        j->existing = 0;
    }
}

/* Lossy strategies encode float tensors the parent also has, same dtype and
 * shape; everything else is stored losslessly. */
static int lossy_candidate(const wd_st_tensor *t, const wd_stored_tensor *pt)
{
    return pt && t->nelem > 0 && wd__dtype_is_float(t->dtype) && wd__f32_convertible(t->dtype) &&
           pt->dtype == t->dtype && pt->ndim == t->ndim &&
           !memcmp(pt->shape, t->shape, sizeof(uint64_t) * (size_t)t->ndim);
}

/* The model hash of a lossy commit: what checkout will write, every tensor
 * in name order (the folder's order), its name then its native bytes,
 * computed as the tensors are encoded so the write lock is never held while
 * hashing and nothing is decoded twice. A tensor stored exactly contributes
 * the fine-tune's own bytes, read again from its file (the page cache has
 * them); a lossy one its reconstruction, handed over by the encoder as it
 * rebuilds it from the arrays it just made (int4, quantized; sparse and
 * lowbit are sealed from the store, below). Only the model hash: the float32 chain hash (what a
 * deltatensors file built on this delta names as parent_hash) is for a rare
 * use, and import and export compute it on the pool when a file needs it. */
typedef struct {
    wd_sha256 *h;
    size_t next;              /* tensors before it are hashed */
    const char *pending_name; /* hashed before the first bytes handed over */
    uint8_t *buf;             /* SEAL_READ bytes */
} lossy_seal;

/* Reads of exact tensors for the hash: small, as the largest tensor's
 * encoding sets the commit's peak memory. */
#define SEAL_READ ((size_t)256 << 10)

static int seal_exact_until(lossy_seal *ls, const wd_folder *f, const work_tensor *wts, size_t end)
{
    for (; ls->next < end; ls->next++) {
        const work_tensor *wt = &wts[ls->next];
        const wd_st_tensor *t = wt->src->t;
        wd__thash_name(ls->h, wt->src->name);
        for (uint64_t off = 0; off < t->nbytes; off += SEAL_READ) {
            size_t len = (size_t)(t->nbytes - off < SEAL_READ ? t->nbytes - off : SEAL_READ);
            int rc = wd__st_read(f->files[wt->file_index].st, t, off, ls->buf, len);
            if (rc)
                return rc;
            wd__sha256_update(ls->h, ls->buf, len);
        }
    }
    return 0;
}

static int seal_recon(void *ud, const uint8_t *native, size_t nbytes)
{
    lossy_seal *ls = ud;
    if (ls->pending_name) {
        wd__thash_name(ls->h, ls->pending_name);
        ls->pending_name = NULL;
    }
    wd__sha256_update(ls->h, native, nbytes);
    return 0;
}

/* The model hash of a sparse or lowbit commit, computed from the stored
 * chunks (all committed by now) before the final transaction, so the write
 * lock is never held while decoding: the object is assembled in memory from
 * the work, its tensors borrowing the work's chunks and arrays. (Both store
 * their arrays as they make them, so they are not at hand to rebuild from.) */
static int seal_before_insert(wd_repo *repo, wd_pool *pool, const wd_folder *f, work_tensor *wts,
                              uint8_t model_hash[WD_HASH_SIZE])
{
    wd_object obj;
    memset(&obj, 0, sizeof obj);
    obj.n_tensors = f->n_tensors;
    obj.tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *obj.tensors);
    int rc = obj.tensors ? 0 : WD_NOMEM();
    for (size_t i = 0; !rc && i < f->n_tensors; i++) {
        wd_stored_tensor *t = &obj.tensors[i];
        const work_tensor *wt = &wts[i];
        const wd_st_tensor *st = wt->src->t;
        if (!(t->name = strdup(wt->src->name))) {
            rc = WD_NOMEM();
            break;
        }
        t->dtype = st->dtype;
        t->ndim = st->ndim;
        memcpy(t->shape, st->shape, sizeof(uint64_t) * (size_t)st->ndim);
        t->nelem = st->nelem;
        t->nbytes = st->nbytes;
        snprintf(t->encoding, sizeof t->encoding, "%s", wt->encoding);
        t->chunk_elems = wt->chunk_elems;
        t->chunks = wt->chunks.data;
        t->n_chunks = wt->chunks.len / WD_HASH_SIZE;
        t->lossy = wt->lossy;
        t->parent = wt->parent;
    }
    if (!rc)
        rc = wd__object_walk(repo, &obj, &(wd_walk_opts){.pool = pool}, model_hash, NULL, NULL);
    for (size_t i = 0; obj.tensors && i < f->n_tensors; i++)
        free(obj.tensors[i].name);
    free(obj.tensors);
    return rc;
}

/* Progress inside a lossy tensor, by the pieces of the delta read: a
 * tensor of the cache's size is read once, a bigger one once per codec
 * pass (the embedding alone is a quarter of a 0.5B model). */
typedef struct {
    writer *w;
    uint64_t base, nbytes, nelem;
    unsigned reads; /* reads of the tensor the encoding makes */
    unsigned step;  /* 64ths of the tensor reported so far: at most 64 calls a tensor */
} lossy_progress;

static unsigned lossy_passes(int strategy)
{
    /* a histogram pass (the top-k cut's second one is usually saved, see
     * wd__topk_plan), then the codec's own */
    return strategy == WD__WS_QUANTIZED ? 1 : strategy == WD__WS_SPARSE ? 2 : 3;
}

static void lossy_progress_fn(void *ud, uint64_t elems_read)
{
    lossy_progress *lp = ud;
    double frac = lp->nelem ? (double)elems_read / ((double)lp->nelem * lp->reads) : 1.0;
    unsigned step = frac >= 1.0 ? 64 : (unsigned)(frac * 64);
    if (step <= lp->step)
        return;
    lp->step = step;
    uint64_t add = frac >= 1.0 ? lp->nbytes : (uint64_t)(frac * (double)lp->nbytes);
    if (add >= lp->nbytes && lp->nbytes)
        add = lp->nbytes - 1; /* the tensor's end is reported when it is stored */
    if (lp->base + add > lp->w->done) {
        lp->w->done = lp->base + add;
        progress(lp->w);
    }
}

/* wd_lossy_sink.flush */
static int flush_batch(void *batch) { return wd__chunk_batch_flush(batch); }

/* The shared body of add-base (parent == NULL) and commit. */

static int store_folder(wd_repo *repo, const char *dir, wd_object *parent, const char *name,
                        const char *message, int lossy_strategy, double lossy_option, const char *options_json,
                        const wd_folder_filter *filter, const wd_options *opt, wd_write_result *res)
{
    if (repo->readonly)
        return wd__error(WD_EUSAGE, "repository is open read-only");
    if (name && !wd__name_valid(name))
        return wd__error(WD_EUSAGE,
                         "invalid name '%s': use letters, digits and ._-+/ (not 4+ hex digits alone, no leading '-' or '.')",
                         name);
    wd_folder *f = NULL;
    int rc = wd__folder_open_excluding(&f, dir, 0, filter ? filter->exclude : NULL, filter ? filter->n_exclude : 0,
                                       repo->dir);
    if (rc)
        return rc;

    writer w = {0};
    w.repo = repo;
    w.batch.cs = repo->store;
    w.level = opt && opt->level ? opt->level : WD_DEFAULT_LEVEL;
    w.opt = opt;
    w.stage = parent ? "commit" : "add-base";
    w.total = f->tensor_bytes;

    wd_pool *pool = NULL;
    scratch *scr = NULL;
    work_tensor *wts = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *wts);
    file_rec *files = calloc(f->n_files, sizeof *files);
    job *jobs = NULL;
    wd_sha256 *model_hasher = NULL;
    uint8_t model_hash[WD_HASH_SIZE];
    size_t batch_cap = 0;
    if (!wts || !files) {
        rc = WD_NOMEM();
        goto done;
    }
    if ((rc = wd__pool_new(&pool, opt ? opt->threads : 0)))
        goto done;
    int nworkers = wd__pool_size(pool);
    if ((rc = scratch_new(&scr, nworkers)))
        goto done;
    /* A batch holds two big pieces per worker slot, which keeps everyone
     * busy while bounding memory to about 4 x slots x (raw + encoded +
     * compressed) MiB; pieces of at most WD_SMALL_CHUNK bytes fill up to 64
     * slots, so a model of many tiny tensors does not pay a pool round trip
     * per couple of them (the raw buffers are allocated at 1 MiB, but slots
     * past the big ones only ever touch 64 KiB of theirs). */
    batch_cap = 64;
    size_t big_cap = (size_t)nworkers * 2 < 64 ? (size_t)nworkers * 2 : 64;
    if (!(jobs = calloc(2 * batch_cap, sizeof *jobs))) {
        rc = WD_NOMEM();
        goto done;
    }
    for (size_t i = 0; i < 2 * batch_cap; i++)
        if (!(jobs[i].raw = malloc(WD_CHUNK_TARGET))) {
            rc = WD_NOMEM();
            goto done;
        }
    /* A lossy delta's model hash is that of its reconstruction (sealed
     * below); the fine-tune's own is needed only when it is stored exactly,
     * and then comes from the pieces as they are stored. */
    if (lossy_strategy < 0 && (rc = wd__sha256_new(&model_hasher)))
        goto done;

    /* Decide each tensor's encoding; order them as the files store them. */
    for (size_t i = 0; i < f->n_tensors; i++) {
        work_tensor *wt = &wts[i];
        wt->src = &f->tensors[i];
        wt->file_index = f->tensors[i].file;
        const wd_st_file *st = f->files[wt->file_index].st;
        wt->ordinal = wt->src->t - st->tensors;
        wt->chunk_elems = wd__chunk_elems(wt->src->t->dtype);
        wt->all_zero = 1;
        wt->encoding = "planes";
        if (parent) {
            long j = wd__object_find(parent, wt->src->name);
            if (j >= 0) {
                wd_stored_tensor *pt = &parent->tensors[j];
                const wd_st_tensor *t = wt->src->t;
                int same_shape = pt->dtype == t->dtype && pt->ndim == t->ndim &&
                                 !memcmp(pt->shape, t->shape, sizeof(uint64_t) * (size_t)t->ndim);
                if (same_shape) {
                    wt->parent = pt;
                    wt->encoding = "delta-planes";
                }
                if (lossy_strategy >= 0 && lossy_candidate(t, pt)) {
                    wt->lossy_pending = 1;
                    wt->encoding = wd__lossy_encoding(lossy_strategy);
                }
            }
            if (wt->parent)
                res->n_encoded++;
            else
                res->n_whole++;
            res->n_reshaped += j >= 0 && !wt->parent;
        }
    }

    /* Two batches alternate: while the workers encode one, this thread
     * fetches the parent chunks of the next and stores the previous. */
    batch_ctx bc[2] = {{repo, f, w.level, jobs, 0, scr, nworkers},
                       {repo, f, w.level, jobs + batch_cap, 0, scr, nworkers}};
    fill_state fs = {wts, f->n_tensors, 0, 0, model_hasher != NULL};
    int cur = 0;
    fill_batch(&fs, &bc[cur], batch_cap, big_cap);
    if (bc[cur].n_jobs)
        wd__pool_start(pool, bc[cur].n_jobs, encode_job, &bc[cur]);
    while (!rc && bc[cur].n_jobs) {
        int nxt = !cur;
        fill_batch(&fs, &bc[nxt], batch_cap, big_cap);
        if ((rc = wd__pool_wait(pool)))
            break;
        if (bc[nxt].n_jobs)
            wd__pool_start(pool, bc[nxt].n_jobs, encode_job, &bc[nxt]);
        /* Meanwhile: store this batch and feed it to the model hash. */
        for (size_t i = 0; model_hasher && i < bc[cur].n_jobs; i++) {
            const job *j = &bc[cur].jobs[i];
            if (j->k == 0 || j->k == UINT64_MAX)
                wd__thash_name(model_hasher, j->wt->src->name);
            if (j->k != UINT64_MAX)
                wd__sha256_update(model_hasher, j->raw, j->nelem * wd__dtype_size(j->wt->src->t->dtype));
        }
        for (size_t i = 0; !rc && i < bc[cur].n_jobs; i++) {
            job *j = &bc[cur].jobs[i];
            if (j->k == UINT64_MAX)
                continue;
            if (!j->existing) {
                rc = wd__chunk_batch_put(&w.batch, j->id, j->enc.len, j->codec, j->z.data, j->z.len);
                j->wt->stored_bytes += j->z.len;
            } else {
                j->wt->stored_bytes += j->existing;
            }
            if (!rc)
                rc = wd__buf_append(&j->wt->chunks, j->id, WD_HASH_SIZE);
            if (!j->zero)
                j->wt->all_zero = 0;
            w.done += j->enc.len;
        }
        /* An open group keeps the write lock while the workers encode the
         * next batch: commit it once it has been open a few milliseconds. */
        if (!rc)
            rc = wd__chunk_batch_tick(&w.batch);
        progress(&w);
        if (rc) {
            wd__pool_wait(pool);
            break;
        }
        cur = nxt;
    }

    /* The batches' buffers are done with; the lossy encoder allocates its
     * own, and their pages counted on top of its peak. */
    jobs_free(jobs, 2 * batch_cap);
    jobs = NULL;

    /* Non-weight files and shard headers, byte for byte. */
    for (size_t i = 0; !rc && i < f->n_files; i++) {
        wd_folder_file *ff = &f->files[i];
        if (ff->is_shard) {
            rc = store_stream(&w, &scr[0], ff->st->header_len, read_header, ff->st, &files[i].ids);
        } else {
            char *full = NULL;
            if (asprintf(&full, "%s/%s", f->dir, ff->path) < 0) {
                rc = WD_NOMEM();
                break;
            }
            plain_file pf = {open(full, O_RDONLY | O_CLOEXEC), full};
            if (pf.fd < 0)
                rc = wd__error_errno(WD_EIO, "cannot open '%s'", full);
            else
                rc = store_stream(&w, &scr[0], ff->size, read_plain, &pf, &files[i].ids);
            if (pf.fd >= 0)
                close(pf.fd);
            free(full);
        }
    }
    /* Lossy tensors, one after the other: the codecs make their passes over
     * the delta, and their arrays become chunk streams. */
    void **cctxs = lossy_strategy >= 0 ? calloc((size_t)nworkers, sizeof *cctxs) : NULL;
    for (int i = 0; cctxs && i < nworkers; i++)
        cctxs[i] = scr[i].cctx;
    wd_lossy_sink sink = {repo->store, wd__chunk_batch_put, &w.batch, scr ? scr[0].cctx : NULL, w.level, cctxs,
                          flush_batch};
    wd_lossy_encoder *enc = NULL;
    lossy_progress lp = {&w, 0, 0, 0, 1, 0};
    lossy_seal ls = {NULL, 0, NULL, NULL};
    int incremental =
        lossy_strategy == WD__WS_INT4 || lossy_strategy == WD__WS_QUANTIZED || lossy_strategy == WD__WS_SPARSE;
    if (!rc && incremental && !(rc = wd__sha256_new(&ls.h)) && !(ls.buf = malloc(SEAL_READ)))
        rc = WD_NOMEM();
    for (size_t i = 0; !rc && i < f->n_tensors; i++) {
        work_tensor *wt = &wts[i];
        if (!wt->lossy_pending)
            continue;
        wd_codec_fidelity fid;
        memset(&fid, 0, sizeof fid);
        if (!enc && (rc = wd__lossy_encoder_new(&enc, repo, f, pool, lossy_progress_fn, &lp)))
            break;
        if (incremental && (rc = seal_exact_until(&ls, f, wts, i)))
            break;
        lp.base = w.done;
        lp.nbytes = wt->src->t->nbytes;
        lp.nelem = wt->src->t->nelem;
        lp.reads = wt->src->t->nelem <= WD_LOSSY_CACHE_ELEMS ? 1 : lossy_passes(lossy_strategy);
        lp.step = 0;
        int rebuilt = 0;
        ls.pending_name = wt->src->name;
        rc = wd__lossy_encode_tensor(enc, wt->src, wt->parent, lossy_strategy, lossy_option, &sink, &wt->lossy, &fid,
                                     incremental ? seal_recon : NULL, &ls, &rebuilt);
        if (!rc && incremental && !rebuilt)
            rc = wd__error(WD_ERROR, "internal: tensor '%s' was not rebuilt for the model hash", wt->src->name);
        if (!rc)
            rc = wd__chunk_batch_flush(&w.batch);
        ls.next = i + 1;
        if (!rc)
            rc = wd__lossy_params(wt->lossy, NULL, 0, &wt->lossy->params_json);
        if (rc)
            break;
        wt->rel_error = fid.rel_error;
        wt->max_abs_error = fid.max_abs_error;
        wt->all_zero = 0;
        for (int fi = 0; fi < WD__WF__COUNT; fi++)
            wt->stored_bytes += wt->lossy->arrays[fi].stored_bytes;
        w.done = lp.base + wt->src->t->nbytes;
        progress(&w);
    }
    wd__lossy_encoder_free(enc);
    free(cctxs);
    if (!rc)
        rc = wd__chunk_batch_flush(&w.batch);
    if (!rc && incremental && !(rc = seal_exact_until(&ls, f, wts, f->n_tensors)))
        wd__sha256_final(ls.h, model_hash);
    wd__sha256_free(ls.h);
    free(ls.buf);

    if (rc)
        goto done;
    if (model_hasher)
        wd__sha256_final(model_hasher, model_hash);

    /* Unchanged tensors keep no chunks: they read through to the parent. */
    for (size_t i = 0; parent && i < f->n_tensors; i++) {
        work_tensor *wt = &wts[i];
        if (wt->parent && wt->all_zero && !wt->lossy) {
            wt->encoding = "same";
            wt->chunks.len = 0;
            wt->stored_bytes = 0;
            res->n_unchanged++;
            res->n_encoded--;
        }
    }
    if (parent) {
        res->n_parent_tensors = parent->n_tensors;
        for (size_t i = 0; i < parent->n_tensors; i++)
            if (wd__folder_find(f, parent->tensors[i].name) < 0)
                res->n_dropped++;
    }

    /* A delta's id is its manifest's hash. A base's is decided in the final
     * transaction (find_base): its model hash, or its folder id. */
    uint8_t id[WD_HASH_SIZE], folder_id[WD_HASH_SIZE];
    const char *strategy = !parent ? "base" : lossy_strategy >= 0 ? wd__lossy_encoding(lossy_strategy) : "lossless";
    if (parent)
        rc = delta_id(id, parent->id, strategy, options_json, f, files, wts);
    else
        rc = base_folder_id(folder_id, model_hash, f, files);
    if (rc)
        goto done;

    if (lossy_strategy >= 0 && !incremental && (rc = seal_before_insert(repo, pool, f, wts, model_hash)))
        goto done;

    res->n_tensors = f->n_tensors;
    res->tensor_bytes = f->tensor_bytes;
    wd__hex(res->model_hash, model_hash);
    for (size_t i = 0; i < f->n_tensors; i++)
        res->stored_bytes += wts[i].stored_bytes;

    if ((rc = wd__db_exec(repo->db, "BEGIN IMMEDIATE")))
        goto done;
    int exists = 0;
    uint64_t old_stored = 0;
    if (parent)
        rc = object_exists(repo, id, &exists, &old_stored);
    else
        rc = find_base(repo, model_hash, folder_id, id, &exists, &old_stored);
    if (!rc && exists && w.batch.new_bytes)
        rc = credit_new_bytes(repo, id, w.batch.new_bytes);
    if (!rc && !exists)
        rc = insert_object(repo, id, parent ? parent->id : NULL, strategy, options_json, message, model_hash,
                           parent ? parent->model_hash : NULL, f, files, wts, w.batch.new_bytes);
    /* A lossy delta reconstructs to other weights than the fine-tune's:
     * record the hashes of what checkout will write. */
    if (!rc && !exists && lossy_strategy >= 0)
        rc = wd__object_set_hashes(repo, id, model_hash, NULL);
    if (!rc && name)
        rc = wd__name_set_was(repo, name, id, res->name_was);
    if (rc) {
        sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
        goto done;
    }
    if ((rc = wd__db_commit(repo->db)))
        goto done;
    wd__hex(res->id, id);
    res->already_present = exists;
    if (exists)
        res->stored_bytes = old_stored;
    res->new_bytes = exists ? 0 : w.batch.new_bytes;
    w.done = w.total;
    progress(&w);

done:
    wd__sha256_free(model_hasher);
    wd__chunk_batch_abort(&w.batch);
    rc = wd__gc_after_failure(repo, rc, w.batch.new_bytes);
    jobs_free(jobs, 2 * batch_cap);
    for (size_t i = 0; wts && i < f->n_tensors; i++) {
        wd__buf_free(&wts[i].chunks);
        wd__lossy_free(wts[i].lossy);
    }
    for (size_t i = 0; files && i < f->n_files; i++)
        wd__buf_free(&files[i].ids);
    free(files);
    free(wts);
    scratch_free(scr, pool ? wd__pool_size(pool) : 0);
    wd__pool_free(pool);
    wd__folder_close(f);
    return rc;
}

int wd_add_base(wd_repo *repo, const char *dir, const char *name, const wd_options *opt, wd_write_result *out)
{
    return wd_add_base_ex(repo, dir, name, NULL, opt, out);
}

int wd_add_base_ex(wd_repo *repo, const char *dir, const char *name, const wd_folder_filter *ff,
                   const wd_options *opt, wd_write_result *out)
{
    wd_write_result res;
    memset(&res, 0, sizeof res);
    int rc = store_folder(repo, dir, NULL, name, NULL, -1, 0, "{}", ff, opt, &res);
    if (!rc && out)
        *out = res;
    return rc;
}

int wd_commit(wd_repo *repo, const char *ft_dir, const char *parent_ref, const wd_commit_opts *copt,
              const wd_options *opt, wd_write_result *out)
{
    /* One reading of the options for every command (strategy.c): an
     * explicit value is never replaced by a default. */
    wd_strategy_opts so = {0};
    if (copt)
        so = (wd_strategy_opts){copt->strategy, copt->sparsity, copt->outlier_fraction, copt->set, copt->quality};
    wd__strategy st;
    int rc = wd__strategy_resolve(&st, &so, "lossless", 0);
    if (rc)
        return rc;
    int lossy = st.strategy == WD__STRATEGY_LOSSLESS ? -1 : st.strategy;
    double option = st.option;
    const char *options = st.options_json;
    uint8_t pid[WD_HASH_SIZE];
    rc = wd__resolve(repo, parent_ref, pid);
    if (rc)
        return rc;
    wd_object *parent;
    if ((rc = wd__object_load(repo, pid, &parent)))
        return rc;
    wd_write_result res;
    memset(&res, 0, sizeof res);
    rc = store_folder(repo, ft_dir, parent, copt ? copt->name : NULL, copt ? copt->message : NULL, lossy, option,
                      options, copt ? &(wd_folder_filter){copt->exclude, copt->n_exclude} : NULL, opt, &res);
    wd__object_free(parent);
    wd__hex(res.parent, pid);
    snprintf(res.strategy, sizeof res.strategy, "%s", lossy < 0 ? "lossless" : wd__lossy_encoding(lossy));
    if (!rc && out)
        *out = res;
    return rc;
}
