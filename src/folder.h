/*
 * folder.h - a Hugging Face-style model folder on disk: its safetensors
 * shards (validated), its other files, and a by-name index of every tensor.
 */
#ifndef WD_FOLDER_H
#define WD_FOLDER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "safetensors.h"
#include "wdrepo.h"

typedef struct {
    char *path;      /* path inside the folder: plain names joined by '/' */
    int is_shard;    /* at the top level, name ends in .safetensors */
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
    const char *const *exclude; /* --exclude globs (the caller's), while opening */
    size_t n_exclude;
    int has_never;              /* never_dev/ino: a folder never read (the repository) */
    dev_t never_dev;
    ino_t never_ino;
} wd_folder;

/* Subfolders deeper than this are refused. */
#define WD_FOLDER_MAX_DEPTH 32

/* Opens dir: every regular file (symlinks followed) at its top level and
 * in its subfolders is kept, with its path relative to dir; the top
 * level's *.safetensors files are validated shards, the weights (a
 * subfolder's are plain files). Hidden subfolders (.git, .cache) are
 * ignored; symbolic links to folders, special files and names that are
 * not storable are refused, as are folders without a shard and tensor
 * names repeated across shards. A shard
 * index (*.safetensors.index.json) must agree with the shards
 * (shardindex.h): every command that reads a model folder refuses one that
 * points outside the folder, at a missing shard, or at the wrong shard. */
int wd__folder_open(wd_folder **out, const char *dir);

/* wd__folder_open flag: leave shard index files unchecked. For reading
 * back a folder wdrepo wrote itself (checkout), which must give back what
 * was stored even if an older wdrepo stored an index it would now refuse. */
#define WD_FOLDER_TRUST_INDEX 1u
int wd__folder_open_ex(wd_folder **out, const char *dir, unsigned flags);
/* wd__folder_open_ex leaving out every file and folder whose relative
 * path matches one of the n_exclude fnmatch(3) globs (a folder also as
 * "path/"); the globs must outlive the call only. never (may be NULL) is a
 * folder left out wherever it appears, compared by device and inode: the
 * repository, which a model folder may hold (`-R model/repo`), and which
 * is being written while the model is read. */
int wd__folder_open_excluding(wd_folder **out, const char *dir, unsigned flags, const char *const *exclude,
                              size_t n_exclude, const char *never);
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

/* 1 if path is safe as a file's path inside a folder we write: plain
 * names (wd__plain_name_ok) joined by single '/', so no '..', no absolute
 * path, no empty part. */
int wd__rel_path_ok(const char *path);

/* Creates the folders between root and the file path (relative, checked
 * with wd__rel_path_ok), for writing it; existing ones are kept. */
int wd__make_parents(const char *root, const char *path);

#endif
