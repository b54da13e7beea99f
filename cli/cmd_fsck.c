/*
 * cmd_fsck.c - `wdrepo fsck [--full] [--json]`: verifies every stored byte
 * and record, prints what is wrong and what it affects, and exits 3 when
 * something is (0 when the repository is sound, 1 when the check could not
 * run).
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int full_flag, json_flag;

static const cli_opt opts[] = {
    {"full", 0, CLI_OPT_FLAG, &full_flag, NULL,
     "also rebuild every object and compare it with its recorded model hash", 0, 0},
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print the report as a JSON object", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};

static const cli_spec spec = {
    "fsck", "[--full] [--json]",
    "Check the repository: SQLite's own check, every chunk decompressed and\n"
    "re-hashed against its id, every object's records (chunks present, sizes\n"
    "adding up, delta ids re-derived), every lineage link and every name. --full\n"
    "also rebuilds every object and compares it with its recorded model hash.\n"
    "Prints each problem with the objects that depend on it (directly or through\n"
    "their lineage), nothing when all is well. Exit 0: sound; 3: damage found.\n",
    opts, NULL, 0, 0,
};

static void *jcheck(void *p)
{
    if (!p) {
        fputs("wdrepo: out of memory\n", stderr);
        exit(CLI_EXIT_FAIL);
    }
    return p;
}

static void add_str_or_null(cJSON *o, const char *key, const char *s)
{
    if (s && *s)
        jcheck(cJSON_AddStringToObject(o, key, s));
    else
        jcheck(cJSON_AddNullToObject(o, key));
}

static cJSON *report_json(const wd_fsck_report *r)
{
    cJSON *j = jcheck(cJSON_CreateObject());
    jcheck(cJSON_AddBoolToObject(j, "ok", r->n_problems == 0));
    jcheck(cJSON_AddBoolToObject(j, "full", r->full != 0));
    jcheck(cJSON_AddBoolToObject(j, "complete", r->incomplete == 0));
    cli_json_add_u64(j, "n_objects", r->n_objects);
    cli_json_add_u64(j, "n_chunks", r->n_chunks);
    cli_json_add_u64(j, "chunk_bytes", r->chunk_bytes);
    cli_json_add_u64(j, "raw_bytes", r->raw_bytes);
    cli_json_add_u64(j, "n_names", r->n_names);
    cli_json_add_u64(j, "n_rebuilt", r->n_rebuilt);
    cJSON *probs = jcheck(cJSON_AddArrayToObject(j, "problems"));
    for (size_t i = 0; i < r->n_problems; i++) {
        const wd_fsck_problem *p = &r->problems[i];
        cJSON *o = jcheck(cJSON_CreateObject());
        jcheck(cJSON_AddStringToObject(o, "kind", p->kind));
        add_str_or_null(o, "chunk", p->chunk);
        add_str_or_null(o, "object", p->object);
        add_str_or_null(o, "name", p->name);
        add_str_or_null(o, "where", p->where);
        cli_json_add_u64(o, "n_uses", p->n_uses);
        jcheck(cJSON_AddStringToObject(o, "message", p->message));
        cJSON *aff = jcheck(cJSON_AddArrayToObject(o, "affected"));
        for (size_t k = 0; k < p->n_affected; k++)
            cJSON_AddItemToArray(aff, jcheck(cJSON_CreateString(r->objects[p->affected[k]].id)));
        cJSON_AddItemToArray(probs, o);
    }
    cJSON *dam = jcheck(cJSON_AddArrayToObject(j, "damaged_objects"));
    for (size_t i = 0; i < r->n_objects; i++)
        if (r->objects[i].damaged)
            cJSON_AddItemToArray(dam, jcheck(cJSON_CreateString(r->objects[i].id)));
    return j;
}

/* "c5a00145cb47 (base 'tiny')": the short id, the kind and the names. */
static void print_object(FILE *out, const wd_fsck_object *o, const wd_object_info *log, size_t n_log)
{
    char sid[CLI_SHORT_ID + 1];
    cli_fmt_short_id(sid, o->id);
    fprintf(out, "%s (%s", sid, o->kind);
    for (size_t i = 0; i < n_log; i++) {
        if (strcmp(log[i].id, o->id))
            continue;
        for (size_t k = 0; k < log[i].n_names; k++)
            fprintf(out, "%s'%s'", k ? ", " : " ", log[i].names[k]);
        break;
    }
    fputc(')', out);
}

static void report_text(const wd_fsck_report *r, const wd_object_info *log, size_t n_log)
{
    char sid[CLI_SHORT_ID + 1];
    for (size_t i = 0; i < r->n_problems; i++) {
        const wd_fsck_problem *p = &r->problems[i];
        if (p->chunk[0]) {
            cli_fmt_short_id(sid, p->chunk);
            printf("chunk %s: %s\n", sid, p->message);
            if (p->where && p->n_uses > 1)
                printf("  used by: %s (and %llu more)\n", p->where, (unsigned long long)(p->n_uses - 1));
            else if (p->where)
                printf("  used by: %s\n", p->where);
            else
                printf("  used by: no object\n");
        } else if (p->name) {
            printf("name '%s': %s\n", p->name, p->message);
        } else if (p->object[0]) {
            cli_fmt_short_id(sid, p->object);
            printf("object %s: %s\n", sid, p->message);
        } else {
            printf("%s: %s\n", p->kind, p->message);
        }
        if (p->n_affected) {
            printf("  affects:");
            for (size_t k = 0; k < p->n_affected; k++) {
                fputs(k ? ", " : " ", stdout);
                print_object(stdout, &r->objects[p->affected[k]], log, n_log);
            }
            fputc('\n', stdout);
        }
    }
}

int cmd_fsck(cli_ctx *ctx, int argc, char **argv)
{
    int npos, rc = cli_parse(ctx, &spec, argc, argv, NULL, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo)) != CLI_EXIT_OK)
        return rc;
    wd_options opt = cli_wd_options(ctx);
    wd_fsck_report *r = NULL;
    rc = wd_fsck(repo, full_flag ? WD_FSCK_FULL : 0, &opt, &r);
    cli_progress_clear(ctx);
    if (rc != WD_OK) {
        rc = cli_lib_error(ctx, rc);
        wd_repo_close(repo);
        return rc;
    }
    /* Names make the affected objects recognisable; without them the ids
     * still say it all. */
    wd_object_info *log = NULL;
    size_t n_log = 0;
    if (!json_flag && r->n_problems && wd_log(repo, &log, &n_log) != WD_OK) {
        log = NULL;
        n_log = 0;
    }
    wd_repo_close(repo);

    if (json_flag)
        rc = cli_json_print(ctx, report_json(r));
    else {
        report_text(r, log, n_log);
        rc = cli_finish_stdout(ctx);
    }
    char stored[32], raw[32];
    cli_fmt_size(stored, r->chunk_bytes);
    cli_fmt_size(raw, r->raw_bytes);
    if (r->n_problems == 0)
        cli_info(ctx, "fsck: no problems: %zu objects, %llu chunks (%s stored, %s raw), %llu names checked%s",
                 r->n_objects, (unsigned long long)r->n_chunks, stored, raw, (unsigned long long)r->n_names,
                 r->full ? ", every object rebuilt" : "");
    else if (r->incomplete)
        cli_info(ctx, "fsck: %zu problem%s found; the database itself is damaged, so the checks stopped there",
                 r->n_problems, r->n_problems == 1 ? "" : "s");
    else
        cli_info(ctx, "fsck: %zu problem%s found; %zu of %zu objects affected", r->n_problems,
                 r->n_problems == 1 ? "" : "s", r->n_damaged, r->n_objects);
    int damaged = r->n_problems != 0;
    wd_log_free(log, n_log);
    wd_fsck_free(r);
    if (rc != CLI_EXIT_OK)
        return rc;
    return damaged ? CLI_EXIT_DAMAGE : CLI_EXIT_OK;
}
