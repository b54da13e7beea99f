/*
 * cmd_export.c - `wdrepo export REF OUT.wdelta`: writes a stored delta as a
 * deltatensors file.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *version_opt;
static cli_strategy_args strategy_args;
static int force_flag;

static const cli_opt opts[] = {
    {"format-version", 0, CLI_OPT_STR, &version_opt, "V", "1 or 2 (default 2)", 0, 0},
    {"force", 'f', CLI_OPT_FLAG, &force_flag, NULL,
     "overwrite an existing OUT.wdelta; write to standard output even on a terminal", 0, 0},
    CLI_STRATEGY_OPTS(strategy_args, "re-encode as sparse|quantized|int4 from the exact "
                                     "reconstruction (needed for lossless deltas)"),
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"REF", "OUT.wdelta", NULL};

static const cli_spec spec = {
    "export", "REF OUT.wdelta [--force] [--format-version 1|2] [--strategy S [--sparsity X | --outlier-fraction X]]",
    "Write the delta REF as a deltatensors .wdelta file (v2 unless asked for v1).\n"
    "Arrays go out as stored, so an imported file exports byte for byte. What a\n"
    ".wdelta cannot hold as stored is re-encoded from the exact reconstruction,\n"
    "and the added error is reported on stderr: int4 deltas exported as v1 (its\n"
    "other layout), and lossless deltas, which need --strategy.\n"
    "OUT.wdelta '-' is standard output. An existing file is replaced only with\n"
    "--force; a device or fifo is written in place.\n",
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
            return cli_usage_error(ctx, &spec, "--format-version %s: expected 1 or 2",
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
    eo.flags = force_flag ? WD_OUTPUT_FORCE : 0;
    int to_stdout = !strcmp(pos[1], "-");
    if (to_stdout && ctx->stdout_tty && !force_flag) {
        cli_errorf(ctx, "refusing to write a .wdelta file to a terminal; redirect standard output "
                        "or use --force");
        return CLI_EXIT_FAIL;
    }
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
    if (to_stdout)
        cli_info(ctx, "wrote standard output (format v%d)", eo.format_version ? eo.format_version : 2);
    else
        cli_info(ctx, "wrote '%s' (format v%d)", pos[1], eo.format_version ? eo.format_version : 2);
    return to_stdout ? CLI_EXIT_OK : cli_finish_stdout(ctx);
}
