/*
 * cmd_gc.c - `wdrepo gc`: deletes the chunks no object references (left by
 * rm, or by a command that failed or was killed) and shrinks the database
 * file, so the space shows in `du`. Waits for commands that are writing.
 */
#include "cli.h"

static int dry_run_flag, json_flag, wait_seconds = -1;

static const cli_opt opts[] = {
    {"dry-run", 'n', CLI_OPT_FLAG, &dry_run_flag, NULL, "only report what would be removed", 0, 0},
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print the report as a JSON object", 0, 0},
    {"wait", 0, CLI_OPT_INT, &wait_seconds, "SECONDS",
     "wait at most this long for commands that are writing (default 30; 0: not at all)", 0, 86400},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};

static const cli_spec spec = {
    "gc", "[--dry-run] [--json] [--wait SECONDS]",
    "Delete every chunk no object references (what rm leaves, and what a command\n"
    "that failed or was killed had stored) and give the space back to the file\n"
    "system. gc cannot run beside a command that is writing to the repository: it\n"
    "waits for them (--wait) and keeps new ones waiting meanwhile; readers are\n"
    "never blocked. Reports on stderr (--json: on stdout).\n",
    opts, NULL, 0, 0,
};

int cmd_gc(cli_ctx *ctx, int argc, char **argv)
{
    int npos, rc = cli_parse(ctx, &spec, argc, argv, NULL, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, 0, &repo)) != CLI_EXIT_OK)
        return rc;
    wd_gc_opts o = {dry_run_flag ? WD_GC_DRY_RUN : 0,
                    wait_seconds < 0 ? 0 : wait_seconds == 0 ? -1 : wait_seconds * 1000};
    wd_gc_result r = {0};
    rc = wd_gc(repo, &o, &r);
    wd_repo_close(repo);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);

    uint64_t freed = r.file_bytes_before > r.file_bytes_after ? r.file_bytes_before - r.file_bytes_after : 0;
    char chunks[32], before[32], after[32], freed_s[32], needs[32];
    cli_fmt_size(chunks, r.unreferenced_bytes);
    cli_fmt_size(before, r.file_bytes_before);
    cli_fmt_size(after, r.file_bytes_after);
    cli_fmt_size(freed_s, freed);
    cli_fmt_size(needs, r.compact_needs);
    if (dry_run_flag)
        cli_info(ctx, "would remove %llu of %llu chunks (%s), which no object references",
                 (unsigned long long)r.n_unreferenced, (unsigned long long)r.n_chunks, chunks);
    else
        cli_info(ctx, "removed %llu of %llu chunks (%s); repository %s -> %s, %s freed",
                 (unsigned long long)r.n_unreferenced, (unsigned long long)r.n_chunks, chunks, before, after,
                 freed_s);
    if (r.compacted)
        cli_info(ctx, "note: the database was rewritten once (VACUUM) so that later gc runs shrink it in place");
    if (r.compact_needs)
        cli_info(ctx,
                 "note: the database file did not shrink: this repository predates in-place shrinking and needs "
                 "a one-time rewrite, which needs %s free; free some space and run 'wdrepo gc' again",
                 needs);
    if (r.shrink_pending)
        cli_info(ctx, "note: the file has not shrunk fully yet (readers were using the old pages, or a step "
                      "failed); it does when the last reader ends, or at the next gc");
    if (!json_flag)
        return CLI_EXIT_OK;
    cJSON *j = cJSON_CreateObject();
    if (!j || !cJSON_AddBoolToObject(j, "dry_run", dry_run_flag) ||
        !cJSON_AddBoolToObject(j, "compacted", r.compacted) ||
        !cJSON_AddBoolToObject(j, "shrink_pending", r.shrink_pending)) {
        cJSON_Delete(j);
        cli_errorf(ctx, "out of memory");
        return CLI_EXIT_FAIL;
    }
    cli_json_add_u64(j, "n_chunks", r.n_chunks);
    cli_json_add_u64(j, "n_unreferenced", r.n_unreferenced);
    cli_json_add_u64(j, "unreferenced_bytes", r.unreferenced_bytes);
    cli_json_add_u64(j, "file_bytes_before", r.file_bytes_before);
    cli_json_add_u64(j, "file_bytes_after", r.file_bytes_after);
    cli_json_add_u64(j, "freed_bytes", freed);
    cli_json_add_u64(j, "compact_needs", r.compact_needs);
    return cli_json_print(ctx, j);
}
