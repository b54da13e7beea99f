/*
 * test_checkpointer.c - a bulk write through the chunk store hands its
 * write-ahead log to the checkpoint thread (src/checkpointer.c): the log
 * is copied into the database while the repository is still open, its
 * size stays under the cap however fast the writer goes, and everything
 * written reads back after a reopen.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpointer.h"
#include "chunkstore.h"
#include "hash.h"
#include "repo_int.h"
#include "testutil.h"
#include "wdrepo.h"

/* 96 MiB in 1 MiB chunks: half as much again as the cap's 64 MiB. */
#define N_CHUNKS 96
#define CHUNK (1u << 20)
#define PAGE 16384u

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Bytes that do not compress and differ per chunk (xorshift64). */
static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
}

int main(void)
{
    char tmp[] = "/tmp/wd-ckpt-XXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    char rdir[256], db[300], wal[300];
    snprintf(rdir, sizeof rdir, "%s/.wdrepo", tmp);
    snprintf(db, sizeof db, "%s/repo.db", rdir);
    snprintf(wal, sizeof wal, "%s/repo.db-wal", rdir);
    uint8_t *data = malloc(CHUNK);
    uint8_t ids[N_CHUNKS][WD_HASH_SIZE];
    CHECK(data != NULL);
    CHECK_RC(wd_repo_init(rdir), 0);

    wd_repo *r = NULL;
    CHECK_RC(wd_repo_open(&r, rdir, 0), 0);
    uint64_t db_before = file_size(db), wal_max = 0;
    wd_chunk_batch b = {.cs = r ? r->store : NULL};
    for (int i = 0; r && data && i < N_CHUNKS; i++) {
        fill(data, CHUNK, (uint64_t)i);
        wd__sha256(data, CHUNK, ids[i]);
        CHECK_RC(wd__chunk_batch_put(&b, ids[i], CHUNK, 0, data, CHUNK), 0);
        uint64_t w = file_size(wal);
        if (w > wal_max)
            wal_max = w;
    }
    CHECK_RC(wd__chunk_batch_flush(&b), 0);
    /* The cap, plus the group committed when the hook found it reached. */
    uint64_t group_frames = WD_CHUNK_BATCH_BYTES / PAGE + 64;
    uint64_t bound = (WD_CKPT_CAP_FRAMES + group_frames) * (PAGE + 24) + 32;
    CHECK(wal_max > 0 && wal_max <= bound);
    if (wal_max > bound)
        fprintf(stderr, "log reached %llu bytes, bound %llu\n", (unsigned long long)wal_max,
                (unsigned long long)bound);
    /* Copied in while open: at least what had to go before the log could
     * restart. */
    CHECK(file_size(db) >= db_before + (uint64_t)(N_CHUNKS * CHUNK) - bound);
    wd_repo_close(r);

    r = NULL;
    CHECK_RC(wd_repo_open(&r, rdir, WD_OPEN_READONLY), 0);
    int bad = 0;
    wd_buf got = {0};
    for (int i = 0; r && data && i < N_CHUNKS; i++) {
        uint64_t raw = 0;
        int codec = -1;
        got.len = 0;
        fill(data, CHUNK, (uint64_t)i);
        if (wd__chunk_fetch(r->store, ids[i], &got, &raw, &codec) || raw != CHUNK || got.len != CHUNK ||
            memcmp(got.data, data, CHUNK))
            bad++;
    }
    CHECK(bad == 0);
    wd__buf_free(&got);
    wd_repo_close(r);
    free(data);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    return tu_finish("test_checkpointer");
}
