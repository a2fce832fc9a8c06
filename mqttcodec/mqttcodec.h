/*
 * mqttcodec: MQTT 3.1 / 3.1.1 / 5.0 packet codec.
 *
 * No I/O, no clock, no logging, no global state, no allocation. Links against libc only.
 *
 * Decoding borrows: every struct mqc_bytes / struct mqc_props a decoder fills points into the
 * caller's input buffer and stays valid until that buffer is reused or freed.
 *
 * Encoding never truncates: ask mqc_size() (or mqc_size_publish()) for the exact size, provide a
 * buffer at least that large, then encode. A buffer too small gives MQC_ENOSPC and nothing is
 * written.
 *
 * Return values: 0 (MQC_OK) = done, positive = "not yet" (MQC_AGAIN: more bytes needed),
 * negative = an error (enum mqc_err); the link carrying such a packet must be closed. Sizes come
 * back through size_t * out-parameters.
 */
#ifndef MQTTCODEC_H
#define MQTTCODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- protocol versions (the protocol level byte of CONNECT) ---------------------------- */
#define MQC_V31 3  /* MQTT 3.1, protocol name "MQIsdp" */
#define MQC_V311 4 /* MQTT 3.1.1, protocol name "MQTT" */
#define MQC_V5 5   /* MQTT 5.0, protocol name "MQTT" */
/* OR-ed into the protocol level by bridges (Mosquitto's "try_private") */
#define MQC_BRIDGE_BIT 0x80

#define MQC_MAX_REMAINING 268435455u /* largest Remaining Length a 4-byte varint holds */
#define MQC_MAX_VARINT 268435455u

/* ---- errors ------------------------------------------------------------------------------ */
enum mqc_err {
    MQC_OK = 0,
    MQC_AGAIN = 1,        /* need more bytes: a state, not an error */
    MQC_EMALFORMED = -1,  /* a length overruns its container, or a field is cut short */
    MQC_EPROTOCOL = -2,   /* well-formed, but the protocol forbids it here */
    MQC_ETOOBIG = -3,     /* packet larger than the maximum packet size allowed */
    MQC_ENOSPC = -4,      /* (encode) output buffer too small; nothing written */
    MQC_EUTF8 = -5,       /* ill-formed UTF-8: overlong, surrogate, U+0000, > U+10FFFF */
    MQC_EINVAL = -6,      /* (encode) the caller's value cannot be encoded */
    MQC_EVARINT = -7,     /* variable byte integer longer than 4 bytes or not minimal */
    MQC_EFLAGS = -8,      /* reserved fixed-header flag bits not as the spec requires */
    MQC_EQOS = -9,        /* QoS 3, or DUP set on a QoS 0 PUBLISH */
    MQC_EPACKETID = -10,  /* packet identifier 0 where a non-zero one is required */
    MQC_ETOPIC = -11,     /* invalid topic name (wildcard, empty where not allowed) */
    MQC_EFILTER = -12,    /* invalid topic filter */
    MQC_EPROPID = -13,    /* unknown property identifier, or not allowed in this packet */
    MQC_EPROPDUP = -14,   /* a property that may appear once appears twice */
    MQC_EPROPVAL = -15,   /* a property value the spec forbids (e.g. Receive Maximum 0) */
    MQC_EREASON = -16,    /* reason / return code not allowed in this packet */
    MQC_ETRAILING = -17,  /* bytes left over after the last field */
    MQC_EV5ONLY = -18,    /* a 3.1/3.1.1 packet carrying 5.0-only content (AUTH, reason codes) */
    MQC_EPROTONAME = -19, /* CONNECT protocol name / level unknown or mismatched */
    MQC_ETYPE = -20,      /* packet type 0 (reserved) */
    MQC_EEMPTY = -21,     /* SUBSCRIBE / UNSUBSCRIBE / SUBACK / UNSUBACK with an empty list */
    MQC_EWILL = -22,      /* CONNECT will / username / password flags inconsistent */
    MQC_ESUBOPTS = -23,   /* subscription options: reserved bits, Retain Handling 3, No Local on
                             a shared subscription */
};

/* A static English description of err ("unknown error" for anything else); never NULL. */
const char *mqc_strerror(int err);

/* The MQTT 5 reason code to put in the DISCONNECT sent after receiving a packet that failed with
 * err: 0x81 (Malformed Packet) for framing / encoding errors, 0x82 (Protocol Error) for
 * protocol violations, 0x95 (Packet too large), 0x90 (Topic Name invalid), 0x8F (Topic Filter
 * invalid), 0x84 for an unsupported protocol name/level, 0x80 otherwise. */
uint8_t mqc_reason_code(int err);

/* The MQTT 5 name of a reason code >= 0x80 as the spec writes it, in lower case ("quota
 * exceeded", "message rate too high", ...; MQTT 5.0 §2.4), or NULL for a code it does not name.
 * 0x00..0x7F are successes whose name depends on the packet: not named here. */
const char *mqc_reason_name(uint8_t code);

/* ---- packet types ---------------------------------------------------------------------- */
enum mqc_type {
    MQC_CONNECT = 1,
    MQC_CONNACK = 2,
    MQC_PUBLISH = 3,
    MQC_PUBACK = 4,
    MQC_PUBREC = 5,
    MQC_PUBREL = 6,
    MQC_PUBCOMP = 7,
    MQC_SUBSCRIBE = 8,
    MQC_SUBACK = 9,
    MQC_UNSUBSCRIBE = 10,
    MQC_UNSUBACK = 11,
    MQC_PINGREQ = 12,
    MQC_PINGRESP = 13,
    MQC_DISCONNECT = 14,
    MQC_AUTH = 15, /* 5.0 only */
};

/* "CONNECT", "PUBLISH", ...; "RESERVED" for 0 and anything out of range. */
const char *mqc_type_name(int type);

/* ---- borrowed byte ranges -------------------------------------------------------------- */
struct mqc_bytes {
    const uint8_t *p; /* may be NULL when len == 0 */
    size_t len;
};

/* ---- §1.5 data types ------------------------------------------------------------------- */

/* Variable byte integer. Decodes from [buf, buf+len): MQC_OK with *value and *used set;
 * MQC_AGAIN if the integer continues past len (and is still at most 4 bytes so far);
 * MQC_EVARINT if it has a 5th byte or is not in its shortest form [MQTT-1.5.5-1]. */
int mqc_varint_decode(const uint8_t *buf, size_t len, uint32_t *value, size_t *used);
/* Number of bytes value takes (1..4), or 0 if value > MQC_MAX_VARINT. */
size_t mqc_varint_size(uint32_t value);
/* Writes value; MQC_EINVAL if > MQC_MAX_VARINT, MQC_ENOSPC if cap is too small. */
int mqc_varint_encode(uint32_t value, uint8_t *out, size_t cap, size_t *used);

/* Validates a UTF-8 encoded string's content [MQTT-1.5.4-1/2/3]: well-formed, no overlong forms,
 * no surrogates (U+D800..U+DFFF), no code point above U+10FFFF, no U+0000.
 * MQC_OK or MQC_EUTF8. */
int mqc_utf8_check(const uint8_t *s, size_t len);

/* ---- §2.1 framing ------------------------------------------------------------------------ */
struct mqc_frame {
    uint8_t type;       /* enum mqc_type (0..15, unchecked beyond "not 0") */
    uint8_t flags;      /* low nibble of the first byte */
    uint8_t hdr_len;    /* 2..5: first byte + Remaining Length bytes */
    uint32_t remaining; /* Remaining Length */
    size_t total;       /* hdr_len + remaining: bytes the whole packet takes */
};

/* Returns MQC_OK and fills *f when buf holds a whole packet (f->total <= len), MQC_AGAIN if it
 * does not yet, and an error if it never will: MQC_ETYPE for packet type 0, MQC_EVARINT for a
 * Remaining Length longer than 4 bytes or not minimal, MQC_ETOOBIG when hdr_len + remaining
 * exceeds max_packet (0 = no limit beyond the protocol's). The size check happens as soon as
 * the length field has been read, before the body arrives. Reads only [buf, buf+len).
 * Keeps no state: call again with more bytes. */
int mqc_frame_check(const uint8_t *buf, size_t len, uint32_t max_packet, struct mqc_frame *f);

/* ---- §2.2.2 properties (MQTT 5) ------------------------------------------------------- */
enum mqc_prop_id {
    MQC_PROP_PAYLOAD_FORMAT = 0x01,         /* byte  : PUBLISH, Will */
    MQC_PROP_MESSAGE_EXPIRY = 0x02,         /* u32   : PUBLISH, Will */
    MQC_PROP_CONTENT_TYPE = 0x03,           /* utf8  : PUBLISH, Will */
    MQC_PROP_RESPONSE_TOPIC = 0x08,         /* utf8  : PUBLISH, Will */
    MQC_PROP_CORRELATION_DATA = 0x09,       /* bin   : PUBLISH, Will */
    MQC_PROP_SUBSCRIPTION_ID = 0x0B,        /* varint: PUBLISH (may repeat), SUBSCRIBE */
    MQC_PROP_SESSION_EXPIRY = 0x11,         /* u32   : CONNECT, CONNACK, DISCONNECT */
    MQC_PROP_ASSIGNED_CLIENT_ID = 0x12,     /* utf8  : CONNACK */
    MQC_PROP_SERVER_KEEP_ALIVE = 0x13,      /* u16   : CONNACK */
    MQC_PROP_AUTH_METHOD = 0x15,            /* utf8  : CONNECT, CONNACK, AUTH */
    MQC_PROP_AUTH_DATA = 0x16,              /* bin   : CONNECT, CONNACK, AUTH */
    MQC_PROP_REQUEST_PROBLEM_INFO = 0x17,   /* byte  : CONNECT */
    MQC_PROP_WILL_DELAY = 0x18,             /* u32   : Will */
    MQC_PROP_REQUEST_RESPONSE_INFO = 0x19,  /* byte  : CONNECT */
    MQC_PROP_RESPONSE_INFO = 0x1A,          /* utf8  : CONNACK */
    MQC_PROP_SERVER_REFERENCE = 0x1C,       /* utf8  : CONNACK, DISCONNECT */
    MQC_PROP_REASON_STRING = 0x1F,          /* utf8  : CONNACK, PUBACK..PUBCOMP, SUBACK,
                                                       UNSUBACK, DISCONNECT, AUTH */
    MQC_PROP_RECEIVE_MAXIMUM = 0x21,        /* u16   : CONNECT, CONNACK */
    MQC_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,    /* u16   : CONNECT, CONNACK */
    MQC_PROP_TOPIC_ALIAS = 0x23,            /* u16   : PUBLISH */
    MQC_PROP_MAXIMUM_QOS = 0x24,            /* byte  : CONNACK */
    MQC_PROP_RETAIN_AVAILABLE = 0x25,       /* byte  : CONNACK */
    MQC_PROP_USER = 0x26,                   /* pair  : all but PINGREQ/PINGRESP; may repeat */
    MQC_PROP_MAXIMUM_PACKET_SIZE = 0x27,    /* u32   : CONNECT, CONNACK */
    MQC_PROP_WILDCARD_SUB_AVAILABLE = 0x28, /* byte  : CONNACK */
    MQC_PROP_SUB_ID_AVAILABLE = 0x29,       /* byte  : CONNACK */
    MQC_PROP_SHARED_SUB_AVAILABLE = 0x2A,   /* byte  : CONNACK */
};

enum mqc_prop_type {
    MQC_PT_NONE = 0, /* not a property identifier */
    MQC_PT_BYTE,
    MQC_PT_U16,
    MQC_PT_U32,
    MQC_PT_VARINT,
    MQC_PT_UTF8,
    MQC_PT_BINARY,
    MQC_PT_PAIR,
};

/* The data type of property id (MQC_PT_NONE if id is not a property). */
enum mqc_prop_type mqc_prop_type(uint8_t id);

/* Where a property block sits. MQC_CTX_WILL is the CONNECT payload's Will Properties. */
#define MQC_CTX_WILL 16

/* A property block: the bytes after the Property Length, not including it. Decoders only hand
 * out blocks they validated for the packet they came from; encoders copy them verbatim. */
struct mqc_props {
    const uint8_t *p;
    size_t len;
};

/* One property, as walked or as built. Which member is used follows mqc_prop_type(id):
 * BYTE/U16/U32/VARINT -> num; UTF8/BINARY -> str; PAIR -> str (name) and val (value). */
struct mqc_prop {
    uint8_t id;
    uint32_t num;
    struct mqc_bytes str;
    struct mqc_bytes val;
};

/* Validates a property block found in packet type ctx (enum mqc_type, or MQC_CTX_WILL):
 * every identifier known (MQC_EPROPID) and allowed in ctx (MQC_EPROPID), lengths within the
 * block (MQC_EMALFORMED), strings valid UTF-8 (MQC_EUTF8), no duplicate other than User
 * Property and, in PUBLISH only, Subscription Identifier (MQC_EPROPDUP), values in range
 * (MQC_EPROPVAL: Receive Maximum 0, Maximum Packet Size 0, Topic Alias 0, Subscription
 * Identifier 0, a 0/1 byte property with another value). Maximum QoS is NOT range-checked:
 * BifroMQ 3.3/4.0 send values above 1 and the receiver clamps. */
int mqc_props_check(const struct mqc_props *props, int ctx);

/* Walks a validated block: starts at *off (set it to 0 first); MQC_OK with *out filled and *off
 * advanced; MQC_AGAIN at the end; MQC_EMALFORMED if the block is not well formed (it never is,
 * after mqc_props_check). out's bytes borrow from the block. */
int mqc_props_next(const struct mqc_props *props, size_t *off, struct mqc_prop *out);

/* Finds the first property with identifier id: MQC_OK and *out filled, or MQC_AGAIN if absent. */
int mqc_props_find(const struct mqc_props *props, uint8_t id, struct mqc_prop *out);

/* Bytes that property p takes when encoded (identifier included), 0 if p->id is unknown or a
 * value does not fit its type (string > 65535, num > type's maximum). */
size_t mqc_prop_size(const struct mqc_prop *p);

/* Appends property p to out[*len .. cap), advancing *len. MQC_ENOSPC (nothing written) if it
 * does not fit, MQC_EINVAL if p is invalid (see mqc_prop_size). Building a block: start with
 * *len = 0, put each property, then use {out, *len} as a struct mqc_props. */
int mqc_prop_put(const struct mqc_prop *p, uint8_t *out, size_t cap, size_t *len);

/* ---- §4.7 topics ------------------------------------------------------------------------- */

/* Topic name: 1..65535 bytes, valid UTF-8, no '+' or '#'. MQC_OK, MQC_ETOPIC or MQC_EUTF8. */
int mqc_topic_name_check(const uint8_t *s, size_t len);

/* Topic filter: 1..65535 bytes, valid UTF-8; '+' occupies a whole level; '#' occupies a whole
 * level and is the last one. A shared subscription "$share/G/F" (or BifroMQ's "$oshare/G/F")
 * needs a non-empty G without '/', '+' or '#', and a valid F. MQC_OK, MQC_EFILTER or MQC_EUTF8. */
int mqc_topic_filter_check(const uint8_t *s, size_t len);

/* True if topic name t matches filter f (both assumed valid, f not a "$share/" form).
 * A leading '+' or '#' does not match a topic that starts with '$' [MQTT-4.7.2-1]. */
bool mqc_topic_match(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen);

enum mqc_share_kind { MQC_SHARE_NONE = 0, MQC_SHARE = 1, MQC_SHARE_ORDERED = 2 };

struct mqc_share {
    enum mqc_share_kind kind; /* NONE: group empty and filter = the whole input */
    struct mqc_bytes group;
    struct mqc_bytes filter;
};

/* Splits "$share/G/F" and "$oshare/G/F"; anything else is kind MQC_SHARE_NONE. MQC_OK, or
 * MQC_EFILTER for a "$share/" or "$oshare/" prefix not followed by a valid group and filter.
 * out borrows from s. Does not validate F beyond its presence; use mqc_topic_filter_check. */
int mqc_topic_share_parse(const uint8_t *s, size_t len, struct mqc_share *out);

/* ---- §3 control packets ---------------------------------------------------------------- */

struct mqc_connect {
    uint8_t version;  /* MQC_V31, MQC_V311 or MQC_V5 */
    bool bridge;      /* protocol level has MQC_BRIDGE_BIT */
    bool clean_start; /* Clean Session (3.x) / Clean Start (5) */
    uint16_t keepalive;
    struct mqc_props props;
    struct mqc_bytes client_id;
    bool will;
    uint8_t will_qos;
    bool will_retain;
    struct mqc_props will_props;
    struct mqc_bytes will_topic;
    struct mqc_bytes will_payload;
    bool has_username;
    struct mqc_bytes username;
    bool has_password;
    struct mqc_bytes password;
};

struct mqc_connack {
    bool session_present;
    uint8_t code; /* 3.x return code 0..5, or 5.0 reason code */
    struct mqc_props props;
};

struct mqc_publish {
    uint8_t qos;
    bool dup;
    bool retain;
    struct mqc_bytes topic; /* may be empty in 5.0 when props carry a Topic Alias */
    uint16_t packet_id;     /* 0 for QoS 0 */
    struct mqc_props props;
    struct mqc_bytes payload;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP. In 5.0 a code of 0 with no properties is encoded in the
 * short form (2 bytes); decoders accept the 2-, 3- and full-length forms. */
struct mqc_ack {
    uint16_t packet_id;
    uint8_t code; /* 5.0 reason code; 0 in 3.x */
    struct mqc_props props;
};

/* Subscription options byte: bits 0-1 QoS, bit 2 No Local, bit 3 Retain As Published,
 * bits 4-5 Retain Handling (5.0). 3.x uses only the QoS bits. */
#define MQC_SUB_QOS(o) ((uint8_t)((o)&0x03u))
#define MQC_SUB_NO_LOCAL 0x04u
#define MQC_SUB_RETAIN_AS_PUBLISHED 0x08u
#define MQC_SUB_RETAIN_HANDLING(o) ((uint8_t)(((o) >> 4) & 0x03u))

struct mqc_sub {
    struct mqc_bytes filter;
    uint8_t options;
};

/* SUBSCRIBE. Encoding reads subs[0..count). Decoding sets count and raw (the validated payload)
 * and leaves subs NULL: walk the entries with mqc_subscribe_next(). */
struct mqc_subscribe {
    uint16_t packet_id;
    struct mqc_props props;
    const struct mqc_sub *subs;
    size_t count;
    struct mqc_bytes raw;
};

/* Walks a decoded SUBSCRIBE's entries: *off starts at 0; MQC_OK and *out filled, MQC_AGAIN at
 * the end. version is the protocol version the packet was decoded with. */
int mqc_subscribe_next(const struct mqc_subscribe *s, uint8_t version, size_t *off,
                       struct mqc_sub *out);

/* UNSUBSCRIBE. Encoding reads filters[0..count); decoding sets count and raw, filters NULL. */
struct mqc_unsubscribe {
    uint16_t packet_id;
    struct mqc_props props;
    const struct mqc_bytes *filters;
    size_t count;
    struct mqc_bytes raw;
};

/* Walks a decoded UNSUBSCRIBE's filters like mqc_subscribe_next(). */
int mqc_unsubscribe_next(const struct mqc_unsubscribe *u, size_t *off, struct mqc_bytes *out);

/* SUBACK and UNSUBACK: one code per filter (granted QoS or reason code). 3.x UNSUBACK has no
 * codes (codes.len == 0). codes borrows from the input (decode) or the caller (encode). */
struct mqc_suback {
    uint16_t packet_id;
    struct mqc_props props;
    struct mqc_bytes codes;
};

/* DISCONNECT and AUTH (5.0). In 3.x DISCONNECT has no content: code 0, props empty. A code of 0
 * with no properties encodes in the short form (remaining length 0). */
struct mqc_reason {
    uint8_t code;
    struct mqc_props props;
};

struct mqc_packet {
    uint8_t type; /* enum mqc_type */
    union {
        struct mqc_connect connect;
        struct mqc_connack connack;
        struct mqc_publish publish;
        struct mqc_ack ack; /* PUBACK, PUBREC, PUBREL, PUBCOMP */
        struct mqc_subscribe subscribe;
        struct mqc_suback suback; /* SUBACK, UNSUBACK */
        struct mqc_unsubscribe unsubscribe;
        struct mqc_reason reason; /* DISCONNECT, AUTH */
    } u;                          /* PINGREQ, PINGRESP: nothing */
};

/* Decodes one whole packet buf[0 .. len) (len is exactly the frame's total, as found by
 * mqc_frame_check) received on a link speaking version (MQC_V31/MQC_V311/MQC_V5). For CONNECT,
 * version is ignored and the packet's own protocol level is used (c.version). Performs every
 * check the specifications require of a receiver and returns the first failure (negative
 * enum mqc_err), or MQC_OK with *out filled, borrowing from buf. Never reads outside
 * [buf, buf+len), never allocates. */
int mqc_decode(const uint8_t *buf, size_t len, uint8_t version, struct mqc_packet *out);

/* Fast path for the relay: decodes a whole PUBLISH frame (same checks as mqc_decode). */
int mqc_decode_publish(const uint8_t *buf, size_t len, uint8_t version, struct mqc_publish *out);

/* Exact encoded size of pkt for version, fixed header included. MQC_EINVAL if pkt cannot be
 * encoded for version (5.0-only content in 3.x, QoS 3, a string over 65535 bytes, an empty
 * SUBSCRIBE, ...), MQC_ETOOBIG if the Remaining Length would exceed MQC_MAX_REMAINING. */
int mqc_size(const struct mqc_packet *pkt, uint8_t version, size_t *size);

/* Encodes pkt into out[0 .. cap). MQC_OK and *written set; MQC_ENOSPC if cap < the size (nothing
 * written); the errors of mqc_size(). For CONNECT, version must equal pkt->u.connect.version.
 * Property blocks are copied verbatim: they must be well formed for the packet (built with
 * mqc_prop_put or handed out by a decoder). */
int mqc_encode(const struct mqc_packet *pkt, uint8_t version, uint8_t *out, size_t cap,
               size_t *written);

/* PUBLISH fast path, same contract as mqc_size()/mqc_encode(). When the packet has a packet
 * identifier, *pid_off (if not NULL) receives the offset of its two bytes in the output, so a
 * queued packet can be given its identifier later; bit 3 of out[0] is DUP. */
int mqc_size_publish(const struct mqc_publish *p, uint8_t version, size_t *size);
int mqc_encode_publish(const struct mqc_publish *p, uint8_t version, uint8_t *out, size_t cap,
                       size_t *written, size_t *pid_off);

/* PUBACK/PUBREC/PUBREL/PUBCOMP fast path: type is MQC_PUBACK..MQC_PUBCOMP. At most 4 bytes when
 * code is 0 and props are empty (2 bytes of header, 2 of packet id). */
int mqc_encode_ack(uint8_t type, const struct mqc_ack *a, uint8_t version, uint8_t *out, size_t cap,
                   size_t *written);

#ifdef __cplusplus
}
#endif
#endif /* MQTTCODEC_H */
