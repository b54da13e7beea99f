/*
 * test_tensorref.c - the dtype conversions tensorref reads and load-delta
 * writes through (piece.c's wd__to_f32 / wd__from_f32, SSE2 loops for
 * bfloat16) give the per-element definitions' bytes exactly: every
 * bfloat16 and float16 pattern widened, and narrowing over a stride
 * through all 2^32 float32 patterns plus every rounding boundary (ties,
 * NaN payloads, inf), at lengths that leave a scalar tail.
 */
#include <stdint.h>
#include <string.h>

#include "dtype.h"
#include "half.h"
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
            b[i] = dts[d] == WD_DT_BF16 ? wd__bf16_to_f32(h) : wd__f16_to_f32(h);
        }
        wd__to_f32(a, raw, N - 3, dts[d]); /* a tail the vector loop leaves */
        CHECK(memcmp(a, b, (N - 3) * sizeof *a) == 0);
    }
    for (uint32_t i = 0; i < N; i++) {
        uint32_t u = i * 65521u + 12345u;
        memcpy(raw + 4 * i, &u, 4);
    }
    wd__to_f32(a, raw, N, WD_DT_F32);
    CHECK(memcmp(a, raw, sizeof a) == 0);
}

/* Narrows n patterns with wd__from_f32 and element by element; returns 1
 * when they agree. */
static int narrow_same(const float *in, size_t n, wd_dtype dt)
{
    static uint8_t x[N * 4], y[N * 4];
    wd__from_f32(x, in, n, dt);
    for (size_t i = 0; i < n; i++) {
        if (dt == WD_DT_F32) {
            memcpy(y + 4 * i, &in[i], 4);
        } else {
            uint16_t h = dt == WD_DT_BF16 ? wd__f32_to_bf16(in[i]) : wd__f32_to_f16(in[i]);
            memcpy(y + 2 * i, &h, 2);
        }
    }
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
        same &= narrow_same(in, N - 5, WD_DT_BF16);
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
