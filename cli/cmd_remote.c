/*
 * cmd_remote.c - `wdrepo remote`: `remote add NAME URL`, `remote rm NAME`,
 * and `remote` / `remote -v` to list them. The URLs live in the repository
 * folder's file "remotes"; credentials never do (docs/REMOTES.md).
 */
#include "cli.h"

#include <string.h>

static int verbose_flag;

static const cli_opt opts[] = {
    {"verbose", 'v', CLI_OPT_FLAG, &verbose_flag, NULL, "list the remotes with their URLs", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"add|rm", "NAME", "URL", NULL};

static const cli_spec spec = {
    "remote", "[-v] | add NAME URL | rm NAME",
    "Manage the S3 remotes this repository pushes to and fetches from.\n"
    "'remote add NAME URL' records one: URL is https://HOST[:PORT]/BUCKET[/PREFIX],\n"
    "http://... for an endpoint without TLS, or s3://BUCKET[/PREFIX] with the\n"
    "endpoint from AWS_ENDPOINT_URL. Credentials come from AWS_ACCESS_KEY_ID and\n"
    "AWS_SECRET_ACCESS_KEY or ~/.aws/credentials (AWS_PROFILE) when the remote is\n"
    "used, and are never stored. 'remote rm NAME' forgets one (the store is not\n"
    "touched). 'remote' lists the names, 'remote -v' the names and URLs.\n",
    opts, args, 0, 3,
};

int cmd_remote(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[3];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    const char *sub = npos ? pos[0] : NULL;
    if (sub && strcmp(sub, "add") == 0 && npos != 3)
        return cli_usage_error(ctx, &spec, "'remote add' takes NAME and URL");
    if (sub && strcmp(sub, "rm") == 0 && npos != 2)
        return cli_usage_error(ctx, &spec, "'remote rm' takes NAME");
    if (sub && strcmp(sub, "add") != 0 && strcmp(sub, "rm") != 0)
        return cli_usage_error(ctx, &spec, "unknown 'remote %s': expected add or rm", sub);
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, sub ? 0 : WD_OPEN_READONLY, &repo)) != CLI_EXIT_OK)
        return rc;
    if (sub && strcmp(sub, "add") == 0)
        rc = wd_remote_add(repo, pos[1], pos[2], 0);
    else if (sub)
        rc = wd_remote_rm(repo, pos[1]);
    if (sub) {
        wd_repo_close(repo);
        return rc == WD_OK ? CLI_EXIT_OK : cli_lib_error(ctx, rc);
    }
    wd_remote_info *list;
    size_t n;
    rc = wd_remote_list(repo, &list, &n);
    wd_repo_close(repo);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    for (size_t i = 0; i < n; i++) {
        if (verbose_flag)
            printf("%s\t%s%s\n", list[i].name, list[i].url, list[i].lazy ? " (lazy)" : "");
        else
            printf("%s\n", list[i].name);
    }
    wd_remote_list_free(list, n);
    return cli_finish_stdout(ctx);
}
