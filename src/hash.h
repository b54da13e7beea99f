/*
 * hash.h - SHA-256 (OpenSSL libcrypto, which uses the CPU's SHA
 * instructions) and hex conversion of digests.
 */
#ifndef WD_HASH_H
#define WD_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "wdrepo.h"

typedef struct wd_sha256 wd_sha256; /* opaque streaming state */

int wd__sha256_new(wd_sha256 **out);
void wd__sha256_update(wd_sha256 *h, const void *data, size_t len);
/* Writes the digest and resets h for reuse. */
void wd__sha256_final(wd_sha256 *h, uint8_t out[WD_HASH_SIZE]);
void wd__sha256_free(wd_sha256 *h);

/* One-shot digest of a buffer. */
void wd__sha256(const void *data, size_t len, uint8_t out[WD_HASH_SIZE]);

void wd__hex(char out[WD_HEX_SIZE], const uint8_t hash[WD_HASH_SIZE]);
/* Parses exactly 64 hex digits; returns 0, or -1 if s is not one. */
int wd__unhex(uint8_t out[WD_HASH_SIZE], const char *s);

#endif
