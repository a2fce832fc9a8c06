/*
 * §3 MQTT Control Packets, sending side. Every encoder first computes the Remaining Length
 * (validating the caller's values on the way), then checks the room, then writes: a buffer
 * that is too small is left untouched.
 *
 * What is validated (MQC_EINVAL): the structure the receiver's decoder would reject (5.0-only
 * content in 3.x, QoS 3, DUP on QoS 0, packet id 0 where one is required, empty lists, reason
 * codes the packet cannot carry, subscription options, inconsistent CONNECT will / user name /
 * password fields, strings over 65535 bytes). What is not: the content of strings (UTF-8,
 * wildcards, filter syntax) and of property blocks, which are copied verbatim; check those with
 * mqc_utf8_check(), mqc_topic_*_check() and mqc_props_check() where they do not already come
 * from a decoder.
 */
#include "internal.h"

/* ---- size helpers: accumulate in 64 bits, every term is bounded before it is added ---- */

static inline int add_str(uint64_t *rem, const struct mqc_bytes *s)
{
    if (s->len > UINT16_MAX)
        return MQC_EINVAL;
    *rem += 2 + (uint64_t)s->len;
    return MQC_OK;
}

static inline int add_props(uint64_t *rem, const struct mqc_props *p, uint8_t version)
{
    if (version != MQC_V5)
        return p->len == 0 ? MQC_OK : MQC_EINVAL;
    if (p->len > MQC_MAX_VARINT)
        return MQC_ETOOBIG;
    *rem += varint_size((uint32_t)p->len) + (uint64_t)p->len;
    return MQC_OK;
}

static inline uint8_t *put_props(uint8_t *o, const struct mqc_props *p)
{
    o = put_varint(o, (uint32_t)p->len);
    return put_bytes(o, p->p, p->len);
}

static inline int total_size(uint64_t rem, size_t *size)
{
    if (rem > MQC_MAX_REMAINING)
        return MQC_ETOOBIG;
    *size = 1 + varint_size((uint32_t)rem) + (size_t)rem;
    return MQC_OK;
}

static inline uint8_t *put_header(uint8_t *o, uint8_t b0, uint64_t rem)
{
    o = put_u8(o, b0);
    return put_varint(o, (uint32_t)rem);
}

/* ---- §3.3 PUBLISH ------------------------------------------------------------------------ */

static inline int publish_rem(const struct mqc_publish *p, uint8_t version, uint64_t *rem)
{
    if (!version_ok(version) || p->qos > 2 || (p->dup && p->qos == 0))
        return MQC_EINVAL; /* [MQTT-3.3.1-4], [MQTT-3.3.1-2] */
    if (p->qos != 0 && p->packet_id == 0)
        return MQC_EINVAL; /* [MQTT-2.2.1-3] */
    if (p->topic.len == 0) {
        /* Only 5.0 may leave the name out, and only in favour of a Topic Alias (§3.3.2.1). */
        struct mqc_prop ta;
        if (version != MQC_V5 || mqc_props_find(&p->props, MQC_PROP_TOPIC_ALIAS, &ta) != MQC_OK)
            return MQC_EINVAL;
    }
    if (p->payload.len > MQC_MAX_REMAINING)
        return MQC_ETOOBIG;
    uint64_t r = (p->qos != 0 ? 2u : 0u) + (uint64_t)p->payload.len;
    int rc = add_str(&r, &p->topic);
    if (rc != MQC_OK)
        return rc;
    rc = add_props(&r, &p->props, version);
    if (rc != MQC_OK)
        return rc;
    *rem = r;
    return MQC_OK;
}

/* QoS 0 PUBLISH: packet_id is ignored (not written) and *pid_off is set to 0. */
int mqc_size_publish(const struct mqc_publish *p, uint8_t version, size_t *size)
{
    uint64_t rem;
    int rc = publish_rem(p, version, &rem);
    if (rc != MQC_OK)
        return rc;
    return total_size(rem, size);
}

int mqc_encode_publish(const struct mqc_publish *p, uint8_t version, uint8_t *out, size_t cap,
                       size_t *written, size_t *pid_off)
{
    uint64_t rem;
    size_t size;
    int rc = publish_rem(p, version, &rem);
    if (rc != MQC_OK)
        return rc;
    rc = total_size(rem, &size);
    if (rc != MQC_OK)
        return rc;
    if (cap < size)
        return MQC_ENOSPC;
    uint8_t b0 = (uint8_t)((MQC_PUBLISH << 4) | (p->dup ? 0x08u : 0u) | ((unsigned)p->qos << 1) |
                           (p->retain ? 0x01u : 0u));
    uint8_t *o = put_header(out, b0, rem);
    o = put_str(o, &p->topic);
    size_t off = 0;
    if (p->qos != 0) {
        off = (size_t)(o - out);
        o = put_u16(o, p->packet_id);
    }
    if (version == MQC_V5)
        o = put_props(o, &p->props);
    put_bytes(o, p->payload.p, p->payload.len);
    if (pid_off != NULL)
        *pid_off = off;
    *written = size;
    return MQC_OK;
}

/* ---- §3.4-3.7 acks ------------------------------------------------------------------------- */

static int ack_rem(uint8_t type, const struct mqc_ack *a, uint8_t version, uint64_t *rem)
{
    if (type < MQC_PUBACK || type > MQC_PUBCOMP || !version_ok(version))
        return MQC_EINVAL;
    if (a->packet_id == 0)
        return MQC_EINVAL;
    if (!mqci_reason_ok(type, version, a->code))
        return MQC_EINVAL; /* 3.x: code must be 0 */
    uint64_t r = 2;
    if (version == MQC_V5 && a->props.len != 0) {
        r += 1;
        int rc = add_props(&r, &a->props, version);
        if (rc != MQC_OK)
            return rc;
    } else if (version != MQC_V5 && a->props.len != 0) {
        return MQC_EINVAL;
    } else if (a->code != 0) {
        r += 1; /* §3.4.2.1: Property Length may be omitted when there are no properties */
    }
    *rem = r;
    return MQC_OK;
}

static uint8_t *put_ack(uint8_t *o, uint8_t type, const struct mqc_ack *a, uint64_t rem)
{
    o = put_header(o, (uint8_t)((type << 4) | fixed_flags(type)), rem);
    o = put_u16(o, a->packet_id);
    if (rem >= 3)
        o = put_u8(o, a->code);
    if (rem >= 4)
        o = put_props(o, &a->props);
    return o;
}

int mqc_encode_ack(uint8_t type, const struct mqc_ack *a, uint8_t version, uint8_t *out, size_t cap,
                   size_t *written)
{
    uint64_t rem;
    size_t size;
    int rc = ack_rem(type, a, version, &rem);
    if (rc != MQC_OK)
        return rc;
    rc = total_size(rem, &size);
    if (rc != MQC_OK)
        return rc;
    if (cap < size)
        return MQC_ENOSPC;
    put_ack(out, type, a, rem);
    *written = size;
    return MQC_OK;
}

/* ---- §3.1 CONNECT ------------------------------------------------------------------------- */

static int connect_rem(const struct mqc_connect *c, uint8_t version, uint64_t *rem)
{
    if (c->version != version)
        return MQC_EINVAL;
    if (c->will_qos > 2)
        return MQC_EINVAL; /* [MQTT-3.1.2-12] */
    if (!c->will && (c->will_qos != 0 || c->will_retain || c->will_props.len != 0 ||
                     c->will_topic.len != 0 || c->will_payload.len != 0))
        return MQC_EINVAL; /* [MQTT-3.1.2-11], [MQTT-3.1.2-13] */
    if (c->will && c->will_topic.len == 0)
        return MQC_EINVAL; /* a Topic Name has at least one character [MQTT-4.7.3-1] */
    if ((!c->has_username && c->username.len != 0) || (!c->has_password && c->password.len != 0))
        return MQC_EINVAL;
    if (version != MQC_V5 && c->has_password && !c->has_username)
        return MQC_EINVAL; /* 3.1.1 [MQTT-3.1.2-22] */
    /* Protocol Name, Level, Connect Flags, Keep Alive. */
    uint64_t r = (version == MQC_V31 ? 2u + 6u : 2u + 4u) + 1u + 1u + 2u;
    int rc = add_props(&r, &c->props, version);
    if (rc == MQC_OK)
        rc = add_str(&r, &c->client_id);
    if (rc == MQC_OK && c->will) {
        rc = add_props(&r, &c->will_props, version);
        if (rc == MQC_OK)
            rc = add_str(&r, &c->will_topic);
        if (rc == MQC_OK)
            rc = add_str(&r, &c->will_payload);
    }
    if (rc == MQC_OK && c->has_username)
        rc = add_str(&r, &c->username);
    if (rc == MQC_OK && c->has_password)
        rc = add_str(&r, &c->password);
    *rem = r;
    return rc;
}

static uint8_t *put_connect(uint8_t *o, const struct mqc_connect *c, uint8_t version)
{
    static const struct mqc_bytes mqisdp = {(const uint8_t *)"MQIsdp", 6};
    static const struct mqc_bytes mqtt = {(const uint8_t *)"MQTT", 4};
    o = put_str(o, version == MQC_V31 ? &mqisdp : &mqtt);
    o = put_u8(o, (uint8_t)(version | (c->bridge ? MQC_BRIDGE_BIT : 0u)));
    unsigned fl = (c->clean_start ? 0x02u : 0u) | (c->will ? 0x04u : 0u) |
                  ((unsigned)c->will_qos << 3) | (c->will_retain ? 0x20u : 0u) |
                  (c->has_password ? 0x40u : 0u) | (c->has_username ? 0x80u : 0u);
    o = put_u8(o, (uint8_t)fl);
    o = put_u16(o, c->keepalive);
    if (version == MQC_V5)
        o = put_props(o, &c->props);
    o = put_str(o, &c->client_id);
    if (c->will) {
        if (version == MQC_V5)
            o = put_props(o, &c->will_props);
        o = put_str(o, &c->will_topic);
        o = put_str(o, &c->will_payload);
    }
    if (c->has_username)
        o = put_str(o, &c->username);
    if (c->has_password)
        o = put_str(o, &c->password);
    return o;
}

/* ---- §3.2 CONNACK ------------------------------------------------------------------------- */

static int connack_rem(const struct mqc_connack *c, uint8_t version, uint64_t *rem)
{
    if (!mqci_reason_ok(MQC_CONNACK, version, c->code))
        return MQC_EINVAL;
    if (c->session_present && c->code != 0)
        return MQC_EINVAL; /* [MQTT-3.2.2-6] */
    uint64_t r = 2;
    int rc = add_props(&r, &c->props, version);
    *rem = r;
    return rc;
}

static uint8_t *put_connack(uint8_t *o, const struct mqc_connack *c, uint8_t version)
{
    o = put_u8(o, c->session_present ? 0x01u : 0x00u);
    o = put_u8(o, c->code);
    if (version == MQC_V5)
        o = put_props(o, &c->props);
    return o;
}

/* ---- §3.8 SUBSCRIBE, §3.10 UNSUBSCRIBE ------------------------------------------------------ */

/* A filter as the encoder accepts it: 1..65535 bytes (content is the caller's business). */
static int add_filter(uint64_t *r, const struct mqc_bytes *f)
{
    if (f->len == 0)
        return MQC_EINVAL;
    int rc = add_str(r, f);
    if (rc == MQC_OK && *r > MQC_MAX_REMAINING)
        return MQC_ETOOBIG; /* stop early on huge lists */
    return rc;
}

/* A decoded payload (subs / filters NULL) is re-encoded from raw: walk it with the same rules
 * so a 5.0 payload cannot slip into a 3.x packet, and require count to match it. */
static int subscribe_rem(const struct mqc_subscribe *s, uint8_t version, uint64_t *rem)
{
    if (s->packet_id == 0)
        return MQC_EINVAL;
    uint64_t r = 2;
    int rc = add_props(&r, &s->props, version);
    if (rc != MQC_OK)
        return rc;
    size_t n = 0;
    if (s->subs != NULL) {
        for (size_t i = 0; i < s->count; i++, n++) {
            rc = add_filter(&r, &s->subs[i].filter);
            if (rc != MQC_OK)
                return rc;
            if (!subopts_ok(version, s->subs[i].options, &s->subs[i].filter))
                return MQC_EINVAL;
            r += 1;
        }
    } else {
        if (s->raw.len > MQC_MAX_REMAINING)
            return MQC_ETOOBIG;
        size_t off = 0;
        struct mqc_sub e;
        while ((rc = mqc_subscribe_next(s, version, &off, &e)) == MQC_OK) {
            if (e.filter.len == 0 || !subopts_ok(version, e.options, &e.filter))
                return MQC_EINVAL;
            n++;
        }
        if (rc != MQC_AGAIN || n != s->count)
            return MQC_EINVAL;
        r += s->raw.len;
    }
    if (n == 0)
        return MQC_EINVAL; /* [MQTT-3.8.3-2] */
    *rem = r;
    return MQC_OK;
}

static uint8_t *put_subscribe(uint8_t *o, const struct mqc_subscribe *s, uint8_t version)
{
    o = put_u16(o, s->packet_id);
    if (version == MQC_V5)
        o = put_props(o, &s->props);
    if (s->subs == NULL)
        return put_bytes(o, s->raw.p, s->raw.len);
    for (size_t i = 0; i < s->count; i++) {
        o = put_str(o, &s->subs[i].filter);
        o = put_u8(o, s->subs[i].options);
    }
    return o;
}

static int unsubscribe_rem(const struct mqc_unsubscribe *u, uint8_t version, uint64_t *rem)
{
    if (u->packet_id == 0)
        return MQC_EINVAL;
    uint64_t r = 2;
    int rc = add_props(&r, &u->props, version);
    if (rc != MQC_OK)
        return rc;
    size_t n = 0;
    if (u->filters != NULL) {
        for (size_t i = 0; i < u->count; i++, n++) {
            rc = add_filter(&r, &u->filters[i]);
            if (rc != MQC_OK)
                return rc;
        }
    } else {
        if (u->raw.len > MQC_MAX_REMAINING)
            return MQC_ETOOBIG;
        size_t off = 0;
        struct mqc_bytes f;
        while ((rc = mqc_unsubscribe_next(u, &off, &f)) == MQC_OK) {
            if (f.len == 0)
                return MQC_EINVAL;
            n++;
        }
        if (rc != MQC_AGAIN || n != u->count)
            return MQC_EINVAL;
        r += u->raw.len;
    }
    if (n == 0)
        return MQC_EINVAL; /* [MQTT-3.10.3-2] */
    *rem = r;
    return MQC_OK;
}

static uint8_t *put_unsubscribe(uint8_t *o, const struct mqc_unsubscribe *u, uint8_t version)
{
    o = put_u16(o, u->packet_id);
    if (version == MQC_V5)
        o = put_props(o, &u->props);
    if (u->filters == NULL)
        return put_bytes(o, u->raw.p, u->raw.len);
    for (size_t i = 0; i < u->count; i++)
        o = put_str(o, &u->filters[i]);
    return o;
}

/* ---- §3.9 SUBACK, §3.11 UNSUBACK ------------------------------------------------------------ */

static int suback_rem(uint8_t type, const struct mqc_suback *s, uint8_t version, uint64_t *rem)
{
    if (s->packet_id == 0)
        return MQC_EINVAL;
    uint64_t r = 2;
    int rc = add_props(&r, &s->props, version);
    if (rc != MQC_OK)
        return rc;
    if (type == MQC_UNSUBACK && version != MQC_V5) {
        if (s->codes.len != 0)
            return MQC_EINVAL; /* 3.x UNSUBACK has no payload */
    } else {
        if (s->codes.len == 0 || s->codes.len > MQC_MAX_REMAINING)
            return s->codes.len == 0 ? MQC_EINVAL : MQC_ETOOBIG;
        for (size_t i = 0; i < s->codes.len; i++)
            if (!mqci_reason_ok(type, version, s->codes.p[i]))
                return MQC_EINVAL;
        r += s->codes.len;
    }
    *rem = r;
    return MQC_OK;
}

static uint8_t *put_suback(uint8_t *o, const struct mqc_suback *s, uint8_t version)
{
    o = put_u16(o, s->packet_id);
    if (version == MQC_V5)
        o = put_props(o, &s->props);
    return put_bytes(o, s->codes.p, s->codes.len);
}

/* ---- §3.14 DISCONNECT, §3.15 AUTH ----------------------------------------------------------- */

static int reason_rem(uint8_t type, const struct mqc_reason *m, uint8_t version, uint64_t *rem)
{
    if (!mqci_reason_ok(type, version, m->code))
        return MQC_EINVAL; /* includes AUTH in 3.x: no code is valid there */
    if (version != MQC_V5) {
        *rem = 0;
        return m->props.len == 0 ? MQC_OK : MQC_EINVAL;
    }
    uint64_t r = 0;
    if (m->props.len != 0) {
        r = 1;
        int rc = add_props(&r, &m->props, version);
        if (rc != MQC_OK)
            return rc;
    } else if (m->code != 0) {
        r = 1; /* §3.14.2.2.1: no Property Length when Remaining Length is below 2 */
    }
    *rem = r;
    return MQC_OK;
}

static uint8_t *put_reason(uint8_t *o, const struct mqc_reason *m, uint64_t rem)
{
    if (rem >= 1)
        o = put_u8(o, m->code);
    if (rem >= 2)
        o = put_props(o, &m->props);
    return o;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static int packet_rem(const struct mqc_packet *pkt, uint8_t version, uint64_t *rem)
{
    if (!version_ok(version))
        return MQC_EINVAL;
    switch (pkt->type) {
    case MQC_CONNECT:
        return connect_rem(&pkt->u.connect, version, rem);
    case MQC_CONNACK:
        return connack_rem(&pkt->u.connack, version, rem);
    case MQC_PUBLISH:
        return publish_rem(&pkt->u.publish, version, rem);
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBREL:
    case MQC_PUBCOMP:
        return ack_rem(pkt->type, &pkt->u.ack, version, rem);
    case MQC_SUBSCRIBE:
        return subscribe_rem(&pkt->u.subscribe, version, rem);
    case MQC_SUBACK:
    case MQC_UNSUBACK:
        return suback_rem(pkt->type, &pkt->u.suback, version, rem);
    case MQC_UNSUBSCRIBE:
        return unsubscribe_rem(&pkt->u.unsubscribe, version, rem);
    case MQC_PINGREQ:
    case MQC_PINGRESP:
        *rem = 0;
        return MQC_OK;
    case MQC_DISCONNECT:
    case MQC_AUTH:
        return reason_rem(pkt->type, &pkt->u.reason, version, rem);
    default:
        return MQC_EINVAL;
    }
}

int mqc_size(const struct mqc_packet *pkt, uint8_t version, size_t *size)
{
    uint64_t rem;
    int rc = packet_rem(pkt, version, &rem);
    if (rc != MQC_OK)
        return rc;
    return total_size(rem, size);
}

int mqc_encode(const struct mqc_packet *pkt, uint8_t version, uint8_t *out, size_t cap,
               size_t *written)
{
    if (pkt->type == MQC_PUBLISH)
        return mqc_encode_publish(&pkt->u.publish, version, out, cap, written, NULL);
    uint64_t rem;
    size_t size;
    int rc = packet_rem(pkt, version, &rem);
    if (rc != MQC_OK)
        return rc;
    rc = total_size(rem, &size);
    if (rc != MQC_OK)
        return rc;
    if (cap < size)
        return MQC_ENOSPC;
    uint8_t t = pkt->type;
    if (t >= MQC_PUBACK && t <= MQC_PUBCOMP) {
        put_ack(out, t, &pkt->u.ack, rem);
        *written = size;
        return MQC_OK;
    }
    uint8_t *o = put_header(out, (uint8_t)((t << 4) | fixed_flags(t)), rem);
    switch (t) {
    case MQC_CONNECT:
        put_connect(o, &pkt->u.connect, version);
        break;
    case MQC_CONNACK:
        put_connack(o, &pkt->u.connack, version);
        break;
    case MQC_SUBSCRIBE:
        put_subscribe(o, &pkt->u.subscribe, version);
        break;
    case MQC_SUBACK:
    case MQC_UNSUBACK:
        put_suback(o, &pkt->u.suback, version);
        break;
    case MQC_UNSUBSCRIBE:
        put_unsubscribe(o, &pkt->u.unsubscribe, version);
        break;
    case MQC_DISCONNECT:
    case MQC_AUTH:
        put_reason(o, &pkt->u.reason, rem);
        break;
    default: /* PINGREQ, PINGRESP: header only */
        break;
    }
    *written = size;
    return MQC_OK;
}
