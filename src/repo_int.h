/*
 * repo_int.h - what the repository modules share: the handle, stored
 * objects loaded into memory, and reconstruction of stored tensors.
 */
#ifndef WD_REPO_INT_H
#define WD_REPO_INT_H

#include <sqlite3.h>
#include <stdint.h>

#include "arraystream.h"
#include "buf.h"
#include "chunkstore.h"
#include "dtype.h"
#include "repolock.h"
#include "reserve.h"
#include "wdrepo.h"

struct wd_repo {
    char *dir;            /* the repository directory */
    sqlite3 *db;
    int readonly;
    wd_chunkstore *store;
    wd_repolock lock;     /* held shared while a writable handle is open */
    wd_reserve reserve;   /* a writable handle's room for cleaning up after a full disk */
};

/* Elements per chunk for a dtype: pieces of a tensor line up element for
 * element across a base and all its deltas. */
static inline uint64_t wd__chunk_elems(wd_dtype dt)
{
    return WD_CHUNK_TARGET / wd__dtype_size(dt);
}

/* What a lossy tensor (encoding sparse, quantized or int4) adds: its codec
 * parameters and arrays (FORMAT.md section 7). */
typedef struct {
    int strategy;            /* WD__WS_* */
    uint64_t n_cols;         /* quantized: elements per row; lowbit: per segment */
    float step;              /* lowbit: the tensor's step */
    int rank;                /* lowbit: low-rank components (0: none), at most 32 */
    float sv, sa[32];        /* lowbit: the factors' steps (codec_lowbit.h) */
    int layout;              /* int4: 1 or 2 */
    uint16_t scale, zero_point; /* int4: float16 patterns */
    uint64_t *before;        /* sparse, int4: index entries before piece k (n_pieces + 1 values) */
    size_t n_pieces;
    wd_astream arrays[9];    /* by WD__WF_* field; count 0 and no chunks when unused */
    char *params_json;       /* the stored params text */
} wd_lossy;

/* A stored tensor as loaded from table tensor. */
typedef struct wd_stored_tensor {
    char *name;
    char *file;
    int64_t ordinal;
    wd_dtype dtype;
    int ndim;
    uint64_t shape[WD_MAX_DIMS];
    uint64_t nelem, nbytes;
    char encoding[16];
    uint64_t chunk_elems;
    uint8_t *chunks; /* n_chunks * 32 bytes */
    size_t n_chunks;
    uint64_t stored_bytes;
    double rel_error, max_abs_error; /* NaN when not recorded */
    wd_lossy *lossy;                 /* NULL for lossless encodings */
    /* For "same", "delta-planes" and lossy encodings: the tensor of the
     * same name in the parent object, which this one is decoded against. */
    struct wd_stored_tensor *parent;
    /* The id of the object holding this row (NULL: one not stored yet),
     * for messages that name damaged data. */
    const uint8_t *object;
} wd_stored_tensor;

typedef struct {
    char *path;
    int is_shard;
    uint64_t size;
    uint8_t *chunks;
    size_t n_chunks;
} wd_stored_file;

/* A base or delta with its whole lineage loaded (parent chain). */
typedef struct wd_object {
    uint8_t id[WD_HASH_SIZE];
    int is_base;
    uint8_t model_hash[WD_HASH_SIZE];
    size_t n_tensors;
    wd_stored_tensor *tensors; /* sorted by name */
    size_t n_files;
    wd_stored_file *files;     /* sorted by path */
    struct wd_object *parent;  /* NULL for a base */
} wd_object;

/* Loads object id and its ancestors. */
int wd__object_load(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], wd_object **out);
void wd__object_free(wd_object *obj);
long wd__object_find(const wd_object *obj, const char *name);

/* SHA-256 over tensors of obj, each as its name then its reconstructed
 * data: natively (mode 0, the model hash when names is NULL: every tensor in
 * name order) or as float32 (mode 1, deltatensors' chain hash). names, if
 * given, picks the tensors and their order. */
int wd__object_hash(wd_repo *repo, const wd_object *obj, const char *const *names, size_t n_names, int mode,
                    uint8_t out[WD_HASH_SIZE]);

struct wd_pool;
/* How wd__object_walk goes over a reconstruction. */
typedef struct {
    const char *const *names; /* tensors in this order (NULL: all, by name) */
    size_t n_names;
    struct wd_pool *pool;     /* rebuild pieces on its workers (NULL: here) */
    int lossy_only_f32;       /* the float32 hash covers lossy tensors only */
    /* Optional, called on a worker for every rebuilt piece k of t: nat has
     * its native bytes (NULL when only float32 was rebuilt), f32 its
     * float32 values (NULL unless f32_for or the float32 hash asked). */
    int (*on_piece)(void *ud, int worker, const wd_stored_tensor *t, uint64_t k, const uint8_t *nat,
                    const float *f32, size_t nelem);
    /* Optional: rebuild t in float32 (for a caller's conversion). */
    int (*f32_for)(void *ud, const wd_stored_tensor *t);
    /* Optional, on a worker: changes the float32 piece of t that starts at
     * element begin (f32_for asked for it) before it is narrowed, hashed
     * and given to on_piece; import hashes its new delta as the parent's
     * walk with the file's delta added. */
    int (*apply)(void *ud, int worker, const wd_stored_tensor *t, uint64_t begin, float *f32, size_t nelem);
    /* Optional, on the calling thread: native bytes hashed so far grew by. */
    void (*progress)(void *ud, uint64_t bytes);
    void *ud;
    /* Decode chunks without checking each against its id
     * (WD_DECODE_TRUSTED): only for a caller that compares model_hash with
     * the recorded one before anything it wrote is used, and walks again
     * without this to name the damaged chunk when they differ. */
    int trusted;
} wd_walk_opts;

/* One pass over obj's reconstruction in name order (or o->names order):
 * model_hash (may be NULL) over native bytes, f32_hash (may be NULL) over
 * float32 values (*out_n_f32 gets how many tensors it covers). Pieces are
 * rebuilt on the pool's workers and hashed in order on the calling thread,
 * which overlaps the inherently sequential SHA-256 with the decoding.
 * Workers read the chunk store through its any-thread path, which sees
 * committed chunks only. */
int wd__object_walk(wd_repo *repo, const wd_object *obj, const wd_walk_opts *o, uint8_t model_hash[WD_HASH_SIZE],
                    uint8_t f32_hash[WD_HASH_SIZE], int *out_n_f32);
/* Records an object's hashes (f32_hash may be NULL: none). */
int wd__object_set_hashes(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], const uint8_t model_hash[WD_HASH_SIZE],
                          const uint8_t *f32_hash);

/* Computes and stores, for an object just inserted (inside the caller's
 * transaction), its model hash (what checkout writes) and, if it has lossy
 * tensors, the float32 hash of those tensors (what a deltatensors chain link
 * on it names as parent_hash). */
int wd__object_seal(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], uint8_t model_hash[WD_HASH_SIZE]);

/* Parses a shape JSON array "[2,3]". */
int wd__shape_parse(const char *json, int *ndim, uint64_t shape[WD_MAX_DIMS], uint64_t *nelem);
/* Appends "[2,3]". */
int wd__shape_format(wd_buf *b, int ndim, const uint64_t *shape);

/* Reads a whole byte stream (file content, shard header) stored as chunks,
 * checking each chunk's SHA-256; appends to out. */
int wd__stream_read(wd_repo *repo, const uint8_t *chunks, size_t n_chunks, wd_buf *out);
/* For a wd__stream_read failure about a chunk of file sf of obj: puts
 * "object <short id> file '<path>'" in front of the message. Returns rc. */
int wd__file_where(int rc, const wd_object *obj, const wd_stored_file *sf);

/* Resolves ref to an object id (binary). */
int wd__resolve(wd_repo *repo, const char *ref, uint8_t out[WD_HASH_SIZE]);

/* Bind helpers. */
static inline void wd__bind_hash(sqlite3_stmt *st, int i, const uint8_t h[WD_HASH_SIZE])
{
    sqlite3_bind_blob(st, i, h, WD_HASH_SIZE, SQLITE_TRANSIENT);
}

/* Validates a name given to tag/--name: 1-200 characters of letters,
 * digits and ._-+/ , not starting with '-' or '.', no "..", and not 4 or
 * more hex digits alone (it would shadow a hash prefix). */
int wd__name_valid(const char *name);
int wd__name_set(wd_repo *repo, const char *name, const uint8_t id[WD_HASH_SIZE]);
/* wd__name_set, and was gets the object name pointed at before (hex), or ""
 * when the name is new or already pointed at id; was may be NULL. */
int wd__name_set_was(wd_repo *repo, const char *name, const uint8_t id[WD_HASH_SIZE], char was[WD_HEX_SIZE]);

/* For a writing command that failed with rc after storing stored_bytes of
 * new chunks (which nothing references): when no other command is writing,
 * removes them again at once and gives the space back (gc.c); either way
 * adds to the message what is left. Returns rc. Called once the command has
 * rolled back what it had open. */
int wd__gc_after_failure(wd_repo *repo, int rc, uint64_t stored_bytes);

#endif
