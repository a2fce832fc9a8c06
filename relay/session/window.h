/* window.h: one destination connection's window: at most `limit` unacknowledged PUBLISHes and
 * a byte buffer with a high mark (pause the sources feeding it) and a low mark (resume them). */
#ifndef RELAY_SESSION_WINDOW_H
#define RELAY_SESSION_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

struct relay_window {
    uint32_t limit;     /* min(max_inflight, peer's Receive Maximum) */
    uint32_t limit2;    /* of those, at most this many while a QoS 2 PUBLISH is next (a 3.x
                           Mosquitto drops QoS 2 past its max_inflight_messages, 20); 0 = limit */
    uint32_t inflight;  /* sent, not yet acknowledged */
    uint64_t queued;    /* bytes waiting to be sent or acknowledged */
    uint64_t high, low; /* marks; low < high */
    bool over;          /* above high, not yet back under low */
};

#define RELAY_WINDOW_HIGH (1024u * 1024u) /* default high mark, bytes */
#define RELAY_WINDOW_LOW (256u * 1024u)   /* default low mark, bytes */

void relay_window_init(struct relay_window *w, uint32_t limit, uint64_t high, uint64_t low);
/* True when one more PUBLISH may be sent now. */
bool relay_window_can_send(const struct relay_window *w);
/* The same for a PUBLISH of this QoS (QoS 2 within limit2). */
bool relay_window_can_send_qos(const struct relay_window *w, uint8_t qos);
void relay_window_sent(struct relay_window *w);  /* a PUBLISH went out (QoS > 0) */
void relay_window_acked(struct relay_window *w); /* its acknowledgement came back */
/* Bytes enter / leave the buffer. Each returns +1 when the window just went over its high mark,
 * -1 when it just came back under its low mark, 0 otherwise: the caller pauses or resumes the
 * sources feeding it. */
int relay_window_add(struct relay_window *w, uint64_t bytes);
int relay_window_remove(struct relay_window *w, uint64_t bytes);
/* QoS 0 messages are dropped (counted "qos0_overflow") past twice the high mark. */
bool relay_window_qos0_room(const struct relay_window *w, uint64_t bytes);

#endif
