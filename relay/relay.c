/*
 * relay.c: the running relay. Connections and their lifecycle (connect, backoff, failover,
 * drain), the session hooks that tie a source's acknowledgement to its destinations', and the
 * pause/resume of sources when a destination's window is over its high mark.
 *
 * Every entry point from the transport ends with relay_flush(), which tells the transport what
 * the touched connections now want (write interest, rx pause) and when to call back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define STABLE_MS 10000u /* a link up this long resets the backoff */

const char *relay_drop_name(enum relay_drop d)
{
    static const char *const names[RELAY_DROP__COUNT] = {
        "loop", "expired", "too_large", "bad_topic", "qos0_overflow", "rejected"};

    return (unsigned)d < RELAY_DROP__COUNT ? names[d] : "unknown";
}

static const char *version_text(uint8_t v)
{
    return v == MQC_V31 ? "3.1" : v == MQC_V311 ? "3.1.1" : "5";
}

/* xorshift64*: jitter only, seeded by the caller */
static uint32_t rnd(struct relay *r)
{
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return (uint32_t)((r->rng * 2685821657736338717ull) >> 32);
}

void relay_mark(struct relay_conn *c)
{
    struct relay *r = c->r;

    if (c->dirty)
        return;
    if (r->n_dirty == r->dirty_cap) {
        size_t cap = r->dirty_cap ? 2 * r->dirty_cap : 64;
        struct relay_conn **d = realloc(r->dirty, cap * sizeof(*d));

        if (!d)
            return; /* the next tick syncs every connection anyway */
        r->dirty = d;
        r->dirty_cap = cap;
    }
    c->dirty = true;
    r->dirty[r->n_dirty++] = c;
}

/* ---- message buffers ---------------------------------------------------------------------- */

static const size_t msg_class[2] = {256, 2048}; /* packet bytes each class holds */
#define MSG_CACHE_MAX 4096u                      /* buffers kept per class */

struct relay_msg *relay_msg_alloc(struct relay *r, size_t size)
{
    struct relay_msg *m;
    int k = size <= msg_class[0] ? 0 : size <= msg_class[1] ? 1 : -1;

    if (k >= 0 && r->msg_cache[k]) {
        m = r->msg_cache[k];
        r->msg_cache[k] = m->next;
        r->msg_cached[k]--;
    } else {
        m = malloc(sizeof(*m) + (k >= 0 ? msg_class[k] : size));
        if (!m)
            return NULL;
    }
    /* the header only: sizeof(*m) may reach past the start of data[] (padding), and the
     * caller encodes into data[] next */
    memset(m, 0, sizeof(*m));
    m->cache = (uint8_t)(k + 1);
    return m;
}

void relay_msg_free(struct relay *r, struct relay_msg *m)
{
    int k = (int)m->cache - 1;

    if (k < 0 || r->msg_cached[k] >= MSG_CACHE_MAX) {
        free(m);
        return;
    }
    m->next = r->msg_cache[k];
    r->msg_cache[k] = m;
    r->msg_cached[k]++;
}

/* ---- session hooks ------------------------------------------------------------------------ */

static bool is_orphan(const struct relay_msg *m, void *arg)
{
    const struct relay_conn *src = arg;

    return m->src == src && m->src_epoch != src->s.epoch;
}

/* A retained QoS 1 message on the status topic ("online" / "offline"), reporting to nobody. */
static void publish_status(struct relay_conn *c, const char *text, uint64_t now_ms)
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
    relay_session_enqueue(&c->s, m, now_ms);
}

static void hook_up(struct relay_session *s, bool session_present, uint64_t now_ms)
{
    struct relay_conn *c = s->owner;
    struct relay *r = c->r;
    size_t purged = 0;

    c->up_since = now_ms;
    c->failures = 0;
    c->probe_at = c->url_idx ? now_ms + c->b->cfg->reconnect_max_ms : 0;
    relay_log(r->log, RELAY_LOG_INFO, c->who, "connected to %s (MQTT %s%s, session %s)",
              c->b->cfg->urls[c->url_idx].text, version_text(c->b->cfg->version),
              c->scfg.try_bridge && !s->bridge_refused ? ", bridge" : "",
              session_present ? "resumed" : "new");
    /* Messages this connection received on an earlier link and that are still queued unsent:
     * the broker kept the session, so it redelivers them now; forget the old copies */
    if (session_present) {
        for (size_t i = 0; i < r->n_brokers; i++) {
            struct relay_broker *b = &r->brokers[i];

            for (uint32_t j = 0; j < b->n_conns; j++)
                purged += relay_session_purge(&b->conns[j].s, is_orphan, c);
            for (struct relay_msg *m = b->spool_wait_head, *next; m; m = next) {
                next = m->next;
                if (!is_orphan(m, c))
                    continue;
                relay_msg_unlink(&b->spool_wait_head, &b->spool_wait_tail, m);
                b->spool_wait_bytes -= m->len;
                free(m);
                purged++;
            }
        }
    }
    if (purged)
        relay_log(r->log, RELAY_LOG_DEBUG, c->who,
                  "%zu queued messages from the previous link will be redelivered", purged);
    if (c->b->cfg->status_topic)
        publish_status(c, "online", now_ms);
}

static int hook_publish(struct relay_session *s, const struct mqc_publish *p,
                        struct relay_in_ref ref, uint64_t now_ms)
{
    struct relay_conn *c = s->owner;

    return relay_route_forward(c->r, c, p, ref, now_ms);
}

static void hook_done(struct relay_session *s, struct relay_msg *m, int drop, uint64_t now_ms)
{
    struct relay_conn *c = s->owner;
    struct relay *r = c->r;

    if (m->route < r->n_routes) {
        struct relay_route *rt = &r->routes[m->route];

        if (drop < 0) {
            rt->forwarded++;
            relay_latency_observe(r, now_ms - m->t_in_ms);
        } else {
            rt->dropped[drop]++;
            if (drop != RELAY_DROP_REJECTED)
                relay_log_limited(r->log, now_ms, RELAY_LOG_WARN, c->who,
                                  "message for route %s dropped (%s)", rt->cfg->name,
                                  relay_drop_name((enum relay_drop)drop));
        }
    }
    if (m->src) {
        relay_session_in_done(&m->src->s, m->ref, now_ms);
        relay_mark(m->src);
    }
    if (m->spool_seq && c->b->spool) {
        relay_spool_delivered(c->b->spool, m->spool_seq);
        relay_spool_check(c->b);
    }
    relay_msg_free(r, m);
}

static void hook_suback(struct relay_session *s, const struct relay_sub *sub, uint8_t code)
{
    struct relay_conn *c = s->owner;

    if (code >= 0x80)
        relay_log(c->r->log, RELAY_LOG_ERROR, c->who,
                  "subscription to \"%s\" refused by the broker (code 0x%02X): its route "
                  "carries nothing from this connection",
                  sub->filter, code);
    else
        relay_log(c->r->log, RELAY_LOG_DEBUG, c->who, "subscribed \"%s\" (granted QoS %u)",
                  sub->filter, code);
}

static void hook_rx_full(struct relay_session *s, bool full)
{
    (void)full;
    relay_mark(s->owner);
}

/* A destination's window crossed a mark: every source feeding its broker re-decides. */
static void hook_window(struct relay_session *s, int transition)
{
    struct relay_conn *c = s->owner;
    struct relay *r = c->r;

    if (transition > 0)
        c->b->n_over++;
    else if (c->b->n_over)
        c->b->n_over--;
    for (size_t i = 0; i < r->n_brokers; i++)
        for (size_t k = 0; k < r->brokers[i].n_feeds; k++)
            if (r->brokers[i].feeds[k] == c->b)
                for (uint32_t j = 0; j < r->brokers[i].n_conns; j++)
                    relay_mark(&r->brokers[i].conns[j]);
}

static const struct relay_session_hooks hooks = {
    .up = hook_up,
    .publish = hook_publish,
    .done = hook_done,
    .suback = hook_suback,
    .rx_full = hook_rx_full,
    .window = hook_window,
};

/* ---- store and forward -------------------------------------------------------------------- */

/* A spooled record is on disk: its source may be acknowledged (stale refs are ignored). */
static void spool_durable(void *arg, const struct relay_spool_ack *ack)
{
    struct relay *r = arg;

    if (!ack->src || ack->src->s.epoch != ack->src_epoch)
        return;
    relay_session_in_done(&ack->src->s, ack->ref, r->now_ms);
    relay_mark(ack->src);
}

void relay_spool_check(struct relay_broker *b)
{
    struct relay *r = b->r;
    bool full = relay_spool_full(b->spool);

    if (full == b->spool_full)
        return;
    b->spool_full = full;
    for (size_t i = 0; i < r->n_brokers; i++)
        for (size_t k = 0; k < r->brokers[i].n_feeds; k++)
            if (r->brokers[i].feeds[k] == b)
                for (uint32_t j = 0; j < r->brokers[i].n_conns; j++)
                    relay_mark(&r->brokers[i].conns[j]);
}

/* The record names its route by key (a reload may renumber routes; so may a restart). */
static int spool_append(struct relay_broker *b, struct relay_msg *m)
{
    const struct relay_spool_ack ack = {m->src, m->ref, m->src_epoch};
    uint32_t index = m->route;
    int rc;

    if (index < b->r->n_routes)
        m->route = relay_route_key(&b->r->routes[index]);
    rc = relay_spool_append(b->spool, m, m->conn, &ack);
    m->route = index;
    return rc;
}

int relay_spool_put(struct relay_broker *b, struct relay_msg *m)
{
    /* a record must fit in the journal with room to spare, or it would wait for ever */
    if ((uint64_t)m->len + 4096u > b->cfg->spool.max_size / 2u)
        return -EFBIG;
    if (!b->spool_wait_head && spool_append(b, m) == 0) {
        free(m); /* the spool copied it */
        return 0;
    }
    relay_msg_push_back(&b->spool_wait_head, &b->spool_wait_tail, m);
    b->spool_wait_bytes += m->len;
    return 0;
}

/* Appends what waited for room, in order, as far as the spool takes it. */
static void spool_unwait(struct relay_broker *b)
{
    while (b->spool_wait_head) {
        struct relay_msg *m = b->spool_wait_head;

        if (spool_append(b, m) != 0)
            return;
        relay_msg_unlink(&b->spool_wait_head, &b->spool_wait_tail, m);
        b->spool_wait_bytes -= m->len;
        free(m);
    }
}

/* The route a spooled record came by, from its key: an index into r->routes, or UINT32_MAX. */
static uint32_t spool_route(const struct relay_broker *b, uint32_t key)
{
    size_t lo = 0, hi = b->n_to_keys;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (b->to_keys[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < b->n_to_keys && b->to_keys[lo].key == key ? b->to_keys[lo].index : UINT32_MAX;
}

/* Bytes a spooled destination connection may hold in memory: enough to keep its window busy,
 * little enough that the journal, not the heap, carries a backlog. */
#define SPOOL_FEED_BYTES (256u * 1024u)

/* Moves durable records into the destination sessions, in journal order, while the connection
 * each is for is up and has room; the first that cannot go yet is kept aside (the spool hands
 * records out only once) and goes first next time. */
static void spool_feed(struct relay_broker *b, uint64_t now_ms)
{
    for (;;) {
        struct relay_msg *m = b->spool_next;
        uint32_t conn = b->spool_next_conn;
        struct relay_conn *c;

        if (!m) {
            m = relay_spool_next(b->spool, &conn);
            if (!m)
                return;
            m->route = spool_route(b, m->route); /* UINT32_MAX: the route is gone since */
        }
        c = &b->conns[conn % b->n_conns];
        if (c->s.state != RELAY_SS_UP || c->s.win.queued >= SPOOL_FEED_BYTES) {
            b->spool_next = m;
            b->spool_next_conn = conn;
            return;
        }
        b->spool_next = NULL;
        relay_session_enqueue(&c->s, m, now_ms);
        relay_mark(c);
    }
}

static void spools_run(struct relay *r, uint64_t now_ms, bool force)
{
    for (size_t i = 0; i < r->n_brokers; i++) {
        struct relay_broker *b = &r->brokers[i];
        uint64_t due;

        if (!b->spool)
            continue;
        due = relay_spool_deadline(b->spool);
        if (due && (force || now_ms >= due)) {
            r->now_ms = now_ms;
            relay_spool_commit(b->spool, now_ms);
        }
        spool_feed(b, now_ms);
        spool_unwait(b);
        relay_spool_check(b);
    }
}

/* ---- construction ------------------------------------------------------------------------- */

static int add_ptr(void ***arr, size_t *n, void *p)
{
    void **a = realloc(*arr, (*n + 1) * sizeof(*a));

    if (!a)
        return -ENOMEM;
    a[(*n)++] = p;
    *arr = a;
    return 0;
}

int relay_broker_open_spool(struct relay *r, struct relay_broker *b, char *err, size_t errlen)
{
    const struct relay_spool_config *sc = &b->cfg->spool;
    int rc;

    if (!sc->dir)
        return 0;
    snprintf(b->spool_who, sizeof(b->spool_who), "spool %s", b->cfg->name);
    rc = relay_spool_open(sc->dir, sc->max_size, b->spool_who, r->log, spool_durable, r,
                          &b->spool, err, errlen);
    if (rc == 0)
        b->spool_full = relay_spool_full(b->spool);
    return rc;
}

void relay_conn_fill_scfg(struct relay_conn *c)
{
    const struct relay_broker_config *bc = c->b->cfg;

    c->scfg = (struct relay_session_cfg){
        .version = bc->version,
        .try_bridge = bc->version != MQC_V5,
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
        .ack_timeout_ms = bc->ack_timeout_ms,
        .rate_bytes = bc->rate_bytes,
        .rate_messages = bc->rate_messages,
        .will_topic = bc->status_topic,
    };
}

int relay_conn_subs(const struct relay_conn *c, struct relay_sub **out, size_t *n_out)
{
    const struct relay_broker *b = c->b;
    struct relay_sub *subs = calloc(b->n_from ? b->n_from : 1, sizeof(*subs));
    size_t n = 0;

    if (!subs)
        return -ENOMEM;
    for (size_t i = 0; i < b->n_from; i++) {
        const struct relay_route *rt = b->from[i];
        uint8_t qos = 0, opt = 0;

        if (!rt->cfg->share && c->idx != 0)
            continue; /* unshared: on connection 0 only, or every message comes N times */
        if (rt->sub_head != rt)
            continue; /* subscribed once, by the first route with this filter */
        for (const struct relay_route *x = rt; x; x = x->sub_next) {
            if (x->cfg->qos > qos)
                qos = x->cfg->qos;
            if (x->cfg->retain == RELAY_RETAIN_KEEP)
                opt |= MQC_SUB_RETAIN_AS_PUBLISHED;
        }
        if (b->cfg->version == MQC_V5) {
            /* Retain As Published for "keep"; Retain Handling 1: retained messages only for a
             * new subscription, not again on every reconnect of a kept session; No Local:
             * what we publish on this connection never comes back on it (not allowed on
             * shared subscriptions [MQTT-3.8.3-4]) */
            opt |= 1u << 4;
            if (!rt->cfg->share)
                opt |= MQC_SUB_NO_LOCAL;
        } else {
            opt = 0;
        }
        subs[n].filter = rt->sub_filter;
        subs[n].options = (uint8_t)(opt | qos);
        subs[n].sub_id = rt->sub_id;
        n++;
    }
    *out = subs;
    *n_out = n;
    return 0;
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
    relay_conn_fill_scfg(c);
    if (relay_conn_subs(c, &c->subs, &c->n_subs) != 0)
        return -ENOMEM;
    c->backoff_ms = bc->reconnect_min_ms;
    if (relay_session_init(&c->s, &c->scfg, &hooks, c, r->log, c->who) != 0)
        return -ENOMEM;
    relay_session_set_subs(&c->s, c->subs, c->n_subs);
    return 0;
}

int relay_link_routes(struct relay *r)
{
    uint32_t max_id = 0;

    for (size_t i = 0; i < r->n_brokers; i++) {
        free(r->brokers[i].from);
        free(r->brokers[i].feeds);
        relay_tree_free(r->brokers[i].tree);
        r->brokers[i].from = NULL;
        r->brokers[i].feeds = NULL;
        r->brokers[i].tree = NULL;
        r->brokers[i].n_from = r->brokers[i].n_feeds = 0;
    }
    for (size_t i = 0; i < r->n_routes; i++) {
        struct relay_route *rt = &r->routes[i];
        struct relay_broker *f = rt->from;
        bool known = false;

        rt->sub_head = rt;
        rt->sub_next = NULL;
        for (size_t k = 0; k < f->n_from; k++) {
            struct relay_route *x = f->from[k];

            if (x->sub_head == x && !strcmp(x->sub_filter, rt->sub_filter)) {
                rt->sub_head = x;
                while (x->sub_next)
                    x = x->sub_next;
                x->sub_next = rt;
                break;
            }
        }
        if (add_ptr((void ***)&f->from, &f->n_from, rt) || relay_tree_add(&f->tree, rt))
            return -ENOMEM;
        for (size_t k = 0; k < f->n_feeds; k++)
            known |= f->feeds[k] == rt->to;
        if (!known && add_ptr((void ***)&f->feeds, &f->n_feeds, rt->to))
            return -ENOMEM;
        if (rt->sub_id > max_id)
            max_id = rt->sub_id;
    }
    for (size_t i = 0; i < r->n_brokers; i++) {
        struct relay_broker *b = &r->brokers[i];
        size_t n = 0;

        free(b->to_keys);
        b->to_keys = NULL;
        b->n_to_keys = 0;
        for (size_t k = 0; k < r->n_routes; k++)
            n += r->routes[k].to == b;
        if (!n)
            continue;
        b->to_keys = calloc(n, sizeof(*b->to_keys));
        if (!b->to_keys)
            return -ENOMEM;
        for (size_t k = 0; k < r->n_routes; k++) {
            if (r->routes[k].to != b)
                continue;
            /* insertion sort: reloads are rare and routes into one broker few */
            uint32_t key = relay_route_key(&r->routes[k]);
            size_t at = b->n_to_keys;

            while (at > 0 && b->to_keys[at - 1].key > key) {
                b->to_keys[at] = b->to_keys[at - 1];
                at--;
            }
            b->to_keys[at].key = key;
            b->to_keys[at].index = (uint32_t)k;
            b->n_to_keys++;
        }
    }
    free(r->by_sub_id);
    r->by_sub_id = calloc(max_id + 1u, sizeof(*r->by_sub_id));
    if (!r->by_sub_id)
        return -ENOMEM;
    r->n_by_sub_id = max_id + 1u;
    for (size_t i = 0; i < r->n_routes; i++)
        r->by_sub_id[r->routes[i].sub_id] = &r->routes[i];
    return 0;
}

int relay_new(const struct relay_config *cfg, struct relay_log *log, const struct relay_io *io,
              struct relay **out, char *err, size_t errlen)
{
    struct relay *r = calloc(1, sizeof(*r));
    int rc;

    *out = NULL;
    if (!r)
        return -ENOMEM;
    r->cfg = cfg;
    r->log = log;
    r->io = io;
    r->rng = relay_now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)r;
    if (!r->rng)
        r->rng = 1;
    r->brokers = calloc(cfg->n_brokers ? cfg->n_brokers : 1, sizeof(*r->brokers));
    if (!r->brokers)
        goto nomem;
    r->n_brokers = cfg->n_brokers;
    for (size_t i = 0; i < cfg->n_brokers; i++) {
        r->brokers[i].cfg = &cfg->brokers[i];
        r->brokers[i].r = r;
        r->brokers[i].index = (uint32_t)i;
        r->brokers[i].n_conns = cfg->brokers[i].connections ? cfg->brokers[i].connections : 1;
        r->brokers[i].conns = calloc(r->brokers[i].n_conns, sizeof(struct relay_conn));
        if (!r->brokers[i].conns)
            goto nomem;
    }
    rc = relay_routes_build(r, r->brokers, cfg, &r->routes, &r->n_routes, err, errlen);
    if (rc == -EINVAL) {
        relay_free(r);
        return rc;
    }
    if (rc || relay_scratch_init(r, cfg))
        goto nomem;
    for (size_t i = 0; i < r->n_routes; i++)
        r->routes[i].sub_id = ++r->next_sub_id;
    if (relay_link_routes(r))
        goto nomem;
    for (size_t i = 0; i < r->n_brokers; i++)
        for (uint32_t j = 0; j < r->brokers[i].n_conns; j++)
            if (relay_conn_init(r, &r->brokers[i], j) != 0)
                goto nomem;
    for (size_t i = 0; i < r->n_brokers; i++) {
        rc = relay_broker_open_spool(r, &r->brokers[i], err, errlen);
        if (rc) {
            relay_free(r);
            return rc;
        }
    }
    *out = r;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    relay_free(r);
    return -ENOMEM;
}

void relay_free(struct relay *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_brokers; i++) {
        struct relay_broker *b = &r->brokers[i];

        for (uint32_t j = 0; b->conns && j < b->n_conns; j++) {
            relay_session_cleanup(&b->conns[j].s);
            free(b->conns[j].subs);
            free(b->conns[j].client_id);
            free(b->conns[j].probe);
        }
        free(b->conns);
        free(b->from);
        free(b->feeds);
        relay_tree_free(b->tree);
    }
    for (size_t i = 0; i < r->n_brokers; i++) {
        struct relay_msg *m = r->brokers[i].spool_wait_head;

        while (m) {
            struct relay_msg *next = m->next;

            free(m);
            m = next;
        }
        free(r->brokers[i].to_keys);
        free(r->brokers[i].spool_next);
        if (r->brokers[i].spool)
            relay_spool_close(r->brokers[i].spool);
    }
    for (int k = 0; k < 2; k++) {
        while (r->msg_cache[k]) {
            struct relay_msg *m = r->msg_cache[k];

            r->msg_cache[k] = m->next;
            free(m);
        }
    }
    relay_routes_free(r->routes, r->n_routes);
    free(r->by_sub_id);
    free(r->scratch);
    free(r->brokers);
    free(r->dirty);
    free(r);
}

/* ---- connection lifecycle ----------------------------------------------------------------- */

void relay_conn_connect(struct relay_conn *c, uint64_t now_ms)
{
    const struct relay_broker_config *bc = c->b->cfg;
    struct relay_endpoint ep = {
        .url = &bc->urls[c->url_idx],
        .tls = &bc->tls,
        .version = bc->version,
        .who = c->who,
    };

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
    uint32_t d = c->backoff_ms + rnd(c->r) % (c->backoff_ms / 2u + 1u);

    return d > c->b->cfg->reconnect_max_ms ? c->b->cfg->reconnect_max_ms : d;
}

static void conn_retry(struct relay_conn *c, const char *why, uint64_t now_ms)
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
        c->backoff_ms = c->backoff_ms > bc->reconnect_max_ms / 2u ? bc->reconnect_max_ms
                                                                  : c->backoff_ms * 2u;
    c->failures++;
    c->up_since = 0;
    c->st = RELAY_CONN_WAIT;
    c->retry_at = now_ms + delay;
    relay_log_limited(c->r->log, now_ms, RELAY_LOG_WARN, c->who, "%s, retry in %.1fs", why,
                      delay / 1000.0);
}

/* Asks the transport to close the link (on_close follows). */
static void conn_close(struct relay_conn *c)
{
    if (c->close_asked || (c->st != RELAY_CONN_OPEN && c->st != RELAY_CONN_CONNECTING))
        return;
    c->close_asked = true;
    c->r->io->close(c->r->io->ctx, c);
}

/* ---- failover back to the first URL ----------------------------------------------------- */

/* While c runs on a fallback URL, a probe connects to the first one every reconnect.max ms;
 * once it opens (TCP, TLS, WebSocket all fine), c moves back. The probe never speaks MQTT: a
 * second session with the same client id would take the first one over. */
static void probe_start(struct relay_conn *c, uint64_t now_ms)
{
    const struct relay_broker_config *bc = c->b->cfg;
    struct relay_conn *p = c->probe;
    struct relay_endpoint ep = {
        .url = &bc->urls[0], .tls = &bc->tls, .version = bc->version, .who = NULL};

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

void relay_conn_restart(struct relay_conn *c, const char *why, uint64_t now_ms)
{
    c->restart_now = true;
    c->restart_why = why;
    c->url_idx = 0;
    switch (c->st) {
    case RELAY_CONN_OPEN:
        if (c->s.state == RELAY_SS_CONNECTING)
            conn_close(c);
        else
            relay_session_disconnect(&c->s, 0, now_ms); /* closes once written */
        relay_mark(c);
        break;
    case RELAY_CONN_CONNECTING:
        conn_close(c);
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

static bool feeds_over(const struct relay_conn *c)
{
    for (size_t k = 0; k < c->b->n_feeds; k++)
        if (c->b->feeds[k]->n_over || c->b->feeds[k]->spool_full)
            return true;
    return false;
}

/* Tells the transport what c wants now. Reading pauses while a destination it feeds is over
 * its high mark or its held messages reached receive_maximum, but never while progress needs
 * this very socket: acknowledgements of what we sent c, or PUBRELs for held QoS 2 messages.
 * Otherwise two full windows (or a full set of QoS 2 slots) would wait on each other for ever;
 * the session still defers the PUBLISHes it cannot take, in order, while it reads the rest. */
static void conn_sync(struct relay_conn *c, uint64_t now_ms)
{
    struct relay *r = c->r;
    bool pause;

    if (c->st != RELAY_CONN_OPEN || c->close_asked)
        return;
    pause = (c->s.rx_full || feeds_over(c)) && !relay_session_needs_rx(&c->s);
    if (pause != c->rx_paused) {
        c->rx_paused = pause;
        relay_session_set_rx_paused(&c->s, pause);
        r->io->pause_rx(r->io->ctx, c, pause);
    }
    if (!pause && relay_session_resume_rx(&c->s, now_ms) < 0) {
        conn_close(c);
        return;
    }
    if (relay_session_closing(&c->s) && !relay_session_wants_write(&c->s, now_ms)) {
        conn_close(c);
        return;
    }
    if (!c->write_asked && relay_session_wants_write(&c->s, now_ms)) {
        c->write_asked = true;
        r->io->want_write(r->io->ctx, c);
    }
}

static uint64_t earliest(uint64_t a, uint64_t b)
{
    return !a ? b : !b ? a : a < b ? a : b;
}

static void check_drain(struct relay *r, uint64_t now_ms);

void relay_flush(struct relay *r, uint64_t now_ms)
{
    uint64_t next = 0;

    r->now_ms = now_ms;
    spools_run(r, now_ms, false);
    /* syncing can touch more connections (acks queued on sources): run until quiet */
    while (r->n_dirty) {
        struct relay_conn *c = r->dirty[--r->n_dirty];

        c->dirty = false;
        conn_sync(c, now_ms);
    }
    if (r->stopping)
        check_drain(r, now_ms);
    for (size_t i = 0; i < r->n_brokers; i++) {
        for (uint32_t j = 0; j < r->brokers[i].n_conns; j++) {
            struct relay_conn *c = &r->brokers[i].conns[j];

            if (c->st == RELAY_CONN_WAIT)
                next = earliest(next, c->retry_at);
            else if (c->st == RELAY_CONN_OPEN)
                next = earliest(next, earliest(relay_session_deadline(&c->s),
                                               c->url_idx ? c->probe_at : 0));
        }
    }
    for (size_t i = 0; i < r->n_brokers; i++)
        if (r->brokers[i].spool)
            next = earliest(next, relay_spool_deadline(r->brokers[i].spool));
    if (r->stopping)
        next = earliest(next, r->stop_deadline);
    if (next && next != r->next_wake) {
        r->next_wake = next;
        r->io->wake_at(r->io->ctx, next);
    }
}

void relay_start(struct relay *r, uint64_t now_ms)
{
    for (size_t i = 0; i < r->n_brokers; i++)
        for (uint32_t j = 0; j < r->brokers[i].n_conns; j++)
            relay_conn_connect(&r->brokers[i].conns[j], now_ms);
    relay_flush(r, now_ms);
}

/* ---- shutdown ----------------------------------------------------------------------------- */

void relay_stop(struct relay *r, uint64_t now_ms)
{
    uint64_t inflight = 0;

    if (r->stopping)
        return;
    r->stopping = true;
    r->stop_deadline = now_ms + r->cfg->drain_timeout_ms;
    for (size_t i = 0; i < r->n_brokers; i++) {
        for (uint32_t j = 0; j < r->brokers[i].n_conns; j++) {
            struct relay_conn *c = &r->brokers[i].conns[j];

            inflight += relay_session_unacked(&c->s);
            if (c->probe && c->probe->st == RELAY_CONN_CONNECTING && !c->probe->close_asked) {
                c->probe->close_asked = true;
                r->io->close(r->io->ctx, c->probe);
            }
            if (c->st == RELAY_CONN_WAIT || c->st == RELAY_CONN_IDLE)
                c->st = RELAY_CONN_IDLE;
            else if (c->st == RELAY_CONN_CONNECTING)
                conn_close(c);
            else if (c->s.state == RELAY_SS_UP && c->b->cfg->status_topic)
                publish_status(c, "offline", now_ms); /* a clean DISCONNECT drops the Will */
            relay_mark(c);
        }
    }
    spools_run(r, now_ms, true); /* what is spooled is acknowledged before we go */
    relay_log(r->log, RELAY_LOG_INFO, NULL,
              "shutting down: waiting up to %u ms for %llu in-flight acknowledgements",
              r->cfg->drain_timeout_ms, (unsigned long long)inflight);
    relay_flush(r, now_ms);
}

/* Draining ends when no destination owes us an acknowledgement, nothing queued can still go
 * out on a live link, and the acknowledgements we owe our sources are written; or at the
 * deadline. Then every link says DISCONNECT. */
static void check_drain(struct relay *r, uint64_t now_ms)
{
    bool quiet = true, open = false;

    for (size_t i = 0; i < r->n_brokers; i++) {
        for (uint32_t j = 0; j < r->brokers[i].n_conns; j++) {
            const struct relay_conn *c = &r->brokers[i].conns[j];

            if (c->st != RELAY_CONN_OPEN && c->st != RELAY_CONN_CONNECTING)
                continue;
            open = true;
            /* what can still go out on a live link (the status "offline" among it) goes */
            if (relay_session_unacked(&c->s) || c->s.ctl_off < c->s.ctl_len || c->s.tx_msg ||
                (c->s.state == RELAY_SS_UP && c->s.pend_head))
                quiet = false;
        }
    }
    if (!open) {
        r->finished = true;
        return;
    }
    if (!quiet && now_ms < r->stop_deadline)
        return;
    for (size_t i = 0; i < r->n_brokers; i++) {
        for (uint32_t j = 0; j < r->brokers[i].n_conns; j++) {
            struct relay_conn *c = &r->brokers[i].conns[j];

            if (c->st == RELAY_CONN_OPEN && c->s.state != RELAY_SS_CLOSING) {
                if (c->s.state == RELAY_SS_CONNECTING) {
                    conn_close(c);
                } else {
                    relay_session_disconnect(&c->s, 0, now_ms);
                    relay_mark(c);
                }
            } else if (c->st == RELAY_CONN_OPEN && now_ms >= r->stop_deadline + 1000u) {
                conn_close(c);
            }
        }
    }
    /* sync what we just queued; the loop in relay_flush has already run, so do it here */
    while (r->n_dirty) {
        struct relay_conn *c = r->dirty[--r->n_dirty];

        c->dirty = false;
        conn_sync(c, now_ms);
    }
}

bool relay_finished(const struct relay *r)
{
    return r->finished;
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
    if (c->is_probe) {
        probe_opened(c, now_ms);
        relay_flush(c->r, now_ms);
        return;
    }
    c->st = RELAY_CONN_OPEN;
    {
        const struct relay_broker_config *bc = c->b->cfg;
        enum relay_scheme sch = bc->urls[c->url_idx].scheme;

        if ((sch == RELAY_MQTTS || sch == RELAY_WSS) && bc->has_tls && !bc->tls.verify)
            relay_log(c->r->log, RELAY_LOG_WARN, c->who,
                      "TLS without verification (tls.verify = false): %s is not checked to be "
                      "who it says it is",
                      bc->urls[c->url_idx].text);
    }
    if (relay_session_open(&c->s, now_ms) != 0) {
        conn_close(c);
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

    c->bytes_received += n;
    rc = relay_session_feed(&c->s, in, n, now_ms);
    relay_mark(c);
    if (rc < 0 && !relay_session_closing(&c->s))
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
    relay_session_next_tx(&c->s, out, cap, len, now_ms);
    c->bytes_sent += *len;
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
    return c->s.packets_in;
}

void relay_core_batch_waited(void *core, uint32_t us)
{
    struct relay *r = core;

    r->batch_waits++;
    r->batch_wait_us += us;
}

void relay_core_on_close(struct relay_conn *c, const char *why, uint64_t now_ms)
{
    struct relay *r = c->r;
    char text[256];
    bool was_open = c->st == RELAY_CONN_OPEN;

    if (c->is_probe) {
        if (c->st == RELAY_CONN_CONNECTING)
            relay_log(r->log, RELAY_LOG_DEBUG, c->who, "%s: still unreachable (%s)",
                      c->b->cfg->urls[0].text, why ? why : "closed");
        c->st = RELAY_CONN_IDLE;
        c->link = NULL;
        c->close_asked = false;
        relay_flush(r, now_ms);
        return;
    }
    if (c->s.why[0])
        snprintf(text, sizeof(text), "%s", c->s.why);
    else if (was_open && c->up_since)
        snprintf(text, sizeof(text), "connection lost (%s)", why ? why : "closed");
    else
        snprintf(text, sizeof(text), "%s", why ? why : "connection failed");
    relay_session_closed(&c->s, now_ms);
    c->link = NULL;
    c->close_asked = false;
    c->write_asked = false;
    c->rx_paused = false;
    if (was_open)
        c->reconnects++;
    if (r->stopping) {
        c->st = RELAY_CONN_IDLE;
    } else if (c->restart_now) {
        relay_log(r->log, RELAY_LOG_INFO, c->who, "reconnecting: %s", c->restart_why);
        c->restart_now = false;
        c->backoff_ms = c->b->cfg->reconnect_min_ms;
        c->up_since = 0;
        c->st = RELAY_CONN_WAIT;
        c->retry_at = now_ms;
    } else if (c->s.bridge_refused && c->s.why[0] && strstr(c->s.why, "bridge")) {
        /* not a failure: connect again at once, without the bridge bit */
        relay_log(r->log, RELAY_LOG_INFO, c->who, "%s", c->s.why);
        c->s.why[0] = '\0';
        c->st = RELAY_CONN_WAIT;
        c->retry_at = now_ms;
    } else {
        conn_retry(c, text, now_ms);
    }
    c->s.why[0] = '\0';
    relay_flush(r, now_ms);
}

void relay_core_tick(void *core, uint64_t now_ms)
{
    struct relay *r = core;

    r->next_wake = 0;
    for (size_t i = 0; i < r->n_brokers; i++) {
        for (uint32_t j = 0; j < r->brokers[i].n_conns; j++) {
            struct relay_conn *c = &r->brokers[i].conns[j];

            if (c->st == RELAY_CONN_WAIT && now_ms >= c->retry_at && !r->stopping) {
                relay_conn_connect(c, now_ms);
            } else if (c->st == RELAY_CONN_OPEN) {
                if (relay_session_tick(&c->s, now_ms) < 0)
                    conn_close(c); /* on_close logs s.why */
                else if (c->probe_at && c->url_idx && now_ms >= c->probe_at && !r->stopping)
                    probe_start(c, now_ms);
                relay_mark(c);
            }
        }
    }
    relay_flush(r, now_ms);
}

int relay_core_http(void *core, const char *path, char **body, size_t *body_len,
                    const char **content_type)
{
    struct relay *r = core;

    *content_type = "text/plain; charset=utf-8";
    if (!strcmp(path, "/metrics")) {
        *content_type = "text/plain; version=0.0.4; charset=utf-8";
        return relay_metrics_render(r, body, body_len) == 0 ? 200 : 500;
    }
    if (!strcmp(path, "/healthz")) {
        bool ok = relay_healthy(r);

        *body = strdup(ok ? "ok\n" : "unavailable\n");
        *body_len = *body ? strlen(*body) : 0;
        return ok ? 200 : 503;
    }
    *body = strdup("not found\n");
    *body_len = *body ? strlen(*body) : 0;
    return 404;
}
