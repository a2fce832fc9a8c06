/* decode.c: MQTT 3.1 / 3.1.1 / 5.0 §3 packets, receiving side: every malformed case of
 * enum mqc_err and of mqttcodec.h's contracts, plus field extraction. Statement numbers are
 * MQTT 5.0's unless marked 3.1.1. Every input sits at the end of a page (an over-read faults). */
#include "mqc_testutil.h"

#include <stdlib.h>
#include <string.h>

static int decode_hex(const char *hex, uint8_t version, struct mqc_packet *out, uint8_t *buf,
                      size_t cap, struct mqt_guard *g, const uint8_t **where)
{
    size_t n = mqt_hex(hex, buf, cap);
    const uint8_t *p = mqt_guard_put(g, buf, n);
    if (where)
        *where = p;
    memset(out, 0xA5, sizeof *out);
    return mqc_decode(p, n, version, out);
}

/* ---- the table of malformed (and a few edge-valid) packets -------------------------------- */

struct dec_case {
    const char *name;
    uint8_t version;
    const char *hex;
    int want;
};

#define V31 MQC_V31
#define V311 MQC_V311
#define V5 MQC_V5

static const struct dec_case cases[] = {
    /* framing inside a frame */
    {"[MQTT-2.1.3] packet type 0", V311, "00 00", MQC_ETYPE},
    {"[MQTT-1.5.5-1] overlong Remaining Length", V311, "c0 80 00", MQC_EVARINT},

    /* ---- PUBLISH ---- */
    {"[MQTT-3.3.1-4] PUBLISH QoS 3 (3.1.1)", V311, "36 07 00 01 74 00 01 68 69", MQC_EQOS},
    {"[MQTT-3.3.1-4] PUBLISH QoS 3 (5.0)", V5, "36 08 00 01 74 00 01 00 68 69", MQC_EQOS},
    {"[MQTT-3.3.1-4] PUBLISH QoS 3 (3.1)", V31, "36 07 00 01 74 00 01 68 69", MQC_EQOS},
    {"[MQTT-3.3.1-4] PUBLISH QoS 3 with DUP and RETAIN", V311, "3f 07 00 01 74 00 01 68 69",
     MQC_EQOS},
    {"[MQTT-3.3.1-2] PUBLISH DUP with QoS 0 (3.1.1)", V311, "38 05 00 01 74 68 69", MQC_EQOS},
    {"[MQTT-3.3.1-2] PUBLISH DUP with QoS 0 (5.0)", V5, "38 06 00 01 74 00 68 69", MQC_EQOS},
    {"PUBLISH DUP with QoS 1 is fine", V5, "3a 08 00 01 74 00 01 00 68 69", MQC_OK},
    {"[MQTT-2.3.1-1] 3.1.1 PUBLISH QoS 1 packet id 0", V311, "32 05 00 01 74 00 00", MQC_EPACKETID},
    {"[MQTT-2.2.1-3] 5.0 PUBLISH QoS 2 packet id 0", V5, "34 06 00 01 74 00 00 00", MQC_EPACKETID},
    {"[MQTT-2.3.1-1] 3.1 PUBLISH QoS 1 packet id 0", V31, "32 05 00 01 74 00 00", MQC_EPACKETID},
    {"[MQTT-3.3.2-2] PUBLISH topic with + (3.1.1)", V311, "30 05 00 03 61 2f 2b", MQC_ETOPIC},
    {"[MQTT-3.3.2-2] PUBLISH topic with # (5.0)", V5, "30 06 00 03 61 2f 23 00", MQC_ETOPIC},
    {"[MQTT-3.3.2-2] PUBLISH topic + alone (3.1)", V31, "30 03 00 01 2b", MQC_ETOPIC},
    {"[MQTT-4.7.3-1] 3.1.1 PUBLISH empty topic", V311, "30 04 00 00 68 69", MQC_ETOPIC},
    {"[MQTT-4.7.3-1] 3.1 PUBLISH empty topic", V31, "30 02 00 00", MQC_ETOPIC},
    {"§3.3.2.1 5.0 PUBLISH empty topic without Topic Alias", V5, "30 05 00 00 00 68 69",
     MQC_ETOPIC},
    {"§3.3.2.1 5.0 PUBLISH empty topic, other properties but no Topic Alias", V5,
     "30 05 00 00 02 01 01", MQC_ETOPIC},
    {"§3.3.2.3.4 5.0 PUBLISH empty topic with Topic Alias", V5, "30 08 00 00 03 23 00 01 68 69",
     MQC_OK},
    {"[MQTT-3.3.2-8] 5.0 PUBLISH Topic Alias 0", V5, "30 07 00 01 74 03 23 00 00", MQC_EPROPVAL},
    {"[MQTT-1.5.4-1] PUBLISH topic overlong UTF-8", V311, "30 04 00 02 c0 af", MQC_EUTF8},
    {"[MQTT-1.5.4-2] PUBLISH topic with U+0000", V5, "30 05 00 02 61 00 00", MQC_EUTF8},
    {"[MQTT-1.5.4-1] PUBLISH topic with a surrogate", V311, "30 05 00 03 ed a0 80", MQC_EUTF8},
    {"PUBLISH topic length overruns the packet", V311, "30 03 00 05 61", MQC_EMALFORMED},
    {"PUBLISH topic length cut", V311, "30 01 00", MQC_EMALFORMED},
    {"PUBLISH empty body", V311, "30 00", MQC_EMALFORMED},
    {"PUBLISH QoS 1 packet id missing", V311, "32 03 00 01 74", MQC_EMALFORMED},
    {"PUBLISH QoS 1 packet id cut", V311, "32 04 00 01 74 00", MQC_EMALFORMED},
    {"§3.3.2.3 5.0 PUBLISH Property Length missing", V5, "30 03 00 01 74", MQC_EMALFORMED},
    {"5.0 PUBLISH Property Length overruns", V5, "30 05 00 01 74 05 01", MQC_EMALFORMED},
    {"[MQTT-1.5.5-1] 5.0 PUBLISH Property Length overlong", V5, "30 06 00 01 74 80 00 68",
     MQC_EVARINT},
    {"§2.2.2.2 5.0 PUBLISH with Session Expiry (not a PUBLISH property)", V5,
     "30 09 00 01 74 05 11 00 00 00 0a", MQC_EPROPID},
    {"§2.2.2.2 5.0 PUBLISH with unknown property 0x05", V5, "30 06 00 01 74 02 05 00", MQC_EPROPID},
    {"§2.2.2.2 5.0 PUBLISH Content Type twice", V5, "30 0c 00 01 74 08 03 00 01 61 03 00 01 62",
     MQC_EPROPDUP},
    {"§3.3.2.3.8 5.0 PUBLISH several Subscription Identifiers", V5,
     "30 0a 00 01 74 06 0b 01 0b 02 0b 03", MQC_OK},
    {"§3.3.2.3.2 5.0 PUBLISH Payload Format Indicator 2", V5, "30 06 00 01 74 02 01 02",
     MQC_EPROPVAL},
    {"[MQTT-3.3.2-14] 5.0 PUBLISH Response Topic with a wildcard", V5,
     "30 09 00 01 74 05 08 00 02 61 23", MQC_EPROPVAL},
    {"3.1.1 PUBLISH: bytes after the topic are payload, not properties", V311,
     "30 05 00 01 74 05 01", MQC_OK},
    {"PUBLISH empty payload", V5, "30 04 00 01 74 00", MQC_OK},

    /* ---- CONNECT ---- */
    {"[MQTT-3.1.2-1] CONNECT protocol name MQTX", V311,
     "10 0d 00 04 4d 51 54 58 04 02 00 3c 00 01 61", MQC_EPROTONAME},
    {"[MQTT-3.1.2-1] CONNECT protocol name mqtt (case)", V311,
     "10 0d 00 04 6d 71 74 74 04 02 00 3c 00 01 61", MQC_EPROTONAME},
    {"[MQTT-3.1.2-1] CONNECT protocol name MQIsdp with level 4", V311,
     "10 0f 00 06 4d 51 49 73 64 70 04 02 00 3c 00 01 61", MQC_EPROTONAME},
    {"[MQTT-3.1.2-1] CONNECT protocol name MQIsdp with level 5", V5,
     "10 0f 00 06 4d 51 49 73 64 70 05 02 00 3c 00 01 61", MQC_EPROTONAME},
    {"[MQTT-3.1.2-2] CONNECT protocol name MQTT with level 3", V31,
     "10 0d 00 04 4d 51 54 54 03 02 00 3c 00 01 61", MQC_EPROTONAME},
    {"[MQTT-3.1.2-2] CONNECT level 6", V5, "10 0d 00 04 4d 51 54 54 06 02 00 3c 00 01 61",
     MQC_EPROTONAME},
    {"[MQTT-3.1.2-2] CONNECT level 2", V311, "10 0d 00 04 4d 51 54 54 02 02 00 3c 00 01 61",
     MQC_EPROTONAME},
    {"[MQTT-3.1.2-2] CONNECT level 0x86 (bridge bit on level 6)", V311,
     "10 0d 00 04 4d 51 54 54 86 02 00 3c 00 01 61", MQC_EPROTONAME},
    {"CONNECT bridge bit on 3.1.1 (level 0x84)", V311,
     "10 0d 00 04 4d 51 54 54 84 02 00 3c 00 01 61", MQC_OK},
    {"CONNECT bridge bit on 3.1 (level 0x83)", V31,
     "10 0f 00 06 4d 51 49 73 64 70 83 02 00 3c 00 01 61", MQC_OK},
    {"CONNECT protocol name cut", V311, "10 03 00 04 4d", MQC_EMALFORMED},
    {"CONNECT keep alive cut", V311, "10 09 00 04 4d 51 54 54 04 02 00", MQC_EMALFORMED},
    {"CONNECT client id missing", V311, "10 0a 00 04 4d 51 54 54 04 02 00 3c", MQC_EMALFORMED},
    {"[MQTT-3.1.2-3] CONNECT reserved flag bit 0 set", V311,
     "10 0d 00 04 4d 51 54 54 04 03 00 3c 00 01 61", MQC_EFLAGS},
    {"[MQTT-3.1.2-3] 5.0 CONNECT reserved flag bit 0 set", V5,
     "10 0e 00 04 4d 51 54 54 05 03 00 3c 00 00 01 61", MQC_EFLAGS},
    {"3.1.1 [MQTT-3.1.2-13] CONNECT Will QoS 1 without Will Flag", V311,
     "10 0d 00 04 4d 51 54 54 04 0a 00 3c 00 01 61", MQC_EWILL},
    {"[MQTT-3.1.2-11] 5.0 CONNECT Will QoS 2 without Will Flag", V5,
     "10 0e 00 04 4d 51 54 54 05 12 00 3c 00 00 01 61", MQC_EWILL},
    {"3.1.1 [MQTT-3.1.2-15] CONNECT Will Retain without Will Flag", V311,
     "10 0d 00 04 4d 51 54 54 04 22 00 3c 00 01 61", MQC_EWILL},
    {"[MQTT-3.1.2-13] 5.0 CONNECT Will Retain without Will Flag", V5,
     "10 0e 00 04 4d 51 54 54 05 22 00 3c 00 00 01 61", MQC_EWILL},
    {"3.1.1 [MQTT-3.1.2-14] CONNECT Will QoS 3", V311,
     "10 13 00 04 4d 51 54 54 04 1e 00 3c 00 01 61 00 01 77 00 01 78", MQC_EWILL},
    {"[MQTT-3.1.2-12] 5.0 CONNECT Will QoS 3", V5,
     "10 15 00 04 4d 51 54 54 05 1c 00 3c 00 00 01 61 00 00 01 77 00 01 78", MQC_EWILL},
    {"3.1.1 [MQTT-3.1.2-22] CONNECT password without user name", V311,
     "10 10 00 04 4d 51 54 54 04 42 00 3c 00 01 61 00 01 70", MQC_EWILL},
    {"3.1 CONNECT password without user name", V31,
     "10 12 00 06 4d 51 49 73 64 70 03 42 00 3c 00 01 61 00 01 70", MQC_EWILL},
    {"§3.1.2.9 5.0 CONNECT password without user name is allowed", V5,
     "10 11 00 04 4d 51 54 54 05 42 00 3c 00 00 01 61 00 01 70", MQC_OK},
    {"CONNECT user name flag but no user name", V311,
     "10 0d 00 04 4d 51 54 54 04 82 00 3c 00 01 61", MQC_EMALFORMED},
    {"CONNECT password flag but no password", V311,
     "10 10 00 04 4d 51 54 54 04 c2 00 3c 00 01 61 00 01 75", MQC_EMALFORMED},
    {"CONNECT will flag but no will topic", V311, "10 0d 00 04 4d 51 54 54 04 06 00 3c 00 01 61",
     MQC_EMALFORMED},
    {"CONNECT will flag but no will payload", V311,
     "10 10 00 04 4d 51 54 54 04 06 00 3c 00 01 61 00 01 77", MQC_EMALFORMED},
    {"[MQTT-3.1.3-11] CONNECT will topic with a wildcard", V311,
     "10 13 00 04 4d 51 54 54 04 06 00 3c 00 01 61 00 01 23 00 01 78", MQC_ETOPIC},
    {"[MQTT-3.1.3-11] CONNECT will topic empty", V311,
     "10 12 00 04 4d 51 54 54 04 06 00 3c 00 01 61 00 00 00 01 78", MQC_ETOPIC},
    {"[MQTT-3.1.3-4] CONNECT client id invalid UTF-8", V311,
     "10 0d 00 04 4d 51 54 54 04 02 00 3c 00 01 ff", MQC_EUTF8},
    {"[MQTT-3.1.3-12] CONNECT user name with U+0000", V311,
     "10 10 00 04 4d 51 54 54 04 82 00 3c 00 01 61 00 01 00", MQC_EUTF8},
    {"CONNECT password is binary: any bytes", V311,
     "10 14 00 04 4d 51 54 54 04 c2 00 3c 00 01 61 00 01 75 00 02 00 ff", MQC_OK},
    {"CONNECT will payload is binary: any bytes", V311,
     "10 13 00 04 4d 51 54 54 04 06 00 3c 00 01 61 00 01 77 00 01 c0", MQC_OK},
    {"CONNECT bytes after the last field", V311, "10 0e 00 04 4d 51 54 54 04 02 00 3c 00 01 61 00",
     MQC_ETRAILING},
    {"5.0 CONNECT bytes after the password", V5,
     "10 12 00 04 4d 51 54 54 05 42 00 3c 00 00 01 61 00 01 70 00", MQC_ETRAILING},
    {"5.0 CONNECT Property Length missing", V5, "10 0a 00 04 4d 51 54 54 05 02 00 3c",
     MQC_EMALFORMED},
    {"§3.1.2.11.3 5.0 CONNECT Receive Maximum 0", V5,
     "10 11 00 04 4d 51 54 54 05 02 00 3c 03 21 00 00 00 01 61", MQC_EPROPVAL},
    {"§3.1.2.11.4 5.0 CONNECT Maximum Packet Size 0", V5,
     "10 13 00 04 4d 51 54 54 05 02 00 3c 05 27 00 00 00 00 00 01 61", MQC_EPROPVAL},
    {"§3.1.2.11.10 5.0 CONNECT Authentication Data without Method", V5,
     "10 12 00 04 4d 51 54 54 05 02 00 3c 04 16 00 01 78 00 01 61", MQC_EPROTOCOL},
    {"5.0 CONNECT Authentication Method and Data", V5,
     "10 16 00 04 4d 51 54 54 05 02 00 3c 08 15 00 01 6d 16 00 01 78 00 01 61", MQC_OK},
    {"§2.2.2.2 5.0 CONNECT with Topic Alias (PUBLISH only)", V5,
     "10 11 00 04 4d 51 54 54 05 02 00 3c 03 23 00 01 00 01 61", MQC_EPROPID},
    {"§2.2.2.2 5.0 CONNECT with Will Delay Interval outside the will", V5,
     "10 13 00 04 4d 51 54 54 05 02 00 3c 05 18 00 00 00 01 00 01 61", MQC_EPROPID},
    {"§3.1.3.2 5.0 CONNECT will properties with Session Expiry", V5,
     "10 1a 00 04 4d 51 54 54 05 06 00 3c 00 00 01 61 05 11 00 00 00 01 00 01 77 00 01 78",
     MQC_EPROPID},
    {"§3.1.3.2.2 5.0 CONNECT will properties with Will Delay Interval", V5,
     "10 1a 00 04 4d 51 54 54 05 06 00 3c 00 00 01 61 05 18 00 00 00 01 00 01 77 00 01 78", MQC_OK},
    {"5.0 CONNECT will Property Length overruns", V5,
     "10 12 00 04 4d 51 54 54 05 06 00 3c 00 00 01 61 7f 00 01 77", MQC_EMALFORMED},
    {"§3.1.2.11.2 5.0 CONNECT Session Expiry twice", V5,
     "10 18 00 04 4d 51 54 54 05 02 00 3c 0a 11 00 00 00 01 11 00 00 00 02 00 01 61", MQC_EPROPDUP},

    /* ---- CONNACK ---- */
    {"3.1.1 §3.2.2.3 CONNACK return code 6 (reserved)", V311, "20 02 00 06", MQC_EREASON},
    {"3.1 CONNACK return code 0xff", V31, "20 02 00 ff", MQC_EREASON},
    {"3.1.1 [MQTT-3.2.2-1] CONNACK reserved acknowledge flag bit 1", V311, "20 02 02 00",
     MQC_EFLAGS},
    {"[MQTT-3.2.2-1] 5.0 CONNACK reserved acknowledge flag bit 7", V5, "20 03 80 00 00",
     MQC_EFLAGS},
    {"3.1.1 [MQTT-3.2.2-4] CONNACK session present with a refusal", V311, "20 02 01 05",
     MQC_EPROTOCOL},
    {"[MQTT-3.2.2-6] 5.0 CONNACK session present with a refusal", V5, "20 03 01 87 00",
     MQC_EPROTOCOL},
    {"3.1.1 CONNACK carrying a Property Length (5.0 content)", V311, "20 03 00 00 00", MQC_EV5ONLY},
    {"CONNACK cut after the flags", V311, "20 01 00", MQC_EMALFORMED},
    {"§3.2.2.3 5.0 CONNACK without Property Length", V5, "20 02 00 00", MQC_EMALFORMED},
    {"§3.2.2.2 5.0 CONNACK reason code 0x01", V5, "20 03 00 01 00", MQC_EREASON},
    {"§3.2.2.2 5.0 CONNACK reason code 0x05 (a 3.1.1 code)", V5, "20 03 00 05 00", MQC_EREASON},
    {"§3.2.2.2 5.0 CONNACK reason code 0x8E (DISCONNECT only)", V5, "20 03 00 8e 00", MQC_EREASON},
    {"5.0 CONNACK with Topic Alias (PUBLISH only)", V5, "20 06 00 00 03 23 00 01", MQC_EPROPID},
    {"5.0 CONNACK Retain Available 2", V5, "20 05 00 00 02 25 02", MQC_EPROPVAL},
    {"5.0 CONNACK Maximum QoS 2 (BifroMQ; the receiver clamps)", V5, "20 05 00 00 02 24 02",
     MQC_OK},
    {"5.0 CONNACK bytes after the properties", V5, "20 04 00 00 00 00", MQC_ETRAILING},
    {"5.0 CONNACK Property Length overruns", V5, "20 04 00 00 02 25", MQC_EMALFORMED},

    /* ---- PUBACK, PUBREC, PUBREL, PUBCOMP ---- */
    {"3.1.1 [MQTT-2.3.1-1] PUBACK packet id 0", V311, "40 02 00 00", MQC_EPACKETID},
    {"5.0 PUBREC packet id 0", V5, "50 02 00 00", MQC_EPACKETID},
    {"3.1.1 PUBREL packet id 0", V311, "62 02 00 00", MQC_EPACKETID},
    {"5.0 PUBCOMP packet id 0", V5, "70 02 00 00", MQC_EPACKETID},
    {"PUBACK cut", V311, "40 01 00", MQC_EMALFORMED},
    {"PUBACK empty", V5, "40 00", MQC_EMALFORMED},
    {"3.1.1 PUBACK with a reason code (5.0 content)", V311, "40 03 00 01 00", MQC_EV5ONLY},
    {"3.1 PUBREC with a reason code (5.0 content)", V31, "50 03 00 01 10", MQC_EV5ONLY},
    {"3.1.1 PUBCOMP with reason code and properties", V311, "70 04 00 01 00 00", MQC_EV5ONLY},
    {"§3.4.2.1 5.0 PUBACK Remaining Length 2", V5, "40 02 00 01", MQC_OK},
    {"§3.4.2.1 5.0 PUBACK Remaining Length 3", V5, "40 03 00 01 10", MQC_OK},
    {"§3.4.2.1 5.0 PUBACK Remaining Length 4", V5, "40 04 00 01 00 00", MQC_OK},
    {"§3.4.2.1 5.0 PUBACK code 0x92 (PUBREL/PUBCOMP only)", V5, "40 03 00 01 92", MQC_EREASON},
    {"§3.5.2.1 5.0 PUBREC code 0x01", V5, "50 03 00 01 01", MQC_EREASON},
    {"§3.6.2.1 5.0 PUBREL code 0x10", V5, "62 03 00 01 10", MQC_EREASON},
    {"§3.7.2.1 5.0 PUBCOMP code 0x80", V5, "70 03 00 01 80", MQC_EREASON},
    {"§3.6.2.1 5.0 PUBREL code 0x92", V5, "62 03 00 01 92", MQC_OK},
    {"5.0 PUBACK Property Length overruns", V5, "40 05 00 01 00 05 1f", MQC_EMALFORMED},
    {"5.0 PUBACK with Topic Alias (PUBLISH only)", V5, "40 07 00 01 00 03 23 00 01", MQC_EPROPID},
    {"5.0 PUBACK Reason String twice", V5, "40 0a 00 01 00 06 1f 00 00 1f 00 00", MQC_EPROPDUP},
    {"5.0 PUBACK Reason String invalid UTF-8", V5, "40 08 00 01 00 04 1f 00 01 ff", MQC_EUTF8},
    {"5.0 PUBACK bytes after the properties", V5, "40 05 00 01 00 00 00", MQC_ETRAILING},

    /* ---- SUBSCRIBE ---- */
    {"3.1.1 [MQTT-3.8.3-3] SUBSCRIBE without a filter", V311, "82 02 00 01", MQC_EEMPTY},
    {"[MQTT-3.8.3-2] 5.0 SUBSCRIBE without a filter", V5, "82 03 00 01 00", MQC_EEMPTY},
    {"3.1.1 [MQTT-2.3.1-1] SUBSCRIBE packet id 0", V311, "82 06 00 00 00 01 61 00", MQC_EPACKETID},
    {"[MQTT-4.7.1-2] SUBSCRIBE filter sport/tennis#", V311,
     "82 12 00 01 00 0d 73 70 6f 72 74 2f 74 65 6e 6e 69 73 23 00", MQC_EFILTER},
    {"[MQTT-4.7.1-2] SUBSCRIBE filter a/#/b", V5, "82 0b 00 01 00 00 05 61 2f 23 2f 62 00",
     MQC_EFILTER},
    {"[MQTT-4.7.1-3] SUBSCRIBE filter sport+", V311, "82 0b 00 01 00 06 73 70 6f 72 74 2b 00",
     MQC_EFILTER},
    {"[MQTT-4.7.3-1] SUBSCRIBE empty filter", V311, "82 05 00 01 00 00 00", MQC_EFILTER},
    {"[MQTT-4.8.2-1] SUBSCRIBE $share//a", V5, "82 0f 00 01 00 00 09 24 73 68 61 72 65 2f 2f 61 00",
     MQC_EFILTER},
    {"[MQTT-4.8.2-2] SUBSCRIBE $share/g without a filter", V311,
     "82 0d 00 01 00 08 24 73 68 61 72 65 2f 67 00", MQC_EFILTER},
    {"[MQTT-1.5.4-1] SUBSCRIBE filter invalid UTF-8", V311, "82 07 00 01 00 02 c0 80 00",
     MQC_EUTF8},
    {"3.1.1 [MQTT-3.8.3-4] SUBSCRIBE requested QoS reserved bit 2", V311, "82 06 00 01 00 01 61 04",
     MQC_ESUBOPTS},
    {"3.1.1 [MQTT-3.8.3-4] SUBSCRIBE requested QoS reserved bit 7", V311, "82 06 00 01 00 01 61 81",
     MQC_ESUBOPTS},
    {"3.1 SUBSCRIBE requested QoS reserved bits", V31, "82 06 00 01 00 01 61 10", MQC_ESUBOPTS},
    {"3.1.1 [MQTT-3.8.3-4] SUBSCRIBE QoS 3", V311, "82 06 00 01 00 01 61 03", MQC_ESUBOPTS},
    {"§3.8.3.1 5.0 SUBSCRIBE Maximum QoS 3", V5, "82 07 00 01 00 00 01 61 03", MQC_ESUBOPTS},
    {"[MQTT-3.8.3-5] 5.0 SUBSCRIBE reserved option bit 6", V5, "82 07 00 01 00 00 01 61 40",
     MQC_ESUBOPTS},
    {"[MQTT-3.8.3-5] 5.0 SUBSCRIBE reserved option bit 7", V5, "82 07 00 01 00 00 01 61 81",
     MQC_ESUBOPTS},
    {"§3.8.3.1 5.0 SUBSCRIBE Retain Handling 3", V5, "82 07 00 01 00 00 01 61 31", MQC_ESUBOPTS},
    {"[MQTT-3.8.3-4] 5.0 SUBSCRIBE No Local on $share", V5,
     "82 10 00 01 00 00 0a 24 73 68 61 72 65 2f 67 2f 61 05", MQC_ESUBOPTS},
    {"[MQTT-3.8.3-4] 5.0 SUBSCRIBE No Local on $oshare", V5,
     "82 11 00 01 00 00 0b 24 6f 73 68 61 72 65 2f 67 2f 61 04", MQC_ESUBOPTS},
    {"5.0 SUBSCRIBE $share with Retain As Published, Retain Handling 2", V5,
     "82 10 00 01 00 00 0a 24 73 68 61 72 65 2f 67 2f 61 29", MQC_OK},
    {"5.0 SUBSCRIBE No Local on an ordinary filter", V5, "82 07 00 01 00 00 01 61 2e", MQC_OK},
    {"SUBSCRIBE options byte missing", V311, "82 05 00 01 00 01 61", MQC_EMALFORMED},
    {"SUBSCRIBE second filter cut", V311, "82 09 00 01 00 01 61 00 00 05 62", MQC_EMALFORMED},
    {"5.0 SUBSCRIBE Subscription Identifier twice", V5, "82 0b 00 01 04 0b 01 0b 02 00 01 61 00",
     MQC_EPROPDUP},
    {"§3.8.2.1.2 5.0 SUBSCRIBE Subscription Identifier 0", V5, "82 09 00 01 02 0b 00 00 01 61 00",
     MQC_EPROPVAL},
    {"5.0 SUBSCRIBE with Reason String (not a SUBSCRIBE property)", V5,
     "82 0a 00 01 03 1f 00 00 00 01 61 00", MQC_EPROPID},

    /* ---- SUBACK ---- */
    {"3.1.1 [MQTT-3.9.3-2] SUBACK return code 3", V311, "90 03 00 01 03", MQC_EREASON},
    {"3.1.1 [MQTT-3.9.3-2] SUBACK return code 0x81", V311, "90 04 00 01 00 81", MQC_EREASON},
    {"3.1.1 SUBACK return codes 0 1 2 0x80", V311, "90 06 00 01 00 01 02 80", MQC_OK},
    {"§3.9.3 5.0 SUBACK code 0x11 (UNSUBACK only)", V5, "90 04 00 01 00 11", MQC_EREASON},
    {"§3.9.3 5.0 SUBACK code 0x04", V5, "90 04 00 01 00 04", MQC_EREASON},
    {"3.1.1 SUBACK without codes", V311, "90 02 00 01", MQC_EEMPTY},
    {"5.0 SUBACK without codes", V5, "90 03 00 01 00", MQC_EEMPTY},
    {"SUBACK packet id 0", V5, "90 04 00 00 00 00", MQC_EPACKETID},
    {"5.0 SUBACK without Property Length", V5, "90 02 00 01", MQC_EMALFORMED},
    {"5.0 SUBACK with Subscription Identifier (SUBSCRIBE only)", V5, "90 06 00 01 02 0b 01 00",
     MQC_EPROPID},

    /* ---- UNSUBSCRIBE ---- */
    {"3.1.1 [MQTT-3.10.3-2] UNSUBSCRIBE without a filter", V311, "a2 02 00 01", MQC_EEMPTY},
    {"[MQTT-3.10.3-2] 5.0 UNSUBSCRIBE without a filter", V5, "a2 03 00 01 00", MQC_EEMPTY},
    {"UNSUBSCRIBE packet id 0", V311, "a2 05 00 00 00 01 61", MQC_EPACKETID},
    {"[MQTT-4.7.1-2] UNSUBSCRIBE filter #/a", V311, "a2 07 00 01 00 03 23 2f 61", MQC_EFILTER},
    {"UNSUBSCRIBE filter length overruns", V311, "a2 05 00 01 00 09 61", MQC_EMALFORMED},
    {"5.0 UNSUBSCRIBE with Subscription Identifier (SUBSCRIBE only)", V5,
     "a2 08 00 01 02 0b 01 00 01 61", MQC_EPROPID},

    /* ---- UNSUBACK ---- */
    {"3.1.1 UNSUBACK with reason codes (5.0 content)", V311, "b0 03 00 01 00", MQC_EV5ONLY},
    {"UNSUBACK packet id 0", V311, "b0 02 00 00", MQC_EPACKETID},
    {"5.0 UNSUBACK without codes", V5, "b0 03 00 01 00", MQC_EEMPTY},
    {"§3.11.3 5.0 UNSUBACK code 0x01", V5, "b0 04 00 01 00 01", MQC_EREASON},
    {"§3.11.3 5.0 UNSUBACK code 0x02 after a valid one", V5, "b0 05 00 01 00 11 02", MQC_EREASON},
    {"§3.11.3 5.0 UNSUBACK codes 0x00 0x11 0x80 0x83 0x87 0x8F 0x91", V5,
     "b0 0a 00 01 00 00 11 80 83 87 8f 91", MQC_OK},

    /* ---- PINGREQ, PINGRESP ---- */
    {"PINGREQ with a body", V311, "c0 01 00", MQC_ETRAILING},
    {"PINGRESP with a body", V5, "d0 02 00 00", MQC_ETRAILING},

    /* ---- DISCONNECT ---- */
    {"3.1.1 DISCONNECT with a reason code (5.0 content)", V311, "e0 01 00", MQC_EV5ONLY},
    {"3.1 DISCONNECT with a body", V31, "e0 02 00 00", MQC_EV5ONLY},
    {"§3.14.2.1 5.0 DISCONNECT Remaining Length 0", V5, "e0 00", MQC_OK},
    {"§3.14.2.1 5.0 DISCONNECT Remaining Length 1", V5, "e0 01 8e", MQC_OK},
    {"§3.14.2.1 5.0 DISCONNECT code 0x18 (AUTH only)", V5, "e0 01 18", MQC_EREASON},
    {"§3.14.2.1 5.0 DISCONNECT code 0x01", V5, "e0 01 01", MQC_EREASON},
    {"5.0 DISCONNECT with Session Expiry and Server Reference", V5,
     "e0 0b 00 09 11 00 00 00 00 1c 00 01 73", MQC_OK},
    {"5.0 DISCONNECT with Topic Alias (PUBLISH only)", V5, "e0 05 00 03 23 00 01", MQC_EPROPID},
    {"5.0 DISCONNECT Property Length overruns", V5, "e0 03 00 04 1f", MQC_EMALFORMED},
    {"5.0 DISCONNECT bytes after the properties", V5, "e0 03 00 00 00", MQC_ETRAILING},

    /* ---- AUTH ---- */
    {"AUTH in 3.1.1", V311, "f0 00", MQC_EV5ONLY},
    {"AUTH in 3.1", V31, "f0 00", MQC_EV5ONLY},
    {"§3.15.2.1 5.0 AUTH Remaining Length 0", V5, "f0 00", MQC_OK},
    {"§3.15.2.1 5.0 AUTH code 0x19 re-authenticate", V5, "f0 06 19 04 15 00 01 6d", MQC_OK},
    {"§3.15.2.1 5.0 AUTH code 0x01", V5, "f0 01 01", MQC_EREASON},
    {"§3.15.2.1 5.0 AUTH code 0x00 with method", V5, "f0 06 00 04 15 00 01 6d", MQC_OK},
    {"5.0 AUTH with Session Expiry (not an AUTH property)", V5, "f0 07 18 05 11 00 00 00 01",
     MQC_EPROPID},
    {"5.0 AUTH Authentication Method twice", V5, "f0 0a 18 08 15 00 01 6d 15 00 01 6e",
     MQC_EPROPDUP},
};

static const char *case_name(const void *c)
{
    return ((const struct dec_case *)c)->name;
}

static void run_case(void **state)
{
    const struct dec_case *c = *state;
    uint8_t buf[256];
    struct mqt_guard g = {0};
    struct mqc_packet pkt;
    size_t n = mqt_hex(c->hex, buf, sizeof buf);
    const uint8_t *p;
    assert_err(decode_hex(c->hex, c->version, &pkt, buf, sizeof buf, &g, &p), c->want);
    /* the frame checker sees one whole frame: the decoder is the one refusing */
    struct mqc_frame f;
    if (c->want != MQC_ETYPE && c->want != MQC_EVARINT) {
        assert_err(mqc_frame_check(p, n, 0, &f), MQC_OK);
        assert_int_equal(f.total, n);
    }
    /* the PUBLISH fast path performs the same checks */
    if ((buf[0] >> 4) == MQC_PUBLISH) {
        struct mqc_publish pub;
        assert_err(mqc_decode_publish(p, n, c->version, &pub), c->want);
        if (c->want == MQC_OK) {
            struct mqc_packet w = {.type = MQC_PUBLISH, .u.publish = pub};
            assert_packet_eq(&w, &pkt, c->version);
        }
    }
    mqt_guard_free(&g);
}

/* ---- reserved fixed-header flags, per type [MQTT-2.1.3-1] (3.1.1 [MQTT-2.2.2-1/2]) ------- */

struct canon {
    uint8_t version;
    const char *hex;
};

/* One valid packet of every type but PUBLISH, per version. */
static const struct canon canon[] = {
    {V311, "10 0d 00 04 4d 51 54 54 04 02 00 3c 00 01 61"},
    {V311, "20 02 00 00"},
    {V311, "40 02 00 01"},
    {V311, "50 02 00 01"},
    {V311, "62 02 00 01"},
    {V311, "70 02 00 01"},
    {V311, "82 06 00 01 00 01 61 00"},
    {V311, "90 03 00 01 00"},
    {V311, "a2 05 00 01 00 01 61"},
    {V311, "b0 02 00 01"},
    {V311, "c0 00"},
    {V311, "d0 00"},
    {V311, "e0 00"},
    {V5, "10 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 01 61"},
    {V5, "20 03 00 00 00"},
    {V5, "40 02 00 01"},
    {V5, "50 03 00 01 10"},
    {V5, "62 04 00 01 92 00"},
    {V5, "70 02 00 01"},
    {V5, "82 07 00 01 00 00 01 61 00"},
    {V5, "90 04 00 01 00 00"},
    {V5, "a2 06 00 01 00 00 01 61"},
    {V5, "b0 04 00 01 00 00"},
    {V5, "c0 00"},
    {V5, "d0 00"},
    {V5, "e0 00"},
    {V5, "f0 00"},
    /* 3.1: the canonical flags (PUBREL, SUBSCRIBE, UNSUBSCRIBE carry QoS 1) decode */
    {V31, "10 0f 00 06 4d 51 49 73 64 70 03 02 00 3c 00 01 61"},
    {V31, "20 02 00 00"},
    {V31, "62 02 00 01"},
    {V31, "82 06 00 01 00 01 61 00"},
    {V31, "a2 05 00 01 00 01 61"},
    {V31, "b0 02 00 01"},
};

static void reserved_flags(void **state)
{
    (void)state;
    struct mqt_guard g = {0};
    for (size_t i = 0; i < sizeof canon / sizeof canon[0]; i++) {
        uint8_t buf[64];
        struct mqc_packet pkt;
        size_t n = mqt_hex(canon[i].hex, buf, sizeof buf);
        const uint8_t *p = mqt_guard_put(&g, buf, n);
        int rc = mqc_decode(p, n, canon[i].version, &pkt);
        if (rc != MQC_OK)
            fail_msg("canonical %s (version %d): got %s", canon[i].hex, canon[i].version,
                     mqt_err_name(rc));
        assert_int_equal(pkt.type, buf[0] >> 4);
        if (canon[i].version == V31)
            continue; /* 3.1 marks these bits "not used" rather than reserved */
        for (unsigned fl = 0; fl < 16; fl++) {
            if (fl == (buf[0] & 0x0Fu))
                continue;
            uint8_t b2[64];
            memcpy(b2, buf, n);
            b2[0] = (uint8_t)((buf[0] & 0xF0u) | fl);
            p = mqt_guard_put(&g, b2, n);
            rc = mqc_decode(p, n, canon[i].version, &pkt);
            if (rc != MQC_EFLAGS)
                fail_msg("%s with flags %x (version %d): got %s, expected MQC_EFLAGS",
                         mqc_type_name(buf[0] >> 4), fl, canon[i].version, mqt_err_name(rc));
        }
    }
    mqt_guard_free(&g);
}

/* ---- fields ------------------------------------------------------------------------------ */

static void assert_bytes(struct mqc_bytes b, const char *s, size_t n)
{
    assert_int_equal(b.len, n);
    if (n)
        assert_memory_equal(b.p, s, n);
}
#define assert_str(b, lit) assert_bytes((b), (lit), sizeof(lit) - 1)

/* Everything borrowed points inside the input. */
static void assert_inside(struct mqc_bytes b, const uint8_t *p, size_t n)
{
    if (b.len)
        assert_true(b.p >= p && b.p + b.len <= p + n);
}

/* 3.1.1 Figure 3.6 variable header (flags CE, keep alive 10) with a full payload. */
static void connect_311_fields(void **state)
{
    (void)state;
    uint8_t buf[128];
    struct mqt_guard g = {0};
    struct mqc_packet pkt;
    const uint8_t *p;
    const char *hex = "10 1f 00 04 4d 51 54 54 04 ce 00 0a"
                      " 00 03 63 69 64 00 03 77 2f 74 00 03 62 79 65 00 01 75 00 01 70";
    assert_err(decode_hex(hex, MQC_V5 /* ignored for CONNECT */, &pkt, buf, sizeof buf, &g, &p),
               MQC_OK);
    const struct mqc_connect *c = &pkt.u.connect;
    assert_int_equal(pkt.type, MQC_CONNECT);
    assert_int_equal(c->version, MQC_V311);
    assert_false(c->bridge);
    assert_true(c->clean_start);
    assert_int_equal(c->keepalive, 10);
    assert_int_equal(c->props.len, 0);
    assert_str(c->client_id, "cid");
    assert_true(c->will);
    assert_int_equal(c->will_qos, 1);
    assert_false(c->will_retain);
    assert_int_equal(c->will_props.len, 0);
    assert_str(c->will_topic, "w/t");
    assert_str(c->will_payload, "bye");
    assert_true(c->has_username);
    assert_str(c->username, "u");
    assert_true(c->has_password);
    assert_str(c->password, "p");
    assert_inside(c->client_id, p, 33);
    assert_inside(c->password, p, 33);
    mqt_guard_free(&g);
}

/* 5.0 Figure 3-7 (Session Expiry Interval 10) with will properties. */
static void connect_5_fields(void **state)
{
    (void)state;
    uint8_t buf[128];
    struct mqt_guard g = {0};
    struct mqc_packet pkt;
    const uint8_t *p;
    const char *hex = "10 2d 00 04 4d 51 54 54 85 f6 00 0a 05 11 00 00 00 0a"
                      " 00 03 63 69 64 07 18 00 00 00 05 01 01 00 03 77 2f 74 00 03 62 79 65"
                      " 00 01 75 00 01 70";
    assert_err(decode_hex(hex, MQC_V311 /* ignored */, &pkt, buf, sizeof buf, &g, &p), MQC_OK);
    const struct mqc_connect *c = &pkt.u.connect;
    assert_int_equal(c->version, MQC_V5);
    assert_true(c->bridge);
    assert_true(c->clean_start);
    assert_int_equal(c->keepalive, 10);
    assert_int_equal(c->props.len, 5);
    assert_memory_equal(c->props.p, "\x11\x00\x00\x00\x0a", 5);
    struct mqc_prop pr;
    assert_err(mqc_props_find(&c->props, MQC_PROP_SESSION_EXPIRY, &pr), MQC_OK);
    assert_int_equal(pr.num, 10);
    assert_str(c->client_id, "cid");
    assert_true(c->will);
    assert_int_equal(c->will_qos, 2);
    assert_true(c->will_retain);
    assert_int_equal(c->will_props.len, 7);
    assert_err(mqc_props_find(&c->will_props, MQC_PROP_WILL_DELAY, &pr), MQC_OK);
    assert_int_equal(pr.num, 5);
    assert_str(c->will_topic, "w/t");
    assert_str(c->will_payload, "bye");
    assert_str(c->username, "u");
    assert_str(c->password, "p");
    mqt_guard_free(&g);
}

static void connect_31_fields(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct mqt_guard g = {0};
    struct mqc_packet pkt;
    assert_err(decode_hex("10 14 00 06 4d 51 49 73 64 70 83 80 ff ff 00 01 61 00 03 62 6f 62",
                          MQC_V5, &pkt, buf, sizeof buf, &g, NULL),
               MQC_OK);
    const struct mqc_connect *c = &pkt.u.connect;
    assert_int_equal(c->version, MQC_V31);
    assert_true(c->bridge);
    assert_false(c->clean_start);
    assert_int_equal(c->keepalive, 65535);
    assert_false(c->will);
    assert_true(c->has_username);
    assert_false(c->has_password);
    assert_str(c->username, "bob");
    assert_int_equal(c->password.len, 0);
    mqt_guard_free(&g);
}

static void publish_fields(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct mqt_guard g = {0};
    struct mqc_packet pkt;
    const uint8_t *p;
    /* 3.1.1 Figure 3.11 variable header: "a/b", packet id 10; DUP, QoS 2, RETAIN */
    assert_err(
        decode_hex("3d 09 00 03 61 2f 62 00 0a 68 69", MQC_V311, &pkt, buf, sizeof buf, &g, &p),
        MQC_OK);
    const struct mqc_publish *u = &pkt.u.publish;
    assert_int_equal(pkt.type, MQC_PUBLISH);
    assert_int_equal(u->qos, 2);
    assert_true(u->dup);
    assert_true(u->retain);
    assert_str(u->topic, "a/b");
    assert_int_equal(u->packet_id, 10);
    assert_int_equal(u->props.len, 0);
    assert_str(u->payload, "hi");
    assert_ptr_equal(u->payload.p, p + 9);
    assert_ptr_equal(u->topic.p, p + 4);

    /* 5.0 with properties, including repeated user properties */
    assert_err(decode_hex("32 17 00 01 74 12 34 0e 26 00 01 6b 00 01 31 26 00 01 6b 00 01 32 "
                          "70 61 79",
                          MQC_V5, &pkt, buf, sizeof buf, &g, &p),
               MQC_OK);
    assert_int_equal(u->qos, 1);
    assert_false(u->dup);
    assert_false(u->retain);
    assert_int_equal(u->packet_id, 0x1234);
    assert_int_equal(u->props.len, 14);
    assert_ptr_equal(u->props.p, p + 8);
    assert_str(u->payload, "pay");
    size_t off = 0;
    struct mqc_prop pr;
    assert_err(mqc_props_next(&u->props, &off, &pr), MQC_OK);
    assert_bytes(pr.val, "1", 1);
    assert_err(mqc_props_next(&u->props, &off, &pr), MQC_OK);
    assert_bytes(pr.val, "2", 1);
    assert_err(mqc_props_next(&u->props, &off, &pr), MQC_AGAIN);

    /* QoS 0: no packet identifier, packet_id 0 */
    assert_err(decode_hex("30 05 00 01 74 00 01", MQC_V311, &pkt, buf, sizeof buf, &g, &p), MQC_OK);
    assert_int_equal(u->qos, 0);
    assert_int_equal(u->packet_id, 0);
    assert_bytes(u->payload, "\x00\x01", 2);
    mqt_guard_free(&g);
}

static void ack_forms(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct mqt_guard g = {0};
    struct mqc_packet pkt;
    assert_err(decode_hex("40 02 12 34", MQC_V5, &pkt, buf, sizeof buf, &g, NULL), MQC_OK);
    assert_int_equal(pkt.u.ack.packet_id, 0x1234);
    assert_int_equal(pkt.u.ack.code, 0);
    assert_int_equal(pkt.u.ack.props.len, 0);
    assert_err(decode_hex("50 03 00 07 91", MQC_V5, &pkt, buf, sizeof buf, &g, NULL), MQC_OK);
    assert_int_equal(pkt.type, MQC_PUBREC);
    assert_int_equal(pkt.u.ack.packet_id, 7);
    assert_int_equal(pkt.u.ack.code, 0x91);
    assert_int_equal(pkt.u.ack.props.len, 0);
    assert_err(decode_hex("62 04 00 07 92 00", MQC_V5, &pkt, buf, sizeof buf, &g, NULL), MQC_OK);
    assert_int_equal(pkt.type, MQC_PUBREL);
    assert_int_equal(pkt.u.ack.code, 0x92);
    assert_int_equal(pkt.u.ack.props.len, 0);
    assert_err(decode_hex("70 08 00 07 00 04 1f 00 01 78", MQC_V5, &pkt, buf, sizeof buf, &g, NULL),
               MQC_OK);
    assert_int_equal(pkt.u.ack.props.len, 4);
    assert_err(decode_hex("40 02 ff ff", MQC_V311, &pkt, buf, sizeof buf, &g, NULL), MQC_OK);
    assert_int_equal(pkt.u.ack.packet_id, 0xFFFF);
    assert_int_equal(pkt.u.ack.code, 0);
    mqt_guard_free(&g);
}

static void subscribe_walk(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct mqt_guard g = {0};
    struct mqc_packet pkt;
    const uint8_t *p;
    /* 3.1.1 Figure 3.21 */
    assert_err(decode_hex("82 0e 00 0a 00 03 61 2f 62 01 00 03 63 2f 64 02", MQC_V311, &pkt, buf,
                          sizeof buf, &g, &p),
               MQC_OK);
    const struct mqc_subscribe *s = &pkt.u.subscribe;
    assert_int_equal(s->packet_id, 10);
    assert_int_equal(s->count, 2);
    assert_null(s->subs);
    assert_int_equal(s->raw.len, 12);
    assert_ptr_equal(s->raw.p, p + 4);
    size_t off = 0;
    struct mqc_sub e;
    assert_err(mqc_subscribe_next(s, MQC_V311, &off, &e), MQC_OK);
    assert_str(e.filter, "a/b");
    assert_int_equal(e.options, 1);
    assert_err(mqc_subscribe_next(s, MQC_V311, &off, &e), MQC_OK);
    assert_str(e.filter, "c/d");
    assert_int_equal(e.options, 2);
    assert_err(mqc_subscribe_next(s, MQC_V311, &off, &e), MQC_AGAIN);

    /* 5.0 options */
    assert_err(
        decode_hex("82 0b 00 0a 02 0b 01 00 03 61 2f 62 2d", MQC_V5, &pkt, buf, sizeof buf, &g, &p),
        MQC_OK);
    assert_int_equal(s->props.len, 2);
    off = 0;
    assert_err(mqc_subscribe_next(s, MQC_V5, &off, &e), MQC_OK);
    assert_int_equal(MQC_SUB_QOS(e.options), 1);
    assert_true(e.options & MQC_SUB_NO_LOCAL);
    assert_true(e.options & MQC_SUB_RETAIN_AS_PUBLISHED);
    assert_int_equal(MQC_SUB_RETAIN_HANDLING(e.options), 2);

    /* 3.1.1 Figure 3.30 UNSUBSCRIBE */
    assert_err(decode_hex("a2 0c 00 0a 00 03 61 2f 62 00 03 63 2f 64", MQC_V311, &pkt, buf,
                          sizeof buf, &g, &p),
               MQC_OK);
    const struct mqc_unsubscribe *u = &pkt.u.unsubscribe;
    assert_int_equal(u->count, 2);
    assert_null(u->filters);
    struct mqc_bytes f;
    off = 0;
    assert_err(mqc_unsubscribe_next(u, &off, &f), MQC_OK);
    assert_str(f, "a/b");
    assert_err(mqc_unsubscribe_next(u, &off, &f), MQC_OK);
    assert_str(f, "c/d");
    assert_err(mqc_unsubscribe_next(u, &off, &f), MQC_AGAIN);

    /* 3.1.1 Figure 3.26 SUBACK */
    assert_err(decode_hex("90 05 00 0a 00 02 80", MQC_V311, &pkt, buf, sizeof buf, &g, &p), MQC_OK);
    assert_int_equal(pkt.u.suback.packet_id, 10);
    assert_bytes(pkt.u.suback.codes, "\x00\x02\x80", 3);
    /* 3.1.1 UNSUBACK: no codes */
    assert_err(decode_hex("b0 02 00 0a", MQC_V311, &pkt, buf, sizeof buf, &g, &p), MQC_OK);
    assert_int_equal(pkt.u.suback.codes.len, 0);
    mqt_guard_free(&g);
}

static void reason_forms(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct mqt_guard g = {0};
    struct mqc_packet pkt;
    assert_err(decode_hex("e0 00", MQC_V5, &pkt, buf, sizeof buf, &g, NULL), MQC_OK);
    assert_int_equal(pkt.u.reason.code, 0);
    assert_int_equal(pkt.u.reason.props.len, 0);
    assert_err(decode_hex("e0 01 04", MQC_V5, &pkt, buf, sizeof buf, &g, NULL), MQC_OK);
    assert_int_equal(pkt.u.reason.code, 4);
    assert_int_equal(pkt.u.reason.props.len, 0);
    assert_err(decode_hex("e0 02 95 00", MQC_V5, &pkt, buf, sizeof buf, &g, NULL), MQC_OK);
    assert_int_equal(pkt.u.reason.code, 0x95);
    assert_err(decode_hex("e0 00", MQC_V311, &pkt, buf, sizeof buf, &g, NULL), MQC_OK);
    assert_int_equal(pkt.type, MQC_DISCONNECT);
    assert_int_equal(pkt.u.reason.code, 0);
    assert_int_equal(pkt.u.reason.props.len, 0);
    assert_err(decode_hex("f0 06 18 04 15 00 01 6d", MQC_V5, &pkt, buf, sizeof buf, &g, NULL),
               MQC_OK);
    assert_int_equal(pkt.type, MQC_AUTH);
    assert_int_equal(pkt.u.reason.code, 0x18);
    assert_int_equal(pkt.u.reason.props.len, 4);
    assert_err(decode_hex("20 02 01 00", MQC_V311, &pkt, buf, sizeof buf, &g, NULL), MQC_OK);
    assert_true(pkt.u.connack.session_present);
    assert_int_equal(pkt.u.connack.code, 0);
    mqt_guard_free(&g);
}

/* Every code 0..255 in every packet that carries one, per version, against the lists of the
 * specifications: 5.0 §3.2.2.2, §3.4.2.1, §3.5.2.1, §3.6.2.1, §3.7.2.1, §3.9.3, §3.11.3,
 * §3.14.2.1, §3.15.2.1; 3.1.1 §3.2.2.3 (0..5) and [MQTT-3.9.3-2] (0, 1, 2, 0x80). */
static bool listed(const char *list, unsigned code)
{
    for (const char *p = list; *p;) {
        char *end;
        unsigned long v = strtoul(p, &end, 16);
        if (end == p)
            break;
        if (v == code)
            return true;
        p = end;
    }
    return false;
}

static void reason_code_tables(void **state)
{
    (void)state;
    static const char *connack5 = "00 80 81 82 83 84 85 86 87 88 89 8a 8c 90 95 97 99 9a 9b "
                                  "9c 9d 9f";
    static const char *puback5 = "00 10 80 83 87 90 91 97 99";
    static const char *pubrel5 = "00 92";
    static const char *suback5 = "00 01 02 80 83 87 8f 91 97 9e a1 a2";
    static const char *unsuback5 = "00 11 80 83 87 8f 91";
    static const char *disconnect5 = "00 04 80 81 82 83 87 89 8b 8d 8e 8f 90 93 94 95 96 97 98 "
                                     "99 9a 9b 9c 9d 9e 9f a0 a1 a2";
    static const char *auth5 = "00 18 19";
    static const char *connack3 = "00 01 02 03 04 05";
    static const char *suback3 = "00 01 02 80";
    struct mqt_guard g = {0};
    for (unsigned code = 0; code < 256; code++) {
        struct {
            uint8_t version;
            uint8_t bytes[8];
            size_t len;
            const char *list;
        } t[] = {
            {MQC_V5, {0x20, 0x03, 0x00, (uint8_t)code, 0x00}, 5, connack5},
            {MQC_V5, {0x40, 0x03, 0x00, 0x01, (uint8_t)code}, 5, puback5},
            {MQC_V5, {0x50, 0x03, 0x00, 0x01, (uint8_t)code}, 5, puback5},
            {MQC_V5, {0x62, 0x03, 0x00, 0x01, (uint8_t)code}, 5, pubrel5},
            {MQC_V5, {0x70, 0x03, 0x00, 0x01, (uint8_t)code}, 5, pubrel5},
            {MQC_V5, {0x90, 0x04, 0x00, 0x01, 0x00, (uint8_t)code}, 6, suback5},
            {MQC_V5, {0xB0, 0x04, 0x00, 0x01, 0x00, (uint8_t)code}, 6, unsuback5},
            {MQC_V5, {0xE0, 0x01, (uint8_t)code}, 3, disconnect5},
            {MQC_V5, {0xF0, 0x01, (uint8_t)code}, 3, auth5},
            {MQC_V311, {0x20, 0x02, 0x00, (uint8_t)code}, 4, connack3},
            {MQC_V31, {0x20, 0x02, 0x00, (uint8_t)code}, 4, connack3},
            {MQC_V311, {0x90, 0x03, 0x00, 0x01, (uint8_t)code}, 5, suback3},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            struct mqc_packet pkt;
            const uint8_t *p = mqt_guard_put(&g, t[i].bytes, t[i].len);
            int want = listed(t[i].list, code) ? MQC_OK : MQC_EREASON;
            int rc = mqc_decode(p, t[i].len, t[i].version, &pkt);
            if (rc != want)
                fail_msg("%s code 0x%02x (version %d): got %s, expected %s",
                         mqc_type_name(t[i].bytes[0] >> 4), code, t[i].version, mqt_err_name(rc),
                         mqt_err_name(want));
        }
    }
    mqt_guard_free(&g);
}

/* mqc_decode_publish is for PUBLISH frames only. */
static void decode_publish_other_type(void **state)
{
    (void)state;
    uint8_t b[] = {0x40, 0x02, 0x00, 0x01};
    struct mqc_publish p;
    int rc = mqc_decode_publish(b, sizeof b, MQC_V311, &p);
    assert_true(rc < 0);
}

/* ---- errors.c ------------------------------------------------------------------------------ */

static void error_strings(void **state)
{
    (void)state;
    for (int e = MQC_ESUBOPTS; e <= MQC_AGAIN; e++) {
        const char *s = mqc_strerror(e);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        assert_string_not_equal(s, "unknown error");
        assert_non_null(mqt_err_name(e));
    }
    assert_string_equal(mqc_strerror(-1000), "unknown error");
    assert_string_equal(mqc_strerror(2), "unknown error");
}

/* MQTT 5.0 §2.4: every reason code from 0x80 to 0xA2 has a name; successes and undefined codes
 * do not. */
static void reason_names(void **state)
{
    (void)state;
    assert_string_equal(mqc_reason_name(0x96), "message rate too high");
    assert_string_equal(mqc_reason_name(0x97), "quota exceeded");
    assert_string_equal(mqc_reason_name(0x83), "implementation specific error");
    assert_string_equal(mqc_reason_name(0x8E), "session taken over");
    assert_string_equal(mqc_reason_name(0xA2), "wildcard subscriptions not supported");
    for (int c = 0x80; c <= 0xA2; c++)
        assert_non_null(mqc_reason_name((uint8_t)c));
    assert_null(mqc_reason_name(0x00));
    assert_null(mqc_reason_name(0x10));
    assert_null(mqc_reason_name(0xA3));
    assert_null(mqc_reason_name(0xFF));
}

/* mqttcodec.h: 0x81 for framing/encoding errors, 0x82 for protocol violations, 0x95, 0x90,
 * 0x8F, 0x84 as listed; STYLE.md §3 EMALFORMED/EUTF8 -> 0x81, EPROTOCOL -> 0x82. */
static void reason_codes(void **state)
{
    (void)state;
    assert_int_equal(mqc_reason_code(MQC_EMALFORMED), 0x81);
    assert_int_equal(mqc_reason_code(MQC_EUTF8), 0x81);
    assert_int_equal(mqc_reason_code(MQC_EVARINT), 0x81);
    assert_int_equal(mqc_reason_code(MQC_EPROTOCOL), 0x82);
    assert_int_equal(mqc_reason_code(MQC_ETOOBIG), 0x95);
    assert_int_equal(mqc_reason_code(MQC_ETOPIC), 0x90);
    assert_int_equal(mqc_reason_code(MQC_EFILTER), 0x8F);
    assert_int_equal(mqc_reason_code(MQC_EPROTONAME), 0x84);
    /* [MQTT-2.1.3-1] reserved flags and [MQTT-3.3.1-4] QoS 3 are Malformed Packets */
    assert_int_equal(mqc_reason_code(MQC_EFLAGS), 0x81);
    assert_int_equal(mqc_reason_code(MQC_EQOS), 0x81);
    /* §2.2.2.2 "It is a Protocol Error to include the same property more than once" */
    assert_int_equal(mqc_reason_code(MQC_EPROPDUP), 0x82);
    for (int e = MQC_ESUBOPTS; e < 0; e++) {
        uint8_t rc = mqc_reason_code(e);
        assert_true(rc >= 0x80);
    }
    assert_int_equal(mqc_reason_code(-1000), 0x80);
}

static void type_names(void **state)
{
    (void)state;
    static const char *names[] = {"RESERVED",  "CONNECT",  "CONNACK",     "PUBLISH",
                                  "PUBACK",    "PUBREC",   "PUBREL",      "PUBCOMP",
                                  "SUBSCRIBE", "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
                                  "PINGREQ",   "PINGRESP", "DISCONNECT",  "AUTH"};
    for (int t = 0; t < 16; t++)
        assert_string_equal(mqc_type_name(t), names[t]);
    assert_string_equal(mqc_type_name(16), "RESERVED");
    assert_string_equal(mqc_type_name(-1), "RESERVED");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reserved_flags),     cmocka_unit_test(connect_311_fields),
        cmocka_unit_test(connect_5_fields),   cmocka_unit_test(connect_31_fields),
        cmocka_unit_test(publish_fields),     cmocka_unit_test(ack_forms),
        cmocka_unit_test(subscribe_walk),     cmocka_unit_test(reason_forms),
        cmocka_unit_test(reason_code_tables), cmocka_unit_test(decode_publish_other_type),
        cmocka_unit_test(error_strings),      cmocka_unit_test(reason_codes),
        cmocka_unit_test(reason_names),       cmocka_unit_test(type_names),
    };
    int failed = mqt_run_table("decode cases", cases, sizeof cases / sizeof cases[0],
                               sizeof cases[0], case_name, run_case);
    failed += cmocka_run_group_tests_name("decode", tests, NULL, NULL);
    return failed;
}
