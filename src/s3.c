/*
 * s3.c - the S3 client of s3.h: URL and credential lookup, requests signed
 * by libcurl (CURLOPT_AWS_SIGV4) with the payload hash sent explicitly
 * (curl 7.88 does not add it), a curl multi loop with retries, and
 * ListObjectsV2 with a minimal reader of its XML.
 */
#include "s3.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "error.h"
#include "hash.h"

struct wd_s3 {
    char *endpoint; /* "http://host:port", no trailing slash */
    char *bucket;
    char *prefix;   /* "" or ending in '/' */
    char *where;    /* endpoint/bucket/prefix, for messages */
    char *region;
    char *userpwd;  /* "access:secret" (never shown) */
    char *token;    /* session token header, or NULL */
    char sigv4[128];
    CURLM *multi;
};

/* Attempts per request: 0.2 + 0.4 + 0.8 + 1.6 s of waits in between ride
 * out a gateway restart without making a dead server slow to report. */
#define MAX_ATTEMPTS 5
#define FIRST_BACKOFF_NS 200000000ull
/* Error bodies are short XML documents; more is not read. */
#define ERR_BODY_MAX 16384
/* One ListObjectsV2 page: 1000 keys of < 300 bytes of XML each. */
#define LIST_BODY_MAX (4u << 20)

static int curl_ready;

static char *xstrndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

const char *wd__s3_where(const wd_s3 *s3)
{
    return s3->where;
}

/* Splits url into endpoint, bucket and prefix (all malloc'd). */
static int parse_url(const char *url, char **endpoint, char **bucket, char **prefix)
{
    const char *rest;
    char *ep = NULL;
    *endpoint = *bucket = *prefix = NULL;
    if (strncmp(url, "s3://", 5) == 0) {
        const char *env = getenv("AWS_ENDPOINT_URL");
        if (!env || !*env)
            return wd__error(WD_EUSAGE, "'%s': an s3:// URL needs the endpoint in AWS_ENDPOINT_URL "
                                        "(or give http[s]://HOST[:PORT]/BUCKET)", url);
        if (strncmp(env, "http://", 7) != 0 && strncmp(env, "https://", 8) != 0)
            return wd__error(WD_EUSAGE, "AWS_ENDPOINT_URL '%s' must start with http:// or https://", env);
        size_t n = strlen(env);
        while (n > 0 && env[n - 1] == '/')
            n--;
        ep = xstrndup(env, n);
        rest = url + 5;
    } else if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
        const char *host = strstr(url, "://") + 3;
        const char *slash = strchr(host, '/');
        if (!slash || slash == host)
            return wd__error(WD_EUSAGE, "'%s' names no bucket: expected http[s]://HOST[:PORT]/BUCKET[/PREFIX]",
                             url);
        if (memchr(host, '@', (size_t)(slash - host)))
            /* The URL is not repeated: it holds a secret. */
            return wd__error(WD_EUSAGE, "credentials do not belong in the remote URL; set AWS_ACCESS_KEY_ID "
                                        "and AWS_SECRET_ACCESS_KEY");
        ep = xstrndup(url, (size_t)(slash - url));
        rest = slash + 1;
    } else {
        return wd__error(WD_EUSAGE, "'%s' is no remote URL: expected https://HOST[:PORT]/BUCKET[/PREFIX], "
                                    "http://... or s3://BUCKET[/PREFIX]", url);
    }
    if (!ep)
        return WD_NOMEM();
    const char *bend = strchr(rest, '/');
    size_t blen = bend ? (size_t)(bend - rest) : strlen(rest);
    int ok = blen >= 3 && blen <= 63;
    for (size_t i = 0; ok && i < blen; i++)
        ok = islower((unsigned char)rest[i]) || isdigit((unsigned char)rest[i]) || rest[i] == '-' ||
             rest[i] == '.';
    if (!ok) {
        free(ep);
        return wd__error(WD_EUSAGE, "'%s': the bucket name must be 3-63 lowercase letters, digits, '.' or '-'",
                         url);
    }
    /* The prefix: segments of URL-safe characters, kept with one '/' after each. */
    const char *p = bend ? bend + 1 : "";
    size_t plen = strlen(p);
    while (plen > 0 && p[plen - 1] == '/')
        plen--;
    for (size_t i = 0; i < plen; i++)
        if (!isalnum((unsigned char)p[i]) && !strchr("._-+/", p[i]) ) {
            free(ep);
            return wd__error(WD_EUSAGE, "'%s': the prefix may hold only letters, digits and ._-+/", url);
        }
    char *b = xstrndup(rest, blen), *pre = malloc(plen + 2);
    if (!b || !pre) {
        free(ep), free(b), free(pre);
        return WD_NOMEM();
    }
    memcpy(pre, p, plen);
    if (plen)
        pre[plen++] = '/';
    pre[plen] = 0;
    *endpoint = ep;
    *bucket = b;
    *prefix = pre;
    return 0;
}

int wd__s3_url_check(const char *url)
{
    char *e, *b, *p;
    if (strncmp(url, "s3://", 5) == 0) {
        /* The endpoint is looked up when the remote is used. */
        int had = getenv("AWS_ENDPOINT_URL") != NULL;
        if (!had)
            setenv("AWS_ENDPOINT_URL", "http://x", 1);
        int rc = parse_url(url, &e, &b, &p);
        if (!had)
            unsetenv("AWS_ENDPOINT_URL");
        if (rc)
            return rc;
    } else {
        int rc = parse_url(url, &e, &b, &p);
        if (rc)
            return rc;
    }
    free(e), free(b), free(p);
    return 0;
}

/* Reads key = value lines of [profile] in an AWS credentials file. */
static int profile_lookup(const char *path, const char *profile, char **access, char **secret, char **token)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[1024];
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        char *s = line, *e = line + strlen(line);
        while (e > s && isspace((unsigned char)e[-1]))
            *--e = 0;
        while (isspace((unsigned char)*s))
            s++;
        if (*s == '[') {
            char *close = strchr(s, ']');
            if (close) {
                *close = 0;
                char *name = s + 1;
                if (strncmp(name, "profile ", 8) == 0)
                    name += 8;
                in = strcmp(name, profile) == 0;
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!in || !eq || *s == '#' || *s == ';')
            continue;
        char *k = s, *ke = eq, *v = eq + 1;
        while (ke > k && isspace((unsigned char)ke[-1]))
            ke--;
        *ke = 0;
        while (isspace((unsigned char)*v))
            v++;
        char **dst = strcmp(k, "aws_access_key_id") == 0       ? access
                     : strcmp(k, "aws_secret_access_key") == 0 ? secret
                     : strcmp(k, "aws_session_token") == 0     ? token
                                                               : NULL;
        if (dst && !*dst && !(*dst = strdup(v))) {
            fclose(f);
            return WD_NOMEM();
        }
    }
    fclose(f);
    return 0;
}

static int load_credentials(wd_s3 *s3)
{
    char *access = NULL, *secret = NULL, *token = NULL;
    const char *ea = getenv("AWS_ACCESS_KEY_ID"), *es = getenv("AWS_SECRET_ACCESS_KEY");
    int rc = 0;
    if (ea && *ea && es && *es) {
        const char *et = getenv("AWS_SESSION_TOKEN");
        access = strdup(ea);
        secret = strdup(es);
        token = et && *et ? strdup(et) : NULL;
        if (!access || !secret || (et && *et && !token))
            rc = WD_NOMEM();
    } else {
        const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE"), *home = getenv("HOME");
        const char *profile = getenv("AWS_PROFILE");
        char path[4096];
        if (file && *file)
            snprintf(path, sizeof path, "%s", file);
        else
            snprintf(path, sizeof path, "%s/.aws/credentials", home ? home : "");
        rc = profile_lookup(path, profile && *profile ? profile : "default", &access, &secret, &token);
        if (!rc && (!access || !secret))
            rc = wd__error(WD_EUSAGE, "no credentials for remote '%s': set AWS_ACCESS_KEY_ID and "
                                      "AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials", s3->where);
    }
    if (!rc) {
        size_t n = strlen(access) + strlen(secret) + 2;
        if (!(s3->userpwd = malloc(n)))
            rc = WD_NOMEM();
        else
            snprintf(s3->userpwd, n, "%s:%s", access, secret);
        s3->token = token;
        token = NULL;
    }
    if (secret)
        memset(secret, 0, strlen(secret));
    free(access), free(secret), free(token);
    return rc;
}

int wd__s3_open(wd_s3 **out, const char *url)
{
    *out = NULL;
    if (!curl_ready) {
        /* Not thread-safe in libcurl 7.88: the CLI calls it from its one thread. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return wd__error(WD_ERROR, "cannot initialise libcurl");
        curl_ready = 1;
    }
    wd_s3 *s3 = calloc(1, sizeof *s3);
    if (!s3)
        return WD_NOMEM();
    int rc = parse_url(url, &s3->endpoint, &s3->bucket, &s3->prefix);
    if (rc) {
        free(s3);
        return rc;
    }
    size_t n = strlen(s3->endpoint) + strlen(s3->bucket) + strlen(s3->prefix) + 3;
    if (!(s3->where = malloc(n))) {
        wd__s3_close(s3);
        return WD_NOMEM();
    }
    snprintf(s3->where, n, "%s/%s/%s", s3->endpoint, s3->bucket, s3->prefix);
    if (s3->where[strlen(s3->where) - 1] == '/')
        s3->where[strlen(s3->where) - 1] = 0;
    const char *region = getenv("AWS_REGION");
    if (!region || !*region)
        region = getenv("AWS_DEFAULT_REGION");
    if (!region || !*region)
        region = "us-east-1";
    for (const char *p = region; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-') {
            wd__s3_close(s3);
            return wd__error(WD_EUSAGE, "region '%s' is not valid (AWS_REGION)", region);
        }
    snprintf(s3->sigv4, sizeof s3->sigv4, "aws:amz:%.64s:s3", region);
    if ((rc = load_credentials(s3))) {
        wd__s3_close(s3);
        return rc;
    }
    if (!(s3->multi = curl_multi_init())) {
        wd__s3_close(s3);
        return wd__error(WD_ERROR, "cannot initialise libcurl");
    }
    *out = s3;
    return 0;
}

void wd__s3_close(wd_s3 *s3)
{
    if (!s3)
        return;
    if (s3->multi)
        curl_multi_cleanup(s3->multi);
    if (s3->userpwd)
        memset(s3->userpwd, 0, strlen(s3->userpwd));
    free(s3->endpoint), free(s3->bucket), free(s3->prefix), free(s3->where), free(s3->region);
    free(s3->userpwd), free(s3->token);
    free(s3);
}

/* ---- one transfer ---------------------------------------------------------- */

typedef struct {
    wd_s3_req *req;
    CURL *easy;
    struct curl_slist *headers;
    size_t sent;
    int attempts;
    uint64_t not_before; /* monotonic ns: a retry waits until then */
    int overflow;
    char url[4096]; /* the parts are cut to fit (endpoints are short) */
} xfer;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    size_t limit = x->req->max_len ? x->req->max_len : ERR_BODY_MAX;
    if (x->req->resp.len + n > limit && x->req->resp.len + n > ERR_BODY_MAX) {
        x->overflow = 1;
        return 0;
    }
    if (wd__buf_append(&x->req->resp, data, n))
        return 0;
    return n;
}

static size_t on_send(char *dst, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb, left = x->req->body_len - x->sent;
    if (n > left)
        n = left;
    memcpy(dst, (const char *)x->req->body + x->sent, n);
    x->sent += n;
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    if (n > 5 && strncasecmp(data, "etag:", 5) == 0) {
        const char *v = data + 5;
        size_t len = n - 5;
        while (len && (*v == ' ' || *v == '\t'))
            v++, len--;
        while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
            len--;
        if (len < sizeof x->req->etag) {
            memcpy(x->req->etag, v, len);
            x->req->etag[len] = 0;
        }
    }
    return n;
}

/* "name: value". (No "Expect:" to switch 100-continue off: curl 7.88
 * signs that empty header, and the server then rejects the signature.) */
static int add_header(struct curl_slist **list, const char *name, const char *value)
{
    char line[512];
    snprintf(line, sizeof line, "%s: %s", name, value);
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return WD_NOMEM();
    *list = l;
    return 0;
}

/* Sets up x's handle for one attempt of its request. */
static int xfer_start(wd_s3 *s3, xfer *x)
{
    wd_s3_req *r = x->req;
    r->resp.len = 0;
    r->etag[0] = 0;
    r->status = 0;
    x->sent = 0;
    x->overflow = 0;
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    if (!x->easy && !(x->easy = curl_easy_init()))
        return WD_NOMEM();
    CURL *e = x->easy;
    curl_easy_reset(e);
    if (strchr(r->key, '?'))
        snprintf(x->url, sizeof x->url, "%.1024s/%.64s%.1023s", s3->endpoint, s3->bucket, r->key);
    else
        snprintf(x->url, sizeof x->url, "%.1024s/%.64s/%.1024s%.1023s", s3->endpoint, s3->bucket, s3->prefix, r->key);
    /* The payload hash is part of the signature; the server checks the body against it. */
    uint8_t h[WD_HASH_SIZE];
    char hex[WD_HEX_SIZE];
    wd__sha256(r->method == WD_S3_PUT ? r->body : "", r->method == WD_S3_PUT ? r->body_len : 0, h);
    wd__hex(hex, h);
    int rc = add_header(&x->headers, "x-amz-content-sha256", hex);
    if (!rc && s3->token)
        rc = add_header(&x->headers, "x-amz-security-token", s3->token);
    if (!rc && r->method == WD_S3_PUT && r->create_only)
        rc = add_header(&x->headers, "If-None-Match", "*");
    if (!rc && r->method == WD_S3_PUT && r->if_match[0])
        rc = add_header(&x->headers, "If-Match", r->if_match);
    if (rc)
        return rc;
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s3->sigv4);
    curl_easy_setopt(e, CURLOPT_USERPWD, s3->userpwd);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
    /* A stalled transfer (30 s under 1 byte/s) counts as a failed attempt. */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    if (r->method == WD_S3_PUT) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_send);
        curl_easy_setopt(e, CURLOPT_READDATA, x);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
    } else if (r->method == WD_S3_HEAD) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    }
    return 0;
}

/* The <Code> of an S3 error body, or "". */
static void error_code(const wd_buf *b, char *out, size_t size)
{
    out[0] = 0;
    if (!b->len)
        return;
    const char *s = memmem(b->data, b->len, "<Code>", 6);
    if (!s)
        return;
    s += 6;
    const char *e = memmem(s, b->len - (size_t)(s - (const char *)b->data), "</Code>", 7);
    if (!e || (size_t)(e - s) >= size)
        return;
    memcpy(out, s, (size_t)(e - s));
    out[e - s] = 0;
}

/* Records the outcome of an attempt; returns 1 if it should be retried. */
static int xfer_finish(wd_s3 *s3, xfer *x, CURLcode cc, uint64_t *io_bytes)
{
    wd_s3_req *r = x->req;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    r->status = status;
    if (io_bytes) {
        curl_off_t up = 0, down = 0;
        curl_easy_getinfo(x->easy, CURLINFO_SIZE_UPLOAD_T, &up);
        curl_easy_getinfo(x->easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
        *io_bytes += (uint64_t)up + (uint64_t)down;
    }
    r->err[0] = 0;
    if (cc != CURLE_OK && !(x->overflow && status >= 200 && status < 300)) {
        snprintf(r->err, sizeof r->err, "%s", curl_easy_strerror(cc));
        r->result = WD_EIO;
        if (x->overflow) {
            snprintf(r->err, sizeof r->err, "'%.200s' is larger than the %zu bytes expected", r->key, r->max_len);
            r->result = WD_ECORRUPT;
            return 0;
        }
        return cc != CURLE_UNSUPPORTED_PROTOCOL && cc != CURLE_URL_MALFORMAT;
    }
    if (x->overflow) {
        snprintf(r->err, sizeof r->err, "'%.200s' is larger than the %zu bytes expected", r->key, r->max_len);
        r->result = WD_ECORRUPT;
        return 0;
    }
    if (status >= 200 && status < 300) {
        r->result = 0;
        return 0;
    }
    char code[64];
    error_code(&r->resp, code, sizeof code);
    r->resp.len = 0;
    if (status == 404 && strcmp(code, "NoSuchBucket") != 0) {
        r->result = WD_ENOTFOUND;
        return 0;
    }
    if (status == 412 || (status == 409 && strcmp(code, "ConditionalRequestConflict") == 0)) {
        r->result = WD_EEXISTS;
        return 0;
    }
    if (status == 404)
        snprintf(r->err, sizeof r->err, "bucket '%s' does not exist; create it first", s3->bucket);
    else if (status == 403)
        snprintf(r->err, sizeof r->err, "access denied (%s); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                                        "or the profile in ~/.aws/credentials", code[0] ? code : "403");
    else
        snprintf(r->err, sizeof r->err, "the server answered %ld%s%s", status, code[0] ? " " : "", code);
    r->result = status == 403 ? WD_EUSAGE : status == 404 ? WD_ENOTFOUND : WD_EIO;
    return status >= 500 || status == 429 || status == 408;
}

int wd__s3_run(wd_s3 *s3, wd_s3_req *reqs, size_t n, int parallel, uint64_t *io_bytes)
{
    if (n == 0)
        return 0;
    if (parallel < 1)
        parallel = 1;
    xfer *xs = calloc(n, sizeof *xs);
    if (!xs)
        return WD_NOMEM();
    for (size_t i = 0; i < n; i++) {
        xs[i].req = &reqs[i];
        reqs[i].result = WD_ERROR;
        reqs[i].err[0] = 0;
    }
    /* waiting: indices not yet running, in order; a retry goes back into it. */
    size_t next = 0, running = 0, done = 0;
    size_t *retry = malloc(n * sizeof *retry), n_retry = 0;
    int rc = retry ? 0 : WD_NOMEM();
    while (!rc && done < n) {
        uint64_t t = now_ns();
        /* Start what fits: due retries first, then new requests. */
        for (size_t k = 0; k < n_retry && running < (size_t)parallel;) {
            xfer *x = &xs[retry[k]];
            if (x->not_before > t) {
                k++;
                continue;
            }
            retry[k] = retry[--n_retry];
            if ((rc = xfer_start(s3, x)) || curl_multi_add_handle(s3->multi, x->easy) != CURLM_OK) {
                rc = rc ? rc : wd__error(WD_ERROR, "libcurl refused a transfer");
                break;
            }
            running++;
        }
        while (!rc && next < n && running < (size_t)parallel) {
            xfer *x = &xs[next++];
            if ((rc = xfer_start(s3, x)) || curl_multi_add_handle(s3->multi, x->easy) != CURLM_OK) {
                rc = rc ? rc : wd__error(WD_ERROR, "libcurl refused a transfer");
                break;
            }
            running++;
        }
        if (rc)
            break;
        int still = 0;
        if (curl_multi_perform(s3->multi, &still) != CURLM_OK) {
            rc = wd__error(WD_ERROR, "libcurl failed");
            break;
        }
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(s3->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            xfer *x = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            CURLcode cc = m->data.result;
            curl_multi_remove_handle(s3->multi, m->easy_handle);
            running--;
            x->attempts++;
            if (xfer_finish(s3, x, cc, io_bytes) && x->attempts < MAX_ATTEMPTS) {
                x->not_before = now_ns() + (FIRST_BACKOFF_NS << (x->attempts - 1));
                retry[n_retry++] = (size_t)(x - xs);
            } else {
                done++;
            }
        }
        if (done < n) {
            /* Wait for traffic, or until the next retry is due (at most 100 ms). */
            int wait_ms = 100;
            if (running == 0 && n_retry) {
                uint64_t soonest = UINT64_MAX;
                for (size_t k = 0; k < n_retry; k++)
                    if (xs[retry[k]].not_before < soonest)
                        soonest = xs[retry[k]].not_before;
                t = now_ns();
                wait_ms = soonest > t ? (int)((soonest - t) / 1000000 + 1) : 0;
                if (wait_ms > 2000)
                    wait_ms = 2000;
            }
            curl_multi_poll(s3->multi, NULL, 0, wait_ms, NULL);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (xs[i].easy) {
            curl_multi_remove_handle(s3->multi, xs[i].easy);
            curl_easy_cleanup(xs[i].easy);
        }
        curl_slist_free_all(xs[i].headers);
    }
    free(retry);
    free(xs);
    return rc;
}

int wd__s3_req_error(wd_s3 *s3, const wd_s3_req *r)
{
    if (r->result == WD_ENOTFOUND && !r->err[0])
        return wd__error(WD_ENOTFOUND, "remote '%s': '%s' not found", s3->where, r->key);
    if (r->status == 0 && r->result == WD_EIO)
        return wd__error(WD_EIO, "remote '%s': cannot reach the server (%s); is it running?", s3->where,
                         r->err);
    return wd__error(r->result ? r->result : WD_ERROR, "remote '%s': %s", s3->where,
                     r->err[0] ? r->err : "request failed");
}

/* ---- listing --------------------------------------------------------------- */

/* Percent-encodes s for a query value (everything but unreserved characters). */
static void query_encode(char *out, size_t size, const char *s)
{
    size_t o = 0;
    for (; *s && o + 4 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, size - o, "%%%02X", c);
    }
    out[o] = 0;
}

/* The text of the next <tag>...</tag> at or after *pos, XML entities
 * decoded, malloc'd; NULL when there is none (*err set on no memory). */
static char *next_element(const wd_buf *b, size_t *pos, const char *tag, int *err)
{
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *base = (const char *)b->data;
    const char *s = memmem(base + *pos, b->len - *pos, open, strlen(open));
    if (!s)
        return NULL;
    s += strlen(open);
    const char *e = memmem(s, b->len - (size_t)(s - base), close, strlen(close));
    if (!e)
        return NULL;
    *pos = (size_t)(e - base) + strlen(close);
    char *out = malloc((size_t)(e - s) + 1);
    if (!out) {
        *err = 1;
        return NULL;
    }
    size_t o = 0;
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    while (s < e) {
        size_t k;
        for (k = 0; k < 5; k++)
            if ((size_t)(e - s) >= strlen(ents[k].ent) && strncmp(s, ents[k].ent, strlen(ents[k].ent)) == 0)
                break;
        if (k < 5) {
            out[o++] = ents[k].c;
            s += strlen(ents[k].ent);
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = 0;
    return out;
}

void wd__s3_keys_free(char **keys, size_t n)
{
    for (size_t i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
}

int wd__s3_list(wd_s3 *s3, const char *prefix, char ***out, size_t *out_n)
{
    char **keys = NULL;
    size_t n = 0, cap = 0;
    char *token = NULL;
    char full[512], enc_prefix[600];
    snprintf(full, sizeof full, "%s%s", s3->prefix, prefix);
    query_encode(enc_prefix, sizeof enc_prefix, full);
    size_t strip = strlen(s3->prefix);
    int rc = 0;
    *out = NULL;
    *out_n = 0;
    for (;;) {
        wd_s3_req r;
        memset(&r, 0, sizeof r);
        r.method = WD_S3_GET;
        r.max_len = LIST_BODY_MAX;
        /* SigV4 wants the query sorted by name; curl 7.88 does not sort it. */
        if (token) {
            char enc_token[700];
            query_encode(enc_token, sizeof enc_token, token);
            snprintf(r.key, sizeof r.key, "?continuation-token=%.300s&list-type=2&prefix=%.600s", enc_token,
                     enc_prefix);
            if (strlen(enc_token) > 300) {
                rc = wd__error(WD_ECORRUPT, "remote '%s': listing token too long", s3->where);
                break;
            }
        } else {
            snprintf(r.key, sizeof r.key, "?list-type=2&prefix=%.600s", enc_prefix);
        }
        free(token);
        token = NULL;
        if ((rc = wd__s3_run(s3, &r, 1, 1, NULL))) {
            wd__buf_free(&r.resp);
            break;
        }
        if (r.result) {
            rc = wd__s3_req_error(s3, &r);
            wd__buf_free(&r.resp);
            break;
        }
        size_t pos = 0;
        int err = 0;
        char *k;
        while ((k = next_element(&r.resp, &pos, "Key", &err))) {
            if (strncmp(k, s3->prefix, strip) != 0) {
                free(k);
                continue;
            }
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 256;
                char **nk = realloc(keys, nc * sizeof *nk);
                if (!nk) {
                    free(k);
                    err = 1;
                    break;
                }
                keys = nk;
                cap = nc;
            }
            memmove(k, k + strip, strlen(k + strip) + 1);
            keys[n++] = k;
        }
        size_t p0 = 0;
        char *trunc = err ? NULL : next_element(&r.resp, &p0, "IsTruncated", &err);
        if (trunc && strcmp(trunc, "true") == 0) {
            p0 = 0;
            token = next_element(&r.resp, &p0, "NextContinuationToken", &err);
        }
        free(trunc);
        wd__buf_free(&r.resp);
        if (err) {
            rc = WD_NOMEM();
            break;
        }
        if (!token)
            break;
    }
    free(token);
    if (rc) {
        wd__s3_keys_free(keys, n);
        return rc;
    }
    *out = keys;
    *out_n = n;
    return 0;
}
