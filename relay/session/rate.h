/* rate.h: the pacing of rate_limit (what we send per connection, per second). */
#ifndef RELAY_SESSION_RATE_H
#define RELAY_SESSION_RATE_H

#include <stdbool.h>
#include <stdint.h>

/* Token bucket: rate per second, burst of one second's worth; rate 0 = unlimited. */
struct relay_bucket {
    uint64_t rate;
    uint64_t tokens; /* scaled by 1000 (milli-tokens) for sub-token precision */
    uint64_t last_ms;
};
void relay_bucket_init(struct relay_bucket *b, uint64_t rate, uint64_t now_ms);
/* Takes n tokens if available (refilling first): true. Otherwise false and *ready_ms is when
 * they will be. A request larger than the burst is allowed once the bucket is full. */
bool relay_bucket_take(struct relay_bucket *b, uint64_t n, uint64_t now_ms, uint64_t *ready_ms);

#endif
