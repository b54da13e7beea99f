/*
 * sqlviews.c - `wdrepo sql`: one read-only SELECT against stable views of
 * the repository (docs/SQL.md), run on a read-only connection of its own.
 * The views are TEMP views made on that connection, so no repository, old
 * or new, needs a migration for them, and the tables can change under them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "error.h"
#include "repo_int.h"

/* Ids as 64 lowercase hex digits; chunk id lists as their concatenation.
 * The column lists are a contract (docs/SQL.md): add columns at the end,
 * never rename or drop one. */
static const char views_sql[] =
    "CREATE TEMP VIEW objects AS SELECT"
    " lower(hex(o.id)) AS id, o.kind AS kind, lower(hex(o.parent)) AS parent,"
    " o.strategy AS strategy, o.options AS options, o.message AS message, o.created AS created,"
    " lower(hex(o.model_hash)) AS model_hash, lower(hex(o.parent_model_hash)) AS parent_model_hash,"
    " o.n_tensors AS n_tensors, o.tensor_bytes AS tensor_bytes, o.new_bytes AS new_bytes,"
    " (SELECT coalesce(sum(t.stored_bytes), 0) FROM main.tensor t WHERE t.object = o.id) AS stored_bytes,"
    " (SELECT count(*) FROM main.file f WHERE f.object = o.id) AS n_files,"
    " (SELECT coalesce(sum(f.size), 0) FROM main.file f WHERE f.object = o.id) AS folder_bytes,"
    " (SELECT max(t.rel_error) FROM main.tensor t WHERE t.object = o.id) AS max_rel_error,"
    " (SELECT group_concat(n.name, ' ') FROM (SELECT name FROM main.name WHERE object = o.id ORDER BY name) n)"
    " AS names"
    " FROM main.object o;"
    "CREATE TEMP VIEW names AS SELECT"
    " n.name AS name, lower(hex(n.object)) AS object, n.created AS created"
    " FROM main.name n;"
    "CREATE TEMP VIEW tensors AS SELECT"
    " lower(hex(t.object)) AS object, t.name AS name, t.file AS file, t.ordinal AS ordinal,"
    " t.dtype AS dtype, t.shape AS shape, json_array_length(t.shape) AS ndim, t.nbytes AS nbytes,"
    " t.encoding AS encoding, t.chunk_elems AS chunk_elems, length(t.chunks) / 32 AS n_chunks,"
    " t.stored_bytes AS stored_bytes, t.rel_error AS rel_error, t.max_abs_error AS max_abs_error,"
    " lower(hex(t.chunks)) AS chunk_ids"
    " FROM main.tensor t;"
    "CREATE TEMP VIEW files AS SELECT"
    " lower(hex(f.object)) AS object, f.path AS path, f.is_shard AS is_shard, f.size AS size,"
    " length(f.chunks) / 32 AS n_chunks, lower(hex(f.chunks)) AS chunk_ids"
    " FROM main.file f;"
    "CREATE TEMP VIEW chunks AS SELECT"
    " lower(hex(c.id)) AS id, c.raw_size AS raw_size, length(c.data) AS stored_size,"
    " CASE c.codec WHEN 0 THEN 'raw' WHEN 1 THEN 'zstd' WHEN 2 THEN 'sections' ELSE c.codec END AS codec"
    " FROM main.chunk c;"
    "CREATE TEMP VIEW arrays AS SELECT"
    " lower(hex(a.object)) AS object, a.tensor AS tensor, a.field AS field, a.dtype AS dtype,"
    " a.count AS count, a.transform AS transform, length(a.chunks) / 32 AS n_chunks,"
    " a.stored_bytes AS stored_bytes, lower(hex(a.chunks)) AS chunk_ids"
    " FROM main.tensor_array a;";

/* Pragmas that only read; with an argument only where it names a table or
 * an index (pragma_table_info('tensor') and the like). */
static int pragma_allowed(const char *name, const char *arg)
{
    static const char *const with_arg[] = {"table_info", "table_xinfo", "table_list", "index_list",
                                           "index_info", "index_xinfo", "foreign_key_list"};
    static const char *const bare[] = {"page_size", "page_count", "freelist_count", "user_version",
                                       "application_id", "schema_version", "encoding", "auto_vacuum",
                                       "database_list", "collation_list", "function_list", "pragma_list",
                                       "compile_options", "data_version"};
    for (size_t i = 0; i < sizeof with_arg / sizeof *with_arg; i++)
        if (!strcmp(name, with_arg[i]))
            return 1;
    for (size_t i = 0; !arg && i < sizeof bare / sizeof *bare; i++)
        if (!strcmp(name, bare[i]))
            return 1;
    return 0;
}

typedef struct {
    char denied[160]; /* what the authorizer refused first, for the message */
} guard;

/* Lets a statement read and compute, nothing else. sqlite3_stmt_readonly
 * alone would let ATTACH (which creates files), some pragmas, BEGIN and
 * load_extension through. */
static int authorize(void *ud, int action, const char *a, const char *b, const char *db, const char *trigger)
{
    (void)db;
    (void)trigger;
    guard *g = ud;
    const char *what = NULL;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_FUNCTION:
        if (b && !sqlite3_stricmp(b, "load_extension"))
            what = "load_extension()";
        else
            return SQLITE_OK;
        break;
    case SQLITE_PRAGMA:
        if (a && pragma_allowed(a, b))
            return SQLITE_OK;
        what = "this pragma";
        break;
    case SQLITE_ATTACH:
    case SQLITE_DETACH: what = "ATTACH and DETACH"; break;
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT: what = "transactions"; break;
    case SQLITE_UPDATE:
        /* Reading a table-valued pragma (pragma_table_info('x')) is
         * authorized as an update of the schema table; a real one is
         * refused below by sqlite3_stmt_readonly and query_only. */
        if (a && (!strcmp(a, "sqlite_master") || !strcmp(a, "sqlite_temp_master")))
            return SQLITE_OK;
        what = "writing";
        break;
    default: what = "writing"; break;
    }
    if (!g->denied[0])
        snprintf(g->denied, sizeof g->denied, "%s", what);
    return SQLITE_DENY;
}

/* Only white space and comments after the statement. */
static int tail_empty(const char *p)
{
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v' || *p == ';')
            p++;
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            if (!end)
                return 1; /* SQLite takes an unterminated comment as running to the end */
            p = end + 2;
        } else {
            return *p == '\0';
        }
    }
}

static int refuse(const char *why)
{
    return wd__error(WD_EUSAGE, "only a single read-only query (SELECT, WITH ... SELECT) can run: %s", why);
}

static int run(sqlite3 *db, sqlite3_stmt *st, wd_sql_row_fn fn, void *ud)
{
    int n = sqlite3_column_count(st);
    const char **names = calloc(n ? (size_t)n : 1, sizeof *names);
    wd_sql_value *row = calloc(n ? (size_t)n : 1, sizeof *row);
    int rc = names && row ? 0 : WD_NOMEM();
    for (int i = 0; !rc && i < n; i++) {
        const char *nm = sqlite3_column_name(st, i);
        names[i] = nm ? nm : "";
    }
    if (!rc)
        rc = fn(ud, n, names, NULL);
    int step = 0;
    while (!rc && (step = wd__db_step(db, st, "query")) > 0) {
        for (int i = 0; i < n; i++) {
            wd_sql_value *v = &row[i];
            memset(v, 0, sizeof *v);
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_INTEGER:
                v->type = WD_SQL_INTEGER;
                v->i = sqlite3_column_int64(st, i);
                break;
            case SQLITE_FLOAT:
                v->type = WD_SQL_FLOAT;
                v->f = sqlite3_column_double(st, i);
                break;
            case SQLITE_TEXT:
                v->type = WD_SQL_TEXT;
                v->text = (const char *)sqlite3_column_text(st, i);
                v->len = (size_t)sqlite3_column_bytes(st, i);
                break;
            case SQLITE_BLOB:
                v->type = WD_SQL_BLOB;
                v->text = sqlite3_column_blob(st, i);
                v->len = (size_t)sqlite3_column_bytes(st, i);
                break;
            default: v->type = WD_SQL_NULL; break;
            }
        }
        rc = fn(ud, n, names, row);
    }
    if (!rc && step < 0)
        rc = step;
    free(names);
    free(row);
    return rc;
}

int wd_sql(wd_repo *repo, const char *sql, wd_sql_row_fn fn, void *ud)
{
    if (tail_empty(sql))
        return refuse("the query is empty");
    sqlite3 *db = NULL;
    int rc = wd__db_open_reader(&db, repo->db);
    /* The views first: query_only refuses even TEMP objects. */
    if (!rc)
        rc = wd__db_exec(db, views_sql);
    if (!rc)
        rc = wd__db_exec(db, "PRAGMA query_only = 1");
    if (rc) {
        wd__db_close(db);
        return rc;
    }
    /* Defensive mode: no writable_schema, no direct writes to shadow
     * tables, whatever the authorizer lets through. */
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    guard g = {{0}};
    sqlite3_set_authorizer(db, authorize, &g);
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int s = sqlite3_prepare_v2(db, sql, -1, &st, &tail);
    if (s != SQLITE_OK) {
        if (g.denied[0])
            rc = refuse(g.denied);
        else
            rc = wd__error(WD_EUSAGE, "bad query: %s", sqlite3_errmsg(db));
    } else if (!st) {
        rc = refuse("the query is empty");
    } else if (!tail_empty(tail)) {
        rc = refuse("it holds more than one statement");
    } else if (!sqlite3_stmt_readonly(st)) {
        rc = refuse("it would write");
    } else {
        rc = run(db, st, fn, ud);
    }
    sqlite3_finalize(st);
    wd__db_close(db);
    return rc;
}
