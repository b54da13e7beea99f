/*
 * wdelta.c - the .wdelta container of deltatensors: a reader that checks the
 * checksum, header and record framing before handing out array offsets, and
 * a streaming writer whose output is byte-identical to deltatensors' (see
 * wdelta.h for the layout and the contracts).
 */
#include "wdelta.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec_lowbit.h"
#include "error.h"
#include "fault.h"
#include "jsonstrict.h"
#include "outdir.h"
#include "outfile.h"
#include "hash.h"

#define IO_BUF_SIZE (64u << 10) /* writer buffer */
/* The checksum streams the file through a buffer of this size (1 MiB: 16x
 * fewer reads than 64 KiB; a read is a costly syscall in a VM). */
#define SUM_BUF_SIZE (1u << 20)
#define MAX_FIELD_LEN 32        /* longer field names cannot be ours */
#define MAX_NAME_SHOW 80        /* tensor names quoted in messages are cut here */
#define U53 (UINT64_C(1) << 53) /* integers above this do not survive a double */
/* Smallest possible record: u32 name_len + 1-byte name + u32 + "scale" +
 * u32 + "uint8" + u32 ndim + 1 dim + u64 data_len. Bounds the tensor count
 * a file of a given size can hold before anything is allocated for it. */
#define MIN_RECORD 43u

/* ---- Names -------------------------------------------------------------- */

static const char *const strategy_names[WD__WS__COUNT] = {"sparse", "quantized", "int4"};
static const char *const field_names[WD__WF__COUNT] = {
    "indices", "values", "scales", "packed_signs", "outlier_idx",
    "outlier_vals", "scale", "zero_point", "packed"};
static const char *const key_names[WD__WK_REF] = {
    "strategy", "shape", "dtype", "base_dtype", "sparsity",
    "outlier_fraction", "n_elements", "n_cols", "n_outliers", "int4_layout"};

static const int sparse_fields[] = {WD__WF_INDICES, WD__WF_VALUES};
static const int quantized_fields[] = {WD__WF_SCALES, WD__WF_PACKED_SIGNS};
static const int int4_fields[] = {WD__WF_OUTLIER_IDX, WD__WF_OUTLIER_VALS, WD__WF_SCALE,
                                  WD__WF_ZERO_POINT, WD__WF_PACKED};

const char *wd__wdelta_strategy_name(int strategy)
{
    return strategy >= 0 && strategy < WD__WS__COUNT ? strategy_names[strategy] : "?";
}

const char *wd__wdelta_field_name(int field)
{
    return field >= 0 && field < WD__WF__COUNT ? field_names[field] : "?";
}

static const int lowbit_fields[] = {WD__WF_INDICES, WD__WF_VALUES, WD__WF_SCALES, WD__WF_PACKED};

size_t wd__wdelta_fields_of(int strategy, const int **out)
{
    switch (strategy) {
    case WD__WS_SPARSE: *out = sparse_fields; return 2;
    case WD__WS_QUANTIZED: *out = quantized_fields; return 2;
    case WD__WS_INT4: *out = int4_fields; return 5;
    case WD__WS_LOWBIT: *out = lowbit_fields; return 4; /* (issue 11) stored arrays only, never in a file */
    default: *out = NULL; return 0;
    }
}

/* The dtypes records may carry, by dtype.c's numpy names (its one table);
 * the reader recognises a few more names only to say "wrong dtype" rather
 * than "unknown dtype". bfloat16 and float8 are not among them: deltatensors
 * writes its records with numpy, which has neither. */
static int np_record_dtype(wd_dtype dt)
{
    switch (dt) {
    case WD_DT_F16: case WD_DT_F32: case WD_DT_F64: case WD_DT_U8: case WD_DT_I8:
    case WD_DT_I16: case WD_DT_I32: case WD_DT_I64: case WD_DT_BOOL: return 1;
    default: return 0;
    }
}

const char *wd__wdelta_dtype_name(wd_dtype dt)
{
    return np_record_dtype(dt) ? wd__dtype_numpy_name(dt) : "?";
}

static unsigned np_size(wd_dtype dt)
{
    return np_record_dtype(dt) ? (unsigned)wd__dtype_size(dt) : 0;
}

static int np_parse(const char *s, size_t len, wd_dtype *out)
{
    wd_dtype dt;
    if (wd__dtype_from_numpy_n(s, len, &dt) || !np_record_dtype(dt))
        return -1;
    *out = dt;
    return 0;
}

static int lookup(const char *const *names, int count, const char *s, size_t len)
{
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return i;
    return -1;
}

/* Copies a name into out (MAX_NAME_SHOW + 16 bytes) for a message: printable
 * ASCII as is, other bytes as \xNN, cut with "..." when long. Names come from
 * untrusted files and must not smuggle newlines into a one-line message. */
static const char *show(const char *s, size_t len, char out[MAX_NAME_SHOW + 16])
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o >= MAX_NAME_SHOW) {
            memcpy(out + o, "...", 4);
            return out;
        }
        if (c >= 0x20 && c < 0x7f) {
            out[o++] = (char)c;
        } else if (c >= 0x80) {
            out[o++] = (char)c; /* UTF-8 was validated; keep it readable */
        } else {
            snprintf(out + o, 5, "\\x%02x", c);
            o += 4;
        }
    }
    out[o] = '\0';
    return out;
}

#define SHOWBUF char showbuf_[MAX_NAME_SHOW + 16]
#define SHOW(t) show((t)->name, (t)->name_len, showbuf_)

static uint64_t ceil_div(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

uint64_t wd__wdelta_rows(const wd__wdelta_tensor *t)
{
    return t->ndim >= 2 ? t->shape[0] : 1;
}

uint64_t wd__wdelta_cols(const wd__wdelta_tensor *t)
{
    if (t->ndim == 0)
        return 1;
    if (t->ndim == 1)
        return t->shape[0];
    uint64_t c = 1;
    for (int i = 1; i < t->ndim; i++)
        c *= t->shape[i]; /* cannot overflow: the whole product was checked */
    return c;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* ---- Validation shared by reader and writer ----------------------------- */

/* Computes the product of t's shape into t->n; returns -1 on overflow. */
static int shape_product(wd__wdelta_tensor *t)
{
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] != 0 && n > UINT64_MAX / t->shape[i])
            return -1;
        n *= t->shape[i];
    }
    t->n = n;
    return 0;
}

/* Option keys a strategy may carry (beyond strategy, shape, dtype,
 * base_dtype and its refs), and those it must carry. */
static uint32_t options_allowed(int strategy)
{
    switch (strategy) {
    case WD__WS_SPARSE: return WD__WK_BIT(WD__WK_SPARSITY);
    case WD__WS_QUANTIZED: return WD__WK_BIT(WD__WK_N_ELEMENTS) | WD__WK_BIT(WD__WK_N_COLS);
    default:
        return WD__WK_BIT(WD__WK_OUTLIER_FRACTION) | WD__WK_BIT(WD__WK_N_ELEMENTS) |
               WD__WK_BIT(WD__WK_N_OUTLIERS) | WD__WK_BIT(WD__WK_INT4_LAYOUT);
    }
}

static uint32_t options_required(int strategy)
{
    switch (strategy) {
    case WD__WS_SPARSE: return 0;
    case WD__WS_QUANTIZED: return WD__WK_BIT(WD__WK_N_ELEMENTS) | WD__WK_BIT(WD__WK_N_COLS);
    default: return WD__WK_BIT(WD__WK_N_ELEMENTS) | WD__WK_BIT(WD__WK_N_OUTLIERS);
    }
}

static uint32_t refs_of(int strategy)
{
    const int *f;
    size_t nf = wd__wdelta_fields_of(strategy, &f);
    uint32_t bits = 0;
    for (size_t i = 0; i < nf; i++)
        bits |= WD__WK_BIT(WD__WK_REF + f[i]);
    return bits;
}

static int dtype_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len >= WD__WDELTA_DTYPE_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* Checks a complete header entry: keys present, their values, the
 * relations between shape and counts. code is the status to fail with
 * (WD_EBADINPUT for a file, WD_EUSAGE for a writer's caller). Sets t->n. */
static int check_entry(wd__wdelta_tensor *t, int version, int code)
{
    SHOWBUF;
    if (!(t->has & WD__WK_BIT(WD__WK_STRATEGY)))
        return wd__error(code, "tensor '%s': entry lacks 'strategy'", SHOW(t));
    if (t->strategy < 0 || t->strategy >= WD__WS__COUNT)
        return wd__error(code, "tensor '%s': unknown strategy", SHOW(t));
    const char *sname = strategy_names[t->strategy];
    if (t->ndim < 0 || t->ndim > WD_MAX_DIMS)
        return wd__error(code, "tensor '%s': %d dimensions (at most %d)", SHOW(t), t->ndim,
                         WD_MAX_DIMS);
    if (shape_product(t) < 0)
        return wd__error(code, "tensor '%s': shape product overflows", SHOW(t));

    /* key_order must list exactly the keys in has, once each. */
    uint32_t seen = 0;
    if (t->n_keys < 0 || t->n_keys > WD__WK__COUNT)
        return wd__error(code, "tensor '%s': bad key list", SHOW(t));
    for (int i = 0; i < t->n_keys; i++) {
        int k = t->key_order[i];
        if (k >= WD__WK__COUNT || (seen & WD__WK_BIT(k)))
            return wd__error(code, "tensor '%s': bad key list", SHOW(t));
        seen |= WD__WK_BIT(k);
    }
    if (seen != t->has)
        return wd__error(code, "tensor '%s': bad key list", SHOW(t));

    uint32_t base = WD__WK_BIT(WD__WK_STRATEGY) | WD__WK_BIT(WD__WK_SHAPE) |
                    WD__WK_BIT(WD__WK_DTYPE);
    uint32_t refs = refs_of(t->strategy);
    uint32_t allowed = base | WD__WK_BIT(WD__WK_BASE_DTYPE) | options_allowed(t->strategy) | refs;
    uint32_t required = base | options_required(t->strategy) | refs;
    for (int k = 0; k < WD__WK__COUNT; k++) {
        const char *kname = k < WD__WK_REF ? key_names[k] : field_names[k - WD__WK_REF];
        if ((t->has & WD__WK_BIT(k)) && !(allowed & WD__WK_BIT(k)))
            return wd__error(code, "tensor '%s': key '%s' does not belong to strategy %s",
                             SHOW(t), kname, sname);
        if (!(t->has & WD__WK_BIT(k)) && (required & WD__WK_BIT(k)))
            return wd__error(code, "tensor '%s': %s entry lacks '%s'", SHOW(t), sname, kname);
    }
    if (!dtype_name_ok(t->dtype))
        return wd__error(code, "tensor '%s': bad dtype name", SHOW(t));
    if ((t->has & WD__WK_BIT(WD__WK_BASE_DTYPE)) && !dtype_name_ok(t->base_dtype))
        return wd__error(code, "tensor '%s': bad base_dtype name", SHOW(t));

    if (t->has & WD__WK_BIT(WD__WK_SPARSITY)) {
        if (!(t->sparsity >= 0.0 && t->sparsity <= 1.0))
            return wd__error(code, "tensor '%s': sparsity must be in [0, 1]", SHOW(t));
    }
    if (t->has & WD__WK_BIT(WD__WK_OUTLIER_FRACTION)) {
        if (!(t->outlier_fraction >= 0.0 && t->outlier_fraction <= 1.0))
            return wd__error(code, "tensor '%s': outlier_fraction must be in [0, 1]", SHOW(t));
    }
    if ((t->has & WD__WK_BIT(WD__WK_N_ELEMENTS)) && t->n_elements != t->n)
        return wd__error(code,
                         "tensor '%s': n_elements %llu disagrees with its shape (%llu elements)",
                         SHOW(t), (unsigned long long)t->n_elements, (unsigned long long)t->n);
    if ((t->has & WD__WK_BIT(WD__WK_N_COLS)) && t->n_cols != wd__wdelta_cols(t))
        return wd__error(code, "tensor '%s': n_cols %llu disagrees with its shape (%llu)",
                         SHOW(t), (unsigned long long)t->n_cols,
                         (unsigned long long)wd__wdelta_cols(t));
    if (t->strategy == WD__WS_INT4) {
        if (t->n_outliers > t->n)
            return wd__error(code, "tensor '%s': n_outliers %llu exceeds its %llu elements",
                             SHOW(t), (unsigned long long)t->n_outliers,
                             (unsigned long long)t->n);
        if (t->has & WD__WK_BIT(WD__WK_INT4_LAYOUT)) {
            if (t->int4_layout != 1 && t->int4_layout != 2)
                return wd__error(code, "tensor '%s': unknown int4_layout %d", SHOW(t),
                                 t->int4_layout);
            /* deltatensors 0.2.0 ignores the key and would decode layout 1:
             * a v1 file claiming layout 2 means two different models. */
            if (version == 1 && t->int4_layout != 1)
                return wd__error(code, "tensor '%s': int4_layout %d in a format v1 file",
                                 SHOW(t), t->int4_layout);
        } else {
            t->int4_layout = 1;
        }
    }
    return 0;
}

/* Checks one record's dtype and size against the tensor's header entry. */
static int check_record(const wd__wdelta_tensor *t, int field, wd_dtype dt, uint64_t count,
                        int version, int code)
{
    SHOWBUF;
    const char *fname = field_names[field];
    if (!(refs_of(t->strategy) & WD__WK_BIT(WD__WK_REF + field)))
        return wd__error(code, "tensor '%s' (%s) has no field '%s'", SHOW(t),
                         strategy_names[t->strategy], fname);
    wd_dtype want = WD_DT_U8;
    uint64_t want_count = 0;
    int check_count = 1;
    switch (field) {
    case WD__WF_INDICES:
        want = WD_DT_I64;
        check_count = 0;
        if (count > t->n)
            return wd__error(code, "tensor '%s': %llu sparse indices for %llu elements", SHOW(t),
                             (unsigned long long)count, (unsigned long long)t->n);
        break;
    case WD__WF_VALUES:
        want = WD_DT_F32;
        check_count = 0;
        if (count > t->n)
            return wd__error(code, "tensor '%s': %llu sparse values for %llu elements", SHOW(t),
                             (unsigned long long)count, (unsigned long long)t->n);
        break;
    case WD__WF_SCALES: want = WD_DT_F16; want_count = wd__wdelta_rows(t); break;
    case WD__WF_PACKED_SIGNS: want = WD_DT_U8; want_count = ceil_div(t->n, 8); break;
    case WD__WF_OUTLIER_IDX:
        want = WD_DT_I64;
        if (version >= 2 && dt == WD_DT_I32)
            want = WD_DT_I32;
        want_count = t->n_outliers;
        break;
    case WD__WF_OUTLIER_VALS: want = WD_DT_F16; want_count = t->n_outliers; break;
    case WD__WF_SCALE:
    case WD__WF_ZERO_POINT: want = WD_DT_F16; want_count = 1; break;
    case WD__WF_PACKED:
        want = WD_DT_U8;
        want_count = ceil_div(t->int4_layout == 2 ? t->n : t->n - t->n_outliers, 2);
        break;
    default: break;
    }
    if (dt != want)
        return wd__error(code, "tensor '%s': field '%s' has dtype %s, expected %s%s", SHOW(t),
                         fname, wd__wdelta_dtype_name(dt), wd__wdelta_dtype_name(want),
                         field == WD__WF_OUTLIER_IDX && version >= 2 ? " or int32" : "");
    if (check_count && count != want_count)
        return wd__error(code, "tensor '%s': field '%s' has %llu elements, the header implies %llu",
                         SHOW(t), fname, (unsigned long long)count,
                         (unsigned long long)want_count);
    return 0;
}

/* ---- Reader: byte source ------------------------------------------------ */

struct wd__wdelta {
    int fd;                   /* -1 for a memory buffer */
    char *path;               /* as opened, for error messages; NULL for a memory buffer */
    const unsigned char *mem; /* borrowed buffer, or NULL */
    uint64_t size;
    int version;
    int strategy;
    char parent_hash[WD_HEX_SIZE];
    size_t count;
    wd__wdelta_tensor *tensors; /* header order; count entries */
    size_t *sorted;             /* tensor indices sorted by name, for find */
    size_t *by_record;          /* tensor indices in first-record order */
    char *names;                /* every name, NUL-terminated, back to back */
    uint64_t records_start;     /* for wd__wdelta_verify_checksum */
};

/* Reads exactly len bytes at off. A short read means the file changed under
 * us (it was fully checked at open): that is bad input, not an I/O error. */
static int src_read(const wd__wdelta *d, uint64_t off, void *buf, size_t len)
{
    if (off > d->size || len > d->size - off)
        return wd__error(WD_EBADINPUT, ".wdelta read past the end of the file");
    if (d->mem) {
        if (len)
            memcpy(buf, d->mem + off, len);
        return 0;
    }
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t got = pread(d->fd, p, len, (off_t)off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return wd__error_errno(WD_EIO, "cannot read .wdelta file");
        }
        if (got == 0)
            return wd__error(WD_EBADINPUT, ".wdelta file shrank while being read");
        p += got;
        off += (uint64_t)got;
        len -= (size_t)got;
    }
    return 0;
}

/* ---- Reader: checksum --------------------------------------------------- */

/* After a checksum mismatch, walks the record framing only to say whether
 * the file looks truncated; nothing read here is used otherwise. */
static int looks_truncated(const wd__wdelta *d, uint64_t pos)
{
    unsigned char b[8];
    while (pos < d->size) {
        for (int part = 0; part < 3; part++) { /* name, field, dtype */
            if (d->size - pos < 4 || src_read(d, pos, b, 4))
                return 1;
            uint64_t len = get_u32(b);
            pos += 4;
            if (len > d->size - pos)
                return 1;
            pos += len;
        }
        if (d->size - pos < 4 || src_read(d, pos, b, 4))
            return 1;
        uint64_t ndim = get_u32(b);
        pos += 4;
        if (ndim > (d->size - pos) / 8)
            return 1;
        pos += ndim * 8;
        if (d->size - pos < 8 || src_read(d, pos, b, 8))
            return 1;
        uint64_t dlen = get_u64(b);
        pos += 8;
        if (dlen > d->size - pos)
            return 1;
        pos += dlen;
        if (pos == d->size - WD_HASH_SIZE)
            return 0; /* framing ends where the checksum starts */
    }
    return 0;
}

static int verify_checksum(const wd__wdelta *d, uint64_t records_start)
{
    uint64_t end = d->size - WD_HASH_SIZE;
    uint8_t want[WD_HASH_SIZE], got[WD_HASH_SIZE];
    int rc = src_read(d, end, want, WD_HASH_SIZE);
    if (rc)
        return rc;
    if (d->mem) {
        wd__sha256(d->mem, (size_t)end, got);
    } else {
        wd_sha256 *h;
        if ((rc = wd__sha256_new(&h)))
            return rc;
        unsigned char *buf = malloc(SUM_BUF_SIZE); /* SUM_BUF_SIZE bytes */
        if (!buf) {
            wd__sha256_free(h);
            return WD_NOMEM();
        }
        for (uint64_t off = 0; off < end && !rc;) {
            size_t n = end - off < SUM_BUF_SIZE ? (size_t)(end - off) : SUM_BUF_SIZE;
            if (!(rc = src_read(d, off, buf, n))) {
                wd__sha256_update(h, buf, n);
                off += n;
            }
        }
        wd__sha256_final(h, got);
        wd__sha256_free(h);
        free(buf);
        if (rc)
            return rc;
    }
    if (memcmp(want, got, WD_HASH_SIZE) != 0) {
        if (looks_truncated(d, records_start))
            return wd__error(WD_EBADINPUT, "checksum mismatch: .wdelta file is truncated "
                                           "(a record extends past the end of the file)");
        return wd__error(WD_EBADINPUT,
                         "checksum mismatch: .wdelta file is corrupted or truncated");
    }
    return 0;
}

/* ---- Reader: header ----------------------------------------------------- */

/* Checks what cJSON does not, before it runs: UTF-8, no "\u0000" (cJSON
 * would cut the string there), no raw control characters, no whitespace
 * Python does not accept, numbers in JSON grammar, and a bounded count of
 * JSON values (so a 100 MB "[0,0,0,...]" cannot make cJSON allocate GBs). */
static int prescan_header(const unsigned char *s, size_t len)
{
    if (!wd__utf8_valid(s, len))
        return wd__error(WD_EBADINPUT, ".wdelta header is not valid UTF-8");
    size_t nodes = 1;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (in_string) {
            if (c < 0x20)
                return wd__error(WD_EBADINPUT,
                                 ".wdelta header is not valid JSON (control character in a string)");
            if (c == '"') {
                in_string = 0;
            } else if (c == '\\') {
                if (i + 1 < len && s[i + 1] == 'u' && len - i >= 6 &&
                    memcmp(s + i + 2, "0000", 4) == 0)
                    return wd__error(WD_EBADINPUT, ".wdelta header holds a NUL character");
                i++; /* the escaped character cannot end the string */
            }
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == ',' || c == '[' || c == '{') {
            if (++nodes > WD__WDELTA_MAX_JSON_NODES)
                return wd__error(WD_EBADINPUT, ".wdelta header has more than %u JSON values",
                                 WD__WDELTA_MAX_JSON_NODES);
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t e = wd__json_number_end(s, i, len);
            if (!e)
                return wd__error(WD_EBADINPUT, ".wdelta header is not valid JSON (bad number)");
            i = e - 1;
        } else if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return wd__error(WD_EBADINPUT,
                             ".wdelta header is not valid JSON (control character)");
        }
    }
    return 0;
}

/* A JSON number that is an integer in [0, 2^53] (exact in a double). */
static int get_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double x = v->valuedouble;
    if (!(x >= 0.0 && x <= (double)U53) || floor(x) != x)
        return -1;
    *out = (uint64_t)x;
    return 0;
}

static int get_short_string(const cJSON *v, char *out, size_t cap)
{
    if (!cJSON_IsString(v) || !v->valuestring)
        return -1;
    size_t len = strlen(v->valuestring);
    if (len >= cap)
        return -1;
    memcpy(out, v->valuestring, len + 1);
    return 0;
}

static int parse_entry(wd__wdelta_tensor *t, const cJSON *obj, int version)
{
    SHOWBUF;
    if (!cJSON_IsObject(obj))
        return wd__error(WD_EBADINPUT, "tensor '%s': header entry is not an object", SHOW(t));
    for (const cJSON *kv = obj->child; kv; kv = kv->next) {
        const char *kname = kv->string ? kv->string : "";
        size_t klen = strlen(kname);
        int k = lookup(key_names, WD__WK_REF, kname, klen);
        if (k < 0) {
            int f = lookup(field_names, WD__WF__COUNT, kname, klen);
            if (f < 0)
                return wd__error(WD_EBADINPUT, "tensor '%s': unknown key '%.40s'", SHOW(t),
                                 kname);
            k = WD__WK_REF + f;
        }
        if (t->has & WD__WK_BIT(k))
            return wd__error(WD_EBADINPUT, "tensor '%s': duplicate key '%s'", SHOW(t), kname);
        t->has |= WD__WK_BIT(k);
        t->key_order[t->n_keys++] = (uint8_t)k;
        int bad = 0;
        char buf[WD__WDELTA_DTYPE_MAX];
        switch (k) {
        case WD__WK_STRATEGY:
            if (get_short_string(kv, buf, sizeof buf) ||
                (t->strategy = lookup(strategy_names, WD__WS__COUNT, buf, strlen(buf))) < 0)
                return wd__error(WD_EBADINPUT, "tensor '%s': unknown strategy", SHOW(t));
            break;
        case WD__WK_SHAPE: {
            if (!cJSON_IsArray(kv))
                return wd__error(WD_EBADINPUT, "tensor '%s': shape is not a list", SHOW(t));
            int nd = 0;
            for (const cJSON *e = kv->child; e; e = e->next) {
                if (nd == WD_MAX_DIMS)
                    return wd__error(WD_EBADINPUT, "tensor '%s': more than %d dimensions",
                                     SHOW(t), WD_MAX_DIMS);
                if (get_uint(e, &t->shape[nd]))
                    return wd__error(WD_EBADINPUT, "tensor '%s': bad dimension in shape",
                                     SHOW(t));
                nd++;
            }
            t->ndim = nd;
            break;
        }
        case WD__WK_DTYPE: bad = get_short_string(kv, t->dtype, sizeof t->dtype); break;
        case WD__WK_BASE_DTYPE:
            bad = get_short_string(kv, t->base_dtype, sizeof t->base_dtype);
            break;
        case WD__WK_SPARSITY:
            bad = !cJSON_IsNumber(kv);
            t->sparsity = kv->valuedouble;
            break;
        case WD__WK_OUTLIER_FRACTION:
            bad = !cJSON_IsNumber(kv);
            t->outlier_fraction = kv->valuedouble;
            break;
        case WD__WK_N_ELEMENTS: bad = get_uint(kv, &t->n_elements); break;
        case WD__WK_N_COLS: bad = get_uint(kv, &t->n_cols); break;
        case WD__WK_N_OUTLIERS: bad = get_uint(kv, &t->n_outliers); break;
        case WD__WK_INT4_LAYOUT: {
            uint64_t v = 0;
            bad = get_uint(kv, &v) || v > 255;
            t->int4_layout = (int)v;
            break;
        }
        default: { /* {"_ref": "<same name as the key>"} */
            const cJSON *r = cJSON_IsObject(kv) ? kv->child : NULL;
            bad = !r || r->next || !r->string || strcmp(r->string, "_ref") != 0 ||
                  !cJSON_IsString(r) || !r->valuestring || strcmp(r->valuestring, kname) != 0;
            break;
        }
        }
        if (bad)
            return wd__error(WD_EBADINPUT, "tensor '%s': bad value for '%s'", SHOW(t), kname);
    }
    return check_entry(t, version, WD_EBADINPUT);
}

static int name_cmp(const wd__wdelta_tensor *a, const char *name, size_t len)
{
    size_t m = a->name_len < len ? a->name_len : len;
    int c = memcmp(a->name, name, m);
    if (c)
        return c;
    return a->name_len < len ? -1 : a->name_len > len;
}

/* qsort has no context argument in C11: the tensor array travels here. */
static _Thread_local const wd__wdelta_tensor *sort_base;

static int cmp_index(const void *pa, const void *pb)
{
    const wd__wdelta_tensor *b = &sort_base[*(const size_t *)pb];
    return name_cmp(&sort_base[*(const size_t *)pa], b->name, b->name_len);
}

static void sort_by_name(size_t *idx, const wd__wdelta_tensor *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    sort_base = t;
    if (n > 1)
        qsort(idx, n, sizeof *idx, cmp_index);
    sort_base = NULL;
}

static int parse_header(wd__wdelta *d, unsigned char *text, size_t len, uint64_t records_len)
{
    int rc = prescan_header(text, len);
    if (rc)
        return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)text, len, &end, 0);
    if (!root)
        return wd__error(WD_EBADINPUT, ".wdelta header is not valid JSON");
    for (const char *p = end; p < (const char *)text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return wd__error(WD_EBADINPUT, ".wdelta header is not valid JSON (trailing data)");
        }
    const cJSON *ph = NULL, *st = NULL, *ts = NULL;
    rc = 0;
    if (!cJSON_IsObject(root))
        rc = wd__error(WD_EBADINPUT, ".wdelta header is not a JSON object");
    for (const cJSON *kv = root->child; kv && !rc; kv = kv->next) {
        const cJSON **slot = NULL;
        if (!kv->string)
            slot = NULL;
        else if (strcmp(kv->string, "parent_hash") == 0)
            slot = &ph;
        else if (strcmp(kv->string, "strategy") == 0)
            slot = &st;
        else if (strcmp(kv->string, "tensors") == 0)
            slot = &ts;
        if (!slot)
            rc = wd__error(WD_EBADINPUT, ".wdelta header: unknown key '%.40s'",
                           kv->string ? kv->string : "");
        else if (*slot)
            rc = wd__error(WD_EBADINPUT, ".wdelta header: duplicate key '%s'", kv->string);
        else
            *slot = kv;
    }
    if (!rc && (!ph || !st || !ts))
        rc = wd__error(WD_EBADINPUT, ".wdelta header lacks '%s'",
                       !ph ? "parent_hash" : !st ? "strategy" : "tensors");
    if (!rc) {
        const char *h = cJSON_IsString(ph) ? ph->valuestring : NULL;
        int ok = h && strlen(h) == 64;
        for (int i = 0; ok && i < 64; i++) {
            char c = h[i];
            if (c >= 'A' && c <= 'F')
                c = (char)(c - 'A' + 'a');
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
            d->parent_hash[i] = c;
        }
        d->parent_hash[64] = '\0';
        if (!ok)
            rc = wd__error(WD_EBADINPUT, ".wdelta parent_hash is not 64 hex digits");
    }
    if (!rc) {
        const char *s = cJSON_IsString(st) ? st->valuestring : NULL;
        d->strategy = s ? lookup(strategy_names, WD__WS__COUNT, s, strlen(s)) : -1;
        if (d->strategy < 0)
            rc = wd__error(WD_EBADINPUT, ".wdelta strategy '%.40s' is not one deltatensors knows",
                           s ? s : "?");
    }
    if (!rc && !cJSON_IsObject(ts))
        rc = wd__error(WD_EBADINPUT, ".wdelta 'tensors' is not an object");
    size_t count = 0, names_len = 0;
    for (const cJSON *e = rc ? NULL : ts->child; e; e = e->next) {
        count++;
        names_len += strlen(e->string ? e->string : "") + 1;
    }
    /* Every tensor needs records: refuse counts the file cannot hold before
     * allocating for them (~600 bytes a tensor). */
    if (!rc && count > records_len / MIN_RECORD)
        rc = wd__error(WD_EBADINPUT, "truncated .wdelta: the header names %zu tensors, the "
                                     "file has no room for their records",
                       count);
    if (!rc && count) {
        d->tensors = calloc(count, sizeof *d->tensors);
        d->sorted = malloc(count * sizeof *d->sorted);
        d->by_record = malloc(count * sizeof *d->by_record);
        d->names = malloc(names_len);
        if (!d->tensors || !d->sorted || !d->by_record || !d->names)
            rc = WD_NOMEM();
    }
    size_t i = 0;
    char *np = d->names;
    for (const cJSON *e = rc ? NULL : ts->child; e && !rc; e = e->next, i++) {
        wd__wdelta_tensor *t = &d->tensors[i];
        const char *name = e->string ? e->string : "";
        t->name_len = strlen(name);
        t->name = np;
        memcpy(np, name, t->name_len + 1);
        np += t->name_len + 1;
        t->strategy = -1;
        if (t->name_len == 0)
            rc = wd__error(WD_EBADINPUT, ".wdelta header names a tensor with an empty name");
        else if (t->name_len > UINT32_MAX)
            rc = wd__error(WD_EBADINPUT, ".wdelta tensor name too long");
        else if (!wd__utf8_valid((const unsigned char *)name, t->name_len))
            rc = wd__error(WD_EBADINPUT, ".wdelta tensor name is not valid UTF-8");
        else
            rc = parse_entry(t, e, d->version);
    }
    if (!rc)
        d->count = count;
    cJSON_Delete(root);
    if (rc)
        return rc;
    sort_by_name(d->sorted, d->tensors, count);
    for (size_t k = 1; k < count; k++) {
        const wd__wdelta_tensor *a = &d->tensors[d->sorted[k - 1]];
        const wd__wdelta_tensor *b = &d->tensors[d->sorted[k]];
        if (a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0) {
            SHOWBUF;
            return wd__error(WD_EBADINPUT, ".wdelta header names tensor '%s' twice", SHOW(a));
        }
    }
    return 0;
}

/* ---- Reader: records ---------------------------------------------------- */

/* Binary search in the sorted index: the tensor's index, or SIZE_MAX. */
static size_t find_index(const wd__wdelta *d, const char *name, size_t len)
{
    size_t lo = 0, hi = d->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(&d->tensors[d->sorted[mid]], name, len);
        if (c == 0)
            return d->sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

const wd__wdelta_tensor *wd__wdelta_find(const wd__wdelta *d, const char *name, size_t len)
{
    size_t i = name ? find_index(d, name, len) : SIZE_MAX;
    return i == SIZE_MAX ? NULL : &d->tensors[i];
}

/* Cursor over the record area [pos, end): every read is bounds-checked and a
 * read past end is the "truncated" error. A record's framing is a handful
 * of small fields, and the small arrays of a tensor (int4's scale and
 * zero_point) sit between framings: reads of a file go through a window of
 * FRAME_WINDOW bytes, so that a file's framing costs about one pread per
 * large array instead of six per record (syscalls are what parsing a file
 * of a few hundred tensors spent its time on). */
#define FRAME_WINDOW 4096u

typedef struct {
    const wd__wdelta *d;
    uint64_t pos, end;
    uint32_t index;    /* record number, for messages */
    unsigned char *win; /* FRAME_WINDOW bytes, or NULL: read directly */
    uint64_t win_off;  /* file offset of win[0] */
    size_t win_len;    /* valid bytes in win */
} cursor;

static int cur_read(cursor *c, void *buf, uint64_t len, const char *what)
{
    if (len > c->end - c->pos)
        return wd__error(WD_EBADINPUT,
                         "truncated .wdelta: record %u (%s) extends past the end of the data",
                         c->index, what);
    int rc = 0;
    if (!c->win || len > FRAME_WINDOW) {
        rc = src_read(c->d, c->pos, buf, (size_t)len);
    } else {
        if (c->pos < c->win_off || c->pos + len > c->win_off + c->win_len) {
            /* refill from pos; nothing past the record area is read */
            uint64_t room = c->end - c->pos;
            size_t want = room < FRAME_WINDOW ? (size_t)room : FRAME_WINDOW;
            c->win_len = 0;
            if ((rc = src_read(c->d, c->pos, c->win, want)))
                return rc;
            c->win_off = c->pos;
            c->win_len = want;
        }
        if (len)
            memcpy(buf, c->win + (c->pos - c->win_off), (size_t)len);
    }
    if (!rc)
        c->pos += len;
    return rc;
}

static int cur_u32(cursor *c, uint32_t *out, const char *what)
{
    unsigned char b[4];
    int rc = cur_read(c, b, 4, what);
    *out = rc ? 0 : get_u32(b);
    return rc;
}

static int parse_records(wd__wdelta *d, uint64_t start)
{
    size_t max_name = 0;
    for (size_t i = 0; i < d->count; i++)
        if (d->tensors[i].name_len > max_name)
            max_name = d->tensors[i].name_len;
    /* Longest header name, or enough of an unknown one to show it. */
    size_t name_cap = max_name > MAX_NAME_SHOW ? max_name : MAX_NAME_SHOW;
    char *name = malloc(name_cap + 1);
    if (!name)
        return WD_NOMEM();
    cursor c = {d, start, d->size - WD_HASH_SIZE, 0, NULL, 0, 0};
    /* a memory buffer is read in place */
    if (!d->mem && !(c.win = malloc(FRAME_WINDOW))) {
        free(name);
        return WD_NOMEM();
    }
    size_t n_seen = 0;
    int rc = 0;
    SHOWBUF;
    while (!rc && c.pos < c.end) {
        uint32_t len;
        if ((rc = cur_u32(&c, &len, "name length")))
            break;
        if (len > c.end - c.pos) {
            rc = cur_read(&c, NULL, len, "name");
            break;
        }
        if (len > name_cap) {
            rc = wd__error(WD_EBADINPUT, ".wdelta record %u names a tensor not in the header "
                                         "(%u-byte name)",
                           c.index, len);
            break;
        }
        if ((rc = cur_read(&c, name, len, "name")))
            break;
        size_t ti = find_index(d, name, len);
        wd__wdelta_tensor *t = ti == SIZE_MAX ? NULL : &d->tensors[ti];
        if (!t) {
            rc = wd__error(WD_EBADINPUT, ".wdelta record %u names tensor '%s', not in the header",
                           c.index, show(name, len, showbuf_));
            break;
        }

        char fname[MAX_FIELD_LEN];
        if ((rc = cur_u32(&c, &len, "field length")))
            break;
        if (len >= MAX_FIELD_LEN && len <= c.end - c.pos) {
            rc = wd__error(WD_EBADINPUT, ".wdelta record %u of tensor '%s': unknown field",
                           c.index, SHOW(t));
            break;
        }
        if ((rc = cur_read(&c, fname, len, "field")))
            break;
        int field = lookup(field_names, WD__WF__COUNT, fname, len);
        if (field < 0 || !(t->has & WD__WK_BIT(WD__WK_REF + field))) {
            rc = wd__error(WD_EBADINPUT,
                           ".wdelta record %u: tensor '%s' has no field '%s' in the header",
                           c.index, SHOW(t), field < 0 ? "?" : field_names[field]);
            break;
        }
        wd__wdelta_field *f = &t->field[field];
        if (f->present) {
            rc = wd__error(WD_EBADINPUT, ".wdelta record %u: duplicate record for tensor '%s' "
                                         "field '%s'",
                           c.index, SHOW(t), field_names[field]);
            break;
        }

        char dname[WD__WDELTA_DTYPE_MAX];
        if ((rc = cur_u32(&c, &len, "dtype length")))
            break;
        if (len >= sizeof dname && len <= c.end - c.pos) {
            rc = wd__error(WD_EBADINPUT, ".wdelta record %u (tensor '%s' field '%s'): unknown dtype",
                           c.index, SHOW(t), field_names[field]);
            break;
        }
        if ((rc = cur_read(&c, dname, len, "dtype")))
            break;
        wd_dtype dt;
        if (np_parse(dname, len, &dt)) {
            rc = wd__error(WD_EBADINPUT, ".wdelta record %u (tensor '%s' field '%s'): unknown dtype",
                           c.index, SHOW(t), field_names[field]);
            break;
        }

        uint32_t ndim;
        if ((rc = cur_u32(&c, &ndim, "ndim")))
            break;
        if (ndim > WD_MAX_DIMS && (uint64_t)ndim * 8 <= c.end - c.pos) {
            rc = wd__error(WD_EBADINPUT, ".wdelta record %u (tensor '%s' field '%s'): %u dimensions",
                           c.index, SHOW(t), field_names[field], ndim);
            break;
        }
        unsigned char db[8 * WD_MAX_DIMS];
        if ((rc = cur_read(&c, db, (uint64_t)ndim * 8, "dims")))
            break;
        uint64_t count = 1;
        int overflow = 0;
        for (uint32_t k = 0; k < ndim; k++) {
            uint64_t v = get_u64(db + 8 * k);
            if (v != 0 && count > UINT64_MAX / v)
                overflow = 1;
            else
                count *= v;
        }
        unsigned char lb[8];
        if ((rc = cur_read(&c, lb, 8, "data length")))
            break;
        uint64_t nbytes = get_u64(lb);
        if (nbytes > c.end - c.pos) {
            rc = cur_read(&c, NULL, nbytes, "data");
            break;
        }
        if (overflow || count > UINT64_MAX / np_size(dt) || count * np_size(dt) != nbytes) {
            rc = wd__error(WD_EBADINPUT, ".wdelta record %u (tensor '%s' field '%s'): dims "
                                         "disagree with the data length %llu",
                           c.index, SHOW(t), field_names[field], (unsigned long long)nbytes);
            break;
        }
        if (ndim != 1) {
            rc = wd__error(WD_EBADINPUT, ".wdelta record %u (tensor '%s' field '%s'): %u-D "
                                         "array, expected 1-D",
                           c.index, SHOW(t), field_names[field], ndim);
            break;
        }
        if ((rc = check_record(t, field, dt, count, d->version, WD_EBADINPUT)))
            break;
        f->present = 1;
        f->dtype = dt;
        f->count = count;
        f->nbytes = nbytes;
        f->offset = c.pos;
        f->record_index = c.index;
        c.pos += nbytes;
        c.index++;
        int first = 1;
        for (int k = 0; k < WD__WF__COUNT; k++)
            if (k != field && t->field[k].present)
                first = 0;
        if (first)
            d->by_record[n_seen++] = ti;
    }
    free(name);
    free(c.win);
    if (rc)
        return rc;
    for (size_t i = 0; i < d->count; i++) {
        const wd__wdelta_tensor *t = &d->tensors[i];
        for (int k = 0; k < WD__WF__COUNT; k++)
            if ((t->has & WD__WK_BIT(WD__WK_REF + k)) && !t->field[k].present)
                return wd__error(WD_EBADINPUT, ".wdelta tensor '%s': field '%s' has no record",
                                 SHOW(t), field_names[k]);
        if (t->strategy == WD__WS_SPARSE &&
            t->field[WD__WF_INDICES].count != t->field[WD__WF_VALUES].count)
            return wd__error(WD_EBADINPUT, ".wdelta tensor '%s': %llu indices but %llu values",
                             SHOW(t), (unsigned long long)t->field[WD__WF_INDICES].count,
                             (unsigned long long)t->field[WD__WF_VALUES].count);
    }
    return 0;
}

/* ---- Reader: open ------------------------------------------------------- */

static int parse_all(wd__wdelta *d, uint64_t room, uint64_t hlen);

/* check == 0: the checksum is left to wd__wdelta_verify_checksum, except
 * that when the file does not parse, a checksum mismatch is reported
 * instead, as a checked open would (it checks the checksum first). */
static int open_common(wd__wdelta *d, int check)
{
    unsigned char pre[WD__WDELTA_PREFIX_LEN];
    int rc;
    if (d->size < WD__WDELTA_MAGIC_LEN)
        return wd__error(WD_EBADINPUT, "not a .wdelta file (%llu bytes, too short)",
                         (unsigned long long)d->size);
    if ((rc = src_read(d, 0, pre, WD__WDELTA_MAGIC_LEN)))
        return rc;
    if (memcmp(pre, WD__WDELTA_MAGIC, WD__WDELTA_MAGIC_LEN) != 0)
        return wd__error(WD_EBADINPUT, "not a .wdelta file (bad magic)");
    if (d->size < WD__WDELTA_PREFIX_LEN + WD_HASH_SIZE)
        return wd__error(WD_EBADINPUT, "truncated .wdelta file (%llu bytes)",
                         (unsigned long long)d->size);
    if ((rc = src_read(d, 0, pre, WD__WDELTA_PREFIX_LEN)))
        return rc;
    uint32_t version = get_u32(pre + 7), hlen = get_u32(pre + 11);
    if (version != 1 && version != 2)
        return wd__error(WD_EBADINPUT, "unsupported .wdelta version %u (supported: 1, 2)",
                         version);
    d->version = (int)version;
    uint64_t room = d->size - WD__WDELTA_PREFIX_LEN - WD_HASH_SIZE;
    if (hlen > room)
        return wd__error(WD_EBADINPUT,
                         "corrupted .wdelta header (length %u exceeds the file size %llu)", hlen,
                         (unsigned long long)d->size);
    if (hlen > WD__WDELTA_MAX_HEADER)
        return wd__error(WD_EBADINPUT, ".wdelta header of %u bytes exceeds the limit of %u",
                         hlen, WD__WDELTA_MAX_HEADER);
    uint64_t records_start = WD__WDELTA_PREFIX_LEN + (uint64_t)hlen;
    d->records_start = records_start;
    if (check && (rc = verify_checksum(d, records_start)))
        return rc;
    rc = parse_all(d, room, hlen);
    if (rc && !check) {
        char msg[1024]; /* error.c's message buffer size */
        snprintf(msg, sizeof msg, "%s", wd_errmsg());
        int crc = verify_checksum(d, records_start);
        return crc ? crc : wd__error(rc, "%s", msg);
    }
    return rc;
}

int wd__wdelta_verify_checksum(const wd__wdelta *d)
{
    int rc = verify_checksum(d, d->records_start);
    return rc && d->path ? wd__error_context(rc, "'%s'", d->path) : rc;
}

/* The header and the record framing, after the prefix was checked. */
static int parse_all(wd__wdelta *d, uint64_t room, uint64_t hlen)
{
    uint64_t records_start = d->records_start;
    int rc;
    unsigned char *text = malloc((size_t)hlen + 1); /* the header, <= MAX_HEADER + 1 */
    if (!text)
        return WD_NOMEM();
    rc = src_read(d, WD__WDELTA_PREFIX_LEN, text, hlen);
    if (!rc) {
        text[hlen] = '\0';
        rc = parse_header(d, text, hlen, room - hlen);
    }
    free(text);
    if (!rc)
        rc = parse_records(d, records_start);
    return rc;
}

int wd__wdelta_open_mem(wd__wdelta **out, const void *data, size_t size)
{
    *out = NULL;
    wd__wdelta *d = calloc(1, sizeof *d);
    if (!d)
        return WD_NOMEM();
    d->fd = -1;
    d->mem = data ? data : (const unsigned char *)"";
    d->size = size;
    int rc = open_common(d, 1);
    if (rc) {
        wd__wdelta_close(d);
        return rc;
    }
    *out = d;
    return 0;
}

int wd__wdelta_open(wd__wdelta **out, const char *path)
{
    return wd__wdelta_open_ex(out, path, 0);
}

int wd__wdelta_open_ex(wd__wdelta **out, const char *path, unsigned flags)
{
    *out = NULL;
    wd__wdelta *d = calloc(1, sizeof *d);
    if (!d)
        return WD_NOMEM();
    d->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (d->fd < 0) {
        int code = errno == ENOENT ? WD_ENOTFOUND : WD_EIO;
        free(d);
        return wd__error_errno(code, "cannot open '%s'", path);
    }
    struct stat st;
    int rc = 0;
    if (!(d->path = strdup(path)))
        rc = WD_NOMEM();
    else if (fstat(d->fd, &st) != 0)
        rc = wd__error_errno(WD_EIO, "cannot stat '%s'", path);
    else if (!S_ISREG(st.st_mode))
        rc = wd__error(WD_EBADINPUT, "'%s' is not a regular file", path);
    if (!rc) {
        d->size = (uint64_t)st.st_size;
        rc = open_common(d, !(flags & WD__WDELTA_OPEN_NO_CHECKSUM));
        if (rc)
            rc = wd__error_context(rc, "'%s'", path); /* the one place that knows the file */
    }
    if (rc) {
        wd__wdelta_close(d);
        return rc;
    }
    *out = d;
    return 0;
}

void wd__wdelta_close(wd__wdelta *d)
{
    if (!d)
        return;
    if (d->fd >= 0)
        close(d->fd);
    free(d->path);
    free(d->tensors);
    free(d->sorted);
    free(d->by_record);
    free(d->names);
    free(d);
}

int wd__wdelta_version(const wd__wdelta *d) { return d->version; }
const char *wd__wdelta_parent_hash(const wd__wdelta *d) { return d->parent_hash; }
int wd__wdelta_strategy(const wd__wdelta *d) { return d->strategy; }
uint64_t wd__wdelta_file_size(const wd__wdelta *d) { return d->size; }
size_t wd__wdelta_count(const wd__wdelta *d) { return d->count; }

const wd__wdelta_tensor *wd__wdelta_tensor_at(const wd__wdelta *d, size_t i)
{
    return i < d->count ? &d->tensors[i] : NULL;
}

const wd__wdelta_tensor *wd__wdelta_tensor_by_record(const wd__wdelta *d, size_t i)
{
    return i < d->count ? &d->tensors[d->by_record[i]] : NULL;
}

const wd__wdelta_field *wd__wdelta_field_of(const wd__wdelta_tensor *t, int field)
{
    if (field < 0 || field >= WD__WF__COUNT || !(refs_of(t->strategy) & WD__WK_BIT(WD__WK_REF + field)))
        return NULL;
    return &t->field[field];
}

int wd__wdelta_pread(const wd__wdelta *d, const wd__wdelta_field *f, uint64_t off, void *buf,
                     size_t len)
{
    if (off > f->nbytes || len > f->nbytes - off)
        return wd__error(WD_EUSAGE, "read of [%llu, +%zu) outside a %llu-byte .wdelta array",
                         (unsigned long long)off, len, (unsigned long long)f->nbytes);
    return src_read(d, f->offset + off, buf, len);
}

int wd__wdelta_read_array(const wd__wdelta *d, const wd__wdelta_field *f, size_t max_bytes,
                          void **out)
{
    *out = NULL;
    if (f->nbytes > max_bytes)
        return wd__error(WD_ENOMEM, ".wdelta array of %llu bytes exceeds the limit of %zu",
                         (unsigned long long)f->nbytes, max_bytes);
    void *buf = malloc(f->nbytes ? (size_t)f->nbytes : 1); /* the whole array, <= max_bytes */
    if (!buf)
        return WD_NOMEM();
    int rc = src_read(d, f->offset, buf, (size_t)f->nbytes);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

int wd__wdelta_check_indices(const wd__wdelta_tensor *t, int field, const void *piece,
                             wd_dtype dt, size_t count, uint64_t first, uint64_t n,
                             int increasing, int64_t *prev)
{
    const unsigned char *p = piece;
    unsigned size = dt == WD_DT_I32 ? 4 : 8;
    int64_t last = prev ? *prev : -1;
    SHOWBUF;
    for (size_t i = 0; i < count; i++, p += size) {
        int64_t v = size == 4 ? (int64_t)(int32_t)get_u32(p) : (int64_t)get_u64(p);
        if (v < 0 || (uint64_t)v >= n)
            return wd__error(WD_EBADINPUT,
                             ".wdelta tensor '%s': %s[%llu] = %lld is outside [0, %llu)",
                             SHOW(t), wd__wdelta_field_name(field),
                             (unsigned long long)(first + i), (long long)v, (unsigned long long)n);
        if (increasing && v <= last)
            return wd__error(WD_EBADINPUT,
                             ".wdelta tensor '%s': %s[%llu] = %lld does not increase",
                             SHOW(t), wd__wdelta_field_name(field),
                             (unsigned long long)(first + i), (long long)v);
        last = v;
    }
    if (prev)
        *prev = last;
    return 0;
}

/* ---- Writer: JSON as Python's json.dumps writes it ---------------------- */

/* Growable byte string for the header; bounded by WD__WDELTA_MAX_HEADER. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t len)
{
    if (b->oom)
        return;
    if (len > WD__WDELTA_MAX_HEADER || b->len + len > WD__WDELTA_MAX_HEADER) {
        b->oom = 2;
        return;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, len);
    b->len += len;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_u64(sbuf *b, uint64_t v)
{
    char tmp[24];
    sb_add(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v));
}

/* A JSON string as Python writes it with ensure_ascii: printable ASCII as
 * is, \" \\ \b \f \n \r \t, anything else \u%04x (lowercase), code points
 * above U+FFFF as surrogate pairs. s must be valid UTF-8. */
static void sb_json_string(sbuf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    char tmp[16];
    sb_add(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        uint32_t cp = u[i];
        size_t n = 1;
        if (cp >= 0xf0) { cp &= 0x07; n = 4; }
        else if (cp >= 0xe0) { cp &= 0x0f; n = 3; }
        else if (cp >= 0xc0) { cp &= 0x1f; n = 2; }
        for (size_t k = 1; k < n && i + k < len; k++)
            cp = (cp << 6) | (u[i + k] & 0x3f);
        i += n;
        if (cp == '"') sb_add(b, "\\\"", 2);
        else if (cp == '\\') sb_add(b, "\\\\", 2);
        else if (cp == '\b') sb_add(b, "\\b", 2);
        else if (cp == '\f') sb_add(b, "\\f", 2);
        else if (cp == '\n') sb_add(b, "\\n", 2);
        else if (cp == '\r') sb_add(b, "\\r", 2);
        else if (cp == '\t') sb_add(b, "\\t", 2);
        else if (cp >= 0x20 && cp <= 0x7e) {
            char c = (char)cp;
            sb_add(b, &c, 1);
        } else if (cp > 0xffff) {
            cp -= 0x10000;
            sb_add(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x",
                                            0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff)));
        } else {
            sb_add(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", cp));
        }
    }
    sb_add(b, "\"", 1);
}

/* Python's repr(float) for a finite v: the shortest digit string that reads
 * back as v, in fixed notation when the decimal exponent is in [-4, 16),
 * else d[.ddd]e+XX with at least two exponent digits ("1e-05"); fixed
 * notation always has a fraction (".0"). out must hold 32 bytes. */
void wd__py_float_repr(double v, char out[32])
{
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    /* tmp is [-]d[.ddd]e(+|-)XX */
    const char *p = tmp;
    int neg = *p == '-';
    if (neg)
        p++;
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int decpt = digits[0] == '0' ? 1 : exp10 + 1; /* value = 0.DIGITS x 10^decpt */
    char *o = out;
    if (neg)
        *o++ = '-';
    if (decpt <= -4 || decpt > 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        /* |exponent| <= 324 for a double */
        snprintf(o, 8, "e%c%02u", decpt - 1 < 0 ? '-' : '+', (unsigned)abs(decpt - 1) % 1000u);
        return;
    }
    if (decpt <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int k = 0; k < -decpt; k++)
            *o++ = '0';
        memcpy(o, digits, (size_t)nd);
        o += nd;
    } else if (decpt >= nd) {
        memcpy(o, digits, (size_t)nd);
        o += nd;
        for (int k = 0; k < decpt - nd; k++)
            *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    } else {
        memcpy(o, digits, (size_t)decpt);
        o += decpt;
        *o++ = '.';
        memcpy(o, digits + decpt, (size_t)(nd - decpt));
        o += nd - decpt;
    }
    *o = '\0';
}

void wd__py_json_float(double v, char out[40])
{
    if (isnan(v))
        snprintf(out, 40, "NaN");
    else if (isinf(v))
        snprintf(out, 40, v < 0 ? "-Infinity" : "Infinity");
    else
        wd__py_float_repr(v, out);
}

static void sb_float(sbuf *b, double v)
{
    char tmp[32];
    wd__py_float_repr(v, tmp);
    sb_str(b, tmp);
}

static void emit_entry(sbuf *b, const wd__wdelta_tensor *t)
{
    sb_add(b, "{", 1);
    for (int i = 0; i < t->n_keys; i++) {
        int k = t->key_order[i];
        const char *kname = k < WD__WK_REF ? key_names[k] : field_names[k - WD__WK_REF];
        if (i)
            sb_add(b, ",", 1);
        sb_json_string(b, kname, strlen(kname));
        sb_add(b, ":", 1);
        switch (k) {
        case WD__WK_STRATEGY:
            sb_json_string(b, strategy_names[t->strategy], strlen(strategy_names[t->strategy]));
            break;
        case WD__WK_SHAPE:
            sb_add(b, "[", 1);
            for (int j = 0; j < t->ndim; j++) {
                if (j)
                    sb_add(b, ",", 1);
                sb_u64(b, t->shape[j]);
            }
            sb_add(b, "]", 1);
            break;
        case WD__WK_DTYPE: sb_json_string(b, t->dtype, strlen(t->dtype)); break;
        case WD__WK_BASE_DTYPE: sb_json_string(b, t->base_dtype, strlen(t->base_dtype)); break;
        case WD__WK_SPARSITY: sb_float(b, t->sparsity); break;
        case WD__WK_OUTLIER_FRACTION: sb_float(b, t->outlier_fraction); break;
        case WD__WK_N_ELEMENTS: sb_u64(b, t->n_elements); break;
        case WD__WK_N_COLS: sb_u64(b, t->n_cols); break;
        case WD__WK_N_OUTLIERS: sb_u64(b, t->n_outliers); break;
        case WD__WK_INT4_LAYOUT: sb_u64(b, (uint64_t)t->int4_layout); break;
        default:
            sb_str(b, "{\"_ref\":");
            sb_json_string(b, kname, strlen(kname));
            sb_add(b, "}", 1);
            break;
        }
    }
    sb_add(b, "}", 1);
}

/* ---- Writer ------------------------------------------------------------- */

int wd__wdelta_tensor_fill(wd__wdelta_tensor *t, int version)
{
    return wd__wdelta_tensor_fill_ex(t, version, 0);
}

int wd__wdelta_tensor_fill_ex(wd__wdelta_tensor *t, int version, unsigned flags)
{
    int base_early = t->base_dtype[0] && !(flags & WD__WDELTA_FILL_MEM_ORDER);
    if (t->strategy < 0 || t->strategy >= WD__WS__COUNT)
        return wd__error(WD_EUSAGE, "unknown .wdelta strategy %d", t->strategy);
    if (t->ndim < 0 || t->ndim > WD_MAX_DIMS)
        return wd__error(WD_EUSAGE, "tensor has %d dimensions (at most %d)", t->ndim,
                         WD_MAX_DIMS);
    if (shape_product(t) < 0)
        return wd__error(WD_EUSAGE, "tensor shape product overflows");
    if (!t->dtype[0])
        memcpy(t->dtype, "float32", sizeof "float32");
    t->n_elements = t->n;
    t->n_cols = wd__wdelta_cols(t);
    int k = 0;
    t->key_order[k++] = WD__WK_STRATEGY;
    t->key_order[k++] = WD__WK_SHAPE;
    t->key_order[k++] = WD__WK_DTYPE;
    if (base_early)
        t->key_order[k++] = WD__WK_BASE_DTYPE;
    switch (t->strategy) {
    case WD__WS_SPARSE: t->key_order[k++] = WD__WK_SPARSITY; break;
    case WD__WS_QUANTIZED:
        t->key_order[k++] = WD__WK_N_ELEMENTS;
        t->key_order[k++] = WD__WK_N_COLS;
        break;
    default:
        t->key_order[k++] = WD__WK_OUTLIER_FRACTION;
        t->key_order[k++] = WD__WK_N_ELEMENTS;
        t->key_order[k++] = WD__WK_N_OUTLIERS;
        if (version >= 2)
            t->key_order[k++] = WD__WK_INT4_LAYOUT;
        t->int4_layout = version >= 2 ? 2 : 1;
        break;
    }
    if (t->base_dtype[0] && !base_early)
        t->key_order[k++] = WD__WK_BASE_DTYPE;
    const int *f;
    size_t nf = wd__wdelta_fields_of(t->strategy, &f);
    for (size_t i = 0; i < nf; i++)
        t->key_order[k++] = (uint8_t)(WD__WK_REF + f[i]);
    t->n_keys = k;
    t->has = 0;
    for (int i = 0; i < k; i++)
        t->has |= WD__WK_BIT(t->key_order[i]);
    return 0;
}

struct wd__wdelta_writer {
    int fd;                     /* out's */
    wd__outfile *out;           /* NULL once finished */
    const char *name;           /* out's name, for messages */
    int version;
    int failed;                 /* first error, sticky */
    wd_sha256 *sha;
    /* Begun without a parent hash: the header holds 64 '0's where it goes
     * and nothing is hashed until wd__wdelta_writer_set_parent patches it in
     * and hashes what the file holds so far (read back), so the caller can
     * hash the base while the records are being encoded. */
    int deferred;
    uint64_t written;           /* bytes that reached the file */
    wd__wdelta_tensor *tensors; /* copies, caller's order; names point into names */
    char *names;
    size_t count;
    size_t *order;    /* record order: indices into tensors */
    size_t cur;       /* position in order */
    size_t cur_field; /* position in the strategy's field list */
    uint64_t left;    /* bytes still due for the open record */
    int in_record;
    size_t buf_len;
    unsigned char buf[IO_BUF_SIZE]; /* pending output, already hashed */
};

static int full_write(const wd__wdelta_writer *w, const void *data, size_t len)
{
    return wd__file_write(w->fd, data, len, w->name);
}

/* Counts what reached the file; a temporary file is synced in steps as it
 * grows (outfile.h), so the final fsync has little left to wait for. */
static void w_written(wd__wdelta_writer *w, size_t len)
{
    w->written += len;
    wd__outfile_wrote(w->out, len);
}

static int w_flush(wd__wdelta_writer *w)
{
    int rc = full_write(w, w->buf, w->buf_len);
    w_written(w, w->buf_len);
    w->buf_len = 0;
    return rc;
}

/* Hashes (unless deferred) and writes; the checksum covers exactly what
 * reaches the file. */
static int w_put(wd__wdelta_writer *w, const void *data, size_t len)
{
    if (!w->deferred)
        wd__sha256_update(w->sha, data, len);
    if (len > sizeof w->buf - w->buf_len) {
        int rc = w_flush(w);
        if (rc)
            return rc;
        if (len >= sizeof w->buf) {
            rc = full_write(w, data, len);
            w_written(w, len);
            return rc;
        }
    }
    memcpy(w->buf + w->buf_len, data, len);
    w->buf_len += len;
    return 0;
}

static int w_fail(wd__wdelta_writer *w, int rc)
{
    if (rc && !w->failed)
        w->failed = rc;
    return rc;
}

static void w_free(wd__wdelta_writer *w)
{
    wd__outfile_abort(w->out); /* removes the temporary, unless finished */
    wd__sha256_free(w->sha);
    free(w->tensors);
    free(w->names);
    free(w->order);
    free(w);
}

void wd__wdelta_writer_abort(wd__wdelta_writer *w)
{
    if (w)
        w_free(w);
}

/* Skips to the next record due, past empty field lists. */
static void w_advance(wd__wdelta_writer *w)
{
    w->cur_field++;
    if (w->cur < w->count) {
        const int *f;
        size_t nf = wd__wdelta_fields_of(w->tensors[w->order[w->cur]].strategy, &f);
        if (w->cur_field >= nf) {
            w->cur++;
            w->cur_field = 0;
        }
    }
}

int wd__wdelta_writer_begin(wd__wdelta_writer **out, const char *path, int version,
                            const char *parent_hash, int strategy,
                            const wd__wdelta_tensor *tensors, size_t n_tensors)
{
    wd__outfile *f;
    *out = NULL;
    int rc = wd__outfile_open(&f, path, WD_OUTPUT_FORCE, NULL, 0);
    return rc ? rc : wd__wdelta_writer_begin_file(out, f, version, parent_hash, strategy, tensors, n_tensors);
}

int wd__wdelta_writer_begin_file(wd__wdelta_writer **out, wd__outfile *f, int version,
                                 const char *parent_hash, int strategy,
                                 const wd__wdelta_tensor *tensors, size_t n_tensors)
{
    *out = NULL;
    int rc = 0;
    if (version != 1 && version != 2)
        rc = wd__error(WD_EUSAGE, "cannot write .wdelta version %d (supported: 1, 2)", version);
    else if (strategy < 0 || strategy >= WD__WS__COUNT)
        rc = wd__error(WD_EUSAGE, "unknown .wdelta strategy %d", strategy);
    else if (!parent_hash && !wd__outfile_seekable(f))
        rc = wd__error(WD_EUSAGE, ".wdelta writer: '%s' is a stream, so the parent hash must "
                                  "be given first", wd__outfile_name(f));
    if (rc) {
        wd__outfile_abort(f);
        return rc;
    }
    char ph[WD_HEX_SIZE];
    static const char zeros[WD_HEX_SIZE] = "0000000000000000000000000000000000000000000000000000000000000000";
    int deferred = !parent_hash;
    if (deferred)
        parent_hash = zeros;
    for (int i = 0; i < 65 && !rc; i++) {
        char c = parent_hash[i];
        if (i == 64) {
            if (c != '\0')
                rc = wd__error(WD_EUSAGE, "parent hash is not 64 hex digits");
            break;
        }
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            rc = wd__error(WD_EUSAGE, "parent hash is not 64 hex digits");
        ph[i] = c;
    }
    ph[64] = '\0';
    if (!rc && n_tensors > SIZE_MAX / sizeof(wd__wdelta_tensor))
        rc = WD_NOMEM();
    wd__wdelta_writer *w = rc ? NULL : calloc(1, sizeof *w);
    if (!w) {
        wd__outfile_abort(f);
        return rc ? rc : WD_NOMEM();
    }
    w->out = f;
    w->fd = wd__outfile_fd(f);
    w->name = wd__outfile_name(f);
    w->deferred = deferred;
    w->version = version;
    w->count = n_tensors;
    size_t names_len = 0;
    for (size_t i = 0; i < n_tensors && !rc; i++) {
        if (!tensors[i].name || tensors[i].name_len == 0 || tensors[i].name_len > UINT32_MAX ||
            memchr(tensors[i].name, '\0', tensors[i].name_len) ||
            !wd__utf8_valid((const unsigned char *)tensors[i].name, tensors[i].name_len))
            rc = wd__error(WD_EUSAGE, "tensor %zu: name must be non-empty UTF-8 without NUL", i);
        names_len += tensors[i].name_len + 1;
    }
    if (!rc) {
        w->tensors = malloc((n_tensors ? n_tensors : 1) * sizeof *w->tensors);
        w->order = malloc((n_tensors ? n_tensors : 1) * sizeof *w->order);
        w->names = malloc(names_len + 1);
        if (!w->tensors || !w->order || !w->names || wd__sha256_new(&w->sha))
            rc = WD_NOMEM();
    }
    char *np = w->names;
    for (size_t i = 0; i < n_tensors && !rc; i++) {
        wd__wdelta_tensor *t = &w->tensors[i];
        *t = tensors[i];
        memcpy(np, tensors[i].name, t->name_len);
        np[t->name_len] = '\0';
        t->name = np;
        np += t->name_len + 1;
        memset(t->field, 0, sizeof t->field);
        rc = check_entry(t, version, WD_EUSAGE);
    }
    size_t *sorted = NULL;
    if (!rc && !(sorted = malloc((n_tensors ? n_tensors : 1) * sizeof *sorted)))
        rc = WD_NOMEM();
    if (!rc) {
        sort_by_name(sorted, w->tensors, n_tensors);
        for (size_t k = 1; k < n_tensors && !rc; k++) {
            const wd__wdelta_tensor *a = &w->tensors[sorted[k - 1]];
            if (name_cmp(a, w->tensors[sorted[k]].name, w->tensors[sorted[k]].name_len) == 0) {
                SHOWBUF;
                rc = wd__error(WD_EUSAGE, "tensor '%s' given twice", SHOW(a));
            }
        }
        for (size_t k = 0; k < n_tensors; k++)
            w->order[k] = version == 2 ? sorted[k] : k;
    }

    sbuf hb = {0};
    if (!rc) {
        sb_str(&hb, "{\"parent_hash\":\"");
        sb_str(&hb, ph);
        sb_str(&hb, "\",\"strategy\":");
        sb_json_string(&hb, strategy_names[strategy], strlen(strategy_names[strategy]));
        sb_str(&hb, ",\"tensors\":{");
        for (size_t k = 0; k < n_tensors; k++) {
            const wd__wdelta_tensor *t = &w->tensors[sorted[k]];
            if (k)
                sb_add(&hb, ",", 1);
            sb_json_string(&hb, t->name, t->name_len);
            sb_add(&hb, ":", 1);
            emit_entry(&hb, t);
        }
        sb_str(&hb, "}}");
        if (hb.oom == 1)
            rc = WD_NOMEM();
        else if (hb.oom)
            rc = wd__error(WD_EUSAGE, ".wdelta header would exceed %u bytes",
                           WD__WDELTA_MAX_HEADER);
    }
    free(sorted);
    if (!rc) {
        unsigned char pre[WD__WDELTA_PREFIX_LEN];
        memcpy(pre, WD__WDELTA_MAGIC, WD__WDELTA_MAGIC_LEN);
        put_u32(pre + 7, (uint32_t)version);
        put_u32(pre + 11, (uint32_t)hb.len);
        rc = w_put(w, pre, sizeof pre);
        if (!rc)
            rc = w_put(w, hb.p, hb.len);
    }
    free(hb.p);
    if (rc) {
        w_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int wd__wdelta_writer_next(const wd__wdelta_writer *w, size_t *tensor, int *field)
{
    if (w->cur >= w->count)
        return 0;
    const int *f;
    wd__wdelta_fields_of(w->tensors[w->order[w->cur]].strategy, &f);
    if (tensor)
        *tensor = w->order[w->cur];
    if (field)
        *field = f[w->cur_field];
    return 1;
}

int wd__wdelta_writer_record(wd__wdelta_writer *w, const char *name, size_t name_len, int field,
                             wd_dtype dtype, int ndim, const uint64_t *dims)
{
    if (w->failed)
        return w->failed;
    if (w->in_record && w->left)
        return w_fail(w, wd__error(WD_EUSAGE, ".wdelta record incomplete: %llu bytes missing",
                                   (unsigned long long)w->left));
    size_t ti;
    int want;
    if (!wd__wdelta_writer_next(w, &ti, &want))
        return w_fail(w, wd__error(WD_EUSAGE, "every .wdelta record is already written"));
    wd__wdelta_tensor *t = &w->tensors[ti];
    SHOWBUF;
    if (!name || name_cmp(t, name, name_len) != 0 || field != want)
        return w_fail(w, wd__error(WD_EUSAGE, ".wdelta record out of order: expected tensor "
                                              "'%s' field '%s'",
                                   SHOW(t), field_names[want]));
    if (ndim != 1 || !dims)
        return w_fail(w, wd__error(WD_EUSAGE, ".wdelta records are 1-D"));
    unsigned size = np_size(dtype);
    if (!size)
        return w_fail(w, wd__error(WD_EUSAGE, "dtype cannot be written to a .wdelta"));
    uint64_t count = dims[0];
    int rc = check_record(t, field, dtype, count, w->version, WD_EUSAGE);
    if (rc)
        return w_fail(w, rc);
    if (field == WD__WF_VALUES && count != t->field[WD__WF_INDICES].count)
        return w_fail(w, wd__error(WD_EUSAGE, "tensor '%s': %llu values for %llu indices",
                                   SHOW(t), (unsigned long long)count,
                                   (unsigned long long)t->field[WD__WF_INDICES].count));
    if (count > UINT64_MAX / size)
        return w_fail(w, wd__error(WD_EUSAGE, ".wdelta record size overflows"));
    t->field[field].present = 1;
    t->field[field].dtype = dtype;
    t->field[field].count = count;
    t->field[field].nbytes = count * size;

    const char *dname = wd__wdelta_dtype_name(dtype);
    const char *fname = field_names[field];
    unsigned char b[8];
    put_u32(b, (uint32_t)t->name_len);
    rc = w_put(w, b, 4);
    if (!rc) rc = w_put(w, t->name, t->name_len);
    put_u32(b, (uint32_t)strlen(fname));
    if (!rc) rc = w_put(w, b, 4);
    if (!rc) rc = w_put(w, fname, strlen(fname));
    put_u32(b, (uint32_t)strlen(dname));
    if (!rc) rc = w_put(w, b, 4);
    if (!rc) rc = w_put(w, dname, strlen(dname));
    put_u32(b, 1);
    if (!rc) rc = w_put(w, b, 4);
    put_u64(b, count);
    if (!rc) rc = w_put(w, b, 8);
    put_u64(b, count * size);
    if (!rc) rc = w_put(w, b, 8);
    if (rc)
        return w_fail(w, rc);
    w->in_record = 1;
    w->left = count * size;
    if (w->left == 0) {
        w->in_record = 0;
        w_advance(w);
    }
    return 0;
}

int wd__wdelta_writer_write(wd__wdelta_writer *w, const void *data, size_t len)
{
    if (w->failed)
        return w->failed;
    if (!w->in_record || len > w->left)
        return w_fail(w, wd__error(WD_EUSAGE, "more data than the .wdelta record holds"));
    int rc = w_put(w, data, len);
    if (rc)
        return w_fail(w, rc);
    w->left -= len;
    if (w->left == 0) {
        w->in_record = 0;
        w_advance(w);
    }
    return 0;
}

/* Where the parent hash's 64 digits sit: after the prefix and the header's
 * opening {"parent_hash":" (the header always starts so). */
#define PARENT_HASH_OFFSET (WD__WDELTA_PREFIX_LEN + 16)

int wd__wdelta_writer_set_parent(wd__wdelta_writer *w, const char *parent_hash)
{
    if (w->failed)
        return w->failed;
    if (!w->deferred)
        return w_fail(w, wd__error(WD_EUSAGE, ".wdelta writer: parent hash already given"));
    char ph[64];
    for (int i = 0; i < 64; i++) {
        char c = parent_hash[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return w_fail(w, wd__error(WD_EUSAGE, "parent hash is not 64 hex digits"));
        ph[i] = c;
    }
    if (parent_hash[64] != '\0')
        return w_fail(w, wd__error(WD_EUSAGE, "parent hash is not 64 hex digits"));
    /* The prefix and the header's start are written before any record, so
     * after this flush the placeholder is in the file. */
    int rc = w_flush(w);
    if (!rc)
        rc = wd__file_pwrite(w->fd, ph, sizeof ph, PARENT_HASH_OFFSET, w->name);
    /* Hash the file so far back from the (page-cached) temporary file; from
     * here on w_put hashes as it writes. buf: IO_BUF_SIZE bytes. */
    unsigned char *buf = rc ? NULL : malloc(IO_BUF_SIZE);
    if (!rc && !buf)
        rc = WD_NOMEM();
    for (uint64_t off = 0; !rc && off < w->written;) {
        size_t want = w->written - off < IO_BUF_SIZE ? (size_t)(w->written - off) : IO_BUF_SIZE;
        ssize_t got = pread(w->fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            rc = got < 0 ? wd__error_errno(WD_EIO, "cannot read back '%s'", w->name)
                         : wd__error(WD_EIO, "cannot read back '%s': file shrank", w->name);
            break;
        }
        wd__sha256_update(w->sha, buf, (size_t)got);
        off += (uint64_t)got;
    }
    free(buf);
    if (rc)
        return w_fail(w, rc);
    w->deferred = 0;
    return 0;
}

int wd__wdelta_writer_finish(wd__wdelta_writer *w)
{
    int rc = w->failed;
    if (!rc && w->deferred)
        rc = wd__error(WD_EUSAGE, ".wdelta writer: parent hash never given");
    if (!rc && (w->in_record || w->cur < w->count)) {
        size_t ti = 0;
        int f = 0;
        SHOWBUF;
        wd__wdelta_writer_next(w, &ti, &f); /* cur < count here */
        rc = wd__error(WD_EUSAGE, ".wdelta incomplete: record for tensor '%s' field '%s' "
                                  "not written",
                       SHOW(&w->tensors[ti]), field_names[f]);
    }
    if (!rc) {
        uint8_t digest[WD_HASH_SIZE];
        wd__sha256_final(w->sha, digest);
        rc = w_flush(w);
        if (!rc)
            rc = full_write(w, digest, sizeof digest);
    }
    if (!rc) {
        wd__outfile *f = w->out;
        w->out = NULL; /* committed or removed by the call, either way gone */
        rc = wd__outfile_commit(f);
    }
    w_free(w);
    return rc;
}
