/*
 * test_s3.c - the S3 client's offline parts: remote URLs (endpoint, bucket,
 * prefix), credentials from the environment and from a credentials file's
 * profiles, and the refusals. The transfers themselves are tested against a
 * real server by tests/cli/t_remote.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3.h"
#include "testutil.h"
#include "wdrepo.h"

static void clear_env(void)
{
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

static void test_urls(void)
{
    wd_s3 *s3 = NULL;
    clear_env();
    setenv("AWS_ACCESS_KEY_ID", "AK", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SK", 1);
    CHECK_RC(wd__s3_open(&s3, "http://127.0.0.1:7480/bucket/a/b/"), 0);
    CHECK(s3 && strcmp(wd__s3_where(s3), "http://127.0.0.1:7480/bucket/a/b") == 0);
    wd__s3_close(s3);
    CHECK_RC(wd__s3_open(&s3, "https://s3.example.com/models"), 0);
    CHECK(s3 && strcmp(wd__s3_where(s3), "https://s3.example.com/models") == 0);
    wd__s3_close(s3);

    /* s3:// takes the endpoint from the environment, and needs it. */
    CHECK_RC(wd__s3_open(&s3, "s3://models/team"), WD_EUSAGE);
    CHECK(strstr(wd_errmsg(), "AWS_ENDPOINT_URL") != NULL);
    CHECK_RC(wd__s3_url_check("s3://models/team"), 0);
    setenv("AWS_ENDPOINT_URL", "http://localhost:9000/", 1);
    CHECK_RC(wd__s3_open(&s3, "s3://models/team"), 0);
    CHECK(s3 && strcmp(wd__s3_where(s3), "http://localhost:9000/models/team") == 0);
    wd__s3_close(s3);
    unsetenv("AWS_ENDPOINT_URL");

    CHECK_RC(wd__s3_url_check("ftp://host/bucket"), WD_EUSAGE);
    CHECK_RC(wd__s3_url_check("http://host"), WD_EUSAGE);
    CHECK_RC(wd__s3_url_check("http://host/"), WD_EUSAGE);
    CHECK_RC(wd__s3_url_check("http://host/Upper"), WD_EUSAGE);
    CHECK_RC(wd__s3_url_check("http://host/ab"), WD_EUSAGE);
    CHECK_RC(wd__s3_url_check("http://host/bucket/sp ace"), WD_EUSAGE);
    CHECK_RC(wd__s3_url_check("http://key:secret@host/bucket"), WD_EUSAGE);
    CHECK(strstr(wd_errmsg(), "secret") == NULL);
    CHECK_RC(wd__s3_url_check("http://host:1/bucket.name-2/p+q_r.s"), 0);
}

static void test_credentials(void)
{
    wd_s3 *s3 = NULL;
    char path[] = "/tmp/wd_test_s3_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    const char text[] = "[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key=defaultsecret\n"
                        "\n# a comment\n[profile team]\n  aws_access_key_id=TEAMKEY\n"
                        "aws_secret_access_key = teamsecret\naws_session_token = tok\n"
                        "[keyless]\nregion = eu-west-1\n";
    CHECK(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);

    clear_env();
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    CHECK_RC(wd__s3_open(&s3, "http://h/bucket"), 0);
    wd__s3_close(s3);
    setenv("AWS_PROFILE", "team", 1);
    CHECK_RC(wd__s3_open(&s3, "http://h/bucket"), 0);
    wd__s3_close(s3);
    /* A profile without keys, or none at all: one line naming what to set. */
    setenv("AWS_PROFILE", "keyless", 1);
    CHECK_RC(wd__s3_open(&s3, "http://h/bucket"), WD_EUSAGE);
    CHECK(strstr(wd_errmsg(), "AWS_ACCESS_KEY_ID") != NULL);
    CHECK(s3 == NULL);
    setenv("AWS_PROFILE", "nosuch", 1);
    CHECK_RC(wd__s3_open(&s3, "http://h/bucket"), WD_EUSAGE);
    unsetenv("AWS_PROFILE");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
    CHECK_RC(wd__s3_open(&s3, "http://h/bucket"), WD_EUSAGE);
    /* The environment wins over the file. */
    setenv("AWS_ACCESS_KEY_ID", "AK", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SK", 1);
    CHECK_RC(wd__s3_open(&s3, "http://h/bucket"), 0);
    wd__s3_close(s3);
    setenv("AWS_REGION", "bad region!", 1);
    CHECK_RC(wd__s3_open(&s3, "http://h/bucket"), WD_EUSAGE);
    unlink(path);
    clear_env();
}

int main(void)
{
    test_urls();
    test_credentials();
    return tu_finish("test_s3");
}
