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
 * Fine-tune deltas of attention and MLP matrices are strongly low rank: a
 * few components hold most of their energy, so a rank-r part A V^T (both
 * factors coded like the residual, at a quarter of their own RMS) leaves a
 * residual that costs far fewer bits at the same step. V comes from a
 * randomized subspace iteration that streams over row blocks (two passes
 * of Z = D^T D Z, then the k x k problem solved by Jacobi rotations); the
 * rank is the one that minimises the estimated bits (factors at their
 * measured cost plus the residual's Gaussian entropy at the step), so it
 * follows each matrix's spectrum.
 *
 * Determinism: units are whole segments (whole rows with a low-rank part)
 * at fixed boundaries, every unit's sums are kept apart and merged in unit
 * order, so the output does not depend on the pool.
 */
#include "codec_lowbit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

/* The low-rank part of one row into row[0 .. cols): vd holds rank x cols
 * decoded V values, ad the row's decoded A values. */
static void lr_row(float *row, const float *vd, const float *ad, int rank, uint64_t cols)
{
    for (uint64_t j = 0; j < cols; j++)
        row[j] = 0.0f;
    for (int k = 0; k < rank; k++) {
        const float *v = vd + (size_t)k * cols;
        float a = ad[k];
        uint64_t j = 0;
#if defined(__SSE2__)
        /* the same two roundings per element as the scalar loop */
        __m128 av = _mm_set1_ps(a);
        for (; j + 4 <= cols; j += 4)
            _mm_storeu_ps(row + j, _mm_add_ps(_mm_loadu_ps(row + j), _mm_mul_ps(av, _mm_loadu_ps(v + j))));
#endif
        for (; j < cols; j++)
            row[j] = row[j] + a * v[j];
    }
}

/* buf[k] += (lr ? lr[k] : 0) + q(codes[k]) * m for k < run; without lr the
 * bare sum buf[k] + q * m. */
static void add_codes(float *buf, const uint16_t *codes, const float *lr, float m, size_t run)
{
    size_t k = 0;
#if defined(__SSE2__)
    __m128 mv = _mm_set1_ps(m);
    __m128i one = _mm_set1_epi32(1), zero = _mm_setzero_si128();
    for (; k + 4 <= run; k += 4) {
        __m128i z = _mm_unpacklo_epi16(_mm_loadl_epi64((const __m128i *)(const void *)(codes + k)), zero);
        __m128i q = _mm_xor_si128(_mm_srli_epi32(z, 1), _mm_sub_epi32(zero, _mm_and_si128(z, one)));
        __m128 v = _mm_mul_ps(_mm_cvtepi32_ps(q), mv);
        if (lr)
            v = _mm_add_ps(_mm_loadu_ps(lr + k), v);
        _mm_storeu_ps(buf + k, _mm_add_ps(_mm_loadu_ps(buf + k), v));
    }
#endif
    for (; k < run; k++) {
        float v = unzig(codes[k]) * m;
        buf[k] = buf[k] + (lr ? lr[k] + v : v);
    }
}

static void decode_v(float *vd, const wd_lowbit_lr *lr)
{
    for (size_t i = 0; i < (size_t)lr->rank * lr->cols; i++)
        vd[i] = unzig(lr->vcodes[i]) * lr->sv;
}

void wd__lowbit_apply(const uint16_t *codes, const uint16_t *gains, uint64_t begin, size_t count, uint64_t seg,
                      float step, const wd_lowbit_lr *lr, float *scratch, float *buf)
{
    uint64_t s = begin / seg, s0 = s, off = begin - s * seg;
    int rank = lr ? lr->rank : 0;
    float *vd = scratch, *row = rank ? scratch + (size_t)rank * lr->cols : NULL;
    if (rank)
        decode_v(vd, lr);
    for (size_t i = 0; i < count; s++) {
        float m = step * wd__f16_to_f32(gains[s - s0]);
        size_t run = (size_t)(seg - off < count - i ? seg - off : count - i);
        if (rank) {
            /* seg == cols: segment s is row s */
            float ad[WD_LOWBIT_RANK_MAX];
            for (int k = 0; k < rank; k++)
                ad[k] = unzig(lr->acodes[(size_t)(s - s0) * (size_t)rank + (size_t)k]) * lr->sa[k];
            lr_row(row, vd, ad, rank, lr->cols);
            add_codes(buf + i, codes + i, row + off, m, run);
        } else {
            add_codes(buf + i, codes + i, NULL, m, run);
        }
        i += run;
        off = 0;
    }
}

/* ---- Encoder -------------------------------------------------------------- */

#define K WD_LOWBIT_SKETCH

typedef struct {
    /* pass 1, per default unit */
    double *sq;
    float *amax;
    uint64_t seg, unit; /* unit: elements per unit, a multiple of seg */
    uint64_t n, cols;
    float step;
    /* low rank */
    int rank;
    const double *z;     /* cols x K, the current basis (row j: K values) */
    double **zpart;      /* per batch slot: cols x K partial sums, or K x K */
    float *vd;           /* rank x cols decoded V */
    float sa[WD_LOWBIT_RANK_MAX];
    double inv_vn[WD_LOWBIT_RANK_MAX]; /* 1 / ||vd_k||^2 */
    uint16_t *acodes;    /* rows x rank */
    float **rowbuf;      /* per worker: cols floats */
    /* passes 2 and 3 */
    double *sdd, *sqd, *sqq; /* per segment: sum r^2, sum r' r, sum r'^2 (before the gain) */
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

static double fin(float x)
{
    return isfinite(x) ? (double)x : 0.0;
}

/* Z += d^T (d Z) over the unit's rows (the power step on D^T D). */
/* y = row Z: one row of the delta times the sketch's K columns. */
static void row_times_z(const lb_ctx *c, const float *row, double y[K])
{
    for (int k = 0; k < K; k++)
        y[k] = 0;
    for (uint64_t j = 0; j < c->cols; j++) {
        double x = fin(row[j]);
        const double *zj = c->z + j * K;
        for (int k = 0; k < K; k++)
            y[k] += x * zj[k];
    }
}

static int power_fn(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    lb_ctx *c = p;
    (void)worker;
    (void)begin;
    double *zp = c->zpart[u - c->u0];
    memset(zp, 0, (size_t)c->cols * K * sizeof *zp);
    for (size_t r0 = 0; r0 < count; r0 += c->cols) {
        const float *row = d + r0;
        double y[K];
        row_times_z(c, row, y);
        for (uint64_t j = 0; j < c->cols; j++) {
            double x = fin(row[j]);
            double *o = zp + j * K;
            for (int k = 0; k < K; k++)
                o[k] += x * y[k];
        }
    }
    return 0;
}

/* G += (d Z)^T (d Z) over the unit's rows. */
static int gram_fn(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    lb_ctx *c = p;
    (void)worker;
    (void)begin;
    double *g = c->zpart[u - c->u0];
    memset(g, 0, K * K * sizeof *g);
    for (size_t r0 = 0; r0 < count; r0 += c->cols) {
        const float *row = d + r0;
        double y[K];
        row_times_z(c, row, y);
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++)
                g[a * K + b] += y[a] * y[b];
    }
    return 0;
}

/* Orthonormal columns by modified Gram-Schmidt, twice; a column that
 * vanishes becomes 0. */
static void orthonormalize(double *z, uint64_t cols)
{
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < K; k++) {
            for (int i = 0; i < k; i++) {
                double dot = 0;
                for (uint64_t j = 0; j < cols; j++)
                    dot += z[j * K + i] * z[j * K + k];
                for (uint64_t j = 0; j < cols; j++)
                    z[j * K + k] -= dot * z[j * K + i];
            }
            double nn = 0;
            for (uint64_t j = 0; j < cols; j++)
                nn += z[j * K + k] * z[j * K + k];
            double inv = nn > 1e-300 ? 1 / sqrt(nn) : 0;
            for (uint64_t j = 0; j < cols; j++)
                z[j * K + k] *= inv;
        }
}

/* Eigen-decomposition of the symmetric K x K matrix a by cyclic Jacobi
 * rotations: a ends diagonal (the eigenvalues), w holds the eigenvectors
 * as columns. */
static void jacobi(double *a, double *w)
{
    for (int i = 0; i < K * K; i++)
        w[i] = i % (K + 1) == 0;
    for (int sweep = 0; sweep < 60; sweep++) {
        double off = 0, tot = 0;
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) {
                tot += a[i * K + j] * a[i * K + j];
                if (i != j)
                    off += a[i * K + j] * a[i * K + j];
            }
        if (off <= 1e-30 * tot || tot == 0)
            break;
        for (int p = 0; p < K; p++)
            for (int q = p + 1; q < K; q++) {
                double apq = a[p * K + q];
                if (fabs(apq) < 1e-300)
                    continue;
                double theta = (a[q * K + q] - a[p * K + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double cs = 1 / sqrt(t * t + 1), sn = t * cs;
                for (int k = 0; k < K; k++) {
                    double akp = a[k * K + p], akq = a[k * K + q];
                    a[k * K + p] = cs * akp - sn * akq;
                    a[k * K + q] = sn * akp + cs * akq;
                }
                for (int k = 0; k < K; k++) {
                    double apk = a[p * K + k], aqk = a[q * K + k];
                    a[p * K + k] = cs * apk - sn * aqk;
                    a[q * K + k] = sn * apk + cs * aqk;
                }
                for (int k = 0; k < K; k++) {
                    double wkp = w[k * K + p], wkq = w[k * K + q];
                    w[k * K + p] = cs * wkp - sn * wkq;
                    w[k * K + q] = sn * wkp + cs * wkq;
                }
            }
    }
}

/* Entropy in bits of N(0, x^2) rounded to integers. */
static double gauss_bits(double x)
{
    if (x < 1e-3)
        return 0;
    if (x > 64)
        return 2.047 + log2(x);
    double h = 0;
    int lim = (int)(8 * x) + 2;
    for (int j = -lim; j <= lim; j++) {
        double pj = 0.5 * (erfc(-(j + 0.5) / (x * M_SQRT2)) - erfc(-(j - 0.5) / (x * M_SQRT2)));
        if (pj > 1e-300)
            h -= pj * log2(pj);
    }
    return h;
}

/* Bits a factor value costs at a quarter of its RMS (order-0 coded). */
#define FACTOR_REL_STEP 0.25
#define FACTOR_BITS 4.2

/* Rank minimising factors' bits + the residual's at the step. */
static int choose_rank(const double *lam, double e0, uint64_t rows, uint64_t cols, double step)
{
    double mn = (double)rows * (double)cols, best = mn * gauss_bits(sqrt(e0 / mn) / step);
    int r_best = 0;
    double e = e0;
    for (int r = 1; r <= WD_LOWBIT_RANK_MAX; r++) {
        e -= lam[r - 1];
        if (!(lam[r - 1] > 0))
            break;
        double bits = r * (double)(rows + cols) * FACTOR_BITS + mn * gauss_bits(sqrt((e > 0 ? e : 0) / mn) / step);
        if (bits < best) {
            best = bits;
            r_best = r;
        }
    }
    return r_best;
}

/* The row's decoded A values: the projection of d on each decoded V
 * direction, coded at sa[k]. Codes go to ac (NULL: only decoded). */
static void row_factors(const lb_ctx *c, const float *d, float *ad, uint16_t *ac, const uint16_t *given)
{
    for (int k = 0; k < c->rank; k++) {
        uint16_t z;
        if (given) {
            z = given[k];
        } else {
            const float *v = c->vd + (size_t)k * c->cols;
            double dot = 0;
            for (uint64_t j = 0; j < c->cols; j++)
                dot += fin(d[j]) * v[j];
            z = wd__lowbit_code((float)(dot * c->inv_vn[k]), c->sa[k]);
        }
        if (ac)
            ac[k] = z;
        ad[k] = unzig(z) * c->sa[k];
    }
}

static int code_fn(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    lb_ctx *c = p;
    uint16_t *out = c->codes[u - c->u0];
    float step = c->step;
    float *lr = c->rank ? c->rowbuf[worker] : NULL;
    for (size_t i = 0; i < count;) {
        uint64_t s = (begin + i) / c->seg;
        size_t run = (size_t)((s + 1) * c->seg - (begin + i));
        if (run > count - i)
            run = count - i;
        if (lr) { /* seg == cols: whole rows */
            float ad[WD_LOWBIT_RANK_MAX];
            row_factors(c, d + i, ad, c->acodes + s * (uint64_t)c->rank, NULL);
            lr_row(lr, c->vd, ad, c->rank, c->cols);
        }
        double dd = 0, qd = 0, qq = 0;
        for (size_t k = i; k < i + run; k++) {
            float r = lr ? d[k] - lr[k - i] : d[k];
            uint16_t z = wd__lowbit_code(r, step);
            out[k] = z;
            float v = unzig(z) * step;
            if (isfinite(r)) {
                dd += (double)r * r;
                qd += (double)v * r;
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
    double e2 = 0, emax = 0;
    float *lr = c->rank ? c->rowbuf[worker] : NULL;
    for (size_t i = 0; i < count;) {
        uint64_t s = (begin + i) / c->seg;
        size_t run = (size_t)((s + 1) * c->seg - (begin + i));
        if (run > count - i)
            run = count - i;
        float m = c->step * wd__f16_to_f32(c->gains[s]);
        if (lr) {
            float ad[WD_LOWBIT_RANK_MAX];
            row_factors(c, d + i, ad, NULL, c->acodes + s * (uint64_t)c->rank);
            lr_row(lr, c->vd, ad, c->rank, c->cols);
        }
        for (size_t k = i; k < i + run; k++) {
            float r = lr ? d[k] - lr[k - i] : d[k];
            float v = unzig(wd__lowbit_code(r, c->step)) * m;
            if (lr)
                v = lr[k - i] + v;
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

void wd__lowbit_result_free(wd_lowbit_result *r)
{
    free(r->gains);
    free(r->vcodes);
    free(r->acodes);
    memset(r, 0, sizeof *r);
}

/* Runs fn over all units in batches, merging each slot's K-wide sums
 * (len doubles) into acc in unit order. */
static int run_sum(wd__reader *r, lb_ctx *c, size_t cunits, size_t batch, wd__unit_fn fn, double *acc, size_t len)
{
    memset(acc, 0, len * sizeof *acc);
    for (size_t u0 = 0; u0 < cunits; u0 += batch) {
        size_t u1 = cunits - u0 < batch ? cunits : u0 + batch;
        c->u0 = u0;
        int rc = wd__reader_run(r, u0, u1, unit_range, c, fn, c);
        if (rc)
            return rc;
        for (size_t u = u0; u < u1; u++)
            for (size_t i = 0; i < len; i++)
                acc[i] += c->zpart[u - u0][i];
    }
    return 0;
}

/* Finds and codes V (rank x cols codes into out), sets c->rank, sa, vd. */
static int low_rank(wd__reader *r, lb_ctx *c, size_t cunits, size_t batch, uint64_t rows, double e0,
                    wd_lowbit_result *out)
{
    uint64_t cols = c->cols;
    size_t zl = (size_t)cols * K;
    double *z = malloc(zl * sizeof *z), *z2 = malloc(zl * sizeof *z2), g[K * K], w[K * K];
    int rc = z && z2 ? 0 : WD_NOMEM();
    for (size_t i = 0; !rc && i < batch && i < cunits; i++)
        if (!(c->zpart[i] = malloc(zl * sizeof(double))))
            rc = WD_NOMEM();
    if (!rc) {
        /* a fixed pseudo-random +-1 start: the same sketch every run */
        uint64_t x = 0x9e3779b97f4a7c15ull;
        for (size_t i = 0; i < zl; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            z[i] = (x >> 63) ? 1.0 : -1.0;
        }
    }
    for (int it = 0; !rc && it < 2; it++) {
        c->z = z;
        rc = run_sum(r, c, cunits, batch, power_fn, z2, zl);
        if (!rc) {
            orthonormalize(z2, cols);
            double *t = z;
            z = z2;
            z2 = t;
        }
    }
    if (!rc) {
        c->z = z;
        rc = run_sum(r, c, cunits, batch, gram_fn, g, K * K);
    }
    if (!rc) {
        jacobi(g, w);
        /* eigenvalues, largest first */
        int order[K];
        double lam[K];
        for (int k = 0; k < K; k++)
            order[k] = k;
        for (int a = 1; a < K; a++)
            for (int b = a; b > 0 && g[order[b] * K + order[b]] > g[order[b - 1] * K + order[b - 1]]; b--) {
                int t = order[b];
                order[b] = order[b - 1];
                order[b - 1] = t;
            }
        for (int k = 0; k < K; k++)
            lam[k] = g[order[k] * K + order[k]];
        int rank = choose_rank(lam, e0, rows, cols, c->step);
        out->rank = c->rank = rank;
        out->sv = (float)(FACTOR_REL_STEP / sqrt((double)cols));
        out->vcodes = malloc((size_t)rank * cols * 2 + 1);
        c->vd = malloc((size_t)rank * cols * sizeof(float) + 1);
        if (!out->vcodes || !c->vd)
            rc = WD_NOMEM();
        for (int k = 0; !rc && k < rank; k++) {
            const double *wk = w; /* column order[k] of w */
            double nn = 0;
            for (uint64_t j = 0; j < cols; j++) {
                double v = 0;
                for (int i = 0; i < K; i++)
                    v += z[j * K + i] * wk[i * K + order[k]];
                uint16_t code = wd__lowbit_code((float)v, out->sv);
                out->vcodes[(size_t)k * cols + j] = code;
                float vd = unzig(code) * out->sv;
                c->vd[(size_t)k * cols + j] = vd;
                nn += (double)vd * vd;
            }
            c->inv_vn[k] = nn > 0 ? 1 / nn : 0;
            /* A's column k has RMS sqrt(lam / rows) */
            double sa = FACTOR_REL_STEP * sqrt(lam[k] / (double)rows);
            c->sa[k] = out->sa[k] = (float)(sa >= FLT_MIN ? sa : 1.0);
        }
    }
    free(z);
    free(z2);
    return rc;
}

int wd__lowbit_encode(const wd_delta_src *src, const wd_lowbit_plan *p, wd_lowbit_emit_fn emit, void *ud,
                      wd_lowbit_result *out, wd_codec_fidelity *fid)
{
    memset(out, 0, sizeof *out);
    if (!src || !p || !(p->rel_step > 0) || !isfinite(p->rel_step) || p->seg == 0)
        return wd__error(WD_EUSAGE, "lowbit: bad parameters");
    uint64_t n = src->n, seg = p->seg;
    int lowrank = p->lowrank && p->cols == seg && p->rows >= WD_LOWBIT_LR_MIN && p->cols >= WD_LOWBIT_LR_MIN &&
                  p->cols <= WD_LOWBIT_LR_MAX_COLS && p->rows * p->cols == n;
    wd__reader r;
    lb_ctx c;
    memset(&c, 0, sizeof c);
    int rc = wd__reader_init(&r, src);
    size_t batch = wd__reader_batch(&r), units = wd__reader_units(&r);
    c.n = n;
    c.seg = seg;
    c.cols = p->cols;
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
    c.zpart = calloc(batch, sizeof *c.zpart);
    c.rowbuf = calloc((size_t)r.nworkers, sizeof *c.rowbuf);
    if (!c.sq || !c.amax || !c.sdd || !c.sqd || !c.sqq || !out->gains || !c.zpart || !c.rowbuf) {
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
    double step = p->rel_step * rms;
    /* Never clip: the step grows until the largest delta has a code (twice
     * that with a low-rank part, whose residual may reach past it). */
    double floor_step = (double)amax / WD_LOWBIT_QMAX * (lowrank ? 2 : 1) * (1 + 1e-6);
    if (step < floor_step)
        step = floor_step;
    if (!(step >= FLT_MIN) || !(step <= FLT_MAX))
        step = step > FLT_MAX ? FLT_MAX : 1.0;
    c.step = out->step = (float)step;

    c.unit = (uint64_t)(r.chunk / seg) * seg;
    size_t cunits = n ? (size_t)((n + c.unit - 1) / c.unit) : 0;
    if (lowrank && sq > 0) {
        if ((rc = low_rank(&r, &c, cunits, batch, p->rows, sq, out)))
            goto done;
        if (c.rank) {
            if (!(out->acodes = malloc((size_t)p->rows * (size_t)c.rank * 2 + 1))) {
                rc = WD_NOMEM();
                goto done;
            }
            c.acodes = out->acodes;
            for (int w = 0; w < r.nworkers; w++)
                if (!(c.rowbuf[w] = malloc((size_t)c.cols * sizeof(float)))) {
                    rc = WD_NOMEM();
                    goto done;
                }
        }
    }

    /* Pass 2: codes out in order; per-segment sums. */
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
    for (uint64_t s = 0; s < out->n_gains; s++)
        out->gains[s] = segment_gain(c.sdd[s], c.sqd[s], c.sqq[s]);

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
    wd__fidelity_finish(fid, sq, err2, emax);
done:
    for (size_t i = 0; c.codes && i < batch; i++)
        free(c.codes[i]);
    for (size_t i = 0; c.zpart && i < batch; i++)
        free(c.zpart[i]);
    for (int w = 0; c.rowbuf && w < r.nworkers; w++)
        free(c.rowbuf[w]);
    free(c.codes);
    free(c.zpart);
    free(c.rowbuf);
    free(c.vd);
    free(c.sq);
    free(c.amax);
    free(c.sdd);
    free(c.sqd);
    free(c.sqq);
    free(c.err2);
    free(c.emax);
    wd__reader_free(&r);
    if (rc)
        wd__lowbit_result_free(out);
    return rc;
}
