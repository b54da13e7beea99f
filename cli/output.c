/*
 * output.c - how the wdrepo program talks: error and summary lines on
 * stderr, the throttled progress line, human sizes and times, aligned
 * tables, and JSON (cJSON) on stdout.
 */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- memory ------------------------------------------------------------- */

static void out_of_memory(void)
{
    fputs("wdrepo: out of memory\n", stderr);
    exit(CLI_EXIT_FAIL);
}

void *cli_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        out_of_memory();
    return p;
}

void *cli_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        out_of_memory();
    return q;
}

char *cli_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(cli_xmalloc(n), s, n);
}

/* ---- messages ----------------------------------------------------------- */

void cli_errorf(cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    cli_signal_wait();
    cli_progress_clear(ctx);
    fputs("wdrepo: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Fallback wording for a status that came without a message. */
static const char *status_text(int rc)
{
    switch (rc) {
    case WD_EUSAGE: return "invalid argument";
    case WD_ENOTFOUND: return "not found";
    case WD_EAMBIGUOUS: return "ambiguous reference";
    case WD_EBADINPUT: return "malformed input";
    case WD_ECORRUPT: return "repository data is corrupt";
    case WD_EIO: return "input/output error";
    case WD_ENOMEM: return "out of memory";
    case WD_EBUSY: return "repository is busy";
    case WD_EEXISTS: return "already exists";
    case WD_EMISMATCH: return "hash mismatch";
    default: return "failed";
    }
}

int cli_lib_error(cli_ctx *ctx, int rc)
{
    const char *msg = wd_errmsg();
    char line[1100];
    /* The library promises one line; keep it one line even if a message
     * carried a newline, so scripts can rely on it. */
    snprintf(line, sizeof line, "%s", msg && *msg ? msg : status_text(rc));
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    cli_errorf(ctx, "%s", line);
    return CLI_EXIT_FAIL;
}

void cli_info(cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    if (ctx->quiet)
        return;
    cli_progress_clear(ctx);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_finish_stdout(cli_ctx *ctx)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_errorf(ctx, "cannot write to standard output: %s", strerror(errno));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

/* ---- progress ----------------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cli_progress_clear(cli_ctx *ctx)
{
    if (!ctx || !ctx->progress_shown)
        return;
    /* Spaces rather than an ANSI erase: works on any terminal. */
    fprintf(stderr, "\r%*s\r", ctx->progress_shown, "");
    fflush(stderr);
    ctx->progress_shown = 0;
}

/* The library reports done/total in bytes of the current stage. Redraws at
 * most ten times a second, but always on a new stage and at 100%. */
static void progress_cb(void *ud, const char *stage, uint64_t done, uint64_t total)
{
    cli_ctx *ctx = ud;
    double t = now_seconds();
    int new_stage = !ctx->progress_stage || !stage || strcmp(ctx->progress_stage, stage) != 0;
    int finished = total && done >= total;
    if (!new_stage && done == ctx->progress_done && total == ctx->progress_total)
        return; /* nothing new to show */
    if (!new_stage && !finished && t - ctx->progress_last < 0.1)
        return;
    ctx->progress_last = t;
    ctx->progress_stage = stage;
    ctx->progress_done = done;
    ctx->progress_total = total;

    char line[160], dsz[32], tsz[32];
    cli_fmt_size(dsz, done);
    if (total) {
        cli_fmt_size(tsz, total);
        double pct = 100.0 * (double)(done > total ? total : done) / (double)total;
        snprintf(line, sizeof line, "%s: %3.0f%% (%s of %s)", stage ? stage : "working", pct, dsz,
                 tsz);
    } else {
        snprintf(line, sizeof line, "%s: %s", stage ? stage : "working", dsz);
    }
    int len = (int)strlen(line);
    /* Pad over a longer previous line instead of erasing it first: no flicker. */
    fprintf(stderr, "\r%s%*s", line, ctx->progress_shown > len ? ctx->progress_shown - len : 0,
            "");
    fflush(stderr);
    if (len > ctx->progress_shown)
        ctx->progress_shown = len;
}

wd_options cli_wd_options(cli_ctx *ctx)
{
    wd_options o;
    memset(&o, 0, sizeof o);
    o.threads = ctx->threads;
    o.level = ctx->level;
    if (ctx->stderr_tty && !ctx->quiet) {
        o.progress = progress_cb;
        o.progress_ud = ctx;
    }
    return o;
}

/* ---- formatting --------------------------------------------------------- */

void cli_fmt_size(char buf[32], uint64_t bytes)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, 32, "%" PRIu64 " B", bytes);
        return;
    }
    double v = (double)bytes;
    int u = -1;
    do {
        v /= 1024.0;
        u++;
    } while (v >= 1024.0 && u < 5);
    snprintf(buf, 32, v < 10.0 ? "%.2f %s" : v < 100.0 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void cli_fmt_ratio(char buf[32], uint64_t raw, uint64_t stored)
{
    if (stored == 0) {
        snprintf(buf, 32, "-");
        return;
    }
    double r = (double)raw / (double)stored;
    snprintf(buf, 32, r < 100.0 ? "%.2fx" : "%.0fx", r);
}

void cli_fmt_time(char buf[32], int64_t unix_seconds)
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    if (!localtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%d %H:%M", &tm) == 0)
        snprintf(buf, 32, "%" PRId64, unix_seconds);
}

void cli_fmt_short_id(char buf[CLI_SHORT_ID + 1], const char *hex)
{
    snprintf(buf, CLI_SHORT_ID + 1, "%s", hex);
}

void cli_fmt_shape(char *buf, size_t size, int ndim, const uint64_t *shape)
{
    size_t n = 0;
    n += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%" PRIu64, i ? "," : "", shape[i]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

/* ---- tables ------------------------------------------------------------- */

struct cli_table {
    int ncols;
    size_t nrows, cap;
    char **cells;   /* nrows * ncols */
    int *right;     /* per column */
};

cli_table *cli_table_new(int ncols)
{
    cli_table *t = cli_xmalloc(sizeof *t);
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    t->right = cli_xmalloc(sizeof *t->right * (size_t)ncols);
    memset(t->right, 0, sizeof *t->right * (size_t)ncols);
    return t;
}

void cli_table_right(cli_table *t, int col)
{
    if (col >= 0 && col < t->ncols)
        t->right[col] = 1;
}

void cli_table_add(cli_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->cells = cli_xrealloc(t->cells, sizeof *t->cells * t->cap * (size_t)t->ncols);
    }
    for (int c = 0; c < t->ncols; c++) {
        /* Tabs and newlines would break the alignment. */
        char *s = cli_xstrdup(cells[c] ? cells[c] : "");
        for (char *p = s; *p; p++)
            if (*p == '\n' || *p == '\r' || *p == '\t')
                *p = ' ';
        t->cells[t->nrows * (size_t)t->ncols + (size_t)c] = s;
    }
    t->nrows++;
}

/* Terminal columns a UTF-8 string takes, counting one per code point (good
 * enough for names; wide CJK characters would be off by one each). */
static size_t display_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            w++;
    return w;
}

void cli_table_print(const cli_table *t, FILE *f)
{
    size_t *width = cli_xmalloc(sizeof *width * (size_t)t->ncols);
    for (int c = 0; c < t->ncols; c++) {
        width[c] = 0;
        for (size_t r = 0; r < t->nrows; r++) {
            size_t w = display_width(t->cells[r * (size_t)t->ncols + (size_t)c]);
            if (w > width[c])
                width[c] = w;
        }
    }
    for (size_t r = 0; r < t->nrows; r++) {
        /* Trailing empty cells do not pad the line with spaces. */
        int last = t->ncols - 1;
        while (last > 0 && !t->cells[r * (size_t)t->ncols + (size_t)last][0] && !t->right[last])
            last--;
        int first = 1;
        for (int c = 0; c <= last; c++) {
            const char *s = t->cells[r * (size_t)t->ncols + (size_t)c];
            size_t pad = width[c] - display_width(s);
            if (width[c] == 0)
                continue; /* a column empty in every row is left out */
            if (!first)
                fputs("  ", f);
            first = 0;
            if (t->right[c])
                fprintf(f, "%*s%s", (int)pad, "", s);
            else if (c == last)
                fputs(s, f);
            else
                fprintf(f, "%s%*s", s, (int)pad, "");
        }
        fputc('\n', f);
    }
    free(width);
}

void cli_table_free(cli_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->right);
    free(t);
}

/* ---- JSON --------------------------------------------------------------- */

static void *json_check(void *p)
{
    if (!p)
        out_of_memory();
    return p;
}

void cli_json_add_u64(cJSON *obj, const char *key, uint64_t v)
{
    /* cJSON numbers are doubles: exact up to 2^53 bytes, far beyond any model. */
    json_check(cJSON_AddNumberToObject(obj, key, (double)v));
}

/* A hash field: its hex, or null when empty (a base has no parent). */
static void add_hash(cJSON *obj, const char *key, const char *hex)
{
    if (hex && *hex)
        json_check(cJSON_AddStringToObject(obj, key, hex));
    else
        json_check(cJSON_AddNullToObject(obj, key));
}

cJSON *cli_json_object_info(const wd_object_info *o)
{
    cJSON *j = json_check(cJSON_CreateObject());
    char iso[32];
    time_t t = (time_t)o->created;
    struct tm tm;

    json_check(cJSON_AddStringToObject(j, "id", o->id));
    json_check(cJSON_AddStringToObject(j, "kind", o->kind));
    add_hash(j, "parent", o->parent);
    json_check(cJSON_AddStringToObject(j, "model_hash", o->model_hash));
    add_hash(j, "parent_model_hash", o->parent_model_hash);
    json_check(cJSON_AddStringToObject(j, "strategy", o->strategy ? o->strategy : ""));
    cJSON *opts = o->options_json ? cJSON_Parse(o->options_json) : NULL;
    if (opts && cJSON_IsObject(opts)) {
        cJSON_AddItemToObject(j, "options", opts);
    } else {
        /* Not an object: keep what the library gave rather than lose it. */
        cJSON_Delete(opts);
        json_check(cJSON_AddStringToObject(j, "options", o->options_json ? o->options_json : ""));
    }
    json_check(cJSON_AddStringToObject(j, "message", o->message ? o->message : ""));
    json_check(cJSON_AddNumberToObject(j, "created", (double)o->created));
    if (gmtime_r(&t, &tm) && strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm))
        json_check(cJSON_AddStringToObject(j, "created_utc", iso));
    cJSON *names = json_check(cJSON_AddArrayToObject(j, "names"));
    for (size_t i = 0; i < o->n_names; i++)
        cJSON_AddItemToArray(names, json_check(cJSON_CreateString(o->names[i])));
    cli_json_add_u64(j, "n_tensors", o->n_tensors);
    cli_json_add_u64(j, "tensor_bytes", o->tensor_bytes);
    cli_json_add_u64(j, "stored_bytes", o->stored_bytes);
    cli_json_add_u64(j, "new_bytes", o->new_bytes);
    cli_json_add_u64(j, "n_files", o->n_files);
    if (o->max_rel_error == o->max_rel_error)
        json_check(cJSON_AddNumberToObject(j, "max_rel_error", o->max_rel_error));
    else
        json_check(cJSON_AddNullToObject(j, "max_rel_error"));
    return j;
}

int cli_json_print(cli_ctx *ctx, cJSON *j)
{
    char *s = json_check(cJSON_Print(j));
    cJSON_Delete(j);
    fputs(s, stdout);
    fputc('\n', stdout);
    free(s);
    return cli_finish_stdout(ctx);
}

/* ---- write results (add-base, commit) ----------------------------------- */

cJSON *cli_json_write_result(const wd_write_result *r, const char *kind)
{
    cJSON *j = json_check(cJSON_CreateObject());
    json_check(cJSON_AddStringToObject(j, "id", r->id));
    json_check(cJSON_AddStringToObject(j, "kind", kind));
    json_check(cJSON_AddStringToObject(j, "model_hash", r->model_hash));
    json_check(cJSON_AddBoolToObject(j, "already_present", r->already_present != 0));
    cli_json_add_u64(j, "n_tensors", r->n_tensors);
    cli_json_add_u64(j, "tensor_bytes", r->tensor_bytes);
    cli_json_add_u64(j, "stored_bytes", r->stored_bytes);
    cli_json_add_u64(j, "new_bytes", r->new_bytes);
    if (strcmp(kind, "delta") == 0) {
        cli_json_add_u64(j, "n_unchanged", r->n_unchanged);
        cli_json_add_u64(j, "n_encoded", r->n_encoded);
        cli_json_add_u64(j, "n_whole", r->n_whole);
        cli_json_add_u64(j, "n_dropped", r->n_dropped);
    }
    return j;
}

void cli_fmt_write_sizes(char *buf, size_t size, const wd_write_result *r)
{
    char raw[32], stored[32], ratio[32], fresh[32];
    cli_fmt_size(raw, r->tensor_bytes);
    cli_fmt_size(stored, r->stored_bytes);
    cli_fmt_ratio(ratio, r->tensor_bytes, r->stored_bytes);
    cli_fmt_size(fresh, r->new_bytes);
    snprintf(buf, size, "%" PRIu64 " tensor%s, raw %s, stored %s (%s), new %s", r->n_tensors,
             r->n_tensors == 1 ? "" : "s", raw, stored, ratio, fresh);
}

void cli_fmt_name(char *buf, size_t size, const char *name, const char *was)
{
    char swas[CLI_SHORT_ID + 1];
    if (!name) {
        buf[0] = '\0';
        return;
    }
    if (!was || !*was) {
        snprintf(buf, size, " '%s'", name);
        return;
    }
    cli_fmt_short_id(swas, was);
    snprintf(buf, size, " '%s' (was %s)", name, swas);
}

void cli_fmt_options(char *buf, size_t size, const char *options_json)
{
    cJSON *j = options_json ? cJSON_Parse(options_json) : NULL;
    size_t n = 0;
    buf[0] = '\0';
    if (!cJSON_IsObject(j)) {
        snprintf(buf, size, "%s", options_json ? options_json : "");
        cJSON_Delete(j);
        return;
    }
    /* %.15g: the shortest form of what was typed (0.9, not
     * 0.90000000000000002, which is only how the double is stored) */
    for (const cJSON *e = j->child; e && n < size; e = e->next) {
        const char *sep = n ? ", " : "";
        int w;
        if (cJSON_IsNumber(e))
            w = snprintf(buf + n, size - n, "%s%s %.15g", sep, e->string, e->valuedouble);
        else if (cJSON_IsString(e))
            w = snprintf(buf + n, size - n, "%s%s %s", sep, e->string, e->valuestring);
        else if (cJSON_IsBool(e))
            w = snprintf(buf + n, size - n, "%s%s %s", sep, e->string, cJSON_IsTrue(e) ? "true" : "false");
        else
            w = snprintf(buf + n, size - n, "%s%s ...", sep, e->string);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    cJSON_Delete(j);
}
