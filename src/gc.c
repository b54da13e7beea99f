/*
 * gc.c - garbage collection: deletes the chunks no object references (what
 * rm leaves, and what a command that failed or was killed had stored) and
 * gives their pages back to the file system. It runs only while it holds
 * the writer lock exclusive (repolock.h): a command that writes may hold
 * chunks it stored, or found already stored, that it has not referenced
 * yet, so none may be alive while gc decides what is unreferenced.
 *
 * Shrinking: SQLite returns pages to the file system only through VACUUM or
 * auto-vacuum. New repositories are created with auto_vacuum = INCREMENTAL
 * (db.c), and gc runs PRAGMA incremental_vacuum in the transaction that
 * deletes, then folds the log back (wal_checkpoint(TRUNCATE)), which
 * truncates the database file and empties the log. An older repository
 * (auto_vacuum off) is rewritten once by VACUUM, which needs free space
 * for a copy of its live pages (checked first), and shrinks
 * incrementally from then on.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "db.h"
#include "error.h"
#include "fault.h"
#include "hash.h"
#include "repo_int.h"

extern const size_t wd__schema_count;

/* The schema version whose chunk references REFS_SQL lists. A migration
 * that adds a column holding chunk ids must add it to REFS_SQL and bump
 * this; until then gc refuses to run rather than delete live chunks. */
#define GC_SCHEMA_KNOWN 2

/* Every chunk reference: columns of concatenated 32-byte ids, with what
 * names them in a message. */
#define REFS_SQL                                                                                                      \
    "SELECT chunks, object, 'file ' || path FROM file "                                                               \
    "UNION ALL SELECT chunks, object, 'tensor ' || name FROM tensor "                                                 \
    "UNION ALL SELECT chunks, object, 'array ' || tensor || '.' || field FROM tensor_array"

static uint64_t file_size(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat sb;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path || stat(path, &sb) != 0)
        return 0;
    return (uint64_t)sb.st_size;
}

/* What the repository takes on disk: the database and its log. */
static uint64_t repo_bytes(const wd_repo *repo)
{
    return file_size(repo->dir, WD_DB_FILE) + file_size(repo->dir, WD_DB_FILE "-wal");
}

static int query_u64(sqlite3 *db, const char *sql, uint64_t *a, uint64_t *b)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(db, &st, sql);
    if (rc)
        return rc;
    int row = wd__db_step(db, st, "gc");
    if (row > 0) {
        *a = (uint64_t)sqlite3_column_int64(st, 0);
        if (b)
            *b = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return row < 0 ? row : 0;
}

/* Fills temp table gc_live with every referenced chunk id. The table lives
 * in SQLite's temporary storage, which spills to a temporary file past its
 * page cache, so memory stays bounded whatever the number of references.
 * A damaged reference list stops gc: deleting by a list that cannot be
 * read could remove live chunks. */
static int mark_live(wd_repo *repo)
{
    int rc = wd__db_exec(repo->db, "CREATE TEMP TABLE gc_live(id BLOB PRIMARY KEY) WITHOUT ROWID");
    sqlite3_stmt *refs = NULL, *ins = NULL;
    if (!rc)
        rc = wd__db_prepare(repo->db, &refs, REFS_SQL);
    if (!rc)
        rc = wd__db_prepare(repo->db, &ins, "INSERT OR IGNORE INTO temp.gc_live(id) VALUES (?1)");
    int row = 0;
    while (!rc && (row = wd__db_step(repo->db, refs, "gc: reading chunk references")) > 0) {
        const uint8_t *ids = sqlite3_column_blob(refs, 0);
        size_t len = (size_t)sqlite3_column_bytes(refs, 0);
        if (len % WD_HASH_SIZE || (len && !ids)) {
            char hex[WD_HEX_SIZE] = "?";
            if (sqlite3_column_bytes(refs, 1) == WD_HASH_SIZE)
                wd__hex(hex, sqlite3_column_blob(refs, 1));
            rc = wd__error(WD_ECORRUPT,
                           "gc: the chunk list of object %.12s %s is damaged (%zu bytes); nothing was removed: run "
                           "'wdrepo fsck'",
                           hex, (const char *)sqlite3_column_text(refs, 2), len);
            break;
        }
        for (size_t off = 0; !rc && off < len; off += WD_HASH_SIZE) {
            sqlite3_bind_blob(ins, 1, ids + off, WD_HASH_SIZE, SQLITE_STATIC);
            int s = sqlite3_step(ins);
            sqlite3_reset(ins);
            if (s != SQLITE_DONE)
                rc = wd__db_error(repo->db, s, "gc");
        }
    }
    if (!rc && row < 0)
        rc = row;
    sqlite3_finalize(refs);
    sqlite3_finalize(ins);
    return rc;
}

/* The directory SQLite keeps its temporary files in (VACUUM's copy), found
 * as its unix VFS does. */
static const char *sqlite_temp_dir(void)
{
    const char *cands[] = {getenv("SQLITE_TMPDIR"), getenv("TMPDIR"), "/var/tmp", "/usr/tmp", "/tmp", "."};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        struct stat sb;
        if (cands[i] && stat(cands[i], &sb) == 0 && S_ISDIR(sb.st_mode) && access(cands[i], W_OK | X_OK) == 0)
            return cands[i];
    }
    return ".";
}

static int free_space(const char *dir, uint64_t *out, unsigned long *fsid)
{
    struct statvfs vs;
    if (statvfs(dir, &vs) != 0)
        return -1;
    *out = (uint64_t)vs.f_bavail * vs.f_frsize;
    *fsid = vs.f_fsid;
    return 0;
}

/* The one-time VACUUM of a repository made without auto-vacuum, when the
 * file systems have room for it: SQLite copies the live pages into a
 * temporary database, then writes them back through the log, so the
 * repository's file system needs their size again, and the temporary
 * directory too (twice on one file system). */
static int compact_old(wd_repo *repo, wd_gc_result *res)
{
    uint64_t pages = 0, free_pages = 0, page_size = 0;
    int rc = query_u64(repo->db, "PRAGMA page_count", &pages, NULL);
    if (!rc)
        rc = query_u64(repo->db, "PRAGMA freelist_count", &free_pages, NULL);
    if (!rc)
        rc = query_u64(repo->db, "PRAGMA page_size", &page_size, NULL);
    if (rc || free_pages == 0)
        return rc;
    uint64_t live = (pages - free_pages) * page_size, need = live + (live >> 4) + (1u << 20);
    uint64_t repo_free = 0, tmp_free = 0;
    unsigned long repo_fs = 0, tmp_fs = 0;
    const char *tmp = sqlite_temp_dir();
    if (free_space(repo->dir, &repo_free, &repo_fs) != 0 || free_space(tmp, &tmp_free, &tmp_fs) != 0) {
        res->compact_needs = repo_fs == tmp_fs ? 2 * need : need;
        return 0;
    }
    if (repo_fs == tmp_fs ? repo_free < 2 * need : repo_free < need || tmp_free < need) {
        res->compact_needs = repo_fs == tmp_fs ? 2 * need : need;
        return 0;
    }
    /* A failure leaves the database as it was (VACUUM is one transaction)
     * and the chunks are gone already: it is reported as space still
     * needed, not as a failed gc. */
    if (wd__db_exec(repo->db, "PRAGMA auto_vacuum = INCREMENTAL") || wd__db_exec(repo->db, "VACUUM")) {
        res->compact_needs = repo_fs == tmp_fs ? 2 * need : need;
        wd__error_clear();
        return 0;
    }
    /* VACUUM commits on its own, past wd__db_commit: the crash point of
     * the fault matrix goes here by hand. */
    wd__fault_point(WD_FAULT_TXN);
    res->compacted = 1;
    return 0;
}

/* Pages a shrinking step frees: what it moves or drops must stay in the
 * page cache (8 MiB, db.c) until its commit, which writes only the pages
 * below the new end of the file; a step that spilled would write every
 * dropped page to the log first (55 MiB for 60 MiB of chunks, more than a
 * full disk has). */
#define SHRINK_STEP_PAGES 64

/* Every this many steps (64 MiB of pages), the log is folded back when
 * that cannot grow the database file, so pages moved down do not pile up
 * in the log: SQLite's own checkpoint every 1000 pages is off during gc. */
#define SHRINK_STEPS_PER_CHECKPOINT 16

/* Whether a checkpoint now would only write inside the database file as it
 * is on disk (after a full disk, committed pages may exist only in the log,
 * and the file must not grow for pages about to be cut off). */
static int checkpoint_fits(wd_repo *repo)
{
    uint64_t pages = 0, page_size = 0;
    if (query_u64(repo->db, "PRAGMA page_count", &pages, NULL) || query_u64(repo->db, "PRAGMA page_size", &page_size, NULL))
        return 0;
    return pages * page_size <= file_size(repo->dir, WD_DB_FILE);
}

/* Hands the free pages of an incremental-vacuum database back to the file
 * system, SHRINK_STEP_PAGES per transaction. Each step writes a few pages
 * (pointer map, freelist trunk, and any page moved down from the end), so
 * this works on a full disk. A failure only leaves the file larger: the
 * chunks are already gone; the next gc goes on. */
static void shrink(wd_repo *repo, wd_gc_result *res)
{
    for (unsigned step = 1;; step++) {
        if (step % SHRINK_STEPS_PER_CHECKPOINT == 0 && checkpoint_fits(repo))
            sqlite3_exec(repo->db, "PRAGMA wal_checkpoint(PASSIVE)", NULL, NULL, NULL);
        uint64_t free_pages = 0;
        int rc = wd__db_exec(repo->db, "BEGIN IMMEDIATE");
        if (!rc)
            rc = query_u64(repo->db, "PRAGMA freelist_count", &free_pages, NULL);
        if (!rc && free_pages) {
            char sql[64];
            snprintf(sql, sizeof sql, "PRAGMA incremental_vacuum(%d)", SHRINK_STEP_PAGES);
            rc = wd__db_exec(repo->db, sql);
        }
        if (rc || !free_pages) {
            sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
            if (rc)
                res->shrink_pending = 1;
            break;
        }
        if (wd__db_commit(repo->db)) {
            sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
            res->shrink_pending = 1;
            break;
        }
    }
    wd__error_clear();
}

/* Folds the log back into the database file, which truncates both. Readers
 * on an older snapshot keep it from completing; they are not made to wait
 * for (SPEC: readers never block), so this waits for them briefly, then
 * leaves the rest to the last connection to close. */
static void fold_log(wd_repo *repo, wd_gc_result *res)
{
    sqlite3_stmt *st;
    sqlite3_busy_timeout(repo->db, 1000);
    if (wd__db_prepare(repo->db, &st, "PRAGMA wal_checkpoint(TRUNCATE)") == 0) {
        int row = wd__db_step(repo->db, st, "gc: checkpoint");
        if (row <= 0 || sqlite3_column_int(st, 0) != 0)
            res->shrink_pending = 1;
        sqlite3_finalize(st);
    } else {
        res->shrink_pending = 1;
    }
    sqlite3_busy_timeout(repo->db, 30000);
    wd__error_clear();
}

static int gc_pass(wd_repo *repo, int dry_run, int allow_compact, wd_gc_result *res);

/* gc proper; the caller holds the lock exclusive. allow_compact: an old
 * repository may be rewritten by VACUUM (not when cleaning up after a
 * failure, which must be quick and may be short of space). */
static int gc_locked(wd_repo *repo, int dry_run, int allow_compact, wd_gc_result *res)
{
    if (wd__schema_count > GC_SCHEMA_KNOWN)
        return wd__error(WD_ERROR,
                         "gc knows the chunk references of schema version %d, but this wdrepo has %zu: it removes "
                         "nothing until src/gc.c lists them",
                         GC_SCHEMA_KNOWN, wd__schema_count);
    res->file_bytes_before = repo_bytes(repo);
    /* Some builds (Debian's) default to secure_delete = ON, which zeroes
     * every freed page through the log: a gc of 60 MiB of chunks then writes
     * 55 MiB, which a full disk does not have. FAST only clears what costs
     * no extra write; these are weights, not secrets. */
    int rc = wd__db_exec(repo->db, "PRAGMA secure_delete = FAST");
    if (rc)
        return rc;
    /* A checkpoint before the file has shrunk would copy pages about to be
     * cut off into it (and, on a full disk, take the room the shrinking
     * needs to grow the file for them): the log is folded once, at the end. */
    sqlite3_wal_autocheckpoint(repo->db, 0);
    rc = gc_pass(repo, dry_run, allow_compact, res);
    sqlite3_wal_autocheckpoint(repo->db, 1000);
    if (!rc && !dry_run) {
        fold_log(repo, res);
        res->file_bytes_after = repo_bytes(repo);
    }
    return rc;
}

/* gc_locked's work between the pragmas. */
static int gc_pass(wd_repo *repo, int dry_run, int allow_compact, wd_gc_result *res)
{
    int rc = wd__db_exec(repo->db, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    uint64_t auto_vacuum = 0;
    rc = mark_live(repo);
    if (!rc)
        rc = query_u64(repo->db, "SELECT count(*) FROM chunk", &res->n_chunks, NULL);
    if (!rc)
        rc = query_u64(repo->db,
                       "SELECT count(*), coalesce(sum(length(data)), 0) FROM chunk "
                       "WHERE id NOT IN (SELECT id FROM temp.gc_live)",
                       &res->n_unreferenced, &res->unreferenced_bytes);
    if (!rc)
        rc = query_u64(repo->db, "PRAGMA auto_vacuum", &auto_vacuum, NULL);
    if (!rc && !dry_run && res->n_unreferenced)
        rc = wd__db_exec(repo->db, "DELETE FROM chunk WHERE id NOT IN (SELECT id FROM temp.gc_live)");
    if (!rc)
        rc = wd__db_exec(repo->db, "DROP TABLE temp.gc_live");
    if (rc || dry_run) {
        sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
        res->file_bytes_after = res->file_bytes_before;
        return rc;
    }
    if ((rc = wd__db_commit(repo->db)))
        return rc;
    /* The chunks are gone; what follows only shrinks the file. */
    if (auto_vacuum == 2)
        shrink(repo, res);
    else if (auto_vacuum == 0 && allow_compact)
        rc = compact_old(repo, res);
    return rc;
}

int wd_gc(wd_repo *repo, const wd_gc_opts *o, wd_gc_result *out)
{
    wd_gc_result res;
    memset(&res, 0, sizeof res);
    if (repo->readonly)
        return wd__error(WD_EUSAGE, "repository is open read-only");
    int wait_ms = !o || o->wait_ms == 0 ? WD_GC_DEFAULT_WAIT_MS : o->wait_ms < 0 ? 0 : o->wait_ms;
    int rc = wd__repolock_exclusive(&repo->lock, wait_ms);
    if (rc)
        return rc;
    /* No writer is alive: every reserve left in the directory is stale (a
     * killed command's), and ours is room to work in on a full disk. */
    wd__reserve_release(&repo->reserve);
    wd__reserve_remove_stale(repo->dir);
    rc = gc_locked(repo, o && (o->flags & WD_GC_DRY_RUN), 1, &res);
    wd__repolock_release_exclusive(&repo->lock);
    if (!rc && out)
        *out = res;
    return rc;
}

static void fmt_size(char buf[32], uint64_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, 32, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, 32, "%.1f %s", v, units[u]);
}

int wd__gc_after_failure(wd_repo *repo, int rc, uint64_t stored_bytes)
{
    if (!rc || !stored_bytes || repo->readonly)
        return rc;
    char msg[768], size[32];
    snprintf(msg, sizeof msg, "%s", wd_errmsg());
    fmt_size(size, stored_bytes);
    if (wd__repolock_try_exclusive(&repo->lock) != 1)
        return wd__error(rc,
                         "%s; up to %s of chunks it stored are left unreferenced while another command writes: "
                         "'wdrepo gc' frees them",
                         msg, size);
    wd_gc_result res;
    memset(&res, 0, sizeof res);
    wd__reserve_release(&repo->reserve);
    int grc = gc_locked(repo, 0, 0, &res);
    wd__repolock_release_exclusive(&repo->lock);
    if (grc) {
        char why[256];
        snprintf(why, sizeof why, "%s", wd_errmsg());
        return wd__error(rc, "%s; up to %s of chunks it stored are left unreferenced (removing them failed: %s): "
                             "'wdrepo gc' frees them",
                         msg, size, why);
    }
    fmt_size(size, res.unreferenced_bytes);
    uint64_t freed = res.file_bytes_before > res.file_bytes_after ? res.file_bytes_before - res.file_bytes_after : 0;
    char freed_s[32];
    fmt_size(freed_s, freed);
    return wd__error(rc, "%s; the %s of chunks it had stored were removed again (%s given back to the file system)",
                     msg, size, freed_s);
}
