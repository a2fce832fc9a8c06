/*
 * loopguard.h: the loop guard (SPEC.md, Delivery guarantees), at run time and in the
 * configuration.
 *
 * At run time a message forwarded to an MQTT 5 broker carries a "relay-path" user property:
 * the relay ids it crossed, comma-separated, oldest first. A message whose path already holds
 * our id, or would grow past max_hops, is dropped (counted "loop").
 *
 * In the configuration, where the path cannot be carried (an MQTT 3.1/3.1.1 broker between two
 * routes in opposite directions over overlapping topics), relay_loop_find() names the pair.
 */
#ifndef RELAY_ROUTE_LOOPGUARD_H
#define RELAY_ROUTE_LOOPGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqttcodec.h"
#include "route/template.h"

/* True when p is the relay-path user property. */
bool relay_loop_is_path(const struct mqc_prop *p);

/* Reads a received message's relay-path: *path is its value (empty when absent). Returns true
 * when the message must not be forwarded: the path holds id, or forwarding it would make it
 * longer than max_hops. */
bool relay_loop_seen(const struct mqc_props *props, const char *id, uint32_t max_hops,
                     struct mqc_bytes *path);

/* Appends the forwarded copy's relay-path property (path, then id) to the property block
 * out[0..cap) at *len, building the value in vbuf[0..vcap). 0, or -ENOSPC. */
int relay_loop_put_path(struct mqc_bytes path, const char *id, uint8_t *vbuf, size_t vcap,
                        uint8_t *out, size_t cap, size_t *len);

/* One route, as the static check sees it. */
struct relay_loop_route {
    size_t from, to;             /* broker indexes */
    const char *filter;          /* as written, without "$share/G/" */
    const char *topic;           /* the template's text */
    const struct relay_tpl *tpl; /* compiled against filter */
};

/* Looks for two routes X->Y and Y->X where what the first publishes into Y can match the
 * second's filter and Y cannot carry the relay-path (v5[Y] false). Returns 1 with *first (the
 * one publishing) and *second set, choosing the pair whose later route comes first in the list;
 * 0 when there is none; -ENOMEM. Fast for thousands of routes: filters are indexed by their
 * literal prefix. */
int relay_loop_find(const struct relay_loop_route *routes, size_t n, const bool *v5, size_t *first,
                    size_t *second);

#endif
