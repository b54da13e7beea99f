/*
 * outdir.c - building output folders beside their target and renaming them
 * into place (see outdir.h).
 */
#include "outdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fault.h"

/* dir and name of path, refusing paths that name no folder of their own. */
static int split_path(const char *path, char dir[PATH_MAX], char name[PATH_MAX])
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p || !p[0])
        return wd__error(WD_EUSAGE, "bad output path '%s'", path);
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/')
        p[--len] = '\0';
    char *slash = strrchr(p, '/');
    snprintf(name, PATH_MAX, "%s", slash ? slash + 1 : p);
    if (slash == p)
        snprintf(dir, PATH_MAX, "/");
    else if (slash)
        snprintf(dir, PATH_MAX, "%.*s", (int)(slash - p), p);
    else
        snprintf(dir, PATH_MAX, ".");
    if (!name[0] || !strcmp(name, ".") || !strcmp(name, ".."))
        return wd__error(WD_EUSAGE, "bad output path '%s'", path);
    return 0;
}

static int dir_state(const char *path, int *exists, int *empty)
{
    struct stat sb;
    *exists = *empty = 0;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            return 0;
        return wd__error_errno(WD_EIO, "cannot stat '%s'", path);
    }
    if (!S_ISDIR(sb.st_mode))
        return wd__error(WD_EEXISTS, "'%s' exists and is not a folder", path);
    *exists = 1;
    DIR *d = opendir(path);
    if (!d)
        return wd__error_errno(WD_EIO, "cannot open '%s'", path);
    struct dirent *e;
    *empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            *empty = 0;
    closedir(d);
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void wd__remove_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int wd__outdir_begin(const char *out_dir, unsigned flags, char tmp[PATH_MAX])
{
    char parent[PATH_MAX], name[PATH_MAX];
    int exists, empty;
    int rc = split_path(out_dir, parent, name);
    if (!rc)
        rc = dir_state(out_dir, &exists, &empty);
    if (rc)
        return rc;
    if (exists && !empty && !(flags & WD_CHECKOUT_FORCE))
        return wd__error(WD_EEXISTS, "'%s' is not empty; use --force to replace it", out_dir);
    /* Beside the target, so the final rename stays on one file system;
     * ".old" must still fit after it. */
    if (snprintf(tmp, PATH_MAX, "%s/.%s.wdrepo-tmp-XXXXXX", parent, name) >= PATH_MAX - 8)
        return wd__error(WD_EUSAGE, "output path too long: '%s'", out_dir);
    if (!mkdtemp(tmp))
        return wd__error_errno(WD_EIO, "cannot create a folder beside '%s'", out_dir);
    chmod(tmp, 0755);
    return 0;
}

int wd__outdir_commit(const char *tmp, const char *out_dir, unsigned flags)
{
    char parent[PATH_MAX], name[PATH_MAX];
    int exists, empty;
    int rc = split_path(out_dir, parent, name);
    if (!rc)
        rc = dir_state(out_dir, &exists, &empty);
    if (rc)
        return rc;
    if (exists && !empty) {
        if (!(flags & WD_CHECKOUT_FORCE))
            return wd__error(WD_EEXISTS, "'%s' is not empty; use --force to replace it", out_dir);
        char trash[PATH_MAX + 8];
        snprintf(trash, sizeof trash, "%s.old", tmp);
        if (rename(out_dir, trash) != 0)
            return wd__error_errno(WD_EIO, "cannot move '%s' aside", out_dir);
        if (rename(tmp, out_dir) != 0) {
            rc = wd__error_errno(WD_EIO, "cannot rename into '%s'", out_dir);
            rename(trash, out_dir);
            return rc;
        }
        wd__remove_tree(trash);
    } else if (rename(tmp, out_dir) != 0) {
        return wd__error_errno(WD_EIO, "cannot rename into '%s'", out_dir);
    }
    int dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* make the rename durable; a failure here loses nothing written */
        fsync(dfd);
        close(dfd);
    }
    return 0;
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
