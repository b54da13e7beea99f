/*
 * repolock.c - the writer lock of a repository (repolock.h): two flock(2)ed
 * files, waited for by polling so every wait has a bound and ends in a
 * clear "busy" rather than a hang.
 *
 * flock turns a shared lock into an exclusive one by dropping it first, so
 * a failed attempt leaves nothing held. That is harmless here: whoever
 * converts holds gc.lock exclusive, which keeps every other process from
 * taking repo.lock in any mode, and the shared hold is taken back at once.
 */
#include "repolock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

/* Between two attempts: short enough that a writer finishing is noticed at
 * once, long enough that a wait of a minute costs nothing. */
#define POLL_MS 20

static int open_lock_file(const char *dir, const char *name, int *out)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return wd__error(WD_EUSAGE, "path too long: '%s'", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    /* Another user's lock file (a shared repository): flock works on a
     * descriptor open for reading too. */
    if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return wd__error_errno(WD_EIO, "cannot write to repository '%s': cannot open its lock file '%s'", dir, name);
    *out = fd;
    return 0;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* flock(fd, op) for up to wait_ms: 0 when held, 1 on timeout, else a
 * negative WD_* code. */
static int lock_wait(int fd, int op, int wait_ms)
{
    long long deadline = now_ms() + (wait_ms > 0 ? wait_ms : 0);
    for (;;) {
        if (flock(fd, op | LOCK_NB) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK)
            return wd__error_errno(WD_EIO, "cannot lock the repository");
        long long left = deadline - now_ms();
        if (left <= 0)
            return 1;
        sleep_ms(left < POLL_MS ? left : POLL_MS);
    }
}

int wd__repolock_shared(wd_repolock *l, const char *dir)
{
    int rc = open_lock_file(dir, WD_GC_LOCK_FILE, &l->gc_fd);
    if (!rc)
        rc = open_lock_file(dir, WD_LOCK_FILE, &l->fd);
    if (rc) {
        wd__repolock_close(l);
        return rc;
    }
    /* Pass through gc.lock: a gc waiting or running holds it exclusive. */
    rc = lock_wait(l->gc_fd, LOCK_SH, WD_LOCK_WRITER_WAIT_MS);
    if (rc == 0) {
        rc = lock_wait(l->fd, LOCK_SH, WD_LOCK_WRITER_WAIT_MS);
        flock(l->gc_fd, LOCK_UN);
    }
    if (rc == 1)
        rc = wd__error(WD_EBUSY, "repository is busy: 'wdrepo gc' has been running for over %d s; try again when it ends",
                       WD_LOCK_WRITER_WAIT_MS / 1000);
    if (rc)
        wd__repolock_close(l);
    return rc;
}

int wd__repolock_exclusive(wd_repolock *l, int wait_ms)
{
    long long start = now_ms();
    int rc = lock_wait(l->gc_fd, LOCK_EX, wait_ms);
    if (rc == 1)
        return wd__error(WD_EBUSY, "repository is busy: another gc is running; try again when it ends");
    if (rc)
        return rc;
    long long left = wait_ms - (now_ms() - start);
    rc = lock_wait(l->fd, LOCK_EX, left > 0 ? (int)left : 0);
    if (rc == 0) {
        l->exclusive = 1;
        return 0;
    }
    /* Nobody can hold repo.lock exclusive while we hold gc.lock: the shared
     * hold comes back at once. */
    flock(l->fd, LOCK_SH);
    flock(l->gc_fd, LOCK_UN);
    if (rc == 1)
        return wd__error(WD_EBUSY,
                         "repository is busy: another wdrepo command is writing to it (waited %d s); try again "
                         "when it ends, or wait longer (gc --wait SECONDS)",
                         (wait_ms + 999) / 1000);
    return rc;
}

int wd__repolock_try_exclusive(wd_repolock *l)
{
    if (l->fd < 0 || l->gc_fd < 0)
        return 0;
    if (flock(l->gc_fd, LOCK_EX | LOCK_NB) != 0)
        return 0;
    if (flock(l->fd, LOCK_EX | LOCK_NB) == 0) {
        l->exclusive = 1;
        return 1;
    }
    flock(l->fd, LOCK_SH);
    flock(l->gc_fd, LOCK_UN);
    return 0;
}

void wd__repolock_release_exclusive(wd_repolock *l)
{
    if (!l->exclusive)
        return;
    /* Shared again before gc.lock goes, so no gc slips in between. */
    flock(l->fd, LOCK_SH);
    flock(l->gc_fd, LOCK_UN);
    l->exclusive = 0;
}

void wd__repolock_close(wd_repolock *l)
{
    if (l->fd >= 0)
        close(l->fd);
    if (l->gc_fd >= 0)
        close(l->gc_fd);
    l->fd = l->gc_fd = -1;
    l->exclusive = 0;
}
