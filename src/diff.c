/*
 * diff.c - two stored objects compared tensor by tensor (elements changed,
 * largest difference, relative norm of the difference) and file by file.
 * Pieces k of both sides are rebuilt side by side on the pool's workers and
 * compared there; only per-piece sums come back, so memory stays at two
 * pieces per worker slot whatever the model's size. Tensors stored as the
 * same chunks along the same lineage are equal without decoding.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "hash.h"
#include "piece.h"
#include "pipeline.h"
#include "repo_int.h"

/* A tensor's bytes are decided by the same stored data on both sides: the
 * same chunks under the same encoding, down to a self-contained one. "same"
 * rows read through to their parent. */
static int same_storage(const wd_stored_tensor *a, const wd_stored_tensor *b)
{
    for (;;) {
        while (a && !strcmp(a->encoding, "same"))
            a = a->parent;
        while (b && !strcmp(b->encoding, "same"))
            b = b->parent;
        if (!a || !b || a->lossy || b->lossy || strcmp(a->encoding, b->encoding) || a->dtype != b->dtype ||
            a->nelem != b->nelem || a->chunk_elems != b->chunk_elems || a->n_chunks != b->n_chunks ||
            memcmp(a->chunks, b->chunks, a->n_chunks * WD_HASH_SIZE))
            return 0;
        if (!strcmp(a->encoding, "planes"))
            return 1;
        if (strcmp(a->encoding, "delta-planes"))
            return 0;
        a = a->parent;
        b = b->parent;
    }
}

/* A pair of tensors still to compare, and what its pieces summed to. */
typedef struct {
    const wd_stored_tensor *a, *b;
    wd_diff_tensor *out;
    double sum_d2, sum_a2;
} pair;

typedef struct {
    size_t pair;
    uint64_t k;
    uint64_t n_changed;
    double max_abs, sum_d2, sum_a2;
} job;

/* Per worker slot: both plans and pieces (WD_CHUNK_TARGET bytes each). */
typedef struct {
    wd_piece_plan pa, pb;
    wd_piece_scratch *ps;
    uint8_t *na, *nb;
} slot;

typedef struct {
    wd_repo *repo;
    pair *pairs;
    job *jobs;
    slot *slots;
} batch;

/* Elements converted to float32 at a time, on the stack. */
#define BLOCK 1024

static void compare(job *j, const uint8_t *a, const uint8_t *b, size_t nelem, wd_dtype dt)
{
    size_t esz = wd__dtype_size(dt);
    int numeric = wd__f32_convertible(dt);
    float fa[BLOCK], fb[BLOCK];
    for (size_t at = 0; at < nelem; at += BLOCK) {
        size_t n = nelem - at < BLOCK ? nelem - at : BLOCK;
        const uint8_t *pa = a + at * esz, *pb = b + at * esz;
        if (!memcmp(pa, pb, n * esz)) {
            if (numeric) {
                wd__to_f32(fa, pa, n, dt);
                for (size_t i = 0; i < n; i++)
                    j->sum_a2 += (double)fa[i] * fa[i];
            }
            continue;
        }
        if (numeric) {
            wd__to_f32(fa, pa, n, dt);
            wd__to_f32(fb, pb, n, dt);
        }
        for (size_t i = 0; i < n; i++) {
            if (numeric)
                j->sum_a2 += (double)fa[i] * fa[i];
            if (!memcmp(pa + i * esz, pb + i * esz, esz))
                continue;
            j->n_changed++;
            if (!numeric)
                continue;
            double d = (double)fb[i] - (double)fa[i];
            if (!isfinite(d))
                continue; /* NaN or infinity on a side: counted as changed, kept out of the sums */
            d = fabs(d);
            j->sum_d2 += d * d;
            if (d > j->max_abs)
                j->max_abs = d;
        }
    }
}

static int run_job(void *p, size_t i, int worker)
{
    batch *bt = p;
    job *j = &bt->jobs[i];
    slot *s = &bt->slots[worker];
    const pair *pr = &bt->pairs[j->pair];
    int rc = wd__piece_fetch(bt->repo, pr->a, j->k, WD_PIECE_NATIVE, &s->pa);
    if (!rc)
        rc = wd__piece_decode(&s->pa, s->ps, s->na);
    if (!rc)
        rc = wd__piece_fetch(bt->repo, pr->b, j->k, WD_PIECE_NATIVE, &s->pb);
    if (!rc)
        rc = wd__piece_decode(&s->pb, s->ps, s->nb);
    if (rc)
        return rc;
    if (s->pa.nelem != s->pb.nelem)
        return wd__error(WD_ECORRUPT, "tensor '%s': piece %llu rebuilds to %zu and %zu elements", pr->a->name,
                         (unsigned long long)j->k, s->pa.nelem, s->pb.nelem);
    compare(j, s->na, s->nb, s->pa.nelem, pr->a->dtype);
    return 0;
}

/* Compares every pair, pieces in batches of a few per worker slot; sums
 * are added in piece order, so the result does not depend on -j. */
static int compare_pairs(wd_repo *repo, pair *pairs, size_t n_pairs, const wd_options *opt)
{
    wd_pool *pool = NULL;
    int rc = wd__pool_new(&pool, opt ? opt->threads : 0);
    if (rc)
        return rc;
    int nslots = wd__pool_size(pool);
    size_t cap = 4 * (size_t)nslots;
    job *jobs = calloc(cap, sizeof *jobs);
    slot *slots = calloc((size_t)nslots, sizeof *slots);
    if (!jobs || !slots)
        rc = WD_NOMEM();
    for (int i = 0; !rc && i < nslots; i++) {
        slots[i].na = malloc(WD_CHUNK_TARGET);
        slots[i].nb = malloc(WD_CHUNK_TARGET);
        if (!slots[i].na || !slots[i].nb)
            rc = WD_NOMEM();
        else
            rc = wd__piece_scratch_new(&slots[i].ps);
    }
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < n_pairs; i++)
        total += pairs[i].a->nbytes;
    batch bt = {repo, pairs, jobs, slots};
    size_t pi = 0;
    uint64_t k = 0;
    while (!rc && pi < n_pairs) {
        size_t n = 0;
        while (n < cap && pi < n_pairs) {
            const wd_stored_tensor *t = pairs[pi].a;
            uint64_t npieces = t->chunk_elems ? (t->nelem + t->chunk_elems - 1) / t->chunk_elems : 0;
            if (k >= npieces) {
                pi++;
                k = 0;
                continue;
            }
            memset(&jobs[n], 0, sizeof jobs[n]);
            jobs[n].pair = pi;
            jobs[n].k = k++;
            n++;
        }
        if (!n)
            break;
        if ((rc = wd__pool_run(pool, n, run_job, &bt)))
            break;
        for (size_t i = 0; i < n; i++) {
            pair *p = &pairs[jobs[i].pair];
            wd_diff_tensor *d = p->out;
            d->n_changed += jobs[i].n_changed;
            if (jobs[i].max_abs > d->max_abs_diff)
                d->max_abs_diff = jobs[i].max_abs;
            p->sum_d2 += jobs[i].sum_d2;
            p->sum_a2 += jobs[i].sum_a2;
            uint64_t left = p->a->nelem - jobs[i].k * p->a->chunk_elems;
            done += (left < p->a->chunk_elems ? left : p->a->chunk_elems) * wd__dtype_size(p->a->dtype);
        }
        if (opt && opt->progress)
            opt->progress(opt->progress_ud, "diff", done, total);
    }
    for (int i = 0; slots && i < nslots; i++) {
        wd__piece_plan_free(&slots[i].pa);
        wd__piece_plan_free(&slots[i].pb);
        wd__piece_scratch_free(slots[i].ps);
        free(slots[i].na);
        free(slots[i].nb);
    }
    free(slots);
    free(jobs);
    wd__pool_free(pool);
    return rc;
}

static void set_side(wd_diff_tensor *d, const wd_stored_tensor *t, int side_b)
{
    snprintf(side_b ? d->dtype_b : d->dtype_a, sizeof d->dtype_a, "%s", wd__dtype_name(t->dtype));
    if (side_b) {
        d->ndim_b = t->ndim;
        memcpy(d->shape_b, t->shape, sizeof d->shape_b);
    } else {
        d->ndim_a = t->ndim;
        memcpy(d->shape_a, t->shape, sizeof d->shape_a);
    }
}

static int diff_tensors(wd_repo *repo, const wd_object *a, const wd_object *b, const wd_options *opt,
                        wd_diff_result *r)
{
    size_t cap = a->n_tensors + b->n_tensors;
    r->tensors = calloc(cap ? cap : 1, sizeof *r->tensors);
    pair *pairs = calloc(cap ? cap : 1, sizeof *pairs);
    size_t n_pairs = 0;
    int rc = r->tensors && pairs ? 0 : WD_NOMEM();
    size_t i = 0, j = 0;
    while (!rc && (i < a->n_tensors || j < b->n_tensors)) {
        const wd_stored_tensor *ta = i < a->n_tensors ? &a->tensors[i] : NULL;
        const wd_stored_tensor *tb = j < b->n_tensors ? &b->tensors[j] : NULL;
        int c = !ta ? 1 : !tb ? -1 : strcmp(ta->name, tb->name);
        wd_diff_tensor *d = &r->tensors[r->n_tensors++];
        d->max_abs_diff = NAN;
        d->rel_norm = NAN;
        if (!(d->name = strdup(c <= 0 ? ta->name : tb->name))) {
            rc = WD_NOMEM();
            break;
        }
        if (c < 0) {
            d->status = WD_DIFF_ONLY_A;
            set_side(d, ta, 0);
            i++;
            continue;
        }
        if (c > 0) {
            d->status = WD_DIFF_ONLY_B;
            set_side(d, tb, 1);
            j++;
            continue;
        }
        set_side(d, ta, 0);
        set_side(d, tb, 1);
        i++;
        j++;
        if (ta->dtype != tb->dtype || ta->ndim != tb->ndim ||
            memcmp(ta->shape, tb->shape, (size_t)ta->ndim * sizeof *ta->shape)) {
            d->status = WD_DIFF_RETYPED;
            continue;
        }
        d->nelem = ta->nelem;
        if (same_storage(ta, tb) || ta->nelem == 0) {
            d->max_abs_diff = 0;
            d->rel_norm = 0;
            continue;
        }
        if (ta->chunk_elems != tb->chunk_elems) {
            rc = wd__error(WD_ECORRUPT, "tensor '%s' is cut into pieces of %llu and %llu elements", ta->name,
                           (unsigned long long)ta->chunk_elems, (unsigned long long)tb->chunk_elems);
            break;
        }
        if (wd__f32_convertible(ta->dtype))
            d->max_abs_diff = 0;
        pairs[n_pairs++] = (pair){ta, tb, d, 0, 0};
    }
    if (!rc)
        rc = compare_pairs(repo, pairs, n_pairs, opt);
    for (size_t p = 0; !rc && p < n_pairs; p++) {
        wd_diff_tensor *d = pairs[p].out;
        d->status = d->n_changed ? WD_DIFF_CHANGED : WD_DIFF_SAME;
        if (!wd__f32_convertible(pairs[p].a->dtype))
            continue;
        if (pairs[p].sum_d2 == 0)
            d->rel_norm = 0;
        else if (pairs[p].sum_a2 == 0)
            d->rel_norm = INFINITY;
        else
            d->rel_norm = sqrt(pairs[p].sum_d2) / sqrt(pairs[p].sum_a2);
    }
    free(pairs);
    return rc;
}

static int diff_files(const wd_object *a, const wd_object *b, wd_diff_result *r)
{
    size_t cap = a->n_files + b->n_files;
    r->files = calloc(cap ? cap : 1, sizeof *r->files);
    if (!r->files)
        return WD_NOMEM();
    size_t i = 0, j = 0;
    while (i < a->n_files || j < b->n_files) {
        const wd_stored_file *fa = i < a->n_files ? &a->files[i] : NULL;
        const wd_stored_file *fb = j < b->n_files ? &b->files[j] : NULL;
        int c = !fa ? 1 : !fb ? -1 : strcmp(fa->path, fb->path);
        wd_diff_file *d = &r->files[r->n_files++];
        if (!(d->path = strdup(c <= 0 ? fa->path : fb->path)))
            return WD_NOMEM();
        if (c <= 0) {
            d->size_a = fa->size;
            d->is_shard = fa->is_shard;
            i++;
        }
        if (c >= 0) {
            d->size_b = fb->size;
            d->is_shard = fb->is_shard;
            j++;
        }
        if (c)
            d->status = c < 0 ? WD_DIFF_ONLY_A : WD_DIFF_ONLY_B;
        else
            d->status = fa->size == fb->size && fa->is_shard == fb->is_shard && fa->n_chunks == fb->n_chunks &&
                                !memcmp(fa->chunks, fb->chunks, fa->n_chunks * WD_HASH_SIZE)
                            ? WD_DIFF_SAME
                            : WD_DIFF_CHANGED;
    }
    return 0;
}

int wd_diff(wd_repo *repo, const char *ref_a, const char *ref_b, const wd_options *opt, wd_diff_result **out)
{
    *out = NULL;
    uint8_t ia[WD_HASH_SIZE], ib[WD_HASH_SIZE];
    wd_object *a = NULL, *b = NULL;
    wd_diff_result *r = calloc(1, sizeof *r);
    int rc = r ? 0 : WD_NOMEM();
    if (!rc && !(rc = wd__resolve(repo, ref_a, ia)))
        rc = wd__resolve(repo, ref_b, ib);
    if (!rc && !(rc = wd__object_load(repo, ia, &a)))
        rc = wd__object_load(repo, ib, &b);
    if (!rc) {
        wd__hex(r->id_a, ia);
        wd__hex(r->id_b, ib);
        rc = diff_tensors(repo, a, b, opt, r);
    }
    if (!rc)
        rc = diff_files(a, b, r);
    for (size_t i = 0; !rc && i < r->n_tensors; i++)
        r->n_differ += r->tensors[i].status != WD_DIFF_SAME;
    for (size_t i = 0; !rc && i < r->n_files; i++)
        r->n_differ += r->files[i].status != WD_DIFF_SAME;
    wd__object_free(a);
    wd__object_free(b);
    if (rc) {
        wd_diff_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void wd_diff_free(wd_diff_result *diff)
{
    if (!diff)
        return;
    for (size_t i = 0; i < diff->n_tensors; i++)
        free(diff->tensors[i].name);
    for (size_t i = 0; i < diff->n_files; i++)
        free(diff->files[i].path);
    free(diff->tensors);
    free(diff->files);
    free(diff);
}
