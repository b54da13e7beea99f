/*
 * codec_rans.c - order-0 static rANS coder for byte planes (see
 * codec_rans.h): a quantized frequency table, then eight interleaved 32-bit
 * rANS states sharing one byte-wise renormalised stream, then a checksum.
 *
 * Encoded layout, format version 1. It is part of the repository format and
 * must never change; a different layout needs a new version byte (decoders
 * refuse versions they do not know). Multi-byte integers are little-endian.
 *
 *   byte 0     format version: 1
 *   byte 1     mode: 0 stored, 1 run, 2 rANS; nothing else is valid
 *   payload    as the mode says, below
 *   last 4     u32 XXH32 (seed 0) of every byte before it
 *
 *   mode 0, stored: the payload is the n input bytes (length n + 6).
 *   mode 1, run: the payload is the one symbol, repeated n >= 1 times
 *     (length 7).
 *   mode 2, rANS:
 *     S          1 byte, the scale bits, 8..15: frequencies sum to M = 1 << S
 *     k - 1      1 byte; k (2..256) is the number of distinct symbols
 *     symbols    32 bytes, a bitmap: symbol s present is bit (s & 7) of byte
 *                s >> 3; exactly k bits set
 *     freqs      k frequencies in increasing symbol order, each >= 1, summing
 *                to exactly M; f < 128 is the byte f, otherwise two bytes
 *                0x80 | f >> 8, f & 0xff (the two-byte form only for f >= 128)
 *     states     8 x u32, decoder states 0..7, each in [2^23, 2^31)
 *     stream     renormalisation bytes, all consumed by decoding n symbols,
 *                after which every state must equal 2^23
 *
 *   Symbol s has frequency f and cumulative frequency c (the sum of the
 *   frequencies of smaller symbols). Input byte i is coded by state i mod 8;
 *   decoding it from state x: slot = x mod M; s is the symbol with
 *   c <= slot < c + f; x = f * (x >> S) + slot - c; then, while x < 2^23,
 *   x = x << 8 | the next stream byte (at most twice, as S <= 15). The
 *   encoder runs the inverse from the last byte to the first, starting every
 *   state at 2^23 and writing the stream backwards.
 *
 * Byte-wise renormalisation keeps states in [2^23, 2^31), so x / f is never
 * below 2^8 and truncating it costs nothing measurable (16-bit
 * renormalisation of a 32-bit state would let x / f fall to 2 at S = 15).
 * The checksum is there because entropy-coded bytes carry no redundancy:
 * the final-state check catches most damage, but a flip that swaps two
 * symbols of equal frequency leaves every later state unchanged. Safety does
 * not rest on it; every field is checked as if it were absent.
 */
#include "codec_rans.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

enum { FORMAT_VERSION = 1 };
enum { MODE_STORED = 0, MODE_RUN = 1, MODE_RANS = 2 };

#define HEADER 2         /* version and mode */
#define TRAILER 4        /* checksum */
#define NSTATES 8        /* interleaved states: enough independent work to hide latency */
#define RANS_L (1u << 23) /* states live in [RANS_L, RANS_L << 8) */
#define SCALE_MIN 8      /* M >= 256, so all 256 symbols fit */
#define SCALE_MAX 15     /* keeps every f and c below 2^15 and the slot table at 32 KiB */

size_t wd__rans_bound(size_t n)
{
    return n > SIZE_MAX - HEADER - TRAILER ? SIZE_MAX : n + HEADER + TRAILER;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* XXH32 with seed 0, as specified in xxHash's doc/xxhash_spec.md: four
 * independent lanes make it several GB/s, a few percent of decoding. */
#define P1 0x9E3779B1u
#define P2 0x85EBCA77u
#define P3 0xC2B2AE3Du
#define P4 0x27D4EB2Fu
#define P5 0x165667B1u

static uint32_t rotl32(uint32_t v, unsigned r)
{
    return v << r | v >> (32 - r);
}

static uint32_t xxh_round(uint32_t acc, uint32_t lane)
{
    return rotl32(acc + lane * P2, 13) * P1;
}

uint32_t wd__rans_checksum(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    uint32_t h;
    if (len >= 16) {
        uint32_t v1 = P1 + P2, v2 = P2, v3 = 0, v4 = 0u - P1;
        for (; end - p >= 16; p += 16) {
            v1 = xxh_round(v1, get_u32(p));
            v2 = xxh_round(v2, get_u32(p + 4));
            v3 = xxh_round(v3, get_u32(p + 8));
            v4 = xxh_round(v4, get_u32(p + 12));
        }
        h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18);
    } else {
        h = P5;
    }
    h += (uint32_t)len;
    for (; end - p >= 4; p += 4)
        h = rotl32(h + get_u32(p) * P3, 17) * P4;
    for (; p < end; p++)
        h = rotl32(h + *p * P5, 11) * P1;
    h ^= h >> 15;
    h *= P2;
    h ^= h >> 13;
    h *= P3;
    h ^= h >> 16;
    return h;
}

/* Appends the checksum of dst[0..len); returns the final length. */
static size_t seal(uint8_t *dst, size_t len)
{
    put_u32(dst + len, wd__rans_checksum(dst, len));
    return len + TRAILER;
}

static size_t store(uint8_t *dst, const uint8_t *src, size_t n)
{
    dst[0] = FORMAT_VERSION;
    dst[1] = MODE_STORED;
    if (n)
        memcpy(dst + HEADER, src, n);
    return seal(dst, HEADER + n);
}

/* Four sub-histograms, so runs of one byte value do not serialise on one
 * counter; the repeat count rides along in the same pass. n <= UINT32_MAX,
 * so no count overflows. */
size_t wd__rans_histogram(uint32_t count[256], const uint8_t *src, size_t n)
{
    uint32_t c[4][256];
    memset(c, 0, sizeof c);
    size_t i = 0, repeats = 0;
    uint8_t prev = n ? (uint8_t)~src[0] : 0;
    for (; i + 4 <= n; i += 4) {
        uint8_t a = src[i], b = src[i + 1], d = src[i + 2], e = src[i + 3];
        c[0][a]++;
        c[1][b]++;
        c[2][d]++;
        c[3][e]++;
        repeats += (size_t)(a == prev) + (b == a) + (d == b) + (e == d);
        prev = e;
    }
    for (; i < n; i++) {
        c[0][src[i]]++;
        repeats += src[i] == prev;
        prev = src[i];
    }
    for (int s = 0; s < 256; s++)
        count[s] = c[0][s] + c[1][s] + c[2][s] + c[3][s];
    return repeats;
}

/* Among the k present symbols sym[], the one whose frequency is best raised
 * by one, or (lower) best lowered by one (only those with f > 1 qualify).
 * Raising f gains count * log2(1 + 1/f) bits, compared here as
 * count / (f + 1/2), which is within 4% at f = 1 and 0.5% from f = 4, in
 * integers so that every build picks the same table. */
static int best_raise(const uint8_t *sym, int k, const uint32_t *count, const uint32_t *freq)
{
    int best = sym[0];
    uint64_t bc = count[sym[0]], bd = 2 * (uint64_t)freq[sym[0]] + 1; /* gain bc / bd */
    for (int i = 1; i < k; i++) {
        uint64_t c = count[sym[i]], d = 2 * (uint64_t)freq[sym[i]] + 1;
        if (c * bd > bc * d) {
            best = sym[i];
            bc = c;
            bd = d;
        }
    }
    return best;
}

static int best_lower(const uint8_t *sym, int k, const uint32_t *count, const uint32_t *freq)
{
    int best = -1;
    uint64_t bc = 0, bd = 1; /* loss bc / bd */
    for (int i = 0; i < k; i++) {
        if (freq[sym[i]] < 2)
            continue;
        uint64_t c = count[sym[i]], d = 2 * (uint64_t)freq[sym[i]] - 1;
        if (best < 0 || c * bd < bc * d) {
            best = sym[i];
            bc = c;
            bd = d;
        }
    }
    return best;
}

/* Sets freq[s] (>= 1 exactly where count[s] > 0, summing to M = 1 << scale)
 * to minimise the coded size, sum of count[s] * log2(M / freq[s]), with the
 * marginal costs above (Webster's apportionment). Rounding count * M / n to
 * nearest leaves every raise gaining at most n / M and every lowering losing
 * at least n / M, so moving single units to where they gain most (or cost
 * least) until the sum is M reaches the optimum; it takes at most about k
 * moves of O(k) each. Needs 2 <= k <= M and n = sum of count <= UINT32_MAX. */
static void quantize(uint32_t freq[256], const uint32_t count[256], const uint8_t *sym, int k,
                     uint32_t n, unsigned scale)
{
    const uint32_t M = 1u << scale;
    uint32_t sum = 0;
    memset(freq, 0, 256 * sizeof *freq);
    for (int i = 0; i < k; i++) {
        uint64_t f = ((uint64_t)count[sym[i]] * M + n / 2) / n;
        freq[sym[i]] = f ? (uint32_t)f : 1;
        sum += freq[sym[i]];
    }
    while (sum < M) {
        freq[best_raise(sym, k, count, freq)]++;
        sum++;
    }
    while (sum > M) { /* some f > 1 exists, as sum > M >= k */
        freq[best_lower(sym, k, count, freq)]--;
        sum--;
    }
}

/* Per-symbol encoder constants. x / f is exact from one multiply and
 * shift for every state (x < 2^31): rcp = ceil(2^(s + 31) / f) with
 * 2^s >= f, shifted right by s - 1 (the reciprocal method of ryg's
 * rans_byte). For f = 1, rcp = 2^32 - 1 with no shift gives x - 1, which
 * the bias corrects. The new state is then x + bias + q * (M - f). */
typedef struct {
    uint32_t x_max; /* renormalise while x >= x_max = f << (31 - S) */
    uint32_t rcp;
    uint32_t bias;
    uint16_t cmpl; /* M - f */
    uint16_t shift;
} enc_sym;

static enc_sym enc_sym_of(uint32_t f, uint32_t cum, unsigned scale)
{
    enc_sym e = {.x_max = f << (31 - scale), .cmpl = (uint16_t)((1u << scale) - f)};
    if (f == 1) {
        e.rcp = UINT32_MAX;
        e.bias = cum + (1u << scale) - 1;
        return e;
    }
    unsigned s = 0;
    while (f > (1u << s))
        s++;
    e.rcp = (uint32_t)(((1ull << (s + 31)) + f - 1) / f);
    e.shift = (uint16_t)(s - 1);
    e.bias = cum;
    return e;
}

/* The state after coding a symbol with constants e into x, renormalised
 * (x < e->x_max): (x / f << S) + x % f + cum. */
static inline uint32_t enc_step(const enc_sym *e, uint32_t x)
{
    uint32_t q = (uint32_t)(((uint64_t)x * e->rcp) >> 32) >> e->shift;
    return x + e->bias + q * e->cmpl;
}

uint32_t wd__rans_enc_step(uint32_t x, uint32_t f, uint32_t cum, unsigned scale)
{
    enc_sym e = enc_sym_of(f, cum, scale);
    return enc_step(&e, x);
}

/* Encodes one symbol with constants e into state xv, emitting downwards at
 * q, which must have 2 bytes of room. Mirrors DEC_FAST: the first byte is
 * stored unconditionally (harmless below q when not kept) and kept by mask,
 * the rare second one by a branch. */
#define ENC_PUT(xv, q, e)                                                          \
    do {                                                                           \
        uint32_t x_ = (xv);                                                        \
        uint32_t m_ = 0u - (uint32_t)(x_ >= (e)->x_max);                           \
        (q)[-1] = (uint8_t)x_;                                                     \
        (q) -= m_ & 1;                                                             \
        x_ >>= m_ & 8;                                                             \
        if (x_ >= (e)->x_max)                                                      \
            *--(q) = (uint8_t)x_, x_ >>= 8;                                        \
        (xv) = enc_step(e, x_);                                                    \
    } while (0)

size_t wd__rans_encode(uint8_t *dst, size_t cap, const uint8_t *src, size_t n)
{
    /* Under 2 bytes nothing beats storing; beyond 4 GiB counts would
     * overflow, and planes are far smaller. */
    if (n < 2 || n > UINT32_MAX)
        return store(dst, src, n);
    uint32_t count[256];
    wd__rans_histogram(count, src, n);
    return wd__rans_encode_counted(dst, cap, src, n, count);
}

size_t wd__rans_encode_counted(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, const uint32_t count[256])
{
    assert(cap >= wd__rans_bound(n));
    if (n < 2 || n > UINT32_MAX)
        return store(dst, src, n);

    uint32_t freq[256];
    uint8_t sym[256];
    int k = 0;
    for (int s = 0; s < 256; s++)
        if (count[s])
            sym[k++] = (uint8_t)s;
    if (k == 1) {
        dst[0] = FORMAT_VERSION;
        dst[1] = MODE_RUN;
        dst[2] = sym[0];
        return seal(dst, 3);
    }

    /* The largest scale the decoder takes (finest probabilities, and the
     * decoder's fast path), or about log2(n) for small inputs, whose
     * counts are no finer and whose frequencies then fit one byte. */
    unsigned scale = SCALE_MIN;
    while (scale < SCALE_MAX && ((size_t)1 << scale) < n)
        scale++;
    quantize(freq, count, sym, k, (uint32_t)n, scale);

    size_t table = 4 + 32;
    double bits = 0;
    for (int i = 0; i < k; i++) {
        table += freq[sym[i]] < 128 ? 1 : 2;
        bits += count[sym[i]] * ((double)scale - log2(freq[sym[i]]));
    }
    /* The stream is within a few bytes of the estimate; skip coding when it
     * clearly cannot beat storing. */
    size_t stored = HEADER + n + TRAILER, lo_off = table + 4 * NSTATES;
    if (lo_off + TRAILER >= stored || bits / 8 > (double)n + 8)
        return store(dst, src, n);

    uint8_t *p = dst;
    *p++ = FORMAT_VERSION;
    *p++ = MODE_RANS;
    *p++ = (uint8_t)scale;
    *p++ = (uint8_t)(k - 1);
    memset(p, 0, 32);
    for (int i = 0; i < k; i++)
        p[sym[i] >> 3] |= (uint8_t)(1u << (sym[i] & 7));
    p += 32;
    enc_sym es[256];
    uint32_t cum = 0;
    for (int i = 0; i < k; i++) {
        uint32_t f = freq[sym[i]];
        if (f < 128) {
            *p++ = (uint8_t)f;
        } else {
            *p++ = (uint8_t)(0x80 | f >> 8);
            *p++ = (uint8_t)f;
        }
        es[sym[i]] = enc_sym_of(f, cum, scale);
        cum += f;
    }
    assert((size_t)(p - dst) == table && cum == 1u << scale);

    /* The stream grows down from the end of dst (moved down behind the
     * states at the end); lo is where the states end. Each symbol emits at
     * most 2 bytes, so room is checked once per group of 8. */
    uint8_t *lo = dst + lo_off, *q = dst + cap;
    uint32_t xs[NSTATES];
    for (int j = 0; j < NSTATES; j++)
        xs[j] = RANS_L;
    size_t i = n;
    /* The last n mod 8 symbols first, then whole groups, always from the
     * end, so the decoder meets them in input order. */
    while (i % NSTATES) {
        i--;
        if (q - lo < 2)
            return store(dst, src, n);
        ENC_PUT(xs[i % NSTATES], q, &es[src[i]]);
    }
    uint32_t x0 = xs[0], x1 = xs[1], x2 = xs[2], x3 = xs[3];
    uint32_t x4 = xs[4], x5 = xs[5], x6 = xs[6], x7 = xs[7];
    while (i) {
        if (q - lo < 2 * NSTATES)
            return store(dst, src, n);
        i -= NSTATES;
        ENC_PUT(x7, q, &es[src[i + 7]]);
        ENC_PUT(x6, q, &es[src[i + 6]]);
        ENC_PUT(x5, q, &es[src[i + 5]]);
        ENC_PUT(x4, q, &es[src[i + 4]]);
        ENC_PUT(x3, q, &es[src[i + 3]]);
        ENC_PUT(x2, q, &es[src[i + 2]]);
        ENC_PUT(x1, q, &es[src[i + 1]]);
        ENC_PUT(x0, q, &es[src[i]]);
    }
    size_t stream = (size_t)(dst + cap - q), total = lo_off + stream;
    if (total + TRAILER >= stored)
        return store(dst, src, n);
    memmove(lo, q, stream);
    xs[0] = x0, xs[1] = x1, xs[2] = x2, xs[3] = x3;
    xs[4] = x4, xs[5] = x5, xs[6] = x6, xs[7] = x7;
    for (int j = 0; j < NSTATES; j++)
        put_u32(p + 4 * j, xs[j]);
    return seal(dst, total);
}

static int corrupt(const char *what)
{
    return wd__error(WD_ECORRUPT, "rans: %s", what);
}

#define M_MAX (1u << SCALE_MAX)

/* One decoding step of state xv into out at scale SCALE_MAX (the scale of
 * every input above 16 KiB, so constant shifts are worth a separate loop),
 * with the stream's bounds already known to allow 2 more bytes at p. The
 * first renormalisation byte is taken without a branch (the mask is all
 * ones when it is needed), since whether it is needed is a coin toss; a
 * second is needed only after a symbol with f < 128, so rarely that a
 * branch predicts well. */
#define DEC_FAST(xv, out)                                                          \
    do {                                                                           \
        uint32_t x_ = (xv), slot_ = x_ & (M_MAX - 1);                              \
        uint32_t s_ = slots[slot_], e_ = fc[s_];                                   \
        (out) = (uint8_t)s_;                                                       \
        x_ = (e_ & 0xffff) * (x_ >> SCALE_MAX) + slot_ - (e_ >> 16);               \
        uint32_t m_ = 0u - (uint32_t)(x_ < RANS_L);                                \
        x_ = x_ << (m_ & 8) | (p[0] & m_);                                         \
        p += m_ & 1;                                                               \
        if (x_ < RANS_L)                                                           \
            x_ = x_ << 8 | *p++;                                                   \
        (xv) = x_;                                                                 \
    } while (0)

/* The mode-2 payload after the version and mode bytes: src[0..len). */
static int decode_rans(uint8_t *dst, size_t n, const uint8_t *src, size_t len)
{
    const uint8_t *p = src, *end = src + len;
    if (end - p < 2)
        return corrupt("truncated table");
    unsigned scale = *p++;
    unsigned k = *p++ + 1u;
    if (scale < SCALE_MIN || scale > SCALE_MAX)
        return corrupt("bad scale");
    if (k < 2)
        return corrupt("fewer than two symbols");

    uint8_t sym[256];
    if (end - p < 32)
        return corrupt("truncated symbol bitmap");
    unsigned m = 0;
    for (unsigned s = 0; s < 256; s++)
        if (p[s >> 3] >> (s & 7) & 1)
            sym[m++] = (uint8_t)s;
    if (m != k)
        return corrupt("symbol bitmap disagrees with symbol count");
    p += 32;

    /* fc[s] = f | c << 16; both are below 2^15 once the sum checks out. */
    const uint32_t M = 1u << scale;
    uint32_t fc[256] = {0}, cum = 0;
    for (unsigned i = 0; i < k; i++) {
        if (p == end)
            return corrupt("truncated frequencies");
        uint32_t f = *p++;
        if (f & 0x80) {
            if (p == end)
                return corrupt("truncated frequencies");
            f = (f & 0x7f) << 8 | *p++;
            if (f < 128)
                return corrupt("overlong frequency");
        }
        if (f == 0 || f > M - cum)
            return corrupt("frequency zero or sum above scale");
        fc[sym[i]] = f | cum << 16;
        cum += f;
    }
    if (cum != M)
        return corrupt("frequencies do not sum to scale");

    if (end - p < 4 * NSTATES)
        return corrupt("truncated states");
    uint32_t x[NSTATES];
    for (int j = 0; j < NSTATES; j++) {
        x[j] = get_u32(p + 4 * j);
        if (x[j] < RANS_L || x[j] >= RANS_L << 8)
            return corrupt("initial state out of range");
    }
    p += 4 * NSTATES;

    /* Every slot gets its symbol: the frequencies tile [0, M) exactly. */
    uint8_t *slots = malloc(M);
    if (!slots)
        return WD_NOMEM();
    for (unsigned i = 0; i < k; i++)
        memset(slots + (fc[sym[i]] >> 16), sym[i], fc[sym[i]] & 0xffff);

    const uint32_t mask = M - 1;
    uint32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
    uint32_t x4 = x[4], x5 = x[5], x6 = x[6], x7 = x[7];
    size_t i = 0;
    /* Fast path: a group of 8 consumes at most 16 bytes of stream. */
    while (scale == SCALE_MAX && n - i >= NSTATES && end - p >= 2 * NSTATES) {
        DEC_FAST(x0, dst[i]);
        DEC_FAST(x1, dst[i + 1]);
        DEC_FAST(x2, dst[i + 2]);
        DEC_FAST(x3, dst[i + 3]);
        DEC_FAST(x4, dst[i + 4]);
        DEC_FAST(x5, dst[i + 5]);
        DEC_FAST(x6, dst[i + 6]);
        DEC_FAST(x7, dst[i + 7]);
        i += NSTATES;
    }
    x[0] = x0, x[1] = x1, x[2] = x2, x[3] = x3;
    x[4] = x4, x[5] = x5, x[6] = x6, x[7] = x7;
    /* The rest one byte at a time, each read checked. */
    int rc = 0;
    for (; i < n; i++) {
        uint32_t xv = x[i % NSTATES], slot = xv & mask;
        uint32_t s = slots[slot], e = fc[s];
        dst[i] = (uint8_t)s;
        xv = (e & 0xffff) * (xv >> scale) + slot - (e >> 16);
        while (xv < RANS_L) {
            if (p == end) {
                rc = corrupt("truncated stream");
                goto out;
            }
            xv = xv << 8 | *p++;
        }
        x[i % NSTATES] = xv;
    }
    if (p != end)
        rc = corrupt("trailing bytes after stream");
    for (int j = 0; j < NSTATES && rc == 0; j++)
        if (x[j] != RANS_L)
            rc = corrupt("final state mismatch");
out:
    free(slots);
    return rc;
}

int wd__rans_decode(uint8_t *dst, size_t n, const uint8_t *src, size_t len)
{
    if (len < HEADER)
        return corrupt("truncated header");
    if (src[0] != FORMAT_VERSION)
        return wd__error(WD_ECORRUPT, "rans: unknown format version %u", (unsigned)src[0]);
    if (len < HEADER + TRAILER)
        return corrupt("truncated header");
    len -= TRAILER;
    if (get_u32(src + len) != wd__rans_checksum(src, len))
        return corrupt("checksum mismatch");
    switch (src[1]) {
    case MODE_STORED:
        if (len - HEADER != n)
            return corrupt("stored length mismatch");
        if (n)
            memcpy(dst, src + HEADER, n);
        return 0;
    case MODE_RUN:
        if (len != HEADER + 1 || n == 0)
            return corrupt("bad run");
        memset(dst, src[HEADER], n);
        return 0;
    case MODE_RANS:
        return decode_rans(dst, n, src + HEADER, len - HEADER);
    default:
        return corrupt("unknown mode");
    }
}
