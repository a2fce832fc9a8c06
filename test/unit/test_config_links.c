/*
 * test_config_links.c: the configuration keys of issue 13 (conf/link.c): the proxy (relay.proxy,
 * broker.proxy, relay.no_proxy), tcp_keepalive and tcp_user_timeout with their defaults,
 * bind_address, the tls options (alpn, ciphers, ciphersuites, min_version, keylog_file), the TLS
 * files' content hash a reload compares, and --check's lines for them. A proxy password never
 * shows in an error or in the plan.
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

struct scratch {
    char dir[64];
    char old[PATH_MAX];
};

static int setup(void **state)
{
    struct scratch *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    snprintf(s->dir, sizeof(s->dir), "/tmp/relay-cfg-links.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    assert_non_null(getcwd(s->old, sizeof(s->old)));
    assert_int_equal(chdir(s->dir), 0);
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

/* In place when it exists (same inode), as a rotation agent writes. */
static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void expect_error(const char *text, const char *want)
{
    struct relay_config cfg;
    char err[512];
    write_file("relay.conf", text);
    int rc = relay_config_load("relay.conf", &cfg, err, sizeof(err));
    assert_string_equal(err, want);
    assert_int_equal(rc, -EINVAL);
    relay_config_cleanup(&cfg);
}

static void load_ok(const char *text, struct relay_config *cfg)
{
    char err[512] = "";
    write_file("relay.conf", text);
    int rc = relay_config_load("relay.conf", cfg, err, sizeof(err));
    assert_string_equal(err, "");
    assert_int_equal(rc, 0);
}

/* One broker group, lines 1..4, with extra settings X on line 3. */
#define BROKER(X)                                                                                  \
    "relay: { id = \"site-a\"; };\n"                                                               \
    "brokers = ( { name = \"edge\"; url = \"mqtts://h\";\n"                                        \
    "  " X "\n"                                                                                    \
    "} );\n"

static void test_defaults(void **state)
{
    struct relay_config cfg;

    (void)state;
    load_ok(BROKER(""), &cfg);
    const struct relay_broker_config *b = &cfg.brokers[0];
    assert_int_equal(b->proxy.kind, RELAY_PROXY_NONE);
    assert_false(b->urls[0].direct);
    assert_int_equal(b->tcp_keepalive_s, 30);        /* keepalive 60 / 2 */
    assert_int_equal(b->tcp_user_timeout_ms, 45000); /* keepalive 60 x 750 ms */
    assert_null(b->bind_address);
    assert_int_equal(b->tls.min_version, RELAY_TLS_1_2);
    assert_int_equal(b->tls.n_alpn, 0);
    assert_null(b->tls.ciphers);
    assert_null(b->tls.keylog_file);
    assert_int_equal(b->tls.files_sum, 0);
    relay_config_cleanup(&cfg);
    load_ok(BROKER("keepalive = 7;"), &cfg);
    assert_int_equal(cfg.brokers[0].tcp_keepalive_s, 4);
    assert_int_equal(cfg.brokers[0].tcp_user_timeout_ms, 5250);
    relay_config_cleanup(&cfg);
    load_ok(BROKER("keepalive = 0;"), &cfg); /* MQTT keepalive off: TCP still notices */
    assert_int_equal(cfg.brokers[0].tcp_keepalive_s, 30);
    assert_int_equal(cfg.brokers[0].tcp_user_timeout_ms, 45000);
    relay_config_cleanup(&cfg);
    load_ok(BROKER("tcp_keepalive = 0; tcp_user_timeout = 0; bind_address = \"::1\";"), &cfg);
    assert_int_equal(cfg.brokers[0].tcp_keepalive_s, 0);
    assert_int_equal(cfg.brokers[0].tcp_user_timeout_ms, 0);
    assert_string_equal(cfg.brokers[0].bind_address, "::1");
    relay_config_cleanup(&cfg);
}

static void test_tcp_errors(void **state)
{
    (void)state;
    expect_error(BROKER("tcp_keepalive = 40000;"),
                 "relay.conf:3: broker \"edge\": tcp_keepalive = 40000 is out of range "
                 "(0..32767)");
    expect_error(BROKER("tcp_user_timeout = -1;"),
                 "relay.conf:3: broker \"edge\": tcp_user_timeout = -1 is out of range "
                 "(0..2147483647)");
    expect_error(BROKER("bind_address = \"eth0\";"),
                 "relay.conf:3: broker \"edge\": bind_address \"eth0\" must be an IPv4 or IPv6 "
                 "address of this machine (not a name or an interface)");
    expect_error(BROKER("tcp_keepalives = 1;"),
                 "relay.conf:3: broker \"edge\": unknown key \"tcp_keepalives\" (did you mean "
                 "\"tcp_keepalive\"?)");
}

static void test_proxy(void **state)
{
    struct relay_config cfg;

    (void)state;
    load_ok(
        "relay: { id = \"a\"; proxy = \"http://u%3Ax:p%40ss:w@proxy.example:3128\";\n"
        "  no_proxy = [\"localhost\", \".corp.example\", \"10.0.0.0/8\", \"fd00::/8\"]; };\n"
        "brokers = (\n"
        "  { name = \"b1\"; url = [\"mqtt://x.example\", \"mqtt://localhost\",\n"
        "     \"mqtt://a.corp.example\", \"mqtt://corp.example\", \"mqtt://xcorp.example\",\n"
        "     \"mqtt://10.1.2.3\", \"mqtt://11.0.0.1\", \"mqtt://[fd00::5]\", "
        "\"mqtt://[fe80::1]\"]; },\n"
        "  { name = \"b2\"; url = \"mqtt://x.example\"; proxy = \"none\"; client_id = \"c2\"; },\n"
        "  { name = \"b3\"; url = \"mqtt://x.example\"; client_id = \"c3\";\n"
        "    proxy = \"socks5h://[::1]:1080\"; }\n"
        ");\n",
        &cfg);
    const struct relay_broker_config *b = &cfg.brokers[0];
    assert_int_equal(b->proxy.kind, RELAY_PROXY_HTTP);
    assert_string_equal(b->proxy.host, "proxy.example");
    assert_int_equal(b->proxy.port, 3128);
    assert_string_equal(b->proxy.username, "u:x");
    assert_string_equal(b->proxy.password, "p@ss:w");
    assert_int_equal(b->proxy.password_len, 6);
    static const bool direct[] = {false, true, true, true, false, true, false, true, false};
    assert_int_equal(b->n_urls, 9);
    for (size_t i = 0; i < b->n_urls; i++)
        assert_int_equal(b->urls[i].direct, direct[i]);
    assert_int_equal(cfg.brokers[1].proxy.kind, RELAY_PROXY_NONE);
    assert_int_equal(cfg.brokers[2].proxy.kind, RELAY_PROXY_SOCKS5);
    assert_string_equal(cfg.brokers[2].proxy.host, "::1");
    assert_null(cfg.brokers[2].proxy.username);

    /* --check: the proxy and the direct URLs, never the password */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    relay_config_print_plan(&cfg, f);
    fclose(f);
    assert_non_null(strstr(text, "proxy:           HTTP CONNECT proxy proxy.example:3128, user "
                                 "\"u:x\" (password set)\n"));
    assert_non_null(strstr(text, "mqtt://localhost: direct (relay.no_proxy)"));
    assert_non_null(strstr(text, "SOCKS5 proxy [::1]:1080; the proxy resolves the broker's name"));
    assert_non_null(strstr(text, "no_proxy:        localhost, .corp.example, 10.0.0.0/8, "
                                 "fd00::/8\n"));
    assert_null(strstr(text, "p@ss"));
    assert_null(strstr(text, "p%40ss"));
    free(text);
    relay_config_cleanup(&cfg);
    /* "*" sends every broker direct */
    load_ok("relay: { id = \"a\"; proxy = \"socks5://h:1\"; no_proxy = \"*\"; };\n"
            "brokers = ( { name = \"b\"; url = \"mqtt://x\"; } );\n",
            &cfg);
    assert_true(cfg.brokers[0].urls[0].direct);
    relay_config_cleanup(&cfg);
}

static void test_proxy_errors(void **state)
{
    (void)state;
    expect_error(BROKER("proxy = \"http://user:hunter2@proxy.example\";"),
                 "relay.conf:3: broker \"edge\": proxy \"http://user:***@proxy.example\": the port "
                 "is required (HOST:PORT)");
    expect_error(BROKER("proxy = \"https://user:hunter2@p:1\";"),
                 "relay.conf:3: broker \"edge\": proxy \"https://user:***@p:1\": use "
                 "http://[USER:PASSWORD@]HOST:PORT (HTTP CONNECT) or "
                 "socks5://[USER:PASSWORD@]HOST:PORT (TLS to the proxy is not supported)");
    expect_error(BROKER("proxy = \"http://user:hun%zzter2@p:1\";"),
                 "relay.conf:3: broker \"edge\": proxy \"http://user:***@p:1\": invalid password "
                 "(escape special characters as %XX)");
    expect_error(BROKER("proxy = \"socks5://u@p:70000\";"),
                 "relay.conf:3: broker \"edge\": proxy \"socks5://u@p:70000\": invalid port "
                 "(1..65535)");
    expect_error(BROKER("proxy = \"http://p:1/path\";"),
                 "relay.conf:3: broker \"edge\": proxy \"http://p:1/path\": a proxy URL has no "
                 "path");
    expect_error("relay: { id = \"a\"; no_proxy = [\"bad host!\"]; };\n"
                 "brokers = ( { name = \"b\"; url = \"mqtt://x\"; } );\n",
                 "relay.conf:1: relay.no_proxy entry \"bad host!\" is not \"*\", a host name, "
                 "\".domain\", an IP address or ADDRESS/PREFIX");
    expect_error("relay: { id = \"a\"; no_proxy = [\"10.0.0.0/33\"]; };\n"
                 "brokers = ( { name = \"b\"; url = \"mqtt://x\"; } );\n",
                 "relay.conf:1: relay.no_proxy entry \"10.0.0.0/33\" is not \"*\", a host name, "
                 "\".domain\", an IP address or ADDRESS/PREFIX");
}

static void test_tls_options(void **state)
{
    struct relay_config cfg;

    load_ok(BROKER("tls = { alpn = [\"x-amzn-mqtt-ca\", \"mqtt\"]; ciphers = "
                   "\"ECDHE-ECDSA-AES256-GCM-SHA384:!aNULL\"; ciphersuites = "
                   "\"TLS_AES_256_GCM_SHA384\"; min_version = \"1.3\"; keylog_file = "
                   "\"keys.log\"; };"),
            &cfg);
    const struct relay_tls_config *t = &cfg.brokers[0].tls;
    assert_int_equal(t->n_alpn, 2);
    assert_string_equal(t->alpn[0], "x-amzn-mqtt-ca");
    assert_string_equal(t->alpn[1], "mqtt");
    assert_string_equal(t->ciphers, "ECDHE-ECDSA-AES256-GCM-SHA384:!aNULL");
    assert_string_equal(t->ciphersuites, "TLS_AES_256_GCM_SHA384");
    assert_int_equal(t->min_version, RELAY_TLS_1_3);
    assert_non_null(strstr(t->keylog_file, "/keys.log"));
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    relay_config_print_plan(&cfg, f);
    fclose(f);
    assert_non_null(strstr(text,
                           "min_version TLS 1.3, ciphers ECDHE-ECDSA-AES256-GCM-SHA384:!aNULL, "
                           "ciphersuites TLS_AES_256_GCM_SHA384"));
    assert_non_null(strstr(text, "alpn \"x-amzn-mqtt-ca\", \"mqtt\"; sessions resumed"));
    assert_non_null(strstr(text, "WARNING: the session keys are written there"));
    assert_non_null(strstr(text, "ca: the system trust store"));
    free(text);
    relay_config_cleanup(&cfg);
    load_ok(BROKER("tls = { alpn = \"x-amzn-mqtt-ca\"; };"), &cfg);
    assert_int_equal(cfg.brokers[0].tls.n_alpn, 1);
    relay_config_cleanup(&cfg);

    expect_error(BROKER("tls = { alpn = []; };"),
                 "relay.conf:3: broker \"edge\": tls.alpn must not be an empty list");
    expect_error(BROKER("tls = { alpn = [\"a b\"]; };"),
                 "relay.conf:3: broker \"edge\": tls.alpn entry \"a b\" must be 1..255 printable "
                 "ASCII characters (no space or comma)");
    expect_error(BROKER("tls = { min_version = \"1.1\"; };"),
                 "relay.conf:3: broker \"edge\": tls.min_version \"1.1\" is not one of \"1.2\", "
                 "\"1.3\"");
    expect_error(BROKER("tls = { ciphers = \"AES;rm -rf\"; };"),
                 "relay.conf:3: broker \"edge\": tls.ciphers \"AES;rm -rf\" is not an OpenSSL "
                 "cipher string (names separated by ':')");
    char want[512], *dir = realpath(((struct scratch *)*state)->dir, NULL);
    assert_non_null(dir);
    snprintf(want, sizeof(want),
             "relay.conf:3: broker \"edge\": tls.keylog_file \"no/such/dir/keys.log\": folder "
             "%s/no/such/dir: No such file or directory",
             dir);
    free(dir);
    expect_error(BROKER("tls = { keylog_file = \"no/such/dir/keys.log\"; };"), want);
}

static void test_files_sum(void **state)
{
    struct scratch *s = *state;
    struct relay_config a, b, c;
    uint64_t sa;

    (void)s;
    write_file("ca.pem", "CA one");
    write_file("c.pem", "cert one");
    write_file("k.pem", "key one");
#define TLSFILES "tls = { ca_file = \"ca.pem\"; cert_file = \"c.pem\"; key_file = \"k.pem\"; };"
    load_ok(BROKER(TLSFILES), &a);
    sa = a.brokers[0].tls.files_sum;
    assert_true(sa != 0);
    load_ok(BROKER(TLSFILES), &b); /* same bytes: same sum */
    assert_true(b.brokers[0].tls.files_sum == sa);
    write_file("k.pem", "key two"); /* rewritten in place, same path */
    load_ok(BROKER(TLSFILES), &c);
    assert_true(c.brokers[0].tls.files_sum != sa);
    relay_config_cleanup(&a);
    relay_config_cleanup(&b);
    relay_config_cleanup(&c);
    /* the bytes move from one file to the next: still a change */
    write_file("k.pem", "key one");
    write_file("c.pem", "cert onekey");
    write_file("k.pem", " one");
    load_ok(BROKER(TLSFILES), &a);
    assert_true(a.brokers[0].tls.files_sum != sa);
    relay_config_cleanup(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_sum, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
