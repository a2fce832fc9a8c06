/*
 * §3 MQTT Control Packets, receiving side. Each decoder reads one whole frame through a
 * bounds-checked cursor, in wire order, and returns the first rule the packet breaks. Every
 * struct mqc_bytes / mqc_props it fills borrows from the input.
 *
 * Section and statement numbers are those of MQTT 5.0 unless marked 3.1.1; the 3.1.1 rules
 * are the same unless said otherwise.
 */
#include "internal.h"

/* ---- reason codes allowed per packet ---------------------------------------------------- */

/* §3.2.2.2 CONNACK Reason Codes (5.0). */
static const uint8_t rc_connack[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
                                     0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
                                     0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
/* §3.4.2.1 PUBACK and §3.5.2.1 PUBREC Reason Codes. */
static const uint8_t rc_puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
/* §3.9.3 SUBACK Reason Codes. */
static const uint8_t rc_suback[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                    0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
/* §3.11.3 UNSUBACK Reason Codes. */
static const uint8_t rc_unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
/* §3.14.2.1 DISCONNECT Reason Codes. */
static const uint8_t rc_disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
                                        0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                                        0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};

static int in_list(const uint8_t *l, size_t n, uint8_t code)
{
    for (size_t i = 0; i < n; i++)
        if (l[i] == code)
            return 1;
    return 0;
}

#define IN(list, code) in_list(list, sizeof list, code)

int mqci_reason_ok(uint8_t type, uint8_t version, uint8_t code)
{
    int v5 = version == MQC_V5;
    switch (type) {
    case MQC_CONNACK:
        /* 3.1 §3.2 / 3.1.1 §3.2.2.3: return codes 0..5; 6..255 are reserved. */
        return v5 ? IN(rc_connack, code) : code <= 5;
    case MQC_PUBACK:
    case MQC_PUBREC:
        return code == 0 || (v5 && IN(rc_puback, code));
    case MQC_PUBREL:
    case MQC_PUBCOMP:
        /* §3.6.2.1, §3.7.2.1: Success or 0x92 Packet Identifier not found. */
        return code == 0 || (v5 && code == 0x92);
    case MQC_SUBACK:
        /* 3.1.1 [MQTT-3.9.3-2]: 0, 1, 2 or 0x80. 3.1 defines only the granted QoS, but
         * brokers answer 3.1 clients with 0x80 on failure too, so it is accepted there. */
        return v5 ? IN(rc_suback, code) : (code <= 2 || code == 0x80);
    case MQC_UNSUBACK:
        return v5 && IN(rc_unsuback, code); /* 3.x UNSUBACK carries no codes */
    case MQC_DISCONNECT:
        return code == 0 || (v5 && IN(rc_disconnect, code));
    case MQC_AUTH:
        /* §3.15.2.1: Success, Continue authentication, Re-authenticate. */
        return v5 && (code == 0x00 || code == 0x18 || code == 0x19);
    default:
        return 0;
    }
}

/* ---- field readers ------------------------------------------------------------------- */

/* A UTF-8 string field: length-prefixed, content valid [MQTT-1.5.4-1/2]. */
static int rd_utf8(struct cur *c, struct mqc_bytes *out)
{
    if (rd_str(c, out) != MQC_OK)
        return MQC_EMALFORMED;
    return mqc_utf8_check(out->p, out->len) == MQC_OK ? MQC_OK : MQC_EUTF8;
}

/* A Packet Identifier where one is required: non-zero [MQTT-2.2.1-3] (3.1.1 [MQTT-2.3.1-1]). */
static int rd_pid(struct cur *c, uint16_t *pid)
{
    if (rd_u16(c, pid) != MQC_OK)
        return MQC_EMALFORMED;
    return *pid == 0 ? MQC_EPACKETID : MQC_OK;
}

/* Property Length + block [MQTT-2.2.2], validated for ctx. */
static int rd_props(struct cur *c, int ctx, struct mqc_props *out)
{
    uint32_t n;
    int rc = rd_varint(c, &n);
    if (rc != MQC_OK)
        return rc;
    if (n > cur_left(c))
        return MQC_EMALFORMED;
    out->p = c->p;
    out->len = n;
    c->p += n;
    if (n == 0)
        return MQC_OK;
    return mqc_props_check(out, ctx);
}

static void no_props(const struct cur *c, struct mqc_props *out)
{
    out->p = c->p;
    out->len = 0;
}

/* Fixed header of a whole frame: buf[0 .. len) must be exactly one packet. */
static inline int rd_header(const uint8_t *buf, size_t len, uint8_t *type, uint8_t *flags,
                            struct cur *body)
{
    if (len < 2)
        return len == 1 && (buf[0] >> 4) == 0 ? MQC_ETYPE : MQC_EMALFORMED;
    uint8_t b0 = buf[0];
    if ((b0 >> 4) == 0)
        return MQC_ETYPE;
    uint32_t rem;
    size_t used;
    int rc = varint_dec(buf + 1, len - 1, &rem, &used);
    if (rc == MQC_AGAIN)
        return MQC_EMALFORMED;
    if (rc != MQC_OK)
        return rc;
    size_t hdr = 1 + used;
    if (rem > len - hdr)
        return MQC_EMALFORMED;
    if (rem < len - hdr)
        return MQC_ETRAILING;
    *type = (uint8_t)(b0 >> 4);
    *flags = (uint8_t)(b0 & 0x0Fu);
    body->p = buf + hdr;
    body->end = buf + len;
    return MQC_OK;
}

/* ---- §3.1 CONNECT ------------------------------------------------------------------------ */

static int dec_connect(struct cur *c, struct mqc_connect *o)
{
    struct mqc_bytes name;
    uint8_t level, fl;
    int rc;
    if (rd_str(c, &name) != MQC_OK || rd_u8(c, &level) != MQC_OK)
        return MQC_EMALFORMED;
    uint8_t v = (uint8_t)(level & 0x7Fu);
    /* [MQTT-3.1.2-1], [MQTT-3.1.2-2]: "MQTT" with level 4 or 5; 3.1 uses "MQIsdp", level 3. */
    if (name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0) {
        if (v != MQC_V31)
            return MQC_EPROTONAME;
    } else if (name.len == 4 && memcmp(name.p, "MQTT", 4) == 0) {
        if (v != MQC_V311 && v != MQC_V5)
            return MQC_EPROTONAME;
    } else {
        return MQC_EPROTONAME;
    }
    *o = (struct mqc_connect){0};
    o->version = v;
    o->bridge = (level & MQC_BRIDGE_BIT) != 0;
    if (rd_u8(c, &fl) != MQC_OK)
        return MQC_EMALFORMED;
    if ((fl & 0x01u) != 0)
        return MQC_EFLAGS; /* reserved flag [MQTT-3.1.2-3] */
    o->clean_start = (fl & 0x02u) != 0;
    o->will = (fl & 0x04u) != 0;
    o->will_qos = (uint8_t)((fl >> 3) & 0x03u);
    o->will_retain = (fl & 0x20u) != 0;
    o->has_password = (fl & 0x40u) != 0;
    o->has_username = (fl & 0x80u) != 0;
    /* Will flag 0: Will QoS and Will Retain 0 [MQTT-3.1.2-11], [MQTT-3.1.2-13];
     * Will QoS 3 never [MQTT-3.1.2-12] (3.1.1 [MQTT-3.1.2-13..15]). */
    if (!o->will && (o->will_qos != 0 || o->will_retain))
        return MQC_EWILL;
    if (o->will_qos == 3)
        return MQC_EWILL;
    /* 3.1.1 [MQTT-3.1.2-22]: no Password without a User Name. 3.1 says the same in prose
     * ("a User Name and optionally a password"); 5.0 allows it. */
    if (v != MQC_V5 && o->has_password && !o->has_username)
        return MQC_EWILL;
    if (rd_u16(c, &o->keepalive) != MQC_OK)
        return MQC_EMALFORMED;
    no_props(c, &o->props);
    if (v == MQC_V5) {
        rc = rd_props(c, MQC_CONNECT, &o->props);
        if (rc != MQC_OK)
            return rc;
        /* §3.1.2.11.10: Authentication Data without Authentication Method. */
        struct mqc_prop pr;
        if (mqc_props_find(&o->props, MQC_PROP_AUTH_DATA, &pr) == MQC_OK &&
            mqc_props_find(&o->props, MQC_PROP_AUTH_METHOD, &pr) != MQC_OK)
            return MQC_EPROTOCOL;
    }
    rc = rd_utf8(c, &o->client_id); /* [MQTT-3.1.3-4] */
    if (rc != MQC_OK)
        return rc;
    no_props(c, &o->will_props);
    if (o->will) {
        if (v == MQC_V5) {
            rc = rd_props(c, MQC_CTX_WILL, &o->will_props);
            if (rc != MQC_OK)
                return rc;
        }
        /* The Will Topic is a Topic Name [MQTT-3.1.3-11]: UTF-8, no wildcards. */
        if (rd_str(c, &o->will_topic) != MQC_OK)
            return MQC_EMALFORMED;
        rc = mqc_topic_name_check(o->will_topic.p, o->will_topic.len);
        if (rc != MQC_OK)
            return rc;
        if (rd_str(c, &o->will_payload) != MQC_OK) /* binary */
            return MQC_EMALFORMED;
    }
    if (o->has_username) {
        rc = rd_utf8(c, &o->username); /* [MQTT-3.1.3-12] */
        if (rc != MQC_OK)
            return rc;
    }
    if (o->has_password && rd_str(c, &o->password) != MQC_OK) /* binary */
        return MQC_EMALFORMED;
    return cur_left(c) == 0 ? MQC_OK : MQC_ETRAILING;
}

/* ---- §3.2 CONNACK -------------------------------------------------------------------- */

static int dec_connack(struct cur *c, uint8_t version, struct mqc_connack *o)
{
    uint8_t fl;
    if (rd_u8(c, &fl) != MQC_OK || rd_u8(c, &o->code) != MQC_OK)
        return MQC_EMALFORMED;
    /* Acknowledge flags bits 7-1 reserved [MQTT-3.2.2-1]. 3.1 has no Session Present and
     * calls the byte unused; it is read the 3.1.1 way (brokers send 0). */
    if ((fl & 0xFEu) != 0)
        return MQC_EFLAGS;
    o->session_present = (fl & 0x01u) != 0;
    if (!mqci_reason_ok(MQC_CONNACK, version, o->code))
        return MQC_EREASON;
    /* A refusal never claims a session [MQTT-3.2.2-6] (3.1.1 [MQTT-3.2.2-4]). */
    if (o->session_present && o->code != 0)
        return MQC_EPROTOCOL;
    no_props(c, &o->props);
    if (version != MQC_V5)
        return cur_left(c) == 0 ? MQC_OK : MQC_EV5ONLY;
    int rc = rd_props(c, MQC_CONNACK, &o->props);
    if (rc != MQC_OK)
        return rc;
    return cur_left(c) == 0 ? MQC_OK : MQC_ETRAILING;
}

/* ---- §3.3 PUBLISH: the relay's hot path, kept straight-line -------------------------------- */

static inline int dec_publish(uint8_t flags, struct cur *c, uint8_t version, struct mqc_publish *o)
{
    uint8_t qos = (uint8_t)((flags >> 1) & 0x03u);
    if (qos == 3)
        return MQC_EQOS; /* [MQTT-3.3.1-4] */
    if ((flags & 0x08u) != 0 && qos == 0)
        return MQC_EQOS; /* DUP on QoS 0 [MQTT-3.3.1-2] */
    o->qos = qos;
    o->dup = (flags & 0x08u) != 0;
    o->retain = (flags & 0x01u) != 0;
    if (rd_str(c, &o->topic) != MQC_OK)
        return MQC_EMALFORMED;
    if (o->topic.len != 0) {
        int rc = mqc_topic_name_check(o->topic.p, o->topic.len); /* [MQTT-3.3.2-1/2] */
        if (rc != MQC_OK)
            return rc;
    } else if (version != MQC_V5) {
        return MQC_ETOPIC; /* [MQTT-4.7.3-1] */
    }
    o->packet_id = 0;
    if (qos != 0) {
        int rc = rd_pid(c, &o->packet_id);
        if (rc != MQC_OK)
            return rc;
    }
    no_props(c, &o->props);
    if (version == MQC_V5) {
        int rc = rd_props(c, MQC_PUBLISH, &o->props);
        if (rc != MQC_OK)
            return rc;
        /* §3.3.2.1: "It is a Protocol Error if the Topic Name is zero length and there is
         * no Topic Alias." */
        struct mqc_prop ta;
        if (o->topic.len == 0 && mqc_props_find(&o->props, MQC_PROP_TOPIC_ALIAS, &ta) != MQC_OK)
            return MQC_ETOPIC;
    }
    o->payload.p = c->p;
    o->payload.len = cur_left(c);
    return MQC_OK;
}

/* Returns MQC_EINVAL when the frame is not a PUBLISH or version is not 3, 4 or 5. */
int mqc_decode_publish(const uint8_t *buf, size_t len, uint8_t version, struct mqc_publish *out)
{
    uint8_t type, flags;
    struct cur c;
    int rc = rd_header(buf, len, &type, &flags, &c);
    if (rc != MQC_OK)
        return rc;
    if (type != MQC_PUBLISH || !version_ok(version))
        return MQC_EINVAL;
    return dec_publish(flags, &c, version, out);
}

/* ---- §3.4-3.7 PUBACK, PUBREC, PUBREL, PUBCOMP ---------------------------------------------- */

static int dec_ack(uint8_t type, struct cur *c, uint8_t version, struct mqc_ack *o)
{
    int rc = rd_pid(c, &o->packet_id);
    if (rc != MQC_OK)
        return rc;
    o->code = 0;
    no_props(c, &o->props);
    if (version != MQC_V5)
        return cur_left(c) == 0 ? MQC_OK : MQC_EV5ONLY; /* 3.1.1: Remaining Length 2 */
    /* §3.4.2.1: Remaining Length 2 means Success and no properties; 3 means no properties. */
    if (cur_left(c) == 0)
        return MQC_OK;
    (void)rd_u8(c, &o->code);
    if (!mqci_reason_ok(type, version, o->code))
        return MQC_EREASON;
    if (cur_left(c) == 0)
        return MQC_OK;
    rc = rd_props(c, type, &o->props);
    if (rc != MQC_OK)
        return rc;
    return cur_left(c) == 0 ? MQC_OK : MQC_ETRAILING;
}

/* ---- §3.8 SUBSCRIBE, §3.10 UNSUBSCRIBE -------------------------------------------------- */

static int dec_subscribe(struct cur *c, uint8_t version, struct mqc_subscribe *o)
{
    int rc = rd_pid(c, &o->packet_id);
    if (rc != MQC_OK)
        return rc;
    no_props(c, &o->props);
    if (version == MQC_V5) {
        rc = rd_props(c, MQC_SUBSCRIBE, &o->props);
        if (rc != MQC_OK)
            return rc;
    }
    o->subs = NULL;
    o->count = 0;
    o->raw.p = c->p;
    o->raw.len = cur_left(c);
    if (o->raw.len == 0)
        return MQC_EEMPTY; /* [MQTT-3.8.3-2] (3.1.1 [MQTT-3.8.3-3]) */
    while (cur_left(c) != 0) {
        struct mqc_bytes f;
        uint8_t opts;
        if (rd_str(c, &f) != MQC_OK || rd_u8(c, &opts) != MQC_OK)
            return MQC_EMALFORMED;
        rc = mqc_topic_filter_check(f.p, f.len); /* [MQTT-3.8.3-1], [MQTT-4.7.1-1..3] */
        if (rc != MQC_OK)
            return rc;
        if (!subopts_ok(version, opts, &f))
            return MQC_ESUBOPTS;
        o->count++;
    }
    return MQC_OK;
}

int mqc_subscribe_next(const struct mqc_subscribe *s, uint8_t version, size_t *off,
                       struct mqc_sub *out)
{
    (void)version; /* the entry layout is the same in every version */
    if (*off >= s->raw.len)
        return MQC_AGAIN;
    struct cur c = {s->raw.p + *off, s->raw.p + s->raw.len};
    if (rd_str(&c, &out->filter) != MQC_OK || rd_u8(&c, &out->options) != MQC_OK)
        return MQC_EMALFORMED;
    *off = (size_t)(c.p - s->raw.p);
    return MQC_OK;
}

static int dec_unsubscribe(struct cur *c, uint8_t version, struct mqc_unsubscribe *o)
{
    int rc = rd_pid(c, &o->packet_id);
    if (rc != MQC_OK)
        return rc;
    no_props(c, &o->props);
    if (version == MQC_V5) {
        rc = rd_props(c, MQC_UNSUBSCRIBE, &o->props);
        if (rc != MQC_OK)
            return rc;
    }
    o->filters = NULL;
    o->count = 0;
    o->raw.p = c->p;
    o->raw.len = cur_left(c);
    if (o->raw.len == 0)
        return MQC_EEMPTY; /* [MQTT-3.10.3-2] */
    while (cur_left(c) != 0) {
        struct mqc_bytes f;
        if (rd_str(c, &f) != MQC_OK)
            return MQC_EMALFORMED;
        rc = mqc_topic_filter_check(f.p, f.len); /* [MQTT-3.10.3-1] */
        if (rc != MQC_OK)
            return rc;
        o->count++;
    }
    return MQC_OK;
}

int mqc_unsubscribe_next(const struct mqc_unsubscribe *u, size_t *off, struct mqc_bytes *out)
{
    if (*off >= u->raw.len)
        return MQC_AGAIN;
    struct cur c = {u->raw.p + *off, u->raw.p + u->raw.len};
    if (rd_str(&c, out) != MQC_OK)
        return MQC_EMALFORMED;
    *off = (size_t)(c.p - u->raw.p);
    return MQC_OK;
}

/* ---- §3.9 SUBACK, §3.11 UNSUBACK --------------------------------------------------------- */

static int dec_suback(uint8_t type, struct cur *c, uint8_t version, struct mqc_suback *o)
{
    int rc = rd_pid(c, &o->packet_id);
    if (rc != MQC_OK)
        return rc;
    no_props(c, &o->props);
    o->codes.p = c->p;
    o->codes.len = 0;
    if (type == MQC_UNSUBACK && version != MQC_V5)
        return cur_left(c) == 0 ? MQC_OK : MQC_EV5ONLY; /* 3.1.1: Remaining Length 2 */
    if (version == MQC_V5) {
        rc = rd_props(c, type, &o->props);
        if (rc != MQC_OK)
            return rc;
    }
    o->codes.p = c->p;
    o->codes.len = cur_left(c);
    /* One code per filter, and SUBSCRIBE / UNSUBSCRIBE carry at least one. */
    if (o->codes.len == 0)
        return MQC_EEMPTY;
    for (size_t i = 0; i < o->codes.len; i++)
        if (!mqci_reason_ok(type, version, o->codes.p[i]))
            return MQC_EREASON;
    return MQC_OK;
}

/* ---- §3.14 DISCONNECT, §3.15 AUTH ----------------------------------------------------------- */

static int dec_reason(uint8_t type, struct cur *c, uint8_t version, struct mqc_reason *o)
{
    o->code = 0;
    no_props(c, &o->props);
    if (version != MQC_V5)
        return cur_left(c) == 0 ? MQC_OK : MQC_EV5ONLY; /* 3.x DISCONNECT is empty */
    /* §3.14.2, §3.15.2: Remaining Length 0 means code 0x00; below 2 means no properties. */
    if (cur_left(c) == 0)
        return MQC_OK;
    (void)rd_u8(c, &o->code);
    if (!mqci_reason_ok(type, version, o->code))
        return MQC_EREASON;
    if (cur_left(c) == 0)
        return MQC_OK;
    int rc = rd_props(c, type, &o->props);
    if (rc != MQC_OK)
        return rc;
    return cur_left(c) == 0 ? MQC_OK : MQC_ETRAILING;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

/* Also returns MQC_EINVAL when version is not 3, 4 or 5 (packets other than CONNECT). */
int mqc_decode(const uint8_t *buf, size_t len, uint8_t version, struct mqc_packet *out)
{
    uint8_t type, flags;
    struct cur c;
    int rc = rd_header(buf, len, &type, &flags, &c);
    if (rc != MQC_OK)
        return rc;
    if (type != MQC_CONNECT && !version_ok(version))
        return MQC_EINVAL;
    out->type = type;
    if (type == MQC_PUBLISH)
        return dec_publish(flags, &c, version, &out->u.publish);
    if (type == MQC_AUTH && version != MQC_V5)
        return MQC_EV5ONLY; /* AUTH exists only in 5.0 */
    /* [MQTT-2.1.3-1] (3.1.1 [MQTT-2.2.2-1/2]). MQTT 3.1 §2.1 sets DUP when re-delivering
     * PUBREL, SUBSCRIBE or UNSUBSCRIBE, as Mosquitto does for 3.1: accept that bit there. */
    if (flags != fixed_flags(type) &&
        !(version == MQC_V31 && fixed_flags(type) == 0x2u && flags == (0x2u | 0x8u)))
        return MQC_EFLAGS;
    switch (type) {
    case MQC_CONNECT:
        return dec_connect(&c, &out->u.connect);
    case MQC_CONNACK:
        return dec_connack(&c, version, &out->u.connack);
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBREL:
    case MQC_PUBCOMP:
        return dec_ack(type, &c, version, &out->u.ack);
    case MQC_SUBSCRIBE:
        return dec_subscribe(&c, version, &out->u.subscribe);
    case MQC_SUBACK:
    case MQC_UNSUBACK:
        return dec_suback(type, &c, version, &out->u.suback);
    case MQC_UNSUBSCRIBE:
        return dec_unsubscribe(&c, version, &out->u.unsubscribe);
    case MQC_PINGREQ:
    case MQC_PINGRESP:
        return cur_left(&c) == 0 ? MQC_OK : MQC_ETRAILING;
    default: /* MQC_DISCONNECT, MQC_AUTH */
        return dec_reason(type, &c, version, &out->u.reason);
    }
}
