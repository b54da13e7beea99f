/*
 * test_outputs.c - the output modules below export, save-delta, checkout and
 * load-delta: pathguard (what an output must keep), temporary (locked,
 * registered, swept temporaries), outfile (zstd-like file outputs) and the
 * public wd_save_delta_from_paths_ex / wd_remove_temporaries.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outdir.h"
#include "outfile.h"
#include "pathguard.h"
#include "temporary.h"
#include "testutil.h"
#include "wdrepo.h"

static char tmp[PATH_MAX];

static const char *at(const char *rel)
{
    static char buf[4][PATH_MAX];
    static int k;
    k = (k + 1) % 4;
    if (snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, rel) >= (int)sizeof buf[k])
        abort();
    return buf[k];
}

static int exists(const char *p)
{
    struct stat sb;
    return lstat(p, &sb) == 0;
}

static void put(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Temporaries of rel in tmp (names starting "." + rel + the tag). */
static int count_temps(const char *rel)
{
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof prefix, ".%s" WD__TEMP_TAG, rel);
    DIR *d = opendir(tmp);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += !strncmp(e->d_name, prefix, strlen(prefix));
    if (d)
        closedir(d);
    return n;
}

static void test_guard(void)
{
    CHECK(mkdir(at("in"), 0777) == 0);
    put(at("in/a.txt"), "a");
    put(at("in.wdelta"), "w");
    CHECK(mkdir(at("cwd"), 0777) == 0);
    CHECK(symlink("in", at("inlink")) == 0);
    CHECK(link(at("in/a.txt"), at("hard.txt")) == 0);
    char in[PATH_MAX], inw[PATH_MAX]; /* at()'s buffers are reused */
    snprintf(in, sizeof in, "%s", at("in"));
    snprintf(inw, sizeof inw, "%s", at("in.wdelta"));
    const wd__keep keep[] = {{in, "the input"}, {inw, "the file"}};
    char saved[PATH_MAX];
    CHECK(getcwd(saved, sizeof saved) != NULL);
    CHECK(chdir(at("cwd")) == 0);

    /* folders: every spelling of the input, of the cwd and of folders above */
    const char *refused[] = {"../in", "../in/", "../cwd/../in", "../inlink", "../in/sub",
                             ".", "../cwd", "..", tmp, "/"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        char real[PATH_MAX];
        CHECK_RC(wd__path_real(refused[i], real), 0);
        CHECK_RC(wd__guard_folder(real, refused[i], keep, 2), WD_EUSAGE);
    }
    char real[PATH_MAX];
    CHECK_RC(wd__path_real(at("out"), real), 0);
    CHECK_RC(wd__guard_folder(real, "out", keep, 2), 0);
    CHECK_RC(wd__path_real("sub", real), 0); /* inside the cwd is fine */
    CHECK_RC(wd__guard_folder(real, "sub", keep, 2), 0);

    /* files */
    const char *bad_files[] = {"../in/a.txt", "../in/new.wdelta", "../hard.txt", "../in.wdelta",
                               "../inlink/a.txt"};
    for (size_t i = 0; i < sizeof bad_files / sizeof *bad_files; i++) {
        CHECK_RC(wd__path_real(bad_files[i], real), 0);
        CHECK_RC(wd__guard_file(real, -1, "output", keep, 2), WD_EUSAGE);
    }
    CHECK_RC(wd__path_real(at("other.wdelta"), real), 0);
    CHECK_RC(wd__guard_file(real, -1, "output", keep, 2), 0);
    int fd = open(at("in/a.txt"), O_WRONLY | O_APPEND);
    CHECK_RC(wd__guard_file(NULL, fd, "standard output", keep, 2), WD_EUSAGE);
    close(fd);
    CHECK(chdir(saved) == 0);
}

static void test_temporaries(void)
{
    wd__temp live, dir;
    CHECK_RC(wd__temp_create(&live, at("t.wdelta"), 0), 0);
    CHECK(exists(live.path) && live.fd >= 0);
    /* an unlocked one of the same pattern is stale; the live one is not */
    char stale[PATH_MAX];
    CHECK(snprintf(stale, sizeof stale, "%s/.t.wdelta" WD__TEMP_TAG "Stale1", tmp) < (int)sizeof stale);
    put(stale, "x");
    put(at(".t.wdelta.wdrepo-tmp-short"), "x"); /* not the pattern */
    wd__temp_sweep(at("t.wdelta"));
    CHECK(exists(live.path));
    CHECK(!exists(stale));
    CHECK(exists(at(".t.wdelta.wdrepo-tmp-short")));
    CHECK_RC(wd__temp_rename(&live, at("t.wdelta")), 0);
    CHECK(exists(at("t.wdelta")) && live.fd < 0);
    wd__temp_discard(&live); /* renamed: nothing to remove */
    CHECK(exists(at("t.wdelta")));

    /* swap: the new folder takes the place, the old one goes */
    CHECK(mkdir(at("d"), 0777) == 0);
    put(at("d/old.txt"), "old");
    CHECK_RC(wd__temp_create(&dir, at("d"), 1), 0);
    char f[PATH_MAX + 16];
    snprintf(f, sizeof f, "%s/new.txt", dir.path);
    put(f, "new");
    CHECK_RC(wd__temp_swap(&dir, at("d")), 0);
    CHECK(exists(at("d/new.txt")) && !exists(at("d/old.txt")));
    wd__temp_discard(&dir);
    CHECK(count_temps("d") == 0);

    /* a temporary after wd_remove_temporaries: gone, and no new one made
     * (the flag stays set: this test comes last) */
    wd__temp a, b;
    CHECK_RC(wd__temp_create(&a, at("u"), 1), 0);
    snprintf(f, sizeof f, "%s/x", a.path);
    put(f, "x");
    CHECK_RC(wd__temp_create(&b, at("v.wdelta"), 0), 0);
    wd_remove_temporaries();
    CHECK(!exists(a.path) && !exists(b.path));
    CHECK_RC(wd__temp_rename(&b, at("v.wdelta")), WD_EIO);
    wd__temp_discard(&a);
    wd__temp_discard(&b);
    wd__temp c;
    CHECK_RC(wd__temp_create(&c, at("w"), 1), WD_EIO);
    CHECK(count_temps("u") == 0 && count_temps("v.wdelta") == 0 && count_temps("w") == 0);
}

static void test_outfile(void)
{
    wd__outfile *f;
    CHECK_RC(wd__outfile_open(&f, "-", 0, NULL, 0), 0);
    CHECK(!wd__outfile_seekable(f) && wd__outfile_fd(f) == STDOUT_FILENO);
    CHECK(!strcmp(wd__outfile_name(f), "standard output"));
    wd__outfile_abort(f);
    CHECK(fcntl(STDOUT_FILENO, F_GETFD) != -1); /* standard output stays open */

    put(at("o.wdelta"), "old");
    CHECK_RC(wd__outfile_open(&f, at("o.wdelta"), 0, NULL, 0), WD_EEXISTS);
    CHECK_RC(wd__outfile_open(&f, tmp, WD_OUTPUT_FORCE, NULL, 0), WD_EUSAGE);
    CHECK_RC(wd__outfile_open(&f, at("o.wdelta"), WD_OUTPUT_FORCE, NULL, 0), 0);
    CHECK(wd__outfile_seekable(f));
    CHECK_RC(wd__file_write(wd__outfile_fd(f), "new", 3, "o"), 0);
    wd__outfile_abort(f); /* abandoned: the old content stays */
    FILE *r = fopen(at("o.wdelta"), "r");
    char got[8] = {0};
    CHECK(r && fread(got, 1, sizeof got - 1, r) == 3 && !strcmp(got, "old"));
    if (r)
        fclose(r);
    CHECK(count_temps("o.wdelta") == 0);

    CHECK_RC(wd__outfile_open(&f, "/dev/null", 0, NULL, 0), 0);
    CHECK(!wd__outfile_seekable(f));
    CHECK_RC(wd__file_write(wd__outfile_fd(f), "x", 1, "null"), 0);
    CHECK_RC(wd__outfile_commit(f), 0);
    struct stat sb;
    CHECK(stat("/dev/null", &sb) == 0 && S_ISCHR(sb.st_mode));
}

static void test_save_delta_ex(void)
{
    char ft[PATH_MAX], base[PATH_MAX], hash[WD_HEX_SIZE] = "";
    snprintf(ft, sizeof ft, "%s/models/ft-bf16", tu_fixtures());
    snprintf(base, sizeof base, "%s/models/base-bf16", tu_fixtures());
    CHECK_RC(wd_save_delta_from_paths_ex(at("s.wdelta"), ft, base, NULL, 2, 0, hash, NULL), 0);
    wd_wdelta_info *info = NULL;
    CHECK_RC(wd_inspect_file(&info, at("s.wdelta")), 0);
    CHECK(info && !strcmp(info->parent_hash, hash));
    wd_inspect_file_free(info);
    CHECK_RC(wd_save_delta_from_paths_ex(at("s.wdelta"), ft, base, NULL, 2, 0, NULL, NULL), WD_EEXISTS);
    CHECK_RC(wd_save_delta_from_paths_ex(at("s.wdelta"), ft, base, NULL, 2, WD_OUTPUT_FORCE, NULL, NULL), 0);
    /* the deltatensors-compatible call replaces, as Python's open() would */
    CHECK_RC(wd_save_delta_from_paths(at("s.wdelta"), ft, base, NULL, 2, NULL), 0);
    char inside[PATH_MAX + 32];
    snprintf(inside, sizeof inside, "%s/config.json", base);
    CHECK_RC(wd_save_delta_from_paths(inside, ft, base, NULL, 2, NULL), WD_EUSAGE);
}

int main(void)
{
    char made[PATH_MAX];
    snprintf(made, sizeof made, "%s/wdout.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(made) || !realpath(made, tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_guard();
    test_outfile();
    test_save_delta_ex();
    test_temporaries(); /* last: it ends with wd_remove_temporaries */
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return tu_finish("test_outputs");
}
