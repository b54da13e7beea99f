/*
 * remote_push.c - wd_push: sends objects to a remote in the order that
 * keeps it consistent at every instant (docs/REMOTES.md): the chunks it
 * lacks first, then manifests parents first, then names by conditional
 * writes. A push cut anywhere leaves at worst chunks or manifests nothing
 * names yet, which the next push finds there and skips.
 */
#include "remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zstd.h>

#include "db.h"
#include "error.h"
#include "fault.h"
#include "hash.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int in_sorted(const uint8_t *ids, size_t n, const uint8_t id[WD_HASH_SIZE])
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(ids + mid * WD_HASH_SIZE, id, WD_HASH_SIZE);
        if (c == 0)
            return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Ids of the keys under prefix that are "<prefix><64 hex>", sorted. */
static int remote_ids(wd_s3 *s3, const char *prefix, wd_buf *out, size_t *n_out)
{
    char **keys;
    size_t n;
    int rc = wd__s3_list(s3, prefix, &keys, &n);
    if (rc)
        return rc;
    size_t pl = strlen(prefix), k = 0;
    out->len = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        uint8_t id[WD_HASH_SIZE];
        if (strlen(keys[i]) != pl + 64 || wd__unhex(id, keys[i] + pl))
            continue;
        if (wd__buf_append(out, id, WD_HASH_SIZE))
            rc = WD_NOMEM();
        k++;
    }
    wd__s3_keys_free(keys, n);
    *n_out = rc ? 0 : wd__ids_sort_unique(out->data, k);
    return rc;
}

/* The first failed request of reqs as the call's error, else 0. */
static int first_failure(wd_s3 *s3, const wd_s3_req *reqs, size_t n, int eexists_ok)
{
    for (size_t i = 0; i < n; i++)
        if (reqs[i].result && !(eexists_ok && reqs[i].result == WD_EEXISTS))
            return wd__s3_req_error(s3, &reqs[i]);
    return 0;
}

/* Uploads chunks ids[0..n) create-only, a round at a time. */
static int push_chunks(wd_repo *repo, wd_s3 *s3, const uint8_t *ids, size_t n, const wd_options *opt,
                       wd_transfer_result *out)
{
    wd_s3_req *reqs = calloc(WD_REMOTE_ROUND, sizeof *reqs);
    wd_buf *bodies = calloc(WD_REMOTE_ROUND, sizeof *bodies);
    int rc = reqs && bodies ? 0 : WD_NOMEM();
    wd_buf data = {0};
    /* Chunks are checked against their ids before they leave: the remote
     * never replaces a key, so a damaged chunk sent once would stay. */
    uint8_t *raw = malloc(WD_CHUNK_RAW_MAX);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!rc && (!raw || !dctx))
        rc = WD_NOMEM();
    /* Progress in bytes, as every stage reports it: the total is what the
     * local store holds of the chunks to send, with their headers. */
    uint64_t total = 0, done = 0;
    for (size_t i = 0; !rc && opt && opt->progress && i < n; i++) {
        uint64_t sz = 0;
        rc = repo->store->ops->stored_size(repo->store, ids + i * WD_HASH_SIZE, &sz);
        total += sz + WD_RCHUNK_HEADER;
    }
    for (size_t at = 0; !rc && at < n; at += WD_REMOTE_ROUND) {
        size_t m = n - at < WD_REMOTE_ROUND ? n - at : WD_REMOTE_ROUND;
        for (size_t i = 0; !rc && i < m; i++) {
            const uint8_t *id = ids + (at + i) * WD_HASH_SIZE;
            uint64_t raw_size;
            int codec;
            if ((rc = wd__chunk_fetch(repo->store, id, &data, &raw_size, &codec)))
                break;
            if ((rc = wd__chunk_decode(repo->store, dctx, id, codec, data.data, data.len, raw_size, raw,
                                       WD_DECODE_CHECK)))
                break;
            uint8_t head[WD_RCHUNK_HEADER] = {0};
            memcpy(head, WD_RCHUNK_MAGIC, 4);
            head[4] = (uint8_t)codec;
            for (int b = 0; b < 8; b++)
                head[8 + b] = (uint8_t)(raw_size >> (8 * b));
            bodies[i].len = 0;
            if (wd__buf_append(&bodies[i], head, sizeof head) || wd__buf_append(&bodies[i], data.data, data.len)) {
                rc = WD_NOMEM();
                break;
            }
            char hex[WD_HEX_SIZE];
            wd__hex(hex, id);
            memset(&reqs[i], 0, sizeof reqs[i]);
            reqs[i].method = WD_S3_PUT;
            snprintf(reqs[i].key, sizeof reqs[i].key, WD_RK_CHUNKS "%s", hex);
            reqs[i].body = bodies[i].data;
            reqs[i].body_len = bodies[i].len;
            reqs[i].create_only = 1;
        }
        if (rc)
            break;
        rc = wd__s3_run(s3, reqs, m, WD_REMOTE_PARALLEL, NULL);
        for (size_t i = 0; !rc && i < m; i++) {
            done += reqs[i].body_len;
            if (reqs[i].result == 0) {
                out->chunks++;
                out->bytes += reqs[i].body_len;
                wd__fault_point(WD_FAULT_PUT);
            } else if (reqs[i].result == WD_EEXISTS) {
                out->chunks_skipped++;
            }
        }
        if (!rc)
            rc = first_failure(s3, reqs, m, 1);
        for (size_t i = 0; i < m; i++)
            wd__buf_free(&reqs[i].resp);
        if (!rc && opt && opt->progress)
            opt->progress(opt->progress_ud, "push", done, total);
    }
    for (size_t i = 0; bodies && i < WD_REMOTE_ROUND; i++)
        wd__buf_free(&bodies[i]);
    wd__buf_free(&data);
    ZSTD_freeDCtx(dctx);
    free(raw);
    free(bodies);
    free(reqs);
    return rc;
}

/* Points name at id on the remote unless it points elsewhere (then a
 * conflict, or with force a swap against the ETag read). */
static int push_name(wd_s3 *s3, const char *name, const uint8_t id[WD_HASH_SIZE], unsigned flags,
                     wd_transfer_result *out)
{
    char body[WD_HEX_SIZE + 1], etag[80] = "";
    wd__hex(body, id);
    strcat(body, "\n");
    for (int attempt = 0; attempt < 5; attempt++) {
        int has;
        uint8_t cur[WD_HASH_SIZE];
        int rc = wd__remote_get_name(s3, name, &has, cur, etag);
        if (rc)
            return rc;
        if (has && memcmp(cur, id, WD_HASH_SIZE) == 0) {
            out->names_skipped++;
            return 0;
        }
        if (has && !(flags & WD_PUSH_FORCE))
            return wd__transfer_conflict(out, name);
        wd_s3_req r;
        memset(&r, 0, sizeof r);
        r.method = WD_S3_PUT;
        snprintf(r.key, sizeof r.key, WD_RK_NAMES "%s", name);
        r.body = body;
        r.body_len = strlen(body);
        if (has)
            snprintf(r.if_match, sizeof r.if_match, "%s", etag);
        else
            r.create_only = 1;
        rc = wd__s3_run(s3, &r, 1, 1, NULL);
        wd__buf_free(&r.resp);
        if (rc)
            return rc;
        if (r.result == 0) {
            out->names++;
            wd__fault_point(WD_FAULT_PUT);
            return 0;
        }
        /* Someone else wrote the name between our read and write (or our
         * own write's answer was lost): read it again and decide anew. */
        if (r.result != WD_EEXISTS)
            return wd__s3_req_error(s3, &r);
    }
    return wd__error(WD_EBUSY, "remote '%s': name '%s' keeps changing under us; push again", wd__s3_where(s3),
                     name);
}

int wd_push(wd_repo *repo, const char *remote, const char *const *refs, size_t n_refs, unsigned flags,
            const wd_options *opt, wd_transfer_result *out)
{
    memset(out, 0, sizeof *out);
    double t0 = now_s();
    wd_s3 *s3 = NULL;
    int rc = wd__remote_connect(repo, remote, &s3, NULL);
    if (rc)
        return rc;
    /* What to send: (name or NULL, id) pairs. */
    wd_name_info *all = NULL;
    size_t n_all = 0, n_targets = 0;
    char **tnames = NULL;
    wd_buf tids = {0}, order = {0}, remote_objs = {0}, remote_chunks = {0}, chunks = {0}, manifest = {0};
    if (n_refs == 0) {
        rc = wd_names(repo, &all, &n_all);
        if (!rc && n_all == 0)
            rc = wd__error(WD_ENOTFOUND, "nothing to push: no names here (give REFs, or 'wdrepo tag' one)");
    }
    size_t want = n_refs ? n_refs : n_all;
    if (!rc && !(tnames = calloc(want + 1, sizeof *tnames)))
        rc = WD_NOMEM();
    for (size_t i = 0; !rc && i < want; i++) {
        const char *ref = n_refs ? refs[i] : all[i].name;
        uint8_t id[WD_HASH_SIZE];
        if ((rc = wd__resolve(repo, ref, id)))
            break;
        /* A name given is pushed as that name; an id, as the object alone. */
        sqlite3_stmt *st;
        int is_name = 0;
        if (!(rc = wd__db_prepare(repo->db, &st, "SELECT 1 FROM name WHERE name = ?1"))) {
            sqlite3_bind_text(st, 1, ref, -1, SQLITE_STATIC);
            int row = wd__db_step(repo->db, st, "looking up names");
            sqlite3_finalize(st);
            if (row < 0)
                rc = row;
            is_name = row > 0;
        }
        if (!rc && is_name && !(tnames[n_targets] = strdup(ref)))
            rc = WD_NOMEM();
        if (!rc && wd__buf_append(&tids, id, WD_HASH_SIZE))
            rc = WD_NOMEM();
        n_targets++;
    }
    /* Every object the targets are built on, ancestors first. */
    size_t n_order = 0;
    for (size_t t = 0; !rc && t < n_targets; t++) {
        uint8_t chain[64][WD_HASH_SIZE];
        size_t depth = 0;
        memcpy(chain[0], tids.data + t * WD_HASH_SIZE, WD_HASH_SIZE);
        for (;;) {
            sqlite3_stmt *st;
            if ((rc = wd__db_prepare(repo->db, &st, "SELECT parent FROM object WHERE id = ?1")))
                break;
            wd__bind_hash(st, 1, chain[depth]);
            int row = wd__db_step(repo->db, st, "reading an object");
            int more = row > 0 && sqlite3_column_bytes(st, 0) == WD_HASH_SIZE;
            if (more && depth + 1 < 64)
                memcpy(chain[depth + 1], sqlite3_column_blob(st, 0), WD_HASH_SIZE);
            sqlite3_finalize(st);
            if (row < 0) {
                rc = row;
                break;
            }
            if (!more)
                break;
            if (++depth == 64) {
                rc = wd__error(WD_EUSAGE, "lineage deeper than 64 objects: push an ancestor first");
                break;
            }
        }
        for (size_t d = depth + 1; !rc && d-- > 0;) {
            int seen = 0;
            for (size_t k = 0; k < n_order && !seen; k++)
                seen = memcmp(order.data + k * WD_HASH_SIZE, chain[d], WD_HASH_SIZE) == 0;
            if (!seen) {
                if (wd__buf_append(&order, chain[d], WD_HASH_SIZE))
                    rc = WD_NOMEM();
                n_order++;
            }
        }
    }
    /* The set differences: objects and chunks the remote lacks. */
    size_t n_remote_objs = 0, n_remote_chunks = 0, n_send = 0;
    if (!rc)
        rc = remote_ids(s3, WD_RK_OBJECTS, &remote_objs, &n_remote_objs);
    uint8_t *send = NULL;
    if (!rc && n_order && !(send = malloc(n_order * WD_HASH_SIZE)))
        rc = WD_NOMEM();
    for (size_t k = 0; !rc && k < n_order; k++) {
        const uint8_t *id = order.data + k * WD_HASH_SIZE;
        if (in_sorted(remote_objs.data, n_remote_objs, id)) {
            out->objects_skipped++;
            continue;
        }
        memcpy(send + n_send++ * WD_HASH_SIZE, id, WD_HASH_SIZE);
        rc = wd__object_chunk_ids(repo, id, &chunks);
    }
    if (!rc && n_send)
        rc = remote_ids(s3, WD_RK_CHUNKS, &remote_chunks, &n_remote_chunks);
    size_t n_chunks = chunks.len / WD_HASH_SIZE, n_missing = 0;
    if (!rc) {
        n_chunks = wd__ids_sort_unique(chunks.data, n_chunks);
        for (size_t i = 0; i < n_chunks; i++) {
            const uint8_t *id = chunks.data + i * WD_HASH_SIZE;
            if (in_sorted(remote_chunks.data, n_remote_chunks, id))
                out->chunks_skipped++;
            else
                memmove(chunks.data + n_missing++ * WD_HASH_SIZE, id, WD_HASH_SIZE);
        }
        rc = push_chunks(repo, s3, chunks.data, n_missing, opt, out);
    }
    /* Manifests, parents first: a manifest on the remote means its chunks
     * and its parent's manifest are there. */
    for (size_t k = 0; !rc && k < n_send; k++) {
        const uint8_t *id = send + k * WD_HASH_SIZE;
        if ((rc = wd__manifest_build(repo, id, &manifest)))
            break;
        wd_s3_req r;
        memset(&r, 0, sizeof r);
        r.method = WD_S3_PUT;
        char hex[WD_HEX_SIZE];
        wd__hex(hex, id);
        snprintf(r.key, sizeof r.key, WD_RK_OBJECTS "%s", hex);
        r.body = manifest.data;
        r.body_len = manifest.len;
        r.create_only = 1;
        rc = wd__s3_run(s3, &r, 1, 1, NULL);
        wd__buf_free(&r.resp);
        if (!rc && r.result == 0) {
            out->objects++;
            out->bytes += manifest.len;
            wd__fault_point(WD_FAULT_PUT);
        } else if (!rc && r.result == WD_EEXISTS) {
            out->objects_skipped++;
        } else if (!rc) {
            rc = wd__s3_req_error(s3, &r);
        }
    }
    /* Names last. */
    for (size_t t = 0; !rc && t < n_targets; t++)
        if (tnames[t])
            rc = push_name(s3, tnames[t], tids.data + t * WD_HASH_SIZE, flags, out);
    if (!rc && out->n_conflicts)
        rc = wd__error(WD_EEXISTS, "remote '%s': %zu name%s point%s elsewhere there (%s%s); left alone: pull "
                                   "first, or push --force to move them",
                       wd__s3_where(s3), out->n_conflicts, out->n_conflicts == 1 ? "" : "s",
                       out->n_conflicts == 1 ? "s" : "", out->conflicts[0], out->n_conflicts > 1 ? ", ..." : "");
    for (size_t t = 0; tnames && t < n_targets; t++)
        free(tnames[t]);
    free(tnames);
    free(send);
    wd_names_free(all, n_all);
    wd__buf_free(&tids), wd__buf_free(&order), wd__buf_free(&remote_objs), wd__buf_free(&remote_chunks);
    wd__buf_free(&chunks), wd__buf_free(&manifest);
    wd__s3_close(s3);
    out->seconds = now_s() - t0;
    return rc;
}
