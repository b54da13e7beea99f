/*
 * cmd_export.c - `wdrepo export REF OUT.wdelta`: writes a stored delta as a
 * deltatensors file.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *version_opt;
static cli_strategy_args strategy_args;

static const cli_opt opts[] = {
    {"format-version", 0, CLI_OPT_STR, &version_opt, "V", "1 or 2 (default 2)", 0, 0},
    CLI_STRATEGY_OPTS(strategy_args, "re-encode as sparse|quantized|int4 from the exact "
                                     "reconstruction (needed for lossless deltas)"),
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"REF", "OUT.wdelta", NULL};

static const cli_spec spec = {
    "export", "REF OUT.wdelta [--format-version 1|2] [--strategy S [--sparsity X | --outlier-fraction X]]",
    "Write the delta REF as a deltatensors .wdelta file (v2 unless asked for v1).\n"
    "Arrays go out as stored, so an imported file exports byte for byte. What a\n"
    ".wdelta cannot hold as stored is re-encoded from the exact reconstruction,\n"
    "and the added error is reported on stderr: int4 deltas exported as v1 (its\n"
    "other layout), and lossless deltas, which need --strategy.\n",
    opts, args, 2, 2,
};

int cmd_export(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[2];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_export_opts eo;
    memset(&eo, 0, sizeof eo);
    if (version_opt) {
        if (strcmp(version_opt, "1") && strcmp(version_opt, "2"))
            return cli_usage_error(ctx, &spec, "bad value '%s' for option '--format-version' (expected 1 or 2)",
                                   version_opt);
        eo.format_version = atoi(version_opt);
    }
    /* without --strategy the stored arrays go out as they are: no options */
    wd_strategy_opts so;
    if ((rc = cli_strategy_opts(ctx, &spec, &strategy_args, NULL, WD_STRATEGY_WDELTA, &so)) !=
        CLI_CONTINUE)
        return rc;
    eo.reencode = so.strategy;
    eo.sparsity = so.sparsity;
    eo.outlier_fraction = so.outlier_fraction;
    eo.set = so.set;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo)) != CLI_EXIT_OK)
        return rc;
    wd_options opt = cli_wd_options(ctx);
    rc = wd_export(repo, pos[0], pos[1], &eo, &opt);
    cli_progress_clear(ctx);
    wd_repo_close(repo);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    if (eo.reencoded)
        cli_info(ctx, "note: re-encoded for the .wdelta format; added error up to %.3g (||d'-d||/||d||)",
                 eo.added_rel_error);
    cli_info(ctx, "wrote '%s' (format v%d)", pos[1], eo.format_version ? eo.format_version : 2);
    return cli_finish_stdout(ctx);
}
