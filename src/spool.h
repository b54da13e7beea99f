/*
 * spool.h - standard input copied into a temporary file, for the readers
 * (.wdelta, safetensors) that seek with pread and so cannot read a pipe.
 */
#ifndef WD_SPOOL_H
#define WD_SPOOL_H

#include "temporary.h"

/* 1 if path is "-", the name of standard input. */
int wd__is_stdin(const char *path);

/* Copies standard input to its end into a temporary in dir (a repository
 * folder, or NULL for $TMPDIR, else /tmp); t->path then names the copy.
 * The temporary is registered like an output's, so a signal removes it
 * too; the caller removes it with wd__temp_discard (also after an error).
 * Memory: one 1 MiB buffer; disk: the size of the input. */
int wd__spool_stdin(wd__temp *t, const char *dir);
/* rc, with the copy's path in the current message (a reader's "'<path>':
 * not a .wdelta file") replaced by "standard input": call it before
 * wd__temp_discard, which forgets the path. */
int wd__spool_error(const wd__temp *t, int rc);

#endif
