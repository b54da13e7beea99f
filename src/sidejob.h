/*
 * sidejob.h - one function run on a thread of its own beside the caller's
 * work (save-delta's parent_hash, load-delta's .wdelta checksum), its
 * status and one-line message carried back to the thread that joins it
 * (error.c's message is per thread).
 */
#ifndef WD_SIDEJOB_H
#define WD_SIDEJOB_H

#include <pthread.h>
#include <stdatomic.h>

typedef struct {
    int (*fn)(void *ud);
    void *ud;
    int rc;
    char msg[1024]; /* the thread's message when rc != 0 */
    atomic_int done;
    int running;    /* started and not joined yet */
    pthread_t th;
} wd__sidejob;

/* Starts fn(ud) on a new thread. Returns 0, or -1 when no thread could be
 * made (nothing runs; *j joins as a no-op). */
int wd__sidejob_start(wd__sidejob *j, int (*fn)(void *ud), void *ud);
/* Whether fn has returned (a join will not wait). */
int wd__sidejob_done(wd__sidejob *j);
/* Waits for fn and returns its status, its message raised again on this
 * thread; 0 if the job was joined already or never started. */
int wd__sidejob_join(wd__sidejob *j);

#endif
