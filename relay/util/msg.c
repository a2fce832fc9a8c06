/* msg.c: message buffers from a free list of two size classes, and the drop reasons' names. */
#include <stdlib.h>
#include <string.h>

#include "util/msg.h"

static const size_t msg_class[2] = {256, 2048}; /* packet bytes each class holds */
#define MSG_CACHE_MAX 4096u                     /* buffers kept per class */

const char *relay_drop_name(enum relay_drop d)
{
    static const char *const names[RELAY_DROP__COUNT] = {
        "loop",     "expired",        "too_large",     "bad_topic",      "qos0_overflow",
        "rejected", "not_authorized", "topic_invalid", "payload_invalid"};

    return (unsigned)d < RELAY_DROP__COUNT ? names[d] : "unknown";
}

struct relay_msg *relay_msg_alloc(struct relay_msg_pool *pool, size_t size)
{
    struct relay_msg *m;
    int k = size <= msg_class[0] ? 0 : size <= msg_class[1] ? 1 : -1;

    if (k >= 0 && pool->cache[k]) {
        m = pool->cache[k];
        pool->cache[k] = m->next;
        pool->cached[k]--;
    } else {
        m = malloc(sizeof(*m) + (k >= 0 ? msg_class[k] : size));
        if (!m)
            return NULL;
    }
    /* the header only: sizeof(*m) may reach past the start of data[] (padding), and the
     * caller encodes into data[] next */
    memset(m, 0, sizeof(*m));
    m->cache = (uint8_t)(k + 1);
    return m;
}

void relay_msg_free(struct relay_msg_pool *pool, struct relay_msg *m)
{
    int k = (int)m->cache - 1;

    if (k < 0 || pool->cached[k] >= MSG_CACHE_MAX) {
        free(m);
        return;
    }
    m->next = pool->cache[k];
    pool->cache[k] = m;
    pool->cached[k]++;
}

void relay_msg_free_list(struct relay_msg *m)
{
    while (m) {
        struct relay_msg *next = m->next;

        free(m);
        m = next;
    }
}

void relay_msg_pool_cleanup(struct relay_msg_pool *pool)
{
    for (int k = 0; k < 2; k++) {
        relay_msg_free_list(pool->cache[k]);
        pool->cache[k] = NULL;
        pool->cached[k] = 0;
    }
}

void relay_msg_remap_routes(struct relay_msg *m, const uint32_t *map, size_t n_old)
{
    for (; m; m = m->next)
        if (m->route != UINT32_MAX)
            m->route = m->route < n_old ? map[m->route] : UINT32_MAX;
}
