/* history.c: a minute of one-second values in a ring (see history.h). */
#include <string.h>

#include "core/history.h"

void relay_hist_init(struct relay_hist *h, bool gauge)
{
    memset(h, 0, sizeof(*h));
    h->gauge = gauge;
}

/* Moves the ring on to second sec: the seconds skipped are 0 (a counter) or keep the last
 * value (a gauge). A second earlier than the newest (a clock that went back: never with a
 * monotonic one) is taken as the newest. */
static void advance(struct relay_hist *h, uint64_t sec)
{
    uint32_t carry = h->gauge ? h->v[h->head] : 0;
    uint64_t steps;

    if (h->sec == 0) {
        h->sec = sec;
        return;
    }
    if (sec <= h->sec)
        return;
    steps = sec - h->sec;
    if (steps > RELAY_HIST_SLOTS)
        steps = RELAY_HIST_SLOTS;
    for (uint64_t i = 0; i < steps; i++) {
        h->head = (h->head + 1) % RELAY_HIST_SLOTS;
        h->v[h->head] = carry;
    }
    h->sec = sec;
}

/* Second 0 (the clock's first second) is recorded as second 1: 0 means "nothing yet". */
static uint64_t second_of(uint64_t now_ms)
{
    uint64_t s = now_ms / 1000u;

    return s ? s : 1;
}

void relay_hist_add(struct relay_hist *h, uint64_t now_ms, uint32_t n)
{
    advance(h, second_of(now_ms));
    h->v[h->head] = h->v[h->head] > UINT32_MAX - n ? UINT32_MAX : h->v[h->head] + n;
}

void relay_hist_set(struct relay_hist *h, uint64_t now_ms, uint32_t value)
{
    advance(h, second_of(now_ms));
    h->v[h->head] = value;
}

void relay_hist_read(const struct relay_hist *h, uint64_t now_ms, uint32_t out[RELAY_HIST_LEN])
{
    uint64_t cur = second_of(now_ms);

    for (uint32_t i = 0; i < RELAY_HIST_LEN; i++) {
        uint64_t s = cur - RELAY_HIST_LEN + i; /* may wrap below 0: then older than anything */
        uint64_t back;

        out[i] = 0;
        if (!h->sec || cur < RELAY_HIST_LEN - i || s == 0)
            continue;
        if (s > h->sec) { /* nothing recorded since h->sec */
            out[i] = h->gauge ? h->v[h->head] : 0;
            continue;
        }
        back = h->sec - s;
        if (back < RELAY_HIST_SLOTS)
            out[i] = h->v[(h->head + RELAY_HIST_SLOTS - back) % RELAY_HIST_SLOTS];
    }
}
