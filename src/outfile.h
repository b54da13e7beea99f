/*
 * outfile.h - opening a file output (export, save-delta) the way zstd does:
 * never over an existing file unless forced, never over an input, never
 * replacing what is not a regular file, "-" for standard output.
 */
#ifndef WD_OUTFILE_H
#define WD_OUTFILE_H

#include <stddef.h>

#include "pathguard.h"

typedef struct wd__outfile wd__outfile;

/* Opens path for writing. What happens depends on what path is:
 *  - "-": standard output, written in place (streamed);
 *  - an existing file that is not a regular file (a character device such
 *    as /dev/null or /dev/stdout, a fifo): written in place, never
 *    replaced;
 *  - absent, or an existing regular file (only with WD_OUTPUT_FORCE in
 *    flags, else WD_EEXISTS): written to a temporary file beside it and
 *    renamed onto it at commit, so a failed run leaves it as it was;
 *  - a folder: refused (WD_EUSAGE);
 *  - a symbolic link: followed (the link stays; what it points to is
 *    written, a regular file through a temporary beside that file); a link
 *    to nothing is refused.
 * Whatever the flags, an output that is a keep file, lies inside a keep
 * folder or is one of its files is refused (pathguard.h). Temporaries of
 * the same target that a killed process left are removed (temporary.h).
 * On success *out is the caller's, ended by wd__outfile_commit or
 * wd__outfile_abort. */
int wd__outfile_open(wd__outfile **out, const char *path, unsigned flags, const wd__keep *keep,
                     size_t n_keep);

/* The descriptor to write to (wd__file_write, outdir.h). */
int wd__outfile_fd(const wd__outfile *f);

/* 1 when the output is a temporary file of ours, which may be read back and
 * written at any offset; 0 for a stream, written once from start to end. */
int wd__outfile_seekable(const wd__outfile *f);

/* Reports len more bytes written to the descriptor: a temporary file is
 * synced in steps as it grows (flusher.h), so the sync at commit has only
 * the last step left. Any thread may call it. */
void wd__outfile_wrote(wd__outfile *f, size_t len);

/* The output as the caller named it, for messages ("standard output" for
 * "-"). */
const char *wd__outfile_name(const wd__outfile *f);

/* Finishes the output: a temporary file is synced and renamed onto its
 * target (and the folder synced); a stream is closed if it was opened
 * here. Always frees f; on error the temporary is removed and the target
 * left as it was. */
int wd__outfile_commit(wd__outfile *f);

/* Abandons the output: removes the temporary, frees f. Accepts NULL. */
void wd__outfile_abort(wd__outfile *f);

#endif
