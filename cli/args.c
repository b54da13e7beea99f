/*
 * args.c - the small option parser every command uses: long and short
 * options, "--opt=value" and "--opt value", "-xVALUE", bundled short flags,
 * "--" to end options, and options mixed freely with positional arguments.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* The options every command accepts, bound to ctx. */
static void global_opts(cli_ctx *ctx, cli_opt out[5])
{
    const cli_opt g[5] = {
        {"repo", 'R', CLI_OPT_STR, &ctx->repo_path, "PATH",
         "repository directory (default: $WDREPO_DIR, else .wdrepo found upwards)", 0, 0},
        {"quiet", 'q', CLI_OPT_FLAG, &ctx->quiet, NULL,
         "print only the primary output (no summary, no progress)", 0, 0},
        {"jobs", 'j', CLI_OPT_INT, &ctx->threads, "N", "worker threads, 0 = all cores (the default)",
         0, 4096},
        {"level", 0, CLI_OPT_INT, &ctx->level, "N",
         "zstd level of new chunks, 1-22 (default " CLI_STR(WD_DEFAULT_LEVEL) "; add-base, commit)", 1,
         22},
        {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
    };
    memcpy(out, g, sizeof g);
}

static const char *prog_prefix(const cli_spec *spec)
{
    return spec->name[0] ? " " : "";
}

int cli_usage_error(cli_ctx *ctx, const cli_spec *spec, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    cli_progress_clear(ctx);
    fprintf(stderr, "wdrepo: %s\n", what);
    fprintf(stderr, "usage: wdrepo%s%s %s (see 'wdrepo %s%s-h')\n", prog_prefix(spec), spec->name,
            spec->usage, spec->name, spec->name[0] ? " " : "");
    return CLI_EXIT_USAGE;
}

/* Which global options a command takes. -R only where a repository is
 * opened, --level only where new chunks are compressed: anywhere else they
 * would be silently ignored, so they are refused (cli_parse) and left out
 * of the help. The program itself and `help` take everything. */
static int takes_repo(const cli_spec *spec)
{
    static const char *const none[] = {"hash", "save-delta", "load-delta"};
    for (size_t i = 0; i < sizeof none / sizeof *none; i++)
        if (strcmp(spec->name, none[i]) == 0)
            return 0;
    return 1;
}

static int takes_level(const cli_spec *spec)
{
    return !spec->name[0] || !strcmp(spec->name, "help") || !strcmp(spec->name, "add-base") ||
           !strcmp(spec->name, "commit");
}

static int global_applies(const cli_spec *spec, const cli_opt *o)
{
    if (o->short_name == 'R')
        return takes_repo(spec);
    if (o->long_name && strcmp(o->long_name, "level") == 0)
        return takes_level(spec);
    return 1;
}

static void print_opts(const cli_spec *spec, const cli_opt *opts)
{
    for (const cli_opt *o = opts; o && (o->long_name || o->short_name); o++) {
        if (spec && !global_applies(spec, o))
            continue;
        char left[64];
        int n = 0;
        if (o->short_name)
            n += snprintf(left + n, sizeof left - (size_t)n, "-%c", o->short_name);
        if (o->long_name)
            n += snprintf(left + n, sizeof left - (size_t)n, "%s--%s", o->short_name ? ", " : "",
                          o->long_name);
        if (o->metavar)
            snprintf(left + n, sizeof left - (size_t)n, " %s", o->metavar);
        printf("  %-20s %s\n", left, o->help);
    }
}

void cli_print_help(const cli_spec *spec)
{
    cli_ctx dummy = {0};
    cli_opt g[5];
    global_opts(&dummy, g);
    printf("usage: wdrepo%s%s %s\n\n%s", prog_prefix(spec), spec->name, spec->usage,
           spec->description);
    if (spec->opts && (spec->opts[0].long_name || spec->opts[0].short_name)) {
        printf("\noptions:\n");
        print_opts(NULL, spec->opts);
    }
    printf("  %-20s %s\n", "-h, --help", "show this help");
    printf("\nglobal options (before or after the command):\n");
    print_opts(spec, g);
}

/* Finds the option a long name (up to '=' or NUL) or a short letter names. */
static const cli_opt *find_opt(const cli_opt *const *tables, const char *lname, size_t llen,
                               char sname)
{
    for (int t = 0; tables[t]; t++) {
        for (const cli_opt *o = tables[t]; o->long_name || o->short_name; o++) {
            if (lname && o->long_name && strlen(o->long_name) == llen &&
                memcmp(o->long_name, lname, llen) == 0)
                return o;
            if (!lname && sname && o->short_name == sname)
                return o;
        }
    }
    return NULL;
}

/* Stores value into o's destination. Returns CLI_CONTINUE or 2. */
static int set_opt(cli_ctx *ctx, const cli_spec *spec, const cli_opt *o, const char *shown,
                   const char *value)
{
    if (o->type == CLI_OPT_FLAG) {
        *(int *)o->dest = 1;
        return CLI_CONTINUE;
    }
    if (o->type == CLI_OPT_STR) {
        *(const char **)o->dest = value;
        return CLI_CONTINUE;
    }
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < o->min || v > o->max) {
        char range[64];
        cli_fmt_int_range(range, o->min, o->max);
        return cli_usage_error(ctx, spec, "%s %s: expected %s", shown, value, range);
    }
    *(int *)o->dest = (int)v;
    return CLI_CONTINUE;
}

void cli_fmt_int_range(char buf[64], long min, long max)
{
    if (max == min + 1)
        snprintf(buf, 64, "%ld or %ld", min, max);
    else
        snprintf(buf, 64, "an integer in [%ld, %ld]", min, max);
}

size_t cli_edit_distance(const char *a, const char *b)
{
    /* Three rows of the optimal-string-alignment table (Levenshtein plus
     * swapping two neighbours, the commonest typo: "lgo"). Words longer
     * than a row are never close to anything a user meant. */
    enum { MAXW = 64 };
    size_t la = strlen(a), lb = strlen(b), rows[3][MAXW + 1];
    if (la > MAXW || lb > MAXW)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        rows[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t *prev2 = rows[(i + 1) % 3], *prev = rows[(i + 2) % 3], *cur = rows[i % 3];
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
    }
    return rows[la % 3][lb];
}

/* The long option nearest to name (within 2 edits, and less than half
 * its length), or NULL. */
static const char *nearest_long(const cli_opt *const *tables, const char *name, size_t len)
{
    char word[65];
    if (len >= sizeof word)
        return NULL;
    memcpy(word, name, len);
    word[len] = '\0';
    const char *best = NULL;
    size_t best_d = 3;
    for (int t = 0; tables[t]; t++)
        for (const cli_opt *o = tables[t]; o->long_name || o->short_name; o++) {
            if (!o->long_name)
                continue;
            size_t d = cli_edit_distance(word, o->long_name);
            if (d < best_d && 2 * d < strlen(o->long_name)) {
                best = o->long_name;
                best_d = d;
            }
        }
    return best;
}

/* The shared loop. stop_at_positional: the global parse in front of the
 * command stops at the first non-option and reports its index; it passes
 * over options it does not know (the command's, like -f of -qf), which main
 * hands to the command along with the rest. */
static int parse(cli_ctx *ctx, const cli_spec *spec, const cli_opt *const *tables, int argc,
                 char **argv, int stop_at_positional, char **pos, int *npos, int *stop_index)
{
    int only_positional = 0;
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            if (stop_at_positional) {
                *stop_index = i;
                return CLI_CONTINUE;
            }
            if (*npos >= spec->max_args)
                return cli_usage_error(ctx, spec, "unexpected argument '%s'", a);
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_print_help(spec);
            return CLI_EXIT_OK;
        }
        if (a[1] == '-') { /* --long[=value] */
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const cli_opt *o = find_opt(tables, name, len, 0);
            if (!o && stop_at_positional)
                continue; /* the command's own: main hands it the word */
            if (!o) {
                const char *near = nearest_long(tables, name, len);
                if (near)
                    return cli_usage_error(ctx, spec, "unknown option '--%.*s'; did you mean '--%s'?",
                                           (int)len, name, near);
                return cli_usage_error(ctx, spec, "unknown option '--%.*s'", (int)len, name);
            }
            char shown[80];
            snprintf(shown, sizeof shown, "--%s", o->long_name);
            const char *value = NULL;
            if (o->type == CLI_OPT_FLAG) {
                if (eq)
                    return cli_usage_error(ctx, spec, "option '%s' takes no value", shown);
            } else if (eq) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                return cli_usage_error(ctx, spec, "option '%s' needs a value (%s)", shown,
                                       o->metavar);
            }
            int rc = set_opt(ctx, spec, o, shown, value);
            if (rc != CLI_CONTINUE)
                return rc;
            continue;
        }
        /* -abc: bundled flags; the first option taking a value takes the rest
         * of the word, or the next word. */
        for (const char *p = a + 1; *p; p++) {
            const cli_opt *o = find_opt(tables, NULL, 0, *p);
            char shown[8];
            snprintf(shown, sizeof shown, "-%c", *p);
            if (*p == 'h') {
                cli_print_help(spec);
                return CLI_EXIT_OK;
            }
            if (!o && stop_at_positional)
                continue; /* the command's own flag, as in -qf */
            if (!o)
                return cli_usage_error(ctx, spec, "unknown option '%s'", shown);
            if (o->type == CLI_OPT_FLAG) {
                *(int *)o->dest = 1;
                continue;
            }
            const char *value;
            if (p[1])
                value = p + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return cli_usage_error(ctx, spec, "option '%s' needs a value (%s)", shown,
                                       o->metavar);
            int rc = set_opt(ctx, spec, o, shown, value);
            if (rc != CLI_CONTINUE)
                return rc;
            break;
        }
    }
    if (stop_at_positional) {
        *stop_index = argc;
        return CLI_CONTINUE;
    }
    if (*npos < spec->min_args)
        return cli_usage_error(ctx, spec, "missing argument %s",
                               spec->args ? spec->args[*npos] : "");
    return CLI_CONTINUE;
}

int cli_parse(cli_ctx *ctx, const cli_spec *spec, int argc, char **argv, char **pos, int *npos)
{
    cli_opt g[5];
    global_opts(ctx, g);
    const cli_opt *tables[3] = {spec->opts ? spec->opts : g, spec->opts ? g : NULL, NULL};
    int rc = parse(ctx, spec, tables, argc, argv, 0, pos, npos, NULL);
    if (rc != CLI_CONTINUE)
        return rc;
    if (ctx->repo_path && !takes_repo(spec))
        return cli_usage_error(ctx, spec, "option -R does not apply to '%s': it uses no repository",
                               spec->name);
    if (ctx->level && !takes_level(spec))
        return cli_usage_error(ctx, spec,
                               "option --level does not apply to '%s': only add-base and commit "
                               "compress new chunks",
                               spec->name);
    return CLI_CONTINUE;
}

int cli_parse_global(cli_ctx *ctx, const cli_spec *spec, int argc, char **argv, int *cmd_index)
{
    cli_opt g[5];
    int npos;
    global_opts(ctx, g);
    const cli_opt *tables[3] = {spec->opts ? spec->opts : g, spec->opts ? g : NULL, NULL};
    return parse(ctx, spec, tables, argc, argv, 1, NULL, &npos, cmd_index);
}
