/*
 * fuzz_shardindex.c - libFuzzer target for the shard index check
 * (shardindex.c): a folder and an index text, both from the input, go
 * through wd__shardindex_check; an accepted index must also pass a second,
 * independent reading (cJSON) of what acceptance promises.
 *
 * Input: the folder, up to the first NUL byte, as lines "FILE" or
 * "FILE<TAB>TENSOR<TAB>TENSOR..." (tensors count for *.safetensors files
 * only; invalid or repeated names are dropped, as a real folder cannot
 * hold them); then the index text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "folder.h"
#include "shardindex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const wd_folder_file *)a)->path, ((const wd_folder_file *)b)->path);
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const wd_folder_tensor *)a)->name, ((const wd_folder_tensor *)b)->name);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Builds the folder from desc (NUL-terminated, modified in place): tensors
 * point into desc; their file index is that of the sorted file list. */
static void build(wd_folder *f, char *desc)
{
    size_t cap_f = 8, cap_t = 8;
    f->files = calloc(cap_f, sizeof *f->files);
    f->tensors = calloc(cap_t, sizeof *f->tensors);
    /* Tensors first remember their file by its position in input order;
     * the files are then sorted and the indexes remapped. */
    size_t *order = NULL;
    for (char *line = desc; line && f->files && f->tensors;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *tab = strchr(line, '\t');
        if (tab)
            *tab++ = '\0';
        int dup = 0;
        for (size_t i = 0; i < f->n_files; i++)
            dup |= !strcmp(f->files[i].path, line);
        if (wd__plain_name_ok(line) && !dup) {
            if (f->n_files == cap_f) {
                cap_f *= 2;
                wd_folder_file *nf = realloc(f->files, cap_f * sizeof *nf);
                if (!nf)
                    break;
                f->files = nf;
            }
            size_t fi = f->n_files++;
            memset(&f->files[fi], 0, sizeof f->files[fi]);
            f->files[fi].path = line;
            f->files[fi].is_shard = ends_with(line, ".safetensors");
            for (char *t = tab; t && f->files[fi].is_shard;) {
                char *nt = strchr(t, '\t');
                if (nt)
                    *nt++ = '\0';
                if (*t) {
                    if (f->n_tensors == cap_t) {
                        cap_t *= 2;
                        wd_folder_tensor *tt = realloc(f->tensors, cap_t * sizeof *tt);
                        if (!tt)
                            break;
                        f->tensors = tt;
                    }
                    f->tensors[f->n_tensors++] = (wd_folder_tensor){t, fi, NULL};
                }
                t = nt;
            }
        }
        line = next;
    }
    if (!f->files || !f->tensors)
        abort();
    /* sort the files, remembering where each went */
    order = malloc((f->n_files + 1) * sizeof *order);
    wd_folder_file *sorted = malloc((f->n_files + 1) * sizeof *sorted);
    if (!order || !sorted)
        abort();
    memcpy(sorted, f->files, f->n_files * sizeof *sorted);
    qsort(sorted, f->n_files, sizeof *sorted, cmp_file);
    for (size_t i = 0; i < f->n_files; i++)
        for (size_t j = 0; j < f->n_files; j++)
            if (sorted[j].path == f->files[i].path)
                order[i] = j;
    free(f->files);
    f->files = sorted;
    for (size_t i = 0; i < f->n_tensors; i++)
        f->tensors[i].file = order[f->tensors[i].file];
    free(order);
    /* tensor names are unique across a folder: keep the first of each */
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_tensor);
    size_t k = 0;
    for (size_t i = 0; i < f->n_tensors; i++)
        if (!k || strcmp(f->tensors[k - 1].name, f->tensors[i].name))
            f->tensors[k++] = f->tensors[i];
    f->n_tensors = k;
}

/* What acceptance promises, read again with cJSON: weight_map maps exactly
 * the folder's tensors, each to the plain-named shard holding it. */
static void oracle(const wd_folder *f, const uint8_t *text, size_t len)
{
    cJSON *root = cJSON_ParseWithLength((const char *)text, len);
    if (!root)
        abort();
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(m))
        abort();
    size_t n = 0;
    for (const cJSON *e = m->child; e; e = e->next, n++) {
        if (!cJSON_IsString(e) || !wd__plain_name_ok(e->valuestring))
            abort();
        long ti = wd__folder_find(f, e->string);
        if (ti < 0 || strcmp(f->files[f->tensors[ti].file].path, e->valuestring) ||
            !f->files[f->tensors[ti].file].is_shard)
            abort();
    }
    if (n != f->n_tensors)
        abort();
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t dlen = nul ? (size_t)(nul - data) : size;
    const uint8_t *text = nul ? nul + 1 : data + size;
    size_t tlen = size - dlen - (nul ? 1 : 0);
    char *desc = malloc(dlen + 1);
    /* the text in a buffer of its own, so reads past it are caught */
    uint8_t *t = malloc(tlen ? tlen : 1);
    if (!desc || !t)
        abort();
    memcpy(desc, data, dlen);
    desc[dlen] = '\0';
    memcpy(t, text, tlen);
    wd_folder f;
    memset(&f, 0, sizeof f);
    build(&f, desc);
    if (wd__shardindex_check(&f, "model.safetensors.index.json", t, tlen) == WD_OK)
        oracle(&f, t, tlen);
    free(f.files);
    free(f.tensors);
    free(desc);
    free(t);
    return 0;
}
