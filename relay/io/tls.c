/*
 * tls.c: TLS for the links. lws loads the CA, certificate and key (one client vhost per
 * distinct set) and runs TLS for wss://. For mqtts:// it cannot: 4.1.6 starts TLS on a method
 * "RAW" client before the socket exists (connect.c calls lws_client_create_tls() with fd -1:
 * "tls start fail"), so a mqtts:// link is a plain lws raw link on which this file runs OpenSSL
 * itself through memory BIOs, with an SSL made from the same vhost's SSL_CTX (same files, same
 * TLS 1.2 minimum). Verification checks the whole server name (lws cuts it), and alerts and
 * verification results become the link's reason when it fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "io/internal.h"

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
        io_why_set(l, "TLS: server sent alert: %s", alert_text(ret));
    else
        io_why_set(l, "TLS: handshake failed: we sent alert: %s", alert_text(ret));
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
bool io_tls_verify(struct link *l, int preverify_ok, X509_STORE_CTX *xs)
{
    X509 *leaf;
    int ok;

    if (!l->verify) {
        X509_STORE_CTX_set_error(xs, X509_V_OK); /* tls.verify = false */
        return true;
    }
    if (!preverify_ok) {
        io_why_cert(l, X509_STORE_CTX_get_error(xs));
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
    io_why_cert(l, X509_V_ERR_HOSTNAME_MISMATCH);
    return false;
}

/* SSL_set_verify() callback of our own SSLs (mem_tls). */
static int mem_verify_cb(int preverify_ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct link *l = ssl ? SSL_get_app_data(ssl) : NULL;

    return l ? io_tls_verify(l, preverify_ok, xs) : 0;
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

void io_tls_vhost_free(struct tls_vhost *v)
{
    free(v->ca_file);
    free(v->cert_file);
    free(v->key_file);
    free(v);
}

/* The client vhost for this TLS file set, created on first use (kept until the transport is
 * freed: one per distinct configuration). NULL with err set if lws could not load the files. */
struct tls_vhost *io_tls_vhost(struct relay_transport *t, const char *ca, const char *cert,
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
            io_tls_vhost_free(v);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memset(&info, 0, sizeof(info));
    snprintf(v->name, sizeof(v->name), "relay-client-%u", t->vhost_seq++);
    info.vhost_name = v->name;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = io_link_protocols;
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
        io_tls_vhost_free(v); /* a vhost that failed was destroyed by lws */
        return NULL;
    }
    v->next = t->vhosts;
    t->vhosts = v;
    return v;
}

/* mem_tls: starts the handshake on a connected raw link. false with l->why set on failure. */
bool io_tls_start(struct link *l)
{
    BIO *rb, *wb;

    l->ssl = SSL_new(l->sctx);
    rb = BIO_new(BIO_s_mem());
    wb = BIO_new(BIO_s_mem());
    if (!l->ssl || !rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        io_why_set(l, "TLS: out of memory");
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
            io_why_set(l, "TLS: cannot check the certificate against \"%s\"", l->server_name);
            return false;
        }
    }
    /* RFC 6066: no IP literals in SNI */
    if (!ip_literal(l->server_name) && !SSL_set_tlsext_host_name(l->ssl, l->server_name)) {
        io_why_set(l, "TLS: invalid server name \"%s\"", l->server_name);
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
        io_why_cert(l, v);
    if (e == SSL_ERROR_ZERO_RETURN)
        io_why_set(l, l->hs_done ? "connection closed by server (TLS close_notify)"
                                 : "TLS: handshake failed: closed by server");
    else if (r)
        io_why_set(l, "TLS: %s%s", l->hs_done ? "" : "handshake failed: ", r);
    else
        io_why_set(l, "TLS: %serror %d", l->hs_done ? "" : "handshake failed: ", e);
    ERR_clear_error();
}

bool io_tls_has_rx(const struct link *l)
{
    return l->mem_tls && l->ssl && l->hs_done &&
           (SSL_pending(l->ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(l->ssl)) > 0);
}

/* mem_tls: decrypts what the rbio holds and hands it over, until it is empty or the core
 * pauses or closes the link. -1: close. */
int io_tls_drain(struct link *l, struct lws *wsi)
{
    uint8_t buf[TX_CAP];
    int n;

    while (io_link_rx_allowed(l, wsi) && !l->paused) {
        ERR_clear_error(); /* SSL_get_error reads the thread's queue: no stale entries */
        n = SSL_read(l->ssl, buf, (int)sizeof(buf));
        if (n <= 0) {
            int e = SSL_get_error(l->ssl, n);

            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                break;
            mem_tls_why(l, n);
            return -1;
        }
        if (io_link_deliver_rx(l, wsi, buf, (size_t)n) < 0)
            return -1;
    }
    return 0;
}

/* mem_tls RX: ciphertext in; handshake, then plaintext to the core. */
int io_tls_rx(struct link *l, struct lws *wsi, const void *in, size_t len)
{
    int r;

    if (!l->ssl)
        return -1;
    if (len && BIO_write(SSL_get_rbio(l->ssl), in, (int)len) != (int)len) {
        io_why_set(l, "TLS: out of memory");
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
            io_link_want_writeable(l, wsi); /* our next handshake flight */
            return 0;
        }
        l->hs_done = true;
        lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
        io_link_opened(l, wsi); /* on_open from here: this is an lws RX callback */
        if (io_link_of(wsi) != l)
            return 0;
    }
    r = io_tls_drain(l, wsi);
    io_link_want_writeable(l, wsi);
    return r;
}

/* mem_tls WRITEABLE: pending TLS records first; otherwise the core's next bytes, encrypted.
 * Still exactly one lws_write(). */
int io_tls_writeable(struct link *l, struct lws *wsi)
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
    io_link_want_writeable(l, wsi);
    return 0;
}

/* A TLS link the server closed: lws may report the hang-up before reading the last bytes,
 * and with TLS 1.3 those can hold the reason (e.g. the alert "certificate required", sent after
 * our side finished the handshake). Read what the socket still has and let OpenSSL parse it:
 * the info callback records the alert as the reason. */
void io_tls_last_words(struct link *l, struct lws *wsi)
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
        ;              /* application data past the close is of no use now; stop at the alert */
    ERR_clear_error(); /* what this dying link left must not fail the next one's I/O */
}

void io_tls_ctx_made(struct relay_transport *t, SSL_CTX *sctx)
{
    SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION);
    SSL_CTX_set_app_data(sctx, t);
    SSL_CTX_set_info_callback(sctx, tls_info_cb);
    if (t && t->creating)
        t->creating->sctx = sctx;
}
