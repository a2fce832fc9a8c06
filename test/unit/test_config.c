/*
 * test_config.c: relay_config_load() on sample files (test/unit/configs/) and on small files
 * written into a scratch directory, checking every resolved field and the exact
 * "FILE:LINE: ..." text of each class of error.
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
#include "conf/plan.h"
#include "core/config.h"
#include "route/template.h"

#ifndef RELAY_TEST_CONFIGS
#error "RELAY_TEST_CONFIGS must name test/unit/configs"
#endif

/* ---- scratch directory: each test runs in a fresh one, so errors read "relay.conf:N: ..." */

struct scratch {
    char dir[64];
    char old[PATH_MAX];
};

static int setup(void **state)
{
    struct scratch *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    snprintf(s->dir, sizeof(s->dir), "/tmp/relay-cfg-test.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    assert_non_null(getcwd(s->old, sizeof(s->old)));
    assert_int_equal(chdir(s->dir), 0);
    /* the state directory (spool = "auto") is the scratch one unless a test says otherwise */
    char sd[128];
    snprintf(sd, sizeof(sd), "%s/state", s->dir);
    assert_int_equal(setenv("STATE_DIRECTORY", sd, 1), 0);
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

static void write_file(const char *name, const char *text, mode_t mode)
{
    /* a new file each time: ext4 flushes a file truncated and rewritten when it is closed */
    unlink(name);
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(name, mode), 0);
}

/* Writes relay.conf and expects relay_config_load() to fail with exactly want. */
static void expect_error(const char *text, const char *want)
{
    struct relay_config cfg;
    char err[512];
    write_file("relay.conf", text, 0644);
    int rc = relay_config_load("relay.conf", &cfg, err, sizeof(err));
    assert_string_equal(err, want);
    assert_int_equal(rc, -EINVAL);
    /* the struct is left empty */
    assert_null(cfg.brokers);
    assert_null(cfg.routes);
    assert_null(cfg.id);
    relay_config_cleanup(&cfg);
}

static void load_ok(const char *text, struct relay_config *cfg)
{
    char err[512] = "";
    write_file("relay.conf", text, 0644);
    int rc = relay_config_load("relay.conf", cfg, err, sizeof(err));
    assert_string_equal(err, "");
    assert_int_equal(rc, 0);
}

/* Two brokers, lines 1..5: most error tests append their routes from line 6. */
#define BASE                                                                                       \
    "relay: { id = \"site-a\"; };\n"                                                 /* 1 */       \
    "brokers = (\n"                                                                  /* 2 */       \
    "  { name = \"bifromq\"; url = \"mqtt://127.0.0.1:1883\"; },\n"                  /* 3 */       \
    "  { name = \"edge\"; url = \"mqtt://127.0.0.1:1884\"; version = \"3.1.1\"; }\n" /* 4 */       \
    ");\n"                                                                           /* 5 */

/* One broker group, lines 1..4, with extra settings X on line 3. */
#define BROKER(X)                                                                                  \
    "relay: { id = \"site-a\"; };\n"                                                               \
    "brokers = ( { name = \"edge\"; url = \"mqtts://h\";\n"                                        \
    "  " X "\n"                                                                                    \
    "} );\n"

static char *abs_configs(void)
{
    char *p = realpath(RELAY_TEST_CONFIGS, NULL);
    assert_non_null(p);
    return p;
}

static char *join(const char *a, const char *b)
{
    char *s;
    assert_true(asprintf(&s, "%s/%s", a, b) > 0);
    return s;
}

/* ---- valid files ---------------------------------------------------------------------------- */

static void test_full(void **state)
{
    (void)state;
    struct relay_config cfg;
    char err[512] = "", buf[256];
    const char *path = RELAY_TEST_CONFIGS "/full.conf";
    int rc = relay_config_load(path, &cfg, err, sizeof(err));
    assert_string_equal(err, "");
    assert_int_equal(rc, 0);

    char *dir = abs_configs();
    assert_string_equal(cfg.path, path);
    assert_string_equal(cfg.dir, dir);
    assert_string_equal(cfg.id, "site-a");
    assert_int_equal(cfg.log_level, RELAY_LOG_DEBUG);
    assert_string_equal(cfg.metrics_host, "127.0.0.1");
    assert_int_equal(cfg.metrics_port, 9464);
    assert_int_equal(cfg.drain_timeout_ms, 7000);
    assert_int_equal(cfg.max_hops, 4);
    assert_int_equal(cfg.batch_wait_us, 0);
    assert_int_equal(cfg.n_brokers, 2);
    assert_int_equal(cfg.n_routes, 2);

    const struct relay_broker_config *b = &cfg.brokers[0];
    assert_string_equal(b->name, "bifromq");
    assert_int_equal(b->line, 12); /* its '{' */
    assert_int_equal(b->n_urls, 2);
    assert_int_equal(b->urls[0].scheme, RELAY_MQTTS);
    assert_string_equal(b->urls[0].text, "mqtts://broker.example:8884");
    assert_string_equal(b->urls[0].host, "broker.example");
    assert_int_equal(b->urls[0].port, 8884);
    assert_null(b->urls[0].path);
    assert_int_equal(b->urls[1].scheme, RELAY_WSS);
    assert_string_equal(b->urls[1].host, "2001:db8::1");
    assert_int_equal(b->urls[1].port, 443);
    assert_string_equal(b->urls[1].path, "/ws/mqtt");
    assert_int_equal(b->version, MQC_V5);
    assert_string_equal(b->client_id, "relay-a");
    assert_string_equal(b->username, "relay");
    assert_string_equal(b->password, "secret");
    assert_int_equal(b->password_len, 6);
    assert_int_equal(b->keepalive, 30);
    assert_true(b->clean_start);
    assert_int_equal(b->session_expiry, 4294967295u);
    assert_int_equal(b->connections, 4);
    assert_int_equal(b->receive_maximum, 100);
    assert_int_equal(b->max_inflight, 50);
    assert_int_equal(b->max_packet_size, 131072);
    assert_int_equal(b->rate_bytes, 524288);
    assert_int_equal(b->rate_messages, 200);
    char *spool = join(dir, "spool/bifromq");
    assert_string_equal(b->spool.dir, spool);
    free(spool);
    assert_int_equal(b->spool.max_size, 2147483648ull);
    assert_int_equal(b->reconnect_min_ms, 100);
    assert_int_equal(b->reconnect_max_ms, 60000);
    assert_int_equal(b->ack_timeout_ms, 15000);
    assert_string_equal(b->status_topic, "relay/site-a/status");
    assert_true(b->has_tls);
    char *ca = join(dir, "certs/ca.pem"), *cert = join(dir, "certs/client.pem"),
         *key = join(dir, "certs/client.key");
    assert_string_equal(b->tls.ca_file, ca);
    assert_string_equal(b->tls.cert_file, cert);
    assert_string_equal(b->tls.key_file, key);
    free(ca);
    free(cert);
    free(key);
    assert_false(b->tls.verify);
    assert_string_equal(b->tls.server_name, "broker.example");
    for (uint32_t i = 0; i < 4; i++) {
        char want[32];
        snprintf(want, sizeof(want), "relay-a-%u", (unsigned)i);
        assert_int_equal(relay_broker_client_id(b, i, buf, sizeof(buf)), (int)strlen(want));
        assert_string_equal(buf, want);
    }
    assert_int_equal(relay_broker_client_id(b, 0, buf, 9), -ENOSPC);
    assert_int_equal(relay_broker_client_id(b, 0, buf, 10), 9);

    const struct relay_broker_config *e = &cfg.brokers[1];
    assert_string_equal(e->name, "edge");
    assert_int_equal(e->version, MQC_V311);
    assert_int_equal(e->n_urls, 1);
    assert_int_equal(e->urls[0].scheme, RELAY_WS);
    assert_string_equal(e->urls[0].host, "edge.local");
    assert_int_equal(e->urls[0].port, 80);
    assert_string_equal(e->urls[0].path, "/mqtt");
    assert_string_equal(e->client_id, "site-a-edge");
    assert_int_equal(relay_broker_client_id(e, 0, buf, sizeof(buf)), 11);
    assert_string_equal(buf, "site-a-edge");
    assert_false(e->has_tls);
    assert_true(e->tls.verify); /* the default holds without a tls group too */
    assert_null(e->tls.ca_file);

    const struct relay_route_config *r = &cfg.routes[0];
    assert_string_equal(r->name, "cmd-down");
    assert_int_equal(r->line, 47);
    assert_int_equal(r->from, 0);
    assert_int_equal(r->to, 1);
    assert_string_equal(r->filter, "factory/+/cmd/#");
    assert_string_equal(r->share, "relay");
    assert_true(r->ordered);
    assert_int_equal(r->qos, 2);
    assert_string_equal(r->topic, "site-a/${1}/cmd/${#}");
    assert_int_equal(r->out_qos, 1);
    assert_int_equal(r->retain, RELAY_RETAIN_CLEAR);
    assert_int_equal(r->properties, RELAY_PROPS_DROP);
    assert_int_equal(relay_route_subscription(r, buf, sizeof(buf)), 29);
    assert_string_equal(buf, "$oshare/relay/factory/+/cmd/#");
    assert_int_equal(relay_route_subscription(r, buf, 29), -ENOSPC);

    r = &cfg.routes[1];
    assert_string_equal(r->name, "edge->bifromq#1");
    assert_int_equal(r->from, 1);
    assert_int_equal(r->to, 0);
    assert_null(r->share);
    assert_false(r->ordered);
    assert_int_equal(r->qos, 1);
    assert_string_equal(r->topic, "${topic}");
    assert_int_equal(r->out_qos, -1);
    assert_int_equal(r->retain, RELAY_RETAIN_KEEP);
    assert_int_equal(r->properties, RELAY_PROPS_FORWARD);
    assert_int_equal(relay_route_subscription(r, buf, sizeof(buf)), 11);
    assert_string_equal(buf, "telemetry/#");

    free(dir);
    relay_config_cleanup(&cfg);
    assert_null(cfg.brokers);
    assert_int_equal(cfg.n_brokers, 0);
    relay_config_cleanup(&cfg); /* twice is fine */
}

static void test_defaults(void **state)
{
    (void)state;
    struct relay_config cfg;
    char err[512] = "", host[256] = "";
    int rc = relay_config_load(RELAY_TEST_CONFIGS "/minimal.conf", &cfg, err, sizeof(err));
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    if (rc < 0) { /* only possible on a host whose name is not a valid relay id */
        assert_non_null(strstr(err, ": set relay.id"));
        return;
    }
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.id, host);
    assert_int_equal(cfg.log_level, RELAY_LOG_INFO);
    assert_null(cfg.metrics_host);
    assert_int_equal(cfg.drain_timeout_ms, 5000);
    assert_int_equal(cfg.max_hops, 8);
    assert_int_equal(cfg.batch_wait_us, RELAY_BATCH_WAIT_US);

    const struct relay_broker_config *b = &cfg.brokers[0];
    assert_int_equal(b->urls[0].scheme, RELAY_MQTT);
    assert_int_equal(b->urls[0].port, 1883);
    assert_null(b->urls[0].path);
    assert_int_equal(cfg.brokers[1].urls[0].port, 1884);
    assert_int_equal(b->version, MQC_V5);
    char want[300];
    snprintf(want, sizeof(want), "%s-a", host);
    assert_string_equal(b->client_id, want);
    assert_null(b->username);
    assert_null(b->password);
    assert_int_equal(b->password_len, 0);
    assert_int_equal(b->keepalive, 60);
    assert_false(b->clean_start);
    assert_int_equal(b->session_expiry, 3600);
    assert_int_equal(b->connections, 1);
    assert_int_equal(b->receive_maximum, 64);
    assert_int_equal(b->max_inflight, 0);
    assert_int_equal(b->max_inflight_cap, RELAY_INFLIGHT_CAP);
    assert_int_equal(b->max_packet_size, 262144);
    assert_int_equal(b->rate_bytes, 0);
    assert_int_equal(b->rate_messages, 0);
    /* spool = "auto" in <state dir>/<name>, the state dir from $STATE_DIRECTORY (setup) */
    assert_int_equal(b->spool.mode, RELAY_SPOOL_AUTO);
    assert_string_equal(cfg.state_dir_from, "$STATE_DIRECTORY");
    assert_null(cfg.state_dir_why);
    char sdir[300];
    snprintf(sdir, sizeof(sdir), "%s/a", cfg.state_dir);
    assert_string_equal(b->spool.dir, sdir);
    assert_int_equal(b->spool.max_size, RELAY_SPOOL_MAX_SIZE);
    assert_int_equal(b->reconnect_min_ms, 250);
    assert_int_equal(b->reconnect_max_ms, 30000);
    assert_int_equal(b->ack_timeout_ms, 20000);
    assert_null(b->status_topic);
    assert_false(b->has_tls);
    assert_true(b->tls.verify);

    const struct relay_route_config *r = &cfg.routes[0];
    assert_string_equal(r->name, "a->b#0");
    assert_string_equal(r->filter, "#");
    assert_null(r->share);
    assert_int_equal(r->qos, 1);
    assert_string_equal(r->topic, "${topic}");
    assert_int_equal(r->out_qos, -1);
    assert_int_equal(r->retain, RELAY_RETAIN_KEEP);
    assert_int_equal(r->properties, RELAY_PROPS_FORWARD);
    relay_config_cleanup(&cfg);
}

/* relay.state_dir and the spool modes: "auto" and true in <state dir>/<name>, false none, a
 * group its own dir; an unusable state dir turns "auto" off and refuses true. */
static void test_state_dir(void **state)
{
    struct scratch *sc = *state;
    struct relay_config cfg;
    char want[300];

    (void)sc;
    load_ok("relay: { id = \"x\"; state_dir = \"st\"; };\n"
            "brokers = (\n"
            "  { name = \"a\"; url = \"mqtt://h\"; },\n"
            "  { name = \"b\"; url = \"mqtt://h\"; spool = true; },\n"
            "  { name = \"c\"; url = \"mqtt://h\"; spool = false; },\n"
            "  { name = \"d\"; url = \"mqtt://h\"; spool = \"auto\"; max_inflight = \"auto\"; },\n"
            "  { name = \"e\"; url = \"mqtt://h\"; spool = { dir = \"/tmp/e-spool\"; }; }\n"
            ");\n",
            &cfg);
    assert_string_equal(cfg.state_dir_from, "relay.state_dir");
    snprintf(want, sizeof(want), "%s/st", cfg.dir);
    assert_string_equal(cfg.state_dir, want);
    assert_null(cfg.state_dir_why); /* not there yet, but its parent can be written */
    snprintf(want, sizeof(want), "%s/st/a", cfg.dir);
    assert_string_equal(cfg.brokers[0].spool.dir, want);
    assert_int_equal(cfg.brokers[0].spool.mode, RELAY_SPOOL_AUTO);
    snprintf(want, sizeof(want), "%s/st/b", cfg.dir);
    assert_string_equal(cfg.brokers[1].spool.dir, want);
    assert_int_equal(cfg.brokers[1].spool.mode, RELAY_SPOOL_ALWAYS);
    assert_null(cfg.brokers[2].spool.dir);
    assert_int_equal(cfg.brokers[2].spool.mode, RELAY_SPOOL_OFF);
    assert_int_equal(cfg.brokers[3].spool.mode, RELAY_SPOOL_AUTO);
    assert_int_equal(cfg.brokers[3].max_inflight, 0);
    assert_string_equal(cfg.brokers[4].spool.dir, "/tmp/e-spool");
    assert_int_equal(cfg.brokers[4].spool.mode, RELAY_SPOOL_ALWAYS);
    relay_config_cleanup(&cfg);

    /* a state directory that cannot be written: "auto" is off (no dir), with the reason */
    assert_int_equal(mkdir("ro", 0500), 0);
    if (access("ro", W_OK) == 0) { /* root writes anyway: a file where the directory would be */
        assert_int_equal(rmdir("ro"), 0);
        write_file("ro", "not a directory\n", 0644);
    }
    load_ok("relay: { id = \"x\"; state_dir = \"ro/deeper\"; };\n"
            "brokers = ( { name = \"a\"; url = \"mqtt://h\"; } );\n",
            &cfg);
    assert_non_null(cfg.state_dir_why);
    assert_null(cfg.brokers[0].spool.dir);
    assert_int_equal(cfg.brokers[0].spool.mode, RELAY_SPOOL_AUTO);
    relay_config_cleanup(&cfg);
    char err[512];
    write_file("relay.conf",
               "relay: { id = \"x\"; state_dir = \"ro/deeper\"; };\n"
               "brokers = ( { name = \"a\"; url = \"mqtt://h\";\n"
               "  spool = true; } );\n",
               0644);
    assert_int_equal(relay_config_load("relay.conf", &cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "relay.conf:3: broker \"a\": spool = true keeps the spool in the "
                                "state directory "));
    assert_non_null(strstr(err, "which cannot be used"));

    /* systemd's $STATE_DIRECTORY (the first of a list) */
    assert_int_equal(setenv("STATE_DIRECTORY", "/srv/one:/srv/two", 1), 0);
    load_ok("brokers = ( { name = \"a\"; url = \"mqtt://h\"; } );\n", &cfg);
    assert_string_equal(cfg.state_dir, "/srv/one");
    assert_string_equal(cfg.state_dir_from, "$STATE_DIRECTORY");
    relay_config_cleanup(&cfg);

    /* an explicit spool.dir where another broker keeps its automatic one */
    assert_int_equal(setenv("STATE_DIRECTORY", "/srv/state", 1), 0);
    expect_error("brokers = (\n"
                 "  { name = \"a\"; url = \"mqtt://h\"; spool = { dir = \"/srv/state/b\"; }; },\n"
                 "  { name = \"b\"; url = \"mqtt://h\"; }\n"
                 ");\n",
                 "relay.conf:2: broker \"a\": spool.dir /srv/state/b is also where broker \"b\" "
                 "keeps its spool in the state directory");
}

static void test_spool_default_size(void **state)
{
    (void)state;
    struct relay_config cfg;
    load_ok(BROKER("spool = { dir = \"/var/lib/x\"; };"), &cfg);
    assert_string_equal(cfg.brokers[0].spool.dir, "/var/lib/x");
    assert_int_equal(cfg.brokers[0].spool.max_size, 1073741824ull);
    assert_int_equal(cfg.n_routes, 0);
    relay_config_cleanup(&cfg);
}

static void test_cleanup_empty(void **state)
{
    (void)state;
    struct relay_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    relay_config_cleanup(&cfg);
    relay_config_cleanup(NULL);
}

/* ---- errors: file level --------------------------------------------------------------------- */

static void test_syntax_error(void **state)
{
    (void)state;
    struct relay_config cfg;
    char err[512];
    int rc = relay_config_load(RELAY_TEST_CONFIGS "/syntax.conf", &cfg, err, sizeof(err));
    assert_int_equal(rc, -EINVAL);
    assert_string_equal(err, RELAY_TEST_CONFIGS "/syntax.conf:5: syntax error");
    relay_config_cleanup(&cfg);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct relay_config cfg;
    char err[512];
    assert_int_equal(relay_config_load("nope.conf", &cfg, err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "nope.conf: No such file or directory");
    assert_int_equal(relay_config_load(".", &cfg, err, sizeof(err)), -EISDIR);
    assert_string_equal(err, ".: Is a directory");
}

static void test_no_brokers(void **state)
{
    (void)state;
    expect_error("relay: { id = \"x\"; };\n",
                 "relay.conf:1: no brokers: add brokers = ( { name = ...; url = ...; } );");
    expect_error("brokers = ();\n", "relay.conf:1: brokers is empty");
    expect_error("brokers = { name = \"a\"; };\n",
                 "relay.conf:1: brokers must be a list ( { ... }, { ... } ), not a group");
}

/* ---- errors: unknown keys ------------------------------------------------------------------- */

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_error(BASE "routs = ();\n", "relay.conf:6: unknown key \"routs\" (did you mean "
                                       "\"routes\"?)");
    expect_error("foo = 1;\n" BASE, "relay.conf:1: unknown key \"foo\"");
    expect_error("relay: { id = \"x\"; loglevel = \"info\"; };\n",
                 "relay.conf:1: unknown key \"relay.loglevel\" (did you mean "
                 "\"relay.log_level\"?)");
    expect_error(BROKER("passwrd = \"x\";"), "relay.conf:3: broker \"edge\": unknown key "
                                             "\"passwrd\" (did you mean \"password\"?)");
    expect_error(BROKER("colour = \"x\";"),
                 "relay.conf:3: broker \"edge\": unknown key \"colour\"");
    expect_error(BROKER("tls = {\n cafile = \"x\"; };"),
                 "relay.conf:4: broker \"edge\": unknown key \"tls.cafile\" (did you mean "
                 "\"tls.ca_file\"?)");
    expect_error(BROKER("spool = { dir = \"x\"; size = 1; };"),
                 "relay.conf:3: broker \"edge\": unknown key \"spool.size\"");
    expect_error(BROKER("rate_limit = { msgs = 1; };"),
                 "relay.conf:3: broker \"edge\": unknown key \"rate_limit.msgs\"");
    expect_error(BROKER("reconnect = { initial = 1; };"),
                 "relay.conf:3: broker \"edge\": unknown key \"reconnect.initial\"");
    expect_error(BASE "routes = (\n"
                      "  { name = \"up\"; from = \"edge\"; to = \"bifromq\";\n"
                      "    filter = \"a/#\"; qso = 1; }\n"
                      ");\n",
                 "relay.conf:8: route \"up\": unknown key \"qso\" (did you mean \"qos\"?)");
}

/* ---- errors: values ------------------------------------------------------------------------- */

static void test_types_and_ranges(void **state)
{
    (void)state;
    expect_error(BROKER("keepalive = \"60\";"),
                 "relay.conf:3: broker \"edge\": keepalive must be an integer, not a string");
    expect_error(BROKER("keepalive = 60.0;"),
                 "relay.conf:3: broker \"edge\": keepalive must be an integer, not a float");
    expect_error(BROKER("keepalive = 65536;"),
                 "relay.conf:3: broker \"edge\": keepalive = 65536 is out of range (0..65535)");
    expect_error(BROKER("clean_start = 1;"),
                 "relay.conf:3: broker \"edge\": clean_start must be true or false, not an "
                 "integer");
    expect_error(BROKER("connections = 201;"),
                 "relay.conf:3: broker \"edge\": connections = 201 is out of range (1..200)");
    expect_error(BROKER("session_expiry = 4294967296L;"),
                 "relay.conf:3: broker \"edge\": session_expiry = 4294967296 is out of range "
                 "(0..4294967295)");
    expect_error(BROKER("receive_maximum = 0;"),
                 "relay.conf:3: broker \"edge\": receive_maximum = 0 is out of range (1..65535)");
    expect_error(BROKER("max_inflight = 0;"),
                 "relay.conf:3: broker \"edge\": max_inflight = 0 is out of range (1..65535)");
    expect_error(BROKER("max_packet_size = 127;"),
                 "relay.conf:3: broker \"edge\": max_packet_size = 127 is out of range "
                 "(128..268435460)");
    expect_error(BROKER("ack_timeout = 999;"),
                 "relay.conf:3: broker \"edge\": ack_timeout = 999 is out of range "
                 "(1000..600000)");
    expect_error(BROKER("rate_limit = { bytes = -1; };"),
                 "relay.conf:3: broker \"edge\": rate_limit.bytes = -1 is out of range (at "
                 "least 0)");
    expect_error(BROKER("spool = { dir = \"s\"; max_size = 1000; };"),
                 "relay.conf:3: broker \"edge\": spool.max_size = 1000 is out of range (at "
                 "least 1048576)");
    expect_error(BROKER("spool = { max_size = 10000000; };"),
                 "relay.conf:3: broker \"edge\": spool.dir is required in a spool group");
    expect_error(BROKER("reconnect = { min = 5; };"),
                 "relay.conf:3: broker \"edge\": reconnect.min = 5 is out of range "
                 "(10..4294967295)");
    expect_error(BROKER("reconnect = { min = 500; max = 400; };"),
                 "relay.conf:3: broker \"edge\": reconnect.max = 400 must be at least "
                 "reconnect.min (500)");
    expect_error(BROKER("spool = \"x\";"),
                 "relay.conf:3: broker \"edge\": spool must be \"auto\", true, false or a group "
                 "{ dir = \"...\"; max_size = ...; }");
    expect_error(BROKER("spool = 1;"),
                 "relay.conf:3: broker \"edge\": spool must be \"auto\", true, false or a group "
                 "{ dir = \"...\"; max_size = ...; }");
    expect_error(BROKER("max_inflight = \"many\";"),
                 "relay.conf:3: broker \"edge\": max_inflight must be \"auto\" or 1..65535");
    expect_error(BROKER("max_inflight_cap = 10;"),
                 "relay.conf:3: broker \"edge\": max_inflight_cap = 10 is out of range "
                 "(20..65535)");
    expect_error("relay: { state_dir = \"\"; };\n",
                 "relay.conf:1: relay.state_dir must not be empty");
    expect_error(BROKER("status_topic = \"a/+/b\";"),
                 "relay.conf:3: broker \"edge\": status_topic \"a/+/b\" is not a valid topic "
                 "name (no '+' or '#', not empty)");
    expect_error("relay: { max_hops = 0; };\n",
                 "relay.conf:1: relay.max_hops = 0 is out of range (1..64)");
    expect_error("relay: { batch_wait_us = 5001; };\n",
                 "relay.conf:1: relay.batch_wait_us = 5001 is out of range (0..5000)");
    expect_error("relay: { batch_wait_us = -1; };\n",
                 "relay.conf:1: relay.batch_wait_us = -1 is out of range (0..5000)");
    expect_error("relay: { drain_timeout = 600001; };\n",
                 "relay.conf:1: relay.drain_timeout = 600001 is out of range (0..600000)");
    expect_error("relay: { log_level = \"verbose\"; };\n",
                 "relay.conf:1: relay.log_level \"verbose\" is not one of error, warn, info, "
                 "debug");
    expect_error("relay: { id = \"site a\"; };\n",
                 "relay.conf:1: relay.id \"site a\" must be 1..64 characters of A-Z a-z 0-9 _ . -");
    expect_error("relay: { metrics = \"9464\"; };\n",
                 "relay.conf:1: relay.metrics \"9464\" must be \"HOST:PORT\" (e.g. "
                 "\"127.0.0.1:9464\", \"[::1]:9464\")");
}

static void test_version_4(void **state)
{
    (void)state;
    expect_error(BROKER("version = \"4\";"),
                 "relay.conf:3: broker \"edge\": version \"4\" is not one of \"3.1\", \"3.1.1\", "
                 "\"5\"");
    expect_error(BROKER("version = 5;"),
                 "relay.conf:3: broker \"edge\": version must be a string, not an integer");
}

static void test_bad_urls(void **state)
{
    (void)state;
    expect_error("brokers = ( { name = \"edge\";\n url = \"http://h:1883\"; } );\n",
                 "relay.conf:2: broker \"edge\": URL \"http://h:1883\": unknown scheme \"http\" "
                 "(use mqtt://, mqtts://, ws:// or wss://)");
    expect_error("brokers = ( { name = \"edge\"; url = \"h:1883\"; } );\n",
                 "relay.conf:1: broker \"edge\": URL \"h:1883\": no scheme (use mqtt://, "
                 "mqtts://, ws:// or wss://)");
    expect_error("brokers = ( { name = \"edge\"; url = \"mqtt://h:0\"; } );\n",
                 "relay.conf:1: broker \"edge\": URL \"mqtt://h:0\": invalid port \"0\" "
                 "(1..65535)");
    expect_error("brokers = ( { name = \"edge\"; url = \"mqtt://h:65536\"; } );\n",
                 "relay.conf:1: broker \"edge\": URL \"mqtt://h:65536\": invalid port \"65536\" "
                 "(1..65535)");
    expect_error("brokers = ( { name = \"edge\"; url = \"mqtt://h:\"; } );\n",
                 "relay.conf:1: broker \"edge\": URL \"mqtt://h:\": invalid port \"\" (1..65535)");
    expect_error("brokers = ( { name = \"edge\"; url = \"mqtt://h/x\"; } );\n",
                 "relay.conf:1: broker \"edge\": URL \"mqtt://h/x\": a path is only allowed for "
                 "ws:// and wss://");
    expect_error("brokers = ( { name = \"edge\"; url = \"mqtt://:1883\"; } );\n",
                 "relay.conf:1: broker \"edge\": URL \"mqtt://:1883\": no host");
    expect_error("brokers = ( { name = \"edge\"; url = \"mqtt://::1\"; } );\n",
                 "relay.conf:1: broker \"edge\": URL \"mqtt://::1\": no host");
    expect_error("brokers = ( { name = \"edge\"; url = \"mqtt://[::g]\"; } );\n",
                 "relay.conf:1: broker \"edge\": URL \"mqtt://[::g]\": invalid host \"::g\"");
    expect_error("brokers = ( { name = \"edge\"; url = \"mqtt://u:p@h\"; } );\n",
                 "relay.conf:1: broker \"edge\": URL \"mqtt://u:p@h\": credentials in the URL "
                 "are not supported (use username and password)");
    expect_error("brokers = ( { name = \"edge\"; url = []; } );\n",
                 "relay.conf:1: broker \"edge\": url must not be an empty list");
    expect_error("brokers = ( { name = \"edge\"; url = (\"mqtt://a\", 1); } );\n",
                 "relay.conf:1: broker \"edge\": each url must be a string, not an integer");
    expect_error("brokers = ( { name = \"edge\"; } );\n",
                 "relay.conf:1: broker \"edge\": url is required");

    struct relay_config cfg;
    load_ok("brokers = ( { name = \"e\"; url = (\"MQTT://[::1]:1\", \"ws://h:8080\",\n"
            "  \"wss://h/\"); } );\n",
            &cfg);
    const struct relay_broker_config *b = &cfg.brokers[0];
    assert_int_equal(b->n_urls, 3);
    assert_string_equal(b->urls[0].host, "::1");
    assert_int_equal(b->urls[0].port, 1);
    assert_int_equal(b->urls[1].port, 8080);
    assert_string_equal(b->urls[1].path, "/mqtt");
    assert_int_equal(b->urls[2].port, 443);
    assert_string_equal(b->urls[2].path, "/");
    relay_config_cleanup(&cfg);
}

static void test_duplicate_broker(void **state)
{
    (void)state;
    expect_error("brokers = (\n"
                 "  { name = \"edge\"; url = \"mqtt://a\"; },\n"
                 "  { name = \"x\"; url = \"mqtt://b\"; },\n"
                 "  { url = \"mqtt://c\";\n"
                 "    name = \"edge\"; }\n"
                 ");\n",
                 "relay.conf:5: duplicate broker name \"edge\" (first at line 2)");
    expect_error("brokers = ( { name = \"ed ge\"; url = \"mqtt://a\"; } );\n",
                 "relay.conf:1: broker \"ed ge\": name must be letters, digits, '_' or '-'");
    expect_error("brokers = ( { url = \"mqtt://a\"; } );\n",
                 "relay.conf:1: broker #0: name is required");
}

/* ---- errors: routes ------------------------------------------------------------------------- */

static void test_unknown_broker(void **state)
{
    (void)state;
    expect_error(BASE "routes = (\n"
                      "  { name = \"cmd-down\"; from = \"bifromq\";\n"
                      "    to = \"edgee\"; filter = \"a/#\"; }\n"
                      ");\n",
                 "relay.conf:8: route \"cmd-down\": unknown broker \"edgee\"");
    /* an unnamed route is called by its default name */
    expect_error(BASE "routes = (\n"
                      "  { from = \"bifromq\"; to = \"edge\"; filter = \"a/#\"; },\n"
                      "  { from = \"bifromq\"; to = \"edgee\"; filter = \"a/#\"; }\n"
                      ");\n",
                 "relay.conf:8: route \"bifromq->edgee#1\": unknown broker \"edgee\"");
    expect_error(BASE "routes = ( { from = \"bifromq\"; filter = \"a/#\"; } );\n",
                 "relay.conf:6: route \"#0\": to is required");
    expect_error(BASE "routes = ( { from = \"edge\"; to = \"edge\"; filter = \"a\"; } );\n",
                 "relay.conf:6: route \"edge->edge#0\": from and to are both \"edge\": a route "
                 "joins two different brokers");
}

static void test_invalid_filter(void **state)
{
    (void)state;
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"a/#/b\"; } );\n",
                 "relay.conf:7: route \"r\": invalid filter \"a/#/b\" ('+' and '#' must fill a "
                 "whole level, '#' only as the last one)");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"a/b+\"; } );\n",
                 "relay.conf:7: route \"r\": invalid filter \"a/b+\" ('+' and '#' must fill a "
                 "whole level, '#' only as the last one)");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"\"; } );\n",
                 "relay.conf:7: route \"r\": invalid filter \"\" ('+' and '#' must fill a "
                 "whole level, '#' only as the last one)");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"$share/g/a/#\"; } );\n",
                 "relay.conf:7: route \"r\": filter \"$share/g/a/#\" is a shared-subscription "
                 "form: write the plain filter and use share = \"GROUP\"");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"$oshare/g/a/#\"; } );\n",
                 "relay.conf:7: route \"r\": filter \"$oshare/g/a/#\" is a shared-subscription "
                 "form: write the plain filter and use share = \"GROUP\" with ordered = true");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"a\"; share = \"g/h\"; } );\n",
                 "relay.conf:7: route \"r\": share \"g/h\" must be letters, digits, '_' or '-'");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"a\"; ordered = true; } );\n",
                 "relay.conf:7: route \"r\": ordered = true needs share = \"GROUP\" (it selects "
                 "\"$oshare/GROUP/...\")");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"a\"; qos = 3; } );\n",
                 "relay.conf:7: route \"r\": qos = 3 is out of range (0..2)");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"a\"; out_qos = \"1\"; } );\n",
                 "relay.conf:7: route \"r\": out_qos must be \"same\", 0, 1 or 2");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"a\"; retain = \"drop\"; } );\n",
                 "relay.conf:7: route \"r\": retain \"drop\" is not one of \"keep\", \"clear\"");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"a\"; properties = \"keep\"; } );\n",
                 "relay.conf:7: route \"r\": properties \"keep\" is not one of \"forward\", "
                 "\"drop\"");
}

static void test_template_errors(void **state)
{
    (void)state;
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"factory/+/cmd/#\";\n"
                      "  topic = \"x/${3}\"; } );\n",
                 "relay.conf:8: route \"r\": topic \"x/${3}\": template refers to ${3} but the "
                 "filter has 1 '+'");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"a/+\"; topic = \"x/${#}\"; } );\n",
                 "relay.conf:7: route \"r\": topic \"x/${#}\": ${#} but the filter has no '#'");
    expect_error(BASE "routes = ( { name = \"r\"; from = \"edge\"; to = \"bifromq\";\n"
                      "  filter = \"a/+\"; topic = \"x/+\"; } );\n",
                 "relay.conf:7: route \"r\": topic \"x/+\": template contains a wildcard ('+' "
                 "or '#')");
}

static void test_duplicate_route_name(void **state)
{
    (void)state;
    expect_error(BASE "routes = (\n"
                      "  { name = \"r\"; from = \"edge\"; to = \"bifromq\"; filter = \"a\"; },\n"
                      "  { name = \"r\"; from = \"edge\"; to = \"bifromq\"; filter = \"b\"; }\n"
                      ");\n",
                 "relay.conf:8: duplicate route name \"r\" (first at line 7)");
}

/* ---- errors: credentials and TLS ------------------------------------------------------------ */

static void test_password_file_modes(void **state)
{
    struct scratch *s = *state;
    struct relay_config cfg;
    char err[512], want[512], *dir = realpath(s->dir, NULL);
    assert_non_null(dir);

    write_file("pw", "s3cret\n", 0644);
    write_file("relay.conf", BROKER("password_file = \"pw\";"), 0644);
    assert_int_equal(relay_config_load("relay.conf", &cfg, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want),
             "relay.conf:3: broker \"edge\": password_file \"pw\" (%s/pw): permissions 0644, "
             "must not be accessible by group or others (chmod 600)",
             dir);
    assert_string_equal(err, want);

    write_file("pw", "s3cret\n", 0640);
    assert_int_equal(relay_config_load("relay.conf", &cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "permissions 0640"));

    write_file("pw", "s3cret\n", 0600);
    load_ok(BROKER("password_file = \"pw\";"), &cfg);
    assert_string_equal(cfg.brokers[0].password, "s3cret");
    assert_int_equal(cfg.brokers[0].password_len, 6);
    relay_config_cleanup(&cfg);

    write_file("pw", "s3cret\r\n", 0400);
    load_ok(BROKER("password_file = \"pw\";"), &cfg);
    assert_string_equal(cfg.brokers[0].password, "s3cret");
    relay_config_cleanup(&cfg);

    write_file("pw", "two\n\n", 0600); /* only one newline is ignored */
    load_ok(BROKER("password_file = \"pw\";"), &cfg);
    assert_string_equal(cfg.brokers[0].password, "two\n");
    assert_int_equal(cfg.brokers[0].password_len, 4);
    relay_config_cleanup(&cfg);

    /* an absolute path, and a relative one resolved against the file's directory, not the
     * working directory */
    char text[512];
    snprintf(text, sizeof(text), BROKER("password_file = \"%s/pw\";"), dir);
    load_ok(text, &cfg);
    assert_string_equal(cfg.brokers[0].password, "two\n");
    relay_config_cleanup(&cfg);
    assert_int_equal(mkdir("sub", 0700), 0);
    write_file("sub/pw", "inner", 0600);
    write_file("sub/relay.conf", BROKER("password_file = \"pw\";"), 0644);
    assert_int_equal(relay_config_load("sub/relay.conf", &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.brokers[0].password, "inner");
    relay_config_cleanup(&cfg);

    assert_int_equal(relay_config_load("relay.conf", &cfg, err, sizeof(err)), 0);
    relay_config_cleanup(&cfg);
    write_file("relay.conf", BROKER("password_file = \"missing\";"), 0644);
    assert_int_equal(relay_config_load("relay.conf", &cfg, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want),
             "relay.conf:3: broker \"edge\": password_file \"missing\" (%s/missing): No such "
             "file or directory",
             dir);
    assert_string_equal(err, want);
    free(dir);
}

static void test_password_exclusive(void **state)
{
    (void)state;
    write_file("pw", "x", 0600);
    expect_error(BROKER("password = \"a\";\n password_file = \"pw\";"),
                 "relay.conf:4: broker \"edge\": password and password_file are exclusive: "
                 "give one");
}

static void test_shared_resources(void **state)
{
    struct scratch *sc = *state;
    struct relay_config cfg;
    char want[512], *dir = realpath(sc->dir, NULL);
    assert_non_null(dir);
    snprintf(want, sizeof(want),
             "relay.conf:4: broker \"b\": spool.dir %s/./s/ is also the spool of broker \"a\"",
             dir);
    expect_error("brokers = (\n"
                 "  { name = \"a\"; url = \"mqtt://h\"; spool = { dir = \"s\"; }; },\n"
                 "  { name = \"b\"; url = \"mqtt://g\";\n"
                 "    spool = { dir = \"./s/\"; }; }\n"
                 ");\n",
                 want);
    free(dir);
    /* the same broker twice with one client id: they would kick each other off */
    expect_error("brokers = (\n"
                 "  { name = \"a\"; url = \"mqtt://H:1883\"; client_id = \"relay-1\"; },\n"
                 "  { name = \"b\"; url = [\"mqtt://x\", \"mqtt://h\"]; connections = 2;\n"
                 "    client_id = \"relay\"; }\n"
                 ");\n",
                 "relay.conf:4: broker \"b\": client id \"relay-1\" is also used by broker \"a\" "
                 "on the same host and port: the broker would disconnect one whenever the other "
                 "connects");
    /* different brokers may use the same id */
    load_ok("brokers = (\n"
            "  { name = \"a\"; url = \"mqtt://h:1883\"; client_id = \"relay\"; },\n"
            "  { name = \"b\"; url = \"mqtt://h:1884\"; client_id = \"relay\"; }\n"
            ");\n",
            &cfg);
    relay_config_cleanup(&cfg);
}

static void test_password_needs_username_v3(void **state)
{
    (void)state;
    struct relay_config cfg;
    expect_error(BROKER("version = \"3.1.1\"; password = \"a\";"),
                 "relay.conf:3: broker \"edge\": password needs a username with MQTT 3.1.1");
    load_ok(BROKER("version = \"3.1.1\"; password = \"a\"; username = \"u\";"), &cfg);
    relay_config_cleanup(&cfg);
    load_ok(BROKER("password = \"a\";"), &cfg); /* MQTT 5 allows it */
    relay_config_cleanup(&cfg);
}

static void test_tls(void **state)
{
    struct scratch *s = *state;
    char want[512], *dir = realpath(s->dir, NULL);
    assert_non_null(dir);
    expect_error("brokers = ( { name = \"edge\"; url = [\"mqtt://h\", \"ws://h\"];\n"
                 "  tls = { verify = true; }; } );\n",
                 "relay.conf:2: broker \"edge\": a tls group needs an mqtts:// or wss:// URL "
                 "(no URL of this broker uses TLS)");
    snprintf(want, sizeof(want),
             "relay.conf:3: broker \"edge\": tls.ca_file \"ca.pem\" (%s/ca.pem): No such file "
             "or directory",
             dir);
    expect_error(BROKER("tls = { ca_file = \"ca.pem\"; };"), want);
    write_file("c.pem", "x", 0644);
    expect_error(BROKER("tls = { cert_file = \"c.pem\"; };"),
                 "relay.conf:3: broker \"edge\": tls.cert_file needs tls.key_file");
    expect_error(BROKER("tls = { server_name = \"a b\"; };"),
                 "relay.conf:3: broker \"edge\": tls.server_name \"a b\" is not a host name");

    struct relay_config cfg;
    write_file("k.pem", "x", 0600);
    load_ok("brokers = ( { name = \"edge\"; url = [\"mqtt://h\", \"wss://h\"];\n"
            "  tls = { cert_file = \"c.pem\"; key_file = \"k.pem\"; }; } );\n",
            &cfg);
    assert_true(cfg.brokers[0].has_tls);
    assert_true(cfg.brokers[0].tls.verify);
    assert_null(cfg.brokers[0].tls.ca_file);
    assert_null(cfg.brokers[0].tls.server_name);
    char *k = join(dir, "k.pem");
    assert_string_equal(cfg.brokers[0].tls.key_file, k);
    free(k);
    relay_config_cleanup(&cfg);
    free(dir);
}

static void test_v31_client_id_long(void **state)
{
    (void)state;
    struct relay_config cfg;
    expect_error("relay: { id = \"site-a-longest-name\"; };\n"
                 "brokers = ( { name = \"edge\"; url = \"mqtt://h\";\n"
                 "  version = \"3.1\"; } );\n",
                 "relay.conf:3: broker \"edge\": client id \"site-a-longest-name-edge\" is 24 "
                 "bytes, MQTT 3.1 allows at most 23: set a shorter client_id");
    /* 23 bytes is fine */
    load_ok("relay: { id = \"site-a-longer-name\"; };\n"
            "brokers = ( { name = \"edge\"; url = \"mqtt://h\"; version = \"3.1\"; } );\n",
            &cfg);
    assert_string_equal(cfg.brokers[0].client_id, "site-a-longer-name-edge");
    relay_config_cleanup(&cfg);
    /* the longest id of a pool counts: "-10" makes 24 */
    load_ok(BROKER("version = \"3.1\"; client_id = \"abcdefghijklmnopqrstu\"; connections = 10;"),
            &cfg);
    relay_config_cleanup(&cfg);
    expect_error("brokers = ( { name = \"edge\"; url = \"mqtt://h\"; version = \"3.1\";\n"
                 "  client_id = \"abcdefghijklmnopqrstu\"; connections = 11; } );\n",
                 "relay.conf:2: broker \"edge\": client id \"abcdefghijklmnopqrstu-10\" is 24 "
                 "bytes, MQTT 3.1 allows at most 23: set a shorter client_id (\"-<i>\" is "
                 "appended for each connection)");
}

/* ---- the loop check ------------------------------------------------------------------------- */

#define LOOP_ROUTES                                                                                \
    "routes = (\n"                                                                     /* 6 */     \
    "  { name = \"down\"; from = \"bifromq\"; to = \"edge\"; filter = \"cmd/#\"; },\n" /* 7 */     \
    "  { name = \"up\"; from = \"edge\"; to = \"bifromq\";\n"                          /* 8 */     \
    "    filter = \"#\"; }\n"                                                          /* 9 */     \
    ");\n"

static void test_loop_311(void **state)
{
    (void)state;
    expect_error(BASE LOOP_ROUTES,
                 "relay.conf:8: routes \"down\" and \"up\" loop: what \"down\" publishes to edge "
                 "(MQTT 3.1.1) matches the filter of \"up\"; MQTT 3.1/3.1.1 cannot carry the loop "
                 "guard: use version \"5\" or disjoint topics");
}

static void test_loop_reverse_order(void **state)
{
    (void)state;
    /* the 3.1.1 broker is the destination of the later route: found in the other order */
    expect_error(BASE "routes = (\n"
                      "  { name = \"up\"; from = \"edge\"; to = \"bifromq\"; filter = \"#\"; },\n"
                      "  { name = \"down\"; from = \"bifromq\"; to = \"edge\";\n"
                      "    filter = \"x/+\"; topic = \"site/${1}\"; }\n"
                      ");\n",
                 "relay.conf:8: routes \"down\" and \"up\" loop: what \"down\" publishes to edge "
                 "(MQTT 3.1.1) matches the filter of \"up\"; MQTT 3.1/3.1.1 cannot carry the loop "
                 "guard: use version \"5\" or disjoint topics");
}

static void test_loop_v5_and_disjoint(void **state)
{
    (void)state;
    struct relay_config cfg;
    /* the same routes with an MQTT 5 edge: the relay-path property guards the echo */
    load_ok("relay: { id = \"site-a\"; };\n"
            "brokers = (\n"
            "  { name = \"bifromq\"; url = \"mqtt://127.0.0.1:1883\"; },\n"
            "  { name = \"edge\"; url = \"mqtt://127.0.0.1:1884\"; version = \"5\"; }\n"
            ");\n" LOOP_ROUTES,
            &cfg);
    assert_int_equal(cfg.n_routes, 2);
    relay_config_cleanup(&cfg);
    /* 3.1.1 with topics that cannot come back */
    load_ok(BASE "routes = (\n"
                 "  { from = \"bifromq\"; to = \"edge\"; filter = \"cmd/#\";\n"
                 "    topic = \"in/${#}\"; },\n"
                 "  { from = \"edge\"; to = \"bifromq\"; filter = \"out/#\"; }\n"
                 ");\n",
            &cfg);
    assert_string_equal(cfg.routes[0].name, "bifromq->edge#0");
    assert_string_equal(cfg.routes[1].name, "edge->bifromq#1");
    relay_config_cleanup(&cfg);
    /* what "up" writes into bifromq (MQTT 5) may match "down": guarded there */
    load_ok(BASE
            "routes = (\n"
            "  { from = \"bifromq\"; to = \"edge\"; filter = \"cmd/#\";\n"
            "    topic = \"in/${#}\"; },\n"
            "  { from = \"edge\"; to = \"bifromq\"; filter = \"out/#\"; topic = \"cmd/${#}\"; }\n"
            ");\n",
            &cfg);
    relay_config_cleanup(&cfg);
}

/* ---- integer literals: libconfig 1.5 would wrap 4294967295 to -1 ------------------------- */

static void test_integer_literals(void **state)
{
    (void)state;
    struct relay_config cfg;
    load_ok(BROKER("session_expiry = 4294967295; rate_limit = { bytes = 0x100000000; };\n"
                   "  spool = { dir = \"s\"; max_size = 8589934592; }; keepalive = 0x10;\n"
                   "  client_id = \"12345678901234567890\"; # 99999999999 in a comment\n"
                   "  /* 99999999999 */ username = \"99999999999\";"),
            &cfg);
    const struct relay_broker_config *b = &cfg.brokers[0];
    assert_int_equal(b->session_expiry, 4294967295u);
    assert_int_equal(b->rate_bytes, 4294967296ull);
    assert_int_equal(b->spool.max_size, 8589934592ull);
    assert_int_equal(b->keepalive, 16);
    assert_string_equal(b->client_id, "12345678901234567890");
    assert_string_equal(b->username, "99999999999");
    relay_config_cleanup(&cfg);

    expect_error(BROKER("session_expiry = 4294967296;"),
                 "relay.conf:3: broker \"edge\": session_expiry = 4294967296 is out of range "
                 "(0..4294967295)");
    expect_error(BROKER("keepalive = -2147483649;"),
                 "relay.conf:3: broker \"edge\": keepalive = -2147483649 is out of range "
                 "(0..65535)");
    expect_error(BROKER("keepalive = 99999999999999999999;"),
                 "relay.conf:3: integer 99999999999999999999 is out of range (more than 64 bits)");
    expect_error(BROKER("keepalive = 0xffffffffffffffffL;"),
                 "relay.conf:3: integer 0xffffffffffffffffL is out of range (more than 64 bits)");
    expect_error("relay: { id = \"x\"; };\n@include \"other.conf\"\n",
                 "relay.conf:2: @include is not supported: keep the configuration in one file");
}

static void test_nul_byte(void **state)
{
    (void)state;
    struct relay_config cfg;
    char err[512];
    FILE *f = fopen("relay.conf", "w");
    assert_non_null(f);
    fwrite("relay: {\n id = \"a\0b\"; };\n", 1, 26, f);
    fclose(f);
    assert_int_equal(relay_config_load("relay.conf", &cfg, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "relay.conf:2: the file contains a NUL byte");
}

/* ---- issue 17: log_format, admin_token ----------------------------------------------------- */

#define ONE_BROKER "brokers = ( { name = \"edge\"; url = \"mqtt://h\"; } );\n"

static void test_log_format_and_admin_token(void **state)
{
    (void)state;
    struct relay_config cfg;
    char err[512], want[PATH_MAX + 200], dir[PATH_MAX];

    load_ok(ONE_BROKER, &cfg);
    assert_int_equal(cfg.log_format, RELAY_LOG_TEXT);
    assert_null(cfg.admin_token);
    relay_config_cleanup(&cfg);
    load_ok("relay: { log_format = \"json\"; admin_token = \"abcdefghijklmnop0123-._~+/==\"; "
            "};\n" ONE_BROKER,
            &cfg);
    assert_int_equal(cfg.log_format, RELAY_LOG_JSON);
    assert_string_equal(cfg.admin_token, "abcdefghijklmnop0123-._~+/==");
    assert_int_equal(cfg.admin_token_len, 28);
    relay_config_cleanup(&cfg);
    expect_error("relay: { log_format = \"yaml\"; };\n" ONE_BROKER,
                 "relay.conf:1: relay.log_format \"yaml\" is not one of text, json");
    /* a token that is too short or not token68: refused without quoting it */
    expect_error("relay: {\n admin_token = \"short-Secret\"; };\n" ONE_BROKER,
                 "relay.conf:2: relay.admin_token: the token must be 16 to 4096 characters of A-Z "
                 "a-z 0-9 - . _ ~ + / (then '=' padding), e.g. from \"openssl rand -hex 32\"");
    expect_error("relay: { admin_token = \"a Secret with spaces 0123456789\"; };\n" ONE_BROKER,
                 "relay.conf:1: relay.admin_token: the token must be 16 to 4096 characters of A-Z "
                 "a-z 0-9 - . _ ~ + / (then '=' padding), e.g. from \"openssl rand -hex 32\"");
    expect_error(
        "relay: { admin_token = \"0123456789abcdef0\";\n admin_token_file = \"t\"; };\n" ONE_BROKER,
        "relay.conf:2: relay.admin_token and relay.admin_token_file are exclusive: give one");
    /* the file: like a password_file (private, one trailing newline ignored) */
    assert_non_null(getcwd(dir, sizeof(dir)));
    write_file("tok", "0123456789abcdef0123456789abcdef\n", 0640);
    write_file("relay.conf", "relay: { admin_token_file = \"tok\"; };\n" ONE_BROKER, 0644);
    assert_int_equal(relay_config_load("relay.conf", &cfg, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want),
             "relay.conf:1: relay.admin_token_file \"tok\" (%s/tok): permissions 0640, must not "
             "be accessible by group or others (chmod 600)",
             dir);
    assert_string_equal(err, want);
    relay_config_cleanup(&cfg);
    assert_int_equal(chmod("tok", 0600), 0);
    load_ok("relay: { admin_token_file = \"tok\"; };\n" ONE_BROKER, &cfg);
    assert_string_equal(cfg.admin_token, "0123456789abcdef0123456789abcdef");
    relay_config_cleanup(&cfg);
    write_file("tok", "0123456789\nabcdef0123456789abcdef\n", 0600);
    write_file("relay.conf", "relay: { admin_token_file = \"tok\"; };\n" ONE_BROKER, 0644);
    assert_int_equal(relay_config_load("relay.conf", &cfg, err, sizeof(err)), -EINVAL);
    assert_null(strstr(err, "0123456789"));
    relay_config_cleanup(&cfg);
}

/* ---- the --check plan ----------------------------------------------------------------------- */

static void test_plan(void **state)
{
    (void)state;
    struct relay_config cfg;
    char err[512], *text = NULL;
    size_t len = 0;
    assert_int_equal(relay_config_load(RELAY_TEST_CONFIGS "/full.conf", &cfg, err, sizeof(err)), 0);
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    relay_config_print_plan(&cfg, out);
    fclose(out);
    static const char *const want[] = {
        "  id:              site-a\n",
        "  metrics:         http://127.0.0.1:9464/ (status page), /api/v1/status, /metrics, "
        "/healthz\n",
        "  log_format:      text\n",
        "  reload:          POST /-/reload from anyone who reaches the listener when it is on a "
        "loopback address, else refused (set relay.admin_token)\n",
        "  connections:     4, client ids relay-a-0, relay-a-1, relay-a-2, relay-a-3\n",
        "  password:        (set)\n",
        "  max_inflight:    auto: sized from the round trip, 20..4096 (50 per ms of round "
        "trip),\n                   QoS 2 at most 20\n",
        "  state_dir:       ",
        "  acknowledged:    end to end; from the spool of edge while its round trip is 5 ms or "
        "more\n",
        "  source window:   what edge lets out unacknowledged (its own limit; 20 would allow\n"
        "                   ~1000 / ~400 / ~200 msg/s per topic at 20 / 50 / 100 ms to edge)\n",
        ("\nroute cmd-down: bifromq -> edge\n"
         "  subscribe:       $oshare/relay/factory/+/cmd/# QoS 2 on bifromq#0..bifromq#3 (all 4 "
         "connections)\n"
         "  publish:         QoS at most 1, retain clear, properties drop\n"),
        ("  example:         factory/x1/cmd/a/b -> site-a/x1/cmd/a/b\n"
         "  example:         factory/x1/cmd -> site-a/x1/cmd\n"),
        "  subscribe:       telemetry/# QoS 1 on edge#0\n",
        "  example:         telemetry/a/b -> telemetry/a/b\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (!strstr(text, want[i]))
            print_error("missing from the plan:\n%s\n--- plan:\n%s", want[i], text);
        assert_non_null(strstr(text, want[i]));
    }
    assert_null(strstr(text, "secret"));
    free(text);
    relay_config_cleanup(&cfg);
}

/* The indexed loop check against the plain definition: every pair of opposite routes, both
 * orders, relay_tpl_overlaps() on each. Random routes between two MQTT 3.1.1 brokers. */
static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) & 0x7fff;
}

static void random_levels(uint32_t *seed, char *out, size_t cap, const char *const *lv, size_t n)
{
    unsigned k = 1 + rnd(seed) % 3;
    out[0] = '\0';
    for (unsigned i = 0; i < k; i++) {
        if (i)
            strncat(out, "/", cap - strlen(out) - 1);
        strncat(out, lv[rnd(seed) % n], cap - strlen(out) - 1);
    }
}

static void test_loop_check_random(void **state)
{
    (void)state;
    static const char *const flv[] = {"a", "b", "+", "x"};
    static const char *const tlv[] = {"a", "b", "${1}", "${#}", "x${#}", "${topic}", "p${1}"};
    uint32_t seed = 7;
    unsigned rejected = 0, accepted = 0;
    for (int round = 0; round < 1500; round++) {
        enum { N = 6 };
        char filter[N][64], topic[N][64], text[4096], err[512];
        size_t from[N];
        struct relay_tpl tpl[N];
        size_t o =
            (size_t)snprintf(text, sizeof(text),
                             "relay: { id = \"r\"; };\n"
                             "brokers = ( { name = \"p\"; url = \"mqtt://h\"; version = "
                             "\"3.1.1\"; },\n"
                             "  { name = \"q\"; url = \"mqtt://h\"; version = \"3.1.1\"; } );\n"
                             "routes = (\n");
        for (int i = 0; i < N; i++) {
            from[i] = rnd(&seed) % 2;
            random_levels(&seed, filter[i], sizeof(filter[i]), flv, 4);
            if (rnd(&seed) % 2)
                strcat(filter[i], "/#");
            do
                random_levels(&seed, topic[i], sizeof(topic[i]), tlv, 7);
            while (relay_tpl_compile(&tpl[i], topic[i], filter[i], err, sizeof(err)) != 0);
            o +=
                (size_t)snprintf(text + o, sizeof(text) - o,
                                 "  { name = \"r%d\"; from = \"%s\"; to = \"%s\"; filter = \"%s\"; "
                                 "topic = \"%s\"; }%s\n",
                                 i, from[i] ? "q" : "p", from[i] ? "p" : "q", filter[i], topic[i],
                                 i + 1 < N ? "," : "");
        }
        snprintf(text + o, sizeof(text) - o, ");\n");

        /* the plain definition, in the order the loader reports: later route, earlier route,
         * the earlier one publishing first */
        char want[512] = "";
        for (int j = 1; j < N && !want[0]; j++) {
            for (int i = 0; i < j && !want[0]; i++) {
                if (from[i] == from[j])
                    continue;
                for (int k = 0; k < 2 && !want[0]; k++) {
                    int a = k ? j : i, b = k ? i : j;
                    if (relay_tpl_overlaps(&tpl[a], filter[a], filter[b]))
                        snprintf(want, sizeof(want),
                                 "relay.conf:%d: routes \"r%d\" and \"r%d\" loop: what \"r%d\" "
                                 "publishes to %s (MQTT 3.1.1) matches the filter of \"r%d\"; "
                                 "MQTT 3.1/3.1.1 cannot carry the loop guard: use version \"5\" "
                                 "or disjoint topics",
                                 5 + j, a, b, a, from[a] ? "p" : "q", b);
                }
            }
        }
        for (int i = 0; i < N; i++)
            relay_tpl_cleanup(&tpl[i]);

        struct relay_config cfg;
        write_file("relay.conf", text, 0644);
        int rc = relay_config_load("relay.conf", &cfg, err, sizeof(err));
        if (want[0]) {
            if (rc != -EINVAL || strcmp(err, want) != 0)
                print_error("%s\nwant: %s\ngot:  %s\n", text, want, err);
            assert_int_equal(rc, -EINVAL);
            assert_string_equal(err, want);
            rejected++;
        } else {
            if (rc != 0)
                print_error("%s\nunexpected: %s\n", text, err);
            assert_int_equal(rc, 0);
            relay_config_cleanup(&cfg);
            accepted++;
        }
    }
    assert_true(rejected > 100);
    assert_true(accepted > 100);
}

/* ---- hostile sizes -------------------------------------------------------------------------- */

static void test_limits(void **state)
{
    (void)state;
    size_t cap = 80 * 70 + 100;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t o = (size_t)snprintf(text, cap, "brokers = (\n");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(text + o, cap - o, "{ name = \"b%d\"; url = \"mqtt://h\"; }%s\n", i,
                              i < 64 ? "," : "");
    snprintf(text + o, cap - o, ");\n");
    expect_error(text, "relay.conf:1: 65 brokers, at most 64 are allowed");
    free(text);

    size_t big = 70000;
    text = malloc(big + 1000);
    assert_non_null(text);
    o = (size_t)snprintf(text, 800,
                         BASE "routes = ( { from = \"edge\"; to = \"bifromq\";\n"
                              "  filter = \"");
    memset(text + o, 'a', big);
    o += big;
    snprintf(text + o, 200, "\"; } );\n");
    expect_error(text, "relay.conf:7: route \"edge->bifromq#0\": filter is longer than 65535 "
                       "bytes");
    free(text);
}

/* profile = "bifromq": BifroMQ's limits in one word, each key still wins; --check's arithmetic
 * and warnings. */
static void test_profile_bifromq(void **state)
{
    (void)state;
    struct relay_config cfg;
    const struct relay_broker_config *b;
    char *text = NULL, *warn = NULL;
    size_t len = 0, wlen = 0;
    FILE *out;

    load_ok("relay: { id = \"p\"; };\n"
            "brokers = (\n"
            "  { name = \"bq\"; url = \"mqtt://h\"; version = \"3.1.1\"; profile = \"bifromq\";\n"
            "    connections = 4; },\n"
            "  { name = \"edge\"; url = \"mqtt://e\"; }\n"
            ");\n"
            "routes = ( { from = \"edge\"; to = \"bq\"; filter = \"up/#\"; },\n"
            "  { from = \"bq\"; to = \"edge\"; filter = \"down/#\"; } );\n",
            &cfg);
    b = &cfg.brokers[0];
    assert_int_equal(b->profile, RELAY_PROFILE_BIFROMQ);
    assert_int_equal(b->rate_messages, 200);
    assert_int_equal(b->rate_bytes, 524288);
    assert_int_equal(b->max_inflight, 200);
    assert_int_equal(b->bridge_bit, RELAY_BRIDGE_OFF);
    assert_int_equal(b->max_packet_size, 262144);
    assert_int_equal(b->topic_aliases, 10);
    /* no profile: the plain defaults */
    b = &cfg.brokers[1];
    assert_int_equal(b->profile, RELAY_PROFILE_NONE);
    assert_int_equal(b->rate_messages, 0);
    assert_int_equal(b->rate_bytes, 0);
    assert_int_equal(b->max_inflight, 0);
    assert_int_equal(b->bridge_bit, RELAY_BRIDGE_AUTO);
    assert_int_equal(b->topic_aliases, RELAY_TOPIC_ALIASES_DEFAULT);
    out = open_memstream(&text, &len);
    relay_config_print_plan(&cfg, out);
    fclose(out);
    assert_non_null(strstr(text, "  profile:         bifromq"));
    assert_non_null(strstr(text, "  throughput:      at most 4 connections x 200 = 800 "
                                 "messages/s into bq"));
    assert_non_null(strstr(text, "195/s sustained each"));
    out = open_memstream(&warn, &wlen);
    relay_config_print_warnings(&cfg, out);
    fclose(out);
    /* the route from the BifroMQ-profile broker to a destination without a spool */
    assert_non_null(strstr(warn, "relay.conf:8: warning: route bq->edge#1: from bq (profile "
                                 "bifromq) to edge, which has no spool"));
    assert_null(strstr(warn, "route edge->bq#0"));
    free(text);
    free(warn);
    relay_config_cleanup(&cfg);

    /* each key still wins; a spool on the destination silences the warning; settings
     * BifroMQ refuses are warned about */
    load_ok("relay: { id = \"p\"; };\n"
            "brokers = (\n"
            "  { name = \"bq\"; url = \"mqtt://h\"; profile = \"bifromq\"; max_inflight = 300;\n"
            "    rate_limit = { messages = 500; }; bridge_bit = true; version = \"3.1.1\";\n"
            "    topic_aliases = 0; max_packet_size = 300000; },\n"
            "  { name = \"edge\"; url = \"mqtt://e\"; spool = { dir = \"sp\"; }; }\n"
            ");\n"
            "routes = ( { from = \"bq\"; to = \"edge\"; filter = \"down/#\"; } );\n",
            &cfg);
    b = &cfg.brokers[0];
    assert_int_equal(b->rate_messages, 500);
    assert_int_equal(b->rate_bytes, 524288); /* not given: the profile's */
    assert_int_equal(b->max_inflight, 300);
    assert_int_equal(b->bridge_bit, RELAY_BRIDGE_ON);
    assert_int_equal(b->topic_aliases, 0);
    assert_int_equal(b->max_packet_size, 300000);
    warn = NULL;
    out = open_memstream(&warn, &wlen);
    relay_config_print_warnings(&cfg, out);
    fclose(out);
    assert_null(strstr(warn, "no spool"));
    assert_non_null(strstr(warn, "rate_limit.messages = 500 (above it)"));
    assert_non_null(strstr(warn, "max_inflight = 300"));
    assert_non_null(strstr(warn, "max_packet_size = 300000"));
    assert_non_null(strstr(warn, "bridge_bit = true"));
    free(warn);
    relay_config_cleanup(&cfg);

    expect_error(
        BROKER("profile = \"emqx\";"),
        "relay.conf:3: broker \"edge\": profile \"emqx\" is not one of \"none\", \"bifromq\"");
    expect_error(BROKER("topic_aliases = 70000;"),
                 "relay.conf:3: broker \"edge\": topic_aliases = 70000 is out of range (0..65535)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_default_size, setup, teardown),
        cmocka_unit_test(test_cleanup_empty),
        cmocka_unit_test_setup_teardown(test_syntax_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_brokers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_types_and_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_broker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_broker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_template_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_route_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_file_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_exclusive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_needs_username_v3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_resources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v31_client_id_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_311, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_reverse_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_v5_and_disjoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_check_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integer_literals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_format_and_admin_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profile_bifromq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_dir, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
