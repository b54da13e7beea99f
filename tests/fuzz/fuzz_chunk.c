/*
 * fuzz_chunk.c - libFuzzer target for the chunk decoder: a damaged or
 * crafted repository hands it arbitrary stored bytes, codec and size.
 * Input: u8 codec, u32 LE raw size (capped at 1 MiB), then the stored bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "chunkstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    int codec = data[0];
    uint64_t raw = (uint64_t)data[1] | (uint64_t)data[2] << 8 | (uint64_t)data[3] << 16 | (uint64_t)data[4] << 24;
    raw &= (1u << 20) - 1;
    static ZSTD_DCtx *dctx;
    if (!dctx)
        dctx = ZSTD_createDCtx();
    uint8_t *out = malloc(raw ? raw : 1);
    /* Any id: the bytes are decoded in full before they are compared with it. */
    static const uint8_t id[WD_HASH_SIZE];
    if (out && dctx)
        wd__chunk_decode(NULL, dctx, id, codec, data + 5, size - 5, raw, out, WD_DECODE_CHECK);
    free(out);
    return 0;
}
