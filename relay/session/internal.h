/*
 * internal.h: the session's state and what its files share (session.c: lifecycle, the link,
 * reading and writing; connect.c: CONNECT and CONNACK; subs.c: SUBSCRIBE; outbox.c: outgoing
 * PUBLISHes and their acknowledgements, the answer policy, the pace's signals; inbox.c:
 * incoming QoS 1/2 messages held until their destinations acknowledged them; alias.c: how a
 * PUBLISH goes on the wire, with egress topic aliases; rate.c, window.c: pure arithmetic with
 * headers of their own). Nothing outside session/ includes it (tests may).
 */
#ifndef RELAY_SESSION_INTERNAL_H
#define RELAY_SESSION_INTERNAL_H

#include "session/session.h"

enum { MS_PENDING = 0, MS_INFLIGHT = 1 };
#define MS_RESENT 0x80 /* flag on m->state: sent on an earlier link */
#define MS_RETRY 0x40  /* flag on m->state: refused "busy" (PUBACK 0x83/0x97), queued again */

enum { SL_FREE = 0, SL_PUB = 1, SL_PUBCOMP = 2 };
enum { IN_FREE = 0, IN_WAIT, IN_DONE, IN_PUBREL };

#define SUB_PID_BASE 64512u /* SUBSCRIBE ids live above every PUBLISH id */
#define SUB_PID_COUNT 1023u
#define UNSUB_MARK 0xFFFFu /* subq entry of an UNSUBSCRIBE in flight */
#define MAX_PUB_SLOTS (SUB_PID_BASE - 1u)
#define CONNACK_TIMEOUT_MS 10000u
#define CLOSE_FLUSH_MS 1000u
#define RETRY_BUSY_MS 250u      /* first back-off after a "busy" answer; doubles per round */
#define RETRY_BUSY_MAX_MS 8000u /* ... up to this */
#define V3_ACK_FLOOR_MS 1000u   /* 3.x: the shortest round-trip timeout for a missing ack */
#define V3_GAP_FLOOR_MS 100u    /* 3.x: ... once a later one was acknowledged */
#define V3_ACK_BACKOFF_MAX 5u   /* 3.x: the missing-ack timeout doubles at most this often */
#define DEFAULT_INFLIGHT_V3 20u
#define RX_MIN 4096u
#define RX_HARD_CAP (16u * 1024u * 1024u) /* deferred PUBLISHes past this: reconnect */

/* A PUBLISH as it goes on the wire: segments of the message's bytes (m->data) and of small
 * bytes of its own (hdr: a fixed header, a Topic Alias property), so that a topic alias never
 * needs a second encoding (alias.c). Offsets, not pointers: the struct may be copied. */
struct sess_wire {
    struct {
        uint8_t own; /* 1: bytes of hdr[], 0: of m->data */
        uint32_t off, n;
    } seg[4];
    uint8_t nseg;
    uint32_t len;    /* all segments */
    uint8_t hdr[16]; /* [0..8): fixed header (and an empty topic); [8..16): property bytes */
    uint16_t alias;  /* the Topic Alias sent, 0 = none */
    bool establish;  /* the topic goes with it (a new mapping) */
    uint32_t hash;   /* of the topic, when aliases are in use */
    uint32_t topic_off;
    uint16_t tlen;
};

/* Egress topic aliases (MQTT 5): the hottest topics of this link, by a small count sketch. */
#define ALIAS_SKETCH 256u  /* buckets of recent sends by topic hash */
#define ALIAS_DECAY 1024u  /* sends between two halvings of the counts */
#define ALIAS_MIN_TOPIC 5u /* a shorter topic saves nothing worth a 3-byte property */
struct sess_alias_ent {
    uint32_t hash;
    uint16_t tlen;
    uint8_t *topic; /* copy, to compare: a hash collision never sends a wrong topic */
};
struct sess_aliases {
    uint16_t max;               /* usable on this link: min(cfg, the broker's maximum) */
    uint16_t used;              /* aliases 1..used are mapped */
    uint16_t cap;               /* entries allocated (cfg->topic_aliases) */
    struct sess_alias_ent *ent; /* by alias - 1 */
    uint16_t count[ALIAS_SKETCH];
    uint32_t ticks;
};

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
    uint32_t tx_off;          /* into tx_wire */
    struct sess_wire tx_wire; /* how tx_msg goes on the wire */
    struct relay_window win;
    struct relay_pace *pace;      /* cfg->pace, or own */
    struct relay_pace *own_pace;  /* allocated when cfg->pace is NULL */
    struct relay_rtt rtt;         /* round trips measured (rtt.c), across links */
    uint32_t rtt_told;            /* the base round trip last told to the owner (+1; 0 = none) */
    uint64_t rtt_ack_ms;          /* when the last PUBACK/PUBREC was sampled (one a millisecond) */
    uint8_t ack_backoff;          /* 3.x: missing-ack timeouts in a row, no acknowledgement since
                                     (each doubles the next wait, RFC 6298 5.5); across links */
    uint64_t rate_ready_ms;       /* pacing: no PUBLISH before this */
    uint64_t retry_ready_ms;      /* after a "busy" refusal: no PUBLISH before */
    uint32_t busy_ms;             /* the current busy back-off (0 = none yet) */
    uint64_t busy_since;          /* when it was last set: refusals of older sends are that round */
    struct relay_msg *retry_last; /* the last busy-refused message queued again, still pending */
    struct sess_aliases alias;

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
    uint16_t peer_alias_max; /* Topic Alias Maximum */
    uint16_t keepalive;      /* effective (Server Keep Alive wins) */
    bool session_present;

    /* timers */
    uint64_t link_open_ms, last_tx_ms, last_rx_ms, ping_sent_ms, closing_ms;
    bool ping_out;
    bool in_feed;      /* re-entrancy guard */
    uint64_t gap_ms;   /* 3.x: when a later PUBLISH was acknowledged before the oldest (0 = not) */
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
/* Moves the next pending message into the window (QoS > 0) and returns it with *w saying how
 * it goes on the wire, or NULL when nothing may be sent now. */
struct relay_msg *sess_take_next(struct relay_session *s, uint64_t now_ms, struct sess_wire *w);
int sess_on_ack(struct relay_session *s, uint8_t type, const struct mqc_ack *a, uint64_t now_ms);
/* The in-flight messages go back to the queue after a lost link: after the busy-refused ones
 * queued at its head (sent before them), before everything never sent. */
/* Returns the last message placed (or the last busy-refused one, or NULL). */
struct relay_msg *sess_requeue_inflight(struct relay_session *s);
/* The broker said we were too fast (rate.h): the pace is lowered, judged by m, or with none the
 * oldest message in flight (what the broker refused). True when it was lowered. */
bool sess_pace_signal(struct relay_session *s, enum relay_pace_signal sig,
                      const struct relay_msg *m, uint64_t now_ms);

/* alias.c */
/* How m goes on the wire now: with a topic alias when this link has them and m's topic is hot
 * enough; nothing is changed (sess_alias_commit() does that once m is really sent). */
void sess_wire_plan(struct relay_session *s, const struct relay_msg *m, struct sess_wire *w);
void sess_alias_commit(struct relay_session *s, const struct sess_wire *w,
                       const struct relay_msg *m);
/* Copies bytes [off, off + n) of m as w puts it on the wire to out. */
void sess_wire_copy(const struct sess_wire *w, const struct relay_msg *m, uint32_t off,
                    uint8_t *out, uint32_t n);
/* A new link: no mapping (the broker forgets them with the connection). */
void sess_alias_reset(struct relay_session *s);
void sess_alias_free(struct relay_session *s);

/* inbox.c */
void sess_in_reset(struct relay_session *s);
/* A PUBLISH from the broker. 1 when it must wait (held-message cap reached), <0 = close. */
int sess_on_publish(struct relay_session *s, const uint8_t *buf, size_t len, uint64_t now_ms);
int sess_on_pubrel(struct relay_session *s, const struct mqc_ack *a, uint64_t now_ms);

#endif
