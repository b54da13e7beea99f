/*
 * cmd_push.c - `wdrepo push [REMOTE] [REF...]`: sends names (all of them
 * by default) and what they are built on to an S3 remote; and the summary
 * that push, fetch, pull and clone print (cli_transfer_report).
 */
#include "cli.h"

#include <string.h>

static int force_flag, json_flag;

static const cli_opt opts[] = {
    {"force", 'f', CLI_OPT_FLAG, &force_flag, NULL, "move names that point elsewhere on the remote", 0, 0},
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print the summary as a JSON object on stdout", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"REMOTE", "REF", NULL};
#define MAX_REFS 256

static const cli_spec spec = {
    "push", "[REMOTE] [REF...] [--force] [--json]",
    "Send REFs (names, or object ids: the object without a name; default: every\n"
    "name) and everything they are built on to REMOTE (a name from 'wdrepo\n"
    "remote', or a URL; default: origin). Only chunks and objects the remote\n"
    "lacks move; chunks go first, then objects, then names, so an interrupted\n"
    "push is simply run again. A name that points elsewhere on the remote is\n"
    "left alone and reported (exit 1); --force moves it.\n",
    opts, args, 0, MAX_REFS + 1,
};

int cli_transfer_report(cli_ctx *ctx, const char *verb, const wd_transfer_result *r, int json)
{
    if (json) {
        cJSON *j = cJSON_CreateObject();
        if (!j) {
            cli_errorf(ctx, "out of memory");
            return CLI_EXIT_FAIL;
        }
        cli_json_add_u64(j, "objects", r->objects);
        cli_json_add_u64(j, "objects_skipped", r->objects_skipped);
        cli_json_add_u64(j, "chunks", r->chunks);
        cli_json_add_u64(j, "chunks_skipped", r->chunks_skipped);
        cli_json_add_u64(j, "bytes", r->bytes);
        cli_json_add_u64(j, "names", r->names);
        cli_json_add_u64(j, "names_skipped", r->names_skipped);
        cJSON *c = cJSON_AddArrayToObject(j, "conflicts");
        for (size_t i = 0; c && i < r->n_conflicts; i++)
            cJSON_AddItemToArray(c, cJSON_CreateString(r->conflicts[i]));
        cJSON_AddNumberToObject(j, "seconds", r->seconds);
        return cli_json_print(ctx, j);
    }
    char size[32];
    cli_fmt_size(size, r->bytes);
    cli_info(ctx, "%s: %llu objects, %llu chunks (%s) moved; %llu objects, %llu chunks already there; "
                  "%llu names set, %llu unchanged; %.1f s",
             verb, (unsigned long long)r->objects, (unsigned long long)r->chunks, size,
             (unsigned long long)r->objects_skipped, (unsigned long long)r->chunks_skipped,
             (unsigned long long)r->names, (unsigned long long)r->names_skipped, r->seconds);
    return CLI_EXIT_OK;
}

/* The first positional is a remote if one by that name exists, or a URL. */
int cli_is_remote(wd_repo *repo, const char *arg)
{
    if (strstr(arg, "://"))
        return 1;
    wd_remote_info *list;
    size_t n;
    if (wd_remote_list(repo, &list, &n) != WD_OK)
        return 0;
    int found = 0;
    for (size_t i = 0; i < n; i++)
        found |= strcmp(list[i].name, arg) == 0;
    wd_remote_list_free(list, n);
    return found;
}

int cmd_push(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[MAX_REFS + 1];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo)) != CLI_EXIT_OK)
        return rc;
    const char *remote = "origin";
    int first = 0;
    if (npos && cli_is_remote(repo, pos[0])) {
        remote = pos[0];
        first = 1;
    }
    wd_options opt = cli_wd_options(ctx);
    wd_transfer_result r;
    rc = wd_push(repo, remote, (const char *const *)(pos + first), (size_t)(npos - first),
                 force_flag ? WD_PUSH_FORCE : 0, &opt, &r);
    cli_progress_clear(ctx);
    wd_repo_close(repo);
    int out = CLI_EXIT_OK;
    if (rc == WD_OK || rc == WD_EEXISTS)
        out = cli_transfer_report(ctx, "push", &r, json_flag);
    if (rc != WD_OK)
        out = cli_lib_error(ctx, rc);
    wd_transfer_result_free(&r);
    return out;
}
