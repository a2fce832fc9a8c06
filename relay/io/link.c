/*
 * link.c: one link's bytes (STYLE §6). It connects (the host resolved here, then address by
 * address through lws), hands received bytes to relay_core_on_rx(), asks
 * relay_core_on_writeable() for bytes when the socket can take them (exactly one lws_write()
 * per WRITEABLE callback), applies rx flow control, and reports open and close to the core from
 * the link's timer, never from inside lws' connect or close paths.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "io/internal.h"

static int cb_link(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);

/* One callback serves both link protocols. It also receives lws' context-wide TLS callbacks
 * (certificate verification goes to the first vhost's protocols[0]), so the client vhosts are
 * created before the HTTP one and every client vhost has these protocols. */
const struct lws_protocols io_link_protocols[] = {
    {"relay-raw", cb_link, 0, 0, 0, NULL, 0},
    {"relay-ws", cb_link, 0, 0, 0, NULL, 0},
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
    flush_unqueue(l);
    if (l->prev)
        l->prev->next = l->next;
    else
        t->links = l->next;
    if (l->next)
        l->next->prev = l->prev;
    if (l->ssl)
        SSL_free(l->ssl);
    io_probe_close(l);
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

/* Delivers what lws told us, from a timer: never inside io->connect() or lws' close path. */
static void link_deliver(lws_sorted_usec_list_t *sul)
{
    struct link *l = lws_container_of(sul, struct link, sul);
    struct relay_conn *c = l->conn;

    if (l->state == LINK_GONE) {
        char why[WHY_LEN];

        snprintf(why, sizeof(why), "%s", l->why[0] ? l->why : "connection closed");
        relay_conn_set_link(c, NULL);
        io_link_free(l);
        relay_core_on_close(c, why, relay_now_ms());
        return;
    }
    if (l->retry_pending) {
        l->retry_pending = false;
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
    if (l->wsi && l->state == LINK_OPEN && !l->paused && io_tls_has_rx(l)) {
        struct lws *wsi = l->wsi;

        if (io_tls_drain(l, wsi) < 0)
            io_link_kill(l); /* not inside a callback of this wsi: close it from the loop */
        else
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
    if (l->closing)
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

/* lws says the link is up (TCP, TLS and WebSocket handshakes done). */
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
/* The io table                                                                              */
/* ---------------------------------------------------------------------------------------- */

static const char *subprotocol(uint8_t version)
{
    return version == MQC_V31 ? "mqttv3.1" : "mqtt";
}

/* Resolves the URL host (lws 4.1.6 would do the same blocking getaddrinfo(), but would not
 * say why it failed) into numeric addresses that link_attempt() tries in order. */
static bool link_resolve(struct link *l)
{
    struct addrinfo hints, *res = NULL, *ai;
    int r;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    r = getaddrinfo(l->host, NULL, &hints, &res);
    if (r == EAI_NONAME || r == EAI_ADDRFAMILY) { /* AI_ADDRCONFIG hides loopback-only hosts */
        hints.ai_flags = 0;
        r = getaddrinfo(l->host, NULL, &hints, &res);
    }
    if (r) {
        io_why_set(l, "cannot resolve \"%s\": %s", l->host,
                   r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
        return false;
    }
    for (ai = res; ai && l->n_addr < MAX_ADDRS; ai = ai->ai_next) {
        char *a = l->addr[l->n_addr];
        unsigned i;

        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            getnameinfo(ai->ai_addr, ai->ai_addrlen, a, INET6_ADDRSTRLEN, NULL, 0, NI_NUMERICHOST))
            continue;
        for (i = 0; i < l->n_addr && strcmp(l->addr[i], a); i++)
            ;
        if (i == l->n_addr)
            l->n_addr++;
    }
    freeaddrinfo(res);
    if (!l->n_addr) {
        io_why_set(l, "cannot resolve \"%s\": no IPv4 or IPv6 address", l->host);
        return false;
    }
    return true;
}

/* Starts connecting to the next address. Returns with the attempt under way, the link GONE
 * (reported from the sul), or a retry scheduled. Never reports from inside this call. */
static void link_attempt(struct link *l)
{
    struct lws_client_connect_info ci;
    char hostport[300];
    struct lws *wsi;
    int saved_errno;

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
        ci.vhost = l->vh;
        ci.address = l->addr[l->next_addr++];
        ci.port = l->port;
        ci.host = l->server_name; /* wss: SNI, the certificate name check, the Host header */
        ci.opaque_user_data = l;
        ci.ietf_version_or_minus_one = -1;
        if (l->tls && !l->mem_tls) {
            ci.ssl_connection = LCCSCF_USE_SSL; /* never falls back to plain text */
            if (!l->verify)
                ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
                                     LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK | LCCSCF_ALLOW_EXPIRED |
                                     LCCSCF_ALLOW_INSECURE;
        }
        if (l->ws) {
            ci.ssl_connection |= LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
            ci.path = l->path;
            /* the Host header; lws strips ":port" again for SNI and the certificate check */
            if (l->port != (l->tls ? 443 : 80) && !strchr(l->server_name, ':')) {
                snprintf(hostport, sizeof(hostport), "%s:%u", l->server_name, l->port);
                ci.host = hostport;
            }
            ci.protocol = l->subproto; /* Sec-WebSocket-Protocol */
            ci.local_protocol_name = "relay-ws";
            ci.alpn = "http/1.1";
        } else {
            ci.method = "RAW";
            ci.local_protocol_name = "relay-raw";
        }
        l->why[0] = '\0'; /* the reason of the last attempt is the one reported */
        l->tcp_up = false;
        l->rx_gated = false;
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
            } else if (!l->tcp_up && l->ws) {
                /* the h1 role of 4.1.6 ignores POLLOUT while rx is flow-controlled, so the
                 * gate below cannot be used: keep the socket to read its ICMP errors */
                io_probe_open(l, lws_get_socket_fd(wsi));
            } else if (!l->tcp_up) {
                /* Hold POLLIN off until the TCP connect completes (WSI_CREATE turns it back
                 * on). A failed connect then shows as POLLHUP alone, which lws handles by
                 * closing with the socket still open, so CONNECTION_ERROR can read SO_ERROR
                 * ("connection refused"). With POLLIN on, lws reads SO_ERROR itself and
                 * only says "Unable to connect". One address per wsi keeps this harmless:
                 * the next address is tried here, not by lws. Raw links only. */
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
        else
            io_why_set(l, "connection failed");
    }
}

/* A connect attempt failed before TCP was up: the next address, or the end. */
static void link_attempt_failed(struct link *l, struct lws *wsi)
{
    io_probe_close(l);
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

int io_link_connect(void *ctx, struct relay_conn *c, const struct relay_endpoint *ep)
{
    struct relay_transport *t = ctx;
    const struct relay_url *u = ep->url;
    const struct relay_tls_config *tc = ep->tls;
    struct tls_vhost *v = t->vh_default;
    struct link *l;
    char err[WHY_LEN];

    if (!u || !u->host || !u->host[0])
        return -EINVAL;
    if (relay_conn_link(c))
        return -EALREADY;
    l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->ws = u->scheme == RELAY_WS || u->scheme == RELAY_WSS;
    l->tls = u->scheme == RELAY_MQTTS || u->scheme == RELAY_WSS;
    l->mem_tls = u->scheme == RELAY_MQTTS;
    l->tx = malloc(LWS_PRE + TX_ROOM);
    l->ptx = l->mem_tls ? malloc(TX_CAP) : NULL;
    if (!l->tx || (l->mem_tls && !l->ptx)) {
        free(l->tx);
        free(l->ptx);
        free(l);
        return -ENOMEM;
    }
    l->t = t;
    l->conn = c;
    l->probe_fd = -1;
    l->verify = !(l->tls && tc && !tc->verify);
    l->port = u->port;
    l->subproto = subprotocol(ep->version);
    snprintf(l->path, sizeof(l->path), "%s", u->path && u->path[0] ? u->path : "/mqtt");
    snprintf(l->host, sizeof(l->host), "%s", u->host);
    snprintf(l->server_name, sizeof(l->server_name), "%s",
             l->tls && tc && tc->server_name && tc->server_name[0] ? tc->server_name : u->host);
    l->next = t->links;
    if (t->links)
        t->links->prev = l;
    t->links = l;
    relay_conn_set_link(c, l);

    /* Whatever fails from here is reported like a failed connect: asynchronously, with the
     * reason. */
    err[0] = '\0';
    if (l->tls && tc)
        v = io_tls_vhost(t, tc->ca_file, tc->cert_file, tc->key_file, err, sizeof(err));
    if (!v) {
        l->state = LINK_GONE;
        io_why_set(l, "%s", err);
        io_link_schedule(l);
        return 0;
    }
    l->sctx = v->sctx;
    l->vh = l->mem_tls ? t->vh_default->vh : v->vh; /* mem_tls: a plain raw link */
    io_log(t, RELAY_LOG_DEBUG, ep->who, "connecting to %s", u->text ? u->text : u->host);
    if (!link_resolve(l)) {
        l->state = LINK_GONE;
        io_link_schedule(l);
        return 0;
    }
    link_attempt(l);
    return 0;
}

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
    if (!l->wsi || l->state != LINK_OPEN || l->flush_close)
        return;
    lws_rx_flow_control(l->wsi, pause ? 0 : 1);
    /* mem_tls may hold records read before the pause: no RX event will come for those */
    if (!pause && io_tls_has_rx(l))
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
/* The data path                                                                             */
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

/* When the core or TLS has bytes to send: a plain or mqtts link is written at the end of the
 * service round (io_link_flush); the rest asks lws for WRITEABLE. */
void io_link_want_writeable(struct link *l, struct lws *wsi)
{
    struct relay_transport *t = l->t;

    if (io_link_of(wsi) != l || l->state == LINK_GONE || (l->closing && !l->flush_close))
        return;
    if (!(l->mem_tls && l->ssl && BIO_ctrl_pending(SSL_get_wbio(l->ssl))) &&
        !(l->state == LINK_OPEN && !l->open_pending && relay_core_wants_write(l->conn)) &&
        !l->flush_close)
        return;
    /* WebSocket framing stays in lws' WRITEABLE; a last write before a close too; and while
     * lws holds bytes a send did not take, it writes them first on POLLOUT, then WRITEABLE */
    if (l->ws || l->closing || lws_partial_buffered(wsi)) {
        lws_callback_on_writable(wsi);
        return;
    }
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

static int link_rx(struct link *l, struct lws *wsi, const void *in, size_t len)
{
    if (l->mem_tls)
        return io_tls_rx(l, wsi, in, len);
    if (!io_link_rx_allowed(l, wsi))
        return 0; /* closing: the rest is discarded */
    if (l->open_pending) {
        link_deliver(&l->sul);
        if (!io_link_rx_allowed(l, wsi))
            return 0;
    }
    if (io_link_deliver_rx(l, wsi, in, len) < 0)
        return -1;
    io_link_want_writeable(l, wsi);
    return 0;
}

/* WRITEABLE: exactly one lws_write of what the core gives. */
static int link_writeable(struct link *l, struct lws *wsi)
{
    size_t n = 0;
    int r;

    if (l->closing && !l->flush_close)
        return 0; /* a kill is on its way */
    if (l->mem_tls)
        return l->ssl ? io_tls_writeable(l, wsi) : 0;
    if (l->state != LINK_OPEN || l->open_pending)
        return 0;
    r = relay_core_on_writeable(l->conn, l->tx + LWS_PRE, TX_CAP, &n, relay_now_ms());
    if (n > TX_CAP)
        return -1;
    if (n && lws_write(wsi, l->tx + LWS_PRE, n, l->ws ? LWS_WRITE_BINARY : LWS_WRITE_RAW) < (int)n)
        return -1;
    if (r < 0 || l->flush_close) {
        l->closing = true;
        if (l->ws)
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1;
    }
    io_link_want_writeable(l, wsi);
    return 0;
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
        if (link_writeable(l, wsi) < 0)
            io_link_kill(l); /* outside its callbacks: lws closes it on its next service */
    }
    if (t->flush_armed) {
        t->flush_armed = false;
        lws_sul_cancel(&t->sul_flush);
    }
}

/* The raw TCP connection of a link is up: mqtt:// is open; mqtts:// starts TLS. */
static int link_connected(struct link *l, struct lws *wsi)
{
    if (!l->mem_tls) {
        io_link_opened(l, wsi);
        return 0;
    }
    if (!io_tls_start(l))
        return -1;
    /* lws has no timeout on an established raw link: bound the handshake */
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE + 1, TIMEOUT_SECS);
    return io_tls_rx(l, wsi, NULL, 0); /* ClientHello into the wbio, WRITEABLE sends it */
}

static int cb_link(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct link *l;

    switch (reason) {
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
        /* during lws_create_vhost(): user is the vhost's client SSL_CTX (lws shares one between
         * vhosts with the same files); wsi is a stand-in that only knows the context */
        io_tls_ctx_made(lws_context_user(lws_get_context(wsi)), user);
        return 0;
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        /* wss only. user: X509_STORE_CTX *, len: preverify_ok; 0 keeps OpenSSL's verdict,
         * nonzero refuses (4.1.6 calls the first vhost's protocols[0], that is us) */
        l = io_link_of(wsi);
        if (!l)
            return 0;
        return io_tls_verify(l, (int)len, user) ? 0 : 1;

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
            io_probe_close(l);
            if (l->rx_gated) {
                l->rx_gated = false;
                lws_rx_flow_control(wsi, 1);
            }
        }
        return 0;

    case LWS_CALLBACK_RAW_CONNECTED:
        l = io_link_of(wsi);
        return l ? link_connected(l, wsi) : -1; /* no link: closed by the core meanwhile */

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        l = io_link_of(wsi);
        if (!l)
            return -1;
        io_link_opened(l, wsi);
        return 0;

    case LWS_CALLBACK_RAW_RX:
    case LWS_CALLBACK_CLIENT_RECEIVE:
        l = io_link_of(wsi);
        if (!l)
            return -1;
        if (len >= RX_BUF / 2)
            l->t->round_full = true;
        return link_rx(l, wsi, in, len);

    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        l = io_link_of(wsi);
        return l ? link_writeable(l, wsi) : -1;

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        l = io_link_of(wsi);
        if (l) {
            const uint8_t *p = in;
            unsigned code = len >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 1005u;
            int rl = len > 2 ? (int)(len - 2 > 100 ? 100 : len - 2) : 0;

            if (rl)
                io_why_set(l, "WebSocket closed by server (%u: %.*s)", code, rl,
                           (const char *)p + 2);
            else
                io_why_set(l, "WebSocket closed by server (%u)", code);
        }
        return 0;

    case LWS_CALLBACK_RAW_CLOSE:
    case LWS_CALLBACK_CLIENT_CLOSED:
        l = io_link_of(wsi);
        if (l) {
            io_tls_last_words(l, wsi);
            io_link_gone(l, io_why_closed(l));
        }
        return 0;

    case LWS_CALLBACK_WSI_DESTROY:
        /* the last word on any wsi: a link still attached has not been reported yet */
        l = io_link_of(wsi);
        if (l)
            io_link_gone(l, io_why_closed(l));
        return 0;

    default:
        return 0;
    }
}
