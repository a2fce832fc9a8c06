/*
 * reload.c: SIGHUP. The running relay takes a new configuration without dropping what did not
 * change: routes are compared by what they do, unchanged ones keep their counters, their
 * Subscription Identifier and their subscriptions; the live sessions subscribe what is new and
 * unsubscribe what is gone; a broker whose connection settings changed reconnects with the new
 * ones, keeping its queued messages; new brokers connect. What the running structures cannot
 * take without a restart is refused before anything changes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static const struct relay_broker_config *find_broker(const struct relay_config *cfg,
                                                     const char *name, size_t *idx)
{
    for (size_t i = 0; i < cfg->n_brokers; i++) {
        if (!strcmp(cfg->brokers[i].name, name)) {
            if (idx)
                *idx = i;
            return &cfg->brokers[i];
        }
    }
    return NULL;
}

/* Changes the running structures cannot take: a restart applies them. */
static int check_restart_needed(const struct relay_config *o, const struct relay_config *n,
                                char *err, size_t errlen)
{
    if (!str_eq(o->id, n->id)) {
        snprintf(err, errlen, "relay.id changed (client ids and the loop guard use it)");
        return -EINVAL;
    }
    if (!str_eq(o->metrics_host, n->metrics_host) || o->metrics_port != n->metrics_port) {
        snprintf(err, errlen, "relay.metrics changed (the listener is bound at start)");
        return -EINVAL;
    }
    for (size_t i = 0; i < o->n_brokers; i++) {
        const struct relay_broker_config *ob = &o->brokers[i];
        const struct relay_broker_config *nb = find_broker(n, ob->name, NULL);
        const char *what = NULL;

        if (!nb)
            what = "removed";
        else if (nb->version != ob->version)
            what = "version changed";
        else if (nb->connections != ob->connections)
            what = "connections changed";
        else if (nb->receive_maximum != ob->receive_maximum)
            what = "receive_maximum changed";
        else if (!str_eq(nb->spool.dir, ob->spool.dir) || nb->spool.max_size != ob->spool.max_size)
            what = "spool changed";
        else if (nb->max_packet_size > ob->max_packet_size)
            what = "max_packet_size raised";
        if (what) {
            snprintf(err, errlen, "broker \"%s\": %s", ob->name, what);
            return -EINVAL;
        }
    }
    return 0;
}

/* Settings of a live connection: a change means reconnecting with the new ones. */
static bool link_settings_changed(const struct relay_broker_config *a,
                                  const struct relay_broker_config *b)
{
    if (a->n_urls != b->n_urls)
        return true;
    for (size_t i = 0; i < a->n_urls; i++)
        if (strcmp(a->urls[i].text, b->urls[i].text))
            return true;
    if (!str_eq(a->client_id, b->client_id) || !str_eq(a->username, b->username) ||
        a->password_len != b->password_len ||
        (a->password && b->password && memcmp(a->password, b->password, a->password_len)) ||
        !a->password != !b->password)
        return true;
    if (a->keepalive != b->keepalive || a->clean_start != b->clean_start ||
        a->bridge_bit != b->bridge_bit || a->session_expiry != b->session_expiry ||
        a->max_packet_size != b->max_packet_size || !str_eq(a->status_topic, b->status_topic))
        return true;
    if (a->has_tls != b->has_tls || !str_eq(a->tls.ca_file, b->tls.ca_file) ||
        !str_eq(a->tls.cert_file, b->tls.cert_file) || !str_eq(a->tls.key_file, b->tls.key_file) ||
        a->tls.verify != b->tls.verify || !str_eq(a->tls.server_name, b->tls.server_name))
        return true;
    return false;
}

/* Two routes do the same thing: same brokers (by name), subscription, mapping and modes. */
static bool same_route(const struct relay_config *oc, const struct relay_route_config *a,
                       const struct relay_config *nc, const struct relay_route_config *b)
{
    return !strcmp(a->name, b->name) &&
           !strcmp(oc->brokers[a->from].name, nc->brokers[b->from].name) &&
           !strcmp(oc->brokers[a->to].name, nc->brokers[b->to].name) &&
           !strcmp(a->filter, b->filter) && str_eq(a->share, b->share) &&
           a->ordered == b->ordered && a->qos == b->qos && !strcmp(a->topic, b->topic) &&
           a->out_qos == b->out_qos && a->retain == b->retain && a->properties == b->properties;
}

/* Queued messages name their route by index: follow the renumbering (UINT32_MAX: gone). */
static void remap_messages(struct relay *r, const uint32_t *map, size_t n_old)
{
    for (size_t i = 0; i < r->n_brokers; i++) {
        for (uint32_t j = 0; j < r->brokers[i].n_conns; j++)
            if (r->brokers[i].conns[j].s) /* NULL: a new broker's, not set up yet */
                relay_session_remap_routes(r->brokers[i].conns[j].s, map, n_old);
        /* and what waits outside the sessions: for room in the spool, or in a connection */
        relay_msg_remap_routes(r->brokers[i].feed.wait_head, map, n_old);
        relay_msg_remap_routes(r->brokers[i].feed.next, map, n_old);
    }
}

/* New subscriptions of one existing connection: subscribe what is new, unsubscribe what is
 * gone, leave the rest alone. */
static int resubscribe(struct relay_conn *c)
{
    struct relay_sub *subs;
    size_t n, n_gone = 0;
    bool *fresh;
    const char **gone;
    int rc;

    if (relay_routes_subs(c, &subs, &n) != 0)
        return -ENOMEM;
    fresh = calloc(n ? n : 1, sizeof(*fresh));
    gone = calloc(c->n_subs ? c->n_subs : 1, sizeof(*gone));
    if (!fresh || !gone) {
        free(subs);
        free(fresh);
        free(gone);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        fresh[i] = true;
        for (size_t k = 0; k < c->n_subs; k++)
            if (!strcmp(subs[i].filter, c->subs[k].filter) &&
                subs[i].options == c->subs[k].options && subs[i].sub_id == c->subs[k].sub_id)
                fresh[i] = false;
    }
    for (size_t k = 0; k < c->n_subs; k++) {
        bool kept = false;

        for (size_t i = 0; i < n; i++)
            kept |= !strcmp(subs[i].filter, c->subs[k].filter);
        if (!kept)
            gone[n_gone++] = c->subs[k].filter; /* still valid: the old route is freed later */
    }
    rc = relay_session_change_subs(c->s, subs, n, fresh, gone, n_gone);
    free(c->subs);
    c->subs = subs;
    c->n_subs = n;
    free(fresh);
    free(gone);
    relay_mark(c);
    return rc;
}

static void free_new_brokers(struct relay_broker *nb, size_t n, const bool *existing,
                             uint64_t now_ms)
{
    for (size_t i = 0; i < n; i++)
        if (!existing[i])
            relay_broker_cleanup(&nb[i], now_ms);
    free(nb);
}

int relay_reload(struct relay *r, const struct relay_config *ncfg, uint64_t now_ms, char *err,
                 size_t errlen)
{
    const struct relay_config *ocfg = r->cfg;
    size_t nbn = ncfg->n_brokers ? ncfg->n_brokers : 1;
    struct relay_broker *nb = calloc(nbn, sizeof(*nb));
    bool *restart = calloc(nbn, sizeof(*restart)), *existing = calloc(nbn, sizeof(*existing));
    uint32_t *map = calloc(r->n_routes ? r->n_routes : 1, sizeof(*map));
    struct relay_route *nroutes = NULL, *oroutes = r->routes;
    size_t n_nroutes = 0, n_old_routes = r->n_routes;
    size_t added = 0, kept = 0, reconnecting = 0, new_brokers = 0;
    int rc;

    if (!nb || !restart || !existing || !map) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto refuse;
    }
    rc = check_restart_needed(ocfg, ncfg, err, errlen);
    if (rc)
        goto refuse;

    /* 1. everything that can fail, before anything running changes: the new brokers (their
     * spools opened), and the routes built over the new broker array */
    for (size_t i = 0; i < ncfg->n_brokers; i++) {
        size_t j;

        if (find_broker(ocfg, ncfg->brokers[i].name, &j)) {
            nb[i] = r->brokers[j]; /* its connections and spool stay where they are */
            existing[i] = true;
            restart[i] = link_settings_changed(r->brokers[j].cfg, &ncfg->brokers[i]);
            nb[i].cfg = &ncfg->brokers[i];
            nb[i].index = (uint32_t)i;
            nb[i].from = NULL;
            nb[i].feeds = NULL;
            nb[i].tree = NULL;
            nb[i].n_from = nb[i].n_feeds = 0;
        } else {
            new_brokers++;
            rc = relay_broker_init(r, &nb[i], &ncfg->brokers[i], (uint32_t)i, err, errlen);
            if (rc)
                goto refuse_brokers;
        }
    }
    rc = relay_routes_build(nb, ncfg, &nroutes, &n_nroutes, err, errlen);
    if (rc)
        goto refuse_brokers;
    for (size_t k = 0; k < n_old_routes; k++)
        map[k] = UINT32_MAX;
    for (size_t i = 0; i < n_nroutes; i++) {
        struct relay_route *nr = &nroutes[i];

        for (size_t k = 0; k < n_old_routes && !nr->sub_id; k++) {
            const struct relay_route *orr = &oroutes[k];

            if (map[k] != UINT32_MAX || !same_route(ocfg, orr->cfg, ncfg, nr->cfg))
                continue;
            nr->stats = orr->stats;
            nr->sub_id = orr->sub_id;
            map[k] = (uint32_t)i;
            kept++;
        }
    }
    for (size_t i = 0; i < n_nroutes; i++) {
        if (!nroutes[i].sub_id) {
            nroutes[i].sub_id = ++r->next_sub_id;
            added++;
        }
    }

    /* 2. the swap: brokers, routes, configuration */
    for (size_t i = 0; i < r->n_brokers; i++) {
        free(r->brokers[i].from);
        free(r->brokers[i].feeds);
        relay_tree_free(r->brokers[i].tree);
    }
    free(r->brokers);
    r->brokers = nb;
    r->n_brokers = ncfg->n_brokers;
    for (size_t i = 0; i < r->n_brokers; i++) {
        for (uint32_t j = 0; existing[i] && j < r->brokers[i].n_conns; j++) {
            r->brokers[i].conns[j].b = &r->brokers[i];
            if (r->brokers[i].conns[j].probe)
                r->brokers[i].conns[j].probe->b = &r->brokers[i];
        }
    }
    remap_messages(r, map, n_old_routes);
    r->routes = nroutes;
    r->n_routes = n_nroutes;
    r->cfg = ncfg;
    r->log->level = ncfg->log_level;
    relay_log_set_format(r->log, ncfg->log_format);
    if (relay_routes_link(r) != 0 || relay_index_conns(r) != 0 || relay_scratch_init(r, ncfg) != 0)
        goto late_nomem;

    /* 3. connections: new settings and subscriptions; reconnect where the link settings
     * changed; new brokers connect */
    for (size_t i = 0; i < r->n_brokers; i++) {
        struct relay_broker *b = &r->brokers[i];

        if (!existing[i]) {
            if (relay_broker_init_conns(b) != 0)
                goto late_nomem;
            for (uint32_t j = 0; j < b->n_conns; j++)
                relay_conn_connect(&b->conns[j], now_ms);
            continue;
        }
        for (uint32_t j = 0; j < b->n_conns; j++) {
            struct relay_conn *c = &b->conns[j];

            if (restart[i]) {
                size_t idcap = strlen(b->cfg->client_id) + 16u;
                char *id = malloc(idcap);

                if (!id || relay_broker_client_id(b->cfg, j, id, idcap) < 0) {
                    free(id);
                    goto late_nomem;
                }
                free(c->client_id);
                c->client_id = id;
            }
            relay_conn_fill_scfg(c);
            relay_session_reconfigure(c->s, now_ms);
            if (resubscribe(c) != 0)
                goto late_nomem;
            if (restart[i]) {
                relay_conn_restart(c, "new settings", now_ms);
                reconnecting++;
            }
        }
    }
    relay_routes_free(oroutes, n_old_routes); /* the gone filters above pointed into them */
    snprintf(err, errlen,
             "configuration reloaded: %zu routes (%zu unchanged, %zu new, %zu gone), "
             "%zu new brokers, %zu connections reconnecting with new settings",
             n_nroutes, kept, added, n_old_routes - kept, new_brokers, reconnecting);
    relay_log(r->log, RELAY_LOG_INFO, NULL, "%s", err);
    free(map);
    free(restart);
    free(existing);
    relay_flush(r, now_ms);
    return 0;

late_nomem:
    /* past the swap there is no way back; what runs is consistent, some parts are missing */
    snprintf(err, errlen, "out of memory while applying the new configuration");
    relay_log(r->log, RELAY_LOG_ERROR, NULL, "%s: some routes or brokers may be missing", err);
    free(map);
    free(restart);
    free(existing);
    return -ENOMEM;
refuse_brokers:
    relay_routes_free(nroutes, n_nroutes);
    free_new_brokers(nb, ncfg->n_brokers, existing, now_ms);
    nb = NULL;
refuse:
    free(nb);
    free(restart);
    free(existing);
    free(map);
    return rc;
}
