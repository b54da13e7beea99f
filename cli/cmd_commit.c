/*
 * cmd_commit.c - `wdrepo commit FT_DIR --on REF`: stores a fine-tune folder
 * as a delta against a base or an earlier delta and prints the delta id.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *on_opt, *message_opt, *name_opt, *exclude_dummy;
static cli_strategy_args strategy_args;
static int json_flag;

static const cli_opt opts[] = {
    {"on", 0, CLI_OPT_STR, &on_opt, "REF", "parent: a base or an earlier delta (required)", 0, 0},
    CLI_STRATEGY_OPTS(strategy_args, "how to encode the delta (default lossless)"),
    CLI_QUALITY_OPT(strategy_args),
    {"message", 'm', CLI_OPT_STR, &message_opt, "MSG", "a message kept with the delta", 0, 0},
    {"name", 0, CLI_OPT_STR, &name_opt, "N", "attach name N to the delta", 0, 0},
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print the result as a JSON object", 0, 0},
    CLI_EXCLUDE_OPT(exclude_dummy),
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"FT_DIR", NULL};

static const cli_spec spec = {
    "commit", "FT_DIR --on REF [--strategy S] [--sparsity X] [--outlier-fraction X] [--quality Q] [-m MSG] [--name N] [--exclude GLOB]... [--json]",
    "Store the fine-tune folder FT_DIR as a delta against REF (a base, or a delta:\n"
    "then against that delta's reconstruction, forming a chain) and print the delta\n"
    "id on stdout. Committing the same thing twice yields the same id and stores\n"
    "nothing new. Strategies: lossless (default; every file comes back\n"
    "byte-identical), and deltatensors' lossy ones: sparse (top 1-X of |delta|),\n"
    "quantized (1-bit sign and a float16 scale per row), int4 (4-bit codes with\n"
    "float16 outliers); and wdrepo's own lossy lowbit (the smallest fine-tunes:\n"
    "a uniform step per tensor set by --quality, entropy-coded codes; not\n"
    "exportable as is). Lossy deltas record each tensor's reconstruction error.\n"
    "When more than half of REF's tensors are missing from FT_DIR or reshaped,\n"
    "a warning asks whether REF is the right parent (printed even with -q).\n"
    "Subfolders and --exclude: as for add-base.\n",
    opts, args, 1, 1,
};

/* A fine-tune that lacks, or has in another shape, more than half of the
 * parent's tensors was most likely committed on the wrong parent: the
 * delta then costs about a whole model. Like git's warnings it is printed
 * under -q too, as -q silences what goes well, not what may be a mistake. */
static void warn_wrong_parent(cli_ctx *ctx, const wd_write_result *r)
{
    uint64_t off = r->n_dropped + r->n_reshaped;
    if (!r->n_parent_tensors || off * 2 <= r->n_parent_tensors)
        return;
    cli_progress_clear(ctx);
    fprintf(stderr,
            "wdrepo: warning: %llu of the %llu tensors of '%s' are not in the fine-tune and %llu have another "
            "shape or dtype (%llu tensors stored whole): is --on the right parent?\n",
            (unsigned long long)r->n_dropped, (unsigned long long)r->n_parent_tensors, on_opt,
            (unsigned long long)r->n_reshaped, (unsigned long long)r->n_whole);
}

static int cmd_commit_run(cli_ctx *ctx, int argc, char **argv, const char *const *exclude, size_t n_exclude);

int cmd_commit(cli_ctx *ctx, int argc, char **argv)
{
    const char **exclude;
    size_t n_exclude;
    int rc = cli_take_excludes(ctx, &spec, &argc, argv, &exclude, &n_exclude);
    if (rc != CLI_CONTINUE)
        return rc;
    rc = cmd_commit_run(ctx, argc, argv, exclude, n_exclude);
    free(exclude);
    return rc;
}

static int cmd_commit_run(cli_ctx *ctx, int argc, char **argv, const char *const *exclude, size_t n_exclude)
{
    char *pos[1];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    if (!on_opt)
        return cli_usage_error(ctx, &spec, "missing option --on REF");
    if (!*on_opt)
        return cli_usage_error(ctx, &spec, "empty value for option '--on'");
    wd_strategy_opts so;
    if ((rc = cli_strategy_opts(ctx, &spec, &strategy_args, "lossless", 0, &so)) != CLI_CONTINUE)
        return rc;
    const char *strategy = so.strategy ? so.strategy : "lossless";

    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, 0, &repo)) != CLI_EXIT_OK)
        return rc;
    wd_options opt = cli_wd_options(ctx);
    wd_commit_opts copt = {.strategy = strategy, .message = message_opt, .name = name_opt,
                           .sparsity = so.sparsity, .outlier_fraction = so.outlier_fraction,
                           .set = so.set, .exclude = exclude, .n_exclude = n_exclude, .quality = so.quality};
    wd_write_result res = {0};
    rc = wd_commit(repo, pos[0], on_opt, &copt, &opt, &res);
    cli_progress_clear(ctx);
    if (rc != WD_OK) {
        rc = cli_lib_error(ctx, rc);
        wd_repo_close(repo);
        return rc;
    }
    /* Only for the summary and --json; the commit itself already succeeded. */
    char parent[WD_HEX_SIZE] = "";
    if (wd_resolve(repo, on_opt, parent) != WD_OK)
        parent[0] = '\0';
    wd_repo_close(repo);

    char sizes[256], sid[CLI_SHORT_ID + 1], spid[CLI_SHORT_ID + 1];
    cli_fmt_write_sizes(sizes, sizeof sizes, &res);
    cli_fmt_short_id(sid, res.id);
    cli_fmt_short_id(spid, parent[0] ? parent : on_opt);
    char named[256];
    cli_fmt_name(named, sizeof named, name_opt, res.name_was);
    if (res.already_present)
        cli_info(ctx, "delta %s%s on %s (%s) already stored: %s", sid, res.name_was[0] ? named : "",
                 spid, strategy, sizes);
    else
        cli_info(ctx, "committed delta %s%s on %s (%s): %s", sid, named, spid, strategy, sizes);
    cli_info(ctx, "  %llu unchanged, %llu encoded, %llu whole, %llu dropped",
             (unsigned long long)res.n_unchanged, (unsigned long long)res.n_encoded,
             (unsigned long long)res.n_whole, (unsigned long long)res.n_dropped);
    warn_wrong_parent(ctx, &res);
    if (json_flag) {
        cJSON *j = cli_json_write_result(&res, "delta");
        if (parent[0])
            cJSON_AddStringToObject(j, "parent", parent);
        else
            cJSON_AddNullToObject(j, "parent");
        cJSON_AddStringToObject(j, "strategy", strategy);
        return cli_json_print(ctx, j);
    }
    printf("%s\n", res.id);
    return cli_finish_stdout(ctx);
}
