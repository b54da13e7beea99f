/*
 * strategy.h - the one reading of strategy options (wd_strategy_opts) that
 * commit, export's re-encoding and the .wdelta writers share: bounds,
 * defaults and the canonical options text that enters delta ids.
 */
#ifndef WD_STRATEGY_H
#define WD_STRATEGY_H

#include "wdrepo.h"

#define WD__STRATEGY_LOSSLESS (-1) /* beside wdelta.h's WD__WS_* */
#define WD__STRATEGY_NONE (-2)     /* no strategy given and no default */

typedef struct {
    int strategy;          /* WD__WS_*, WD__STRATEGY_LOSSLESS or WD__STRATEGY_NONE */
    const char *name;      /* "sparse"...; NULL for WD__STRATEGY_NONE */
    double option;         /* sparse: sparsity; int4: outlier_fraction; else 0 */
    char options_json[64]; /* as commit records it: {"sparsity":0.90000000000000002}, "{}" */
} wd__strategy;

/* Resolves so (may be NULL) as wd_strategy_check describes; *out is
 * filled on success. WD_EUSAGE with the reason otherwise. */
int wd__strategy_resolve(wd__strategy *out, const wd_strategy_opts *so,
                         const char *default_strategy, unsigned flags);

#endif
