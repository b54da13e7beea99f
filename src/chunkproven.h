/*
 * chunkproven.h - the set of chunk ids a process has decoded and checked
 * against their SHA-256 (chunkproven.c says why). Any thread may use it.
 */
#ifndef WD_CHUNKPROVEN_H
#define WD_CHUNKPROVEN_H

#include <stdint.h>

#include "error.h"
#include "wdrepo.h"

typedef struct wd__proven wd__proven;

int wd__proven_new(wd__proven **out);
void wd__proven_free(wd__proven *p);
/* 1 if id was added before (p may be NULL: then never). */
int wd__proven_has(wd__proven *p, const uint8_t id[WD_HASH_SIZE]);
/* Remembers id, if there is room. */
void wd__proven_add(wd__proven *p, const uint8_t id[WD_HASH_SIZE]);

#endif
