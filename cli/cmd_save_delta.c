/*
 * cmd_save_delta.c - `wdrepo save-delta OUT.wdelta FT_DIR BASE_DIR`: writes the
 * delta of a fine-tune folder against its base folder as a deltatensors
 * .wdelta file (save_delta_from_paths), no repository involved.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static cli_strategy_args strategy_args;
static int version_opt, force_flag;

static const cli_opt opts[] = {
    CLI_STRATEGY_OPTS(strategy_args, "sparse (default), quantized or int4"),
    {"format-version", 0, CLI_OPT_INT, &version_opt, "N", "file format 1 or 2 (default 2)", 1, 2},
    {"force", 'f', CLI_OPT_FLAG, &force_flag, NULL,
     "overwrite an existing OUT.wdelta; write to standard output even on a terminal", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"OUT.wdelta", "FT_DIR", "BASE_DIR", NULL};

static const cli_spec spec = {
    "save-delta",
    "OUT.wdelta FT_DIR BASE_DIR [--strategy S] [--sparsity X] [--outlier-fraction X] "
    "[--format-version 1|2] [--force]",
    "Write the delta of the fine-tune folder FT_DIR against the base folder BASE_DIR\n"
    "as a deltatensors .wdelta file, like deltatensors' save_delta_from_paths; no\n"
    "repository is needed. Both folders must hold the same tensor names and shapes.\n"
    "Strategies: sparse (keep the 1-X largest |delta|), quantized (a sign bit each\n"
    "and a float16 scale per row), int4 (4-bit codes, X of the elements as float16\n"
    "outliers). Format 2 is deltatensors 0.3.0's, 1 is 0.2.0's. Prints the file's\n"
    "parent_hash (the base's hash over the tensors it names) on stdout.\n"
    "OUT.wdelta '-' is standard output (the parent_hash then goes to stderr). An\n"
    "existing file is replaced only with --force, a file of FT_DIR or BASE_DIR\n"
    "never; a device or fifo is written in place.\n",
    opts, args, 3, 3,
};

int cmd_save_delta(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[3];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_strategy_opts so;
    if ((rc = cli_strategy_opts(ctx, &spec, &strategy_args, "sparse", WD_STRATEGY_WDELTA, &so)) !=
        CLI_CONTINUE)
        return rc;

    int to_stdout = !strcmp(pos[0], "-");
    if (to_stdout && ctx->stdout_tty && !force_flag) {
        cli_errorf(ctx, "refusing to write a .wdelta file to a terminal; redirect standard output "
                        "or use --force");
        return CLI_EXIT_FAIL;
    }
    wd_options opt = cli_wd_options(ctx);
    char parent_hash[WD_HEX_SIZE];
    rc = wd_save_delta_from_paths_ex(pos[0], pos[1], pos[2], &so, version_opt,
                                     force_flag ? WD_OUTPUT_FORCE : 0, parent_hash, &opt);
    cli_progress_clear(ctx);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    int version = version_opt ? version_opt : 2;
    if (to_stdout) { /* stdout is the file: the hash goes with the summary */
        cli_info(ctx, "saved to standard output: format %d, parent_hash %s", version, parent_hash);
        return CLI_EXIT_OK;
    }
    struct stat sb;
    if (stat(pos[0], &sb) != 0 || !S_ISREG(sb.st_mode)) { /* a device or fifo: no reading back */
        char sh[CLI_SHORT_ID + 1];
        cli_fmt_short_id(sh, parent_hash);
        cli_info(ctx, "saved '%s': format %d, base %s", pos[0], version, sh);
        printf("%s\n", parent_hash);
        return cli_finish_stdout(ctx);
    }
    /* Read back what was written: the summary and the parent_hash printed
     * come from the file itself. */
    wd_wdelta_info *info;
    if ((rc = wd_inspect_file(&info, pos[0])) != WD_OK)
        return cli_lib_error(ctx, rc);
    char size[32], sh[CLI_SHORT_ID + 1];
    cli_fmt_size(size, info->size);
    cli_fmt_short_id(sh, info->parent_hash);
    cli_info(ctx, "saved '%s': format %d, %s, %zu tensors, %s, base %s", pos[0], info->version,
             info->strategy, info->n_tensors, size, sh);
    printf("%s\n", info->parent_hash);
    wd_inspect_file_free(info);
    return cli_finish_stdout(ctx);
}
