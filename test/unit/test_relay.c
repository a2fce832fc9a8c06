/* test_relay.c: the core end to end, over the in-memory transport: acknowledgements tied to
 * destinations, queues while a destination is down, pools, the loop guard, backpressure,
 * redelivery after a source reconnect, shutdown. */
#include <errno.h>
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

struct env {
    struct fake_io io;
    struct relay_config cfg;
    struct relay_log log;
    struct relay *r;
    char path[64];
};

static struct env *env_new(const char *conf)
{
    struct env *e = calloc(1, sizeof(*e));
    char err[512];
    FILE *f;

    snprintf(e->path, sizeof(e->path), "/tmp/test_relay_%d.conf", (int)getpid());
    f = fopen(e->path, "w");
    assert_non_null(f);
    fputs(conf, f);
    fclose(f);
    if (relay_config_load(e->path, &e->cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    unlink(e->path);
    relay_log_init(&e->log, getenv("TEST_DEBUG") ? RELAY_LOG_DEBUG : RELAY_LOG_ERROR);
    fake_io_init(&e->io);
    struct relay_env env = {.log = &e->log, .io = &e->io.io, .now_ms = e->io.now, .seed = 1};

    assert_int_equal(relay_new(&e->cfg, &env, &e->r, err, sizeof(err)), 0);
    relay_start(e->r, e->io.now);
    return e;
}

static void env_free(struct env *e)
{
    relay_free(e->r);
    relay_config_cleanup(&e->cfg);
    fake_io_cleanup(&e->io);
    free(e);
}

static struct relay_conn *conn(struct env *e, size_t broker, uint32_t idx)
{
    return &e->r->brokers[broker].conns[idx];
}

static void publish(struct env *e, struct relay_conn *c, const char *topic, uint8_t qos,
                    uint16_t pid, const uint8_t *props, size_t plen)
{
    struct mqc_packet p = {.type = MQC_PUBLISH};

    p.u.publish.topic = (struct mqc_bytes){(const uint8_t *)topic, strlen(topic)};
    p.u.publish.qos = qos;
    p.u.publish.packet_id = pid;
    p.u.publish.payload = (struct mqc_bytes){(const uint8_t *)"hello", 5};
    p.u.publish.props = (struct mqc_props){props, plen};
    assert_int_equal(fake_rx(&e->io, c, &p), 0);
}

static void ack(struct env *e, struct relay_conn *c, uint8_t type, uint16_t pid)
{
    struct mqc_packet p = {.type = type};

    p.u.ack.packet_id = pid;
    assert_int_equal(fake_rx(&e->io, c, &p), 0);
}

#define TWO_BROKERS(extra_b, route)                                                                \
    "relay: { id = \"site-t\"; log_level = \"error\"; };\n"                                        \
    "brokers = (\n"                                                                                \
    "  { name = \"a\"; url = \"mqtt://127.0.0.1:1001\"; version = \"5\"; },\n"                     \
    "  { name = \"b\"; url = \"mqtt://127.0.0.1:1002\"; version = \"3.1.1\"; " extra_b " }\n"      \
    ");\n"                                                                                         \
    "routes = ( " route " );\n"

static void ack_only_after_destination_acks(void **st)
{
    struct env *e = env_new(TWO_BROKERS("", "{ from = \"a\"; to = \"b\"; filter = \"s/#\"; }"));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    struct mqc_packet pk[8];

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, b, false);
    assert_int_equal(fake_link(&e->io, a)->subscribed, 1);
    publish(e, a, "s/x", 1, 10, NULL, 0);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 0); /* no PUBACK yet */
    assert_int_equal(fake_tx(&e->io, b, pk, 8), 1);
    assert_int_equal(pk[0].type, MQC_PUBLISH);
    assert_memory_equal(pk[0].u.publish.topic.p, "s/x", 3);
    assert_memory_equal(pk[0].u.publish.payload.p, "hello", 5);
    assert_int_equal(pk[0].u.publish.qos, 1);
    ack(e, b, MQC_PUBACK, pk[0].u.publish.packet_id);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 1);
    assert_int_equal(pk[0].type, MQC_PUBACK);
    assert_int_equal(pk[0].u.ack.packet_id, 10);
    assert_int_equal(e->r->routes[0].stats.received, 1);
    assert_int_equal(e->r->routes[0].stats.forwarded, 1);
    env_free(e);
}

static void qos2_source_gets_pubrec_after_destination(void **st)
{
    struct env *e = env_new(TWO_BROKERS("", "{ from = \"a\"; to = \"b\"; filter = \"s/#\"; "
                                            "qos = 2; }"));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    struct mqc_packet pk[8];

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, b, false);
    publish(e, a, "s/q2", 2, 3, NULL, 0);
    assert_int_equal(fake_tx(&e->io, b, pk, 8), 1);
    assert_int_equal(pk[0].u.publish.qos, 2);
    uint16_t bp = pk[0].u.publish.packet_id;
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 0);
    ack(e, b, MQC_PUBREC, bp);
    assert_int_equal(fake_tx(&e->io, b, pk, 8), 1);
    assert_int_equal(pk[0].type, MQC_PUBREL);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 1);
    assert_int_equal(pk[0].type, MQC_PUBREC);
    ack(e, a, MQC_PUBREL, 3);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 1);
    assert_int_equal(pk[0].type, MQC_PUBCOMP);
    ack(e, b, MQC_PUBCOMP, bp);
    env_free(e);
}

static void destination_down_holds_acknowledgement(void **st)
{
    struct env *e = env_new(TWO_BROKERS("", "{ from = \"a\"; to = \"b\"; filter = \"s/#\"; }"));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    struct mqc_packet pk[8];

    (void)st;
    fake_open(&e->io, a, false);
    publish(e, a, "s/1", 1, 1, NULL, 0);
    publish(e, a, "s/2", 1, 2, NULL, 0);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 0);
    fake_open(&e->io, b, false);
    int n = fake_link(&e->io, b)->n_early;
    struct mqc_packet *early = fake_link(&e->io, b)->early;
    assert_int_equal(n, 2); /* sent as soon as b was up */
    assert_memory_equal(early[0].u.publish.topic.p, "s/1", 3);
    assert_memory_equal(early[1].u.publish.topic.p, "s/2", 3);
    ack(e, b, MQC_PUBACK, early[1].u.publish.packet_id);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 0); /* in order: 1 first */
    ack(e, b, MQC_PUBACK, early[0].u.publish.packet_id);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 2);
    assert_int_equal(pk[0].u.ack.packet_id, 1);
    assert_int_equal(pk[1].u.ack.packet_id, 2);
    env_free(e);
}

static void template_qos_and_retain(void **st)
{
    struct env *e = env_new(
        TWO_BROKERS("", "{ from = \"a\"; to = \"b\"; filter = \"f/+/x/#\"; "
                        "topic = \"site/${1}/y/${#}\"; out_qos = 0; retain = \"clear\"; }"));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    struct mqc_packet pk[8], p = {.type = MQC_PUBLISH};

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, b, false);
    p.u.publish.topic = (struct mqc_bytes){(const uint8_t *)"f/7/x/a/b", 9};
    p.u.publish.qos = 1;
    p.u.publish.packet_id = 4;
    p.u.publish.retain = true;
    fake_rx(&e->io, a, &p);
    assert_int_equal(fake_tx(&e->io, b, pk, 8), 1);
    assert_int_equal(pk[0].u.publish.topic.len, 12);
    assert_memory_equal(pk[0].u.publish.topic.p, "site/7/y/a/b", 12);
    assert_int_equal(pk[0].u.publish.qos, 0);
    assert_false(pk[0].u.publish.retain);
    /* QoS 0 downstream: the source is acknowledged once it is written */
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 1);
    assert_int_equal(pk[0].u.ack.packet_id, 4);
    /* the '/' before ${#} goes when '#' matched nothing */
    p.u.publish.topic = (struct mqc_bytes){(const uint8_t *)"f/7/x", 5};
    p.u.publish.packet_id = 5;
    fake_rx(&e->io, a, &p);
    assert_int_equal(fake_tx(&e->io, b, pk, 8), 1);
    assert_int_equal(pk[0].u.publish.topic.len, 8);
    assert_memory_equal(pk[0].u.publish.topic.p, "site/7/y", 8);
    env_free(e);
}

#define V5_PAIR(route)                                                                             \
    "relay: { id = \"site-t\"; };\n"                                                               \
    "brokers = (\n"                                                                                \
    "  { name = \"a\"; url = \"mqtt://127.0.0.1:1001\"; },\n"                                      \
    "  { name = \"c\"; url = \"mqtt://127.0.0.1:1003\"; }\n"                                       \
    ");\n"                                                                                         \
    "routes = ( " route " );\n"

static size_t user_prop(uint8_t *buf, size_t len, const char *k, const char *v)
{
    struct mqc_prop p = {.id = MQC_PROP_USER};

    p.str = (struct mqc_bytes){(const uint8_t *)k, strlen(k)};
    p.val = (struct mqc_bytes){(const uint8_t *)v, strlen(v)};
    assert_int_equal(mqc_prop_put(&p, buf, 256, &len), MQC_OK);
    return len;
}

static void relay_path_and_properties(void **st)
{
    struct env *e = env_new(V5_PAIR("{ from = \"a\"; to = \"c\"; filter = \"p/#\"; }"));
    struct relay_conn *a = conn(e, 0, 0), *c = conn(e, 1, 0);
    struct mqc_packet pk[8];
    uint8_t props[256];
    size_t plen = 0;
    struct mqc_prop pr;
    size_t off = 0;

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, c, false);
    plen = user_prop(props, plen, "k1", "v1");
    plen = user_prop(props, plen, "relay-path", "site-x");
    plen = user_prop(props, plen, "k2", "v2");
    struct mqc_prop ct = {.id = MQC_PROP_CONTENT_TYPE, .str = {(const uint8_t *)"text/plain", 10}};
    mqc_prop_put(&ct, props, sizeof(props), &plen);
    publish(e, a, "p/1", 1, 1, props, plen);
    assert_int_equal(fake_tx(&e->io, c, pk, 8), 1);
    /* user properties in order, relay-path extended with our id, content type kept */
    const char *want[][2] = {{"k1", "v1"}, {"k2", "v2"}, {"relay-path", "site-x,site-t"}};
    int u = 0;
    bool have_ct = false;
    while (mqc_props_next(&pk[0].u.publish.props, &off, &pr) == MQC_OK) {
        if (pr.id == MQC_PROP_CONTENT_TYPE)
            have_ct = pr.str.len == 10 && !memcmp(pr.str.p, "text/plain", 10);
        if (pr.id != MQC_PROP_USER)
            continue;
        assert_true(u < 3);
        assert_int_equal(pr.str.len, strlen(want[u][0]));
        assert_memory_equal(pr.str.p, want[u][0], pr.str.len);
        assert_int_equal(pr.val.len, strlen(want[u][1]));
        assert_memory_equal(pr.val.p, want[u][1], pr.val.len);
        u++;
    }
    assert_int_equal(u, 3);
    assert_true(have_ct);
    ack(e, c, MQC_PUBACK, pk[0].u.publish.packet_id);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 1);
    /* a message that already crossed us: dropped as a loop, acknowledged at once */
    plen = user_prop(props, 0, "relay-path", "site-x,site-t");
    publish(e, a, "p/2", 1, 2, props, plen);
    assert_int_equal(fake_tx(&e->io, c, pk, 8), 0);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 1);
    assert_int_equal(pk[0].u.ack.packet_id, 2);
    assert_int_equal(e->r->routes[0].stats.dropped[RELAY_DROP_LOOP], 1);
    env_free(e);
}

static void properties_dropped_but_path_kept(void **st)
{
    struct env *e =
        env_new(V5_PAIR("{ from = \"a\"; to = \"c\"; filter = \"p/#\"; properties = \"drop\"; }"));
    struct relay_conn *a = conn(e, 0, 0), *c = conn(e, 1, 0);
    struct mqc_packet pk[8];
    uint8_t props[256];
    size_t plen = user_prop(props, 0, "k1", "v1"), off = 0;
    struct mqc_prop pr;
    int n = 0;

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, c, false);
    publish(e, a, "p/1", 0, 0, props, plen);
    assert_int_equal(fake_tx(&e->io, c, pk, 8), 1);
    while (mqc_props_next(&pk[0].u.publish.props, &off, &pr) == MQC_OK) {
        assert_int_equal(pr.id, MQC_PROP_USER);
        assert_memory_equal(pr.str.p, "relay-path", 10);
        n++;
    }
    assert_int_equal(n, 1);
    env_free(e);
}

static void pool_keeps_each_topic_on_one_connection(void **st)
{
    struct env *e =
        env_new(TWO_BROKERS("connections = 3;", "{ from = \"a\"; to = \"b\"; filter = \"s/#\"; }"));
    struct relay_conn *a = conn(e, 0, 0);
    struct mqc_packet pk[64];
    int seen[3] = {0}, owner[30];
    char topic[16];

    (void)st;
    for (int t = 0; t < 30; t++)
        owner[t] = -1;
    fake_open(&e->io, a, false);
    for (uint32_t i = 0; i < 3; i++)
        fake_open(&e->io, conn(e, 1, i), false);
    for (int round = 0; round < 2; round++) {
        for (int t = 0; t < 30; t++) {
            snprintf(topic, sizeof(topic), "s/%d", t);
            publish(e, a, topic, 0, 0, NULL, 0);
        }
        for (int i = 0; i < 3; i++) {
            int n = fake_tx(&e->io, conn(e, 1, (uint32_t)i), pk, 64);

            for (int k = 0; k < n; k++) {
                char num[8] = {0};
                int t;

                memcpy(num, pk[k].u.publish.topic.p + 2, pk[k].u.publish.topic.len - 2);
                t = atoi(num);
                /* the same topic always lands on the same connection */
                if (owner[t] < 0)
                    owner[t] = i;
                assert_int_equal(owner[t], i);
            }
            seen[i] += n;
        }
    }
    /* spread over all three, 60 in all */
    assert_true(seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
    assert_int_equal(seen[0] + seen[1] + seen[2], 60);
    env_free(e);
}

static void source_reconnect_forgets_queued_copies(void **st)
{
    struct env *e = env_new(TWO_BROKERS("", "{ from = \"a\"; to = \"b\"; filter = \"s/#\"; }"));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    struct mqc_packet pk[8];

    (void)st;
    fake_open(&e->io, a, false);
    publish(e, a, "s/1", 1, 1, NULL, 0); /* b is down: queued */
    fake_drop(&e->io, a, "test cut");
    e->io.now += 60000;
    relay_core_tick(e->r, e->io.now);
    fake_open(&e->io, a, true); /* the broker kept the session: it redelivers */
    publish(e, a, "s/1", 1, 1, NULL, 0);
    fake_open(&e->io, b, false);
    assert_int_equal(fake_link(&e->io, b)->n_early, 1); /* one copy, not two */
    ack(e, b, MQC_PUBACK, fake_link(&e->io, b)->early[0].u.publish.packet_id);
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 1);
    assert_int_equal(pk[0].u.ack.packet_id, 1);
    env_free(e);
}

static void full_destination_pauses_source(void **st)
{
    struct env *e = env_new(TWO_BROKERS("", "{ from = \"a\"; to = \"b\"; filter = \"s/#\"; }"));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    static uint8_t big[100 * 1024];
    struct mqc_packet p = {.type = MQC_PUBLISH};
    struct mqc_packet pk[32];

    (void)st;
    fake_open(&e->io, a, false);
    p.u.publish.topic = (struct mqc_bytes){(const uint8_t *)"s/big", 5};
    p.u.publish.payload = (struct mqc_bytes){big, sizeof(big)};
    for (int i = 0; i < 10; i++) {
        uint8_t buf[sizeof(big) + 64];
        size_t n;

        mqc_encode(&p, MQC_V5, buf, sizeof(buf), &n);
        relay_core_on_rx(a, buf, n, e->io.now);
    }
    assert_false(fake_link(&e->io, a)->paused);
    uint8_t buf[sizeof(big) + 64];
    size_t n;
    mqc_encode(&p, MQC_V5, buf, sizeof(buf), &n);
    relay_core_on_rx(a, buf, n, e->io.now);
    assert_true(fake_link(&e->io, a)->paused); /* over 1 MiB for b */
    fake_open(&e->io, b, false);
    /* b writes its queue out: under the low mark, a reads again */
    while (fake_tx(&e->io, b, pk, 32) > 0)
        ;
    assert_false(fake_link(&e->io, a)->paused);
    env_free(e);
}

static void shutdown_waits_then_disconnects(void **st)
{
    struct env *e = env_new(TWO_BROKERS("", "{ from = \"a\"; to = \"b\"; filter = \"s/#\"; }"));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    struct mqc_packet pk[8];

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, b, false);
    publish(e, a, "s/1", 1, 1, NULL, 0);
    assert_int_equal(fake_tx(&e->io, b, pk, 8), 1);
    uint16_t bp = pk[0].u.publish.packet_id;
    relay_stop(e->r, e->io.now);
    assert_false(relay_finished(e->r));
    /* a message arriving now is not taken: no acknowledgement */
    publish(e, a, "s/2", 1, 2, NULL, 0);
    assert_int_equal(fake_tx(&e->io, b, pk, 8), 0);
    assert_false(fake_link(&e->io, a)->close_asked);
    ack(e, b, MQC_PUBACK, bp);
    /* the in-flight one is acknowledged, then both links say DISCONNECT */
    assert_int_equal(fake_tx(&e->io, a, pk, 8), 2);
    assert_int_equal(pk[0].type, MQC_PUBACK);
    assert_int_equal(pk[0].u.ack.packet_id, 1);
    assert_int_equal(pk[1].type, MQC_DISCONNECT);
    assert_int_equal(fake_tx(&e->io, b, pk, 8), 1);
    assert_int_equal(pk[0].type, MQC_DISCONNECT);
    relay_flush(e->r, e->io.now);
    assert_true(fake_link(&e->io, a)->close_asked);
    fake_drop(&e->io, a, "closed");
    fake_drop(&e->io, b, "closed");
    assert_true(relay_finished(e->r));
    env_free(e);
}

static void reconnect_backs_off(void **st)
{
    struct env *e = env_new(TWO_BROKERS("reconnect = { min = 1000; max = 8000; };",
                                        "{ from = \"a\"; to = \"b\"; filter = \"s/#\"; }"));
    struct relay_conn *b = conn(e, 1, 0);
    (void)st;
    for (int i = 0; i < 6; i++) {
        fake_link(&e->io, b)->connecting = false;
        fake_drop(&e->io, b, "connection refused");
        uint64_t wait = b->retry_at - e->io.now;
        uint64_t base = i < 3 ? (1000u << i) : 8000u; /* min doubling, up to max */

        assert_true(wait >= base);                                        /* never under min */
        assert_true(wait <= (base * 3 / 2 > 8000 ? 8000 : base * 3 / 2)); /* never over max */
        e->io.now = b->retry_at;
        relay_core_tick(e->r, e->io.now);
        assert_int_equal(fake_link(&e->io, b)->connects, i + 2);
    }
    env_free(e);
}

static void routes_sharing_a_filter_subscribe_once(void **st)
{
    struct env *e = env_new(TWO_BROKERS(
        "", "{ from = \"a\"; to = \"b\"; filter = \"x/#\"; topic = \"one/${#}\"; qos = 0; }, "
            "{ from = \"a\"; to = \"b\"; filter = \"x/#\"; topic = \"two/${#}\"; qos = 2; }"));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    struct mqc_packet pk[8];
    uint8_t props[16];
    size_t plen = 0;
    struct mqc_prop id = {.id = MQC_PROP_SUBSCRIPTION_ID};

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, b, false);
    /* one SUBSCRIBE, at the higher QoS (a second one would replace the first) */
    assert_int_equal(fake_link(&e->io, a)->subscribed, 1);
    id.num = e->r->routes[0].sub_id;
    mqc_prop_put(&id, props, sizeof(props), &plen);
    publish(e, a, "x/y", 2, 9, props, plen);
    assert_int_equal(fake_tx(&e->io, b, pk, 8), 2);
    /* both routes took it, each at most at its own subscription QoS */
    assert_memory_equal(pk[0].u.publish.topic.p, "one/y", 5);
    assert_int_equal(pk[0].u.publish.qos, 0);
    assert_memory_equal(pk[1].u.publish.topic.p, "two/y", 5);
    assert_int_equal(pk[1].u.publish.qos, 2);
    env_free(e);
}

static struct relay_config *load_cfg(const char *conf)
{
    struct relay_config *c = calloc(1, sizeof(*c));
    char path[64], err[512];
    FILE *f;

    snprintf(path, sizeof(path), "/tmp/test_relay_reload_%d.conf", (int)getpid());
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(conf, f);
    fclose(f);
    if (relay_config_load(path, c, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    unlink(path);
    return c;
}

static void reload_changes_routes_on_live_links(void **st)
{
    struct env *e = env_new(TWO_BROKERS("", "{ name = \"keep\"; from = \"a\"; to = \"b\"; "
                                            "filter = \"k/#\"; }, { name = \"old\"; from = "
                                            "\"a\"; to = \"b\"; filter = \"o/#\"; }"));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    struct mqc_packet pk[16];
    char err[256];

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, b, false);
    publish(e, a, "k/1", 1, 1, NULL, 0);
    publish(e, a, "o/1", 1, 2, NULL, 0); /* still in flight to b across the reload */
    assert_int_equal(fake_tx(&e->io, b, pk, 16), 2);
    uint16_t p1 = pk[0].u.publish.packet_id, p2 = pk[1].u.publish.packet_id;
    struct relay_config *n = load_cfg(
        TWO_BROKERS("", "{ name = \"keep\"; from = \"a\"; to = \"b\"; filter = \"k/#\"; }, "
                        "{ name = \"new\"; from = \"a\"; to = \"b\"; filter = \"n/#\"; "
                        "topic = \"N/${#}\"; }"));
    assert_int_equal(relay_reload(e->r, n, e->io.now, err, sizeof(err)), 0);
    /* the same links: no reconnect; one SUBSCRIBE (n/#) and one UNSUBSCRIBE (o/#) */
    assert_int_equal(fake_link(&e->io, a)->connects, 1);
    assert_int_equal(fake_link(&e->io, b)->connects, 1);
    int np = fake_tx(&e->io, a, pk, 16), subs = 0, unsubs = 0;
    for (int i = 0; i < np; i++) {
        if (pk[i].type == MQC_SUBSCRIBE) {
            struct mqc_sub sb;
            size_t off = 0;

            assert_int_equal(mqc_subscribe_next(&pk[i].u.subscribe, MQC_V5, &off, &sb), MQC_OK);
            assert_memory_equal(sb.filter.p, "n/#", 3);
            subs++;
            struct mqc_packet sa = {.type = MQC_SUBACK};
            uint8_t code = 1;
            sa.u.suback.packet_id = pk[i].u.subscribe.packet_id;
            sa.u.suback.codes = (struct mqc_bytes){&code, 1};
            assert_int_equal(fake_rx(&e->io, a, &sa), 0);
        } else if (pk[i].type == MQC_UNSUBSCRIBE) {
            struct mqc_bytes fl;
            size_t off = 0;

            assert_int_equal(mqc_unsubscribe_next(&pk[i].u.unsubscribe, &off, &fl), MQC_OK);
            assert_memory_equal(fl.p, "o/#", 3);
            unsubs++;
            struct mqc_packet ua = {.type = MQC_UNSUBACK};
            uint8_t code = 0;
            ua.u.suback.packet_id = pk[i].u.unsubscribe.packet_id;
            ua.u.suback.codes = (struct mqc_bytes){&code, 1};
            assert_int_equal(fake_rx(&e->io, a, &ua), 0);
        }
    }
    assert_int_equal(subs, 1);
    assert_int_equal(unsubs, 1);
    /* the kept route kept its counters; messages in flight on the removed one still complete */
    assert_int_equal(e->r->n_routes, 2);
    assert_string_equal(e->r->routes[0].cfg->name, "keep");
    assert_int_equal(e->r->routes[0].stats.received, 1);
    ack(e, b, MQC_PUBACK, p1);
    ack(e, b, MQC_PUBACK, p2);
    assert_int_equal(fake_tx(&e->io, a, pk, 16), 2);
    assert_int_equal(e->r->routes[0].stats.forwarded, 1);
    /* the new route forwards with its template */
    publish(e, a, "n/x", 0, 0, NULL, 0);
    assert_int_equal(fake_tx(&e->io, b, pk, 16), 1);
    assert_memory_equal(pk[0].u.publish.topic.p, "N/x", 3);
    relay_config_cleanup(&e->cfg); /* env_free frees e->cfg: swap the new one in */
    e->cfg = *n;
    free(n);
    e->r->cfg = &e->cfg;
    env_free(e);
}

static void reload_refuses_what_needs_a_restart(void **st)
{
    struct env *e = env_new(TWO_BROKERS("", "{ from = \"a\"; to = \"b\"; filter = \"k/#\"; }"));
    struct relay_config *n = load_cfg(
        TWO_BROKERS("connections = 2;", "{ from = \"a\"; to = \"b\"; filter = \"k/#\"; }"));
    char err[256];

    (void)st;
    assert_int_equal(relay_reload(e->r, n, e->io.now, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "broker \"b\": connections changed"));
    assert_ptr_equal(e->r->cfg, &e->cfg); /* nothing changed */
    relay_config_cleanup(n);
    free(n);
    env_free(e);
}

static void reload_reconnects_changed_broker(void **st)
{
    struct env *e = env_new(TWO_BROKERS("", "{ from = \"a\"; to = \"b\"; filter = \"k/#\"; }"));
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    char err[256];

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, b, false);
    struct relay_config *n = load_cfg(
        TWO_BROKERS("username = \"u2\";", "{ from = \"a\"; to = \"b\"; filter = \"k/#\"; }"));
    assert_int_equal(relay_reload(e->r, n, e->io.now, err, sizeof(err)), 0);
    struct mqc_packet pk[4];
    /* b says DISCONNECT and reconnects at once with the new user name; a is untouched */
    assert_int_equal(fake_tx(&e->io, b, pk, 4), 1);
    assert_int_equal(pk[0].type, MQC_DISCONNECT);
    relay_flush(e->r, e->io.now);
    assert_true(fake_link(&e->io, b)->close_asked);
    fake_drop(&e->io, b, "closed by relay");
    relay_core_tick(e->r, e->io.now);
    assert_int_equal(fake_link(&e->io, b)->connects, 2);
    assert_int_equal(fake_link(&e->io, a)->connects, 1);
    fake_link(&e->io, b)->connecting = true;
    relay_core_on_open(b, e->io.now);
    assert_int_equal(fake_tx(&e->io, b, pk, 4), 1);
    assert_int_equal(pk[0].type, MQC_CONNECT);
    assert_memory_equal(pk[0].u.connect.username.p, "u2", 2);
    relay_config_cleanup(&e->cfg);
    e->cfg = *n;
    free(n);
    e->r->cfg = &e->cfg;
    env_free(e);
}

/* A link opened by the fake transport; returns the CONNECT the relay sent on it. */
static struct mqc_connect open_link(struct env *e, struct relay_conn *c)
{
    struct fake_link *l = fake_link(&e->io, c);
    struct mqc_packet pk[4];

    assert_true(l->connecting);
    l->connecting = false;
    l->len = 0;
    relay_core_on_open(c, e->io.now);
    assert_int_equal(fake_tx(&e->io, c, pk, 4), 1);
    assert_int_equal(pk[0].type, MQC_CONNECT);
    return pk[0].u.connect;
}

/* bridge_bit "auto" (the default): a 3.x broker that closes the link before CONNACK (BifroMQ,
 * RabbitMQ) or answers CONNACK 1 (ejabberd) gets the same CONNECT again at once without the
 * bit, on every connection of its pool, for good; not counted as a reconnect. */
static void bridge_bit_refused_then_never_again(void **st)
{
    struct env *e = env_new(TWO_BROKERS("connections = 2;", "{ from = \"a\"; to = \"b\"; "
                                                            "filter = \"s/#\"; }"));
    struct relay_conn *b0 = conn(e, 1, 0), *b1 = conn(e, 1, 1);
    struct mqc_packet ca = {.type = MQC_CONNACK};

    (void)st;
    assert_true(open_link(e, b0).bridge);
    fake_drop(&e->io, b0, "connection closed by server"); /* no CONNACK */
    assert_int_equal(e->io.wake, e->io.now);              /* at once */
    relay_core_tick(e->r, e->io.now);
    assert_int_equal(fake_link(&e->io, b0)->connects, 2);
    assert_false(open_link(e, b0).bridge);
    assert_false(open_link(e, b1).bridge); /* the pool learnt it too */
    assert_int_equal(b0->stats.reconnects, 0);
    /* a later failure is a failure: backoff, counted */
    assert_int_equal(fake_rx(&e->io, b0, &ca), 0);
    fake_drop(&e->io, b0, "connection closed by server");
    assert_int_equal(b0->stats.reconnects, 1);
    assert_true(e->io.wake > e->io.now);
    env_free(e);

    /* CONNACK 1 to the bit: the same */
    e = env_new(TWO_BROKERS("", "{ from = \"a\"; to = \"b\"; filter = \"s/#\"; }"));
    b0 = conn(e, 1, 0);
    assert_true(open_link(e, b0).bridge);
    ca.u.connack.code = 1;
    assert_true(fake_rx(&e->io, b0, &ca) < 0);
    fake_drop(&e->io, b0, "connection closed by relay");
    relay_core_tick(e->r, e->io.now);
    assert_false(open_link(e, b0).bridge);
    assert_int_equal(b0->stats.reconnects, 0);
    env_free(e);

    /* bridge_bit = true insists: a refusal is a failure (backoff), the bit stays */
    e = env_new(TWO_BROKERS("bridge_bit = true;", "{ from = \"a\"; to = \"b\"; "
                                                  "filter = \"s/#\"; }"));
    b0 = conn(e, 1, 0);
    assert_true(open_link(e, b0).bridge);
    fake_drop(&e->io, b0, "connection closed by server");
    assert_true(e->io.wake > e->io.now);
    e->io.now = e->io.wake;
    relay_core_tick(e->r, e->io.now);
    assert_true(open_link(e, b0).bridge);
    env_free(e);

    /* bridge_bit = false never sets it */
    e = env_new(TWO_BROKERS("bridge_bit = false;", "{ from = \"a\"; to = \"b\"; "
                                                   "filter = \"s/#\"; }"));
    assert_false(open_link(e, conn(e, 1, 0)).bridge);
    env_free(e);
}

/* A verdict on the pace (DISCONNECT 0x96): the connection reconnects at once, counted, with the
 * pace the broker's count taught it, kept across reconnects; /metrics shows both. A broker that
 * keeps saying so link after link gets the normal backoff after a few. */
static void pace_verdict_reconnects_at_once(void **st)
{
    struct env *e =
        env_new("relay: { id = \"site-t\"; log_level = \"error\"; };\n"
                "brokers = (\n"
                "  { name = \"a\"; url = \"mqtt://127.0.0.1:1001\"; version = \"5\"; },\n"
                "  { name = \"b\"; url = \"mqtt://127.0.0.1:1002\"; version = \"5\";\n"
                "    reconnect = { min = 1000; max = 8000; }; }\n"
                ");\n"
                "routes = ( { from = \"a\"; to = \"b\"; filter = \"s/#\"; } );\n");
    struct relay_conn *a = conn(e, 0, 0), *b = conn(e, 1, 0);
    struct mqc_packet pk[64], d = {.type = MQC_DISCONNECT};
    char *text = NULL;
    size_t len = 0;
    int n;

    (void)st;
    fake_open(&e->io, a, false);
    fake_open(&e->io, b, false);
    for (uint16_t i = 1; i <= 30; i++)
        publish(e, a, "s/x", 1, i, NULL, 0);
    n = fake_tx(&e->io, b, pk, 64);
    assert_int_equal(n, 30);
    for (int i = 0; i < 20; i++)
        ack(e, b, MQC_PUBACK, pk[i].u.publish.packet_id);
    e->io.now += 100; /* BifroMQ's refusal delay */
    d.u.reason.code = 0x96;
    assert_true(fake_rx(&e->io, b, &d) < 0);
    fake_drop(&e->io, b, "connection closed by server");
    assert_int_equal(b->stats.reconnects, 1);
    assert_int_equal(relay_pace_limit(&b->pace), 20);
    assert_int_equal(b->pace.signals[RELAY_PACE_DISCONNECT_96], 1);
    relay_core_tick(e->r, e->io.now); /* at the same instant: at once, not after reconnect.min */
    assert_int_equal(fake_link(&e->io, b)->connects, 2);
    fake_open(&e->io, b, true);
    assert_int_equal(relay_pace_limit(&b->pace), 20); /* kept across the reconnect */
    assert_int_equal(relay_metrics_render(e->r, e->io.now, &text, &len), 0);
    assert_non_null(
        strstr(text, "mqtt_relay_pace_messages_per_second{broker=\"b\",conn=\"0\"} 20\n"));
    assert_non_null(strstr(text, "mqtt_relay_pace_signals_total{broker=\"b\",conn=\"0\","
                                 "signal=\"disconnect_0x96\"} 1\n"));
    assert_non_null(
        strstr(text, "mqtt_relay_pace_messages_per_second{broker=\"a\",conn=\"0\"} 0\n"));
    free(text);
    /* link after link at once: after a few, the normal backoff */
    int quick = 1;
    for (int round = 0; round < 8; round++) {
        e->io.now += 10;
        d.u.reason.code = 0x89; /* server busy, without anything in flight to judge by */
        assert_true(fake_rx(&e->io, b, &d) < 0);
        fake_drop(&e->io, b, "connection closed by server");
        int before = fake_link(&e->io, b)->connects;
        relay_core_tick(e->r, e->io.now); /* at the same instant: reconnects if "at once" */
        if (fake_link(&e->io, b)->connects == before)
            break;
        quick++;
        fake_open(&e->io, b, true);
    }
    assert_int_equal(quick, 5);
    assert_true(e->io.wake >= e->io.now + 1000);
    env_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ack_only_after_destination_acks),
        cmocka_unit_test(qos2_source_gets_pubrec_after_destination),
        cmocka_unit_test(destination_down_holds_acknowledgement),
        cmocka_unit_test(template_qos_and_retain),
        cmocka_unit_test(relay_path_and_properties),
        cmocka_unit_test(properties_dropped_but_path_kept),
        cmocka_unit_test(bridge_bit_refused_then_never_again),
        cmocka_unit_test(pool_keeps_each_topic_on_one_connection),
        cmocka_unit_test(source_reconnect_forgets_queued_copies),
        cmocka_unit_test(full_destination_pauses_source),
        cmocka_unit_test(shutdown_waits_then_disconnects),
        cmocka_unit_test(reconnect_backs_off),
        cmocka_unit_test(routes_sharing_a_filter_subscribe_once),
        cmocka_unit_test(reload_changes_routes_on_live_links),
        cmocka_unit_test(reload_refuses_what_needs_a_restart),
        cmocka_unit_test(reload_reconnects_changed_broker),
        cmocka_unit_test(pace_verdict_reconnects_at_once),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
