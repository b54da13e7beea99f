/*
 * remote_fetch.c - wd_fetch and wd_remote_hydrate: brings objects from a
 * remote in the order push sends them (chunks, then objects parents first,
 * then names), every chunk checked against its id before it is stored, so
 * an interrupted fetch leaves only unreferenced chunks (gc's to remove) and
 * the next one skips what arrived.
 */
#include "remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zstd.h>

#include "db.h"
#include "error.h"
#include "hash.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Downloads chunks ids[0..n) that the local store lacks, checks each
 * against its id and stores it. */
static int fetch_chunks(wd_repo *repo, wd_s3 *s3, const uint8_t *ids, size_t n, const wd_options *opt,
                        wd_transfer_result *out)
{
    wd_s3_req *reqs = calloc(WD_REMOTE_ROUND, sizeof *reqs);
    const uint8_t **rid = calloc(WD_REMOTE_ROUND, sizeof *rid);
    uint8_t *raw = malloc(WD_CHUNK_RAW_MAX);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    wd_chunk_batch batch = {repo->store, 0, 0, 0, 0};
    int rc = reqs && rid && raw && dctx ? 0 : WD_NOMEM();
    size_t at = 0;
    while (!rc && at < n) {
        size_t m = 0;
        for (; at < n && m < WD_REMOTE_ROUND; at++) {
            const uint8_t *id = ids + at * WD_HASH_SIZE;
            int has = 0;
            if ((rc = repo->store->ops->has(repo->store, id, &has)))
                break;
            if (has) {
                out->chunks_skipped++;
                continue;
            }
            char hex[WD_HEX_SIZE];
            wd__hex(hex, id);
            memset(&reqs[m], 0, sizeof reqs[m]);
            reqs[m].method = WD_S3_GET;
            reqs[m].max_len = WD_RCHUNK_HEADER + WD_CHUNK_RAW_MAX + (WD_CHUNK_RAW_MAX >> 7) + 4096;
            snprintf(reqs[m].key, sizeof reqs[m].key, WD_RK_CHUNKS "%s", hex);
            rid[m++] = id;
        }
        if (!rc && m)
            rc = wd__s3_run(s3, reqs, m, WD_REMOTE_PARALLEL, NULL);
        for (size_t i = 0; !rc && i < m; i++) {
            const wd_s3_req *r = &reqs[i];
            if (r->result == WD_ENOTFOUND) {
                char hex[WD_HEX_SIZE];
                wd__hex(hex, rid[i]);
                rc = wd__error(WD_ECORRUPT, "remote '%s' lacks chunk %.12s that its objects use", wd__s3_where(s3),
                               hex);
                break;
            }
            if (r->result) {
                rc = wd__s3_req_error(s3, r);
                break;
            }
            const uint8_t *b = r->resp.data;
            if (r->resp.len < WD_RCHUNK_HEADER || memcmp(b, WD_RCHUNK_MAGIC, 4) != 0) {
                rc = wd__chunk_damaged(rid[i], "not a wdrepo chunk on the remote");
                break;
            }
            uint64_t raw_size = 0;
            for (int k = 0; k < 8; k++)
                raw_size |= (uint64_t)b[8 + k] << (8 * k);
            int codec = b[4];
            if (raw_size > WD_CHUNK_RAW_MAX) {
                rc = wd__chunk_damaged(rid[i], "too large");
                break;
            }
            const uint8_t *data = b + WD_RCHUNK_HEADER;
            size_t len = r->resp.len - WD_RCHUNK_HEADER;
            /* Checked against its id before anything here can use it. */
            if ((rc = wd__chunk_decode(NULL, dctx, rid[i], codec, data, len, raw_size, raw, WD_DECODE_CHECK)))
                break;
            if ((rc = wd__chunk_batch_put(&batch, rid[i], raw_size, codec, data, len)))
                break;
            out->chunks++;
            out->bytes += r->resp.len;
        }
        for (size_t i = 0; i < m; i++)
            wd__buf_free(&reqs[i].resp);
        if (!rc)
            rc = wd__chunk_batch_tick(&batch);
        if (!rc && opt && opt->progress)
            opt->progress(opt->progress_ud, "fetch", out->bytes, 0); /* bytes; the total is not known */
    }
    if (!rc)
        rc = wd__chunk_batch_flush(&batch);
    else
        wd__chunk_batch_abort(&batch);
    ZSTD_freeDCtx(dctx);
    free(raw);
    free(rid);
    free(reqs);
    return rc;
}

typedef struct {
    uint8_t id[WD_HASH_SIZE];
    cJSON *manifest;
} fetched;

static int get_object(wd_s3 *s3, const uint8_t id[WD_HASH_SIZE], cJSON **out, uint64_t *bytes)
{
    wd_s3_req r;
    memset(&r, 0, sizeof r);
    r.method = WD_S3_GET;
    r.max_len = WD_MANIFEST_MAX;
    char hex[WD_HEX_SIZE];
    wd__hex(hex, id);
    snprintf(r.key, sizeof r.key, WD_RK_OBJECTS "%s", hex);
    int rc = wd__s3_run(s3, &r, 1, 1, NULL);
    if (!rc && r.result == WD_ENOTFOUND)
        rc = wd__error(WD_ECORRUPT, "remote '%s' lacks object %.12s that it names", wd__s3_where(s3), hex);
    else if (!rc && r.result)
        rc = wd__s3_req_error(s3, &r);
    if (!rc) {
        *bytes += r.resp.len;
        rc = wd__manifest_parse(&r.resp, id, out);
    }
    wd__buf_free(&r.resp);
    return rc;
}

/* Fetches the manifests of want[0..n_want) and their ancestors that are
 * not stored here, parents before children. */
static int gather(wd_repo *repo, wd_s3 *s3, const uint8_t *want, size_t n_want, fetched **out, size_t *n_out,
                  wd_transfer_result *res)
{
    fetched *list = NULL;
    size_t n = 0;
    int rc = 0;
    for (size_t w = 0; !rc && w < n_want; w++) {
        uint8_t cur[WD_HASH_SIZE];
        memcpy(cur, want + w * WD_HASH_SIZE, WD_HASH_SIZE);
        size_t first = n; /* this lineage's new entries, child first */
        for (int depth = 0; !rc; depth++) {
            int here = 0, seen = 0;
            for (size_t k = 0; k < n && !seen; k++)
                seen = memcmp(list[k].id, cur, WD_HASH_SIZE) == 0;
            if (seen || (rc = wd__object_exists(repo, cur, &here)) || here) {
                if (here && depth == 0)
                    res->objects_skipped++;
                break;
            }
            if (depth == 64) {
                rc = wd__error(WD_EUSAGE, "lineage deeper than 64 objects on the remote");
                break;
            }
            fetched *grown = realloc(list, (n + 1) * sizeof *grown);
            if (!grown) {
                rc = WD_NOMEM();
                break;
            }
            list = grown;
            memcpy(list[n].id, cur, WD_HASH_SIZE);
            list[n].manifest = NULL;
            if ((rc = get_object(s3, cur, &list[n].manifest, &res->bytes))) {
                n++;
                break;
            }
            n++;
            int has_parent;
            if ((rc = wd__manifest_parent(list[n - 1].manifest, cur, &has_parent)) || !has_parent)
                break;
        }
        /* Reverse the lineage just added: parents first. */
        for (size_t a = first, b = n; !rc && b > a + 1; a++, b--) {
            fetched t = list[a];
            list[a] = list[b - 1];
            list[b - 1] = t;
        }
    }
    if (rc) {
        for (size_t k = 0; k < n; k++)
            cJSON_Delete(list[k].manifest);
        free(list);
        return rc;
    }
    *out = list;
    *n_out = n;
    return 0;
}

int wd_fetch(wd_repo *repo, const char *remote, const char *const *names, size_t n_names, unsigned flags,
             const wd_options *opt, wd_transfer_result *out)
{
    memset(out, 0, sizeof *out);
    double t0 = now_s();
    if (repo->readonly)
        return wd__error(WD_EUSAGE, "repository is open read-only");
    wd_s3 *s3 = NULL;
    int lazy = 0;
    int rc = wd__remote_connect(repo, remote, &s3, &lazy);
    if (rc)
        return rc;
    if (lazy)
        flags |= WD_FETCH_LAZY;
    char **keys = NULL;
    size_t n_keys = 0, n_targets = 0;
    char **tnames = NULL;
    wd_buf tids = {0}, chunks = {0};
    fetched *objs = NULL;
    size_t n_objs = 0;
    if (n_names == 0) {
        rc = wd__s3_list(s3, WD_RK_NAMES, &keys, &n_keys);
        if (!rc && n_keys == 0)
            rc = wd__error(WD_ENOTFOUND, "remote '%s' holds no names yet; push to it first", wd__s3_where(s3));
    }
    size_t want = n_names ? n_names : n_keys;
    if (!rc && !(tnames = calloc(want + 1, sizeof *tnames)))
        rc = WD_NOMEM();
    for (size_t i = 0; !rc && i < want; i++) {
        const char *name = n_names ? names[i] : keys[i] + strlen(WD_RK_NAMES);
        if (!wd__name_valid(name)) {
            if (n_names)
                rc = wd__error(WD_EUSAGE, "invalid name '%s'", name);
            continue;
        }
        int has;
        uint8_t id[WD_HASH_SIZE];
        if ((rc = wd__remote_get_name(s3, name, &has, id, NULL)))
            break;
        if (!has) {
            if (n_names)
                rc = wd__error(WD_ENOTFOUND, "remote '%s' has no name '%s'", wd__s3_where(s3), name);
            continue;
        }
        if (!(tnames[n_targets] = strdup(name)) || wd__buf_append(&tids, id, WD_HASH_SIZE))
            rc = WD_NOMEM();
        n_targets++;
    }
    if (!rc)
        rc = gather(repo, s3, tids.data, n_targets, &objs, &n_objs, out);
    /* Chunks first (not for a lazy clone), then objects, then names. */
    for (size_t k = 0; !rc && k < n_objs; k++)
        rc = wd__manifest_chunks(objs[k].manifest, &chunks);
    if (!rc && !(flags & WD_FETCH_LAZY)) {
        size_t n_chunks = wd__ids_sort_unique(chunks.data, chunks.len / WD_HASH_SIZE);
        rc = fetch_chunks(repo, s3, chunks.data, n_chunks, opt, out);
    }
    for (size_t k = 0; !rc && k < n_objs; k++) {
        if ((rc = wd__db_exec(repo->db, "BEGIN IMMEDIATE")))
            break;
        int here = 0;
        rc = wd__object_exists(repo, objs[k].id, &here);
        if (!rc && !here)
            rc = wd__manifest_insert(repo, objs[k].manifest);
        if (rc) {
            sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
            break;
        }
        if ((rc = wd__db_commit(repo->db)))
            break;
        if (here)
            out->objects_skipped++;
        else
            out->objects++;
    }
    for (size_t t = 0; !rc && (flags & WD_FETCH_NAMES) && t < n_targets; t++) {
        uint8_t cur[WD_HASH_SIZE];
        const uint8_t *id = tids.data + t * WD_HASH_SIZE;
        int r2 = wd__resolve(repo, tnames[t], cur);
        if (r2 == 0 && memcmp(cur, id, WD_HASH_SIZE) == 0) {
            out->names_skipped++;
            continue;
        }
        if (r2 == 0) {
            rc = wd__transfer_conflict(out, tnames[t]);
            continue;
        }
        wd__error_clear();
        if ((rc = wd__db_exec(repo->db, "BEGIN IMMEDIATE")))
            break;
        if ((rc = wd__name_set(repo, tnames[t], id))) {
            sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
            break;
        }
        if ((rc = wd__db_commit(repo->db)))
            break;
        out->names++;
    }
    if (!rc && out->n_conflicts)
        rc = wd__error(WD_EEXISTS, "%zu name%s here point%s elsewhere than on the remote (%s%s); left alone: "
                                   "rename or 'wdrepo tag' them", out->n_conflicts, out->n_conflicts == 1 ? "" : "s",
                       out->n_conflicts == 1 ? "s" : "", out->conflicts[0], out->n_conflicts > 1 ? ", ..." : "");
    for (size_t k = 0; k < n_objs; k++)
        cJSON_Delete(objs[k].manifest);
    free(objs);
    for (size_t t = 0; tnames && t < n_targets; t++)
        free(tnames[t]);
    free(tnames);
    wd__s3_keys_free(keys, n_keys);
    wd__buf_free(&tids), wd__buf_free(&chunks);
    wd__s3_close(s3);
    out->seconds = now_s() - t0;
    return rc;
}

int wd_remote_hydrate(wd_repo *repo, const char *ref, const wd_options *opt, wd_transfer_result *out)
{
    memset(out, 0, sizeof *out);
    double t0 = now_s();
    char *url = NULL;
    int rc = wd__remote_lazy_url(repo, &url);
    if (rc || !url)
        return rc;
    if (repo->readonly) {
        free(url);
        return wd__error(WD_EUSAGE, "repository is open read-only (a lazy clone fetches chunks on checkout)");
    }
    uint8_t id[WD_HASH_SIZE];
    wd_buf chunks = {0};
    wd_s3 *s3 = NULL;
    rc = wd__resolve(repo, ref, id);
    /* The object and its ancestors: a delta is rebuilt from them all. */
    for (int depth = 0; !rc && depth < 64; depth++) {
        if ((rc = wd__object_chunk_ids(repo, id, &chunks)))
            break;
        sqlite3_stmt *st;
        if ((rc = wd__db_prepare(repo->db, &st, "SELECT parent FROM object WHERE id = ?1")))
            break;
        wd__bind_hash(st, 1, id);
        int row = wd__db_step(repo->db, st, "reading an object");
        int more = row > 0 && sqlite3_column_bytes(st, 0) == WD_HASH_SIZE;
        if (more)
            memcpy(id, sqlite3_column_blob(st, 0), WD_HASH_SIZE);
        sqlite3_finalize(st);
        if (row < 0)
            rc = row;
        if (!more)
            break;
    }
    if (!rc)
        rc = wd__s3_open(&s3, url);
    if (!rc) {
        size_t n = wd__ids_sort_unique(chunks.data, chunks.len / WD_HASH_SIZE);
        rc = fetch_chunks(repo, s3, chunks.data, n, opt, out);
    }
    wd__s3_close(s3);
    wd__buf_free(&chunks);
    free(url);
    out->seconds = now_s() - t0;
    return rc;
}
