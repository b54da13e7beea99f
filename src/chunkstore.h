/*
 * chunkstore.h - the content-addressed chunk store behind a narrow
 * interface (libgit2's odb backends): codecs and commands see only
 * has/put/get, so a backend other than SQLite can come later.
 *
 * A chunk is at most WD_CHUNK_RAW_MAX bytes of encoded tensor or file data,
 * identified by the SHA-256 of those raw bytes, kept compressed.
 */
#ifndef WD_CHUNKSTORE_H
#define WD_CHUNKSTORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "wdrepo.h"

/* Chunks hold about 1 MiB of raw data: big enough that per-chunk costs
 * (a row, a hash, a zstd frame) vanish, small enough that a pipeline of
 * threads x depth chunks stays far below model sizes. */
#define WD_CHUNK_TARGET (1u << 20)
/* Anything larger is refused when read back: a bound for decompression. */
#define WD_CHUNK_RAW_MAX (4u << 20)

/* How a chunk's bytes are kept. WD_CODEC_SECTIONS compresses each byte
 * plane on its own (docs/FORMAT.md has the layout): planes differ so much in
 * entropy that one shared frame wastes space on the skewed ones. */
enum { WD_CODEC_RAW = 0, WD_CODEC_ZSTD = 1, WD_CODEC_SECTIONS = 2 };

typedef struct wd_chunkstore wd_chunkstore;

typedef struct {
    const char *name;
    /* *out = 1 if the chunk is present. */
    int (*has)(wd_chunkstore *cs, const uint8_t id[WD_HASH_SIZE], int *out);
    /* Stores the chunk unless present; *out_added = 1 if it was new. */
    int (*put)(wd_chunkstore *cs, const uint8_t id[WD_HASH_SIZE], uint64_t raw_size, int codec,
               const void *data, size_t len, int *out_added);
    /* Replaces out's contents with the stored (compressed) bytes. May be
     * called from any thread: off the thread that opened the store it sees
     * only committed chunks (what every reader of stored objects needs). */
    int (*get)(wd_chunkstore *cs, const uint8_t id[WD_HASH_SIZE], wd_buf *out,
               uint64_t *out_raw_size, int *out_codec);
    /* Bytes the chunk occupies in the store (0 if absent). Unlike the
     * other operations this one may be called from any thread, also while
     * the owning thread writes: workers skip compressing chunks the store
     * already has. It may miss chunks put since the last commit; then the
     * put simply finds them present. */
    int (*stored_size)(wd_chunkstore *cs, const uint8_t id[WD_HASH_SIZE], uint64_t *out);
    /* Group puts; a crash between begin and commit loses only those puts. */
    int (*begin)(wd_chunkstore *cs);
    int (*commit)(wd_chunkstore *cs);
    void (*rollback)(wd_chunkstore *cs);
    void (*close)(wd_chunkstore *cs);
} wd_chunkstore_ops;

struct wd_chunkstore {
    const wd_chunkstore_ops *ops;
    /* Chunks of this store this process has decoded and checked against
     * their ids (chunkproven.h); NULL: none remembered. */
    struct wd__proven *proven;
};

/* Puts grouped into transactions of about WD_CHUNK_BATCH_BYTES, so a long
 * write lets a concurrent writer take turns and a crash loses only the
 * current group (whose chunks nothing referenced yet). Small, because the
 * group holds the database's write lock from its first put to its commit,
 * and whatever the writer does between puts (compressing the next chunk)
 * counts: a few MiB keep every other writer's wait in milliseconds, and a
 * WAL commit without fsync (synchronous = NORMAL) costs microseconds. */
#define WD_CHUNK_BATCH_BYTES (4u << 20)

typedef struct {
    wd_chunkstore *cs;
    int in_tx;
    uint64_t tx_bytes;
    uint64_t tx_started_ns; /* CLOCK_MONOTONIC when the open group began */
    uint64_t new_bytes; /* compressed bytes of chunks that were new */
} wd_chunk_batch;

/* Stores a chunk through batch (a wd_chunk_batch *); fits wd_chunk_put_fn. */
int wd__chunk_batch_put(void *batch, const uint8_t id[WD_HASH_SIZE], uint64_t raw_size, int codec,
                        const void *data, size_t len);
/* Commits the open group, if any. */
int wd__chunk_batch_flush(wd_chunk_batch *b);
/* Commits the open group if it has been open for WD_CHUNK_BATCH_MS or
 * more: what a pipeline calls between batches, so the lock is never held
 * much longer than that, while a model of many tiny tensors does not pay a
 * commit per batch of a few pieces. */
#define WD_CHUNK_BATCH_MS 20
int wd__chunk_batch_tick(wd_chunk_batch *b);
/* Rolls the open group back (failure paths). */
void wd__chunk_batch_abort(wd_chunk_batch *b);

/* The default backend: table chunk of the repository database db (shared
 * with the caller, which must not hold a transaction open across begin). */
int wd__chunkstore_sqlite_open(wd_chunkstore **out, sqlite3 *db);

/* Compresses raw into out. section_len 0 makes one zstd frame (or raw
 * bytes if that is not smaller); otherwise raw is cut into sections of
 * section_len bytes (the byte planes), each compressed on its own.
 * zctx is a ZSTD_CCtx* the caller keeps per thread. */
int wd__chunk_compress(void *zctx, int level, const void *raw, size_t len, size_t section_len, wd_buf *out,
                       int *out_codec);
/* How wd__chunk_decode checks its output against the chunk's id. */
enum {
    /* SHA-256 of the output against the id, unless cs has proven this chunk
     * in this process already (chunkproven.c); then as WD_DECODE_TRUSTED. */
    WD_DECODE_CHECK = 0,
    /* Sizes only, as every decode checks them: for a caller that checks its
     * whole result against a recorded hash before anything leaves it, and
     * looks for the damaged chunk with WD_DECODE_CHECK when that fails. */
    WD_DECODE_TRUSTED = 1
};

/* Decodes a stored chunk into out (exactly raw_size bytes) and, as `how`
 * says, checks it against its id, the SHA-256 of those bytes: every reader
 * of stored data goes through here, so damage is found before a decoded
 * byte is used. Sizes are checked before any output is produced (frames
 * whose size disagrees, or raw_size over WD_CHUNK_RAW_MAX). cs: the store
 * the chunk came from (NULL: always hash). zctx: ZSTD_DCtx*. On failure:
 * WD_ECORRUPT, "chunk <short id>: stored data is damaged (why); run 'wdrepo
 * fsck'"; wd__chunk_error_where adds where the chunk is used. */
int wd__chunk_decode(wd_chunkstore *cs, void *zctx, const uint8_t id[WD_HASH_SIZE], int codec, const void *data,
                     size_t len, uint64_t raw_size, uint8_t *out, int how);

/* cs->ops->get, a failure naming the chunk ("chunk <short id>: ...") like
 * wd__chunk_decode's, so callers can say where it is used. */
int wd__chunk_fetch(wd_chunkstore *cs, const uint8_t id[WD_HASH_SIZE], wd_buf *out, uint64_t *out_raw_size,
                    int *out_codec);

/* Records "chunk <short id>: stored data is damaged (<why>); run 'wdrepo
 * fsck'" and returns WD_ECORRUPT: for checks a reader makes on a fetched
 * chunk (its size against the manifest). */
int wd__chunk_damaged(const uint8_t id[WD_HASH_SIZE], const char *why_fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Puts where a failing chunk is used ("object 9a1b2c3d4e5f tensor 'x'")
 * in front of the current message and returns code: joined by a space to
 * a message naming a chunk, so the line reads "object .. tensor '..' chunk
 * ..: stored data is damaged ...", and by ": " to any other. */
int wd__chunk_error_where(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Hex digits of a chunk or object id in messages. */
#define WD_SHORT_HEX 12

#endif
