/*
 * db.c - opening the repository database and migrating its schema.
 *
 * The schema lives in schema/NNNN_name.sql, compiled in by the Makefile
 * (build/gen/schema_sql.c). PRAGMA user_version counts the migrations
 * applied; each runs in its own transaction, so a crash mid-migration leaves
 * the previous version.
 */
#include "db.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "fault.h"

extern const char *const wd__schema_sql[];
extern const size_t wd__schema_count;

int wd__db_error(sqlite3 *db, int sqlite_rc, const char *what)
{
    int code = WD_ERROR;
    switch (sqlite_rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = WD_EBUSY; break;
    case SQLITE_NOMEM: code = WD_ENOMEM; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: code = WD_ECORRUPT; break;
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM: code = WD_EIO; break;
    default: break;
    }
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(sqlite_rc);
    if (code == WD_EBUSY)
        return wd__error(code, "%s: repository is busy (another wdrepo is writing); try again", what);
    if ((sqlite_rc & 0xff) == SQLITE_FULL)
        return wd__error(code, "%s: disk full; the repository is unchanged", what);
    return wd__error(code, "%s: %s", what, msg);
}

int wd__db_step(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        return 1;
    if (s == SQLITE_DONE)
        return 0;
    return wd__db_error(db, s, what);
}

int wd__db_exec(sqlite3 *db, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : wd__db_error(db, rc, "database");
}

int wd__db_commit(sqlite3 *db)
{
    int rc = wd__db_exec(db, "COMMIT");
    if (!rc)
        wd__fault_point(WD_FAULT_TXN);
    return rc;
}

int wd__db_prepare(sqlite3 *db, sqlite3_stmt **out, const char *sql)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, out, NULL);
    return rc == SQLITE_OK ? 0 : wd__db_error(db, rc, "database");
}

static int pragma_int(sqlite3 *db, const char *sql, long long *out)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(db, &st, sql);
    if (rc)
        return rc;
    int row = wd__db_step(db, st, "database");
    if (row > 0)
        *out = sqlite3_column_int64(st, 0);
    else if (!row)
        row = wd__error(WD_ECORRUPT, "database: '%s' returned no row", sql);
    sqlite3_finalize(st);
    return row < 0 ? row : 0;
}

static int migrate(sqlite3 *db)
{
    long long version = 0, app = 0;
    int rc = pragma_int(db, "PRAGMA user_version", &version);
    if (!rc)
        rc = pragma_int(db, "PRAGMA application_id", &app);
    if (rc)
        return rc;
    if (version > 0 && app != WD_APPLICATION_ID)
        return wd__error(WD_ECORRUPT, "not a wdrepo database (application_id %lld)", app);
    if (version > (long long)wd__schema_count)
        return wd__error(WD_ERROR,
                         "repository schema version %lld is newer than this wdrepo knows (%zu); upgrade wdrepo",
                         version, wd__schema_count);
    for (size_t v = (size_t)version; v < wd__schema_count; v++) {
        char set_version[64];
        snprintf(set_version, sizeof set_version, "PRAGMA user_version = %zu", v + 1);
        if ((rc = wd__db_exec(db, "BEGIN IMMEDIATE")))
            return rc;
        if ((rc = wd__db_exec(db, wd__schema_sql[v])) || (rc = wd__db_exec(db, set_version))) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return wd__error_context(rc, "migration %zu", v + 1);
        }
        if ((rc = wd__db_exec(db, "COMMIT")))
            return rc;
    }
    return 0;
}

int wd__db_open(sqlite3 **out, const char *path, int readonly, int create)
{
    sqlite3 *db = NULL;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (create)
        flags |= SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = wd__db_error(db, rc, path);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_extended_result_codes(db, 1);
    /* Writers wait for each other this long before reporting "busy". */
    sqlite3_busy_timeout(db, 30000);
    /* 64 KiB pages: chunks are ~1 MiB blobs, and big pages keep their
     * overflow chains short. Only takes effect on a new database. */
    rc = create ? wd__db_exec(db, "PRAGMA page_size = 65536") : 0;
    if (!rc && !readonly)
        rc = wd__db_exec(db, "PRAGMA journal_mode = WAL");
    /* NORMAL in WAL mode never corrupts; a power cut may lose only the last
     * command, which then left nothing half-visible. */
    if (!rc)
        rc = wd__db_exec(db, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON");
    /* An 8 MiB page cache (SQLite's default is 2 MiB, 31 of our 64 KiB
     * pages): a command looks up one chunk id per tensor piece, and with
     * hundreds of thousands of small tensors the chunk index no longer fits
     * the default, so nearly every lookup re-read index pages. 32 MiB was
     * measured no faster on 320k tensors and cost 31 MB of peak RSS on
     * every command. */
    if (!rc)
        rc = wd__db_exec(db, "PRAGMA cache_size = -8192");
    if (!rc && !readonly)
        rc = migrate(db);
    if (!rc && readonly) {
        long long version = 0, app = 0;
        rc = pragma_int(db, "PRAGMA user_version", &version);
        if (!rc)
            rc = pragma_int(db, "PRAGMA application_id", &app);
        if (!rc && (app != WD_APPLICATION_ID || version < 1))
            rc = wd__error(WD_ECORRUPT, "'%s' is not a wdrepo database", path);
        else if (!rc && version > (long long)wd__schema_count)
            rc = wd__error(WD_ERROR, "repository schema version %lld is newer than this wdrepo; upgrade wdrepo", version);
    }
    if (rc) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void wd__db_close(sqlite3 *db)
{
    if (db)
        sqlite3_close(db);
}
