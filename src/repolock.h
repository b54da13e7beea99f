/*
 * repolock.h - the repository's writer lock, which makes gc safe while
 * other commands write: a command that writes may hold chunks it stored (or
 * found already stored) but has not referenced yet, so gc must never run
 * while one is alive.
 *
 * Two lock files in the repository directory, both flock(2)ed:
 *   repo.lock  every writing handle holds it shared for as long as it is
 *              open; gc holds it exclusive while it scans and deletes;
 *   gc.lock    gc holds it exclusive from before it waits for repo.lock
 *              until it is done; a writing handle takes it shared only
 *              while it acquires repo.lock, so once a gc is waiting no new
 *              writer starts and a stream of writers cannot starve it.
 * Read-only handles take neither (and need no writable directory): gc only
 * removes chunks no object references, which a reader never reads.
 */
#ifndef WD_REPOLOCK_H
#define WD_REPOLOCK_H

#define WD_LOCK_FILE "repo.lock"
#define WD_GC_LOCK_FILE "gc.lock"

/* How long a writing command waits for a running gc before "busy". */
#define WD_LOCK_WRITER_WAIT_MS 60000

typedef struct {
    int fd;    /* repo.lock; -1 when not open */
    int gc_fd; /* gc.lock; -1 when not open */
    int exclusive;
} wd_repolock;

#define WD_REPOLOCK_INIT {-1, -1, 0}

/* Opens the lock files of repository dir (creating them) and takes
 * repo.lock shared, waiting up to WD_LOCK_WRITER_WAIT_MS for a gc.
 * WD_EBUSY on timeout, WD_EIO if the files cannot be opened. */
int wd__repolock_shared(wd_repolock *l, const char *dir);

/* Turns l's shared hold into an exclusive one, waiting up to wait_ms for
 * other writers to finish. On WD_EBUSY l is shared again. */
int wd__repolock_exclusive(wd_repolock *l, int wait_ms);

/* The same without waiting: 1 if l is now exclusive, 0 if another process
 * holds the lock (l stays shared). */
int wd__repolock_try_exclusive(wd_repolock *l);

/* Back from exclusive to shared. */
void wd__repolock_release_exclusive(wd_repolock *l);

/* Releases everything and closes the files. */
void wd__repolock_close(wd_repolock *l);

#endif
