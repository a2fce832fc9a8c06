/*
 * test_ws.c: io/ws.c, the WebSocket client as a byte machine: the upgrade request and RFC
 * 6455's own accept-key example, answers accepted and refused (whole and one byte at a time),
 * frames decoded at every split (small, 16-bit and 64-bit lengths, fragmented messages, a
 * Ping's payload kept for the Pong, a Close's code and reason), the frames a client must refuse
 * (masked, reserved bits, text, oversized control, a stray continuation), and the client frames'
 * headers and masking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/ws.h"

/* RFC 6455 §1.3: the nonce "the sample nonce" is key dGhlIHNhbXBsZSBub25jZQ== and its accept
 * value s3pPLMBiTxaQ9kYGzzhZRbK+xOo= */
static const uint8_t nonce[16] = "the sample nonce";
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static void start(struct io_ws *w)
{
    char req[1024];

    assert_true(io_ws_request(w, "broker.test:8080", "/mqtt", "mqtt", nonce, req, sizeof(req)) > 0);
}

static void test_request(void **state)
{
    struct io_ws w;
    char req[1024];
    size_t n;

    (void)state;
    n = io_ws_request(&w, "broker.test:8080", "/custom/path", "mqttv3.1", nonce, req, sizeof(req));
    assert_int_equal(n, strlen(req));
    assert_string_equal(req, "GET /custom/path HTTP/1.1\r\n"
                             "Host: broker.test:8080\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n"
                             "Sec-WebSocket-Protocol: mqttv3.1\r\n"
                             "User-Agent: mqtt-relay\r\n"
                             "\r\n");
    assert_string_equal(w.accept, ACCEPT);
    assert_int_equal(io_ws_request(&w, "h", "/", "mqtt", nonce, req, 10), 0); /* too small */
}

static int response(const char *text, bool bytewise, size_t *used, char *why)
{
    struct io_ws w;
    size_t len = strlen(text), off = 0;
    int rc = IO_WS_MORE;

    start(&w);
    *used = 0;
    while (off < len) {
        size_t take = bytewise ? 1 : len - off, u = 0;

        rc = io_ws_response(&w, (const uint8_t *)text + off, take, &u, why, 200);
        *used += u;
        if (rc != IO_WS_MORE)
            break;
        off += take;
    }
    return rc;
}

#define OK_HEAD                                                                                    \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"            \
    "Sec-WebSocket-Accept: " ACCEPT "\r\n"

static void test_response_ok(void **state)
{
    static const char *const good[] = {
        OK_HEAD "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
        OK_HEAD "\r\n", /* no subprotocol named: ours taken */
        "HTTP/1.1 101 OK\r\nupgrade:   WebSocket \r\nconnection: keep-alive, Upgrade\r\n"
        "sec-websocket-accept: " ACCEPT "\r\nSec-WebSocket-Protocol: MQTT\r\n\r\n",
    };
    char why[200];
    size_t used;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        for (int b = 0; b < 2; b++) {
            assert_int_equal(response(good[i], b, &used, why), IO_WS_OK);
            assert_int_equal(used, strlen(good[i]));
        }
    /* frame bytes right after the head are not the head's */
    char both[512];
    snprintf(both, sizeof(both), "%s\r\n\x82\x02\x20\x02", OK_HEAD);
    assert_int_equal(response(both, false, &used, why), IO_WS_OK);
    assert_int_equal(used, strlen(OK_HEAD) + 2);
}

static void expect_refused(const char *text, const char *want)
{
    char why[200];
    size_t used;

    for (int b = 0; b < 2; b++) {
        why[0] = 0;
        assert_int_equal(response(text, b, &used, why), IO_WS_FAIL);
        assert_string_equal(why, want);
    }
}

static void test_response_refused(void **state)
{
    (void)state;
    expect_refused("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                   "WebSocket upgrade refused: HTTP 404");
    expect_refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                   "Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
                   "WebSocket upgrade failed: wrong Sec-WebSocket-Accept");
    expect_refused("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                   "WebSocket upgrade failed: no \"Upgrade: websocket\" in the answer");
    expect_refused(OK_HEAD "Sec-WebSocket-Protocol: mqttv3.1\r\n\r\n",
                   "WebSocket upgrade refused: subprotocol not accepted (\"mqtt\" asked)");
    expect_refused(OK_HEAD "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                   "WebSocket upgrade failed: the server chose an extension we did not offer");
    expect_refused("\x20\x02\x00\x00garbage\r\n\r\n",
                   "WebSocket upgrade failed: the server did not answer in HTTP");
}

/* ---- frames ------------------------------------------------------------------------------- */

struct sink {
    uint8_t buf[200000];
    size_t n;
};

static int collect(void *arg, const uint8_t *p, size_t n)
{
    struct sink *s = arg;

    assert_true(s->n + n <= sizeof(s->buf));
    memcpy(s->buf + s->n, p, n);
    s->n += n;
    return 0;
}

/* Decodes in split at every offset (two calls): the payloads must come out the same. */
static void decode_every_split(const uint8_t *in, size_t len, const uint8_t *want, size_t wl,
                               int want_rc)
{
    static struct sink s;
    char why[200];

    for (size_t cut = 0; cut <= len; cut++) {
        struct io_ws w;
        int rc;

        start(&w);
        s.n = 0;
        rc = io_ws_decode(&w, in, cut, collect, &s, why, sizeof(why));
        if (rc == IO_WS_OK)
            rc = io_ws_decode(&w, in + cut, len - cut, collect, &s, why, sizeof(why));
        assert_int_equal(rc, want_rc);
        assert_int_equal(s.n, wl);
        assert_memory_equal(s.buf, want, wl);
    }
}

static void test_decode_data(void **state)
{
    static uint8_t in[70000 + 64], want[70000];
    size_t o = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(want); i++)
        want[i] = (uint8_t)(i * 7);
    /* 5 bytes, then 300 (16-bit length), then fragmented: 10 + continuation 65685 (64-bit) */
    in[o++] = 0x82, in[o++] = 5;
    memcpy(in + o, want, 5), o += 5;
    in[o++] = 0x82, in[o++] = 126, in[o++] = 300 >> 8, in[o++] = 300 & 0xff;
    memcpy(in + o, want + 5, 300), o += 300;
    in[o++] = 0x02, in[o++] = 10; /* binary, not final */
    memcpy(in + o, want + 305, 10), o += 10;
    in[o++] = 0x89, in[o++] = 2, in[o++] = 'h', in[o++] = 'i'; /* a Ping between fragments */
    size_t rest = sizeof(want) - 315;
    in[o++] = 0x80, in[o++] = 127; /* the final continuation, 64-bit length */
    for (int i = 7; i >= 0; i--)
        in[o++] = (uint8_t)(rest >> (8 * i));
    memcpy(in + o, want + 315, rest), o += rest;
    /* every split would take long for 70 KB: the first and last 400 offsets, and a few */
    struct io_ws w;
    static struct sink s;
    char why[200];
    for (size_t cut = 0; cut <= o; cut += cut < 400 || cut > o - 400 ? 1 : 997) {
        start(&w);
        s.n = 0;
        assert_int_equal(io_ws_decode(&w, in, cut, collect, &s, why, sizeof(why)), IO_WS_OK);
        assert_int_equal(io_ws_decode(&w, in + cut, o - cut, collect, &s, why, sizeof(why)),
                         IO_WS_OK);
        assert_int_equal(s.n, sizeof(want));
        assert_memory_equal(s.buf, want, sizeof(want));
        assert_true(w.pong_due);
        assert_int_equal(w.pong_len, 2);
        assert_memory_equal(w.pong, "hi", 2);
    }
    /* byte at a time */
    start(&w);
    s.n = 0;
    for (size_t i = 0; i < o; i++)
        assert_int_equal(io_ws_decode(&w, in + i, 1, collect, &s, why, sizeof(why)), IO_WS_OK);
    assert_int_equal(s.n, sizeof(want));
}

static void test_decode_close(void **state)
{
    static const uint8_t close_reason[] = {0x82, 1,   'x', 0x88, 7,   0x03,
                                           0xe9, 'g', 'o', 'i',  'n', 'g'};
    static const uint8_t close_empty[] = {0x88, 0};
    struct io_ws w;
    struct sink *s = calloc(1, sizeof(*s));
    char why[200];

    (void)state;
    decode_every_split(close_reason, sizeof(close_reason), (const uint8_t *)"x", 1, IO_WS_CLOSED);
    start(&w);
    assert_int_equal(
        io_ws_decode(&w, close_reason, sizeof(close_reason), collect, s, why, sizeof(why)),
        IO_WS_CLOSED);
    assert_string_equal(why, "WebSocket closed by server (1001: going)");
    assert_int_equal(w.close_code, 1001);
    start(&w);
    assert_int_equal(
        io_ws_decode(&w, close_empty, sizeof(close_empty), collect, s, why, sizeof(why)),
        IO_WS_CLOSED);
    assert_string_equal(why, "WebSocket closed by server (1005)");
    free(s);
}

static void expect_bad(const uint8_t *in, size_t len, const char *want)
{
    struct io_ws w;
    struct sink *s = calloc(1, sizeof(*s));
    char why[200];

    start(&w);
    assert_int_equal(io_ws_decode(&w, in, len, collect, s, why, sizeof(why)), IO_WS_FAIL);
    assert_string_equal(why, want);
    free(s);
}

static void test_decode_bad(void **state)
{
    static const uint8_t masked[] = {0x82, 0x81, 1, 2, 3, 4, 5};
    static const uint8_t rsv[] = {0xc2, 0};
    static const uint8_t text[] = {0x81, 1, 'a'};
    static const uint8_t big_ping[] = {0x89, 126, 0, 126};
    static const uint8_t frag_ping[] = {0x09, 0};
    static const uint8_t stray[] = {0x80, 1, 'a'};
    static const uint8_t nested[] = {0x02, 1, 'a', 0x82, 1, 'b'};
    static const uint8_t op3[] = {0x83, 0};
    static const uint8_t huge[] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0};

    (void)state;
    expect_bad(masked, sizeof(masked), "WebSocket: the server sent a masked frame");
    expect_bad(rsv, sizeof(rsv), "WebSocket: frame with reserved bits set");
    expect_bad(text, sizeof(text), "WebSocket: a text frame (MQTT is sent in binary frames)");
    expect_bad(big_ping, sizeof(big_ping), "WebSocket: invalid control frame (opcode 9)");
    expect_bad(frag_ping, sizeof(frag_ping), "WebSocket: invalid control frame (opcode 9)");
    expect_bad(stray, sizeof(stray), "WebSocket: a continuation frame with no message open");
    expect_bad(nested, sizeof(nested), "WebSocket: a new message inside a fragmented one");
    expect_bad(op3, sizeof(op3), "WebSocket: unknown opcode 3");
    expect_bad(huge, sizeof(huge), "WebSocket: invalid frame length");
}

static int stop_at_first(void *arg, const uint8_t *p, size_t n)
{
    (void)p;
    (void)n;
    (*(int *)arg)++;
    return -7;
}

static void test_decode_stop(void **state)
{
    static const uint8_t two[] = {0x82, 1, 'a', 0x82, 1, 'b'};
    struct io_ws w;
    int calls = 0;
    char why[200];

    (void)state;
    start(&w);
    assert_int_equal(io_ws_decode(&w, two, sizeof(two), stop_at_first, &calls, why, sizeof(why)),
                     -7);
    assert_int_equal(calls, 1);
}

static void test_frames(void **state)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d}; /* RFC 6455 §5.7 */
    uint8_t hdr[IO_WS_FRAME_HDR], f[IO_WS_FRAME_HDR + IO_WS_CTL_MAX];
    uint8_t hello[] = "Hello";

    (void)state;
    assert_int_equal(io_ws_frame_header(hdr, IO_WS_OP_BINARY, 5, mask), 6);
    assert_memory_equal(hdr, "\x82\x85\x37\xfa\x21\x3d", 6);
    assert_int_equal(io_ws_frame_header(hdr, IO_WS_OP_BINARY, 126, mask), 8);
    assert_memory_equal(hdr, "\x82\xfe\x00\x7e", 4);
    assert_int_equal(io_ws_frame_header(hdr, IO_WS_OP_BINARY, 65536, mask), 14);
    assert_memory_equal(hdr, "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    io_ws_mask(hello, 5, mask);
    assert_memory_equal(hello, "\x7f\x9f\x4d\x51\x58", 5); /* RFC 6455's masked "Hello" */
    io_ws_mask(hello, 5, mask);
    assert_memory_equal(hello, "Hello", 5);
    assert_int_equal(io_ws_control(f, IO_WS_OP_CLOSE, (const uint8_t *)"\x03\xe8", 2, mask), 8);
    assert_memory_equal(f, "\x88\x82\x37\xfa\x21\x3d\x34\x12", 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request),          cmocka_unit_test(test_response_ok),
        cmocka_unit_test(test_response_refused), cmocka_unit_test(test_decode_data),
        cmocka_unit_test(test_decode_close),     cmocka_unit_test(test_decode_bad),
        cmocka_unit_test(test_decode_stop),      cmocka_unit_test(test_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
