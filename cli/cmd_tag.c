/*
 * cmd_tag.c - `wdrepo tag NAME REF`: attaches a name to an object, moving
 * the name if it already pointed elsewhere. Which names are valid is the
 * library's rule (docs/CLI.md repeats it).
 */
#include "cli.h"

static const char *const args[] = {"NAME", "REF", NULL};

static const cli_spec spec = {
    "tag", "NAME REF",
    "Attach NAME to the object REF resolves to. If NAME already names another\n"
    "object it moves. An object may carry several names. Prints nothing on stdout.\n",
    NULL, args, 2, 2,
};

int cmd_tag(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[2], id[WD_HEX_SIZE];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, 0, &repo)) != CLI_EXIT_OK)
        return rc;
    rc = wd_tag(repo, pos[0], pos[1]);
    if (rc != WD_OK) {
        rc = cli_lib_error(ctx, rc);
        wd_repo_close(repo);
        return rc;
    }
    if (wd_resolve(repo, pos[0], id) == WD_OK) {
        char sid[CLI_SHORT_ID + 1];
        cli_fmt_short_id(sid, id);
        cli_info(ctx, "'%s' -> %s", pos[0], sid);
    }
    wd_repo_close(repo);
    return CLI_EXIT_OK;
}
