/*
 * Helpers shared by the mqttcodec fuzz targets: exact-size copies (so an over-read ends in an
 * AddressSanitizer report), list walking, and packet equality.
 *
 * A failed check calls FUZZ_CHECK's abort(), which libFuzzer reports as a crash and saves.
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include "mqttcodec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Hex dump to stderr, for the message of a failed check. */
static inline void fz_dump(const char *what, const uint8_t *p, size_t n)
{
    fprintf(stderr, "%s (%zu bytes):", what, n);
    for (size_t i = 0; i < n && i < 512; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, n > 512 ? " ...\n" : "\n");
}

/* A heap copy of exactly n bytes, so that reading past the end is a heap-buffer-overflow. */
static inline uint8_t *fz_copy(const uint8_t *p, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        abort();
    if (n)
        memcpy(b, p, n);
    return b;
}

static inline int fz_bytes_eq(struct mqc_bytes a, struct mqc_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline int fz_props_eq(struct mqc_props a, struct mqc_props b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* The entries of a SUBSCRIBE: its array when it has one (encoder input), else walked from raw
 * (decoder output). Returns the count, or (size_t)-1 if the walk fails or disagrees with count.
 * *out is malloc'ed (free it). */
static inline size_t fz_subs(const struct mqc_subscribe *s, uint8_t v, struct mqc_sub **out)
{
    struct mqc_sub *a = malloc((s->count + 1) * sizeof *a);
    if (!a)
        abort();
    *out = a;
    if (s->subs) {
        memcpy(a, s->subs, s->count * sizeof *a);
        return s->count;
    }
    size_t off = 0, k = 0;
    int rc;
    while (k <= s->count && (rc = mqc_subscribe_next(s, v, &off, &a[k])) == MQC_OK)
        k++;
    if (k != s->count || rc != MQC_AGAIN)
        return (size_t)-1;
    return k;
}

static inline size_t fz_unsubs(const struct mqc_unsubscribe *u, struct mqc_bytes **out)
{
    struct mqc_bytes *a = malloc((u->count + 1) * sizeof *a);
    if (!a)
        abort();
    *out = a;
    if (u->filters) {
        memcpy(a, u->filters, u->count * sizeof *a);
        return u->count;
    }
    size_t off = 0, k = 0;
    int rc;
    while (k <= u->count && (rc = mqc_unsubscribe_next(u, &off, &a[k])) == MQC_OK)
        k++;
    if (k != u->count || rc != MQC_AGAIN)
        return (size_t)-1;
    return k;
}

/* Field-by-field equality of two packets of protocol version v (a decoded one, or an encoder
 * input). Returns NULL if equal, else the name of the first field that differs. */
static inline const char *fz_packet_diff(const struct mqc_packet *a, const struct mqc_packet *b,
                                         uint8_t v)
{
    if (a->type != b->type)
        return "type";
    switch (a->type) {
    case MQC_CONNECT: {
        const struct mqc_connect *x = &a->u.connect, *y = &b->u.connect;
        if (x->version != y->version)
            return "connect.version";
        if (x->bridge != y->bridge)
            return "connect.bridge";
        if (x->clean_start != y->clean_start)
            return "connect.clean_start";
        if (x->keepalive != y->keepalive)
            return "connect.keepalive";
        if (!fz_props_eq(x->props, y->props))
            return "connect.props";
        if (!fz_bytes_eq(x->client_id, y->client_id))
            return "connect.client_id";
        if (x->will != y->will)
            return "connect.will";
        if (x->will) {
            if (x->will_qos != y->will_qos)
                return "connect.will_qos";
            if (x->will_retain != y->will_retain)
                return "connect.will_retain";
            if (!fz_props_eq(x->will_props, y->will_props))
                return "connect.will_props";
            if (!fz_bytes_eq(x->will_topic, y->will_topic))
                return "connect.will_topic";
            if (!fz_bytes_eq(x->will_payload, y->will_payload))
                return "connect.will_payload";
        }
        if (x->has_username != y->has_username)
            return "connect.has_username";
        if (x->has_username && !fz_bytes_eq(x->username, y->username))
            return "connect.username";
        if (x->has_password != y->has_password)
            return "connect.has_password";
        if (x->has_password && !fz_bytes_eq(x->password, y->password))
            return "connect.password";
        return NULL;
    }
    case MQC_CONNACK:
        if (a->u.connack.session_present != b->u.connack.session_present)
            return "connack.session_present";
        if (a->u.connack.code != b->u.connack.code)
            return "connack.code";
        if (!fz_props_eq(a->u.connack.props, b->u.connack.props))
            return "connack.props";
        return NULL;
    case MQC_PUBLISH: {
        const struct mqc_publish *x = &a->u.publish, *y = &b->u.publish;
        if (x->qos != y->qos)
            return "publish.qos";
        if (x->dup != y->dup)
            return "publish.dup";
        if (x->retain != y->retain)
            return "publish.retain";
        if (!fz_bytes_eq(x->topic, y->topic))
            return "publish.topic";
        if (x->packet_id != y->packet_id)
            return "publish.packet_id";
        if (!fz_props_eq(x->props, y->props))
            return "publish.props";
        if (!fz_bytes_eq(x->payload, y->payload))
            return "publish.payload";
        return NULL;
    }
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBREL:
    case MQC_PUBCOMP:
        if (a->u.ack.packet_id != b->u.ack.packet_id)
            return "ack.packet_id";
        if (a->u.ack.code != b->u.ack.code)
            return "ack.code";
        if (!fz_props_eq(a->u.ack.props, b->u.ack.props))
            return "ack.props";
        return NULL;
    case MQC_SUBSCRIBE: {
        if (a->u.subscribe.packet_id != b->u.subscribe.packet_id)
            return "subscribe.packet_id";
        if (!fz_props_eq(a->u.subscribe.props, b->u.subscribe.props))
            return "subscribe.props";
        if (a->u.subscribe.count != b->u.subscribe.count)
            return "subscribe.count";
        struct mqc_sub *sa, *sb;
        size_t na = fz_subs(&a->u.subscribe, v, &sa), nb = fz_subs(&b->u.subscribe, v, &sb);
        const char *d = NULL;
        if (na == (size_t)-1 || nb == (size_t)-1)
            d = "subscribe.walk";
        else if (na != nb)
            d = "subscribe.n";
        for (size_t i = 0; !d && i < na; i++) {
            if (!fz_bytes_eq(sa[i].filter, sb[i].filter))
                d = "subscribe.filter";
            else if (sa[i].options != sb[i].options)
                d = "subscribe.options";
        }
        free(sa);
        free(sb);
        return d;
    }
    case MQC_SUBACK:
    case MQC_UNSUBACK:
        if (a->u.suback.packet_id != b->u.suback.packet_id)
            return "suback.packet_id";
        if (!fz_props_eq(a->u.suback.props, b->u.suback.props))
            return "suback.props";
        if (!fz_bytes_eq(a->u.suback.codes, b->u.suback.codes))
            return "suback.codes";
        return NULL;
    case MQC_UNSUBSCRIBE: {
        if (a->u.unsubscribe.packet_id != b->u.unsubscribe.packet_id)
            return "unsubscribe.packet_id";
        if (!fz_props_eq(a->u.unsubscribe.props, b->u.unsubscribe.props))
            return "unsubscribe.props";
        if (a->u.unsubscribe.count != b->u.unsubscribe.count)
            return "unsubscribe.count";
        struct mqc_bytes *fa, *fb;
        size_t na = fz_unsubs(&a->u.unsubscribe, &fa), nb = fz_unsubs(&b->u.unsubscribe, &fb);
        const char *d = NULL;
        if (na == (size_t)-1 || nb == (size_t)-1)
            d = "unsubscribe.walk";
        else if (na != nb)
            d = "unsubscribe.n";
        for (size_t i = 0; !d && i < na; i++)
            if (!fz_bytes_eq(fa[i], fb[i]))
                d = "unsubscribe.filter";
        free(fa);
        free(fb);
        return d;
    }
    case MQC_DISCONNECT:
    case MQC_AUTH:
        if (a->u.reason.code != b->u.reason.code)
            return "reason.code";
        if (!fz_props_eq(a->u.reason.props, b->u.reason.props))
            return "reason.props";
        return NULL;
    default:
        return NULL;
    }
}

/* The encode version for pkt on a link speaking v (CONNECT carries its own). */
static inline uint8_t fz_enc_version(const struct mqc_packet *p, uint8_t v)
{
    return p->type == MQC_CONNECT ? p->u.connect.version : v;
}

/* Encodes p into a fresh exact-size buffer, checking the size/encode/ENOSPC contract.
 * Returns MQC_OK with *out (malloc'ed) and *len, or mqc_size()'s error. */
static inline int fz_encode(const struct mqc_packet *p, uint8_t v, uint8_t **out, size_t *len)
{
    size_t sz = 0, wr = 0;
    int rc = mqc_size(p, v, &sz);
    if (rc != MQC_OK)
        return rc;
    FUZZ_CHECK(sz >= 2 && sz <= 5 + (size_t)MQC_MAX_REMAINING, "size %zu", sz);
    uint8_t *b = malloc(sz);
    if (!b)
        abort();
    /* too small by one: MQC_ENOSPC and nothing written */
    memset(b, 0xEE, sz);
    rc = mqc_encode(p, v, b, sz - 1, &wr);
    FUZZ_CHECK(rc == MQC_ENOSPC, "encode into size-1 gave %d", rc);
    for (size_t i = 0; i < sz; i++)
        FUZZ_CHECK(b[i] == 0xEE, "ENOSPC encode wrote byte %zu", i);
    rc = mqc_encode(p, v, b, sz, &wr);
    FUZZ_CHECK(rc == MQC_OK, "mqc_size OK but mqc_encode %d", rc);
    FUZZ_CHECK(wr == sz, "mqc_size %zu, mqc_encode wrote %zu", sz, wr);
    /* it is one whole frame */
    struct mqc_frame f;
    rc = mqc_frame_check(b, sz, 0, &f);
    FUZZ_CHECK(rc == MQC_OK && f.total == sz && f.type == p->type, "frame %d total %zu", rc,
               f.total);
    *out = b;
    *len = sz;
    return MQC_OK;
}

#endif /* FUZZ_UTIL_H */
