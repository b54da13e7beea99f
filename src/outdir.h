/*
 * outdir.h - writing a whole folder so that it appears complete or not at
 * all: it is built in a temporary folder beside the target and renamed into
 * place (checkout, load-delta).
 */
#ifndef WD_OUTDIR_H
#define WD_OUTDIR_H

#include <limits.h>

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

#endif
