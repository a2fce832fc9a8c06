/* test_status.c: GET /api/v1/status and POST /-/reload, the core's side (core/status.c,
 * core/http.c, core/history.c), over the in-memory transport: the JSON parses (strictly) and
 * says what happened, counts and rates equal the traffic, times are the relay's clock plus the
 * wall offset it was given, states follow the links, every string survives as text, nothing
 * secret is ever in it; who may reload. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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
#include "fake_io.h"
#include "mini_json.h"

#define WALL0 1767225600000ll /* 2026-01-01T00:00:00.000Z: the wall time at now_ms = 1000 */

struct stub {
    int calls, rc;
    char msg[256];
};

struct env {
    struct fake_io io;
    struct relay_config cfg;
    struct relay_log log;
    struct relay *r;
    struct stub reload;
    char dir[64];
};

static int stub_reload(void *arg, uint64_t now_ms, char *msg, size_t msglen)
{
    struct stub *s = arg;

    (void)now_ms;
    s->calls++;
    snprintf(msg, msglen, "%s", s->msg);
    return s->rc;
}

/* conf may name the spool directory as %s (a fresh temporary directory). */
static struct env *env_new(const char *conf)
{
    struct env *e = calloc(1, sizeof(*e));
    char err[512], path[128], *text;
    FILE *f;

    snprintf(e->dir, sizeof(e->dir), "/tmp/test_status_XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(path, sizeof(path), "%s/relay.conf", e->dir);
    assert_true(asprintf(&text, conf, e->dir) > 0);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    free(text);
    if (relay_config_load(path, &e->cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    relay_log_init(&e->log, getenv("TEST_DEBUG") ? RELAY_LOG_DEBUG : e->cfg.log_level);
    fake_io_init(&e->io);
    struct relay_env env = {.log = &e->log,
                            .io = &e->io.io,
                            .now_ms = e->io.now,
                            .wall_offset_ms = WALL0 - (int64_t)e->io.now,
                            .seed = 1,
                            .hooks = {.arg = &e->reload, .reload = stub_reload}};

    assert_int_equal(relay_new(&e->cfg, &env, &e->r, err, sizeof(err)), 0);
    relay_start(e->r, e->io.now);
    return e;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void env_free(struct env *e)
{
    relay_free(e->r);
    relay_config_cleanup(&e->cfg);
    fake_io_cleanup(&e->io);
    nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(e);
}

static struct relay_conn *conn(struct env *e, size_t broker, uint32_t idx)
{
    return &e->r->brokers[broker].conns[idx];
}

static void publish(struct env *e, struct relay_conn *c, const char *topic, uint16_t pid)
{
    struct mqc_packet p = {.type = MQC_PUBLISH};

    p.u.publish.topic = (struct mqc_bytes){(const uint8_t *)topic, strlen(topic)};
    p.u.publish.qos = 1;
    p.u.publish.packet_id = pid;
    p.u.publish.payload = (struct mqc_bytes){(const uint8_t *)"hello", 5};
    assert_int_equal(fake_rx(&e->io, c, &p), 0);
}

/* The destination acknowledges every PUBLISH the relay wrote to it; returns how many. */
static int ack_all(struct env *e, struct relay_conn *c)
{
    struct mqc_packet pk[64];
    int n = fake_tx(&e->io, c, pk, 64), acked = 0;

    for (int i = 0; i < n; i++) {
        struct mqc_packet a = {.type = MQC_PUBACK};

        if (pk[i].type != MQC_PUBLISH)
            continue;
        a.u.ack.packet_id = pk[i].u.publish.packet_id;
        assert_int_equal(fake_rx(&e->io, c, &a), 0);
        acked++;
    }
    return acked;
}

/* GET path, answered by the core: the status, its text and body kept for the test. */
static int get(struct env *e, const char *method, const char *path, const char *auth, bool loopback,
               char **body)
{
    struct relay_http_request req = {.method = method,
                                     .path = path,
                                     .authorization = auth,
                                     .peer = "192.0.2.7",
                                     .loopback = loopback};
    struct relay_http_response resp;

    relay_core_http(e->r, &req, e->io.now, &resp);
    assert_non_null(resp.body);
    assert_non_null(resp.content_type);
    assert_int_equal(strlen(resp.body), resp.len);
    *body = resp.body;
    return resp.status;
}

/* GET /api/v1/status, parsed (strictly: the test fails on invalid JSON). */
static struct mj *status(struct env *e, char **text)
{
    char err[128], *body;
    struct mj *v;

    assert_int_equal(get(e, "GET", "/api/v1/status", NULL, true, &body), 200);
    v = mj_parse(body, strlen(body), err, sizeof(err));
    if (!v)
        fail_msg("not JSON: %s\n%s", err, body);
    if (text)
        *text = body;
    else
        free(body);
    return v;
}

static void numbers_are(const struct mj *v, const char *path, const uint32_t want[60])
{
    const struct mj *a = mj_path(v, path);

    assert_non_null(a);
    assert_int_equal(a->type, MJ_ARR);
    assert_int_equal(a->n, 60);
    for (size_t i = 0; i < 60; i++) {
        if (a->items[i]->num != want[i])
            fail_msg("%s[%zu] = %g, expected %u", path, i, a->items[i]->num, want[i]);
    }
}

#define TWO(extra_relay, extra_a, extra_b, routes)                                                 \
    "relay: { id = \"site-t\"; log_level = \"error\"; metrics = \"127.0.0.1:9464\"; " extra_relay  \
    " };\n"                                                                                        \
    "brokers = (\n"                                                                                \
    "  { name = \"a\"; url = \"mqtt://127.0.0.1:1001\"; version = \"5\"; " extra_a " },\n"         \
    "  { name = \"b\"; url = \"mqtt://127.0.0.1:1002\"; version = \"3.1.1\"; " extra_b " }\n"      \
    ");\n"                                                                                         \
    "routes = ( " routes " );\n"

#define AB "{ name = \"ab\"; from = \"a\"; to = \"b\"; filter = \"s/#\"; }"

/* ---- counts, rates, times ----------------------------------------------------------------- */

static void counts_and_rates_equal_the_traffic(void **st)
{
    struct env *e = env_new(TWO("", "", "", AB));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    uint32_t in[60] = {0}, out[60] = {0};
    struct mqc_packet pk[8];
    uint16_t pid = 1;
    struct mj *v;

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, b, false);
    /* second 1: 3 messages, delivered; second 2: 2; second 3: 1; second 4: 4, not acknowledged */
    for (int i = 0; i < 3; i++)
        publish(e, a, "s/x", pid++);
    assert_int_equal(ack_all(e, b), 3);
    e->io.now = 2500;
    for (int i = 0; i < 2; i++)
        publish(e, a, "s/y", pid++);
    assert_int_equal(ack_all(e, b), 2);
    e->io.now = 3999;
    publish(e, a, "s/z", pid++);
    assert_int_equal(ack_all(e, b), 1);
    e->io.now = 4000;
    for (int i = 0; i < 4; i++)
        publish(e, a, "s/w", pid++);
    assert_int_equal(fake_tx(&e->io, b, pk, 8), 4); /* sent, not acknowledged */
    e->io.now = 4500;

    v = status(e, NULL);
    assert_int_equal(mj_num(v, "api"), 1);
    assert_string_equal(mj_str(v, "relay.id"), "site-t");
    assert_string_equal(mj_str(v, "relay.version"), RELAY_VERSION_STRING);
    assert_string_equal(mj_str(v, "relay.now"), "2026-01-01T00:00:03.500Z");
    assert_string_equal(mj_str(v, "relay.started"), "2026-01-01T00:00:00.000Z");
    assert_true(mj_num(v, "relay.uptime_seconds") == 3.5);
    assert_true(mj_path(v, "relay.healthy")->b);
    assert_non_null(strstr(mj_str(v, "relay.config_file"), "/relay.conf"));
    assert_int_equal(mj_num(v, "relay.reload.count"), 0);
    assert_int_equal(mj_path(v, "relay.reload.last")->type, MJ_NULL);

    /* the route: totals, and per second the last 60 complete seconds (not the current one) */
    assert_string_equal(mj_str(v, "routes.0.name"), "ab");
    assert_string_equal(mj_str(v, "routes.0.from"), "a");
    assert_string_equal(mj_str(v, "routes.0.to"), "b");
    assert_string_equal(mj_str(v, "routes.0.filter"), "s/#");
    assert_string_equal(mj_str(v, "routes.0.subscription"), "s/#");
    assert_string_equal(mj_str(v, "routes.0.topic"), "${topic}");
    assert_int_equal(mj_num(v, "routes.0.qos"), 1);
    assert_int_equal(mj_num(v, "routes.0.received"), 10);
    assert_int_equal(mj_num(v, "routes.0.forwarded"), 6);
    assert_int_equal(mj_path(v, "routes.0.dropped")->n, RELAY_DROP__COUNT);
    assert_int_equal(mj_num(v, "routes.0.dropped.too_large"), 0);
    assert_int_equal(mj_num(v, "routes.0.rate.interval_seconds"), 1);
    in[57] = out[57] = 3;
    in[58] = out[58] = 2;
    in[59] = out[59] = 1;
    numbers_are(v, "routes.0.rate.in", in);
    numbers_are(v, "routes.0.rate.out", out);

    /* brokers and connections */
    assert_string_equal(mj_str(v, "brokers.0.name"), "a");
    assert_string_equal(mj_str(v, "brokers.0.version"), "5");
    assert_string_equal(mj_str(v, "brokers.1.version"), "3.1.1");
    assert_string_equal(mj_str(v, "brokers.1.urls.0"), "mqtt://127.0.0.1:1002");
    assert_false(mj_path(v, "brokers.1.tls")->b);
    assert_int_equal(mj_path(v, "brokers.1.profile")->type, MJ_NULL);
    assert_int_equal(mj_path(v, "brokers.1.tls_cert_expiry")->type, MJ_NULL);
    assert_int_equal(mj_path(v, "brokers.1.spool")->type, MJ_NULL);
    assert_int_equal(mj_num(v, "brokers.1.connections_up"), 1);
    assert_int_equal(mj_num(v, "brokers.1.connections"), 1);
    assert_int_equal(mj_num(v, "brokers.1.conns.0.index"), 0);
    assert_string_equal(mj_str(v, "brokers.1.conns.0.client_id"), "site-t-b");
    assert_string_equal(mj_str(v, "brokers.1.conns.0.state"), "up");
    assert_string_equal(mj_str(v, "brokers.1.conns.0.state_since"), "2026-01-01T00:00:00.000Z");
    assert_string_equal(mj_str(v, "brokers.1.conns.0.up_since"), "2026-01-01T00:00:00.000Z");
    assert_true(mj_num(v, "brokers.1.conns.0.connected_seconds") == 3.5);
    assert_string_equal(mj_str(v, "brokers.1.conns.0.url"), "mqtt://127.0.0.1:1002");
    assert_int_equal(mj_num(v, "brokers.1.conns.0.reconnects"), 0);
    assert_int_equal(mj_path(v, "brokers.1.conns.0.last_error")->type, MJ_NULL);
    assert_int_equal(mj_num(v, "brokers.1.conns.0.inflight"), 4);
    assert_int_equal(mj_num(v, "brokers.1.conns.0.inflight_limit"), 20);
    assert_true(mj_num(v, "brokers.1.conns.0.queued_bytes") > 0);
    assert_false(mj_path(v, "brokers.1.conns.0.rx_paused")->b);
    assert_int_equal(mj_num(v, "brokers.1.conns.0.bytes_sent"), b->stats.bytes_sent);
    assert_int_equal(mj_num(v, "brokers.0.conns.0.bytes_received"), a->stats.bytes_received);
    assert_int_equal(mj_path(v, "brokers.1.conns.0.pace")->type, MJ_NULL);
    assert_int_equal(mj_path(v, "log")->type, MJ_ARR);
    mj_free(v);

    /* a minute and more later, with no traffic: the rates are all zero again */
    e->io.now = 70000;
    v = status(e, NULL);
    memset(in, 0, sizeof(in));
    numbers_are(v, "routes.0.rate.in", in);
    numbers_are(v, "routes.0.rate.out", in);
    mj_free(v);
    env_free(e);
}

/* ---- states -------------------------------------------------------------------------------- */

static void states_follow_the_links(void **st)
{
    struct env *e = env_new(TWO("", "", "", AB));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    struct mqc_packet pk[8], ca = {.type = MQC_CONNACK};
    struct mj *v;

    (void)st;
    /* a: CONNACK in, its SUBSCRIBE not answered: subscribing, which counts as up (as
     * mqtt_relay_connection_up does) */
    v = status(e, NULL);
    assert_string_equal(mj_str(v, "brokers.0.conns.0.state"), "connecting");
    assert_int_equal(mj_num(v, "brokers.0.connections_up"), 0);
    assert_false(mj_path(v, "relay.healthy")->b);
    mj_free(v);
    e->io.now = 1200;
    relay_core_on_open(a, e->io.now);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 1);
    assert_int_equal(pk[0].type, MQC_CONNECT);
    assert_int_equal(fake_rx(&e->io, a, &ca), 0);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 1);
    assert_int_equal(pk[0].type, MQC_SUBSCRIBE);
    assert_true(relay_conn_up(a));
    e->io.now = 1700;
    fake_open(&e->io, b, false);
    v = status(e, NULL);
    assert_string_equal(mj_str(v, "brokers.0.conns.0.state"), "subscribing");
    assert_string_equal(mj_str(v, "brokers.0.conns.0.state_since"), "2026-01-01T00:00:00.200Z");
    assert_int_equal(mj_num(v, "brokers.0.connections_up"), 1);
    assert_string_equal(mj_str(v, "brokers.1.conns.0.state"), "up");
    assert_true(mj_path(v, "relay.healthy")->b);
    mj_free(v);

    /* b's link is lost: waiting to reconnect, why and when, not counted up */
    e->io.now = 5000;
    fake_drop(&e->io, b, "connection reset by peer");
    e->io.now = 5100;
    v = status(e, NULL);
    assert_string_equal(mj_str(v, "brokers.1.conns.0.state"), "waiting");
    assert_string_equal(mj_str(v, "brokers.1.conns.0.state_since"), "2026-01-01T00:00:04.000Z");
    assert_string_equal(mj_str(v, "brokers.1.conns.0.last_error.at"), "2026-01-01T00:00:04.000Z");
    assert_string_equal(mj_str(v, "brokers.1.conns.0.last_error.text"),
                        "connection lost (connection reset by peer)");
    assert_int_equal(mj_path(v, "brokers.1.conns.0.up_since")->type, MJ_NULL);
    assert_true(mj_num(v, "brokers.1.conns.0.connected_seconds") == 0);
    assert_int_equal(mj_num(v, "brokers.1.conns.0.reconnects"), 1);
    assert_true(mj_num(v, "brokers.1.conns.0.retry_in_seconds") > 0);
    assert_true(mj_num(v, "brokers.1.conns.0.retry_in_seconds") ==
                (double)(b->retry_at - e->io.now) / 1000.0);
    assert_int_equal(mj_num(v, "brokers.1.connections_up"), 0);
    assert_false(mj_path(v, "relay.healthy")->b);
    mj_free(v);

    /* the view and relay_conn_up() agree in every state seen */
    for (size_t i = 0; i < e->r->n_conns; i++) {
        enum relay_conn_view cv = relay_conn_view(e->r->conns[i]);

        assert_int_equal(cv == RELAY_CV_UP || cv == RELAY_CV_SUBSCRIBING,
                         relay_conn_up(e->r->conns[i]));
    }
    env_free(e);
}

/* ---- strings and secrets -------------------------------------------------------------------- */

static void every_string_is_text(void **st)
{
    /* a route name with quotes, markup, a backslash, U+00E9 and U+2028 (which ends a line in
     * JavaScript); a filter with markup; a log line with control characters and bytes that
     * are not UTF-8 */
    struct env *e =
        env_new(TWO("", "", "",
                    "{ name = \"r\\\"<&>\\\\ \\xc3\\xa9\\xe2\\x80\\xa8\"; from = \"a\"; "
                    "to = \"b\"; "
                    "filter = \"s/\\\"<script>x</script>/#\"; topic = \"t/${#}\"; }"));
    char *text;
    struct mj *v;

    (void)st;
    relay_log(&e->log, RELAY_LOG_ERROR, "b#0", "bad \x01\x1b[31m \xc3( </td> \xe2\x80\xa8 end");
    v = status(e, &text);
    assert_string_equal(mj_str(v, "routes.0.name"), "r\"<&>\\ \xc3\xa9\xe2\x80\xa8");
    assert_string_equal(mj_str(v, "routes.0.filter"), "s/\"<script>x</script>/#");
    assert_string_equal(mj_str(v, "routes.0.topic"), "t/${#}");
    assert_string_equal(mj_str(v, "log.0.msg"),
                        "bad \x01\x1b[31m \xef\xbf\xbd( </td> \xe2\x80\xa8 end");
    /* markup never appears as such in the text (safe even pasted into HTML) */
    assert_null(strstr(text, "<"));
    assert_null(strstr(text, "\xe2\x80\xa8"));
    free(text);
    mj_free(v);
    env_free(e);
}

static void nothing_secret(void **st)
{
    struct env *e =
        env_new("relay: { id = \"site-t\"; log_level = \"error\"; metrics = \"127.0.0.1:9464\"; "
                "admin_token = \"tok-Secret-0123456789abcdef\"; };\n"
                "brokers = (\n"
                "  { name = \"a\"; url = [\"mqtt://127.0.0.1:1001\", "
                "\"ws://127.0.0.1:1003/mqtt?token=Query-Secret-42\"]; username = \"relay-user\"; "
                "password = \"Pa55-Secret-hunter2\"; },\n"
                "  { name = \"b\"; url = \"mqtts://127.0.0.1:1002\"; }\n"
                ");\n"
                "routes = ( " AB " );\n");
    char *text;
    struct mj *v;

    (void)st;
    fake_open(&e->io, conn(e, 0, 0), false);
    v = status(e, &text);
    assert_null(strstr(text, "Pa55-Secret-hunter2"));
    assert_null(strstr(text, "Query-Secret-42"));
    assert_null(strstr(text, "tok-Secret"));
    assert_null(strstr(text, "Secret"));
    assert_string_equal(mj_str(v, "brokers.0.urls.0"), "mqtt://127.0.0.1:1001");
    assert_string_equal(mj_str(v, "brokers.0.urls.1"), "ws://127.0.0.1:1003/mqtt?***");
    assert_false(mj_path(v, "brokers.0.tls")->b);
    assert_true(mj_path(v, "brokers.1.tls")->b);
    free(text);
    mj_free(v);
    env_free(e);
}

/* ---- the spool's history ---------------------------------------------------------------- */

static void spool_and_its_history(void **st)
{
    struct env *e =
        env_new(TWO("", "", "spool = { dir = \"%s/spool\"; max_size = 10000000; };", AB));
    struct relay_conn *a = conn(e, 0, 0);
    struct mj *v;

    (void)st;
    fake_open(&e->io, a, false); /* b stays down: messages for it go to its spool */
    for (uint16_t i = 1; i <= 5; i++)
        publish(e, a, "s/sp", i);
    /* the tick comes at least once a second while a spool and a listener exist */
    for (uint64_t t = 1100; t <= 4100; t += 1000) {
        e->io.now = t;
        relay_core_tick(e->r, t);
        assert_true(e->io.wake != 0 && e->io.wake <= (t / 1000 + 1) * 1000);
    }
    v = status(e, NULL);
    assert_int_equal(mj_num(v, "brokers.1.spool.messages"), 5);
    assert_true(mj_num(v, "brokers.1.spool.bytes") > 0);
    assert_int_equal(mj_num(v, "brokers.1.spool.max_bytes"), 10000000);
    assert_true(mj_num(v, "brokers.1.spool.oldest_age_seconds") == 3.1);
    assert_false(mj_path(v, "brokers.1.spool.full")->b);
    assert_int_equal(mj_num(v, "brokers.1.spool.history.interval_seconds"), 1);
    assert_int_equal(mj_path(v, "brokers.1.spool.history.messages")->n, 60);
    assert_int_equal(mj_num(v, "brokers.1.spool.history.messages.59"), 5); /* second 3 */
    assert_int_equal(mj_num(v, "brokers.1.spool.history.messages.58"), 5); /* second 2 */
    assert_int_equal(mj_num(v, "brokers.1.spool.history.messages.0"), 0);  /* before start */
    mj_free(v);
    env_free(e);
}

/* ---- the routes of the listener, and who may reload ---------------------------------------- */

static void paths_and_methods(void **st)
{
    struct env *e = env_new(TWO("", "", "", AB));
    char *body;

    (void)st;
    assert_int_equal(get(e, "GET", "/nope", NULL, true, &body), 404);
    free(body);
    assert_int_equal(get(e, "GET", "/healthz", NULL, true, &body), 503);
    assert_string_equal(body, "unavailable\n");
    free(body);
    assert_int_equal(get(e, "GET", "/metrics", NULL, true, &body), 200);
    assert_non_null(strstr(body, "mqtt_relay_connection_up{broker=\"a\",conn=\"0\"} 0"));
    free(body);
    assert_int_equal(get(e, "POST", "/metrics", NULL, true, &body), 405);
    free(body);
    assert_int_equal(get(e, "POST", "/api/v1/status", NULL, true, &body), 405);
    free(body);
    assert_int_equal(get(e, "GET", "/-/reload", NULL, true, &body), 405);
    free(body);
    assert_int_equal(e->reload.calls, 0);
    env_free(e);
}

static struct mj *answer(struct env *e, const char *auth, bool loopback, int want_status)
{
    char *body, err[128];
    struct mj *v;

    assert_int_equal(get(e, "POST", "/-/reload", auth, loopback, &body), want_status);
    v = mj_parse(body, strlen(body), err, sizeof(err));
    if (!v)
        fail_msg("not JSON: %s: %s", err, body);
    free(body);
    assert_int_equal(mj_path(v, "ok")->type, MJ_BOOL);
    assert_non_null(mj_str(v, "message"));
    return v;
}

static void reload_without_token_needs_loopback(void **st)
{
    struct env *e = env_new(TWO("", "", "", AB));
    struct mj *v;

    (void)st;
    v = answer(e, NULL, false, 403);
    assert_false(mj_path(v, "ok")->b);
    assert_non_null(strstr(mj_str(v, "message"), "relay.admin_token"));
    mj_free(v);
    assert_int_equal(e->reload.calls, 0);

    snprintf(e->reload.msg, sizeof(e->reload.msg), "configuration reloaded: 1 routes");
    v = answer(e, "Bearer whatever-it-is-ignored", true, 200);
    assert_true(mj_path(v, "ok")->b);
    assert_string_equal(mj_str(v, "message"), "configuration reloaded: 1 routes");
    mj_free(v);
    assert_int_equal(e->reload.calls, 1);

    /* a file that does not load: 409 with the hook's FILE:LINE message */
    e->reload.rc = -EINVAL;
    snprintf(e->reload.msg, sizeof(e->reload.msg),
             "relay.conf:3: route \"x\": unknown broker \"y\"; keeping the running "
             "configuration");
    e->io.now = 2000;
    v = answer(e, NULL, true, 409);
    assert_false(mj_path(v, "ok")->b);
    assert_string_equal(mj_str(v, "message"), e->reload.msg);
    mj_free(v);
    assert_int_equal(e->reload.calls, 2);

    /* the status API keeps the count and the last outcome */
    v = status(e, NULL);
    assert_int_equal(mj_num(v, "relay.reload.count"), 2);
    assert_false(mj_path(v, "relay.reload.last.ok")->b);
    assert_string_equal(mj_str(v, "relay.reload.last.at"), "2026-01-01T00:00:01.000Z");
    assert_string_equal(mj_str(v, "relay.reload.last.message"), e->reload.msg);
    mj_free(v);
    env_free(e);
}

#define TOKEN "tok-0123456789abcdefXYZ"

static void reload_with_token(void **st)
{
    struct env *e =
        env_new("relay: { id = \"site-t\"; log_level = \"warn\"; metrics = \"127.0.0.1:9464\"; "
                "admin_token = \"" TOKEN "\"; };\n"
                "brokers = ( { name = \"a\"; url = \"mqtt://127.0.0.1:1001\"; },\n"
                "  { name = \"b\"; url = \"mqtt://127.0.0.1:1002\"; } );\n"
                "routes = ( " AB " );\n");
    char logpath[128], logtext[8192];
    int saved = dup(STDERR_FILENO), fd;
    ssize_t n;
    struct mj *v;

    (void)st;
    snprintf(logpath, sizeof(logpath), "%s/stderr", e->dir);
    fd = open(logpath, O_CREAT | O_TRUNC | O_RDWR, 0600);
    assert_true(fd >= 0 && saved >= 0);
    dup2(fd, STDERR_FILENO);

    /* a token is set: it is required, on a loopback listener too */
    mj_free(answer(e, NULL, true, 401));
    mj_free(answer(e, "Bearer " TOKEN "x", true, 401));
    mj_free(answer(e, "Bearer tok-0123456789abcdefXY", true, 401));
    mj_free(answer(e, "Basic " TOKEN, false, 401));
    mj_free(answer(e, "Bearer", false, 401));
    assert_int_equal(e->reload.calls, 0);
    v = answer(e, "Bearer " TOKEN, false, 200);
    assert_true(mj_path(v, "ok")->b);
    mj_free(v);
    v = answer(e, "bearer  " TOKEN " ", false, 200);
    mj_free(v);
    assert_int_equal(e->reload.calls, 2);

    dup2(saved, STDERR_FILENO);
    close(saved);
    n = pread(fd, logtext, sizeof(logtext) - 1, 0);
    close(fd);
    assert_true(n > 0);
    logtext[n] = '\0';
    /* refusals are logged, the token (or what was sent in its place) never */
    assert_non_null(strstr(logtext, "POST /-/reload from 192.0.2.7 refused: wrong bearer token"));
    assert_non_null(strstr(logtext, "POST /-/reload from 192.0.2.7 refused: no bearer token"));
    assert_null(strstr(logtext, "tok-0123"));
    env_free(e);
}

/* ---- history.c alone ---------------------------------------------------------------------- */

static void history_counter_and_gauge(void **st)
{
    struct relay_hist c, g;
    uint32_t out[60];

    (void)st;
    relay_hist_init(&c, false);
    relay_hist_init(&g, true);
    relay_hist_read(&c, 5000, out);
    for (int i = 0; i < 60; i++)
        assert_int_equal(out[i], 0);
    relay_hist_add(&c, 10000, 2); /* second 10 */
    relay_hist_add(&c, 10999, 1);
    relay_hist_add(&c, 12000, 7); /* second 12 */
    relay_hist_set(&g, 10500, 4);
    relay_hist_set(&g, 10900, 5); /* second 10 ends at 5 */
    relay_hist_set(&g, 13100, 9); /* 11 and 12 keep 5 */
    relay_hist_read(&c, 12500, out);
    assert_int_equal(out[59], 0); /* second 11 */
    assert_int_equal(out[58], 3); /* second 10 */
    assert_int_equal(out[57], 0);
    relay_hist_read(&c, 13000, out);
    assert_int_equal(out[59], 7);
    assert_int_equal(out[57], 3);
    relay_hist_read(&g, 14000, out); /* seconds -46 .. 13 */
    assert_int_equal(out[59], 9);
    assert_int_equal(out[58], 5);
    assert_int_equal(out[57], 5);
    assert_int_equal(out[56], 5);
    assert_int_equal(out[55], 0);
    relay_hist_read(&g, 100000, out); /* long after: the gauge keeps its last value */
    assert_int_equal(out[0], 9);
    assert_int_equal(out[59], 9);
    relay_hist_read(&c, 70000, out); /* second 10 is 60 complete seconds back: out[0] */
    assert_int_equal(out[0], 3);
    relay_hist_read(&c, 71000, out);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 7);
    relay_hist_add(&c, 200000, 1); /* after a long gap: all else is zero */
    relay_hist_read(&c, 201000, out);
    assert_int_equal(out[59], 1);
    for (int i = 0; i < 59; i++)
        assert_int_equal(out[i], 0);
}

/* A broker with a profile: its name; its connections' pace (configured, then learned); the
 * client certificate's end of validity once the transport reported one. */
static void profile_pace_and_certificate(void **st)
{
    struct env *e = env_new(TWO("", "", "profile = \"bifromq\";", AB));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    struct mj *v;

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, b, false);
    v = status(e, NULL);
    assert_int_equal(mj_path(v, "brokers.0.profile")->type, MJ_NULL);
    assert_int_equal(mj_path(v, "brokers.0.conns.0.pace")->type, MJ_NULL); /* no limit */
    assert_string_equal(mj_str(v, "brokers.1.profile"), "bifromq");
    assert_int_equal(mj_num(v, "brokers.1.conns.0.pace.messages_per_second"), 200);
    assert_int_equal(mj_num(v, "brokers.1.conns.0.pace.limit"), 200);
    assert_int_equal(mj_num(v, "brokers.1.conns.0.pace.signals"), 0);
    assert_int_equal(mj_path(v, "brokers.1.tls_cert_expiry")->type, MJ_NULL);
    mj_free(v);

    /* the broker's verdict lowers it; the transport reports a certificate */
    assert_true(relay_pace_signal(&b->pace, RELAY_PACE_DISCONNECT_89, UINT32_MAX, e->io.now,
                                  e->io.now + 1));
    relay_core_tls_cert(b, 1798761600, e->io.now); /* 2027-01-01T00:00:00Z */
    v = status(e, NULL);
    assert_int_equal(mj_num(v, "brokers.1.conns.0.pace.messages_per_second"), 150);
    assert_int_equal(mj_num(v, "brokers.1.conns.0.pace.signals"), 1);
    assert_string_equal(mj_str(v, "brokers.1.tls_cert_expiry"), "2027-01-01T00:00:00.000Z");
    mj_free(v);
    env_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_and_rates_equal_the_traffic),
        cmocka_unit_test(profile_pace_and_certificate),
        cmocka_unit_test(states_follow_the_links),
        cmocka_unit_test(every_string_is_text),
        cmocka_unit_test(nothing_secret),
        cmocka_unit_test(spool_and_its_history),
        cmocka_unit_test(paths_and_methods),
        cmocka_unit_test(reload_without_token_needs_loopback),
        cmocka_unit_test(reload_with_token),
        cmocka_unit_test(history_counter_and_gauge),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
