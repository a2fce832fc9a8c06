/*
 * internal.h: the running relay's state and what the core's files share.
 *
 *   relay.c     the relay object: build, start, the scheduling of every entry point, drain, free
 *   broker.c    one broker: its constructor (start-up and reload alike), its pool of connections
 *   routes.c    the routes as they run: built from the configuration, indexed by source broker
 *   conn.c      the life of one connection: connect, backoff, failover, sync, close
 *   forward.c   the life of one message: PUBLISH in, match, map, enqueue or spool, delivered
 *   spoolfeed.c store and forward: into the journal, acknowledged once durable, fed back out
 *   reload.c    SIGHUP
 *   metrics.c   /metrics and /healthz
 *   status.c    /api/v1/status: the status as JSON
 *   history.c   the last minute, one value per second (routes' rates, spools' sizes)
 *   http.c      what the HTTP listener serves, and who may reload
 *   batch.c     the read-batching policy (pure; the transport measures and applies it)
 *
 * Nothing outside core/ includes this header (the core's own unit tests may).
 */
#ifndef RELAY_CORE_INTERNAL_H
#define RELAY_CORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/config.h"
#include "core/history.h"
#include "core/io.h"
#include "core/relay.h"
#include "route/template.h"
#include "route/tree.h"
#include "session/session.h"
#include "store/spool.h"
#include "util/log.h"
#include "util/msg.h"

#define RELAY_LATENCY_BUCKETS 14
extern const double relay_latency_bounds[RELAY_LATENCY_BUCKETS]; /* seconds; +Inf implied */

struct relay_broker;

/* What a route counts, and what else of it survives a reload: copied whole. */
struct relay_route_stats {
    uint64_t received, forwarded;
    uint64_t dropped[RELAY_DROP__COUNT];
    bool props_lost_logged; /* 5.0 properties lost toward a 3.x destination: said once */
    struct relay_hist rate_in, rate_out; /* received, forwarded: per second */
};

/* A route as it runs. */
struct relay_route {
    const struct relay_route_config *cfg;
    uint32_t index;
    struct relay_tpl tpl;
    char *sub_filter;  /* what is subscribed on the source */
    const char *match; /* the filter topics are matched against (share removed) */
    size_t match_len;
    struct relay_broker *from, *to;
    uint32_t sub_id; /* MQTT 5 Subscription Identifier: stable across reloads */
    /* routes from one broker with the same subscription share it (a second SUBSCRIBE of a
     * filter would replace the first): the first of them subscribes, with options merged */
    struct relay_route *sub_head; /* first route of this broker with this sub_filter */
    struct relay_route *sub_next; /* next one with the same sub_filter */
    struct relay_route_stats stats;
};

enum relay_conn_state {
    RELAY_CONN_IDLE = 0,
    RELAY_CONN_CONNECTING,
    RELAY_CONN_OPEN,
    RELAY_CONN_WAIT
};

/* A connection's state as the status API names it: the link's and the session's together.
 * UP and SUBSCRIBING are exactly relay_conn_up() (CONNACK received, not closing). */
enum relay_conn_view {
    RELAY_CV_IDLE = 0,    /* not connecting (shutting down) */
    RELAY_CV_CONNECTING,  /* TCP/TLS/WebSocket, then CONNECT sent and no CONNACK yet */
    RELAY_CV_SUBSCRIBING, /* CONNACK in, SUBACKs awaited */
    RELAY_CV_UP,          /* publishing */
    RELAY_CV_CLOSING,     /* DISCONNECT queued, or the link asked to close */
    RELAY_CV_WAITING,     /* down, reconnecting at retry_at */
};

/* What a connection counts (it lives as long as its broker: reloads keep it). */
struct relay_conn_stats {
    uint64_t reconnects, bytes_sent, bytes_received;
};

/* One MQTT client connection to a broker, with its session. */
struct relay_conn {
    struct relay *r;
    struct relay_broker *b;
    uint32_t idx;
    char who[96];    /* "broker#idx" */
    char *client_id; /* up to 65535 bytes, as the configuration allows */
    struct relay_session_cfg scfg;
    struct relay_session *s;
    struct relay_sub *subs; /* what this connection subscribes */
    size_t n_subs;
    void *link; /* the transport's */
    enum relay_conn_state st;
    uint64_t retry_at;
    uint32_t backoff_ms;
    uint64_t up_since; /* CONNACK time of the current link, 0 = not up */
    size_t url_idx;
    uint32_t failures; /* consecutive failed attempts */
    bool rx_paused;    /* what we asked the transport */
    bool write_asked;
    bool dirty;
    bool close_asked;
    bool restart_now;        /* reconnect at once when the link closes (reload) */
    const char *restart_why; /* a static text for the log */
    /* failover: while up on a fallback URL, a probe connection tries the first one */
    bool is_probe;            /* this is such a probe (no session, never up) */
    struct relay_conn *owner; /* the probe's connection */
    struct relay_conn *probe; /* this connection's probe, allocated when first needed */
    uint64_t probe_at;        /* next probe, 0 = none */
    struct relay_conn_stats stats;
    /* for the status API */
    enum relay_conn_view view; /* as last seen by relay_conn_track() */
    bool view_known;
    uint64_t state_since;   /* when view began */
    uint64_t last_error_ms; /* 0 = no error yet */
    char last_error[256];   /* why the last link failed, or what the broker refused */
    /* the pace of what we publish here: rate_limit and what the broker's signals taught it; it
     * outlives the links (the session reads and updates it, session/rate.h) */
    struct relay_pace pace;
    uint32_t pace_quick; /* immediate reconnects after pace signals in a row */
};

/* A spooled destination broker (spoolfeed.c). */
struct relay_feed {
    struct relay_spool *spool; /* NULL = not open (not spooled, or "auto" not needed yet) */
    char who[96];              /* "spool <name>" */
    bool spooling;             /* new messages go into the spool (always with an explicit one) */
    /* spool = "auto" (autospool.c): spooled while the round trip makes end-to-end
     * acknowledgement the bound, back to direct once the spool has nothing left to hand out */
    bool auto_mode;
    bool rtt_high;     /* the round trip is over the threshold (hysteresis) */
    bool rtt_said;     /* a round trip was told at least once (its first log line) */
    bool auto_failed;  /* the spool could not be opened: direct, said once */
    bool src_rtt_high; /* as a source: its window over this round trip was said */
    uint32_t rtt_ms;   /* the broker's base round trip (the highest of its connections) */
    bool full;         /* last relay_spool_full(): sources feeding it pause */
    /* messages taken while the spool was full: appended, in order, as room frees up (bounded:
     * the sources feeding this broker are paused meanwhile) */
    struct relay_msg *wait_head, *wait_tail;
    uint64_t wait_bytes;
    struct relay_msg *next; /* taken from the spool, its connection had no room yet */
    struct relay_hist hist; /* messages held, per second (a gauge, sampled by the tick) */
    uint32_t next_conn;
    /* routes into this broker by relay_route_key(), sorted: spooled records name their route
     * by key, which survives reloads and restarts */
    struct {
        uint32_t key;
        uint32_t index;
    } * to_keys;
    size_t n_to_keys;
};

/* What the transport reported about a broker's links (netstats.c): name lookups, TLS
 * handshakes, the client certificate's expiry. Kept across reloads with the broker. */
#define RELAY_DNS_BUCKETS 11
extern const double relay_dns_bounds[RELAY_DNS_BUCKETS]; /* seconds; +Inf implied */
struct relay_net_stats {
    uint64_t dns_lookups, dns_failures, dns_sum_ms;
    uint64_t dns_buckets[RELAY_DNS_BUCKETS]; /* per bucket; cumulated when rendered */
    uint64_t tls_full, tls_resumed;
    int64_t cert_not_after;  /* Unix seconds; 0 = no client certificate seen */
    uint64_t cert_warned_ms; /* when the expiry was last warned about (monotonic), 0 = never */
    int64_t cert_warned_for; /* ... for which certificate (its not_after) */
};

struct relay_broker {
    const struct relay_broker_config *cfg;
    struct relay *r;
    uint32_t index;
    struct relay_conn *conns;
    uint32_t n_conns;
    uint32_t n_over;           /* connections whose window is over the high mark */
    struct relay_route **from; /* routes reading from this broker */
    size_t n_from;
    struct relay_broker **feeds; /* brokers this one's routes write to (distinct) */
    size_t n_feeds;
    struct relay_tree *tree; /* the routes in from, by filter */
    bool bridge_off;         /* bridge_bit "auto": the broker refused the bit; for good */
    struct relay_feed feed;  /* store and forward */
    struct relay_net_stats net;
};

struct relay_stats {
    uint64_t latency_count;
    uint64_t latency_sum_ms;
    uint64_t latency_buckets[RELAY_LATENCY_BUCKETS]; /* per bucket; cumulated when rendered */
    uint64_t batch_waits, batch_wait_us; /* read batching (transport): waits, and their sum */
};

/* Reloads asked for (SIGHUP, POST /-/reload), for the status API. */
struct relay_reload_info {
    uint64_t count; /* attempts */
    uint64_t at_ms; /* the last one's time, 0 = none yet */
    bool ok;        /* the last one's outcome */
    char msg[600];  /* ... and its message */
};

struct relay {
    const struct relay_config *cfg;
    struct relay_log *log;
    const struct relay_io *io;
    struct relay_broker *brokers;
    size_t n_brokers;
    struct relay_conn **conns; /* every broker's connections, in order: one loop visits all */
    size_t n_conns;
    struct relay_route *routes;
    size_t n_routes;
    struct relay_route **by_sub_id; /* Subscription Identifier -> route (NULL = none) */
    uint32_t n_by_sub_id, next_sub_id;
    uint8_t *scratch; /* topic + properties of the message being built */
    size_t scratch_cap;
    struct relay_msg_pool pool;
    struct relay_conn **dirty; /* connections to sync with the transport */
    size_t n_dirty, dirty_cap;
    uint64_t rng;
    uint64_t next_wake;
    bool stopping;
    uint64_t stop_deadline;
    bool finished;
    uint64_t now_ms;        /* the time of the entry point running (spool callbacks) */
    int64_t wall_offset_ms; /* wall clock - now_ms (spooled records carry wall times) */
    struct relay_stats stats;
    struct relay_hooks hooks;
    uint64_t started_ms; /* relay_new() */
    struct relay_reload_info reloads;
};

/* ---- relay.c ------------------------------------------------------------------------------ */

/* Sync every touched connection with the transport (write interest, rx pause, timer). Called
 * at the end of every core entry point; idempotent. */
void relay_flush(struct relay *r, uint64_t now_ms);
/* c needs syncing at the next flush. */
void relay_mark(struct relay_conn *c);
/* Every connection of every broker feeding b re-decides whether to read. */
void relay_mark_feeders(struct relay *r, const struct relay_broker *b);
/* A jitter value (xorshift64*, seeded by main). */
uint32_t relay_rand(struct relay *r);
/* Rebuilds r->conns after r->brokers changed. 0 or -ENOMEM. */
int relay_index_conns(struct relay *r);

/* ---- broker.c ----------------------------------------------------------------------------- */

/* The one constructor of a broker, for start-up and reload alike: its pool of connections (not
 * yet initialised: relay_broker_init_conns() does it once the routes are linked) and its spool.
 * 0, or -errno with err. */
int relay_broker_init(struct relay *r, struct relay_broker *b,
                      const struct relay_broker_config *cfg, uint32_t index, char *err,
                      size_t errlen);
/* Each connection's session and subscriptions. 0 or -ENOMEM. */
int relay_broker_init_conns(struct relay_broker *b);
void relay_broker_cleanup(struct relay_broker *b, uint64_t now_ms);
/* At least one connection up (CONNACK received, not closing). */
bool relay_broker_up(const struct relay_broker *b);

/* ---- routes.c ----------------------------------------------------------------------------- */

/* Builds the runtime routes of cfg over brokers (indexed like cfg->brokers): 0, -EINVAL with
 * err (a template), -ENOMEM. Sub ids are left 0 for the caller to assign. */
int relay_routes_build(struct relay_broker *brokers, const struct relay_config *cfg,
                       struct relay_route **out, size_t *n_out, char *err, size_t errlen);
void relay_routes_free(struct relay_route *routes, size_t n);
/* The routes' indexes: each broker's from, feeds, tree and to_keys; r->by_sub_id. */
int relay_routes_link(struct relay *r);
/* What connection c subscribes, from the routes reading from its broker. 0 or -ENOMEM. */
int relay_routes_subs(const struct relay_conn *c, struct relay_sub **out, size_t *n_out);
/* Sizes r's scratch buffer for cfg's largest packet. */
int relay_scratch_init(struct relay *r, const struct relay_config *cfg);

/* ---- conn.c ------------------------------------------------------------------------------- */

int relay_conn_init(struct relay *r, struct relay_broker *b, uint32_t idx);
void relay_conn_cleanup(struct relay_conn *c);
/* A connection's session settings from its broker's configuration. */
void relay_conn_fill_scfg(struct relay_conn *c);
void relay_conn_connect(struct relay_conn *c, uint64_t now_ms);
/* Closes c's link to reconnect at once (why: logged then): DISCONNECT first when it is up. */
void relay_conn_restart(struct relay_conn *c, const char *why, uint64_t now_ms);
/* Asks the transport to close the link (on_close follows). */
void relay_conn_close(struct relay_conn *c);
/* Tells the transport what c wants now (read or pause, write interest, close). */
void relay_conn_sync(struct relay_conn *c, uint64_t now_ms);
/* Timers: reconnect when due, the session's timers, failover probes. */
void relay_conn_tick(struct relay_conn *c, uint64_t now_ms);
/* When c next needs a tick (0 = none). */
uint64_t relay_conn_deadline(const struct relay_conn *c);
/* Shutdown: stop connecting, say "offline" on the status topic. */
void relay_conn_stop(struct relay_conn *c, uint64_t now_ms);
/* Queues a retained QoS 1 status message ("online" / "offline"), reporting to nobody. */
void relay_conn_publish_status(struct relay_conn *c, const char *text, uint64_t now_ms);
/* Up: CONNACK received and not closing. */
bool relay_conn_up(const struct relay_conn *c);
/* Its state for the status API, and noting when it changed (relay_flush, every entry point). */
enum relay_conn_view relay_conn_view(const struct relay_conn *c);
void relay_conn_track(struct relay_conn *c, uint64_t now_ms);

/* ---- forward.c ---------------------------------------------------------------------------- */

/* The session hooks of the message path (relay_session_hooks.publish / .done). */
int relay_forward(struct relay_session *s, const struct mqc_publish *p, struct relay_in_ref ref,
                  uint64_t now_ms);
void relay_forward_done(struct relay_session *s, struct relay_msg *m, int drop, uint64_t now_ms);
/* A message route rt did not forward: counted by reason, and logged (rate-limited) unless the
 * loop guard dropped it. */
void relay_route_drop(struct relay *r, struct relay_route *rt, enum relay_drop why, uint64_t now_ms,
                      const struct mqc_publish *p);
/* A route's identity in spooled records: a hash of its name (stable across reloads and
 * restarts as long as the name is). */
uint32_t relay_route_key(const struct relay_route *rt);

/* ---- spoolfeed.c -------------------------------------------------------------------------- */

/* Opens / closes b's spool when it has one. */
int relay_feed_open(struct relay *r, struct relay_broker *b, char *err, size_t errlen);
void relay_feed_close(struct relay_broker *b, uint64_t now_ms);
/* Takes m (for pool connection m->conn) into b's spool. Returns what relay_forward() counts
 * for it: 1 when its source is acknowledged later (once durable), 0 when it was dropped or
 * needs no acknowledgement. */
int relay_feed_put(struct relay *r, struct relay_route *rt, struct relay_msg *m,
                   const struct mqc_publish *p, uint64_t now_ms);
/* Record seq of b's spool was delivered or dropped for good. */
void relay_feed_delivered(struct relay_broker *b, uint64_t seq, uint64_t now_ms);
/* Commits when due (always when force), feeds delivery, takes what waited: every spool. */
void relay_feed_run(struct relay *r, uint64_t now_ms, bool force);
/* When the spools next need relay_feed_run() (0 = none). */
uint64_t relay_feed_deadline(const struct relay *r);
/* Forgets waiting messages from src's earlier links (its broker redelivers them). */
size_t relay_feed_purge_orphans(struct relay_broker *b, const struct relay_conn *src);
/* The routes into b by key (after relay_routes_link()). 0 or -ENOMEM. */
int relay_feed_index_routes(struct relay *r, struct relay_broker *b);
/* Opens b's spool now (spool = "auto": when first needed). 0, or -errno with err. */
int relay_feed_open_spool(struct relay *r, struct relay_broker *b, char *err, size_t errlen);
/* Nothing waits to be handed out by b's spool (its journal, the wait list, the one kept aside). */
bool relay_feed_empty(const struct relay_broker *b);

/* ---- autospool.c -------------------------------------------------------------------------- */

/* The session's rtt hook: connection c's base round trip changed. */
void relay_autospool_rtt(struct relay_session *s, uint32_t base_ms, uint64_t now_ms);
/* At start: a spool = "auto" broker with records left by an earlier run delivers them first. */
void relay_autospool_start(struct relay *r, struct relay_broker *b);
/* From relay_feed_run(): back to end-to-end acknowledgement once the spool is empty. */
void relay_autospool_check(struct relay *r, struct relay_broker *b, uint64_t now_ms);
/* At start: one WARN when spool = "auto" is off for want of a state directory. */
void relay_autospool_check_state_dir(struct relay *r);
/* The per-topic rate a window of w messages allows over rtt_ms (msg/s; 0 when rtt_ms is 0). */
uint64_t relay_window_rate(uint32_t w, uint32_t rtt_ms);

/* ---- netstats.c -------------------------------------------------------------------------- */

/* The certificate expiry warnings due now (from the tick). */
void relay_netstats_tick(struct relay *r, uint64_t now_ms);
/* Warns once at start about a broker writing TLS session keys (tls.keylog_file). */
void relay_netstats_start(struct relay *r);
/* /metrics: the DNS, TLS handshake and certificate expiry series. */
void relay_netstats_render(FILE *f, const struct relay *r, uint64_t now_ms);

/* ---- metrics.c ---------------------------------------------------------------------------- */

/* The Prometheus text of /metrics into a malloc'ed buffer. 0 or -ENOMEM. */
int relay_metrics_render(const struct relay *r, uint64_t now_ms, char **body, size_t *len);
/* true when every broker has at least one connection up (/healthz) */
bool relay_healthy(const struct relay *r);
void relay_latency_observe(struct relay *r, uint64_t ms);

/* ---- status.c ----------------------------------------------------------------------------- */

/* The JSON of GET /api/v1/status into a malloc'ed buffer. 0 or -ENOMEM. */
int relay_status_render(const struct relay *r, uint64_t now_ms, char **body, size_t *len);
/* Samples what the histories keep as gauges (the spools' sizes): every tick, and the tick comes
 * at least once a second while there is a spool and a listener to show it. */
void relay_status_sample(struct relay *r, uint64_t now_ms);
/* When the next sample is due (0 = none: no spool, or no HTTP listener to show it). */
uint64_t relay_status_deadline(const struct relay *r);

#endif
