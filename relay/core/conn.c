/*
 * conn.c: the life of one connection to a broker, top to bottom.
 *
 *   init        its client id, session settings, subscriptions and session
 *   connect     through the transport to the current URL (failover: the next one after a failure)
 *   open        CONNECT; up at CONNACK (status "online"); messages queued from an earlier link
 *               that the broker will redeliver are forgotten
 *   sync        after every event: read or pause (backpressure), write interest, close
 *   close       why it ended, one log line, and when to try again: jittered exponential backoff,
 *               or at once without the 3.x bridge bit when the broker refused it (bridge_bit auto)
 *   probe       while on a fallback URL, the first one is tried every reconnect.max and taken back
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

#define STABLE_MS 10000u /* a link up this long resets the backoff */
#define PACE_QUICK_MAX 5u
_Static_assert(
    RELAY_CONFIG_PACE_WINDOW_MS == RELAY_PACE_WINDOW_MS,
    "the pace's window"); /* pace signals in a row answered with an immediate reconnect */

static const char *version_text(uint8_t v)
{
    return v == MQC_V31 ? "3.1" : v == MQC_V311 ? "3.1.1" : "5";
}

bool relay_conn_up(const struct relay_conn *c)
{
    enum relay_session_state s = relay_session_state(c->s);

    return c->st == RELAY_CONN_OPEN && s >= RELAY_SS_SUBSCRIBING && s != RELAY_SS_CLOSING;
}

/* Up and subscribing here are exactly relay_conn_up(): the API's connections_up, /metrics'
 * mqtt_relay_connection_up and the page agree. */
enum relay_conn_view relay_conn_view(const struct relay_conn *c)
{
    switch (c->st) {
    case RELAY_CONN_CONNECTING:
        return c->close_asked ? RELAY_CV_CLOSING : RELAY_CV_CONNECTING;
    case RELAY_CONN_OPEN:
        switch (relay_session_state(c->s)) {
        case RELAY_SS_SUBSCRIBING:
            return RELAY_CV_SUBSCRIBING;
        case RELAY_SS_UP:
            return RELAY_CV_UP;
        case RELAY_SS_CLOSING:
            return RELAY_CV_CLOSING;
        default:
            return c->close_asked ? RELAY_CV_CLOSING : RELAY_CV_CONNECTING;
        }
    case RELAY_CONN_WAIT:
        return RELAY_CV_WAITING;
    default:
        return RELAY_CV_IDLE;
    }
}

void relay_conn_track(struct relay_conn *c, uint64_t now_ms)
{
    enum relay_conn_view v = relay_conn_view(c);

    if (!c->view_known || v != c->view) {
        c->view = v;
        c->view_known = true;
        c->state_since = now_ms;
    }
}

/* What went wrong last on this connection (the status API shows it with its time). */
static void note_error(struct relay_conn *c, const char *text, uint64_t now_ms)
{
    snprintf(c->last_error, sizeof(c->last_error), "%s", text);
    c->last_error_ms = now_ms ? now_ms : 1;
}

/* ---- what the session tells the connection ------------------------------------------------ */

static bool is_orphan(const struct relay_msg *m, void *arg)
{
    const struct relay_conn *src = arg;

    return m->src == src && m->src_epoch != relay_session_epoch(src->s);
}

void relay_conn_publish_status(struct relay_conn *c, const char *text, uint64_t now_ms)
{
    const char *topic = c->b->cfg->status_topic;
    struct mqc_publish p = {.qos = 1, .retain = true, .packet_id = 1};
    struct relay_msg *m;
    size_t size, written, pid_off;

    p.topic = (struct mqc_bytes){(const uint8_t *)topic, strlen(topic)};
    p.payload = (struct mqc_bytes){(const uint8_t *)text, strlen(text)};
    if (mqc_size_publish(&p, c->b->cfg->version, &size) != MQC_OK)
        return;
    m = malloc(sizeof(*m) + size);
    if (!m)
        return;
    memset(m, 0, sizeof(*m));
    if (mqc_encode_publish(&p, c->b->cfg->version, m->data, size, &written, &pid_off) != MQC_OK) {
        free(m);
        return;
    }
    m->len = (uint32_t)written;
    m->qos = 1;
    m->pid_off = (uint32_t)pid_off;
    m->route = UINT32_MAX;
    m->t_in_ms = now_ms;
    relay_session_enqueue(c->s, m, now_ms);
}

static void hook_up(struct relay_session *s, bool session_present, uint64_t now_ms)
{
    struct relay_conn *c = relay_session_owner(s);
    struct relay *r = c->r;
    size_t purged = 0;

    c->up_since = now_ms;
    c->failures = 0;
    c->probe_at = c->url_idx ? now_ms + c->b->cfg->reconnect_max_ms : 0;
    relay_log(r->log, RELAY_LOG_INFO, c->who, "connected to %s (MQTT %s%s, session %s)",
              c->b->cfg->urls[c->url_idx].text, version_text(c->b->cfg->version),
              relay_session_bridge_on(s) ? ", bridge" : "", session_present ? "resumed" : "new");
    /* Messages this connection received on an earlier link and that are still queued unsent:
     * the broker kept the session, so it redelivers them now; forget the old copies */
    if (session_present) {
        for (size_t i = 0; i < r->n_conns; i++)
            purged += relay_session_purge(r->conns[i]->s, is_orphan, c);
        for (size_t i = 0; i < r->n_brokers; i++)
            purged += relay_feed_purge_orphans(&r->brokers[i], c);
    }
    if (purged)
        relay_log(r->log, RELAY_LOG_DEBUG, c->who,
                  "%zu queued messages from the previous link will be redelivered", purged);
    if (c->b->cfg->status_topic)
        relay_conn_publish_status(c, "online", now_ms);
}

static void hook_suback(struct relay_session *s, const struct relay_sub *sub, uint8_t code)
{
    struct relay_conn *c = relay_session_owner(s);
    char text[160];

    if (code >= 0x80) {
        relay_log(c->r->log, RELAY_LOG_ERROR, c->who,
                  "subscription to \"%s\" refused by the broker (code 0x%02X): its route "
                  "carries nothing from this connection",
                  sub->filter, code);
        snprintf(text, sizeof(text), "subscription to \"%.100s\" refused (code 0x%02X)",
                 sub->filter, code);
        note_error(c, text, c->r->now_ms);
    } else
        relay_log(c->r->log, RELAY_LOG_DEBUG, c->who, "subscribed \"%s\" (granted QoS %u)",
                  sub->filter, code);
}

static void hook_rx_full(struct relay_session *s, bool full)
{
    (void)full;
    relay_mark(relay_session_owner(s));
}

/* A destination's window crossed a mark: every source feeding its broker re-decides. */
static void hook_window(struct relay_session *s, int transition)
{
    struct relay_conn *c = relay_session_owner(s);

    if (transition > 0)
        c->b->n_over++;
    else if (c->b->n_over)
        c->b->n_over--;
    relay_mark_feeders(c->r, c->b);
}

static const struct relay_session_hooks hooks = {
    .up = hook_up,
    .publish = relay_forward,
    .done = relay_forward_done,
    .suback = hook_suback,
    .rx_full = hook_rx_full,
    .window = hook_window,
    .rtt = relay_autospool_rtt,
};

/* ---- set-up ------------------------------------------------------------------------------ */

void relay_conn_fill_scfg(struct relay_conn *c)
{
    const struct relay_broker_config *bc = c->b->cfg;

    c->scfg = (struct relay_session_cfg){
        .version = bc->version,
        .try_bridge =
            bc->version != MQC_V5 && (bc->bridge_bit == RELAY_BRIDGE_ON ||
                                      (bc->bridge_bit == RELAY_BRIDGE_AUTO && !c->b->bridge_off)),
        .client_id = c->client_id,
        .username = bc->username,
        .password = bc->password,
        .password_len = bc->password_len,
        .keepalive = bc->keepalive,
        .clean_start = bc->clean_start,
        .session_expiry = bc->session_expiry,
        .receive_maximum = bc->receive_maximum,
        .max_packet_size = bc->max_packet_size,
        .max_inflight = bc->max_inflight,
        .max_inflight_cap = bc->max_inflight_cap,
        .ack_timeout_ms = bc->ack_timeout_ms,
        .rate_bytes = bc->rate_bytes,
        .rate_messages = bc->rate_messages,
        .will_topic = bc->status_topic,
        .pace = &c->pace,
        .topic_aliases = bc->topic_aliases,
    };
}

int relay_conn_init(struct relay *r, struct relay_broker *b, uint32_t idx)
{
    const struct relay_broker_config *bc = b->cfg;
    struct relay_conn *c = &b->conns[idx];
    size_t idcap = strlen(bc->client_id) + 16u; /* the base id plus "-<idx>" */

    c->r = r;
    c->b = b;
    c->idx = idx;
    snprintf(c->who, sizeof(c->who), "%s#%u", bc->name, idx);
    c->client_id = malloc(idcap);
    if (!c->client_id || relay_broker_client_id(bc, idx, c->client_id, idcap) < 0)
        return -ENOMEM;
    relay_pace_init(&c->pace, bc->rate_messages, bc->rate_bytes);
    relay_conn_fill_scfg(c);
    if (relay_routes_subs(c, &c->subs, &c->n_subs) != 0)
        return -ENOMEM;
    c->backoff_ms = bc->reconnect_min_ms;
    if (relay_session_new(&c->scfg, &hooks, c, r->log, c->who, &c->s) != 0)
        return -ENOMEM;
    relay_session_set_subs(c->s, c->subs, c->n_subs);
    return 0;
}

void relay_conn_cleanup(struct relay_conn *c)
{
    relay_session_free(c->s);
    free(c->subs);
    free(c->client_id);
    free(c->probe);
    c->s = NULL;
    c->subs = NULL;
    c->client_id = NULL;
    c->probe = NULL;
}

/* ---- connect, close, backoff ------------------------------------------------------------- */

/* Where and how connection c (or its probe) connects to URL u of its broker. */
static struct relay_endpoint endpoint(const struct relay_conn *c, size_t u, const char *who)
{
    const struct relay_broker_config *bc = c->b->cfg;
    const struct relay_url *url = &bc->urls[u];

    return (struct relay_endpoint){
        .url = url,
        .tls = &bc->tls,
        .proxy = bc->proxy.kind != RELAY_PROXY_NONE && !url->direct ? &bc->proxy : NULL,
        .tcp_keepalive_s = bc->tcp_keepalive_s,
        .tcp_user_timeout_ms = bc->tcp_user_timeout_ms,
        .bind_address = bc->bind_address,
        .version = bc->version,
        .who = who,
    };
}

void relay_conn_connect(struct relay_conn *c, uint64_t now_ms)
{
    struct relay_endpoint ep = endpoint(c, c->url_idx, c->who);

    c->st = RELAY_CONN_CONNECTING;
    c->close_asked = false;
    c->write_asked = false;
    c->rx_paused = false;
    if (c->r->io->connect(c->r->io->ctx, c, &ep) != 0)
        relay_core_on_close(c, "cannot start connecting", now_ms);
}

/* Jittered exponential backoff: the wait is drawn in [backoff, 1.5 x backoff] (never under
 * reconnect.min, never over reconnect.max), then backoff doubles up to reconnect.max. With
 * several URLs, the next one is tried at once after a failure, and the backoff applies when
 * the list comes round again. */
static uint32_t jittered(struct relay_conn *c)
{
    uint32_t d = c->backoff_ms + relay_rand(c->r) % (c->backoff_ms / 2u + 1u);

    return d > c->b->cfg->reconnect_max_ms ? c->b->cfg->reconnect_max_ms : d;
}

static void retry_later(struct relay_conn *c, const char *why, uint64_t now_ms)
{
    const struct relay_broker_config *bc = c->b->cfg;
    uint32_t delay;

    if (c->up_since && now_ms - c->up_since >= STABLE_MS)
        c->backoff_ms = bc->reconnect_min_ms;
    if (!c->up_since && bc->n_urls > 1) {
        c->url_idx = (c->url_idx + 1) % bc->n_urls;
        delay = c->url_idx ? 0 : jittered(c);
    } else {
        delay = jittered(c);
    }
    if (delay && c->backoff_ms < bc->reconnect_max_ms)
        c->backoff_ms =
            c->backoff_ms > bc->reconnect_max_ms / 2u ? bc->reconnect_max_ms : c->backoff_ms * 2u;
    c->failures++;
    c->up_since = 0;
    c->st = RELAY_CONN_WAIT;
    c->retry_at = now_ms + delay;
    note_error(c, why, now_ms);
    relay_log_limited(c->r->log, now_ms, RELAY_LOG_WARN, c->who, "%s, retry in %.1fs", why,
                      delay / 1000.0);
}

void relay_conn_close(struct relay_conn *c)
{
    if (c->close_asked || (c->st != RELAY_CONN_OPEN && c->st != RELAY_CONN_CONNECTING))
        return;
    c->close_asked = true;
    c->r->io->close(c->r->io->ctx, c);
}

void relay_conn_restart(struct relay_conn *c, const char *why, uint64_t now_ms)
{
    c->restart_now = true;
    c->restart_why = why;
    c->url_idx = 0;
    switch (c->st) {
    case RELAY_CONN_OPEN:
        if (relay_session_state(c->s) == RELAY_SS_CONNECTING)
            relay_conn_close(c);
        else
            relay_session_disconnect(c->s, 0, now_ms); /* closes once written */
        relay_mark(c);
        break;
    case RELAY_CONN_CONNECTING:
        relay_conn_close(c);
        break;
    case RELAY_CONN_WAIT:
        c->retry_at = now_ms;
        c->restart_now = false;
        break;
    default:
        c->restart_now = false;
        break;
    }
}

void relay_conn_stop(struct relay_conn *c, uint64_t now_ms)
{
    struct relay *r = c->r;

    if (c->probe && c->probe->st == RELAY_CONN_CONNECTING && !c->probe->close_asked) {
        c->probe->close_asked = true;
        r->io->close(r->io->ctx, c->probe);
    }
    if (c->st == RELAY_CONN_WAIT || c->st == RELAY_CONN_IDLE)
        c->st = RELAY_CONN_IDLE;
    else if (c->st == RELAY_CONN_CONNECTING)
        relay_conn_close(c);
    else if (relay_session_state(c->s) == RELAY_SS_UP && c->b->cfg->status_topic)
        relay_conn_publish_status(c, "offline", now_ms); /* a clean DISCONNECT drops the Will */
    relay_mark(c);
}

/* ---- failover back to the first URL ----------------------------------------------------- */

/* While c runs on a fallback URL, a probe connects to the first one every reconnect.max ms;
 * once it opens (TCP, TLS, WebSocket all fine), c moves back. The probe never speaks MQTT: a
 * second session with the same client id would take the first one over. */
static void probe_start(struct relay_conn *c, uint64_t now_ms)
{
    const struct relay_broker_config *bc = c->b->cfg;
    struct relay_conn *p = c->probe;
    struct relay_endpoint ep = endpoint(c, 0, NULL);

    c->probe_at = now_ms + bc->reconnect_max_ms;
    if (!p) {
        p = c->probe = calloc(1, sizeof(*p));
        if (!p)
            return;
        p->r = c->r;
        p->b = c->b;
        p->idx = c->idx;
        p->is_probe = true;
        p->owner = c;
    }
    if (p->st != RELAY_CONN_IDLE)
        return;
    snprintf(p->who, sizeof(p->who), "%.80s probe", c->who);
    ep.who = p->who;
    p->st = RELAY_CONN_CONNECTING;
    p->close_asked = false;
    if (c->r->io->connect(c->r->io->ctx, p, &ep) != 0)
        p->st = RELAY_CONN_IDLE;
}

static void probe_opened(struct relay_conn *p, uint64_t now_ms)
{
    struct relay_conn *c = p->owner;

    p->st = RELAY_CONN_OPEN;
    p->close_asked = true;
    c->r->io->close(c->r->io->ctx, p);
    if (c->url_idx == 0 || c->r->stopping)
        return;
    relay_log(c->r->log, RELAY_LOG_INFO, c->who, "%s answers again: moving back to it",
              c->b->cfg->urls[0].text);
    relay_conn_restart(c, "back to the first URL", now_ms);
}

static void probe_closed(struct relay_conn *p, const char *why)
{
    if (p->st == RELAY_CONN_CONNECTING)
        relay_log(p->r->log, RELAY_LOG_DEBUG, p->who, "%s: still unreachable (%s)",
                  p->b->cfg->urls[0].text, why ? why : "closed");
    p->st = RELAY_CONN_IDLE;
    p->link = NULL;
    p->close_asked = false;
}

/* ---- sync and timers ---------------------------------------------------------------------- */

/* A destination this connection feeds is over its high mark: its windows (end to end), or its
 * spool while messages go there (what its sessions then hold is bounded by the feed budget, so
 * a long round trip's worth of messages in flight does not pause the sources). */
static bool feeds_over(const struct relay_conn *c)
{
    for (size_t k = 0; k < c->b->n_feeds; k++) {
        const struct relay_broker *d = c->b->feeds[k];

        if (d->feed.full || (d->n_over && !d->feed.spooling))
            return true;
    }
    return false;
}

/* Reading pauses while a destination c feeds is over its high mark or its held messages
 * reached receive_maximum, but never while progress needs this very socket: acknowledgements
 * of what we sent c, or PUBRELs for held QoS 2 messages. Otherwise two full windows (or a full
 * set of QoS 2 slots) would wait on each other for ever; the session still defers the PUBLISHes
 * it cannot take, in order, while it reads the rest. */
void relay_conn_sync(struct relay_conn *c, uint64_t now_ms)
{
    struct relay *r = c->r;
    bool pause, full;

    if (c->st != RELAY_CONN_OPEN || c->close_asked)
        return;
    /* paused for held messages: reading again once a quarter of them is acknowledged, not at
     * each acknowledgement (a Mosquitto 3.x source keeps more in flight than receive_maximum:
     * that was a pause and a resume every five messages) */
    full = relay_session_rx_full(c->s) || (c->rx_paused && !relay_session_rx_room(c->s));
    pause = (full || feeds_over(c)) && !relay_session_needs_rx(c->s);
    if (pause != c->rx_paused) {
        c->rx_paused = pause;
        relay_session_set_rx_paused(c->s, pause);
        r->io->pause_rx(r->io->ctx, c, pause);
    }
    /* the PUBLISHes deferred in the session are taken as slots free up, even while the socket
     * waits for the quarter */
    if ((!pause || (!relay_session_rx_full(c->s) && !feeds_over(c))) &&
        relay_session_resume_rx(c->s, now_ms) < 0) {
        relay_conn_close(c);
        return;
    }
    if (relay_session_closing(c->s) && !relay_session_wants_write(c->s, now_ms)) {
        relay_conn_close(c);
        return;
    }
    if (!c->write_asked && relay_session_wants_write(c->s, now_ms)) {
        c->write_asked = true;
        r->io->want_write(r->io->ctx, c);
    }
}

void relay_conn_tick(struct relay_conn *c, uint64_t now_ms)
{
    bool stopping = c->r->stopping;

    if (c->st == RELAY_CONN_WAIT && now_ms >= c->retry_at && !stopping) {
        relay_conn_connect(c, now_ms);
    } else if (c->st == RELAY_CONN_OPEN) {
        if (relay_session_tick(c->s, now_ms) < 0)
            relay_conn_close(c); /* on_close logs why */
        else if (c->probe_at && c->url_idx && now_ms >= c->probe_at && !stopping)
            probe_start(c, now_ms);
        relay_mark(c);
    }
}

uint64_t relay_conn_deadline(const struct relay_conn *c)
{
    uint64_t d, p;

    if (c->st == RELAY_CONN_WAIT)
        return c->retry_at;
    if (c->st != RELAY_CONN_OPEN)
        return 0;
    d = relay_session_deadline(c->s);
    p = c->url_idx ? c->probe_at : 0;
    return !d ? p : !p ? d : d < p ? d : p;
}

/* ---- the transport's entry points --------------------------------------------------------- */

void *relay_conn_link(const struct relay_conn *c)
{
    return c->link;
}

void relay_conn_set_link(struct relay_conn *c, void *link)
{
    c->link = link;
}

const char *relay_conn_who(const struct relay_conn *c)
{
    return c->who;
}

void relay_core_on_open(struct relay_conn *c, uint64_t now_ms)
{
    const struct relay_broker_config *bc = c->b->cfg;
    enum relay_scheme sch = bc->urls[c->url_idx].scheme;

    if (c->is_probe) {
        probe_opened(c, now_ms);
        relay_flush(c->r, now_ms);
        return;
    }
    c->st = RELAY_CONN_OPEN;
    if ((sch == RELAY_MQTTS || sch == RELAY_WSS) && bc->has_tls && !bc->tls.verify)
        relay_log(c->r->log, RELAY_LOG_WARN, c->who,
                  "TLS without verification (tls.verify = false): %s is not checked to be "
                  "who it says it is",
                  bc->urls[c->url_idx].text);
    if (relay_session_open(c->s, now_ms) != 0) {
        relay_conn_close(c);
    } else {
        relay_log(c->r->log, RELAY_LOG_DEBUG, c->who, "link open, CONNECT sent as \"%s\"",
                  c->client_id);
        relay_mark(c);
    }
    relay_flush(c->r, now_ms);
}

int relay_core_on_rx(struct relay_conn *c, const uint8_t *in, size_t n, uint64_t now_ms)
{
    int rc;

    if (c->is_probe)
        return -1; /* a probe reads nothing */
    c->stats.bytes_received += n;
    rc = relay_session_feed(c->s, in, n, now_ms);
    relay_mark(c);
    if (rc < 0 && !relay_session_closing(c->s))
        c->close_asked = true; /* the transport closes it as we return */
    relay_flush(c->r, now_ms);
    if (rc < 0 && c->close_asked)
        return -1;
    return 0;
}

int relay_core_on_writeable(struct relay_conn *c, uint8_t *out, size_t cap, size_t *len,
                            uint64_t now_ms)
{
    *len = 0;
    if (c->is_probe)
        return 0;
    c->write_asked = false;
    relay_session_next_tx(c->s, out, cap, len, now_ms);
    c->stats.bytes_sent += *len;
    relay_mark(c);
    relay_flush(c->r, now_ms);
    return 0;
}

bool relay_core_wants_write(const struct relay_conn *c)
{
    return c->write_asked;
}

uint64_t relay_core_rx_packets(const struct relay_conn *c)
{
    return c->s ? relay_session_packets_in(c->s) : 0;
}

/* bridge_bit "auto" and the broker refused the bit: every connection of the broker connects
 * without it from now on, for the life of the process. One line says so; it is not counted as
 * a reconnect. */
static void drop_bridge_bit(struct relay_conn *c, const char *text)
{
    struct relay_broker *b = c->b;

    if (b->bridge_off)
        return;
    b->bridge_off = true;
    for (uint32_t j = 0; j < b->n_conns; j++)
        relay_conn_fill_scfg(&b->conns[j]);
    relay_log(c->r->log, RELAY_LOG_INFO, c->who,
              "the broker refused the bridge protocol bit (%s): connecting without it from now "
              "on; the loop guard relies on its other layers",
              text);
}

void relay_core_on_close(struct relay_conn *c, const char *why, uint64_t now_ms)
{
    struct relay *r = c->r;
    const char *sw;
    char text[256];
    bool was_open = c->st == RELAY_CONN_OPEN, bridge_refused, pace_end;

    if (c->is_probe) {
        probe_closed(c, why);
        relay_flush(r, now_ms);
        return;
    }
    relay_session_closed(c->s, now_ms);
    sw = relay_session_why(c->s);
    if (sw[0])
        snprintf(text, sizeof(text), "%s", sw);
    else if (was_open && c->up_since)
        snprintf(text, sizeof(text), "connection lost (%s)", why ? why : "closed");
    else
        snprintf(text, sizeof(text), "%s", why ? why : "connection failed");
    bridge_refused = relay_session_end(c->s) == RELAY_END_BRIDGE_REFUSED &&
                     c->b->cfg->bridge_bit == RELAY_BRIDGE_AUTO;
    /* the broker said we were too fast: the session lowered the pace; not a broken link, so no
     * growing backoff (BifroMQ delays its verdicts by 0.1-5 s already), unless it keeps saying
     * so at once, link after link */
    if (c->up_since && now_ms - c->up_since >= STABLE_MS)
        c->pace_quick = 0;
    pace_end = relay_session_end(c->s) == RELAY_END_PACE && c->pace_quick < PACE_QUICK_MAX;
    c->link = NULL;
    c->close_asked = false;
    c->write_asked = false;
    c->rx_paused = false;
    if (was_open && !bridge_refused)
        c->stats.reconnects++;
    if (r->stopping) {
        c->st = RELAY_CONN_IDLE;
    } else if (c->restart_now) {
        relay_log(r->log, RELAY_LOG_INFO, c->who, "reconnecting: %s", c->restart_why);
        c->restart_now = false;
        c->backoff_ms = c->b->cfg->reconnect_min_ms;
        c->up_since = 0;
        c->st = RELAY_CONN_WAIT;
        c->retry_at = now_ms;
    } else if (bridge_refused) {
        /* not a failure: the same CONNECT again at once, without the bit */
        drop_bridge_bit(c, text);
        c->st = RELAY_CONN_WAIT;
        c->retry_at = now_ms;
    } else if (pace_end) {
        c->pace_quick++;
        c->up_since = 0;
        c->st = RELAY_CONN_WAIT;
        c->retry_at = now_ms;
        relay_log_limited(r->log, now_ms, RELAY_LOG_WARN, c->who, "%s; reconnecting at once", text);
    } else {
        retry_later(c, text, now_ms);
    }
    relay_session_forget_why(c->s);
    relay_flush(r, now_ms);
}
