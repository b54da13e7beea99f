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
        return cli_usage_error(ctx, spec, "--%s %s: expected a number", name, v);
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
    if (rc == CLI_CONTINUE)
        rc = number(ctx, spec, "quality", a->quality, WD_SET_QUALITY, &out->quality, &out->set);
    if (rc == CLI_CONTINUE && wd_strategy_check(out, default_strategy, flags) != WD_OK) {
        /* The library names the fields of wd_strategy_opts; the user typed
         * the options: "outlier_fraction 2: ..." reads "--outlier-fraction 2: ...",
         * the value shown as given. */
        const char *msg = wd_errmsg();
        static const struct {
            const char *field, *option;
            size_t arg;
        } names[] = {{"sparsity", "--sparsity", 1}, {"outlier_fraction", "--outlier-fraction", 2},
                     {"quality", "--quality", 3}};
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            size_t n = strlen(names[i].field);
            if (strncmp(msg, names[i].field, n) || msg[n] != ' ')
                continue;
            const char *given = names[i].arg == 1 ? a->sparsity : names[i].arg == 2 ? a->outlier_fraction : a->quality;
            const char *rest = msg + n;
            /* "sparsity 1.5: expected ..." shows the value as typed */
            const char *colon = strchr(rest, ':');
            if (given && colon && strncmp(rest, " applies", 8) != 0)
                return cli_usage_error(ctx, spec, "%s %s%s", names[i].option, given, colon);
            return cli_usage_error(ctx, spec, "%s%s", names[i].option, rest);
        }
        rc = cli_usage_error(ctx, spec, "%s", msg);
    }
    return rc;
}
