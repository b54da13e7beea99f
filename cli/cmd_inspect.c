/*
 * cmd_inspect.c - `wdrepo inspect REF|FILE.wdelta`: one object in detail, as a
 * header and tensor/file tables, or as JSON carrying the deltatensors inspect()
 * fields plus everything the repository knows; or a .wdelta file, read without
 * a repository.
 */
#include "cli.h"

#include <errno.h>

#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

static int json_flag;

static const cli_opt opts[] = {
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print the object as JSON", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"REF|FILE.wdelta", NULL};

static const cli_spec spec = {
    "inspect", "REF|FILE.wdelta [--json]",
    "Show the object REF names (a full id, a unique hex prefix of 4+ digits, or a\n"
    "name): its id, kind, parent, model hash, strategy, time, message, names and\n"
    "sizes, then every tensor (dtype, shape, size, stored size, encoding, error for\n"
    "lossy strategies) and every file of the folder. An existing FILE.wdelta ('-':\n"
    "standard input) is read without a repository: deltatensors' inspect() fields\n"
    "(path, size_mb, version, parent_hash, strategy, n_tensors, tensors) and each\n"
    "tensor's options and arrays.\n",
    opts, args, 1, 1,
};

/* ---- where the object comes from ---------------------------------------- */

/* A REF that names an existing *.wdelta file is read without a repository
 * (SPEC section 2). A name could end in ".wdelta" too, so the file has to
 * exist to win. */
static int is_wdelta_file(const char *arg)
{
    size_t n = strlen(arg);
    struct stat st;
    if (!strcmp(arg, "-")) /* standard input: a .wdelta file (names never start with '-') */
        return 1;
    return n > 7 && strcmp(arg + n - 7, ".wdelta") == 0 && stat(arg, &st) == 0 &&
           S_ISREG(st.st_mode);
}

/* ---- a .wdelta file ------------------------------------------------------ */

/* deltatensors' inspect() fields (path, size_mb, version, parent_hash,
 * strategy, n_tensors, tensors {name: {shape, dtype}}), each tensor with its
 * strategy, options and arrays besides, and the exact size in bytes. */
static cJSON *file_json(const wd_wdelta_info *info)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", info->path);
    cJSON_AddNumberToObject(j, "size_mb", info->size_mb);
    cli_json_add_u64(j, "size", info->size);
    cJSON_AddNumberToObject(j, "version", info->version);
    cJSON_AddStringToObject(j, "parent_hash", info->parent_hash);
    cJSON_AddStringToObject(j, "strategy", info->strategy);
    cli_json_add_u64(j, "n_tensors", info->n_tensors);
    cJSON *tensors = cJSON_AddObjectToObject(j, "tensors");
    for (size_t i = 0; tensors && i < info->n_tensors; i++) {
        const wd_wdelta_tensor_info *t = &info->tensors[i];
        cJSON *tj = cJSON_CreateObject();
        if (!tj)
            break;
        cJSON *shape = cJSON_AddArrayToObject(tj, "shape");
        for (int d = 0; shape && d < t->ndim && d < WD_MAX_DIMS; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddStringToObject(tj, "dtype", t->dtype);
        cJSON_AddStringToObject(tj, "strategy", t->strategy);
        cJSON_AddStringToObject(tj, "delta_dtype", t->delta_dtype);
        if (t->base_dtype[0])
            cJSON_AddStringToObject(tj, "base_dtype", t->base_dtype);
        cJSON *o = cJSON_Parse(t->options_json ? t->options_json : "{}");
        cJSON_AddItemToObject(tj, "options", o ? o : cJSON_CreateObject());
        cli_json_add_u64(tj, "nbytes", t->nbytes);
        cJSON *arrays = cJSON_AddObjectToObject(tj, "arrays");
        for (size_t k = 0; arrays && k < t->n_arrays; k++) {
            cJSON *aj = cJSON_CreateObject();
            if (!aj)
                break;
            cJSON_AddStringToObject(aj, "dtype", t->arrays[k].dtype);
            cli_json_add_u64(aj, "count", t->arrays[k].count);
            cli_json_add_u64(aj, "bytes", t->arrays[k].nbytes);
            cJSON_AddItemToObject(arrays, t->arrays[k].field, aj);
        }
        cJSON_AddItemToObject(tensors, t->name, tj);
    }
    return j;
}

static void print_file(const wd_wdelta_info *info)
{
    char buf[128], size[32];
    cli_table *t = cli_table_new(2);
    const char *kv[2];
    kv[0] = "path", kv[1] = info->path;
    cli_table_add(t, kv);
    snprintf(buf, sizeof buf, "%d", info->version);
    kv[0] = "format", kv[1] = buf;
    cli_table_add(t, kv);
    kv[0] = "strategy", kv[1] = info->strategy;
    cli_table_add(t, kv);
    kv[0] = "parent hash", kv[1] = info->parent_hash;
    cli_table_add(t, kv);
    cli_fmt_size(size, info->size);
    snprintf(buf, sizeof buf, "%s (%llu bytes)", size, (unsigned long long)info->size);
    kv[0] = "size", kv[1] = buf;
    cli_table_add(t, kv);
    cli_table_print(t, stdout);
    cli_table_free(t);
    if (!info->n_tensors)
        return;
    putchar('\n');
    t = cli_table_new(6);
    const char *head[6] = {"TENSOR", "DTYPE", "SHAPE", "STRATEGY", "STORED", "OPTIONS"};
    cli_table_right(t, 4);
    cli_table_add(t, head);
    for (size_t i = 0; i < info->n_tensors; i++) {
        const wd_wdelta_tensor_info *ti = &info->tensors[i];
        char shape[16 * 22 + 4];
        cli_fmt_shape(shape, sizeof shape, ti->ndim, ti->shape);
        char options[256];
        cli_fmt_size(size, ti->nbytes);
        cli_fmt_options(options, sizeof options, ti->options_json);
        const char *cells[6] = {ti->name, ti->dtype, shape, ti->strategy, size, options};
        cli_table_add(t, cells);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
}

/* A .wdelta file needs no repository; it has its own rendering, as it
 * carries what deltatensors knows rather than what a repository stores. */
static int inspect_file(cli_ctx *ctx, const char *path)
{
    wd_wdelta_info *info;
    int rc = wd_inspect_file(&info, path);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    if (json_flag) {
        rc = cli_json_print(ctx, file_json(info));
    } else {
        print_file(info);
        rc = cli_finish_stdout(ctx);
    }
    wd_inspect_file_free(info);
    return rc;
}

static int load_from_repo(cli_ctx *ctx, const char *ref, wd_inspect_info **out)
{
    wd_repo *repo;
    int rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = wd_inspect(repo, ref, out);
    if (rc != WD_OK)
        rc = cli_lib_error(ctx, rc);
    wd_repo_close(repo);
    return rc;
}

/* ---- rendering ---------------------------------------------------------- */

static int is_lossy(const wd_inspect_info *info)
{
    const char *s = info->obj.strategy ? info->obj.strategy : "";
    if (strcmp(s, "base") != 0 && strcmp(s, "lossless") != 0)
        return 1;
    for (size_t i = 0; i < info->n_tensors; i++)
        if (info->tensors[i].rel_error != 0.0 || info->tensors[i].max_abs_error != 0.0)
            return 1;
    return 0;
}

static cJSON *to_json(const wd_inspect_info *info, const char *path)
{
    const wd_object_info *o = &info->obj;
    cJSON *j = cli_json_object_info(o);
    if (path)
        cJSON_AddStringToObject(j, "path", path);
    /* deltatensors inspect(): size_mb is the stored size in 10^6 bytes,
     * parent_hash the model hash of the parent (null for a base). */
    cJSON_AddNumberToObject(j, "size_mb", (double)o->stored_bytes / 1e6);
    if (o->parent_model_hash[0])
        cJSON_AddStringToObject(j, "parent_hash", o->parent_model_hash);
    else
        cJSON_AddNullToObject(j, "parent_hash");

    cJSON *tensors = cJSON_AddObjectToObject(j, "tensors");
    for (size_t i = 0; tensors && i < info->n_tensors; i++) {
        const wd_tensor_info *t = &info->tensors[i];
        cJSON *tj = cJSON_CreateObject();
        if (!tj)
            break;
        cJSON *shape = cJSON_AddArrayToObject(tj, "shape");
        for (int d = 0; shape && d < t->ndim && d < WD_MAX_DIMS; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddStringToObject(tj, "dtype", t->dtype);
        cli_json_add_u64(tj, "nbytes", t->nbytes);
        cJSON_AddStringToObject(tj, "file", t->file ? t->file : "");
        cJSON_AddStringToObject(tj, "encoding", t->encoding ? t->encoding : "");
        cli_json_add_u64(tj, "n_chunks", t->n_chunks);
        cli_json_add_u64(tj, "stored_bytes", t->stored_bytes);
        cJSON_AddNumberToObject(tj, "rel_error", t->rel_error);
        cJSON_AddNumberToObject(tj, "max_abs_error", t->max_abs_error);
        cJSON_AddItemToObject(tensors, t->name, tj);
    }
    cJSON *files = cJSON_AddArrayToObject(j, "files");
    for (size_t i = 0; files && i < info->n_files; i++) {
        const wd_file_info *f = &info->files[i];
        cJSON *fj = cJSON_CreateObject();
        if (!fj)
            break;
        cJSON_AddStringToObject(fj, "path", f->path);
        cli_json_add_u64(fj, "size", f->size);
        cJSON_AddBoolToObject(fj, "is_shard", f->is_shard != 0);
        cJSON_AddItemToArray(files, fj);
    }
    return j;
}

static void add_kv(cli_table *t, const char *key, const char *value)
{
    const char *cells[2] = {key, value};
    cli_table_add(t, cells);
}

static void print_header(const wd_inspect_info *info, const char *path)
{
    const wd_object_info *o = &info->obj;
    char buf[1024], a[32], b[32], c[32];
    cli_table *t = cli_table_new(2);

    if (path)
        add_kv(t, "path", path);
    add_kv(t, "id", o->id);
    add_kv(t, "kind", o->kind);
    if (o->parent[0])
        add_kv(t, "parent", o->parent);
    add_kv(t, "model hash", o->model_hash);
    if (o->parent_model_hash[0])
        add_kv(t, "parent hash", o->parent_model_hash);
    add_kv(t, "strategy", o->strategy ? o->strategy : "");
    if (o->options_json && strcmp(o->options_json, "{}") != 0) {
        cli_fmt_options(buf, sizeof buf, o->options_json);
        add_kv(t, "options", buf);
    }
    cli_fmt_time(a, o->created);
    add_kv(t, "created", a);
    if (o->message && *o->message)
        add_kv(t, "message", o->message);
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < o->n_names && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? ", " : "", o->names[i]);
    add_kv(t, "names", o->n_names ? buf : "-");
    snprintf(buf, sizeof buf, "%" PRIu64, o->n_tensors);
    add_kv(t, "tensors", buf);
    snprintf(buf, sizeof buf, "%" PRIu64, o->n_files);
    add_kv(t, "files", buf);
    cli_fmt_size(a, o->tensor_bytes);
    snprintf(buf, sizeof buf, "%s (%" PRIu64 " bytes)", a, o->tensor_bytes);
    add_kv(t, "raw size", buf);
    cli_fmt_size(a, o->stored_bytes);
    cli_fmt_ratio(b, o->tensor_bytes, o->stored_bytes);
    snprintf(buf, sizeof buf, "%s (%" PRIu64 " bytes), ratio %s", a, o->stored_bytes, b);
    add_kv(t, "stored", buf);
    cli_fmt_size(c, o->new_bytes);
    snprintf(buf, sizeof buf, "%s (%" PRIu64 " bytes)", c, o->new_bytes);
    add_kv(t, "new when stored", buf);
    cli_table_print(t, stdout);
    cli_table_free(t);
}

enum { T_NAME, T_DTYPE, T_SHAPE, T_SIZE, T_STORED, T_RATIO, T_ENCODING, T_FILE, T_REL, T_MAXABS,
       T_COLS };

static void print_tensors(const wd_inspect_info *info)
{
    int lossy = is_lossy(info);
    cli_table *t = cli_table_new(T_COLS);
    const char *head[T_COLS] = {"TENSOR", "DTYPE", "SHAPE", "SIZE", "STORED", "RATIO",
                                "ENCODING", "FILE", lossy ? "REL_ERR" : "",
                                lossy ? "MAX_ABS_ERR" : ""};
    cli_table_right(t, T_SIZE);
    cli_table_right(t, T_STORED);
    cli_table_right(t, T_RATIO);
    cli_table_add(t, head);
    for (size_t i = 0; i < info->n_tensors; i++) {
        const wd_tensor_info *ti = &info->tensors[i];
        char shape[16 * 22 + 4], size[32], stored[32], ratio[32], rel[32] = "", mx[32] = "";
        cli_fmt_shape(shape, sizeof shape, ti->ndim, ti->shape);
        cli_fmt_size(size, ti->nbytes);
        cli_fmt_size(stored, ti->stored_bytes);
        cli_fmt_ratio(ratio, ti->nbytes, ti->stored_bytes);
        if (lossy) {
            snprintf(rel, sizeof rel, "%.3g", ti->rel_error);
            snprintf(mx, sizeof mx, "%.3g", ti->max_abs_error);
        }
        const char *cells[T_COLS] = {ti->name, ti->dtype, shape, size, stored, ratio,
                                     ti->encoding ? ti->encoding : "", ti->file ? ti->file : "",
                                     rel, mx};
        cli_table_add(t, cells);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
}

static void print_files(const wd_inspect_info *info)
{
    cli_table *t = cli_table_new(3);
    const char *head[3] = {"FILE", "SIZE", "KIND"};
    cli_table_right(t, 1);
    cli_table_add(t, head);
    for (size_t i = 0; i < info->n_files; i++) {
        char size[32];
        cli_fmt_size(size, info->files[i].size);
        const char *cells[3] = {info->files[i].path, size,
                                info->files[i].is_shard ? "shard" : "file"};
        cli_table_add(t, cells);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
}

static void print_human(const wd_inspect_info *info, const char *path)
{
    print_header(info, path);
    if (info->n_tensors) {
        putchar('\n');
        print_tensors(info);
    }
    if (info->n_files) {
        putchar('\n');
        print_files(info);
    }
}

int cmd_inspect(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    if (is_wdelta_file(pos[0]))
        return inspect_file(ctx, pos[0]);
    /* "x.wdelta" that is no file is a mistyped path, not an unknown name */
    size_t len = strlen(pos[0]);
    struct stat st;
    if (len > 7 && strcmp(pos[0] + len - 7, ".wdelta") == 0) {
        if (stat(pos[0], &st) != 0)
            cli_errorf(ctx, "cannot read '%s': %s", pos[0], strerror(errno));
        else
            cli_errorf(ctx, "cannot read '%s': not a regular file", pos[0]);
        return CLI_EXIT_FAIL;
    }
    wd_inspect_info *info = NULL;
    rc = load_from_repo(ctx, pos[0], &info);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (json_flag) {
        rc = cli_json_print(ctx, to_json(info, NULL));
    } else {
        print_human(info, NULL);
        rc = cli_finish_stdout(ctx);
    }
    wd_inspect_free(info);
    return rc;
}
