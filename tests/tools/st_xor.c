/*
 * st_xor.c - writes the byte-wise XOR of two models' tensor data (tensors
 * matched by name, in sorted-name order), streaming: the benchmark's naive
 * lossless-delta baseline ("zstd -19 of the raw XOR").
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

#define BLOCK ((size_t)1 << 20)

typedef struct {
    const char *name;
    const wd_st_file *file;
    const wd_st_tensor *t;
} entry;

typedef struct {
    wd_st_file **files;
    size_t n_files;
    entry *e;
    size_t n;
} side;

static char *tmp_path; /* removed on failure */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("st_xor: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (tmp_path)
        unlink(tmp_path);
    exit(1);
}

static void usage(FILE *f)
{
    fputs("usage: st_xor [-q] DIR_A DIR_B OUT\n"
          "       st_xor [-q] [-o OUT] A.safetensors... -- B.safetensors...\n"
          "Writes the XOR of the tensor bytes of B against A, tensor by tensor in\n"
          "sorted-name order, to OUT ('-' or no -o: stdout). A tensor of B that A\n"
          "lacks or holds with another byte size is written as B has it.\n",
          f);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static void add_file(side *s, const char *path)
{
    wd_st_file *f;
    if (wd__st_open(&f, path) != 0)
        die("cannot read '%s': %s", path, wd_errmsg());
    s->files = xrealloc(s->files, (s->n_files + 1) * sizeof *s->files);
    s->files[s->n_files++] = f;
    s->e = xrealloc(s->e, (s->n + f->n_tensors) * sizeof *s->e);
    for (size_t i = 0; i < f->n_tensors; i++)
        s->e[s->n++] = (entry){f->tensors[i].name, f, &f->tensors[i]};
}

/* A folder contributes every *.safetensors file in it; the index.json is
 * not needed since names are matched across all shards. */
static void add_path(side *s, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        die("cannot open '%s': %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        add_file(s, path);
        return;
    }
    DIR *d = opendir(path);
    if (!d)
        die("cannot open '%s': %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || !ends_with(de->d_name, ".safetensors"))
            continue;
        names = xrealloc(names, (n + 1) * sizeof *names);
        size_t len = strlen(path) + strlen(de->d_name) + 2;
        names[n] = xrealloc(NULL, len);
        snprintf(names[n++], len, "%s/%s", path, de->d_name);
    }
    closedir(d);
    if (n == 0)
        die("no *.safetensors file in '%s'", path);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        add_file(s, names[i]);
        free(names[i]);
    }
    free(names);
}

static void finish_side(side *s, const char *label)
{
    qsort(s->e, s->n, sizeof *s->e, cmp_entry);
    for (size_t i = 1; i < s->n; i++)
        if (strcmp(s->e[i - 1].name, s->e[i].name) == 0)
            die("tensor '%s' appears twice in %s", s->e[i].name, label);
}

static void read_block(const entry *e, uint64_t off, void *buf, size_t len)
{
    if (wd__st_read(e->file, e->t, off, buf, len) != 0)
        die("cannot read tensor '%s' of '%s': %s", e->name, e->file->path, wd_errmsg());
}

static void put(FILE *out, const void *buf, size_t len, const char *out_name)
{
    if (fwrite(buf, 1, len, out) != len)
        die("cannot write '%s': %s", out_name, strerror(errno));
}

int main(int argc, char **argv)
{
    side a = {0}, b = {0};
    const char *out_name = "-";
    int quiet = 0, have_sep = 0;
    const char *pos[3];
    int npos = 0;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--") == 0)
            have_sep = 1;
    int after_sep = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(arg, "-q") == 0) {
            quiet = 1;
        } else if (strcmp(arg, "-o") == 0 && i + 1 < argc) {
            out_name = argv[++i];
        } else if (strcmp(arg, "--") == 0) {
            after_sep = 1;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            fprintf(stderr, "st_xor: unknown option '%s'\n", arg);
            usage(stderr);
            return 2;
        } else if (have_sep) {
            add_path(after_sep ? &b : &a, arg);
        } else if (npos < 3) {
            pos[npos++] = arg;
        } else {
            npos++;
        }
    }
    if (!have_sep) {
        if (npos != 3) {
            fprintf(stderr, "st_xor: expected DIR_A DIR_B OUT\n");
            usage(stderr);
            return 2;
        }
        add_path(&a, pos[0]);
        add_path(&b, pos[1]);
        out_name = pos[2];
    } else if (a.n_files == 0 || b.n_files == 0) {
        fprintf(stderr, "st_xor: need files on both sides of --\n");
        usage(stderr);
        return 2;
    }
    finish_side(&a, "A");
    finish_side(&b, "B");

    FILE *out = stdout;
    if (strcmp(out_name, "-") == 0) {
        if (isatty(STDOUT_FILENO))
            die("refusing to write binary data to a terminal; give OUT or redirect");
    } else {
        /* Temp + rename, so a failed run leaves no truncated OUT behind. */
        size_t len = strlen(out_name) + 32;
        tmp_path = xrealloc(NULL, len);
        snprintf(tmp_path, len, "%s.tmp-%ld", out_name, (long)getpid());
        out = fopen(tmp_path, "wb");
        if (!out)
            die("cannot create '%s': %s", tmp_path, strerror(errno));
    }

    unsigned char *ba = xrealloc(NULL, BLOCK), *bb = xrealloc(NULL, BLOCK);
    uint64_t xor_bytes = 0, whole_bytes = 0, zero_bytes = 0;
    size_t n_xor = 0, n_whole = 0, n_only_a = 0;
    size_t i = 0, j = 0;
    while (j < b.n) {
        int c = i < a.n ? strcmp(a.e[i].name, b.e[j].name) : 1;
        if (c < 0) {
            n_only_a++;
            i++;
            continue;
        }
        const entry *eb = &b.e[j++];
        const entry *ea = c == 0 ? &a.e[i++] : NULL;
        if (ea && ea->t->nbytes != eb->t->nbytes) {
            if (!quiet)
                fprintf(stderr, "st_xor: '%s' differs in size; written whole\n", eb->name);
            ea = NULL;
        }
        if (ea)
            n_xor++;
        else
            n_whole++;
        for (uint64_t off = 0; off < eb->t->nbytes; off += BLOCK) {
            size_t len = eb->t->nbytes - off < BLOCK ? (size_t)(eb->t->nbytes - off) : BLOCK;
            read_block(eb, off, bb, len);
            if (ea) {
                read_block(ea, off, ba, len);
                for (size_t k = 0; k < len; k++) {
                    bb[k] ^= ba[k];
                    zero_bytes += bb[k] == 0;
                }
                xor_bytes += len;
            } else {
                whole_bytes += len;
            }
            put(out, bb, len, out_name);
        }
    }
    n_only_a += a.n - i;

    if (out != stdout) {
        if (fclose(out) != 0)
            die("cannot write '%s': %s", tmp_path, strerror(errno));
        if (rename(tmp_path, out_name) != 0)
            die("cannot rename '%s' to '%s': %s", tmp_path, out_name, strerror(errno));
        free(tmp_path);
        tmp_path = NULL;
    } else if (fflush(stdout) != 0) {
        die("cannot write to stdout: %s", strerror(errno));
    }
    if (!quiet)
        fprintf(stderr,
                "st_xor: %zu tensors XORed (%llu bytes, %.1f%% zero), %zu written whole "
                "(%llu bytes), %zu only in A\n",
                n_xor, (unsigned long long)xor_bytes,
                xor_bytes ? 100.0 * (double)zero_bytes / (double)xor_bytes : 0.0, n_whole,
                (unsigned long long)whole_bytes, n_only_a);

    free(ba);
    free(bb);
    for (size_t k = 0; k < a.n_files; k++)
        wd__st_close(a.files[k]);
    for (size_t k = 0; k < b.n_files; k++)
        wd__st_close(b.files[k]);
    free(a.files);
    free(b.files);
    free(a.e);
    free(b.e);
    return 0;
}
