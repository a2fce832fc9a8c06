/*
 * history.h: the last minute of a number, one value per second (the status API's charts).
 *
 * A counter history counts events in the second they happened (relay_hist_add, on the hot
 * path: a division and an add); a gauge history keeps the value last set in each second, and a
 * second in which it was not set keeps the value before it (relay_hist_set, from the core's
 * tick). Seconds are now_ms / 1000 of the caller's monotonic clock: no clock is read here.
 */
#ifndef RELAY_CORE_HISTORY_H
#define RELAY_CORE_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

#define RELAY_HIST_LEN 60                     /* seconds */
#define RELAY_HIST_SLOTS (RELAY_HIST_LEN + 1) /* ... and the current one */

struct relay_hist {
    uint64_t sec;  /* the second v[head] holds; 0 = nothing recorded yet */
    uint32_t head; /* index into v */
    bool gauge;
    uint32_t v[RELAY_HIST_SLOTS];
};

/* An empty history (all zeros). */
void relay_hist_init(struct relay_hist *h, bool gauge);
/* A counter: n events at now_ms. */
void relay_hist_add(struct relay_hist *h, uint64_t now_ms, uint32_t n);
/* A gauge: its value at now_ms. */
void relay_hist_set(struct relay_hist *h, uint64_t now_ms, uint32_t value);
/* The RELAY_HIST_LEN complete seconds before the one now_ms is in, oldest first: out[59] is the
 * last complete second (now_ms / 1000 - 1), never the current one. Seconds before the first
 * record are 0. */
void relay_hist_read(const struct relay_hist *h, uint64_t now_ms, uint32_t out[RELAY_HIST_LEN]);

#endif
