/*
 * tensorref.h - one way to read a tensor whether it sits in a model folder's
 * shard or in a caller's memory (tensorhash.h hashes a list of them).
 */
#ifndef WD_TENSORREF_H
#define WD_TENSORREF_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "folder.h"
#include "wdrepo.h"

/* One tensor of a folder (st, t) or of the caller's memory (mem). */
typedef struct {
    const char *name;
    wd_dtype dtype;
    int ndim;
    const uint64_t *shape;
    uint64_t n, nbytes;
    const wd_st_file *st;
    const wd_st_tensor *t;
    const uint8_t *mem;
    size_t shard; /* folder tensors: index of its file in the folder */
} wd_tref;

void wd__tref_folder(wd_tref *r, const wd_folder *f, size_t i);
/* Checks a caller's tensor and describes it (pointing into x); what names
 * the set in errors (WD_EUSAGE). */
int wd__tref_mem(wd_tref *r, const wd_named_tensor *x, const char *what);
/* A caller's tensor set x[0..n) described, sorted by name; duplicate names
 * are refused (a state dict cannot hold them), what naming the set in
 * errors (WD_EUSAGE). *out is malloc'd, pointing into x. */
int wd__tref_mem_set(wd_tref **out, const wd_named_tensor *x, size_t n, const char *what);
/* len raw bytes from byte off. */
int wd__tref_read(const wd_tref *r, uint64_t off, void *buf, size_t len);
/* Elements [begin, begin + count) as float32; raw is scratch for count
 * elements of the tensor's dtype (unused, may be NULL, for memory). */
int wd__tref_f32(const wd_tref *r, uint64_t begin, size_t count, float *out, uint8_t *raw);


/* Whether two shapes are the same; a shape as "[2,3]" for a message. */
int wd__shape_same(int na, const uint64_t *a, int nb, const uint64_t *b);
void wd__shape_fmt(char *buf, size_t size, int ndim, const uint64_t *shape);

#endif
