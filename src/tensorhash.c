/*
 * tensorhash.c - the named-tensor SHA-256 over tensors of folders or
 * memory, in one call or in steps (see tensorhash.h).
 */
#include "tensorhash.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

enum {
    HASH_BUF = 1 << 20,        /* bytes read at a time */
    F32_ELEMS = HASH_BUF / 8,  /* elements converted at a time (raw of up to 8 bytes each) */
};

struct wd__thash {
    wd_sha256 *h;
    const wd_tref *const *refs;
    size_t n;
    int as_f32;
    void (*done)(void *ud, uint64_t bytes);
    void *ud;
    uint8_t *raw; /* HASH_BUF bytes */
    float *f;     /* F32_ELEMS floats, as_f32 only */
    size_t ci;    /* the cursor: tensor ci, element ce, its name hashed or not */
    uint64_t ce;
    int named;
};

int wd__thash_new(wd__thash **out, const wd_tref *const *refs, size_t n, int as_f32,
                  void (*done)(void *ud, uint64_t bytes), void *ud)
{
    *out = NULL;
    wd__thash *th = calloc(1, sizeof *th);
    if (!th)
        return WD_NOMEM();
    th->refs = refs;
    th->n = n;
    th->as_f32 = as_f32;
    th->done = done;
    th->ud = ud;
    th->raw = malloc(HASH_BUF);
    th->f = as_f32 ? malloc(F32_ELEMS * sizeof *th->f) : NULL;
    int rc = th->raw && (th->f || !as_f32) ? wd__sha256_new(&th->h) : WD_NOMEM();
    if (rc) {
        wd__thash_free(th);
        return rc;
    }
    *out = th;
    return 0;
}

void wd__thash_free(wd__thash *th)
{
    if (!th)
        return;
    wd__sha256_free(th->h);
    free(th->raw);
    free(th->f);
    free(th);
}

/* Elements [ce, end) of r: its bytes, or its float32 values (float32
 * tensors are their own). */
static int hash_span(wd__thash *th, const wd_tref *r, uint64_t end)
{
    size_t es = wd__dtype_size(r->dtype);
    int convert = th->as_f32 && r->dtype != WD_DT_F32;
    uint64_t step = convert ? F32_ELEMS : HASH_BUF / es;
    while (th->ce < end) {
        size_t cnt = end - th->ce < step ? (size_t)(end - th->ce) : (size_t)step;
        int rc;
        if (convert) {
            if (!(rc = wd__tref_f32(r, th->ce, cnt, th->f, th->raw)))
                wd__sha256_update(th->h, th->f, cnt * sizeof *th->f);
        } else if (!(rc = wd__tref_read(r, th->ce * es, th->raw, cnt * es))) {
            wd__sha256_update(th->h, th->raw, cnt * es);
        }
        if (th->done)
            th->done(th->ud, cnt * es);
        if (rc)
            return rc;
        th->ce += cnt;
    }
    return 0;
}

int wd__thash_to(wd__thash *th, size_t ti, uint64_t elem)
{
    while (th->ci < th->n && (th->ci < ti || (th->ci == ti && th->ce < elem))) {
        const wd_tref *r = th->refs[th->ci];
        if (!th->named) {
            wd__thash_name(th->h, r->name);
            th->named = 1;
        }
        int rc = hash_span(th, r, th->ci < ti ? r->n : elem);
        if (rc)
            return rc;
        if (th->ci < ti) {
            th->ci++;
            th->ce = 0;
            th->named = 0;
        }
    }
    return 0;
}

int wd__thash_feed(wd__thash *th, size_t ti, uint64_t elem, const void *raw, size_t count)
{
    int rc = wd__thash_to(th, ti, elem);
    if (rc)
        return rc;
    if (th->as_f32 || ti >= th->n || th->ci != ti || th->ce != elem || count > th->refs[ti]->n - elem)
        return wd__error(WD_EUSAGE, "internal error: tensor hash fed out of order");
    const wd_tref *r = th->refs[ti];
    if (!th->named) {
        wd__thash_name(th->h, r->name);
        th->named = 1;
    }
    size_t len = count * wd__dtype_size(r->dtype);
    wd__sha256_update(th->h, raw, len);
    if (th->done)
        th->done(th->ud, len);
    th->ce += count;
    return 0;
}

int wd__thash_final(wd__thash *th, uint8_t out[WD_HASH_SIZE])
{
    int rc = wd__thash_to(th, th->n, 0);
    if (!rc)
        wd__sha256_final(th->h, out);
    return rc;
}

int wd__tref_hash(const wd_tref *const *refs, size_t n, int as_f32, uint8_t out[WD_HASH_SIZE],
                  void (*done)(void *ud, uint64_t bytes), void *ud)
{
    wd__thash *th = NULL;
    int rc = wd__thash_new(&th, refs, n, as_f32, done, ud);
    if (!rc)
        rc = wd__thash_final(th, out);
    wd__thash_free(th);
    return rc;
}

int wd__tref_hash_hex(const wd_tref *const *refs, size_t n, int as_f32, char out[WD_HEX_SIZE],
                      void (*done)(void *ud, uint64_t bytes), void *ud)
{
    uint8_t dg[WD_HASH_SIZE];
    int rc = wd__tref_hash(refs, n, as_f32, dg, done, ud);
    if (!rc)
        wd__hex(out, dg);
    return rc;
}
