/*
 * error.c - thread-local last-error message (see error.h).
 */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* 1 KiB: messages are one line; longer ones are cut, never overflowed. */
static _Thread_local char last_message[1024];

const char *wd_errmsg(void) { return last_message; }

void wd__error_clear(void) { last_message[0] = '\0'; }

int wd__error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return code;
}

int wd__error_errno(int code, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof last_message)
        snprintf(last_message + n, sizeof last_message - (size_t)n, ": %s", strerror(saved));
    return code;
}

int wd__error_context(int code, const char *fmt, ...)
{
    char prefix[256], old[sizeof last_message - sizeof prefix - 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t n = strnlen(last_message, sizeof old - 1);
    memcpy(old, last_message, n);
    old[n] = '\0';
    snprintf(last_message, sizeof last_message, "%s: %s", prefix, old);
    return code;
}
