/*
 * sidejob.c - a function on a thread of its own, joined with its error
 * (see sidejob.h).
 */
#include "sidejob.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "wdrepo.h"

static void *side_main(void *arg)
{
    wd__sidejob *j = arg;
    j->rc = j->fn(j->ud);
    if (j->rc)
        snprintf(j->msg, sizeof j->msg, "%s", wd_errmsg());
    atomic_store(&j->done, 1);
    return NULL;
}

int wd__sidejob_start(wd__sidejob *j, int (*fn)(void *ud), void *ud)
{
    memset(j, 0, sizeof *j);
    atomic_init(&j->done, 0);
    j->fn = fn;
    j->ud = ud;
    if (pthread_create(&j->th, NULL, side_main, j) != 0)
        return -1;
    j->running = 1;
    return 0;
}

int wd__sidejob_done(wd__sidejob *j)
{
    return atomic_load(&j->done);
}

int wd__sidejob_join(wd__sidejob *j)
{
    if (!j->running)
        return 0;
    j->running = 0;
    pthread_join(j->th, NULL);
    return j->rc ? wd__error(j->rc, "%s", j->msg) : 0;
}
