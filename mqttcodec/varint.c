/*
 * §1.5.5 Variable Byte Integer: 1..4 bytes, 7 bits each, least significant group first, bit 7
 * set on every byte but the last.
 */
#include "internal.h"

int mqc_varint_decode(const uint8_t *buf, size_t len, uint32_t *value, size_t *used)
{
    return varint_dec(buf, len, value, used);
}

size_t mqc_varint_size(uint32_t value)
{
    if (value > MQC_MAX_VARINT)
        return 0;
    return varint_size(value);
}

int mqc_varint_encode(uint32_t value, uint8_t *out, size_t cap, size_t *used)
{
    if (value > MQC_MAX_VARINT)
        return MQC_EINVAL;
    size_t n = varint_size(value);
    if (cap < n)
        return MQC_ENOSPC;
    put_varint(out, value);
    *used = n;
    return MQC_OK;
}
