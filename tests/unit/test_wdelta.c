/*
 * test_wdelta.c - the .wdelta container: every deltatensors fixture is read
 * and written back byte for byte, the bad fixtures and hand-made hostile
 * files are refused, and a failing writer leaves nothing on disk.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "hash.h"
#include "testutil.h"
#include "wdelta.h"

static char tmpdir[] = "/tmp/test_wdelta.XXXXXX";

/* Reads a whole file into *out (malloc'd, NUL-terminated; on failure an
 * empty string, so callers may compare and free either way). */
static int read_file(const char *path, unsigned char **out, size_t *len)
{
    *len = 0;
    *out = calloc(1, 1);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0) {
        fclose(f);
        return -1;
    }
    free(*out);
    *out = malloc((size_t)n + 1);
    *len = fread(*out, 1, (size_t)n, f);
    (*out)[*len] = 0;
    fclose(f);
    return *len == (size_t)n ? 0 : -1;
}

/* Files in tmpdir: a failed writer must leave their number unchanged. */
static int count_files(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    if (d)
        closedir(d);
    return n;
}

static const char *const fixtures[] = {
    "wdelta/v1/int4-f32-mem.wdelta", "wdelta/v1/int4.wdelta",
    "wdelta/v1/quantized.wdelta",    "wdelta/v1/sparse.wdelta",
    "wdelta/v2/chain-1.wdelta",      "wdelta/v2/chain-2.wdelta",
    "wdelta/v2/int4-f32-mem.wdelta", "wdelta/v2/int4-o05.wdelta",
    "wdelta/v2/int4.wdelta",         "wdelta/v2/quantized.wdelta",
    "wdelta/v2/sparse-s05.wdelta",   "wdelta/v2/sparse.wdelta",
};
#define N_FIXTURES (sizeof fixtures / sizeof fixtures[0])

static cJSON *load_hashes(void)
{
    char path[512];
    unsigned char *text;
    size_t len;
    snprintf(path, sizeof path, "%s/hashes.json", tu_fixtures());
    if (read_file(path, &text, &len)) {
        free(text);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)text, len);
    free(text);
    return j;
}

/* Decodes every index array through the shared checks (deltatensors writes
 * sparse indices and int4 outliers sorted). Returns the number of failures. */
static int check_all_indices(const wd__wdelta *d)
{
    int bad = 0;
    for (size_t i = 0; i < wd__wdelta_count(d); i++) {
        const wd__wdelta_tensor *t = wd__wdelta_tensor_at(d, i);
        int field = t->strategy == WD__WS_SPARSE ? WD__WF_INDICES
                    : t->strategy == WD__WS_INT4 ? WD__WF_OUTLIER_IDX
                                                 : -1;
        if (field < 0)
            continue;
        const wd__wdelta_field *f = wd__wdelta_field_of(t, field);
        void *arr;
        if (wd__wdelta_read_array(d, f, 1u << 24, &arr)) {
            bad++;
            continue;
        }
        int64_t prev = -1;
        /* in two pieces, to carry prev across */
        size_t half = (size_t)f->count / 2, size = f->dtype == WD_DT_I32 ? 4 : 8;
        if (wd__wdelta_check_indices(t, field, arr, f->dtype, half, 0, t->n, 1, &prev) ||
            wd__wdelta_check_indices(t, field, (char *)arr + half * size, f->dtype,
                                     (size_t)f->count - half, half, t->n, 1, &prev))
            bad++;
        free(arr);
    }
    return bad;
}

static void test_fixtures_read(void)
{
    cJSON *hashes = load_hashes();
    CHECK(hashes != NULL);
    const cJSON *wd = cJSON_GetObjectItemCaseSensitive(hashes, "wdelta");
    for (size_t i = 0; i < N_FIXTURES; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tu_fixtures(), fixtures[i]);
        const cJSON *facts = cJSON_GetObjectItemCaseSensitive(wd, fixtures[i]);
        CHECK(facts != NULL);
        wd__wdelta *d = NULL;
        CHECK_RC(wd__wdelta_open(&d, path), 0);
        if (!d || !facts)
            continue;
        CHECK(wd__wdelta_version(d) ==
              cJSON_GetObjectItemCaseSensitive(facts, "version")->valueint);
        CHECK(strcmp(wd__wdelta_strategy_name(wd__wdelta_strategy(d)),
                     cJSON_GetObjectItemCaseSensitive(facts, "strategy")->valuestring) == 0);
        CHECK(strcmp(wd__wdelta_parent_hash(d),
                     cJSON_GetObjectItemCaseSensitive(facts, "parent_hash")->valuestring) == 0);
        CHECK((double)wd__wdelta_count(d) ==
              cJSON_GetObjectItemCaseSensitive(facts, "n_tensors")->valuedouble);
        CHECK((double)wd__wdelta_file_size(d) ==
              cJSON_GetObjectItemCaseSensitive(facts, "size")->valuedouble);
        CHECK(check_all_indices(d) == 0);

        /* Header order is sorted by name; a v1 file's first-record order is
         * its hash order (listed in hashes.json); v2 records are sorted. */
        for (size_t k = 1; k < wd__wdelta_count(d); k++)
            CHECK(strcmp(wd__wdelta_tensor_at(d, k - 1)->name, wd__wdelta_tensor_at(d, k)->name) < 0);
        const cJSON *order = cJSON_GetObjectItemCaseSensitive(facts, "hash_order");
        if (cJSON_IsArray(order)) {
            size_t k = 0;
            for (const cJSON *e = order->child; e; e = e->next, k++) {
                const wd__wdelta_tensor *t = wd__wdelta_tensor_by_record(d, k);
                CHECK(t && strcmp(t->name, e->valuestring) == 0);
            }
            CHECK(k == wd__wdelta_count(d));
        } else {
            for (size_t k = 0; k < wd__wdelta_count(d); k++)
                CHECK(wd__wdelta_tensor_by_record(d, k) == wd__wdelta_tensor_at(d, k));
        }
        /* find works on the non-ASCII name */
        const char *e_name = "model.\xc3\xabmbed.weight";
        const wd__wdelta_tensor *t = wd__wdelta_find(d, e_name, strlen(e_name));
        CHECK(t != NULL);
        CHECK(wd__wdelta_find(d, "model.", 6) == NULL);
        if (t) {
            CHECK(t->ndim == 2 && t->shape[0] == 29 && t->shape[1] == 24 && t->n == 696);
            CHECK(strcmp(t->dtype, "float32") == 0);
            CHECK(wd__wdelta_version(d) == 1 || strcmp(t->base_dtype, "float32") == 0 ||
                  strcmp(t->base_dtype, "bfloat16") == 0);
            if (t->strategy == WD__WS_QUANTIZED) {
                CHECK(t->n_cols == 24 && t->field[WD__WF_SCALES].count == 29);
                CHECK(t->field[WD__WF_PACKED_SIGNS].count == 87);
            }
            if (t->strategy == WD__WS_INT4)
                CHECK(t->n_outliers == t->field[WD__WF_OUTLIER_IDX].count &&
                      t->int4_layout == wd__wdelta_version(d));
        }
        /* pread bounds */
        const wd__wdelta_tensor *t0 = wd__wdelta_tensor_at(d, 0);
        const int *fl;
        wd__wdelta_fields_of(t0->strategy, &fl);
        const wd__wdelta_field *f0 = wd__wdelta_field_of(t0, fl[0]);
        unsigned char one;
        CHECK_RC(wd__wdelta_pread(d, f0, f0->nbytes, &one, 1), WD_EUSAGE);
        void *arr;
        CHECK_RC(wd__wdelta_read_array(d, f0, 0, &arr), f0->nbytes ? WD_ENOMEM : 0);
        if (!f0->nbytes)
            free(arr);
        wd__wdelta_close(d);

        /* The same through the in-memory reader. */
        unsigned char *buf;
        size_t len;
        CHECK(read_file(path, &buf, &len) == 0);
        CHECK_RC(wd__wdelta_open_mem(&d, buf, len), 0);
        if (d)
            CHECK((double)wd__wdelta_count(d) ==
                  cJSON_GetObjectItemCaseSensitive(facts, "n_tensors")->valuedouble);
        wd__wdelta_close(d);
        free(buf);
    }
    cJSON_Delete(hashes);
}

/* Writes d back through the writer (records copied in pieces of 'piece'
 * bytes) to out. With scratch, the header entries are rebuilt the way a
 * caller without a source file would (wd__wdelta_tensor_fill_ex from the
 * tensor's facts and options only), mem_order choosing save_delta's order,
 * and the parent hash is given late (wd__wdelta_writer_set_parent, as
 * save-delta does): after the first record (piece 7) or before finish. */
static int copy_wdelta(const wd__wdelta *d, const char *out, size_t piece, int scratch,
                       int mem_order)
{
    size_t n = wd__wdelta_count(d);
    wd__wdelta_tensor *ts = calloc(n ? n : 1, sizeof *ts);
    for (size_t i = 0; i < n; i++) {
        const wd__wdelta_tensor *src = wd__wdelta_tensor_by_record(d, i);
        if (!scratch) {
            ts[i] = *src;
            continue;
        }
        wd__wdelta_tensor *t = &ts[i];
        t->name = src->name;
        t->name_len = src->name_len;
        t->strategy = src->strategy;
        t->ndim = src->ndim;
        memcpy(t->shape, src->shape, sizeof t->shape);
        memcpy(t->base_dtype, src->base_dtype, sizeof t->base_dtype);
        t->sparsity = src->sparsity;
        t->outlier_fraction = src->outlier_fraction;
        t->n_outliers = src->n_outliers;
        CHECK_RC(wd__wdelta_tensor_fill_ex(t, wd__wdelta_version(d),
                                           mem_order ? WD__WDELTA_FILL_MEM_ORDER : 0), 0);
        memcpy(t->field, src->field, sizeof t->field); /* where the arrays are */
    }
    wd__wdelta_writer *w;
    int rc = wd__wdelta_writer_begin(&w, out, wd__wdelta_version(d),
                                     scratch ? NULL : wd__wdelta_parent_hash(d),
                                     wd__wdelta_strategy(d), ts, n);
    int late = scratch;
    if (rc) {
        free(ts);
        return rc;
    }
    unsigned char *buf = malloc(piece);
    size_t ti;
    int field;
    while (!rc && wd__wdelta_writer_next(w, &ti, &field)) {
        const wd__wdelta_field *f = wd__wdelta_field_of(&ts[ti], field);
        uint64_t dims[1] = {f->count};
        rc = wd__wdelta_writer_record(w, ts[ti].name, ts[ti].name_len, field, f->dtype, 1, dims);
        for (uint64_t off = 0; !rc && off < f->nbytes; off += piece) {
            size_t len = f->nbytes - off < piece ? (size_t)(f->nbytes - off) : piece;
            rc = wd__wdelta_pread(d, f, off, buf, len);
            if (!rc)
                rc = wd__wdelta_writer_write(w, buf, len);
        }
        if (!rc && late && piece == 7) {
            rc = wd__wdelta_writer_set_parent(w, wd__wdelta_parent_hash(d));
            late = 0;
        }
    }
    if (!rc && late)
        rc = wd__wdelta_writer_set_parent(w, wd__wdelta_parent_hash(d));
    free(buf);
    free(ts);
    if (rc) {
        wd__wdelta_writer_abort(w);
        return rc;
    }
    return wd__wdelta_writer_finish(w);
}

static void test_round_trip(void)
{
    for (size_t i = 0; i < N_FIXTURES; i++) {
        char path[512], out[600];
        snprintf(path, sizeof path, "%s/%s", tu_fixtures(), fixtures[i]);
        snprintf(out, sizeof out, "%s/rt-%zu.wdelta", tmpdir, i);
        wd__wdelta *d;
        CHECK_RC(wd__wdelta_open(&d, path), 0);
        if (!d)
            continue;
        for (int scratch = 0; scratch < 2; scratch++) {
            /* only 0.3.0's in-memory writer has its own key order */
            int mem = wd__wdelta_version(d) == 2 && strstr(fixtures[i], "mem") != NULL;
            CHECK_RC(copy_wdelta(d, out, i % 2 ? 1000 : 7, scratch, mem), 0);
            unsigned char *a, *b;
            size_t alen, blen;
            CHECK(read_file(path, &a, &alen) == 0);
            CHECK(read_file(out, &b, &blen) == 0);
            int same = alen == blen && memcmp(a, b, alen) == 0;
            if (!same)
                fprintf(stderr, "%s differs: %s\n", scratch ? "scratch write" : "round trip",
                        fixtures[i]);
            CHECK(same);
            free(a);
            free(b);
            unlink(out);
        }
        wd__wdelta_close(d);
    }
}

/* A writer begun without a parent hash must get it exactly once. */
static void test_late_parent(void)
{
    static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";
    char out[600];
    snprintf(out, sizeof out, "%s/late.wdelta", tmpdir);
    wd__wdelta_tensor t = {.name = (char *)(uintptr_t)"w", .name_len = 1,
                           .strategy = WD__WS_SPARSE, .ndim = 1, .shape = {4}, .sparsity = 0.5};
    CHECK_RC(wd__wdelta_tensor_fill_ex(&t, 2, 0), 0);
    wd__wdelta_writer *w = NULL;
    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, NULL, WD__WS_SPARSE, &t, 1), 0);
    if (w)
        CHECK_RC(wd__wdelta_writer_finish(w), WD_EUSAGE); /* never given */
    w = NULL;
    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, NULL, WD__WS_SPARSE, &t, 1), 0);
    if (w) {
        CHECK_RC(wd__wdelta_writer_set_parent(w, "xyz"), WD_EUSAGE);
        wd__wdelta_writer_abort(w);
    }
    w = NULL;
    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, NULL, WD__WS_SPARSE, &t, 1), 0);
    if (w) {
        CHECK_RC(wd__wdelta_writer_set_parent(w, zeros), 0);
        CHECK_RC(wd__wdelta_writer_set_parent(w, zeros), WD_EUSAGE); /* twice */
        wd__wdelta_writer_abort(w);
    }
    CHECK(access(out, F_OK) != 0);
}

static void test_bad_fixtures(void)
{
    static const struct {
        const char *file, *msg;
    } bad[] = {
        {"bad-magic.wdelta", "bad magic"},
        {"checksum-flip.wdelta", "checksum mismatch"},
        {"header-len-too-big.wdelta", "exceeds the file size"},
        {"truncated-100.wdelta", "truncated"},
        {"version-99.wdelta", "unsupported .wdelta version 99 (supported: 1, 2)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/bad/%s", tu_fixtures(), bad[i].file);
        wd__wdelta *d = NULL;
        CHECK_RC(wd__wdelta_open(&d, path), WD_EBADINPUT);
        CHECK(d == NULL);
        if (!strstr(wd_errmsg(), bad[i].msg))
            fprintf(stderr, "%s: message '%s' lacks '%s'\n", bad[i].file, wd_errmsg(),
                    bad[i].msg);
        CHECK(strstr(wd_errmsg(), bad[i].msg) != NULL);
    }
    wd__wdelta *d;
    CHECK_RC(wd__wdelta_open(&d, "/nonexistent/x.wdelta"), WD_ENOTFOUND);
    CHECK_RC(wd__wdelta_open(&d, "/tmp"), WD_EBADINPUT);
}

/* ---- Hand-made files ---------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t len, cap;
} buf_t;

static void b_add(buf_t *b, const void *s, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void b_u32(buf_t *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    b_add(b, x, 4);
}

static void b_u64(buf_t *b, uint64_t v)
{
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}

static void b_start(buf_t *b, uint32_t version, const char *header)
{
    b->len = 0;
    b_add(b, "wdelta", 7);
    b_u32(b, version);
    b_u32(b, (uint32_t)strlen(header));
    b_add(b, header, strlen(header));
}

/* A record with ndim dims and dlen bytes of data (data NULL: zeros). */
static void b_rec(buf_t *b, const char *name, const char *field, const char *dtype,
                  uint32_t ndim, const uint64_t *dims, uint64_t dlen, const void *data)
{
    b_u32(b, (uint32_t)strlen(name));
    b_add(b, name, strlen(name));
    b_u32(b, (uint32_t)strlen(field));
    b_add(b, field, strlen(field));
    b_u32(b, (uint32_t)strlen(dtype));
    b_add(b, dtype, strlen(dtype));
    b_u32(b, ndim);
    for (uint32_t i = 0; i < ndim; i++)
        b_u64(b, dims[i]);
    b_u64(b, dlen);
    for (uint64_t i = 0; i < dlen; i++) {
        unsigned char c = data ? ((const unsigned char *)data)[i] : 0;
        b_add(b, &c, 1);
    }
}

/* A 1-D record of count elements of size bytes. */
static void b_rec1(buf_t *b, const char *name, const char *field, const char *dtype,
                   uint64_t count, unsigned size, const void *data)
{
    b_rec(b, name, field, dtype, 1, &count, count * size, data);
}

static void b_finish(buf_t *b)
{
    uint8_t h[WD_HASH_SIZE];
    wd__sha256(b->p, b->len, h);
    b_add(b, h, sizeof h);
}

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define TOP(strategy, tensors) \
    "{\"parent_hash\":\"" ZERO_HASH "\",\"strategy\":\"" strategy "\",\"tensors\":{" tensors "}}"
#define SPARSE_A(shape)                                                                     \
    "\"a\":{\"strategy\":\"sparse\",\"shape\":" shape ",\"dtype\":\"float32\",\"sparsity\":0.5," \
    "\"indices\":{\"_ref\":\"indices\"},\"values\":{\"_ref\":\"values\"}}"
#define QUANT_Q(shape, n, cols)                                                              \
    "\"q\":{\"strategy\":\"quantized\",\"shape\":" shape ",\"dtype\":\"float32\",\"n_elements\":" n \
    ",\"n_cols\":" cols ",\"scales\":{\"_ref\":\"scales\"},\"packed_signs\":{\"_ref\":\"packed_signs\"}}"
#define INT4_I(layout, n, nout)                                                               \
    "\"i\":{\"strategy\":\"int4\",\"shape\":[" n "],\"dtype\":\"float32\",\"outlier_fraction\":0.01," \
    "\"n_elements\":" n ",\"n_outliers\":" nout layout ",\"outlier_idx\":{\"_ref\":\"outlier_idx\"}," \
    "\"outlier_vals\":{\"_ref\":\"outlier_vals\"},\"scale\":{\"_ref\":\"scale\"},"                \
    "\"zero_point\":{\"_ref\":\"zero_point\"},\"packed\":{\"_ref\":\"packed\"}}"

static const int64_t idx2[2] = {1, 3};

/* Opens b in memory and expects rc and a message holding msg. */
static void expect(const buf_t *b, int want, const char *msg, int line)
{
    wd__wdelta *d = NULL;
    int rc = wd__wdelta_open_mem(&d, b->p, b->len);
    if (rc != want || (msg && !strstr(wd_errmsg(), msg))) {
        tu_failed++;
        fprintf(stderr, "%s:%d: open returned %d (%s), want %d with '%s'\n", __FILE__, line, rc,
                wd_errmsg(), want, msg ? msg : "");
    } else {
        tu_passed++;
    }
    if (rc == 0)
        CHECK(d != NULL);
    else
        CHECK(d == NULL);
    wd__wdelta_close(d);
}
#define EXPECT_BAD(b, msg) expect((b), WD_EBADINPUT, (msg), __LINE__)
#define EXPECT_OK(b) expect((b), 0, NULL, __LINE__)

static void sparse_file(buf_t *b, const char *header)
{
    b_start(b, 2, header);
    b_rec1(b, "a", "indices", "int64", 2, 8, idx2);
    b_rec1(b, "a", "values", "float32", 2, 4, NULL);
    b_finish(b);
}

static void test_hostile(void)
{
    buf_t b = {0};
    const char *h_sparse = TOP("sparse", SPARSE_A("[4]"));

    sparse_file(&b, h_sparse);
    EXPECT_OK(&b);
    /* values before indices: records may come in any order */
    b_start(&b, 2, h_sparse);
    b_rec1(&b, "a", "values", "float32", 2, 4, NULL);
    b_rec1(&b, "a", "indices", "int64", 2, 8, idx2);
    b_finish(&b);
    EXPECT_OK(&b);

    /* Records disagreeing with the header, or with each other. */
    b_start(&b, 2, h_sparse);
    b_rec1(&b, "a", "indices", "int64", 2, 8, idx2);
    b_rec1(&b, "a", "indices", "int64", 2, 8, idx2);
    b_rec1(&b, "a", "values", "float32", 2, 4, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "duplicate record");

    b_start(&b, 2, h_sparse);
    b_rec1(&b, "a", "indices", "int64", 2, 8, idx2);
    b_rec1(&b, "a", "values", "float32", 2, 4, NULL);
    b_rec1(&b, "b", "values", "float32", 2, 4, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "tensor 'b', not in the header");

    b_start(&b, 2, h_sparse);
    b_rec1(&b, "a", "indices", "int64", 2, 8, idx2);
    b_rec1(&b, "a", "values", "float32", 2, 4, NULL);
    b_rec1(&b, "a\n", "values", "float32", 2, 4, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "tensor 'a\\x0a', not in the header"); /* no raw newline in the message */

    b_start(&b, 2, h_sparse);
    b_rec1(&b, "a", "indices", "int64", 2, 8, idx2);
    b_rec1(&b, "a", "values", "float32", 2, 4, NULL);
    b_rec1(&b, "a", "packed", "uint8", 1, 1, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "has no field 'packed'");

    b_start(&b, 2, h_sparse);
    b_rec1(&b, "a", "indices", "int64", 2, 8, idx2);
    b_rec1(&b, "a", "bogus", "uint8", 1, 1, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "has no field");

    b_start(&b, 2, h_sparse);
    b_rec1(&b, "a", "indices", "int64", 2, 8, idx2);
    b_finish(&b);
    EXPECT_BAD(&b, "field 'values' has no record");

    b_start(&b, 2, h_sparse);
    b_rec1(&b, "a", "indices", "int32", 2, 4, NULL);
    b_rec1(&b, "a", "values", "float32", 2, 4, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "dtype int32, expected int64");

    b_start(&b, 2, h_sparse);
    b_rec1(&b, "a", "indices", "complex64", 2, 8, idx2);
    b_finish(&b);
    EXPECT_BAD(&b, "unknown dtype");

    b_start(&b, 2, h_sparse);
    b_rec1(&b, "a", "indices", "int64", 2, 8, idx2);
    b_rec1(&b, "a", "values", "float32", 3, 4, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "2 indices but 3 values");

    b_start(&b, 2, h_sparse);
    b_rec1(&b, "a", "indices", "int64", 5, 8, NULL);
    b_rec1(&b, "a", "values", "float32", 5, 4, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "5 sparse indices for 4 elements");

    {   /* dims whose product overflows u64, data len 16 */
        uint64_t dims[2] = {UINT64_C(1) << 33, UINT64_C(1) << 33};
        b_start(&b, 2, h_sparse);
        b_rec(&b, "a", "indices", "int64", 2, dims, 16, idx2);
        b_rec1(&b, "a", "values", "float32", 2, 4, NULL);
        b_finish(&b);
        EXPECT_BAD(&b, "dims disagree");
        uint64_t d1[1] = {UINT64_C(1) << 62}; /* count x itemsize overflows */
        b_start(&b, 2, h_sparse);
        b_rec(&b, "a", "indices", "int64", 1, d1, 16, idx2);
        b_finish(&b);
        EXPECT_BAD(&b, "dims disagree");
        uint64_t d2[2] = {1, 2}; /* right size, but 2-D */
        b_start(&b, 2, h_sparse);
        b_rec(&b, "a", "indices", "int64", 2, d2, 16, idx2);
        b_finish(&b);
        EXPECT_BAD(&b, "expected 1-D");
        uint64_t d3[1] = {2}; /* data length disagrees */
        b_start(&b, 2, h_sparse);
        b_rec(&b, "a", "indices", "int64", 1, d3, 12, idx2);
        b_finish(&b);
        EXPECT_BAD(&b, "dims disagree with the data length 12");
        uint64_t d4[17] = {0};
        b_start(&b, 2, h_sparse);
        b_rec(&b, "a", "indices", "int64", 17, d4, 0, NULL);
        b_finish(&b);
        EXPECT_BAD(&b, "17 dimensions");
    }

    /* Data length pointing far past the end. */
    b_start(&b, 2, h_sparse);
    b_u32(&b, 1);
    b_add(&b, "a", 1);
    b_u32(&b, 7);
    b_add(&b, "indices", 7);
    b_u32(&b, 5);
    b_add(&b, "int64", 5);
    b_u32(&b, 1);
    b_u64(&b, UINT64_C(1) << 60);
    b_u64(&b, UINT64_C(1) << 63);
    b_finish(&b);
    EXPECT_BAD(&b, "truncated");
    /* Name length past the end. */
    b_start(&b, 2, h_sparse);
    b_u32(&b, 0xffffffffu);
    b_finish(&b);
    EXPECT_BAD(&b, "truncated");

    /* Truncated in every part: cut a valid file at each length, both with
     * the old checksum (the checksum catches it) and with a recomputed one
     * (the framing must). */
    sparse_file(&b, h_sparse);
    buf_t whole = {0};
    b_add(&whole, b.p, b.len - WD_HASH_SIZE);
    int all_bad = 1, all_trunc_msg = 1;
    size_t records_start = 15 + strlen(h_sparse);
    for (size_t cut = 0; cut < whole.len; cut++) {
        buf_t c = {0};
        b_add(&c, whole.p, cut);
        b_finish(&c);
        wd__wdelta *d = NULL;
        int rc = wd__wdelta_open_mem(&d, c.p, c.len);
        if (rc != WD_EBADINPUT)
            all_bad = 0;
        /* a cut inside a record (not at its boundary) says "truncated" */
        size_t second = records_start + 4 + 1 + 4 + 7 + 4 + 5 + 4 + 8 + 8 + 16;
        if (cut > records_start && cut != second && !strstr(wd_errmsg(), "truncated")) {
            all_trunc_msg = 0;
            fprintf(stderr, "cut %zu: %s\n", cut, wd_errmsg());
        }
        wd__wdelta_close(d);
        rc = wd__wdelta_open_mem(&d, b.p, cut + (cut < b.len ? 0 : 0));
        if (rc != WD_EBADINPUT)
            all_bad = 0;
        wd__wdelta_close(d);
        free(c.p);
    }
    CHECK(all_bad);
    CHECK(all_trunc_msg);
    free(whole.p);
    {   /* the real truncation: last 10 bytes of data and the checksum gone */
        sparse_file(&b, h_sparse);
        wd__wdelta *d = NULL;
        CHECK_RC(wd__wdelta_open_mem(&d, b.p, b.len - 40), WD_EBADINPUT);
        CHECK(strstr(wd_errmsg(), "checksum mismatch: .wdelta file is truncated") != NULL);
        b.p[b.len - 40] ^= 1; /* a flipped data byte is not called truncation */
        CHECK_RC(wd__wdelta_open_mem(&d, b.p, b.len), WD_EBADINPUT);
        CHECK(strstr(wd_errmsg(), "corrupted or truncated") != NULL);
    }

    /* Prefix and header. */
    sparse_file(&b, h_sparse);
    b.p[11] = 0xf0, b.p[12] = 0xff, b.p[13] = 0xff, b.p[14] = 0xff;
    EXPECT_BAD(&b, "exceeds the file size");
    b.len = 5;
    EXPECT_BAD(&b, "too short");
    sparse_file(&b, h_sparse);
    b.len = 40;
    EXPECT_BAD(&b, "truncated .wdelta file");
    sparse_file(&b, "{not json");
    EXPECT_BAD(&b, "not valid JSON");
    sparse_file(&b, "[1,2]");
    EXPECT_BAD(&b, "not a JSON object");
    sparse_file(&b, TOP("sparse", SPARSE_A("[4]")) "x");
    EXPECT_BAD(&b, "not valid JSON");
    sparse_file(&b, TOP("sparse", SPARSE_A("[4]")) " \n");
    EXPECT_OK(&b);
    sparse_file(&b, TOP("sparse", SPARSE_A("[04]")));
    EXPECT_BAD(&b, "bad number");
    sparse_file(&b, TOP("sparse", SPARSE_A("[4.5]")));
    EXPECT_BAD(&b, "bad dimension");
    sparse_file(&b, TOP("sparse", SPARSE_A("[-4]")));
    EXPECT_BAD(&b, "bad dimension");
    sparse_file(&b, TOP("sparse", SPARSE_A("[4]") "," SPARSE_A("[4]")));
    EXPECT_BAD(&b, "names tensor 'a' twice");
    sparse_file(&b, TOP("lossless", SPARSE_A("[4]")));
    EXPECT_BAD(&b, "strategy 'lossless' is not one deltatensors knows");
    sparse_file(&b, "{\"parent_hash\":\"abc\",\"strategy\":\"sparse\",\"tensors\":{" SPARSE_A("[4]") "}}");
    EXPECT_BAD(&b, "parent_hash");
    sparse_file(&b, "{\"strategy\":\"sparse\",\"tensors\":{" SPARSE_A("[4]") "}}");
    EXPECT_BAD(&b, "lacks 'parent_hash'");
    sparse_file(&b, "{\"parent_hash\":\"" ZERO_HASH "\",\"parent_hash\":\"" ZERO_HASH
                    "\",\"strategy\":\"sparse\",\"tensors\":{" SPARSE_A("[4]") "}}");
    EXPECT_BAD(&b, "duplicate key 'parent_hash'");
    sparse_file(&b, TOP("sparse", "\"a\":{\"strategy\":\"sparse\",\"shape\":[4],\"shape\":[4],"
                                  "\"dtype\":\"float32\",\"indices\":{\"_ref\":\"indices\"},"
                                  "\"values\":{\"_ref\":\"values\"}}"));
    EXPECT_BAD(&b, "duplicate key 'shape'");
    sparse_file(&b, TOP("sparse", "\"a\":{\"strategy\":\"sparse\",\"shape\":[4],"
                                  "\"dtype\":\"float32\",\"indices\":{\"_ref\":\"values\"},"
                                  "\"values\":{\"_ref\":\"values\"}}"));
    EXPECT_BAD(&b, "bad value for 'indices'");
    sparse_file(&b, TOP("sparse", "\"a\":{\"strategy\":\"sparse\",\"shape\":[4],"
                                  "\"dtype\":\"float32\",\"indices\":{\"_ref\":\"indices\"}}"));
    EXPECT_BAD(&b, "lacks 'values'");
    sparse_file(&b, TOP("sparse", "\"a\":{\"strategy\":\"sparse\",\"shape\":[4],\"n_cols\":4,"
                                  "\"dtype\":\"float32\",\"indices\":{\"_ref\":\"indices\"},"
                                  "\"values\":{\"_ref\":\"values\"}}"));
    EXPECT_BAD(&b, "'n_cols' does not belong to strategy sparse");
    sparse_file(&b, TOP("sparse", "\"a\":{\"strategy\":\"sparse\",\"shape\":[4],\"extra\":1,"
                                  "\"dtype\":\"float32\",\"indices\":{\"_ref\":\"indices\"},"
                                  "\"values\":{\"_ref\":\"values\"}}"));
    EXPECT_BAD(&b, "unknown key 'extra'");
    sparse_file(&b, TOP("sparse", "\"a\":{\"strategy\":\"sparse\",\"shape\":[4],\"sparsity\":1.5,"
                                  "\"dtype\":\"float32\",\"indices\":{\"_ref\":\"indices\"},"
                                  "\"values\":{\"_ref\":\"values\"}}"));
    EXPECT_BAD(&b, "sparsity must be in [0, 1]");
    sparse_file(&b, TOP("sparse", SPARSE_A("[4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4]")));
    EXPECT_BAD(&b, "more than 16 dimensions");
    sparse_file(&b, TOP("sparse", SPARSE_A("[4294967296,4294967296]")));
    EXPECT_BAD(&b, "shape product overflows");
    sparse_file(&b, TOP("sparse", "\"a\\u0000b\":{}"));
    EXPECT_BAD(&b, "NUL");
    sparse_file(&b, TOP("sparse", "\"a\xff\":{}"));
    EXPECT_BAD(&b, "UTF-8");
    sparse_file(&b, TOP("sparse", "\"a\xed\xa0\x80\":{}")); /* surrogate as UTF-8 */
    EXPECT_BAD(&b, "UTF-8");
    sparse_file(&b, TOP("sparse", "\"a\tb\":{}"));
    EXPECT_BAD(&b, "control character");
    sparse_file(&b, TOP("sparse", "\"\":{}"));
    EXPECT_BAD(&b, "empty name");
    /* Tensor count beyond what the file can hold: refused before allocating */
    {
        buf_t h = {0};
        const char *top = "{\"parent_hash\":\"" ZERO_HASH "\",\"strategy\":\"sparse\",\"tensors\":{";
        b_add(&h, top, strlen(top));
        for (int i = 0; i < 2000; i++) {
            char e[32];
            b_add(&h, e, (size_t)snprintf(e, sizeof e, "%s\"t%d\":{}", i ? "," : "", i));
        }
        b_add(&h, "}}", 3);
        sparse_file(&b, (const char *)h.p);
        EXPECT_BAD(&b, "the file has no room for their records");
        free(h.p);
    }

    /* Huge header length: refused before the checksum is even read. A sparse
     * file of 101 MB costs no disk. */
    {
        char path[600];
        snprintf(path, sizeof path, "%s/huge.wdelta", tmpdir);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        unsigned char pre[15] = {'w', 'd', 'e', 'l', 't', 'a', 0, 2, 0, 0, 0};
        uint32_t hl = (100u << 20) + 1;
        for (int i = 0; i < 4; i++)
            pre[11 + i] = (unsigned char)(hl >> (8 * i));
        CHECK(write(fd, pre, 15) == 15);
        CHECK(ftruncate(fd, 101 << 20) == 0);
        close(fd);
        wd__wdelta *d;
        CHECK_RC(wd__wdelta_open(&d, path), WD_EBADINPUT);
        CHECK(strstr(wd_errmsg(), "exceeds the limit") != NULL);
        unlink(path);
    }

    /* quantized: counts against the header */
    const char *h_q = TOP("quantized", QUANT_Q("[3,5]", "15", "5"));
    b_start(&b, 2, h_q);
    b_rec1(&b, "q", "scales", "float16", 3, 2, NULL);
    b_rec1(&b, "q", "packed_signs", "uint8", 2, 1, NULL);
    b_finish(&b);
    EXPECT_OK(&b);
    b_start(&b, 2, h_q);
    b_rec1(&b, "q", "scales", "float16", 3, 2, NULL);
    b_rec1(&b, "q", "packed_signs", "uint8", 3, 1, NULL); /* per-row packing: 3 bytes */
    b_finish(&b);
    EXPECT_BAD(&b, "'packed_signs' has 3 elements, the header implies 2");
    b_start(&b, 2, h_q);
    b_rec1(&b, "q", "scales", "float16", 15, 2, NULL);
    b_rec1(&b, "q", "packed_signs", "uint8", 2, 1, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "'scales' has 15 elements, the header implies 3");
    b_start(&b, 2, h_q);
    b_rec1(&b, "q", "scales", "float32", 3, 4, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "dtype float32, expected float16");
    sparse_file(&b, TOP("quantized", QUANT_Q("[3,5]", "16", "5")));
    EXPECT_BAD(&b, "n_elements 16 disagrees with its shape (15 elements)");
    sparse_file(&b, TOP("quantized", QUANT_Q("[3,5]", "15", "3")));
    EXPECT_BAD(&b, "n_cols 3 disagrees");
    b_start(&b, 1, TOP("quantized", QUANT_Q("[]", "1", "1")));
    b_rec1(&b, "q", "scales", "float16", 1, 2, NULL);
    b_rec1(&b, "q", "packed_signs", "uint8", 1, 1, NULL);
    b_finish(&b);
    EXPECT_OK(&b);

    /* int4: v1 packs only non-outliers and wants int64 indices; v2 packs all
     * and takes int32 too. */
    const char *h_i1 = TOP("int4", INT4_I("", "10", "1"));
    b_start(&b, 1, h_i1);
    b_rec1(&b, "i", "outlier_idx", "int64", 1, 8, NULL);
    b_rec1(&b, "i", "outlier_vals", "float16", 1, 2, NULL);
    b_rec1(&b, "i", "scale", "float16", 1, 2, NULL);
    b_rec1(&b, "i", "zero_point", "float16", 1, 2, NULL);
    b_rec1(&b, "i", "packed", "uint8", 5, 1, NULL); /* ceil(9 / 2) */
    b_finish(&b);
    EXPECT_OK(&b);
    b_start(&b, 1, h_i1);
    b_rec1(&b, "i", "outlier_idx", "int32", 1, 4, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "dtype int32, expected int64");
    b_start(&b, 1, h_i1);
    b_rec1(&b, "i", "packed", "uint8", 4, 1, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "'packed' has 4 elements, the header implies 5");
    b_start(&b, 1, h_i1);
    b_rec1(&b, "i", "outlier_vals", "float16", 2, 2, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "'outlier_vals' has 2 elements, the header implies 1");
    b_start(&b, 1, h_i1);
    b_rec1(&b, "i", "scale", "float16", 2, 2, NULL);
    b_finish(&b);
    EXPECT_BAD(&b, "'scale' has 2 elements, the header implies 1");
    const char *h_i2 = TOP("int4", INT4_I(",\"int4_layout\":2", "10", "1"));
    b_start(&b, 2, h_i2);
    b_rec1(&b, "i", "outlier_idx", "int32", 1, 4, NULL);
    b_rec1(&b, "i", "outlier_vals", "float16", 1, 2, NULL);
    b_rec1(&b, "i", "scale", "float16", 1, 2, NULL);
    b_rec1(&b, "i", "zero_point", "float16", 1, 2, NULL);
    b_rec1(&b, "i", "packed", "uint8", 5, 1, NULL); /* ceil(10 / 2) */
    b_finish(&b);
    EXPECT_OK(&b);
    b.p[7] = 1; /* the same as v1: layout 2 is refused there */
    b.len -= WD_HASH_SIZE;
    b_finish(&b);
    EXPECT_BAD(&b, "int4_layout 2 in a format v1 file");
    sparse_file(&b, TOP("int4", INT4_I(",\"int4_layout\":3", "10", "1")));
    EXPECT_BAD(&b, "unknown int4_layout 3");
    sparse_file(&b, TOP("int4", INT4_I("", "10", "11")));
    EXPECT_BAD(&b, "n_outliers 11 exceeds");

    /* Zero tensors is a valid (empty) delta. */
    b_start(&b, 2, TOP("sparse", ""));
    b_finish(&b);
    EXPECT_OK(&b);
    free(b.p);
}

static void test_check_indices(void)
{
    wd__wdelta_tensor t = {0};
    t.name = (char *)(uintptr_t) "t";
    t.name_len = 1;
    int64_t ok[3] = {0, 5, 9}, dup[3] = {0, 5, 5}, neg[2] = {-1, 2}, big[1] = {10};
    int32_t ok32[2] = {1, 2};
    int64_t prev = -1;
    CHECK_RC(wd__wdelta_check_indices(&t, WD__WF_INDICES, ok, WD_DT_I64, 3, 0, 10, 1, &prev), 0);
    CHECK(prev == 9);
    CHECK_RC(wd__wdelta_check_indices(&t, WD__WF_INDICES, ok, WD_DT_I64, 1, 3, 10, 1, &prev),
             WD_EBADINPUT); /* 0 after 9 across pieces */
    CHECK(strstr(wd_errmsg(), "indices[3] = 0 does not increase") != NULL);
    prev = -1;
    CHECK_RC(wd__wdelta_check_indices(&t, WD__WF_INDICES, dup, WD_DT_I64, 3, 0, 10, 1, &prev),
             WD_EBADINPUT);
    CHECK_RC(wd__wdelta_check_indices(&t, WD__WF_INDICES, dup, WD_DT_I64, 3, 0, 10, 0, NULL), 0);
    CHECK_RC(wd__wdelta_check_indices(&t, WD__WF_OUTLIER_IDX, neg, WD_DT_I64, 2, 0, 10, 0, NULL),
             WD_EBADINPUT);
    CHECK(strstr(wd_errmsg(), "outlier_idx[0] = -1 is outside [0, 10)") != NULL);
    CHECK_RC(wd__wdelta_check_indices(&t, WD__WF_OUTLIER_IDX, big, WD_DT_I64, 1, 0, 10, 0, NULL),
             WD_EBADINPUT);
    CHECK_RC(wd__wdelta_check_indices(&t, WD__WF_OUTLIER_IDX, ok32, WD_DT_I32, 2, 0, 3, 1, NULL),
             0);
    CHECK_RC(wd__wdelta_check_indices(&t, WD__WF_OUTLIER_IDX, ok32, WD_DT_I32, 2, 0, 2, 1, NULL),
             WD_EBADINPUT);
}

/* ---- Writer from scratch ------------------------------------------------ */

static void make_tensor(wd__wdelta_tensor *t, const char *name, int strategy, int ndim,
                        const uint64_t *shape, int version)
{
    memset(t, 0, sizeof *t);
    t->name = (char *)(uintptr_t)name;
    t->name_len = strlen(name);
    t->strategy = strategy;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    if (version == 2)
        strcpy(t->base_dtype, "bfloat16");
    t->sparsity = 0.9;
    t->outlier_fraction = 0.01;
    t->n_outliers = 1;
    CHECK_RC(wd__wdelta_tensor_fill(t, version), 0);
}

/* Writes every expected record, zero-filled, with counts from the header
 * (sparse: k = 2). */
static int write_zeros(wd__wdelta_writer *w, const wd__wdelta_tensor *ts)
{
    size_t ti;
    int field, rc = 0;
    static const unsigned char zeros[64];
    while (!rc && wd__wdelta_writer_next(w, &ti, &field)) {
        const wd__wdelta_tensor *t = &ts[ti];
        uint64_t count;
        wd_dtype dt;
        switch (field) {
        case WD__WF_INDICES: count = 2, dt = WD_DT_I64; break;
        case WD__WF_VALUES: count = 2, dt = WD_DT_F32; break;
        case WD__WF_SCALES: count = wd__wdelta_rows(t), dt = WD_DT_F16; break;
        case WD__WF_PACKED_SIGNS: count = (t->n + 7) / 8, dt = WD_DT_U8; break;
        case WD__WF_OUTLIER_IDX: count = t->n_outliers, dt = WD_DT_I64; break;
        case WD__WF_OUTLIER_VALS: count = t->n_outliers, dt = WD_DT_F16; break;
        case WD__WF_SCALE:
        case WD__WF_ZERO_POINT: count = 1, dt = WD_DT_F16; break;
        default:
            count = ((t->int4_layout == 2 ? t->n : t->n - t->n_outliers) + 1) / 2;
            dt = WD_DT_U8;
            break;
        }
        rc = wd__wdelta_writer_record(w, t->name, t->name_len, field, dt, 1, &count);
        uint64_t left = count * (dt == WD_DT_I64 ? 8 : dt == WD_DT_F32 ? 4 : dt == WD_DT_F16 ? 2 : 1);
        while (!rc && left) {
            size_t n = left < sizeof zeros ? (size_t)left : sizeof zeros;
            rc = wd__wdelta_writer_write(w, zeros, n);
            left -= n;
        }
    }
    return rc;
}

static void test_writer(void)
{
    char out[600];
    snprintf(out, sizeof out, "%s/new.wdelta", tmpdir);
    uint64_t s2[2] = {3, 5}, s1[1] = {4};
    /* names chosen so that sorting, escaping and UTF-8 all matter */
    const char *names[4] = {"z.w", "a\"b\\c\n\x7f", "model.\xc3\xabmbed", "\xf0\x9f\x98\x80"};
    for (int version = 1; version <= 2; version++) {
        for (int strategy = 0; strategy < WD__WS__COUNT; strategy++) {
            wd__wdelta_tensor ts[4];
            for (int i = 0; i < 4; i++)
                make_tensor(&ts[i], names[i], strategy, i % 2 ? 1 : 2, i % 2 ? s1 : s2, version);
            int before = count_files();
            wd__wdelta_writer *w;
            CHECK_RC(wd__wdelta_writer_begin(&w, out, version, ZERO_HASH, strategy, ts, 4), 0);
            CHECK_RC(write_zeros(w, ts), 0);
            CHECK_RC(wd__wdelta_writer_finish(w), 0);
            CHECK(count_files() == before + 1);
            wd__wdelta *d = NULL;
            CHECK_RC(wd__wdelta_open(&d, out), 0);
            if (!d)
                continue;
            CHECK(wd__wdelta_count(d) == 4);
            for (int i = 0; i < 4; i++) {
                const wd__wdelta_tensor *t = wd__wdelta_find(d, names[i], strlen(names[i]));
                CHECK(t != NULL);
                if (t)
                    CHECK(t->n == ts[i].n && t->n_keys == ts[i].n_keys &&
                          memcmp(t->key_order, ts[i].key_order, (size_t)t->n_keys) == 0);
            }
            /* header sorted by UTF-8 bytes; records: v2 sorted, v1 as given */
            CHECK(strcmp(wd__wdelta_tensor_at(d, 0)->name, names[1]) == 0);
            CHECK(strcmp(wd__wdelta_tensor_at(d, 3)->name, names[3]) == 0);
            for (int i = 0; i < 4; i++)
                CHECK(strcmp(wd__wdelta_tensor_by_record(d, (size_t)i)->name,
                             version == 1 ? names[i] : wd__wdelta_tensor_at(d, (size_t)i)->name) == 0);
            wd__wdelta_close(d);

            /* the header text as Python's json.dumps writes it */
            unsigned char *text;
            size_t len;
            CHECK(read_file(out, &text, &len) == 0);
            const char *h = len > 15 ? (const char *)text + 15 : "";
            CHECK(strstr(h, "\"a\\\"b\\\\c\\n\\u007f\":{") != NULL);
            CHECK(strstr(h, "\"model.\\u00ebmbed\":{") != NULL);
            CHECK(strstr(h, "\"\\ud83d\\ude00\":{") != NULL);
            if (strategy == WD__WS_SPARSE)
                CHECK(strstr(h, version == 2 ? "\"shape\":[3,5],\"dtype\":\"float32\",\"base_dtype\":"
                                               "\"bfloat16\",\"sparsity\":0.9,\"indices\":{\"_ref\":\"indices\"},"
                                             : "\"shape\":[3,5],\"dtype\":\"float32\",\"sparsity\":0.9,"
                                               "\"indices\":{\"_ref\":\"indices\"},") != NULL);
            if (strategy == WD__WS_INT4)
                CHECK(strstr(h, version == 2 ? "\"outlier_fraction\":0.01,\"n_elements\":15,"
                                               "\"n_outliers\":1,\"int4_layout\":2,\"outlier_idx\""
                                             : "\"outlier_fraction\":0.01,\"n_elements\":15,"
                                               "\"n_outliers\":1,\"outlier_idx\"") != NULL);
            if (strategy == WD__WS_QUANTIZED)
                CHECK(strstr(h, "\"shape\":[4],\"dtype\":\"float32\",") != NULL &&
                      strstr(h, "\"n_elements\":4,\"n_cols\":4,\"scales\"") != NULL);
            free(text);
            unlink(out);
        }
    }

    /* Python float repr, through the sparsity option. */
    static const struct {
        double v;
        const char *repr;
    } floats[] = {
        {0.9, "0.9"}, {0.5, "0.5"}, {1.0, "1.0"}, {0.0, "0.0"}, {0.1, "0.1"},
        {1e-05, "1e-05"}, {0.0001, "0.0001"}, {1.5e-07, "1.5e-07"},
        {1.0 / 3, "0.3333333333333333"}, {5e-324, "5e-324"}, {0.30000000000000004, "0.30000000000000004"},
        {0.123456789012345678, "0.12345678901234568"}, {2.5e-100, "2.5e-100"},
    };
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        wd__wdelta_tensor t;
        make_tensor(&t, "a", WD__WS_SPARSE, 1, s1, 2);
        t.sparsity = floats[i].v;
        wd__wdelta_writer *w;
        CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, ZERO_HASH, WD__WS_SPARSE, &t, 1), 0);
        CHECK_RC(write_zeros(w, &t), 0);
        CHECK_RC(wd__wdelta_writer_finish(w), 0);
        unsigned char *text;
        size_t len;
        CHECK(read_file(out, &text, &len) == 0);
        char want[64];
        snprintf(want, sizeof want, "\"sparsity\":%s,", floats[i].repr);
        if (len < 15 || !strstr((const char *)text + 15, want))
            fprintf(stderr, "float %.17g: want %s\n", floats[i].v, floats[i].repr);
        CHECK(len > 15 && strstr((const char *)text + 15, want) != NULL);
        wd__wdelta *d;
        CHECK_RC(wd__wdelta_open(&d, out), 0); /* and it reads back to the same double */
        if (d)
            CHECK(wd__wdelta_tensor_at(d, 0)->sparsity == floats[i].v);
        wd__wdelta_close(d);
        free(text);
        unlink(out);
    }

    /* Failures leave nothing behind. */
    int before = count_files();
    wd__wdelta_tensor ts[2];
    make_tensor(&ts[0], "b", WD__WS_SPARSE, 1, s1, 2);
    make_tensor(&ts[1], "a", WD__WS_SPARSE, 1, s1, 2);
    wd__wdelta_writer *w;
    uint64_t two = 2, three = 3;
    static const unsigned char zeros[32];

    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, ZERO_HASH, WD__WS_SPARSE, ts, 2), 0);
    size_t ti;
    int field;
    CHECK(wd__wdelta_writer_next(w, &ti, &field) == 1 && ti == 1 && field == WD__WF_INDICES);
    CHECK_RC(wd__wdelta_writer_record(w, "b", 1, WD__WF_INDICES, WD_DT_I64, 1, &two), WD_EUSAGE);
    CHECK(strstr(wd_errmsg(), "expected tensor 'a' field 'indices'") != NULL);
    CHECK_RC(wd__wdelta_writer_finish(w), WD_EUSAGE); /* sticky */
    CHECK(count_files() == before);

    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, ZERO_HASH, WD__WS_SPARSE, ts, 2), 0);
    CHECK_RC(wd__wdelta_writer_record(w, "a", 1, WD__WF_INDICES, WD_DT_I32, 1, &two), WD_EUSAGE);
    wd__wdelta_writer_abort(w);
    CHECK(count_files() == before);

    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, ZERO_HASH, WD__WS_SPARSE, ts, 2), 0);
    CHECK_RC(wd__wdelta_writer_record(w, "a", 1, WD__WF_INDICES, WD_DT_I64, 1, &two), 0);
    CHECK_RC(wd__wdelta_writer_write(w, zeros, 17), WD_EUSAGE); /* more than 16 bytes */
    wd__wdelta_writer_abort(w);
    CHECK(count_files() == before);

    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, ZERO_HASH, WD__WS_SPARSE, ts, 2), 0);
    CHECK_RC(wd__wdelta_writer_record(w, "a", 1, WD__WF_INDICES, WD_DT_I64, 1, &two), 0);
    CHECK_RC(wd__wdelta_writer_write(w, zeros, 16), 0);
    CHECK_RC(wd__wdelta_writer_record(w, "a", 1, WD__WF_VALUES, WD_DT_F32, 1, &three), WD_EUSAGE);
    CHECK(strstr(wd_errmsg(), "3 values for 2 indices") != NULL);
    wd__wdelta_writer_abort(w);

    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, ZERO_HASH, WD__WS_SPARSE, ts, 2), 0);
    CHECK_RC(wd__wdelta_writer_record(w, "a", 1, WD__WF_INDICES, WD_DT_I64, 1, &two), 0);
    CHECK_RC(wd__wdelta_writer_write(w, zeros, 10), 0);
    CHECK_RC(wd__wdelta_writer_finish(w), WD_EUSAGE); /* incomplete */
    CHECK(strstr(wd_errmsg(), "incomplete") != NULL);
    CHECK(count_files() == before);
    CHECK(access(out, F_OK) != 0);

    /* Invalid arguments fail before any file exists. */
    CHECK_RC(wd__wdelta_writer_begin(&w, out, 3, ZERO_HASH, WD__WS_SPARSE, ts, 2), WD_EUSAGE);
    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, "xyz", WD__WS_SPARSE, ts, 2), WD_EUSAGE);
    wd__wdelta_tensor dupe[2] = {ts[0], ts[0]};
    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, ZERO_HASH, WD__WS_SPARSE, dupe, 2), WD_EUSAGE);
    CHECK(strstr(wd_errmsg(), "given twice") != NULL);
    wd__wdelta_tensor bad = ts[0];
    bad.n_elements = 5, bad.has |= WD__WK_BIT(WD__WK_N_ELEMENTS);
    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, ZERO_HASH, WD__WS_SPARSE, &bad, 1), WD_EUSAGE);
    bad = ts[0];
    bad.name_len = 0;
    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, ZERO_HASH, WD__WS_SPARSE, &bad, 1), WD_EUSAGE);
    bad = ts[0];
    bad.sparsity = 0.0 / 0.0;
    CHECK_RC(wd__wdelta_writer_begin(&w, out, 2, ZERO_HASH, WD__WS_SPARSE, &bad, 1), WD_EUSAGE);
    CHECK_RC(wd__wdelta_writer_begin(&w, "/nonexistent-dir/x.wdelta", 2, ZERO_HASH,
                                     WD__WS_SPARSE, ts, 2),
             WD_EIO);
    CHECK(count_files() == before);
    CHECK(access(out, F_OK) != 0);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_fixtures_read();
    test_round_trip();
    test_late_parent();
    test_bad_fixtures();
    test_hostile();
    test_check_indices();
    test_writer();
    CHECK(count_files() == 0);
    rmdir(tmpdir);
    return tu_finish("test_wdelta");
}
