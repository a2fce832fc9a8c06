/*
 * transport_lws.c: the thin libwebsockets layer under the core (STYLE §6).
 *
 * It only moves bytes: it connects links (mqtt://, mqtts://, ws://, wss://), hands received
 * bytes to relay_core_on_rx(), asks relay_core_on_writeable() for bytes when a socket can take
 * them (exactly one lws_write() per WRITEABLE callback), applies rx flow control, arms one
 * timer for relay_core_tick(), serves GET /metrics and /healthz, and bridges lws' own log lines.
 * Written against libwebsockets 4.1.6 (Debian 12), whose API differs from today's upstream.
 *
 * This is the only file that includes <libwebsockets.h> (and OpenSSL's headers, to explain
 * certificate failures and to set TLS 1.2 as the minimum).
 *
 * TLS: lws loads the CA, certificate and key (one client vhost per distinct set) and runs TLS
 * for wss://. For mqtts:// it cannot: 4.1.6 starts TLS on a method "RAW" client before the
 * socket exists (connect.c calls lws_client_create_tls() with fd -1: "tls start fail"), so a
 * mqtts:// link is a plain lws raw link on which this file runs OpenSSL itself through memory
 * BIOs, with an SSL made from the same vhost's SSL_CTX (same files, same TLS 1.2 minimum).
 *
 * Link lifetime: connect() allocates a struct link and stores it with relay_conn_set_link().
 * relay_core_on_open() and relay_core_on_close() are never called from inside lws' connect or
 * close paths: they are delivered from a zero-delay timer (the link's sul), which also makes
 * "never from inside io->connect()" hold when lws fails or connects synchronously. After
 * relay_core_on_close() the link is freed and the conn's link pointer is NULL.
 */
#include <errno.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "core/batch.h"
#include "io/transport.h"

#define TX_CAP 16384u            /* bytes the core may put in one lws_write() */
#define TX_ROOM (TX_CAP + 1024u) /* ... and their TLS records (+ a close_notify) */
#define TIMEOUT_SECS 10u         /* lws: per-address connect, TLS and WebSocket handshakes */
#define CONNECT_TIMEOUT_SECS 20u /* lws: whole connect over all DNS results */
#define FLUSH_CLOSE_SECS 2       /* a link closing after a last write is killed after this */
#define WHY_LEN 200
#define MAX_ADDRS 8
#define MAX_WAKES 16
#define RX_BUF (64u * 1024u)    /* lws' read buffer (pt_serv_buf_size) */

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
    char host[256];        /* the URL host (for the DNS error text) */
    char server_name[256]; /* the name checked in the certificate */
    char why[WHY_LEN];     /* first specific failure seen (certificate, alert, ...) */
    uint8_t *tx;           /* LWS_PRE + TX_ROOM */
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
    bool destroying;
    /* read batching (relay_transport_service; the policy is core/batch.c) */
    struct relay_batch batch;
    uint32_t round_packets; /* packets handed to the core in this service round */
    bool round_full;        /* a read in this round filled lws' buffer: the relay is behind */
    int sched_fd;           /* /proc/self/schedstat, or -1 (then no batching) */
    uint64_t sched_next_ms; /* next sample */
};

/* Per HTTP transaction (lws allocates and zeroes it). */
struct http_pss {
    char *body;
    size_t len, off;
};

static int cb_link(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);
static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);

/* One callback serves both link protocols. It also receives lws' context-wide TLS callbacks
 * (certificate verification goes to the first vhost's protocols[0]), so the client vhosts are
 * created before the HTTP one and every client vhost has these protocols. */
static const struct lws_protocols link_protocols[] = {
    {"relay-raw", cb_link, 0, 0, 0, NULL, 0},
    {"relay-ws", cb_link, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static const struct lws_protocols http_protocols[] = {
    {"relay-http", cb_http, sizeof(struct http_pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

uint64_t relay_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t relay_wall_offset_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - (int64_t)relay_now_ms();
}

/* ---------------------------------------------------------------------------------------- */
/* lws' own log lines                                                                        */
/* ---------------------------------------------------------------------------------------- */

/* lws errors that a link's close reason already reports (and that would otherwise repeat at
 * every reconnect): shown at debug only. */
static const char *const lws_echoes[] = {
    "SSL error:",          "lws_client_handshake: got bad HTTP",
    "use_PrivateKey_file", "problem ",
    "Private SSL key",     "lws_create_vhost:",
    "Unable to load SSL"};

/* lws' emit callback has no user pointer. The level filter lives in the mask given to
 * lws_set_log_level() (set from the transport's options), so no file-static is needed here. */
static void lws_log_emit(int level, const char *line)
{
    enum relay_log_level lv = RELAY_LOG_DEBUG;
    char buf[512];
    size_t n;

    if (level & LLL_ERR)
        lv = RELAY_LOG_ERROR;
    else if (level & LLL_WARN)
        lv = RELAY_LOG_WARN;
    for (n = 0; lv < RELAY_LOG_DEBUG && n < sizeof(lws_echoes) / sizeof(lws_echoes[0]); n++)
        if (!strncmp(line, lws_echoes[n], strlen(lws_echoes[n])))
            lv = RELAY_LOG_DEBUG;
    if (lv == RELAY_LOG_DEBUG && !lwsl_visible(LLL_INFO))
        return; /* LLL_INFO is in the mask only at our debug level */
    /* lws' stderr emitter adds "[2018/11/13 07:41:57:3989] E: "; others may too */
    if (line[0] == '[') {
        const char *e = strchr(line, ']');
        if (e) {
            line = e + 1;
            while (*line == ' ')
                line++;
            if (line[0] && line[1] == ':' && line[2] == ' ')
                line += 3;
        }
    }
    snprintf(buf, sizeof(buf), "%s", line);
    n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (n)
        relay_log_raw(lv, "lws", buf);
}

/* ERR and WARN from warn up, everything (NOTICE, INFO: the library is built without DEBUG)
 * at debug; the echoes above are dropped below debug. */
static int lws_log_mask(enum relay_log_level level)
{
    switch (level) {
    case RELAY_LOG_ERROR:
        return LLL_ERR;
    case RELAY_LOG_WARN:
    case RELAY_LOG_INFO:
        return LLL_ERR | LLL_WARN;
    default:
        return LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO;
    }
}

static void tlog(const struct relay_transport *t, enum relay_log_level level, const char *who,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void tlog(const struct relay_transport *t, enum relay_log_level level, const char *who,
                 const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (level > t->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    relay_log_raw(level, who, msg);
}

/* ---------------------------------------------------------------------------------------- */
/* Link bookkeeping                                                                          */
/* ---------------------------------------------------------------------------------------- */

static struct link *wsi_link(struct lws *wsi)
{
    return wsi ? (struct link *)lws_get_opaque_user_data(wsi) : NULL;
}

static void probe_close(struct link *l)
{
    if (l->probe_fd >= 0)
        close(l->probe_fd);
    l->probe_fd = -1;
}

/* ws: keeps a dup of the connecting socket with IP_RECVERR on, so that after lws has read
 * (and cleared) SO_ERROR an ICMP error can still be read from the error queue. */
static void probe_open(struct link *l, int fd)
{
    int one = 1;

    probe_close(l);
    if (fd < 0)
        return;
    setsockopt(fd, SOL_IP, IP_RECVERR, &one, sizeof(one));
    setsockopt(fd, SOL_IPV6, IPV6_RECVERR, &one, sizeof(one));
    l->probe_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/* The errno of a queued ICMP error on the probe socket, or 0. */
static int probe_errno(const struct link *l)
{
    char data[64], ctl[512];
    struct iovec iov = {data, sizeof(data)};
    struct msghdr mh;
    struct cmsghdr *cm;
    int so_err = 0;
    socklen_t sl = sizeof(so_err);

    if (l->probe_fd < 0)
        return 0;
    if (!getsockopt(l->probe_fd, SOL_SOCKET, SO_ERROR, &so_err, &sl) && so_err)
        return so_err;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = sizeof(ctl);
    if (recvmsg(l->probe_fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
        return 0;
    for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
        if ((cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_RECVERR) ||
            (cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_RECVERR)) {
            struct sock_extended_err ee;

            memcpy(&ee, CMSG_DATA(cm), sizeof(ee));
            return (int)ee.ee_errno;
        }
    return 0;
}

static void link_free(struct link *l)
{
    struct relay_transport *t = l->t;

    lws_sul_cancel(&l->sul);
    if (l->prev)
        l->prev->next = l->next;
    else
        t->links = l->next;
    if (l->next)
        l->next->prev = l->prev;
    if (l->ssl)
        SSL_free(l->ssl);
    probe_close(l);
    free(l->ptx);
    free(l->tx);
    free(l);
}

static void set_why(struct link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_why(struct link *l, const char *fmt, ...)
{
    va_list ap;

    if (l->why[0])
        return; /* the first specific reason wins */
    va_start(ap, fmt);
    vsnprintf(l->why, sizeof(l->why), fmt, ap);
    va_end(ap);
}

static bool mem_tls_has_rx(const struct link *l);
static int mem_tls_drain(struct link *l, struct lws *wsi);
static void want_writeable(struct link *l, struct lws *wsi);
static void link_kill(struct link *l);
static void link_attempt(struct link *l);

/* Delivers what lws told us, from a timer: never inside io->connect() or lws' close path. */
static void link_deliver(lws_sorted_usec_list_t *sul)
{
    struct link *l = lws_container_of(sul, struct link, sul);
    struct relay_conn *c = l->conn;

    if (l->state == LINK_GONE) {
        char why[WHY_LEN];

        snprintf(why, sizeof(why), "%s", l->why[0] ? l->why : "connection closed");
        relay_conn_set_link(c, NULL);
        link_free(l);
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
        if (wsi_link(wsi) == l && l->state == LINK_OPEN && relay_core_wants_write(c))
            lws_callback_on_writable(wsi);
    }
    if (l->wsi && l->state == LINK_OPEN && !l->paused && mem_tls_has_rx(l)) {
        struct lws *wsi = l->wsi;

        if (mem_tls_drain(l, wsi) < 0)
            link_kill(l); /* not inside a callback of this wsi: close it from the loop */
        else
            want_writeable(l, wsi);
    }
}

static void link_schedule(struct link *l)
{
    lws_sul_schedule(l->t->ctx, 0, &l->sul, link_deliver, 0);
}

/* The wsi is gone (or never was): detach it and report once. */
static void link_gone(struct link *l, const char *why)
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
        set_why(l, "%s", why);
    if (l->t->destroying) {
        link_free(l); /* the core is not told during relay_transport_free() */
        return;
    }
    if (!l->in_connect)
        link_schedule(l); /* io->connect() schedules it itself on return */
}

/* lws says the link is up (TCP, TLS and WebSocket handshakes done). */
static void link_opened(struct link *l, struct lws *wsi)
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
/* Failure texts                                                                             */
/* ---------------------------------------------------------------------------------------- */

static bool unknown_ca(long err)
{
    return err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
           err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
           err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
           err == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

static void why_cert(struct link *l, long err)
{
    const char *s = X509_verify_cert_error_string(err);

    if (err == X509_V_ERR_HOSTNAME_MISMATCH)
        set_why(l, "TLS: certificate name mismatch: the certificate is not valid for \"%s\"",
                l->server_name);
    else if (err == X509_V_ERR_CERT_HAS_EXPIRED)
        set_why(l, "TLS: certificate has expired");
    else if (err == X509_V_ERR_CERT_NOT_YET_VALID)
        set_why(l, "TLS: certificate is not yet valid");
    else if (unknown_ca(err))
        set_why(l, "TLS: certificate verify failed: %s (unknown CA)", s);
    else
        set_why(l, "TLS: certificate verify failed: %s", s);
}

/* Lower-case first letter: strerror() says "Connection refused", our lines say "connection
 * refused". */
static void why_errno(struct link *l, int e)
{
    char buf[128];

    snprintf(buf, sizeof(buf), "%s", strerror(e));
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
        buf[0] = (char)(buf[0] - 'A' + 'a');
    set_why(l, "%s", buf);
}

static bool starts(const char *s, size_t n, const char *prefix)
{
    size_t pl = strlen(prefix);

    return n >= pl && !memcmp(s, prefix, pl);
}

/* Turns LWS_CALLBACK_CLIENT_CONNECTION_ERROR's text (4.1.6 passes short internal strings, and
 * for TLS an unreadable "connect SSL err 1: error:00000001:...") into a specific reason. */
static void why_connect_error(struct link *l, struct lws *wsi, const char *in, size_t len)
{
    char cce[160];
    int fd, so_err = 0;
    socklen_t sl = sizeof(so_err);
    SSL *ssl = NULL;
    bool tls_pending;

    if (l->closing) {
        snprintf(l->why, sizeof(l->why), "closed by relay");
        return;
    }
    if (l->why[0])
        return; /* a certificate or alert reason recorded during the handshake */
    if (!in)
        len = 0;
    while (len && (((const char *)in)[len - 1] == '\0' || ((const char *)in)[len - 1] == '\n'))
        len--;
    if (len >= sizeof(cce))
        len = sizeof(cce) - 1;
    memcpy(cce, in ? in : "", len);
    cce[len] = '\0';

    if (l->tls)
        ssl = lws_get_ssl(wsi);
    if (ssl) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK && l->verify) {
            why_cert(l, v);
            return;
        }
    }
    if (starts(cce, len, "HS: ws upgrade response not 101") ||
        starts(cce, len, "HS: ws upgrade unauthorized")) {
        unsigned st = lws_http_client_http_response(wsi);
        if (st)
            set_why(l, "WebSocket upgrade refused: HTTP %u", st);
        else
            set_why(l, "WebSocket upgrade refused: %s", cce + 4);
        return;
    }
    if (starts(cce, len, "HS: ")) {
        set_why(l, "WebSocket upgrade refused: %s", cce + 4);
        return;
    }
    if (starts(cce, len, "ws protocol no match")) {
        set_why(l, "WebSocket upgrade refused: subprotocol not accepted");
        return;
    }
    if (starts(cce, len, "Timed out waiting SSL")) {
        set_why(l, "TLS: handshake timed out");
        return;
    }
    if (starts(cce, len, "connect SSL err") || starts(cce, len, "connect SYSCALL") ||
        starts(cce, len, "connect unk") || starts(cce, len, "server's cert")) {
        unsigned long e = ERR_peek_last_error();
        const char *r = e ? ERR_reason_error_string(e) : NULL;

        if (r)
            set_why(l, "TLS: handshake failed: %s", r);
        else if (starts(cce, len, "connect SYSCALL"))
            set_why(l, "TLS: handshake failed: connection closed by server");
        else
            set_why(l, "TLS: handshake failed: %s", cce);
        return;
    }
    /* "closed before established" (the POLLHUP path, see link_attempt: the socket is still
     * open and SO_ERROR unread), "Unable to connect" (lws read and so cleared SO_ERROR, or its
     * connect timer fired), "Closed before conn" */
    fd = lws_get_socket_fd(wsi);
    if (fd >= 0 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &sl) && so_err) {
        why_errno(l, so_err);
        return;
    }
    tls_pending = ssl && !SSL_is_init_finished(ssl);
    if (relay_now_ms() - l->started_ms + 500 >= TIMEOUT_SECS * 1000u) {
        set_why(l, "%s",
                tls_pending ? "TLS: handshake timed out"
                : l->tcp_up ? "WebSocket: upgrade timed out"
                            : "connection timed out");
        return;
    }
    if (!l->tcp_up && l->probe_fd >= 0) {
        /* a quick failure with no ICMP error queued was a TCP reset */
        so_err = probe_errno(l);
        why_errno(l, so_err ? so_err : ECONNREFUSED);
        return;
    }
    if (tls_pending) {
        set_why(l, "TLS: handshake failed: connection closed by server");
        return;
    }
    if (l->ws && l->tcp_up) {
        if (starts(cce, len, "read failed") || starts(cce, len, "Peer hung up") ||
            starts(cce, len, "closed before") || starts(cce, len, "Closed before"))
            set_why(l, "WebSocket upgrade failed: connection closed by server");
        else
            set_why(l, "WebSocket upgrade failed: %s", cce[0] ? cce : "unknown");
        return;
    }
    set_why(l, "connection failed (%s)", cce[0] ? cce : "unknown");
}

/* ---------------------------------------------------------------------------------------- */
/* TLS: per-configuration client vhosts, minimum version, verification details, alerts       */
/* ---------------------------------------------------------------------------------------- */

static struct link *link_by_ssl(struct relay_transport *t, const SSL *ssl)
{
    struct link *l = SSL_get_app_data(ssl); /* set on our own (mem_tls) SSLs only */

    if (l)
        return l;
    for (l = t->links; l; l = l->next)
        if (l->wsi && l->tls && !l->mem_tls && lws_get_ssl(l->wsi) == ssl)
            return l;
    return NULL;
}

/* OpenSSL 3.0 names TLS 1.3's newer alerts "unknown". */
static const char *alert_text(int ret)
{
    switch (ret & 0xff) {
    case 109:
        return "missing extension";
    case 115:
        return "unknown PSK identity";
    case 116:
        return "certificate required";
    case 120:
        return "no application protocol";
    default:
        return SSL_alert_desc_string_long(ret);
    }
}

/* SSL_CTX-wide info callback: notes fatal alerts, e.g. the server refusing our certificate
 * (with TLS 1.3 that alert comes after our side finished the handshake). lws 4.1.6's own
 * ssl_info_event_mask hook is unusable for clients: it reads the client SSL_CTX's ex_data as a
 * lws_context, but lws stores something else there. */
static void tls_info_cb(const SSL *ssl, int where, int ret)
{
    struct relay_transport *t;
    struct link *l;

    if (!(where & SSL_CB_ALERT) || (ret >> 8) != SSL3_AL_FATAL)
        return;
    t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!t || !(l = link_by_ssl(t, ssl)))
        return;
    if (where & SSL_CB_READ)
        set_why(l, "TLS: server sent alert: %s", alert_text(ret));
    else
        set_why(l, "TLS: handshake failed: we sent alert: %s", alert_text(ret));
}

static bool ip_literal(const char *s)
{
    unsigned char ip[16];

    return inet_pton(AF_INET, s, ip) == 1 || inet_pton(AF_INET6, s, ip) == 1;
}

/* One step of certificate verification (OpenSSL calls it per certificate, leaf last). Returns
 * true to go on. lws 4.1.6 cuts the name it asks OpenSSL to check at the first ':' and at 127
 * bytes (an IPv6 literal would be checked against "", that is not at all), so the leaf is also
 * checked here against the whole name. */
static bool verify_step(struct link *l, int preverify_ok, X509_STORE_CTX *xs)
{
    X509 *leaf;
    int ok;

    if (!l->verify) {
        X509_STORE_CTX_set_error(xs, X509_V_OK); /* tls.verify = false */
        return true;
    }
    if (!preverify_ok) {
        why_cert(l, X509_STORE_CTX_get_error(xs));
        return false;
    }
    leaf = X509_STORE_CTX_get_current_cert(xs);
    if (X509_STORE_CTX_get_error_depth(xs) != 0 || !leaf)
        return true;
    if (ip_literal(l->server_name))
        ok = X509_check_ip_asc(leaf, l->server_name, 0);
    else
        ok = X509_check_host(leaf, l->server_name, strlen(l->server_name),
                             X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL);
    if (ok == 1)
        return true;
    X509_STORE_CTX_set_error(xs, X509_V_ERR_HOSTNAME_MISMATCH);
    why_cert(l, X509_V_ERR_HOSTNAME_MISMATCH);
    return false;
}

/* SSL_set_verify() callback of our own SSLs (mem_tls). */
static int mem_verify_cb(int preverify_ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct link *l = ssl ? SSL_get_app_data(ssl) : NULL;

    return l ? verify_step(l, preverify_ok, xs) : 0;
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static void tls_vhost_free(struct tls_vhost *v)
{
    free(v->ca_file);
    free(v->cert_file);
    free(v->key_file);
    free(v);
}

/* The client vhost for this TLS file set, created on first use (kept until the transport is
 * freed: one per distinct configuration). NULL with err set if lws could not load the files. */
static struct tls_vhost *client_vhost(struct relay_transport *t, const char *ca, const char *cert,
                                      const char *key, char *err, size_t errlen)
{
    struct lws_context_creation_info info;
    const char *unreadable = NULL;
    struct tls_vhost *v;

    for (v = t->vhosts; v; v = v->next)
        if (same(v->ca_file, ca) && same(v->cert_file, cert) && same(v->key_file, key))
            return v;

    /* lws only logs a CA file it cannot read (and then verifies against nothing) */
    if (ca && access(ca, R_OK))
        unreadable = ca;
    else if (cert && access(cert, R_OK))
        unreadable = cert;
    else if (key && access(key, R_OK))
        unreadable = key;
    if (unreadable) {
        snprintf(err, errlen, "TLS: cannot read %s: %s", unreadable, strerror(errno));
        return NULL;
    }
    v = calloc(1, sizeof(*v));
    if (!v || (ca && !(v->ca_file = strdup(ca))) || (cert && !(v->cert_file = strdup(cert))) ||
        (key && !(v->key_file = strdup(key)))) {
        if (v)
            tls_vhost_free(v);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memset(&info, 0, sizeof(info));
    snprintf(v->name, sizeof(v->name), "relay-client-%u", t->vhost_seq++);
    info.vhost_name = v->name;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = link_protocols;
    /* lws 4.1.6 only builds a vhost's client SSL_CTX when the vhost's own options ask for the
     * global SSL init too. A CA file replaces the system store rather than adding to it. */
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (ca)
        info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    info.client_ssl_ca_filepath = ca;
    info.client_ssl_cert_filepath = cert;
    info.client_ssl_private_key_filepath = key;
    info.timeout_secs = TIMEOUT_SECS;
    info.connect_timeout_secs = CONNECT_TIMEOUT_SECS;
    info.gid = -1;
    info.uid = -1;
    t->creating = v; /* LOAD_EXTRA_CLIENT_VERIFY_CERTS fills v->sctx */
    v->vh = lws_create_vhost(t->ctx, &info);
    t->creating = NULL;
    if (!v->vh || !v->sctx) {
        unsigned long e = ERR_peek_last_error();
        const char *r = e ? ERR_reason_error_string(e) : NULL;

        if (cert || key)
            snprintf(err, errlen, "TLS: cannot use client certificate %s and key %s%s%s",
                     cert ? cert : "(none)", key ? key : "(none)", r ? ": " : "", r ? r : "");
        else
            snprintf(err, errlen, "TLS: cannot set up a client context%s%s", r ? ": " : "",
                     r ? r : "");
        ERR_clear_error();
        tls_vhost_free(v); /* a vhost that failed was destroyed by lws */
        return NULL;
    }
    v->next = t->vhosts;
    t->vhosts = v;
    return v;
}

/* mem_tls: starts the handshake on a connected raw link. false with l->why set on failure. */
static bool mem_tls_start(struct link *l)
{
    BIO *rb, *wb;

    l->ssl = SSL_new(l->sctx);
    rb = BIO_new(BIO_s_mem());
    wb = BIO_new(BIO_s_mem());
    if (!l->ssl || !rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        set_why(l, "TLS: out of memory");
        return false;
    }
    SSL_set_bio(l->ssl, rb, wb);
    SSL_set_app_data(l->ssl, l);
    SSL_set_connect_state(l->ssl);
    SSL_set_verify(l->ssl, SSL_VERIFY_PEER, mem_verify_cb);
    if (l->verify) {
        X509_VERIFY_PARAM *pm = SSL_get0_param(l->ssl);

        X509_VERIFY_PARAM_set_hostflags(pm, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (!(ip_literal(l->server_name) ? X509_VERIFY_PARAM_set1_ip_asc(pm, l->server_name)
                                         : X509_VERIFY_PARAM_set1_host(pm, l->server_name, 0))) {
            set_why(l, "TLS: cannot check the certificate against \"%s\"", l->server_name);
            return false;
        }
    }
    /* RFC 6066: no IP literals in SNI */
    if (!ip_literal(l->server_name) && !SSL_set_tlsext_host_name(l->ssl, l->server_name)) {
        set_why(l, "TLS: invalid server name \"%s\"", l->server_name);
        return false;
    }
    return true;
}

/* mem_tls: the reason of a failed SSL call (after a verify or alert reason, if any). */
static void mem_tls_why(struct link *l, int ret)
{
    int e = SSL_get_error(l->ssl, ret);
    unsigned long q = ERR_peek_last_error();
    const char *r = q ? ERR_reason_error_string(q) : NULL;
    long v = SSL_get_verify_result(l->ssl);

    if (l->verify && v != X509_V_OK)
        why_cert(l, v);
    if (e == SSL_ERROR_ZERO_RETURN)
        set_why(l, l->hs_done ? "connection closed by server (TLS close_notify)"
                              : "TLS: handshake failed: closed by server");
    else if (r)
        set_why(l, "TLS: %s%s", l->hs_done ? "" : "handshake failed: ", r);
    else
        set_why(l, "TLS: %serror %d", l->hs_done ? "" : "handshake failed: ", e);
    ERR_clear_error();
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
        set_why(l, "cannot resolve \"%s\": %s", l->host,
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
        set_why(l, "cannot resolve \"%s\": no IPv4 or IPv6 address", l->host);
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
            link_gone(l, "closed by relay");
            return;
        }
        if (l->next_addr >= l->n_addr) {
            link_gone(l, "connection failed");
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
            link_schedule(l);
            return;
        }
        if (l->retry_pending) { /* this address failed inside the call: the next one */
            l->retry_pending = false;
            continue;
        }
        if (wsi) {
            l->wsi = wsi;
            if (l->open_pending) {
                link_schedule(l); /* connected inside the call: tell the core from the loop */
            } else if (!l->tcp_up && l->ws) {
                /* the h1 role of 4.1.6 ignores POLLOUT while rx is flow-controlled, so the
                 * gate below cannot be used: keep the socket to read its ICMP errors */
                probe_open(l, lws_get_socket_fd(wsi));
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
            why_errno(l, saved_errno);
        else
            set_why(l, "connection failed");
    }
}

/* A connect attempt failed before TCP was up: the next address, or the end. */
static void link_attempt_failed(struct link *l, struct lws *wsi)
{
    probe_close(l);
    if (!l->tcp_up && !l->closing && l->next_addr < l->n_addr && !l->t->destroying) {
        lws_set_opaque_user_data(wsi, NULL);
        l->wsi = NULL;
        l->retry_pending = true;
        if (!l->in_connect)
            link_schedule(l);
        return;
    }
    link_gone(l, NULL);
}

static int io_connect(void *ctx, struct relay_conn *c, const struct relay_endpoint *ep)
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
        v = client_vhost(t, tc->ca_file, tc->cert_file, tc->key_file, err, sizeof(err));
    if (!v) {
        l->state = LINK_GONE;
        set_why(l, "%s", err);
        link_schedule(l);
        return 0;
    }
    l->sctx = v->sctx;
    l->vh = l->mem_tls ? t->vh_default->vh : v->vh; /* mem_tls: a plain raw link */
    tlog(t, RELAY_LOG_DEBUG, ep->who, "connecting to %s", u->text ? u->text : u->host);
    if (!link_resolve(l)) {
        l->state = LINK_GONE;
        link_schedule(l);
        return 0;
    }
    link_attempt(l);
    return 0;
}

static void io_want_write(void *ctx, struct relay_conn *c)
{
    struct link *l = relay_conn_link(c);

    (void)ctx;
    if (l && l->wsi && l->state == LINK_OPEN && !l->closing)
        lws_callback_on_writable(l->wsi);
}

static bool mem_tls_has_rx(const struct link *l)
{
    return l->mem_tls && l->ssl && l->hs_done &&
           (SSL_pending(l->ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(l->ssl)) > 0);
}

static void io_pause_rx(void *ctx, struct relay_conn *c, bool pause)
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
    if (!pause && mem_tls_has_rx(l))
        link_schedule(l);
}

/* Closes the wsi from outside its callbacks (lws closes it on its next service). */
static void link_kill(struct link *l)
{
    if (l->wsi)
        lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_REASON_BASE, LWS_TO_KILL_ASYNC);
}

static void io_close(void *ctx, struct relay_conn *c)
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
        link_kill(l);
        link_gone(l, "closed by relay");
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
    link_kill(l);
}

/* The core's wake-up requests, earliest first; one lws timer is armed for wakes[0]. */
static void wake_fire(lws_sorted_usec_list_t *sul);

static void wake_arm(struct relay_transport *t)
{
    uint64_t now = relay_now_ms(), at;

    if (!t->n_wakes) {
        lws_sul_cancel(&t->sul_wake);
        return;
    }
    at = t->wakes[0];
    lws_sul_schedule(t->ctx, 0, &t->sul_wake, wake_fire,
                     at > now ? (lws_usec_t)(at - now) * LWS_US_PER_MS : 0);
}

static void wake_fire(lws_sorted_usec_list_t *sul)
{
    struct relay_transport *t = lws_container_of(sul, struct relay_transport, sul_wake);
    uint64_t now = relay_now_ms();
    unsigned n = 0;

    while (n < t->n_wakes && t->wakes[n] <= now)
        n++;
    t->n_wakes -= n;
    memmove(t->wakes, t->wakes + n, t->n_wakes * sizeof(t->wakes[0]));
    if (t->core)
        relay_core_tick(t->core, now); /* may ask again: io_wake_at() re-arms */
    wake_arm(t);
}

/* Every request is honoured: a tick comes at or soon after each at_ms. With the table full,
 * the latest entry is moved earlier (a tick too early is harmless: the core asks again). */
static void io_wake_at(void *ctx, uint64_t at_ms)
{
    struct relay_transport *t = ctx;
    unsigned i;

    for (i = 0; i < t->n_wakes && t->wakes[i] < at_ms; i++)
        ;
    if (i < t->n_wakes && t->wakes[i] == at_ms)
        return;
    if (t->n_wakes == MAX_WAKES) {
        if (i == MAX_WAKES)
            return; /* later than all: the tick at wakes[last] comes first */
        t->n_wakes--;
    }
    memmove(t->wakes + i + 1, t->wakes + i, (t->n_wakes - i) * sizeof(t->wakes[0]));
    t->wakes[i] = at_ms;
    t->n_wakes++;
    if (i == 0)
        wake_arm(t);
}

/* ---------------------------------------------------------------------------------------- */
/* The data path                                                                             */
/* ---------------------------------------------------------------------------------------- */

/* Hands plaintext to the core. -1: close now; 0: go on. <0 from the core: write its last
 * bytes (a DISCONNECT) if it has some, then close. */
static int deliver_rx(struct link *l, struct lws *wsi, const void *in, size_t len)
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

static bool rx_allowed(const struct link *l, struct lws *wsi)
{
    return wsi_link(wsi) == l && l->state == LINK_OPEN && !l->closing;
}

/* mem_tls: decrypts what the rbio holds and hands it over, until it is empty or the core
 * pauses or closes the link. -1: close. */
static int mem_tls_drain(struct link *l, struct lws *wsi)
{
    uint8_t buf[TX_CAP];
    int n;

    while (rx_allowed(l, wsi) && !l->paused) {
        ERR_clear_error(); /* SSL_get_error reads the thread's queue: no stale entries */
        n = SSL_read(l->ssl, buf, (int)sizeof(buf));
        if (n <= 0) {
            int e = SSL_get_error(l->ssl, n);

            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                break;
            mem_tls_why(l, n);
            return -1;
        }
        if (deliver_rx(l, wsi, buf, (size_t)n) < 0)
            return -1;
    }
    return 0;
}

/* Asks for WRITEABLE when the core or TLS has bytes to send. */
static void want_writeable(struct link *l, struct lws *wsi)
{
    if (wsi_link(wsi) != l || l->state == LINK_GONE || (l->closing && !l->flush_close))
        return;
    if ((l->mem_tls && l->ssl && BIO_ctrl_pending(SSL_get_wbio(l->ssl))) ||
        (l->state == LINK_OPEN && !l->open_pending && relay_core_wants_write(l->conn)) ||
        l->flush_close)
        lws_callback_on_writable(wsi);
}

/* mem_tls RX: ciphertext in; handshake, then plaintext to the core. */
static int mem_tls_rx(struct link *l, struct lws *wsi, const void *in, size_t len)
{
    int r;

    if (!l->ssl)
        return -1;
    if (len && BIO_write(SSL_get_rbio(l->ssl), in, (int)len) != (int)len) {
        set_why(l, "TLS: out of memory");
        return -1;
    }
    if (!l->hs_done) {
        ERR_clear_error();
        r = SSL_do_handshake(l->ssl);
        if (r != 1) {
            int e = SSL_get_error(l->ssl, r);

            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                mem_tls_why(l, r);
                return -1;
            }
            want_writeable(l, wsi); /* our next handshake flight */
            return 0;
        }
        l->hs_done = true;
        lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
        link_opened(l, wsi); /* on_open from here: this is an lws RX callback */
        if (wsi_link(wsi) != l)
            return 0;
    }
    r = mem_tls_drain(l, wsi);
    want_writeable(l, wsi);
    return r;
}

static int link_rx(struct link *l, struct lws *wsi, const void *in, size_t len)
{
    if (l->mem_tls)
        return mem_tls_rx(l, wsi, in, len);
    if (!rx_allowed(l, wsi))
        return 0; /* closing: the rest is discarded */
    if (l->open_pending) {
        link_deliver(&l->sul);
        if (!rx_allowed(l, wsi))
            return 0;
    }
    if (deliver_rx(l, wsi, in, len) < 0)
        return -1;
    want_writeable(l, wsi);
    return 0;
}

/* mem_tls WRITEABLE: pending TLS records first; otherwise the core's next bytes, encrypted.
 * Still exactly one lws_write(). */
static int mem_tls_writeable(struct link *l, struct lws *wsi)
{
    BIO *wb = SSL_get_wbio(l->ssl);
    bool last = false;
    size_t n = 0;
    int r, got;

    if (!BIO_ctrl_pending(wb) && l->hs_done && l->state == LINK_OPEN && !l->open_pending) {
        r = relay_core_on_writeable(l->conn, l->ptx, TX_CAP, &n, relay_now_ms());
        if (n > TX_CAP)
            return -1;
        ERR_clear_error();
        if (n && SSL_write(l->ssl, l->ptx, (int)n) != (int)n) {
            mem_tls_why(l, -1);
            return -1;
        }
        if (r < 0 || l->flush_close) {
            SSL_shutdown(l->ssl); /* close_notify goes out with the last bytes */
            last = true;
        }
    }
    n = BIO_ctrl_pending(wb);
    if (n > TX_ROOM)
        n = TX_ROOM;
    if (n) {
        got = BIO_read(wb, l->tx + LWS_PRE, (int)n);
        if (got <= 0 || lws_write(wsi, l->tx + LWS_PRE, (size_t)got, LWS_WRITE_RAW) < got)
            return -1;
    }
    if (last) {
        l->closing = true;
        return -1;
    }
    want_writeable(l, wsi);
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
        return l->ssl ? mem_tls_writeable(l, wsi) : 0;
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
    want_writeable(l, wsi);
    return 0;
}

/* The raw TCP connection of a link is up: mqtt:// is open; mqtts:// starts TLS. */
static int link_connected(struct link *l, struct lws *wsi)
{
    if (!l->mem_tls) {
        link_opened(l, wsi);
        return 0;
    }
    if (!mem_tls_start(l))
        return -1;
    /* lws has no timeout on an established raw link: bound the handshake */
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE + 1, TIMEOUT_SECS);
    return mem_tls_rx(l, wsi, NULL, 0); /* ClientHello into the wbio, WRITEABLE sends it */
}

/* A TLS link the server closed: lws may report the hang-up before reading the last bytes,
 * and with TLS 1.3 those can hold the reason (e.g. the alert "certificate required", sent after
 * our side finished the handshake). Read what the socket still has and let OpenSSL parse it:
 * the info callback records the alert as the reason. */
static void mem_tls_last_words(struct link *l, struct lws *wsi)
{
    uint8_t buf[4096];
    int fd = lws_get_socket_fd(wsi);

    if (!l->mem_tls || !l->ssl || l->why[0] || fd < 0)
        return;
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n <= 0)
            break;
        if (BIO_write(SSL_get_rbio(l->ssl), buf, (int)n) != (int)n)
            break;
    }
    ERR_clear_error();
    while (!l->why[0] && SSL_read(l->ssl, buf, (int)sizeof(buf)) > 0)
        ; /* application data past the close is of no use now; stop at the alert */
    ERR_clear_error(); /* what this dying link left must not fail the next one's I/O */
}

/* Why a link closed, when nothing more specific was recorded. */
static const char *close_why(const struct link *l)
{
    bool late = relay_now_ms() - l->started_ms + 500 >= TIMEOUT_SECS * 1000u;

    if (l->state == LINK_OPEN)
        return "connection closed by server";
    if (l->mem_tls && l->ssl)
        return late ? "TLS: handshake timed out"
                    : "TLS: handshake failed: connection closed by server";
    if (l->ws && l->tcp_up)
        return late ? "WebSocket: upgrade timed out"
                    : "WebSocket upgrade failed: connection closed";
    return late ? "connection timed out" : "connection failed";
}

static int cb_link(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct link *l;

    switch (reason) {
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS: {
        /* during lws_create_vhost(): user is the vhost's client SSL_CTX (lws shares one between
         * vhosts with the same files); wsi is a stand-in that only knows the context */
        struct relay_transport *t = lws_context_user(lws_get_context(wsi));
        SSL_CTX *sctx = user;

        SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION);
        SSL_CTX_set_app_data(sctx, t);
        SSL_CTX_set_info_callback(sctx, tls_info_cb);
        if (t && t->creating)
            t->creating->sctx = sctx;
        return 0;
    }
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        /* wss only. user: X509_STORE_CTX *, len: preverify_ok; 0 keeps OpenSSL's verdict,
         * nonzero refuses (4.1.6 calls the first vhost's protocols[0], that is us) */
        l = wsi_link(wsi);
        if (!l)
            return 0;
        return verify_step(l, (int)len, user) ? 0 : 1;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        l = wsi_link(wsi);
        if (l) {
            why_connect_error(l, wsi, in, len);
            link_attempt_failed(l, wsi);
        }
        return 0;

    case LWS_CALLBACK_WSI_CREATE:
        /* 4.1.6 calls this when the TCP connect has completed */
        l = wsi_link(wsi);
        if (l && !l->tcp_up) {
            l->tcp_up = true;
            probe_close(l);
            if (l->rx_gated) {
                l->rx_gated = false;
                lws_rx_flow_control(wsi, 1);
            }
        }
        return 0;

    case LWS_CALLBACK_RAW_CONNECTED:
        l = wsi_link(wsi);
        return l ? link_connected(l, wsi) : -1; /* no link: closed by the core meanwhile */

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        l = wsi_link(wsi);
        if (!l)
            return -1;
        link_opened(l, wsi);
        return 0;

    case LWS_CALLBACK_RAW_RX:
    case LWS_CALLBACK_CLIENT_RECEIVE:
        l = wsi_link(wsi);
        if (!l)
            return -1;
        if (len >= RX_BUF / 2)
            l->t->round_full = true;
        return link_rx(l, wsi, in, len);

    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        l = wsi_link(wsi);
        return l ? link_writeable(l, wsi) : -1;

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        l = wsi_link(wsi);
        if (l) {
            const uint8_t *p = in;
            unsigned code = len >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 1005u;
            int rl = len > 2 ? (int)(len - 2 > 100 ? 100 : len - 2) : 0;

            if (rl)
                set_why(l, "WebSocket closed by server (%u: %.*s)", code, rl, (const char *)p + 2);
            else
                set_why(l, "WebSocket closed by server (%u)", code);
        }
        return 0;

    case LWS_CALLBACK_RAW_CLOSE:
    case LWS_CALLBACK_CLIENT_CLOSED:
        l = wsi_link(wsi);
        if (l) {
            mem_tls_last_words(l, wsi);
            link_gone(l, close_why(l));
        }
        return 0;

    case LWS_CALLBACK_WSI_DESTROY:
        /* the last word on any wsi: a link still attached has not been reported yet */
        l = wsi_link(wsi);
        if (l)
            link_gone(l, close_why(l));
        return 0;

    default:
        return 0;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Metrics over HTTP                                                                         */
/* ---------------------------------------------------------------------------------------- */

static int http_done(struct lws *wsi)
{
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int http_request(struct lws *wsi, struct http_pss *pss, const char *path)
{
    struct relay_transport *t = lws_context_user(lws_get_context(wsi));
    uint8_t hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
    const char *ctype = NULL;
    char *uri = NULL;
    char *body = NULL;
    size_t blen = 0;
    int ulen = 0, status;

    if (lws_http_get_uri_and_method(wsi, &uri, &ulen) != LWSHUMETH_GET) {
        if (lws_return_http_status(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, NULL))
            return -1;
        return http_done(wsi);
    }
    if (strcmp(path, "/metrics") && strcmp(path, "/healthz")) {
        if (lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL))
            return -1;
        return http_done(wsi);
    }
    if (!t->core) { /* before relay_transport_set_core() */
        if (lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, NULL))
            return -1;
        return http_done(wsi);
    }
    status = relay_core_http(t->core, path, relay_now_ms(), &body, &blen, &ctype);
    if (status < 100 || status > 599) {
        free(body);
        if (lws_return_http_status(wsi, HTTP_STATUS_INTERNAL_SERVER_ERROR, NULL))
            return -1;
        return http_done(wsi);
    }
    if (!body)
        blen = 0;
    if (lws_add_http_common_headers(wsi, (unsigned)status,
                                    ctype ? ctype : "text/plain; charset=utf-8",
                                    (lws_filepos_t)blen, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end)) {
        free(body);
        return -1;
    }
    pss->body = body;
    pss->len = blen;
    pss->off = 0;
    lws_callback_on_writable(wsi);
    return 0;
}

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct http_pss *pss = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        if (!pss)
            return -1;
        return http_request(wsi, pss, in ? (const char *)in : "");

    case LWS_CALLBACK_HTTP_WRITEABLE: {
        uint8_t buf[LWS_PRE + TX_CAP];
        size_t n;
        bool last;

        if (!pss || pss->off > pss->len || (!pss->body && pss->len))
            return 0;
        n = pss->len - pss->off;
        if (n > TX_CAP)
            n = TX_CAP;
        last = pss->off + n == pss->len;
        if (n)
            memcpy(buf + LWS_PRE, pss->body + pss->off, n);
        if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)n)
            return -1;
        pss->off += n;
        if (!last) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        free(pss->body);
        pss->body = NULL;
        pss->len = pss->off = 0;
        return http_done(wsi);
    }
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss) {
            free(pss->body);
            pss->body = NULL;
            pss->len = pss->off = 0;
        }
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* Binds a throw-away socket to host:port to learn why lws could not (lws 4.1.6 only logs
 * it). Returns 0 or -errno. */
static int probe_bind(const char *host, uint16_t port, char *numeric, size_t numlen, int *gai)
{
    struct addrinfo hints, *res = NULL;
    char ps[8];
    int r, fd, one = 1, e = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(ps, sizeof(ps), "%u", port);
    if (!host[0] || !strcmp(host, "*")) { /* all interfaces */
        host = NULL;
        hints.ai_family = AF_INET;
    }
    r = getaddrinfo(host, ps, &hints, &res);
    *gai = r;
    if (r)
        return r == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
    if (numeric && getnameinfo(res->ai_addr, res->ai_addrlen, numeric, (socklen_t)numlen, NULL, 0,
                               NI_NUMERICHOST)) {
        freeaddrinfo(res);
        return -EADDRNOTAVAIL;
    }
    fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0) {
        e = -errno;
    } else {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, res->ai_addr, res->ai_addrlen))
            e = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    return e;
}

static int http_listener(struct relay_transport *t, const struct relay_transport_opts *o, char *err,
                         size_t errlen)
{
    struct lws_context_creation_info info;
    char addr[INET6_ADDRSTRLEN + 8];
    int r, gai = 0;

    /* lws binds to an interface name or a numeric address: resolve "localhost" and friends,
     * and learn the errno lws would only log */
    r = probe_bind(o->metrics_host, o->metrics_port, addr, sizeof(addr), &gai);
    if (r && gai) {
        snprintf(err, errlen, "metrics: cannot resolve \"%s\": %s", o->metrics_host,
                 gai == EAI_SYSTEM ? strerror(-r) : gai_strerror(gai));
        return r;
    }
    if (r) {
        snprintf(err, errlen, "metrics: cannot listen on %s:%u: %s", o->metrics_host,
                 o->metrics_port, strerror(-r));
        return r;
    }
    memset(&info, 0, sizeof(info));
    info.vhost_name = "relay-metrics";
    info.port = o->metrics_port;
    info.iface = (!strcmp(addr, "0.0.0.0") || !strcmp(addr, "::")) ? NULL : addr;
    info.protocols = http_protocols;
    info.options = LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    if (strchr(addr, ':') == NULL)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.timeout_secs = TIMEOUT_SECS;
    info.keepalive_timeout = 30;
    info.gid = -1;
    info.uid = -1;
    t->vh_http = lws_create_vhost(t->ctx, &info);
    if (!t->vh_http) {
        snprintf(err, errlen, "metrics: cannot listen on %s:%u", o->metrics_host, o->metrics_port);
        return -EADDRNOTAVAIL;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Public API                                                                                */
/* ---------------------------------------------------------------------------------------- */

int relay_transport_new(const struct relay_transport_opts *o, struct relay_transport **out,
                        char *err, size_t errlen)
{
    struct lws_context_creation_info info;
    struct relay_transport *t;
    char verr[WHY_LEN];
    int r;

    *out = NULL;
    if (errlen)
        err[0] = '\0';
    t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    t->core = o->core;
    t->log_level = o->log_level;
    relay_batch_init(&t->batch, o->batch_wait_us);
    t->sched_fd = -1;
    t->io.ctx = t;
    t->io.connect = io_connect;
    t->io.want_write = io_want_write;
    t->io.pause_rx = io_pause_rx;
    t->io.close = io_close;
    t->io.wake_at = io_wake_at;

    lws_set_log_level(lws_log_mask(o->log_level), lws_log_emit);

    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.user = t;
    info.timeout_secs = TIMEOUT_SECS;
    info.gid = -1;
    info.uid = -1;
    /* the buffer lws reads sockets into: 4 KiB by default, i.e. a read (and a callback) per
     * ~60 small PUBLISHes; 64 KiB takes a busy stream in far fewer */
    info.pt_serv_buf_size = RX_BUF;
    t->ctx = lws_create_context(&info);
    if (!t->ctx) {
        snprintf(err, errlen, "libwebsockets: cannot create the context");
        free(t);
        return -ENOMEM;
    }
    /* read batching's contention signal; without it (no such file) the relay never waits */
    t->sched_fd = open("/proc/self/schedstat", O_RDONLY | O_CLOEXEC);
    /* the first vhost: plain links and TLS with the system CA store. It must exist before
     * the HTTP one: lws sends certificate verification to the first vhost's protocols[0]. */
    t->vh_default = client_vhost(t, NULL, NULL, NULL, verr, sizeof(verr));
    if (!t->vh_default) {
        snprintf(err, errlen, "libwebsockets: cannot create the client vhost: %s", verr);
        relay_transport_free(t);
        return -ENOMEM;
    }
    if (o->metrics_host) {
        r = http_listener(t, o, err, errlen);
        if (r) {
            relay_transport_free(t);
            return r;
        }
    }
    *out = t;
    return 0;
}

void relay_transport_free(struct relay_transport *t)
{
    if (!t)
        return;
    t->destroying = true;
    if (t->ctx) {
        lws_sul_cancel(&t->sul_wake);
        lws_sul_cancel(&t->sul_service);
        for (struct link *l = t->links; l; l = l->next)
            lws_sul_cancel(&l->sul);
        lws_context_destroy(t->ctx);
    }
    while (t->links)
        link_free(t->links);
    while (t->vhosts) {
        struct tls_vhost *v = t->vhosts;

        t->vhosts = v->next;
        tls_vhost_free(v);
    }
    if (t->sched_fd >= 0)
        close(t->sched_fd);
    free(t);
}

void relay_transport_set_core(struct relay_transport *t, void *core)
{
    t->core = core;
}

const struct relay_io *relay_transport_io(struct relay_transport *t)
{
    return &t->io;
}

static void service_timeout(lws_sorted_usec_list_t *sul)
{
    (void)sul; /* only ends the poll() wait */
}

/* Read batching (core/batch.h): the process's run and run-queue times, every
 * RELAY_BATCH_SAMPLE_MS while rounds are busy enough to wait at all. */
static void batch_sample(struct relay_transport *t)
{
    uint64_t now = relay_now_ms();
    unsigned long long r, w;
    char buf[128];
    ssize_t n;

    if (now < t->sched_next_ms)
        return;
    t->sched_next_ms = now + RELAY_BATCH_SAMPLE_MS;
    n = t->sched_fd < 0 ? -1 : pread(t->sched_fd, buf, sizeof(buf) - 1, 0);
    if (n > 0)
        buf[n] = '\0';
    if (n <= 0 || sscanf(buf, "%llu %llu", &r, &w) != 2)
        relay_batch_sample(&t->batch, false, 0, 0);
    else
        relay_batch_sample(&t->batch, true, r, w);
}

static int batch_wait(struct relay_transport *t)
{
    uint32_t us;
    struct timespec ts;

    if (!t->core || !relay_batch_may_wait(&t->batch, t->round_packets, t->round_full))
        return 0;
    batch_sample(t);
    us = relay_batch_wait_us(&t->batch, t->round_packets, t->round_full);
    if (!us)
        return 0;
    /* the writes this round asked for, and whatever else is ready, without waiting */
    if (lws_service(t->ctx, -1) < 0)
        return -EIO;
    ts.tv_sec = 0;
    ts.tv_nsec = (long)us * 1000L;
    nanosleep(&ts, NULL); /* a signal ends it early: fine */
    relay_core_batch_waited(t->core, us);
    return 0;
}

int relay_transport_service(struct relay_transport *t, int timeout_ms)
{
    /* lws 4.1.6 ignores a positive timeout (it waits for the next event or timer): bound
     * the wait with a timer of our own; 0 is lws' "don't wait" (-1); <0 waits for an event. */
    if (timeout_ms > 0)
        lws_sul_schedule(t->ctx, 0, &t->sul_service, service_timeout,
                         (lws_usec_t)timeout_ms * LWS_US_PER_MS);
    t->round_packets = 0;
    t->round_full = false;
    if (lws_service(t->ctx, timeout_ms == 0 ? -1 : 0) < 0)
        return -EIO;
    return batch_wait(t);
}

void relay_transport_set_batch_wait(struct relay_transport *t, uint32_t us)
{
    t->batch.max_us = us;
}

void relay_transport_cancel(struct relay_transport *t)
{
    lws_cancel_service(t->ctx);
}
