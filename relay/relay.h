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
};
/* 0 and *out, or -errno with a message in err (e.g. the metrics port cannot be bound:
 * -EADDRINUSE). */
int relay_transport_new(const struct relay_transport_opts *o, struct relay_transport **out,
                        char *err, size_t errlen);
void relay_transport_free(struct relay_transport *t);
/* The io table for the core; valid as long as t. */
const struct relay_io *relay_transport_io(struct relay_transport *t);
/* Runs the event loop once (waits at most timeout_ms); returns <0 on a fatal error. */
int relay_transport_service(struct relay_transport *t, int timeout_ms);
/* Wakes a blocked relay_transport_service() from a signal handler (async-signal-safe). */
void relay_transport_cancel(struct relay_transport *t);
/* Monotonic milliseconds (the one clock the core is given). */
uint64_t relay_now_ms(void);

#endif /* RELAY_H */
