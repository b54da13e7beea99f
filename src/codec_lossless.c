/*
 * codec_lossless.c - plane splitting and ordered-integer deltas for lossless
 * bases and deltas (see codec_lossless.h for the transforms themselves).
 * Loops are written per width so the compiler can vectorise them; the
 * safetensors data is little-endian, as is every host we build for.
 */
#include "codec_lossless.h"

#include <string.h>

/* Order-preserving bijection from float bit patterns to unsigned integers. */
#define ORDER_FN(W)                                                                \
    static inline uint##W##_t to_ordered##W(uint##W##_t u)                         \
    {                                                                              \
        const uint##W##_t sign = (uint##W##_t)1 << (W - 1);                        \
        return (u & sign) ? (uint##W##_t)~u : (uint##W##_t)(u | sign);             \
    }                                                                              \
    static inline uint##W##_t from_ordered##W(uint##W##_t o)                       \
    {                                                                              \
        const uint##W##_t sign = (uint##W##_t)1 << (W - 1);                        \
        return (o & sign) ? (uint##W##_t)(o & ~sign) : (uint##W##_t)~o;            \
    }                                                                              \
    static inline uint##W##_t rotl##W(uint##W##_t u)                               \
    {                                                                              \
        return (uint##W##_t)(u << 1 | u >> (W - 1));                               \
    }                                                                              \
    static inline uint##W##_t rotr##W(uint##W##_t u)                               \
    {                                                                              \
        return (uint##W##_t)(u >> 1 | u << (W - 1));                               \
    }                                                                              \
    static inline uint##W##_t zigzag##W(uint##W##_t d)                             \
    {                                                                              \
        return (uint##W##_t)((d << 1) ^ (uint##W##_t)(0 - (d >> (W - 1))));       \
    }                                                                              \
    static inline uint##W##_t unzigzag##W(uint##W##_t z)                           \
    {                                                                              \
        return (uint##W##_t)((z >> 1) ^ (uint##W##_t)(0 - (z & 1)));               \
    }

ORDER_FN(8)
ORDER_FN(16)
ORDER_FN(32)
ORDER_FN(64)

/* Per-width kernels: load element i, transform, scatter its bytes to planes
 * (or the reverse). memcpy keeps the loads alignment-safe. */
#define PLANE_KERNELS(W)                                                           \
    static void planes_enc##W(uint8_t *dst, const uint8_t *src, size_t i0, size_t n, int fl) \
    {                                                                              \
        for (size_t i = i0; i < n; i++) {                                          \
            uint##W##_t u;                                                         \
            memcpy(&u, src + i * (W / 8), sizeof u);                               \
            if (fl)                                                                \
                u = rotl##W(u);                                                    \
            for (int b = 0; b < W / 8; b++)                                        \
                dst[(size_t)b * n + i] = (uint8_t)(u >> (8 * b));                  \
        }                                                                          \
    }                                                                              \
    static void planes_dec##W(uint8_t *dst, const uint8_t *src, size_t i0, size_t n, int fl) \
    {                                                                              \
        for (size_t i = i0; i < n; i++) {                                          \
            uint##W##_t u = 0;                                                     \
            for (int b = 0; b < W / 8; b++)                                        \
                u |= (uint##W##_t)((uint##W##_t)src[(size_t)b * n + i] << (8 * b)); \
            if (fl)                                                                \
                u = rotr##W(u);                                                    \
            memcpy(dst + i * (W / 8), &u, sizeof u);                               \
        }                                                                          \
    }                                                                              \
    static int delta_enc##W(uint8_t *dst, const uint8_t *ft, const uint8_t *pa,    \
                            size_t i0, size_t n, int fl)                           \
    {                                                                              \
        uint##W##_t any = 0;                                                       \
        for (size_t i = i0; i < n; i++) {                                          \
            uint##W##_t a, b;                                                      \
            memcpy(&a, ft + i * (W / 8), sizeof a);                                \
            memcpy(&b, pa + i * (W / 8), sizeof b);                                \
            if (fl) {                                                              \
                a = to_ordered##W(a);                                              \
                b = to_ordered##W(b);                                              \
            }                                                                      \
            uint##W##_t z = zigzag##W((uint##W##_t)(a - b));                       \
            any |= z;                                                              \
            for (int k = 0; k < W / 8; k++)                                        \
                dst[(size_t)k * n + i] = (uint8_t)(z >> (8 * k));                  \
        }                                                                          \
        return any == 0;                                                           \
    }                                                                              \
    static void delta_dec##W(uint8_t *dst, const uint8_t *enc, const uint8_t *pa,  \
                             size_t i0, size_t n, int fl)                          \
    {                                                                              \
        for (size_t i = i0; i < n; i++) {                                          \
            uint##W##_t z = 0, b;                                                  \
            for (int k = 0; k < W / 8; k++)                                        \
                z |= (uint##W##_t)((uint##W##_t)enc[(size_t)k * n + i] << (8 * k)); \
            memcpy(&b, pa + i * (W / 8), sizeof b);                                \
            uint##W##_t a;                                                         \
            if (fl)                                                                \
                a = from_ordered##W((uint##W##_t)(to_ordered##W(b) + unzigzag##W(z))); \
            else                                                                   \
                a = (uint##W##_t)(b + unzigzag##W(z));                             \
            memcpy(dst + i * (W / 8), &a, sizeof a);                               \
        }                                                                          \
    }

PLANE_KERNELS(8)
PLANE_KERNELS(16)
PLANE_KERNELS(32)
PLANE_KERNELS(64)

/* 2-byte elements (bfloat16, float16: nearly every model) and 4-byte ones
 * (float32, int32) get SSE2 kernels: the scalar loops above write one byte to each plane per element
 * and test fl each time, which kept a lossless checkout or commit spending
 * a tenth of its time here. They transform 16 elements at a time and
 * return how many they did; the scalar loop finishes the rest, so the
 * planes are the same bytes either way (test_lossless compares both). */
#ifdef __SSE2__
#include <emmintrin.h>

static inline __m128i rotl16x8(__m128i v)
{
    return _mm_or_si128(_mm_slli_epi16(v, 1), _mm_srli_epi16(v, 15));
}

static inline __m128i rotr16x8(__m128i v)
{
    return _mm_or_si128(_mm_srli_epi16(v, 1), _mm_slli_epi16(v, 15));
}

/* to_ordered16: a set sign bit flips every bit, a clear one sets it. */
static inline __m128i ordered16x8(__m128i u)
{
    return _mm_xor_si128(u, _mm_or_si128(_mm_srai_epi16(u, 15), _mm_set1_epi16((short)0x8000)));
}

/* from_ordered16: a set top bit is cleared, a clear one flips every bit. */
static inline __m128i unordered16x8(__m128i o)
{
    __m128i ones = _mm_set1_epi16(-1);
    return _mm_xor_si128(o, _mm_or_si128(_mm_andnot_si128(_mm_srai_epi16(o, 15), ones), _mm_set1_epi16((short)0x8000)));
}

/* Low and high bytes of 16 elements (a: 0-7, b: 8-15) to two planes. */
static inline void split16x16(uint8_t *lo, uint8_t *hi, __m128i a, __m128i b)
{
    __m128i m = _mm_set1_epi16(0xff);
    _mm_storeu_si128((__m128i *)(void *)lo, _mm_packus_epi16(_mm_and_si128(a, m), _mm_and_si128(b, m)));
    _mm_storeu_si128((__m128i *)(void *)hi, _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8)));
}

static size_t planes_enc16_sse2(uint8_t *dst, const uint8_t *src, size_t n, int fl)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i + 16));
        if (fl) {
            a = rotl16x8(a);
            b = rotl16x8(b);
        }
        split16x16(dst + i, dst + n + i, a, b);
    }
    return i;
}

static size_t planes_dec16_sse2(uint8_t *dst, const uint8_t *src, size_t n, int fl)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(src + n + i));
        __m128i a = _mm_unpacklo_epi8(lo, hi), b = _mm_unpackhi_epi8(lo, hi);
        if (fl) {
            a = rotr16x8(a);
            b = rotr16x8(b);
        }
        _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i), a);
        _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i + 16), b);
    }
    return i;
}

static inline __m128i zigzag16x8(__m128i d)
{
    return _mm_xor_si128(_mm_slli_epi16(d, 1), _mm_srai_epi16(d, 15));
}

static inline __m128i unzigzag16x8(__m128i z)
{
    return _mm_xor_si128(_mm_srli_epi16(z, 1), _mm_sub_epi16(_mm_setzero_si128(), _mm_and_si128(z, _mm_set1_epi16(1))));
}

/* *any gets a nonzero bit if some code is nonzero. */
static size_t delta_enc16_sse2(uint8_t *dst, const uint8_t *ft, const uint8_t *pa, size_t n, int fl, int *any)
{
    __m128i acc = _mm_setzero_si128();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i a0 = _mm_loadu_si128((const __m128i *)(const void *)(ft + 2 * i));
        __m128i a1 = _mm_loadu_si128((const __m128i *)(const void *)(ft + 2 * i + 16));
        __m128i b0 = _mm_loadu_si128((const __m128i *)(const void *)(pa + 2 * i));
        __m128i b1 = _mm_loadu_si128((const __m128i *)(const void *)(pa + 2 * i + 16));
        if (fl) {
            a0 = ordered16x8(a0);
            a1 = ordered16x8(a1);
            b0 = ordered16x8(b0);
            b1 = ordered16x8(b1);
        }
        __m128i z0 = zigzag16x8(_mm_sub_epi16(a0, b0)), z1 = zigzag16x8(_mm_sub_epi16(a1, b1));
        acc = _mm_or_si128(acc, _mm_or_si128(z0, z1));
        split16x16(dst + i, dst + n + i, z0, z1);
    }
    *any = _mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128())) != 0xffff;
    return i;
}

static size_t delta_dec16_sse2(uint8_t *dst, const uint8_t *enc, const uint8_t *pa, size_t n, int fl)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)(enc + i));
        __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(enc + n + i));
        __m128i d0 = unzigzag16x8(_mm_unpacklo_epi8(lo, hi)), d1 = unzigzag16x8(_mm_unpackhi_epi8(lo, hi));
        __m128i b0 = _mm_loadu_si128((const __m128i *)(const void *)(pa + 2 * i));
        __m128i b1 = _mm_loadu_si128((const __m128i *)(const void *)(pa + 2 * i + 16));
        __m128i a0, a1;
        if (fl) {
            a0 = unordered16x8(_mm_add_epi16(ordered16x8(b0), d0));
            a1 = unordered16x8(_mm_add_epi16(ordered16x8(b1), d1));
        } else {
            a0 = _mm_add_epi16(b0, d0);
            a1 = _mm_add_epi16(b1, d1);
        }
        _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i), a0);
        _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i + 16), a1);
    }
    return i;
}
/* 4-byte elements (float32 models): the same, 16 elements a step. */
static inline __m128i rotl32x4(__m128i v)
{
    return _mm_or_si128(_mm_slli_epi32(v, 1), _mm_srli_epi32(v, 31));
}

static inline __m128i rotr32x4(__m128i v)
{
    return _mm_or_si128(_mm_srli_epi32(v, 1), _mm_slli_epi32(v, 31));
}

static inline __m128i ordered32x4(__m128i u)
{
    return _mm_xor_si128(u, _mm_or_si128(_mm_srai_epi32(u, 31), _mm_set1_epi32((int)0x80000000u)));
}

static inline __m128i unordered32x4(__m128i o)
{
    __m128i ones = _mm_set1_epi32(-1), sign = _mm_set1_epi32((int)0x80000000u);
    return _mm_xor_si128(o, _mm_or_si128(_mm_andnot_si128(_mm_srai_epi32(o, 31), ones), sign));
}

static inline __m128i zigzag32x4(__m128i d)
{
    return _mm_xor_si128(_mm_slli_epi32(d, 1), _mm_srai_epi32(d, 31));
}

static inline __m128i unzigzag32x4(__m128i z)
{
    return _mm_xor_si128(_mm_srli_epi32(z, 1), _mm_sub_epi32(_mm_setzero_si128(), _mm_and_si128(z, _mm_set1_epi32(1))));
}

/* Byte b of 16 elements (v[0..4), 4 each) to plane b, for b = 0..3. */
static inline void split32x16(uint8_t *dst, size_t n, size_t i, const __m128i v[4])
{
    __m128i m = _mm_set1_epi32(0xff);
    for (int b = 0; b < 4; b++) {
        __m128i w[4];
        for (int q = 0; q < 4; q++)
            w[q] = _mm_and_si128(_mm_srli_epi32(v[q], 8 * b), m);
        __m128i lo = _mm_packs_epi32(w[0], w[1]), hi = _mm_packs_epi32(w[2], w[3]);
        _mm_storeu_si128((__m128i *)(void *)(dst + (size_t)b * n + i), _mm_packus_epi16(lo, hi));
    }
}

/* The 16 elements whose bytes are at plane offset i, back together. */
static inline void join32x16(__m128i v[4], const uint8_t *src, size_t n, size_t i)
{
    __m128i p0 = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
    __m128i p1 = _mm_loadu_si128((const __m128i *)(const void *)(src + n + i));
    __m128i p2 = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * n + i));
    __m128i p3 = _mm_loadu_si128((const __m128i *)(const void *)(src + 3 * n + i));
    __m128i l01 = _mm_unpacklo_epi8(p0, p1), h01 = _mm_unpackhi_epi8(p0, p1);
    __m128i l23 = _mm_unpacklo_epi8(p2, p3), h23 = _mm_unpackhi_epi8(p2, p3);
    v[0] = _mm_unpacklo_epi16(l01, l23);
    v[1] = _mm_unpackhi_epi16(l01, l23);
    v[2] = _mm_unpacklo_epi16(h01, h23);
    v[3] = _mm_unpackhi_epi16(h01, h23);
}

static size_t planes_enc32_sse2(uint8_t *dst, const uint8_t *src, size_t n, int fl)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i v[4];
        for (int q = 0; q < 4; q++) {
            v[q] = _mm_loadu_si128((const __m128i *)(const void *)(src + 4 * i + 16 * (size_t)q));
            if (fl)
                v[q] = rotl32x4(v[q]);
        }
        split32x16(dst, n, i, v);
    }
    return i;
}

static size_t planes_dec32_sse2(uint8_t *dst, const uint8_t *src, size_t n, int fl)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i v[4];
        join32x16(v, src, n, i);
        for (int q = 0; q < 4; q++)
            _mm_storeu_si128((__m128i *)(void *)(dst + 4 * i + 16 * (size_t)q), fl ? rotr32x4(v[q]) : v[q]);
    }
    return i;
}

static size_t delta_enc32_sse2(uint8_t *dst, const uint8_t *ft, const uint8_t *pa, size_t n, int fl, int *any)
{
    __m128i acc = _mm_setzero_si128();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i z[4];
        for (int q = 0; q < 4; q++) {
            __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(ft + 4 * i + 16 * (size_t)q));
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(pa + 4 * i + 16 * (size_t)q));
            if (fl) {
                a = ordered32x4(a);
                b = ordered32x4(b);
            }
            z[q] = zigzag32x4(_mm_sub_epi32(a, b));
            acc = _mm_or_si128(acc, z[q]);
        }
        split32x16(dst, n, i, z);
    }
    *any = _mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128())) != 0xffff;
    return i;
}

static size_t delta_dec32_sse2(uint8_t *dst, const uint8_t *enc, const uint8_t *pa, size_t n, int fl)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i z[4];
        join32x16(z, enc, n, i);
        for (int q = 0; q < 4; q++) {
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(pa + 4 * i + 16 * (size_t)q));
            __m128i d = unzigzag32x4(z[q]);
            __m128i a = fl ? unordered32x4(_mm_add_epi32(ordered32x4(b), d)) : _mm_add_epi32(b, d);
            _mm_storeu_si128((__m128i *)(void *)(dst + 4 * i + 16 * (size_t)q), a);
        }
    }
    return i;
}
#else
static size_t planes_enc16_sse2(uint8_t *dst, const uint8_t *src, size_t n, int fl)
{
    (void)dst, (void)src, (void)n, (void)fl;
    return 0;
}
static size_t planes_dec16_sse2(uint8_t *dst, const uint8_t *src, size_t n, int fl)
{
    (void)dst, (void)src, (void)n, (void)fl;
    return 0;
}
static size_t delta_enc16_sse2(uint8_t *dst, const uint8_t *ft, const uint8_t *pa, size_t n, int fl, int *any)
{
    (void)dst, (void)ft, (void)pa, (void)n, (void)fl;
    *any = 0;
    return 0;
}
static size_t delta_dec16_sse2(uint8_t *dst, const uint8_t *enc, const uint8_t *pa, size_t n, int fl)
{
    (void)dst, (void)enc, (void)pa, (void)n, (void)fl;
    return 0;
}
#define planes_enc32_sse2 planes_enc16_sse2
#define planes_dec32_sse2 planes_dec16_sse2
#define delta_enc32_sse2 delta_enc16_sse2
#define delta_dec32_sse2 delta_dec16_sse2
#endif

/* Set only by the unit test, to compare the SIMD kernels with the scalar
 * ones on the same inputs. */
static int force_scalar;

void wd__lossless_scalar(int on)
{
    force_scalar = on;
}

void wd__planes_encode(uint8_t *dst, const uint8_t *src, size_t n, wd_dtype dt)
{
    int fl = wd__dtype_is_float(dt);
    switch (wd__dtype_size(dt)) {
    case 1: planes_enc8(dst, src, 0, n, fl); break;
    case 2: planes_enc16(dst, src, force_scalar ? 0 : planes_enc16_sse2(dst, src, n, fl), n, fl); break;
    case 4: planes_enc32(dst, src, force_scalar ? 0 : planes_enc32_sse2(dst, src, n, fl), n, fl); break;
    default: planes_enc64(dst, src, 0, n, fl); break;
    }
}

void wd__planes_decode(uint8_t *dst, const uint8_t *src, size_t n, wd_dtype dt)
{
    int fl = wd__dtype_is_float(dt);
    switch (wd__dtype_size(dt)) {
    case 1: planes_dec8(dst, src, 0, n, fl); break;
    case 2: planes_dec16(dst, src, force_scalar ? 0 : planes_dec16_sse2(dst, src, n, fl), n, fl); break;
    case 4: planes_dec32(dst, src, force_scalar ? 0 : planes_dec32_sse2(dst, src, n, fl), n, fl); break;
    default: planes_dec64(dst, src, 0, n, fl); break;
    }
}

int wd__delta_encode(uint8_t *dst, const uint8_t *ft, const uint8_t *parent, size_t n,
                     wd_dtype dt)
{
    int fl = wd__dtype_is_float(dt);
    switch (wd__dtype_size(dt)) {
    case 1: return delta_enc8(dst, ft, parent, 0, n, fl);
    case 2: {
        int any = 0;
        size_t i0 = force_scalar ? 0 : delta_enc16_sse2(dst, ft, parent, n, fl, &any);
        return delta_enc16(dst, ft, parent, i0, n, fl) && !any;
    }
    case 4: {
        int any = 0;
        size_t i0 = force_scalar ? 0 : delta_enc32_sse2(dst, ft, parent, n, fl, &any);
        return delta_enc32(dst, ft, parent, i0, n, fl) && !any;
    }
    default: return delta_enc64(dst, ft, parent, 0, n, fl);
    }
}

void wd__delta_decode(uint8_t *dst, const uint8_t *enc, const uint8_t *parent, size_t n,
                      wd_dtype dt)
{
    int fl = wd__dtype_is_float(dt);
    switch (wd__dtype_size(dt)) {
    case 1: delta_dec8(dst, enc, parent, 0, n, fl); break;
    case 2: delta_dec16(dst, enc, parent, force_scalar ? 0 : delta_dec16_sse2(dst, enc, parent, n, fl), n, fl); break;
    case 4: delta_dec32(dst, enc, parent, force_scalar ? 0 : delta_dec32_sse2(dst, enc, parent, n, fl), n, fl); break;
    default: delta_dec64(dst, enc, parent, 0, n, fl); break;
    }
}
