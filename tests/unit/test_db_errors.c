/*
 * test_db_errors.c - a database error in the middle of a query must come
 * back as an error, never as a shorter result or "not found". SQLite's
 * progress handler interrupts the Nth virtual-machine step; the test sweeps
 * N over every step a call makes (as SQLite's own fault tests do), so it
 * does not depend on how many steps a query takes.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "lossy.h"
#include "repo_int.h"
#include "testutil.h"
#include "wdrepo.h"

/* Bounds a sweep; the calls here take a few thousand steps at most. */
#define MAX_SWEEP 200000

static long budget;
static int fired;

static int interrupt_at(void *ud)
{
    (void)ud;
    if (--budget > 0)
        return 0;
    fired = 1;
    return 1;
}

static void arm(wd_repo *r, long n)
{
    budget = n;
    fired = 0;
    sqlite3_progress_handler(r->db, 1, interrupt_at, NULL);
}

static void disarm(wd_repo *r) { sqlite3_progress_handler(r->db, 0, NULL, NULL); }

/* What an interrupted call may return: the interruption, as an error. */
static int interrupted(int rc)
{
    return rc == WD_ERROR && strstr(wd_errmsg(), "interrupt") != NULL;
}

static int same_log(const wd_object_info *a, size_t na, const wd_object_info *b, size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++) {
        if (strcmp(a[i].id, b[i].id) || a[i].n_names != b[i].n_names)
            return 0;
        for (size_t j = 0; j < a[i].n_names; j++)
            if (strcmp(a[i].names[j], b[i].names[j]))
                return 0;
    }
    return 1;
}

/* Interrupted anywhere, wd_log fails or lists every object with all its
 * names. (An interrupted name scan also stops the enclosing object scan,
 * which wd_log always checked, so this sweep guards rather than reproduces.) */
static void sweep_log(wd_repo *r)
{
    wd_object_info *ref = NULL;
    size_t nref = 0;
    CHECK_RC(wd_log(r, &ref, &nref), 0);
    CHECK(nref == 2 && ref && ref[0].n_names + ref[1].n_names == 5);
    long n;
    int bad = 0;
    for (n = 1; n < MAX_SWEEP; n++) {
        wd_object_info *got = NULL;
        size_t ngot = 0;
        arm(r, n);
        int rc = wd_log(r, &got, &ngot);
        disarm(r);
        if (rc ? !interrupted(rc) : !same_log(ref, nref, got, ngot)) {
            if (!bad++)
                fprintf(stderr, "wd_log interrupted at step %ld: rc %d (%s), %zu objects\n", n, rc,
                        rc ? wd_errmsg() : "", ngot);
        }
        if (!rc)
            wd_log_free(got, ngot);
        if (!fired)
            break;
    }
    CHECK(n > 1 && n < MAX_SWEEP);
    CHECK(bad == 0);
    wd_log_free(ref, nref);
}

/* Interrupted anywhere, a reference resolves to its object or fails with
 * the interruption: never "unknown reference". */
static void sweep_resolve(wd_repo *r, const char *ref)
{
    char want[WD_HEX_SIZE], got[WD_HEX_SIZE];
    CHECK_RC(wd_resolve(r, ref, want), 0);
    long n;
    int bad = 0;
    for (n = 1; n < MAX_SWEEP; n++) {
        arm(r, n);
        int rc = wd_resolve(r, ref, got);
        disarm(r);
        if (rc ? !interrupted(rc) : strcmp(got, want)) {
            if (!bad++)
                fprintf(stderr, "wd_resolve('%s') interrupted at step %ld: rc %d (%s)\n", ref, n, rc,
                        rc ? wd_errmsg() : "");
        }
        if (!fired)
            break;
    }
    CHECK(n > 1 && n < MAX_SWEEP);
    CHECK(bad == 0);
}

/* A lossy tensor's arrays: all of them, or the interruption. */
static void sweep_lossy(wd_repo *r, const char *ref)
{
    char hex[WD_HEX_SIZE];
    uint8_t id[WD_HASH_SIZE];
    wd_object *obj = NULL;
    CHECK_RC(wd_resolve(r, ref, hex), 0);
    CHECK(wd__unhex(id, hex) == 0);
    CHECK_RC(wd__object_load(r, id, &obj), 0);
    const wd_stored_tensor *t = NULL;
    for (size_t i = 0; obj && i < obj->n_tensors && !t; i++)
        if (obj->tensors[i].lossy && obj->tensors[i].lossy->arrays[WD__WF_VALUES].count > 0)
            t = &obj->tensors[i];
    CHECK(t != NULL);
    if (!t) {
        wd__object_free(obj);
        return;
    }
    const wd_lossy *want = t->lossy;
    long n;
    int bad = 0;
    for (n = 1; n < MAX_SWEEP; n++) {
        wd_stored_tensor copy = *t;
        copy.lossy = NULL;
        arm(r, n);
        int rc = wd__lossy_load(r, id, &copy, want->params_json);
        disarm(r);
        int same = !rc && copy.lossy;
        for (int f = 0; same && f < (int)(sizeof want->arrays / sizeof *want->arrays); f++) {
            const wd_astream *a = &want->arrays[f], *b = &copy.lossy->arrays[f];
            same = a->count == b->count && a->n_chunks == b->n_chunks &&
                   (!a->n_chunks || !memcmp(a->chunks, b->chunks, a->n_chunks * WD_HASH_SIZE));
        }
        if (rc ? !interrupted(rc) : !same) {
            if (!bad++)
                fprintf(stderr, "wd__lossy_load interrupted at step %ld: rc %d (%s)\n", n, rc, rc ? wd_errmsg() : "");
        }
        if (!rc)
            wd__lossy_free(copy.lossy);
        if (!fired)
            break;
    }
    CHECK(n > 1 && n < MAX_SWEEP);
    CHECK(bad == 0);
    wd__object_free(obj);
}

int main(void)
{
    char tmp[] = "/tmp/wd-test-dberr-XXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    char rdir[512], base[512], ft[512];
    snprintf(rdir, sizeof rdir, "%s/.wdrepo", tmp);
    snprintf(base, sizeof base, "%s/models/base-bf16", tu_fixtures());
    snprintf(ft, sizeof ft, "%s/models/ft-bf16", tu_fixtures());
    wd_repo *r = NULL;
    CHECK_RC(wd_repo_init(rdir), 0);
    CHECK_RC(wd_repo_open(&r, rdir, 0), 0);
    if (r) {
        wd_write_result res;
        CHECK_RC(wd_add_base(r, base, "base", NULL, &res), 0);
        wd_commit_opts co = {.strategy = "sparse", .name = "sp"};
        CHECK_RC(wd_commit(r, ft, "base", &co, NULL, &res), 0);
        /* Several names an object, so a name scan has rows to lose. */
        CHECK_RC(wd_tag(r, "base-a", "base"), 0);
        CHECK_RC(wd_tag(r, "base-b", "base"), 0);
        CHECK_RC(wd_tag(r, "sp-a", "sp"), 0);
        sweep_log(r);
        sweep_resolve(r, "sp-a");
        sweep_resolve(r, "c5a0");
        sweep_lossy(r, "sp");
        wd_repo_close(r);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        return 1;
    return tu_finish("test_db_errors");
}
