/*
 * cmd_diff.c - `wdrepo diff REF_A REF_B [--json] [--exit-code]`: what
 * differs between two stored models, tensor by tensor and file by file.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int json_flag, exit_code_flag;

static const cli_opt opts[] = {
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print one JSON object listing every tensor and file", 0, 0},
    {"exit-code", 0, CLI_OPT_FLAG, &exit_code_flag, NULL,
     "exit 1 when they differ, 0 when not (as git diff --exit-code)", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"REF_A", "REF_B", NULL};

static const cli_spec spec = {
    "diff", "REF_A REF_B [--json] [--exit-code]",
    "Compare the models REF_A and REF_B as checkout would write them. For each\n"
    "tensor that differs: elements changed, the largest |b - a|, and the relative\n"
    "norm of the difference ||b - a|| / ||a|| (values as float32); a dtype or\n"
    "shape change; or a tensor only one side has. Then the files that differ\n"
    "(non-weight files by content, shards by their stored header). Identical\n"
    "entries are not listed (--json lists every one). A summary goes to stderr.\n"
    "Exit 0 whether or not they differ, unless --exit-code.\n",
    opts, args, 2, 2,
};

static const char *status_name(int s)
{
    switch (s) {
    case WD_DIFF_SAME: return "same";
    case WD_DIFF_CHANGED: return "changed";
    case WD_DIFF_RETYPED: return "retyped";
    case WD_DIFF_ONLY_A: return "only_a";
    default: return "only_b";
    }
}

static void fmt_num(char buf[32], double v)
{
    if (isnan(v))
        snprintf(buf, 32, "-");
    else if (isinf(v))
        snprintf(buf, 32, "inf");
    else
        snprintf(buf, 32, "%.4g", v);
}

static void fmt_type(char *buf, size_t size, const char *dtype, int ndim, const uint64_t *shape)
{
    char sh[256];
    cli_fmt_shape(sh, sizeof sh, ndim, shape);
    snprintf(buf, size, "%s %s", dtype, sh);
}

static void json_num(cJSON *o, const char *key, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static int print_json(cli_ctx *ctx, const wd_diff_result *r)
{
    cJSON *j = cJSON_CreateObject();
    if (!j) {
        cli_errorf(ctx, "out of memory");
        return CLI_EXIT_FAIL;
    }
    cJSON_AddStringToObject(j, "a", r->id_a);
    cJSON_AddStringToObject(j, "b", r->id_b);
    cJSON_AddBoolToObject(j, "differ", r->n_differ != 0);
    cJSON *ts = cJSON_AddArrayToObject(j, "tensors");
    for (size_t i = 0; ts && i < r->n_tensors; i++) {
        const wd_diff_tensor *t = &r->tensors[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddItemToArray(ts, o);
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "status", status_name(t->status));
        char sh[512];
        if (t->dtype_a[0]) {
            cJSON_AddStringToObject(o, "dtype_a", t->dtype_a);
            cli_fmt_shape(sh, sizeof sh, t->ndim_a, t->shape_a);
            cJSON_AddRawToObject(o, "shape_a", sh);
        } else {
            cJSON_AddNullToObject(o, "dtype_a");
            cJSON_AddNullToObject(o, "shape_a");
        }
        if (t->dtype_b[0]) {
            cJSON_AddStringToObject(o, "dtype_b", t->dtype_b);
            cli_fmt_shape(sh, sizeof sh, t->ndim_b, t->shape_b);
            cJSON_AddRawToObject(o, "shape_b", sh);
        } else {
            cJSON_AddNullToObject(o, "dtype_b");
            cJSON_AddNullToObject(o, "shape_b");
        }
        if (t->status == WD_DIFF_SAME || t->status == WD_DIFF_CHANGED) {
            cli_json_add_u64(o, "n_elements", t->nelem);
            cli_json_add_u64(o, "n_changed", t->n_changed);
            json_num(o, "max_abs_diff", t->max_abs_diff);
            json_num(o, "rel_norm", t->rel_norm);
        }
    }
    cJSON *fs = cJSON_AddArrayToObject(j, "files");
    for (size_t i = 0; fs && i < r->n_files; i++) {
        const wd_diff_file *f = &r->files[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddItemToArray(fs, o);
        cJSON_AddStringToObject(o, "path", f->path);
        cJSON_AddStringToObject(o, "status", status_name(f->status));
        cJSON_AddBoolToObject(o, "is_shard", f->is_shard);
        if (f->status != WD_DIFF_ONLY_B)
            cli_json_add_u64(o, "size_a", f->size_a);
        else
            cJSON_AddNullToObject(o, "size_a");
        if (f->status != WD_DIFF_ONLY_A)
            cli_json_add_u64(o, "size_b", f->size_b);
        else
            cJSON_AddNullToObject(o, "size_b");
    }
    return cli_json_print(ctx, j);
}

static void print_human(const wd_diff_result *r)
{
    cli_table *t = cli_table_new(5);
    static const char *const head[] = {"TENSOR", "CHANGE", "ELEMENTS", "MAX_DIFF", "REL_NORM"};
    cli_table_right(t, 3);
    cli_table_right(t, 4);
    cli_table_add(t, head);
    size_t rows = 0;
    for (size_t i = 0; i < r->n_tensors; i++) {
        const wd_diff_tensor *d = &r->tensors[i];
        char elems[80] = "", maxd[32] = "", rel[32] = "", change[600];
        switch (d->status) {
        case WD_DIFF_SAME: continue;
        case WD_DIFF_CHANGED:
            snprintf(change, sizeof change, "changed");
            snprintf(elems, sizeof elems, "%llu of %llu", (unsigned long long)d->n_changed,
                     (unsigned long long)d->nelem);
            fmt_num(maxd, d->max_abs_diff);
            fmt_num(rel, d->rel_norm);
            break;
        case WD_DIFF_RETYPED: {
            char ta[280], tb[280];
            fmt_type(ta, sizeof ta, d->dtype_a, d->ndim_a, d->shape_a);
            fmt_type(tb, sizeof tb, d->dtype_b, d->ndim_b, d->shape_b);
            snprintf(change, sizeof change, "%s -> %s", ta, tb);
            break;
        }
        case WD_DIFF_ONLY_A: snprintf(change, sizeof change, "only in A"); break;
        default: snprintf(change, sizeof change, "only in B"); break;
        }
        const char *row[] = {d->name, change, elems, maxd, rel};
        cli_table_add(t, row);
        rows++;
    }
    if (rows)
        cli_table_print(t, stdout);
    cli_table_free(t);

    t = cli_table_new(2);
    static const char *const fhead[] = {"FILE", "CHANGE"};
    cli_table_add(t, fhead);
    size_t frows = 0;
    for (size_t i = 0; i < r->n_files; i++) {
        const wd_diff_file *f = &r->files[i];
        char change[100], sa[32], sb[32];
        cli_fmt_size(sa, f->size_a);
        cli_fmt_size(sb, f->size_b);
        if (f->status == WD_DIFF_SAME)
            continue;
        if (f->status == WD_DIFF_CHANGED && f->is_shard)
            snprintf(change, sizeof change, "header changed (%s -> %s)", sa, sb);
        else if (f->status == WD_DIFF_CHANGED)
            snprintf(change, sizeof change, "changed (%s -> %s)", sa, sb);
        else if (f->status == WD_DIFF_ONLY_A)
            snprintf(change, sizeof change, "only in A (%s)", sa);
        else
            snprintf(change, sizeof change, "only in B (%s)", sb);
        const char *row[] = {f->path, change};
        cli_table_add(t, row);
        frows++;
    }
    if (frows) {
        if (rows)
            putchar('\n');
        cli_table_print(t, stdout);
    }
    cli_table_free(t);
}

int cmd_diff(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[2];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo)) != CLI_EXIT_OK)
        return rc;
    wd_options opt = cli_wd_options(ctx);
    wd_diff_result *r = NULL;
    rc = wd_diff(repo, pos[0], pos[1], &opt, &r);
    cli_progress_clear(ctx);
    wd_repo_close(repo);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    if (json_flag) {
        rc = print_json(ctx, r);
    } else {
        print_human(r);
        rc = cli_finish_stdout(ctx);
    }
    if (rc == CLI_EXIT_OK) {
        size_t dt = 0, df = 0;
        for (size_t i = 0; i < r->n_tensors; i++)
            dt += r->tensors[i].status != WD_DIFF_SAME;
        for (size_t i = 0; i < r->n_files; i++)
            df += r->files[i].status != WD_DIFF_SAME;
        char sa[CLI_SHORT_ID + 1], sb[CLI_SHORT_ID + 1];
        cli_fmt_short_id(sa, r->id_a);
        cli_fmt_short_id(sb, r->id_b);
        cli_info(ctx, "diff %s %s: %zu of %zu tensors and %zu of %zu files differ", sa, sb, dt, r->n_tensors, df,
                 r->n_files);
        if (exit_code_flag && r->n_differ)
            rc = CLI_EXIT_FAIL;
    }
    wd_diff_free(r);
    return rc;
}
