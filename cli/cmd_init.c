/*
 * cmd_init.c - `wdrepo init`: creates an empty repository at -R PATH, else
 * $WDREPO_DIR, else ./.wdrepo.
 */
#include "cli.h"

#include <limits.h>
#include <stdlib.h>

static const cli_spec spec = {
    "init", "",
    "Create an empty repository: the directory given by -R PATH, else $WDREPO_DIR,\n"
    "else ./.wdrepo. Fails if a repository is already there.\n",
    NULL, NULL, 0, 0,
};

int cmd_init(cli_ctx *ctx, int argc, char **argv)
{
    int npos, rc = cli_parse(ctx, &spec, argc, argv, NULL, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    const char *path = ctx->repo_path;
    const char *env = getenv("WDREPO_DIR");
    if (!path)
        path = env && *env ? env : ".wdrepo";
    char sub[PATH_MAX];
    if (cli_holds_repo(path, sub, sizeof sub)) {
        /* other commands take -R DIR to mean DIR/.wdrepo (like git -C):
         * a second repository in DIR would shadow it */
        cli_errorf(ctx, "'%s' already holds a repository in '%s'; use that one (-R '%s')", path, sub,
                   path);
        return CLI_EXIT_FAIL;
    }
    rc = wd_repo_init(path);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    char abs[PATH_MAX];
    cli_info(ctx, "initialized empty repository in '%s'", realpath(path, abs) ? abs : path);
    return CLI_EXIT_OK;
}
