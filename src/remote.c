/*
 * remote.c - the repository's remotes: the file "remotes" in the repository
 * folder (one "NAME<TAB>URL<TAB>lazy|-" line each; credentials never go
 * there), connecting to one, and small helpers push and fetch share.
 */
#include "remote.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "error.h"
#include "hash.h"
#include "outdir.h"

#define REMOTES_FILE "remotes"
/* A line of the remotes file: a name of <= 64 bytes and a URL of < 1 KiB. */
#define LINE_MAX_LEN 1200
#define MAX_REMOTES 256

static int name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '-' || name[0] == '.')
        return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
            return 0;
    return 1;
}

static void remotes_path(wd_repo *repo, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", repo->dir, REMOTES_FILE);
}

void wd_remote_list_free(wd_remote_info *remotes, size_t count)
{
    for (size_t i = 0; remotes && i < count; i++) {
        free(remotes[i].name);
        free(remotes[i].url);
    }
    free(remotes);
}

int wd_remote_list(wd_repo *repo, wd_remote_info **out, size_t *out_count)
{
    char path[4200];
    remotes_path(repo, path, sizeof path);
    *out = NULL;
    *out_count = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : wd__error_errno(WD_EIO, "cannot read '%s'", path);
    wd_remote_info *list = calloc(MAX_REMOTES, sizeof *list);
    if (!list) {
        fclose(f);
        return WD_NOMEM();
    }
    size_t n = 0;
    char line[LINE_MAX_LEN];
    int rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0])
            continue;
        char *tab = strchr(line, '\t'), *tab2 = tab ? strchr(tab + 1, '\t') : NULL;
        if (!tab || !tab2 || n == MAX_REMOTES) {
            rc = wd__error(WD_ECORRUPT, "'%s' is damaged; fix or remove it, then 'wdrepo remote add' again", path);
            break;
        }
        *tab = *tab2 = 0;
        list[n].name = strdup(line);
        list[n].url = strdup(tab + 1);
        list[n].lazy = strcmp(tab2 + 1, "lazy") == 0;
        if (!list[n].name || !list[n].url)
            rc = WD_NOMEM();
        n++;
    }
    if (!rc && ferror(f))
        rc = wd__error_errno(WD_EIO, "cannot read '%s'", path);
    fclose(f);
    if (rc) {
        wd_remote_list_free(list, n);
        return rc;
    }
    *out = list;
    *out_count = n;
    return 0;
}

/* Replaces the remotes file with list (a temporary file renamed over it, so
 * a crash leaves the old list or the new one). */
static int remotes_write(wd_repo *repo, const wd_remote_info *list, size_t n)
{
    char path[4200], tmp[4300];
    remotes_path(repo, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return wd__error_errno(WD_EIO, "cannot write '%s'", tmp);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\t%s\t%s\n", list[i].name, list[i].url, list[i].lazy ? "lazy" : "-");
    int bad = ferror(f);
    if (fflush(f) || fsync(fileno(f)))
        bad = 1;
    if (fclose(f))
        bad = 1;
    if (bad || rename(tmp, path)) {
        int rc = wd__error_errno(WD_EIO, "cannot write '%s'", path);
        unlink(tmp);
        return rc;
    }
    return 0;
}

int wd_remote_add(wd_repo *repo, const char *name, const char *url, int lazy)
{
    if (repo->readonly)
        return wd__error(WD_EUSAGE, "repository is open read-only");
    if (!name_valid(name))
        return wd__error(WD_EUSAGE, "invalid remote name '%s': use 1-64 letters, digits and ._- "
                                    "(no leading '-' or '.')", name);
    if (strlen(url) > 1000 || strpbrk(url, "\t\n\r "))
        return wd__error(WD_EUSAGE, "'%s' is no remote URL: no spaces, at most 1000 characters", url);
    int rc = wd__s3_url_check(url);
    if (rc)
        return rc;
    wd_remote_info *list;
    size_t n;
    if ((rc = wd_remote_list(repo, &list, &n)))
        return rc;
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].name, name) == 0) {
            wd_remote_list_free(list, n);
            return wd__error(WD_EEXISTS, "remote '%s' exists already; 'wdrepo remote rm %s' first", name, name);
        }
    if (n == MAX_REMOTES) {
        wd_remote_list_free(list, n);
        return wd__error(WD_EUSAGE, "at most %d remotes", MAX_REMOTES);
    }
    wd_remote_info *grown = realloc(list, (n + 1) * sizeof *grown);
    if (!grown) {
        wd_remote_list_free(list, n);
        return WD_NOMEM();
    }
    list = grown;
    list[n].name = strdup(name);
    list[n].url = strdup(url);
    list[n].lazy = lazy;
    rc = list[n].name && list[n].url ? remotes_write(repo, list, n + 1) : WD_NOMEM();
    wd_remote_list_free(list, n + 1);
    return rc;
}

int wd_remote_rm(wd_repo *repo, const char *name)
{
    if (repo->readonly)
        return wd__error(WD_EUSAGE, "repository is open read-only");
    wd_remote_info *list;
    size_t n, k = 0;
    int rc = wd_remote_list(repo, &list, &n), found = 0;
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].name, name) == 0) {
            found = 1;
            free(list[i].name);
            free(list[i].url);
            continue;
        }
        list[k++] = list[i];
    }
    if (!found)
        rc = wd__error(WD_ENOTFOUND, "no remote '%s'; see 'wdrepo remote -v'", name);
    else
        rc = remotes_write(repo, list, k);
    wd_remote_list_free(list, found ? k : n);
    return rc;
}

int wd__remote_connect(wd_repo *repo, const char *remote, wd_s3 **out, int *lazy)
{
    wd_remote_info *list;
    size_t n;
    int rc = wd_remote_list(repo, &list, &n);
    if (rc)
        return rc;
    const char *url = NULL;
    if (lazy)
        *lazy = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].name, remote) == 0) {
            url = list[i].url;
            if (lazy)
                *lazy = list[i].lazy;
        }
    if (!url && !strstr(remote, "://"))
        rc = wd__error(WD_ENOTFOUND, "no remote '%s'; add it with 'wdrepo remote add %s URL'", remote, remote);
    else
        rc = wd__s3_open(out, url ? url : remote);
    wd_remote_list_free(list, n);
    return rc;
}

int wd__remote_lazy_url(wd_repo *repo, char **out_url)
{
    wd_remote_info *list;
    size_t n;
    *out_url = NULL;
    int rc = wd_remote_list(repo, &list, &n);
    for (size_t i = 0; !rc && i < n; i++)
        if (list[i].lazy && !*out_url && !(*out_url = strdup(list[i].url)))
            rc = WD_NOMEM();
    wd_remote_list_free(list, n);
    return rc;
}

void wd_transfer_result_free(wd_transfer_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_conflicts; i++)
        free(r->conflicts[i]);
    free(r->conflicts);
    r->conflicts = NULL;
    r->n_conflicts = 0;
}

int wd__transfer_conflict(wd_transfer_result *r, const char *name)
{
    char **grown = realloc(r->conflicts, (r->n_conflicts + 1) * sizeof *grown);
    if (!grown)
        return WD_NOMEM();
    r->conflicts = grown;
    if (!(r->conflicts[r->n_conflicts] = strdup(name)))
        return WD_NOMEM();
    r->n_conflicts++;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, WD_HASH_SIZE);
}

size_t wd__ids_sort_unique(uint8_t *ids, size_t n)
{
    if (n == 0)
        return 0;
    qsort(ids, n, WD_HASH_SIZE, cmp_id);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (memcmp(ids + i * WD_HASH_SIZE, ids + (k - 1) * WD_HASH_SIZE, WD_HASH_SIZE) != 0)
            memmove(ids + k++ * WD_HASH_SIZE, ids + i * WD_HASH_SIZE, WD_HASH_SIZE);
    return k;
}

int wd__object_exists(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], int *out)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st, "SELECT 1 FROM object WHERE id = ?1");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    int row = wd__db_step(repo->db, st, "looking up an object");
    sqlite3_finalize(st);
    if (row < 0)
        return row;
    *out = row;
    return 0;
}

int wd__object_chunk_ids(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], wd_buf *ids)
{
    sqlite3_stmt *st;
    int rc = wd__db_prepare(repo->db, &st,
                            "SELECT chunks FROM file WHERE object = ?1 UNION ALL "
                            "SELECT chunks FROM tensor WHERE object = ?1 UNION ALL "
                            "SELECT chunks FROM tensor_array WHERE object = ?1");
    if (rc)
        return rc;
    wd__bind_hash(st, 1, id);
    int row;
    while ((row = wd__db_step(repo->db, st, "reading chunk lists")) > 0) {
        int len = sqlite3_column_bytes(st, 0);
        if (len % WD_HASH_SIZE) {
            row = wd__error(WD_ECORRUPT, "a chunk list of an object has a bad length; run 'wdrepo fsck'");
            break;
        }
        if (len && wd__buf_append(ids, sqlite3_column_blob(st, 0), (size_t)len)) {
            row = WD_NOMEM();
            break;
        }
    }
    sqlite3_finalize(st);
    return row < 0 ? row : 0;
}

int wd__remote_get_name(wd_s3 *s3, const char *name, int *has, uint8_t id[WD_HASH_SIZE], char etag[80])
{
    wd_s3_req r;
    memset(&r, 0, sizeof r);
    r.method = WD_S3_GET;
    r.max_len = 256;
    snprintf(r.key, sizeof r.key, WD_RK_NAMES "%s", name);
    int rc = wd__s3_run(s3, &r, 1, 1, NULL);
    *has = 0;
    if (!rc && r.result == 0) {
        char hex[WD_HEX_SIZE] = {0};
        if (r.resp.len < 64 || (memcpy(hex, r.resp.data, 64), wd__unhex(id, hex)))
            rc = wd__error(WD_ECORRUPT, "remote '%s': name '%s' holds no object id", wd__s3_where(s3), name);
        *has = 1;
        if (etag)
            snprintf(etag, 80, "%s", r.etag);
    } else if (!rc && r.result != WD_ENOTFOUND) {
        rc = wd__s3_req_error(s3, &r);
    }
    wd__buf_free(&r.resp);
    return rc;
}
