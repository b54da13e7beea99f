/*
 * lossy.c - lossy tensors' parameters and arrays in the repository (see
 * lossy.h and docs/FORMAT.md section 7).
 *
 * params is a JSON object:
 *   {"strategy":"int4", "n_cols":N (quantized), "layout":1|2, "scale":u16,
 *    "zero_point":u16 (int4), "before":[entries before piece k...]
 *    (sparse, int4), "entry":{.wdelta header entry} (when recorded)}
 * The entry keeps what export needs to rebuild deltatensors' header byte
 * for byte: dtype, base_dtype, options, and the key order.
 */
#include "lossy.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_lowbit.h"
#include "db.h"
#include "error.h"

static const char *const encodings[WD__WS__COUNT] = {"sparse", "quantized", "int4"};

const char *wd__lossy_encoding(int strategy)
{
    if (strategy == WD__WS_LOWBIT)
        return "lowbit";
    return strategy >= 0 && strategy < WD__WS__COUNT ? encodings[strategy] : "?";
}

int wd__lossy_strategy_of(const char *encoding)
{
    if (!strcmp(encoding, "lowbit"))
        return WD__WS_LOWBIT;
    for (int i = 0; i < WD__WS__COUNT; i++)
        if (!strcmp(encoding, encodings[i]))
            return i;
    return -1;
}

void wd__lossy_free(wd_lossy *L)
{
    if (!L)
        return;
    free(L->before);
    for (int i = 0; i < WD__WF__COUNT; i++)
        wd__astream_clear(&L->arrays[i]);
    free(L->params_json);
    free(L);
}

static int field_by_name(const char *name)
{
    for (int f = 0; f < WD__WF__COUNT; f++)
        if (!strcmp(wd__wdelta_field_name(f), name))
            return f;
    return -1;
}

static int dtype_by_numpy(const char *name, wd_dtype *out)
{
    static const wd_dtype cands[] = {WD_DT_F16, WD_DT_F32, WD_DT_U8, WD_DT_I32, WD_DT_I64, WD_DT_I16};
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++)
        if (!strcmp(wd__wdelta_dtype_name(cands[i]), name)) {
            *out = cands[i];
            return 0;
        }
    return -1;
}

static int num(const cJSON *o, const char *key, double lo, double hi, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi)
        return -1;
    *out = v->valuedouble;
    return 0;
}

int wd__lossy_load(wd_repo *repo, const uint8_t object[WD_HASH_SIZE], wd_stored_tensor *t, const char *params)
{
    int strategy = wd__lossy_strategy_of(t->encoding);
    if (strategy < 0 || !params)
        return wd__error(WD_ECORRUPT, "tensor '%s': lossy encoding without parameters", t->name);
    wd_lossy *L = calloc(1, sizeof *L);
    if (!L || !(L->params_json = strdup(params))) {
        free(L);
        return WD_NOMEM();
    }
    L->strategy = strategy;
    int rc = 0;
    cJSON *j = cJSON_Parse(params);
    double v;
    uint64_t n_pieces = t->nelem ? (t->nelem + t->chunk_elems - 1) / t->chunk_elems : 0;
    if (!cJSON_IsObject(j)) {
        rc = wd__error(WD_ECORRUPT, "tensor '%s': params are not a JSON object", t->name);
    } else if (strategy == WD__WS_LOWBIT) {
        double seg = 0, bits = 0;
        if (num(j, "seg", WD_LOWBIT_SEG_MIN, WD_LOWBIT_SEG_MAX, &seg) || num(j, "step", 0, 4294967295.0, &bits) ||
            seg != (double)(uint64_t)seg || bits != (double)(uint32_t)bits) {
            rc = wd__error(WD_ECORRUPT, "tensor '%s': bad lowbit parameters", t->name);
        } else {
            uint32_t u = (uint32_t)bits;
            L->n_cols = (uint64_t)seg;
            memcpy(&L->step, &u, sizeof u);
            if (!(L->step > 0 && L->step <= FLT_MAX))
                rc = wd__error(WD_ECORRUPT, "tensor '%s': bad lowbit parameters", t->name);
        }
        double rk = 0;
        const cJSON *sa = cJSON_GetObjectItemCaseSensitive(j, "sa");
        if (!rc && !num(j, "rank", 1, WD_LOWBIT_RANK_MAX, &rk)) {
            /* a low-rank part: whole rows of seg columns */
            L->rank = (int)rk;
            if (rk != (double)L->rank || t->nelem % L->n_cols || L->n_cols > WD_LOWBIT_LR_MAX_COLS || num(j, "sv", 0, 4294967295.0, &bits) ||
                !cJSON_IsArray(sa) || cJSON_GetArraySize(sa) != L->rank)
                rc = wd__error(WD_ECORRUPT, "tensor '%s': bad lowbit parameters", t->name);
            uint32_t u = (uint32_t)bits;
            memcpy(&L->sv, &u, sizeof u);
            int k = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, sa)
            {
                if (rc || k >= L->rank)
                    break;
                if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 4294967295.0)
                    rc = wd__error(WD_ECORRUPT, "tensor '%s': bad lowbit parameters", t->name);
                u = (uint32_t)e->valuedouble;
                memcpy(&L->sa[k++], &u, sizeof u);
            }
        } else if (!rc && cJSON_GetObjectItemCaseSensitive(j, "rank")) {
            rc = wd__error(WD_ECORRUPT, "tensor '%s': bad lowbit parameters", t->name);
        }
    } else if (strategy == WD__WS_QUANTIZED) {
        if (num(j, "n_cols", 1, 9007199254740992.0, &v) || t->nelem % (uint64_t)v)
            rc = wd__error(WD_ECORRUPT, "tensor '%s': bad n_cols", t->name);
        else
            L->n_cols = (uint64_t)v;
    } else {
        if (strategy == WD__WS_INT4) {
            double lay = 2, sc = 0, zp = 0;
            if (num(j, "layout", 1, 2, &lay) || num(j, "scale", 0, 65535, &sc) || num(j, "zero_point", 0, 65535, &zp))
                rc = wd__error(WD_ECORRUPT, "tensor '%s': bad int4 parameters", t->name);
            L->layout = (int)lay;
            L->scale = (uint16_t)sc;
            L->zero_point = (uint16_t)zp;
        }
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "before");
        if (!rc && (!cJSON_IsArray(b) || (uint64_t)cJSON_GetArraySize(b) != n_pieces + 1))
            rc = wd__error(WD_ECORRUPT, "tensor '%s': bad piece index", t->name);
        if (!rc && !(L->before = malloc((n_pieces + 1) * sizeof *L->before)))
            rc = WD_NOMEM();
        size_t i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, b)
        {
            if (rc)
                break;
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || (i && e->valuedouble < (double)L->before[i - 1]))
                rc = wd__error(WD_ECORRUPT, "tensor '%s': bad piece index", t->name);
            else
                L->before[i++] = (uint64_t)e->valuedouble;
        }
        L->n_pieces = (size_t)n_pieces;
    }
    cJSON_Delete(j);

    sqlite3_stmt *st = NULL;
    if (!rc)
        rc = wd__db_prepare(repo->db, &st,
                            "SELECT field, dtype, count, transform, chunks, stored_bytes FROM tensor_array "
                            "WHERE object = ?1 AND tensor = ?2");
    if (!rc) {
        wd__bind_hash(st, 1, object);
        sqlite3_bind_text(st, 2, t->name, -1, SQLITE_STATIC);
    }
    int row = 0;
    while (!rc && (row = wd__db_step(repo->db, st, "reading tensor arrays")) > 0) {
        const char *fname = (const char *)sqlite3_column_text(st, 0);
        const char *dname = (const char *)sqlite3_column_text(st, 1);
        const char *tname = (const char *)sqlite3_column_text(st, 3);
        int f = fname ? field_by_name(fname) : -1;
        wd_dtype dt = WD_DT_U8;
        int tr = 0;
        if (f < 0 || !dname || !tname || dtype_by_numpy(dname, &dt) || wd__astream_transform_parse(tname, &tr)) {
            rc = wd__error(WD_ECORRUPT, "tensor '%s': bad array row (%s, %s)", t->name, fname, dname);
            break;
        }
        wd_astream *a = &L->arrays[f];
        a->field = f;
        a->dtype = dt;
        a->count = (uint64_t)sqlite3_column_int64(st, 2);
        a->transform = tr;
        a->stored_bytes = (uint64_t)sqlite3_column_int64(st, 5);
        int len = sqlite3_column_bytes(st, 4);
        if (len % WD_HASH_SIZE) {
            rc = wd__error(WD_ECORRUPT, "tensor '%s': bad array chunk list", t->name);
            break;
        }
        a->n_chunks = (size_t)len / WD_HASH_SIZE;
        if (!(a->chunks = malloc(len ? (size_t)len : 1))) {
            rc = WD_NOMEM();
            break;
        }
        if (len)
            memcpy(a->chunks, sqlite3_column_blob(st, 4), (size_t)len);
    }
    if (!rc && row < 0)
        rc = row;
    sqlite3_finalize(st);
    /* The arrays must be able to serve every piece. */
    if (!rc && strategy == WD__WS_LOWBIT &&
        (L->arrays[WD__WF_PACKED].count != t->nelem || L->arrays[WD__WF_PACKED].dtype != WD_DT_I16 ||
         L->arrays[WD__WF_SCALES].count != (t->nelem + L->n_cols - 1) / L->n_cols ||
         L->arrays[WD__WF_SCALES].dtype != WD_DT_F16 ||
         L->arrays[WD__WF_INDICES].count != (uint64_t)L->rank * L->n_cols ||
         L->arrays[WD__WF_VALUES].count != (uint64_t)L->rank * (t->nelem / L->n_cols) ||
         L->arrays[WD__WF_INDICES].dtype != WD_DT_I16 || L->arrays[WD__WF_VALUES].dtype != WD_DT_I16))
        rc = wd__error(WD_ECORRUPT, "tensor '%s': lowbit arrays do not fit its size", t->name);
    if (!rc && strategy != WD__WS_QUANTIZED && strategy != WD__WS_LOWBIT && L->n_pieces &&
        (L->before[0] != 0 ||
         L->before[L->n_pieces] != L->arrays[strategy == WD__WS_SPARSE ? WD__WF_INDICES : WD__WF_OUTLIER_IDX].count))
        rc = wd__error(WD_ECORRUPT, "tensor '%s': piece index disagrees with its arrays", t->name);
    if (rc) {
        wd__lossy_free(L);
        return rc;
    }
    t->lossy = L;
    return 0;
}

int wd__lossy_params(const wd_lossy *L, const wd__wdelta_tensor *e, int version, char **out)
{
    cJSON *j = cJSON_CreateObject();
    int ok = j != NULL;
    ok = ok && cJSON_AddStringToObject(j, "strategy", wd__lossy_encoding(L->strategy));
    if (L->strategy == WD__WS_QUANTIZED)
        ok = ok && cJSON_AddNumberToObject(j, "n_cols", (double)L->n_cols);
    if (L->strategy == WD__WS_LOWBIT) {
        uint32_t u;
        memcpy(&u, &L->step, sizeof u);
        ok = ok && cJSON_AddNumberToObject(j, "seg", (double)L->n_cols) && cJSON_AddNumberToObject(j, "step", u);
        if (L->rank) {
            memcpy(&u, &L->sv, sizeof u);
            ok = ok && cJSON_AddNumberToObject(j, "rank", L->rank) && cJSON_AddNumberToObject(j, "sv", u);
            cJSON *sa = ok ? cJSON_AddArrayToObject(j, "sa") : NULL;
            ok = ok && sa;
            for (int k = 0; ok && k < L->rank; k++) {
                memcpy(&u, &L->sa[k], sizeof u);
                cJSON *x = cJSON_CreateNumber(u);
                ok = x && cJSON_AddItemToArray(sa, x);
            }
        }
    }
    if (L->strategy == WD__WS_INT4) {
        ok = ok && cJSON_AddNumberToObject(j, "layout", L->layout);
        ok = ok && cJSON_AddNumberToObject(j, "scale", L->scale);
        ok = ok && cJSON_AddNumberToObject(j, "zero_point", L->zero_point);
    }
    if (L->strategy != WD__WS_QUANTIZED && L->strategy != WD__WS_LOWBIT) {
        cJSON *b = cJSON_AddArrayToObject(j, "before");
        ok = ok && b;
        for (size_t i = 0; ok && i <= L->n_pieces; i++) {
            cJSON *x = cJSON_CreateNumber((double)L->before[i]);
            ok = x && cJSON_AddItemToArray(b, x);
        }
    }
    if (ok && e) {
        cJSON *en = cJSON_AddObjectToObject(j, "entry");
        ok = en && cJSON_AddNumberToObject(en, "version", version) && cJSON_AddStringToObject(en, "dtype", e->dtype) && cJSON_AddStringToObject(en, "base_dtype", e->base_dtype) &&
             cJSON_AddNumberToObject(en, "sparsity", e->sparsity) &&
             cJSON_AddNumberToObject(en, "outlier_fraction", e->outlier_fraction) &&
             cJSON_AddNumberToObject(en, "n_outliers", (double)e->n_outliers) &&
             cJSON_AddNumberToObject(en, "int4_layout", e->int4_layout) &&
             cJSON_AddNumberToObject(en, "has", e->has);
        cJSON *ko = ok ? cJSON_AddArrayToObject(en, "key_order") : NULL;
        ok = ok && ko;
        for (int i = 0; ok && i < e->n_keys; i++) {
            cJSON *x = cJSON_CreateNumber(e->key_order[i]);
            ok = x && cJSON_AddItemToArray(ko, x);
        }
        cJSON *fd = ok ? cJSON_AddObjectToObject(en, "fields") : NULL;
        ok = ok && fd;
        for (int f = 0; ok && f < WD__WF__COUNT; f++)
            if (e->field[f].present)
                ok = cJSON_AddStringToObject(fd, wd__wdelta_field_name(f), wd__wdelta_dtype_name(e->field[f].dtype)) != NULL;
    }
    char *txt = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!txt)
        return WD_NOMEM();
    *out = txt;
    return 0;
}

int wd__lossy_entry(const wd_stored_tensor *t, int version, double option, wd__wdelta_tensor *out)
{
    const wd_lossy *L = t->lossy;
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->name_len = strlen(t->name);
    out->strategy = L->strategy;
    out->ndim = t->ndim;
    memcpy(out->shape, t->shape, sizeof t->shape);
    snprintf(out->dtype, sizeof out->dtype, "float32");
    out->sparsity = option;
    out->outlier_fraction = option;
    cJSON *j = cJSON_Parse(L->params_json);
    const cJSON *en = j ? cJSON_GetObjectItemCaseSensitive(j, "entry") : NULL;
    int rc = 0;
    if (cJSON_IsObject(en)) {
        const cJSON *v;
        if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(en, "dtype")))
            snprintf(out->dtype, sizeof out->dtype, "%s", v->valuestring);
        if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(en, "base_dtype")))
            snprintf(out->base_dtype, sizeof out->base_dtype, "%s", v->valuestring);
        double d;
        if (!num(en, "sparsity", 0, 1, &d))
            out->sparsity = d;
        if (!num(en, "outlier_fraction", 0, 1e300, &d))
            out->outlier_fraction = d;
        if (!num(en, "n_outliers", 0, 9007199254740992.0, &d))
            out->n_outliers = (uint64_t)d;
        /* A recorded key order is only right for the version it came from. */
        double ver;
        if (!num(en, "version", 1, 2, &ver) && (int)ver == version && !num(en, "int4_layout", 0, 2, &d)) {
            const cJSON *ko = cJSON_GetObjectItemCaseSensitive(en, "key_order");
            double has;
            if (cJSON_IsArray(ko) && !num(en, "has", 0, 4294967295.0, &has) && cJSON_GetArraySize(ko) <= WD__WK__COUNT) {
                out->has = (uint32_t)has;
                const cJSON *k;
                cJSON_ArrayForEach(k, ko) out->key_order[out->n_keys++] = (uint8_t)k->valuedouble;
                out->int4_layout = (int)d;
            }
        }
        const cJSON *fd = cJSON_GetObjectItemCaseSensitive(en, "fields");
        for (int f = 0; f < WD__WF__COUNT; f++) {
            const cJSON *s = cJSON_IsObject(fd) ? cJSON_GetObjectItemCaseSensitive(fd, wd__wdelta_field_name(f)) : NULL;
            wd_dtype dt;
            if (cJSON_IsString(s) && !dtype_by_numpy(s->valuestring, &dt))
                out->field[f].dtype = dt;
        }
    }
    cJSON_Delete(j);
    if (!out->base_dtype[0] && version == 2)
        snprintf(out->base_dtype, sizeof out->base_dtype, "%s", wd__dtype_numpy_name(t->dtype));
    if (L->strategy == WD__WS_INT4 && !out->n_outliers)
        out->n_outliers = L->arrays[WD__WF_OUTLIER_IDX].count;
    if (!out->n_keys)
        return wd__wdelta_tensor_fill(out, version);
    /* A recorded entry keeps its key order; its sizes follow the shape. */
    out->n = t->nelem;
    out->n_elements = t->nelem;
    out->n_cols = wd__wdelta_cols(out);
    return rc;
}

int wd__lossy_insert_arrays(wd_repo *repo, const uint8_t object[WD_HASH_SIZE], const char *name, const wd_lossy *L)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st,
                            "INSERT INTO tensor_array(object, tensor, field, dtype, count, transform, chunks, stored_bytes) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    if (rc)
        return rc;
    const int *fields;
    size_t nf = wd__wdelta_fields_of(L->strategy, &fields);
    for (size_t i = 0; !rc && i < nf; i++) {
        /* int4's scale and zero point live in params. */
        if (fields[i] == WD__WF_SCALE || fields[i] == WD__WF_ZERO_POINT)
            continue;
        const wd_astream *a = &L->arrays[fields[i]];
        wd__bind_hash(st, 1, object);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, wd__wdelta_field_name(fields[i]), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, wd__wdelta_dtype_name(a->dtype), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)a->count);
        sqlite3_bind_text(st, 6, wd__astream_transform_name(a->transform), -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 7, a->chunks ? (const void *)a->chunks : "", (int)(a->n_chunks * WD_HASH_SIZE),
                          SQLITE_STATIC);
        sqlite3_bind_int64(st, 8, (sqlite3_int64)a->stored_bytes);
        int s = sqlite3_step(st);
        sqlite3_reset(st);
        if (s != SQLITE_DONE)
            rc = wd__db_error(repo->db, s, "storing tensor arrays");
    }
    sqlite3_finalize(st);
    return rc;
}
