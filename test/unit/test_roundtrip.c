/* Round trip (STYLE.md §7): for every packet type and every version it exists in (AUTH only in
 * 5.0), in a rich and in a minimal variant: decode(encode(x)) == x field by field (property
 * blocks by bytes), and encode(decode(encode(x))) == encode(x) byte for byte. */
#include "mqc_testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(lit)                                                                                     \
    {                                                                                              \
        (const uint8_t *)(lit), sizeof(lit) - 1                                                    \
    }

/* Storage that the built packet's pointers borrow from. */
struct store {
    struct mqt_props props, will_props;
    struct mqc_sub subs[4];
    struct mqc_bytes filters[4];
    uint8_t codes[8];
};

struct rt_case {
    char name[96];
    uint8_t type;
    uint8_t version;
    int variant; /* 0: rich, 1: minimal, 2: a second shape where the packet has one */
};

static void user_props(struct mqt_props *b)
{
    /* repeated, same name twice, order matters */
    mqt_pb_pair(b, "relay-path", "site-a");
    mqt_pb_pair(b, "relay-path", "site-b");
    mqt_pb_pair(b, "k\xC3\xA9y", "");
}

static void build(const struct rt_case *c, struct mqc_packet *pkt, struct store *st)
{
    bool v5 = c->version == MQC_V5, rich = c->variant != 1;
    memset(pkt, 0, sizeof *pkt);
    memset(st, 0, sizeof *st);
    pkt->type = c->type;
    struct mqt_props *pb = &st->props;
    switch (c->type) {
    case MQC_CONNECT: {
        struct mqc_connect *k = &pkt->u.connect;
        k->version = c->version;
        k->client_id = rich ? (struct mqc_bytes)S("site-a-bifromq-0") : (struct mqc_bytes)S("");
        k->keepalive = rich ? 60 : 0;
        k->clean_start = !rich;
        k->bridge = rich && !v5;
        if (v5 && rich) {
            mqt_pb_num(pb, MQC_PROP_SESSION_EXPIRY, 3600);
            mqt_pb_num(pb, MQC_PROP_RECEIVE_MAXIMUM, 64);
            mqt_pb_num(pb, MQC_PROP_MAXIMUM_PACKET_SIZE, 262144);
            mqt_pb_num(pb, MQC_PROP_TOPIC_ALIAS_MAXIMUM, 10);
            mqt_pb_num(pb, MQC_PROP_REQUEST_RESPONSE_INFO, 1);
            mqt_pb_num(pb, MQC_PROP_REQUEST_PROBLEM_INFO, 0);
            user_props(pb);
            mqt_pb_str(pb, MQC_PROP_AUTH_METHOD, "SCRAM-SHA-1");
            mqt_pb_bin(pb, MQC_PROP_AUTH_DATA, "\x00\x01\xff", 3);
            k->props = mqt_pb(pb);
        }
        if (rich) {
            k->will = true;
            k->will_qos = c->variant == 2 ? 2 : 1;
            k->will_retain = true;
            k->will_topic = (struct mqc_bytes)S("relay/site-a/status");
            k->will_payload = (struct mqc_bytes)S("offline");
            if (v5) {
                struct mqt_props *w = &st->will_props;
                mqt_pb_num(w, MQC_PROP_WILL_DELAY, 5);
                mqt_pb_num(w, MQC_PROP_PAYLOAD_FORMAT, 1);
                mqt_pb_num(w, MQC_PROP_MESSAGE_EXPIRY, 86400);
                mqt_pb_str(w, MQC_PROP_CONTENT_TYPE, "text/plain");
                mqt_pb_str(w, MQC_PROP_RESPONSE_TOPIC, "relay/resp");
                mqt_pb_bin(w, MQC_PROP_CORRELATION_DATA, "\x01\x02", 2);
                user_props(w);
                k->will_props = mqt_pb(w);
            }
            k->has_username = true;
            k->username = (struct mqc_bytes)S("relay");
            k->has_password = true;
            k->password = (struct mqc_bytes){(const uint8_t *)"s\0cr\xfft", 6};
        }
        break;
    }
    case MQC_CONNACK:
        pkt->u.connack.session_present = rich;
        if (v5 && rich) {
            mqt_pb_num(pb, MQC_PROP_SESSION_EXPIRY, 60);
            mqt_pb_num(pb, MQC_PROP_RECEIVE_MAXIMUM, 200);
            mqt_pb_num(pb, MQC_PROP_MAXIMUM_QOS, 1);
            mqt_pb_num(pb, MQC_PROP_RETAIN_AVAILABLE, 1);
            mqt_pb_num(pb, MQC_PROP_MAXIMUM_PACKET_SIZE, 262144);
            mqt_pb_str(pb, MQC_PROP_ASSIGNED_CLIENT_ID, "auto-1");
            mqt_pb_num(pb, MQC_PROP_TOPIC_ALIAS_MAXIMUM, 10);
            mqt_pb_str(pb, MQC_PROP_REASON_STRING, "welcome");
            user_props(pb);
            mqt_pb_num(pb, MQC_PROP_WILDCARD_SUB_AVAILABLE, 1);
            mqt_pb_num(pb, MQC_PROP_SUB_ID_AVAILABLE, 0);
            mqt_pb_num(pb, MQC_PROP_SHARED_SUB_AVAILABLE, 1);
            mqt_pb_num(pb, MQC_PROP_SERVER_KEEP_ALIVE, 60);
            mqt_pb_str(pb, MQC_PROP_RESPONSE_INFO, "resp/");
            mqt_pb_str(pb, MQC_PROP_SERVER_REFERENCE, "other:1883");
            mqt_pb_str(pb, MQC_PROP_AUTH_METHOD, "SCRAM-SHA-1");
            mqt_pb_bin(pb, MQC_PROP_AUTH_DATA, "\x09", 1);
            pkt->u.connack.props = mqt_pb(pb);
        }
        if (!rich)
            pkt->u.connack.code = v5 ? 0x86 : 4;
        break;
    case MQC_PUBLISH: {
        struct mqc_publish *p = &pkt->u.publish;
        p->qos = (uint8_t)(rich ? (c->variant == 2 ? 2 : 1) : 0);
        p->dup = c->variant == 2;
        p->retain = rich;
        p->packet_id = p->qos ? (c->variant == 2 ? 65535 : 1) : 0;
        p->topic = (struct mqc_bytes)S("factory/line-1/cmd/\xE2\x82\xAC");
        p->payload = rich ? (struct mqc_bytes){(const uint8_t *)"\x00\x01\x02payload\xff", 11}
                          : (struct mqc_bytes){NULL, 0};
        if (v5 && rich) {
            mqt_pb_num(pb, MQC_PROP_PAYLOAD_FORMAT, 0);
            mqt_pb_num(pb, MQC_PROP_MESSAGE_EXPIRY, 30);
            mqt_pb_str(pb, MQC_PROP_CONTENT_TYPE, "application/octet-stream");
            mqt_pb_str(pb, MQC_PROP_RESPONSE_TOPIC, "factory/line-1/resp");
            mqt_pb_bin(pb, MQC_PROP_CORRELATION_DATA, "\xde\xad", 2);
            mqt_pb_num(pb, MQC_PROP_SUBSCRIPTION_ID, 1);
            mqt_pb_num(pb, MQC_PROP_SUBSCRIPTION_ID, 268435455);
            mqt_pb_num(pb, MQC_PROP_TOPIC_ALIAS, 3);
            user_props(pb);
            p->props = mqt_pb(pb);
            if (c->variant == 2)
                p->topic = (struct mqc_bytes){NULL, 0}; /* the alias stands for it */
        }
        break;
    }
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBREL:
    case MQC_PUBCOMP:
        pkt->u.ack.packet_id = rich ? 0xBEEF : 1;
        if (v5 && rich) {
            pkt->u.ack.code = (c->type == MQC_PUBREL || c->type == MQC_PUBCOMP) ? 0x92 : 0x10;
            if (c->variant == 0) {
                mqt_pb_str(pb, MQC_PROP_REASON_STRING, "why");
                user_props(pb);
                pkt->u.ack.props = mqt_pb(pb);
            }
        }
        break;
    case MQC_SUBSCRIBE: {
        struct mqc_subscribe *s = &pkt->u.subscribe;
        s->packet_id = 42;
        st->subs[0] = (struct mqc_sub){S("factory/+/cmd/#"), 1};
        st->subs[1] = (struct mqc_sub){S("$share/relay/a/b"), 2};
        st->subs[2] = (struct mqc_sub){S("$oshare/g/x"), 0};
        st->subs[3] = (struct mqc_sub){S("#"), 2};
        if (v5) {
            st->subs[0].options |= MQC_SUB_NO_LOCAL | MQC_SUB_RETAIN_AS_PUBLISHED | 0x20;
            st->subs[1].options |= MQC_SUB_RETAIN_AS_PUBLISHED | 0x10;
        }
        s->subs = st->subs;
        s->count = rich ? 4 : 1;
        if (v5 && rich) {
            mqt_pb_num(pb, MQC_PROP_SUBSCRIPTION_ID, 16384);
            user_props(pb);
            s->props = mqt_pb(pb);
        }
        break;
    }
    case MQC_SUBACK:
    case MQC_UNSUBACK: {
        struct mqc_suback *s = &pkt->u.suback;
        s->packet_id = 42;
        if (c->type == MQC_SUBACK) {
            static const uint8_t c5[] = {0x00, 0x01, 0x02, 0x80, 0x97, 0xa2};
            static const uint8_t c3[] = {0x00, 0x01, 0x02, 0x80};
            memcpy(st->codes, v5 ? c5 : c3, v5 ? sizeof c5 : sizeof c3);
            s->codes = (struct mqc_bytes){st->codes, rich ? (v5 ? 6u : 4u) : 1u};
        } else if (v5) {
            memcpy(st->codes, "\x00\x11\x80\x83\x87\x8f\x91", 7);
            s->codes = (struct mqc_bytes){st->codes, rich ? 7u : 1u};
        }
        if (v5 && rich) {
            mqt_pb_str(pb, MQC_PROP_REASON_STRING, "partly");
            user_props(pb);
            s->props = mqt_pb(pb);
        }
        break;
    }
    case MQC_UNSUBSCRIBE: {
        struct mqc_unsubscribe *u = &pkt->u.unsubscribe;
        u->packet_id = 43;
        st->filters[0] = (struct mqc_bytes)S("factory/+/cmd/#");
        st->filters[1] = (struct mqc_bytes)S("$share/relay/a/b");
        st->filters[2] = (struct mqc_bytes)S("caf\xC3\xA9");
        u->filters = st->filters;
        u->count = rich ? 3 : 1;
        if (v5 && rich) {
            user_props(pb);
            u->props = mqt_pb(pb);
        }
        break;
    }
    case MQC_DISCONNECT:
    case MQC_AUTH:
        if (v5 && rich) {
            pkt->u.reason.code = c->type == MQC_AUTH ? 0x18 : 0x04;
            if (c->variant == 0) {
                if (c->type == MQC_AUTH) {
                    mqt_pb_str(pb, MQC_PROP_AUTH_METHOD, "SCRAM-SHA-1");
                    mqt_pb_bin(pb, MQC_PROP_AUTH_DATA, "\x01", 1);
                } else {
                    mqt_pb_num(pb, MQC_PROP_SESSION_EXPIRY, 0);
                    mqt_pb_str(pb, MQC_PROP_SERVER_REFERENCE, "b:1883");
                }
                mqt_pb_str(pb, MQC_PROP_REASON_STRING, "bye");
                user_props(pb);
                pkt->u.reason.props = mqt_pb(pb);
            }
        }
        break;
    default: /* PINGREQ, PINGRESP */
        break;
    }
}

/* The property blocks the builder made are valid where they sit. */
static void check_blocks(const struct mqc_packet *pkt)
{
    const struct mqc_props *pr = NULL;
    switch (pkt->type) {
    case MQC_CONNECT:
        assert_err(mqc_props_check(&pkt->u.connect.will_props, MQC_CTX_WILL), MQC_OK);
        pr = &pkt->u.connect.props;
        break;
    case MQC_CONNACK:
        pr = &pkt->u.connack.props;
        break;
    case MQC_PUBLISH:
        pr = &pkt->u.publish.props;
        break;
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBREL:
    case MQC_PUBCOMP:
        pr = &pkt->u.ack.props;
        break;
    case MQC_SUBSCRIBE:
        pr = &pkt->u.subscribe.props;
        break;
    case MQC_SUBACK:
    case MQC_UNSUBACK:
        pr = &pkt->u.suback.props;
        break;
    case MQC_UNSUBSCRIBE:
        pr = &pkt->u.unsubscribe.props;
        break;
    case MQC_DISCONNECT:
    case MQC_AUTH:
        pr = &pkt->u.reason.props;
        break;
    default:
        return;
    }
    assert_err(mqc_props_check(pr, pkt->type), MQC_OK);
}

static void run_case(void **state)
{
    const struct rt_case *c = *state;
    struct store st;
    struct mqc_packet x, y, z;
    build(c, &x, &st);
    check_blocks(&x);

    /* encode(x) */
    size_t size = 0, w1 = 0, w2 = 0;
    assert_err(mqc_size(&x, c->version, &size), MQC_OK);
    uint8_t *e1 = malloc(size), *e2 = malloc(size + 16);
    assert_non_null(e1);
    assert_non_null(e2);
    assert_err(mqc_encode(&x, c->version, e1, size, &w1), MQC_OK);
    assert_int_equal(w1, size);
    assert_int_equal(e1[0] >> 4, c->type);

    /* it frames as one whole packet */
    struct mqc_frame f;
    struct mqt_guard g = {0};
    const uint8_t *in = mqt_guard_put(&g, e1, size);
    assert_err(mqc_frame_check(in, size, 0, &f), MQC_OK);
    assert_int_equal(f.total, size);
    assert_int_equal(f.type, c->type);

    /* decode(encode(x)) == x */
    memset(&y, 0x5A, sizeof y);
    assert_err(mqc_decode(in, size, c->version, &y), MQC_OK);
    assert_packet_eq(&x, &y, c->version);
    if (c->type == MQC_PUBLISH) {
        struct mqc_publish p;
        assert_err(mqc_decode_publish(in, size, c->version, &p), MQC_OK);
        struct mqc_packet q = {.type = MQC_PUBLISH, .u.publish = p};
        assert_packet_eq(&x, &q, c->version);
    }

    /* encode(decode(encode(x))) == encode(x): the decoded form (SUBSCRIBE/UNSUBSCRIBE as raw,
     * borrowed property blocks) encodes to the same bytes */
    size_t size2 = 0;
    assert_err(mqc_size(&y, c->version, &size2), MQC_OK);
    assert_int_equal(size2, size);
    memset(e2, 0xEE, size + 16);
    assert_err(mqc_encode(&y, c->version, e2, size + 16, &w2), MQC_OK);
    assert_int_equal(w2, size);
    assert_memory_equal(e2, e1, size);
    assert_int_equal(e2[size], 0xEE);

    /* and that decodes to x again */
    assert_err(mqc_decode(e2, size, c->version, &z), MQC_OK);
    assert_packet_eq(&x, &z, c->version);

    mqt_guard_free(&g);
    free(e1);
    free(e2);
}

static const char *case_name(const void *c)
{
    return ((const struct rt_case *)c)->name;
}

int main(void)
{
    static const uint8_t versions[] = {MQC_V31, MQC_V311, MQC_V5};
    static const char *vname[] = {"", "", "", "3.1", "3.1.1", "5.0"};
    static const char *variant[] = {"rich", "minimal", "second shape"};
    struct rt_case cases[16 * 3 * 3];
    size_t n = 0;
    for (uint8_t t = MQC_CONNECT; t <= MQC_AUTH; t++)
        for (size_t v = 0; v < 3; v++)
            for (int k = 0; k < 3; k++) {
                if (t == MQC_AUTH && versions[v] != MQC_V5)
                    continue; /* AUTH exists only in 5.0 */
                /* a second shape where one exists: CONNECT will QoS 2, PUBLISH QoS 2 + DUP
                 * (+ Topic Alias instead of a topic in 5.0), 5.0 acks/DISCONNECT/AUTH with a
                 * code but no properties (the 3-byte / 1-byte forms) */
                if (k == 2 && !(t == MQC_CONNECT || t == MQC_PUBLISH ||
                                (versions[v] == MQC_V5 && ((t >= MQC_PUBACK && t <= MQC_PUBCOMP) ||
                                                           t == MQC_DISCONNECT || t == MQC_AUTH))))
                    continue;
                struct rt_case *c = &cases[n++];
                c->type = t;
                c->version = versions[v];
                c->variant = k;
                snprintf(c->name, sizeof c->name, "%s %s %s", vname[versions[v]], mqc_type_name(t),
                         variant[k]);
            }
    return mqt_run_table("round trip", cases, n, sizeof cases[0], case_name, run_case);
}
