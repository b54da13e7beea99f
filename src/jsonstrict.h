/*
 * jsonstrict.h - the checks cJSON does not make but Python's json does,
 * shared by every parser of untrusted JSON text (safetensors headers,
 * .wdelta headers, shard index files): strict UTF-8, numbers in RFC 8259
 * grammar; and an allocation-free validator plus a cursor that reads
 * validated text in place, so a parser keeps only what it extracts (a
 * tree of a hostile header costs tens of times its size).
 */
#ifndef WD_JSONSTRICT_H
#define WD_JSONSTRICT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Length of the well-formed UTF-8 sequence at s (overlongs, surrogates and
 * code points past U+10FFFF refused) with its code point in *cp, or 0. */
size_t wd__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Copies s into buf (cap >= 8) for a one-line message: control bytes
 * become '?', and a long string is cut at a UTF-8 boundary with "...".
 * Returns buf. */
const char *wd__utf8_shown(char *buf, size_t cap, const char *s);

/* 1 if s[0..n) is entirely well-formed UTF-8. */
int wd__utf8_valid(const unsigned char *s, size_t n);

/* The index just past the JSON number starting at s[i], or 0 if what starts
 * there is not exactly one number ("01", "1.", "+1", "1.5.2" are refused;
 * cJSON would take them). */
size_t wd__json_number_end(const unsigned char *s, size_t i, size_t n);

/* One pass over raw JSON text for what a tokenizer would let through: bytes
 * that are not UTF-8, NUL bytes, raw control characters, malformed numbers,
 * and \u0000 escapes (a NUL inside a name would silently cut it). Returns
 * NULL, or what is wrong (static text completing "the text ...") with *at
 * set to the byte offset. */
const char *wd__json_lex(const unsigned char *s, size_t n, size_t *at);

/* Containers nest at most this deep (cJSON's limit). */
#define WD_JSON_MAX_DEPTH 1000

/* Results of wd__json_syntax. */
enum { WD_JSON_OK = 0, WD_JSON_INVALID = 1, WD_JSON_TRAILING = 2 };

/* Checks, without allocating, that s[0..n) is exactly one JSON value with
 * only whitespace around it: brackets balanced and nested at most
 * WD_JSON_MAX_DEPTH deep, members "string: value" separated by commas,
 * escapes valid (\u surrogates paired), literals spelled right. Assumes
 * wd__json_lex passed (numbers, UTF-8). On failure *at is the offending
 * byte. *root_members (may be NULL) gets the number of members (object) or
 * elements (array) of the top-level value, which lets a parser allocate its
 * result exactly once. */
int wd__json_syntax(const unsigned char *s, size_t n, size_t *at, size_t *root_members);

/* A read position in text that passed wd__json_lex and wd__json_syntax;
 * the functions below rely on that and do not re-check the grammar. */
typedef struct {
    const unsigned char *s;
    size_t n, pos;
} wd_json_cur;

/* The first byte of the next token after whitespace ('{', '[', '"', '-'
 * or a digit, 't', 'f', 'n', or a closing bracket), or 0 at the end. */
int wd__json_peek(wd_json_cur *c);

/* Consumes the '{' or '[' that wd__json_peek showed. */
void wd__json_enter(wd_json_cur *c);

/* Inside a container: 1 if another member/element follows (the separating
 * comma consumed), 0 after consuming the closing bracket. */
int wd__json_more(wd_json_cur *c);

/* Decodes the string at the cursor into out (replacing its contents;
 * NUL-terminated, out->len excludes the NUL) and moves past it, and past a
 * following ':' when it is a member's key. Decoded strings hold no NUL
 * (wd__json_lex refuses \u0000). Fails only for memory (WD_ENOMEM); out
 * grows to at most the string's length in the text. */
int wd__json_string(wd_json_cur *c, wd_buf *out);

/* Reads the number at the cursor as strtod does (exactly, at any length;
 * out of range gives +-HUGE_VAL). Fails only for memory. */
int wd__json_number(wd_json_cur *c, double *out);

/* Moves past the value at the cursor, whatever it is. */
void wd__json_skip(wd_json_cur *c);

#endif
