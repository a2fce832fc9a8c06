/*
 * load.c: turns the libconfig file into a plain struct relay_config (SPEC.md, Configuration):
 * relay_config_load() and relay_config_cleanup(), and one parse_* per part of the file.
 *
 * Everything is validated once, while loading: unknown keys, types and ranges as each setting is
 * read (setting.c); names, URLs, collisions across brokers and routes, templates and the static
 * loop check (validate.c). Every error is one line "FILE:LINE: what is wrong", naming the
 * setting's line and the broker or route concerned. Strings are copied out of libconfig before
 * config_destroy(); the result owns all its memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/internal.h"
#include "conf/load.h"
#include "route/template.h"

#define MAX_BROKERS 64u
#define MAX_ROUTES 10000u
#define MAX_URLS 64u
#define ID_MAX 64u     /* relay.id */
#define V31_ID_MAX 23u /* MQTT 3.1: client ids of 1..23 bytes */

/* ---- relay group -------------------------------------------------------------------------- */

static bool relay_id_ok(const char *id)
{
    return strlen(id) <= ID_MAX && cfg_word_chars(id, "_.-");
}

/* A bearer token (RFC 6750 b64token): 16 to 4096 of A-Z a-z 0-9 - . _ ~ + /, then '='s. */
static bool token_ok(const char *t, size_t n)
{
    size_t i = strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/");

    while (i < n && t[i] == '=')
        i++;
    return i == n && n >= 16 && n <= 4096;
}

/* relay.admin_token or relay.admin_token_file (read like a password_file): POST /-/reload's
 * bearer token. A secret: no message ever quotes it. */
static int parse_admin_token(struct ld *ld, const config_setting_t *g)
{
    struct relay_config *cfg = ld->cfg;
    const config_setting_t *s;
    const char *tok, *file;
    int rc;

    if ((rc = cfg_get_str(ld, g, "admin_token", &tok)) < 0 ||
        (rc = cfg_get_str(ld, g, "admin_token_file", &file)) < 0)
        return rc;
    if (tok && file)
        return cfg_fail(ld, config_setting_get_member(g, "admin_token_file"),
                        "relay.admin_token and relay.admin_token_file are exclusive: give one");
    if (tok) {
        if ((rc = cfg_dup_str(ld, tok, &cfg->admin_token)) < 0)
            return rc;
        cfg->admin_token_len = strlen(tok);
    } else if (file) {
        rc = cfg_read_secret_file(ld, config_setting_get_member(g, "admin_token_file"), file,
                                  "admin_token_file", &cfg->admin_token, &cfg->admin_token_len);
        if (rc < 0)
            return rc;
    } else {
        return 0;
    }
    s = config_setting_get_member(g, tok ? "admin_token" : "admin_token_file");
    if (strlen(cfg->admin_token) != cfg->admin_token_len ||
        !token_ok(cfg->admin_token, cfg->admin_token_len))
        return cfg_fail(ld, s,
                        "relay.%s: the token must be 16 to 4096 characters of A-Z a-z 0-9 - . _ ~ "
                        "+ / (then '=' padding), e.g. from \"openssl rand -hex 32\"",
                        tok ? "admin_token" : "admin_token_file");
    return 0;
}

static int parse_relay(struct ld *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"id",
                                       "log_level",
                                       "metrics",
                                       "drain_timeout",
                                       "max_hops",
                                       "batch_wait_us",
                                       "log_format",
                                       "admin_token",
                                       "admin_token_file",
                                       "proxy",
                                       "no_proxy",
                                       "state_dir",
                                       NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    static const char *const formats[] = {"text", "json", NULL};
    struct relay_config *cfg = ld->cfg;
    const config_setting_t *g;
    const char *v;
    char b[100];
    int64_t n;
    int rc, e;

    if ((rc = cfg_get_group(ld, root, "relay", &g)) < 0)
        return rc;
    cfg->log_level = RELAY_LOG_INFO;
    cfg->drain_timeout_ms = 5000;
    cfg->max_hops = 8;
    cfg->batch_wait_us = RELAY_BATCH_WAIT_US;
    ld->kp = "relay.";
    if (g) {
        if ((rc = cfg_check_keys(ld, g, keys)) < 0 || (rc = cfg_get_str(ld, g, "id", &v)) < 0)
            return rc;
        if (v && !relay_id_ok(v))
            return cfg_fail(ld, config_setting_get_member(g, "id"),
                            "relay.id %s must be 1..64 characters of A-Z a-z 0-9 _ . -",
                            cfg_shown(b, sizeof(b), v));
        if (v && (rc = cfg_dup_str(ld, v, &cfg->id)) < 0)
            return rc;
        if ((rc = cfg_get_enum(ld, g, "log_level", levels, "error, warn, info, debug",
                               RELAY_LOG_INFO, &e)) < 0)
            return rc;
        cfg->log_level = (enum relay_log_level)e;
        if ((rc = cfg_get_enum(ld, g, "log_format", formats, "text, json", RELAY_LOG_TEXT, &e)) < 0)
            return rc;
        cfg->log_format = (enum relay_log_format)e;
        if ((rc = parse_admin_token(ld, g)) < 0)
            return rc;
        if ((rc = cfg_get_str(ld, g, "metrics", &v)) < 0)
            return rc;
        if (v) {
            const config_setting_t *s = config_setting_get_member(g, "metrics");
            const char *host, *port;
            size_t hl, pl;
            bool br;
            if (!cfg_split_host_port(v, strlen(v), &host, &hl, &br, &port, &pl) || !port ||
                !cfg_host_ok(host, hl, br) || !cfg_port_ok(port, pl, &cfg->metrics_port))
                return cfg_fail(ld, s,
                                "relay.metrics %s must be \"HOST:PORT\" (e.g. \"127.0.0.1:9464\", "
                                "\"[::1]:9464\")",
                                cfg_shown(b, sizeof(b), v));
            if (!(cfg->metrics_host = strndup(host, hl)))
                return cfg_oom(ld);
        }
        if ((rc = cfg_get_int(ld, g, "drain_timeout", 0, 600000, 5000, &n)) < 0)
            return rc;
        cfg->drain_timeout_ms = (uint32_t)n;
        if ((rc = cfg_get_int(ld, g, "max_hops", 1, 64, 8, &n)) < 0)
            return rc;
        cfg->max_hops = (uint32_t)n;
        if ((rc = cfg_get_int(ld, g, "batch_wait_us", 0, 5000, RELAY_BATCH_WAIT_US, &n)) < 0)
            return rc;
        cfg->batch_wait_us = (uint32_t)n;
        if ((rc = cfg_parse_relay_proxy(ld, g)) < 0)
            return rc;
    }
    if ((rc = cfg_state_dir(ld, g)) < 0)
        return rc;
    ld->kp = "";
    if (!cfg->id) {
        char host[256];
        if (gethostname(host, sizeof(host)) < 0)
            host[0] = '\0';
        host[sizeof(host) - 1] = '\0';
        if (!relay_id_ok(host))
            return cfg_fail_at(ld, g ? cfg_line_of(g) : 1,
                               "the host name %s is not a valid relay id (1..64 characters of A-Z "
                               "a-z 0-9 _ . -): set relay.id",
                               cfg_shown(b, sizeof(b), host));
        if ((rc = cfg_dup_str(ld, host, &cfg->id)) < 0)
            return rc;
    }
    return 0;
}

/* ---- brokers ------------------------------------------------------------------------------ */

static int parse_urls(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b)
{
    const config_setting_t *s = config_setting_get_member(g, "url");
    if (!s)
        return cfg_fail(ld, g, "url is required");
    int type = config_setting_type(s);
    bool many = type == CONFIG_TYPE_ARRAY || type == CONFIG_TYPE_LIST;
    if (type != CONFIG_TYPE_STRING && !many)
        return cfg_wrong_type(ld, s, "a string or a list of strings");
    unsigned n = many ? (unsigned)config_setting_length(s) : 1;
    if (n == 0)
        return cfg_fail(ld, s, "url must not be an empty list");
    if (n > MAX_URLS)
        return cfg_fail(ld, s, "at most %u URLs per broker", MAX_URLS);
    b->urls = calloc(n, sizeof(*b->urls));
    if (!b->urls)
        return cfg_oom(ld);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *e = many ? config_setting_get_elem(s, i) : s;
        const char *text = NULL;
        int rc = cfg_str_value(ld, e, "each url", &text);
        if (rc < 0)
            return rc;
        b->n_urls = i + 1;
        if ((rc = cfg_parse_url(ld, e, text, &b->urls[i])) < 0)
            return rc;
    }
    return 0;
}

static int parse_limits(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b)
{
    static const char *const rate_keys[] = {"bytes", "messages", NULL};
    static const char *const spool_keys[] = {"dir", "max_size", NULL};
    static const char *const reco_keys[] = {"min", "max", NULL};
    const config_setting_t *s;
    const char *v;
    int64_t n;
    int rc;

    if ((rc = cfg_get_group(ld, g, "rate_limit", &s)) < 0)
        return rc;
    /* the profile's limits unless the file says otherwise */
    b->rate_bytes = b->profile == RELAY_PROFILE_BIFROMQ ? RELAY_BIFROMQ_BYTES : 0;
    b->rate_messages = b->profile == RELAY_PROFILE_BIFROMQ ? RELAY_BIFROMQ_RATE : 0;
    if (s) {
        ld->kp = "rate_limit.";
        if ((rc = cfg_check_keys(ld, s, rate_keys)) < 0 ||
            (rc = cfg_get_int(ld, s, "bytes", 0, INT64_MAX, (int64_t)b->rate_bytes, &n)) < 0)
            return rc;
        b->rate_bytes = (uint64_t)n;
        if ((rc = cfg_get_int(ld, s, "messages", 0, UINT32_MAX, b->rate_messages, &n)) < 0)
            return rc;
        b->rate_messages = (uint32_t)n;
    }
    ld->kp = "";
    bool spool_group;
    if ((rc = cfg_spool_mode(ld, g, b, &spool_group)) < 0)
        return rc;
    s = spool_group ? config_setting_get_member(g, "spool") : NULL;
    if (s) {
        ld->kp = "spool.";
        if ((rc = cfg_check_keys(ld, s, spool_keys)) < 0 ||
            (rc = cfg_get_str(ld, s, "dir", &v)) < 0)
            return rc;
        if (!v)
            return cfg_fail(ld, s, "spool.dir is required in a spool group");
        /* Only resolved here: the spool module creates it (mode 0700). */
        if ((rc = cfg_resolve(ld, config_setting_get_member(s, "dir"), v, &b->spool.dir)) < 0 ||
            (rc = cfg_get_int(ld, s, "max_size", 1048576, INT64_MAX, RELAY_SPOOL_MAX_SIZE, &n)) < 0)
            return rc;
        b->spool.max_size = (uint64_t)n;
    }
    ld->kp = "";
    if ((rc = cfg_get_group(ld, g, "reconnect", &s)) < 0)
        return rc;
    b->reconnect_min_ms = 250;
    b->reconnect_max_ms = 30000;
    if (s) {
        ld->kp = "reconnect.";
        if ((rc = cfg_check_keys(ld, s, reco_keys)) < 0 ||
            (rc = cfg_get_int(ld, s, "min", 10, UINT32_MAX, 250, &n)) < 0)
            return rc;
        b->reconnect_min_ms = (uint32_t)n;
        if ((rc = cfg_get_int(ld, s, "max", 10, UINT32_MAX,
                              30000 < b->reconnect_min_ms ? b->reconnect_min_ms : 30000, &n)) < 0)
            return rc;
        if (n < b->reconnect_min_ms)
            return cfg_fail(ld, config_setting_get_member(s, "max"),
                            "reconnect.max = %" PRId64 " must be at least reconnect.min (%" PRIu32
                            ")",
                            n, b->reconnect_min_ms);
        b->reconnect_max_ms = (uint32_t)n;
    }
    ld->kp = "";
    return 0;
}

static int parse_auth(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b)
{
    const char *user, *pass, *pfile;
    int rc;
    if ((rc = cfg_get_str(ld, g, "username", &user)) < 0 ||
        (rc = cfg_get_str(ld, g, "password", &pass)) < 0 ||
        (rc = cfg_get_str(ld, g, "password_file", &pfile)) < 0)
        return rc;
    if (user) {
        if (mqc_utf8_check((const uint8_t *)user, strlen(user)) != MQC_OK)
            return cfg_fail(ld, config_setting_get_member(g, "username"),
                            "username is not valid UTF-8");
        if ((rc = cfg_dup_str(ld, user, &b->username)) < 0)
            return rc;
    }
    if (pass && pfile)
        return cfg_fail(ld, config_setting_get_member(g, "password_file"),
                        "password and password_file are exclusive: give one");
    if (pass) {
        if ((rc = cfg_dup_str(ld, pass, &b->password)) < 0)
            return rc;
        b->password_len = strlen(pass);
    }
    if (pfile && (rc = cfg_read_password_file(ld, config_setting_get_member(g, "password_file"),
                                              pfile, b)) < 0)
        return rc;
    /* [MQTT-3.1.2-22]: before 5.0, a password is only sent with a user name */
    if (b->password && !b->username && b->version != MQC_V5)
        return cfg_fail(ld, config_setting_get_member(g, pfile ? "password_file" : "password"),
                        "%s needs a username with MQTT %s", pfile ? "password_file" : "password",
                        b->version == MQC_V31 ? "3.1" : "3.1.1");
    return 0;
}

/* bridge_bit = "auto" | true | false (MQTT 3.1/3.1.1; Mosquitto's try_private). */
static int parse_bridge_bit(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b)
{
    const config_setting_t *s = config_setting_get_member(g, "bridge_bit");
    const char *v;

    b->bridge_bit = RELAY_BRIDGE_AUTO;
    if (!s)
        return 0;
    if (config_setting_type(s) == CONFIG_TYPE_BOOL) {
        b->bridge_bit = config_setting_get_bool(s) ? RELAY_BRIDGE_ON : RELAY_BRIDGE_OFF;
        return 0;
    }
    v = config_setting_type(s) == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
    if (v && !strcmp(v, "auto"))
        return 0;
    return cfg_fail(ld, s, "bridge_bit must be \"auto\", true or false");
}

static int parse_broker(struct ld *ld, const config_setting_t *g, size_t idx,
                        struct relay_broker_config *b)
{
    /* clang-format off */
    static const char *const keys[] = {
        "name", "url", "version", "client_id", "username", "password", "password_file",
        "keepalive", "clean_start", "session_expiry", "connections", "receive_maximum",
        "max_inflight", "max_packet_size", "rate_limit", "spool", "reconnect", "status_topic",
        "tls", "ack_timeout", "bridge_bit", "proxy", "tcp_keepalive", "tcp_user_timeout",
        "bind_address", "profile", "topic_aliases", "max_inflight_cap",
        NULL};
    /* clang-format on */
    static const char *const versions[] = {"3.1", "3.1.1", "5", NULL};
    static const char *const profiles[] = {"none", "bifromq", NULL};
    static const uint8_t version_of[] = {MQC_V31, MQC_V311, MQC_V5};
    const config_setting_t *ns = config_setting_get_member(g, "name");
    const char *v;
    char bb[100];
    int64_t n;
    int rc, e;

    b->line = (int)cfg_line_of(g);
    snprintf(ld->who, sizeof(ld->who), "broker #%zu: ", idx);
    if (ns && config_setting_type(ns) == CONFIG_TYPE_STRING)
        snprintf(ld->who, sizeof(ld->who),
                 "broker %s: ", cfg_shown(bb, sizeof(bb), config_setting_get_string(ns)));
    if ((rc = cfg_check_keys(ld, g, keys)) < 0 || (rc = cfg_get_str(ld, g, "name", &v)) < 0)
        return rc;
    if (!v)
        return cfg_fail(ld, g, "name is required");
    if (!cfg_word_chars(v, "_-"))
        return cfg_fail(ld, ns, "name must be letters, digits, '_' or '-'");
    if ((rc = cfg_dup_str(ld, v, &b->name)) < 0 || (rc = parse_urls(ld, g, b)) < 0)
        return rc;
    if ((rc = cfg_get_enum(ld, g, "version", versions, "\"3.1\", \"3.1.1\", \"5\"", 2, &e)) < 0)
        return rc;
    b->version = version_of[e];
    /* first: the profile gives the defaults of the keys below */
    if ((rc = cfg_get_enum(ld, g, "profile", profiles, "\"none\", \"bifromq\"", 0, &e)) < 0)
        return rc;
    b->profile = (enum relay_profile)e;
    bool bifromq = b->profile == RELAY_PROFILE_BIFROMQ;

    if ((rc = cfg_get_int(ld, g, "keepalive", 0, 65535, 60, &n)) < 0)
        return rc;
    b->keepalive = (uint16_t)n;
    if ((rc = cfg_get_bool(ld, g, "clean_start", false, &b->clean_start)) < 0 ||
        (rc = cfg_get_int(ld, g, "session_expiry", 0, UINT32_MAX, 3600, &n)) < 0)
        return rc;
    b->session_expiry = (uint32_t)n;
    /* 200: BifroMQ's limit of members in a shared-subscription group. */
    if ((rc = cfg_get_int(ld, g, "connections", 1, 200, 1, &n)) < 0)
        return rc;
    b->connections = (uint32_t)n;
    if ((rc = cfg_get_int(ld, g, "receive_maximum", 1, 65535, 64, &n)) < 0)
        return rc;
    b->receive_maximum = (uint16_t)n;
    const config_setting_t *mi = config_setting_get_member(g, "max_inflight");
    if (mi && config_setting_type(mi) == CONFIG_TYPE_STRING) {
        if (strcmp(config_setting_get_string(mi), "auto"))
            return cfg_fail(ld, mi, "max_inflight must be \"auto\" or 1..65535");
        n = 0;
    } else if ((rc = cfg_get_int(ld, g, "max_inflight", 1, 65535,
                                 bifromq ? RELAY_BIFROMQ_INFLIGHT : 0, &n)) < 0) {
        return rc;
    }
    b->max_inflight = (uint16_t)n;
    if ((rc = cfg_get_int(ld, g, "max_inflight_cap", 20, 65535, RELAY_INFLIGHT_CAP, &n)) < 0)
        return rc;
    b->max_inflight_cap = (uint16_t)n;
    if ((rc = cfg_get_int(ld, g, "max_packet_size", 128, 268435460, 262144, &n)) < 0)
        return rc;
    b->max_packet_size = (uint32_t)n;
    if ((rc = cfg_get_int(ld, g, "ack_timeout", 1000, 600000, 20000, &n)) < 0)
        return rc;
    b->ack_timeout_ms = (uint32_t)n;
    if ((rc = parse_bridge_bit(ld, g, b)) < 0)
        return rc;
    if (bifromq && !config_setting_get_member(g, "bridge_bit"))
        b->bridge_bit = RELAY_BRIDGE_OFF; /* BifroMQ closes a bridge-bit CONNECT unanswered */
    if ((rc = cfg_get_int(ld, g, "topic_aliases", 0, 65535,
                          bifromq ? RELAY_BIFROMQ_ALIASES : RELAY_TOPIC_ALIASES_DEFAULT, &n)) < 0)
        return rc;
    b->topic_aliases = (uint16_t)n;

    if ((rc = cfg_get_str(ld, g, "status_topic", &v)) < 0)
        return rc;
    if (v) {
        if (mqc_topic_name_check((const uint8_t *)v, strlen(v)) != MQC_OK)
            return cfg_fail(ld, config_setting_get_member(g, "status_topic"),
                            "status_topic %s is not a valid topic name (no '+' or '#', not empty)",
                            cfg_shown(bb, sizeof(bb), v));
        if ((rc = cfg_dup_str(ld, v, &b->status_topic)) < 0)
            return rc;
    }
    if ((rc = parse_auth(ld, g, b)) < 0 || (rc = parse_limits(ld, g, b)) < 0 ||
        (rc = cfg_parse_tls(ld, g, b)) < 0 || (rc = cfg_parse_link(ld, g, b)) < 0)
        return rc;

    /* Client id: checked last, once the version and the pool size are known. */
    if ((rc = cfg_get_str(ld, g, "client_id", &v)) < 0)
        return rc;
    const config_setting_t *cs = config_setting_get_member(g, "client_id");
    if (v) {
        if (!*v)
            return cfg_fail(ld, cs, "client_id must not be empty");
        if (mqc_utf8_check((const uint8_t *)v, strlen(v)) != MQC_OK)
            return cfg_fail(ld, cs, "client_id is not valid UTF-8");
        rc = cfg_dup_str(ld, v, &b->client_id);
    } else if (asprintf(&b->client_id, "%s-%s", ld->cfg->id, b->name) < 0) {
        b->client_id = NULL;
        rc = cfg_oom(ld);
    }
    if (rc < 0)
        return rc;
    char longest[STR_MAX + 16];
    int len = relay_broker_client_id(b, b->connections - 1, longest, sizeof(longest));
    if (len < 0 || (size_t)len > STR_MAX)
        return cfg_fail(ld, cs ? cs : g, "client id is longer than %u bytes", STR_MAX);
    if (b->version == MQC_V31 && (size_t)len > V31_ID_MAX)
        return cfg_fail(ld, cs ? cs : config_setting_get_member(g, "version"),
                        "client id %s is %d bytes, MQTT 3.1 allows at most %u: set a shorter "
                        "client_id%s",
                        cfg_shown(bb, sizeof(bb), longest), len, V31_ID_MAX,
                        b->connections > 1 ? " (\"-<i>\" is appended for each connection)" : "");
    return 0;
}

static int parse_brokers(struct ld *ld, const config_setting_t *root)
{
    struct relay_config *cfg = ld->cfg;
    const config_setting_t *list = config_setting_get_member(root, "brokers");
    int rc;

    if (!list)
        return cfg_fail_at(ld, 1, "no brokers: add brokers = ( { name = ...; url = ...; } );");
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return cfg_wrong_type(ld, list, "a list ( { ... }, { ... } )");
    unsigned n = (unsigned)config_setting_length(list);
    if (n == 0)
        return cfg_fail(ld, list, "brokers is empty");
    if (n > MAX_BROKERS)
        return cfg_fail(ld, list, "%u brokers, at most %u are allowed", n, MAX_BROKERS);
    cfg->brokers = calloc(n, sizeof(*cfg->brokers));
    if (!cfg->brokers)
        return cfg_oom(ld);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list, i);
        cfg->n_brokers = i + 1;
        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
            return cfg_fail(ld, g, "each broker must be a group { ... }");
        if ((rc = parse_broker(ld, g, i, &cfg->brokers[i])) < 0)
            return rc;
        ld->who[0] = '\0';
        if ((rc = cfg_check_broker_dups(ld, g, i)) < 0)
            return rc;
    }
    if ((rc = cfg_state_spools(ld, list)) < 0)
        return rc;
    return cfg_check_client_ids(ld, list);
}

/* ---- routes ------------------------------------------------------------------------------- */

static int find_broker(struct ld *ld, const config_setting_t *g, const char *key, size_t *out)
{
    const char *v;
    char bb[100];
    int rc = cfg_get_str(ld, g, key, &v);
    if (rc < 0)
        return rc;
    if (!v)
        return cfg_fail(ld, g, "%s is required", key);
    for (size_t i = 0; i < ld->cfg->n_brokers; i++) {
        if (strcmp(ld->cfg->brokers[i].name, v) == 0) {
            *out = i;
            return 0;
        }
    }
    return cfg_fail(ld, config_setting_get_member(g, key), "unknown broker %s",
                    cfg_shown(bb, sizeof(bb), v));
}

static int parse_filter(struct ld *ld, const config_setting_t *g, struct relay_route_config *r)
{
    const config_setting_t *s = config_setting_get_member(g, "filter");
    const char *v;
    char bb[100];
    int rc = cfg_get_str(ld, g, "filter", &v);
    if (rc < 0)
        return rc;
    if (!v)
        return cfg_fail(ld, g, "filter is required");
    size_t len = strlen(v);
    struct mqc_share sh;
    if (mqc_topic_share_parse((const uint8_t *)v, len, &sh) != MQC_OK ||
        sh.kind != MQC_SHARE_NONE || strncmp(v, "$share/", 7) == 0 ||
        strncmp(v, "$oshare/", 8) == 0) {
        bool ordered = strncmp(v, "$oshare/", 8) == 0;
        return cfg_fail(ld, s,
                        "filter %s is a shared-subscription form: write the plain filter and use "
                        "share = \"GROUP\"%s",
                        cfg_shown(bb, sizeof(bb), v), ordered ? " with ordered = true" : "");
    }
    rc = mqc_topic_filter_check((const uint8_t *)v, len);
    if (rc == MQC_EUTF8)
        return cfg_fail(ld, s, "filter %s is not valid UTF-8", cfg_shown(bb, sizeof(bb), v));
    if (rc != MQC_OK)
        return cfg_fail(ld, s,
                        "invalid filter %s ('+' and '#' must fill a whole level, '#' only as the "
                        "last one)",
                        cfg_shown(bb, sizeof(bb), v));
    return cfg_dup_str(ld, v, &r->filter);
}

static int parse_route(struct ld *ld, const config_setting_t *g, size_t idx,
                       struct relay_route_config *r, struct relay_tpl *tpl)
{
    static const char *const keys[] = {"name",    "from",    "to",         "filter",
                                       "share",   "ordered", "qos",        "topic",
                                       "out_qos", "retain",  "properties", NULL};
    static const char *const retain[] = {"keep", "clear", NULL};
    static const char *const props[] = {"forward", "drop", NULL};
    const char *name, *v;
    char bb[100], terr[160];
    int64_t n;
    int rc, e;

    r->line = (int)cfg_line_of(g);
    /* The label for messages: the name if given, else the default name (from the raw from/to),
     * else the position. */
    const config_setting_t *ns = config_setting_get_member(g, "name");
    const config_setting_t *fs = config_setting_get_member(g, "from");
    const config_setting_t *ts = config_setting_get_member(g, "to");
    char label[200];
    if (ns && config_setting_type(ns) == CONFIG_TYPE_STRING)
        snprintf(label, sizeof(label), "%s", config_setting_get_string(ns));
    else if (fs && ts && config_setting_type(fs) == CONFIG_TYPE_STRING &&
             config_setting_type(ts) == CONFIG_TYPE_STRING)
        snprintf(label, sizeof(label), "%.64s->%.64s#%zu", config_setting_get_string(fs),
                 config_setting_get_string(ts), idx);
    else
        snprintf(label, sizeof(label), "#%zu", idx);
    snprintf(ld->who, sizeof(ld->who), "route %s: ", cfg_shown(bb, sizeof(bb), label));

    if ((rc = cfg_check_keys(ld, g, keys)) < 0 || (rc = cfg_get_str(ld, g, "name", &name)) < 0)
        return rc;
    if (name && (!*name || !cfg_printable(name) ||
                 mqc_utf8_check((const uint8_t *)name, strlen(name)) != MQC_OK))
        return cfg_fail(ld, ns, "name must be non-empty UTF-8 text without control characters");
    if ((rc = find_broker(ld, g, "from", &r->from)) < 0 ||
        (rc = find_broker(ld, g, "to", &r->to)) < 0)
        return rc;
    if (r->from == r->to)
        return cfg_fail(ld, ts, "from and to are both \"%s\": a route joins two different brokers",
                        ld->cfg->brokers[r->from].name);
    if (name)
        rc = cfg_dup_str(ld, name, &r->name);
    else if (asprintf(&r->name, "%s->%s#%zu", ld->cfg->brokers[r->from].name,
                      ld->cfg->brokers[r->to].name, idx) < 0) {
        r->name = NULL;
        rc = cfg_oom(ld);
    }
    if (rc < 0 || (rc = parse_filter(ld, g, r)) < 0)
        return rc;

    if ((rc = cfg_get_str(ld, g, "share", &v)) < 0)
        return rc;
    if (v) {
        if (!cfg_word_chars(v, "_-"))
            return cfg_fail(ld, config_setting_get_member(g, "share"),
                            "share %s must be letters, digits, '_' or '-'",
                            cfg_shown(bb, sizeof(bb), v));
        if ((rc = cfg_dup_str(ld, v, &r->share)) < 0)
            return rc;
    }
    if ((rc = cfg_get_bool(ld, g, "ordered", false, &r->ordered)) < 0)
        return rc;
    /* "$share/G/F" goes on the wire as one MQTT string */
    if (r->share && (r->ordered ? 8 : 7) + strlen(r->share) + 1 + strlen(r->filter) > STR_MAX)
        return cfg_fail(ld, config_setting_get_member(g, "share"),
                        "the subscription \"$%sshare/GROUP/FILTER\" is longer than %u bytes",
                        r->ordered ? "o" : "", STR_MAX);
    if (r->ordered && !r->share)
        return cfg_fail(
            ld, config_setting_get_member(g, "ordered"),
            "ordered = true needs share = \"GROUP\" (it selects \"$oshare/GROUP/...\")");
    if ((rc = cfg_get_int(ld, g, "qos", 0, 2, 1, &n)) < 0)
        return rc;
    r->qos = (uint8_t)n;

    if ((rc = cfg_get_str(ld, g, "topic", &v)) < 0)
        return rc;
    if ((rc = cfg_dup_str(ld, v ? v : "${topic}", &r->topic)) < 0)
        return rc;
    rc = relay_tpl_compile(tpl, r->topic, r->filter, terr, sizeof(terr));
    if (rc == -ENOMEM)
        return cfg_oom(ld);
    if (rc < 0)
        return cfg_fail(ld, config_setting_get_member(g, "topic"), "topic %s: %s",
                        cfg_shown(bb, sizeof(bb), r->topic), terr);

    const config_setting_t *oq = config_setting_get_member(g, "out_qos");
    r->out_qos = -1;
    if (oq) {
        int type = config_setting_type(oq);
        if (type == CONFIG_TYPE_STRING && strcmp(config_setting_get_string(oq), "same") == 0)
            r->out_qos = -1;
        else if ((type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) &&
                 config_setting_get_int64(oq) >= 0 && config_setting_get_int64(oq) <= 2)
            r->out_qos = (int)config_setting_get_int64(oq);
        else
            return cfg_fail(ld, oq, "out_qos must be \"same\", 0, 1 or 2");
    }
    if ((rc = cfg_get_enum(ld, g, "retain", retain, "\"keep\", \"clear\"", 0, &e)) < 0)
        return rc;
    r->retain = (enum relay_retain_mode)e;
    if ((rc = cfg_get_enum(ld, g, "properties", props, "\"forward\", \"drop\"", 0, &e)) < 0)
        return rc;
    r->properties = (enum relay_props_mode)e;
    return 0;
}

static int parse_routes(struct ld *ld, const config_setting_t *root)
{
    struct relay_config *cfg = ld->cfg;
    const config_setting_t *list = config_setting_get_member(root, "routes");
    struct relay_tpl *tpl = NULL;
    int rc = 0;

    if (!list)
        return 0;
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return cfg_wrong_type(ld, list, "a list ( { ... }, { ... } )");
    unsigned n = (unsigned)config_setting_length(list);
    if (n > MAX_ROUTES)
        return cfg_fail(ld, list, "%u routes, at most %u are allowed", n, MAX_ROUTES);
    if (n == 0)
        return 0;
    cfg->routes = calloc(n, sizeof(*cfg->routes));
    tpl = calloc(n, sizeof(*tpl));
    if (!cfg->routes || !tpl) {
        free(tpl);
        return cfg_oom(ld);
    }
    unsigned done = 0;
    for (; done < n; done++) {
        const config_setting_t *g = config_setting_get_elem(list, done);
        cfg->n_routes = done + 1;
        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            rc = cfg_fail(ld, g, "each route must be a group { ... }");
            break;
        }
        if ((rc = parse_route(ld, g, done, &cfg->routes[done], &tpl[done])) < 0)
            break;
    }
    ld->who[0] = '\0';
    if (rc == 0)
        rc = cfg_check_route_names(ld);
    if (rc == 0)
        rc = cfg_check_loops(ld, tpl);
    for (unsigned i = 0; i < n; i++)
        relay_tpl_cleanup(&tpl[i]);
    free(tpl);
    return rc;
}

/* ---- load / cleanup ----------------------------------------------------------------------- */

static int config_dir(struct ld *ld, const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!d)
        return cfg_oom(ld);
    /* Absolute, so that resolved paths survive a change of working directory. */
    char *abs = realpath(d, NULL);
    if (abs) {
        free(d);
        d = abs;
    }
    ld->cfg->dir = d;
    return 0;
}

int relay_config_load(const char *path, struct relay_config *cfg, char *err, size_t errlen)
{
    static const char *const top_keys[] = {"relay", "brokers", "routes", NULL};
    struct ld ld = {.path = path, .err = err, .errlen = errlen, .cfg = cfg, .kp = ""};
    config_t lc;
    char *text = NULL;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    if (err && errlen)
        err[0] = '\0';

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = fd < 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        if (fd >= 0)
            close(fd);
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, e == EINVAL ? "not a regular file" : strerror(e));
        return -e;
    }
    rc = cfg_read_text(&ld, fd, &text);
    close(fd);
    if (rc < 0) {
        if (err && errlen && !err[0])
            snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    if ((rc = cfg_dup_str(&ld, path, &cfg->path)) < 0 || (rc = config_dir(&ld, path)) < 0) {
        free(text);
        relay_config_cleanup(cfg);
        return rc;
    }

    config_init(&lc);
    if (config_read_string(&lc, text) != CONFIG_TRUE) {
        if (err && errlen)
            snprintf(err, errlen, "%s:%d: %s", path, config_error_line(&lc),
                     config_error_text(&lc));
        rc = -EINVAL;
    } else {
        const config_setting_t *root = config_root_setting(&lc);
        if ((rc = cfg_check_keys(&ld, root, top_keys)) == 0 && (rc = parse_relay(&ld, root)) == 0 &&
            (rc = parse_brokers(&ld, root)) == 0)
            rc = parse_routes(&ld, root);
    }
    config_destroy(&lc);
    free(text);
    if (rc < 0)
        relay_config_cleanup(cfg);
    return rc;
}

static void broker_cleanup(struct relay_broker_config *b)
{
    for (size_t i = 0; i < b->n_urls; i++) {
        free(b->urls[i].text);
        free(b->urls[i].host);
        free(b->urls[i].path);
    }
    free(b->urls);
    free(b->name);
    free(b->client_id);
    free(b->username);
    if (b->password) {
        /* explicit_bzero: the compiler may not drop it as a dead store */
        explicit_bzero(b->password, b->password_len);
        free(b->password);
    }
    free(b->spool.dir);
    free(b->status_topic);
    free(b->tls.ca_file);
    free(b->tls.cert_file);
    free(b->tls.key_file);
    free(b->tls.server_name);
    for (size_t i = 0; i < b->tls.n_alpn; i++)
        free(b->tls.alpn[i]);
    free(b->tls.alpn);
    free(b->tls.ciphers);
    free(b->tls.ciphersuites);
    free(b->tls.keylog_file);
    cfg_proxy_cleanup(&b->proxy);
    free(b->bind_address);
}

void relay_config_cleanup(struct relay_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_brokers; i++)
        broker_cleanup(&cfg->brokers[i]);
    free(cfg->brokers);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        struct relay_route_config *r = &cfg->routes[i];
        free(r->name);
        free(r->filter);
        free(r->share);
        free(r->topic);
    }
    free(cfg->routes);
    free(cfg->path);
    free(cfg->dir);
    free(cfg->id);
    free(cfg->metrics_host);
    cfg_proxy_cleanup(&cfg->proxy);
    for (size_t i = 0; i < cfg->n_no_proxy; i++)
        free(cfg->no_proxy[i]);
    free(cfg->no_proxy);
    free(cfg->state_dir);
    free(cfg->state_dir_why);
    if (cfg->admin_token)
        memset(cfg->admin_token, 0, cfg->admin_token_len);
    free(cfg->admin_token);
    memset(cfg, 0, sizeof(*cfg));
}
