/*
 * remote.h - what the remote modules share: the remotes file, the on-store
 * layout (docs/REMOTES.md) and object manifests.
 */
#ifndef WD_REMOTE_H
#define WD_REMOTE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "buf.h"
#include "repo_int.h"
#include "s3.h"

/* Keys under the remote's prefix. */
#define WD_RK_CHUNKS "chunks/"   /* chunks/<id hex>: a chunk (WD_RCHUNK_MAGIC header) */
#define WD_RK_OBJECTS "objects/" /* objects/<id hex>: an object's manifest (JSON) */
#define WD_RK_NAMES "names/"     /* names/<name>: "<object id hex>\n" */

/* A chunk on the store: magic, codec byte, 3 zero bytes, raw size (8 bytes
 * little-endian), then the stored (compressed) bytes as the local store
 * keeps them, so a chunk moves without being recompressed. */
#define WD_RCHUNK_MAGIC "WDC1"
#define WD_RCHUNK_HEADER 16
/* A manifest larger than this is refused (a model of 100k tensors and
 * 1M chunks stays under it). */
#define WD_MANIFEST_MAX (256u << 20)
/* Transfers in flight at once, and chunks held in memory per round (one
 * round at a time: at most WD_REMOTE_ROUND chunks of <= 4 MiB each). */
#define WD_REMOTE_PARALLEL 8
#define WD_REMOTE_ROUND 16

/* Opens a client for remote: the name of a configured remote, else a URL.
 * *lazy (may be NULL) gets whether the remote was cloned with --lazy. */
int wd__remote_connect(wd_repo *repo, const char *remote, wd_s3 **out, int *lazy);
/* The configured remote marked lazy, if any: *out_url malloc'd or NULL. */
int wd__remote_lazy_url(wd_repo *repo, char **out_url);
/* A name's value on the remote: id, or absent (*has 0); its ETag into etag
 * (80 bytes; may be NULL) for a compare-and-swap. */
int wd__remote_get_name(wd_s3 *s3, const char *name, int *has, uint8_t id[WD_HASH_SIZE], char etag[80]);

/* The manifest of stored object id: its rows of object, file, tensor and
 * tensor_array as JSON (blobs as {"hex": ...}). */
int wd__manifest_build(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], wd_buf *out);
/* Checks a received manifest against id (its object row names id, every
 * column is one this repository has); *out is the parsed document. */
int wd__manifest_parse(const wd_buf *in, const uint8_t id[WD_HASH_SIZE], cJSON **out);
/* The parent named by a parsed manifest (*has = 0 for a base). */
int wd__manifest_parent(const cJSON *m, uint8_t parent[WD_HASH_SIZE], int *has);
/* Appends every chunk id the manifest's rows reference (32 bytes each,
 * repeats included) to ids. */
int wd__manifest_chunks(const cJSON *m, wd_buf *ids);
/* Inserts the manifest's rows (inside the caller's transaction). */
int wd__manifest_insert(wd_repo *repo, const cJSON *m);

/* Chunk ids (32 bytes each) of stored object id's rows, appended to ids. */
int wd__object_chunk_ids(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], wd_buf *ids);
/* Sorts ids (n x 32 bytes) and drops repeats; returns the new count. */
size_t wd__ids_sort_unique(uint8_t *ids, size_t n);
/* Whether object id is stored here. */
int wd__object_exists(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], int *out);

/* Adds name to r->conflicts. */
int wd__transfer_conflict(wd_transfer_result *r, const char *name);

#endif
