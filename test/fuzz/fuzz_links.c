/*
 * fuzz_links: the byte machines a link runs before the core sees a byte (issue 13): the proxy
 * handshakes (io/proxy.c) and the WebSocket client (io/ws.c), fed what a hostile proxy or
 * server could send. The first byte picks the machine and whether credentials are given; the
 * rest is the peer's bytes, cut into chunks by the next byte's value. Nothing may read or write
 * out of bounds, and *used may never exceed what was fed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/proxy.h"
#include "io/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink(void *arg, const uint8_t *p, size_t n)
{
    uint8_t *x = arg;

    for (size_t i = 0; i < n; i++)
        *x ^= p[i]; /* touch every byte handed up */
    return 0;
}

static void fuzz_proxy(uint8_t mode, const uint8_t *d, size_t n, size_t chunk)
{
    static uint8_t out[IO_PROXY_OUT_MAX];
    struct io_proxy p;
    size_t o;

    if (io_proxy_start(&p, (mode & 1) ? IO_PROXY_SOCKS5 : IO_PROXY_HTTP,
                       (mode & 4) ? "2001:db8::1" : "broker.test", 8883, (mode & 2) ? "user" : NULL,
                       "pw", 2, out, sizeof(out), &o) < 0)
        abort();
    while (n) {
        size_t take = chunk < n ? chunk : n, used = 0;
        int rc = io_proxy_feed(&p, d, take, &used, out, sizeof(out), &o);

        if (used > take || o > sizeof(out))
            abort();
        if (rc != IO_PROXY_MORE)
            return;
        d += take;
        n -= take;
    }
}

static void fuzz_ws(const uint8_t *d, size_t n, size_t chunk, bool frames_only)
{
    static const uint8_t nonce[16] = "the sample nonce";
    static char req[1024];
    struct io_ws *w = malloc(sizeof(*w));
    char why[200];
    uint8_t x = 0;

    if (!w || !io_ws_request(w, "h:1", "/mqtt", "mqtt", nonce, req, sizeof(req)))
        abort();
    while (n && !frames_only) {
        size_t take = chunk < n ? chunk : n, used = 0;
        int rc = io_ws_response(w, d, take, &used, why, sizeof(why));

        if (used > take)
            abort();
        if (rc == IO_WS_FAIL) {
            free(w);
            return;
        }
        d += used;
        n -= used;
        if (rc == IO_WS_OK)
            break;
    }
    while (n) {
        size_t take = chunk < n ? chunk : n;

        if (io_ws_decode(w, d, take, sink, &x, why, sizeof(why)) != IO_WS_OK)
            break;
        d += take;
        n -= take;
    }
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t mode = data[0];
    size_t chunk = (size_t)data[1] + 1;

    data += 2;
    size -= 2;
    if (mode < 0x80)
        fuzz_proxy(mode, data, size, chunk);
    else
        fuzz_ws(data, size, chunk, mode & 1);
    return 0;
}
