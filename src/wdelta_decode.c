/*
 * wdelta_decode.c - one .wdelta tensor's delta decoded piece by piece onto
 * float32 base values, reading its arrays forward from the file (see
 * wdelta_decode.h).
 */
#include "wdelta_decode.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dtype.h"
#include "error.h"

/* Index entries read at a time while seeking (8 KiB at most, in the window
 * buffer td->bi, which holds min(entries, WD__DEC_BLOCK) of them), and the
 * first refill's size after a seek. */
#define SEEK_READ 1024u

void wd__wdelta_dec_free(wd__wdelta_dec *td)
{
    free(td->bi);
    free(td->bv);
    free(td->pi);
    free(td->pv);
    free(td->bytes);
    free(td->scales);
    memset(td, 0, sizeof *td);
}

int wd__wdelta_dec_init(wd__wdelta_dec *td, const wd__wdelta *d, const wd__wdelta_tensor *t)
{
    memset(td, 0, sizeof *td);
    td->d = d;
    td->t = t;
    td->prev = -1;
    td->grow = SEEK_READ;
    int rc = 0;
    if (t->strategy == WD__WS_QUANTIZED) {
        /* an empty tensor (which deltatensors cannot read back) has nothing
         * to decode; otherwise the reader saw n_cols match the shape */
        if (t->n_cols == 0 && t->n)
            return wd__error(WD_EBADINPUT, ".wdelta tensor '%s': quantized with no columns",
                             t->name);
        td->bytes = malloc(WD__DEC_PIECE / 8 + 8);
        td->scales = malloc((WD__DEC_PIECE + 2) * sizeof *td->scales);
        return td->bytes && td->scales ? 0 : WD_NOMEM();
    }
    if (t->strategy == WD__WS_SPARSE) {
        td->ifield = WD__WF_INDICES;
        td->fi = wd__wdelta_field_of(t, WD__WF_INDICES);
        td->fv = wd__wdelta_field_of(t, WD__WF_VALUES);
    } else {
        td->ifield = WD__WF_OUTLIER_IDX;
        td->fi = wd__wdelta_field_of(t, WD__WF_OUTLIER_IDX);
        td->fv = wd__wdelta_field_of(t, WD__WF_OUTLIER_VALS);
        const wd__wdelta_field *fs = wd__wdelta_field_of(t, WD__WF_SCALE);
        const wd__wdelta_field *fz = wd__wdelta_field_of(t, WD__WF_ZERO_POINT);
        if ((rc = wd__wdelta_pread(d, fs, 0, &td->scale, 2)) ||
            (rc = wd__wdelta_pread(d, fz, 0, &td->zero_point, 2)))
            return rc;
        if (!(td->bytes = malloc(WD__DEC_PIECE / 2 + 8)))
            return WD_NOMEM();
    }
    td->isz = (unsigned)wd__dtype_size(td->fi->dtype);
    td->vsz = (unsigned)wd__dtype_size(td->fv->dtype);
    td->total = td->fi->count;
    size_t win = td->total < WD__DEC_BLOCK ? (size_t)td->total : WD__DEC_BLOCK;
    size_t per = td->total < WD__DEC_PIECE ? (size_t)td->total : WD__DEC_PIECE;
    td->bi = malloc(win * td->isz + 8);
    td->bv = malloc(win * td->vsz + 8);
    td->pi = malloc(per * sizeof *td->pi + 8);
    td->pv = malloc(per * td->vsz + 8);
    return td->bi && td->bv && td->pi && td->pv ? 0 : WD_NOMEM();
}

static int refill(wd__wdelta_dec *td)
{
    uint64_t left = td->total - td->fetched;
    size_t cnt = left < td->grow ? (size_t)left : td->grow;
    td->grow = td->grow < WD__DEC_BLOCK / 2 ? 2 * td->grow : WD__DEC_BLOCK;
    int rc = wd__wdelta_pread(td->d, td->fi, td->fetched * td->isz, td->bi, cnt * td->isz);
    if (!rc)
        rc = wd__wdelta_pread(td->d, td->fv, td->fetched * td->vsz, td->bv, cnt * td->vsz);
    /* indices come from the file: in range and increasing before they address memory */
    if (!rc)
        rc = wd__wdelta_check_indices(td->t, td->ifield, td->bi, td->fi->dtype, cnt, td->fetched,
                                      td->t->n, 1, &td->prev);
    td->fetched += cnt;
    td->blen = cnt;
    td->bpos = 0;
    return rc;
}

int wd__wdelta_dec_seek(wd__wdelta_dec *td, uint64_t b)
{
    if (!td->fi) /* quantized: nothing carried from piece to piece */
        return 0;
    /* The first entry with index >= b. Each step reads SEEK_READ entries
     * around a guess; the entries of deltatensors' files spread evenly
     * enough over a tensor that interpolating between the values known
     * around [lo, hi) usually lands the window on the answer in one read
     * (a binary search read one 4-byte index per step, ~20 preads a seek,
     * tens of thousands a load). Every other step bisects instead, so that
     * a skewed array still costs O(log) reads. Values are not trusted
     * here: unsorted entries give some position in [0, total], and the
     * caller's check that pieces chain up refuses the file. */
    uint64_t lo = 0, hi = td->total;
    int64_t vlo = 0, vhi = (int64_t)td->t->n; /* values known just before lo and at hi */
    unsigned step = 0;
    while (lo < hi) {
        uint64_t span = hi - lo, start = lo;
        if (span > SEEK_READ) {
            uint64_t guess = lo + span / 2;
            if (!(step++ & 1) && vhi > vlo) {
                double frac = ((double)(int64_t)b - (double)vlo) / ((double)vhi - (double)vlo);
                frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
                guess = lo + (uint64_t)(frac * (double)span);
            }
            start = guess > lo + SEEK_READ / 2 ? guess - SEEK_READ / 2 : lo;
            if (start > hi - SEEK_READ)
                start = hi - SEEK_READ;
        }
        size_t cnt = hi - start < SEEK_READ ? (size_t)(hi - start) : SEEK_READ;
        int rc = wd__wdelta_pread(td->d, td->fi, start * td->isz, td->bi, cnt * td->isz);
        if (rc)
            return rc;
        int64_t first = wd__idx_at(td->bi, td->isz, 0), last = wd__idx_at(td->bi, td->isz, cnt - 1);
        if (last < 0 || (uint64_t)last < b) { /* negative: refused when collected */
            lo = start + cnt;
            vlo = last;
        } else if (first >= 0 && (uint64_t)first >= b) {
            hi = start;
            vhi = first;
        } else {
            size_t l = 0, h = cnt - 1; /* entry h is >= b */
            while (l < h) {
                size_t mid = l + (h - l) / 2;
                int64_t v = wd__idx_at(td->bi, td->isz, mid);
                if (v < 0 || (uint64_t)v < b)
                    l = mid + 1;
                else
                    h = mid;
            }
            lo = hi = start + l;
        }
    }
    td->fetched = td->used = lo;
    td->blen = td->bpos = 0;
    td->prev = -1;
    td->grow = SEEK_READ;
    return 0;
}

/* Gathers the entries in [b, e) into pi/pv, indices made relative to origin
 * (<= b). Pieces must come in increasing order and cover the tensor. */
static int collect(wd__wdelta_dec *td, uint64_t b, uint64_t e, uint64_t origin)
{
    td->m = 0;
    while (td->used < td->total) {
        int rc;
        if (td->bpos == td->blen && (rc = refill(td)))
            return rc;
        int64_t v = wd__idx_at(td->bi, td->isz, td->bpos);
        if ((uint64_t)v >= e)
            break;
        if ((uint64_t)v < b) /* only if a caller skipped a piece */
            return wd__error(WD_ERROR, "internal error: .wdelta pieces out of order");
        td->pi[td->m] = v - (int64_t)origin;
        memcpy((uint8_t *)td->pv + td->m * td->vsz, td->bv + td->bpos * td->vsz, td->vsz);
        td->m++;
        td->bpos++;
        td->used++;
    }
    return 0;
}

int wd__wdelta_dec_apply(wd__wdelta_dec *td, uint64_t b, size_t cnt, float *buf, float *d)
{
    const wd__wdelta_tensor *t = td->t;
    uint64_t e = b + cnt;
    int rc;
    if (cnt == 0)
        return 0;
    if (t->strategy == WD__WS_QUANTIZED) {
        /* Each row segment [s, r_end) goes through a view of the piece whose
         * one row ends at r_end: its bit i is the piece's bit i (the piece
         * starts on a byte), and its single scale is that row's. */
        uint64_t nc = t->n_cols, r0 = b / nc, r1 = (e - 1) / nc;
        const wd__wdelta_field *fsc = wd__wdelta_field_of(t, WD__WF_SCALES);
        const wd__wdelta_field *fsg = wd__wdelta_field_of(t, WD__WF_PACKED_SIGNS);
        if ((rc = wd__wdelta_pread(td->d, fsc, r0 * 2, td->scales, (size_t)(r1 - r0 + 1) * 2)) ||
            (rc = wd__wdelta_pread(td->d, fsg, b / 8, td->bytes, (size_t)((e + 7) / 8 - b / 8))))
            return rc;
        for (uint64_t s = b; s < e;) {
            uint64_t r = s / nc, r_end = (r + 1) * nc < e ? (r + 1) * nc : e;
            wd_quant_delta v = {.n = r_end - b, .n_cols = r_end - b,
                                .scales = &td->scales[r - r0], .packed_signs = td->bytes};
            if ((rc = wd__quant_apply(&v, s - b, buf + (s - b), (size_t)(r_end - s))))
                return rc;
            s = r_end;
        }
        return 0;
    }
    if (d)
        for (size_t i = 0; i < cnt; i++)
            d[i] = 0.0f;
    float *target = d ? d : buf;
    if (t->strategy == WD__WS_SPARSE) {
        if ((rc = collect(td, b, e, b)))
            return rc;
        if (d) {
            for (size_t j = 0; j < td->m; j++)
                memcpy(&d[td->pi[j]], (uint8_t *)td->pv + 4 * j, 4);
        } else {
            wd_sparse_delta v = {.n = cnt, .k = td->m, .indices = td->pi, .values = td->pv};
            if ((rc = wd__sparse_apply(&v, 0, buf, cnt)))
                return rc;
        }
    } else if (t->int4_layout == 2) {
        /* every position has a code: the piece's codes start at byte b / 2 */
        if ((rc = collect(td, b, e, b)) ||
            (rc = wd__wdelta_pread(td->d, wd__wdelta_field_of(t, WD__WF_PACKED), b / 2,
                                   td->bytes, (cnt + 1) / 2)))
            return rc;
        wd_int4_delta v = {.layout = 2, .n = cnt, .n_outliers = td->m, .idx_bytes = 8,
                           .outlier_idx = td->pi, .outlier_vals = td->pv, .scale = td->scale,
                           .zero_point = td->zero_point, .packed = td->bytes};
        if ((rc = wd__int4_apply(&v, 0, target, cnt)))
            return rc;
    } else {
        /* layout 1: position p reads code p - (outliers before p). The piece's
         * first code c0 may sit in a low nibble; then the view starts one
         * element early, on the code before it, and decoding starts at 1. */
        uint64_t c0 = b - td->used, origin = (c0 & 1) ? b - 1 : b;
        if ((rc = collect(td, b, e, origin)))
            return rc;
        uint64_t cstart = c0 - (b - origin), cend = c0 + (cnt - td->m);
        size_t nb = (size_t)((cend + 1) / 2 - cstart / 2);
        if (nb && (rc = wd__wdelta_pread(td->d, wd__wdelta_field_of(t, WD__WF_PACKED),
                                         cstart / 2, td->bytes, nb)))
            return rc;
        wd_int4_delta v = {.layout = 1, .n = e - origin, .n_outliers = td->m, .idx_bytes = 8,
                           .outlier_idx = td->pi, .outlier_vals = td->pv, .scale = td->scale,
                           .zero_point = td->zero_point, .packed = td->bytes};
        if ((rc = wd__int4_apply(&v, b - origin, target, cnt)))
            return rc;
    }
    if (d)
        for (size_t i = 0; i < cnt; i++)
            buf[i] = buf[i] + d[i];
    return 0;
}
