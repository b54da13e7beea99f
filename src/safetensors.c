/*
 * safetensors.c - validating reader and header writer for .safetensors files.
 * The header is checked completely (bytes, grammar, entries, then the layout
 * of the data section) before any caller sees a tensor, without ever holding
 * more than a small multiple of its size.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "jsonstrict.h"

/* Numbers are read as doubles: above this, distinct integers collide. */
#define EXACT_LIMIT 9007199254740992.0 /* 2^53 */

/* ---- small helpers ------------------------------------------------------ */

/* Names in messages: control bytes shown as '?', long ones cut. */
static const char *shown(char *buf, size_t cap, const char *s)
{
    return wd__utf8_shown(buf, cap, s);
}

#define NAME_CAP 160

static int bad(const wd_st_file *f, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Every rejection of the file's content goes through here, so each message
 * starts with the quoted file name. */
static int bad(const wd_st_file *f, const char *fmt, ...)
{
    char msg[800], p[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return wd__error(WD_EBADINPUT, "'%s': %s", shown(p, sizeof p, f->path ? f->path : "<memory>"),
                     msg);
}

static const char *fpath(const wd_st_file *f, char *buf, size_t cap)
{
    return shown(buf, cap, f->path ? f->path : "<memory>");
}

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (n >= b->cap - b->len) {
        size_t want = b->len + n + 1, cap = b->cap ? b->cap : 256;
        if (want < b->len) {
            b->oom = 1;
            return;
        }
        while (cap < want) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(sbuf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    sb_put(b, tmp, (size_t)n);
}

/* Writes s as a JSON string the way Python's json.dumps(ensure_ascii=True)
 * does, which is how deltatensors spells names: only printable ASCII stays
 * literal. Returns -1 if s is not valid UTF-8. */
static int sb_json_string(sbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    sb_put(b, "\"", 1);
    while (i < n) {
        size_t run = i;
        while (run < n && u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' && u[run] != '\\')
            run++;
        sb_put(b, s + i, run - i);
        if (run == n)
            break;
        i = run;
        uint32_t cp;
        size_t k = wd__utf8_decode(u + i, n - i, &cp);
        if (!k)
            return -1;
        i += k;
        const char *short_esc = NULL;
        switch (cp) {
        case '"': short_esc = "\\\""; break;
        case '\\': short_esc = "\\\\"; break;
        case '\b': short_esc = "\\b"; break;
        case '\f': short_esc = "\\f"; break;
        case '\n': short_esc = "\\n"; break;
        case '\r': short_esc = "\\r"; break;
        case '\t': short_esc = "\\t"; break;
        default: break;
        }
        if (short_esc) {
            sb_put(b, short_esc, 2);
            continue;
        }
        uint32_t units[2];
        int nu = 1;
        units[0] = cp;
        if (cp >= 0x10000) {
            units[0] = 0xd800 + ((cp - 0x10000) >> 10);
            units[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
            nu = 2;
        }
        for (int j = 0; j < nu; j++) {
            char e[6] = {'\\', 'u', hex[(units[j] >> 12) & 15], hex[(units[j] >> 8) & 15],
                         hex[(units[j] >> 4) & 15], hex[units[j] & 15]};
            sb_put(b, e, 6);
        }
    }
    sb_put(b, "\"", 1);
    return 0;
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void format_shape(char *buf, size_t cap, const uint64_t *shape, int ndim)
{
    size_t n = 0;
    buf[n++] = '[';
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRIu64, i ? "," : "", shape[i]);
    if (n < cap - 1) {
        buf[n++] = ']';
        buf[n] = '\0';
    } else {
        buf[cap - 1] = '\0';
    }
}

/* Element count and byte size; -1 when they do not fit in 64 bits. A zero
 * dimension makes the tensor empty whatever the other dimensions are. */
static int tensor_size(const uint64_t *shape, int ndim, wd_dtype dt, uint64_t *nelem,
                       uint64_t *nbytes)
{
    uint64_t count = 1;
    int empty = 0;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0)
            empty = 1;
    if (empty) {
        count = 0;
    } else {
        for (int i = 0; i < ndim; i++) {
            if (count > UINT64_MAX / shape[i])
                return -1;
            count *= shape[i];
        }
    }
    uint64_t size = wd__dtype_size(dt);
    if (count > UINT64_MAX / size)
        return -1;
    *nelem = count;
    *nbytes = count * size;
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Index i and i+1 of sorted names that are equal, or -1. */
static long find_duplicate(const char **names, size_t n)
{
    qsort(names, n, sizeof *names, cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return (long)i;
    return -1;
}

/* ---- header validation -------------------------------------------------- */

/* The header is checked in three passes over the text in place, none of
 * which builds a tree: wd__json_lex (bytes: UTF-8, control characters,
 * numbers, \u0000), wd__json_syntax (grammar, nesting; counts the entries),
 * then one walk with a cursor that keeps only what a wd_st_file holds.
 * Memory is therefore the header itself plus, per entry of at least ~50
 * bytes of text, one wd_st_tensor (176 bytes), its name and a 24-byte sort
 * key: at most about 6 times the header's size, whatever the header holds
 * (a cJSON tree of a hostile one costs 40 times). */

/* Reads the integer at the cursor: shapes and offsets must be exact
 * non-negative integers, and doubles are exact only below 2^53 (an integer
 * written with an exponent, 2e0, is accepted as the reference reader's
 * JSON numbers were). */
static int get_uint(const wd_st_file *f, wd_json_cur *c, const char *tname, const char *what, int idx,
                    uint64_t *out)
{
    char nb[NAME_CAP];
    int b = wd__json_peek(c);
    if (b != '-' && !(b >= '0' && b <= '9'))
        return bad(f, "tensor '%s': %s[%d] is not a number", shown(nb, sizeof nb, tname), what,
                   idx);
    double d;
    if (wd__json_number(c, &d))
        return WD_ENOMEM;
    if (d < 0 || signbit(d))
        return bad(f, "tensor '%s': %s[%d] is negative", shown(nb, sizeof nb, tname), what, idx);
    if (!(d < EXACT_LIMIT))
        return bad(f, "tensor '%s': %s[%d] is too large (2^53 or more cannot be read exactly)",
                   shown(nb, sizeof nb, tname), what, idx);
    uint64_t u = (uint64_t)d;
    if ((double)u != d)
        return bad(f, "tensor '%s': %s[%d] is not an integer", shown(nb, sizeof nb, tname), what,
                   idx);
    *out = u;
    return 0;
}

/* Where a tensor entry's known keys start, as text offsets (0: absent). */
typedef struct {
    size_t dtype, shape, offs;
} entry_keys;

/* Fills t (its name already set) from the entry at the cursor and checks it
 * against the file size; how tensors sit next to each other is
 * sort_and_tile's job. The entry's keys are found first and then read in a
 * fixed order, so a defect is named the same whatever order the keys come
 * in. key is scratch. */
static int parse_tensor(const wd_st_file *f, wd_json_cur *c, wd_st_tensor *t, wd_buf *key)
{
    char nb[NAME_CAP], sb[400];
    const char *nm = shown(nb, sizeof nb, t->name);
    if (wd__json_peek(c) != '{')
        return bad(f, "tensor '%s' is not a JSON object", nm);

    entry_keys at = {0, 0, 0};
    wd__json_enter(c);
    while (wd__json_more(c)) {
        if (wd__json_string(c, key))
            return WD_ENOMEM;
        const char *k = (const char *)key->data;
        size_t *slot = !strcmp(k, "dtype") ? &at.dtype
                       : !strcmp(k, "shape") ? &at.shape
                       : !strcmp(k, "data_offsets") ? &at.offs
                                                    : NULL;
        /* unknown keys are skipped, as the reference reader does */
        if (slot) {
            if (*slot)
                return bad(f, "tensor '%s' has more than one \"%s\"", nm, k);
            wd__json_peek(c);
            *slot = c->pos;
        }
        wd__json_skip(c);
    }
    size_t after = c->pos;

    if (!at.dtype)
        return bad(f, "tensor '%s' has no \"dtype\"", nm);
    c->pos = at.dtype;
    if (wd__json_peek(c) != '"')
        return bad(f, "tensor '%s': \"dtype\" is not a string", nm);
    if (wd__json_string(c, key))
        return WD_ENOMEM;
    if (wd__dtype_parse((const char *)key->data, key->len, &t->dtype) != 0)
        return bad(f, "tensor '%s' has unknown dtype '%s'", nm, shown(sb, 64, (const char *)key->data));

    if (!at.shape)
        return bad(f, "tensor '%s' has no \"shape\"", nm);
    c->pos = at.shape;
    if (wd__json_peek(c) != '[')
        return bad(f, "tensor '%s': \"shape\" is not an array", nm);
    /* The rank limit stops a hostile array at its 17th element. */
    t->ndim = 0;
    wd__json_enter(c);
    while (wd__json_more(c)) {
        if (t->ndim == WD_MAX_DIMS)
            return bad(f, "tensor '%s' has more than %d dimensions", nm, WD_MAX_DIMS);
        int rc = get_uint(f, c, t->name, "shape", t->ndim, &t->shape[t->ndim]);
        if (rc)
            return rc;
        t->ndim++;
    }

    if (!at.offs)
        return bad(f, "tensor '%s' has no \"data_offsets\"", nm);
    c->pos = at.offs;
    int two = 0;
    if (wd__json_peek(c) == '[') {
        size_t first = 0;
        wd__json_enter(c);
        while (two < 3 && wd__json_more(c)) {
            wd__json_peek(c);
            if (!two)
                first = c->pos;
            two++;
            wd__json_skip(c);
        }
        c->pos = first;
    }
    if (two != 2)
        return bad(f, "tensor '%s': \"data_offsets\" is not an array of two integers", nm);
    int rc = get_uint(f, c, t->name, "data_offsets", 0, &t->begin);
    if (!rc && wd__json_more(c))
        rc = get_uint(f, c, t->name, "data_offsets", 1, &t->end);
    if (rc)
        return rc;
    c->pos = after;
    if (t->begin > t->end)
        return bad(f, "tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] end before they begin",
                   nm, t->begin, t->end);

    format_shape(sb, sizeof sb, t->shape, t->ndim);
    if (tensor_size(t->shape, t->ndim, t->dtype, &t->nelem, &t->nbytes) != 0)
        return bad(f, "tensor '%s' (%s %s) is larger than 2^64 bytes", nm,
                   wd__dtype_name(t->dtype), sb);
    if (t->nbytes != t->end - t->begin)
        return bad(f, "tensor '%s' needs %" PRIu64 " bytes (%s %s) but data_offsets span %" PRIu64,
                   nm, t->nbytes, wd__dtype_name(t->dtype), sb, t->end - t->begin);
    uint64_t data_len = f->file_size - f->data_start;
    if (t->end > data_len)
        return bad(f,
                   "tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] run past the end of the "
                   "file (the data section holds %" PRIu64 " bytes)",
                   nm, t->begin, t->end, data_len);
    return 0;
}

/* What metadata_read found wrong. */
typedef struct {
    const char *why;  /* NULL: out of memory */
    char *badkey;     /* the entry concerned (malloc'd), or NULL */
} meta_defect;

/* Reads the metadata object at the cursor (an object of strings with no
 * duplicate key) into *out, compact and escaped as the header writer does,
 * so a header that deltatensors wrote is rebuilt byte for byte. Returns 0,
 * or 1 with *d filled (d->why NULL: out of memory). Memory: the decoded
 * keys and their offsets (both bounded by the text) and the output (at
 * most 3 times the text: a 2-byte character becomes a 6-byte escape). */
static int metadata_read(wd_json_cur *c, char **out, meta_defect *d)
{
    *out = NULL;
    d->why = NULL;
    d->badkey = NULL;
    if (wd__json_peek(c) != '{') {
        d->why = "is not a JSON object";
        return 1;
    }
    /* Keys go NUL-separated into one arena (offsets, since it moves as it
     * grows), to be sorted for the duplicate check at the end. */
    wd_buf key = {0}, val = {0}, arena = {0}, offs = {0};
    sbuf b = {0};
    const char *why = NULL, *badkey = NULL;
    int oom = 0;
    sb_put(&b, "{", 1);
    wd__json_enter(c);
    while (wd__json_more(c)) {
        size_t off = arena.len;
        if (wd__json_string(c, &key) || wd__buf_append(&arena, key.data, key.len + 1) ||
            wd__buf_append(&offs, &off, sizeof off)) {
            oom = 1;
            break;
        }
        if (wd__json_peek(c) != '"') {
            why = "is not a string";
            badkey = (const char *)key.data;
            break;
        }
        if (wd__json_string(c, &val)) {
            oom = 1;
            break;
        }
        if (b.len > 1)
            sb_put(&b, ",", 1);
        /* cannot fail: the lexer admitted only UTF-8 and the decoder
         * writes UTF-8 */
        if (sb_json_string(&b, (const char *)key.data) != 0)
            b.oom = 1;
        sb_put(&b, ":", 1);
        if (sb_json_string(&b, (const char *)val.data) != 0)
            b.oom = 1;
    }
    sb_put(&b, "}", 1);
    oom |= b.oom;
    size_t nkeys = offs.len / sizeof(size_t);
    const char **keys = NULL;
    if (!oom && !why && nkeys > 1) {
        if (!(keys = malloc(nkeys * sizeof *keys))) {
            oom = 1;
        } else {
            for (size_t i = 0; i < nkeys; i++)
                keys[i] = (const char *)arena.data + ((const size_t *)(const void *)offs.data)[i];
            long dup = find_duplicate(keys, nkeys);
            if (dup >= 0) {
                why = "is a duplicate key";
                badkey = keys[dup];
            }
        }
    }
    if (why && !oom) {
        d->why = why;
        if (badkey && !(d->badkey = strdup(badkey)))
            d->why = NULL;
    }
    free(keys);
    wd__buf_free(&key);
    wd__buf_free(&val);
    wd__buf_free(&arena);
    wd__buf_free(&offs);
    if (oom || why) {
        free(b.p);
        return 1;
    }
    *out = b.p;
    return 0;
}

/* Reports a metadata defect for f (or, with f NULL, as a usage error of the
 * header writer) and frees it. */
static int metadata_defect(const wd_st_file *f, meta_defect *d)
{
    char nb[NAME_CAP];
    int rc;
    if (!d->why)
        rc = WD_NOMEM();
    else if (f && d->badkey)
        rc = bad(f, "__metadata__ entry '%s' %s", shown(nb, sizeof nb, d->badkey), d->why);
    else if (f)
        rc = bad(f, "__metadata__ %s", d->why);
    else
        rc = wd__error(WD_EUSAGE, "metadata %s%s%s%s", d->badkey ? "entry '" : "",
                       d->badkey ? shown(nb, sizeof nb, d->badkey) : "", d->badkey ? "' " : "", d->why);
    free(d->badkey);
    d->badkey = NULL;
    return rc;
}

typedef struct {
    uint64_t begin;
    int nonempty;
    size_t idx;
} order_key;

/* Data order: by begin; at equal begin empty tensors first (they sit before
 * the tensor starting there); then the header's order. */
static int cmp_order(const void *a, const void *b)
{
    const order_key *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->nonempty != y->nonempty)
        return x->nonempty - y->nonempty;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int sort_and_tile(wd_st_file *f)
{
    size_t n = f->n_tensors;
    char n1[NAME_CAP], n2[NAME_CAP];
    uint64_t data_len = f->file_size - f->data_start;

    if (n > 1) {
        order_key *keys = malloc(n * sizeof *keys);
        if (!keys)
            return WD_NOMEM();
        for (size_t i = 0; i < n; i++)
            keys[i] = (order_key){f->tensors[i].begin, f->tensors[i].nbytes != 0, i};
        qsort(keys, n, sizeof *keys, cmp_order);
        /* Permute in place along the cycles of the sort (keys[i].idx: where
         * the tensor for slot i comes from), so the tensors are not held
         * twice; a slot done is marked with its own index. */
        for (size_t s = 0; s < n; s++) {
            if (keys[s].idx == s)
                continue;
            wd_st_tensor tmp = f->tensors[s];
            size_t j = s;
            while (keys[j].idx != s) {
                size_t from = keys[j].idx;
                f->tensors[j] = f->tensors[from];
                keys[j].idx = j;
                j = from;
            }
            f->tensors[j] = tmp;
            keys[j].idx = j;
        }
        free(keys);
    }

    uint64_t pos = 0;
    const wd_st_tensor *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const wd_st_tensor *t = &f->tensors[i];
        if (t->begin > pos) {
            if (prev)
                return bad(f,
                           "%" PRIu64 " unused bytes in the data section between tensor '%s' "
                           "(ends at %" PRIu64 ") and tensor '%s' (begins at %" PRIu64 ")",
                           t->begin - pos, shown(n1, sizeof n1, prev->name), pos,
                           shown(n2, sizeof n2, t->name), t->begin);
            return bad(f, "%" PRIu64 " unused bytes at the start of the data section, before "
                          "tensor '%s'",
                       t->begin, shown(n2, sizeof n2, t->name));
        }
        if (t->begin < pos)
            return bad(f,
                       "tensors '%s' [%" PRIu64 ",%" PRIu64 ") and '%s' [%" PRIu64 ",%" PRIu64
                       ") overlap",
                       shown(n1, sizeof n1, prev->name), prev->begin, prev->end,
                       shown(n2, sizeof n2, t->name), t->begin, t->end);
        pos = t->end;
        prev = t;
    }
    if (pos < data_len) {
        if (prev)
            return bad(f,
                       "%" PRIu64 " trailing bytes after the last tensor '%s' (its data ends at "
                       "%" PRIu64 ", the data section holds %" PRIu64 ")",
                       data_len - pos, shown(n1, sizeof n1, prev->name), pos, data_len);
        return bad(f, "the data section holds %" PRIu64 " bytes but the header lists no tensors",
                   data_len);
    }
    return 0;
}

/* Validates f->header (f->header_len bytes, NUL-terminated) and fills the
 * tensor list and metadata. */
static int parse_header(wd_st_file *f)
{
    const unsigned char *h = (const unsigned char *)f->header;
    size_t n = (size_t)f->header_len;
    char nb[NAME_CAP];

    size_t at = 0;
    const char *why = wd__json_lex(h, n, &at);
    if (why)
        return bad(f, "header %s (byte %zu of the header)", why, at);
    if (n == 0)
        return bad(f, "header is empty");
    /* The reference reader insists on '{' first; that also rules out a BOM. */
    if (h[0] != '{')
        return bad(f, "header does not start with '{'");
    size_t count = 0;
    switch (wd__json_syntax(h, n, &at, &count)) {
    case WD_JSON_INVALID:
        return bad(f, "header is not valid JSON (error near byte %zu of the header)", at);
    case WD_JSON_TRAILING:
        return bad(f, "unexpected text after the header's JSON object (byte %zu of the header)", at);
    default:
        break;
    }

    f->tensors = calloc(count ? count : 1, sizeof *f->tensors);
    if (!f->tensors)
        return WD_NOMEM();
    wd_json_cur c = {h, n, 0};
    wd_buf key = {0}, scratch = {0};
    int rc = 0, have_meta = 0;
    wd__json_enter(&c);
    while (!rc && wd__json_more(&c)) {
        if ((rc = wd__json_string(&c, &key)))
            break;
        const char *k = (const char *)key.data;
        if (strcmp(k, "__metadata__") == 0) {
            if (have_meta) {
                rc = bad(f, "header has more than one \"__metadata__\"");
                break;
            }
            have_meta = 1;
            meta_defect d;
            if (metadata_read(&c, &f->metadata_json, &d))
                rc = metadata_defect(f, &d);
            continue;
        }
        if (k[0] == '\0') {
            rc = bad(f, "header has a tensor with an empty name");
            break;
        }
        if (f->n_tensors == count) { /* cannot happen: syntax counted them */
            rc = bad(f, "header has more entries than counted");
            break;
        }
        wd_st_tensor *t = &f->tensors[f->n_tensors];
        if (!(t->name = malloc(key.len + 1))) {
            rc = WD_NOMEM();
            break;
        }
        memcpy(t->name, k, key.len + 1);
        f->n_tensors++;
        rc = parse_tensor(f, &c, t, &scratch);
    }
    wd__buf_free(&key);
    wd__buf_free(&scratch);
    if (rc)
        return rc;

    if (f->n_tensors > 1) {
        const char **names = malloc(f->n_tensors * sizeof *names);
        if (!names)
            return WD_NOMEM();
        for (size_t i = 0; i < f->n_tensors; i++)
            names[i] = f->tensors[i].name;
        long d = find_duplicate(names, f->n_tensors);
        if (d >= 0)
            rc = bad(f, "tensor name '%s' appears more than once", shown(nb, sizeof nb, names[d]));
        free(names);
        if (rc)
            return rc;
    }
    return sort_and_tile(f);
}

/* Checks the 8-byte length prefix p against the file size. */
static int check_prefix(wd_st_file *f, const unsigned char *p)
{
    uint64_t len = le64(p);
    if (len > WD_ST_MAX_HEADER)
        return bad(f, "header length %" PRIu64 " exceeds the limit of %u bytes", len,
                   WD_ST_MAX_HEADER);
    if (len > f->file_size - 8)
        return bad(f, "header length %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes)",
                   len, f->file_size);
    f->header_len = len;
    f->data_start = 8 + len;
    return 0;
}

static int check_size(const wd_st_file *f)
{
    if (f->file_size < 8)
        return bad(f, "file is %" PRIu64 " bytes, too short to hold a safetensors header",
                   f->file_size);
    return 0;
}

static wd_st_file *file_new(uint64_t file_size)
{
    wd_st_file *f = calloc(1, sizeof *f);
    if (f) {
        f->fd = -1;
        f->file_size = file_size;
    }
    return f;
}

/* pread until len bytes are in, through EINTR and short reads. */
static int read_full(const wd_st_file *f, uint64_t pos, void *buf, size_t len)
{
    unsigned char *p = buf;
    char pb[400];
    while (len > 0) {
        size_t want = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
        ssize_t got = pread(f->fd, p, want, (off_t)pos);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return wd__error_errno(WD_EIO, "cannot read '%s' at byte %" PRIu64,
                                   fpath(f, pb, sizeof pb), pos);
        }
        if (got == 0)
            return wd__error(WD_EIO,
                             "'%s': unexpected end of file at byte %" PRIu64
                             " (was it changed while being read?)",
                             fpath(f, pb, sizeof pb), pos);
        p += got;
        pos += (uint64_t)got;
        len -= (size_t)got;
    }
    return 0;
}

/* ---- public (internal) entry points ------------------------------------ */

int wd__st_parse(wd_st_file **out, const unsigned char *buf, size_t len, uint64_t file_size)
{
    *out = NULL;
    if ((!buf && len) || len > file_size)
        return wd__error(WD_EUSAGE, "wd__st_parse: buffer of %zu bytes for a file of %" PRIu64,
                         len, file_size);
    wd_st_file *f = file_new(file_size);
    if (!f)
        return WD_NOMEM();
    int rc = check_size(f);
    if (!rc && len < 8)
        rc = wd__error(WD_EUSAGE, "'<memory>': buffer holds %zu bytes, the length prefix needs 8",
                       len);
    if (!rc)
        rc = check_prefix(f, buf);
    if (!rc && len - 8 < f->header_len)
        rc = wd__error(WD_EUSAGE,
                       "'<memory>': buffer holds %zu bytes, the header needs %" PRIu64, len,
                       f->data_start);
    if (!rc) {
        f->header = malloc((size_t)f->header_len + 1);
        if (!f->header) {
            rc = WD_NOMEM();
        } else {
            memcpy(f->header, buf + 8, (size_t)f->header_len);
            f->header[f->header_len] = '\0';
            rc = parse_header(f);
        }
    }
    if (rc) {
        wd__st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int wd__st_open(wd_st_file **out, const char *path)
{
    *out = NULL;
    char pb[400];
    wd_st_file *f = file_new(0);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return WD_NOMEM();
    }
    int rc = 0;
    /* O_NONBLOCK so that a FIFO named *.safetensors is refused below
     * instead of hanging the open; it is cleared again for the reads. */
    f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (f->fd < 0) {
        rc = wd__error_errno(WD_EIO, "cannot open '%s'", fpath(f, pb, sizeof pb));
        goto out;
    }
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        rc = wd__error_errno(WD_EIO, "cannot stat '%s'", fpath(f, pb, sizeof pb));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = bad(f, "not a regular file");
        goto out;
    }
    int fl = fcntl(f->fd, F_GETFL);
    if (fl < 0 || fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        rc = wd__error_errno(WD_EIO, "cannot set up '%s' for reading", fpath(f, pb, sizeof pb));
        goto out;
    }
    f->file_size = (uint64_t)st.st_size;
    unsigned char prefix[8];
    if ((rc = check_size(f)) || (rc = read_full(f, 0, prefix, 8)) || (rc = check_prefix(f, prefix)))
        goto out;
    f->header = malloc((size_t)f->header_len + 1);
    if (!f->header) {
        rc = WD_NOMEM();
        goto out;
    }
    if ((rc = read_full(f, 8, f->header, (size_t)f->header_len)))
        goto out;
    f->header[f->header_len] = '\0';
    rc = parse_header(f);
out:
    if (rc) {
        wd__st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void wd__st_close(wd_st_file *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    for (size_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    free(f->metadata_json);
    free(f->header);
    free(f->path);
    free(f);
}

int wd__st_read(const wd_st_file *f, const wd_st_tensor *t, uint64_t off, void *buf, size_t len)
{
    char pb[400], nb[NAME_CAP];
    if (!f || !t || (!buf && len))
        return wd__error(WD_EUSAGE, "wd__st_read: missing argument");
    if (f->fd < 0)
        return wd__error(WD_EUSAGE, "'%s': parsed from memory, no file to read tensor data from",
                         fpath(f, pb, sizeof pb));
    uint64_t data_len = f->file_size - f->data_start;
    if (t->begin > t->end || t->end > data_len || off > t->end - t->begin ||
        len > t->end - t->begin - off)
        return wd__error(WD_EUSAGE,
                         "'%s': read of %zu bytes at offset %" PRIu64
                         " is outside tensor '%s' (%" PRIu64 " bytes)",
                         fpath(f, pb, sizeof pb), len, off, shown(nb, sizeof nb, t->name),
                         t->end - t->begin);
    return read_full(f, f->data_start + t->begin + off, buf, len);
}

int wd__st_read_data(const wd_st_file *f, uint64_t begin, void *buf, size_t len)
{
    char pb[400];
    if (!f || (!buf && len))
        return wd__error(WD_EUSAGE, "wd__st_read_data: missing argument");
    if (f->fd < 0)
        return wd__error(WD_EUSAGE, "'%s': parsed from memory, no file to read tensor data from",
                         fpath(f, pb, sizeof pb));
    uint64_t data_len = f->file_size - f->data_start;
    if (begin > data_len || len > data_len - begin)
        return wd__error(WD_EUSAGE, "'%s': read of %zu bytes at data offset %" PRIu64 " is outside the data",
                         fpath(f, pb, sizeof pb), len, begin);
    return read_full(f, f->data_start + begin, buf, len);
}

long wd__st_find(const wd_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* ---- writing ------------------------------------------------------------ */

int wd__st_header_build(char **out, size_t *out_len, const wd_st_spec *specs, size_t n,
                        const char *metadata_json)
{
    char nb[NAME_CAP];
    *out = NULL;
    *out_len = 0;
    if (n && !specs)
        return wd__error(WD_EUSAGE, "wd__st_header_build: no tensor specs");

    if (metadata_json) {
        /* Refuse what our own reader would refuse, so a written file always
         * reads back. */
        const unsigned char *m = (const unsigned char *)metadata_json;
        size_t len = strlen(metadata_json), at;
        const char *why = wd__json_lex(m, len, &at);
        if (why)
            return wd__error(WD_EUSAGE, "metadata %s (byte %zu)", why, at);
        if (wd__json_syntax(m, len, &at, NULL) != WD_JSON_OK)
            return wd__error(WD_EUSAGE, "metadata is not valid JSON (byte %zu)", at);
        wd_json_cur c = {m, len, 0};
        char *checked = NULL;
        meta_defect d;
        if (metadata_read(&c, &checked, &d))
            return metadata_defect(NULL, &d);
        free(checked);
    }

    int rc = 0;
    sbuf b = {0};
    sb_str(&b, "{\"__metadata__\":");
    sb_str(&b, metadata_json ? metadata_json : "{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const wd_st_spec *s = &specs[i];
        uint64_t nelem, nbytes;
        if (!s->name || !s->name[0] || strcmp(s->name, "__metadata__") == 0) {
            rc = wd__error(WD_EUSAGE, "tensor %zu has an empty or reserved name", i);
            break;
        }
        shown(nb, sizeof nb, s->name);
        if ((unsigned)s->dtype >= WD_DT__COUNT || s->ndim < 0 || s->ndim > WD_MAX_DIMS ||
            (s->ndim > 0 && !s->shape)) {
            rc = wd__error(WD_EUSAGE, "tensor '%s': invalid dtype or shape", nb);
            break;
        }
        for (int d = 0; d < s->ndim; d++)
            if (s->shape[d] >= (uint64_t)EXACT_LIMIT)
                rc = wd__error(WD_EUSAGE, "tensor '%s': dimension %d is 2^53 or more", nb, d);
        if (!rc && (tensor_size(s->shape, s->ndim, s->dtype, &nelem, &nbytes) != 0 ||
                    nbytes >= (uint64_t)EXACT_LIMIT - off))
            rc = wd__error(WD_EUSAGE, "tensor '%s': data would end past 2^53 bytes", nb);
        if (rc)
            break;
        sb_put(&b, ",", 1);
        if (sb_json_string(&b, s->name) != 0) {
            rc = wd__error(WD_EUSAGE, "tensor name '%s' is not valid UTF-8", nb);
            break;
        }
        sb_str(&b, ":{\"dtype\":\"");
        sb_str(&b, wd__dtype_name(s->dtype));
        sb_str(&b, "\",\"shape\":[");
        for (int d = 0; d < s->ndim; d++) {
            if (d)
                sb_put(&b, ",", 1);
            sb_u64(&b, s->shape[d]);
        }
        sb_str(&b, "],\"data_offsets\":[");
        sb_u64(&b, off);
        sb_put(&b, ",", 1);
        sb_u64(&b, off + nbytes);
        sb_str(&b, "]}");
        off += nbytes;
    }
    sb_put(&b, "}", 1);
    while (!rc && !b.oom && b.len % 8 != 0)
        sb_put(&b, " ", 1);

    if (!rc && b.oom)
        rc = WD_NOMEM();
    if (!rc && b.len > WD_ST_MAX_HEADER)
        rc = wd__error(WD_ENOMEM, "header would be %zu bytes, over the limit of %u", b.len,
                       WD_ST_MAX_HEADER);
    if (!rc && n > 1) {
        const char **names = malloc(n * sizeof *names);
        if (!names) {
            rc = WD_NOMEM();
        } else {
            for (size_t i = 0; i < n; i++)
                names[i] = specs[i].name;
            long d = find_duplicate(names, n);
            if (d >= 0)
                rc = wd__error(WD_EUSAGE, "tensor name '%s' appears more than once",
                               shown(nb, sizeof nb, names[d]));
            free(names);
        }
    }
    if (rc) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    *out_len = b.len;
    return 0;
}
