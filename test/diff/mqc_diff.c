/*
 * mqc_diff: the C half of the differential test against mqtt-packet (see diff.js, README.md).
 *
 *   mqc_diff decode FILE           FILE holds records [u8 version][u32 BE length][packet];
 *                                  prints one JSON line per record: our decode result, the
 *                                  packet in canonical form, and our re-encoding of it.
 *   mqc_diff encode SEED N OUTFILE encodes a fixed table plus N random packets (from SEED),
 *                                  writes them as records to OUTFILE and prints one JSON line
 *                                  per record describing what was encoded (from the input
 *                                  values, not from decoding our own output).
 *
 * Exit status: 0, or 1 after a usage/IO error, or 3 when one of our own consistency checks
 * (size == written, ENOSPC leaves the buffer alone, fast paths agree) failed: details on stderr.
 */
#include "mqttcodec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int self_failures;

static void self_fail(const char *name, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "mqc_diff: self-check failed for %s: ", name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    self_failures++;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "mqc_diff: out of memory\n");
        exit(1);
    }
    return p;
}

/* ---- names (our own tables, independent of the codec's) -------------------------------- */
static const char *err_name(int rc)
{
    switch (rc) {
    case MQC_OK:
        return "MQC_OK";
    case MQC_AGAIN:
        return "MQC_AGAIN";
    case MQC_EMALFORMED:
        return "MQC_EMALFORMED";
    case MQC_EPROTOCOL:
        return "MQC_EPROTOCOL";
    case MQC_ETOOBIG:
        return "MQC_ETOOBIG";
    case MQC_ENOSPC:
        return "MQC_ENOSPC";
    case MQC_EUTF8:
        return "MQC_EUTF8";
    case MQC_EINVAL:
        return "MQC_EINVAL";
    case MQC_EVARINT:
        return "MQC_EVARINT";
    case MQC_EFLAGS:
        return "MQC_EFLAGS";
    case MQC_EQOS:
        return "MQC_EQOS";
    case MQC_EPACKETID:
        return "MQC_EPACKETID";
    case MQC_ETOPIC:
        return "MQC_ETOPIC";
    case MQC_EFILTER:
        return "MQC_EFILTER";
    case MQC_EPROPID:
        return "MQC_EPROPID";
    case MQC_EPROPDUP:
        return "MQC_EPROPDUP";
    case MQC_EPROPVAL:
        return "MQC_EPROPVAL";
    case MQC_EREASON:
        return "MQC_EREASON";
    case MQC_ETRAILING:
        return "MQC_ETRAILING";
    case MQC_EV5ONLY:
        return "MQC_EV5ONLY";
    case MQC_EPROTONAME:
        return "MQC_EPROTONAME";
    case MQC_ETYPE:
        return "MQC_ETYPE";
    case MQC_EEMPTY:
        return "MQC_EEMPTY";
    case MQC_EWILL:
        return "MQC_EWILL";
    case MQC_ESUBOPTS:
        return "MQC_ESUBOPTS";
    default:
        return "MQC_UNKNOWN";
    }
}

/* mqtt-packet's `cmd` names */
static const char *cmd_name(int type)
{
    static const char *const n[16] = {"reserved",  "connect",  "connack",     "publish",
                                      "puback",    "pubrec",   "pubrel",      "pubcomp",
                                      "subscribe", "suback",   "unsubscribe", "unsuback",
                                      "pingreq",   "pingresp", "disconnect",  "auth"};
    return (type >= 0 && type < 16) ? n[type] : "reserved";
}

/* Value kinds of the MQTT 5 properties (§2.2.2.2): 1 byte, 2 u16, 4 u32, 'v' varint,
 * 's' UTF-8 string, 'b' binary, 'p' string pair, 0 unknown. */
static int prop_kind(uint8_t id)
{
    switch (id) {
    case 0x01:
    case 0x17:
    case 0x19:
    case 0x24:
    case 0x25:
    case 0x28:
    case 0x29:
    case 0x2A:
        return 1;
    case 0x13:
    case 0x21:
    case 0x22:
    case 0x23:
        return 2;
    case 0x02:
    case 0x11:
    case 0x18:
    case 0x27:
        return 4;
    case 0x0B:
        return 'v';
    case 0x03:
    case 0x08:
    case 0x12:
    case 0x15:
    case 0x1A:
    case 0x1C:
    case 0x1F:
        return 's';
    case 0x09:
    case 0x16:
        return 'b';
    case 0x26:
        return 'p';
    default:
        return 0;
    }
}

/* ---- JSON output ---------------------------------------------------------------------- */
static void j_hex(FILE *o, const uint8_t *p, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    fputc('"', o);
    for (size_t i = 0; i < n; i++) {
        fputc(hx[p[i] >> 4], o);
        fputc(hx[p[i] & 15], o);
    }
    fputc('"', o);
}

static void j_bytes(FILE *o, struct mqc_bytes b)
{
    j_hex(o, b.p, b.len);
}

static const char *j_bool(bool b)
{
    return b ? "true" : "false";
}

static void j_props(FILE *o, const struct mqc_prop *pr, size_t n)
{
    fputc('[', o);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', o);
        fprintf(o, "[%u,", (unsigned)pr[i].id);
        switch (prop_kind(pr[i].id)) {
        case 's':
        case 'b':
            j_bytes(o, pr[i].str);
            break;
        case 'p':
            fputc('[', o);
            j_bytes(o, pr[i].str);
            fputc(',', o);
            j_bytes(o, pr[i].val);
            fputc(']', o);
            break;
        default:
            fprintf(o, "%" PRIu32, pr[i].num);
            break;
        }
        fputc(']', o);
    }
    fputc(']', o);
}

/* A packet with its lists spelled out: for decoded packets the lists come from walking the
 * decoded blocks; for encoded ones from the generator's own arrays. */
struct view {
    const struct mqc_packet *pkt;
    uint8_t v;
    const struct mqc_prop *props;
    size_t nprops;
    const struct mqc_prop *wprops;
    size_t nwprops;
    const struct mqc_sub *subs;
    size_t nsubs;
    const struct mqc_bytes *filters;
    size_t nfilters;
};

static void j_packet(FILE *o, const struct view *w)
{
    const struct mqc_packet *p = w->pkt;
    bool v5 = w->v == MQC_V5;
    fprintf(o, "{\"type\":\"%s\"", cmd_name(p->type));
    switch (p->type) {
    case MQC_CONNECT: {
        const struct mqc_connect *c = &p->u.connect;
        bool cv5 = c->version == MQC_V5;
        fprintf(o, ",\"protocolId\":\"%s\",\"protocolVersion\":%u,\"bridge\":%s,\"clean\":%s",
                c->version == MQC_V31 ? "MQIsdp" : "MQTT", (unsigned)c->version, j_bool(c->bridge),
                j_bool(c->clean_start));
        fprintf(o, ",\"keepalive\":%u,\"clientId\":", (unsigned)c->keepalive);
        j_bytes(o, c->client_id);
        fputs(",\"will\":", o);
        if (c->will) {
            fprintf(o, "{\"qos\":%u,\"retain\":%s,\"topic\":", (unsigned)c->will_qos,
                    j_bool(c->will_retain));
            j_bytes(o, c->will_topic);
            fputs(",\"payload\":", o);
            j_bytes(o, c->will_payload);
            fputs(",\"props\":", o);
            j_props(o, w->wprops, cv5 ? w->nwprops : 0);
            fputc('}', o);
        } else {
            fputs("null", o);
        }
        fputs(",\"username\":", o);
        if (c->has_username)
            j_bytes(o, c->username);
        else
            fputs("null", o);
        fputs(",\"password\":", o);
        if (c->has_password)
            j_bytes(o, c->password);
        else
            fputs("null", o);
        fputs(",\"props\":", o);
        j_props(o, w->props, cv5 ? w->nprops : 0);
        break;
    }
    case MQC_CONNACK:
        fprintf(o, ",\"sessionPresent\":%s,\"code\":%u,\"props\":",
                j_bool(p->u.connack.session_present), (unsigned)p->u.connack.code);
        j_props(o, w->props, v5 ? w->nprops : 0);
        break;
    case MQC_PUBLISH: {
        const struct mqc_publish *pb = &p->u.publish;
        fprintf(o, ",\"qos\":%u,\"dup\":%s,\"retain\":%s,\"topic\":", (unsigned)pb->qos,
                j_bool(pb->dup), j_bool(pb->retain));
        j_bytes(o, pb->topic);
        fprintf(o, ",\"messageId\":%u,\"payload\":", (unsigned)pb->packet_id);
        j_bytes(o, pb->payload);
        fputs(",\"props\":", o);
        j_props(o, w->props, v5 ? w->nprops : 0);
        break;
    }
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBREL:
    case MQC_PUBCOMP:
        fprintf(o, ",\"messageId\":%u,\"code\":%u,\"props\":", (unsigned)p->u.ack.packet_id,
                (unsigned)p->u.ack.code);
        j_props(o, w->props, v5 ? w->nprops : 0);
        break;
    case MQC_SUBSCRIBE:
        fprintf(o, ",\"messageId\":%u,\"props\":", (unsigned)p->u.subscribe.packet_id);
        j_props(o, w->props, v5 ? w->nprops : 0);
        fputs(",\"subs\":[", o);
        for (size_t i = 0; i < w->nsubs; i++) {
            uint8_t op = w->subs[i].options;
            fputs(i ? ",{\"topic\":" : "{\"topic\":", o);
            j_bytes(o, w->subs[i].filter);
            fprintf(o, ",\"qos\":%u,\"nl\":%s,\"rap\":%s,\"rh\":%u}", (unsigned)MQC_SUB_QOS(op),
                    j_bool(v5 && (op & MQC_SUB_NO_LOCAL)),
                    j_bool(v5 && (op & MQC_SUB_RETAIN_AS_PUBLISHED)),
                    v5 ? (unsigned)MQC_SUB_RETAIN_HANDLING(op) : 0u);
        }
        fputc(']', o);
        break;
    case MQC_SUBACK:
    case MQC_UNSUBACK:
        fprintf(o, ",\"messageId\":%u,\"props\":", (unsigned)p->u.suback.packet_id);
        j_props(o, w->props, v5 ? w->nprops : 0);
        fputs(",\"codes\":[", o);
        for (size_t i = 0; i < p->u.suback.codes.len; i++)
            fprintf(o, i ? ",%u" : "%u", (unsigned)p->u.suback.codes.p[i]);
        fputc(']', o);
        break;
    case MQC_UNSUBSCRIBE:
        fprintf(o, ",\"messageId\":%u,\"props\":", (unsigned)p->u.unsubscribe.packet_id);
        j_props(o, w->props, v5 ? w->nprops : 0);
        fputs(",\"topics\":[", o);
        for (size_t i = 0; i < w->nfilters; i++) {
            if (i)
                fputc(',', o);
            j_bytes(o, w->filters[i]);
        }
        fputc(']', o);
        break;
    case MQC_DISCONNECT:
    case MQC_AUTH:
        fprintf(o, ",\"code\":%u,\"props\":", (unsigned)p->u.reason.code);
        j_props(o, w->props, v5 ? w->nprops : 0);
        break;
    default:
        break;
    }
    fputc('}', o);
}

/* ---- record files ------------------------------------------------------------------------ */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "mqc_diff: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    size_t cap = 1 << 20, n = 0;
    uint8_t *b = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap);
            if (!b) {
                fprintf(stderr, "mqc_diff: out of memory\n");
                exit(1);
            }
        }
        size_t r = fread(b + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    *len = n;
    return b;
}

static void write_record(FILE *f, uint8_t v, const uint8_t *p, size_t n)
{
    uint8_t h[5] = {v, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    if (fwrite(h, 1, 5, f) != 5 || fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "mqc_diff: write failed\n");
        exit(1);
    }
}

/* ---- walking decoded blocks ------------------------------------------------------------ */
static struct mqc_prop *walk_props(const struct mqc_props *b, size_t *n, int *rc)
{
    struct mqc_prop *a = xmalloc((b->len / 2 + 1) * sizeof *a);
    size_t off = 0, k = 0;
    int r;
    while ((r = mqc_props_next(b, &off, &a[k])) == MQC_OK) {
        if (++k > b->len / 2) {
            r = MQC_EMALFORMED; /* more properties than bytes: the walk does not advance */
            break;
        }
    }
    *rc = r == MQC_AGAIN ? MQC_OK : r;
    *n = k;
    return a;
}

/* Re-encodes a decoded packet (subscription lists turned into arrays, as a caller would). */
static int reencode(const struct view *w, uint8_t **out, size_t *outlen)
{
    struct mqc_packet p = *w->pkt;
    uint8_t v = p.type == MQC_CONNECT ? p.u.connect.version : w->v;
    if (p.type == MQC_SUBSCRIBE) {
        p.u.subscribe.subs = w->subs;
        p.u.subscribe.count = w->nsubs;
    } else if (p.type == MQC_UNSUBSCRIBE) {
        p.u.unsubscribe.filters = w->filters;
        p.u.unsubscribe.count = w->nfilters;
    }
    size_t sz = 0, wr = 0;
    int rc = mqc_size(&p, v, &sz);
    if (rc != MQC_OK)
        return rc;
    uint8_t *b = xmalloc(sz);
    rc = mqc_encode(&p, v, b, sz, &wr);
    if (rc == MQC_OK && wr != sz) {
        self_fail("re-encode", "mqc_size %zu but mqc_encode wrote %zu", sz, wr);
        rc = MQC_EINVAL;
    }
    if (rc != MQC_OK) {
        free(b);
        return rc;
    }
    *out = b;
    *outlen = wr;
    return MQC_OK;
}

static int cmd_decode(const char *path)
{
    size_t flen;
    uint8_t *file = read_file(path, &flen);
    size_t off = 0, idx = 0;
    while (off < flen) {
        if (flen - off < 5) {
            fprintf(stderr, "mqc_diff: truncated record\n");
            return 1;
        }
        uint8_t v = file[off];
        size_t n = ((size_t)file[off + 1] << 24) | ((size_t)file[off + 2] << 16) |
                   ((size_t)file[off + 3] << 8) | file[off + 4];
        off += 5;
        if (n > flen - off) {
            fprintf(stderr, "mqc_diff: truncated record\n");
            return 1;
        }
        /* exact-size copy: an over-read trips AddressSanitizer in the sanitizer build */
        uint8_t *buf = xmalloc(n);
        memcpy(buf, file + off, n);
        off += n;

        printf("{\"i\":%zu,\"v\":%u", idx++, (unsigned)v);
        struct mqc_frame f;
        int rc = mqc_frame_check(buf, n, 0, &f);
        if (rc != MQC_OK || f.total != n) {
            printf(",\"err\":\"frame:%s\",\"total\":%zu}\n", err_name(rc),
                   rc == MQC_OK ? f.total : (size_t)0);
            free(buf);
            continue;
        }
        struct mqc_packet pkt;
        memset(&pkt, 0, sizeof pkt);
        rc = mqc_decode(buf, n, v, &pkt);
        printf(",\"err\":\"%s\"", err_name(rc));
        if (rc != MQC_OK) {
            printf("}\n");
            free(buf);
            continue;
        }
        struct view w = {.pkt = &pkt, .v = v};
        struct mqc_prop *props = NULL, *wprops = NULL;
        struct mqc_sub *subs = NULL;
        struct mqc_bytes *filters = NULL;
        const struct mqc_props *pb = NULL;
        int wrc = MQC_OK;
        switch (pkt.type) {
        case MQC_CONNECT:
            pb = &pkt.u.connect.props;
            break;
        case MQC_CONNACK:
            pb = &pkt.u.connack.props;
            break;
        case MQC_PUBLISH:
            pb = &pkt.u.publish.props;
            break;
        case MQC_PUBACK:
        case MQC_PUBREC:
        case MQC_PUBREL:
        case MQC_PUBCOMP:
            pb = &pkt.u.ack.props;
            break;
        case MQC_SUBSCRIBE:
            pb = &pkt.u.subscribe.props;
            break;
        case MQC_SUBACK:
        case MQC_UNSUBACK:
            pb = &pkt.u.suback.props;
            break;
        case MQC_UNSUBSCRIBE:
            pb = &pkt.u.unsubscribe.props;
            break;
        case MQC_DISCONNECT:
        case MQC_AUTH:
            pb = &pkt.u.reason.props;
            break;
        default:
            break;
        }
        if (pb) {
            props = walk_props(pb, &w.nprops, &wrc);
            w.props = props;
        }
        if (wrc == MQC_OK && pkt.type == MQC_CONNECT && pkt.u.connect.will) {
            wprops = walk_props(&pkt.u.connect.will_props, &w.nwprops, &wrc);
            w.wprops = wprops;
        }
        if (wrc == MQC_OK && pkt.type == MQC_SUBSCRIBE) {
            size_t cap = pkt.u.subscribe.count, so = 0, k = 0;
            subs = xmalloc((cap + 1) * sizeof *subs);
            while (k <= cap &&
                   (wrc = mqc_subscribe_next(&pkt.u.subscribe, v, &so, &subs[k])) == MQC_OK)
                k++;
            wrc = (wrc == MQC_AGAIN && k == cap) ? MQC_OK : (wrc == MQC_AGAIN ? MQC_EINVAL : wrc);
            w.subs = subs;
            w.nsubs = k;
        }
        if (wrc == MQC_OK && pkt.type == MQC_UNSUBSCRIBE) {
            size_t cap = pkt.u.unsubscribe.count, so = 0, k = 0;
            filters = xmalloc((cap + 1) * sizeof *filters);
            while (k <= cap &&
                   (wrc = mqc_unsubscribe_next(&pkt.u.unsubscribe, &so, &filters[k])) == MQC_OK)
                k++;
            wrc = (wrc == MQC_AGAIN && k == cap) ? MQC_OK : (wrc == MQC_AGAIN ? MQC_EINVAL : wrc);
            w.filters = filters;
            w.nfilters = k;
        }
        if (wrc != MQC_OK) {
            /* a decoder handed out a block or list it then cannot walk */
            printf(",\"walk_err\":\"%s\"}\n", err_name(wrc));
            self_fail("decode", "record %zu: walking the decoded packet failed: %s", idx - 1,
                      err_name(wrc));
        } else {
            printf(",\"pkt\":");
            j_packet(stdout, &w);
            uint8_t *re = NULL;
            size_t relen = 0;
            int rrc = reencode(&w, &re, &relen);
            printf(",\"reenc_err\":\"%s\",\"reenc\":", err_name(rrc));
            if (rrc == MQC_OK)
                j_hex(stdout, re, relen);
            else
                printf("\"\"");
            printf("}\n");
            free(re);
        }
        free(props);
        free(wprops);
        free(subs);
        free(filters);
        free(buf);
    }
    free(file);
    return self_failures ? 3 : 0;
}

/* ---- encode side: generator ------------------------------------------------------------- */
struct rng {
    uint64_t s;
};

static uint64_t rnd(struct rng *r) /* splitmix64 */
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t rint_(struct rng *r, uint32_t lo, uint32_t hi) /* inclusive */
{
    return lo + (uint32_t)(rnd(r) % ((uint64_t)hi - lo + 1));
}

static bool rbool(struct rng *r, unsigned pct)
{
    return rnd(r) % 100 < pct;
}

#define MAXP 40
#define MAXS 12

struct model {
    char name[64];
    uint8_t v;
    bool fixed;
    struct mqc_packet pkt;
    struct mqc_prop props[MAXP];
    size_t nprops;
    struct mqc_prop wprops[MAXP];
    size_t nwprops;
    struct mqc_sub subs[MAXS];
    size_t nsubs;
    struct mqc_bytes filters[MAXS];
    size_t nfilters;
    uint8_t codes[MAXS];
    uint8_t pbuf[8192], wbuf[8192];
    uint8_t *arena; /* strings and payloads */
    size_t used, cap;
};

static uint8_t *m_alloc(struct model *m, size_t n)
{
    if (n > m->cap - m->used) {
        fprintf(stderr, "mqc_diff: arena too small\n");
        exit(1);
    }
    uint8_t *p = m->arena + m->used;
    m->used += n;
    return p;
}

static struct mqc_bytes m_str(struct model *m, const char *s)
{
    size_t n = strlen(s);
    uint8_t *p = m_alloc(m, n);
    memcpy(p, s, n);
    return (struct mqc_bytes){p, n};
}

static struct mqc_bytes m_mem(struct model *m, const void *s, size_t n)
{
    uint8_t *p = m_alloc(m, n);
    memcpy(p, s, n);
    return (struct mqc_bytes){p, n};
}

static size_t put_utf8(uint8_t *o, uint32_t cp)
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

static const uint32_t special_cp[] = {0x01,   0x1f,   0x7f,   0x80,    0x85,    0x9f,
                                      0xe9,   0x7ff,  0x800,  0x4e2d,  0xd7ff,  0xe000,
                                      0xfeff, 0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff};
static const char word_chars[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.: ";

/* Random valid UTF-8 text of minc..maxc characters; if level, no '/', '+', '#'. */
static struct mqc_bytes r_text(struct rng *r, struct model *m, unsigned minc, unsigned maxc)
{
    unsigned n = rint_(r, minc, maxc);
    uint8_t *p = m_alloc(m, (size_t)n * 4);
    size_t len = 0;
    for (unsigned i = 0; i < n; i++) {
        if (rbool(r, 85))
            p[len++] = (uint8_t)word_chars[rint_(r, 0, sizeof word_chars - 2)];
        else
            len += put_utf8(p + len,
                            special_cp[rint_(r, 0, sizeof special_cp / sizeof *special_cp - 1)]);
    }
    m->used -= (size_t)n * 4 - len;
    return (struct mqc_bytes){p, len};
}

static struct mqc_bytes r_bin(struct rng *r, struct model *m, size_t n)
{
    uint8_t *p = m_alloc(m, n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd(r);
    return (struct mqc_bytes){p, n};
}

static size_t r_len(struct rng *r)
{
    uint32_t x = rint_(r, 0, 99);
    if (x < 30)
        return 0;
    if (x < 85)
        return rint_(r, 1, 40);
    if (x < 97)
        return rint_(r, 41, 400);
    return rint_(r, 401, 20000);
}

/* joins parts (already in the arena, contiguous) is awkward: build topics in a scratch buffer */
static struct mqc_bytes r_topic_name(struct rng *r, struct model *m)
{
    uint8_t tmp[512];
    size_t len = 0;
    unsigned levels = rint_(r, 1, 5);
    if (rbool(r, 5))
        tmp[len++] = '$';
    for (unsigned i = 0; i < levels; i++) {
        if (i)
            tmp[len++] = '/';
        size_t save = m->used;
        struct mqc_bytes t = r_text(r, m, 0, 8);
        memcpy(tmp + len, t.p, t.len);
        len += t.len;
        m->used = save;
    }
    if (len == 0)
        tmp[len++] = rbool(r, 50) ? '/' : 'x';
    uint8_t *p = m_alloc(m, len);
    memcpy(p, tmp, len);
    return (struct mqc_bytes){p, len};
}

static bool is_share(struct mqc_bytes f)
{
    return (f.len >= 7 && memcmp(f.p, "$share/", 7) == 0) ||
           (f.len >= 8 && memcmp(f.p, "$oshare/", 8) == 0);
}

static struct mqc_bytes r_filter(struct rng *r, struct model *m)
{
    uint8_t tmp[600];
    size_t len = 0;
    if (rbool(r, 10)) {
        const char *pre = rbool(r, 80) ? "$share/" : "$oshare/";
        memcpy(tmp, pre, strlen(pre));
        len = strlen(pre);
        unsigned g = rint_(r, 1, 6);
        for (unsigned i = 0; i < g; i++)
            tmp[len++] = (uint8_t) "abcdefgXYZ019_-"[rint_(r, 0, 14)];
        tmp[len++] = '/';
    }
    size_t start = len;
    unsigned levels = rint_(r, 1, 5);
    for (unsigned i = 0; i < levels; i++) {
        if (i)
            tmp[len++] = '/';
        uint32_t x = rint_(r, 0, 99);
        if (x < 20) {
            tmp[len++] = '+';
        } else if (x < 28 && i == levels - 1) {
            tmp[len++] = '#';
        } else {
            size_t save = m->used;
            struct mqc_bytes t = r_text(r, m, 0, 8);
            memcpy(tmp + len, t.p, t.len);
            len += t.len;
            m->used = save;
        }
    }
    if (len == start)
        tmp[len++] = '/';
    uint8_t *p = m_alloc(m, len);
    memcpy(p, tmp, len);
    return (struct mqc_bytes){p, len};
}

static uint32_t r_u32(struct rng *r)
{
    static const uint32_t e[] = {0, 1, 59, 3600, 0x7fffffff, 0xffffffff};
    uint32_t x = rint_(r, 0, 6);
    return x < 6 ? e[x] : (uint32_t)rnd(r);
}

static uint32_t r_u16(struct rng *r, uint32_t min)
{
    static const uint32_t e[] = {0, 1, 10, 127, 128, 255, 256, 0xffff};
    uint32_t x = rint_(r, 0, 8);
    uint32_t v = x < 8 ? e[x] : (uint32_t)(rnd(r) & 0xffff);
    return v < min ? min : v;
}

static uint32_t r_varint(struct rng *r)
{
    static const uint32_t e[] = {1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455};
    uint32_t x = rint_(r, 0, 8);
    return x < 8 ? e[x] : rint_(r, 1, 268435455);
}

static void add_prop(struct mqc_prop *a, size_t *n, struct mqc_prop p)
{
    if (*n >= MAXP) {
        fprintf(stderr, "mqc_diff: too many properties\n");
        exit(1);
    }
    a[(*n)++] = p;
}

static const char *const user_names[] = {"k", "key", "relay-path", "\xc3\xa9", "a b", "x", "1"};

static void r_user_props(struct rng *r, struct model *m, struct mqc_prop *a, size_t *n)
{
    unsigned k = rint_(r, 0, 4);
    for (unsigned i = 0; i < k; i++) {
        struct mqc_prop p = {.id = MQC_PROP_USER};
        p.str = rbool(r, 70) ? m_str(m, user_names[rint_(r, 0, 6)]) : r_text(r, m, 1, 6);
        p.val = r_text(r, m, 1, 10); /* see KD-MP-USERPROP-EMPTY for empty values */
        add_prop(a, n, p);
    }
}

/* A random valid value for property id. */
static struct mqc_prop r_prop(struct rng *r, struct model *m, uint8_t id)
{
    struct mqc_prop p = {.id = id};
    switch (id) {
    case 0x01:
    case 0x17:
    case 0x19:
    case 0x24:
    case 0x25:
    case 0x28:
    case 0x29:
    case 0x2A:
        p.num = rint_(r, 0, 1);
        break;
    case 0x21:
    case 0x23: /* Receive Maximum, Topic Alias: not 0 */
        p.num = r_u16(r, 1);
        break;
    case 0x13:
    case 0x22:
        p.num = r_u16(r, 0);
        break;
    case 0x27: /* Maximum Packet Size: not 0 */
        p.num = r_u32(r);
        if (p.num == 0)
            p.num = 1;
        break;
    case 0x02:
    case 0x11:
    case 0x18:
        p.num = r_u32(r);
        break;
    case 0x0B:
        p.num = r_varint(r);
        break;
    case 0x08:
        p.str = r_topic_name(r, m);
        break;
    case 0x09:
    case 0x16:
        p.str = r_bin(r, m, rint_(r, 0, 16));
        break;
    default:
        p.str = r_text(r, m, 0, 12);
        break;
    }
    return p;
}

enum ctx {
    C_CONNECT,
    C_WILL,
    C_CONNACK,
    C_PUBLISH,
    C_ACK,
    C_SUBSCRIBE,
    C_SUBACK,
    C_UNSUBSCRIBE,
    C_UNSUBACK,
    C_DISCONNECT,
    C_AUTH
};

static const uint8_t ctx_props[][20] = {
    [C_CONNECT] = {0x11, 0x21, 0x27, 0x22, 0x19, 0x17, 0x26, 0x15, 0x16},
    [C_WILL] = {0x18, 0x01, 0x02, 0x03, 0x08, 0x09, 0x26},
    [C_CONNACK] = {0x11, 0x21, 0x24, 0x25, 0x27, 0x12, 0x22, 0x1F, 0x26, 0x28, 0x29, 0x2A, 0x13,
                   0x1A, 0x1C, 0x15, 0x16},
    [C_PUBLISH] = {0x01, 0x02, 0x23, 0x08, 0x09, 0x26, 0x0B, 0x03},
    [C_ACK] = {0x1F, 0x26},
    [C_SUBSCRIBE] = {0x0B, 0x26},
    [C_SUBACK] = {0x1F, 0x26},
    [C_UNSUBSCRIBE] = {0x26},
    [C_UNSUBACK] = {0x1F, 0x26},
    [C_DISCONNECT] = {0x11, 0x1F, 0x26, 0x1C},
    [C_AUTH] = {0x15, 0x16, 0x1F, 0x26},
};

static void r_props(struct rng *r, struct model *m, enum ctx c, struct mqc_prop *a, size_t *n)
{
    bool have_method = false;
    for (size_t i = 0; i < sizeof ctx_props[c] && ctx_props[c][i]; i++) {
        uint8_t id = ctx_props[c][i];
        if (!rbool(r, 30))
            continue;
        if (id == 0x16 && !have_method)
            continue; /* Authentication Data needs an Authentication Method */
        if (id == 0x15)
            have_method = true;
        if (id == 0x26) {
            r_user_props(r, m, a, n);
            continue;
        }
        add_prop(a, n, r_prop(r, m, id));
        if (id == 0x0B && c == C_PUBLISH && rbool(r, 30))
            add_prop(a, n, r_prop(r, m, id)); /* may repeat in PUBLISH */
    }
    /* shuffle, so the wire order differs from the table order */
    for (size_t i = *n; i > 1; i--) {
        size_t j = rint_(r, 0, (uint32_t)(i - 1));
        struct mqc_prop t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static struct mqc_props build_block(struct model *m, const struct mqc_prop *a, size_t n,
                                    uint8_t *buf, size_t cap)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = mqc_prop_put(&a[i], buf, cap, &len);
        if (rc != MQC_OK) {
            self_fail(m->name, "mqc_prop_put(id 0x%02x) = %s", a[i].id, err_name(rc));
            break;
        }
    }
    return (struct mqc_props){buf, len};
}

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
#define PICK(r, arr) ((arr)[rint_((r), 0, (uint32_t)(sizeof(arr) / sizeof *(arr)) - 1)])

static uint16_t r_pid(struct rng *r)
{
    static const uint16_t e[] = {1, 2, 255, 256, 0x7fff, 0xffff};
    uint32_t x = rint_(r, 0, 6);
    return x < 6 ? e[x] : (uint16_t)rint_(r, 1, 0xffff);
}

/* Fills m with a random valid packet of type t for version m->v. */
static void r_packet(struct rng *r, struct model *m, int t)
{
    struct mqc_packet *p = &m->pkt;
    bool v5 = m->v == MQC_V5;
    p->type = (uint8_t)t;
    switch (t) {
    case MQC_CONNECT: {
        struct mqc_connect *c = &p->u.connect;
        c->version = m->v;
        c->clean_start = rbool(r, 50);
        c->keepalive = (uint16_t)r_u16(r, 0);
        c->bridge = rbool(r, 30);
        if (m->v == MQC_V31)
            c->client_id = r_text(r, m, 1, 5); /* 3.1: 1..23 bytes */
        else
            c->client_id =
                c->clean_start && rbool(r, 20) ? (struct mqc_bytes){NULL, 0} : r_text(r, m, 1, 30);
        if (rbool(r, 50)) {
            c->will = true;
            c->will_qos = (uint8_t)rint_(r, 0, 2);
            c->will_retain = rbool(r, 50);
            c->will_topic = r_topic_name(r, m);
            c->will_payload = r_bin(r, m, r_len(r));
            if (v5) {
                r_props(r, m, C_WILL, m->wprops, &m->nwprops);
                c->will_props = build_block(m, m->wprops, m->nwprops, m->wbuf, sizeof m->wbuf);
            }
        }
        /* 3.x: a password needs a user name [MQTT-3.1.2-22]; 5.0 allows it alone */
        c->has_username = rbool(r, 50);
        if (c->has_username)
            c->username = r_text(r, m, 0, 20);
        c->has_password = (c->has_username || v5) && rbool(r, 50);
        if (c->has_password)
            c->password = r_bin(r, m, rint_(r, 0, 30));
        if (v5) {
            r_props(r, m, C_CONNECT, m->props, &m->nprops);
            c->props = build_block(m, m->props, m->nprops, m->pbuf, sizeof m->pbuf);
        }
        break;
    }
    case MQC_CONNACK: {
        struct mqc_connack *c = &p->u.connack;
        c->code = v5 ? PICK(r, rc_connack5) : (uint8_t)rint_(r, 0, 5);
        c->session_present = c->code == 0 && rbool(r, 50);
        if (v5) {
            r_props(r, m, C_CONNACK, m->props, &m->nprops);
            c->props = build_block(m, m->props, m->nprops, m->pbuf, sizeof m->pbuf);
        }
        break;
    }
    case MQC_PUBLISH: {
        struct mqc_publish *pb = &p->u.publish;
        pb->qos = (uint8_t)rint_(r, 0, 2);
        pb->retain = rbool(r, 50);
        pb->dup = pb->qos > 0 && rbool(r, 50);
        pb->packet_id = pb->qos ? r_pid(r) : 0;
        pb->topic = r_topic_name(r, m);
        pb->payload = r_bin(r, m, r_len(r));
        if (v5) {
            r_props(r, m, C_PUBLISH, m->props, &m->nprops);
            pb->props = build_block(m, m->props, m->nprops, m->pbuf, sizeof m->pbuf);
            for (size_t i = 0; i < m->nprops; i++)
                if (m->props[i].id == MQC_PROP_TOPIC_ALIAS && rbool(r, 50))
                    pb->topic = (struct mqc_bytes){NULL, 0};
        }
        break;
    }
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBREL:
    case MQC_PUBCOMP: {
        struct mqc_ack *a = &p->u.ack;
        a->packet_id = r_pid(r);
        if (v5) {
            a->code = t <= MQC_PUBREC ? PICK(r, rc_puback) : PICK(r, rc_pubrel);
            r_props(r, m, C_ACK, m->props, &m->nprops);
            a->props = build_block(m, m->props, m->nprops, m->pbuf, sizeof m->pbuf);
        }
        break;
    }
    case MQC_SUBSCRIBE: {
        struct mqc_subscribe *s = &p->u.subscribe;
        s->packet_id = r_pid(r);
        m->nsubs = rint_(r, 1, 6);
        for (size_t i = 0; i < m->nsubs; i++) {
            struct mqc_sub *e = &m->subs[i];
            e->filter = r_filter(r, m);
            e->options = (uint8_t)rint_(r, 0, 2);
            if (v5) {
                if (!is_share(e->filter) && rbool(r, 50))
                    e->options |= MQC_SUB_NO_LOCAL;
                if (rbool(r, 50))
                    e->options |= MQC_SUB_RETAIN_AS_PUBLISHED;
                e->options |= (uint8_t)(rint_(r, 0, 2) << 4);
            }
        }
        s->subs = m->subs;
        s->count = m->nsubs;
        if (v5) {
            r_props(r, m, C_SUBSCRIBE, m->props, &m->nprops);
            s->props = build_block(m, m->props, m->nprops, m->pbuf, sizeof m->pbuf);
        }
        break;
    }
    case MQC_SUBACK:
    case MQC_UNSUBACK: {
        struct mqc_suback *s = &p->u.suback;
        s->packet_id = r_pid(r);
        size_t n = (t == MQC_UNSUBACK && !v5) ? 0 : rint_(r, 1, 8);
        for (size_t i = 0; i < n; i++) {
            if (t == MQC_UNSUBACK)
                m->codes[i] = PICK(r, rc_unsuback5);
            else if (v5)
                m->codes[i] = PICK(r, rc_suback5);
            else if (m->v == MQC_V311)
                m->codes[i] = (uint8_t)(rbool(r, 20) ? 0x80 : rint_(r, 0, 2));
            else
                m->codes[i] = (uint8_t)rint_(r, 0, 2);
        }
        s->codes = (struct mqc_bytes){m->codes, n};
        if (v5) {
            r_props(r, m, t == MQC_SUBACK ? C_SUBACK : C_UNSUBACK, m->props, &m->nprops);
            s->props = build_block(m, m->props, m->nprops, m->pbuf, sizeof m->pbuf);
        }
        break;
    }
    case MQC_UNSUBSCRIBE: {
        struct mqc_unsubscribe *u = &p->u.unsubscribe;
        u->packet_id = r_pid(r);
        m->nfilters = rint_(r, 1, 6);
        for (size_t i = 0; i < m->nfilters; i++)
            m->filters[i] = r_filter(r, m);
        u->filters = m->filters;
        u->count = m->nfilters;
        if (v5) {
            r_props(r, m, C_UNSUBSCRIBE, m->props, &m->nprops);
            u->props = build_block(m, m->props, m->nprops, m->pbuf, sizeof m->pbuf);
        }
        break;
    }
    case MQC_DISCONNECT:
    case MQC_AUTH:
        if (v5) {
            p->u.reason.code = t == MQC_AUTH ? PICK(r, rc_auth) : PICK(r, rc_disconnect);
            r_props(r, m, t == MQC_AUTH ? C_AUTH : C_DISCONNECT, m->props, &m->nprops);
            p->u.reason.props = build_block(m, m->props, m->nprops, m->pbuf, sizeof m->pbuf);
        }
        break;
    default:
        break;
    }
}

/* ---- the fixed C->node table ------------------------------------------------------------ */
static struct mqc_prop P_num(uint8_t id, uint32_t n)
{
    return (struct mqc_prop){.id = id, .num = n};
}

static struct mqc_prop P_str(struct model *m, uint8_t id, const char *s)
{
    return (struct mqc_prop){.id = id, .str = m_str(m, s)};
}

static struct mqc_prop P_user(struct model *m, const char *k, const char *v)
{
    return (struct mqc_prop){.id = MQC_PROP_USER, .str = m_str(m, k), .val = m_str(m, v)};
}

#define NFIXED 30

/* Fixed case k (0 <= k < NFIXED) for version m->v; false if it does not apply to it. */
static bool fixed_packet(struct model *m, int k)
{
    struct mqc_packet *p = &m->pkt;
    bool v5 = m->v == MQC_V5;
    switch (k) {
    case 0: /* AUTH, code 0 and no properties: the short form (Remaining Length 0) */
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "auth-short-v5");
        p->type = MQC_AUTH;
        return true;
    case 1:
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "auth-reauth-props-v5");
        p->type = MQC_AUTH;
        p->u.reason.code = 0x19;
        add_prop(m->props, &m->nprops, P_str(m, MQC_PROP_AUTH_METHOD, "SCRAM-SHA-256"));
        add_prop(m->props, &m->nprops, P_str(m, MQC_PROP_AUTH_DATA, "\x01\x02"));
        break;
    case 2:
        snprintf(m->name, sizeof m->name, "disconnect-short-v%u", m->v);
        p->type = MQC_DISCONNECT;
        return true;
    case 3:
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "disconnect-code-only-v5");
        p->type = MQC_DISCONNECT;
        p->u.reason.code = 0x04;
        return true;
    case 4:
    case 5:
    case 6:
    case 7:
        snprintf(m->name, sizeof m->name, "%s-short-v%u", cmd_name(MQC_PUBACK + k - 4), m->v);
        p->type = (uint8_t)(MQC_PUBACK + k - 4);
        p->u.ack.packet_id = 0x1234;
        return true;
    case 8:
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "puback-code-only-v5");
        p->type = MQC_PUBACK;
        p->u.ack.packet_id = 1;
        p->u.ack.code = 0x10;
        return true;
    case 9:
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "pubrel-code-props-v5");
        p->type = MQC_PUBREL;
        p->u.ack.packet_id = 65535;
        p->u.ack.code = 0x92;
        add_prop(m->props, &m->nprops, P_str(m, MQC_PROP_REASON_STRING, "not found"));
        break;
    case 10:
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "connect-password-only-v5");
        p->type = MQC_CONNECT;
        p->u.connect.version = 5;
        p->u.connect.clean_start = true;
        p->u.connect.client_id = m_str(m, "p");
        p->u.connect.has_password = true;
        p->u.connect.password = m_str(m, "secret");
        return true;
    case 11:
        snprintf(m->name, sizeof m->name, "connect-full-v%u", m->v);
        p->type = MQC_CONNECT;
        p->u.connect.version = m->v;
        p->u.connect.bridge = true;
        p->u.connect.keepalive = 60;
        p->u.connect.client_id = m_str(m, "site-a-edge");
        p->u.connect.will = true;
        p->u.connect.will_qos = 1;
        p->u.connect.will_retain = true;
        p->u.connect.will_topic = m_str(m, "relay/site-a/status");
        p->u.connect.will_payload = m_str(m, "offline");
        p->u.connect.has_username = true;
        p->u.connect.username = m_str(m, "relay");
        p->u.connect.has_password = true;
        p->u.connect.password = m_mem(m, "\x00\xff", 2);
        if (v5) {
            add_prop(m->props, &m->nprops, P_num(MQC_PROP_SESSION_EXPIRY, 3600));
            add_prop(m->props, &m->nprops, P_num(MQC_PROP_RECEIVE_MAXIMUM, 64));
            add_prop(m->props, &m->nprops, P_num(MQC_PROP_MAXIMUM_PACKET_SIZE, 262144));
            add_prop(m->props, &m->nprops, P_num(MQC_PROP_TOPIC_ALIAS_MAXIMUM, 10));
            add_prop(m->props, &m->nprops, P_num(MQC_PROP_REQUEST_PROBLEM_INFO, 1));
            add_prop(m->wprops, &m->nwprops, P_num(MQC_PROP_WILL_DELAY, 5));
            add_prop(m->wprops, &m->nwprops, P_num(MQC_PROP_PAYLOAD_FORMAT, 1));
            add_prop(m->wprops, &m->nwprops, P_str(m, MQC_PROP_CONTENT_TYPE, "text/plain"));
        }
        break;
    case 12:
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "publish-user-props-empty-v5");
        p->type = MQC_PUBLISH;
        p->u.publish.topic = m_str(m, "t");
        add_prop(m->props, &m->nprops, P_user(m, "", ""));
        add_prop(m->props, &m->nprops, P_user(m, "k", ""));
        add_prop(m->props, &m->nprops, P_user(m, "k", "second"));
        add_prop(m->props, &m->nprops, P_user(m, "a", "1"));
        add_prop(m->props, &m->nprops, P_user(m, "k", "third"));
        break;
    case 13:
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "publish-interleaved-user-props-v5");
        p->type = MQC_PUBLISH;
        p->u.publish.qos = 2;
        p->u.publish.packet_id = 9;
        p->u.publish.topic = m_str(m, "a/b");
        p->u.publish.payload = m_str(m, "payload");
        add_prop(m->props, &m->nprops, P_user(m, "relay-path", "a"));
        add_prop(m->props, &m->nprops, P_num(MQC_PROP_SUBSCRIPTION_ID, 5));
        add_prop(m->props, &m->nprops, P_user(m, "x", "1"));
        add_prop(m->props, &m->nprops, P_num(MQC_PROP_SUBSCRIPTION_ID, 268435455));
        add_prop(m->props, &m->nprops, P_user(m, "relay-path", "b"));
        add_prop(m->props, &m->nprops, P_num(MQC_PROP_MESSAGE_EXPIRY, 0));
        break;
    case 14:
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "publish-alias-no-topic-v5");
        p->type = MQC_PUBLISH;
        p->u.publish.retain = true;
        add_prop(m->props, &m->nprops, P_num(MQC_PROP_TOPIC_ALIAS, 10));
        break;
    case 15:
        snprintf(m->name, sizeof m->name, "publish-2MiB-v%u", m->v);
        p->type = MQC_PUBLISH;
        p->u.publish.qos = 1;
        p->u.publish.packet_id = 77;
        p->u.publish.topic = m_str(m, "big/payload");
        p->u.publish.payload.len = 2 * 1024 * 1024 + 3;
        p->u.publish.payload.p = m_alloc(m, p->u.publish.payload.len);
        memset((void *)p->u.publish.payload.p, 0xA5, p->u.publish.payload.len);
        return true;
    case 16:
        snprintf(m->name, sizeof m->name, "publish-rl-127-v%u", m->v);
        p->type = MQC_PUBLISH;
        p->u.publish.topic = m_str(m, "t");
        /* 2 + 1 topic bytes (+1 property length in 5.0) + payload = 127: 1-byte RL edge */
        p->u.publish.payload.len = v5 ? 123 : 124;
        p->u.publish.payload.p = m_alloc(m, p->u.publish.payload.len);
        memset((void *)p->u.publish.payload.p, 'x', p->u.publish.payload.len);
        return true;
    case 17:
        snprintf(m->name, sizeof m->name, "publish-rl-128-v%u", m->v);
        p->type = MQC_PUBLISH;
        p->u.publish.topic = m_str(m, "t");
        p->u.publish.payload.len = v5 ? 124 : 125;
        p->u.publish.payload.p = m_alloc(m, p->u.publish.payload.len);
        memset((void *)p->u.publish.payload.p, 'y', p->u.publish.payload.len);
        return true;
    case 18:
        snprintf(m->name, sizeof m->name, "subscribe-v%u", m->v);
        p->type = MQC_SUBSCRIBE;
        p->u.subscribe.packet_id = 3;
        m->subs[0] = (struct mqc_sub){m_str(m, "factory/+/cmd/#"), 1};
        m->subs[1] = (struct mqc_sub){m_str(m, "$share/relay/a/#"), 2};
        m->subs[2] = (struct mqc_sub){m_str(m, "#"), 0};
        m->nsubs = 3;
        if (v5) {
            m->subs[0].options |= MQC_SUB_NO_LOCAL | MQC_SUB_RETAIN_AS_PUBLISHED | 0x20;
            m->subs[1].options |= MQC_SUB_RETAIN_AS_PUBLISHED | 0x10;
            add_prop(m->props, &m->nprops, P_num(MQC_PROP_SUBSCRIPTION_ID, 16384));
        }
        p->u.subscribe.subs = m->subs;
        p->u.subscribe.count = m->nsubs;
        break;
    case 19:
        snprintf(m->name, sizeof m->name, "unsubscribe-v%u", m->v);
        p->type = MQC_UNSUBSCRIBE;
        p->u.unsubscribe.packet_id = 4;
        m->filters[0] = m_str(m, "factory/+/cmd/#");
        m->filters[1] = m_str(m, "$oshare/relay/b");
        m->nfilters = 2;
        p->u.unsubscribe.filters = m->filters;
        p->u.unsubscribe.count = m->nfilters;
        break;
    case 20:
        snprintf(m->name, sizeof m->name, "suback-v%u", m->v);
        p->type = MQC_SUBACK;
        p->u.suback.packet_id = 3;
        m->codes[0] = 0;
        m->codes[1] = 1;
        m->codes[2] = 2;
        m->codes[3] = m->v == MQC_V31 ? 0 : 0x80;
        p->u.suback.codes = (struct mqc_bytes){m->codes, 4};
        return true;
    case 21:
        snprintf(m->name, sizeof m->name, "unsuback-v%u", m->v);
        p->type = MQC_UNSUBACK;
        p->u.suback.packet_id = 4;
        if (v5) {
            m->codes[0] = 0x11;
            p->u.suback.codes = (struct mqc_bytes){m->codes, 1};
        }
        return true;
    case 22:
    case 23:
        snprintf(m->name, sizeof m->name, "%s-v%u", k == 22 ? "pingreq" : "pingresp", m->v);
        p->type = k == 22 ? MQC_PINGREQ : MQC_PINGRESP;
        return true;
    case 24:
        snprintf(m->name, sizeof m->name, "connack-v%u", m->v);
        p->type = MQC_CONNACK;
        p->u.connack.session_present = true;
        if (v5) {
            add_prop(m->props, &m->nprops, P_num(MQC_PROP_MAXIMUM_QOS, 1));
            add_prop(m->props, &m->nprops, P_num(MQC_PROP_RETAIN_AVAILABLE, 0));
            add_prop(m->props, &m->nprops, P_num(MQC_PROP_RECEIVE_MAXIMUM, 200));
            add_prop(m->props, &m->nprops, P_num(MQC_PROP_TOPIC_ALIAS_MAXIMUM, 10));
            add_prop(m->props, &m->nprops, P_num(MQC_PROP_SERVER_KEEP_ALIVE, 60));
            add_prop(m->props, &m->nprops, P_str(m, MQC_PROP_ASSIGNED_CLIENT_ID, "auto"));
        }
        break;
    case 25:
        snprintf(m->name, sizeof m->name, "connect-empty-id-v%u", m->v);
        if (m->v == MQC_V31)
            return false;
        p->type = MQC_CONNECT;
        p->u.connect.version = m->v;
        p->u.connect.clean_start = true;
        return true;
    case 26:
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "disconnect-props-v5");
        p->type = MQC_DISCONNECT;
        p->u.reason.code = 0x8B;
        add_prop(m->props, &m->nprops, P_str(m, MQC_PROP_SERVER_REFERENCE, "other:1883"));
        add_prop(m->props, &m->nprops, P_num(MQC_PROP_SESSION_EXPIRY, 0));
        break;
    case 27:
        snprintf(m->name, sizeof m->name, "publish-unicode-v%u", m->v);
        p->type = MQC_PUBLISH;
        p->u.publish.topic = m_str(m, "\xef\xbb\xbf/\xc3\xbc/\xe4\xb8\xad/\xf0\x9f\x98\x80/"
                                      "\xf4\x8f\xbf\xbf/\x01\x7f/\xef\xbf\xbf");
        p->u.publish.payload = m_str(m, "\xff\xfe");
        return true;
    case 28:
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "puback-props-only-code0-v5");
        p->type = MQC_PUBACK;
        p->u.ack.packet_id = 2;
        add_prop(m->props, &m->nprops, P_user(m, "a", "b"));
        break;
    case 29:
        if (!v5)
            return false;
        snprintf(m->name, sizeof m->name, "connect-will-props-v5");
        p->type = MQC_CONNECT;
        p->u.connect.version = 5;
        p->u.connect.client_id = m_str(m, "w");
        p->u.connect.will = true;
        p->u.connect.will_topic = m_str(m, "w/t");
        add_prop(m->wprops, &m->nwprops, P_str(m, MQC_PROP_RESPONSE_TOPIC, "resp"));
        add_prop(m->wprops, &m->nwprops, P_str(m, MQC_PROP_CORRELATION_DATA, "id-1"));
        add_prop(m->wprops, &m->nwprops, P_user(m, "k", "v"));
        add_prop(m->wprops, &m->nwprops, P_num(MQC_PROP_MESSAGE_EXPIRY, 30));
        break;
    default:
        return false;
    }
    /* property blocks for the cases that break out of the switch */
    struct mqc_props b = build_block(m, m->props, m->nprops, m->pbuf, sizeof m->pbuf);
    switch (p->type) {
    case MQC_CONNECT:
        p->u.connect.props = b;
        p->u.connect.will_props = build_block(m, m->wprops, m->nwprops, m->wbuf, sizeof m->wbuf);
        break;
    case MQC_CONNACK:
        p->u.connack.props = b;
        break;
    case MQC_PUBLISH:
        p->u.publish.props = b;
        break;
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBREL:
    case MQC_PUBCOMP:
        p->u.ack.props = b;
        break;
    case MQC_SUBSCRIBE:
        p->u.subscribe.props = b;
        break;
    case MQC_DISCONNECT:
    case MQC_AUTH:
        p->u.reason.props = b;
        break;
    default:
        break;
    }
    return true;
}

/* Encodes m, runs our own consistency checks, writes the record and the description line. */
static void emit(struct model *m, FILE *out, size_t idx)
{
    size_t sz = 0, wr = 0;
    int rc = mqc_size(&m->pkt, m->v, &sz);
    if (rc != MQC_OK) {
        self_fail(m->name, "mqc_size = %s for a valid packet", err_name(rc));
        return;
    }
    uint8_t *b = xmalloc(sz + 1);
    /* ENOSPC must write nothing */
    memset(b, 0xEE, sz + 1);
    rc = mqc_encode(&m->pkt, m->v, b, sz - 1, &wr);
    if (rc != MQC_ENOSPC)
        self_fail(m->name, "mqc_encode with cap size-1 = %s, not MQC_ENOSPC", err_name(rc));
    for (size_t i = 0; i <= sz; i++) {
        if (b[i] != 0xEE) {
            self_fail(m->name, "mqc_encode wrote byte %zu although it returned ENOSPC", i);
            break;
        }
    }
    rc = mqc_encode(&m->pkt, m->v, b, sz, &wr);
    if (rc != MQC_OK || wr != sz) {
        self_fail(m->name, "mqc_encode = %s, wrote %zu of size %zu", err_name(rc), wr, sz);
        free(b);
        return;
    }
    if (m->pkt.type == MQC_PUBLISH) {
        size_t sz2 = 0, wr2 = 0, pid_off = 0;
        uint8_t *b2 = xmalloc(sz);
        if (mqc_size_publish(&m->pkt.u.publish, m->v, &sz2) != MQC_OK || sz2 != sz ||
            mqc_encode_publish(&m->pkt.u.publish, m->v, b2, sz, &wr2, &pid_off) != MQC_OK ||
            wr2 != sz || memcmp(b, b2, sz) != 0)
            self_fail(m->name, "mqc_encode_publish disagrees with mqc_encode");
        else if (m->pkt.u.publish.qos &&
                 (pid_off + 2 > sz || b2[pid_off] != (m->pkt.u.publish.packet_id >> 8) ||
                  b2[pid_off + 1] != (m->pkt.u.publish.packet_id & 0xff)))
            self_fail(m->name, "pid_off %zu does not point at the packet identifier", pid_off);
        free(b2);
    }
    if (m->pkt.type >= MQC_PUBACK && m->pkt.type <= MQC_PUBCOMP) {
        uint8_t b2[1024];
        size_t wr2 = 0;
        if (sz > sizeof b2 ||
            mqc_encode_ack(m->pkt.type, &m->pkt.u.ack, m->v, b2, sizeof b2, &wr2) != MQC_OK ||
            wr2 != sz || memcmp(b, b2, sz) != 0)
            self_fail(m->name, "mqc_encode_ack disagrees with mqc_encode");
    }
    write_record(out, m->v, b, sz);
    struct view w = {.pkt = &m->pkt,
                     .v = m->v,
                     .props = m->props,
                     .nprops = m->nprops,
                     .wprops = m->wprops,
                     .nwprops = m->nwprops,
                     .subs = m->subs,
                     .nsubs = m->nsubs,
                     .filters = m->filters,
                     .nfilters = m->nfilters};
    printf("{\"i\":%zu,\"v\":%u,\"name\":\"%s\",\"fixed\":%s,\"pkt\":", idx, (unsigned)m->v,
           m->name, j_bool(m->fixed));
    j_packet(stdout, &w);
    printf("}\n");
    free(b);
}

static void model_reset(struct model *m, uint8_t v)
{
    uint8_t *arena = m->arena;
    size_t cap = m->cap;
    memset(m, 0, sizeof *m);
    m->arena = arena;
    m->cap = cap;
    m->v = v;
}

static int cmd_encode(const char *seed_s, const char *count_s, const char *path)
{
    struct rng r = {strtoull(seed_s, NULL, 10) ^ 0xC0DEC0DEull};
    long count = strtol(count_s, NULL, 10);
    FILE *out = fopen(path, "wb");
    if (!out) {
        fprintf(stderr, "mqc_diff: %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct model *m = xmalloc(sizeof *m);
    m->cap = 3u << 20;
    m->arena = xmalloc(m->cap);
    size_t idx = 0;
    static const uint8_t versions[] = {MQC_V31, MQC_V311, MQC_V5};
    for (int k = 0; k < NFIXED; k++) {
        for (size_t vi = 0; vi < 3; vi++) {
            model_reset(m, versions[vi]);
            m->fixed = true;
            if (fixed_packet(m, k))
                emit(m, out, idx++);
        }
    }
    for (long i = 0; i < count; i++) {
        model_reset(m, versions[rint_(&r, 0, 2)]);
        int t = (int)rint_(&r, 1, m->v == MQC_V5 ? 15 : 14);
        snprintf(m->name, sizeof m->name, "random-%ld-%s-v%u", i, cmd_name(t), (unsigned)m->v);
        r_packet(&r, m, t);
        emit(m, out, idx++);
    }
    if (fclose(out) != 0) {
        fprintf(stderr, "mqc_diff: %s: write failed\n", path);
        return 1;
    }
    free(m->arena);
    free(m);
    return self_failures ? 3 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "decode") == 0)
        return cmd_decode(argv[2]);
    if (argc == 5 && strcmp(argv[1], "encode") == 0)
        return cmd_encode(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: mqc_diff decode FILE | mqc_diff encode SEED COUNT OUTFILE\n");
    return 1;
}
