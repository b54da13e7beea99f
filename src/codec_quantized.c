/*
 * codec_quantized.c - the quantized (BitDelta-style) codec: one sign bit per
 * element and one float16 scale per row, the row's mean |delta| computed as
 * numpy 1.24 computes np.mean on float32 (blocked pairwise summation).
 */
#include "codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* What one row accumulates while it streams past. */
typedef struct {
    float acc;         /* numpy's running float32 sum of |d| */
    uint64_t col;      /* elements of the row seen */
    double s1, s2;     /* sum |d|, sum d^2 in double, for the fidelity */
    float amin, amax;  /* min and max |d| */
} row_state;

static void row_reset(row_state *st)
{
    st->acc = 0.0f;
    st->col = 0;
    st->s1 = st->s2 = 0;
    st->amin = INFINITY;
    st->amax = 0.0f;
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
    float *absbuf = NULL;
    int rc = wd__reader_init(&r, src);
    if (rc)
        goto fail;
    out->n = n;
    out->n_cols = n_cols;
    out->scales = malloc((size_t)rows * sizeof *out->scales);
    out->packed_signs = calloc((size_t)((n + 7) / 8), 1);
    absbuf = malloc(WD_CODEC_BLOCK * sizeof *absbuf);
    if (!out->scales || !out->packed_signs || !absbuf) {
        rc = WD_NOMEM();
        goto fail;
    }

    /* One pass. numpy sums each row in blocks of WD_CODEC_BLOCK counted from
     * the row's start, so every read ends on such a block boundary (or at
     * the end), and no block is ever split between two reads. */
    row_state st;
    row_reset(&st);
    uint64_t row = 0;
    double norm2 = 0, err2 = 0, max_abs = 0;
    for (uint64_t pos = 0; pos < n;) {
        uint64_t end = n - pos < r.chunk ? n : pos + r.chunk;
        if (end < n) {
            /* the last block boundary <= end: pos is one and the next one is
             * at most WD_CODEC_BLOCK <= chunk further, so end stays > pos */
            uint64_t row_start = end / n_cols * n_cols;
            end = row_start + (end - row_start) / WD_CODEC_BLOCK * WD_CODEC_BLOCK;
        }
        const float *p;
        if ((rc = wd__reader_get(&r, pos, (size_t)(end - pos), &p)))
            goto fail;
        for (uint64_t i = pos; i < end;) {
            uint64_t left = n_cols - st.col;
            size_t len = left < WD_CODEC_BLOCK ? (size_t)left : WD_CODEC_BLOCK;
            const float *blk = p + (i - pos);
            for (size_t j = 0; j < len; j++) {
                float d = blk[j];
                float a = fabsf(d);
                absbuf[j] = a;
                /* np.sign(d) == 0 became +1 and NaN casts to a non-negative
                 * int8 on x86: the bit is 1 unless d < 0 */
                if (!(d < 0.0f))
                    out->packed_signs[(i + j) >> 3] |= (uint8_t)(0x80u >> ((i + j) & 7));
                st.s1 += a;
                st.s2 += (double)a * a;
                if (a < st.amin)
                    st.amin = a;
                if (a > st.amax)
                    st.amax = a;
            }
            st.acc += wd__pairwise_sum_f32(absbuf, len);
            st.col += len;
            i += len;
            if (st.col == n_cols) {
                /* np.mean: the float32 sum true-divided by the count, which
                 * numpy casts to float32; then astype(float16) */
                float mean = st.acc / (float)n_cols;
                uint16_t h = wd__f32_to_f16(mean);
                out->scales[row++] = h;
                /* d' = +-s with the sign of d, so |d' - d| = |s - |d||:
                 * sum (s - a)^2 = n s^2 - 2 s sum a + sum a^2 */
                double s = wd__f16_to_f32(h);
                double e2 = (double)n_cols * s * s - 2 * s * st.s1 + st.s2;
                err2 += e2 > 0 ? e2 : 0;
                norm2 += st.s2;
                double m = fmax(s - st.amin, st.amax - s);
                if (m > max_abs || isnan(m))
                    max_abs = m;
                row_reset(&st);
            }
        }
        pos = end;
    }
    wd__fidelity_finish(fid, norm2, err2, max_abs);
    free(absbuf);
    wd__reader_free(&r);
    return 0;

fail:
    free(absbuf);
    wd__reader_free(&r);
    wd__quant_clear(out);
    return rc;
}

/* ---- Decoder -------------------------------------------------------------- */

int wd__quant_apply(const wd_quant_delta *q, uint64_t begin, float *buf, size_t count)
{
    if (begin > q->n || count > q->n - begin)
        return wd__error(WD_EUSAGE, "quantized: range [%llu, +%zu) outside %llu elements",
                         (unsigned long long)begin, count, (unsigned long long)q->n);
    if (count == 0)
        return 0;
    uint64_t row = begin / q->n_cols, col = begin % q->n_cols;
    float s = wd__f16_to_f32(q->scales[row]);
    for (size_t k = 0; k < count; k++) {
        uint64_t i = begin + k;
        int bit = (q->packed_signs[i >> 3] >> (7 - (i & 7))) & 1;
        buf[k] = buf[k] + (bit ? s : -s);
        if (++col == q->n_cols && k + 1 < count) {
            col = 0;
            s = wd__f16_to_f32(q->scales[++row]);
        }
    }
    return 0;
}
