/*
 * cmd_checkout.c - `wdrepo checkout REF OUT_DIR`: writes a stored base or
 * delta back as a model folder (the library builds it beside OUT_DIR,
 * renames it into place and verifies it against the recorded hash).
 */
#include "cli.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

static int force_flag;
static const char *dtype_opt;
static const char *only_last; /* only for the help and a missing value: take_only collects the globs */

static const cli_opt opts[] = {
    {"force", 'f', CLI_OPT_FLAG, &force_flag, NULL, "replace a non-empty OUT_DIR", 0, 0},
    {"dtype", 0, CLI_OPT_STR, &dtype_opt, "T",
     "write floating-point tensors as float32|bfloat16|float16 (default: each tensor's own dtype)", 0, 0},
    {"only", 0, CLI_OPT_STR, &only_last, "GLOB",
     "write only the files matching GLOB (repeatable; fnmatch, e.g. 'tokenizer*')", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"REF", "OUT_DIR", NULL};

static const cli_spec spec = {
    "checkout", "REF OUT_DIR [--force] [--dtype float32|bfloat16|float16] [--only GLOB]...",
    "Write the model REF names (a full id, a unique hex prefix of 4+ digits, or a\n"
    "name) into OUT_DIR: same shard files, tensor order, dtypes, metadata and other\n"
    "files as the folder that was stored; for lossless objects every file is\n"
    "byte-identical. The written weights are verified against the recorded model\n"
    "hash. OUT_DIR must be absent or empty unless --force, and is never the\n"
    "repository, the current directory or a folder holding them. On failure or\n"
    "interruption nothing is left behind. Prints nothing on stdout.\n"
    "--only GLOB (repeatable) writes the files matching any GLOB; the model hash\n"
    "is then checked only if every shard is written, else each file is checked\n"
    "against its stored chunk ids. --dtype also rewrites config.json's\n"
    "torch_dtype and the index's total_size; such weights cannot be checked\n"
    "against the model hash.\n",
    opts, args, 2, 2,
};

/* The option parser keeps one value an option; --only may come many
 * times, so its values are taken out of argv first (up to "--"). argv is
 * compacted in place; returns the new argc. A trailing "--only" without a
 * value stays for the parser to report. */
static int take_only(int argc, char **argv, const char **globs, size_t *n)
{
    int out = 1;
    *n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            while (i < argc)
                argv[out++] = argv[i++];
            break;
        }
        if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            globs[(*n)++] = argv[++i];
            continue;
        }
        if (!strncmp(argv[i], "--only=", 7)) {
            globs[(*n)++] = argv[i] + 7;
            continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    return out;
}

/* The first of globs that matches no file of ref, or NULL (also when ref
 * cannot be read: checkout then says why). */
static const char *unmatched_glob(wd_repo *repo, const char *ref, const char **globs, size_t n)
{
    wd_inspect_info *info = NULL;
    if (!n || wd_inspect(repo, ref, &info) != WD_OK)
        return NULL;
    const char *missing = NULL;
    for (size_t g = 0; !missing && g < n; g++) {
        int hit = 0;
        for (size_t i = 0; !hit && i < info->n_files; i++)
            hit = fnmatch(globs[g], info->files[i].path, 0) == 0;
        if (!hit)
            missing = globs[g];
    }
    wd_inspect_free(info);
    return missing;
}

int cmd_checkout(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[2];
    const char **globs = cli_xmalloc((size_t)argc * sizeof *globs);
    size_t n_globs = 0;
    argc = take_only(argc, argv, globs, &n_globs);
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE) {
        free(globs);
        return rc;
    }
    wd_out_dtype out_dtype;
    if ((rc = cli_out_dtype(ctx, &spec, dtype_opt, &out_dtype)) != CLI_CONTINUE) {
        free(globs);
        return rc;
    }
    wd_repo *repo;
    /* A lazy clone fetches the chunks this checkout needs first (issue 10). */
    if ((rc = cli_remote_hydrate(ctx, pos[0])) != CLI_EXIT_OK) {
        free(globs);
        return rc;
    }
    if ((rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo)) != CLI_EXIT_OK) {
        free(globs);
        return rc;
    }
    /* A glob that matches nothing is a usage error (exit 2), said before
     * any work; the library refuses it too, but its WD_EUSAGE also covers
     * a bad REF, which is not. */
    const char *missing = unmatched_glob(repo, pos[0], globs, n_globs);
    if (missing) {
        wd_repo_close(repo);
        rc = cli_usage_error(ctx, &spec, "--only '%s' matches no file of '%s' ('wdrepo inspect %s' lists them)",
                             missing, pos[0], pos[0]);
        free(globs);
        return rc;
    }
    wd_options opt = cli_wd_options(ctx);
    wd_checkout_opts co;
    memset(&co, 0, sizeof co);
    co.only = globs;
    co.n_only = n_globs;
    co.out_dtype = (wd_out_dtype)out_dtype;
    rc = wd_checkout_ex(repo, pos[0], pos[1], force_flag ? WD_CHECKOUT_FORCE : 0, &co, &opt);
    cli_progress_clear(ctx);
    free(globs);
    if (rc != WD_OK) {
        rc = cli_lib_error(ctx, rc);
        wd_repo_close(repo);
        return rc;
    }
    wd_inspect_info *info = NULL;
    if (!ctx->quiet && wd_inspect(repo, pos[0], &info) == WD_OK) {
        char sid[CLI_SHORT_ID + 1], raw[32], files[64];
        cli_fmt_short_id(sid, info->obj.id);
        cli_fmt_size(raw, co.weight_bytes);
        if (co.n_files == co.n_files_total)
            snprintf(files, sizeof files, "%zu files", co.n_files);
        else
            snprintf(files, sizeof files, "%zu of %zu files", co.n_files, co.n_files_total);
        const char *how = co.verified == WD_VERIFIED_MODEL_HASH ? "verified"
                          : co.out_dtype != WD_OUT_ORIGINAL
                              ? "not verifiable against the model hash (each chunk checked against its id)"
                              : "each file checked against its stored chunk ids (not all shards written: "
                                "the model hash was not checked)";
        if (co.out_dtype != WD_OUT_ORIGINAL)
            cli_info(ctx, "checked out %s %s into '%s': %s, %llu tensors, %s of weights written as %s, %s",
                     info->obj.kind, sid, pos[1], files, (unsigned long long)co.n_tensors, raw,
                     co.out_dtype == WD_OUT_FLOAT32 ? "float32" : co.out_dtype == WD_OUT_BFLOAT16 ? "bfloat16" : "float16",
                     how);
        else
            cli_info(ctx, "checked out %s %s into '%s': %s, %llu tensors, %s of weights, %s", info->obj.kind, sid,
                     pos[1], files, (unsigned long long)co.n_tensors, raw, how);
    } else {
        cli_info(ctx, "checked out '%s' into '%s'", pos[0], pos[1]);
    }
    wd_inspect_free(info);
    wd_repo_close(repo);
    return CLI_EXIT_OK;
}
