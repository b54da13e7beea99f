/*
 * safetensors.h - reader (validate-then-read) and header writer for the
 * safetensors format: u64 LE header length, JSON header, packed tensor data.
 */
#ifndef WD_SAFETENSORS_H
#define WD_SAFETENSORS_H

#include <stdint.h>
#include <stddef.h>

#include "dtype.h"
#include "wdrepo.h"

/* Headers above this are refused (SPEC section 8): parsing is the only time
 * the whole header is in memory. */
#define WD_ST_MAX_HEADER (100u * 1000u * 1000u)

typedef struct {
    char *name;          /* UTF-8 after JSON decoding, NUL-terminated, no NUL inside */
    wd_dtype dtype;
    int ndim;
    uint64_t shape[WD_MAX_DIMS];
    uint64_t nelem;      /* product of shape (1 for 0-d) */
    uint64_t nbytes;     /* nelem * dtype size; equals end - begin */
    uint64_t begin, end; /* data_offsets, relative to the data section */
} wd_st_tensor;

typedef struct {
    int fd;                /* -1 when parsed from memory */
    char *path;            /* NULL when parsed from memory */
    uint64_t file_size;
    uint64_t header_len;   /* JSON bytes after the 8-byte prefix (padding included) */
    char *header;          /* those bytes verbatim, so the file can be rebuilt byte for byte */
    uint64_t data_start;   /* 8 + header_len */
    char *metadata_json;   /* "__metadata__" object re-serialized compactly, or NULL */
    size_t n_tensors;
    wd_st_tensor *tensors; /* sorted by data offset: the file's data order */
} wd_st_file;

/* Opens and fully validates path: header length within the file and under
 * WD_ST_MAX_HEADER, valid JSON object, known dtypes, shapes whose byte size
 * (overflow-checked) matches data_offsets, offsets inside the file, tensors
 * tiling the data section with no overlap, gap or trailing bytes, no
 * duplicate or empty names, __metadata__ an object of strings. Fails with
 * WD_EBADINPUT naming the file and the defect, or WD_EIO. */
int wd__st_open(wd_st_file **out, const char *path);

/* Same validation over a file image held in memory (the fuzz entry point):
 * buf holds the first len bytes, file_size is the whole file's size. */
int wd__st_parse(wd_st_file **out, const unsigned char *buf, size_t len, uint64_t file_size);

void wd__st_close(wd_st_file *f);

/* Reads len bytes of tensor t starting at byte offset off within the tensor
 * (bounds-checked) into buf with pread. */
int wd__st_read(const wd_st_file *f, const wd_st_tensor *t, uint64_t off, void *buf, size_t len);

/* Reads len bytes of the data section starting at offset begin (relative
 * to the data section, bounds-checked) into buf: one pread for a run of
 * neighbouring tensors. */
int wd__st_read_data(const wd_st_file *f, uint64_t begin, void *buf, size_t len);

/* Index of the tensor named name, or -1. O(log n) after the first call is not
 * promised; callers that need speed build their own index. */
long wd__st_find(const wd_st_file *f, const char *name);

/* Describes one tensor for wd__st_header_build. */
typedef struct {
    const char *name;
    wd_dtype dtype;
    int ndim;
    const uint64_t *shape;
} wd_st_spec;

/* Builds a header the way the Python safetensors package and deltatensors
 * write it: {"__metadata__":{...},"name":{"dtype":..,"shape":[..],
 * "data_offsets":[b,e]},...} with tensors laid out in the order given,
 * non-ASCII characters as \uXXXX escapes, space-padded to a multiple of 8.
 * metadata_json is a JSON object text or NULL (then {"format":"pt"}).
 * *out (malloc'd, NUL-terminated) holds the JSON without the 8-byte prefix;
 * *out_len its length. */
int wd__st_header_build(char **out, size_t *out_len, const wd_st_spec *specs, size_t n,
                        const char *metadata_json);

#endif
