/*
 * arraystream.h - the arrays of lossy tensors (sparse indices and values,
 * quantized scales and signs, int4 codes and outliers) kept in the chunk
 * store: each array is the exact byte string a .wdelta record would hold,
 * cut into chunks of WD_ASTREAM_CHUNK bytes and transformed chunk by chunk
 * so that any byte range can be read back without reading the rest.
 */
#ifndef WD_ARRAYSTREAM_H
#define WD_ARRAYSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "chunkstore.h"
#include "dtype.h"

/* Array bytes per chunk: a multiple of every element size. */
#define WD_ASTREAM_CHUNK ((size_t)1 << 20)

/* How each chunk of an array is transformed before compression. */
enum {
    WD_AT_RAW = 0,   /* bytes as they are (packed codes, sign bits) */
    WD_AT_PLANES,    /* float16/float32: rotated byte planes (codec_lossless) */
    WD_AT_GAPS       /* sorted int32/int64 indices: first value, then gaps; then planes */
};

const char *wd__astream_transform_name(int transform);
int wd__astream_transform_parse(const char *name, int *out);

/* A stored array: what table tensor_array holds. */
typedef struct {
    int field;          /* WD__WF_* (wdelta.h) */
    wd_dtype dtype;     /* WD_DT_I64, I32, F32, F16 or U8 */
    uint64_t count;     /* elements */
    int transform;
    uint8_t *chunks;    /* n_chunks ids */
    size_t n_chunks;
    uint64_t stored_bytes;
    /* Where the array is stored, for messages naming damaged chunks (NULL
     * when unknown): its tensor's name and object id. */
    const char *tensor;
    const uint8_t *object;
} wd_astream;

/* Writes an array to the store as it arrives. The caller appends the bytes
 * in as many pieces as it likes; each full chunk is transformed, hashed,
 * compressed (zstd level) and put. Memory: one chunk of input plus its
 * encoded and compressed forms. */
/* Stores one new chunk (the caller groups puts into transactions). */
typedef int (*wd_chunk_put_fn)(void *arg, const uint8_t id[WD_HASH_SIZE], uint64_t raw_size, int codec,
                               const void *data, size_t len);

typedef struct {
    wd_chunkstore *cs;
    wd_chunk_put_fn put;
    void *put_arg;
    void *cctx;         /* ZSTD_CCtx* the caller owns */
    int level;
    wd_astream *out;    /* filled as chunks are stored */
    wd_buf pending, enc, z, ids;
    uint64_t bytes;     /* appended so far */
} wd_astream_writer;

void wd__astream_writer_init(wd_astream_writer *w, wd_chunkstore *cs, wd_chunk_put_fn put, void *put_arg,
                             void *cctx, int level, wd_astream *out, int field, wd_dtype dtype,
                             int transform);
int wd__astream_append(wd_astream_writer *w, const void *data, size_t len);
/* Stores the last partial chunk; out->chunks then belongs to out. */
int wd__astream_finish(wd_astream_writer *w);
void wd__astream_writer_free(wd_astream_writer *w);

/* A chunk prepared away from the writer, so that several chunks of one
 * array (or of several) can be transformed, hashed and compressed on a
 * thread pool while the calling thread keeps the store work, in order. */
typedef struct {
    uint8_t id[WD_HASH_SIZE];
    size_t len;  /* raw (untransformed) bytes */
    int codec;
    wd_buf enc, z; /* transformed bytes, compressed bytes */
} wd_astream_chunk;

/* Transforms, hashes and compresses len bytes of an array of dtype and
 * transform (any thread; data is scratch: the gap transform runs in place
 * on it). cctx is a ZSTD_CCtx* of the calling thread. len must be a whole
 * number of elements, at most WD_ASTREAM_CHUNK. */
int wd__astream_chunk_prepare(wd_astream_chunk *c, wd_dtype dtype, int transform, void *cctx, int level,
                              uint8_t *data, size_t len);
/* Appends a prepared chunk to w as its next chunk (the writer's thread;
 * nothing may be pending in w from wd__astream_append): the chunk is put
 * unless the store has it already, exactly as the writer itself would. */
int wd__astream_add_chunk(wd_astream_writer *w, const wd_astream_chunk *c);
void wd__astream_chunk_free(wd_astream_chunk *c);
void wd__astream_clear(wd_astream *a);

/* The compressed chunks covering bytes [begin, end) of an array, fetched on
 * the calling thread (store access) and decoded later on any thread. */
typedef struct {
    const wd_astream *a;
    wd_chunkstore *cs; /* the store the chunks came from */
    uint64_t begin, end;
    size_t first_chunk, n;
    wd_buf *z;          /* n compressed chunks */
    uint64_t *raw_size;
    int *codec;
    size_t cap;
} wd_arange;

int wd__arange_fetch(wd_chunkstore *cs, const wd_astream *a, uint64_t begin, uint64_t end, wd_arange *r);
/* Decodes the range into out (end - begin bytes). tmp, tmp2: scratch of
 * WD_ASTREAM_CHUNK bytes each. dctx: ZSTD_DCtx*. how: WD_DECODE_CHECK or
 * WD_DECODE_TRUSTED (chunkstore.h). */
int wd__arange_decode(const wd_arange *r, void *dctx, uint8_t *out, uint8_t *tmp, uint8_t *tmp2, int how);
void wd__arange_free(wd_arange *r);

/* Reads bytes [begin, end) of an array straight away (calling thread). */
int wd__astream_read(wd_chunkstore *cs, const wd_astream *a, uint64_t begin, uint64_t end, uint8_t *out);

#endif
