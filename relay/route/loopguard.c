/*
 * loopguard.c: the loop guard. At run time: the relay-path user property of each message (read,
 * checked against our id and max_hops, extended for the forwarded copy). In the configuration:
 * routes in opposite directions over overlapping topics through a broker that cannot carry the
 * property.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "route/loopguard.h"

#define RELAY_PATH "relay-path"
#define RELAY_PATH_LEN 10u

/* ---- at run time -------------------------------------------------------------------------- */

bool relay_loop_is_path(const struct mqc_prop *p)
{
    return p->id == MQC_PROP_USER && p->str.len == RELAY_PATH_LEN &&
           memcmp(p->str.p, RELAY_PATH, RELAY_PATH_LEN) == 0;
}

bool relay_loop_seen(const struct mqc_props *props, const char *id, uint32_t max_hops,
                     struct mqc_bytes *path)
{
    struct mqc_prop p;
    size_t off = 0, idlen = strlen(id);
    uint32_t hops = 0;
    bool loop = false;

    path->p = NULL;
    path->len = 0;
    while (mqc_props_next(props, &off, &p) == MQC_OK) {
        if (relay_loop_is_path(&p)) {
            *path = p.val;
            break;
        }
    }
    if (!path->len)
        return false;
    const uint8_t *s = path->p, *end = path->p + path->len;

    while (s <= end) {
        const uint8_t *comma = memchr(s, ',', (size_t)(end - s));
        const uint8_t *e = comma ? comma : end;

        hops++;
        if ((size_t)(e - s) == idlen && memcmp(s, id, idlen) == 0)
            loop = true;
        if (!comma)
            break;
        s = comma + 1;
    }
    /* forwarding would make the path longer than max_hops */
    return loop || hops >= max_hops;
}

int relay_loop_put_path(struct mqc_bytes path, const char *id, uint8_t *vbuf, size_t vcap,
                        uint8_t *out, size_t cap, size_t *len)
{
    size_t idlen = strlen(id), vlen = 0;
    struct mqc_prop p = {.id = MQC_PROP_USER};

    if (path.len + 1u + idlen > vcap)
        return -ENOSPC;
    if (path.len) {
        memcpy(vbuf, path.p, path.len);
        vbuf[path.len] = ',';
        vlen = path.len + 1u;
    }
    memcpy(vbuf + vlen, id, idlen);
    vlen += idlen;
    p.str = (struct mqc_bytes){(const uint8_t *)RELAY_PATH, RELAY_PATH_LEN};
    p.val = (struct mqc_bytes){vbuf, vlen};
    return mqc_prop_put(&p, out, cap, len) == MQC_OK ? 0 : -ENOSPC;
}

/* ---- in the configuration ------------------------------------------------------------------ */

/* Literal levels every topic matching filter f starts with: f up to the level before its first
 * wildcard ("a/b" for "a/b/+/#", all of "a/b" when it has none). Length 0 = nothing known. */
static size_t filter_prefix(const char *f)
{
    size_t n = strlen(f), start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && f[i] != '/')
            continue;
        if (i - start == 1 && (f[start] == '+' || f[start] == '#'))
            return start ? start - 1 : 0;
        start = i + 1;
    }
    return n;
}

/* Literal levels every topic route r writes starts with, as a length into *p: "site-a" for
 * "site-a/${1}/cmd". A '/' right before ${#} disappears when the '#' matched nothing, joining
 * the levels around it, so the level before it is not known either. Length 0 = nothing known. */
static size_t output_prefix(const struct relay_loop_route *r, const char **p)
{
    const char *t = r->topic, *ph = strstr(t, "${");
    *p = t;
    if (strcmp(t, "${topic}") == 0) {
        *p = r->filter;
        return filter_prefix(r->filter);
    }
    if (!ph)
        return strlen(t); /* no placeholder: every topic is the template itself */
    const char *slash = memrchr(t, '/', (size_t)(ph - t));
    if (!slash)
        return 0;
    if (slash + 1 == ph && strncmp(ph, "${#}", 4) == 0) {
        slash = slash > t ? memrchr(t, '/', (size_t)(slash - t)) : NULL;
        if (!slash)
            return 0;
    }
    return (size_t)(slash - t);
}

struct loop_ix {
    const struct relay_loop_route *r;
    size_t idx;
    const char *pfx; /* filter_prefix() of its filter */
    size_t len;
};

static int cmp_bytes(const char *a, size_t la, const char *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

static int cmp_loop_ix(const void *x, const void *y)
{
    const struct loop_ix *a = x, *b = y;
    if (a->r->from != b->r->from)
        return a->r->from < b->r->from ? -1 : 1;
    if (a->r->to != b->r->to)
        return a->r->to < b->r->to ? -1 : 1;
    int c = cmp_bytes(a->pfx, a->len, b->pfx, b->len);
    return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

/* First element of v[lo, hi) not below (from, to, key) (key NULL: the start of the group). */
static size_t lower(const struct loop_ix *v, size_t lo, size_t hi, size_t from, size_t to,
                    const char *key, size_t klen)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct loop_ix *m = &v[mid];
        int c = m->r->from != from ? (m->r->from < from ? -1 : 1)
                : m->r->to != to   ? (m->r->to < to ? -1 : 1)
                : key              ? cmp_bytes(m->pfx, m->len, key, klen)
                                   : 0;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

struct loop_hit {
    size_t later, earlier;
    int order; /* 0: the earlier route publishes */
    bool found;
    size_t r1, r2;
};

static void loop_try(const struct relay_loop_route *routes, size_t i, const struct loop_ix *c,
                     struct loop_hit *hit)
{
    const struct relay_loop_route *r1 = &routes[i];
    size_t later = i > c->idx ? i : c->idx, earlier = i > c->idx ? c->idx : i;
    int order = i > c->idx;
    if (hit->found && (later > hit->later || (later == hit->later && earlier > hit->earlier) ||
                       (later == hit->later && earlier == hit->earlier && order >= hit->order)))
        return; /* a conflict that would be reported first is already known */
    if (!relay_tpl_overlaps(r1->tpl, r1->filter, c->r->filter))
        return;
    *hit = (struct loop_hit){later, earlier, order, true, i, c->idx};
}

/* SPEC "Loop guard": what r1 (X->Y) publishes into Y may come back through r2 (Y->X). Only an
 * MQTT 5 Y can carry the guard (relay-path user property, No Local). Both orders of every such
 * pair are checked; the routes are indexed by (from, to, literal prefix of the filter) so that
 * only filters whose literal levels agree with what r1 writes are compared, which keeps 10000
 * routes fast. The pair reported is the one whose later route comes first in the list. */
int relay_loop_find(const struct relay_loop_route *routes, size_t n, const bool *v5, size_t *first,
                    size_t *second)
{
    struct loop_hit hit = {0};
    if (n < 2)
        return 0;
    struct loop_ix *v = calloc(n, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        v[i].r = &routes[i];
        v[i].idx = i;
        v[i].pfx = routes[i].filter;
        v[i].len = filter_prefix(routes[i].filter);
    }
    qsort(v, n, sizeof(*v), cmp_loop_ix);

    for (size_t i = 0; i < n; i++) {
        const struct relay_loop_route *r1 = &routes[i];
        if (v5[r1->to])
            continue;
        /* the group of routes Y -> X */
        size_t lo = lower(v, 0, n, r1->to, r1->from, NULL, 0);
        size_t hi = lower(v, lo, n, r1->to, r1->from + 1, NULL, 0);
        const char *p1;
        size_t l1 = output_prefix(r1, &p1);
        if (l1 == 0) {
            for (size_t k = lo; k < hi; k++)
                loop_try(routes, i, &v[k], &hit);
            continue;
        }
        /* filters whose known levels are a level-prefix of p1 (including none) */
        for (size_t end = 0; end <= l1; end++) {
            if (end < l1 && p1[end] != '/' && end != 0)
                continue;
            size_t k = lower(v, lo, hi, r1->to, r1->from, p1, end);
            for (; k < hi && cmp_bytes(v[k].pfx, v[k].len, p1, end) == 0; k++)
                loop_try(routes, i, &v[k], &hit);
        }
        /* filters whose known levels extend p1: they start with p1 + '/' */
        char *key = malloc(l1 + 1);
        if (!key) {
            free(v);
            return -ENOMEM;
        }
        memcpy(key, p1, l1);
        key[l1] = '/';
        for (size_t k = lower(v, lo, hi, r1->to, r1->from, key, l1 + 1);
             k < hi && v[k].len > l1 && memcmp(v[k].pfx, key, l1 + 1) == 0; k++)
            loop_try(routes, i, &v[k], &hit);
        free(key);
    }
    free(v);
    if (!hit.found)
        return 0;
    *first = hit.r1;
    *second = hit.r2;
    return 1;
}
