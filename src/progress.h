/*
 * progress.h - a command stage's progress handed to the caller's
 * wd_options.progress, throttled to ~500 reports a stage (and its end) so
 * that a stage of millions of small steps costs nothing to report.
 */
#ifndef WD_PROGRESS_H
#define WD_PROGRESS_H

#include <stdint.h>

#include "wdrepo.h"

typedef struct {
    const wd_options *opt; /* NULL or no callback: silent */
    const char *stage;
    uint64_t done, total, shown;
} wd__progress;

/* Starts stage (reported at 0 of total). */
void wd__progress_start(wd__progress *p, const wd_options *opt, const char *stage, uint64_t total);
/* n more units done. */
void wd__progress_add(wd__progress *p, uint64_t n);
/* wd__progress_add as a "bytes done" callback (ud: the wd__progress). */
void wd__progress_bytes(void *ud, uint64_t bytes);

#endif
