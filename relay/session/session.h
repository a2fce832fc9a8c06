/*
 * session.h: one broker connection's MQTT client state, with no I/O and no clock (STYLE §6).
 *
 * Bytes come in through relay_session_feed() and go out through relay_session_next_tx(); time
 * comes in as now_ms. What happens to messages is told to the owner through the hooks.
 */
#ifndef RELAY_SESSION_SESSION_H
#define RELAY_SESSION_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqttcodec.h"
#include "session/rate.h"
#include "session/rtt.h"
#include "session/window.h"
#include "util/log.h"
#include "util/msg.h"

/* One subscription a session makes after each CONNACK. */
struct relay_sub {
    const char *filter; /* as sent ("$share/g/f" included) */
    uint8_t options;    /* QoS and MQTT 5 flags */
    uint32_t sub_id;    /* MQTT 5 Subscription Identifier, 0 = none */
};

struct relay_session_cfg {
    uint8_t version;
    bool try_bridge; /* 3.x: set the bridge bit in CONNECT (the owner may turn it off) */
    const char *client_id;
    const char *username;
    const char *password;
    size_t password_len;
    uint16_t keepalive;
    bool clean_start;
    uint32_t session_expiry;
    uint16_t receive_maximum;  /* advertised; also the cap on held QoS 1/2 messages */
    uint32_t max_packet_size;  /* advertised; larger packets are refused */
    uint16_t max_inflight;     /* 0 = auto: the peer's Receive Maximum (5.0); for 3.x sized from
                                  the base round trip (rtt.h) between 20 and max_inflight_cap,
                                  QoS 2 within 20 */
    uint16_t max_inflight_cap; /* auto, 3.x: the largest window; 0 = 20 */
    uint32_t ack_timeout_ms;
    uint64_t rate_bytes, rate_messages;
    const char *will_topic; /* status topic: Will "offline", "online" published once up */
    /* The pace (rate.h), owned by the caller so that what the broker taught it outlives the
     * session's links and the session itself; NULL: the session keeps its own. */
    struct relay_pace *pace;
    uint16_t topic_aliases; /* 5.0: topic aliases we use, at most the broker's maximum; 0 none */
};

/* One broker link's client state: opaque, reached through the functions below. */
struct relay_session;

/* What a session reports to its owner (relay.c). */
struct relay_session_hooks {
    /* CONNACK accepted. */
    void (*up)(struct relay_session *s, bool session_present, uint64_t now_ms);
    /* A PUBLISH arrived. ref.slot == 0 for QoS 0. Returns how many destinations took it: for
     * QoS 1/2 the owner then calls relay_session_in_done(s, ref) once per destination as each
     * finishes, and the acknowledgement goes when all have (at once when 0). A negative return
     * holds the message unacknowledged for as long as this link lives (shutting down: the broker
     * redelivers it). p borrows from the receive buffer: valid during the call only. */
    int (*publish)(struct relay_session *s, const struct mqc_publish *p, struct relay_in_ref ref,
                   uint64_t now_ms);
    /* An outgoing message is finished: delivered (drop < 0) or dropped for reason drop. The
     * owner completes its source and frees m. */
    void (*done)(struct relay_session *s, struct relay_msg *m, int drop, uint64_t now_ms);
    /* A subscription was refused (reason >= 0x80) or granted. */
    void (*suback)(struct relay_session *s, const struct relay_sub *sub, uint8_t code);
    /* Held QoS 1/2 messages from this session reached / left the cap: pause / resume rx. */
    void (*rx_full)(struct relay_session *s, bool full);
    /* The window's byte buffer went over its high mark (+1) or back under its low mark (-1):
     * the owner pauses / resumes the sources feeding this session. */
    void (*window)(struct relay_session *s, int transition);
    /* The base round trip (rtt.h): each of the first RELAY_RTT_TELL_FIRST samples, then each
     * change, in ms. */
    void (*rtt)(struct relay_session *s, uint32_t base_ms, uint64_t now_ms);
};

enum relay_session_state {
    RELAY_SS_DOWN = 0,    /* no link */
    RELAY_SS_CONNECTING,  /* CONNECT queued/sent, waiting for CONNACK */
    RELAY_SS_SUBSCRIBING, /* CONNACK in, waiting for SUBACKs */
    RELAY_SS_UP,          /* publishing */
    RELAY_SS_CLOSING,     /* DISCONNECT queued; the link closes once it is written */
};

/* Lifecycle. new keeps the cfg/hooks/log/who pointers (they must outlive s). 0 and *out, or
 * -ENOMEM. free releases everything, queued messages included, without calling hooks (the
 * owner is going away too); free(NULL) does nothing. */
int relay_session_new(const struct relay_session_cfg *cfg, const struct relay_session_hooks *hooks,
                      void *owner, struct relay_log *log, const char *who,
                      struct relay_session **out);
void relay_session_free(struct relay_session *s);
/* The cfg changed in place (reload): the pacing restarts from its new limits. */
void relay_session_reconfigure(struct relay_session *s, uint64_t now_ms);

/* The subscriptions to make after each CONNACK (kept by pointer). */
void relay_session_set_subs(struct relay_session *s, const struct relay_sub *subs, size_t n);

/* The subscriptions changed (reload): subs is the new list (kept by pointer); fresh[i] says
 * subs[i] is new or changed and is subscribed now; gone are filters to unsubscribe now. On a
 * link that is not up yet the next CONNACK subscribes the whole new list. 0 or -ENOMEM. */
int relay_session_change_subs(struct relay_session *s, const struct relay_sub *subs, size_t n,
                              const bool *fresh, const char *const *gone, size_t n_gone);

/* Link events. open queues CONNECT. feed: <0 = close the link now (a DISCONNECT with the reason
 * code may have been queued: see relay_session_closing()). closed: the link is gone; in-flight
 * messages go back to the head of the queue to be resent with DUP, held incoming messages are
 * forgotten (the broker redelivers them), the QoS 2 exchanges resume on the next link. */
int relay_session_open(struct relay_session *s, uint64_t now_ms);
int relay_session_feed(struct relay_session *s, const uint8_t *in, size_t n, uint64_t now_ms);
int relay_session_next_tx(struct relay_session *s, uint8_t *out, size_t cap, size_t *len,
                          uint64_t now_ms);
bool relay_session_wants_write(const struct relay_session *s, uint64_t now_ms);
void relay_session_closed(struct relay_session *s, uint64_t now_ms);
/* True once a DISCONNECT is queued: the owner closes the link when wants_write turns false. */
bool relay_session_closing(const struct relay_session *s);
/* Queues a DISCONNECT (reason code for 5.0) and enters CLOSING. */
void relay_session_disconnect(struct relay_session *s, uint8_t reason, uint64_t now_ms);

/* Timers: the next time tick must run (0 = none); tick returns <0 to close the link. */
uint64_t relay_session_deadline(const struct relay_session *s);
int relay_session_tick(struct relay_session *s, uint64_t now_ms);

/* Queues an outgoing message (takes ownership; done() is called exactly once for it). */
void relay_session_enqueue(struct relay_session *s, struct relay_msg *m, uint64_t now_ms);
/* One destination of a held incoming message is finished; when all are, it is acknowledged (in
 * arrival order). Stale refs (from an earlier link) are ignored. */
void relay_session_in_done(struct relay_session *s, struct relay_in_ref ref, uint64_t now_ms);
/* Removes the queued (never sent on the current link) messages for which pred is true, without
 * calling done: used to forget messages whose source will redeliver them. Returns how many. */
size_t relay_session_purge(struct relay_session *s,
                           bool (*pred)(const struct relay_msg *m, void *arg), void *arg);
/* Queued messages name their route by index; a reload renumbered them: route i is now map[i]
 * (UINT32_MAX: gone), for i < n_old. */
void relay_session_remap_routes(struct relay_session *s, const uint32_t *map, size_t n_old);
/* The owner paused / resumed reading the link. */
void relay_session_set_rx_paused(struct relay_session *s, bool paused);
/* Number of outgoing messages sent and not yet acknowledged (PUBACK/PUBREC/PUBCOMP). */
uint32_t relay_session_unacked(const struct relay_session *s);
/* True while progress needs reading this link: acknowledgements of what we sent, or the
 * PUBRELs of held QoS 2 messages. Such a link must not be paused. */
bool relay_session_needs_rx(const struct relay_session *s);
/* Processes packets deferred while the held-message cap was reached. <0 = close. */
int relay_session_resume_rx(struct relay_session *s, uint64_t now_ms);

/* ---- what the owner may read ------------------------------------------------------------ */

void *relay_session_owner(const struct relay_session *s);
enum relay_session_state relay_session_state(const struct relay_session *s);
/* Link count: bumps when a link closes (a message from an earlier link is stale). */
uint32_t relay_session_epoch(const struct relay_session *s);
/* Why the last link ended ("" when nothing was recorded): one line for the owner's log. */
const char *relay_session_why(const struct relay_session *s);
/* How the last link ended: a failure, or the 3.x bridge bit refused: CONNACK 1 answered a
 * CONNECT that had it, or the broker closed the link before any CONNACK (BifroMQ, RabbitMQ).
 * The owner may then connect again at once without it (cfg->try_bridge). */
/* RELAY_END_PACE: the broker said we were too fast (DISCONNECT 0x89 / 0x93 / 0x96 / 0x97, or at
 * 3.x an acknowledgement missing past the round-trip timeout): the pace was lowered, and the
 * owner may connect again at once. */
enum relay_session_end { RELAY_END_FAILURE = 0, RELAY_END_BRIDGE_REFUSED, RELAY_END_PACE };
enum relay_session_end relay_session_end(const struct relay_session *s);
/* The owner has logged why (relay_session_why() turns ""). */
void relay_session_forget_why(struct relay_session *s);
/* The 3.x bridge bit is set in this link's CONNECT. */
bool relay_session_bridge_on(const struct relay_session *s);
/* What the broker's CONNACK allows (before the first CONNACK: the protocol's limits). */
uint32_t relay_session_max_packet(const struct relay_session *s);
uint8_t relay_session_max_qos(const struct relay_session *s);
bool relay_session_sub_ids(const struct relay_session *s);
uint16_t relay_session_keepalive(const struct relay_session *s);
/* The round trip measured on this connection (kept across links: the path is the same). */
const struct relay_rtt *relay_session_rtt(const struct relay_session *s);
/* The window: unacknowledged PUBLISHes allowed, and the bytes queued (sent or not). */
uint32_t relay_session_window_limit(const struct relay_session *s);
uint64_t relay_session_queued_bytes(const struct relay_session *s);
/* A QoS 0 message of bytes may still be queued (else it is dropped, "qos0_overflow"). */
bool relay_session_qos0_room(const struct relay_session *s, uint64_t bytes);
/* Held QoS 1/2 messages reached receive_maximum. */
bool relay_session_rx_full(const struct relay_session *s);
/* A quarter of receive_maximum is free again: a link paused for rx_full reads again from here
 * (hysteresis: not a pause and a resume for every acknowledgement). */
bool relay_session_rx_room(const struct relay_session *s);
/* Nothing left that this link can still send or must hear back: no unacknowledged PUBLISH, no
 * control bytes or PUBLISH being written, nothing queued while up (shutdown's drain). */
bool relay_session_drained(const struct relay_session *s);
/* Packets handled since the session was made (the transport's read batching takes differences). */
uint64_t relay_session_packets_in(const struct relay_session *s);
/* The pace in use (cfg->pace or the session's own). */
const struct relay_pace *relay_session_pace(const struct relay_session *s);
/* Topic aliases usable on this link (min of cfg->topic_aliases and the broker's maximum). */
uint16_t relay_session_topic_aliases(const struct relay_session *s);

#endif
