/*
 * codec.h - deltatensors' three lossy delta codecs (sparse, quantized, int4)
 * as streaming encoders and in-place, piecewise decoders, plus what they
 * share: a float32 delta source read in bounded chunks, top-k selection over
 * |delta| by histogram passes, and numpy's float32 pairwise summation.
 *
 * Numerics follow deltatensors 0.2.0 (format v1) / 0.3.0 (v2) on numpy 1.24
 * bit for bit: every delta operation is one IEEE float32 operation (the build
 * uses -ffp-contract=off, and FLT_EVAL_METHOD must be 0). The formulas are
 * spelled out at each function below and in codec_*.c.
 *
 * Memory: an encoder holds one chunk of float32 deltas per worker slot
 * (src->chunk elements, 4 MiB by default) or the whole tensor when it is at
 * most src->cache_elems, a 512 KiB histogram per slot (top-k), the kept
 * entries of a batch of units (2 per slot; sparse streams them out through
 * wd__sparse_encode_stream), the top-k candidates of a folded cut (12 bytes
 * each, at most WD_TOPK_FOLD_MAX; int4 may hold more inside its code array,
 * see codec_int4.c), plus its outputs where it returns arrays:
 * k indices + k values (wd__sparse_encode, 12 bytes an entry), n/8 sign
 * bytes + one float16 per row (quantized), n/2 code bytes + the outliers
 * (int4; wd__int4_encode_stream hands the codes out a batch of units at a
 * time and keeps only the outliers). A decoder holds nothing but the encoded arrays the caller passes
 * in.
 *
 * Arrays are host-order, which must be little-endian (the .wdelta byte order),
 * so arrays read from a file are used as they are; like any C array they must
 * be aligned for their element type (wd__wdelta_read_array's malloc'd buffers
 * are; a pointer into a mapped file in general is not).
 */
#ifndef WD_CODEC_H
#define WD_CODEC_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>

#include "wdrepo.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "wdrepo's codecs use .wdelta arrays in place and need a little-endian host"
#endif
#if FLT_EVAL_METHOD != 0
#error "float32 delta arithmetic needs FLT_EVAL_METHOD == 0 (SSE2, not x87)"
#endif

/* Elements a source is asked for at a time unless it says otherwise. */
#define WD_CODEC_CHUNK ((size_t)1 << 20)
/* numpy's ufunc buffer size: add.reduce sums a row in blocks of this many
 * elements, so the quantized encoder needs each block whole in memory, and a
 * source's chunk is raised to at least this. */
#define WD_CODEC_BLOCK ((size_t)8192)

/* ---- Delta source --------------------------------------------------------- */

/* Writes the float32 deltas f32(ft) - f32(base) of elements
 * [begin, begin + count) of the flattened tensor to out[0 .. count). Returns 0
 * or a negative WD_E* code (with the message set through wd__error), which
 * the encoder returns as it is. Encoders call it several times over the whole
 * tensor (one pass per stage), count <= the chunk, and the same values each
 * time. */
typedef int (*wd_delta_read_fn)(void *ud, uint64_t begin, size_t count, float *out);
/* The same, callable from the pool's workers at once: calls with distinct
 * worker slots (0 .. wd__pool_size - 1) may run concurrently, so the source
 * keeps its per-reader state per slot. */
typedef int (*wd_delta_read_par_fn)(void *ud, int worker, uint64_t begin, size_t count, float *out);

struct wd_pool;

typedef struct {
    uint64_t n;            /* elements of the tensor (1 for 0-d) */
    wd_delta_read_fn read; /* serial reads (used when pool or read_par is NULL) */
    void *ud;
    size_t chunk;          /* elements per read: 0 = WD_CODEC_CHUNK, raised to WD_CODEC_BLOCK */
    /* Optional: with both set, every pass reads and processes chunks on the
     * pool's workers. The encoded arrays are the same for any pool size:
     * whole-tensor statistics are merged in chunk order. */
    struct wd_pool *pool;
    wd_delta_read_par_fn read_par;
    /* A tensor of at most this many elements is read once and kept for the
     * later passes (0: one chunk). Bounds the reader's memory at 4 bytes an
     * element of it. */
    size_t cache_elems;
    /* Optional: the caller's room for cache_elems floats, kept from tensor
     * to tensor. A fresh buffer per tensor is fresh pages, and faulting them
     * in cost a lossy commit a fifth of its time. */
    float *cache_buf;
    /* Tests: 1 finds the top-k cut in passes of its own before encoding
     * (the reference the folded cut, wd__topk_plan, is checked against). */
    int topk_two_pass;
    /* Optional: the caller's buffers, kept from tensor to tensor (see
     * wd_codec_scratch). NULL: the encoder allocates its own per call. */
    struct wd_codec_scratch *scratch;
} wd_delta_src;

/* What an encoder allocates per call and may keep for the next tensor: the
 * reader's chunk buffers (one chunk of floats per worker slot), the top-k
 * histograms (512 KiB per slot, a 1.25 MiB window per slot, 256 KiB for a
 * folded cut). Each grows to the largest a tensor of the commit needed and no further; all of
 * it is bounded by the pool size and the constants above, never by the
 * model. Freed and faulted in anew per tensor, these pages cost a sparse
 * commit a fifth of its CPU in the kernel. One encoding at a time. */
typedef struct wd_codec_scratch wd_codec_scratch;
int wd__codec_scratch_new(wd_codec_scratch **out);
void wd__codec_scratch_free(wd_codec_scratch *s);
/* Hands back what only a tensor over the source's cache_elems uses (the
 * reader's chunk buffers, the sampled window), for a run of cached tensors:
 * their memory peaks with the caches, which a big tensor does without. */
void wd__codec_scratch_trim(wd_codec_scratch *s);
struct wd_codec_scratch {
    float **wbuf; /* n_wbuf buffers of wbuf_elems floats */
    int n_wbuf;
    size_t wbuf_elems;
    uint64_t *hist, *win, *lo; /* elements: hist_cap, win_cap, 1 << 15 (lo) */
    size_t hist_cap, win_cap;
};
/* Grows *p to hold want elements of esz bytes (contents not kept). */
int wd__scratch_grow(void **p, size_t *cap, size_t want, size_t esz);


/* Fills *src to read from an array of n deltas the caller keeps alive. */
void wd__delta_src_mem(wd_delta_src *src, const float *deltas, uint64_t n);

/* How well d' (the decoded delta) matches d, accumulated in double during
 * encoding: rel_error = ||d' - d|| / ||d|| (0 when both are 0, inf when only
 * ||d|| is 0), max_abs_error = max |d' - d|. NaN deltas make them NaN. */
typedef struct {
    double norm;          /* ||d||_2 */
    double err;           /* ||d' - d||_2 */
    double rel_error;
    double max_abs_error;
} wd_codec_fidelity;

/* ---- Shared numerics (exported for the tests and other codecs) ------------ */

/* Reads a source in passes, unit by unit. A unit is a range of at most
 * `chunk` elements; by default unit u is [u * chunk, (u + 1) * chunk), and an
 * encoder whose statistics need other boundaries (whole rows) gives its own.
 * A tensor of at most cache_elems elements is read once and served from
 * memory afterwards; otherwise each pass reads it again, each worker into
 * its own chunk buffer. */
typedef struct {
    const wd_delta_src *src;
    size_t chunk;   /* elements per unit at most */
    int nworkers;   /* worker slots (1 without a pool) */
    int parallel;   /* passes run on src->pool */
    float *buf;     /* cached: the whole tensor */
    int cached;
    int buf_owned;  /* buf is the reader's (not src->cache_buf) */
    float **wbuf;   /* not cached: one chunk per worker slot */
    int wbuf_borrowed; /* wbuf is src->scratch's */
    struct wd__run *started; /* a run wd__reader_start began, until wd__reader_wait */
} wd__reader;

int wd__reader_init(wd__reader *r, const wd_delta_src *src);
void wd__reader_free(wd__reader *r);

/* Elements [*begin, *begin + *count) of unit u; count <= the reader's chunk. */
typedef void (*wd__unit_range_fn)(const void *rctx, size_t u, uint64_t *begin, size_t *count);
/* Work on one unit's deltas p[0 .. count) (elements begin ..), on any
 * worker slot; units of one run may be processed in any order and at once. */
typedef int (*wd__unit_fn)(void *ctx, size_t u, int worker, const float *p, uint64_t begin, size_t count);

/* Number of default units. */
size_t wd__reader_units(const wd__reader *r);
/* Runs fn over units [u0, u1) (range NULL: the default units), in parallel
 * when the source has a pool; returns the first failure by unit. */
int wd__reader_run(wd__reader *r, size_t u0, size_t u1, wd__unit_range_fn range, const void *rctx,
                   wd__unit_fn fn, void *ctx);
/* wd__reader_run on the pool's worker threads only, returning at once so
 * the caller can merge the previous batch meanwhile; wd__reader_wait
 * returns its result. Without worker threads the run happens here, at once.
 * One started run at a time; wd__reader_free waits for it. */
int wd__reader_start(wd__reader *r, size_t u0, size_t u1, wd__unit_range_fn range, const void *rctx,
                     wd__unit_fn fn, void *ctx);
int wd__reader_wait(wd__reader *r);
/* Units a caller should hand to one wd__reader_run when it must keep each
 * unit's results until they are merged: enough to keep every worker busy. */
size_t wd__reader_batch(const wd__reader *r);

/* The sum of d[i]^2 over [0, count) in double, in four lanes (element i
 * in lane i mod 4, each lane in element order), added as (0 + 1) + (2 + 3):
 * one chain of dependent adds would set a loop's pace. Named lanes, since
 * gcc kept an array indexed by i & 3 in memory, a store and a reload an
 * element. */
static inline double wd__sum_squares(const float *d, size_t count)
{
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 4 <= count; i += 4) {
        a0 += (double)d[i] * d[i];
        a1 += (double)d[i + 1] * d[i + 1];
        a2 += (double)d[i + 2] * d[i + 2];
        a3 += (double)d[i + 3] * d[i + 3];
    }
    if (i < count)
        a0 += (double)d[i] * d[i];
    if (i + 1 < count)
        a1 += (double)d[i + 1] * d[i + 1];
    if (i + 2 < count)
        a2 += (double)d[i + 2] * d[i + 2];
    return (a0 + a1) + (a2 + a3);
}

/* The order key of |x|: float32 bit patterns of non-negative values order
 * like the values, and NaN (any sign) orders above inf, as numpy's
 * argpartition puts NaN last. */
static inline uint32_t wd__abs_key(float x)
{
    union { float f; uint32_t u; } v = { x };
    return v.u & 0x7fffffffu;
}

/* Where the k largest keys stop: an element is selected when its key is
 * above thr, or equals thr and fewer than take_eq elements with key == thr
 * came before it (in index order). take_eq == UINT64_MAX takes them all. */
typedef struct {
    uint32_t thr;
    uint64_t take_eq;
} wd_topk_cut;

/* Finds the cut for the k largest |delta| of r's tensor (0 <= k <= n) in at
 * most two passes of its own (wd__topk_plan with nothing folded): a histogram of the top 16 key bits, then of the low 15
 * bits inside the bucket holding the k-th largest. Memory: a 512 KiB
 * histogram per worker slot while it runs (counts add up the same in any
 * order, so the cut does not depend on the pool). Which of several equal keys at the cut are taken
 * is unspecified in deltatensors (introselect); here it is the first ones. */
int wd__topk_find(wd_topk_cut *out, wd__reader *r, uint64_t k);

/* Candidates an encoder folding the cut holds by default: 12 bytes each
 * (position and value), 12 MiB. */
#define WD_TOPK_FOLD_MAX ((uint64_t)1 << 20)

/* The top-k cut with its second pass saved: pass 1 finds bucket b1 (the
 * high 16 key bits) holding the k-th largest. When the reader re-reads the
 * source each pass (the tensor is not cached) and has at least 8 units,
 * pass 1 also counts the low bits of 5 buckets around where a sample of 3
 * units puts the k-th largest: if b1 is one of them, the cut is exact
 * after pass 1 (spec_hit). Otherwise,
 * when fold is set, cut takes every key >= b1 << 15 (n_cands elements, all
 * of b1 and above) as candidates, the encoder collects them in index order
 * and wd__topk_fold_cut finds the exact cut among them, the one pass 2
 * would have found. fold is 0 (and cut exact, after pass 2 when needed)
 * when k is 0 or n, when bucket b1 goes whole, when b1 is the bucket of
 * zeros (-0.0 and +0.0 are ordered by position there) or of inf/NaN, when
 * n_cands > max_cands, and when src->topk_two_pass is set (which also
 * turns the sample off). Memory: pass 1's 512 KiB histogram per worker
 * slot, plus 1.25 MiB per slot for the window when it samples. */
typedef struct {
    wd_topk_cut cut;
    int fold;
    uint64_t need;    /* fold: elements of bucket b1 taken, 1 .. hist_b1 - 1 */
    uint64_t hist_b1; /* fold: elements in bucket b1 */
    uint64_t n_cands; /* fold: elements with key >= cut.thr */
    int spec_hit;     /* the exact cut came from pass 1's sampled window */
    wd_codec_scratch *scratch; /* the source's, for wd__topk_fold_cut */
} wd_topk_plan;

int wd__topk_plan(wd_topk_plan *p, wd__reader *r, uint64_t k, uint64_t max_cands);
/* The exact cut of a folded plan from all m candidates' values (any
 * order). WD_ERROR when they are not the n_cands pass 1 counted (the
 * source changed between passes). Memory: a 256 KiB histogram. */
int wd__topk_fold_cut(wd_topk_cut *out, const wd_topk_plan *p, const float *val, uint64_t m);
/* Appends a unit's n candidates (idx, val) to cand_idx/cand_val at *m,
 * which hold the plan's n_cands; WD_ERROR naming codec when they would
 * overflow them (the source changed between passes). */
int wd__topk_fold_add(const wd_topk_plan *p, int64_t *cand_idx, float *cand_val, uint64_t *m,
                      const int64_t *idx, const float *val, size_t n, const char *codec);

/* Grows the parallel arrays a unit collects its entries at or above a cut
 * in (positions, values, tie marks) to hold at least want entries,
 * doubling from 4096; *cap is updated only on success. */
int wd__entries_grow(int64_t **idx, float **val, uint8_t **tie, size_t *cap, size_t want);
/* Frees what wd__entries_grow allocated (NULLs accepted). */
void wd__entries_free(int64_t *idx, float *val, uint8_t *tie);

/* Applies a cut while walking the tensor in index order; *eq_seen starts at
 * 0 for each walk. */
static inline int wd__topk_take(const wd_topk_cut *c, uint32_t key, uint64_t *eq_seen)
{
    if (key > c->thr)
        return 1;
    if (key == c->thr && *eq_seen < c->take_eq) {
        (*eq_seen)++;
        return 1;
    }
    return 0;
}

/* numpy 1.24's FLOAT_pairwise_sum over a[0..n): below 8 elements a plain
 * loop from 0.0f; up to 128 eight accumulators (r[j] += a[i+j]) combined as
 * ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), then the tail added in order; above
 * 128 the halves n2 = n/2 rounded down to a multiple of 8 and n - n2, summed
 * recursively and added. */
float wd__pairwise_sum_f32(const float *a, size_t n);

/* np.add.reduce over a contiguous float32 row (np.sum, and the sum inside
 * np.mean): acc = 0.0f, then acc += pairwise(block) for consecutive blocks of
 * WD_CODEC_BLOCK elements, as numpy's buffered reduction loop does. */
float wd__numpy_sum_f32(const float *a, size_t n);

/* Validates an index array: count values of idx_bytes (4 or 8) each, every
 * one in [0, n) and strictly greater than the one before. what names the
 * array in the message. Returns 0 or WD_EBADINPUT. */
int wd__check_sorted_idx(const void *idx, unsigned idx_bytes, uint64_t count, uint64_t n,
                         const char *what);

/* The first j with idx[j] >= pos in a sorted index array of count values. */
uint64_t wd__idx_lower_bound(const void *idx, unsigned idx_bytes, uint64_t count, uint64_t pos);

/* Fills *fid (NULL: nothing) from sums over the tensor: norm2 = sum d^2,
 * err2 = sum (d' - d)^2 (clamped at 0), max_abs = max |d' - d|. */
void wd__fidelity_finish(wd_codec_fidelity *fid, double norm2, double err2, double max_abs);

/* Element i of an index array of idx_bytes (4 or 8) per value. */
static inline int64_t wd__idx_at(const void *idx, unsigned idx_bytes, uint64_t i)
{
    if (idx_bytes == 4)
        return ((const int32_t *)idx)[i];
    return ((const int64_t *)idx)[i];
}

/* ---- sparse --------------------------------------------------------------- */

/* indices int64 (sorted flat positions), values float32 = the delta there. */
typedef struct {
    uint64_t n;        /* elements of the tensor */
    uint64_t k;        /* entries */
    int64_t *indices;  /* k strictly increasing positions in [0, n) */
    float *values;     /* k deltas */
} wd_sparse_delta;

/* k = min(n, max(1, floor(n * (1 - sparsity)))) with the product rounded in
 * float64 as Python computes int(n * (1.0 - sparsity)) (27000 at 0.9 gives
 * 2699: 1 - 0.9 is 0.09999999999999998). */
uint64_t wd__sparse_k(uint64_t n, double sparsity);

/* Encodes src: keeps the k largest |delta| (k above), indices ascending.
 * sparsity must be in [0, 1) (deltatensors refuses others): WD_EUSAGE.
 * On success *out owns malloc'd arrays (wd__sparse_clear frees them); fid
 * (may be NULL) gets the fidelity. Passes over src: 2 when the top-k cut's
 * second pass is saved (wd__topk_plan: a sampled window, or the cut folded,
 * holding up to WD_TOPK_FOLD_MAX candidates until the end of the pass),
 * else 3 (1 read when the tensor is cached);
 * memory: see the top of this file, the k entries being the output. */
int wd__sparse_encode(wd_sparse_delta *out, const wd_delta_src *src, double sparsity,
                      wd_codec_fidelity *fid);
/* The same selection handed out in index order instead of kept: emit gets
 * consecutive runs of entries (count may be 0 never; idx ascending across
 * calls), so the caller can store them as they come and memory does not
 * grow with k. *out_k gets k. */
typedef int (*wd_sparse_emit_fn)(void *ud, const int64_t *idx, const float *val, size_t count);
int wd__sparse_encode_stream(const wd_delta_src *src, double sparsity, wd_sparse_emit_fn emit, void *ud,
                             uint64_t *out_k, wd_codec_fidelity *fid);
/* The same with a sink that also hears when the encoder leaves src->pool
 * alone: pool_idle(ud, 1) on the calling thread once the encoder's work on
 * the pool is done and until pool_idle(ud, 0), called before the encoder
 * starts more. While idle the sink may run its own batches on the pool
 * (compressing what emit gathered); the final pass's merge of one batch of
 * units runs while the workers classify the next, so emit mostly sees a
 * busy pool. pool_idle may be NULL. */
typedef struct {
    wd_sparse_emit_fn emit;
    int (*pool_idle)(void *ud, int idle);
    void *ud;
} wd_sparse_sink;
int wd__sparse_encode_sink(const wd_delta_src *src, double sparsity, const wd_sparse_sink *sink, uint64_t *out_k,
                           wd_codec_fidelity *fid);
/* Frees what an encoder allocated and zeroes *s. Accepts NULL. */
void wd__sparse_clear(wd_sparse_delta *s);
/* Validates arrays from outside (a file, the store): k <= n, indices in
 * range and strictly increasing. WD_EBADINPUT. */
int wd__sparse_check(const wd_sparse_delta *s);
/* Decodes onto elements [begin, begin + count) of the float32 base held in
 * buf: buf[i - begin] = f32(buf[i - begin] + values[j]) for indices[j] = i in
 * the range; every other element keeps its bits (-0.0 included). s must have
 * passed wd__sparse_check. WD_EUSAGE if the range leaves the tensor. */
int wd__sparse_apply(const wd_sparse_delta *s, uint64_t begin, float *buf, size_t count);

/* ---- quantized ------------------------------------------------------------ */

/* One float16 scale per row and one sign bit per element. */
typedef struct {
    uint64_t n;             /* elements */
    uint64_t n_cols;        /* elements per row; rows = n / n_cols */
    uint16_t *scales;       /* rows float16 bit patterns */
    uint8_t *packed_signs;  /* (n + 7) / 8 bytes: numpy packbits over the flat
                             * tensor, MSB first, 1 = delta >= 0 (-0.0 and NaN
                             * too), zero padding bits */
} wd_quant_delta;

/* The row layout deltatensors uses: rows = shape[0] for 2-D and higher (the
 * rest flattened into n_cols), one row of n for 1-D and 0-d. */
void wd__quant_layout(int ndim, const uint64_t *shape, uint64_t *rows, uint64_t *n_cols);

/* Encodes src as rows of n_cols: scale[r] = f16(f32(numpy_sum(|d_r|) /
 * f32(n_cols))) (np.mean in float32, then astype(float16) from float32),
 * sign bits as above. One pass over src. n must be > 0 and a multiple of
 * n_cols (deltatensors cannot read back what it writes for empty tensors):
 * WD_EUSAGE. *out owns its arrays (wd__quant_clear). */
int wd__quant_encode(wd_quant_delta *out, const wd_delta_src *src, uint64_t n_cols,
                     wd_codec_fidelity *fid);
void wd__quant_clear(wd_quant_delta *q);
/* n > 0, n_cols > 0 and divides n. WD_EBADINPUT. */
int wd__quant_check(const wd_quant_delta *q);
/* buf[i - begin] = f32(buf[i - begin] + (bit ? s : -s)), s = f32(scale[row]). */
int wd__quant_apply(const wd_quant_delta *q, uint64_t begin, float *buf, size_t count);

/* ---- int4 ----------------------------------------------------------------- */

/* Outliers in float16 plus 4-bit codes, two a byte, high nibble first.
 * layout 2 (format v2): packed holds a code for every one of the n elements
 * (outliers clipped, overwritten on decode). layout 1 (v1): codes for the
 * n - n_outliers non-outliers only, in index order. */
typedef struct {
    int layout;              /* 1 or 2 */
    uint64_t n;              /* elements */
    uint64_t n_outliers;
    unsigned idx_bytes;      /* 4 (int32, v2 when n < 2^31) or 8 (int64) */
    void *outlier_idx;       /* n_outliers strictly increasing positions */
    uint16_t *outlier_vals;  /* n_outliers float16: f16(delta) */
    uint16_t scale;          /* float16 */
    uint16_t zero_point;     /* float16 */
    uint8_t *packed;         /* wd__int4_packed_len() bytes */
} wd_int4_delta;

/* min(n, max(1, floor(n * outlier_fraction))) in float64 (0.3.0; 0.2.0 had no
 * cap and crashed below 2 elements). */
uint64_t wd__int4_n_outliers(uint64_t n, double outlier_fraction);
/* Bytes of packed: ceil(n / 2) for layout 2, ceil((n - n_outliers) / 2) for 1. */
uint64_t wd__int4_packed_len(int layout, uint64_t n, uint64_t n_outliers);
/* The index width deltatensors writes: v2 int32 when n < 2^31, else int64. */
unsigned wd__int4_idx_bytes(int layout, uint64_t n);

/* Encodes src with layout 1 or 2 (WD_EUSAGE otherwise, or for a negative or
 * NaN outlier_fraction). Outliers: the n_outliers largest |delta|. q_min,
 * q_max: min and max of the other deltas (as float64; 0 if none). Then
 *   layout 2 (0.3.0): zero_point = f16(q_min), scale = f16((q_max - q_min) / 15)
 *     in float64; if q_max - q_min < 1e-8 or scale is 0: scale = 1, codes 0;
 *     else code = clip(rint(f32(f32(d - f32(zero_point)) / f32(scale))), 0, 15)
 *     for all n deltas;
 *   layout 1 (0.2.0): the same scale and zero point (no scale == 0 test);
 *     codes for the non-outliers = clip(rint(f32(f32(f32(d - f32(q_min)) /
 *     f32(q_max - q_min)) * 15)), 0, 15).
 * Passes over src: 3 when the top-k cut's second pass is saved
 * (wd__topk_plan), else 4 (1 read when the tensor is cached). *out owns
 * its arrays. */
int wd__int4_encode(wd_int4_delta *out, const wd_delta_src *src, double outlier_fraction,
                    int layout, wd_codec_fidelity *fid);
/* Receives the layout-2 codes of elements [begin, end) (begin even, so no
 * byte is shared with another window): codes[0]'s high nibble is element
 * begin's code, (end - begin + 1) / 2 bytes, scratch for the callee until it
 * returns. Windows arrive in element order, on the encoder's calling thread
 * (the pool is idle meanwhile), and cover [0, n). e is the encoding: every
 * field final except packed, which is NULL. Returns 0 or a WD_E* code, which
 * the encoder returns. */
typedef int (*wd_int4_codes_fn)(void *ud, const wd_int4_delta *e, uint64_t begin, uint64_t end, uint8_t *codes);
/* wd__int4_encode with layout 2, the codes handed to fn window by window
 * instead of kept: a window is a batch of units (2 per worker slot), so
 * the codes take (src->chunk x units a batch) / 2 bytes at a time, whatever
 * n is; when src->chunk is even, windows start at multiples of it. *out
 * gets every field but packed (NULL); the same codes, outliers and fidelity
 * as wd__int4_encode. */
int wd__int4_encode_stream(wd_int4_delta *out, const wd_delta_src *src, double outlier_fraction,
                           wd_codec_fidelity *fid, wd_int4_codes_fn fn, void *ud);
void wd__int4_clear(wd_int4_delta *e);
/* layout 1 or 2, idx_bytes 4 or 8, n_outliers <= n, outlier_idx in range
 * and strictly increasing. WD_EBADINPUT. */
int wd__int4_check(const wd_int4_delta *e);
/* The decoded value of each code:
 *   lut[q] = f32(f32(f32(q / 15.0f) * f32(scale * 15)) + zero_point). */
void wd__int4_lut(float lut[16], uint16_t scale, uint16_t zero_point);
/* Decodes onto elements [begin, begin + count) of the base in buf:
 *   layout 2: buf[i] = f32(base[i] + lut[code i]); at an outlier j,
 *     f32(base[j] + f32(outlier_val)) instead;
 *   layout 1: code number i - (outliers before i); at an outlier j,
 *     f32(f32(base[j] + 0.0f) + f32(outlier_val)) (0.2.0/0.3.0 add a zero
 *     there first, which turns a -0.0 base into +0.0). */
int wd__int4_apply(const wd_int4_delta *e, uint64_t begin, float *buf, size_t count);
/* Layout 2's arithmetic on the n elements from begin in f, the one loop
 * behind wd__int4_apply and the repository's piece decoder: codes[0] is the
 * packed byte holding element begin's code; the m outliers of the range are
 * idx[0..m) (absolute positions, increasing, inside it: the caller checks
 * stored ones) with float16 values vals[0..m). */
void wd__int4_apply_l2(float *f, size_t n, uint64_t begin, const float lut[16], const uint8_t *codes,
                       const void *idx, unsigned idx_bytes, uint64_t m, const void *vals);
/* Layout 1's arithmetic on the n elements from begin in f, the one loop
 * behind wd__int4_apply and the piece decoder: codes are numbered over the
 * non-outliers only, code0 is the number of the range's first one (begin
 * minus the outliers before begin) and codes[0] the packed byte holding it;
 * idx, idx_bytes, m, vals as for wd__int4_apply_l2. An outlier adds 0.0f
 * first, then its value. */
void wd__int4_apply_l1(float *f, size_t n, uint64_t begin, const float lut[16], const uint8_t *codes, uint64_t code0,
                       const void *idx, unsigned idx_bytes, uint64_t m, const void *vals);
/* wd__int4_apply of a layout-2 e whose codes are elsewhere (a window of
 * wd__int4_encode_stream): codes[0] is the packed byte holding element
 * begin's code. [begin, begin + count) must lie within e->n. */
void wd__int4_apply_codes(const wd_int4_delta *e, uint64_t begin, float *buf, size_t count, const uint8_t *codes);

#endif
