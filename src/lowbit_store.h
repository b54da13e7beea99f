/*
 * lowbit_store.h - a tensor encoded with the lowbit codec (codec_lowbit.h)
 * and stored as two chunk streams: the codes (int16 zigzag, byte planes
 * entropy coded by the chunk store) and the segment gains (float16).
 */
#ifndef WD_LOWBIT_STORE_H
#define WD_LOWBIT_STORE_H

#include "codec.h"
#include "lossy_encode.h"

/* Encodes ds (the delta of tensor name, ndim, shape) at quality and fills
 * L's parameters (step, segment length in n_cols) and arrays (packed:
 * codes, scales: gains). Memory: the codec's, plus one array chunk being
 * compressed. */
int wd__lowbit_store(const wd_lossy_sink *sink, wd_lossy *L, const wd_delta_src *ds, const char *name, int ndim,
                     const uint64_t *shape, double quality, wd_codec_fidelity *fid);

#endif
