/*
 * cmd_load_delta.c - `wdrepo load-delta IN.wdelta BASE_DIR OUT_DIR`: rebuilds
 * a fine-tune from a deltatensors .wdelta file and its base folder as a model
 * folder (deltatensors' reconstruct_to_safetensors), no repository involved.
 */
#include "cli.h"


static int force_flag, no_verify_flag;
static const char *dtype_opt;

static const cli_opt opts[] = {
    {"dtype", 0, CLI_OPT_STR, &dtype_opt, "T",
     "write floating-point tensors as float32|bfloat16|float16 (default: the base's dtype)", 0, 0},
    {"force", 'f', CLI_OPT_FLAG, &force_flag, NULL, "replace a non-empty OUT_DIR", 0, 0},
    {"no-verify", 0, CLI_OPT_FLAG, &no_verify_flag, NULL,
     "do not check the base against the file's parent_hash", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"IN.wdelta", "BASE_DIR", "OUT_DIR", NULL};

static const cli_spec spec = {
    "load-delta", "IN.wdelta BASE_DIR OUT_DIR [--dtype float32|bfloat16|float16] [--force] "
                  "[--no-verify]",
    "Rebuild the fine-tune IN.wdelta describes from its base folder BASE_DIR into\n"
    "OUT_DIR, like deltatensors' reconstruct_to_safetensors: model.safetensors (the\n"
    "file's tensors, then the base's others), config.json and the base's other\n"
    "non-weight files. The base is first checked against the file's parent_hash;\n"
    "a chain link verifies when BASE_DIR holds the float32 model of the link\n"
    "before it (load-delta --dtype float32), else needs --no-verify. Integer tensors\n"
    "keep their dtype. OUT_DIR must be absent or empty unless --force, and never\n"
    "holds or lies inside the inputs or holds the current directory; on failure\n"
    "or interruption nothing is left behind. Prints nothing on stdout.\n",
    opts, args, 3, 3,
};

int cmd_load_delta(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[3];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_out_dtype out_dtype;
    if ((rc = cli_out_dtype(ctx, &spec, dtype_opt, &out_dtype)) != CLI_CONTINUE)
        return rc;
    unsigned flags = (force_flag ? WD_CHECKOUT_FORCE : 0) | (no_verify_flag ? WD_LOAD_NO_VERIFY : 0);
    wd_options opt = cli_wd_options(ctx);
    rc = wd_load_delta_from_paths(pos[0], pos[1], pos[2], out_dtype, flags, &opt);
    cli_progress_clear(ctx);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    cli_info(ctx, "reconstructed '%s' on '%s' into '%s'%s", pos[0], pos[1], pos[2],
             no_verify_flag ? " (base not verified)" : ", base verified");
    return CLI_EXIT_OK;
}
