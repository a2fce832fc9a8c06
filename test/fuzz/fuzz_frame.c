/*
 * fuzz_frame: mqc_frame_check() on a byte stream cut at every point.
 *
 * Input: byte 0 picks max_packet; the rest is a stream of packets. For each frame in the
 * stream, every prefix the receiver could hold (0 .. frame end, and the whole rest) is checked
 * against a reference implementation of §2.1 written here from the spec, and the answers must
 * be consistent across prefixes: AGAIN until the deciding byte, then one fixed answer. Prefixes
 * near the header and the frame end are exact-size heap copies, so a read past len is a crash.
 */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t max_table[8] = {
    0, 2, 5, 127 + 2, 128 + 3, 16384 + 4, 2097152 + 5, MQC_MAX_REMAINING + 5u,
};

/* Reference: what a receiver holding buf[0 .. k) must conclude [MQTT-2.1], [MQTT-1.5.5-1].
 * *total is set on OK. strict_varint_5th: the 4th length byte has its continuation bit and
 * k == 5, where both AGAIN and EVARINT are defensible (the 5th byte is not there yet). */
static int ref_frame(const uint8_t *buf, size_t k, uint32_t max, size_t *total, int *ambiguous)
{
    *ambiguous = 0;
    if (k == 0)
        return MQC_AGAIN;
    if ((buf[0] >> 4) == 0)
        return MQC_ETYPE;
    uint32_t value = 0;
    for (size_t i = 0; i < 4; i++) {
        if (1 + i >= k)
            return MQC_AGAIN;
        uint8_t b = buf[1 + i];
        value |= (uint32_t)(b & 0x7Fu) << (7 * i);
        if (!(b & 0x80u)) {
            if (i > 0 && b == 0)
                return MQC_EVARINT; /* not the shortest form */
            size_t hdr = 2 + i;
            uint64_t t = (uint64_t)hdr + value;
            if (max != 0 && t > max)
                return MQC_ETOOBIG;
            *total = (size_t)t;
            return k < t ? MQC_AGAIN : MQC_OK;
        }
    }
    /* four bytes all with the continuation bit: a 5th byte is implied */
    if (k == 5)
        *ambiguous = 1;
    return MQC_EVARINT;
}

static int check_exact(const uint8_t *p, size_t k, uint32_t max, struct mqc_frame *f)
{
    uint8_t *b = fz_copy(p, k);
    int rc = mqc_frame_check(b, k, max, f);
    free(b);
    return rc;
}

/* Checks prefix k of s (length n); returns our codec's answer. */
static int check_prefix(const uint8_t *s, size_t n, size_t k, uint32_t max, int exact,
                        struct mqc_frame *f)
{
    (void)n;
    memset(f, 0xA5, sizeof *f);
    int rc = exact ? check_exact(s, k, max, f) : mqc_frame_check(s, k, max, f);
    size_t rtotal = 0;
    int amb = 0;
    int want = ref_frame(s, k, max, &rtotal, &amb);
    if (amb)
        FUZZ_CHECK(rc == MQC_AGAIN || rc == MQC_EVARINT, "k=%zu: 4 continuation bytes gave %d", k,
                   rc);
    else
        FUZZ_CHECK(rc == want, "prefix %zu (max %u): codec %d, reference %d", k, (unsigned)max, rc,
                   want);
    if (rc == MQC_OK) {
        FUZZ_CHECK(f->type == (s[0] >> 4) && f->flags == (s[0] & 15u), "type/flags");
        FUZZ_CHECK(f->hdr_len >= 2 && f->hdr_len <= 5, "hdr_len %u", f->hdr_len);
        FUZZ_CHECK(f->total == (size_t)f->hdr_len + f->remaining, "total");
        FUZZ_CHECK(f->total == rtotal && f->total <= k, "total %zu ref %zu k %zu", f->total, rtotal,
                   k);
        FUZZ_CHECK(f->remaining <= MQC_MAX_REMAINING, "remaining");
        FUZZ_CHECK(max == 0 || f->total <= max, "over max");
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t max = max_table[data[0] & 7u];
    const uint8_t *s = data + 1;
    size_t n = size - 1;
    size_t off = 0;
    int frames = 0;
    for (;;) {
        const uint8_t *p = s + off;
        size_t left = n - off;
        struct mqc_frame f, g;
        /* the whole rest, exact size */
        int whole = check_prefix(p, left, left, max, 1, &f);
        /* every prefix up to the frame end; exact copies where reads could go wrong */
        size_t end = whole == MQC_OK ? f.total : left;
        int settled = MQC_AGAIN;
        struct mqc_frame first = {0};
        for (size_t k = 0; k <= end && k <= left; k++) {
            int exact = k <= 8 || k + 2 >= end;
            int rc = check_prefix(p, left, k, max, exact, &g);
            if (settled != MQC_AGAIN) {
                /* once decided, the answer never changes as bytes arrive */
                FUZZ_CHECK(rc == settled, "prefix %zu: %d after %d", k, rc, settled);
                if (rc == MQC_OK)
                    FUZZ_CHECK(g.total == first.total && g.hdr_len == first.hdr_len &&
                                   g.remaining == first.remaining,
                               "frame changed");
            } else if (rc != MQC_AGAIN) {
                settled = rc;
                first = g;
            }
            if (rc < 0 && k > 8)
                break; /* an error is decided within the header */
        }
        if (whole != MQC_OK) {
            /* AGAIN for the rest means no prefix decided anything either */
            if (whole == MQC_AGAIN)
                FUZZ_CHECK(settled == MQC_AGAIN, "prefix decided %d, whole AGAIN", settled);
            break;
        }
        FUZZ_CHECK(settled == MQC_OK, "whole OK, prefixes %d", settled);
        off += f.total;
        if (off >= n || ++frames > 64)
            break;
    }
    return 0;
}
