/*
 * codec_reader.c - how the lossy encoders read a delta source: in passes of
 * units (chunks, or whatever boundaries an encoder needs), on the thread pool
 * when the source can be read from several threads, and the top-k cut that
 * sparse and int4 share (histograms per worker, added up).
 */
#include "codec.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "pipeline.h"

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

/* ---- Scratch kept across tensors ------------------------------------------ */

int wd__codec_scratch_new(wd_codec_scratch **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : WD_NOMEM();
}

void wd__codec_scratch_trim(wd_codec_scratch *s)
{
    if (!s)
        return;
    for (int w = 0; w < s->n_wbuf; w++)
        free(s->wbuf[w]);
    free(s->wbuf);
    s->wbuf = NULL;
    s->n_wbuf = 0;
    free(s->win);
    s->win = NULL;
    s->win_cap = 0;
}

void wd__codec_scratch_free(wd_codec_scratch *s)
{
    if (!s)
        return;
    wd__codec_scratch_trim(s);
    free(s->hist);
    free(s->lo);
    free(s);
}

int wd__scratch_grow(void **p, size_t *cap, size_t want, size_t esz)
{
    if (*p && want <= *cap)
        return 0;
    free(*p);
    *cap = 0;
    /* +1: never malloc(0) */
    if (!(*p = malloc(want * esz + 1)))
        return WD_NOMEM();
    *cap = want;
    return 0;
}

/* The scratch's chunk buffers, grown to nworkers x chunk floats. */
static int scratch_wbuf(wd_codec_scratch *s, int nworkers, size_t chunk)
{
    if (s->wbuf && s->n_wbuf >= nworkers && s->wbuf_elems >= chunk)
        return 0;
    for (int w = 0; w < s->n_wbuf; w++)
        free(s->wbuf[w]);
    free(s->wbuf);
    s->n_wbuf = 0;
    s->wbuf_elems = chunk;
    if (!(s->wbuf = calloc((size_t)nworkers, sizeof *s->wbuf)))
        return WD_NOMEM();
    s->n_wbuf = nworkers;
    for (int w = 0; w < nworkers; w++)
        if (!(s->wbuf[w] = malloc(chunk * sizeof(float))))
            return WD_NOMEM();
    return 0;
}

/* ---- Reader --------------------------------------------------------------- */

static int src_read(const wd_delta_src *src, int parallel, int worker, uint64_t begin, size_t count, float *out)
{
    return parallel ? src->read_par(src->ud, worker, begin, count, out) : src->read(src->ud, begin, count, out);
}

static void default_range(const void *rctx, size_t u, uint64_t *begin, size_t *count)
{
    const wd__reader *r = rctx;
    uint64_t b = (uint64_t)u * r->chunk, n = r->src->n;
    *begin = b;
    *count = (size_t)(n - b < r->chunk ? n - b : r->chunk);
}

typedef struct wd__run {
    wd__reader *r;
    size_t u0;
    wd__unit_range_fn range;
    const void *rctx;
    wd__unit_fn fn;
    void *ctx;
    int fill; /* filling the cache: read only */
    int rc;   /* a started run that ran at once: its result */
    int pooled; /* a started run on the worker threads */
} run_ctx;

static int run_one(void *p, size_t i, int worker)
{
    run_ctx *c = p;
    wd__reader *r = c->r;
    size_t u = c->u0 + i;
    uint64_t begin;
    size_t count;
    c->range(c->rctx, u, &begin, &count);
    if (count > r->chunk || begin > r->src->n || count > r->src->n - begin)
        return wd__error(WD_EUSAGE, "delta read [%llu, +%zu) outside the tensor", (unsigned long long)begin, count);
    const float *data;
    if (c->fill) {
        return src_read(r->src, r->parallel, worker, begin, count, r->buf + begin);
    } else if (r->cached) {
        data = r->buf + begin;
    } else {
        int rc = src_read(r->src, r->parallel, worker, begin, count, r->wbuf[worker]);
        if (rc)
            return rc;
        data = r->wbuf[worker];
    }
    return c->fn(c->ctx, u, worker, data, begin, count);
}

static int run_units(wd__reader *r, run_ctx *c, size_t n_units)
{
    if (r->parallel)
        return wd__pool_run(r->src->pool, n_units, run_one, c);
    for (size_t i = 0; i < n_units; i++) {
        int rc = run_one(c, i, 0);
        if (rc)
            return rc;
    }
    return 0;
}

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
    r->parallel = src->pool && src->read_par;
    r->nworkers = r->parallel ? wd__pool_size(src->pool) : 1;
    if (src->n == 0)
        return 0;
    size_t cache = src->cache_elems > chunk ? src->cache_elems : chunk;
    if (src->n <= cache) {
        /* Read once and kept: the later passes then cost no I/O. */
        r->cached = 1;
        if (src->cache_buf && src->n <= src->cache_elems) {
            r->buf = src->cache_buf;
        } else {
            r->buf_owned = 1;
            if (!(r->buf = malloc((size_t)src->n * sizeof *r->buf)))
                return WD_NOMEM();
        }
        run_ctx c = {r, 0, default_range, r, NULL, NULL, 1, 0, 0};
        return run_units(r, &c, wd__reader_units(r));
    }
    if (src->scratch) {
        int rc = scratch_wbuf(src->scratch, r->nworkers, chunk);
        if (!rc) {
            r->wbuf = src->scratch->wbuf;
            r->wbuf_borrowed = 1;
        }
        return rc;
    }
    r->wbuf = calloc((size_t)r->nworkers, sizeof *r->wbuf);
    if (!r->wbuf)
        return WD_NOMEM();
    for (int w = 0; w < r->nworkers; w++)
        if (!(r->wbuf[w] = malloc(chunk * sizeof(float))))
            return WD_NOMEM();
    return 0;
}

size_t wd__reader_units(const wd__reader *r)
{
    return (size_t)((r->src->n + r->chunk - 1) / r->chunk);
}

size_t wd__reader_batch(const wd__reader *r)
{
    return (size_t)r->nworkers * 2;
}

int wd__reader_run(wd__reader *r, size_t u0, size_t u1, wd__unit_range_fn range, const void *rctx,
                   wd__unit_fn fn, void *ctx)
{
    if (u1 <= u0)
        return 0;
    run_ctx c = {r, u0, range ? range : default_range, range ? rctx : r, fn, ctx, 0, 0, 0};
    return run_units(r, &c, u1 - u0);
}

int wd__reader_start(wd__reader *r, size_t u0, size_t u1, wd__unit_range_fn range, const void *rctx,
                     wd__unit_fn fn, void *ctx)
{
    if (r->started)
        return wd__error(WD_EUSAGE, "a reader run is already started");
    run_ctx *c = malloc(sizeof *c);
    if (!c)
        return WD_NOMEM();
    *c = (run_ctx){r, u0, range ? range : default_range, range ? rctx : r, fn, ctx, 0, 0, 0};
    r->started = c;
    if (u1 <= u0)
        return 0;
    c->pooled = r->parallel && wd__pool_size(r->src->pool) > 1;
    if (c->pooled)
        wd__pool_start(r->src->pool, u1 - u0, run_one, c);
    else /* no worker thread would run it */
        c->rc = run_units(r, c, u1 - u0);
    return 0;
}

int wd__reader_wait(wd__reader *r)
{
    run_ctx *c = r->started;
    if (!c)
        return 0;
    int rc = c->pooled ? wd__pool_wait(r->src->pool) : c->rc;
    free(c);
    r->started = NULL;
    return rc;
}

void wd__reader_free(wd__reader *r)
{
    if (!r)
        return;
    if (r->started) /* an error path left a run going: its buffers are about to go */
        wd__reader_wait(r);
    if (r->buf_owned)
        free(r->buf);
    r->buf = NULL;
    for (int w = 0; r->wbuf && !r->wbuf_borrowed && w < r->nworkers; w++)
        free(r->wbuf[w]);
    if (!r->wbuf_borrowed)
        free(r->wbuf);
    r->wbuf = NULL;
}

/* ---- Top-k by histogram passes -------------------------------------------- */

void wd__entries_free(int64_t *idx, float *val, uint8_t *tie)
{
    free(idx);
    free(val);
    free(tie);
}

int wd__entries_grow(int64_t **idx, float **val, uint8_t **tie, size_t *cap, size_t want)
{
    if (want <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 4096;
    while (ncap < want)
        ncap *= 2;
    int64_t *i = realloc(*idx, ncap * sizeof *i);
    if (i)
        *idx = i;
    float *v = realloc(*val, ncap * sizeof *v);
    if (v)
        *val = v;
    uint8_t *t = realloc(*tie, ncap);
    if (t)
        *tie = t;
    if (!i || !v || !t)
        return WD_NOMEM();
    *cap = ncap;
    return 0;
}

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

/* Pass 1 of a tensor the reader does not cache also counts the low bits
 * of a window of SPEC_BUCKETS buckets around the bucket where a sample of
 * SPEC_UNITS units, spread over the tensor, puts the k-th largest: when
 * the whole tensor's bucket b1 falls inside (the deltas of a tensor look
 * alike throughout), the exact cut is known after pass 1 without a second
 * pass and without holding candidates; when not, nothing is lost but the
 * sample's reads. Memory: 256 KiB a window bucket per worker slot. */
#define SPEC_UNITS 3
#define SPEC_BUCKETS 5
#define SPEC_MIN_UNITS 8 /* fewer units: the sample would cost too much of a pass */

typedef struct {
    uint64_t *hist; /* nworkers x nbins */
    size_t nbins;
    int second;     /* pass 2: low bits inside bucket b1 */
    uint32_t b1;
    uint64_t *win;  /* pass 1: nworkers x SPEC_BUCKETS << LO_BITS low-bit counts, or NULL */
    uint32_t win_lo; /* first bucket of the window */
    size_t units;   /* the sample run: units of the tensor */
    const wd__reader *r;
} hist_ctx;

static int hist_unit(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    (void)u;
    (void)begin;
    hist_ctx *h = p;
    uint64_t *hist = h->hist + (size_t)worker * h->nbins;
    if (h->second) {
        for (size_t i = 0; i < count; i++) {
            uint32_t key = wd__abs_key(d[i]);
            if ((key >> LO_BITS) == h->b1)
                hist[key & ((1u << LO_BITS) - 1)]++;
        }
    } else if (h->win) {
        uint64_t *win = h->win + ((size_t)worker * SPEC_BUCKETS << LO_BITS);
        for (size_t i = 0; i < count; i++) {
            uint32_t key = wd__abs_key(d[i]);
            hist[key >> LO_BITS]++;
            /* unsigned: keys below the window wrap past it */
            uint32_t off = key - (h->win_lo << LO_BITS);
            if (off < (uint32_t)SPEC_BUCKETS << LO_BITS)
                win[off]++;
        }
    } else {
        for (size_t i = 0; i < count; i++)
            hist[wd__abs_key(d[i]) >> LO_BITS]++;
    }
    return 0;
}

/* Adds the per-worker counts of a (nworkers x len) array into its first row. */
static void sum_workers(uint64_t *a, size_t len, int nworkers)
{
    for (int w = 1; w < nworkers; w++)
        for (size_t b = 0; b < len; b++)
            a[b] += a[(size_t)w * len + b];
}

/* One histogram pass; the per-worker counts are added into h->hist[0..]
 * (and h->win[0..]). */
static int hist_pass(wd__reader *r, hist_ctx *h)
{
    memset(h->hist, 0, (size_t)r->nworkers * h->nbins * sizeof *h->hist);
    size_t win_len = (size_t)SPEC_BUCKETS << LO_BITS;
    if (h->win)
        memset(h->win, 0, (size_t)r->nworkers * win_len * sizeof *h->win);
    int rc = wd__reader_run(r, 0, wd__reader_units(r), NULL, NULL, hist_unit, h);
    if (!rc)
        sum_workers(h->hist, h->nbins, r->nworkers);
    if (!rc && h->win)
        sum_workers(h->win, win_len, r->nworkers);
    return rc;
}

/* Unit i of the sample: the middle of the i-th of SPEC_UNITS equal parts. */
static void sample_range(const void *rctx, size_t i, uint64_t *begin, size_t *count)
{
    const hist_ctx *h = rctx;
    const wd__reader *r = h->r;
    size_t u = (2 * i + 1) * h->units / (2 * SPEC_UNITS);
    uint64_t b = (uint64_t)u * r->chunk, n = r->src->n;
    *begin = b;
    *count = (size_t)(n - b < r->chunk ? n - b : r->chunk);
}

/* Reads the sample and sets h->win_lo around its k-th largest bucket
 * (scaled to the sample's size). */
static int spec_window(wd__reader *r, hist_ctx *h, uint64_t k)
{
    memset(h->hist, 0, (size_t)r->nworkers * h->nbins * sizeof *h->hist);
    h->units = wd__reader_units(r);
    hist_ctx s = *h;
    s.win = NULL;
    int rc = wd__reader_run(r, 0, SPEC_UNITS, sample_range, &s, hist_unit, &s);
    if (rc)
        return rc;
    sum_workers(h->hist, h->nbins, r->nworkers);
    uint64_t m = 0, above;
    for (size_t b = 0; b < h->nbins; b++)
        m += h->hist[b];
    /* k of n is about k * m / n of the sample (k * m < 2^64: m is at most
     * SPEC_UNITS chunks, k < 2^40 for any tensor that fits in memory) */
    double ks = (double)k * (double)m / (double)r->src->n;
    uint64_t kk = ks < 1 ? 1 : ks > (double)m ? m : (uint64_t)ks;
    uint32_t b = (uint32_t)bucket_of_kth(h->hist, h->nbins, kk, &above);
    h->win_lo = b < SPEC_BUCKETS / 2 ? 0 : b - SPEC_BUCKETS / 2;
    if (h->win_lo > (1u << HI_BITS) - SPEC_BUCKETS)
        h->win_lo = (1u << HI_BITS) - SPEC_BUCKETS;
    return 0;
}

/* The cut inside bucket b1 from a histogram of the low 15 bits of its
 * elements' keys: the need-th largest, and how many of the ties at it are
 * taken (all of them as UINT64_MAX). */
static void cut_in_bucket(wd_topk_cut *out, const uint64_t *lo_hist, uint32_t b1, uint64_t need)
{
    uint64_t above2;
    uint32_t b2 = (uint32_t)bucket_of_kth(lo_hist, (size_t)1 << LO_BITS, need, &above2);
    out->thr = (b1 << LO_BITS) | b2;
    out->take_eq = need - above2;
    if (out->take_eq == lo_hist[b2])
        out->take_eq = UINT64_MAX;
}

int wd__topk_plan(wd_topk_plan *p, wd__reader *r, uint64_t k, uint64_t max_cands)
{
    memset(p, 0, sizeof *p);
    uint64_t n = r->src->n;
    if (k > n)
        return wd__error(WD_EUSAGE, "top-%llu of %llu elements", (unsigned long long)k,
                         (unsigned long long)n);
    if (k == 0) { /* keys never exceed 0x7fffffff: nothing is above */
        p->cut.thr = UINT32_MAX;
        p->cut.take_eq = 0;
        return 0;
    }
    if (k == n) {
        p->cut.thr = 0;
        p->cut.take_eq = UINT64_MAX;
        return 0;
    }

    /* Every pass clears what it counts in (hist_pass, spec_window). */
    wd_codec_scratch *s = r->src->scratch;
    p->scratch = s;
    size_t hist_len = (size_t)r->nworkers << HI_BITS, win_len = (size_t)r->nworkers * SPEC_BUCKETS << LO_BITS;
    hist_ctx h = {NULL, (size_t)1 << HI_BITS, 0, 0, NULL, 0, 0, r};
    int rc = 0;
    if (s) {
        if ((rc = wd__scratch_grow((void **)&s->hist, &s->hist_cap, hist_len, sizeof *s->hist)))
            return rc;
        h.hist = s->hist;
    } else if (!(h.hist = malloc(hist_len * sizeof *h.hist))) {
        return WD_NOMEM();
    }
    /* Each pass reads the source again: worth a sample to save one. */
    if (!r->cached && !r->src->topk_two_pass && wd__reader_units(r) >= SPEC_MIN_UNITS) {
        if (s) {
            if ((rc = wd__scratch_grow((void **)&s->win, &s->win_cap, win_len, sizeof *s->win)))
                goto done;
            h.win = s->win;
        } else if (!(h.win = malloc(win_len * sizeof *h.win))) {
            rc = WD_NOMEM();
            goto done;
        }
        if ((rc = spec_window(r, &h, k)))
            goto done;
    }
    /* Pass 1: the high 16 bits of every key. */
    if ((rc = hist_pass(r, &h)))
        goto done;
    uint64_t above;
    uint32_t b1 = (uint32_t)bucket_of_kth(h.hist, h.nbins, k, &above);
    uint64_t need = k - above; /* 1 .. hist[b1] */
    if (need == h.hist[b1]) {
        /* The whole bucket goes: no second pass. */
        p->cut.thr = b1 << LO_BITS;
        p->cut.take_eq = UINT64_MAX;
        goto done;
    }
    if (h.win && b1 - h.win_lo < SPEC_BUCKETS) {
        /* The sample was right: pass 1 counted the low bits of b1 too. */
        cut_in_bucket(&p->cut, h.win + ((size_t)(b1 - h.win_lo) << LO_BITS), b1, need);
        p->spec_hit = 1;
        goto done;
    }

    /* Folding hands the encoding pass everything at or above bucket b1.
     * Not for bucket 0 (it holds both zeros, and which of -0.0 and +0.0
     * becomes int4's extreme depends on where each lies in index order),
     * nor for the bucket of inf and NaN (the encoders' NaN rules look at
     * positions too): below the cut, only nonzero finite values whose
     * order cannot matter are then left for the merge. */
    uint64_t n_cands = above + h.hist[b1];
    if (b1 != 0 && b1 < (0x7f800000u >> LO_BITS) && n_cands <= max_cands && !r->src->topk_two_pass) {
        p->fold = 1;
        p->cut.thr = b1 << LO_BITS;
        p->cut.take_eq = UINT64_MAX;
        p->need = need;
        p->hist_b1 = h.hist[b1];
        p->n_cands = n_cands;
        goto done;
    }

    /* Pass 2: the low 15 bits inside bucket b1. */
    if (!s)
        free(h.win);
    h.win = NULL;
    h.nbins = (size_t)1 << LO_BITS;
    h.second = 1;
    h.b1 = b1;
    if ((rc = hist_pass(r, &h)))
        goto done;
    cut_in_bucket(&p->cut, h.hist, b1, need);
done:
    if (!s) {
        free(h.hist);
        free(h.win);
    }
    return rc;
}

int wd__topk_find(wd_topk_cut *out, wd__reader *r, uint64_t k)
{
    wd_topk_plan p;
    int rc = wd__topk_plan(&p, r, k, 0);
    *out = p.cut;
    return rc;
}

int wd__topk_fold_add(const wd_topk_plan *p, int64_t *cand_idx, float *cand_val, uint64_t *m,
                      const int64_t *idx, const float *val, size_t n, const char *codec)
{
    if (n > p->n_cands - *m)
        return wd__error(WD_ERROR, "%s: more candidates than the first pass counted: the delta source "
                                   "returned different values on another pass", codec);
    if (n) { /* a unit without entries may have no arrays yet */
        memcpy(cand_idx + *m, idx, n * sizeof *cand_idx);
        memcpy(cand_val + *m, val, n * sizeof *cand_val);
        *m += n;
    }
    return 0;
}

int wd__topk_fold_cut(wd_topk_cut *out, const wd_topk_plan *p, const float *val, uint64_t m)
{
    uint32_t b1 = p->cut.thr >> LO_BITS;
    uint64_t in_b1 = 0;
    /* the histogram pass 2 would have made: bucket b1 is exactly the
     * candidates whose high bits are b1 */
    wd_codec_scratch *s = p->scratch;
    uint64_t *lo = s ? s->lo : NULL;
    if (!lo && !(lo = malloc(((size_t)1 << LO_BITS) * sizeof *lo)))
        return WD_NOMEM();
    if (s)
        s->lo = lo;
    memset(lo, 0, ((size_t)1 << LO_BITS) * sizeof *lo);
    for (uint64_t e = 0; e < m; e++) {
        uint32_t key = wd__abs_key(val[e]);
        if ((key >> LO_BITS) == b1) {
            lo[key & ((1u << LO_BITS) - 1)]++;
            in_b1++;
        }
    }
    int rc = 0;
    if (m != p->n_cands || in_b1 != p->hist_b1)
        rc = wd__error(WD_ERROR, "top-k: %llu candidates (%llu at the cut's bucket) where the first pass counted "
                                 "%llu (%llu): the delta source returned different values on another pass",
                       (unsigned long long)m, (unsigned long long)in_b1, (unsigned long long)p->n_cands,
                       (unsigned long long)p->hist_b1);
    else
        cut_in_bucket(out, lo, b1, p->need);
    if (!s)
        free(lo);
    return rc;
}
