/*
 * checkout.c - writing a stored model back as a folder.
 *
 * The folder is built in a temporary directory beside OUT_DIR: shards are
 * laid out as committed (8-byte length, the stored header bytes, tensors in
 * data order); then tensor pieces are rebuilt by the pool in name order and
 * written with pwrite at their final offsets while the calling thread
 * hashes them (objhash.c). Only a folder whose model hash matches the record
 * and whose shards parse again is renamed into place.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "flusher.h"
#include "folder.h"
#include "hfconfig.h"
#include "hash.h"
#include "outdir.h"
#include "piece.h"
#include "pipeline.h"
#include "progress.h"
#include "repo_int.h"
#include "shardwriter.h"


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
            specs[i].dtype = wd__dtype_written(ts[i]->dtype, out);
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

/* Where each tensor's bytes go: its shard's descriptor and data offset,
 * by index in obj->tensors. */
typedef struct {
    const wd_object *obj;
    int *fd;
    uint64_t *off;
    const char **path;
    wd_out_dtype out_dtype;
    uint8_t **conv; /* per worker slot: a piece in its written dtype */
    wd__flusher *flusher; /* makes the shards durable as they are written */
    wd__progress pg;      /* stage "checkout", by bytes of the tensors */
} out_ctx;

static int cmp_ordinal(const void *a, const void *b)
{
    const wd_stored_tensor *x = *(const wd_stored_tensor *const *)a, *y = *(const wd_stored_tensor *const *)b;
    return x->ordinal < y->ordinal ? -1 : x->ordinal > y->ordinal;
}

/* Writes shard sf's length prefix and header into fd and records where each
 * of its tensors' data starts. ts is scratch for obj->n_tensors pointers. */
static int lay_out_shard(wd_repo *repo, out_ctx *oc, const wd_stored_file *sf, int fd, const char *path,
                         const wd_stored_tensor **ts)
{
    wd_buf header = {0};
    const wd_object *obj = oc->obj;
    int rc = wd__stream_read(repo, sf->chunks, sf->n_chunks, &header);
    if (rc)
        goto out;
    /* The shard's tensors in data order. */
    size_t n = 0;
    for (size_t i = 0; i < obj->n_tensors; i++)
        if (!strcmp(obj->tensors[i].file, sf->path))
            ts[n++] = &obj->tensors[i];
    qsort(ts, n, sizeof *ts, cmp_ordinal);
    if (oc->out_dtype != WD_OUT_ORIGINAL && (rc = retype_header(&header, ts, n, oc->out_dtype)))
        goto out;
    uint64_t hl = header.len, off = 8 + hl;
    for (size_t i = 0; i < n; i++) {
        size_t ti = (size_t)(ts[i] - obj->tensors);
        oc->fd[ti] = fd;
        oc->off[ti] = off;
        oc->path[ti] = path;
        off += ts[i]->nelem * wd__dtype_size(wd__dtype_written(ts[i]->dtype, oc->out_dtype));
    }
    if (oc->out_dtype == WD_OUT_ORIGINAL && off != sf->size)
        rc = wd__error(WD_ECORRUPT, "stored layout of '%s' adds up to %llu bytes, recorded %llu", sf->path,
                       (unsigned long long)off, (unsigned long long)sf->size);
    else
        rc = wd__shard_begin(fd, path, header.data, header.len, off - 8 - hl);
out:
    wd__buf_free(&header);
    return rc;
}

/* wd_walk_opts.on_piece: piece k of t goes to its final offset. */
static int write_piece(void *ud, int worker, const wd_stored_tensor *t, uint64_t k, const uint8_t *nat,
                       const float *f32, size_t nelem)
{
    out_ctx *oc = ud;
    size_t ti = (size_t)(t - oc->obj->tensors);
    if (oc->fd[ti] < 0)
        return wd__error(WD_ECORRUPT, "tensor '%s' belongs to no stored shard", t->name);
    wd_dtype out_dt = wd__dtype_written(t->dtype, oc->out_dtype);
    size_t esz = wd__dtype_size(out_dt);
    if (out_dt != t->dtype) {
        wd__from_f32(oc->conv[worker], f32, nelem, out_dt);
        nat = oc->conv[worker];
    }
    int rc = wd__file_pwrite(oc->fd[ti], nat, nelem * esz, oc->off[ti] + k * t->chunk_elems * esz, oc->path[ti]);
    if (!rc)
        wd__flusher_wrote(oc->flusher, oc->fd[ti], nelem * esz);
    return rc;
}

static int converted(void *ud, const wd_stored_tensor *t)
{
    const out_ctx *oc = ud;
    return wd__dtype_written(t->dtype, oc->out_dtype) != t->dtype;
}

static void write_progress(void *ud, uint64_t bytes)
{
    wd__progress_add(&((out_ctx *)ud)->pg, bytes);
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
        rc = wd__file_pwrite(fd, data.data, data.len, off, path);
        off += data.len;
    }
    if (!rc && off != sf->size)
        rc = wd__error(WD_ECORRUPT, "stored file '%s' has %llu bytes, recorded %llu", sf->path,
                       (unsigned long long)off, (unsigned long long)sf->size);
    wd__buf_free(&data);
    return rc;
}

/* Checks a stored file's path (plain names joined by '/', FORMAT.md
 * section 1) and creates the subfolders it lies in under tmpdir. */
static int file_parents(const char *tmpdir, const wd_stored_file *sf)
{
    if (!wd__rel_path_ok(sf->path))
        return wd__error(WD_ECORRUPT, "stored file name '%s' is unsafe; refusing to write it", sf->path);
    return strchr(sf->path, '/') ? wd__make_parents(tmpdir, sf->path) : 0;
}

/* Writes every file of obj into tmpdir. Shard headers are laid out first;
 * then the tensors are rebuilt in name order on the pool, each piece written
 * at its final offset by the worker that rebuilt it, while this thread
 * hashes them in order: the model hash of what was written comes out of the
 * same pass (*out_hash; not computed with --dtype, whose weights have no
 * recorded hash). */
static int write_folder(wd_repo *repo, const wd_object *obj, const char *tmpdir, wd_out_dtype out_dtype,
                        int trusted, const wd_options *opt, uint8_t out_hash[WD_HASH_SIZE])
{
    wd_pool *pool = NULL;
    int rc = wd__pool_new(&pool, opt ? opt->threads : 0);
    if (rc)
        return rc;
    int nw = wd__pool_size(pool);
    size_t nt = obj->n_tensors ? obj->n_tensors : 1;
    out_ctx oc = {0};
    if ((rc = wd__flusher_new(&oc.flusher))) {
        wd__pool_free(pool);
        return rc;
    }
    oc.obj = obj;
    oc.out_dtype = out_dtype;
    oc.fd = malloc(nt * sizeof *oc.fd);
    oc.off = calloc(nt, sizeof *oc.off);
    oc.path = calloc(nt, sizeof *oc.path);
    oc.conv = calloc((size_t)nw, sizeof *oc.conv);
    int *fds = malloc((obj->n_files ? obj->n_files : 1) * sizeof *fds);
    char **paths = calloc(obj->n_files ? obj->n_files : 1, sizeof *paths);
    const wd_stored_tensor **ts = calloc(nt, sizeof *ts);
    if (!oc.fd || !oc.off || !oc.path || !oc.conv || !fds || !paths || !ts)
        rc = WD_NOMEM();
    for (size_t i = 0; oc.fd && i < nt; i++)
        oc.fd[i] = -1;
    for (size_t i = 0; fds && i < obj->n_files; i++)
        fds[i] = -1;
    for (int i = 0; !rc && out_dtype != WD_OUT_ORIGINAL && i < nw; i++)
        if (!(oc.conv[i] = malloc((size_t)WD_CHUNK_TARGET * sizeof(double))))
            rc = WD_NOMEM();
    for (size_t i = 0; !rc && i < obj->n_files; i++) {
        const wd_stored_file *sf = &obj->files[i];
        if ((rc = file_parents(tmpdir, sf)))
            break;
        if (asprintf(&paths[i], "%s/%s", tmpdir, sf->path) < 0) {
            paths[i] = NULL;
            rc = WD_NOMEM();
            break;
        }
        fds[i] = open(paths[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fds[i] < 0) {
            rc = wd__error_errno(WD_EIO, "cannot create '%s'", paths[i]);
            break;
        }
        rc = sf->is_shard ? lay_out_shard(repo, &oc, sf, fds[i], paths[i], ts) : write_plain(repo, sf, fds[i], paths[i]);
        rc = wd__file_where(rc, obj, sf);
        /* Plain files are complete: the flusher syncs and closes them
         * while the shards are written, so a model with many files holds
         * only its shards (and a bounded queue) open. */
        if (!sf->is_shard) {
            int crc = rc ? wd__flusher_close(oc.flusher, fds[i], paths[i], rc)
                         : wd__flusher_close_later(oc.flusher, fds[i], paths[i]);
            rc = rc ? rc : crc;
            fds[i] = -1;
        }
    }
    if (!rc) {
        /* trusted: the caller compares out_hash with the model hash (every
         * tensor written in its own dtype), which checks the pieces as a
         * whole; hashing every chunk besides would double the SHA-256 work.
         * Otherwise each chunk is checked against its id. */
        uint64_t total = 0;
        for (size_t i = 0; i < obj->n_tensors; i++)
            total += obj->tensors[i].nbytes;
        wd__progress_start(&oc.pg, opt, "checkout", total);
        wd_walk_opts wo = {.pool = pool, .on_piece = write_piece, .f32_for = converted,
                           .progress = write_progress, .ud = &oc, .trusted = trusted};
        rc = wd__object_walk(repo, obj, &wo, out_dtype == WD_OUT_ORIGINAL ? out_hash : NULL, NULL, NULL);
    }
    /* Every file durable before the folder gets its name: the shards'
     * last steps are synced on the flusher's thread, and finish waits. */
    for (size_t i = 0; fds && i < obj->n_files; i++) {
        if (fds[i] >= 0) {
            int crc = rc ? wd__flusher_close(oc.flusher, fds[i], paths[i], rc)
                         : wd__flusher_close_later(oc.flusher, fds[i], paths[i]);
            rc = rc ? rc : crc;
        }
    }
    int frc = wd__flusher_finish(oc.flusher);
    rc = rc ? rc : frc;
    wd__flusher_free(oc.flusher);
    for (size_t i = 0; fds && paths && i < obj->n_files; i++)
        free(paths[i]);
    for (int i = 0; oc.conv && i < nw; i++)
        free(oc.conv[i]);
    free(oc.conv);
    free(oc.fd);
    free(oc.off);
    free(oc.path);
    free(fds);
    free(paths);
    free(ts);
    wd__pool_free(pool);
    return rc;
}

/* The written weights do not hash to the model hash: the chunks were
 * decoded without their own checks (write_folder), so walk the model again
 * checking each, to name the damaged one; if none is, the object's records
 * are what disagree. */
static int hash_mismatch(wd_repo *repo, const wd_object *obj, const wd_options *opt, const uint8_t got[WD_HASH_SIZE],
                         const uint8_t want[WD_HASH_SIZE])
{
    wd_pool *pool = NULL;
    int rc = wd__pool_new(&pool, opt ? opt->threads : 0);
    if (rc)
        return rc;
    uint8_t again[WD_HASH_SIZE];
    wd_walk_opts wo = {.pool = pool};
    rc = wd__object_walk(repo, obj, &wo, again, NULL, NULL);
    wd__pool_free(pool);
    if (rc)
        return rc;
    char a[WD_HEX_SIZE], b[WD_HEX_SIZE];
    wd__hex(a, got);
    wd__hex(b, want);
    return wd__error(WD_EMISMATCH,
                     "written weights hash to %.12s, expected %.12s; repository may be damaged (run 'wdrepo fsck --full')", a, b);
}

static int verify_folder(const char *dir)
{
    wd_folder *f;
    int rc = wd__folder_open_ex(&f, dir, WD_FOLDER_TRUST_INDEX);
    if (rc)
        return wd__error_context(WD_EMISMATCH, "written folder failed validation");
    wd__folder_close(f);
    return 0;
}

int wd_checkout(wd_repo *repo, const char *ref, const char *out_dir, unsigned flags, const wd_options *opt)
{
    return wd_checkout_as(repo, ref, out_dir, flags, WD_OUT_ORIGINAL, opt);
}

int wd_checkout_as(wd_repo *repo, const char *ref, const char *out_dir, unsigned flags, wd_out_dtype out_dtype,
                   const wd_options *opt)
{
    /* The target is checked first: a refused OUT_DIR costs no work. The
     * repository must survive any OUT_DIR, --force or not. */
    const wd__keep keep[] = {{repo->dir, "the repository"}};
    wd__outdir od;
    int rc = wd__outdir_begin(&od, out_dir, flags, keep, 1);
    if (rc)
        return rc;
    uint8_t id[WD_HASH_SIZE];
    wd_object *obj = NULL;
    uint8_t written[WD_HASH_SIZE];
    if (!(rc = wd__resolve(repo, ref, id)) && !(rc = wd__object_load(repo, id, &obj)))
        rc = write_folder(repo, obj, od.tmp.path, out_dtype, out_dtype == WD_OUT_ORIGINAL, opt, written);
    if (!rc && out_dtype == WD_OUT_ORIGINAL && memcmp(written, obj->model_hash, WD_HASH_SIZE))
        rc = hash_mismatch(repo, obj, opt, written, obj->model_hash);
    /* The written shards are parsed again as a reader will: headers,
     * offsets and sizes (their data was hashed as it was written). */
    if (!rc)
        rc = verify_folder(od.tmp.path);
    if (!rc)
        rc = wd__outdir_commit(&od);
    wd__outdir_abort(&od);
    wd__object_free(obj);
    return rc;
}

/* ---- subsets (--only) and what --dtype rewrites -------------------------
 * wd_checkout_ex writes a view of the object holding only the selected
 * files and the tensors of the selected shards, through the same
 * write_folder as a full checkout. */

/* sub gets obj's selected files and the tensors stored in them (shallow
 * copies: they point into obj, which must outlive sub). A glob matching no
 * file is a usage error naming it. */
static int select_files(const wd_object *obj, const wd_checkout_opts *co, wd_object *sub, int *all_shards)
{
    *sub = *obj;
    sub->files = calloc(obj->n_files ? obj->n_files : 1, sizeof *sub->files);
    sub->tensors = calloc(obj->n_tensors ? obj->n_tensors : 1, sizeof *sub->tensors);
    sub->n_files = sub->n_tensors = 0;
    if (!sub->files || !sub->tensors)
        return WD_NOMEM();
    for (size_t g = 0; g < co->n_only; g++) {
        size_t hits = 0;
        for (size_t i = 0; i < obj->n_files; i++)
            hits += fnmatch(co->only[g], obj->files[i].path, 0) == 0;
        if (!hits)
            return wd__error(WD_EUSAGE, "--only '%s' matches no file of the object (%zu files; 'wdrepo inspect' lists them)",
                             co->only[g], obj->n_files);
    }
    *all_shards = 1;
    for (size_t i = 0; i < obj->n_files; i++) {
        const wd_stored_file *sf = &obj->files[i];
        int take = co->n_only == 0;
        for (size_t g = 0; !take && g < co->n_only; g++)
            take = fnmatch(co->only[g], sf->path, 0) == 0;
        if (take)
            sub->files[sub->n_files++] = *sf;
        else if (sf->is_shard)
            *all_shards = 0;
    }
    /* Tensors stay in name order, as the walk wants them. */
    for (size_t i = 0; i < obj->n_tensors; i++)
        for (size_t f = 0; f < sub->n_files; f++)
            if (sub->files[f].is_shard && !strcmp(sub->files[f].path, obj->tensors[i].file)) {
                sub->tensors[sub->n_tensors++] = obj->tensors[i];
                break;
            }
    return 0;
}

/* Reads a small file whole (at most limit bytes); 1 if it is larger. */
static int read_small(const char *path, size_t limit, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return wd__error_errno(WD_EIO, "cannot read '%s'", path);
    char *buf = malloc(limit + 1);
    size_t n = buf ? fread(buf, 1, limit + 1, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!buf)
        return WD_NOMEM();
    if (err || n > limit) {
        free(buf);
        return err ? wd__error(WD_EIO, "cannot read '%s'", path) : 1;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* An index file's metadata.total_size, the tensor bytes of the folder, set
 * to total. Only the number's text is replaced, so the file keeps its
 * layout; an index without a numeric total_size, or where the key appears
 * more than once in the text, is left as it was. Index files are bounded
 * like config.json (16 MiB). */
static int rewrite_total_size(const char *path, uint64_t total)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_small(path, (size_t)16 << 20, &text, &len);
    if (rc)
        return rc == 1 ? 0 : rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *meta = root ? cJSON_GetObjectItemCaseSensitive(root, "metadata") : NULL;
    const cJSON *ts = meta ? cJSON_GetObjectItemCaseSensitive(meta, "total_size") : NULL;
    const char *key = "\"total_size\"";
    char *at = cJSON_IsNumber(ts) ? strstr(text, key) : NULL;
    if (at && strstr(at + 1, key))
        at = NULL;
    if (at) {
        char *p = at + strlen(key);
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (*p == ':')
            p++;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        char *end = p;
        while (*end && strchr("0123456789.eE+-", *end))
            end++;
        char num[32];
        int nl = snprintf(num, sizeof num, "%llu", (unsigned long long)total);
        char *tmp = NULL;
        if (end > p && asprintf(&tmp, "%s.total-size", path) >= 0) {
            int fd = -1;
            rc = wd__file_create(tmp, &fd);
            if (!rc)
                rc = wd__file_write(fd, text, (size_t)(p - text), tmp);
            if (!rc)
                rc = wd__file_write(fd, num, (size_t)nl, tmp);
            if (!rc)
                rc = wd__file_write(fd, end, len - (size_t)(end - text), tmp);
            if (fd >= 0)
                rc = wd__file_close(fd, tmp, rc);
            if (!rc && rename(tmp, path) != 0)
                rc = wd__error_errno(WD_EIO, "cannot write '%s'", path);
            if (rc)
                unlink(tmp);
            free(tmp);
        } else if (end > p) {
            rc = WD_NOMEM();
        }
    }
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* With --dtype: config.json's torch_dtype/dtype and each index's
 * total_size as load-delta and the written shards have them. */
static int rewrite_for_dtype(const char *dir, const wd_object *sub, wd_out_dtype out_dtype, uint64_t weight_bytes)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < sub->n_files; i++) {
        const char *name = sub->files[i].path;
        char *path = NULL, *tmp = NULL;
        size_t nl = strlen(name), sl = strlen(".safetensors.index.json");
        if (asprintf(&path, "%s/%s", dir, name) < 0) {
            path = NULL;
            rc = WD_NOMEM();
        } else if (!strcmp(name, "config.json")) {
            if (asprintf(&tmp, "%s/.config.json.dtype", dir) < 0) {
                tmp = NULL;
                rc = WD_NOMEM();
            } else {
                rc = wd__hfconfig_write(path, tmp, wd__out_dtype_name(out_dtype));
                if (!rc && rename(tmp, path) != 0)
                    rc = wd__error_errno(WD_EIO, "cannot write '%s'", path);
                if (rc)
                    unlink(tmp);
            }
        } else if (nl > sl && !strcmp(name + nl - sl, ".safetensors.index.json")) {
            rc = rewrite_total_size(path, weight_bytes);
        }
        free(path);
        free(tmp);
    }
    return rc;
}

int wd_checkout_ex(wd_repo *repo, const char *ref, const char *out_dir, unsigned flags, wd_checkout_opts *co,
                   const wd_options *opt)
{
    if (!co)
        return wd_checkout(repo, ref, out_dir, flags, opt);
    co->n_files = co->n_files_total = 0;
    co->n_tensors = co->weight_bytes = 0;
    co->verified = 0;
    const wd__keep keep[] = {{repo->dir, "the repository"}};
    wd__outdir od;
    int rc = wd__outdir_begin(&od, out_dir, flags, keep, 1);
    if (rc)
        return rc;
    uint8_t id[WD_HASH_SIZE], written[WD_HASH_SIZE];
    wd_object *obj = NULL, sub;
    memset(&sub, 0, sizeof sub);
    int all_shards = 0, n_shards = 0;
    if (!(rc = wd__resolve(repo, ref, id)) && !(rc = wd__object_load(repo, id, &obj)))
        rc = select_files(obj, co, &sub, &all_shards);
    /* The model hash covers every tensor: it can be checked only when every
     * shard was written in its own dtypes; then it checks the chunks too. */
    int full = all_shards && co->out_dtype == WD_OUT_ORIGINAL;
    if (!rc)
        rc = write_folder(repo, &sub, od.tmp.path, co->out_dtype, full, opt, written);
    for (size_t i = 0; !rc && i < sub.n_tensors; i++)
        co->weight_bytes += sub.tensors[i].nelem *
                            wd__dtype_size(wd__dtype_written(sub.tensors[i].dtype, co->out_dtype));
    if (!rc && full && memcmp(written, obj->model_hash, WD_HASH_SIZE))
        rc = hash_mismatch(repo, obj, opt, written, obj->model_hash);
    if (!rc && co->out_dtype != WD_OUT_ORIGINAL)
        rc = rewrite_for_dtype(od.tmp.path, &sub, co->out_dtype, co->weight_bytes);
    for (size_t i = 0; i < sub.n_files; i++)
        n_shards += sub.files[i].is_shard;
    /* Shards written are parsed again; a subset without one has none to
     * parse (each file was rebuilt from chunks checked against their ids). */
    if (!rc && n_shards)
        rc = verify_folder(od.tmp.path);
    if (!rc)
        rc = wd__outdir_commit(&od);
    wd__outdir_abort(&od);
    if (!rc) {
        co->n_files = sub.n_files;
        co->n_files_total = obj->n_files;
        co->n_tensors = sub.n_tensors;
        co->verified = full ? WD_VERIFIED_MODEL_HASH : WD_VERIFIED_CHUNKS;
    }
    free(sub.files);
    free(sub.tensors);
    wd__object_free(obj);
    return rc;
}
