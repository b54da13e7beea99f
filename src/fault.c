/*
 * fault.c - the WDREPO_FAULT crash hook (fault.h). The variable is read once;
 * counting is atomic because chunk and file writes happen on pool workers.
 */
#include "fault.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"chunk", "txn", "write", "put"};
#define N_KINDS (sizeof kind_names / sizeof kind_names[0])

static pthread_once_t parse_once = PTHREAD_ONCE_INIT;
static atomic_int armed;               /* 1 once a valid WDREPO_FAULT was read */
static int armed_kind;                 /* the kind chosen, if armed */
static unsigned long long armed_count; /* kill at this event number (1-based) */
static atomic_ullong seen[N_KINDS];

static void parse_env(void)
{
    const char *v = getenv("WDREPO_FAULT");
    if (!v)
        return;
    const char *colon = strchr(v, ':');
    if (!colon)
        return;
    for (size_t k = 0; k < N_KINDS; k++) {
        if (strlen(kind_names[k]) == (size_t)(colon - v) && !strncmp(v, kind_names[k], (size_t)(colon - v))) {
            char *end;
            unsigned long long n = strtoull(colon + 1, &end, 10);
            if (*end || n == 0)
                return;
            armed_kind = (int)k;
            armed_count = n;
            atomic_store(&armed, 1);
        }
    }
}

void wd__fault_point(wd_fault_kind kind)
{
    pthread_once(&parse_once, parse_env);
    if (!atomic_load_explicit(&armed, memory_order_relaxed) || (int)kind != armed_kind)
        return;
    if (atomic_fetch_add(&seen[kind], 1) + 1 == armed_count)
        raise(SIGKILL);
}
