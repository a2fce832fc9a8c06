/* varint.c: Variable Byte Integer, MQTT 5.0 §1.5.5 / MQTT 3.1.1 §2.2.3 (Remaining Length). */
#include "mqc_testutil.h"

#include <string.h>

/* The boundaries of each encoded size, from the table in §1.5.5 (3.1.1 Table 2.4). */
static const struct {
    uint32_t value;
    const char *hex;
} boundaries[] = {
    {0, "00"},
    {1, "01"},
    {64, "40"}, /* 1.5.5 example: 64 is the single byte 0x40 */
    {127, "7f"},
    {128, "80 01"},
    {321, "c1 02"}, /* 1.5.5 example: 321 = 65 + 2*128 is 0xC1 0x02 */
    {16383, "ff 7f"},
    {16384, "80 80 01"},
    {2097151, "ff ff 7f"},
    {2097152, "80 80 80 01"},
    {268435455, "ff ff ff 7f"},
};
#define NB (sizeof boundaries / sizeof boundaries[0])

/* [MQTT-1.5.5-1] each value has exactly one encoding, the shortest */
static void encode_boundaries(void **state)
{
    (void)state;
    for (size_t i = 0; i < NB; i++) {
        uint8_t want[4], out[8];
        size_t n = mqt_hex(boundaries[i].hex, want, sizeof want), used = 99;
        memset(out, 0xEE, sizeof out);
        assert_err(mqc_varint_encode(boundaries[i].value, out, sizeof out, &used), MQC_OK);
        assert_int_equal(used, n);
        assert_memory_equal(out, want, n);
        assert_int_equal(out[n], 0xEE); /* nothing written past the integer */
        assert_int_equal(mqc_varint_size(boundaries[i].value), n);
    }
}

static void decode_boundaries(void **state)
{
    (void)state;
    struct mqt_guard g = {0};
    for (size_t i = 0; i < NB; i++) {
        uint8_t in[4];
        size_t n = mqt_hex(boundaries[i].hex, in, sizeof in), used = 99;
        uint32_t v = 0xDEADBEEF;
        const uint8_t *p = mqt_guard_put(&g, in, n);
        assert_err(mqc_varint_decode(p, n, &v, &used), MQC_OK);
        assert_int_equal(v, boundaries[i].value);
        assert_int_equal(used, n);
    }
    mqt_guard_free(&g);
}

/* Followed by other bytes, the integer stops at its last byte. */
static void decode_stops_at_end(void **state)
{
    (void)state;
    uint8_t in[] = {0x80, 0x01, 0x80, 0x80};
    uint32_t v = 0;
    size_t used = 0;
    assert_err(mqc_varint_decode(in, sizeof in, &v, &used), MQC_OK);
    assert_int_equal(v, 128);
    assert_int_equal(used, 2);
}

/* Every proper prefix of a valid integer asks for more; the guard page catches a read of the
 * byte that is not there yet. */
static void decode_prefixes_again(void **state)
{
    (void)state;
    struct mqt_guard g = {0};
    for (size_t i = 0; i < NB; i++) {
        uint8_t in[4];
        size_t n = mqt_hex(boundaries[i].hex, in, sizeof in);
        for (size_t k = 0; k < n; k++) {
            uint32_t v;
            size_t used;
            const uint8_t *p = mqt_guard_put(&g, in, k);
            assert_err(mqc_varint_decode(p, k, &v, &used), MQC_AGAIN);
        }
    }
    mqt_guard_free(&g);
}

static void too_big_to_encode(void **state)
{
    (void)state;
    uint8_t out[8];
    size_t used = 77;
    memset(out, 0xEE, sizeof out);
    assert_err(mqc_varint_encode(268435456u, out, sizeof out, &used), MQC_EINVAL);
    assert_err(mqc_varint_encode(UINT32_MAX, out, sizeof out, &used), MQC_EINVAL);
    for (size_t i = 0; i < sizeof out; i++)
        assert_int_equal(out[i], 0xEE);
    assert_int_equal(mqc_varint_size(268435456u), 0);
    assert_int_equal(mqc_varint_size(UINT32_MAX), 0);
    assert_int_equal(mqc_varint_size(MQC_MAX_VARINT), 4);
}

/* MQC_ENOSPC writes nothing, for every capacity below the size. */
static void encode_enospc(void **state)
{
    (void)state;
    for (size_t i = 0; i < NB; i++) {
        size_t n = mqc_varint_size(boundaries[i].value);
        for (size_t cap = 0; cap < n; cap++) {
            uint8_t out[8];
            size_t used = 0;
            memset(out, 0xEE, sizeof out);
            assert_err(mqc_varint_encode(boundaries[i].value, out, cap, &used), MQC_ENOSPC);
            for (size_t k = 0; k < sizeof out; k++)
                assert_int_equal(out[k], 0xEE);
        }
    }
}

/* [MQTT-1.5.5-1] at most four bytes: a fifth byte is an error, whether or not it is there. */
static void five_bytes(void **state)
{
    (void)state;
    struct mqt_guard g = {0};
    static const char *bad[] = {
        "ff ff ff ff 7f", /* 5 bytes */
        "80 80 80 80 01", /* 5 bytes */
        "ff ff ff ff",    /* the 4th byte says a 5th follows: never valid */
        "80 80 80 80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t in[8];
        size_t n = mqt_hex(bad[i], in, sizeof in), used;
        uint32_t v;
        const uint8_t *p = mqt_guard_put(&g, in, n);
        assert_err(mqc_varint_decode(p, n, &v, &used), MQC_EVARINT);
    }
    mqt_guard_free(&g);
}

/* [MQTT-1.5.5-1] "the minimum number of bytes": a trailing 0x00 continuation is overlong. */
static void overlong(void **state)
{
    (void)state;
    struct mqt_guard g = {0};
    static const char *bad[] = {
        "80 00", "ff 00", "80 80 00", "ff ff 00", "80 80 80 00", "ff ff ff 00", "81 80 00",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t in[8];
        size_t n = mqt_hex(bad[i], in, sizeof in), used;
        uint32_t v;
        const uint8_t *p = mqt_guard_put(&g, in, n);
        assert_err(mqc_varint_decode(p, n, &v, &used), MQC_EVARINT);
    }
    mqt_guard_free(&g);
}

/* Every value round-trips; sampled densely around each boundary. */
static void roundtrip_sweep(void **state)
{
    (void)state;
    static const uint32_t centres[] = {0, 127, 16383, 2097151, 268435455};
    for (size_t c = 0; c < sizeof centres / sizeof centres[0]; c++) {
        for (int64_t d = -300; d <= 300; d++) {
            int64_t v64 = (int64_t)centres[c] + d;
            if (v64 < 0 || v64 > MQC_MAX_VARINT)
                continue;
            uint32_t v = (uint32_t)v64, back = 0;
            uint8_t out[4];
            size_t used = 0, used2 = 0;
            assert_err(mqc_varint_encode(v, out, sizeof out, &used), MQC_OK);
            assert_int_equal(used, mqc_varint_size(v));
            assert_err(mqc_varint_decode(out, used, &back, &used2), MQC_OK);
            assert_int_equal(back, v);
            assert_int_equal(used2, used);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_boundaries),   cmocka_unit_test(decode_boundaries),
        cmocka_unit_test(decode_stops_at_end), cmocka_unit_test(decode_prefixes_again),
        cmocka_unit_test(too_big_to_encode),   cmocka_unit_test(encode_enospc),
        cmocka_unit_test(five_bytes),          cmocka_unit_test(overlong),
        cmocka_unit_test(roundtrip_sweep),
    };
    return cmocka_run_group_tests_name("varint [MQTT-1.5.5-1]", tests, NULL, NULL);
}
