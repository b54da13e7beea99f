/*
 * manifest.h - the canonical manifests whose SHA-256 are object ids,
 * written line by line into a running hash: a delta's (docs/FORMAT.md
 * section 4) and a base folder's (section 3), which tells apart folders
 * holding the same weights.
 */
#ifndef WD_MANIFEST_H
#define WD_MANIFEST_H

#include "buf.h"
#include "hash.h"
#include "repo_int.h"

typedef struct {
    wd_sha256 *h;
    wd_buf line;
    int rc;
} wd_manifest;

int wd__manifest_begin(wd_manifest *m, const uint8_t parent[WD_HASH_SIZE], const char *strategy, const char *options);
/* A base folder's description: the model hash, then its files
 * (wd__manifest_file, sorted by path); no tensor lines, as the shard
 * headers and the model hash fix every byte of the shards. */
int wd__manifest_base_begin(wd_manifest *m, const uint8_t model_hash[WD_HASH_SIZE]);
/* Files sorted by path, then tensors sorted by name. */
void wd__manifest_file(wd_manifest *m, const char *path, int is_shard, uint64_t size, const uint8_t *ids, size_t n);
/* lossy may be NULL. */
void wd__manifest_tensor(wd_manifest *m, const char *name, const char *file, int64_t ordinal, wd_dtype dtype, int ndim,
                         const uint64_t *shape, const char *encoding, uint64_t chunk_elems, const uint8_t *ids,
                         size_t n, const wd_lossy *lossy);
/* Writes the id and frees m; returns the first error met. */
int wd__manifest_end(wd_manifest *m, uint8_t out[WD_HASH_SIZE]);

/* The folder id (FORMAT.md section 3) of the stored base id whose model
 * hash is model_hash, from its file rows, which hold exactly what the
 * description hashes, in the same path order; no chunk is read. A base
 * whose id is not its model hash has this as its id (what fsck can
 * check); for the one whose id is, it tells whether a folder is that one. */
int wd__manifest_base_stored(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], const uint8_t model_hash[WD_HASH_SIZE],
                             uint8_t out[WD_HASH_SIZE]);

#endif
