/*
 * checkout.c - writing a stored model back as a folder.
 *
 * The folder is built in a temporary directory beside OUT_DIR: shards are
 * laid out as committed (8-byte length, the stored header bytes, tensors in
 * data order), tensor pieces decoded by the pool and written with pwrite at
 * their final offsets. The written folder is then re-read, validated as
 * safetensors and hashed; only a folder whose model hash matches the record
 * is renamed into place.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "db.h"
#include "error.h"
#include "folder.h"
#include "hash.h"
#include "outdir.h"
#include "piece.h"
#include "pipeline.h"
#include "repo_int.h"

typedef struct {
    const wd_stored_tensor *t;
    uint64_t k;
    int fd;
    uint64_t offset; /* file offset of this piece */
    wd_piece_plan plan;
    wd_dtype out_dt; /* written dtype; differs from the tensor's with --dtype */
    uint8_t *dst;    /* small pieces: their place in the batch's stage; NULL: pwrite */
    size_t dst_len;  /* bytes reserved at dst */
} out_job;

/* A tiny piece costs more to hand to a worker and pwrite on its own than
 * to decode: pieces up to STAGE_SMALL bytes that follow each other in the
 * file are gathered in a stage of up to STAGE_CAP bytes, written with one
 * pwrite per batch, and a batch takes up to JOBS_CAP of them. */
#define STAGE_SMALL ((size_t)64 << 10)
#define STAGE_CAP ((size_t)1 << 20)
#define JOBS_CAP 1024

typedef struct {
    out_job *jobs;
    size_t n_jobs;
    wd_piece_scratch **ps; /* per worker */
    uint8_t **out, **conv; /* per worker, a piece as float32 (4 x WD_CHUNK_TARGET bytes) */
    const char *path;
    wd_out_dtype out_dtype;
    uint8_t *stage;      /* STAGE_CAP bytes */
    size_t stage_len;
    uint64_t stage_off;  /* file offset of stage[0] */
} out_ctx;

/* The dtype a tensor is written as: --dtype changes floating-point tensors
 * only, as deltatensors' dtype argument does. */
static wd_dtype written_dtype(wd_dtype dt, wd_out_dtype out)
{
    if (out == WD_OUT_ORIGINAL || !wd__dtype_is_float(dt) || !wd__f32_convertible(dt))
        return dt;
    return out == WD_OUT_FLOAT32 ? WD_DT_F32 : out == WD_OUT_BFLOAT16 ? WD_DT_BF16 : WD_DT_F16;
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off, const char *path)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return wd__error_errno(WD_EIO, "cannot write '%s'", path);
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int decode_job(void *ctxp, size_t i, int worker)
{
    out_ctx *c = ctxp;
    out_job *j = &c->jobs[i];
    int rc = wd__piece_decode(&j->plan, c->ps[worker], c->out[worker]);
    if (rc)
        return rc;
    const uint8_t *piece = c->out[worker];
    size_t len = j->plan.nelem * wd__dtype_size(j->plan.dtype);
    if (j->plan.mode == WD_PIECE_F32) {
        wd__from_f32(c->conv[worker], (const float *)c->out[worker], j->plan.nelem, j->out_dt);
        piece = c->conv[worker];
        len = j->plan.nelem * wd__dtype_size(j->out_dt);
    }
    if (j->dst) {
        if (len != j->dst_len)
            return wd__error(WD_ECORRUPT, "stored piece of tensor '%s' has an unexpected size", j->t->name);
        memcpy(j->dst, piece, len);
        return 0;
    }
    return write_all(j->fd, piece, len, j->offset, c->path);
}

/* Where the next batch of a shard starts: tensor ts[ti], piece k, whose
 * bytes begin at file offset off. */
typedef struct {
    const wd_stored_tensor **ts;
    size_t n, ti;
    uint64_t k, off;
} shard_cursor;

/* Fills c with the next pieces of the shard, fetching their chunks
 * (database reads: calling thread only): at most cap pieces written on
 * their own, and small ones into the stage. */
static int fill_out(wd_repo *repo, shard_cursor *sc, out_ctx *c, size_t cap, int fd)
{
    /* Offsets follow the written dtypes. */
    c->n_jobs = 0;
    c->stage_len = 0;
    size_t n_direct = 0;
    while (c->n_jobs < JOBS_CAP && sc->ti < sc->n) {
        const wd_stored_tensor *t = sc->ts[sc->ti];
        uint64_t npieces = (t->nelem + t->chunk_elems - 1) / t->chunk_elems;
        if (sc->k >= npieces) {
            sc->off += t->nelem * wd__dtype_size(written_dtype(t->dtype, c->out_dtype));
            sc->ti++;
            sc->k = 0;
            continue;
        }
        wd_dtype out_dt = written_dtype(t->dtype, c->out_dtype);
        uint64_t offset = sc->off + sc->k * t->chunk_elems * wd__dtype_size(out_dt);
        uint64_t left = t->nelem - sc->k * t->chunk_elems;
        uint64_t bytes = (left < t->chunk_elems ? left : t->chunk_elems) * wd__dtype_size(out_dt);
        uint8_t *dst = NULL;
        if (bytes <= STAGE_SMALL && (c->stage_len == 0 || offset == c->stage_off + c->stage_len) &&
            bytes <= STAGE_CAP - c->stage_len) {
            if (c->stage_len == 0)
                c->stage_off = offset;
            dst = c->stage + c->stage_len;
            c->stage_len += (size_t)bytes;
        } else if (n_direct == cap) {
            break;
        } else {
            n_direct++;
        }
        out_job *j = &c->jobs[c->n_jobs++];
        j->t = t;
        j->k = sc->k++;
        j->fd = fd;
        j->out_dt = out_dt;
        j->offset = offset;
        j->dst = dst;
        j->dst_len = (size_t)bytes;
        int rc = wd__piece_fetch(repo, t, j->k, j->out_dt == t->dtype ? WD_PIECE_NATIVE : WD_PIECE_F32, &j->plan);
        if (rc)
            return rc;
    }
    return 0;
}

/* Replaces a stored shard header by one listing the tensors (ts, in data
 * order) in their written dtypes, keeping its __metadata__. */
static int retype_header(wd_buf *header, const wd_stored_tensor **ts, size_t n, wd_out_dtype out)
{
    uint64_t data = 0;
    for (size_t i = 0; i < n; i++)
        data += ts[i]->nbytes;
    wd_buf image = {0};
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)((uint64_t)header->len >> (8 * i));
    wd_st_file *st = NULL;
    wd_st_spec *specs = calloc(n ? n : 1, sizeof *specs);
    int rc = specs ? wd__buf_append(&image, prefix, 8) : WD_NOMEM();
    if (!rc)
        rc = wd__buf_append(&image, header->data, header->len);
    if (!rc)
        rc = wd__st_parse(&st, image.data, image.len, 8 + header->len + data);
    if (rc) {
        rc = wd__error_context(WD_ECORRUPT, "stored shard header");
    } else {
        for (size_t i = 0; i < n; i++) {
            specs[i].name = ts[i]->name;
            specs[i].dtype = written_dtype(ts[i]->dtype, out);
            specs[i].ndim = ts[i]->ndim;
            specs[i].shape = ts[i]->shape;
        }
        char *txt = NULL;
        size_t len = 0;
        rc = wd__st_header_build(&txt, &len, specs, n, st->metadata_json);
        if (!rc) {
            header->len = 0;
            rc = wd__buf_append(header, txt, len);
        }
        free(txt);
    }
    wd__st_close(st);
    free(specs);
    wd__buf_free(&image);
    return rc;
}

/* Writes shard file sf into fd; ts[0..n) are its tensors in data order. */
static int write_shard(wd_repo *repo, wd_pool *pool, out_ctx *oc, size_t batch_cap, const wd_stored_tensor **ts,
                       size_t n, const wd_stored_file *sf, int fd, const char *path, const wd_options *opt,
                       uint64_t *done, uint64_t total)
{
    wd_buf header = {0};
    int rc = wd__stream_read(repo, sf->chunks, sf->n_chunks, &header);
    if (rc)
        goto out;

    if (oc->out_dtype != WD_OUT_ORIGINAL && (rc = retype_header(&header, ts, n, oc->out_dtype)))
        goto out;
    uint8_t prefix[8];
    uint64_t hl = header.len;
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)(hl >> (8 * i));
    if ((rc = write_all(fd, prefix, 8, 0, path)) || (rc = write_all(fd, header.data, header.len, 8, path)))
        goto out;

    /* Two batches alternate: the workers decode and write one while this
     * thread fetches the chunks of the next. */
    shard_cursor cur_state = {ts, n, 0, 0, 8 + hl};
    out_ctx ctx[2] = {*oc, *oc};
    ctx[0].path = ctx[1].path = path;
    ctx[1].jobs = oc->jobs + JOBS_CAP;
    ctx[1].stage = oc->stage + STAGE_CAP;
    int cur = 0;
    rc = fill_out(repo, &cur_state, &ctx[cur], batch_cap, fd);
    if (!rc && ctx[cur].n_jobs)
        wd__pool_start(pool, ctx[cur].n_jobs, decode_job, &ctx[cur]);
    while (!rc && ctx[cur].n_jobs) {
        int nxt = !cur;
        int frc = fill_out(repo, &cur_state, &ctx[nxt], batch_cap, fd);
        rc = wd__pool_wait(pool);
        if (!rc)
            rc = frc;
        if (!rc && ctx[cur].stage_len)
            rc = write_all(fd, ctx[cur].stage, ctx[cur].stage_len, ctx[cur].stage_off, path);
        if (rc)
            break;
        for (size_t i = 0; i < ctx[cur].n_jobs; i++)
            *done += ctx[cur].jobs[i].plan.nelem * wd__dtype_size(ctx[cur].jobs[i].plan.dtype);
        if (opt && opt->progress)
            opt->progress(opt->progress_ud, "checkout", *done, total);
        if (ctx[nxt].n_jobs)
            wd__pool_start(pool, ctx[nxt].n_jobs, decode_job, &ctx[nxt]);
        cur = nxt;
    }
    uint64_t off = cur_state.off;
    if (!rc && oc->out_dtype == WD_OUT_ORIGINAL && off != sf->size)
        rc = wd__error(WD_ECORRUPT, "stored layout of '%s' adds up to %llu bytes, recorded %llu", sf->path,
                       (unsigned long long)off, (unsigned long long)sf->size);
out:
    wd__buf_free(&header);
    return rc;
}

/* Shard by shard, data order inside each: the order write_shard lays
 * tensors out in. */
static int cmp_layout(const void *a, const void *b)
{
    const wd_stored_tensor *x = *(const wd_stored_tensor *const *)a, *y = *(const wd_stored_tensor *const *)b;
    int c = strcmp(x->file, y->file);
    if (c)
        return c;
    return x->ordinal < y->ordinal ? -1 : x->ordinal > y->ordinal;
}

/* The run of layout[0..n) (sorted by cmp_layout) whose file is path:
 * *first and *count. */
static void shard_range(const wd_stored_tensor **layout, size_t n, const char *path, size_t *first, size_t *count)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(layout[mid]->file, path) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < n && !strcmp(layout[end]->file, path))
        end++;
    *first = lo;
    *count = end - lo;
}

static int write_plain(wd_repo *repo, const wd_stored_file *sf, int fd, const char *path)
{
    /* Chunk by chunk: one decoded chunk in memory at a time. */
    wd_buf data = {0};
    uint64_t off = 0;
    int rc = 0;
    for (size_t i = 0; !rc && i < sf->n_chunks; i++) {
        data.len = 0;
        if ((rc = wd__stream_read(repo, sf->chunks + i * WD_HASH_SIZE, 1, &data)))
            break;
        rc = write_all(fd, data.data, data.len, off, path);
        off += data.len;
    }
    if (!rc && off != sf->size)
        rc = wd__error(WD_ECORRUPT, "stored file '%s' has %llu bytes, recorded %llu", sf->path,
                       (unsigned long long)off, (unsigned long long)sf->size);
    wd__buf_free(&data);
    return rc;
}

static int write_folder(wd_repo *repo, const wd_object *obj, const char *tmpdir, wd_out_dtype out_dtype,
                        const wd_options *opt)
{
    wd_pool *pool = NULL;
    int rc = wd__pool_new(&pool, opt ? opt->threads : 0);
    if (rc)
        return rc;
    int nw = wd__pool_size(pool);
    size_t batch_cap = (size_t)nw * 2;
    if (batch_cap > 64)
        batch_cap = 64;
    out_ctx oc = {0};
    oc.jobs = calloc(2 * JOBS_CAP, sizeof *oc.jobs);
    oc.stage = malloc(2 * STAGE_CAP);
    oc.out_dtype = out_dtype;
    oc.ps = calloc((size_t)nw, sizeof *oc.ps);
    oc.out = calloc((size_t)nw, sizeof *oc.out);
    oc.conv = calloc((size_t)nw, sizeof *oc.conv);
    if (!oc.jobs || !oc.stage || !oc.ps || !oc.out || !oc.conv)
        rc = WD_NOMEM();
    for (int i = 0; !rc && i < nw; i++) {
        oc.out[i] = malloc((size_t)WD_CHUNK_TARGET * sizeof(float));
        oc.conv[i] = malloc((size_t)WD_CHUNK_TARGET * sizeof(double));
        if (!oc.out[i] || !oc.conv[i] || wd__piece_scratch_new(&oc.ps[i]))
            rc = WD_NOMEM();
    }
    uint64_t done = 0, total = 0;
    for (size_t i = 0; i < obj->n_tensors; i++)
        total += obj->tensors[i].nbytes;
    /* One sort for all shards: a per-shard scan of every tensor would cost
     * shards x tensors. */
    const wd_stored_tensor **layout = calloc(obj->n_tensors ? obj->n_tensors : 1, sizeof *layout);
    if (!layout && !rc)
        rc = WD_NOMEM();
    for (size_t i = 0; layout && i < obj->n_tensors; i++)
        layout[i] = &obj->tensors[i];
    if (layout)
        qsort(layout, obj->n_tensors, sizeof *layout, cmp_layout);
    for (size_t i = 0; !rc && i < obj->n_files; i++) {
        const wd_stored_file *sf = &obj->files[i];
        if (!wd__plain_name_ok(sf->path)) {
            rc = wd__error(WD_ECORRUPT, "stored file name '%s' is unsafe; refusing to write it", sf->path);
            break;
        }
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", tmpdir, sf->path) >= (int)sizeof path) {
            rc = wd__error(WD_EUSAGE, "output path too long");
            break;
        }
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            rc = wd__error_errno(WD_EIO, "cannot create '%s'", path);
            break;
        }
        if (sf->is_shard) {
            size_t first, count;
            shard_range(layout, obj->n_tensors, sf->path, &first, &count);
            rc = write_shard(repo, pool, &oc, batch_cap, layout + first, count, sf, fd, path, opt, &done, total);
        } else {
            rc = write_plain(repo, sf, fd, path);
        }
        if (close(fd) != 0 && !rc)
            rc = wd__error_errno(WD_EIO, "cannot write '%s'", path);
    }
    for (size_t i = 0; oc.jobs && i < 2 * JOBS_CAP; i++)
        wd__piece_plan_free(&oc.jobs[i].plan);
    for (int i = 0; i < nw; i++) {
        if (oc.ps)
            wd__piece_scratch_free(oc.ps[i]);
        if (oc.out)
            free(oc.out[i]);
        if (oc.conv)
            free(oc.conv[i]);
    }
    free(layout);
    free(oc.jobs);
    free(oc.stage);
    free(oc.ps);
    free(oc.out);
    free(oc.conv);
    wd__pool_free(pool);
    return rc;
}

static int verify_folder(const char *dir, const uint8_t want[WD_HASH_SIZE], const wd_options *opt)
{
    wd_folder *f;
    int rc = wd__folder_open(&f, dir);
    if (rc)
        return wd__error_context(WD_EMISMATCH, "written folder failed validation");
    if (opt && opt->progress)
        opt->progress(opt->progress_ud, "verify", 0, f->tensor_bytes);
    uint8_t got[WD_HASH_SIZE];
    rc = want ? wd__folder_hash(f, got) : 0;
    if (!rc && want && memcmp(got, want, WD_HASH_SIZE)) {
        char a[WD_HEX_SIZE], b[WD_HEX_SIZE];
        wd__hex(a, got);
        wd__hex(b, want);
        rc = wd__error(WD_EMISMATCH, "written weights hash to %.12s, expected %.12s; repository may be damaged (run 'wdrepo fsck')", a, b);
    }
    if (!rc && opt && opt->progress)
        opt->progress(opt->progress_ud, "verify", f->tensor_bytes, f->tensor_bytes);
    wd__folder_close(f);
    return rc;
}

int wd_checkout(wd_repo *repo, const char *ref, const char *out_dir, unsigned flags, const wd_options *opt)
{
    return wd_checkout_as(repo, ref, out_dir, flags, WD_OUT_ORIGINAL, opt);
}

int wd_checkout_as(wd_repo *repo, const char *ref, const char *out_dir, unsigned flags, wd_out_dtype out_dtype,
                   const wd_options *opt)
{
    /* The target is checked first: a refused OUT_DIR costs no work. */
    char tmpl[PATH_MAX];
    int rc = wd__outdir_begin(out_dir, flags, tmpl);
    if (rc)
        return rc;
    uint8_t id[WD_HASH_SIZE];
    wd_object *obj = NULL;
    /* One read transaction for all the chunk lookups: one consistent
     * snapshot, and no lock taken and dropped per tensor. */
    if ((rc = wd__db_exec(repo->db, "BEGIN"))) {
        wd__remove_tree(tmpl);
        return rc;
    }
    if (!(rc = wd__resolve(repo, ref, id)) && !(rc = wd__object_load(repo, id, &obj)))
        rc = write_folder(repo, obj, tmpl, out_dtype, opt);
    sqlite3_exec(repo->db, "COMMIT", NULL, NULL, NULL);
    /* Converted weights have no recorded hash: they are still re-read and
     * validated as safetensors. */
    if (!rc)
        rc = verify_folder(tmpl, out_dtype == WD_OUT_ORIGINAL ? obj->model_hash : NULL, opt);
    if (!rc)
        rc = wd__outdir_commit(tmpl, out_dir, flags);
    if (rc)
        wd__remove_tree(tmpl);
    wd__object_free(obj);
    return rc;
}
