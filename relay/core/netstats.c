/*
 * netstats.c: what the transport tells the core about a broker's links besides their bytes
 * (core/io.h): how name lookups went and how long they took, TLS handshakes (full or resumed),
 * and when the client certificate expires. Counted per broker for /metrics; the certificate's
 * expiry is also warned about in the log, from 14 days before, once a day.
 */
#include <inttypes.h>
#include <stdio.h>

#include "core/internal.h"

#define DAY_S 86400
#define WARN_BEFORE_S (14 * DAY_S)
#define WARN_EVERY_MS (24u * 3600u * 1000u)

const double relay_dns_bounds[RELAY_DNS_BUCKETS] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
                                                    1,     2.5,   5,    10,   30};

void relay_core_dns_result(struct relay_conn *c, bool ok, uint32_t ms, uint64_t now_ms)
{
    struct relay_net_stats *n = &c->b->net;
    size_t i = 0;

    (void)now_ms;
    n->dns_lookups++;
    n->dns_sum_ms += ms;
    if (!ok)
        n->dns_failures++;
    while (i < RELAY_DNS_BUCKETS && ms > relay_dns_bounds[i] * 1000.0)
        i++;
    if (i < RELAY_DNS_BUCKETS)
        n->dns_buckets[i]++;
}

void relay_core_tls_handshake(struct relay_conn *c, bool resumed)
{
    if (resumed)
        c->b->net.tls_resumed++;
    else
        c->b->net.tls_full++;
}

static int64_t wall_s(const struct relay *r, uint64_t now_ms)
{
    return ((int64_t)now_ms + r->wall_offset_ms) / 1000;
}

/* A WARN when b's certificate expires within 14 days (ERROR once expired), at most once a day
 * per certificate. */
static void check_expiry(struct relay *r, struct relay_broker *b, uint64_t now_ms)
{
    struct relay_net_stats *n = &b->net;
    int64_t left;

    if (!n->cert_not_after)
        return;
    left = n->cert_not_after - wall_s(r, now_ms);
    if (left > WARN_BEFORE_S)
        return;
    if (n->cert_warned_for == n->cert_not_after && n->cert_warned_ms &&
        now_ms - n->cert_warned_ms < WARN_EVERY_MS)
        return;
    const char *file = b->cfg->tls.cert_file;

    n->cert_warned_for = n->cert_not_after;
    n->cert_warned_ms = now_ms ? now_ms : 1;
    if (left <= 0)
        relay_log(r->log, RELAY_LOG_ERROR, b->cfg->name,
                  "the TLS client certificate%s%s expired %.1f days ago: renew it (the relay "
                  "reads it again at every reconnect)",
                  file ? " " : "", file ? file : "", (double)-left / DAY_S);
    else
        relay_log(r->log, RELAY_LOG_WARN, b->cfg->name,
                  "the TLS client certificate%s%s expires in %.1f days: renew it (the relay reads "
                  "it again at every reconnect, and on SIGHUP)",
                  file ? " " : "", file ? file : "", (double)left / DAY_S);
}

void relay_core_tls_cert(struct relay_conn *c, int64_t not_after, uint64_t now_ms)
{
    c->b->net.cert_not_after = not_after;
    check_expiry(c->r, c->b, now_ms);
}

void relay_netstats_tick(struct relay *r, uint64_t now_ms)
{
    for (size_t i = 0; i < r->n_brokers; i++)
        check_expiry(r, &r->brokers[i], now_ms);
}

void relay_netstats_start(struct relay *r)
{
    for (size_t i = 0; i < r->n_brokers; i++) {
        const struct relay_broker_config *bc = r->brokers[i].cfg;

        if (bc->tls.keylog_file)
            relay_log(r->log, RELAY_LOG_WARN, bc->name,
                      "tls.keylog_file: the TLS session keys of this broker's links are written "
                      "to %s: whoever can read it can decrypt their traffic (for debugging only)",
                      bc->tls.keylog_file);
    }
}

static bool has_tls_url(const struct relay_broker_config *bc)
{
    for (size_t i = 0; i < bc->n_urls; i++)
        if (bc->urls[i].scheme == RELAY_MQTTS || bc->urls[i].scheme == RELAY_WSS)
            return true;
    return false;
}

void relay_netstats_render(FILE *f, const struct relay *r, uint64_t now_ms)
{
    bool any;

    fprintf(f, "# HELP mqtt_relay_dns_failures_total Name lookups of a broker's (or its proxy's) "
               "host that failed or gave no address.\n"
               "# TYPE mqtt_relay_dns_failures_total counter\n");
    for (size_t i = 0; i < r->n_brokers; i++)
        fprintf(f, "mqtt_relay_dns_failures_total{broker=\"%s\"} %" PRIu64 "\n",
                r->brokers[i].cfg->name, r->brokers[i].net.dns_failures);
    fprintf(f, "# HELP mqtt_relay_dns_lookup_seconds How long name lookups took (off the event "
               "loop), failed ones included.\n"
               "# TYPE mqtt_relay_dns_lookup_seconds histogram\n");
    for (size_t i = 0; i < r->n_brokers; i++) {
        const struct relay_net_stats *n = &r->brokers[i].net;
        const char *name = r->brokers[i].cfg->name;
        uint64_t cum = 0;

        for (size_t k = 0; k < RELAY_DNS_BUCKETS; k++) {
            cum += n->dns_buckets[k];
            fprintf(f,
                    "mqtt_relay_dns_lookup_seconds_bucket{broker=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                    name, relay_dns_bounds[k], cum);
        }
        fprintf(f,
                "mqtt_relay_dns_lookup_seconds_bucket{broker=\"%s\",le=\"+Inf\"} %" PRIu64 "\n"
                "mqtt_relay_dns_lookup_seconds_sum{broker=\"%s\"} %.3f\n"
                "mqtt_relay_dns_lookup_seconds_count{broker=\"%s\"} %" PRIu64 "\n",
                name, n->dns_lookups, name, (double)n->dns_sum_ms / 1000.0, name, n->dns_lookups);
    }
    any = false;
    for (size_t i = 0; i < r->n_brokers; i++) {
        const struct relay_net_stats *n = &r->brokers[i].net;

        if (!has_tls_url(r->brokers[i].cfg))
            continue;
        if (!any)
            fprintf(f, "# HELP mqtt_relay_tls_handshakes_total TLS handshakes completed, by "
                       "whether an earlier session was resumed.\n"
                       "# TYPE mqtt_relay_tls_handshakes_total counter\n");
        any = true;
        fprintf(f,
                "mqtt_relay_tls_handshakes_total{broker=\"%s\",resumed=\"false\"} %" PRIu64 "\n"
                "mqtt_relay_tls_handshakes_total{broker=\"%s\",resumed=\"true\"} %" PRIu64 "\n",
                r->brokers[i].cfg->name, n->tls_full, r->brokers[i].cfg->name, n->tls_resumed);
    }
    any = false;
    for (size_t i = 0; i < r->n_brokers; i++) {
        const struct relay_net_stats *n = &r->brokers[i].net;

        if (!n->cert_not_after)
            continue;
        if (!any)
            fprintf(f, "# HELP mqtt_relay_tls_cert_expiry_seconds Seconds until the TLS client "
                       "certificate a broker's links present expires (negative: expired).\n"
                       "# TYPE mqtt_relay_tls_cert_expiry_seconds gauge\n");
        any = true;
        fprintf(f, "mqtt_relay_tls_cert_expiry_seconds{broker=\"%s\"} %" PRId64 "\n",
                r->brokers[i].cfg->name, n->cert_not_after - wall_s(r, now_ms));
    }
}
