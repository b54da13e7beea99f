/*
 * shardwriter.h - a safetensors shard written at known offsets: the 8-byte
 * header length and the header first, the file sized for its data, then
 * the tensors' pieces written at their offsets by any worker in any order
 * (checkout, load-delta). The header text itself comes from
 * wd__st_header_build or a stored shard.
 */
#ifndef WD_SHARDWRITER_H
#define WD_SHARDWRITER_H

#include <stddef.h>
#include <stdint.h>

/* Writes the little-endian length of hdr and hdr[0..hlen) at the start of
 * fd (path names it in errors) and sizes the file to 8 + hlen +
 * data_bytes, so that pieces may be written anywhere in it. */
int wd__shard_begin(int fd, const char *path, const void *hdr, size_t hlen, uint64_t data_bytes);

#endif
