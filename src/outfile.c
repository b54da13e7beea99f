/*
 * outfile.c - file outputs opened safely: streamed into what is not a
 * regular file, else built in a temporary file and renamed into place (see
 * outfile.h).
 */
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "flusher.h"
#include "temporary.h"

struct wd__outfile {
    int fd;
    int own_fd;            /* a stream opened here (not standard output): closed at the end */
    int stream;            /* written in place, no temporary */
    char *name;            /* for messages */
    char target[PATH_MAX]; /* what the temporary is renamed onto */
    wd__temp tmp;
    wd__flusher *flusher;  /* a temporary only: synced as it is written */
};

static void outfile_free(wd__outfile *f)
{
    if (f->own_fd && f->fd >= 0)
        close(f->fd);
    wd__flusher_free(f->flusher);
    free(f->name);
    free(f);
}

/* The stream cases: standard output, or an existing file that is not a
 * regular one (opened for writing, never truncated or replaced). */
static int open_stream(wd__outfile *f, const char *path, const wd__keep *keep, size_t n_keep)
{
    f->stream = 1;
    if (!path) {
        f->fd = STDOUT_FILENO;
        struct stat sb;
        if (fstat(f->fd, &sb) != 0)
            return wd__error_errno(WD_EIO, "cannot write to standard output");
        return wd__guard_file(NULL, f->fd, "standard output", keep, n_keep);
    }
    char what[PATH_MAX + 32];
    snprintf(what, sizeof what, "output file '%s'", path);
    int rc = wd__guard_file(path, -1, what, keep, n_keep);
    if (rc)
        return rc;
    /* A fifo blocks here until a reader opens it, as with any writer. */
    f->fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (f->fd < 0)
        return wd__error_errno(WD_EIO, "cannot open '%s'", path);
    f->own_fd = 1;
    return 0;
}

int wd__outfile_open(wd__outfile **out, const char *path, unsigned flags, const wd__keep *keep,
                     size_t n_keep)
{
    *out = NULL;
    wd__outfile *f = calloc(1, sizeof *f);
    if (!f)
        return WD_NOMEM();
    f->fd = f->tmp.fd = f->tmp.slot = -1;
    int is_stdout = !strcmp(path, "-");
    if (!(f->name = strdup(is_stdout ? "standard output" : path))) {
        free(f);
        return WD_NOMEM();
    }
    int rc;
    struct stat sb;
    size_t len = strlen(path);
    char what[PATH_MAX + 32];
    snprintf(what, sizeof what, "output file '%s'", path);
    /* Looked at through the name given first: /dev/stdout on a pipe
     * resolves to no path of its own. */
    int exists = 0;
    if (is_stdout) {
        rc = open_stream(f, NULL, keep, n_keep);
    } else if (!len || path[len - 1] == '/') {
        rc = wd__error(WD_EUSAGE, "'%s' names a folder; give the output a file name", path);
    } else if (!(exists = stat(path, &sb) == 0) && errno != ENOENT) {
        rc = wd__error_errno(WD_EIO, "cannot stat '%s'", path);
    } else if (exists && S_ISDIR(sb.st_mode)) {
        rc = wd__error(WD_EUSAGE, "'%s' is a folder; give the output a file name", path);
    } else if (exists && !S_ISREG(sb.st_mode)) {
        rc = open_stream(f, path, keep, n_keep);
    } else if (!(rc = wd__path_real(path, f->target)) &&
               !(rc = wd__guard_file(f->target, -1, what, keep, n_keep))) {
        if (exists && !(flags & WD_OUTPUT_FORCE)) {
            rc = wd__error(WD_EEXISTS, "'%s' already exists; use --force to overwrite it", path);
        } else {
            wd__temp_sweep(f->target);
            if (!(rc = wd__temp_create(&f->tmp, f->target, 0)))
                f->fd = f->tmp.fd;
        }
    }
    if (!rc && !f->stream)
        rc = wd__flusher_new(&f->flusher);
    if (rc) {
        wd__outfile_abort(f);
        return rc;
    }
    *out = f;
    return 0;
}

int wd__outfile_fd(const wd__outfile *f)
{
    return f->fd;
}

int wd__outfile_seekable(const wd__outfile *f)
{
    return !f->stream;
}

void wd__outfile_wrote(wd__outfile *f, size_t len)
{
    if (f->flusher)
        wd__flusher_wrote(f->flusher, f->fd, len);
}

const char *wd__outfile_name(const wd__outfile *f)
{
    return f->name;
}

int wd__outfile_commit(wd__outfile *f)
{
    int rc = 0;
    if (f->stream) {
        /* No fsync: pipes, terminals and devices refuse it, and what they
         * received is out of our hands anyway. */
        if (f->own_fd && close(f->fd) != 0)
            rc = wd__error_errno(WD_EIO, "cannot write '%s'", f->name);
        f->own_fd = 0;
        outfile_free(f);
        return rc;
    }
    rc = f->flusher ? wd__flusher_forget(f->flusher, f->fd, f->name) : 0;
    if (!rc && fsync(f->fd) != 0)
        rc = wd__error_errno(WD_EIO, "cannot write '%s'", f->name);
    if (!rc && (rc = wd__temp_rename(&f->tmp, f->target)) == 0) {
        f->fd = -1; /* closed by the rename */
        wd__sync_parent(f->target);
    }
    wd__outfile_abort(f);
    return rc;
}

void wd__outfile_abort(wd__outfile *f)
{
    if (!f)
        return;
    if (f->flusher) /* no flush may run on a descriptor closed below */
        wd__flusher_forget(f->flusher, f->fd, NULL);
    wd__temp_discard(&f->tmp); /* closes tmp.fd, which f->fd may be */
    if (!f->stream)
        f->fd = -1;
    outfile_free(f);
}
