/*
 * cmd_sql.c - `wdrepo sql "SELECT ..." [--json]`: one read-only query
 * against the documented views (docs/SQL.md), printed as an aligned table
 * with a header or as a JSON array of objects. Rows are streamed: the table
 * takes its column widths from the first rows only.
 */
#include "cli.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int json_flag;

static const cli_opt opts[] = {
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print a JSON array of objects (blobs as hex strings)", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"QUERY", NULL};

static const cli_spec spec = {
    "sql", "QUERY [--json]",
    "Run one read-only SQL query (SELECT or WITH ... SELECT) on the repository,\n"
    "opened read-only, and print the rows: an aligned table with a header, or with\n"
    "--json an array of objects. Query the stable views objects, names, tensors,\n"
    "files, chunks and arrays (docs/SQL.md lists their columns); the tables behind\n"
    "them may change between versions. Anything that would write, ATTACH, change\n"
    "a setting or run more than one statement is a usage error (exit 2).\n",
    opts, args, 1, 1,
};

/* Rows whose widths set the table's columns; later rows are printed as
 * they come, a wider cell pushing its line out. Bounds the memory of a
 * query returning millions of rows to these rows' text. */
#define WIDTH_ROWS 1000

typedef struct {
    cli_ctx *ctx;
    int ncols;
    char **names;
    int *numeric;       /* right-align: every value seen so far is a number or NULL */
    size_t *width;
    char ***held;       /* the first WIDTH_ROWS rows, as text */
    size_t n_held;
    int flushed;        /* header and held rows printed */
    uint64_t n_rows;
} sqlout;

static char *cell_text(const wd_sql_value *v)
{
    char buf[64];
    switch (v->type) {
    case WD_SQL_INTEGER: snprintf(buf, sizeof buf, "%" PRId64, v->i); return cli_xstrdup(buf);
    case WD_SQL_FLOAT: snprintf(buf, sizeof buf, "%.17g", v->f); return cli_xstrdup(buf);
    case WD_SQL_TEXT: {
        /* One row a line: control characters would break the table. */
        char *s = cli_xmalloc(v->len + 1);
        for (size_t i = 0; i < v->len; i++)
            s[i] = (unsigned char)v->text[i] < 0x20 ? ' ' : v->text[i];
        s[v->len] = '\0';
        return s;
    }
    case WD_SQL_BLOB: {
        char *s = cli_xmalloc(2 * v->len + 1);
        for (size_t i = 0; i < v->len; i++)
            sprintf(s + 2 * i, "%02x", (unsigned char)v->text[i]);
        s[2 * v->len] = '\0';
        return s;
    }
    default: return cli_xstrdup("");
    }
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

static void print_row(const sqlout *o, char *const *cells)
{
    for (int i = 0; i < o->ncols; i++) {
        size_t w = text_width(cells[i]);
        size_t pad = o->width[i] > w ? o->width[i] - w : 0;
        int last = i == o->ncols - 1;
        if (o->numeric[i] && !last)
            printf("%*s%s  ", (int)pad, "", cells[i]);
        else if (o->numeric[i])
            printf("%*s%s", (int)pad, "", cells[i]);
        else if (!last)
            printf("%s%*s  ", cells[i], (int)pad, "");
        else
            printf("%s", cells[i]);
    }
    putchar('\n');
}

static void free_row(char **cells, int n)
{
    for (int i = 0; cells && i < n; i++)
        free(cells[i]);
    free(cells);
}

static void flush_held(sqlout *o)
{
    if (o->flushed)
        return;
    o->flushed = 1;
    print_row(o, o->names);
    for (size_t r = 0; r < o->n_held; r++) {
        print_row(o, o->held[r]);
        free_row(o->held[r], o->ncols);
    }
    free(o->held);
    o->held = NULL;
    o->n_held = 0;
}

static int table_row(void *ud, int ncols, const char *const *names, const wd_sql_value *row)
{
    sqlout *o = ud;
    if (!row) {
        o->ncols = ncols;
        o->names = cli_xmalloc((size_t)(ncols ? ncols : 1) * sizeof *o->names);
        o->numeric = cli_xmalloc((size_t)(ncols ? ncols : 1) * sizeof *o->numeric);
        o->width = cli_xmalloc((size_t)(ncols ? ncols : 1) * sizeof *o->width);
        o->held = cli_xmalloc(WIDTH_ROWS * sizeof *o->held);
        for (int i = 0; i < ncols; i++) {
            o->names[i] = cli_xstrdup(names[i]);
            o->numeric[i] = 1;
            o->width[i] = text_width(names[i]);
        }
        return 0;
    }
    char **cells = cli_xmalloc((size_t)(ncols ? ncols : 1) * sizeof *cells);
    for (int i = 0; i < ncols; i++)
        cells[i] = cell_text(&row[i]);
    o->n_rows++;
    if (!o->flushed && o->n_held < WIDTH_ROWS) {
        for (int i = 0; i < ncols; i++) {
            size_t w = text_width(cells[i]);
            if (w > o->width[i])
                o->width[i] = w;
            if (row[i].type != WD_SQL_INTEGER && row[i].type != WD_SQL_FLOAT && row[i].type != WD_SQL_NULL)
                o->numeric[i] = 0;
        }
        o->held[o->n_held++] = cells;
        return 0;
    }
    flush_held(o);
    print_row(o, cells);
    free_row(cells, ncols);
    return 0;
}

static void json_string(const char *s, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* Integers are printed exactly (cJSON would pass them through a double). */
static int json_row(void *ud, int ncols, const char *const *names, const wd_sql_value *row)
{
    sqlout *o = ud;
    if (!row) {
        o->ncols = ncols;
        o->names = cli_xmalloc((size_t)(ncols ? ncols : 1) * sizeof *o->names);
        for (int i = 0; i < ncols; i++)
            o->names[i] = cli_xstrdup(names[i]);
        fputs("[", stdout);
        return 0;
    }
    fputs(o->n_rows++ ? ",\n  {" : "\n  {", stdout);
    for (int i = 0; i < ncols; i++) {
        if (i)
            fputs(", ", stdout);
        json_string(o->names[i], strlen(o->names[i]));
        fputs(": ", stdout);
        const wd_sql_value *v = &row[i];
        switch (v->type) {
        case WD_SQL_INTEGER: printf("%" PRId64, v->i); break;
        case WD_SQL_FLOAT:
            if (isfinite(v->f))
                printf("%.17g", v->f);
            else
                fputs("null", stdout);
            break;
        case WD_SQL_TEXT: json_string(v->text, v->len); break;
        case WD_SQL_BLOB: {
            putchar('"');
            for (size_t k = 0; k < v->len; k++)
                printf("%02x", (unsigned char)v->text[k]);
            putchar('"');
            break;
        }
        default: fputs("null", stdout); break;
        }
    }
    putchar('}');
    return 0;
}

int cmd_sql(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo)) != CLI_EXIT_OK)
        return rc;
    sqlout o;
    memset(&o, 0, sizeof o);
    o.ctx = ctx;
    rc = wd_sql(repo, pos[0], json_flag ? json_row : table_row, &o);
    wd_repo_close(repo);
    if (rc == WD_EUSAGE) {
        /* The query is the user's command line: say so as for a bad option. */
        const char *msg = wd_errmsg();
        rc = cli_usage_error(ctx, &spec, "%s", msg && *msg ? msg : "bad query");
    } else if (rc != WD_OK) {
        rc = cli_lib_error(ctx, rc);
    } else {
        if (json_flag)
            fputs(o.n_rows ? "\n]\n" : "]\n", stdout);
        else
            flush_held(&o);
        rc = cli_finish_stdout(ctx);
    }
    for (size_t r = 0; r < o.n_held; r++)
        free_row(o.held[r], o.ncols);
    free(o.held);
    free_row(o.names, o.ncols);
    free(o.numeric);
    free(o.width);
    return rc;
}
