/*
 * main.c - entry point of the wdrepo program: global options, the command
 * table, dispatch, and repository lookup. Each command lives in cmd_<name>.c
 * and uses only the public library header.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
} cli_command;

static int cmd_help(cli_ctx *ctx, int argc, char **argv);

/* In the order `wdrepo -h` lists them: the everyday workflow first. */
static const cli_command commands[] = {
    {"init", cmd_init, "create an empty repository"},
    {"add-base", cmd_add_base, "store a model folder as a base; print its model hash"},
    {"commit", cmd_commit, "store a fine-tune as a delta against a base or delta; print its id"},
    {"checkout", cmd_checkout, "write a stored model back as a folder"},
    {"log", cmd_log, "list bases and deltas with their lineage, newest first"},
    {"inspect", cmd_inspect, "show one object: fields, tensors, files"},
    {"import", cmd_import, "store a deltatensors .wdelta file as a delta; print its id"},
    {"export", cmd_export, "write a delta as a deltatensors .wdelta file"},
    {"tag", cmd_tag, "attach a name to an object (moving the name if it exists)"},
    {"hash", cmd_hash, "print the model hash of a folder (no repository needed)"},
    {"rm", cmd_rm, "remove objects (and, with --recursive, what is built on them)"},
    {"gc", cmd_gc, "delete unreferenced chunks and give the space back"},
    {"save-delta", cmd_save_delta, "write a fine-tune's delta as a deltatensors .wdelta file"},
    {"load-delta", cmd_load_delta, "rebuild a fine-tune folder from a .wdelta file and its base"},
    {"help", cmd_help, "show the help of a command"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static int show_version;

static const cli_opt main_opts[] = {
    {"version", 0, CLI_OPT_FLAG, &show_version, NULL, "print the version and exit", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};

/* The program's help text lists the command table; built once in main. */
static char main_description[2048];

static cli_spec main_spec = {
    "", "[-R PATH] [-q] [-j N] [--level N] [--version] [-h] COMMAND [ARGS]",
    main_description, main_opts, NULL, 0, 0,
};

static void build_main_description(void)
{
    size_t n = 0;
    n += (size_t)snprintf(main_description + n, sizeof main_description - n,
                          "Keep many fine-tunes of a few base models in little space: bases are\n"
                          "stored whole, fine-tunes as deltas, all content-addressed.\n\n"
                          "commands:\n");
    for (size_t i = 0; i < N_COMMANDS && n < sizeof main_description; i++)
        n += (size_t)snprintf(main_description + n, sizeof main_description - n,
                              "  %-10s %s\n", commands[i].name, commands[i].summary);
    if (n < sizeof main_description)
        snprintf(main_description + n, sizeof main_description - n,
                 "\n'wdrepo COMMAND -h' shows the options of a command.\n"
                 "exit codes: 0 ok, 1 failure, 2 usage error.\n");
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static const char *const help_args[] = {"COMMAND", NULL};
static const cli_spec help_spec = {
    "help", "[COMMAND]", "Show the help of COMMAND, or list the commands.\n", NULL, help_args, 0,
    1,
};

static int cmd_help(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    int npos, rc = cli_parse(ctx, &help_spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    if (npos == 0) {
        cli_print_help(&main_spec);
        return cli_finish_stdout(ctx);
    }
    const cli_command *c = find_command(pos[0]);
    if (!c)
        return cli_usage_error(ctx, &help_spec, "unknown command '%s'", pos[0]);
    /* Each command prints its own help when given -h. */
    static char dash_h[] = "-h";
    char *sub_argv[3] = {pos[0], dash_h, NULL};
    return c->fn(ctx, 2, sub_argv);
}

int cli_open_repo(cli_ctx *ctx, unsigned flags, wd_repo **out)
{
    char *found = NULL;
    const char *path = ctx->repo_path;
    const char *env = getenv("WDREPO_DIR");
    int rc;

    *out = NULL;
    if (!path && env && *env)
        path = env;
    if (!path) {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) {
            cli_errorf(ctx, "cannot read the current directory: %s", strerror(errno));
            return CLI_EXIT_FAIL;
        }
        rc = wd_repo_discover(&found, cwd);
        if (rc != WD_OK)
            return cli_lib_error(ctx, rc);
        path = found;
    }
    rc = wd_repo_open(out, path, flags);
    free(found);
    if (rc != WD_OK) {
        *out = NULL;
        return cli_lib_error(ctx, rc);
    }
    return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
    cli_ctx ctx;
    int cmd_index, rc;

    memset(&ctx, 0, sizeof ctx);
    ctx.stdout_tty = isatty(STDOUT_FILENO);
    ctx.stderr_tty = isatty(STDERR_FILENO);
    build_main_description();

    rc = cli_parse_global(&ctx, &main_spec, argc, argv, &cmd_index);
    if (rc != CLI_CONTINUE)
        return rc;
    if (show_version) {
        printf("wdrepo %s\n", WD_VERSION_STRING);
        return cli_finish_stdout(&ctx);
    }
    if (cmd_index >= argc)
        return cli_usage_error(&ctx, &main_spec, "missing command");
    const cli_command *c = find_command(argv[cmd_index]);
    if (!c)
        return cli_usage_error(&ctx, &main_spec, "unknown command '%s'", argv[cmd_index]);
    /* The command sees argv[0] = its own name, like a program of its own. */
    rc = c->fn(&ctx, argc - cmd_index, argv + cmd_index);
    cli_progress_clear(&ctx);
    return rc;
}
