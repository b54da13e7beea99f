/*
 * test_tensorref.c - tensorref's fast dtype conversions give piece.c's
 * wd__to_f32 / wd__from_f32 bytes exactly: every bfloat16 and float16
 * pattern widened, and bfloat16 narrowing over a stride through all 2^32
 * float32 patterns plus every rounding boundary (ties, NaN payloads, inf).
 */
#include <stdint.h>
#include <string.h>

#include "dtype.h"
#include "piece.h"
#include "tensorref.h"
#include "testutil.h"

enum { N = 1 << 16 };

static void test_widen(void)
{
    static uint8_t raw[N * 4];
    static float a[N], b[N];
    const wd_dtype dts[] = {WD_DT_BF16, WD_DT_F16};
    for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
        for (uint32_t i = 0; i < N; i++) {
            uint16_t h = (uint16_t)i;
            memcpy(raw + 2 * i, &h, 2);
        }
        wd__to_f32(a, raw, N, dts[d]);
        wd__tref_to_f32(b, raw, N, dts[d]);
        CHECK(memcmp(a, b, sizeof a) == 0);
    }
    for (uint32_t i = 0; i < N; i++) {
        uint32_t u = i * 65521u + 12345u;
        memcpy(raw + 4 * i, &u, 4);
    }
    wd__to_f32(a, raw, N, WD_DT_F32);
    wd__tref_to_f32(b, raw, N, WD_DT_F32);
    CHECK(memcmp(a, b, sizeof a) == 0);
}

/* Narrows n patterns both ways and compares; returns 1 when they agree. */
static int narrow_same(const float *in, size_t n, wd_dtype dt)
{
    static uint8_t x[N * 4], y[N * 4];
    wd__from_f32(x, in, n, dt);
    wd__tref_from_f32(y, in, n, dt);
    return memcmp(x, y, n * wd__dtype_size(dt)) == 0;
}

static void test_narrow(void)
{
    static float in[N];
    int same = 1;
    /* every 16-bit prefix with the low halves around a rounding decision */
    static const uint16_t lows[] = {0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xc000, 0xffff};
    for (size_t l = 0; l < sizeof lows / sizeof *lows; l++) {
        for (uint32_t hi = 0; hi < N; hi++) {
            uint32_t u = hi << 16 | lows[l];
            memcpy(&in[hi], &u, 4);
        }
        same &= narrow_same(in, N, WD_DT_BF16);
        same &= narrow_same(in, N, WD_DT_F16);
        same &= narrow_same(in, N, WD_DT_F32);
    }
    /* a stride through all 2^32 patterns (about 16M of them) */
    uint64_t u = 0;
    while (u < ((uint64_t)1 << 32)) {
        size_t k = 0;
        for (; k < N && u < ((uint64_t)1 << 32); k++, u += 257) {
            uint32_t v = (uint32_t)u;
            memcpy(&in[k], &v, 4);
        }
        same &= narrow_same(in, k, WD_DT_BF16);
    }
    CHECK(same);
}

int main(void)
{
    test_widen();
    test_narrow();
    return tu_finish("test_tensorref");
}
