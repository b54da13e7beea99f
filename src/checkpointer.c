/*
 * checkpointer.c - write-ahead log checkpoints off the writer's thread.
 *
 * add-base, commit, import and fetch append about a model's worth of chunk
 * data to the repository's write-ahead log. SQLite's automatic checkpoint
 * runs inside the commit that crosses 1000 log frames: it copies the log
 * into the database file and fsyncs both, and the committing thread is the
 * one that feeds the encoders and hashes the model. On the 988 MB bench
 * model that was 109 fsyncs and 2.5 s of a 5.2 s add-base during which the
 * pool's workers sat idle.
 *
 * Here a wal hook on the writer's connection replaces the automatic
 * checkpoint: past WD_CKPT_START_FRAMES it only wakes a thread that runs
 * PASSIVE checkpoints through a connection of its own. A PASSIVE
 * checkpoint takes no write lock, so the writer keeps committing while the
 * thread copies and fsyncs. The log restarts from its beginning only when
 * a writer begins a transaction with every frame copied, which a steady
 * writer rarely sees; so past WD_CKPT_CAP_FRAMES the writer's next chunk
 * transaction waits (wd__checkpointer_settle) for one checkpoint begun
 * after the commit that crossed the cap (no frame is added meanwhile, so
 * that one copies them all) and the log's size stays bounded. Waiting
 * there, not in the commit's hook, lets the checkpoint's fsyncs overlap
 * what the writer does between two chunk transactions: an add-base
 * waits for the pool's next batch and hashes the last one meanwhile.
 * Measured on the 988 MB model: 0.5-0.9 s of waits in the hook.
 *
 * Durability is unchanged: commits are written to the log exactly as
 * before, and a checkpoint that fails (another process checkpointing, an
 * I/O error) leaves its frames in the log, where the next checkpoint or
 * SQLite's own one at close finds them.
 */
#include "checkpointer.h"

#include <pthread.h>
#include <stdlib.h>

#include "db.h"
#include "error.h"

struct wd_checkpointer {
    sqlite3 *writer; /* the connection whose log this thread checkpoints */
    sqlite3 *conn;   /* the thread's own connection to the same file */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* a request, or stop */
    pthread_cond_t done; /* a checkpoint finished */
    unsigned long requested, finished; /* request counters, under mu */
    unsigned long owed; /* the request the next chunk transaction waits for, under mu */
    int stop;
};

static void *checkpoint_main(void *arg)
{
    wd_checkpointer *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->finished == c->requested && !c->stop)
            pthread_cond_wait(&c->wake, &c->mu);
        if (c->finished == c->requested)
            break;
        unsigned long serving = c->requested;
        pthread_mutex_unlock(&c->mu);
        /* Errors are left for later checkpoints: see the file comment. */
        sqlite3_wal_checkpoint_v2(c->conn, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&c->mu);
        c->finished = serving;
        pthread_cond_broadcast(&c->done);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* sqlite3_wal_hook: runs after each commit of the writer, its write lock
 * already released; frames is the log's length. */
static int after_commit(void *ud, sqlite3 *db, const char *schema, int frames)
{
    (void)db;
    (void)schema;
    wd_checkpointer *c = ud;
    if (frames < WD_CKPT_START_FRAMES)
        return SQLITE_OK;
    pthread_mutex_lock(&c->mu);
    unsigned long mine = ++c->requested;
    pthread_cond_signal(&c->wake);
    if (frames >= WD_CKPT_CAP_FRAMES)
        c->owed = mine;
    pthread_mutex_unlock(&c->mu);
    return SQLITE_OK;
}

void wd__checkpointer_settle(wd_checkpointer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    while (c->finished < c->owed)
        pthread_cond_wait(&c->done, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

int wd__checkpointer_start(wd_checkpointer **out, sqlite3 *db)
{
    *out = NULL;
    wd_checkpointer *c = calloc(1, sizeof *c);
    if (!c)
        return WD_NOMEM();
    c->writer = db;
    /* A new connection knows the file is in WAL mode only once it has read
     * it; until then its checkpoints do nothing. */
    int rc = wd__db_open_peer(&c->conn, db);
    /* A checkpoint copies frames without the page cache: 64 pages are
     * plenty, and the writer's peak memory is what the commands are held to. */
    if (!rc && (rc = wd__db_exec(c->conn, "PRAGMA journal_mode = WAL; PRAGMA cache_size = 64")))
        wd__db_close(c->conn);
    if (rc) {
        free(c);
        return rc;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->done, NULL);
    if (pthread_create(&c->thread, NULL, checkpoint_main, c) != 0) {
        pthread_cond_destroy(&c->done);
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->mu);
        wd__db_close(c->conn);
        free(c);
        return wd__error(WD_ERROR, "cannot start the checkpoint thread");
    }
    sqlite3_wal_hook(db, after_commit, c);
    *out = c;
    return 0;
}

void wd__checkpointer_stop(wd_checkpointer *c)
{
    if (!c)
        return;
    /* Restores SQLite's default hook and threshold. */
    sqlite3_wal_autocheckpoint(c->writer, 1000);
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->done);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->mu);
    wd__db_close(c->conn);
    free(c);
}
