/*
 * fuzz_rans.c - libFuzzer target for the rANS byte-plane decoder. The first
 * 4 bytes choose n (at most 1 MiB); the rest is decoded as given and again
 * with its checksum recomputed, so mutations reach the table and stream
 * checks behind it. The input itself must also survive an encode/decode
 * round trip.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec_rans.h"
#include "wdrepo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_N (1u << 20)

static void must_decode_cleanly(int rc)
{
    if (rc != WD_OK && rc != WD_ECORRUPT && rc != WD_ENOMEM)
        abort();
}

/* Encodes a[0..n) and decodes it back into an exact-size buffer. */
static void round_trip(const uint8_t *a, size_t n)
{
    size_t cap = wd__rans_bound(n);
    uint8_t *enc = malloc(cap), *dec = malloc(n ? n : 1);
    if (!enc || !dec)
        abort();
    size_t m = wd__rans_encode(enc, cap, a, n);
    if (m > cap || wd__rans_decode(dec, n, enc, m) != WD_OK || (n && memcmp(a, dec, n) != 0))
        abort();
    free(enc);
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint32_t word = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                    (uint32_t)data[3] << 24;
    size_t n = word % (MAX_N + 1), len = size - 4;
    const uint8_t *enc = data + 4;
    uint8_t *out = malloc(n ? n : 1);
    if (!out)
        abort();

    int rc = wd__rans_decode(out, n, enc, len);
    must_decode_cleanly(rc);
    if (rc == WD_OK)
        round_trip(out, n);

    /* The same bytes with a valid checksum, in an exact-size copy. */
    if (len >= 6) {
        uint8_t *sealed = malloc(len);
        if (!sealed)
            abort();
        memcpy(sealed, enc, len);
        uint32_t h = wd__rans_checksum(sealed, len - 4);
        for (int i = 0; i < 4; i++)
            sealed[len - 4 + (size_t)i] = (uint8_t)(h >> (8 * i));
        rc = wd__rans_decode(out, n, sealed, len);
        must_decode_cleanly(rc);
        if (rc == WD_OK)
            round_trip(out, n);
        free(sealed);
    }
    free(out);

    round_trip(data, size);
    return 0;
}
