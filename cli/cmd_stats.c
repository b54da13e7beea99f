/*
 * cmd_stats.c - `wdrepo stats [--json]`: where the repository's bytes go
 * (by kind of data), how much deduplication and compression save, and the
 * database file's size and free space.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static int json_flag;

static const cli_opt opts[] = {
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print one JSON object", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};

static const cli_spec spec = {
    "stats", "[--json]",
    "Show the bytes stored by kind (bases, each delta strategy, non-weight files,\n"
    "shard headers, chunks nothing references), each distinct chunk counted once\n"
    "under the first kind using it; the logical size (every object's files as\n"
    "checkout writes them); dedup and compression ratios; and the database file's\n"
    "size and free pages (which 'wdrepo gc' gives back).\n",
    opts, NULL, 0, 0,
};

static void fmt_count(char buf[32], uint64_t n, int show)
{
    if (show)
        snprintf(buf, 32, "%llu", (unsigned long long)n);
    else
        snprintf(buf, 32, "-");
}

static int print_json(cli_ctx *ctx, const wd_stats *s)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *kinds = j ? cJSON_AddArrayToObject(j, "kinds") : NULL;
    if (!kinds) {
        cJSON_Delete(j);
        cli_errorf(ctx, "out of memory");
        return CLI_EXIT_FAIL;
    }
    for (size_t i = 0; i < s->n_kinds; i++) {
        const wd_stats_kind *k = &s->kinds[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            continue;
        cJSON_AddItemToArray(kinds, o);
        cJSON_AddStringToObject(o, "kind", k->kind);
        cli_json_add_u64(o, "n_objects", k->n_objects);
        cli_json_add_u64(o, "n_chunks", k->n_chunks);
        cli_json_add_u64(o, "stored_bytes", k->stored_bytes);
        cli_json_add_u64(o, "raw_bytes", k->raw_bytes);
    }
    cli_json_add_u64(j, "n_objects", s->n_objects);
    cli_json_add_u64(j, "n_bases", s->n_bases);
    cli_json_add_u64(j, "n_deltas", s->n_deltas);
    cli_json_add_u64(j, "n_names", s->n_names);
    cli_json_add_u64(j, "n_chunks", s->n_chunks);
    cli_json_add_u64(j, "stored_bytes", s->stored_bytes);
    cli_json_add_u64(j, "raw_bytes", s->raw_bytes);
    cli_json_add_u64(j, "referenced_bytes", s->referenced_bytes);
    cli_json_add_u64(j, "logical_bytes", s->logical_bytes);
    cli_json_add_u64(j, "db_bytes", s->db_bytes);
    cli_json_add_u64(j, "wal_bytes", s->wal_bytes);
    cli_json_add_u64(j, "page_size", s->page_size);
    cli_json_add_u64(j, "page_count", s->page_count);
    cli_json_add_u64(j, "free_pages", s->free_pages);
    cli_json_add_u64(j, "free_bytes", s->free_pages * s->page_size);
    return cli_json_print(ctx, j);
}

static void print_human(const wd_stats *s)
{
    cli_table *t = cli_table_new(6);
    static const char *const head[] = {"KIND", "OBJECTS", "CHUNKS", "STORED", "RAW", "RATIO"};
    for (int c = 1; c < 6; c++)
        cli_table_right(t, c);
    cli_table_add(t, head);
    size_t n_fixed = 3; /* files, shard headers, unreferenced: no objects of their own */
    for (size_t i = 0; i < s->n_kinds; i++) {
        const wd_stats_kind *k = &s->kinds[i];
        char objs[32], chunks[32], stored[32], raw[32], ratio[32];
        fmt_count(objs, k->n_objects, i + n_fixed < s->n_kinds);
        fmt_count(chunks, k->n_chunks, 1);
        cli_fmt_size(stored, k->stored_bytes);
        cli_fmt_size(raw, k->raw_bytes);
        cli_fmt_ratio(ratio, k->raw_bytes, k->stored_bytes);
        const char *row[] = {k->kind, objs, chunks, stored, raw, ratio};
        cli_table_add(t, row);
    }
    char objs[32], chunks[32], stored[32], raw[32], ratio[32];
    fmt_count(objs, s->n_objects, 1);
    fmt_count(chunks, s->n_chunks, 1);
    cli_fmt_size(stored, s->stored_bytes);
    cli_fmt_size(raw, s->raw_bytes);
    cli_fmt_ratio(ratio, s->raw_bytes, s->stored_bytes);
    const char *total[] = {"total", objs, chunks, stored, raw, ratio};
    cli_table_add(t, total);
    cli_table_print(t, stdout);
    cli_table_free(t);

    char logical[32], referenced[32], dedup[32], saving[32], db[32], wal[32], page[32], freeb[32];
    cli_fmt_size(logical, s->logical_bytes);
    cli_fmt_size(referenced, s->referenced_bytes);
    cli_fmt_ratio(dedup, s->referenced_bytes, s->stored_bytes - s->kinds[s->n_kinds - 1].stored_bytes);
    cli_fmt_ratio(saving, s->logical_bytes, s->stored_bytes);
    cli_fmt_size(db, s->db_bytes);
    cli_fmt_size(wal, s->wal_bytes);
    cli_fmt_size(page, s->page_size);
    cli_fmt_size(freeb, s->free_pages * s->page_size);
    printf("\n");
    printf("logical   %s in %llu objects (their folders as checkout writes them): %s the stored bytes\n", logical,
           (unsigned long long)s->n_objects, saving);
    printf("dedup     %s referenced, each chunk stored once: %s\n", referenced, dedup);
    printf("database  repo.db %s: %llu pages of %s, %llu free (%s, 'wdrepo gc' gives them back); log %s\n", db,
           (unsigned long long)s->page_count, page, (unsigned long long)s->free_pages, freeb, wal);
}

int cmd_stats(cli_ctx *ctx, int argc, char **argv)
{
    int npos, rc = cli_parse(ctx, &spec, argc, argv, NULL, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo)) != CLI_EXIT_OK)
        return rc;
    wd_stats *s = NULL;
    rc = wd_stats_get(repo, &s);
    wd_repo_close(repo);
    if (rc != WD_OK)
        return cli_lib_error(ctx, rc);
    if (json_flag) {
        rc = print_json(ctx, s);
    } else {
        print_human(s);
        rc = cli_finish_stdout(ctx);
    }
    wd_stats_free(s);
    return rc;
}
