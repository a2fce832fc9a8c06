/*
 * route.h: what one route does to one message (SPEC.md, routes): the destination topic from
 * the template, the QoS, the retain flag and the MQTT 5 properties of the forwarded copy, and
 * the pool connection that carries it. Pure: no I/O, no allocation, no clock.
 */
#ifndef RELAY_ROUTE_ROUTE_H
#define RELAY_ROUTE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqttcodec.h"
#include "route/template.h"

#define RELAY_TOPIC_MAX 65535u

/* A route's rules, from its configuration. */
struct relay_map_rule {
    const struct relay_tpl *tpl;
    uint8_t sub_qos;    /* the route's subscription QoS: a copy never goes out above it */
    int out_qos;        /* -1 = "same", else 0..2 */
    bool keep_retain;   /* retain = "keep" */
    bool forward_props; /* properties = "forward" */
};

/* Where the forwarded copy points into: scratch must hold RELAY_MAP_SCRATCH(max properties). */
#define RELAY_MAP_SCRATCH(props_max) (2u * (RELAY_TOPIC_MAX + 1u) + 128u + (props_max))

struct relay_map_out {
    struct mqc_publish pub; /* topic, QoS, retain, payload, properties; borrows p and scratch */
    uint32_t expiry;        /* Message Expiry Interval in the properties, 0 = none */
    size_t expiry_at;       /* where its 4 value bytes sit in pub.props (0 = none) */
    bool props_lost;        /* 5.0 properties left out toward a 3.x destination */
};

/* Maps received message p along a route: 0 with *o filled (pointing into p and scratch);
 * -EINVAL when the destination topic comes out invalid (drop "bad_topic"); -E2BIG when the
 * properties do not fit (drop "too_large"). path is the relay-path read from p (loopguard.h):
 * toward an MQTT 5 destination the copy carries it with id appended. */
int relay_map(const struct relay_map_rule *rule, const struct mqc_publish *p, bool src_v5,
              bool dst_v5, struct mqc_bytes path, const char *id, uint8_t *scratch,
              size_t scratch_cap, struct relay_map_out *o);

/* FNV-1a: spreads topics over a pool and keeps each topic on one connection (its order); also
 * names a route in spooled records (a hash of its name). */
uint32_t relay_hash(const void *data, size_t n);

#endif
