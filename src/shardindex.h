/*
 * shardindex.h - a folder's shard index (model.safetensors.index.json and
 * its kin): the weight_map it carries, checked against the shards that are
 * actually in the folder, so an index naming files outside it, a shard
 * that is missing, or tensors that are not where it says is refused
 * before anything is stored.
 */
#ifndef WD_SHARDINDEX_H
#define WD_SHARDINDEX_H

#include <stddef.h>

#include "folder.h"
#include "safetensors.h"

/* Index files above this are refused: an index lists every tensor name
 * once, as the shard headers do, which SPEC caps at 100 MB. */
#define WD_SHARDINDEX_MAX WD_ST_MAX_HEADER

/* 1 if path names a shard index: it ends in ".safetensors.index.json"
 * (Hugging Face writes model.safetensors.index.json; variants prefix it). */
int wd__shardindex_is_index(const char *path);

/* Checks the index text (len bytes, the content of index_path, which only
 * names it in messages) against the folder f, using only f->files (path,
 * is_shard) and f->tensors (name, file): the text is a JSON object with one
 * "weight_map", an object of strings; every value a plain file name of a
 * *.safetensors shard present in f; every key a tensor of that very shard,
 * listed once; and every tensor of f listed (so every shard holding one is
 * named). Fails with WD_EBADINPUT and one line naming index_path and the
 * defect, WD_ENOMEM. Memory: f->n_tensors + f->n_files bytes of marks and
 * the longest string of the text. */
int wd__shardindex_check(const wd_folder *f, const char *index_path, const unsigned char *text, size_t len);

#endif
