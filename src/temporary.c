/*
 * temporary.c - temporaries beside an output: named, locked, registered for
 * removal on a signal, and swept when a killed process left them (see
 * temporary.h).
 */
#include "temporary.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

/* The registry: paths of the temporaries this process is writing. Every
 * change of a temporary's name happens under reg_mu, so that
 * wd_remove_temporaries sees each one either before or after the change.
 * One slot per output being written at once (a handful), so a linear
 * array is enough. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static char **reg_paths; /* NULL for a free slot */
static size_t reg_cap;
static int dying; /* wd_remove_temporaries ran: no temporary may be made or renamed */

/* Adds path under reg_mu; the slot, or -1 without memory. */
static int reg_add(const char *path)
{
    size_t i = 0;
    while (i < reg_cap && reg_paths[i])
        i++;
    if (i == reg_cap) {
        size_t cap = reg_cap ? 2 * reg_cap : 8;
        char **p = realloc(reg_paths, cap * sizeof *p);
        if (!p)
            return -1;
        memset(p + reg_cap, 0, (cap - reg_cap) * sizeof *p);
        reg_paths = p;
        reg_cap = cap;
    }
    if (!(reg_paths[i] = strdup(path)))
        return -1;
    return (int)i;
}

static void reg_drop(int slot)
{
    pthread_mutex_lock(&reg_mu);
    free(reg_paths[slot]);
    reg_paths[slot] = NULL;
    pthread_mutex_unlock(&reg_mu);
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

void wd_remove_temporaries(void)
{
    pthread_mutex_lock(&reg_mu);
    dying = 1;
    for (size_t i = 0; i < reg_cap; i++) {
        if (!reg_paths[i])
            continue;
        /* A worker may still create a file in a folder being removed; the
         * next pass takes it, and once the folder is gone none can be. */
        struct stat sb;
        for (int pass = 0; pass < 100 && lstat(reg_paths[i], &sb) == 0; pass++)
            wd__remove_tree(reg_paths[i]);
    }
    pthread_mutex_unlock(&reg_mu);
}

/* dir and name of a path (the name is what follows the last '/'). */
static int split(const char *path, char dir[PATH_MAX], const char **name)
{
    const char *slash = strrchr(path, '/');
    *name = slash ? slash + 1 : path;
    if (!slash)
        snprintf(dir, PATH_MAX, ".");
    else if (slash == path)
        snprintf(dir, PATH_MAX, "/");
    else if (snprintf(dir, PATH_MAX, "%.*s", (int)(slash - path), path) >= PATH_MAX)
        return wd__error(WD_EUSAGE, "path too long: '%s'", path);
    return 0;
}

/* Six letters or digits, different in every call and process. */
static void random_suffix(char out[7])
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static atomic_uint_fast64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 40) ^
                 (atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull);
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ull, x ^= x >> 27, x *= 0x94d049bb133111ebull, x ^= x >> 31;
    for (int i = 0; i < 6; i++, x /= 62)
        out[i] = alnum[x % 62];
    out[6] = '\0';
}

int wd__temp_create(wd__temp *t, const char *target, int is_dir)
{
    t->fd = t->slot = -1;
    t->path[0] = '\0';
    char dir[PATH_MAX];
    const char *name;
    int rc = split(target, dir, &name);
    if (rc)
        return rc;
    if (strlen(name) + WD__TEMP_EXTRA > NAME_MAX)
        return wd__error(WD_EUSAGE, "output name too long: '%s'", name);
    if (strlen(dir) + strlen(name) + WD__TEMP_EXTRA + 2 >= PATH_MAX)
        return wd__error(WD_EUSAGE, "output path too long: '%s'", target);
    for (int attempt = 0; attempt < 100; attempt++) {
        char sfx[7];
        random_suffix(sfx);
        snprintf(t->path, sizeof t->path, "%s/.%s" WD__TEMP_TAG "%s", dir, name, sfx);
        /* Made and registered under the lock: a signal's cleanup either
         * comes first (and then nothing is made) or finds it. */
        pthread_mutex_lock(&reg_mu);
        if (dying) {
            pthread_mutex_unlock(&reg_mu);
            return wd__error(WD_EIO, "interrupted");
        }
        int fd = -1;
        int made = is_dir ? mkdir(t->path, 0777) == 0
                          : (fd = open(t->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666)) >= 0;
        if (!made) {
            int e = errno;
            pthread_mutex_unlock(&reg_mu);
            if (e == EEXIST)
                continue;
            errno = e;
            return wd__error_errno(WD_EIO, "cannot create a temporary %s beside '%s'",
                                   is_dir ? "folder" : "file", target);
        }
        t->slot = reg_add(t->path);
        if (t->slot < 0) {
            is_dir ? rmdir(t->path) : unlink(t->path);
            pthread_mutex_unlock(&reg_mu);
            if (fd >= 0)
                close(fd);
            return WD_NOMEM();
        }
        pthread_mutex_unlock(&reg_mu);
        if (is_dir)
            fd = open(t->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        t->fd = fd;
        /* Between the creation and the lock another process's sweep may
         * have taken it for stale (it is not locked yet): it then holds
         * the lock, or has removed it. Either way, try another name. */
        struct stat a, b;
        int locked = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0;
        if (fd >= 0 && !locked && errno != EWOULDBLOCK)
            return 0; /* no flock here: the temporary is never swept */
        if (locked && fstat(fd, &a) == 0 && stat(t->path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino)
            return 0;
        if (fd < 0) {
            rc = wd__error_errno(WD_EIO, "cannot open '%s'", t->path);
            wd__temp_discard(t);
            return rc;
        }
        /* the sweep that has it removes it */
        reg_drop(t->slot);
        close(fd);
        t->fd = t->slot = -1;
    }
    return wd__error(WD_EIO, "cannot create a temporary %s beside '%s'", is_dir ? "folder" : "file",
                     target);
}

int wd__temp_rename(wd__temp *t, const char *target)
{
    pthread_mutex_lock(&reg_mu);
    if (dying) {
        pthread_mutex_unlock(&reg_mu);
        return wd__error(WD_EIO, "interrupted");
    }
    if (rename(t->path, target) != 0) {
        int e = errno;
        pthread_mutex_unlock(&reg_mu);
        errno = e;
        return wd__error_errno(WD_EIO, "cannot rename '%s' onto '%s'", t->path, target);
    }
    free(reg_paths[t->slot]);
    reg_paths[t->slot] = NULL;
    pthread_mutex_unlock(&reg_mu);
    t->slot = -1;
    /* Closed only now: until renamed, the lock tells sweepers it is live. */
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    return 0;
}

int wd__temp_swap(wd__temp *t, const char *target)
{
    /* The old folder is locked before it moves, so that a sweep never takes
     * it for a stale one while it is under a temporary name. */
    int old = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (old < 0)
        return wd__error_errno(WD_EIO, "cannot open '%s'", target);
    if (flock(old, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        close(old);
        return wd__error(WD_EBUSY, "'%s' is being replaced by another process", target);
    }
    pthread_mutex_lock(&reg_mu);
    int rc = 0;
    if (dying) {
        rc = wd__error(WD_EIO, "interrupted");
    } else if (renameat2(AT_FDCWD, t->path, AT_FDCWD, target, RENAME_EXCHANGE) == 0) {
        /* t->path now holds the old folder */
    } else if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
        rc = wd__error_errno(WD_EIO, "cannot exchange '%s' with '%s'", t->path, target);
    } else { /* no exchange on this file system: two renames */
        char aside[PATH_MAX];
        strcpy(aside, t->path);
        strcat(aside, ".old"); /* room left for it: wd__temp_create */
        char *copy = strdup(aside);
        if (!copy) {
            rc = WD_NOMEM();
        } else if (rename(target, aside) != 0) {
            rc = wd__error_errno(WD_EIO, "cannot move '%s' aside", target);
        } else if (rename(t->path, target) != 0) {
            rc = wd__error_errno(WD_EIO, "cannot rename '%s' onto '%s'", t->path, target);
            rename(aside, target);
        } else {
            free(reg_paths[t->slot]);
            reg_paths[t->slot] = copy;
            copy = NULL;
            strcpy(t->path, aside);
        }
        free(copy);
    }
    pthread_mutex_unlock(&reg_mu);
    if (rc) {
        close(old);
        return rc;
    }
    close(t->fd); /* the new folder's lock: it is in place */
    t->fd = old;
    return 0;
}

void wd__temp_discard(wd__temp *t)
{
    if (t->slot >= 0) {
        wd__remove_tree(t->path);
        reg_drop(t->slot);
    }
    if (t->fd >= 0)
        close(t->fd);
    t->fd = t->slot = -1;
}

/* Whether name is prefix + six letters or digits [+ ".old"]; *old tells. */
static int temp_name(const char *name, const char *prefix, size_t plen, int *old)
{
    if (strncmp(name, prefix, plen))
        return 0;
    const char *p = name + plen;
    for (int i = 0; i < 6; i++)
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9')))
            return 0;
    *old = !strcmp(p + 6, ".old");
    return *old || p[6] == '\0';
}

void wd__temp_sweep(const char *target)
{
    char dir[PATH_MAX], prefix[NAME_MAX + 16];
    const char *name;
    if (split(target, dir, &name) || !name[0] ||
        snprintf(prefix, sizeof prefix, ".%s" WD__TEMP_TAG, name) >= (int)sizeof prefix)
        return;
    size_t plen = strlen(prefix);
    DIR *d = opendir(dir);
    if (!d)
        return;
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        int old;
        struct stat sb, fb;
        if (!temp_name(e->d_name, prefix, plen, &old) ||
            fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || sb.st_uid != geteuid() ||
            !(S_ISDIR(sb.st_mode) || S_ISREG(sb.st_mode)))
            continue;
        int fd = openat(dfd, e->d_name,
                        (S_ISDIR(sb.st_mode) ? O_DIRECTORY : 0) | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        /* Unlocked means its writer is gone; held locked while it goes, so
         * that a writer that just made it sees it was taken (create). */
        if (fstat(fd, &fb) == 0 && fb.st_dev == sb.st_dev && fb.st_ino == sb.st_ino &&
            flock(fd, LOCK_EX | LOCK_NB) == 0) {
            char path[PATH_MAX];
            if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path) {
                struct stat tb;
                if (old && lstat(target, &tb) != 0 && errno == ENOENT)
                    rename(path, target);
                else
                    wd__remove_tree(path);
            }
        }
        close(fd);
    }
    closedir(d);
}

void wd__sync_parent(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir] = '\0';
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}
