/*
 * cmd_hash.c - `wdrepo hash PATH...`: the model hash of folders or single
 * safetensors files (SPEC section 4, the deltatensors parent_hash),
 * computed without any repository.
 */
#include "cli.h"

#include <string.h>

static int json_flag;

static const cli_opt opts[] = {
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL,
     "print {\"path\", \"model_hash\"} (an array of them for several paths)", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"DIR|FILE", NULL};

/* Room for the paths of one command line; more is a usage error. */
enum { MAX_PATHS = 4096 };

static const cli_spec spec = {
    "hash", "DIR|FILE|- ... [--json]",
    "Print the model hash of each model folder DIR (64 hex digits): SHA-256 over its\n"
    "tensors in sorted-name order, each as its name then its raw bytes. It equals\n"
    "what add-base prints and what deltatensors records as parent_hash, whatever\n"
    "the shard layout. A FILE (or '-', standard input) is one safetensors file,\n"
    "hashed as the model of a folder holding just that file. With one path the\n"
    "hash alone is printed; with several, one \"HASH  PATH\" line each, like\n"
    "sha256sum, and the first failure ends the command. No repository is needed.\n",
    opts, args, 1, MAX_PATHS,
};

static cJSON *entry(const char *path, const char *hash)
{
    cJSON *j = cJSON_CreateObject();
    if (!j || !cJSON_AddStringToObject(j, "path", path) || !cJSON_AddStringToObject(j, "model_hash", hash)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

int cmd_hash(cli_ctx *ctx, int argc, char **argv)
{
    static char *pos[MAX_PATHS];
    char hash[WD_HEX_SIZE];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    int n_stdin = 0;
    for (int i = 0; i < npos; i++)
        n_stdin += !strcmp(pos[i], "-");
    if (n_stdin > 1)
        return cli_usage_error(ctx, &spec, "'-' (standard input) may be given once");
    wd_options opt = cli_wd_options(ctx);
    cJSON *all = json_flag && npos > 1 ? cJSON_CreateArray() : NULL;
    if (json_flag && npos > 1 && !all) {
        cli_errorf(ctx, "out of memory");
        return CLI_EXIT_FAIL;
    }
    for (int i = 0; i < npos; i++) {
        rc = wd_model_hash(pos[i], &opt, hash);
        cli_progress_clear(ctx);
        if (rc != WD_OK) {
            cJSON_Delete(all);
            /* hashes already printed stay valid; flush them before the error */
            fflush(stdout);
            return cli_lib_error(ctx, rc);
        }
        if (json_flag) {
            cJSON *j = entry(pos[i], hash);
            if (!j || (all && !cJSON_AddItemToArray(all, j))) {
                cJSON_Delete(j);
                cJSON_Delete(all);
                cli_errorf(ctx, "out of memory");
                return CLI_EXIT_FAIL;
            }
            if (!all)
                return cli_json_print(ctx, j);
        } else if (npos == 1) {
            printf("%s\n", hash);
        } else {
            printf("%s  %s\n", hash, pos[i]);
        }
    }
    if (all)
        return cli_json_print(ctx, all);
    return cli_finish_stdout(ctx);
}
