/*
 * flusher.h - output files made durable while they are being written.
 *
 * A command's outputs are fsynced before they are renamed into place, so a
 * folder or file that appears under its name is whole even after a power
 * cut. Left to the end, that fsync waits for the device to take everything
 * the command wrote; on the 2-core VM it took 0.45-0.6 s for a 988 MB
 * shard whose pages had long been written back (the device's cache flush,
 * not the page writeback). A flusher is a thread beside the writers that
 * calls fdatasync on a file every WD_FLUSH_STEP bytes written to it and
 * closes files handed over to it after syncing them, so the device takes an
 * output in steps while the command computes and the caller's final fsync
 * has only the last step left.
 */
#ifndef WD_FLUSHER_H
#define WD_FLUSHER_H

#include <stdint.h>

/* Bytes written to one file between two background flushes of it: each
 * flush is a journal commit and a device cache flush, so fewer and larger
 * ones cost less; smaller ones leave less for the final fsync. load-delta
 * of the 988 MB pair (2026-12-06): 1.54-1.62 s with one fsync at the end;
 * 1.06-1.16 s with steps of 16, 32 or 64 MiB; 1.14-1.31 s with 128 or
 * 256 MiB. */
#define WD_FLUSH_STEP ((uint64_t)32 << 20)

/* Files handed over and not yet closed, at most: a caller handing over
 * more waits, so a folder of many files holds a bounded number open. */
#define WD_FLUSH_QUEUE 64

typedef struct wd__flusher wd__flusher;

/* Starts the thread. */
int wd__flusher_new(wd__flusher **out);

/* Reports len more bytes written to fd (any thread may call it; fd stays
 * open until wd__flusher_close or wd__flusher_close_later). Never waits
 * for the disk. */
void wd__flusher_wrote(wd__flusher *f, int fd, uint64_t len);

/* Stops watching fd (before whoever owns it syncs and closes it): waits
 * for a background flush of it; returns the first error a flush of it met,
 * as "cannot write 'path'" (path NULL: WD_EIO, the thread's message left
 * alone, for a caller already failing), or 0. */
int wd__flusher_forget(wd__flusher *f, int fd, const char *path);

/* Closes fd like wd__file_close: waits for a background flush of it, then
 * (rc == 0) fsyncs what is left and closes; returns rc, or the first error
 * a flush or the close met, as "cannot write 'path'". */
int wd__flusher_close(wd__flusher *f, int fd, const char *path, int rc);

/* Hands a finished fd over: the thread syncs and closes it while the
 * caller goes on (waiting first while WD_FLUSH_QUEUE are queued);
 * wd__flusher_finish reports how that went. path is copied. On failure to take it (no memory) fd is closed here as
 * wd__flusher_close would and its status returned. */
int wd__flusher_close_later(wd__flusher *f, int fd, const char *path);

/* Waits until every file handed over is synced and closed; returns the
 * first error among them ("cannot write 'path': ..."), or 0. */
int wd__flusher_finish(wd__flusher *f);

/* Stops the thread; files still handed over are synced and closed first.
 * NULL is ignored. */
void wd__flusher_free(wd__flusher *f);

#endif
