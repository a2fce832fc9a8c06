/* frame.c: the fixed header, MQTT 5.0 §2.1 / MQTT 3.1.1 §2.2 (STYLE.md §5). */
#include "mqc_testutil.h"

#include <stdlib.h>
#include <string.h>

#define NOLIMIT 0u

/* Feeds buf[0..k) for every k (each prefix at the end of a page) and checks MQC_AGAIN for every
 * k < at and `want` for every k >= at (an error never turns into AGAIN or OK again). */
static void feed_prefixes(const uint8_t *buf, size_t len, uint32_t max, size_t at, int want)
{
    struct mqt_guard g = {0};
    for (size_t k = 0; k <= len; k++) {
        struct mqc_frame f;
        const uint8_t *p = mqt_guard_put(&g, buf, k);
        int rc = mqc_frame_check(p, k, max, &f);
        if (rc != (k < at ? MQC_AGAIN : want))
            fail_msg("prefix of %zu bytes: got %d, expected %d", k, rc, k < at ? MQC_AGAIN : want);
    }
    mqt_guard_free(&g);
}

static void check_frame(const char *hex, uint32_t max, uint8_t type, uint8_t flags, uint8_t hdr_len,
                        uint32_t remaining)
{
    uint8_t buf[600];
    size_t n = mqt_hex(hex, buf, sizeof buf);
    struct mqc_frame f;
    memset(&f, 0xA5, sizeof f);
    struct mqt_guard g = {0};
    const uint8_t *p = mqt_guard_put(&g, buf, n);
    assert_err(mqc_frame_check(p, n, max, &f), MQC_OK);
    assert_int_equal(f.type, type);
    assert_int_equal(f.flags, flags);
    assert_int_equal(f.hdr_len, hdr_len);
    assert_int_equal(f.remaining, remaining);
    assert_int_equal(f.total, (size_t)hdr_len + remaining);
    mqt_guard_free(&g);
    feed_prefixes(buf, n, max, (size_t)hdr_len + remaining, MQC_OK);
}

/* [MQTT-2.1.1] PINGREQ: C0 00 is a whole packet of 2 bytes. */
static void pingreq_two_bytes(void **state)
{
    (void)state;
    check_frame("c0 00", NOLIMIT, MQC_PINGREQ, 0, 2, 0);
    check_frame("d0 00", NOLIMIT, MQC_PINGRESP, 0, 2, 0);
}

/* The low nibble is handed back unchecked: flags are the decoder's business. */
static void flags_nibble(void **state)
{
    (void)state;
    check_frame("3d 05 00 01 61 00 07", NOLIMIT, MQC_PUBLISH, 0x0D, 2, 5);
    check_frame("62 02 00 01", NOLIMIT, MQC_PUBREL, 0x02, 2, 2);
    check_frame("ff 00", NOLIMIT, MQC_AUTH, 0x0F, 2, 0); /* type 15: frame does not judge */
}

/* §1.5.5 example: Remaining Length 321 is C1 02. */
static void remaining_321(void **state)
{
    (void)state;
    char hex[2000] = "30 c1 02";
    for (int i = 0; i < 321; i++)
        strcat(hex, " 5a");
    check_frame(hex, NOLIMIT, MQC_PUBLISH, 0, 3, 321);
}

/* Each Remaining Length size: the frame is known complete only at its last byte, and only
 * [buf, buf+len) is read (each prefix sits at the end of a page). */
static void remaining_boundaries(void **state)
{
    (void)state;
    static const struct {
        const char *hex;
        uint32_t rem;
        uint8_t hdr;
    } b[] = {
        {"00", 0, 2},
        {"7f", 127, 2},
        {"80 01", 128, 3},
        {"ff 7f", 16383, 3},
        {"80 80 01", 16384, 4},
        {"ff ff 7f", 2097151, 4},
        {"80 80 80 01", 2097152, 5},
    };
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        size_t total = (size_t)b[i].hdr + b[i].rem;
        uint8_t *buf = calloc(1, total);
        assert_non_null(buf);
        buf[0] = 0x30;
        mqt_hex(b[i].hex, buf + 1, 4);
        struct mqc_frame f;
        struct mqt_guard g = {0};
        const uint8_t *p = mqt_guard_put(&g, buf, total);
        assert_err(mqc_frame_check(p, total, NOLIMIT, &f), MQC_OK);
        assert_int_equal(f.remaining, b[i].rem);
        assert_int_equal(f.hdr_len, b[i].hdr);
        assert_int_equal(f.total, total);
        /* one byte short, whatever the split: AGAIN */
        p = mqt_guard_put(&g, buf, total - 1);
        assert_err(mqc_frame_check(p, total - 1, NOLIMIT, &f), MQC_AGAIN);
        /* only the header: AGAIN (unless the body is empty) */
        p = mqt_guard_put(&g, buf, b[i].hdr);
        assert_err(mqc_frame_check(p, b[i].hdr, NOLIMIT, &f), b[i].rem ? MQC_AGAIN : MQC_OK);
        mqt_guard_free(&g);
        free(buf);
    }
}

/* The largest Remaining Length (268435455) with no limit: waiting for the body, not an error. */
static void largest_remaining_waits(void **state)
{
    (void)state;
    uint8_t buf[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F};
    feed_prefixes(buf, sizeof buf, NOLIMIT, sizeof buf + 1, MQC_AGAIN);
}

/* Bytes of the next packet after this one do not change the frame. */
static void next_packet_follows(void **state)
{
    (void)state;
    uint8_t buf[16];
    size_t n = mqt_hex("40 02 00 07 c0 00 d0", buf, sizeof buf);
    struct mqc_frame f;
    assert_err(mqc_frame_check(buf, n, NOLIMIT, &f), MQC_OK);
    assert_int_equal(f.type, MQC_PUBACK);
    assert_int_equal(f.total, 4);
}

/* Over-size (5.0 §3.1.2.11.4 Maximum Packet Size): rejected as soon as the length is read,
 * with the body absent. */
static void too_big_before_body(void **state)
{
    (void)state;
    uint8_t buf[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F};
    feed_prefixes(buf, sizeof buf, 262144, sizeof buf, MQC_ETOOBIG);
    uint8_t b2[] = {0x30, 0x80, 0x80, 0x10}; /* 262144: + 4 header bytes is 4 over */
    feed_prefixes(b2, sizeof b2, 262144, sizeof b2, MQC_ETOOBIG);
    uint8_t b3[] = {0x30, 0x7F};
    feed_prefixes(b3, sizeof b3, 100, sizeof b3, MQC_ETOOBIG);
}

/* The limit counts the whole packet, fixed header included: hdr_len + remaining <= max. */
static void limit_is_inclusive(void **state)
{
    (void)state;
    uint8_t buf[12] = {0x30, 0x08};
    struct mqc_frame f;
    assert_err(mqc_frame_check(buf, 10, 10, &f), MQC_OK); /* 2 + 8 = 10 */
    assert_int_equal(f.total, 10);
    assert_err(mqc_frame_check(buf, 2, 9, &f), MQC_ETOOBIG); /* 10 > 9 */
    assert_err(mqc_frame_check(buf, 10, 9, &f), MQC_ETOOBIG);
    assert_err(mqc_frame_check(buf, 1, 9, &f), MQC_AGAIN); /* length not read yet */
    uint8_t big[] = {0x30, 0xFE, 0xFF, 0xFF, 0x7F};        /* 268435454 + 5 */
    assert_err(mqc_frame_check(big, sizeof big, 268435459u, &f), MQC_AGAIN);
    assert_err(mqc_frame_check(big, sizeof big, 268435458u, &f), MQC_ETOOBIG);
}

/* [MQTT-2.1.3] type 0 is reserved: known from the first byte. */
static void type_zero(void **state)
{
    (void)state;
    uint8_t b1[] = {0x00};
    feed_prefixes(b1, 1, NOLIMIT, 1, MQC_ETYPE);
    uint8_t b2[] = {0x0F};
    feed_prefixes(b2, 1, NOLIMIT, 1, MQC_ETYPE);
    uint8_t b3[] = {0x00, 0x00};
    struct mqc_frame f;
    assert_err(mqc_frame_check(b3, 2, NOLIMIT, &f), MQC_ETYPE);
}

/* [MQTT-1.5.5-1] a fifth length byte, or a non-minimal length, can never frame. */
static void bad_length(void **state)
{
    (void)state;
    uint8_t five[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F};
    /* known at the 4th length byte: it says a 5th follows */
    feed_prefixes(five, sizeof five, NOLIMIT, 5, MQC_EVARINT);
    uint8_t over1[] = {0x30, 0x80, 0x00};
    feed_prefixes(over1, sizeof over1, NOLIMIT, 3, MQC_EVARINT);
    uint8_t over2[] = {0xC0, 0x80, 0x80, 0x00};
    feed_prefixes(over2, sizeof over2, NOLIMIT, 4, MQC_EVARINT);
    uint8_t over3[] = {0xE0, 0xFF, 0x80, 0x80, 0x00};
    feed_prefixes(over3, sizeof over3, NOLIMIT, 5, MQC_EVARINT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pingreq_two_bytes),
        cmocka_unit_test(flags_nibble),
        cmocka_unit_test(remaining_321),
        cmocka_unit_test(remaining_boundaries),
        cmocka_unit_test(largest_remaining_waits),
        cmocka_unit_test(next_packet_follows),
        cmocka_unit_test(too_big_before_body),
        cmocka_unit_test(limit_is_inclusive),
        cmocka_unit_test(type_zero),
        cmocka_unit_test(bad_length),
    };
    return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
