/*
 * stack.c: one link's bytes through its layers, from the socket up:
 *
 *     TCP (lws raw link) -> proxy handshake -> TLS -> WebSocket -> the core
 *
 * each present or not (mqtt:// is TCP alone; wss:// through a SOCKS5 proxy is all of them).
 * A connecting link runs the handshakes in that order (link->phase), each bounded by
 * TIMEOUT_SECS; once the last one is done the link opens for the core. Received bytes go up
 * through the layers; in a WRITEABLE callback, exactly one lws_write() takes what a handshake
 * or a layer queued (l->wire below TLS, the TLS records), else the core's next bytes, framed
 * and encrypted on the way down. Nothing is buffered without bound: the core writes at most
 * TX_CAP bytes per callback, the handshakes and WebSocket control frames at most WIRE_MAX.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "io/internal.h"
#include "io/proxy.h"
#include "io/ws.h"

static const char *proxy_name(const struct link *l)
{
    return l->proxy.kind == IO_PROXY_HTTP ? "HTTP" : "SOCKS5";
}

/* ---- what the layers queue --------------------------------------------------------------- */

/* Bytes for the socket as they are (below TLS). */
static int wire_put(struct link *l, const void *p, size_t n)
{
    uint8_t *w;

    if (l->wire_len + n > WIRE_MAX) {
        io_why_set(l, "too many bytes queued for the socket");
        return -1;
    }
    w = realloc(l->wire, l->wire_len + n);
    if (!w) {
        io_why_set(l, "out of memory");
        return -1;
    }
    memcpy(w + l->wire_len, p, n);
    l->wire = w;
    l->wire_len += n;
    return 0;
}

/* Bytes above TLS (WebSocket upgrade and control frames): encrypted when the link has TLS. */
static int sec_put(struct link *l, const void *p, size_t n)
{
    return l->tls ? io_tls_write(l, p, n) : wire_put(l, p, n);
}

static void mask_key(uint8_t mask[4])
{
    if (RAND_bytes(mask, 4) != 1)
        memset(mask, 0x5a, 4); /* RAND_bytes does not fail once seeded */
}

/* ---- the handshakes, in order ------------------------------------------------------------ */

static void phase(struct link *l, struct lws *wsi, enum link_phase p)
{
    l->phase = p;
    l->started_ms = relay_now_ms();
    /* lws has no timeout on an established raw link: each handshake is bounded here */
    if (p != PH_OPEN)
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE + 1, TIMEOUT_SECS);
    else
        lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
}

static int open_link(struct link *l, struct lws *wsi)
{
    phase(l, wsi, PH_OPEN);
    io_link_opened(l, wsi); /* on_open from here when outside lws' connect path */
    return 0;
}

static int start_ws(struct link *l, struct lws *wsi)
{
    struct io_ws *w = calloc(1, sizeof(*w));
    char req[1024], host[300];
    uint8_t nonce[16];
    size_t n;

    if (!w) {
        io_why_set(l, "out of memory");
        return -1;
    }
    free(l->wsc);
    l->wsc = w;
    phase(l, wsi, PH_WS);
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        io_why_set(l, "WebSocket: no random bytes for the key");
        return -1;
    }
    /* the Host header names the port when it is not the scheme's */
    if (l->port != (l->tls ? 443 : 80))
        snprintf(host, sizeof(host), "%s%s%s:%u", strchr(l->server_name, ':') ? "[" : "",
                 l->server_name, strchr(l->server_name, ':') ? "]" : "", (unsigned)l->port);
    else
        snprintf(host, sizeof(host), "%s%s%s", strchr(l->server_name, ':') ? "[" : "",
                 l->server_name, strchr(l->server_name, ':') ? "]" : "");
    n = io_ws_request(w, host, l->path, l->subproto, nonce, req, sizeof(req));
    if (!n) {
        io_why_set(l, "WebSocket: the upgrade request is too long");
        return -1;
    }
    if (sec_put(l, req, n) < 0)
        return -1;
    io_link_want_writeable(l, wsi);
    return 0;
}

static int start_tls(struct link *l, struct lws *wsi)
{
    phase(l, wsi, PH_TLS);
    if (!io_tls_start(l) || io_tls_input(l, NULL, 0) < 0) /* the ClientHello into the wbio */
        return -1;
    io_link_want_writeable(l, wsi);
    return 0;
}

static int after_tls(struct link *l, struct lws *wsi)
{
    return l->ws ? start_ws(l, wsi) : open_link(l, wsi);
}

static int after_proxy(struct link *l, struct lws *wsi)
{
    return l->tls ? start_tls(l, wsi) : l->ws ? start_ws(l, wsi) : open_link(l, wsi);
}

int io_stack_connected(struct link *l, struct lws *wsi)
{
    struct io_proxy *px;
    uint8_t out[IO_PROXY_OUT_MAX];
    size_t n = 0;

    if (!l->proxy.kind)
        return after_proxy(l, wsi);
    px = calloc(1, sizeof(*px));
    if (!px) {
        io_why_set(l, "out of memory");
        return -1;
    }
    l->px = px;
    phase(l, wsi, PH_PROXY);
    if (io_proxy_start(px, (enum io_proxy_kind)l->proxy.kind, l->host, l->port, l->proxy.user,
                       l->proxy.pass, l->proxy.pass_len, out, sizeof(out), &n) < 0) {
        io_why_set(l, "%s proxy %s:%u: %s", proxy_name(l), l->proxy.host, (unsigned)l->proxy.port,
                   px->why);
        return -1;
    }
    if (wire_put(l, out, n) < 0)
        return -1;
    explicit_bzero(out, sizeof(out));
    io_link_want_writeable(l, wsi);
    return 0;
}

/* ---- bytes up ---------------------------------------------------------------------------- */

struct up {
    struct link *l;
    struct lws *wsi;
};

/* Application bytes out of the WebSocket frames: to the core while it reads. */
static int ws_data(void *arg, const uint8_t *p, size_t n)
{
    struct up *u = arg;

    if (!io_link_rx_allowed(u->l, u->wsi))
        return 0; /* closing: the rest is discarded */
    return io_link_deliver_rx(u->l, u->wsi, p, n);
}

/* The server closed the WebSocket: answer its Close, then close (RFC 6455 §5.5.1). */
static int ws_closed(struct link *l, struct lws *wsi)
{
    struct io_ws *w = l->wsc;
    uint8_t f[IO_WS_FRAME_HDR + IO_WS_CTL_MAX], code[2], mask[4];
    uint16_t c = w->close_code == 1005 ? 1000 : w->close_code;

    code[0] = (uint8_t)(c >> 8);
    code[1] = (uint8_t)c;
    mask_key(mask);
    if (sec_put(l, f, io_ws_control(f, IO_WS_OP_CLOSE, code, 2, mask)) < 0)
        return -1;
    if (l->tls)
        io_tls_shutdown(l);
    l->closing = true;
    l->drain_close = true;
    lws_rx_flow_control(wsi, 0);
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE, FLUSH_CLOSE_SECS);
    io_link_want_writeable(l, wsi);
    return 0;
}

/* Plaintext (above TLS): the WebSocket upgrade's answer, then frames; or the core's bytes. */
static int up_rx(struct link *l, struct lws *wsi, const uint8_t *p, size_t n)
{
    struct io_ws *w = l->wsc;
    struct up u = {l, wsi};
    char why[WHY_LEN];
    size_t used;
    int r;

    if (!l->ws) {
        if (!io_link_rx_allowed(l, wsi))
            return 0;
        return io_link_deliver_rx(l, wsi, p, n);
    }
    if (l->phase == PH_WS) {
        r = io_ws_response(w, p, n, &used, why, sizeof(why));
        if (r == IO_WS_FAIL) {
            io_why_set(l, "%s", why);
            return -1;
        }
        if (r == IO_WS_MORE)
            return 0;
        open_link(l, wsi);
        p += used;
        n -= used;
    }
    if (!n || l->drain_close)
        return 0;
    r = io_ws_decode(w, p, n, ws_data, &u, why, sizeof(why));
    if (r == IO_WS_FAIL) {
        io_why_set(l, "%s", why);
        return -1;
    }
    if (r < 0)
        return -1; /* the core closes */
    if (w->pong_due && !l->drain_close) {
        uint8_t f[IO_WS_FRAME_HDR + IO_WS_CTL_MAX], mask[4];

        w->pong_due = false;
        mask_key(mask);
        if (sec_put(l, f, io_ws_control(f, IO_WS_OP_PONG, w->pong, w->pong_len, mask)) < 0)
            return -1;
    }
    if (r == IO_WS_CLOSED) {
        io_why_set(l, "%s", why);
        return ws_closed(l, wsi);
    }
    return 0;
}

bool io_stack_has_rx(const struct link *l)
{
    return io_tls_has_rx(l);
}

/* TLS: decrypts what the rbio holds and hands it up, until it is empty or the core pauses or
 * closes the link (the WebSocket upgrade's answer is read whatever the core wants). */
int io_stack_drain(struct link *l, struct lws *wsi)
{
    uint8_t buf[TX_CAP];

    while (io_link_of(wsi) == l && !l->drain_close &&
           (l->phase == PH_WS || (io_link_rx_allowed(l, wsi) && !l->paused))) {
        int n = io_tls_read(l, buf, sizeof(buf));

        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (up_rx(l, wsi, buf, (size_t)n) < 0)
            return -1;
    }
    return 0;
}

static int proxy_rx(struct link *l, struct lws *wsi, const uint8_t **p, size_t *len)
{
    struct io_proxy *px = l->px;
    uint8_t out[IO_PROXY_OUT_MAX];
    size_t used, n;
    int r = io_proxy_feed(px, *p, *len, &used, out, sizeof(out), &n);

    if (n && wire_put(l, out, n) < 0)
        return -1;
    explicit_bzero(out, sizeof(out));
    if (r == IO_PROXY_FAIL) {
        io_why_set(l, "%s proxy %s:%u %s", proxy_name(l), l->proxy.host, (unsigned)l->proxy.port,
                   px->why);
        return -1;
    }
    io_link_want_writeable(l, wsi);
    if (r == IO_PROXY_MORE)
        return 1;
    io_proxy_clear(px);
    free(px);
    l->px = NULL;
    *p += used;
    *len -= used;
    return after_proxy(l, wsi);
}

int io_stack_rx(struct link *l, struct lws *wsi, const void *in, size_t len)
{
    const uint8_t *p = in;
    int r;

    if (l->phase == PH_PROXY) {
        r = proxy_rx(l, wsi, &p, &len);
        if (r)
            return r < 0 ? -1 : 0;
        if (!len)
            return 0;
    }
    if (l->phase < PH_PROXY)
        return 0; /* nothing is read before TCP is up */
    if (!l->tls) {
        r = up_rx(l, wsi, p, len);
        if (r >= 0 && io_link_of(wsi) == l)
            io_link_want_writeable(l, wsi);
        return r < 0 ? -1 : 0;
    }
    r = io_tls_input(l, p, len);
    if (r < 0)
        return -1;
    if (r == 1 && after_tls(l, wsi) < 0)
        return -1;
    if (l->hs_done && io_stack_drain(l, wsi) < 0)
        return -1;
    if (io_link_of(wsi) == l)
        io_link_want_writeable(l, wsi);
    return 0;
}

/* ---- bytes down -------------------------------------------------------------------------- */

bool io_stack_has_tx(const struct link *l)
{
    return l->wire_len || io_tls_pending(l);
}

void io_link_want_writeable(struct link *l, struct lws *wsi)
{
    if (io_link_of(wsi) != l || l->state == LINK_GONE ||
        (l->closing && !l->flush_close && !l->drain_close))
        return;
    if (!io_stack_has_tx(l) && !l->flush_close && !l->drain_close &&
        !(l->phase == PH_OPEN && l->state == LINK_OPEN && !l->open_pending &&
          relay_core_wants_write(l->conn)))
        return;
    /* an open link is written at the end of the service round (io_link_flush), one send for
     * all the round produced; handshakes, a last write before a close, and a socket lws still
     * holds unsent bytes for (it writes them first on POLLOUT) go through WRITEABLE */
    if (l->phase != PH_OPEN || l->closing || l->flush_close || l->drain_close ||
        lws_partial_buffered(wsi)) {
        lws_callback_on_writable(wsi);
        return;
    }
    io_link_queue_flush(l);
}

/* One lws_write of what the layers queued: l->wire first (it was queued before TLS began),
 * then TLS records. 1: written, 0: nothing queued, -1: failed. */
static int write_queued(struct link *l, struct lws *wsi)
{
    uint8_t *out = l->tx + LWS_PRE;
    size_t n;

    if (l->wire_len) {
        n = l->wire_len < TX_ROOM ? l->wire_len : TX_ROOM;
        memcpy(out, l->wire, n);
        explicit_bzero(l->wire, n); /* a proxy request holds credentials */
        memmove(l->wire, l->wire + n, l->wire_len - n);
        l->wire_len -= n;
    } else if (io_tls_pending(l)) {
        n = io_tls_take(l, out, TX_ROOM);
    } else {
        return 0;
    }
    if (n && lws_write(wsi, out, n, LWS_WRITE_RAW) < (int)n)
        return -1;
    if (l->phase <= PH_PROXY)
        explicit_bzero(out, n);
    return 1;
}

/* The core's next bytes, framed for the WebSocket when it is one: *p, *n. <0: the core's
 * last write (close after it). */
static int produce(struct link *l, uint8_t **p, size_t *n)
{
    uint8_t *base = l->tls ? l->ptx : l->tx + LWS_PRE;
    uint8_t *payload = l->ws || l->tls ? base + IO_WS_FRAME_HDR : base;
    size_t len = 0;
    int r = relay_core_on_writeable(l->conn, payload, TX_CAP, &len, relay_now_ms());

    if (len > TX_CAP)
        return -2;
    *p = payload;
    *n = len;
    if (l->ws && len) {
        uint8_t hdr[IO_WS_FRAME_HDR], mask[4];
        size_t hl;

        mask_key(mask);
        hl = io_ws_frame_header(hdr, IO_WS_OP_BINARY, len, mask);
        io_ws_mask(payload, len, mask);
        *p = payload - hl;
        memcpy(*p, hdr, hl);
        *n = hl + len;
    }
    return r < 0 ? -1 : 0;
}

int io_stack_writeable(struct link *l, struct lws *wsi)
{
    uint8_t *p;
    size_t n;
    int r;
    bool last;

    if (l->closing && !l->flush_close && !l->drain_close)
        return 0; /* a kill is on its way */
    r = write_queued(l, wsi);
    if (r < 0)
        return -1;
    if (r > 0) {
        if (l->drain_close && !io_stack_has_tx(l))
            return -1; /* the WebSocket Close went out */
        io_link_want_writeable(l, wsi);
        return 0;
    }
    if (l->drain_close)
        return -1;
    if (l->phase != PH_OPEN || l->state != LINK_OPEN || l->open_pending)
        return 0;
    r = produce(l, &p, &n);
    if (r == -2)
        return -1;
    last = r < 0 || l->flush_close;
    if (last && l->ws) {                         /* a Close frame after the last bytes */
        uint8_t code[2] = {0x03, 0xe8}, mask[4]; /* 1000: normal closure */
        uint8_t *f = p + n;

        mask_key(mask);
        n += io_ws_control(f, IO_WS_OP_CLOSE, code, 2, mask);
    }
    if (l->tls) {
        if (io_tls_write(l, p, n) < 0)
            return -1;
        if (last)
            io_tls_shutdown(l); /* close_notify goes out with the last bytes */
        p = l->tx + LWS_PRE;
        n = io_tls_take(l, p, TX_ROOM);
    }
    if (n && lws_write(wsi, p, n, LWS_WRITE_RAW) < (int)n)
        return -1;
    if (last) {
        l->closing = true;
        return -1;
    }
    io_link_want_writeable(l, wsi);
    return 0;
}

void io_stack_free(struct link *l)
{
    if (l->px) {
        io_proxy_clear(l->px);
        free(l->px);
        l->px = NULL;
    }
    free(l->wsc);
    l->wsc = NULL;
    if (l->wire)
        explicit_bzero(l->wire, l->wire_len);
    free(l->wire);
    l->wire = NULL;
    l->wire_len = 0;
}
