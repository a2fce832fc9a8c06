/*
 * io.h: the seam between the core and the transport (STYLE §6). The core reaches the network
 * only through struct relay_io (down); the transport calls the core only through the
 * relay_core_* functions below (up). This is the only core header io/ needs (with the
 * configuration types of core/config.h for the endpoint).
 */
#ifndef RELAY_CORE_IO_H
#define RELAY_CORE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

struct relay_conn; /* one MQTT client connection to a broker (relay.c) */

/* Where to connect: the URL and its TLS settings, and the protocol version for the WebSocket
 * subprotocol ("mqtt", or "mqttv3.1" for 3.1). */
struct relay_endpoint {
    const struct relay_url *url;
    const struct relay_tls_config *tls; /* used for mqtts/wss */
    uint8_t version;
    const char *who; /* "broker#conn" for log lines */
};

/* What the core needs from the transport. io/ implements it over libwebsockets;
 * test/unit/fake_io.c implements it in memory. All calls are made from the event loop thread.
 *
 * connect: start connecting c to ep. 0 = started: exactly one of relay_core_on_open() or
 *   relay_core_on_close() follows later (never from inside this call). <0 = failed at once,
 *   no callback will follow (libuv's rule).
 * want_write: call relay_core_on_writeable() for c when the socket can take bytes.
 * pause_rx: stop (true) or resume (false) reading c's socket.
 * close: close c's link; relay_core_on_close() follows (asynchronously).
 * wake_at: make sure relay_core_tick() is called at or soon after at_ms (monotonic ms). */
struct relay_io {
    void *ctx;
    int (*connect)(void *ctx, struct relay_conn *c, const struct relay_endpoint *ep);
    void (*want_write)(void *ctx, struct relay_conn *c);
    void (*pause_rx)(void *ctx, struct relay_conn *c, bool pause);
    void (*close)(void *ctx, struct relay_conn *c);
    void (*wake_at)(void *ctx, uint64_t at_ms);
};

/* What the transport calls in the core (implemented in core/).
 *
 * on_open: the link of c is connected (TCP, TLS and WebSocket handshakes done).
 * on_rx: bytes arrived; <0 means close the link (the core already logged why and queued a
 *   DISCONNECT when it could: call on_writeable once more before closing if you can).
 * on_writeable: fill out[0..cap) with the next bytes to send (*len, may be 0). Returns 0, or <0
 *   to close. The transport writes exactly those bytes, then asks again on the next writeable
 *   event if relay_core_wants_write() says so.
 * on_close: the link is gone (closed by either side, or the connect failed); why is a short
 *   human text ("connection refused", "TLS: certificate verify failed: unknown CA", ...). */
void relay_core_on_open(struct relay_conn *c, uint64_t now_ms);
int relay_core_on_rx(struct relay_conn *c, const uint8_t *in, size_t n, uint64_t now_ms);
int relay_core_on_writeable(struct relay_conn *c, uint8_t *out, size_t cap, size_t *len,
                            uint64_t now_ms);
bool relay_core_wants_write(const struct relay_conn *c);
/* Packets received on c so far (a counter: the transport takes differences). */
uint64_t relay_core_rx_packets(const struct relay_conn *c);
/* The transport waited us microseconds to batch reads (counted in /metrics). */
void relay_core_batch_waited(void *core, uint32_t us);
void relay_core_on_close(struct relay_conn *c, const char *why, uint64_t now_ms);
void relay_core_tick(void *core, uint64_t now_ms);

/* The transport keeps one pointer per connection for itself. */
void *relay_conn_link(const struct relay_conn *c);
void relay_conn_set_link(struct relay_conn *c, void *link);
const char *relay_conn_who(const struct relay_conn *c);

/* The HTTP listener (relay.metrics), served by the transport on the same event loop: the
 * status page itself (GET /) is the transport's; every other request is answered here:
 *   GET  /metrics        Prometheus text
 *   GET  /healthz        "ok" (200) / "unavailable" (503)
 *   GET  /api/v1/status  the status as JSON (core/status.c; the man page documents it)
 *   POST /-/reload       what SIGHUP does (relay_hooks.reload); allowed when relay.admin_token
 *                        is set and sent as "Authorization: Bearer TOKEN" (401 otherwise), or,
 *                        with no token set, when the listener is on a loopback address (403
 *                        otherwise)
 * anything else: 404, or 405 for a known path with another method. */
struct relay_http_request {
    const char *method;        /* "GET", "POST", ... */
    const char *path;          /* without the query */
    const char *authorization; /* the Authorization header's value, NULL when absent */
    const char *peer;          /* the client's address, for log lines ("" when unknown) */
    bool loopback;             /* the listener is bound to a loopback address */
};
struct relay_http_response {
    int status;               /* 200, 401, 403, 404, 405, 409, 500, 503 */
    char *body;               /* malloc'ed (the transport frees it); NULL with len 0 */
    size_t len;               /* when out of memory */
    const char *content_type; /* a static string */
    const char *allow;        /* 405: the methods allowed (a static string), else NULL */
    bool challenge;           /* 401: send "WWW-Authenticate: Bearer" */
};
/* Fills *resp (always: at worst a 500 without a body). */
void relay_core_http(void *core, const struct relay_http_request *req, uint64_t now_ms,
                     struct relay_http_response *resp);

#endif
