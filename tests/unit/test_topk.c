/*
 * test_topk.c - the top-k cut folded into the encoding pass (wd__topk_plan,
 * wd__topk_fold_cut) against the cut found in passes of its own (the path
 * every encoder took before, kept as the fallback and forced here with
 * src.topk_two_pass): sparse and int4 (both layouts) must give the same
 * arrays for any pool size and unit size, and the same selection as a
 * definition by sorting. Inputs: bf16-rounded deltas (ties at the cut), a
 * few levels (every element of the cut's bucket equal), all equal, NaN,
 * inf and +-0 around, k = 1 and n - 1, and the cases that must not fold:
 * the cut in the bucket of zeros, in the NaN bucket, or more candidates
 * than the bound. And pass 1's sampled window (codec_reader.c), which
 * makes the cut exact without the fold when it holds the k-th largest.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dtype.h"
#include "error.h"
#include "half.h"
#include "pipeline.h"
#include "testutil.h"

static uint64_t rng_state = 0x243f6a8885a308d3u;

static uint64_t rnd(void)
{
    return tu_splitmix(&rng_state);
}

static float rnd_delta(void)
{
    return tu_bf16_delta(&rng_state);
}

static float ffrom(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* A source that counts its reads (serially) and serves any worker. */
typedef struct {
    const float *d;
    uint64_t reads;
} counting_src;

static int counting_read(void *ud, uint64_t begin, size_t count, float *out)
{
    counting_src *c = ud;
    c->reads++;
    memcpy(out, c->d + begin, count * sizeof *out);
    return 0;
}

static int par_read(void *ud, int worker, uint64_t begin, size_t count, float *out)
{
    (void)worker;
    counting_src *c = ud;
    memcpy(out, c->d + begin, count * sizeof *out);
    return 0;
}

static int same_sparse(const wd_sparse_delta *a, const wd_sparse_delta *b)
{
    return a->k == b->k && memcmp(a->indices, b->indices, a->k * 8) == 0 &&
           memcmp(a->values, b->values, a->k * 4) == 0;
}

static int same_int4(const wd_int4_delta *a, const wd_int4_delta *b)
{
    return a->n_outliers == b->n_outliers && a->idx_bytes == b->idx_bytes && a->scale == b->scale &&
           a->zero_point == b->zero_point &&
           memcmp(a->outlier_idx, b->outlier_idx, a->n_outliers * a->idx_bytes) == 0 &&
           memcmp(a->outlier_vals, b->outlier_vals, a->n_outliers * 2) == 0 &&
           memcmp(a->packed, b->packed, wd__int4_packed_len(a->layout, a->n, a->n_outliers)) == 0;
}

static int same_bits(double a, double b)
{
    return !memcmp(&a, &b, sizeof a);
}

static int cmp_u32_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The definition: the k largest keys, ties at the k-th taken first by
 * index. sel[i] = 1 for a selected element. */
static void select_by_sort(const float *d, uint64_t n, uint64_t k, uint8_t *sel)
{
    memset(sel, 0, n);
    if (!k)
        return;
    uint32_t *keys = malloc(n * sizeof *keys);
    for (uint64_t i = 0; i < n; i++)
        keys[i] = wd__abs_key(d[i]);
    qsort(keys, n, sizeof *keys, cmp_u32_desc);
    uint32_t kth = keys[k - 1];
    uint64_t above = 0;
    for (uint64_t i = 0; i < k; i++)
        above += keys[i] > kth;
    free(keys);
    uint64_t ties = k - above;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t key = wd__abs_key(d[i]);
        if (key > kth || (key == kth && ties && ties--))
            sel[i] = 1;
    }
}

/* Whether wd__topk_plan folds the cut for k of d (no bound on candidates),
 * and, when it does, that the folded cut is the one of two passes. */
/* Units pass 1 samples (codec_reader.c's SPEC_UNITS). */
#define SPEC_READS 3

static int plan_folds(const float *d, uint64_t n, uint64_t k)
{
    wd_delta_src src;
    wd__delta_src_mem(&src, d, n);
    wd__reader r;
    wd_topk_plan p;
    wd_topk_cut two;
    CHECK_RC(wd__reader_init(&r, &src), 0);
    CHECK_RC(wd__topk_plan(&p, &r, k, UINT64_MAX), 0);
    CHECK_RC(wd__topk_find(&two, &r, k), 0);
    if (p.fold) {
        float *cand = malloc((p.n_cands + 1) * sizeof *cand);
        uint64_t m = 0;
        for (uint64_t i = 0; i < n; i++)
            if (wd__abs_key(d[i]) >= p.cut.thr)
                cand[m++] = d[i];
        wd_topk_cut folded;
        CHECK_RC(wd__topk_fold_cut(&folded, &p, cand, m), 0);
        CHECK(folded.thr == two.thr && folded.take_eq == two.take_eq);
        /* a candidate missing is the source changing between passes */
        CHECK_RC(wd__topk_fold_cut(&folded, &p, cand, m - 1), WD_ERROR);
        /* and no candidate bound: nothing folds */
        wd_topk_plan q;
        CHECK_RC(wd__topk_plan(&q, &r, k, p.n_cands - 1), 0);
        CHECK(!q.fold && q.cut.thr == two.thr && q.cut.take_eq == two.take_eq);
        free(cand);
    } else {
        CHECK(p.cut.thr == two.thr && p.cut.take_eq == two.take_eq);
    }
    wd__reader_free(&r);
    return p.fold;
}

/* Encodes d with sparse and int4 (layouts 1 and 2) two-pass (the
 * reference, which must equal the definition) and with the cut's second
 * pass saved, serially and on pools of 1, 2 and 5 workers: the same arrays
 * everywhere. Serial runs count reads: in 7 units of 16384 (no sample: the
 * fold) sparse reads passes_sparse passes and int4 passes_int4; in 13 of
 * 8192, pass 1 samples 3 units and at most the two-pass count follows. */
static void check_case(const char *what, const float *d, uint64_t n, double sparsity, double fraction,
                       int passes_sparse, int passes_int4)
{
    uint8_t *sel = malloc(n);
    int bad = 0, failed_before = tu_failed;
    counting_src cs = {.d = d};
    const size_t chunks[] = {16384, 8192, 8192};
    for (int ci = 0; ci < 3; ci++) {
        size_t chunk = chunks[ci];
        int cached = ci == 2, sampled = ci == 1;
        uint64_t units = (n + chunk - 1) / chunk;
        wd_delta_src src = {.n = n, .read = counting_read, .ud = &cs, .chunk = chunk, .topk_two_pass = 1,
                            .cache_elems = cached ? (size_t)n : 0};
        wd_sparse_delta sp_ref;
        wd_codec_fidelity fs_ref, fi_ref[2];
        wd_int4_delta i4_ref[2];
        CHECK_RC(wd__sparse_encode(&sp_ref, &src, sparsity, &fs_ref), 0);
        for (int l = 0; l < 2; l++)
            CHECK_RC(wd__int4_encode(&i4_ref[l], &src, fraction, l + 1, &fi_ref[l]), 0);

        if (ci == 0) { /* the references are the definition */
            select_by_sort(d, n, sp_ref.k, sel);
            uint64_t j = 0;
            for (uint64_t i = 0; i < n && !bad; i++) {
                if (!sel[i])
                    continue;
                bad = j >= sp_ref.k || (uint64_t)sp_ref.indices[j] != i || memcmp(&sp_ref.values[j], &d[i], 4);
                j++;
            }
            CHECK(!bad && j == sp_ref.k);
            /* its fidelity too: the error is what was left out (the merge
             * skips ties it need not visit, which must change nothing) */
            double norm2 = 0, err2 = 0, max_abs = 0;
            int nan_out = 0;
            for (uint64_t i = 0; i < n; i++) {
                norm2 += (double)d[i] * d[i];
                if (sel[i])
                    continue;
                err2 += (double)d[i] * d[i];
                nan_out |= isnan(d[i]);
                if (fabs((double)d[i]) > max_abs)
                    max_abs = fabs((double)d[i]);
            }
            if (!nan_out && norm2 > 0) {
                double rel = sqrt(err2) / sqrt(norm2);
                CHECK(same_bits(fs_ref.max_abs_error, max_abs));
                CHECK(fabs(fs_ref.rel_error - rel) <= 1e-9 * rel);
            }
            for (int l = 0; l < 2; l++) {
                const wd_int4_delta *e = &i4_ref[l];
                select_by_sort(d, n, e->n_outliers, sel);
                j = 0;
                int have = 0, nan_left = 0;
                float mn = 0, mx = 0;
                for (uint64_t i = 0; i < n && !bad; i++) {
                    if (sel[i]) {
                        bad = j >= e->n_outliers || (uint64_t)wd__idx_at(e->outlier_idx, e->idx_bytes, j) != i ||
                              ((const uint16_t *)e->outlier_vals)[j] != wd__f32_to_f16(d[i]);
                        j++;
                    } else if (isnan(d[i])) {
                        nan_left = 1;
                    } else {
                        if (!have || d[i] <= mn)
                            mn = d[i];
                        if (!have || d[i] >= mx)
                            mx = d[i];
                        have = 1;
                    }
                }
                CHECK(!bad && j == e->n_outliers);
                if (have && !nan_left)
                    CHECK(e->zero_point == wd__f64_to_f16(mn));
            }
        }

        /* without the fidelity the selection runs alone (codec_sparse.c's
         * select_only, four keys a compare): the same arrays, folded cut
         * or not */
        for (int two = 1; two >= 0; two--) {
            wd_sparse_delta sp_nf;
            src.topk_two_pass = two;
            CHECK_RC(wd__sparse_encode(&sp_nf, &src, sparsity, NULL), 0);
            CHECK(same_sparse(&sp_nf, &sp_ref));
            wd__sparse_clear(&sp_nf);
        }

        /* serial, the second pass saved: fewer reads, the same arrays */
        cs.reads = 0;
        src.topk_two_pass = 0;
        wd_sparse_delta sp;
        wd_codec_fidelity fid;
        CHECK_RC(wd__sparse_encode(&sp, &src, sparsity, &fid), 0);
        /* sparse adds the errors below a folded cut after the units' sums:
         * only the last bits of rel_error may move */
        CHECK(same_sparse(&sp, &sp_ref) && same_bits(fid.max_abs_error, fs_ref.max_abs_error) &&
              (same_bits(fid.rel_error, fs_ref.rel_error) ||
               fabs(fid.rel_error - fs_ref.rel_error) <= 1e-12 * fabs(fs_ref.rel_error)));
        if (cached)
            CHECK(cs.reads == units);
        else if (sampled)
            CHECK(cs.reads <= SPEC_READS + 3 * units && cs.reads >= SPEC_READS + 2 * units);
        else
            CHECK(cs.reads == (uint64_t)passes_sparse * units);
        wd__sparse_clear(&sp);
        for (int l = 0; l < 2; l++) {
            wd_int4_delta e;
            cs.reads = 0;
            CHECK_RC(wd__int4_encode(&e, &src, fraction, l + 1, &fid), 0);
            /* int4's error sums come from its last pass, which the saved
             * pass leaves alone: the same bits */
            CHECK(same_int4(&e, &i4_ref[l]) && same_bits(fid.rel_error, fi_ref[l].rel_error) &&
                  same_bits(fid.max_abs_error, fi_ref[l].max_abs_error));
            if (cached)
                CHECK(cs.reads == units);
            else if (sampled)
                CHECK(cs.reads <= SPEC_READS + 4 * units && cs.reads >= SPEC_READS + 3 * units);
            else
                CHECK(cs.reads == (uint64_t)passes_int4 * units);
            wd__int4_clear(&e);
        }

        /* on pools: the same arrays, and the same error figures for any
         * pool size (the two-pass path on pools: test_codecs.c) */
        const int threads[] = {1, 2, 5};
        for (int two = 0; two < 1; two++) {
            wd_codec_fidelity fs0 = {0}, fi0[2] = {{0}};
            for (int ti = 0; ti < 3; ti++) {
                wd_pool *pool = NULL;
                CHECK_RC(wd__pool_new(&pool, threads[ti]), 0);
                src.pool = pool;
                src.read_par = par_read;
                src.topk_two_pass = two;
                CHECK_RC(wd__sparse_encode(&sp, &src, sparsity, &fid), 0);
                CHECK(same_sparse(&sp, &sp_ref));
                if (ti == 0)
                    fs0 = fid;
                CHECK(same_bits(fid.rel_error, fs0.rel_error) && same_bits(fid.max_abs_error, fs0.max_abs_error));
                if (two)
                    CHECK(same_bits(fid.rel_error, fs_ref.rel_error));
                wd__sparse_clear(&sp);
                for (int l = 0; l < 2; l++) {
                    wd_int4_delta e;
                    CHECK_RC(wd__int4_encode(&e, &src, fraction, l + 1, &fid), 0);
                    CHECK(same_int4(&e, &i4_ref[l]));
                    if (ti == 0)
                        fi0[l] = fid;
                    CHECK(same_bits(fid.rel_error, fi0[l].rel_error) &&
                          same_bits(fid.max_abs_error, fi0[l].max_abs_error));
                    wd__int4_clear(&e);
                }
                src.pool = NULL;
                src.read_par = NULL;
                wd__pool_free(pool);
            }
        }
        wd__sparse_clear(&sp_ref);
        for (int l = 0; l < 2; l++)
            wd__int4_clear(&i4_ref[l]);
    }
    if (tu_failed > failed_before)
        fprintf(stderr, "  (case: %s)\n", what);
    free(sel);
}

/* Whether pass 1's sampled window holds the k-th largest (13 units of
 * 8192, not cached); the cut is then the two-pass one. */
static int spec_hits(const float *d, uint64_t n, uint64_t k)
{
    counting_src cs = {.d = d};
    wd_delta_src src = {.n = n, .read = counting_read, .ud = &cs, .chunk = 8192};
    wd__reader r;
    wd_topk_plan p;
    wd_topk_cut two;
    CHECK_RC(wd__reader_init(&r, &src), 0);
    CHECK_RC(wd__topk_plan(&p, &r, k, 0), 0);
    CHECK(cs.reads == SPEC_READS + (n + 8191) / 8192 * (p.spec_hit ? 1 : 2));
    CHECK_RC(wd__topk_find(&two, &r, k), 0);
    CHECK(p.cut.thr == two.thr && p.cut.take_eq == two.take_eq);
    wd__reader_free(&r);
    return p.spec_hit;
}

int main(void)
{
    enum { N = 100003 }; /* 13 units of 8192 */
    float *d = malloc(N * sizeof *d);
    const uint64_t n = N;

    /* bf16 deltas: the cut's bucket holds a few distinct values, each many
     * times, so ties at the cut are taken partly, across units */
    for (uint64_t i = 0; i < n; i++)
        d[i] = rnd_delta();
    CHECK(plan_folds(d, n, wd__sparse_k(n, 0.9)) && plan_folds(d, n, wd__int4_n_outliers(n, 0.01)));
    CHECK(spec_hits(d, n, wd__sparse_k(n, 0.9)) && spec_hits(d, n, wd__int4_n_outliers(n, 0.01)));
    check_case("bf16", d, n, 0.9, 0.01, 2, 3);
    /* int4 with its candidates past the code array's room (a buffer of
     * their own), sparse keeping most */
    check_case("bf16 many", d, n, 0.3, 0.3, 2, 3);

    /* the sampled units (2, 6 and 10 of 13) unlike the rest: the window
     * misses, the fold or the second pass takes over */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t u = i / 8192;
        if (u == 2 || u == 6 || u == 10)
            d[i] *= 0.01f;
    }
    CHECK(!spec_hits(d, n, wd__sparse_k(n, 0.9)) && !spec_hits(d, n, wd__int4_n_outliers(n, 0.01)));
    check_case("sample misses", d, n, 0.9, 0.01, 2, 3);

    /* a few levels with zeros of both signs: every element of the cut's
     * bucket is equal, the extremes are zeros whose sign depends on order */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = rnd();
        int level = (int)(r % 41) - 20;
        d[i] = level == 0 ? ((r >> 20) & 1 ? -0.0f : 0.0f) : (float)level / 64.0f;
    }
    CHECK(plan_folds(d, n, wd__sparse_k(n, 0.9)));
    check_case("levels", d, n, 0.9, 0.01, 2, 3);

    /* NaN (both signs, several payloads), inf and +-0 among bf16 deltas:
     * NaN and inf lie above the cut, the zeros below it */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = rnd();
        d[i] = rnd_delta();
        if (r % 997 == 0)
            d[i] = ffrom(((r >> 12) & 1 ? 0xff800000u : 0x7f800000u) | (uint32_t)(1 + (r >> 16) % 0x3fffff));
        else if (r % 1999 == 0)
            d[i] = (r >> 12) & 1 ? -INFINITY : INFINITY;
        else if (r % 7 == 0)
            d[i] = (r >> 12) & 1 ? -0.0f : 0.0f;
    }
    CHECK(plan_folds(d, n, wd__sparse_k(n, 0.9)) && plan_folds(d, n, wd__int4_n_outliers(n, 0.01)));
    check_case("nan", d, n, 0.9, 0.01, 2, 3);

    /* k = 1 and k = n - 1 over distinct-ish values */
    for (uint64_t i = 0; i < n; i++)
        d[i] = ffrom(0x3c000000u + (uint32_t)(rnd() % 0x400000)) * ((i & 1) ? -1.0f : 1.0f);
    check_case("k=1", d, n, 1.0 - 0.5 / (double)n, 0.0, 2, 3);
    check_case("k=n-1", d, n, 0.5 / (double)n, ((double)n - 0.5) / (double)n, 2, 3);

    /* all equal (one bucket, one key): the first k by index; both signs */
    for (uint64_t i = 0; i < n; i++)
        d[i] = 0.375f;
    CHECK(plan_folds(d, n, 17));
    check_case("equal", d, n, 0.9, 0.01, 2, 3);
    for (uint64_t i = 0; i < n; i++)
        d[i] = (rnd() & 1) ? -0.375f : 0.375f;
    check_case("equal signs", d, n, 0.5, 0.25, 2, 3);

    /* not folded: the cut among the zeros (most of the delta zero) */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = rnd();
        d[i] = r % 23 == 0 ? rnd_delta() : ((r >> 20) & 1 ? -0.0f : 0.0f);
    }
    CHECK(!plan_folds(d, n, wd__sparse_k(n, 0.9)));
    check_case("zeros", d, n, 0.9, 0.2, 3, 4);

    /* not folded: the cut among the NaNs */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = rnd();
        d[i] = r % 5 == 0 ? ffrom(0x7fc00000u | (uint32_t)(r >> 40)) : rnd_delta();
    }
    CHECK(!plan_folds(d, n, wd__sparse_k(n, 0.9)));
    check_case("nan cut", d, n, 0.9, 0.1, 3, 4);
    free(d);

    /* not folded: more candidates than the bound (sparse holds at most
     * WD_TOPK_FOLD_MAX; int4 then has no room in its codes either) */
    uint64_t big = WD_TOPK_FOLD_MAX + WD_TOPK_FOLD_MAX / 4;
    float *b = malloc(big * sizeof *b);
    for (uint64_t i = 0; i < big; i++)
        b[i] = rnd_delta();
    uint8_t *sel = malloc(big);
    counting_src cs = {.d = b};
    wd_delta_src src = {.n = big, .read = counting_read, .ud = &cs, .chunk = (size_t)1 << 18};
    wd_sparse_delta sp, sp2;
    wd_int4_delta e, e2;
    CHECK_RC(wd__sparse_encode(&sp, &src, 0.1, NULL), 0);
    CHECK(cs.reads == 3 * 5);
    cs.reads = 0;
    CHECK_RC(wd__int4_encode(&e, &src, 0.9, 2, NULL), 0);
    CHECK(cs.reads == 4 * 5);
    src.topk_two_pass = 1;
    CHECK_RC(wd__sparse_encode(&sp2, &src, 0.1, NULL), 0);
    CHECK_RC(wd__int4_encode(&e2, &src, 0.9, 2, NULL), 0);
    CHECK(same_sparse(&sp, &sp2) && same_int4(&e, &e2));
    wd__sparse_clear(&sp);
    wd__sparse_clear(&sp2);
    wd__int4_clear(&e);
    wd__int4_clear(&e2);
    free(sel);
    free(b);
    return tu_finish("test_topk");
}
