/*
 * tensorref.c - a tensor wherever it lives (a validated safetensors shard of
 * a folder, or a caller's memory), read raw or as float32 (see tensorref.h).
 */
#include "tensorref.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "piece.h"

void wd__tref_folder(wd_tref *r, const wd_folder *f, size_t i)
{
    const wd_folder_tensor *ft = &f->tensors[i];
    memset(r, 0, sizeof *r);
    r->name = ft->name;
    r->dtype = ft->t->dtype;
    r->ndim = ft->t->ndim;
    r->shape = ft->t->shape;
    r->n = ft->t->nelem;
    r->nbytes = ft->t->nbytes;
    r->st = f->files[ft->file].st;
    r->t = ft->t;
    r->shard = ft->file;
}

int wd__tref_mem(wd_tref *r, const wd_named_tensor *x, const char *what)
{
    memset(r, 0, sizeof *r);
    if (!x->name || !x->name[0])
        return wd__error(WD_EUSAGE, "%s tensor without a name", what);
    r->name = x->name;
    if (wd__dtype_parse(x->dtype, strnlen(x->dtype, sizeof x->dtype), &r->dtype))
        return wd__error(WD_EUSAGE, "%s tensor '%s': unknown dtype '%.12s'", what, x->name,
                         x->dtype);
    if (x->ndim < 0 || x->ndim > WD_MAX_DIMS)
        return wd__error(WD_EUSAGE, "%s tensor '%s': %d dimensions", what, x->name, x->ndim);
    uint64_t n = 1;
    for (int i = 0; i < x->ndim; i++) {
        if (x->shape[i] && n > UINT64_MAX / x->shape[i])
            return wd__error(WD_EUSAGE, "%s tensor '%s': shape overflows", what, x->name);
        n *= x->shape[i];
    }
    size_t es = wd__dtype_size(r->dtype);
    if (n > UINT64_MAX / es || n * es != x->nbytes)
        return wd__error(WD_EUSAGE, "%s tensor '%s': %llu bytes do not hold its shape", what,
                         x->name, (unsigned long long)x->nbytes);
    if (x->nbytes && !x->data)
        return wd__error(WD_EUSAGE, "%s tensor '%s' has no data", what, x->name);
    r->ndim = x->ndim;
    r->shape = x->shape;
    r->n = n;
    r->nbytes = x->nbytes;
    r->mem = x->data;
    return 0;
}

int wd__tref_read(const wd_tref *r, uint64_t off, void *buf, size_t len)
{
    if (r->mem) {
        memcpy(buf, r->mem + off, len);
        return 0;
    }
    return wd__st_read(r->st, r->t, off, buf, len);
}

int wd__tref_f32(const wd_tref *r, uint64_t begin, size_t count, float *out, uint8_t *raw)
{
    size_t es = wd__dtype_size(r->dtype);
    if (r->mem) {
        wd__to_f32(out, r->mem + begin * es, count, r->dtype);
        return 0;
    }
    int rc = wd__st_read(r->st, r->t, begin * es, raw, count * es);
    if (!rc)
        wd__to_f32(out, raw, count, r->dtype);
    return rc;
}

static int cmp_tref(const void *a, const void *b)
{
    return strcmp(((const wd_tref *)a)->name, ((const wd_tref *)b)->name);
}

int wd__tref_mem_set(wd_tref **out, const wd_named_tensor *x, size_t n, const char *what)
{
    wd_tref *r = calloc(n + 1, sizeof *r);
    int rc = r ? 0 : WD_NOMEM();
    for (size_t i = 0; !rc && i < n; i++)
        rc = wd__tref_mem(&r[i], &x[i], what);
    if (!rc)
        qsort(r, n, sizeof *r, cmp_tref);
    for (size_t i = 1; !rc && i < n; i++)
        if (!strcmp(r[i - 1].name, r[i].name))
            rc = wd__error(WD_EUSAGE, "%s tensors: '%s' given twice", what, r[i].name);
    if (rc) {
        free(r);
        r = NULL;
    }
    *out = r;
    return rc;
}

void wd__shape_fmt(char *buf, size_t size, int ndim, const uint64_t *shape)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%llu", i ? "," : "",
                              (unsigned long long)shape[i]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

int wd__shape_same(int na, const uint64_t *a, int nb, const uint64_t *b)
{
    return na == nb && (na == 0 || !memcmp(a, b, (size_t)na * sizeof *a));
}
