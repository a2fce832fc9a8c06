/*
 * §2.2.2 Properties (MQTT 5): Identifier (a variable byte integer; every one defined so far fits
 * in one byte) followed by a value of the identifier's type. Which packets may carry which
 * property: the table in §2.2.2.2.
 */
#include "internal.h"

/* Context bits: bit n = packet type n (1..15), bit MQC_CTX_WILL = Will Properties. */
#define C(t) (1u << (t))
#define X_CONNECT C(MQC_CONNECT)
#define X_CONNACK C(MQC_CONNACK)
#define X_PUBLISH C(MQC_PUBLISH)
#define X_WILL C(MQC_CTX_WILL)
#define X_ACKS (C(MQC_PUBACK) | C(MQC_PUBREC) | C(MQC_PUBREL) | C(MQC_PUBCOMP))
#define X_SUBSCRIBE C(MQC_SUBSCRIBE)
#define X_SUBACK C(MQC_SUBACK)
#define X_UNSUBSCRIBE C(MQC_UNSUBSCRIBE)
#define X_UNSUBACK C(MQC_UNSUBACK)
#define X_DISCONNECT C(MQC_DISCONNECT)
#define X_AUTH C(MQC_AUTH)

struct prop_def {
    uint8_t type; /* enum mqc_prop_type */
    uint8_t flags;
    uint32_t ctx; /* packets it may appear in */
};

#define F_BOOL 0x01u    /* value must be 0 or 1 */
#define F_NONZERO 0x02u /* value 0 is a Protocol Error */
#define F_TOPIC 0x04u   /* a Topic Name: no wildcards [MQTT-3.3.2-14] */

static const struct prop_def defs[0x2B] = {
    [MQC_PROP_PAYLOAD_FORMAT] = {MQC_PT_BYTE, F_BOOL, X_PUBLISH | X_WILL},
    [MQC_PROP_MESSAGE_EXPIRY] = {MQC_PT_U32, 0, X_PUBLISH | X_WILL},
    [MQC_PROP_CONTENT_TYPE] = {MQC_PT_UTF8, 0, X_PUBLISH | X_WILL},
    [MQC_PROP_RESPONSE_TOPIC] = {MQC_PT_UTF8, F_TOPIC, X_PUBLISH | X_WILL},
    [MQC_PROP_CORRELATION_DATA] = {MQC_PT_BINARY, 0, X_PUBLISH | X_WILL},
    [MQC_PROP_SUBSCRIPTION_ID] = {MQC_PT_VARINT, F_NONZERO, X_PUBLISH | X_SUBSCRIBE},
    [MQC_PROP_SESSION_EXPIRY] = {MQC_PT_U32, 0, X_CONNECT | X_CONNACK | X_DISCONNECT},
    [MQC_PROP_ASSIGNED_CLIENT_ID] = {MQC_PT_UTF8, 0, X_CONNACK},
    [MQC_PROP_SERVER_KEEP_ALIVE] = {MQC_PT_U16, 0, X_CONNACK},
    [MQC_PROP_AUTH_METHOD] = {MQC_PT_UTF8, 0, X_CONNECT | X_CONNACK | X_AUTH},
    [MQC_PROP_AUTH_DATA] = {MQC_PT_BINARY, 0, X_CONNECT | X_CONNACK | X_AUTH},
    [MQC_PROP_REQUEST_PROBLEM_INFO] = {MQC_PT_BYTE, F_BOOL, X_CONNECT},
    [MQC_PROP_WILL_DELAY] = {MQC_PT_U32, 0, X_WILL},
    [MQC_PROP_REQUEST_RESPONSE_INFO] = {MQC_PT_BYTE, F_BOOL, X_CONNECT},
    [MQC_PROP_RESPONSE_INFO] = {MQC_PT_UTF8, 0, X_CONNACK},
    [MQC_PROP_SERVER_REFERENCE] = {MQC_PT_UTF8, 0, X_CONNACK | X_DISCONNECT},
    [MQC_PROP_REASON_STRING] = {MQC_PT_UTF8, 0,
                                X_CONNACK | X_ACKS | X_SUBACK | X_UNSUBACK | X_DISCONNECT | X_AUTH},
    [MQC_PROP_RECEIVE_MAXIMUM] = {MQC_PT_U16, F_NONZERO, X_CONNECT | X_CONNACK},
    [MQC_PROP_TOPIC_ALIAS_MAXIMUM] = {MQC_PT_U16, 0, X_CONNECT | X_CONNACK},
    [MQC_PROP_TOPIC_ALIAS] = {MQC_PT_U16, F_NONZERO, X_PUBLISH},
    /* Maximum QoS: only 0 or 1 are legal, but BifroMQ 3.3/4.0 send 2; the receiver clamps. */
    [MQC_PROP_MAXIMUM_QOS] = {MQC_PT_BYTE, 0, X_CONNACK},
    [MQC_PROP_RETAIN_AVAILABLE] = {MQC_PT_BYTE, F_BOOL, X_CONNACK},
    [MQC_PROP_USER] = {MQC_PT_PAIR, 0,
                       X_CONNECT | X_CONNACK | X_PUBLISH | X_WILL | X_ACKS | X_SUBSCRIBE |
                           X_SUBACK | X_UNSUBSCRIBE | X_UNSUBACK | X_DISCONNECT | X_AUTH},
    [MQC_PROP_MAXIMUM_PACKET_SIZE] = {MQC_PT_U32, F_NONZERO, X_CONNECT | X_CONNACK},
    [MQC_PROP_WILDCARD_SUB_AVAILABLE] = {MQC_PT_BYTE, F_BOOL, X_CONNACK},
    [MQC_PROP_SUB_ID_AVAILABLE] = {MQC_PT_BYTE, F_BOOL, X_CONNACK},
    [MQC_PROP_SHARED_SUB_AVAILABLE] = {MQC_PT_BYTE, F_BOOL, X_CONNACK},
};

enum mqc_prop_type mqc_prop_type(uint8_t id)
{
    if (id >= sizeof defs / sizeof defs[0])
        return MQC_PT_NONE;
    return (enum mqc_prop_type)defs[id].type;
}

/* Reads one property's value (id already read) into out. Bounds only: MQC_EMALFORMED when a
 * value or a length runs past the block, MQC_EVARINT for a bad Subscription Identifier
 * encoding. */
static int rd_value(struct cur *c, uint8_t type, struct mqc_prop *out)
{
    uint8_t b = 0;
    uint16_t h = 0;
    int rc;
    out->num = 0;
    out->str.p = NULL;
    out->str.len = 0;
    out->val.p = NULL;
    out->val.len = 0;
    switch (type) {
    case MQC_PT_BYTE:
        rc = rd_u8(c, &b);
        out->num = b;
        return rc;
    case MQC_PT_U16:
        rc = rd_u16(c, &h);
        out->num = h;
        return rc;
    case MQC_PT_U32:
        return rd_u32(c, &out->num);
    case MQC_PT_VARINT:
        return rd_varint(c, &out->num);
    case MQC_PT_UTF8:
    case MQC_PT_BINARY:
        return rd_str(c, &out->str);
    case MQC_PT_PAIR:
        rc = rd_str(c, &out->str);
        if (rc != MQC_OK)
            return rc;
        return rd_str(c, &out->val);
    default:
        return MQC_EMALFORMED;
    }
}

int mqc_props_check(const struct mqc_props *props, int ctx)
{
    if (ctx < MQC_CONNECT || ctx > MQC_CTX_WILL)
        return MQC_EINVAL;
    if (props->len == 0)
        return MQC_OK;
    struct cur c = {props->p, props->p + props->len};
    uint64_t seen = 0;
    uint32_t here = 1u << ctx;
    while (c.p != c.end) {
        uint8_t id = *c.p++;
        /* Identifiers >= 0x80 would be multi-byte varints; none is defined. */
        if (id >= sizeof defs / sizeof defs[0] || defs[id].type == MQC_PT_NONE)
            return MQC_EPROPID;
        const struct prop_def *d = &defs[id];
        if ((d->ctx & here) == 0)
            return MQC_EPROPID;
        /* §2.2.2.2: "It is a Protocol Error to include ... more than once", except User
         * Property and, in PUBLISH, Subscription Identifier (§3.3.2.3.8). */
        uint64_t bit = (uint64_t)1 << id;
        if ((seen & bit) != 0 && id != MQC_PROP_USER &&
            !(id == MQC_PROP_SUBSCRIPTION_ID && ctx == MQC_PUBLISH))
            return MQC_EPROPDUP;
        seen |= bit;
        struct mqc_prop v;
        int rc = rd_value(&c, d->type, &v);
        if (rc != MQC_OK)
            return rc;
        if ((d->flags & F_BOOL) != 0 && v.num > 1)
            return MQC_EPROPVAL;
        if ((d->flags & F_NONZERO) != 0 && v.num == 0)
            return MQC_EPROPVAL; /* e.g. Topic Alias 0 [MQTT-3.3.2-8] */
        if (d->type == MQC_PT_UTF8 || d->type == MQC_PT_PAIR) {
            /* [MQTT-1.5.4-1/2]; a User Property's name and value are both UTF-8 strings
             * [MQTT-1.5.7-1]. */
            if (mqc_utf8_check(v.str.p, v.str.len) != MQC_OK)
                return MQC_EUTF8;
            if (d->type == MQC_PT_PAIR && mqc_utf8_check(v.val.p, v.val.len) != MQC_OK)
                return MQC_EUTF8;
        }
        if ((d->flags & F_TOPIC) != 0 && mqc_topic_name_check(v.str.p, v.str.len) != MQC_OK)
            return MQC_EPROPVAL; /* Response Topic: a Topic Name, no wildcards [MQTT-3.3.2-14] */
    }
    return MQC_OK;
}

int mqc_props_next(const struct mqc_props *props, size_t *off, struct mqc_prop *out)
{
    if (*off >= props->len)
        return MQC_AGAIN;
    struct cur c = {props->p + *off, props->p + props->len};
    uint8_t id = *c.p++;
    enum mqc_prop_type t = mqc_prop_type(id);
    if (t == MQC_PT_NONE)
        return MQC_EMALFORMED; /* its length is unknown: the walk cannot go on */
    int rc = rd_value(&c, (uint8_t)t, out);
    if (rc != MQC_OK)
        return MQC_EMALFORMED;
    out->id = id;
    *off = (size_t)(c.p - props->p);
    return MQC_OK;
}

int mqc_props_find(const struct mqc_props *props, uint8_t id, struct mqc_prop *out)
{
    size_t off = 0;
    struct mqc_prop p;
    int rc;
    while ((rc = mqc_props_next(props, &off, &p)) == MQC_OK) {
        if (p.id == id) {
            *out = p;
            return MQC_OK;
        }
    }
    return rc;
}

size_t mqc_prop_size(const struct mqc_prop *p)
{
    switch (mqc_prop_type(p->id)) {
    case MQC_PT_BYTE:
        return p->num <= UINT8_MAX ? 2 : 0;
    case MQC_PT_U16:
        return p->num <= UINT16_MAX ? 3 : 0;
    case MQC_PT_U32:
        return 5;
    case MQC_PT_VARINT:
        return p->num <= MQC_MAX_VARINT ? 1 + varint_size(p->num) : 0;
    case MQC_PT_UTF8:
    case MQC_PT_BINARY:
        return p->str.len <= UINT16_MAX ? 3 + p->str.len : 0;
    case MQC_PT_PAIR:
        if (p->str.len > UINT16_MAX || p->val.len > UINT16_MAX)
            return 0;
        return 5 + p->str.len + p->val.len;
    default:
        return 0;
    }
}

int mqc_prop_put(const struct mqc_prop *p, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = mqc_prop_size(p);
    if (n == 0)
        return MQC_EINVAL;
    if (*len > cap || n > cap - *len)
        return MQC_ENOSPC;
    uint8_t *o = put_u8(out + *len, p->id);
    switch (mqc_prop_type(p->id)) {
    case MQC_PT_BYTE:
        put_u8(o, (uint8_t)p->num);
        break;
    case MQC_PT_U16:
        put_u16(o, (uint16_t)p->num);
        break;
    case MQC_PT_U32:
        put_u32(o, p->num);
        break;
    case MQC_PT_VARINT:
        put_varint(o, p->num);
        break;
    case MQC_PT_UTF8:
    case MQC_PT_BINARY:
        put_str(o, &p->str);
        break;
    default: /* MQC_PT_PAIR: mqc_prop_size() accepted no other type */
        o = put_str(o, &p->str);
        put_str(o, &p->val);
        break;
    }
    *len += n;
    return MQC_OK;
}
