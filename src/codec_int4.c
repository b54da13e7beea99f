/*
 * codec_int4.c - the int4 codec: the largest |delta| kept as float16
 * outliers, the rest quantized to 4-bit codes by min/max over the
 * non-outliers; layout 2 (deltatensors 0.3.0, format v2) and layout 1 (0.2.0).
 */
#include "codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

static void put_code(uint8_t *packed, uint64_t pos, uint8_t q)
{
    packed[pos >> 1] |= (pos & 1) ? q : (uint8_t)(q << 4);
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

int wd__int4_encode(wd_int4_delta *out, const wd_delta_src *src, double outlier_fraction,
                    int layout, wd_codec_fidelity *fid)
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
    int rc = wd__reader_init(&r, src);
    if (rc)
        goto fail;
    out->layout = layout;
    out->n = n;
    out->n_outliers = n_out;
    out->idx_bytes = idx_bytes;
    /* +1: never malloc(0), whose NULL would look like a failure */
    out->outlier_idx = malloc((size_t)n_out * idx_bytes + 1);
    out->outlier_vals = malloc((size_t)n_out * sizeof *out->outlier_vals + 1);
    out->packed = calloc((size_t)packed_len + 1, 1);
    if (!out->outlier_idx || !out->outlier_vals || !out->packed) {
        rc = WD_NOMEM();
        goto fail;
    }

    wd_topk_cut cut;
    if ((rc = wd__topk_find(&cut, &r, n_out)))
        goto fail;

    /* Pass: outliers out, min/max of the rest. numpy's min/max propagate NaN;
     * among equal values (+0.0 / -0.0) the later one wins here, where
     * numpy's SIMD lanes may pick the other: that can flip only the sign bit
     * of a zero zero_point, never a decoded value. */
    uint64_t j = 0, eq_seen = 0;
    int have = 0, nan_seen = 0;
    float mn = 0, mx = 0, nan_val = 0;
    double norm2 = 0;
    for (uint64_t pos = 0; pos < n; pos += r.chunk) {
        size_t cnt = (size_t)(n - pos < r.chunk ? n - pos : r.chunk);
        const float *p;
        if ((rc = wd__reader_get(&r, pos, cnt, &p)))
            goto fail;
        for (size_t i = 0; i < cnt; i++) {
            float d = p[i];
            norm2 += (double)d * d;
            if (wd__topk_take(&cut, wd__abs_key(d), &eq_seen)) {
                if (j < n_out) {
                    store_idx(out->outlier_idx, idx_bytes, j, pos + i);
                    out->outlier_vals[j] = wd__f32_to_f16(d);
                }
                j++;
            } else if (isnan(d)) {
                if (!nan_seen)
                    nan_val = d;
                nan_seen = 1;
            } else {
                if (!have || d <= mn)
                    mn = d;
                if (!have || d >= mx)
                    mx = d;
                have = 1;
            }
        }
    }
    if (j != n_out) {
        rc = wd__error(WD_ERROR, "int4: selected %llu of %llu outliers: the delta source "
                                 "returned different values on another pass",
                       (unsigned long long)j, (unsigned long long)n_out);
        goto fail;
    }

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

    /* Pass: codes, and the fidelity of what a decoder will produce. */
    float lut[16];
    wd__int4_lut(lut, out->scale, out->zero_point);
    double err2 = 0, max_abs = 0;
    uint64_t code_pos = 0;
    j = 0;
    for (uint64_t pos = 0; pos < n; pos += r.chunk) {
        size_t cnt = (size_t)(n - pos < r.chunk ? n - pos : r.chunk);
        const float *p;
        if ((rc = wd__reader_get(&r, pos, cnt, &p)))
            goto fail;
        for (size_t i = 0; i < cnt; i++) {
            float d = p[i];
            int is_out = j < n_out &&
                         (uint64_t)wd__idx_at(out->outlier_idx, idx_bytes, j) == pos + i;
            float decoded = 0.0f;
            if (layout == 2 || !is_out) {
                uint8_t q = code_of(&qz, d);
                put_code(out->packed, code_pos++, q);
                decoded = lut[q];
            }
            if (is_out)
                decoded = wd__f16_to_f32(out->outlier_vals[j++]);
            double e = fabs((double)decoded - d);
            err2 += e * e;
            if (e > max_abs || isnan(e))
                max_abs = e;
        }
    }
    wd__fidelity_finish(fid, norm2, err2, max_abs);
    wd__reader_free(&r);
    return 0;

fail:
    wd__reader_free(&r);
    wd__int4_clear(out);
    return rc;
}

static uint8_t code_at(const uint8_t *packed, uint64_t c)
{
    uint8_t b = packed[c >> 1];
    return (c & 1) ? (uint8_t)(b & 0x0fu) : (uint8_t)(b >> 4);
}

int wd__int4_apply(const wd_int4_delta *e, uint64_t begin, float *buf, size_t count)
{
    if (begin > e->n || count > e->n - begin)
        return wd__error(WD_EUSAGE, "int4: range [%llu, +%zu) outside %llu elements",
                         (unsigned long long)begin, count, (unsigned long long)e->n);
    float lut[16];
    wd__int4_lut(lut, e->scale, e->zero_point);
    /* j: outliers before the current position, i.e. the next one to meet */
    uint64_t j = wd__idx_lower_bound(e->outlier_idx, e->idx_bytes, e->n_outliers, begin);
    uint64_t next = j < e->n_outliers ? (uint64_t)wd__idx_at(e->outlier_idx, e->idx_bytes, j)
                                      : UINT64_MAX;
    for (size_t k = 0; k < count; k++) {
        uint64_t i = begin + k;
        if (i == next) {
            float v = wd__f16_to_f32(e->outlier_vals[j]);
            if (e->layout == 1) /* the zero inserted for the outlier is added first */
                buf[k] = buf[k] + 0.0f;
            buf[k] = buf[k] + v;
            j++;
            next = j < e->n_outliers ? (uint64_t)wd__idx_at(e->outlier_idx, e->idx_bytes, j)
                                     : UINT64_MAX;
        } else {
            uint64_t c = e->layout == 2 ? i : i - j;
            buf[k] = buf[k] + lut[code_at(e->packed, c)];
        }
    }
    return 0;
}
