/*
 * broker.c: the brokers list of the configuration file (SPEC.md, Configuration): one
 * relay_broker_config per entry (URLs, session limits, credentials, the bridge bit, a profile's
 * defaults, spool, link options), validated as it is read; and what cleans one up.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/internal.h"

#define MAX_BROKERS 64u
#define MAX_URLS 64u
#define V31_ID_MAX 23u /* MQTT 3.1: client ids of 1..23 bytes */

/* ---- brokers ------------------------------------------------------------------------------ */

static int parse_urls(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b)
{
    const config_setting_t *s = config_setting_get_member(g, "url");
    if (!s)
        return cfg_fail(ld, g, "url is required");
    unsigned n;
    int rc = cfg_str_list(ld, s, &n);
    if (rc < 0)
        return rc;
    if (n == 0)
        return cfg_fail(ld, s, "url must not be an empty list");
    if (n > MAX_URLS)
        return cfg_fail(ld, s, "at most %u URLs per broker", MAX_URLS);
    b->urls = calloc(n, sizeof(*b->urls));
    if (!b->urls)
        return cfg_oom(ld);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *e = cfg_str_entry(s, i);
        const char *text = NULL;
        if ((rc = cfg_str_value(ld, e, "each url", &text)) < 0)
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

int cfg_parse_brokers(struct ld *ld, const config_setting_t *root)
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

void cfg_broker_cleanup(struct relay_broker_config *b)
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
