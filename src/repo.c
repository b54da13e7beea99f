/*
 * repo.c - finding, creating and opening repositories; resolving references
 * (full hash, unique prefix, name) and naming objects.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "error.h"
#include "hash.h"
#include "repo_int.h"

#define REPO_DIRNAME ".wdrepo"

static int is_repo_dir(const char *dir)
{
    char path[PATH_MAX];
    struct stat sb;
    if (snprintf(path, sizeof path, "%s/%s", dir, WD_DB_FILE) >= (int)sizeof path)
        return 0;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int wd_repo_discover(char **out, const char *start_dir)
{
    const char *env = getenv("WDREPO_DIR");
    if (env && *env) {
        if (!(*out = strdup(env)))
            return WD_NOMEM();
        return 0;
    }
    char cur[PATH_MAX];
    if (!realpath(start_dir ? start_dir : ".", cur))
        return wd__error_errno(WD_EIO, "cannot resolve '%s'", start_dir ? start_dir : ".");
    for (;;) {
        char cand[PATH_MAX + sizeof REPO_DIRNAME + 1];
        snprintf(cand, sizeof cand, "%s/%s", strcmp(cur, "/") ? cur : "", REPO_DIRNAME);
        if (is_repo_dir(cand)) {
            if (!(*out = strdup(cand)))
                return WD_NOMEM();
            return 0;
        }
        char *slash = strrchr(cur, '/');
        if (!slash || slash == cur) {
            if (!strcmp(cur, "/"))
                break;
            strcpy(cur, "/");
            continue;
        }
        *slash = '\0';
    }
    return wd__error(WD_ENOTFOUND, "not in a wdrepo repository (no .wdrepo here or above); run 'wdrepo init' or pass -R");
}

int wd_repo_init(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return wd__error_errno(WD_EIO, "cannot create '%s'", path);
    if (is_repo_dir(path))
        return wd__error(WD_EEXISTS, "'%s' is already a wdrepo repository", path);
    char dbpath[PATH_MAX];
    if (snprintf(dbpath, sizeof dbpath, "%s/%s", path, WD_DB_FILE) >= (int)sizeof dbpath)
        return wd__error(WD_EUSAGE, "path too long: '%s'", path);
    sqlite3 *db;
    int rc = wd__db_open(&db, dbpath, 0, 1);
    if (rc)
        return rc;
    wd__db_close(db);
    return 0;
}

/* A writing command needs the database and its directory (SQLite keeps
 * repo.db-wal and repo.db-shm there): say so before SQLite says "unable to
 * open database file". */
static int check_writable(const char *dir, const char *dbpath)
{
    char side[2][PATH_MAX + 8];
    snprintf(side[0], sizeof side[0], "%s-wal", dbpath);
    snprintf(side[1], sizeof side[1], "%s-shm", dbpath);
    /* A log file another user left (an older wdrepo's reader) would make
     * every write fail with "attempt to write a readonly database". */
    const char *const paths[] = {dbpath, dir, side[0], side[1]};
    for (size_t i = 0; i < 4; i++) {
        if (faccessat(AT_FDCWD, paths[i], W_OK, AT_EACCESS) == 0 || (i >= 2 && errno == ENOENT))
            continue;
        if (i >= 2 && errno == EACCES)
            return wd__error(WD_EIO,
                             "cannot write to repository '%s': '%s': %s; if no wdrepo command is running there, an "
                             "older wdrepo reading as another user left it: remove it",
                             dir, paths[i], strerror(errno));
        return wd__error(WD_EIO,
                         "cannot write to repository '%s': '%s': %s (log, inspect, checkout and export only read it)",
                         dir, paths[i], strerror(errno));
    }
    return 0;
}

int wd_repo_open(wd_repo **out, const char *path, unsigned flags)
{
    if (!is_repo_dir(path))
        return wd__error(WD_ENOTFOUND, "'%s' is not a wdrepo repository; run 'wdrepo init'", path);
    wd_repo *r = calloc(1, sizeof *r);
    if (!r || !(r->dir = strdup(path))) {
        free(r);
        return WD_NOMEM();
    }
    r->lock = (wd_repolock)WD_REPOLOCK_INIT;
    r->readonly = (flags & WD_OPEN_READONLY) != 0;
    char dbpath[PATH_MAX];
    snprintf(dbpath, sizeof dbpath, "%s/%s", path, WD_DB_FILE);
    int rc = 0;
    if (!r->readonly && !(rc = check_writable(path, dbpath)) && !(rc = wd__repolock_shared(&r->lock, path)))
        wd__reserve_make(&r->reserve, path);
    if (!rc)
        rc = wd__db_open(&r->db, dbpath, r->readonly, 0);
    if (!rc)
        rc = wd__chunkstore_sqlite_open(&r->store, r->db);
    if (rc) {
        wd_repo_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

void wd_repo_close(wd_repo *repo)
{
    if (!repo)
        return;
    if (repo->store)
        repo->store->ops->close(repo->store);
    wd__db_close(repo->db);
    wd__reserve_release(&repo->reserve);
    wd__repolock_close(&repo->lock);
    free(repo->dir);
    free(repo);
}

static int all_hex(const char *s, size_t *len)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isxdigit((unsigned char)s[n]))
            return 0;
    *len = n;
    return 1;
}

int wd__name_valid(const char *name)
{
    size_t n = strlen(name), hexlen;
    if (n == 0 || n > 200 || name[0] == '-' || name[0] == '.' || strstr(name, ".."))
        return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-+/", *p))
            return 0;
    if (all_hex(name, &hexlen) && hexlen >= 4)
        return 0;
    return 1;
}

int wd__resolve(wd_repo *repo, const char *ref, uint8_t out[WD_HASH_SIZE])
{
    sqlite3_stmt *st;
    int rc, found = 0;
    /* A name wins: names can never look like hash prefixes (wd__name_valid). */
    if ((rc = wd__db_prepare(repo->db, &st, "SELECT object FROM name WHERE name = ?1")))
        return rc;
    sqlite3_bind_text(st, 1, ref, -1, SQLITE_STATIC);
    int row = wd__db_step(repo->db, st, "looking up names");
    if (row > 0 && sqlite3_column_bytes(st, 0) == WD_HASH_SIZE) {
        memcpy(out, sqlite3_column_blob(st, 0), WD_HASH_SIZE);
        found = 1;
    }
    sqlite3_finalize(st);
    if (row < 0)
        return row;
    if (found)
        return 0;
    size_t len;
    if (!all_hex(ref, &len) || len < 4 || len > 64) {
        if (all_hex(ref, &len) && len > 0 && len < 4)
            return wd__error(WD_EUSAGE, "'%s' is too short: give at least 4 hex digits or a name", ref);
        return wd__error(WD_ENOTFOUND, "unknown reference '%s' (not a name or hash); see 'wdrepo log'", ref);
    }
    char lower[65];
    for (size_t i = 0; i <= len; i++)
        lower[i] = (char)tolower((unsigned char)ref[i]);
    if ((rc = wd__db_prepare(repo->db, &st,
                             "SELECT id, kind FROM object WHERE substr(lower(hex(id)), 1, ?2) = ?1 ORDER BY created DESC, id LIMIT 11")))
        return rc;
    sqlite3_bind_text(st, 1, lower, (int)len, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)len);
    wd_buf cands = {0};
    while ((row = wd__db_step(repo->db, st, "looking up objects")) > 0) {
        if (sqlite3_column_bytes(st, 0) != WD_HASH_SIZE)
            continue;
        const uint8_t *id = sqlite3_column_blob(st, 0);
        char hex[WD_HEX_SIZE];
        wd__hex(hex, id);
        if (found < 10)
            wd__buf_printf(&cands, "%s%.12s (%s)", found ? ", " : "", hex, sqlite3_column_text(st, 1));
        if (!found)
            memcpy(out, id, WD_HASH_SIZE);
        found++;
    }
    sqlite3_finalize(st);
    if (row < 0) {
        rc = row;
    } else if (found == 1) {
        rc = 0;
    } else if (found == 0) {
        rc = wd__error(WD_ENOTFOUND, "unknown reference '%s' (no object or name matches); see 'wdrepo log'", ref);
    } else {
        rc = wd__error(WD_EAMBIGUOUS, "reference '%s' is ambiguous: %s%s; give more digits", ref,
                       cands.data ? (char *)cands.data : "", found > 10 ? ", ..." : "");
    }
    wd__buf_free(&cands);
    return rc;
}

int wd_resolve(wd_repo *repo, const char *ref, char out[WD_HEX_SIZE])
{
    uint8_t id[WD_HASH_SIZE];
    int rc = wd__resolve(repo, ref, id);
    if (!rc)
        wd__hex(out, id);
    return rc;
}

int wd__name_set(wd_repo *repo, const char *name, const uint8_t id[WD_HASH_SIZE])
{
    return wd__name_set_was(repo, name, id, NULL);
}

int wd__name_set_was(wd_repo *repo, const char *name, const uint8_t id[WD_HASH_SIZE], char was[WD_HEX_SIZE])
{
    sqlite3_stmt *st;
    int rc;
    if (was) {
        /* read inside the caller's write transaction: what this very call moves */
        was[0] = '\0';
        if ((rc = wd__db_prepare(repo->db, &st, "SELECT object FROM name WHERE name = ?1")))
            return rc;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW && sqlite3_column_bytes(st, 0) == WD_HASH_SIZE &&
            memcmp(sqlite3_column_blob(st, 0), id, WD_HASH_SIZE) != 0)
            wd__hex(was, sqlite3_column_blob(st, 0));
        sqlite3_finalize(st);
        if (s != SQLITE_ROW && s != SQLITE_DONE)
            return wd__db_error(repo->db, s, "reading name");
    }
    rc = wd__db_prepare(repo->db, &st,
                            "INSERT INTO name(name, object, created) VALUES (?1, ?2, ?3) "
                            "ON CONFLICT(name) DO UPDATE SET object = excluded.object, created = excluded.created");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    wd__bind_hash(st, 2, id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? 0 : wd__db_error(repo->db, s, "setting name");
}

int wd_tag(wd_repo *repo, const char *name, const char *ref)
{
    return wd_tag_move(repo, name, ref, NULL);
}

int wd_tag_move(wd_repo *repo, const char *name, const char *ref, char was[WD_HEX_SIZE])
{
    if (was)
        was[0] = '\0';
    if (!wd__name_valid(name))
        return wd__error(WD_EUSAGE,
                         "invalid name '%s': use letters, digits and ._-+/ (not 4+ hex digits alone, no leading '-' or '.')",
                         name);
    uint8_t id[WD_HASH_SIZE];
    int rc = wd__resolve(repo, ref, id);
    if (rc)
        return rc;
    if ((rc = wd__db_exec(repo->db, "BEGIN IMMEDIATE")))
        return rc;
    rc = wd__name_set_was(repo, name, id, was);
    if (rc) {
        sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
        if (was)
            was[0] = '\0';
        return rc;
    }
    rc = wd__db_commit(repo->db);
    if (rc && was)
        was[0] = '\0';
    return rc;
}

int wd_untag(wd_repo *repo, const char *name)
{
    if (repo->readonly)
        return wd__error(WD_EUSAGE, "repository is open read-only");
    int rc = wd__db_exec(repo->db, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    sqlite3_stmt *st;
    if ((rc = wd__db_prepare(repo->db, &st, "DELETE FROM name WHERE name = ?1")) == 0) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        sqlite3_finalize(st);
        if (s != SQLITE_DONE)
            rc = wd__db_error(repo->db, s, "deleting name");
        else if (sqlite3_changes(repo->db) == 0)
            rc = wd__error(WD_ENOTFOUND, "no name '%s'; 'wdrepo tag -l' lists the names", name);
    }
    if (!rc)
        rc = wd__db_commit(repo->db);
    if (rc)
        sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

void wd_names_free(wd_name_info *names, size_t count)
{
    for (size_t i = 0; names && i < count; i++)
        free(names[i].name);
    free(names);
}

int wd_names(wd_repo *repo, wd_name_info **out, size_t *out_count)
{
    *out = NULL;
    *out_count = 0;
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st,
                            "SELECT n.name, n.object, n.created, o.kind FROM name n "
                            "LEFT JOIN object o ON o.id = n.object ORDER BY n.name");
    if (rc)
        return rc;
    wd_name_info *names = NULL;
    size_t n = 0, cap = 0;
    int row;
    while ((row = wd__db_step(repo->db, st, "listing names")) > 0) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            wd_name_info *grown = realloc(names, cap * sizeof *grown);
            if (!grown) {
                row = WD_NOMEM();
                break;
            }
            names = grown;
        }
        wd_name_info *ni = &names[n];
        memset(ni, 0, sizeof *ni);
        if (!(ni->name = strdup((const char *)sqlite3_column_text(st, 0)))) {
            row = WD_NOMEM();
            break;
        }
        n++;
        if (sqlite3_column_bytes(st, 1) == WD_HASH_SIZE)
            wd__hex(ni->id, sqlite3_column_blob(st, 1));
        ni->created = sqlite3_column_int64(st, 2);
        if (sqlite3_column_type(st, 3) != SQLITE_NULL)
            snprintf(ni->kind, sizeof ni->kind, "%s", (const char *)sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
    if (row < 0) {
        wd_names_free(names, n);
        return row;
    }
    *out = names;
    *out_count = n;
    return 0;
}
