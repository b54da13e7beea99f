/*
 * show.c - one stored non-weight file of an object, streamed chunk by
 * chunk to the caller (`wdrepo show REF:PATH`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "repo_int.h"

/* "config.json, tokenizer.json, ... (and 12 more)": the first files of obj,
 * so a wrong path names what there is. */
static void list_files(char *buf, size_t size, const wd_object *obj)
{
    size_t n = 0, shown = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < obj->n_files && n < size; i++) {
        if (shown == 8 || n + strlen(obj->files[i].path) + 40 > size) {
            snprintf(buf + n, size - n, " (and %zu more)", obj->n_files - shown);
            return;
        }
        n += (size_t)snprintf(buf + n, size - n, "%s%s", shown ? ", " : "", obj->files[i].path);
        shown++;
    }
}

int wd_show(wd_repo *repo, const char *ref, const char *path, wd_write_fn fn, void *ud)
{
    uint8_t id[WD_HASH_SIZE];
    wd_object *obj = NULL;
    int rc = wd__resolve(repo, ref, id);
    if (!rc)
        rc = wd__object_load(repo, id, &obj);
    if (rc)
        return rc;
    const wd_stored_file *sf = NULL;
    for (size_t i = 0; i < obj->n_files; i++)
        if (!strcmp(obj->files[i].path, path))
            sf = &obj->files[i];
    if (!sf) {
        char files[600];
        list_files(files, sizeof files, obj);
        rc = wd__error(WD_ENOTFOUND, "'%s' has no file '%s'; its files: %s", ref, path,
                       obj->n_files ? files : "none");
    } else if (sf->is_shard) {
        rc = wd__error(WD_EUSAGE,
                       "'%s' is a weight file, stored as tensors; write it with 'wdrepo checkout %s OUT_DIR --only %s'",
                       path, ref, path);
    }
    /* One chunk (at most WD_CHUNK_RAW_MAX bytes) in memory at a time. */
    wd_buf data = {0};
    uint64_t total = 0;
    for (size_t i = 0; !rc && i < sf->n_chunks; i++) {
        data.len = 0;
        rc = wd__file_where(wd__stream_read(repo, sf->chunks + i * WD_HASH_SIZE, 1, &data), obj, sf);
        if (!rc && data.len)
            rc = fn(ud, data.data, data.len);
        total += data.len;
    }
    if (!rc && total != sf->size)
        rc = wd__error(WD_ECORRUPT, "stored file '%s' has %llu bytes, recorded %llu", path,
                       (unsigned long long)total, (unsigned long long)sf->size);
    wd__buf_free(&data);
    wd__object_free(obj);
    return rc;
}
