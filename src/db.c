/*
 * db.c - opening the repository database and migrating its schema.
 *
 * The schema lives in schema/NNNN_name.sql, compiled in by the Makefile
 * (build/gen/schema_sql.c). PRAGMA user_version counts the migrations
 * applied; each runs in its own transaction, so a crash mid-migration leaves
 * the previous version.
 */
#include "db.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    /* Damage is about a file: name it, so the message leads somewhere
     * (the callers that know the object add it in front). */
    const char *file = db && code == WD_ECORRUPT ? sqlite3_db_filename(db, "main") : NULL;
    if (file && *file)
        return wd__error(code, "'%s': %s: %s", file, what, msg);
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

/* How a command that only reads opens the database. A reader must neither
 * fail nor leave anything behind on a repository it cannot write, and SQLite
 * in WAL mode wants repo.db-shm (and repo.db-wal) beside the database:
 *  - a process that could write the database (the file, its directory, and
 *    -wal/-shm if present) opens it read-write under PRAGMA query_only, so
 *    that, being the last connection, its close folds the log back and
 *    deletes -wal and -shm as a writer's does (a read-only connection
 *    leaves them, owned by itself, which then stops the repository's owner);
 *  - otherwise, if -wal or -shm exists, a writer may be active (or died):
 *    SQLITE_OPEN_READONLY with readonly_shm=1 reads them as they are (the
 *    log holds committed data the database file may not have yet) and
 *    never creates a file; a -wal without -shm cannot be read then;
 *  - otherwise the database file is the whole repository and no writer is
 *    active: immutable=1 reads it without creating -shm and without locks.
 *    SQLite trusts that nothing changes the file meanwhile: if a user who
 *    can write (the owner, or through another mount) starts a commit during
 *    the read, a checkpoint may rewrite pages under the reader, which can
 *    then fail (SQLITE_CORRUPT, a chunk not matching its id) but never
 *    produces unverified weights: checkout checks what it wrote against the
 *    recorded model hash. Re-running the command reads the new state. */
enum { OPEN_WRITE, OPEN_READ_RW, OPEN_READ_SHM, OPEN_READ_IMMUTABLE };

static int can_write(const char *path)
{
    return faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) == 0;
}

static int exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static int shm_missing(const char *path)
{
    char shm[4096];
    return snprintf(shm, sizeof shm, "%s-shm", path) < (int)sizeof shm && !exists(shm);
}

/* Which of the reader modes above path gets. */
static int reader_mode(const char *path)
{
    char side[4096], dir[4096];
    int writable = can_write(path);
    const char *slash = strrchr(path, '/');
    if (slash) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        if (n >= sizeof dir)
            return OPEN_READ_SHM; /* cannot tell: read without creating anything */
        memcpy(dir, path, n);
        dir[n] = '\0';
    } else {
        strcpy(dir, ".");
    }
    writable = writable && can_write(dir);
    int logs = 0;
    static const char *const suffix[] = {"-wal", "-shm"};
    for (int i = 0; i < 2; i++) {
        if (snprintf(side, sizeof side, "%s%s", path, suffix[i]) >= (int)sizeof side)
            return OPEN_READ_SHM;
        if (exists(side)) {
            logs = 1;
            writable = writable && can_write(side);
        }
    }
    if (writable)
        return OPEN_READ_RW;
    return logs ? OPEN_READ_SHM : OPEN_READ_IMMUTABLE;
}

/* "file:" URI of path with query (percent-encoding what a URI reserves).
 * Returns a malloc'd string or NULL. */
static char *file_uri(const char *path, const char *query)
{
    size_t n = strlen(path);
    char *uri = malloc(16 + 3 * n + strlen(query));
    if (!uri)
        return NULL;
    /* An absolute path gets an empty authority ("file:///x"), so a path
     * starting with "//" is not read as a host name. */
    char *o = uri + sprintf(uri, "file:%s", path[0] == '/' ? "//" : "");
    for (const char *p = path; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("/._~-", c))
            *o++ = (char)c;
        else
            o += sprintf(o, "%%%02X", c);
    }
    sprintf(o, "%s%s", *query ? "?" : "", query);
    return uri;
}

static int open_conn(sqlite3 **out, const char *path, const char *query, int flags)
{
    char *uri = NULL;
    if (*query) {
        if (!(uri = file_uri(path, query)))
            return WD_NOMEM();
        flags |= SQLITE_OPEN_URI;
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(uri ? uri : path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    free(uri);
    if (rc != SQLITE_OK) {
        rc = wd__db_error(db, rc, path);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_extended_result_codes(db, 1);
    /* Writers wait for each other this long before reporting "busy". */
    sqlite3_busy_timeout(db, 30000);
    *out = db;
    return 0;
}

int wd__db_open(sqlite3 **out, const char *path, int readonly, int create)
{
    sqlite3 *db = NULL;
    int mode = readonly && !create ? reader_mode(path) : OPEN_WRITE;
    const char *query = mode == OPEN_READ_SHM ? "readonly_shm=1" : mode == OPEN_READ_IMMUTABLE ? "immutable=1" : "";
    int flags = mode == OPEN_READ_SHM || mode == OPEN_READ_IMMUTABLE ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (create)
        flags |= SQLITE_OPEN_CREATE;
    int rc = open_conn(&db, path, query, flags);
    if (rc)
        return rc;
    /* 16 KiB pages. Every table and index takes a page of its own, so an
     * empty repository is 16 pages: 1 MiB with the 64 KiB pages used before,
     * 256 KiB now; and a ~1 MiB chunk's overflow chain wastes half a page on
     * average, so a 37 MB model stored 5% smaller (39.4 MB against 41.4 MB).
     * add-base, commit and checkout of that model measured no slower (within
     * the noise, docs/FORMAT.md); 4 KiB pages made add-base ~25% slower.
     * Older repositories keep their page size: ids never depend on it.
     * Incremental auto-vacuum lets gc hand the pages of removed chunks back
     * to the file system (PRAGMA incremental_vacuum) without rewriting the
     * whole database as VACUUM does. Both only take effect on a new
     * database, before its first table. */
    rc = create ? wd__db_exec(db, "PRAGMA page_size = 16384; PRAGMA auto_vacuum = INCREMENTAL") : 0;
    if (!rc && mode == OPEN_WRITE)
        rc = wd__db_exec(db, "PRAGMA journal_mode = WAL");
    if (!rc && mode == OPEN_READ_RW)
        rc = wd__db_exec(db, "PRAGMA query_only = 1");
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
    if (rc && mode == OPEN_READ_SHM && shm_missing(path))
        rc = wd__error(rc, "cannot read '%s' as this user: its write-ahead log has no %s-shm beside it, which only "
                           "a user who can write the repository may create; run 'wdrepo log' there as such a user",
                       path, WD_DB_FILE);
    if (rc) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

int wd__db_open_reader(sqlite3 **out, sqlite3 *db)
{
    const char *path = sqlite3_db_filename(db, "main");
    if (!path || !*path)
        return open_conn(out, ":memory:", "", SQLITE_OPEN_READONLY);
    /* The same way in as db: a lookup connection must not create -shm
     * where db would not. */
    const char *query = sqlite3_uri_boolean(path, "immutable", 0)      ? "immutable=1"
                        : sqlite3_uri_boolean(path, "readonly_shm", 0) ? "readonly_shm=1"
                                                                        : "";
    return open_conn(out, path, query, SQLITE_OPEN_READONLY);
}

int wd__db_open_peer(sqlite3 **out, sqlite3 *db)
{
    const char *path = sqlite3_db_filename(db, "main");
    if (!path || !*path || sqlite3_db_readonly(db, "main") != 0)
        return wd__error(WD_EUSAGE, "no database file to open a second writable connection to");
    return open_conn(out, path, "", SQLITE_OPEN_READWRITE);
}

void wd__db_close(sqlite3 *db)
{
    if (db)
        sqlite3_close(db);
}
