/*
 * codec_lowbit.c - the lowbit codec (see codec_lowbit.h): why each choice.
 *
 * One step per tensor, not one scale per group: with entropy-coded codes a
 * constant step is what minimises squared error at a given rate, and it
 * costs no per-group scales (16 bits per 128 elements would be a fifth of
 * the budget at the smallest settings). The step follows the tensor's own
 * RMS, so the same quality means the same signal-to-noise on any model.
 *
 * Round to nearest leaves small deltas at 0, which shrinks the delta; the
 * per-segment gain ||d||^2 / <d', d> scales the decoded segment back so its
 * projection on d is d's own, which (measured on real fine-tunes) costs far
 * less loss than the shrunken delta at the same reconstruction error.
 *
 * Determinism: units are whole segments at fixed boundaries, every unit's
 * sums are kept apart and merged in unit order, so the output does not
 * depend on the pool.
 */
#include "codec_lowbit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "half.h"

int wd__lowbit_class(const char *name, int ndim)
{
    if (ndim <= 1)
        return WD_LOWBIT_VECTOR;
    /* Token and position embeddings and the output head map between
     * tokens and the hidden state: every token's row matters on its own,
     * and they are a few percent of the parameters. */
    static const char *const sensitive[] = {"embed", "lm_head", "wte", "wpe", "tok_emb", "word_emb", "output.weight"};
    for (size_t i = 0; i < sizeof sensitive / sizeof *sensitive; i++)
        if (strstr(name, sensitive[i]))
            return WD_LOWBIT_SENSITIVE;
    return WD_LOWBIT_PLAIN;
}

uint64_t wd__lowbit_seg(int ndim, const uint64_t *shape, uint64_t n)
{
    uint64_t cols = n;
    if (ndim >= 2 && shape[0])
        cols = n / shape[0];
    if (cols < WD_LOWBIT_SEG_MIN)
        cols = WD_LOWBIT_SEG_MIN;
    if (cols > WD_LOWBIT_SEG_MAX)
        cols = WD_LOWBIT_SEG_MAX;
    return cols;
}

double wd__lowbit_rel_step(double quality, int cls)
{
    double rel = exp2(2.0 - quality);
    if (cls == WD_LOWBIT_SENSITIVE)
        rel /= 4;
    else if (cls == WD_LOWBIT_VECTOR)
        rel /= 64;
    return rel;
}

uint16_t wd__lowbit_code(float d, float step)
{
    float x = rintf(d / step);
    int32_t q;
    if (!(x == x))
        q = 0;
    else if (x > (float)WD_LOWBIT_QMAX)
        q = WD_LOWBIT_QMAX;
    else if (x < -(float)WD_LOWBIT_QMAX)
        q = -WD_LOWBIT_QMAX;
    else
        q = (int32_t)x;
    return (uint16_t)(((uint32_t)q << 1) ^ (uint32_t)(q >> 31));
}

static inline float unzig(uint16_t z)
{
    return (float)((int32_t)(z >> 1) ^ -(int32_t)(z & 1));
}

void wd__lowbit_apply(const uint16_t *codes, const uint16_t *gains, uint64_t begin, size_t count, uint64_t seg,
                      float step, float *buf)
{
    uint64_t s = begin / seg, s0 = s, off = begin - s * seg;
    for (size_t i = 0; i < count; s++) {
        float m = step * wd__f16_to_f32(gains[s - s0]);
        size_t run = (size_t)(seg - off < count - i ? seg - off : count - i);
        for (size_t k = 0; k < run; k++)
            buf[i + k] = buf[i + k] + unzig(codes[i + k]) * m;
        i += run;
        off = 0;
    }
}

/* ---- Encoder -------------------------------------------------------------- */

typedef struct {
    /* pass 1, per default unit */
    double *sq;
    float *amax;
    /* passes 2 and 3 */
    uint64_t seg, unit; /* unit: elements per unit, a multiple of seg */
    uint64_t n;
    float step;
    double *sdd, *sqd, *sqq; /* per segment: sum d^2, sum d' d, sum d'^2 (before the gain) */
    uint16_t **codes;        /* per batch slot */
    size_t u0;
    const uint16_t *gains;
    double *err2, *emax;     /* pass 3, per unit */
} lb_ctx;

static int stats_fn(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    lb_ctx *c = p;
    (void)worker;
    (void)begin;
    double s = 0;
    float m = 0;
    for (size_t i = 0; i < count; i++) {
        float a = fabsf(d[i]);
        if (isfinite(a)) {
            s += (double)d[i] * d[i];
            if (a > m)
                m = a;
        }
    }
    c->sq[u] = s;
    c->amax[u] = m;
    return 0;
}

static void unit_range(const void *rctx, size_t u, uint64_t *begin, size_t *count)
{
    const lb_ctx *c = rctx;
    uint64_t b = (uint64_t)u * c->unit;
    *begin = b;
    *count = (size_t)(c->n - b < c->unit ? c->n - b : c->unit);
}

static int code_fn(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    lb_ctx *c = p;
    (void)worker;
    uint16_t *out = c->codes[u - c->u0];
    float step = c->step;
    for (size_t i = 0; i < count;) {
        uint64_t s = (begin + i) / c->seg;
        size_t run = (size_t)((s + 1) * c->seg - (begin + i));
        if (run > count - i)
            run = count - i;
        double dd = 0, qd = 0, qq = 0;
        for (size_t k = i; k < i + run; k++) {
            uint16_t z = wd__lowbit_code(d[k], step);
            out[k] = z;
            float v = unzig(z) * step;
            if (isfinite(d[k])) {
                dd += (double)d[k] * d[k];
                qd += (double)v * d[k];
            }
            qq += (double)v * v;
        }
        c->sdd[s] = dd;
        c->sqd[s] = qd;
        c->sqq[s] = qq;
        i += run;
    }
    return 0;
}

static int check_fn(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    lb_ctx *c = p;
    (void)worker;
    double e2 = 0, emax = 0;
    for (size_t i = 0; i < count;) {
        uint64_t s = (begin + i) / c->seg;
        size_t run = (size_t)((s + 1) * c->seg - (begin + i));
        if (run > count - i)
            run = count - i;
        float m = c->step * wd__f16_to_f32(c->gains[s]);
        for (size_t k = i; k < i + run; k++) {
            float v = unzig(wd__lowbit_code(d[k], c->step)) * m;
            double e = (double)v - (double)d[k];
            e2 += e * e;
            if (fabs(e) > emax || e != e)
                emax = fabs(e);
        }
        i += run;
    }
    c->err2[u] = e2;
    c->emax[u] = emax;
    return 0;
}

/* The gain of one segment: its projection restored; 1 where there is
 * nothing to restore (all codes 0, or a degenerate segment). */
static uint16_t segment_gain(double dd, double qd, double qq)
{
    if (!(qd > 0) || !(qq > 0) || !isfinite(dd))
        return 0x3c00u;
    double g = dd / qd;
    /* A gain far from 1 means a few codes stand for a segment mostly left
     * at 0: scaling them up that much would add more error than it takes. */
    if (g > 2.0)
        g = 2.0;
    return wd__f64_to_f16(g);
}

int wd__lowbit_encode(const wd_delta_src *src, double rel_step, uint64_t seg, wd_lowbit_emit_fn emit, void *ud,
                      wd_lowbit_result *out, wd_codec_fidelity *fid)
{
    memset(out, 0, sizeof *out);
    if (!src || !(rel_step > 0) || !isfinite(rel_step) || seg == 0)
        return wd__error(WD_EUSAGE, "lowbit: bad parameters");
    wd__reader r;
    lb_ctx c;
    memset(&c, 0, sizeof c);
    uint64_t n = src->n;
    int rc = wd__reader_init(&r, src);
    size_t batch = wd__reader_batch(&r), units = wd__reader_units(&r);
    c.n = n;
    c.seg = seg;
    out->seg = seg;
    out->n_gains = n ? (n + seg - 1) / seg : 0;
    if (rc)
        goto done;
    if (out->n_gains > SIZE_MAX / 32) {
        rc = WD_NOMEM();
        goto done;
    }
    c.sq = calloc(units + 1, sizeof *c.sq);
    c.amax = calloc(units + 1, sizeof *c.amax);
    c.sdd = malloc((size_t)out->n_gains * sizeof(double) + 1);
    c.sqd = malloc((size_t)out->n_gains * sizeof(double) + 1);
    c.sqq = malloc((size_t)out->n_gains * sizeof(double) + 1);
    out->gains = malloc((size_t)out->n_gains * 2 + 1);
    if (!c.sq || !c.amax || !c.sdd || !c.sqd || !c.sqq || !out->gains) {
        rc = WD_NOMEM();
        goto done;
    }

    /* Pass 1: RMS and the largest finite |d|. */
    if ((rc = wd__reader_run(&r, 0, units, NULL, NULL, stats_fn, &c)))
        goto done;
    double sq = 0;
    float amax = 0;
    for (size_t u = 0; u < units; u++) {
        sq += c.sq[u];
        if (c.amax[u] > amax)
            amax = c.amax[u];
    }
    double rms = n ? sqrt(sq / (double)n) : 0;
    double step = rel_step * rms;
    /* Never clip: the step grows until the largest delta has a code. */
    if (step < (double)amax / WD_LOWBIT_QMAX)
        step = (double)amax / WD_LOWBIT_QMAX * (1 + 1e-6);
    if (!(step >= FLT_MIN) || !(step <= FLT_MAX))
        step = step > FLT_MAX ? FLT_MAX : 1.0;
    c.step = out->step = (float)step;

    /* Pass 2: codes out in order; per-segment sums. */
    c.unit = (uint64_t)(r.chunk / seg) * seg;
    size_t cunits = n ? (size_t)((n + c.unit - 1) / c.unit) : 0;
    if (!(c.codes = calloc(batch, sizeof *c.codes))) {
        rc = WD_NOMEM();
        goto done;
    }
    for (size_t i = 0; i < batch && i < cunits; i++)
        if (!(c.codes[i] = malloc((size_t)(n < c.unit ? n : c.unit) * sizeof(uint16_t)))) {
            rc = WD_NOMEM();
            goto done;
        }
    for (size_t u0 = 0; !rc && u0 < cunits; u0 += batch) {
        size_t u1 = cunits - u0 < batch ? cunits : u0 + batch;
        c.u0 = u0;
        if ((rc = wd__reader_run(&r, u0, u1, unit_range, &c, code_fn, &c)))
            break;
        for (size_t u = u0; !rc && u < u1; u++) {
            uint64_t b = (uint64_t)u * c.unit;
            rc = emit(ud, c.codes[u - u0], (size_t)(n - b < c.unit ? n - b : c.unit));
        }
    }
    if (rc)
        goto done;
    double norm2 = 0;
    for (uint64_t s = 0; s < out->n_gains; s++) {
        out->gains[s] = segment_gain(c.sdd[s], c.sqd[s], c.sqq[s]);
        norm2 += c.sdd[s];
    }

    /* Pass 3: what a decoder gives, element by element. */
    c.gains = out->gains;
    c.err2 = calloc(cunits + 1, sizeof *c.err2);
    c.emax = calloc(cunits + 1, sizeof *c.emax);
    if (!c.err2 || !c.emax) {
        rc = WD_NOMEM();
        goto done;
    }
    if ((rc = wd__reader_run(&r, 0, cunits, unit_range, &c, check_fn, &c)))
        goto done;
    double err2 = 0, emax = 0;
    for (size_t u = 0; u < cunits; u++) {
        err2 += c.err2[u];
        if (c.emax[u] > emax || c.emax[u] != c.emax[u])
            emax = c.emax[u];
    }
    wd__fidelity_finish(fid, norm2, err2, emax);
done:
    for (size_t i = 0; c.codes && i < batch; i++)
        free(c.codes[i]);
    free(c.codes);
    free(c.sq);
    free(c.amax);
    free(c.sdd);
    free(c.sqd);
    free(c.sqq);
    free(c.err2);
    free(c.emax);
    wd__reader_free(&r);
    if (rc) {
        free(out->gains);
        out->gains = NULL;
    }
    return rc;
}
