/*
 * folder.h - a Hugging Face-style model folder on disk: its safetensors
 * shards (validated), its other files, and a by-name index of every tensor.
 */
#ifndef WD_FOLDER_H
#define WD_FOLDER_H

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"
#include "wdrepo.h"

typedef struct {
    char *path;      /* plain file name inside the folder */
    int is_shard;    /* name ends in .safetensors */
    uint64_t size;
    wd_st_file *st;  /* shards only: open and validated */
} wd_folder_file;

typedef struct {
    const char *name;       /* points into the shard's tensor */
    size_t file;            /* index into files */
    const wd_st_tensor *t;
} wd_folder_tensor;

typedef struct {
    char *dir;
    size_t n_files;
    wd_folder_file *files;     /* sorted by path (byte order) */
    size_t n_tensors;
    wd_folder_tensor *tensors; /* sorted by name (byte order = code point order) */
    uint64_t tensor_bytes;
} wd_folder;

/* Opens dir: every regular file at its top level (symlinks followed) is
 * kept; *.safetensors files are validated shards. Hidden subdirectories
 * (.git, .cache) are ignored; any other subdirectory is refused, as are
 * folders without a shard and tensor names repeated across shards. A shard
 * index (*.safetensors.index.json) must agree with the shards
 * (shardindex.h): every command that reads a model folder refuses one that
 * points outside the folder, at a missing shard, or at the wrong shard. */
int wd__folder_open(wd_folder **out, const char *dir);

/* wd__folder_open flag: leave shard index files unchecked. For reading
 * back a folder wdrepo wrote itself (checkout), which must give back what
 * was stored even if an older wdrepo stored an index it would now refuse. */
#define WD_FOLDER_TRUST_INDEX 1u
int wd__folder_open_ex(wd_folder **out, const char *dir, unsigned flags);
void wd__folder_close(wd_folder *f);

/* The model of one safetensors file at path, as the folder holding just
 * that file (its only file; the name need not end in .safetensors). */
int wd__folder_open_file(wd_folder **out, const char *path);

/* Index of tensor name in f->tensors, or -1. */
long wd__folder_find(const wd_folder *f, const char *name);

/* The model hash (SPEC section 4): SHA-256 over the tensors in sorted-name
 * order, each as its name's UTF-8 bytes then its raw data. Reads in 1 MiB
 * pieces. */
int wd__folder_hash(const wd_folder *f, uint8_t out[WD_HASH_SIZE]);

/* 1 if name is safe as a file name inside a folder we write: non-empty,
 * not "." or "..", no '/', no control characters. */
int wd__plain_name_ok(const char *name);

#endif
