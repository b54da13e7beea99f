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

/* ---- Delta source over memory ------------------------------------------- */

static int mem_read(void *ud, uint64_t begin, size_t count, float *out)
{
    memcpy(out, (const float *)ud + begin, count * sizeof *out);
    return 0;
}

void wd__delta_src_mem(wd_delta_src *src, const float *deltas, uint64_t n)
{
    memset(src, 0, sizeof *src);
    src->n = n;
    src->read = mem_read;
    /* The pointer is only read through; the callback signature is shared with
     * sources that fill buffers, hence the cast. */
    src->ud = (void *)(uintptr_t)deltas;
}

/* ---- Reader --------------------------------------------------------------- */

int wd__reader_init(wd__reader *r, const wd_delta_src *src)
{
    memset(r, 0, sizeof *r);
    r->src = src;
    if (!src || !src->read)
        return wd__error(WD_EUSAGE, "delta source without a read function");
    size_t chunk = src->chunk ? src->chunk : WD_CODEC_CHUNK;
    if (chunk < WD_CODEC_BLOCK)
        chunk = WD_CODEC_BLOCK;
    r->chunk = chunk;
    if (src->n == 0)
        return 0;
    /* A tensor that fits in one chunk is read once and kept: the later passes
     * then cost no I/O, and memory stays within one chunk anyway. */
    size_t alloc = chunk;
    if (src->n <= chunk) {
        alloc = (size_t)src->n;
        r->cached = 1;
    }
    r->buf = malloc(alloc * sizeof *r->buf);
    if (!r->buf)
        return WD_NOMEM();
    if (r->cached) {
        int rc = src->read(src->ud, 0, alloc, r->buf);
        if (rc)
            return rc;
    }
    return 0;
}

int wd__reader_get(wd__reader *r, uint64_t begin, size_t count, const float **out)
{
    if (count > r->chunk || begin > r->src->n || count > r->src->n - begin)
        return wd__error(WD_EUSAGE, "delta read [%llu, +%zu) outside the tensor",
                         (unsigned long long)begin, count);
    if (r->cached) {
        *out = r->buf + begin;
        return 0;
    }
    int rc = r->src->read(r->src->ud, begin, count, r->buf);
    if (rc)
        return rc;
    *out = r->buf;
    return 0;
}

void wd__reader_free(wd__reader *r)
{
    if (!r)
        return;
    free(r->buf);
    r->buf = NULL;
}

/* ---- Top-k by histogram passes -------------------------------------------- */

#define HI_BITS 16 /* keys are 31 bits: 16 high bits, then 15 low bits */
#define LO_BITS 15

/* Finds the bucket where the k-th largest falls, scanning from the top.
 * *above gets how many elements lie in higher buckets. Requires 1 <= k <=
 * total count. */
static size_t bucket_of_kth(const uint64_t *hist, size_t nbins, uint64_t k, uint64_t *above)
{
    uint64_t acc = 0;
    size_t b = nbins;
    while (b-- > 0) {
        if (acc + hist[b] >= k)
            break;
        acc += hist[b];
    }
    *above = acc;
    return b;
}

int wd__topk_find(wd_topk_cut *out, wd__reader *r, uint64_t k)
{
    uint64_t n = r->src->n;
    if (k > n)
        return wd__error(WD_EUSAGE, "top-%llu of %llu elements", (unsigned long long)k,
                         (unsigned long long)n);
    if (k == 0) { /* keys never exceed 0x7fffffff: nothing is above */
        out->thr = UINT32_MAX;
        out->take_eq = 0;
        return 0;
    }
    if (k == n) {
        out->thr = 0;
        out->take_eq = UINT64_MAX;
        return 0;
    }

    uint64_t *hist = calloc((size_t)1 << HI_BITS, sizeof *hist);
    if (!hist)
        return WD_NOMEM();
    int rc = 0;
    const float *p;

    /* Pass 1: the high 16 bits of every key. */
    for (uint64_t pos = 0; pos < n; pos += r->chunk) {
        size_t cnt = (size_t)(n - pos < r->chunk ? n - pos : r->chunk);
        if ((rc = wd__reader_get(r, pos, cnt, &p)))
            goto done;
        for (size_t i = 0; i < cnt; i++)
            hist[wd__abs_key(p[i]) >> LO_BITS]++;
    }
    uint64_t above;
    uint32_t b1 = (uint32_t)bucket_of_kth(hist, (size_t)1 << HI_BITS, k, &above);
    uint64_t need = k - above; /* 1 .. hist[b1] */
    if (need == hist[b1]) {
        /* The whole bucket goes: no second pass. */
        out->thr = b1 << LO_BITS;
        out->take_eq = UINT64_MAX;
        goto done;
    }

    /* Pass 2: the low 15 bits inside bucket b1. */
    memset(hist, 0, ((size_t)1 << LO_BITS) * sizeof *hist);
    for (uint64_t pos = 0; pos < n; pos += r->chunk) {
        size_t cnt = (size_t)(n - pos < r->chunk ? n - pos : r->chunk);
        if ((rc = wd__reader_get(r, pos, cnt, &p)))
            goto done;
        for (size_t i = 0; i < cnt; i++) {
            uint32_t key = wd__abs_key(p[i]);
            if ((key >> LO_BITS) == b1)
                hist[key & ((1u << LO_BITS) - 1)]++;
        }
    }
    uint64_t above2;
    uint32_t b2 = (uint32_t)bucket_of_kth(hist, (size_t)1 << LO_BITS, need, &above2);
    out->thr = (b1 << LO_BITS) | b2;
    out->take_eq = need - above2;
    if (out->take_eq == hist[b2])
        out->take_eq = UINT64_MAX;
done:
    free(hist);
    return rc;
}

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

int wd__sparse_encode(wd_sparse_delta *out, const wd_delta_src *src, double sparsity,
                      wd_codec_fidelity *fid)
{
    memset(out, 0, sizeof *out);
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return wd__error(WD_EUSAGE, "sparsity must be in [0, 1), got %g", sparsity);
    if (!src)
        return wd__error(WD_EUSAGE, "no delta source");
    uint64_t n = src->n;
    uint64_t k = wd__sparse_k(n, sparsity);
    if (k > SIZE_MAX / sizeof(int64_t))
        return WD_NOMEM();

    wd__reader r;
    int rc = wd__reader_init(&r, src);
    if (rc)
        goto fail;
    out->n = n;
    out->k = k;
    /* +1: malloc(0) may return NULL, and an empty tensor is no failure */
    out->indices = malloc((size_t)k * sizeof *out->indices + 1);
    out->values = malloc((size_t)k * sizeof *out->values + 1);
    if (!out->indices || !out->values) {
        rc = WD_NOMEM();
        goto fail;
    }

    wd_topk_cut cut;
    if ((rc = wd__topk_find(&cut, &r, k)))
        goto fail;

    /* Final pass: emit in index order, so indices come out sorted. Kept
     * positions decode exactly (d' = d); the others decode to 0. */
    uint64_t j = 0, eq_seen = 0;
    double norm2 = 0, err2 = 0, max_abs = 0;
    for (uint64_t pos = 0; pos < n; pos += r.chunk) {
        size_t cnt = (size_t)(n - pos < r.chunk ? n - pos : r.chunk);
        const float *p;
        if ((rc = wd__reader_get(&r, pos, cnt, &p)))
            goto fail;
        for (size_t i = 0; i < cnt; i++) {
            double d = p[i];
            norm2 += d * d;
            if (wd__topk_take(&cut, wd__abs_key(p[i]), &eq_seen)) {
                out->indices[j] = (int64_t)(pos + i);
                out->values[j] = p[i];
                j++;
            } else {
                err2 += d * d;
                if (fabs(d) > max_abs || isnan(d))
                    max_abs = fabs(d);
            }
        }
    }
    if (j != k) { /* the source changed between passes */
        rc = wd__error(WD_ERROR, "sparse: selected %llu of %llu entries: the delta source "
                                 "returned different values on another pass",
                       (unsigned long long)j, (unsigned long long)k);
        goto fail;
    }
    wd__fidelity_finish(fid, norm2, err2, max_abs);
    wd__reader_free(&r);
    return 0;

fail:
    wd__reader_free(&r);
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
