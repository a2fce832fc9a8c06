/*
 * forward.c: the life of one message, top to bottom.
 *
 *   1. a PUBLISH arrives on a source connection (relay_forward, the session's publish hook);
 *   2. the routes from that broker that take it: by MQTT 5 Subscription Identifier, or by
 *      filter (a few routes one by one, many through the tree);
 *   3. the loop guard reads its relay-path (route/loopguard.c);
 *   4. each route maps it: topic, QoS, retain, properties (route/route.c);
 *   5. the pool connection by topic hash, one encoding of the outgoing PUBLISH;
 *   6. into that connection's queue, or into the destination's spool (spoolfeed.c);
 *   7. the destination acknowledges it, or drops it (relay_forward_done, the done hook): the
 *      route counts it, and the source is acknowledged once every destination has finished.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "route/loopguard.h"
#include "route/route.h"

#define FEW_ROUTES 4u /* up to this many routes from a broker, no tree walk */

uint32_t relay_route_key(const struct relay_route *rt)
{
    return relay_hash(rt->cfg->name, strlen(rt->cfg->name));
}

void relay_route_drop(struct relay *r, struct relay_route *rt, enum relay_drop why, uint64_t now_ms,
                      const struct mqc_publish *p)
{
    rt->stats.dropped[why]++;
    if (why == RELAY_DROP_LOOP)
        return; /* the loop guard doing its job: counted, not logged */
    relay_log_field(r->log, "route", rt->cfg->name);
    relay_log_field(r->log, "reason", relay_drop_name(why));
    relay_log_limited(r->log, now_ms, RELAY_LOG_WARN, rt->cfg->name,
                      "message on \"%.*s\" dropped (%s)",
                      (int)(p->topic.len > 200 ? 200 : p->topic.len), (const char *)p->topic.p,
                      relay_drop_name(why));
}

/* One received message on its way along one route. */
struct arrival {
    struct relay *r;
    struct relay_conn *src;
    const struct mqc_publish *p;
    struct relay_in_ref ref;
    struct mqc_bytes path; /* its relay-path */
    bool loop;             /* the loop guard says no */
    uint64_t now_ms;
    int count; /* copies queued that report back */
};

/* Steps 4-6 for one route. Returns 1 when a copy that reports back was queued, 0 when none
 * was (dropped, or QoS 0), -1 when out of memory (the message is held: redelivered). */
static int forward_one(struct arrival *a, struct relay_route *rt)
{
    struct relay *r = a->r;
    const struct mqc_publish *p = a->p;
    const struct relay_broker_config *dcfg = rt->to->cfg;
    const struct relay_map_rule rule = {
        .tpl = &rt->tpl,
        .sub_qos = rt->cfg->qos,
        .out_qos = rt->cfg->out_qos,
        .keep_retain = rt->cfg->retain == RELAY_RETAIN_KEEP,
        .forward_props = rt->cfg->properties == RELAY_PROPS_FORWARD,
    };
    struct relay_map_out o;
    struct relay_conn *dc;
    struct relay_msg *m;
    size_t size, written, pid_off = 0;
    int rc;

    rc = relay_map(&rule, p, a->src->b->cfg->version == MQC_V5, dcfg->version == MQC_V5, a->path,
                   r->cfg->id, r->scratch, r->scratch_cap, &o);
    if (rc) {
        relay_route_drop(r, rt, rc == -EINVAL ? RELAY_DROP_BAD_TOPIC : RELAY_DROP_TOO_LARGE,
                         a->now_ms, p);
        return 0;
    }
    if (o.props_lost && !rt->stats.props_lost_logged) {
        rt->stats.props_lost_logged = true;
        relay_log_field(r->log, "route", rt->cfg->name);
        relay_log(r->log, RELAY_LOG_WARN, rt->cfg->name,
                  "MQTT 5 properties are not forwarded to %s (MQTT %s): they are lost on this "
                  "route (said once)",
                  dcfg->name, dcfg->version == MQC_V31 ? "3.1" : "3.1.1");
    }
    dc = &rt->to->conns[rt->to->n_conns > 1
                            ? relay_hash(o.pub.topic.p, o.pub.topic.len) % rt->to->n_conns
                            : 0];
    if (mqc_size_publish(&o.pub, dcfg->version, &size) != MQC_OK ||
        size > relay_session_max_packet(dc->s)) {
        relay_route_drop(r, rt, RELAY_DROP_TOO_LARGE, a->now_ms, p);
        return 0;
    }
    if (o.pub.qos == 0 && !relay_session_qos0_room(dc->s, size)) {
        relay_route_drop(r, rt, RELAY_DROP_QOS0_OVERFLOW, a->now_ms, p);
        return 0;
    }
    m = relay_msg_alloc(&r->pool, size);
    if (!m) {
        relay_log_field(r->log, "route", rt->cfg->name);
        relay_log_limited(r->log, a->now_ms, RELAY_LOG_ERROR, rt->cfg->name,
                          "out of memory: message not forwarded (the source will redeliver it)");
        return -1;
    }
    if (mqc_encode_publish(&o.pub, dcfg->version, m->data, size, &written, &pid_off) != MQC_OK) {
        relay_msg_free(&r->pool, m);
        relay_route_drop(r, rt, RELAY_DROP_TOO_LARGE, a->now_ms, p);
        return 0;
    }
    m->len = (uint32_t)written;
    m->qos = o.pub.qos;
    m->pid_off = o.pub.qos ? (uint32_t)pid_off : 0;
    m->route = rt->index;
    m->t_in_ms = a->now_ms;
    m->conn = (uint16_t)dc->idx;
    if (o.expiry) {
        m->expiry = o.expiry;
        m->expiry_off = (uint32_t)(written - p->payload.len - o.pub.props.len + o.expiry_at);
    }
    if (a->ref.slot) {
        m->src = a->src;
        m->ref = a->ref;
        m->src_epoch = relay_session_epoch(a->src->s);
    }
    if (rt->to->feed.spooling) /* spool = "auto" across a long round trip, or always */
        return relay_feed_put(r, rt, m, p, a->now_ms);
    relay_session_enqueue(dc->s, m, a->now_ms);
    relay_mark(dc);
    return a->ref.slot ? 1 : 0;
}

/* A route whose filter matched. */
static int on_match(void *item, void *arg)
{
    struct relay_route *rt = item;
    struct arrival *a = arg;
    int n;

    if (!rt->cfg->share && a->src->idx != 0)
        return 0; /* unshared routes subscribe on connection 0 only */
    rt->stats.received++;
    relay_hist_add(&rt->stats.rate_in, a->now_ms, 1);
    if (a->loop) {
        relay_route_drop(a->r, rt, RELAY_DROP_LOOP, a->now_ms, a->p);
        return 0;
    }
    n = forward_one(a, rt);
    if (n < 0)
        return -1; /* hold it: the copies already queued go too, then a redelivery */
    a->count += n;
    return 0;
}

/* MQTT 5 Subscription Identifiers say exactly which routes' subscriptions matched. Returns
 * true when they named a route (a->count and the routes done), false to match by filter. */
static bool by_sub_id(struct arrival *a, int *rc)
{
    struct relay *r = a->r;
    struct relay_broker *b = a->src->b;
    struct mqc_prop prop;
    size_t off = 0;
    bool named = false;

    *rc = 0;
    while (mqc_props_next(&a->p->props, &off, &prop) == MQC_OK) {
        struct relay_route *rt;

        if (prop.id != MQC_PROP_SUBSCRIPTION_ID || prop.num >= r->n_by_sub_id)
            continue;
        rt = r->by_sub_id[prop.num];
        /* an identifier left in the broker's session by an earlier configuration may now name
         * no route or another one: only a route whose filter matches takes it */
        if (!rt || rt->from != b || rt->sub_head != rt ||
            !mqc_topic_match((const uint8_t *)rt->match, rt->match_len, a->p->topic.p,
                             a->p->topic.len))
            continue;
        named = true;
        for (; rt; rt = rt->sub_next) /* every route sharing this subscription */
            if ((*rc = on_match(rt, a)) < 0)
                return true;
    }
    return named;
}

int relay_forward(struct relay_session *s, const struct mqc_publish *p, struct relay_in_ref ref,
                  uint64_t now_ms)
{
    struct relay_conn *src = relay_session_owner(s);
    struct relay *r = src->r;
    struct relay_broker *b = src->b;
    bool src_v5 = b->cfg->version == MQC_V5;
    struct arrival a = {r, src, p, ref, {NULL, 0}, false, now_ms, 0};
    int rc;

    if (r->stopping && ref.slot)
        return -1; /* shutting down: leave it unacknowledged, the broker redelivers it */
    if (src_v5)
        a.loop = relay_loop_seen(&p->props, r->cfg->id, r->cfg->max_hops, &a.path);
    if (src_v5 && relay_session_sub_ids(s) && by_sub_id(&a, &rc))
        return rc < 0 ? -1 : a.count;
    if (b->n_from <= FEW_ROUTES) {
        /* a few routes: matching each filter costs less than walking the tree */
        for (size_t i = 0; i < b->n_from; i++) {
            struct relay_route *rt = b->from[i];

            if (mqc_topic_match((const uint8_t *)rt->match, rt->match_len, p->topic.p,
                                p->topic.len) &&
                on_match(rt, &a) < 0)
                return -1;
        }
        return a.count;
    }
    if (relay_tree_match(b->tree, p->topic.p, p->topic.len, on_match, &a) < 0)
        return -1;
    return a.count;
}

void relay_forward_done(struct relay_session *s, struct relay_msg *m, int drop_reason,
                        uint64_t now_ms)
{
    struct relay_conn *c = relay_session_owner(s);
    struct relay *r = c->r;

    if (m->route < r->n_routes) {
        struct relay_route *rt = &r->routes[m->route];

        if (drop_reason < 0) {
            rt->stats.forwarded++;
            relay_hist_add(&rt->stats.rate_out, now_ms, 1);
            relay_latency_observe(r, now_ms - m->t_in_ms);
        } else {
            rt->stats.dropped[drop_reason]++;
            /* the destination's refusals (rejected and the reasons after it) were logged by
             * the session, with the reason code */
            if (drop_reason < RELAY_DROP_REJECTED) {
                relay_log_field(r->log, "route", rt->cfg->name);
                relay_log_field(r->log, "reason", relay_drop_name((enum relay_drop)drop_reason));
                relay_log_limited(r->log, now_ms, RELAY_LOG_WARN, c->who,
                                  "message for route %s dropped (%s)", rt->cfg->name,
                                  relay_drop_name((enum relay_drop)drop_reason));
            }
        }
    }
    if (m->src) {
        relay_session_in_done(m->src->s, m->ref, now_ms);
        relay_mark(m->src);
    }
    if (m->spool_seq && c->b->feed.spool)
        relay_feed_delivered(c->b, m->spool_seq, now_ms);
    relay_msg_free(&r->pool, m);
}
