/*
 * rm.c - removing objects: a base or delta goes with its files, tensors,
 * arrays and names, in one transaction. Objects built on it (deltas taken
 * against it, theirs...) would lose their parent, so they are removed too
 * when asked (recursive), else the removal is refused naming them. Chunks
 * are left to gc, which is the one place that decides what is unreferenced.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "error.h"
#include "hash.h"
#include "repo_int.h"

/* Objects to remove, in the order found (the refs, then descendants
 * breadth-first). Bounded by the number of objects in the repository. */
typedef struct {
    uint8_t (*ids)[WD_HASH_SIZE];
    unsigned char *done;
    size_t n, cap;
} idset;

static long idset_find(const idset *s, const uint8_t id[WD_HASH_SIZE])
{
    for (size_t i = 0; i < s->n; i++)
        if (!memcmp(s->ids[i], id, WD_HASH_SIZE))
            return (long)i;
    return -1;
}

static int idset_add(idset *s, const uint8_t id[WD_HASH_SIZE])
{
    if (idset_find(s, id) >= 0)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        void *ids = realloc(s->ids, cap * sizeof *s->ids);
        if (!ids)
            return WD_NOMEM();
        s->ids = ids;
        unsigned char *done = realloc(s->done, cap);
        if (!done)
            return WD_NOMEM();
        s->done = done;
        s->cap = cap;
    }
    memcpy(s->ids[s->n], id, WD_HASH_SIZE);
    s->done[s->n++] = 0;
    return 0;
}

/* Appends to s every object whose parent is in s (transitively). */
static int add_descendants(wd_repo *repo, idset *s)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st, "SELECT id FROM object WHERE parent = ?1");
    for (size_t i = 0; !rc && i < s->n; i++) {
        wd__bind_hash(st, 1, s->ids[i]);
        int row;
        while ((row = wd__db_step(repo->db, st, "rm: finding dependents")) > 0)
            if (sqlite3_column_bytes(st, 0) == WD_HASH_SIZE && (rc = idset_add(s, sqlite3_column_blob(st, 0))))
                break;
        if (!rc && row < 0)
            rc = row;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

/* "3f0a1b2c3d4e (delta 'ft-a')": an object as a message names it. */
static void describe(wd_repo *repo, wd_buf *b, const uint8_t id[WD_HASH_SIZE])
{
    char hex[WD_HEX_SIZE];
    wd__hex(hex, id);
    wd__buf_printf(b, "%.12s", hex);
    sqlite3_stmt *st;
    if (wd__db_prepare(repo->db, &st,
                       "SELECT o.kind, (SELECT min(name) FROM name WHERE object = o.id) FROM object o WHERE o.id = ?1"))
        return;
    wd__bind_hash(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        wd__buf_printf(b, " (%s%s%s%s)", sqlite3_column_text(st, 0), name ? " '" : "", name ? name : "",
                       name ? "'" : "");
    }
    sqlite3_finalize(st);
}

/* The refusal: the first ref with dependents outside the set, and them. */
static int refuse(wd_repo *repo, const idset *asked)
{
    for (size_t r = 0; r < asked->n; r++) {
        idset one = {0};
        int rc = idset_add(&one, asked->ids[r]);
        if (!rc)
            rc = add_descendants(repo, &one);
        wd_buf msg = {0}, list = {0};
        size_t n_out = 0;
        for (size_t i = 1; !rc && i < one.n; i++) {
            if (idset_find(asked, one.ids[i]) >= 0)
                continue;
            if (n_out < 10) {
                if (n_out)
                    wd__buf_printf(&list, ", ");
                describe(repo, &list, one.ids[i]);
            }
            n_out++;
        }
        if (!rc && n_out) {
            describe(repo, &msg, asked->ids[r]);
            rc = wd__error(WD_EEXISTS,
                           "cannot remove %s: %zu object%s built on it: %s%s; remove %s first, or all at once with "
                           "'wdrepo rm --recursive'",
                           msg.data ? (char *)msg.data : "", n_out, n_out == 1 ? " is" : "s are",
                           list.data ? (char *)list.data : "", n_out > 10 ? ", ..." : "", n_out == 1 ? "it" : "them");
        }
        wd__buf_free(&msg);
        wd__buf_free(&list);
        free(one.ids);
        free(one.done);
        if (rc)
            return rc;
    }
    return 0;
}

/* Fills *info for id from the database, before its rows go. */
static int describe_removed(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], wd_removed_info *info)
{
    memset(info, 0, sizeof *info);
    wd__hex(info->id, id);
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st, "SELECT kind FROM object WHERE id = ?1");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    int row = wd__db_step(repo->db, st, "rm");
    if (row > 0)
        snprintf(info->kind, sizeof info->kind, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (row < 0)
        return row;
    if ((rc = wd__db_prepare(repo->db, &st, "SELECT name FROM name WHERE object = ?1 ORDER BY name")))
        return rc;
    wd__bind_hash(st, 1, id);
    while ((row = wd__db_step(repo->db, st, "rm")) > 0) {
        char **names = realloc(info->names, (info->n_names + 1) * sizeof *names);
        char *name = names ? strdup((const char *)sqlite3_column_text(st, 0)) : NULL;
        if (names)
            info->names = names;
        if (!name) {
            row = WD_NOMEM();
            break;
        }
        info->names[info->n_names++] = name;
    }
    sqlite3_finalize(st);
    return row < 0 ? row : 0;
}

static int delete_rows(wd_repo *repo, const uint8_t id[WD_HASH_SIZE])
{
    static const char *const sql[] = {
        "DELETE FROM name WHERE object = ?1",   "DELETE FROM tensor_array WHERE object = ?1",
        "DELETE FROM tensor WHERE object = ?1", "DELETE FROM file WHERE object = ?1",
        "DELETE FROM object WHERE id = ?1",
    };
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        sqlite3_stmt *st;
        int rc = wd__db_prepare(repo->db, &st, sql[i]);
        if (rc)
            return rc;
        wd__bind_hash(st, 1, id);
        int s = sqlite3_step(st);
        sqlite3_finalize(st);
        if (s != SQLITE_DONE)
            return wd__db_error(repo->db, s, "rm");
    }
    return 0;
}

/* Whether an object not yet removed still has id as its parent. */
static int has_children(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], int *out)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st, "SELECT 1 FROM object WHERE parent = ?1 LIMIT 1");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    int row = wd__db_step(repo->db, st, "rm");
    sqlite3_finalize(st);
    if (row < 0)
        return row;
    *out = row > 0;
    return 0;
}

void wd_rm_free(wd_removed_info *removed, size_t count)
{
    for (size_t i = 0; removed && i < count; i++) {
        for (size_t j = 0; j < removed[i].n_names; j++)
            free(removed[i].names[j]);
        free(removed[i].names);
    }
    free(removed);
}

int wd_rm(wd_repo *repo, const char *const *refs, size_t n_refs, unsigned flags, wd_removed_info **out,
          size_t *out_count)
{
    if (out)
        *out = NULL;
    if (out_count)
        *out_count = 0;
    if (repo->readonly)
        return wd__error(WD_EUSAGE, "repository is open read-only");
    if (!n_refs)
        return wd__error(WD_EUSAGE, "rm: no object given");
    /* Resolving and the dependency check happen inside the transaction, so
     * a commit on one of these objects either lands first (and is seen
     * here) or fails on its missing parent. */
    int rc = wd__db_exec(repo->db, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    idset asked = {0}, all = {0};
    wd_removed_info *removed = NULL;
    size_t n_removed = 0;
    for (size_t i = 0; !rc && i < n_refs; i++) {
        uint8_t id[WD_HASH_SIZE];
        rc = wd__resolve(repo, refs[i], id);
        if (!rc)
            rc = idset_add(&asked, id);
        if (!rc)
            rc = idset_add(&all, id);
    }
    if (!rc)
        rc = add_descendants(repo, &all);
    if (!rc && !(flags & WD_RM_RECURSIVE) && all.n > asked.n)
        rc = refuse(repo, &asked);
    if (!rc && !(removed = calloc(all.n, sizeof *removed)))
        rc = WD_NOMEM();
    /* Children before parents, so no row ever names a missing parent: each
     * pass removes what nothing left depends on. */
    while (!rc && n_removed < all.n) {
        size_t before = n_removed;
        for (size_t i = 0; !rc && i < all.n; i++) {
            int children = 0;
            if (all.done[i] || (rc = has_children(repo, all.ids[i], &children)) || children)
                continue;
            rc = describe_removed(repo, all.ids[i], &removed[n_removed]);
            n_removed++;
            if (!rc)
                rc = delete_rows(repo, all.ids[i]);
            all.done[i] = 1;
        }
        if (!rc && n_removed == before)
            rc = wd__error(WD_ECORRUPT, "rm: the objects' parent links form a cycle; run 'wdrepo fsck'");
    }
    if (!rc)
        rc = wd__db_commit(repo->db);
    if (rc)
        sqlite3_exec(repo->db, "ROLLBACK", NULL, NULL, NULL);
    free(asked.ids);
    free(asked.done);
    free(all.ids);
    free(all.done);
    if (rc || !out) {
        wd_rm_free(removed, n_removed);
        return rc;
    }
    *out = removed;
    if (out_count)
        *out_count = n_removed;
    return 0;
}
