/*
 * outdir.h - writing a whole folder so that it appears complete or not at
 * all: it is built in a temporary folder beside the target and renamed into
 * place (checkout, load-delta); and the plain file writes that fill it.
 */
#ifndef WD_OUTDIR_H
#define WD_OUTDIR_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

/* Checks out_dir (absent, or an empty folder, or anything with
 * WD_CHECKOUT_FORCE in flags) and creates the temporary folder
 * ".NAME.wdrepo-tmp-XXXXXX" beside it, path in tmp. */
int wd__outdir_begin(const char *out_dir, unsigned flags, char tmp[PATH_MAX]);

/* Renames the finished tmp onto out_dir (moving a non-empty out_dir aside
 * first and deleting it once the new one is in place, when flags allow),
 * and syncs the parent folder so the rename survives a crash. */
int wd__outdir_commit(const char *tmp, const char *out_dir, unsigned flags);

/* Removes a folder and everything in it (best effort, for failure paths). */
void wd__remove_tree(const char *path);

/* Files inside the temporary folder. path only names the file in messages.
 * wd__file_create refuses an existing path (O_EXCL); wd__file_close syncs
 * and closes fd whatever rc is and returns rc, or the sync's error when rc
 * is 0, so a write error is never lost to a later success. */
int wd__file_create(const char *path, int *fd);
int wd__file_write(int fd, const void *data, size_t len, const char *path);
/* len bytes at offset off (thread-safe: several writers may fill disjoint
 * ranges of one file at once). */
int wd__file_pwrite(int fd, const void *data, size_t len, uint64_t off, const char *path);
int wd__file_close(int fd, const char *path, int rc);
/* Copies src to a new file dst byte for byte, with src's mode and times
 * (Python's shutil.copy2). */
int wd__file_copy(const char *src, const char *dst);

#endif
