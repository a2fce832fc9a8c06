/*
 * autospool.c: spool = "auto", the default: fast across a long round trip without giving up
 * "nothing lost".
 *
 * End to end, a source's message is acknowledged once the destination acknowledged the copy, so
 * a source that lets W messages out unacknowledged (Mosquitto: 20) gets at most W per round trip
 * to the destination through the relay: ~400 msg/s per topic at 50 ms. When a destination's base
 * round trip (session/rtt.h: its lowest recent sample, not the queueing a busy broker adds)
 * reaches RELAY_AUTOSPOOL_ON_MS, its messages go through a spool in the state directory instead
 * (spoolfeed.c): acknowledged once on local disk, delivered from the journal. Per-topic order
 * survives the switch: spooled records are fed in behind what the destination's sessions
 * already queued, and messages go direct again only once the round trip is back under
 * RELAY_AUTOSPOOL_OFF_MS and the spool has handed out everything (its journal, its wait list).
 * A spool an earlier run left with records is opened at start and delivered first, whatever the
 * round trip. Each switch is one log line that names the bound it lifts; where nothing can lift
 * it (spool = false, no state directory, or a distant source whose own window binds) one line
 * names the bound.
 */
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

_Static_assert(RELAY_RTT_WINDOW_RATE / 1000u == RELAY_INFLIGHT_PER_MS,
               "core/config.h and session/rtt.h disagree on the automatic window");

#define RTT_CONFIRM                                                                                \
    3u /* samples before a round trip under 10 x the threshold spools (the                         \
        * session tells the first RELAY_RTT_TELL_FIRST of them) */

uint64_t relay_window_rate(uint32_t w, uint32_t rtt_ms)
{
    return rtt_ms ? (uint64_t)w * 1000u / rtt_ms : 0;
}

static bool is_destination(const struct relay *r, const struct relay_broker *b)
{
    for (size_t k = 0; k < r->n_routes; k++)
        if (r->routes[k].to == b)
            return true;
    return false;
}

/* The broker's round trip: the highest base round trip of its connections that measured one. */
static uint32_t broker_rtt(const struct relay_broker *b)
{
    uint32_t m = 0;

    for (uint32_t j = 0; j < b->n_conns; j++) {
        const struct relay_rtt *t = b->conns[j].s ? relay_session_rtt(b->conns[j].s) : NULL;

        if (t && relay_rtt_known(t) && relay_rtt_base(t) > m)
            m = relay_rtt_base(t);
    }
    return m;
}

/* Why messages for b are not spooled, for a log line. */
static const char *no_spool_why(const struct relay *r, const struct relay_broker *b, char *buf,
                                size_t cap)
{
    if (b->cfg->spool.mode == RELAY_SPOOL_OFF)
        return "spool = false";
    if (!b->cfg->spool.dir)
        snprintf(buf, cap, "no state directory for spool = \"auto\": %s",
                 r->cfg->state_dir_why ? r->cfg->state_dir_why : "none");
    else
        snprintf(buf, cap, "its spool in %s could not be opened", b->cfg->spool.dir);
    return buf;
}

/* End to end, a message from a source is held (unacknowledged) for the destination's round
 * trip, and the relay holds at most receive_maximum per source connection: the smallest of the
 * sources feeding b binds (a source may let out fewer still). */
static uint32_t held_max(const struct relay *r, const struct relay_broker *b)
{
    uint32_t h = 0;

    for (size_t k = 0; k < r->n_routes; k++)
        if (r->routes[k].to == b && (!h || r->routes[k].from->cfg->receive_maximum < h))
            h = r->routes[k].from->cfg->receive_maximum;
    return h ? h : 1;
}

static void dest_rtt(struct relay *r, struct relay_conn *c, uint32_t rtt)
{
    struct relay_broker *b = c->b;
    struct relay_feed *f = &b->feed;
    bool high = f->rtt_high ? rtt > RELAY_AUTOSPOOL_OFF_MS : rtt >= RELAY_AUTOSPOOL_ON_MS;
    uint32_t w = relay_session_window_limit(c->s), h = held_max(r, b);
    unsigned long long e2e = relay_window_rate(h, rtt), win = relay_window_rate(w, rtt);
    char err[256], why[300];

    /* one short sample is not enough to spool on (a CONNACK from a busy broker on this host):
     * a few more confirm it, unless it is far over the threshold */
    if (high && !f->rtt_high && relay_session_rtt(c->s)->samples < RTT_CONFIRM &&
        rtt < 10u * RELAY_AUTOSPOOL_ON_MS)
        return;
    if (f->rtt_said && high == f->rtt_high)
        return;
    bool first = !f->rtt_said;
    f->rtt_said = true;
    f->rtt_high = high;
    if (!high) {
        if (!first && f->spooling && f->auto_mode)
            relay_log(r->log, RELAY_LOG_INFO, c->who,
                      "round trip %u ms: messages for %s are acknowledged end to end again once "
                      "its spool is empty",
                      rtt, b->cfg->name);
        return;
    }
    if (f->spooling && !f->auto_mode) {
        relay_log(r->log, RELAY_LOG_INFO, c->who,
                  "round trip %u ms: messages for %s are acknowledged from its spool; the window "
                  "toward it (%u) allows ~%llu msg/s per connection",
                  rtt, b->cfg->name, w, win);
        return;
    }
    if (f->auto_mode && !f->auto_failed && b->cfg->spool.dir && !f->spool &&
        relay_feed_open_spool(r, b, err, sizeof(err)) != 0) {
        f->auto_failed = true;
        relay_log(r->log, RELAY_LOG_WARN, b->feed.who, "%s", err);
    }
    if (f->auto_mode && f->spool) {
        f->spooling = true;
        relay_mark_feeders(r, b); /* its windows no longer pause the sources: its spool does */
        relay_log(r->log, RELAY_LOG_INFO, c->who,
                  "round trip %u ms: acknowledging messages for %s from the local spool (%s) "
                  "instead of end to end, which would bind each topic to ~%llu msg/s "
                  "(receive_maximum %u held from a source for %u ms); the window toward %s is "
                  "%u (~%llu msg/s per connection)",
                  rtt, b->cfg->name, b->cfg->spool.dir, e2e, h, rtt, b->cfg->name, w, win);
        return;
    }
    relay_log(r->log, RELAY_LOG_WARN, c->who,
              "round trip %u ms: end-to-end acknowledgement binds each topic into %s to ~%llu "
              "msg/s (receive_maximum %u held from a source for %u ms; fewer if the source lets "
              "fewer out): %s",
              rtt, b->cfg->name, e2e, h, rtt, no_spool_why(r, b, why, sizeof(why)));
}

/* A distant source: what it lets out unacknowledged per round trip binds, whatever the relay
 * does (the relay acknowledges once the destination did, so its own hold is the destination's
 * round trip, not this one). MQTT 5: at most our receive_maximum. 3.x: the broker's own limit
 * (Mosquitto 2.0.11 lets out 20 to begin with, and in practice many more once acknowledgements
 * flow: measured, about 10,000 msg/s over 50 ms). */
static void source_rtt(struct relay *r, struct relay_conn *c, uint32_t rtt)
{
    struct relay_broker *b = c->b;
    struct relay_feed *f = &b->feed;
    bool high = f->src_rtt_high ? rtt > RELAY_AUTOSPOOL_OFF_MS : rtt >= RELAY_AUTOSPOOL_ON_MS;

    if (high == f->src_rtt_high)
        return;
    f->src_rtt_high = high;
    if (!high)
        return;
    if (b->cfg->version == MQC_V5)
        relay_log(r->log, RELAY_LOG_INFO, c->who,
                  "round trip %u ms: each topic from %s is bound to ~%llu msg/s: it lets at most "
                  "receive_maximum %u unacknowledged messages out to the relay (fewer if its own "
                  "limit is lower)",
                  rtt, b->cfg->name,
                  (unsigned long long)relay_window_rate(b->cfg->receive_maximum, rtt),
                  b->cfg->receive_maximum);
    else
        relay_log(r->log, RELAY_LOG_INFO, c->who,
                  "round trip %u ms: each topic from %s is bound by what it lets out "
                  "unacknowledged per round trip (its own limit: %u would allow ~%llu msg/s)",
                  rtt, b->cfg->name, RELAY_SOURCE_WINDOW,
                  (unsigned long long)relay_window_rate(RELAY_SOURCE_WINDOW, rtt));
}

void relay_autospool_rtt(struct relay_session *s, uint32_t base_ms, uint64_t now_ms)
{
    struct relay_conn *c = relay_session_owner(s);
    struct relay *r = c->r;
    uint32_t rtt = broker_rtt(c->b);

    (void)base_ms;
    (void)now_ms;
    c->b->feed.rtt_ms = rtt;
    if (is_destination(r, c->b))
        dest_rtt(r, c, rtt);
    if (c->b->n_from)
        source_rtt(r, c, rtt);
}

void relay_autospool_start(struct relay *r, struct relay_broker *b)
{
    struct relay_feed *f = &b->feed;
    char err[256];
    uint64_t n;

    if (!relay_spool_present(b->cfg->spool.dir))
        return;
    if (relay_feed_open_spool(r, b, err, sizeof(err)) != 0) {
        f->auto_failed = true;
        relay_log(r->log, RELAY_LOG_WARN, f->who,
                  "%s: messages for %s are acknowledged end to end (what it holds stays there)",
                  err, b->cfg->name);
        return;
    }
    n = relay_spool_unread(f->spool);
    if (!n)
        return;
    f->spooling = true;
    relay_log(r->log, RELAY_LOG_INFO, f->who,
              "%llu messages left by an earlier run: delivering them first; new messages for %s "
              "follow them through the spool until it is empty",
              (unsigned long long)n, b->cfg->name);
}

void relay_autospool_check(struct relay *r, struct relay_broker *b, uint64_t now_ms)
{
    struct relay_feed *f = &b->feed;

    (void)now_ms;
    if (!f->spooling || f->rtt_high || !relay_feed_empty(b))
        return;
    f->spooling = false;
    relay_mark_feeders(r, b);
    relay_log(r->log, RELAY_LOG_INFO, f->who,
              "empty: messages for %s are acknowledged end to end again (round trip %u ms)",
              b->cfg->name, f->rtt_ms);
}

void relay_autospool_check_state_dir(struct relay *r)
{
    const struct relay_config *cfg = r->cfg;
    uint32_t h = 0;

    if (!cfg->state_dir_why)
        return;
    for (size_t i = 0; i < r->n_brokers; i++)
        if (r->brokers[i].cfg->spool.mode == RELAY_SPOOL_AUTO &&
            is_destination(r, &r->brokers[i])) {
            uint32_t x = held_max(r, &r->brokers[i]);

            h = !h || x < h ? x : h;
        }
    if (!h)
        return;
    relay_log(r->log, RELAY_LOG_WARN, NULL,
              "state directory %s (%s) cannot be used: %s: spool = \"auto\" is off, so a "
              "destination across a long round trip is bound by end-to-end acknowledgement "
              "(receive_maximum %u held from a source for the round trip: ~%llu msg/s per topic "
              "at 50 ms); set relay.state_dir",
              cfg->state_dir ? cfg->state_dir : "(none)", cfg->state_dir_from, cfg->state_dir_why,
              h, (unsigned long long)relay_window_rate(h, 50));
}
