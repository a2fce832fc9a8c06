/* window.c: a destination's credit and byte marks, and the token buckets of rate_limit.
 * Pure arithmetic: the callers decide what pausing means. */
#include "relay.h"

void relay_window_init(struct relay_window *w, uint32_t limit, uint64_t high, uint64_t low)
{
    w->limit = limit ? limit : 1;
    w->inflight = 0;
    w->queued = 0;
    w->high = high;
    w->low = low < high ? low : high / 2;
    w->over = false;
}

bool relay_window_can_send(const struct relay_window *w)
{
    return w->inflight < w->limit;
}

void relay_window_sent(struct relay_window *w)
{
    w->inflight++;
}

void relay_window_acked(struct relay_window *w)
{
    if (w->inflight)
        w->inflight--;
}

int relay_window_add(struct relay_window *w, uint64_t bytes)
{
    w->queued += bytes;
    if (!w->over && w->queued > w->high) {
        w->over = true;
        return 1;
    }
    return 0;
}

int relay_window_remove(struct relay_window *w, uint64_t bytes)
{
    w->queued = bytes > w->queued ? 0 : w->queued - bytes;
    if (w->over && w->queued <= w->low) {
        w->over = false;
        return -1;
    }
    return 0;
}

bool relay_window_qos0_room(const struct relay_window *w, uint64_t bytes)
{
    return w->queued + bytes <= 2 * w->high;
}

void relay_bucket_init(struct relay_bucket *b, uint64_t rate, uint64_t now_ms)
{
    b->rate = rate;
    b->tokens = rate * 1000; /* start full: one second's worth */
    b->last_ms = now_ms;
}

bool relay_bucket_take(struct relay_bucket *b, uint64_t n, uint64_t now_ms, uint64_t *ready_ms)
{
    uint64_t cap, need;

    if (!b->rate)
        return true;
    cap = b->rate * 1000;
    if (now_ms > b->last_ms) {
        uint64_t add = (now_ms - b->last_ms) * b->rate; /* milli-tokens */
        b->tokens = add >= cap - b->tokens ? cap : b->tokens + add;
        b->last_ms = now_ms;
    }
    need = n * 1000;
    if (need > cap)
        need = cap; /* a single unit larger than the burst passes when the bucket is full */
    if (b->tokens >= need) {
        b->tokens -= need;
        return true;
    }
    if (ready_ms)
        *ready_ms = now_ms + (need - b->tokens + b->rate - 1) / b->rate;
    return false;
}
