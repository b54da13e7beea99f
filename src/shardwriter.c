/*
 * shardwriter.c - laying out a safetensors shard for writes at offsets
 * (see shardwriter.h).
 */
#include "shardwriter.h"

#include <unistd.h>

#include "error.h"
#include "outdir.h"

int wd__shard_begin(int fd, const char *path, const void *hdr, size_t hlen, uint64_t data_bytes)
{
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int rc = wd__file_pwrite(fd, prefix, 8, 0, path);
    if (!rc)
        rc = wd__file_pwrite(fd, hdr, hlen, 8, path);
    if (!rc && ftruncate(fd, (off_t)(8 + (uint64_t)hlen + data_bytes)) != 0)
        rc = wd__error_errno(WD_EIO, "cannot write '%s'", path);
    return rc;
}
