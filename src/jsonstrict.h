/*
 * jsonstrict.h - the checks cJSON does not make but Python's json does,
 * shared by every parser of untrusted JSON text (safetensors headers,
 * .wdelta headers): strict UTF-8, and numbers in RFC 8259 grammar.
 */
#ifndef WD_JSONSTRICT_H
#define WD_JSONSTRICT_H

#include <stddef.h>
#include <stdint.h>

/* Length of the well-formed UTF-8 sequence at s (overlongs, surrogates and
 * code points past U+10FFFF refused) with its code point in *cp, or 0. */
size_t wd__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* 1 if s[0..n) is entirely well-formed UTF-8. */
int wd__utf8_valid(const unsigned char *s, size_t n);

/* The index just past the JSON number starting at s[i], or 0 if what starts
 * there is not exactly one number ("01", "1.", "+1", "1.5.2" are refused;
 * cJSON would take them). */
size_t wd__json_number_end(const unsigned char *s, size_t i, size_t n);

#endif
