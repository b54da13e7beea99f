/*
 * outdir.c - building output folders beside their target and renaming them
 * into place, never over what the command must keep (see outdir.h).
 */
#include "outdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fault.h"

/* The folder out_dir stands for (pathguard.h: wd__path_real), which must be
 * a folder if it exists. */
static int resolve(const char *out_dir, char target[PATH_MAX])
{
    int rc = wd__path_real(out_dir, target);
    struct stat sb;
    if (!rc && stat(target, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return wd__error(WD_EEXISTS, "'%s' exists and is not a folder", out_dir);
    return rc;
}

static int dir_state(const char *path, const char *shown, int *exists, int *empty)
{
    struct stat sb;
    *exists = *empty = 0;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            return 0;
        return wd__error_errno(WD_EIO, "cannot stat '%s'", shown);
    }
    if (!S_ISDIR(sb.st_mode))
        return wd__error(WD_EEXISTS, "'%s' exists and is not a folder", shown);
    *exists = 1;
    DIR *d = opendir(path);
    if (!d)
        return wd__error_errno(WD_EIO, "cannot open '%s'", shown);
    struct dirent *e;
    *empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            *empty = 0;
    closedir(d);
    return 0;
}

int wd__outdir_begin(wd__outdir *od, const char *out_dir, unsigned flags, const wd__keep *keep,
                     size_t n_keep)
{
    od->shown = out_dir;
    od->flags = flags;
    od->keep = keep;
    od->n_keep = n_keep;
    od->tmp.fd = od->tmp.slot = -1;
    od->tmp.path[0] = '\0';
    int exists, empty;
    int rc = resolve(out_dir, od->target);
    if (!rc)
        rc = wd__guard_folder(od->target, out_dir, keep, n_keep);
    if (rc)
        return rc;
    /* Swept first: a folder a killed replacement had moved aside goes back
     * to its place before the target is looked at. */
    wd__temp_sweep(od->target);
    if ((rc = dir_state(od->target, out_dir, &exists, &empty)))
        return rc;
    if (exists && !empty && !(flags & WD_CHECKOUT_FORCE))
        return wd__error(WD_EEXISTS, "'%s' is not empty; use --force to replace it", out_dir);
    return wd__temp_create(&od->tmp, od->target, 1);
}

int wd__outdir_commit(wd__outdir *od)
{
    int exists, empty;
    /* Checked again: the target may have changed while the folder was built. */
    int rc = wd__guard_folder(od->target, od->shown, od->keep, od->n_keep);
    if (!rc)
        rc = dir_state(od->target, od->shown, &exists, &empty);
    if (rc)
        return rc;
    if (exists && !empty) {
        if (!(od->flags & WD_CHECKOUT_FORCE))
            return wd__error(WD_EEXISTS, "'%s' is not empty; use --force to replace it", od->shown);
        if ((rc = wd__temp_swap(&od->tmp, od->target)))
            return rc;
        wd__temp_discard(&od->tmp); /* now the old folder */
    } else if ((rc = wd__temp_rename(&od->tmp, od->target))) {
        return rc;
    }
    wd__sync_parent(od->target);
    return 0;
}

void wd__outdir_abort(wd__outdir *od)
{
    wd__temp_discard(&od->tmp);
}

int wd__file_create(const char *path, int *fd)
{
    *fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    return *fd < 0 ? wd__error_errno(WD_EIO, "cannot create '%s'", path) : 0;
}

int wd__file_pwrite(int fd, const void *data, size_t len, uint64_t off, const char *path)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t k = pwrite(fd, p, len, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return wd__error_errno(WD_EIO, "cannot write '%s'", path);
        wd__fault_point(WD_FAULT_WRITE);
        p += k;
        off += (uint64_t)k;
        len -= (size_t)k;
    }
    return 0;
}

int wd__file_write(int fd, const void *data, size_t len, const char *path)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return wd__error_errno(WD_EIO, "cannot write '%s'", path);
        wd__fault_point(WD_FAULT_WRITE);
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

int wd__file_close(int fd, const char *path, int rc)
{
    if (!rc && fsync(fd) != 0)
        rc = wd__error_errno(WD_EIO, "cannot write '%s'", path);
    if (close(fd) != 0 && !rc)
        rc = wd__error_errno(WD_EIO, "cannot write '%s'", path);
    return rc;
}

int wd__file_copy(const char *src, const char *dst)
{
    enum { COPY_BUF = 1 << 20 };
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1;
    if (in < 0)
        return wd__error_errno(WD_EIO, "cannot open '%s'", src);
    uint8_t *buf = malloc(COPY_BUF);
    int rc = buf ? wd__file_create(dst, &out) : WD_NOMEM();
    while (!rc) {
        ssize_t k = read(in, buf, COPY_BUF);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            rc = wd__error_errno(WD_EIO, "cannot read '%s'", src);
        if (k <= 0)
            break;
        rc = wd__file_write(out, buf, (size_t)k, dst);
    }
    struct stat sb;
    if (!rc && fstat(in, &sb) == 0) {
        struct timespec ts[2] = {sb.st_atim, sb.st_mtim};
        fchmod(out, sb.st_mode & 07777);
        futimens(out, ts);
    }
    if (out >= 0)
        rc = wd__file_close(out, dst, rc);
    close(in);
    free(buf);
    return rc;
}
