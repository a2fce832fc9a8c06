/*
 * routes.c: the routes as they run: built from the configuration over the brokers, indexed per
 * source broker (the routes reading from it, by filter in a tree, and the brokers it feeds),
 * and what each connection subscribes because of them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "route/route.h"

int relay_routes_build(struct relay_broker *brokers, const struct relay_config *cfg,
                       struct relay_route **out, size_t *n_out, char *err, size_t errlen)
{
    struct relay_route *routes = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof(*routes));

    *out = NULL;
    *n_out = 0;
    if (!routes)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        struct relay_route *rt = &routes[i];
        const struct relay_route_config *rc = &cfg->routes[i];
        char sub[RELAY_TOPIC_MAX + 1];

        rt->cfg = rc;
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
    cap = RELAY_MAP_SCRATCH(max_packet);
    if (cap <= r->scratch_cap)
        return 0;
    p = realloc(r->scratch, cap);
    if (!p)
        return -ENOMEM;
    r->scratch = p;
    r->scratch_cap = cap;
    return 0;
}

static int add_ptr(void ***arr, size_t *n, void *p)
{
    void **a = realloc(*arr, (*n + 1) * sizeof(*a));

    if (!a)
        return -ENOMEM;
    a[(*n)++] = p;
    *arr = a;
    return 0;
}

/* rt joins the first route of its broker subscribing the same filter, if any. */
static void share_subscription(struct relay_route *rt)
{
    const struct relay_broker *f = rt->from;

    rt->sub_head = rt;
    rt->sub_next = NULL;
    for (size_t k = 0; k < f->n_from; k++) {
        struct relay_route *x = f->from[k];

        if (x->sub_head == x && !strcmp(x->sub_filter, rt->sub_filter)) {
            rt->sub_head = x;
            while (x->sub_next)
                x = x->sub_next;
            x->sub_next = rt;
            return;
        }
    }
}

int relay_routes_link(struct relay *r)
{
    uint32_t max_id = 0;

    for (size_t i = 0; i < r->n_brokers; i++) {
        struct relay_broker *b = &r->brokers[i];

        free(b->from);
        free(b->feeds);
        relay_tree_free(b->tree);
        b->from = NULL;
        b->feeds = NULL;
        b->tree = NULL;
        b->n_from = b->n_feeds = 0;
    }
    for (size_t i = 0; i < r->n_routes; i++) {
        struct relay_route *rt = &r->routes[i];
        struct relay_broker *f = rt->from;
        bool known = false;

        share_subscription(rt);
        if (add_ptr((void ***)&f->from, &f->n_from, rt) ||
            relay_tree_add(&f->tree, rt->match, rt->match_len, rt))
            return -ENOMEM;
        for (size_t k = 0; k < f->n_feeds; k++)
            known |= f->feeds[k] == rt->to;
        if (!known && add_ptr((void ***)&f->feeds, &f->n_feeds, rt->to))
            return -ENOMEM;
        if (rt->sub_id > max_id)
            max_id = rt->sub_id;
    }
    for (size_t i = 0; i < r->n_brokers; i++)
        if (relay_feed_index_routes(r, &r->brokers[i]) != 0)
            return -ENOMEM;
    free(r->by_sub_id);
    r->by_sub_id = calloc(max_id + 1u, sizeof(*r->by_sub_id));
    if (!r->by_sub_id)
        return -ENOMEM;
    r->n_by_sub_id = max_id + 1u;
    for (size_t i = 0; i < r->n_routes; i++)
        r->by_sub_id[r->routes[i].sub_id] = &r->routes[i];
    return 0;
}

int relay_routes_subs(const struct relay_conn *c, struct relay_sub **out, size_t *n_out)
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
