/*
 * route.c: what happens to one received PUBLISH: which routes take it, the loop guard, the
 * destination topic, QoS, retain and properties, which pool connection carries it, and the one
 * encoding of the outgoing PUBLISH (the only copy of the payload the relay makes).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define RELAY_PATH "relay-path"
#define RELAY_PATH_LEN 10u
#define TOPIC_MAX 65535u
#define FEW_ROUTES 4u /* up to this many routes from a broker, no tree walk */

int relay_routes_build(struct relay *r, struct relay_broker *brokers,
                       const struct relay_config *cfg, struct relay_route **out, size_t *n_out,
                       char *err, size_t errlen)
{
    struct relay_route *routes = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof(*routes));

    *out = NULL;
    *n_out = 0;
    if (!routes)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        struct relay_route *rt = &routes[i];
        const struct relay_route_config *rc = &cfg->routes[i];
        char sub[TOPIC_MAX + 1];

        rt->cfg = rc;
        rt->r = r;
        rt->index = (uint32_t)i;
        rt->from = &brokers[rc->from];
        rt->to = &brokers[rc->to];
        rt->match = rc->filter;
        rt->match_len = strlen(rc->filter);
        if (relay_tpl_compile(&rt->tpl, rc->topic, rc->filter, err, errlen) != 0) {
            relay_routes_free(routes, i + 1);
            return -EINVAL;
        }
        if (relay_route_subscription(rc, sub, sizeof(sub)) < 0) {
            snprintf(err, errlen, "route \"%s\": subscription too long", rc->name);
            relay_routes_free(routes, i + 1);
            return -EINVAL;
        }
        if (!(rt->sub_filter = strdup(sub))) {
            relay_routes_free(routes, i + 1);
            return -ENOMEM;
        }
    }
    *out = routes;
    *n_out = cfg->n_routes;
    return 0;
}

void relay_routes_free(struct relay_route *routes, size_t n)
{
    for (size_t i = 0; routes && i < n; i++) {
        relay_tpl_cleanup(&routes[i].tpl);
        free(routes[i].sub_filter);
    }
    free(routes);
}

int relay_scratch_init(struct relay *r, const struct relay_config *cfg)
{
    size_t max_packet = 0, cap;
    uint8_t *p;

    for (size_t i = 0; i < cfg->n_brokers; i++)
        if (cfg->brokers[i].max_packet_size > max_packet)
            max_packet = cfg->brokers[i].max_packet_size;
    /* [topic][relay-path value][properties]: what one message needs while it is built */
    cap = 2u * (TOPIC_MAX + 1u) + 128u + max_packet;
    if (cap <= r->scratch_cap)
        return 0;
    p = realloc(r->scratch, cap);
    if (!p)
        return -ENOMEM;
    r->scratch = p;
    r->scratch_cap = cap;
    return 0;
}

/* ---- the loop guard ---------------------------------------------------------------------- */

/* Looks at a received message's relay-path: *loop when it already holds our id or has reached
 * max_hops; *path is the property's value (empty when absent). */
static void check_path(const struct relay *r, const struct mqc_props *props,
                       struct mqc_bytes *path, bool *loop)
{
    struct mqc_prop p;
    size_t off = 0, idlen = strlen(r->cfg->id);

    path->p = NULL;
    path->len = 0;
    *loop = false;
    while (mqc_props_next(props, &off, &p) == MQC_OK) {
        if (p.id != MQC_PROP_USER || p.str.len != RELAY_PATH_LEN ||
            memcmp(p.str.p, RELAY_PATH, RELAY_PATH_LEN) != 0)
            continue;
        *path = p.val;
        break;
    }
    if (!path->len)
        return;
    uint32_t hops = 0;
    const uint8_t *s = path->p, *end = path->p + path->len;

    while (s <= end) {
        const uint8_t *comma = memchr(s, ',', (size_t)(end - s));
        const uint8_t *e = comma ? comma : end;

        hops++;
        if ((size_t)(e - s) == idlen && memcmp(s, r->cfg->id, idlen) == 0)
            *loop = true;
        if (!comma)
            break;
        s = comma + 1;
    }
    /* forwarding would make the path longer than max_hops */
    if (hops >= r->cfg->max_hops)
        *loop = true;
}

/* FNV-1a: spreads topics over a pool and keeps each topic on one connection (its order). */
static uint32_t topic_hash(const uint8_t *t, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ t[i]) * 16777619u;
    return h;
}

/* ---- building the outgoing message ------------------------------------------------------- */

/* The MQTT 5 properties of the forwarded copy. Returns their length; *expiry and *expiry_at are
 * the Message Expiry Interval and where its value sits in the block (0 = none); *lost is set
 * when properties had to be left out because the destination speaks 3.x. */
static size_t build_props(struct relay *r, const struct relay_route *rt, bool src_v5,
                          bool dst_v5, const struct mqc_props *in, struct mqc_bytes path,
                          uint8_t *out, size_t cap, uint32_t *expiry, size_t *expiry_at,
                          bool *lost)
{
    bool forward = rt->cfg->properties == RELAY_PROPS_FORWARD && src_v5;
    struct mqc_prop p;
    size_t off = 0, len = 0;

    *expiry = 0;
    *expiry_at = 0;
    *lost = false;
    if (!forward && !dst_v5)
        return 0;
    while (forward && mqc_props_next(in, &off, &p) == MQC_OK) {
        switch (p.id) {
        case MQC_PROP_USER:
            if (p.str.len == RELAY_PATH_LEN && !memcmp(p.str.p, RELAY_PATH, RELAY_PATH_LEN))
                continue; /* replaced below, with our id added */
            /* fall through */
        case MQC_PROP_PAYLOAD_FORMAT:
        case MQC_PROP_CONTENT_TYPE:
        case MQC_PROP_RESPONSE_TOPIC:
        case MQC_PROP_CORRELATION_DATA:
        case MQC_PROP_MESSAGE_EXPIRY:
            if (!dst_v5) {
                *lost = true;
                continue;
            }
            if (p.id == MQC_PROP_MESSAGE_EXPIRY) {
                *expiry = p.num;
                *expiry_at = len + 1u;
            }
            if (mqc_prop_put(&p, out, cap, &len) != MQC_OK)
                return SIZE_MAX;
            break;
        default: /* Topic Alias, Subscription Identifier: this hop's business only */
            break;
        }
    }
    if (dst_v5) {
        /* relay-path: the relays this message crossed, oldest first, ours last */
        uint8_t *v = r->scratch + TOPIC_MAX + 1u;
        size_t idlen = strlen(r->cfg->id), vlen = 0;

        if (path.len + 1u + idlen > TOPIC_MAX)
            return SIZE_MAX;
        if (path.len) {
            memcpy(v, path.p, path.len);
            v[path.len] = ',';
            vlen = path.len + 1u;
        }
        memcpy(v + vlen, r->cfg->id, idlen);
        vlen += idlen;
        p.id = MQC_PROP_USER;
        p.str = (struct mqc_bytes){(const uint8_t *)RELAY_PATH, RELAY_PATH_LEN};
        p.val = (struct mqc_bytes){v, vlen};
        if (mqc_prop_put(&p, out, cap, &len) != MQC_OK)
            return SIZE_MAX;
    }
    return len;
}

static void drop(struct relay *r, struct relay_route *rt, enum relay_drop why, uint64_t now_ms,
                 const struct mqc_publish *p)
{
    rt->dropped[why]++;
    if (why == RELAY_DROP_LOOP)
        return; /* the loop guard doing its job: counted, not logged */
    relay_log_limited(r->log, now_ms, RELAY_LOG_WARN, rt->cfg->name,
                      "message on \"%.*s\" dropped (%s)", (int)(p->topic.len > 200 ? 200 : p->topic.len),
                      (const char *)p->topic.p, relay_drop_name(why));
}

/* A spooled destination: the record goes to the journal, and the source is acknowledged once
 * a commit made it durable (relay.c's durable callback), not when the destination has it. */
static int spool_one(struct relay *r, struct relay_route *rt, struct relay_conn *src,
                     const struct mqc_publish *p, struct relay_in_ref ref, struct relay_conn *dc,
                     struct relay_msg *m, uint64_t now_ms)
{
    struct relay_broker *b = rt->to;

    m->conn = (uint16_t)dc->idx;
    if (ref.slot) {
        m->src = src;
        m->ref = ref;
        m->src_epoch = src->s.epoch;
    } else if (b->spool_wait_head && b->spool_wait_bytes + m->len > RELAY_WINDOW_HIGH) {
        free(m); /* QoS 0 while the spool is full and much is waiting: as a window would */
        drop(r, rt, RELAY_DROP_QOS0_OVERFLOW, now_ms, p);
        return 0;
    }
    if (relay_spool_put(b, m) != 0) {
        free(m);
        drop(r, rt, RELAY_DROP_TOO_LARGE, now_ms, p);
        return 0;
    }
    relay_spool_check(b);
    return ref.slot ? 1 : 0;
}

uint32_t relay_route_key(const struct relay_route *rt)
{
    return topic_hash((const uint8_t *)rt->cfg->name, strlen(rt->cfg->name));
}

/* Queues one copy of p along rt. Returns 1 when a message that reports back was queued. */
static int forward_one(struct relay *r, struct relay_route *rt, struct relay_conn *src,
                       const struct mqc_publish *p, struct relay_in_ref ref,
                       struct mqc_bytes path, uint64_t now_ms)
{
    const struct relay_broker_config *dcfg = rt->to->cfg;
    bool src_v5 = src->b->cfg->version == MQC_V5, dst_v5 = dcfg->version == MQC_V5;
    struct mqc_publish out = {0};
    struct relay_conn *dc;
    struct relay_msg *m;
    size_t size, written, pid_off = 0, plen, expiry_at;
    uint32_t expiry;
    bool lost;
    uint8_t *pbuf = r->scratch + 2u * (TOPIC_MAX + 1u);

    /* destination topic */
    if (rt->tpl.identity) {
        out.topic = p->topic;
    } else {
        size_t tlen;

        if (relay_tpl_expand(&rt->tpl, p->topic.p, p->topic.len, r->scratch, TOPIC_MAX,
                             &tlen) != 0) {
            drop(r, rt, RELAY_DROP_BAD_TOPIC, now_ms, p);
            return 0;
        }
        out.topic = (struct mqc_bytes){r->scratch, tlen};
    }
    /* at most the route's subscription QoS (a subscription shared with another route may
     * have been made at a higher one), and at most out_qos */
    out.qos = p->qos < rt->cfg->qos ? p->qos : rt->cfg->qos;
    if (rt->cfg->out_qos >= 0 && (uint8_t)rt->cfg->out_qos < out.qos)
        out.qos = (uint8_t)rt->cfg->out_qos;
    out.retain = rt->cfg->retain == RELAY_RETAIN_KEEP && p->retain;
    out.packet_id = out.qos ? 1 : 0;
    out.payload = p->payload;

    plen = build_props(r, rt, src_v5, dst_v5, &p->props, path, pbuf,
                       r->scratch_cap - 2u * (TOPIC_MAX + 1u), &expiry, &expiry_at, &lost);
    if (plen == SIZE_MAX) {
        drop(r, rt, RELAY_DROP_TOO_LARGE, now_ms, p);
        return 0;
    }
    if (lost && !rt->props_lost_logged) {
        rt->props_lost_logged = true;
        relay_log(r->log, RELAY_LOG_WARN, rt->cfg->name,
                  "MQTT 5 properties are not forwarded to %s (MQTT %s): they are lost on this "
                  "route (said once)",
                  dcfg->name, dcfg->version == MQC_V31 ? "3.1" : "3.1.1");
    }
    out.props = (struct mqc_props){pbuf, plen};

    dc = &rt->to->conns[rt->to->n_conns > 1
                            ? topic_hash(out.topic.p, out.topic.len) % rt->to->n_conns
                            : 0];
    if (mqc_size_publish(&out, dcfg->version, &size) != MQC_OK || size > dc->s.peer_max_packet) {
        drop(r, rt, RELAY_DROP_TOO_LARGE, now_ms, p);
        return 0;
    }
    if (out.qos == 0 && !relay_window_qos0_room(&dc->s.win, size)) {
        drop(r, rt, RELAY_DROP_QOS0_OVERFLOW, now_ms, p);
        return 0;
    }
    m = relay_msg_alloc(r, size);
    if (!m) {
        relay_log_limited(r->log, now_ms, RELAY_LOG_ERROR, rt->cfg->name,
                          "out of memory: message not forwarded (the source will redeliver it)");
        return -1;
    }
    if (mqc_encode_publish(&out, dcfg->version, m->data, size, &written, &pid_off) != MQC_OK) {
        relay_msg_free(r, m);
        drop(r, rt, RELAY_DROP_TOO_LARGE, now_ms, p);
        return 0;
    }
    m->len = (uint32_t)written;
    m->qos = out.qos;
    m->pid_off = out.qos ? (uint32_t)pid_off : 0;
    m->route = rt->index;
    m->t_in_ms = now_ms;
    if (expiry) {
        m->expiry = expiry;
        m->expiry_off = (uint32_t)(written - p->payload.len - plen + expiry_at);
    }
    if (rt->to->spool)
        return spool_one(r, rt, src, p, ref, dc, m, now_ms);
    if (ref.slot) {
        m->src = src;
        m->ref = ref;
        m->src_epoch = src->s.epoch;
    }
    relay_session_enqueue(&dc->s, m, now_ms);
    relay_mark(dc);
    return ref.slot ? 1 : 0;
}

/* One message matched against the tree of routes from its broker. */
struct matched {
    struct relay *r;
    struct relay_conn *src;
    const struct mqc_publish *p;
    struct relay_in_ref ref;
    struct mqc_bytes path;
    bool loop;
    uint64_t now_ms;
    int count;
};

static int on_match(struct relay_route *rt, void *arg)
{
    struct matched *m = arg;
    int n;

    if (!rt->cfg->share && m->src->idx != 0)
        return 0; /* unshared routes subscribe on connection 0 only */
    rt->received++;
    if (m->loop) {
        drop(m->r, rt, RELAY_DROP_LOOP, m->now_ms, m->p);
        return 0;
    }
    n = forward_one(m->r, rt, m->src, m->p, m->ref, m->path, m->now_ms);
    if (n < 0)
        return -1;
    m->count += n;
    return 0;
}

int relay_route_forward(struct relay *r, struct relay_conn *src, const struct mqc_publish *p,
                        struct relay_in_ref ref, uint64_t now_ms)
{
    struct relay_broker *b = src->b;
    bool src_v5 = b->cfg->version == MQC_V5, loop = false, by_id = false;
    struct mqc_bytes path = {NULL, 0};
    int count = 0;

    if (r->stopping && ref.slot)
        return -1; /* shutting down: leave it unacknowledged, the broker redelivers it */
    if (src_v5)
        check_path(r, &p->props, &path, &loop);

    /* MQTT 5 Subscription Identifiers say exactly which routes' subscriptions matched */
    if (src_v5 && src->s.peer_sub_ids) {
        struct mqc_prop prop;
        size_t off = 0;

        while (mqc_props_next(&p->props, &off, &prop) == MQC_OK) {
            struct relay_route *rt;
            int n;

            if (prop.id != MQC_PROP_SUBSCRIPTION_ID || prop.num >= r->n_by_sub_id)
                continue;
            rt = r->by_sub_id[prop.num];
            /* an identifier left in the broker's session by an earlier configuration may now
             * name no route or another one: only a route whose filter matches takes it */
            if (!rt || rt->from != b || rt->sub_head != rt ||
                !mqc_topic_match((const uint8_t *)rt->match, rt->match_len, p->topic.p,
                                 p->topic.len))
                continue;
            by_id = true;
            /* every route sharing this subscription */
            for (; rt; rt = rt->sub_next) {
                rt->received++;
                if (loop) {
                    drop(r, rt, RELAY_DROP_LOOP, now_ms, p);
                    continue;
                }
                n = forward_one(r, rt, src, p, ref, path, now_ms);
                if (n < 0)
                    return -1; /* hold it: the copies already queued go too, then redelivery */
                count += n;
            }
        }
        if (by_id)
            return count;
    }
    struct matched ctx = {r, src, p, ref, path, loop, now_ms, 0};

    if (b->n_from <= FEW_ROUTES) {
        /* a few routes: matching each filter costs less than walking the tree */
        for (size_t i = 0; i < b->n_from; i++) {
            struct relay_route *rt = b->from[i];

            if (mqc_topic_match((const uint8_t *)rt->match, rt->match_len, p->topic.p,
                                p->topic.len) &&
                on_match(rt, &ctx) < 0)
                return -1;
        }
        return ctx.count;
    }
    if (relay_tree_match(b->tree, p->topic.p, p->topic.len, on_match, &ctx) < 0)
        return -1; /* hold it: the copies already queued go too, then a redelivery */
    return ctx.count;
}
