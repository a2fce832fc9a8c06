/*
 * link.c: one link to a broker, as lws sees it: a raw TCP client. It looks the host (or the
 * proxy's) up off the event loop (resolve.c), connects address by address, sets the socket's
 * options (TCP keepalive, user timeout; the source address is bound by lws), hands the bytes to
 * the layers of stack.c (proxy, TLS, WebSocket, the core), applies rx flow control, and reports
 * open and close to the core from the link's timer, never from inside lws' connect or close
 * paths.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "io/internal.h"
#include "io/proxy.h"
#include "io/ws.h"

static int cb_link(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);

const struct lws_protocols io_link_protocols[] = {
    {"relay-raw", cb_link, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void link_attempt(struct link *l);
static void flush_fire(lws_sorted_usec_list_t *sul);

/* ---------------------------------------------------------------------------------------- */
/* Link bookkeeping                                                                          */
/* ---------------------------------------------------------------------------------------- */

/* Takes l off the transport's flush queue (it is being freed). */
static void flush_unqueue(struct link *l)
{
    struct relay_transport *t = l->t;
    struct link **pp = &t->flush_head, *prev = NULL;

    if (!l->flush_queued)
        return;
    while (*pp && *pp != l) {
        prev = *pp;
        pp = &(*pp)->flush_next;
    }
    if (*pp)
        *pp = l->flush_next;
    if (t->flush_tail == l)
        t->flush_tail = prev;
    l->flush_next = NULL;
    l->flush_queued = false;
}

struct link *io_link_of(struct lws *wsi)
{
    return wsi ? (struct link *)lws_get_opaque_user_data(wsi) : NULL;
}

void io_link_free(struct link *l)
{
    struct relay_transport *t = l->t;

    lws_sul_cancel(&l->sul);
    io_resolve_cancel(l);
    flush_unqueue(l);
    if (l->prev)
        l->prev->next = l->next;
    else
        t->links = l->next;
    if (l->next)
        l->next->prev = l->prev;
    if (l->ssl) {
        /* A link lost without close_notify would make OpenSSL mark its session unresumable,
         * and a flaky uplink is where resumption pays (TLS 1.1 on, RFC 5246 §7.2.1, allows
         * resuming after an abrupt end). */
        if (l->hs_done)
            SSL_set_shutdown(l->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(l->ssl);
    }
    io_stack_free(l);
    free(l->proxy.user);
    if (l->proxy.pass) {
        explicit_bzero(l->proxy.pass, l->proxy.pass_len);
        free(l->proxy.pass);
    }
    free(l->ptx);
    free(l->tx);
    free(l);
}

void io_why_set(struct link *l, const char *fmt, ...)
{
    va_list ap;

    if (l->why[0])
        return; /* the first specific reason wins */
    va_start(ap, fmt);
    vsnprintf(l->why, sizeof(l->why), fmt, ap);
    va_end(ap);
}

/* The reason told to the core: a failure before the tunnel was open names the proxy. */
static void report_why(const struct link *l, char *out, size_t cap)
{
    const char *w = l->why[0] ? l->why : "connection closed";
    const char *kind = l->proxy.kind == IO_PROXY_HTTP ? "HTTP" : "SOCKS5";

    if (l->proxy.kind && (l->phase == PH_TCP || l->phase == PH_PROXY) &&
        strncmp(w, "closed by relay", 15) && strncmp(w, kind, strlen(kind)))
        snprintf(out, cap, "%s proxy %s:%u: %s", kind, l->proxy.host, (unsigned)l->proxy.port, w);
    else
        snprintf(out, cap, "%s", w);
}

/* Delivers what lws told us, from a timer: never inside io->connect() or lws' close path. */
static void link_deliver(lws_sorted_usec_list_t *sul)
{
    struct link *l = lws_container_of(sul, struct link, sul);
    struct relay_conn *c = l->conn;

    if (l->state == LINK_GONE) {
        char why[WHY_LEN + 320];

        report_why(l, why, sizeof(why));
        relay_conn_set_link(c, NULL);
        io_link_free(l);
        relay_core_on_close(c, why, relay_now_ms());
        return;
    }
    if (l->resolve_done || l->retry_pending) {
        l->resolve_done = l->retry_pending = false;
        link_attempt(l);
        return;
    }
    if (l->open_pending && l->wsi) {
        struct lws *wsi = l->wsi;

        l->open_pending = false;
        relay_core_on_open(c, relay_now_ms());
        /* the core may have closed or paused the link from on_open */
        if (io_link_of(wsi) == l && l->state == LINK_OPEN && relay_core_wants_write(c))
            lws_callback_on_writable(wsi);
    }
    if (l->wsi && l->state == LINK_OPEN && !l->paused && io_stack_has_rx(l)) {
        struct lws *wsi = l->wsi;

        if (io_stack_drain(l, wsi) < 0)
            io_link_kill(l); /* not inside a callback of this wsi: close it from the loop */
        else if (io_link_of(wsi) == l)
            io_link_want_writeable(l, wsi);
    }
}

void io_link_schedule(struct link *l)
{
    lws_sul_schedule(l->t->ctx, 0, &l->sul, link_deliver, 0);
}

/* The wsi is gone (or never was): detach it and report once. */
void io_link_gone(struct link *l, const char *why)
{
    if (l->state == LINK_GONE)
        return;
    if (l->wsi)
        lws_set_opaque_user_data(l->wsi, NULL);
    l->wsi = NULL;
    l->state = LINK_GONE;
    l->open_pending = false;
    l->retry_pending = false;
    l->resolve_done = false;
    io_resolve_cancel(l);
    if (l->closing && !l->drain_close)
        snprintf(l->why, sizeof(l->why), "closed by relay");
    else if (why)
        io_why_set(l, "%s", why);
    if (l->t->destroying) {
        io_link_free(l); /* the core is not told during relay_transport_free() */
        return;
    }
    if (!l->in_connect)
        io_link_schedule(l); /* io->connect() schedules it itself on return */
}

/* Every handshake is done: open for the core. */
void io_link_opened(struct link *l, struct lws *wsi)
{
    if (l->state != LINK_CONNECTING)
        return;
    l->state = LINK_OPEN;
    if (l->paused)
        lws_rx_flow_control(wsi, 0);
    l->open_pending = true;
    if (!l->in_connect)
        link_deliver(&l->sul); /* a normal lws callback: deliver now */
}

/* ---------------------------------------------------------------------------------------- */
/* Connecting                                                                                */
/* ---------------------------------------------------------------------------------------- */

static const char *subprotocol(uint8_t version)
{
    return version == MQC_V31 ? "mqttv3.1" : "mqtt";
}

static int family_of(const char *a)
{
    return strchr(a, ':') ? AF_INET6 : AF_INET;
}

/* The lookup of the host (or the proxy's) ended, in the loop (resolve.c): the attempts start
 * from the link's timer. */
void io_link_resolved(struct link *l, int n_addr, const char (*addr)[INET6_ADDRSTRLEN],
                      const char *why)
{
    uint64_t now = relay_now_ms();
    const char *name = l->proxy.kind ? l->proxy.host : l->host;
    unsigned k = 0;

    if (l->state == LINK_GONE)
        return;
    relay_core_dns_result(l->conn, n_addr > 0,
                          (uint32_t)(now > l->dns_started_ms ? now - l->dns_started_ms : 0), now);
    for (int i = 0; i < n_addr && k < MAX_ADDRS; i++) {
        /* a source address binds one family: the other one cannot be reached from it */
        if (l->bind[0] && family_of(l->bind) != family_of(addr[i]))
            continue;
        memcpy(l->addr[k++], addr[i], INET6_ADDRSTRLEN);
    }
    l->n_addr = k;
    l->next_addr = 0;
    if (!n_addr) {
        io_why_set(l, "cannot resolve %s\"%s\": %s", l->proxy.kind ? "proxy host " : "", name,
                   why ? why : "no address");
        io_link_gone(l, NULL);
        return;
    }
    if (!k) {
        io_why_set(l, "\"%s\" has no IPv%c address (bind_address %s is IPv%c)", name,
                   family_of(l->bind) == AF_INET ? '4' : '6', l->bind,
                   family_of(l->bind) == AF_INET ? '4' : '6');
        io_link_gone(l, NULL);
        return;
    }
    l->resolve_done = true;
    io_link_schedule(l);
}

/* bind_address can be bound now (lws would only log its errno, once per attempt, as its own
 * ERROR line). false with why. */
static bool bind_ok(struct link *l)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd, e = 0;

    memset(&ss, 0, sizeof(ss));
    if (family_of(l->bind) == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, l->bind, &a->sin6_addr);
        sl = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;

        a->sin_family = AF_INET;
        inet_pton(AF_INET, l->bind, &a->sin_addr);
        sl = sizeof(*a);
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0)
        e = errno;
    if (fd >= 0)
        close(fd);
    if (!e)
        return true;
    io_why_set(l, "bind_address %s: %s%s", l->bind, strerror(e),
               e == EADDRNOTAVAIL ? " (not an address of this machine)" : "");
    return false;
}

/* Starts connecting to the next address. Returns with the attempt under way, the link GONE
 * (reported from the sul), or a retry scheduled. Never reports from inside this call. */
static void link_attempt(struct link *l)
{
    struct lws_client_connect_info ci;
    struct lws *wsi;
    int saved_errno;

    if (l->bind[0] && l->next_addr == 0 && !bind_ok(l)) {
        io_link_gone(l, NULL);
        return;
    }
    for (;;) {
        if (l->closing || l->t->destroying) {
            io_link_gone(l, "closed by relay");
            return;
        }
        if (l->next_addr >= l->n_addr) {
            io_link_gone(l, "connection failed");
            return;
        }
        memset(&ci, 0, sizeof(ci));
        ci.context = l->t->ctx;
        ci.vhost = l->t->vh_client;
        ci.address = l->addr[l->next_addr++];
        ci.port = l->tcp_port;
        ci.host = ci.address;
        ci.opaque_user_data = l;
        ci.ietf_version_or_minus_one = -1;
        ci.method = "RAW";
        ci.local_protocol_name = "relay-raw";
        if (l->bind[0])
            ci.iface = l->bind; /* lws binds the socket to it before connect() */
        l->why[0] = '\0';       /* the reason of the last attempt is the one reported */
        l->tcp_up = false;
        l->rx_gated = false;
        l->phase = PH_TCP;
        l->started_ms = relay_now_ms();
        l->in_connect = true;
        errno = 0;
        wsi = lws_client_connect_via_info(&ci);
        saved_errno = errno;
        l->in_connect = false;

        if (l->state == LINK_GONE) { /* failed inside the call, with a reason */
            io_link_schedule(l);
            return;
        }
        if (l->retry_pending) { /* this address failed inside the call: the next one */
            l->retry_pending = false;
            continue;
        }
        if (wsi) {
            l->wsi = wsi;
            if (l->open_pending) {
                io_link_schedule(l); /* connected inside the call: tell the core from the loop */
            } else if (!l->tcp_up) {
                /* Hold POLLIN off until the TCP connect completes (WSI_CREATE turns it back
                 * on). A failed connect then shows as POLLHUP alone, which lws handles by
                 * closing with the socket still open, so CONNECTION_ERROR can read SO_ERROR
                 * ("connection refused"). With POLLIN on, lws reads SO_ERROR itself and
                 * only says "Unable to connect". One address per wsi keeps this harmless:
                 * the next address is tried here, not by lws. */
                l->rx_gated = true;
                lws_rx_flow_control(wsi, 0);
            }
            return;
        }
        /* NULL: 4.1.6 reports nothing inside the call (client_suppress_CONNECTION_ERROR) */
        if (saved_errno == ECONNREFUSED || saved_errno == ENETUNREACH ||
            saved_errno == EHOSTUNREACH || saved_errno == EADDRNOTAVAIL ||
            saved_errno == EAFNOSUPPORT || saved_errno == ETIMEDOUT)
            io_why_errno(l, saved_errno);
        else if (l->bind[0])
            io_why_set(l, "connection failed (cannot bind to bind_address %s?)", l->bind);
        else
            io_why_set(l, "connection failed");
    }
}

/* A connect attempt failed before TCP was up: the next address, or the end. */
static void link_attempt_failed(struct link *l, struct lws *wsi)
{
    if (!l->tcp_up && !l->closing && l->next_addr < l->n_addr && !l->t->destroying) {
        lws_set_opaque_user_data(wsi, NULL);
        l->wsi = NULL;
        l->retry_pending = true;
        if (!l->in_connect)
            io_link_schedule(l);
        return;
    }
    io_link_gone(l, NULL);
}

/* The connection is up: keepalive and user timeout, so that a peer that vanishes (a NAT that
 * forgot us, a pulled cable) is noticed without waiting for the kernel's ~15 minutes: probes
 * after keepalive_s of silence, every third of it, 3 unanswered = dead; data unacknowledged
 * for user_timeout_ms = dead. */
static void socket_options(struct link *l, struct lws *wsi)
{
    int fd = lws_get_socket_fd(wsi), on = 1, v;

    if (fd < 0)
        return;
    if (l->keepalive_s) {
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
        v = (int)l->keepalive_s;
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
        v = l->keepalive_s >= 3 ? (int)(l->keepalive_s / 3) : 1;
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
        v = 3;
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v));
    }
    if (l->user_timeout_ms) {
        unsigned u = l->user_timeout_ms;

        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &u, sizeof(u));
    }
}

/* What the link keeps of the endpoint (a reload may free the configuration meanwhile). */
static int link_setup(struct link *l, const struct relay_endpoint *ep)
{
    const struct relay_url *u = ep->url;
    const struct relay_tls_config *tc = ep->tls;

    l->ws = u->scheme == RELAY_WS || u->scheme == RELAY_WSS;
    l->tls = u->scheme == RELAY_MQTTS || u->scheme == RELAY_WSS;
    l->tx = malloc(LWS_PRE + TX_ROOM);
    l->ptx = l->tls ? malloc(TX_CAP + 2 * IO_WS_FRAME_HDR + IO_WS_CTL_MAX) : NULL;
    if (!l->tx || (l->tls && !l->ptx))
        return -ENOMEM;
    l->verify = !(l->tls && tc && !tc->verify);
    l->port = u->port;
    l->tcp_port = u->port;
    l->subproto = subprotocol(ep->version);
    snprintf(l->path, sizeof(l->path), "%s", u->path && u->path[0] ? u->path : "/mqtt");
    snprintf(l->host, sizeof(l->host), "%s", u->host);
    snprintf(l->server_name, sizeof(l->server_name), "%s",
             l->tls && tc && tc->server_name && tc->server_name[0] ? tc->server_name : u->host);
    snprintf(l->bind, sizeof(l->bind), "%s", ep->bind_address ? ep->bind_address : "");
    l->keepalive_s = ep->tcp_keepalive_s;
    l->user_timeout_ms = ep->tcp_user_timeout_ms;
    if (l->tls && tc && tc->n_alpn) { /* ALPN in wire form: length-prefixed names */
        for (size_t i = 0; i < tc->n_alpn; i++) {
            size_t n = strlen(tc->alpn[i]);

            if (n > 255 || l->alpn_len + 1 + n > sizeof(l->alpn))
                break;
            l->alpn[l->alpn_len++] = (uint8_t)n;
            memcpy(l->alpn + l->alpn_len, tc->alpn[i], n);
            l->alpn_len += n;
        }
    } else if (l->tls && l->ws) {
        memcpy(l->alpn, "\x08http/1.1", 9);
        l->alpn_len = 9;
    }
    if (ep->proxy && ep->proxy->kind != RELAY_PROXY_NONE) {
        const struct relay_proxy_config *p = ep->proxy;

        l->proxy.kind = p->kind == RELAY_PROXY_HTTP ? IO_PROXY_HTTP : IO_PROXY_SOCKS5;
        snprintf(l->proxy.host, sizeof(l->proxy.host), "%s", p->host);
        l->proxy.port = p->port;
        l->tcp_port = p->port;
        if (p->username) {
            if (!(l->proxy.user = strdup(p->username)) ||
                !(l->proxy.pass = malloc(p->password_len + 1)))
                return -ENOMEM;
            if (p->password_len)
                memcpy(l->proxy.pass, p->password, p->password_len);
            l->proxy.pass[p->password_len] = '\0';
            l->proxy.pass_len = p->password_len;
        }
    }
    return 0;
}

int io_link_connect(void *ctx, struct relay_conn *c, const struct relay_endpoint *ep)
{
    struct relay_transport *t = ctx;
    const struct relay_url *u = ep->url;
    const char *name;
    unsigned char ip[16];
    struct link *l;
    char err[WHY_LEN];

    if (!u || !u->host || !u->host[0])
        return -EINVAL;
    if (relay_conn_link(c))
        return -EALREADY;
    l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->t = t;
    l->conn = c;
    if (link_setup(l, ep) < 0) {
        l->t = NULL;
        free(l->proxy.user);
        free(l->proxy.pass);
        free(l->tx);
        free(l->ptx);
        free(l);
        return -ENOMEM;
    }
    l->next = t->links;
    if (t->links)
        t->links->prev = l;
    t->links = l;
    relay_conn_set_link(c, l);

    /* Whatever fails from here is reported like a failed connect: asynchronously, with the
     * reason. */
    io_log(t, RELAY_LOG_DEBUG, ep->who, "connecting to %s%s%s", u->text ? u->text : u->host,
           l->proxy.kind ? " through the proxy " : "", l->proxy.kind ? l->proxy.host : "");
    if (l->tls) {
        /* the files as they are now: a rotated certificate is taken at the next reconnect */
        l->tctx = io_tls_ctx_get(t, ep->tls, ep->who, err, sizeof(err));
        if (!l->tctx) {
            l->state = LINK_GONE;
            io_why_set(l, "%s", err);
            io_link_schedule(l);
            return 0;
        }
        if (io_tls_ctx_not_after(l->tctx))
            relay_core_tls_cert(c, io_tls_ctx_not_after(l->tctx), relay_now_ms());
    }
    /* the proxy's host when there is one: the proxy resolves the broker's */
    name = l->proxy.kind ? l->proxy.host : l->host;
    l->phase = PH_RESOLVE;
    if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1) {
        if (l->bind[0] && family_of(l->bind) != family_of(name)) {
            l->state = LINK_GONE;
            io_why_set(l, "bind_address %s and %s are not of the same IP family", l->bind, name);
            io_link_schedule(l);
            return 0;
        }
        memcpy(l->addr[0], name, strnlen(name, INET6_ADDRSTRLEN - 1));
        l->addr[0][INET6_ADDRSTRLEN - 1] = '\0';
        l->n_addr = 1;
        link_attempt(l);
        return 0;
    }
    if (io_resolve(t, l, name) < 0) {
        l->state = LINK_GONE;
        io_why_set(l, "cannot resolve \"%s\": out of memory", name);
        io_link_schedule(l);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The io table                                                                              */
/* ---------------------------------------------------------------------------------------- */

void io_link_want_write(void *ctx, struct relay_conn *c)
{
    struct link *l = relay_conn_link(c);

    (void)ctx;
    if (l && l->wsi && l->state == LINK_OPEN && !l->closing)
        io_link_want_writeable(l, l->wsi);
}

void io_link_pause_rx(void *ctx, struct relay_conn *c, bool pause)
{
    struct link *l = relay_conn_link(c);

    (void)ctx;
    if (!l || l->paused == pause)
        return;
    l->paused = pause;
    /* before the link is open the state is applied when it opens */
    if (!l->wsi || l->state != LINK_OPEN || l->flush_close || l->drain_close)
        return;
    lws_rx_flow_control(l->wsi, pause ? 0 : 1);
    /* TLS may hold records read before the pause: no RX event will come for those */
    if (!pause && io_stack_has_rx(l))
        io_link_schedule(l);
}

/* Closes the wsi from outside its callbacks (lws closes it on its next service). */
void io_link_kill(struct link *l)
{
    if (l->wsi)
        lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_REASON_BASE, LWS_TO_KILL_ASYNC);
}

void io_link_close(void *ctx, struct relay_conn *c)
{
    struct link *l = relay_conn_link(c);

    (void)ctx;
    if (!l || l->closing || l->state == LINK_GONE)
        return;
    l->closing = true;
    if (l->state == LINK_CONNECTING || l->open_pending) {
        /* Not open for the core yet: report now and leave the wsi to itself. lws 4.1.6
         * replaces a kill timeout with its own handshake timeouts, so the wsi may live on for
         * a while; detached, it closes at its next event (every callback without a link
         * returns -1) or timeout. */
        io_link_kill(l);
        io_link_gone(l, "closed by relay");
        return;
    }
    if (relay_core_wants_write(c)) {
        /* one last write (a DISCONNECT) from the next WRITEABLE, then close */
        l->flush_close = true;
        lws_rx_flow_control(l->wsi, 0);
        lws_callback_on_writable(l->wsi);
        lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_REASON_BASE, FLUSH_CLOSE_SECS);
        return;
    }
    io_link_kill(l);
}

/* ---------------------------------------------------------------------------------------- */
/* The data path's ends                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* Hands plaintext to the core. -1: close now; 0: go on. <0 from the core: write its last
 * bytes (a DISCONNECT) if it has some, then close. */
int io_link_deliver_rx(struct link *l, struct lws *wsi, const void *in, size_t len)
{
    uint64_t before = relay_core_rx_packets(l->conn), after;
    int rc = relay_core_on_rx(l->conn, in, len, relay_now_ms());

    after = relay_core_rx_packets(l->conn);
    l->t->round_packets += (uint32_t)(after >= before ? after - before : after);
    if (rc < 0) {
        l->closing = true;
        if (!relay_core_wants_write(l->conn))
            return -1;
        l->flush_close = true;
        lws_rx_flow_control(wsi, 0);
        lws_callback_on_writable(wsi);
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE, FLUSH_CLOSE_SECS);
    }
    return 0;
}

bool io_link_rx_allowed(const struct link *l, struct lws *wsi)
{
    return io_link_of(wsi) == l && l->state == LINK_OPEN && !l->closing;
}

/* Writes of one flush before the rest waits for lws' WRITEABLE: bounds a flush whatever the
 * core says it wants (60 KiB each: a full window of 1 KiB messages is a few) */
#define FLUSH_WRITES 64u

static void flush_fire(lws_sorted_usec_list_t *sul)
{
    struct relay_transport *t = lws_container_of(sul, struct relay_transport, sul_flush);

    t->flush_armed = false;
    io_link_flush(t);
}

void io_link_queue_flush(struct link *l)
{
    struct relay_transport *t = l->t;

    if (l->flush_queued)
        return;
    l->flush_queued = true;
    l->flush_next = NULL;
    if (t->flush_tail)
        t->flush_tail->flush_next = l;
    else
        t->flush_head = l;
    t->flush_tail = l;
    if (!t->flush_armed) {
        /* queued from a timer that lws runs before its poll(): written from this one, which
         * also keeps the poll from waiting; queued from a socket's callback, the flush after
         * the service round comes first and disarms it */
        t->flush_armed = true;
        lws_sul_schedule(t->ctx, 0, &t->sul_flush, flush_fire, 0);
    }
}

void io_link_flush(struct relay_transport *t)
{
    unsigned writes = 0;

    while (t->flush_head) {
        struct link *l = t->flush_head;
        struct lws *wsi = l->wsi;

        t->flush_head = l->flush_next;
        if (!t->flush_head)
            t->flush_tail = NULL;
        l->flush_next = NULL;
        l->flush_queued = false;
        if (!wsi || io_link_of(wsi) != l || l->state == LINK_GONE || l->closing)
            continue;
        if (writes++ >= FLUSH_WRITES || lws_partial_buffered(wsi)) {
            lws_callback_on_writable(wsi);
            continue;
        }
        /* what WRITEABLE would do; it queues the link again when there is more */
        if (io_stack_writeable(l, wsi) < 0)
            io_link_kill(l); /* outside its callbacks: lws closes it on its next service */
    }
    if (t->flush_armed) {
        t->flush_armed = false;
        lws_sul_cancel(&t->sul_flush);
    }
}

static int link_rx(struct link *l, struct lws *wsi, const void *in, size_t len)
{
    if (l->open_pending) {
        link_deliver(&l->sul);
        if (io_link_of(wsi) != l)
            return 0;
    }
    return io_stack_rx(l, wsi, in, len);
}

static int cb_link(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct link *l;

    (void)user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* lws_cancel_service(): a name lookup finished (or a signal), once per vhost */
        {
            struct relay_transport *t = lws_context_user(lws_get_context(wsi));

            if (t && t->resolver && !t->destroying)
                io_resolver_run(t);
        }
        return 0;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        l = io_link_of(wsi);
        if (l) {
            io_why_connect_error(l, wsi, in, len);
            link_attempt_failed(l, wsi);
        }
        return 0;

    case LWS_CALLBACK_WSI_CREATE:
        /* 4.1.6 calls this when the TCP connect has completed */
        l = io_link_of(wsi);
        if (l && !l->tcp_up) {
            l->tcp_up = true;
            socket_options(l, wsi);
            if (l->rx_gated) {
                l->rx_gated = false;
                lws_rx_flow_control(wsi, 1);
            }
        }
        return 0;

    case LWS_CALLBACK_RAW_CONNECTED:
        l = io_link_of(wsi);
        if (!l)
            return -1; /* closed by the core meanwhile */
        return io_stack_connected(l, wsi);

    case LWS_CALLBACK_RAW_RX:
        l = io_link_of(wsi);
        if (!l)
            return -1;
        if (len >= RX_BUF / 2)
            l->t->round_full = true;
        return link_rx(l, wsi, in, len);

    case LWS_CALLBACK_RAW_WRITEABLE:
        l = io_link_of(wsi);
        return l ? io_stack_writeable(l, wsi) : -1;

    case LWS_CALLBACK_RAW_CLOSE:
        l = io_link_of(wsi);
        if (l) {
            io_tls_last_words(l, wsi);
            io_link_gone(l, io_why_closed(l, wsi));
        }
        return 0;

    case LWS_CALLBACK_WSI_DESTROY:
        /* the last word on any wsi: a link still attached has not been reported yet */
        l = io_link_of(wsi);
        if (l)
            io_link_gone(l, io_why_closed(l, wsi));
        return 0;

    default:
        return 0;
    }
}
