/*
 * inbox.c: incoming QoS 1/2 PUBLISHes, held until the owner says every destination finished
 * with them, then acknowledged (PUBACK / PUBREC) in arrival order [MQTT-4.6.0-2/3]; PUBREL.
 */
#include <errno.h>
#include <string.h>

#include "session/internal.h"

void sess_in_reset(struct relay_session *s)
{
    for (uint16_t i = 0; i < s->in_cap; i++) {
        if (s->in[i].state != IN_FREE) {
            s->in_map[s->in[i].pid] = 0;
            s->in[i].state = IN_FREE;
        }
        s->in[i].gen++;
    }
    s->in_nfree = 0;
    for (uint16_t i = 0; i < s->in_cap; i++)
        s->in_free[s->in_nfree++] = (uint16_t)(s->in_cap - 1u - i);
    s->in_used = 0;
    s->in_pubrel = 0;
    s->in_head = s->in_count = 0;
    s->rx_full = false;
}

/* Queues the acknowledgements that are due, oldest first [MQTT-4.6.0-2/3]. */
static void in_drain(struct relay_session *s)
{
    while (s->in_count) {
        uint16_t i = s->in_order[s->in_head];
        struct relay_in_slot *sl = &s->in[i];

        if (sl->state != IN_DONE)
            break;
        if (sess_ctl_ack(s, sl->qos == 1 ? MQC_PUBACK : MQC_PUBREC, sl->pid, 0) != 0)
            break; /* out of memory: the broker's redelivery covers it */
        s->in_head = (uint16_t)((s->in_head + 1u) % s->in_cap);
        s->in_count--;
        if (sl->qos == 1) {
            s->in_map[sl->pid] = 0;
            sl->state = IN_FREE;
            sl->gen++;
            s->in_free[s->in_nfree++] = i;
            s->in_used--;
        } else {
            sl->state = IN_PUBREL;
            s->in_pubrel++;
        }
    }
    if (s->rx_full && s->in_used < s->in_cap) {
        s->rx_full = false;
        if (s->hooks->rx_full)
            s->hooks->rx_full(s, false);
    }
}

void relay_session_in_done(struct relay_session *s, struct relay_in_ref ref, uint64_t now_ms)
{
    struct relay_in_slot *sl;

    (void)now_ms;
    if (!ref.slot || ref.slot > s->in_cap)
        return;
    sl = &s->in[ref.slot - 1];
    if (sl->gen != ref.gen || sl->state != IN_WAIT)
        return; /* from an earlier link: the broker redelivers it on this one */
    if (sl->pending == UINT32_MAX || (sl->pending && --sl->pending))
        return;
    sl->state = IN_DONE;
    in_drain(s);
}

/* A PUBLISH from the broker. Returns 1 when it must wait (held-message cap reached, 3.x). */
int sess_on_publish(struct relay_session *s, const uint8_t *buf, size_t len, uint64_t now_ms)
{
    struct mqc_publish p;
    struct relay_in_ref ref = {0, 0};
    struct mqc_prop prop;
    int rc;

    rc = mqc_decode_publish(buf, len, s->cfg->version, &p);
    if (rc != MQC_OK)
        return sess_peer_error(s, rc, "bad PUBLISH", now_ms);
    /* we advertise no Topic Alias Maximum, so any alias is invalid [MQTT-3.3.2-9] */
    if (s->cfg->version == MQC_V5 &&
        mqc_props_find(&p.props, MQC_PROP_TOPIC_ALIAS, &prop) == MQC_OK)
        return sess_peer_error(s, 0x94, "PUBLISH with a Topic Alias we did not allow", now_ms);
    if (p.qos) {
        uint16_t known = s->in_map[p.packet_id];

        if (known) {
            struct relay_in_slot *sl = &s->in[known - 1];

            /* the same message again before we acknowledged it: forward it once */
            if (sl->state == IN_PUBREL && p.qos == 2) {
                /* PUBREC was lost with the previous link? it is resent below */
                if (sess_ctl_ack(s, MQC_PUBREC, p.packet_id, 0) != 0)
                    return -ENOMEM;
            }
            return 0;
        }
        if (s->in_used >= s->in_cap) {
            /* More held messages than our Receive Maximum. A 5.0 broker may not do this
             * [MQTT-3.3.4-9], but Mosquitto 2.0.11 does under some acknowledgement patterns
             * (seen: 84 outstanding by its own log against our 64; a bare client with a
             * Receive Maximum of 5 got 9), and a 3.x broker has no such limit at all. Closing
             * would only loop; instead the rest waits, unread, until slots free up. */
            if (s->cfg->version == MQC_V5 && !s->over_rm_said) {
                s->over_rm_said = true; /* once per link: it is the broker's habit, not news */
                relay_log_limited(s->log, now_ms, RELAY_LOG_WARN, s->who,
                                  "broker sends more unacknowledged QoS 1/2 messages than our "
                                  "Receive Maximum (%u): holding them until earlier ones are "
                                  "acknowledged",
                                  s->in_cap);
            }
            if (!s->rx_full) {
                s->rx_full = true;
                if (s->hooks->rx_full)
                    s->hooks->rx_full(s, true);
            }
            return 1;
        }
        uint16_t i = s->in_free[--s->in_nfree];
        struct relay_in_slot *sl = &s->in[i];

        sl->pid = p.packet_id;
        sl->qos = p.qos;
        sl->state = IN_WAIT;
        s->in_map[p.packet_id] = (uint16_t)(i + 1u);
        s->in_used++;
        s->in_order[(s->in_head + s->in_count) % s->in_cap] = i;
        s->in_count++;
        ref.slot = i + 1u;
        ref.gen = sl->gen;
    }
    int n = s->hooks->publish(s, &p, ref, now_ms);

    if (ref.slot) {
        struct relay_in_slot *sl = &s->in[ref.slot - 1];

        if (n < 0) {
            sl->pending = UINT32_MAX; /* held: never acknowledged on this link */
        } else {
            sl->pending = (uint32_t)n;
            if (n == 0) {
                sl->state = IN_DONE;
                in_drain(s);
            }
        }
    }
    return 0;
}

int sess_on_pubrel(struct relay_session *s, const struct mqc_ack *a, uint64_t now_ms)
{
    uint16_t known = s->in_map[a->packet_id];

    if (known) {
        struct relay_in_slot *sl = &s->in[known - 1];

        if (sl->state != IN_PUBREL)
            return sess_peer_error(s, 0x82, "PUBREL before our PUBREC", now_ms);
        s->in_pubrel--;
        s->in_map[sl->pid] = 0;
        sl->state = IN_FREE;
        sl->gen++;
        s->in_free[s->in_nfree++] = (uint16_t)(known - 1u);
        s->in_used--;
        in_drain(s);
    }
    /* unknown: we sent PUBREC on an earlier link (or before a restart) and only did so once the
     * destination had the message, so the exchange is complete either way */
    return sess_ctl_ack(s, MQC_PUBCOMP, a->packet_id, 0);
}
