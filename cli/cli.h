/*
 * cli.h - what the files of the wdrepo program share: the run context built
 * from the global options, the option parser (args.c), and the output helpers
 * (output.c: sizes, tables, JSON, progress, error lines).
 */
#ifndef WD_CLI_H
#define WD_CLI_H

#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "wdrepo.h"

/* Exit codes. Documented in docs/CLI.md; they never change. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,  /* the operation failed (any library error) */
    CLI_EXIT_USAGE = 2, /* bad command line */
    CLI_EXIT_DAMAGE = 3 /* fsck found damage */
};

/* Returned by cli_parse when the command should go on running; any other
 * value is the exit code to return at once (0 after -h, 2 after a usage error). */
#define CLI_CONTINUE (-1)

/* State of one run: global options plus what output.c needs. */
typedef struct {
    const char *repo_path; /* -R PATH, or NULL */
    int quiet;             /* -q */
    int threads;           /* -j N; 0 = library default (all cores) */
    int level;             /* --level N; 0 = library default */
    int stdout_tty, stderr_tty;
    /* progress line state (output.c) */
    int progress_shown;    /* characters currently on the progress line */
    double progress_last;  /* monotonic seconds of the last redraw */
    const char *progress_stage;  /* static string from the library */
    uint64_t progress_done, progress_total; /* last values drawn */
} cli_ctx;

/* ---- option parsing (args.c) -------------------------------------------- */

typedef enum { CLI_OPT_FLAG, CLI_OPT_STR, CLI_OPT_INT } cli_opt_type;

/* One option. dest is an int * for FLAG (set to 1) and INT (range-checked
 * against min..max), a const char ** for STR (points into argv). */
typedef struct {
    const char *long_name; /* without the leading "--"; NULL if none */
    char short_name;       /* 0 if none */
    cli_opt_type type;
    void *dest;
    const char *metavar; /* "N", "MSG"... for help and messages */
    const char *help;
    long min, max;
} cli_opt;

typedef struct {
    const char *name;        /* command name, "" for the program itself */
    const char *usage;       /* after "wdrepo NAME ": "DIR [--name N]" */
    const char *description; /* help paragraph, lines end in \n */
    const cli_opt *opts;     /* ends with an all-zero entry; may be NULL */
    const char *const *args; /* positional names for "missing argument X"; NULL-terminated */
    int min_args, max_args;
} cli_spec;

/* Parses argv[1..argc-1] of a command: its own options, -h/--help and the
 * global options (which may follow the command too). Positionals go to pos
 * (room for spec->max_args), their count to *npos. Prints help (stdout) or
 * a usage error (stderr) itself. Returns CLI_CONTINUE or an exit code. */
int cli_parse(cli_ctx *ctx, const cli_spec *spec, int argc, char **argv, char **pos, int *npos);

/* Parses the global options in front of the command. Returns CLI_CONTINUE
 * with *cmd_index set to the command's index in argv (argc if none), or an
 * exit code (after --version, -h or a usage error). */
int cli_parse_global(cli_ctx *ctx, const cli_spec *spec, int argc, char **argv, int *cmd_index);

/* Prints spec's help to stdout. */
void cli_print_help(const cli_spec *spec);

/* Prints "wdrepo: <what>" and the short usage line to stderr; returns 2. */
int cli_usage_error(cli_ctx *ctx, const cli_spec *spec, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- strategy options (strategy_opts.c) --------------------------------- */

/* What --strategy, --sparsity and --outlier-fraction were given as (NULL:
 * not given); CLI_STRATEGY_OPTS puts the three into a command's table. */
typedef struct {
    const char *strategy, *sparsity, *outlier_fraction;
    const char *quality; /* (issue 11) commit's --quality (CLI_QUALITY_OPT) */
} cli_strategy_args;

/* (issue 11) --quality for lowbit, in commit's table only. */
#define CLI_QUALITY_OPT(args)                                                                   \
    {"quality", 0, CLI_OPT_STR, &(args).quality, "Q",                                          \
     "lowbit: about the bits a matrix element costs, 0.25 <= Q <= 16 (default 4)", 0, 0}

#define CLI_STRATEGY_OPTS(args, strategy_help)                                                  \
    {"strategy", 0, CLI_OPT_STR, &(args).strategy, "S", strategy_help, 0, 0},                  \
    {"sparsity", 0, CLI_OPT_STR, &(args).sparsity, "X",                                        \
     "sparse: share of elements dropped, 0 <= X < 1 (default 0.9)", 0, 0},                      \
    {"outlier-fraction", 0, CLI_OPT_STR, &(args).outlier_fraction, "X",                        \
     "int4: share kept as float16 outliers, 0 < X <= 1 (default 0.01)", 0, 0}

/* Fills *out from a, checked as the library will take it (default_strategy
 * and flags as for wd_strategy_check). Returns CLI_CONTINUE, or 2 after
 * printing the usage error. */
int cli_strategy_opts(cli_ctx *ctx, const cli_spec *spec, const cli_strategy_args *a,
                      const char *default_strategy, unsigned flags, wd_strategy_opts *out);

/* ---- one voice (issue 8: args.c, dtype_opt.c) --------------------------- */

#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x) /* a macro's value as a string literal */

/* "1 or 2", or "an integer in [1, 22]": how every range error words an
 * integer option ("--level 23: expected an integer in [1, 22]"). */
void cli_fmt_int_range(char buf[64], long min, long max);

/* Levenshtein distance of a and b ((size_t)-1 when either is longer than
 * 64 bytes): "did you mean" for commands and options. */
size_t cli_edit_distance(const char *a, const char *b);

/* Reads a --dtype value: the names inspect prints (F32, BF16, F16), torch's
 * and numpy's (float32, torch.bfloat16, fp16, half...), any case. NULL
 * value: WD_OUT_ORIGINAL. Returns CLI_CONTINUE, or 2 after the usage error. */
int cli_out_dtype(cli_ctx *ctx, const cli_spec *spec, const char *value, wd_out_dtype *out);

/* " 'NAME'", " 'NAME' (was 3f0a1b2c3d4e)" when the name moved from object
 * was, or "" without a name: how add-base, commit and tag name a name. */
void cli_fmt_name(char *buf, size_t size, const char *name, const char *was);

/* Strategy options for people: {"sparsity":0.90000000000000002} reads
 * "sparsity 0.9", several joined by ", "; text that is not a JSON object
 * is shown as it is. */
void cli_fmt_options(char *buf, size_t size, const char *options_json);

/* ---- --exclude (exclude_opt.c) ------------------------------------------ */

/* Takes every "--exclude GLOB" and "--exclude=GLOB" out of argv (argc
 * updated; values of the command's other options are left alone) into
 * *out (cli_xmalloc'd, pointing into argv; free it), before cli_parse.
 * Returns CLI_CONTINUE, or 2 after printing a usage error. */
int cli_take_excludes(cli_ctx *ctx, const cli_spec *spec, int *argc, char **argv, const char ***out,
                      size_t *n_out);
#define CLI_EXCLUDE_OPT(dummy)                                                                   \
    {"exclude", 0, CLI_OPT_STR, &(dummy), "GLOB",                                               \
     "leave out files and folders whose path matches GLOB (repeatable; 'original/' a folder)", 0, 0}

/* ---- commands (cmd_*.c) ------------------------------------------------- */

typedef int (*cli_cmd_fn)(cli_ctx *ctx, int argc, char **argv);

int cmd_init(cli_ctx *ctx, int argc, char **argv);
int cmd_add_base(cli_ctx *ctx, int argc, char **argv);
int cmd_commit(cli_ctx *ctx, int argc, char **argv);
int cmd_checkout(cli_ctx *ctx, int argc, char **argv);
int cmd_log(cli_ctx *ctx, int argc, char **argv);
int cmd_inspect(cli_ctx *ctx, int argc, char **argv);
int cmd_tag(cli_ctx *ctx, int argc, char **argv);
int cmd_import(cli_ctx *ctx, int argc, char **argv);
int cmd_export(cli_ctx *ctx, int argc, char **argv);
int cmd_save_delta(cli_ctx *ctx, int argc, char **argv);
int cmd_load_delta(cli_ctx *ctx, int argc, char **argv);
int cmd_hash(cli_ctx *ctx, int argc, char **argv);
int cmd_fsck(cli_ctx *ctx, int argc, char **argv);
int cmd_rm(cli_ctx *ctx, int argc, char **argv);
int cmd_gc(cli_ctx *ctx, int argc, char **argv);
/* read-only queries (issue 8) */
int cmd_stats(cli_ctx *ctx, int argc, char **argv);
int cmd_diff(cli_ctx *ctx, int argc, char **argv);
int cmd_show(cli_ctx *ctx, int argc, char **argv);
int cmd_sql(cli_ctx *ctx, int argc, char **argv);
/* remotes (issue 10) */
int cmd_remote(cli_ctx *ctx, int argc, char **argv);
int cmd_push(cli_ctx *ctx, int argc, char **argv);
int cmd_fetch(cli_ctx *ctx, int argc, char **argv);
int cmd_pull(cli_ctx *ctx, int argc, char **argv);
int cmd_clone(cli_ctx *ctx, int argc, char **argv);
/* The summary of a push, fetch, pull or clone on stderr (json: stdout). */
int cli_transfer_report(cli_ctx *ctx, const char *verb, const wd_transfer_result *r, int json);
/* In a lazy clone, fetches the chunks ref needs (cmd_clone.c); else
 * nothing. Returns an exit code (0 to go on). */
int cli_remote_hydrate(cli_ctx *ctx, const char *ref);
/* Whether arg names a configured remote of repo, or is a URL. */
int cli_is_remote(wd_repo *repo, const char *arg);

/* ---- repository --------------------------------------------------------- */

/* Opens the repository named by -R, else $WDREPO_DIR, else the first .wdrepo
 * found from the current directory upwards. Prints the error and returns 1
 * on failure, 0 on success. */
int cli_open_repo(cli_ctx *ctx, unsigned flags, wd_repo **out);

/* Whether dir holds a repository in dir/.wdrepo (which sub, of size bytes,
 * receives): what -R DIR names when DIR is no repository itself. */
int cli_holds_repo(const char *dir, char *sub, size_t size);

/* ---- signals (main.c) --------------------------------------------------- */

/* When SIGINT, SIGTERM or SIGHUP is being handled (its temporaries being
 * removed before the process ends by it), waits for the end; else returns
 * at once. Called before printing an error and before exiting. */
void cli_signal_wait(void);

/* ---- output (output.c) -------------------------------------------------- */

/* Allocation that cannot fail: out of memory prints one line and exits 1
 * (a command line tool has nothing better to do). */
void *cli_xmalloc(size_t n);
void *cli_xrealloc(void *p, size_t n);
char *cli_xstrdup(const char *s);

/* "wdrepo: <message>" on stderr (clearing a progress line first). */
void cli_errorf(cli_ctx *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prints the library's message for status rc; returns CLI_EXIT_FAIL. */
int cli_lib_error(cli_ctx *ctx, int rc);

/* A summary line on stderr, unless -q. */
void cli_info(cli_ctx *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Library options from the global flags, with the progress display hooked
 * in when stderr is a terminal and -q is off. */
wd_options cli_wd_options(cli_ctx *ctx);
void cli_progress_clear(cli_ctx *ctx);

/* Flushes stdout; on a write error prints it and returns 1, else 0. */
int cli_finish_stdout(cli_ctx *ctx);

#define CLI_SHORT_ID 12 /* hex digits of a short id */

/* Formatting into caller buffers (sizes are generous). */
void cli_fmt_size(char buf[32], uint64_t bytes);           /* "61.9 KiB" */
void cli_fmt_ratio(char buf[32], uint64_t raw, uint64_t stored); /* "1.54x" or "-" */
void cli_fmt_time(char buf[32], int64_t unix_seconds);     /* "2026-11-27 14:02" local */
void cli_fmt_short_id(char buf[CLI_SHORT_ID + 1], const char *hex);
void cli_fmt_shape(char *buf, size_t size, int ndim, const uint64_t *shape); /* "[24,40]" */

/* Aligned table: cells are copied; columns separated by two spaces; the
 * last column is not padded; a column empty in every row is left out. */
typedef struct cli_table cli_table;
cli_table *cli_table_new(int ncols);
void cli_table_right(cli_table *t, int col); /* right-align column col */
void cli_table_add(cli_table *t, const char *const *cells);
void cli_table_print(const cli_table *t, FILE *f);
void cli_table_free(cli_table *t);

/* JSON helpers. cli_json_print writes j (and frees it) to stdout. */
cJSON *cli_json_object_info(const wd_object_info *o);
void cli_json_add_u64(cJSON *obj, const char *key, uint64_t v);
int cli_json_print(cli_ctx *ctx, cJSON *j);

/* add-base/commit results: the --json object (kind "base" or "delta"; the
 * per-tensor counts only for deltas) and the "N tensors, raw .., stored ..
 * (ratio), new .." part of the summary line. */
cJSON *cli_json_write_result(const wd_write_result *r, const char *kind);
void cli_fmt_write_sizes(char *buf, size_t size, const wd_write_result *r);

#endif
