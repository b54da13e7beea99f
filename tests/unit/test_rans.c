/*
 * test_rans.c - the order-0 rANS coder: round trips over sizes and
 * distributions, sizes against the order-0 entropy, and hostile input
 * (truncations, every bit flipped, garbage, hand-made bad tables) that must
 * fail cleanly. Prints encode/decode speed on a 1 MiB skewed buffer.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec_rans.h"
#include "testutil.h"
#include "wdrepo.h"

/* Deterministic generator (xorshift64*), so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

enum { D_SAME, D_GEOMETRIC, D_ZEROS95, D_TWO, D_UNIFORM, D_ALL256, D_EXPONENT, D__COUNT };
static const char *const dist_name[D__COUNT] = {"same",    "geometric", "zeros95", "two",
                                                 "uniform", "all256",    "exponent"};

static void fill(uint8_t *b, size_t n, int dist)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng();
        switch (dist) {
        case D_SAME: b[i] = 0x7f; break;
        case D_GEOMETRIC: { /* P(s) = 2^-(s+1): 2 bits a byte */
            unsigned s = 0;
            while (s < 255 && (r & 1))
                s++, r >>= 1;
            b[i] = (uint8_t)s;
            break;
        }
        case D_ZEROS95: b[i] = (r % 100) < 95 ? 0 : (uint8_t)(1 + (r >> 8) % 255); break;
        case D_TWO: b[i] = (r % 10) < 7 ? 0x3c : 0xc3; break;
        case D_UNIFORM: b[i] = (uint8_t)(r >> 32); break;
        case D_ALL256: b[i] = (uint8_t)(i % 256); break;
        default: { /* bf16-exponent-like: a bell of ~20 values around 120 */
            int s = 120;
            for (int j = 0; j < 8; j++)
                s += (int)((r >> (4 * j)) & 3) - (int)((r >> (4 * j + 2)) & 3);
            b[i] = (uint8_t)s;
            break;
        }
        }
    }
}

/* Order-0 entropy of b in bytes. */
static double entropy_bytes(const uint8_t *b, size_t n)
{
    size_t c[256] = {0};
    for (size_t i = 0; i < n; i++)
        c[b[i]]++;
    double bits = 0;
    for (int s = 0; s < 256; s++)
        if (c[s])
            bits -= (double)c[s] * log2((double)c[s] / (double)n);
    return bits / 8;
}

/* Encodes into a buffer of exactly wd__rans_bound(n) bytes (so ASan sees
 * any overrun); *out is malloc'd, the size is returned. */
static size_t encode(uint8_t **out, const uint8_t *src, size_t n)
{
    size_t cap = wd__rans_bound(n);
    *out = malloc(cap);
    if (!*out)
        abort();
    return wd__rans_encode(*out, cap, src, n);
}

/* Decodes enc[0..len) into a fresh buffer of exactly n bytes, copying enc
 * to an exact-size buffer first so reads past it are caught. */
static int decode(uint8_t **out, size_t n, const uint8_t *enc, size_t len)
{
    uint8_t *e = malloc(len ? len : 1);
    *out = malloc(n ? n : 1);
    if (!e || !*out)
        abort();
    if (len)
        memcpy(e, enc, len);
    int rc = wd__rans_decode(*out, n, e, len);
    free(e);
    return rc;
}

static void test_round_trips(void)
{
    static const size_t sizes[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 1000, 4096,
                                   16385, 65536, 1u << 19, (1u << 20) + 3};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        for (int d = 0; d < D__COUNT; d++) {
            size_t n = sizes[si];
            uint8_t *src = malloc(n ? n : 1), *enc, *dec;
            fill(src, n, d);
            size_t m = encode(&enc, src, n);
            CHECK(m <= wd__rans_bound(n));
            int rc = decode(&dec, n, enc, m);
            CHECK_RC(rc, 0);
            CHECK(rc != 0 || n == 0 || memcmp(dec, src, n) == 0);
            if (rc != 0 || (n && memcmp(dec, src, n) != 0))
                fprintf(stderr, "  round trip failed: n=%zu dist=%s\n", n, dist_name[d]);
            /* the same bytes always encode the same way */
            uint8_t *enc2;
            size_t m2 = encode(&enc2, src, n);
            CHECK(m2 == m && memcmp(enc, enc2, m) == 0);
            /* decoding with the wrong n must fail, not overrun */
            if (n > 0 && enc[1] != 1) { /* a run does not know its length */
                uint8_t *dec2;
                CHECK_RC(decode(&dec2, n - 1, enc, m), WD_ECORRUPT);
                free(dec2);
            }
            if (d == D_SAME && n >= 2)
                CHECK(m == 7); /* version, mode, symbol, checksum */
            if (d == D_UNIFORM)
                CHECK(m == n + 6); /* stored: expansion is the 6 bytes of framing */
            free(src);
            free(enc);
            free(enc2);
            free(dec);
        }
    }
}

/* Large skewed inputs: within 1% of the order-0 entropy plus the fixed
 * overhead, at most 584 bytes (a 4 + 32 + 2 * 256-byte table, 32 bytes of
 * states, 4 of checksum). In practice the excess is that overhead and a
 * few hundredths of a percent. */
static void test_ratio(void)
{
    const size_t n = (1u << 20) + 3;
    const int dists[] = {D_GEOMETRIC, D_ZEROS95, D_TWO, D_EXPONENT, D_ALL256};
    uint8_t *src = malloc(n);
    for (size_t i = 0; i < sizeof dists / sizeof dists[0]; i++) {
        fill(src, n, dists[i]);
        uint8_t *enc;
        size_t m = encode(&enc, src, n);
        double h = entropy_bytes(src, n);
        CHECK((double)m <= h * 1.01 + 584);
        printf("  %-9s n=%zu entropy %.0f B, encoded %zu B (%+.3f%%)\n", dist_name[dists[i]], n, h,
               m, 100.0 * ((double)m / h - 1));
        free(enc);
    }
    /* Mostly zeros with a handful of rare symbols (a fine-tune's high
     * delta plane): well under 1 bit a byte, where Huffman cannot go. */
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng();
        src[i] = r % 1000 < 960 ? 0 : (uint8_t)(1 + (r >> 16) % 40);
    }
    uint8_t *enc;
    size_t m = encode(&enc, src, n);
    double h = entropy_bytes(src, n);
    CHECK((double)m <= h * 1.01 + 584);
    printf("  sparse40  n=%zu entropy %.0f B, encoded %zu B (%+.3f%%)\n", n, h, m,
           100.0 * ((double)m / h - 1));
    free(enc);
    free(src);
}

/* A small rANS-mode encoding (mode byte 2) of n bytes of dist. */
static size_t small_encoding(uint8_t **enc, uint8_t **src, size_t n, int dist)
{
    *src = malloc(n);
    fill(*src, n, dist);
    size_t m = encode(enc, *src, n);
    CHECK(m > 6 && (*enc)[1] == 2);
    return m;
}

/* Writes the checksum of b[0..len) behind it; returns len + 4. Lets a test
 * reach the checks behind the checksum. */
static size_t reseal(uint8_t *b, size_t len)
{
    uint32_t h = wd__rans_checksum(b, len);
    for (int i = 0; i < 4; i++)
        b[len + (size_t)i] = (uint8_t)(h >> (8 * i));
    return len + 4;
}

/* Every truncation and every single bit flip of a small encoding is
 * refused: the checksum guarantees it. Then the same damage with the
 * checksum recomputed, which reaches the parser and the decoder: never a
 * crash, and a truncation is still refused. A resealed flip may decode:
 * entropy-coded bytes have no redundancy, so a flip that swaps two symbols
 * of equal frequency is invisible to the final-state check. */
static void test_truncations_and_flips(void)
{
    const int dists[] = {D_GEOMETRIC, D_ZEROS95, D_TWO, D_EXPONENT};
    const size_t sizes[] = {300, 3000, 200, 1000};
    for (int t = 0; t < 4; t++) {
        uint8_t *src, *enc, *dec;
        size_t n = sizes[t];
        size_t m = small_encoding(&enc, &src, n, dists[t]);
        uint8_t *b = malloc(m + 8);
        int bad = 0;
        for (size_t len = 0; len < m; len++) {
            bad += decode(&dec, n, enc, len) != WD_ECORRUPT;
            free(dec);
            if (len < m - 4) { /* the body cut short, then sealed */
                memcpy(b, enc, len);
                bad += decode(&dec, n, b, reseal(b, len)) != WD_ECORRUPT;
                free(dec);
            }
        }
        CHECK(bad == 0);
        /* and one byte too many, sealed or not */
        memcpy(b, enc, m);
        b[m] = 0;
        CHECK_RC(decode(&dec, n, b, m + 1), WD_ECORRUPT);
        free(dec);
        memcpy(b, enc, m - 4);
        b[m - 4] = 0;
        CHECK_RC(decode(&dec, n, b, reseal(b, m - 3)), WD_ECORRUPT);
        free(dec);

        size_t rejected = 0, resealed_ok = 0, resealed_rejected = 0;
        bad = 0;
        for (size_t bit = 0; bit < 8 * m; bit++) {
            memcpy(b, enc, m);
            b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            int rc = decode(&dec, n, b, m);
            free(dec);
            if (rc == WD_ECORRUPT)
                rejected++;
            else
                bad++;
            if (bit < 8 * (m - 4)) {
                rc = decode(&dec, n, b, reseal(b, m - 4));
                free(dec);
                resealed_ok += rc == 0;
                resealed_rejected += rc == WD_ECORRUPT;
                bad += rc != 0 && rc != WD_ECORRUPT;
            }
        }
        CHECK(bad == 0 && rejected == 8 * m);
        printf("  %-9s n=%zu: %zu-byte encoding; %zu truncations and %zu bit flips all "
               "rejected; resealed flips: %zu rejected, %zu decoded\n",
               dist_name[dists[t]], n, m, m, 8 * m, resealed_rejected, resealed_ok);
        free(b);
        free(src);
        free(enc);
    }
}

/* Random bytes, and random bytes behind a plausible header with a valid
 * checksum, must never crash and only fail with WD_ECORRUPT. */
static void test_garbage(void)
{
    uint8_t buf[600];
    int bad = 0, decoded = 0;
    for (int iter = 0; iter < 40000; iter++) {
        size_t len = (size_t)(rng() % (sizeof buf - 4));
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rng();
        if (iter % 2) {
            if (len >= 4) { /* version 1, mode 2, a valid scale, few symbols */
                buf[0] = 1;
                buf[1] = (uint8_t)(iter % 8 == 1 ? rng() % 3 : 2);
                buf[2] = (uint8_t)(8 + rng() % 8);
                if (iter % 4 == 1)
                    buf[3] = (uint8_t)(rng() % 4);
            }
            len = reseal(buf, len);
        }
        size_t n = (size_t)(rng() % 2000);
        uint8_t *dec;
        int rc = decode(&dec, n, buf, len);
        bad += rc != 0 && rc != WD_ECORRUPT;
        decoded += rc == 0;
        free(dec);
    }
    CHECK(bad == 0);
    printf("  garbage: 40000 inputs, %d decoded, the rest rejected\n", decoded);
}

/* A valid table of a large input (so decoding takes the scale-15 fast
 * path) followed by random or damaged states and streams, resealed: never
 * a crash, never a write outside the n bytes. */
static void test_garbage_streams(void)
{
    const size_t n = 20000;
    uint8_t *src, *enc;
    size_t m = small_encoding(&enc, &src, n, D_EXPONENT);
    CHECK(enc[2] == 15);
    size_t table = 4 + 32;
    for (int s = 0; s < 256; s++) /* the frequencies' length */
        if (enc[4 + s / 8] >> (s % 8) & 1)
            table += enc[table] & 0x80 ? 2 : 1;
    uint8_t *b = malloc(m + 64);
    int bad = 0, decoded = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = m - 4;
        memcpy(b, enc, len);
        switch (iter % 3) {
        case 0: /* random states and stream of about the right length */
            len = table + (size_t)(rng() % (m - table + 32));
            for (size_t i = table; i < len; i++)
                b[i] = (uint8_t)rng();
            break;
        case 1: /* a few random bytes of the stream changed */
            for (int j = 0; j < 1 + iter % 4; j++)
                b[table + (size_t)(rng() % (len - table))] = (uint8_t)rng();
            break;
        default: /* cut anywhere after the table */
            len = table + (size_t)(rng() % (len - table));
            break;
        }
        size_t want = iter % 5 ? n : (size_t)(rng() % (2 * n));
        uint8_t *dec;
        int rc = decode(&dec, want, b, reseal(b, len));
        bad += rc != 0 && rc != WD_ECORRUPT;
        decoded += rc == 0;
        free(dec);
    }
    CHECK(bad == 0);
    printf("  damaged streams behind a valid table: 3000 tried, %d decoded, the rest rejected\n",
           decoded);
    free(b);
    free(src);
    free(enc);
}

/* Decodes the sealed body b[0..len) into out[0..n). */
static int decode_body(uint8_t *out, size_t n, const uint8_t *body, size_t len)
{
    uint8_t *b = malloc(len + 4), *dec;
    memcpy(b, body, len);
    int rc = decode(&dec, n, b, reseal(b, len));
    if (rc == 0 && n)
        memcpy(out, dec, n);
    free(dec);
    free(b);
    return rc;
}

/* Hand-made encodings, each broken in one way. */
static void test_crafted(void)
{
    uint8_t out[64];
    /* header-level */
    CHECK_RC(wd__rans_decode(out, 0, (const uint8_t *)"", 0), WD_ECORRUPT);
    CHECK_RC(wd__rans_decode(out, 0, (const uint8_t[]){1}, 1), WD_ECORRUPT);
    CHECK_RC(wd__rans_decode(out, 0, (const uint8_t[]){1, 0, 0, 0, 0}, 5), WD_ECORRUPT);
    CHECK_RC(decode_body(out, 0, (const uint8_t[]){2, 0}, 2), WD_ECORRUPT); /* version */
    CHECK_RC(decode_body(out, 0, (const uint8_t[]){1, 3}, 2), WD_ECORRUPT); /* mode */
    CHECK_RC(decode_body(out, 0, (const uint8_t[]){1, 0}, 2), 0);           /* stored, n=0 */
    CHECK_RC(wd__rans_decode(out, 0, (const uint8_t[]){1, 0, 0, 0, 0, 0}, 6), WD_ECORRUPT);
    CHECK_RC(decode_body(out, 1, (const uint8_t[]){1, 0}, 2), WD_ECORRUPT);
    CHECK_RC(decode_body(out, 2, (const uint8_t[]){1, 0, 5, 6}, 4), 0);
    CHECK(out[0] == 5 && out[1] == 6);
    CHECK_RC(decode_body(out, 5, (const uint8_t[]){1, 1, 9}, 3), 0); /* run */
    CHECK(out[0] == 9 && out[4] == 9);
    CHECK_RC(decode_body(out, 0, (const uint8_t[]){1, 1, 9}, 3), WD_ECORRUPT);
    CHECK_RC(decode_body(out, 5, (const uint8_t[]){1, 1, 9, 9}, 4), WD_ECORRUPT);
    CHECK_RC(decode_body(out, 5, (const uint8_t[]){1, 1}, 2), WD_ECORRUPT);
    CHECK_RC(decode_body(out, 5, (const uint8_t[]){1, 2}, 2), WD_ECORRUPT);

    /* A valid rANS encoding to break: 200 bytes, 60 of 0x3c and 140 of 0xc3.
     * At scale 8 that is f0 < 128 (one byte) and f1 >= 128 (two bytes). */
    uint8_t src[200], dec[200], *enc;
    for (int i = 0; i < 200; i++)
        src[i] = i % 10 < 3 ? 0x3c : 0xc3;
    size_t m = encode(&enc, src, sizeof src);
    /* layout: 1 2 S k-1 | 32-byte bitmap | f0 | 0x80|f1>>8 f1&0xff |
     * 32 bytes of states | stream | checksum */
    enum { BM = 4, F0 = 36, F1 = 37, ST = 39 };
    CHECK(m > ST + 32 + 4 && enc[1] == 2 && enc[2] == 8 && enc[3] == 1);
    CHECK(enc[BM + (0x3c >> 3)] == 1u << (0x3c & 7) && enc[BM + (0xc3 >> 3)] == 1u << (0xc3 & 7));
    CHECK(enc[F0] < 128 && enc[F1] == 0x80 && enc[F0] + enc[F1 + 1] == 256);
    uint8_t *b = malloc(m + 8);
    const size_t body = m - 4;
#define BROKEN(edit, want)                                                         \
    do {                                                                           \
        memcpy(b, enc, body);                                                      \
        size_t blen = body;                                                        \
        edit;                                                                      \
        CHECK_RC(decode_body(dec, sizeof src, b, blen), want);                     \
    } while (0)
    BROKEN((void)0, 0);
    CHECK(memcmp(dec, src, sizeof src) == 0);
    BROKEN(b[0] = 0, WD_ECORRUPT);                      /* version */
    BROKEN(b[1] = 0, WD_ECORRUPT);                      /* mode: stored, wrong length */
    BROKEN(b[1] = 1, WD_ECORRUPT);                      /* mode: run, wrong length */
    BROKEN(b[2] = 7, WD_ECORRUPT);                      /* scale below 8 */
    BROKEN(b[2] = 16, WD_ECORRUPT);                     /* scale above 15 */
    BROKEN(b[3] = 0, WD_ECORRUPT);                      /* one symbol */
    BROKEN(b[3] = 2, WD_ECORRUPT);                      /* count above bitmap */
    BROKEN(b[BM] |= 1, WD_ECORRUPT);                    /* bitmap above count */
    BROKEN((b[BM] |= 1, b[3] = 2), WD_ECORRUPT);        /* a third symbol, table short */
    BROKEN(b[F0] = 0, WD_ECORRUPT);                     /* zero frequency */
    BROKEN(b[F0] = (uint8_t)(b[F0] + 1), WD_ECORRUPT);  /* sum above M */
    BROKEN(b[F0] = (uint8_t)(b[F0] - 1), WD_ECORRUPT);  /* sum below M */
    BROKEN((b[F1] = 0x80, b[F1 + 1] = 0x10), WD_ECORRUPT); /* overlong f1 = 16 */
    BROKEN((b[ST] = 0, b[ST + 1] = 0, b[ST + 2] = 0, b[ST + 3] = 0), WD_ECORRUPT);
    BROKEN((b[ST] = 0xff, b[ST + 1] = 0xff, b[ST + 2] = 0x7f, b[ST + 3] = 0), WD_ECORRUPT);
    BROKEN((b[ST] = 0, b[ST + 1] = 0, b[ST + 2] = 0, b[ST + 3] = 0x80), WD_ECORRUPT); /* 2^31 */
    BROKEN((b[body] = 0, blen = body + 1), WD_ECORRUPT); /* trailing byte */
    BROKEN(blen = body - 1, WD_ECORRUPT);                /* short stream */
    BROKEN(blen = ST + 32, WD_ECORRUPT);                 /* no stream at all */
    BROKEN(blen = ST + 31, WD_ECORRUPT);                 /* short states */
    BROKEN(blen = F1 + 1, WD_ECORRUPT);                  /* half a frequency */
    BROKEN(blen = 20, WD_ECORRUPT);                      /* half a bitmap */
#undef BROKEN
    /* All states at 2^23 and no stream: a valid encoding of nothing, and
     * only of nothing. */
    {
        uint8_t t[4 + 32 + 1 + 2 + 32] = {1, 2, 8, 1};
        t[4] = 3;                               /* symbols 0 and 1 */
        t[36] = 100, t[37] = 0x80, t[38] = 156; /* 100 + 156 = 1 << 8 */
        for (int j = 0; j < 8; j++)
            t[39 + 4 * j + 2] = 0x80;
        CHECK_RC(decode_body(out, 0, t, sizeof t), 0);
        CHECK_RC(decode_body(out, 1, t, sizeof t), WD_ECORRUPT);
    }
    free(b);
    free(enc);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Not an assertion: speed depends on the machine and the build. */
static void report_speed(void)
{
    const size_t n = 1u << 20;
    uint8_t *src = malloc(n), *dec = malloc(n), *enc;
    fill(src, n, D_EXPONENT);
    size_t m = encode(&enc, src, n);
    double best_enc = 1e9, best_dec = 1e9;
    for (int r = 0; r < 10; r++) {
        double t0 = seconds();
        m = wd__rans_encode(enc, wd__rans_bound(n), src, n);
        double t1 = seconds();
        int rc = wd__rans_decode(dec, n, enc, m);
        double t2 = seconds();
        CHECK_RC(rc, 0);
        best_enc = t1 - t0 < best_enc ? t1 - t0 : best_enc;
        best_dec = t2 - t1 < best_dec ? t2 - t1 : best_dec;
    }
    CHECK(memcmp(src, dec, n) == 0);
    printf("  speed on 1 MiB (%.2f bits/byte): encode %.0f MB/s, decode %.0f MB/s\n",
           8.0 * (double)m / (double)n, (double)n / best_enc / 1e6, (double)n / best_dec / 1e6);
    free(src);
    free(dec);
    free(enc);
}

/* The histogram's counts and repeat count against a plain loop, and the
 * counted encoder against the one that makes its own histogram: the same
 * bytes for every distribution and for lengths around the 4-byte unroll. */
static void test_histogram(void)
{
    size_t lens[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 1000, 65537};
    int bad = 0;
    for (int d = 0; d < D__COUNT; d++)
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
            size_t n = lens[li];
            uint8_t *src = malloc(n + 1), *a = malloc(wd__rans_bound(n)), *b = malloc(wd__rans_bound(n));
            fill(src, n, d);
            uint32_t count[256], want[256] = {0};
            size_t want_rep = 0;
            for (size_t i = 0; i < n; i++) {
                want[src[i]]++;
                want_rep += i && src[i] == src[i - 1];
            }
            size_t rep = wd__rans_histogram(count, src, n);
            if (rep != want_rep || memcmp(count, want, sizeof want))
                bad++;
            if (n >= 2) {
                size_t za = wd__rans_encode(a, wd__rans_bound(n), src, n);
                size_t zb = wd__rans_encode_counted(b, wd__rans_bound(n), src, n, count);
                if (za != zb || memcmp(a, b, za))
                    bad++;
            }
            free(src);
            free(a);
            free(b);
        }
    CHECK(bad == 0);
}

/* The encoder divides by a symbol's frequency with a multiply and a shift:
 * exact for every frequency at the scales the format uses and every state
 * a coding step can see (below f << (31 - S) once renormalised), checked
 * at the quotient's boundaries, where an off-by-one reciprocal fails. */
static void test_enc_step(void)
{
    static const unsigned scales[] = {8, 11, 15};
    uint64_t bad = 0, checked = 0;
    for (size_t si = 0; si < sizeof scales / sizeof *scales; si++) {
        unsigned S = scales[si];
        uint32_t M = 1u << S;
        for (uint32_t f = 1; f < M; f++) {
            uint32_t cum = (uint32_t)(rng() % (M - f + 1)), x_max = f << (31 - S);
            uint32_t top = x_max / f; /* quotients run over [0, top] */
            uint32_t ks[] = {1, 2, 3, top / 2, top - 2, top - 1, top};
            uint32_t xs[40];
            size_t nx = 0;
            for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
                for (int d = -1; d <= 1; d++) {
                    uint64_t x = (uint64_t)ks[i] * f + (uint64_t)(int64_t)d;
                    if (x >= 1 && x < x_max)
                        xs[nx++] = (uint32_t)x;
                }
            xs[nx++] = x_max - 1;
            for (int r = 0; r < 8; r++)
                xs[nx++] = 1 + (uint32_t)(rng() % (x_max - 1));
            for (size_t i = 0; i < nx; i++) {
                uint64_t want = ((uint64_t)(xs[i] / f) << S) + xs[i] % f + cum;
                bad += wd__rans_enc_step(xs[i], f, cum, S) != want;
                checked++;
            }
        }
    }
    if (bad)
        fprintf(stderr, "enc_step: %llu of %llu states wrong\n", (unsigned long long)bad,
                (unsigned long long)checked);
    CHECK(bad == 0);
}

int main(void)
{
    test_enc_step();
    test_histogram();
    test_round_trips();
    test_ratio();
    test_truncations_and_flips();
    test_garbage();
    test_garbage_streams();
    test_crafted();
    report_speed();
    return tu_finish("test_rans");
}
