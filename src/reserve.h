/*
 * reserve.h - a little disk space set aside by every writing command, so
 * that one failing on a full disk still has room to delete the chunks it
 * stored and shrink the database.
 *
 * Deleting rows and truncating a WAL-mode database both first append a few
 * pages to repo.db-wal; on a file system filled to the last block even that
 * fails, and the repository would stay as full as the failure left it. A
 * writing handle therefore preallocates repo.reserve.PID.N in the
 * repository directory when it opens (when there is room), unlinks it just
 * before such a clean-up, and in any case when it closes. gc, which runs
 * when no writer is alive, removes the ones a killed command left.
 */
#ifndef WD_RESERVE_H
#define WD_RESERVE_H

/* Enough for the pages a clean-up writes: the chunk table's and index's
 * leaves, freelist trunks and pointer-map pages, at 64 KiB each (measured
 * at 0.5-1.5 MiB for 60 MiB of chunks; see gc.c). */
#define WD_RESERVE_BYTES (8u << 20)
#define WD_RESERVE_PREFIX "repo.reserve."

typedef struct {
    char *path; /* NULL when there is none */
} wd_reserve;

/* Creates the reserve of a writing handle in dir. Best effort: on a file
 * system without room for it there is simply none. */
void wd__reserve_make(wd_reserve *r, const char *dir);

/* Unlinks it (if any), giving its space to the file system. */
void wd__reserve_release(wd_reserve *r);

/* Removes every reserve file in dir: only while no writer is alive (gc
 * holding the writer lock exclusive), so all of them are stale. */
void wd__reserve_remove_stale(const char *dir);

#endif
