/*
 * testutil.h - the few macros the unit tests share. A test binary exits 0
 * when every CHECK held, 1 otherwise, and prints "N passed, N failed".
 */
#ifndef WD_TESTUTIL_H
#define WD_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "dtype.h"

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

/* splitmix64: the repeatable random stream of tests that draw data; each
 * test file keeps its own state (its seed). */
/* xorshift64 (13, 7, 17): the sequence test_lossless and test_quant_apply
 * were written against. */
static inline uint64_t tu_xorshift(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static inline uint64_t tu_splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* A roughly normal delta rounded to bfloat16, like a bf16 fine-tune's:
 * values repeat, so top-k cuts meet ties. */
static inline float tu_bf16_delta(uint64_t *state)
{
    double s = 0;
    for (int i = 0; i < 4; i++)
        s += (double)(tu_splitmix(state) >> 11) * 0x1p-53;
    return wd__bf16_to_f32(wd__f32_to_bf16((float)((s - 2.0) * 0.02)));
}

static inline int tu_finish(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, tu_passed, tu_failed);
    return tu_failed ? 1 : 0;
}

#endif
