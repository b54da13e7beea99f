/*
 * cmd_fetch.c - `wdrepo fetch [REMOTE] [NAME...]` brings a remote's objects
 * (and their chunks) here; `wdrepo pull` does the same and sets the local
 * names to the remote's.
 */
#include "cli.h"

#include <string.h>

static int json_flag;

static const cli_opt opts[] = {
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print the summary as a JSON object on stdout", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"REMOTE", "NAME", NULL};
#define MAX_NAMES 256

static const cli_spec fetch_spec = {
    "fetch", "[REMOTE] [NAME...] [--json]",
    "Receive the objects NAMEs point at on REMOTE (default: origin; default\n"
    "names: all), with everything they are built on; only what is missing here\n"
    "moves, every chunk checked against its id. Local names are not changed\n"
    "('wdrepo pull' sets them).\n",
    opts, args, 0, MAX_NAMES + 1,
};

static const cli_spec pull_spec = {
    "pull", "[REMOTE] [NAME...] [--json]",
    "'wdrepo fetch', then set each local name to the object it names on REMOTE.\n"
    "A name that points elsewhere here is left alone and reported (exit 1).\n",
    opts, args, 0, MAX_NAMES + 1,
};

static int run(cli_ctx *ctx, const cli_spec *spec, unsigned flags, int argc, char **argv)
{
    char *pos[MAX_NAMES + 1];
    int npos, rc = cli_parse(ctx, spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, 0, &repo)) != CLI_EXIT_OK)
        return rc;
    const char *remote = "origin";
    int first = 0;
    if (npos && cli_is_remote(repo, pos[0])) {
        remote = pos[0];
        first = 1;
    }
    wd_options opt = cli_wd_options(ctx);
    wd_transfer_result r;
    rc = wd_fetch(repo, remote, (const char *const *)(pos + first), (size_t)(npos - first), flags, &opt, &r);
    cli_progress_clear(ctx);
    wd_repo_close(repo);
    int out = CLI_EXIT_OK;
    if (rc == WD_OK || rc == WD_EEXISTS)
        out = cli_transfer_report(ctx, spec->name, &r, json_flag);
    if (rc != WD_OK)
        out = cli_lib_error(ctx, rc);
    wd_transfer_result_free(&r);
    return out;
}

int cmd_fetch(cli_ctx *ctx, int argc, char **argv)
{
    return run(ctx, &fetch_spec, 0, argc, argv);
}

int cmd_pull(cli_ctx *ctx, int argc, char **argv)
{
    return run(ctx, &pull_spec, WD_FETCH_NAMES, argc, argv);
}
