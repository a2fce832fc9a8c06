/* metrics.c: the counters' Prometheus text (GET /metrics) and the health answer (/healthz).
 * The counters live in the relay's own structures; this file only reads them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/internal.h"

const double relay_latency_bounds[RELAY_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* The bounds in half milliseconds, for an integer search on the hot path; the counts are
 * per bucket and made cumulative when rendered. */
static const uint32_t bounds_half_ms[RELAY_LATENCY_BUCKETS] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000};

void relay_latency_observe(struct relay *r, uint64_t ms)
{
    uint64_t h = ms * 2u;
    size_t i = 0;

    r->stats.latency_count++;
    r->stats.latency_sum_ms += ms;
    while (i < RELAY_LATENCY_BUCKETS && h > bounds_half_ms[i])
        i++;
    if (i < RELAY_LATENCY_BUCKETS)
        r->stats.latency_buckets[i]++;
}

bool relay_healthy(const struct relay *r)
{
    for (size_t i = 0; i < r->n_brokers; i++)
        if (!relay_broker_up(&r->brokers[i]))
            return false;
    return true;
}

/* A label value with \, " and newline escaped as the text format requires. */
static void label(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f);
        if (*s == '\n') {
            fputs("\\n", f);
            continue;
        }
        fputc(*s, f);
    }
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void route_counter(FILE *f, const struct relay *r, const char *name, const char *help,
                          int which)
{
    head(f, name, "counter", help);
    for (size_t i = 0; i < r->n_routes; i++) {
        const struct relay_route *rt = &r->routes[i];
        const struct relay_broker *b = which ? rt->to : rt->from;

        fprintf(f, "%s{route=\"", name);
        label(f, rt->cfg->name);
        fprintf(f, "\",broker=\"%s\"} %llu\n", b->cfg->name,
                (unsigned long long)(which ? rt->stats.forwarded : rt->stats.received));
    }
}

typedef double (*conn_value)(const struct relay_conn *c);

static double v_inflight(const struct relay_conn *c)
{
    return relay_session_unacked(c->s);
}
static double v_queued(const struct relay_conn *c)
{
    return (double)relay_session_queued_bytes(c->s);
}
static double v_up(const struct relay_conn *c)
{
    return relay_conn_up(c) ? 1 : 0;
}
static double v_reconnects(const struct relay_conn *c)
{
    return (double)c->stats.reconnects;
}
static double v_sent(const struct relay_conn *c)
{
    return (double)c->stats.bytes_sent;
}
static double v_received(const struct relay_conn *c)
{
    return (double)c->stats.bytes_received;
}
static double v_paused(const struct relay_conn *c)
{
    return c->rx_paused ? 1 : 0;
}

static double v_rtt(const struct relay_conn *c)
{
    return relay_rtt_smoothed(relay_session_rtt(c->s)) / 1000.0;
}
static double v_rtt_base(const struct relay_conn *c)
{
    return relay_rtt_base(relay_session_rtt(c->s)) / 1000.0;
}
static double v_window(const struct relay_conn *c)
{
    return relay_session_window_limit(c->s);
}

static void conn_metric(FILE *f, const struct relay *r, const char *name, const char *type,
                        const char *help, conn_value v)
{
    head(f, name, type, help);
    for (size_t i = 0; i < r->n_brokers; i++)
        for (uint32_t j = 0; j < r->brokers[i].n_conns; j++)
            fprintf(f, "%s{broker=\"%s\",conn=\"%u\"} %.17g\n", name, r->brokers[i].cfg->name, j,
                    v(&r->brokers[i].conns[j]));
}

/* The pace of each connection (session/rate.h): its limit now, and the signals that lowered
 * it, by kind. */
static double v_pace(const struct relay_conn *c)
{
    return (double)relay_pace_limit(&c->pace);
}

static void pace_metrics(FILE *f, const struct relay *r)
{
    conn_metric(f, r, "mqtt_relay_pace_messages_per_second", "gauge",
                "Most PUBLISHes this connection may send in any one-second window now "
                "(rate_limit.messages or what the broker's signals taught it; 0 = no limit).",
                v_pace);
    head(f, "mqtt_relay_pace_signals_total", "counter",
         "Signals from the broker that lowered the connection's pace (DISCONNECT/PUBACK reason "
         "codes, a missing acknowledgement at MQTT 3.x).");
    for (size_t i = 0; i < r->n_brokers; i++)
        for (uint32_t j = 0; j < r->brokers[i].n_conns; j++)
            for (int k = 0; k < RELAY_PACE_SIG__COUNT; k++)
                fprintf(
                    f,
                    "mqtt_relay_pace_signals_total{broker=\"%s\",conn=\"%u\",signal=\"%s\"} %llu\n",
                    r->brokers[i].cfg->name, j, relay_pace_signal_name((enum relay_pace_signal)k),
                    (unsigned long long)r->brokers[i].conns[j].pace.signals[k]);
}

static void spool_metrics(FILE *f, const struct relay *r, uint64_t now)
{
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"mqtt_relay_spool_bytes", "gauge", "Journal bytes held for a spooled broker."},
        {"mqtt_relay_spool_messages", "gauge", "Spooled messages not yet delivered."},
        {"mqtt_relay_spool_oldest_age_seconds", "gauge", "Age of the oldest spooled message."},
        {"mqtt_relay_spool_fsyncs_total", "counter", "Group commits (one fsync each)."},
        {"mqtt_relay_spool_write_errors_total", "counter", "Failed journal writes (retried)."},
    };
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        bool any = false;

        for (size_t i = 0; i < r->n_brokers; i++) {
            struct relay_spool_stats st;
            double v;

            if (!r->brokers[i].feed.spool)
                continue;
            if (!any)
                head(f, m[k].name, m[k].type, m[k].help);
            any = true;
            relay_spool_stats(r->brokers[i].feed.spool, &st);
            v = k == 0   ? (double)st.bytes
                : k == 1 ? (double)st.messages
                : k == 2
                    ? (st.oldest_ms && now > st.oldest_ms ? (double)(now - st.oldest_ms) / 1000.0
                                                          : 0.0)
                : k == 3 ? (double)st.fsyncs
                         : (double)st.write_errors;
            fprintf(f, "%s{broker=\"%s\"} %.17g\n", m[k].name, r->brokers[i].cfg->name, v);
        }
    }
}

int relay_metrics_render(const struct relay *r, uint64_t now_ms, char **body, size_t *len)
{
    FILE *f = open_memstream(body, len);

    if (!f)
        return -ENOMEM;
    route_counter(f, r, "mqtt_relay_messages_received_total",
                  "Messages received from the source broker, per route.", 0);
    route_counter(f, r, "mqtt_relay_messages_forwarded_total",
                  "Messages delivered to the destination broker (acknowledged for QoS 1/2).", 1);
    head(f, "mqtt_relay_messages_dropped_total", "counter",
         "Messages not forwarded, per route and reason.");
    for (size_t i = 0; i < r->n_routes; i++) {
        for (int d = 0; d < RELAY_DROP__COUNT; d++) {
            fputs("mqtt_relay_messages_dropped_total{route=\"", f);
            label(f, r->routes[i].cfg->name);
            fprintf(f, "\",reason=\"%s\"} %llu\n", relay_drop_name((enum relay_drop)d),
                    (unsigned long long)r->routes[i].stats.dropped[d]);
        }
    }
    conn_metric(f, r, "mqtt_relay_inflight", "gauge",
                "PUBLISHes sent to the broker and not yet acknowledged.", v_inflight);
    conn_metric(f, r, "mqtt_relay_queued_bytes", "gauge",
                "Bytes of messages waiting for this connection (sent or not, unacknowledged).",
                v_queued);
    conn_metric(f, r, "mqtt_relay_connection_up", "gauge",
                "1 when the connection is up (CONNACK received).", v_up);
    conn_metric(f, r, "mqtt_relay_rx_paused", "gauge",
                "1 while reading from this connection is paused (backpressure).", v_paused);
    conn_metric(f, r, "mqtt_relay_reconnects_total", "counter",
                "Links lost after being established.", v_reconnects);
    conn_metric(f, r, "mqtt_relay_bytes_sent_total", "counter", "Bytes written to the broker.",
                v_sent);
    conn_metric(f, r, "mqtt_relay_bytes_received_total", "counter", "Bytes read from the broker.",
                v_received);
    conn_metric(f, r, "mqtt_relay_round_trip_seconds", "gauge",
                "Round trip to the broker, smoothed (CONNACK, PINGRESP, PUBACK/PUBREC).", v_rtt);
    conn_metric(f, r, "mqtt_relay_round_trip_base_seconds", "gauge",
                "Lowest recent round trip: what spool = auto and max_inflight auto follow.",
                v_rtt_base);
    conn_metric(f, r, "mqtt_relay_window_limit", "gauge",
                "Unacknowledged PUBLISHes allowed toward the broker (max_inflight).", v_window);
    head(f, "mqtt_relay_spool_engaged", "gauge",
         "1 while messages for the broker are acknowledged from its spool.");
    for (size_t i = 0; i < r->n_brokers; i++)
        fprintf(f, "mqtt_relay_spool_engaged{broker=\"%s\"} %d\n", r->brokers[i].cfg->name,
                r->brokers[i].feed.spooling ? 1 : 0);
    spool_metrics(f, r, now_ms);
    relay_netstats_render(f, r, now_ms);
    pace_metrics(f, r);
    head(f, "mqtt_relay_read_batch_waits_total", "counter",
         "Times the relay waited for more packets before reading again (relay.batch_wait_us).");
    fprintf(f, "mqtt_relay_read_batch_waits_total %llu\n",
            (unsigned long long)r->stats.batch_waits);
    head(f, "mqtt_relay_read_batch_wait_seconds_total", "counter", "Time spent in those waits.");
    fprintf(f, "mqtt_relay_read_batch_wait_seconds_total %.6f\n",
            (double)r->stats.batch_wait_us / 1e6);
    head(f, "mqtt_relay_forward_latency_seconds", "histogram",
         "From a message's arrival to its delivery (acknowledgement for QoS 1/2).");
    uint64_t cum = 0;
    for (size_t i = 0; i < RELAY_LATENCY_BUCKETS; i++) {
        cum += r->stats.latency_buckets[i];
        fprintf(f, "mqtt_relay_forward_latency_seconds_bucket{le=\"%g\"} %llu\n",
                relay_latency_bounds[i], (unsigned long long)cum);
    }
    fprintf(f, "mqtt_relay_forward_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
            (unsigned long long)r->stats.latency_count);
    fprintf(f, "mqtt_relay_forward_latency_seconds_sum %.3f\n",
            (double)r->stats.latency_sum_ms / 1000.0);
    fprintf(f, "mqtt_relay_forward_latency_seconds_count %llu\n",
            (unsigned long long)r->stats.latency_count);
    if (fclose(f) != 0)
        return -ENOMEM;
    return 0;
}
