/*
 * outbox.c: outgoing PUBLISHes: the queue, packet identifiers, the window (QoS 1/2 in flight,
 * resent with DUP after a reconnect, QoS 2 resumed with PUBREL), pacing, and what the broker's
 * PUBACK / PUBREC / PUBCOMP say about each message.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/internal.h"

/* ---- outgoing messages -------------------------------------------------------------------- */

void sess_finish_out(struct relay_session *s, struct relay_msg *m, int drop, uint64_t now_ms)
{
    if (relay_window_remove(&s->win, m->len) < 0 && s->hooks->window)
        s->hooks->window(s, -1);
    s->hooks->done(s, m, drop, now_ms);
}

void relay_session_enqueue(struct relay_session *s, struct relay_msg *m, uint64_t now_ms)
{
    (void)now_ms;
    m->state = MS_PENDING;
    m->pid = 0;
    relay_msg_push_back(&s->pend_head, &s->pend_tail, m);
    if (relay_window_add(&s->win, m->len) > 0 && s->hooks->window)
        s->hooks->window(s, +1);
}

static int ensure_slots(struct relay_session *s, uint32_t want)
{
    if (want > MAX_PUB_SLOTS)
        want = MAX_PUB_SLOTS;
    if (want <= s->slots_cap)
        return 0;
    struct relay_msg **ns = realloc(s->slots, want * sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    s->slots = ns;
    uint8_t *st = realloc(s->slot_state, want);
    if (!st)
        return -ENOMEM;
    s->slot_state = st;
    for (uint32_t i = s->slots_cap; i < want; i++) {
        s->slots[i] = NULL;
        s->slot_state[i] = SL_FREE;
    }
    s->slots_cap = (uint16_t)want;
    return 0;
}

static uint16_t alloc_pid(struct relay_session *s)
{
    for (uint32_t n = 0; n < s->slots_cap; n++) {
        uint16_t pid = s->next_pid;

        s->next_pid = (uint16_t)(pid >= s->slots_cap ? 1 : pid + 1);
        if (s->slot_state[pid - 1] == SL_FREE)
            return pid;
    }
    return 0;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Re-encodes m at a lower QoS when the broker's Maximum QoS (from the latest CONNACK) is below
 * what m was encoded with. Returns the replacement (m freed) or NULL on allocation failure. */
static struct relay_msg *downgrade(struct relay_session *s, struct relay_msg *m, uint8_t qos)
{
    struct mqc_publish p;
    struct relay_msg *n;
    size_t size, written, pid_off = 0;

    if (mqc_decode_publish(m->data, m->len, s->cfg->version, &p) != MQC_OK)
        return NULL;
    p.qos = qos;
    p.dup = false;
    p.packet_id = qos ? 1 : 0;
    if (mqc_size_publish(&p, s->cfg->version, &size) != MQC_OK)
        return NULL;
    n = malloc(sizeof(*n) + size);
    if (!n)
        return NULL;
    *n = *m;
    n->next = n->prev = NULL;
    n->cache = 0; /* sized exactly, not one of relay_msg_alloc's classes */
    if (mqc_encode_publish(&p, s->cfg->version, n->data, size, &written, &pid_off) != MQC_OK) {
        free(n);
        return NULL;
    }
    /* the Message Expiry bytes moved by the size difference of the header */
    if (m->expiry_off)
        n->expiry_off = (uint32_t)(m->expiry_off - (m->len - written));
    n->len = (uint32_t)written;
    n->qos = qos;
    n->pid_off = qos ? (uint32_t)pid_off : 0;
    n->pid = 0;
    free(m);
    return n;
}

/* Drops what cannot be sent any more (expired, too large for the broker's limit) and fixes what
 * the latest CONNACK changed. Returns the message to send, or NULL if m was dropped. */
static struct relay_msg *vet(struct relay_session *s, struct relay_msg *m, uint64_t now_ms)
{
    if (m->expiry) {
        uint64_t held = (now_ms - m->t_in_ms) / 1000u;

        if (held >= m->expiry) {
            sess_finish_out(s, m, RELAY_DROP_EXPIRED, now_ms);
            return NULL;
        }
        put_u32(m->data + m->expiry_off, (uint32_t)(m->expiry - held));
    }
    if (m->qos > s->peer_max_qos) {
        struct relay_msg *n;

        if (m->pid && m->pid <= s->slots_cap) {
            s->slot_state[m->pid - 1] = SL_FREE;
            s->slots[m->pid - 1] = NULL;
        }
        n = downgrade(s, m, s->peer_max_qos);
        if (!n) {
            relay_log(s->log, RELAY_LOG_ERROR, s->who, "out of memory re-encoding a message");
            sess_finish_out(s, m, RELAY_DROP_TOO_LARGE, now_ms);
            return NULL;
        }
        m = n;
    }
    if (!s->peer_retain)
        m->data[0] &= (uint8_t)~0x01u;
    if (m->len > s->peer_max_packet) {
        if (m->pid && m->pid <= s->slots_cap) {
            s->slot_state[m->pid - 1] = SL_FREE;
            s->slots[m->pid - 1] = NULL;
        }
        sess_finish_out(s, m, RELAY_DROP_TOO_LARGE, now_ms);
        return NULL;
    }
    return m;
}

bool sess_may_publish(const struct relay_session *s, uint64_t now_ms)
{
    const struct relay_msg *m = s->pend_head;

    if (s->state != RELAY_SS_UP || !m)
        return false;
    if (m->qos && !relay_window_can_send_qos(&s->win, m->qos))
        return false;
    return now_ms >= s->rate_ready_ms && now_ms >= s->retry_ready_ms;
}

/* Moves the next pending message into the window (QoS > 0) and returns it, or NULL when
 * nothing may be sent now. */
struct relay_msg *sess_take_next(struct relay_session *s, uint64_t now_ms, struct sess_wire *w)
{
    for (;;) {
        struct relay_msg *m;
        uint64_t ready;
        uint32_t nth;

        if (!sess_may_publish(s, now_ms))
            return NULL;
        m = s->pend_head;
        relay_msg_unlink(&s->pend_head, &s->pend_tail, m);
        if (m == s->retry_last)
            s->retry_last = NULL;
        m = vet(s, m, now_ms);
        if (!m)
            continue;
        sess_wire_plan(s, m, w);
        if (!relay_pace_take(s->pace, w->len, now_ms, &ready, &nth)) {
            s->rate_ready_ms = ready;
            relay_msg_push_front(&s->pend_head, &s->pend_tail, m);
            return NULL;
        }
        m->nth = nth;
        if (m->qos) {
            if (!m->pid) {
                if (ensure_slots(s, s->win.limit) != 0 || !(m->pid = alloc_pid(s))) {
                    relay_msg_push_front(&s->pend_head, &s->pend_tail, m);
                    return NULL;
                }
                s->slot_state[m->pid - 1] = SL_PUB;
                s->slots[m->pid - 1] = m;
            }
            put_u16(m->data + m->pid_off, m->pid);
            if ((m->state & MS_RESENT) && s->session_present)
                m->data[0] |= 0x08u;
            else
                m->data[0] &= (uint8_t)~0x08u;
            m->state = (uint8_t)(MS_INFLIGHT | (m->state & MS_RESENT));
            m->sent_ms = now_ms;
            relay_window_sent(&s->win);
            relay_msg_push_back(&s->fl_head, &s->fl_tail, m);
        }
        if (w->nseg && w->seg[0].own)
            w->hdr[0] = m->data[0]; /* the DUP flag, just set */
        sess_alias_commit(s, w, m);
        return m;
    }
}

struct relay_msg *sess_requeue_inflight(struct relay_session *s)
{
    struct relay_msg *after = s->retry_last;

    while (s->fl_head) {
        struct relay_msg *m = s->fl_head;

        relay_msg_unlink(&s->fl_head, &s->fl_tail, m);
        m->state = MS_PENDING | MS_RESENT;
        if (!after) {
            relay_msg_push_front(&s->pend_head, &s->pend_tail, m);
        } else {
            /* after `after` */
            m->prev = after;
            m->next = after->next;
            if (after->next)
                after->next->prev = m;
            else
                s->pend_tail = m;
            after->next = m;
        }
        after = m;
    }
    s->retry_last = NULL;
    return after;
}

bool sess_pace_signal(struct relay_session *s, enum relay_pace_signal sig,
                      const struct relay_msg *m, uint64_t now_ms)
{
    if (!m)
        m = s->fl_head; /* the oldest unacknowledged: what the broker refused */
    return relay_pace_signal(s->pace, sig, m ? m->nth : UINT32_MAX, m ? m->sent_ms : now_ms,
                             now_ms);
}

/* MQTT 3.x: m is acknowledged while an earlier message of its QoS is not. A broker acknowledges
 * in the order it received [MQTT-4.6.0-2/3], so that one was most likely dropped (BifroMQ past
 * its rate, silently); if it is still unacknowledged a few round trips later (a broker that
 * reorders a little gets that long), it is a verdict on the pace (session.c's tick). */
static void v3_gap(struct relay_session *s, const struct relay_msg *m, uint64_t now_ms)
{
    const struct relay_msg *o;

    for (o = s->fl_head; o && o != m; o = o->next)
        if (o->qos == m->qos)
            break;
    if (o && o != m && !s->gap_ms)
        s->gap_ms = now_ms;
}

/* What a destination's reason code means for its message (the answer policy, documented in
 * mqtt-relay.conf(5)): delivered, retry later, or dropped and counted by reason. Only the codes
 * MQTT 5 allows in PUBACK/PUBREC get here (0x00 0x10 0x80 0x83 0x87 0x90 0x91 0x97 0x99): the
 * codec refuses any other (0x95 included) as a malformed packet, which closes the link. */
enum answer { ANSWER_DELIVERED, ANSWER_RETRY, ANSWER_DROP };

static enum answer answer_of(uint8_t code, int *drop)
{
    if (code < 0x80)
        return ANSWER_DELIVERED; /* 0x00 success, 0x10 no matching subscribers */
    switch (code) {
    case 0x83: /* implementation specific error: BifroMQ's "busy" */
    case 0x97: /* quota exceeded: EMQX's rate limiter */
        return ANSWER_RETRY;
    case 0x87:
        *drop = RELAY_DROP_NOT_AUTHORIZED;
        return ANSWER_DROP;
    case 0x90:
        *drop = RELAY_DROP_TOPIC_INVALID;
        return ANSWER_DROP;
    case 0x99:
        *drop = RELAY_DROP_PAYLOAD_INVALID;
        return ANSWER_DROP;
    default: /* 0x80 unspecified error, 0x91 packet identifier in use */
        *drop = RELAY_DROP_REJECTED;
        return ANSWER_DROP;
    }
}

/* A "busy" answer: the message goes back to the head of the queue, after the ones refused
 * before it (they were sent before it), ahead of everything never sent; the link waits. */
static void retry_later(struct relay_session *s, uint8_t type, uint8_t code, struct relay_msg *m,
                        uint64_t now_ms)
{
    /* a refusal of a message sent after the last back-off began is a new round: longer; the
     * others were in flight when it began (pipelined): the same round */
    if (!s->busy_ms || m->sent_ms > s->busy_since) {
        s->busy_ms = !s->busy_ms                           ? RETRY_BUSY_MS
                     : s->busy_ms * 2u > RETRY_BUSY_MAX_MS ? RETRY_BUSY_MAX_MS
                                                           : s->busy_ms * 2u;
        s->busy_since = now_ms;
        s->retry_ready_ms = now_ms + s->busy_ms;
        if (sess_pace_signal(s, code == 0x83 ? RELAY_PACE_ACK_83 : RELAY_PACE_ACK_97, m, now_ms))
            relay_log_limited(s->log, now_ms, RELAY_LOG_WARN, s->who,
                              "broker busy (%s reason 0x%02X %s): resending in %u ms; pace "
                              "lowered to %" PRIu64 " messages/s",
                              mqc_type_name(type), code, mqc_reason_name(code), s->busy_ms,
                              relay_pace_limit(s->pace));
        else
            relay_log_limited(s->log, now_ms, RELAY_LOG_WARN, s->who,
                              "broker busy (%s reason 0x%02X %s): resending in %u ms",
                              mqc_type_name(type), code, mqc_reason_name(code), s->busy_ms);
    }
    m->pid = 0; /* a new PUBLISH when it goes again: a new packet id, no DUP */
    m->state = MS_PENDING | MS_RETRY;
    if (!s->retry_last) {
        relay_msg_push_front(&s->pend_head, &s->pend_tail, m);
    } else {
        struct relay_msg *a = s->retry_last;

        m->prev = a;
        m->next = a->next;
        if (a->next)
            a->next->prev = m;
        else
            s->pend_tail = m;
        a->next = m;
    }
    s->retry_last = m;
}

int sess_on_ack(struct relay_session *s, uint8_t type, const struct mqc_ack *a, uint64_t now_ms)
{
    uint16_t pid = a->packet_id;
    struct relay_msg *m;
    char what[80];

    if (pid == 0 || pid > s->slots_cap) {
        snprintf(what, sizeof(what), "%s for unknown packet id %u", mqc_type_name(type), pid);
        return sess_peer_error(s, 0x82, what, now_ms);
    }
    if (type == MQC_PUBCOMP) {
        if (s->slot_state[pid - 1] != SL_PUBCOMP) {
            snprintf(what, sizeof(what), "PUBCOMP for packet id %u without PUBREL", pid);
            return sess_peer_error(s, 0x82, what, now_ms);
        }
        s->slot_state[pid - 1] = SL_FREE;
        relay_window_acked(&s->win);
        return 0;
    }
    m = s->slots[pid - 1];
    if (s->slot_state[pid - 1] != SL_PUB || !m || (m->state & ~MS_RESENT) != MS_INFLIGHT) {
        snprintf(what, sizeof(what), "%s for unknown packet id %u", mqc_type_name(type), pid);
        return sess_peer_error(s, 0x82, what, now_ms);
    }
    if (type == MQC_PUBACK && m->qos == 2) {
        /* RabbitMQ 3.10 answers a QoS 2 PUBLISH with PUBACK (and MQTT 3.1.1 has no Maximum QoS
         * to warn us): the broker took the message at QoS 1. It is delivered; what follows on
         * this link goes at QoS 1 at most, as if the CONNACK had said Maximum QoS 1. */
        if (s->peer_max_qos > 1) {
            s->peer_max_qos = 1;
            relay_log(s->log, RELAY_LOG_WARN, s->who,
                      "the broker answered a QoS 2 PUBLISH with PUBACK (it took it at QoS 1): "
                      "sending at most QoS 1 on this link");
        }
    } else if (m->qos != (type == MQC_PUBACK ? 1 : 2)) {
        snprintf(what, sizeof(what), "%s for packet id %u, a QoS %u PUBLISH", mqc_type_name(type),
                 pid, m->qos);
        return sess_peer_error(s, 0x82, what, now_ms);
    }
    if (s->cfg->version != MQC_V5 && m->qos == (type == MQC_PUBACK ? 1 : 2)) {
        if (m != s->fl_head)
            v3_gap(s, m, now_ms);
        else
            s->gap_ms = 0; /* in order again */
    }
    relay_msg_unlink(&s->fl_head, &s->fl_tail, m);
    /* PUBLISH -> PUBACK / PUBREC: never from a resend (Karn), one sample a millisecond; the
     * timeout's back-off ends with a sample, not with the answer to a resend (RFC 6298 5.7) */
    if (!(m->state & MS_RESENT))
        s->ack_backoff = 0;
    if (now_ms != s->rtt_ack_ms && !(m->state & MS_RESENT) && now_ms >= m->sent_ms) {
        s->rtt_ack_ms = now_ms;
        sess_rtt_sample(s, now_ms - m->sent_ms, now_ms);
    }
    if (a->code >= 0x80) {
        int drop = RELAY_DROP_REJECTED;
        enum answer ans = answer_of(a->code, &drop);

        s->slots[pid - 1] = NULL;
        s->slot_state[pid - 1] = SL_FREE;
        relay_window_acked(&s->win);
        if (ans == ANSWER_RETRY) {
            retry_later(s, type, a->code, m, now_ms);
            return 0;
        }
        relay_log_limited(s->log, now_ms, RELAY_LOG_WARN, s->who,
                          "broker refused a message (%s reason 0x%02X %s); dropped, counted as %s",
                          mqc_type_name(type), a->code, mqc_reason_name(a->code),
                          relay_drop_name((enum relay_drop)drop));
        sess_finish_out(s, m, drop, now_ms);
        return 0;
    }
    s->busy_ms = 0; /* taken: the next refusal starts the back-off afresh */
    s->slots[pid - 1] = NULL;
    if (type == MQC_PUBACK) {
        s->slot_state[pid - 1] = SL_FREE;
        relay_window_acked(&s->win);
    } else {
        s->slot_state[pid - 1] = SL_PUBCOMP; /* still counts against Receive Maximum */
        if (sess_ctl_ack(s, MQC_PUBREL, pid, 0) != 0)
            return -ENOMEM;
    }
    sess_finish_out(s, m, -1, now_ms);
    return 0;
}

size_t relay_session_purge(struct relay_session *s,
                           bool (*pred)(const struct relay_msg *m, void *arg), void *arg)
{
    struct relay_msg *m = s->pend_head;
    size_t n = 0;

    while (m) {
        struct relay_msg *next = m->next;

        if (!(m->state & MS_RESENT) && pred(m, arg)) {
            if (m == s->retry_last)
                s->retry_last = m->prev && (m->prev->state & MS_RETRY) ? m->prev : NULL;
            relay_msg_unlink(&s->pend_head, &s->pend_tail, m);
            if (relay_window_remove(&s->win, m->len) < 0 && s->hooks->window)
                s->hooks->window(s, -1);
            free(m);
            n++;
        }
        m = next;
    }
    return n;
}

uint32_t relay_session_unacked(const struct relay_session *s)
{
    return s->win.inflight;
}

void relay_session_remap_routes(struct relay_session *s, const uint32_t *map, size_t n_old)
{
    relay_msg_remap_routes(s->pend_head, map, n_old);
    relay_msg_remap_routes(s->fl_head, map, n_old);
    if (s->tx_msg && s->tx_msg->qos == 0 && s->tx_msg->route < n_old)
        s->tx_msg->route = map[s->tx_msg->route];
}
