/*
 * codec_lossless.h - the byte transforms behind lossless storage. Both are
 * element-wise and exactly invertible, applied to one chunk at a time:
 *
 *  planes: floats are rotated left one bit (the sign moves below the
 *      mantissa, so one byte holds the whole exponent for bf16 and f32) and
 *      every element's byte b goes to plane b. Exponent planes are
 *      low-entropy and zstd's entropy stage then sees them apart.
 *  delta-planes: each element becomes the difference of the fine-tune's and
 *      the parent's patterns mapped to order-preserving integers (floats:
 *      flip so that the integer order is the float order, -0 next to +0),
 *      modulo 2^width, zigzag-coded so small changes of either sign give
 *      small numbers, then split into planes like above.
 */
#ifndef WD_CODEC_LOSSLESS_H
#define WD_CODEC_LOSSLESS_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

/* src and dst hold nelem elements of dt (nelem * size bytes); they must not
 * overlap. */
void wd__planes_encode(uint8_t *dst, const uint8_t *src, size_t nelem, wd_dtype dt);
void wd__planes_decode(uint8_t *dst, const uint8_t *src, size_t nelem, wd_dtype dt);

/* dst = delta-planes(ft against parent). Returns 1 if every element was
 * equal (dst all zero), else 0. */
int wd__delta_encode(uint8_t *dst, const uint8_t *ft, const uint8_t *parent, size_t nelem,
                     wd_dtype dt);
/* dst = the fine-tune piece rebuilt from parent and the encoded delta. */
void wd__delta_decode(uint8_t *dst, const uint8_t *enc, const uint8_t *parent, size_t nelem,
                      wd_dtype dt);

/* Test hook: 1 makes the transforms use only their scalar loops. */
void wd__lossless_scalar(int on);

#endif
