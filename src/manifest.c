/*
 * manifest.c - building the canonical manifests (see manifest.h).
 * Lines are accumulated and fed to SHA-256 in 64 KiB runs, so the manifest
 * of a huge model is never held whole.
 */
#include "manifest.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "db.h"
#include "error.h"
#include "wdelta.h"

static void json_str(wd_manifest *m, const char *s)
{
    if (m->rc)
        return;
    cJSON *j = cJSON_CreateString(s);
    char *txt = j ? cJSON_PrintUnformatted(j) : NULL;
    m->rc = txt ? wd__buf_append(&m->line, txt, strlen(txt)) : WD_NOMEM();
    free(txt);
    cJSON_Delete(j);
}

static void text(wd_manifest *m, const char *s)
{
    if (!m->rc)
        m->rc = wd__buf_append(&m->line, s, strlen(s));
}

static void ids(wd_manifest *m, const uint8_t *id, size_t n)
{
    for (size_t i = 0; !m->rc && i < n; i++) {
        char hex[WD_HEX_SIZE];
        wd__hex(hex, id + i * WD_HASH_SIZE);
        m->rc = wd__buf_printf(&m->line, " %s", hex);
    }
}

static void end_line(wd_manifest *m)
{
    text(m, "\n");
    if (!m->rc && m->line.len > 65536) {
        wd__sha256_update(m->h, m->line.data, m->line.len);
        m->line.len = 0;
    }
}

int wd__manifest_begin(wd_manifest *m, const uint8_t parent[WD_HASH_SIZE], const char *strategy, const char *options)
{
    memset(m, 0, sizeof *m);
    if ((m->rc = wd__sha256_new(&m->h)))
        return m->rc;
    char phex[WD_HEX_SIZE];
    wd__hex(phex, parent);
    m->rc = wd__buf_printf(&m->line, "wdrepo-delta 1\nparent %s\nstrategy ", phex);
    json_str(m, strategy);
    text(m, "\noptions ");
    text(m, options);
    end_line(m);
    return m->rc;
}

int wd__manifest_base_begin(wd_manifest *m, const uint8_t model_hash[WD_HASH_SIZE])
{
    memset(m, 0, sizeof *m);
    if ((m->rc = wd__sha256_new(&m->h)))
        return m->rc;
    char hex[WD_HEX_SIZE];
    wd__hex(hex, model_hash);
    /* The first line keeps these texts apart from delta manifests. */
    m->rc = wd__buf_printf(&m->line, "wdrepo-base-folder 1\nmodel %s\n", hex);
    return m->rc;
}

void wd__manifest_file(wd_manifest *m, const char *path, int is_shard, uint64_t size, const uint8_t *id, size_t n)
{
    text(m, "file ");
    json_str(m, path);
    if (!m->rc)
        m->rc = wd__buf_printf(&m->line, " %d %llu", is_shard, (unsigned long long)size);
    ids(m, id, n);
    end_line(m);
}

void wd__manifest_tensor(wd_manifest *m, const char *name, const char *file, int64_t ordinal, wd_dtype dtype, int ndim,
                         const uint64_t *shape, const char *encoding, uint64_t chunk_elems, const uint8_t *id,
                         size_t n, const wd_lossy *lossy)
{
    text(m, "tensor ");
    json_str(m, name);
    text(m, " ");
    json_str(m, file);
    if (!m->rc)
        m->rc = wd__buf_printf(&m->line, " %lld %s ", (long long)ordinal, wd__dtype_name(dtype));
    if (!m->rc)
        m->rc = wd__shape_format(&m->line, ndim, shape);
    if (!m->rc)
        m->rc = wd__buf_printf(&m->line, " %s %llu", encoding, (unsigned long long)chunk_elems);
    ids(m, id, n);
    if (lossy) {
        text(m, " params ");
        text(m, lossy->params_json);
        const int *fields;
        size_t nf = wd__wdelta_fields_of(lossy->strategy, &fields);
        for (size_t i = 0; i < nf; i++) {
            if (fields[i] == WD__WF_SCALE || fields[i] == WD__WF_ZERO_POINT)
                continue;
            text(m, " array ");
            text(m, wd__wdelta_field_name(fields[i]));
            ids(m, lossy->arrays[fields[i]].chunks, lossy->arrays[fields[i]].n_chunks);
        }
    }
    end_line(m);
}

int wd__manifest_end(wd_manifest *m, uint8_t out[WD_HASH_SIZE])
{
    int rc = m->rc;
    if (!rc) {
        wd__sha256_update(m->h, m->line.data, m->line.len);
        wd__sha256_final(m->h, out);
    }
    wd__sha256_free(m->h);
    wd__buf_free(&m->line);
    return rc;
}

int wd__manifest_base_stored(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], const uint8_t model_hash[WD_HASH_SIZE],
                             uint8_t out[WD_HASH_SIZE])
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st, "SELECT path, is_shard, size, chunks FROM file WHERE object = ?1 ORDER BY path");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    wd_manifest m;
    wd__manifest_base_begin(&m, model_hash);
    int row;
    while ((row = wd__db_step(repo->db, st, "reading a base's files")) > 0) {
        int len = sqlite3_column_bytes(st, 3);
        const char *path = (const char *)sqlite3_column_text(st, 0);
        if (!path || len % WD_HASH_SIZE) {
            row = wd__error(WD_ECORRUPT, "a stored file row of a base is malformed");
            break;
        }
        wd__manifest_file(&m, path, sqlite3_column_int(st, 1), (uint64_t)sqlite3_column_int64(st, 2),
                          sqlite3_column_blob(st, 3), (size_t)len / WD_HASH_SIZE);
    }
    sqlite3_finalize(st);
    rc = wd__manifest_end(&m, out);
    return row < 0 ? row : rc;
}
