/*
 * rtt.h: one broker connection's round trip, measured from the exchanges the session makes
 * anyway (CONNECT -> CONNACK, PINGREQ -> PINGRESP, PUBLISH -> PUBACK/PUBREC of a message sent
 * once), and what it implies for the window toward that broker.
 *
 * Two figures come out of the samples:
 *   smoothed  an exponentially weighted mean (1/8 per sample, as TCP's SRTT): what a message
 *             takes now, queueing in the broker included; for logs and /metrics;
 *   base      the lowest sample of the last RELAY_RTT_PERIOD_MS to 2 x that: the link's own
 *             delay, without the queueing a busy broker adds to its acknowledgements. Decisions
 *             (acknowledging from the spool, sizing the window) follow it, so that a loaded
 *             broker on the same host does not look like a distant one.
 * Pure arithmetic on numbers the session passes in (now_ms): no clock, no I/O.
 */
#ifndef RELAY_SESSION_RTT_H
#define RELAY_SESSION_RTT_H

#include <stdbool.h>
#include <stdint.h>

#define RELAY_RTT_PERIOD_MS 10000u /* the base round trip forgets samples older than 2 periods */
#define RELAY_RTT_TELL_FIRST                                                                       \
    4u /* the session's owner hears each of the first samples, then                                \
          each change of the base round trip */

struct relay_rtt {
    uint32_t srtt8;        /* smoothed round trip x 8, ms; 0 with no sample */
    uint32_t rttvar4;      /* its mean deviation x 4, ms (RFC 6298's RTTVAR) */
    uint32_t last;         /* the latest sample, ms */
    uint32_t min_cur;      /* lowest sample of the current period, UINT32_MAX = none */
    uint32_t min_prev;     /* ... of the previous period, UINT32_MAX = none */
    uint64_t period_start; /* when the current period began */
    uint64_t samples;
};

void relay_rtt_init(struct relay_rtt *r);
/* One round trip of rtt_ms, measured at now_ms. */
void relay_rtt_sample(struct relay_rtt *r, uint64_t rtt_ms, uint64_t now_ms);
/* The smoothed round trip in ms (0 before the first sample). */
uint32_t relay_rtt_smoothed(const struct relay_rtt *r);
/* The base round trip in ms: the lowest sample of the last one to two periods (the latest
 * sample when those hold none). 0 before the first sample. */
uint32_t relay_rtt_base(const struct relay_rtt *r);
bool relay_rtt_known(const struct relay_rtt *r);
/* How long an acknowledgement may take (RFC 6298's timeout, 2 x smoothed + 4 x deviation): at
 * least floor_ms, at most cap_ms; cap_ms before the first sample. */
uint64_t relay_rtt_timeout(const struct relay_rtt *r, uint64_t floor_ms, uint64_t cap_ms);

/* The window of unacknowledged QoS 1 PUBLISHes that keeps a link of base round trip rtt_ms from
 * binding below RELAY_RTT_WINDOW_RATE messages per second: rtt_ms x that rate, at least floor,
 * at most cap (cap >= floor). */
#define RELAY_RTT_WINDOW_RATE 50000u
uint32_t relay_rtt_window(uint32_t rtt_ms, uint32_t floor, uint32_t cap);

#endif
