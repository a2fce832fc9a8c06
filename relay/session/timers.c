/*
 * timers.c: what time does to a session (time comes in as now_ms): keepalive pings, the CONNACK
 * and acknowledgement deadlines (at 3.x, from the round trip, backed off while the broker
 * answers nothing), and the round trip measured and the window it sizes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/internal.h"

/* ---- the round trip ----------------------------------------------------------------------- */

void sess_window_limits(struct relay_session *s)
{
    const struct relay_session_cfg *c = s->cfg;
    bool v5 = c->version == MQC_V5;
    uint32_t limit;

    if (c->max_inflight)
        limit = c->max_inflight;
    else if (v5)
        limit = s->peer_receive_max;
    else /* 3.x has no Receive Maximum: sized from the round trip, within the operator's cap */
        limit = relay_rtt_window(relay_rtt_base(&s->rtt), DEFAULT_INFLIGHT_V3,
                                 c->max_inflight_cap ? c->max_inflight_cap : DEFAULT_INFLIGHT_V3);
    if (v5 && limit > s->peer_receive_max)
        limit = s->peer_receive_max;
    if (limit > MAX_PUB_SLOTS)
        limit = MAX_PUB_SLOTS;
    s->win.limit = limit ? limit : 1;
    /* Mosquitto drops QoS 2 PUBLISHes from a 3.x client past its max_inflight_messages (20 by
     * default) silently: an automatic window keeps QoS 2 within that */
    s->win.limit2 = !c->max_inflight && !v5 ? DEFAULT_INFLIGHT_V3 : 0;
}

void sess_rtt_sample(struct relay_session *s, uint64_t rtt_ms, uint64_t now_ms)
{
    uint32_t base;

    relay_rtt_sample(&s->rtt, rtt_ms, now_ms);
    base = relay_rtt_base(&s->rtt);
    if (s->rtt_told == base + 1u && s->rtt.samples > RELAY_RTT_TELL_FIRST)
        return;
    s->rtt_told = base + 1u;
    if (!s->cfg->max_inflight && s->cfg->version != MQC_V5 && s->state >= RELAY_SS_SUBSCRIBING)
        sess_window_limits(s);
    if (s->hooks->rtt)
        s->hooks->rtt(s, base, now_ms);
}

/* ---- timers ------------------------------------------------------------------------------- */

static uint64_t earliest(uint64_t a, uint64_t b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    return a < b ? a : b;
}

static uint64_t ping_due(const struct relay_session *s)
{
    /* a control packet at least every 3/4 of the keepalive, so the broker never waits the
     * whole interval [MQTT-3.1.2-23]; and a ping when the broker has been silent that long,
     * so a dead link is noticed even while we only send QoS 0 */
    uint64_t last = s->last_tx_ms < s->last_rx_ms ? s->last_tx_ms : s->last_rx_ms;

    return last + (uint64_t)s->keepalive * 750u;
}

/* How long an acknowledgement may take before the link is given up on. MQTT 5 brokers say
 * when we are too fast; a 3.x broker past its rate (BifroMQ) drops the PUBLISH silently, so
 * there a missing acknowledgement is noticed after a few round trips (at least
 * V3_ACK_FLOOR_MS), not after the whole ack_timeout, and is a verdict on our pace. */
static uint64_t ack_wait(const struct relay_session *s)
{
    uint64_t cap = s->cfg->ack_timeout_ms;

    if (s->cfg->version == MQC_V5)
        return cap;
    /* backed off after each timeout that no acknowledgement followed: a broker that is slow
     * (recovering from a restart, its disk loaded) is waited for longer each time, instead of
     * being reconnected to at the same short timeout for ever */
    uint64_t t = relay_rtt_timeout(&s->rtt, V3_ACK_FLOOR_MS, cap) << s->ack_backoff;

    return t < cap ? t : cap;
}

/* When the oldest unacknowledged PUBLISH is given up on (0 = none): after ack_wait(), or at 3.x
 * sooner, a few round trips after a later message was acknowledged (outbox.c: v3_gap). */
static uint64_t ack_deadline(const struct relay_session *s)
{
    uint64_t d;

    if (!s->fl_head || !s->cfg->ack_timeout_ms)
        return 0;
    d = s->fl_head->sent_ms + ack_wait(s);
    if (s->gap_ms) {
        uint64_t g = s->gap_ms + relay_rtt_timeout(&s->rtt, V3_GAP_FLOOR_MS, V3_ACK_FLOOR_MS);

        if (g < d)
            d = g;
    }
    return d;
}

uint64_t relay_session_deadline(const struct relay_session *s)
{
    uint64_t d = 0;

    switch (s->state) {
    case RELAY_SS_DOWN:
        return 0;
    case RELAY_SS_CLOSING:
        return s->closing_ms + CLOSE_FLUSH_MS;
    case RELAY_SS_CONNECTING:
        return s->link_open_ms + CONNACK_TIMEOUT_MS;
    default:
        break;
    }
    if (s->keepalive) {
        if (!s->ping_out)
            d = ping_due(s);
        else if (s->rx_paused)
            d = s->last_tx_ms + (uint64_t)s->keepalive * 750u;
        else
            d = s->ping_sent_ms + (uint64_t)s->keepalive * 1000u;
    }
    d = earliest(d, ack_deadline(s));
    if (s->pend_head) {
        if (s->rate_ready_ms)
            d = earliest(d, s->rate_ready_ms);
        if (s->retry_ready_ms)
            d = earliest(d, s->retry_ready_ms);
    }
    return d;
}

int relay_session_tick(struct relay_session *s, uint64_t now_ms)
{
    switch (s->state) {
    case RELAY_SS_DOWN:
        return 0;
    case RELAY_SS_CLOSING:
        if (now_ms >= s->closing_ms + CLOSE_FLUSH_MS)
            return -ETIMEDOUT;
        return 0;
    case RELAY_SS_CONNECTING:
        if (now_ms >= s->link_open_ms + CONNACK_TIMEOUT_MS) {
            sess_set_why(s, "no CONNACK within %u s", CONNACK_TIMEOUT_MS / 1000u);
            return -ETIMEDOUT;
        }
        return 0;
    default:
        break;
    }
    if (s->rate_ready_ms && now_ms >= s->rate_ready_ms)
        s->rate_ready_ms = 0;
    if (s->retry_ready_ms && now_ms >= s->retry_ready_ms)
        s->retry_ready_ms = 0;
    if (s->keepalive) {
        /* paused, we still ping (the broker must hear from us within the keepalive, and a
         * write is how a closed link shows), but we are not reading: no PINGRESP can arrive,
         * so none is missing */
        if (s->ping_out) {
            if (!s->rx_paused && now_ms >= s->ping_sent_ms + (uint64_t)s->keepalive * 1000u) {
                sess_set_why(s, "no PINGRESP within %u s", s->keepalive);
                return -ETIMEDOUT;
            }
            if (s->rx_paused && now_ms >= s->last_tx_ms + (uint64_t)s->keepalive * 750u) {
                struct mqc_packet pkt = {.type = MQC_PINGREQ};

                if (sess_ctl_put(s, &pkt) != 0)
                    return -ENOMEM;
            }
        } else if (now_ms >= ping_due(s)) {
            struct mqc_packet pkt = {.type = MQC_PINGREQ};

            if (sess_ctl_put(s, &pkt) != 0)
                return -ENOMEM;
            s->ping_out = true;
            s->ping_sent_ms = now_ms;
        }
    }
    if (s->rx_paused)
        return 0; /* not reading: no acknowledgement can arrive, so none is missing */
    if (ack_deadline(s) && now_ms >= ack_deadline(s)) {
        uint64_t wait = now_ms - s->fl_head->sent_ms;

        if (s->end == RELAY_END_PACE)
            return -ETIMEDOUT; /* decided already, the link is closing */
        if (s->cfg->version != MQC_V5) {
            /* a later message acknowledged and this one not: dropped, the broker's count; none
             * acknowledged at all: dropped, or a broker that stalled. Timeouts in a row with no
             * answer between are one silence: its first one judges the pace, the rest only
             * wait longer (a broker restarting is not taught a pace for each second it takes) */
            bool gap = s->gap_ms != 0;
            bool lowered = false;

            if (gap || !s->ack_backoff)
                lowered = sess_pace_signal(s, gap ? RELAY_PACE_NO_ACK : RELAY_PACE_ACK_TIMEOUT,
                                           NULL, now_ms);
            if (!gap && s->ack_backoff < V3_ACK_BACKOFF_MAX)
                s->ack_backoff++;

            s->end = RELAY_END_PACE;
            sess_set_why(s,
                         "no acknowledgement for packet id %u within %" PRIu64
                         " ms (%s; 3.x drops silently): pace %s %" PRIu64 " messages/s",
                         s->fl_head->pid, wait, gap ? "later ones acknowledged" : "round trips",
                         lowered ? "lowered to" : "stays at", relay_pace_limit(s->pace));
        } else {
            sess_set_why(s,
                         "no acknowledgement for packet id %u within %" PRIu64
                         " ms: reconnecting to resend",
                         s->fl_head->pid, wait);
        }
        return -ETIMEDOUT;
    }
    return 0;
}
