/*
 * cmd_checkout.c - `wdrepo checkout REF OUT_DIR`: writes a stored base or
 * delta back as a model folder (the library builds it beside OUT_DIR,
 * renames it into place and verifies it against the recorded hash).
 */
#include "cli.h"

static int force_flag;
static const char *dtype_opt;

static const cli_opt opts[] = {
    {"force", 'f', CLI_OPT_FLAG, &force_flag, NULL, "replace a non-empty OUT_DIR", 0, 0},
    {"dtype", 0, CLI_OPT_STR, &dtype_opt, "T",
     "write floating-point tensors as float32|bfloat16|float16 (default: each tensor's own dtype)", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"REF", "OUT_DIR", NULL};

static const cli_spec spec = {
    "checkout", "REF OUT_DIR [--force] [--dtype float32|bfloat16|float16]",
    "Write the model REF names (a full id, a unique hex prefix of 4+ digits, or a\n"
    "name) into OUT_DIR: same shard files, tensor order, dtypes, metadata and other\n"
    "files as the folder that was stored; for lossless objects every file is\n"
    "byte-identical. The written weights are verified against the recorded model\n"
    "hash. OUT_DIR must be absent or empty unless --force, and is never the\n"
    "repository, the current directory or a folder holding them. On failure or\n"
    "interruption nothing is left behind. Prints nothing on stdout.\n",
    opts, args, 2, 2,
};

int cmd_checkout(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[2];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_out_dtype out_dtype;
    if ((rc = cli_out_dtype(ctx, &spec, dtype_opt, &out_dtype)) != CLI_CONTINUE)
        return rc;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo)) != CLI_EXIT_OK)
        return rc;
    wd_options opt = cli_wd_options(ctx);
    rc = wd_checkout_as(repo, pos[0], pos[1], force_flag ? WD_CHECKOUT_FORCE : 0, out_dtype, &opt);
    cli_progress_clear(ctx);
    if (rc != WD_OK) {
        rc = cli_lib_error(ctx, rc);
        wd_repo_close(repo);
        return rc;
    }
    wd_inspect_info *info = NULL;
    if (!ctx->quiet && wd_inspect(repo, pos[0], &info) == WD_OK) {
        char sid[CLI_SHORT_ID + 1], raw[32];
        cli_fmt_short_id(sid, info->obj.id);
        cli_fmt_size(raw, info->obj.tensor_bytes);
        cli_info(ctx, "checked out %s %s into '%s': %zu files, %llu tensors, %s of weights, verified",
                 info->obj.kind, sid, pos[1], info->n_files,
                 (unsigned long long)info->obj.n_tensors, raw);
    } else {
        cli_info(ctx, "checked out '%s' into '%s'", pos[0], pos[1]);
    }
    wd_inspect_free(info);
    wd_repo_close(repo);
    return CLI_EXIT_OK;
}
