/*
 * alias.c: egress topic aliases (MQTT 5) and how a PUBLISH goes on the wire.
 *
 * A message is encoded once, with its whole topic (util/msg.h); a Topic Alias is applied at send
 * time, here, without a second encoding: the wire form is a list of segments, some from the
 * message's bytes, some from a few bytes of the session's own (a new fixed header, an empty
 * topic, the property block's new length and the Topic Alias property). A PUBLISH larger than
 * one write continues from the same plan (session.c keeps it with the message).
 *
 * Which topics: a link may map at most min(topic_aliases, the broker's Topic Alias Maximum)
 * topics. A count sketch (ALIAS_SKETCH buckets by topic hash, halved every ALIAS_DECAY sends)
 * tells how hot a topic is lately; a topic seen twice gets a free alias, or takes the one of the
 * coldest mapped topic when it is clearly hotter (hysteresis: mapped topics of similar heat do
 * not take turns, which would cost 3 bytes each time and save nothing). The mappings die with
 * the link; a message resent after a reconnect is planned again on the new link, so it is right
 * by construction.
 */
#include <stdlib.h>
#include <string.h>

#include "session/internal.h"

static uint32_t topic_hash(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void plain(struct sess_wire *w, const struct relay_msg *m)
{
    w->seg[0].own = 0;
    w->seg[0].off = 0;
    w->seg[0].n = m->len;
    w->nseg = 1;
    w->len = m->len;
    w->alias = 0;
    w->establish = false;
    w->hash = 0;
    w->topic_off = 0;
    w->tlen = 0;
}

static void seg(struct sess_wire *w, uint8_t own, uint32_t off, uint32_t n)
{
    if (!n)
        return;
    w->seg[w->nseg].own = own;
    w->seg[w->nseg].off = off;
    w->seg[w->nseg].n = n;
    w->nseg++;
    w->len += n;
}

/* The mapped alias of the topic (hash h) or 0. */
static uint16_t find(const struct sess_aliases *a, uint32_t h, const uint8_t *t, uint16_t tlen)
{
    for (uint16_t i = 0; i < a->used; i++) {
        const struct sess_alias_ent *e = &a->ent[i];

        if (e->hash == h && e->tlen == tlen && !memcmp(e->topic, t, tlen))
            return (uint16_t)(i + 1u);
    }
    return 0;
}

/* The alias a new topic of heat `heat` would take: a free one, the coldest mapped one when the
 * topic is clearly hotter, or 0. */
static uint16_t pick(const struct sess_aliases *a, uint16_t heat)
{
    uint16_t best = 0, cold = UINT16_MAX;

    if (heat < 2)
        return 0;
    if (a->used < a->max)
        return (uint16_t)(a->used + 1u);
    for (uint16_t i = 0; i < a->used; i++) {
        uint16_t c = a->count[a->ent[i].hash % ALIAS_SKETCH];

        if (c < cold) {
            cold = c;
            best = (uint16_t)(i + 1u);
        }
    }
    return heat > cold + 1u + cold / 4u ? best : 0;
}

void sess_wire_plan(struct relay_session *s, const struct relay_msg *m, struct sess_wire *w)
{
    struct sess_aliases *a = &s->alias;
    uint32_t rl, plen, new_plen, new_rl, tl, q, body, pid_n, h;
    size_t vl, pvl, used;
    uint16_t tlen, alias;
    const uint8_t *t;

    plain(w, m);
    if (!a->max || s->cfg->version != MQC_V5 || m->len < 4)
        return;
    /* the message as encoded: fixed header, topic, packet id, properties, payload */
    if (mqc_varint_decode(m->data + 1, m->len - 1, &rl, &vl) != MQC_OK)
        return;
    tl = 1u + (uint32_t)vl; /* the topic's length field */
    if (tl + 2u > m->len)
        return;
    tlen = (uint16_t)(m->data[tl] << 8 | m->data[tl + 1]);
    t = m->data + tl + 2u;
    pid_n = m->qos ? 2u : 0u;
    q = tl + 2u + tlen + pid_n; /* the property length */
    if (tlen < ALIAS_MIN_TOPIC || q >= m->len ||
        mqc_varint_decode(m->data + q, m->len - q, &plen, &pvl) != MQC_OK)
        return;
    body = q + (uint32_t)pvl; /* the properties themselves */
    h = topic_hash(t, tlen);
    w->hash = h;
    w->topic_off = (uint32_t)(t - m->data);
    w->tlen = tlen;
    alias = find(a, h, t, tlen);
    if (!alias) {
        alias = pick(a, a->count[h % ALIAS_SKETCH]);
        if (!alias)
            return;
        w->establish = true;
    }
    new_plen = plen + 3u;
    new_rl = rl + 3u + (uint32_t)(mqc_varint_size(new_plen) - pvl) - (w->establish ? 0u : tlen);
    if (new_rl > MQC_MAX_REMAINING || 1u + mqc_varint_size(new_rl) + new_rl > s->peer_max_packet) {
        w->establish = false;
        return;
    }
    w->nseg = 0;
    w->len = 0;
    w->hdr[0] = m->data[0];
    mqc_varint_encode(new_rl, w->hdr + 1, 4, &used);
    if (w->establish) {
        seg(w, 1, 0, 1u + (uint32_t)used);
        seg(w, 0, tl, 2u + tlen + pid_n); /* topic and packet id as they are */
    } else {
        w->hdr[1 + used] = 0; /* an empty topic: the alias stands for it */
        w->hdr[2 + used] = 0;
        seg(w, 1, 0, 3u + (uint32_t)used);
        seg(w, 0, tl + 2u + tlen, pid_n); /* the packet id */
    }
    mqc_varint_encode(new_plen, w->hdr + 8, 4, &used);
    w->hdr[8 + used] = MQC_PROP_TOPIC_ALIAS;
    w->hdr[9 + used] = (uint8_t)(alias >> 8);
    w->hdr[10 + used] = (uint8_t)alias;
    seg(w, 1, 8, 3u + (uint32_t)used);
    seg(w, 0, body, m->len - body);
    w->alias = alias;
}

void sess_alias_commit(struct relay_session *s, const struct sess_wire *w,
                       const struct relay_msg *m)
{
    struct sess_aliases *a = &s->alias;

    if (!a->max)
        return;
    if (w->tlen) {
        uint16_t *c = &a->count[w->hash % ALIAS_SKETCH];

        if (*c < UINT16_MAX)
            (*c)++;
    }
    if (++a->ticks >= ALIAS_DECAY) {
        a->ticks = 0;
        for (uint32_t i = 0; i < ALIAS_SKETCH; i++)
            a->count[i] /= 2u;
    }
    if (w->alias && w->establish) {
        struct sess_alias_ent *e = &a->ent[w->alias - 1u];
        uint8_t *copy = malloc(w->tlen);

        if (!copy) {
            /* the broker now maps the alias to this topic, and we cannot remember it: never
             * use the alias again on this link */
            free(e->topic);
            e->topic = NULL;
            e->tlen = 0;
            e->hash = 0;
        } else {
            memcpy(copy, m->data + w->topic_off, w->tlen);
            free(e->topic);
            e->topic = copy;
            e->tlen = w->tlen;
            e->hash = w->hash;
        }
        if (w->alias > a->used)
            a->used = w->alias;
    }
}

void sess_wire_copy(const struct sess_wire *w, const struct relay_msg *m, uint32_t off,
                    uint8_t *out, uint32_t n)
{
    for (uint8_t i = 0; i < w->nseg && n; i++) {
        uint32_t sn = w->seg[i].n, k;
        const uint8_t *src;

        if (off >= sn) {
            off -= sn;
            continue;
        }
        src = (w->seg[i].own ? w->hdr : m->data) + w->seg[i].off + off;
        k = sn - off < n ? sn - off : n;
        memcpy(out, src, k);
        out += k;
        n -= k;
        off = 0;
    }
}

void sess_alias_reset(struct relay_session *s)
{
    struct sess_aliases *a = &s->alias;

    for (uint16_t i = 0; i < a->used; i++) {
        free(a->ent[i].topic);
        a->ent[i].topic = NULL;
        a->ent[i].tlen = 0;
    }
    a->used = 0;
    a->max = 0; /* until the next CONNACK says */
}

void sess_alias_free(struct relay_session *s)
{
    sess_alias_reset(s);
    free(s->alias.ent);
    s->alias.ent = NULL;
    s->alias.cap = 0;
}
