/*
 * fuzz_props: an MQTT 5 property block (the bytes after the Property Length).
 *
 * For every place a block can sit (packet types 1..15 and MQC_CTX_WILL): mqc_props_check, and
 * when it passes, a walk with mqc_props_next that must cover the block exactly, with each
 * property's size (mqc_prop_size) matching its bytes and mqc_prop_put rebuilding the block
 * byte for byte; the rules the check promises (known id, allowed here, no forbidden repeat,
 * values in range, UTF-8) are re-checked independently on the walked values. Also a walk of
 * the unchecked block, which must end (AGAIN or EMALFORMED) without reading outside it.
 */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Where each property may appear (MQTT 5.0 §2.2.2.2), as a bit mask over contexts:
 * bit t for packet type t, bit 16 for the Will. Written out here from the table, independent
 * of the codec's own table. */
#define B(t) (1u << (t))
#define W (1u << MQC_CTX_WILL)
static uint32_t allowed(uint8_t id)
{
    switch (id) {
    case 0x01: /* Payload Format Indicator */
    case 0x02: /* Message Expiry Interval */
    case 0x03: /* Content Type */
    case 0x08: /* Response Topic */
    case 0x09: /* Correlation Data */
        return B(MQC_PUBLISH) | W;
    case 0x0B: /* Subscription Identifier */
        return B(MQC_PUBLISH) | B(MQC_SUBSCRIBE);
    case 0x11: /* Session Expiry Interval */
        return B(MQC_CONNECT) | B(MQC_CONNACK) | B(MQC_DISCONNECT);
    case 0x12: /* Assigned Client Identifier */
    case 0x13: /* Server Keep Alive */
    case 0x1A: /* Response Information */
    case 0x24: /* Maximum QoS */
    case 0x25: /* Retain Available */
    case 0x28: /* Wildcard Subscription Available */
    case 0x29: /* Subscription Identifier Available */
    case 0x2A: /* Shared Subscription Available */
        return B(MQC_CONNACK);
    case 0x15: /* Authentication Method */
    case 0x16: /* Authentication Data */
        return B(MQC_CONNECT) | B(MQC_CONNACK) | B(MQC_AUTH);
    case 0x17: /* Request Problem Information */
    case 0x19: /* Request Response Information */
        return B(MQC_CONNECT);
    case 0x18: /* Will Delay Interval */
        return W;
    case 0x1C: /* Server Reference */
        return B(MQC_CONNACK) | B(MQC_DISCONNECT);
    case 0x1F: /* Reason String */
        return B(MQC_CONNACK) | B(MQC_PUBACK) | B(MQC_PUBREC) | B(MQC_PUBREL) | B(MQC_PUBCOMP) |
               B(MQC_SUBACK) | B(MQC_UNSUBACK) | B(MQC_DISCONNECT) | B(MQC_AUTH);
    case 0x21: /* Receive Maximum */
    case 0x22: /* Topic Alias Maximum */
    case 0x27: /* Maximum Packet Size */
        return B(MQC_CONNECT) | B(MQC_CONNACK);
    case 0x23: /* Topic Alias */
        return B(MQC_PUBLISH);
    case 0x26: /* User Property */
        return B(MQC_CONNECT) | B(MQC_CONNACK) | B(MQC_PUBLISH) | B(MQC_PUBACK) | B(MQC_PUBREC) |
               B(MQC_PUBREL) | B(MQC_PUBCOMP) | B(MQC_SUBSCRIBE) | B(MQC_SUBACK) |
               B(MQC_UNSUBSCRIBE) | B(MQC_UNSUBACK) | B(MQC_DISCONNECT) | B(MQC_AUTH) | W;
    default:
        return 0;
    }
}

static enum mqc_prop_type ref_type(uint8_t id)
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
        return MQC_PT_BYTE;
    case 0x13:
    case 0x21:
    case 0x22:
    case 0x23:
        return MQC_PT_U16;
    case 0x02:
    case 0x11:
    case 0x18:
    case 0x27:
        return MQC_PT_U32;
    case 0x0B:
        return MQC_PT_VARINT;
    case 0x03:
    case 0x08:
    case 0x12:
    case 0x15:
    case 0x1A:
    case 0x1C:
    case 0x1F:
        return MQC_PT_UTF8;
    case 0x09:
    case 0x16:
        return MQC_PT_BINARY;
    case 0x26:
        return MQC_PT_PAIR;
    default:
        return MQC_PT_NONE;
    }
}

/* Walks a block that passed mqc_props_check(ctx) and re-checks its promises. */
static void walk_checked(const struct mqc_props *b, int ctx)
{
    uint8_t *rebuilt = malloc(b->len ? b->len : 1);
    if (!rebuilt)
        abort();
    size_t rlen = 0, off = 0, prev = 0;
    uint64_t seen = 0;
    struct mqc_prop p;
    int rc;
    while ((rc = mqc_props_next(b, &off, &p)) == MQC_OK) {
        FUZZ_CHECK(off > prev && off <= b->len, "walk did not advance (%zu -> %zu)", prev, off);
        FUZZ_CHECK(allowed(p.id) & (1u << ctx), "id 0x%02x passed check in ctx %d", p.id, ctx);
        FUZZ_CHECK(mqc_prop_type(p.id) == ref_type(p.id), "type of 0x%02x", p.id);
        bool repeatable =
            p.id == MQC_PROP_USER || (p.id == MQC_PROP_SUBSCRIPTION_ID && ctx == MQC_PUBLISH);
        bool first = !(seen & (1ull << p.id));
        FUZZ_CHECK(repeatable || first, "0x%02x repeated in ctx %d", p.id, ctx);
        seen |= 1ull << p.id;
        switch (ref_type(p.id)) {
        case MQC_PT_BYTE:
            FUZZ_CHECK(p.num <= 0xFF, "byte value");
            if (p.id != MQC_PROP_MAXIMUM_QOS) /* Maximum QoS is clamped by the receiver */
                FUZZ_CHECK(p.num <= 1, "0x%02x = %u", p.id, (unsigned)p.num);
            break;
        case MQC_PT_U16:
            FUZZ_CHECK(p.num <= 0xFFFF, "u16 value");
            if (p.id == MQC_PROP_RECEIVE_MAXIMUM || p.id == MQC_PROP_TOPIC_ALIAS)
                FUZZ_CHECK(p.num != 0, "0x%02x = 0", p.id);
            break;
        case MQC_PT_U32:
            if (p.id == MQC_PROP_MAXIMUM_PACKET_SIZE)
                FUZZ_CHECK(p.num != 0, "Maximum Packet Size 0");
            break;
        case MQC_PT_VARINT:
            FUZZ_CHECK(p.num >= 1 && p.num <= MQC_MAX_VARINT, "Subscription Identifier %u",
                       (unsigned)p.num);
            break;
        case MQC_PT_UTF8:
            FUZZ_CHECK(mqc_utf8_check(p.str.p, p.str.len) == MQC_OK, "UTF-8");
            break;
        case MQC_PT_PAIR:
            FUZZ_CHECK(mqc_utf8_check(p.str.p, p.str.len) == MQC_OK &&
                           mqc_utf8_check(p.val.p, p.val.len) == MQC_OK,
                       "UTF-8 pair");
            break;
        default:
            break;
        }
        /* the borrowed bytes lie inside the block */
        if (p.str.len)
            FUZZ_CHECK(p.str.p >= b->p && p.str.p + p.str.len <= b->p + off, "str outside");
        if (p.val.len)
            FUZZ_CHECK(p.val.p >= b->p && p.val.p + p.val.len <= b->p + off, "val outside");
        FUZZ_CHECK(mqc_prop_size(&p) == off - prev, "prop_size %zu, bytes %zu", mqc_prop_size(&p),
                   off - prev);
        /* mqc_prop_put rebuilds it: exactly into the remaining room, and not into less */
        size_t before = rlen;
        if (off - prev > 0) {
            size_t tmp = rlen;
            FUZZ_CHECK(mqc_prop_put(&p, rebuilt, rlen + (off - prev) - 1, &tmp) == MQC_ENOSPC &&
                           tmp == rlen,
                       "put into too little room");
        }
        FUZZ_CHECK(mqc_prop_put(&p, rebuilt, b->len, &rlen) == MQC_OK, "put");
        FUZZ_CHECK(rlen - before == off - prev &&
                       memcmp(rebuilt + before, b->p + prev, off - prev) == 0,
                   "rebuilt 0x%02x differs", p.id);
        /* find() returns the first occurrence */
        if (first) {
            struct mqc_prop q;
            FUZZ_CHECK(mqc_props_find(b, p.id, &q) == MQC_OK && q.id == p.id && q.num == p.num &&
                           fz_bytes_eq(q.str, p.str) && fz_bytes_eq(q.val, p.val),
                       "find 0x%02x", p.id);
        }
        prev = off;
    }
    FUZZ_CHECK(rc == MQC_AGAIN && off == b->len, "walk of a checked block ended %d at %zu/%zu", rc,
               off, b->len);
    FUZZ_CHECK(rlen == b->len, "rebuilt %zu of %zu", rlen, b->len);
    /* absent ids are not found */
    for (unsigned id = 1; id < 64; id++) {
        struct mqc_prop q;
        if (!(seen & (1ull << id)))
            FUZZ_CHECK(mqc_props_find(b, (uint8_t)id, &q) == MQC_AGAIN, "found absent 0x%02x", id);
    }
    free(rebuilt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = fz_copy(data, size);
    struct mqc_props b = {buf, size};

    /* the unchecked walk terminates and stays inside */
    size_t off = 0, prev = 0;
    int rc;
    struct mqc_prop p;
    bool malformed = false;
    while ((rc = mqc_props_next(&b, &off, &p)) == MQC_OK) {
        FUZZ_CHECK(off > prev && off <= size, "unchecked walk did not advance");
        prev = off;
    }
    if (rc == MQC_AGAIN)
        FUZZ_CHECK(off == size, "AGAIN before the end");
    else
        malformed = true;

    for (int ctx = 1; ctx <= MQC_CTX_WILL; ctx++) {
        int crc = mqc_props_check(&b, ctx);
        FUZZ_CHECK(crc == MQC_OK || crc < 0, "check returned %d", crc);
        if (crc == MQC_OK) {
            FUZZ_CHECK(!malformed, "check OK, walk malformed");
            walk_checked(&b, ctx);
        }
    }
    free(buf);
    return 0;
}
