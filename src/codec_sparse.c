/*
 * codec_sparse.c - the sparse codec (the k largest |delta| as sorted int64
 * indices and float32 values) and the streaming pieces the int4 codec shares
 * with it: the chunked delta reader and top-k selection by histogram passes.
 */
#include "codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

int wd__check_sorted_idx(const void *idx, unsigned idx_bytes, uint64_t count, uint64_t n,
                         const char *what)
{
    if (idx_bytes != 4 && idx_bytes != 8)
        return wd__error(WD_EBADINPUT, "%s: index width %u", what, idx_bytes);
    if (count && !idx)
        return wd__error(WD_EBADINPUT, "%s: missing array", what);
    int64_t prev = -1;
    for (uint64_t i = 0; i < count; i++) {
        int64_t v = wd__idx_at(idx, idx_bytes, i);
        if (v < 0 || (uint64_t)v >= n)
            return wd__error(WD_EBADINPUT, "%s[%llu] = %lld is outside [0, %llu)", what,
                             (unsigned long long)i, (long long)v, (unsigned long long)n);
        if (v <= prev)
            return wd__error(WD_EBADINPUT, "%s[%llu] = %lld does not increase (after %lld)",
                             what, (unsigned long long)i, (long long)v, (long long)prev);
        prev = v;
    }
    return 0;
}

/* ---- Fidelity ------------------------------------------------------------- */

void wd__fidelity_finish(wd_codec_fidelity *fid, double norm2, double err2, double max_abs)
{
    if (!fid)
        return;
    fid->norm = sqrt(norm2);
    fid->err = sqrt(err2 > 0 ? err2 : 0);
    if (fid->norm > 0)
        fid->rel_error = fid->err / fid->norm;
    else if (fid->err == 0)
        fid->rel_error = 0;
    else
        fid->rel_error = isnan(fid->err) ? NAN : INFINITY;
    fid->max_abs_error = max_abs;
}

/* ---- sparse --------------------------------------------------------------- */

uint64_t wd__sparse_k(uint64_t n, double sparsity)
{
    /* Python: int(len(flat) * (1.0 - sparsity)), truncation of a float64
     * product; the max(1, ...) then cannot exceed a non-empty tensor. */
    double prod = (double)n * (1.0 - sparsity);
    uint64_t k = prod >= (double)n ? n : (prod > 0 ? (uint64_t)prod : 0);
    if (k < 1)
        k = 1;
    return k > n ? n : k;
}

void wd__sparse_clear(wd_sparse_delta *s)
{
    if (!s)
        return;
    free(s->indices);
    free(s->values);
    memset(s, 0, sizeof *s);
}

/* Kept entries of one unit, in index order. Entries whose key equals the
 * cut's threshold are marked: how many of those are taken depends on the
 * units before, so the merge decides. */
typedef struct {
    int64_t *idx;
    float *val;
    uint8_t *tie;
    size_t n, cap;
    double norm2, err2, max_abs; /* over the unit; err2 and max_abs without ties */
} sparse_unit;

typedef struct {
    wd_topk_cut cut;
    size_t u0;
    sparse_unit *units; /* one per unit of the batch */
} sparse_ctx;

static void max_update(double *max_abs, double e)
{
    if (e > *max_abs || isnan(e))
        *max_abs = e;
}

/* Kept positions decode exactly (d' = d); the others decode to 0. */
static int sparse_unit_fn(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    (void)worker;
    sparse_ctx *c = p;
    sparse_unit *s = &c->units[u - c->u0];
    s->n = 0;
    s->norm2 = s->err2 = s->max_abs = 0;
    uint32_t thr = c->cut.thr;
    double acc[4] = {0, 0, 0, 0}; /* ||d||^2 without one long chain of adds */
    for (size_t i = 0; i < count; i++)
        acc[i & 3] += (double)d[i] * d[i];
    s->norm2 = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (size_t i = 0; i < count; i++) {
        double x = d[i];
        uint32_t key = wd__abs_key(d[i]);
        if (key >= thr) {
            if (s->n == s->cap && wd__entries_grow(&s->idx, &s->val, &s->tie, &s->cap, s->n + 1))
                return WD_NOMEM();
            s->idx[s->n] = (int64_t)(begin + i);
            s->val[s->n] = d[i];
            s->tie[s->n] = key == thr;
            s->n++;
        } else {
            s->err2 += x * x;
            max_update(&s->max_abs, fabs(x));
        }
    }
    return 0;
}

int wd__sparse_encode_stream(const wd_delta_src *src, double sparsity, wd_sparse_emit_fn emit, void *ud,
                             uint64_t *out_k, wd_codec_fidelity *fid)
{
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return wd__error(WD_EUSAGE, "sparsity must be in [0, 1), got %g", sparsity);
    if (!src)
        return wd__error(WD_EUSAGE, "no delta source");
    uint64_t n = src->n;
    uint64_t k = wd__sparse_k(n, sparsity);

    wd__reader r;
    sparse_ctx c;
    memset(&c, 0, sizeof c);
    size_t batch = 0;
    int rc = wd__reader_init(&r, src);
    if (rc)
        goto done;
    batch = wd__reader_batch(&r);
    if (!(c.units = calloc(batch, sizeof *c.units))) {
        rc = WD_NOMEM();
        goto done;
    }
    if ((rc = wd__topk_find(&c.cut, &r, k)))
        goto done;

    /* Final pass, a batch of units at a time: workers collect each unit's
     * entries, then they go out in unit order, so indices come out sorted
     * and ties at the cut are taken first by index. Untaken ties are
     * squeezed out of a unit's arrays in place before it is emitted. */
    uint64_t j = 0, eq_seen = 0;
    double norm2 = 0, err2 = 0, max_abs = 0;
    size_t units = wd__reader_units(&r);
    for (size_t u0 = 0; !rc && u0 < units; u0 += batch) {
        size_t u1 = units - u0 < batch ? units : u0 + batch;
        c.u0 = u0;
        if ((rc = wd__reader_run(&r, u0, u1, NULL, NULL, sparse_unit_fn, &c)))
            break;
        for (size_t u = u0; !rc && u < u1; u++) {
            sparse_unit *s = &c.units[u - u0];
            norm2 += s->norm2;
            err2 += s->err2;
            max_update(&max_abs, s->max_abs);
            size_t kept = 0;
            for (size_t e = 0; e < s->n; e++) {
                if (s->tie[e] && !wd__topk_take(&c.cut, c.cut.thr, &eq_seen)) {
                    double x = s->val[e];
                    err2 += x * x;
                    max_update(&max_abs, fabs(x));
                    continue;
                }
                s->idx[kept] = s->idx[e];
                s->val[kept] = s->val[e];
                kept++;
            }
            j += kept;
            if (j > k)
                break;
            if (kept)
                rc = emit(ud, s->idx, s->val, kept);
        }
    }
    if (!rc && j != k) /* the source changed between passes */
        rc = wd__error(WD_ERROR, "sparse: selected %llu of %llu entries: the delta source "
                                 "returned different values on another pass",
                       (unsigned long long)j, (unsigned long long)k);
    if (!rc) {
        wd__fidelity_finish(fid, norm2, err2, max_abs);
        if (out_k)
            *out_k = k;
    }
done:
    for (size_t u = 0; c.units && u < batch; u++)
        wd__entries_free(c.units[u].idx, c.units[u].val, c.units[u].tie);
    free(c.units);
    wd__reader_free(&r);
    return rc;
}

/* wd_sparse_emit_fn into the arrays of a wd_sparse_delta sized for k. */
static int emit_to_arrays(void *ud, const int64_t *idx, const float *val, size_t count)
{
    wd_sparse_delta *out = ud;
    memcpy(out->indices + out->k, idx, count * sizeof *idx);
    memcpy(out->values + out->k, val, count * sizeof *val);
    out->k += count;
    return 0;
}

int wd__sparse_encode(wd_sparse_delta *out, const wd_delta_src *src, double sparsity,
                      wd_codec_fidelity *fid)
{
    memset(out, 0, sizeof *out);
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return wd__error(WD_EUSAGE, "sparsity must be in [0, 1), got %g", sparsity);
    if (!src)
        return wd__error(WD_EUSAGE, "no delta source");
    uint64_t k = wd__sparse_k(src->n, sparsity);
    if (k > SIZE_MAX / sizeof(int64_t))
        return WD_NOMEM();
    out->n = src->n;
    /* +1: malloc(0) may return NULL, and an empty tensor is no failure */
    out->indices = malloc((size_t)k * sizeof *out->indices + 1);
    out->values = malloc((size_t)k * sizeof *out->values + 1);
    /* emit_to_arrays counts k up as it fills; the stream never exceeds k */
    int rc = !out->indices || !out->values ? WD_NOMEM()
                                           : wd__sparse_encode_stream(src, sparsity, emit_to_arrays, out, NULL, fid);
    if (rc)
        wd__sparse_clear(out);
    return rc;
}

int wd__sparse_check(const wd_sparse_delta *s)
{
    if (s->k > s->n)
        return wd__error(WD_EBADINPUT, "sparse: %llu entries for %llu elements",
                         (unsigned long long)s->k, (unsigned long long)s->n);
    if (s->k && !s->values)
        return wd__error(WD_EBADINPUT, "sparse: missing values");
    return wd__check_sorted_idx(s->indices, 8, s->k, s->n, "sparse indices");
}

uint64_t wd__idx_lower_bound(const void *idx, unsigned idx_bytes, uint64_t count, uint64_t pos)
{
    uint64_t lo = 0, hi = count;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if ((uint64_t)wd__idx_at(idx, idx_bytes, mid) < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int wd__sparse_apply(const wd_sparse_delta *s, uint64_t begin, float *buf, size_t count)
{
    if (begin > s->n || count > s->n - begin)
        return wd__error(WD_EUSAGE, "sparse: range [%llu, +%zu) outside %llu elements",
                         (unsigned long long)begin, count, (unsigned long long)s->n);
    uint64_t end = begin + count;
    for (uint64_t j = wd__idx_lower_bound(s->indices, 8, s->k, begin);
         j < s->k && (uint64_t)s->indices[j] < end; j++) {
        float *x = &buf[(uint64_t)s->indices[j] - begin];
        *x = *x + s->values[j];
    }
    return 0;
}
