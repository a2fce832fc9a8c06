/*
 * internal.h: what the transport's files share. io/ is the only folder that includes
 * <libwebsockets.h> and OpenSSL; it reaches the core only through core/io.h.
 *
 *   service.c  the context, the event loop, timers (relay_core_tick), read batching, the clock
 *   link.c     one link's bytes: connect (address by address), open, read, write, close
 *   tls.c      TLS: client vhosts per file set, verification, OpenSSL over memory BIOs (mqtts)
 *   why.c      the texts that explain a failed connect
 *   http.c     the HTTP listener (relay.metrics): the status page, the core's answers
 *   lwslog.c   libwebsockets' own log lines, in ours
 *
 * Written against libwebsockets 4.1.6 (Debian 12), whose API differs from today's upstream.
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
#define TX_ROOM (TX_CAP + 1024u) /* ... and their TLS records (+ a close_notify) */
#define TIMEOUT_SECS 10u         /* lws: per-address connect, TLS and WebSocket handshakes */
#define CONNECT_TIMEOUT_SECS 20u /* lws: whole connect over all DNS results */
#define FLUSH_CLOSE_SECS 2       /* a link closing after a last write is killed after this */
#define WHY_LEN 200
#define MAX_ADDRS 8
#define MAX_WAKES 16
#define RX_BUF (64u * 1024u) /* lws' read buffer (pt_serv_buf_size) */

enum link_state {
    LINK_CONNECTING = 0, /* lws is connecting; nothing told to the core yet */
    LINK_OPEN,           /* relay_core_on_open() delivered (or about to be) */
    LINK_GONE,           /* the wsi is gone; relay_core_on_close() is pending */
};

struct relay_transport;

/* One connection's transport state. Owned by the transport; the conn points at it. */
struct link {
    struct relay_transport *t;
    struct relay_conn *conn;
    struct lws *wsi;            /* NULL once the wsi is gone */
    struct link *next, *prev;   /* t->links */
    lws_sorted_usec_list_t sul; /* delivers on_open / on_close outside lws' call paths */
    enum link_state state;
    bool ws; /* WebSocket framing (ws://, wss://) */
    bool tls;
    bool verify;         /* verify the server certificate (default) */
    bool in_connect;     /* inside lws_client_connect_via_info() */
    bool tcp_up;         /* this attempt's TCP connection is up (WSI_CREATE) */
    bool rx_gated;       /* POLLIN held off while TCP connects (see link_attempt) */
    bool retry_pending;  /* the next address is tried from the sul */
    int probe_fd;        /* ws: a dup of the connecting socket, or -1 (see
                            link_attempt) */
    bool open_pending;   /* lws says connected; on_open not yet delivered */
    bool paused;         /* the core asked to stop reading */
    bool closing;        /* the core asked to close */
    bool flush_close;    /* write once more, then close */
    bool mem_tls;        /* mqtts://: TLS run here over memory BIOs */
    bool hs_done;        /* mem_tls: handshake finished */
    SSL_CTX *sctx;       /* mem_tls: the vhost's client context (not owned) */
    SSL *ssl;            /* mem_tls: owned */
    uint8_t *ptx;        /* mem_tls: TX_CAP bytes of plaintext from the core */
    uint64_t started_ms; /* this attempt */
    struct lws_vhost *vh;
    uint16_t port;
    const char *subproto;                   /* ws: "mqtt" or "mqttv3.1" */
    char path[256];                         /* ws */
    char addr[MAX_ADDRS][INET6_ADDRSTRLEN]; /* resolved here, tried in order */
    unsigned n_addr, next_addr;
    char host[256];          /* the URL host (for the DNS error text) */
    char server_name[256];   /* the name checked in the certificate */
    char why[WHY_LEN];       /* first specific failure seen (certificate, alert, ...) */
    uint8_t *tx;             /* LWS_PRE + TX_ROOM */
    struct link *flush_next; /* t->flush: written at the end of the service round */
    bool flush_queued;
};

/* A client vhost per distinct TLS file set: lws 4.1.6 sets CA, certificate and key per vhost. */
struct tls_vhost {
    struct tls_vhost *next;
    char *ca_file, *cert_file, *key_file; /* NULL = not set */
    struct lws_vhost *vh;
    SSL_CTX *sctx; /* its client context, from LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_... */
    char name[32]; /* lws keeps the pointer to the vhost's name: it must live as long */
};

struct relay_transport {
    struct lws_context *ctx;
    void *core;
    enum relay_log_level log_level;
    struct relay_io io;
    struct tls_vhost *vhosts;     /* one per distinct TLS file set */
    struct tls_vhost *creating;   /* the one lws_create_vhost() is making */
    struct tls_vhost *vh_default; /* no files: plain links and the system CA store */
    unsigned vhost_seq;
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

/* Both link protocols ("relay-raw", "relay-ws"); every client vhost has them (tls.c). */
extern const struct lws_protocols io_link_protocols[];
/* The link a wsi belongs to, NULL once detached. */
struct link *io_link_of(struct lws *wsi);
/* Delivers what lws told us from the link's zero-delay timer. */
void io_link_schedule(struct link *l);
/* The wsi is gone (or never was): detach it and report once (why: when nothing better). */
void io_link_gone(struct link *l, const char *why);
/* lws says the link is up (TCP, TLS and WebSocket handshakes done). */
void io_link_opened(struct link *l, struct lws *wsi);
/* Closes the wsi from outside its callbacks (lws closes it on its next service). */
void io_link_kill(struct link *l);
/* When the core or TLS has bytes to send: queues a plain or mqtts link for the end of the
 * service round (io_link_flush), or asks lws for WRITEABLE (WebSocket links, a closing link,
 * a socket lws still holds unsent bytes for). */
void io_link_want_writeable(struct link *l, struct lws *wsi);
/* Writes what the queued links have, directly: the PUBLISHes and acknowledgements a whole
 * service round produced go out in one send per socket, with no poll() for POLLOUT first. A
 * send the socket only partly takes is finished by lws on POLLOUT (then WRITEABLE goes on). */
void io_link_flush(struct relay_transport *t);
/* Hands plaintext to the core. -1: close now; 0: go on. */
int io_link_deliver_rx(struct link *l, struct lws *wsi, const void *in, size_t len);
bool io_link_rx_allowed(const struct link *l, struct lws *wsi);
/* The io table's entries (service.c fills struct relay_io with them). */
int io_link_connect(void *ctx, struct relay_conn *c, const struct relay_endpoint *ep);
void io_link_want_write(void *ctx, struct relay_conn *c);
void io_link_pause_rx(void *ctx, struct relay_conn *c, bool pause);
void io_link_close(void *ctx, struct relay_conn *c);
void io_link_free(struct link *l);

/* ---- tls.c ------------------------------------------------------------------------------- */

/* The client vhost for this TLS file set, created on first use (kept until the transport is
 * freed: one per distinct configuration). NULL with err set if lws could not load the files. */
struct tls_vhost *io_tls_vhost(struct relay_transport *t, const char *ca, const char *cert,
                               const char *key, char *err, size_t errlen);
void io_tls_vhost_free(struct tls_vhost *v);
/* lws made a vhost's client SSL_CTX (LOAD_EXTRA_CLIENT_VERIFY_CERTS): our settings on it. */
void io_tls_ctx_made(struct relay_transport *t, SSL_CTX *sctx);
/* One step of certificate verification: true to go on. */
bool io_tls_verify(struct link *l, int preverify_ok, X509_STORE_CTX *xs);
/* mqtts (OpenSSL over memory BIOs on a raw link): start, bytes in, bytes out, what is left. */
bool io_tls_start(struct link *l);
int io_tls_rx(struct link *l, struct lws *wsi, const void *in, size_t len);
int io_tls_writeable(struct link *l, struct lws *wsi);
bool io_tls_has_rx(const struct link *l);
int io_tls_drain(struct link *l, struct lws *wsi);
void io_tls_last_words(struct link *l, struct lws *wsi);

/* ---- why.c ------------------------------------------------------------------------------- */

/* The first specific reason a link failed wins (printf-like). */
void io_why_set(struct link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void io_why_cert(struct link *l, long err);
void io_why_errno(struct link *l, int e);
/* lws' CLIENT_CONNECTION_ERROR text (in, len) made into words. */
void io_why_connect_error(struct link *l, struct lws *wsi, const char *in, size_t len);
/* Why a link closed, when nothing more specific was recorded. */
const char *io_why_closed(const struct link *l);
/* ws: a dup of the connecting socket with IP_RECVERR, to read ICMP errors lws cleared. */
void io_probe_open(struct link *l, int fd);
void io_probe_close(struct link *l);
int io_probe_errno(const struct link *l);

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
