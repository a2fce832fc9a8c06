/*
 * test_netstats.c: core/netstats.c over the in-memory transport: what the transport reports
 * about a broker's links (name lookups and their times, TLS handshakes, the client
 * certificate's expiry) as /metrics renders it, and the expiry warning: none 15 days before,
 * a WARN within 14 days, at most once a day for one certificate, again for a new one, an ERROR
 * once expired.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/load.h"
#include "core/internal.h"
#include "fake_io.h"

#define DAY 86400
#define WALL0 1800000000ll /* the wall clock at now_ms = 0, in seconds */

struct env {
    struct fake_io io;
    struct relay_config cfg;
    struct relay_log log;
    struct relay *r;
};

static struct env *env_new(void)
{
    static const char conf[] =
        "relay: { id = \"site-n\"; log_level = \"warn\"; };\n"
        "brokers = (\n"
        "  { name = \"a\"; url = \"mqtt://127.0.0.1:1001\"; },\n"
        "  { name = \"b\"; url = [\"mqtts://127.0.0.1:1002\", \"mqtt://127.0.0.1:1003\"]; }\n"
        ");\n"
        "routes = ( { from = \"a\"; to = \"b\"; filter = \"x/#\"; } );\n";
    struct env *e = calloc(1, sizeof(*e));
    char path[64], err[512];
    FILE *f;

    snprintf(path, sizeof(path), "/tmp/test_netstats_%d.conf", (int)getpid());
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(conf, f);
    fclose(f);
    if (relay_config_load(path, &e->cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    unlink(path);
    relay_log_init(&e->log, RELAY_LOG_WARN);
    fake_io_init(&e->io);
    struct relay_env env = {
        .log = &e->log, .io = &e->io.io, .now_ms = 0, .wall_offset_ms = WALL0 * 1000, .seed = 1};
    assert_int_equal(relay_new(&e->cfg, &env, &e->r, err, sizeof(err)), 0);
    return e;
}

static void env_free(struct env *e)
{
    relay_free(e->r);
    relay_config_cleanup(&e->cfg);
    fake_io_cleanup(&e->io);
    free(e);
}

static char *render(struct env *e, uint64_t now_ms)
{
    char *body = NULL;
    size_t len = 0;

    assert_int_equal(relay_metrics_render(e->r, now_ms, &body, &len), 0);
    return body;
}

static void has(const char *text, const char *line)
{
    if (!strstr(text, line))
        fail_msg("no \"%s\" in /metrics:\n%s", line, text);
}

/* The newest kept WARN/ERROR line, or NULL when none was logged after `since` lines. */
static const struct relay_log_entry *newest(const struct env *e, uint64_t since)
{
    if (e->log.ring_next <= since)
        return NULL;
    return &e->log.ring[(e->log.ring_next - 1) % RELAY_LOG_RING];
}

static void dns_and_handshakes(void **state)
{
    struct env *e = env_new();
    struct relay_conn *b = &e->r->brokers[1].conns[0];
    char *m;

    (void)state;
    relay_core_dns_result(b, true, 3, 0);
    relay_core_dns_result(b, false, 10000, 0);
    relay_core_dns_result(b, false, 40000, 0);
    relay_core_tls_handshake(b, false);
    relay_core_tls_handshake(b, true);
    relay_core_tls_handshake(b, true);
    m = render(e, 1000);
    has(m, "mqtt_relay_dns_failures_total{broker=\"a\"} 0\n");
    has(m, "mqtt_relay_dns_failures_total{broker=\"b\"} 2\n");
    has(m, "mqtt_relay_dns_lookup_seconds_bucket{broker=\"b\",le=\"0.001\"} 0\n");
    has(m, "mqtt_relay_dns_lookup_seconds_bucket{broker=\"b\",le=\"0.005\"} 1\n");
    has(m, "mqtt_relay_dns_lookup_seconds_bucket{broker=\"b\",le=\"10\"} 2\n");
    has(m, "mqtt_relay_dns_lookup_seconds_bucket{broker=\"b\",le=\"30\"} 2\n");
    has(m, "mqtt_relay_dns_lookup_seconds_bucket{broker=\"b\",le=\"+Inf\"} 3\n");
    has(m, "mqtt_relay_dns_lookup_seconds_sum{broker=\"b\"} 50.003\n");
    has(m, "mqtt_relay_dns_lookup_seconds_count{broker=\"b\"} 3\n");
    has(m, "# TYPE mqtt_relay_dns_lookup_seconds histogram\n");
    /* only brokers with a TLS URL have handshakes; a does not */
    has(m, "mqtt_relay_tls_handshakes_total{broker=\"b\",resumed=\"false\"} 1\n");
    has(m, "mqtt_relay_tls_handshakes_total{broker=\"b\",resumed=\"true\"} 2\n");
    assert_null(strstr(m, "mqtt_relay_tls_handshakes_total{broker=\"a\""));
    /* no client certificate reported: no expiry series */
    assert_null(strstr(m, "mqtt_relay_tls_cert_expiry_seconds{"));
    free(m);
    env_free(e);
}

static void expiry(void **state)
{
    struct env *e = env_new();
    struct relay_conn *b = &e->r->brokers[1].conns[0];
    const struct relay_log_entry *l;
    uint64_t n;
    char *m;

    (void)state;
    relay_core_tls_cert(b, WALL0 + 15 * DAY, 0);
    assert_null(newest(e, 0)); /* 15 days: nothing to say */
    m = render(e, 2000);
    has(m, "mqtt_relay_tls_cert_expiry_seconds{broker=\"b\"} 1295998\n");
    free(m);

    /* a day later it is within 14 days: one WARN */
    relay_core_tick(e->r, 1000ull * (DAY + 1));
    l = newest(e, 0);
    assert_non_null(l);
    assert_int_equal(l->level, RELAY_LOG_WARN);
    assert_string_equal(l->who, "b");
    assert_non_null(strstr(l->msg, "expires in 14.0 days"));
    n = e->log.ring_next;
    /* reconnects and ticks the same day say nothing more */
    relay_core_tls_cert(b, WALL0 + 15 * DAY, 1000ull * (DAY + 60));
    relay_core_tick(e->r, 1000ull * (DAY + 3600));
    assert_null(newest(e, n));
    /* the next day, again */
    relay_core_tick(e->r, 1000ull * (2 * DAY + 2));
    l = newest(e, n);
    assert_non_null(l);
    assert_non_null(strstr(l->msg, "expires in 13.0 days"));
    n = e->log.ring_next;
    /* a rotated certificate that still expires soon is said at once */
    relay_core_tls_cert(b, WALL0 + 12 * DAY, 1000ull * (2 * DAY + 10));
    l = newest(e, n);
    assert_non_null(l);
    assert_non_null(strstr(l->msg, "expires in 10.0 days"));
    n = e->log.ring_next;
    /* once expired: an ERROR */
    relay_core_tick(e->r, 1000ull * (13 * DAY));
    l = newest(e, n);
    assert_non_null(l);
    assert_int_equal(l->level, RELAY_LOG_ERROR);
    assert_non_null(strstr(l->msg, "expired 1.0 days ago"));
    m = render(e, 1000ull * (13 * DAY));
    has(m, "mqtt_relay_tls_cert_expiry_seconds{broker=\"b\"} -86400\n");
    free(m);
    /* a new certificate, a year long: the gauge follows, nothing is said */
    n = e->log.ring_next;
    relay_core_tls_cert(b, WALL0 + 13 * DAY + 365 * DAY, 1000ull * (13 * DAY + 5));
    assert_null(newest(e, n));
    env_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dns_and_handshakes),
        cmocka_unit_test(expiry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
