/*
 * json.h: the two pieces of JSON text the relay writes (the status API in core/status.c, the
 * json log format in util/log.c): a string literal and an RFC 3339 time. No parser: the relay
 * never reads JSON.
 */
#ifndef RELAY_UTIL_JSON_H
#define RELAY_UTIL_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Writes s[0..n) to f as a JSON string literal, quotes included: '"', '\' and the control
 * characters escaped ("\n", "\u001b", ...), '<', '>' and '&' as \u003c.. (the text is safe to
 * paste into HTML), U+2028/U+2029 escaped, and every byte that is not part of valid UTF-8 (an
 * overlong form, a surrogate, a truncated sequence) replaced by U+FFFD. s may hold NULs (written
 * as \u0000). Never fails on its own (f's error flag says whether the writes did). */
void relay_json_string(FILE *f, const char *s, size_t n);
/* The same for a NUL-terminated s; NULL is written as null. */
void relay_json_cstr(FILE *f, const char *s);

/* "2026-12-06T17:00:00.123Z": RFC 3339, UTC, milliseconds, from milliseconds since the epoch,
 * into out (cap >= RELAY_JSON_TIME_LEN). Times before 1970 or past 9999 are clamped. */
#define RELAY_JSON_TIME_LEN 25
void relay_json_time(char *out, size_t cap, int64_t wall_ms);

#endif
