/*
 * subs.c: the session's subscriptions: SUBSCRIBE after every CONNACK (at most 10 filters per
 * packet, or one per packet with MQTT 5 Subscription Identifiers), SUBACK and UNSUBACK, and the
 * changes a reload makes on a live link.
 */
#include <errno.h>
#include <string.h>

#include "session/internal.h"

void relay_session_set_subs(struct relay_session *s, const struct relay_sub *subs, size_t n)
{
    s->subs = subs;
    s->n_subs = n;
}

/* A free SUBSCRIBE/UNSUBSCRIBE identifier slot, or -1 when all are in flight. */
static int sub_slot(struct relay_session *s)
{
    for (uint16_t k = 0; k < SUB_PID_COUNT; k++) {
        uint16_t idx = s->sub_seq;

        s->sub_seq = (uint16_t)((s->sub_seq + 1u) % SUB_PID_COUNT);
        if (!s->subq[idx].n)
            return idx;
    }
    return -1;
}

/* One SUBSCRIBE for subs[first .. first+n). */
static int send_subscribe(struct relay_session *s, size_t first, size_t n, uint16_t idx)
{
    struct mqc_sub batch[10];
    struct mqc_packet pkt = {.type = MQC_SUBSCRIBE};
    uint8_t props[8];
    size_t plen = 0;

    for (size_t k = 0; k < n; k++) {
        const struct relay_sub *sub = &s->subs[first + k];

        batch[k].filter = (struct mqc_bytes){(const uint8_t *)sub->filter, strlen(sub->filter)};
        batch[k].options = s->cfg->version == MQC_V5 ? sub->options : MQC_SUB_QOS(sub->options);
    }
    if (s->cfg->version == MQC_V5 && s->peer_sub_ids && n == 1 && s->subs[first].sub_id) {
        struct mqc_prop p = {.id = MQC_PROP_SUBSCRIPTION_ID, .num = s->subs[first].sub_id};
        mqc_prop_put(&p, props, sizeof(props), &plen);
    }
    pkt.u.subscribe.packet_id = (uint16_t)(SUB_PID_BASE + idx);
    pkt.u.subscribe.props = (struct mqc_props){props, plen};
    pkt.u.subscribe.subs = batch;
    pkt.u.subscribe.count = n;
    if (sess_ctl_put(s, &pkt) != 0)
        return -ENOMEM;
    s->subq[idx].first = first;
    s->subq[idx].n = (uint16_t)n;
    s->sub_pending++;
    return 0;
}

/* Sends SUBSCRIBEs while identifiers are free; the rest go as SUBACKs come back. With MQTT 5
 * Subscription Identifiers each subscription needs its own packet (the identifier is a packet
 * property); otherwise up to 10 filters share one (BifroMQ refuses more per packet). */
int sess_queue_subscribes(struct relay_session *s)
{
    size_t per = s->cfg->version == MQC_V5 && s->peer_sub_ids ? 1 : 10;

    while (s->sub_next < s->n_subs) {
        size_t n = s->n_subs - s->sub_next < per ? s->n_subs - s->sub_next : per;
        int idx = sub_slot(s);

        if (idx < 0)
            return 0; /* the next SUBACK continues */
        if (send_subscribe(s, s->sub_next, n, (uint16_t)idx) != 0)
            return -ENOMEM;
        s->sub_next += n;
    }
    return 0;
}

int relay_session_change_subs(struct relay_session *s, const struct relay_sub *subs, size_t n,
                              const bool *fresh, const char *const *gone, size_t n_gone)
{
    s->subs = subs;
    s->n_subs = n;
    if (s->state == RELAY_SS_DOWN || s->state == RELAY_SS_CONNECTING ||
        s->state == RELAY_SS_CLOSING)
        return 0; /* the next CONNACK subscribes the new list */
    if (s->state == RELAY_SS_SUBSCRIBING) {
        s->sub_next = 0; /* again from the start: SUBSCRIBE is idempotent */
        return sess_queue_subscribes(s);
    }
    s->sub_next = n;
    for (size_t i = 0; i < n; i++) {
        int idx;

        if (!fresh[i])
            continue;
        if ((idx = sub_slot(s)) < 0 || send_subscribe(s, i, 1, (uint16_t)idx) != 0)
            return -ENOMEM;
    }
    for (size_t i = 0; i < n_gone;) {
        struct mqc_bytes filters[10];
        struct mqc_packet pkt = {.type = MQC_UNSUBSCRIBE};
        size_t k = 0;
        int idx = sub_slot(s);

        if (idx < 0)
            return -ENOMEM;
        while (i < n_gone && k < 10) {
            filters[k] = (struct mqc_bytes){(const uint8_t *)gone[i], strlen(gone[i])};
            k++;
            i++;
        }
        pkt.u.unsubscribe.packet_id = (uint16_t)(SUB_PID_BASE + (uint16_t)idx);
        pkt.u.unsubscribe.filters = filters;
        pkt.u.unsubscribe.count = k;
        if (sess_ctl_put(s, &pkt) != 0)
            return -ENOMEM;
        s->subq[idx].n = UNSUB_MARK;
    }
    return 0;
}

int sess_on_suback(struct relay_session *s, const struct mqc_suback *sa, uint64_t now_ms)
{
    uint16_t idx = (uint16_t)(sa->packet_id - SUB_PID_BASE);
    size_t first;

    if (sa->packet_id < SUB_PID_BASE || idx >= SUB_PID_COUNT || !s->subq[idx].n ||
        s->subq[idx].n == UNSUB_MARK)
        return sess_peer_error(s, 0x82, "SUBACK for a SUBSCRIBE we did not send", now_ms);
    if (sa->codes.len != s->subq[idx].n)
        return sess_peer_error(s, 0x82, "SUBACK with the wrong number of codes", now_ms);
    first = s->subq[idx].first;
    s->subq[idx].n = 0;
    s->sub_pending--;
    for (size_t i = 0; i < sa->codes.len && first + i < s->n_subs; i++)
        if (s->hooks->suback)
            s->hooks->suback(s, &s->subs[first + i], sa->codes.p[i]);
    if (sess_queue_subscribes(s) != 0)
        return -ENOMEM;
    if (s->sub_pending == 0 && s->state == RELAY_SS_SUBSCRIBING)
        s->state = RELAY_SS_UP;
    return 0;
}

int sess_on_unsuback(struct relay_session *s, const struct mqc_suback *sa, uint64_t now_ms)
{
    uint16_t idx = (uint16_t)(sa->packet_id - SUB_PID_BASE);

    if (sa->packet_id < SUB_PID_BASE || idx >= SUB_PID_COUNT || s->subq[idx].n != UNSUB_MARK)
        return sess_peer_error(s, 0x82, "UNSUBACK for an UNSUBSCRIBE we did not send", now_ms);
    s->subq[idx].n = 0;
    return 0;
}
