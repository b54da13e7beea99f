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

/* Low rank: at most this many components, found among this many random
 * directions (the oversampling makes the top ones accurate). */
#define WD_LOWBIT_RANK_MAX 32
#define WD_LOWBIT_SKETCH 40
/* A matrix takes a low-rank part only with rows and columns in these
 * bounds: the sketch holds 8 x WD_LOWBIT_SKETCH bytes a column per worker. */
#define WD_LOWBIT_LR_MIN 256u
#define WD_LOWBIT_LR_MAX_COLS 16384u

/* Receives the codes in element order, count at a time. */
typedef int (*wd_lowbit_emit_fn)(void *ud, const uint16_t *codes, size_t count);

/* What to encode: rows x cols is the matrix view of the tensor (the
 * low-rank part needs class PLAIN and both in [WD_LOWBIT_LR_MIN,
 * WD_LOWBIT_LR_MAX_COLS]); lowrank 0 keeps it out. */
typedef struct {
    double rel_step;
    uint64_t seg;
    uint64_t rows, cols;
    int lowrank;
} wd_lowbit_plan;

/* The decoded low-rank part L = A V^T: A's element (i, k) is
 * f32(acode * sa[k]), V's (j, k) f32(vcode * sv); L(i, j) sums k = 0 ..
 * rank - 1 in order from 0.0f in float32. */
typedef struct {
    int rank;               /* 0: none */
    uint64_t cols;          /* = the segment length */
    float sv;
    float sa[WD_LOWBIT_RANK_MAX];
    const uint16_t *vcodes; /* rank x cols, component by component */
    const uint16_t *acodes; /* rows x rank, row by row (from the first row decoded) */
} wd_lowbit_lr;

typedef struct {
    float step;       /* the tensor's step */
    uint64_t seg;     /* elements per segment */
    uint64_t n_gains; /* ceil(n / seg) */
    uint16_t *gains;  /* n_gains float16 (malloc'd; the caller frees) */
    int rank;         /* low-rank components kept (0: none) */
    float sv, sa[WD_LOWBIT_RANK_MAX];
    uint16_t *vcodes; /* rank x cols (malloc'd) */
    uint16_t *acodes; /* rows x rank (malloc'd) */
} wd_lowbit_result;

/* Encodes src: passes for the RMS and largest delta, for the low-rank part
 * (two power passes and a projection; only with p->lowrank), the codes with
 * per-segment sums, and the fidelity of what a decoder gives. Codes go to
 * emit in order. Memory: per worker slot of the batch one unit of codes (2
 * bytes an element, a unit at most the source's chunk) and a sketch of
 * cols x WD_LOWBIT_SKETCH doubles, 24 bytes per segment, the gains and the
 * factors ((rows + cols) x rank codes). The same output for any pool. */
int wd__lowbit_encode(const wd_delta_src *src, const wd_lowbit_plan *p, wd_lowbit_emit_fn emit, void *ud,
                      wd_lowbit_result *out, wd_codec_fidelity *fid);
void wd__lowbit_result_free(wd_lowbit_result *r);

/* The code of one delta at step: rint(d / step) clipped to
 * +-WD_LOWBIT_QMAX (NaN: 0), zigzagged. */
uint16_t wd__lowbit_code(float d, float step);

/* Adds the decoded deltas of elements [begin, begin + count) to buf:
 * codes[0 .. count) are those elements' codes, gains[0 ..] the gains of
 * segments begin / seg onwards; lr (NULL or rank 0: none) the low-rank
 * part, its acodes from row begin / cols, which needs scratch of
 * (rank + 1) x cols floats. Any bits decode to some value. */
void wd__lowbit_apply(const uint16_t *codes, const uint16_t *gains, uint64_t begin, size_t count, uint64_t seg,
                      float step, const wd_lowbit_lr *lr, float *scratch, float *buf);

#endif
