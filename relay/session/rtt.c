/* rtt.c: a connection's round trip, smoothed and base (see rtt.h). */
#include "session/rtt.h"

void relay_rtt_init(struct relay_rtt *r)
{
    r->srtt8 = 0;
    r->rttvar4 = 0;
    r->last = 0;
    r->min_cur = r->min_prev = UINT32_MAX;
    r->period_start = 0;
    r->samples = 0;
}

void relay_rtt_sample(struct relay_rtt *r, uint64_t rtt_ms, uint64_t now_ms)
{
    uint32_t v = rtt_ms > 3600000u ? 3600000u : (uint32_t)rtt_ms;

    if (!r->samples) {
        r->srtt8 = v * 8u;
        r->rttvar4 = v * 2u; /* v / 2, in quarters */
        r->period_start = now_ms;
    } else {
        uint32_t srtt = r->srtt8 / 8u, d = srtt > v ? srtt - v : v - srtt;

        /* rttvar += (|srtt - v| - rttvar) / 4, in quarters; then srtt += (v - srtt) / 8 */
        r->rttvar4 = r->rttvar4 - r->rttvar4 / 4u + d;
        r->srtt8 = r->srtt8 - r->srtt8 / 8u + v;
    }
    /* a new period every RELAY_RTT_PERIOD_MS; a long silence forgets both */
    if (now_ms >= r->period_start + 2u * RELAY_RTT_PERIOD_MS) {
        r->min_prev = UINT32_MAX;
        r->min_cur = UINT32_MAX;
        r->period_start = now_ms;
    } else if (now_ms >= r->period_start + RELAY_RTT_PERIOD_MS) {
        r->min_prev = r->min_cur;
        r->min_cur = UINT32_MAX;
        r->period_start = now_ms;
    }
    if (v < r->min_cur)
        r->min_cur = v;
    r->last = v;
    r->samples++;
}

uint32_t relay_rtt_smoothed(const struct relay_rtt *r)
{
    return r->samples ? (r->srtt8 + 4u) / 8u : 0;
}

uint32_t relay_rtt_base(const struct relay_rtt *r)
{
    uint32_t m = r->min_cur < r->min_prev ? r->min_cur : r->min_prev;

    if (!r->samples)
        return 0;
    return m == UINT32_MAX ? r->last : m;
}

bool relay_rtt_known(const struct relay_rtt *r)
{
    return r->samples > 0;
}

uint64_t relay_rtt_timeout(const struct relay_rtt *r, uint64_t floor_ms, uint64_t cap_ms)
{
    uint64_t t;

    if (!r->samples)
        return cap_ms;
    t = 2u * (uint64_t)relay_rtt_smoothed(r) + (uint64_t)r->rttvar4;
    if (t < floor_ms)
        t = floor_ms;
    return t < cap_ms ? t : cap_ms;
}

uint32_t relay_rtt_window(uint32_t rtt_ms, uint32_t floor, uint32_t cap)
{
    uint64_t w = (uint64_t)rtt_ms * RELAY_RTT_WINDOW_RATE / 1000u;

    if (cap < floor)
        cap = floor;
    return w < floor ? floor : w > cap ? cap : (uint32_t)w;
}
