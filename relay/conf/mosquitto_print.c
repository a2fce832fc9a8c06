/*
 * mosquitto_print.c: prints the mqtt-relay configuration that `--from-mosquitto` built (a
 * struct mq read by mosquitto.c): libconfig text with a comment on each setting saying which
 * Mosquitto option it came from, and on each option that has no equivalent.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/mosquitto_internal.h"
#include "core/relay.h"

/* ---- output ------------------------------------------------------------------------------- */

/* A libconfig string literal. */
static void put_str(FILE *o, const char *s)
{
    fputc('"', o);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(o, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", o);
        else if (c == '\t')
            fputs("\\t", o);
        else if (c < 0x20 || c == 0x7f)
            fprintf(o, "\\x%02x", c);
        else
            fputc(c, o);
    }
    fputc('"', o);
}

/* "    key = "value";   # comment" */
static void kv_str(FILE *o, const char *ind, const char *key, const char *v, const char *comment)
{
    fprintf(o, "%s%s = ", ind, key);
    put_str(o, v);
    fputc(';', o);
    if (comment && *comment)
        fprintf(o, "  # %s", comment);
    fputc('\n', o);
}

static void kv_raw(FILE *o, const char *ind, const char *key, const char *v, const char *comment)
{
    fprintf(o, "%s%s = %s;", ind, key, v);
    if (comment && *comment)
        fprintf(o, "  # %s", comment);
    fputc('\n', o);
}

/* A comment, wrapped at about 100 columns. */
static void comment(FILE *o, const char *ind, const char *text)
{
    size_t width = 98 - strlen(ind), col = 0;
    const char *s = text;
    fprintf(o, "%s#", ind);
    while (*s) {
        size_t n = strcspn(s, " ");
        if (col > 0 && col + 1 + n > width) {
            fprintf(o, "\n%s# ", ind);
            col = 0;
        } else {
            fputc(' ', o);
            col++;
        }
        fwrite(s, 1, n, o);
        col += n;
        s += n;
        while (*s == ' ')
            s++;
    }
    fputc('\n', o);
}

static const char *version_text(int v)
{
    return v == MQC_V31 ? "3.1" : v == MQC_V5 ? "5" : "3.1.1";
}

static const char *mosquitto_version(int v)
{
    return v == MQC_V31 ? "mqttv31" : v == MQC_V5 ? "mqttv50" : "mqttv311";
}

static bool listener_plain(const struct mq_listener *l)
{
    return !l->unix_socket && !l->ws && !l->tls && !l->mount;
}

/* The listener the relay reaches the local broker on: the first plain MQTT one; else the first
 * that is not a Unix socket; else NULL (Mosquitto's own default: 127.0.0.1:1883). */
static const struct mq_listener *local_listener(const struct mq *mq)
{
    const struct mq_listener *any = NULL;
    for (size_t i = 0; i <= mq->n_lis; i++) {
        const struct mq_listener *l = i < mq->n_lis ? &mq->lis[i] : &mq->deflis;
        if (i == mq->n_lis && !mq->have_deflis)
            break;
        if (listener_plain(l))
            return l;
        if (!any && !l->unix_socket)
            any = l;
    }
    return any;
}

static void put_url(FILE *o, const char *scheme, const char *host, unsigned port)
{
    char *u = strchr(host, ':') ? mq_fmt_str("%s://[%s]:%u", scheme, host, port)
                                : mq_fmt_str("%s://%s:%u", scheme, host, port);
    put_str(o, u ? u : "");
    free(u);
}

static void print_local(const struct mq *mq, FILE *o)
{
    const struct mq_listener *l = local_listener(mq);
    const struct mq_conn *first = NULL, *cred = NULL;
    char w[300];
    const char *host = l && l->host ? l->host : "127.0.0.1";
    if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !*host)
        host = "127.0.0.1";
    const char *scheme = !l      ? "mqtt"
                         : l->ws ? (l->tls ? "wss" : "ws")
                                 : (l->tls ? "mqtts" : "mqtt");

    fprintf(o, "  {\n");
    comment(o, "    ",
            "The Mosquitto broker that held the bridges: mqtt-relay is one more client of it.");
    fprintf(o, "    name = \"" LOCAL_NAME "\";\n    url = ");
    put_url(o, scheme, host, l ? l->port : 1883);
    fputc(';', o);
    if (!l)
        fprintf(o, "  # no listener in the file: Mosquitto's default\n");
    else if (l == &mq->deflis)
        fprintf(o, "  # port %u (%s)\n", l->port, mq_where(w, sizeof(w), l->at));
    else
        fprintf(o, "  # listener %u%s%s (%s)\n", l->port, l->host ? " " : "",
                l->host ? l->host : "", mq_where(w, sizeof(w), l->at));
    if (l && !listener_plain(l))
        comment(o, "    ",
                l->mount ? "This listener has a mount_point: mqtt-relay's topics there are "
                           "prefixed by it, which Mosquitto's bridges were not. Add a plain "
                           "listener on 127.0.0.1 and use it here."
                         : "No plain MQTT listener: this one uses TLS or WebSocket; add "
                           "tls.ca_file if its certificate is not from the system store.");
    kv_str(o, "    ", "version", "5", "Mosquitto 2.0 speaks MQTT 5: the loop guard works here");

    for (size_t i = 0; i < mq->n_conns; i++) {
        if (!first)
            first = &mq->conns[i];
        if (!cred && mq->conns[i].local_username)
            cred = &mq->conns[i];
    }
    if (cred) {
        kv_str(o, "    ", "username", cred->local_username, "local_username");
        if (cred->local_password)
            kv_str(o, "    ", "password", cred->local_password, "local_password");
        for (size_t i = 0; i < mq->n_conns; i++) {
            const struct mq_conn *c = &mq->conns[i];
            if (c != cred && c->local_username &&
                (strcmp(c->local_username, cred->local_username) ||
                 !mq_same_prefix(c->local_password, cred->local_password))) {
                char *t = mq_fmt_str("connection %s had other local credentials "
                                     "(local_username %s): one connection serves every bridge here",
                                     c->name, c->local_username);
                if (t)
                    comment(o, "    ", t);
                free(t);
            }
        }
    }
    int cs = first->local_cleansession >= 0 ? first->local_cleansession
             : first->cleansession >= 0     ? first->cleansession
                                            : 0;
    kv_raw(o, "    ", "clean_start", cs ? "true" : "false",
           first->local_cleansession >= 0 ? "local_cleansession"
                                          : "Mosquitto: local_cleansession defaults to "
                                            "cleansession (false)");
    fprintf(o, "  }");
}

static void print_tls(const struct mq_conn *c, FILE *o)
{
    fprintf(o, "    tls = {\n");
    if (c->cafile)
        kv_str(o, "      ", "ca_file", c->cafile, "bridge_cafile");
    if (c->capath)
        comment(o, "      ",
                c->cafile ? "bridge_capath is not supported (use bridge_cafile): ignored, "
                            "ca_file is used"
                          : "bridge_capath is not supported (use bridge_cafile): without "
                            "ca_file the system's CA store is used; put the certificates of "
                            "that directory into one file and name it in ca_file");
    if (c->certfile && c->keyfile) {
        kv_str(o, "      ", "cert_file", c->certfile, "bridge_certfile");
        kv_str(o, "      ", "key_file", c->keyfile, "bridge_keyfile");
    } else if (c->certfile || c->keyfile) {
        comment(o, "      ",
                c->certfile ? "bridge_certfile without bridge_keyfile: no client certificate"
                            : "bridge_keyfile without bridge_certfile: no client certificate");
    }
    if (c->insecure == 1) {
        kv_raw(o, "      ", "verify", "true", NULL);
        comment(o, "      ",
                "bridge_insecure true made Mosquitto skip the host name check only (the chain "
                "was still verified against the CA). mqtt-relay has no such switch: the check "
                "stays on. If the certificate does not carry the host name of the url, set "
                "server_name to a name it carries; verify = false would also drop the chain "
                "check.");
    } else {
        kv_raw(o, "      ", "verify", "true",
               "Mosquitto verified the chain and the host name as well");
    }
    if (c->alpn) {
        char *v = mq_fmt_str("[\"%s\"]", c->alpn), *why = mq_fmt_str("bridge_alpn %s", c->alpn);
        if (v && why)
            kv_raw(o, "      ", "alpn", v, why);
        free(v);
        free(why);
    }
    if (c->tls_version) {
        const char *v = c->tls_version;
        char *why = mq_fmt_str("bridge_tls_version %s%s", v,
                               !strcmp(v, "tlsv1.2") ? ": Mosquitto used TLS 1.2 only, mqtt-relay "
                                                       "takes 1.3 too when the broker offers it"
                                                     : "");
        if (why && (!strcmp(v, "tlsv1.3") || !strcmp(v, "tlsv1.2")))
            kv_str(o, "      ", "min_version", !strcmp(v, "tlsv1.3") ? "1.3" : "1.2", why);
        else if (why)
            comment(o, "      ",
                    "bridge_tls_version: mqtt-relay speaks TLS 1.2 and 1.3 only "
                    "(min_version \"1.2\", the default)");
        free(why);
    }
    fprintf(o, "    };\n");
}

static void print_conn(const struct mq *mq, const struct mq_conn *c, FILE *o)
{
    char w[300], *t;
    bool tls = c->cafile || c->capath || c->psk;
    int version = c->version ? c->version : MQC_V311;

    fprintf(o, "  {\n");
    t = mq_fmt_str("bridge \"%s\" (%s)%s", c->name, mq_where(w, sizeof(w), c->at),
                   strcmp(c->name, c->bname) ? ", renamed: broker names are letters, digits, '_' "
                                               "and '-', and \"local\" is the local broker"
                                             : "");
    if (t)
        comment(o, "    ", t);
    free(t);
    kv_str(o, "    ", "name", c->bname, NULL);
    fprintf(o, "    url = ");
    if (c->n_addrs > 1)
        fprintf(o, "[");
    for (size_t i = 0; i < c->n_addrs; i++) {
        if (i)
            fprintf(o, ", ");
        put_url(o, tls ? "mqtts" : "mqtt", c->addrs[i].host, c->addrs[i].port);
    }
    fprintf(o, "%s;  # address (%s)%s\n", c->n_addrs > 1 ? "]" : "",
            mq_where(w, sizeof(w), c->addr_at),
            tls ? ": without a port Mosquitto uses 1883, TLS or not" : "");

    if (c->loop_out >= 0) {
        kv_str(o, "    ", "version", "5", NULL);
        t = mq_fmt_str("bridge_protocol_version %s, raised to MQTT 5: routes %s and %s carry "
                       "overlapping topics both ways, and mqtt-relay's loop guard needs MQTT 5 "
                       "there (Mosquitto relied on try_private's bridge flag, which only a "
                       "Mosquitto remote honours). If the remote broker cannot speak MQTT 5, make "
                       "the topics of the two directions disjoint and set version = \"%s\".",
                       mosquitto_version(version), mq->routes[c->loop_out].name,
                       mq->routes[c->loop_in].name, version_text(version));
        if (t)
            comment(o, "    ", t);
        free(t);
        version = MQC_V5;
    } else {
        t = mq_fmt_str("bridge_protocol_version %s%s", mosquitto_version(version),
                       c->version ? "" : " (Mosquitto's default)");
        kv_str(o, "    ", "version", version_text(version), t);
        free(t);
    }

    char *id =
        c->remote_clientid ? strdup(c->remote_clientid) : mq_fmt_str("%s.%s", mq->host, c->name);
    if (id) {
        bool cut = version == MQC_V31 && strlen(id) > 23;
        if (cut)
            id[23] = '\0';
        kv_str(o, "    ", "client_id", id,
               cut ? "cut to the 23 bytes MQTT 3.1 allows"
               : c->remote_clientid
                   ? "remote_clientid"
                   : "Mosquitto's default remote_clientid: <host name>.<connection>");
    }
    if (c->username)
        kv_str(o, "    ", "username", c->username, "remote_username");
    if (c->password && (c->username || version == MQC_V5))
        kv_str(o, "    ", "password", c->password,
               "remote_password, copied as written in the Mosquitto file");
    else if (c->password)
        comment(o, "    ",
                "remote_password without remote_username: not sent (before MQTT 5 a "
                "password goes with a user name only)");
    t = mq_fmt_str("%d", c->keepalive >= 0 ? c->keepalive : 60);
    if (t)
        kv_raw(o, "    ", "keepalive", t,
               c->keepalive >= 0 ? "keepalive_interval"
                                 : "keepalive_interval (Mosquitto's "
                                   "default 60)");
    free(t);
    kv_raw(o, "    ", "clean_start", c->cleansession == 1 ? "true" : "false",
           c->cleansession >= 0 ? "cleansession" : "cleansession (Mosquitto's default false)");
    if (c->restart_base) {
        int cap = c->restart_cap ? c->restart_cap : c->restart_base;
        t = mq_fmt_str("{ min = %d; max = %d; }", c->restart_base * 1000, cap * 1000);
        if (t)
            kv_raw(o, "    ", "reconnect", t,
                   c->restart_cap ? "restart_timeout BASE CAP, in ms"
                                  : "restart_timeout, in ms (a constant delay)");
        free(t);
    } else {
        comment(o, "    ",
                "restart_timeout not given: Mosquitto waited 5 s, backing off to 30 s; "
                "mqtt-relay's default reconnect (0.25 s backing off to 30 s, jittered) is kept");
    }
    if (c->notifications != 0 && c->notif_local_only != 1) {
        char *topic = c->notification_topic ? strdup(c->notification_topic)
                                            : mq_fmt_str("$SYS/broker/connection/%s/state", id);
        if (topic)
            kv_str(o, "    ", "status_topic", topic,
                   c->notification_topic ? "notification_topic" : "notifications (default true)");
        comment(o, "    ",
                "Mosquitto published a retained \"1\" (up) and \"0\" (down, its Will) there "
                "and on the local broker; mqtt-relay publishes a retained \"online\" on "
                "connect and a retained Will \"offline\", on this broker only.");
        free(topic);
    } else if (c->notifications == 0) {
        comment(o, "    ", "notifications false: no status_topic");
    } else {
        comment(o, "    ",
                "notifications_local_only true: Mosquitto published the bridge state on the "
                "local broker only; mqtt-relay has no equivalent (its status_topic is published "
                "on the broker it belongs to), so none is set");
    }
    free(id);
    if (c->bind_address) {
        unsigned char a[16];
        char *why = mq_fmt_str("bridge_bind_address %s", c->bind_address);
        if (why && (inet_pton(AF_INET, c->bind_address, a) == 1 ||
                    inet_pton(AF_INET6, c->bind_address, a) == 1))
            kv_str(o, "    ", "bind_address", c->bind_address, why);
        else if (why)
            comment(o, "    ",
                    "bridge_bind_address is not an IP address: mqtt-relay's "
                    "bind_address takes an address of this machine, not a name");
        free(why);
    }
    if (tls)
        print_tls(c, o);
    else if (c->alpn || c->tls_version)
        comment(o, "    ",
                "bridge_alpn/bridge_tls_version without bridge_cafile or "
                "bridge_capath: Mosquitto used no TLS, nor does this");
    if (!tls && (c->certfile || c->keyfile || c->insecure >= 0))
        comment(o, "    ",
                "bridge_certfile/bridge_keyfile/bridge_insecure without bridge_cafile or "
                "bridge_capath: Mosquitto used no TLS, nor does this");
    if (c->local_clientid) {
        t = mq_fmt_str("local_clientid %s: no equivalent: mqtt-relay is one ordinary client of "
                       "the local broker for every bridge (client id \"<relay.id>-local\")",
                       c->local_clientid);
        if (t)
            comment(o, "    ", t);
        free(t);
    }
    if (c->outgoing_retain == 0)
        comment(o, "    ",
                "bridge_outgoing_retain false: the routes to this broker clear the retain flag "
                "(retain = \"clear\")");
    if (c->outgoing_retain == 1)
        comment(o, "    ",
                "bridge_outgoing_retain true: the default; the routes keep the retain flag");
    if (c->try_private == 1)
        comment(o, "    ",
                version == MQC_V5 ? "try_private true: no bridge flag in MQTT 5; No Local and "
                                    "the relay-path property keep loops out"
                                  : "try_private true: mqtt-relay's behaviour too: it sets the "
                                    "bridge flag and connects again without it if the broker "
                                    "refuses it");
    if (c->try_private == 0)
        comment(o, "    ",
                "try_private false: no switch in mqtt-relay: with MQTT 3.1/3.1.1 it sets the "
                "bridge flag and connects again without it if the broker refuses it");
    for (size_t i = 0; i < c->n_notes; i++)
        comment(o, "    ", c->notes[i]);
    fprintf(o, "  }");
}

static void print_route(const struct mq *mq, const struct mq_route *r, FILE *o)
{
    const struct mq_conn *c = &mq->conns[r->conn];
    const struct mq_topic *t = &c->topics[r->topic];
    char w[300], q[4];
    char *cm = mq_fmt_str("%s: %s (%s)", c->name, t->text, mq_where(w, sizeof(w), t->at));

    fprintf(o, "  {\n");
    if (cm)
        comment(o, "    ", cm);
    free(cm);
    kv_str(o, "    ", "name", r->name, NULL);
    kv_str(o, "    ", "from", r->out ? LOCAL_NAME : c->bname, NULL);
    kv_str(o, "    ", "to", r->out ? c->bname : LOCAL_NAME, NULL);
    kv_str(o, "    ", "filter", r->filter,
           r->out ? "LOCAL-PREFIX + PATTERN, subscribed on the local broker"
                  : "REMOTE-PREFIX + PATTERN, subscribed on the remote broker");
    kv_str(o, "    ", "topic", r->tpl,
           !strcmp(r->tpl, "${topic}") ? "unchanged"
           : r->out                    ? "REMOTE-PREFIX + what the pattern matched"
                                       : "LOCAL-PREFIX + what the pattern matched");
    snprintf(q, sizeof(q), "%d", t->qos);
    kv_raw(o, "    ", "qos", q, "the topic line's QoS, a maximum");
    kv_raw(o, "    ", "out_qos", q, NULL);
    if (r->out && c->outgoing_retain == 0)
        kv_str(o, "    ", "retain", "clear", "bridge_outgoing_retain false");
    fprintf(o, "  }");
}

void mq_print_all(const struct mq *mq, FILE *o)
{
    char *t;
    bool password = false;
    for (size_t i = 0; i < mq->n_conns; i++)
        password |= mq->conns[i].password || mq->conns[i].local_password;

    fprintf(o, "# mqtt-relay configuration converted by `mqtt-relay --from-mosquitto` (%s)\n",
            RELAY_VERSION_STRING);
    fprintf(o, "# from the Mosquitto configuration %s", mq->files[0]);
    for (size_t i = 1; i < mq->n_files; i++)
        fprintf(o, "%s%s", i == 1 ? "\n# and the files of its include_dir: " : ", ", mq->files[i]);
    fprintf(o, ".\n#\n");
    comment(o, "",
            "The broker that held the bridges is the broker \"local\"; each bridge connection "
            "is a broker of its own; each bridge topic line is a route (two for \"both\"): "
            "\"out\" routes go from local to the remote broker, \"in\" routes come back. "
            "Validate with: mqtt-relay -c FILE --check. Stop Mosquitto's bridges (remove "
            "their sections) before starting mqtt-relay, or messages cross twice.");
    if (mq->n_conns > 1)
        comment(o, "",
                "With several bridges, Mosquitto also passed messages from one remote broker "
                "on to another through the local broker; mqtt-relay does not receive its own "
                "publications back (MQTT 5 No Local), so add a route between two remote "
                "brokers if you relied on that.");
    if (password)
        comment(o, "",
                "This file holds passwords copied as written in the Mosquitto file: keep it "
                "as private as that one (chmod 600), or move each to a password_file.");
    if (mq->n_ignored) {
        size_t len = 0;
        for (size_t i = 0; i < mq->n_ignored; i++)
            len += strlen(mq->ignored[i]) + 2;
        char *list = calloc(1, len + 1);
        if (list) {
            for (size_t i = 0; i < mq->n_ignored; i++) {
                strcat(list, mq->ignored[i]);
                if (i + 1 < mq->n_ignored)
                    strcat(list, ", ");
            }
            t = mq_fmt_str("Broker options, not part of any bridge, were ignored (the first "
                           "listener only gave the local broker's address): %s.",
                           list);
            if (t)
                comment(o, "", t);
            free(t);
        }
        free(list);
    }
    comment(o, "",
            "Relative paths in the Mosquitto file were taken relative to its directory; this "
            "file uses absolute ones.");

    fprintf(o, "\nrelay: {\n");
    t = mq_fmt_str("%.58s-relay", mq->conns[0].bname);
    if (t)
        kv_str(o, "  ", "id", t, "set, so that --check never depends on the host name");
    free(t);
    fprintf(o, "};\n\nbrokers = (\n");
    print_local(mq, o);
    for (size_t i = 0; i < mq->n_conns; i++) {
        fprintf(o, ",\n");
        print_conn(mq, &mq->conns[i], o);
    }
    fprintf(o, "\n);\n\nroutes = (\n");
    for (size_t i = 0; i < mq->n_routes; i++) {
        if (i)
            fprintf(o, ",\n");
        print_route(mq, &mq->routes[i], o);
    }
    fprintf(o, "\n);\n");
}
