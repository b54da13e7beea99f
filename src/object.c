/*
 * object.c - stored bases and deltas in memory: loading an object with its
 * lineage, and rebuilding raw tensor pieces and file streams from chunks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "db.h"
#include "error.h"
#include "hash.h"
#include "lossy.h"
#include "piece.h"
#include "repo_int.h"

int wd__shape_parse(const char *json, int *ndim, uint64_t shape[WD_MAX_DIMS], uint64_t *nelem)
{
    const char *p = json;
    int n = 0;
    uint64_t total = 1;
    if (*p++ != '[')
        goto bad;
    while (*p == ' ')
        p++;
    if (*p == ']') {
        p++;
    } else {
        for (;;) {
            if (*p < '0' || *p > '9' || n == WD_MAX_DIMS)
                goto bad;
            char *end;
            unsigned long long v = strtoull(p, &end, 10);
            p = end;
            shape[n++] = v;
            if (v && total > UINT64_MAX / v)
                goto bad;
            total *= v;
            while (*p == ' ')
                p++;
            if (*p == ']') {
                p++;
                break;
            }
            if (*p++ != ',')
                goto bad;
            while (*p == ' ')
                p++;
        }
    }
    if (*p)
        goto bad;
    *ndim = n;
    *nelem = total;
    return 0;
bad:
    return wd__error(WD_ECORRUPT, "stored shape '%s' is malformed", json);
}

int wd__shape_format(wd_buf *b, int ndim, const uint64_t *shape)
{
    int rc = wd__buf_append(b, "[", 1);
    for (int i = 0; !rc && i < ndim; i++)
        rc = wd__buf_printf(b, i ? ",%llu" : "%llu", (unsigned long long)shape[i]);
    return rc ? rc : wd__buf_append(b, "]", 1);
}

static void free_tensors(wd_stored_tensor *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].file);
        free(t[i].chunks);
        wd__lossy_free(t[i].lossy);
    }
    free(t);
}

void wd__object_free(wd_object *obj)
{
    while (obj) {
        wd_object *parent = obj->parent;
        free_tensors(obj->tensors, obj->n_tensors);
        for (size_t i = 0; i < obj->n_files; i++) {
            free(obj->files[i].path);
            free(obj->files[i].chunks);
        }
        free(obj->files);
        free(obj);
        obj = parent;
    }
}

long wd__object_find(const wd_object *obj, const char *name)
{
    size_t lo = 0, hi = obj->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(obj->tensors[mid].name, name);
        if (!c)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static int copy_chunks(sqlite3_stmt *st, int col, uint8_t **out, size_t *n)
{
    int len = sqlite3_column_bytes(st, col);
    if (len % WD_HASH_SIZE)
        return wd__error(WD_ECORRUPT, "stored chunk list has a partial id");
    *n = (size_t)len / WD_HASH_SIZE;
    *out = malloc(len ? (size_t)len : 1);
    if (!*out)
        return WD_NOMEM();
    if (len)
        memcpy(*out, sqlite3_column_blob(st, col), (size_t)len);
    return 0;
}

static int load_one(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], wd_object **out, uint8_t parent_id[WD_HASH_SIZE])
{
    sqlite3_stmt *st = NULL;
    int rc = wd__db_prepare(repo->db, &st, "SELECT kind, parent, model_hash FROM object WHERE id = ?1");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    int row = wd__db_step(repo->db, st, "reading object");
    if (row < 0) {
        sqlite3_finalize(st);
        return row;
    }
    if (row == 0) {
        sqlite3_finalize(st);
        char hex[WD_HEX_SIZE];
        wd__hex(hex, id);
        return wd__error(WD_ENOTFOUND, "object %s is not in the repository", hex);
    }
    wd_object *obj = calloc(1, sizeof *obj);
    if (!obj) {
        sqlite3_finalize(st);
        return WD_NOMEM();
    }
    memcpy(obj->id, id, WD_HASH_SIZE);
    obj->is_base = !strcmp((const char *)sqlite3_column_text(st, 0), "base");
    if (!obj->is_base && sqlite3_column_bytes(st, 1) == WD_HASH_SIZE)
        memcpy(parent_id, sqlite3_column_blob(st, 1), WD_HASH_SIZE);
    else if (!obj->is_base)
        rc = wd__error(WD_ECORRUPT, "delta without a valid parent");
    if (sqlite3_column_bytes(st, 2) == WD_HASH_SIZE)
        memcpy(obj->model_hash, sqlite3_column_blob(st, 2), WD_HASH_SIZE);
    sqlite3_finalize(st);
    st = NULL;

    size_t cap = 0;
    if (!rc)
        rc = wd__db_prepare(repo->db, &st,
                            "SELECT name, file, ordinal, dtype, shape, nbytes, encoding, chunk_elems, chunks, "
                            "stored_bytes, rel_error, max_abs_error, params FROM tensor WHERE object = ?1 ORDER BY name");
    if (!rc)
        wd__bind_hash(st, 1, id);
    while (!rc && (row = wd__db_step(repo->db, st, "reading tensors")) > 0) {
        if (obj->n_tensors == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            wd_stored_tensor *nt = realloc(obj->tensors, ncap * sizeof *nt);
            if (!nt) {
                rc = WD_NOMEM();
                break;
            }
            obj->tensors = nt;
            cap = ncap;
        }
        wd_stored_tensor *t = &obj->tensors[obj->n_tensors++];
        memset(t, 0, sizeof *t);
        t->name = strdup((const char *)sqlite3_column_text(st, 0));
        t->file = strdup((const char *)sqlite3_column_text(st, 1));
        if (!t->name || !t->file) {
            rc = WD_NOMEM();
            break;
        }
        t->ordinal = sqlite3_column_int64(st, 2);
        const char *dt = (const char *)sqlite3_column_text(st, 3);
        if (wd__dtype_parse(dt, strlen(dt), &t->dtype)) {
            rc = wd__error(WD_ECORRUPT, "stored tensor '%s' has unknown dtype '%s'", t->name, dt);
            break;
        }
        if ((rc = wd__shape_parse((const char *)sqlite3_column_text(st, 4), &t->ndim, t->shape, &t->nelem)))
            break;
        t->nbytes = (uint64_t)sqlite3_column_int64(st, 5);
        snprintf(t->encoding, sizeof t->encoding, "%s", (const char *)sqlite3_column_text(st, 6));
        t->chunk_elems = (uint64_t)sqlite3_column_int64(st, 7);
        if ((rc = copy_chunks(st, 8, &t->chunks, &t->n_chunks)))
            break;
        t->stored_bytes = (uint64_t)sqlite3_column_int64(st, 9);
        t->object = obj->id;
        t->rel_error = sqlite3_column_type(st, 10) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 10);
        t->max_abs_error = sqlite3_column_type(st, 11) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 11);
        if (t->nbytes != t->nelem * wd__dtype_size(t->dtype) || t->chunk_elems == 0 ||
            t->chunk_elems * wd__dtype_size(t->dtype) > WD_CHUNK_RAW_MAX)
            rc = wd__error(WD_ECORRUPT, "stored tensor '%s' has inconsistent sizes", t->name);
        else if (wd__lossy_strategy_of(t->encoding) >= 0)
            rc = wd__lossy_load(repo, id, t, (const char *)sqlite3_column_text(st, 12));
        else if (strcmp(t->encoding, "same") &&
                 t->n_chunks != (t->nelem + t->chunk_elems - 1) / t->chunk_elems)
            rc = wd__error(WD_ECORRUPT, "stored tensor '%s' has %zu chunks, expected %llu", t->name,
                           t->n_chunks, (unsigned long long)((t->nelem + t->chunk_elems - 1) / t->chunk_elems));
        for (int f = 0; !rc && t->lossy && f < WD__WF__COUNT; f++) {
            t->lossy->arrays[f].tensor = t->name;
            t->lossy->arrays[f].object = obj->id;
        }
    }
    if (!rc && row < 0)
        rc = row;
    sqlite3_finalize(st);
    st = NULL;

    cap = 0;
    if (!rc)
        rc = wd__db_prepare(repo->db, &st, "SELECT path, is_shard, size, chunks FROM file WHERE object = ?1 ORDER BY path");
    if (!rc)
        wd__bind_hash(st, 1, id);
    while (!rc && (row = wd__db_step(repo->db, st, "reading files")) > 0) {
        if (obj->n_files == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            wd_stored_file *nf = realloc(obj->files, ncap * sizeof *nf);
            if (!nf) {
                rc = WD_NOMEM();
                break;
            }
            obj->files = nf;
            cap = ncap;
        }
        wd_stored_file *f = &obj->files[obj->n_files++];
        memset(f, 0, sizeof *f);
        if (!(f->path = strdup((const char *)sqlite3_column_text(st, 0)))) {
            rc = WD_NOMEM();
            break;
        }
        f->is_shard = sqlite3_column_int(st, 1);
        f->size = (uint64_t)sqlite3_column_int64(st, 2);
        rc = copy_chunks(st, 3, &f->chunks, &f->n_chunks);
    }
    if (!rc && row < 0)
        rc = row;
    sqlite3_finalize(st);
    if (rc) {
        wd__object_free(obj);
        return rc;
    }
    *out = obj;
    return 0;
}

int wd__object_load(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], wd_object **out)
{
    wd_object *top = NULL, *child = NULL;
    uint8_t cur[WD_HASH_SIZE];
    memcpy(cur, id, WD_HASH_SIZE);
    /* Bounds a corrupt database whose parents form a cycle. */
    for (int depth = 0;; depth++) {
        if (depth > 10000) {
            wd__object_free(top);
            return wd__error(WD_ECORRUPT, "lineage deeper than 10000: the parent links loop");
        }
        wd_object *obj = NULL;
        uint8_t parent_id[WD_HASH_SIZE];
        int rc = load_one(repo, cur, &obj, parent_id);
        if (rc) {
            wd__object_free(top);
            return rc;
        }
        if (child)
            child->parent = obj;
        else
            top = obj;
        /* Link each tensor that decodes against its parent. */
        if (child) {
            for (size_t i = 0; i < child->n_tensors; i++) {
                wd_stored_tensor *t = &child->tensors[i];
                if (!strcmp(t->encoding, "planes"))
                    continue;
                long j = wd__object_find(obj, t->name);
                if (j < 0 || obj->tensors[j].dtype != t->dtype || obj->tensors[j].nelem != t->nelem) {
                    wd__object_free(top);
                    return wd__error(WD_ECORRUPT, "tensor '%s' is stored against a parent that lacks it", t->name);
                }
                t->parent = &obj->tensors[j];
            }
        }
        if (obj->is_base)
            break;
        child = obj;
        memcpy(cur, parent_id, WD_HASH_SIZE);
    }
    /* A base's tensors must all be self-contained. */
    *out = top;
    return 0;
}

int wd__stream_read(wd_repo *repo, const uint8_t *chunks, size_t n_chunks, wd_buf *out)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    wd_buf z = {0};
    int rc = dctx ? 0 : WD_NOMEM();
    for (size_t i = 0; !rc && i < n_chunks; i++) {
        const uint8_t *id = chunks + i * WD_HASH_SIZE;
        uint64_t raw;
        int codec;
        if ((rc = wd__chunk_fetch(repo->store, id, &z, &raw, &codec)))
            break;
        if (raw > WD_CHUNK_RAW_MAX) {
            rc = wd__chunk_damaged(id, "claims %llu bytes, over the %u limit", (unsigned long long)raw,
                                   WD_CHUNK_RAW_MAX);
            break;
        }
        if ((rc = wd__buf_reserve(out, out->len + raw + 1)))
            break;
        if ((rc = wd__chunk_decode(repo->store, dctx, id, codec, z.data, z.len, raw, out->data + out->len,
                                   WD_DECODE_CHECK)))
            break;
        out->len += raw;
    }
    wd__buf_free(&z);
    ZSTD_freeDCtx(dctx);
    return rc;
}

int wd__file_where(int rc, const wd_object *obj, const wd_stored_file *sf)
{
    if (rc != WD_ECORRUPT)
        return rc;
    char hex[WD_HEX_SIZE];
    wd__hex(hex, obj->id);
    return wd__chunk_error_where(rc, "object %.*s file '%s'", WD_SHORT_HEX, hex, sf->path);
}
