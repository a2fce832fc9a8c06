/*
 * Helpers shared by the mqttcodec unit tests: error names, hex input, guard pages (an over-read
 * faults), property block building and field-by-field packet comparison.
 *
 * Every assertion helper fails the running cmocka test (with file and line of the caller) and
 * names what differed; none of them can pass by accident on a NULL or empty input.
 */
#ifndef MQC_TESTUTIL_H
#define MQC_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "mqttcodec.h"

/* "MQC_OK", "MQC_AGAIN", "MQC_EMALFORMED", ...; NULL for a value that is not an mqc_err. */
const char *mqt_err_name(int err);
/* Parses "OK" or "MQC_xxx" into *err: 0, or -1 if the name is unknown. */
int mqt_err_parse(const char *name, int *err);

/* assert_err(expr, MQC_EXXX): exact comparison of a codec return value, printed by name. */
#define assert_err(got, want) mqt_assert_err((got), (want), #got, __FILE__, __LINE__)
void mqt_assert_err(int got, int want, const char *expr, const char *file, int line);

/* Hex text ("10 0c 00 04", whitespace anywhere, upper or lower case) to bytes: 0 and *n set,
 * or -1 on an odd digit count, a non-hex character or more than cap bytes. */
int mqt_hex_parse(const char *hex, uint8_t *out, size_t cap, size_t *n);
/* The same, failing the test on bad input; returns the byte count. */
#define mqt_hex(hex, out, cap) mqt_hex_at((hex), (out), (cap), __FILE__, __LINE__)
size_t mqt_hex_at(const char *hex, uint8_t *out, size_t cap, const char *file, int line);

/* A copy of some bytes whose last byte is the last byte of a mapped page, followed by a
 * PROT_NONE page: reading one byte past the end faults. Start with {0}; each put replaces the
 * previous copy; free releases it. A zero-length put returns a pointer into the guard page. */
struct mqt_guard {
    uint8_t *map;
    size_t maplen;
};
const uint8_t *mqt_guard_put(struct mqt_guard *g, const uint8_t *data, size_t len);
void mqt_guard_free(struct mqt_guard *g);

/* A borrowed view of a C string (without its NUL). */
struct mqc_bytes mqt_s(const char *s);

/* Property block builder on top of mqc_prop_put(); fails the test if a put fails. */
struct mqt_props {
    uint8_t buf[4096];
    size_t len;
};
void mqt_pb_num(struct mqt_props *b, uint8_t id, uint32_t v);
void mqt_pb_str(struct mqt_props *b, uint8_t id, const char *s);
void mqt_pb_bin(struct mqt_props *b, uint8_t id, const void *p, size_t n);
void mqt_pb_pair(struct mqt_props *b, const char *name, const char *value);
struct mqc_props mqt_pb(const struct mqt_props *b);

/* Field-by-field equality of two packets of the given version (property blocks and byte
 * strings compared by content; decoded SUBSCRIBE/UNSUBSCRIBE walked entry by entry). */
#define assert_packet_eq(want, got, version)                                                       \
    mqt_assert_packet_eq((want), (got), (version), __FILE__, __LINE__)
void mqt_assert_packet_eq(const struct mqc_packet *want, const struct mqc_packet *got,
                          uint8_t version, const char *file, int line);

/* Runs cases[0..n) of size `size` bytes each as one cmocka group, one test per case, named by
 * names[i] (each case is handed to fn as *state). Returns the number of failures. */
int mqt_run_table(const char *group, const void *cases, size_t n, size_t size,
                  const char *(*name)(const void *c), void (*fn)(void **state));

#endif
