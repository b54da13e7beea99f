/*
 * export.c - `wdrepo export REF OUT.wdelta`: a stored delta written as a
 * deltatensors file (format v2, or v1 on request).
 *
 * Arrays stored for the requested layout are streamed out as they are, so
 * an imported file comes back byte for byte. Everything else is encoded
 * from the exact reconstruction: the delta f32(object) - f32(parent) is read
 * piece by piece and given to the codec (int4 layout 2 exported as v1,
 * tensors a lossy commit kept lossless such as integer tensors, and
 * --strategy re-encodings of lossless deltas). The error such a re-encoding
 * adds to the stored delta is reported.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "codec.h"
#include "codec_lowbit.h"
#include "db.h"
#include "error.h"
#include "hash.h"
#include "lossy.h"
#include "lossy_encode.h"
#include "outfile.h"
#include "pairdelta.h"
#include "piece.h"
#include "pipeline.h"
#include "progress.h"
#include "repo_int.h"
#include "strategy.h"
#include "wdelta.h"

/* One tensor of the file: a stored lossy tensor, or arrays encoded here. */
typedef struct {
    const wd_stored_tensor *t;
    int stored;               /* 1: stream t->lossy's arrays */
    size_t rank;              /* v1 re-export: place in the imported file's record order (SIZE_MAX: none) */
    wd__wdelta_tensor entry;
    wd_sparse_delta sp;
    wd_quant_delta q;
    wd_int4_delta e;
} out_tensor;

/* Encodes ot from its exact delta f32(object) - f32(parent) against
 * parent, the codec's passes on pool (pd: its worker slots' reader). */
static int encode_exact(wd_repo *repo, wd_pool *pool, wd__pair_delta *pd, out_tensor *ot, const wd_stored_tensor *parent,
                        int strategy, double option, int version, float *cache, double *worst)
{
    wd__pd_side obj_side = {.repo = repo, .st = ot->t}, par_side = {.repo = repo, .st = parent};
    wd__pair_delta_set(pd, &obj_side, &par_side);
    wd_delta_src src = wd__pair_delta_src(pd, ot->t->nelem, pool, cache);
    wd_codec_fidelity fid;
    memset(&fid, 0, sizeof fid);
    int rc;
    if (strategy == WD__WS_SPARSE) {
        rc = wd__sparse_encode(&ot->sp, &src, option, &fid);
    } else if (strategy == WD__WS_QUANTIZED) {
        uint64_t rows, cols;
        wd__quant_layout(ot->t->ndim, ot->t->shape, &rows, &cols);
        rc = wd__quant_encode(&ot->q, &src, cols, &fid);
    } else {
        rc = wd__int4_encode(&ot->e, &src, option, version == 1 ? 1 : 2, &fid);
    }
    /* A zero delta re-encodes exactly; rel_error is then 0 or NaN. */
    if (!rc && fid.rel_error == fid.rel_error && !isinf(fid.rel_error) && fid.rel_error > *worst)
        *worst = fid.rel_error;
    return rc;
}

/* deltatensors' parent_hash of obj's parent over names (record order):
 * natively, or as float32 for a lossy parent. When names are exactly the
 * tensors a recorded hash covers, in name order, that hash is it. */
static int parent_hash(wd_repo *repo, wd_pool *pool, const wd_object *par, const char *const *names, size_t n,
                       uint8_t out[WD_HASH_SIZE])
{
    int lossy = 0;
    for (size_t i = 0; i < par->n_tensors; i++)
        lossy |= par->tensors[i].lossy != NULL;
    if (!lossy && n == par->n_tensors) {
        size_t i = 0;
        while (i < n && !strcmp(par->tensors[i].name, names[i]))
            i++;
        if (i == n) {
            memcpy(out, par->model_hash, WD_HASH_SIZE);
            return 0;
        }
    }
    wd_walk_opts o = {.names = names, .n_names = n, .pool = pool};
    return lossy ? wd__object_walk(repo, par, &o, NULL, out, NULL) : wd__object_walk(repo, par, &o, out, NULL, NULL);
}

static int object_row(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], char **strategy, char **options, char **wdelta)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st, "SELECT strategy, options, wdelta FROM object WHERE id = ?1");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    int row = wd__db_step(repo->db, st, "reading object");
    if (row > 0) {
        const char *s0 = (const char *)sqlite3_column_text(st, 0), *s1 = (const char *)sqlite3_column_text(st, 1);
        const char *s2 = (const char *)sqlite3_column_text(st, 2);
        if (!s0 || !s1)
            rc = wd__error(WD_ECORRUPT, "object without a strategy or options");
        else if (!(*strategy = strdup(s0)) || !(*options = strdup(s1)) || (s2 && !(*wdelta = strdup(s2))))
            rc = WD_NOMEM();
    } else {
        rc = row < 0 ? row : wd__error(WD_ENOTFOUND, "object vanished");
    }
    sqlite3_finalize(st);
    return rc;
}

static double option_of(const char *options, const char *key, double dflt)
{
    cJSON *j = cJSON_Parse(options);
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, key) : NULL;
    double d = cJSON_IsNumber(v) ? v->valuedouble : dflt;
    cJSON_Delete(j);
    return d;
}

/* Writes the bytes of (tensor, field) into the open record; pg counts
 * them (stage "export", by bytes). */
static int write_record(wd_repo *repo, wd__wdelta_writer *w, const out_tensor *ot, int field, uint8_t *buf,
                        wd__progress *pg)
{
    const wd_lossy *L = ot->t->lossy;
    if (ot->stored) {
        if (field == WD__WF_SCALE)
            return wd__wdelta_writer_write(w, &L->scale, 2);
        if (field == WD__WF_ZERO_POINT)
            return wd__wdelta_writer_write(w, &L->zero_point, 2);
        const wd_astream *a = &L->arrays[field];
        uint64_t total = a->count * wd__dtype_size(a->dtype);
        for (uint64_t off = 0; off < total; off += WD_ASTREAM_CHUNK) {
            uint64_t end = total - off < WD_ASTREAM_CHUNK ? total : off + WD_ASTREAM_CHUNK;
            int rc = wd__astream_read(repo->store, a, off, end, buf);
            if (!rc)
                rc = wd__wdelta_writer_write(w, buf, (size_t)(end - off));
            if (rc)
                return rc;
            wd__progress_add(pg, end - off);
        }
        return 0;
    }
    switch (field) {
    case WD__WF_INDICES: return wd__wdelta_writer_write(w, ot->sp.indices, ot->sp.k * 8);
    case WD__WF_VALUES: return wd__wdelta_writer_write(w, ot->sp.values, ot->sp.k * 4);
    case WD__WF_SCALES: return wd__wdelta_writer_write(w, ot->q.scales, (ot->q.n / ot->q.n_cols) * 2);
    case WD__WF_PACKED_SIGNS: return wd__wdelta_writer_write(w, ot->q.packed_signs, (ot->q.n + 7) / 8);
    case WD__WF_OUTLIER_IDX: return wd__wdelta_writer_write(w, ot->e.outlier_idx, ot->e.n_outliers * ot->e.idx_bytes);
    case WD__WF_OUTLIER_VALS: return wd__wdelta_writer_write(w, ot->e.outlier_vals, ot->e.n_outliers * 2);
    case WD__WF_SCALE: return wd__wdelta_writer_write(w, &ot->e.scale, 2);
    case WD__WF_ZERO_POINT: return wd__wdelta_writer_write(w, &ot->e.zero_point, 2);
    default:
        return wd__wdelta_writer_write(w, ot->e.packed, wd__int4_packed_len(ot->e.layout, ot->e.n, ot->e.n_outliers));
    }
}

/* Element count of the record (tensor, field). */
static uint64_t record_count(const out_tensor *ot, int field)
{
    if (ot->stored) {
        if (field == WD__WF_SCALE || field == WD__WF_ZERO_POINT)
            return 1;
        return ot->t->lossy->arrays[field].count;
    }
    switch (field) {
    case WD__WF_INDICES:
    case WD__WF_VALUES: return ot->sp.k;
    case WD__WF_SCALES: return ot->q.n / ot->q.n_cols;
    case WD__WF_PACKED_SIGNS: return (ot->q.n + 7) / 8;
    case WD__WF_OUTLIER_IDX:
    case WD__WF_OUTLIER_VALS: return ot->e.n_outliers;
    case WD__WF_SCALE:
    case WD__WF_ZERO_POINT: return 1;
    default: return wd__int4_packed_len(ot->e.layout, ot->e.n, ot->e.n_outliers);
    }
}

static wd_dtype record_dtype(const out_tensor *ot, int field)
{
    if (ot->stored && field != WD__WF_SCALE && field != WD__WF_ZERO_POINT)
        return ot->t->lossy->arrays[field].dtype;
    switch (field) {
    case WD__WF_INDICES: return WD_DT_I64;
    case WD__WF_VALUES: return WD_DT_F32;
    case WD__WF_PACKED_SIGNS:
    case WD__WF_PACKED: return WD_DT_U8;
    case WD__WF_OUTLIER_IDX: return ot->e.idx_bytes == 4 ? WD_DT_I32 : WD_DT_I64;
    default: return WD_DT_F16;
    }
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const out_tensor *)a)->t->name, ((const out_tensor *)b)->t->name);
}

static int cmp_name_key(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const out_tensor *)elem)->t->name);
}

/* Ranked tensors first, by rank; the others after them, by name. */
static int cmp_rank(const void *a, const void *b)
{
    const out_tensor *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return strcmp(x->t->name, y->t->name);
}

int wd_export(wd_repo *repo, const char *ref, const char *path, wd_export_opts *eo, const wd_options *opt)
{
    uint8_t id[WD_HASH_SIZE];
    int rc = wd__resolve(repo, ref, id);
    if (rc)
        return rc;
    int version = eo && eo->format_version ? eo->format_version : 2;
    if (version != 1 && version != 2)
        return wd__error(WD_EUSAGE, "format version must be 1 or 2, not %d", version);
    wd_object *obj = NULL;
    char *strategy = NULL, *options = NULL, *wdelta = NULL;
    out_tensor *ots = NULL;
    const char **names = NULL;
    uint8_t *buf = NULL;
    float *cache = NULL; /* the codecs' tensor cache when re-encoding */
    size_t n = 0;
    wd__wdelta_writer *w = NULL;
    cJSON *rec = NULL;
    wd_pool *pool = NULL;
    wd__pair_delta *pd = NULL; /* made with the cache, at the first re-encoding */
    /* The output is checked before any work; the repository must survive
     * it, --force or not. */
    wd__outfile *of = NULL;
    const wd__keep keep[] = {{repo->dir, "the repository"}};
    if ((rc = wd__outfile_open(&of, path, eo ? eo->flags : 0, keep, 1)))
        return rc;
    if ((rc = wd__pool_new(&pool, opt ? opt->threads : 0))) {
        wd__outfile_abort(of);
        return rc;
    }
    if ((rc = wd__object_load(repo, id, &obj)) || (rc = object_row(repo, id, &strategy, &options, &wdelta)))
        goto done;
    if (wdelta && !(rec = cJSON_Parse(wdelta))) {
        rc = wd__error(WD_ECORRUPT, "stored .wdelta layout of '%s' is not JSON", ref);
        goto done;
    }
    if (obj->is_base) {
        rc = wd__error(WD_EUSAGE, "'%s' is a base; export writes deltas (a base is a folder: use checkout)", ref);
        goto done;
    }
    int target = eo && eo->reencode ? wd__lossy_strategy_of(eo->reencode) : wd__lossy_strategy_of(strategy);
    if (target == WD__WS_LOWBIT) /* (issue 11) wdrepo's own: re-encoded, like lossless */
        target = -1;
    if (target < 0) {
        rc = eo && eo->reencode
                 ? wd__error(WD_EUSAGE, "cannot re-encode as '%s' (choose sparse, quantized or int4)", eo->reencode)
                 : wd__error(WD_EUSAGE,
                             "delta '%s' is %s, which .wdelta cannot hold; add --strategy sparse|quantized|int4 to "
                             "re-encode it from its exact reconstruction",
                             ref, strategy);
        goto done;
    }
    double option = target == WD__WS_SPARSE ? WD_DEFAULT_SPARSITY : WD_DEFAULT_OUTLIER_FRACTION;
    if (eo && eo->reencode) {
        wd_strategy_opts so = {eo->reencode, eo->sparsity, eo->outlier_fraction, eo->set};
        wd__strategy st;
        if ((rc = wd__strategy_resolve(&st, &so, NULL, WD_STRATEGY_WDELTA)))
            goto done;
        option = st.option;
    } else {
        option = option_of(options, target == WD__WS_SPARSE ? "sparsity" : "outlier_fraction", option);
    }
    int reencode_all = eo && eo->reencode;

    /* Which tensors the file names: an imported file's own; otherwise every
     * tensor the parent has with the same shape that the codecs can take. */
    ots = calloc(obj->n_tensors ? obj->n_tensors : 1, sizeof *ots);
    buf = malloc(WD_ASTREAM_CHUNK);
    if (!ots || !buf) {
        rc = WD_NOMEM();
        goto done;
    }
    for (size_t i = 0; i < obj->n_tensors; i++) {
        const wd_stored_tensor *t = &obj->tensors[i];
        if (wdelta && !reencode_all) {
            if (!t->lossy)
                continue;
        } else {
            long j = wd__object_find(obj->parent, t->name);
            const wd_stored_tensor *pt = j >= 0 ? &obj->parent->tensors[j] : NULL;
            /* The shape, not just the element count: quantized rows
             * follow it. The dtypes may differ; the delta is in float32. */
            if (!pt || pt->ndim != t->ndim || memcmp(pt->shape, t->shape, sizeof(uint64_t) * (size_t)t->ndim) ||
                !wd__f32_convertible(t->dtype) || !wd__f32_convertible(pt->dtype) ||
                (target == WD__WS_QUANTIZED && t->nelem == 0))
                continue;
        }
        out_tensor *ot = &ots[n++];
        ot->t = t;
        ot->stored = !reencode_all && t->lossy && t->lossy->strategy == target &&
                     (target != WD__WS_INT4 || t->lossy->layout == (version == 2 ? 2 : 1));
    }
    if (!n) {
        rc = wd__error(WD_EUSAGE, "delta '%s' has no tensor a .wdelta file can hold", ref);
        goto done;
    }
    /* Record order: v2 by name; v1 as the imported file had it, else by
     * name. The parent_hash covers the tensors in that order. */
    qsort(ots, n, sizeof *ots, cmp_name);
    if (version == 1 && rec) {
        /* A name's first place in the recorded order is its rank (a name
         * listed twice or unknown is ignored); binary searches and one sort
         * keep this O(n log n) for files of 10^5 tensors. */
        const cJSON *order = cJSON_GetObjectItemCaseSensitive(rec, "record_order");
        for (size_t i = 0; i < n; i++)
            ots[i].rank = SIZE_MAX;
        size_t pos = 0;
        const cJSON *s;
        cJSON_ArrayForEach(s, order)
        {
            out_tensor *hit = cJSON_IsString(s) ? bsearch(s->valuestring, ots, n, sizeof *ots, cmp_name_key) : NULL;
            if (hit && hit->rank == SIZE_MAX)
                hit->rank = pos++;
        }
        qsort(ots, n, sizeof *ots, cmp_rank);
    }
    double worst = 0;
    int reencoded = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        out_tensor *ot = &ots[i];
        if (ot->stored) {
            rc = wd__lossy_entry(ot->t, version, option, &ot->entry);
            continue;
        }
        /* Encoding on the fly: the parent tensor is the exact delta's base. */
        long j = wd__object_find(obj->parent, ot->t->name);
        if (j < 0) {
            rc = wd__error(WD_ECORRUPT, "tensor '%s' of '%s' has no counterpart in its parent", ot->t->name, ref);
            break;
        }
        const wd_stored_tensor *pt = &obj->parent->tensors[j];
        /* One cache for every tensor (WD_LOSSY_CACHE_ELEMS floats). */
        if (!cache && !(cache = malloc(WD_LOSSY_CACHE_ELEMS * sizeof *cache))) {
            rc = WD_NOMEM();
            break;
        }
        if (!pd && (rc = wd__pair_delta_new(&pd, wd__pool_size(pool))))
            break;
        rc = encode_exact(repo, pool, pd, ot, pt, target, option, version, cache, &worst);
        reencoded |= ot->t->lossy != NULL;
        if (rc)
            break;
        wd__wdelta_tensor *e = &ot->entry;
        e->name = ot->t->name;
        e->name_len = strlen(ot->t->name);
        e->strategy = target;
        e->ndim = ot->t->ndim;
        memcpy(e->shape, ot->t->shape, sizeof e->shape);
        snprintf(e->dtype, sizeof e->dtype, "float32");
        if (version == 2)
            snprintf(e->base_dtype, sizeof e->base_dtype, "%s", wd__dtype_numpy_name(pt->dtype));
        e->sparsity = option;
        e->outlier_fraction = option;
        e->n_outliers = ot->e.n_outliers;
        rc = wd__wdelta_tensor_fill(e, version);
    }
    if (rc)
        goto done;

    /* parent_hash: recorded for an imported file of this version, else the
     * parent's tensors restricted to the file's, in record order, natively
     * or (for a chain link on a lossy parent) as float32. */
    char parent_hex[WD_HEX_SIZE] = "";
    const cJSON *ph = rec ? cJSON_GetObjectItemCaseSensitive(rec, "parent_hash") : NULL;
    const cJSON *rv = rec ? cJSON_GetObjectItemCaseSensitive(rec, "version") : NULL;
    if (!reencode_all && cJSON_IsString(ph) && cJSON_IsNumber(rv) && rv->valueint == version &&
        strlen(ph->valuestring) == 64) {
        snprintf(parent_hex, sizeof parent_hex, "%s", ph->valuestring);
    } else {
        names = calloc(n, sizeof *names);
        if (!names) {
            rc = WD_NOMEM();
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            names[i] = ots[i].t->name;
        uint8_t h[WD_HASH_SIZE];
        if ((rc = parent_hash(repo, pool, obj->parent, names, n, h)))
            goto done;
        wd__hex(parent_hex, h);
    }

    wd__wdelta_tensor *entries = calloc(n, sizeof *entries);
    if (!entries) {
        rc = WD_NOMEM();
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        entries[i] = ots[i].entry;
    rc = wd__wdelta_writer_begin_file(&w, of, version, parent_hex, target, entries, n);
    of = NULL; /* the writer's now, even on error */
    free(entries);
    if (rc)
        goto done;
    size_t ti;
    int field;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const int *fields;
        size_t nf = wd__wdelta_fields_of(ots[i].entry.strategy, &fields);
        for (size_t k = 0; k < nf; k++)
            total += record_count(&ots[i], fields[k]) * wd__dtype_size(record_dtype(&ots[i], fields[k]));
    }
    wd__progress pg;
    wd__progress_start(&pg, opt, "export", total);
    while (!rc && wd__wdelta_writer_next(w, &ti, &field)) {
        const out_tensor *ot = &ots[ti];
        uint64_t dims[1] = {record_count(ot, field)};
        rc = wd__wdelta_writer_record(w, ot->t->name, strlen(ot->t->name), field, record_dtype(ot, field), 1, dims);
        /* An empty record is complete as soon as it is opened. */
        uint64_t before = pg.done;
        if (!rc && dims[0])
            rc = write_record(repo, w, ot, field, buf, &pg);
        /* records written from memory at once */
        if (!rc && pg.done == before)
            wd__progress_add(&pg, dims[0] * wd__dtype_size(record_dtype(ot, field)));
        if (rc)
            rc = wd__error_context(rc, "tensor '%s', array '%s'", ot->t->name, wd__wdelta_field_name(field));
    }
    if (rc) {
        wd__wdelta_writer_abort(w);
    } else {
        rc = wd__wdelta_writer_finish(w);
    }
    w = NULL;
    if (!rc && eo) {
        eo->added_rel_error = worst;
        eo->reencoded = reencoded || reencode_all;
    }
done:
    wd__outfile_abort(of);
    for (size_t i = 0; ots && i < n; i++) {
        wd__sparse_clear(&ots[i].sp);
        wd__quant_clear(&ots[i].q);
        wd__int4_clear(&ots[i].e);
    }
    cJSON_Delete(rec);
    free(ots);
    free(cache);
    wd__pair_delta_free(pd);
    free(names);
    free(buf);
    free(strategy);
    free(options);
    free(wdelta);
    wd__object_free(obj);
    wd__pool_free(pool);
    return rc;
}
