/* window.c: a destination's credit and byte marks. Pure arithmetic: the callers decide what
 * pausing means. */
#include "session/window.h"

void relay_window_init(struct relay_window *w, uint32_t limit, uint64_t high, uint64_t low)
{
    w->limit = limit ? limit : 1;
    w->limit2 = 0;
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

bool relay_window_can_send_qos(const struct relay_window *w, uint8_t qos)
{
    if (qos == 2 && w->limit2 && w->inflight >= w->limit2)
        return false;
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
