/*
 * pairdelta.h - the one float32 delta reader: f32(a) - f32(b) of two
 * tensors, element range by element range, each worker slot of a pool
 * through its own scratch. A side is a tensor of a folder or of memory
 * (tensorref.h), or a stored tensor rebuilt piece by piece along its
 * lineage (piece.h). save-delta, export and commit's lossy encoder
 * (lossy_encode.c, which keeps the parent's pieces as they are decoded and
 * borrows the slots' buffers between reads) encode from it.
 */
#ifndef WD_PAIRDELTA_H
#define WD_PAIRDELTA_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "repo_int.h"
#include "tensorref.h"

/* One side of the pair: ref (a folder's or the caller's tensor), or st
 * (a stored tensor of repo, read as float32 pieces). */
typedef struct {
    const wd_tref *ref;
    wd_repo *repo;
    const wd_stored_tensor *st;
} wd__pd_side;

typedef struct wd__pair_delta wd__pair_delta;

/* A reader with nslots worker slots (wd__pool_size of the pool it will
 * run on), for pairs set with wd__pair_delta_set. Buffers grow on demand
 * and stay for the next pair. Memory per slot: for a tref side its raw
 * bytes of the largest range asked (8 bytes an element at most); for a
 * stored side one piece as float32 (4 x chunk_elems bytes) and a piece
 * scratch (piece.h); a tensor-reference b side as float32 (4 bytes an
 * element; a stored b side is subtracted from its piece). */
int wd__pair_delta_new(wd__pair_delta **out, int nslots);
void wd__pair_delta_free(wd__pair_delta *pd);
/* Points every slot at the pair (a, b): the sides must outlive the reads. */
void wd__pair_delta_set(wd__pair_delta *pd, const wd__pd_side *a, const wd__pd_side *b);

/* Hears, on the worker, of every piece k (n float32 values) a slot decodes
 * of the stored side i (0: a, 1: b), e.g. to keep it; fn NULL: nobody. */
typedef void (*wd__pd_piece_fn)(void *ud, int side, uint64_t k, const float *vals, size_t n);
void wd__pair_delta_hook(wd__pair_delta *pd, wd__pd_piece_fn fn, void *ud);

/* Between reads, a caller may borrow worker slot w's buffers, which stay
 * the reader's: i = 0 the a side's raw bytes, i = 1 the b side's piece
 * (forgotten, so read again). Grown to at least bytes; NULL (WD_ENOMEM
 * set) when that fails. */
void *wd__pair_delta_lend(wd__pair_delta *pd, int worker, int i, size_t bytes);
/* Piece k of the stored tensor t in mode (piece.h) into out (a lent
 * buffer or the caller's), through slot w's piece plan and scratch. */
int wd__pair_delta_decode(wd__pair_delta *pd, int worker, wd_repo *repo, const wd_stored_tensor *t, uint64_t k,
                          int mode, void *out);

/* wd_delta_read_par_fn over the pair: out[i] = f32(a)[begin + i] -
 * f32(b)[begin + i], one float32 subtraction each (deltatensors'
 * arithmetic). Distinct workers may call at once. */
int wd__pair_delta_read_par(void *pd, int worker, uint64_t begin, size_t count, float *out);
/* The same on slot 0 (wd_delta_read_fn). */
int wd__pair_delta_read(void *pd, uint64_t begin, size_t count, float *out);

/* A codec source of n elements reading pd on pool (NULL: serially), with
 * the caller's cache buffer (WD_LOSSY_CACHE_ELEMS floats, may be NULL). */
wd_delta_src wd__pair_delta_src(wd__pair_delta *pd, uint64_t n, struct wd_pool *pool, float *cache);

#endif
