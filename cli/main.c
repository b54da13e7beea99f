/*
 * main.c - entry point of the wdrepo program: global options, the command
 * table, dispatch, and repository lookup. Each command lives in cmd_<name>.c
 * and uses only the public library header.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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
    {"diff", cmd_diff, "compare two objects tensor by tensor and file by file"},
    {"show", cmd_show, "write one stored file (REF:PATH) to standard output"},
    {"stats", cmd_stats, "bytes stored by kind, dedup and compression, database size"},
    {"sql", cmd_sql, "run a read-only SQL query on the repository's views"},
    {"import", cmd_import, "store a deltatensors .wdelta file as a delta; print its id"},
    {"export", cmd_export, "write a delta as a deltatensors .wdelta file"},
    {"tag", cmd_tag, "attach a name to an object (moving the name if it exists)"},
    {"hash", cmd_hash, "print the model hash of a folder (no repository needed)"},
    {"rm", cmd_rm, "remove objects (and, with --recursive, what is built on them)"},
    {"gc", cmd_gc, "delete unreferenced chunks and give the space back"},
    {"save-delta", cmd_save_delta, "write a fine-tune's delta as a deltatensors .wdelta file"},
    {"load-delta", cmd_load_delta, "rebuild a fine-tune folder from a .wdelta file and its base"},
    {"fsck", cmd_fsck, "verify every stored chunk and record; exit 3 when damage is found"},
    {"remote", cmd_remote, "add, list or remove S3 remotes"},
    {"push", cmd_push, "send names and their objects to an S3 remote"},
    {"fetch", cmd_fetch, "receive a remote's objects (names unchanged)"},
    {"pull", cmd_pull, "fetch, then set local names to the remote's"},
    {"clone", cmd_clone, "create a repository from an S3 remote (--lazy: metadata only)"},
    {"help", cmd_help, "show the help of a command"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static int show_version;

static const cli_opt main_opts[] = {
    {"version", 0, CLI_OPT_FLAG, &show_version, NULL, "print the version and exit", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};

/* The program's help text lists the command table; built once in main. */
static char main_description[4096];

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
                 "exit codes: 0 ok, 1 failure, 2 usage error, 3 fsck found damage.\n");
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* "did you mean": the command within 2 edits (and fewer than half its
 * letters) of what was typed, else one it starts, else NULL. */
static const char *nearest_command(const char *typed)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < N_COMMANDS; i++) {
        size_t d = cli_edit_distance(typed, commands[i].name);
        if (d < best_d && 2 * d < strlen(commands[i].name)) {
            best = commands[i].name;
            best_d = d;
        }
    }
    for (size_t i = 0; !best && *typed && i < N_COMMANDS; i++)
        if (strncmp(commands[i].name, typed, strlen(typed)) == 0)
            best = commands[i].name;
    return best;
}

static int unknown_command(cli_ctx *ctx, const cli_spec *spec, const char *typed)
{
    const char *near = nearest_command(typed);
    if (near)
        return cli_usage_error(ctx, spec, "unknown command '%s'; did you mean '%s'?", typed, near);
    return cli_usage_error(ctx, spec, "unknown command '%s'", typed);
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
        return unknown_command(ctx, &help_spec, pos[0]);
    /* Each command prints its own help when given -h. */
    static char dash_h[] = "-h";
    char *sub_argv[3] = {pos[0], dash_h, NULL};
    return c->fn(ctx, 2, sub_argv);
}

int cli_holds_repo(const char *dir, char *sub, size_t size)
{
    char db[PATH_MAX + 32];
    if ((size_t)snprintf(sub, size, "%s/.wdrepo", dir) >= size)
        return 0;
    snprintf(db, sizeof db, "%s/repo.db", sub);
    return access(db, F_OK) == 0;
}

static int is_repo(const char *dir)
{
    char db[PATH_MAX + 16];
    snprintf(db, sizeof db, "%s/repo.db", dir);
    return access(db, F_OK) == 0;
}

int cli_open_repo(cli_ctx *ctx, unsigned flags, wd_repo **out)
{
    char *found = NULL;
    const char *path = ctx->repo_path;
    const char *env = getenv("WDREPO_DIR");
    const char *given = path ? "-R" : NULL;
    char sub[PATH_MAX];
    int rc;

    *out = NULL;
    if (!path && env && *env) {
        path = env;
        given = "$WDREPO_DIR";
    }
    if (given && !is_repo(path)) {
        /* Like git -C: a project folder holding .wdrepo names that
         * repository. Anything else gets advice that cannot create a second
         * repository beside the one meant. */
        if (cli_holds_repo(path, sub, sizeof sub)) {
            path = sub;
        } else {
            cli_errorf(ctx,
                       "%s names '%s', which is not a wdrepo repository (no repo.db there or in "
                       "its .wdrepo); %s, or create one there with 'wdrepo init'",
                       given, path,
                       given[0] == '-' ? "give the repository's folder"
                                       : "set WDREPO_DIR to the repository's folder or unset it");
            return CLI_EXIT_FAIL;
        }
    }
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

/* ---- signals --------------------------------------------------------------
 * SIGINT, SIGTERM and SIGHUP are blocked in every thread (threads inherit
 * the mask of main, which blocks them first) and taken by one thread in
 * sigwait: it removes the temporaries the library is writing, then ends
 * the process by the same signal with its default action, so the caller
 * sees the conventional status (128 + N in a shell). A signal ignored when
 * wdrepo starts (nohup, an asynchronous command of a non-interactive
 * shell) stays ignored. */

static sigset_t caught_set;
static atomic_int caught; /* the signal being handled, 0 before */

static void *signal_main(void *arg)
{
    (void)arg;
    int sig = 0;
    while (sigwait(&caught_set, &sig) != 0)
        ;
    atomic_store(&caught, sig);
    wd_remove_temporaries();
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    raise(sig); /* pending on this thread until unblocked just below */
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    _exit(128 + sig); /* not reached: the default action ends the process */
}

static void signals_start(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    int n = 0;
    sigemptyset(&caught_set);
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) {
            sigaddset(&caught_set, sigs[i]);
            n++;
        }
    }
    if (!n || pthread_sigmask(SIG_BLOCK, &caught_set, NULL) != 0)
        return;
    pthread_t th;
    if (pthread_create(&th, NULL, signal_main, NULL) != 0) {
        pthread_sigmask(SIG_UNBLOCK, &caught_set, NULL); /* no cleanup, but Ctrl-C still works */
        return;
    }
    pthread_detach(th);
}

void cli_signal_wait(void)
{
    /* The command may fail because the temporaries went away under it; its
     * error would be noise, and its exit status would hide the signal's. */
    if (atomic_load(&caught))
        for (;;)
            pause();
}

int main(int argc, char **argv)
{
    cli_ctx ctx;
    int cmd_index, rc;

    signals_start();
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
        return unknown_command(&ctx, &main_spec, argv[cmd_index]);
    /* The command sees argv[0] = its own name, like a program of its own,
     * then the options given in front of it (globals, and its own flags
     * bundled with them as in -qf), then the rest. argv has room: the
     * words only move. */
    char *name = argv[cmd_index];
    memmove(argv + 2, argv + 1, sizeof *argv * (size_t)(cmd_index - 1));
    argv[1] = name;
    rc = c->fn(&ctx, argc - 1, argv + 1);
    cli_progress_clear(&ctx);
    cli_signal_wait();
    return rc;
}
