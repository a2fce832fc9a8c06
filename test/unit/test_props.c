/* props.c: MQTT 5.0 §2.2.2 Properties. The allowed-packet table is 5.0 Table 2-4 (§2.2.2.2). */
#include "mqc_testutil.h"

#include <string.h>

#define ALL_CTX 16 /* contexts 1..15 plus MQC_CTX_WILL (16) */

#define B(t) (1u << (t))
#define WILL B(MQC_CTX_WILL)
#define ACKS (B(MQC_PUBACK) | B(MQC_PUBREC) | B(MQC_PUBREL) | B(MQC_PUBCOMP))

/* Written out independently of props.c, from the specification's table. */
static const struct {
    uint8_t id;
    enum mqc_prop_type type;
    uint32_t where;
    uint32_t sample; /* a valid value for number types */
} table[] = {
    {0x01, MQC_PT_BYTE, B(MQC_PUBLISH) | WILL, 1},
    {0x02, MQC_PT_U32, B(MQC_PUBLISH) | WILL, 3600},
    {0x03, MQC_PT_UTF8, B(MQC_PUBLISH) | WILL, 0},
    {0x08, MQC_PT_UTF8, B(MQC_PUBLISH) | WILL, 0},
    {0x09, MQC_PT_BINARY, B(MQC_PUBLISH) | WILL, 0},
    {0x0B, MQC_PT_VARINT, B(MQC_PUBLISH) | B(MQC_SUBSCRIBE), 268435455},
    {0x11, MQC_PT_U32, B(MQC_CONNECT) | B(MQC_CONNACK) | B(MQC_DISCONNECT), 0xFFFFFFFF},
    {0x12, MQC_PT_UTF8, B(MQC_CONNACK), 0},
    {0x13, MQC_PT_U16, B(MQC_CONNACK), 60},
    {0x15, MQC_PT_UTF8, B(MQC_CONNECT) | B(MQC_CONNACK) | B(MQC_AUTH), 0},
    {0x16, MQC_PT_BINARY, B(MQC_CONNECT) | B(MQC_CONNACK) | B(MQC_AUTH), 0},
    {0x17, MQC_PT_BYTE, B(MQC_CONNECT), 0},
    {0x18, MQC_PT_U32, WILL, 30},
    {0x19, MQC_PT_BYTE, B(MQC_CONNECT), 1},
    {0x1A, MQC_PT_UTF8, B(MQC_CONNACK), 0},
    {0x1C, MQC_PT_UTF8, B(MQC_CONNACK) | B(MQC_DISCONNECT), 0},
    {0x1F, MQC_PT_UTF8,
     B(MQC_CONNACK) | ACKS | B(MQC_SUBACK) | B(MQC_UNSUBACK) | B(MQC_DISCONNECT) | B(MQC_AUTH), 0},
    {0x21, MQC_PT_U16, B(MQC_CONNECT) | B(MQC_CONNACK), 65535},
    {0x22, MQC_PT_U16, B(MQC_CONNECT) | B(MQC_CONNACK), 0},
    {0x23, MQC_PT_U16, B(MQC_PUBLISH), 1},
    {0x24, MQC_PT_BYTE, B(MQC_CONNACK), 1},
    {0x25, MQC_PT_BYTE, B(MQC_CONNACK), 0},
    {0x26, MQC_PT_PAIR,
     B(MQC_CONNECT) | B(MQC_CONNACK) | B(MQC_PUBLISH) | WILL | ACKS | B(MQC_SUBSCRIBE) |
         B(MQC_SUBACK) | B(MQC_UNSUBSCRIBE) | B(MQC_UNSUBACK) | B(MQC_DISCONNECT) | B(MQC_AUTH),
     0},
    {0x27, MQC_PT_U32, B(MQC_CONNECT) | B(MQC_CONNACK), 262144},
    {0x28, MQC_PT_BYTE, B(MQC_CONNACK), 1},
    {0x29, MQC_PT_BYTE, B(MQC_CONNACK), 0},
    {0x2A, MQC_PT_BYTE, B(MQC_CONNACK), 1},
};
#define NT (sizeof table / sizeof table[0])

/* One valid instance of table[i], built with mqc_prop_put. */
static struct mqc_props one(size_t i, struct mqt_props *b)
{
    b->len = 0;
    switch (table[i].type) {
    case MQC_PT_UTF8:
        mqt_pb_str(b, table[i].id, "a/b");
        break;
    case MQC_PT_BINARY:
        mqt_pb_bin(b, table[i].id, "\x00\xff\xc0", 3); /* binary: not UTF-8, fine */
        break;
    case MQC_PT_PAIR:
        mqt_pb_pair(b, "k", "v");
        break;
    default:
        mqt_pb_num(b, table[i].id, table[i].sample);
        break;
    }
    return mqt_pb(b);
}

static int check_at_page_end(const uint8_t *p, size_t n, int ctx)
{
    struct mqt_guard g = {0};
    struct mqc_props pr = {mqt_guard_put(&g, p, n), n};
    int rc = mqc_props_check(&pr, ctx);
    mqt_guard_free(&g);
    return rc;
}

static void types(void **state)
{
    (void)state;
    for (size_t i = 0; i < NT; i++)
        assert_int_equal(mqc_prop_type(table[i].id), table[i].type);
    /* every other identifier up to 0xFF is not a property */
    for (unsigned id = 0; id <= 0xFF; id++) {
        bool known = false;
        for (size_t i = 0; i < NT; i++)
            known |= table[i].id == id;
        if (!known && mqc_prop_type((uint8_t)id) != MQC_PT_NONE)
            fail_msg("0x%02x is not a property", id);
    }
}

/* Table 2-4: each property is accepted in each packet it is listed for and refused (with
 * MQC_EPROPID) in every other one, PINGREQ/PINGRESP included. */
static void allowed_packets(void **state)
{
    (void)state;
    for (size_t i = 0; i < NT; i++) {
        struct mqt_props b;
        struct mqc_props pr = one(i, &b);
        for (int ctx = 1; ctx <= ALL_CTX; ctx++) {
            int want = (table[i].where & B(ctx)) ? MQC_OK : MQC_EPROPID;
            int rc = check_at_page_end(pr.p, pr.len, ctx);
            if (rc != want)
                fail_msg("property 0x%02x in context %d: got %s, expected %s", table[i].id, ctx,
                         mqt_err_name(rc), mqt_err_name(want));
        }
    }
}

/* §2.2.2.2: unknown identifiers are a Malformed Packet / Protocol Error. */
static void unknown_ids(void **state)
{
    (void)state;
    static const uint8_t ids[] = {0x00, 0x04, 0x05, 0x07, 0x0A, 0x0C, 0x10, 0x14,
                                  0x1B, 0x1D, 0x1E, 0x20, 0x2B, 0x3F, 0x7F};
    for (size_t i = 0; i < sizeof ids; i++) {
        uint8_t blk[] = {ids[i], 0x00};
        for (int ctx = 1; ctx <= ALL_CTX; ctx++)
            assert_err(check_at_page_end(blk, sizeof blk, ctx), MQC_EPROPID);
        /* after a valid property too */
        uint8_t blk2[] = {0x26, 0x00, 0x01, 'k', 0x00, 0x00, ids[i], 0x00};
        assert_err(check_at_page_end(blk2, sizeof blk2, MQC_PUBLISH), MQC_EPROPID);
    }
}

static void empty_block(void **state)
{
    (void)state;
    struct mqc_props pr = {NULL, 0};
    for (int ctx = 1; ctx <= ALL_CTX; ctx++)
        assert_err(mqc_props_check(&pr, ctx), MQC_OK);
}

/* §2.2.2.2: "It is a Protocol Error to include [a property] more than once", for each one
 * but User Property and (PUBLISH only) Subscription Identifier. */
static void duplicates(void **state)
{
    (void)state;
    for (size_t i = 0; i < NT; i++) {
        struct mqt_props b;
        struct mqc_props pr = one(i, &b);
        uint8_t twice[64];
        memcpy(twice, pr.p, pr.len);
        memcpy(twice + pr.len, pr.p, pr.len);
        for (int ctx = 1; ctx <= ALL_CTX; ctx++) {
            if (!(table[i].where & B(ctx)))
                continue;
            int want = MQC_EPROPDUP;
            if (table[i].id == MQC_PROP_USER ||
                (table[i].id == MQC_PROP_SUBSCRIPTION_ID && ctx == MQC_PUBLISH))
                want = MQC_OK;
            int rc = check_at_page_end(twice, 2 * pr.len, ctx);
            if (rc != want)
                fail_msg("property 0x%02x twice in context %d: got %s, expected %s", table[i].id,
                         ctx, mqt_err_name(rc), mqt_err_name(want));
        }
    }
}

/* Duplicates that are not adjacent are found too. */
static void duplicate_apart(void **state)
{
    (void)state;
    struct mqt_props b = {.len = 0};
    mqt_pb_num(&b, MQC_PROP_MESSAGE_EXPIRY, 10);
    mqt_pb_pair(&b, "a", "b");
    mqt_pb_str(&b, MQC_PROP_CONTENT_TYPE, "text/plain");
    mqt_pb_num(&b, MQC_PROP_MESSAGE_EXPIRY, 20);
    assert_err(check_at_page_end(b.buf, b.len, MQC_PUBLISH), MQC_EPROPDUP);
}

/* User Property may repeat, same name included, in every packet that allows it [§3.x.2.x]. */
static void user_property_repeats(void **state)
{
    (void)state;
    struct mqt_props b = {.len = 0};
    mqt_pb_pair(&b, "relay-path", "site-a");
    mqt_pb_pair(&b, "relay-path", "site-b");
    mqt_pb_pair(&b, "k", "");
    mqt_pb_pair(&b, "", "");
    for (int ctx = 1; ctx <= ALL_CTX; ctx++) {
        int want = (ctx == MQC_PINGREQ || ctx == MQC_PINGRESP) ? MQC_EPROPID : MQC_OK;
        assert_err(check_at_page_end(b.buf, b.len, ctx), want);
    }
}

/* §3.3.2.3.8: several Subscription Identifiers in a PUBLISH; §3.8.2.1.2: one in SUBSCRIBE. */
static void subscription_id_repeats(void **state)
{
    (void)state;
    struct mqt_props b = {.len = 0};
    mqt_pb_num(&b, MQC_PROP_SUBSCRIPTION_ID, 1);
    mqt_pb_num(&b, MQC_PROP_SUBSCRIPTION_ID, 200);
    mqt_pb_num(&b, MQC_PROP_SUBSCRIPTION_ID, 268435455);
    assert_err(check_at_page_end(b.buf, b.len, MQC_PUBLISH), MQC_OK);
    assert_err(check_at_page_end(b.buf, b.len, MQC_SUBSCRIBE), MQC_EPROPDUP);
}

struct raw_case {
    const char *name;
    int ctx;
    const char *hex;
    int want;
};

/* Value checks and overruns, as raw blocks (the bytes after the Property Length). */
static const struct raw_case raw[] = {
    /* value checks [MQC_EPROPVAL] */
    {"[MQTT-3.3.2-8] Topic Alias 0", MQC_PUBLISH, "23 00 00", MQC_EPROPVAL},
    {"Topic Alias 1", MQC_PUBLISH, "23 00 01", MQC_OK},
    {"§3.1.2.11.3 Receive Maximum 0 in CONNECT", MQC_CONNECT, "21 00 00", MQC_EPROPVAL},
    {"§3.2.2.3.3 Receive Maximum 0 in CONNACK", MQC_CONNACK, "21 00 00", MQC_EPROPVAL},
    {"§3.1.2.11.4 Maximum Packet Size 0 in CONNECT", MQC_CONNECT, "27 00 00 00 00", MQC_EPROPVAL},
    {"§3.2.2.3.6 Maximum Packet Size 0 in CONNACK", MQC_CONNACK, "27 00 00 00 00", MQC_EPROPVAL},
    {"Maximum Packet Size 1", MQC_CONNACK, "27 00 00 00 01", MQC_OK},
    {"§3.3.2.3.8 Subscription Identifier 0 in PUBLISH", MQC_PUBLISH, "0b 00", MQC_EPROPVAL},
    {"§3.8.2.1.2 Subscription Identifier 0 in SUBSCRIBE", MQC_SUBSCRIBE, "0b 00", MQC_EPROPVAL},
    {"Payload Format Indicator 2", MQC_PUBLISH, "01 02", MQC_EPROPVAL},
    {"Payload Format Indicator 2 in Will", MQC_CTX_WILL, "01 02", MQC_EPROPVAL},
    {"Payload Format Indicator 0", MQC_PUBLISH, "01 00", MQC_OK},
    {"Request Problem Information 2", MQC_CONNECT, "17 02", MQC_EPROPVAL},
    {"Request Response Information 2", MQC_CONNECT, "19 02", MQC_EPROPVAL},
    {"Retain Available 2", MQC_CONNACK, "25 02", MQC_EPROPVAL},
    {"Wildcard Subscription Available 2", MQC_CONNACK, "28 02", MQC_EPROPVAL},
    {"Subscription Identifiers Available 2", MQC_CONNACK, "29 02", MQC_EPROPVAL},
    {"Shared Subscription Available 0xFF", MQC_CONNACK, "2a ff", MQC_EPROPVAL},
    {"Maximum QoS 0", MQC_CONNACK, "24 00", MQC_OK},
    {"Maximum QoS 2 (BifroMQ: receiver clamps)", MQC_CONNACK, "24 02", MQC_OK},
    {"Maximum QoS 200 (BifroMQ 3.3/4.0)", MQC_CONNACK, "24 c8", MQC_OK},
    {"Topic Alias Maximum 0", MQC_CONNECT, "22 00 00", MQC_OK},
    {"Server Keep Alive 0", MQC_CONNACK, "13 00 00", MQC_OK},
    {"Session Expiry 0", MQC_DISCONNECT, "11 00 00 00 00", MQC_OK},
    {"Will Delay 0", MQC_CTX_WILL, "18 00 00 00 00", MQC_OK},
    {"[MQTT-3.3.2-14] Response Topic with a wildcard", MQC_PUBLISH, "08 00 03 61 2f 23",
     MQC_EPROPVAL},
    {"§3.1.3.2.6 Will Response Topic with a wildcard", MQC_CTX_WILL, "08 00 01 2b", MQC_EPROPVAL},
    /* strings [MQTT-1.5.4-1/2] */
    {"Content Type with U+0000", MQC_PUBLISH, "03 00 03 61 00 62", MQC_EUTF8},
    {"Content Type overlong", MQC_PUBLISH, "03 00 02 c0 af", MQC_EUTF8},
    {"Reason String with a surrogate", MQC_PUBACK, "1f 00 03 ed a0 80", MQC_EUTF8},
    {"User Property name invalid", MQC_PUBLISH, "26 00 01 ff 00 01 61", MQC_EUTF8},
    {"User Property value invalid", MQC_PUBLISH, "26 00 01 61 00 01 80", MQC_EUTF8},
    {"Assigned Client Identifier invalid", MQC_CONNACK, "12 00 01 c2", MQC_EUTF8},
    {"Authentication Method invalid", MQC_AUTH, "15 00 01 ff", MQC_EUTF8},
    {"Correlation Data is binary: any bytes", MQC_PUBLISH, "09 00 03 00 ff c0", MQC_OK},
    {"Authentication Data is binary: any bytes", MQC_AUTH, "16 00 02 ed a0", MQC_OK},
    {"empty strings are valid", MQC_PUBLISH, "03 00 00 26 00 00 00 00", MQC_OK},
    /* overruns [MQC_EMALFORMED] */
    {"byte value missing", MQC_PUBLISH, "01", MQC_EMALFORMED},
    {"two-byte value cut", MQC_PUBLISH, "23 00", MQC_EMALFORMED},
    {"four-byte value cut", MQC_PUBLISH, "02 00 00 0e", MQC_EMALFORMED},
    {"string length cut", MQC_PUBLISH, "03 00", MQC_EMALFORMED},
    {"string longer than the block", MQC_PUBLISH, "03 00 05 61 62 63", MQC_EMALFORMED},
    {"string length 0xFFFF past the block", MQC_PUBLISH, "03 ff ff 61", MQC_EMALFORMED},
    {"binary longer than the block", MQC_PUBLISH, "09 00 02 61", MQC_EMALFORMED},
    {"user property value missing", MQC_PUBLISH, "26 00 01 61", MQC_EMALFORMED},
    {"user property value cut", MQC_PUBLISH, "26 00 01 61 00 02 62", MQC_EMALFORMED},
    {"second property cut", MQC_PUBLISH, "01 01 02 00 00", MQC_EMALFORMED},
    {"subscription identifier varint cut", MQC_PUBLISH, "0b 80", MQC_EMALFORMED},
    {"subscription identifier varint cut (3 bytes)", MQC_PUBLISH, "0b ff ff ff", MQC_EMALFORMED},
    {"[MQTT-1.5.5-1] subscription identifier overlong", MQC_PUBLISH, "0b 81 00", MQC_EVARINT},
    {"[MQTT-1.5.5-1] subscription identifier 5 bytes", MQC_PUBLISH, "0b ff ff ff ff 01",
     MQC_EVARINT},
};

static const char *raw_name(const void *c)
{
    return ((const struct raw_case *)c)->name;
}

static void raw_case(void **state)
{
    const struct raw_case *c = *state;
    uint8_t blk[64];
    size_t n = mqt_hex(c->hex, blk, sizeof blk);
    assert_err(check_at_page_end(blk, n, c->ctx), c->want);
}

/* Walking: properties in order, values decoded, MQC_AGAIN at the end; the values borrow from
 * the block. */
static void walk(void **state)
{
    (void)state;
    struct mqt_props b = {.len = 0};
    mqt_pb_num(&b, MQC_PROP_PAYLOAD_FORMAT, 1);
    mqt_pb_num(&b, MQC_PROP_MESSAGE_EXPIRY, 0x01020304);
    mqt_pb_str(&b, MQC_PROP_CONTENT_TYPE, "json");
    mqt_pb_num(&b, MQC_PROP_TOPIC_ALIAS, 0x1234);
    mqt_pb_pair(&b, "k1", "v1");
    mqt_pb_num(&b, MQC_PROP_SUBSCRIPTION_ID, 16384);
    mqt_pb_bin(&b, MQC_PROP_CORRELATION_DATA, "\x00\x01", 2);
    mqt_pb_pair(&b, "k2", "");
    struct mqt_guard g = {0};
    struct mqc_props pr = {mqt_guard_put(&g, b.buf, b.len), b.len};
    assert_err(mqc_props_check(&pr, MQC_PUBLISH), MQC_OK);

    size_t off = 0;
    struct mqc_prop p;
    assert_err(mqc_props_next(&pr, &off, &p), MQC_OK);
    assert_int_equal(p.id, MQC_PROP_PAYLOAD_FORMAT);
    assert_int_equal(p.num, 1);
    assert_int_equal(off, 2);
    assert_err(mqc_props_next(&pr, &off, &p), MQC_OK);
    assert_int_equal(p.id, MQC_PROP_MESSAGE_EXPIRY);
    assert_int_equal(p.num, 0x01020304);
    assert_err(mqc_props_next(&pr, &off, &p), MQC_OK);
    assert_int_equal(p.id, MQC_PROP_CONTENT_TYPE);
    assert_int_equal(p.str.len, 4);
    assert_memory_equal(p.str.p, "json", 4);
    assert_true(p.str.p >= pr.p && p.str.p + 4 <= pr.p + pr.len);
    assert_err(mqc_props_next(&pr, &off, &p), MQC_OK);
    assert_int_equal(p.id, MQC_PROP_TOPIC_ALIAS);
    assert_int_equal(p.num, 0x1234);
    assert_err(mqc_props_next(&pr, &off, &p), MQC_OK);
    assert_int_equal(p.id, MQC_PROP_USER);
    assert_int_equal(p.str.len, 2);
    assert_memory_equal(p.str.p, "k1", 2);
    assert_int_equal(p.val.len, 2);
    assert_memory_equal(p.val.p, "v1", 2);
    assert_err(mqc_props_next(&pr, &off, &p), MQC_OK);
    assert_int_equal(p.id, MQC_PROP_SUBSCRIPTION_ID);
    assert_int_equal(p.num, 16384);
    assert_err(mqc_props_next(&pr, &off, &p), MQC_OK);
    assert_int_equal(p.id, MQC_PROP_CORRELATION_DATA);
    assert_int_equal(p.str.len, 2);
    assert_memory_equal(p.str.p, "\x00\x01", 2);
    assert_err(mqc_props_next(&pr, &off, &p), MQC_OK);
    assert_int_equal(p.id, MQC_PROP_USER);
    assert_memory_equal(p.str.p, "k2", 2);
    assert_int_equal(p.val.len, 0);
    assert_int_equal(off, pr.len);
    assert_err(mqc_props_next(&pr, &off, &p), MQC_AGAIN);
    assert_err(mqc_props_next(&pr, &off, &p), MQC_AGAIN);

    /* find: the first of each id; absent ids give MQC_AGAIN */
    assert_err(mqc_props_find(&pr, MQC_PROP_USER, &p), MQC_OK);
    assert_memory_equal(p.str.p, "k1", 2);
    assert_err(mqc_props_find(&pr, MQC_PROP_SUBSCRIPTION_ID, &p), MQC_OK);
    assert_int_equal(p.num, 16384);
    assert_err(mqc_props_find(&pr, MQC_PROP_RESPONSE_TOPIC, &p), MQC_AGAIN);
    assert_err(mqc_props_find(&pr, MQC_PROP_REASON_STRING, &p), MQC_AGAIN);
    mqt_guard_free(&g);

    struct mqc_props none = {NULL, 0};
    off = 0;
    assert_err(mqc_props_next(&none, &off, &p), MQC_AGAIN);
    assert_err(mqc_props_find(&none, MQC_PROP_USER, &p), MQC_AGAIN);
}

/* A block that was never checked: the walk refuses to go past a broken property. */
static void walk_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {"03 00 05 61", "01", "05 00", "26 00 01 61"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t blk[16];
        size_t n = mqt_hex(bad[i], blk, sizeof blk), off = 0;
        struct mqt_guard g = {0};
        struct mqc_props pr = {mqt_guard_put(&g, blk, n), n};
        struct mqc_prop p;
        assert_err(mqc_props_next(&pr, &off, &p), MQC_EMALFORMED);
        assert_err(mqc_props_find(&pr, MQC_PROP_REASON_STRING, &p), MQC_EMALFORMED);
        mqt_guard_free(&g);
    }
}

/* Building: exact bytes per type (§2.2.2.2, data types of §1.5). */
static void put_bytes(void **state)
{
    (void)state;
    static const struct {
        struct mqc_prop p;
        const char *hex;
    } cases[] = {
        {{.id = 0x01, .num = 1}, "01 01"},
        {{.id = 0x24, .num = 255}, "24 ff"},
        {{.id = 0x21, .num = 0x1234}, "21 12 34"},
        {{.id = 0x02, .num = 0xDEADBEEF}, "02 de ad be ef"},
        {{.id = 0x0B, .num = 127}, "0b 7f"},
        {{.id = 0x0B, .num = 128}, "0b 80 01"},
        {{.id = 0x0B, .num = 268435455}, "0b ff ff ff 7f"},
        {{.id = 0x03, .str = {(const uint8_t *)"a/b", 3}}, "03 00 03 61 2f 62"},
        {{.id = 0x09, .str = {NULL, 0}}, "09 00 00"},
        {{.id = 0x26, .str = {(const uint8_t *)"k", 1}, .val = {(const uint8_t *)"vv", 2}},
         "26 00 01 6b 00 02 76 76"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t want[16], out[32];
        size_t n = mqt_hex(cases[i].hex, want, sizeof want), len = 3;
        memset(out, 0xEE, sizeof out);
        assert_int_equal(mqc_prop_size(&cases[i].p), n);
        assert_err(mqc_prop_put(&cases[i].p, out, sizeof out, &len), MQC_OK);
        assert_int_equal(len, 3 + n); /* appended after what was there */
        assert_memory_equal(out + 3, want, n);
        assert_int_equal(out[2], 0xEE);
        assert_int_equal(out[3 + n], 0xEE);
        /* and ENOSPC for every smaller room, nothing written */
        for (size_t cap = 0; cap < 3 + n; cap++) {
            uint8_t o2[32];
            size_t l2 = cap < 3 ? cap : 3;
            memset(o2, 0xEE, sizeof o2);
            assert_err(mqc_prop_put(&cases[i].p, o2, cap, &l2), MQC_ENOSPC);
            assert_int_equal(l2, cap < 3 ? cap : 3);
            for (size_t k = 0; k < sizeof o2; k++)
                assert_int_equal(o2[k], 0xEE);
        }
    }
}

/* What cannot be encoded: unknown ids, values beyond the type, strings over 65535 bytes. */
static void put_invalid(void **state)
{
    (void)state;
    static uint8_t big[65536];
    struct mqc_prop bad[] = {
        {.id = 0x00, .num = 0},
        {.id = 0x04, .num = 0},
        {.id = 0x7F, .num = 0},
        {.id = 0x01, .num = 256},
        {.id = 0x21, .num = 65536},
        {.id = 0x0B, .num = 268435456},
        {.id = 0x03, .str = {big, 65536}},
        {.id = 0x09, .str = {big, 65536}},
        {.id = 0x26, .str = {big, 65536}, .val = {big, 1}},
        {.id = 0x26, .str = {big, 1}, .val = {big, 65536}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t out[16];
        size_t len = 0;
        memset(out, 0xEE, sizeof out);
        assert_int_equal(mqc_prop_size(&bad[i]), 0);
        assert_err(mqc_prop_put(&bad[i], out, sizeof out, &len), MQC_EINVAL);
        assert_int_equal(len, 0);
        assert_int_equal(out[0], 0xEE);
    }
    /* the largest string that fits */
    struct mqc_prop ok = {.id = 0x03, .str = {big, 65535}};
    memset(big, 'x', sizeof big);
    assert_int_equal(mqc_prop_size(&ok), 3 + 65535);
}

/* A block built with put walks back to the same values (each type). */
static void put_then_walk(void **state)
{
    (void)state;
    for (size_t i = 0; i < NT; i++) {
        struct mqt_props b;
        struct mqc_props pr = one(i, &b);
        size_t off = 0;
        struct mqc_prop p;
        assert_err(mqc_props_next(&pr, &off, &p), MQC_OK);
        assert_int_equal(p.id, table[i].id);
        switch (table[i].type) {
        case MQC_PT_UTF8:
            assert_int_equal(p.str.len, 3);
            assert_memory_equal(p.str.p, "a/b", 3);
            break;
        case MQC_PT_BINARY:
            assert_int_equal(p.str.len, 3);
            assert_memory_equal(p.str.p, "\x00\xff\xc0", 3);
            break;
        case MQC_PT_PAIR:
            assert_memory_equal(p.str.p, "k", 1);
            assert_memory_equal(p.val.p, "v", 1);
            break;
        default:
            assert_int_equal(p.num, table[i].sample);
            break;
        }
        assert_int_equal(off, pr.len);
        assert_err(mqc_props_next(&pr, &off, &p), MQC_AGAIN);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(types),
        cmocka_unit_test(allowed_packets),
        cmocka_unit_test(unknown_ids),
        cmocka_unit_test(empty_block),
        cmocka_unit_test(duplicates),
        cmocka_unit_test(duplicate_apart),
        cmocka_unit_test(user_property_repeats),
        cmocka_unit_test(subscription_id_repeats),
        cmocka_unit_test(walk),
        cmocka_unit_test(walk_malformed),
        cmocka_unit_test(put_bytes),
        cmocka_unit_test(put_invalid),
        cmocka_unit_test(put_then_walk),
    };
    int failed = cmocka_run_group_tests_name("props [MQTT 5.0 2.2.2]", tests, NULL, NULL);
    failed += mqt_run_table("props values and bounds", raw, sizeof raw / sizeof raw[0],
                            sizeof raw[0], raw_name, raw_case);
    return failed;
}
