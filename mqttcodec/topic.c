/*
 * §4.7 Topic names and topic filters, §4.8.2 shared subscriptions.
 */
#include "internal.h"

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t has_zero(uint64_t w)
{
    return (w - ONES) & ~w & HIGHS;
}

/* True if the 8 bytes at s are ASCII 0x01..0x7F other than '+' and '#'. */
static inline int plain8(const uint8_t *s)
{
    uint64_t w;
    memcpy(&w, s, 8);
    return ((w & HIGHS) | has_zero(w) | has_zero(w ^ (ONES * '+')) | has_zero(w ^ (ONES * '#'))) ==
           0;
}

/* The PUBLISH hot path: one pass, 8 bytes at a time while the name is plain ASCII. */
int mqc_topic_name_check(const uint8_t *s, size_t len)
{
    if (len == 0 || len > UINT16_MAX)
        return MQC_ETOPIC; /* [MQTT-4.7.3-1] at least one character */
    size_t i = 0;
    while (len - i >= 8 && plain8(s + i))
        i += 8;
    for (; i < len; i++) {
        uint8_t b = s[i];
        if (b == '+' || b == '#')
            return MQC_ETOPIC; /* [MQTT-3.3.2-2], [MQTT-4.7.1-1] */
        if (b == 0 || b >= 0x80u)
            break;
    }
    if (i == len)
        return MQC_OK;
    /* Non-ASCII from here: validate, then look for wildcards (ASCII bytes never occur inside
     * a well-formed multi-byte sequence). */
    if (mqc_utf8_check(s + i, len - i) != MQC_OK)
        return MQC_EUTF8;
    if (memchr(s + i, '+', len - i) != NULL || memchr(s + i, '#', len - i) != NULL)
        return MQC_ETOPIC;
    return MQC_OK;
}

/* Filter syntax without the shared-subscription prefix [MQTT-4.7.1-2], [MQTT-4.7.1-3]:
 * '+' fills a whole level, '#' fills a whole level and is the last character. */
static int filter_syntax(const uint8_t *s, size_t len)
{
    if (len == 0)
        return MQC_EFILTER;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = s[i];
        if (b != '+' && b != '#')
            continue;
        if (i > 0 && s[i - 1] != '/')
            return MQC_EFILTER;
        if (b == '#') {
            if (i + 1 != len)
                return MQC_EFILTER;
        } else if (i + 1 < len && s[i + 1] != '/') {
            return MQC_EFILTER;
        }
    }
    return MQC_OK;
}

int mqc_topic_filter_check(const uint8_t *s, size_t len)
{
    if (len == 0 || len > UINT16_MAX)
        return MQC_EFILTER; /* [MQTT-4.7.3-1] */
    if (mqc_utf8_check(s, len) != MQC_OK)
        return MQC_EUTF8;
    struct mqc_share sh;
    if (mqc_topic_share_parse(s, len, &sh) != MQC_OK)
        return MQC_EFILTER;
    return filter_syntax(sh.filter.p, sh.filter.len);
}

bool mqc_topic_match(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen)
{
    /* [MQTT-4.7.2-1] a filter starting with a wildcard does not match "$..." topics. */
    if (tlen > 0 && t[0] == '$' && flen > 0 && (f[0] == '+' || f[0] == '#'))
        return false;
    size_t fi = 0, ti = 0;
    while (fi < flen) {
        if (f[fi] == '#')
            return true; /* multi-level: matches the rest, including nothing */
        if (f[fi] == '+') {
            while (ti < tlen && t[ti] != '/')
                ti++;
            fi++;
        } else {
            while (fi < flen && f[fi] != '/') {
                if (ti == tlen || t[ti] != f[fi])
                    return false;
                fi++;
                ti++;
            }
            if (ti < tlen && t[ti] != '/')
                return false;
        }
        /* Both sit at the end of a level: '/' or the end of the string. */
        if (fi == flen)
            return ti == tlen;
        fi++;
        if (ti == tlen) /* "sport/#" matches "sport" [MQTT-4.7.1-2] */
            return flen - fi == 1 && f[fi] == '#';
        ti++;
    }
    return ti == tlen;
}

static int has_prefix(const uint8_t *s, size_t len, const char *pfx, size_t n)
{
    return len >= n && memcmp(s, pfx, n) == 0;
}

int mqc_topic_share_parse(const uint8_t *s, size_t len, struct mqc_share *out)
{
    size_t skip;
    enum mqc_share_kind kind;
    if (has_prefix(s, len, "$share/", 7)) {
        skip = 7;
        kind = MQC_SHARE;
    } else if (has_prefix(s, len, "$oshare/", 8)) {
        skip = 8;
        kind = MQC_SHARE_ORDERED;
    } else {
        out->kind = MQC_SHARE_NONE;
        out->group.p = NULL;
        out->group.len = 0;
        out->filter.p = s;
        out->filter.len = len;
        return MQC_OK;
    }
    /* [MQTT-4.8.2-1] ShareName: at least one character, no '/', '+' or '#';
     * [MQTT-4.8.2-2] followed by '/' and a Topic Filter. */
    size_t g = skip;
    while (g < len && s[g] != '/') {
        if (s[g] == '+' || s[g] == '#')
            return MQC_EFILTER;
        g++;
    }
    if (g == skip || g == len || g + 1 == len)
        return MQC_EFILTER;
    out->kind = kind;
    out->group.p = s + skip;
    out->group.len = g - skip;
    out->filter.p = s + g + 1;
    out->filter.len = len - g - 1;
    return MQC_OK;
}
