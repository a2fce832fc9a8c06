/*
 * template.c: destination topic templates ("site-a/${1}/cmd/${#}") and the static overlap test
 * the configuration's loop check is built on.
 *
 * A template is compiled once against its route's source filter: the filter's shape (which
 * levels are '+', where a trailing '#' sits) is recorded so that relay_tpl_expand() can find
 * the substituted levels in one pass over the topic, with no allocation.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route/template.h"
#include "mqttcodec.h"

#define TOPIC_MAX 65535u

/* ---- compile ------------------------------------------------------------------------------ */

/* Records the shape of filter (without any "$share/G/" prefix) into t. */
static void filter_shape(struct relay_tpl *t, const char *f, size_t flen)
{
    unsigned level = 0, plus = 0;
    size_t start = 0;

    t->hash_level = -1;
    for (size_t i = 0; i <= flen; i++) {
        if (i < flen && f[i] != '/')
            continue;
        size_t n = i - start;
        if (n == 1 && f[start] == '+') {
            if (plus < 9)
                t->plus_level[plus] = (uint16_t)(level > UINT16_MAX ? UINT16_MAX : level);
            if (plus < UINT8_MAX)
                plus++;
        } else if (n == 1 && f[start] == '#' && i == flen) {
            t->hash_level = (int)level;
        }
        level++;
        start = i + 1;
    }
    t->n_plus = (uint8_t)plus;
}

static int tpl_fail(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return -EINVAL;
}

/* Adds a part; lit points into t->buf. */
static void add_part(struct relay_tpl *t, enum relay_tpl_kind kind, uint8_t level, const char *lit,
                     size_t lit_len)
{
    struct relay_tpl_part *p = &t->parts[t->n_parts++];
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->level = level;
    p->lit = lit;
    p->lit_len = lit_len;
}

int relay_tpl_compile(struct relay_tpl *t, const char *text, const char *filter, char *err,
                      size_t errlen)
{
    memset(t, 0, sizeof(*t));
    t->hash_level = -1;
    if (err && errlen)
        err[0] = '\0';

    size_t len = strlen(text);
    if (len == 0)
        return tpl_fail(err, errlen, "empty template");
    if (len > TOPIC_MAX)
        return tpl_fail(err, errlen, "template longer than 65535 bytes");
    if (mqc_utf8_check((const uint8_t *)text, len) != MQC_OK)
        return tpl_fail(err, errlen, "template is not valid UTF-8");

    size_t flen = strlen(filter);
    struct mqc_share sh;
    const char *f = filter;
    if (mqc_topic_share_parse((const uint8_t *)filter, flen, &sh) == MQC_OK &&
        sh.kind != MQC_SHARE_NONE) {
        f = (const char *)sh.filter.p;
        flen = sh.filter.len;
    }
    filter_shape(t, f, flen);

    /* Validate and count first, so one allocation of each suffices: at most one part per
     * placeholder plus one literal before each and one after the last. */
    size_t n_ph = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '$' && i + 1 < len && text[i + 1] == '{') {
            const char *close = memchr(text + i + 2, '}', len - i - 2);
            if (!close)
                return tpl_fail(err, errlen,
                                "unterminated \"${\" (placeholders are ${topic}, "
                                "${1}..${9} and ${#})");
            size_t n = (size_t)(close - (text + i + 2));
            const char *name = text + i + 2;
            if (n == 5 && memcmp(name, "topic", 5) == 0) {
                /* whole topic */
            } else if (n == 1 && name[0] >= '1' && name[0] <= '9') {
                int k = name[0] - '0';
                if (k > t->n_plus) {
                    if (err && errlen)
                        snprintf(err, errlen, "template refers to ${%d} but the filter has %u '+'",
                                 k, (unsigned)t->n_plus);
                    return -EINVAL;
                }
            } else if (n == 1 && name[0] == '#') {
                if (t->hash_level < 0)
                    return tpl_fail(err, errlen, "${#} but the filter has no '#'");
            } else {
                if (err && errlen)
                    snprintf(err, errlen,
                             "unknown placeholder ${%.*s} (use ${topic}, ${1}..${9} or ${#})",
                             (int)(n > 64 ? 64 : n), name);
                return -EINVAL;
            }
            n_ph++;
            i = (size_t)(close - text);
        } else if (text[i] == '+' || text[i] == '#') {
            return tpl_fail(err, errlen, "template contains a wildcard ('+' or '#')");
        }
    }

    if (len == 8 && memcmp(text, "${topic}", 8) == 0)
        t->identity = true;

    t->parts = calloc(2 * n_ph + 1, sizeof(*t->parts));
    t->buf = malloc(len + 1);
    if (!t->parts || !t->buf) {
        relay_tpl_cleanup(t);
        return -ENOMEM;
    }

    char *out = t->buf;
    const char *lit_start = out;
    for (size_t i = 0; i < len; i++) {
        if (!(text[i] == '$' && i + 1 < len && text[i + 1] == '{')) {
            *out++ = text[i];
            continue;
        }
        const char *name = text + i + 2;
        const char *close = memchr(name, '}', len - i - 2);
        size_t n = (size_t)(close - name);
        size_t lit_len = (size_t)(out - lit_start);
        bool drop_slash = false;
        if (n == 1 && name[0] == '#' && lit_len > 0 && lit_start[lit_len - 1] == '/') {
            lit_len--; /* the '/' goes with ${#}: dropped when '#' matched nothing */
            drop_slash = true;
        }
        if (lit_len > 0)
            add_part(t, RELAY_TPL_LIT, 0, lit_start, lit_len);
        if (n == 5)
            add_part(t, RELAY_TPL_TOPIC, 0, NULL, 0);
        else if (name[0] == '#')
            add_part(t, RELAY_TPL_REST, 0, NULL, 0);
        else
            add_part(t, RELAY_TPL_LEVEL, (uint8_t)(name[0] - '0'), NULL, 0);
        t->parts[t->n_parts - 1].drop_slash = drop_slash;
        lit_start = out;
        i = (size_t)(close - text);
    }
    if (out > lit_start)
        add_part(t, RELAY_TPL_LIT, 0, lit_start, (size_t)(out - lit_start));
    *out = '\0';
    return 0;
}

void relay_tpl_cleanup(struct relay_tpl *t)
{
    if (!t)
        return;
    free(t->parts);
    free(t->buf);
    memset(t, 0, sizeof(*t));
    t->hash_level = -1;
}

/* ---- expand (hot path) -------------------------------------------------------------------- */

int relay_tpl_expand(const struct relay_tpl *t, const uint8_t *topic, size_t topic_len,
                     uint8_t *out, size_t cap, size_t *len)
{
    if (t->identity) {
        if (topic_len == 0 || topic_len > TOPIC_MAX)
            return -EINVAL;
        if (topic_len > cap)
            return -ENOSPC;
        memcpy(out, topic, topic_len);
        *len = topic_len;
        return 0;
    }

    /* One pass over the topic: where each referenced '+' level and the '#' rest begin. */
    size_t lv_off[9], lv_len[9];
    size_t rest_off = 0;
    bool rest = false;
    unsigned need = t->n_plus < 9 ? t->n_plus : 9;
    unsigned k = 0;
    unsigned last = 0; /* the last level index we need to reach */
    if (need > 0)
        last = t->plus_level[need - 1];
    if (t->hash_level >= 0 && (unsigned)t->hash_level > last)
        last = (unsigned)t->hash_level;
    if (need > 0 || t->hash_level >= 0) {
        unsigned level = 0;
        size_t start = 0;
        for (size_t i = 0;; i++) {
            if (level == (unsigned)t->hash_level) {
                rest = true;
                rest_off = start;
                break;
            }
            if (i < topic_len && topic[i] != '/')
                continue;
            if (k < need && t->plus_level[k] == level) {
                lv_off[k] = start;
                lv_len[k] = i - start;
                k++;
            }
            if (i >= topic_len || level >= last)
                break;
            level++;
            start = i + 1;
        }
        if (k < need)
            return -EINVAL; /* the topic does not have the filter's levels */
    }

    /* Size first: nothing is written unless the whole result fits. */
    size_t total = 0;
    for (size_t i = 0; i < t->n_parts; i++) {
        const struct relay_tpl_part *p = &t->parts[i];
        switch (p->kind) {
        case RELAY_TPL_LIT:
            total += p->lit_len;
            break;
        case RELAY_TPL_TOPIC:
            total += topic_len;
            break;
        case RELAY_TPL_LEVEL:
            if (p->level == 0 || p->level > need || lv_len[p->level - 1] == 0)
                return -EINVAL; /* "a//c" through "a/+/c": an empty level */
            total += lv_len[p->level - 1];
            break;
        case RELAY_TPL_REST:
            if (rest)
                total += (p->drop_slash ? 1 : 0) + (topic_len - rest_off);
            break;
        }
        if (total > TOPIC_MAX)
            return -EINVAL;
    }
    if (total == 0)
        return -EINVAL;
    if (total > cap)
        return -ENOSPC;

    uint8_t *o = out;
    for (size_t i = 0; i < t->n_parts; i++) {
        const struct relay_tpl_part *p = &t->parts[i];
        switch (p->kind) {
        case RELAY_TPL_LIT:
            memcpy(o, p->lit, p->lit_len);
            o += p->lit_len;
            break;
        case RELAY_TPL_TOPIC:
            memcpy(o, topic, topic_len);
            o += topic_len;
            break;
        case RELAY_TPL_LEVEL:
            memcpy(o, topic + lv_off[p->level - 1], lv_len[p->level - 1]);
            o += lv_len[p->level - 1];
            break;
        case RELAY_TPL_REST:
            if (rest) {
                if (p->drop_slash)
                    *o++ = '/';
                memcpy(o, topic + rest_off, topic_len - rest_off);
                o += topic_len - rest_off;
            }
            break;
        }
    }
    *len = total;
    return 0;
}

/* ---- overlaps (configuration time) -------------------------------------------------------- */

/* The produced topics are described by a pattern string: literal text, '+' where a substituted
 * single level goes and '#' where anything (any number of levels, possibly none) may follow.
 * Literal text never holds '+' or '#' (compile and the filter syntax reject them), so the
 * wildcard characters are free to mark the unknown parts.
 *
 * A trailing '#' in the source filter either matched something or nothing, and every ${#} (and
 * ${topic}) follows the same case, so there are two patterns: rest present (each ${#} is '#',
 * with its '/'), and rest absent (each ${#} is empty and its '/' dropped, which can join the
 * levels around it; ${topic} is the filter without its "/#"). */
static char *output_pattern(const struct relay_tpl *t, const char *src, size_t slen, bool absent)
{
    size_t need = 1;
    for (size_t i = 0; i < t->n_parts; i++)
        need += t->parts[i].kind == RELAY_TPL_LIT     ? t->parts[i].lit_len
                : t->parts[i].kind == RELAY_TPL_TOPIC ? slen
                                                      : 2;
    if (absent)
        slen = slen >= 2 ? slen - 2 : 0; /* "a/#" -> "a" */
    char *s = malloc(need);
    if (!s)
        return NULL;
    char *o = s;
    for (size_t i = 0; i < t->n_parts; i++) {
        const struct relay_tpl_part *p = &t->parts[i];
        switch (p->kind) {
        case RELAY_TPL_LIT:
            memcpy(o, p->lit, p->lit_len);
            o += p->lit_len;
            break;
        case RELAY_TPL_TOPIC:
            memcpy(o, src, slen);
            o += slen;
            break;
        case RELAY_TPL_LEVEL:
            *o++ = '+';
            break;
        case RELAY_TPL_REST:
            if (absent)
                break;
            if (p->drop_slash)
                *o++ = '/';
            *o++ = '#';
            break;
        }
    }
    *o = '\0';
    return s;
}

/* Next level of s at *pos (a '/'-separated string of length len); false when none is left. */
static bool next_level(const char *s, size_t len, size_t *pos, bool *done, const char **lv,
                       size_t *lvlen)
{
    if (*done)
        return false;
    const char *slash = memchr(s + *pos, '/', len - *pos);
    size_t end = slash ? (size_t)(slash - s) : len;
    *lv = s + *pos;
    *lvlen = end - *pos;
    if (slash)
        *pos = end + 1;
    else
        *done = true;
    return true;
}

static void strip_share(const char **f, size_t *len)
{
    struct mqc_share sh;
    if (mqc_topic_share_parse((const uint8_t *)*f, *len, &sh) == MQC_OK &&
        sh.kind != MQC_SHARE_NONE) {
        *f = (const char *)sh.filter.p;
        *len = sh.filter.len;
    }
}

/* Can a topic described by pattern pat match filter f? */
static bool pattern_matches(const char *pat, const char *f, size_t flen)
{
    size_t plen = strlen(pat), ppos = 0, fpos = 0;
    bool pdone = false, fdone = false;
    for (bool first = true;; first = false) {
        const char *pl = NULL, *fl = NULL;
        size_t pll = 0, fll = 0;
        bool hp = next_level(pat, plen, &ppos, &pdone, &pl, &pll);
        bool hf = next_level(f, flen, &fpos, &fdone, &fl, &fll);
        bool p_lit = hp && !memchr(pl, '+', pll) && !memchr(pl, '#', pll);
        bool f_wild = hf && fll == 1 && (fl[0] == '+' || fl[0] == '#');
        /* [MQTT-4.7.2-1]: a leading wildcard does not match a "$..." topic. */
        if (first && p_lit && pll > 0 && pl[0] == '$' && f_wild)
            return false;
        if (f_wild && fl[0] == '#')
            return true; /* any rest, including none */
        if (hp && memchr(pl, '#', pll))
            return true; /* the output may go on with anything from here */
        if (!hp || !hf)
            return !hp && !hf;
        if (f_wild || !p_lit)
            continue; /* '+' takes any level; a substituted level may be anything */
        if (pll != fll || memcmp(pl, fl, pll) != 0)
            return false;
    }
}

bool relay_tpl_overlaps(const struct relay_tpl *t, const char *src_filter, const char *dst_filter)
{
    size_t slen = strlen(src_filter), dlen = strlen(dst_filter);
    strip_share(&src_filter, &slen);
    strip_share(&dst_filter, &dlen);

    /* '#' can match nothing only when it is not the whole filter ("a/#" matches "a"). */
    for (int absent = 0; absent <= (t->hash_level > 0); absent++) {
        char *pat = output_pattern(t, src_filter, slen, absent);
        if (!pat)
            return true; /* unsure: say they may overlap */
        bool m = pattern_matches(pat, dst_filter, dlen);
        free(pat);
        if (m)
            return true;
    }
    return false;
}
