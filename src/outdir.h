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

#include "pathguard.h"
#include "temporary.h"

/* A folder output in progress. */
typedef struct {
    char target[PATH_MAX]; /* the folder to fill: out_dir, resolved when it exists */
    const char *shown;     /* out_dir as the caller gave it, for messages */
    unsigned flags;        /* WD_CHECKOUT_FORCE */
    const wd__keep *keep;  /* the caller's, checked again at commit */
    size_t n_keep;
    wd__temp tmp;          /* the folder being built: write into tmp.path */
} wd__outdir;

/* Checks out_dir and creates the temporary folder beside it. out_dir must
 * not be, contain or lie inside a keep entry (the repository, an input of
 * the command), nor be or contain the current directory (pathguard.h),
 * even with WD_CHECKOUT_FORCE in flags; it must be absent or an empty
 * folder unless WD_CHECKOUT_FORCE. A symbolic link out_dir is followed:
 * the folder it points to is the one replaced. Temporaries of out_dir that
 * a killed process left are removed (temporary.h). keep must outlive od. */
int wd__outdir_begin(wd__outdir *od, const char *out_dir, unsigned flags, const wd__keep *keep,
                     size_t n_keep);

/* Puts the finished folder in place (replacing a non-empty target when
 * flags allow; the old folder is deleted once the new one is in place) and
 * syncs the parent folder so the rename survives a crash. On failure the
 * temporary stays for wd__outdir_abort. */
int wd__outdir_commit(wd__outdir *od);

/* Removes the temporary folder unless it was committed. */
void wd__outdir_abort(wd__outdir *od);

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
