/*
 * query.c - read-only views of the repository: log (every object) and
 * inspect (one object with its tensors and files), plus hashing a folder
 * without a repository.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db.h"
#include "error.h"
#include "folder.h"
#include "hash.h"
#include "repo_int.h"
#include "spool.h"

#define OBJECT_COLUMNS                                                                              \
    "o.id, o.kind, o.parent, o.model_hash, o.parent_model_hash, o.strategy, o.options, o.message, " \
    "o.created, o.n_tensors, o.tensor_bytes, o.new_bytes, "                                         \
    "(SELECT coalesce(sum(stored_bytes), 0) FROM tensor t WHERE t.object = o.id), "                 \
    "(SELECT count(*) FROM file f WHERE f.object = o.id), "                                         \
    "(SELECT max(rel_error) FROM tensor t WHERE t.object = o.id)"

static char *dup_text(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    return strdup(s ? s : "");
}

static void hex_col(char out[WD_HEX_SIZE], sqlite3_stmt *st, int col)
{
    if (sqlite3_column_bytes(st, col) == WD_HASH_SIZE)
        wd__hex(out, sqlite3_column_blob(st, col));
    else
        out[0] = '\0';
}

static void object_info_clear(wd_object_info *o)
{
    free(o->strategy);
    free(o->options_json);
    free(o->message);
    for (size_t i = 0; i < o->n_names; i++)
        free(o->names[i]);
    free(o->names);
}

static int load_names(wd_repo *repo, wd_object_info *o, const uint8_t *id)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st, "SELECT name FROM name WHERE object = ?1 ORDER BY name");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    size_t cap = 0;
    int row = 0;
    while (!rc && (row = wd__db_step(repo->db, st, "reading names")) > 0) {
        if (o->n_names == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            char **nn = realloc(o->names, ncap * sizeof *nn);
            if (!nn) {
                rc = WD_NOMEM();
                break;
            }
            o->names = nn;
            cap = ncap;
        }
        if (!(o->names[o->n_names] = dup_text(st, 0)))
            rc = WD_NOMEM();
        else
            o->n_names++;
    }
    if (!rc && row < 0)
        rc = row;
    sqlite3_finalize(st);
    return rc;
}

static int fill_object(wd_repo *repo, sqlite3_stmt *st, wd_object_info *o)
{
    memset(o, 0, sizeof *o);
    hex_col(o->id, st, 0);
    snprintf(o->kind, sizeof o->kind, "%s", (const char *)sqlite3_column_text(st, 1));
    hex_col(o->parent, st, 2);
    hex_col(o->model_hash, st, 3);
    hex_col(o->parent_model_hash, st, 4);
    o->strategy = dup_text(st, 5);
    o->options_json = dup_text(st, 6);
    o->message = dup_text(st, 7);
    o->created = sqlite3_column_int64(st, 8);
    o->n_tensors = (uint64_t)sqlite3_column_int64(st, 9);
    o->tensor_bytes = (uint64_t)sqlite3_column_int64(st, 10);
    o->new_bytes = (uint64_t)sqlite3_column_int64(st, 11);
    o->stored_bytes = (uint64_t)sqlite3_column_int64(st, 12);
    o->n_files = (uint64_t)sqlite3_column_int64(st, 13);
    o->max_rel_error = sqlite3_column_type(st, 14) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 14);
    if (!o->strategy || !o->options_json || !o->message)
        return WD_NOMEM();
    return load_names(repo, o, sqlite3_column_blob(st, 0));
}

int wd_log(wd_repo *repo, wd_object_info **out, size_t *out_count)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st,
                            "SELECT " OBJECT_COLUMNS " FROM object o ORDER BY o.created DESC, o.rowid DESC");
    if (rc)
        return rc;
    wd_object_info *objs = NULL;
    size_t n = 0, cap = 0;
    int row = 0;
    while (!rc && (row = wd__db_step(repo->db, st, "reading log")) > 0) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            wd_object_info *no = realloc(objs, ncap * sizeof *no);
            if (!no) {
                rc = WD_NOMEM();
                break;
            }
            objs = no;
            cap = ncap;
        }
        rc = fill_object(repo, st, &objs[n]);
        n++;
    }
    if (!rc && row < 0)
        rc = row;
    sqlite3_finalize(st);
    if (rc) {
        wd_log_free(objs, n);
        return rc;
    }
    *out = objs;
    *out_count = n;
    return 0;
}

void wd_log_free(wd_object_info *objs, size_t count)
{
    for (size_t i = 0; objs && i < count; i++)
        object_info_clear(&objs[i]);
    free(objs);
}

void wd_inspect_free(wd_inspect_info *info)
{
    if (!info)
        return;
    object_info_clear(&info->obj);
    for (size_t i = 0; i < info->n_tensors; i++) {
        free(info->tensors[i].name);
        free(info->tensors[i].file);
        free(info->tensors[i].encoding);
    }
    free(info->tensors);
    for (size_t i = 0; i < info->n_files; i++)
        free(info->files[i].path);
    free(info->files);
    free(info);
}

int wd_inspect(wd_repo *repo, const char *ref, wd_inspect_info **out)
{
    uint8_t id[WD_HASH_SIZE];
    int rc = wd__resolve(repo, ref, id);
    if (rc)
        return rc;
    wd_inspect_info *info = calloc(1, sizeof *info);
    if (!info)
        return WD_NOMEM();
    sqlite3_stmt *st = NULL;
    if ((rc = wd__db_prepare(repo->db, &st, "SELECT " OBJECT_COLUMNS " FROM object o WHERE o.id = ?1")))
        goto fail;
    wd__bind_hash(st, 1, id);
    int row = wd__db_step(repo->db, st, "reading object");
    if (row <= 0) {
        rc = row < 0 ? row : wd__error(WD_ENOTFOUND, "object vanished while reading");
        goto fail;
    }
    if ((rc = fill_object(repo, st, &info->obj)))
        goto fail;
    sqlite3_finalize(st);

    /* Tensors and files: reuse the object loader (it validates rows). */
    wd_object *obj;
    if ((rc = wd__object_load(repo, id, &obj))) {
        st = NULL;
        goto fail;
    }
    info->tensors = calloc(obj->n_tensors ? obj->n_tensors : 1, sizeof *info->tensors);
    info->files = calloc(obj->n_files ? obj->n_files : 1, sizeof *info->files);
    if (!info->tensors || !info->files)
        rc = WD_NOMEM();
    for (size_t i = 0; !rc && i < obj->n_tensors; i++) {
        const wd_stored_tensor *t = &obj->tensors[i];
        wd_tensor_info *ti = &info->tensors[info->n_tensors++];
        ti->name = strdup(t->name);
        ti->file = strdup(t->file);
        ti->encoding = strdup(t->encoding);
        if (!ti->name || !ti->file || !ti->encoding)
            rc = WD_NOMEM();
        snprintf(ti->dtype, sizeof ti->dtype, "%s", wd__dtype_name(t->dtype));
        ti->ndim = t->ndim;
        memcpy(ti->shape, t->shape, sizeof t->shape);
        ti->nbytes = t->nbytes;
        ti->n_chunks = t->n_chunks;
        ti->stored_bytes = t->stored_bytes;
        ti->rel_error = isnan(t->rel_error) ? 0 : t->rel_error;
        ti->max_abs_error = isnan(t->max_abs_error) ? 0 : t->max_abs_error;
    }
    for (size_t i = 0; !rc && i < obj->n_files; i++) {
        wd_file_info *fi = &info->files[info->n_files++];
        if (!(fi->path = strdup(obj->files[i].path)))
            rc = WD_NOMEM();
        fi->is_shard = obj->files[i].is_shard;
        fi->size = obj->files[i].size;
    }
    wd__object_free(obj);
    if (rc) {
        st = NULL;
        goto fail;
    }
    *out = info;
    return 0;
fail:
    sqlite3_finalize(st);
    wd_inspect_free(info);
    return rc;
}

int wd_model_hash(const char *dir, const wd_options *opt, char out[WD_HEX_SIZE])
{
    (void)opt;
    wd_folder *f = NULL;
    /* A file (or standard input) is the model of a folder holding just
     * that file: the hash covers tensors only, whatever their file. */
    struct stat sb;
    wd__temp spool = {.fd = -1, .slot = -1};
    int rc = 0;
    if (wd__is_stdin(dir)) {
        if (!(rc = wd__spool_stdin(&spool, NULL)))
            rc = wd__spool_error(&spool, wd__folder_open_file(&f, spool.path));
        wd__temp_discard(&spool); /* the open shard stays readable */
    } else if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        rc = wd__folder_open_file(&f, dir);
    } else {
        rc = wd__folder_open(&f, dir);
    }
    if (rc)
        return rc;
    uint8_t h[WD_HASH_SIZE];
    rc = wd__folder_hash(f, h);
    if (!rc)
        wd__hex(out, h);
    wd__folder_close(f);
    return rc;
}
