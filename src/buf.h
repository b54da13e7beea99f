/*
 * buf.h - a growable byte buffer, the one allocation pattern the library
 * repeats (chunk payloads, manifests, JSON text).
 */
#ifndef WD_BUF_H
#define WD_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data;
    size_t len, cap;
} wd_buf;

/* Makes room for at least cap bytes in total; keeps the contents. */
int wd__buf_reserve(wd_buf *b, size_t cap);
int wd__buf_append(wd_buf *b, const void *data, size_t len);
int wd__buf_printf(wd_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void wd__buf_free(wd_buf *b);

#endif
