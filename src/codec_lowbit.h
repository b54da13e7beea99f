/*
 * codec_lowbit.h - wdrepo's own lossy delta codec (commit --strategy
 * lowbit): one uniform round-to-nearest step per tensor, set relative to
 * the tensor's own delta RMS by a quality knob and the tensor's class,
 * codes stored as zigzag int16 whose byte planes the chunk store entropy
 * codes (rANS where it gains), and one float16 gain per segment (a row, or
 * a fixed run of a 1-D tensor) that restores the delta's own projection, so
 * the dead zone around 0 does not shrink the delta.
 *
 * Decoding element i of segment s: d'_i = f32(q_i * f32(step * gain_s)).
 * Not a deltatensors strategy: a .wdelta file cannot hold it.
 */
#ifndef WD_CODEC_LOWBIT_H
#define WD_CODEC_LOWBIT_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/* beside wdelta.h's WD__WS_SPARSE..WD__WS_INT4, never written to a file */
#define WD__WS_LOWBIT 16

#define WD_LOWBIT_DEFAULT_QUALITY 4.0
#define WD_LOWBIT_QUALITY_MIN 0.25
#define WD_LOWBIT_QUALITY_MAX 16.0
/* Segments (gain units) have at least / at most this many elements. */
#define WD_LOWBIT_SEG_MIN 256u
#define WD_LOWBIT_SEG_MAX 65536u
/* Largest |code|: codes are zigzagged into 16 bits. */
#define WD_LOWBIT_QMAX 32767

/* How a tensor is treated. */
enum {
    WD_LOWBIT_PLAIN = 0, /* attention/MLP matrices and the like */
    WD_LOWBIT_SENSITIVE, /* embeddings and the output head */
    WD_LOWBIT_VECTOR     /* 1-D and 0-d: norms, biases */
};

/* The class of a tensor from its name and dimensions. */
int wd__lowbit_class(const char *name, int ndim);
/* The segment length for a tensor of this shape: its row length clamped to
 * [WD_LOWBIT_SEG_MIN, WD_LOWBIT_SEG_MAX]. */
uint64_t wd__lowbit_seg(int ndim, const uint64_t *shape, uint64_t n);
/* The step relative to the delta's RMS: 2^(2 - quality) for plain tensors,
 * a quarter of that for sensitive ones, 1/64 for vectors. */
double wd__lowbit_rel_step(double quality, int cls);

/* Receives the codes in element order, count at a time. */
typedef int (*wd_lowbit_emit_fn)(void *ud, const uint16_t *codes, size_t count);

typedef struct {
    float step;       /* the tensor's step */
    uint64_t seg;     /* elements per segment */
    uint64_t n_gains; /* ceil(n / seg) */
    uint16_t *gains;  /* n_gains float16 (malloc'd; the caller frees) */
} wd_lowbit_result;

/* Encodes src in three passes (RMS and max; codes and per-segment sums;
 * the fidelity of what a decoder gives). Codes are handed to emit in order.
 * Memory: per worker slot of the batch, one unit of codes (2 bytes an
 * element, a unit at most the source's chunk), 24 bytes per segment, the
 * gains. The same codes and gains for any pool size. */
int wd__lowbit_encode(const wd_delta_src *src, double rel_step, uint64_t seg, wd_lowbit_emit_fn emit, void *ud,
                      wd_lowbit_result *out, wd_codec_fidelity *fid);

/* The code of one delta at step: rint(d / step) clipped to
 * +-WD_LOWBIT_QMAX (NaN: 0), zigzagged. */
uint16_t wd__lowbit_code(float d, float step);

/* Adds the decoded deltas of elements [begin, begin + count) to buf:
 * codes[0 .. count) are those elements' codes, gains[0 ..] the gains of
 * segments begin / seg onwards. Any bits decode to some value (no check
 * needed beyond the lengths, which the caller sizes). */
void wd__lowbit_apply(const uint16_t *codes, const uint16_t *gains, uint64_t begin, size_t count, uint64_t seg,
                      float step, float *buf);

#endif
