/*
 * spool.c - standard input copied to a temporary file (see spool.h).
 */
#include "spool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "outdir.h"

int wd__is_stdin(const char *path)
{
    return path && !strcmp(path, "-");
}

int wd__spool_stdin(wd__temp *t, const char *dir)
{
    enum { PIECE = 1 << 20 };
    t->fd = t->slot = -1;
    if (!dir || !*dir)
        dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    char target[PATH_MAX];
    if (snprintf(target, sizeof target, "%s/stdin", dir) >= (int)sizeof target)
        return wd__error(WD_EUSAGE, "folder name '%s' is too long", dir);
    wd__temp_sweep(target);
    int rc = wd__temp_create(t, target, 0);
    if (rc)
        return wd__error_context(rc, "copying standard input");
    uint8_t *buf = malloc(PIECE);
    if (!buf)
        return WD_NOMEM();
    for (;;) {
        ssize_t got = read(STDIN_FILENO, buf, PIECE);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = wd__error_errno(WD_EIO, "cannot read standard input");
            break;
        }
        if (got == 0)
            break;
        if ((rc = wd__file_write(t->fd, buf, (size_t)got, t->path)))
            break;
    }
    free(buf);
    return rc;
}

int wd__spool_error(const wd__temp *t, int rc)
{
    if (!rc || !t->path[0])
        return rc;
    /* Messages quote the file they are about: say what the user gave. */
    const char *msg = wd_errmsg();
    char quoted[PATH_MAX + 3];
    snprintf(quoted, sizeof quoted, "'%s'", t->path);
    const char *at = strstr(msg, quoted);
    size_t skip = strlen(quoted);
    if (!at) {
        at = strstr(msg, t->path);
        skip = strlen(t->path);
    }
    if (!at)
        return rc;
    return wd__error(rc, "%.*sstandard input%s", (int)(at - msg), msg, at + skip);
}
