/*
 * testutil.h - the few macros the unit tests share. A test binary exits 0
 * when every CHECK held, 1 otherwise, and prints "N passed, N failed".
 */
#ifndef WD_TESTUTIL_H
#define WD_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>

static int tu_passed, tu_failed;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (cond) {                                                                    \
            tu_passed++;                                                               \
        } else {                                                                       \
            tu_failed++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

/* CHECK that a library call returned the expected status, showing its message. */
#define CHECK_RC(expr, want)                                                           \
    do {                                                                               \
        int tu_rc = (expr);                                                            \
        if (tu_rc == (want)) {                                                         \
            tu_passed++;                                                               \
        } else {                                                                       \
            tu_failed++;                                                               \
            fprintf(stderr, "%s:%d: %s returned %d, want %d (%s)\n", __FILE__, __LINE__, \
                    #expr, tu_rc, (int)(want), wd_errmsg());                           \
        }                                                                              \
    } while (0)

/* Directory with the fixtures copied from deltatensors (tests/fixtures). */
static inline const char *tu_fixtures(void)
{
    const char *d = getenv("WD_FIXTURES");
    return d ? d : "tests/fixtures";
}

static inline int tu_finish(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, tu_passed, tu_failed);
    return tu_failed ? 1 : 0;
}

#endif
