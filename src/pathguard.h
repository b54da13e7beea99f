/*
 * pathguard.h - what an output must never destroy: the repository, the
 * command's inputs, the current directory. Paths are compared as the file
 * system sees them (device and inode, walking up through ".."), so every
 * spelling of a folder is recognised: relative or absolute, "x/../y",
 * symbolic links, a trailing "/".
 */
#ifndef WD_PATHGUARD_H
#define WD_PATHGUARD_H

#include <limits.h>
#include <stddef.h>

/* The real path of path, in out: resolved whole when it exists (symbolic
 * links followed, "." and ".." gone), else its resolved parent folder plus
 * its last name. Trailing '/' are ignored. Errors: WD_EUSAGE (empty or
 * too long), WD_EIO (the parent folder cannot be resolved). */
int wd__path_real(const char *path, char out[PATH_MAX]);

/* Something an output must leave alone: path as the caller gave it, and
 * what it is called in messages ("the repository", "the base folder"). A
 * path that does not exist protects nothing. */
typedef struct {
    const char *path;
    const char *role;
} wd__keep;

/* For a folder output. target is the folder to be replaced or created
 * (need not exist; its parent folder must); shown names it in messages.
 * Refuses (WD_EUSAGE) a target that is, contains or lies inside a keep
 * entry, or that is or contains the current directory. */
int wd__guard_folder(const char *target, const char *shown, const wd__keep *keep, size_t n_keep);

/* For a file output: target (need not exist) is refused (WD_EUSAGE) when
 * it is a keep file, lies inside a keep folder, or is one of a keep
 * folder's files under another name (hard link; symbolic links in the
 * folder are followed). With fd >= 0 the output is that open file
 * (standard output) and target is NULL: only its identity is compared.
 * what names the output in messages ("output file 'x.wdelta'"). */
int wd__guard_file(const char *target, int fd, const char *what, const wd__keep *keep,
                   size_t n_keep);

#endif
