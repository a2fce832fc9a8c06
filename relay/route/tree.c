/*
 * tree.c: items (routes) by their filters, as a tree of topic levels, so that finding the routes a
 * topic matches costs the topic's depth, not the number of routes. Each node has its literal
 * children (sorted, binary-searched), a '+' child, the routes whose filter ends there and the
 * routes whose filter ends with '#' there. Built once per configuration; read-only after.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "route/tree.h"

struct tree_child {
    const char *level; /* points into a route's filter */
    size_t len;
    struct relay_tree *node;
};

struct relay_tree {
    struct tree_child *kids; /* literal levels, sorted by (len, bytes) */
    size_t n_kids, cap_kids;
    struct relay_tree *plus;
    void **end, **hash; /* filter ends here / ends with '#' here */
    size_t n_end, n_hash;
};

static int cmp_level(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return alen < blen ? -1 : 1;
    return memcmp(a, b, alen);
}

/* The child for a literal level: its index in kids, or where it would go (*found false). */
static size_t find_kid(const struct relay_tree *t, const char *level, size_t len, bool *found)
{
    size_t lo = 0, hi = t->n_kids;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_level(t->kids[mid].level, t->kids[mid].len, level, len);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static int push_item(void ***arr, size_t *n, void *item)
{
    void **a = realloc(*arr, (*n + 1) * sizeof(*a));

    if (!a)
        return -ENOMEM;
    a[(*n)++] = item;
    *arr = a;
    return 0;
}

int relay_tree_add(struct relay_tree **root, const char *filter, size_t len_filter, void *item)
{
    const char *f = filter, *end = filter + len_filter;
    struct relay_tree *t;

    if (!*root && !(*root = calloc(1, sizeof(**root))))
        return -ENOMEM;
    t = *root;
    for (;;) {
        const char *slash = memchr(f, '/', (size_t)(end - f));
        const char *e = slash ? slash : end;
        size_t len = (size_t)(e - f);

        if (len == 1 && f[0] == '#')
            return push_item(&t->hash, &t->n_hash, item); /* '#' is always the last level */
        if (len == 1 && f[0] == '+') {
            if (!t->plus && !(t->plus = calloc(1, sizeof(*t->plus))))
                return -ENOMEM;
            t = t->plus;
        } else {
            bool found;
            size_t at = find_kid(t, f, len, &found);

            if (!found) {
                struct relay_tree *n = calloc(1, sizeof(*n));

                if (!n)
                    return -ENOMEM;
                if (t->n_kids == t->cap_kids) {
                    size_t cap = t->cap_kids ? 2 * t->cap_kids : 4;
                    struct tree_child *k = realloc(t->kids, cap * sizeof(*k));

                    if (!k) {
                        free(n);
                        return -ENOMEM;
                    }
                    t->kids = k;
                    t->cap_kids = cap;
                }
                memmove(&t->kids[at + 1], &t->kids[at], (t->n_kids - at) * sizeof(*t->kids));
                t->kids[at] = (struct tree_child){f, len, n};
                t->n_kids++;
            }
            t = t->kids[at].node;
        }
        if (!slash)
            return push_item(&t->end, &t->n_end, item);
        f = slash + 1;
    }
}

void relay_tree_free(struct relay_tree *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_kids; i++)
        relay_tree_free(t->kids[i].node);
    relay_tree_free(t->plus);
    free(t->kids);
    free(t->end);
    free(t->hash);
    free(t);
}

static int emit(void *const *arr, size_t n, relay_tree_fn fn, void *arg)
{
    for (size_t i = 0; i < n; i++) {
        int rc = fn(arr[i], arg);

        if (rc)
            return rc;
    }
    return 0;
}

/* t is reached with the topic's levels [p, end) still to match; first says p is the topic's
 * first level (where a leading '$' keeps '+' and '#' out [MQTT-4.7.2-1]). */
static int walk(const struct relay_tree *t, const uint8_t *p, const uint8_t *end, bool last,
                bool first, relay_tree_fn fn, void *arg)
{
    bool dollar = first && p < end && *p == '$';
    const uint8_t *slash;
    size_t len;
    int rc;

    /* '#' matches the rest, including nothing: "a/#" matches "a" [MQTT-4.7.1-2] */
    if (!dollar && (rc = emit(t->hash, t->n_hash, fn, arg)) != 0)
        return rc;
    if (last)
        return emit(t->end, t->n_end, fn, arg);
    slash = memchr(p, '/', (size_t)(end - p));
    len = (size_t)((slash ? slash : end) - p);
    if (t->n_kids) {
        bool found;
        size_t at = find_kid(t, (const char *)p, len, &found);

        if (found && (rc = walk(t->kids[at].node, slash ? slash + 1 : end, end, !slash, false, fn,
                                arg)) != 0)
            return rc;
    }
    if (t->plus && !dollar)
        return walk(t->plus, slash ? slash + 1 : end, end, !slash, false, fn, arg);
    return 0;
}

int relay_tree_match(const struct relay_tree *t, const uint8_t *topic, size_t len, relay_tree_fn fn,
                     void *arg)
{
    if (!t)
        return 0;
    return walk(t, topic, topic + len, false, true, fn, arg);
}
