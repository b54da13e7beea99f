/*
 * pipeline.c - the thread pool behind wd__pool_run/start. Workers sleep on
 * a condition variable between batches; a batch hands out indices through a
 * shared counter so uneven pieces (the last chunk of a tensor) balance out.
 */
#include "pipeline.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cancel.h"
#include "error.h"

struct wd_pool {
    int nthreads; /* worker threads; slots are nthreads + 1 (0 = caller) */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start_cv, done_cv;
    unsigned long generation; /* bumped per batch so workers see new work */
    int shutting_down;
    /* the current batch */
    wd_pool_fn fn;
    void *ctx;
    size_t n, next;
    int busy;           /* worker threads still inside the batch */
    size_t first_fail;  /* smallest failing index, n if none */
    int fail_rc;
    /* Error messages are per thread: the failing worker's message is
     * carried back to the caller here. */
    char fail_msg[1024];
};

/* Takes indices until the batch is exhausted. Called with mu unlocked. */
static void drain(wd_pool *p, int worker)
{
    /* fn, ctx and n were set under mu before this thread saw the batch
     * (worker_main took mu; the caller set them itself), and stay put until
     * every worker is out of here. The index comes from an atomic counter,
     * not under mu: with more threads than cores (the caller drains too) a
     * thread preempted while holding mu kept the others waiting a whole
     * time slice. The counter may run past n; wd__pool_start resets it. */
    wd_pool_fn fn = p->fn;
    void *ctx = p->ctx;
    size_t n = p->n;
    for (;;) {
        size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= n)
            return;
        /* (issue 9) a binding's Ctrl-C stops the batch at the next piece */
        int rc = wd__cancel_requested() ? wd__cancel_error() : fn(ctx, i, worker);
        if (rc) {
            pthread_mutex_lock(&p->mu);
            if (i < p->first_fail) {
                p->first_fail = i;
                p->fail_rc = rc;
                snprintf(p->fail_msg, sizeof p->fail_msg, "%s", wd_errmsg());
            }
            pthread_mutex_unlock(&p->mu);
        }
    }
}

typedef struct {
    wd_pool *pool;
    int worker;
} worker_arg;

static void *worker_main(void *argp)
{
    worker_arg arg = *(worker_arg *)argp;
    free(argp);
    wd_pool *p = arg.pool;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->shutting_down && p->generation == seen)
            pthread_cond_wait(&p->start_cv, &p->mu);
        if (p->shutting_down) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        drain(p, arg.worker);
        pthread_mutex_lock(&p->mu);
        int last = --p->busy == 0;
        pthread_mutex_unlock(&p->mu);
        /* after unlocking, so the woken caller does not block on mu at
         * once; a late signal is only a spurious wakeup of a later wait */
        if (last)
            pthread_cond_signal(&p->done_cv);
    }
}

int wd__pool_new(wd_pool **out, int threads)
{
    if (threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > 0 ? (int)cores : 1;
    }
    if (threads > 256)
        threads = 256;
    wd_pool *p = calloc(1, sizeof *p);
    if (!p)
        return WD_NOMEM();
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->threads = calloc((size_t)threads, sizeof *p->threads);
    if (!p->threads) {
        wd__pool_free(p);
        return WD_NOMEM();
    }
    for (int w = 0; w < threads; w++) {
        worker_arg *arg = malloc(sizeof *arg);
        if (!arg) {
            wd__pool_free(p);
            return WD_NOMEM();
        }
        arg->pool = p;
        arg->worker = w + 1;
        if (pthread_create(&p->threads[w], NULL, worker_main, arg) != 0) {
            free(arg);
            wd__pool_free(p);
            return wd__error(WD_ERROR, "cannot start worker thread");
        }
        p->nthreads = w + 1;
    }
    *out = p;
    return WD_OK;
}

int wd__pool_size(const wd_pool *pool) { return pool->nthreads + 1; }

void wd__pool_start(wd_pool *p, size_t n, wd_pool_fn fn, void *ctx)
{
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    __atomic_store_n(&p->next, 0, __ATOMIC_RELAXED);
    p->first_fail = n;
    p->fail_rc = 0;
    p->busy = n ? p->nthreads : 0;
    if (n)
        p->generation++;
    pthread_mutex_unlock(&p->mu);
    /* after unlocking: woken workers would otherwise wait for mu first */
    if (n)
        pthread_cond_broadcast(&p->start_cv);
}

int wd__pool_wait(wd_pool *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    int rc = p->fail_rc;
    p->n = 0;
    pthread_mutex_unlock(&p->mu);
    if (rc)
        wd__error(rc, "%s", p->fail_msg);
    return rc;
}

int wd__pool_run(wd_pool *p, size_t n, wd_pool_fn fn, void *ctx)
{
    wd__pool_start(p, n, fn, ctx);
    drain(p, 0);
    return wd__pool_wait(p);
}

void wd__pool_free(wd_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->shutting_down = 1;
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    for (int w = 0; w < p->nthreads; w++)
        pthread_join(p->threads[w], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}
