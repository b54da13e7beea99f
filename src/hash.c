/*
 * hash.c - SHA-256 through OpenSSL's EVP interface (see hash.h).
 */
#include "hash.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

struct wd_sha256 {
    EVP_MD_CTX *ctx;
};

int wd__sha256_new(wd_sha256 **out)
{
    wd_sha256 *h = calloc(1, sizeof *h);
    if (!h || !(h->ctx = EVP_MD_CTX_new())) {
        free(h);
        return WD_NOMEM();
    }
    if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        wd__sha256_free(h);
        return wd__error(WD_ERROR, "cannot initialise SHA-256");
    }
    *out = h;
    return WD_OK;
}

void wd__sha256_update(wd_sha256 *h, const void *data, size_t len)
{
    if (len)
        EVP_DigestUpdate(h->ctx, data, len);
}

void wd__sha256_final(wd_sha256 *h, uint8_t out[WD_HASH_SIZE])
{
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, out, &n);
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void wd__sha256_free(wd_sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void wd__sha256(const void *data, size_t len, uint8_t out[WD_HASH_SIZE])
{
    unsigned int n = 0;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void wd__hex(char out[WD_HEX_SIZE], const uint8_t hash[WD_HASH_SIZE])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < WD_HASH_SIZE; i++) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 15];
    }
    out[2 * WD_HASH_SIZE] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int wd__unhex(uint8_t out[WD_HASH_SIZE], const char *s)
{
    if (strlen(s) != 2 * WD_HASH_SIZE)
        return -1;
    for (int i = 0; i < WD_HASH_SIZE; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
