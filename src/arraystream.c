/*
 * arraystream.c - lossy tensors' arrays as chunk streams with random access
 * by byte range (see arraystream.h).
 */
#include "arraystream.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "codec_lossless.h"
#include "error.h"
#include "hash.h"
#include "wdelta.h"

static const char *const transform_names[] = {"raw", "planes", "gaps-planes"};

const char *wd__astream_transform_name(int transform)
{
    return transform >= 0 && transform <= WD_AT_GAPS ? transform_names[transform] : "?";
}

int wd__astream_transform_parse(const char *name, int *out)
{
    for (int i = 0; i <= WD_AT_GAPS; i++)
        if (!strcmp(name, transform_names[i])) {
            *out = i;
            return 0;
        }
    return wd__error(WD_ECORRUPT, "unknown array transform '%s'", name);
}

/* Gaps between consecutive sorted indices: small numbers whose high planes
 * are all zero. Width-generic through memcpy; indices are little-endian. */
static void gaps_encode(uint8_t *dst, const uint8_t *src, size_t m, size_t esz)
{
    uint64_t prev = 0;
    for (size_t i = 0; i < m; i++) {
        uint64_t v = 0;
        memcpy(&v, src + i * esz, esz);
        uint64_t g = v - prev;
        prev = v;
        memcpy(dst + i * esz, &g, esz);
    }
}

static void gaps_decode(uint8_t *dst, const uint8_t *src, size_t m, size_t esz)
{
    uint64_t acc = 0;
    for (size_t i = 0; i < m; i++) {
        uint64_t g = 0;
        memcpy(&g, src + i * esz, esz);
        acc += g;
        memcpy(dst + i * esz, &acc, esz);
    }
}

/* The dtype whose plane split applies: integer planes (no float rotation)
 * for gaps. */
/* Integer planes: split without the float rotation. */
static wd_dtype plane_type(const wd_astream *a)
{
    return a->transform == WD_AT_GAPS ? (wd__dtype_size(a->dtype) == 8 ? WD_DT_I64 : WD_DT_I32) : a->dtype;
}

/* src is scratch: the gap transform runs in place on it. */
static void chunk_encode(const wd_astream *a, uint8_t *dst, uint8_t *src, size_t len)
{
    size_t esz = wd__dtype_size(a->dtype), m = len / esz;
    switch (a->transform) {
    case WD_AT_PLANES:
        wd__planes_encode(dst, src, m, a->dtype);
        break;
    case WD_AT_GAPS:
        gaps_encode(src, src, m, esz);
        wd__planes_encode(dst, src, m, plane_type(a));
        break;
    default:
        memcpy(dst, src, len);
    }
}

static void chunk_decode(const wd_astream *a, uint8_t *dst, const uint8_t *src, size_t len)
{
    size_t esz = wd__dtype_size(a->dtype), m = len / esz;
    switch (a->transform) {
    case WD_AT_PLANES:
        wd__planes_decode(dst, src, m, a->dtype);
        break;
    case WD_AT_GAPS:
        wd__planes_decode(dst, src, m, plane_type(a));
        gaps_decode(dst, dst, m, esz);
        break;
    default:
        memcpy(dst, src, len);
    }
}

void wd__astream_writer_init(wd_astream_writer *w, wd_chunkstore *cs, wd_chunk_put_fn put, void *put_arg,
                             void *cctx, int level, wd_astream *out, int field, wd_dtype dtype, int transform)
{
    memset(w, 0, sizeof *w);
    w->cs = cs;
    w->put = put;
    w->put_arg = put_arg;
    w->cctx = cctx;
    w->level = level;
    w->out = out;
    memset(out, 0, sizeof *out);
    out->field = field;
    out->dtype = dtype;
    out->transform = transform;
}

static int flush_chunk(wd_astream_writer *w)
{
    size_t len = w->pending.len;
    if (!len)
        return 0;
    size_t esz = wd__dtype_size(w->out->dtype);
    if (len % esz)
        return wd__error(WD_EUSAGE, "array ends inside an element");
    int rc = wd__buf_reserve(&w->enc, len + 1);
    if (rc)
        return rc;
    chunk_encode(w->out, w->enc.data, w->pending.data, len);
    uint8_t id[WD_HASH_SIZE];
    wd__sha256(w->enc.data, len, id);
    uint64_t have = 0;
    if ((rc = w->cs->ops->stored_size(w->cs, id, &have)))
        return rc;
    if (!have) {
        int codec;
        if ((rc = wd__chunk_compress(w->cctx, w->level, w->enc.data, len, esz > 1 ? len / esz : 0, &w->z, &codec)))
            return rc;
        if ((rc = w->put(w->put_arg, id, len, codec, w->z.data, w->z.len)))
            return rc;
        have = w->z.len;
    }
    w->out->stored_bytes += have;
    w->pending.len = 0;
    return wd__buf_append(&w->ids, id, WD_HASH_SIZE);
}

int wd__astream_append(wd_astream_writer *w, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        size_t room = WD_ASTREAM_CHUNK - w->pending.len, take = len < room ? len : room;
        int rc = wd__buf_append(&w->pending, p, take);
        if (rc)
            return rc;
        p += take;
        len -= take;
        w->bytes += take;
        if (w->pending.len == WD_ASTREAM_CHUNK && (rc = flush_chunk(w)))
            return rc;
    }
    return 0;
}

int wd__astream_chunk_prepare(wd_astream_chunk *c, wd_dtype dtype, int transform, void *cctx, int level,
                              uint8_t *data, size_t len)
{
    size_t esz = wd__dtype_size(dtype);
    if (len % esz || len > WD_ASTREAM_CHUNK)
        return wd__error(WD_EUSAGE, "array chunk of %zu bytes does not fit", len);
    int rc = wd__buf_reserve(&c->enc, len + 1);
    if (rc)
        return rc;
    /* Only dtype and transform steer the chunk transform. */
    wd_astream a = {0};
    a.dtype = dtype;
    a.transform = transform;
    chunk_encode(&a, c->enc.data, data, len);
    c->enc.len = len;
    c->len = len;
    wd__sha256(c->enc.data, len, c->id);
    return wd__chunk_compress(cctx, level, c->enc.data, len, esz > 1 ? len / esz : 0, &c->z, &c->codec);
}

int wd__astream_add_chunk(wd_astream_writer *w, const wd_astream_chunk *c)
{
    if (w->pending.len)
        return wd__error(WD_EUSAGE, "array chunk added behind pending bytes");
    uint64_t have = 0;
    int rc = w->cs->ops->stored_size(w->cs, c->id, &have);
    if (rc)
        return rc;
    if (!have) {
        if ((rc = w->put(w->put_arg, c->id, c->len, c->codec, c->z.data, c->z.len)))
            return rc;
        have = c->z.len;
    }
    w->out->stored_bytes += have;
    w->bytes += c->len;
    return wd__buf_append(&w->ids, c->id, WD_HASH_SIZE);
}

void wd__astream_chunk_free(wd_astream_chunk *c)
{
    wd__buf_free(&c->enc);
    wd__buf_free(&c->z);
}

int wd__astream_finish(wd_astream_writer *w)
{
    int rc = flush_chunk(w);
    if (rc)
        return rc;
    size_t esz = wd__dtype_size(w->out->dtype);
    w->out->count = w->bytes / esz;
    w->out->n_chunks = w->ids.len / WD_HASH_SIZE;
    w->out->chunks = w->ids.data ? w->ids.data : malloc(1);
    if (!w->out->chunks)
        return WD_NOMEM();
    w->ids.data = NULL;
    w->ids.len = w->ids.cap = 0;
    return 0;
}

void wd__astream_writer_free(wd_astream_writer *w)
{
    wd__buf_free(&w->pending);
    wd__buf_free(&w->enc);
    wd__buf_free(&w->z);
    wd__buf_free(&w->ids);
}

void wd__astream_clear(wd_astream *a)
{
    free(a->chunks);
    a->chunks = NULL;
    a->n_chunks = 0;
}

/* Names the array, its tensor and object in front of a failure about one
 * of its chunks. */
static int array_where(int rc, const wd_astream *a)
{
    if (rc != WD_ECORRUPT)
        return rc;
    const char *field = wd__wdelta_field_name(a->field);
    if (!a->tensor)
        return wd__chunk_error_where(rc, "array '%s'", field);
    if (!a->object)
        return wd__chunk_error_where(rc, "tensor '%s' array '%s'", a->tensor, field);
    char hex[WD_HEX_SIZE];
    wd__hex(hex, a->object);
    return wd__chunk_error_where(rc, "object %.*s tensor '%s' array '%s'", WD_SHORT_HEX, hex, a->tensor, field);
}

int wd__arange_fetch(wd_chunkstore *cs, const wd_astream *a, uint64_t begin, uint64_t end, wd_arange *r)
{
    uint64_t total = a->count * wd__dtype_size(a->dtype);
    if (begin > end || end > total)
        return wd__error(WD_ECORRUPT, "array range [%llu, %llu) outside its %llu bytes",
                         (unsigned long long)begin, (unsigned long long)end, (unsigned long long)total);
    if ((total + WD_ASTREAM_CHUNK - 1) / WD_ASTREAM_CHUNK != a->n_chunks)
        return wd__error(WD_ECORRUPT, "array has %zu chunks for %llu bytes", a->n_chunks, (unsigned long long)total);
    r->a = a;
    r->cs = cs;
    r->begin = begin;
    r->end = end;
    r->n = 0;
    if (begin == end)
        return 0;
    r->first_chunk = (size_t)(begin / WD_ASTREAM_CHUNK);
    size_t last = (size_t)((end - 1) / WD_ASTREAM_CHUNK);
    size_t need = last - r->first_chunk + 1;
    if (need > r->cap) {
        wd_buf *nz = realloc(r->z, need * sizeof *nz);
        if (!nz)
            return WD_NOMEM();
        memset(nz + r->cap, 0, (need - r->cap) * sizeof *nz);
        r->z = nz;
        uint64_t *nr = realloc(r->raw_size, need * sizeof *nr);
        if (!nr)
            return WD_NOMEM();
        r->raw_size = nr;
        int *nc = realloc(r->codec, need * sizeof *nc);
        if (!nc)
            return WD_NOMEM();
        r->codec = nc;
        r->cap = need;
    }
    for (size_t i = 0; i < need; i++) {
        size_t c = r->first_chunk + i;
        const uint8_t *id = a->chunks + c * WD_HASH_SIZE;
        int rc = wd__chunk_fetch(cs, id, &r->z[i], &r->raw_size[i], &r->codec[i]);
        if (rc)
            return array_where(rc, a);
        uint64_t want = total - (uint64_t)c * WD_ASTREAM_CHUNK;
        if (want > WD_ASTREAM_CHUNK)
            want = WD_ASTREAM_CHUNK;
        if (r->raw_size[i] != want)
            return array_where(wd__chunk_damaged(id, "%llu raw bytes where the array has %llu",
                                                 (unsigned long long)r->raw_size[i], (unsigned long long)want),
                               a);
        r->n++;
    }
    return 0;
}

int wd__arange_decode(const wd_arange *r, void *dctx, uint8_t *out, uint8_t *tmp, uint8_t *tmp2, int how)
{
    for (size_t i = 0; i < r->n; i++) {
        uint64_t cstart = (uint64_t)(r->first_chunk + i) * WD_ASTREAM_CHUNK;
        size_t len = (size_t)r->raw_size[i];
        const uint8_t *id = r->a->chunks + (r->first_chunk + i) * WD_HASH_SIZE;
        int rc = wd__chunk_decode(r->cs, dctx, id, r->codec[i], r->z[i].data, r->z[i].len, len, tmp, how);
        if (rc)
            return array_where(rc, r->a);
        chunk_decode(r->a, tmp2, tmp, len);
        /* Copy the overlap of [cstart, cstart + len) with [begin, end). */
        uint64_t lo = r->begin > cstart ? r->begin : cstart;
        uint64_t hi = r->end < cstart + len ? r->end : cstart + len;
        memcpy(out + (lo - r->begin), tmp2 + (lo - cstart), (size_t)(hi - lo));
    }
    return 0;
}

void wd__arange_free(wd_arange *r)
{
    for (size_t i = 0; i < r->cap; i++)
        wd__buf_free(&r->z[i]);
    free(r->z);
    free(r->raw_size);
    free(r->codec);
    memset(r, 0, sizeof *r);
}

int wd__astream_read(wd_chunkstore *cs, const wd_astream *a, uint64_t begin, uint64_t end, uint8_t *out)
{
    /* Chunk by chunk, so the scratch stays at two chunks whatever the range;
     * an array smaller than a chunk needs only its own size, and a zstd
     * context only if a chunk is compressed. Called once per array of
     * every tensor, so a model of many tiny tensors pays these per call. */
    uint64_t total = a->count * wd__dtype_size(a->dtype);
    size_t scratch = total < WD_ASTREAM_CHUNK ? (size_t)total + 1 : WD_ASTREAM_CHUNK;
    uint8_t *tmp = malloc(scratch), *tmp2 = malloc(scratch);
    void *dctx = NULL;
    wd_arange r;
    memset(&r, 0, sizeof r);
    int rc = tmp && tmp2 ? 0 : WD_NOMEM();
    for (uint64_t off = begin; !rc && off < end;) {
        uint64_t next = (off / WD_ASTREAM_CHUNK + 1) * WD_ASTREAM_CHUNK;
        if (next > end)
            next = end;
        rc = wd__arange_fetch(cs, a, off, next, &r);
        for (size_t i = 0; !rc && !dctx && i < r.n; i++)
            if (r.codec[i] != WD_CODEC_RAW && !(dctx = ZSTD_createDCtx()))
                rc = WD_NOMEM();
        if (!rc)
            rc = wd__arange_decode(&r, dctx, out + (off - begin), tmp, tmp2, WD_DECODE_CHECK);
        off = next;
    }
    wd__arange_free(&r);
    ZSTD_freeDCtx(dctx);
    free(tmp);
    free(tmp2);
    return rc;
}
