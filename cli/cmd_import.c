/*
 * cmd_import.c - `wdrepo import FILE.wdelta`: stores a deltatensors file as
 * a delta on the stored model its parent_hash names, and prints the id.
 */
#include "cli.h"

static const char *name_opt;
static int json_flag;

static const cli_opt opts[] = {
    {"name", 0, CLI_OPT_STR, &name_opt, "N", "attach name N to the delta", 0, 0},
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print the result as a JSON object", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"FILE.wdelta|-", NULL};

static const cli_spec spec = {
    "import", "FILE.wdelta|- [--name N] [--json]",
    "Store a deltatensors .wdelta file (format v1 or v2) as a delta and print its\n"
    "id. Its parent is the stored model whose tensors hash to the file's\n"
    "parent_hash (a base, or for chain files a delta's float32 reconstruction);\n"
    "add that base first. The summary and --json name the parent it matched.\n"
    "Importing the same file twice stores nothing new, and a file exported from a\n"
    "stored delta gives back that delta. FILE '-' is standard input.\n",
    opts, args, 1, 1,
};

int cmd_import(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, 0, &repo)) != CLI_EXIT_OK)
        return rc;
    wd_options opt = cli_wd_options(ctx);
    wd_write_result res = {0};
    rc = wd_import(repo, pos[0], name_opt, &opt, &res);
    cli_progress_clear(ctx);
    wd_repo_close(repo);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    char sizes[256], sid[CLI_SHORT_ID + 1], spid[CLI_SHORT_ID + 1];
    cli_fmt_write_sizes(sizes, sizeof sizes, &res);
    cli_fmt_short_id(sid, res.id);
    cli_fmt_short_id(spid, res.parent);
    if (res.already_present)
        cli_info(ctx, "delta %s on %s (%s) already stored: %s", sid, spid, res.strategy, sizes);
    else
        cli_info(ctx, "imported delta %s%s%s%s on %s (%s): %s", sid, name_opt ? " '" : "", name_opt ? name_opt : "",
                 name_opt ? "'" : "", spid, res.strategy, sizes);
    if (json_flag) {
        cJSON *j = cli_json_write_result(&res, "delta");
        if (!j || !cJSON_AddStringToObject(j, "parent", res.parent) ||
            !cJSON_AddStringToObject(j, "strategy", res.strategy)) {
            cJSON_Delete(j);
            cli_errorf(ctx, "out of memory");
            return CLI_EXIT_FAIL;
        }
        return cli_json_print(ctx, j);
    }
    printf("%s\n", res.id);
    return cli_finish_stdout(ctx);
}
