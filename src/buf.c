/*
 * buf.c - growable byte buffer (see buf.h). Capacity doubles, so appending
 * n bytes one piece at a time costs O(n) copies.
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

int wd__buf_reserve(wd_buf *b, size_t cap)
{
    if (cap <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < cap) {
        if (ncap > SIZE_MAX / 2)
            return WD_NOMEM();
        ncap *= 2;
    }
    uint8_t *p = realloc(b->data, ncap);
    if (!p)
        return WD_NOMEM();
    b->data = p;
    b->cap = ncap;
    return 0;
}

int wd__buf_append(wd_buf *b, const void *data, size_t len)
{
    if (len > SIZE_MAX - b->len - 1)
        return WD_NOMEM();
    /* One spare byte keeps text NUL-terminated for free. */
    int rc = wd__buf_reserve(b, b->len + len + 1);
    if (rc)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
    return 0;
}

int wd__buf_printf(wd_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return wd__error(WD_ERROR, "formatting failed");
    int rc = wd__buf_reserve(b, b->len + (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void wd__buf_free(wd_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
