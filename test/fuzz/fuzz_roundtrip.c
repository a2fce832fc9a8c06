/*
 * fuzz_roundtrip: decode(encode(x)) == x for packets built from fuzz bytes.
 *
 * The input is a script: bytes choose the version, the type and every field; strings are
 * made valid by construction (bytes map onto a table of code points, topic levels without
 * wildcards, filters from valid levels), properties are chosen among those allowed in the
 * packet with valid values. Such a packet must encode (mqc_size == bytes written, ENOSPC
 * writes nothing, the fast paths agree) and decode back to equal fields.
 * One input in eight instead breaks one rule an encoder must refuse (QoS 3, properties in
 * 3.x, empty SUBSCRIBE, AUTH in 3.x, a 3.x reason code, a filter over 65535 bytes):
 * mqc_size must then fail and mqc_encode write nothing.
 */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct src {
    const uint8_t *p;
    size_t n;
};

static uint8_t u8(struct src *s)
{
    if (!s->n)
        return 0;
    s->n--;
    return *s->p++;
}

static uint16_t u16(struct src *s)
{
    uint16_t hi = u8(s);
    return (uint16_t)((hi << 8) | u8(s));
}

static uint32_t u32(struct src *s)
{
    uint32_t hi = u16(s);
    return (hi << 16) | u16(s);
}

#define ARENA (256 * 1024)
#define MAXP 24
#define MAXS 16

struct build {
    struct mqc_packet pkt;
    uint8_t v;
    uint8_t arena[ARENA];
    size_t used;
    uint8_t pbuf[4096], wbuf[4096];
    struct mqc_sub subs[MAXS];
    struct mqc_bytes filters[MAXS];
    uint8_t codes[MAXS];
};

/* Code points that strings are made of: ASCII, controls (valid, "SHOULD NOT"), U+FEFF,
 * noncharacters, surrogate-gap edges, 2/3/4-byte forms, U+10FFFF. Never U+0000, '+', '#',
 * '/' (added separately where allowed). */
static const uint32_t cps[32] = {'a',    'b',     'z',     'A',      'Z',    '0',    '9',    '-',
                                 '_',    ' ',     '$',     '.',      0x01,   0x1F,   0x7F,   0x80,
                                 0xE9,   0x7FF,   0x800,   0x4E2D,   0xD7FF, 0xE000, 0xFEFF, 0xFFFD,
                                 0xFFFF, 0x10000, 0x1F600, 0x10FFFF, 'x',    'y',    ':',    '~'};

static size_t put_cp(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static bool room(struct build *b, size_t n)
{
    return n <= ARENA - b->used;
}

/* Valid UTF-8 text of up to max characters (levels: when slash, '/' may appear). */
static struct mqc_bytes text(struct src *s, struct build *b, unsigned max, bool slash)
{
    unsigned n = max ? u8(s) % (max + 1) : 0;
    if (!room(b, (size_t)n * 4))
        n = 0;
    uint8_t *o = b->arena + b->used;
    size_t len = 0;
    for (unsigned i = 0; i < n; i++) {
        uint8_t c = u8(s);
        if (slash && (c & 0xE0) == 0xE0)
            o[len++] = '/';
        else
            len += put_cp(o + len, cps[c & 31]);
    }
    b->used += len;
    return (struct mqc_bytes){o, len};
}

static struct mqc_bytes binary(struct src *s, struct build *b, size_t max)
{
    size_t n = u16(s) % (max + 1);
    if (!room(b, n))
        n = 0;
    uint8_t *o = b->arena + b->used;
    for (size_t i = 0; i < n; i++)
        o[i] = (uint8_t)(i * 31u + n); /* content does not matter; keep the input small */
    b->used += n;
    return (struct mqc_bytes){o, n};
}

static struct mqc_bytes topic_name(struct src *s, struct build *b)
{
    struct mqc_bytes t = text(s, b, 24, true);
    if (t.len == 0 && room(b, 1)) {
        b->arena[b->used] = 'x';
        t = (struct mqc_bytes){b->arena + b->used, 1};
        b->used++;
    }
    return t;
}

/* a valid filter: levels of text, '+' or a final '#', optionally shared */
static struct mqc_bytes filter(struct src *s, struct build *b, bool *shared)
{
    uint8_t *o = b->arena + b->used;
    size_t len = 0;
    uint8_t mode = u8(s);
    *shared = false;
    if (!room(b, 8 + 16 + 6 * (1 + 8 * 4)))
        return (struct mqc_bytes){(const uint8_t *)"#", 1};
    if ((mode & 7) == 0) {
        const char *pre = (mode & 8) ? "$oshare/" : "$share/";
        memcpy(o, pre, strlen(pre));
        len = strlen(pre);
        unsigned g = 1 + (u8(s) & 7);
        for (unsigned i = 0; i < g; i++)
            o[len++] = (uint8_t)("abcXYZ09_-.:$abc"[u8(s) & 15]);
        o[len++] = '/';
        *shared = true;
    }
    size_t start = len;
    unsigned levels = 1 + (u8(s) & 3);
    for (unsigned i = 0; i < levels; i++) {
        if (i)
            o[len++] = '/';
        uint8_t k = u8(s);
        if ((k & 7) == 0) {
            o[len++] = '+';
        } else if ((k & 7) == 1 && i == levels - 1) {
            o[len++] = '#';
        } else {
            unsigned n = k >> 5; /* 0..7 characters */
            for (unsigned j = 0; j < n; j++)
                len += put_cp(o + len, cps[u8(s) & 31]);
        }
    }
    if (len == start)
        o[len++] = 'x'; /* a filter (and the F of $share/G/F) is never empty [MQTT-4.7.3-1] */
    b->used += len;
    return (struct mqc_bytes){o, len};
}

/* properties allowed per place (MQTT 5.0 §2.2.2.2), valid values */
static const uint8_t ids_connect[] = {0x11, 0x21, 0x27, 0x22, 0x19, 0x17, 0x26, 0x15, 0x16};
static const uint8_t ids_will[] = {0x18, 0x01, 0x02, 0x03, 0x08, 0x09, 0x26};
static const uint8_t ids_connack[] = {0x11, 0x21, 0x24, 0x25, 0x27, 0x12, 0x22, 0x1F, 0x26,
                                      0x28, 0x29, 0x2A, 0x13, 0x1A, 0x1C, 0x15, 0x16};
static const uint8_t ids_publish[] = {0x01, 0x02, 0x23, 0x08, 0x09, 0x26, 0x0B, 0x03};
static const uint8_t ids_reason[] = {0x1F, 0x26};
static const uint8_t ids_subscribe[] = {0x0B, 0x26};
static const uint8_t ids_user[] = {0x26};
static const uint8_t ids_disconnect[] = {0x11, 0x1F, 0x26, 0x1C};
static const uint8_t ids_auth[] = {0x15, 0x16, 0x1F, 0x26};

static struct mqc_props props(struct src *s, struct build *b, const uint8_t *ids, size_t nids,
                              bool publish, uint8_t *buf, size_t cap, bool *has_alias)
{
    size_t len = 0;
    uint64_t seen = 0;
    bool method = false;
    unsigned n = u8(s) % 8;
    if (has_alias)
        *has_alias = false;
    for (unsigned i = 0; i < n; i++) {
        uint8_t id = ids[u8(s) % nids];
        bool repeatable = id == 0x26 || (publish && id == 0x0B);
        if (!repeatable && (seen & (1ull << id)))
            continue;
        if (id == 0x16 && !method)
            continue; /* Authentication Data needs an Authentication Method */
        struct mqc_prop p = {.id = id};
        switch (mqc_prop_type(id)) {
        case MQC_PT_BYTE:
            p.num = u8(s) & 1u;
            break;
        case MQC_PT_U16:
            p.num = u16(s);
            if ((id == 0x21 || id == 0x23) && p.num == 0)
                p.num = 1;
            break;
        case MQC_PT_U32:
            p.num = u32(s);
            if (id == 0x27 && p.num == 0)
                p.num = 1;
            break;
        case MQC_PT_VARINT:
            p.num = u32(s) % MQC_MAX_VARINT + 1;
            break;
        case MQC_PT_UTF8:
            p.str = id == 0x08 ? topic_name(s, b) : text(s, b, 16, true);
            break;
        case MQC_PT_BINARY:
            p.str = binary(s, b, 64);
            break;
        case MQC_PT_PAIR:
            p.str = text(s, b, 8, false);
            p.val = text(s, b, 12, true);
            break;
        default:
            abort();
        }
        if (mqc_prop_size(&p) > cap - len)
            break;
        FUZZ_CHECK(mqc_prop_put(&p, buf, cap, &len) == MQC_OK, "prop_put 0x%02x", id);
        seen |= 1ull << id;
        if (id == 0x15)
            method = true;
        if (id == 0x23 && has_alias)
            *has_alias = true;
    }
    return (struct mqc_props){buf, len};
}

#define NARR(a) (sizeof(a) / sizeof *(a))

static const uint8_t rc_connack5[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
                                      0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
                                      0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
static const uint8_t rc_puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
static const uint8_t rc_pubrel[] = {0x00, 0x92};
static const uint8_t rc_suback5[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                     0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
static const uint8_t rc_unsuback5[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
static const uint8_t rc_disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
                                        0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                                        0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
static const uint8_t rc_auth[] = {0x00, 0x18, 0x19};

static uint16_t pid(struct src *s)
{
    uint16_t v = u16(s);
    return v ? v : 1;
}

static void build_packet(struct src *s, struct build *b, int type)
{
    struct mqc_packet *p = &b->pkt;
    bool v5 = b->v == MQC_V5;
    p->type = (uint8_t)type;
    switch (type) {
    case MQC_CONNECT: {
        struct mqc_connect *c = &p->u.connect;
        uint8_t fl = u8(s);
        c->version = b->v;
        c->bridge = fl & 1;
        c->clean_start = (fl >> 1) & 1;
        c->keepalive = u16(s);
        c->client_id = text(s, b, b->v == MQC_V31 ? 5 : 30, false);
        if (c->client_id.len == 0 && (b->v == MQC_V31 || !c->clean_start))
            c->client_id = (struct mqc_bytes){(const uint8_t *)"id", 2};
        c->will = (fl >> 2) & 1;
        if (c->will) {
            c->will_qos = (uint8_t)(((fl >> 3) & 3) % 3);
            c->will_retain = (fl >> 5) & 1;
            c->will_topic = topic_name(s, b);
            c->will_payload = binary(s, b, 300);
            if (v5)
                c->will_props =
                    props(s, b, ids_will, NARR(ids_will), false, b->wbuf, sizeof b->wbuf, NULL);
        }
        c->has_username = (fl >> 6) & 1;
        if (c->has_username)
            c->username = text(s, b, 20, true);
        c->has_password = ((fl >> 7) & 1) && (c->has_username || v5);
        if (c->has_password)
            c->password = binary(s, b, 40);
        if (v5)
            c->props =
                props(s, b, ids_connect, NARR(ids_connect), false, b->pbuf, sizeof b->pbuf, NULL);
        break;
    }
    case MQC_CONNACK: {
        uint8_t k = u8(s);
        p->u.connack.code = v5 ? rc_connack5[k % NARR(rc_connack5)] : (uint8_t)(k % 6);
        p->u.connack.session_present = p->u.connack.code == 0 && (k & 0x80);
        if (v5)
            p->u.connack.props =
                props(s, b, ids_connack, NARR(ids_connack), false, b->pbuf, sizeof b->pbuf, NULL);
        break;
    }
    case MQC_PUBLISH: {
        struct mqc_publish *pb = &p->u.publish;
        uint8_t fl = u8(s);
        pb->qos = (uint8_t)((fl & 3) % 3);
        pb->retain = (fl >> 2) & 1;
        pb->dup = pb->qos && ((fl >> 3) & 1);
        pb->packet_id = pb->qos ? pid(s) : 0;
        pb->topic = topic_name(s, b);
        pb->payload = binary(s, b, (fl & 0x80) ? 70000 : 200);
        if (v5) {
            bool alias;
            pb->props =
                props(s, b, ids_publish, NARR(ids_publish), true, b->pbuf, sizeof b->pbuf, &alias);
            if (alias && (fl & 0x40))
                pb->topic = (struct mqc_bytes){NULL, 0};
        }
        break;
    }
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBREL:
    case MQC_PUBCOMP: {
        p->u.ack.packet_id = pid(s);
        if (v5) {
            uint8_t k = u8(s);
            p->u.ack.code = type <= MQC_PUBREC ? rc_puback[k % NARR(rc_puback)]
                                               : rc_pubrel[k % NARR(rc_pubrel)];
            if (k & 0x80)
                p->u.ack.props =
                    props(s, b, ids_reason, NARR(ids_reason), false, b->pbuf, sizeof b->pbuf, NULL);
        }
        break;
    }
    case MQC_SUBSCRIBE: {
        p->u.subscribe.packet_id = pid(s);
        size_t n = 1 + u8(s) % MAXS;
        for (size_t i = 0; i < n; i++) {
            bool shared;
            uint8_t o = u8(s);
            b->subs[i].filter = filter(s, b, &shared);
            b->subs[i].options = (uint8_t)((o & 3) % 3);
            if (v5) {
                if (!shared)
                    b->subs[i].options |= o & MQC_SUB_NO_LOCAL;
                b->subs[i].options |= o & MQC_SUB_RETAIN_AS_PUBLISHED;
                b->subs[i].options |= (uint8_t)((((o >> 4) & 3) % 3) << 4);
            }
        }
        p->u.subscribe.subs = b->subs;
        p->u.subscribe.count = n;
        if (v5)
            p->u.subscribe.props = props(s, b, ids_subscribe, NARR(ids_subscribe), false, b->pbuf,
                                         sizeof b->pbuf, NULL);
        break;
    }
    case MQC_UNSUBSCRIBE: {
        p->u.unsubscribe.packet_id = pid(s);
        size_t n = 1 + u8(s) % MAXS;
        for (size_t i = 0; i < n; i++) {
            bool shared;
            b->filters[i] = filter(s, b, &shared);
        }
        p->u.unsubscribe.filters = b->filters;
        p->u.unsubscribe.count = n;
        if (v5)
            p->u.unsubscribe.props =
                props(s, b, ids_user, NARR(ids_user), false, b->pbuf, sizeof b->pbuf, NULL);
        break;
    }
    case MQC_SUBACK:
    case MQC_UNSUBACK: {
        p->u.suback.packet_id = pid(s);
        size_t n = (type == MQC_UNSUBACK && !v5) ? 0 : 1 + u8(s) % MAXS;
        for (size_t i = 0; i < n; i++) {
            uint8_t k = u8(s);
            if (type == MQC_UNSUBACK)
                b->codes[i] = rc_unsuback5[k % NARR(rc_unsuback5)];
            else if (v5)
                b->codes[i] = rc_suback5[k % NARR(rc_suback5)];
            else
                b->codes[i] = (k & 0x80) && b->v == MQC_V311 ? 0x80 : (uint8_t)((k & 3) % 3);
        }
        p->u.suback.codes = (struct mqc_bytes){b->codes, n};
        if (v5)
            p->u.suback.props =
                props(s, b, ids_reason, NARR(ids_reason), false, b->pbuf, sizeof b->pbuf, NULL);
        break;
    }
    case MQC_DISCONNECT:
    case MQC_AUTH:
        if (v5) {
            uint8_t k = u8(s);
            p->u.reason.code = type == MQC_AUTH ? rc_auth[k % NARR(rc_auth)]
                                                : rc_disconnect[k % NARR(rc_disconnect)];
            if (k & 0x80)
                p->u.reason.props = type == MQC_AUTH
                                        ? props(s, b, ids_auth, NARR(ids_auth), false, b->pbuf,
                                                sizeof b->pbuf, NULL)
                                        : props(s, b, ids_disconnect, NARR(ids_disconnect), false,
                                                b->pbuf, sizeof b->pbuf, NULL);
        }
        break;
    default:
        break;
    }
}

/* Breaks one rule an encoder must refuse; returns false if none applies to this packet. */
static bool make_invalid(struct src *s, struct build *b)
{
    struct mqc_packet *p = &b->pkt;
    static uint8_t junk_props[] = {0x26, 0, 1, 'k', 0, 1, 'v'};
    static uint8_t long_filter[65536];
    switch (u8(s) % 6) {
    case 0:
        if (p->type != MQC_PUBLISH)
            return false;
        p->u.publish.qos = 3;
        p->u.publish.packet_id = 1;
        return true;
    case 1:
        if (b->v == MQC_V5 || p->type != MQC_PUBLISH)
            return false;
        p->u.publish.props = (struct mqc_props){junk_props, sizeof junk_props};
        return true;
    case 2:
        if (p->type != MQC_SUBSCRIBE)
            return false;
        p->u.subscribe.count = 0;
        return true;
    case 3:
        if (b->v == MQC_V5)
            return false;
        p->type = MQC_AUTH;
        p->u.reason.code = 0;
        p->u.reason.props = (struct mqc_props){NULL, 0};
        return true;
    case 4:
        if (b->v == MQC_V5 || p->type < MQC_PUBACK || p->type > MQC_PUBCOMP)
            return false;
        p->u.ack.code = 0x80;
        return true;
    case 5:
        if (p->type != MQC_UNSUBSCRIBE)
            return false;
        memset(long_filter, 'a', sizeof long_filter);
        b->filters[0] = (struct mqc_bytes){long_filter, sizeof long_filter};
        return true;
    default:
        return false;
    }
}

static struct build bld;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct src s = {data, size};
    struct build *b = &bld;
    memset(&b->pkt, 0, sizeof b->pkt);
    b->used = 0;
    uint8_t h = u8(&s);
    b->v = (uint8_t)(3 + h % 3);
    int type = 1 + (u8(&s) % (b->v == MQC_V5 ? 15 : 14));
    build_packet(&s, b, type);

    if ((h & 0xE0) == 0xE0 && make_invalid(&s, b)) {
        size_t sz = 0, wr = 0;
        int rc = mqc_size(&b->pkt, fz_enc_version(&b->pkt, b->v), &sz);
        FUZZ_CHECK(rc < 0, "mqc_size accepted an invalid %s: %d", mqc_type_name(b->pkt.type), rc);
        uint8_t out[64];
        memset(out, 0xEE, sizeof out);
        rc = mqc_encode(&b->pkt, fz_enc_version(&b->pkt, b->v), out, sizeof out, &wr);
        FUZZ_CHECK(rc < 0 && rc != MQC_ENOSPC, "mqc_encode of an invalid packet: %d", rc);
        for (size_t i = 0; i < sizeof out; i++)
            FUZZ_CHECK(out[i] == 0xEE, "failed encode wrote byte %zu", i);
        return 0;
    }

    uint8_t ev = fz_enc_version(&b->pkt, b->v);
    uint8_t *e = NULL;
    size_t n = 0;
    int rc = fz_encode(&b->pkt, ev, &e, &n);
    FUZZ_CHECK(rc == MQC_OK, "valid %s v%u does not encode: %d", mqc_type_name(type), b->v, rc);

    /* fast paths produce the same bytes */
    if (type == MQC_PUBLISH) {
        size_t sz = 0, wr = 0, po = 0;
        uint8_t *e2 = malloc(n);
        if (!e2)
            abort();
        FUZZ_CHECK(mqc_size_publish(&b->pkt.u.publish, ev, &sz) == MQC_OK && sz == n,
                   "size_publish");
        FUZZ_CHECK(mqc_encode_publish(&b->pkt.u.publish, ev, e2, n, &wr, &po) == MQC_OK &&
                       wr == n && memcmp(e, e2, n) == 0,
                   "encode_publish differs");
        if (b->pkt.u.publish.qos)
            FUZZ_CHECK(po + 2 <= n && e2[po] == (b->pkt.u.publish.packet_id >> 8) &&
                           e2[po + 1] == (b->pkt.u.publish.packet_id & 0xFF),
                       "pid_off");
        free(e2);
    } else if (type >= MQC_PUBACK && type <= MQC_PUBCOMP) {
        uint8_t e2[512];
        size_t wr = 0;
        FUZZ_CHECK(mqc_encode_ack((uint8_t)type, &b->pkt.u.ack, ev, e2, sizeof e2, &wr) == MQC_OK &&
                       wr == n && memcmp(e, e2, n) == 0,
                   "encode_ack differs");
        if (b->pkt.u.ack.code == 0 && b->pkt.u.ack.props.len == 0)
            FUZZ_CHECK(n == 4, "ack without code/props is %zu bytes", n);
    }

    struct mqc_packet d;
    memset(&d, 0, sizeof d);
    rc = mqc_decode(e, n, b->v, &d);
    if (rc != MQC_OK)
        fz_dump("encoded", e, n);
    FUZZ_CHECK(rc == MQC_OK, "encoded %s v%u does not decode: %d", mqc_type_name(type), b->v, rc);
    const char *diff = fz_packet_diff(&b->pkt, &d, b->v);
    FUZZ_CHECK(diff == NULL, "decode(encode(x)) differs in %s", diff);
    free(e);
    return 0;
}
