/*
 * test_deltafile.c - the deltatensors workflow without a repository against
 * deltatensors' own files: load_delta(_from_paths) gives the expected tensors
 * and folders bit for bit, save_delta(_from_paths) rebuilds every fixture
 * .wdelta (byte for byte where no tie in |delta| lets the choice differ),
 * inspect, bad files, the config.json rewrite, and piecewise decoding of
 * tensors larger than a piece.
 */
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "dtype.h"
#include "error.h"
#include "folder.h"
#include "piece.h"
#include "safetensors.h"
#include "testutil.h"
#include "wdelta.h"
#include "wdrepo.h"

static char tmpdir[256];
static char path_buf[4][1024];

/* A path under the fixtures (slot i of four rotating buffers). */
static const char *fx(int i, const char *rel)
{
    snprintf(path_buf[i], sizeof path_buf[i], "%s/%s", tu_fixtures(), rel);
    return path_buf[i];
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb, (void)flag, (void)f;
    return remove(p);
}

static void rm_tree(const char *p)
{
    nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int read_file(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n + 1);
    *len = fread(*out, 1, (size_t)n, f);
    fclose(f);
    return *len == (size_t)n ? 0 : -1;
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t k = fwrite(data, 1, len, f);
    return fclose(f) == 0 && k == len ? 0 : -1;
}

static int same_files(const char *a, const char *b)
{
    unsigned char *x = NULL, *y = NULL;
    size_t lx = 0, ly = 0;
    int same = read_file(a, &x, &lx) == 0 && read_file(b, &y, &ly) == 0 && lx == ly &&
               memcmp(x, y, lx) == 0;
    free(x);
    free(y);
    return same;
}

/* Entries of a directory (. and .. aside). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* ---- safetensors helpers ------------------------------------------------------ */

/* Writes a safetensors file of n tensors (data in the order given). */
static int write_st(const char *path, const wd_st_spec *specs, const void *const *data, size_t n)
{
    char *hdr;
    size_t hlen;
    if (wd__st_header_build(&hdr, &hlen, specs, n, NULL))
        return -1;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(hdr);
        return -1;
    }
    uint8_t pre[8];
    for (int i = 0; i < 8; i++)
        pre[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    fwrite(pre, 1, 8, f);
    fwrite(hdr, 1, hlen, f);
    for (size_t i = 0; i < n; i++) {
        uint64_t ne = 1;
        for (int d = 0; d < specs[i].ndim; d++)
            ne *= specs[i].shape[d];
        fwrite(data[i], 1, ne * wd__dtype_size(specs[i].dtype), f);
    }
    free(hdr);
    return fclose(f);
}

static int has_name(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], name))
            return 1;
    return 0;
}

/* Copies model folder src to dst keeping only the tensors named in keep
 * (all if keep is NULL; every shard keeps its file name and data order);
 * other files are left out. This is how deltatensors' writers saw the fixtures' folders when a
 * tensor had to be left out. */
static int restricted_folder(const char *src, const char *dst, const char *const *keep, size_t nk)
{
    wd_folder *f;
    if (wd__folder_open(&f, src))
        return -1;
    mkdir(dst, 0755);
    int rc = 0;
    for (size_t i = 0; !rc && i < f->n_files; i++) {
        if (!f->files[i].is_shard)
            continue;
        const wd_st_file *st = f->files[i].st;
        wd_st_spec *specs = calloc(st->n_tensors + 1, sizeof *specs);
        void **data = calloc(st->n_tensors + 1, sizeof *data);
        size_t n = 0;
        for (size_t j = 0; j < st->n_tensors; j++) {
            const wd_st_tensor *t = &st->tensors[j];
            if (keep && !has_name(keep, nk, t->name))
                continue;
            specs[n] = (wd_st_spec){t->name, t->dtype, t->ndim, t->shape};
            data[n] = malloc(t->nbytes + 1);
            wd__st_read(st, t, 0, data[n], t->nbytes);
            n++;
        }
        char out[1200];
        snprintf(out, sizeof out, "%s/%s", dst, f->files[i].path);
        if (n)
            rc = write_st(out, specs, (const void *const *)data, n);
        for (size_t j = 0; j < n; j++)
            free(data[j]);
        free(data);
        free(specs);
    }
    wd__folder_close(f);
    return rc;
}

/* Every tensor of a folder in memory (sorted by name); free with free_named. */
static int load_named(const char *dir, wd_named_tensor **out, size_t *n,
                      const char *const *keep, size_t nk)
{
    wd_folder *f;
    if (wd__folder_open(&f, dir))
        return -1;
    wd_named_tensor *t = calloc(f->n_tensors + 1, sizeof *t);
    size_t k = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const wd_folder_tensor *ft = &f->tensors[i];
        if (keep && !has_name(keep, nk, ft->name))
            continue;
        void *data = malloc(ft->t->nbytes + 1);
        wd__st_read(f->files[ft->file].st, ft->t, 0, data, ft->t->nbytes);
        t[k].name = strdup(ft->name);
        snprintf(t[k].dtype, sizeof t[k].dtype, "%s", wd__dtype_name(ft->t->dtype));
        t[k].ndim = ft->t->ndim;
        memcpy(t[k].shape, ft->t->shape, sizeof t[k].shape);
        t[k].data = data;
        t[k].nbytes = ft->t->nbytes;
        k++;
    }
    wd__folder_close(f);
    *out = t;
    *n = k;
    return 0;
}

static void free_named(wd_named_tensor *t, size_t n)
{
    wd_named_tensors_free(t, n); /* the same layout: names and data malloc'd */
}

/* Compares every tensor of the expected file (all F32) with the same-named
 * tensor of got (a safetensors file), bit for bit; integer tensors in got
 * are compared by value. Returns the number of differing tensors. */
static int compare_to_expected(const char *got_path, const char *exp_path, size_t *n_exp)
{
    wd_st_file *g, *e;
    if (wd__st_open(&g, got_path))
        return 1000;
    if (wd__st_open(&e, exp_path)) {
        wd__st_close(g);
        return 1000;
    }
    int bad = 0;
    *n_exp = e->n_tensors;
    for (size_t i = 0; i < e->n_tensors; i++) {
        const wd_st_tensor *te = &e->tensors[i];
        long j = wd__st_find(g, te->name);
        if (j < 0) {
            fprintf(stderr, "  %s: missing %s\n", got_path, te->name);
            bad++;
            continue;
        }
        const wd_st_tensor *tg = &g->tensors[j];
        if (te->dtype != WD_DT_F32 || tg->nelem != te->nelem ||
            !(tg->dtype == WD_DT_F32 || !wd__dtype_is_float(tg->dtype))) {
            fprintf(stderr, "  %s: %s has the wrong dtype or size\n", got_path, te->name);
            bad++;
            continue;
        }
        uint8_t *rg = malloc(tg->nbytes + 1), *re = malloc(te->nbytes + 1);
        float *fg = malloc(tg->nelem * 4 + 4);
        wd__st_read(g, tg, 0, rg, tg->nbytes);
        wd__st_read(e, te, 0, re, te->nbytes);
        wd__to_f32(fg, rg, tg->nelem, tg->dtype);
        if (memcmp(fg, re, te->nbytes)) {
            fprintf(stderr, "  %s: %s differs from %s\n", got_path, te->name, exp_path);
            bad++;
        }
        free(rg);
        free(re);
        free(fg);
    }
    wd__st_close(g);
    wd__st_close(e);
    return bad;
}

/* ---- The fixtures -------------------------------------------------------------- */

enum { BY_PATHS, BY_MEM, BY_CHAIN };

typedef struct {
    const char *wdelta;   /* under wdelta/ */
    const char *base;     /* folder the file reconstructs onto */
    const char *ft;       /* the fine-tune it was made from */
    const char *expected; /* under expected/ */
    int writer;
} fixture;

static const fixture fixtures[] = {
    {"v2/sparse", "models/base-bf16", "models/ft-bf16", "sparse-v2", BY_PATHS},
    {"v2/sparse-s05", "models/base-bf16", "models/ft-bf16", "sparse-s05-v2", BY_PATHS},
    {"v2/quantized", "models/base-bf16", "models/ft-bf16", "quantized-v2", BY_PATHS},
    {"v2/int4", "models/base-bf16", "models/ft-bf16", "int4-v2", BY_PATHS},
    {"v2/int4-o05", "models/base-bf16", "models/ft-bf16", "int4-o05-v2", BY_PATHS},
    {"v2/int4-f32-mem", "models/base-f32", "models/ft-f32", "int4-f32-mem-v2", BY_MEM},
    {"v2/chain-1", "models/base-bf16", "models/ft-bf16", "chain-1-v2", BY_PATHS},
    {"v2/chain-2", NULL, "models/ft2-bf16", "chain-2-v2", BY_CHAIN},
    {"v1/sparse", "models/base-bf16", "models/ft-bf16", "sparse-v1", BY_PATHS},
    {"v1/quantized", "models/base-bf16", "models/ft-bf16", "quantized-v1", BY_PATHS},
    {"v1/int4", "models/base-bf16", "models/ft-bf16", "int4-v1", BY_PATHS},
    {"v1/int4-f32-mem", "models/base-f32", "models/ft-f32", "int4-f32-mem-v1", BY_MEM},
};
#define N_FIXTURES (sizeof fixtures / sizeof fixtures[0])

/* Tensors whose |delta| ties at the top-k cut (README "Ties"): the only ones
 * where deltatensors' choice of indices is unspecified. */
static const char *const degenerate[] = {
    "model.layers.10.attn.k_proj.weight", /* unchanged */
    "model.layers.2.attn.bias",           /* constant delta */
    "model.position_ids",                 /* I64, unchanged */
    "lm_head.scale", "model.layers.1.gate", "model.layers.1.attn.bias",
};

/* The names a .wdelta holds. */
static size_t file_names(const wd__wdelta *d, const char **names)
{
    size_t n = wd__wdelta_count(d);
    for (size_t i = 0; i < n; i++)
        names[i] = wd__wdelta_tensor_at(d, i)->name;
    return n;
}

/* load-delta onto the fixture's base as float32 equals the expected file. */
static void test_load(const fixture *f, size_t idx)
{
    char out[600], chain[600];
    snprintf(out, sizeof out, "%s/load-%zu", tmpdir, idx);
    const char *base = f->base ? fx(0, f->base) : NULL;
    if (f->writer == BY_CHAIN) {
        /* link 2 applies to the float32 model after link 1; that folder also
         * verifies link 2's parent_hash (float32 hash) */
        snprintf(chain, sizeof chain, "%s/chain1-f32", tmpdir);
        CHECK_RC(wd_load_delta_from_paths(fx(1, "wdelta/v2/chain-1.wdelta"),
                                          fx(0, "models/base-bf16"), chain, WD_OUT_FLOAT32, 0,
                                          NULL),
                 0);
        base = chain;
        /* and refused on the plain base folder unless told not to verify */
        CHECK_RC(wd_load_delta_from_paths(fx(1, "wdelta/v2/chain-2.wdelta"),
                                          fx(2, "models/base-bf16"), out, WD_OUT_FLOAT32, 0, NULL),
                 WD_EMISMATCH);
        CHECK(strstr(wd_errmsg(), "chain link") != NULL);
        CHECK(access(out, F_OK) != 0);
    }
    char wpath[300];
    snprintf(wpath, sizeof wpath, "wdelta/%s.wdelta", f->wdelta);
    CHECK_RC(wd_load_delta_from_paths(fx(1, wpath), base, out, WD_OUT_FLOAT32, 0, NULL), 0);
    char model[800], exp[300];
    snprintf(model, sizeof model, "%s/model.safetensors", out);
    snprintf(exp, sizeof exp, "expected/%s.f32.safetensors", f->expected);
    size_t n_exp = 0;
    int bad = compare_to_expected(model, fx(2, exp), &n_exp);
    if (bad)
        fprintf(stderr, "%s: %d tensors differ from %s\n", f->wdelta, bad, exp);
    CHECK(bad == 0 && n_exp > 0);

    if (f->writer == BY_CHAIN) {
        /* the plain base with verification off gives the same as deltatensors'
         * load_delta_chain only for link 1; here: link 2 alone onto the chain */
        char out2[700];
        snprintf(out2, sizeof out2, "%s-nv", out);
        CHECK_RC(wd_load_delta_from_paths(fx(1, wpath), base, out2, WD_OUT_FLOAT32,
                                          WD_LOAD_NO_VERIFY, NULL),
                 0);
        snprintf(model, sizeof model, "%s/model.safetensors", out2);
        CHECK(compare_to_expected(model, fx(2, exp), &n_exp) == 0);
    }
}

/* The in-memory load_delta of the files save_delta made. */
static void test_load_mem(const fixture *f)
{
    char wpath[300], exp[300];
    snprintf(wpath, sizeof wpath, "wdelta/%s.wdelta", f->wdelta);
    snprintf(exp, sizeof exp, "expected/%s.f32.safetensors", f->expected);
    wd__wdelta *d;
    CHECK_RC(wd__wdelta_open(&d, fx(1, wpath)), 0);
    const char *names[64];
    size_t nn = file_names(d, names);
    wd_named_tensor *base, *out = NULL;
    size_t nb, no = 0;
    /* load_delta hashes every tensor it is given: exactly the file's */
    CHECK(load_named(fx(0, f->base), &base, &nb, names, nn) == 0);
    CHECK_RC(wd_load_delta(&out, &no, fx(1, wpath), base, nb, 1), 0);
    CHECK(no == nn);
    wd_st_file *e;
    CHECK_RC(wd__st_open(&e, fx(2, exp)), 0);
    int bad = 0;
    for (size_t i = 0; i < no && e; i++) {
        long j = wd__st_find(e, out[i].name);
        uint8_t *re = j >= 0 ? malloc(e->tensors[j].nbytes + 1) : NULL;
        if (!re || strcmp(out[i].dtype, "F32") || out[i].nbytes != e->tensors[j].nbytes ||
            wd__st_read(e, &e->tensors[j], 0, re, out[i].nbytes) ||
            memcmp(re, out[i].data, out[i].nbytes)) {
            fprintf(stderr, "%s: load_delta: %s differs\n", f->wdelta, out[i].name);
            bad++;
        }
        free(re);
    }
    CHECK(bad == 0);
    wd__st_close(e);
    wd_named_tensors_free(out, no);
    /* one tensor more in the dict: the hash no longer matches */
    if (nb < 13) {
        wd_named_tensor *all;
        size_t na;
        CHECK(load_named(fx(0, f->base), &all, &na, NULL, 0) == 0);
        CHECK_RC(wd_load_delta(&out, &no, fx(1, wpath), all, na, 1), WD_EMISMATCH);
        CHECK(out == NULL && no == 0);
        CHECK_RC(wd_load_delta(&out, &no, fx(1, wpath), all, na, 0), 0);
        wd_named_tensors_free(out, no);
        free_named(all, na);
    }
    free_named(base, nb);
    wd__wdelta_close(d);
}

static int n_identical, n_equivalent;

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

/* The stored values of a degenerate tensor's two encodings, as multisets
 * (sparse values, int4 outlier values), and int4's scale and zero point. */
static int same_values(const wd__wdelta *a, const wd__wdelta_tensor *ta, const wd__wdelta *b,
                       const wd__wdelta_tensor *tb)
{
    if (ta->strategy == WD__WS_QUANTIZED)
        return 0; /* quantized has no choice to make */
    int vf = ta->strategy == WD__WS_SPARSE ? WD__WF_VALUES : WD__WF_OUTLIER_VALS;
    const wd__wdelta_field *fa = wd__wdelta_field_of(ta, vf), *fb = wd__wdelta_field_of(tb, vf);
    void *x = NULL, *y = NULL;
    int same = fa->count == fb->count && !wd__wdelta_read_array(a, fa, 1 << 26, &x) &&
               !wd__wdelta_read_array(b, fb, 1 << 26, &y);
    if (same) {
        size_t es = wd__dtype_size(fa->dtype);
        qsort(x, fa->count, es, es == 4 ? cmp_u32 : cmp_u16);
        qsort(y, fb->count, es, es == 4 ? cmp_u32 : cmp_u16);
        same = !memcmp(x, y, fa->nbytes);
    }
    free(x);
    free(y);
    for (int f = WD__WF_SCALE; same && ta->strategy == WD__WS_INT4 && f <= WD__WF_ZERO_POINT; f++) {
        uint16_t p = 0, q = 1;
        wd__wdelta_pread(a, wd__wdelta_field_of(ta, f), 0, &p, 2);
        wd__wdelta_pread(b, wd__wdelta_field_of(tb, f), 0, &q, 2);
        same = p == q;
    }
    return same;
}

/* mine and theirs must agree: the same header facts, record order and
 * arrays, except in degenerate tensors, where deltatensors' choice among
 * equal |delta| is unspecified: there the stored values must be the same
 * multiset. Every other tensor must reconstruct bit for bit the same onto
 * base. Returns 1 if the files are byte-identical. */
static int compare_wdelta(const char *mine, const char *theirs, const char *base,
                          const char *label)
{
    if (same_files(mine, theirs))
        return 1;
    wd__wdelta *a, *b;
    CHECK_RC(wd__wdelta_open(&a, mine), 0);
    CHECK_RC(wd__wdelta_open(&b, theirs), 0);
    if (!a || !b) {
        wd__wdelta_close(a);
        wd__wdelta_close(b);
        return 0;
    }
    CHECK(wd__wdelta_version(a) == wd__wdelta_version(b));
    CHECK(!strcmp(wd__wdelta_parent_hash(a), wd__wdelta_parent_hash(b)));
    CHECK(wd__wdelta_strategy(a) == wd__wdelta_strategy(b));
    CHECK(wd__wdelta_count(a) == wd__wdelta_count(b));
    const char *differ[64];
    size_t nd = 0;
    int bad = 0;
    for (size_t i = 0; i < wd__wdelta_count(a) && i < wd__wdelta_count(b) && nd < 64; i++) {
        const wd__wdelta_tensor *ta = wd__wdelta_tensor_by_record(a, i);
        const wd__wdelta_tensor *tb = wd__wdelta_tensor_by_record(b, i);
        CHECK(!strcmp(ta->name, tb->name)); /* the same record (= hash) order */
        const int *fields;
        size_t nf = wd__wdelta_fields_of(ta->strategy, &fields);
        int d = 0;
        for (size_t k = 0; k < nf; k++) {
            const wd__wdelta_field *fa = wd__wdelta_field_of(ta, fields[k]);
            const wd__wdelta_field *fb = wd__wdelta_field_of(tb, fields[k]);
            void *x = NULL, *y = NULL;
            if (fa->nbytes != fb->nbytes || fa->dtype != fb->dtype ||
                wd__wdelta_read_array(a, fa, 1 << 26, &x) ||
                wd__wdelta_read_array(b, fb, 1 << 26, &y) || memcmp(x, y, fa->nbytes))
                d = 1;
            free(x);
            free(y);
        }
        if (!d)
            continue;
        differ[nd++] = ta->name;
        printf("    %s: %s: indices chosen differently among equal |delta|\n", label, ta->name);
        if (!has_name(degenerate, sizeof degenerate / sizeof *degenerate, ta->name) ||
            !same_values(a, ta, b, tb)) {
            fprintf(stderr, "%s: tensor %s encodes differently\n", label, ta->name);
            bad++;
        }
    }
    CHECK(bad == 0);
    CHECK(nd > 0); /* equal arrays must mean equal files */
    char oa[700], ob[700], ma[800], mb[800];
    snprintf(oa, sizeof oa, "%s/eq-a", tmpdir);
    snprintf(ob, sizeof ob, "%s/eq-b", tmpdir);
    CHECK_RC(wd_load_delta_from_paths(mine, base, oa, WD_OUT_FLOAT32, 0, NULL), 0);
    CHECK_RC(wd_load_delta_from_paths(theirs, base, ob, WD_OUT_FLOAT32, 0, NULL), 0);
    snprintf(ma, sizeof ma, "%s/model.safetensors", oa);
    snprintf(mb, sizeof mb, "%s/model.safetensors", ob);
    wd_st_file *sa = NULL, *sb = NULL;
    CHECK_RC(wd__st_open(&sa, ma), 0);
    CHECK_RC(wd__st_open(&sb, mb), 0);
    for (size_t i = 0; sa && sb && i < sb->n_tensors; i++) {
        const wd_st_tensor *tb = &sb->tensors[i];
        long j = wd__st_find(sa, tb->name);
        if (has_name(differ, nd, tb->name))
            continue;
        uint8_t *x = malloc(tb->nbytes + 1), *y = malloc(tb->nbytes + 1);
        int same = j >= 0 && sa->tensors[j].nbytes == tb->nbytes &&
                   !wd__st_read(sa, &sa->tensors[j], 0, x, tb->nbytes) &&
                   !wd__st_read(sb, tb, 0, y, tb->nbytes) && !memcmp(x, y, tb->nbytes);
        if (!same)
            fprintf(stderr, "%s: %s reconstructs differently\n", label, tb->name);
        CHECK(same);
        free(x);
        free(y);
    }
    wd__st_close(sa);
    wd__st_close(sb);
    rm_tree(oa);
    rm_tree(ob);
    wd__wdelta_close(a);
    wd__wdelta_close(b);
    return 0;
}

/* save-delta on the models deltatensors used rebuilds the fixture. */
static void test_save(const fixture *f)
{
    if (f->writer == BY_CHAIN)
        return; /* save_delta_chain_from_paths is not part of this API */
    char wpath[300], mine[700], label[64];
    snprintf(wpath, sizeof wpath, "wdelta/%s.wdelta", f->wdelta);
    snprintf(label, sizeof label, "save %s", f->wdelta);
    snprintf(mine, sizeof mine, "%s/mine.wdelta", tmpdir);
    wd__wdelta *d;
    CHECK_RC(wd__wdelta_open(&d, fx(1, wpath)), 0);
    if (!d)
        return;
    const char *names[64];
    size_t nn = file_names(d, names);
    const wd__wdelta_tensor *t0 = wd__wdelta_tensor_at(d, 0);
    wd_strategy_opts so = {wd__wdelta_strategy_name(wd__wdelta_strategy(d)), t0->sparsity,
                           t0->outlier_fraction};
    int version = wd__wdelta_version(d);
    if (f->writer == BY_PATHS) {
        /* deltatensors left tensors out (it crashed on them): give the writer
         * the folders without them, as the fixture generator did */
        char b[700], ft[700];
        snprintf(b, sizeof b, "%s/rb", tmpdir);
        snprintf(ft, sizeof ft, "%s/rf", tmpdir);
        CHECK(restricted_folder(fx(0, f->base), b, names, nn) == 0);
        CHECK(restricted_folder(fx(2, f->ft), ft, names, nn) == 0);
        CHECK_RC(wd_save_delta_from_paths(mine, ft, b, &so, version, NULL), 0);
        rm_tree(ft);
        rm_tree(b);
    } else {
        wd_named_tensor *bt, *ft;
        size_t nb, nf;
        CHECK(load_named(fx(0, f->base), &bt, &nb, names, nn) == 0);
        CHECK(load_named(fx(2, f->ft), &ft, &nf, names, nn) == 0);
        CHECK_RC(wd_save_delta(mine, ft, nf, bt, nb, &so, version), 0);
        free_named(bt, nb);
        free_named(ft, nf);
    }
    if (compare_wdelta(mine, fx(1, wpath), fx(0, f->base), label)) {
        n_identical++;
        printf("  %s: byte-identical\n", f->wdelta);
    } else {
        n_equivalent++;
        printf("  %s: same parent_hash and arrays except at ties; reconstructs identically\n",
               f->wdelta);
    }
    unlink(mine);
    wd__wdelta_close(d);
}

/* Without an output dtype the folder is reconstruct_to_safetensors' bf16 one. */
static void test_folders(void)
{
    static const char *const which[] = {"sparse", "int4"};
    for (int i = 0; i < 2; i++) {
        char out[600], w[100], e[100];
        snprintf(out, sizeof out, "%s/folder-%s", tmpdir, which[i]);
        snprintf(w, sizeof w, "wdelta/v2/%s.wdelta", which[i]);
        CHECK_RC(wd_load_delta_from_paths(fx(1, w), fx(0, "models/base-bf16"), out,
                                          WD_OUT_ORIGINAL, 0, NULL),
                 0);
        static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json"};
        CHECK(count_entries(out) == 3);
        for (int k = 0; k < 3; k++) {
            char a[700], b[200];
            snprintf(a, sizeof a, "%s/%s", out, files[k]);
            snprintf(b, sizeof b, "expected/%s-v2-folder/%s", which[i], files[k]);
            if (!same_files(a, fx(2, b)))
                fprintf(stderr, "%s differs from %s\n", a, b);
            CHECK(same_files(a, fx(2, b)));
        }
        /* an existing non-empty folder: refused, then replaced with force */
        CHECK_RC(wd_load_delta_from_paths(fx(1, w), fx(0, "models/base-bf16"), out,
                                          WD_OUT_BFLOAT16, 0, NULL),
                 WD_EEXISTS);
        CHECK_RC(wd_load_delta_from_paths(fx(1, w), fx(0, "models/base-bf16"), out,
                                          WD_OUT_BFLOAT16, WD_CHECKOUT_FORCE, NULL),
                 0);
        char a[700];
        snprintf(a, sizeof a, "%s/model.safetensors", out);
        snprintf(e, sizeof e, "expected/%s-v2-folder/model.safetensors", which[i]);
        CHECK(same_files(a, fx(2, e)));
    }
}

static void test_inspect(void)
{
    wd_wdelta_info *info;
    CHECK_RC(wd_inspect_file(&info, fx(0, "wdelta/v2/int4.wdelta")), 0);
    if (info) {
        CHECK(info->size == 25735 && info->size_mb == 0.03 && info->version == 2);
        CHECK(!strcmp(info->parent_hash,
                      "0c18befee99d2eddfd19ddecc2f9e1bf33912a7a307596840a3d940a65b73071"));
        CHECK(!strcmp(info->strategy, "int4") && info->n_tensors == 12);
        const wd_wdelta_tensor_info *t = &info->tensors[9]; /* sorted: model.layers.2.mlp.weight */
        CHECK(!strcmp(t->name, "model.layers.2.mlp.weight"));
        CHECK(t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 9000);
        CHECK(!strcmp(t->dtype, "bfloat16") && !strcmp(t->delta_dtype, "float32"));
        CHECK(!strcmp(t->options_json, "{\"outlier_fraction\":0.01,\"n_elements\":27000,"
                                       "\"n_outliers\":270,\"int4_layout\":2}"));
        CHECK(t->n_arrays == 5 && !strcmp(t->arrays[0].field, "outlier_idx") &&
              !strcmp(t->arrays[0].dtype, "int32") && t->arrays[0].count == 270);
        CHECK(!strcmp(t->arrays[4].field, "packed") && t->arrays[4].nbytes == 13500);
        CHECK(!strcmp(info->tensors[11].name, "model.\xc3\xabmbed.weight"));
        wd_inspect_file_free(info);
    }
    CHECK_RC(wd_inspect_file(&info, fx(0, "wdelta/v1/sparse.wdelta")), 0);
    if (info) {
        /* v1 has no base_dtype: inspect() shows the delta's dtype */
        CHECK(info->version == 1 && !strcmp(info->tensors[0].dtype, "float32") &&
              !info->tensors[0].base_dtype[0]);
        CHECK(!strcmp(info->tensors[0].options_json, "{\"sparsity\":0.9}"));
        CHECK(info->size_mb == 0.04);
        wd_inspect_file_free(info);
    }
    wd_inspect_file_free(NULL);
}

static void test_bad_files(void)
{
    static const char *const bad[] = {"bad-magic", "checksum-flip", "header-len-too-big",
                                      "truncated-100", "version-99"};
    char out[600];
    snprintf(out, sizeof out, "%s/bad-out", tmpdir);
    int before = count_entries(tmpdir);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char p[100];
        wd_wdelta_info *info = (wd_wdelta_info *)1;
        snprintf(p, sizeof p, "bad/%s.wdelta", bad[i]);
        CHECK_RC(wd_inspect_file(&info, fx(0, p)), WD_EBADINPUT);
        CHECK(info == NULL && strchr(wd_errmsg(), '\n') == NULL);
        CHECK_RC(wd_load_delta_from_paths(fx(0, p), fx(1, "models/base-bf16"), out,
                                          WD_OUT_ORIGINAL, WD_LOAD_NO_VERIFY, NULL),
                 WD_EBADINPUT);
        CHECK(access(out, F_OK) != 0);
        wd_named_tensor *o = NULL;
        size_t no = 0;
        CHECK_RC(wd_load_delta(&o, &no, fx(0, p), NULL, 0, 0), WD_EBADINPUT);
    }
    /* a bad shard in the base folder */
    char b[600], s[700];
    snprintf(b, sizeof b, "%s/badbase", tmpdir);
    mkdir(b, 0755);
    snprintf(s, sizeof s, "%s/model.safetensors", b);
    unsigned char *data;
    size_t len;
    CHECK(read_file(fx(0, "bad/st-overlapping-offsets.safetensors"), &data, &len) == 0);
    CHECK(write_file(s, data, len) == 0);
    free(data);
    CHECK_RC(wd_load_delta_from_paths(fx(0, "wdelta/v2/int4.wdelta"), b, out, WD_OUT_ORIGINAL,
                                      WD_LOAD_NO_VERIFY, NULL),
             WD_EBADINPUT);
    rm_tree(b);
    /* the wrong base */
    CHECK_RC(wd_load_delta_from_paths(fx(0, "wdelta/v2/int4.wdelta"), fx(1, "models/ft-bf16"),
                                      out, WD_OUT_ORIGINAL, 0, NULL),
             WD_EMISMATCH);
    CHECK(strstr(wd_errmsg(), "wrong base") && strstr(wd_errmsg(), "0c18befee99d"));
    CHECK(count_entries(tmpdir) == before);
    CHECK(access(out, F_OK) != 0);
    /* a base without one of the file's tensors */
    const char *keep[] = {"model.layers.0.norm.weight"};
    snprintf(b, sizeof b, "%s/smallbase", tmpdir);
    CHECK(restricted_folder(fx(1, "models/base-bf16"), b, keep, 1) == 0);
    CHECK_RC(wd_load_delta_from_paths(fx(0, "wdelta/v2/int4.wdelta"), b, out, WD_OUT_ORIGINAL,
                                      WD_LOAD_NO_VERIFY, NULL),
             WD_EMISMATCH);
    rm_tree(b);
    CHECK(count_entries(tmpdir) == before);
}

static void test_save_errors(void)
{
    char out[600], ft[600];
    snprintf(out, sizeof out, "%s/err.wdelta", tmpdir);
    snprintf(ft, sizeof ft, "%s/small-ft", tmpdir);
    /* names differ */
    const char *keep[] = {"model.layers.0.norm.weight", "model.layers.1.gate"};
    CHECK(restricted_folder(fx(0, "models/ft-bf16"), ft, keep, 2) == 0);
    CHECK_RC(wd_save_delta_from_paths(out, ft, fx(0, "models/base-bf16"), NULL, 2, NULL),
             WD_EBADINPUT);
    CHECK(strstr(wd_errmsg(), "only in the base") != NULL);
    rm_tree(ft);
    wd_strategy_opts so = {"lossless", 0, 0};
    CHECK_RC(wd_save_delta_from_paths(out, fx(1, "models/ft-bf16"), fx(0, "models/base-bf16"),
                                      &so, 2, NULL),
             WD_EUSAGE);
    so.strategy = "sparse";
    so.sparsity = 1.0;
    CHECK_RC(wd_save_delta_from_paths(out, fx(1, "models/ft-bf16"), fx(0, "models/base-bf16"),
                                      &so, 2, NULL),
             WD_EUSAGE);
    CHECK_RC(wd_save_delta_from_paths(out, fx(1, "models/ft-bf16"), fx(0, "models/base-bf16"),
                                      NULL, 3, NULL),
             WD_EUSAGE);
    /* shapes differ */
    float a[6] = {0}, b[6] = {0};
    wd_named_tensor ta = {"w", "F32", 2, {2, 3}, a, 24}, tb = {"w", "F32", 2, {3, 2}, b, 24};
    CHECK_RC(wd_save_delta(out, &ta, 1, &tb, 1, NULL, 2), WD_EBADINPUT);
    CHECK(strstr(wd_errmsg(), "shape mismatch") != NULL);
    tb.nbytes = 20;
    CHECK_RC(wd_save_delta(out, &ta, 1, &tb, 1, NULL, 2), WD_EUSAGE);
    CHECK(access(out, F_OK) != 0);

    /* what deltatensors crashes on goes in the file and reads back: the 0-d
     * bf16 scalar (0.3.0), tensors under 2 elements in v1 int4 (0.2.0); an
     * empty tensor stays out of quantized files */
    static const char *const strategies[] = {"sparse", "quantized", "int4"};
    for (int v = 1; v <= 2; v++) {
        for (int s = 0; s < 3; s++) {
            wd_strategy_opts o = {strategies[s], 0, 0};
            CHECK_RC(wd_save_delta_from_paths(out, fx(1, "models/ft-bf16"),
                                              fx(0, "models/base-bf16"), &o, v, NULL),
                     0);
            wd__wdelta *d;
            CHECK_RC(wd__wdelta_open(&d, out), 0);
            if (!d)
                continue;
            CHECK(wd__wdelta_count(d) == (s == 1 ? 12u : 13u));
            CHECK(wd__wdelta_find(d, "lm_head.scale", 13) != NULL);
            CHECK((wd__wdelta_find(d, "model.layers.1.attn.bias", 24) == NULL) == (s == 1));
            /* with every tensor named, v2's parent_hash is the model hash */
            if (v == 2 && s != 1)
                CHECK(!strcmp(wd__wdelta_parent_hash(d),
                              "c5a00145cb4768d92f82450884f0bca18582b3b44e31210a9af8b892795e3950"));
            wd__wdelta_close(d);
            /* and it reads back onto its base */
            char o2[700];
            snprintf(o2, sizeof o2, "%s/crash-cases", tmpdir);
            CHECK_RC(wd_load_delta_from_paths(out, fx(0, "models/base-bf16"), o2, WD_OUT_ORIGINAL,
                                              0, NULL),
                     0);
            rm_tree(o2);
        }
    }
    unlink(out);
}

/* ---- config.json ---------------------------------------------------------------- */

static const char cfg_in[] =
    "{\"a\": 1, \"torch_dtype\": \"bfloat16\", \"n\": [1.0, 1e-05, 1.5e300, "
    "100000000000000000.0, -0, -0.0, 12345678901234567890], \"u\": "
    "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\ud800 \\/ \\u0001 \x7f\", \"e\": {}, \"l\": [], "
    "\"a\": {\"x\": [true, false, null]}, \"dtype\": \"x\", \"f\": 0.1, \"big\": 1E400, "
    "\"nan\": NaN, \"i\": -Infinity}";
/* what Python 3.11 writes: json.dumps(cfg, indent=2) + "\n" after setting
 * torch_dtype and dtype to "float16" */
static const char cfg_out[] =
    "{\n  \"a\": {\n    \"x\": [\n      true,\n      false,\n      null\n    ]\n  },\n"
    "  \"torch_dtype\": \"float16\",\n  \"n\": [\n    1.0,\n    1e-05,\n    1.5e+300,\n"
    "    1e+17,\n    0,\n    -0.0,\n    12345678901234567890\n  ],\n"
    "  \"u\": \"\\u00e9\\u20ac\\ud83d\\ude00\\ud800 / \\u0001 \\u007f\",\n  \"e\": {},\n"
    "  \"l\": [],\n  \"dtype\": \"float16\",\n  \"f\": 0.1,\n  \"big\": Infinity,\n"
    "  \"nan\": NaN,\n  \"i\": -Infinity\n}\n";

static void test_config(void)
{
    char b[600], out[600], p[700];
    snprintf(b, sizeof b, "%s/cfgbase", tmpdir);
    snprintf(out, sizeof out, "%s/cfgout", tmpdir);
    CHECK(restricted_folder(fx(0, "models/base-bf16"), b, NULL, 0) == 0);
    snprintf(p, sizeof p, "%s/config.json", b);
    CHECK(write_file(p, cfg_in, sizeof cfg_in - 1) == 0);
    /* not JSON, and JSON that is not an object: copied as they are */
    snprintf(p, sizeof p, "%s/notes.txt", b);
    CHECK(write_file(p, "hello", 5) == 0);
    /* a shard index, which must agree with the shards to be read: not copied */
    unsigned char *idx = NULL;
    size_t idx_len = 0;
    CHECK(read_file(fx(0, "models/base-bf16/model.safetensors.index.json"), &idx, &idx_len) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", b);
    CHECK(write_file(p, idx, idx_len) == 0);
    free(idx);
    snprintf(p, sizeof p, "%s/pytorch_model.bin", b); /* a weight file: not copied */
    CHECK(write_file(p, "x", 1) == 0);
    CHECK_RC(wd_load_delta_from_paths(fx(1, "wdelta/v2/sparse.wdelta"), b, out, WD_OUT_FLOAT16,
                                      WD_LOAD_NO_VERIFY, NULL),
             0);
    snprintf(p, sizeof p, "%s/config.json", out);
    unsigned char *got;
    size_t len;
    CHECK(read_file(p, &got, &len) == 0);
    int ok = len == sizeof cfg_out - 1 && !memcmp(got, cfg_out, len);
    if (!ok)
        fprintf(stderr, "config.json rewritten as:\n%.*s", (int)len, got);
    CHECK(ok);
    free(got);
    CHECK(count_entries(out) == 3); /* model.safetensors, config.json, notes.txt */
    rm_tree(out);

    static const char *const raw[] = {"[1, 2]", "{\"a\": 1,}", "{\"a\": 01}", "\xef\xbb\xbf{}",
                                      "{\"a\": \"\x01\"}", "{\"a\": \"\xff\"}", "{} x"};
    for (size_t i = 0; i < sizeof raw / sizeof *raw; i++) {
        snprintf(p, sizeof p, "%s/config.json", b);
        unlink(p);
        CHECK(write_file(p, raw[i], strlen(raw[i])) == 0);
        CHECK_RC(wd_load_delta_from_paths(fx(1, "wdelta/v2/sparse.wdelta"), b, out,
                                          WD_OUT_FLOAT32, WD_LOAD_NO_VERIFY, NULL),
                 0);
        char q[700];
        snprintf(q, sizeof q, "%s/config.json", out);
        CHECK(same_files(p, q));
        rm_tree(out);
    }
    rm_tree(b);

    /* a truncated sample is JSON Python refuses: copied as it is (and the
     * parser survives it); every 7th length, as each run fsyncs its output */
    snprintf(b, sizeof b, "%s/cfgtiny", tmpdir);
    mkdir(b, 0755);
    char w[700], st[700];
    snprintf(w, sizeof w, "%s/tiny.wdelta", tmpdir);
    snprintf(st, sizeof st, "%s/model.safetensors", b);
    float x[3] = {1, 2, 3}, y[3] = {1, 2.5f, 3};
    wd_named_tensor tb = {"x", "F32", 1, {3}, x, 12}, tf = {"x", "F32", 1, {3}, y, 12};
    wd_st_spec spec = {"x", WD_DT_F32, 1, tb.shape};
    const void *data[1] = {x};
    CHECK(write_st(st, &spec, data, 1) == 0);
    CHECK_RC(wd_save_delta(w, &tf, 1, &tb, 1, NULL, 2), 0);
    int bad = 0;
    for (size_t cut = 0; cut < sizeof cfg_in - 1; cut += 7) {
        snprintf(p, sizeof p, "%s/config.json", b);
        unlink(p);
        write_file(p, cfg_in, cut);
        int rc = wd_load_delta_from_paths(w, b, out, WD_OUT_BFLOAT16, 0, NULL);
        char q[700];
        snprintf(q, sizeof q, "%s/config.json", out);
        bad += rc != 0 || !same_files(p, q);
        rm_tree(out);
    }
    CHECK(bad == 0);
    rm_tree(b);
    unlink(w);
}

/* ---- Tensors larger than a piece ------------------------------------------------ */

static uint64_t rng = 0x243f6a8885a308d3u;

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static float rnd_f(float scale)
{
    double s = 0;
    for (int i = 0; i < 3; i++)
        s += (double)(rnd() >> 11) * 0x1p-53;
    return (float)((s - 1.5) * scale);
}

/* Reference decoding: whole arrays, one apply over the whole tensor. */
static int ref_apply(const wd__wdelta *d, const wd__wdelta_tensor *t, float *buf)
{
    void *arr[WD__WF__COUNT] = {0};
    const int *fields;
    size_t nf = wd__wdelta_fields_of(t->strategy, &fields);
    int rc = 0;
    for (size_t i = 0; !rc && i < nf; i++)
        rc = wd__wdelta_read_array(d, wd__wdelta_field_of(t, fields[i]), 1 << 30,
                                   &arr[fields[i]]);
    if (!rc && t->strategy == WD__WS_SPARSE) {
        wd_sparse_delta s = {t->n, wd__wdelta_field_of(t, WD__WF_INDICES)->count,
                             arr[WD__WF_INDICES], arr[WD__WF_VALUES]};
        rc = wd__sparse_apply(&s, 0, buf, (size_t)t->n);
    } else if (!rc && t->strategy == WD__WS_QUANTIZED) {
        wd_quant_delta q = {t->n, t->n_cols, arr[WD__WF_SCALES], arr[WD__WF_PACKED_SIGNS]};
        rc = wd__quant_apply(&q, 0, buf, (size_t)t->n);
    } else if (!rc) {
        wd_int4_delta e = {t->int4_layout, t->n, t->n_outliers,
                           (unsigned)wd__dtype_size(wd__wdelta_field_of(t, WD__WF_OUTLIER_IDX)->dtype),
                           arr[WD__WF_OUTLIER_IDX], arr[WD__WF_OUTLIER_VALS],
                           *(uint16_t *)arr[WD__WF_SCALE], *(uint16_t *)arr[WD__WF_ZERO_POINT],
                           arr[WD__WF_PACKED]};
        rc = wd__int4_apply(&e, 0, buf, (size_t)t->n);
    }
    for (int i = 0; i < WD__WF__COUNT; i++)
        free(arr[i]);
    return rc;
}

static void test_big(void)
{
    /* rows that do not divide a piece, one long row, many one-element rows */
    static const uint64_t shapes[3][2] = {{777, 1013}, {800001, 0}, {300001, 1}};
    static const int ndims[3] = {2, 1, 2};
    static const char *const names[3] = {"a.weight", "b.bias", "c.col"};
    wd_named_tensor base[3], ft[3];
    wd_st_spec specs[3];
    const void *bdata[3];
    for (int i = 0; i < 3; i++) {
        uint64_t n = shapes[i][0] * (ndims[i] == 2 ? shapes[i][1] : 1);
        uint16_t *b = malloc(n * 2);
        float *f = malloc(n * 4);
        for (uint64_t k = 0; k < n; k++) {
            b[k] = (rnd() & 15) ? wd__f32_to_bf16(rnd_f(0.1f)) : 0x8000; /* some -0.0 */
            f[k] = wd__bf16_to_f32(b[k]) + ((rnd() & 3) ? rnd_f(0.004f) : 0.0f);
        }
        base[i] = (wd_named_tensor){names[i], "BF16", ndims[i], {shapes[i][0], shapes[i][1]}, b,
                                    n * 2};
        ft[i] = (wd_named_tensor){names[i], "F32", ndims[i], {shapes[i][0], shapes[i][1]}, f,
                                  n * 4};
        specs[i] = (wd_st_spec){names[i], WD_DT_BF16, ndims[i], base[i].shape};
        bdata[i] = b;
    }
    char bdir[600], bfile[700], w[600], out[600], model[700];
    snprintf(bdir, sizeof bdir, "%s/bigbase", tmpdir);
    mkdir(bdir, 0755);
    snprintf(bfile, sizeof bfile, "%s/model.safetensors", bdir);
    CHECK(write_st(bfile, specs, bdata, 3) == 0);
    snprintf(w, sizeof w, "%s/big.wdelta", tmpdir);
    snprintf(out, sizeof out, "%s/bigout", tmpdir);
    snprintf(model, sizeof model, "%s/model.safetensors", out);

    static const wd_strategy_opts opts[] = {
        {"sparse", 0.5, 0}, {"sparse", 0.999, 0}, {"quantized", 0, 0}, {"int4", 0, 0.3},
        {"int4", 0, 0.001}};
    for (int v = 1; v <= 2; v++) {
        for (size_t s = 0; s < sizeof opts / sizeof *opts; s++) {
            CHECK_RC(wd_save_delta(w, ft, 3, base, 3, &opts[s], v), 0);
            CHECK_RC(wd_load_delta_from_paths(w, bdir, out, WD_OUT_FLOAT32, 0, NULL), 0);
            wd_named_tensor *mem = NULL;
            size_t nm = 0;
            CHECK_RC(wd_load_delta(&mem, &nm, w, base, 3, 1), 0);
            wd__wdelta *d;
            wd_st_file *st;
            CHECK_RC(wd__wdelta_open(&d, w), 0);
            CHECK_RC(wd__st_open(&st, model), 0);
            for (int i = 0; d && st && i < 3; i++) {
                const wd__wdelta_tensor *t = wd__wdelta_find(d, names[i], strlen(names[i]));
                uint64_t n = t->n;
                float *ref = malloc(n * 4), *full = malloc(n * 4), *got = malloc(n * 4);
                wd__to_f32(ref, base[i].data, (size_t)n, WD_DT_BF16);
                CHECK_RC(ref_apply(d, t, ref), 0);
                long j = wd__st_find(st, names[i]);
                CHECK(j >= 0 && wd__st_read(st, &st->tensors[j], 0, got, n * 4) == 0);
                int same = memcmp(ref, got, n * 4) == 0;
                if (!same)
                    fprintf(stderr, "big v%d %s %s: piecewise decoding differs\n", v,
                            opts[s].strategy, names[i]);
                CHECK(same);
                /* load_delta: base + decompress(), decompress onto zeros */
                float *dz = calloc(n, 4);
                wd__to_f32(full, base[i].data, (size_t)n, WD_DT_BF16);
                if (t->strategy == WD__WS_SPARSE) {
                    void *idx, *val;
                    wd__wdelta_read_array(d, wd__wdelta_field_of(t, WD__WF_INDICES), 1 << 30, &idx);
                    wd__wdelta_read_array(d, wd__wdelta_field_of(t, WD__WF_VALUES), 1 << 30, &val);
                    for (uint64_t k = 0; k < wd__wdelta_field_of(t, WD__WF_INDICES)->count; k++)
                        dz[((int64_t *)idx)[k]] = ((float *)val)[k];
                    free(idx);
                    free(val);
                    for (uint64_t k = 0; k < n; k++)
                        full[k] = full[k] + dz[k];
                } else if (t->strategy == WD__WS_INT4) {
                    CHECK_RC(ref_apply(d, t, dz), 0);
                    for (uint64_t k = 0; k < n; k++)
                        full[k] = full[k] + dz[k];
                } else {
                    CHECK_RC(ref_apply(d, t, full), 0);
                }
                CHECK(nm == 3 && !strcmp(mem[i].name, names[i]) &&
                      memcmp(mem[i].data, full, n * 4) == 0);
                free(dz);
                free(ref);
                free(full);
                free(got);
            }
            wd__st_close(st);
            wd__wdelta_close(d);
            wd_named_tensors_free(mem, nm);
            rm_tree(out);
        }
    }
    for (int i = 0; i < 3; i++) {
        void *p;
        memcpy(&p, &base[i].data, sizeof p);
        free(p);
        memcpy(&p, &ft[i].data, sizeof p);
        free(p);
    }
    unlink(w);
    rm_tree(bdir);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/test_deltafile.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    CHECK(wd_out_dtype_parse("bfloat16") == WD_OUT_BFLOAT16 &&
          wd_out_dtype_parse("float32") == WD_OUT_FLOAT32 &&
          wd_out_dtype_parse("float16") == WD_OUT_FLOAT16 &&
          wd_out_dtype_parse("original") == WD_OUT_ORIGINAL && wd_out_dtype_parse("fp8") == -1);
    for (size_t i = 0; i < N_FIXTURES; i++) {
        test_load(&fixtures[i], i);
        if (fixtures[i].writer == BY_MEM)
            test_load_mem(&fixtures[i]);
        test_save(&fixtures[i]);
    }
    printf("  save: %d byte-identical, %d equal up to ties\n", n_identical, n_equivalent);
    test_folders();
    test_inspect();
    test_bad_files();
    test_save_errors();
    test_config();
    test_big();
    rm_tree(tmpdir);
    return tu_finish("test_deltafile");
}
