/*
 * s3.h - a small S3 client over libcurl: path-style URLs signed with AWS
 * Signature V4, create-only and compare-and-swap PUTs, GET, HEAD and
 * ListObjectsV2, run a batch at a time on a bounded number of connections
 * with retries.
 */
#ifndef WD_S3_H
#define WD_S3_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct wd_s3 wd_s3;

/* Opens a client for url: "http[s]://HOST[:PORT]/BUCKET[/PREFIX]", or
 * "s3://BUCKET[/PREFIX]" with the endpoint from $AWS_ENDPOINT_URL.
 * Credentials come from $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY
 * (+$AWS_SESSION_TOKEN), else the profile $AWS_PROFILE (default "default")
 * of $AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials; the region from
 * $AWS_REGION or $AWS_DEFAULT_REGION, else us-east-1. Nothing is sent yet. */
int wd__s3_open(wd_s3 **out, const char *url);
void wd__s3_close(wd_s3 *s3);
/* Checks url's shape only (remote add): no credentials needed. */
int wd__s3_url_check(const char *url);

enum { WD_S3_GET = 0, WD_S3_PUT = 1, WD_S3_HEAD = 2 };

/* One request of a batch. key is relative to the remote's prefix and
 * made only of URL-safe characters (letters, digits, ._-+/). */
typedef struct {
    int method;
    char key[1024];
    const void *body; /* PUT: the body (the caller keeps it alive) */
    size_t body_len;
    int create_only;   /* PUT with If-None-Match: * */
    char if_match[80]; /* PUT only if the object's ETag is this ("": no condition) */
    size_t max_len;    /* GET: a longer body fails (the bound of resp) */
    /* results */
    wd_buf resp;       /* GET: the body (the caller frees it) */
    long status;       /* HTTP status of the last attempt (0: no answer) */
    char etag[80];
    /* 0 ok; WD_ENOTFOUND for 404; WD_EEXISTS for 412 (the condition
     * failed); another WD_E* code with the message in err otherwise. */
    int result;
    char err[512];
} wd_s3_req;

/* Runs reqs[0..n) with at most parallel of them at a time, each retried
 * with backoff on no answer, 5xx, 429 or a reset. Returns 0 once every
 * request has a result (look at each one's), or a code if the client itself
 * failed. Bytes sent and received are added to *io_bytes (may be NULL). */
int wd__s3_run(wd_s3 *s3, wd_s3_req *reqs, size_t n, int parallel, uint64_t *io_bytes);

/* Keys under prefix (relative, as for wd_s3_req.key), one call per 1000.
 * *out is an array of *out_n malloc'd strings; free with wd__s3_keys_free. */
int wd__s3_list(wd_s3 *s3, const char *prefix, char ***out, size_t *out_n);
void wd__s3_keys_free(char **keys, size_t n);

/* The one-line failure of a request ("remote 'http://...': ..."), as a
 * WD_* code with the message set. */
int wd__s3_req_error(wd_s3 *s3, const wd_s3_req *r);

/* Where the client points (the URL without credentials), for messages. */
const char *wd__s3_where(const wd_s3 *s3);

#endif
