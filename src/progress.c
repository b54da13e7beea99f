/*
 * progress.c - throttled stage progress (see progress.h).
 */
#include "progress.h"

#include <stddef.h>

void wd__progress_start(wd__progress *p, const wd_options *opt, const char *stage, uint64_t total)
{
    p->opt = opt;
    p->stage = stage;
    p->done = p->shown = 0;
    p->total = total;
    if (opt && opt->progress)
        opt->progress(opt->progress_ud, stage, 0, total);
}

void wd__progress_add(wd__progress *p, uint64_t n)
{
    p->done += n;
    if (!p->opt || !p->opt->progress)
        return;
    if (p->done == p->total || p->done - p->shown >= p->total / 512 + 1) {
        p->shown = p->done;
        p->opt->progress(p->opt->progress_ud, p->stage, p->done, p->total);
    }
}

void wd__progress_bytes(void *ud, uint64_t bytes)
{
    wd__progress_add(ud, bytes);
}
