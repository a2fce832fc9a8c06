/*
 * test_proxy.c: io/proxy.c, the proxy handshakes as byte machines: the exact requests (HTTP
 * CONNECT with and without Basic credentials, SOCKS5 greetings, RFC 1929 authentication, CONNECT
 * by name, IPv4 and IPv6), the answers fed whole and one byte at a time, the bytes after the
 * handshake left to the tunnel, every refusal's text (the user named, the password never), and
 * the password wiped once sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "io/proxy.h"

static uint8_t out[IO_PROXY_OUT_MAX];

static bool zeroed(const void *p, size_t n)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* Feeds in whole or one byte at a time; returns the final result, *used the total taken,
 * what was asked to be sent appended to sent (*sent_len). */
static int feed(struct io_proxy *p, const uint8_t *in, size_t len, bool bytewise, size_t *used,
                uint8_t *sent, size_t *sent_len)
{
    size_t off = 0;
    int rc = IO_PROXY_MORE;

    *used = 0;
    *sent_len = 0;
    while (off < len) {
        size_t take = bytewise ? 1 : len - off, u = 0, n = 0;

        rc = io_proxy_feed(p, in + off, take, &u, out, sizeof(out), &n);
        memcpy(sent + *sent_len, out, n);
        *sent_len += n;
        *used += u;
        if (rc != IO_PROXY_MORE)
            return rc;
        assert_int_equal(u, take);
        off += take;
    }
    return rc;
}

static void test_base64(void **state)
{
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},
             {"f", "Zg=="},
             {"fo", "Zm8="},
             {"foo", "Zm9v"},
             {"foob", "Zm9vYg=="},
             {"fooba", "Zm9vYmE="},
             {"foobar", "Zm9vYmFy"}}; /* RFC 4648 */
    char b[32];

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_int_equal(io_base64((const uint8_t *)v[i].in, strlen(v[i].in), b), strlen(v[i].out));
        assert_string_equal(b, v[i].out);
    }
}

static void test_http_request(void **state)
{
    struct io_proxy p;
    size_t n;

    (void)state;
    assert_int_equal(io_proxy_start(&p, IO_PROXY_HTTP, "broker.example", 8883, NULL, NULL, 0, out,
                                    sizeof(out), &n),
                     0);
    out[n] = 0;
    assert_string_equal((char *)out, "CONNECT broker.example:8883 HTTP/1.1\r\n"
                                     "Host: broker.example:8883\r\n"
                                     "User-Agent: mqtt-relay\r\n\r\n");
    /* "Aladdin:open sesame" is RFC 7617's example */
    assert_int_equal(io_proxy_start(&p, IO_PROXY_HTTP, "::1", 1883, "Aladdin", "open sesame", 11,
                                    out, sizeof(out), &n),
                     0);
    out[n] = 0;
    assert_string_equal((char *)out, "CONNECT [::1]:1883 HTTP/1.1\r\n"
                                     "Host: [::1]:1883\r\n"
                                     "User-Agent: mqtt-relay\r\n"
                                     "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"
                                     "\r\n");
    assert_true(zeroed(p.pass, sizeof(p.pass))); /* sent: wiped */
}

static void test_http_answers(void **state)
{
    static const char ok[] = "HTTP/1.1 200 Connection established\r\nX-A: b\r\n\r\n\x20\x02";
    uint8_t sent[64];
    size_t n, used, sl;

    (void)state;
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct io_proxy p;

        io_proxy_start(&p, IO_PROXY_HTTP, "h", 1, "u", "pw", 2, out, sizeof(out), &n);
        assert_int_equal(feed(&p, (const uint8_t *)ok, sizeof(ok) - 1, bytewise, &used, sent, &sl),
                         IO_PROXY_DONE);
        /* the two bytes after the head belong to the tunnel (a CONNACK) */
        assert_int_equal(used, sizeof(ok) - 1 - 2);
        assert_int_equal(sl, 0);
        assert_true(zeroed(p.pass, sizeof(p.pass)) && zeroed(p.user, sizeof(p.user)));
    }
}

static void expect_http_fail(const char *answer, const char *user, const char *want)
{
    struct io_proxy p;
    uint8_t sent[64];
    size_t n, used, sl;

    for (int bytewise = 0; bytewise < 2; bytewise++) {
        io_proxy_start(&p, IO_PROXY_HTTP, "broker.test", 1883, user, user ? "hunter2" : NULL,
                       user ? 7 : 0, out, sizeof(out), &n);
        assert_int_equal(
            feed(&p, (const uint8_t *)answer, strlen(answer), bytewise, &used, sent, &sl),
            IO_PROXY_FAIL);
        assert_string_equal(p.why, want);
        assert_null(strstr(p.why, "hunter2"));
        assert_true(zeroed(p.pass, sizeof(p.pass)));
    }
}

static void test_http_refusals(void **state)
{
    (void)state;
    expect_http_fail("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "relay",
                     "refused the credentials of user \"relay\" (HTTP 407 Proxy Authentication "
                     "Required)");
    expect_http_fail("HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: "
                     "Basic\r\n\r\n",
                     NULL,
                     "requires authentication (HTTP 407 Proxy Authentication Required): give "
                     "http://USER:PASSWORD@host:port");
    expect_http_fail("HTTP/1.1 403 Forbidden\r\n\r\n", NULL,
                     "refused the tunnel to broker.test:1883: HTTP 403 Forbidden");
    expect_http_fail("HTTP/1.1 502 Bad\x01Gateway\r\n\r\n", NULL,
                     "refused the tunnel to broker.test:1883: HTTP 502 Bad?Gateway");
    expect_http_fail("\x05\x00", NULL, "did not answer in HTTP (is it a SOCKS5 proxy?)");
    expect_http_fail("SSH-2.0-OpenSSH\r\n\r\n", NULL,
                     "did not answer in HTTP (is it a SOCKS5 proxy?)");
}

static void test_http_too_long(void **state)
{
    static char big[IO_PROXY_IN_MAX + 100];
    struct io_proxy p;
    uint8_t sent[64];
    size_t n, used, sl;

    (void)state;
    memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
    memset(big + 17, 'x', sizeof(big) - 18);
    big[sizeof(big) - 1] = 0;
    io_proxy_start(&p, IO_PROXY_HTTP, "h", 1, NULL, NULL, 0, out, sizeof(out), &n);
    assert_int_equal(feed(&p, (const uint8_t *)big, strlen(big), false, &used, sent, &sl),
                     IO_PROXY_FAIL);
    assert_string_equal(p.why, "sent an answer longer than 8192 bytes");
}

static void test_socks_no_auth(void **state)
{
    /* method "no authentication", then CONNECT succeeded (bound 10.0.0.1:4660), then 3 bytes
     * from the target */
    static const uint8_t ans[] = {5, 0, 5, 0, 0, 1, 10, 0, 0, 1, 0x12, 0x34, 0xaa, 0xbb, 0xcc};
    static const uint8_t connect_req[] = {5,   1,   0,   3,   11,  'b', 'r', 'o',  'k',
                                          'e', 'r', '.', 't', 'e', 's', 't', 0x07, 0x5b};
    uint8_t sent[512];
    size_t n, used, sl;

    (void)state;
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct io_proxy p;

        assert_int_equal(io_proxy_start(&p, IO_PROXY_SOCKS5, "broker.test", 1883, NULL, NULL, 0,
                                        out, sizeof(out), &n),
                         0);
        assert_int_equal(n, 3);
        assert_memory_equal(out, "\x05\x01\x00", 3);
        assert_int_equal(feed(&p, ans, sizeof(ans), bytewise, &used, sent, &sl), IO_PROXY_DONE);
        assert_int_equal(used, sizeof(ans) - 3);
        assert_int_equal(sl, sizeof(connect_req)); /* the CONNECT, by name */
        assert_memory_equal(sent, connect_req, sizeof(connect_req));
    }
}

static void test_socks_auth(void **state)
{
    /* method 2, auth ok, CONNECT ok with a domain-name bound address ("ab", port 1) */
    static const uint8_t ans[] = {5, 2, 1, 0, 5, 0, 0, 3, 2, 'a', 'b', 0, 1};
    static const uint8_t auth_req[] = {1, 4, 'u', 's', 'e', 'r', 3, 'p', 'w', 'd'};
    static const uint8_t connect_req[] = {5, 1, 0, 1, 127, 0, 0, 1, 0x22, 0xb3};
    uint8_t sent[512];
    size_t n, used, sl;

    (void)state;
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct io_proxy p;

        assert_int_equal(io_proxy_start(&p, IO_PROXY_SOCKS5, "127.0.0.1", 8883, "user", "pwd", 3,
                                        out, sizeof(out), &n),
                         0);
        assert_int_equal(n, 4);
        assert_memory_equal(out, "\x05\x02\x00\x02", 4); /* none, or user/password */
        assert_int_equal(feed(&p, ans, sizeof(ans), bytewise, &used, sent, &sl), IO_PROXY_DONE);
        assert_int_equal(used, sizeof(ans));
        assert_int_equal(sl, sizeof(auth_req) + sizeof(connect_req));
        assert_memory_equal(sent, auth_req, sizeof(auth_req));
        assert_memory_equal(sent + sizeof(auth_req), connect_req, sizeof(connect_req));
        assert_true(zeroed(p.pass, sizeof(p.pass)));
    }
}

static void test_socks_ipv6(void **state)
{
    static const uint8_t want[] = {5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0,    0,
                                   0, 0, 0, 0, 0,    0,    0,    0,    1, 0x01, 0xbb};
    static const uint8_t ans[] = {5, 0, 5, 0, 0, 4, 0, 0, 0, 0, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9};
    struct io_proxy p;
    uint8_t sent[512];
    size_t n, used, sl;

    (void)state;
    io_proxy_start(&p, IO_PROXY_SOCKS5, "2001:db8::1", 443, NULL, NULL, 0, out, sizeof(out), &n);
    assert_int_equal(feed(&p, ans, sizeof(ans), true, &used, sent, &sl), IO_PROXY_DONE);
    assert_int_equal(sl, sizeof(want));
    assert_memory_equal(sent, want, sizeof(want));
}

static void expect_socks_fail(const uint8_t *ans, size_t len, const char *user, const char *want)
{
    uint8_t sent[512];
    size_t n, used, sl;

    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct io_proxy p;

        io_proxy_start(&p, IO_PROXY_SOCKS5, "broker.test", 1883, user, user ? "hunter2" : NULL,
                       user ? 7 : 0, out, sizeof(out), &n);
        assert_int_equal(feed(&p, ans, len, bytewise, &used, sent, &sl), IO_PROXY_FAIL);
        assert_string_equal(p.why, want);
        assert_null(strstr(p.why, "hunter2"));
    }
}

static void test_socks_refusals(void **state)
{
    static const uint8_t no_method[] = {5, 0xff};
    static const uint8_t bad_auth[] = {5, 2, 1, 1};
    static const uint8_t refused[] = {5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0};
    static const uint8_t not_allowed[] = {5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0};
    static const uint8_t http[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    static const uint8_t odd_method[] = {5, 1};
    static const uint8_t bad_atyp[] = {5, 0, 5, 0, 0, 7, 0, 0, 0, 0, 0, 0};

    (void)state;
    expect_socks_fail(no_method, sizeof(no_method), NULL,
                      "requires authentication: give socks5://USER:PASSWORD@host:port");
    expect_socks_fail(no_method, sizeof(no_method), "relay",
                      "accepts none of our authentication methods (no authentication, user name "
                      "and password)");
    expect_socks_fail(bad_auth, sizeof(bad_auth), "relay",
                      "refused the credentials of user \"relay\" (status 1)");
    expect_socks_fail(refused, sizeof(refused), NULL,
                      "could not reach broker.test:1883: connection refused by the target "
                      "(reply 5)");
    expect_socks_fail(not_allowed, sizeof(not_allowed), NULL,
                      "could not reach broker.test:1883: connection not allowed by its rules "
                      "(reply 2)");
    expect_socks_fail(http, sizeof(http) - 1, NULL,
                      "did not answer in SOCKS5 (is it an HTTP proxy?)");
    expect_socks_fail(odd_method, sizeof(odd_method), NULL,
                      "chose an authentication method we did not offer (1)");
    expect_socks_fail(bad_atyp, sizeof(bad_atyp), NULL,
                      "sent a reply with an unknown address type (7)");
}

static void test_limits(void **state)
{
    char longname[300];
    struct io_proxy p;
    size_t n;

    (void)state;
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    assert_int_equal(
        io_proxy_start(&p, IO_PROXY_SOCKS5, longname, 1, NULL, NULL, 0, out, sizeof(out), &n), -1);
    assert_int_equal(
        io_proxy_start(&p, IO_PROXY_SOCKS5, "h", 1, longname, "x", 1, out, sizeof(out), &n), -1);
    assert_true(zeroed(p.pass, sizeof(p.pass)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),         cmocka_unit_test(test_http_request),
        cmocka_unit_test(test_http_answers),   cmocka_unit_test(test_http_refusals),
        cmocka_unit_test(test_http_too_long),  cmocka_unit_test(test_socks_no_auth),
        cmocka_unit_test(test_socks_auth),     cmocka_unit_test(test_socks_ipv6),
        cmocka_unit_test(test_socks_refusals), cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
