/*
 * test_repo.c - the repository through the public API: identity of the
 * fixture models, byte-identical round trips of bases, deltas and chains,
 * idempotence, references, and failures that must leave nothing behind.
 */
#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "wdrepo.h"

static char tmp[256], out[512];

static char *path2(const char *a, const char *b)
{
    static char bufs[8][1024];
    static int i;
    char *p = bufs[i++ % 8];
    snprintf(p, 1024, "%s/%s", a, b);
    return p;
}

static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = 0;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* Every file of src exists in out with the same bytes, and nothing more. */
static int same_folder(const char *src, const char *dst)
{
    int ok = 1, n_src = 0, n_out = 0;
    DIR *d = opendir(src);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        n_src++;
        if (!same_file(path2(src, e->d_name), path2(dst, e->d_name))) {
            fprintf(stderr, "differs: %s\n", e->d_name);
            ok = 0;
        }
    }
    if (d) closedir(d);
    d = opendir(dst);
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            n_out++;
    if (d) closedir(d);
    return ok && n_src == n_out;
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int count_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    if (d) closedir(d);
    return n;
}

static const char *model(const char *name)
{
    static char bufs[4][1024];
    static int i;
    char *p = bufs[i++ % 4];
    snprintf(p, 1024, "%s/models/%s", tu_fixtures(), name);
    return p;
}

static void test_roundtrip(wd_repo *r)
{
    static const struct { const char *dir, *hash; } bases[] = {
        {"base-bf16", "c5a00145cb4768d92f82450884f0bca18582b3b44e31210a9af8b892795e3950"},
        {"base-f32", "4d0e50a07cf3dd9bd94ce81a1928ecbd9abe804720cfd299401e2688fa7ccecf"},
    };
    wd_write_result res;
    for (int i = 0; i < 2; i++) {
        CHECK_RC(wd_add_base(r, model(bases[i].dir), NULL, NULL, &res), 0);
        CHECK(!strcmp(res.id, bases[i].hash));
        CHECK(!strcmp(res.model_hash, bases[i].hash));
        CHECK(res.new_bytes > 0 && !res.already_present);
        /* Again: nothing new. */
        CHECK_RC(wd_add_base(r, model(bases[i].dir), NULL, NULL, &res), 0);
        CHECK(res.already_present && res.new_bytes == 0 && !strcmp(res.id, bases[i].hash));
    }
    CHECK_RC(wd_tag(r, "base", "c5a00145"), 0);
    wd_commit_opts co = {.message = "first fine-tune", .name = "ft"};
    CHECK_RC(wd_commit(r, model("ft-bf16"), "base", &co, NULL, &res), 0);
    char ft_id[WD_HEX_SIZE];
    strcpy(ft_id, res.id);
    CHECK(!strcmp(res.model_hash, "d7cedb1b630e061ad07c28d29e60fd87c5ce5af2caf861364a9b830cb4a41490"));
    CHECK(res.n_unchanged == 3 && res.n_encoded == 10 && res.n_whole == 0 && res.n_dropped == 0);
    CHECK_RC(wd_commit(r, model("ft-bf16"), "base", &co, NULL, &res), 0);
    CHECK(res.already_present && res.new_bytes == 0 && !strcmp(res.id, ft_id));

    wd_commit_opts co2 = {.strategy = "lossless", .name = "ft2"};
    CHECK_RC(wd_commit(r, model("ft2-bf16"), "ft", &co2, NULL, &res), 0);
    CHECK(!strcmp(res.model_hash, "35b563e500a3c799c77a613a5736212782d4ba342ca6a68c187a7a9e532024fb"));
    CHECK_RC(wd_commit(r, model("ft-f32"), "4d0e", NULL, NULL, &res), 0);
    char f32_id[WD_HEX_SIZE];
    strcpy(f32_id, res.id);
    /* A bf16 fine-tune on an f32 base: every float tensor changes dtype, so
     * it is stored whole, and still comes back exactly. */
    CHECK_RC(wd_commit(r, model("ft-bf16"), "4d0e", NULL, NULL, &res), 0);
    CHECK(res.n_whole == 12 && res.n_unchanged == 1); /* the I64 tensor is shared */
    char cross_id[WD_HEX_SIZE];
    strcpy(cross_id, res.id);

    struct { const char *ref, *src; } outs[] = {
        {"base", "base-bf16"}, {"4d0e", "base-f32"}, {"ft", "ft-bf16"},
        {"ft2", "ft2-bf16"},   {f32_id, "ft-f32"},   {cross_id, "ft-bf16"},
    };
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) {
        CHECK_RC(wd_checkout(r, outs[i].ref, out, 0, NULL), 0);
        CHECK(same_folder(model(outs[i].src), out));
        /* Not empty now: refused without force, accepted with it. */
        CHECK_RC(wd_checkout(r, outs[i].ref, out, 0, NULL), WD_EEXISTS);
        CHECK_RC(wd_checkout(r, outs[i].ref, out, WD_CHECKOUT_FORCE, NULL), 0);
        CHECK(same_folder(model(outs[i].src), out));
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
        CHECK(system(cmd) == 0);
    }
    CHECK(count_entries(tmp) == 1); /* only the repository: no temp folders left */
}

static void test_refs(wd_repo *r, const char *dbpath)
{
    char id[WD_HEX_SIZE];
    CHECK_RC(wd_resolve(r, "ft", id), 0);
    CHECK_RC(wd_resolve(r, "c5a00145cb4768d92f82450884f0bca18582b3b44e31210a9af8b892795e3950", id), 0);
    CHECK_RC(wd_resolve(r, "C5A0", id), 0);
    CHECK(!strcmp(id, "c5a00145cb4768d92f82450884f0bca18582b3b44e31210a9af8b892795e3950"));
    CHECK_RC(wd_resolve(r, "c5a", id), WD_EUSAGE);
    CHECK_RC(wd_resolve(r, "ffffffff", id), WD_ENOTFOUND);
    CHECK_RC(wd_resolve(r, "nosuchname", id), WD_ENOTFOUND);
    CHECK_RC(wd_tag(r, "abcd", "ft"), WD_EUSAGE);  /* would shadow a prefix */
    CHECK_RC(wd_tag(r, "../x", "ft"), WD_EUSAGE);
    CHECK_RC(wd_tag(r, "-x", "ft"), WD_EUSAGE);
    CHECK_RC(wd_tag(r, "", "ft"), WD_EUSAGE);
    CHECK_RC(wd_tag(r, "customer/acme-v1.2", "ft"), 0);
    CHECK_RC(wd_tag(r, "customer/acme-v1.2", "base"), 0); /* names move */
    CHECK_RC(wd_resolve(r, "customer/acme-v1.2", id), 0);
    CHECK(!strncmp(id, "c5a00145", 8));

    /* Two objects sharing a prefix: the only way to get one on purpose. */
    sqlite3 *db;
    CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO object(id, kind, strategy, created, model_hash, n_tensors, tensor_bytes, new_bytes) "
                       "VALUES (x'abcd0000000000000000000000000000000000000000000000000000000000aa', 'base', 'base', 1, zeroblob(32), 0, 0, 0),"
                       "       (x'abcd1100000000000000000000000000000000000000000000000000000000bb', 'base', 'base', 1, zeroblob(32), 0, 0, 0)",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_RC(wd_resolve(r, "abcd", id), WD_EAMBIGUOUS);
    CHECK(strstr(wd_errmsg(), "abcd00000000") && strstr(wd_errmsg(), "abcd11000000"));
    CHECK_RC(wd_resolve(r, "abcd1", id), 0);
    CHECK(!strncmp(id, "abcd11", 6));
}

static void test_failures(wd_repo *r, const char *dbpath)
{
    wd_write_result res;
    CHECK_RC(wd_checkout(r, "nosuch", out, 0, NULL), WD_ENOTFOUND);
    CHECK(!exists(out));
    CHECK_RC(wd_commit(r, model("ft-bf16"), "nosuch", NULL, NULL, &res), WD_ENOTFOUND);
    CHECK_RC(wd_add_base(r, path2(tmp, "missing"), NULL, NULL, &res), WD_ENOTFOUND);
    wd_commit_opts bad = {.strategy = "zip"};
    CHECK_RC(wd_commit(r, model("ft-bf16"), "base", &bad, NULL, &res), WD_EUSAGE);
    CHECK_RC(wd_add_base(r, model("base-bf16"), "0123456789", NULL, &res), WD_EUSAGE);

    /* Damage one stored tensor chunk of base-f32 (kept raw: incompressible
     * bits). A checkout must fail verification and leave no folder. */
    sqlite3 *db;
    CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
    int changed = sqlite3_exec(db,
                               "UPDATE chunk SET data = CASE WHEN codec = 0 THEN "
                               "  substr(data, 1, 10) || x'ff' || substr(data, 12) ELSE data END "
                               "WHERE id IN (SELECT substr(chunks, 1, 32) FROM tensor "
                               "  WHERE object = x'4d0e50a07cf3dd9bd94ce81a1928ecbd9abe804720cfd299401e2688fa7ccecf' "
                               "  AND name = 'model.layers.0.attn.q_proj.weight')",
                               NULL, NULL, NULL);
    CHECK(changed == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "UPDATE chunk SET data = substr(data, 1, 20) || CASE WHEN substr(data, 21, 1) = x'00' THEN x'01' ELSE x'00' END "
                       "|| substr(data, 22) WHERE codec <> 0 AND id IN "
                       "(SELECT substr(chunks, 1, 32) FROM tensor WHERE object = "
                       "x'4d0e50a07cf3dd9bd94ce81a1928ecbd9abe804720cfd299401e2688fa7ccecf' "
                       "AND name = 'model.layers.0.attn.q_proj.weight')",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    int rc = wd_checkout(r, "4d0e", out, 0, NULL);
    CHECK(rc == WD_EMISMATCH || rc == WD_ECORRUPT);
    CHECK(!exists(out));
    CHECK(count_entries(tmp) == 1);
}

/* A folder holding model.safetensors with one bf16 tensor "w" of n
 * elements (a pseudo-random pattern; bump changes every 7th element). */
static void write_one_tensor(const char *dir, size_t n, int bump)
{
    mkdir(dir, 0755);
    char *file = path2(dir, "model.safetensors");
    FILE *f = fopen(file, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    char hdr[256];
    int hl = snprintf(hdr, sizeof hdr, "{\"w\":{\"dtype\":\"BF16\",\"shape\":[%zu],\"data_offsets\":[0,%zu]}}",
                      n, 2 * n);
    while (hl % 8)
        hdr[hl++] = ' ';
    uint64_t len = (uint64_t)hl;
    fwrite(&len, 8, 1, f);
    fwrite(hdr, 1, (size_t)hl, f);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        uint16_t v = (uint16_t)(0x3c00u + ((x >> 16) & 0x3ff)); /* values in [2^-7, 2^-6) */
        if (bump && i % 7 == 0)
            v = (uint16_t)(v + 1);
        fwrite(&v, 2, 1, f);
    }
    fclose(f);
}

typedef struct {
    uint64_t total, n_inside;
} progress_seen;

static void record_progress(void *ud, const char *stage, uint64_t done, uint64_t total)
{
    progress_seen *p = ud;
    (void)stage;
    p->total = total;
    p->n_inside += done > 0 && done < total;
}

/* A lossy commit reports progress within a tensor, piece by piece: the
 * only tensor here (3M elements, three codec chunks) used to show 0 until
 * it was stored. */
static void test_lossy_progress(wd_repo *r)
{
    char *base = path2(tmp, "pbase"), *ft = path2(tmp, "pft");
    write_one_tensor(base, (size_t)3 << 20, 0);
    write_one_tensor(ft, (size_t)3 << 20, 1);
    wd_write_result res;
    CHECK_RC(wd_add_base(r, base, "pbase", NULL, &res), 0);
    progress_seen seen = {0, 0};
    wd_options opt = {.threads = 1, .progress = record_progress, .progress_ud = &seen};
    wd_commit_opts co = {.strategy = "int4"};
    CHECK_RC(wd_commit(r, ft, "pbase", &co, &opt, &res), 0);
    CHECK(seen.total == (uint64_t)6 << 20);
    CHECK(seen.n_inside >= 1);
}

/* A model of three tensors, by name: "a" (bfloat16, n_a elements), "ab"
 * (int32, stored exactly by every strategy: it sits between the lossy ones
 * in the model hash's name order) and "b" (bfloat16, 3 pieces). */
static void write_three(const char *dir, size_t n_a, int bump)
{
    mkdir(dir, 0755);
    FILE *f = fopen(path2(dir, "model.safetensors"), "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    size_t n_ab = 1000, n_b = (size_t)3 << 19;
    char hdr[512];
    int hl = snprintf(hdr, sizeof hdr,
                      "{\"a\":{\"dtype\":\"BF16\",\"shape\":[%zu],\"data_offsets\":[0,%zu]},"
                      "\"ab\":{\"dtype\":\"I32\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[%zu,512],\"data_offsets\":[%zu,%zu]}}",
                      n_a, 2 * n_a, n_ab, 2 * n_a, 2 * n_a + 4 * n_ab, n_b / 512, 2 * n_a + 4 * n_ab,
                      2 * n_a + 4 * n_ab + 2 * n_b);
    while (hl % 8)
        hdr[hl++] = ' ';
    uint64_t len = (uint64_t)hl;
    fwrite(&len, 8, 1, f);
    fwrite(hdr, 1, (size_t)hl, f);
    uint32_t x = 777;
    for (size_t i = 0; i < n_a + n_ab + n_b; i++) {
        x = x * 1664525u + 1013904223u;
        if (i >= n_a && i < n_a + n_ab) {
            int32_t v = (int32_t)(x >> 8) + bump;
            fwrite(&v, 4, 1, f);
            continue;
        }
        /* both signs, a spread of magnitudes, some elements unchanged */
        uint16_t v = (uint16_t)(0x3b00u + ((x >> 16) & 0x7ff)) | (uint16_t)((x & 1) << 15);
        if (bump && (x >> 13) % 3 != 0)
            v = (uint16_t)(v + bump * (int)((x >> 9) % 5));
        fwrite(&v, 2, 1, f);
    }
    fclose(f);
}

/* A lossy commit's model hash (computed while encoding, from the arrays
 * still in memory and the parent pieces the encoder kept) is that of what
 * checkout writes: for each strategy, for a tensor over the encoder's cache
 * (its parent decoded again), for int4 codes streamed in several windows,
 * and on a lossy parent. */
static void test_lossy_model_hash(wd_repo *r)
{
    static const char *const strategies[] = {"int4", "quantized", "sparse"};
    char base[300], ft[300], ft2[300], big_base[300], big_ft[300], mid_base[300], mid_ft[300]; /* path2's buffers rotate */
    snprintf(base, sizeof base, "%s/hbase", tmp);
    snprintf(ft, sizeof ft, "%s/hft", tmp);
    snprintf(ft2, sizeof ft2, "%s/hft2", tmp);
    snprintf(big_base, sizeof big_base, "%s/hbigbase", tmp);
    snprintf(big_ft, sizeof big_ft, "%s/hbigft", tmp);
    write_three(base, 5000, 0);
    write_three(ft, 5000, 1);
    write_three(ft2, 5000, 2);
    write_three(big_base, ((size_t)8 << 20) + 4096, 0);
    write_three(big_ft, ((size_t)8 << 20) + 4096, 1);
    /* over WD_SPARSE_KEEP entries at sparsity 0, within the cache */
    snprintf(mid_base, sizeof mid_base, "%s/hmidbase", tmp);
    snprintf(mid_ft, sizeof mid_ft, "%s/hmidft", tmp);
    write_three(mid_base, ((size_t)1 << 20) + 4096, 0);
    write_three(mid_ft, ((size_t)1 << 20) + 4096, 1);
    wd_write_result res;
    wd_options opt = {.threads = 2};
    CHECK_RC(wd_add_base(r, base, "hbase", NULL, &res), 0);
    CHECK_RC(wd_add_base(r, big_base, "hbigbase", NULL, &res), 0);
    CHECK_RC(wd_add_base(r, mid_base, "hmidbase", NULL, &res), 0);
    char hash[WD_HEX_SIZE], name[16];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "hco%d", i);
        char *co = path2(tmp, name);
        wd_commit_opts c = {.strategy = strategies[i % 3]};
        const char *dir = i == 3 ? big_ft : ft, *on = i == 3 ? "hbigbase" : "hbase";
        CHECK_RC(wd_commit(r, dir, on, &c, &opt, &res), 0);
        CHECK_RC(wd_checkout(r, res.id, co, 0, &opt), 0);
        CHECK_RC(wd_model_hash(co, &opt, hash), 0);
        CHECK(!strcmp(hash, res.model_hash));
        if (i == 2) { /* sparse rebuilt from the store: too many entries to keep (sparsity 0), too big to cache */
            for (int j = 0; j < 2; j++) {
                wd_commit_opts cs = {.strategy = "sparse", .sparsity = 0.0, .set = j == 0 ? WD_SET_SPARSITY : 0};
                snprintf(name, sizeof name, "hcs%d", j);
                char *cos = path2(tmp, name);
                CHECK_RC(wd_commit(r, j == 0 ? mid_ft : big_ft, j == 0 ? "hmidbase" : "hbigbase", &cs, &opt, &res), 0);
                CHECK_RC(wd_checkout(r, res.id, cos, 0, &opt), 0);
                CHECK_RC(wd_model_hash(cos, &opt, hash), 0);
                CHECK(!strcmp(hash, res.model_hash));
            }
        }
        if (i == 0) { /* int4 with its codes in two windows (4M elements with 2 worker slots), cached */
            char wbase[300], wft[300];
            snprintf(wbase, sizeof wbase, "%s/hwbase", tmp);
            snprintf(wft, sizeof wft, "%s/hwft", tmp);
            write_three(wbase, ((size_t)4 << 20) + 4097, 0);
            write_three(wft, ((size_t)4 << 20) + 4097, 1);
            wd_options one = {.threads = 1};
            CHECK_RC(wd_add_base(r, wbase, "hwbase", NULL, &res), 0);
            CHECK_RC(wd_commit(r, wft, "hwbase", &c, &one, &res), 0);
            char *cow = path2(tmp, "hco-win");
            CHECK_RC(wd_checkout(r, res.id, cow, 0, &one), 0);
            CHECK_RC(wd_model_hash(cow, &one, hash), 0);
            CHECK(!strcmp(hash, res.model_hash));
        }
        if (i == 0) { /* int4 on that int4 delta */
            char first[WD_HEX_SIZE];
            memcpy(first, res.id, sizeof first);
            CHECK_RC(wd_commit(r, ft2, first, &c, &opt, &res), 0);
            char *co2 = path2(tmp, "hco-chain");
            CHECK_RC(wd_checkout(r, res.id, co2, 0, &opt), 0);
            CHECK_RC(wd_model_hash(co2, &opt, hash), 0);
            CHECK(!strcmp(hash, res.model_hash));
        }
    }
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/wd-test-repo-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    char *rdir = path2(tmp, ".wdrepo");
    char dbpath[1024];
    snprintf(dbpath, sizeof dbpath, "%s/repo.db", rdir);
    snprintf(out, sizeof out, "%s/out", tmp);
    CHECK_RC(wd_repo_init(rdir), 0);
    CHECK_RC(wd_repo_init(rdir), WD_EEXISTS);
    wd_repo *r = NULL;
    CHECK_RC(wd_repo_open(&r, tmp, 0), WD_ENOTFOUND);
    CHECK_RC(wd_repo_open(&r, rdir, 0), 0);
    if (r) {
        test_roundtrip(r);
        test_refs(r, dbpath);
        test_failures(r, dbpath);
        test_lossy_progress(r);
        test_lossy_model_hash(r);
        wd_repo_close(r);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        return 1;
    return tu_finish("test_repo");
}
