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
    static void planes_enc##W(uint8_t *dst, const uint8_t *src, size_t n, int fl)  \
    {                                                                              \
        for (size_t i = 0; i < n; i++) {                                           \
            uint##W##_t u;                                                         \
            memcpy(&u, src + i * (W / 8), sizeof u);                               \
            if (fl)                                                                \
                u = rotl##W(u);                                                    \
            for (int b = 0; b < W / 8; b++)                                        \
                dst[(size_t)b * n + i] = (uint8_t)(u >> (8 * b));                  \
        }                                                                          \
    }                                                                              \
    static void planes_dec##W(uint8_t *dst, const uint8_t *src, size_t n, int fl)  \
    {                                                                              \
        for (size_t i = 0; i < n; i++) {                                           \
            uint##W##_t u = 0;                                                     \
            for (int b = 0; b < W / 8; b++)                                        \
                u |= (uint##W##_t)((uint##W##_t)src[(size_t)b * n + i] << (8 * b)); \
            if (fl)                                                                \
                u = rotr##W(u);                                                    \
            memcpy(dst + i * (W / 8), &u, sizeof u);                               \
        }                                                                          \
    }                                                                              \
    static int delta_enc##W(uint8_t *dst, const uint8_t *ft, const uint8_t *pa,    \
                            size_t n, int fl)                                      \
    {                                                                              \
        uint##W##_t any = 0;                                                       \
        for (size_t i = 0; i < n; i++) {                                           \
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
                             size_t n, int fl)                                     \
    {                                                                              \
        for (size_t i = 0; i < n; i++) {                                           \
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

void wd__planes_encode(uint8_t *dst, const uint8_t *src, size_t n, wd_dtype dt)
{
    int fl = wd__dtype_is_float(dt);
    switch (wd__dtype_size(dt)) {
    case 1: planes_enc8(dst, src, n, fl); break;
    case 2: planes_enc16(dst, src, n, fl); break;
    case 4: planes_enc32(dst, src, n, fl); break;
    default: planes_enc64(dst, src, n, fl); break;
    }
}

void wd__planes_decode(uint8_t *dst, const uint8_t *src, size_t n, wd_dtype dt)
{
    int fl = wd__dtype_is_float(dt);
    switch (wd__dtype_size(dt)) {
    case 1: planes_dec8(dst, src, n, fl); break;
    case 2: planes_dec16(dst, src, n, fl); break;
    case 4: planes_dec32(dst, src, n, fl); break;
    default: planes_dec64(dst, src, n, fl); break;
    }
}

int wd__delta_encode(uint8_t *dst, const uint8_t *ft, const uint8_t *parent, size_t n,
                     wd_dtype dt)
{
    int fl = wd__dtype_is_float(dt);
    switch (wd__dtype_size(dt)) {
    case 1: return delta_enc8(dst, ft, parent, n, fl);
    case 2: return delta_enc16(dst, ft, parent, n, fl);
    case 4: return delta_enc32(dst, ft, parent, n, fl);
    default: return delta_enc64(dst, ft, parent, n, fl);
    }
}

void wd__delta_decode(uint8_t *dst, const uint8_t *enc, const uint8_t *parent, size_t n,
                      wd_dtype dt)
{
    int fl = wd__dtype_is_float(dt);
    switch (wd__dtype_size(dt)) {
    case 1: delta_dec8(dst, enc, parent, n, fl); break;
    case 2: delta_dec16(dst, enc, parent, n, fl); break;
    case 4: delta_dec32(dst, enc, parent, n, fl); break;
    default: delta_dec64(dst, enc, parent, n, fl); break;
    }
}
