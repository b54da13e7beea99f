/*
 * checkpointer.h - the write-ahead log's checkpoints on a thread of their
 * own while a bulk writer goes on appending (checkpointer.c says why).
 */
#ifndef WD_CHECKPOINTER_H
#define WD_CHECKPOINTER_H

#include <sqlite3.h>

typedef struct wd_checkpointer wd_checkpointer;

/* Takes over db's checkpoints: opens a second read-write connection to its
 * file and a thread that checkpoints through it whenever db's commits have
 * grown the log past WD_CKPT_START_FRAMES. On failure db keeps SQLite's
 * own automatic checkpoints and nothing else changes. */
int wd__checkpointer_start(wd_checkpointer **out, sqlite3 *db);
/* Waits for a running checkpoint, stops the thread, closes its connection
 * and hands db its automatic checkpoints back. Any frames still in the log
 * are checkpointed by SQLite when db closes, as without a checkpointer. */
void wd__checkpointer_stop(wd_checkpointer *c);
/* Called before the writer's next chunk transaction: once a commit has
 * grown the log past WD_CKPT_CAP_FRAMES, waits until a checkpoint begun
 * after that commit is done, so the transaction restarts the log. A no-op
 * otherwise, and for c NULL. */
void wd__checkpointer_settle(wd_checkpointer *c);

/* Log frames (16 KiB pages in a repository) that start a checkpoint: the
 * same 1000 as SQLite's own automatic checkpoint. */
#define WD_CKPT_START_FRAMES 1000
/* Log frames past which the next chunk transaction waits until the thread
 * has caught up, so the log can restart from its beginning: with 16 KiB
 * pages the log holds at most about 64 MiB plus one transaction. */
#define WD_CKPT_CAP_FRAMES 4096

#endif
