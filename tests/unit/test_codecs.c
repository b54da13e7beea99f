/*
 * test_codecs.c - the lossy codecs against deltatensors' own files: every
 * fixture .wdelta decodes onto its base to the expected float32 tensors bit
 * for bit, and encoding the fixture models again gives the file's arrays.
 * Also: float16 conversions, numpy's pairwise sum, streaming in chunks.
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dtype.h"
#include "error.h"
#include "half.h"
#include "pipeline.h"
#include "safetensors.h"
#include "testutil.h"
#include "wdelta.h"

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float ffrom(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- float16 -------------------------------------------------------------- */

/* The value of a finite float16, computed independently of half.c. */
static double f16_value(uint16_t h)
{
    int e = (h >> 10) & 0x1f;
    int m = h & 0x3ff;
    double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
    return (h & 0x8000) ? -v : v;
}

static void test_half(void)
{
    /* Every pattern widens exactly and narrows back to itself (NaN payloads,
     * signalling ones included; infinities; both zeros; subnormals). */
    int bad_rt = 0, bad_val = 0, bad_rt64 = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = wd__f16_to_f32((uint16_t)h);
        if (wd__f32_to_f16(f) != h)
            bad_rt++;
        /* (double) of a signalling NaN quiets it in hardware: skip those */
        int snan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) && !(h & 0x200);
        if (!snan && wd__f64_to_f16((double)f) != h)
            bad_rt64++;
        if ((h & 0x7c00) != 0x7c00 && (double)f != f16_value((uint16_t)h))
            bad_val++;
        if ((h & 0x7fff) == 0x7c00 && !isinf(f))
            bad_val++;
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) && !isnan(f))
            bad_val++;
    }
    CHECK(bad_rt == 0);
    CHECK(bad_rt64 == 0);
    CHECK(bad_val == 0);
    CHECK(fbits(wd__f16_to_f32(0x8000)) == 0x80000000u);

    /* Midpoints between neighbours round to the even one, and one float32 /
     * float64 step either side goes to the nearer one. */
    int bad_mid = 0;
    for (uint32_t h = 0; h < 0x7bff; h++) {
        double lo = f16_value((uint16_t)h), hi = f16_value((uint16_t)(h + 1));
        double mid = (lo + hi) / 2; /* 12 significant bits: exact in float32 */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        float m32 = (float)mid;
        if ((double)m32 != mid)
            bad_mid++;
        for (int s = 0; s < 2; s++) {
            uint16_t sg = s ? 0x8000 : 0;
            float m = s ? -m32 : m32;
            double md = s ? -mid : mid;
            if (wd__f32_to_f16(m) != (sg | even) || wd__f64_to_f16(md) != (sg | even))
                bad_mid++;
            if (wd__f32_to_f16(nextafterf(m, s ? -INFINITY : INFINITY)) != (sg | (h + 1)) ||
                wd__f32_to_f16(nextafterf(m, 0)) != (sg | h))
                bad_mid++;
            if (wd__f64_to_f16(nextafter(md, s ? -INFINITY : INFINITY)) != (sg | (h + 1)) ||
                wd__f64_to_f16(nextafter(md, 0)) != (sg | h))
                bad_mid++;
        }
    }
    CHECK(bad_mid == 0);

    /* Overflow: 65519.99 -> 65504, 65520 (the midpoint past the largest
     * finite value) -> inf; underflow: 2^-25 ties to 0, just above -> 2^-24. */
    CHECK(wd__f32_to_f16(65504.0f) == 0x7bff);
    CHECK(wd__f32_to_f16(nextafterf(65520.0f, 0)) == 0x7bff);
    CHECK(wd__f32_to_f16(65520.0f) == 0x7c00);
    CHECK(wd__f32_to_f16(-1e30f) == 0xfc00);
    CHECK(wd__f64_to_f16(65520.0) == 0x7c00);
    CHECK(wd__f64_to_f16(nextafter(65520.0, 0)) == 0x7bff);
    CHECK(wd__f64_to_f16(1e300) == 0x7c00);
    CHECK(wd__f32_to_f16(ldexpf(1, -25)) == 0x0000);
    CHECK(wd__f32_to_f16(nextafterf(ldexpf(1, -25), 1)) == 0x0001);
    CHECK(wd__f32_to_f16(-ldexpf(1, -26)) == 0x8000);
    CHECK(wd__f32_to_f16(ldexpf(3, -25)) == 0x0002); /* 1.5 x 2^-24: tie -> even 2 */
    CHECK(wd__f32_to_f16(ldexpf(5, -25)) == 0x0002); /* 2.5 x 2^-24: tie -> even 2 */
    CHECK(wd__f32_to_f16(ldexpf(3, -26)) == 0x0001); /* 0.75 x 2^-24 -> 1 */
    CHECK(wd__f32_to_f16(ffrom(0x00000001u)) == 0x0000); /* float32 subnormal */
    CHECK(wd__f64_to_f16(4.9e-324) == 0x0000);
    CHECK(wd__f64_to_f16(-0.0) == 0x8000);
    CHECK(wd__f32_to_f16(ldexpf(1, -14)) == 0x0400); /* smallest normal */
    CHECK(wd__f32_to_f16(nextafterf(ldexpf(1, -14), 0)) == 0x0400); /* rounds up into it */

    /* NaN: sign and top payload bits kept, never turned into inf (numpy). */
    CHECK(wd__f32_to_f16(ffrom(0x7fc00000u)) == 0x7e00);
    CHECK(wd__f32_to_f16(ffrom(0xffc00000u)) == 0xfe00);
    CHECK(wd__f32_to_f16(ffrom(0x7f800001u)) == 0x7c01);
    CHECK(wd__f32_to_f16(ffrom(0x7f802000u)) == 0x7c01);
    CHECK(wd__f32_to_f16(INFINITY) == 0x7c00);
    {
        uint64_t u = UINT64_C(0x7ff8000000000000);
        double d;
        memcpy(&d, &u, sizeof d);
        CHECK(wd__f64_to_f16(d) == 0x7e00);
        CHECK(wd__f64_to_f16(-d) == 0xfe00);
        u = UINT64_C(0x7ff0000000000001);
        memcpy(&d, &u, sizeof d);
        CHECK(wd__f64_to_f16(d) == 0x7c01);
    }

    /* Double rounding: 1 + 2^-11 + 2^-40 lies just above the midpoint of
     * 1.0 (0x3c00) and 1 + 2^-10 (0x3c01). float32 cannot hold the 2^-40, so
     * going through float32 lands on the midpoint and rounds to even, 0x3c00;
     * rounding once gives 0x3c01. */
    {
        double x = 1.0 + ldexp(1, -11) + ldexp(1, -40);
        CHECK((double)(float)x == 1.0 + ldexp(1, -11));
        CHECK(wd__f32_to_f16((float)x) == 0x3c00);
        CHECK(wd__f64_to_f16(x) == 0x3c01);
        /* the same just below a midpoint whose even side is above */
        double y = 1.0 + 3 * ldexp(1, -11) - ldexp(1, -40); /* between 0x3c01 and 0x3c02 */
        CHECK(wd__f32_to_f16((float)y) == 0x3c02);
        CHECK(wd__f64_to_f16(y) == 0x3c01);
        /* a subnormal result: 2^-24 * (2.5 + 2^-30) */
        double z = ldexp(2.5 + ldexp(1, -30), -24);
        CHECK(wd__f32_to_f16((float)z) == 0x0002);
        CHECK(wd__f64_to_f16(z) == 0x0003);
        /* the int4 scale of a range of 0.0087890625 (0.2.0/0.3.0 compute it in
         * float64 and round once): 0.0087890625 / 15 -> 0x10cd (0.000586) */
        CHECK(wd__f64_to_f16(0.0087890625 / 15.0) == 0x10cd);
    }
}

/* ---- numpy's pairwise sum --------------------------------------------------- */

static void test_pairwise(void)
{
    /* Hand-computed: a[0] = 2^24 and ones after it. In float32 2^24 + 1 is a
     * tie that rounds back to 2^24 (even), so a plain loop never moves. */
    float *a = malloc(20000 * sizeof *a);
    for (int i = 0; i < 20000; i++)
        a[i] = 1.0f;
    a[0] = 16777216.0f;

    /* n = 5 < 8: a plain loop, every +1 lost. */
    CHECK(wd__pairwise_sum_f32(a, 5) == 16777216.0f);
    /* n = 16: eight accumulators; r0 = 2^24 + a[8] = 2^24 (lost), r1..r7 =
     * 2 each; ((2^24 + 2) + (2 + 2)) + ((2 + 2) + (2 + 2)) = 2^24 + 14. */
    CHECK(wd__pairwise_sum_f32(a, 16) == 16777230.0f);
    /* n = 130 > 128: halves of 64 (65 rounded down to a multiple of 8) and 66.
     * Left: r0 loses its 7 ones, r1..r7 hold 8 each: 2^24 + 56. Right: 66.
     * Total 2^24 + 122 (even, exact). */
    CHECK(wd__pairwise_sum_f32(a, 130) == 16777338.0f);
    CHECK(wd__numpy_sum_f32(a, 130) == 16777338.0f);
    /* n = 20000 > 8192: numpy sums blocks of 8192, 8192 and 3616 and adds
     * them to an accumulator. Block 1: its first 128-leaf gives 2^24 + 112
     * (r0 loses 15 ones, r1..r7 hold 16), the other 8064 ones add exactly:
     * 2^24 + 8176; then + 8192 + 3616 = 2^24 + 19984 = 16797200. (One
     * pairwise sum over all 20000 would give 16797206: the blocks matter.) */
    CHECK(wd__numpy_sum_f32(a, 20000) == 16797200.0f);
    CHECK(wd__pairwise_sum_f32(a, 20000) == 16797206.0f);
    /* np.mean(a) = f32(16797200 / 20000) */
    CHECK(wd__numpy_sum_f32(a, 20000) / 20000.0f == 839.8599853515625f);
    /* n = 8200: 2^24 + 8176 + 8 */
    CHECK(wd__numpy_sum_f32(a, 8200) == 16785400.0f);
    CHECK(wd__numpy_sum_f32(a, 0) == 0.0f);
    free(a);

    /* quantized's scale uses exactly this: one row of 20000 |d|, mean
     * 839.86 -> float16 840.0 */
    {
        float *d = malloc(20000 * sizeof *d);
        for (int i = 0; i < 20000; i++)
            d[i] = (i & 1) ? -1.0f : 1.0f; /* |d| as in the case above */
        d[0] = -16777216.0f;
        wd_delta_src src;
        wd__delta_src_mem(&src, d, 20000);
        wd_quant_delta q;
        CHECK_RC(wd__quant_encode(&q, &src, 20000, NULL), 0);
        CHECK(q.scales && q.scales[0] == wd__f32_to_f16(839.8599853515625f));
        /* d = -2^24, -1, +1, -1, +1, ...: bits 0 0 1 0 1 0 1 0 */
        CHECK(q.packed_signs && q.packed_signs[0] == 0x2a);
        wd__quant_clear(&q);
        free(d);
    }
}

/* ---- Model folders and files ------------------------------------------------ */

typedef struct {
    wd_st_file *files[8];
    int n_files;
} model;

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* path: a folder of *.safetensors, or one .safetensors file. */
static int model_open(model *m, const char *path)
{
    memset(m, 0, sizeof *m);
    char buf[1024];
    if (ends_with(path, ".safetensors"))
        return wd__st_open(&m->files[m->n_files++], path);
    DIR *dir = opendir(path);
    if (!dir)
        return wd__error(WD_ENOTFOUND, "cannot open %s", path);
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(dir)) && !rc) {
        if (!ends_with(de->d_name, ".safetensors") || m->n_files == 8)
            continue;
        snprintf(buf, sizeof buf, "%s/%s", path, de->d_name);
        rc = wd__st_open(&m->files[m->n_files], buf);
        if (!rc)
            m->n_files++;
    }
    closedir(dir);
    return rc;
}

static void model_close(model *m)
{
    for (int i = 0; i < m->n_files; i++)
        wd__st_close(m->files[i]);
    m->n_files = 0;
}

static int model_find(const model *m, const char *name, const wd_st_file **f,
                      const wd_st_tensor **t)
{
    for (int i = 0; i < m->n_files; i++) {
        long j = wd__st_find(m->files[i], name);
        if (j >= 0) {
            *f = m->files[i];
            *t = &m->files[i]->tensors[j];
            return 0;
        }
    }
    return wd__error(WD_ENOTFOUND, "tensor %s not found", name);
}

/* Elements [begin, begin + count) of t as float32 (bf16/f16 widen exactly,
 * integers convert). */
static int read_f32(const wd_st_file *f, const wd_st_tensor *t, uint64_t begin, size_t count,
                    float *out)
{
    size_t es = wd__dtype_size(t->dtype);
    unsigned char *raw = malloc(count * es + 1);
    if (!raw)
        return WD_NOMEM();
    int rc = wd__st_read(f, t, begin * es, raw, count * es);
    for (size_t i = 0; !rc && i < count; i++) {
        const unsigned char *p = raw + i * es;
        switch (t->dtype) {
        case WD_DT_F32: memcpy(&out[i], p, 4); break;
        case WD_DT_BF16: {
            uint16_t h;
            memcpy(&h, p, 2);
            out[i] = wd__bf16_to_f32(h);
            break;
        }
        case WD_DT_F16: {
            uint16_t h;
            memcpy(&h, p, 2);
            out[i] = wd__f16_to_f32(h);
            break;
        }
        case WD_DT_I64: {
            int64_t v;
            memcpy(&v, p, 8);
            out[i] = (float)v;
            break;
        }
        case WD_DT_I32: {
            int32_t v;
            memcpy(&v, p, 4);
            out[i] = (float)v;
            break;
        }
        default: rc = wd__error(WD_EUSAGE, "unexpected dtype in a fixture"); break;
        }
    }
    free(raw);
    return rc;
}

static float *read_all_f32(const model *m, const char *name, uint64_t *n)
{
    const wd_st_file *f;
    const wd_st_tensor *t;
    if (model_find(m, name, &f, &t))
        return NULL;
    float *out = malloc(t->nelem * sizeof *out + 1);
    if (out && read_f32(f, t, 0, (size_t)t->nelem, out)) {
        free(out);
        return NULL;
    }
    *n = t->nelem;
    return out;
}

/* A delta source that streams f32(ft) - f32(base) from two safetensors
 * tensors, the way a caller feeds the encoders from files. */
typedef struct {
    const wd_st_file *ff, *bf;
    const wd_st_tensor *ft, *bt;
    float *tmp;
    size_t tmp_cap;
    uint64_t reads, max_count;
} file_delta;

static int file_delta_read(void *ud, uint64_t begin, size_t count, float *out)
{
    file_delta *fd = ud;
    if (count > fd->tmp_cap) {
        free(fd->tmp);
        fd->tmp = malloc(count * sizeof *fd->tmp);
        fd->tmp_cap = fd->tmp ? count : 0;
        if (!fd->tmp)
            return WD_NOMEM();
    }
    fd->reads++;
    if (count > fd->max_count)
        fd->max_count = count;
    int rc = read_f32(fd->ff, fd->ft, begin, count, out);
    if (!rc)
        rc = read_f32(fd->bf, fd->bt, begin, count, fd->tmp);
    for (size_t i = 0; !rc && i < count; i++)
        out[i] = out[i] - fd->tmp[i];
    return rc;
}

/* ---- Reading a .wdelta tensor into codec structs ---------------------------- */

typedef struct {
    void *arr[WD__WF__COUNT];
    wd_sparse_delta sp;
    wd_quant_delta qu;
    wd_int4_delta i4;
} file_arrays;

static void file_arrays_free(file_arrays *a)
{
    for (int i = 0; i < WD__WF__COUNT; i++)
        free(a->arr[i]);
    memset(a, 0, sizeof *a);
}

static int load_arrays(file_arrays *a, const wd__wdelta *d, const wd__wdelta_tensor *t)
{
    memset(a, 0, sizeof *a);
    const int *fields;
    size_t nf = wd__wdelta_fields_of(t->strategy, &fields);
    for (size_t i = 0; i < nf; i++) {
        const wd__wdelta_field *f = wd__wdelta_field_of(t, fields[i]);
        if (!f)
            return wd__error(WD_EBADINPUT, "field missing");
        int rc = wd__wdelta_read_array(d, f, (size_t)1 << 30, &a->arr[fields[i]]);
        if (rc)
            return rc;
    }
    switch (t->strategy) {
    case WD__WS_SPARSE:
        a->sp.n = t->n;
        a->sp.k = wd__wdelta_field_of(t, WD__WF_INDICES)->count;
        a->sp.indices = a->arr[WD__WF_INDICES];
        a->sp.values = a->arr[WD__WF_VALUES];
        return wd__sparse_check(&a->sp);
    case WD__WS_QUANTIZED:
        a->qu.n = t->n;
        a->qu.n_cols = t->n_cols;
        a->qu.scales = a->arr[WD__WF_SCALES];
        a->qu.packed_signs = a->arr[WD__WF_PACKED_SIGNS];
        return wd__quant_check(&a->qu);
    default:
        a->i4.layout = t->int4_layout;
        a->i4.n = t->n;
        a->i4.n_outliers = t->n_outliers;
        a->i4.idx_bytes =
            (unsigned)wd__dtype_size(wd__wdelta_field_of(t, WD__WF_OUTLIER_IDX)->dtype);
        a->i4.outlier_idx = a->arr[WD__WF_OUTLIER_IDX];
        a->i4.outlier_vals = a->arr[WD__WF_OUTLIER_VALS];
        a->i4.scale = ((const uint16_t *)a->arr[WD__WF_SCALE])[0];
        a->i4.zero_point = ((const uint16_t *)a->arr[WD__WF_ZERO_POINT])[0];
        a->i4.packed = a->arr[WD__WF_PACKED];
        return wd__int4_check(&a->i4);
    }
}

static int apply_any(int strategy, const file_arrays *a, uint64_t begin, float *buf, size_t count)
{
    switch (strategy) {
    case WD__WS_SPARSE: return wd__sparse_apply(&a->sp, begin, buf, count);
    case WD__WS_QUANTIZED: return wd__quant_apply(&a->qu, begin, buf, count);
    default: return wd__int4_apply(&a->i4, begin, buf, count);
    }
}

/* ---- The fixtures ----------------------------------------------------------- */

typedef struct {
    const char *wdelta;   /* under wdelta/ */
    const char *base;     /* folder or file under the fixtures */
    const char *ft;       /* the fine-tune it was made from */
    const char *expected; /* under expected/ */
} fixture;

static const fixture fixtures[] = {
    {"v2/sparse", "models/base-bf16", "models/ft-bf16", "sparse-v2"},
    {"v2/sparse-s05", "models/base-bf16", "models/ft-bf16", "sparse-s05-v2"},
    {"v2/quantized", "models/base-bf16", "models/ft-bf16", "quantized-v2"},
    {"v2/int4", "models/base-bf16", "models/ft-bf16", "int4-v2"},
    {"v2/int4-o05", "models/base-bf16", "models/ft-bf16", "int4-o05-v2"},
    {"v2/int4-f32-mem", "models/base-f32", "models/ft-f32", "int4-f32-mem-v2"},
    {"v2/chain-1", "models/base-bf16", "models/ft-bf16", "chain-1-v2"},
    /* link 2 applies to the float32 model after link 1 */
    {"v2/chain-2", "expected/chain-1-v2.f32.safetensors", "models/ft2-bf16", "chain-2-v2"},
    {"v1/sparse", "models/base-bf16", "models/ft-bf16", "sparse-v1"},
    {"v1/quantized", "models/base-bf16", "models/ft-bf16", "quantized-v1"},
    {"v1/int4", "models/base-bf16", "models/ft-bf16", "int4-v1"},
    {"v1/int4-f32-mem", "models/base-f32", "models/ft-f32", "int4-f32-mem-v1"},
};

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u16(const void *a, const void *b)
{
    uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
    return x < y ? -1 : x > y;
}

/* 1 if the k-th and (k+1)-th largest |d| are equal (deltatensors may then
 * keep other indices); *cut gets the k-th largest key. */
static int tie_at_cut(const float *d, uint64_t n, uint64_t k, uint32_t *cut)
{
    if (k == 0 || k >= n) {
        *cut = 0;
        return 0;
    }
    uint32_t *keys = malloc(n * sizeof *keys);
    for (uint64_t i = 0; i < n; i++)
        keys[i] = wd__abs_key(d[i]);
    qsort(keys, n, sizeof *keys, cmp_u32);
    *cut = keys[n - k];
    int tie = keys[n - k] == keys[n - k - 1];
    free(keys);
    return tie;
}

/* Index sets a (mine) and b (the file's), both sorted: equal, or different
 * only at positions whose |d| is the cut key. */
static int differ_only_at_cut(const void *a, unsigned ab, const void *b, unsigned bb,
                              uint64_t k, const float *d, uint32_t cut)
{
    uint64_t i = 0, j = 0;
    while (i < k || j < k) {
        int64_t x = i < k ? wd__idx_at(a, ab, i) : INT64_MAX;
        int64_t y = j < k ? wd__idx_at(b, bb, j) : INT64_MAX;
        if (x == y) {
            i++, j++;
            continue;
        }
        int64_t odd = x < y ? x : y;
        if (wd__abs_key(d[odd]) != cut)
            return 0;
        if (x < y)
            i++;
        else
            j++;
    }
    return 1;
}

static int same_idx(const void *a, unsigned ab, const void *b, unsigned bb, uint64_t k)
{
    for (uint64_t i = 0; i < k; i++)
        if (wd__idx_at(a, ab, i) != wd__idx_at(b, bb, i))
            return 0;
    return 1;
}

/* Fidelity recomputed by brute force: decode onto zeros gives d'. */
static void brute_fidelity(int strategy, const file_arrays *mine, const float *d, uint64_t n,
                           double *rel, double *max_abs)
{
    float *dp = calloc(n + 1, sizeof *dp);
    apply_any(strategy, mine, 0, dp, (size_t)n);
    double e2 = 0, n2 = 0, mx = 0;
    for (uint64_t i = 0; i < n; i++) {
        double e = fabs((double)dp[i] - d[i]);
        e2 += e * e;
        n2 += (double)d[i] * d[i];
        if (e > mx)
            mx = e;
    }
    *rel = n2 > 0 ? sqrt(e2) / sqrt(n2) : (e2 == 0 ? 0 : INFINITY);
    *max_abs = mx;
    free(dp);
}

static int close_enough(double a, double b)
{
    return fabs(a - b) <= 1e-9 + 1e-7 * fabs(b);
}

/* (a) decode onto the base, compare with expected; (b) encode from the
 * models, compare with the file. */
static void test_fixture(const fixture *fx)
{
    char path[1024];
    const char *root = tu_fixtures();
    wd__wdelta *d = NULL;
    snprintf(path, sizeof path, "%s/wdelta/%s.wdelta", root, fx->wdelta);
    CHECK_RC(wd__wdelta_open(&d, path), 0);
    if (!d)
        return;
    int version = wd__wdelta_version(d);
    model base, ft, exp;
    snprintf(path, sizeof path, "%s/%s", root, fx->base);
    CHECK_RC(model_open(&base, path), 0);
    snprintf(path, sizeof path, "%s/%s", root, fx->ft);
    CHECK_RC(model_open(&ft, path), 0);
    snprintf(path, sizeof path, "%s/expected/%s.f32.safetensors", root, fx->expected);
    CHECK_RC(model_open(&exp, path), 0);
    CHECK(exp.n_files == 1 && exp.files[0]->n_tensors == wd__wdelta_count(d));

    uint64_t dec_bad = 0, enc_bad = 0, ties = 0, fid_bad = 0;
    for (size_t ti = 0; ti < wd__wdelta_count(d); ti++) {
        const wd__wdelta_tensor *t = wd__wdelta_tensor_at(d, ti);
        const char *name = t->name;
        file_arrays fa;
        int rc = load_arrays(&fa, d, t);
        CHECK_RC(rc, 0);
        uint64_t n = 0, ne = 0, nft = 0;
        float *b = read_all_f32(&base, name, &n);
        float *e = read_all_f32(&exp, name, &ne);
        float *f = read_all_f32(&ft, name, &nft);
        CHECK(b && e && f && n == t->n && ne == n && nft == n);
        if (rc || !b || !e || !f || n != t->n || ne != n || nft != n) {
            fprintf(stderr, "  %s: %s: cannot set up (%s)\n", fx->wdelta, name, wd_errmsg());
            file_arrays_free(&fa);
            free(b), free(e), free(f);
            dec_bad++;
            continue;
        }

        /* (a) decode in three pieces, as a streaming reconstruction would */
        float *out = malloc(n * sizeof *out + 1);
        memcpy(out, b, n * sizeof *out);
        uint64_t cuts[4] = {0, n / 3, 2 * n / 3 + 1 > n ? n : 2 * n / 3 + 1, n};
        for (int p = 0; p < 3; p++)
            CHECK_RC(apply_any(t->strategy, &fa, cuts[p], out + cuts[p],
                               (size_t)(cuts[p + 1] - cuts[p])), 0);
        uint64_t bad = 0;
        for (uint64_t i = 0; i < n; i++) {
            if (fbits(out[i]) != fbits(e[i])) {
                if (!bad)
                    fprintf(stderr, "  %s: %s[%llu] decodes to %08x, expected %08x\n",
                            fx->wdelta, name, (unsigned long long)i, fbits(out[i]),
                            fbits(e[i]));
                bad++;
            }
        }
        dec_bad += bad;

        /* (b) encode f32(ft) - f32(base), streamed from the files in chunks
         * of the minimum size so the bigger tensors take several reads */
        float *delta = malloc(n * sizeof *delta + 1);
        for (uint64_t i = 0; i < n; i++)
            delta[i] = f[i] - b[i];
        file_delta fd = {0};
        CHECK_RC(model_find(&ft, name, &fd.ff, &fd.ft), 0);
        CHECK_RC(model_find(&base, name, &fd.bf, &fd.bt), 0);
        wd_delta_src src = {.n = n, .read = file_delta_read, .ud = &fd, .chunk = 8192};
        wd_codec_fidelity fid = {0};
        file_arrays mine;
        memset(&mine, 0, sizeof mine);
        int ok = 1;
        if (t->strategy == WD__WS_SPARSE) {
            CHECK_RC(rc = wd__sparse_encode(&mine.sp, &src, t->sparsity, &fid), 0);
            ok = !rc && mine.sp.k == fa.sp.k;
            if (ok && same_idx(mine.sp.indices, 8, fa.sp.indices, 8, fa.sp.k)) {
                ok = memcmp(mine.sp.values, fa.sp.values, fa.sp.k * 4) == 0;
            } else if (ok) {
                uint32_t cut;
                ties++;
                ok = tie_at_cut(delta, n, fa.sp.k, &cut) &&
                     differ_only_at_cut(mine.sp.indices, 8, fa.sp.indices, 8, fa.sp.k, delta,
                                        cut);
                /* decoded values as a multiset */
                uint32_t *v1 = malloc(fa.sp.k * 4 + 4), *v2 = malloc(fa.sp.k * 4 + 4);
                memcpy(v1, mine.sp.values, fa.sp.k * 4);
                memcpy(v2, fa.sp.values, fa.sp.k * 4);
                qsort(v1, fa.sp.k, 4, cmp_u32);
                qsort(v2, fa.sp.k, 4, cmp_u32);
                ok = ok && memcmp(v1, v2, fa.sp.k * 4) == 0;
                free(v1), free(v2);
            }
        } else if (t->strategy == WD__WS_QUANTIZED) {
            CHECK(t->n_cols == fa.qu.n_cols);
            uint64_t rows, cols;
            wd__quant_layout(t->ndim, t->shape, &rows, &cols);
            CHECK(cols == t->n_cols);
            CHECK_RC(rc = wd__quant_encode(&mine.qu, &src, cols, &fid), 0);
            ok = !rc && memcmp(mine.qu.scales, fa.qu.scales, rows * 2) == 0 &&
                 memcmp(mine.qu.packed_signs, fa.qu.packed_signs, (n + 7) / 8) == 0;
        } else {
            CHECK(wd__int4_n_outliers(n, t->outlier_fraction) == t->n_outliers);
            CHECK_RC(rc = wd__int4_encode(&mine.i4, &src, t->outlier_fraction, t->int4_layout,
                                          &fid),
                     0);
            const wd_int4_delta *m4 = &mine.i4, *f4 = &fa.i4;
            uint64_t k = f4->n_outliers;
            ok = !rc && m4->n_outliers == k && m4->idx_bytes == f4->idx_bytes &&
                 m4->scale == f4->scale && m4->zero_point == f4->zero_point;
            if (ok && same_idx(m4->outlier_idx, m4->idx_bytes, f4->outlier_idx, f4->idx_bytes, k)) {
                ok = memcmp(m4->outlier_vals, f4->outlier_vals, k * 2) == 0 &&
                     memcmp(m4->packed, f4->packed,
                            wd__int4_packed_len(f4->layout, n, k)) == 0;
            } else if (ok) {
                uint32_t cut;
                ties++;
                ok = tie_at_cut(delta, n, k, &cut) &&
                     differ_only_at_cut(m4->outlier_idx, m4->idx_bytes, f4->outlier_idx,
                                        f4->idx_bytes, k, delta, cut);
                uint16_t *v1 = malloc(k * 2 + 2), *v2 = malloc(k * 2 + 2);
                memcpy(v1, m4->outlier_vals, k * 2);
                memcpy(v2, f4->outlier_vals, k * 2);
                qsort(v1, k, 2, cmp_u16);
                qsort(v2, k, 2, cmp_u16);
                ok = ok && memcmp(v1, v2, k * 2) == 0;
                free(v1), free(v2);
                /* and both decode to the same tensor */
                float *o1 = malloc(n * 4 + 4), *o2 = malloc(n * 4 + 4);
                memcpy(o1, b, n * 4);
                memcpy(o2, b, n * 4);
                wd__int4_apply(m4, 0, o1, (size_t)n);
                wd__int4_apply(f4, 0, o2, (size_t)n);
                ok = ok && memcmp(o1, o2, n * 4) == 0;
                free(o1), free(o2);
            }
        }
        if (!ok) {
            fprintf(stderr, "  %s: %s: encoding differs from the file (%s)\n", fx->wdelta,
                    name, wd_errmsg());
            enc_bad++;
        }
        if (!rc) {
            double rel, mx;
            brute_fidelity(t->strategy, &mine, delta, n, &rel, &mx);
            if (!close_enough(fid.rel_error, rel) || !close_enough(fid.max_abs_error, mx)) {
                fprintf(stderr, "  %s: %s: fidelity %g/%g, brute force %g/%g\n", fx->wdelta,
                        name, fid.rel_error, fid.max_abs_error, rel, mx);
                fid_bad++;
            }
        }
        CHECK(fd.max_count <= 8192);
        wd__sparse_clear(&mine.sp);
        wd__quant_clear(&mine.qu);
        wd__int4_clear(&mine.i4);
        free(fd.tmp);
        free(delta);
        free(out);
        free(b), free(e), free(f);
        file_arrays_free(&fa);
    }
    if (dec_bad || enc_bad || fid_bad)
        fprintf(stderr, "%s (v%d): %llu elements decode wrong, %llu tensors encode "
                        "differently, %llu fidelity mismatches\n",
                fx->wdelta, version, (unsigned long long)dec_bad, (unsigned long long)enc_bad,
                (unsigned long long)fid_bad);
    CHECK(dec_bad == 0);
    CHECK(enc_bad == 0);
    CHECK(fid_bad == 0);
    /* ties at the cut only in the deliberately degenerate tensors (all-zero
     * delta, constant delta, the I64 one) */
    CHECK(ties <= 3);
    model_close(&base);
    model_close(&ft);
    model_close(&exp);
    wd__wdelta_close(d);
}

/* Cases the fixtures cannot tell apart, with the outputs of deltatensors'
 * own compress functions (0.3.0 / 0.2.0) run under numpy 1.24.2. */
static void test_numpy_vectors(void)
{
    wd_delta_src src;

    /* quantized: np.mean(float32) is the blocked pairwise sum over the
     * float32 count. |d| = 2^24 then 10276 ones: numpy sums 16787476 (blocks
     * of 8192 and 2085) where the exact sum is 16787492, and the mean then
     * lands on the other side of a float16 midpoint: 0x6661, where a float64
     * mean gives 0x6662 (and one pairwise sum over all 10277, 16787484, too). */
    {
        size_t n = 10277;
        float *d = malloc(n * sizeof *d);
        for (size_t i = 0; i < n; i++)
            d[i] = 1.0f;
        d[0] = -16777216.0f;
        wd__delta_src_mem(&src, d, n);
        wd_quant_delta q;
        CHECK_RC(wd__quant_encode(&q, &src, n, NULL), 0);
        CHECK(q.scales && q.scales[0] == 0x6661);
        wd__quant_clear(&q);
        free(d);
    }

    /* int4 scale: q_max - q_min is a float64 difference that float32 cannot
     * hold (15.00732421875 + 2^-30); / 15 lies just above the float16
     * midpoint 1 + 2^-11, so scale = 0x3c01 (through float32 it would tie
     * to even 0x3c00). Codes of (q + 0.5) x scale: ties, to even (v2); v1
     * quantizes by (x - q_min) / f32(range) * 15. */
    {
        float d[18];
        d[0] = -0x1p-30f;
        d[1] = 15.00732421875f;
        for (int q = 0; q < 15; q++)
            d[2 + q] = ((float)q + 0.5f) * (1025.0f / 1024.0f);
        d[17] = 100.0f;
        static const uint8_t v2_packed[9] = {0x0f, 0x02, 0x24, 0x46, 0x68, 0x8a, 0xac, 0xce, 0xef};
        static const uint8_t v1_packed[9] = {0x0f, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0};
        wd__delta_src_mem(&src, d, 18);
        for (int layout = 1; layout <= 2; layout++) {
            wd_int4_delta e;
            CHECK_RC(wd__int4_encode(&e, &src, 0.06, layout, NULL), 0);
            CHECK(e.n_outliers == 1 && wd__idx_at(e.outlier_idx, e.idx_bytes, 0) == 17);
            CHECK(e.outlier_vals && e.outlier_vals[0] == 0x5640);
            CHECK(e.scale == 0x3c01 && e.zero_point == 0x8000);
            CHECK(e.packed && memcmp(e.packed, layout == 2 ? v2_packed : v1_packed, 9) == 0);
            wd__int4_clear(&e);
        }
    }

    /* int4 v2 codes divide by the scale: scale 0x3d5a (1.337890625) and
     * d = 1.5 x scale give exactly 1.5 -> 2; multiplying by a float32
     * reciprocal would give 1. */
    {
        float d[4] = {0.0f, 20.068359375f, 2.0068359375f, 100.0f};
        wd__delta_src_mem(&src, d, 4);
        wd_int4_delta e;
        CHECK_RC(wd__int4_encode(&e, &src, 0.25, 2, NULL), 0);
        CHECK(e.scale == 0x3d5a && e.zero_point == 0);
        CHECK(e.packed && e.packed[0] == 0x0f && e.packed[1] == 0x2f);
        wd__int4_clear(&e);
    }
}

static void test_counts(void)
{
    /* Python's int(n * (1.0 - sparsity)) and int(n * outlier_fraction) */
    CHECK(wd__sparse_k(27000, 0.9) == 2699);
    CHECK(wd__sparse_k(960, 0.9) == 95);
    CHECK(wd__sparse_k(153, 0.9) == 15);
    CHECK(wd__sparse_k(40, 0.5) == 20);
    CHECK(wd__sparse_k(1, 0.9) == 1);
    CHECK(wd__sparse_k(0, 0.9) == 0);
    CHECK(wd__sparse_k(10, 0.0) == 10);
    CHECK(wd__int4_n_outliers(27000, 0.01) == 270);
    CHECK(wd__int4_n_outliers(960, 0.03) == 28);
    CHECK(wd__int4_n_outliers(153, 0.01) == 1);
    CHECK(wd__int4_n_outliers(1, 0.01) == 1);
    CHECK(wd__int4_n_outliers(0, 0.01) == 0);
    CHECK(wd__int4_n_outliers(5, 3.0) == 5);
    CHECK(wd__int4_idx_bytes(2, 100) == 4 && wd__int4_idx_bytes(1, 100) == 8);
    CHECK(wd__int4_idx_bytes(2, (uint64_t)1 << 31) == 8);
    CHECK(wd__int4_packed_len(2, 41, 1) == 21 && wd__int4_packed_len(1, 41, 1) == 20);
    uint64_t rows, cols, shp[3] = {4, 5, 6};
    wd__quant_layout(3, shp, &rows, &cols);
    CHECK(rows == 4 && cols == 30);
    wd__quant_layout(1, shp, &rows, &cols);
    CHECK(rows == 1 && cols == 4);
    wd__quant_layout(0, shp, &rows, &cols);
    CHECK(rows == 1 && cols == 1);
}

/* ---- Streaming on a tensor larger than a chunk ------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
    return tu_splitmix(&rng_state);
}

static float rnd_delta(void)
{
    return tu_bf16_delta(&rng_state);
}

typedef struct {
    const float *d;
    uint64_t reads, max_count;
    int fail_at; /* fail the read with this number (1-based), 0 = never */
} counting_src;

static int counting_read(void *ud, uint64_t begin, size_t count, float *out)
{
    counting_src *c = ud;
    c->reads++;
    if (count > c->max_count)
        c->max_count = count;
    if (c->fail_at && c->reads == (uint64_t)c->fail_at)
        return wd__error(WD_EIO, "injected read failure");
    memcpy(out, c->d + begin, count * sizeof *out);
    return 0;
}

static int same_sparse(const wd_sparse_delta *a, const wd_sparse_delta *b)
{
    return a->k == b->k && memcmp(a->indices, b->indices, a->k * 8) == 0 &&
           memcmp(a->values, b->values, a->k * 4) == 0;
}

static int same_int4(const wd_int4_delta *a, const wd_int4_delta *b)
{
    return a->n_outliers == b->n_outliers && a->idx_bytes == b->idx_bytes &&
           a->scale == b->scale && a->zero_point == b->zero_point &&
           memcmp(a->outlier_idx, b->outlier_idx, a->n_outliers * a->idx_bytes) == 0 &&
           memcmp(a->outlier_vals, b->outlier_vals, a->n_outliers * 2) == 0 &&
           memcmp(a->packed, b->packed, wd__int4_packed_len(a->layout, a->n, a->n_outliers)) == 0;
}

/* Applying in random pieces gives the bits of applying at once. */
static int piecewise_same(int strategy, const file_arrays *fa, const float *base, uint64_t n)
{
    float *a = malloc(n * 4), *b = malloc(n * 4);
    memcpy(a, base, n * 4);
    memcpy(b, base, n * 4);
    int ok = apply_any(strategy, fa, 0, a, (size_t)n) == 0;
    for (uint64_t pos = 0; pos < n && ok;) {
        uint64_t len = 1 + rnd() % 70000;
        if (len > n - pos)
            len = n - pos;
        ok = apply_any(strategy, fa, pos, b + pos, (size_t)len) == 0;
        pos += len;
    }
    ok = ok && memcmp(a, b, n * 4) == 0;
    free(a), free(b);
    return ok;
}

static void test_streaming(void)
{
    const uint64_t n = 3003000; /* 2^3 3 5^3 7 11 13: many row lengths divide it */
    float *d = malloc(n * sizeof *d), *base = malloc(n * sizeof *base);
    for (uint64_t i = 0; i < n; i++) {
        d[i] = rnd_delta();
        base[i] = (rnd() & 7) ? rnd_delta() * 10 : -0.0f;
    }
    const size_t chunks[] = {8192, 10007, 0 /* default 1 Mi */, (size_t)n /* all at once */};
    const int nch = 4;

    /* sparse: the selection is right (checked against a sort) and does not
     * depend on the chunk size; the default chunk reads 2 passes x 3 chunks
     * (the top-k cut's second pass folded into the last) */
    const double sparsities[] = {0.9, 0.5, 0.0, 0.999999};
    for (int s = 0; s < 4; s++) {
        wd_sparse_delta ref = {0};
        for (int c = 0; c < nch; c++) {
            counting_src cs = {.d = d};
            wd_delta_src src = {.n = n, .read = counting_read, .ud = &cs, .chunk = chunks[c]};
            wd_sparse_delta sp;
            CHECK_RC(wd__sparse_encode(&sp, &src, sparsities[s], NULL), 0);
            size_t eff = chunks[c] ? chunks[c] : WD_CODEC_CHUNK;
            CHECK(cs.max_count <= eff);
            if (chunks[c] == 0 && sparsities[s] == 0.9)
                CHECK(cs.reads == 2 * ((n + eff - 1) / eff));
            if (c == 0) {
                ref = sp;
                /* against a full sort */
                uint32_t kth;
                int tie = tie_at_cut(d, n, sp.k, &kth);
                (void)tie;
                int good = sp.k == wd__sparse_k(n, sparsities[s]);
                for (uint64_t j = 0; good && j < sp.k; j++) {
                    good = (j == 0 || sp.indices[j] > sp.indices[j - 1]) &&
                           wd__abs_key(d[sp.indices[j]]) >= kth &&
                           fbits(sp.values[j]) == fbits(d[sp.indices[j]]);
                }
                uint64_t above = 0;
                for (uint64_t i = 0; i < n; i++)
                    above += wd__abs_key(d[i]) > kth;
                /* every element above the cut is kept */
                uint64_t kept_above = 0;
                for (uint64_t j = 0; j < sp.k; j++)
                    kept_above += wd__abs_key(d[sp.indices[j]]) > kth;
                CHECK(good && kept_above == above);
                file_arrays fa = {0};
                fa.sp = sp;
                CHECK(piecewise_same(WD__WS_SPARSE, &fa, base, n));
            } else {
                CHECK(same_sparse(&sp, &ref));
                wd__sparse_clear(&sp);
            }
        }
        wd__sparse_clear(&ref);
    }

    /* quantized: row sums follow numpy's 8192-blocks from each row's start
     * whatever the chunking; compare with the in-memory reference */
    const uint64_t col_choices[] = {n, 1001000, 20020, 10010, 8192 * 0 + 1000, 7};
    float *absrow = malloc(n * sizeof *absrow);
    for (int cc = 0; cc < 6; cc++) {
        uint64_t cols = col_choices[cc], rows = n / cols;
        CHECK(n % cols == 0);
        wd_quant_delta ref = {0};
        for (int c = 0; c < nch; c++) {
            counting_src cs = {.d = d};
            wd_delta_src src = {.n = n, .read = counting_read, .ud = &cs, .chunk = chunks[c]};
            wd_quant_delta q;
            CHECK_RC(wd__quant_encode(&q, &src, cols, NULL), 0);
            CHECK(cs.max_count <= (chunks[c] ? chunks[c] : WD_CODEC_CHUNK));
            if (c == 0) {
                ref = q;
                int good = 1;
                for (uint64_t r = 0; r < rows && good; r++) {
                    for (uint64_t i = 0; i < cols; i++)
                        absrow[i] = fabsf(d[r * cols + i]);
                    float mean = wd__numpy_sum_f32(absrow, (size_t)cols) / (float)cols;
                    good = q.scales[r] == wd__f32_to_f16(mean);
                }
                for (uint64_t i = 0; i < n && good; i++)
                    good = ((q.packed_signs[i >> 3] >> (7 - (i & 7))) & 1) == !(d[i] < 0);
                CHECK(good);
                file_arrays fa = {0};
                fa.qu = q;
                CHECK(piecewise_same(WD__WS_QUANTIZED, &fa, base, n));
            } else {
                CHECK(memcmp(q.scales, ref.scales, rows * 2) == 0 &&
                      memcmp(q.packed_signs, ref.packed_signs, (n + 7) / 8) == 0);
                wd__quant_clear(&q);
            }
        }
        wd__quant_clear(&ref);
    }
    free(absrow);

    /* int4, both layouts: chunk size changes nothing; pieces decode alike;
     * the fidelity matches a brute-force recomputation */
    const double fractions[] = {0.01, 0.3};
    for (int layout = 1; layout <= 2; layout++) {
        for (int fi = 0; fi < 2; fi++) {
            wd_int4_delta ref = {0};
            wd_codec_fidelity rf = {0};
            for (int c = 0; c < nch; c++) {
                counting_src cs = {.d = d};
                wd_delta_src src = {.n = n, .read = counting_read, .ud = &cs, .chunk = chunks[c]};
                wd_int4_delta e;
                wd_codec_fidelity fid;
                CHECK_RC(wd__int4_encode(&e, &src, fractions[fi], layout, &fid), 0);
                if (chunks[c] == 0) /* 3 passes x 3 chunks, the cut's second pass folded */
                    CHECK(cs.reads == 3 * ((n + WD_CODEC_CHUNK - 1) / WD_CODEC_CHUNK));
                if (c == 0) {
                    ref = e;
                    rf = fid;
                    file_arrays fa = {0};
                    fa.i4 = e;
                    CHECK(piecewise_same(WD__WS_INT4, &fa, base, n));
                    double rel, mx;
                    brute_fidelity(WD__WS_INT4, &fa, d, n, &rel, &mx);
                    CHECK(close_enough(fid.rel_error, rel) && close_enough(fid.max_abs_error, mx));
                    CHECK(fid.rel_error > 0 && fid.rel_error < 0.2);
                } else {
                    CHECK(same_int4(&e, &ref));
                    /* the error sums are added up unit by unit, so their
                     * last bits follow the unit size (never the pool) */
                    CHECK(close_enough(fid.rel_error, rf.rel_error) && fid.max_abs_error == rf.max_abs_error);
                    wd__int4_clear(&e);
                }
            }
            wd__int4_clear(&ref);
        }
    }

    /* A failing read surfaces its own error, and nothing leaks (ASan). */
    for (int fail = 1; fail <= 5; fail++) {
        counting_src cs = {.d = d, .fail_at = fail};
        wd_delta_src src = {.n = n, .read = counting_read, .ud = &cs, .chunk = 0};
        wd_sparse_delta sp;
        wd_quant_delta q;
        wd_int4_delta e;
        CHECK_RC(wd__sparse_encode(&sp, &src, 0.9, NULL), WD_EIO);
        CHECK(sp.indices == NULL);
        cs.reads = 0;
        CHECK_RC(wd__quant_encode(&q, &src, 1000, NULL), (fail <= 3 ? WD_EIO : 0));
        wd__quant_clear(&q);
        cs.reads = 0;
        CHECK_RC(wd__int4_encode(&e, &src, 0.01, 2, NULL), WD_EIO);
        CHECK(e.packed == NULL);
    }
    free(d);
    free(base);
}

/* ---- Small and odd inputs ----------------------------------------------------- */

/* int4's vectorised passes against the definition, element by element:
 * zero points of -0.0 and +0.0 (the last zero in index order wins when the
 * extreme is zero), codes of values exactly halfway between two codes
 * (half to even), lengths that are not a multiple of four, a NaN among
 * the outliers. */
static void test_int4_lanes(void)
{
    enum { N = 1003 };
    static float d[N];
    wd_delta_src src;
    wd_int4_delta e;
    for (int round = 0; round < 48; round++) {
        size_t n = N - (size_t)(round % 7);
        int signs = round % 3; /* 0: all >= 0, 1: all <= 0, 2: both */
        for (size_t i = 0; i < n; i++) {
            uint64_t r = rnd();
            float v = (float)(r % 1000) / 64.0f; /* multiples of 1/64: many exact halves */
            if (r % 5 == 0)
                v = (r >> 20) & 1 ? -0.0f : 0.0f;
            if (signs == 1 || (signs == 2 && ((r >> 30) & 1)))
                v = -v;
            d[i] = v;
        }
        d[(size_t)(rnd() % n)] = 1000.0f; /* the outlier */
        if (round % 4 == 3)
            d[(size_t)(rnd() % n)] = NAN;
        wd__delta_src_mem(&src, d, n);
        wd_codec_fidelity fid;
        CHECK_RC(wd__int4_encode(&e, &src, 1.0 / (double)n, 2, &fid), 0);
        /* the definition: extremes of the non-outliers, the later of equal values */
        uint64_t out_at = (uint64_t)((int32_t *)e.outlier_idx)[0];
        int have = 0;
        float mn = 0, mx = 0;
        for (size_t i = 0; i < n; i++) {
            if (i == out_at || isnan(d[i]))
                continue;
            if (!have || d[i] <= mn)
                mn = d[i];
            if (!have || d[i] >= mx)
                mx = d[i];
            have = 1;
        }
        int nan_left = 0;
        for (size_t i = 0; i < n; i++)
            nan_left |= i != out_at && isnan(d[i]);
        if (!nan_left) {
            CHECK(e.zero_point == wd__f64_to_f16(mn));
            CHECK(e.scale == wd__f64_to_f16(((double)mx - (double)mn) / 15.0));
        }
        float zp = wd__f16_to_f32(e.zero_point), sc = wd__f16_to_f32(e.scale);
        int bad = 0;
        for (size_t i = 0; i < n && sc != 0.0f && !nan_left; i++) {
            float t = (d[i] - zp) / sc;
            int q = isnan(t) ? 0 : (int)fminf(fmaxf(rintf(t), 0.0f), 15.0f);
            uint8_t b = e.packed[i >> 1];
            bad += ((i & 1) ? (b & 15) : (b >> 4)) != q;
        }
        CHECK(bad == 0);
        /* max_abs_error: the largest |decoded - d|, decoded = lut[code] or
         * the outlier's float16 (the encoder's vector loop rebuilds lut[q]
         * arithmetically) */
        int any_nan = 0;
        for (size_t i = 0; i < n; i++)
            any_nan |= isnan(d[i]);
        if (!any_nan && sc != 0.0f) {
            float lut[16];
            wd__int4_lut(lut, e.scale, e.zero_point);
            double want = 0;
            for (size_t i = 0; i < n; i++) {
                uint8_t b = e.packed[i >> 1];
                double dec = i == out_at ? (double)wd__f16_to_f32(e.outlier_vals[0]) : (double)lut[(i & 1) ? (b & 15) : (b >> 4)];
                double err = fabs(dec - (double)d[i]);
                if (err > want)
                    want = err;
            }
            CHECK(fid.max_abs_error == want);
        }
        wd__int4_clear(&e);
    }
}

/* sparse when most of the delta is zero and k exceeds the nonzeros: every
 * zero is a tie at a zero threshold (kept as bitmaps), the first k - nnz of
 * them by index are taken with their signs, over several units and merge
 * blocks. */
static void test_sparse_zero_ties(void)
{
    enum { N = 3000000 };
    float *d = calloc(N, sizeof *d);
    CHECK(d != NULL);
    if (!d)
        return;
    size_t nnz = 0;
    for (size_t i = 0; i < N; i++) {
        uint64_t r = rnd();
        if (r % 23 == 0) {
            d[i] = (float)((r >> 8) % 1000 + 1) / 128.0f * ((r >> 40) & 1 ? -1.0f : 1.0f);
            nnz++;
        } else if ((r >> 20) & 1) {
            d[i] = -0.0f;
        }
    }
    wd_delta_src src;
    wd__delta_src_mem(&src, d, N);
    src.chunk = (size_t)1 << 20;
    wd_sparse_delta sp;
    CHECK_RC(wd__sparse_encode(&sp, &src, 0.9, NULL), 0);
    uint64_t k = wd__sparse_k(N, 0.9);
    CHECK(sp.k == k && k > nnz);
    size_t j = 0, zeros = 0, bad = 0;
    for (size_t i = 0; i < N && j <= k; i++) {
        int take = d[i] != 0.0f || zeros++ < k - nnz;
        if (!take)
            continue;
        if (j == k || (uint64_t)sp.indices[j] != i || memcmp(&sp.values[j], &d[i], 4))
            bad++;
        j++;
    }
    CHECK(bad == 0 && j == k);
    wd__sparse_clear(&sp);
    free(d);
}

static void test_edges(void)
{
    wd_delta_src src;
    wd_sparse_delta sp;
    wd_quant_delta q;
    wd_int4_delta e;
    float none[1] = {0};

    /* empty tensors */
    wd__delta_src_mem(&src, none, 0);
    CHECK_RC(wd__sparse_encode(&sp, &src, 0.9, NULL), 0);
    CHECK(sp.k == 0);
    CHECK_RC(wd__sparse_apply(&sp, 0, none, 0), 0);
    wd__sparse_clear(&sp);
    CHECK_RC(wd__quant_encode(&q, &src, 1, NULL), WD_EUSAGE);
    CHECK_RC(wd__int4_encode(&e, &src, 0.01, 2, NULL), 0);
    CHECK(e.n_outliers == 0 && e.scale == 0x3c00 && e.zero_point == 0);
    wd__int4_clear(&e);

    /* bad options */
    float one[4] = {0.5f, -1.0f, 0.25f, 2.0f};
    wd__delta_src_mem(&src, one, 4);
    CHECK_RC(wd__sparse_encode(&sp, &src, 1.0, NULL), WD_EUSAGE);
    CHECK_RC(wd__sparse_encode(&sp, &src, -0.1, NULL), WD_EUSAGE);
    CHECK_RC(wd__sparse_encode(&sp, &src, NAN, NULL), WD_EUSAGE);
    CHECK_RC(wd__int4_encode(&e, &src, 0.01, 3, NULL), WD_EUSAGE);
    CHECK_RC(wd__int4_encode(&e, &src, NAN, 2, NULL), WD_EUSAGE);
    CHECK_RC(wd__quant_encode(&q, &src, 3, NULL), WD_EUSAGE);

    /* sparse keeps -0.0 in the base where it stores nothing */
    CHECK_RC(wd__sparse_encode(&sp, &src, 0.5, NULL), 0);
    CHECK(sp.k == 2 && sp.indices[0] == 1 && sp.indices[1] == 3);
    float b4[4] = {-0.0f, -0.0f, -0.0f, 1.0f};
    CHECK_RC(wd__sparse_apply(&sp, 0, b4, 4), 0);
    CHECK(fbits(b4[0]) == 0x80000000u && fbits(b4[2]) == 0x80000000u && b4[1] == -1.0f &&
          b4[3] == 3.0f);
    CHECK_RC(wd__sparse_apply(&sp, 3, b4, 2), WD_EUSAGE);
    wd__sparse_clear(&sp);

    /* quantized: -0.0 and +0.0 deltas are "non-negative" */
    float z[3] = {-0.0f, 0.0f, -1e-30f};
    wd__delta_src_mem(&src, z, 3);
    CHECK_RC(wd__quant_encode(&q, &src, 3, NULL), 0);
    CHECK(q.packed_signs[0] == 0xc0);
    wd__quant_clear(&q);

    /* int4: a NaN is the largest |delta|, so the outlier; a one-element
     * tensor is all outlier (0.3.0: scale 1, zero point 0, one code 0) */
    float nanv[4] = {1.0f, NAN, 2.0f, 3.0f};
    wd__delta_src_mem(&src, nanv, 4);
    CHECK_RC(wd__int4_encode(&e, &src, 0.25, 2, NULL), 0);
    CHECK(e.n_outliers == 1 && ((int32_t *)e.outlier_idx)[0] == 1 &&
          e.outlier_vals[0] == 0x7e00);
    /* range 2 over {1, 2, 3}: scale f16(2/15), zero point 1 */
    CHECK(e.zero_point == 0x3c00 && e.scale == wd__f64_to_f16(2.0 / 15.0));
    wd__int4_clear(&e);
    float g[1] = {0.125f};
    wd__delta_src_mem(&src, g, 1);
    for (int layout = 1; layout <= 2; layout++) {
        CHECK_RC(wd__int4_encode(&e, &src, 0.01, layout, NULL), 0);
        CHECK(e.n_outliers == 1 && e.scale == 0x3c00 && e.zero_point == 0 &&
              e.outlier_vals[0] == wd__f32_to_f16(0.125f));
        CHECK(wd__int4_packed_len(layout, 1, 1) == (layout == 2 ? 1u : 0u));
        float bb[1] = {-0.0f};
        CHECK_RC(wd__int4_apply(&e, 0, bb, 1), 0);
        CHECK(bb[0] == 0.125f);
        wd__int4_clear(&e);
    }

    /* v1 outliers add a zero first: a -0.0 base with a -0.0 outlier value
     * gives +0.0 (layout 1) but -0.0 (layout 2) */
    {
        int64_t idx64[1] = {0};
        int32_t idx32[1] = {0};
        uint16_t vals[1] = {0x8000};
        uint8_t packed[1] = {0};
        wd_int4_delta v1 = {.layout = 1, .n = 1, .n_outliers = 1, .idx_bytes = 8,
                            .outlier_idx = idx64, .outlier_vals = vals, .scale = 0x3c00,
                            .zero_point = 0, .packed = packed};
        wd_int4_delta v2 = v1;
        v2.layout = 2;
        v2.idx_bytes = 4;
        v2.outlier_idx = idx32;
        CHECK_RC(wd__int4_check(&v1), 0);
        CHECK_RC(wd__int4_check(&v2), 0);
        float x1 = -0.0f, x2 = -0.0f;
        wd__int4_apply(&v1, 0, &x1, 1);
        wd__int4_apply(&v2, 0, &x2, 1);
        CHECK(fbits(x1) == 0 && fbits(x2) == 0x80000000u);
    }

    /* arrays from outside are checked */
    {
        int64_t bad_order[2] = {3, 2}, out_of_range[2] = {0, 5}, neg[1] = {-1};
        float vals[2] = {1, 2};
        wd_sparse_delta s1 = {.n = 5, .k = 2, .indices = bad_order, .values = vals};
        CHECK_RC(wd__sparse_check(&s1), WD_EBADINPUT);
        s1.indices = out_of_range;
        CHECK_RC(wd__sparse_check(&s1), WD_EBADINPUT);
        s1.k = 6;
        CHECK_RC(wd__sparse_check(&s1), WD_EBADINPUT);
        uint16_t ov[1] = {0};
        uint8_t pk[4] = {0};
        wd_int4_delta i4 = {.layout = 2, .n = 5, .n_outliers = 1, .idx_bytes = 8,
                            .outlier_idx = neg, .outlier_vals = ov, .packed = pk};
        CHECK_RC(wd__int4_check(&i4), WD_EBADINPUT);
        i4.outlier_idx = out_of_range;
        CHECK_RC(wd__int4_check(&i4), 0);
        i4.idx_bytes = 2;
        CHECK_RC(wd__int4_check(&i4), WD_EBADINPUT);
        i4.idx_bytes = 8;
        i4.layout = 3;
        CHECK_RC(wd__int4_check(&i4), WD_EBADINPUT);
        i4.layout = 1;
        i4.n_outliers = 6;
        CHECK_RC(wd__int4_check(&i4), WD_EBADINPUT);
        uint16_t sc[1] = {0};
        wd_quant_delta qq = {.n = 6, .n_cols = 4, .scales = sc, .packed_signs = pk};
        CHECK_RC(wd__quant_check(&qq), WD_EBADINPUT);
        qq.n_cols = 0;
        CHECK_RC(wd__quant_check(&qq), WD_EBADINPUT);
        qq.n_cols = 3;
        CHECK_RC(wd__quant_check(&qq), 0);
    }
}

/* Parallel passes: the same arrays and the same error figures for any pool
 * size, cached or streamed, and the same arrays as a serial run. The deltas
 * take few distinct values (ties at every cut), with zeros of both signs. */
static int par_read(void *ud, int worker, uint64_t begin, size_t count, float *out)
{
    (void)worker;
    memcpy(out, (const float *)ud + begin, count * sizeof *out);
    return 0;
}

static int same_fid(const wd_codec_fidelity *a, const wd_codec_fidelity *b)
{
    return !memcmp(&a->rel_error, &b->rel_error, sizeof(double)) &&
           !memcmp(&a->max_abs_error, &b->max_abs_error, sizeof(double));
}

/* int4's streamed codes: windows in element order, starting at even
 * elements (multiples of the chunk when it is even), covering [0, n) with
 * the bytes wd__int4_encode keeps whole, and the same outliers and figures;
 * wd__int4_apply_codes on a window's bytes decodes as wd__int4_apply. Small
 * and odd chunks, with and without a pool, cached or not, so a tensor spans
 * many windows; a constant delta takes the all-zero-codes path. */
typedef struct {
    const wd_int4_delta *ref;
    uint64_t next, chunk;
    int windows, bad;
    uint8_t *codes; /* the windows put together */
    const float *base;
    int fail_at; /* window to refuse (-1: none) */
} stream_check;

static int stream_window(void *ud, const wd_int4_delta *e, uint64_t begin, uint64_t end, uint8_t *codes)
{
    stream_check *sc = ud;
    if (sc->windows == sc->fail_at)
        return wd__error(WD_EIO, "refused");
    sc->windows++;
    if (begin != sc->next || (begin & 1) || end <= begin || end > e->n || e->packed ||
        (!(sc->chunk & 1) && begin % sc->chunk) || e->n_outliers != sc->ref->n_outliers) {
        sc->bad = 1;
        return 0;
    }
    sc->next = end;
    memcpy(sc->codes + begin / 2, codes, (size_t)((end - begin + 1) / 2));
    /* a range straddling the window's middle, odd start */
    uint64_t a = (begin + (end - begin) / 3) | 1, b = end - (end - begin) / 5;
    if (a < b) {
        size_t m = (size_t)(b - a);
        float *x = malloc(m * sizeof *x), *y = malloc(m * sizeof *y);
        memcpy(x, sc->base + a, m * sizeof *x);
        memcpy(y, sc->base + a, m * sizeof *y);
        wd__int4_apply_codes(e, a, x, m, codes + (a - begin) / 2);
        CHECK_RC(wd__int4_apply(sc->ref, a, y, m), 0);
        if (memcmp(x, y, m * sizeof *x))
            sc->bad = 1;
        free(x);
        free(y);
    }
    return 0;
}

static void test_int4_stream(void)
{
    const uint64_t n = 100003;
    float *d = malloc(n * sizeof *d), *flat = malloc(n * sizeof *flat), *base = malloc(n * sizeof *base);
    uint64_t x = 99;
    for (uint64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        d[i] = (float)((int)((x >> 33) % 1001) - 500) / 256.0f;
        if (i % 4973 == 5)
            d[i] = i % 2 ? 1e4f : -3e3f;
        flat[i] = 0.125f;
        base[i] = (float)(x >> 40) / 65536.0f;
    }
    d[77777] = NAN; /* past the first windows */
    const size_t chunks[] = {8192, 10007, 0};
    const int threads[] = {0, 2};
    for (int di = 0; di < 2; di++) {
        const float *data = di ? flat : d;
        for (int ci = 0; ci < 3; ci++) {
            for (int ti = 0; ti < 2; ti++) {
                wd_pool *pool = NULL;
                if (threads[ti])
                    CHECK_RC(wd__pool_new(&pool, threads[ti]), 0);
                for (int cache = 0; cache < 2; cache++) {
                    wd_delta_src src;
                    wd__delta_src_mem(&src, data, n);
                    src.chunk = chunks[ci];
                    src.pool = pool;
                    src.read_par = par_read;
                    src.cache_elems = cache ? (size_t)n : 0;
                    wd_int4_delta ref, e;
                    wd_codec_fidelity f_ref, f;
                    CHECK_RC(wd__int4_encode(&ref, &src, 0.01, 2, &f_ref), 0);
                    uint64_t len = wd__int4_packed_len(2, n, ref.n_outliers);
                    stream_check sc = {&ref, 0, chunks[ci] ? chunks[ci] : WD_CODEC_CHUNK, 0, 0, calloc(len, 1),
                                       base, -1};
                    CHECK_RC(wd__int4_encode_stream(&e, &src, 0.01, &f, stream_window, &sc), 0);
                    CHECK(!sc.bad && sc.next == n && same_fid(&f, &f_ref));
                    CHECK(chunks[ci] == 0 || sc.windows > 1);
                    e.packed = sc.codes; /* what the windows made, in the place same_int4 reads */
                    CHECK(same_int4(&e, &ref));
                    e.packed = NULL;
                    wd__int4_clear(&e);
                    /* a receiver's failure is the encoder's, and nothing is left behind */
                    sc.fail_at = 1;
                    sc.windows = 0;
                    sc.next = 0;
                    CHECK_RC(wd__int4_encode_stream(&e, &src, 0.01, &f, stream_window, &sc),
                             chunks[ci] ? WD_EIO : 0);
                    CHECK(e.outlier_idx == NULL || !chunks[ci]);
                    wd__int4_clear(&e);
                    free(sc.codes);
                    wd__int4_clear(&ref);
                }
                wd__pool_free(pool);
            }
        }
    }
    wd_int4_delta e;
    wd_delta_src src;
    wd__delta_src_mem(&src, d, n);
    CHECK_RC(wd__int4_encode_stream(&e, &src, 0.01, NULL, NULL, NULL), WD_EUSAGE);
    free(d);
    free(flat);
    free(base);
}

static void test_parallel(void)
{
    const uint64_t n = 2500007; /* a prime: one long row for quantized */
    float *d = malloc(n * sizeof *d);
    uint64_t x = 12345;
    for (uint64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int level = (int)((x >> 33) % 41) - 20;
        d[i] = level == 0 ? ((x >> 20) & 1 ? -0.0f : 0.0f) : (float)level / 64.0f;
    }
    const int threads[] = {0 /* no pool */, 1, 2, 5};
    const size_t caches[] = {0, (size_t)n};
    for (int ci = 0; ci < 2; ci++) {
        wd_sparse_delta sp_ref = {0};
        wd_int4_delta i4_ref[2] = {{0}, {0}};
        wd_quant_delta q_ref[2] = {{0}, {0}};
        wd_codec_fidelity f_sp = {0}, f_i4[2], f_q[2];
        for (int ti = 0; ti < 4; ti++) {
            wd_pool *pool = NULL;
            if (threads[ti])
                CHECK_RC(wd__pool_new(&pool, threads[ti]), 0);
            wd_delta_src src;
            wd__delta_src_mem(&src, d, n);
            src.pool = pool;
            src.read_par = par_read;
            src.cache_elems = caches[ci];
            wd_codec_fidelity fid;
            wd_sparse_delta sp;
            CHECK_RC(wd__sparse_encode(&sp, &src, 0.9, &fid), 0);
            if (ti == 0) {
                sp_ref = sp;
                f_sp = fid;
            } else {
                CHECK(same_sparse(&sp, &sp_ref) && same_fid(&fid, &f_sp));
                wd__sparse_clear(&sp);
            }
            for (int layout = 1; layout <= 2; layout++) {
                wd_int4_delta e;
                CHECK_RC(wd__int4_encode(&e, &src, 0.01, layout, &fid), 0);
                if (ti == 0) {
                    i4_ref[layout - 1] = e;
                    f_i4[layout - 1] = fid;
                } else {
                    CHECK(same_int4(&e, &i4_ref[layout - 1]) && same_fid(&fid, &f_i4[layout - 1]));
                    wd__int4_clear(&e);
                }
            }
            const uint64_t cols[] = {n, 1};
            for (int c = 0; c < 2; c++) {
                wd_quant_delta q;
                CHECK_RC(wd__quant_encode(&q, &src, cols[c], &fid), 0);
                uint64_t rows = n / cols[c];
                if (ti == 0) {
                    q_ref[c] = q;
                    f_q[c] = fid;
                } else {
                    CHECK(!memcmp(q.scales, q_ref[c].scales, rows * 2) &&
                          !memcmp(q.packed_signs, q_ref[c].packed_signs, (n + 7) / 8) && same_fid(&fid, &f_q[c]));
                    wd__quant_clear(&q);
                }
            }
            wd__pool_free(pool);
        }
        /* and what a plain serial walk gives (the streaming tests above
         * check those against numpy's arrays) */
        wd_delta_src plain;
        wd__delta_src_mem(&plain, d, n);
        plain.chunk = 10007;
        wd_sparse_delta sp;
        CHECK_RC(wd__sparse_encode(&sp, &plain, 0.9, NULL), 0);
        CHECK(same_sparse(&sp, &sp_ref));
        wd__sparse_clear(&sp);
        wd_int4_delta e;
        CHECK_RC(wd__int4_encode(&e, &plain, 0.01, 2, NULL), 0);
        CHECK(same_int4(&e, &i4_ref[1]));
        wd__int4_clear(&e);
        wd__sparse_clear(&sp_ref);
        for (int l = 0; l < 2; l++) {
            wd__int4_clear(&i4_ref[l]);
            wd__quant_clear(&q_ref[l]);
        }
    }
    free(d);
}

/* wd__int4_apply_l2 against its definition, element by element: f[i] +=
 * lut[code] (the high nibble is the even element), f[at] += the outlier's
 * half for an outlier. Runs long enough for the byte-pair table and short
 * ones without, odd and even first elements, outliers at the edges and in
 * runs, specials in the table and in f. */
static void test_int4_apply_l2(void)
{
    uint64_t r = 7;
    float lut[16];
    wd__int4_lut(lut, 0x2e66 /* 0.1 */, 0xb266 /* -0.2 */);
    lut[3] = NAN;
    lut[9] = -0.0f;
    static const size_t lens[] = {0, 1, 3, 4, 5, 31, 4095, 4096, 4097, 10001};
    int bad = 0;
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
        for (uint64_t begin = 0; begin < 3; begin++)
            for (int layout = 0; layout < 3; layout++) {
                size_t n = lens[li];
                uint8_t *codes = malloc(n / 2 + 2);
                float *f = malloc((n + 1) * sizeof *f), *want = malloc((n + 1) * sizeof *want);
                uint32_t *idx = malloc((n + 1) * sizeof *idx);
                uint16_t *vals = malloc((n + 1) * sizeof *vals);
                for (size_t b = 0; b < n / 2 + 2; b++)
                    codes[b] = (uint8_t)(tu_splitmix(&r) >> 13);
                for (size_t i = 0; i < n; i++) {
                    f[i] = (float)((int64_t)(tu_splitmix(&r) >> 40) - (1 << 23)) / 4096.0f;
                    if (i % 97 == 5)
                        f[i] = i % 2 ? INFINITY : -0.0f;
                }
                /* outliers: none, the first and last few, or every 7th */
                uint64_t m = 0;
                for (size_t i = 0; i < n; i++)
                    if ((layout == 1 && (i < 2 || i + 2 >= n)) || (layout == 2 && i % 7 == 3)) {
                        idx[m] = (uint32_t)(begin + i);
                        vals[m++] = (uint16_t)(tu_splitmix(&r) >> 48);
                    }
                memcpy(want, f, n * sizeof *f);
                const uint8_t *c0 = codes; /* holds element begin's code */
                uint64_t j = 0;
                for (size_t i = 0; i < n; i++) {
                    if (j < m && idx[j] == begin + i) {
                        want[i] = want[i] + wd__f16_to_f32(vals[j++]);
                        continue;
                    }
                    uint8_t byte = c0[((begin + i) >> 1) - (begin >> 1)];
                    want[i] = want[i] + lut[(begin + i) & 1 ? byte & 15 : byte >> 4];
                }
                wd__int4_apply_l2(f, n, begin, lut, codes, idx, 4, m, vals);
                if (n && memcmp(f, want, n * sizeof *f))
                    bad++;
                free(codes);
                free(f);
                free(want);
                free(idx);
                free(vals);
            }
    CHECK(bad == 0);
}

/* Layout 1 (codes for the non-outliers only) against its definition, element
 * by element: code number i - (outliers before i), and at an outlier
 * f32(f32(base + 0.0f) + value), so a -0.0 base with a -0.0 value gives +0.0.
 * Whole tensors through wd__int4_apply, and ranges as the piece decoder
 * passes them to wd__int4_apply_l1: the range's codes, outlier positions and
 * values copied into arrays of exactly their size (ASan sees any read past
 * them). Outliers: none, at both edges, in runs, scattered, or all. */
static void test_int4_apply_l1(void)
{
    enum { N = 9001 };
    static float base[N], want[N], got[N];
    static int64_t idx[N];
    static uint16_t vals[N];
    static uint8_t packed[N / 2 + 1];
    uint64_t r = 11;
    int bad_whole = 0, bad_range = 0, zeros = 0;
    for (int pattern = 0; pattern < 5; pattern++) {
        uint64_t m = 0;
        for (uint64_t i = 0; i < N; i++) {
            int out = pattern == 1 ? i < 3 || i + 3 >= N
                    : pattern == 2 ? i % 400 < 9 || i % 1001 == 1000
                    : pattern == 3 ? tu_splitmix(&r) % 13 == 0
                    : pattern == 4;
            if (out) {
                idx[m] = (int64_t)i;
                /* every third value -0.0 */
                vals[m] = m % 3 == 0 ? 0x8000 : (uint16_t)(tu_splitmix(&r) >> 50);
                m++;
            }
            base[i] = i % 5 == 0 ? -0.0f : (float)((int64_t)(tu_splitmix(&r) >> 44) - (1 << 19)) / 1024.0f;
        }
        for (size_t b = 0; b < sizeof packed; b++)
            packed[b] = (uint8_t)(tu_splitmix(&r) >> 29);
        wd_int4_delta e = {.layout = 1, .n = N, .n_outliers = m, .idx_bytes = 8, .outlier_idx = idx,
                           .outlier_vals = vals, .scale = 0x2e66, .zero_point = 0xb266, .packed = packed};
        CHECK_RC(wd__int4_check(&e), 0);
        float lut[16];
        wd__int4_lut(lut, e.scale, e.zero_point);
        for (uint64_t i = 0, j = 0; i < N; i++) {
            if (j < m && (uint64_t)idx[j] == i) {
                want[i] = base[i] + 0.0f;
                want[i] = want[i] + wd__f16_to_f32(vals[j++]);
                zeros += fbits(base[i]) == 0x80000000u && vals[j - 1] == 0x8000 && fbits(want[i]) == 0;
                continue;
            }
            uint64_t c = i - j;
            want[i] = base[i] + lut[c & 1 ? packed[c >> 1] & 15 : packed[c >> 1] >> 4];
        }
        memcpy(got, base, sizeof got);
        CHECK_RC(wd__int4_apply(&e, 0, got, N), 0);
        bad_whole += memcmp(got, want, sizeof got) != 0;
        /* ranges: odd and even begins and first codes, short and long */
        static const uint64_t ranges[][2] = {{0, 1}, {1, 1}, {0, 9001}, {1, 4500}, {2, 4501}, {399, 12},
                                             {400, 9}, {3, 5000}, {4000, 4097}, {8997, 4}, {8990, 11}};
        for (size_t k = 0; k < sizeof ranges / sizeof *ranges; k++) {
            uint64_t begin = ranges[k][0], n = ranges[k][1];
            uint64_t j0 = wd__idx_lower_bound(idx, 8, m, begin), j1 = wd__idx_lower_bound(idx, 8, m, begin + n);
            uint64_t code0 = begin - j0, codes_end = begin + n - j1;
            size_t len = (size_t)((codes_end + 1) / 2 - code0 / 2);
            uint8_t *codes = malloc(len ? len : 1);
            int64_t *ri = malloc((j1 - j0 + 1) * sizeof *ri);
            uint16_t *rv = malloc((j1 - j0 + 1) * sizeof *rv);
            float *f = malloc(n * sizeof *f);
            CHECK(codes && ri && rv && f);
            if (codes && ri && rv && f) {
                memcpy(codes, packed + code0 / 2, len);
                memcpy(ri, idx + j0, (j1 - j0) * sizeof *ri);
                memcpy(rv, vals + j0, (j1 - j0) * sizeof *rv);
                memcpy(f, base + begin, n * sizeof *f);
                wd__int4_apply_l1(f, n, begin, lut, codes, code0, ri, 8, j1 - j0, rv);
                bad_range += memcmp(f, want + begin, n * sizeof *f) != 0;
                memcpy(f, base + begin, n * sizeof *f);
                CHECK_RC(wd__int4_apply(&e, begin, f, n), 0);
                bad_range += memcmp(f, want + begin, n * sizeof *f) != 0;
            }
            free(codes);
            free(ri);
            free(rv);
            free(f);
        }
    }
    CHECK(bad_whole == 0);
    CHECK(bad_range == 0);
    CHECK(zeros > 0); /* the -0.0 case happened */
}

int main(void)
{
    test_int4_apply_l2();
    test_int4_apply_l1();
    test_half();
    test_pairwise();
    test_counts();
    test_numpy_vectors();
    test_edges();
    test_int4_lanes();
    test_sparse_zero_ties();
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++)
        test_fixture(&fixtures[i]);
    test_streaming();
    test_parallel();
    test_int4_stream();
    return tu_finish("test_codecs");
}
