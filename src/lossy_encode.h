/*
 * lossy_encode.h - encoding a fine-tune tensor with a deltatensors strategy
 * against a stored parent tensor (see lossy_encode.c).
 */
#ifndef WD_LOSSY_ENCODE_H
#define WD_LOSSY_ENCODE_H

#include "codec.h"
#include "folder.h"
#include "lossy.h"

/* Where the arrays go: the chunk store, through the caller's put (which
 * groups puts into transactions), compressed with cctx at level. */
typedef struct {
    wd_chunkstore *cs;
    wd_chunk_put_fn put;
    void *put_arg;
    void *cctx;
    int level;
    void *const *worker_cctx; /* optional: a ZSTD_CCtx* per pool worker slot, to compress arrays in parallel */
    /* Commits what put has grouped so far (NULL: puts are committed as
     * they go): a sparse tensor rebuilt from the store needs its arrays
     * visible to the workers' reads. */
    int (*flush)(void *put_arg);
} wd_lossy_sink;

/* Tensors of at most this many elements are read once per encoding, then
 * served from memory to the codec's later passes: 32 MiB of float32, which
 * holds every attention and MLP matrix of models up to ~3B parameters. */
#define WD_LOSSY_CACHE_ELEMS ((size_t)8 << 20)
/* Sparse entries kept in memory for the rebuild: 12 MiB at 12 bytes an
 * entry, which holds every cached tensor's entries at the default sparsity
 * (at most 0.8M). */
#define WD_SPARSE_KEEP ((uint64_t)1 << 20)

struct wd_pool;

/* What encoding the tensors of one folder needs from tensor to tensor: the
 * per-worker readers and the cache. With a pool (may be NULL), the passes
 * run on its workers; the arrays are the same either way. */
typedef struct wd_lossy_encoder wd_lossy_encoder;
/* Called on the calling thread, now and then during a tensor's encoding,
 * with the elements of the delta read so far in all passes (a tensor over
 * WD_LOSSY_CACHE_ELEMS is read once a pass, a smaller one once). */
typedef void (*wd_lossy_progress_fn)(void *ud, uint64_t elems_read);
int wd__lossy_encoder_new(wd_lossy_encoder **out, wd_repo *repo, const wd_folder *folder, struct wd_pool *pool,
                          wd_lossy_progress_fn progress, void *progress_ud);
void wd__lossy_encoder_free(wd_lossy_encoder *enc);

/* Receives the tensor's reconstruction, the native bytes checkout will
 * write, in element order and on the calling thread. */
typedef int (*wd_lossy_recon_fn)(void *ud, const uint8_t *native, size_t nbytes);

/* Encodes src (of the encoder's folder) against parent's float32
 * reconstruction with strategy (WD__WS_*) and option (sparsity or outlier
 * fraction), stores the arrays and returns the lossy description in *out
 * (wd__lossy_free). parent must have src's dtype and shape, and a
 * float32-convertible dtype. With recon set, an int4, quantized or sparse
 * tensor is also rebuilt and handed to recon, and *recon_done set to 1:
 * from the arrays still in memory (sparse: its entries, kept while they go
 * out when there are at most WD_SPARSE_KEEP of them and the tensor fits the
 * cache, else read back from the store). lowbit stores its arrays as it
 * goes, so its reconstruction must come from the store (*recon_done 0). */
int wd__lossy_encode_tensor(wd_lossy_encoder *enc, const wd_folder_tensor *src, const wd_stored_tensor *parent,
                            int strategy, double option, const wd_lossy_sink *sink, wd_lossy **out,
                            wd_codec_fidelity *fid, wd_lossy_recon_fn recon, void *recon_ud, int *recon_done);

#endif
