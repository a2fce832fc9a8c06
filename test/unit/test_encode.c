/* encode.c: MQTT 3.1 / 3.1.1 / 5.0 §3 packets, sending side. Expected bytes are worked out by
 * hand from the specifications' figures (the comments show the arithmetic). */
#include "mqc_testutil.h"

#include <stdlib.h>
#include <string.h>

#define S(lit)                                                                                     \
    {                                                                                              \
        (const uint8_t *)(lit), sizeof(lit) - 1                                                    \
    }
#define P(lit)                                                                                     \
    {                                                                                              \
        (const uint8_t *)(lit), sizeof(lit) - 1                                                    \
    }
#define NONE                                                                                       \
    {                                                                                              \
        NULL, 0                                                                                    \
    }

struct enc_case {
    const char *name;
    uint8_t version;
    struct mqc_packet pkt;
    const char *hex;
};

static const struct enc_case cases[] = {
    /* ---- CONNECT ---- */
    {"3.1.1 CONNECT minimal: rem = 2+4 name, 1 level, 1 flags, 2 keepalive, 3 client id = 13",
     MQC_V311,
     {.type = MQC_CONNECT,
      .u.connect =
          {.version = MQC_V311, .clean_start = true, .keepalive = 60, .client_id = S("a")}},
     "10 0d 00 04 4d 51 54 54 04 02 00 3c 00 01 61"},
    {"3.1 CONNECT: protocol name MQIsdp, level 3 (rem 15)",
     MQC_V31,
     {.type = MQC_CONNECT,
      .u.connect = {.version = MQC_V31, .clean_start = true, .keepalive = 60, .client_id = S("a")}},
     "10 0f 00 06 4d 51 49 73 64 70 03 02 00 3c 00 01 61"},
    {"5.0 CONNECT minimal: Property Length 0 after Keep Alive (rem 14)",
     MQC_V5,
     {.type = MQC_CONNECT,
      .u.connect = {.version = MQC_V5, .clean_start = true, .keepalive = 60, .client_id = S("a")}},
     "10 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 01 61"},
    {"3.1.1 CONNECT empty client id, clean session 0",
     MQC_V311,
     {.type = MQC_CONNECT, .u.connect = {.version = MQC_V311, .keepalive = 0}},
     "10 0c 00 04 4d 51 54 54 04 00 00 00 00 00"},
    {"3.1.1 CONNECT bridge: level 0x84 [Mosquitto try_private]",
     MQC_V311,
     {.type = MQC_CONNECT,
      .u.connect = {.version = MQC_V311, .bridge = true, .keepalive = 60, .client_id = S("a")}},
     "10 0d 00 04 4d 51 54 54 84 00 00 3c 00 01 61"},
    /* 3.1.1 Figure 3.6: flags 0xCE = user name, password, will QoS 1, will, clean session;
     * keep alive 10. Payload: "cid", "w/t", "bye", "u", "p" = 5+5+5+3+3 = 21; rem 31 */
    {"3.1.1 CONNECT Figure 3.6 flags CE, keep alive 10, full payload",
     MQC_V311,
     {.type = MQC_CONNECT,
      .u.connect = {.version = MQC_V311,
                    .clean_start = true,
                    .keepalive = 10,
                    .client_id = S("cid"),
                    .will = true,
                    .will_qos = 1,
                    .will_topic = S("w/t"),
                    .will_payload = S("bye"),
                    .has_username = true,
                    .username = S("u"),
                    .has_password = true,
                    .password = S("p")}},
     "10 1f 00 04 4d 51 54 54 04 ce 00 0a"
     " 00 03 63 69 64 00 03 77 2f 74 00 03 62 79 65 00 01 75 00 01 70"},
    /* 5.0 Figure 3-7: ... 05 CE 00 0A, Property Length 5, Session Expiry Interval (0x11) 10.
     * Variable header 16 bytes, payload 5 + 1 (Will Property Length 0) + 5+5+3+3 = 22; rem 38 */
    {"5.0 CONNECT Figure 3-7 with Session Expiry 10 and a will",
     MQC_V5,
     {.type = MQC_CONNECT,
      .u.connect = {.version = MQC_V5,
                    .clean_start = true,
                    .keepalive = 10,
                    .props = P("\x11\x00\x00\x00\x0a"),
                    .client_id = S("cid"),
                    .will = true,
                    .will_qos = 1,
                    .will_topic = S("w/t"),
                    .will_payload = S("bye"),
                    .has_username = true,
                    .username = S("u"),
                    .has_password = true,
                    .password = S("p")}},
     "10 26 00 04 4d 51 54 54 05 ce 00 0a 05 11 00 00 00 0a"
     " 00 03 63 69 64 00 00 03 77 2f 74 00 03 62 79 65 00 01 75 00 01 70"},
    /* will QoS 2 + retain: flags 0x04 | 0x10 | 0x20 = 0x34; will props: Will Delay 5 (5 bytes),
     * Payload Format 1 (2 bytes) = 7; rem = 10 + 1 + 3 + 1+7 + 5 + 2 = 29 */
    {"5.0 CONNECT will QoS 2 retain with will properties, 5.0 password without user name",
     MQC_V5,
     {.type = MQC_CONNECT,
      .u.connect = {.version = MQC_V5,
                    .keepalive = 0,
                    .client_id = S("c"),
                    .will = true,
                    .will_qos = 2,
                    .will_retain = true,
                    .will_props = P("\x18\x00\x00\x00\x05\x01\x01"),
                    .will_topic = S("w/t"),
                    .will_payload = S(""),
                    .has_password = true,
                    .password = S("")}},
     "10 1f 00 04 4d 51 54 54 05 74 00 00 00 00 01 63 07 18 00 00 00 05 01 01"
     " 00 03 77 2f 74 00 00 00 00"},
    /* ---- CONNACK ---- */
    {"3.1.1 CONNACK session present, accepted",
     MQC_V311,
     {.type = MQC_CONNACK, .u.connack = {.session_present = true, .code = 0}},
     "20 02 01 00"},
    {"3.1.1 CONNACK refused 5 (not authorized)",
     MQC_V311,
     {.type = MQC_CONNACK, .u.connack = {.code = 5}},
     "20 02 00 05"},
    {"3.1 CONNACK refused 2 (identifier rejected)",
     MQC_V31,
     {.type = MQC_CONNACK, .u.connack = {.code = 2}},
     "20 02 00 02"},
    {"5.0 CONNACK Property Length 0",
     MQC_V5,
     {.type = MQC_CONNACK, .u.connack = {.code = 0}},
     "20 03 00 00 00"},
    /* Receive Maximum 10 (3) + Maximum QoS 1 (2) + Retain Available 0 (2) = 7; rem 10 */
    {"5.0 CONNACK with properties",
     MQC_V5,
     {.type = MQC_CONNACK,
      .u.connack = {.session_present = true, .props = P("\x21\x00\x0a\x24\x01\x25\x00")}},
     "20 0a 01 00 07 21 00 0a 24 01 25 00"},
    {"5.0 CONNACK 0x97 quota exceeded",
     MQC_V5,
     {.type = MQC_CONNACK, .u.connack = {.code = 0x97}},
     "20 03 00 97 00"},
    /* ---- PUBLISH ---- */
    {"3.1.1 PUBLISH QoS 0 \"a/b\" \"hi\"",
     MQC_V311,
     {.type = MQC_PUBLISH, .u.publish = {.topic = S("a/b"), .payload = S("hi")}},
     "30 07 00 03 61 2f 62 68 69"},
    /* 3.1.1 Figure 3.11: topic "a/b", packet identifier 10; DUP|QoS 1|RETAIN = 0x0B */
    {"3.1.1 PUBLISH Figure 3.11 QoS 1 id 10, DUP and RETAIN",
     MQC_V311,
     {.type = MQC_PUBLISH,
      .u.publish = {.qos = 1,
                    .dup = true,
                    .retain = true,
                    .topic = S("a/b"),
                    .packet_id = 10,
                    .payload = S("hi")}},
     "3b 09 00 03 61 2f 62 00 0a 68 69"},
    {"3.1 PUBLISH QoS 2 empty payload",
     MQC_V31,
     {.type = MQC_PUBLISH, .u.publish = {.qos = 2, .topic = S("t"), .packet_id = 0xFFFF}},
     "34 05 00 01 74 ff ff"},
    {"5.0 PUBLISH QoS 0 Property Length 0",
     MQC_V5,
     {.type = MQC_PUBLISH, .u.publish = {.topic = S("a/b"), .payload = S("hi")}},
     "30 08 00 03 61 2f 62 00 68 69"},
    /* props: Payload Format 1 (2) + Topic Alias 5 (3) = 5; rem = 5 + 2 + 1+5 + 2 = 15 */
    {"5.0 PUBLISH QoS 1 with properties",
     MQC_V5,
     {.type = MQC_PUBLISH,
      .u.publish = {.qos = 1,
                    .topic = S("a/b"),
                    .packet_id = 10,
                    .props = P("\x01\x01\x23\x00\x05"),
                    .payload = S("hi")}},
     "32 0f 00 03 61 2f 62 00 0a 05 01 01 23 00 05 68 69"},
    {"5.0 PUBLISH empty topic with a Topic Alias (§3.3.2.1)",
     MQC_V5,
     {.type = MQC_PUBLISH,
      .u.publish = {.topic = NONE, .props = P("\x23\x00\x05"), .payload = S("hi")}},
     "30 08 00 00 03 23 00 05 68 69"},
    /* ---- PUBACK .. PUBCOMP ---- */
    {"3.1.1 PUBACK", MQC_V311, {.type = MQC_PUBACK, .u.ack = {.packet_id = 10}}, "40 02 00 0a"},
    {"3.1.1 PUBREC", MQC_V311, {.type = MQC_PUBREC, .u.ack = {.packet_id = 10}}, "50 02 00 0a"},
    {"3.1.1 PUBREL flags 0010 [MQTT-3.6.1-1]",
     MQC_V311,
     {.type = MQC_PUBREL, .u.ack = {.packet_id = 10}},
     "62 02 00 0a"},
    {"3.1 PUBREL flags 0010",
     MQC_V31,
     {.type = MQC_PUBREL, .u.ack = {.packet_id = 10}},
     "62 02 00 0a"},
    {"3.1.1 PUBCOMP",
     MQC_V311,
     {.type = MQC_PUBCOMP, .u.ack = {.packet_id = 0x1234}},
     "70 02 12 34"},
    {"5.0 PUBACK short form: code 0, no properties (§3.4.2.1)",
     MQC_V5,
     {.type = MQC_PUBACK, .u.ack = {.packet_id = 10}},
     "40 02 00 0a"},
    {"5.0 PUBACK code 0x10, no Property Length",
     MQC_V5,
     {.type = MQC_PUBACK, .u.ack = {.packet_id = 10, .code = 0x10}},
     "40 03 00 0a 10"},
    {"5.0 PUBREC code 0x80",
     MQC_V5,
     {.type = MQC_PUBREC, .u.ack = {.packet_id = 10, .code = 0x80}},
     "50 03 00 0a 80"},
    {"5.0 PUBREL code 0x92",
     MQC_V5,
     {.type = MQC_PUBREL, .u.ack = {.packet_id = 10, .code = 0x92}},
     "62 03 00 0a 92"},
    {"5.0 PUBCOMP short form",
     MQC_V5,
     {.type = MQC_PUBCOMP, .u.ack = {.packet_id = 10}},
     "70 02 00 0a"},
    /* code 0 with a Reason String "x" (4 bytes): rem = 2 + 1 + 1 + 4 = 8 */
    {"5.0 PUBACK code 0 with properties: full form",
     MQC_V5,
     {.type = MQC_PUBACK, .u.ack = {.packet_id = 10, .props = P("\x1f\x00\x01x")}},
     "40 08 00 0a 00 04 1f 00 01 78"},
    /* ---- SUBSCRIBE ---- */
    /* 3.1.1 Figure 3.21 payload: "a/b" QoS 1, "c/d" QoS 2; rem = 2 + 6 + 6 = 14 */
    {"3.1.1 SUBSCRIBE Figure 3.21",
     MQC_V311,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.packet_id = 10,
                      .subs = (const struct mqc_sub[]){{S("a/b"), 1}, {S("c/d"), 2}},
                      .count = 2}},
     "82 0e 00 0a 00 03 61 2f 62 01 00 03 63 2f 64 02"},
    {"3.1 SUBSCRIBE flags 0010",
     MQC_V31,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.packet_id = 1, .subs = (const struct mqc_sub[]){{S("#"), 0}}, .count = 1}},
     "82 06 00 01 00 01 23 00"},
    /* Subscription Identifier 1 (2 bytes); options QoS 1 | No Local | RAP | Retain Handling 2
     * = 0x01 | 0x04 | 0x08 | 0x20 = 0x2D; rem = 2 + 1+2 + 6 = 11 */
    {"5.0 SUBSCRIBE with Subscription Identifier and all options",
     MQC_V5,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.packet_id = 10,
                      .props = P("\x0b\x01"),
                      .subs = (const struct mqc_sub[]){{S("a/b"), 0x2D}},
                      .count = 1}},
     "82 0b 00 0a 02 0b 01 00 03 61 2f 62 2d"},
    {"5.0 SUBSCRIBE $share without No Local",
     MQC_V5,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.packet_id = 2,
                      .subs = (const struct mqc_sub[]){{S("$share/g/x"), 0x09}},
                      .count = 1}},
     "82 10 00 02 00 00 0a 24 73 68 61 72 65 2f 67 2f 78 09"},
    /* ---- SUBACK ---- */
    /* 3.1.1 Figure 3.26: Success QoS 0, Success QoS 2, Failure */
    {"3.1.1 SUBACK Figure 3.26",
     MQC_V311,
     {.type = MQC_SUBACK, .u.suback = {.packet_id = 10, .codes = S("\x00\x02\x80")}},
     "90 05 00 0a 00 02 80"},
    {"5.0 SUBACK",
     MQC_V5,
     {.type = MQC_SUBACK, .u.suback = {.packet_id = 10, .codes = S("\x01\x97\xa2")}},
     "90 06 00 0a 00 01 97 a2"},
    /* ---- UNSUBSCRIBE ---- */
    /* 3.1.1 Figure 3.30: "a/b", "c/d"; rem = 2 + 5 + 5 = 12 */
    {"3.1.1 UNSUBSCRIBE Figure 3.30",
     MQC_V311,
     {.type = MQC_UNSUBSCRIBE,
      .u.unsubscribe = {.packet_id = 10,
                        .filters = (const struct mqc_bytes[]){S("a/b"), S("c/d")},
                        .count = 2}},
     "a2 0c 00 0a 00 03 61 2f 62 00 03 63 2f 64"},
    {"5.0 UNSUBSCRIBE",
     MQC_V5,
     {.type = MQC_UNSUBSCRIBE,
      .u.unsubscribe = {.packet_id = 10,
                        .filters = (const struct mqc_bytes[]){S("a/b"), S("c/d")},
                        .count = 2}},
     "a2 0d 00 0a 00 00 03 61 2f 62 00 03 63 2f 64"},
    /* ---- UNSUBACK ---- */
    {"3.1.1 UNSUBACK has no payload",
     MQC_V311,
     {.type = MQC_UNSUBACK, .u.suback = {.packet_id = 10}},
     "b0 02 00 0a"},
    {"5.0 UNSUBACK codes 0x00 0x11",
     MQC_V5,
     {.type = MQC_UNSUBACK, .u.suback = {.packet_id = 10, .codes = S("\x00\x11")}},
     "b0 05 00 0a 00 00 11"},
    /* ---- PINGREQ, PINGRESP ---- */
    {"3.1.1 PINGREQ", MQC_V311, {.type = MQC_PINGREQ}, "c0 00"},
    {"5.0 PINGRESP", MQC_V5, {.type = MQC_PINGRESP}, "d0 00"},
    {"3.1 PINGREQ", MQC_V31, {.type = MQC_PINGREQ}, "c0 00"},
    /* ---- DISCONNECT, AUTH ---- */
    {"3.1.1 DISCONNECT", MQC_V311, {.type = MQC_DISCONNECT}, "e0 00"},
    {"5.0 DISCONNECT short form: Remaining Length 0 (§3.14.2.1)",
     MQC_V5,
     {.type = MQC_DISCONNECT},
     "e0 00"},
    {"5.0 DISCONNECT 0x04 without Property Length",
     MQC_V5,
     {.type = MQC_DISCONNECT, .u.reason = {.code = 0x04}},
     "e0 01 04"},
    /* Session Expiry 0 (5 bytes): rem = 1 + 1 + 5 = 7 */
    {"5.0 DISCONNECT code 0 with properties",
     MQC_V5,
     {.type = MQC_DISCONNECT, .u.reason = {.props = P("\x11\x00\x00\x00\x00")}},
     "e0 07 00 05 11 00 00 00 00"},
    {"5.0 AUTH short form", MQC_V5, {.type = MQC_AUTH}, "f0 00"},
    /* Authentication Method "m" (4 bytes): rem = 1 + 1 + 4 = 6 */
    {"5.0 AUTH continue with method",
     MQC_V5,
     {.type = MQC_AUTH, .u.reason = {.code = 0x18, .props = P("\x15\x00\x01m")}},
     "f0 06 18 04 15 00 01 6d"},
};

static const char *case_name(const void *c)
{
    return ((const struct enc_case *)c)->name;
}

/* Encodes into a buffer that ends at a page end (an over-write faults), compares the bytes;
 * checks MQC_ENOSPC with every smaller capacity leaves a sentinel-filled buffer untouched;
 * decodes the bytes back and compares with the source packet. */
static void run_case(void **state)
{
    const struct enc_case *c = *state;
    uint8_t want[256];
    size_t n = mqt_hex(c->hex, want, sizeof want), size = 0, written = 0;

    assert_err(mqc_size(&c->pkt, c->version, &size), MQC_OK);
    assert_int_equal(size, n);

    uint8_t fill[256];
    memset(fill, 0xEE, sizeof fill);
    struct mqt_guard g = {0};
    uint8_t *out = (uint8_t *)mqt_guard_put(&g, fill, n);
    assert_err(mqc_encode(&c->pkt, c->version, out, n, &written), MQC_OK);
    assert_int_equal(written, n);
    assert_memory_equal(out, want, n);

    for (size_t cap = 0; cap < n; cap++) {
        out = (uint8_t *)mqt_guard_put(&g, fill, n);
        written = 12345;
        assert_err(mqc_encode(&c->pkt, c->version, out, cap, &written), MQC_ENOSPC);
        assert_memory_equal(out, fill, n);
    }

    /* the fast paths agree */
    if (c->pkt.type == MQC_PUBLISH) {
        size_t pid_off = 999;
        assert_err(mqc_size_publish(&c->pkt.u.publish, c->version, &size), MQC_OK);
        assert_int_equal(size, n);
        out = (uint8_t *)mqt_guard_put(&g, fill, n);
        assert_err(mqc_encode_publish(&c->pkt.u.publish, c->version, out, n, &written, &pid_off),
                   MQC_OK);
        assert_memory_equal(out, want, n);
        if (c->pkt.u.publish.qos) {
            assert_int_equal(want[pid_off], c->pkt.u.publish.packet_id >> 8);
            assert_int_equal(want[pid_off + 1], c->pkt.u.publish.packet_id & 0xFF);
            /* it is the packet identifier's place: after the header and the topic */
            assert_int_equal(pid_off,
                             n - c->pkt.u.publish.payload.len - 2 -
                                 (c->version == MQC_V5
                                      ? c->pkt.u.publish.props.len +
                                            mqc_varint_size((uint32_t)c->pkt.u.publish.props.len)
                                      : 0));
        }
        for (size_t cap = 0; cap < n; cap++) {
            out = (uint8_t *)mqt_guard_put(&g, fill, n);
            assert_err(mqc_encode_publish(&c->pkt.u.publish, c->version, out, cap, &written, NULL),
                       MQC_ENOSPC);
            assert_memory_equal(out, fill, n);
        }
    }
    if (c->pkt.type >= MQC_PUBACK && c->pkt.type <= MQC_PUBCOMP) {
        out = (uint8_t *)mqt_guard_put(&g, fill, n);
        assert_err(mqc_encode_ack(c->pkt.type, &c->pkt.u.ack, c->version, out, n, &written),
                   MQC_OK);
        assert_int_equal(written, n);
        assert_memory_equal(out, want, n);
        for (size_t cap = 0; cap < n; cap++) {
            out = (uint8_t *)mqt_guard_put(&g, fill, n);
            assert_err(mqc_encode_ack(c->pkt.type, &c->pkt.u.ack, c->version, out, cap, &written),
                       MQC_ENOSPC);
            assert_memory_equal(out, fill, n);
        }
    }

    /* and the bytes decode to the packet they came from */
    struct mqc_packet back;
    memset(&back, 0, sizeof back);
    const uint8_t *in = mqt_guard_put(&g, want, n);
    assert_err(mqc_decode(in, n, c->version, &back), MQC_OK);
    assert_packet_eq(&c->pkt, &back, c->version);
    mqt_guard_free(&g);
}

struct bad_case {
    const char *name;
    uint8_t version;
    struct mqc_packet pkt;
    int want;
};

static uint8_t huge[1]; /* the size functions never read a payload */

static const struct bad_case bad[] = {
    /* PUBLISH */
    {"[MQTT-3.3.1-4] PUBLISH QoS 3",
     MQC_V311,
     {.type = MQC_PUBLISH, .u.publish = {.qos = 3, .topic = S("t"), .packet_id = 1}},
     MQC_EINVAL},
    {"[MQTT-3.3.1-2] PUBLISH DUP on QoS 0",
     MQC_V5,
     {.type = MQC_PUBLISH, .u.publish = {.dup = true, .topic = S("t")}},
     MQC_EINVAL},
    {"[MQTT-2.2.1-3] PUBLISH QoS 1 packet id 0",
     MQC_V5,
     {.type = MQC_PUBLISH, .u.publish = {.qos = 1, .topic = S("t")}},
     MQC_EINVAL},
    {"[MQTT-4.7.3-1] 3.1.1 PUBLISH empty topic",
     MQC_V311,
     {.type = MQC_PUBLISH, .u.publish = {.topic = NONE}},
     MQC_EINVAL},
    {"§3.3.2.1 5.0 PUBLISH empty topic without Topic Alias",
     MQC_V5,
     {.type = MQC_PUBLISH, .u.publish = {.topic = NONE, .props = P("\x01\x01")}},
     MQC_EINVAL},
    {"3.1.1 PUBLISH with properties",
     MQC_V311,
     {.type = MQC_PUBLISH, .u.publish = {.topic = S("t"), .props = P("\x01\x01")}},
     MQC_EINVAL},
    {"3.1 PUBLISH with properties",
     MQC_V31,
     {.type = MQC_PUBLISH, .u.publish = {.topic = S("t"), .props = P("\x01\x01")}},
     MQC_EINVAL},
    {"PUBLISH topic of 65536 bytes",
     MQC_V311,
     {.type = MQC_PUBLISH, .u.publish = {.topic = {huge, 65536}}},
     MQC_EINVAL},
    {"PUBLISH payload past the largest Remaining Length",
     MQC_V311,
     {.type = MQC_PUBLISH, .u.publish = {.topic = S("t"), .payload = {huge, 268435455 - 2}}},
     MQC_ETOOBIG},
    {"PUBLISH payload just fits the largest Remaining Length (size only)",
     MQC_V311,
     {.type = MQC_PUBLISH, .u.publish = {.topic = S("t"), .payload = {huge, 268435455 - 3}}},
     MQC_OK},
    /* acks */
    {"[MQTT-2.2.1-3] PUBACK packet id 0",
     MQC_V311,
     {.type = MQC_PUBACK, .u.ack = {.packet_id = 0}},
     MQC_EINVAL},
    {"3.1.1 PUBACK with a reason code",
     MQC_V311,
     {.type = MQC_PUBACK, .u.ack = {.packet_id = 1, .code = 0x10}},
     MQC_EINVAL},
    {"3.1 PUBREC with properties",
     MQC_V31,
     {.type = MQC_PUBREC, .u.ack = {.packet_id = 1, .props = P("\x1f\x00\x00")}},
     MQC_EINVAL},
    {"§3.4.2.1 5.0 PUBACK code 0x92 (PUBREL/PUBCOMP only)",
     MQC_V5,
     {.type = MQC_PUBACK, .u.ack = {.packet_id = 1, .code = 0x92}},
     MQC_EINVAL},
    {"§3.6.2.1 5.0 PUBREL code 0x10 (PUBACK/PUBREC only)",
     MQC_V5,
     {.type = MQC_PUBREL, .u.ack = {.packet_id = 1, .code = 0x10}},
     MQC_EINVAL},
    /* CONNECT */
    {"CONNECT version differs from the encoding version",
     MQC_V311,
     {.type = MQC_CONNECT, .u.connect = {.version = MQC_V5, .client_id = S("a")}},
     MQC_EINVAL},
    {"[MQTT-3.1.2-12] CONNECT will QoS 3",
     MQC_V311,
     {.type = MQC_CONNECT,
      .u.connect = {.version = MQC_V311, .will = true, .will_qos = 3, .will_topic = S("w")}},
     MQC_EINVAL},
    {"[MQTT-3.1.2-11] CONNECT will QoS without a will",
     MQC_V311,
     {.type = MQC_CONNECT, .u.connect = {.version = MQC_V311, .will_qos = 1}},
     MQC_EINVAL},
    {"[MQTT-3.1.2-13] CONNECT will retain without a will",
     MQC_V5,
     {.type = MQC_CONNECT, .u.connect = {.version = MQC_V5, .will_retain = true}},
     MQC_EINVAL},
    {"[MQTT-4.7.3-1] CONNECT will with an empty topic",
     MQC_V311,
     {.type = MQC_CONNECT, .u.connect = {.version = MQC_V311, .will = true}},
     MQC_EINVAL},
    {"[MQTT-3.1.2-22] 3.1.1 CONNECT password without user name",
     MQC_V311,
     {.type = MQC_CONNECT,
      .u.connect = {.version = MQC_V311, .has_password = true, .password = S("p")}},
     MQC_EINVAL},
    {"3.1.1 CONNECT with properties",
     MQC_V311,
     {.type = MQC_CONNECT, .u.connect = {.version = MQC_V311, .props = P("\x11\x00\x00\x00\x01")}},
     MQC_EINVAL},
    {"3.1.1 CONNECT with will properties",
     MQC_V311,
     {.type = MQC_CONNECT,
      .u.connect =
          {.version = MQC_V311, .will = true, .will_topic = S("w"), .will_props = P("\x01\x01")}},
     MQC_EINVAL},
    {"CONNECT client id of 65536 bytes",
     MQC_V5,
     {.type = MQC_CONNECT, .u.connect = {.version = MQC_V5, .client_id = {huge, 65536}}},
     MQC_EINVAL},
    {"CONNECT version 6", 6, {.type = MQC_CONNECT, .u.connect = {.version = 6}}, MQC_EINVAL},
    /* CONNACK */
    {"3.1.1 CONNACK return code 6",
     MQC_V311,
     {.type = MQC_CONNACK, .u.connack = {.code = 6}},
     MQC_EINVAL},
    {"[MQTT-3.2.2-6] CONNACK session present with a refusal",
     MQC_V5,
     {.type = MQC_CONNACK, .u.connack = {.session_present = true, .code = 0x80}},
     MQC_EINVAL},
    {"5.0 CONNACK reason code 0x01",
     MQC_V5,
     {.type = MQC_CONNACK, .u.connack = {.code = 0x01}},
     MQC_EINVAL},
    {"3.1.1 CONNACK with properties",
     MQC_V311,
     {.type = MQC_CONNACK, .u.connack = {.props = P("\x25\x00")}},
     MQC_EINVAL},
    /* SUBSCRIBE / UNSUBSCRIBE */
    {"[MQTT-3.8.3-2] empty SUBSCRIBE",
     MQC_V5,
     {.type = MQC_SUBSCRIBE, .u.subscribe = {.packet_id = 1}},
     MQC_EINVAL},
    {"[MQTT-2.2.1-3] SUBSCRIBE packet id 0",
     MQC_V311,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.subs = (const struct mqc_sub[]){{S("a"), 0}}, .count = 1}},
     MQC_EINVAL},
    {"SUBSCRIBE empty filter",
     MQC_V311,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.packet_id = 1, .subs = (const struct mqc_sub[]){{NONE, 0}}, .count = 1}},
     MQC_EINVAL},
    {"SUBSCRIBE QoS 3",
     MQC_V5,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.packet_id = 1, .subs = (const struct mqc_sub[]){{S("a"), 3}}, .count = 1}},
     MQC_EINVAL},
    {"[MQTT-3.8.3-5] SUBSCRIBE reserved option bits",
     MQC_V5,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.packet_id = 1,
                      .subs = (const struct mqc_sub[]){{S("a"), 0x40}},
                      .count = 1}},
     MQC_EINVAL},
    {"§3.8.3.1 SUBSCRIBE Retain Handling 3",
     MQC_V5,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.packet_id = 1,
                      .subs = (const struct mqc_sub[]){{S("a"), 0x30}},
                      .count = 1}},
     MQC_EINVAL},
    {"[MQTT-3.8.3-4] SUBSCRIBE No Local on $share",
     MQC_V5,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.packet_id = 1,
                      .subs = (const struct mqc_sub[]){{S("$share/g/a"), 0x04}},
                      .count = 1}},
     MQC_EINVAL},
    {"3.1.1 SUBSCRIBE with 5.0 options (No Local)",
     MQC_V311,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.packet_id = 1,
                      .subs = (const struct mqc_sub[]){{S("a"), 0x04}},
                      .count = 1}},
     MQC_EINVAL},
    {"3.1.1 SUBSCRIBE with properties",
     MQC_V311,
     {.type = MQC_SUBSCRIBE,
      .u.subscribe = {.packet_id = 1,
                      .props = P("\x0b\x01"),
                      .subs = (const struct mqc_sub[]){{S("a"), 0}},
                      .count = 1}},
     MQC_EINVAL},
    {"[MQTT-3.10.3-2] empty UNSUBSCRIBE",
     MQC_V311,
     {.type = MQC_UNSUBSCRIBE, .u.unsubscribe = {.packet_id = 1}},
     MQC_EINVAL},
    {"UNSUBSCRIBE packet id 0",
     MQC_V5,
     {.type = MQC_UNSUBSCRIBE,
      .u.unsubscribe = {.filters = (const struct mqc_bytes[]){S("a")}, .count = 1}},
     MQC_EINVAL},
    /* SUBACK / UNSUBACK */
    {"SUBACK without codes",
     MQC_V311,
     {.type = MQC_SUBACK, .u.suback = {.packet_id = 1}},
     MQC_EINVAL},
    {"[MQTT-3.9.3-2] 3.1.1 SUBACK code 3",
     MQC_V311,
     {.type = MQC_SUBACK, .u.suback = {.packet_id = 1, .codes = S("\x03")}},
     MQC_EINVAL},
    {"5.0 SUBACK code 0x11 (UNSUBACK only)",
     MQC_V5,
     {.type = MQC_SUBACK, .u.suback = {.packet_id = 1, .codes = S("\x11")}},
     MQC_EINVAL},
    {"3.1.1 UNSUBACK with codes",
     MQC_V311,
     {.type = MQC_UNSUBACK, .u.suback = {.packet_id = 1, .codes = S("\x00")}},
     MQC_EINVAL},
    {"5.0 UNSUBACK without codes",
     MQC_V5,
     {.type = MQC_UNSUBACK, .u.suback = {.packet_id = 1}},
     MQC_EINVAL},
    /* DISCONNECT / AUTH */
    {"3.1.1 DISCONNECT with a reason code",
     MQC_V311,
     {.type = MQC_DISCONNECT, .u.reason = {.code = 0x04}},
     MQC_EINVAL},
    {"3.1.1 DISCONNECT with properties",
     MQC_V311,
     {.type = MQC_DISCONNECT, .u.reason = {.props = P("\x11\x00\x00\x00\x00")}},
     MQC_EINVAL},
    {"5.0 DISCONNECT code 0x18 (AUTH only)",
     MQC_V5,
     {.type = MQC_DISCONNECT, .u.reason = {.code = 0x18}},
     MQC_EINVAL},
    {"3.1.1 AUTH", MQC_V311, {.type = MQC_AUTH}, MQC_EINVAL},
    {"3.1 AUTH", MQC_V31, {.type = MQC_AUTH}, MQC_EINVAL},
    {"5.0 AUTH code 0x04", MQC_V5, {.type = MQC_AUTH, .u.reason = {.code = 0x04}}, MQC_EINVAL},
    /* any packet */
    {"packet type 0", MQC_V311, {.type = 0}, MQC_EINVAL},
    {"packet type 16", MQC_V5, {.type = 16}, MQC_EINVAL},
    {"version 2", 2, {.type = MQC_PINGREQ}, MQC_EINVAL},
    {"version 6", 6, {.type = MQC_PINGREQ}, MQC_EINVAL},
};

static const char *bad_name(const void *c)
{
    return ((const struct bad_case *)c)->name;
}

/* mqc_size and mqc_encode give the same error, and the output buffer stays untouched. */
static void run_bad(void **state)
{
    const struct bad_case *c = *state;
    size_t size = 777, written = 777;
    uint8_t out[64];
    memset(out, 0xEE, sizeof out);
    assert_err(mqc_size(&c->pkt, c->version, &size), c->want);
    if (c->want == MQC_OK)
        return; /* size-only case: nothing to encode into */
    assert_err(mqc_encode(&c->pkt, c->version, out, sizeof out, &written), c->want);
    for (size_t i = 0; i < sizeof out; i++)
        assert_int_equal(out[i], 0xEE);
    if (c->pkt.type == MQC_PUBLISH) {
        assert_err(mqc_size_publish(&c->pkt.u.publish, c->version, &size), c->want);
        assert_err(
            mqc_encode_publish(&c->pkt.u.publish, c->version, out, sizeof out, &written, NULL),
            c->want);
        for (size_t i = 0; i < sizeof out; i++)
            assert_int_equal(out[i], 0xEE);
    }
    if (c->pkt.type >= MQC_PUBACK && c->pkt.type <= MQC_PUBCOMP)
        assert_err(
            mqc_encode_ack(c->pkt.type, &c->pkt.u.ack, c->version, out, sizeof out, &written),
            c->want);
}

/* The largest PUBLISH: Remaining Length 268435455 is 4 length bytes; size = 1 + 4 + rem. */
static void largest_size(void **state)
{
    (void)state;
    struct mqc_publish p = {.topic = S("t"), .payload = {huge, 268435455 - 3}};
    size_t size = 0;
    assert_err(mqc_size_publish(&p, MQC_V311, &size), MQC_OK);
    assert_int_equal(size, 1 + 4 + 268435455u);
    /* one byte more does not fit any Remaining Length */
    p.payload.len++;
    assert_err(mqc_size_publish(&p, MQC_V311, &size), MQC_ETOOBIG);
    /* a too-big packet is refused before anything is written or read */
    uint8_t out[8];
    size_t w = 0;
    memset(out, 0xEE, sizeof out);
    assert_err(mqc_encode_publish(&p, MQC_V311, out, sizeof out, &w, NULL), MQC_ETOOBIG);
    assert_int_equal(out[0], 0xEE);
}

/* mqc_encode_ack refuses types that are not acks. */
static void ack_types(void **state)
{
    (void)state;
    struct mqc_ack a = {.packet_id = 1};
    uint8_t out[8];
    size_t w;
    static const uint8_t types[] = {0, MQC_CONNECT, MQC_PUBLISH, MQC_SUBSCRIBE, MQC_AUTH, 16};
    for (size_t i = 0; i < sizeof types; i++)
        assert_err(mqc_encode_ack(types[i], &a, MQC_V311, out, sizeof out, &w), MQC_EINVAL);
}

/* 5.0 acks: the short form exactly when the code is 0 and there are no properties (4 bytes at
 * most, as relay queues assume). */
static void ack_forms(void **state)
{
    (void)state;
    for (uint8_t t = MQC_PUBACK; t <= MQC_PUBCOMP; t++) {
        struct mqc_ack a = {.packet_id = 0xABCD};
        uint8_t out[16];
        size_t w = 0;
        assert_err(mqc_encode_ack(t, &a, MQC_V5, out, 4, &w), MQC_OK);
        assert_int_equal(w, 4);
        assert_int_equal(out[0], (uint8_t)(t << 4 | (t == MQC_PUBREL ? 2 : 0)));
        assert_int_equal(out[1], 2);
        assert_int_equal(out[2], 0xAB);
        assert_int_equal(out[3], 0xCD);
    }
}

/* PUBLISH pid_off points at the identifier in the output: the relay patches it later. */
static void publish_pid_off(void **state)
{
    (void)state;
    struct mqc_publish p = {.qos = 2,
                            .topic = S("x/y/z"),
                            .packet_id = 0x0102,
                            .props = P("\x26\x00\x01k\x00\x01v"),
                            .payload = S("data")};
    uint8_t out[64];
    size_t w = 0, off = 0;
    assert_err(mqc_encode_publish(&p, MQC_V5, out, sizeof out, &w, &off), MQC_OK);
    assert_int_equal(off, 2 + 7); /* 2-byte header, then the 2+5-byte topic */
    assert_int_equal(out[off], 0x01);
    assert_int_equal(out[off + 1], 0x02);
    out[off] = 0xBE;
    out[off + 1] = 0xEF;
    out[0] |= 0x08; /* bit 3 of out[0] is DUP */
    struct mqc_publish d;
    assert_err(mqc_decode_publish(out, w, MQC_V5, &d), MQC_OK);
    assert_int_equal(d.packet_id, 0xBEEF);
    assert_true(d.dup);
    assert_int_equal(d.qos, 2);
}

/* The relay decodes on one link and encodes on another, often of another version: a decoded
 * packet re-encodes for the other version, or is refused (MQC_EINVAL) when it carries what
 * that version cannot hold. */
static void cross_version(void **state)
{
    (void)state;
    uint8_t in[64], out[64];
    size_t n, w = 0;
    struct mqc_packet pkt;

    /* 3.1.1 PUBLISH -> 5.0: a Property Length 0 appears after the packet id */
    n = mqt_hex("32 09 00 03 61 2f 62 00 0a 68 69", in, sizeof in);
    assert_err(mqc_decode(in, n, MQC_V311, &pkt), MQC_OK);
    assert_err(mqc_encode(&pkt, MQC_V5, out, sizeof out, &w), MQC_OK);
    uint8_t want5[64];
    size_t n5 = mqt_hex("32 0a 00 03 61 2f 62 00 0a 00 68 69", want5, sizeof want5);
    assert_int_equal(w, n5);
    assert_memory_equal(out, want5, n5);
    /* ... and back to 3.1 (the decoded packet borrows from its input: encode elsewhere) */
    uint8_t mid[64];
    memcpy(mid, out, w);
    assert_err(mqc_decode(mid, w, MQC_V5, &pkt), MQC_OK);
    assert_err(mqc_encode(&pkt, MQC_V31, out, sizeof out, &w), MQC_OK);
    assert_int_equal(w, n);
    assert_memory_equal(out, in, n);

    /* 5.0 PUBLISH with properties -> 3.1.1: refused until the properties are dropped */
    n = mqt_hex("32 0c 00 03 61 2f 62 00 0a 02 01 01 68 69", in, sizeof in);
    assert_err(mqc_decode(in, n, MQC_V5, &pkt), MQC_OK);
    memset(out, 0xEE, sizeof out);
    assert_err(mqc_encode(&pkt, MQC_V311, out, sizeof out, &w), MQC_EINVAL);
    assert_int_equal(out[0], 0xEE);
    pkt.u.publish.props.len = 0;
    assert_err(mqc_encode(&pkt, MQC_V311, out, sizeof out, &w), MQC_OK);
    assert_int_equal(w, 11);
    assert_memory_equal(out,
                        "\x32\x09\x00\x03"
                        "a/b\x00\x0a"
                        "hi",
                        11);

    /* 3.1.1 SUBSCRIBE (decoded: raw entries) -> 5.0 */
    n = mqt_hex("82 0e 00 0a 00 03 61 2f 62 01 00 03 63 2f 64 02", in, sizeof in);
    assert_err(mqc_decode(in, n, MQC_V311, &pkt), MQC_OK);
    assert_err(mqc_encode(&pkt, MQC_V5, out, sizeof out, &w), MQC_OK);
    n5 = mqt_hex("82 0f 00 0a 00 00 03 61 2f 62 01 00 03 63 2f 64 02", want5, sizeof want5);
    assert_int_equal(w, n5);
    assert_memory_equal(out, want5, n5);

    /* 5.0 SUBSCRIBE with No Local (decoded: raw entries) -> 3.1.1: the option cannot go */
    n = mqt_hex("82 07 00 0a 00 00 01 61 05", in, sizeof in);
    assert_err(mqc_decode(in, n, MQC_V5, &pkt), MQC_OK);
    assert_err(mqc_size(&pkt, MQC_V311, &w), MQC_EINVAL);
    assert_err(mqc_encode(&pkt, MQC_V311, out, sizeof out, &w), MQC_EINVAL);

    /* 5.0 PUBACK with a reason code -> 3.1.1: refused; code 0 short form -> 3.1.1 fine */
    n = mqt_hex("40 03 00 0a 10", in, sizeof in);
    assert_err(mqc_decode(in, n, MQC_V5, &pkt), MQC_OK);
    assert_err(mqc_encode(&pkt, MQC_V311, out, sizeof out, &w), MQC_EINVAL);
    n = mqt_hex("40 04 00 0a 00 00", in, sizeof in);
    assert_err(mqc_decode(in, n, MQC_V5, &pkt), MQC_OK);
    assert_err(mqc_encode(&pkt, MQC_V311, out, sizeof out, &w), MQC_OK);
    assert_int_equal(w, 4);
    assert_memory_equal(out, "\x40\x02\x00\x0a", 4);

    /* 5.0 PUBLISH with an empty topic (Topic Alias) cannot go to 3.1.1 even without props */
    n = mqt_hex("30 08 00 00 03 23 00 05 68 69", in, sizeof in);
    assert_err(mqc_decode(in, n, MQC_V5, &pkt), MQC_OK);
    pkt.u.publish.props.len = 0;
    assert_err(mqc_encode(&pkt, MQC_V311, out, sizeof out, &w), MQC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(largest_size),  cmocka_unit_test(ack_types),
        cmocka_unit_test(ack_forms),     cmocka_unit_test(publish_pid_off),
        cmocka_unit_test(cross_version),
    };
    int failed = mqt_run_table("encode exact bytes", cases, sizeof cases / sizeof cases[0],
                               sizeof cases[0], case_name, run_case);
    failed += mqt_run_table("encode refusals", bad, sizeof bad / sizeof bad[0], sizeof bad[0],
                            bad_name, run_bad);
    failed += cmocka_run_group_tests_name("encode", tests, NULL, NULL);
    return failed;
}
