/*
 * §1.5.4 UTF-8 Encoded String content. A receiver closes the link on ill-formed UTF-8
 * (RFC 3629 well-formedness: no overlong forms, nothing above U+10FFFF), on surrogates
 * U+D800..U+DFFF [MQTT-1.5.4-1] and on U+0000 [MQTT-1.5.4-2]. Control characters and
 * non-characters are only "SHOULD NOT" and are accepted.
 */
#include "internal.h"

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* True if all 8 bytes at s are in 0x01..0x7F. */
static inline int ascii8(const uint8_t *s)
{
    uint64_t w;
    memcpy(&w, s, 8);
    return ((w | ((w - ONES) & ~w)) & HIGHS) == 0;
}

int mqc_utf8_check(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (len - i >= 8 && ascii8(s + i)) {
            i += 8;
            continue;
        }
        uint8_t b = s[i];
        if (b < 0x80u) {
            if (b == 0)
                return MQC_EUTF8;
            i++;
            continue;
        }
        size_t n;
        uint8_t lo = 0x80u, hi = 0xBFu; /* range of the first continuation byte */
        if (b >= 0xC2u && b <= 0xDFu) {
            n = 1;
        } else if (b >= 0xE0u && b <= 0xEFu) {
            n = 2;
            if (b == 0xE0u)
                lo = 0xA0u; /* overlong below U+0800 */
            else if (b == 0xEDu)
                hi = 0x9Fu; /* U+D800..U+DFFF */
        } else if (b >= 0xF0u && b <= 0xF4u) {
            n = 3;
            if (b == 0xF0u)
                lo = 0x90u; /* overlong below U+10000 */
            else if (b == 0xF4u)
                hi = 0x8Fu; /* above U+10FFFF */
        } else {
            return MQC_EUTF8; /* stray continuation, C0/C1 overlong, F5..FF */
        }
        if (n > len - i - 1)
            return MQC_EUTF8;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return MQC_EUTF8;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0u) != 0x80u)
                return MQC_EUTF8;
        i += n + 1;
    }
    return MQC_OK;
}
