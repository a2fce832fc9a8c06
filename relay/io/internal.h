/*
 * internal.h: what the transport's files share. io/ is the only folder that includes
 * <libwebsockets.h> and OpenSSL; it reaches the core only through core/io.h.
 *
 *   service.c  the context, the event loop, timers (relay_core_tick), read batching, the clock
 *   resolve.c  name lookups off the event loop (threads running getaddrinfo), results to the loop
 *   link.c     one link: connect (address by address), the socket's options, open, close
 *   stack.c    one link's bytes through its layers: proxy handshake, TLS, WebSocket, the core
 *   proxy.c    the proxy handshakes (HTTP CONNECT, SOCKS5) as pure byte machines (proxy.h)
 *   ws.c       the WebSocket client (upgrade, frames) as a pure byte machine (ws.h)
 *   tls.c      a link's TLS: OpenSSL over memory BIOs, verification, alerts, resumption
 *   tlsctx.c   the TLS contexts: built from the files as they are at each reconnect, options,
 *              session cache, key log, certificate expiry
 *   why.c      the texts that explain a failed connect
 *   http.c     the HTTP listener (relay.metrics): the status page, the core's answers
 *   lwslog.c   libwebsockets' own log lines, in ours
 *
 * Written against libwebsockets 4.1.6 (Debian 12), whose API differs from today's upstream.
 * Every link is an lws raw TCP link: lws connects (to a numeric address we resolved) and moves
 * bytes; the proxy handshake, TLS and WebSocket run here, in stack.c, in that order, so that
 * they compose (wss through a SOCKS5 proxy) and the TLS context is ours (rotation, options).
 *
 * Link lifetime: connect() allocates a struct link and stores it with relay_conn_set_link().
 * relay_core_on_open() and relay_core_on_close() are never called from inside lws' connect or
 * close paths: they are delivered from a zero-delay timer (the link's sul), which also makes
 * "never from inside io->connect()" hold when lws fails or connects synchronously. After
 * relay_core_on_close() the link is freed and the conn's link pointer is NULL.
 */
#ifndef RELAY_IO_INTERNAL_H
#define RELAY_IO_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>
#include <openssl/ssl.h>

#include "core/batch.h"
#include "io/transport.h"

/* bytes the core may put in one lws_write(): many packets per send. With their TLS records
 * (TX_ROOM) they stay under what lws sends at once (pt_serv_buf_size + LWS_PRE), so a write
 * is never split by lws itself */
#define TX_CAP (60u * 1024u)
#define TX_ROOM (TX_CAP + 1024u) /* ... and their WebSocket and TLS framing (+ a close) */
#define TIMEOUT_SECS                                                                               \
    10u                          /* per address: TCP connect; then each handshake (proxy, TLS,     \
                                    WebSocket) */
#define CONNECT_TIMEOUT_SECS 20u /* lws: whole connect */
#define FLUSH_CLOSE_SECS 2       /* a link closing after a last write is killed after this */
#define WHY_LEN 240
#define MAX_ADDRS 8
#define MAX_WAKES 16
#define RX_BUF (64u * 1024u)   /* lws' read buffer (pt_serv_buf_size) */
#define WIRE_MAX (64u * 1024u) /* handshake and control bytes queued for the socket */

enum link_state {
    LINK_CONNECTING = 0, /* resolving, connecting, handshaking; nothing told to the core yet */
    LINK_OPEN,           /* relay_core_on_open() delivered (or about to be) */
    LINK_GONE,           /* the wsi is gone; relay_core_on_close() is pending */
};

/* Where a connecting link is (for the texts of why.c and the handshakes of stack.c). */
enum link_phase {
    PH_RESOLVE = 0, /* looking the host (or the proxy's) up, off the loop */
    PH_TCP,         /* lws connecting to one address */
    PH_PROXY,       /* the proxy handshake */
    PH_TLS,         /* the TLS handshake */
    PH_WS,          /* the WebSocket upgrade */
    PH_OPEN,        /* the core's bytes flow */
};

struct relay_transport;
struct tls_ctx;
struct dns_lookup;

/* A proxy as a link keeps it (the configuration may be freed by a reload meanwhile). */
struct link_proxy {
    int kind; /* enum io_proxy_kind; 0 = direct */
    char host[256];
    uint16_t port;
    char *user, *pass; /* malloc'ed; pass wiped when freed */
    size_t pass_len;
};

/* One connection's transport state. Owned by the transport; the conn points at it. */
struct link {
    struct relay_transport *t;
    struct relay_conn *conn;
    struct lws *wsi;            /* NULL once the wsi is gone */
    struct link *next, *prev;   /* t->links */
    lws_sorted_usec_list_t sul; /* delivers on_open / on_close outside lws' call paths */
    enum link_state state;
    enum link_phase phase;
    bool ws; /* WebSocket framing (ws://, wss://) */
    bool tls;
    bool verify;            /* verify the server certificate (default) */
    bool in_connect;        /* inside lws_client_connect_via_info() */
    bool tcp_up;            /* this attempt's TCP connection is up (WSI_CREATE) */
    bool rx_gated;          /* POLLIN held off while TCP connects (see link_attempt) */
    bool retry_pending;     /* the next address is tried from the sul */
    bool resolve_done;      /* the lookup's result arrived: link_attempt() from the sul */
    bool open_pending;      /* lws says connected; on_open not yet delivered */
    bool paused;            /* the core asked to stop reading */
    bool closing;           /* the core asked to close */
    bool flush_close;       /* write once more, then close */
    bool drain_close;       /* write what the layers queued (a WebSocket Close), then close */
    bool hs_done;           /* TLS handshake finished */
    bool hs_counted;        /* ... and reported to the core */
    struct dns_lookup *dns; /* the lookup under way, NULL once done */
    uint64_t dns_started_ms;
    struct tls_ctx *tctx; /* tls: the context this attempt uses (not owned) */
    SSL *ssl;             /* tls: owned */
    uint8_t *ptx;         /* tls or ws: TX_CAP + IO_WS_FRAME_HDR bytes of plaintext */
    uint8_t alpn[256];    /* tls: ALPN in wire form */
    size_t alpn_len;
    uint64_t started_ms;                    /* this attempt */
    uint16_t port;                          /* the broker's */
    uint16_t tcp_port;                      /* what TCP connects to: the broker's, or the proxy's */
    const char *subproto;                   /* ws: "mqtt" or "mqttv3.1" */
    char path[256];                         /* ws */
    char addr[MAX_ADDRS][INET6_ADDRSTRLEN]; /* resolved, tried in order */
    unsigned n_addr, next_addr;
    char host[256];              /* the URL host */
    char server_name[256];       /* the name checked in the certificate */
    char bind[INET6_ADDRSTRLEN]; /* bind_address, "" = any */
    uint32_t keepalive_s, user_timeout_ms;
    struct link_proxy proxy;
    void *px;      /* struct io_proxy during the proxy handshake (stack.c) */
    void *wsc;     /* struct io_ws from the upgrade on (stack.c) */
    uint8_t *wire; /* bytes for the socket as they are (proxy, WebSocket without TLS) */
    size_t wire_len;
    char why[WHY_LEN];       /* first specific failure seen (certificate, alert, ...) */
    uint8_t *tx;             /* LWS_PRE + TX_ROOM */
    struct link *flush_next; /* t->flush: written at the end of the service round */
    bool flush_queued;
};

struct relay_transport {
    struct lws_context *ctx;
    void *core;
    enum relay_log_level log_level;
    struct relay_io io;
    struct lws_vhost *vh_client;     /* every link: raw TCP */
    struct tls_ctx *tls_ctxs;        /* one per distinct TLS configuration (tlsctx.c) */
    struct io_resolver *resolver;    /* resolve.c */
    struct lws_vhost *vh_http;       /* metrics listener, NULL if none */
    lws_sorted_usec_list_t sul_wake; /* relay_core_tick() */
    uint64_t wakes[MAX_WAKES];       /* pending wake-up requests, earliest first */
    unsigned n_wakes;
    lws_sorted_usec_list_t sul_service; /* bounds one relay_transport_service() wait */
    struct link *links;
    struct link *flush_head, *flush_tail; /* links with bytes to write (io_link_flush) */
    /* armed while the flush queue is not empty: lws runs timers (the core's tick, a link's sul)
     * before it polls, and what they queue must not wait for the poll's timeout */
    lws_sorted_usec_list_t sul_flush;
    bool flush_armed;
    bool destroying;
    /* read batching (relay_transport_service; the policy is core/batch.c) */
    struct relay_batch batch;
    uint32_t round_packets; /* packets handed to the core in this service round */
    bool round_full;        /* a read in this round filled lws' buffer: the relay is behind */
    int sched_fd;           /* /proc/self/schedstat, or -1 (then no batching) */
    uint64_t sched_next_ms; /* next sample */
};

/* ---- link.c ------------------------------------------------------------------------------ */

/* The link protocol ("relay-raw"); the client vhost has it. */
extern const struct lws_protocols io_link_protocols[];
/* The link a wsi belongs to, NULL once detached. */
struct link *io_link_of(struct lws *wsi);
/* Delivers what lws told us from the link's zero-delay timer. */
void io_link_schedule(struct link *l);
/* The wsi is gone (or never was): detach it and report once (why: when nothing better). */
void io_link_gone(struct link *l, const char *why);
/* Every handshake is done: the link is open for the core. */
void io_link_opened(struct link *l, struct lws *wsi);
/* Closes the wsi from outside its callbacks (lws closes it on its next service). */
void io_link_kill(struct link *l);
/* Queues the link for io_link_flush() (stack.c decides when a link may be written there). */
void io_link_queue_flush(struct link *l);
/* Writes what the queued links have, directly: the PUBLISHes and acknowledgements a whole
 * service round produced go out in one send per socket, with no poll() for POLLOUT first. A
 * send the socket only partly takes is finished by lws on POLLOUT (then WRITEABLE goes on). */
void io_link_flush(struct relay_transport *t);
/* The io table's entries (service.c fills struct relay_io with them). */
int io_link_connect(void *ctx, struct relay_conn *c, const struct relay_endpoint *ep);
void io_link_want_write(void *ctx, struct relay_conn *c);
void io_link_pause_rx(void *ctx, struct relay_conn *c, bool pause);
void io_link_close(void *ctx, struct relay_conn *c);
void io_link_free(struct link *l);
/* The lookup of l's host (or its proxy's) ended: addresses into l, or why (resolve.c). */
void io_link_resolved(struct link *l, int n_addr, const char (*addr)[INET6_ADDRSTRLEN],
                      const char *why);

/* ---- stack.c ----------------------------------------------------------------------------- */

/* The TCP connection is up: the first handshake (proxy, TLS, WebSocket) starts, or the link
 * opens. -1: close. */
int io_stack_connected(struct link *l, struct lws *wsi);
/* Bytes from the socket, through the layers. -1: close now. */
int io_stack_rx(struct link *l, struct lws *wsi, const void *in, size_t len);
/* WRITEABLE: exactly one lws_write of what the layers or the core have. -1: close. */
int io_stack_writeable(struct link *l, struct lws *wsi);
/* Asks for WRITEABLE when a layer or the core has bytes to send. */
void io_link_want_writeable(struct link *l, struct lws *wsi);
/* Hands plaintext to the core. -1: close now; 0: go on. */
int io_link_deliver_rx(struct link *l, struct lws *wsi, const void *in, size_t len);
bool io_link_rx_allowed(const struct link *l, struct lws *wsi);
/* Bytes a layer below the core queued for the socket (a WebSocket Ping's answer). */
bool io_stack_has_tx(const struct link *l);
/* Decrypted bytes wait (read before a pause): io_stack_drain() hands them on. */
bool io_stack_has_rx(const struct link *l);
int io_stack_drain(struct link *l, struct lws *wsi);
/* Frees what the layers hold (proxy credentials wiped). */
void io_stack_free(struct link *l);

/* ---- tls.c ------------------------------------------------------------------------------- */

/* One step of certificate verification: true to go on. */
bool io_tls_verify(struct link *l, int preverify_ok, X509_STORE_CTX *xs);
/* Starts the handshake on a connected link (the SSL made from l->tctx). false with why. */
bool io_tls_start(struct link *l);
/* Ciphertext in, then the handshake's progress: 1 done (just now), 0 not yet or before, -1
 * failed (why set). */
int io_tls_input(struct link *l, const void *in, size_t len);
/* Plaintext out of the TLS: >0 bytes, 0 none for now, -1 closed or failed (why set). */
int io_tls_read(struct link *l, uint8_t *buf, size_t cap);
/* Plaintext into the TLS (records queued in the wbio). -1 with why. */
int io_tls_write(struct link *l, const void *p, size_t n);
/* Ciphertext waiting to be sent, and taking it. */
size_t io_tls_pending(const struct link *l);
size_t io_tls_take(struct link *l, uint8_t *out, size_t cap);
/* Decrypted or undecrypted bytes wait in the TLS (read before a pause). */
bool io_tls_has_rx(const struct link *l);
/* close_notify into the wbio. */
void io_tls_shutdown(struct link *l);
/* Reads what the socket still holds when the server closed, for an alert's reason. */
void io_tls_last_words(struct link *l, struct lws *wsi);

/* ---- tlsctx.c ---------------------------------------------------------------------------- */

/* The context for tc, its files read now: rebuilt when their bytes changed; a file set that
 * does not load keeps the previous context (one log line) or, with none, fails (NULL, err). */
struct tls_ctx *io_tls_ctx_get(struct relay_transport *t, const struct relay_tls_config *tc,
                               const char *who, char *err, size_t errlen);
SSL_CTX *io_tls_ctx_ssl(const struct tls_ctx *c);
/* The client certificate's expiry (Unix seconds), 0 = no client certificate. */
int64_t io_tls_ctx_not_after(const struct tls_ctx *c);
/* Resumption: the session kept for key (server name and port), to offer; NULL = none. */
SSL_SESSION *io_tls_ctx_session(struct tls_ctx *c, const char *key);
void io_tls_ctx_free_all(struct relay_transport *t);
/* OpenSSL's verdict on tc's option strings (ciphers, suites): 0, or -EINVAL with err. */
int io_tls_check_options(const struct relay_tls_config *tc, char *err, size_t errlen);
/* The SSL_CTX's transport (the info callback needs it). */
struct relay_transport *io_tls_ctx_transport(SSL_CTX *sctx);
/* A link's key in the session cache. */
void io_tls_session_key(const struct link *l, char *out, size_t cap);

/* ---- resolve.c --------------------------------------------------------------------------- */

struct io_resolver;
struct io_resolver *io_resolver_new(struct lws_context *ctx);
/* The transport is going: no lookup wakes the context from now on (before it is destroyed). */
void io_resolver_stop(struct io_resolver *r);
/* ... and once its links are freed: lookups still running are abandoned (their threads end
 * alone, and free what is left). */
void io_resolver_free(struct io_resolver *r);
/* Looks host up for l, off the loop; io_link_resolved() follows from io_resolver_run(). A
 * numeric host is answered at once (still through io_resolver_run). 0 or -ENOMEM. */
int io_resolve(struct relay_transport *t, struct link *l, const char *host);
/* l no longer wants its answer (closed, freed). */
void io_resolve_cancel(struct link *l);
/* In the loop (LWS_CALLBACK_EVENT_WAIT_CANCELLED): delivers the finished lookups. */
void io_resolver_run(struct relay_transport *t);

/* ---- why.c ------------------------------------------------------------------------------- */

/* The first specific reason a link failed wins (printf-like). */
void io_why_set(struct link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void io_why_cert(struct link *l, long err);
void io_why_errno(struct link *l, int e);
/* lws' CLIENT_CONNECTION_ERROR text (in, len) made into words. */
void io_why_connect_error(struct link *l, struct lws *wsi, const char *in, size_t len);
/* Why a link closed, when nothing more specific was recorded. */
const char *io_why_closed(const struct link *l, struct lws *wsi);

/* ---- http.c ------------------------------------------------------------------------------ */

int io_http_listen(struct relay_transport *t, const struct relay_transport_opts *o, char *err,
                   size_t errlen);
/* The status page, io/status.html, and the Content-Security-Policy header it is served with:
 * io_status_page.c, written into the build directory by io/embed_page.cmake. */
extern const unsigned char io_status_page[];
extern const size_t io_status_page_len;
extern const char io_status_page_csp[];

/* ---- lwslog.c ---------------------------------------------------------------------------- */

void io_lws_log_emit(int level, const char *line);
int io_lws_log_mask(enum relay_log_level level);
void io_log(const struct relay_transport *t, enum relay_log_level level, const char *who,
            const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The same, rate-limited (lines a remote peer can cause): see relay_log_raw_limited(). */
void io_log_limited(const struct relay_transport *t, enum relay_log_level level, const char *who,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
