/*
 * spoolfeed.c: store and forward, as the core runs it (SPEC.md, Delivery guarantees).
 *
 * A message for a spooled broker goes into its journal (store/spool.c) instead of a session's
 * queue; its source is acknowledged once a commit made the record durable (spool_durable),
 * not when the destination has it. Durable records are fed back out, in journal order, into
 * the destination connection each is for, while that connection is up and has room; the
 * destination's acknowledgement lets the record be reclaimed. While the journal is full, what
 * arrives waits here in order (the sources feeding the broker are paused meanwhile).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

/* Bytes a spooled destination connection may hold in memory: enough to keep its window busy,
 * little enough that the journal, not the heap, carries a backlog. A window sized for a long
 * round trip (max_inflight auto) needs more: up to the window's worth of records of the size at
 * hand, at most FEED_MAX_BYTES. */
#define FEED_BYTES (256u * 1024u)
#define FEED_MAX_BYTES (4u * 1024u * 1024u)
/* QoS 0 messages arriving while this much waits for room in a full spool are dropped
 * ("qos0_overflow"), as a full window would. */
#define WAIT_QOS0_BYTES (1024u * 1024u)

/* A spooled record is on disk: its source may be acknowledged (stale refs are ignored). */
static void spool_durable(void *arg, const struct relay_spool_ack *ack)
{
    struct relay *r = arg;

    if (!ack->src || relay_session_epoch(ack->src->s) != ack->src_epoch)
        return;
    relay_session_in_done(ack->src->s, ack->ref, r->now_ms);
    relay_mark(ack->src);
}

int relay_feed_open_spool(struct relay *r, struct relay_broker *b, char *err, size_t errlen)
{
    const struct relay_spool_config *sc = &b->cfg->spool;
    struct relay_spool_opts o = {
        .dir = sc->dir,
        .max_size = sc->max_size,
        .who = b->feed.who,
        .log = r->log,
        .durable = spool_durable,
        .arg = r,
        .now_ms = r->now_ms,
        .wall_offset_ms = r->wall_offset_ms,
    };
    int rc;

    if (!sc->dir || b->feed.spool)
        return 0;
    o.now_ms = r->now_ms;
    rc = relay_spool_open(&o, &b->feed.spool, err, errlen);
    if (rc == 0)
        b->feed.full = relay_spool_full(b->feed.spool);
    return rc;
}

int relay_feed_open(struct relay *r, struct relay_broker *b, char *err, size_t errlen)
{
    const struct relay_spool_config *sc = &b->cfg->spool;
    int rc;

    snprintf(b->feed.who, sizeof(b->feed.who), "spool %s", b->cfg->name);
    if (!sc->dir)
        return 0;
    if (sc->mode == RELAY_SPOOL_AUTO) {
        b->feed.auto_mode = true;
        relay_autospool_start(r, b); /* opened now only when an earlier run left records */
        return 0;
    }
    rc = relay_feed_open_spool(r, b, err, errlen);
    b->feed.spooling = rc == 0;
    return rc;
}

bool relay_feed_empty(const struct relay_broker *b)
{
    return !b->feed.wait_head && !b->feed.next &&
           (!b->feed.spool || !relay_spool_unread(b->feed.spool));
}

void relay_feed_close(struct relay_broker *b, uint64_t now_ms)
{
    relay_msg_free_list(b->feed.wait_head);
    free(b->feed.next);
    free(b->feed.to_keys);
    relay_spool_close(b->feed.spool, now_ms);
    memset(&b->feed, 0, sizeof(b->feed));
}

/* Re-reads whether b's spool is full; the sources feeding it re-decide on a change. */
static void check_full(struct relay *r, struct relay_broker *b)
{
    bool full = relay_spool_full(b->feed.spool);

    if (full == b->feed.full)
        return;
    b->feed.full = full;
    relay_mark_feeders(r, b);
}

/* The record names its route by key (a reload may renumber routes; so may a restart). */
static int append(struct relay *r, struct relay_broker *b, struct relay_msg *m)
{
    const struct relay_spool_ack ack = {m->src, m->ref, m->src_epoch};
    uint32_t index = m->route;
    int rc;

    if (index < r->n_routes)
        m->route = relay_route_key(&r->routes[index]);
    rc = relay_spool_append(b->feed.spool, m, m->conn, &ack);
    m->route = index;
    return rc;
}

int relay_feed_put(struct relay *r, struct relay_route *rt, struct relay_msg *m,
                   const struct mqc_publish *p, uint64_t now_ms)
{
    struct relay_broker *b = rt->to;
    enum relay_drop why = RELAY_DROP_TOO_LARGE;
    int reports = m->src ? 1 : 0; /* its source is acknowledged once the record is durable */

    if (!reports && b->feed.wait_head && b->feed.wait_bytes + m->len > WAIT_QOS0_BYTES) {
        why = RELAY_DROP_QOS0_OVERFLOW; /* QoS 0 while the spool is full and much is waiting */
    } else if ((uint64_t)m->len + 4096u <= b->cfg->spool.max_size / 2u) {
        /* (a record must fit in the journal with room to spare, or it would wait for ever) */
        if (!b->feed.wait_head && append(r, b, m) == 0) {
            free(m); /* the spool copied it */
        } else {
            relay_msg_push_back(&b->feed.wait_head, &b->feed.wait_tail, m);
            b->feed.wait_bytes += m->len;
        }
        check_full(r, b);
        return reports;
    }
    free(m);
    relay_route_drop(r, rt, why, now_ms, p);
    return 0;
}

void relay_feed_delivered(struct relay_broker *b, uint64_t seq, uint64_t now_ms)
{
    relay_spool_delivered(b->feed.spool, seq, now_ms);
    check_full(b->r, b);
}

size_t relay_feed_purge_orphans(struct relay_broker *b, const struct relay_conn *src)
{
    uint32_t epoch = relay_session_epoch(src->s);
    size_t n = 0;

    for (struct relay_msg *m = b->feed.wait_head, *next; m; m = next) {
        next = m->next;
        if (m->src != src || m->src_epoch == epoch)
            continue;
        relay_msg_unlink(&b->feed.wait_head, &b->feed.wait_tail, m);
        b->feed.wait_bytes -= m->len;
        free(m);
        n++;
    }
    return n;
}

/* Appends what waited for room, in order, as far as the spool takes it. */
static void unwait(struct relay *r, struct relay_broker *b)
{
    while (b->feed.wait_head) {
        struct relay_msg *m = b->feed.wait_head;

        if (append(r, b, m) != 0)
            return;
        relay_msg_unlink(&b->feed.wait_head, &b->feed.wait_tail, m);
        b->feed.wait_bytes -= m->len;
        free(m);
    }
}

int relay_feed_index_routes(struct relay *r, struct relay_broker *b)
{
    size_t n = 0;

    free(b->feed.to_keys);
    b->feed.to_keys = NULL;
    b->feed.n_to_keys = 0;
    for (size_t k = 0; k < r->n_routes; k++)
        n += r->routes[k].to == b;
    if (!n)
        return 0;
    b->feed.to_keys = calloc(n, sizeof(*b->feed.to_keys));
    if (!b->feed.to_keys)
        return -ENOMEM;
    for (size_t k = 0; k < r->n_routes; k++) {
        if (r->routes[k].to != b)
            continue;
        /* insertion sort: reloads are rare and routes into one broker few */
        uint32_t key = relay_route_key(&r->routes[k]);
        size_t at = b->feed.n_to_keys;

        while (at > 0 && b->feed.to_keys[at - 1].key > key) {
            b->feed.to_keys[at] = b->feed.to_keys[at - 1];
            at--;
        }
        b->feed.to_keys[at].key = key;
        b->feed.to_keys[at].index = (uint32_t)k;
        b->feed.n_to_keys++;
    }
    return 0;
}

/* The route a spooled record came by, from its key: an index into r->routes, or UINT32_MAX. */
static uint32_t route_of(const struct relay_broker *b, uint32_t key)
{
    size_t lo = 0, hi = b->feed.n_to_keys;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (b->feed.to_keys[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < b->feed.n_to_keys && b->feed.to_keys[lo].key == key ? b->feed.to_keys[lo].index
                                                                    : UINT32_MAX;
}

static uint64_t feed_budget(const struct relay_conn *c, const struct relay_msg *m)
{
    uint64_t w = (uint64_t)relay_session_window_limit(c->s) * (m->len + 64u);

    return w < FEED_BYTES ? FEED_BYTES : w > FEED_MAX_BYTES ? FEED_MAX_BYTES : w;
}

/* Moves durable records into the destination sessions, in journal order, while the connection
 * each is for is up and has room; the first that cannot go yet is kept aside (the spool hands
 * records out only once) and goes first next time. */
static void feed(struct relay_broker *b, uint64_t now_ms)
{
    for (;;) {
        struct relay_msg *m = b->feed.next;
        uint32_t conn = b->feed.next_conn;
        struct relay_conn *c;

        if (!m) {
            m = relay_spool_next(b->feed.spool, now_ms, &conn);
            if (!m)
                return;
            m->route = route_of(b, m->route); /* UINT32_MAX: the route is gone since */
        }
        c = &b->conns[conn % b->n_conns];
        if (relay_session_state(c->s) != RELAY_SS_UP ||
            relay_session_queued_bytes(c->s) >= feed_budget(c, m)) {
            b->feed.next = m;
            b->feed.next_conn = conn;
            return;
        }
        b->feed.next = NULL;
        relay_session_enqueue(c->s, m, now_ms);
        relay_mark(c);
    }
}

void relay_feed_run(struct relay *r, uint64_t now_ms, bool force)
{
    for (size_t i = 0; i < r->n_brokers; i++) {
        struct relay_broker *b = &r->brokers[i];
        uint64_t due;

        if (!b->feed.spool)
            continue;
        due = relay_spool_deadline(b->feed.spool);
        if (due && (force || now_ms >= due)) {
            r->now_ms = now_ms;
            relay_spool_commit(b->feed.spool, now_ms);
        }
        feed(b, now_ms);
        unwait(r, b);
        check_full(r, b);
        if (b->feed.auto_mode)
            relay_autospool_check(r, b, now_ms);
    }
}

uint64_t relay_feed_deadline(const struct relay *r)
{
    uint64_t next = 0;

    for (size_t i = 0; i < r->n_brokers; i++) {
        uint64_t d = r->brokers[i].feed.spool ? relay_spool_deadline(r->brokers[i].feed.spool) : 0;

        if (d && (!next || d < next))
            next = d;
    }
    return next;
}
