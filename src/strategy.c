/*
 * strategy.c - strategy options checked and resolved in one place, so that
 * every command applies the same bounds and defaults (see strategy.h).
 */
#include "strategy.h"

#include <stdio.h>
#include <string.h>

#include "codec_lowbit.h"
#include "error.h"
#include "wdelta.h"

static const struct {
    const char *name;
    int strategy;
} strategies[] = {{"lossless", WD__STRATEGY_LOSSLESS}, {"sparse", WD__WS_SPARSE},
                  {"quantized", WD__WS_QUANTIZED},     {"int4", WD__WS_INT4},
                  {"lowbit", WD__WS_LOWBIT}};

/* A value is given by its bit, or by being nonzero: wd_strategy_opts
 * initialisers written before the bits existed keep their meaning. */
static int given(const wd_strategy_opts *so, unsigned bit, double v)
{
    return so && ((so->set & bit) || v != 0);
}

int wd__strategy_resolve(wd__strategy *out, const wd_strategy_opts *so,
                         const char *default_strategy, unsigned flags)
{
    int wdelta_only = (flags & WD_STRATEGY_WDELTA) != 0;
    const char *name = so && so->strategy ? so->strategy : default_strategy;
    int has_sp = given(so, WD_SET_SPARSITY, so ? so->sparsity : 0);
    int has_of = given(so, WD_SET_OUTLIER_FRACTION, so ? so->outlier_fraction : 0);
    memset(out, 0, sizeof *out);
    snprintf(out->options_json, sizeof out->options_json, "{}");
    out->strategy = WD__STRATEGY_NONE;
    if (name) {
        size_t i = 0, n = sizeof strategies / sizeof *strategies;
        while (i < n && strcmp(strategies[i].name, name))
            i++;
        if (i == n)
            return wd__error(WD_EUSAGE, "unknown strategy '%s' (valid: %s)", name,
                             wdelta_only ? "sparse, quantized, int4"
                                         : "lossless, sparse, quantized, int4, lowbit");
        if (wdelta_only && strategies[i].strategy == WD__STRATEGY_LOSSLESS)
            return wd__error(WD_EUSAGE, "strategy 'lossless' is wdrepo's own; a .wdelta file "
                                        "holds sparse, quantized or int4");
        /* (issue 11) lowbit is wdrepo's own too */
        if (wdelta_only && strategies[i].strategy == WD__WS_LOWBIT)
            return wd__error(WD_EUSAGE, "strategy 'lowbit' is wdrepo's own; a .wdelta file "
                                        "holds sparse, quantized or int4");
        out->strategy = strategies[i].strategy;
        out->name = strategies[i].name;
    }
    /* An option for another strategy is refused rather than ignored: the
     * caller meant something the result would not have. */
    if (has_sp && out->strategy != WD__WS_SPARSE)
        return name ? wd__error(WD_EUSAGE, "sparsity applies to strategy sparse, not %s", name)
                    : wd__error(WD_EUSAGE, "sparsity applies to strategy sparse, and no strategy was given");
    if (has_of && out->strategy != WD__WS_INT4)
        return name ? wd__error(WD_EUSAGE, "outlier_fraction applies to strategy int4, not %s", name)
                    : wd__error(WD_EUSAGE, "outlier_fraction applies to strategy int4, and no strategy was given");
    int has_q = given(so, WD_SET_QUALITY, so ? so->quality : 0);
    if (has_q && out->strategy != WD__WS_LOWBIT)
        return name ? wd__error(WD_EUSAGE, "quality applies to strategy lowbit, not %s", name)
                    : wd__error(WD_EUSAGE, "quality applies to strategy lowbit, and no strategy was given");
    if (out->strategy == WD__WS_LOWBIT) {
        out->option = has_q ? so->quality : WD_LOWBIT_DEFAULT_QUALITY;
        if (!(out->option >= WD_LOWBIT_QUALITY_MIN && out->option <= WD_LOWBIT_QUALITY_MAX))
            return wd__error(WD_EUSAGE, "quality %g: expected a number in [%g, %g]", out->option,
                             WD_LOWBIT_QUALITY_MIN, WD_LOWBIT_QUALITY_MAX);
        snprintf(out->options_json, sizeof out->options_json, "{\"quality\":%.17g}", out->option);
    }
    if (out->strategy == WD__WS_SPARSE) {
        /* k = floor(n * (1 - sparsity)) must keep something: 1 is refused,
         * 0 keeps every element (deltatensors' bounds) */
        out->option = has_sp ? so->sparsity : WD_DEFAULT_SPARSITY;
        if (!(out->option >= 0 && out->option < 1))
            return wd__error(WD_EUSAGE, "sparsity %g: expected a number in [0, 1)", out->option);
        snprintf(out->options_json, sizeof out->options_json, "{\"sparsity\":%.17g}",
                 out->option);
    } else if (out->strategy == WD__WS_INT4) {
        /* 0 would still keep one outlier a tensor (n_outliers is at least
         * 1): refused rather than quietly turned into something else */
        out->option = has_of ? so->outlier_fraction : WD_DEFAULT_OUTLIER_FRACTION;
        if (!(out->option > 0 && out->option <= 1))
            return wd__error(WD_EUSAGE, "outlier_fraction %g: expected a number in (0, 1]",
                             out->option);
        snprintf(out->options_json, sizeof out->options_json, "{\"outlier_fraction\":%.17g}",
                 out->option);
    }
    return 0;
}

int wd_strategy_check(const wd_strategy_opts *so, const char *default_strategy, unsigned flags)
{
    wd__strategy s;
    return wd__strategy_resolve(&s, so, default_strategy, flags);
}
