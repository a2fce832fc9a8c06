/*
 * route.c: what one route does to one message: topic, QoS, retain and properties of the
 * forwarded copy. The payload is never copied here: the copy borrows it from the received
 * packet until the core encodes the outgoing PUBLISH (the only copy the relay makes).
 */
#include <errno.h>
#include <string.h>

#include "route/loopguard.h"
#include "route/route.h"

uint32_t relay_hash(const void *data, size_t n)
{
    const uint8_t *t = data;
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ t[i]) * 16777619u;
    return h;
}

/* The MQTT 5 properties of the forwarded copy into out. Returns their length, or SIZE_MAX when
 * they do not fit; sets o's expiry, expiry_at and props_lost. */
static size_t build_props(const struct relay_map_rule *rule, bool src_v5, bool dst_v5,
                          const struct mqc_props *in, struct mqc_bytes path, const char *id,
                          uint8_t *vbuf, uint8_t *out, size_t cap, struct relay_map_out *o)
{
    bool forward = rule->forward_props && src_v5;
    struct mqc_prop p;
    size_t off = 0, len = 0;

    if (!forward && !dst_v5)
        return 0;
    while (forward && mqc_props_next(in, &off, &p) == MQC_OK) {
        switch (p.id) {
        case MQC_PROP_USER:
            if (relay_loop_is_path(&p))
                continue; /* replaced below, with our id added */
            /* fall through */
        case MQC_PROP_PAYLOAD_FORMAT:
        case MQC_PROP_CONTENT_TYPE:
        case MQC_PROP_RESPONSE_TOPIC:
        case MQC_PROP_CORRELATION_DATA:
        case MQC_PROP_MESSAGE_EXPIRY:
            if (!dst_v5) {
                o->props_lost = true;
                continue;
            }
            if (p.id == MQC_PROP_MESSAGE_EXPIRY) {
                o->expiry = p.num;
                o->expiry_at = len + 1u;
            }
            if (mqc_prop_put(&p, out, cap, &len) != MQC_OK)
                return SIZE_MAX;
            break;
        default: /* Topic Alias, Subscription Identifier: this hop's business only */
            break;
        }
    }
    /* relay-path: the relays this message crossed, oldest first, ours last */
    if (dst_v5 && relay_loop_put_path(path, id, vbuf, RELAY_TOPIC_MAX, out, cap, &len) != 0)
        return SIZE_MAX;
    return len;
}

int relay_map(const struct relay_map_rule *rule, const struct mqc_publish *p, bool src_v5,
              bool dst_v5, struct mqc_bytes path, const char *id, uint8_t *scratch,
              size_t scratch_cap, struct relay_map_out *o)
{
    /* scratch: [destination topic][relay-path value][properties] */
    uint8_t *vbuf = scratch + RELAY_TOPIC_MAX + 1u, *pbuf = scratch + 2u * (RELAY_TOPIC_MAX + 1u);
    size_t plen;

    memset(o, 0, sizeof(*o));
    if (scratch_cap < RELAY_MAP_SCRATCH(0))
        return -E2BIG;
    if (rule->tpl->identity) {
        o->pub.topic = p->topic;
    } else {
        size_t tlen;

        if (relay_tpl_expand(rule->tpl, p->topic.p, p->topic.len, scratch, RELAY_TOPIC_MAX,
                             &tlen) != 0)
            return -EINVAL;
        o->pub.topic = (struct mqc_bytes){scratch, tlen};
    }
    /* at most the route's subscription QoS (a subscription shared with another route may
     * have been made at a higher one), and at most out_qos */
    o->pub.qos = p->qos < rule->sub_qos ? p->qos : rule->sub_qos;
    if (rule->out_qos >= 0 && (uint8_t)rule->out_qos < o->pub.qos)
        o->pub.qos = (uint8_t)rule->out_qos;
    o->pub.retain = rule->keep_retain && p->retain;
    o->pub.packet_id = o->pub.qos ? 1 : 0;
    o->pub.payload = p->payload;
    plen = build_props(rule, src_v5, dst_v5, &p->props, path, id, vbuf, pbuf,
                       scratch_cap - 2u * (RELAY_TOPIC_MAX + 1u), o);
    if (plen == SIZE_MAX)
        return -E2BIG;
    o->pub.props = (struct mqc_props){pbuf, plen};
    return 0;
}
