/*
 * chunkproven.c - the chunks a process has already decoded and found equal
 * to their ids.
 *
 * Every decode of a stored chunk re-hashes its output against the id, so
 * damage is caught before a decoded byte is used. A lossy commit reads the
 * parent's chunks once per codec pass (and again to seal the new object):
 * hashing them each time cost a third of its CPU. Stored chunks never change
 * under a given id, so once this process has proven a chunk, a later decode
 * of the same chunk from the same store only has to check its sizes, as
 * the decoders always do.
 *
 * The set holds whole 32-byte ids in an open-addressing table: ids are
 * SHA-256 values, so their first 8 bytes are already a uniform hash. It
 * grows by doubling up to WD_PROVEN_MAX ids (32 bytes each: 4 MiB); a full
 * set stops remembering, so a bigger model is still checked, just without
 * the saving for the chunks that did not fit.
 */
#include "chunkproven.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define WD_PROVEN_MIN 1024u
#define WD_PROVEN_MAX (1u << 17)

struct wd__proven {
    pthread_mutex_t mu;
    uint8_t *ids;  /* cap slots of WD_HASH_SIZE bytes; an all-zero slot is empty */
    size_t cap, n; /* cap is a power of two; n <= cap / 2 */
};

static const uint8_t zero_id[WD_HASH_SIZE];

int wd__proven_new(wd__proven **out)
{
    wd__proven *p = calloc(1, sizeof *p);
    if (!p)
        return WD_NOMEM();
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return 0;
}

void wd__proven_free(wd__proven *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->mu);
    free(p->ids);
    free(p);
}

static size_t slot_of(const uint8_t id[WD_HASH_SIZE], size_t cap)
{
    uint64_t h;
    memcpy(&h, id, sizeof h);
    return (size_t)h & (cap - 1);
}

/* The slot holding id, or the empty slot where it would go. */
static uint8_t *find(uint8_t *ids, size_t cap, const uint8_t id[WD_HASH_SIZE])
{
    for (size_t i = slot_of(id, cap);; i = (i + 1) & (cap - 1)) {
        uint8_t *s = ids + i * WD_HASH_SIZE;
        if (!memcmp(s, id, WD_HASH_SIZE) || !memcmp(s, zero_id, WD_HASH_SIZE))
            return s;
    }
}

int wd__proven_has(wd__proven *p, const uint8_t id[WD_HASH_SIZE])
{
    /* The all-zero id is never remembered: it marks empty slots. */
    if (!p || !memcmp(id, zero_id, WD_HASH_SIZE))
        return 0;
    pthread_mutex_lock(&p->mu);
    int found = p->ids && !memcmp(find(p->ids, p->cap, id), id, WD_HASH_SIZE);
    pthread_mutex_unlock(&p->mu);
    return found;
}

static void grow(wd__proven *p)
{
    size_t cap = p->cap ? p->cap * 2 : WD_PROVEN_MIN;
    uint8_t *ids = calloc(cap, WD_HASH_SIZE);
    if (!ids)
        return; /* remembering is an optimisation: without room, forget */
    for (size_t i = 0; i < p->cap; i++) {
        const uint8_t *s = p->ids + i * WD_HASH_SIZE;
        if (memcmp(s, zero_id, WD_HASH_SIZE))
            memcpy(find(ids, cap, s), s, WD_HASH_SIZE);
    }
    free(p->ids);
    p->ids = ids;
    p->cap = cap;
}

void wd__proven_add(wd__proven *p, const uint8_t id[WD_HASH_SIZE])
{
    if (!p || !memcmp(id, zero_id, WD_HASH_SIZE))
        return;
    pthread_mutex_lock(&p->mu);
    if ((p->n + 1) * 2 > p->cap && p->cap < WD_PROVEN_MAX)
        grow(p);
    if (p->ids && (p->n + 1) * 2 <= p->cap) {
        uint8_t *s = find(p->ids, p->cap, id);
        if (memcmp(s, id, WD_HASH_SIZE)) {
            memcpy(s, id, WD_HASH_SIZE);
            p->n++;
        }
    }
    pthread_mutex_unlock(&p->mu);
}
