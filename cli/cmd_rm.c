/*
 * cmd_rm.c - `wdrepo rm REF...`: removes bases and deltas (with their
 * names) in one transaction; objects built on them are removed too only
 * with --recursive, else the command is refused naming them. The space
 * their chunks take comes back with `wdrepo gc`.
 */
#include "cli.h"

static int recursive_flag, json_flag;

static const cli_opt opts[] = {
    {"recursive", 'r', CLI_OPT_FLAG, &recursive_flag, NULL,
     "also remove every object built on REF (its deltas, theirs...)", 0, 0},
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print the removed objects as a JSON array", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"REF", NULL};

/* Room for the references one command line may give. */
#define MAX_REFS 256

static const cli_spec spec = {
    "rm", "REF... [--recursive] [--json]",
    "Remove the objects REF... name, with their files, tensors and names, in one\n"
    "transaction. An object other objects are built on (deltas taken against it)\n"
    "is refused, naming them, unless --recursive, which removes them too. Prints\n"
    "the removed ids on stdout, children first. The space of chunks nothing\n"
    "references any more comes back with 'wdrepo gc'.\n",
    opts, args, 1, MAX_REFS,
};

int cmd_rm(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[MAX_REFS];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, 0, &repo)) != CLI_EXIT_OK)
        return rc;
    wd_removed_info *removed = NULL;
    size_t n = 0;
    rc = wd_rm(repo, (const char *const *)pos, (size_t)npos, recursive_flag ? WD_RM_RECURSIVE : 0, &removed, &n);
    wd_repo_close(repo);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    for (size_t i = 0; i < n; i++) {
        char sid[CLI_SHORT_ID + 1], names[512] = "";
        size_t len = 0;
        cli_fmt_short_id(sid, removed[i].id);
        for (size_t j = 0; j < removed[i].n_names && len < sizeof names; j++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s'%s'", j ? ", " : " ", removed[i].names[j]);
        cli_info(ctx, "removed %s %s%s", removed[i].kind, sid, names);
    }
    if (n)
        cli_info(ctx, "'wdrepo gc' gives back the space of chunks nothing references any more");
    if (json_flag) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; arr && i < n; i++) {
            cJSON *o = cJSON_CreateObject(), *names = o ? cJSON_AddArrayToObject(o, "names") : NULL;
            if (!names || !cJSON_AddStringToObject(o, "id", removed[i].id) ||
                !cJSON_AddStringToObject(o, "kind", removed[i].kind)) {
                cJSON_Delete(o);
                cJSON_Delete(arr);
                arr = NULL;
                break;
            }
            cJSON_AddItemToArray(arr, o);
            for (size_t j = 0; j < removed[i].n_names; j++)
                cJSON_AddItemToArray(names, cJSON_CreateString(removed[i].names[j]));
        }
        wd_rm_free(removed, n);
        if (!arr) {
            cli_errorf(ctx, "out of memory");
            return CLI_EXIT_FAIL;
        }
        return cli_json_print(ctx, arr);
    }
    for (size_t i = 0; i < n; i++)
        printf("%s\n", removed[i].id);
    wd_rm_free(removed, n);
    return cli_finish_stdout(ctx);
}
