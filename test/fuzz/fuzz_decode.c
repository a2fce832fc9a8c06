/*
 * fuzz_decode: mqc_decode() on any bytes, and re-encoding of whatever it accepts.
 *
 * Input: byte 0 picks the link's version (3 + byte % 3: 3.1, 3.1.1, 5.0); the rest is one
 * frame, copied to an exact-size heap block. When the decoder accepts it:
 *   - it is one whole frame (mqc_frame_check agrees on the size);
 *   - the PUBLISH fast path gives the same answer and fields;
 *   - every property block it hands out passes mqc_props_check for its place and walks to
 *     the end; every SUBSCRIBE/UNSUBSCRIBE list walks to its count, with valid filters;
 *   - mqc_size/mqc_encode re-encode it (size == written, ENOSPC writes nothing), the result
 *     decodes to an equal packet, and encoding that again gives the same bytes.
 */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_props(const struct mqc_props *b, int ctx)
{
    FUZZ_CHECK(mqc_props_check(b, ctx) == MQC_OK, "decoder handed out a block that fails check");
    size_t off = 0, prev = 0, count = 0;
    struct mqc_prop p;
    int rc;
    while ((rc = mqc_props_next(b, &off, &p)) == MQC_OK) {
        FUZZ_CHECK(off > prev && off <= b->len, "walk did not advance");
        FUZZ_CHECK(mqc_prop_size(&p) == off - prev, "prop_size %zu != %zu", mqc_prop_size(&p),
                   off - prev);
        prev = off;
        count++;
    }
    FUZZ_CHECK(rc == MQC_AGAIN && off == b->len, "walk ended %d at %zu of %zu", rc, off, b->len);
}

static void check_decoded(const struct mqc_packet *p, uint8_t v)
{
    switch (p->type) {
    case MQC_CONNECT:
        check_props(&p->u.connect.props, MQC_CONNECT);
        if (p->u.connect.will) {
            check_props(&p->u.connect.will_props, MQC_CTX_WILL);
            FUZZ_CHECK(mqc_topic_name_check(p->u.connect.will_topic.p,
                                            p->u.connect.will_topic.len) == MQC_OK,
                       "will topic");
            FUZZ_CHECK(p->u.connect.will_qos <= 2, "will qos");
        }
        if (p->u.connect.version != MQC_V5)
            FUZZ_CHECK(p->u.connect.props.len == 0, "3.x connect with props");
        break;
    case MQC_CONNACK:
        check_props(&p->u.connack.props, MQC_CONNACK);
        break;
    case MQC_PUBLISH:
        check_props(&p->u.publish.props, MQC_PUBLISH);
        FUZZ_CHECK(p->u.publish.qos <= 2, "qos");
        FUZZ_CHECK((p->u.publish.qos == 0) == (p->u.publish.packet_id == 0), "packet id");
        FUZZ_CHECK(p->u.publish.qos > 0 || !p->u.publish.dup, "dup on qos 0");
        if (p->u.publish.topic.len || v != MQC_V5)
            FUZZ_CHECK(mqc_topic_name_check(p->u.publish.topic.p, p->u.publish.topic.len) == MQC_OK,
                       "topic");
        break;
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBREL:
    case MQC_PUBCOMP:
        check_props(&p->u.ack.props, p->type);
        FUZZ_CHECK(p->u.ack.packet_id != 0, "ack packet id 0");
        break;
    case MQC_SUBSCRIBE: {
        check_props(&p->u.subscribe.props, MQC_SUBSCRIBE);
        FUZZ_CHECK(p->u.subscribe.count > 0, "empty subscribe");
        struct mqc_sub *s;
        size_t n = fz_subs(&p->u.subscribe, v, &s);
        FUZZ_CHECK(n == p->u.subscribe.count, "subscribe walk %zu of %zu", n, p->u.subscribe.count);
        for (size_t i = 0; i < n; i++) {
            FUZZ_CHECK(mqc_topic_filter_check(s[i].filter.p, s[i].filter.len) == MQC_OK, "filter");
            FUZZ_CHECK(MQC_SUB_QOS(s[i].options) <= 2, "sub qos");
            FUZZ_CHECK(v == MQC_V5 ? (s[i].options & 0xC0) == 0 && (s[i].options >> 4) != 3
                                   : (s[i].options & 0xFC) == 0,
                       "options 0x%02x", s[i].options);
        }
        free(s);
        break;
    }
    case MQC_UNSUBSCRIBE: {
        check_props(&p->u.unsubscribe.props, MQC_UNSUBSCRIBE);
        FUZZ_CHECK(p->u.unsubscribe.count > 0, "empty unsubscribe");
        struct mqc_bytes *f;
        size_t n = fz_unsubs(&p->u.unsubscribe, &f);
        FUZZ_CHECK(n == p->u.unsubscribe.count, "unsubscribe walk");
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(mqc_topic_filter_check(f[i].p, f[i].len) == MQC_OK, "filter");
        free(f);
        break;
    }
    case MQC_SUBACK:
    case MQC_UNSUBACK:
        check_props(&p->u.suback.props, p->type);
        break;
    case MQC_DISCONNECT:
    case MQC_AUTH:
        check_props(&p->u.reason.props, p->type);
        break;
    default:
        break;
    }
    if (v != MQC_V5 && p->type != MQC_CONNECT)
        FUZZ_CHECK(p->type != MQC_AUTH, "AUTH accepted on a 3.x link");
}

/* Arrays for re-encoding a decoded SUBSCRIBE/UNSUBSCRIBE (as a caller would build them). */
struct lists {
    struct mqc_sub *subs;
    struct mqc_bytes *filters;
};

static void to_encodable(struct mqc_packet *p, uint8_t v, struct lists *l)
{
    l->subs = NULL;
    l->filters = NULL;
    if (p->type == MQC_SUBSCRIBE) {
        size_t n = fz_subs(&p->u.subscribe, v, &l->subs);
        FUZZ_CHECK(n == p->u.subscribe.count, "walk");
        p->u.subscribe.subs = l->subs;
    } else if (p->type == MQC_UNSUBSCRIBE) {
        size_t n = fz_unsubs(&p->u.unsubscribe, &l->filters);
        FUZZ_CHECK(n == p->u.unsubscribe.count, "walk");
        p->u.unsubscribe.filters = l->filters;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t v = (uint8_t)(3 + data[0] % 3);
    size_t n = size - 1;
    uint8_t *buf = fz_copy(data + 1, n);

    struct mqc_packet p;
    memset(&p, 0, sizeof p);
    int rc = mqc_decode(buf, n, v, &p);
    FUZZ_CHECK(rc <= 0 && rc != MQC_AGAIN, "mqc_decode returned %d", rc);

    /* the PUBLISH fast path agrees with the general decoder */
    struct mqc_publish pub;
    memset(&pub, 0, sizeof pub);
    int prc = mqc_decode_publish(buf, n, v, &pub);
    if (rc == MQC_OK && p.type == MQC_PUBLISH) {
        FUZZ_CHECK(prc == MQC_OK, "decode OK, decode_publish %d", prc);
        struct mqc_packet q = {.type = MQC_PUBLISH};
        q.u.publish = pub;
        const char *d = fz_packet_diff(&p, &q, v);
        FUZZ_CHECK(d == NULL, "decode_publish differs in %s", d);
    } else if (rc == MQC_OK) {
        FUZZ_CHECK(prc != MQC_OK, "decode_publish accepted a %s", mqc_type_name(p.type));
    } else if (n > 0 && (buf[0] >> 4) == MQC_PUBLISH) {
        FUZZ_CHECK(prc == rc, "decode %d, decode_publish %d", rc, prc);
    }

    if (rc != MQC_OK) {
        /* every error has a name and a DISCONNECT reason code */
        FUZZ_CHECK(strcmp(mqc_strerror(rc), "unknown error") != 0, "unnamed error %d", rc);
        FUZZ_CHECK(mqc_reason_code(rc) >= 0x80, "reason code for %d", rc);
        free(buf);
        return 0;
    }

    struct mqc_frame f;
    FUZZ_CHECK(mqc_frame_check(buf, n, 0, &f) == MQC_OK && f.total == n && f.type == p.type,
               "decode accepted what is not exactly one frame");
    check_decoded(&p, v);

    /* re-encode, decode again, encode again */
    uint8_t ev = fz_enc_version(&p, v);
    struct lists l1, l2;
    to_encodable(&p, v, &l1);
    uint8_t *e1 = NULL, *e2 = NULL;
    size_t n1 = 0, n2 = 0;
    rc = fz_encode(&p, ev, &e1, &n1);
    FUZZ_CHECK(rc == MQC_OK, "decoded %s does not re-encode: %d", mqc_type_name(p.type), rc);
    FUZZ_CHECK(n1 <= n, "re-encoding is longer (%zu) than the input (%zu)", n1, n);

    struct mqc_packet p2;
    memset(&p2, 0, sizeof p2);
    rc = mqc_decode(e1, n1, v, &p2);
    FUZZ_CHECK(rc == MQC_OK, "re-encoded %s does not decode: %d", mqc_type_name(p.type), rc);
    const char *d = fz_packet_diff(&p, &p2, v);
    FUZZ_CHECK(d == NULL, "decode(encode(decode(x))) differs in %s", d);

    to_encodable(&p2, v, &l2);
    rc = fz_encode(&p2, ev, &e2, &n2);
    FUZZ_CHECK(rc == MQC_OK && n2 == n1 && memcmp(e1, e2, n1) == 0, "encoding is not stable");

    /* the shortest encoding is what we produce: a packet that re-encodes to the same length
     * must be byte-identical to its input */
    if (n1 == n) {
        /* except 3.1's DUP on PUBREL/SUBSCRIBE/UNSUBSCRIBE, accepted but not kept */
        bool dup31 = v == MQC_V31 && (buf[0] & 0x0F) == 0x0A &&
                     (p.type == MQC_PUBREL || p.type == MQC_SUBSCRIBE || p.type == MQC_UNSUBSCRIBE);
        FUZZ_CHECK(e1[0] == (dup31 ? (buf[0] & ~0x08) : buf[0]) &&
                       memcmp(e1 + 1, buf + 1, n - 1) == 0,
                   "same length, different bytes");
    }

    free(l1.subs);
    free(l1.filters);
    free(l2.subs);
    free(l2.filters);
    free(e1);
    free(e2);
    free(buf);
    return 0;
}
