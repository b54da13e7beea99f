/*
 * test_lossless.c - the lossless transforms (planes, ordered deltas) and the
 * chunk container: exact round trips for every dtype width and every bit
 * pattern class, and refusal of damaged chunks.
 */
#include <stdio.h>
#include <string.h>
#include <zstd.h>

#include "chunkstore.h"
#include "codec_lossless.h"
#include "dtype.h"
#include "hash.h"
#include "testutil.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { return tu_xorshift(&rng); }

/* Fills with a mix of small and extreme patterns: zeros of both signs,
 * NaNs, infinities, subnormals and random bits. */
static void fill(uint8_t *p, size_t nbytes, size_t esz)
{
    for (size_t i = 0; i < nbytes; i += esz) {
        uint64_t v = next();
        switch (v % 8) {
        case 0: v = 0; break;
        case 1: v = (uint64_t)1 << (8 * esz - 1); break; /* -0.0 */
        case 2: v = ~(uint64_t)0; break;                  /* NaN with all bits */
        default: break;
        }
        memcpy(p + i, &v, esz);
    }
}

static void test_roundtrips(void)
{
    static uint8_t a[4096 * 8], b[4096 * 8], enc[4096 * 8], dec[4096 * 8];
    for (int dt = 0; dt < WD_DT__COUNT; dt++) {
        size_t esz = wd__dtype_size((wd_dtype)dt);
        for (size_t n = 0; n <= 4096; n = n ? n * 3 + 1 : 1) {
            fill(a, n * esz, esz);
            fill(b, n * esz, esz);
            wd__planes_encode(enc, a, n, (wd_dtype)dt);
            wd__planes_decode(dec, enc, n, (wd_dtype)dt);
            CHECK(memcmp(a, dec, n * esz) == 0);
            int zero = wd__delta_encode(enc, a, b, n, (wd_dtype)dt);
            wd__delta_decode(dec, enc, b, n, (wd_dtype)dt);
            CHECK(memcmp(a, dec, n * esz) == 0);
            CHECK(zero == (n == 0 || memcmp(a, b, n * esz) == 0));
            CHECK(wd__delta_encode(enc, a, a, n, (wd_dtype)dt) == 1);
        }
    }
}

/* The SIMD kernels (2- and 4-byte elements) write the same planes as the
 * scalar loops, for every length around their 16-element step. */
static void test_simd_matches_scalar(void)
{
    static uint8_t a[1024 * 4], b[1024 * 4], e1[1024 * 4], e2[1024 * 4], d1[1024 * 4], d2[1024 * 4];
    wd_dtype dts[] = {WD_DT_BF16, WD_DT_F16, WD_DT_I16, WD_DT_F32, WD_DT_I32};
    for (size_t t = 0; t < sizeof dts / sizeof *dts; t++) {
        size_t esz = wd__dtype_size(dts[t]);
        for (size_t n = 0; n <= 1024; n = n < 40 ? n + 1 : n * 2 + 7) {
            if (n > 1024)
                break;
            fill(a, n * esz, esz);
            fill(b, n * esz, esz);
            if (n > 20) /* some equal elements: zero codes */
                memcpy(b + 10, a + 10, 20);
            for (int pass = 0; pass < 2; pass++) {
                uint8_t *e = pass ? e2 : e1, *d = pass ? d2 : d1;
                wd__lossless_scalar(pass);
                wd__planes_encode(e, a, n, dts[t]);
                wd__planes_decode(d, e, n, dts[t]);
                CHECK(memcmp(d, a, n * esz) == 0);
            }
            CHECK(memcmp(e1, e2, n * esz) == 0);
            int z[2];
            for (int pass = 0; pass < 2; pass++) {
                uint8_t *e = pass ? e2 : e1, *d = pass ? d2 : d1;
                wd__lossless_scalar(pass);
                z[pass] = wd__delta_encode(e, a, b, n, dts[t]);
                wd__delta_decode(d, e, b, n, dts[t]);
                CHECK(memcmp(d, a, n * esz) == 0);
                CHECK(wd__delta_encode(e, a, a, n, dts[t]) == 1);
                wd__delta_encode(e, a, b, n, dts[t]);
            }
            CHECK(z[0] == z[1]);
            CHECK(memcmp(e1, e2, n * esz) == 0);
            if (n >= 16) { /* one differing element inside the SIMD part */
                memcpy(b, a, n * esz);
                b[6] ^= 1;
                for (int pass = 0; pass < 2; pass++) {
                    wd__lossless_scalar(pass);
                    CHECK(wd__delta_encode(e1, a, b, n, dts[t]) == 0);
                }
            }
            wd__lossless_scalar(0);
        }
    }
}

/* Small float changes must give small codes: the point of the ordered map. */
static void test_delta_is_small(void)
{
    uint16_t base[4] = {0x3f80, 0x8000, 0x0000, 0xbf80}; /* 1.0, -0.0, +0.0, -1.0 */
    uint16_t ft[4] = {0x3f81, 0x0000, 0x8000, 0xbf81};   /* one step each */
    uint8_t enc[8];
    wd__delta_encode(enc, (const uint8_t *)ft, (const uint8_t *)base, 4, WD_DT_BF16);
    for (int i = 0; i < 4; i++) {
        CHECK(enc[4 + i] == 0); /* high plane */
        CHECK(enc[i] <= 2);     /* zigzag of +-1 */
    }
}

/* Decoding checks the chunk against its id: a flipped byte that still
 * decodes (a raw section, a raw chunk, a zstd frame, which carries no
 * checksum) is found, and the message names the chunk and the damage. */
static void test_chunk_damage(void)
{
    enum { N = 4096 };
    static uint8_t raw[N], out[N];
    /* Plane 0 incompressible (kept raw), plane 1 skewed (compressed). */
    for (size_t i = 0; i < N; i++)
        raw[i] = i < N / 2 ? (uint8_t)next() : (uint8_t)(next() % 4 == 0);
    uint8_t id[WD_HASH_SIZE];
    wd__sha256(raw, N, id);
    char hex[WD_HEX_SIZE], want[64];
    wd__hex(hex, id);
    snprintf(want, sizeof want, "chunk %.12s: stored data is damaged", hex);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_DCtx *d = ZSTD_createDCtx();
    wd_buf z = {0};
    int codec;

    CHECK_RC(wd__chunk_compress(c, 1, raw, N, N / 2, &z, &codec), 0);
    CHECK(codec == WD_CODEC_SECTIONS && z.data[4] == 0); /* first section raw */
    CHECK_RC(wd__chunk_decode(NULL, d, id, codec, z.data, z.len, N, out, WD_DECODE_CHECK), 0);
    z.data[4 + 5 + 100] ^= 0x01;
    CHECK_RC(wd__chunk_decode(NULL, d, id, codec, z.data, z.len, N, out, WD_DECODE_CHECK), WD_ECORRUPT);
    CHECK(strstr(wd_errmsg(), want) && strstr(wd_errmsg(), "(hash mismatch); run 'wdrepo fsck'"));

    /* The same bytes stored raw. */
    CHECK_RC(wd__chunk_decode(NULL, d, id, WD_CODEC_RAW, raw, N, N, out, WD_DECODE_CHECK), 0);
    raw[7] ^= 0x80;
    CHECK_RC(wd__chunk_decode(NULL, d, id, WD_CODEC_RAW, raw, N, N, out, WD_DECODE_CHECK), WD_ECORRUPT);
    CHECK(strstr(wd_errmsg(), "hash mismatch") != NULL);
    raw[7] ^= 0x80;

    /* One zstd frame of compressible bytes: flip each byte of its payload
     * in turn; every flip is refused, whether zstd notices or not. */
    for (size_t i = 0; i < N; i++)
        raw[i] = (uint8_t)(i % 61 < 50 ? 'a' + i % 7 : next());
    wd__sha256(raw, N, id);
    CHECK_RC(wd__chunk_compress(c, 1, raw, N, 0, &z, &codec), 0);
    CHECK(codec == WD_CODEC_ZSTD);
    int refused = 0, tried = 0;
    for (size_t at = 6; at < z.len; at++, tried++) {
        z.data[at] ^= 0x04;
        refused += wd__chunk_decode(NULL, d, id, codec, z.data, z.len, N, out, WD_DECODE_CHECK) == WD_ECORRUPT;
        z.data[at] ^= 0x04;
    }
    CHECK(tried > 0 && refused == tried);
    CHECK_RC(wd__chunk_decode(NULL, d, id, codec, z.data, z.len, N, out, WD_DECODE_CHECK), 0);
    wd__buf_free(&z);
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
}

static void test_chunk_container(void)
{
    enum { N = 300000 };
    static uint8_t raw[N], out[N];
    for (size_t i = 0; i < N; i++)
        raw[i] = i < N / 2 ? (uint8_t)(next() % 3) : (uint8_t)next();
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_DCtx *d = ZSTD_createDCtx();
    wd_buf z = {0};
    int codec;
    uint8_t id[WD_HASH_SIZE];
    wd__sha256(raw, N, id);
    size_t sections[] = {0, N / 2, 1000, N - 1};
    for (size_t s = 0; s < sizeof sections / sizeof *sections; s++) {
        CHECK_RC(wd__chunk_compress(c, 1, raw, N, sections[s], &z, &codec), 0);
        memset(out, 0, N);
        CHECK_RC(wd__chunk_decode(NULL, d, id, codec, z.data, z.len, N, out, WD_DECODE_CHECK), 0);
        CHECK(memcmp(raw, out, N) == 0);
        /* A wrong size, a truncation or a flipped length is refused. */
        CHECK_RC(wd__chunk_decode(NULL, d, id, codec, z.data, z.len, N - 1, out, WD_DECODE_CHECK), WD_ECORRUPT);
        CHECK_RC(wd__chunk_decode(NULL, d, id, codec, z.data, z.len - 1, N, out, WD_DECODE_CHECK), WD_ECORRUPT);
        if (codec == WD_CODEC_SECTIONS) {
            z.data[5] ^= 0x40;
            CHECK_RC(wd__chunk_decode(NULL, d, id, codec, z.data, z.len, N, out, WD_DECODE_CHECK), WD_ECORRUPT);
            z.data[5] ^= 0x40;
            z.data[4] = 9; /* unknown section codec */
            CHECK_RC(wd__chunk_decode(NULL, d, id, codec, z.data, z.len, N, out, WD_DECODE_CHECK), WD_ECORRUPT);
        }
    }
    CHECK_RC(wd__chunk_decode(NULL, d, id, 7, raw, 10, 10, out, WD_DECODE_CHECK), WD_ECORRUPT);
    CHECK_RC(wd__chunk_decode(NULL, d, id, WD_CODEC_RAW, raw, 10, WD_CHUNK_RAW_MAX + 1ull, out, WD_DECODE_CHECK), WD_ECORRUPT);
    /* Incompressible data is kept raw. */
    for (size_t i = 0; i < N; i++)
        raw[i] = (uint8_t)next();
    CHECK_RC(wd__chunk_compress(c, 1, raw, N, 0, &z, &codec), 0);
    CHECK(codec == WD_CODEC_RAW && z.len == N);
    wd__buf_free(&z);
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
}

int main(void)
{
    test_roundtrips();
    test_simd_matches_scalar();
    test_delta_is_small();
    test_chunk_container();
    test_chunk_damage();
    return tu_finish("test_lossless");
}
