/*
 * rate.h: the pace of one connection: what it may publish (rate_limit, and what the broker's
 * signals taught it), and the round trip its acknowledgements take. Pure arithmetic over now_ms.
 *
 * The guarantee: with a limit of L messages (B bytes), no window of RELAY_PACE_WINDOW_MS
 * milliseconds, wherever it starts, holds more than L PUBLISHes (more than B bytes, unless a
 * single message is larger) sent on one link, resends included, from the link's first
 * millisecond on. The window is one second plus RELAY_PACE_MARGIN_MS: what we spread over
 * 1.025 s may bunch on the way (a busy broker reads late, then several at once) and still fit
 * in the broker's one-second count. Two mechanisms:
 *
 *   spacing   messages go about WINDOW / L apart (GCRA, the virtual-scheduling form of a
 *             token bucket) with a burst tolerance of RELAY_PACE_BURST messages: smooth,
 *             never a second's worth at once; while messages wait for it, time a late
 *             wake-up lost (up to RELAY_PACE_CATCHUP_MS) is made up, as long as the window
 *             holds no more than the sustained pace (the margin stays for bunching);
 *   the log   sends per RELAY_PACE_SLOT_MS slot over the last window: the hard bound, checked
 *             before every send (a slot is counted whole, so the bound errs on the safe side).
 *             Kept only while there is a limit (with none, a send costs a counter); a limit
 *             learned on a live link (PUBACK "busy") starts with an empty log.
 *
 * Learning: a signal from the broker lowers the pace (multiplicative decrease). DISCONNECT 0x96
 * (message rate too high) and, at MQTT 3.x, a missing acknowledgement (a later message
 * acknowledged while an earlier one is not, or none within the round-trip timeout) count: the
 * broker took so many in its second (estimated from our own sends in it, the broker counting whole
 * seconds from the connection's start) and no more; the pace goes to that count (with no limit
 * yet), or at least 10 % lower, and rising after RELAY_PACE_QUIET_MS without a signal (2 % a
 * second, additive increase) stops just under it until RELAY_PACE_PROBE_MS have passed. The others
 * (DISCONNECT 0x89 / 0x93 / 0x97, PUBACK 0x83 / 0x97) only say "slower": a quarter less than
 * the pace we were at, never below RELAY_PACE_SLOWER_MIN (they come from a busy broker as much
 * as from our pace), rising again (5 % a second) after the quiet period. What was learned
 * lives as long as the struct: the core's connection keeps it across reconnects.
 */
#ifndef RELAY_SESSION_RATE_H
#define RELAY_SESSION_RATE_H

#include <stdbool.h>
#include <stdint.h>

#define RELAY_PACE_MARGIN_MS 25u
#define RELAY_PACE_WINDOW_MS (1000u + RELAY_PACE_MARGIN_MS)
#define RELAY_PACE_SLOT_MS 5u
/* slots covering every send less than a window old (the window divides into whole slots) */
#define RELAY_PACE_SLOTS (RELAY_PACE_WINDOW_MS / RELAY_PACE_SLOT_MS + 1u)
#define RELAY_PACE_BURST 3u /* messages that may go back to back beyond the spacing */
#define RELAY_PACE_BYTES_BURST_MS 20u
#define RELAY_PACE_CATCHUP_MS 100u    /* spacing lost to a late wake-up, made up while backlogged */
#define RELAY_PACE_QUIET_MS 5000u     /* after a signal, this long before rising again */
#define RELAY_PACE_RAISE_MS 1000u     /* then one additive step this often */
#define RELAY_PACE_PROBE_MS 600000u   /* this long without a signal: rise past the estimate */
#define RELAY_PACE_UNLIMITED 1000000u /* a learned pace above this is no limit at all */
#define RELAY_PACE_SLOWER_MIN 20u     /* "slower" verdicts never take the pace below this */

/* Sends per slot over the last window. */
struct relay_slog {
    uint64_t n[RELAY_PACE_SLOTS];
    uint64_t sum;  /* of n[] */
    uint64_t slot; /* the newest slot (now_ms / RELAY_PACE_SLOT_MS) */
};

/* What the broker said about our pace. Stable names (relay_pace_signal_name) label
 * mqtt_relay_pace_signals_total. */
enum relay_pace_signal {
    RELAY_PACE_DISCONNECT_89 = 0, /* DISCONNECT 0x89 server busy */
    RELAY_PACE_DISCONNECT_93,     /* DISCONNECT 0x93 receive maximum exceeded */
    RELAY_PACE_DISCONNECT_96,     /* DISCONNECT 0x96 message rate too high */
    RELAY_PACE_DISCONNECT_97,     /* DISCONNECT 0x97 quota exceeded */
    RELAY_PACE_ACK_83,            /* PUBACK/PUBREC 0x83 (BifroMQ: busy) */
    RELAY_PACE_ACK_97,            /* PUBACK/PUBREC 0x97 quota exceeded (EMQX's limiter) */
    RELAY_PACE_NO_ACK,            /* MQTT 3.x: a later message acknowledged, an earlier one not:
                                     the broker acknowledges in order, so it dropped that one */
    RELAY_PACE_ACK_TIMEOUT,       /* MQTT 3.x: no acknowledgement within the round-trip timeout
                                     (a drop, or a broker that stalled: lowers by a quarter at
                                     most once a limit is known) */
    RELAY_PACE_SIG__COUNT
};
const char *relay_pace_signal_name(enum relay_pace_signal s);
/* The signal a DISCONNECT reason code is, or -1 when it is none. */
int relay_pace_disconnect_signal(uint8_t code);

struct relay_pace {
    /* configured (rate_limit; 0 = none) */
    uint64_t cap_msgs, cap_bytes;
    /* learned from the broker */
    uint64_t learned;                        /* messages per window; 0 = no limit learned */
    uint64_t ceiling;                        /* rising stops here (0 = probing: no ceiling) */
    uint64_t last_signal_ms;                 /* 0 = never */
    uint64_t raised_ms;                      /* the last additive step */
    uint64_t signals[RELAY_PACE_SIG__COUNT]; /* signals that lowered the pace */
    /* the current link */
    uint64_t link_ms;      /* when it opened: the broker counts whole seconds from about then */
    uint64_t win_k, win_n; /* that count's current second (estimated), our sends in it */
    uint64_t win_end_ms;   /* when that second ends */
    uint64_t prev_n;       /* our sends in the second before it */
    uint64_t tat_m_us, tat_b_us; /* spacing: theoretical arrival times (GCRA), microseconds */
    bool behind; /* asks were refused since the spacing last restarted: messages wait */
    struct relay_slog msgs, bytes;
};

/* A pace with no history and the configured limits (0 = none). */
void relay_pace_init(struct relay_pace *p, uint64_t msgs, uint64_t bytes);
/* The configured limits changed (reload): what was learned stays; the lower limit governs. */
void relay_pace_configure(struct relay_pace *p, uint64_t msgs, uint64_t bytes);
/* A new link opened at now_ms: its own count (the broker starts one per connection). */
void relay_pace_link(struct relay_pace *p, uint64_t now_ms);
/* The most messages one window may hold now (min of the configured and the learned limit; 0
 * = unlimited). */
uint64_t relay_pace_limit(const struct relay_pace *p);

/* May one PUBLISH of len bytes be sent at now_ms? true: it is counted as sent, and *nth (if
 * given) is how many this link sent before it in what we take to be the broker's current
 * one-second count. false: nothing changed, and *ready_ms is when to ask again. */
bool relay_pace_take(struct relay_pace *p, uint64_t len, uint64_t now_ms, uint64_t *ready_ms,
                     uint32_t *nth);

/* The broker says we were too fast. nth: the *nth of the message that tripped it (UINT32_MAX
 * when none is known; 0, the first of its second, is no verdict on the pace); sent_ms: when
 * that message was sent (now_ms when none is known): a message sent before the last decrease
 * is the same event again and changes nothing. Returns true when the pace was lowered (and the
 * signal counted). */
bool relay_pace_signal(struct relay_pace *p, enum relay_pace_signal sig, uint32_t nth,
                       uint64_t sent_ms, uint64_t now_ms);

#endif
