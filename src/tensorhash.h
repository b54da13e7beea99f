/*
 * tensorhash.h - the named-tensor SHA-256: each tensor's name (its UTF-8
 * bytes, no terminator), then its data, tensors in the order given (name
 * order for a model hash; a .wdelta's own order for its parent_hash). The
 * model hash, deltatensors' parent_hash of a base and a chain link's
 * float32 parent hash are all this one digest.
 */
#ifndef WD_TENSORHASH_H
#define WD_TENSORHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hash.h"
#include "tensorref.h"

/* The digest fed by a caller that has the bytes already (a pipeline's
 * pieces): a name starts each tensor, data follows in order. */
static inline void wd__thash_name(wd_sha256 *h, const char *name)
{
    wd__sha256_update(h, name, strlen(name));
}

/* The digest over tensors read here, resumable: wd__thash_to hashes on to
 * a point, so a caller may hash in step with other work over the same
 * tensors (load-delta verifies its base while the pool writes the output).
 * Memory: one 1 MiB buffer (and 512 KiB of float32 for as_f32). */
typedef struct wd__thash wd__thash;

/* Over refs[0..n) (kept by the caller), each raw (as_f32 = 0) or as
 * float32 (4 bytes an element, integers converted). done (may be NULL)
 * hears of the tensor bytes read. */
int wd__thash_new(wd__thash **out, const wd_tref *const *refs, size_t n, int as_f32,
                  void (*done)(void *ud, uint64_t bytes), void *ud);
/* Hashes on up to element elem of tensor ti (ti == n: to the end). */
int wd__thash_to(wd__thash *th, size_t ti, uint64_t elem);
/* Hashes on up to element elem of tensor ti, then the caller's raw bytes
 * of elements [elem, elem + count) of it, as if read here (a caller that
 * read them already saves the second read). Not for as_f32. */
int wd__thash_feed(wd__thash *th, size_t ti, uint64_t elem, const void *raw, size_t count);
/* Hashes what is left and writes the digest. */
int wd__thash_final(wd__thash *th, uint8_t out[WD_HASH_SIZE]);
void wd__thash_free(wd__thash *th);

/* The whole digest over refs[0..n) in one call. */
int wd__tref_hash(const wd_tref *const *refs, size_t n, int as_f32, uint8_t out[WD_HASH_SIZE],
                  void (*done)(void *ud, uint64_t bytes), void *ud);

/* wd__tref_hash as lowercase hex. */
int wd__tref_hash_hex(const wd_tref *const *refs, size_t n, int as_f32, char out[WD_HEX_SIZE],
                      void (*done)(void *ud, uint64_t bytes), void *ud);

#endif
