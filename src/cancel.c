/*
 * cancel.c - the cancel flag of cancel.h and its public setters.
 */
#include "cancel.h"

#include <stdatomic.h>

#include "error.h"
#include "wdrepo.h"

/* Relaxed is enough: a piece that starts just before the store sees the flag
 * at the next piece; nothing else is published through it. */
static atomic_int cancel_flag;

void wd_cancel_request(void) { atomic_store_explicit(&cancel_flag, 1, memory_order_relaxed); }

void wd_cancel_clear(void) { atomic_store_explicit(&cancel_flag, 0, memory_order_relaxed); }

int wd__cancel_requested(void) { return atomic_load_explicit(&cancel_flag, memory_order_relaxed); }

int wd__cancel_error(void) { return wd__error(WD_ECANCELLED, "interrupted: the call was cancelled"); }
