/*
 * temporary.h - the temporary files and folders outputs are built in, beside
 * their target so that the final rename stays on one file system.
 *
 * A temporary of target DIR/NAME is named DIR/.NAME.wdrepo-tmp-XXXXXX (six
 * letters or digits); a folder that --force moves aside while it is replaced
 * is the same name plus ".old". The process writing a temporary holds an
 * flock(2) on it for as long as it exists, and lists it in a process-wide
 * registry:
 *  - wd_remove_temporaries() (wdrepo.h) removes every listed temporary, for
 *    a program that is ending on a signal;
 *  - a temporary left by a process killed outright (SIGKILL, power loss) is
 *    no longer locked, which proves that no one is writing it: the next
 *    output to the same target removes it (wd__temp_sweep).
 * Where the file system does not support flock (some network file systems
 * for folders), a temporary cannot be proven stale and is left alone.
 */
#ifndef WD_TEMPORARY_H
#define WD_TEMPORARY_H

#include <limits.h>

/* ".NAME" + tag + six characters + ".old" must fit in a file name. */
#define WD__TEMP_TAG ".wdrepo-tmp-"
#define WD__TEMP_EXTRA (1 + 12 + 6 + 4)

typedef struct {
    char path[PATH_MAX];
    int fd;   /* a file: open read-write; a folder: open for the lock only; -1 when none */
    int slot; /* registry slot; -1 when not registered */
} wd__temp;

/* Creates, locks and registers an empty temporary beside target (a file
 * with mode 0666 minus the umask, or a folder with 0777 minus the umask).
 * Fails once wd_remove_temporaries has run. */
int wd__temp_create(wd__temp *t, const char *target, int is_dir);

/* Renames the finished temporary onto target (a file, or an absent or
 * empty folder) and forgets it: a signal arriving meanwhile finds either
 * the temporary or the result, never half of each. Closes t->fd. On error
 * the temporary is still there and registered (wd__temp_discard it). */
int wd__temp_rename(wd__temp *t, const char *target);

/* Syncs the folder holding path, so that a rename into it survives a
 * crash. Best effort: a failure loses nothing already written. */
void wd__sync_parent(const char *path);

/* Puts the finished temporary folder in the place of the existing folder
 * target; afterwards t names the previous folder, still registered, for
 * wd__temp_discard to delete. Atomic where the file system can exchange two
 * names; elsewhere the old folder is first renamed to t->path + ".old",
 * and renamed back if the second rename fails. */
int wd__temp_swap(wd__temp *t, const char *target);

/* Removes the temporary (a whole folder tree) if it is still there, closes
 * its descriptor and forgets it. Accepts a temporary never created (fd and
 * slot -1, as wd__temp_create leaves them on failure). */
void wd__temp_discard(wd__temp *t);

/* Removes the temporaries of target that a killed process left: those that
 * match the naming pattern exactly, belong to this user, and are not
 * locked. A left ".old" folder goes back to target's place when target is
 * missing (the process died between the two renames of a replacement).
 * Best effort: nothing is reported. */
void wd__temp_sweep(const char *target);

/* Removes a folder and everything in it, or a file (best effort). */
void wd__remove_tree(const char *path);

#endif
