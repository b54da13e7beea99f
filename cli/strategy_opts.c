/*
 * strategy_opts.c - --strategy, --sparsity and --outlier-fraction, read the
 * same way by commit, save-delta and export. The bounds are the library's
 * (wd_strategy_check), so every command refuses the same values alike.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* A number given on the command line; the bounds are checked later. */
static int number(cli_ctx *ctx, const cli_spec *spec, const char *name, const char *v,
                  unsigned bit, double *out, unsigned *set)
{
    if (!v)
        return CLI_CONTINUE;
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end)
        return cli_usage_error(ctx, spec, "bad value '%s' for option '--%s' (expected a number)",
                               v, name);
    *out = d;
    *set |= bit;
    return CLI_CONTINUE;
}

int cli_strategy_opts(cli_ctx *ctx, const cli_spec *spec, const cli_strategy_args *a,
                      const char *default_strategy, unsigned flags, wd_strategy_opts *out)
{
    memset(out, 0, sizeof *out);
    out->strategy = a->strategy;
    int rc = number(ctx, spec, "sparsity", a->sparsity, WD_SET_SPARSITY, &out->sparsity, &out->set);
    if (rc == CLI_CONTINUE)
        rc = number(ctx, spec, "outlier-fraction", a->outlier_fraction, WD_SET_OUTLIER_FRACTION,
                    &out->outlier_fraction, &out->set);
    if (rc == CLI_CONTINUE && wd_strategy_check(out, default_strategy, flags) != WD_OK)
        rc = cli_usage_error(ctx, spec, "%s", wd_errmsg());
    return rc;
}
