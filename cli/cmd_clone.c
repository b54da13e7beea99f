/*
 * cmd_clone.c - `wdrepo clone URL DIR`: a new repository in DIR with the
 * remote origin = URL, and everything the remote names pulled into it;
 * with --lazy only the objects' metadata, chunks coming on checkout.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    "what it writes (and of what that is built on) and keeps them. DIR must be\n"
    "absent or an empty folder; a clone that fails before anything arrives\n"
    "leaves nothing, a partial one is finished by 'wdrepo -R DIR pull'.\n",
    opts, args, 2, 2,
};

/* 1 if path is a folder with nothing in it. */
static int empty_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    return empty;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    remove(path);
    return 0;
}

/* A clone that failed before anything arrived leaves nothing behind: the
 * repository it made in dir (empty or absent before) goes, and dir too if
 * the clone created it. One that failed later stays, for pull to finish. */
static void remove_clone(const char *dir, int dir_existed)
{
    if (dir_existed) {
        DIR *d = opendir(dir);
        struct dirent *e;
        char path[PATH_MAX];
        while (d && (e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
                nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        if (d)
            closedir(d);
    } else {
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

int cmd_clone(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[2];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    /* Like git: a new folder, or an empty one; never files into a folder
     * that holds something (the repository's files would land among them). */
    struct stat st;
    int existed = stat(pos[1], &st) == 0; /* a link to an empty folder will do */
    if (!existed && lstat(pos[1], &st) == 0) {
        cli_errorf(ctx, "'%s' is a symbolic link to nothing: clone into a new folder", pos[1]);
        return CLI_EXIT_FAIL;
    }
    if (existed && !(S_ISDIR(st.st_mode) && empty_dir(pos[1]))) {
        cli_errorf(ctx, "'%s' exists and is not an empty folder: clone into a new folder", pos[1]);
        return CLI_EXIT_FAIL;
    }
    if ((rc = wd_repo_init(pos[1])) != WD_OK)
        return cli_lib_error(ctx, rc);
    wd_repo *repo;
    if ((rc = wd_repo_open(&repo, pos[1], 0)) != WD_OK) {
        remove_clone(pos[1], existed);
        return cli_lib_error(ctx, rc);
    }
    if ((rc = wd_remote_add(repo, "origin", pos[0], lazy_flag)) != WD_OK) {
        wd_repo_close(repo);
        int out = cli_lib_error(ctx, rc);
        remove_clone(pos[1], existed);
        return out;
    }
    wd_options opt = cli_wd_options(ctx);
    wd_transfer_result r;
    rc = wd_fetch(repo, "origin", NULL, 0, WD_FETCH_NAMES, &opt, &r);
    cli_progress_clear(ctx);
    wd_repo_close(repo);
    int out = CLI_EXIT_OK;
    if (rc == WD_OK || rc == WD_EEXISTS)
        out = cli_transfer_report(ctx, "clone", &r, json_flag);
    if (rc != WD_OK) {
        out = cli_lib_error(ctx, rc);
        if (rc != WD_EEXISTS && !r.objects && !r.chunks)
            remove_clone(pos[1], existed);
        else if (rc != WD_EEXISTS)
            cli_errorf(ctx, "the clone in '%s' is partial: 'wdrepo -R %s pull' finishes it", pos[1], pos[1]);
    }
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
