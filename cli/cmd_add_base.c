/*
 * cmd_add_base.c - `wdrepo add-base DIR`: stores a model folder losslessly as
 * a base and prints its model hash. The base's id is that hash, unless
 * another folder with the same weights was stored first (then the summary
 * names the id this folder got).
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *name_opt, *exclude_dummy;
static int json_flag;

static const cli_opt opts[] = {
    {"name", 0, CLI_OPT_STR, &name_opt, "N", "attach name N to the base", 0, 0},
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print the result as a JSON object", 0, 0},
    CLI_EXCLUDE_OPT(exclude_dummy),
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"DIR", NULL};

static const cli_spec spec = {
    "add-base", "DIR [--name N] [--exclude GLOB]... [--json]",
    "Store the model folder DIR (its *.safetensors shards, shard layout and other\n"
    "files) as a base, losslessly, and print its model hash on stdout. Adding the\n"
    "same folder again stores nothing new. A folder with the same weights as a\n"
    "stored base but other files (a README, a fixed tokenizer) or another shard\n"
    "layout becomes a base of its own, sharing the weights' chunks; its id is\n"
    "then not the model hash (the summary and --json give it; --name names it).\n"
    "Files in subfolders (original/, onnx/) are stored with their paths and come\n"
    "back on checkout; only the top level's *.safetensors are the weights. Hidden\n"
    "folders (.git, .cache) are skipped; --exclude leaves out more.\n",
    opts, args, 1, 1,
};

int cmd_add_base(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    const char **exclude;
    size_t n_exclude;
    int npos, rc = cli_take_excludes(ctx, &spec, &argc, argv, &exclude, &n_exclude);
    if (rc != CLI_CONTINUE)
        return rc;
    rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE) {
        free(exclude);
        return rc;
    }
    wd_folder_filter filter = {exclude, n_exclude};
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, 0, &repo)) != CLI_EXIT_OK) {
        free(exclude);
        return rc;
    }

    wd_options opt = cli_wd_options(ctx);
    wd_write_result res = {0};
    rc = wd_add_base_ex(repo, pos[0], name_opt, &filter, &opt, &res);
    free(exclude);
    cli_progress_clear(ctx);
    if (rc != WD_OK) {
        rc = cli_lib_error(ctx, rc);
        wd_repo_close(repo);
        return rc;
    }
    wd_repo_close(repo);

    char sizes[256], sid[CLI_SHORT_ID + 1], smh[CLI_SHORT_ID + 1], other[64] = "";
    cli_fmt_write_sizes(sizes, sizeof sizes, &res);
    cli_fmt_short_id(sid, res.id);
    cli_fmt_short_id(smh, res.model_hash);
    if (strcmp(res.id, res.model_hash))
        snprintf(other, sizeof other, " (same weights as %s, other files)", smh);
    char named[256];
    cli_fmt_name(named, sizeof named, name_opt, res.name_was);
    if (res.already_present)
        cli_info(ctx, "base %s%s%s already stored: %s", sid, res.name_was[0] ? named : "", other, sizes);
    else
        cli_info(ctx, "added base %s%s%s: %s", sid, named, other, sizes);
    if (json_flag)
        return cli_json_print(ctx, cli_json_write_result(&res, "base"));
    printf("%s\n", res.model_hash);
    return cli_finish_stdout(ctx);
}
