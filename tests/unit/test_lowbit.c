/*
 * test_lowbit.c - the lowbit codec (codec_lowbit.c): codes at the edges
 * (NaN, clipping, zigzag), the per-tensor rules, decoding of any sub-range
 * equal to decoding the whole, the recorded fidelity equal to what a decoder
 * gives, no clipping of an outlier, and the same codes, gains and fidelity
 * for any pool size, cached or streamed.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "codec_lowbit.h"
#include "half.h"
#include "pipeline.h"
#include "testutil.h"

typedef struct {
    uint16_t *codes;
    size_t n, cap;
} sink;

static int collect(void *ud, const uint16_t *codes, size_t count)
{
    sink *s = ud;
    if (s->n + count > s->cap)
        return -1;
    memcpy(s->codes + s->n, codes, count * sizeof *codes);
    s->n += count;
    return 0;
}

static int par_read(void *ud, int worker, uint64_t begin, size_t count, float *out)
{
    (void)worker;
    memcpy(out, (const float *)ud + begin, count * sizeof *out);
    return 0;
}

static void test_codes(void)
{
    CHECK(wd__lowbit_code(0.0f, 0.5f) == 0);
    CHECK(wd__lowbit_code(-0.0f, 0.5f) == 0);
    CHECK(wd__lowbit_code(0.5f, 0.5f) == 2);
    CHECK(wd__lowbit_code(-0.5f, 0.5f) == 1);
    CHECK(wd__lowbit_code(0.74f, 0.5f) == 2);
    CHECK(wd__lowbit_code(NAN, 0.5f) == 0);
    CHECK(wd__lowbit_code(1e30f, 0.5f) == 2 * WD_LOWBIT_QMAX);
    CHECK(wd__lowbit_code(-INFINITY, 0.5f) == 2 * WD_LOWBIT_QMAX - 1);
    /* any 16 bits decode to a finite value */
    float buf[2] = {0, 0};
    uint16_t codes[2] = {0xffff, 0xfffe}, gain = 0x3c00;
    wd__lowbit_apply(codes, &gain, 0, 2, 256, 1.0f, NULL, NULL, buf);
    CHECK(buf[0] == -32768.0f && buf[1] == 32767.0f);
}

static void test_rules(void)
{
    CHECK(wd__lowbit_class("model.embed_tokens.weight", 2) == WD_LOWBIT_SENSITIVE);
    CHECK(wd__lowbit_class("lm_head.weight", 2) == WD_LOWBIT_SENSITIVE);
    CHECK(wd__lowbit_class("model.layers.0.self_attn.q_proj.weight", 2) == WD_LOWBIT_PLAIN);
    CHECK(wd__lowbit_class("model.layers.0.self_attn.q_proj.bias", 1) == WD_LOWBIT_VECTOR);
    CHECK(wd__lowbit_class("scalar", 0) == WD_LOWBIT_VECTOR);
    uint64_t s1[2] = {1024, 256}, s2[2] = {4096, 64}, s3[2] = {3, 100000};
    CHECK(wd__lowbit_seg(2, s1, 1024 * 256) == 256);
    CHECK(wd__lowbit_seg(2, s2, 4096 * 64) == WD_LOWBIT_SEG_MIN);
    CHECK(wd__lowbit_seg(2, s3, 300000) == WD_LOWBIT_SEG_MAX);
    CHECK(wd__lowbit_seg(1, s1, 10) == WD_LOWBIT_SEG_MIN);
    /* finer for the sensitive classes, coarser as quality drops */
    CHECK(wd__lowbit_rel_step(2, WD_LOWBIT_SENSITIVE) < wd__lowbit_rel_step(2, WD_LOWBIT_PLAIN));
    CHECK(wd__lowbit_rel_step(2, WD_LOWBIT_VECTOR) < wd__lowbit_rel_step(2, WD_LOWBIT_SENSITIVE));
    CHECK(wd__lowbit_rel_step(1, WD_LOWBIT_PLAIN) > wd__lowbit_rel_step(4, WD_LOWBIT_PLAIN));
}

typedef struct {
    sink s;
    wd_lowbit_result r;
    wd_codec_fidelity fid;
} enc_out;

static int encode(enc_out *o, const float *d, uint64_t n, int threads, size_t cache, double rel, uint64_t seg,
                  int lowrank)
{
    memset(o, 0, sizeof *o);
    o->s.cap = (size_t)n;
    o->s.codes = malloc((size_t)n * sizeof *o->s.codes + 1);
    wd_pool *pool = NULL;
    if (threads)
        CHECK_RC(wd__pool_new(&pool, threads), 0);
    wd_delta_src src;
    wd__delta_src_mem(&src, d, n);
    src.pool = pool;
    src.read_par = par_read;
    src.cache_elems = cache;
    src.chunk = (size_t)1 << 16;
    wd_lowbit_plan p = {rel, seg, seg ? n / seg : 0, seg, lowrank};
    int rc = wd__lowbit_encode(&src, &p, collect, &o->s, &o->r, &o->fid);
    wd__pool_free(pool);
    return rc;
}

static void enc_free(enc_out *o)
{
    free(o->s.codes);
    wd__lowbit_result_free(&o->r);
}

static void decode_all(const enc_out *o, uint64_t n, uint64_t seg, float *dec, float *part, float *scratch)
{
    wd_lowbit_lr lr = {o->r.rank, seg, o->r.sv, {0}, o->r.vcodes, o->r.acodes};
    memcpy(lr.sa, o->r.sa, sizeof lr.sa);
    memset(dec, 0, n * sizeof *dec);
    memset(part, 0, n * sizeof *part);
    wd__lowbit_apply(o->s.codes, o->r.gains, 0, (size_t)n, seg, o->r.step, &lr, scratch, dec);
    /* ranges that cut segments anywhere decode the same */
    const uint64_t cuts[] = {0, 1, 699, 700, 65536, 131072, 131073, n};
    for (size_t c = 0; c + 1 < sizeof cuts / sizeof *cuts; c++) {
        uint64_t b = cuts[c], e = cuts[c + 1];
        lr.acodes = o->r.acodes ? o->r.acodes + (b / seg) * (uint64_t)o->r.rank : NULL;
        wd__lowbit_apply(o->s.codes + b, o->r.gains + b / seg, b, (size_t)(e - b), seg, o->r.step, &lr, scratch,
                         part + b);
    }
}

static void test_roundtrip(int lowrank)
{
    /* several codec units (chunks of 2^16), a ragged last segment */
    const uint64_t n = lowrank ? 300300 : 300001, seg = 700;
    float *d = malloc(n * sizeof *d), *dec = calloc(n, sizeof *dec), *part = calloc(n, sizeof *part);
    uint64_t x = 777;
    for (uint64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        /* a row-varying scale and a heavy tail */
        double u = ((double)(x >> 11) / 9007199254740992.0) * 2 - 1;
        d[i] = (float)(u * u * u * (1 + (double)((i / seg) % 7)) * 1e-3);
        /* and a rank-2 part */
        uint64_t row = i / seg, col = i % seg;
        d[i] += (float)(3e-3 * sin((double)row * 0.01) * cos((double)col * 0.05) + 1e-3 * cos((double)row * 0.3) * sin((double)col * 0.2 + 1));
    }
    d[12345] = 50.0f; /* 10^4 x the RMS: raises the step rather than clip */
    float *scratch = malloc((WD_LOWBIT_RANK_MAX + 1) * seg * sizeof *scratch);
    enc_out ref;
    CHECK_RC(encode(&ref, d, n, 0, 0, wd__lowbit_rel_step(2, WD_LOWBIT_PLAIN), seg, lowrank), 0);
    CHECK(ref.s.n == n && ref.r.n_gains == (n + seg - 1) / seg && ref.r.seg == seg);
    CHECK(lowrank ? ref.r.rank >= 1 && ref.r.rank <= WD_LOWBIT_RANK_MAX : ref.r.rank == 0);
    decode_all(&ref, n, seg, dec, part, scratch);
    CHECK(!memcmp(dec, part, n * sizeof *dec));
    double e2 = 0, d2 = 0, emax = 0;
    for (uint64_t i = 0; i < n; i++) {
        double e = (double)dec[i] - d[i];
        e2 += e * e;
        d2 += (double)d[i] * d[i];
        if (fabs(e) > emax)
            emax = fabs(e);
    }
    CHECK(fabs(sqrt(e2 / d2) - ref.fid.rel_error) < 1e-9);
    CHECK(emax == ref.fid.max_abs_error);
    CHECK(fabs(dec[12345] - 50.0f) < 2 * ref.r.step);
    CHECK(ref.fid.rel_error > 0 && ref.fid.rel_error < 0.2);
    /* any pool, cached or streamed: the same bytes and figures */
    const int threads[] = {1, 3};
    const size_t caches[] = {0, (size_t)n};
    for (int t = 0; t < 2; t++)
        for (int c = 0; c < 2; c++) {
            enc_out o;
            CHECK_RC(encode(&o, d, n, threads[t], caches[c], wd__lowbit_rel_step(2, WD_LOWBIT_PLAIN), seg, lowrank), 0);
            CHECK(o.s.n == n && !memcmp(o.s.codes, ref.s.codes, n * 2));
            CHECK(o.r.rank == ref.r.rank && o.r.sv == ref.r.sv && !memcmp(o.r.sa, ref.r.sa, sizeof o.r.sa));
            CHECK(!o.r.rank || (!memcmp(o.r.vcodes, ref.r.vcodes, (size_t)o.r.rank * seg * 2) &&
                                !memcmp(o.r.acodes, ref.r.acodes, (size_t)o.r.rank * (n / seg) * 2)));
            CHECK(!memcmp(o.r.gains, ref.r.gains, ref.r.n_gains * 2) && o.r.step == ref.r.step);
            CHECK(!memcmp(&o.fid.rel_error, &ref.fid.rel_error, sizeof(double)) &&
                  !memcmp(&o.fid.max_abs_error, &ref.fid.max_abs_error, sizeof(double)));
            enc_free(&o);
        }
    enc_free(&ref);
    /* an all-zero delta: zero codes, exact */
    memset(d, 0, 1000 * sizeof *d);
    CHECK_RC(encode(&ref, d, 1000, 0, 0, 1.0, 256, 0), 0);
    int zero = 1;
    for (size_t i = 0; i < 1000; i++)
        zero &= ref.s.codes[i] == 0;
    CHECK(zero && ref.fid.rel_error == 0 && ref.fid.max_abs_error == 0);
    enc_free(&ref);
    CHECK_RC(encode(&ref, d, 1000, 0, 0, 0.0, 256, 0), WD_EUSAGE);
    enc_free(&ref);
    free(scratch);
    free(d);
    free(dec);
    free(part);
}

int main(void)
{
    test_codes();
    test_rules();
    test_roundtrip(0);
    test_roundtrip(1);
    return tu_finish("test_lowbit");
}
