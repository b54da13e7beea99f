/*
 * test_gc.c - rm, names and gc through the public API: names listed and
 * deleted, rm refusing an object others are built on and removing
 * children first with WD_RM_RECURSIVE, gc freeing exactly the unreferenced
 * chunks, never running while another writable handle is open (read-only
 * ones do not count), and removing nothing when a chunk list is damaged.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "wdrepo.h"

static char tmp[256], rdir[512], dbpath[600];

static const char *model(const char *name)
{
    static char bufs[4][1024];
    static int i;
    char *p = bufs[i++ % 4];
    snprintf(p, 1024, "%s/models/%s", tu_fixtures(), name);
    return p;
}

static long long query(const char *sql)
{
    sqlite3 *db;
    long long v = -1;
    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
            int s = sqlite3_step(st);
            if (s == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
            else if (s == SQLITE_DONE)
                v = sqlite3_changes(db);
            sqlite3_finalize(st);
        }
    }
    sqlite3_close(db);
    return v;
}

static void test_names(wd_repo *r)
{
    wd_name_info *names;
    size_t n;
    CHECK_RC(wd_tag(r, "also-ft", "ft"), 0);
    CHECK_RC(wd_names(r, &names, &n), 0);
    CHECK(n == 4);
    if (n == 4) {
        CHECK(!strcmp(names[0].name, "also-ft") && !strcmp(names[0].kind, "delta"));
        CHECK(!strcmp(names[1].name, "base") && !strcmp(names[1].kind, "base"));
        CHECK(!strcmp(names[1].id, "c5a00145cb4768d92f82450884f0bca18582b3b44e31210a9af8b892795e3950"));
        CHECK(!strcmp(names[0].id, names[2].id) && names[2].created > 0);
    }
    wd_names_free(names, n);
    CHECK_RC(wd_untag(r, "also-ft"), 0);
    CHECK_RC(wd_untag(r, "also-ft"), WD_ENOTFOUND);
    char id[WD_HEX_SIZE];
    CHECK_RC(wd_resolve(r, "ft", id), 0); /* the object stays */
    CHECK_RC(wd_names(r, &names, &n), 0);
    CHECK(n == 3);
    wd_names_free(names, n);
}

static void test_lock(wd_repo *r)
{
    wd_repo *other = NULL, *reader = NULL;
    wd_gc_result res;
    wd_gc_opts now = {0, -1};
    /* Another writable handle (even in this process) is a writer gc must
     * not run beside; a read-only one is not. */
    CHECK_RC(wd_repo_open(&other, rdir, 0), 0);
    CHECK_RC(wd_repo_open(&reader, rdir, WD_OPEN_READONLY), 0);
    CHECK_RC(wd_gc(r, &now, &res), WD_EBUSY);
    CHECK(strstr(wd_errmsg(), "busy") != NULL);
    wd_repo_close(other);
    CHECK_RC(wd_gc(r, &now, &res), 0);
    /* (Commits leave the all-zero delta chunks of their unchanged tensors
     * unreferenced: this first gc frees them.) */
    CHECK_RC(wd_gc(r, &now, &res), 0);
    CHECK(res.n_unreferenced == 0);
    wd_repo_close(reader);
    /* The lock came back shared: this handle still writes. */
    CHECK_RC(wd_tag(r, "after-gc", "base"), 0);
    CHECK_RC(wd_untag(r, "after-gc"), 0);
}

static void test_rm(wd_repo *r)
{
    wd_removed_info *removed;
    size_t n;
    const char *base[] = {"base"}, *ft[] = {"ft"}, *both[] = {"ft2", "ft"};
    long long chunks = query("SELECT count(*) FROM chunk");
    CHECK_RC(wd_rm(r, base, 1, 0, &removed, &n), WD_EEXISTS);
    CHECK(strstr(wd_errmsg(), "2 objects are built on it") != NULL);
    CHECK_RC(wd_rm(r, ft, 1, 0, &removed, &n), WD_EEXISTS);
    CHECK(query("SELECT count(*) FROM object") == 3);

    /* Both at once: nothing left depends on them. */
    CHECK_RC(wd_rm(r, both, 2, 0, &removed, &n), 0);
    CHECK(n == 2);
    if (n == 2) {
        CHECK(!strcmp(removed[0].kind, "delta") && removed[0].n_names == 1 && !strcmp(removed[0].names[0], "ft2"));
        CHECK(removed[1].n_names == 1 && !strcmp(removed[1].names[0], "ft"));
    }
    wd_rm_free(removed, n);
    CHECK(query("SELECT count(*) FROM object") == 1);
    CHECK(query("SELECT count(*) FROM name") == 1);
    CHECK(query("SELECT count(*) FROM chunk") == chunks); /* chunks wait for gc */

    wd_gc_opts dry = {WD_GC_DRY_RUN, 0};
    wd_gc_result res;
    CHECK_RC(wd_gc(r, &dry, &res), 0);
    CHECK(res.n_chunks == (uint64_t)chunks && res.n_unreferenced > 0 && res.unreferenced_bytes > 0);
    uint64_t unref = res.n_unreferenced;
    CHECK(query("SELECT count(*) FROM chunk") == chunks);
    CHECK_RC(wd_gc(r, NULL, &res), 0);
    CHECK(res.n_unreferenced == unref);
    CHECK(query("SELECT count(*) FROM chunk") == chunks - (long long)unref);
    CHECK_RC(wd_gc(r, NULL, &res), 0);
    CHECK(res.n_unreferenced == 0);

    /* The base still checks out whole. */
    char out[600], cmd[700];
    snprintf(out, sizeof out, "%s/out", tmp);
    CHECK_RC(wd_checkout(r, "base", out, 0, NULL), 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    CHECK(system(cmd) == 0);
}

static void test_damaged_refs(wd_repo *r)
{
    /* A chunk list that is not whole ids: gc cannot tell what is live, so
     * it must remove nothing. */
    CHECK_RC(wd_commit(r, model("ft-bf16"), "base", NULL, NULL, NULL), 0);
    long long chunks = query("SELECT count(*) FROM chunk");
    CHECK(query("UPDATE tensor SET chunks = substr(chunks, 1, 20) WHERE rowid = "
                "(SELECT min(rowid) FROM tensor WHERE length(chunks) >= 32)") == 1);
    wd_gc_result res;
    CHECK_RC(wd_gc(r, NULL, &res), WD_ECORRUPT);
    CHECK(strstr(wd_errmsg(), "nothing was removed") != NULL);
    CHECK(query("SELECT count(*) FROM chunk") == chunks);

    /* rm --recursive of the base takes the damaged delta along; then gc
     * runs again and empties the store. */
    wd_removed_info *removed;
    size_t n;
    const char *base[] = {"base"};
    CHECK_RC(wd_rm(r, base, 1, WD_RM_RECURSIVE, &removed, &n), 0);
    CHECK(n == 2 && !strcmp(removed[0].kind, "delta") && !strcmp(removed[1].kind, "base"));
    wd_rm_free(removed, n);
    CHECK_RC(wd_gc(r, NULL, &res), 0);
    CHECK(res.n_unreferenced == (uint64_t)chunks);
    CHECK(query("SELECT count(*) FROM chunk") == 0);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/wd-test-gc-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    snprintf(rdir, sizeof rdir, "%s/.wdrepo", tmp);
    snprintf(dbpath, sizeof dbpath, "%s/repo.db", rdir);
    CHECK_RC(wd_repo_init(rdir), 0);
    wd_repo *r = NULL;
    CHECK_RC(wd_repo_open(&r, rdir, 0), 0);
    if (r) {
        CHECK_RC(wd_add_base(r, model("base-bf16"), "base", NULL, NULL), 0);
        wd_commit_opts co = {.name = "ft"}, co2 = {.name = "ft2"};
        CHECK_RC(wd_commit(r, model("ft-bf16"), "base", &co, NULL, NULL), 0);
        CHECK_RC(wd_commit(r, model("ft2-bf16"), "ft", &co2, NULL, NULL), 0);
        test_names(r);
        test_lock(r);
        test_rm(r);
        test_damaged_refs(r);
        wd_repo_close(r);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        return 1;
    return tu_finish("test_gc");
}
