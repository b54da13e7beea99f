/*
 * test_safetensors.c - the safetensors reader against the fixture files and
 * hostile headers built in memory, and the header writer against files that
 * deltatensors wrote (byte for byte).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "testutil.h"

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A file image: prefix, header bytes as given (hlen of them, so NUL bytes
 * can be included), then data_len zero bytes. */
static unsigned char *image_n(const char *hdr, size_t hlen, size_t data_len, size_t *len)
{
    *len = 8 + hlen + data_len;
    unsigned char *img = calloc(1, *len);
    put_le64(img, hlen);
    memcpy(img + 8, hdr, hlen);
    return img;
}

static int parse_json_n(wd_st_file **out, const char *hdr, size_t hlen, size_t data_len)
{
    size_t len;
    unsigned char *img = image_n(hdr, hlen, data_len, &len);
    int rc = wd__st_parse(out, img, len, len);
    free(img);
    return rc;
}

static int parse_json(wd_st_file **out, const char *hdr, size_t data_len)
{
    return parse_json_n(out, hdr, strlen(hdr), data_len);
}

/* The message is one line naming <memory> and containing want. */
static int msg_has(const char *want)
{
    const char *m = wd_errmsg();
    int ok = strncmp(m, "'<memory>': ", 12) == 0 && !strchr(m, '\n') && strstr(m, want);
    if (!ok)
        fprintf(stderr, "  message was: %s\n  wanted: %s\n", m, want);
    return ok;
}

#define REJECT_N(hdr, hlen, data_len, want)                                             \
    do {                                                                               \
        wd_st_file *rf_ = (wd_st_file *)1;                                             \
        CHECK_RC(parse_json_n(&rf_, hdr, hlen, data_len), WD_EBADINPUT);               \
        CHECK(rf_ == NULL);                                                            \
        CHECK(msg_has(want));                                                          \
    } while (0)
#define REJECT(hdr, data_len, want) REJECT_N(hdr, strlen(hdr), data_len, want)

#define T_(name, dt, shape, b, e)                                                      \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_hostile(void)
{
    wd_st_file *f = NULL;
    size_t len;
    unsigned char *img;

    /* the length prefix */
    img = image_n("{}", 2, 0, &len);
    CHECK_RC(wd__st_parse(&f, img, 5, 5), WD_EBADINPUT);
    CHECK(msg_has("too short"));
    put_le64(img, UINT64_MAX);
    CHECK_RC(wd__st_parse(&f, img, len, len), WD_EBADINPUT);
    CHECK(msg_has("exceeds the limit"));
    put_le64(img, (uint64_t)WD_ST_MAX_HEADER + 1);
    CHECK_RC(wd__st_parse(&f, img, len, len), WD_EBADINPUT);
    CHECK(msg_has("exceeds the limit"));
    put_le64(img, 3);
    CHECK_RC(wd__st_parse(&f, img, len, len), WD_EBADINPUT);
    CHECK(msg_has("header length 3 runs past the end of the file (10 bytes)"));
    put_le64(img, 2);
    CHECK_RC(wd__st_parse(&f, img, len, len), WD_OK);
    CHECK(f && f->n_tensors == 0 && f->metadata_json == NULL && f->data_start == 10);
    wd__st_close(f);
    /* caller errors, not file errors */
    CHECK_RC(wd__st_parse(&f, img, len - 1, len), WD_EUSAGE);
    CHECK_RC(wd__st_parse(&f, img, len + 1, len), WD_EUSAGE);
    free(img);

    /* not JSON, not an object */
    REJECT("", 0, "header is empty");
    REJECT("not json", 0, "does not start with '{'");
    REJECT("[1,2]", 0, "does not start with '{'");
    REJECT(" {}", 0, "does not start with '{'");
    REJECT("\xef\xbb\xbf{}", 0, "does not start with '{'");
    REJECT("{hello}", 0, "not valid JSON");
    REJECT("{\"a\":", 0, "not valid JSON");
    REJECT("{} x", 0, "unexpected text after");
    REJECT("{}{}", 0, "unexpected text after");
    REJECT_N("{}\0 ", 4, 0, "NUL byte");
    REJECT("{\"a\x01\":1}", 0, "control character");
    REJECT("{\"\xc3\x28\":1}", 0, "not valid UTF-8");
    REJECT("{\"\xed\xa0\x80\":1}", 0, "not valid UTF-8"); /* raw surrogate */
    REJECT("{\"\xc0\xaf\":1}", 0, "not valid UTF-8");     /* overlong */
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4,
           "malformed number");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.],\"data_offsets\":[0,4]}}", 4,
           "malformed number");
    REJECT("{\"\\ud800\":1}", 0, "not valid JSON"); /* lone surrogate escape */

    /* spaces, tabs and newlines after the object are padding */
    CHECK_RC(parse_json(&f, "{\"a\":" "{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}} \t\n\r  ", 2),
             WD_OK);
    CHECK(f && f->n_tensors == 1 && f->header_len == 59);
    wd__st_close(f);

    /* entries */
    REJECT("{\"a\":5}", 0, "tensor 'a' is not a JSON object");
    REJECT("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no \"dtype\"");
    REJECT("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not a string");
    REJECT("{" T_("a", "F33", "[1]", 0, 4) "}", 4, "tensor 'a' has unknown dtype 'F33'");
    REJECT("{" T_("a", "f32", "[1]", 0, 4) "}", 4, "unknown dtype 'f32'");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
           "more than one \"dtype\"");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "has no \"shape\"");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4,
           "\"shape\" is not an array");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "no \"data_offsets\"");
    REJECT("{" T_("a", "F32", "[-1]", 0, 4) "}", 4, "shape[0] is negative");
    REJECT("{" T_("a", "F32", "[-0]", 0, 0) "}", 0, "shape[0] is negative");
    REJECT("{" T_("a", "F32", "[1.5]", 0, 4) "}", 4, "shape[0] is not an integer");
    REJECT("{" T_("a", "F32", "[1,\"2\"]", 0, 4) "}", 4, "shape[1] is not a number");
    REJECT("{" T_("a", "U8", "[1152921504606846976]", 0, 4) "}", 4, "shape[0] is too large");
    REJECT("{" T_("a", "U8", "[9007199254740993]", 0, 4) "}", 4, "shape[0] is too large");
    REJECT("{" T_("a", "U8", "[1e400]", 0, 4) "}", 4, "shape[0] is too large");
    REJECT("{" T_("a", "U8", "[4]", 0, 9007199254740992) "}", 4, "data_offsets[1] is too large");
    REJECT("{" T_("a", "U8", "[4]", 0.5, 4) "}", 4, "data_offsets[0] is not an integer");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
           "not an array of two integers");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
           "not an array of two integers");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4,
           "not an array of two integers");
    REJECT("{" T_("a", "F32", "[1]", 4, 0) "}", 4, "data_offsets [4,0] end before they begin");
    REJECT("{" T_("a", "F32", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4,
           "more than 16 dimensions");
    REJECT("{" T_("a", "F32", "[4294967296,4294967296]", 0, 4) "}", 4, "larger than 2^64 bytes");
    REJECT("{" T_("a", "U8", "[4294967296,4294967296]", 0, 4) "}", 4, "larger than 2^64 bytes");
    REJECT("{" T_("a", "F32", "[2,4]", 0, 24) "}", 24,
           "tensor 'a' needs 32 bytes (F32 [2,4]) but data_offsets span 24");
    REJECT("{" T_("a", "F32", "[2]", 0, 8) "}", 4, "run past the end of the file");

    /* 16 dims are fine; a zero dimension makes a tensor empty however large
     * the others are */
    CHECK_RC(parse_json(&f, "{" T_("a", "U8", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,3]", 0, 3) "}", 3),
             WD_OK);
    CHECK(f && f->tensors[0].ndim == 16 && f->tensors[0].nelem == 3);
    wd__st_close(f);
    CHECK_RC(parse_json(&f, "{" T_("a", "F64", "[0,4503599627370496,4503599627370496]", 0, 0) "}",
                        0),
             WD_OK);
    CHECK(f && f->tensors[0].nelem == 0 && f->tensors[0].nbytes == 0);
    wd__st_close(f);
    /* exact integers written with an exponent are accepted */
    CHECK_RC(parse_json(&f, "{" T_("a", "U8", "[2e0]", 0, 2) "}", 2), WD_OK);
    wd__st_close(f);

    /* names */
    REJECT("{" T_("", "U8", "[1]", 0, 1) "}", 1, "empty name");
    REJECT("{" T_("a\\u0000b", "U8", "[1]", 0, 1) "}", 1, "escaped NUL");
    static const char nul_name[] = "{" T_("a\0b", "U8", "[1]", 0, 1) "}";
    REJECT_N(nul_name, sizeof nul_name - 1, 1, "NUL byte");
    REJECT("{" T_("a", "U8", "[1]", 0, 1) "," T_("a", "U8", "[1]", 1, 2) "}", 2,
           "tensor name 'a' appears more than once");
    REJECT("{" T_("\\u00eb", "U8", "[1]", 0, 1) "," T_("\xc3\xab", "U8", "[1]", 1, 2) "}", 2,
           "tensor name '\xc3\xab' appears more than once");
    REJECT("{" T_("x\\u0041", "U8", "[1]", 0, 1) "," T_("xA", "U8", "[1]", 1, 2) "}", 2,
           "appears more than once");
    /* a name written \\u0000 is a backslash and "u0000", not NUL */
    CHECK_RC(parse_json(&f, "{" T_("a\\\\u0000", "U8", "[1]", 0, 1) "}", 1), WD_OK);
    CHECK(f && strcmp(f->tensors[0].name, "a\\u0000") == 0);
    wd__st_close(f);
    /* control characters in names make a one-line message all the same */
    REJECT("{" T_("a\\nb", "F33", "[1]", 0, 1) "}", 1, "tensor 'a?b' has unknown dtype");

    /* __metadata__ */
    REJECT("{\"__metadata__\":{\"x\":1}}", 0, "__metadata__ entry 'x' is not a string");
    REJECT("{\"__metadata__\":{\"x\":null}}", 0, "__metadata__ entry 'x' is not a string");
    REJECT("{\"__metadata__\":[]}", 0, "__metadata__ is not a JSON object");
    REJECT("{\"__metadata__\":\"pt\"}", 0, "__metadata__ is not a JSON object");
    REJECT("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "more than one \"__metadata__\"");
    REJECT("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "'k' is a duplicate key");
    REJECT("{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, "escaped NUL");
    CHECK_RC(parse_json(&f, "{\"__metadata__\":{ \"k\" : \"\xc3\xab\\\"\", \"z\":\"\"}}", 0), WD_OK);
    CHECK(f && f->metadata_json && strcmp(f->metadata_json, "{\"k\":\"\\u00eb\\\"\",\"z\":\"\"}") == 0);
    wd__st_close(f);
    CHECK_RC(parse_json(&f, "{\"__metadata__\":{}}", 0), WD_OK);
    CHECK(f && f->metadata_json && strcmp(f->metadata_json, "{}") == 0);
    wd__st_close(f);
    /* the metadata key is recognised after decoding */
    CHECK_RC(parse_json(&f, "{\"\\u005f_metadata__\":{\"format\":\"pt\"}}", 0), WD_OK);
    CHECK(f && f->n_tensors == 0 && f->metadata_json);
    wd__st_close(f);

    /* layout of the data section */
    REJECT("{" T_("a", "F32", "[1]", 0, 4) "," T_("b", "F32", "[1]", 8, 12) "}", 12,
           "4 unused bytes in the data section between tensor 'a' (ends at 4) and tensor 'b' "
           "(begins at 8)");
    REJECT("{" T_("a", "F32", "[1]", 4, 8) "}", 8,
           "4 unused bytes at the start of the data section, before tensor 'a'");
    REJECT("{" T_("a", "F32", "[1]", 0, 4) "}", 8,
           "4 trailing bytes after the last tensor 'a' (its data ends at 4, the data section "
           "holds 8)");
    REJECT("{}", 3, "the data section holds 3 bytes but the header lists no tensors");
    REJECT("{" T_("a", "F32", "[2]", 0, 8) "," T_("b", "F32", "[1]", 4, 8) "}", 8,
           "tensors 'a' [0,8) and 'b' [4,8) overlap");
    REJECT("{" T_("b", "F32", "[1]", 0, 4) "," T_("a", "F32", "[1]", 0, 4) "}", 4,
           "tensors 'b' [0,4) and 'a' [0,4) overlap");
    /* an empty tensor inside another's bytes is misplaced too */
    REJECT("{" T_("a", "F32", "[2]", 0, 8) "," T_("e", "F32", "[0]", 4, 4) "}", 8,
           "tensors 'a' [0,8) and 'e' [4,4) overlap");

    /* data order: by offset, empty tensors before the one starting at the
     * same offset, header order among equals */
    CHECK_RC(parse_json(&f,
                        "{" T_("c", "F32", "[1]", 4, 8) "," T_("b", "F32", "[1]", 0, 4) "," T_(
                            "e2", "I8", "[0,5]", 4, 4) "," T_("e1", "BOOL", "[0]", 4, 4) "," T_("z", "U8", "[0]", 8, 8) "}",
                        8),
             WD_OK);
    if (f && f->n_tensors == 5) {
        CHECK(strcmp(f->tensors[0].name, "b") == 0);
        CHECK(strcmp(f->tensors[1].name, "e2") == 0);
        CHECK(strcmp(f->tensors[2].name, "e1") == 0);
        CHECK(strcmp(f->tensors[3].name, "c") == 0);
        CHECK(strcmp(f->tensors[4].name, "z") == 0);
        CHECK(wd__st_find(f, "e1") == 2);
        CHECK(wd__st_find(f, "nope") == -1);
        CHECK(f->tensors[1].dtype == WD_DT_I8 && f->tensors[1].ndim == 2 && f->tensors[1].shape[1] == 5);
        /* no file behind a memory parse */
        unsigned char b4[4];
        CHECK_RC(wd__st_read(f, &f->tensors[0], 0, b4, 4), WD_EUSAGE);
    } else {
        CHECK(0);
    }
    wd__st_close(f);

    /* unknown keys inside an entry are ignored, as the reference reader does */
    CHECK_RC(parse_json(&f,
                        "{\"a\":{\"dtype\":\"BF16\",\"extra\":[1,{}],\"shape\":[],\"data_offsets\":[0,2]}}",
                        2),
             WD_OK);
    CHECK(f && f->n_tensors == 1 && f->tensors[0].ndim == 0 && f->tensors[0].nelem == 1 &&
          f->tensors[0].nbytes == 2);
    wd__st_close(f);

    /* escaped and raw UTF-8 decode to the same name; astral characters too */
    CHECK_RC(parse_json(&f, "{" T_("\\u00eb\\ud83d\\ude00", "U8", "[1]", 0, 1) "}", 1), WD_OK);
    CHECK(f && strcmp(f->tensors[0].name, "\xc3\xab\xf0\x9f\x98\x80") == 0);
    wd__st_close(f);
}

static void test_builder(void)
{
    char *h = NULL;
    size_t hl = 0;
    const uint64_t s2[] = {2}, s03[] = {0, 3};
    wd_st_spec specs[] = {
        {"a", WD_DT_F32, 1, s2},
        {"\xc3\xab", WD_DT_BF16, 0, NULL},
        {"q\"\\\n\x01\x7f\xf0\x9f\x98\x80\xe2\x80\xa8z", WD_DT_U8, 2, s03},
    };
    /* what Python's json.dumps(..., separators=(',', ':')) prints */
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]},\"\\u00eb\":{\"dtype\":\"BF16\",\"shape\":[],"
                       "\"data_offsets\":[8,10]},\"q\\\"\\\\\\n\\u0001\\u007f\\ud83d\\ude00\\u2028z\":"
                       "{\"dtype\":\"U8\",\"shape\":[0,3],\"data_offsets\":[10,10]}}";
    CHECK_RC(wd__st_header_build(&h, &hl, specs, 3, NULL), WD_OK);
    size_t wl = strlen(want);
    CHECK(h && hl % 8 == 0 && hl >= wl && hl < wl + 8 && memcmp(h, want, wl) == 0);
    for (size_t i = wl; h && i < hl; i++)
        CHECK(h[i] == ' ');
    CHECK(h && h[hl] == '\0');

    /* and it reads back */
    wd_st_file *f = NULL;
    if (h) {
        CHECK_RC(parse_json_n(&f, h, hl, 10), WD_OK);
        CHECK(f && f->n_tensors == 3 && strcmp(f->tensors[2].name, specs[2].name) == 0);
        CHECK(f && strcmp(f->metadata_json, "{\"format\":\"pt\"}") == 0);
        wd__st_close(f);
    }
    free(h);

    /* no tensors; metadata passed through as given */
    CHECK_RC(wd__st_header_build(&h, &hl, NULL, 0, "{\"a\":\"b\"}"), WD_OK);
    CHECK(h && hl == 32 && memcmp(h, "{\"__metadata__\":{\"a\":\"b\"}}      ", 32) == 0);
    free(h);

    /* refusals: what the reader would refuse */
    wd_st_spec dup[] = {{"x", WD_DT_U8, 0, NULL}, {"y", WD_DT_U8, 0, NULL}, {"x", WD_DT_U8, 0, NULL}};
    CHECK_RC(wd__st_header_build(&h, &hl, dup, 3, NULL), WD_EUSAGE);
    CHECK(h == NULL);
    wd_st_spec empty[] = {{"", WD_DT_U8, 0, NULL}};
    CHECK_RC(wd__st_header_build(&h, &hl, empty, 1, NULL), WD_EUSAGE);
    wd_st_spec meta[] = {{"__metadata__", WD_DT_U8, 0, NULL}};
    CHECK_RC(wd__st_header_build(&h, &hl, meta, 1, NULL), WD_EUSAGE);
    wd_st_spec badutf[] = {{"\xc3", WD_DT_U8, 0, NULL}};
    CHECK_RC(wd__st_header_build(&h, &hl, badutf, 1, NULL), WD_EUSAGE);
    const uint64_t s17[17] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    wd_st_spec deep[] = {{"d", WD_DT_U8, 17, s17}};
    CHECK_RC(wd__st_header_build(&h, &hl, deep, 1, NULL), WD_EUSAGE);
    const uint64_t huge[] = {4294967296u, 4294967296u};
    wd_st_spec big[] = {{"h", WD_DT_U8, 2, huge}};
    CHECK_RC(wd__st_header_build(&h, &hl, big, 1, NULL), WD_EUSAGE);
    wd_st_spec baddt[] = {{"b", WD_DT__COUNT, 0, NULL}};
    CHECK_RC(wd__st_header_build(&h, &hl, baddt, 1, NULL), WD_EUSAGE);
    CHECK_RC(wd__st_header_build(&h, &hl, NULL, 0, "{\"a\":1}"), WD_EUSAGE);
    CHECK_RC(wd__st_header_build(&h, &hl, NULL, 0, "{\"a\":\"b\"} x"), WD_EUSAGE);
    CHECK_RC(wd__st_header_build(&h, &hl, NULL, 0, "[]"), WD_EUSAGE);
    CHECK_RC(wd__st_header_build(&h, &hl, NULL, 0, "{\"a\":\"\\u0000\"}"), WD_EUSAGE);
    CHECK(h == NULL);
}

/* Checks a fixture file: data order tiles the data section, the header
 * rebuilt from the parsed tensors is the original (when the original spells
 * names with escapes, as deltatensors does) or at least reads back the same,
 * and prefix + header + data read tensor by tensor is the file. */
static void check_file(const char *path, size_t want_tensors)
{
    wd_st_file *f = NULL;
    CHECK_RC(wd__st_open(&f, path), WD_OK);
    if (!f)
        return;
    if (want_tensors)
        CHECK(f->n_tensors == want_tensors);
    CHECK(f->metadata_json != NULL);

    uint64_t pos = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        CHECK(f->tensors[i].begin == pos);
        pos = f->tensors[i].end;
    }
    CHECK(pos == f->file_size - f->data_start);

    wd_st_spec *specs = calloc(f->n_tensors + 1, sizeof *specs);
    for (size_t i = 0; i < f->n_tensors; i++)
        specs[i] = (wd_st_spec){f->tensors[i].name, f->tensors[i].dtype, f->tensors[i].ndim,
                                f->tensors[i].shape};
    char *h = NULL;
    size_t hl = 0;
    CHECK_RC(wd__st_header_build(&h, &hl, specs, f->n_tensors, f->metadata_json), WD_OK);
    int ascii = 1;
    for (uint64_t i = 0; i < f->header_len; i++)
        if ((unsigned char)f->header[i] >= 0x80)
            ascii = 0;
    if (ascii) {
        if (!(h && hl == f->header_len && memcmp(h, f->header, hl) == 0))
            fprintf(stderr, "  rebuilt header differs: %s\n", path);
        CHECK(h && hl == f->header_len && memcmp(h, f->header, hl) == 0);
    } else if (h) {
        CHECK(strstr(h, "\\u00eb") != NULL);
        wd_st_file *g = NULL;
        CHECK_RC(parse_json_n(&g, h, hl, (size_t)(f->file_size - f->data_start)), WD_OK);
        CHECK(g && g->n_tensors == f->n_tensors);
        for (size_t i = 0; g && i < g->n_tensors && i < f->n_tensors; i++) {
            const wd_st_tensor *a = &f->tensors[i], *b = &g->tensors[i];
            CHECK(strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->ndim == b->ndim &&
                  memcmp(a->shape, b->shape, sizeof a->shape) == 0 && a->begin == b->begin &&
                  a->end == b->end);
        }
        wd__st_close(g);
    }
    free(h);
    free(specs);

    size_t flen = 0;
    unsigned char *file = slurp(path, &flen);
    unsigned char *re = malloc(flen ? flen : 1);
    CHECK(file && flen == f->file_size);
    if (file && re && flen == f->file_size) {
        put_le64(re, f->header_len);
        memcpy(re + 8, f->header, f->header_len);
        size_t at = (size_t)f->data_start;
        for (size_t i = 0; i < f->n_tensors; i++) {
            const wd_st_tensor *t = &f->tensors[i];
            /* in two pieces, to exercise offsets within a tensor */
            size_t half = (size_t)t->nbytes / 2;
            CHECK_RC(wd__st_read(f, t, 0, re + at, half), WD_OK);
            CHECK_RC(wd__st_read(f, t, half, re + at + half, (size_t)t->nbytes - half), WD_OK);
            at += (size_t)t->nbytes;
        }
        CHECK(at == flen && memcmp(re, file, flen) == 0);
    }
    free(re);
    free(file);
    wd__st_close(f);
}

static const wd_st_tensor *find(const wd_st_file *f, const char *name)
{
    long i = wd__st_find(f, name);
    return i < 0 ? NULL : &f->tensors[i];
}

static void test_models(void)
{
    static const struct {
        const char *file;
        size_t n;
    } files[] = {
        {"models/base-bf16/model-00001-of-00002.safetensors", 7},
        {"models/base-bf16/model-00002-of-00002.safetensors", 6},
        {"models/base-f32/model.safetensors", 13},
        {"models/ft-bf16/model-00001-of-00003.safetensors", 5},
        {"models/ft-bf16/model-00002-of-00003.safetensors", 5},
        {"models/ft-bf16/model-00003-of-00003.safetensors", 3},
        {"models/ft-f32/model.safetensors", 13},
        {"models/ft2-bf16/model.safetensors", 13},
        {"expected/sparse-v2-folder/model.safetensors", 13},
        {"expected/int4-v2-folder/model.safetensors", 13},
        {"expected/chain-1-v2.f32.safetensors", 12},
        {"expected/chain-2-v2.f32.safetensors", 12},
        {"expected/int4-f32-mem-v1.f32.safetensors", 10},
        {"expected/int4-f32-mem-v2.f32.safetensors", 13},
        {"expected/int4-o05-v2.f32.safetensors", 12},
        {"expected/int4-v1.f32.safetensors", 10},
        {"expected/int4-v2.f32.safetensors", 12},
        {"expected/quantized-v1.f32.safetensors", 12},
        {"expected/quantized-v2.f32.safetensors", 11},
        {"expected/sparse-s05-v2.f32.safetensors", 12},
        {"expected/sparse-v1.f32.safetensors", 13},
        {"expected/sparse-v2.f32.safetensors", 12},
    };
    char path[1400];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tu_fixtures(), files[i].file);
        check_file(path, files[i].n);
    }

    /* every shard of every model folder reads, whatever the list above says */
    snprintf(path, sizeof path, "%s/models", tu_fixtures());
    DIR *models = opendir(path);
    CHECK(models != NULL);
    int n_shards = 0;
    struct dirent *m;
    while (models && (m = readdir(models))) {
        if (m->d_name[0] == '.')
            continue;
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/models/%s", tu_fixtures(), m->d_name);
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 12 || strcmp(e->d_name + l - 12, ".safetensors") != 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            wd_st_file *f = NULL;
            CHECK_RC(wd__st_open(&f, path), WD_OK);
            CHECK(f && f->n_tensors > 0);
            wd__st_close(f);
            n_shards++;
        }
        if (d)
            closedir(d);
    }
    if (models)
        closedir(models);
    CHECK(n_shards == 8);

    /* names: raw UTF-8 in base-bf16, \u00eb in ft-bf16, the same after decoding */
    const char *embed = "model.\xc3\xab" "mbed.weight";
    wd_st_file *raw = NULL, *esc = NULL, *sh2 = NULL;
    snprintf(path, sizeof path, "%s/models/base-bf16/model-00001-of-00002.safetensors",
             tu_fixtures());
    CHECK_RC(wd__st_open(&raw, path), WD_OK);
    snprintf(path, sizeof path, "%s/models/ft-bf16/model-00001-of-00003.safetensors", tu_fixtures());
    CHECK_RC(wd__st_open(&esc, path), WD_OK);
    snprintf(path, sizeof path, "%s/models/base-bf16/model-00002-of-00002.safetensors",
             tu_fixtures());
    CHECK_RC(wd__st_open(&sh2, path), WD_OK);
    if (raw && esc && sh2) {
        CHECK(memmem(raw->header, raw->header_len, "\xc3\xab", 2) != NULL);
        CHECK(memmem(esc->header, esc->header_len, "\\u00eb", 6) != NULL);
        const wd_st_tensor *a = find(raw, embed), *b = find(esc, embed);
        CHECK(a && b && a->dtype == WD_DT_BF16 && b->dtype == WD_DT_BF16 && a->ndim == 2 &&
              a->shape[0] == 29 && a->shape[1] == 24 && a->nbytes == 29 * 24 * 2 &&
              b->nbytes == a->nbytes);
        /* the 0-d scalar */
        const wd_st_tensor *s = find(raw, "lm_head.scale");
        CHECK(s && s->ndim == 0 && s->nelem == 1 && s->nbytes == 2 && s->begin == 0 && s->end == 2);
        /* the empty tensor, at the same offset as k_proj and listed before it */
        const wd_st_tensor *e = find(raw, "model.layers.1.attn.bias");
        long ei = wd__st_find(raw, "model.layers.1.attn.bias");
        long ki = wd__st_find(raw, "model.layers.10.attn.k_proj.weight");
        CHECK(e && e->ndim == 1 && e->shape[0] == 0 && e->nelem == 0 && e->begin == 1922 &&
              e->end == 1922 && ei >= 0 && ki == ei + 1 && raw->tensors[ki].begin == 1922);
        /* I64 */
        const wd_st_tensor *p = find(sh2, "model.position_ids");
        CHECK(p && p->dtype == WD_DT_I64 && p->ndim == 2 && p->shape[0] == 1 && p->shape[1] == 64 &&
              p->nbytes == 512 && p->begin == 0);
        if (p) {
            int64_t ids[64];
            CHECK_RC(wd__st_read(sh2, p, 0, ids, sizeof ids), WD_OK);
            int seq = 1;
            for (int i = 0; i < 64; i++)
                seq &= ids[i] == i;
            CHECK(seq);
            /* reads stay inside the tensor */
            CHECK_RC(wd__st_read(sh2, p, 0, ids, 513), WD_EUSAGE);
            CHECK_RC(wd__st_read(sh2, p, 513, ids, 0), WD_EUSAGE);
            CHECK_RC(wd__st_read(sh2, p, 512, ids, 0), WD_OK);
            CHECK_RC(wd__st_read(sh2, p, 500, ids, 13), WD_EUSAGE);
            CHECK_RC(wd__st_read(sh2, p, UINT64_MAX, ids, 2), WD_EUSAGE);
        }
        CHECK(raw->metadata_json && strcmp(raw->metadata_json, "{\"format\":\"pt\"}") == 0);
    }
    wd__st_close(raw);
    wd__st_close(esc);
    wd__st_close(sh2);
}

static void test_bad_dir(void)
{
    char dir[1024], path[1300];
    snprintf(dir, sizeof dir, "%s/bad", tu_fixtures());
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int n = 0, valid = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "st-", 3) != 0 || l < 12 ||
            strcmp(e->d_name + l - 12, ".safetensors") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        n++;
        wd_st_file *f = NULL;
        if (strcmp(e->d_name, "st-valid.safetensors") == 0) {
            valid = 1;
            CHECK_RC(wd__st_open(&f, path), WD_OK);
            if (!f)
                continue;
            CHECK(f->n_tensors == 3 && f->file_size == 264 && f->header_len == 200);
            static const char *names[] = {"a", "b", "c"};
            static const uint64_t b[] = {0, 24, 40}, en[] = {24, 40, 56};
            for (size_t i = 0; i < 3 && i < f->n_tensors; i++) {
                const wd_st_tensor *t = &f->tensors[i];
                CHECK(strcmp(t->name, names[i]) == 0 && t->dtype == WD_DT_F32 &&
                      t->begin == b[i] && t->end == en[i]);
            }
            CHECK(f->tensors[0].ndim == 2 && f->tensors[0].shape[0] == 2 && f->tensors[0].shape[1] == 3);
            CHECK(f->tensors[1].ndim == 1 && f->tensors[1].shape[0] == 4);
            float v[4];
            CHECK_RC(wd__st_read(f, &f->tensors[1], 0, v, sizeof v), WD_OK);
            CHECK(v[0] == 1.5f && v[1] == -2.0f && v[2] == 0.25f && v[3] == 8.0f);
            wd__st_close(f);
            check_file(path, 3);
            continue;
        }
        f = (wd_st_file *)1;
        CHECK_RC(wd__st_open(&f, path), WD_EBADINPUT);
        CHECK(f == NULL);
        const char *m = wd_errmsg();
        char quoted[1400];
        snprintf(quoted, sizeof quoted, "'%s': ", path);
        CHECK(strncmp(m, quoted, strlen(quoted)) == 0 && !strchr(m, '\n'));
        if (strcmp(e->d_name, "st-size-mismatch.safetensors") == 0) {
            char want[1500];
            snprintf(want, sizeof want,
                     "'%s': tensor 'a' needs 32 bytes (F32 [2,4]) but data_offsets span 24", path);
            CHECK(strcmp(m, want) == 0);
        } else if (strcmp(e->d_name, "st-overlapping-offsets.safetensors") == 0) {
            CHECK(strstr(m, "tensors 'a' [0,24) and 'b' [16,32) overlap") != NULL);
        } else if (strcmp(e->d_name, "st-header-len-too-big.safetensors") == 0) {
            CHECK(strstr(m, "header length 264 runs past the end of the file (264 bytes)") != NULL);
        }
    }
    if (d)
        closedir(d);
    CHECK(n >= 4 && valid);

    /* open errors */
    wd_st_file *f = NULL;
    snprintf(path, sizeof path, "%s/no-such-file.safetensors", dir);
    CHECK_RC(wd__st_open(&f, path), WD_EIO);
    CHECK(strstr(wd_errmsg(), "no-such-file") != NULL);
    CHECK_RC(wd__st_open(&f, dir), WD_EBADINPUT);
    CHECK(strstr(wd_errmsg(), "not a regular file") != NULL);
    CHECK(f == NULL);
    /* a FIFO is refused rather than waited on */
    char tmp[] = "/tmp/wd-test-st-XXXXXX";
    if (mkdtemp(tmp)) {
        snprintf(path, sizeof path, "%s/fifo.safetensors", tmp);
        CHECK(mkfifo(path, 0600) == 0);
        CHECK_RC(wd__st_open(&f, path), WD_EBADINPUT);
        CHECK(strstr(wd_errmsg(), "not a regular file") != NULL);
        unlink(path);
        rmdir(tmp);
    }
}

int main(void)
{
    test_hostile();
    test_builder();
    test_bad_dir();
    test_models();
    return tu_finish("test_safetensors");
}
