/* config.c: names derived from the configuration: a route's subscription, a connection's
 * client id. Used by the core and by --check's plan alike. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "core/config.h"

int relay_route_subscription(const struct relay_route_config *r, char *out, size_t cap)
{
    int n;
    if (r->share)
        n = snprintf(out, cap, "%s/%s/%s", r->ordered ? "$oshare" : "$share", r->share, r->filter);
    else
        n = snprintf(out, cap, "%s", r->filter);
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return -ENOSPC;
    }
    return n;
}

/* Returns the id's length, or -ENOSPC (out then holds ""). */
int relay_broker_client_id(const struct relay_broker_config *b, uint32_t idx, char *out, size_t cap)
{
    int n;
    if (b->connections > 1)
        n = snprintf(out, cap, "%s-%" PRIu32, b->client_id, idx);
    else
        n = snprintf(out, cap, "%s", b->client_id);
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return -ENOSPC;
    }
    return n;
}
