/*
 * internal.h: the session's state and what its files share (session.c: lifecycle, the link,
 * reading and writing; connect.c: CONNECT and CONNACK; subs.c: SUBSCRIBE; outbox.c: outgoing
 * PUBLISHes and their acknowledgements; inbox.c: incoming QoS 1/2 messages held until their
 * destinations acknowledged them). Nothing outside session/ includes it (tests may).
 */
#ifndef RELAY_SESSION_INTERNAL_H
#define RELAY_SESSION_INTERNAL_H

#include "session/session.h"

enum { MS_PENDING = 0, MS_INFLIGHT = 1 };
#define MS_RESENT 0x80 /* flag on m->state: sent on an earlier link */

enum { SL_FREE = 0, SL_PUB = 1, SL_PUBCOMP = 2 };
enum { IN_FREE = 0, IN_WAIT, IN_DONE, IN_PUBREL };

#define SUB_PID_BASE 64512u /* SUBSCRIBE ids live above every PUBLISH id */
#define SUB_PID_COUNT 1023u
#define UNSUB_MARK 0xFFFFu /* subq entry of an UNSUBSCRIBE in flight */
#define MAX_PUB_SLOTS (SUB_PID_BASE - 1u)
#define CONNACK_TIMEOUT_MS 10000u
#define CLOSE_FLUSH_MS 1000u
#define RETRY_BUSY_MS 1000u
#define DEFAULT_INFLIGHT_V3 20u
#define RX_MIN 4096u
#define RX_HARD_CAP (16u * 1024u * 1024u) /* deferred PUBLISHes past this: reconnect */

struct relay_in_slot {
    uint16_t pid;
    uint8_t qos;
    uint8_t state;    /* free, waiting, done (ack queued after earlier ones), await PUBREL */
    uint32_t pending; /* destinations still to finish (relay_session_in_done), UINT32_MAX = held */
    uint32_t gen;
};

struct relay_session {
    const struct relay_session_cfg *cfg;
    const struct relay_session_hooks *hooks;
    void *owner;
    struct relay_log *log;
    const char *who;
    enum relay_session_state state;
    enum relay_session_end end; /* how the last link ended (with why) */
    bool rx_paused;             /* the owner paused reading (keepalive / ack timeouts suspended) */
    uint64_t packets_in;        /* packets handled since the session was made (read batching) */
    bool rx_full;               /* held messages at the cap */

    /* receive side */
    uint8_t *rx; /* unprocessed bytes (a partial packet, or packets deferred) */
    size_t rx_len, rx_cap;
    size_t rx_kept; /* leading bytes of rx known to be waiting PUBLISHes (rx_full) */

    /* control bytes to send (CONNECT, SUBSCRIBE, acks, PUBREL, PINGREQ, DISCONNECT) */
    uint8_t *ctl;
    size_t ctl_len, ctl_off, ctl_cap;

    /* outgoing PUBLISHes */
    struct relay_msg *pend_head, *pend_tail; /* waiting for window credit, in order */
    struct relay_msg *fl_head, *fl_tail;     /* sent, waiting for PUBACK/PUBREC, in order */
    struct relay_msg **slots;                /* by packet id - 1 (pid <= slots_cap) */
    uint8_t *slot_state;                     /* free / publish / awaiting PUBCOMP */
    uint16_t slots_cap, next_pid;
    struct relay_msg *tx_msg; /* partly written PUBLISH */
    uint32_t tx_off;
    struct relay_window win;
    struct relay_rtt rtt; /* round trips measured (rtt.c), across links */
    uint32_t rtt_told;    /* the base round trip last told to the owner (+1; 0 = none) */
    uint64_t rtt_ack_ms;  /* when the last PUBACK/PUBREC was sampled (one a millisecond) */
    struct relay_bucket rate_bytes, rate_msgs;
    uint64_t rate_ready_ms;  /* pacing: no PUBLISH before this */
    uint64_t retry_ready_ms; /* after a "busy" refusal: no PUBLISH before */

    /* incoming QoS 1/2 messages held until their destinations acknowledge */
    struct relay_in_slot *in; /* receive_maximum slots */
    uint16_t in_cap, in_used;
    uint16_t in_pubrel; /* held QoS 2 slots waiting for the broker's PUBREL */
    uint16_t *in_order; /* ring of slot indexes in arrival order */
    uint16_t in_head, in_count;
    uint16_t *in_free; /* stack of free slot indexes */
    uint16_t in_nfree;

    /* subscriptions in progress */
    const struct relay_sub *subs;
    size_t n_subs;
    size_t sub_next;      /* next subscription to send */
    uint16_t sub_pending; /* SUBACKs still expected */
    uint16_t sub_seq;     /* rolling index into subq */
    struct {
        size_t first; /* its first subscription */
        uint16_t n;   /* filters in it; 0 = no SUBSCRIBE outstanding */
    } * subq;         /* by SUBSCRIBE packet id - base */

    /* what the broker said in CONNACK */
    uint16_t peer_receive_max;
    uint32_t peer_max_packet;
    uint8_t peer_max_qos;
    bool peer_retain;
    bool peer_sub_ids;
    bool peer_shared;
    uint16_t keepalive; /* effective (Server Keep Alive wins) */
    bool session_present;

    /* timers */
    uint64_t link_open_ms, last_tx_ms, last_rx_ms, ping_sent_ms, closing_ms;
    bool ping_out;
    bool in_feed;      /* re-entrancy guard */
    bool over_rm_said; /* logged that the broker exceeds our Receive Max */
    uint32_t epoch;    /* link count, bumps on each close */
    uint16_t *in_map;  /* packet id -> incoming slot + 1 (65536 entries) */
    char why[160];     /* why the last link ended, for the owner's log */
};

/* session.c */
int sess_grow(uint8_t **buf, size_t *cap, size_t need);
/* A round trip of rtt_ms ended now: the estimate, the window sized from it (max_inflight auto,
 * 3.x), and the owner told when the base round trip changed. */
void sess_rtt_sample(struct relay_session *s, uint64_t rtt_ms, uint64_t now_ms);
/* The window's limits from the configuration, what CONNACK said and the round trip. */
void sess_window_limits(struct relay_session *s);
/* Encodes pkt / a 4-byte acknowledgement at the end of the control queue. 0 or -errno. */
int sess_ctl_put(struct relay_session *s, const struct mqc_packet *pkt);
int sess_ctl_ack(struct relay_session *s, uint8_t type, uint16_t pid, uint8_t code);
/* Why the link ends, for the owner's log line. */
void sess_set_why(struct relay_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A packet from the broker broke the protocol: DISCONNECT with the reason code (5.0), -EPROTO. */
int sess_peer_error(struct relay_session *s, int err, const char *what, uint64_t now_ms);

/* connect.c */
int sess_queue_connect(struct relay_session *s);
int sess_on_connack(struct relay_session *s, const struct mqc_connack *ca, uint64_t now_ms);

/* subs.c */
int sess_queue_subscribes(struct relay_session *s);
int sess_on_suback(struct relay_session *s, const struct mqc_suback *sa, uint64_t now_ms);
int sess_on_unsuback(struct relay_session *s, const struct mqc_suback *sa, uint64_t now_ms);

/* outbox.c */
void sess_finish_out(struct relay_session *s, struct relay_msg *m, int drop, uint64_t now_ms);
bool sess_may_publish(const struct relay_session *s, uint64_t now_ms);
/* Moves the next pending message into the window (QoS > 0) and returns it, or NULL. */
struct relay_msg *sess_take_next(struct relay_session *s, uint64_t now_ms);
int sess_on_ack(struct relay_session *s, uint8_t type, const struct mqc_ack *a, uint64_t now_ms);

/* inbox.c */
void sess_in_reset(struct relay_session *s);
/* A PUBLISH from the broker. 1 when it must wait (held-message cap reached), <0 = close. */
int sess_on_publish(struct relay_session *s, const uint8_t *buf, size_t len, uint64_t now_ms);
int sess_on_pubrel(struct relay_session *s, const struct mqc_ack *a, uint64_t now_ms);

#endif
