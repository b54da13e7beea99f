/*
 * pairdelta.c - f32(a) - f32(b) of two tensors read range by range on any
 * worker slot (see pairdelta.h): the delta every lossy encoder reads
 * (save-delta from folders or memory, export's re-encoding of stored
 * deltas, commit's encoding of a folder's tensor against its stored
 * parent).
 */
#include "pairdelta.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "lossy_encode.h"
#include "piece.h"

/* The piece of a stored side a slot decoded last. The two sides of a pair
 * may differ in dtype (a bf16 fine-tune of an f32 base) and so in piece
 * size: each side keeps its own. */
typedef struct {
    wd_piece_plan plan;
    float *vals;     /* plan.nelem floats from plan.begin */
    size_t cap;      /* bytes */
    int64_t cached;  /* the piece's index, -1 if none */
} cursor;

typedef struct {
    uint8_t *raw[2]; /* tref sides: native bytes of the range */
    size_t cap_raw[2];
    float *tmp;      /* the b side as float32 */
    size_t cap_tmp;  /* bytes */
    cursor cur[2];
    wd_piece_scratch *ps; /* made at a slot's first stored read */
} slot;

struct wd__pair_delta {
    wd__pd_side side[2];
    int nslots;
    slot *slots;
    wd__pd_piece_fn on_piece;
    void *on_piece_ud;
};

/* Grows *p to need bytes; the old contents are not kept. */
static int grow(void **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    free(*p);
    *p = malloc(need);
    *cap = *p ? need : 0;
    return *p ? 0 : WD_NOMEM();
}

int wd__pair_delta_new(wd__pair_delta **out, int nslots)
{
    *out = NULL;
    wd__pair_delta *pd = calloc(1, sizeof *pd);
    if (pd)
        pd->slots = calloc((size_t)(nslots > 0 ? nslots : 1), sizeof *pd->slots);
    if (!pd || !pd->slots) {
        free(pd);
        return WD_NOMEM();
    }
    pd->nslots = nslots > 0 ? nslots : 1;
    for (int w = 0; w < pd->nslots; w++)
        pd->slots[w].cur[0].cached = pd->slots[w].cur[1].cached = -1;
    *out = pd;
    return 0;
}

void wd__pair_delta_free(wd__pair_delta *pd)
{
    if (!pd)
        return;
    for (int w = 0; w < pd->nslots; w++) {
        slot *s = &pd->slots[w];
        for (int i = 0; i < 2; i++) {
            free(s->raw[i]);
            wd__piece_plan_free(&s->cur[i].plan);
            free(s->cur[i].vals);
        }
        free(s->tmp);
        wd__piece_scratch_free(s->ps);
    }
    free(pd->slots);
    free(pd);
}

void wd__pair_delta_set(wd__pair_delta *pd, const wd__pd_side *a, const wd__pd_side *b)
{
    pd->side[0] = *a;
    pd->side[1] = *b;
    for (int w = 0; w < pd->nslots; w++)
        pd->slots[w].cur[0].cached = pd->slots[w].cur[1].cached = -1;
}

void wd__pair_delta_hook(wd__pair_delta *pd, wd__pd_piece_fn fn, void *ud)
{
    pd->on_piece = fn;
    pd->on_piece_ud = ud;
}

/* Piece k of t in mode through c's plan and s's scratch into out. */
static int piece_decode(slot *s, cursor *c, wd_repo *repo, const wd_stored_tensor *t, uint64_t k, int mode, void *out)
{
    int rc = s->ps ? 0 : wd__piece_scratch_new(&s->ps);
    if (!rc)
        rc = wd__piece_fetch(repo, t, k, mode, &c->plan);
    return rc ? rc : wd__piece_decode(&c->plan, s->ps, out);
}

/* Makes side i's cursor hold the piece of its tensor t with element pos. */
static int cursor_seek(wd__pair_delta *pd, slot *s, int i, wd_repo *repo, const wd_stored_tensor *t, uint64_t pos)
{
    cursor *c = &s->cur[i];
    uint64_t k = pos / t->chunk_elems;
    if ((int64_t)k != c->cached) {
        c->cached = -1;
        uint64_t left = k * t->chunk_elems < t->nelem ? t->nelem - k * t->chunk_elems : 0;
        size_t n = (size_t)(left < t->chunk_elems ? left : t->chunk_elems);
        int rc = grow((void **)&c->vals, &c->cap, n * sizeof(float));
        if (!rc)
            rc = piece_decode(s, c, repo, t, k, WD_PIECE_F32, c->vals);
        if (rc)
            return rc;
        c->cached = (int64_t)k;
        if (pd->on_piece)
            pd->on_piece(pd->on_piece_ud, i, k, c->vals, c->plan.nelem);
    }
    /* A piece that does not cover pos would make the caller take no
     * elements and spin. */
    if (pos < c->plan.begin || pos - c->plan.begin >= c->plan.nelem)
        return wd__error(WD_ECORRUPT, "tensor '%s': element %llu is outside its piece %lld", t->name,
                         (unsigned long long)pos, (long long)c->cached);
    return 0;
}

/* Side i's elements [begin, begin + count) as float32 into out (sub 0),
 * or subtracted from out (sub 1: out = f32(out - side), so a stored b
 * side needs no copy of its pieces). */
static int side_read(wd__pair_delta *pd, slot *s, int i, uint64_t begin, size_t count, float *out, int sub)
{
    const wd__pd_side *side = &pd->side[i];
    if (side->ref) {
        const wd_tref *r = side->ref;
        int rc = r->mem ? 0 : grow((void **)&s->raw[i], &s->cap_raw[i], count * wd__dtype_size(r->dtype));
        float *dst = out;
        if (!rc && sub && !(rc = grow((void **)&s->tmp, &s->cap_tmp, count * sizeof *s->tmp)))
            dst = s->tmp;
        if (!rc)
            rc = wd__tref_f32(r, begin, count, dst, s->raw[i]);
        if (!rc && sub)
            wd__f32_sub(out, out, dst, count);
        return rc;
    }
    cursor *c = &s->cur[i];
    while (count) {
        int rc = cursor_seek(pd, s, i, side->repo, side->st, begin);
        if (rc)
            return rc;
        uint64_t off = begin - c->plan.begin, avail = c->plan.nelem - off;
        size_t take = count < avail ? count : (size_t)avail;
        if (sub)
            wd__f32_sub(out, out, c->vals + off, take);
        else
            memcpy(out, c->vals + off, take * sizeof *out);
        out += take;
        begin += take;
        count -= take;
    }
    return 0;
}

/* Native bytes of a tref side's range: in place for memory, else read
 * into the slot's buffer i. */
static int raw_of(slot *s, int i, const wd_tref *r, uint64_t begin, size_t count, const uint8_t **out)
{
    size_t es = wd__dtype_size(r->dtype);
    if (r->mem) {
        *out = r->mem + begin * es;
        return 0;
    }
    int rc = grow((void **)&s->raw[i], &s->cap_raw[i], count * es);
    if (!rc)
        rc = wd__tref_read(r, begin * es, s->raw[i], count * es);
    *out = s->raw[i];
    return rc;
}

int wd__pair_delta_read_par(void *ud, int worker, uint64_t begin, size_t count, float *out)
{
    wd__pair_delta *pd = ud;
    slot *s = &pd->slots[worker];
    const wd_tref *a = pd->side[0].ref, *b = pd->side[1].ref;
    int rc;
    if (a && b && a->dtype == WD_DT_BF16 && b->dtype == WD_DT_BF16) {
        /* the common case in one pass: both widened by a shift, one float32
         * subtraction each (the same values as the general path) */
        const uint8_t *ra, *rb;
        if ((rc = raw_of(s, 0, a, begin, count, &ra)) || (rc = raw_of(s, 1, b, begin, count, &rb)))
            return rc;
        wd__bf16_sub(out, ra, rb, count);
        return 0;
    }
    if ((rc = side_read(pd, s, 0, begin, count, out, 0)))
        return rc;
    return side_read(pd, s, 1, begin, count, out, 1);
}

void *wd__pair_delta_lend(wd__pair_delta *pd, int worker, int i, size_t bytes)
{
    slot *s = &pd->slots[worker];
    if (i == 0)
        return grow((void **)&s->raw[0], &s->cap_raw[0], bytes) ? NULL : s->raw[0];
    s->cur[1].cached = -1;
    return grow((void **)&s->cur[1].vals, &s->cur[1].cap, bytes) ? NULL : s->cur[1].vals;
}

int wd__pair_delta_decode(wd__pair_delta *pd, int worker, wd_repo *repo, const wd_stored_tensor *t, uint64_t k,
                          int mode, void *out)
{
    slot *s = &pd->slots[worker];
    s->cur[1].cached = -1; /* its plan is about to describe another piece */
    return piece_decode(s, &s->cur[1], repo, t, k, mode, out);
}

int wd__pair_delta_read(void *pd, uint64_t begin, size_t count, float *out)
{
    return wd__pair_delta_read_par(pd, 0, begin, count, out);
}

wd_delta_src wd__pair_delta_src(wd__pair_delta *pd, uint64_t n, struct wd_pool *pool, float *cache)
{
    wd_delta_src src = {.n = n, .read = wd__pair_delta_read, .ud = pd, .pool = pool,
                        .read_par = wd__pair_delta_read_par, .cache_elems = WD_LOSSY_CACHE_ELEMS,
                        .cache_buf = cache};
    return src;
}
