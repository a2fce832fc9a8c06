/*
 * fuzz_topic: topic names, topic filters, shared-subscription parsing and matching (§4.7, §4.8).
 *
 * Input: FILTER NUL TOPIC (split at the first 0x00; without one, both are the whole input).
 * Each function is compared with a reference written here from the spec text:
 *   name:   1..65535 bytes, well-formed UTF-8 without U+0000, no '+' or '#'  [MQTT-4.7.3-1/2],
 *           [MQTT-3.3.2-2], [MQTT-1.5.4-1/2];
 *   filter: same UTF-8 rules; '+' alone in its level [MQTT-4.7.1-2], '#' alone in the last
 *           level [MQTT-4.7.1-1]; "$share/G/F" / "$oshare/G/F" with G non-empty and without
 *           '/', '+', '#' and F a valid filter [MQTT-4.8.2-1/2];
 *   match:  level by level, '+' one level, '#' the rest including the parent, and no leading
 *           wildcard matching a '$' topic [MQTT-4.7.2-1].
 */
#include "fuzz_util.h"

#include <stdbool.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* RFC 3629 well-formedness, plus MQTT's ban on U+0000. */
static bool ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        uint32_t cp;
        size_t len;
        if (c < 0x80) {
            cp = c;
            len = 1;
        } else if (c >= 0xC2 && c <= 0xDF) {
            cp = c & 0x1Fu;
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            cp = c & 0x0Fu;
            len = 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            cp = c & 0x07u;
            len = 4;
        } else {
            return false;
        }
        if (len > n - i)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0)
            return false;
        i += len;
    }
    return true;
}

static bool has(const uint8_t *s, size_t n, uint8_t c)
{
    return n && memchr(s, c, n) != NULL;
}

/* 0 ok, 1 structure, 2 UTF-8 (both set: either code is acceptable) */
static int ref_name(const uint8_t *s, size_t n)
{
    int r = 0;
    if (n == 0 || n > 65535 || has(s, n, '+') || has(s, n, '#'))
        r |= 1;
    if (!ref_utf8(s, n))
        r |= 2;
    return r;
}

static bool ref_plain_filter(const uint8_t *s, size_t n)
{
    if (n == 0)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '/')
            continue;
        const uint8_t *lv = s + start;
        size_t ln = i - start;
        bool wild = has(lv, ln, '+') || has(lv, ln, '#');
        if (wild) {
            if (ln != 1)
                return false;
            if (lv[0] == '#' && i != n)
                return false; /* '#' must be the last level */
        }
        start = i + 1;
    }
    return true;
}

static size_t share_prefix(const uint8_t *s, size_t n)
{
    if (n >= 7 && memcmp(s, "$share/", 7) == 0)
        return 7;
    if (n >= 8 && memcmp(s, "$oshare/", 8) == 0)
        return 8;
    return 0;
}

/* share part: 0 not shared, 1 valid shared (group/filter set), -1 bad share syntax */
static int ref_share(const uint8_t *s, size_t n, size_t *g, size_t *gl, size_t *f, size_t *fl)
{
    size_t pre = share_prefix(s, n);
    if (!pre)
        return 0;
    const uint8_t *slash = memchr(s + pre, '/', n - pre);
    if (!slash)
        return -1;
    *g = pre;
    *gl = (size_t)(slash - (s + pre));
    *f = *g + *gl + 1;
    *fl = n - *f;
    if (*gl == 0 || has(s + *g, *gl, '+') || has(s + *g, *gl, '#') || *fl == 0)
        return -1;
    return 1;
}

static int ref_filter(const uint8_t *s, size_t n)
{
    int r = 0;
    if (!ref_utf8(s, n))
        r |= 2;
    if (n == 0 || n > 65535) {
        r |= 1;
        return r;
    }
    size_t g, gl, f, fl;
    int sh = ref_share(s, n, &g, &gl, &f, &fl);
    if (sh < 0 || !ref_plain_filter(sh ? s + f : s, sh ? fl : n))
        r |= 1;
    return r;
}

static bool level_eq(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* next level of s[*pos..n): returns false when s is exhausted */
static bool next_level(const uint8_t *s, size_t n, size_t *pos, bool *done, const uint8_t **lv,
                       size_t *ln)
{
    if (*done)
        return false;
    const uint8_t *slash = *pos < n ? memchr(s + *pos, '/', n - *pos) : NULL;
    size_t end = slash ? (size_t)(slash - s) : n;
    *lv = s + *pos;
    *ln = end - *pos;
    if (slash)
        *pos = end + 1;
    else
        *done = true;
    return true;
}

static bool ref_match(const uint8_t *f, size_t fn, const uint8_t *t, size_t tn)
{
    if (tn > 0 && t[0] == '$' && fn > 0 && (f[0] == '+' || f[0] == '#'))
        return false;
    size_t fp = 0, tp = 0;
    bool fdone = false, tdone = false;
    for (;;) {
        const uint8_t *fl, *tl;
        size_t fln, tln;
        bool fh = next_level(f, fn, &fp, &fdone, &fl, &fln);
        if (fh && fln == 1 && fl[0] == '#')
            return true; /* matches the rest, and the parent level too */
        bool th = next_level(t, tn, &tp, &tdone, &tl, &tln);
        if (!fh || !th)
            return !fh && !th;
        if (fln == 1 && fl[0] == '+')
            continue;
        if (!level_eq(fl, fln, tl, tln))
            return false;
    }
}

static void check_name(const uint8_t *s, size_t n)
{
    uint8_t *b = fz_copy(s, n);
    int rc = mqc_topic_name_check(b, n);
    int ref = ref_name(s, n);
    if (ref == 0)
        FUZZ_CHECK(rc == MQC_OK, "valid name rejected: %d", rc);
    else if (ref == 1)
        FUZZ_CHECK(rc == MQC_ETOPIC, "name: %d, want ETOPIC", rc);
    else if (ref == 2)
        FUZZ_CHECK(rc == MQC_EUTF8, "name: %d, want EUTF8", rc);
    else
        FUZZ_CHECK(rc == MQC_ETOPIC || rc == MQC_EUTF8, "name: %d", rc);
    free(b);
}

static void check_filter(const uint8_t *s, size_t n)
{
    uint8_t *b = fz_copy(s, n);
    int rc = mqc_topic_filter_check(b, n);
    int ref = ref_filter(s, n);
    if (ref == 0)
        FUZZ_CHECK(rc == MQC_OK, "valid filter rejected: %d", rc);
    else if (ref == 1)
        FUZZ_CHECK(rc == MQC_EFILTER, "filter: %d, want EFILTER", rc);
    else if (ref == 2)
        FUZZ_CHECK(rc == MQC_EUTF8, "filter: %d, want EUTF8", rc);
    else
        FUZZ_CHECK(rc == MQC_EFILTER || rc == MQC_EUTF8, "filter: %d", rc);

    struct mqc_share sh;
    memset(&sh, 0xA5, sizeof sh);
    int src = mqc_topic_share_parse(b, n, &sh);
    size_t g, gl, f, fl;
    int rs = ref_share(s, n, &g, &gl, &f, &fl);
    if (rs < 0) {
        FUZZ_CHECK(src == MQC_EFILTER, "bad share syntax accepted: %d", src);
    } else {
        FUZZ_CHECK(src == MQC_OK, "share parse %d", src);
        if (rs == 0) {
            FUZZ_CHECK(sh.kind == MQC_SHARE_NONE && sh.group.len == 0 && sh.filter.p == b &&
                           sh.filter.len == n,
                       "unshared parse");
        } else {
            FUZZ_CHECK(sh.kind == (s[1] == 'o' ? MQC_SHARE_ORDERED : MQC_SHARE), "kind");
            FUZZ_CHECK(sh.group.p == b + g && sh.group.len == gl, "group");
            FUZZ_CHECK(sh.filter.p == b + f && sh.filter.len == fl, "share filter");
        }
    }
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = size ? memchr(data, 0, size) : NULL;
    const uint8_t *f = data, *t = data;
    size_t fn = size, tn = size;
    if (nul) {
        fn = (size_t)(nul - data);
        t = nul + 1;
        tn = size - fn - 1;
    }
    check_name(t, tn);
    check_filter(f, fn);
    if (nul) {
        check_name(f, fn);
        check_filter(t, tn);
    }

    bool tname = ref_name(t, tn) == 0;
    bool fplain = ref_filter(f, fn) == 0 && !share_prefix(f, fn);
    if (tname && fplain) {
        uint8_t *fb = fz_copy(f, fn), *tb = fz_copy(t, tn);
        bool m = mqc_topic_match(fb, fn, tb, tn);
        FUZZ_CHECK(m == ref_match(f, fn, t, tn), "match(%.*s, %.*s) = %d", (int)fn, (const char *)f,
                   (int)tn, (const char *)t, m);
        free(fb);
        free(tb);
    }
    if (tname) {
        uint8_t *tb = fz_copy(t, tn);
        /* a topic name is a filter that matches itself */
        if (!share_prefix(t, tn))
            FUZZ_CHECK(mqc_topic_filter_check(tb, tn) == MQC_OK && mqc_topic_match(tb, tn, tb, tn),
                       "name does not match itself");
        /* '#' matches everything except '$' topics */
        FUZZ_CHECK(mqc_topic_match((const uint8_t *)"#", 1, tb, tn) == (t[0] != '$'), "# vs %.*s",
                   (int)tn, (const char *)t);
        free(tb);
    }
    return 0;
}
