/*
 * config.h: the configuration as plain data (SPEC.md, Configuration): what conf/ fills from the
 * file and the core runs. No libconfig here: conf/ is the only folder that includes it.
 */
#ifndef RELAY_CORE_CONFIG_H
#define RELAY_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqttcodec.h"
#include "util/log.h"

#define RELAY_BATCH_WAIT_US 300u /* relay.batch_wait_us default */

enum relay_scheme { RELAY_MQTT = 0, RELAY_MQTTS, RELAY_WS, RELAY_WSS };

struct relay_url {
    enum relay_scheme scheme;
    char *text;    /* the URL as written */
    char *host;    /* without brackets for IPv6 literals */
    uint16_t port; /* default 1883, 8883, 80, 443 by scheme */
    char *path;    /* ws/wss: from the URL, default "/mqtt"; NULL for mqtt/mqtts */
    bool direct;   /* relay.no_proxy names this host: no proxy even when the broker has one */
};

#define RELAY_TLS_1_2 0x0303 /* tls.min_version "1.2" (default) */
#define RELAY_TLS_1_3 0x0304 /* tls.min_version "1.3" */

struct relay_tls_config {
    char *ca_file;   /* resolved path, NULL = the system trust store */
    char *cert_file; /* NULL = no client certificate */
    char *key_file;
    bool verify;          /* default true */
    char *server_name;    /* NULL = the URL host */
    char **alpn;          /* ALPN protocol names offered, in order; NULL = none (wss: http/1.1) */
    size_t n_alpn;        /*   at most RELAY_ALPN_MAX */
    char *ciphers;        /* TLS 1.2 cipher list (OpenSSL syntax); NULL = OpenSSL's default */
    char *ciphersuites;   /* TLS 1.3 suites (OpenSSL syntax); NULL = OpenSSL's default */
    uint16_t min_version; /* RELAY_TLS_1_2 (default) or RELAY_TLS_1_3 */
    char *keylog_file;    /* resolved path: session secrets in SSLKEYLOGFILE format; NULL = off */
    /* What ca_file, cert_file and key_file held when the configuration was loaded (a hash of
     * their bytes): a reload reconnects a broker whose files changed in content, not only in
     * path. 0 when the broker has no TLS files. */
    uint64_t files_sum;
};
#define RELAY_ALPN_MAX 16

/* How a broker's links reach it: directly, or through a proxy (HTTP CONNECT, or SOCKS5 with
 * the broker's host name resolved by the proxy). The password is a secret: never in the log,
 * --check or /metrics. */
enum relay_proxy_kind { RELAY_PROXY_NONE = 0, RELAY_PROXY_HTTP, RELAY_PROXY_SOCKS5 };
struct relay_proxy_config {
    enum relay_proxy_kind kind;
    char *host; /* without brackets for IPv6 literals */
    uint16_t port;
    char *username; /* NULL = no authentication */
    char *password; /* with username; may be empty */
    size_t password_len;
};

/* spool: "auto" (the default) acknowledges from a spool in the state directory only while the
 * destination's round trip would make end-to-end acknowledgement the bound; a group { dir }, or
 * true (in the state directory), always spools; false never does. */
enum relay_spool_mode { RELAY_SPOOL_AUTO = 0, RELAY_SPOOL_ALWAYS, RELAY_SPOOL_OFF };

struct relay_spool_config {
    char *dir; /* resolved path; NULL = no spool (auto: no usable state directory) */
    uint64_t max_size;
    enum relay_spool_mode mode;
};

/* spool = "auto" (core/autospool.c): spooled from a base round trip of RELAY_AUTOSPOOL_ON_MS,
 * direct again at RELAY_AUTOSPOOL_OFF_MS once the spool is empty. RELAY_SOURCE_WINDOW: an
 * example source window (Mosquitto's max_inflight_messages default) for the bounds we name */
#define RELAY_SPOOL_MAX_SIZE 1073741824u /* spool.max_size default: 1 GiB */
#define RELAY_AUTOSPOOL_ON_MS 5u
#define RELAY_AUTOSPOOL_OFF_MS 2u
#define RELAY_SOURCE_WINDOW 20u
/* max_inflight "auto" toward 3.x: RELAY_INFLIGHT_PER_MS per ms of round trip (session/rtt.h),
 * 20..max_inflight_cap (default RELAY_INFLIGHT_CAP) */
#define RELAY_INFLIGHT_CAP 4096u
#define RELAY_INFLIGHT_PER_MS 50u

/* The 3.x bridge bit (protocol level | 0x80, Mosquitto's try_private): "auto" tries it and
 * falls back for good when the broker refuses it; true insists; false never sets it. */
enum relay_bridge_mode { RELAY_BRIDGE_AUTO = 0, RELAY_BRIDGE_ON, RELAY_BRIDGE_OFF };

/* profile = "bifromq": the defaults of a broker kind in one word (each key still wins). */
enum relay_profile { RELAY_PROFILE_NONE = 0, RELAY_PROFILE_BIFROMQ };
/* BifroMQ's default tenant limits per connection (shared/BIFROMQ.md), the profile's values */
#define RELAY_BIFROMQ_RATE 200u       /* PUBLISHes per second, fixed one-second windows */
#define RELAY_BIFROMQ_BYTES 524288u   /* 512 KiB/s each way */
#define RELAY_BIFROMQ_INFLIGHT 200u   /* its Receive Maximum */
#define RELAY_BIFROMQ_PACKET 262144u  /* 256 KiB; a CONNECT asking for more is refused */
#define RELAY_BIFROMQ_ALIASES 10u     /* its Topic Alias Maximum */
#define RELAY_BIFROMQ_QUEUE 1000u     /* its session queue, messages */
#define RELAY_BIFROMQ_REDELIVER_S 40u /* it drops an unacknowledged message after this */
#define RELAY_TOPIC_ALIASES_DEFAULT 16u
/* the window rate_limit is kept in (session/rate.h's RELAY_PACE_WINDOW_MS; core/conn.c checks
 * that they agree), for --check's arithmetic */
#define RELAY_CONFIG_PACE_WINDOW_MS 1025u

struct relay_broker_config {
    char *name;
    int line; /* where the broker's group starts in the file */
    struct relay_url *urls;
    size_t n_urls;
    uint8_t version;                   /* MQC_V31, MQC_V311, MQC_V5; default MQC_V5 */
    enum relay_bridge_mode bridge_bit; /* 3.x only; default auto */
    char
        *client_id; /* base id: default "<relay.id>-<name>"; "-<i>" appended when connections > 1 */
    char *username; /* NULL = none */
    char *password; /* NULL = none; from password or password_file */
    size_t password_len;
    uint16_t keepalive;        /* seconds, default 60 */
    bool clean_start;          /* default false */
    uint32_t session_expiry;   /* seconds, default 3600 */
    uint32_t connections;      /* default 1 */
    uint16_t receive_maximum;  /* default 64 */
    uint16_t max_inflight;     /* 0 = "auto": peer's Receive Maximum (5.0); 3.x: sized from the
                                  round trip, 20..max_inflight_cap (QoS 2 within 20) */
    uint16_t max_inflight_cap; /* "auto", 3.x: the largest window (default RELAY_INFLIGHT_CAP) */
    uint32_t max_packet_size;  /* default 262144 */
    uint64_t rate_bytes;       /* bytes/s we send per connection, 0 = unlimited */
    uint32_t rate_messages;    /* PUBLISHes/s we send per connection, 0 = unlimited */
    uint16_t topic_aliases;    /* 5.0: topic aliases we use per connection (the broker's
                                  maximum bounds it); default 16, 0 = none */
    enum relay_profile profile;
    struct relay_spool_config spool;
    uint32_t reconnect_min_ms; /* default 250 */
    uint32_t reconnect_max_ms; /* default 30000 */
    uint32_t ack_timeout_ms;   /* extension: a PUBLISH unacknowledged this long => reconnect;
                                  default 20000 */
    char *status_topic;        /* NULL = none */
    bool has_tls;              /* a tls group was given */
    struct relay_tls_config tls;
    struct relay_proxy_config proxy; /* broker.proxy, else relay.proxy; kind NONE = direct */
    uint32_t tcp_keepalive_s;        /* TCP keepalive: probes after this much silence; 0 = off */
    uint32_t tcp_user_timeout_ms;    /* TCP_USER_TIMEOUT; 0 = off (the kernel's ~15 min) */
    char *bind_address;              /* source address (IPv4 or IPv6 literal); NULL = any */
};

enum relay_retain_mode { RELAY_RETAIN_KEEP = 0, RELAY_RETAIN_CLEAR };
enum relay_props_mode { RELAY_PROPS_FORWARD = 0, RELAY_PROPS_DROP };

struct relay_route_config {
    char *name; /* default "<from>-><to>#<index>" */
    int line;
    size_t from;  /* index into brokers */
    size_t to;    /* index into brokers */
    char *filter; /* as written: never a "$share/" form */
    char *share;  /* NULL = not shared */
    bool ordered; /* "$oshare/" instead of "$share/" */
    uint8_t qos;  /* subscription QoS, default 1 */
    char *topic;  /* template, default "${topic}" */
    int out_qos;  /* -1 = "same", else 0..2 */
    enum relay_retain_mode retain;
    enum relay_props_mode properties;
};

struct relay_config {
    char *path;                       /* the file as given */
    char *dir;                        /* its directory: relative paths are resolved against it */
    char *id;                         /* default: the host name */
    enum relay_log_level log_level;   /* default info */
    enum relay_log_format log_format; /* default text */
    char *metrics_host;               /* NULL = no metrics listener */
    uint16_t metrics_port;
    /* POST /-/reload's bearer token (admin_token or admin_token_file), NULL = none: then only a
     * listener on a loopback address takes it. A secret: never logged or shown. */
    char *admin_token;
    size_t admin_token_len;
    uint32_t drain_timeout_ms;       /* default 5000 */
    uint32_t max_hops;               /* default 8 */
    uint32_t batch_wait_us;          /* read batching under load, see core/batch.h */
    struct relay_proxy_config proxy; /* relay.proxy: every broker's default; NONE = direct */
    char **no_proxy;                 /* relay.no_proxy: hosts reached directly (see conf/link.c) */
    size_t n_no_proxy;
    /* relay.state_dir: where automatic spools live (one sub-directory per broker). The path
     * chosen (configured, $STATE_DIRECTORY, /var/lib/mqtt-relay, $XDG_STATE_HOME/mqtt-relay or
     * ~/.local/state/mqtt-relay), where it came from, and why it cannot be used (NULL: it can;
     * then spool = "auto" is off) */
    char *state_dir;
    const char *state_dir_from; /* static text */
    char *state_dir_why;
    struct relay_broker_config *brokers;
    size_t n_brokers;
    struct relay_route_config *routes;
    size_t n_routes;
};

/* The subscription filter route r makes on its source: "$share/G/F", "$oshare/G/F" or F.
 * Writes a NUL-terminated string into out; returns its length, or -ENOSPC. */
int relay_route_subscription(const struct relay_route_config *r, char *out, size_t cap);

/* The client id of connection idx (0-based) of broker b, NUL-terminated, into out. */
int relay_broker_client_id(const struct relay_broker_config *b, uint32_t idx, char *out,
                           size_t cap);

#endif
