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
};

struct relay_tls_config {
    char *ca_file;   /* resolved path, NULL = system store */
    char *cert_file; /* NULL = no client certificate */
    char *key_file;
    bool verify;       /* default true */
    char *server_name; /* NULL = the URL host */
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
    uint32_t drain_timeout_ms; /* default 5000 */
    uint32_t max_hops;         /* default 8 */
    uint32_t batch_wait_us;    /* read batching under load, see core/batch.h */
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
