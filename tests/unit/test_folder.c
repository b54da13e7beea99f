/*
 * test_folder.c - the folder model hash, which reads runs of neighbouring
 * tensors with one pread, against a plain reference (name order, each
 * tensor read on its own) on shards mixing empty, tiny, piece-sized and
 * multi-piece tensors in data orders unlike the name order.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "folder.h"
#include "hash.h"
#include "safetensors.h"
#include "testutil.h"
#include "wdrepo.h"

#define MIB ((uint64_t)1 << 20)

/* Element counts (U8) in data order; names are given separately. */
typedef struct {
    const char *name;
    uint64_t bytes;
} spec;

static void write_shard(const char *path, const spec *s, size_t n, uint64_t seed)
{
    wd_st_spec *specs = calloc(n, sizeof *specs);
    uint64_t *shapes = calloc(n, sizeof *shapes);
    for (size_t i = 0; i < n; i++) {
        shapes[i] = s[i].bytes;
        specs[i] = (wd_st_spec){s[i].name, WD_DT_U8, 1, &shapes[i]};
    }
    char *hdr = NULL;
    size_t len = 0;
    CHECK_RC(wd__st_header_build(&hdr, &len, specs, n, NULL), 0);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f || !hdr)
        exit(1);
    unsigned char pre[8];
    for (int b = 0; b < 8; b++)
        pre[b] = (unsigned char)((uint64_t)len >> (8 * b));
    fwrite(pre, 1, 8, f);
    fwrite(hdr, 1, len, f);
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++)
        for (uint64_t k = 0; k < s[i].bytes; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            fputc((int)(x >> 56), f);
        }
    CHECK(fclose(f) == 0);
    free(hdr);
    free(specs);
    free(shapes);
}

/* The hash as SPEC section 4 states it, one whole tensor at a time. */
static void reference_hash(const wd_folder *f, uint8_t out[WD_HASH_SIZE])
{
    wd_sha256 *h = NULL;
    CHECK_RC(wd__sha256_new(&h), 0);
    for (size_t i = 0; i < f->n_tensors; i++) {
        const wd_folder_tensor *t = &f->tensors[i];
        uint8_t *buf = malloc(t->t->nbytes + 1);
        CHECK_RC(wd__st_read(f->files[t->file].st, t->t, 0, buf, t->t->nbytes), 0);
        wd__sha256_update(h, t->name, strlen(t->name));
        wd__sha256_update(h, buf, t->t->nbytes);
        free(buf);
    }
    wd__sha256_final(h, out);
    wd__sha256_free(h);
}

static void check_folder(const char *dir)
{
    wd_folder *f = NULL;
    CHECK_RC(wd__folder_open(&f, dir), 0);
    if (!f)
        return;
    uint8_t got[WD_HASH_SIZE], want[WD_HASH_SIZE];
    CHECK_RC(wd__folder_hash(f, got), 0);
    reference_hash(f, want);
    CHECK(memcmp(got, want, WD_HASH_SIZE) == 0);
    wd__folder_close(f);
}

int main(void)
{
    char dir[] = "/tmp/wdtest_folder.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char a[256], b[256], c[256];
    snprintf(a, sizeof a, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(b, sizeof b, "%s/model-00002-of-00002.safetensors", dir);
    snprintf(c, sizeof c, "%s/config.json", dir);

    /* Runs that fit a piece, runs cut by a tensor just over or exactly a
     * piece, empty tensors inside runs, names against the data order, and
     * name-order neighbours that alternate between the two shards. */
    const spec s1[] = {
        {"b.alt.0", 4},        {"d.alt.1", 4},         {"f.alt.2", 4},
        {"z.tiny.0", 3},       {"y.tiny.1", 0},        {"x.tiny.2", 17},
        {"w.piece", MIB},      {"v.tiny.3", 5},        {"u.big", 2 * MIB + 7},
        {"t.almost", MIB - 9}, {"s.tiny.4", 9},        {"r.tiny.5", 1},
    };
    const spec s2[] = {
        {"c.alt.0", 4},   {"e.alt.1", 4}, {"g.alt.2", 4}, {"q.half", MIB / 2 + 1},
        {"p.half", MIB / 2}, {"o.tiny", 2}, {"n.empty", 0},
    };
    write_shard(a, s1, sizeof s1 / sizeof *s1, 1);
    write_shard(b, s2, sizeof s2 / sizeof *s2, 2);
    FILE *f = fopen(c, "w");
    if (f) {
        fputs("{}\n", f);
        fclose(f);
    }
    check_folder(dir);

    /* Many tiny tensors in reverse name order: one run per piece. */
    const size_t n = 5000;
    spec *many = calloc(n, sizeof *many);
    char (*names)[16] = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "m%06zu", n - i);
        many[i] = (spec){names[i], 1 + i % 400};
    }
    unlink(b);
    write_shard(a, many, n, 3);
    check_folder(dir);
    free(many);
    free(names);

    unlink(a);
    unlink(c);
    rmdir(dir);
    return tu_finish("test_folder");
}
