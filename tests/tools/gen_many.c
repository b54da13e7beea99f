/*
 * gen_many.c - deterministic generator of a one-shard model holding very many
 * tiny tensors of mixed dtypes, and of a fine-tune of it with a few tensors
 * changed: the load that exposes per-tensor costs that grow faster than n.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_TENSORS 5000000u

enum { DT_F32, DT_F16, DT_BF16, DT_F64, DT_I64, DT_I32, DT_I16, DT_I8, DT_U8, DT_BOOL,
       DT_F8E4M3, DT_F8E5M2 };
static const char *const dt_name[] = {"F32", "F16", "BF16", "F64", "I64", "I32",
                                      "I16", "I8",  "U8",   "BOOL", "F8_E4M3", "F8_E5M2"};
static const unsigned dt_size[] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1, 1, 1};

typedef struct {
    char name[40];
    int dtype, ndim;
    unsigned shape[2];
    uint64_t nbytes, begin;
    int changed;
} tensor;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("gen_many: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void usage(FILE *to)
{
    fputs("usage: gen_many [-n N] [--seed S] [--change-every K] [--f8] OUT_BASE_DIR\n"
          "                [--finetune OUT_FT_DIR]\n"
          "  writes OUT_BASE_DIR/model.safetensors with N tensors (default 320000) of 1 to 8\n"
          "  elements each, dtypes mixed, data in the reverse of the sorted-name order; the\n"
          "  fine-tune equals the base except every K-th tensor (default 1000) that is\n"
          "  floating point. --f8 adds F8_E4M3/F8_E5M2 tensors (save-delta refuses them).\n",
          to);
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t parse_u64(const char *opt, const char *v, uint64_t lo, uint64_t hi)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || x < lo || x > hi)
        die("%s wants an integer in [%llu, %llu], not '%s'", opt, (unsigned long long)lo,
            (unsigned long long)hi, v);
    return x;
}

static int is_float(int dt)
{
    return dt <= DT_F64 || dt >= DT_F8E4M3;
}

/* A finite value near 0.02*N(0,1)-ish, cheap: the sum of two uniforms. */
static float small_value(uint64_t *rng)
{
    uint64_t r = splitmix64(rng);
    float a = (float)(r >> 40) * 0x1p-24f, b = (float)((r >> 8) & 0xffffffu) * 0x1p-24f;
    return (a + b - 1.0f) * 0.05f;
}

static void put_le(unsigned char *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Truncating conversions are enough: any finite bit pattern is a valid weight. */
static void fill(unsigned char *out, const tensor *t, uint64_t seed, int finetune)
{
    uint64_t rng = seed;
    unsigned n = t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);
    unsigned es = dt_size[t->dtype];
    for (unsigned i = 0; i < n; i++) {
        float f = small_value(&rng);
        uint64_t r = splitmix64(&rng);
        if (finetune && t->changed)
            f += 0.01f * (float)(int)(i + 1);
        uint32_t u;
        memcpy(&u, &f, 4);
        unsigned char *p = out + (uint64_t)i * es;
        switch (t->dtype) {
        case DT_F32: put_le(p, u, 4); break;
        case DT_F16: {
            /* exponent kept in [1, 30] so the value is a normal, finite half */
            uint32_t e = (u >> 23) & 0xffu;
            uint32_t he = e < 113 ? 1 : e > 142 ? 30 : e - 112;
            put_le(p, ((u >> 16) & 0x8000u) | (he << 10) | ((u >> 13) & 0x3ffu), 2);
            break;
        }
        case DT_BF16: put_le(p, u >> 16, 2); break;
        case DT_F64: {
            double d = (double)f;
            uint64_t v;
            memcpy(&v, &d, 8);
            put_le(p, v, 8);
            break;
        }
        case DT_I64: case DT_I32: case DT_I16: case DT_I8: case DT_U8: put_le(p, r, es); break;
        case DT_BOOL: p[0] = (unsigned char)(r & 1); break;
        /* sign plus the low 6 bits keeps both float8 exponents below all-ones */
        case DT_F8E4M3: case DT_F8E5M2:
            p[0] = (unsigned char)(((u >> 24) & 0x80u) | (r & 0x3fu) | (finetune && t->changed));
            break;
        }
    }
}

static void write_all(int fd, const char *path, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("cannot write '%s': %s", path, w < 0 ? strerror(errno) : "short write");
        p += w;
        len -= (size_t)w;
    }
}

static void write_file(const char *dir, const char *name, const void *a, size_t alen,
                       const void *b, size_t blen)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        die("cannot create '%s': %s", dir, strerror(errno));
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("cannot create '%s': %s", path, strerror(errno));
    write_all(fd, path, a, alen);
    if (blen)
        write_all(fd, path, b, blen);
    if (close(fd) != 0)
        die("cannot write '%s': %s", path, strerror(errno));
}

int main(int argc, char **argv)
{
    uint64_t n = 320000, seed = 1, every = 1000;
    int with_f8 = 0;
    const char *out_base = NULL, *out_ft = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--f8") == 0) {
            with_f8 = 1;
            continue;
        }
        if (a[0] != '-') {
            if (out_base) {
                usage(stderr);
                die("unexpected argument '%s'", a);
            }
            out_base = a;
            continue;
        }
        if (i + 1 >= argc)
            die("option '%s' needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "-n") == 0)
            n = parse_u64(a, v, 1, MAX_TENSORS);
        else if (strcmp(a, "--seed") == 0)
            seed = parse_u64(a, v, 0, UINT64_MAX);
        else if (strcmp(a, "--change-every") == 0)
            every = parse_u64(a, v, 1, UINT64_MAX);
        else if (strcmp(a, "--finetune") == 0)
            out_ft = v;
        else
            die("unknown option '%s'", a);
    }
    if (!out_base) {
        usage(stderr);
        die("missing OUT_BASE_DIR");
    }

    tensor *t = calloc(n, sizeof *t);
    if (!t)
        die("out of memory");
    const int n_dtypes = with_f8 ? 12 : 10;
    uint64_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t rng = seed ^ (i * 0x2545f4914f6cdd1dull);
        uint64_t r = splitmix64(&rng);
        /* The data lies in index order and the names sort the other way
         * round: the most inversions any sort by data order can face. */
        snprintf(t[i].name, sizeof t[i].name, "t%08llu.w%u", (unsigned long long)(n - 1 - i),
                 (unsigned)(r & 0xfffu));
        t[i].dtype = (int)((r >> 20) % (uint64_t)n_dtypes);
        unsigned elems = 1 + (unsigned)((r >> 32) % 8);
        if (elems % 2 == 0 && ((r >> 40) & 1)) {
            t[i].ndim = 2;
            t[i].shape[0] = 2;
            t[i].shape[1] = elems / 2;
        } else {
            t[i].ndim = 1;
            t[i].shape[0] = elems;
        }
        t[i].nbytes = (uint64_t)elems * dt_size[t[i].dtype];
        t[i].begin = off;
        off += t[i].nbytes;
        t[i].changed = (i % every) == every / 2 && is_float(t[i].dtype);
    }

    /* The header lists the even-numbered tensors, then the odd ones: neither
     * data nor name order. */
    size_t cap = (size_t)n * 96 + 64, len = 0;
    char *hdr = malloc(cap);
    unsigned char *data = malloc(off ? off : 1);
    if (!hdr || !data)
        die("out of memory");
    len += (size_t)snprintf(hdr, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (uint64_t k = 0; k < n; k++) {
        const tensor *x = &t[k < (n + 1) / 2 ? 2 * k : 2 * (k - (n + 1) / 2) + 1];
        char shape[32];
        if (x->ndim == 2)
            snprintf(shape, sizeof shape, "%u,%u", x->shape[0], x->shape[1]);
        else
            snprintf(shape, sizeof shape, "%u", x->shape[0]);
        len += (size_t)snprintf(hdr + len, cap - len,
                                ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%llu,%llu]}",
                                x->name, dt_name[x->dtype], shape, (unsigned long long)x->begin,
                                (unsigned long long)(x->begin + x->nbytes));
    }
    hdr[len++] = '}';
    while (len % 8)
        hdr[len++] = ' ';
    unsigned char *file_hdr = malloc(8 + len);
    if (!file_hdr)
        die("out of memory");
    put_le(file_hdr, len, 8);
    memcpy(file_hdr + 8, hdr, len);

    const char *dirs[2] = {out_base, out_ft};
    for (int d = 0; d < 2 && dirs[d]; d++) {
        for (uint64_t i = 0; i < n; i++)
            fill(data + t[i].begin, &t[i], seed * 0x9e3779b97f4a7c15ull + i, d == 1);
        write_file(dirs[d], "model.safetensors", file_hdr, 8 + len, data, off);
        static const char config[] = "{\n  \"model_type\": \"many\",\n  \"torch_dtype\": \"float32\"\n}\n";
        write_file(dirs[d], "config.json", config, sizeof config - 1, NULL, 0);
    }
    free(file_hdr);
    free(hdr);
    free(data);
    free(t);
    return 0;
}
