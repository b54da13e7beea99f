/*
 * hfconfig.c - config.json as deltatensors' load_delta_from_paths rewrites
 * it for an output dtype: Python's json.loads, the dtype keys replaced, and
 * json.dumps(indent=2) byte for byte; what Python would refuse is copied.
 */
#include "hfconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "jsonstrict.h"
#include "outdir.h"
#include "wdelta.h"
#include "wdrepo.h"

/* config.json files above this are copied as they are rather than parsed. */
#define CONFIG_MAX ((size_t)16 << 20)

/* 0 with the whole file in *out (malloc'd), 1 when it is larger than max,
 * or a negative status. */
static int read_small_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wd__error_errno(WD_EIO, "cannot open '%s'", path);
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) != 0)
        rc = wd__error_errno(WD_EIO, "cannot stat '%s'", path);
    else if ((uint64_t)sb.st_size > max)
        rc = 1; /* too big to parse: the caller copies it */
    uint8_t *buf = rc ? NULL : malloc((size_t)sb.st_size + 1);
    if (!rc && !buf)
        rc = WD_NOMEM();
    size_t got = 0;
    while (!rc && got < (size_t)sb.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)sb.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            rc = wd__error_errno(WD_EIO, "cannot read '%s'", path);
            break;
        }
        got += (size_t)k;
    }
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = got;
    return 0;
}

/* ---- config.json as Python's json.loads + json.dumps(indent=2) write it ---- */

/* A parsed JSON value, its scalars already in the text json.dumps gives
 * them (ensure_ascii strings, int digits, float repr, NaN/Infinity). */
typedef struct jv jv;
struct jv {
    char kind;   /* 's' scalar, '[' array, '{' object */
    char *text;  /* scalar */
    size_t n, cap;
    jv **items;  /* array items, object values */
    char **keys; /* object keys, as output text */
};

typedef struct {
    const unsigned char *s;
    size_t len, pos;
    int depth;
} jparse;

/* Python raises RecursionError far below this; an object this large is
 * not a config (and deduplicating its keys costs n^2). Past either limit
 * the file is copied as it is. */
enum { J_MAX_DEPTH = 900, J_MAX_MEMBERS = 1 << 16, PY_INT_MAX_DIGITS = 4300 };

static void jv_free(jv *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        jv_free(v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->text);
    free(v);
}

static void jp_ws(jparse *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int hexval(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                        : c >= 'A' && c <= 'F'   ? c - 'A' + 10
                                                                 : -1;
}

/* One UTF-16 code unit as ensure_ascii writes it. */
static int emit_unit(wd_buf *b, unsigned u)
{
    switch (u) {
    case '"': return wd__buf_append(b, "\\\"", 2);
    case '\\': return wd__buf_append(b, "\\\\", 2);
    case '\n': return wd__buf_append(b, "\\n", 2);
    case '\r': return wd__buf_append(b, "\\r", 2);
    case '\t': return wd__buf_append(b, "\\t", 2);
    case '\b': return wd__buf_append(b, "\\b", 2);
    case '\f': return wd__buf_append(b, "\\f", 2);
    default:
        if (u >= 0x20 && u <= 0x7e) {
            char c = (char)u;
            return wd__buf_append(b, &c, 1);
        }
        return wd__buf_printf(b, "\\u%04x", u);
    }
}

/* A string at p->pos (after the quote) into *out as output text. The file
 * was checked to be valid UTF-8. */
static int jp_string(jparse *p, char **out)
{
    wd_buf b = {0};
    int rc = wd__buf_append(&b, "\"", 1);
    while (!rc) {
        if (p->pos >= p->len) {
            rc = 1;
            break;
        }
        unsigned c = p->s[p->pos++];
        if (c == '"') {
            rc = wd__buf_append(&b, "\"", 1);
            break;
        }
        if (c < 0x20) { /* strict mode: raw control characters are invalid */
            rc = 1;
        } else if (c == '\\') {
            if (p->pos >= p->len) {
                rc = 1;
                break;
            }
            unsigned e = p->s[p->pos++], u = 0;
            switch (e) {
            case '"': case '\\': case '/': u = e; break;
            case 'b': u = '\b'; break;
            case 'f': u = '\f'; break;
            case 'n': u = '\n'; break;
            case 'r': u = '\r'; break;
            case 't': u = '\t'; break;
            case 'u':
                for (int i = 0; i < 4; i++) {
                    int h = p->pos < p->len ? hexval(p->s[p->pos]) : -1;
                    if (h < 0) {
                        rc = 1;
                        break;
                    }
                    u = u * 16 + (unsigned)h;
                    p->pos++;
                }
                break;
            default: rc = 1; break;
            }
            if (!rc)
                rc = emit_unit(&b, u);
        } else if (c < 0x80) {
            rc = emit_unit(&b, c);
        } else {
            /* a UTF-8 sequence: code point, then UTF-16 units as Python writes them */
            int more = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
            unsigned cp = c & (0x3fu >> more);
            for (int i = 0; i < more; i++)
                cp = (cp << 6) | (p->s[p->pos++] & 0x3fu);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                rc = emit_unit(&b, 0xd800 + (cp >> 10));
                if (!rc)
                    rc = emit_unit(&b, 0xdc00 + (cp & 0x3ff));
            } else {
                rc = emit_unit(&b, cp);
            }
        }
    }
    if (!rc)
        rc = wd__buf_append(&b, "", 1);
    if (rc) {
        wd__buf_free(&b);
        return rc;
    }
    *out = (char *)b.data;
    return 0;
}

/* A number as json.loads takes it (jsonstrict's grammar is its NUMBER_RE,
 * and whatever NUMBER_RE would leave behind makes the document invalid
 * anyway): an integer stays an int (its digits; "-0" is 0), anything with a
 * fraction or exponent becomes a float. */
static int jp_number(jparse *p, char **out)
{
    size_t start = p->pos, end = wd__json_number_end(p->s, start, p->len);
    if (!end)
        return 1;
    p->pos = end;
    const char *s = (const char *)p->s + start;
    size_t len = end - start;
    int neg = s[0] == '-';
    if (!memchr(s, '.', len) && !memchr(s, 'e', len) && !memchr(s, 'E', len)) {
        size_t nd = len - (size_t)neg;
        if (nd > PY_INT_MAX_DIGITS) /* Python 3.11's int() refuses it: ValueError */
            return 1;
        neg &= !(nd == 1 && s[neg] == '0');
        char *text = malloc(nd + 2);
        if (!text)
            return WD_NOMEM();
        text[0] = '-';
        memcpy(text + neg, s + len - nd, nd);
        text[neg + nd] = '\0';
        *out = text;
        return 0;
    }
    char *tmp = strndup(s, len), num[40];
    if (!tmp)
        return WD_NOMEM();
    wd__py_json_float(strtod(tmp, NULL), num);
    free(tmp);
    return (*out = strdup(num)) ? 0 : WD_NOMEM();
}

static int jv_add(jv *v, char *key, jv *item)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        jv **items = realloc(v->items, cap * sizeof *items);
        if (!items)
            return WD_NOMEM();
        v->items = items;
        if (v->kind == '{') {
            char **keys = realloc(v->keys, cap * sizeof *keys);
            if (!keys)
                return WD_NOMEM();
            v->keys = keys;
        }
        v->cap = cap;
    }
    v->items[v->n] = item;
    if (v->kind == '{')
        v->keys[v->n] = key;
    v->n++;
    return 0;
}

/* Returns 0, 1 (not JSON Python would take: the caller copies the file) or
 * a negative status. */
static int jp_value(jparse *p, jv **out)
{
    *out = NULL;
    jp_ws(p);
    if (p->pos >= p->len || ++p->depth > J_MAX_DEPTH)
        return 1;
    jv *v = calloc(1, sizeof *v);
    if (!v)
        return WD_NOMEM();
    v->kind = 's';
    unsigned char c = p->s[p->pos];
    static const char *const lits[] = {"null", "true", "false", "NaN", "Infinity", "-Infinity"};
    int rc = 1;
    for (size_t i = 0; i < sizeof lits / sizeof *lits; i++) {
        size_t l = strlen(lits[i]);
        if (p->len - p->pos >= l && !memcmp(p->s + p->pos, lits[i], l)) {
            p->pos += l;
            rc = (v->text = strdup(lits[i])) ? 0 : WD_NOMEM();
            goto done;
        }
    }
    if (c == '"') {
        p->pos++;
        rc = jp_string(p, &v->text);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        rc = jp_number(p, &v->text);
    } else if (c == '[' || c == '{') {
        v->kind = (char)c;
        p->pos++;
        jp_ws(p);
        rc = 0;
        char close = c == '[' ? ']' : '}';
        if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) {
            p->pos++;
            goto done;
        }
        for (;;) {
            char *key = NULL;
            if (c == '{') {
                jp_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != '"') {
                    rc = 1;
                    break;
                }
                p->pos++;
                if ((rc = jp_string(p, &key)))
                    break;
                jp_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != ':') {
                    free(key);
                    rc = 1;
                    break;
                }
                p->pos++;
            }
            jv *item;
            if ((rc = jp_value(p, &item))) {
                free(key);
                break;
            }
            /* a repeated key keeps its first place and takes the last value,
             * as a Python dict built from the pairs does */
            size_t k = v->n;
            if (key)
                for (k = 0; k < v->n && strcmp(v->keys[k], key); k++)
                    ;
            if (k < v->n) {
                jv_free(v->items[k]);
                v->items[k] = item;
                free(key);
            } else if (v->n >= J_MAX_MEMBERS) {
                jv_free(item);
                free(key);
                rc = 1;
                break;
            } else if ((rc = jv_add(v, key, item))) {
                jv_free(item);
                free(key);
                break;
            }
            jp_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) {
                p->pos++;
                break;
            }
            rc = 1;
            break;
        }
    }
done:
    p->depth--;
    if (rc) {
        jv_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

static int jv_emit(wd_buf *b, const jv *v, int level)
{
    if (v->kind == 's')
        return wd__buf_append(b, v->text, strlen(v->text));
    if (v->n == 0)
        return wd__buf_append(b, v->kind == '[' ? "[]" : "{}", 2);
    int rc = wd__buf_append(b, v->kind == '[' ? "[" : "{", 1);
    for (size_t i = 0; !rc && i < v->n; i++) {
        rc = wd__buf_printf(b, "%s\n%*s", i ? "," : "", 2 * (level + 1), "");
        if (!rc && v->kind == '{')
            rc = wd__buf_printf(b, "%s: ", v->keys[i]);
        if (!rc)
            rc = jv_emit(b, v->items[i], level + 1);
    }
    if (!rc)
        rc = wd__buf_printf(b, "\n%*s%c", 2 * level, "", v->kind == '[' ? ']' : '}');
    return rc;
}

/* deltatensors' _copy_model_files, for config.json. */
int wd__hfconfig_write(const char *src, const char *dst, const char *dtype)
{
    uint8_t *text;
    size_t len = 0;
    int rc = read_small_file(src, CONFIG_MAX, &text, &len);
    if (rc == 1)
        return wd__file_copy(src, dst);
    if (rc)
        return rc;
    jv *root = NULL;
    jparse p = {text, len, 0, 0};
    if (wd__utf8_valid(text, len)) {
        rc = jp_value(&p, &root);
        jp_ws(&p);
        if (!rc && (p.pos != len || root->kind != '{'))
            rc = 1;
    } else {
        rc = 1;
    }
    free(text);
    if (rc) {
        jv_free(root);
        return rc == 1 ? wd__file_copy(src, dst) : rc;
    }
    for (size_t i = 0; !rc && i < root->n; i++) {
        if (strcmp(root->keys[i], "\"torch_dtype\"") && strcmp(root->keys[i], "\"dtype\""))
            continue;
        jv *s = calloc(1, sizeof *s);
        size_t tl = strlen(dtype) + 3;
        if (!s || !(s->text = malloc(tl))) {
            free(s);
            rc = WD_NOMEM();
            break;
        }
        s->kind = 's';
        snprintf(s->text, tl, "\"%s\"", dtype);
        jv_free(root->items[i]);
        root->items[i] = s;
    }
    wd_buf out = {0};
    if (!rc)
        rc = jv_emit(&out, root, 0);
    if (!rc)
        rc = wd__buf_append(&out, "\n", 1);
    jv_free(root);
    int fd = -1;
    if (!rc)
        rc = wd__file_create(dst, &fd);
    if (!rc) {
        rc = wd__file_write(fd, out.data, out.len, dst);
        rc = wd__file_close(fd, dst, rc);
    }
    wd__buf_free(&out);
    return rc;
}
