/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors header parser.
 * An accepted input must also survive a round trip: the header rebuilt from
 * its tensors parses back to the same tensors and metadata.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writing what the reader accepted must give something it accepts again,
 * describing the same layout (the data order is consecutive from 0, which
 * is what validation guarantees of the original). */
static void round_trip(const wd_st_file *f)
{
    wd_st_spec *specs = calloc(f->n_tensors + 1, sizeof *specs);
    if (!specs)
        return;
    for (size_t i = 0; i < f->n_tensors; i++)
        specs[i] = (wd_st_spec){f->tensors[i].name, f->tensors[i].dtype, f->tensors[i].ndim,
                                f->tensors[i].shape};
    char *h = NULL;
    size_t hl = 0;
    int rc = wd__st_header_build(&h, &hl, specs, f->n_tensors, f->metadata_json);
    free(specs);
    if (rc == WD_ENOMEM)
        return;
    if (rc != WD_OK || hl % 8 != 0)
        abort();
    uint64_t data_len = f->file_size - f->data_start;
    unsigned char *img = malloc(8 + hl);
    if (!img)
        abort();
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(img + 8, h, hl);
    free(h);
    wd_st_file *g = NULL;
    if (wd__st_parse(&g, img, 8 + hl, 8 + hl + data_len) != WD_OK)
        abort();
    free(img);
    if (g->n_tensors != f->n_tensors)
        abort();
    for (size_t i = 0; i < f->n_tensors; i++) {
        const wd_st_tensor *a = &f->tensors[i], *b = &g->tensors[i];
        if (strcmp(a->name, b->name) != 0 || a->dtype != b->dtype || a->ndim != b->ndim ||
            memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]) != 0 ||
            a->nelem != b->nelem || a->begin != b->begin || a->end != b->end)
            abort();
    }
    const char *want = f->metadata_json ? f->metadata_json : "{\"format\":\"pt\"}";
    if (!g->metadata_json || strcmp(want, g->metadata_json) != 0)
        abort();
    wd__st_close(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wd_st_file *f = NULL;
    if (wd__st_parse(&f, data, size, size) == WD_OK) {
        if (!f)
            abort();
        round_trip(f);
    }
    wd__st_close(f);
    return 0;
}
