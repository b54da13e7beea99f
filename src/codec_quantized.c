/*
 * codec_quantized.c - the quantized (BitDelta-style) codec: one sign bit per
 * element and one float16 scale per row, the row's mean |delta| computed as
 * numpy 1.24 computes np.mean on float32 (blocked pairwise summation).
 */
#include "codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "error.h"
#include "half.h"

/* ---- numpy's float32 summation -------------------------------------------- */

#define PW_BLOCKSIZE 128 /* numpy's pairwise leaf size */

float wd__pairwise_sum_f32(const float *a, size_t n)
{
    if (n < 8) {
        float res = 0.0f;
        for (size_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= PW_BLOCKSIZE) {
        float r[8];
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + (size_t)j];
        float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    /* split in two, the first part a multiple of the 8-way unroll; depth is
     * log2(n / 128), so recursion is harmless */
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return wd__pairwise_sum_f32(a, n2) + wd__pairwise_sum_f32(a + n2, n - n2);
}

float wd__numpy_sum_f32(const float *a, size_t n)
{
    /* add.reduce starts from the identity 0 and adds one pairwise sum per
     * buffer of 8192 elements (numpy's default bufsize). */
    float acc = 0.0f;
    for (size_t i = 0; i < n; i += WD_CODEC_BLOCK) {
        size_t len = n - i < WD_CODEC_BLOCK ? n - i : WD_CODEC_BLOCK;
        acc += wd__pairwise_sum_f32(a + i, len);
    }
    return acc;
}

/* ---- Layout ----------------------------------------------------------------- */

void wd__quant_layout(int ndim, const uint64_t *shape, uint64_t *rows, uint64_t *n_cols)
{
    if (ndim >= 2) {
        uint64_t cols = 1;
        for (int i = 1; i < ndim; i++)
            cols *= shape[i]; /* shapes come validated: the product fits */
        *rows = shape[0];
        *n_cols = cols;
    } else {
        *rows = 1;
        *n_cols = ndim == 1 ? shape[0] : 1;
    }
}

void wd__quant_clear(wd_quant_delta *q)
{
    if (!q)
        return;
    free(q->scales);
    free(q->packed_signs);
    memset(q, 0, sizeof *q);
}

int wd__quant_check(const wd_quant_delta *q)
{
    if (q->n == 0 || q->n_cols == 0 || q->n % q->n_cols != 0)
        return wd__error(WD_EBADINPUT, "quantized: %llu elements do not make rows of %llu",
                         (unsigned long long)q->n, (unsigned long long)q->n_cols);
    if (!q->scales || !q->packed_signs)
        return wd__error(WD_EBADINPUT, "quantized: missing arrays");
    return 0;
}

/* ---- Encoder -------------------------------------------------------------- */

/* Units follow rows, because numpy sums each row in blocks of
 * WD_CODEC_BLOCK counted from the row's start: a unit is a run of whole rows
 * (rows of at most a chunk), or a segment of a long row, a whole number of
 * blocks from its start. */
typedef struct {
    uint64_t n_cols, rows;
    uint64_t rows_per_unit; /* 0: long rows, cut into segments */
    uint64_t seg, segs_per_row;
} qlayout;

static void quant_range(const void *p, size_t u, uint64_t *begin, size_t *count)
{
    const qlayout *L = p;
    if (L->rows_per_unit) {
        uint64_t r0 = (uint64_t)u * L->rows_per_unit;
        uint64_t nr = L->rows - r0 < L->rows_per_unit ? L->rows - r0 : L->rows_per_unit;
        *begin = r0 * L->n_cols;
        *count = (size_t)(nr * L->n_cols);
    } else {
        uint64_t row = u / L->segs_per_row, sg = u % L->segs_per_row;
        uint64_t off = sg * L->seg;
        *begin = row * L->n_cols + off;
        *count = (size_t)(L->n_cols - off < L->seg ? L->n_cols - off : L->seg);
    }
}

/* What a unit leaves for the merge. */
typedef struct {
    double norm2, err2, max_abs; /* whole rows */
    double s1, s2;               /* long rows: sum |d|, sum d^2 of the segment */
    float amin, amax;            /* ... min and max |d| */
    float *block_sums;           /* ... numpy's pairwise sum of each block */
    size_t n_blocks;
} quant_unit;

typedef struct {
    qlayout L;
    wd_quant_delta *out;
    quant_unit *units;
    float *absbuf; /* WD_CODEC_BLOCK per worker slot */
} quant_ctx;

/* np.mean: the float32 sum true-divided by the count, which numpy casts to
 * float32; then astype(float16). d' = +-s with the sign of d, so
 * |d' - d| = |s - |d||: sum (s - a)^2 = n s^2 - 2 s sum a + sum a^2. */
static void row_finish(uint16_t *scale, float acc, uint64_t n_cols, double s1, double s2, float amin, float amax,
                       double *norm2, double *err2, double *max_abs)
{
    float mean = acc / (float)n_cols;
    uint16_t h = wd__f32_to_f16(mean);
    *scale = h;
    double s = wd__f16_to_f32(h);
    double e2 = (double)n_cols * s * s - 2 * s * s1 + s2;
    *err2 += e2 > 0 ? e2 : 0;
    *norm2 += s2;
    double m = fmax(s - amin, amax - s);
    if (m > *max_abs || isnan(m))
        *max_abs = m;
}

/* The sign bits of d[0 .. len) (elements first .. of the tensor) into
 * signs, MSB first: 1 unless d < 0 (np.sign(d) == 0 became +1, and NaN casts
 * to a non-negative int8 on x86). Whole bytes are built without a branch
 * (the sign of a delta is a coin toss, and a branch on it mispredicted half
 * the time: most of the codec's time); a byte shared with the neighbouring
 * unit (first_byte, last_byte) is or-ed in atomically, as that unit may be
 * setting its bits at the same time. */
static void put_signs(uint8_t *signs, const float *d, size_t len, uint64_t first, uint64_t first_byte,
                      uint64_t last_byte)
{
    size_t j = 0;
    while (j < len) {
        uint64_t i = first + j, byte = i >> 3;
        unsigned bit0 = (unsigned)(i & 7);
        size_t take = 8 - bit0 < len - j ? 8 - bit0 : len - j;
        unsigned v = 0;
        for (size_t k = 0; k < take; k++)
            v |= (unsigned)!(d[j + k] < 0.0f) << (7 - bit0 - k);
        if (byte == first_byte || byte == last_byte)
            __atomic_fetch_or(&signs[byte], (uint8_t)v, __ATOMIC_RELAXED);
        else
            signs[byte] |= (uint8_t)v;
        j += take;
    }
}

/* |d| of a block into absbuf, and its sum, sum of squares, min and max
 * added to *s1, *s2, *amin, *amax (a NaN is skipped by min and max, as
 * the comparisons a < min and a > max skip it). The sums go in four lanes (element
 * j in lane j mod 4, added as (0 + 1) + (2 + 3) at the block's end): one
 * chain of dependent double adds an element was the codec's pace. They only
 * feed the reported error, never the arrays. */
static void block_stats(const float *d, size_t len, float *absbuf, double *s1, double *s2, float *amin, float *amax)
{
    double l1[4] = {0, 0, 0, 0}, l2[4] = {0, 0, 0, 0};
    float mn = *amin, mx = *amax;
    size_t j = 0;
#if defined(__SSE2__)
    const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    __m128 vmn = _mm_set1_ps(mn), vmx = _mm_set1_ps(mx);
    __m128d a01 = _mm_setzero_pd(), a23 = _mm_setzero_pd(), q01 = _mm_setzero_pd(), q23 = _mm_setzero_pd();
    for (; j + 4 <= len; j += 4) {
        __m128 a = _mm_and_ps(_mm_loadu_ps(d + j), abs_mask);
        _mm_storeu_ps(absbuf + j, a);
        vmn = _mm_min_ps(a, vmn); /* a NaN a leaves the old value, as a < mn does */
        vmx = _mm_max_ps(a, vmx);
        __m128d lo = _mm_cvtps_pd(a), hi = _mm_cvtps_pd(_mm_movehl_ps(a, a));
        a01 = _mm_add_pd(a01, lo);
        a23 = _mm_add_pd(a23, hi);
        q01 = _mm_add_pd(q01, _mm_mul_pd(lo, lo));
        q23 = _mm_add_pd(q23, _mm_mul_pd(hi, hi));
    }
    _mm_storeu_pd(l1, a01);
    _mm_storeu_pd(l1 + 2, a23);
    _mm_storeu_pd(l2, q01);
    _mm_storeu_pd(l2 + 2, q23);
    float m4[4];
    _mm_storeu_ps(m4, vmn);
    for (int k = 0; k < 4; k++)
        if (m4[k] < mn)
            mn = m4[k];
    _mm_storeu_ps(m4, vmx);
    for (int k = 0; k < 4; k++)
        if (m4[k] > mx)
            mx = m4[k];
#endif
    for (; j < len; j++) {
        float a = fabsf(d[j]);
        absbuf[j] = a;
        l1[j & 3] += a;
        l2[j & 3] += (double)a * a;
        if (a < mn)
            mn = a;
        if (a > mx)
            mx = a;
    }
    *s1 += (l1[0] + l1[1]) + (l1[2] + l1[3]);
    *s2 += (l2[0] + l2[1]) + (l2[2] + l2[3]);
    *amin = mn;
    *amax = mx;
}

static int quant_unit_fn(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    quant_ctx *c = p;
    quant_unit *q = &c->units[u];
    float *absbuf = c->absbuf + (size_t)worker * WD_CODEC_BLOCK;
    uint8_t *signs = c->out->packed_signs;
    uint64_t first_byte = begin >> 3, last_byte = count ? (begin + count - 1) >> 3 : 0;
    uint64_t n_cols = c->L.n_cols;
    /* A row (or segment) at a time, a block at a time. */
    size_t row_len = c->L.rows_per_unit ? (size_t)n_cols : count;
    for (size_t r0 = 0; r0 < count; r0 += row_len) {
        float acc = 0.0f;
        double s1 = 0, s2 = 0;
        float amin = INFINITY, amax = 0.0f;
        size_t nb = 0;
        for (size_t b = r0; b < r0 + row_len; b += WD_CODEC_BLOCK) {
            size_t len = r0 + row_len - b < WD_CODEC_BLOCK ? r0 + row_len - b : WD_CODEC_BLOCK;
            put_signs(signs, d + b, len, begin + b, first_byte, last_byte);
            block_stats(d + b, len, absbuf, &s1, &s2, &amin, &amax);
            float bs = wd__pairwise_sum_f32(absbuf, len);
            if (c->L.rows_per_unit)
                acc += bs;
            else
                q->block_sums[nb++] = bs;
        }
        if (c->L.rows_per_unit) {
            uint64_t row = (begin + r0) / n_cols;
            row_finish(&c->out->scales[row], acc, n_cols, s1, s2, amin, amax, &q->norm2, &q->err2, &q->max_abs);
        } else {
            q->n_blocks = nb;
            q->s1 = s1;
            q->s2 = s2;
            q->amin = amin;
            q->amax = amax;
        }
    }
    return 0;
}

int wd__quant_encode(wd_quant_delta *out, const wd_delta_src *src, uint64_t n_cols,
                     wd_codec_fidelity *fid)
{
    memset(out, 0, sizeof *out);
    if (!src)
        return wd__error(WD_EUSAGE, "no delta source");
    uint64_t n = src->n;
    if (n == 0)
        return wd__error(WD_EUSAGE, "quantized cannot encode an empty tensor "
                                    "(deltatensors cannot read one back)");
    if (n_cols == 0 || n % n_cols != 0)
        return wd__error(WD_EUSAGE, "quantized: %llu elements do not make rows of %llu",
                         (unsigned long long)n, (unsigned long long)n_cols);
    uint64_t rows = n / n_cols;
    if (rows > SIZE_MAX / sizeof(uint16_t))
        return WD_NOMEM();

    wd__reader r;
    quant_ctx c;
    memset(&c, 0, sizeof c);
    size_t units = 0;
    int rc = wd__reader_init(&r, src);
    if (rc)
        goto done;
    c.L.n_cols = n_cols;
    c.L.rows = rows;
    if (n_cols <= r.chunk) {
        c.L.rows_per_unit = r.chunk / n_cols;
        units = (size_t)((rows + c.L.rows_per_unit - 1) / c.L.rows_per_unit);
    } else {
        c.L.seg = r.chunk / WD_CODEC_BLOCK * WD_CODEC_BLOCK;
        c.L.segs_per_row = (n_cols + c.L.seg - 1) / c.L.seg;
        units = (size_t)(rows * c.L.segs_per_row);
    }
    out->n = n;
    out->n_cols = n_cols;
    out->scales = malloc((size_t)rows * sizeof *out->scales);
    out->packed_signs = calloc((size_t)((n + 7) / 8), 1);
    c.out = out;
    c.units = calloc(units, sizeof *c.units);
    c.absbuf = malloc((size_t)r.nworkers * WD_CODEC_BLOCK * sizeof *c.absbuf);
    if (!out->scales || !out->packed_signs || !c.units || !c.absbuf) {
        rc = WD_NOMEM();
        goto done;
    }
    for (size_t u = 0; !c.L.rows_per_unit && u < units; u++)
        if (!(c.units[u].block_sums = malloc((c.L.seg / WD_CODEC_BLOCK) * sizeof(float)))) {
            rc = WD_NOMEM();
            goto done;
        }

    /* One pass; then the units' results in order: whole rows add up their
     * fidelity, segments of a long row add their block sums to the row's
     * float32 running sum as numpy's reduction loop does. */
    if ((rc = wd__reader_run(&r, 0, units, quant_range, &c.L, quant_unit_fn, &c)))
        goto done;
    double norm2 = 0, err2 = 0, max_abs = 0;
    if (c.L.rows_per_unit) {
        for (size_t u = 0; u < units; u++) {
            norm2 += c.units[u].norm2;
            err2 += c.units[u].err2;
            if (c.units[u].max_abs > max_abs || isnan(c.units[u].max_abs))
                max_abs = c.units[u].max_abs;
        }
    } else {
        for (uint64_t row = 0; row < rows; row++) {
            float acc = 0.0f;
            double s1 = 0, s2 = 0;
            float amin = INFINITY, amax = 0.0f;
            for (uint64_t sg = 0; sg < c.L.segs_per_row; sg++) {
                const quant_unit *q = &c.units[row * c.L.segs_per_row + sg];
                for (size_t b = 0; b < q->n_blocks; b++)
                    acc += q->block_sums[b];
                s1 += q->s1;
                s2 += q->s2;
                if (q->amin < amin)
                    amin = q->amin;
                if (q->amax > amax)
                    amax = q->amax;
            }
            row_finish(&out->scales[row], acc, n_cols, s1, s2, amin, amax, &norm2, &err2, &max_abs);
        }
    }
    wd__fidelity_finish(fid, norm2, err2, max_abs);
done:
    for (size_t u = 0; c.units && u < units; u++)
        free(c.units[u].block_sums);
    free(c.units);
    free(c.absbuf);
    wd__reader_free(&r);
    if (rc)
        wd__quant_clear(out);
    return rc;
}

/* ---- Decoder -------------------------------------------------------------- */

/* buf[k] += (bit of element i + k ? s : -s) for k < n, elements of one
 * row (one scale). -s is s with its sign bit flipped, as unary minus makes
 * it, so the vector loop (eight elements a sign byte, the bit's absence
 * flipping the sign) adds exactly what the scalar one does. It was a
 * quarter of a quantized commit's CPU as a loop with a select and a row
 * test on every element. */
static void apply_run(float *buf, const uint8_t *signs, uint64_t i, size_t n, float s)
{
    size_t k = 0;
    for (; k < n && ((i + k) & 7); k++) {
        uint64_t e = i + k;
        buf[k] = buf[k] + ((signs[e >> 3] >> (7 - (e & 7)) & 1) ? s : -s);
    }
#if defined(__SSE2__)
    const __m128 vs = _mm_set1_ps(s), sign = _mm_set1_ps(-0.0f);
    const __m128i first = _mm_setr_epi32(0x80, 0x40, 0x20, 0x10), second = _mm_setr_epi32(8, 4, 2, 1);
    const __m128i zero = _mm_setzero_si128();
    for (; k + 8 <= n; k += 8) {
        __m128i b = _mm_set1_epi32(signs[(i + k) >> 3]);
        /* all ones where the bit is clear: those lanes add -s */
        __m128 clear0 = _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(b, first), zero));
        __m128 clear1 = _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(b, second), zero));
        __m128 v0 = _mm_xor_ps(vs, _mm_and_ps(clear0, sign));
        __m128 v1 = _mm_xor_ps(vs, _mm_and_ps(clear1, sign));
        _mm_storeu_ps(buf + k, _mm_add_ps(_mm_loadu_ps(buf + k), v0));
        _mm_storeu_ps(buf + k + 4, _mm_add_ps(_mm_loadu_ps(buf + k + 4), v1));
    }
#endif
    for (; k < n; k++) {
        uint64_t e = i + k;
        buf[k] = buf[k] + ((signs[e >> 3] >> (7 - (e & 7)) & 1) ? s : -s);
    }
}

int wd__quant_apply(const wd_quant_delta *q, uint64_t begin, float *buf, size_t count)
{
    if (begin > q->n || count > q->n - begin)
        return wd__error(WD_EUSAGE, "quantized: range [%llu, +%zu) outside %llu elements",
                         (unsigned long long)begin, count, (unsigned long long)q->n);
    uint64_t pos = begin, end = begin + count;
    while (pos < end) {
        uint64_t row = pos / q->n_cols, row_end = (row + 1) * q->n_cols < end ? (row + 1) * q->n_cols : end;
        apply_run(buf + (pos - begin), q->packed_signs, pos, (size_t)(row_end - pos), wd__f16_to_f32(q->scales[row]));
        pos = row_end;
    }
    return 0;
}
