/*
 * cmd_hash.c - `wdrepo hash DIR`: the model hash of a folder (SPEC section 4,
 * the deltatensors parent_hash) computed without any repository.
 */
#include "cli.h"

static int json_flag;

static const cli_opt opts[] = {
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print {\"path\", \"model_hash\"} as JSON", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"DIR", NULL};

static const cli_spec spec = {
    "hash", "DIR [--json]",
    "Print the model hash of the model folder DIR (64 hex digits): SHA-256 over its\n"
    "tensors in sorted-name order, each as its name then its raw bytes. It equals\n"
    "what add-base prints and what deltatensors records as parent_hash, whatever\n"
    "the shard layout. No repository is needed.\n",
    opts, args, 1, 1,
};

int cmd_hash(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[1], hash[WD_HEX_SIZE];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_options opt = cli_wd_options(ctx);
    rc = wd_model_hash(pos[0], &opt, hash);
    cli_progress_clear(ctx);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    if (json_flag) {
        cJSON *j = cJSON_CreateObject();
        if (!j || !cJSON_AddStringToObject(j, "path", pos[0]) ||
            !cJSON_AddStringToObject(j, "model_hash", hash)) {
            cJSON_Delete(j);
            cli_errorf(ctx, "out of memory");
            return CLI_EXIT_FAIL;
        }
        return cli_json_print(ctx, j);
    }
    printf("%s\n", hash);
    return cli_finish_stdout(ctx);
}
