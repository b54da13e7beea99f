/*
 * shardindex.c - checking a shard index file against its folder (see
 * shardindex.h). The text is validated and read in place (jsonstrict.c);
 * nothing of it is kept.
 */
#include "shardindex.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "jsonstrict.h"

#define NAME_CAP 160

int wd__shardindex_is_index(const char *path)
{
    static const char suffix[] = ".safetensors.index.json";
    size_t n = strlen(path), m = sizeof suffix - 1;
    return n > m && !strcmp(path + n - m, suffix);
}

static int bad(const char *index_path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Every refusal names the index file first. */
static int bad(const char *index_path, const char *fmt, ...)
{
    char msg[800], p[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return wd__error(WD_EBADINPUT, "'%s': %s", wd__utf8_shown(p, sizeof p, index_path), msg);
}

/* Index of the file named path in f->files (sorted by path), or -1. */
static long find_file(const wd_folder *f, const char *path)
{
    size_t lo = 0, hi = f->n_files;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->files[mid].path, path);
        if (!c)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Reads the weight_map object at the cursor, marking in listed[] the
 * tensors it names. */
static int read_weight_map(const wd_folder *f, const char *ip, wd_json_cur *c, unsigned char *listed)
{
    char kb[NAME_CAP], vb[NAME_CAP], fb[NAME_CAP];
    if (wd__json_peek(c) != '{')
        return bad(ip, "\"weight_map\" is not a JSON object; fix or remove the index");
    wd_buf key = {0}, val = {0};
    int rc = 0;
    wd__json_enter(c);
    while (!rc && wd__json_more(c)) {
        if ((rc = wd__json_string(c, &key)))
            break;
        const char *k = (const char *)key.data;
        wd__utf8_shown(kb, sizeof kb, k);
        if (wd__json_peek(c) != '"') {
            rc = bad(ip, "weight_map entry '%s' is not a string; fix or remove the index", kb);
            break;
        }
        if ((rc = wd__json_string(c, &val)))
            break;
        const char *v = (const char *)val.data;
        wd__utf8_shown(vb, sizeof vb, v);
        long fi = wd__plain_name_ok(v) ? find_file(f, v) : -2;
        if (fi == -2) {
            rc = bad(ip,
                     "tensor '%s' is mapped to '%s', which is not a plain file name inside the folder; "
                     "fix or remove the index",
                     kb, vb);
        } else if (fi < 0) {
            rc = bad(ip, "tensor '%s' is mapped to '%s', which is not in the folder; copy the missing shard in",
                     kb, vb);
        } else if (!f->files[fi].is_shard) {
            rc = bad(ip, "tensor '%s' is mapped to '%s', which is not a *.safetensors shard; fix the index", kb,
                     vb);
        } else {
            long ti = wd__folder_find(f, k);
            if (ti < 0)
                rc = bad(ip, "lists tensor '%s' in '%s', but no shard in the folder holds it; fix the index",
                         kb, vb);
            else if (f->tensors[ti].file != (size_t)fi)
                rc = bad(ip, "maps tensor '%s' to '%s', but it is in '%s'; fix the index", kb, vb,
                         wd__utf8_shown(fb, sizeof fb, f->files[f->tensors[ti].file].path));
            else if (listed[ti])
                rc = bad(ip, "lists tensor '%s' more than once; fix the index", kb);
            else
                listed[ti] = 1;
        }
    }
    wd__buf_free(&key);
    wd__buf_free(&val);
    return rc;
}

int wd__shardindex_check(const wd_folder *f, const char *ip, const unsigned char *text, size_t len)
{
    char nb[NAME_CAP], fb[NAME_CAP];
    size_t at = 0;
    if (len > WD_SHARDINDEX_MAX)
        return bad(ip, "is %zu bytes, over the limit of %u for a shard index", len, WD_SHARDINDEX_MAX);
    const char *why = wd__json_lex(text, len, &at);
    if (why)
        return bad(ip, "the index %s (byte %zu); fix or remove it", why, at);
    switch (wd__json_syntax(text, len, &at, NULL)) {
    case WD_JSON_INVALID:
        return bad(ip, "the index is not valid JSON (error near byte %zu); fix or remove it", at);
    case WD_JSON_TRAILING:
        return bad(ip, "unexpected text after the index's JSON (byte %zu); fix or remove it", at);
    default:
        break;
    }
    wd_json_cur c = {text, len, 0};
    if (wd__json_peek(&c) != '{')
        return bad(ip, "the index is not a JSON object; fix or remove it");

    unsigned char *listed = calloc(f->n_tensors ? f->n_tensors : 1, 1);
    if (!listed)
        return WD_NOMEM();
    wd_buf key = {0};
    int rc = 0, seen = 0;
    wd__json_enter(&c);
    while (!rc && wd__json_more(&c)) {
        if ((rc = wd__json_string(&c, &key)))
            break;
        /* "metadata" ({"total_size": ...}) and anything else are not
         * checked: readers ignore them. */
        if (strcmp((const char *)key.data, "weight_map")) {
            wd__json_skip(&c);
            continue;
        }
        if (seen++) {
            rc = bad(ip, "the index has more than one \"weight_map\"; fix it");
            break;
        }
        rc = read_weight_map(f, ip, &c, listed);
    }
    wd__buf_free(&key);
    if (!rc && !seen)
        rc = bad(ip, "the index has no \"weight_map\"; fix or remove it");
    /* Name the first shard nobody pointed at as a whole (a forgotten
     * shard is the likely story), else the first tensor left out. */
    size_t *count = rc ? NULL : calloc(2 * (f->n_files ? f->n_files : 1), sizeof *count);
    if (!rc && !count)
        rc = WD_NOMEM();
    for (size_t i = 0; !rc && i < f->n_tensors; i++) {
        count[2 * f->tensors[i].file]++;
        count[2 * f->tensors[i].file + 1] += listed[i];
    }
    for (size_t fi = 0; !rc && fi < f->n_files; fi++)
        if (count[2 * fi] && !count[2 * fi + 1])
            rc = bad(ip, "does not list shard '%s' (%zu tensor%s); fix the index or remove the shard",
                     wd__utf8_shown(fb, sizeof fb, f->files[fi].path), count[2 * fi], count[2 * fi] == 1 ? "" : "s");
    free(count);
    for (size_t i = 0; !rc && i < f->n_tensors; i++)
        if (!listed[i])
            rc = bad(ip, "does not list tensor '%s' of '%s'; fix the index",
                     wd__utf8_shown(nb, sizeof nb, f->tensors[i].name),
                     wd__utf8_shown(fb, sizeof fb, f->files[f->tensors[i].file].path));
    free(listed);
    return rc;
}
