/*
 * import.c - `wdrepo import FILE.wdelta`: a deltatensors file becomes a
 * lossy delta in the repository.
 *
 * The parent is found by the file's parent_hash, which covers exactly the
 * tensors the file names: each stored object that has those tensors (same
 * element counts) is hashed restricted to them, natively (a base: v2 in
 * name order, v1 in the file's record order) or as its float32
 * reconstruction (a chain link's parent). The new delta takes its parent's
 * folder layout; tensors the file does not name pass through ("same").
 * Arrays are copied from the file in 1 MiB pieces, their indices checked on
 * the way, into array streams (arraystream.c), so memory stays bounded
 * whatever the file's size. The new delta's model hash is the parent's
 * walk with the file's delta added (hash_with_file), beside the copy when
 * there is more than one thread; the file's checksum is checked on a
 * thread of its own meanwhile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include <cjson/cJSON.h>

#include "db.h"
#include "error.h"
#include "hash.h"
#include "lossy.h"
#include "manifest.h"
#include "piece.h"
#include "pipeline.h"
#include "repo_int.h"
#include "sidejob.h"
#include "spool.h"
#include "wdelta.h"
#include "wdelta_decode.h"

/* The names the parent_hash covers, in its order. */
static const char **hash_order(const wd__wdelta *d)
{
    size_t n = wd__wdelta_count(d);
    const char **names = calloc(n ? n : 1, sizeof *names);
    if (!names)
        return NULL;
    for (size_t i = 0; i < n; i++)
        names[i] = (wd__wdelta_version(d) == 1 ? wd__wdelta_tensor_by_record(d, i) : wd__wdelta_tensor_at(d, i))->name;
    return names;
}

/* 1 if obj has every tensor of the file with the same element count. */
static int covers(const wd_object *obj, const wd__wdelta *d)
{
    for (size_t i = 0; i < wd__wdelta_count(d); i++) {
        const wd__wdelta_tensor *t = wd__wdelta_tensor_at(d, i);
        long j = wd__object_find(obj, t->name);
        if (j < 0 || obj->tensors[j].nelem != t->n || !wd__f32_convertible(obj->tensors[j].dtype))
            return 0;
    }
    return 1;
}

static int has_lossy(const wd_object *obj)
{
    for (size_t i = 0; i < obj->n_tensors; i++)
        if (obj->tensors[i].lossy)
            return 1;
    return 0;
}

/* 1 if names is exactly the sequence of obj's tensors (name order) that a
 * recorded hash covers: every tensor for the model hash, the lossy ones for
 * the float32 hash. Then that hash is the one find_parent would compute. */
static int names_are_recorded(const wd_object *obj, const char *const *names, size_t n, int lossy_only)
{
    size_t k = 0;
    for (size_t i = 0; i < obj->n_tensors; i++) {
        if (lossy_only && !obj->tensors[i].lossy)
            continue;
        if (k >= n || strcmp(obj->tensors[i].name, names[k]))
            return 0;
        k++;
    }
    return k == n;
}

/* Keeps the float32 hash of a lossy object's encoded tensors (what a chain
 * link on it names as parent_hash), computed here because a file needed it,
 * so the next chain link on the same object finds it without a rebuild.
 * Commits and imports do not compute it up front: two more bytes to hash
 * for every byte of the model (float32), for the few deltas that become
 * chain parents. A failure only loses the shortcut. */
static void record_f32_hash(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], const uint8_t f32_hash[WD_HASH_SIZE])
{
    sqlite3_stmt *st = NULL;
    int rc = wd__db_exec(repo->db, "BEGIN IMMEDIATE");
    if (!rc && !(rc = wd__db_prepare(repo->db, &st, "UPDATE object SET f32_hash = ?1 WHERE id = ?2 AND f32_hash IS NULL"))) {
        wd__bind_hash(st, 1, f32_hash);
        wd__bind_hash(st, 2, id);
        rc = wd__db_step(repo->db, st, "recording a chain hash") < 0;
    }
    sqlite3_finalize(st);
    if (!rc)
        rc = wd__db_commit(repo->db);
    if (rc)
        sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
    wd__error_clear();
}

/* Finds the object the file applies to; *out is loaded with its lineage.
 * Candidates are tried in a fixed order (recorded chain hash match first,
 * then the base whose id is parent_hash, then bases, newest first; several
 * bases may hold the same weights with other files, FORMAT.md section 3,
 * and the first folder stored keeps that id) and the first whose hash over the file's
 * tensors is parent_hash wins. When the file names exactly the tensors a
 * recorded hash of the object covers, in its order, that recorded hash
 * decides without a read; otherwise the object is rebuilt on the pool.
 * A candidate whose stored data turns out damaged cannot be ruled out: the
 * search goes on (another object may match), and if none does, the damage
 * is what the caller hears, not "add its base first" for a base that is
 * stored. */
static int find_parent(wd_repo *repo, wd_pool *pool, const wd__wdelta *d, wd_object **out)
{
    uint8_t want[WD_HASH_SIZE];
    if (wd__unhex(want, wd__wdelta_parent_hash(d)))
        return wd__error(WD_EBADINPUT, "parent_hash is not 64 hex digits");
    const char **names = hash_order(d);
    if (!names)
        return WD_NOMEM();
    size_t n_names = wd__wdelta_count(d);
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st,
                            "SELECT id, f32_hash FROM object ORDER BY f32_hash IS NOT ?1, id IS NOT ?1, kind = 'delta', created DESC");
    if (!rc)
        wd__bind_hash(st, 1, want);
    int found = 0, row = 0, record = 0;
    char damage[1024] = ""; /* the first damaged candidate's message */
    while (!rc && !found && (row = wd__db_step(repo->db, st, "looking for the parent")) > 0) {
        if (sqlite3_column_bytes(st, 0) != WD_HASH_SIZE)
            continue;
        uint8_t id[WD_HASH_SIZE], f32_hash[WD_HASH_SIZE];
        memcpy(id, sqlite3_column_blob(st, 0), WD_HASH_SIZE);
        int have_f32 = sqlite3_column_bytes(st, 1) == WD_HASH_SIZE;
        if (have_f32)
            memcpy(f32_hash, sqlite3_column_blob(st, 1), WD_HASH_SIZE);
        wd_object *obj = NULL;
        rc = wd__object_load(repo, id, &obj);
        if (!rc && covers(obj, d)) {
            uint8_t h[WD_HASH_SIZE];
            /* A lossy object is a chain link's parent: deltatensors hashes
             * its float32 reconstruction. Otherwise its stored weights. */
            int lossy = has_lossy(obj);
            if (lossy && have_f32 && names_are_recorded(obj, names, n_names, 1))
                memcpy(h, f32_hash, WD_HASH_SIZE);
            else if (!lossy && names_are_recorded(obj, names, n_names, 0))
                memcpy(h, obj->model_hash, WD_HASH_SIZE);
            else if (lossy)
                rc = wd__object_walk(repo, obj, &(wd_walk_opts){.names = names, .n_names = n_names, .pool = pool},
                                     NULL, h, NULL);
            else
                rc = wd__object_walk(repo, obj, &(wd_walk_opts){.names = names, .n_names = n_names, .pool = pool},
                                     h, NULL, NULL);
            if (!rc && !memcmp(h, want, WD_HASH_SIZE)) {
                *out = obj;
                found = 1;
                record = lossy && !have_f32 && names_are_recorded(obj, names, n_names, 1);
                continue;
            }
        }
        if (rc == WD_ECORRUPT) {
            if (!damage[0])
                snprintf(damage, sizeof damage, "%s", wd_errmsg());
            rc = 0;
        }
        wd__object_free(obj);
    }
    if (!rc && row < 0)
        rc = row;
    sqlite3_finalize(st);
    free(names);
    if (!rc && found && record)
        record_f32_hash(repo, (*out)->id, want);
    if (!rc && !found && damage[0])
        rc = wd__error(WD_ECORRUPT, "no intact stored model matches the file's parent_hash %.12s, and one could "
                       "not be checked: %s", wd__wdelta_parent_hash(d), damage);
    else if (!rc && !found)
        rc = wd__error(WD_ENOTFOUND,
                       "no stored model matches the file's parent_hash %.12s; add its base first (wdrepo add-base)",
                       wd__wdelta_parent_hash(d));
    return rc;
}

/* Array chunks on their way from the file to the store. The calling thread
 * reads and checks them in file order into one batch while the pool
 * transforms, hashes and compresses the previous one; a batch is then
 * stored in order, in one short transaction of inserts. Memory: two
 * batches of cap chunks, each its raw, transformed and compressed forms
 * (about 3 MiB). */
typedef struct {
    wd_astream_writer *w; /* touched on the calling thread only */
    wd_dtype dtype;
    int transform;
    uint8_t *raw; /* WD_ASTREAM_CHUNK bytes */
    size_t len;
    wd_astream_chunk c;
} cjob;

typedef struct chunk_pipe chunk_pipe;
typedef struct {
    chunk_pipe *p;
    cjob *jobs;
} cbatch;

struct chunk_pipe {
    wd_pool *pool;
    wd_chunk_batch *batch;
    void **cctx; /* one ZSTD_CCtx per worker slot */
    int nslots;
    cbatch b[2];
    size_t cap, n[2];
    int cur, running;
    const wd_options *opt; /* progress: array bytes read from the file */
    uint64_t done, total;
};

static int prepare_job(void *ctx, size_t i, int worker)
{
    cbatch *b = ctx;
    cjob *j = &b->jobs[i];
    return wd__astream_chunk_prepare(&j->c, j->dtype, j->transform, b->p->cctx[worker], WD_DEFAULT_LEVEL, j->raw,
                                     j->len);
}

static int pipe_init(chunk_pipe *p, wd_pool *pool, wd_chunk_batch *batch)
{
    memset(p, 0, sizeof *p);
    p->pool = pool;
    p->batch = batch;
    p->nslots = wd__pool_size(pool);
    p->cap = 2 * (size_t)p->nslots;
    cjob *jobs = calloc(2 * p->cap, sizeof *jobs);
    p->cctx = calloc((size_t)p->nslots, sizeof *p->cctx);
    p->b[0] = (cbatch){p, jobs};
    p->b[1] = (cbatch){p, jobs ? jobs + p->cap : NULL};
    if (!jobs || !p->cctx)
        return WD_NOMEM();
    for (int i = 0; i < p->nslots; i++)
        if (!(p->cctx[i] = ZSTD_createCCtx()))
            return WD_NOMEM();
    for (size_t i = 0; i < 2 * p->cap; i++)
        if (!(jobs[i].raw = malloc(WD_ASTREAM_CHUNK)))
            return WD_NOMEM();
    return 0;
}

static void pipe_free(chunk_pipe *p)
{
    if (p->running)
        wd__pool_wait(p->pool);
    for (size_t i = 0; p->b[0].jobs && i < 2 * p->cap; i++) {
        free(p->b[0].jobs[i].raw);
        wd__astream_chunk_free(&p->b[0].jobs[i].c);
    }
    free(p->b[0].jobs);
    for (int i = 0; p->cctx && i < p->nslots; i++)
        ZSTD_freeCCtx(p->cctx[i]);
    free(p->cctx);
}

/* Waits for the batch in flight and stores it. The group is committed at
 * once, so the write lock is never held while the pool compresses. */
static int pipe_collect(chunk_pipe *p)
{
    if (!p->running)
        return 0;
    p->running = 0;
    int rc = wd__pool_wait(p->pool), other = !p->cur;
    for (size_t i = 0; !rc && i < p->n[other]; i++)
        rc = wd__astream_add_chunk(p->b[other].jobs[i].w, &p->b[other].jobs[i].c);
    p->n[other] = 0;
    if (!rc)
        rc = wd__chunk_batch_flush(p->batch);
    return rc;
}

/* Hands the filled batch to the pool (after storing the one before it). */
static int pipe_cycle(chunk_pipe *p)
{
    int rc = pipe_collect(p);
    if (rc || !p->n[p->cur])
        return rc;
    wd__pool_start(p->pool, p->n[p->cur], prepare_job, &p->b[p->cur]);
    p->running = 1;
    p->cur = !p->cur;
    return 0;
}

/* The next free job of the batch being filled. */
static cjob *pipe_slot(chunk_pipe *p)
{
    return &p->b[p->cur].jobs[p->n[p->cur]];
}

static int pipe_push(chunk_pipe *p, wd_astream_writer *w, size_t len)
{
    cjob *j = pipe_slot(p);
    j->w = w;
    j->dtype = w->out->dtype;
    j->transform = w->out->transform;
    j->len = len;
    return ++p->n[p->cur] == p->cap ? pipe_cycle(p) : 0;
}

/* Stores everything pushed so far. */
static int pipe_drain(chunk_pipe *p)
{
    int rc = pipe_cycle(p);
    return rc ? rc : pipe_collect(p);
}

/* Entries before each piece, built while the index array streams past. */
typedef struct {
    wd_lossy *L;
    uint64_t ce, seen;
    size_t k; /* next boundary to fill: before[k] for piece start k * ce */
} piece_counter;

static void count_indices(piece_counter *pc, const uint8_t *p, size_t m, size_t isz)
{
    for (size_t i = 0; i < m; i++) {
        int64_t v;
        if (isz == 4) {
            int32_t x;
            memcpy(&x, p + 4 * i, 4);
            v = x;
        } else {
            memcpy(&v, p + 8 * i, 8);
        }
        while (pc->k < pc->L->n_pieces && (uint64_t)v >= pc->k * pc->ce)
            pc->L->before[pc->k++] = pc->seen;
        pc->seen++;
    }
}

/* Reads one array of t from the file into the pipe, chunk by chunk, its
 * indices checked on the way; the chunks reach w (which must outlive the
 * pipe's work) once stored. */
static int copy_array(chunk_pipe *pipe, wd_astream_writer *w, const wd__wdelta *d, const wd__wdelta_tensor *t,
                      int field, wd_lossy *L, piece_counter *pc)
{
    const wd__wdelta_field *f = wd__wdelta_field_of(t, field);
    if (!f)
        return wd__error(WD_EBADINPUT, "tensor '%s' lacks its '%s' array", t->name, wd__wdelta_field_name(field));
    int is_index = field == WD__WF_INDICES || field == WD__WF_OUTLIER_IDX;
    int transform = is_index ? WD_AT_GAPS : (f->dtype == WD_DT_F16 || f->dtype == WD_DT_F32) ? WD_AT_PLANES : WD_AT_RAW;
    wd__astream_writer_init(w, pipe->batch->cs, wd__chunk_batch_put, pipe->batch, NULL, WD_DEFAULT_LEVEL,
                            &L->arrays[field], field, f->dtype, transform);
    size_t esz = wd__dtype_size(f->dtype);
    /* One stored chunk per read (WD_ASTREAM_CHUNK is a whole number of
     * elements of every dtype), which also keeps index checks aligned. */
    size_t piece = (WD_ASTREAM_CHUNK / esz) * esz;
    int64_t prev = -1;
    int rc = 0;
    for (uint64_t off = 0; !rc && off < f->nbytes; off += piece) {
        size_t len = f->nbytes - off < piece ? (size_t)(f->nbytes - off) : piece;
        uint8_t *buf = pipe_slot(pipe)->raw;
        if ((rc = wd__wdelta_pread(d, f, off, buf, len)))
            break;
        if (is_index) {
            rc = wd__wdelta_check_indices(t, field, buf, f->dtype, len / esz, off / esz, t->n, 1, &prev);
            if (!rc)
                count_indices(pc, buf, len / esz, esz);
        }
        if (!rc)
            rc = pipe_push(pipe, w, len);
        pipe->done += len;
        if (pipe->opt && pipe->opt->progress)
            pipe->opt->progress(pipe->opt->progress_ud, "import", pipe->done, pipe->total);
    }
    return rc;
}

static int read_f16(const wd__wdelta *d, const wd__wdelta_tensor *t, int field, uint16_t *out)
{
    const wd__wdelta_field *f = wd__wdelta_field_of(t, field);
    if (!f || f->count != 1 || f->dtype != WD_DT_F16)
        return wd__error(WD_EBADINPUT, "tensor '%s': '%s' must be one float16", t->name, wd__wdelta_field_name(field));
    return wd__wdelta_pread(d, f, 0, out, 2);
}

/* Builds the stored form of one lossy tensor of the file. */
static int import_tensor(chunk_pipe *pipe, wd_astream_writer *wr, const wd__wdelta *d, const wd__wdelta_tensor *t,
                         const wd_stored_tensor *pt, wd_lossy **out)
{
    if (t->ndim != pt->ndim || memcmp(t->shape, pt->shape, sizeof(uint64_t) * (size_t)t->ndim))
        return wd__error(WD_EBADINPUT, "tensor '%s' has another shape than in the parent", t->name);
    wd_lossy *L = calloc(1, sizeof *L);
    if (!L)
        return WD_NOMEM();
    L->strategy = t->strategy;
    L->n_pieces = (size_t)(t->n ? (t->n + pt->chunk_elems - 1) / pt->chunk_elems : 0);
    piece_counter pc = {L, pt->chunk_elems, 0, 0};
    int rc = 0;
    if (t->strategy != WD__WS_QUANTIZED && !(L->before = calloc(L->n_pieces + 1, sizeof *L->before)))
        rc = WD_NOMEM();
    const int *fields;
    size_t nf = wd__wdelta_fields_of(t->strategy, &fields);
    for (size_t i = 0; !rc && i < nf; i++) {
        if (fields[i] == WD__WF_SCALE)
            rc = read_f16(d, t, WD__WF_SCALE, &L->scale);
        else if (fields[i] == WD__WF_ZERO_POINT)
            rc = read_f16(d, t, WD__WF_ZERO_POINT, &L->zero_point);
        else
            rc = copy_array(pipe, &wr[fields[i]], d, t, fields[i], L, &pc);
    }
    if (!rc && L->before) {
        while (pc.k <= L->n_pieces)
            L->before[pc.k++] = pc.seen;
    }
    if (!rc && t->strategy == WD__WS_QUANTIZED) {
        L->n_cols = wd__wdelta_cols(t);
        if (!L->n_cols || t->n % L->n_cols || t->n == 0)
            rc = wd__error(WD_EBADINPUT, "tensor '%s': quantized layout does not fit %llu elements", t->name,
                           (unsigned long long)t->n);
    }
    if (!rc && t->strategy == WD__WS_INT4)
        L->layout = t->int4_layout == 2 ? 2 : 1;
    if (!rc)
        rc = wd__lossy_params(L, t, wd__wdelta_version(d), &L->params_json);
    if (rc) {
        wd__lossy_free(L);
        return rc;
    }
    *out = L;
    return 0;
}

static int options_of(const wd__wdelta *d, char *buf, size_t len)
{
    const wd__wdelta_tensor *t = wd__wdelta_count(d) ? wd__wdelta_tensor_at(d, 0) : NULL;
    if (t && t->strategy == WD__WS_SPARSE)
        snprintf(buf, len, "{\"sparsity\":%.17g}", t->sparsity);
    else if (t && t->strategy == WD__WS_INT4)
        snprintf(buf, len, "{\"outlier_fraction\":%.17g}", t->outlier_fraction);
    else
        snprintf(buf, len, "{}");
    return 0;
}

static char *wdelta_json(const wd__wdelta *d)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *order = j ? cJSON_AddArrayToObject(j, "record_order") : NULL;
    int ok = order && cJSON_AddNumberToObject(j, "version", wd__wdelta_version(d)) &&
             cJSON_AddStringToObject(j, "parent_hash", wd__wdelta_parent_hash(d));
    for (size_t i = 0; ok && i < wd__wdelta_count(d); i++) {
        cJSON *s = cJSON_CreateString(wd__wdelta_tensor_by_record(d, i)->name);
        ok = s && cJSON_AddItemToArray(order, s);
    }
    char *txt = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return txt;
}

static int insert_all(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], const wd_object *parent, const char *strategy,
                      const char *options, const char *message, const char *wdelta, wd_lossy **lossy,
                      uint64_t new_bytes)
{
    sqlite3_stmt *st = NULL;
    uint64_t tensor_bytes = 0;
    for (size_t i = 0; i < parent->n_tensors; i++)
        tensor_bytes += parent->tensors[i].nbytes;
    int rc = wd__db_prepare(repo->db, &st,
                            "INSERT INTO object(id, kind, parent, strategy, options, message, created, model_hash, "
                            "parent_model_hash, n_tensors, tensor_bytes, new_bytes, wdelta) "
                            "VALUES (?1, 'delta', ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11)");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    wd__bind_hash(st, 2, parent->id);
    sqlite3_bind_text(st, 3, strategy, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, options, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, message, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)time(NULL));
    wd__bind_hash(st, 7, parent->model_hash);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)parent->n_tensors);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)tensor_bytes);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)new_bytes);
    sqlite3_bind_text(st, 11, wdelta, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE)
        return wd__db_error(repo->db, s, "storing object");

    if ((rc = wd__db_prepare(repo->db, &st,
                             "INSERT INTO file(object, path, is_shard, size, chunks) "
                             "SELECT ?1, path, is_shard, size, chunks FROM file WHERE object = ?2")))
        return rc;
    wd__bind_hash(st, 1, id);
    wd__bind_hash(st, 2, parent->id);
    s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE)
        return wd__db_error(repo->db, s, "storing file list");

    if ((rc = wd__db_prepare(repo->db, &st,
                             "INSERT INTO tensor(object, name, file, ordinal, dtype, shape, nbytes, encoding, chunk_elems, "
                             "chunks, stored_bytes, params) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, x'', ?10, ?11)")))
        return rc;
    wd_buf shape = {0};
    for (size_t i = 0; !rc && i < parent->n_tensors; i++) {
        const wd_stored_tensor *pt = &parent->tensors[i];
        const wd_lossy *L = lossy[i];
        uint64_t stored = 0;
        for (int f = 0; L && f < WD__WF__COUNT; f++)
            stored += L->arrays[f].stored_bytes;
        shape.len = 0;
        if ((rc = wd__shape_format(&shape, pt->ndim, pt->shape)))
            break;
        wd__bind_hash(st, 1, id);
        sqlite3_bind_text(st, 2, pt->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, pt->file, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, pt->ordinal);
        sqlite3_bind_text(st, 5, wd__dtype_name(pt->dtype), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, (const char *)shape.data, (int)shape.len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)pt->nbytes);
        sqlite3_bind_text(st, 8, L ? wd__lossy_encoding(L->strategy) : "same", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 9, (sqlite3_int64)pt->chunk_elems);
        sqlite3_bind_int64(st, 10, (sqlite3_int64)stored);
        if (L)
            sqlite3_bind_text(st, 11, L->params_json, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 11);
        s = sqlite3_step(st);
        sqlite3_reset(st);
        if (s != SQLITE_DONE)
            rc = wd__db_error(repo->db, s, "storing tensor list");
        else if (L)
            rc = wd__lossy_insert_arrays(repo, id, pt->name, L);
    }
    wd__buf_free(&shape);
    sqlite3_finalize(st);
    return rc;
}

/* The new delta's model hash without reading back what was just stored:
 * the parent's walk (every tensor in name order, natively), with the
 * file's delta added on the workers to the float32 pieces of the tensors
 * the file names, reading its arrays (already checked by copy_array) from
 * the open file. That is the arithmetic checkout runs on the stored arrays
 * (piece.c: the parent's float32 reconstruction, the codec's apply in
 * place, narrowed), on the same bytes, so it is the same hash; decoding the
 * stored arrays again cost a fifth of import's CPU. Memory: one decoder a
 * worker slot (wdelta_decode.h: ~4 MiB). */
typedef struct {
    wd__wdelta_dec td;
    const wd__wdelta_tensor *cur; /* what td decodes, NULL if none */
    uint64_t next;                /* where td's last piece ended */
} apply_slot;

typedef struct {
    const wd__wdelta *d;
    const wd_object *parent;
    const wd__wdelta_tensor **ft; /* by parent tensor: the file's entry, or NULL */
    apply_slot *slots;
} delta_walk;

static int walk_f32_for(void *ud, const wd_stored_tensor *t)
{
    const delta_walk *w = ud;
    return w->ft[t - w->parent->tensors] != NULL;
}

/* wd_walk_opts.apply: a piece of the parent's tensor t, plus the delta. */
static int walk_apply(void *ud, int worker, const wd_stored_tensor *t, uint64_t begin, float *f32, size_t nelem)
{
    delta_walk *w = ud;
    const wd__wdelta_tensor *ft = w->ft[t - w->parent->tensors];
    apply_slot *s = &w->slots[worker];
    int rc;
    if (s->cur != ft) {
        if (s->cur)
            wd__wdelta_dec_free(&s->td);
        s->cur = NULL;
        if ((rc = wd__wdelta_dec_init(&s->td, w->d, ft))) {
            wd__wdelta_dec_free(&s->td); /* init cleared it first: frees what it got */
            return rc;
        }
        s->cur = ft;
        s->next = 0;
    }
    for (size_t off = 0; off < nelem; off += WD__DEC_PIECE) {
        size_t cnt = nelem - off < WD__DEC_PIECE ? nelem - off : WD__DEC_PIECE;
        if (begin + off != s->next && (rc = wd__wdelta_dec_seek(&s->td, begin + off)))
            return rc;
        s->next = UINT64_MAX; /* unless this piece completes */
        if ((rc = wd__wdelta_dec_apply(&s->td, begin + off, cnt, f32 + off, NULL)))
            return rc;
        s->next = begin + off + cnt;
    }
    return 0;
}

/* Whether walk_apply can hash this delta: pieces of the parent's tensors
 * the file names must start on a multiple of 8 elements (the decoder's
 * unit; every chunk size wdrepo writes is). Otherwise the caller hashes
 * the stored arrays. */
static int walk_fits(const wd__wdelta *d, const wd_object *parent)
{
    for (size_t i = 0; i < wd__wdelta_count(d); i++) {
        long j = wd__object_find(parent, wd__wdelta_tensor_at(d, i)->name);
        if (j < 0 || parent->tensors[j].chunk_elems % 8)
            return 0;
    }
    return 1;
}

static int hash_with_file(wd_repo *repo, wd_pool *pool, const wd__wdelta *d, const wd_object *parent,
                          uint8_t model_hash[WD_HASH_SIZE])
{
    if (!walk_fits(d, parent))
        return wd__error(WD_ERROR, "internal error: the parent's pieces do not fit the .wdelta decoder");
    int nslots = pool ? wd__pool_size(pool) : 1;
    delta_walk w = {d, parent, calloc(parent->n_tensors + 1, sizeof *w.ft), calloc((size_t)nslots, sizeof *w.slots)};
    int rc = w.ft && w.slots ? 0 : WD_NOMEM();
    for (size_t i = 0; !rc && i < wd__wdelta_count(d); i++) {
        const wd__wdelta_tensor *t = wd__wdelta_tensor_at(d, i);
        long j = wd__object_find(parent, t->name);
        if (j < 0)
            rc = wd__error(WD_ERROR, "internal error: tensor '%s' left the parent", t->name);
        else
            w.ft[j] = t;
    }
    if (!rc)
        rc = wd__object_walk(repo, parent,
                             &(wd_walk_opts){.pool = pool, .f32_for = walk_f32_for, .apply = walk_apply, .ud = &w},
                             model_hash, NULL, NULL);
    for (int i = 0; w.slots && i < nslots; i++)
        if (w.slots[i].cur)
            wd__wdelta_dec_free(&w.slots[i].td);
    free(w.slots);
    free(w.ft);
    return rc;
}

/* hash_with_file on a thread of its own and a pool of its own, while the
 * caller copies the arrays on its pool: the two read nothing of each
 * other's (the walk reads the parent's committed chunks and the file). The
 * walk starts before the copy has checked the index arrays; if they are
 * bad, the copy fails and the walk's result is dropped (its decoder checks
 * what addresses memory, so a bad file can only make it fail or hash
 * garbage). */
typedef struct {
    wd_repo *repo;
    wd_pool *pool;
    const wd__wdelta *d;
    const wd_object *parent;
    uint8_t hash[WD_HASH_SIZE];
} walk_job;

static int walk_job_fn(void *ud)
{
    walk_job *w = ud;
    return hash_with_file(w->repo, w->pool, w->d, w->parent, w->hash);
}

/* The file's checksum, checked on a thread of its own while the parent is
 * found and the arrays are copied and hashed (it was read through first).
 * Everything read from the file is validated as it is used; the checksum
 * is joined before the object is inserted, and its error wins over any
 * other, as when it was checked first. */
static int sum_fn(void *d)
{
    return wd__wdelta_verify_checksum(d);
}

static int sum_join(wd__sidejob *j, int rc)
{
    int src = wd__sidejob_join(j);
    return src ? src : rc;
}

/* Joins the walk if it runs; a copy error (rc) keeps its message. */
static int walk_join(wd__sidejob *j, int rc)
{
    if (!rc)
        return wd__sidejob_join(j);
    char msg[1024]; /* error.c's message buffer size */
    snprintf(msg, sizeof msg, "%s", wd_errmsg());
    wd__sidejob_join(j);
    return wd__error(rc, "%s", msg);
}

/* The new delta as wd__object_load would give it, built from the parent
 * and the imported tensors, so that its hashes can be computed before the
 * final transaction. Its tensors borrow from parent and lossy: release it
 * with free_draft, never wd__object_free. */
static int draft_object(const uint8_t id[WD_HASH_SIZE], wd_object *parent, wd_lossy **lossy, wd_object *obj)
{
    memset(obj, 0, sizeof *obj);
    memcpy(obj->id, id, WD_HASH_SIZE);
    obj->n_tensors = parent->n_tensors;
    obj->tensors = calloc(parent->n_tensors ? parent->n_tensors : 1, sizeof *obj->tensors);
    if (!obj->tensors)
        return WD_NOMEM();
    for (size_t i = 0; i < parent->n_tensors; i++) {
        wd_stored_tensor *t = &obj->tensors[i];
        wd_stored_tensor *pt = &parent->tensors[i];
        t->name = pt->name;
        t->file = pt->file;
        t->ordinal = pt->ordinal;
        t->dtype = pt->dtype;
        t->ndim = pt->ndim;
        memcpy(t->shape, pt->shape, sizeof t->shape);
        t->nelem = pt->nelem;
        t->nbytes = pt->nbytes;
        snprintf(t->encoding, sizeof t->encoding, "%s", lossy[i] ? wd__lossy_encoding(lossy[i]->strategy) : "same");
        t->chunk_elems = pt->chunk_elems;
        t->lossy = lossy[i];
        t->parent = pt;
        t->object = obj->id;
        for (int f = 0; lossy[i] && f < WD__WF__COUNT; f++) {
            lossy[i]->arrays[f].tensor = pt->name;
            lossy[i]->arrays[f].object = obj->id;
        }
    }
    return 0;
}

static void free_draft(wd_object *obj)
{
    free(obj->tensors);
}

static int object_exists(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], int *exists)
{
    sqlite3_stmt *st = NULL;
    int rc = wd__db_prepare(repo->db, &st, "SELECT 1 FROM object WHERE id = ?1");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    int row = wd__db_step(repo->db, st, "looking up object");
    sqlite3_finalize(st);
    if (row < 0)
        return row;
    *exists = row > 0;
    return 0;
}

/* 1 if stored lossy tensor a encodes exactly what b does. */
static int same_lossy(const wd_lossy *a, const wd_lossy *b)
{
    if (a->strategy != b->strategy || a->n_cols != b->n_cols || a->layout != b->layout || a->scale != b->scale ||
        a->zero_point != b->zero_point)
        return 0;
    for (int f = 0; f < WD__WF__COUNT; f++) {
        const wd_astream *x = &a->arrays[f], *y = &b->arrays[f];
        if (x->count != y->count || x->n_chunks != y->n_chunks || (x->count && x->dtype != y->dtype) ||
            (x->n_chunks && memcmp(x->chunks, y->chunks, x->n_chunks * WD_HASH_SIZE)))
            return 0;
    }
    return 1;
}

/* 1 if header entry a is written as b is. */
static int same_entry(const wd__wdelta_tensor *a, const wd__wdelta_tensor *b)
{
    return a->strategy == b->strategy && !strcmp(a->dtype, b->dtype) && !strcmp(a->base_dtype, b->base_dtype) &&
           (a->strategy != WD__WS_SPARSE || a->sparsity == b->sparsity) &&
           (a->strategy != WD__WS_INT4 || a->outlier_fraction == b->outlier_fraction) &&
           a->n_outliers == b->n_outliers && a->int4_layout == b->int4_layout && a->has == b->has &&
           a->n_keys == b->n_keys && !memcmp(a->key_order, b->key_order, (size_t)a->n_keys);
}

/* A stored delta that the file describes exactly: on the same parent,
 * with the same tensors, the file's lossy tensors encoded by the same
 * arrays (compared by chunk id) and header entries, all others unchanged.
 * An exported delta so comes back as the object it was exported from: the
 * file cannot carry a committed delta's own files (another config.json,
 * shard layout), so the manifest id computed from the file alone differs.
 * A tensor the stored delta keeps unchanged ("same") goes out as a zero
 * delta; such a match holds only if the reconstructions hash alike, which
 * *check_hash asks of the caller (*want_hash is the stored model hash).
 * Sets *found and out when one exists. */
static int find_same(wd_repo *repo, const wd__wdelta *d, const wd_object *parent, const char *strategy,
                     const char *options, wd_lossy **lossy, uint8_t out[WD_HASH_SIZE], int *found,
                     int *check_hash, uint8_t want_hash[WD_HASH_SIZE])
{
    *found = 0;
    *check_hash = 0;
    /* What export writes for a committed delta: records in name order. */
    int version = wd__wdelta_version(d);
    for (size_t i = 0; version == 1 && i < wd__wdelta_count(d); i++)
        if (wd__wdelta_tensor_by_record(d, i) != wd__wdelta_tensor_at(d, i))
            return 0;
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st,
                            "SELECT id FROM object WHERE kind = 'delta' AND parent = ?1 AND strategy = ?2 "
                            "AND options = ?3 AND n_tensors = ?4 AND wdelta IS NULL ORDER BY created, id");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, parent->id);
    sqlite3_bind_text(st, 2, strategy, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, options, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)parent->n_tensors);
    int row = 0;
    while (!rc && !*found && (row = wd__db_step(repo->db, st, "looking for the same delta")) > 0) {
        if (sqlite3_column_bytes(st, 0) != WD_HASH_SIZE)
            continue;
        uint8_t id[WD_HASH_SIZE];
        memcpy(id, sqlite3_column_blob(st, 0), WD_HASH_SIZE);
        wd_object *obj = NULL;
        if ((rc = wd__object_load(repo, id, &obj))) {
            /* a damaged candidate is not the one: the file gets its own id */
            if (rc == WD_ECORRUPT)
                rc = 0;
            continue;
        }
        int same = obj->n_tensors == parent->n_tensors, zero = 0;
        for (size_t i = 0; !rc && same && i < parent->n_tensors; i++) {
            const wd_stored_tensor *t = &obj->tensors[i], *pt = &parent->tensors[i];
            same = !strcmp(t->name, pt->name) && t->dtype == pt->dtype && t->nelem == pt->nelem;
            if (!same || !lossy[i]) {
                same = same && !strcmp(t->encoding, "same");
                continue;
            }
            const wd__wdelta_tensor *ft = wd__wdelta_find(d, t->name, strlen(t->name));
            double option = ft && ft->strategy == WD__WS_INT4 ? ft->outlier_fraction : ft ? ft->sparsity : 0;
            wd__wdelta_tensor e;
            if (!ft) {
                same = 0;
            } else if (t->lossy) {
                same = same_lossy(t->lossy, lossy[i]) && !(rc = wd__lossy_entry(t, version, option, &e)) &&
                       same_entry(&e, ft);
            } else if (!strcmp(t->encoding, "same")) {
                /* export's entry for a tensor it encodes itself */
                memset(&e, 0, sizeof e);
                e.name = t->name;
                e.name_len = strlen(t->name);
                e.strategy = ft->strategy;
                e.ndim = t->ndim;
                memcpy(e.shape, t->shape, sizeof e.shape);
                snprintf(e.dtype, sizeof e.dtype, "float32");
                if (version == 2)
                    snprintf(e.base_dtype, sizeof e.base_dtype, "%s", wd__dtype_numpy_name(pt->dtype));
                e.sparsity = e.outlier_fraction = option;
                e.n_outliers = ft->n_outliers;
                same = !(rc = wd__wdelta_tensor_fill(&e, version)) && same_entry(&e, ft);
                zero = 1;
            } else {
                same = 0;
            }
        }
        if (!rc && same) {
            memcpy(out, id, WD_HASH_SIZE);
            memcpy(want_hash, obj->model_hash, WD_HASH_SIZE);
            *found = 1;
            *check_hash = zero;
        }
        wd__object_free(obj);
    }
    if (!rc && row < 0)
        rc = row;
    sqlite3_finalize(st);
    return rc;
}

/* Import runs in four steps, and only the last holds the write lock for
 * more than a group of chunk inserts: find the parent (recorded hashes, or
 * a rebuild on the pool); copy the arrays (read and checked here,
 * compressed on the pool, stored in short groups) and, beside it, hash the
 * new delta's reconstruction (its own pool, reading the parent's committed
 * chunks and the file); insert its rows. */
int wd_import(wd_repo *repo, const char *path, const char *name, const wd_options *opt, wd_write_result *out)
{
    if (repo->readonly)
        return wd__error(WD_EUSAGE, "repository is open read-only");
    if (name && !wd__name_valid(name))
        return wd__error(WD_EUSAGE,
                         "invalid name '%s': use letters, digits and ._-+/ (not 4+ hex digits alone, no leading '-' or '.')",
                         name);
    wd__wdelta *d = NULL;
    wd_object *parent = NULL;
    wd_lossy **lossy = NULL;
    char *wdelta = NULL;
    wd_pool *pool = NULL;
    chunk_pipe pipe;
    int have_pipe = 0;
    wd_astream_writer *wr = NULL;
    size_t n_file = 0;
    wd_chunk_batch batch = {repo->store, 0, 0, 0};
    /* A pipe cannot be pread: standard input is read through a copy in the
     * repository folder (on the file system that will hold the data). */
    wd__temp spool = {.fd = -1, .slot = -1};
    wd_pool *wpool = NULL; /* the walk's, while it runs beside the copy */
    wd__sidejob wj = {0};
    walk_job wjob;
    int walked = 0; /* wjob.hash is the model hash */
    const char *shown = path;
    int rc = 0;
    if (wd__is_stdin(path)) {
        rc = wd__spool_stdin(&spool, repo->dir);
        path = spool.path;
        shown = "standard input";
    }
    /* (standard input: checked at open, so that its errors name it) */
    int side_sum = !spool.path[0];
    wd__sidejob sj = {0};
    if (!rc)
        rc = wd__spool_error(&spool, wd__wdelta_open_ex(&d, path, side_sum ? WD__WDELTA_OPEN_NO_CHECKSUM : 0));
    wd__temp_discard(&spool); /* the open file stays readable */
    if (rc)
        return rc;
    if (side_sum && wd__sidejob_start(&sj, sum_fn, d) && (rc = wd__wdelta_verify_checksum(d))) {
        wd__wdelta_close(d);
        return rc; /* no thread: checked here */
    }
    n_file = wd__wdelta_count(d);
    if ((rc = wd__pool_new(&pool, opt ? opt->threads : 0)))
        goto done;
    if ((rc = find_parent(repo, pool, d, &parent)))
        goto done;
    lossy = calloc(parent->n_tensors ? parent->n_tensors : 1, sizeof *lossy);
    /* One writer per array of the file: chunks reach their writer after
     * the tensor that read them is done. */
    wr = calloc(n_file ? n_file * WD__WF__COUNT : 1, sizeof *wr);
    wdelta = wdelta_json(d);
    if (!lossy || !wr || !wdelta) {
        rc = WD_NOMEM();
        goto done;
    }
    /* With more than one thread, the new delta's model hash is computed
     * beside the copy (below: after it). */
    if (wd__pool_size(pool) > 2 && walk_fits(d, parent) && !wd__pool_new(&wpool, opt ? opt->threads : 0)) {
        wjob = (walk_job){repo, wpool, d, parent, {0}};
        if (wd__sidejob_start(&wj, walk_job_fn, &wjob)) {
            wd__pool_free(wpool);
            wpool = NULL;
        }
    }
    wd__error_clear();
    have_pipe = 1;
    if ((rc = pipe_init(&pipe, pool, &batch)))
        goto done;
    pipe.opt = opt;
    for (size_t i = 0; i < n_file; i++)
        for (int f = 0; f < WD__WF__COUNT; f++) {
            const wd__wdelta_field *fl = wd__wdelta_field_of(wd__wdelta_tensor_at(d, i), f);
            pipe.total += fl ? fl->nbytes : 0;
        }
    for (size_t i = 0; !rc && i < n_file; i++) {
        const wd__wdelta_tensor *t = wd__wdelta_tensor_at(d, i);
        long j = wd__object_find(parent, t->name);
        if (wd__sidejob_done(&sj) && (rc = sum_join(&sj, 0)))
            break; /* a damaged file: stop storing its arrays */
        rc = import_tensor(&pipe, &wr[i * WD__WF__COUNT], d, t, &parent->tensors[j], &lossy[j]);
    }
    if (!rc)
        rc = pipe_drain(&pipe);
    for (size_t i = 0; !rc && i < n_file * WD__WF__COUNT; i++)
        if (wr[i].out)
            rc = wd__astream_finish(&wr[i]);
    if (!rc)
        rc = wd__chunk_batch_flush(&batch);
    pipe_free(&pipe);
    have_pipe = 0;
    if (wpool) {
        /* a failed walk (damaged parent chunks) is left to the serial
         * walk below, which runs only when the hash is needed, as before */
        int wrc = walk_join(&wj, rc);
        walked = !rc && !wrc;
        if (!rc && wrc)
            wd__error_clear();
    }
    rc = sum_join(&sj, rc); /* before anything refers to the arrays */
    if (rc)
        goto done;

    const char *strategy = wd__wdelta_strategy_name(wd__wdelta_strategy(d));
    char options[64];
    options_of(d, options, sizeof options);
    uint8_t id[WD_HASH_SIZE];
    wd_manifest m;
    wd__manifest_begin(&m, parent->id, strategy, options);
    for (size_t i = 0; i < parent->n_files; i++)
        wd__manifest_file(&m, parent->files[i].path, parent->files[i].is_shard, parent->files[i].size,
                          parent->files[i].chunks, parent->files[i].n_chunks);
    for (size_t i = 0; i < parent->n_tensors; i++) {
        const wd_stored_tensor *pt = &parent->tensors[i];
        wd__manifest_tensor(&m, pt->name, pt->file, pt->ordinal, pt->dtype, pt->ndim, pt->shape,
                            lossy[i] ? wd__lossy_encoding(lossy[i]->strategy) : "same", pt->chunk_elems, NULL, 0,
                            lossy[i]);
    }
    if ((rc = wd__manifest_end(&m, id)))
        goto done;

    const char *slash = strrchr(shown, '/');
    char message[512];
    snprintf(message, sizeof message, "imported from %s", slash ? slash + 1 : shown);
    /* What checkout will write, hashed outside any transaction (the chain
     * hash waits until a file needs it: record_f32_hash). Skipped when the
     * object is already stored, unless it vanishes before the insert. */
    uint8_t model_hash[WD_HASH_SIZE], own_id[WD_HASH_SIZE], same_id[WD_HASH_SIZE], same_hash[WD_HASH_SIZE];
    int hashed = walked, exists = 0, same = 0, check_hash = 0;
    if (walked)
        memcpy(model_hash, wjob.hash, WD_HASH_SIZE);
    memcpy(own_id, id, WD_HASH_SIZE);
    if ((rc = object_exists(repo, id, &exists)) ||
        (!exists &&
         (rc = find_same(repo, d, parent, strategy, options, lossy, same_id, &same, &check_hash, same_hash))))
        goto done;
    for (;;) {
        if ((!exists && !hashed) || (same && check_hash && !hashed)) {
            if (walk_fits(d, parent)) {
                rc = hash_with_file(repo, pool, d, parent, model_hash);
            } else {
                wd_object draft;
                rc = draft_object(id, parent, lossy, &draft);
                if (!rc)
                    rc = wd__object_walk(repo, &draft, &(wd_walk_opts){.pool = pool}, model_hash, NULL, NULL);
                free_draft(&draft);
            }
            if (rc)
                goto done;
            hashed = 1;
        }
        if (same && check_hash && memcmp(model_hash, same_hash, WD_HASH_SIZE))
            same = 0;
        if (same) {
            memcpy(id, same_id, WD_HASH_SIZE);
            exists = 1;
        }
        if ((rc = wd__db_exec(repo->db, "BEGIN IMMEDIATE")))
            goto done;
        rc = object_exists(repo, id, &exists);
        if (!rc && !exists && same) { /* removed meanwhile: the file's own id after all */
            memcpy(id, own_id, WD_HASH_SIZE);
            same = 0;
            rc = object_exists(repo, id, &exists);
        }
        if (!rc && !exists && !hashed) {
            sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
            continue;
        }
        break;
    }
    if (!rc && !exists)
        rc = insert_all(repo, id, parent, strategy, options, message, wdelta, lossy, batch.new_bytes);
    if (!rc && !exists)
        rc = wd__object_set_hashes(repo, id, model_hash, NULL);
    if (!rc && name)
        rc = wd__name_set(repo, name, id);
    if (rc) {
        sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
        goto done;
    }
    if ((rc = wd__db_commit(repo->db)))
        goto done;
    if (out) {
        memset(out, 0, sizeof *out);
        wd__hex(out->id, id);
        out->already_present = exists;
        out->n_tensors = parent->n_tensors;
        out->n_parent_tensors = parent->n_tensors;
        wd__hex(out->parent, parent->id);
        snprintf(out->strategy, sizeof out->strategy, "%s", strategy);
        for (size_t i = 0; i < parent->n_tensors; i++) {
            out->tensor_bytes += parent->tensors[i].nbytes;
            if (lossy[i]) {
                out->n_encoded++;
                for (int f = 0; f < WD__WF__COUNT; f++)
                    out->stored_bytes += lossy[i]->arrays[f].stored_bytes;
            } else {
                out->n_unchanged++;
            }
        }
        out->new_bytes = batch.new_bytes;
        if (!exists)
            wd__hex(out->model_hash, model_hash);
        else if (same)
            wd__hex(out->model_hash, same_hash);
    }
done:
    if (have_pipe)
        pipe_free(&pipe);
    rc = walk_join(&wj, rc); /* before d and parent go */
    rc = sum_join(&sj, rc);
    wd__pool_free(wpool);
    wd__chunk_batch_abort(&batch);
    rc = wd__gc_after_failure(repo, rc, batch.new_bytes);
    for (size_t i = 0; wr && i < n_file * WD__WF__COUNT; i++)
        wd__astream_writer_free(&wr[i]);
    free(wr);
    for (size_t i = 0; lossy && parent && i < parent->n_tensors; i++)
        wd__lossy_free(lossy[i]);
    free(lossy);
    free(wdelta);
    wd__pool_free(pool);
    wd__object_free(parent);
    wd__wdelta_close(d);
    return rc;
}
