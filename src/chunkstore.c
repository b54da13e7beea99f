/*
 * chunkstore.c - backend-independent chunk encoding: zstd frames with their
 * sizes checked before any output is produced.
 */
#include "chunkstore.h"

#include <string.h>
#include <zstd.h>

#include "error.h"

int wd__chunk_compress(void *zctx, int level, const void *raw, size_t len, wd_buf *out,
                       int *out_codec)
{
    size_t bound = ZSTD_compressBound(len);
    int rc = wd__buf_reserve(out, bound);
    if (rc)
        return rc;
    ZSTD_CCtx *cctx = zctx;
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    /* The frame records its size, which decompression checks. */
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
    size_t z = ZSTD_compress2(cctx, out->data, out->cap, raw, len);
    if (ZSTD_isError(z))
        return wd__error(WD_ERROR, "zstd: %s", ZSTD_getErrorName(z));
    if (z >= len) { /* incompressible: keep it as it is */
        memcpy(out->data, raw, len);
        out->len = len;
        *out_codec = WD_CODEC_RAW;
    } else {
        out->len = z;
        *out_codec = WD_CODEC_ZSTD;
    }
    return 0;
}

int wd__chunk_decompress(void *zctx, int codec, const void *data, size_t len, uint64_t raw_size,
                         uint8_t *out)
{
    if (raw_size > WD_CHUNK_RAW_MAX)
        return wd__error(WD_ECORRUPT, "chunk claims %llu bytes, over the %u limit",
                         (unsigned long long)raw_size, WD_CHUNK_RAW_MAX);
    if (codec == WD_CODEC_RAW) {
        if (len != raw_size)
            return wd__error(WD_ECORRUPT, "raw chunk has %zu bytes, expected %llu", len,
                             (unsigned long long)raw_size);
        memcpy(out, data, len);
        return 0;
    }
    if (codec != WD_CODEC_ZSTD)
        return wd__error(WD_ECORRUPT, "chunk has unknown codec %d", codec);
    unsigned long long fsz = ZSTD_getFrameContentSize(data, len);
    if (fsz != raw_size)
        return wd__error(WD_ECORRUPT, "chunk frame size disagrees with its record");
    size_t got = ZSTD_decompressDCtx(zctx, out, (size_t)raw_size, data, len);
    if (ZSTD_isError(got) || got != raw_size)
        return wd__error(WD_ECORRUPT, "chunk does not decompress: %s",
                         ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short output");
    return 0;
}
