/*
 * test_mosquitto.c: relay_from_mosquitto() (`--from-mosquitto`). Each test writes a Mosquitto
 * configuration into a scratch directory, converts it, and loads the output back through
 * relay_config_load() (what `--check` does): every broker and route field that comes from the
 * Mosquitto file is checked, and each route's template is run on sample topics against
 * Mosquitto's own remapping (strip the source prefix, add the destination prefix). Errors are
 * checked by their exact "FILE:LINE: what" text.
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/load.h"
#include "conf/mosquitto.h"
#include "route/template.h"

/* ---- scratch directory ---------------------------------------------------------------------- */

struct scratch {
    char dir[64];
    char old[PATH_MAX];
    char host[256];
};

static int setup(void **state)
{
    struct scratch *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    snprintf(s->dir, sizeof(s->dir), "/tmp/relay-mosq-test.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    assert_non_null(getcwd(s->old, sizeof(s->old)));
    assert_int_equal(chdir(s->dir), 0);
    assert_int_equal(gethostname(s->host, sizeof(s->host)), 0);
    *state = s;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct scratch *s = *state;
    assert_int_equal(chdir(s->old), 0);
    nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(s);
    return 0;
}

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* Converts name; returns the output text (malloc'ed), *err_text the error output. */
static int convert(const char *name, char **out_text, char **err_text)
{
    size_t olen = 0, elen = 0;
    FILE *o = open_memstream(out_text, &olen), *e = open_memstream(err_text, &elen);
    assert_non_null(o);
    assert_non_null(e);
    int rc = relay_from_mosquitto(name, o, e);
    assert_int_equal(fclose(o), 0);
    assert_int_equal(fclose(e), 0);
    return rc;
}

/* Writes mosquitto.conf, converts it, writes relay.conf and loads it: must all succeed. */
static char *convert_and_load(const char *mosq, struct relay_config *cfg)
{
    char *out, *err, lerr[1024] = "";
    write_file("mosquitto.conf", mosq);
    int rc = convert("mosquitto.conf", &out, &err);
    if (rc != 0)
        print_error("conversion failed: %s\n", err);
    assert_string_equal(err, "");
    assert_int_equal(rc, 0);
    free(err);
    write_file("relay.conf", out);
    memset(cfg, 0, sizeof(*cfg));
    rc = relay_config_load("relay.conf", cfg, lerr, sizeof(lerr));
    if (rc != 0)
        print_error("--check refuses the output: %s\n%s\n", lerr, out);
    assert_string_equal(lerr, "");
    assert_int_equal(rc, 0);
    return out;
}

static void expect_error(const char *mosq, const char *want)
{
    char *out, *err;
    write_file("mosquitto.conf", mosq);
    int rc = convert("mosquitto.conf", &out, &err);
    assert_string_equal(err, want);
    assert_int_equal(rc, -EINVAL);
    assert_string_equal(out, ""); /* nothing half-printed */
    free(out);
    free(err);
}

static const struct relay_broker_config *broker(const struct relay_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_brokers; i++)
        if (!strcmp(cfg->brokers[i].name, name))
            return &cfg->brokers[i];
    fail_msg("no broker %s", name);
    return NULL;
}

static const struct relay_route_config *route(const struct relay_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (!strcmp(cfg->routes[i].name, name))
            return &cfg->routes[i];
    fail_msg("no route %s", name);
    return NULL;
}

/* Checks one route: endpoints, filter, template, QoS (a maximum: qos = out_qos = QOS). */
static void check_route(const struct relay_config *cfg, const char *name, const char *from,
                        const char *to, const char *filter, const char *tpl, int qos)
{
    const struct relay_route_config *r = route(cfg, name);
    assert_string_equal(cfg->brokers[r->from].name, from);
    assert_string_equal(cfg->brokers[r->to].name, to);
    assert_string_equal(r->filter, filter);
    assert_string_equal(r->topic, tpl);
    assert_int_equal(r->qos, qos);
    assert_int_equal(r->out_qos, qos);
    assert_null(r->share);
}

/* Mosquitto's remapping (bridge.c): a topic matching the source side loses the source prefix
 * (when it starts with it) and gains the destination prefix. */
static char *mosquitto_remap(const char *topic, const char *src, const char *dst)
{
    char *s;
    if (src && !strncmp(topic, src, strlen(src)))
        topic += strlen(src);
    assert_true(asprintf(&s, "%s%s", dst ? dst : "", topic) >= 0);
    return s;
}

/* The route's template applied to topic equals Mosquitto's remapping. */
static void check_mapping(const struct relay_config *cfg, const char *name, const char *topic,
                          const char *src_prefix, const char *dst_prefix)
{
    const struct relay_route_config *r = route(cfg, name);
    struct relay_tpl t;
    char err[200];
    uint8_t out[512];
    size_t len = 0;
    assert_true(mqc_topic_match((const uint8_t *)r->filter, strlen(r->filter),
                                (const uint8_t *)topic, strlen(topic)));
    assert_int_equal(relay_tpl_compile(&t, r->topic, r->filter, err, sizeof(err)), 0);
    assert_int_equal(
        relay_tpl_expand(&t, (const uint8_t *)topic, strlen(topic), out, sizeof(out), &len), 0);
    relay_tpl_cleanup(&t);
    char *want = mosquitto_remap(topic, src_prefix, dst_prefix);
    char *got = strndup((const char *)out, len);
    assert_string_equal(got, want);
    free(want);
    free(got);
}

/* ---- conversions ---------------------------------------------------------------------------- */

/* The plainest bridge: "topic # both 1" on 3.1.1 (the defaults everywhere). */
static void test_both_defaults(void **state)
{
    struct scratch *s = *state;
    struct relay_config cfg;
    char id[300];
    char *out = convert_and_load("connection cloud\n"
                                 "address 192.0.2.10\n"
                                 "topic # both 1\n",
                                 &cfg);
    assert_string_equal(cfg.id, "cloud-relay");
    assert_int_equal(cfg.n_brokers, 2);
    assert_string_equal(cfg.brokers[0].name, "local");
    assert_string_equal(cfg.brokers[0].urls[0].text, "mqtt://127.0.0.1:1883");
    assert_int_equal(cfg.brokers[0].version, MQC_V5);
    assert_false(cfg.brokers[0].clean_start);

    const struct relay_broker_config *b = broker(&cfg, "cloud");
    assert_int_equal(b->n_urls, 1);
    assert_string_equal(b->urls[0].text, "mqtt://192.0.2.10:1883");
    /* overlapping both ways: the loop guard needs MQTT 5 on the remote, and says so */
    assert_int_equal(b->version, MQC_V5);
    assert_non_null(strstr(out, "bridge_protocol_version mqttv311, raised to MQTT 5"));
    snprintf(id, sizeof(id), "%s.cloud", s->host);
    assert_string_equal(b->client_id, id);
    assert_null(b->username);
    assert_null(b->password);
    assert_int_equal(b->keepalive, 60);
    assert_false(b->clean_start);
    assert_false(b->has_tls);
    snprintf(id, sizeof(id), "$SYS/broker/connection/%s.cloud/state", s->host);
    assert_string_equal(b->status_topic, id);
    assert_int_equal(b->reconnect_min_ms, 250); /* mqtt-relay's default kept, with a comment */

    assert_int_equal(cfg.n_routes, 2);
    check_route(&cfg, "cloud-out-1", "local", "cloud", "#", "${topic}", 1);
    check_route(&cfg, "cloud-in-1", "cloud", "local", "#", "${topic}", 1);
    assert_int_equal(route(&cfg, "cloud-out-1")->retain, RELAY_RETAIN_KEEP);
    /* the broker options comment is absent: there were none */
    assert_null(strstr(out, "Broker options"));
    relay_config_cleanup(&cfg);
    free(out);
}

/* Prefixes in both directions, '+' levels, QoS 0/1/2, "" as an empty prefix and as the
 * pattern. */
static void test_prefixes(void **state)
{
    (void)state;
    struct relay_config cfg;
    char *out = convert_and_load("listener 1884 0.0.0.0\n"
                                 "allow_anonymous true\n"
                                 "\n"
                                 "connection edge\n"
                                 "address broker.example:1999\n"
                                 "remote_clientid edge-bridge\n"
                                 "topic sensors/# out 1 site/ cloud/\n"      /* 7 */
                                 "topic cmd/+/+/set in 2 edge/ cloud/cmd/\n" /* 8 */
                                 "topic alarms/+ out 0 \"\" cloud/alarms/\n" /* 9 */
                                 "topic state/# in 1 local/ \"\"\n"          /* 10 */
                                 "topic \"\" out 2 a/b/c x/y\n"              /* 11 */
                                 "topic logs/#\n"                            /* 12: out 0 */
                                 "topic cfg/+/# both 2 dev/ fleet/\n",       /* 13 */
                                 &cfg);
    assert_string_equal(cfg.brokers[0].urls[0].text, "mqtt://127.0.0.1:1884");
    const struct relay_broker_config *b = broker(&cfg, "edge");
    assert_string_equal(b->urls[0].text, "mqtt://broker.example:1999");
    assert_string_equal(b->client_id, "edge-bridge");
    assert_string_equal(b->status_topic, "$SYS/broker/connection/edge-bridge/state");
    /* "both" writes fleet/cfg/... on the remote and subscribes to it there: a loop that
     * only MQTT 5 can guard; the comment names the first pair */
    assert_int_equal(b->version, MQC_V5);
    assert_non_null(strstr(out, "raised to MQTT 5: routes edge-out-7 and edge-in-7 carry"));
    assert_non_null(strstr(out, "allow_anonymous, listener") ||
                    strstr(out, "listener, allow_anonymous"));

    assert_int_equal(cfg.n_routes, 8);
    check_route(&cfg, "edge-out-1", "local", "edge", "site/sensors/#", "cloud/sensors/${#}", 1);
    check_mapping(&cfg, "edge-out-1", "site/sensors/t/1", "site/", "cloud/");
    check_mapping(&cfg, "edge-out-1", "site/sensors", "site/", "cloud/");
    check_route(&cfg, "edge-in-2", "edge", "local", "cloud/cmd/cmd/+/+/set",
                "edge/cmd/${1}/${2}/set", 2);
    check_mapping(&cfg, "edge-in-2", "cloud/cmd/cmd/a/b/set", "cloud/cmd/", "edge/");
    check_route(&cfg, "edge-out-3", "local", "edge", "alarms/+", "cloud/alarms/alarms/${1}", 0);
    check_mapping(&cfg, "edge-out-3", "alarms/fire", NULL, "cloud/alarms/");
    check_route(&cfg, "edge-in-4", "edge", "local", "state/#", "local/state/${#}", 1);
    check_mapping(&cfg, "edge-in-4", "state/x/y", NULL, "local/");
    check_route(&cfg, "edge-out-5", "local", "edge", "a/b/c", "x/y", 2);
    check_mapping(&cfg, "edge-out-5", "a/b/c", "a/b/c", "x/y");
    check_route(&cfg, "edge-out-6", "local", "edge", "logs/#", "${topic}", 0);
    check_route(&cfg, "edge-out-7", "local", "edge", "dev/cfg/+/#", "fleet/cfg/${1}/${#}", 2);
    check_mapping(&cfg, "edge-out-7", "dev/cfg/k/a/b", "dev/", "fleet/");
    check_route(&cfg, "edge-in-7", "edge", "local", "fleet/cfg/+/#", "dev/cfg/${1}/${#}", 2);
    check_mapping(&cfg, "edge-in-7", "fleet/cfg/k/a/b", "fleet/", "dev/");
    relay_config_cleanup(&cfg);
    free(out);
}

/* The routes section, text for text: names, comments, order. */
static void test_route_text(void **state)
{
    (void)state;
    struct relay_config cfg;
    char *out = convert_and_load("connection c1\n"
                                 "address h\n"
                                 "remote_clientid x\n"
                                 "topic a/# in 2 l/ r/\n",
                                 &cfg);
    const char *want = "routes = (\n"
                       "  {\n"
                       "    # c1: topic a/# in 2 l/ r/ (mosquitto.conf:4)\n"
                       "    name = \"c1-in-1\";\n"
                       "    from = \"c1\";\n"
                       "    to = \"local\";\n"
                       "    filter = \"r/a/#\";  # REMOTE-PREFIX + PATTERN, subscribed on the "
                       "remote broker\n"
                       "    topic = \"l/a/${#}\";  # LOCAL-PREFIX + what the pattern matched\n"
                       "    qos = 2;  # the topic line's QoS, a maximum\n"
                       "    out_qos = 2;\n"
                       "  }\n"
                       ");\n";
    const char *routes = strstr(out, "routes = (");
    assert_non_null(routes);
    assert_string_equal(routes, want);
    relay_config_cleanup(&cfg);
    free(out);
}

/* Versions, credentials, session and reconnect options, notifications. */
static void test_options(void **state)
{
    (void)state;
    struct relay_config cfg;
    char *out = convert_and_load("connection v5\n"
                                 "address h1:1884\n"
                                 "bridge_protocol_version mqttv50\n"
                                 "remote_username user one\n"
                                 "remote_password p\"a\\ss word\n"
                                 "keepalive_interval 2\n"
                                 "cleansession true\n"
                                 "restart_timeout 10 60\n"
                                 "notification_topic bridges/v5/state\n"
                                 "topic a/# out 1\n"
                                 "connection v31\n"
                                 "address h2\n"
                                 "bridge_protocol_version mqttv31\n"
                                 "remote_clientid a-very-long-client-id-for-mqtt-3.1\n"
                                 "restart_timeout 20\n"
                                 "notifications false\n"
                                 "bridge_outgoing_retain false\n"
                                 "topic b/# out 1\n"
                                 "topic c/# in 1\n",
                                 &cfg);
    assert_string_equal(cfg.id, "v5-relay");
    const struct relay_broker_config *b = broker(&cfg, "v5");
    assert_int_equal(b->version, MQC_V5);
    assert_string_equal(b->username, "user one");
    assert_string_equal(b->password, "p\"a\\ss word");
    assert_int_equal(b->keepalive, 5); /* Mosquitto's minimum */
    assert_true(b->clean_start);
    assert_int_equal(b->reconnect_min_ms, 10000);
    assert_int_equal(b->reconnect_max_ms, 60000);
    assert_string_equal(b->status_topic, "bridges/v5/state");
    assert_non_null(strstr(out, "chmod 600"));
    /* the local broker's session follows the first bridge's cleansession */
    assert_true(broker(&cfg, "local")->clean_start);

    b = broker(&cfg, "v31");
    assert_int_equal(b->version, MQC_V31);
    assert_string_equal(b->client_id, "a-very-long-client-id-f"); /* 3.1: 23 bytes at most */
    assert_int_equal(b->reconnect_min_ms, 20000);
    assert_int_equal(b->reconnect_max_ms, 20000);
    assert_null(b->status_topic);
    assert_int_equal(route(&cfg, "v31-out-1")->retain, RELAY_RETAIN_CLEAR);
    assert_int_equal(route(&cfg, "v31-in-2")->retain, RELAY_RETAIN_KEEP);
    assert_int_equal(route(&cfg, "v5-out-1")->retain, RELAY_RETAIN_KEEP);
    relay_config_cleanup(&cfg);
    free(out);
}

/* Options without an equivalent are named in comments; broker options in one list. */
static void test_comments(void **state)
{
    (void)state;
    struct relay_config cfg;
    char *out = convert_and_load("per_listener_settings false\n"
                                 "connection c\n"
                                 "address h\n"
                                 "try_private false\n"
                                 "start_type lazy\n"
                                 "idle_timeout 30\n"
                                 "threshold 5\n"
                                 "round_robin true\n"
                                 "local_clientid loc\n"
                                 "bridge_attempt_unsubscribe false\n"
                                 "max_queued_messages 5000\n" /* a broker option */
                                 "bridge_max_packet_size 1000\n"
                                 "bridge_bind_address 10.0.0.2\n"
                                 "notifications_local_only true\n"
                                 "bridge_something_new 1\n"
                                 "local_username lu\n"
                                 "local_password lp\n"
                                 "topic a in\n",
                                 &cfg);
    static const char *const names[] = {"# try_private false:",
                                        "# start_type lazy (mosquitto.conf:5): no equivalent",
                                        "# idle_timeout 30",
                                        "# threshold 5",
                                        "# round_robin true",
                                        "# local_clientid loc:",
                                        "# bridge_attempt_unsubscribe false",
                                        "# bridge_max_packet_size 1000",
                                        "# bridge_bind_address 10.0.0.2",
                                        "# notifications_local_only true",
                                        "# bridge_something_new 1",
                                        "per_listener_settings, max_queued_messages."};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strstr(out, names[i]))
            fail_msg("no \"%s\" in\n%s", names[i], out);
    assert_null(broker(&cfg, "c")->status_topic);
    assert_string_equal(broker(&cfg, "c")->bind_address, "10.0.0.2"); /* issue 13 */
    assert_string_equal(broker(&cfg, "local")->username, "lu");
    assert_string_equal(broker(&cfg, "local")->password, "lp");
    check_route(&cfg, "c-in-1", "c", "local", "a", "${topic}", 0);
    relay_config_cleanup(&cfg);
    free(out);
}

/* Where the local broker is: the first plain listener; port; none; IPv6. */
static void test_listeners(void **state)
{
    (void)state;
    static const struct {
        const char *head, *url;
    } cases[] = {
        {"", "mqtt://127.0.0.1:1883"},
        {"port 1990\n", "mqtt://127.0.0.1:1990"},
        {"listener 8883\ncertfile /x.pem\nlistener 9001\nprotocol websockets\n"
         "listener 1885 10.1.2.3\n",
         "mqtt://10.1.2.3:1885"},
        {"listener 1886 ::\n", "mqtt://127.0.0.1:1886"},
        {"listener 1887 ::1\n", "mqtt://[::1]:1887"},
        {"listener 0 /run/m.sock\nlistener 1888 localhost\n", "mqtt://localhost:1888"},
        {"listener 9002\nprotocol websockets\n", "ws://127.0.0.1:9002"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct relay_config cfg;
        char *text;
        assert_true(asprintf(&text, "%sconnection c\naddress h\ntopic # out\n", cases[i].head) > 0);
        char *out = convert_and_load(text, &cfg);
        assert_string_equal(broker(&cfg, "local")->urls[0].text, cases[i].url);
        relay_config_cleanup(&cfg);
        free(out);
        free(text);
    }
}

/* TLS options, several addresses, IPv6 with its port. */
static void test_tls(void **state)
{
    struct scratch *s = *state;
    struct relay_config cfg;
    char path[200];
    write_file("ca.pem", "x\n");
    write_file("client.pem", "x\n");
    write_file("client.key", "x\n");
    char *out = convert_and_load("connection secure\n"
                                 "addresses a.example:8883 [::1]:8884 b.example\n"
                                 "bridge_cafile ca.pem\n" /* relative: to the file's directory */
                                 "bridge_certfile client.pem\n"
                                 "bridge_keyfile client.key\n"
                                 "bridge_insecure true\n"
                                 "bridge_tls_version tlsv1.2\n"
                                 "bridge_alpn x-amzn-mqtt-ca\n"
                                 "topic t/# out 1\n",
                                 &cfg);
    const struct relay_broker_config *b = broker(&cfg, "secure");
    /* issue 13: ALPN and the version carry over */
    assert_int_equal(b->tls.n_alpn, 1);
    assert_string_equal(b->tls.alpn[0], "x-amzn-mqtt-ca");
    assert_int_equal(b->tls.min_version, RELAY_TLS_1_2);
    assert_int_equal(b->n_urls, 3);
    assert_string_equal(b->urls[0].text, "mqtts://a.example:8883");
    /* Mosquitto splits at the last ':' (an IPv6 address needs its port; brackets are
     * accepted) and its default port is 1883, TLS or not */
    assert_string_equal(b->urls[1].text, "mqtts://[::1]:8884");
    assert_string_equal(b->urls[2].text, "mqtts://b.example:1883");
    assert_true(b->has_tls);
    snprintf(path, sizeof(path), "%s/ca.pem", s->dir);
    assert_string_equal(b->tls.ca_file, path);
    snprintf(path, sizeof(path), "%s/client.pem", s->dir);
    assert_string_equal(b->tls.cert_file, path);
    snprintf(path, sizeof(path), "%s/client.key", s->dir);
    assert_string_equal(b->tls.key_file, path);
    assert_true(b->tls.verify); /* bridge_insecure skips the host name check only */
    assert_non_null(strstr(out, "bridge_insecure true made Mosquitto skip the host name check"));
    assert_non_null(strstr(out, "# bridge_tls_version tlsv1.2"));
    relay_config_cleanup(&cfg);
    free(out);
}

/* include_dir: *.conf files in Mosquitto's order; each file has its own bridge section. */
static void test_include_dir(void **state)
{
    (void)state;
    struct relay_config cfg;
    assert_int_equal(mkdir("conf.d", 0755), 0);
    write_file("conf.d/b.conf", "connection bb\naddress h2\ntopic b in\n");
    write_file("conf.d/a.conf", "connection aa\naddress h1\ntopic a in\n");
    write_file("conf.d/A.conf", "connection AA\naddress h0\ntopic A in\n");
    write_file("conf.d/z.txt", "connection zz\naddress h9\ntopic z in\n");
    write_file("conf.d/.conf", "connection dot\naddress h9\ntopic d in\n");
    char *out = convert_and_load("listener 1883\n"
                                 "  # an indented comment\n"
                                 "connection main\n"
                                 "address h\n"
                                 "include_dir conf.d\n"
                                 "topic m out\n", /* still the main file's bridge */
                                 &cfg);
    assert_int_equal(cfg.n_brokers, 5);
    assert_string_equal(cfg.brokers[1].name, "main");
    assert_string_equal(cfg.brokers[2].name, "AA");
    assert_string_equal(cfg.brokers[3].name, "aa");
    assert_string_equal(cfg.brokers[4].name, "bb");
    check_route(&cfg, "main-out-1", "local", "main", "m", "${topic}", 0);
    relay_config_cleanup(&cfg);
    free(out);

    /* a bridge option at the top of an included file belongs to no bridge */
    write_file("conf.d/c.conf", "topic x\n");
    char *err, *o;
    write_file("mosquitto.conf", "connection main\naddress h\ninclude_dir conf.d\n");
    assert_int_equal(convert("mosquitto.conf", &o, &err), -EINVAL);
    assert_non_null(strstr(err, "/conf.d/c.conf:1: topic outside a bridge"));
    free(o);
    free(err);
}

/* Names made valid and unique; "local" is taken. */
static void test_names(void **state)
{
    (void)state;
    struct relay_config cfg;
    char *out = convert_and_load("connection local\naddress h1\ntopic a in\n"
                                 "connection my.bridge\naddress h2\ntopic b in\n"
                                 "connection my-bridge\naddress h3\ntopic c in\n",
                                 &cfg);
    assert_string_equal(cfg.brokers[1].name, "local-2");
    assert_string_equal(cfg.brokers[2].name, "my-bridge");
    assert_string_equal(cfg.brokers[3].name, "my-bridge-2");
    assert_string_equal(cfg.id, "local-2-relay");
    check_route(&cfg, "my-bridge-2-in-1", "my-bridge-2", "local", "c", "${topic}", 0);
    relay_config_cleanup(&cfg);
    free(out);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    expect_error("topic # out 1\n",
                 "mosquitto.conf:1: topic outside a bridge: no connection line before it in "
                 "this file\n");
    expect_error("connection c\naddress h\n# comment\ntopic # sideways 1\n",
                 "mosquitto.conf:4: invalid bridge topic direction \"sideways\" (out, in or "
                 "both)\n");
    expect_error("connection c\naddress h\ntopic # in 3\n",
                 "mosquitto.conf:3: invalid bridge topic QoS \"3\" (0, 1 or 2)\n");
    expect_error("connection c\naddress h\ntopic # in x\n",
                 "mosquitto.conf:3: invalid bridge topic QoS \"x\" (0, 1 or 2)\n");
    expect_error("connection c\naddress h\ntopic \"\" in 1 x/\n",
                 "mosquitto.conf:3: invalid bridge remapping: a pattern of \"\" needs both a "
                 "local and a remote prefix\n");
    expect_error("connection c\naddress h\ntopic a in 1 x/+ y/\n",
                 "mosquitto.conf:3: invalid bridge topic local prefix \"x/+\"\n");
    expect_error("connection c\naddress h\ntopic a/#/b in 1\n",
                 "mosquitto.conf:3: invalid bridge topic: local \"a/#/b\" is not a valid topic "
                 "filter\n");
    expect_error("connection c\naddress h\nbridge_protocol_version mqttv5\ntopic a\n",
                 "mosquitto.conf:3: invalid bridge_protocol_version value \"mqttv5\" (mqttv31, "
                 "mqttv311 or mqttv50)\n");
    expect_error("connection c\naddress h\ncleansession maybe\ntopic a\n",
                 "mosquitto.conf:3: invalid cleansession value \"maybe\" (true or false)\n");
    expect_error("connection c\naddress h:99999\ntopic a\n",
                 "mosquitto.conf:2: invalid address port value \"99999\" (0..65535)\n");
    expect_error("connection c\ntopic a\n",
                 "mosquitto.conf:1: connection \"c\" has no address (Mosquitto refuses it too)\n");
    expect_error("connection c\naddress h\n",
                 "mosquitto.conf:1: connection \"c\" has no topic line (Mosquitto refuses it "
                 "too)\n");
    expect_error("connection c\naddress h\ntopic a\nconnection c\n",
                 "mosquitto.conf:4: duplicate bridge name \"c\" (first at mosquitto.conf:1)\n");
    expect_error("listener 1883\n",
                 "mosquitto.conf: no bridge: no \"connection\" line, nothing to convert\n");
    expect_error("connection c\naddress h\ntopic a/${x} in 1 p/ q/\n",
                 "mosquitto.conf:3: cannot convert this topic line: the topic contains \"${\", "
                 "which mqtt-relay's topic templates cannot write\n");

    /* the message names the directory as resolved (relative to the file's directory) */
    char *out, *err, *want;
    write_file("mosquitto.conf", "connection c\naddress h\ninclude_dir nowhere\ntopic a\n");
    assert_int_equal(convert("mosquitto.conf", &out, &err), -EINVAL);
    char *dir = realpath(".", NULL);
    assert_true(asprintf(&want,
                         "mosquitto.conf:3: include_dir %s/nowhere: No such file or directory\n",
                         dir) > 0);
    assert_string_equal(err, want);
    free(dir);
    free(want);
    free(out);
    free(err);
}

static void test_unreadable(void **state)
{
    (void)state;
    char *out, *err;
    assert_int_equal(convert("missing.conf", &out, &err), -ENOENT);
    assert_string_equal(err, "missing.conf: No such file or directory\n");
    assert_string_equal(out, "");
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_both_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefixes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_comments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listeners, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_include_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
