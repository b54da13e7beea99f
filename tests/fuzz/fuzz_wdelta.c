/*
 * fuzz_wdelta.c - libFuzzer target for the .wdelta reader: parses the input
 * from memory as is and again with its trailing SHA-256 recomputed (else
 * almost no mutation would get past the checksum), reads every array back
 * through the bounds-checked accessors and the shared index checks, and
 * writes every accepted file back through the writer, which must accept it
 * and produce a file the reader accepts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "wdelta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The arrays of an accepted input are at most its size: 1 GiB is no limit
 * in practice, and keeps read_array's own limit in the path. */
#define ARRAY_LIMIT ((size_t)1 << 30)

static void crash(const char *what)
{
    fprintf(stderr, "fuzz_wdelta: %s: %s\n", what, wd_errmsg());
    abort();
}

/* Reads every field, checks index arrays as the codecs will, and verifies
 * the accessors agree with each other. */
static void walk(const wd__wdelta *d)
{
    size_t n = wd__wdelta_count(d);
    for (size_t i = 0; i < n; i++) {
        const wd__wdelta_tensor *t = wd__wdelta_tensor_at(d, i);
        if (wd__wdelta_find(d, t->name, t->name_len) != t)
            crash("find disagrees with tensor_at");
        if (!wd__wdelta_tensor_by_record(d, i))
            crash("by_record has a hole");
        const int *fields;
        size_t nf = wd__wdelta_fields_of(t->strategy, &fields);
        for (size_t k = 0; k < nf; k++) {
            const wd__wdelta_field *f = wd__wdelta_field_of(t, fields[k]);
            if (!f || !f->present)
                crash("accepted file lacks a field");
            void *arr;
            if (wd__wdelta_read_array(d, f, ARRAY_LIMIT, &arr))
                crash("read_array failed on an accepted file");
            if (fields[k] == WD__WF_INDICES || fields[k] == WD__WF_OUTLIER_IDX) {
                int64_t prev = -1;
                size_t half = (size_t)f->count / 2, isz = f->dtype == WD_DT_I32 ? 4 : 8;
                /* Failures are fine (bad values); crashes are not. */
                if (!wd__wdelta_check_indices(t, fields[k], arr, f->dtype, half, 0, t->n,
                                              fields[k] == WD__WF_INDICES, &prev))
                    (void)wd__wdelta_check_indices(t, fields[k], (char *)arr + half * isz,
                                                   f->dtype, (size_t)f->count - half, half,
                                                   t->n, fields[k] == WD__WF_INDICES, &prev);
            }
            unsigned char b;
            if (f->nbytes && wd__wdelta_pread(d, f, f->nbytes - 1, &b, 1))
                crash("pread of the last byte failed");
            if (wd__wdelta_pread(d, f, f->nbytes, &b, 1) != WD_EUSAGE)
                crash("pread past the array end was allowed");
            free(arr);
        }
    }
}

/* Writes d back and reads the copy: what the reader accepts, the writer
 * must reproduce. */
static void round_trip(const wd__wdelta *d)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/fuzz_wdelta.%ld.wdelta", (long)getpid());
    size_t n = wd__wdelta_count(d);
    wd__wdelta_tensor *ts = malloc((n ? n : 1) * sizeof *ts);
    if (!ts)
        return;
    for (size_t i = 0; i < n; i++)
        ts[i] = *wd__wdelta_tensor_by_record(d, i);
    wd__wdelta_writer *w;
    if (wd__wdelta_writer_begin(&w, path, wd__wdelta_version(d), wd__wdelta_parent_hash(d),
                                wd__wdelta_strategy(d), ts, n))
        crash("writer refused an accepted header");
    size_t ti;
    int field;
    unsigned char buf[4096];
    while (wd__wdelta_writer_next(w, &ti, &field)) {
        const wd__wdelta_field *f = wd__wdelta_field_of(&ts[ti], field);
        uint64_t dims[1] = {f->count};
        if (wd__wdelta_writer_record(w, ts[ti].name, ts[ti].name_len, field, f->dtype, 1, dims))
            crash("writer refused an accepted record");
        for (uint64_t off = 0; off < f->nbytes; off += sizeof buf) {
            size_t len = f->nbytes - off < sizeof buf ? (size_t)(f->nbytes - off) : sizeof buf;
            if (wd__wdelta_pread(d, f, off, buf, len) || wd__wdelta_writer_write(w, buf, len))
                crash("copying a record failed");
        }
    }
    if (wd__wdelta_writer_finish(w))
        crash("writer finish failed");
    wd__wdelta *c;
    if (wd__wdelta_open(&c, path))
        crash("reader refused the writer's copy");
    if (wd__wdelta_count(c) != n || strcmp(wd__wdelta_parent_hash(c), wd__wdelta_parent_hash(d)))
        crash("copy differs");
    for (size_t i = 0; i < n; i++) {
        const wd__wdelta_tensor *a = wd__wdelta_tensor_by_record(d, i);
        const wd__wdelta_tensor *b = wd__wdelta_find(c, a->name, a->name_len);
        if (!b || b->n != a->n || b->strategy != a->strategy || b->n_keys != a->n_keys ||
            memcmp(b->key_order, a->key_order, (size_t)a->n_keys) ||
            (a->has & WD__WK_BIT(WD__WK_SPARSITY) && b->sparsity != a->sparsity) ||
            (a->has & WD__WK_BIT(WD__WK_OUTLIER_FRACTION) &&
             b->outlier_fraction != a->outlier_fraction))
            crash("copied tensor differs");
        const wd__wdelta_tensor *r = wd__wdelta_tensor_by_record(c, i);
        if (wd__wdelta_version(d) == 1 &&
            (r->name_len != a->name_len || memcmp(r->name, a->name, a->name_len) != 0))
            crash("v1 record order not kept");
    }
    wd__wdelta_close(c);
    unlink(path);
    free(ts);
}

static void parse(const uint8_t *data, size_t size)
{
    wd__wdelta *d;
    if (wd__wdelta_open_mem(&d, data, size) != 0)
        return;
    walk(d);
    round_trip(d);
    wd__wdelta_close(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse(data, size);
    if (size < WD_HASH_SIZE)
        return 0;
    /* The same bytes with a checksum that matches: a copy of size bytes. */
    uint8_t *fixed = malloc(size);
    if (!fixed)
        return 0;
    memcpy(fixed, data, size);
    wd__sha256(fixed, size - WD_HASH_SIZE, fixed + size - WD_HASH_SIZE);
    if (memcmp(fixed, data, size) != 0)
        parse(fixed, size);
    free(fixed);
    return 0;
}
