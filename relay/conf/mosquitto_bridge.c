/*
 * mosquitto_bridge.c: the options of one bridge `connection` section of a Mosquitto file
 * (mosquitto.conf(5), Mosquitto's src/conf.c and src/bridge.c), each carried over into a field
 * of struct mq_conn or, when mqtt-relay has no equivalent, into a comment that says so and why.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/mosquitto_internal.h"
#include "mqttcodec.h"

/* ---- bridge options ----------------------------------------------------------------------- */

/* clang-format off */
static const char *const bridge_options[] = {
    "address", "addresses", "bridge_attempt_unsubscribe", "bridge_alpn", "bridge_bind_address",
    "bridge_cafile", "bridge_capath", "bridge_certfile", "bridge_identity", "bridge_insecure",
    "bridge_keyfile", "bridge_max_packet_size", "bridge_outgoing_retain",
    "bridge_protocol_version", "bridge_psk", "bridge_require_ocsp", "bridge_tls_version",
    "cleansession", "clientid", "remote_clientid", "idle_timeout", "keepalive_interval",
    "local_cleansession", "local_clientid", "local_password", "local_username", "notifications",
    "notifications_local_only", "notification_topic", "password", "remote_password",
    "restart_timeout", "round_robin", "start_type", "threshold", "topic", "try_private",
    "username", "remote_username", NULL};
/* clang-format on */

/* True for an option of a bridge section (it belongs to the current `connection`). */
bool mq_is_bridge_option(const char *name)
{
    for (size_t i = 0; bridge_options[i]; i++)
        if (!strcmp(name, bridge_options[i]))
            return true;
    /* newer Mosquitto versions add bridge_* options: still a bridge's, with no equivalent */
    return strncmp(name, "bridge_", 7) == 0;
}

static int parse_addresses(struct mq *mq, struct mq_at at, struct mq_conn *c, char **p)
{
    char *tok;
    if (c->n_addrs)
        return mq_fail(mq, at, "connection \"%s\": address given twice (first at line %d)", c->name,
                       c->addr_at.line);
    c->addr_at = at;
    while ((tok = mq_next_tok(p)) && tok[0] != '#') {
        /* "host[:port]": the port follows the last ':' (an IPv6 address needs its port) */
        char *colon = strrchr(tok, ':');
        unsigned port = 1883;
        if (colon) {
            int n = 0, rc;
            *colon = '\0';
            if ((rc = mq_get_uint(mq, at, "address port", colon + 1, 65535, &n)) < 0)
                return rc;
            if (n == 0)
                return mq_fail(mq, at, "invalid port 0 in address \"%s:0\"", tok);
            port = (unsigned)n;
        }
        size_t hl = strlen(tok);
        if (hl > 2 && tok[0] == '[' && tok[hl - 1] == ']') { /* "[::1]:1883" as in a URL */
            tok[hl - 1] = '\0';
            tok++;
        }
        if (!*tok)
            return mq_fail(mq, at, "address without a host");
        struct mq_addr *a = mq_grow(&c->addrs, &c->n_addrs, sizeof(*a));
        if (!a || !(a->host = strdup(tok)))
            return mq_oom(mq);
        a->port = port;
    }
    if (!c->n_addrs)
        return mq_fail(mq, at, "empty address value");
    return 0;
}

static bool valid_prefix(const char *s)
{
    return mqc_topic_name_check((const uint8_t *)s, strlen(s)) == MQC_OK;
}

/* topic PATTERN [[[out | in | both] QOS] LOCAL-PREFIX REMOTE-PREFIX] (conf.c, bridge.c) */
static int parse_topic(struct mq *mq, struct mq_at at, struct mq_conn *c, const char *line,
                       char **p)
{
    char *pattern = mq_next_tok(p), *tok;
    char *lpfx = NULL, *rpfx = NULL;
    enum mq_dir dir = MQ_OUT;
    int qos = 0;

    if (!pattern)
        return mq_fail(mq, at, "empty topic value");
    if ((tok = mq_next_tok(p))) {
        if (!strcasecmp(tok, "out"))
            dir = MQ_OUT;
        else if (!strcasecmp(tok, "in"))
            dir = MQ_IN;
        else if (!strcasecmp(tok, "both"))
            dir = MQ_BOTH;
        else
            return mq_fail(mq, at, "invalid bridge topic direction \"%s\" (out, in or both)", tok);
        if ((tok = mq_next_tok(p)) && tok[0] != '#') {
            if (strlen(tok) != 1 || tok[0] < '0' || tok[0] > '2')
                return mq_fail(mq, at, "invalid bridge topic QoS \"%s\" (0, 1 or 2)", tok);
            qos = tok[0] - '0';
            if ((tok = mq_next_tok(p)) && tok[0] != '#') {
                if (strcmp(tok, "\"\""))
                    lpfx = tok;
                if ((tok = mq_next_tok(p)) && tok[0] != '#' && strcmp(tok, "\"\""))
                    rpfx = tok;
            }
        }
    }
    bool empty = !strcmp(pattern, "\"\"");
    if (empty && (!lpfx || !rpfx))
        return mq_fail(
            mq, at,
            "invalid bridge remapping: a pattern of \"\" needs both a local and a remote "
            "prefix");
    if (lpfx && !valid_prefix(lpfx))
        return mq_fail(mq, at, "invalid bridge topic local prefix \"%s\"", lpfx);
    if (rpfx && !valid_prefix(rpfx))
        return mq_fail(mq, at, "invalid bridge topic remote prefix \"%s\"", rpfx);
    const char *pf[2] = {lpfx, rpfx};
    for (int i = 0; i < 2; i++) {
        char *full = mq_fmt_str("%s%s", pf[i] ? pf[i] : "", empty ? "" : pattern);
        if (!full)
            return mq_oom(mq);
        bool ok = mqc_topic_filter_check((const uint8_t *)full, strlen(full)) == MQC_OK;
        if (ok && !strncmp(full, "$share/", 7))
            ok = false;
        if (!ok) {
            mq_fail(mq, at, "invalid bridge topic: %s \"%s\" is not a valid topic filter",
                    i ? "remote" : "local", full);
            free(full);
            return -EINVAL;
        }
        free(full);
    }
    struct mq_topic *t = mq_grow(&c->topics, &c->n_topics, sizeof(*t));
    if (!t)
        return mq_oom(mq);
    t->at = at;
    t->dir = dir;
    t->qos = qos;
    if (!(t->text = strdup(line)) || (!empty && !(t->pattern = strdup(pattern))) ||
        (lpfx && !(t->lpfx = strdup(lpfx))) || (rpfx && !(t->rpfx = strdup(rpfx))))
        return mq_oom(mq);
    return 0;
}

static int no_equivalent(struct mq *mq, struct mq_conn *c, struct mq_at at, const char *name,
                         const char *value, const char *why)
{
    char w[300];
    return mq_note(mq, c, "%s%s%s (%s): %s", name, *value ? " " : "", value,
                   mq_where(w, sizeof(w), at), why);
}

/* Options carried over into fields of c, or turned into a comment. */
int mq_bridge_option(struct mq *mq, struct mq_at at, struct mq_conn *c, const char *name,
                     const char *line, char **p)
{
    int v, rc;
    char *s;

    if (!strcmp(name, "address") || !strcmp(name, "addresses"))
        return parse_addresses(mq, at, c, p);
    if (!strcmp(name, "topic"))
        return parse_topic(mq, at, c, line, p);
    if (!strcmp(name, "bridge_protocol_version")) {
        s = mq_rest_of(p);
        if (!strcmp(s, "mqttv31"))
            c->version = MQC_V31;
        else if (!strcmp(s, "mqttv311"))
            c->version = MQC_V311;
        else if (!strcmp(s, "mqttv50"))
            c->version = MQC_V5;
        else
            return mq_fail(mq, at,
                           "invalid bridge_protocol_version value \"%s\" (mqttv31, mqttv311 or "
                           "mqttv50)",
                           s);
        return 0;
    }
    if (!strcmp(name, "remote_clientid") || !strcmp(name, "clientid"))
        return mq_get_string(mq, at, name, p, &c->remote_clientid);
    if (!strcmp(name, "remote_username") || !strcmp(name, "username"))
        return mq_get_string(mq, at, name, p, &c->username);
    if (!strcmp(name, "remote_password") || !strcmp(name, "password"))
        return mq_get_string(mq, at, name, p, &c->password);
    if (!strcmp(name, "local_clientid"))
        return mq_get_string(mq, at, name, p, &c->local_clientid);
    if (!strcmp(name, "local_username"))
        return mq_get_string(mq, at, name, p, &c->local_username);
    if (!strcmp(name, "local_password"))
        return mq_get_string(mq, at, name, p, &c->local_password);
    if (!strcmp(name, "notification_topic"))
        return mq_get_string(mq, at, name, p, &c->notification_topic);
    if (!strcmp(name, "cleansession"))
        return mq_get_bool(mq, at, name, p, &c->cleansession);
    if (!strcmp(name, "local_cleansession"))
        return mq_get_bool(mq, at, name, p, &c->local_cleansession);
    if (!strcmp(name, "notifications"))
        return mq_get_bool(mq, at, name, p, &c->notifications);
    if (!strcmp(name, "notifications_local_only"))
        return mq_get_bool(mq, at, name, p, &c->notif_local_only);
    if (!strcmp(name, "bridge_insecure"))
        return mq_get_bool(mq, at, name, p, &c->insecure);
    if (!strcmp(name, "bridge_outgoing_retain"))
        return mq_get_bool(mq, at, name, p, &c->outgoing_retain);
    if (!strcmp(name, "try_private"))
        return mq_get_bool(mq, at, name, p, &c->try_private);
    if (!strcmp(name, "keepalive_interval")) {
        if ((rc = mq_get_uint(mq, at, name, mq_next_tok(p), 65535, &v)) < 0)
            return rc;
        c->keepalive = v < 5 ? 5 : v; /* Mosquitto's minimum */
        return 0;
    }
    if (!strcmp(name, "restart_timeout")) {
        int cap = 0;
        if ((rc = mq_get_uint(mq, at, name, mq_next_tok(p), INT_MAX / 1000, &v)) < 0)
            return rc;
        if ((s = mq_next_tok(p)) && s[0] != '#') {
            if ((rc = mq_get_uint(mq, at, name, s, INT_MAX / 1000, &cap)) < 0)
                return rc;
            if (cap < v)
                return mq_fail(mq, at, "restart_timeout: the cap %d is lower than the base %d", cap,
                               v);
        }
        c->restart_base = v < 1 ? 1 : v;
        c->restart_cap = cap;
        return 0;
    }
    if (!strcmp(name, "bridge_cafile"))
        return mq_get_path(mq, at, name, p, &c->cafile);
    if (!strcmp(name, "bridge_capath"))
        return mq_get_path(mq, at, name, p, &c->capath);
    if (!strcmp(name, "bridge_certfile"))
        return mq_get_path(mq, at, name, p, &c->certfile);
    if (!strcmp(name, "bridge_keyfile"))
        return mq_get_path(mq, at, name, p, &c->keyfile);
    if (!strcmp(name, "bridge_alpn"))
        return mq_get_string(mq, at, name, p, &c->alpn);
    if (!strcmp(name, "bridge_tls_version"))
        return mq_get_string(mq, at, name, p, &c->tls_version);
    if (!strcmp(name, "bridge_bind_address"))
        return mq_get_string(mq, at, name, p, &c->bind_address);

    /* The rest has no field of its own: a comment says what replaces it, if anything. */
    const char *why;
    s = mq_rest_of(p);
    if (!strcmp(name, "bridge_psk")) {
        c->psk = strdup("set");
        if (!c->psk)
            return mq_oom(mq);
        return no_equivalent(mq, c, at, name, "...",
                             "TLS-PSK is not supported: the remote listener must offer a "
                             "certificate (mqtts:// is used)");
    }
    if (!strcmp(name, "bridge_identity"))
        why = "TLS-PSK is not supported";
    else if (!strcmp(name, "start_type"))
        why = !strcmp(s, "automatic")
                  ? "mqtt-relay's behaviour too: it connects at start and always reconnects"
                  : "no equivalent: mqtt-relay connects at start and always reconnects (as "
                    "start_type automatic)";
    else if (!strcmp(name, "idle_timeout") || !strcmp(name, "threshold"))
        why = "no equivalent: only used by start_type lazy; mqtt-relay stays connected";
    else if (!strcmp(name, "round_robin"))
        why = (!strcmp(s, "false") || !strcmp(s, "0"))
                  ? "mqtt-relay's behaviour too: the first url is preferred, probed while on "
                    "a fallback and taken back once it answers"
                  : "no equivalent: mqtt-relay always prefers the first url and returns to it "
                    "once it answers";
    else if (!strcmp(name, "bridge_attempt_unsubscribe"))
        why = "no equivalent: mqtt-relay subscribes to its routes' filters only and sends no "
              "UNSUBSCRIBE for \"out\" topics";
    else if (!strcmp(name, "bridge_max_packet_size"))
        why = "no equivalent: mqtt-relay honours the size the broker announces (MQTT 5) and "
              "drops larger messages, counted as too_large; max_packet_size limits what it "
              "accepts, not what it sends";
    else if (!strcmp(name, "bridge_require_ocsp"))
        why = "no equivalent: mqtt-relay does not check OCSP";
    else
        why = "not known to this converter: no equivalent";
    return no_equivalent(mq, c, at, name, s, why);
}
