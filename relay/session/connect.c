/*
 * connect.c: the session's CONNECT, and what the broker's CONNACK says and allows (Receive
 * Maximum, Maximum Packet Size, Maximum QoS, ...), which the rest of the session obeys.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "session/internal.h"

/* ---- CONNECT / SUBSCRIBE ------------------------------------------------------------------ */

int sess_queue_connect(struct relay_session *s)
{
    const struct relay_session_cfg *c = s->cfg;
    struct mqc_packet pkt = {.type = MQC_CONNECT};
    struct mqc_connect *cn = &pkt.u.connect;
    uint8_t props[32];
    size_t plen = 0;

    cn->version = c->version;
    cn->bridge = relay_session_bridge_on(s);
    cn->clean_start = c->clean_start;
    cn->keepalive = c->keepalive;
    cn->client_id = (struct mqc_bytes){(const uint8_t *)c->client_id, strlen(c->client_id)};
    if (c->username) {
        cn->has_username = true;
        cn->username = (struct mqc_bytes){(const uint8_t *)c->username, strlen(c->username)};
    }
    if (c->password) {
        cn->has_password = true;
        cn->password = (struct mqc_bytes){(const uint8_t *)c->password, c->password_len};
    }
    if (c->will_topic) {
        cn->will = true;
        cn->will_qos = 1;
        cn->will_retain = true;
        cn->will_topic = (struct mqc_bytes){(const uint8_t *)c->will_topic, strlen(c->will_topic)};
        cn->will_payload = (struct mqc_bytes){(const uint8_t *)"offline", 7};
    }
    if (c->version == MQC_V5) {
        struct mqc_prop p = {0};

        if (c->session_expiry) {
            p.id = MQC_PROP_SESSION_EXPIRY;
            p.num = c->session_expiry;
            mqc_prop_put(&p, props, sizeof(props), &plen);
        }
        p.id = MQC_PROP_RECEIVE_MAXIMUM;
        p.num = s->in_cap;
        mqc_prop_put(&p, props, sizeof(props), &plen);
        p.id = MQC_PROP_MAXIMUM_PACKET_SIZE;
        p.num = c->max_packet_size;
        mqc_prop_put(&p, props, sizeof(props), &plen);
        cn->props = (struct mqc_props){props, plen};
    }
    return sess_ctl_put(s, &pkt);
}

/* ---- incoming packets ------------------------------------------------------------------- */

int sess_on_connack(struct relay_session *s, const struct mqc_connack *ca, uint64_t now_ms)
{
    const struct relay_session_cfg *c = s->cfg;
    struct mqc_prop p;
    size_t off = 0;

    if (ca->code != 0) {
        bool v5 = c->version == MQC_V5;
        static const char *const v3_text[] = {
            "accepted",           "unacceptable protocol version", "identifier rejected",
            "server unavailable", "bad user name or password",     "not authorized"};
        const char *text = !v5 && ca->code < 6 ? v3_text[ca->code] : NULL;

        /* "unacceptable protocol version" to a CONNECT with the bridge bit: the bit is what
         * is refused (ejabberd, Aedes); the owner decides whether to try again without it */
        if (relay_session_bridge_on(s) && ca->code == 1)
            s->end = RELAY_END_BRIDGE_REFUSED;
        if (v5)
            text = mqc_reason_name(ca->code);
        if (!text)
            text = "refused";
        sess_set_why(s, "connection refused (%s, code 0x%02X)", text, ca->code);
        return -ECONNREFUSED;
    }

    s->peer_receive_max = 65535;
    s->peer_max_packet = MQC_MAX_REMAINING + 5u;
    s->peer_max_qos = 2;
    s->peer_retain = true;
    s->peer_sub_ids = c->version == MQC_V5;
    s->peer_shared = true;
    s->peer_alias_max = 0;
    s->keepalive = c->keepalive;
    while (mqc_props_next(&ca->props, &off, &p) == MQC_OK) {
        switch (p.id) {
        case MQC_PROP_RECEIVE_MAXIMUM:
            s->peer_receive_max = (uint16_t)p.num;
            break;
        case MQC_PROP_MAXIMUM_PACKET_SIZE:
            s->peer_max_packet = p.num;
            break;
        /* BifroMQ 3.3/4.0 put the Receive Maximum here (e.g. 200): clamp, don't refuse */
        case MQC_PROP_MAXIMUM_QOS:
            s->peer_max_qos = (uint8_t)(p.num > 2 ? 2 : p.num);
            break;
        case MQC_PROP_RETAIN_AVAILABLE:
            s->peer_retain = p.num != 0;
            break;
        case MQC_PROP_SUB_ID_AVAILABLE:
            s->peer_sub_ids = p.num != 0;
            break;
        case MQC_PROP_SHARED_SUB_AVAILABLE:
            s->peer_shared = p.num != 0;
            break;
        case MQC_PROP_TOPIC_ALIAS_MAXIMUM:
            s->peer_alias_max = (uint16_t)p.num;
            break;
        case MQC_PROP_SERVER_KEEP_ALIVE:
            s->keepalive = (uint16_t)p.num;
            break;
        case MQC_PROP_ASSIGNED_CLIENT_ID:
            relay_log(s->log, RELAY_LOG_DEBUG, s->who, "broker assigned client id %.*s",
                      (int)p.str.len, (const char *)p.str.p);
            break;
        default:
            break;
        }
    }
    sess_window_limits(s);
    /* topic aliases toward the broker: at most what it allows and what we were told to use (a
     * reload may have asked for more than there are entries: none is mapped now, so grow) */
    s->alias.max = c->topic_aliases < s->peer_alias_max ? c->topic_aliases : s->peer_alias_max;
    if (s->alias.max > s->alias.cap) {
        struct sess_alias_ent *e = realloc(s->alias.ent, s->alias.max * sizeof(*e));

        if (e) {
            memset(e + s->alias.cap, 0, (size_t)(s->alias.max - s->alias.cap) * sizeof(*e));
            s->alias.ent = e;
            s->alias.cap = s->alias.max;
        } else {
            s->alias.max = s->alias.cap;
        }
    }
    s->session_present = ca->session_present;
    s->state = RELAY_SS_SUBSCRIBING;

    /* QoS 2 exchanges waiting for PUBCOMP: resume them (PUBREL again), or, when the broker
     * has no session any more, they are finished: the PUBREC said it has the message */
    for (uint32_t i = 0; i < s->slots_cap; i++) {
        if (s->slot_state[i] != SL_PUBCOMP)
            continue;
        if (s->session_present) {
            relay_window_sent(&s->win);
            if (sess_ctl_ack(s, MQC_PUBREL, (uint16_t)(i + 1), 0) != 0)
                return -ENOMEM;
        } else {
            s->slot_state[i] = SL_FREE;
        }
    }
    s->hooks->up(s, s->session_present, now_ms);
    sess_rtt_sample(s, now_ms - s->link_open_ms, now_ms); /* CONNECT -> CONNACK */

    if (sess_queue_subscribes(s) != 0)
        return -ENOMEM;
    if (s->sub_pending == 0)
        s->state = RELAY_SS_UP;
    return 0;
}
