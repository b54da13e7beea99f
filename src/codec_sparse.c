/*
 * codec_sparse.c - the sparse codec (the k largest |delta| as sorted int64
 * indices and float32 values) and the streaming pieces the int4 codec shares
 * with it: the chunked delta reader and top-k selection by histogram passes.
 */
#include "codec.h"

#include <emmintrin.h>
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

/* Kept entries of one unit, in index order: those above the cut's
 * threshold as (index, value), those equal to it (ties: how many of them
 * are taken depends on the units before, so the merge decides) as two
 * bitmaps over the unit, position and sign, since a tie's value is its sign
 * and the threshold's bits. Ties can be most of a tensor: an embedding whose
 * rows mostly did not change has a delta of zeros, and with k above the
 * nonzero count every zero is a tie at a zero threshold. As entries they
 * cost 13 bytes each (78 MB for a batch of six units of 1M elements, the
 * peak of a sparse commit); as bitmaps 2 bits. */
typedef struct {
    int64_t *idx;
    float *val;
    uint8_t *tie; /* unused: wd__entries_grow's third array */
    size_t n, cap;
    uint64_t *tie_at, *tie_neg; /* bitmaps of count bits */
    size_t tie_words;
    uint64_t begin;
    size_t count, n_ties;
    double norm2, err2, max_abs; /* over the unit; err2 and max_abs without ties */
} sparse_unit;

typedef struct {
    wd_topk_cut cut;
    int fold;           /* cut is a folded plan's: every key >= cut.thr is an entry */
    int stats;          /* the caller wants the fidelity: norm2, err2, max_abs */
    size_t u0;
    sparse_unit *units; /* one per unit of the batch */
} sparse_ctx;

static void max_update(double *max_abs, double e)
{
    if (e > *max_abs || isnan(e))
        *max_abs = e;
}

/* Element i of a unit at or above the cut: an entry, or a tie to mark. */
static inline int select_one(sparse_unit *s, const float *d, uint64_t begin, size_t i, uint32_t thr, int fold)
{
    uint32_t key = wd__abs_key(d[i]);
    if (key > thr || (key == thr && fold)) {
        if (s->n == s->cap && wd__entries_grow(&s->idx, &s->val, &s->tie, &s->cap, s->n + 1))
            return WD_NOMEM();
        s->idx[s->n] = (int64_t)(begin + i);
        s->val[s->n] = d[i];
        s->n++;
    } else if (key == thr) {
        s->tie_at[i >> 6] |= (uint64_t)1 << (i & 63);
        if (signbit(d[i]))
            s->tie_neg[i >> 6] |= (uint64_t)1 << (i & 63);
        s->n_ties++;
    }
    return 0;
}

/* A cut at zero (most of the delta zero, k above its nonzero count):
 * every nonzero element, NaN included, is an entry, every zero a tie, and
 * nothing lies below the cut. Element by element that was a branch each;
 * here 64 elements a step, whose zero and sign masks are the tie bitmaps'
 * words as they stand. Not for a folded cut, which has no ties. */
static int select_zero_cut(sparse_unit *s, const float *d, uint64_t begin, size_t count)
{
    const __m128i mask = _mm_set1_epi32(0x7fffffff), zero = _mm_setzero_si128();
    size_t i = 0;
    for (; i + 64 <= count; i += 64) {
        uint64_t z = 0, neg = 0;
        for (unsigned g = 0; g < 16; g++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(d + i + 4 * g));
            uint64_t zm = (uint64_t)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(v, mask), zero)));
            uint64_t sm = (uint64_t)_mm_movemask_ps(_mm_castsi128_ps(v));
            z |= zm << (4 * g);
            neg |= (zm & sm) << (4 * g);
        }
        s->tie_at[i >> 6] = z;
        s->tie_neg[i >> 6] = neg;
        s->n_ties += (size_t)__builtin_popcountll(z);
        if (!~z)
            continue;
        if (s->cap - s->n < 64 && wd__entries_grow(&s->idx, &s->val, &s->tie, &s->cap, s->n + 64))
            return WD_NOMEM();
        for (uint64_t e = ~z; e; e &= e - 1) {
            size_t j = i + (size_t)__builtin_ctzll(e);
            s->idx[s->n] = (int64_t)(begin + j);
            s->val[s->n] = d[j];
            s->n++;
        }
    }
    for (; i < count; i++)
        if (select_one(s, d, begin, i, 0, 0))
            return WD_NOMEM();
    return 0;
}

/* The selection without the fidelity sums (save-delta asks for none): four
 * keys compared at once, and only groups holding one at or above the cut
 * looked at one by one, in index order. Most of a unit is below the cut
 * (90% at the default sparsity), so the loop mostly loads and compares. */
static int select_only(sparse_unit *s, const float *d, uint64_t begin, size_t count, uint32_t thr, int fold)
{
    size_t i = 0;
    if (thr >= 1 && thr <= 0x7fffffffu) { /* keys fit int32: a signed compare with thr - 1 is key >= thr */
        const __m128i mask = _mm_set1_epi32(0x7fffffff), below = _mm_set1_epi32((int32_t)(thr - 1));
        for (; i + 4 <= count; i += 4) {
            __m128i key = _mm_and_si128(_mm_loadu_si128((const __m128i *)(const void *)(d + i)), mask);
            int hit = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpgt_epi32(key, below)));
            for (size_t j = 0; hit && j < 4; j++, hit >>= 1)
                if ((hit & 1) && select_one(s, d, begin, i + j, thr, fold))
                    return WD_NOMEM();
        }
    }
    for (; i < count; i++)
        if (wd__abs_key(d[i]) >= thr && select_one(s, d, begin, i, thr, fold))
            return WD_NOMEM();
    return 0;
}

/* Kept positions decode exactly (d' = d); the others decode to 0. */
static int sparse_unit_fn(void *p, size_t u, int worker, const float *d, uint64_t begin, size_t count)
{
    (void)worker;
    sparse_ctx *c = p;
    sparse_unit *s = &c->units[u - c->u0];
    s->n = 0;
    s->norm2 = s->err2 = s->max_abs = 0;
    s->begin = begin;
    s->count = count;
    s->n_ties = 0;
    size_t words = c->fold ? 0 : (count + 63) / 64; /* a folded cut has no ties yet */
    if (words > s->tie_words) {
        free(s->tie_at);
        free(s->tie_neg);
        s->tie_at = malloc(words * sizeof *s->tie_at);
        s->tie_neg = malloc(words * sizeof *s->tie_neg);
        s->tie_words = s->tie_at && s->tie_neg ? words : 0;
        if (!s->tie_words)
            return WD_NOMEM();
    }
    if (words) {
        memset(s->tie_at, 0, words * sizeof *s->tie_at);
        memset(s->tie_neg, 0, words * sizeof *s->tie_neg);
    }
    uint32_t thr = c->cut.thr;
    int fold = c->fold;
    if (thr == 0 && !fold) { /* err2 and max_abs stay 0: nothing is below */
        if (c->stats)
            s->norm2 = wd__sum_squares(d, count);
        return select_zero_cut(s, d, begin, count);
    }
    if (!c->stats)
        return select_only(s, d, begin, count, thr, fold);
    s->norm2 = wd__sum_squares(d, count);
    /* The errors add up one by one in index order (the recorded fidelity
     * is that sum's bits): groups of four below the cut, most of them, go
     * through without a branch an element; the others element by element. */
    double err2 = 0, max_abs = 0;
    size_t i = 0;
    if (thr >= 1 && thr <= 0x7fffffffu) {
        const __m128i mask = _mm_set1_epi32(0x7fffffff), below = _mm_set1_epi32((int32_t)(thr - 1));
        for (; i + 4 <= count; i += 4) {
            __m128i key = _mm_and_si128(_mm_loadu_si128((const __m128i *)(const void *)(d + i)), mask);
            if (_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpgt_epi32(key, below)))) {
                for (size_t j = i; j < i + 4; j++) {
                    if (wd__abs_key(d[j]) < thr) {
                        err2 += (double)d[j] * d[j];
                        max_update(&max_abs, fabs((double)d[j]));
                    } else if (select_one(s, d, begin, j, thr, fold)) {
                        return WD_NOMEM();
                    }
                }
                continue;
            }
            double x0 = d[i], x1 = d[i + 1], x2 = d[i + 2], x3 = d[i + 3];
            err2 += x0 * x0;
            err2 += x1 * x1;
            err2 += x2 * x2;
            err2 += x3 * x3;
            max_update(&max_abs, fabs(x0));
            max_update(&max_abs, fabs(x1));
            max_update(&max_abs, fabs(x2));
            max_update(&max_abs, fabs(x3));
        }
    }
    for (; i < count; i++) {
        if (wd__abs_key(d[i]) < thr) {
            err2 += (double)d[i] * d[i];
            max_update(&max_abs, fabs((double)d[i]));
        } else if (select_one(s, d, begin, i, thr, fold)) {
            return WD_NOMEM();
        }
    }
    s->err2 = err2;
    s->max_abs = max_abs;
    return 0;
}

#define MERGE_OUT 4096 /* entries a unit's merge hands to emit at a time */

/* Emits unit s's kept entries in index order: every entry above the cut,
 * and each tie while the cut still takes them (ties not taken count as
 * errors, in index order). *j counts what was kept; more than k means the
 * source changed between passes (the caller reports it). */
static int merge_unit(const sparse_unit *s, const wd_topk_cut *cut, uint64_t *eq_seen, int64_t *out_idx,
                      float *out_val, uint64_t *j, uint64_t k, double *err2, double *max_abs,
                      wd_sparse_emit_fn emit, void *ud)
{
    /* Ties at a zero threshold once the quota of ties is spent are neither
     * entries nor error (their square is 0): a fine-tune that left most
     * rows alone has a cut at 0 and millions of such ties a unit. */
    int inert = cut->thr == 0 && *eq_seen >= cut->take_eq;
    if (!s->n_ties || inert) {
        /* No tie to interleave (most units): the unit's own arrays go out
         * as they are, in the blocks the merge below would make. */
        for (size_t e = 0; e < s->n; e += MERGE_OUT) {
            size_t n_out = s->n - e < MERGE_OUT ? s->n - e : MERGE_OUT;
            if ((*j += n_out) > k)
                return 0;
            int rc = emit(ud, s->idx + e, s->val + e, n_out);
            if (rc)
                return rc;
        }
        return 0;
    }
    size_t e = 0, n_out = 0;
    size_t w = 0;
    uint64_t bits = s->tie_words ? s->tie_at[0] : 0;
    size_t words = s->n_ties ? (s->count + 63) / 64 : 0;
    uint32_t tie_bits = cut->thr;
    for (;;) {
        /* the next tie's offset in the unit, or SIZE_MAX */
        while (!bits && w + 1 < words)
            bits = s->tie_at[++w];
        size_t tie = bits ? w * 64 + (size_t)__builtin_ctzll(bits) : SIZE_MAX;
        size_t ent = e < s->n ? (size_t)((uint64_t)s->idx[e] - s->begin) : SIZE_MAX;
        if (tie == SIZE_MAX && ent == SIZE_MAX)
            break;
        if (ent < tie) {
            out_idx[n_out] = s->idx[e];
            out_val[n_out] = s->val[e];
            n_out++;
            e++;
        } else {
            bits &= bits - 1;
            uint32_t vb = tie_bits | (uint32_t)((s->tie_neg[tie >> 6] >> (tie & 63)) & 1) << 31;
            float x;
            memcpy(&x, &vb, sizeof x);
            if (!wd__topk_take(cut, cut->thr, eq_seen)) {
                *err2 += (double)x * x;
                max_update(max_abs, fabs((double)x));
                if (cut->thr == 0) { /* inert from here on (see above) */
                    bits = 0;
                    words = 0;
                }
                continue;
            }
            out_idx[n_out] = (int64_t)(s->begin + tie);
            out_val[n_out] = x;
            n_out++;
        }
        if (n_out == MERGE_OUT) {
            if ((*j += n_out) > k)
                return 0;
            int rc = emit(ud, out_idx, out_val, n_out);
            if (rc)
                return rc;
            n_out = 0;
        }
    }
    if (!n_out)
        return 0;
    if ((*j += n_out) > k)
        return 0;
    return emit(ud, out_idx, out_val, n_out);
}

/* A folded cut's candidates, all m of them in index order (units are
 * appended in unit order): the exact cut, then the entries it takes go out
 * in index order, compacted in place, and the rest count as errors. Those
 * are nonzero finite values (a folded cut's bucket is neither zero's nor
 * inf/NaN's), so max_abs is the same whatever the order; err2 adds them
 * after every unit's sum instead of inside it, so its last bits may differ
 * from the unfolded path's, as they differ with the unit size. */
static int emit_folded(const wd_topk_plan *plan, int64_t *idx, float *val, uint64_t m, uint64_t *j,
                       double *err2, double *max_abs, wd_sparse_emit_fn emit, void *ud)
{
    wd_topk_cut cut;
    int rc = wd__topk_fold_cut(&cut, plan, val, m);
    if (rc)
        return rc;
    uint64_t eq_seen = 0, w = 0;
    for (uint64_t e = 0; e < m; e++) {
        float x = val[e];
        if (wd__topk_take(&cut, wd__abs_key(x), &eq_seen)) {
            idx[w] = idx[e];
            val[w] = x;
            w++;
        } else {
            *err2 += (double)x * x;
            max_update(max_abs, fabs((double)x));
        }
    }
    for (uint64_t e = 0; !rc && e < w; e += MERGE_OUT) {
        size_t cnt = w - e < MERGE_OUT ? (size_t)(w - e) : MERGE_OUT;
        rc = emit(ud, idx + e, val + e, cnt);
    }
    *j += w;
    return rc;
}

int wd__sparse_encode_stream(const wd_delta_src *src, double sparsity, wd_sparse_emit_fn emit, void *ud,
                             uint64_t *out_k, wd_codec_fidelity *fid)
{
    wd_sparse_sink sink = {emit, NULL, ud};
    return wd__sparse_encode_sink(src, sparsity, &sink, out_k, fid);
}

/* Tells the sink whether the encoder leaves the pool alone from now on. */
static int pool_idle(const wd_sparse_sink *sink, int idle)
{
    return sink->pool_idle ? sink->pool_idle(sink->ud, idle) : 0;
}

int wd__sparse_encode_sink(const wd_delta_src *src, double sparsity, const wd_sparse_sink *sink, uint64_t *out_k,
                           wd_codec_fidelity *fid)
{
    wd_sparse_emit_fn emit = sink->emit;
    void *ud = sink->ud;
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return wd__error(WD_EUSAGE, "sparsity must be in [0, 1), got %g", sparsity);
    if (!src)
        return wd__error(WD_EUSAGE, "no delta source");
    uint64_t n = src->n;
    uint64_t k = wd__sparse_k(n, sparsity);

    wd__reader r;
    sparse_ctx c[2]; /* the batch being classified and the one being merged */
    memset(c, 0, sizeof c);
    sparse_unit *all = NULL;
    size_t batch = 0;
    int64_t *out_idx = NULL, *cand_idx = NULL;
    float *out_val = NULL, *cand_val = NULL;
    uint64_t m = 0; /* folded: candidates collected */
    int rc = wd__reader_init(&r, src);
    if (rc)
        goto done;
    batch = wd__reader_batch(&r);
    out_idx = malloc(MERGE_OUT * sizeof *out_idx);
    out_val = malloc(MERGE_OUT * sizeof *out_val);
    if (!(all = calloc(2 * batch, sizeof *all)) || !out_idx || !out_val) {
        rc = WD_NOMEM();
        goto done;
    }
    c[0].units = all;
    c[1].units = all + batch;
    wd_topk_plan plan;
    if ((rc = wd__topk_plan(&plan, &r, k, WD_TOPK_FOLD_MAX)))
        goto done;
    c[0].cut = c[1].cut = plan.cut;
    c[0].fold = c[1].fold = plan.fold;
    c[0].stats = c[1].stats = fid != NULL;
    if (plan.fold && (!(cand_idx = malloc((size_t)plan.n_cands * sizeof *cand_idx + 1)) ||
                      !(cand_val = malloc((size_t)plan.n_cands * sizeof *cand_val + 1)))) {
        rc = WD_NOMEM();
        goto done;
    }

    /* Final pass, a batch of units at a time: workers collect each unit's
     * entries and ties, then they go out in unit order (merge_unit), so
     * indices come out sorted and ties at the cut are taken first by index.
     * The workers classify the next batch while this thread merges one and
     * hands its entries out (whose compression, on this thread, took as
     * long as the classifying). Memory: two batches of units. */
    uint64_t j = 0, eq_seen = 0;
    double norm2 = 0, err2 = 0, max_abs = 0;
    size_t units = wd__reader_units(&r), cur = 0;
    size_t first_end = units < batch ? units : batch;
    if (units)
        rc = wd__reader_start(&r, 0, first_end, NULL, NULL, sparse_unit_fn, &c[0]);
    for (size_t u0 = 0; !rc && u0 < units; u0 += batch, cur = !cur) {
        size_t u1 = units - u0 < batch ? units : u0 + batch;
        if ((rc = wd__reader_wait(&r)) || (rc = pool_idle(sink, 1)))
            break;
        if (u1 < units && j <= k) {
            c[!cur].u0 = u1;
            if (!(rc = pool_idle(sink, 0)))
                rc = wd__reader_start(&r, u1, units - u1 < batch ? units : u1 + batch, NULL, NULL, sparse_unit_fn,
                                      &c[!cur]);
        }
        for (size_t u = u0; !rc && u < u1; u++) {
            sparse_unit *s = &c[cur].units[u - u0];
            norm2 += s->norm2;
            err2 += s->err2;
            max_update(&max_abs, s->max_abs);
            if (plan.fold) { /* decided once all are in: see below */
                if ((rc = wd__topk_fold_add(&plan, cand_idx, cand_val, &m, s->idx, s->val, s->n, "sparse")))
                    break;
                continue;
            }
            rc = merge_unit(s, &c[cur].cut, &eq_seen, out_idx, out_val, &j, k, &err2, &max_abs, emit, ud);
            if (j > k)
                break;
        }
        if (j > k) /* nothing more can come right: the check below says so */
            break;
    }
    int wrc = wd__reader_wait(&r); /* a run started before a failure */
    if (!rc)
        rc = wrc;
    if (!rc)
        rc = pool_idle(sink, 1);
    if (!rc && plan.fold)
        rc = emit_folded(&plan, cand_idx, cand_val, m, &j, &err2, &max_abs, emit, ud);
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
    for (size_t u = 0; all && u < 2 * batch; u++) {
        wd__entries_free(all[u].idx, all[u].val, all[u].tie);
        free(all[u].tie_at);
        free(all[u].tie_neg);
    }
    free(all);
    free(out_idx);
    free(out_val);
    free(cand_idx);
    free(cand_val);
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
