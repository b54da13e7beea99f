/*
 * half.c - float16 <-> float32/float64 by bit manipulation (no F16C, no
 * compiler _Float16), so results do not depend on the host's FPU or flags.
 */
#include "half.h"

#include <string.h>

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float wd__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;

    if (exp == 0x1fu) /* inf, or NaN with its payload moved up */
        return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return f32_from_bits(sign);
        /* subnormal mant x 2^-24: normalise, float32 has the range for it */
        int e = -14;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        return f32_from_bits(sign | ((uint32_t)(e + 127) << 23) | ((mant & 0x3ffu) << 13));
    }
    return f32_from_bits(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

/* The float16 magnitude bits (0 .. 0x7c00) nearest to m x 2^e, ties to even.
 * m > 0 and m < 2^63. One rounding: the whole of m takes part in it. */
static uint16_t round_magnitude(uint64_t m, int e)
{
    int bitlen = 64 - __builtin_clzll(m);
    int top = e + bitlen - 1; /* floor(log2(value)) */
    if (top > 15)
        return 0x7c00u; /* 2^16 and above: far past 65504 */

    /* The spacing of float16 values at this magnitude: 2^(top-10) for
     * normals, 2^-24 for subnormals. */
    int quantum = top >= -14 ? top - 10 : -24;
    int shift = quantum - e;
    uint64_t units;
    if (shift <= 0) {
        units = m << -shift; /* exact; units < 2048 here */
    } else if (shift >= 64) {
        units = 0; /* below half the smallest subnormal */
    } else {
        units = m >> shift;
        uint64_t rem = m & ((UINT64_C(1) << shift) - 1);
        uint64_t half = UINT64_C(1) << (shift - 1);
        if (rem > half || (rem == half && (units & 1u)))
            units++;
    }
    if (top < -14)
        return (uint16_t)units; /* subnormal; 1024 becomes the smallest normal */
    /* units in [1024, 2048]; a carry to 2048 moves to the next binade and, from
     * the largest finite value, to 0x7c00 = inf, which is what IEEE wants. */
    return (uint16_t)(((uint32_t)(top + 14) << 10) + (uint32_t)units);
}

uint16_t wd__f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t mag = u & 0x7fffffffu;

    if (mag >= 0x7f800000u) {
        if (mag == 0x7f800000u)
            return sign | 0x7c00u;
        /* NaN: numpy keeps the top payload bits and never lets it become inf */
        uint16_t r = (uint16_t)(0x7c00u + ((mag & 0x7fffffu) >> 13));
        if (r == 0x7c00u)
            r++;
        return sign | r;
    }
    if (mag == 0)
        return sign;
    uint32_t exp = mag >> 23;
    uint32_t mant = mag & 0x7fffffu;
    if (exp == 0) /* float32 subnormal: far below float16's range, gives 0 */
        return (uint16_t)(sign | round_magnitude(mant, -149));
    return (uint16_t)(sign | round_magnitude(mant | 0x800000u, (int)exp - 150));
}

uint16_t wd__f64_to_f16(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    uint16_t sign = (uint16_t)((u >> 48) & 0x8000u);
    uint64_t mag = u & UINT64_C(0x7fffffffffffffff);

    if (mag >= UINT64_C(0x7ff0000000000000)) {
        if (mag == UINT64_C(0x7ff0000000000000))
            return sign | 0x7c00u;
        uint16_t r = (uint16_t)(0x7c00u + ((mag & UINT64_C(0x000fffffffffffff)) >> 42));
        if (r == 0x7c00u)
            r++;
        return sign | r;
    }
    if (mag == 0)
        return sign;
    int exp = (int)(mag >> 52);
    uint64_t mant = mag & UINT64_C(0x000fffffffffffff);
    if (exp == 0)
        return (uint16_t)(sign | round_magnitude(mant, -1074));
    return (uint16_t)(sign | round_magnitude(mant | (UINT64_C(1) << 52), exp - 1075));
}
