/*
 * session.c: one broker connection's MQTT client state, with no I/O and no clock: its lifecycle,
 * the link's events, reading (framing, dispatch, PUBLISHes deferred while the held-message cap
 * is reached) and writing; what time does to it is timers.c. Bytes come in through
 * relay_session_feed() and go out through relay_session_next_tx(); time comes in as now_ms.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/internal.h"

/* ---- small helpers ---------------------------------------------------------------------- */

int sess_grow(uint8_t **buf, size_t *cap, size_t need)
{
    size_t n = *cap ? *cap : RX_MIN;
    uint8_t *p;

    if (need <= *cap)
        return 0;
    while (n < need)
        n *= 2;
    p = realloc(*buf, n);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

/* Encodes pkt at the end of the control queue. */
int sess_ctl_put(struct relay_session *s, const struct mqc_packet *pkt)
{
    size_t size, written;
    int rc;

    if (mqc_size(pkt, s->cfg->version, &size) != MQC_OK)
        return -EINVAL;
    if (s->ctl_off && s->ctl_off == s->ctl_len)
        s->ctl_off = s->ctl_len = 0;
    rc = sess_grow(&s->ctl, &s->ctl_cap, s->ctl_len + size);
    if (rc)
        return rc;
    if (mqc_encode(pkt, s->cfg->version, s->ctl + s->ctl_len, size, &written) != MQC_OK)
        return -EINVAL;
    s->ctl_len += written;
    return 0;
}

int sess_ctl_ack(struct relay_session *s, uint8_t type, uint16_t pid, uint8_t code)
{
    uint8_t buf[8];
    struct mqc_ack a = {.packet_id = pid, .code = code};
    size_t n;
    int rc;

    if (mqc_encode_ack(type, &a, s->cfg->version, buf, sizeof(buf), &n) != MQC_OK)
        return -EINVAL;
    if (s->ctl_off && s->ctl_off == s->ctl_len)
        s->ctl_off = s->ctl_len = 0;
    rc = sess_grow(&s->ctl, &s->ctl_cap, s->ctl_len + n);
    if (rc)
        return rc;
    memcpy(s->ctl + s->ctl_len, buf, n);
    s->ctl_len += n;
    return 0;
}

void sess_set_why(struct relay_session *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
}

/* A packet from the broker broke the protocol: one log line, DISCONNECT with the reason code
 * (5.0), and the link closes. */
int sess_peer_error(struct relay_session *s, int err, const char *what, uint64_t now_ms)
{
    uint8_t reason = err < 0 ? mqc_reason_code(err) : (uint8_t)err;

    /* the owner logs it once, with the retry delay, when the link is gone */
    if (s->cfg->version == MQC_V5)
        sess_set_why(s, "protocol error from broker: %s%s%s (DISCONNECT reason 0x%02X)", what,
                     err < 0 ? ": " : "", err < 0 ? mqc_strerror(err) : "", reason);
    else /* 3.x has no reason codes: the link just closes */
        sess_set_why(s, "protocol error from broker: %s%s%s", what, err < 0 ? ": " : "",
                     err < 0 ? mqc_strerror(err) : "");
    relay_session_disconnect(s, reason, now_ms);
    return -EPROTO;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

int relay_session_new(const struct relay_session_cfg *cfg, const struct relay_session_hooks *hooks,
                      void *owner, struct relay_log *log, const char *who,
                      struct relay_session **out)
{
    struct relay_session *s = calloc(1, sizeof(*s));

    *out = NULL;
    if (!s)
        return -ENOMEM;
    s->cfg = cfg;
    s->hooks = hooks;
    s->owner = owner;
    s->log = log;
    s->who = who;
    s->in_cap = cfg->receive_maximum ? cfg->receive_maximum : 1;
    s->in = calloc(s->in_cap, sizeof(*s->in));
    s->in_order = calloc(s->in_cap, sizeof(*s->in_order));
    s->in_free = calloc(s->in_cap, sizeof(*s->in_free));
    s->in_map = calloc(65536, sizeof(*s->in_map));
    s->subq = calloc(SUB_PID_COUNT, sizeof(*s->subq));
    if (!cfg->pace)
        s->own_pace = calloc(1, sizeof(*s->own_pace));
    if (cfg->topic_aliases) {
        s->alias.ent = calloc(cfg->topic_aliases, sizeof(*s->alias.ent));
        s->alias.cap = s->alias.ent ? cfg->topic_aliases : 0;
    }
    if (!s->in || !s->in_order || !s->in_free || !s->in_map || !s->subq ||
        (!cfg->pace && !s->own_pace) || (cfg->topic_aliases && !s->alias.ent)) {
        relay_session_free(s);
        return -ENOMEM;
    }
    for (uint16_t i = 0; i < s->in_cap; i++)
        s->in_free[s->in_nfree++] = (uint16_t)(s->in_cap - 1u - i);
    relay_window_init(&s->win, DEFAULT_INFLIGHT_V3, RELAY_WINDOW_HIGH, RELAY_WINDOW_LOW);
    if (s->own_pace)
        relay_pace_init(s->own_pace, cfg->rate_messages, cfg->rate_bytes);
    relay_rtt_init(&s->rtt);
    relay_session_reconfigure(s, 0);
    s->next_pid = 1;
    s->peer_max_qos = 2;
    s->peer_retain = true;
    s->peer_max_packet = MQC_MAX_REMAINING + 5u;
    *out = s;
    return 0;
}

void relay_session_free(struct relay_session *s)
{
    if (!s)
        return;
    if (s->tx_msg && s->tx_msg->qos == 0)
        free(s->tx_msg); /* QoS 0 being written sits on no list */
    relay_msg_free_list(s->pend_head);
    relay_msg_free_list(s->fl_head);
    free(s->slots);
    free(s->slot_state);
    free(s->rx);
    free(s->ctl);
    free(s->in);
    free(s->in_order);
    free(s->in_free);
    free(s->in_map);
    free(s->subq);
    free(s->own_pace);
    sess_alias_free(s);
    free(s);
}

void relay_session_reconfigure(struct relay_session *s, uint64_t now_ms)
{
    (void)now_ms;
    s->pace = s->cfg->pace ? s->cfg->pace : s->own_pace;
    relay_pace_configure(s->pace, s->cfg->rate_messages, s->cfg->rate_bytes);
}

int relay_session_open(struct relay_session *s, uint64_t now_ms)
{
    s->state = RELAY_SS_CONNECTING;
    s->link_open_ms = now_ms;
    s->last_tx_ms = now_ms;
    s->last_rx_ms = now_ms;
    s->ping_out = false;
    s->over_rm_said = false;
    s->rx_len = 0;
    s->rx_kept = 0;
    s->ctl_len = s->ctl_off = 0;
    s->sub_pending = 0;
    s->sub_next = 0;
    memset(s->subq, 0, SUB_PID_COUNT * sizeof(*s->subq));
    s->why[0] = '\0';
    s->end = RELAY_END_FAILURE;
    s->gap_ms = 0;
    relay_pace_link(s->pace, now_ms);
    sess_alias_reset(s);
    return sess_queue_connect(s);
}

void relay_session_closed(struct relay_session *s, uint64_t now_ms)
{
    struct relay_msg *last;

    (void)now_ms;
    /* closed by the broker while waiting for CONNACK, with no reason of ours: to a CONNECT with
     * the bridge bit, that is how BifroMQ and RabbitMQ refuse the bit */
    if (s->state == RELAY_SS_CONNECTING && relay_session_bridge_on(s) && !s->why[0])
        s->end = RELAY_END_BRIDGE_REFUSED;
    s->state = RELAY_SS_DOWN;
    s->epoch++;
    s->rx_len = 0;
    s->rx_kept = 0;
    s->ctl_len = s->ctl_off = 0;
    s->ping_out = false;
    s->sub_pending = 0;
    s->rx_paused = false;
    /* unacknowledged PUBLISHes go back to the head of the queue (after the busy-refused ones,
     * sent before them), in their original order, with their packet identifiers: they are resent
     * (DUP) after the next CONNACK; a half-written QoS 0 one follows them, to go again whole */
    last = sess_requeue_inflight(s);
    if (s->tx_msg && s->tx_msg->qos == 0) {
        struct relay_msg *m = s->tx_msg;

        if (!last) {
            relay_msg_push_front(&s->pend_head, &s->pend_tail, m);
        } else {
            m->prev = last;
            m->next = last->next;
            if (last->next)
                last->next->prev = m;
            else
                s->pend_tail = m;
            last->next = m;
        }
    }
    s->tx_msg = NULL;
    s->win.inflight = 0;
    s->retry_ready_ms = 0; /* the broker forgot it was busy with us: the new link starts afresh */
    sess_alias_reset(s);
    sess_in_reset(s);
}

bool relay_session_closing(const struct relay_session *s)
{
    return s->state == RELAY_SS_CLOSING;
}

void relay_session_disconnect(struct relay_session *s, uint8_t reason, uint64_t now_ms)
{
    if (s->state == RELAY_SS_DOWN || s->state == RELAY_SS_CLOSING)
        return;
    /* 3.x: a DISCONNECT means "all is well" and drops the Will; after a protocol error we
     * just close, so only a clean shutdown sends it there */
    if (s->cfg->version == MQC_V5 || reason == 0) {
        struct mqc_packet pkt = {.type = MQC_DISCONNECT};

        /* next_tx finishes a half-written PUBLISH before any control byte */
        pkt.u.reason.code = reason;
        (void)sess_ctl_put(s, &pkt);
    }
    s->state = RELAY_SS_CLOSING;
    s->closing_ms = now_ms;
}

/* Handles one whole packet. 0 = consumed, 1 = deferred (leave it in the buffer), <0 = close. */
static int handle(struct relay_session *s, const uint8_t *buf, size_t len, uint64_t now_ms)
{
    uint8_t type = (uint8_t)(buf[0] >> 4);
    struct mqc_packet pkt;
    int rc;
    char what[96];

    s->packets_in++;
    if (type == MQC_PUBLISH) {
        if (s->state < RELAY_SS_SUBSCRIBING)
            return sess_peer_error(s, 0x82, "PUBLISH before CONNACK", now_ms);
        return sess_on_publish(s, buf, len, now_ms);
    }
    /* the commonest packet after PUBLISH: a 4-byte acknowledgement (code 0, no properties in
     * 5.0's short form), checked here without the general decoder; anything else, including
     * every malformed variant, goes the long way */
    if (len == 4 && buf[1] == 2 && type >= MQC_PUBACK && type <= MQC_PUBCOMP &&
        (buf[0] & 0x0Fu) == (type == MQC_PUBREL ? 0x02u : 0x00u) && (buf[2] | buf[3]) &&
        s->state >= RELAY_SS_SUBSCRIBING && s->state != RELAY_SS_CLOSING) {
        struct mqc_ack a = {.packet_id = (uint16_t)(buf[2] << 8 | buf[3])};

        return type == MQC_PUBREL ? sess_on_pubrel(s, &a, now_ms)
                                  : sess_on_ack(s, type, &a, now_ms);
    }
    rc = mqc_decode(buf, len, s->cfg->version, &pkt);
    if (rc != MQC_OK) {
        snprintf(what, sizeof(what), "bad %s", mqc_type_name(type));
        return sess_peer_error(s, rc, what, now_ms);
    }
    if (s->state == RELAY_SS_CONNECTING && type != MQC_CONNACK) {
        snprintf(what, sizeof(what), "%s before CONNACK", mqc_type_name(type));
        return sess_peer_error(s, 0x82, what, now_ms);
    }
    switch (type) {
    case MQC_CONNACK:
        if (s->state != RELAY_SS_CONNECTING)
            return sess_peer_error(s, 0x82, "a second CONNACK", now_ms);
        return sess_on_connack(s, &pkt.u.connack, now_ms);
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBCOMP:
        return sess_on_ack(s, type, &pkt.u.ack, now_ms);
    case MQC_PUBREL:
        return sess_on_pubrel(s, &pkt.u.ack, now_ms);
    case MQC_SUBACK:
        return sess_on_suback(s, &pkt.u.suback, now_ms);
    case MQC_UNSUBACK:
        return sess_on_unsuback(s, &pkt.u.suback, now_ms);
    case MQC_PINGRESP:
        if (s->ping_out)
            sess_rtt_sample(s, now_ms - s->ping_sent_ms, now_ms);
        s->ping_out = false;
        return 0;
    case MQC_DISCONNECT: {
        struct mqc_prop p;
        const char *reason = "";
        int rlen = 0, sig;

        if (mqc_props_find(&pkt.u.reason.props, MQC_PROP_REASON_STRING, &p) == MQC_OK) {
            reason = (const char *)p.str.p;
            rlen = (int)p.str.len;
        }
        sig = relay_pace_disconnect_signal(pkt.u.reason.code);
        if (sig >= 0 && s->state >= RELAY_SS_SUBSCRIBING) {
            /* a verdict on our pace, not a broken link: slower, and at once again */
            bool lowered = sess_pace_signal(s, (enum relay_pace_signal)sig, NULL, now_ms);

            s->end = RELAY_END_PACE;
            sess_set_why(
                s,
                "broker sent DISCONNECT (reason 0x%02X %s%s%.*s): pace %s %" PRIu64 " messages/s",
                pkt.u.reason.code, mqc_reason_name(pkt.u.reason.code), rlen ? ": " : "", rlen,
                reason, lowered ? "lowered to" : "stays at", relay_pace_limit(s->pace));
        } else {
            sess_set_why(s, "broker sent DISCONNECT (reason 0x%02X%s%.*s)", pkt.u.reason.code,
                         rlen ? ": " : "", rlen, reason);
        }
        s->state = RELAY_SS_CLOSING; /* nothing more to send on this link */
        s->ctl_len = s->ctl_off = 0;
        return -ECONNRESET;
    }
    default:
        snprintf(what, sizeof(what), "%s from a broker", mqc_type_name(type));
        return sess_peer_error(s, 0x82, what, now_ms);
    }
}

/* Processes whole packets from buf; *used says how many bytes were consumed. */
static int process(struct relay_session *s, const uint8_t *buf, size_t len, size_t *used,
                   uint64_t now_ms)
{
    size_t off = 0;
    int rc = 0;

    while (off < len && s->state != RELAY_SS_CLOSING && s->state != RELAY_SS_DOWN) {
        struct mqc_frame f;

        rc = mqc_frame_check(buf + off, len - off, s->cfg->max_packet_size, &f);
        if (rc == MQC_AGAIN) {
            rc = 0;
            break;
        }
        if (rc != MQC_OK) {
            rc = sess_peer_error(s, rc, "bad packet header", now_ms);
            break;
        }
        rc = handle(s, buf + off, f.total, now_ms);
        if (rc == 1) {
            rc = 0;
            break;
        }
        if (rc < 0)
            break;
        off += f.total;
    }
    *used = off;
    return rc;
}

/* Processes the buffered bytes. PUBLISHes that must wait (held-message cap) stay in the buffer
 * in order, but the packets after them that are not PUBLISHes (acknowledgements, PINGRESP) are
 * handled and removed: an acknowledgement never waits behind a message we cannot take yet, so
 * two relays' worth of full windows cannot deadlock on each other. */
static int process_rx(struct relay_session *s, uint64_t now_ms)
{
    bool hold = s->rx_full;
    /* while holding, the front of the buffer is PUBLISHes already found to wait: start after
     * them instead of scanning (and moving) them again at every read */
    size_t rd = hold ? s->rx_kept : 0, w = rd;
    int rc = 0;

    while (rd < s->rx_len && s->state != RELAY_SS_CLOSING && s->state != RELAY_SS_DOWN) {
        struct mqc_frame f;
        bool keep = false;

        rc = mqc_frame_check(s->rx + rd, s->rx_len - rd, s->cfg->max_packet_size, &f);
        if (rc == MQC_AGAIN) {
            rc = 0;
            break;
        }
        if (rc != MQC_OK) {
            rc = sess_peer_error(s, rc, "bad packet header", now_ms);
            break;
        }
        if (f.type == MQC_PUBLISH && hold) {
            keep = true;
        } else {
            rc = handle(s, s->rx + rd, f.total, now_ms);
            if (rc < 0)
                break;
            if (rc == 1) {
                keep = hold = true;
                rc = 0;
            }
        }
        if (keep) {
            if (w != rd)
                memmove(s->rx + w, s->rx + rd, f.total);
            w += f.total;
        }
        rd += f.total;
    }
    if (rc < 0)
        return rc;
    if (rd != w) {
        memmove(s->rx + w, s->rx + rd, s->rx_len - rd);
        s->rx_len = w + (s->rx_len - rd);
    }
    s->rx_kept = hold && s->rx_full ? w : 0;
    if (s->rx_len > RX_HARD_CAP) {
        sess_set_why(s,
                     "the broker sends more unacknowledged messages than receive_maximum (%u) "
                     "allows; closing to let it redeliver (raise receive_maximum?)",
                     s->in_cap);
        relay_log(s->log, RELAY_LOG_WARN, s->who, "%s", s->why);
        return -ENOBUFS;
    }
    return 0;
}

int relay_session_feed(struct relay_session *s, const uint8_t *in, size_t n, uint64_t now_ms)
{
    size_t used = 0;
    int rc;

    if (s->state == RELAY_SS_DOWN || s->state == RELAY_SS_CLOSING)
        return 0; /* closing: what the broker still says no longer matters */
    s->in_feed = true;
    s->last_rx_ms = now_ms;
    if (s->rx_len == 0 && !s->rx_full) {
        /* common case: packets straight from the transport's buffer, no copy */
        rc = process(s, in, n, &used, now_ms);
        in += used;
        n -= used;
    } else {
        rc = 0;
    }
    if (rc == 0 && n) {
        if (sess_grow(&s->rx, &s->rx_cap, s->rx_len + n) != 0) {
            s->in_feed = false;
            return -ENOMEM;
        }
        memcpy(s->rx + s->rx_len, in, n);
        s->rx_len += n;
        rc = process_rx(s, now_ms);
    }
    s->in_feed = false;
    return rc;
}

int relay_session_resume_rx(struct relay_session *s, uint64_t now_ms)
{
    int rc;

    if (s->in_feed || !s->rx_len || s->state == RELAY_SS_DOWN || s->state == RELAY_SS_CLOSING)
        return 0;
    s->in_feed = true;
    rc = process_rx(s, now_ms);
    s->in_feed = false;
    return rc;
}

void relay_session_set_rx_paused(struct relay_session *s, bool paused)
{
    s->rx_paused = paused;
}

bool relay_session_needs_rx(const struct relay_session *s)
{
    return s->win.inflight > 0 || s->in_pubrel > 0;
}

/* ---- sending ------------------------------------------------------------------------------ */

bool relay_session_wants_write(const struct relay_session *s, uint64_t now_ms)
{
    if (s->state == RELAY_SS_DOWN)
        return false;
    if (s->tx_msg || s->ctl_off < s->ctl_len)
        return true;
    return sess_may_publish(s, now_ms);
}

static void sent_whole(struct relay_session *s, struct relay_msg *m, uint64_t now_ms)
{
    if (m->qos == 0)
        sess_finish_out(s, m, -1, now_ms); /* QoS 0 is delivered once written */
}

int relay_session_next_tx(struct relay_session *s, uint8_t *out, size_t cap, size_t *len,
                          uint64_t now_ms)
{
    size_t n = 0;

    *len = 0;
    if (s->state == RELAY_SS_DOWN)
        return 0;
    /* a PUBLISH larger than one write continues first: nothing may cut into it */
    if (s->tx_msg) {
        struct relay_msg *m = s->tx_msg;
        size_t k = s->tx_wire.len - s->tx_off;

        if (k > cap)
            k = cap;
        sess_wire_copy(&s->tx_wire, m, s->tx_off, out, (uint32_t)k);
        s->tx_off += (uint32_t)k;
        n = k;
        if (s->tx_off == s->tx_wire.len) {
            s->tx_msg = NULL;
            sent_whole(s, m, now_ms);
        }
    }
    if (!s->tx_msg && s->ctl_off < s->ctl_len) {
        size_t k = s->ctl_len - s->ctl_off;

        if (k > cap - n)
            k = cap - n;
        memcpy(out + n, s->ctl + s->ctl_off, k);
        s->ctl_off += k;
        n += k;
        if (s->ctl_off == s->ctl_len)
            s->ctl_off = s->ctl_len = 0;
    }
    while (!s->tx_msg && s->ctl_len == 0 && n < cap) {
        struct sess_wire w;
        struct relay_msg *m = sess_take_next(s, now_ms, &w);
        size_t k;

        if (!m)
            break;
        k = w.len;
        if (k > cap - n) {
            k = cap - n;
            s->tx_msg = m;
            s->tx_off = (uint32_t)k;
            s->tx_wire = w;
        }
        if (w.nseg == 1 && !w.seg[0].own)
            memcpy(out + n, m->data, k); /* no alias: the bytes as encoded */
        else
            sess_wire_copy(&w, m, 0, out + n, (uint32_t)k);
        n += k;
        if (!s->tx_msg)
            sent_whole(s, m, now_ms);
    }
    if (n)
        s->last_tx_ms = now_ms;
    *len = n;
    return 0;
}

/* ---- what the owner may read ------------------------------------------------------------ */

void *relay_session_owner(const struct relay_session *s)
{
    return s->owner;
}

enum relay_session_state relay_session_state(const struct relay_session *s)
{
    return s->state;
}

uint32_t relay_session_epoch(const struct relay_session *s)
{
    return s->epoch;
}

const char *relay_session_why(const struct relay_session *s)
{
    return s->why;
}

enum relay_session_end relay_session_end(const struct relay_session *s)
{
    return s->end;
}

void relay_session_forget_why(struct relay_session *s)
{
    s->why[0] = '\0';
    s->end = RELAY_END_FAILURE;
}

bool relay_session_bridge_on(const struct relay_session *s)
{
    return s->cfg->try_bridge && s->cfg->version != MQC_V5;
}

uint32_t relay_session_max_packet(const struct relay_session *s)
{
    return s->peer_max_packet;
}

uint8_t relay_session_max_qos(const struct relay_session *s)
{
    return s->peer_max_qos;
}

bool relay_session_sub_ids(const struct relay_session *s)
{
    return s->peer_sub_ids;
}

uint16_t relay_session_keepalive(const struct relay_session *s)
{
    return s->keepalive;
}

const struct relay_rtt *relay_session_rtt(const struct relay_session *s)
{
    return &s->rtt;
}

uint32_t relay_session_window_limit(const struct relay_session *s)
{
    return s->win.limit;
}

uint64_t relay_session_queued_bytes(const struct relay_session *s)
{
    return s->win.queued;
}

bool relay_session_qos0_room(const struct relay_session *s, uint64_t bytes)
{
    return relay_window_qos0_room(&s->win, bytes);
}

bool relay_session_rx_full(const struct relay_session *s)
{
    return s->rx_full;
}

bool relay_session_rx_room(const struct relay_session *s)
{
    return !s->rx_full && s->in_used <= s->in_cap - s->in_cap / 4u;
}

bool relay_session_drained(const struct relay_session *s)
{
    return !s->win.inflight && s->ctl_off >= s->ctl_len && !s->tx_msg &&
           !(s->state == RELAY_SS_UP && s->pend_head);
}

uint64_t relay_session_packets_in(const struct relay_session *s)
{
    return s->packets_in;
}

const struct relay_pace *relay_session_pace(const struct relay_session *s)
{
    return s->pace;
}

uint16_t relay_session_topic_aliases(const struct relay_session *s)
{
    return s->alias.max;
}
