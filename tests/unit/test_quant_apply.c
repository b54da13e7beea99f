/*
 * test_quant_apply.c - wd__quant_apply, whose vector loop handles eight
 * elements a sign byte, against the definition (buf[i] + (bit ? s : -s),
 * element by element): bit for bit, for every start and length around the
 * byte and row boundaries, rows whose length is and is not a multiple of
 * 8, and special values in both the buffer and the scales.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "half.h"
#include "testutil.h"

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void) { return tu_xorshift(&rng); }

static float special_or_random(void)
{
    static const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -1e-40f, 3.0e38f};
    uint64_t r = rnd();
    if (r % 11 == 0)
        return specials[(r >> 8) % (sizeof specials / sizeof *specials)];
    return (float)((int64_t)(r >> 20) % 20001 - 10000) / 1024.0f;
}

static uint16_t scale_of(uint64_t r)
{
    static const uint16_t specials[] = {0x0000, 0x8000, 0x7c00, 0x7e00, 0x0001, 0x3c00};
    if (r % 7 == 0)
        return specials[(r >> 8) % (sizeof specials / sizeof *specials)];
    return wd__f32_to_f16((float)((r >> 16) % 5000) / 4096.0f);
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

int main(void)
{
    enum { MAXN = 600 };
    static const uint64_t cols[] = {1, 3, 7, 8, 9, 16, 17, 64, 100, 300};
    uint8_t signs[MAXN / 8 + 1];
    uint16_t scales[MAXN];
    float base[MAXN], got[MAXN], want[MAXN];
    int bad = 0, runs = 0;
    for (size_t ci = 0; ci < sizeof cols / sizeof *cols; ci++) {
        uint64_t n_cols = cols[ci], n = (MAXN / n_cols) * n_cols;
        for (size_t b = 0; b < sizeof signs; b++)
            signs[b] = (uint8_t)rnd();
        for (uint64_t r = 0; r < n / n_cols; r++)
            scales[r] = scale_of(rnd());
        for (uint64_t i = 0; i < n; i++)
            base[i] = special_or_random();
        wd_quant_delta q = {.n = n, .n_cols = n_cols, .scales = scales, .packed_signs = signs};
        for (uint64_t begin = 0; begin < 24 && begin < n; begin++) {
            for (uint64_t count = 0; begin + count <= n; count += count < 40 ? 1 : 37) {
                memcpy(got, base + begin, count * sizeof(float));
                CHECK_RC(wd__quant_apply(&q, begin, got, (size_t)count), 0);
                for (uint64_t k = 0; k < count; k++) {
                    uint64_t e = begin + k;
                    float s = wd__f16_to_f32(scales[e / n_cols]);
                    int bit = (signs[e >> 3] >> (7 - (e & 7))) & 1;
                    want[k] = base[e] + (bit ? s : -s);
                    bad += bits_of(got[k]) != bits_of(want[k]);
                }
                runs++;
            }
        }
    }
    CHECK(bad == 0);
    CHECK(runs > 1000);
    /* A range past the end is refused. */
    wd_quant_delta q = {.n = 16, .n_cols = 8, .scales = scales, .packed_signs = signs};
    CHECK_RC(wd__quant_apply(&q, 10, got, 7), WD_EUSAGE);
    return tu_finish("test_quant_apply");
}
