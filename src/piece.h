/*
 * piece.h - rebuilding piece k of a stored tensor along its lineage.
 *
 * A tensor's value is defined recursively: "planes" holds it, "same" is its
 * parent's, "delta-planes" is a lossless delta on the parent's native bytes,
 * and a lossy encoding (sparse, quantized, int4) adds its decoded delta to
 * the parent's float32 reconstruction, as deltatensors does. A piece is
 * rebuilt in two steps so only the calling thread touches the database:
 * wd__piece_fetch gathers the compressed chunks the lineage needs (calling
 * thread), wd__piece_decode runs the arithmetic (any thread).
 */
#ifndef WD_PIECE_H
#define WD_PIECE_H

#include "repo_int.h"

enum { WD_PIECE_NATIVE = 0, WD_PIECE_F32 = 1 };

typedef struct wd_piece_step wd_piece_step;

typedef struct {
    wd_piece_step *steps; /* evaluation order: the self-contained ancestor first */
    size_t n_steps, cap_steps;
    wd_dtype dtype;
    size_t nelem;
    uint64_t begin;       /* first element of the piece */
    int mode;             /* WD_PIECE_NATIVE or WD_PIECE_F32 */
    struct wd_chunkstore *cs; /* where the steps' chunks came from */
} wd_piece_plan;

/* Per-worker scratch: a few buffers of at most WD_CHUNK_RAW_MAX bytes, plus
 * the decoded array slices of lossy steps (at most 12 bytes an element of
 * the piece). */
typedef struct wd_piece_scratch wd_piece_scratch;
int wd__piece_scratch_new(wd_piece_scratch **out);
void wd__piece_scratch_free(wd_piece_scratch *s);
/* How decodes through s check chunks against their ids: WD_DECODE_CHECK
 * (the default) or WD_DECODE_TRUSTED (chunkstore.h: only for a caller that
 * checks the whole result against a recorded hash). */
void wd__piece_scratch_set_check(wd_piece_scratch *s, int how);

/* Gathers what piece k of t needs, in mode (native bytes, or float32). */
int wd__piece_fetch(wd_repo *repo, const wd_stored_tensor *t, uint64_t k, int mode, wd_piece_plan *plan);
/* Rebuilds the piece into out: nelem x dtype size bytes (native) or nelem
 * floats (float32). */
int wd__piece_decode(const wd_piece_plan *plan, wd_piece_scratch *s, void *out);
void wd__piece_plan_free(wd_piece_plan *plan);

/* float32 <-> a tensor dtype, the way deltatensors converts: floats widen
 * exactly and narrow rounding to nearest even; integers convert to float32,
 * and back by truncation (int64 and smaller, numpy astype) except int32,
 * which rounds (rint), as deltatensors 0.3.0 does. */
void wd__to_f32(float *dst, const uint8_t *src, size_t n, wd_dtype dt);
void wd__from_f32(uint8_t *dst, const float *src, size_t n, wd_dtype dt);
/* The float32 deltas every lossy encoder reads: out = a - b, one float32
 * subtraction an element (out may be a or b); and the same of two bfloat16
 * arrays widened first (out must not overlap them). */
void wd__f32_sub(float *out, const float *a, const float *b, size_t n);
void wd__bf16_sub(float *restrict out, const uint8_t *restrict a, const uint8_t *restrict b, size_t n);
/* 1 if wd__to_f32 / wd__from_f32 handle dt (F8 types are not). */
int wd__f32_convertible(wd_dtype dt);

#endif
