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
 * whatever the file's size.
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
#include "repo_int.h"
#include "wdelta.h"

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

/* Finds the object the file applies to; *out is loaded with its lineage. */
static int find_parent(wd_repo *repo, const wd__wdelta *d, wd_object **out)
{
    uint8_t want[WD_HASH_SIZE];
    if (wd__unhex(want, wd__wdelta_parent_hash(d)))
        return wd__error(WD_EBADINPUT, "parent_hash is not 64 hex digits");
    const char **names = hash_order(d);
    if (!names)
        return WD_NOMEM();
    sqlite3_stmt *st;
    /* Objects whose recorded chain hash matches come first: for them the
     * check below costs one hash; the others are tried in turn. */
    int rc = wd__db_prepare(repo->db, &st,
                            "SELECT id FROM object ORDER BY f32_hash IS NOT ?1, kind = 'delta', created DESC");
    if (!rc)
        wd__bind_hash(st, 1, want);
    int found = 0, row = 0;
    while (!rc && !found && (row = wd__db_step(repo->db, st, "looking for the parent")) > 0) {
        if (sqlite3_column_bytes(st, 0) != WD_HASH_SIZE)
            continue;
        uint8_t id[WD_HASH_SIZE];
        memcpy(id, sqlite3_column_blob(st, 0), WD_HASH_SIZE);
        wd_object *obj;
        if ((rc = wd__object_load(repo, id, &obj)))
            break;
        if (covers(obj, d)) {
            uint8_t h[WD_HASH_SIZE];
            /* A lossy object is a chain link's parent: deltatensors hashes
             * its float32 reconstruction. Otherwise its stored weights. */
            int mode = has_lossy(obj) ? WD_PIECE_F32 : WD_PIECE_NATIVE;
            rc = wd__object_hash(repo, obj, names, wd__wdelta_count(d), mode, h);
            if (!rc && !memcmp(h, want, WD_HASH_SIZE)) {
                *out = obj;
                found = 1;
                continue;
            }
        }
        wd__object_free(obj);
    }
    if (!rc && row < 0)
        rc = row;
    sqlite3_finalize(st);
    free(names);
    if (!rc && !found)
        rc = wd__error(WD_ENOTFOUND,
                       "no stored model matches the file's parent_hash %.12s; add its base first (wdrepo add-base)",
                       wd__wdelta_parent_hash(d));
    return rc;
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

/* Copies one array of t from the file into an array stream. */
static int copy_array(wd_chunk_batch *batch, void *cctx, const wd__wdelta *d, const wd__wdelta_tensor *t, int field,
                      wd_lossy *L, uint8_t *buf, piece_counter *pc)
{
    const wd__wdelta_field *f = wd__wdelta_field_of(t, field);
    if (!f)
        return wd__error(WD_EBADINPUT, "tensor '%s' lacks its '%s' array", t->name, wd__wdelta_field_name(field));
    int is_index = field == WD__WF_INDICES || field == WD__WF_OUTLIER_IDX;
    int transform = is_index ? WD_AT_GAPS : (f->dtype == WD_DT_F16 || f->dtype == WD_DT_F32) ? WD_AT_PLANES : WD_AT_RAW;
    wd_astream_writer w;
    wd__astream_writer_init(&w, batch->cs, wd__chunk_batch_put, batch, cctx, WD_DEFAULT_LEVEL, &L->arrays[field], field,
                            f->dtype, transform);
    size_t esz = wd__dtype_size(f->dtype);
    /* A whole number of elements per read keeps index checks aligned. */
    size_t piece = (WD_ASTREAM_CHUNK / esz) * esz;
    int64_t prev = -1;
    int rc = 0;
    for (uint64_t off = 0; !rc && off < f->nbytes; off += piece) {
        size_t len = f->nbytes - off < piece ? (size_t)(f->nbytes - off) : piece;
        if ((rc = wd__wdelta_pread(d, f, off, buf, len)))
            break;
        if (is_index) {
            rc = wd__wdelta_check_indices(t, field, buf, f->dtype, len / esz, off / esz, t->n, 1, &prev);
            if (!rc)
                count_indices(pc, buf, len / esz, esz);
        }
        if (!rc)
            rc = wd__astream_append(&w, buf, len);
    }
    if (!rc)
        rc = wd__astream_finish(&w);
    wd__astream_writer_free(&w);
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
static int import_tensor(wd_chunk_batch *batch, void *cctx, const wd__wdelta *d, const wd__wdelta_tensor *t,
                         const wd_stored_tensor *pt, uint8_t *buf, wd_lossy **out)
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
            rc = copy_array(batch, cctx, d, t, fields[i], L, buf, &pc);
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

int wd_import(wd_repo *repo, const char *path, const char *name, const wd_options *opt, wd_write_result *out)
{
    (void)opt;
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
    uint8_t *buf = NULL;
    ZSTD_CCtx *cctx = NULL;
    wd_chunk_batch batch = {repo->store, 0, 0, 0};
    int rc = wd__wdelta_open(&d, path);
    if (rc)
        return rc;
    if ((rc = find_parent(repo, d, &parent)))
        goto done;
    lossy = calloc(parent->n_tensors ? parent->n_tensors : 1, sizeof *lossy);
    buf = malloc(WD_ASTREAM_CHUNK);
    cctx = ZSTD_createCCtx();
    wdelta = wdelta_json(d);
    if (!lossy || !buf || !cctx || !wdelta) {
        rc = WD_NOMEM();
        goto done;
    }
    for (size_t i = 0; !rc && i < wd__wdelta_count(d); i++) {
        const wd__wdelta_tensor *t = wd__wdelta_tensor_at(d, i);
        long j = wd__object_find(parent, t->name);
        rc = import_tensor(&batch, cctx, d, t, &parent->tensors[j], buf, &lossy[j]);
    }
    if (!rc)
        rc = wd__chunk_batch_flush(&batch);
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

    const char *slash = strrchr(path, '/');
    char message[512];
    snprintf(message, sizeof message, "imported from %s", slash ? slash + 1 : path);
    if ((rc = wd__db_exec(repo->db, "BEGIN IMMEDIATE")))
        goto done;
    sqlite3_stmt *st = NULL;
    int exists = 0;
    if (!(rc = wd__db_prepare(repo->db, &st, "SELECT 1 FROM object WHERE id = ?1"))) {
        wd__bind_hash(st, 1, id);
        int row = wd__db_step(repo->db, st, "looking up object");
        if (row < 0)
            rc = row;
        exists = row > 0;
        sqlite3_finalize(st);
    }
    uint8_t model_hash[WD_HASH_SIZE];
    if (!rc && !exists)
        rc = insert_all(repo, id, parent, strategy, options, message, wdelta, lossy, batch.new_bytes);
    /* What checkout will write, and the chain hash: from the stored object. */
    if (!rc && !exists)
        rc = wd__object_seal(repo, id, model_hash);
    if (!rc && name)
        rc = wd__name_set(repo, name, id);
    if (rc) {
        sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
        goto done;
    }
    if ((rc = wd__db_exec(repo->db, "COMMIT")))
        goto done;
    if (out) {
        memset(out, 0, sizeof *out);
        wd__hex(out->id, id);
        out->already_present = exists;
        out->n_tensors = parent->n_tensors;
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
    }
done:
    wd__chunk_batch_abort(&batch);
    for (size_t i = 0; lossy && parent && i < parent->n_tensors; i++)
        wd__lossy_free(lossy[i]);
    free(lossy);
    free(buf);
    free(wdelta);
    ZSTD_freeCCtx(cctx);
    wd__object_free(parent);
    wd__wdelta_close(d);
    return rc;
}
