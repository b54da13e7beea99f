/*
 * jsonstrict.c - strict UTF-8 and JSON number checks, an allocation-free
 * JSON validator and a cursor over validated text (see jsonstrict.h).
 */
#include "jsonstrict.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

/* Copies s into buf for a one-line message: control bytes become '?', and a
 * long string is cut at a UTF-8 boundary with "..." so two names and a path
 * still fit in the 1 KiB error buffer. */
const char *wd__utf8_shown(char *buf, size_t cap, const char *s)
{
    size_t n = 0, i = 0;
    while (s[i] && n + 4 < cap) {
        unsigned char c = (unsigned char)s[i];
        buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
        i++;
    }
    if (s[i]) {
        /* drop a last character the cut left incomplete */
        size_t lead = n;
        while (lead > 0 && ((unsigned char)buf[lead - 1] & 0xc0) == 0x80)
            lead--;
        if (lead > 0 && (unsigned char)buf[lead - 1] >= 0xc0) {
            unsigned char c = (unsigned char)buf[lead - 1];
            size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            if (n - (lead - 1) < need)
                n = lead - 1;
        }
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

size_t wd__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

int wd__utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = wd__utf8_decode(s + i, n - i, &cp);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

size_t wd__json_number_end(const unsigned char *s, size_t i, size_t len)
{
#define DIGIT(k) ((k) < len && s[k] >= '0' && s[k] <= '9')
    if (i < len && s[i] == '-')
        i++;
    if (!DIGIT(i))
        return 0;
    if (s[i] == '0')
        i++;
    else
        while (DIGIT(i))
            i++;
    if (i < len && s[i] == '.') {
        i++;
        if (!DIGIT(i))
            return 0;
        while (DIGIT(i))
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (!DIGIT(i))
            return 0;
        while (DIGIT(i))
            i++;
    }
    /* "04" or "1.5.2" must not pass as two numbers */
    if (i < len && (DIGIT(i) || s[i] == '.' || s[i] == 'e' || s[i] == 'E' || s[i] == '+' || s[i] == '-'))
        return 0;
    return i;
#undef DIGIT
}

const char *wd__json_lex(const unsigned char *h, size_t n, size_t *at)
{
    /* The offset goes to *at only on failure: a store through it in the
     * loop would make every byte of h reload (char pointers alias). */
    const char *why = NULL;
    int in_string = 0;
    size_t i = 0;
    while (i < n) {
        unsigned char c = h[i];
        if (c >= 0x80) {
            uint32_t cp;
            size_t k = wd__utf8_decode(h + i, n - i, &cp);
            if (!k) {
                why = "is not valid UTF-8";
                break;
            }
            i += k;
            continue;
        }
        if (c == 0) {
            why = "contains a NUL byte";
            break;
        }
        if (c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r'))) {
            why = "contains a raw control character";
            break;
        }
        if (in_string) {
            if (c == '"') {
                in_string = 0;
            } else if (c == '\\' && i + 1 < n) {
                if (h[i + 1] == 'u' && n - i >= 6 && memcmp(h + i + 2, "0000", 4) == 0) {
                    why = "holds an escaped NUL character (\\u0000), which names and "
                          "metadata cannot contain";
                    break;
                }
                /* skip the escaped character unless it starts a multi-byte
                 * sequence, which the UTF-8 check must still see */
                if (h[i + 1] < 0x80)
                    i++;
            }
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = wd__json_number_end(h, i, n);
            if (!j) {
                why = "holds a malformed number";
                break;
            }
            i = j;
            continue;
        }
        i++;
    }
    *at = why ? i : 0;
    return why;
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const unsigned char *s, size_t n, size_t i)
{
    while (i < n && is_ws(s[i]))
        i++;
    return i;
}

static int hex4(const unsigned char *s, size_t n, size_t i, uint32_t *out)
{
    uint32_t v = 0;
    if (n - i < 4)
        return -1;
    for (size_t k = i; k < i + 4; k++) {
        unsigned char c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* The index just past the string whose opening quote is at s[i], or 0 when
 * an escape is invalid or the string does not end. */
static size_t string_end(const unsigned char *s, size_t n, size_t i)
{
    i++;
    while (i < n) {
        unsigned char c = s[i];
        if (c == '"')
            return i + 1;
        if (c != '\\') {
            i++;
            continue;
        }
        if (i + 1 >= n)
            return 0;
        c = s[i + 1];
        if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
            i += 2;
            continue;
        }
        uint32_t u, lo;
        if (c != 'u' || hex4(s, n, i + 2, &u))
            return 0;
        i += 6;
        if (u >= 0xdc00 && u <= 0xdfff)
            return 0; /* a low surrogate first */
        if (u >= 0xd800 && u <= 0xdbff) {
            if (n - i < 6 || s[i] != '\\' || s[i + 1] != 'u' || hex4(s, n, i + 2, &lo) || lo < 0xdc00 ||
                lo > 0xdfff)
                return 0;
            i += 6;
        }
    }
    return 0;
}

int wd__json_syntax(const unsigned char *s, size_t n, size_t *at, size_t *root_members)
{
    /* One bit per open container (1 = object), so any depth up to the
     * limit costs 125 bytes. */
    unsigned char stack[(WD_JSON_MAX_DEPTH + 7) / 8];
    size_t depth = 0, members = 0, i = 0;
    int rc = WD_JSON_INVALID;
    /* What the grammar allows next. */
    enum {
        VALUE,        /* a value */
        KEY_OR_END,   /* just after '{' */
        KEY,          /* after a comma in an object */
        VALUE_OR_END, /* just after '[' */
        AFTER         /* after a value: a comma, the closing bracket, or the end */
    } want = VALUE;
    /* Failures leave the loop with i at the offending byte; *at is written
     * once at the end (a store through it per byte would make every byte of
     * s reload, as char pointers alias). */
    for (;;) {
        i = skip_ws(s, n, i);
        if (want == AFTER && depth == 0) {
            rc = i < n ? WD_JSON_TRAILING : WD_JSON_OK;
            break;
        }
        if (i >= n)
            break;
        unsigned char c = s[i];
        int in_obj = depth > 0 && ((stack[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1);
        if (want == AFTER || (want == KEY_OR_END && c == '}') || (want == VALUE_OR_END && c == ']')) {
            if (want == AFTER && c == ',') {
                i++;
                if (depth == 1 && !in_obj)
                    members++; /* an element follows (a key counts below) */
                want = in_obj ? KEY : VALUE;
                continue;
            }
            if (c != (in_obj ? '}' : ']'))
                break;
            i++;
            depth--;
            want = AFTER;
            continue;
        }
        /* Members of the top-level container are counted as they start:
         * keys here, elements after '[' here and after a comma above. */
        if (depth == 1 && want != VALUE)
            members++;
        if (want == KEY_OR_END || want == KEY) {
            size_t e = c == '"' ? string_end(s, n, i) : 0;
            if (!e)
                break;
            i = skip_ws(s, n, e);
            if (i >= n || s[i] != ':')
                break;
            i++;
            want = VALUE;
            continue;
        }
        if (c == '{' || c == '[') {
            if (depth == WD_JSON_MAX_DEPTH)
                break;
            if (c == '{')
                stack[depth / 8] = (unsigned char)(stack[depth / 8] | (1u << (depth % 8)));
            else
                stack[depth / 8] = (unsigned char)(stack[depth / 8] & ~(1u << (depth % 8)));
            depth++;
            i++;
            want = c == '{' ? KEY_OR_END : VALUE_OR_END;
            continue;
        }
        size_t e = 0;
        if (c == '"')
            e = string_end(s, n, i);
        else if (c == '-' || (c >= '0' && c <= '9'))
            e = wd__json_number_end(s, i, n);
        else if (n - i >= 4 && !memcmp(s + i, "true", 4))
            e = i + 4;
        else if (n - i >= 5 && !memcmp(s + i, "false", 5))
            e = i + 5;
        else if (n - i >= 4 && !memcmp(s + i, "null", 4))
            e = i + 4;
        if (!e)
            break;
        i = e;
        want = AFTER;
    }
    *at = i;
    if (root_members)
        *root_members = members;
    return rc;
}

int wd__json_peek(wd_json_cur *c)
{
    c->pos = skip_ws(c->s, c->n, c->pos);
    return c->pos < c->n ? c->s[c->pos] : 0;
}

void wd__json_enter(wd_json_cur *c)
{
    if (wd__json_peek(c))
        c->pos++;
}

int wd__json_more(wd_json_cur *c)
{
    int b = wd__json_peek(c);
    if (b == ',')
        c->pos++, b = wd__json_peek(c);
    if (b == '}' || b == ']' || !b) {
        if (b)
            c->pos++;
        return 0;
    }
    return 1;
}

static void put_utf8(uint8_t *o, size_t *k, uint32_t cp)
{
    if (cp < 0x80) {
        o[(*k)++] = (uint8_t)cp;
    } else if (cp < 0x800) {
        o[(*k)++] = (uint8_t)(0xc0 | (cp >> 6));
        o[(*k)++] = (uint8_t)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        o[(*k)++] = (uint8_t)(0xe0 | (cp >> 12));
        o[(*k)++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        o[(*k)++] = (uint8_t)(0x80 | (cp & 0x3f));
    } else {
        o[(*k)++] = (uint8_t)(0xf0 | (cp >> 18));
        o[(*k)++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
        o[(*k)++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        o[(*k)++] = (uint8_t)(0x80 | (cp & 0x3f));
    }
}

int wd__json_string(wd_json_cur *c, wd_buf *out)
{
    const unsigned char *s = c->s;
    size_t n = c->n;
    size_t end = wd__json_peek(c) == '"' ? string_end(s, n, c->pos) : 0;
    out->len = 0;
    /* Decoding never lengthens: an escape of 2, 6 or 12 bytes becomes at
     * most 1, 3 or 4 bytes of UTF-8. */
    if (wd__buf_reserve(out, end ? end - c->pos : 1))
        return WD_ENOMEM;
    uint8_t *o = out->data;
    size_t k = 0;
    if (!end) {
        /* not a string: only a caller that did not look first gets here */
        o[0] = 0;
        c->pos = n;
        return 0;
    }
    size_t i = c->pos + 1;
    while (i < end - 1) {
        size_t run = i;
        while (run < end - 1 && s[run] != '\\')
            run++;
        memcpy(o + k, s + i, run - i);
        k += run - i;
        i = run;
        if (i >= end - 1)
            break;
        unsigned char e = s[i + 1];
        uint32_t cp = 0, lo = 0;
        switch (e) {
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            hex4(s, n, i + 2, &cp);
            if (cp >= 0xd800 && cp <= 0xdbff) {
                hex4(s, n, i + 8, &lo);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            }
            i += 4;
            break;
        default: cp = e; break; /* " \ / */
        }
        i += 2;
        put_utf8(o, &k, cp);
    }
    o[k] = 0;
    out->len = k;
    c->pos = skip_ws(s, n, end);
    if (c->pos < n && s[c->pos] == ':')
        c->pos++;
    return 0;
}

int wd__json_number(wd_json_cur *c, double *out)
{
    size_t i = (size_t)(wd__json_peek(c) ? c->pos : c->n);
    size_t end = i < c->n ? wd__json_number_end(c->s, i, c->n) : 0;
    *out = 0;
    if (!end) {
        c->pos = c->n;
        return 0;
    }
    /* strtod needs a terminated copy; a number of any length stays exact. */
    char small[64], *tmp = small;
    size_t len = end - i;
    if (len >= sizeof small && !(tmp = malloc(len + 1)))
        return WD_NOMEM();
    memcpy(tmp, c->s + i, len);
    tmp[len] = 0;
    *out = strtod(tmp, NULL);
    if (tmp != small)
        free(tmp);
    c->pos = end;
    return 0;
}

void wd__json_skip(wd_json_cur *c)
{
    size_t depth = 0;
    do {
        int b = wd__json_peek(c);
        if (!b)
            return;
        if (b == '"') {
            size_t e = string_end(c->s, c->n, c->pos);
            c->pos = e ? e : c->n;
            /* a key: its value follows */
            if (wd__json_peek(c) == ':') {
                c->pos++;
                continue;
            }
        } else if (b == '{' || b == '[') {
            depth++;
            c->pos++;
        } else if (b == '}' || b == ']') {
            depth--;
            c->pos++;
        } else if (b == ',') {
            c->pos++;
            continue;
        } else if (b == '-' || (b >= '0' && b <= '9')) {
            size_t e = wd__json_number_end(c->s, c->pos, c->n);
            c->pos = e ? e : c->n;
        } else {
            c->pos += b == 'f' ? 5 : 4; /* true, false, null */
            if (c->pos > c->n)
                c->pos = c->n;
        }
    } while (depth > 0);
}
