/*
 * objhash.c - hashing a stored object's reconstruction: the model hash
 * (every tensor in name order, its name then its native bytes) and the
 * float32 chain hash deltatensors records as a child's parent_hash. Pieces
 * are rebuilt on the thread pool while the calling thread feeds the
 * finished ones to SHA-256 in order, so the hash, which is inherently
 * sequential, overlaps the decoding instead of adding to it.
 */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "error.h"
#include "hash.h"
#include "piece.h"
#include "pipeline.h"
#include "repo_int.h"
#include "tensorhash.h"

/* One piece to rebuild: f32 also gets the float32 values (for the chain
 * hash), nat the native bytes. */
typedef struct {
    const wd_stored_tensor *t;
    uint64_t k;
    int want_f32;
    wd_piece_plan plan;
    float *f32;  /* WD_CHUNK_TARGET floats (pieces are at most that many elements) */
    uint8_t *nat; /* WD_CHUNK_TARGET bytes */
    size_t nelem;
} hjob;

typedef struct {
    wd_repo *repo;
    hjob *jobs;
    wd_piece_scratch **ps; /* per worker slot */
    int native;           /* the model hash is wanted */
    const wd_walk_opts *o;
} hbatch;

/* Where the walk over (tensor, piece) stands. */
typedef struct {
    const wd_object *obj;
    const char *const *names;
    size_t count, ti;
    uint64_t k;
    const wd_stored_tensor *cur;
} walk;

/* Fills jobs[0 .. cap) with the next pieces in walk order and returns how
 * many, in *n. A tensor's first job carries its name into the hash; an
 * empty tensor is one job with no piece (k == UINT64_MAX). */
/* Small pieces (at most SMALL_ELEMS elements: 64 KiB native for 1-byte
 * types, 256 KiB as float32, 512 KiB for 8-byte types) may use any job slot;
 * larger ones only the first big_cap slots, the ones with full-size
 * buffers. */
#define SMALL_ELEMS ((size_t)1 << 16)

static int fill(walk *w, hjob *jobs, size_t cap, size_t big_cap, int with_f32, const wd_walk_opts *o, size_t *n)
{
    *n = 0;
    while (*n < cap) {
        if (!w->cur) {
            if (w->ti >= w->count)
                return 0;
            long j = w->names ? wd__object_find(w->obj, w->names[w->ti]) : (long)w->ti;
            if (j < 0)
                return wd__error(WD_ENOTFOUND, "tensor '%s' is not in the object", w->names[w->ti]);
            w->cur = &w->obj->tensors[j];
            w->k = 0;
        }
        const wd_stored_tensor *t = w->cur;
        uint64_t npieces = (t->nelem + t->chunk_elems - 1) / t->chunk_elems;
        uint64_t left = t->nelem - (w->k < npieces ? w->k * t->chunk_elems : 0);
        if (npieces && left > SMALL_ELEMS && t->chunk_elems > SMALL_ELEMS && *n >= big_cap)
            return 0;
        hjob *j = &jobs[*n];
        j->t = t;
        j->want_f32 = o->f32_for ? o->f32_for(o->ud, t) : with_f32 && (!o->lossy_only_f32 || t->lossy);
        j->nelem = 0;
        if (npieces == 0) {
            j->k = UINT64_MAX;
            (*n)++;
        } else if (w->k < npieces) {
            j->k = w->k++;
            (*n)++;
            if (w->k < npieces)
                continue;
        }
        w->cur = NULL;
        w->ti++;
    }
    return 0;
}

static int decode_job(void *p, size_t i, int worker)
{
    hbatch *b = p;
    hjob *j = &b->jobs[i];
    if (j->k == UINT64_MAX)
        return 0;
    int mode = j->want_f32 ? WD_PIECE_F32 : WD_PIECE_NATIVE;
    int rc = wd__piece_fetch(b->repo, j->t, j->k, mode, &j->plan);
    if (!rc)
        rc = wd__piece_decode(&j->plan, b->ps[worker], j->want_f32 ? (void *)j->f32 : (void *)j->nat);
    if (rc)
        return rc;
    j->nelem = j->plan.nelem;
    if (j->want_f32 && b->o->apply &&
        (rc = b->o->apply(b->o->ud, worker, j->t, j->plan.begin, j->f32, j->nelem)))
        return rc;
    /* The native bytes of a float32 rebuild are its narrowing, exactly what
     * a native rebuild ends with. */
    if (j->want_f32 && b->native)
        wd__from_f32(j->nat, j->f32, j->nelem, j->t->dtype);
    if (b->o->on_piece)
        return b->o->on_piece(b->o->ud, worker, j->t, j->k, j->want_f32 && !b->native ? NULL : j->nat,
                              j->want_f32 ? j->f32 : NULL, j->nelem);
    return 0;
}

int wd__object_walk(wd_repo *repo, const wd_object *obj, const wd_walk_opts *o, uint8_t model_hash[WD_HASH_SIZE],
                    uint8_t f32_hash[WD_HASH_SIZE], int *out_n_f32)
{
    wd_pool *pool = o->pool;
    const char *const *names = o->names;
    size_t n_names = o->n_names;
    /* float32 pieces are needed for the chain hash or a caller's conversion */
    int need_f32 = f32_hash != NULL || o->f32_for != NULL;
    int nslots = pool ? wd__pool_size(pool) : 1;
    /* Pieces in flight: two batches of one big piece per worker slot (4 MiB
     * as float32, 1 MiB native each), or up to 64 small ones, so a model of
     * many tiny tensors does not pay a pool round trip per few of them. */
    size_t big_cap = (size_t)nslots < 64 ? (size_t)nslots : 64, cap = 64;
    hjob *jobs = calloc(2 * cap, sizeof *jobs);
    wd_piece_scratch **ps = calloc((size_t)nslots, sizeof *ps);
    wd_sha256 *hn = NULL, *hf = NULL;
    int rc = jobs && ps ? 0 : WD_NOMEM();
    for (int i = 0; !rc && i < nslots; i++)
        if (!(rc = wd__piece_scratch_new(&ps[i])) && o->trusted)
            wd__piece_scratch_set_check(ps[i], WD_DECODE_TRUSTED);
    for (size_t i = 0; !rc && i < 2 * cap; i++) {
        size_t elems = i % cap < big_cap ? WD_CHUNK_TARGET : SMALL_ELEMS;
        jobs[i].nat = malloc(i % cap < big_cap ? WD_CHUNK_TARGET : SMALL_ELEMS * 8);
        if (need_f32)
            jobs[i].f32 = malloc(elems * sizeof(float));
        if (!jobs[i].nat || (need_f32 && !jobs[i].f32))
            rc = WD_NOMEM();
    }
    if (!rc && model_hash)
        rc = wd__sha256_new(&hn);
    if (!rc && f32_hash)
        rc = wd__sha256_new(&hf);

    int n_f32 = 0;
    walk w = {obj, names, names ? n_names : obj->n_tensors, 0, 0, NULL};
    hbatch bt[2] = {{repo, jobs, ps, model_hash != NULL, o}, {repo, jobs + cap, ps, model_hash != NULL, o}};
    size_t nb[2] = {0, 0};
    int cur = 0, running = 0;
    if (!rc)
        rc = fill(&w, bt[cur].jobs, cap, big_cap, f32_hash != NULL, o, &nb[cur]);
    if (!rc && nb[cur]) {
        if (pool) {
            wd__pool_start(pool, nb[cur], decode_job, &bt[cur]);
            running = 1;
        } else {
            for (size_t i = 0; !rc && i < nb[cur]; i++)
                rc = decode_job(&bt[cur], i, 0);
        }
    }
    while (!rc && nb[cur]) {
        if (running) {
            running = 0;
            if ((rc = wd__pool_wait(pool)))
                break;
        }
        /* bt[cur] is decoded: start the next batch, then hash this one. */
        int nxt = !cur;
        if ((rc = fill(&w, bt[nxt].jobs, cap, big_cap, f32_hash != NULL, o, &nb[nxt])))
            break;
        if (nb[nxt] && pool) {
            wd__pool_start(pool, nb[nxt], decode_job, &bt[nxt]);
            running = 1;
        }
        for (size_t i = 0; i < nb[cur]; i++) {
            const hjob *j = &bt[cur].jobs[i];
            const wd_stored_tensor *t = j->t;
            int first = j->k == 0 || j->k == UINT64_MAX;
            if (hn) {
                if (first)
                    wd__thash_name(hn, t->name);
                wd__sha256_update(hn, j->nat, j->nelem * wd__dtype_size(t->dtype));
            }
            if (hf && j->want_f32) {
                if (first) {
                    wd__thash_name(hf, t->name);
                    n_f32++;
                }
                wd__sha256_update(hf, j->f32, j->nelem * sizeof(float));
            }
        }
        if (o->progress) {
            uint64_t bytes = 0;
            for (size_t i = 0; i < nb[cur]; i++)
                bytes += bt[cur].jobs[i].nelem * wd__dtype_size(bt[cur].jobs[i].t->dtype);
            o->progress(o->ud, bytes);
        }
        if (!pool)
            for (size_t i = 0; !rc && i < nb[nxt]; i++)
                rc = decode_job(&bt[nxt], i, 0);
        cur = nxt;
    }
    if (running)
        wd__pool_wait(pool);
    if (!rc && hn)
        wd__sha256_final(hn, model_hash);
    if (!rc && hf)
        wd__sha256_final(hf, f32_hash);
    if (!rc && out_n_f32)
        *out_n_f32 = n_f32;
    for (size_t i = 0; jobs && i < 2 * cap; i++) {
        wd__piece_plan_free(&jobs[i].plan);
        free(jobs[i].nat);
        free(jobs[i].f32);
    }
    for (int i = 0; ps && i < nslots; i++)
        wd__piece_scratch_free(ps[i]);
    free(jobs);
    free(ps);
    wd__sha256_free(hn);
    wd__sha256_free(hf);
    return rc;
}

int wd__object_hash(wd_repo *repo, const wd_object *obj, const char *const *names, size_t n_names, int mode,
                    uint8_t out[WD_HASH_SIZE])
{
    wd_walk_opts o = {.names = names, .n_names = n_names};
    if (mode == WD_PIECE_F32)
        return wd__object_walk(repo, obj, &o, NULL, out, NULL);
    return wd__object_walk(repo, obj, &o, out, NULL, NULL);
}

int wd__object_seal(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], uint8_t model_hash[WD_HASH_SIZE])
{
    wd_object *obj = NULL;
    uint8_t f32_hash[WD_HASH_SIZE];
    int n_f32 = 0;
    int rc = wd__object_load(repo, id, &obj);
    /* The chain hash covers the tensors the delta encodes, sorted. */
    if (!rc)
        rc = wd__object_walk(repo, obj, &(wd_walk_opts){.lossy_only_f32 = 1}, model_hash, f32_hash, &n_f32);
    if (!rc)
        rc = wd__object_set_hashes(repo, id, model_hash, n_f32 ? f32_hash : NULL);
    wd__object_free(obj);
    return rc;
}

int wd__object_set_hashes(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], const uint8_t model_hash[WD_HASH_SIZE],
                          const uint8_t *f32_hash)
{
    sqlite3_stmt *st = NULL;
    int rc = wd__db_prepare(repo->db, &st, "UPDATE object SET model_hash = ?1, f32_hash = ?2 WHERE id = ?3");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, model_hash);
    if (f32_hash)
        wd__bind_hash(st, 2, f32_hash);
    wd__bind_hash(st, 3, id);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE)
        rc = wd__db_error(repo->db, s, "storing hashes");
    sqlite3_finalize(st);
    return rc;
}
