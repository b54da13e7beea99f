/*
 * half.h - IEEE 754 binary16 (float16) conversions: exact widening to
 * float32, and narrowing from float32 or float64 rounded once to nearest even,
 * bit for bit as numpy 1.24 does it (npy_floatbits_to_halfbits and
 * npy_doublebits_to_halfbits). bfloat16 lives in dtype.h.
 */
#ifndef WD_HALF_H
#define WD_HALF_H

#include <stdint.h>

/* Exact: every float16 (subnormals, infinities, NaN payloads) widens to the
 * float32 of the same value; a NaN keeps its sign and payload. */
float wd__f16_to_f32(uint16_t h);

/* Round to nearest even, once. Overflow gives +-inf (65520 and above round
 * to inf, as IEEE says), underflow gives subnormals or +-0 with the sign
 * kept. A NaN stays NaN with its sign and the top 10 payload bits (numpy's
 * rule: a payload that would vanish becomes 1). */
uint16_t wd__f32_to_f16(float f);

/* The same from float64, rounded directly rather than through float32, which
 * would round twice (a value just above a float16 midpoint can become the
 * midpoint in float32 and then round to even the wrong way). numpy's
 * np.float16(python_float) does this, e.g. the int4 scale (max-min)/15. */
uint16_t wd__f64_to_f16(double d);

#endif
