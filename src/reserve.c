/*
 * reserve.c - the disk space a writing command sets aside for cleaning up
 * after a full disk (reserve.h).
 */
#include "reserve.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Handles of one process get distinct files. */
static atomic_uint next_serial;

void wd__reserve_make(wd_reserve *r, const char *dir)
{
    r->path = NULL;
    char *path = NULL;
    if (asprintf(&path, "%s/" WD_RESERVE_PREFIX "%ld.%u", dir, (long)getpid(), atomic_fetch_add(&next_serial, 1)) < 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        free(path);
        return;
    }
    /* Blocks actually allocated: a sparse file would reserve nothing. */
    int err = posix_fallocate(fd, 0, WD_RESERVE_BYTES);
    close(fd);
    if (err) {
        unlink(path);
        free(path);
        return;
    }
    r->path = path;
}

void wd__reserve_release(wd_reserve *r)
{
    if (!r->path)
        return;
    unlink(r->path);
    free(r->path);
    r->path = NULL;
}

void wd__reserve_remove_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, WD_RESERVE_PREFIX, sizeof WD_RESERVE_PREFIX - 1) != 0)
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
            unlink(path);
    }
    closedir(d);
}
