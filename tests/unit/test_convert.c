/*
 * test_convert.c - the float32 <-> dtype conversions of piece.c against
 * the scalar definitions (dtype.h/dtype.c): every bfloat16 pattern widened,
 * and float32 patterns narrowed (a stride through all 2^32, plus the edges:
 * ties, NaNs, infinities, the largest finite values), at every alignment of
 * the vector loops' tails; and the delta readers' subtractions (wd__f32_sub,
 * wd__bf16_sub) bit for bit against one scalar subtraction an element.
 * WD_CONVERT_ALL=1 narrows all 2^32 patterns.
 */
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "piece.h"
#include "testutil.h"

static void check_narrow(const uint32_t *bits, size_t n)
{
    float *f = malloc(n * sizeof *f);
    uint8_t *out = malloc(2 * n + 2);
    memcpy(f, bits, n * sizeof *f);
    /* an odd start and length exercise the scalar tails */
    for (size_t off = 0; off < 2 && off < n; off++) {
        wd__from_f32(out, f + off, n - off, WD_DT_BF16);
        int ok = 1;
        for (size_t i = 0; i + off < n; i++) {
            uint16_t got, want = wd__f32_to_bf16(f[i + off]);
            memcpy(&got, out + 2 * i, 2);
            if (got != want) {
                ok = 0;
                break;
            }
        }
        CHECK(ok);
    }
    free(f);
    free(out);
}

/* a - b for pairs of bfloat16 patterns (a sweep of all 65536 against a
 * shuffled copy, NaNs, infinities and zeros included), at both alignments */
static void check_sub(void)
{
    enum { N = 65536 };
    uint8_t *a = malloc(2 * N + 2), *b = malloc(2 * N + 2);
    float *fa = malloc(N * sizeof *fa), *fb = malloc(N * sizeof *fb), *out = malloc(N * sizeof *out);
    for (uint32_t i = 0; i < N; i++) {
        uint16_t x = (uint16_t)i, y = (uint16_t)(i * 40503u + 7u); /* odd multiplier: a permutation */
        memcpy(a + 2 * i, &x, 2);
        memcpy(b + 2 * i, &y, 2);
        fa[i] = wd__bf16_to_f32(x);
        fb[i] = wd__bf16_to_f32(y);
    }
    for (size_t off = 0; off < 2; off++) {
        int ok = 1;
        wd__bf16_sub(out, a + 2 * off, b + 2 * off, N - off);
        for (size_t i = 0; i + off < N; i++) {
            float want = fa[i + off] - fb[i + off];
            ok &= !memcmp(&out[i], &want, 4);
        }
        CHECK(ok);
        ok = 1;
        wd__f32_sub(out, fa + off, fb + off, N - off);
        for (size_t i = 0; i + off < N; i++) {
            float want = fa[i + off] - fb[i + off];
            ok &= !memcmp(&out[i], &want, 4);
        }
        CHECK(ok);
    }
    free(a);
    free(b);
    free(fa);
    free(fb);
    free(out);
}

int main(void)
{
    check_sub();
    /* widening: all 65536 patterns, then back (exact for every non-NaN) */
    uint8_t *src = malloc(2 * 65536 + 2);
    float *f = malloc(65537 * sizeof *f);
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        memcpy(src + 2 * i, &h, 2);
    }
    for (size_t off = 0; off < 2; off++) {
        wd__to_f32(f, src + 2 * off, 65536 - off, WD_DT_BF16);
        int ok = 1;
        for (uint32_t i = 0; i + off < 65536; i++) {
            float want = wd__bf16_to_f32((uint16_t)(i + off));
            if (memcmp(&f[i], &want, 4))
                ok = 0;
        }
        CHECK(ok);
    }
    free(src);
    free(f);

    const uint32_t edges[] = {0x00000000u, 0x80000000u, 0x00008000u, 0x00018000u, 0x00017fffu, 0x3f808000u,
                              0x3f818000u, 0x7f7fffffu, 0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7f800001u,
                              0xff800001u, 0x7fc00000u, 0xffffffffu, 0x7fffffffu, 0x7f7f8000u, 0x00000001u,
                              0x3f7fffffu};
    check_narrow(edges, sizeof edges / sizeof edges[0]);
    const char *all = getenv("WD_CONVERT_ALL");
    uint64_t step = all && *all == '1' ? 1 : 4093; /* a prime: every low-bit pattern is visited */
    enum { BATCH = 1 << 20 };
    uint32_t *bits = malloc(BATCH * sizeof *bits);
    size_t n = 0;
    for (uint64_t u = 0; u <= 0xffffffffu; u += step) {
        bits[n++] = (uint32_t)u;
        if (n == BATCH) {
            check_narrow(bits, n);
            n = 0;
        }
    }
    check_narrow(bits, n);
    free(bits);
    return tu_finish("test_convert");
}
