/*
 * piece.c - rebuilding one piece of a stored tensor along its lineage
 * (see piece.h), lossless and lossy steps alike.
 *
 * The lossy steps repeat the arithmetic of the codecs' apply functions
 * (codec_*.c) on slices of the arrays: one float32 operation per element,
 * in place on the parent's float32 reconstruction, so results equal
 * deltatensors' bit for bit.
 */
#include "piece.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <zstd.h>

#include "codec.h"
#include "codec_lossless.h"
#include "codec_lowbit.h"
#include "error.h"
#include "half.h"
#include "hash.h"
#include "wdelta.h"

enum { OP_PLANES, OP_DELTA, OP_WIDEN, OP_NARROW, OP_LOSSY };

struct wd_piece_step {
    int op;
    /* OP_PLANES, OP_DELTA: chunk k of tensor t */
    wd_buf z;
    uint64_t raw_size;
    int codec;
    uint64_t k;
    /* OP_PLANES, OP_DELTA, OP_LOSSY */
    const wd_stored_tensor *t;
    wd_arange r[4]; /* [3]: lowbit's right factor (issue 11) */
    uint64_t e0, e1; /* index entries of the piece (sparse, int4 outliers) */
    uint64_t base0;  /* quantized: first row; int4 layout 1: first code number */
};

struct wd_piece_scratch {
    ZSTD_DCtx *dctx;
    uint8_t *tmp, *tmp2, *nat; /* WD_CHUNK_RAW_MAX bytes each */
    float *f;                  /* WD_CHUNK_RAW_MAX floats: a piece of 1-byte elements as float32 */
    int how;                   /* WD_DECODE_CHECK or WD_DECODE_TRUSTED */
    wd_buf arr[4];             /* decoded array slices */
};

int wd__piece_scratch_new(wd_piece_scratch **out)
{
    wd_piece_scratch *s = calloc(1, sizeof *s);
    if (!s)
        return WD_NOMEM();
    s->dctx = ZSTD_createDCtx();
    s->tmp = malloc(WD_CHUNK_RAW_MAX);
    s->tmp2 = malloc(WD_CHUNK_RAW_MAX);
    s->nat = malloc(WD_CHUNK_RAW_MAX);
    s->f = malloc((size_t)WD_CHUNK_TARGET * sizeof(float));
    if (!s->dctx || !s->tmp || !s->tmp2 || !s->nat || !s->f) {
        wd__piece_scratch_free(s);
        return WD_NOMEM();
    }
    *out = s;
    return 0;
}

void wd__piece_scratch_set_check(wd_piece_scratch *s, int how)
{
    s->how = how;
}

void wd__piece_scratch_free(wd_piece_scratch *s)
{
    if (!s)
        return;
    ZSTD_freeDCtx(s->dctx);
    free(s->tmp);
    free(s->tmp2);
    free(s->nat);
    free(s->f);
    for (int i = 0; i < 4; i++)
        wd__buf_free(&s->arr[i]);
    free(s);
}

int wd__f32_convertible(wd_dtype dt)
{
    return dt != WD_DT_F8_E4M3 && dt != WD_DT_F8_E5M2;
}

/* One loop per dtype, the switch outside it: these loops run over every
 * element of every lossy piece, and a per-element switch kept the compiler
 * from vectorising the common bf16/f16 cases. Unaligned sources are read
 * with memcpy, which compiles to plain loads. */
#define WIDEN_LOOP(T, expr)                                                                                       \
    for (size_t i = 0; i < n; i++) {                                                                          \
        T v;                                                                                                  \
        memcpy(&v, src + sizeof(T) * i, sizeof(T));                                                           \
        dst[i] = (expr);                                                                                      \
    }

/* bfloat16 <-> float32 run on every element a lossy command touches; at
 * -O2 gcc leaves these loops scalar, so on x86-64 they are spelled in SSE2
 * (part of the x86-64 baseline): widening is an interleave with zeros,
 * narrowing the same round-to-nearest-even and quiet-NaN rule as
 * bf16_round() below, packed without saturation. */
#if defined(__SSE2__)
static void bf16_widen(float *restrict dst, const uint8_t *restrict src, size_t n)
{
    const __m128i zero = _mm_setzero_si128();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_unpacklo_epi16(zero, v));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 4), _mm_unpackhi_epi16(zero, v));
    }
    for (; i < n; i++) {
        uint16_t v;
        memcpy(&v, src + 2 * i, 2);
        dst[i] = wd__bf16_to_f32(v);
    }
}
#endif

void wd__f32_sub(float *out, const float *a, const float *b, size_t n)
{
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(out + i, _mm_sub_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
#endif
    for (; i < n; i++)
        out[i] = a[i] - b[i];
}

void wd__bf16_sub(float *restrict out, const uint8_t *restrict a, const uint8_t *restrict b, size_t n)
{
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    for (; i + 8 <= n; i += 8) {
        __m128i va = _mm_loadu_si128((const __m128i *)(const void *)(a + 2 * i));
        __m128i vb = _mm_loadu_si128((const __m128i *)(const void *)(b + 2 * i));
        __m128 lo = _mm_sub_ps(_mm_castsi128_ps(_mm_unpacklo_epi16(zero, va)),
                               _mm_castsi128_ps(_mm_unpacklo_epi16(zero, vb)));
        __m128 hi = _mm_sub_ps(_mm_castsi128_ps(_mm_unpackhi_epi16(zero, va)),
                               _mm_castsi128_ps(_mm_unpackhi_epi16(zero, vb)));
        _mm_storeu_ps(out + i, lo);
        _mm_storeu_ps(out + i + 4, hi);
    }
#endif
    for (; i < n; i++) {
        uint16_t ha, hb;
        memcpy(&ha, a + 2 * i, 2);
        memcpy(&hb, b + 2 * i, 2);
        out[i] = wd__bf16_to_f32(ha) - wd__bf16_to_f32(hb);
    }
}

void wd__to_f32(float *restrict dst, const uint8_t *restrict src, size_t n, wd_dtype dt)
{
    switch (dt) {
    case WD_DT_F32: memcpy(dst, src, n * 4); break;
#if defined(__SSE2__)
    case WD_DT_BF16: bf16_widen(dst, src, n); break;
#else
    case WD_DT_BF16: WIDEN_LOOP(uint16_t, wd__bf16_to_f32(v)) break;
#endif
    case WD_DT_F16: WIDEN_LOOP(uint16_t, wd__f16_to_f32(v)) break;
    case WD_DT_F64: WIDEN_LOOP(double, (float)v) break;
    case WD_DT_I64: WIDEN_LOOP(int64_t, (float)v) break;
    case WD_DT_I32: WIDEN_LOOP(int32_t, (float)v) break;
    case WD_DT_I16: WIDEN_LOOP(int16_t, (float)v) break;
    case WD_DT_I8: WIDEN_LOOP(int8_t, (float)v) break;
    case WD_DT_U8:
    case WD_DT_BOOL: WIDEN_LOOP(uint8_t, (float)v) break;
    default:
        for (size_t i = 0; i < n; i++)
            dst[i] = NAN;
        break;
    }
}

/* Float to integer without undefined behaviour: NaN gives 0, values out of
 * range saturate (numpy gives unspecified values there). */
static int64_t to_int(double v, double lo, double hi)
{
    if (v != v)
        return 0;
    if (v <= lo)
        return (int64_t)lo;
    if (v >= hi)
        return (int64_t)hi;
    return (int64_t)v;
}

/* Round to nearest even, NaN kept quiet; the same as wd__f32_to_bf16,
 * here inline so the loop below vectorises. */
static inline uint16_t bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t r = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    uint16_t q = (uint16_t)((u >> 16) | 0x40u);
    return (u & 0x7fffffffu) > 0x7f800000u ? q : r;
}

#define NARROW_LOOP(T, expr)                                                                                      \
    for (size_t i = 0; i < n; i++) {                                                                          \
        float x = src[i];                                                                                     \
        T v = (expr);                                                                                         \
        memcpy(dst + sizeof(T) * i, &v, sizeof(T));                                                           \
    }

#if defined(__SSE2__)
static __m128i bf16_round4(__m128i u)
{
    const __m128i one = _mm_set1_epi32(1), bias = _mm_set1_epi32(0x7fff);
    const __m128i absmask = _mm_set1_epi32(0x7fffffff), inf = _mm_set1_epi32(0x7f800000);
    __m128i lsb = _mm_and_si128(_mm_srli_epi32(u, 16), one);
    __m128i r = _mm_srli_epi32(_mm_add_epi32(_mm_add_epi32(u, bias), lsb), 16);
    __m128i q = _mm_or_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(0x40));
    /* NaN: |u| > inf as signed 32-bit integers (|u| < 2^31) */
    __m128i nan = _mm_cmpgt_epi32(_mm_and_si128(u, absmask), inf);
    r = _mm_or_si128(_mm_and_si128(nan, q), _mm_andnot_si128(nan, r));
    /* 16-bit results, sign-extended so the signed pack keeps them exactly */
    return _mm_srai_epi32(_mm_slli_epi32(r, 16), 16);
}

static void bf16_narrow(uint8_t *restrict dst, const float *restrict src, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i a = bf16_round4(_mm_loadu_si128((const __m128i *)(const void *)(src + i)));
        __m128i b = bf16_round4(_mm_loadu_si128((const __m128i *)(const void *)(src + i + 4)));
        _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i), _mm_packs_epi32(a, b));
    }
    for (; i < n; i++) {
        uint16_t v = bf16_round(src[i]);
        memcpy(dst + 2 * i, &v, 2);
    }
}
#endif

void wd__from_f32(uint8_t *restrict dst, const float *restrict src, size_t n, wd_dtype dt)
{
    switch (dt) {
    case WD_DT_F32: memcpy(dst, src, n * 4); break;
#if defined(__SSE2__)
    case WD_DT_BF16: bf16_narrow(dst, src, n); break;
#else
    case WD_DT_BF16: NARROW_LOOP(uint16_t, bf16_round(x)) break;
#endif
    case WD_DT_F16: NARROW_LOOP(uint16_t, wd__f32_to_f16(x)) break;
    case WD_DT_F64: NARROW_LOOP(double, (double)x) break;
    case WD_DT_I64: NARROW_LOOP(int64_t, to_int(truncf(x), -9223372036854775808.0, 9223372036854774784.0)) break;
    case WD_DT_I32: NARROW_LOOP(int32_t, (int32_t)to_int(rintf(x), -2147483648.0, 2147483647.0)) break;
    case WD_DT_I16: NARROW_LOOP(int16_t, (int16_t)to_int(truncf(x), -32768.0, 32767.0)) break;
    case WD_DT_I8: NARROW_LOOP(int8_t, (int8_t)to_int(truncf(x), -128.0, 127.0)) break;
    case WD_DT_U8: NARROW_LOOP(uint8_t, (uint8_t)to_int(truncf(x), 0.0, 255.0)) break;
    case WD_DT_BOOL: NARROW_LOOP(uint8_t, (uint8_t)(x != 0.0f)) break;
    default: memset(dst, 0, n); break;
    }
}

static int add_step(wd_piece_plan *plan, int op, wd_piece_step **out)
{
    if (plan->n_steps == plan->cap_steps) {
        size_t ncap = plan->cap_steps ? plan->cap_steps * 2 : 4;
        wd_piece_step *ns = realloc(plan->steps, ncap * sizeof *ns);
        if (!ns)
            return WD_NOMEM();
        memset(ns + plan->cap_steps, 0, (ncap - plan->cap_steps) * sizeof *ns);
        plan->steps = ns;
        plan->cap_steps = ncap;
    }
    wd_piece_step *s = &plan->steps[plan->n_steps++];
    s->op = op;
    *out = s;
    return 0;
}

/* Names the object and tensor in front of a failure about one of its
 * chunks. */
static int tensor_where(int rc, const wd_stored_tensor *t)
{
    if (rc != WD_ECORRUPT)
        return rc;
    if (!t->object)
        return wd__chunk_error_where(rc, "tensor '%s'", t->name);
    char hex[WD_HEX_SIZE];
    wd__hex(hex, t->object);
    return wd__chunk_error_where(rc, "object %.*s tensor '%s'", WD_SHORT_HEX, hex, t->name);
}

static int fetch_chunk(wd_repo *repo, const wd_stored_tensor *t, uint64_t k, const wd_piece_plan *plan,
                       wd_piece_step *s)
{
    if (k >= t->n_chunks)
        return wd__error(WD_ECORRUPT, "tensor '%s': chunk %llu missing", t->name, (unsigned long long)k);
    const uint8_t *id = t->chunks + k * WD_HASH_SIZE;
    s->t = t;
    s->k = k;
    int rc = wd__chunk_fetch(repo->store, id, &s->z, &s->raw_size, &s->codec);
    if (!rc && s->raw_size != plan->nelem * wd__dtype_size(t->dtype))
        rc = wd__chunk_damaged(id, "%llu raw bytes where piece %llu has %llu", (unsigned long long)s->raw_size,
                               (unsigned long long)k, (unsigned long long)(plan->nelem * wd__dtype_size(t->dtype)));
    return tensor_where(rc, t);
}

static int fetch_lossy(wd_repo *repo, const wd_stored_tensor *t, uint64_t k, const wd_piece_plan *plan,
                       wd_piece_step *s)
{
    const wd_lossy *L = t->lossy;
    wd_chunkstore *cs = repo->store;
    uint64_t begin = plan->begin, end = begin + plan->nelem;
    s->t = t;
    if (L->strategy == WD__WS_LOWBIT) { /* (issue 11) codes and gains of the piece's segments */
        s->base0 = begin / L->n_cols;
        uint64_t s1 = (end - 1) / L->n_cols + 1, rk = (uint64_t)L->rank;
        int rc = wd__arange_fetch(cs, &L->arrays[WD__WF_PACKED], begin * 2, end * 2, &s->r[0]);
        if (!rc)
            rc = wd__arange_fetch(cs, &L->arrays[WD__WF_SCALES], s->base0 * 2, s1 * 2, &s->r[1]);
        if (!rc && rk)
            rc = wd__arange_fetch(cs, &L->arrays[WD__WF_VALUES], s->base0 * rk * 2, s1 * rk * 2, &s->r[2]);
        if (!rc && rk)
            rc = wd__arange_fetch(cs, &L->arrays[WD__WF_INDICES], 0, rk * L->n_cols * 2, &s->r[3]);
        return rc;
    }
    if (L->strategy == WD__WS_QUANTIZED) {
        uint64_t r0 = begin / L->n_cols, r1 = (end - 1) / L->n_cols + 1;
        s->base0 = r0;
        int rc = wd__arange_fetch(cs, &L->arrays[WD__WF_PACKED_SIGNS], begin / 8, (end + 7) / 8, &s->r[0]);
        return rc ? rc : wd__arange_fetch(cs, &L->arrays[WD__WF_SCALES], r0 * 2, r1 * 2, &s->r[1]);
    }
    if (k >= L->n_pieces)
        return wd__error(WD_ECORRUPT, "tensor '%s': piece %llu has no index entry", t->name, (unsigned long long)k);
    s->e0 = L->before[k];
    s->e1 = L->before[k + 1];
    int idx_field = L->strategy == WD__WS_SPARSE ? WD__WF_INDICES : WD__WF_OUTLIER_IDX;
    int val_field = L->strategy == WD__WS_SPARSE ? WD__WF_VALUES : WD__WF_OUTLIER_VALS;
    const wd_astream *ia = &L->arrays[idx_field], *va = &L->arrays[val_field];
    size_t isz = wd__dtype_size(ia->dtype), vsz = wd__dtype_size(va->dtype);
    int rc = wd__arange_fetch(cs, ia, s->e0 * isz, s->e1 * isz, &s->r[0]);
    if (!rc)
        rc = wd__arange_fetch(cs, va, s->e0 * vsz, s->e1 * vsz, &s->r[1]);
    if (rc || L->strategy == WD__WS_SPARSE)
        return rc;
    /* int4 codes: every position (layout 2), or the non-outliers (1). */
    uint64_t c0 = L->layout == 2 ? begin : begin - s->e0;
    uint64_t c1 = L->layout == 2 ? end : end - s->e1;
    if (c1 < c0)
        return wd__error(WD_ECORRUPT, "tensor '%s': outlier counts disagree with its size", t->name);
    s->base0 = c0;
    return wd__arange_fetch(cs, &L->arrays[WD__WF_PACKED], c0 / 2, (c1 + 1) / 2, &s->r[2]);
}

static int build(wd_repo *repo, const wd_stored_tensor *t, uint64_t k, int mode, wd_piece_plan *plan, int depth)
{
    wd_piece_step *s;
    int rc;
    if (depth > 1000)
        return wd__error(WD_ECORRUPT, "tensor '%s': lineage deeper than 1000", t->name);
    if (!strcmp(t->encoding, "same")) {
        if (!t->parent)
            return wd__error(WD_ECORRUPT, "tensor '%s' has no stored data", t->name);
        return build(repo, t->parent, k, mode, plan, depth + 1);
    }
    if (!strcmp(t->encoding, "planes")) {
        if ((rc = add_step(plan, OP_PLANES, &s)) || (rc = fetch_chunk(repo, t, k, plan, s)))
            return rc;
        return mode == WD_PIECE_F32 ? add_step(plan, OP_WIDEN, &s) : 0;
    }
    if (!strcmp(t->encoding, "delta-planes")) {
        if (!t->parent)
            return wd__error(WD_ECORRUPT, "tensor '%s' has no parent to decode against", t->name);
        if ((rc = build(repo, t->parent, k, WD_PIECE_NATIVE, plan, depth + 1)))
            return rc;
        if ((rc = add_step(plan, OP_DELTA, &s)) || (rc = fetch_chunk(repo, t, k, plan, s)))
            return rc;
        return mode == WD_PIECE_F32 ? add_step(plan, OP_WIDEN, &s) : 0;
    }
    if (t->lossy) {
        if (!t->parent)
            return wd__error(WD_ECORRUPT, "tensor '%s' has no parent to decode against", t->name);
        if ((rc = build(repo, t->parent, k, WD_PIECE_F32, plan, depth + 1)))
            return rc;
        if ((rc = add_step(plan, OP_LOSSY, &s)) || (rc = fetch_lossy(repo, t, k, plan, s)))
            return rc;
        return mode == WD_PIECE_NATIVE ? add_step(plan, OP_NARROW, &s) : 0;
    }
    return wd__error(WD_ECORRUPT, "tensor '%s' has unknown encoding '%s'", t->name, t->encoding);
}

int wd__piece_fetch(wd_repo *repo, const wd_stored_tensor *t, uint64_t k, int mode, wd_piece_plan *plan)
{
    plan->n_steps = 0;
    plan->dtype = t->dtype;
    plan->mode = mode;
    plan->cs = repo->store;
    plan->begin = k * t->chunk_elems;
    if (plan->begin >= t->nelem)
        return wd__error(WD_ECORRUPT, "tensor '%s': piece %llu is past its end", t->name, (unsigned long long)k);
    uint64_t left = t->nelem - plan->begin;
    plan->nelem = (size_t)(left < t->chunk_elems ? left : t->chunk_elems);
    if (mode == WD_PIECE_F32 && !wd__f32_convertible(t->dtype))
        return wd__error(WD_EUSAGE, "tensor '%s': %s cannot be read as float32", t->name, wd__dtype_name(t->dtype));
    return build(repo, t, k, mode, plan, 0);
}

static int slice(wd_piece_scratch *sc, int i, const wd_arange *r, uint8_t **out)
{
    size_t len = (size_t)(r->end - r->begin);
    int rc = wd__buf_reserve(&sc->arr[i], len + 1);
    if (rc)
        return rc;
    *out = sc->arr[i].data;
    return wd__arange_decode(r, sc->dctx, sc->arr[i].data, sc->tmp, sc->tmp2, sc->how);
}

static int64_t index_at(const uint8_t *p, size_t isz, uint64_t j)
{
    if (isz == 4) {
        int32_t v;
        memcpy(&v, p + 4 * j, 4);
        return v;
    }
    int64_t v;
    memcpy(&v, p + 8 * j, 8);
    return v;
}

static int apply_lossy(const wd_piece_step *s, const wd_piece_plan *plan, wd_piece_scratch *sc, float *f)
{
    const wd_lossy *L = s->t->lossy;
    uint64_t begin = plan->begin;
    size_t n = plan->nelem;
    uint8_t *a0, *a1, *a2;
    int rc = slice(sc, 0, &s->r[0], &a0);
    if (!rc)
        rc = slice(sc, 1, &s->r[1], &a1);
    if (rc)
        return rc;
    if (L->strategy == WD__WS_LOWBIT) {
        wd_lowbit_lr lr = {L->rank, L->n_cols, L->sv, {0}, NULL, NULL};
        uint8_t *a3 = NULL;
        memcpy(lr.sa, L->sa, sizeof lr.sa);
        if (L->rank && !(rc = slice(sc, 2, &s->r[2], &a2)) && !(rc = slice(sc, 3, &s->r[3], &a3))) {
            lr.acodes = (const uint16_t *)(void *)a2;
            lr.vcodes = (const uint16_t *)(void *)a3;
        }
        /* tmp2 (4 MiB) holds (rank + 1) x cols floats: at most 33 x 16384 (lossy.c checks) */
        if (!rc)
            wd__lowbit_apply((const uint16_t *)(void *)a0, (const uint16_t *)(void *)a1, begin, n, L->n_cols, L->step,
                             &lr, (float *)(void *)sc->tmp2, f);
        return rc;
    }
    if (L->strategy == WD__WS_QUANTIZED) {
        /* The codec's own apply, a row's run at a time, through a view whose
         * one row is that run: its signs start on the byte holding begin
         * (a0[0]), its single scale is the row's. */
        uint64_t origin = begin & ~(uint64_t)7, end = begin + n;
        for (uint64_t pos = begin; pos < end;) {
            uint64_t row = pos / L->n_cols, r_end = (row + 1) * L->n_cols < end ? (row + 1) * L->n_cols : end;
            wd_quant_delta v = {.n = r_end - origin, .n_cols = r_end - origin,
                                .scales = (uint16_t *)(void *)(a1 + 2 * (row - s->base0)), .packed_signs = a0};
            if ((rc = wd__quant_apply(&v, pos - origin, f + (pos - begin), (size_t)(r_end - pos))))
                return rc;
            pos = r_end;
        }
        return 0;
    }
    size_t isz = wd__dtype_size(L->arrays[L->strategy == WD__WS_SPARSE ? WD__WF_INDICES : WD__WF_OUTLIER_IDX].dtype);
    uint64_t m = s->e1 - s->e0;
    /* Indices come from the store: check them before they address memory. */
    int64_t prev = -1;
    for (uint64_t j = 0; j < m; j++) {
        int64_t v = index_at(a0, isz, j);
        if (v <= prev || v < (int64_t)begin || (uint64_t)v >= begin + n)
            return wd__error(WD_ECORRUPT, "tensor '%s': stored index %lld is out of order or outside its piece",
                             s->t->name, (long long)v);
        prev = v;
    }
    if (L->strategy == WD__WS_SPARSE) {
        /* the codec's apply over this piece's entries (positions are the
         * tensor's: the view ends with the piece) */
        if (isz != 8)
            return wd__error(WD_ECORRUPT, "tensor '%s': sparse indices stored as %s, not int64", s->t->name,
                             wd__dtype_name(L->arrays[WD__WF_INDICES].dtype));
        wd_sparse_delta v = {.n = begin + n, .k = m, .indices = (int64_t *)(void *)a0, .values = (float *)(void *)a1};
        return wd__sparse_apply(&v, begin, f, n);
    }
    if ((rc = slice(sc, 2, &s->r[2], &a2)))
        return rc;
    float lut[16];
    wd__int4_lut(lut, L->scale, L->zero_point);
    if (L->layout == 2) {
        wd__int4_apply_l2(f, n, begin, lut, a2 + (begin / 2 - s->base0 / 2), a0, (unsigned)isz, m, a1);
        return 0;
    }
    /* layout 1: a2 starts at the byte of code base0, the piece's first */
    wd__int4_apply_l1(f, n, begin, lut, a2, s->base0, a0, (unsigned)isz, m, a1);
    return 0;
}

int wd__piece_decode(const wd_piece_plan *plan, wd_piece_scratch *sc, void *out)
{
    size_t n = plan->nelem;
    /* The buffer the result ends in is the caller's (float32: f, native:
     * nat), so nothing is copied out; the other one is scratch. out holds
     * n elements of that kind and is none of the scratch buffers. */
    float *f = plan->mode == WD_PIECE_F32 ? out : sc->f;
    uint8_t *nat = plan->mode == WD_PIECE_F32 ? sc->nat : out;
    for (size_t i = 0; i < plan->n_steps; i++) {
        const wd_piece_step *s = &plan->steps[i];
        int rc = 0;
        switch (s->op) {
        case OP_PLANES:
        case OP_DELTA:
            rc = wd__chunk_decode(plan->cs, sc->dctx, s->t->chunks + s->k * WD_HASH_SIZE, s->codec, s->z.data,
                                  s->z.len, s->raw_size, sc->tmp, sc->how);
            if (rc)
                rc = tensor_where(rc, s->t);
            else if (s->op == OP_PLANES)
                wd__planes_decode(nat, sc->tmp, n, plan->dtype);
            else
                wd__delta_decode(nat, sc->tmp, nat, n, plan->dtype);
            break;
        case OP_WIDEN: wd__to_f32(f, nat, n, plan->dtype); break;
        case OP_NARROW: wd__from_f32(nat, f, n, plan->dtype); break;
        default: rc = apply_lossy(s, plan, sc, f); break;
        }
        if (rc)
            return rc;
    }
    return 0;
}

void wd__piece_plan_free(wd_piece_plan *plan)
{
    for (size_t i = 0; i < plan->cap_steps; i++) {
        wd__buf_free(&plan->steps[i].z);
        for (int j = 0; j < 4; j++)
            wd__arange_free(&plan->steps[i].r[j]);
    }
    free(plan->steps);
    memset(plan, 0, sizeof *plan);
}
