/*
 * cmd_clone.c - `wdrepo clone URL DIR`: a new repository in DIR with the
 * remote origin = URL, and everything the remote names pulled into it;
 * with --lazy only the objects' metadata, chunks coming on checkout.
 */
#include "cli.h"

#include <limits.h>
#include <stdlib.h>

static int lazy_flag, json_flag;

static const cli_opt opts[] = {
    {"lazy", 0, CLI_OPT_FLAG, &lazy_flag, NULL, "fetch metadata only; checkout fetches the chunks it needs", 0,
     0},
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print the summary as a JSON object on stdout", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"URL", "DIR", NULL};

static const cli_spec spec = {
    "clone", "URL DIR [--lazy] [--json]",
    "Create a repository in DIR (as 'wdrepo init -R DIR' would), record URL as\n"
    "the remote origin, and pull every name from it. With --lazy only the\n"
    "objects' metadata comes now; 'wdrepo checkout' then fetches the chunks of\n"
    "what it writes (and of what that is built on) and keeps them.\n",
    opts, args, 2, 2,
};

int cmd_clone(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[2];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    if ((rc = wd_repo_init(pos[1])) != WD_OK)
        return cli_lib_error(ctx, rc);
    wd_repo *repo;
    if ((rc = wd_repo_open(&repo, pos[1], 0)) != WD_OK)
        return cli_lib_error(ctx, rc);
    if ((rc = wd_remote_add(repo, "origin", pos[0], lazy_flag)) != WD_OK) {
        wd_repo_close(repo);
        return cli_lib_error(ctx, rc);
    }
    wd_options opt = cli_wd_options(ctx);
    wd_transfer_result r;
    rc = wd_fetch(repo, "origin", NULL, 0, WD_FETCH_NAMES, &opt, &r);
    cli_progress_clear(ctx);
    wd_repo_close(repo);
    int out = CLI_EXIT_OK;
    if (rc == WD_OK || rc == WD_EEXISTS)
        out = cli_transfer_report(ctx, "clone", &r, json_flag);
    if (rc != WD_OK)
        out = cli_lib_error(ctx, rc);
    wd_transfer_result_free(&r);
    return out;
}

int cli_remote_hydrate(cli_ctx *ctx, const char *ref)
{
    wd_repo *repo;
    int rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo);
    if (rc != CLI_EXIT_OK)
        return rc;
    wd_remote_info *list;
    size_t n;
    int lazy = 0;
    if (wd_remote_list(repo, &list, &n) == WD_OK) {
        for (size_t i = 0; i < n; i++)
            lazy |= list[i].lazy;
        wd_remote_list_free(list, n);
    }
    wd_repo_close(repo);
    if (!lazy)
        return CLI_EXIT_OK;
    if ((rc = cli_open_repo(ctx, 0, &repo)) != CLI_EXIT_OK)
        return rc;
    wd_options opt = cli_wd_options(ctx);
    wd_transfer_result r;
    rc = wd_remote_hydrate(repo, ref, &opt, &r);
    cli_progress_clear(ctx);
    wd_repo_close(repo);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    if (r.chunks) {
        char size[32];
        cli_fmt_size(size, r.bytes);
        cli_info(ctx, "fetched %llu chunks (%s) from the lazy clone's remote", (unsigned long long)r.chunks, size);
    }
    wd_transfer_result_free(&r);
    return CLI_EXIT_OK;
}
