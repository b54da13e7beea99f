/*
 * chunkstore.c - backend-independent chunk encoding: zstd frames with their
 * sizes checked before any output is produced, and every decoded chunk
 * checked against its id.
 */
#include "chunkstore.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "chunkproven.h"
#include "codec_rans.h"
#include "error.h"
#include "hash.h"

/* Codes of one section inside a WD_CODEC_SECTIONS chunk. */
enum { SECTION_RAW = 0, SECTION_ZSTD = 1, SECTION_RANS = 2 };

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Sections at least this long are judged by their statistics before zstd
 * runs; shorter ones are cheap and their statistics noisy. */
#define SECTION_JUDGED (16u << 10)
/* Repeats of the previous byte beyond what the byte frequencies alone make
 * (the sum of p^2): where zstd beat rANS on the delta planes of the bench
 * pair the excess was 0.05-0.10, where rANS won it was under 0.01. */
#define LZ_EXCESS 0.02

/* Whether a section should be left to rANS alone, zstd not even tried: it
 * is skewed (order-0 size under 75%: exponents, the high bytes of deltas,
 * where zstd's Huffman-coded literals lose to rANS by 10-40%), not nearly
 * constant (sum of p^2 under 0.9: there zstd's run coding beats rANS's
 * table by a few dozen bytes), and repeats itself no more than its byte
 * frequencies predict, so zstd's matches have nothing to find. Elsewhere
 * both run and the smaller wins. Running zstd only to throw its output away
 * was a quarter of add-base's CPU and a tenth of a lossless commit's; on
 * the real trained pair the stored sizes came out the same to the byte. */
static int rans_alone(const uint32_t count[256], size_t repeats, size_t len)
{
    if (len < SECTION_JUDGED)
        return 0;
    double n = (double)len, bits = 0, p2 = 0;
    for (int s = 0; s < 256; s++) {
        if (!count[s])
            continue;
        double p = count[s] / n;
        bits -= count[s] * log2(p);
        p2 += p * p;
    }
    return bits / 8 < 0.75 * n && p2 < 0.9 && (double)repeats / (n - 1) - p2 < LZ_EXCESS;
}

/* Appends one section: code byte, u32 length, payload; the smallest of
 * the encodings tried. */
static int put_section(ZSTD_CCtx *cctx, int level, const uint8_t *raw, size_t len, wd_buf *out)
{
    size_t bound = ZSTD_compressBound(len), rbound = wd__rans_bound(len);
    if (rbound > bound)
        bound = rbound;
    /* Room for two candidates side by side: zstd's, then rANS's. */
    int rc = wd__buf_reserve(out, out->len + 5 + 2 * (bound > len ? bound : len));
    if (rc)
        return rc;
    uint8_t *hdr = out->data + out->len, *payload = hdr + 5;
    uint32_t count[256];
    size_t repeats = len <= UINT32_MAX ? wd__rans_histogram(count, raw, len) : 0;
    size_t z;
    if (len <= UINT32_MAX && rans_alone(count, repeats, len)) {
        z = wd__rans_encode_counted(payload, rbound, raw, len, count);
        hdr[0] = SECTION_RANS;
    } else {
        ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
        z = ZSTD_compress2(cctx, payload, bound, raw, len);
        if (ZSTD_isError(z))
            return wd__error(WD_ERROR, "zstd: %s", ZSTD_getErrorName(z));
        hdr[0] = SECTION_ZSTD;
        /* zstd's literals are Huffman-coded, at least one bit a byte: on
         * the skewed planes (exponents, the high bytes of deltas) an order-0
         * rANS coder gets 10-40% closer to the entropy. Near-incompressible
         * planes (mantissas) gain nothing and skip it. */
        if (z < len - len / 10 && len <= UINT32_MAX) {
            uint8_t *alt = payload + bound;
            size_t r = wd__rans_encode_counted(alt, rbound, raw, len, count);
            if (r < z) {
                memmove(payload, alt, r);
                z = r;
                hdr[0] = SECTION_RANS;
            }
        }
    }
    if (z >= len) {
        memcpy(payload, raw, len);
        z = len;
        hdr[0] = SECTION_RAW;
    }
    put_u32(hdr + 1, (uint32_t)z);
    out->len += 5 + z;
    return 0;
}

int wd__chunk_compress(void *zctx, int level, const void *raw, size_t len, size_t section_len, wd_buf *out,
                       int *out_codec)
{
    if (section_len && section_len < len) {
        out->len = 0;
        int rc = wd__buf_reserve(out, 4);
        if (rc)
            return rc;
        put_u32(out->data, (uint32_t)section_len);
        out->len = 4;
        for (size_t off = 0; off < len; off += section_len) {
            size_t n = len - off < section_len ? len - off : section_len;
            if ((rc = put_section(zctx, level, (const uint8_t *)raw + off, n, out)))
                return rc;
        }
        *out_codec = WD_CODEC_SECTIONS;
        /* Tiny or incompressible chunks: the section headers would cost more
         * than they save. */
        if (out->len >= len) {
            out->len = 0;
            *out_codec = WD_CODEC_RAW;
            return wd__buf_append(out, raw, len);
        }
        return 0;
    }

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

/* Decodes without the id check; failures say what is wrong with the
 * stored bytes, which wd__chunk_decode turns into a damage report. */
static int decompress(void *zctx, int codec, const void *data, size_t len, uint64_t raw_size, uint8_t *out)
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
    if (codec == WD_CODEC_SECTIONS) {
        const uint8_t *p = data, *end = p + len;
        if (len < 4)
            return wd__error(WD_ECORRUPT, "sectioned chunk is truncated");
        uint64_t section_len = get_u32(p);
        p += 4;
        if (section_len == 0)
            return wd__error(WD_ECORRUPT, "sectioned chunk has zero-length sections");
        for (uint64_t off = 0; off < raw_size; off += section_len) {
            size_t n = (size_t)(raw_size - off < section_len ? raw_size - off : section_len);
            if (end - p < 5)
                return wd__error(WD_ECORRUPT, "sectioned chunk is truncated");
            int scodec = p[0];
            size_t slen = get_u32(p + 1);
            p += 5;
            if ((size_t)(end - p) < slen)
                return wd__error(WD_ECORRUPT, "sectioned chunk is truncated");
            if (scodec == SECTION_RAW) {
                if (slen != n)
                    return wd__error(WD_ECORRUPT, "raw section has the wrong size");
                memcpy(out + off, p, n);
            } else if (scodec == SECTION_RANS) {
                int rc = wd__rans_decode(out + off, n, p, slen);
                if (rc)
                    return rc;
            } else if (scodec == SECTION_ZSTD) {
                if (ZSTD_getFrameContentSize(p, slen) != n)
                    return wd__error(WD_ECORRUPT, "section frame size disagrees with the chunk");
                size_t got = ZSTD_decompressDCtx(zctx, out + off, n, p, slen);
                if (ZSTD_isError(got) || got != n)
                    return wd__error(WD_ECORRUPT, "section does not decompress");
            } else {
                return wd__error(WD_ECORRUPT, "section has unknown codec %d", scodec);
            }
            p += slen;
        }
        if (p != end)
            return wd__error(WD_ECORRUPT, "sectioned chunk has trailing bytes");
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

/* The current message without a trailing "; run 'wdrepo fsck'" (the
 * damage line adds its own) and a leading "chunk " (chunk store backends
 * begin "chunk missing ..."). */
static void current_reason(char *buf, size_t size)
{
    static const char tail[] = "; run 'wdrepo fsck'";
    const char *msg = wd_errmsg();
    if (!strncmp(msg, "chunk ", 6))
        msg += 6;
    snprintf(buf, size, "%s", msg);
    size_t n = strlen(buf), t = sizeof tail - 1;
    if (n >= t && !strcmp(buf + n - t, tail))
        buf[n - t] = '\0';
}

static int damaged_because(const uint8_t id[WD_HASH_SIZE], const char *why)
{
    char hex[WD_HEX_SIZE];
    wd__hex(hex, id);
    return wd__error(WD_ECORRUPT, "chunk %.*s: stored data is damaged (%s); run 'wdrepo fsck'", WD_SHORT_HEX, hex,
                     why);
}

int wd__chunk_damaged(const uint8_t id[WD_HASH_SIZE], const char *why_fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, why_fmt);
    vsnprintf(why, sizeof why, why_fmt, ap);
    va_end(ap);
    return damaged_because(id, why);
}

int wd__chunk_decode(wd_chunkstore *cs, void *zctx, const uint8_t id[WD_HASH_SIZE], int codec, const void *data,
                     size_t len, uint64_t raw_size, uint8_t *out, int how)
{
    int rc = decompress(zctx, codec, data, len, raw_size, out);
    if (rc) {
        char why[512];
        current_reason(why, sizeof why);
        return damaged_because(id, why);
    }
    if (how == WD_DECODE_TRUSTED || (cs && wd__proven_has(cs->proven, id)))
        return 0;
    /* The id is the SHA-256 of the raw bytes, so this catches what the
     * codecs cannot: a flipped byte in a raw section or in a zstd frame
     * (written without a checksum) that still decodes. */
    uint8_t h[WD_HASH_SIZE];
    wd__sha256(out, (size_t)raw_size, h);
    if (memcmp(h, id, WD_HASH_SIZE))
        return damaged_because(id, "hash mismatch");
    if (cs)
        wd__proven_add(cs->proven, id);
    return 0;
}

int wd__chunk_fetch(wd_chunkstore *cs, const uint8_t id[WD_HASH_SIZE], wd_buf *out, uint64_t *out_raw_size,
                    int *out_codec)
{
    int rc = cs->ops->get(cs, id, out, out_raw_size, out_codec);
    if (rc == WD_ECORRUPT) {
        char why[512], hex[WD_HEX_SIZE];
        current_reason(why, sizeof why);
        wd__hex(hex, id);
        return wd__error(WD_ECORRUPT, "chunk %.*s: %s; run 'wdrepo fsck'", WD_SHORT_HEX, hex, why);
    }
    return rc;
}

int wd__chunk_error_where(int code, const char *fmt, ...)
{
    char where[512], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(where, sizeof where, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "%s", wd_errmsg());
    return wd__error(code, "%s%s%s", where, strncmp(msg, "chunk ", 6) ? ": " : " ", msg);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int wd__chunk_batch_tick(wd_chunk_batch *b)
{
    if (b->in_tx && now_ns() - b->tx_started_ns >= (uint64_t)WD_CHUNK_BATCH_MS * 1000000u)
        return wd__chunk_batch_flush(b);
    return 0;
}

int wd__chunk_batch_put(void *batch, const uint8_t id[WD_HASH_SIZE], uint64_t raw_size, int codec,
                        const void *data, size_t len)
{
    wd_chunk_batch *b = batch;
    int rc, added = 0;
    if (!b->in_tx) {
        if ((rc = b->cs->ops->begin(b->cs)))
            return rc;
        b->in_tx = 1;
        b->tx_bytes = 0;
        b->tx_started_ns = now_ns();
    }
    if ((rc = b->cs->ops->put(b->cs, id, raw_size, codec, data, len, &added)))
        return rc;
    if (added)
        b->new_bytes += len;
    b->tx_bytes += len;
    return b->tx_bytes >= WD_CHUNK_BATCH_BYTES ? wd__chunk_batch_flush(b) : 0;
}

int wd__chunk_batch_flush(wd_chunk_batch *b)
{
    if (!b->in_tx)
        return 0;
    b->in_tx = 0;
    return b->cs->ops->commit(b->cs);
}

void wd__chunk_batch_abort(wd_chunk_batch *b)
{
    if (b->in_tx)
        b->cs->ops->rollback(b->cs);
    b->in_tx = 0;
}
