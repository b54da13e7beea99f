/*
 * chunkstore_sqlite.c - the default chunk store: table `chunk` in the
 * repository database itself, so one file holds everything and a chunk and
 * the objects that use it commit in the same database.
 */
#include "chunkstore.h"

#include <pthread.h>
#include <stdlib.h>

#include "checkpointer.h"
#include "chunkproven.h"
#include "db.h"
#include "error.h"
#include "fault.h"

typedef struct {
    wd_chunkstore base;
    sqlite3 *db;
    sqlite3_stmt *has, *put, *get;
    /* stored_size runs on worker threads: its own read-only connection,
     * serialised by a mutex (a point lookup takes microseconds). */
    sqlite3 *lookup_db;
    sqlite3_stmt *size, *lookup_get;
    pthread_mutex_t lookup_mu;
    pthread_t owner; /* the thread that opened the store and owns db */
    /* Started by the first chunk transaction: only bulk writers pay for
     * the thread and connection. */
    wd_checkpointer *ckpt;
    int ckpt_tried;
} sqlite_store;

static int st_has(wd_chunkstore *cs, const uint8_t id[WD_HASH_SIZE], int *out)
{
    sqlite_store *s = (sqlite_store *)cs;
    sqlite3_bind_blob(s->has, 1, id, WD_HASH_SIZE, SQLITE_STATIC);
    int rc = sqlite3_step(s->has);
    *out = rc == SQLITE_ROW;
    sqlite3_reset(s->has);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : wd__db_error(s->db, rc, "chunk lookup");
}

static int st_put(wd_chunkstore *cs, const uint8_t id[WD_HASH_SIZE], uint64_t raw_size, int codec,
                  const void *data, size_t len, int *out_added)
{
    sqlite_store *s = (sqlite_store *)cs;
    sqlite3_bind_blob(s->put, 1, id, WD_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_int64(s->put, 2, (sqlite3_int64)raw_size);
    sqlite3_bind_int(s->put, 3, codec);
    sqlite3_bind_blob64(s->put, 4, data, len, SQLITE_STATIC);
    int rc = sqlite3_step(s->put);
    sqlite3_reset(s->put);
    if (rc != SQLITE_DONE)
        return wd__db_error(s->db, rc, "storing chunk");
    *out_added = sqlite3_changes(s->db) > 0;
    if (*out_added)
        wd__fault_point(WD_FAULT_CHUNK);
    return 0;
}

/* Copies the row of st (a chunk lookup by id) into out. */
static int get_row(sqlite3 *db, sqlite3_stmt *st, const uint8_t id[WD_HASH_SIZE], wd_buf *out,
                   uint64_t *out_raw_size, int *out_codec)
{
    sqlite3_bind_blob(st, 1, id, WD_HASH_SIZE, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        if (rc == SQLITE_DONE)
            return wd__error(WD_ECORRUPT, "chunk missing from the store; run 'wdrepo fsck'");
        return wd__db_error(db, rc, "reading chunk");
    }
    int64_t raw = sqlite3_column_int64(st, 0);
    int codec = sqlite3_column_int(st, 1);
    const void *data = sqlite3_column_blob(st, 2);
    size_t len = (size_t)sqlite3_column_bytes(st, 2);
    out->len = 0;
    int err = raw < 0 ? wd__error(WD_ECORRUPT, "chunk has a negative size") : wd__buf_append(out, data, len);
    sqlite3_reset(st);
    if (err)
        return err;
    *out_raw_size = (uint64_t)raw;
    *out_codec = codec;
    return 0;
}

/* Workers read through the lookup connection, one at a time: a chunk row is
 * copied in well under a millisecond, against several for decoding it. */
static int st_get(wd_chunkstore *cs, const uint8_t id[WD_HASH_SIZE], wd_buf *out,
                  uint64_t *out_raw_size, int *out_codec)
{
    sqlite_store *s = (sqlite_store *)cs;
    if (pthread_equal(pthread_self(), s->owner))
        return get_row(s->db, s->get, id, out, out_raw_size, out_codec);
    pthread_mutex_lock(&s->lookup_mu);
    int rc = get_row(s->lookup_db, s->lookup_get, id, out, out_raw_size, out_codec);
    pthread_mutex_unlock(&s->lookup_mu);
    return rc;
}

static int st_stored_size(wd_chunkstore *cs, const uint8_t id[WD_HASH_SIZE], uint64_t *out)
{
    sqlite_store *s = (sqlite_store *)cs;
    pthread_mutex_lock(&s->lookup_mu);
    sqlite3_bind_blob(s->size, 1, id, WD_HASH_SIZE, SQLITE_STATIC);
    int rc = sqlite3_step(s->size);
    *out = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s->size, 0) : 0;
    sqlite3_reset(s->size);
    int err = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : wd__db_error(s->lookup_db, rc, "chunk lookup");
    pthread_mutex_unlock(&s->lookup_mu);
    return err;
}

static int st_begin(wd_chunkstore *cs)
{
    sqlite_store *s = (sqlite_store *)cs;
    if (!s->ckpt_tried) {
        s->ckpt_tried = 1;
        /* Without it SQLite checkpoints on this thread, as before. */
        if (wd__checkpointer_start(&s->ckpt, s->db))
            wd__error_clear();
    }
    wd__checkpointer_settle(s->ckpt);
    return wd__db_exec(s->db, "BEGIN IMMEDIATE");
}
static int st_commit(wd_chunkstore *cs) { return wd__db_commit(((sqlite_store *)cs)->db); }
static void st_rollback(wd_chunkstore *cs) { sqlite3_exec(((sqlite_store *)cs)->db, "ROLLBACK", NULL, NULL, NULL); }

static void st_close(wd_chunkstore *cs)
{
    sqlite_store *s = (sqlite_store *)cs;
    if (!s)
        return;
    wd__checkpointer_stop(s->ckpt);
    sqlite3_finalize(s->has);
    sqlite3_finalize(s->put);
    sqlite3_finalize(s->get);
    sqlite3_finalize(s->size);
    sqlite3_finalize(s->lookup_get);
    if (s->lookup_db)
        sqlite3_close(s->lookup_db);
    pthread_mutex_destroy(&s->lookup_mu);
    wd__proven_free(s->base.proven);
    free(s);
}

static const wd_chunkstore_ops sqlite_ops = {
    "sqlite", st_has, st_put, st_get, st_stored_size, st_begin, st_commit, st_rollback, st_close,
};

int wd__chunkstore_sqlite_open(wd_chunkstore **out, sqlite3 *db)
{
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s)
        return WD_NOMEM();
    s->base.ops = &sqlite_ops;
    s->db = db;
    s->owner = pthread_self();
    pthread_mutex_init(&s->lookup_mu, NULL);
    int rc = wd__proven_new(&s->base.proven);
    if (!rc)
        rc = wd__db_open_reader(&s->lookup_db, db);
    if (rc) {
        wd__error_context(rc, "opening chunk lookup");
        st_close(&s->base);
        return rc;
    }

    rc = wd__db_prepare(db, &s->has, "SELECT 1 FROM chunk WHERE id = ?1");
    if (!rc)
        rc = wd__db_prepare(db, &s->put,
                            "INSERT OR IGNORE INTO chunk(id, raw_size, codec, data) VALUES (?1, ?2, ?3, ?4)");
    if (!rc)
        rc = wd__db_prepare(db, &s->get, "SELECT raw_size, codec, data FROM chunk WHERE id = ?1");
    if (!rc)
        rc = wd__db_prepare(s->lookup_db, &s->size, "SELECT length(data) FROM chunk WHERE id = ?1");
    if (!rc)
        rc = wd__db_prepare(s->lookup_db, &s->lookup_get, "SELECT raw_size, codec, data FROM chunk WHERE id = ?1");
    if (rc) {
        st_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}
