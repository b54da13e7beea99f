/*
 * flusher.c - output files made durable while they are being written
 * (see flusher.h).
 *
 * One node per file the writers report, in a list whose nodes never move
 * (the thread works on a node with the mutex released). A node is either
 * open (its writer still writes; "want" asks for one fdatasync) or handed
 * over (the thread syncs and closes it, then drops the node). The thread
 * takes the oldest node with work; a node it is syncing is "busy", and
 * whoever closes that file waits for it, because a descriptor must not be
 * closed (and its number reused) under a running fdatasync.
 *
 * Errors: Linux reports a failed writeback once per open file, to the first
 * fsync after it, so a failure the thread sees is kept and handed to
 * whoever closes the file; a later fsync on the same descriptor would not
 * report it again.
 */
#include "flusher.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "outdir.h"

typedef struct node {
    struct node *next;
    int fd;
    uint64_t since; /* bytes written since the last flush was asked for */
    int want;       /* a flush is asked for */
    int busy;       /* the thread is syncing this file */
    char *handed;   /* set once handed over: the path, for the message */
    int err;        /* errno of the first failed flush, 0 if none */
} node;

struct wd__flusher {
    pthread_mutex_t mu;
    pthread_cond_t work; /* the thread waits here for a node with work */
    pthread_cond_t idle; /* closers wait here for a busy node */
    node *head;
    int stop;
    int running; /* the thread exists; without it everything is synchronous */
    pthread_t th;
    int first_err;    /* of a handed-over file */
    char *first_path; /* its path */
};

/* The link to fd's open node (or the list's end). Handed-over nodes are
 * skipped: once the thread has closed one, its number may already belong
 * to another file. */
static node **find_open(wd__flusher *f, int fd)
{
    node **pn = &f->head;
    while (*pn && ((*pn)->fd != fd || (*pn)->handed))
        pn = &(*pn)->next;
    return pn;
}

static void unlink_node(wd__flusher *f, const node *n)
{
    node **pn = &f->head;
    while (*pn != n)
        pn = &(*pn)->next;
    *pn = n->next;
}

static node *next_work(wd__flusher *f)
{
    for (node *n = f->head; n; n = n->next)
        if (!n->busy && (n->want || n->handed))
            return n;
    return NULL;
}

static int sync_fd(int fd)
{
    int r;
    do
        r = fdatasync(fd);
    while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

static void *flusher_main(void *arg)
{
    wd__flusher *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        node *n = next_work(f);
        if (!n) {
            if (f->stop)
                break;
            pthread_cond_wait(&f->work, &f->mu);
            continue;
        }
        n->busy = 1;
        n->want = 0;
        int closing = n->handed != NULL;
        pthread_mutex_unlock(&f->mu);
        int err = sync_fd(n->fd);
        if (closing && close(n->fd) != 0 && !err)
            err = errno;
        pthread_mutex_lock(&f->mu);
        n->busy = 0;
        if (err && !n->err)
            n->err = err;
        if (closing) {
            if (n->err && !f->first_err) {
                f->first_err = n->err;
                f->first_path = n->handed;
                n->handed = NULL;
            }
            unlink_node(f, n);
            free(n->handed);
            free(n);
        }
        pthread_cond_broadcast(&f->idle);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int wd__flusher_new(wd__flusher **out)
{
    wd__flusher *f = calloc(1, sizeof *f);
    if (!f)
        return WD_NOMEM();
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->work, NULL);
    pthread_cond_init(&f->idle, NULL);
    /* Without a thread the files are only synced at their close, as
     * they would be without a flusher. */
    f->running = pthread_create(&f->th, NULL, flusher_main, f) == 0;
    *out = f;
    return 0;
}

void wd__flusher_wrote(wd__flusher *f, int fd, uint64_t len)
{
    if (!f->running)
        return;
    pthread_mutex_lock(&f->mu);
    node **pn = find_open(f, fd);
    if (!*pn && (*pn = calloc(1, sizeof **pn)))
        (*pn)->fd = fd;
    node *n = *pn; /* no memory for a node: this file is synced at its close */
    if (n && (n->since += len) >= WD_FLUSH_STEP) {
        n->since = 0;
        n->want = 1;
        pthread_cond_signal(&f->work);
    }
    pthread_mutex_unlock(&f->mu);
}

int wd__flusher_forget(wd__flusher *f, int fd, const char *path)
{
    int err = 0;
    pthread_mutex_lock(&f->mu);
    node **pn = find_open(f, fd);
    while (*pn && (*pn)->busy) {
        pthread_cond_wait(&f->idle, &f->mu);
        pn = find_open(f, fd);
    }
    if (*pn) {
        node *n = *pn;
        err = n->err;
        *pn = n->next;
        free(n);
    }
    pthread_mutex_unlock(&f->mu);
    if (!err)
        return 0;
    if (!path)
        return WD_EIO;
    errno = err;
    return wd__error_errno(WD_EIO, "cannot write '%s'", path);
}

int wd__flusher_close(wd__flusher *f, int fd, const char *path, int rc)
{
    int frc = wd__flusher_forget(f, fd, rc ? NULL : path); /* a failing caller keeps its message */
    return wd__file_close(fd, path, rc ? rc : frc);
}

static size_t count_handed(const wd__flusher *f)
{
    size_t k = 0;
    for (const node *n = f->head; n; n = n->next)
        k += n->handed != NULL;
    return k;
}

int wd__flusher_close_later(wd__flusher *f, int fd, const char *path)
{
    char *copy = f->running ? strdup(path) : NULL;
    if (!copy)
        return wd__flusher_close(f, fd, path, 0);
    pthread_mutex_lock(&f->mu);
    while (count_handed(f) >= WD_FLUSH_QUEUE)
        pthread_cond_wait(&f->idle, &f->mu);
    node **pn = find_open(f, fd);
    if (!*pn && (*pn = calloc(1, sizeof **pn)))
        (*pn)->fd = fd;
    int taken = *pn != NULL;
    if (taken) {
        (*pn)->handed = copy;
        pthread_cond_signal(&f->work);
    }
    pthread_mutex_unlock(&f->mu);
    if (taken)
        return 0;
    free(copy);
    return wd__flusher_close(f, fd, path, 0);
}

int wd__flusher_finish(wd__flusher *f)
{
    pthread_mutex_lock(&f->mu);
    while (count_handed(f))
        pthread_cond_wait(&f->idle, &f->mu);
    int err = f->first_err;
    char *path = f->first_path;
    f->first_err = 0;
    f->first_path = NULL;
    pthread_mutex_unlock(&f->mu);
    int rc = 0;
    if (err) {
        errno = err;
        rc = wd__error_errno(WD_EIO, "cannot write '%s'", path ? path : "output");
    }
    free(path);
    return rc;
}

void wd__flusher_free(wd__flusher *f)
{
    if (!f)
        return;
    if (f->running) {
        pthread_mutex_lock(&f->mu);
        /* Open files are their writers' to close; only handed-over ones
         * are the thread's (it finishes them before it stops). */
        for (node *n = f->head; n; n = n->next)
            n->want = 0;
        f->stop = 1;
        pthread_cond_signal(&f->work);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->th, NULL);
    }
    while (f->head) {
        node *n = f->head;
        f->head = n->next;
        free(n->handed);
        free(n);
    }
    free(f->first_path);
    pthread_cond_destroy(&f->idle);
    pthread_cond_destroy(&f->work);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
