/*
 * codec_int4.c - the int4 codec: the largest |delta| kept as float16
 * outliers, the rest quantized to 4-bit codes by min/max over the
 * non-outliers; layout 2 (deltatensors 0.3.0, format v2) and layout 1 (0.2.0).
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

uint64_t wd__int4_n_outliers(uint64_t n, double outlier_fraction)
{
    /* Python: min(n, max(1, int(n * outlier_fraction))) */
    double prod = (double)n * outlier_fraction;
    uint64_t k = prod >= (double)n ? n : (prod > 0 ? (uint64_t)prod : 0);
    if (k < 1)
        k = 1;
    return k > n ? n : k;
}

uint64_t wd__int4_packed_len(int layout, uint64_t n, uint64_t n_outliers)
{
    uint64_t codes = layout == 1 ? n - n_outliers : n;
    return codes / 2 + (codes & 1);
}

unsigned wd__int4_idx_bytes(int layout, uint64_t n)
{
    return layout == 2 && n < ((uint64_t)1 << 31) ? 4u : 8u;
}

void wd__int4_lut(float lut[16], uint16_t scale, uint16_t zero_point)
{
    /* deltatensors: np.arange(16, float32) / 15.0 * (scale * 15.0) + zero_point
     * with scale and zero_point Python floats: the product scale * 15 is a
     * float64 (exact: 11 bits times 4), cast to float32 by numpy's
     * value-based casting like zero_point; every array op is float32. */
    float range = (float)((double)wd__f16_to_f32(scale) * 15.0);
    float zp = wd__f16_to_f32(zero_point);
    for (int q = 0; q < 16; q++) {
        float t = (float)q / 15.0f;
        t = t * range;
        lut[q] = t + zp;
    }
}

void wd__int4_clear(wd_int4_delta *e)
{
    if (!e)
        return;
    free(e->outlier_idx);
    free(e->outlier_vals);
    free(e->packed);
    memset(e, 0, sizeof *e);
}

int wd__int4_check(const wd_int4_delta *e)
{
    if (e->layout != 1 && e->layout != 2)
        return wd__error(WD_EBADINPUT, "int4: unknown layout %d", e->layout);
    if (e->n_outliers > e->n)
        return wd__error(WD_EBADINPUT, "int4: %llu outliers for %llu elements",
                         (unsigned long long)e->n_outliers, (unsigned long long)e->n);
    if ((e->n_outliers && !e->outlier_vals) ||
        (wd__int4_packed_len(e->layout, e->n, e->n_outliers) && !e->packed))
        return wd__error(WD_EBADINPUT, "int4: missing arrays");
    return wd__check_sorted_idx(e->outlier_idx, e->idx_bytes, e->n_outliers, e->n,
                                "int4 outlier_idx");
}

/* rint, then np.clip(., 0, 15).astype(uint8). NaN survives the clip and
 * numpy's float -> uint8 cast gives 0 for it on x86 (cvttss2si yields
 * 0x80000000, whose low byte is 0), so NaN is code 0 here. */
static uint8_t clip_code(float v)
{
    if (isnan(v))
        return 0;
    v = rintf(v); /* default rounding mode: half to even, as np.rint/np.round */
    if (v <= 0.0f)
        return 0;
    if (v >= 15.0f)
        return 15;
    return (uint8_t)v;
}

static uint8_t clip_code_f64(double v)
{
    if (isnan(v))
        return 0;
    v = rint(v);
    if (v <= 0.0)
        return 0;
    if (v >= 15.0)
        return 15;
    return (uint8_t)v;
}

/* Codes of one unit fill whole bytes except perhaps the first and the last,
 * which a neighbouring unit on another worker may fill at the same time. */
static void put_code(uint8_t *packed, uint64_t pos, uint8_t q, int shared)
{
    uint8_t v = (pos & 1) ? q : (uint8_t)(q << 4);
    if (shared)
        __atomic_fetch_or(&packed[pos >> 1], v, __ATOMIC_RELAXED);
    else
        packed[pos >> 1] |= v;
}

static void store_idx(void *idx, unsigned idx_bytes, uint64_t j, uint64_t v)
{
    if (idx_bytes == 4)
        ((int32_t *)idx)[j] = (int32_t)v;
    else
        ((int64_t *)idx)[j] = (int64_t)v;
}

/* What the encoder knows after the outlier pass and how it quantizes. */
typedef struct {
    int layout;
    int zero_codes;     /* range too small (or scale 0): every code is 0 */
    float zp, scale;    /* layout 2: the stored float16 values widened */
    float qmin_f;       /* layout 1: q_min as numpy casts it (exact) */
    double range;       /* layout 1: q_max - q_min */
    float range_f;      /* ... cast to float32 */
    int range_f64;      /* ... too large for float32: numpy computes in float64 */
} quantizer;

static uint8_t code_of(const quantizer *qz, float d)
{
    if (qz->zero_codes)
        return 0;
    if (qz->layout == 2) {
        /* (flat - float(zero_point)) / float(scale): float32 array with
         * Python floats that fit float32, so two float32 operations */
        float t = d - qz->zp;
        return clip_code(t / qz->scale);
    }
    /* 0.2.0: (x - q_min) / q_range * 15.0, float32 unless q_range does not
     * fit float32 (numpy's value-based casting then promotes to float64) */
    float t = d - qz->qmin_f;
    if (qz->range_f64)
        return clip_code_f64((double)t / qz->range * 15.0);
    t = t / qz->range_f;
    return clip_code(t * 15.0f);
}

/* Pass A of one unit: its outlier candidates (keys at or above the cut,
 * ties marked: how many ties are taken depends on the units before) and
 * the extremes of the rest. Among equal values the later one wins, as in
 * one walk in index order (see the merge). */
typedef struct {
    int64_t *idx;
    float *val;
    uint8_t *tie;
    size_t n, cap;
    double norm2;
    int have, nan_seen;
    float mn, mx, nan_val;
    uint64_t nan_pos;
} outlier_unit;

typedef struct {
    wd_topk_cut cut;
    size_t u0;
    outlier_unit *units;
    /* pass B */
    const wd_int4_delta *e;
    const quantizer *qz;
    const float *lut;
    double *err2, *max_abs; /* per unit */
    uint8_t *qbuf;          /* layout 2: one unit's codes per worker slot */
    size_t qbuf_len;
    /* where codes go: code number packed_at (even) is packed[0]'s high
     * nibble (the whole array, or a streamed window of it) */
    uint8_t *packed;
    uint64_t packed_at;
} int4_ctx;

static void extremes_add(int *have, float *mn, float *mx, float d)
{
    if (!*have || d <= *mn)
        *mn = d;
    if (!*have || d >= *mx)
        *mx = d;
    *have = 1;
}

/* One element of pass A, in index order. */
static int outlier_one(outlier_unit *s, uint32_t thr, float x, uint64_t pos)
{
    uint32_t key = wd__abs_key(x);
    if (key >= thr) {
        if (s->n == s->cap && wd__entries_grow(&s->idx, &s->val, &s->tie, &s->cap, s->n + 1))
            return WD_NOMEM();
        s->idx[s->n] = (int64_t)pos;
        s->val[s->n] = x;
        s->tie[s->n] = key == thr;
        s->n++;
    } else if (isnan(x)) {
        if (!s->nan_seen) {
            s->nan_val = x;
            s->nan_pos = pos;
        }
        s->nan_seen = 1;
    } else {
        extremes_add(&s->have, &s->mn, &s->mx, x);
    }
    return 0;
}

#if defined(__SSE2__)
/* A zero that is no candidate (thr > 0) may become an extreme: the last one
 * in index order decides the extreme's sign. */
static void note_zero(int *zero_seen, float *last_zero, float x)
{
    if (x == 0.0f) {
        *zero_seen = 1;
        *last_zero = x;
    }
}

/* Pass A over d[0, count) four elements at a time: a group of four with no
 * candidate and no NaN (the common case) only moves the extremes, lane by
 * lane; any other group goes element by element through outlier_one. Lane
 * minima and maxima lose which of two equal values came last, which only
 * matters for -0.0 and +0.0 (other equal floats are the same bits): when
 * the extreme is a zero, it is the last zero in index order, tracked here. */
static int outlier_run_sse2(outlier_unit *s, uint32_t thr, const float *d, uint64_t begin, size_t count)
{
    const __m128i absmask = _mm_set1_epi32(0x7fffffff);
    /* keys are at most 0x7fffffff, so a signed compare with thr - 1 works
     * when thr >= 1; thr == 0 takes everything (scalar path) */
    const __m128i thr1 = _mm_set1_epi32((int32_t)(thr - 1));
    const __m128 zero = _mm_setzero_ps();
    __m128 vmn = _mm_set1_ps(INFINITY), vmx = _mm_set1_ps(-INFINITY);
    int vhave = 0, zero_seen = 0;
    float last_zero = 0;
    size_t i = 0;
    for (; i + 4 <= count; i += 4) {
        __m128 x = _mm_loadu_ps(d + i);
        __m128i key = _mm_and_si128(_mm_castps_si128(x), absmask);
        __m128i odd = _mm_or_si128(_mm_cmpgt_epi32(key, thr1), _mm_castps_si128(_mm_cmpunord_ps(x, x)));
        if (_mm_movemask_epi8(odd)) {
            for (size_t k = i; k < i + 4; k++) {
                int rc = outlier_one(s, thr, d[k], begin + k);
                if (rc)
                    return rc;
                note_zero(&zero_seen, &last_zero, d[k]);
            }
            continue;
        }
        vmn = _mm_min_ps(vmn, x);
        vmx = _mm_max_ps(vmx, x);
        vhave = 1;
        int zm = _mm_movemask_ps(_mm_cmpeq_ps(x, zero));
        if (zm) {
            zero_seen = 1;
            last_zero = d[i + (zm & 8 ? 3 : zm & 4 ? 2 : zm & 2 ? 1 : 0)];
        }
    }
    for (; i < count; i++) {
        int rc = outlier_one(s, thr, d[i], begin + i);
        if (rc)
            return rc;
        note_zero(&zero_seen, &last_zero, d[i]);
    }
    if (vhave) {
        float m[4], M[4];
        _mm_storeu_ps(m, vmn);
        _mm_storeu_ps(M, vmx);
        for (int k = 0; k < 4; k++) {
            if (!s->have || m[k] < s->mn)
                s->mn = m[k];
            if (!s->have || M[k] > s->mx)
                s->mx = M[k];
            s->have = 1;
        }
    }
    if (s->have && zero_seen) {
        if (s->mn == 0.0f)
            s->mn = last_zero;
        if (s->mx == 0.0f)
            s->mx = last_zero;
    }
    return 0;
}
#endif

static int outlier_unit_fn(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    (void)worker;
    int4_ctx *c = p;
    outlier_unit *s = &c->units[u - c->u0];
    s->n = 0;
    s->norm2 = 0;
    s->have = s->nan_seen = 0;
    s->mn = s->mx = s->nan_val = 0;
    uint32_t thr = c->cut.thr;
    s->norm2 = wd__sum_squares(d, count);
#if defined(__SSE2__)
    if (thr > 0)
        return outlier_run_sse2(s, thr, d, begin, count);
#endif
    for (size_t i = 0; i < count; i++) {
        int rc = outlier_one(s, thr, d[i], begin + i);
        if (rc)
            return rc;
    }
    return 0;
}

/* Codes of d[i, stop) (no outlier among them) into qbuf, their squared
 * errors added to acc[0..3] and the largest to *max_abs (NaN once any is).
 * The code is clip_code((x - zp) / scale) and the decoded value lut[q],
 * whose float32 expression lut_range and zp rebuild operation for
 * operation. -O2 gcc leaves this loop scalar, and it was a third of
 * save-delta int4's time, so on x86-64 four elements go at once in SSE2:
 * max/min with -1 and 16 clamp (NaN becomes -1, so code 0, as
 * clip_code), adding and subtracting 1.5 * 2^23 rounds half to even like
 * rintf for |v| < 2^22, and the clamp to [0, 15] then gives clip_code's
 * code exactly. Returns stop. */
static size_t code_run(const quantizer *qz, float lut_range, const float *lut, const float *d, uint8_t *qbuf,
                       size_t i, size_t stop, double acc[4], double *max_abs)
{
    double mx = *max_abs;
#if defined(__SSE2__)
    if (stop - i >= 4) {
        const __m128 zp = _mm_set1_ps(qz->zp), scale = _mm_set1_ps(qz->scale), lo = _mm_set1_ps(-1.0f),
                     hi = _mm_set1_ps(16.0f), magic = _mm_set1_ps(12582912.0f), zero = _mm_setzero_ps(),
                     fifteen = _mm_set1_ps(15.0f), range = _mm_set1_ps(lut_range);
        const __m128d sign = _mm_set1_pd(-0.0);
        __m128d a01 = _mm_setzero_pd(), a23 = _mm_setzero_pd(), m01 = _mm_set1_pd(mx > 0 ? mx : 0),
                m23 = m01, nan = _mm_setzero_pd();
        for (; i + 4 <= stop; i += 4) {
            __m128 x = _mm_loadu_ps(d + i);
            __m128 t = _mm_div_ps(_mm_sub_ps(x, zp), scale);
            t = _mm_min_ps(_mm_max_ps(t, lo), hi);
            t = _mm_sub_ps(_mm_add_ps(t, magic), magic);
            t = _mm_min_ps(_mm_max_ps(t, zero), fifteen);
            __m128i q = _mm_cvttps_epi32(t);
            q = _mm_packus_epi16(_mm_packs_epi32(q, q), q);
            int32_t four = _mm_cvtsi128_si32(q);
            memcpy(qbuf + i, &four, 4);
            __m128 dec = _mm_add_ps(_mm_mul_ps(_mm_div_ps(t, fifteen), range), zp);
            __m128d e01 = _mm_andnot_pd(sign, _mm_sub_pd(_mm_cvtps_pd(dec), _mm_cvtps_pd(x)));
            __m128d e23 = _mm_andnot_pd(sign, _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(dec, dec)),
                                                         _mm_cvtps_pd(_mm_movehl_ps(x, x))));
            a01 = _mm_add_pd(a01, _mm_mul_pd(e01, e01));
            a23 = _mm_add_pd(a23, _mm_mul_pd(e23, e23));
            nan = _mm_or_pd(nan, _mm_or_pd(_mm_cmpunord_pd(e01, e01), _mm_cmpunord_pd(e23, e23)));
            m01 = _mm_max_pd(e01, m01); /* a NaN error leaves the maximum alone: `nan` records it */
            m23 = _mm_max_pd(e23, m23);
        }
        double s[2], m[4];
        _mm_storeu_pd(s, a01);
        acc[0] += s[0];
        acc[1] += s[1];
        _mm_storeu_pd(s, a23);
        acc[2] += s[0];
        acc[3] += s[1];
        _mm_storeu_pd(m, m01);
        _mm_storeu_pd(m + 2, m23);
        for (int k = 0; k < 4; k++)
            if (m[k] > mx)
                mx = m[k];
        if (_mm_movemask_pd(nan))
            mx = NAN;
        if (isnan(*max_abs))
            mx = *max_abs;
    }
#else
    (void)lut_range;
#endif
    for (; i < stop; i++) {
        float x = d[i];
        uint8_t q = clip_code((x - qz->zp) / qz->scale);
        qbuf[i] = q;
        double err = fabs((double)lut[q] - x);
        acc[i & 3] += err * err;
        if (err > mx || isnan(err))
            mx = err;
    }
    *max_abs = mx;
    return stop;
}

/* Codes q[k..) two a byte, the first in the high nibble, into out[0..):
 * up to the last whole pair before count; returns where it stopped. A code
 * is below 16, so in a 16-bit lane holding (first, second) shifting the lane
 * left by 4 puts first << 4 in its low byte with second's bits above. */
static size_t pack_nibbles(uint8_t *out, const uint8_t *q, size_t k, size_t count)
{
#if defined(__SSE2__)
    const __m128i low = _mm_set1_epi16(0x00f0);
    for (; k + 32 <= count; k += 32, out += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(q + k)), b = _mm_loadu_si128((const __m128i *)(q + k + 16));
        a = _mm_or_si128(_mm_and_si128(_mm_slli_epi16(a, 4), low), _mm_srli_epi16(a, 8));
        b = _mm_or_si128(_mm_and_si128(_mm_slli_epi16(b, 4), low), _mm_srli_epi16(b, 8));
        _mm_storeu_si128((__m128i *)out, _mm_packus_epi16(a, b));
    }
#endif
    for (; k + 1 < count; k += 2)
        *out++ = (uint8_t)(q[k] << 4 | q[k + 1]);
    return k;
}

/* Pass B of one unit: its codes, and how far the decoded values are off. */
/* Layout 2 with a real scale, the common case: codes for every position go
 * to the worker's qbuf in a branch-light loop between outliers, then are
 * packed two a byte (only the unit's first and last byte can be shared with
 * a neighbouring unit). The squared errors go to four accumulators, so the
 * loop is not one long chain of dependent double additions. */
static int code_unit_fast(int4_ctx *c, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    const wd_int4_delta *e = c->e;
    const quantizer *qz = c->qz;
    const float *lut = c->lut;
    uint8_t *qbuf = c->qbuf + (size_t)worker * c->qbuf_len;
    uint64_t n_out = e->n_outliers;
    uint64_t j = wd__idx_lower_bound(e->outlier_idx, e->idx_bytes, n_out, begin);
    uint64_t end = begin + count;
    double acc[4] = {0, 0, 0, 0}, max_abs = 0;
    /* wd__int4_lut's float32 range, for code_run's decoded values */
    float lut_range = (float)((double)wd__f16_to_f32(e->scale) * 15.0);
    size_t i = 0;
    while (i < count) {
        uint64_t next = j < n_out ? (uint64_t)wd__idx_at(e->outlier_idx, e->idx_bytes, j) : UINT64_MAX;
        size_t stop = next < end ? (size_t)(next - begin) : count;
        i = code_run(qz, lut_range, lut, d, qbuf, i, stop, acc, &max_abs);
        if (i < count) { /* an outlier: its code is written too, its value is its own */
            float x = d[i];
            qbuf[i] = clip_code((x - qz->zp) / qz->scale);
            double err = fabs((double)wd__f16_to_f32(e->outlier_vals[j++]) - x);
            acc[i & 3] += err * err;
            if (err > max_abs || isnan(err))
                max_abs = err;
            i++;
        }
    }
    uint8_t *packed = c->packed;
    uint64_t rel = begin - c->packed_at; /* packed_at is even: same nibble parity */
    size_t k = 0;
    if (count && (rel & 1)) { /* a low nibble in a byte the unit before fills too */
        __atomic_fetch_or(&packed[rel >> 1], qbuf[0], __ATOMIC_RELAXED);
        k = 1;
    }
    k = pack_nibbles(packed + ((rel + k) >> 1), qbuf, k, count);
    if (k < count) /* a high nibble in a byte the unit after fills too */
        __atomic_fetch_or(&packed[(rel + k) >> 1], (uint8_t)(qbuf[k] << 4), __ATOMIC_RELAXED);
    c->err2[u] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    c->max_abs[u] = max_abs;
    return 0;
}

static int code_unit_fn(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    int4_ctx *c = p;
    const wd_int4_delta *e = c->e;
    if (e->layout == 2 && !c->qz->zero_codes && c->qbuf)
        return code_unit_fast(c, u, worker, d, begin, count);
    uint64_t n_out = e->n_outliers;
    uint64_t j = wd__idx_lower_bound(e->outlier_idx, e->idx_bytes, n_out, begin);
    uint64_t code_pos = e->layout == 2 ? begin : begin - j;
    uint64_t first = code_pos, last = 0;
    if (count) {
        uint64_t jend = wd__idx_lower_bound(e->outlier_idx, e->idx_bytes, n_out, begin + count);
        last = e->layout == 2 ? begin + count - 1 : begin + count - jend - 1;
    }
    double err2 = 0, max_abs = 0;
    for (size_t i = 0; i < count; i++) {
        float x = d[i];
        int is_out = j < n_out && (uint64_t)wd__idx_at(e->outlier_idx, e->idx_bytes, j) == begin + i;
        float decoded = 0.0f;
        if (e->layout == 2 || !is_out) {
            uint8_t q = code_of(c->qz, x);
            int shared = (code_pos >> 1) == (first >> 1) || (code_pos >> 1) == (last >> 1);
            put_code(c->packed, code_pos++ - c->packed_at, q, shared);
            decoded = c->lut[q];
        }
        if (is_out)
            decoded = wd__f16_to_f32(e->outlier_vals[j++]);
        double err = fabs((double)decoded - x);
        err2 += err * err;
        if (err > max_abs || isnan(err))
            max_abs = err;
    }
    c->err2[u] = err2;
    c->max_abs[u] = max_abs;
    return 0;
}

/* Pass B a window at a time: the codes of a batch of units go to one
 * window buffer, which emit receives, then the next batch reuses it.
 * Memory: the window, (units a batch x r->chunk) / 2 bytes (1 MiB a worker
 * slot with the default chunk). */
static int code_windows(wd__reader *r, int4_ctx *c, const wd_int4_delta *e, size_t units, wd_int4_codes_fn emit,
                        void *emit_ud)
{
    size_t batch = wd__reader_batch(r);
    if ((batch * r->chunk) & 1) /* both odd: an even number of units keeps windows on even elements */
        batch++;
    uint64_t span = (uint64_t)batch * r->chunk;
    uint8_t *win = malloc((size_t)(span / 2) + 1);
    if (!win)
        return WD_NOMEM();
    int rc = 0;
    for (size_t u0 = 0; !rc && u0 < units; u0 += batch) {
        size_t u1 = units - u0 < batch ? units : u0 + batch;
        uint64_t begin = (uint64_t)u0 * r->chunk, end = u1 == units ? e->n : (uint64_t)u1 * r->chunk;
        memset(win, 0, (size_t)((end - begin + 1) / 2)); /* the units' edge bytes are OR-ed in */
        c->packed = win;
        c->packed_at = begin;
        rc = wd__reader_run(r, u0, u1, NULL, NULL, code_unit_fn, c);
        if (!rc)
            rc = emit(emit_ud, e, begin, end, win);
    }
    free(win);
    return rc;
}

/* Both entry points: without emit, the whole code array is kept in out. */
static int int4_encode(wd_int4_delta *out, const wd_delta_src *src, double outlier_fraction, int layout,
                       wd_codec_fidelity *fid, wd_int4_codes_fn emit, void *emit_ud)
{
    memset(out, 0, sizeof *out);
    if (layout != 1 && layout != 2)
        return wd__error(WD_EUSAGE, "int4: layout must be 1 or 2, got %d", layout);
    if (!(outlier_fraction >= 0.0))
        return wd__error(WD_EUSAGE, "int4: outlier_fraction must be >= 0, got %g",
                         outlier_fraction);
    if (!src)
        return wd__error(WD_EUSAGE, "no delta source");
    uint64_t n = src->n;
    uint64_t n_out = wd__int4_n_outliers(n, outlier_fraction);
    unsigned idx_bytes = wd__int4_idx_bytes(layout, n);
    uint64_t packed_len = wd__int4_packed_len(layout, n, n_out);
    if (n_out > SIZE_MAX / 8 || packed_len > SIZE_MAX - 1)
        return WD_NOMEM();

    wd__reader r;
    int4_ctx c;
    memset(&c, 0, sizeof c);
    size_t batch = 0, units = 0;
    int64_t *cand_idx = NULL, *cand_own = NULL;
    float *cand_val = NULL;
    uint64_t m = 0; /* candidates collected */
    int rc = wd__reader_init(&r, src);
    if (rc)
        goto done;
    out->layout = layout;
    out->n = n;
    out->n_outliers = n_out;
    out->idx_bytes = idx_bytes;
    /* +1: never malloc(0), whose NULL would look like a failure */
    out->outlier_idx = malloc((size_t)n_out * idx_bytes + 1);
    out->outlier_vals = malloc((size_t)n_out * sizeof *out->outlier_vals + 1);
    if (!emit)
        out->packed = calloc((size_t)packed_len + 1, 1);
    batch = wd__reader_batch(&r);
    units = wd__reader_units(&r);
    c.units = calloc(batch, sizeof *c.units);
    c.err2 = calloc(units + 1, sizeof *c.err2);
    c.max_abs = calloc(units + 1, sizeof *c.max_abs);
    if (!out->outlier_idx || !out->outlier_vals || (!emit && !out->packed) || !c.units || !c.err2 || !c.max_abs) {
        rc = WD_NOMEM();
        goto done;
    }
    /* A folded cut's candidates (position, value: 12 bytes each) go where
     * the codes will go: pass B starts filling packed only after the
     * candidates are done with, so candidates up to packed_len / 12 cost
     * no memory at all (a 136M-element embedding whose sampled window
     * missed, see wd__topk_plan: 1.4M candidates, 16 MiB of its 68 MiB of
     * codes). Beyond that, or when the codes stream out and there is no
     * packed array, a separate buffer of at most WD_TOPK_FOLD_MAX. */
    wd_topk_plan plan;
    const size_t cand_bytes = sizeof(int64_t) + sizeof(float);
    uint64_t in_packed = out->packed ? packed_len / cand_bytes : 0;
    if ((rc = wd__topk_plan(&plan, &r, n_out, in_packed > WD_TOPK_FOLD_MAX ? in_packed : WD_TOPK_FOLD_MAX)))
        goto done;
    c.cut = plan.cut;
    if (plan.fold) {
        if (plan.n_cands <= in_packed) {
            cand_idx = (int64_t *)(void *)out->packed;
            cand_val = (float *)(void *)(out->packed + plan.n_cands * sizeof *cand_idx);
        } else {
            cand_own = malloc((size_t)plan.n_cands * cand_bytes);
            if (!cand_own) {
                rc = WD_NOMEM();
                goto done;
            }
            cand_idx = cand_own;
            cand_val = (float *)(void *)(cand_own + plan.n_cands);
        }
    }

    /* Pass A: outliers out, min/max of the rest, merged in unit order so
     * the result is that of one walk in index order. numpy's min/max
     * propagate NaN; among equal values (+0.0 / -0.0) the later one wins
     * here, where numpy's SIMD lanes may pick the other: that can flip only
     * the sign bit of a zero zero_point, never a decoded value. A unit's
     * extremes never equal one of its ties (their |d| differ), so taking
     * the unit's extremes before its ties keeps "the later one wins". */
    uint64_t j = 0, eq_seen = 0, nan_pos = 0;
    int have = 0, nan_seen = 0;
    float mn = 0, mx = 0, nan_val = 0;
    double norm2 = 0;
    for (size_t u0 = 0; !rc && u0 < units; u0 += batch) {
        size_t u1 = units - u0 < batch ? units : u0 + batch;
        c.u0 = u0;
        if ((rc = wd__reader_run(&r, u0, u1, NULL, NULL, outlier_unit_fn, &c)))
            break;
        for (size_t u = u0; u < u1; u++) {
            const outlier_unit *s = &c.units[u - u0];
            norm2 += s->norm2;
            if (s->have) {
                if (!have || s->mn <= mn)
                    mn = s->mn;
                if (!have || s->mx >= mx)
                    mx = s->mx;
                have = 1;
            }
            int unit_nan = s->nan_seen;
            float unit_nan_val = s->nan_val;
            uint64_t unit_nan_pos = s->nan_pos;
            if (plan.fold && /* decided once all are in: see below */
                (rc = wd__topk_fold_add(&plan, cand_idx, cand_val, &m, s->idx, s->val, s->n, "int4 outliers")))
                break;
            for (size_t e = 0; !plan.fold && e < s->n; e++) {
                float x = s->val[e];
                if (!s->tie[e] || wd__topk_take(&c.cut, c.cut.thr, &eq_seen)) {
                    if (j < n_out) {
                        store_idx(out->outlier_idx, idx_bytes, j, (uint64_t)s->idx[e]);
                        out->outlier_vals[j] = wd__f32_to_f16(x);
                    }
                    j++;
                } else if (isnan(x)) {
                    if (!unit_nan || (uint64_t)s->idx[e] < unit_nan_pos) {
                        unit_nan_val = x;
                        unit_nan_pos = (uint64_t)s->idx[e];
                    }
                    unit_nan = 1;
                } else {
                    extremes_add(&have, &mn, &mx, x);
                }
            }
            if (unit_nan && !nan_seen) {
                nan_val = unit_nan_val;
                nan_pos = unit_nan_pos;
                nan_seen = 1;
            }
        }
    }
    (void)nan_pos;
    if (!rc && plan.fold) {
        /* The candidates, in index order (units were appended in unit
         * order), get the exact cut; those below it are non-outliers, as
         * the ties a cut leaves are in the merge above. Adding them to the
         * extremes after every other element still gives the extremes of
         * one walk in index order: a folded cut's bucket is neither 0 nor
         * inf/NaN's, so they are nonzero finite values, and of equal ones
         * (the only case where "the later one wins" could tell them apart)
         * every copy has the same bits. No NaN is below the cut, so the
         * first NaN left is the first of the units'. */
        if (!(rc = wd__topk_fold_cut(&c.cut, &plan, cand_val, m))) {
            for (uint64_t e = 0; e < m; e++) {
                float x = cand_val[e];
                if (wd__topk_take(&c.cut, wd__abs_key(x), &eq_seen)) {
                    if (j < n_out) {
                        store_idx(out->outlier_idx, idx_bytes, j, (uint64_t)cand_idx[e]);
                        out->outlier_vals[j] = wd__f32_to_f16(x);
                    }
                    j++;
                } else {
                    extremes_add(&have, &mn, &mx, x);
                }
            }
        }
        if (cand_idx == (int64_t *)(void *)out->packed) /* pass B ORs codes into zeros */
            memset(out->packed, 0, (size_t)plan.n_cands * cand_bytes);
    }
    if (!rc && j != n_out)
        rc = wd__error(WD_ERROR, "int4: selected %llu of %llu outliers: the delta source "
                                 "returned different values on another pass",
                       (unsigned long long)j, (unsigned long long)n_out);
    if (rc)
        goto done;

    /* q_min, q_max are Python floats (float64 of the float32 extremes); 0.3.0
     * uses 0 for both when every element is an outlier. */
    double q_min = 0, q_max = 0;
    if (nan_seen)
        q_min = q_max = nan_val;
    else if (have)
        q_min = mn, q_max = mx;
    double range = q_max - q_min; /* float64, rounded once */
    out->zero_point = wd__f64_to_f16(q_min);
    out->scale = wd__f64_to_f16(range / 15.0);
    quantizer qz = {.layout = layout};
    qz.zero_codes = range < 1e-8 || (layout == 2 && wd__f16_to_f32(out->scale) == 0.0f);
    if (qz.zero_codes)
        out->scale = 0x3c00u; /* 1.0 */
    qz.zp = wd__f16_to_f32(out->zero_point);
    qz.scale = wd__f16_to_f32(out->scale);
    qz.qmin_f = (float)q_min;
    qz.range = range;
    qz.range_f = (float)range;
    qz.range_f64 = isfinite(range) && fabs(range) > FLT_MAX;

    /* Pass B: codes, and the fidelity of what a decoder will produce. */
    float lut[16];
    wd__int4_lut(lut, out->scale, out->zero_point);
    c.e = out;
    c.qz = &qz;
    c.lut = lut;
    c.qbuf_len = r.chunk;
    if (layout == 2 && !(c.qbuf = malloc((size_t)r.nworkers * r.chunk))) {
        rc = WD_NOMEM();
        goto done;
    }
    c.packed = out->packed;
    c.packed_at = 0;
    rc = emit ? code_windows(&r, &c, out, units, emit, emit_ud) : wd__reader_run(&r, 0, units, NULL, NULL, code_unit_fn, &c);
    if (rc)
        goto done;
    double err2 = 0, max_abs = 0;
    for (size_t u = 0; u < units; u++) {
        err2 += c.err2[u];
        if (c.max_abs[u] > max_abs || isnan(c.max_abs[u]))
            max_abs = c.max_abs[u];
    }
    wd__fidelity_finish(fid, norm2, err2, max_abs);
done:
    for (size_t u = 0; c.units && u < batch; u++)
        wd__entries_free(c.units[u].idx, c.units[u].val, c.units[u].tie);
    free(c.units);
    free(cand_own);
    free(c.err2);
    free(c.max_abs);
    free(c.qbuf);
    wd__reader_free(&r);
    if (rc)
        wd__int4_clear(out);
    return rc;
}

int wd__int4_encode(wd_int4_delta *out, const wd_delta_src *src, double outlier_fraction,
                    int layout, wd_codec_fidelity *fid)
{
    return int4_encode(out, src, outlier_fraction, layout, fid, NULL, NULL);
}

int wd__int4_encode_stream(wd_int4_delta *out, const wd_delta_src *src, double outlier_fraction,
                           wd_codec_fidelity *fid, wd_int4_codes_fn fn, void *ud)
{
    if (!fn) {
        memset(out, 0, sizeof *out);
        return wd__error(WD_EUSAGE, "int4: no receiver for the codes");
    }
    return int4_encode(out, src, outlier_fraction, 2, fid, fn, ud);
}

/* Two decoded values a code byte (high nibble first), for every byte:
 * built once a call when the run is long enough to pay for it. */
typedef struct {
    float v[256][2];
} pair_lut;

static void pair_lut_init(pair_lut *t, const float lut[16])
{
    for (int b = 0; b < 256; b++) {
        t->v[b][0] = lut[b >> 4];
        t->v[b][1] = lut[b & 15];
    }
}

/* f[i] += lut[code number c0 + i] for i in [0, n); codes[0] is the byte
 * holding code c0. With pairs, a byte's two values are one 8-byte load and
 * the additions go four at a time: the same float32 additions, so the same
 * bits. */
static void apply_codes(float *f, size_t n, uint64_t c0, const uint8_t *codes, const float lut[16],
                        const pair_lut *pairs)
{
    size_t i = 0;
    const uint8_t *c = codes;
    if (n && (c0 & 1)) { /* a low nibble first */
        f[0] = f[0] + lut[*c & 15];
        c++;
        i++;
    }
#if defined(__SSE2__)
    for (; pairs && i + 4 <= n; i += 4, c += 2) {
        __m128i lo = _mm_loadl_epi64((const __m128i *)(const void *)pairs->v[c[0]]),
                hi = _mm_loadl_epi64((const __m128i *)(const void *)pairs->v[c[1]]);
        __m128 v = _mm_castsi128_ps(_mm_unpacklo_epi64(lo, hi));
        _mm_storeu_ps(f + i, _mm_add_ps(_mm_loadu_ps(f + i), v));
    }
#else
    (void)pairs;
#endif
    for (; i + 1 < n; i += 2, c++) {
        f[i] = f[i] + lut[*c >> 4];
        f[i + 1] = f[i + 1] + lut[*c & 15];
    }
    if (i < n)
        f[i] = f[i] + lut[*c >> 4];
}

/* Both layouts' loop over the n elements from begin: the runs of codes
 * between the m outliers, and each outlier's value. Element i's code is
 * number code0 + i, less the outliers before it where codes skip them
 * (layout 1); codes[0] is the byte holding code0. */
static void apply_int4(float *f, size_t n, uint64_t begin, const float lut[16], const uint8_t *codes,
                       uint64_t code0, const void *idx, unsigned idx_bytes, uint64_t m, const void *vals,
                       int layout1)
{
    /* 2 KiB of pairs cost about what 512 elements' lookups do */
    pair_lut pairs;
    int use_pairs = n >= 4096;
    if (use_pairs)
        pair_lut_init(&pairs, lut);
    const pair_lut *pp = use_pairs ? &pairs : NULL;
    size_t i = 0;
    for (uint64_t j = 0; j <= m; j++) {
        size_t at = j < m ? (size_t)((uint64_t)wd__idx_at(idx, idx_bytes, j) - begin) : n;
        if (at > i) {
            uint64_t c = code0 + i - (layout1 ? j : 0);
            apply_codes(f + i, at - i, c, codes + ((c >> 1) - (code0 >> 1)), lut, pp);
        }
        if (j == m)
            break;
        uint16_t h;
        memcpy(&h, (const uint8_t *)vals + 2 * j, 2);
        /* deltatensors 0.2.0 adds the zero it inserted for the outlier
         * first (a -0.0 base becomes +0.0) */
        if (layout1)
            f[at] = f[at] + 0.0f;
        f[at] = f[at] + wd__f16_to_f32(h);
        i = at + 1;
    }
}

void wd__int4_apply_l2(float *f, size_t n, uint64_t begin, const float lut[16], const uint8_t *codes,
                       const void *idx, unsigned idx_bytes, uint64_t m, const void *vals)
{
    apply_int4(f, n, begin, lut, codes, begin, idx, idx_bytes, m, vals, 0);
}

void wd__int4_apply_l1(float *f, size_t n, uint64_t begin, const float lut[16], const uint8_t *codes, uint64_t code0,
                       const void *idx, unsigned idx_bytes, uint64_t m, const void *vals)
{
    apply_int4(f, n, begin, lut, codes, code0, idx, idx_bytes, m, vals, 1);
}

void wd__int4_apply_codes(const wd_int4_delta *e, uint64_t begin, float *buf, size_t count, const uint8_t *codes)
{
    float lut[16];
    wd__int4_lut(lut, e->scale, e->zero_point);
    uint64_t j = wd__idx_lower_bound(e->outlier_idx, e->idx_bytes, e->n_outliers, begin);
    uint64_t j1 = wd__idx_lower_bound(e->outlier_idx, e->idx_bytes, e->n_outliers, begin + count);
    wd__int4_apply_l2(buf, count, begin, lut, codes, (const uint8_t *)e->outlier_idx + j * e->idx_bytes,
                      e->idx_bytes, j1 - j, e->outlier_vals + j);
}

int wd__int4_apply(const wd_int4_delta *e, uint64_t begin, float *buf, size_t count)
{
    if (begin > e->n || count > e->n - begin)
        return wd__error(WD_EUSAGE, "int4: range [%llu, +%zu) outside %llu elements",
                         (unsigned long long)begin, count, (unsigned long long)e->n);
    if (e->layout == 2) {
        wd__int4_apply_codes(e, begin, buf, count, e->packed + begin / 2);
        return 0;
    }
    float lut[16];
    wd__int4_lut(lut, e->scale, e->zero_point);
    /* j: outliers before begin, so begin - j is the first code of the range */
    uint64_t j = wd__idx_lower_bound(e->outlier_idx, e->idx_bytes, e->n_outliers, begin);
    uint64_t j1 = wd__idx_lower_bound(e->outlier_idx, e->idx_bytes, e->n_outliers, begin + count);
    /* packed is NULL when every element is an outlier */
    const uint8_t *codes = e->packed ? e->packed + (begin - j) / 2 : NULL;
    wd__int4_apply_l1(buf, count, begin, lut, codes, begin - j,
                      (const uint8_t *)e->outlier_idx + j * e->idx_bytes, e->idx_bytes, j1 - j, e->outlier_vals + j);
    return 0;
}
