/*
 * wdelta_inspect.c - deltatensors' inspect() of a .wdelta file, without a
 * repository: the file's summary plus each tensor's options and arrays.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "spool.h"
#include "wdelta.h"
#include "wdrepo.h"

void wd_inspect_file_free(wd_wdelta_info *info)
{
    if (!info)
        return;
    for (size_t i = 0; i < info->n_tensors; i++) {
        free(info->tensors[i].name);
        free(info->tensors[i].options_json);
    }
    free(info->tensors);
    free(info->path);
    free(info);
}

/* The tensor's scalar options as a compact JSON object, in header order. */
static int options_json(const wd__wdelta_tensor *t, char **out)
{
    wd_buf b = {0};
    int rc = wd__buf_append(&b, "{", 1), first = 1;
    for (int i = 0; !rc && i < t->n_keys; i++) {
        int k = t->key_order[i];
        char num[40];
        const char *key;
        switch (k) {
        case WD__WK_SPARSITY: key = "sparsity"; wd__py_json_float(t->sparsity, num); break;
        case WD__WK_OUTLIER_FRACTION:
            key = "outlier_fraction";
            wd__py_json_float(t->outlier_fraction, num);
            break;
        case WD__WK_N_ELEMENTS:
            key = "n_elements";
            snprintf(num, sizeof num, "%llu", (unsigned long long)t->n_elements);
            break;
        case WD__WK_N_COLS:
            key = "n_cols";
            snprintf(num, sizeof num, "%llu", (unsigned long long)t->n_cols);
            break;
        case WD__WK_N_OUTLIERS:
            key = "n_outliers";
            snprintf(num, sizeof num, "%llu", (unsigned long long)t->n_outliers);
            break;
        case WD__WK_INT4_LAYOUT:
            key = "int4_layout";
            snprintf(num, sizeof num, "%d", t->int4_layout);
            break;
        default: continue;
        }
        rc = wd__buf_printf(&b, "%s\"%s\":%s", first ? "" : ",", key, num);
        first = 0;
    }
    if (!rc)
        rc = wd__buf_append(&b, "}", 2); /* with the NUL */
    if (rc) {
        wd__buf_free(&b);
        return rc;
    }
    *out = (char *)b.data;
    return 0;
}

int wd_inspect_file(wd_wdelta_info **out, const char *path)
{
    *out = NULL;
    wd__wdelta *d;
    wd__temp spool = {.fd = -1, .slot = -1};
    const char *shown = path;
    int rc = 0;
    if (wd__is_stdin(path)) { /* read through a copy: the reader seeks */
        rc = wd__spool_stdin(&spool, NULL);
        path = spool.path;
    }
    if (!rc)
        rc = wd__spool_error(&spool, wd__wdelta_open(&d, path));
    wd__temp_discard(&spool); /* the open file stays readable */
    if (rc)
        return rc;
    path = shown;
    wd_wdelta_info *info = calloc(1, sizeof *info);
    size_t n = wd__wdelta_count(d);
    if (!info || !(info->path = strdup(path)) ||
        !(info->tensors = calloc(n + 1, sizeof *info->tensors))) {
        rc = WD_NOMEM();
        goto done;
    }
    info->size = wd__wdelta_file_size(d);
    char mb[64]; /* round(size / 1e6, 2), as deltatensors reports it */
    snprintf(mb, sizeof mb, "%.2f", (double)info->size / 1e6);
    info->size_mb = strtod(mb, NULL);
    info->version = wd__wdelta_version(d);
    snprintf(info->parent_hash, sizeof info->parent_hash, "%s", wd__wdelta_parent_hash(d));
    snprintf(info->strategy, sizeof info->strategy, "%s",
             wd__wdelta_strategy_name(wd__wdelta_strategy(d)));
    for (size_t i = 0; !rc && i < n; i++, info->n_tensors++) {
        const wd__wdelta_tensor *t = wd__wdelta_tensor_at(d, i);
        wd_wdelta_tensor_info *ti = &info->tensors[i];
        if (!(ti->name = malloc(t->name_len + 1))) {
            rc = WD_NOMEM();
            break;
        }
        memcpy(ti->name, t->name, t->name_len);
        ti->name[t->name_len] = '\0';
        ti->ndim = t->ndim;
        memcpy(ti->shape, t->shape, sizeof ti->shape);
        int has_base = (t->has & WD__WK_BIT(WD__WK_BASE_DTYPE)) != 0;
        snprintf(ti->dtype, sizeof ti->dtype, "%s", has_base ? t->base_dtype : t->dtype);
        snprintf(ti->delta_dtype, sizeof ti->delta_dtype, "%s", t->dtype);
        snprintf(ti->base_dtype, sizeof ti->base_dtype, "%s", has_base ? t->base_dtype : "");
        snprintf(ti->strategy, sizeof ti->strategy, "%s", wd__wdelta_strategy_name(t->strategy));
        rc = options_json(t, &ti->options_json);
        const int *fields;
        size_t nf = wd__wdelta_fields_of(t->strategy, &fields);
        for (size_t k = 0; k < nf && k < WD_WDELTA_MAX_ARRAYS; k++) {
            const wd__wdelta_field *f = wd__wdelta_field_of(t, fields[k]);
            wd_wdelta_array *a = &ti->arrays[ti->n_arrays++];
            snprintf(a->field, sizeof a->field, "%s", wd__wdelta_field_name(fields[k]));
            snprintf(a->dtype, sizeof a->dtype, "%s", wd__wdelta_dtype_name(f->dtype));
            a->count = f->count;
            a->nbytes = f->nbytes;
            ti->nbytes += f->nbytes;
        }
    }
done:
    wd__wdelta_close(d);
    if (rc) {
        wd_inspect_file_free(info);
        return rc;
    }
    *out = info;
    return 0;
}
