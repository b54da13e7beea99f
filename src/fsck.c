/*
 * fsck.c - `wdrepo fsck`: checking everything the repository holds, in one
 * read snapshot. SQLite's own check first; then every chunk decoded and
 * re-hashed on the pool while the chunk table streams past; then every
 * object's rows against the chunks and against each other (sizes, chunk
 * counts, the delta id re-derived from its manifest), the lineage and the
 * names; with WD_FSCK_FULL every intact object rebuilt and its model hash
 * compared. A problem names the damaged chunk or record and every object
 * that depends on it, directly or through its lineage.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "chunkstore.h"
#include "codec.h"
#include "codec_lowbit.h"
#include "db.h"
#include "error.h"
#include "folder.h"
#include "hash.h"
#include "lossy.h"
#include "manifest.h"
#include "piece.h"
#include "pipeline.h"
#include "repo_int.h"
#include "wdelta.h"

/* What fsck keeps of each chunk: 44 bytes, so a repository of a million
 * chunks (a terabyte) costs 44 MB. */
typedef struct {
    uint8_t id[WD_HASH_SIZE];
    uint32_t stored; /* bytes of data */
    uint32_t raw;    /* raw_size */
    int32_t damage;  /* index into fsck.damage, -1 when intact */
} chunk_ent;

/* A manifest's reference to a chunk that is damaged or missing. */
typedef struct {
    uint8_t id[WD_HASH_SIZE];
    size_t obj;
    int file;    /* a file's chunk: children never read their parent's files */
    char *where;
} bad_ref;

typedef struct {
    uint8_t id[WD_HASH_SIZE], parent[WD_HASH_SIZE], model_hash[WD_HASH_SIZE];
    uint8_t parent_model_hash[WD_HASH_SIZE], f32_hash[WD_HASH_SIZE];
    int is_base, has_parent, has_model_hash, has_pmh, has_f32;
    long parent_idx;  /* index of the parent in fsck.objs, -1 if none or missing */
    int lineage_ok;   /* its parent chain reaches a base */
    uint64_t n_tensors, tensor_bytes;
    char *strategy, *options;
} obj_ent;

typedef struct {
    size_t *v;
    size_t n, cap;
} idx_list;

typedef struct {
    wd_repo *repo;
    const wd_options *opt;
    unsigned flags;
    wd_fsck_report *r;
    size_t cap_problems;
    idx_list *direct;   /* per problem: the objects it hits, with every object built on them */
    idx_list *self;     /* per problem: the objects it hits alone */
    chunk_ent *chunks;  /* sorted by id once the scan is done */
    size_t n_chunks, cap_chunks;
    char **damage;      /* why each damaged chunk is damaged */
    size_t n_damage, cap_damage;
    bad_ref *bad;
    size_t n_bad, cap_bad;
    obj_ent *objs;      /* sorted by id */
    size_t n_objs;
} fsck;

/* Internal: the database itself failed a read, recorded as a "database"
 * problem; the checks stop there. */
#define STOP 1

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*p, ncap * size);
    if (!np)
        return WD_NOMEM();
    *p = np;
    *cap = ncap;
    return 0;
}

static int idx_add(idx_list *l, size_t v)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == v)
            return 0;
    int rc = grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v);
    if (!rc)
        l->v[l->n++] = v;
    return rc;
}

static void short_hex(char out[WD_HEX_SIZE], const uint8_t id[WD_HASH_SIZE])
{
    wd__hex(out, id);
    out[WD_SHORT_HEX] = '\0';
}

/* Adds a problem; chunk, object and name may be NULL. *out_index (may be
 * NULL) gets its index, for the objects it hits directly. */
static int add_problem(fsck *f, const char *kind, const uint8_t *chunk, const uint8_t *object, const char *name,
                       size_t *out_index, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 7, 8)))
#endif
    ;

static int add_problem(fsck *f, const char *kind, const uint8_t *chunk, const uint8_t *object, const char *name,
                       size_t *out_index, const char *fmt, ...)
{
    wd_fsck_report *r = f->r;
    size_t cap = f->cap_problems;
    int rc = grow((void **)&r->problems, &f->cap_problems, r->n_problems + 1, sizeof *r->problems);
    if (!rc && f->cap_problems != cap) {
        idx_list *nd = realloc(f->direct, f->cap_problems * sizeof *nd);
        if (nd) {
            memset(nd + cap, 0, (f->cap_problems - cap) * sizeof *nd);
            f->direct = nd;
        }
        idx_list *ns = nd ? realloc(f->self, f->cap_problems * sizeof *ns) : NULL;
        if (!ns)
            return WD_NOMEM();
        memset(ns + cap, 0, (f->cap_problems - cap) * sizeof *ns);
        f->self = ns;
    }
    if (rc)
        return rc;
    wd_fsck_problem *p = &r->problems[r->n_problems];
    memset(p, 0, sizeof *p);
    p->kind = kind;
    if (chunk)
        wd__hex(p->chunk, chunk);
    if (object)
        wd__hex(p->object, object);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!(p->message = strdup(msg)) || (name && !(p->name = strdup(name)))) {
        free(p->message);
        return WD_NOMEM();
    }
    if (out_index)
        *out_index = r->n_problems;
    r->n_problems++;
    return 0;
}

/* A problem an object has on its own: it hits that object (and, through
 * the lineage, every object built on it). */
static int object_problem(fsck *f, const char *kind, size_t obj, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int object_problem(fsck *f, const char *kind, size_t obj, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t pi;
    int rc = add_problem(f, kind, NULL, f->objs[obj].id, NULL, &pi, "%s", msg);
    if (rc || !strcmp(kind, "size"))
        return rc; /* a wrong recorded size hits nothing: the data is intact */
    /* A wrong model hash record hits the object only: its children's data
     * does not depend on it. */
    return idx_add(!strcmp(kind, "model_hash") ? &f->self[pi] : &f->direct[pi], obj);
}

/* A read of the database failed: SQLite-level damage becomes a problem and
 * stops the check; anything else (busy, I/O, memory) is the caller's
 * error. */
static int db_failed(fsck *f, int rc)
{
    if (rc != WD_ECORRUPT)
        return rc;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", wd_errmsg());
    int e = add_problem(f, "database", NULL, NULL, NULL, NULL, "%s; the check stopped here", msg);
    return e ? e : STOP;
}

/* "stored data is damaged (why)" out of a chunk decode failure, which reads
 * "chunk <id>: stored data is damaged (why); run 'wdrepo fsck'". */
static void damage_reason(char *out, size_t size)
{
    static const char tail[] = "; run 'wdrepo fsck'";
    const char *msg = wd_errmsg(), *colon = strstr(msg, ": ");
    snprintf(out, size, "%s", !strncmp(msg, "chunk ", 6) && colon ? colon + 2 : msg);
    size_t n = strlen(out), t = sizeof tail - 1;
    if (n >= t && !strcmp(out + n - t, tail))
        out[n - t] = '\0';
}

/* ---- 1. SQLite's own check -------------------------------------------------- */

static int check_database(fsck *f)
{
    sqlite3_stmt *st;
    const char *sql = (f->flags & WD_FSCK_FULL) ? "PRAGMA integrity_check(100)" : "PRAGMA quick_check(100)";
    int rc = wd__db_prepare(f->repo->db, &st, sql);
    if (rc)
        return db_failed(f, rc);
    int row, bad = 0;
    while ((row = wd__db_step(f->repo->db, st, "checking the database")) > 0) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        if (text && !strcmp(text, "ok"))
            continue;
        bad = 1;
        /* A row may hold several lines; one problem each, without SQLite's
         * "*** in database main ***" headings. */
        for (const char *p = text ? text : "(no detail)"; !rc && *p;) {
            size_t len = strcspn(p, "\n");
            if (len && strncmp(p, "*** ", 4))
                rc = add_problem(f, "database", NULL, NULL, NULL, NULL, "%.*s", (int)len, p);
            p += len + (p[len] == '\n');
        }
        if (rc)
            break;
    }
    sqlite3_finalize(st);
    if (!rc && row < 0)
        rc = db_failed(f, row);
    /* A database that fails its own check can mislead every later read. */
    return rc ? rc : bad ? STOP : 0;
}

/* ---- 2. every chunk decoded and re-hashed ------------------------------------ */

typedef struct {
    uint8_t id[WD_HASH_SIZE];
    int id_ok;
    int64_t seq, raw_size;
    int codec;
    wd_buf data;
    char why[256]; /* "" when intact */
} scan_job;

typedef struct {
    scan_job *jobs;
    size_t n;
    ZSTD_DCtx **dctx; /* per worker slot */
    uint8_t **out;    /* per worker slot: WD_CHUNK_RAW_MAX bytes */
} scan_batch;

static int scan_one(void *ctx, size_t i, int worker)
{
    scan_batch *b = ctx;
    scan_job *j = &b->jobs[i];
    j->why[0] = '\0';
    if (!j->id_ok)
        snprintf(j->why, sizeof j->why, "its id is not %d bytes", WD_HASH_SIZE);
    else if (j->raw_size < 0 || j->raw_size > (int64_t)WD_CHUNK_RAW_MAX)
        snprintf(j->why, sizeof j->why, "stored data is damaged (claims %lld raw bytes, over the %u limit)",
                 (long long)j->raw_size, WD_CHUNK_RAW_MAX);
    else if (wd__chunk_decode(NULL, b->dctx[worker], j->id, j->codec, j->data.data, j->data.len,
                              (uint64_t)j->raw_size, b->out[worker], WD_DECODE_CHECK))
        damage_reason(j->why, sizeof j->why);
    return 0;
}

/* Reads up to cap rows into b; *more = 0 at the end of the table. Stops
 * early at about 64 MiB of stored bytes, a bound on what a batch holds. */
static int scan_fill(fsck *f, sqlite3_stmt *st, scan_batch *b, size_t cap, int *more)
{
    uint64_t bytes = 0;
    b->n = 0;
    while (*more && b->n < cap && bytes < (64u << 20)) {
        int row = wd__db_step(f->repo->db, st, "reading chunks");
        if (row < 0)
            return db_failed(f, row);
        if (row == 0) {
            *more = 0;
            break;
        }
        scan_job *j = &b->jobs[b->n];
        j->seq = sqlite3_column_int64(st, 0);
        j->id_ok = sqlite3_column_bytes(st, 1) == WD_HASH_SIZE;
        if (j->id_ok)
            memcpy(j->id, sqlite3_column_blob(st, 1), WD_HASH_SIZE);
        j->raw_size = sqlite3_column_int64(st, 2);
        j->codec = sqlite3_column_int(st, 3);
        const void *data = sqlite3_column_blob(st, 4);
        size_t len = (size_t)sqlite3_column_bytes(st, 4);
        j->data.len = 0;
        int rc = wd__buf_reserve(&j->data, len + 1);
        if (rc)
            return rc;
        if (len)
            memcpy(j->data.data, data, len);
        j->data.len = len;
        bytes += len;
        b->n++;
    }
    return 0;
}

/* Records a scanned batch into the chunk set. */
static int scan_collect(fsck *f, const scan_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const scan_job *j = &b->jobs[i];
        f->r->n_chunks++;
        f->r->chunk_bytes += j->data.len;
        if (!j->id_ok) {
            int rc = add_problem(f, "chunk", NULL, NULL, NULL, NULL, "chunk row %lld: %s", (long long)j->seq, j->why);
            if (rc)
                return rc;
            continue;
        }
        int rc = grow((void **)&f->chunks, &f->cap_chunks, f->n_chunks + 1, sizeof *f->chunks);
        if (rc)
            return rc;
        chunk_ent *c = &f->chunks[f->n_chunks++];
        memcpy(c->id, j->id, WD_HASH_SIZE);
        c->stored = (uint32_t)(j->data.len > UINT32_MAX ? UINT32_MAX : j->data.len);
        c->raw = j->raw_size >= 0 && j->raw_size <= (int64_t)WD_CHUNK_RAW_MAX ? (uint32_t)j->raw_size : 0;
        c->damage = -1;
        if (j->why[0]) {
            if ((rc = grow((void **)&f->damage, &f->cap_damage, f->n_damage + 1, sizeof *f->damage)))
                return rc;
            if (!(f->damage[f->n_damage] = strdup(j->why)))
                return WD_NOMEM();
            c->damage = (int32_t)f->n_damage++;
        } else {
            f->r->raw_bytes += c->raw;
        }
    }
    return 0;
}

static int cmp_chunk(const void *a, const void *b)
{
    return memcmp(a, b, WD_HASH_SIZE);
}

static int scan_chunks(fsck *f, wd_pool *pool)
{
    wd_repo *repo = f->repo;
    uint64_t raw_total = 0, raw_done = 0;
    sqlite3_stmt *st = NULL;
    int rc = wd__db_prepare(repo->db, &st, "SELECT coalesce(sum(raw_size), 0) FROM chunk");
    if (rc)
        return db_failed(f, rc);
    int row = wd__db_step(repo->db, st, "counting chunks");
    if (row > 0)
        raw_total = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (row < 0)
        return db_failed(f, row);

    int nslots = wd__pool_size(pool);
    size_t cap = 2 * (size_t)nslots;
    scan_batch b[2];
    memset(b, 0, sizeof b);
    ZSTD_DCtx **dctx = calloc((size_t)nslots, sizeof *dctx);
    uint8_t **out = calloc((size_t)nslots, sizeof *out);
    scan_job *jobs = calloc(2 * cap, sizeof *jobs);
    rc = dctx && out && jobs ? 0 : WD_NOMEM();
    for (int i = 0; !rc && i < nslots; i++)
        if (!(dctx[i] = ZSTD_createDCtx()) || !(out[i] = malloc(WD_CHUNK_RAW_MAX)))
            rc = WD_NOMEM();
    for (int i = 0; i < 2; i++)
        b[i] = (scan_batch){jobs ? jobs + (size_t)i * cap : NULL, 0, dctx, out};
    if (!rc)
        rc = wd__db_prepare(repo->db, &st, "SELECT seq, id, raw_size, codec, data FROM chunk ORDER BY seq");
    if (rc && rc != WD_ENOMEM)
        rc = db_failed(f, rc);
    /* The caller reads batch i+1 from the table while the workers decode
     * and hash batch i. */
    int more = 1, cur = 0, running = 0;
    if (!rc)
        rc = scan_fill(f, st, &b[cur], cap, &more);
    while (!rc && b[cur].n) {
        wd__pool_start(pool, b[cur].n, scan_one, &b[cur]);
        running = 1;
        int nxt = !cur;
        rc = scan_fill(f, st, &b[nxt], cap, &more);
        wd__pool_wait(pool);
        running = 0;
        if (!rc)
            rc = scan_collect(f, &b[cur]);
        for (size_t i = 0; i < b[cur].n; i++)
            raw_done += b[cur].jobs[i].raw_size > 0 ? (uint64_t)b[cur].jobs[i].raw_size : 0;
        if (f->opt && f->opt->progress)
            f->opt->progress(f->opt->progress_ud, "fsck", raw_done, raw_total);
        b[cur].n = 0;
        cur = nxt;
    }
    if (running)
        wd__pool_wait(pool);
    sqlite3_finalize(st);
    for (size_t i = 0; jobs && i < 2 * cap; i++)
        wd__buf_free(&jobs[i].data);
    free(jobs);
    for (int i = 0; i < nslots; i++) {
        if (dctx)
            ZSTD_freeDCtx(dctx[i]);
        if (out)
            free(out[i]);
    }
    free(dctx);
    free(out);
    if (!rc && f->n_chunks)
        qsort(f->chunks, f->n_chunks, sizeof *f->chunks, cmp_chunk);
    return rc;
}

static const chunk_ent *find_chunk(const fsck *f, const uint8_t id[WD_HASH_SIZE])
{
    return f->n_chunks ? bsearch(id, f->chunks, f->n_chunks, sizeof *f->chunks, cmp_chunk) : NULL;
}

/* ---- 3. objects and their lineage ---------------------------------------------- */

static int cmp_obj(const void *a, const void *b)
{
    return memcmp(((const obj_ent *)a)->id, ((const obj_ent *)b)->id, WD_HASH_SIZE);
}

static long find_obj(const fsck *f, const uint8_t id[WD_HASH_SIZE])
{
    size_t lo = 0, hi = f->n_objs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(f->objs[mid].id, id, WD_HASH_SIZE);
        if (!c)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static int copy_hash(sqlite3_stmt *st, int col, uint8_t out[WD_HASH_SIZE])
{
    if (sqlite3_column_bytes(st, col) != WD_HASH_SIZE)
        return 0;
    memcpy(out, sqlite3_column_blob(st, col), WD_HASH_SIZE);
    return 1;
}

static char *dup_text(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    return strdup(s ? s : "");
}

static int load_objects(fsck *f)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc = wd__db_prepare(f->repo->db, &st,
                            "SELECT id, kind, parent, strategy, options, model_hash, parent_model_hash, n_tensors, "
                            "tensor_bytes, f32_hash, seq FROM (SELECT rowid AS seq, * FROM object)");
    if (rc)
        return db_failed(f, rc);
    int row;
    while ((row = wd__db_step(f->repo->db, st, "reading objects")) > 0) {
        if (sqlite3_column_bytes(st, 0) != WD_HASH_SIZE) {
            if ((rc = add_problem(f, "object", NULL, NULL, NULL, NULL, "object row %lld: its id is not %d bytes",
                                  (long long)sqlite3_column_int64(st, 10), WD_HASH_SIZE)))
                break;
            continue;
        }
        if ((rc = grow((void **)&f->objs, &cap, f->n_objs + 1, sizeof *f->objs)))
            break;
        obj_ent *o = &f->objs[f->n_objs++];
        memset(o, 0, sizeof *o);
        copy_hash(st, 0, o->id);
        const char *kind = (const char *)sqlite3_column_text(st, 1);
        o->is_base = kind && !strcmp(kind, "base");
        o->has_parent = copy_hash(st, 2, o->parent);
        o->has_model_hash = copy_hash(st, 5, o->model_hash);
        o->has_pmh = copy_hash(st, 6, o->parent_model_hash);
        o->has_f32 = copy_hash(st, 9, o->f32_hash);
        o->n_tensors = (uint64_t)sqlite3_column_int64(st, 7);
        o->tensor_bytes = (uint64_t)sqlite3_column_int64(st, 8);
        o->parent_idx = -1;
        o->strategy = dup_text(st, 3);
        o->options = dup_text(st, 4);
        if (!o->strategy || !o->options) {
            rc = WD_NOMEM();
            break;
        }
    }
    sqlite3_finalize(st);
    if (!rc && row < 0)
        rc = db_failed(f, row);
    if (rc)
        return rc;
    if (f->n_objs)
        qsort(f->objs, f->n_objs, sizeof *f->objs, cmp_obj);
    wd_fsck_report *r = f->r;
    r->n_objects = f->n_objs;
    r->objects = calloc(f->n_objs ? f->n_objs : 1, sizeof *r->objects);
    if (!r->objects)
        return WD_NOMEM();
    for (size_t i = 0; i < f->n_objs; i++) {
        wd__hex(r->objects[i].id, f->objs[i].id);
        snprintf(r->objects[i].kind, sizeof r->objects[i].kind, "%s", f->objs[i].is_base ? "base" : "delta");
    }
    return 0;
}

/* Parent links: each exists and records the model hash its parent has; no
 * chain loops. */
static int check_lineage(fsck *f)
{
    char a[WD_HEX_SIZE], b[WD_HEX_SIZE];
    int rc = 0;
    for (size_t i = 0; !rc && i < f->n_objs; i++) {
        obj_ent *o = &f->objs[i];
        if (!o->has_model_hash)
            rc = object_problem(f, "object", i, "no model hash recorded");
        if (rc || o->is_base) {
            if (!rc && o->has_parent) {
                short_hex(a, o->parent);
                rc = object_problem(f, "lineage", i, "a base with a parent (%s)", a);
            }
            continue;
        }
        if (!o->has_parent) {
            rc = object_problem(f, "lineage", i, "a delta without a parent");
            continue;
        }
        o->parent_idx = find_obj(f, o->parent);
        short_hex(a, o->parent);
        if (o->parent_idx < 0) {
            rc = object_problem(f, "lineage", i, "its parent %s is not in the repository", a);
        } else if (!o->has_pmh || !f->objs[o->parent_idx].has_model_hash ||
                   memcmp(o->parent_model_hash, f->objs[o->parent_idx].model_hash, WD_HASH_SIZE)) {
            if (o->has_pmh)
                short_hex(b, o->parent_model_hash);
            rc = object_problem(f, "lineage", i, "records parent model hash %s, but its parent %s has another",
                                o->has_pmh ? b : "(none)", a);
        }
    }
    /* Loops: walk each chain; one that runs longer than there are objects
     * loops. */
    for (size_t i = 0; !rc && i < f->n_objs; i++) {
        long cur = (long)i;
        size_t steps = 0;
        while (cur >= 0 && !f->objs[cur].is_base && steps <= f->n_objs) {
            cur = f->objs[cur].parent_idx;
            steps++;
        }
        if (cur >= 0 && f->objs[cur].is_base) {
            f->objs[i].lineage_ok = 1;
            continue;
        }
        if (steps <= f->n_objs)
            continue; /* a missing parent, reported above */
        /* Report the loop at its members; the objects below it are hit
         * through the lineage. */
        cur = f->objs[i].parent_idx;
        for (steps = 0; cur >= 0 && cur != (long)i && steps <= f->n_objs; steps++)
            cur = f->objs[cur].parent_idx;
        if (cur == (long)i)
            rc = object_problem(f, "lineage", i, "its parent links loop");
    }
    return rc;
}

/* ---- 4. manifests --------------------------------------------------------------- */

/* A tensor of the parent, for what a delta's tensor decodes against. */
typedef struct {
    char *name;
    wd_dtype dtype;
    uint64_t nelem, chunk_elems;
    int ok; /* its row parsed */
} ptensor;

typedef struct {
    ptensor *v;
    size_t n;
} ptensors;

static void ptensors_free(ptensors *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].name);
    free(p->v);
    memset(p, 0, sizeof *p);
}

static int load_ptensors(fsck *f, const uint8_t id[WD_HASH_SIZE], ptensors *out)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc = wd__db_prepare(f->repo->db, &st,
                            "SELECT name, dtype, shape, chunk_elems FROM tensor WHERE object = ?1 ORDER BY name");
    if (rc)
        return db_failed(f, rc);
    wd__bind_hash(st, 1, id);
    int row;
    while ((row = wd__db_step(f->repo->db, st, "reading tensors")) > 0) {
        if ((rc = grow((void **)&out->v, &cap, out->n + 1, sizeof *out->v)))
            break;
        ptensor *p = &out->v[out->n++];
        memset(p, 0, sizeof *p);
        if (!(p->name = dup_text(st, 0))) {
            rc = WD_NOMEM();
            break;
        }
        const char *dt = (const char *)sqlite3_column_text(st, 1), *shape = (const char *)sqlite3_column_text(st, 2);
        int ndim;
        uint64_t dims[WD_MAX_DIMS];
        p->chunk_elems = (uint64_t)sqlite3_column_int64(st, 3);
        p->ok = dt && shape && !wd__dtype_parse(dt, strlen(dt), &p->dtype) &&
                !wd__shape_parse(shape, &ndim, dims, &p->nelem);
    }
    sqlite3_finalize(st);
    if (!rc && row < 0)
        rc = db_failed(f, row);
    return rc;
}

static const ptensor *find_ptensor(const ptensors *p, const char *name)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->v[mid].name, name);
        if (!c)
            return &p->v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* A shard of the object being checked: what its header chunks hold and
 * what its tensors add, against its recorded size. */
typedef struct {
    char *path;
    uint64_t size, header, data;
    int header_known; /* every header chunk is present */
} shard;

typedef struct {
    shard *v;
    size_t n, cap;
} shards;

static void shards_free(shards *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].path);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* Checks a chunk list: every chunk present and intact (else a bad_ref with
 * where), raw sizes as want(k) says (want NULL: any). *out_raw, *out_stored
 * (may be NULL) sum what the present chunks hold; *all_present says whether
 * the sums are complete. Returns a status; mismatched sizes are problems. */
typedef uint64_t (*want_fn)(const void *ctx, size_t k);

static int check_chunks(fsck *f, size_t obj, const uint8_t *ids, size_t n, want_fn want, const void *want_ctx,
                        const char *where, int file, uint64_t *out_raw, uint64_t *out_stored, int *all_present)
{
    uint64_t raw = 0, stored = 0;
    int present = 1, rc = 0;
    for (size_t k = 0; !rc && k < n; k++) {
        const uint8_t *id = ids + k * WD_HASH_SIZE;
        const chunk_ent *c = find_chunk(f, id);
        if (!c || c->damage >= 0) {
            present = 0;
            if ((rc = grow((void **)&f->bad, &f->cap_bad, f->n_bad + 1, sizeof *f->bad)))
                break;
            bad_ref *b = &f->bad[f->n_bad];
            memcpy(b->id, id, WD_HASH_SIZE);
            b->obj = obj;
            b->file = file;
            if (!(b->where = strdup(where))) {
                rc = WD_NOMEM();
                break;
            }
            f->n_bad++;
            continue;
        }
        raw += c->raw;
        stored += c->stored;
        if (want && c->raw != want(want_ctx, k)) {
            char hex[WD_HEX_SIZE];
            short_hex(hex, id);
            rc = object_problem(f, "object", obj, "%s: chunk %s holds %u bytes, its place needs %llu", where, hex,
                                c->raw, (unsigned long long)want(want_ctx, k));
        }
    }
    if (out_raw)
        *out_raw = raw;
    if (out_stored)
        *out_stored = stored;
    *all_present = present;
    return rc;
}

typedef struct {
    uint64_t total, step; /* bytes in all, bytes a chunk */
} span;

static uint64_t span_want(const void *ctx, size_t k)
{
    const span *s = ctx;
    uint64_t left = s->total - (uint64_t)k * s->step;
    return left < s->step ? left : s->step;
}

static int check_files(fsck *f, size_t obj, wd_manifest *m, shards *sh)
{
    char oid[WD_HEX_SIZE], where[600];
    short_hex(oid, f->objs[obj].id);
    sqlite3_stmt *st;
    int rc = wd__db_prepare(f->repo->db, &st,
                            "SELECT path, is_shard, size, chunks FROM file WHERE object = ?1 ORDER BY path");
    if (rc)
        return db_failed(f, rc);
    wd__bind_hash(st, 1, f->objs[obj].id);
    int row;
    while (!rc && (row = wd__db_step(f->repo->db, st, "reading files")) > 0) {
        const char *path = (const char *)sqlite3_column_text(st, 0);
        int is_shard = sqlite3_column_int(st, 1);
        uint64_t size = (uint64_t)sqlite3_column_int64(st, 2);
        const uint8_t *ids = sqlite3_column_blob(st, 3);
        int len = sqlite3_column_bytes(st, 3);
        path = path ? path : "";
        snprintf(where, sizeof where, "object %s file '%s'", oid, path);
        if (!wd__rel_path_ok(path)) {
            rc = object_problem(f, "object", obj, "file '%s': not a plain file name", path);
            continue;
        }
        if (len % WD_HASH_SIZE) {
            rc = object_problem(f, "object", obj, "file '%s': its chunk list has a partial id", path);
            continue;
        }
        size_t n = (size_t)len / WD_HASH_SIZE;
        uint64_t raw = 0;
        int present;
        span sp = {0, WD_CHUNK_TARGET};
        if ((rc = check_chunks(f, obj, ids, n, NULL, &sp, where, 1, &raw, NULL, &present)))
            break;
        wd__manifest_file(m, path, is_shard, size, ids, n);
        if (!is_shard) {
            if (present && raw != size)
                rc = object_problem(f, "object", obj, "file '%s': its chunks hold %llu bytes, recorded %llu", path,
                                    (unsigned long long)raw, (unsigned long long)size);
            continue;
        }
        if ((rc = grow((void **)&sh->v, &sh->cap, sh->n + 1, sizeof *sh->v)))
            break;
        shard *s = &sh->v[sh->n];
        memset(s, 0, sizeof *s);
        if (!(s->path = strdup(path))) {
            rc = WD_NOMEM();
            break;
        }
        sh->n++;
        s->size = size;
        s->header = raw;
        s->header_known = present;
    }
    sqlite3_finalize(st);
    if (!rc && row < 0)
        rc = db_failed(f, row);
    return rc;
}

/* Array element counts a lossy tensor of n elements needs. */
static int check_array_counts(fsck *f, size_t obj, const char *name, const wd_lossy *L, uint64_t n)
{
    const wd_astream *a = L->arrays;
    const char *bad = NULL;
    if (L->strategy == WD__WS_SPARSE && a[WD__WF_INDICES].count != a[WD__WF_VALUES].count)
        bad = "indices and values differ in count";
    else if (L->strategy == WD__WS_QUANTIZED &&
             (a[WD__WF_PACKED_SIGNS].count != (n + 7) / 8 || !L->n_cols || a[WD__WF_SCALES].count != n / L->n_cols))
        bad = "signs or scales do not fit its size";
    else if (L->strategy == WD__WS_INT4 &&
             (a[WD__WF_OUTLIER_IDX].count != a[WD__WF_OUTLIER_VALS].count ||
              a[WD__WF_PACKED].count != wd__int4_packed_len(L->layout, n, a[WD__WF_OUTLIER_IDX].count)))
        bad = "outliers or codes do not fit its size";
    else if (L->strategy == WD__WS_LOWBIT && /* (issue 11) */
             (!L->n_cols || a[WD__WF_PACKED].count != n || a[WD__WF_SCALES].count != (n + L->n_cols - 1) / L->n_cols ||
              a[WD__WF_INDICES].count != (uint64_t)L->rank * L->n_cols ||
              a[WD__WF_VALUES].count != (uint64_t)L->rank * (n / L->n_cols)))
        bad = "codes or gains do not fit its size";
    return bad ? object_problem(f, "object", obj, "tensor '%s': %s", name, bad) : 0;
}

/* The arrays of one lossy tensor; *stored sums their stored bytes. */
static int check_arrays(fsck *f, size_t obj, const char *name, const wd_lossy *L, uint64_t *stored, int *present)
{
    char oid[WD_HEX_SIZE], where[600];
    short_hex(oid, f->objs[obj].id);
    const int *fields;
    size_t nf = wd__wdelta_fields_of(L->strategy, &fields);
    int rc = 0;
    *stored = 0;
    *present = 1;
    for (size_t i = 0; !rc && i < nf; i++) {
        int fi = fields[i];
        if (fi == WD__WF_SCALE || fi == WD__WF_ZERO_POINT)
            continue;
        const wd_astream *a = &L->arrays[fi];
        const char *field = wd__wdelta_field_name(fi);
        if (!a->chunks) {
            rc = object_problem(f, "object", obj, "tensor '%s': its '%s' array is missing", name, field);
            continue;
        }
        uint64_t total = a->count * wd__dtype_size(a->dtype);
        if ((total + WD_ASTREAM_CHUNK - 1) / WD_ASTREAM_CHUNK != a->n_chunks) {
            rc = object_problem(f, "object", obj, "tensor '%s' array '%s': %zu chunks for %llu bytes", name, field,
                                a->n_chunks, (unsigned long long)total);
            continue;
        }
        snprintf(where, sizeof where, "object %s tensor '%s' array '%s'", oid, name, field);
        span sp = {total, WD_ASTREAM_CHUNK};
        uint64_t st_bytes = 0;
        int all;
        if ((rc = check_chunks(f, obj, a->chunks, a->n_chunks, span_want, &sp, where, 0, NULL, &st_bytes, &all)))
            break;
        *present &= all;
        *stored += a->stored_bytes;
        if (all && st_bytes != a->stored_bytes)
            rc = object_problem(f, "size", obj, "tensor '%s' array '%s': records %llu stored bytes, its chunks hold %llu",
                                name, field, (unsigned long long)a->stored_bytes, (unsigned long long)st_bytes);
    }
    return rc;
}

/* One tensor row; adds its manifest line. *row_ok = 0 when the row itself
 * is unreadable (the manifest is then not worth comparing). */
static int check_tensor(fsck *f, size_t obj, sqlite3_stmt *st, const ptensors *par, shards *sh, wd_manifest *m,
                        uint64_t *nbytes_sum, int *row_ok)
{
    const obj_ent *o = &f->objs[obj];
    char oid[WD_HEX_SIZE], where[600];
    short_hex(oid, o->id);
    const char *name = (const char *)sqlite3_column_text(st, 0), *file = (const char *)sqlite3_column_text(st, 1);
    const char *dt = (const char *)sqlite3_column_text(st, 3), *shape = (const char *)sqlite3_column_text(st, 4);
    const char *enc = (const char *)sqlite3_column_text(st, 6), *params = (const char *)sqlite3_column_text(st, 10);
    int64_t ordinal = sqlite3_column_int64(st, 2);
    uint64_t nbytes = (uint64_t)sqlite3_column_int64(st, 5), chunk_elems = (uint64_t)sqlite3_column_int64(st, 7);
    uint64_t stored_bytes = (uint64_t)sqlite3_column_int64(st, 9);
    const uint8_t *ids = sqlite3_column_blob(st, 8);
    int ids_len = sqlite3_column_bytes(st, 8);
    name = name ? name : "";
    *nbytes_sum += nbytes;
    wd_stored_tensor t;
    memset(&t, 0, sizeof t);
    t.name = (char *)(uintptr_t)name;
    if (!file || !dt || !shape || !enc || strlen(enc) >= sizeof t.encoding ||
        wd__dtype_parse(dt, strlen(dt), &t.dtype) || wd__shape_parse(shape, &t.ndim, t.shape, &t.nelem)) {
        *row_ok = 0;
        return object_problem(f, "object", obj, "tensor '%s': its row is malformed (dtype, shape, file or encoding)",
                              name);
    }
    size_t esz = wd__dtype_size(t.dtype);
    if (nbytes != t.nelem * esz || chunk_elems == 0 || chunk_elems * esz > WD_CHUNK_RAW_MAX || ids_len % WD_HASH_SIZE) {
        *row_ok = 0;
        return object_problem(f, "object", obj, "tensor '%s': its sizes are inconsistent", name);
    }
    snprintf(t.encoding, sizeof t.encoding, "%s", enc);
    t.chunk_elems = chunk_elems;
    size_t n_ids = (size_t)ids_len / WD_HASH_SIZE;
    int lossy = wd__lossy_strategy_of(enc) >= 0;
    int rc = 0;
    if (lossy && (rc = wd__lossy_load(f->repo, o->id, &t, params))) {
        if (rc != WD_ECORRUPT)
            return rc;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", wd_errmsg());
        *row_ok = 0;
        return object_problem(f, "object", obj, "%s", msg);
    }
    wd_lossy *L = t.lossy;
    wd__manifest_tensor(m, name, file, ordinal, t.dtype, t.ndim, t.shape, enc, chunk_elems, ids, n_ids, L);

    size_t si = 0;
    while (si < sh->n && strcmp(sh->v[si].path, file))
        si++;
    if (si < sh->n)
        sh->v[si].data += nbytes;
    else
        rc = object_problem(f, "object", obj, "tensor '%s': its shard '%s' is not among the object's files", name,
                            file);

    uint64_t npieces = (t.nelem + chunk_elems - 1) / chunk_elems;
    if (!rc && strcmp(enc, "planes")) {
        /* Everything but "planes" decodes against the parent's tensor. */
        const ptensor *p = par ? find_ptensor(par, name) : NULL;
        if (o->is_base)
            rc = object_problem(f, "object", obj, "tensor '%s': a base tensor encoded '%s'", name, enc);
        else if (par && (!p || !p->ok || p->nelem != t.nelem ||
                         (!lossy && (p->dtype != t.dtype || p->chunk_elems != chunk_elems)) ||
                         (lossy && !wd__f32_convertible(p->dtype))))
            rc = object_problem(f, "lineage", obj, "tensor '%s' is encoded against a parent tensor that does not fit",
                                name);
    }
    snprintf(where, sizeof where, "object %s tensor '%s'", oid, name);
    if (rc) {
        /* reported */
    } else if (!strcmp(enc, "planes") || !strcmp(enc, "delta-planes")) {
        if (n_ids != npieces) {
            rc = object_problem(f, "object", obj, "tensor '%s': %zu chunks for %llu pieces", name, n_ids,
                                (unsigned long long)npieces);
        } else {
            span sp = {nbytes, chunk_elems * esz};
            uint64_t st_bytes = 0;
            int all;
            rc = check_chunks(f, obj, ids, n_ids, span_want, &sp, where, 0, NULL, &st_bytes, &all);
            if (!rc && all && st_bytes != stored_bytes)
                rc = object_problem(f, "size", obj, "tensor '%s': records %llu stored bytes, its chunks hold %llu",
                                    name, (unsigned long long)stored_bytes, (unsigned long long)st_bytes);
        }
    } else if (!strcmp(enc, "same")) {
        if (n_ids)
            rc = object_problem(f, "object", obj, "tensor '%s': 'same' with chunks of its own", name);
        else if (stored_bytes)
            rc = object_problem(f, "size", obj, "tensor '%s': 'same' records %llu stored bytes", name,
                                (unsigned long long)stored_bytes);
    } else if (lossy) {
        uint64_t arrays_stored = 0;
        int all;
        if (n_ids)
            rc = object_problem(f, "object", obj, "tensor '%s': a lossy tensor with chunks of its own", name);
        if (!rc)
            rc = check_arrays(f, obj, name, L, &arrays_stored, &all);
        if (!rc)
            rc = check_array_counts(f, obj, name, L, t.nelem);
        if (!rc && all && arrays_stored != stored_bytes)
            rc = object_problem(f, "size", obj, "tensor '%s': records %llu stored bytes, its arrays hold %llu", name,
                                (unsigned long long)stored_bytes, (unsigned long long)arrays_stored);
    } else {
        *row_ok = 0;
        rc = object_problem(f, "object", obj, "tensor '%s': unknown encoding '%s'", name, enc);
    }
    wd__lossy_free(L);
    return rc;
}

static int check_object(fsck *f, size_t obj)
{
    obj_ent *o = &f->objs[obj];
    ptensors par = {0};
    shards sh = {0, 0, 0};
    wd_manifest m;
    char a[WD_HEX_SIZE], b[WD_HEX_SIZE];
    int rc = wd__manifest_begin(&m, o->has_parent ? o->parent : o->id, o->strategy, o->options);
    if (!rc && !o->is_base && o->parent_idx >= 0)
        rc = load_ptensors(f, o->parent, &par);
    if (!rc)
        rc = check_files(f, obj, &m, &sh);

    int rows_ok = 1;
    uint64_t n_tensors = 0, nbytes = 0;
    sqlite3_stmt *st = NULL;
    if (!rc && (rc = wd__db_prepare(f->repo->db, &st,
                                    "SELECT name, file, ordinal, dtype, shape, nbytes, encoding, chunk_elems, chunks, "
                                    "stored_bytes, params FROM tensor WHERE object = ?1 ORDER BY name")))
        rc = db_failed(f, rc);
    if (!rc)
        wd__bind_hash(st, 1, o->id);
    int row = 0;
    while (!rc && (row = wd__db_step(f->repo->db, st, "reading tensors")) > 0) {
        n_tensors++;
        rc = check_tensor(f, obj, st, o->parent_idx >= 0 ? &par : NULL, &sh, &m, &nbytes, &rows_ok);
    }
    sqlite3_finalize(st);
    if (!rc && row < 0)
        rc = db_failed(f, row);

    for (size_t i = 0; !rc && i < sh.n; i++) {
        uint64_t sum = 8 + sh.v[i].header + sh.v[i].data;
        if (sh.v[i].header_known && sum != sh.v[i].size)
            rc = object_problem(f, "object", obj, "shard '%s': header and tensors add up to %llu bytes, recorded %llu",
                                sh.v[i].path, (unsigned long long)sum, (unsigned long long)sh.v[i].size);
    }
    if (!rc && (n_tensors != o->n_tensors || nbytes != o->tensor_bytes))
        rc = object_problem(f, "size", obj, "records %llu tensors of %llu bytes; its rows have %llu of %llu",
                            (unsigned long long)o->n_tensors, (unsigned long long)o->tensor_bytes,
                            (unsigned long long)n_tensors, (unsigned long long)nbytes);
    /* Identity: a delta's id is its manifest's hash; a base's, its model
     * hash. Worth saying only when the rows could be read at all. */
    uint8_t id[WD_HASH_SIZE];
    int mrc = wd__manifest_end(&m, id);
    if (!rc && mrc)
        rc = mrc;
    if (!rc && rows_ok && !o->is_base && o->has_parent && memcmp(id, o->id, WD_HASH_SIZE)) {
        short_hex(a, id);
        rc = object_problem(f, "object", obj, "its rows hash to the manifest %s, not to its id", a);
    }
    /* A base's id is its model hash, or (a later folder with the same
     * weights, FORMAT.md section 3) the folder id its file rows hash to. */
    if (!rc && rows_ok && o->is_base && o->has_model_hash && memcmp(o->model_hash, o->id, WD_HASH_SIZE)) {
        uint8_t folder_id[WD_HASH_SIZE];
        int frc = wd__manifest_base_stored(f->repo, o->id, o->model_hash, folder_id);
        if (frc < 0 && frc != WD_ECORRUPT)
            rc = frc;
        else if (frc || memcmp(folder_id, o->id, WD_HASH_SIZE)) {
            short_hex(b, o->model_hash);
            rc = object_problem(f, "object", obj, "a base whose id is neither its model hash %s nor its folder id", b);
        }
    }
    ptensors_free(&par);
    shards_free(&sh);
    return rc;
}

static int check_names(fsck *f)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(f->repo->db, &st, "SELECT name, object FROM name ORDER BY name");
    if (rc)
        return db_failed(f, rc);
    int row;
    while (!rc && (row = wd__db_step(f->repo->db, st, "reading names")) > 0) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        name = name ? name : "";
        f->r->n_names++;
        uint8_t id[WD_HASH_SIZE];
        char hex[WD_HEX_SIZE];
        if (!copy_hash(st, 1, id))
            rc = add_problem(f, "name", NULL, NULL, name, NULL, "points at a malformed id");
        else if (find_obj(f, id) < 0) {
            short_hex(hex, id);
            rc = add_problem(f, "name", NULL, NULL, name, NULL, "points at %s, which is not in the repository", hex);
        } else if (!wd__name_valid(name))
            rc = add_problem(f, "name", NULL, id, name, NULL, "is not a valid name");
    }
    sqlite3_finalize(st);
    if (!rc && row < 0)
        rc = db_failed(f, row);
    return rc;
}

/* Rows left behind by an object that is gone: its tensors, files or arrays
 * (a removal that stopped half-way would leave them). */
static int check_orphans(fsck *f)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(f->repo->db, &st,
                            "SELECT object, 'tensor' FROM tensor WHERE object NOT IN (SELECT id FROM object) "
                            "UNION SELECT object, 'file' FROM file WHERE object NOT IN (SELECT id FROM object) "
                            "UNION SELECT object, 'tensor_array' FROM tensor_array "
                            "WHERE object NOT IN (SELECT id FROM object) ORDER BY 1, 2");
    if (rc)
        return db_failed(f, rc);
    int row;
    while (!rc && (row = wd__db_step(f->repo->db, st, "looking for rows without an object")) > 0) {
        uint8_t id[WD_HASH_SIZE];
        int whole = copy_hash(st, 0, id);
        rc = add_problem(f, "object", NULL, whole ? id : NULL, NULL, NULL,
                         "%s rows of an object that is not in the repository", (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    if (!rc && row < 0)
        rc = db_failed(f, row);
    return rc;
}

/* ---- 5. what depends on what ---------------------------------------------------- */

static int cmp_bad(const void *a, const void *b)
{
    return memcmp(((const bad_ref *)a)->id, ((const bad_ref *)b)->id, WD_HASH_SIZE);
}

/* One problem per damaged or missing chunk, hitting every object whose
 * manifest uses it; then the damaged chunks nothing uses. */
static int chunk_problems(fsck *f)
{
    if (f->n_bad)
        qsort(f->bad, f->n_bad, sizeof *f->bad, cmp_bad);
    int rc = 0;
    for (size_t i = 0; !rc && i < f->n_bad;) {
        size_t j = i;
        while (j < f->n_bad && !memcmp(f->bad[j].id, f->bad[i].id, WD_HASH_SIZE))
            j++;
        const chunk_ent *c = find_chunk(f, f->bad[i].id);
        size_t pi;
        rc = add_problem(f, "chunk", f->bad[i].id, NULL, NULL, &pi, "%s",
                         c ? f->damage[c->damage] : "missing from the store");
        if (!rc) {
            wd_fsck_problem *p = &f->r->problems[pi];
            p->n_uses = j - i;
            p->where = f->bad[i].where;
            f->bad[i].where = NULL;
        }
        for (size_t k = i; !rc && k < j; k++)
            rc = idx_add(f->bad[k].file ? &f->self[pi] : &f->direct[pi], f->bad[k].obj);
        i = j;
    }
    for (size_t i = 0; !rc && i < f->n_chunks; i++) {
        const chunk_ent *c = &f->chunks[i];
        if (c->damage < 0)
            continue;
        bad_ref key;
        memcpy(key.id, c->id, WD_HASH_SIZE);
        if (f->n_bad && bsearch(&key, f->bad, f->n_bad, sizeof *f->bad, cmp_bad))
            continue;
        rc = add_problem(f, "chunk", c->id, NULL, NULL, NULL, "%s", f->damage[c->damage]);
    }
    return rc;
}

/* Every object a problem hits directly, and every object built on one of
 * those (its children, their children...): a breadth-first walk down the
 * lineage, O(objects) per problem. */
static int close_over_lineage(fsck *f)
{
    size_t n = f->n_objs;
    /* children in CSR form: kids[first[p] .. first[p + 1]) */
    size_t *first = calloc(n + 1, sizeof *first), *kids = calloc(n ? n : 1, sizeof *kids);
    size_t *queue = calloc(n ? n : 1, sizeof *queue), *fill = calloc(n + 1, sizeof *fill);
    size_t *seen = calloc(n ? n : 1, sizeof *seen);
    int rc = first && kids && queue && fill && seen ? 0 : WD_NOMEM();
    for (size_t i = 0; !rc && i < n; i++)
        if (f->objs[i].parent_idx >= 0)
            first[f->objs[i].parent_idx + 1]++;
    for (size_t i = 0; !rc && i < n; i++)
        first[i + 1] += first[i];
    for (size_t i = 0; !rc && i < n; i++) {
        long p = f->objs[i].parent_idx;
        if (p >= 0)
            kids[first[p] + fill[p]++] = i;
    }
    wd_fsck_report *r = f->r;
    for (size_t pi = 0; !rc && pi < r->n_problems; pi++) {
        const idx_list *d = &f->direct[pi], *self = &f->self[pi];
        size_t head = 0, tail = 0, stamp = pi + 1;
        for (size_t k = 0; k < d->n; k++)
            if (seen[d->v[k]] != stamp) {
                seen[d->v[k]] = stamp;
                queue[tail++] = d->v[k];
            }
        while (head < tail) {
            size_t o = queue[head++];
            for (size_t k = first[o]; k < first[o + 1]; k++)
                if (seen[kids[k]] != stamp) {
                    seen[kids[k]] = stamp;
                    queue[tail++] = kids[k];
                }
        }
        for (size_t k = 0; k < self->n; k++)
            if (seen[self->v[k]] != stamp) {
                seen[self->v[k]] = stamp;
                tail++;
            }
        wd_fsck_problem *p = &r->problems[pi];
        free(p->affected);
        p->affected = NULL;
        p->n_affected = 0;
        if (!tail)
            continue;
        if (!(p->affected = malloc(tail * sizeof *p->affected))) {
            rc = WD_NOMEM();
            break;
        }
        /* In id order, as the object list is. */
        size_t m = 0;
        for (size_t o = 0; o < n && m < tail; o++)
            if (seen[o] == stamp)
                p->affected[m++] = o;
        p->n_affected = m;
    }
    r->n_damaged = 0;
    for (size_t i = 0; i < n; i++)
        r->objects[i].damaged = 0;
    for (size_t pi = 0; !rc && pi < r->n_problems; pi++)
        for (size_t k = 0; k < r->problems[pi].n_affected; k++)
            r->objects[r->problems[pi].affected[k]].damaged = 1;
    for (size_t i = 0; i < n; i++)
        r->n_damaged += r->objects[i].damaged;
    free(first);
    free(kids);
    free(queue);
    free(fill);
    free(seen);
    return rc;
}

/* ---- 6. full: every intact object rebuilt ------------------------------------------ */

typedef struct {
    const wd_options *opt;
    uint64_t done, total;
} rebuild_progress;

static void on_rebuilt(void *ud, uint64_t bytes)
{
    rebuild_progress *p = ud;
    p->done += bytes;
    if (p->opt && p->opt->progress)
        p->opt->progress(p->opt->progress_ud, "fsck --full", p->done, p->total);
}

static int rebuild_all(fsck *f, wd_pool *pool)
{
    rebuild_progress prog = {f->opt, 0, 0};
    for (size_t i = 0; i < f->n_objs; i++)
        if (!f->r->objects[i].damaged && f->objs[i].lineage_ok)
            prog.total += f->objs[i].tensor_bytes;
    int rc = 0;
    for (size_t i = 0; !rc && i < f->n_objs; i++) {
        const obj_ent *o = &f->objs[i];
        if (f->r->objects[i].damaged || !o->lineage_ok)
            continue;
        wd_object *obj = NULL;
        uint8_t mh[WD_HASH_SIZE], fh[WD_HASH_SIZE];
        int n_f32 = 0;
        wd_walk_opts wo = {.pool = pool, .lossy_only_f32 = 1, .progress = on_rebuilt, .ud = &prog};
        rc = wd__object_load(f->repo, o->id, &obj);
        if (!rc)
            rc = wd__object_walk(f->repo, obj, &wo, mh, o->has_f32 ? fh : NULL, &n_f32);
        wd__object_free(obj);
        if (rc == WD_ECORRUPT) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", wd_errmsg());
            rc = object_problem(f, "object", i, "does not rebuild: %s", msg);
            continue;
        }
        if (rc)
            break;
        f->r->n_rebuilt++;
        char a[WD_HEX_SIZE], b[WD_HEX_SIZE];
        if (memcmp(mh, o->model_hash, WD_HASH_SIZE)) {
            short_hex(a, mh);
            short_hex(b, o->model_hash);
            rc = object_problem(f, "model_hash", i, "rebuilds to weights hashing to %s, recorded %s", a, b);
        } else if (o->has_f32 && (!n_f32 || memcmp(fh, o->f32_hash, WD_HASH_SIZE))) {
            short_hex(a, fh);
            short_hex(b, o->f32_hash);
            rc = object_problem(f, "model_hash", i, "its float32 reconstruction hashes to %s, recorded %s",
                                n_f32 ? a : "(nothing lossy)", b);
        }
    }
    return rc;
}

/* ---- the whole check --------------------------------------------------------------- */

/* Problems in the order people read them: the database, chunks, objects
 * and lineage, names, model hashes (a stable sort by kind). */
static int kind_rank(const char *kind)
{
    static const char *const order[] = {"database", "chunk", "object", "lineage", "size", "name", "model_hash"};
    for (int i = 0; i < (int)(sizeof order / sizeof *order); i++)
        if (!strcmp(kind, order[i]))
            return i;
    return 99;
}

static void order_problems(fsck *f)
{
    wd_fsck_report *r = f->r;
    /* insertion sort: stable, and problem lists are short */
    for (size_t i = 1; i < r->n_problems; i++) {
        wd_fsck_problem p = r->problems[i];
        size_t j = i;
        while (j > 0 && kind_rank(r->problems[j - 1].kind) > kind_rank(p.kind)) {
            r->problems[j] = r->problems[j - 1];
            j--;
        }
        r->problems[j] = p;
    }
}

static void fsck_clear(fsck *f)
{
    free(f->chunks);
    for (size_t i = 0; i < f->n_damage; i++)
        free(f->damage[i]);
    free(f->damage);
    for (size_t i = 0; i < f->n_bad; i++)
        free(f->bad[i].where);
    free(f->bad);
    for (size_t i = 0; i < f->n_objs; i++) {
        free(f->objs[i].strategy);
        free(f->objs[i].options);
    }
    free(f->objs);
    for (size_t i = 0; f->direct && f->self && i < f->r->n_problems; i++) {
        free(f->direct[i].v);
        free(f->self[i].v);
    }
    free(f->direct);
    free(f->self);
}

int wd_fsck(wd_repo *repo, unsigned flags, const wd_options *opt, wd_fsck_report **out)
{
    *out = NULL;
    fsck f;
    memset(&f, 0, sizeof f);
    f.repo = repo;
    f.opt = opt;
    f.flags = flags;
    if (!(f.r = calloc(1, sizeof *f.r)))
        return WD_NOMEM();
    f.r->full = (flags & WD_FSCK_FULL) != 0;
    wd_pool *pool = NULL;
    int rc = wd__pool_new(&pool, opt ? opt->threads : 0);
    /* One snapshot for the whole check: a commit landing mid-way would
     * otherwise show objects whose chunks the scan did not see. */
    int in_tx = 0;
    if (!rc && !(rc = wd__db_exec(repo->db, "BEGIN")))
        in_tx = 1;
    if (!rc)
        rc = check_database(&f);
    if (!rc)
        rc = scan_chunks(&f, pool);
    if (!rc)
        rc = load_objects(&f);
    if (!rc)
        rc = check_lineage(&f);
    for (size_t i = 0; !rc && i < f.n_objs; i++)
        rc = check_object(&f, i);
    if (!rc)
        rc = check_names(&f);
    if (!rc)
        rc = check_orphans(&f);
    int stopped = rc == STOP;
    if (stopped)
        rc = 0;
    f.r->incomplete = stopped;
    if (!rc)
        rc = chunk_problems(&f);
    if (!rc && f.r->objects)
        rc = close_over_lineage(&f);
    if (!rc && f.r->full && f.r->objects && !stopped) {
        size_t before = f.r->n_problems;
        rc = rebuild_all(&f, pool);
        if (!rc && f.r->n_problems != before)
            rc = close_over_lineage(&f);
    }
    if (in_tx)
        sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
    if (!rc)
        order_problems(&f);
    wd__pool_free(pool);
    if (rc) {
        /* the message of the failure survives the cleanup */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", wd_errmsg());
        fsck_clear(&f);
        wd_fsck_free(f.r);
        return wd__error(rc, "%s", msg);
    }
    fsck_clear(&f);
    *out = f.r;
    return 0;
}

void wd_fsck_free(wd_fsck_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_problems; i++) {
        free(r->problems[i].name);
        free(r->problems[i].where);
        free(r->problems[i].message);
        free(r->problems[i].affected);
    }
    free(r->problems);
    free(r->objects);
    free(r);
}
