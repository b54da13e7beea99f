/*
 * lossy.h - lossy tensors (sparse, quantized, int4) inside the repository:
 * their parameters as stored in tensor.params, their arrays in
 * tensor_array, and how .wdelta header entries map onto them.
 */
#ifndef WD_LOSSY_H
#define WD_LOSSY_H

#include <cjson/cJSON.h>

#include "repo_int.h"
#include "wdelta.h"

/* Encoding names in table tensor for each WD__WS_* strategy. */
const char *wd__lossy_encoding(int strategy);
/* WD__WS_* for an encoding name, or -1 for lossless encodings. */
int wd__lossy_strategy_of(const char *encoding);

/* Loads t->lossy from params and the tensor_array rows of (object, t). */
int wd__lossy_load(wd_repo *repo, const uint8_t object[WD_HASH_SIZE], wd_stored_tensor *t, const char *params);
void wd__lossy_free(wd_lossy *L);

/* The .wdelta header entry of a stored lossy tensor for format version:
 * as recorded when it was imported from a file of that version, else as
 * deltatensors writes it, with option (sparsity or outlier fraction) when
 * none was recorded. */
int wd__lossy_entry(const wd_stored_tensor *t, int version, double option, wd__wdelta_tensor *out);

/* Builds the params JSON text (malloc'd) for a lossy tensor: the codec
 * parameters in L and the .wdelta header entry e of a file of version
 * (e NULL: none recorded). */
int wd__lossy_params(const wd_lossy *L, const wd__wdelta_tensor *e, int version, char **out);

/* Inserts the tensor_array rows of a lossy tensor (inside the caller's
 * transaction). */
int wd__lossy_insert_arrays(wd_repo *repo, const uint8_t object[WD_HASH_SIZE], const char *name, const wd_lossy *L);

#endif
