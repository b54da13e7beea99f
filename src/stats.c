/*
 * stats.c - where the repository's bytes go: every distinct chunk counted
 * once under the first kind of data that references it (bases, then each
 * delta strategy, then non-weight files and shard headers), what the
 * references add up to with their repeats (dedup), and the database file's
 * own size and free pages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db.h"
#include "error.h"
#include "repo_int.h"

#define NO_KIND 0xffffu

/* One stored chunk: 48 bytes, the bound on this module's memory. */
typedef struct {
    uint8_t id[WD_HASH_SIZE];
    uint64_t stored;
    uint32_t raw;
    uint16_t kind; /* index into stats->kinds of the first kind using it */
} chunk_row;

typedef struct {
    chunk_row *rows;
    size_t n;
} chunk_set;

static int cmp_id(const void *key, const void *elem)
{
    return memcmp(key, ((const chunk_row *)elem)->id, WD_HASH_SIZE);
}

static int load_chunks(wd_repo *repo, chunk_set *cs)
{
    sqlite3_stmt *st;
    /* length() of a blob comes from the record header: the data is not read. */
    int rc = wd__db_prepare(repo->db, &st, "SELECT id, length(data), raw_size FROM chunk ORDER BY id");
    if (rc)
        return rc;
    size_t cap = 0;
    int row;
    while ((row = wd__db_step(repo->db, st, "reading chunk sizes")) > 0) {
        if (sqlite3_column_bytes(st, 0) != WD_HASH_SIZE)
            continue; /* fsck reports such rows; they hold nothing usable */
        if (cs->n == cap) {
            size_t ncap = cap ? cap * 2 : 1024;
            chunk_row *nr = realloc(cs->rows, ncap * sizeof *nr);
            if (!nr) {
                row = WD_NOMEM();
                break;
            }
            cs->rows = nr;
            cap = ncap;
        }
        chunk_row *c = &cs->rows[cs->n++];
        memcpy(c->id, sqlite3_column_blob(st, 0), WD_HASH_SIZE);
        c->stored = (uint64_t)sqlite3_column_int64(st, 1);
        c->raw = (uint32_t)sqlite3_column_int64(st, 2);
        c->kind = NO_KIND;
    }
    sqlite3_finalize(st);
    return row < 0 ? row : 0;
}

static int add_kind(wd_stats *s, size_t *cap, const char *name)
{
    if (s->n_kinds == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        wd_stats_kind *nk = realloc(s->kinds, ncap * sizeof *nk);
        if (!nk)
            return WD_NOMEM();
        s->kinds = nk;
        *cap = ncap;
    }
    wd_stats_kind *k = &s->kinds[s->n_kinds++];
    memset(k, 0, sizeof *k);
    snprintf(k->kind, sizeof k->kind, "%s", name);
    return 0;
}

static long find_kind(const wd_stats *s, const char *name)
{
    for (size_t i = 0; i < s->n_kinds; i++)
        if (!strcmp(s->kinds[i].kind, name))
            return (long)i;
    return -1;
}

/* Kinds in counting order: base, delta strategies (sorted), files, shard
 * headers, unreferenced; with their object counts. */
static int list_kinds(wd_repo *repo, wd_stats *s)
{
    size_t cap = 0;
    int rc = add_kind(s, &cap, "base");
    sqlite3_stmt *st = NULL;
    if (!rc)
        rc = wd__db_prepare(repo->db, &st,
                            "SELECT strategy, count(*) FROM object WHERE kind = 'delta' GROUP BY strategy "
                            "ORDER BY strategy");
    int row = 0;
    while (!rc && (row = wd__db_step(repo->db, st, "reading objects")) > 0) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (!name || !strcmp(name, "base") || find_kind(s, name) >= 0)
            continue;
        if (!(rc = add_kind(s, &cap, name)))
            s->kinds[s->n_kinds - 1].n_objects = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (!rc && row < 0)
        rc = row;
    if (!rc)
        rc = add_kind(s, &cap, "files");
    if (!rc)
        rc = add_kind(s, &cap, "shard headers");
    if (!rc)
        rc = add_kind(s, &cap, "unreferenced");
    return rc;
}

/* Counts the references in each row's chunk-id list (column 1) under the
 * kind column 0 names ("base", a strategy, or the integer is_shard of a
 * file); column 2, when present, adds to the logical bytes. */
static int count_refs(wd_repo *repo, wd_stats *s, chunk_set *cs, const char *sql, int files)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st, sql);
    if (rc)
        return rc;
    long files_kind = find_kind(s, "files"), headers_kind = find_kind(s, "shard headers");
    int row;
    while ((row = wd__db_step(repo->db, st, "reading references")) > 0) {
        long kind;
        if (files) {
            kind = sqlite3_column_int(st, 0) ? headers_kind : files_kind;
            s->logical_bytes += (uint64_t)sqlite3_column_int64(st, 2);
        } else {
            const char *name = (const char *)sqlite3_column_text(st, 0);
            kind = name ? find_kind(s, name) : -1;
        }
        const uint8_t *ids = sqlite3_column_blob(st, 1);
        size_t n = (size_t)sqlite3_column_bytes(st, 1) / WD_HASH_SIZE;
        for (size_t i = 0; ids && i < n; i++) {
            chunk_row *c = bsearch(ids + i * WD_HASH_SIZE, cs->rows, cs->n, sizeof *cs->rows, cmp_id);
            if (!c)
                continue; /* a missing chunk is fsck's to report */
            s->referenced_bytes += c->stored;
            if (kind >= 0 && (c->kind == NO_KIND || (uint16_t)kind < c->kind))
                c->kind = (uint16_t)kind;
        }
    }
    sqlite3_finalize(st);
    return row < 0 ? row : 0;
}

static int pragma_u64(sqlite3 *db, const char *sql, uint64_t *out)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(db, &st, sql);
    if (rc)
        return rc;
    int row = wd__db_step(db, st, "reading the database size");
    if (row > 0)
        *out = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return row < 0 ? row : 0;
}

static uint64_t file_bytes(const char *dir, const char *name)
{
    char path[4096];
    struct stat sb;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path || stat(path, &sb) != 0)
        return 0;
    return (uint64_t)sb.st_size;
}

static int gather(wd_repo *repo, wd_stats *s)
{
    chunk_set cs = {NULL, 0};
    int rc = list_kinds(repo, s);
    if (!rc)
        rc = pragma_u64(repo->db, "SELECT count(*) FROM object WHERE kind = 'base'", &s->n_bases);
    if (!rc)
        rc = pragma_u64(repo->db, "SELECT count(*) FROM object WHERE kind = 'delta'", &s->n_deltas);
    if (!rc)
        rc = pragma_u64(repo->db, "SELECT count(*) FROM name", &s->n_names);
    if (!rc) {
        s->n_objects = s->n_bases + s->n_deltas;
        s->kinds[0].n_objects = s->n_bases;
        rc = load_chunks(repo, &cs);
    }
    if (!rc)
        rc = count_refs(repo, s, &cs,
                        "SELECT CASE o.kind WHEN 'base' THEN 'base' ELSE o.strategy END, t.chunks "
                        "FROM tensor t JOIN object o ON o.id = t.object", 0);
    if (!rc)
        rc = count_refs(repo, s, &cs,
                        "SELECT CASE o.kind WHEN 'base' THEN 'base' ELSE o.strategy END, a.chunks "
                        "FROM tensor_array a JOIN object o ON o.id = a.object", 0);
    if (!rc)
        rc = count_refs(repo, s, &cs, "SELECT is_shard, chunks, size FROM file", 1);
    if (!rc) {
        size_t unref = s->n_kinds - 1;
        for (size_t i = 0; i < cs.n; i++) {
            const chunk_row *c = &cs.rows[i];
            wd_stats_kind *k = &s->kinds[c->kind == NO_KIND ? unref : c->kind];
            k->n_chunks++;
            k->stored_bytes += c->stored;
            k->raw_bytes += c->raw;
            s->stored_bytes += c->stored;
            s->raw_bytes += c->raw;
        }
        s->n_chunks = cs.n;
    }
    if (!rc)
        rc = pragma_u64(repo->db, "PRAGMA page_size", &s->page_size);
    if (!rc)
        rc = pragma_u64(repo->db, "PRAGMA page_count", &s->page_count);
    if (!rc)
        rc = pragma_u64(repo->db, "PRAGMA freelist_count", &s->free_pages);
    s->db_bytes = file_bytes(repo->dir, WD_DB_FILE);
    s->wal_bytes = file_bytes(repo->dir, WD_DB_FILE "-wal");
    free(cs.rows);
    return rc;
}

int wd_stats_get(wd_repo *repo, wd_stats **out)
{
    *out = NULL;
    wd_stats *s = calloc(1, sizeof *s);
    if (!s)
        return WD_NOMEM();
    /* One read transaction: every count from the same snapshot, even while
     * another command commits. */
    int rc = wd__db_exec(repo->db, "BEGIN");
    if (!rc) {
        rc = gather(repo, s);
        sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL); /* it only read */
    }
    if (rc) {
        wd_stats_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void wd_stats_free(wd_stats *stats)
{
    if (!stats)
        return;
    free(stats->kinds);
    free(stats);
}
