/*
 * pipeline.h - a small fixed thread pool that runs "for i in [0, n): fn(i)"
 * batches, the calling thread taking part. Compression, hashing and decoding
 * of chunks are spread over it; all SQLite access stays on the caller.
 */
#ifndef WD_PIPELINE_H
#define WD_PIPELINE_H

#include <stddef.h>

typedef struct wd_pool wd_pool;

/* fn runs for every index, on any worker; worker is in [0, nworkers) and
 * lets fn use per-worker scratch (zstd contexts, buffers). A failing fn
 * returns non-zero; the batch's result is the first failure by index. */
typedef int (*wd_pool_fn)(void *ctx, size_t index, int worker);

/* threads <= 0 means one per online core. The pool has that many worker
 * threads plus the caller's slot (worker 0). */
int wd__pool_new(wd_pool **out, int threads);
/* Number of worker slots (threads + 1): size per-worker scratch by it. */
int wd__pool_size(const wd_pool *pool);
/* Runs fn over [0, n), the caller helping, and waits for all of it. */
int wd__pool_run(wd_pool *pool, size_t n, wd_pool_fn fn, void *ctx);
/* Starts fn over [0, n) on the worker threads only and returns at once, so
 * the caller can do database work meanwhile; wd__pool_wait collects the
 * result. One batch at a time. */
void wd__pool_start(wd_pool *pool, size_t n, wd_pool_fn fn, void *ctx);
int wd__pool_wait(wd_pool *pool);
void wd__pool_free(wd_pool *pool);

#endif
