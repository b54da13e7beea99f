/*
 * pathguard.c - refusing outputs that would destroy the repository, an input
 * or the current directory, by comparing device and inode numbers (see
 * pathguard.h). Strings are never compared: "base", "./base/",
 * "$PWD/../x/base" and a link to it all name one inode.
 */
#include "pathguard.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

#ifndef O_PATH
#define O_PATH O_RDONLY
#endif

/* Deeper than any real tree; stops a walk on a broken file system. */
#define MAX_DEPTH 4096

typedef struct {
    dev_t dev;
    ino_t ino;
} file_id;

static int same(file_id a, const struct stat *sb)
{
    return a.dev == sb->st_dev && a.ino == sb->st_ino;
}

/* The folder holding path ("." when it has no '/'), in out. */
static void parent_of(const char *path, char out[PATH_MAX])
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    while (len > 0 && path[len - 1] != '/')
        len--;
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len == 0)
        snprintf(out, PATH_MAX, ".");
    else
        snprintf(out, PATH_MAX, "%.*s", (int)len, path);
}

/* 1 if folder dir, or a folder above it, is id. ".." is taken as the file
 * system has it (the physical parent, across mount points), up to the root
 * (its own parent). A folder whose parent cannot be opened ends the walk. */
static int within(const char *dir, file_id id)
{
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC), found = 0;
    struct stat sb;
    for (int depth = 0; fd >= 0 && depth < MAX_DEPTH && fstat(fd, &sb) == 0; depth++) {
        if (same(id, &sb)) {
            found = 1;
            break;
        }
        int up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct stat ub;
        close(fd);
        fd = up;
        if (up >= 0 && fstat(up, &ub) == 0 && ub.st_dev == sb.st_dev && ub.st_ino == sb.st_ino)
            break; /* the root */
    }
    if (fd >= 0)
        close(fd);
    return found;
}

int wd__path_real(const char *path, char out[PATH_MAX])
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p || !p[0])
        return wd__error(WD_EUSAGE, "bad output path '%s'", path);
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/')
        p[--len] = '\0';
    if (realpath(p, out))
        return 0;
    if (errno != ENOENT)
        return wd__error_errno(WD_EIO, "cannot resolve '%s'", path);
    struct stat lb;
    if (lstat(p, &lb) == 0) /* a symbolic link to nothing */
        return wd__error(WD_EUSAGE, "'%s' is a symbolic link to nothing; remove it or choose another "
                         "name", path);
    char dir[PATH_MAX], rdir[PATH_MAX];
    const char *slash = strrchr(p, '/'), *name = slash ? slash + 1 : p;
    parent_of(p, dir);
    if (!realpath(dir, rdir))
        return wd__error_errno(WD_EIO, "cannot create '%s'", path);
    if (snprintf(out, PATH_MAX, "%s/%s", strcmp(rdir, "/") ? rdir : "", name) >= PATH_MAX)
        return wd__error(WD_EUSAGE, "output path too long: '%s'", path);
    return 0;
}

static int refuse(const char *what, const char *relation, const wd__keep *k, int show_path,
                  const char *instead)
{
    if (show_path)
        return wd__error(WD_EUSAGE, "%s %s %s '%s'; choose another %s", what, relation, k->role,
                         k->path, instead);
    return wd__error(WD_EUSAGE, "%s %s %s; choose another %s", what, relation, k->role, instead);
}

int wd__guard_folder(const char *target, const char *shown, const wd__keep *keep, size_t n_keep)
{
    char what[PATH_MAX + 32], up[PATH_MAX];
    snprintf(what, sizeof what, "output folder '%s'", shown);
    struct stat tb;
    int exists = stat(target, &tb) == 0;
    file_id t = {tb.st_dev, tb.st_ino};
    parent_of(target, up);
    const wd__keep cwd = {".", "the current directory"};
    for (size_t i = 0; i <= n_keep; i++) {
        const wd__keep *k = i < n_keep ? &keep[i] : &cwd;
        struct stat kb;
        if (!k->path || stat(k->path, &kb) != 0)
            continue;
        int is_dir = S_ISDIR(kb.st_mode), show = k != &cwd;
        char kdir[PATH_MAX];
        if (is_dir)
            snprintf(kdir, sizeof kdir, "%s", k->path);
        else
            parent_of(k->path, kdir);
        if (exists && same(t, &kb))
            return refuse(what, "is", k, 0, "folder");
        if (exists && within(kdir, t))
            return refuse(what, "contains", k, show, "folder");
        /* Inside the current directory is where outputs usually go. */
        if (k != &cwd && is_dir && within(up, (file_id){kb.st_dev, kb.st_ino}))
            return refuse(what, "lies inside", k, 1, "folder");
    }
    return 0;
}

/* 1 if a top-level entry of folder dir (followed if a link) is id. Input
 * folders are flat and hold a few files, so listing one costs little. */
static int holds(const char *dir, file_id id)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        struct stat sb;
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            fstatat(dirfd(d), e->d_name, &sb, 0) == 0 && same(id, &sb))
            found = 1;
    }
    closedir(d);
    return found;
}

int wd__guard_file(const char *target, int fd, const char *what, const wd__keep *keep,
                   size_t n_keep)
{
    struct stat tb;
    int exists = fd >= 0 ? fstat(fd, &tb) == 0 : stat(target, &tb) == 0;
    file_id t = {tb.st_dev, tb.st_ino};
    char up[PATH_MAX];
    if (target)
        parent_of(target, up);
    for (size_t i = 0; i < n_keep; i++) {
        const wd__keep *k = &keep[i];
        struct stat kb;
        if (!k->path || stat(k->path, &kb) != 0)
            continue;
        if (exists && same(t, &kb))
            return refuse(what, "is", k, 0, "file");
        if (!S_ISDIR(kb.st_mode))
            continue;
        if (target && within(up, (file_id){kb.st_dev, kb.st_ino}))
            return refuse(what, "lies inside", k, 1, "file");
        if (exists && holds(k->path, t))
            return refuse(what, "is a file of", k, 1, "file");
    }
    return 0;
}
