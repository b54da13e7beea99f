/*
 * exclude_opt.c - the repeatable --exclude GLOB of add-base and commit.
 * The option parser keeps one value per option, so every occurrence is
 * taken out of argv first; the command's table still lists the option for
 * its help.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* 1 if argument a (an option) takes the next argument as its value: a
 * long option of the table or a global one without "=", or a bundle of
 * short options whose last one takes a value. */
static int takes_value(const cli_spec *spec, const char *a)
{
    static const char *const global_long[] = {"repo", "jobs", "level", NULL};
    if (a[1] == '-') {
        const char *name = a + 2;
        if (strchr(name, '='))
            return 0;
        for (const cli_opt *o = spec->opts; o && (o->long_name || o->short_name); o++)
            if (o->long_name && !strcmp(o->long_name, name))
                return o->type != CLI_OPT_FLAG;
        for (int i = 0; global_long[i]; i++)
            if (!strcmp(global_long[i], name))
                return 1;
        return 0;
    }
    char last = a[strlen(a) - 1];
    if (strlen(a) > 2) /* "-m" is the only form that leaves the value apart */
        return 0;
    if (last == 'R' || last == 'j')
        return 1;
    for (const cli_opt *o = spec->opts; o && (o->long_name || o->short_name); o++)
        if (o->short_name == last)
            return o->type != CLI_OPT_FLAG;
    return 0;
}

int cli_take_excludes(cli_ctx *ctx, const cli_spec *spec, int *argc, char **argv, const char ***out,
                      size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    const char **globs = cli_xmalloc(((size_t)*argc + 1) * sizeof *globs);
    size_t n = 0;
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) { /* the rest are positionals */
            while (i < *argc)
                argv[w++] = argv[i++];
            break;
        }
        if (!strcmp(a, "--exclude") || !strncmp(a, "--exclude=", 10)) {
            const char *g = a[9] == '=' ? a + 10 : i + 1 < *argc ? argv[++i] : NULL;
            if (!g || !*g) {
                free(globs);
                return cli_usage_error(ctx, spec, "option '--exclude' needs a GLOB");
            }
            globs[n++] = g;
            continue;
        }
        argv[w++] = argv[i];
        if (a[0] == '-' && a[1] && takes_value(spec, a) && i + 1 < *argc)
            argv[w++] = argv[++i];
    }
    argv[w] = NULL;
    *argc = w;
    *out = globs;
    *n_out = n;
    return CLI_CONTINUE;
}
