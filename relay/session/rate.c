/* rate.c: the pacing of rate_limit. Pure arithmetic over now_ms. */
#include "session/rate.h"

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
