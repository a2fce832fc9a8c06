/* test_session.c: the MQTT client session, driven with scripted broker bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "session/session.h"

/* ---- a recording owner -------------------------------------------------------------------- */

struct rec {
    int ups;
    bool last_sp;
    int publishes;
    struct relay_in_ref refs[64];
    char topics[64][64];
    uint8_t qos[64];
    int publish_ret; /* what the publish hook answers */
    int done_ok, done_drop[RELAY_DROP__COUNT];
    int rx_full_on, rx_full_off;
    int window_over, window_under;
    int rtt_calls;
    uint32_t rtt_base;
    int subacks_refused;
};

static struct rec R;

static void h_up(struct relay_session *s, bool sp, uint64_t now)
{
    (void)s;
    (void)now;
    R.ups++;
    R.last_sp = sp;
}

static int h_publish(struct relay_session *s, const struct mqc_publish *p, struct relay_in_ref ref,
                     uint64_t now)
{
    (void)s;
    (void)now;
    if (R.publishes < 64) {
        R.refs[R.publishes] = ref;
        snprintf(R.topics[R.publishes], 64, "%.*s", (int)p->topic.len, (const char *)p->topic.p);
        R.qos[R.publishes] = p->qos;
    }
    R.publishes++;
    return R.publish_ret;
}

static void h_done(struct relay_session *s, struct relay_msg *m, int drop, uint64_t now)
{
    (void)s;
    (void)now;
    if (drop < 0)
        R.done_ok++;
    else
        R.done_drop[drop]++;
    free(m);
}

static void h_suback(struct relay_session *s, const struct relay_sub *sub, uint8_t code)
{
    (void)s;
    (void)sub;
    if (code >= 0x80)
        R.subacks_refused++;
}

static void h_rx_full(struct relay_session *s, bool full)
{
    (void)s;
    if (full)
        R.rx_full_on++;
    else
        R.rx_full_off++;
}

static void h_window(struct relay_session *s, int t)
{
    (void)s;
    if (t > 0)
        R.window_over++;
    else
        R.window_under++;
}

static void h_rtt(struct relay_session *s, uint32_t base_ms, uint64_t now_ms)
{
    (void)s;
    (void)now_ms;
    R.rtt_calls++;
    R.rtt_base = base_ms;
}

static const struct relay_session_hooks HOOKS = {h_up,      h_publish, h_done, h_suback,
                                                 h_rx_full, h_window,  h_rtt};

static struct relay_log LOG;

/* ---- helpers ------------------------------------------------------------------------------ */

struct fx {
    struct relay_session_cfg cfg;
    struct relay_pace pace; /* the owner's, as the core's connection keeps it */
    struct relay_session *s;
    struct relay_sub subs[12];
    char filters[12][16];
    uint64_t now;
};

static struct fx *fx_new(uint8_t version, uint16_t recv_max, size_t nsubs)
{
    struct fx *f = calloc(1, sizeof(*f));

    memset(&R, 0, sizeof(R));
    relay_log_init(&LOG, RELAY_LOG_ERROR);
    f->cfg = (struct relay_session_cfg){
        .version = version,
        .client_id = "relay-test",
        .keepalive = 60,
        .session_expiry = 3600,
        .receive_maximum = recv_max,
        .max_packet_size = 262144,
        .ack_timeout_ms = 20000,
        .pace = &f->pace,
    };
    relay_pace_init(&f->pace, 0, 0);
    for (size_t i = 0; i < nsubs; i++) {
        snprintf(f->filters[i], sizeof(f->filters[i]), "f/%zu/#", i);
        f->subs[i] = (struct relay_sub){f->filters[i], 1, (uint32_t)i + 1};
    }
    assert_int_equal(relay_session_new(&f->cfg, &HOOKS, f, &LOG, "test#0", &f->s), 0);
    relay_session_set_subs(f->s, f->subs, nsubs);
    f->now = 1000;
    return f;
}

static void fx_free(struct fx *f)
{
    relay_session_free(f->s);
    free(f);
}

/* Everything the session wants to send now, as one byte string. */
static size_t drain_tx(struct fx *f, uint8_t *out, size_t cap)
{
    size_t total = 0, n;

    do {
        assert_int_equal(relay_session_next_tx(f->s, out + total, cap - total, &n, f->now), 0);
        total += n;
    } while (n && total < cap);
    return total;
}

/* Splits bytes into packets: returns the count, fills types and decoded packets. */
static int packets(struct fx *f, const uint8_t *buf, size_t len, struct mqc_packet *pk, int max)
{
    int n = 0;
    size_t off = 0;

    while (off < len && n < max) {
        struct mqc_frame fr;

        assert_int_equal(mqc_frame_check(buf + off, len - off, 0, &fr), MQC_OK);
        if ((buf[off] >> 4) == MQC_CONNECT)
            assert_int_equal(mqc_decode(buf + off, fr.total, 0, &pk[n]), MQC_OK);
        else
            assert_int_equal(mqc_decode(buf + off, fr.total, f->cfg.version, &pk[n]), MQC_OK);
        pk[n].type = (uint8_t)(buf[off] >> 4);
        n++;
        off += fr.total;
    }
    assert_int_equal(off, len);
    return n;
}

static int feed_pkt(struct fx *f, const struct mqc_packet *p)
{
    uint8_t buf[1024];
    size_t n;

    assert_int_equal(mqc_encode(p, f->cfg.version, buf, sizeof(buf), &n), MQC_OK);
    return relay_session_feed(f->s, buf, n, f->now);
}

static int feed_connack(struct fx *f, bool sp, const uint8_t *props, size_t plen)
{
    struct mqc_packet p = {.type = MQC_CONNACK};

    p.u.connack.session_present = sp;
    p.u.connack.props = (struct mqc_props){props, plen};
    return feed_pkt(f, &p);
}

static int feed_ack(struct fx *f, uint8_t type, uint16_t pid, uint8_t code)
{
    struct mqc_packet p = {.type = type};

    p.u.ack.packet_id = pid;
    p.u.ack.code = code;
    return feed_pkt(f, &p);
}

static int feed_publish(struct fx *f, const char *topic, uint8_t qos, uint16_t pid)
{
    struct mqc_packet p = {.type = MQC_PUBLISH};

    p.u.publish.topic = (struct mqc_bytes){(const uint8_t *)topic, strlen(topic)};
    p.u.publish.qos = qos;
    p.u.publish.packet_id = pid;
    p.u.publish.payload = (struct mqc_bytes){(const uint8_t *)"x", 1};
    return feed_pkt(f, &p);
}

/* Open the link, check CONNECT, accept with props, answer every SUBSCRIBE. */
static void bring_up(struct fx *f, bool sp, const uint8_t *props, size_t plen)
{
    uint8_t out[4096];
    struct mqc_packet pk[16];
    size_t n;
    int np;

    assert_int_equal(relay_session_open(f->s, f->now), 0);
    n = drain_tx(f, out, sizeof(out));
    np = packets(f, out, n, pk, 16);
    assert_int_equal(np, 1);
    assert_int_equal(pk[0].type, MQC_CONNECT);
    assert_int_equal(feed_connack(f, sp, props, plen), 0);
    if (relay_session_state(f->s) == RELAY_SS_UP)
        return; /* no subscriptions: publishing starts at once */
    n = drain_tx(f, out, sizeof(out));
    np = packets(f, out, n, pk, 16);
    for (int i = 0; i < np; i++) {
        struct mqc_packet sa = {.type = MQC_SUBACK};
        uint8_t codes[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

        assert_int_equal(pk[i].type, MQC_SUBSCRIBE);
        sa.u.suback.packet_id = pk[i].u.subscribe.packet_id;
        sa.u.suback.codes = (struct mqc_bytes){codes, pk[i].u.subscribe.count};
        assert_int_equal(feed_pkt(f, &sa), 0);
    }
    assert_int_equal(relay_session_state(f->s), RELAY_SS_UP);
}

static struct relay_msg *make_msg(uint8_t version, const char *topic, uint8_t qos)
{
    struct mqc_publish p = {.qos = qos, .packet_id = qos ? 1 : 0};
    size_t size, written, pid_off = 0;
    struct relay_msg *m;

    p.topic = (struct mqc_bytes){(const uint8_t *)topic, strlen(topic)};
    p.payload = (struct mqc_bytes){(const uint8_t *)"payload", 7};
    assert_int_equal(mqc_size_publish(&p, version, &size), MQC_OK);
    m = calloc(1, sizeof(*m) + size);
    assert_int_equal(mqc_encode_publish(&p, version, m->data, size, &written, &pid_off), MQC_OK);
    m->len = (uint32_t)written;
    m->qos = qos;
    m->pid_off = qos ? (uint32_t)pid_off : 0;
    m->route = UINT32_MAX;
    return m;
}

static size_t put_prop(uint8_t *buf, size_t len, uint8_t id, uint32_t num)
{
    struct mqc_prop p = {.id = id, .num = num};

    assert_int_equal(mqc_prop_put(&p, buf, 64, &len), MQC_OK);
    return len;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void connect_v5_advertises_limits(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t out[512];
    struct mqc_packet pk[2];
    struct mqc_prop p;
    size_t n;

    (void)st;
    assert_int_equal(relay_session_open(f->s, f->now), 0);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 2), 1);
    assert_int_equal(pk[0].u.connect.version, MQC_V5);
    assert_false(pk[0].u.connect.clean_start);
    assert_int_equal(pk[0].u.connect.keepalive, 60);
    assert_memory_equal(pk[0].u.connect.client_id.p, "relay-test", 10);
    assert_int_equal(mqc_props_find(&pk[0].u.connect.props, MQC_PROP_RECEIVE_MAXIMUM, &p), MQC_OK);
    assert_int_equal(p.num, 64);
    assert_int_equal(mqc_props_find(&pk[0].u.connect.props, MQC_PROP_MAXIMUM_PACKET_SIZE, &p),
                     MQC_OK);
    assert_int_equal(p.num, 262144);
    assert_int_equal(mqc_props_find(&pk[0].u.connect.props, MQC_PROP_SESSION_EXPIRY, &p), MQC_OK);
    assert_int_equal(p.num, 3600);
    /* no Topic Alias Maximum: BifroMQ refuses more than 10, and we need none */
    assert_int_equal(mqc_props_find(&pk[0].u.connect.props, MQC_PROP_TOPIC_ALIAS_MAXIMUM, &p),
                     MQC_AGAIN);
    fx_free(f);
}

static void connect_v3_bridge_bit_and_fallback(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[512];
    struct mqc_packet pk[2];
    struct mqc_packet ca = {.type = MQC_CONNACK};
    size_t n;

    (void)st;
    f->cfg.try_bridge = true;
    relay_session_open(f->s, f->now);
    n = drain_tx(f, out, sizeof(out));
    packets(f, out, n, pk, 2);
    assert_true(pk[0].u.connect.bridge);
    ca.u.connack.code = 1; /* unacceptable protocol version */
    assert_true(feed_pkt(f, &ca) < 0);
    /* the session says the bit was refused; whether to go on without it is the owner's call */
    assert_int_equal(relay_session_end(f->s), RELAY_END_BRIDGE_REFUSED);
    relay_session_closed(f->s, f->now);
    f->cfg.try_bridge = false;
    relay_session_open(f->s, f->now);
    assert_int_equal(relay_session_end(f->s), RELAY_END_FAILURE);
    n = drain_tx(f, out, sizeof(out));
    packets(f, out, n, pk, 2);
    assert_false(pk[0].u.connect.bridge);
    fx_free(f);
}

/* BifroMQ and RabbitMQ close the socket, with no CONNACK at all, on a bridge-bit CONNECT. */
static void connect_v3_bridge_bit_close_before_connack(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[512];

    (void)st;
    f->cfg.try_bridge = true;
    relay_session_open(f->s, f->now);
    drain_tx(f, out, sizeof(out));
    relay_session_closed(f->s, f->now); /* the broker closed: nothing arrived */
    assert_int_equal(relay_session_end(f->s), RELAY_END_BRIDGE_REFUSED);
    /* without the bit, the same close is a plain failure */
    f->cfg.try_bridge = false;
    relay_session_open(f->s, f->now);
    drain_tx(f, out, sizeof(out));
    relay_session_closed(f->s, f->now);
    assert_int_equal(relay_session_end(f->s), RELAY_END_FAILURE);
    /* with it, a close for a reason of ours (no CONNACK in time) is no refusal either */
    f->cfg.try_bridge = true;
    relay_session_open(f->s, f->now);
    drain_tx(f, out, sizeof(out));
    f->now += 11000;
    assert_true(relay_session_tick(f->s, f->now) < 0);
    relay_session_closed(f->s, f->now);
    assert_int_equal(relay_session_end(f->s), RELAY_END_FAILURE);
    /* and MQTT 5 has no bridge bit */
    fx_free(f);
    f = fx_new(MQC_V5, 64, 0);
    f->cfg.try_bridge = true;
    relay_session_open(f->s, f->now);
    drain_tx(f, out, sizeof(out));
    relay_session_closed(f->s, f->now);
    assert_int_equal(relay_session_end(f->s), RELAY_END_FAILURE);
    fx_free(f);
}

/* RabbitMQ 3.10 answers a QoS 2 PUBLISH with PUBACK: delivered at QoS 1, no protocol error; the
 * link sends at most QoS 1 afterwards; on the next link QoS 2 is tried again. */
static void qos2_answered_with_puback(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[4096];
    struct mqc_packet pk[16];
    size_t n;

    (void)st;
    bring_up(f, false, NULL, 0);
    relay_session_enqueue(f->s, make_msg(MQC_V311, "q2", 2), f->now);
    relay_session_enqueue(f->s, make_msg(MQC_V311, "q2", 2), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 2);
    assert_int_equal(pk[0].u.publish.qos, 2);
    assert_int_equal(pk[1].u.publish.qos, 2);
    assert_int_equal(feed_ack(f, MQC_PUBACK, pk[0].u.publish.packet_id, 0), 0);
    assert_int_equal(feed_ack(f, MQC_PUBACK, pk[1].u.publish.packet_id, 0), 0);
    assert_int_equal(R.done_ok, 2);
    assert_int_equal(relay_session_unacked(f->s), 0);
    assert_false(relay_session_closing(f->s));
    assert_int_equal(relay_session_max_qos(f->s), 1);
    relay_session_enqueue(f->s, make_msg(MQC_V311, "q2", 2), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 1);
    assert_int_equal(pk[0].u.publish.qos, 1); /* re-encoded at QoS 1 */
    assert_int_equal(feed_ack(f, MQC_PUBACK, pk[0].u.publish.packet_id, 0), 0);
    assert_int_equal(R.done_ok, 3);
    /* a PUBREC for a QoS 1 PUBLISH is still impossible: the link closes, saying so */
    relay_session_enqueue(f->s, make_msg(MQC_V311, "q1", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 1);
    assert_true(feed_ack(f, MQC_PUBREC, pk[0].u.publish.packet_id, 0) < 0);
    assert_non_null(strstr(relay_session_why(f->s), "a QoS 1 PUBLISH"));
    relay_session_closed(f->s, f->now);
    bring_up(f, true, NULL, 0);
    assert_int_equal(relay_session_max_qos(f->s), 2);
    fx_free(f);
}

static void subscribe_batches(void **st)
{
    struct fx *f;
    uint8_t out[4096];
    struct mqc_packet pk[16];
    size_t n;

    (void)st;
    /* 3.1.1: 12 filters go in two SUBSCRIBEs (at most 10 each) */
    f = fx_new(MQC_V311, 64, 12);
    relay_session_open(f->s, f->now);
    drain_tx(f, out, sizeof(out));
    feed_connack(f, false, NULL, 0);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 2);
    assert_int_equal(pk[0].u.subscribe.count, 10);
    assert_int_equal(pk[1].u.subscribe.count, 2);
    assert_int_equal(relay_session_state(f->s), RELAY_SS_SUBSCRIBING);
    fx_free(f);
    /* 5.0 with Subscription Identifiers: one per packet, each with its identifier */
    f = fx_new(MQC_V5, 64, 3);
    relay_session_open(f->s, f->now);
    drain_tx(f, out, sizeof(out));
    feed_connack(f, false, NULL, 0);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 3);
    for (int i = 0; i < 3; i++) {
        struct mqc_prop p;

        assert_int_equal(pk[i].u.subscribe.count, 1);
        assert_int_equal(mqc_props_find(&pk[i].u.subscribe.props, MQC_PROP_SUBSCRIPTION_ID, &p),
                         MQC_OK);
        assert_int_equal(p.num, (uint32_t)i + 1);
    }
    fx_free(f);
}

static void publishes_wait_for_suback(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 1);
    uint8_t out[4096];
    struct mqc_packet pk[16];
    size_t n;

    (void)st;
    relay_session_open(f->s, f->now);
    drain_tx(f, out, sizeof(out));
    feed_connack(f, false, NULL, 0);
    relay_session_enqueue(f->s, make_msg(MQC_V311, "a/b", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 1);
    assert_int_equal(pk[0].type, MQC_SUBSCRIBE);
    struct mqc_packet sa = {.type = MQC_SUBACK};
    uint8_t code = 1;
    sa.u.suback.packet_id = pk[0].u.subscribe.packet_id;
    sa.u.suback.codes = (struct mqc_bytes){&code, 1};
    feed_pkt(f, &sa);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 1);
    assert_int_equal(pk[0].type, MQC_PUBLISH);
    fx_free(f);
}

static void window_follows_receive_maximum(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t props[64], out[4096];
    struct mqc_packet pk[16];
    size_t plen = put_prop(props, 0, MQC_PROP_RECEIVE_MAXIMUM, 2), n;

    (void)st;
    bring_up(f, false, props, plen);
    for (int i = 0; i < 5; i++)
        relay_session_enqueue(f->s, make_msg(MQC_V5, "t", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 2);
    assert_int_equal(relay_session_unacked(f->s), 2);
    uint16_t first = pk[0].u.publish.packet_id;
    assert_int_equal(feed_ack(f, MQC_PUBACK, first, 0), 0);
    assert_int_equal(R.done_ok, 1);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 1);
    assert_int_equal(relay_session_unacked(f->s), 2);
    fx_free(f);
}

/* Round trips: CONNECT -> CONNACK, PUBLISH -> PUBACK and PINGREQ -> PINGRESP are measured; a
 * 3.x session with max_inflight "auto" sizes its window from the base round trip (50 per ms,
 * 20..max_inflight_cap) and keeps QoS 2 within 20; a fixed max_inflight stays fixed. */
static void rtt_measured_and_window_sized(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[65536];
    struct mqc_packet pk[64];
    size_t n;

    (void)st;
    f->cfg.max_inflight_cap = 4096;
    assert_int_equal(relay_session_open(f->s, f->now), 0);
    drain_tx(f, out, sizeof(out));
    f->now += 48; /* the CONNACK comes 48 ms after the CONNECT */
    assert_int_equal(feed_connack(f, false, NULL, 0), 0);
    assert_int_equal(relay_session_state(f->s), RELAY_SS_UP);
    assert_int_equal(relay_rtt_base(relay_session_rtt(f->s)), 48);
    assert_int_equal(R.rtt_calls, 1);
    assert_int_equal(R.rtt_base, 48);
    assert_int_equal(relay_session_window_limit(f->s), 48 * 50);

    /* QoS 2 within 20 however large the window; QoS 1 behind them waits its turn (order) */
    for (int i = 0; i < 25; i++)
        relay_session_enqueue(f->s, make_msg(MQC_V311, "t", 2), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), 20);
    assert_int_equal(relay_session_unacked(f->s), 20);

    /* PUBLISH -> PUBREC in 30 ms: a lower base round trip, a smaller window */
    f->now += 30;
    assert_int_equal(feed_ack(f, MQC_PUBREC, pk[0].u.publish.packet_id, 0), 0);
    assert_int_equal(relay_rtt_base(relay_session_rtt(f->s)), 30);
    assert_int_equal(R.rtt_base, 30);
    assert_int_equal(relay_session_window_limit(f->s), 30 * 50);
    /* a slower sample moves the smoothed figure, not the base */
    f->now += 200;
    assert_int_equal(feed_ack(f, MQC_PUBREC, pk[1].u.publish.packet_id, 0), 0);
    assert_int_equal(relay_rtt_base(relay_session_rtt(f->s)), 30);
    assert_true(relay_rtt_smoothed(relay_session_rtt(f->s)) > 30);
    assert_int_equal(R.rtt_calls, 3); /* each of the first samples is told */
    for (int i = 2; i < 6; i++) {     /* then only changes of the base */
        f->now += 1;
        assert_int_equal(feed_ack(f, MQC_PUBREC, pk[i].u.publish.packet_id, 0), 0);
    }
    assert_int_equal(R.rtt_calls, RELAY_RTT_TELL_FIRST);
    assert_int_equal(relay_rtt_base(relay_session_rtt(f->s)), 30);
    fx_free(f);

    /* the cap; and a fixed max_inflight is not sized */
    f = fx_new(MQC_V311, 64, 0);
    f->cfg.max_inflight_cap = 100;
    assert_int_equal(relay_session_open(f->s, f->now), 0);
    drain_tx(f, out, sizeof(out));
    f->now += 500;
    assert_int_equal(feed_connack(f, false, NULL, 0), 0);
    assert_int_equal(relay_session_window_limit(f->s), 100);
    fx_free(f);
    f = fx_new(MQC_V311, 64, 0);
    f->cfg.max_inflight = 30;
    f->cfg.max_inflight_cap = 4096;
    assert_int_equal(relay_session_open(f->s, f->now), 0);
    drain_tx(f, out, sizeof(out));
    f->now += 500;
    assert_int_equal(feed_connack(f, false, NULL, 0), 0);
    assert_int_equal(relay_session_window_limit(f->s), 30);
    for (int i = 0; i < 25; i++) /* fixed: QoS 2 as far as the operator's window goes */
        relay_session_enqueue(f->s, make_msg(MQC_V311, "t", 2), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), 25);
    fx_free(f);

    /* a loopback broker: 0 ms, the floor of 20; PINGREQ -> PINGRESP is a sample too */
    f = fx_new(MQC_V311, 64, 0);
    f->cfg.max_inflight_cap = 4096;
    bring_up(f, false, NULL, 0);
    assert_int_equal(relay_session_window_limit(f->s), 20);
    f->now += 45000;
    assert_int_equal(relay_session_tick(f->s, f->now), 0);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 2), 1);
    assert_int_equal(pk[0].type, MQC_PINGREQ);
    f->now += 7;
    struct mqc_packet pr = {.type = MQC_PINGRESP};
    assert_int_equal(feed_pkt(f, &pr), 0);
    assert_int_equal(relay_session_rtt(f->s)->last, 7);
    assert_int_equal(relay_session_rtt(f->s)->samples, 2);
    fx_free(f);
}

static void resend_with_dup_after_reconnect(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[4096];
    struct mqc_packet pk[16];
    size_t n;
    uint16_t pids[3];

    (void)st;
    bring_up(f, false, NULL, 0);
    for (int i = 0; i < 3; i++)
        relay_session_enqueue(f->s,
                              make_msg(MQC_V311,
                                       i == 0   ? "a"
                                       : i == 1 ? "b"
                                                : "c",
                                       1),
                              f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 3);
    for (int i = 0; i < 3; i++) {
        pids[i] = pk[i].u.publish.packet_id;
        assert_false(pk[i].u.publish.dup);
    }
    feed_ack(f, MQC_PUBACK, pids[1], 0);
    relay_session_closed(f->s, f->now);
    bring_up(f, true, NULL, 0);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 2);
    /* same order, same packet ids, DUP set */
    assert_int_equal(pk[0].u.publish.packet_id, pids[0]);
    assert_int_equal(pk[1].u.publish.packet_id, pids[2]);
    assert_memory_equal(pk[0].u.publish.topic.p, "a", 1);
    assert_memory_equal(pk[1].u.publish.topic.p, "c", 1);
    assert_true(pk[0].u.publish.dup);
    assert_true(pk[1].u.publish.dup);
    fx_free(f);
}

static void qos2_outgoing_resumes_with_pubrel(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t out[4096];
    struct mqc_packet pk[16];
    size_t n;
    uint16_t pid;

    (void)st;
    bring_up(f, false, NULL, 0);
    relay_session_enqueue(f->s, make_msg(MQC_V5, "q2", 2), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 1);
    pid = pk[0].u.publish.packet_id;
    assert_int_equal(feed_ack(f, MQC_PUBREC, pid, 0), 0);
    assert_int_equal(R.done_ok, 1); /* the source can be acknowledged at PUBREC */
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 1);
    assert_int_equal(pk[0].type, MQC_PUBREL);
    assert_int_equal(feed_ack(f, MQC_PUBCOMP, pid, 0), 0);
    assert_int_equal(relay_session_unacked(f->s), 0);
    fx_free(f);
}

static void qos2_pubrel_queued_before_subscribe(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t out[4096];
    struct mqc_packet pk[16];
    size_t n;
    uint16_t pid;

    (void)st;
    bring_up(f, false, NULL, 0);
    relay_session_enqueue(f->s, make_msg(MQC_V5, "q2", 2), f->now);
    n = drain_tx(f, out, sizeof(out));
    packets(f, out, n, pk, 16);
    pid = pk[0].u.publish.packet_id;
    feed_ack(f, MQC_PUBREC, pid, 0);
    relay_session_closed(f->s, f->now); /* PUBREL never written */
    relay_session_open(f->s, f->now);
    drain_tx(f, out, sizeof(out));
    feed_connack(f, true, NULL, 0);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 1);
    assert_int_equal(pk[0].type, MQC_PUBREL);
    assert_int_equal(pk[0].u.ack.packet_id, pid);
    assert_int_equal(feed_ack(f, MQC_PUBCOMP, pid, 0), 0);
    assert_int_equal(relay_session_unacked(f->s), 0);
    fx_free(f);
}

static void incoming_acks_in_arrival_order(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[4096];
    struct mqc_packet pk[16];
    size_t n;

    (void)st;
    bring_up(f, false, NULL, 0);
    R.publish_ret = 1;
    feed_publish(f, "a", 1, 11);
    feed_publish(f, "b", 1, 12);
    feed_publish(f, "c", 1, 13);
    assert_int_equal(R.publishes, 3);
    assert_int_equal(drain_tx(f, out, sizeof(out)), 0); /* nothing acknowledged yet */
    relay_session_in_done(f->s, R.refs[2], f->now);
    relay_session_in_done(f->s, R.refs[1], f->now);
    assert_int_equal(drain_tx(f, out, sizeof(out)), 0); /* 11 first */
    relay_session_in_done(f->s, R.refs[0], f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 3);
    assert_int_equal(pk[0].u.ack.packet_id, 11);
    assert_int_equal(pk[1].u.ack.packet_id, 12);
    assert_int_equal(pk[2].u.ack.packet_id, 13);
    fx_free(f);
}

/* Held messages at receive_maximum: rx_full; reading again only pays once a quarter of them
 * is free (rx_room), so a source that keeps more in flight does not pause and resume the link
 * for every acknowledgement. */
static void rx_room_after_a_quarter(void **st)
{
    struct fx *f = fx_new(MQC_V311, 8, 0);

    (void)st;
    bring_up(f, false, NULL, 0);
    R.publish_ret = 1;
    assert_true(relay_session_rx_room(f->s));
    for (uint16_t i = 0; i < 9; i++)
        feed_publish(f, "t", 1, (uint16_t)(100 + i));
    assert_int_equal(R.publishes, 8); /* the ninth waits */
    assert_true(relay_session_rx_full(f->s));
    assert_false(relay_session_rx_room(f->s));
    relay_session_in_done(f->s, R.refs[0], f->now);
    assert_int_equal(relay_session_resume_rx(f->s, f->now), 0);
    assert_int_equal(R.publishes, 9); /* the ninth taken: 8 held, nothing waits */
    assert_false(relay_session_rx_full(f->s));
    assert_false(relay_session_rx_room(f->s));
    relay_session_in_done(f->s, R.refs[1], f->now);
    assert_false(relay_session_rx_room(f->s)); /* 7 held */
    relay_session_in_done(f->s, R.refs[2], f->now);
    assert_true(relay_session_rx_room(f->s)); /* 6 held: a quarter of 8 free */
    fx_free(f);
}

static void incoming_waits_for_every_destination(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t out[4096];
    struct mqc_packet pk[4];
    size_t n;

    (void)st;
    bring_up(f, false, NULL, 0);
    R.publish_ret = 2; /* two routes took it */
    feed_publish(f, "a", 1, 7);
    relay_session_in_done(f->s, R.refs[0], f->now);
    assert_int_equal(drain_tx(f, out, sizeof(out)), 0);
    relay_session_in_done(f->s, R.refs[0], f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 4), 1);
    assert_int_equal(pk[0].type, MQC_PUBACK);
    /* none took it: acknowledged at once */
    R.publish_ret = 0;
    feed_publish(f, "b", 1, 8);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 4), 1);
    assert_int_equal(pk[0].u.ack.packet_id, 8);
    fx_free(f);
}

static void incoming_qos2_exchange(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[4096];
    struct mqc_packet pk[4];
    size_t n;

    (void)st;
    bring_up(f, false, NULL, 0);
    R.publish_ret = 1;
    feed_publish(f, "a", 2, 5);
    relay_session_in_done(f->s, R.refs[0], f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 4), 1);
    assert_int_equal(pk[0].type, MQC_PUBREC);
    /* the same PUBLISH again (DUP) is not forwarded twice */
    feed_publish(f, "a", 2, 5);
    assert_int_equal(R.publishes, 1);
    drain_tx(f, out, sizeof(out));
    assert_int_equal(feed_ack(f, MQC_PUBREL, 5, 0), 0);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 4), 1);
    assert_int_equal(pk[0].type, MQC_PUBCOMP);
    assert_int_equal(pk[0].u.ack.packet_id, 5);
    fx_free(f);
}

static void stale_ref_after_reconnect_is_ignored(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[4096];

    (void)st;
    bring_up(f, false, NULL, 0);
    R.publish_ret = 1;
    feed_publish(f, "a", 1, 9);
    struct relay_in_ref old = R.refs[0];
    relay_session_closed(f->s, f->now);
    bring_up(f, true, NULL, 0);
    feed_publish(f, "a", 1, 9); /* redelivered */
    relay_session_in_done(f->s, old, f->now);
    assert_int_equal(drain_tx(f, out, sizeof(out)), 0); /* the old copy acknowledges nothing */
    relay_session_in_done(f->s, R.refs[1], f->now);
    assert_int_equal(drain_tx(f, out, sizeof(out)), 4);
    fx_free(f);
}

static void protocol_errors_disconnect_with_reason(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t out[64];
    struct mqc_packet pk[2];
    size_t n;

    (void)st;
    bring_up(f, false, NULL, 0);
    assert_true(feed_ack(f, MQC_PUBACK, 77, 0) < 0);
    assert_true(relay_session_closing(f->s));
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 2), 1);
    assert_int_equal(pk[0].type, MQC_DISCONNECT);
    assert_int_equal(pk[0].u.reason.code, 0x82);
    assert_non_null(strstr(relay_session_why(f->s), "PUBACK for unknown packet id 77"));
    fx_free(f);

    /* a malformed packet: reason 0x81 */
    f = fx_new(MQC_V5, 64, 0);
    bring_up(f, false, NULL, 0);
    static const uint8_t bad[] = {0x30, 0x03, 0x00, 0x05, 'a'}; /* topic length overruns */
    assert_true(relay_session_feed(f->s, bad, sizeof(bad), f->now) < 0);
    n = drain_tx(f, out, sizeof(out));
    packets(f, out, n, pk, 2);
    assert_int_equal(pk[0].u.reason.code, 0x81);
    fx_free(f);

    /* a wildcard in a topic name: 0x90 */
    f = fx_new(MQC_V5, 64, 0);
    bring_up(f, false, NULL, 0);
    static const uint8_t wild[] = {0x30, 0x05, 0x00, 0x02, 'a', '#', 0x00};
    assert_true(relay_session_feed(f->s, wild, sizeof(wild), f->now) < 0);
    n = drain_tx(f, out, sizeof(out));
    packets(f, out, n, pk, 2);
    assert_int_equal(pk[0].u.reason.code, 0x90);
    fx_free(f);

    /* remaining length of 5 bytes: 0x81, noticed at the header */
    f = fx_new(MQC_V5, 64, 0);
    bring_up(f, false, NULL, 0);
    static const uint8_t len5[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F};
    assert_true(relay_session_feed(f->s, len5, sizeof(len5), f->now) < 0);
    fx_free(f);

    /* 3.1.1: no DISCONNECT after a protocol error (it would drop the Will), just close */
    f = fx_new(MQC_V311, 64, 0);
    bring_up(f, false, NULL, 0);
    assert_true(feed_ack(f, MQC_PUBACK, 77, 0) < 0);
    assert_int_equal(drain_tx(f, out, sizeof(out)), 0);
    fx_free(f);
}

static void oversize_packet_refused(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t out[64];
    struct mqc_packet pk[2];
    size_t n;
    /* a PUBLISH announcing 300000 bytes: refused from its header alone */
    static const uint8_t big[] = {0x30, 0xE0, 0xA7, 0x12};

    (void)st;
    bring_up(f, false, NULL, 0);
    assert_true(relay_session_feed(f->s, big, sizeof(big), f->now) < 0);
    n = drain_tx(f, out, sizeof(out));
    packets(f, out, n, pk, 2);
    assert_int_equal(pk[0].u.reason.code, 0x95);
    fx_free(f);
}

static void topic_alias_refused(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t props[16], out[64];
    struct mqc_packet p = {.type = MQC_PUBLISH}, pk[2];
    size_t plen = put_prop(props, 0, MQC_PROP_TOPIC_ALIAS, 1), n;

    (void)st;
    bring_up(f, false, NULL, 0);
    p.u.publish.topic = (struct mqc_bytes){(const uint8_t *)"t", 1};
    p.u.publish.props = (struct mqc_props){props, plen};
    assert_true(feed_pkt(f, &p) < 0);
    n = drain_tx(f, out, sizeof(out));
    packets(f, out, n, pk, 2);
    assert_int_equal(pk[0].u.reason.code, 0x94);
    fx_free(f);
}

static void receive_maximum_exceeded_v5_is_held_not_fatal(void **st)
{
    struct fx *f = fx_new(MQC_V5, 2, 0);

    (void)st;
    bring_up(f, false, NULL, 0);
    R.publish_ret = 1;
    assert_int_equal(feed_publish(f, "a", 1, 1), 0);
    assert_int_equal(feed_publish(f, "a", 1, 2), 0);
    /* a third is over the limit: kept unread, not a reason to close */
    assert_int_equal(feed_publish(f, "a", 1, 3), 0);
    assert_false(relay_session_closing(f->s));
    assert_int_equal(R.publishes, 2);
    assert_int_equal(R.rx_full_on, 1);
    relay_session_in_done(f->s, R.refs[0], f->now);
    assert_int_equal(relay_session_resume_rx(f->s, f->now), 0);
    assert_int_equal(R.publishes, 3);
    fx_free(f);
}

static void v3_cap_defers_publishes_not_acks(void **st)
{
    struct fx *f = fx_new(MQC_V311, 2, 0);
    uint8_t out[4096], in[256];
    struct mqc_packet pk[8];
    size_t n, len = 0, k;

    (void)st;
    bring_up(f, false, NULL, 0);
    /* one message of ours in flight, so its PUBACK must get through */
    relay_session_enqueue(f->s, make_msg(MQC_V311, "out", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    packets(f, out, n, pk, 8);
    uint16_t our = pk[0].u.publish.packet_id;
    R.publish_ret = 1;
    /* three QoS 1 PUBLISHes (cap 2) and then the PUBACK for ours, in one read */
    for (uint16_t i = 1; i <= 3; i++) {
        struct mqc_packet p = {.type = MQC_PUBLISH};
        p.u.publish.topic = (struct mqc_bytes){(const uint8_t *)"in", 2};
        p.u.publish.qos = 1;
        p.u.publish.packet_id = i;
        mqc_encode(&p, MQC_V311, in + len, sizeof(in) - len, &k);
        len += k;
    }
    struct mqc_packet a = {.type = MQC_PUBACK};
    a.u.ack.packet_id = our;
    mqc_encode(&a, MQC_V311, in + len, sizeof(in) - len, &k);
    len += k;
    assert_int_equal(relay_session_feed(f->s, in, len, f->now), 0);
    assert_int_equal(R.publishes, 2);
    assert_int_equal(R.rx_full_on, 1);
    assert_int_equal(R.done_ok, 1); /* the PUBACK behind the deferred PUBLISH was handled */
    relay_session_in_done(f->s, R.refs[0], f->now);
    assert_int_equal(R.rx_full_off, 1);
    assert_int_equal(relay_session_resume_rx(f->s, f->now), 0);
    assert_int_equal(R.publishes, 3);
    fx_free(f);
}

static void byte_at_a_time(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t in[64];
    struct mqc_packet p = {.type = MQC_PUBLISH};
    size_t k;

    (void)st;
    bring_up(f, false, NULL, 0);
    p.u.publish.topic = (struct mqc_bytes){(const uint8_t *)"byte/by/byte", 12};
    p.u.publish.qos = 1;
    p.u.publish.packet_id = 3;
    mqc_encode(&p, MQC_V5, in, sizeof(in), &k);
    for (size_t i = 0; i < k; i++)
        assert_int_equal(relay_session_feed(f->s, in + i, 1, f->now), 0);
    assert_int_equal(R.publishes, 1);
    assert_string_equal(R.topics[0], "byte/by/byte");
    fx_free(f);
}

static void keepalive_and_silent_broker(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[64];
    struct mqc_packet pk[2];
    size_t n;

    (void)st;
    bring_up(f, false, NULL, 0);
    f->now += 44000;
    assert_int_equal(relay_session_tick(f->s, f->now), 0);
    assert_int_equal(drain_tx(f, out, sizeof(out)), 0);
    f->now += 1000; /* 45 s = 3/4 of 60 */
    assert_int_equal(relay_session_tick(f->s, f->now), 0);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 2), 1);
    assert_int_equal(pk[0].type, MQC_PINGREQ);
    /* paused: no answer can arrive, so no timeout; but we keep pinging, every 3/4 keepalive,
     * so the broker hears from us and a closed link shows up as a failed write */
    relay_session_set_rx_paused(f->s, true);
    for (int i = 0; i < 3; i++) {
        f->now += 46000;
        assert_int_equal(relay_session_tick(f->s, f->now), 0);
        n = drain_tx(f, out, sizeof(out));
        assert_int_equal(packets(f, out, n, pk, 2), 1);
        assert_int_equal(pk[0].type, MQC_PINGREQ);
    }
    relay_session_set_rx_paused(f->s, false);
    assert_true(relay_session_tick(f->s, f->now) < 0);
    assert_non_null(strstr(relay_session_why(f->s), "no PINGRESP"));
    fx_free(f);
}

static void ack_timeout_closes(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[256];

    (void)st;
    bring_up(f, false, NULL, 0);
    relay_session_enqueue(f->s, make_msg(MQC_V311, "t", 1), f->now);
    drain_tx(f, out, sizeof(out));
    assert_int_equal(relay_session_deadline(f->s) <= f->now + 20000, 1);
    f->now += 20000;
    assert_true(relay_session_tick(f->s, f->now) < 0);
    assert_non_null(strstr(relay_session_why(f->s), "no acknowledgement"));
    fx_free(f);
}

static void connack_limits_obeyed(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t props[64], out[4096];
    struct mqc_packet pk[4];
    size_t plen = 0, n;

    (void)st;
    /* BifroMQ 3.3/4.0 put 200 in Maximum QoS: clamp to 2; Retain Available 0; Server Keep Alive */
    plen = put_prop(props, plen, MQC_PROP_MAXIMUM_QOS, 200);
    plen = put_prop(props, plen, MQC_PROP_RETAIN_AVAILABLE, 0);
    plen = put_prop(props, plen, MQC_PROP_SERVER_KEEP_ALIVE, 120);
    bring_up(f, false, props, plen);
    assert_int_equal(relay_session_max_qos(f->s), 2);
    assert_int_equal(relay_session_keepalive(f->s), 120);
    struct relay_msg *m = make_msg(MQC_V5, "r", 2);
    m->data[0] |= 1; /* retained */
    relay_session_enqueue(f->s, m, f->now);
    n = drain_tx(f, out, sizeof(out));
    packets(f, out, n, pk, 4);
    assert_int_equal(pk[0].u.publish.qos, 2);
    assert_false(pk[0].u.publish.retain);
    fx_free(f);

    /* Maximum QoS 0 and a small Maximum Packet Size */
    f = fx_new(MQC_V5, 64, 0);
    plen = put_prop(props, 0, MQC_PROP_MAXIMUM_QOS, 0);
    plen = put_prop(props, plen, MQC_PROP_MAXIMUM_PACKET_SIZE, 20);
    bring_up(f, false, props, plen);
    relay_session_enqueue(f->s, make_msg(MQC_V5, "q", 1), f->now);
    relay_session_enqueue(f->s, make_msg(MQC_V5, "a-topic-that-is-too-long-for-20", 0), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 4), 1);
    assert_int_equal(pk[0].u.publish.qos, 0);
    assert_int_equal(R.done_ok, 1);
    assert_int_equal(R.done_drop[RELAY_DROP_TOO_LARGE], 1);
    fx_free(f);
}

static void busy_is_retried_rejected_is_dropped(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t out[4096];
    struct mqc_packet pk[4];
    size_t n;

    (void)st;
    bring_up(f, false, NULL, 0);
    relay_session_enqueue(f->s, make_msg(MQC_V5, "busy", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    packets(f, out, n, pk, 4);
    assert_int_equal(feed_ack(f, MQC_PUBACK, pk[0].u.publish.packet_id, 0x83), 0);
    assert_int_equal(drain_tx(f, out, sizeof(out)), 0); /* not at once */
    f->now += 1000;
    relay_session_tick(f->s, f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 4), 1);
    assert_int_equal(pk[0].type, MQC_PUBLISH);
    assert_int_equal(feed_ack(f, MQC_PUBACK, pk[0].u.publish.packet_id, 0x87), 0);
    assert_int_equal(R.done_drop[RELAY_DROP_NOT_AUTHORIZED], 1);
    fx_free(f);
}

static void expired_message_dropped_at_send(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t props[16], out[4096];
    struct mqc_publish p = {.qos = 1, .packet_id = 1};
    struct mqc_packet pk[4];
    size_t plen = put_prop(props, 0, MQC_PROP_MESSAGE_EXPIRY, 10), size, w, pid_off, n;
    struct relay_msg *m;

    (void)st;
    p.topic = (struct mqc_bytes){(const uint8_t *)"e", 1};
    p.props = (struct mqc_props){props, plen};
    mqc_size_publish(&p, MQC_V5, &size);
    m = calloc(1, sizeof(*m) + size);
    mqc_encode_publish(&p, MQC_V5, m->data, size, &w, &pid_off);
    m->len = (uint32_t)w;
    m->qos = 1;
    m->pid_off = (uint32_t)pid_off;
    m->expiry = 10;
    m->expiry_off = (uint32_t)(w - plen + 1);
    m->t_in_ms = f->now;
    m->route = UINT32_MAX;
    relay_session_enqueue(f->s, m, f->now);
    f->now += 3500; /* held 3.5 s while the link came up */
    bring_up(f, false, NULL, 0);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 4), 1);
    struct mqc_prop e;
    assert_int_equal(mqc_props_find(&pk[0].u.publish.props, MQC_PROP_MESSAGE_EXPIRY, &e), MQC_OK);
    assert_int_equal(e.num, 7);
    /* resent after 11 s: expired by then */
    relay_session_closed(f->s, f->now);
    f->now += 8000;
    bring_up(f, true, NULL, 0);
    assert_int_equal(drain_tx(f, out, sizeof(out)), 0);
    assert_int_equal(R.done_drop[RELAY_DROP_EXPIRED], 1);
    fx_free(f);
}

static void large_publish_split_across_writes(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    static uint8_t payload[40000], out[65536];
    struct mqc_publish p = {.qos = 1, .packet_id = 1};
    struct mqc_packet pk[4];
    size_t size, w, pid_off, total = 0, n;
    struct relay_msg *m;

    (void)st;
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    p.topic = (struct mqc_bytes){(const uint8_t *)"big", 3};
    p.payload = (struct mqc_bytes){payload, sizeof(payload)};
    mqc_size_publish(&p, MQC_V311, &size);
    m = calloc(1, sizeof(*m) + size);
    mqc_encode_publish(&p, MQC_V311, m->data, size, &w, &pid_off);
    m->len = (uint32_t)w;
    m->qos = 1;
    m->pid_off = (uint32_t)pid_off;
    m->route = UINT32_MAX;
    bring_up(f, false, NULL, 0);
    relay_session_enqueue(f->s, m, f->now);
    relay_session_enqueue(f->s, make_msg(MQC_V311, "small", 1), f->now);
    do { /* 16 KiB writes, as the transport makes them */
        relay_session_next_tx(f->s, out + total, 16384, &n, f->now);
        total += n;
    } while (n);
    assert_int_equal(packets(f, out, total, pk, 4), 2);
    assert_memory_equal(pk[0].u.publish.payload.p, payload, sizeof(payload));
    assert_memory_equal(pk[1].u.publish.topic.p, "small", 5);
    fx_free(f);
}

static void window_marks_report(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    static uint8_t out[1 << 21];

    (void)st;
    /* link down: 1100 KiB queued goes over the 1 MiB high mark once */
    for (int i = 0; i < 11; i++) {
        struct mqc_publish p = {.qos = 0};
        static uint8_t pay[100 * 1024];
        size_t size, w;
        struct relay_msg *m;

        p.topic = (struct mqc_bytes){(const uint8_t *)"w", 1};
        p.payload = (struct mqc_bytes){pay, sizeof(pay)};
        mqc_size_publish(&p, MQC_V311, &size);
        m = calloc(1, sizeof(*m) + size);
        mqc_encode_publish(&p, MQC_V311, m->data, size, &w, NULL);
        m->len = (uint32_t)w;
        m->route = UINT32_MAX;
        relay_session_enqueue(f->s, m, f->now);
    }
    assert_int_equal(R.window_over, 1);
    bring_up(f, false, NULL, 0);
    drain_tx(f, out, sizeof(out));
    assert_int_equal(R.window_under, 1);
    assert_int_equal(R.done_ok, 11);
    fx_free(f);
}

/* ---- pacing, the answer policy, topic aliases ------------------------------------------- */

static struct relay_msg *make_msg_p(uint8_t version, const char *topic, uint8_t qos,
                                    const char *payload)
{
    struct mqc_publish p = {.qos = qos, .packet_id = qos ? 1 : 0};
    size_t size, written, pid_off = 0;
    struct relay_msg *m;

    p.topic = (struct mqc_bytes){(const uint8_t *)topic, strlen(topic)};
    p.payload = (struct mqc_bytes){(const uint8_t *)payload, strlen(payload)};
    assert_int_equal(mqc_size_publish(&p, version, &size), MQC_OK);
    m = calloc(1, sizeof(*m) + size);
    assert_int_equal(mqc_encode_publish(&p, version, m->data, size, &written, &pid_off), MQC_OK);
    m->len = (uint32_t)written;
    m->qos = qos;
    m->pid_off = qos ? (uint32_t)pid_off : 0;
    m->route = UINT32_MAX;
    return m;
}

/* The payloads of the PUBLISHes in pk[0..n), as one string "p0 p1 ..." */
static void payloads(const struct mqc_packet *pk, int n, char *out, size_t cap)
{
    size_t o = 0;

    out[0] = '\0';
    for (int i = 0; i < n && o + 1 < cap; i++)
        if (pk[i].type == MQC_PUBLISH)
            o += (size_t)snprintf(out + o, cap - o, "%s%.*s", o ? " " : "",
                                  (int)pk[i].u.publish.payload.len,
                                  (const char *)pk[i].u.publish.payload.p);
}

/* Each PUBACK / PUBREC reason code: delivered, retried later, or dropped by reason. */
static void answer_policy(void **st)
{
    static const struct {
        uint8_t code;
        int drop; /* -1 delivered, -2 retried */
    } table[] = {
        {0x00, -1},
        {0x10, -1},
        {0x83, -2},
        {0x97, -2},
        {0x80, RELAY_DROP_REJECTED},
        {0x87, RELAY_DROP_NOT_AUTHORIZED},
        {0x90, RELAY_DROP_TOPIC_INVALID},
        {0x91, RELAY_DROP_REJECTED},
        {0x99, RELAY_DROP_PAYLOAD_INVALID},
    };

    (void)st;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        for (uint8_t qos = 1; qos <= 2; qos++) {
            struct fx *f = fx_new(MQC_V5, 64, 0);
            uint8_t out[4096];
            struct mqc_packet pk[4];
            size_t n;

            bring_up(f, false, NULL, 0);
            relay_session_enqueue(f->s, make_msg(MQC_V5, "answer/topic", qos), f->now);
            n = drain_tx(f, out, sizeof(out));
            assert_int_equal(packets(f, out, n, pk, 4), 1);
            assert_int_equal(feed_ack(f, qos == 1 ? MQC_PUBACK : MQC_PUBREC,
                                      pk[0].u.publish.packet_id, table[i].code),
                             0);
            n = drain_tx(f, out, sizeof(out));
            if (table[i].drop == -1) {
                /* QoS 1 done; QoS 2 goes on with PUBREL and is finished for us */
                assert_int_equal(R.done_ok, 1);
                if (qos == 2) {
                    assert_int_equal(packets(f, out, n, pk, 4), 1);
                    assert_int_equal(pk[0].type, MQC_PUBREL);
                }
            } else if (table[i].drop == -2) {
                assert_int_equal(n, 0); /* not at once */
                assert_int_equal(R.done_ok, 0);
                f->now += 300;
                relay_session_tick(f->s, f->now);
                n = drain_tx(f, out, sizeof(out));
                assert_int_equal(packets(f, out, n, pk, 4), 1);
                assert_int_equal(pk[0].type, MQC_PUBLISH);
                assert_false(pk[0].u.publish.dup); /* a new PUBLISH, a new packet id */
                assert_int_equal(
                    feed_ack(f, qos == 1 ? MQC_PUBACK : MQC_PUBREC, pk[0].u.publish.packet_id, 0),
                    0);
                assert_int_equal(R.done_ok, 1);
            } else {
                assert_int_equal(R.done_drop[table[i].drop], 1);
                assert_int_equal(R.done_ok, 0);
                assert_int_equal(n, 0); /* no PUBREL for a refused QoS 2 */
            }
            assert_int_equal(relay_session_state(f->s), RELAY_SS_UP);
            fx_free(f);
        }
    }
    assert_string_equal(relay_drop_name(RELAY_DROP_NOT_AUTHORIZED), "not_authorized");
    assert_string_equal(relay_drop_name(RELAY_DROP_TOPIC_INVALID), "topic_invalid");
    assert_string_equal(relay_drop_name(RELAY_DROP_PAYLOAD_INVALID), "payload_invalid");
}

/* "Busy" answers: the refused messages go again in their original order, ahead of everything
 * not yet sent; what the broker accepted in between (pipelined) was delivered; after a lost
 * link the ones still in flight follow the refused ones. */
static void busy_keeps_order(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t out[4096];
    struct mqc_packet pk[16];
    char got[128];
    size_t n;
    uint16_t pid[6];
    int np;

    (void)st;
    bring_up(f, false, NULL, 0);
    for (int i = 0; i < 6; i++) {
        char pl[8];

        snprintf(pl, sizeof(pl), "m%d", i);
        relay_session_enqueue(f->s, make_msg_p(MQC_V5, "same/topic", 1, pl), f->now);
    }
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 16), 6);
    for (int i = 0; i < 6; i++)
        pid[i] = pk[i].u.publish.packet_id;
    relay_session_enqueue(f->s, make_msg_p(MQC_V5, "same/topic", 1, "m6"), f->now);
    assert_int_equal(feed_ack(f, MQC_PUBACK, pid[0], 0x97), 0);
    assert_int_equal(feed_ack(f, MQC_PUBACK, pid[1], 0x97), 0);
    assert_int_equal(feed_ack(f, MQC_PUBACK, pid[2], 0x00), 0); /* the broker took m2 */
    assert_int_equal(feed_ack(f, MQC_PUBACK, pid[3], 0x97), 0);
    assert_int_equal(R.done_ok, 1);
    assert_int_equal(drain_tx(f, out, sizeof(out)), 0); /* backing off */
    relay_pace_init(&f->pace, 0, 0); /* the order is the point here, not the pace */
    /* the link is lost with m4, m5 in flight: m0 m1 m3, then m4 m5, then m6 */
    relay_session_closed(f->s, f->now);
    f->now += 500;
    bring_up(f, true, NULL, 0);
    n = drain_tx(f, out, sizeof(out));
    np = packets(f, out, n, pk, 16);
    payloads(pk, np, got, sizeof(got));
    assert_string_equal(got, "m0 m1 m3 m4 m5 m6");
    assert_false(pk[0].u.publish.dup); /* refused: new PUBLISHes */
    assert_false(pk[2].u.publish.dup);
    assert_true(pk[3].u.publish.dup); /* m4: unacknowledged on the old link */
    assert_int_equal(pk[3].u.publish.packet_id, pid[4]);
    /* busy again for all but m6: the same order once more, after the back-off */
    for (int i = 0; i < np - 1; i++)
        assert_int_equal(feed_ack(f, MQC_PUBACK, pk[i].u.publish.packet_id, 0x83), 0);
    assert_int_equal(feed_ack(f, MQC_PUBACK, pk[np - 1].u.publish.packet_id, 0), 0);
    assert_int_equal(drain_tx(f, out, sizeof(out)), 0);
    relay_pace_init(&f->pace, 0, 0);
    f->now += 10000;
    relay_session_tick(f->s, f->now);
    n = drain_tx(f, out, sizeof(out));
    np = packets(f, out, n, pk, 16);
    payloads(pk, np, got, sizeof(got));
    assert_string_equal(got, "m0 m1 m3 m4 m5");
    fx_free(f);
}

/* The back-off doubles per round of refusals (one round: the messages sent before it began). */
static void busy_backoff_grows_per_round(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t out[4096];
    struct mqc_packet pk[16];
    size_t n;
    uint64_t waits[4];

    (void)st;
    bring_up(f, false, NULL, 0);
    for (int i = 0; i < 3; i++)
        relay_session_enqueue(f->s, make_msg(MQC_V5, "b/t", 1), f->now);
    for (int round = 0; round < 4; round++) {
        uint64_t t0 = f->now;
        int np;

        n = drain_tx(f, out, sizeof(out));
        np = packets(f, out, n, pk, 16);
        assert_int_equal(np, 3);
        for (int i = 0; i < np; i++) /* a whole window refused: one round */
            assert_int_equal(feed_ack(f, MQC_PUBACK, pk[i].u.publish.packet_id, 0x97), 0);
        relay_pace_init(&f->pace, 0, 0);
        while (drain_tx(f, out, sizeof(out)) == 0) {
            f->now += 10;
            relay_session_tick(f->s, f->now);
        }
        waits[round] = f->now - t0;
        /* the retried ones went out (in flight now): back to the queue for the next round */
        relay_session_closed(f->s, f->now);
        relay_pace_init(&f->pace, 0, 0); /* the back-off is the point here, not the pace */
        bring_up(f, true, NULL, 0);
    }
    assert_true(waits[0] >= 250 && waits[0] < 300);
    assert_true(waits[1] >= 500 && waits[1] < 550);
    assert_true(waits[2] >= 1000 && waits[2] < 1050);
    assert_true(waits[3] >= 2000 && waits[3] < 2050);
    fx_free(f);
}

/* DISCONNECT 0x96: a verdict on the pace; the link ends as RELAY_END_PACE, and the pace is what
 * the broker took in its second before the refused message. */
static void disconnect_rate_too_high_teaches_the_pace(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    uint8_t out[8192];
    struct mqc_packet pk[64], d = {.type = MQC_DISCONNECT};
    size_t n;

    (void)st;
    bring_up(f, false, NULL, 0);
    assert_int_equal(relay_pace_limit(relay_session_pace(f->s)), 0);
    for (int i = 0; i < 30; i++)
        relay_session_enqueue(f->s, make_msg(MQC_V5, "fast/t", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), 30);
    for (int i = 0; i < 20; i++)
        assert_int_equal(feed_ack(f, MQC_PUBACK, pk[i].u.publish.packet_id, 0), 0);
    f->now += 100; /* the broker's refusal delay */
    d.u.reason.code = 0x96;
    assert_true(feed_pkt(f, &d) < 0);
    assert_int_equal(relay_session_end(f->s), RELAY_END_PACE);
    assert_int_equal(relay_pace_limit(relay_session_pace(f->s)), 20);
    assert_non_null(strstr(relay_session_why(f->s), "0x96"));
    assert_non_null(strstr(relay_session_why(f->s), "pace lowered to 20"));
    assert_int_equal(relay_session_pace(f->s)->signals[RELAY_PACE_DISCONNECT_96], 1);
    relay_session_closed(f->s, f->now);
    /* the next link: the 10 unacknowledged, paced (burst, then ~51 ms apart) */
    bring_up(f, true, NULL, 0);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), RELAY_PACE_BURST + 1);
    /* another code is no pace signal */
    struct fx *g = fx_new(MQC_V5, 64, 0);
    bring_up(g, false, NULL, 0);
    d.u.reason.code = 0x8E; /* session taken over */
    assert_true(feed_pkt(g, &d) < 0);
    assert_int_equal(relay_session_end(g->s), RELAY_END_FAILURE);
    fx_free(g);
    fx_free(f);
}

/* MQTT 3.x: a missing acknowledgement after a few round trips (not ack_timeout) is a verdict on
 * the pace; MQTT 5 waits for ack_timeout (its brokers say so). */
static void v3_missing_ack_after_round_trips(void **st)
{
    (void)st;
    for (int v5 = 0; v5 <= 1; v5++) {
        struct fx *f = fx_new(v5 ? MQC_V5 : MQC_V311, 64, 0);
        uint8_t out[8192];
        struct mqc_packet pk[64];
        size_t n;
        uint64_t sent;

        bring_up(f, false, NULL, 0);
        /* 20 answered in 3 ms, then 10 more of which 6 are answered: 26 taken in that second */
        for (int i = 0; i < 20; i++)
            relay_session_enqueue(f->s, make_msg(f->cfg.version, "slow/t", 1), f->now);
        n = drain_tx(f, out, sizeof(out));
        assert_int_equal(packets(f, out, n, pk, 64), 20);
        f->now += 3; /* a 3 ms round trip */
        for (int i = 0; i < 20; i++)
            assert_int_equal(feed_ack(f, MQC_PUBACK, pk[i].u.publish.packet_id, 0), 0);
        for (int i = 0; i < 10; i++)
            relay_session_enqueue(f->s, make_msg(f->cfg.version, "slow/t", 1), f->now);
        n = drain_tx(f, out, sizeof(out));
        assert_int_equal(packets(f, out, n, pk, 64), 10);
        sent = f->now;
        f->now += 3;
        for (int i = 0; i < 6; i++)
            assert_int_equal(feed_ack(f, MQC_PUBACK, pk[i].u.publish.packet_id, 0), 0);
        if (!v5) {
            assert_int_equal(relay_session_deadline(f->s), sent + 1000);
            assert_int_equal(relay_session_tick(f->s, sent + 999), 0);
            assert_true(relay_session_tick(f->s, sent + 1000) < 0);
            assert_int_equal(relay_session_end(f->s), RELAY_END_PACE);
            assert_non_null(strstr(relay_session_why(f->s), "round trip"));
            assert_int_equal(relay_pace_limit(relay_session_pace(f->s)), 26);
        } else {
            assert_int_equal(relay_session_tick(f->s, sent + 1000), 0);
            assert_true(relay_session_tick(f->s, sent + 20000) < 0);
            assert_int_equal(relay_session_end(f->s), RELAY_END_FAILURE);
        }
        fx_free(f);
    }
}

/* MQTT 3.x: a silence after a trickle (fewer than RELAY_PACE_SLOWER_MIN taken in that second)
 * is a broker that stalled, not a rate: the link reconnects to resend, the pace stays as it was
 * (a verdict there would hold the link at a few messages a second for minutes). */
static void v3_silence_after_a_trickle_is_no_rate(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[8192];
    struct mqc_packet pk[64];
    size_t n;
    uint64_t sent;

    (void)st;
    bring_up(f, false, NULL, 0);
    for (int i = 0; i < 5; i++)
        relay_session_enqueue(f->s, make_msg(MQC_V311, "slow/t", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), 5);
    sent = f->now;
    f->now += 3;
    for (int i = 0; i < 3; i++)
        assert_int_equal(feed_ack(f, MQC_PUBACK, pk[i].u.publish.packet_id, 0), 0);
    assert_true(relay_session_tick(f->s, sent + 1000) < 0);
    assert_non_null(strstr(relay_session_why(f->s), "stays at 0"));
    assert_int_equal(relay_pace_limit(relay_session_pace(f->s)), 0);
    assert_int_equal(relay_session_pace(f->s)->signals[RELAY_PACE_ACK_TIMEOUT], 0);
    fx_free(f);
}

/* MQTT 3.x: a broker that acknowledges nothing (a restart's recovery, a loaded disk) is waited
 * for twice as long after each such timeout, across reconnects (RFC 6298 5.5), instead of being
 * reconnected to at the same short timeout for ever; one acknowledgement resets it. */
static void v3_missing_ack_backs_off(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[8192];
    struct mqc_packet pk[64];
    size_t n;
    uint64_t wait = 1000, sent0;

    (void)st;
    bring_up(f, false, NULL, 0);
    for (int i = 0; i < 20; i++)
        relay_session_enqueue(f->s, make_msg(MQC_V311, "slow/t", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), 20);
    f->now += 3;
    for (int i = 0; i < 20; i++)
        assert_int_equal(feed_ack(f, MQC_PUBACK, pk[i].u.publish.packet_id, 0), 0);
    for (int i = 0; i < 10; i++)
        relay_session_enqueue(f->s, make_msg(MQC_V311, "slow/t", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), 10);
    sent0 = f->now;
    f->now += 3; /* six more answered in 3 ms (26 in that second), then silence: four left */
    for (int i = 0; i < 6; i++)
        assert_int_equal(feed_ack(f, MQC_PUBACK, pk[i].u.publish.packet_id, 0), 0);
    for (int round = 0; round < 7; round++) {
        uint64_t sent = round ? f->now : sent0;

        assert_int_equal(relay_session_deadline(f->s), sent + wait);
        assert_int_equal(relay_session_tick(f->s, sent + wait - 1), 0);
        assert_true(relay_session_tick(f->s, sent + wait) < 0);
        f->now = sent + wait;
        relay_session_closed(f->s, f->now);
        bring_up(f, true, NULL, 0); /* the same four, resent */
        n = drain_tx(f, out, sizeof(out));
        assert_int_equal(packets(f, out, n, pk, 64), 4);
        wait = wait * 2 > 20000 ? 20000 : wait * 2; /* at most ack_timeout */
        /* one silence: its first timeout judged the pace (26 taken in that second), the
         * others only wait longer */
        assert_int_equal(relay_session_pace(f->s)->signals[RELAY_PACE_ACK_TIMEOUT], 1);
    }
    /* it answers the resends: the back-off stays (no round trip can be taken from a resend) */
    f->now += 5;
    assert_int_equal(feed_ack(f, MQC_PUBACK, pk[0].u.publish.packet_id, 0), 0);
    assert_int_equal(relay_session_deadline(f->s), f->now - 5 + 20000);
    for (int i = 1; i < 4; i++)
        assert_int_equal(feed_ack(f, MQC_PUBACK, pk[i].u.publish.packet_id, 0), 0);
    /* a message sent once, answered: a sample, and back to the round-trip timeout (two
     * seconds apart: the pace learned above spaces them) */
    f->now += 2000;
    relay_session_enqueue(f->s, make_msg(MQC_V311, "slow/t", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), 1);
    f->now += 5;
    assert_int_equal(feed_ack(f, MQC_PUBACK, pk[0].u.publish.packet_id, 0), 0);
    f->now += 2000;
    relay_session_enqueue(f->s, make_msg(MQC_V311, "slow/t", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), 1);
    assert_int_equal(relay_session_deadline(f->s), f->now + 1000);
    fx_free(f);
}

/* MQTT 3.x: a later message acknowledged while an earlier one is not: the broker acknowledges in
 * order, so the earlier one was dropped; a few round trips later (at least 100 ms: a broker
 * that reorders a little gets that long) it is a verdict that counts. */
static void v3_gap_is_a_drop(void **st)
{
    struct fx *f = fx_new(MQC_V311, 64, 0);
    uint8_t out[8192];
    struct mqc_packet pk[64];
    size_t n;

    (void)st;
    bring_up(f, false, NULL, 0);
    for (int i = 0; i < 12; i++)
        relay_session_enqueue(f->s, make_msg(MQC_V311, "gap/t", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), 12);
    f->now += 2;
    for (int i = 0; i < 10; i++)
        assert_int_equal(feed_ack(f, MQC_PUBACK, pk[i].u.publish.packet_id, 0), 0);
    /* a broker that reorders a little: 12 before 11, then 11: nothing happens */
    assert_int_equal(feed_ack(f, MQC_PUBACK, pk[11].u.publish.packet_id, 0), 0);
    assert_int_equal(feed_ack(f, MQC_PUBACK, pk[10].u.publish.packet_id, 0), 0);
    f->now += 300;
    assert_int_equal(relay_session_tick(f->s, f->now), 0);
    for (int i = 0; i < 3; i++)
        relay_session_enqueue(f->s, make_msg(MQC_V311, "gap/t", 1), f->now);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), 3);
    /* the third acknowledged, the first two never: dropped */
    f->now += 2;
    assert_int_equal(feed_ack(f, MQC_PUBACK, pk[2].u.publish.packet_id, 0), 0);
    assert_int_equal(relay_session_deadline(f->s), f->now + 100);
    assert_int_equal(relay_session_tick(f->s, f->now + 99), 0);
    assert_true(relay_session_tick(f->s, f->now + 100) < 0);
    assert_int_equal(relay_session_end(f->s), RELAY_END_PACE);
    assert_non_null(strstr(relay_session_why(f->s), "later ones acknowledged"));
    assert_int_equal(relay_session_pace(f->s)->signals[RELAY_PACE_NO_ACK], 1);
    assert_int_equal(relay_pace_limit(relay_session_pace(f->s)), 12); /* 12 sent before it */
    /* they go again on the next link, with DUP */
    relay_session_closed(f->s, f->now + 100);
    f->now += 200;
    bring_up(f, true, NULL, 0);
    n = drain_tx(f, out, sizeof(out));
    assert_int_equal(packets(f, out, n, pk, 64), 2);
    assert_true(pk[0].u.publish.dup && pk[1].u.publish.dup);
    fx_free(f);
}

/* Egress topic aliases: a topic seen twice gets one (sent with the topic), then goes without
 * its topic; aliases restart with each link; a large message split over writes stays whole. */
static void topic_aliases_egress(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    static uint8_t out[200000], big[100000];
    uint8_t props[16];
    struct mqc_packet pk[16];
    struct mqc_prop ta;
    size_t n, plen = put_prop(props, 0, MQC_PROP_TOPIC_ALIAS_MAXIMUM, 2);
    const char *topic = "factory/line-1/telemetry";
    uint16_t pids[16];
    int np;

    (void)st;
    f->cfg.topic_aliases = 16;
    relay_session_free(f->s);
    assert_int_equal(relay_session_new(&f->cfg, &HOOKS, f, &LOG, "test#0", &f->s), 0);
    bring_up(f, false, props, plen);
    assert_int_equal(relay_session_topic_aliases(f->s), 2); /* the broker's maximum */
    for (int i = 0; i < 4; i++)
        relay_session_enqueue(f->s, make_msg_p(MQC_V5, topic, 1, "x"), f->now);
    n = drain_tx(f, out, sizeof(out));
    np = packets(f, out, n, pk, 16);
    assert_int_equal(np, 4);
    for (int i = 0; i < 4; i++)
        pids[i] = pk[i].u.publish.packet_id;
    /* 1st, 2nd: plain; 3rd: topic + alias 1; 4th: empty topic + alias 1 */
    assert_int_equal(mqc_props_find(&pk[0].u.publish.props, MQC_PROP_TOPIC_ALIAS, &ta), MQC_AGAIN);
    assert_int_equal(mqc_props_find(&pk[1].u.publish.props, MQC_PROP_TOPIC_ALIAS, &ta), MQC_AGAIN);
    assert_int_equal(mqc_props_find(&pk[2].u.publish.props, MQC_PROP_TOPIC_ALIAS, &ta), MQC_OK);
    assert_int_equal(ta.num, 1);
    assert_int_equal(pk[2].u.publish.topic.len, strlen(topic));
    assert_int_equal(mqc_props_find(&pk[3].u.publish.props, MQC_PROP_TOPIC_ALIAS, &ta), MQC_OK);
    assert_int_equal(ta.num, 1);
    assert_int_equal(pk[3].u.publish.topic.len, 0);
    assert_memory_equal(pk[3].u.publish.payload.p, "x", 1);
    assert_int_equal(pk[3].u.publish.packet_id, pids[3]);
    /* a large message on the aliased topic, written 1000 bytes at a time */
    for (size_t i = 0; i < sizeof(big) - 1; i++)
        big[i] = (uint8_t)('a' + i % 26);
    big[sizeof(big) - 1] = '\0';
    relay_session_enqueue(f->s, make_msg_p(MQC_V5, topic, 1, (const char *)big), f->now);
    n = 0;
    for (;;) {
        size_t k;

        relay_session_next_tx(f->s, out + n, 1000, &k, f->now);
        if (!k)
            break;
        n += k;
    }
    np = packets(f, out, n, pk, 16);
    assert_int_equal(np, 1);
    assert_int_equal(pk[0].u.publish.topic.len, 0);
    assert_int_equal(pk[0].u.publish.payload.len, sizeof(big) - 1);
    assert_memory_equal(pk[0].u.publish.payload.p, big, sizeof(big) - 1);
    /* a new link: the unacknowledged messages go again, none relying on an old mapping */
    relay_session_closed(f->s, f->now);
    bring_up(f, true, props, plen);
    n = drain_tx(f, out, sizeof(out));
    np = packets(f, out, n, pk, 16);
    assert_int_equal(np, 5);
    for (int i = 0; i < np; i++) {
        bool aliased = mqc_props_find(&pk[i].u.publish.props, MQC_PROP_TOPIC_ALIAS, &ta) == MQC_OK;

        assert_true(pk[i].u.publish.dup);
        /* the first use of an alias on this link carries the topic */
        if (i == 0 || !aliased)
            assert_int_equal(pk[i].u.publish.topic.len, strlen(topic));
    }
    /* no aliases toward a broker that allows none, nor at 3.1.1 */
    struct fx *g = fx_new(MQC_V5, 64, 0);
    g->cfg.topic_aliases = 16;
    relay_session_free(g->s);
    assert_int_equal(relay_session_new(&g->cfg, &HOOKS, g, &LOG, "test#1", &g->s), 0);
    bring_up(g, false, NULL, 0);
    assert_int_equal(relay_session_topic_aliases(g->s), 0);
    for (int i = 0; i < 5; i++)
        relay_session_enqueue(g->s, make_msg_p(MQC_V5, topic, 0, "y"), g->now);
    n = drain_tx(g, out, sizeof(out));
    np = packets(g, out, n, pk, 16);
    for (int i = 0; i < np; i++)
        assert_int_equal(pk[i].u.publish.topic.len, strlen(topic));
    fx_free(g);
    fx_free(f);
}

/* With more hot topics than aliases: the hottest keep theirs; similar heats do not take turns. */
static void topic_aliases_hottest(void **st)
{
    struct fx *f = fx_new(MQC_V5, 64, 0);
    static uint8_t out[1 << 20];
    uint8_t props[16];
    static struct mqc_packet pk[2000];
    struct mqc_prop ta;
    size_t n, plen = put_prop(props, 0, MQC_PROP_TOPIC_ALIAS_MAXIMUM, 3);
    int np, establish = 0, used = 0;

    (void)st;
    f->cfg.topic_aliases = 3;
    relay_session_free(f->s);
    assert_int_equal(relay_session_new(&f->cfg, &HOOKS, f, &LOG, "test#0", &f->s), 0);
    bring_up(f, false, props, plen);
    /* 3 hot topics (each every other message) and 50 cold ones (once each), QoS 0 */
    for (int i = 0; i < 600; i++) {
        char t[32];

        if (i % 2)
            snprintf(t, sizeof(t), "hot/topic/%d", (i / 2) % 3);
        else
            snprintf(t, sizeof(t), "cold/topic/%d", (i / 2) % 50);
        relay_session_enqueue(f->s, make_msg_p(MQC_V5, t, 0, "z"), f->now);
    }
    n = drain_tx(f, out, sizeof(out));
    np = packets(f, out, n, pk, 2000);
    assert_int_equal(np, 600);
    for (int i = 0; i < np; i++) {
        if (mqc_props_find(&pk[i].u.publish.props, MQC_PROP_TOPIC_ALIAS, &ta) != MQC_OK)
            continue;
        if (pk[i].u.publish.topic.len)
            establish++;
        else
            used++;
    }
    /* the three hot topics each map once (the cold ones, each seen at most twice in a row of
     * 100, never displace them) and use their alias from then on */
    assert_true(establish <= 6);
    assert_true(used >= 280);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connect_v5_advertises_limits),
        cmocka_unit_test(connect_v3_bridge_bit_and_fallback),
        cmocka_unit_test(connect_v3_bridge_bit_close_before_connack),
        cmocka_unit_test(qos2_answered_with_puback),
        cmocka_unit_test(subscribe_batches),
        cmocka_unit_test(publishes_wait_for_suback),
        cmocka_unit_test(window_follows_receive_maximum),
        cmocka_unit_test(resend_with_dup_after_reconnect),
        cmocka_unit_test(qos2_outgoing_resumes_with_pubrel),
        cmocka_unit_test(qos2_pubrel_queued_before_subscribe),
        cmocka_unit_test(incoming_acks_in_arrival_order),
        cmocka_unit_test(incoming_waits_for_every_destination),
        cmocka_unit_test(incoming_qos2_exchange),
        cmocka_unit_test(stale_ref_after_reconnect_is_ignored),
        cmocka_unit_test(protocol_errors_disconnect_with_reason),
        cmocka_unit_test(oversize_packet_refused),
        cmocka_unit_test(topic_alias_refused),
        cmocka_unit_test(receive_maximum_exceeded_v5_is_held_not_fatal),
        cmocka_unit_test(v3_cap_defers_publishes_not_acks),
        cmocka_unit_test(byte_at_a_time),
        cmocka_unit_test(keepalive_and_silent_broker),
        cmocka_unit_test(ack_timeout_closes),
        cmocka_unit_test(connack_limits_obeyed),
        cmocka_unit_test(busy_is_retried_rejected_is_dropped),
        cmocka_unit_test(expired_message_dropped_at_send),
        cmocka_unit_test(large_publish_split_across_writes),
        cmocka_unit_test(window_marks_report),
        cmocka_unit_test(answer_policy),
        cmocka_unit_test(busy_keeps_order),
        cmocka_unit_test(busy_backoff_grows_per_round),
        cmocka_unit_test(disconnect_rate_too_high_teaches_the_pace),
        cmocka_unit_test(v3_missing_ack_after_round_trips),
        cmocka_unit_test(v3_missing_ack_backs_off),
        cmocka_unit_test(v3_silence_after_a_trickle_is_no_rate),
        cmocka_unit_test(v3_gap_is_a_drop),
        cmocka_unit_test(topic_aliases_egress),
        cmocka_unit_test(topic_aliases_hottest),
        cmocka_unit_test(rtt_measured_and_window_sized),
        cmocka_unit_test(rx_room_after_a_quarter),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
