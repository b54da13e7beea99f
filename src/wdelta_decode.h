/*
 * wdelta_decode.h - decoding one .wdelta tensor's delta piece by piece, for
 * load-delta: memory is bounded by a piece, never a whole array.
 */
#ifndef WD_WDELTA_DECODE_H
#define WD_WDELTA_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "wdelta.h"

enum {
    WD__DEC_PIECE = 1 << 18, /* most elements one wd__wdelta_dec_apply takes (a multiple of 8) */
    WD__DEC_BLOCK = 1 << 16, /* sorted index entries read from the file at a time */
};

/* Reads a tensor's arrays forward, one piece of the tensor at a time. Sorted
 * entries (sparse indices/values, int4 outlier_idx/outlier_vals) come through
 * a window of up to WD__DEC_BLOCK entries that only moves forward (it
 * starts small after a seek and doubles, so that a piece that needs a few
 * entries does not read a whole block); packed bits, codes and row
 * scales are read for the piece only. */
typedef struct {
    const wd__wdelta *d;
    const wd__wdelta_tensor *t;
    const wd__wdelta_field *fi, *fv; /* sorted entries: index and value arrays */
    int ifield;
    unsigned isz, vsz;
    uint64_t total, fetched, used; /* entries: in the file, read, consumed */
    int64_t prev;                  /* last index read, for the order check */
    uint8_t *bi, *bv;              /* the window */
    size_t blen, bpos;
    size_t grow;                   /* entries the next refill reads (doubles up to WD__DEC_BLOCK) */
    int64_t *pi;                   /* the piece's entries, relative to its origin */
    void *pv;
    size_t m;
    uint8_t *bytes;     /* the piece's packed signs or codes */
    uint16_t *scales;   /* quantized: the piece's rows */
    uint16_t scale, zero_point;
} wd__wdelta_dec;

/* Prepares decoding t of d (which must outlive td). */
int wd__wdelta_dec_init(wd__wdelta_dec *td, const wd__wdelta *d, const wd__wdelta_tensor *t);
void wd__wdelta_dec_free(wd__wdelta_dec *td);

/* Repositions td so that the next piece may start at element b (a multiple
 * of 8) instead of where the last one ended, so that one tensor's pieces can
 * be decoded by several decoders, in any order. The sorted entries are
 * found by binary search, which assumes they are sorted: the order is only
 * checked inside each piece, so a caller decoding a tensor in pieces must
 * check that the pieces' entry ranges [start, td->used after the piece)
 * chain up from 0 to the entry count, and the next apply's first entry is
 * td->used as set here. */
int wd__wdelta_dec_seek(wd__wdelta_dec *td, uint64_t b);

/* Adds the delta of elements [b, b + cnt) to buf, which holds their float32
 * base values; b is a multiple of 8, cnt at most WD__DEC_PIECE, and pieces
 * come in increasing order. With d == NULL the delta goes in place
 * (deltatensors' streaming reconstruction: base + value where something is
 * stored). With d (cnt floats of scratch) the result is base + decompress()
 * instead, as deltatensors' load_delta computes it: the decoded delta is
 * built in d from +0.0 (sparse values assigned, int4 added onto zeros) and
 * then added; quantized gives the same bits either way. */
int wd__wdelta_dec_apply(wd__wdelta_dec *td, uint64_t b, size_t cnt, float *buf, float *d);

#endif
