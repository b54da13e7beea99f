/*
 * test_jsonstrict.c - the allocation-free JSON validator and the cursor
 * over validated text: what the grammar admits and refuses (escapes,
 * surrogates, nesting, trailing text), the top-level member count parsers
 * allocate by, and decoding strings and numbers in place.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonstrict.h"
#include "testutil.h"

static int syntax(const char *s, size_t *members)
{
    size_t at;
    return wd__json_syntax((const unsigned char *)s, strlen(s), &at, members);
}

static void test_syntax(void)
{
    size_t m = 99;
    static const char *const ok[] = {
        "{}", " { } ", "[]", "1", "-0.5e+3", "\"x\"", "true", "false", "null",
        "{\"a\":1,\"b\":[1,2,{\"c\":null}],\"d\":{}}", "[[[]]]", "\"\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
        "{\"a\" : [ 1 , 2 ] }\n",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        int rc = syntax(ok[i], NULL);
        if (rc != WD_JSON_OK)
            fprintf(stderr, "  refused: %s\n", ok[i]);
        CHECK(rc == WD_JSON_OK);
    }
    static const char *const invalid[] = {
        "", " ", "{", "}", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{1:2}",
        "{\"a\":1 \"b\":2}", "[1 2]", "tru", "nul", "True", "\"abc", "\"\\x\"", "\"\\u12\"",
        "\"\\u12g4\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\ud800x\"", "{\"a\":1]",
        "[1}", "01x",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        int rc = syntax(invalid[i], NULL);
        if (rc != WD_JSON_INVALID)
            fprintf(stderr, "  not refused as invalid (%d): %s\n", rc, invalid[i]);
        CHECK(rc == WD_JSON_INVALID);
    }
    CHECK(syntax("{} x", NULL) == WD_JSON_TRAILING);
    CHECK(syntax("{}{}", NULL) == WD_JSON_TRAILING);
    CHECK(syntax("1 2", NULL) == WD_JSON_TRAILING);

    /* the offending byte */
    size_t at = 0;
    CHECK(wd__json_syntax((const unsigned char *)"{\"a\":1,]", 8, &at, NULL) == WD_JSON_INVALID && at == 7);
    CHECK(wd__json_syntax((const unsigned char *)"{}  x", 5, &at, NULL) == WD_JSON_TRAILING && at == 4);

    /* members of the top-level container, not of nested ones */
    CHECK(syntax("{}", &m) == 0 && m == 0);
    CHECK(syntax("[]", &m) == 0 && m == 0);
    CHECK(syntax("[ ]", &m) == 0 && m == 0);
    CHECK(syntax("[7]", &m) == 0 && m == 1);
    CHECK(syntax("{\"a\":{\"x\":1,\"y\":2},\"b\":[1,2,3],\"c\":\"s\"}", &m) == 0 && m == 3);
    CHECK(syntax("[[1,2],[3],4]", &m) == 0 && m == 3);
    CHECK(syntax("5", &m) == 0 && m == 0);

    /* nesting: WD_JSON_MAX_DEPTH containers are fine, one more is not */
    size_t d = WD_JSON_MAX_DEPTH;
    char *deep = malloc(2 * d + 3);
    memset(deep, '[', d);
    memset(deep + d, ']', d);
    deep[2 * d] = 0;
    CHECK(syntax(deep, NULL) == WD_JSON_OK);
    memset(deep, '[', d + 1);
    memset(deep + d + 1, ']', d + 1);
    deep[2 * d + 2] = 0;
    CHECK(syntax(deep, NULL) == WD_JSON_INVALID);
    free(deep);
}

static void test_lex(void)
{
    size_t at;
    CHECK(wd__json_lex((const unsigned char *)"{\"a\":[1,-2.5e3]}", 16, &at) == NULL);
    CHECK(wd__json_lex((const unsigned char *)"[01]", 4, &at) != NULL && at == 1);
    CHECK(wd__json_lex((const unsigned char *)"\"a\\u0000\"", 9, &at) != NULL && at == 2);
    CHECK(wd__json_lex((const unsigned char *)"\"a\\\\u0000\"", 10, &at) == NULL);
    CHECK(wd__json_lex((const unsigned char *)"\"\xc3\"", 3, &at) != NULL && at == 1);
    CHECK(wd__json_lex((const unsigned char *)"\"\t\"", 3, &at) != NULL && at == 1);
    CHECK(wd__json_lex((const unsigned char *)"[1]\t\r\n", 6, &at) == NULL);
}

static void test_cursor(void)
{
    const char *text = "{ \"k\\u00e9\\ud83d\\ude00\" : [ 1 , \"two\\n\\/\" , {\"x\":[true,false,null]} , -2.5e1 ],"
                       " \"n\" : 12345678901234567890123456789012345678901234567890123456789012345678901e-69 ,"
                       " \"e\":\"\" }";
    size_t at, m;
    CHECK(wd__json_lex((const unsigned char *)text, strlen(text), &at) == NULL);
    CHECK(wd__json_syntax((const unsigned char *)text, strlen(text), &at, &m) == WD_JSON_OK && m == 3);
    wd_json_cur c = {(const unsigned char *)text, strlen(text), 0};
    wd_buf s = {0};
    double v = 0;
    CHECK(wd__json_peek(&c) == '{');
    wd__json_enter(&c);
    CHECK(wd__json_more(&c) == 1);
    CHECK(wd__json_string(&c, &s) == 0 && s.len == 7 && !strcmp((char *)s.data, "k\xc3\xa9\xf0\x9f\x98\x80"));
    CHECK(wd__json_peek(&c) == '[');
    wd__json_enter(&c);
    CHECK(wd__json_more(&c) == 1 && wd__json_number(&c, &v) == 0 && v == 1);
    CHECK(wd__json_more(&c) == 1 && wd__json_string(&c, &s) == 0 && !strcmp((char *)s.data, "two\n/"));
    CHECK(wd__json_more(&c) == 1 && wd__json_peek(&c) == '{');
    wd__json_skip(&c);
    CHECK(wd__json_more(&c) == 1 && wd__json_number(&c, &v) == 0 && v == -25);
    CHECK(wd__json_more(&c) == 0);
    CHECK(wd__json_more(&c) == 1 && wd__json_string(&c, &s) == 0 && !strcmp((char *)s.data, "n"));
    /* a number longer than any fixed buffer is read exactly */
    CHECK(wd__json_number(&c, &v) == 0 && fabs(v - 12.345678901234567) < 1e-12);
    CHECK(wd__json_more(&c) == 1 && wd__json_string(&c, &s) == 0 && !strcmp((char *)s.data, "e"));
    CHECK(wd__json_string(&c, &s) == 0 && s.len == 0 && s.data[0] == 0);
    CHECK(wd__json_more(&c) == 0);
    CHECK(wd__json_peek(&c) == 0);
    wd__buf_free(&s);

    /* skipping a whole document leaves the cursor at its end */
    wd_json_cur all = {(const unsigned char *)text, strlen(text), 0};
    wd__json_skip(&all);
    CHECK(all.pos == strlen(text));
}

int main(void)
{
    test_syntax();
    test_lex();
    test_cursor();
    return tu_finish("test_jsonstrict");
}
