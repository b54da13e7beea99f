/*
 * folder.c - scanning and hashing model folders (see folder.h).
 */
#include "folder.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "hash.h"
#include "shardindex.h"
#include "tensorhash.h"

int wd__plain_name_ok(const char *name)
{
    if (!name[0] || !strcmp(name, ".") || !strcmp(name, ".."))
        return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const wd_folder_file *)a)->path, ((const wd_folder_file *)b)->path);
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const wd_folder_tensor *)a)->name, ((const wd_folder_tensor *)b)->name);
}

void wd__folder_close(wd_folder *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_files; i++) {
        free(f->files[i].path);
        wd__st_close(f->files[i].st);
    }
    free(f->files);
    free(f->tensors);
    free(f->dir);
    free(f);
}

/* 1 if path (relative to the folder) matches one of the --exclude globs;
 * a folder also as "path/", so that "original/" and "original/" followed
 * by '*' leave the whole folder out. fnmatch without flags: '*' crosses
 * '/'. */
static int excluded(const wd_folder *f, const char *path, int is_dir)
{
    char with_slash[PATH_MAX];
    snprintf(with_slash, sizeof with_slash, "%s/", path);
    for (size_t i = 0; i < f->n_exclude; i++)
        if (!fnmatch(f->exclude[i], path, 0) || (is_dir && !fnmatch(f->exclude[i], with_slash, 0)))
            return 1;
    return 0;
}

static int add_file(wd_folder *f, size_t *cap, const char *path, const char *full, const struct stat *sb)
{
    if (f->n_files == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        wd_folder_file *nf = realloc(f->files, ncap * sizeof *nf);
        if (!nf)
            return WD_NOMEM();
        f->files = nf;
        *cap = ncap;
    }
    wd_folder_file *ff = &f->files[f->n_files];
    memset(ff, 0, sizeof *ff);
    if (!(ff->path = strdup(path)))
        return WD_NOMEM();
    f->n_files++;
    ff->size = (uint64_t)sb->st_size;
    /* Weights are the top level's shards: a subfolder's *.safetensors
     * (an ONNX export, an original checkpoint) is a file like any other. */
    ff->is_shard = !strchr(path, '/') && ends_with(path, ".safetensors");
    return ff->is_shard ? wd__st_open(&ff->st, full) : 0;
}

/* Adds the files of folder rel ("" for the top) and, recursively, of its
 * subfolders, to depth WD_FOLDER_MAX_DEPTH. Hidden folders are skipped;
 * symbolic links to files are followed (the Hugging Face cache links its
 * files to blobs elsewhere), links to folders are refused (they may leave
 * the folder or loop). */
static int scan_dir(wd_folder *f, const char *rel, int depth, size_t *cap)
{
    char *dpath = NULL;
    if (asprintf(&dpath, "%s%s%s", f->dir, *rel ? "/" : "", rel) < 0)
        return WD_NOMEM();
    DIR *d = opendir(dpath);
    if (!d) {
        int rc = wd__error_errno(errno == ENOENT ? WD_ENOTFOUND : WD_EIO, "cannot open folder '%s'", dpath);
        free(dpath);
        return rc;
    }
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *full = NULL, *path = NULL;
        if (asprintf(&full, "%s/%s", dpath, e->d_name) < 0 ||
            asprintf(&path, "%s%s%s", rel, *rel ? "/" : "", e->d_name) < 0) {
            free(full);
            rc = WD_NOMEM();
            break;
        }
        struct stat sb, lsb;
        if (lstat(full, &lsb) != 0 || stat(full, &sb) != 0) {
            rc = wd__error_errno(WD_EIO, "cannot stat '%s'", full);
        } else if (S_ISDIR(sb.st_mode)) {
            if (e->d_name[0] == '.' || excluded(f, path, 1) ||
                (f->has_never && sb.st_dev == f->never_dev && sb.st_ino == f->never_ino))
                ;
            else if (S_ISLNK(lsb.st_mode))
                rc = wd__error(WD_EBADINPUT,
                               "'%s' is a symbolic link to a folder, which is not followed (remove it, or "
                               "leave it out with --exclude '%s')", full, path);
            else if (!wd__plain_name_ok(e->d_name))
                rc = wd__error(WD_EBADINPUT, "folder name '%s' in '%s' is not storable", e->d_name, dpath);
            else if (depth >= WD_FOLDER_MAX_DEPTH)
                rc = wd__error(WD_EBADINPUT, "'%s' is nested deeper than %d folders", full, WD_FOLDER_MAX_DEPTH);
            else
                rc = scan_dir(f, path, depth + 1, cap);
        } else if (excluded(f, path, 0)) {
            ;
        } else if (!S_ISREG(sb.st_mode)) {
            rc = wd__error(WD_EBADINPUT, "'%s' is not a regular file", full);
        } else if (!wd__plain_name_ok(e->d_name)) {
            rc = wd__error(WD_EBADINPUT, "file name '%s' in '%s' is not storable", e->d_name, dpath);
        } else {
            rc = add_file(f, cap, path, full, &sb);
        }
        free(full);
        free(path);
    }
    closedir(d);
    free(dpath);
    return rc;
}

static int scan(wd_folder *f)
{
    size_t cap = 0;
    return scan_dir(f, "", 0, &cap);
}

int wd__rel_path_ok(const char *path)
{
    if (!path[0] || strlen(path) >= PATH_MAX / 2)
        return 0;
    char part[NAME_MAX + 1];
    for (const char *p = path;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || len > NAME_MAX)
            return 0;
        memcpy(part, p, len);
        part[len] = '\0';
        if (!wd__plain_name_ok(part))
            return 0;
        if (!slash)
            return 1;
        p = slash + 1;
    }
}

int wd__make_parents(const char *root, const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s/%s", root, path) >= (int)sizeof buf)
        return wd__error(WD_EUSAGE, "path '%s/%s' is too long", root, path);
    size_t skip = strlen(root) + 1;
    for (char *p = strchr(buf + skip, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            int rc = wd__error_errno(WD_EIO, "cannot create folder '%s'", buf);
            *p = '/';
            return rc;
        }
        *p = '/';
    }
    return 0;
}

/* Reads the shard index file ff (its size checked against the limit
 * first) and checks it against f. */
static int check_index(const wd_folder *f, const wd_folder_file *ff)
{
    char *full = NULL;
    if (asprintf(&full, "%s/%s", f->dir, ff->path) < 0)
        return WD_NOMEM();
    int rc = 0, fd = -1;
    unsigned char *text = NULL;
    struct stat sb;
    size_t len = 0;
    if (ff->size > WD_SHARDINDEX_MAX) {
        rc = wd__error(WD_EBADINPUT, "'%s': is %llu bytes, over the limit of %u for a shard index", full,
                       (unsigned long long)ff->size, WD_SHARDINDEX_MAX);
        goto out;
    }
    /* O_NONBLOCK: a FIFO swapped in since the scan is refused, not waited on. */
    if ((fd = open(full, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0 || fstat(fd, &sb) != 0) {
        rc = wd__error_errno(WD_EIO, "cannot open '%s'", full);
        goto out;
    }
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != ff->size) {
        rc = wd__error(WD_EIO, "'%s' changed while being read", full);
        goto out;
    }
    if (!(text = malloc((size_t)ff->size + 1))) {
        rc = WD_NOMEM();
        goto out;
    }
    while (len < ff->size) {
        ssize_t got = pread(fd, text + len, (size_t)ff->size - len, (off_t)len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            rc = got < 0 ? wd__error_errno(WD_EIO, "cannot read '%s'", full)
                         : wd__error(WD_EIO, "'%s' changed while being read", full);
            goto out;
        }
        len += (size_t)got;
    }
    rc = wd__shardindex_check(f, full, text, len);
out:
    if (fd >= 0)
        close(fd);
    free(text);
    free(full);
    return rc;
}

static int index_tensors(wd_folder *f, const char *dir, unsigned flags);

int wd__folder_open(wd_folder **out, const char *dir)
{
    return wd__folder_open_ex(out, dir, 0);
}

int wd__folder_open_ex(wd_folder **out, const char *dir, unsigned flags)
{
    return wd__folder_open_excluding(out, dir, flags, NULL, 0, NULL);
}

int wd__folder_open_excluding(wd_folder **out, const char *dir, unsigned flags, const char *const *exclude,
                              size_t n_exclude, const char *never)
{
    wd_folder *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = strdup(dir))) {
        free(f);
        return WD_NOMEM();
    }
    f->exclude = exclude;
    f->n_exclude = n_exclude;
    struct stat nsb;
    if (never && stat(never, &nsb) == 0) {
        f->has_never = 1;
        f->never_dev = nsb.st_dev;
        f->never_ino = nsb.st_ino;
    }
    size_t dl = strlen(f->dir);
    while (dl > 1 && f->dir[dl - 1] == '/')
        f->dir[--dl] = '\0';
    int rc = scan(f);
    if (rc)
        goto fail;
    if ((rc = index_tensors(f, dir, flags)))
        goto fail;
    *out = f;
    return 0;
fail:
    wd__folder_close(f);
    return rc;
}

int wd__folder_open_file(wd_folder **out, const char *path)
{
    wd_folder *f = calloc(1, sizeof *f);
    const char *slash = strrchr(path, '/');
    if (!f || !(f->files = calloc(1, sizeof *f->files))) {
        free(f);
        return WD_NOMEM();
    }
    int rc = 0;
    struct stat sb;
    if (!(f->dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".")) ||
        !(f->files[0].path = strdup(slash ? slash + 1 : path)))
        rc = WD_NOMEM();
    else if (stat(path, &sb) != 0)
        rc = wd__error_errno(errno == ENOENT ? WD_ENOTFOUND : WD_EIO, "cannot open '%s'", path);
    else if (!S_ISREG(sb.st_mode))
        rc = wd__error(WD_EBADINPUT, "'%s' is not a regular file", path);
    else {
        f->n_files = 1;
        f->files[0].size = (uint64_t)sb.st_size;
        f->files[0].is_shard = 1;
        rc = wd__st_open(&f->files[0].st, path);
    }
    if (!rc)
        rc = index_tensors(f, path, 0);
    if (rc) {
        wd__folder_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* Sorts f's files and indexes the tensors of its shards by name; checks
 * what a model folder must satisfy (scan's conditions aside). */
static int index_tensors(wd_folder *f, const char *dir, unsigned flags)
{
    int rc = 0;
    qsort(f->files, f->n_files, sizeof *f->files, cmp_file);
    size_t n = 0;
    for (size_t i = 0; i < f->n_files; i++)
        if (f->files[i].is_shard)
            n += f->files[i].st->n_tensors;
    if (!n && !f->n_files) {
        rc = wd__error(WD_EBADINPUT, "'%s' is empty; expected *.safetensors files", dir);
        return rc;
    }
    int any_shard = 0;
    for (size_t i = 0; i < f->n_files; i++)
        any_shard |= f->files[i].is_shard;
    if (!any_shard) 
        return wd__error(WD_EBADINPUT, "'%s' holds no *.safetensors file", dir);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors)
        return WD_NOMEM();
    for (size_t i = 0; i < f->n_files; i++) {
        if (!f->files[i].is_shard)
            continue;
        const wd_st_file *st = f->files[i].st;
        for (size_t j = 0; j < st->n_tensors; j++) {
            wd_folder_tensor *t = &f->tensors[f->n_tensors++];
            t->name = st->tensors[j].name;
            t->file = i;
            t->t = &st->tensors[j];
            f->tensor_bytes += st->tensors[j].nbytes;
        }
    }
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_tensor);
    for (size_t i = 1; i < f->n_tensors; i++) {
        if (!strcmp(f->tensors[i - 1].name, f->tensors[i].name)) {
            rc = wd__error(WD_EBADINPUT, "tensor '%s' appears in both '%s' and '%s' of '%s'",
                           f->tensors[i].name, f->files[f->tensors[i - 1].file].path,
                           f->files[f->tensors[i].file].path, dir);
            return rc;
        }
    }
    for (size_t i = 0; !(flags & WD_FOLDER_TRUST_INDEX) && i < f->n_files; i++)
        if (wd__shardindex_is_index(f->files[i].path) && (rc = check_index(f, &f->files[i])))
            return rc;
    return 0;
}

long wd__folder_find(const wd_folder *f, const char *name)
{
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int wd__folder_hash(const wd_folder *f, uint8_t out[WD_HASH_SIZE])
{
    enum { PIECE = 1 << 20 }; /* the only buffer: one 1 MiB read at a time */
    wd_sha256 *h = NULL;
    uint8_t *buf = malloc(PIECE);
    int rc = buf ? wd__sha256_new(&h) : WD_NOMEM();
    size_t i = 0;
    while (!rc && i < f->n_tensors) {
        const wd_folder_tensor *t = &f->tensors[i];
        const wd_st_file *st = f->files[t->file].st;
        /* Tensors next in name order whose data lies within one piece's span
         * of each other come in with one read: a shard of many tiny tensors
         * would otherwise cost a pread per tensor. Safetensors writers lay
         * data out in name order, so such runs are the common case. */
        uint64_t lo = t->t->begin, hi = t->t->end;
        size_t j = i + 1;
        while (hi - lo <= PIECE && j < f->n_tensors && f->tensors[j].file == t->file) {
            const wd_st_tensor *u = f->tensors[j].t;
            uint64_t nlo = u->begin < lo ? u->begin : lo, nhi = u->end > hi ? u->end : hi;
            if (nhi - nlo > PIECE)
                break;
            lo = nlo;
            hi = nhi;
            j++;
        }
        if (hi - lo <= PIECE) {
            rc = wd__st_read_data(st, lo, buf, (size_t)(hi - lo));
            for (; !rc && i < j; i++) {
                const wd_folder_tensor *u = &f->tensors[i];
                wd__thash_name(h, u->name);
                wd__sha256_update(h, buf + (u->t->begin - lo), u->t->nbytes);
            }
            continue;
        }
        /* A tensor over a piece streams on its own. */
        wd__thash_name(h, t->name);
        for (uint64_t off = 0; !rc && off < t->t->nbytes; off += PIECE) {
            size_t len = t->t->nbytes - off < PIECE ? (size_t)(t->t->nbytes - off) : PIECE;
            rc = wd__st_read(st, t->t, off, buf, len);
            if (!rc)
                wd__sha256_update(h, buf, len);
        }
        i++;
    }
    if (!rc)
        wd__sha256_final(h, out);
    wd__sha256_free(h);
    free(buf);
    return rc;
}
