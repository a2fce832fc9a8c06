/*
 * mosquitto_internal.h: what the files of `--from-mosquitto` share (mosquitto.c: reading the
 * Mosquitto file into a struct mq and building the routes; mosquitto_bridge.c: the options of
 * one bridge section; mosquitto_print.c: printing the mqtt-relay configuration). The int
 * functions return 0 or a negative errno, having printed the message to mq->err. Nothing outside
 * conf/ includes it.
 */
#ifndef RELAY_CONF_MOSQUITTO_INTERNAL_H
#define RELAY_CONF_MOSQUITTO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define LOCAL_NAME "local"

enum mq_dir { MQ_OUT = 0, MQ_IN, MQ_BOTH };

/* Where something was written: a file name (owned by struct mq's file list) and a line. */
struct mq_at {
    const char *file;
    int line;
};

/* One `topic PATTERN [DIRECTION [QOS [LOCAL-PREFIX [REMOTE-PREFIX]]]]` line. */
struct mq_topic {
    struct mq_at at;
    char *text;    /* the line as written, for the route's comment */
    char *pattern; /* NULL: the pattern was "" (the prefixes are the whole topics) */
    enum mq_dir dir;
    int qos;
    char *lpfx, *rpfx; /* NULL: no prefix */
};

struct mq_addr {
    char *host;
    unsigned port;
};

/* One bridge `connection NAME` section. -1 = not given in the file. */
struct mq_conn {
    struct mq_at at;
    char *name;  /* as written */
    char *bname; /* the broker name in the output */
    struct mq_addr *addrs;
    size_t n_addrs;
    struct mq_at addr_at;
    int version; /* MQC_V31 / MQC_V311 / MQC_V5, 0 = not given (Mosquitto: 3.1.1) */
    char *remote_clientid, *username, *password;
    char *local_clientid, *local_username, *local_password;
    int cleansession, local_cleansession, keepalive, notifications, notif_local_only;
    int insecure, outgoing_retain, try_private;
    char *notification_topic;
    int restart_base, restart_cap; /* seconds; cap 0 = a single value */
    char *cafile, *capath, *certfile, *keyfile, *psk;
    char *alpn, *tls_version, *bind_address; /* bridge_alpn, bridge_tls_version, ... */
    struct mq_topic *topics;
    size_t n_topics;
    long loop_out, loop_in; /* routes that overlap both ways (version raised to 5), or -1 */
    char **notes;           /* one comment each: an option that has no equivalent, and why */
    size_t n_notes;
};

/* A `listener` (or the default listener of `port`), for the local broker's address. */
struct mq_listener {
    struct mq_at at;
    char *host; /* NULL: all interfaces */
    unsigned port;
    bool unix_socket, ws, tls, mount;
};

/* One route of the output. */
struct mq_route {
    size_t conn;
    size_t topic;
    bool out; /* local -> remote */
    char *name, *filter, *tpl;
};

struct mq {
    FILE *err;
    char *dir; /* the main file's directory: relative paths are taken from there */
    char **files;
    size_t n_files;
    struct mq_conn *conns;
    size_t n_conns;
    struct mq_listener *lis;
    size_t n_lis;
    struct mq_listener deflis; /* `port` / `bind_address` */
    bool have_deflis;
    char **ignored; /* broker options (names, each once) */
    size_t n_ignored;
    struct mq_route *routes;
    size_t n_routes;
    char host[256];
};

/* ---- mosquitto.c: messages and memory ---- */
int mq_fail(struct mq *mq, struct mq_at at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int mq_oom(struct mq *mq);
void *mq_grow(void *arr, size_t *n, size_t sz);
char *mq_fmt_str(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *mq_where(char *buf, size_t cap, struct mq_at at);
int mq_note(struct mq *mq, struct mq_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- mosquitto.c: tokens and option values ---- */
char *mq_next_tok(char **p);
char *mq_rest_of(char **p);
int mq_get_bool(struct mq *mq, struct mq_at at, const char *name, char **p, int *out);
int mq_get_uint(struct mq *mq, struct mq_at at, const char *name, const char *v, long max,
                int *out);
int mq_get_string(struct mq *mq, struct mq_at at, const char *name, char **p, char **out);
int mq_get_path(struct mq *mq, struct mq_at at, const char *name, char **p, char **out);

/* ---- mosquitto.c: routes ---- */
bool mq_same_prefix(const char *a, const char *b);

/* ---- mosquitto_bridge.c ---- */
bool mq_is_bridge_option(const char *name);
int mq_bridge_option(struct mq *mq, struct mq_at at, struct mq_conn *c, const char *name,
                     const char *line, char **p);

/* ---- mosquitto_print.c ---- */
void mq_print_all(const struct mq *mq, FILE *o);

#endif
