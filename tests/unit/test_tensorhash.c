/*
 * test_tensorhash.c - the named-tensor SHA-256 and the pair-delta reader,
 * the pieces save-delta and load-delta share: hashing in steps (as
 * load-delta does beside its pool) gives the one-shot digest, which is
 * SHA-256(name, bytes, name, bytes...); as_f32 hashes float32 values; the
 * pair delta is f32(a) - f32(b) on every slot, for the bfloat16 fast path
 * and for mixed dtypes alike.
 */
#include <stdint.h>
#include <string.h>

#include "dtype.h"
#include "hash.h"
#include "pairdelta.h"
#include "piece.h"
#include "tensorhash.h"
#include "tensorref.h"
#include "testutil.h"

enum { NA = 300000, NB = 5, NC = 0 }; /* NA spans a few of the hasher's 1 MiB reads as f32 */

static uint16_t bfa[NA], bfb[NA], f16a[NA];
static float f32a[NB];

static wd_named_tensor named(const char *name, const char *dtype, uint64_t n, const void *data, size_t es)
{
    wd_named_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    snprintf(t.dtype, sizeof t.dtype, "%s", dtype);
    t.ndim = 1;
    t.shape[0] = n;
    t.data = data;
    t.nbytes = n * es;
    return t;
}

static void fill(void)
{
    for (uint32_t i = 0; i < NA; i++) {
        bfa[i] = (uint16_t)(0x3f80 + (i * 7919u) % 0x0100);
        bfb[i] = (uint16_t)(0xbf00 + (i * 104729u) % 0x0200);
        f16a[i] = (uint16_t)(0x3c00 + (i * 31u) % 0x0400);
    }
    for (int i = 0; i < NB; i++)
        f32a[i] = (float)i - 2.5f;
}

static void test_hash(void)
{
    wd_named_tensor x[3] = {named("a", "BF16", NA, bfa, 2), named("b", "F32", NB, f32a, 4),
                            named("c", "F16", NC, f16a, 2)};
    wd_tref r[3];
    const wd_tref *refs[3];
    for (int i = 0; i < 3; i++) {
        CHECK_RC(wd__tref_mem(&r[i], &x[i], "test"), 0);
        refs[i] = &r[i];
    }
    /* the definition: each name, then its bytes */
    uint8_t want[WD_HASH_SIZE], got[WD_HASH_SIZE], steps[WD_HASH_SIZE], f32[WD_HASH_SIZE];
    wd_sha256 *h = NULL;
    CHECK_RC(wd__sha256_new(&h), 0);
    for (int i = 0; i < 3; i++) {
        wd__thash_name(h, x[i].name);
        wd__sha256_update(h, x[i].data, (size_t)x[i].nbytes);
    }
    wd__sha256_final(h, want);
    wd__sha256_free(h);
    CHECK_RC(wd__tref_hash(refs, 3, 0, got, NULL, NULL), 0);
    CHECK(!memcmp(got, want, sizeof got));
    /* in steps, stopping inside tensors and at their ends, backwards steps ignored */
    wd__thash *th = NULL;
    CHECK_RC(wd__thash_new(&th, refs, 3, 0, NULL, NULL), 0);
    CHECK_RC(wd__thash_to(th, 0, 1), 0);
    CHECK_RC(wd__thash_to(th, 0, 123457), 0);
    CHECK_RC(wd__thash_to(th, 0, 5), 0);
    CHECK_RC(wd__thash_to(th, 0, NA), 0);
    CHECK_RC(wd__thash_to(th, 1, 2), 0);
    CHECK_RC(wd__thash_final(th, steps), 0);
    wd__thash_free(th);
    CHECK(!memcmp(steps, want, sizeof steps));
    /* as float32: the bf16 tensor widened, the f32 one as it is */
    static float wide[NA];
    wd__to_f32(wide, (const uint8_t *)bfa, NA, WD_DT_BF16);
    CHECK_RC(wd__sha256_new(&h), 0);
    wd__thash_name(h, "a");
    wd__sha256_update(h, wide, sizeof wide);
    wd__thash_name(h, "b");
    wd__sha256_update(h, f32a, sizeof f32a);
    wd__thash_name(h, "c");
    wd__sha256_final(h, want);
    wd__sha256_free(h);
    CHECK_RC(wd__tref_hash(refs, 3, 1, f32, NULL, NULL), 0);
    CHECK(!memcmp(f32, want, sizeof f32));
}

/* f32(a) - f32(b) read through the reader in uneven ranges on slot w. */
static int pair_matches(const wd_tref *a, const wd_tref *b, int w)
{
    static float wa[NA], wb[NA], out[NA];
    wd__pair_delta *pd = NULL;
    if (wd__pair_delta_new(&pd, 3))
        return 0;
    wd__pd_side sa = {.ref = a}, sb = {.ref = b};
    wd__pair_delta_set(pd, &sa, &sb);
    int ok = 1;
    for (uint64_t at = 0, step = 1; at < NA && ok; at += step, step = step * 3 + 1) {
        size_t cnt = NA - at < step ? (size_t)(NA - at) : (size_t)step;
        ok = !wd__pair_delta_read_par(pd, w, at, cnt, out + at);
    }
    wd__pair_delta_free(pd);
    wd__to_f32(wa, (const uint8_t *)a->mem, NA, a->dtype);
    wd__to_f32(wb, (const uint8_t *)b->mem, NA, b->dtype);
    for (size_t i = 0; ok && i < NA; i++) {
        float d = wa[i] - wb[i];
        ok = !memcmp(&d, &out[i], 4);
    }
    return ok;
}

static void test_pair_delta(void)
{
    wd_named_tensor x[3] = {named("a", "BF16", NA, bfa, 2), named("b", "BF16", NA, bfb, 2),
                            named("h", "F16", NA, f16a, 2)};
    wd_tref r[3];
    for (int i = 0; i < 3; i++)
        CHECK_RC(wd__tref_mem(&r[i], &x[i], "test"), 0);
    CHECK(pair_matches(&r[0], &r[1], 0)); /* both bf16: the fast path */
    CHECK(pair_matches(&r[0], &r[2], 2)); /* bf16 - f16: the general one */
    CHECK(pair_matches(&r[2], &r[1], 1));
}

int main(void)
{
    fill();
    test_hash();
    test_pair_delta();
    return tu_finish("test_tensorhash");
}
