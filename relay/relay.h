/*
 * mqtt-relay: shared declarations of the daemon's modules.
 *
 * Ownership: config.c (and only config.c) includes <libconfig.h>; transport_lws.c (and only it)
 * includes <libwebsockets.h>. Everything else reaches the network through struct relay_io and
 * gets time as now_ms arguments.
 *
 * Errors: functions return 0 or a negative errno value (-EINVAL, -ENOMEM, -EPROTO, ...).
 */
#ifndef RELAY_H
#define RELAY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mqttcodec.h"

#define RELAY_VERSION_STRING "0.1.0"
#define RELAY_BATCH_WAIT_US 300u /* relay.batch_wait_us default */

/* ======================================================================================== */
/* config.c: the configuration file, as plain data                                          */
/* ======================================================================================== */

enum relay_scheme { RELAY_MQTT = 0, RELAY_MQTTS, RELAY_WS, RELAY_WSS };

struct relay_url {
    enum relay_scheme scheme;
    char *text; /* the URL as written */
    char *host; /* without brackets for IPv6 literals */
    uint16_t port; /* default 1883, 8883, 80, 443 by scheme */
    char *path;    /* ws/wss: from the URL, default "/mqtt"; NULL for mqtt/mqtts */
};

struct relay_tls_config {
    char *ca_file;     /* resolved path, NULL = system store */
    char *cert_file;   /* NULL = no client certificate */
    char *key_file;
    bool verify;       /* default true */
    char *server_name; /* NULL = the URL host */
};

struct relay_spool_config {
    char *dir; /* resolved path; NULL = no spool */
    uint64_t max_size;
};

enum relay_log_level { RELAY_LOG_ERROR = 0, RELAY_LOG_WARN, RELAY_LOG_INFO, RELAY_LOG_DEBUG };

struct relay_broker_config {
    char *name;
    int line; /* where the broker's group starts in the file */
    struct relay_url *urls;
    size_t n_urls;
    uint8_t version;   /* MQC_V31, MQC_V311, MQC_V5; default MQC_V5 */
    char *client_id;   /* base id: default "<relay.id>-<name>"; "-<i>" appended when connections > 1 */
    char *username;    /* NULL = none */
    char *password;    /* NULL = none; from password or password_file */
    size_t password_len;
    uint16_t keepalive;       /* seconds, default 60 */
    bool clean_start;         /* default false */
    uint32_t session_expiry;  /* seconds, default 3600 */
    uint32_t connections;     /* default 1 */
    uint16_t receive_maximum; /* default 64 */
    uint16_t max_inflight;    /* 0 = default: peer's Receive Maximum (5.0) or 20 (3.x) */
    uint32_t max_packet_size; /* default 262144 */
    uint64_t rate_bytes;      /* bytes/s we send per connection, 0 = unlimited */
    uint32_t rate_messages;   /* PUBLISHes/s we send per connection, 0 = unlimited */
    struct relay_spool_config spool;
    uint32_t reconnect_min_ms; /* default 250 */
    uint32_t reconnect_max_ms; /* default 30000 */
    uint32_t ack_timeout_ms;   /* extension: a PUBLISH unacknowledged this long => reconnect;
                                  default 20000 */
    char *status_topic;        /* NULL = none */
    bool has_tls;              /* a tls group was given */
    struct relay_tls_config tls;
};

enum relay_retain_mode { RELAY_RETAIN_KEEP = 0, RELAY_RETAIN_CLEAR };
enum relay_props_mode { RELAY_PROPS_FORWARD = 0, RELAY_PROPS_DROP };

struct relay_route_config {
    char *name; /* default "<from>-><to>#<index>" */
    int line;
    size_t from;   /* index into brokers */
    size_t to;     /* index into brokers */
    char *filter;  /* as written: never a "$share/" form */
    char *share;   /* NULL = not shared */
    bool ordered;  /* "$oshare/" instead of "$share/" */
    uint8_t qos;   /* subscription QoS, default 1 */
    char *topic;   /* template, default "${topic}" */
    int out_qos;   /* -1 = "same", else 0..2 */
    enum relay_retain_mode retain;
    enum relay_props_mode properties;
};

struct relay_config {
    char *path;    /* the file as given */
    char *dir;     /* its directory: relative paths are resolved against it */
    char *id;      /* default: the host name */
    enum relay_log_level log_level; /* default info */
    char *metrics_host;             /* NULL = no metrics listener */
    uint16_t metrics_port;
    uint32_t drain_timeout_ms;      /* default 5000 */
    uint32_t max_hops;              /* default 8 */
    uint32_t batch_wait_us;         /* read batching under load, see transport_lws.c */
    struct relay_broker_config *brokers;
    size_t n_brokers;
    struct relay_route_config *routes;
    size_t n_routes;
};

/* Loads and validates path. 0 on success (cfg filled; release with relay_config_cleanup()).
 * -EINVAL on an invalid file: err receives one line "FILE:LINE: what is wrong" (no newline);
 * -ENOENT/-EACCES when the file cannot be read (err says so); -ENOMEM. On error cfg is left
 * empty (safe to pass to relay_config_cleanup()). */
int relay_config_load(const char *path, struct relay_config *cfg, char *err, size_t errlen);
void relay_config_cleanup(struct relay_config *cfg);

/* The subscription filter route r makes on its source: "$share/G/F", "$oshare/G/F" or F.
 * Writes a NUL-terminated string into out; returns its length, or -ENOSPC. */
int relay_route_subscription(const struct relay_route_config *r, char *out, size_t cap);

/* The client id of connection idx (0-based) of broker b, NUL-terminated, into out. */
int relay_broker_client_id(const struct relay_broker_config *b, uint32_t idx, char *out,
                           size_t cap);

/* Prints the resolved plan (--check) to out: brokers, connections and client ids, and for each
 * route the exact subscription and an example mapping. Never prints a password. */
void relay_config_print_plan(const struct relay_config *cfg, FILE *out);

/* ======================================================================================== */
/* mosquitto.c: `--from-mosquitto FILE`, and notify.c: systemd notifications                */
/* ======================================================================================== */

/* Reads the Mosquitto 2.0 configuration path (following its include_dir) and prints to out a
 * commented mqtt-relay configuration equivalent to its bridges (SPEC.md, Command line). 0 when
 * printed; otherwise nothing is printed to out, err holds one line ("FILE:LINE: what" for an
 * error in the Mosquitto file) and the result is -EINVAL, -ENOENT/-EACCES (unreadable file),
 * -EIO or -ENOMEM. */
int relay_from_mosquitto(const char *path, FILE *out, FILE *err);

/* sd_notify(state) when built with libsystemd and started by systemd ("READY=1",
 * "STOPPING=1", "RELOADING=1", "WATCHDOG=1", ...); does nothing otherwise. */
void relay_notify(const char *state);
/* The interval at which to send "WATCHDOG=1" (half of WatchdogSec), in ms; 0 = no watchdog. */
uint64_t relay_notify_watchdog_ms(void);

/* ======================================================================================== */
/* template.c: destination topic templates and the static loop check                        */
/* ======================================================================================== */

/* A compiled template: literal pieces and placeholders. Owned by the caller (init/cleanup). */
enum relay_tpl_kind { RELAY_TPL_LIT = 0, RELAY_TPL_TOPIC, RELAY_TPL_LEVEL, RELAY_TPL_REST };

struct relay_tpl_part {
    enum relay_tpl_kind kind;
    uint8_t level;        /* RELAY_TPL_LEVEL: 1..9 */
    bool drop_slash;      /* RELAY_TPL_REST: a literal '/' precedes it and is dropped when the
                             '#' matched nothing (the '/' is then not in the previous literal) */
    const char *lit;      /* RELAY_TPL_LIT */
    size_t lit_len;
};

struct relay_tpl {
    struct relay_tpl_part *parts;
    size_t n_parts;
    char *buf;            /* storage for the literals */
    bool identity;        /* exactly "${topic}": output == input, a fast path */
    /* the source filter's shape, recorded at compile time */
    uint8_t n_plus;       /* number of '+' levels */
    uint16_t plus_level[9]; /* 0-based level index of the 1st..9th '+' */
    int hash_level;       /* 0-based level index of a trailing '#', -1 if none */
};

/* Compiles template text for a route whose source filter is filter. 0, or -EINVAL with a
 * message in err ("template refers to ${3} but the filter has 1 '+'", "template contains a
 * wildcard", "unknown placeholder ${x}", "${#} but the filter has no '#'"), or -ENOMEM. */
int relay_tpl_compile(struct relay_tpl *t, const char *text, const char *filter, char *err,
                      size_t errlen);
void relay_tpl_cleanup(struct relay_tpl *t);

/* Expands t for topic (a topic name matching the filter t was compiled with) into out.
 * 0 and *len set; -ENOSPC if cap is too small; -EINVAL if the result is not a valid topic name
 * (empty, an empty level substituted for ${N}, over 65535 bytes): the caller drops and counts
 * "bad_topic". Never allocates. */
int relay_tpl_expand(const struct relay_tpl *t, const uint8_t *topic, size_t topic_len,
                     uint8_t *out, size_t cap, size_t *len);

/* True if some topic produced by template t (compiled for source filter src_filter) can match
 * filter dst_filter (conservative: may say true when unsure, never false when they overlap). */
bool relay_tpl_overlaps(const struct relay_tpl *t, const char *src_filter,
                        const char *dst_filter);

/* ======================================================================================== */
/* window.c: credits, byte marks and token buckets (pure arithmetic, unit-tested)           */
/* ======================================================================================== */

/* One destination connection's window: at most `limit` unacknowledged PUBLISHes and a byte
 * buffer with a high mark (pause the sources feeding it) and a low mark (resume them). */
struct relay_window {
    uint32_t limit;       /* min(max_inflight, peer's Receive Maximum) */
    uint32_t inflight;    /* sent, not yet acknowledged */
    uint64_t queued;      /* bytes waiting to be sent or acknowledged */
    uint64_t high, low;   /* marks; low < high */
    bool over;            /* above high, not yet back under low */
};

#define RELAY_WINDOW_HIGH (1024u * 1024u) /* default high mark, bytes */
#define RELAY_WINDOW_LOW (256u * 1024u)   /* default low mark, bytes */

void relay_window_init(struct relay_window *w, uint32_t limit, uint64_t high, uint64_t low);
/* True when one more PUBLISH may be sent now. */
bool relay_window_can_send(const struct relay_window *w);
void relay_window_sent(struct relay_window *w);  /* a PUBLISH went out (QoS > 0) */
void relay_window_acked(struct relay_window *w); /* its acknowledgement came back */
/* Bytes enter / leave the buffer. Each returns +1 when the window just went over its high mark,
 * -1 when it just came back under its low mark, 0 otherwise: the caller pauses or resumes the
 * sources feeding it. */
int relay_window_add(struct relay_window *w, uint64_t bytes);
int relay_window_remove(struct relay_window *w, uint64_t bytes);
/* QoS 0 messages are dropped (counted "qos0_overflow") past twice the high mark. */
bool relay_window_qos0_room(const struct relay_window *w, uint64_t bytes);

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

/* ======================================================================================== */
/* Messages and sessions                                                                     */
/* ======================================================================================== */

enum relay_drop {
    RELAY_DROP_LOOP = 0,
    RELAY_DROP_EXPIRED,
    RELAY_DROP_TOO_LARGE,
    RELAY_DROP_BAD_TOPIC,
    RELAY_DROP_QOS0_OVERFLOW,
    RELAY_DROP_REJECTED, /* the destination refused it (PUBACK/PUBREC reason code >= 0x80) */
    RELAY_DROP__COUNT
};
const char *relay_drop_name(enum relay_drop d);

/* Identifies one received QoS 1/2 message on its source session until it is acknowledged. */
struct relay_in_ref {
    uint32_t slot; /* index + 1; 0 = nothing to acknowledge */
    uint32_t gen;  /* the slot's generation when the message arrived */
};

struct relay_conn;

/* One outgoing PUBLISH, encoded once for its destination; resent from these bytes after a
 * reconnect (DUP set). Owned by the destination session's queues until done. */
struct relay_msg {
    struct relay_msg *next, *prev;
    struct relay_conn *src;   /* the connection to acknowledge once delivered, or NULL */
    struct relay_in_ref ref;
    uint32_t src_epoch;       /* src's link epoch when received (orphans: see relay.c) */
    uint32_t route;           /* route index, for the counters */
    uint64_t t_in_ms;         /* when the source message arrived */
    uint64_t sent_ms;         /* when last written */
    uint32_t expiry;          /* Message Expiry Interval as received, seconds; 0 = none */
    uint32_t expiry_off;      /* offset of its 4 value bytes in data; 0 = none */
    uint32_t pid_off;         /* offset of the packet identifier; 0 for QoS 0 */
    uint32_t len;             /* bytes in data */
    uint64_t spool_seq;       /* record number in the destination's spool; 0 = not spooled */
    uint16_t pid;             /* 0 until it enters the window */
    uint16_t conn;            /* the pool connection it is for (spool records) */
    uint8_t cache;            /* relay_msg_alloc's size class + 1; 0 = plain malloc */
    uint8_t qos;
    uint8_t state;            /* session.c's */
    uint8_t data[];
};

/* Doubly linked lists of messages (queues, in-flight lists, waits), by head and tail. */
static inline void relay_msg_unlink(struct relay_msg **head, struct relay_msg **tail,
                                    struct relay_msg *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        *head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        *tail = m->prev;
    m->next = m->prev = NULL;
}

static inline void relay_msg_push_back(struct relay_msg **head, struct relay_msg **tail,
                                       struct relay_msg *m)
{
    m->next = NULL;
    m->prev = *tail;
    if (*tail)
        (*tail)->next = m;
    else
        *head = m;
    *tail = m;
}

static inline void relay_msg_push_front(struct relay_msg **head, struct relay_msg **tail,
                                        struct relay_msg *m)
{
    m->prev = NULL;
    m->next = *head;
    if (*head)
        (*head)->prev = m;
    else
        *tail = m;
    *head = m;
}

/* One subscription a session makes after each CONNACK. */
struct relay_sub {
    const char *filter; /* as sent ("$share/g/f" included) */
    uint8_t options;    /* QoS and MQTT 5 flags */
    uint32_t sub_id;    /* MQTT 5 Subscription Identifier, 0 = none */
};

struct relay_session_cfg {
    uint8_t version;
    bool try_bridge;        /* 3.x: set the bridge bit (falls back when refused) */
    const char *client_id;
    const char *username;
    const char *password;
    size_t password_len;
    uint16_t keepalive;
    bool clean_start;
    uint32_t session_expiry;
    uint16_t receive_maximum; /* advertised; also the cap on held QoS 1/2 messages */
    uint32_t max_packet_size; /* advertised; larger packets are refused */
    uint16_t max_inflight;    /* 0 = peer's Receive Maximum (5.0) or 20 (3.x) */
    uint32_t ack_timeout_ms;
    uint64_t rate_bytes, rate_messages;
    const char *will_topic;   /* status topic: Will "offline", "online" published once up */
};

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
};

enum relay_session_state {
    RELAY_SS_DOWN = 0,  /* no link */
    RELAY_SS_CONNECTING,/* CONNECT queued/sent, waiting for CONNACK */
    RELAY_SS_SUBSCRIBING, /* CONNACK in, waiting for SUBACKs */
    RELAY_SS_UP,        /* publishing */
    RELAY_SS_CLOSING,   /* DISCONNECT queued; the link closes once it is written */
};

struct relay_in_slot {
    uint16_t pid;
    uint8_t qos;
    uint8_t state;   /* free, waiting, done (ack queued after earlier ones), await PUBREL */
    uint32_t pending;/* not used by session.c: owner's count of destinations */
    uint32_t gen;
};

struct relay_session {
    const struct relay_session_cfg *cfg;
    const struct relay_session_hooks *hooks;
    void *owner;
    struct relay_log *log;
    const char *who;
    enum relay_session_state state;
    bool bridge_refused;  /* the broker refused the bridge bit: connect without it */
    bool rx_paused;       /* the owner paused reading (keepalive / ack timeouts suspended) */
    uint64_t packets_in;  /* packets handled since the session was made (read batching) */
    bool rx_full;         /* held messages at the cap */

    /* receive side */
    uint8_t *rx;          /* unprocessed bytes (a partial packet, or packets deferred) */
    size_t rx_len, rx_cap;
    size_t rx_kept;       /* leading bytes of rx known to be waiting PUBLISHes (rx_full) */

    /* control bytes to send (CONNECT, SUBSCRIBE, acks, PUBREL, PINGREQ, DISCONNECT) */
    uint8_t *ctl;
    size_t ctl_len, ctl_off, ctl_cap;

    /* outgoing PUBLISHes */
    struct relay_msg *pend_head, *pend_tail; /* waiting for window credit, in order */
    struct relay_msg *fl_head, *fl_tail;     /* sent, waiting for PUBACK/PUBREC, in order */
    struct relay_msg **slots;                /* by packet id - 1 (pid <= slots_cap) */
    uint8_t *slot_state;                     /* free / publish / awaiting PUBCOMP */
    uint16_t slots_cap, next_pid;
    struct relay_msg *tx_msg;                /* partly written PUBLISH */
    uint32_t tx_off;
    struct relay_window win;
    struct relay_bucket rate_bytes, rate_msgs;
    uint64_t rate_ready_ms;                  /* pacing: no PUBLISH before this */
    uint64_t retry_ready_ms;                 /* after a "busy" refusal: no PUBLISH before */

    /* incoming QoS 1/2 messages held until their destinations acknowledge */
    struct relay_in_slot *in;                /* receive_maximum slots */
    uint16_t in_cap, in_used;
    uint16_t in_pubrel;                      /* held QoS 2 slots waiting for the broker's PUBREL */
    uint16_t *in_order;                      /* ring of slot indexes in arrival order */
    uint16_t in_head, in_count;
    uint16_t *in_free;                       /* stack of free slot indexes */
    uint16_t in_nfree;

    /* subscriptions in progress */
    const struct relay_sub *subs;
    size_t n_subs;
    size_t sub_next;                         /* next subscription to send */
    uint16_t sub_pending;                    /* SUBACKs still expected */
    uint16_t sub_seq;                        /* rolling index into subq */
    struct {
        size_t first;                        /* its first subscription */
        uint16_t n;                          /* filters in it; 0 = no SUBSCRIBE outstanding */
    } *subq;                                 /* by SUBSCRIBE packet id - base */

    /* what the broker said in CONNACK */
    uint16_t peer_receive_max;
    uint32_t peer_max_packet;
    uint8_t peer_max_qos;
    bool peer_retain;
    bool peer_sub_ids;
    bool peer_shared;
    uint16_t keepalive;                      /* effective (Server Keep Alive wins) */
    bool session_present;

    /* timers */
    uint64_t link_open_ms, last_tx_ms, last_rx_ms, ping_sent_ms, closing_ms;
    bool ping_out;
    bool in_feed;                            /* re-entrancy guard */
    bool over_rm_said;                       /* logged that the broker exceeds our Receive Max */
    uint32_t epoch;                          /* link count, bumps on each close */
    uint16_t *in_map;                        /* packet id -> incoming slot + 1 (65536 entries) */
    char why[160];                           /* why the last link ended, for the owner's log */
};

/* Lifecycle. init keeps cfg/hooks/log/who pointers (they must outlive s). 0 or -ENOMEM. */
int relay_session_init(struct relay_session *s, const struct relay_session_cfg *cfg,
                       const struct relay_session_hooks *hooks, void *owner,
                       struct relay_log *log, const char *who);
/* Frees everything, queued messages included, without calling hooks (the owner is going away
 * too). */
void relay_session_cleanup(struct relay_session *s);

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
size_t relay_session_purge(struct relay_session *s, bool (*pred)(const struct relay_msg *m,
                                                                  void *arg),
                           void *arg);
/* The owner paused / resumed reading the link. */
void relay_session_set_rx_paused(struct relay_session *s, bool paused);
/* Number of outgoing messages sent and not yet acknowledged (PUBACK/PUBREC/PUBCOMP). */
uint32_t relay_session_unacked(const struct relay_session *s);
/* True while progress needs reading this link: acknowledgements of what we sent, or the
 * PUBRELs of held QoS 2 messages. Such a link must not be paused. */
bool relay_session_needs_rx(const struct relay_session *s);
/* Processes packets deferred while the held-message cap was reached. <0 = close. */
int relay_session_resume_rx(struct relay_session *s, uint64_t now_ms);

/* ======================================================================================== */
/* spool.c: store and forward, a crash-safe journal per spooled destination broker           */
/* ======================================================================================== */

/* A spooled destination takes messages into an append-only journal of checksummed records under
 * spool.dir, acknowledges them to their sources once a commit (write + fdatasync, batched: one
 * fsync for many records) made them durable, and hands them back in order for delivery; a record
 * is reclaimed once the destination acknowledged it. Single-threaded: the core calls commit
 * when relay_spool_deadline() says, from its timer. */
struct relay_spool;

/* What durability reports back for each appended record (the source to acknowledge). */
struct relay_spool_ack {
    struct relay_conn *src;   /* NULL: nothing to acknowledge (QoS 0 source) */
    struct relay_in_ref ref;
    uint32_t src_epoch;
};

typedef void (*relay_spool_durable_fn)(void *arg, const struct relay_spool_ack *ack);

struct relay_spool_stats {
    uint64_t bytes;           /* journal bytes held (not yet reclaimed) */
    uint64_t messages;        /* records not yet delivered and acknowledged */
    uint64_t oldest_ms;       /* t_in_ms of the oldest record held (monotonic, like now_ms;
                                 after a restart carried over through the wall clock), 0 = none */
    uint64_t fsyncs;          /* commits done */
    uint64_t write_errors;    /* failed writes / fsyncs (retried) */
};

/* Opens (creating dir with mode 0700 if missing) the journal in dir, bounded by max_size bytes.
 * Recovers what a previous run left: skips a torn or corrupt tail (checksum), logs what it
 * found ("spool edge: recovered 1234 messages (5.1 MiB), dropped a torn record at ...").
 * durable(arg, ack) is called from relay_spool_commit() for each record made durable, in
 * append order. 0, or -errno with a message in err (unwritable directory, ...). */
int relay_spool_open(const char *dir, uint64_t max_size, const char *who, struct relay_log *log,
                     relay_spool_durable_fn durable, void *arg, struct relay_spool **out,
                     char *err, size_t errlen);
/* Commits what is pending, then closes. Records not yet delivered stay for the next run.
 * durable() is not called from here: those sources are never acknowledged and redeliver
 * (duplicates, never loss), and the core may already be tearing down. */
void relay_spool_close(struct relay_spool *sp);

/* Appends a copy of m (its encoded PUBLISH and the fields the session needs: qos, pid_off,
 * expiry, expiry_off, t_in_ms, route) with ack to report once durable. conn is the pool
 * connection the record is for (kept so per-topic order survives a restart). Never blocks on
 * the disk: the record waits in memory until the next commit. 0, or -ENOSPC when the spool is
 * full (the caller must not acknowledge the source: it backpressures instead; full() may stay
 * false when only this message is too big for the room left), -EINVAL when m's offsets do not
 * fit in m->len. */
int relay_spool_append(struct relay_spool *sp, const struct relay_msg *m, uint32_t conn,
                       const struct relay_spool_ack *ack);
/* Writes and fdatasyncs pending records, then calls durable() for each. 0, or -errno after
 * logging (the records stay pending and are retried at the next deadline; nothing is reported
 * durable that is not on disk). */
int relay_spool_commit(struct relay_spool *sp, uint64_t now_ms);
/* When commit should run next (0 = nothing pending). Group commit: a few ms after the first
 * pending append, or at once when much is pending; 1 s apart while the disk fails; also when
 * the delivery watermark is due to be saved (at most every 500 ms). */
uint64_t relay_spool_deadline(const struct relay_spool *sp);

/* The next durable record not yet handed out, for delivery: a malloc'ed relay_msg (spool_seq
 * set, src NULL, next/prev NULL) and *conn its pool connection; NULL when none. The caller
 * hands it to the destination session, and reports relay_spool_delivered() when it is done. */
struct relay_msg *relay_spool_next(struct relay_spool *sp, uint32_t *conn);
/* Record seq was delivered (acknowledged) or dropped for good: it may be reclaimed. Records
 * handed out are kept (and resent after reconnects) by the destination session itself; after a
 * restart every record not reported delivered is handed out again (at least once). */
void relay_spool_delivered(struct relay_spool *sp, uint64_t seq);
/* Full: at max_size (or the disk refuses writes). The core pauses the sources feeding this
 * broker while it is; hysteresis like a window (resumes under 90 %). */
bool relay_spool_full(const struct relay_spool *sp);
void relay_spool_stats(const struct relay_spool *sp, struct relay_spool_stats *st);

/* ======================================================================================== */
/* relay.c / route.c / metrics.c: the running relay                                          */
/* ======================================================================================== */

#define RELAY_LATENCY_BUCKETS 14
extern const double relay_latency_bounds[RELAY_LATENCY_BUCKETS]; /* seconds; +Inf implied */

struct relay_broker;
struct relay;

/* A route as it runs. */
struct relay_route {
    const struct relay_route_config *cfg;
    struct relay *r;
    uint32_t index;
    struct relay_tpl tpl;
    char *sub_filter;               /* what is subscribed on the source */
    const char *match;              /* the filter topics are matched against (share removed) */
    size_t match_len;
    struct relay_broker *from, *to;
    bool props_lost_logged;         /* 5.0 properties lost toward a 3.x destination: said once */
    uint32_t sub_id;                /* MQTT 5 Subscription Identifier: stable across reloads */
    /* routes from one broker with the same subscription share it (a second SUBSCRIBE of a
     * filter would replace the first): the first of them subscribes, with options merged */
    struct relay_route *sub_head;   /* first route of this broker with this sub_filter */
    struct relay_route *sub_next;   /* next one with the same sub_filter */
    /* counters */
    uint64_t received, forwarded;
    uint64_t dropped[RELAY_DROP__COUNT];
};

enum relay_conn_state { RELAY_CONN_IDLE = 0, RELAY_CONN_CONNECTING, RELAY_CONN_OPEN,
                        RELAY_CONN_WAIT };

struct relay_conn {
    struct relay *r;
    struct relay_broker *b;
    uint32_t idx;
    char who[96];                   /* "broker#idx" */
    char *client_id;                /* up to 65535 bytes, as the configuration allows */
    struct relay_session_cfg scfg;
    struct relay_session s;
    struct relay_sub *subs;         /* what this connection subscribes */
    size_t n_subs;
    void *link;                     /* the transport's */
    enum relay_conn_state st;
    uint64_t retry_at;
    uint32_t backoff_ms;
    uint64_t up_since;              /* CONNACK time of the current link, 0 = not up */
    size_t url_idx;
    uint32_t failures;              /* consecutive failed attempts */
    bool rx_paused;                 /* what we asked the transport */
    bool write_asked;
    bool dirty;
    bool close_asked;
    bool restart_now;               /* reconnect at once when the link closes (reload) */
    const char *restart_why;        /* a static text for the log */
    /* failover: while up on a fallback URL, a probe connection tries the first one */
    bool is_probe;                  /* this is such a probe (no session, never up) */
    struct relay_conn *owner;       /* the probe's connection */
    struct relay_conn *probe;       /* this connection's probe, allocated when first needed */
    uint64_t probe_at;              /* next probe, 0 = none */
    /* counters */
    uint64_t reconnects, bytes_sent, bytes_received;
};

struct relay_broker {
    const struct relay_broker_config *cfg;
    struct relay *r;
    uint32_t index;
    struct relay_conn *conns;
    uint32_t n_conns;
    uint32_t n_over;                /* connections whose window is over the high mark */
    struct relay_route **from;      /* routes reading from this broker */
    size_t n_from;
    struct relay_broker **feeds;    /* brokers this one's routes write to (distinct) */
    size_t n_feeds;
    struct relay_tree *tree;        /* the routes in from, by filter */
    struct relay_spool *spool;      /* store and forward, NULL = none */
    char spool_who[96];             /* "spool <name>" */
    bool spool_full;                /* last relay_spool_full(): sources feeding it pause */
    /* messages taken while the spool was full: appended, in order, as room frees up (bounded:
     * the sources feeding this broker are paused meanwhile) */
    struct relay_msg *spool_wait_head, *spool_wait_tail;
    uint64_t spool_wait_bytes;
    struct relay_msg *spool_next;   /* taken from the spool, its connection had no room yet */
    uint32_t spool_next_conn;
    /* routes into this broker by relay_route_key(), sorted: spooled records name their route
     * by key, which survives reloads and restarts */
    struct {
        uint32_t key;
        uint32_t index;
    } *to_keys;
    size_t n_to_keys;
};

struct relay {
    const struct relay_config *cfg;
    struct relay_log *log;
    const struct relay_io *io;
    struct relay_broker *brokers;
    size_t n_brokers;
    struct relay_route *routes;
    size_t n_routes;
    struct relay_route **by_sub_id; /* Subscription Identifier -> route (NULL = none) */
    uint32_t n_by_sub_id, next_sub_id;
    uint8_t *scratch;               /* topic + properties of the message being built */
    size_t scratch_cap;
    /* freed message buffers of two sizes, reused: no malloc/free per forwarded message */
    struct relay_msg *msg_cache[2];
    uint32_t msg_cached[2];
    struct relay_conn **dirty;      /* connections to sync with the transport */
    size_t n_dirty, dirty_cap;
    uint64_t rng;
    uint64_t next_wake;
    bool stopping;
    uint64_t stop_deadline;
    bool finished;
    uint64_t now_ms;                /* the time of the entry point running (spool callbacks) */
    /* counters */
    uint64_t latency_count;
    uint64_t latency_sum_ms;
    uint64_t batch_waits, batch_wait_us; /* read batching (transport): waits, and their sum */
    uint64_t latency_buckets[RELAY_LATENCY_BUCKETS]; /* per bucket; cumulated when rendered */
};

/* Builds the running relay from cfg (kept by pointer: it must outlive r). 0, or -ENOMEM /
 * -EINVAL with a message in err. */
int relay_new(const struct relay_config *cfg, struct relay_log *log, const struct relay_io *io,
              struct relay **out, char *err, size_t errlen);
void relay_free(struct relay *r);
/* Starts connecting every connection. */
void relay_start(struct relay *r, uint64_t now_ms);
/* SIGINT/SIGTERM: stop taking messages, wait up to drain_timeout for acknowledgements, send
 * DISCONNECT, close. relay_finished() turns true when every link is closed. */
void relay_stop(struct relay *r, uint64_t now_ms);
bool relay_finished(const struct relay *r);
/* Sync every touched connection with the transport (write interest, rx pause, timer). Called
 * at the end of every core entry point; idempotent. */
void relay_flush(struct relay *r, uint64_t now_ms);
void relay_mark(struct relay_conn *c);

/* route.c: forwards one received PUBLISH along the routes from src. Returns the number of
 * messages queued that will report back (relay_session_hooks.publish's contract). */
int relay_route_forward(struct relay *r, struct relay_conn *src, const struct mqc_publish *p,
                        struct relay_in_ref ref, uint64_t now_ms);
/* relay.c, shared with reload.c: a connection's session settings and subscriptions from its
 * broker's configuration and routes; its setup; starting a connect; the routes' indexes
 * (from, feeds, by_sub_id). */
void relay_conn_fill_scfg(struct relay_conn *c);
int relay_conn_subs(const struct relay_conn *c, struct relay_sub **out, size_t *n_out);
int relay_conn_init(struct relay *r, struct relay_broker *b, uint32_t idx);
void relay_conn_connect(struct relay_conn *c, uint64_t now_ms);
int relay_link_routes(struct relay *r);
int relay_broker_open_spool(struct relay *r, struct relay_broker *b, char *err, size_t errlen);
/* Closes c's link to reconnect at once (why: logged then): DISCONNECT first when it is up. */
void relay_conn_restart(struct relay_conn *c, const char *why, uint64_t now_ms);

/* tree.c: routes by filter, matched in the topic's depth (not the number of routes). */
struct relay_tree;
typedef int (*relay_tree_fn)(struct relay_route *rt, void *arg);
int relay_tree_add(struct relay_tree **root, struct relay_route *rt); /* by rt->match */
void relay_tree_free(struct relay_tree *t);
/* Calls fn for each route whose filter matches topic (a leading '+' or '#' not matching a
 * '$' topic), at most once each; stops at and returns fn's first nonzero result. */
int relay_tree_match(const struct relay_tree *t, const uint8_t *topic, size_t len,
                     relay_tree_fn fn, void *arg);

/* A route's identity in spooled records: a hash of its name (stable across reloads and
 * restarts as long as the name is). */
uint32_t relay_route_key(const struct relay_route *rt);
/* Appends m to b's spool, or to its wait list when the spool is full (m stays owned by the
 * wait list then); 0, or -EFBIG when m can never fit (the caller drops it). */
int relay_spool_put(struct relay_broker *b, struct relay_msg *m);

/* relay.c: re-reads whether b's spool is full; pauses / resumes its sources on a change. */
void relay_spool_check(struct relay_broker *b);

/* Builds the runtime routes of cfg over brokers (indexed like cfg->brokers): 0, -EINVAL with
 * err (a template), -ENOMEM. Sub ids are left 0 for the caller to assign. */
int relay_routes_build(struct relay *r, struct relay_broker *brokers,
                       const struct relay_config *cfg, struct relay_route **out, size_t *n_out,
                       char *err, size_t errlen);
void relay_routes_free(struct relay_route *routes, size_t n);
/* Sizes r's scratch buffer for cfg's largest packet. */
int relay_scratch_init(struct relay *r, const struct relay_config *cfg);

/* Applies a new configuration (SIGHUP). Routes are compared by what they do: unchanged ones
 * keep their counters and subscriptions; removed ones are unsubscribed, new ones subscribed on
 * the live connections; brokers whose connection settings changed reconnect with the new ones
 * (their queued messages kept); new brokers connect. A change that needs a restart (a broker
 * removed, its version, connections, receive_maximum or spool changed, relay.id or metrics
 * changed) is refused: -EINVAL with err, nothing changed. On 0, r uses ncfg (the caller frees
 * the old configuration after the call, and keeps ncfg alive). */
int relay_reload(struct relay *r, const struct relay_config *ncfg, uint64_t now_ms, char *err,
                 size_t errlen);

/* A message with room for size bytes of packet, its header zeroed: from a free list for the
 * common sizes. NULL when out of memory. relay_msg_free() puts it back (or frees it); plain
 * free() is also correct for any message. */
struct relay_msg *relay_msg_alloc(struct relay *r, size_t size);
void relay_msg_free(struct relay *r, struct relay_msg *m);

/* metrics.c: the Prometheus text of /metrics into a malloc'ed buffer. */
int relay_metrics_render(const struct relay *r, char **body, size_t *len);
/* true when every broker has at least one connection up (/healthz) */
bool relay_healthy(const struct relay *r);
void relay_latency_observe(struct relay *r, uint64_t ms);

/* ======================================================================================== */
/* log.c: one line per event on stderr                                                      */
/* ======================================================================================== */

/* "2026-11-24T19:50:01.123Z WARN  bifromq#2: message". who may be NULL ("relay"). */
struct relay_log {
    enum relay_log_level level;
    /* rate limiting of repeated warnings: a small table of (key, window start, count) */
    struct {
        uint64_t key;
        uint64_t window_start_ms;
        uint32_t count;
    } rl[32];
};

void relay_log_init(struct relay_log *lg, enum relay_log_level level);
bool relay_log_enabled(const struct relay_log *lg, enum relay_log_level level);
void relay_log(struct relay_log *lg, enum relay_log_level level, const char *who, const char *fmt,
               ...) __attribute__((format(printf, 4, 5)));
void relay_logv(struct relay_log *lg, enum relay_log_level level, const char *who, const char *fmt,
                va_list ap);
/* Like relay_log, but at most a few lines per 10 s per (who, fmt) pair; the next line after a
 * suppressed burst says how many were suppressed. */
void relay_log_limited(struct relay_log *lg, uint64_t now_ms, enum relay_log_level level,
                       const char *who, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Formats a line with level text (used for libwebsockets' own lines, which have no context). */
void relay_log_raw(enum relay_log_level level, const char *who, const char *msg);

/* ======================================================================================== */
/* The transport boundary                                                                   */
/* ======================================================================================== */

struct relay_conn; /* one MQTT client connection to a broker (relay.c) */

/* Where to connect: the URL and its TLS settings, and the protocol version for the WebSocket
 * subprotocol ("mqtt", or "mqttv3.1" for 3.1). */
struct relay_endpoint {
    const struct relay_url *url;
    const struct relay_tls_config *tls; /* used for mqtts/wss */
    uint8_t version;
    const char *who; /* "broker#conn" for log lines */
};

/* What the core needs from the transport. transport_lws.c implements it over libwebsockets;
 * test/unit/fake_io.c implements it in memory. All calls are made from the event loop thread.
 *
 * connect: start connecting c to ep. 0 = started: exactly one of relay_core_on_open() or
 *   relay_core_on_close() follows later (never from inside this call). <0 = failed at once,
 *   no callback will follow (libuv's rule).
 * want_write: call relay_core_on_writeable() for c when the socket can take bytes.
 * pause_rx: stop (true) or resume (false) reading c's socket.
 * close: close c's link; relay_core_on_close() follows (asynchronously).
 * wake_at: make sure relay_core_tick() is called at or soon after at_ms (monotonic ms). */
struct relay_io {
    void *ctx;
    int (*connect)(void *ctx, struct relay_conn *c, const struct relay_endpoint *ep);
    void (*want_write)(void *ctx, struct relay_conn *c);
    void (*pause_rx)(void *ctx, struct relay_conn *c, bool pause);
    void (*close)(void *ctx, struct relay_conn *c);
    void (*wake_at)(void *ctx, uint64_t at_ms);
};

/* What the transport calls in the core (implemented in relay.c).
 *
 * on_open: the link of c is connected (TCP, TLS and WebSocket handshakes done).
 * on_rx: bytes arrived; <0 means close the link (the core already logged why and queued a
 *   DISCONNECT when it could: call on_writeable once more before closing if you can).
 * on_writeable: fill out[0..cap) with the next bytes to send (*len, may be 0). Returns 0, or <0
 *   to close. The transport writes exactly those bytes, then asks again on the next writeable
 *   event if relay_core_wants_write() says so.
 * on_close: the link is gone (closed by either side, or the connect failed); why is a short
 *   human text ("connection refused", "TLS: certificate verify failed: unknown CA", ...). */
void relay_core_on_open(struct relay_conn *c, uint64_t now_ms);
int relay_core_on_rx(struct relay_conn *c, const uint8_t *in, size_t n, uint64_t now_ms);
int relay_core_on_writeable(struct relay_conn *c, uint8_t *out, size_t cap, size_t *len,
                            uint64_t now_ms);
bool relay_core_wants_write(const struct relay_conn *c);
/* Packets received on c so far (a counter: the transport takes differences). */
uint64_t relay_core_rx_packets(const struct relay_conn *c);
/* The transport waited us microseconds to batch reads (counted in /metrics). */
void relay_core_batch_waited(void *core, uint32_t us);
void relay_core_on_close(struct relay_conn *c, const char *why, uint64_t now_ms);
void relay_core_tick(void *core, uint64_t now_ms);

/* The transport keeps one pointer per connection for itself. */
void *relay_conn_link(const struct relay_conn *c);
void relay_conn_set_link(struct relay_conn *c, void *link);
const char *relay_conn_who(const struct relay_conn *c);

/* Metrics over HTTP (served by the transport on the same event loop). The core renders the
 * body: for "/metrics" the Prometheus text; for "/healthz" "ok"/"unavailable". Returns the HTTP
 * status (200, 404, 503) and a malloc'ed body the transport frees. */
int relay_core_http(void *core, const char *path, char **body, size_t *body_len,
                    const char **content_type);

/* transport_lws.c */
struct relay_transport;
struct relay_transport_opts {
    void *core;                  /* passed back to relay_core_tick() / relay_core_http() */
    const char *metrics_host;    /* NULL = no HTTP listener */
    uint16_t metrics_port;
    enum relay_log_level log_level; /* libwebsockets' lines are shown through relay_log_raw */
    uint32_t batch_wait_us;         /* read batching: the longest wait under load; 0 = off */
};
/* 0 and *out, or -errno with a message in err (e.g. the metrics port cannot be bound:
 * -EADDRINUSE). */
int relay_transport_new(const struct relay_transport_opts *o, struct relay_transport **out,
                        char *err, size_t errlen);
void relay_transport_free(struct relay_transport *t);
/* The core is created after the transport (it needs the io table): this sets the pointer passed
 * to relay_core_tick() / relay_core_http(), replacing opts->core. */
void relay_transport_set_core(struct relay_transport *t, void *core);
/* The io table for the core; valid as long as t. */
const struct relay_io *relay_transport_io(struct relay_transport *t);
/* Runs the event loop once (waits at most timeout_ms); returns <0 on a fatal error. */
int relay_transport_service(struct relay_transport *t, int timeout_ms);
/* Read batching's longest wait (relay.batch_wait_us), e.g. after a reload; 0 = off. */
void relay_transport_set_batch_wait(struct relay_transport *t, uint32_t us);
/* Wakes a blocked relay_transport_service() from a signal handler (async-signal-safe). */
void relay_transport_cancel(struct relay_transport *t);
/* Monotonic milliseconds (the one clock the core is given). */
uint64_t relay_now_ms(void);

#endif /* RELAY_H */
