/*
 * cmd_tag.c - `wdrepo tag NAME REF` attaches a name to an object (moving
 * it if it already pointed elsewhere); `tag -d NAME...` deletes names;
 * `tag -l` (or `tag` alone) lists them. Which names are valid is the
 * library's rule (docs/CLI.md repeats it).
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int delete_flag, list_flag, json_flag;

static const cli_opt opts[] = {
    {"delete", 'd', CLI_OPT_FLAG, &delete_flag, NULL, "delete the names given (the objects stay)", 0, 0},
    {"list", 'l', CLI_OPT_FLAG, &list_flag, NULL, "list every name with the object it names", 0, 0},
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "with -l: print a JSON array", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"NAME", "REF", NULL};

/* Room for the names `tag -d` may be given at once. */
#define MAX_NAMES 256

static const cli_spec spec = {
    "tag", "NAME REF | -d NAME... | -l [--json]",
    "Attach NAME to the object REF resolves to. If NAME already names another\n"
    "object it moves. An object may carry several names. Prints nothing on stdout.\n"
    "-d NAME... deletes names (the objects stay); -l, or no argument, lists the\n"
    "names: NAME ID KIND SET, sorted by name (--json: an array of objects).\n",
    opts, args, 0, MAX_NAMES,
};

static void *checked(cli_ctx *ctx, void *p)
{
    if (!p) {
        cli_errorf(ctx, "out of memory");
        exit(CLI_EXIT_FAIL);
    }
    return p;
}

static int list_names(cli_ctx *ctx)
{
    wd_repo *repo;
    int rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo);
    if (rc != CLI_EXIT_OK)
        return rc;
    wd_name_info *names = NULL;
    size_t n = 0;
    rc = wd_names(repo, &names, &n);
    wd_repo_close(repo);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    if (json_flag) {
        cJSON *arr = checked(ctx, cJSON_CreateArray());
        for (size_t i = 0; i < n; i++) {
            cJSON *o = checked(ctx, cJSON_CreateObject());
            cJSON_AddItemToArray(arr, o);
            checked(ctx, cJSON_AddStringToObject(o, "name", names[i].name));
            checked(ctx, cJSON_AddStringToObject(o, "id", names[i].id));
            checked(ctx, cJSON_AddStringToObject(o, "kind", names[i].kind));
            checked(ctx, cJSON_AddNumberToObject(o, "created", (double)names[i].created));
            char iso[32];
            time_t t = (time_t)names[i].created;
            struct tm tm;
            if (gmtime_r(&t, &tm) && strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm))
                checked(ctx, cJSON_AddStringToObject(o, "created_utc", iso));
        }
        wd_names_free(names, n);
        return cli_json_print(ctx, arr);
    }
    if (n == 0) {
        cli_info(ctx, "no names");
    } else {
        cli_table *t = cli_table_new(4);
        static const char *const head[] = {"NAME", "ID", "KIND", "SET"};
        cli_table_add(t, head);
        for (size_t i = 0; i < n; i++) {
            char sid[CLI_SHORT_ID + 1], when[32];
            cli_fmt_short_id(sid, names[i].id);
            cli_fmt_time(when, names[i].created);
            const char *row[] = {names[i].name, sid, names[i].kind, when};
            cli_table_add(t, row);
        }
        cli_table_print(t, stdout);
        cli_table_free(t);
    }
    wd_names_free(names, n);
    return cli_finish_stdout(ctx);
}

static int delete_names(cli_ctx *ctx, char **names, int n)
{
    wd_repo *repo;
    int rc = cli_open_repo(ctx, 0, &repo);
    if (rc != CLI_EXIT_OK)
        return rc;
    for (int i = 0; i < n; i++) {
        char id[WD_HEX_SIZE], sid[CLI_SHORT_ID + 1];
        int known = wd_resolve(repo, names[i], id) == WD_OK;
        if ((rc = wd_untag(repo, names[i])) != WD_OK) {
            rc = cli_lib_error(ctx, rc);
            wd_repo_close(repo);
            return rc;
        }
        if (known) {
            cli_fmt_short_id(sid, id);
            cli_info(ctx, "deleted name '%s' (was %s)", names[i], sid);
        }
    }
    wd_repo_close(repo);
    return CLI_EXIT_OK;
}

int cmd_tag(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[MAX_NAMES], id[WD_HEX_SIZE];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    if (delete_flag && list_flag)
        return cli_usage_error(ctx, &spec, "-d and -l cannot go together");
    if (json_flag && (delete_flag || npos > 0))
        return cli_usage_error(ctx, &spec, "--json goes with -l only");
    if (list_flag || (!delete_flag && npos == 0)) {
        if (npos > 0)
            return cli_usage_error(ctx, &spec, "unexpected argument '%s'", pos[0]);
        return list_names(ctx);
    }
    if (delete_flag) {
        if (npos == 0)
            return cli_usage_error(ctx, &spec, "missing argument NAME");
        return delete_names(ctx, pos, npos);
    }
    if (npos < 2)
        return cli_usage_error(ctx, &spec, "missing argument REF");
    if (npos > 2)
        return cli_usage_error(ctx, &spec, "unexpected argument '%s'", pos[2]);
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, 0, &repo)) != CLI_EXIT_OK)
        return rc;
    char was[WD_HEX_SIZE];
    rc = wd_tag_move(repo, pos[0], pos[1], was);
    if (rc != WD_OK) {
        rc = cli_lib_error(ctx, rc);
        wd_repo_close(repo);
        return rc;
    }
    if (wd_resolve(repo, pos[0], id) == WD_OK) {
        char sid[CLI_SHORT_ID + 1];
        cli_fmt_short_id(sid, id);
        if (was[0]) {
            char swas[CLI_SHORT_ID + 1];
            cli_fmt_short_id(swas, was);
            cli_info(ctx, "'%s' -> %s (was %s)", pos[0], sid, swas);
        } else {
            cli_info(ctx, "'%s' -> %s", pos[0], sid);
        }
    }
    wd_repo_close(repo);
    return CLI_EXIT_OK;
}
