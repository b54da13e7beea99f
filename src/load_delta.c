/*
 * load_delta.c - deltatensors' load_delta and reconstruct_to_safetensors
 * without a repository: a .wdelta applied onto a base folder (load-delta,
 * streaming, piece by piece) or onto named tensors in memory.
 *
 * Behaviour follows deltatensors 0.3.0 (format v2) and 0.2.0 (format v1), read
 * from their source; what they do and where we differ:
 *  - onto a folder: reconstruct_to_safetensors' folder (one shard
 *    model.safetensors, the file's tensors in hash order then the base's other
 *    tensors sorted, integers and float8 keep their dtype, config.json
 *    rewritten only when an output dtype is given, other non-weight files
 *    copied; config.json goes through a Python-compatible json.loads/dumps
 *    (hfconfig.c), and whatever Python would refuse is copied as it is). The
 *    base is verified (hashed while the output is made, nothing kept on a
 *    mismatch, and that error wins over decoding errors as when it was
 *    checked first), restricted to the file's tensors (v1 in record order,
 *    which also verifies the v1 files deltatensors itself cannot); a chain
 *    link's parent_hash (SHA-256 of the previous float32 model) is accepted
 *    when the base folder holds that float32 model. The delta is added in
 *    place (a sparse delta leaves a base -0.0 alone).
 *  - in memory: load_delta: hashes every given tensor, returns float32
 *    base + decompress(delta) (0.3.0's decompress, so -0.0 + 0.0 = +0.0).
 *
 * Threads (wd_options.threads; the output bytes never depend on them):
 *  - onto a folder: pieces of PIECE elements are decoded and written at
 *    their final offsets (shardwriter.c) by the pool, a batch at a time,
 *    while the calling thread hashes, for the verification, the base bytes
 *    the workers read for the batch before (tensorhash.c: the base is read
 *    once); the .wdelta's checksum is checked on a thread of its own. A
 *    piece's decoder finds its first sorted entry by searching the sorted
 *    array, and the entry ranges of a tensor's pieces are checked to chain;
 *    any decoding error makes the pieces run again in file order on one
 *    slot, so that errors read as they always did.
 *  - in memory (wd_load_delta): serial.
 *
 * Memory: per worker slot one piece of PIECE elements (raw bytes, float32
 * values, output bytes: 5 MiB) and a decoder (the delta entries of a piece
 * plus a 768 KiB block of index entries: ~4 MiB), never a whole tensor or
 * array; with the verification two HASH_ARENA (8 MiB) arenas of raw base
 * bytes and 1 MiB of hashing buffer (33 MB peak on a Qwen2.5-0.5B at 3
 * slots); in memory, the outputs plus two pieces.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtype.h"
#include "error.h"
#include "flusher.h"
#include "folder.h"
#include "hash.h"
#include "hfconfig.h"
#include "outdir.h"
#include "piece.h"
#include "pipeline.h"
#include "progress.h"
#include "safetensors.h"
#include "shardwriter.h"
#include "sidejob.h"
#include "tensorhash.h"
#include "tensorref.h"
#include "wdelta.h"
#include "wdelta_decode.h"
#include "wdrepo.h"

enum {
    PIECE = WD__DEC_PIECE, /* elements decoded at a time */
};

/* The file's tensors in the order its parent_hash covers them. */
static const wd__wdelta_tensor *hash_order_at(const wd__wdelta *d, size_t i)
{
    return wd__wdelta_version(d) >= 2 ? wd__wdelta_tensor_at(d, i)
                                      : wd__wdelta_tensor_by_record(d, i);
}

/* ---- Loading onto a base folder --------------------------------------------- */

/* One tensor of the output shard: a base tensor, with the delta the file
 * holds for it (or NULL: copied through), and its output dtype. */
typedef struct {
    wd_tref base;
    const wd__wdelta_tensor *t;
    wd_dtype out;
} out_item;

/* Scratch for one piece: raw base bytes, float32 values, output bytes. */
typedef struct {
    uint8_t *raw;
    float *f;
    uint8_t *out;
} piece_bufs;

/* ---- Loading on the pool -------------------------------------------------------- */

enum {
    LOAD_BATCH = 32,        /* pieces handed to the pool at a time (8M elements) */
    HASH_ARENA = 8u << 20,  /* raw base bytes a batch keeps for the verification */
};

/* One piece of the output shard: elements [b, b + cnt) of items[item],
 * written at byte off of the file. j0, j1: the sorted entries (sparse
 * indices, int4 outliers) the piece used, [j0, j1), checked afterwards to
 * chain up over each tensor: pieces find their first entry by binary
 * search, which only a sorted array answers consistently. */
typedef struct {
    size_t item;
    uint64_t b, off, j0, j1;
    size_t cnt;
    uint8_t *raw; /* where its raw base bytes go when they are hashed (else NULL: slot scratch) */
} out_piece;

/* A worker slot's scratch: one piece's buffers (PIECE elements: raw base
 * bytes up to 8 each, float32, output bytes up to 8 each; ~5 MiB) and a
 * decoder (its windows: ~4 MiB) kept while the slot stays on one tensor. */
typedef struct {
    piece_bufs pb;
    wd__wdelta_dec td;
    const out_item *cur; /* the item td decodes, NULL if none */
    uint64_t next_b;     /* where td's last piece ended (no seek needed there) */
} load_slot;

typedef struct {
    const wd__wdelta *d;
    const out_item *items;
    out_piece *pieces;
    size_t p0; /* the running batch's first piece */
    load_slot *slots;
    int fd;
    const char *path;
} load_job;

/* wd_pool_fn: decodes piece p0 + i and writes it at its offset. */
static int load_piece_fn(void *ctx, size_t i, int worker)
{
    load_job *j = ctx;
    out_piece *p = &j->pieces[j->p0 + i];
    const out_item *it = &j->items[p->item];
    load_slot *s = &j->slots[worker];
    size_t es = wd__dtype_size(it->base.dtype), oes = wd__dtype_size(it->out);
    int rc;
    if (!it->t && it->out == it->base.dtype) {
        if (!(rc = wd__tref_read(&it->base, p->b * es, s->pb.raw, p->cnt * es)))
            rc = wd__file_pwrite(j->fd, s->pb.raw, p->cnt * es, p->off, j->path);
        return rc;
    }
    if (it->t && s->cur != it) {
        if (s->cur)
            wd__wdelta_dec_free(&s->td);
        s->cur = NULL;
        if ((rc = wd__wdelta_dec_init(&s->td, j->d, it->t))) {
            wd__wdelta_dec_free(&s->td); /* init cleared it first: frees what it got */
            return rc;
        }
        s->cur = it;
        s->next_b = 0;
    }
    if (it->t && p->b != s->next_b && (rc = wd__wdelta_dec_seek(&s->td, p->b)))
        return rc;
    p->j0 = it->t ? s->td.used : 0;
    rc = wd__tref_f32(&it->base, p->b, p->cnt, s->pb.f, p->raw ? p->raw : s->pb.raw);
    if (!rc && it->t)
        rc = wd__wdelta_dec_apply(&s->td, p->b, p->cnt, s->pb.f, NULL);
    if (rc) {
        s->next_b = UINT64_MAX; /* the decoder is somewhere: seek next time */
        return rc;
    }
    p->j1 = it->t ? s->td.used : 0;
    s->next_b = p->b + p->cnt;
    wd__from_f32(s->pb.out, s->pb.f, p->cnt, it->out);
    return wd__file_pwrite(j->fd, s->pb.out, p->cnt * oes, p->off, j->path);
}

/* Decodes and writes every piece in file order on worker slot 0, each
 * tensor's decoder walking it from its start without a seek (an empty
 * tensor's decoder is set up too): the first error met is the first in
 * file order, the one reported when loading was serial. */
static int rerun_in_order(load_job *job, size_t np, size_t n)
{
    load_slot *s = &job->slots[0];
    if (s->cur)
        wd__wdelta_dec_free(&s->td);
    s->cur = NULL;
    job->p0 = 0;
    int rc = 0;
    for (size_t i = 0, k = 0; !rc && i < n; i++) {
        const out_item *it = &job->items[i];
        if (it->t && it->base.n == 0) {
            wd__wdelta_dec td;
            rc = wd__wdelta_dec_init(&td, job->d, it->t);
            wd__wdelta_dec_free(&td);
        }
        for (; !rc && k < np && job->pieces[k].item == i; k++)
            rc = load_piece_fn(job, k, 0);
    }
    return rc;
}

/* Whether the pieces of every sparse or int4 tensor used each entry of its
 * sorted array exactly once, in order (see out_piece). */
static int pieces_chain(const out_piece *pieces, size_t np, const out_item *items)
{
    for (size_t i = 0; i < np;) {
        const out_item *it = &items[pieces[i].item];
        const wd__wdelta_tensor *t = it->t;
        int field = !t ? -1
                  : t->strategy == WD__WS_SPARSE ? WD__WF_INDICES
                  : t->strategy == WD__WS_QUANTIZED ? -1
                                                    : WD__WF_OUTLIER_IDX;
        uint64_t next = 0;
        size_t k = i;
        for (; k < np && pieces[k].item == pieces[i].item; k++) {
            if (field >= 0 && pieces[k].j0 != next)
                return 0;
            next = pieces[k].j1;
        }
        if (field >= 0 && next != wd__wdelta_field_of(t, field)->count)
            return 0;
        i = k;
    }
    return 1;
}

/* Writes items[0..n) as one safetensors file at path, header as the
 * safetensors package (and deltatensors' ShardedWriter) lays it out: the
 * pieces are decoded and written at their offsets by the workers, a batch
 * at a time, while the calling
 * thread hashes the base for the verification (items[0..nd), when check is
 * given) and then hands the hash (hex) to check, whose error wins over any
 * decoding error (the base was verified before decoding, and still fails
 * first). A decoding error makes it write the pieces again in file order
 * (rerun_in_order), whose first error is reported, as before; an error
 * hashing the base is returned as it is. */
static int write_shard_par(const char *path, const wd__wdelta *d, const out_item *items,
                           size_t n, size_t nd, int (*check)(void *ud, const char *got),
                           void *check_ud, wd__progress *pg, const wd_options *opt)
{
    int verify = check != NULL;
    wd_st_spec *specs = calloc(n + 1, sizeof *specs);
    size_t np = 0;
    for (size_t i = 0; i < n; i++)
        np += (size_t)((items[i].base.n + PIECE - 1) / PIECE);
    out_piece *pieces = calloc(np + 1, sizeof *pieces);
    wd_pool *pool = NULL;
    load_slot *slots = NULL;
    wd__thash *vh = NULL; /* the verification hash, in step with the pool */
    const wd_tref **vrefs = NULL;
    uint8_t *arena[2] = {NULL, NULL}; /* HASH_ARENA bytes each, with the verification */
    char *hdr = NULL;
    size_t hlen = 0;
    wd__flusher *fl = NULL;
    int nslots = 0, fd = -1, hrc = 0;
    int rc = specs && pieces ? wd__pool_new(&pool, opt ? opt->threads : 0) : WD_NOMEM();
    if (!rc)
        rc = wd__flusher_new(&fl);
    if (!rc) {
        nslots = wd__pool_size(pool);
        slots = calloc((size_t)nslots, sizeof *slots);
        rc = slots ? 0 : WD_NOMEM();
    }
    for (int w = 0; !rc && w < nslots; w++) {
        piece_bufs *pb = &slots[w].pb;
        pb->raw = malloc((size_t)PIECE * 8);
        pb->f = malloc((size_t)PIECE * sizeof(float));
        pb->out = malloc((size_t)PIECE * 8);
        rc = pb->raw && pb->f && pb->out ? 0 : WD_NOMEM();
    }
    if (!rc && verify) {
        vrefs = calloc(nd + 1, sizeof *vrefs);
        for (size_t i = 0; vrefs && i < nd; i++)
            vrefs[i] = &items[i].base;
        rc = vrefs ? wd__thash_new(&vh, vrefs, nd, 0, NULL, NULL) : WD_NOMEM();
        arena[0] = malloc(HASH_ARENA);
        arena[1] = malloc(HASH_ARENA);
        if (!rc && (!arena[0] || !arena[1]))
            rc = WD_NOMEM();
    }
    for (size_t i = 0; !rc && i < n; i++)
        specs[i] = (wd_st_spec){items[i].base.name, items[i].out, items[i].base.ndim,
                                items[i].base.shape};
    if (!rc)
        rc = wd__st_header_build(&hdr, &hlen, specs, n, NULL);
    uint64_t off = 8 + (uint64_t)hlen; /* past the data, once laid out */
    if (!rc) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            size_t oes = wd__dtype_size(items[i].out);
            for (uint64_t b = 0; b < items[i].base.n; b += PIECE) {
                size_t cnt = items[i].base.n - b < PIECE ? (size_t)(items[i].base.n - b) : PIECE;
                pieces[k++] = (out_piece){.item = i, .b = b, .off = off, .cnt = cnt};
                off += cnt * oes;
            }
        }
    }
    if (!rc)
        rc = wd__file_create(path, &fd);
    if (!rc)
        rc = wd__shard_begin(fd, path, hdr, hlen, off - 8 - hlen);
    if (rc) {
        if (fd >= 0)
            wd__file_close(fd, path, rc);
        goto done;
    }
    load_job job = {d, items, pieces, 0, slots, fd, path};
    int drc = 0;    /* decoding or writing failed */
    /* With the verification, the workers read the base pieces of the
     * file's tensors into an arena of the batch, and this thread hashes a
     * batch's arena while the workers run the next one (the base was read
     * twice before, once here for the hash). */
    size_t h0 = 0, h1 = 0; /* the batch to hash, in the other arena */
    int cur = 0;
    for (size_t p0 = 0, p1; p0 < np && !drc && !hrc; p0 = p1) {
        size_t used = 0;
        for (p1 = p0; p1 < np && p1 - p0 < LOAD_BATCH; p1++) {
            out_piece *p = &pieces[p1];
            size_t len = p->cnt * wd__dtype_size(items[p->item].base.dtype);
            if (!verify || p->item >= nd)
                continue;
            if (used + len > HASH_ARENA)
                break;
            p->raw = arena[cur] + used;
            used += len;
        }
        const out_piece *last = &pieces[p1 - 1];
        job.p0 = p0;
        wd__pool_start(pool, p1 - p0, load_piece_fn, &job);
        for (size_t k = h0; k < h1 && !hrc; k++)
            hrc = wd__thash_feed(vh, pieces[k].item, pieces[k].b, pieces[k].raw, pieces[k].cnt);
        drc = wd__pool_wait(pool);
        h0 = p0;
        h1 = p1;
        while (h1 > h0 && (!verify || pieces[h1 - 1].item >= nd))
            h1--; /* pieces past the file's tensors are not hashed */
        cur = !cur;
        for (size_t k = p0; k < p1; k++)
            wd__progress_add(pg, pieces[k].cnt * wd__dtype_size(items[pieces[k].item].out));
        if (!drc)
            wd__flusher_wrote(fl, fd, last->off + last->cnt * wd__dtype_size(items[last->item].out) - pieces[p0].off);
    }
    /* the last batch (after a decoding error, wd__thash_final reads the rest) */
    for (size_t k = h0; k < h1 && !drc && !hrc; k++)
        hrc = wd__thash_feed(vh, pieces[k].item, pieces[k].b, pieces[k].raw, pieces[k].cnt);
    if (!drc && !hrc && !pieces_chain(pieces, np, items))
        drc = WD_EBADINPUT;
    if (!hrc && verify) {
        uint8_t dg[WD_HASH_SIZE];
        char got[WD_HEX_SIZE];
        if (!(hrc = wd__thash_final(vh, dg))) {
            wd__hex(got, dg);
            hrc = check(check_ud, got);
        }
    }
    /* A decoding error: the pieces again in file order on one slot finds
     * the first one and reports it as serial loading always has (a verify
     * mismatch, though, comes first: the caller checks got before rc).
     * (issue 9) cancelled: no rerun. */
    if (!hrc && drc && drc != WD_ECANCELLED)
        drc = rerun_in_order(&job, np, n);
    rc = wd__flusher_close(fl, fd, path, hrc ? hrc : drc);
done:
    for (int w = 0; slots && w < nslots; w++) {
        free(slots[w].pb.raw);
        free(slots[w].pb.f);
        free(slots[w].pb.out);
        if (slots[w].cur)
            wd__wdelta_dec_free(&slots[w].td);
    }
    free(slots);
    wd__pool_free(pool);
    wd__flusher_free(fl);
    wd__thash_free(vh);
    free(vrefs);
    free(arena[0]);
    free(arena[1]);
    free(specs);
    free(pieces);
    free(hdr);
    return rc;
}

/* Weight files and indexes deltatensors does not copy (reconstruct.py's
 * _WEIGHT_SUFFIXES by pathlib's suffix, and _WEIGHT_INDEXES). */
static int is_weight_file(const char *name)
{
    static const char *const indexes[] = {"model.safetensors.index.json",
                                          "pytorch_model.bin.index.json"};
    static const char *const suffixes[] = {".safetensors", ".bin",     ".pt",   ".pth",   ".ckpt",
                                           ".h5",          ".msgpack", ".gguf", ".wdelta"};
    for (size_t i = 0; i < sizeof indexes / sizeof *indexes; i++)
        if (!strcmp(name, indexes[i]))
            return 1;
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || !dot[1]) /* pathlib: ".bashrc" and "x." have no suffix */
        return 0;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
        if (!strcmp(dot, suffixes[i]))
            return 1;
    return 0;
}

static int copy_other_files(const wd_folder *base, const char *dir, wd_out_dtype out_dtype)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < base->n_files; i++) {
        const char *name = base->files[i].path;
        if (is_weight_file(name))
            continue;
        char *src = NULL, *dst = NULL;
        if (asprintf(&src, "%s/%s", base->dir, name) < 0 || asprintf(&dst, "%s/%s", dir, name) < 0)
            rc = WD_NOMEM();
        else if ((rc = wd__make_parents(dir, name)))
            ;
        else if (!strcmp(name, "config.json") && out_dtype != WD_OUT_ORIGINAL)
            rc = wd__hfconfig_write(src, dst, wd__out_dtype_name(out_dtype));
        else
            rc = wd__file_copy(src, dst);
        free(src);
        free(dst);
    }
    return rc;
}

/* Matches the file's tensors (in hash order) to the base: items[0..nd) get
 * them, mark[] flags their base index. */
static int match_base(out_item *items, unsigned char *mark, const wd__wdelta *d,
                      const wd_folder *base, const char *in_path, const char *base_dir)
{
    for (size_t i = 0; i < wd__wdelta_count(d); i++) {
        const wd__wdelta_tensor *t = hash_order_at(d, i);
        long k = wd__folder_find(base, t->name);
        if (k < 0)
            return wd__error(WD_EMISMATCH, "wrong base: tensor '%s' of '%s' is not in '%s'",
                             t->name, in_path, base_dir);
        wd__tref_folder(&items[i].base, base, (size_t)k);
        items[i].t = t;
        mark[k] = 1;
        if (!wd__shape_same(t->ndim, t->shape, items[i].base.ndim, items[i].base.shape)) {
            char a[400], b[400];
            wd__shape_fmt(a, sizeof a, t->ndim, t->shape);
            wd__shape_fmt(b, sizeof b, items[i].base.ndim, items[i].base.shape);
            return wd__error(WD_EMISMATCH, "wrong base: tensor '%s' has shape %s in '%s' but %s "
                                           "in the .wdelta", t->name, b, base_dir, a);
        }
        if (!wd__f32_convertible(items[i].base.dtype))
            return wd__error(WD_EBADINPUT, "tensor '%s' is %s in '%s': float8 cannot take a "
                                           "float32 delta", t->name,
                             wd__dtype_name(items[i].base.dtype), base_dir);
    }
    return 0;
}

/* The base check: parent_hash over the base's tensors the file names, in
 * its hash order. A chain link's parent_hash is the float32 model of the link
 * before it: that is accepted too when the folder holds that model (tensors
 * hashed as float32, integers converted). */
static int verify_base(const wd__wdelta *d, const out_item *items, size_t nd,
                       const char *in_path, const char *base_dir, const wd_options *opt,
                       const char *got_raw)
{
    const wd_tref **refs = calloc(nd + 1, sizeof *refs);
    if (!refs)
        return WD_NOMEM();
    uint64_t total = 0;
    int all_f32 = 1;
    for (size_t i = 0; i < nd; i++) {
        refs[i] = &items[i].base;
        total += items[i].base.nbytes;
        all_f32 &= items[i].base.dtype == WD_DT_F32;
    }
    char got[WD_HEX_SIZE], got32[WD_HEX_SIZE];
    const char *want = wd__wdelta_parent_hash(d);
    wd__progress pg;
    int rc = 0;
    if (got_raw) { /* hashed already, while the output was written */
        memcpy(got, got_raw, sizeof got);
    } else {
        wd__progress_start(&pg, opt, "verify", total);
        rc = wd__tref_hash_hex(refs, nd, 0, got, wd__progress_bytes, &pg);
    }
    if (!rc && strcmp(got, want) && !all_f32) {
        wd__progress_start(&pg, opt, "verify", total);
        if (!(rc = wd__tref_hash_hex(refs, nd, 1, got32, wd__progress_bytes, &pg)) && !strcmp(got32, want))
            memcpy(got, got32, sizeof got);
    }
    free(refs);
    if (!rc && strcmp(got, want))
        rc = wd__error(WD_EMISMATCH,
                       "wrong base: '%s' was made against %.12s, but '%s' hashes to %.12s over "
                       "the file's %zu tensors (a chain link's parent is the float32 model of the "
                       "link before it, which a plain base folder cannot verify; --no-verify "
                       "skips the check)",
                       in_path, want, base_dir, got, nd);
    return rc;
}

/* write_shard_par's check: verify_base on the hash it made. */
typedef struct {
    const wd__wdelta *d;
    const out_item *items;
    size_t nd;
    const char *in_path, *base_dir;
    const wd_options *opt;
} verify_ctx;

static int verify_cb(void *ud, const char *got)
{
    const verify_ctx *v = ud;
    return verify_base(v->d, v->items, v->nd, v->in_path, v->base_dir, v->opt, got);
}

/* The .wdelta's own checksum, checked on a thread of its own while the
 * output is made (it used to be read through once before anything else). */
static int sum_fn(void *d)
{
    return wd__wdelta_verify_checksum(d);
}

/* Joins the checksum thread if it runs. A checksum error replaces rc: an
 * open that checks first would have reported it before anything else. */
static int sum_join(wd__sidejob *j, int rc)
{
    int src = wd__sidejob_join(j);
    return src ? src : rc;
}

int wd_load_delta_from_paths(const char *in_path, const char *base_dir, const char *out_dir,
                             wd_out_dtype out_dtype, unsigned flags, const wd_options *opt)
{
    if ((unsigned)out_dtype > WD_OUT_FLOAT16)
        return wd__error(WD_EUSAGE, "unknown output dtype %d", (int)out_dtype);
    /* The output folder is checked (and its temporary sibling made) before
     * any work, so a refused target costs nothing. The inputs must survive
     * any OUT_DIR, --force or not. */
    const wd__keep keep[] = {{base_dir, "the base folder"}, {in_path, "the .wdelta file"}};
    wd__outdir od;
    int rc = wd__outdir_begin(&od, out_dir, flags, keep, 2);
    if (rc)
        return rc;
    const char *tmp = od.tmp.path;

    wd__wdelta *d = NULL;
    wd_folder *base = NULL;
    out_item *items = NULL;
    unsigned char *mark = NULL;
    wd__sidejob sj = {0}; /* the checksum's thread */
    if ((rc = wd__wdelta_open_ex(&d, in_path, WD__WDELTA_OPEN_NO_CHECKSUM)))
        goto done;
    if (wd__sidejob_start(&sj, sum_fn, d) && (rc = wd__wdelta_verify_checksum(d)))
        goto done; /* no thread: checked here */
    if ((rc = wd__folder_open(&base, base_dir)))
        goto done;
    size_t nd = wd__wdelta_count(d), nb = base->n_tensors;
    items = calloc(nb + 1, sizeof *items);
    mark = calloc(nb + 1, 1);
    if (!items || !mark) {
        rc = WD_NOMEM();
        goto done;
    }
    if ((rc = match_base(items, mark, d, base, in_path, base_dir)))
        goto done;
    /* then the base tensors the file does not name, sorted */
    size_t n = nd;
    for (size_t k = 0; k < nb; k++)
        if (!mark[k])
            wd__tref_folder(&items[n++].base, base, k);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].out = wd__dtype_written(items[i].base.dtype, out_dtype);
        total += items[i].base.n * wd__dtype_size(items[i].out);
    }

    char *shard = NULL;
    if (asprintf(&shard, "%s/model.safetensors", tmp) < 0) {
        rc = WD_NOMEM();
        goto done;
    }
    wd__progress pg;
    wd__progress_start(&pg, opt, "load-delta", total);
    /* the base is verified (hashed by this thread) while the pool writes */
    verify_ctx vc = {d, items, nd, in_path, base_dir, opt};
    rc = write_shard_par(shard, d, items, n, nd, flags & WD_LOAD_NO_VERIFY ? NULL : verify_cb, &vc,
                         &pg, opt);
    free(shard);
    if (!rc)
        rc = copy_other_files(base, tmp, out_dtype);
    rc = sum_join(&sj, rc); /* before anything is kept */
    if (!rc) {
        int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        rc = wd__outdir_commit(&od);
    }
done:
    rc = sum_join(&sj, rc); /* joined on every path before d is closed */
    wd__outdir_abort(&od);
    free(items);
    free(mark);
    wd__folder_close(base);
    wd__wdelta_close(d);
    return rc;
}

/* ---- Loading in memory -------------------------------------------------------- */

void wd_named_tensors_free(wd_named_tensor *t, size_t count)
{
    if (!t)
        return;
    for (size_t i = 0; i < count; i++) {
        void *p; /* the library allocated these; const is for the caller */
        memcpy(&p, &t[i].name, sizeof p);
        free(p);
        memcpy(&p, &t[i].data, sizeof p);
        free(p);
    }
    free(t);
}

static const wd_tref *find_ref(const wd_tref *refs, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(refs[mid].name, name);
        if (!c)
            return &refs[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* One tensor of load_delta: base + decompress(delta) in float32, stored as
 * the delta's dtype (float32 in every file deltatensors writes). */
static int load_one(wd_named_tensor *r, const wd__wdelta *d, const wd__wdelta_tensor *t,
                    const wd_tref *b)
{
    wd_dtype odt;
    if (wd__dtype_from_numpy(t->dtype, &odt) ||
        (odt != WD_DT_F32 && odt != WD_DT_F16 && odt != WD_DT_F64))
        return wd__error(WD_EBADINPUT, ".wdelta tensor '%s': unsupported delta dtype '%s'",
                         t->name, t->dtype);
    size_t es = wd__dtype_size(odt);
    if (b->n > SIZE_MAX / es - 1)
        return wd__error(WD_ENOMEM, "tensor '%s' does not fit in memory", t->name);
    char *name = strdup(t->name);
    uint8_t *data = malloc((size_t)b->n * es + 1);
    float *f = malloc(PIECE * sizeof *f), *scratch = malloc(PIECE * sizeof *scratch);
    wd__wdelta_dec td;
    int rc = name && data && f && scratch ? wd__wdelta_dec_init(&td, d, t) : WD_NOMEM();
    if (!rc) {
        for (uint64_t p = 0; !rc && p < b->n; p += PIECE) {
            size_t cnt = b->n - p < PIECE ? (size_t)(b->n - p) : PIECE;
            if (!(rc = wd__tref_f32(b, p, cnt, f, NULL)) && !(rc = wd__wdelta_dec_apply(&td, p, cnt, f, scratch)))
                wd__from_f32(data + p * es, f, cnt, odt);
        }
        wd__wdelta_dec_free(&td);
    }
    free(f);
    free(scratch);
    if (rc) {
        free(name);
        free(data);
        return rc;
    }
    memset(r, 0, sizeof *r);
    r->name = name;
    snprintf(r->dtype, sizeof r->dtype, "%s", wd__dtype_name(odt));
    r->ndim = t->ndim;
    memcpy(r->shape, t->shape, sizeof r->shape);
    r->data = data;
    r->nbytes = b->n * es;
    return 0;
}

int wd_load_delta(wd_named_tensor **out, size_t *out_count, const char *in_path,
                  const wd_named_tensor *base, size_t n_base, int verify)
{
    *out = NULL;
    *out_count = 0;
    wd_tref *br = NULL;
    wd__wdelta *d = NULL;
    wd_named_tensor *res = NULL;
    size_t done = 0;
    int rc = wd__tref_mem_set(&br, base, n_base, "base");
    if (!rc)
        rc = wd__wdelta_open(&d, in_path);
    if (rc)
        goto fail;
    if (verify) {
        /* deltatensors' load_delta hashes every tensor it is given */
        const wd_tref **refs = calloc(n_base + 1, sizeof *refs);
        char got[WD_HEX_SIZE];
        if (!refs) {
            rc = WD_NOMEM();
            goto fail;
        }
        for (size_t i = 0; i < n_base; i++)
            refs[i] = &br[i];
        rc = wd__tref_hash_hex(refs, n_base, 0, got, NULL, NULL);
        free(refs);
        if (!rc && strcmp(got, wd__wdelta_parent_hash(d)))
            rc = wd__error(WD_EMISMATCH, "wrong base: '%s' was made against %.12s, the given "
                                         "tensors hash to %.12s",
                           in_path, wd__wdelta_parent_hash(d), got);
        if (rc)
            goto fail;
    }
    size_t n = wd__wdelta_count(d);
    if (!(res = calloc(n + 1, sizeof *res))) {
        rc = WD_NOMEM();
        goto fail;
    }
    for (; done < n; done++) {
        const wd__wdelta_tensor *t = wd__wdelta_tensor_at(d, done);
        const wd_tref *b = find_ref(br, n_base, t->name);
        if (!b) {
            rc = wd__error(WD_EMISMATCH, "wrong base: tensor '%s' of '%s' is not among the base "
                                         "tensors", t->name, in_path);
        } else if (!wd__shape_same(t->ndim, t->shape, b->ndim, b->shape)) {
            rc = wd__error(WD_EMISMATCH, "wrong base: tensor '%s' has another shape in the base",
                           t->name);
        } else if (!wd__f32_convertible(b->dtype)) {
            rc = wd__error(WD_EBADINPUT, "base tensor '%s' is %s: float8 cannot take a float32 "
                                         "delta", t->name, wd__dtype_name(b->dtype));
        } else {
            rc = load_one(&res[done], d, t, b);
        }
        if (rc)
            goto fail;
    }
    free(br);
    wd__wdelta_close(d);
    *out = res;
    *out_count = n;
    return 0;
fail:
    wd_named_tensors_free(res, done);
    free(br);
    wd__wdelta_close(d);
    return rc;
}
