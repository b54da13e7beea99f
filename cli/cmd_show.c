/*
 * cmd_show.c - `wdrepo show REF:PATH`: writes one stored non-weight file
 * (config.json, tokenizer.json, ...) to standard output, byte for byte.
 */
#include "cli.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static const char *const args[] = {"REF:PATH", NULL};

static const cli_spec spec = {
    "show", "REF:PATH",
    "Write the file PATH of the stored folder REF (config.json, tokenizer.json,\n"
    "README.md...) to standard output, exactly as it was stored, each chunk\n"
    "checked against its id. Weight files (*.safetensors) are refused: their\n"
    "tensors are stored apart; 'wdrepo checkout REF OUT_DIR --only PATH' writes\n"
    "them. An unknown PATH is an error naming the files REF has.\n",
    NULL, args, 1, 1,
};

typedef struct {
    int failed_errno;
} sink;

/* write(2) straight to fd 1: the bytes may be binary and large, and a
 * closed pipe must end the command (EPIPE) rather than fill a buffer. */
static int to_stdout(void *ud, const void *data, size_t len)
{
    sink *s = ud;
    const char *p = data;
    while (len) {
        ssize_t n = write(STDOUT_FILENO, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s->failed_errno = n < 0 ? errno : EIO;
            return WD_EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int cmd_show(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    char *colon = strchr(pos[0], ':');
    if (!colon || colon == pos[0] || !colon[1])
        return cli_usage_error(ctx, &spec, "expected REF:PATH (as 'base:config.json'), got '%s'", pos[0]);
    *colon = '\0';
    const char *ref = pos[0], *path = colon + 1;
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo)) != CLI_EXIT_OK)
        return rc;
    sink s = {0};
    rc = wd_show(repo, ref, path, to_stdout, &s);
    wd_repo_close(repo);
    if (rc == WD_OK)
        return CLI_EXIT_OK;
    if (s.failed_errno) {
        cli_errorf(ctx, "cannot write to standard output: %s", strerror(s.failed_errno));
        return CLI_EXIT_FAIL;
    }
    return cli_lib_error(ctx, rc);
}
