/*
 * error.h - the library's error channel: a status code travels up the call
 * stack while a one-line message waits in thread-local storage for the caller
 * (like sqlite3_errmsg / git_error_last).
 */
#ifndef WD_ERROR_H
#define WD_ERROR_H

#include "wdrepo.h"

/* Records a printf-style message and returns code, so a failure site reads
 * `return wd__error(WD_EBADINPUT, "...", ...);`. */
int wd__error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Like wd__error but appends ": strerror(errno)". */
int wd__error_errno(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prepends "prefix: " to the current message, keeping code. */
int wd__error_context(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void wd__error_clear(void);

/* Out-of-memory shorthand. */
#define WD_NOMEM() wd__error(WD_ENOMEM, "out of memory")

#endif
