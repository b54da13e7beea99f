/*
 * codec_rans.h - order-0 static rANS entropy coder for byte planes. It gets
 * within a fraction of a percent of the order-0 entropy where zstd's Huffman
 * literals cannot go below one bit a byte (exponent planes, delta planes).
 * The encoding is self-describing apart from n, which the caller keeps.
 */
#ifndef WD_CODEC_RANS_H
#define WD_CODEC_RANS_H

#include <stddef.h>
#include <stdint.h>

/* Worst-case encoded size for n input bytes: n plus a 2-byte header and a
 * 4-byte checksum, since the encoder falls back to a stored copy whenever
 * coding would not gain. Saturates at SIZE_MAX for absurd n. */
size_t wd__rans_bound(size_t n);

/* Encodes src[0..n) into dst, whose capacity cap must be at least
 * wd__rans_bound(n) (a smaller cap is a programming error); src and dst must
 * not overlap. Returns the encoded size; when that is >= n the data did not
 * compress (usually the encoding is then a stored copy) and callers should
 * keep the raw bytes instead. The same input always gives the same bytes.
 * Never fails; uses about 10 KiB of stack and no heap. */
size_t wd__rans_encode(uint8_t *dst, size_t cap, const uint8_t *src, size_t n);
/* The same, with src's byte histogram (count[s] = occurrences of s, as
 * wd__rans_histogram makes it) already at hand. */
size_t wd__rans_encode_counted(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, const uint32_t count[256]);
/* count[s] = occurrences of byte s in src[0..n), n <= UINT32_MAX; returns
 * how many bytes equal the one before them. */
size_t wd__rans_histogram(uint32_t count[256], const uint8_t *src, size_t n);

/* Decodes exactly n bytes from src[0..len) into dst (n is known to the
 * caller; the encoding does not store it). src is untrusted: returns 0, or
 * WD_ECORRUPT if src is not exactly a valid encoding of n bytes (dst then
 * holds unspecified bytes, never more than n), or WD_ENOMEM if the 32 KiB
 * decoding table cannot be allocated. */
int wd__rans_decode(uint8_t *dst, size_t n, const uint8_t *src, size_t len);

/* One coding step, for tests: the state after coding a symbol of
 * frequency f and cumulative frequency cum (at scale S) into state x, for a
 * renormalised x < f << (31 - S). Equals (x / f << S) + x % f + cum. */
uint32_t wd__rans_enc_step(uint32_t x, uint32_t f, uint32_t cum, unsigned scale);

/* The format's checksum (XXH32, seed 0) of p[0..len): an encoding ends with
 * that of all its other bytes. Exposed so tests and fuzzers can build
 * encodings that get past it. */
uint32_t wd__rans_checksum(const uint8_t *p, size_t len);

#endif
