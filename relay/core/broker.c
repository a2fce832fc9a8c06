/*
 * broker.c: one broker as the relay runs it: its pool of connections and its spool. One
 * constructor for start-up and reload alike.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

int relay_broker_init(struct relay *r, struct relay_broker *b,
                      const struct relay_broker_config *cfg, uint32_t index, char *err,
                      size_t errlen)
{
    memset(b, 0, sizeof(*b));
    b->cfg = cfg;
    b->r = r;
    b->index = index;
    b->n_conns = cfg->connections ? cfg->connections : 1;
    b->conns = calloc(b->n_conns, sizeof(*b->conns));
    if (!b->conns) {
        b->n_conns = 0;
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (uint32_t j = 0; j < b->n_conns; j++) {
        b->conns[j].r = r;
        b->conns[j].b = b;
        b->conns[j].idx = j;
    }
    relay_hist_init(&b->feed.hist, true);
    return relay_feed_open(r, b, err, errlen);
}

int relay_broker_init_conns(struct relay_broker *b)
{
    for (uint32_t j = 0; j < b->n_conns; j++)
        if (relay_conn_init(b->r, b, j) != 0)
            return -ENOMEM;
    return 0;
}

void relay_broker_cleanup(struct relay_broker *b, uint64_t now_ms)
{
    for (uint32_t j = 0; b->conns && j < b->n_conns; j++)
        relay_conn_cleanup(&b->conns[j]);
    free(b->conns);
    free(b->from);
    free(b->feeds);
    relay_tree_free(b->tree);
    relay_feed_close(b, now_ms);
    b->conns = NULL;
    b->from = NULL;
    b->feeds = NULL;
    b->tree = NULL;
    b->n_conns = 0;
}

bool relay_broker_up(const struct relay_broker *b)
{
    for (uint32_t j = 0; j < b->n_conns; j++)
        if (relay_conn_up(&b->conns[j]))
            return true;
    return false;
}
