/*
 * §2.1 Fixed header: byte 1 = packet type (high nibble) and flags (low nibble), then the
 * Remaining Length as a variable byte integer. Framing is stateless: the caller keeps the bytes
 * and calls again when more arrive.
 */
#include "internal.h"

int mqc_frame_check(const uint8_t *buf, size_t len, uint32_t max_packet, struct mqc_frame *f)
{
    if (len == 0)
        return MQC_AGAIN;
    uint8_t b0 = buf[0];
    if ((b0 >> 4) == 0)
        return MQC_ETYPE; /* type 0 is reserved [MQTT-2.1.2] */
    uint32_t rem;
    size_t used;
    int rc = varint_dec(buf + 1, len - 1, &rem, &used);
    if (rc != MQC_OK)
        return rc; /* MQC_AGAIN, or MQC_EVARINT [MQTT-1.5.5-1] */
    uint64_t total = (uint64_t)(1 + used) + rem;
    /* Reject before the body is buffered: the peer may not send it at all. */
    if (max_packet != 0 && total > max_packet)
        return MQC_ETOOBIG;
    if (total > len)
        return MQC_AGAIN;
    f->type = (uint8_t)(b0 >> 4);
    f->flags = (uint8_t)(b0 & 0x0Fu);
    f->hdr_len = (uint8_t)(1 + used);
    f->remaining = rem;
    f->total = (size_t)total;
    return MQC_OK;
}
