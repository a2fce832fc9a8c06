/*
 * mqttcodec internals: the bounds-checked cursor every decoder reads through, the matching
 * writers, and the few helpers shared between files. Not installed; not part of the API.
 *
 * Cursor rule (STYLE.md §5): a read first compares the length it needs with the bytes left,
 * (size_t)(end - p), and only then touches p. p + n is never computed before that check, so no
 * pointer ever leaves [start, end].
 */
#ifndef MQTTCODEC_INTERNAL_H
#define MQTTCODEC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mqttcodec.h"

/* A read position inside one borrowed buffer: p <= end always. */
struct cur {
    const uint8_t *p;
    const uint8_t *end;
};

static inline size_t cur_left(const struct cur *c)
{
    return (size_t)(c->end - c->p);
}

static inline int rd_u8(struct cur *c, uint8_t *v)
{
    if (c->p == c->end)
        return MQC_EMALFORMED;
    *v = *c->p++;
    return MQC_OK;
}

/* Two-byte integer, big-endian [MQTT-1.5.2]. */
static inline int rd_u16(struct cur *c, uint16_t *v)
{
    if (cur_left(c) < 2)
        return MQC_EMALFORMED;
    *v = (uint16_t)(((unsigned)c->p[0] << 8) | (unsigned)c->p[1]);
    c->p += 2;
    return MQC_OK;
}

/* Four-byte integer, big-endian [MQTT-1.5.3]. */
static inline int rd_u32(struct cur *c, uint32_t *v)
{
    if (cur_left(c) < 4)
        return MQC_EMALFORMED;
    *v = ((uint32_t)c->p[0] << 24) | ((uint32_t)c->p[1] << 16) | ((uint32_t)c->p[2] << 8) |
         (uint32_t)c->p[3];
    c->p += 4;
    return MQC_OK;
}

/* Variable byte integer [MQTT-1.5.5]: MQC_OK, MQC_AGAIN when buf ends inside it (at most 4
 * bytes seen), MQC_EVARINT for a 5th byte or a non-minimal form [MQTT-1.5.5-1]. A multi-byte
 * encoding is minimal exactly when its last byte is not 0. */
static inline int varint_dec(const uint8_t *buf, size_t len, uint32_t *value, size_t *used)
{
    uint32_t v = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i == len)
            return MQC_AGAIN;
        uint8_t b = buf[i];
        v |= (uint32_t)(b & 0x7Fu) << (7 * i);
        if ((b & 0x80u) == 0) {
            if (b == 0 && i > 0)
                return MQC_EVARINT;
            *value = v;
            *used = i + 1;
            return MQC_OK;
        }
    }
    return MQC_EVARINT;
}

/* A varint inside a whole packet: running out of bytes there is a malformed packet. */
static inline int rd_varint(struct cur *c, uint32_t *v)
{
    size_t used;
    int rc = varint_dec(c->p, cur_left(c), v, &used);
    if (rc == MQC_AGAIN)
        return MQC_EMALFORMED;
    if (rc != MQC_OK)
        return rc;
    c->p += used;
    return MQC_OK;
}

/* n raw bytes as a borrowed view. */
static inline int rd_bytes(struct cur *c, size_t n, struct mqc_bytes *out)
{
    if (n > cur_left(c))
        return MQC_EMALFORMED;
    out->p = c->p;
    out->len = n;
    c->p += n;
    return MQC_OK;
}

/* Two-byte length prefix + that many bytes (UTF-8 string or binary data) [MQTT-1.5.4],
 * [MQTT-1.5.6]. Content is not checked here. */
static inline int rd_str(struct cur *c, struct mqc_bytes *out)
{
    uint16_t n;
    if (rd_u16(c, &n) != MQC_OK)
        return MQC_EMALFORMED;
    return rd_bytes(c, n, out);
}

/* ---- writers: callers have already checked the room (size first, then write) ---------- */

static inline uint8_t *put_u8(uint8_t *o, uint8_t v)
{
    *o = v;
    return o + 1;
}

static inline uint8_t *put_u16(uint8_t *o, uint16_t v)
{
    o[0] = (uint8_t)(v >> 8);
    o[1] = (uint8_t)(v & 0xFFu);
    return o + 2;
}

static inline uint8_t *put_u32(uint8_t *o, uint32_t v)
{
    o[0] = (uint8_t)(v >> 24);
    o[1] = (uint8_t)((v >> 16) & 0xFFu);
    o[2] = (uint8_t)((v >> 8) & 0xFFu);
    o[3] = (uint8_t)(v & 0xFFu);
    return o + 4;
}

/* v <= MQC_MAX_VARINT (checked by the caller). */
static inline uint8_t *put_varint(uint8_t *o, uint32_t v)
{
    do {
        uint8_t b = (uint8_t)(v & 0x7Fu);
        v >>= 7;
        if (v != 0)
            b |= 0x80u;
        *o++ = b;
    } while (v != 0);
    return o;
}

static inline size_t varint_size(uint32_t v)
{
    return v < 128u ? 1 : v < 16384u ? 2 : v < 2097152u ? 3 : 4;
}

static inline uint8_t *put_bytes(uint8_t *o, const uint8_t *p, size_t n)
{
    if (n != 0)
        memcpy(o, p, n);
    return o + n;
}

/* len <= UINT16_MAX (checked by the caller). */
static inline uint8_t *put_str(uint8_t *o, const struct mqc_bytes *s)
{
    o = put_u16(o, (uint16_t)s->len);
    return put_bytes(o, s->p, s->len);
}

static inline int version_ok(uint8_t v)
{
    return v == MQC_V31 || v == MQC_V311 || v == MQC_V5;
}

/* ---- shared between decode.c and encode.c ------------------------------------------------ */

/* True if code is a reason / return code that packet type may carry in version (for SUBACK
 * and UNSUBACK: one entry of the list). Defined in decode.c. */
int mqci_reason_ok(uint8_t type, uint8_t version, uint8_t code);

/* The fixed-header flags type must carry (all but PUBLISH) [MQTT-2.1.3-1]. */
static inline uint8_t fixed_flags(uint8_t type)
{
    return (type == MQC_PUBREL || type == MQC_SUBSCRIBE || type == MQC_UNSUBSCRIBE) ? 0x2u : 0u;
}

/* True if filter starts a shared subscription ("$share/" or BifroMQ's "$oshare/"). */
static inline int is_shared(const struct mqc_bytes *f)
{
    return (f->len >= 7 && memcmp(f->p, "$share/", 7) == 0) ||
           (f->len >= 8 && memcmp(f->p, "$oshare/", 8) == 0);
}

/* True if subscription options byte o is legal for filter f in version.
 * 3.x: only the QoS bits may be set [MQTT-3.8.3-4] (3.1.1), QoS 3 is invalid.
 * 5.0: bits 6-7 reserved [MQTT-3.8.3-5], QoS 3 and Retain Handling 3 are Protocol Errors
 * (§3.8.3.1), No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4]. */
static inline int subopts_ok(uint8_t version, uint8_t o, const struct mqc_bytes *f)
{
    if (MQC_SUB_QOS(o) == 3)
        return 0;
    if (version != MQC_V5)
        return (o & 0xFCu) == 0;
    if ((o & 0xC0u) != 0 || MQC_SUB_RETAIN_HANDLING(o) == 3)
        return 0;
    if ((o & MQC_SUB_NO_LOCAL) != 0 && is_shared(f))
        return 0;
    return 1;
}

#endif /* MQTTCODEC_INTERNAL_H */
