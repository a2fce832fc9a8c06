/*
 * tls.c: a link's TLS, for mqtts:// and wss:// alike: OpenSSL over memory BIOs on the raw link
 * (stack.c moves the ciphertext), with an SSL made from the context of tlsctx.c. Verification
 * checks the whole server name; ALPN, SNI and a kept session (resumption) are set before the
 * handshake; alerts and verification results become the link's reason when it fails.
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

static bool ip_literal(const char *s)
{
    unsigned char ip[16];

    return inet_pton(AF_INET, s, ip) == 1 || inet_pton(AF_INET6, s, ip) == 1;
}

/* One step of certificate verification (OpenSSL calls it per certificate, leaf last). Returns
 * true to go on. The leaf is also checked here against the whole server name. */
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

static int verify_cb(int preverify_ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct link *l = ssl ? SSL_get_app_data(ssl) : NULL;

    return l ? io_tls_verify(l, preverify_ok, xs) : 0;
}

bool io_tls_start(struct link *l)
{
    SSL_CTX *sctx = io_tls_ctx_ssl(l->tctx);
    SSL_SESSION *sess;
    char key[300];
    BIO *rb, *wb;

    l->ssl = SSL_new(sctx);
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
    SSL_set_verify(l->ssl, SSL_VERIFY_PEER, verify_cb);
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
    if (l->alpn_len && SSL_set_alpn_protos(l->ssl, l->alpn, (unsigned)l->alpn_len)) {
        io_why_set(l, "TLS: cannot offer tls.alpn");
        return false;
    }
    io_tls_session_key(l, key, sizeof(key));
    sess = io_tls_ctx_session(l->tctx, key);
    if (sess)
        SSL_set_session(l->ssl, sess); /* a failed resumption is a full handshake */
    return true;
}

/* The reason of a failed SSL call (after a verify or alert reason, if any). */
static void tls_why(struct link *l, int ret)
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
    else if (r && q && ERR_GET_REASON(q) == SSL_R_NO_SHARED_CIPHER)
        io_why_set(l, "TLS: handshake failed: no cipher in common with the server (tls.ciphers, "
                      "tls.ciphersuites)");
    else if (r)
        io_why_set(l, "TLS: %s%s", l->hs_done ? "" : "handshake failed: ", r);
    else
        io_why_set(l, "TLS: %serror %d", l->hs_done ? "" : "handshake failed: ", e);
    ERR_clear_error();
}

int io_tls_input(struct link *l, const void *in, size_t len)
{
    int r;

    if (!l->ssl)
        return -1;
    if (len && BIO_write(SSL_get_rbio(l->ssl), in, (int)len) != (int)len) {
        io_why_set(l, "TLS: out of memory");
        return -1;
    }
    if (l->hs_done)
        return 0;
    ERR_clear_error();
    r = SSL_do_handshake(l->ssl);
    if (r != 1) {
        int e = SSL_get_error(l->ssl, r);

        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            tls_why(l, r);
            return -1;
        }
        return 0;
    }
    l->hs_done = true;
    if (!l->hs_counted && l->conn) {
        l->hs_counted = true;
        relay_core_tls_handshake(l->conn, SSL_session_reused(l->ssl) == 1);
    }
    return 1;
}

int io_tls_read(struct link *l, uint8_t *buf, size_t cap)
{
    int n;

    ERR_clear_error(); /* SSL_get_error reads the thread's queue: no stale entries */
    n = SSL_read(l->ssl, buf, (int)cap);
    if (n > 0)
        return n;
    int e = SSL_get_error(l->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    tls_why(l, n);
    return -1;
}

int io_tls_write(struct link *l, const void *p, size_t n)
{
    ERR_clear_error();
    if (n && SSL_write(l->ssl, p, (int)n) != (int)n) {
        tls_why(l, -1);
        return -1;
    }
    return 0;
}

size_t io_tls_pending(const struct link *l)
{
    return l->ssl ? BIO_ctrl_pending(SSL_get_wbio(l->ssl)) : 0;
}

size_t io_tls_take(struct link *l, uint8_t *out, size_t cap)
{
    int got;

    if (!l->ssl || !cap)
        return 0;
    got = BIO_read(SSL_get_wbio(l->ssl), out, (int)(cap > INT32_MAX ? INT32_MAX : cap));
    return got > 0 ? (size_t)got : 0;
}

bool io_tls_has_rx(const struct link *l)
{
    return l->tls && l->ssl && l->hs_done &&
           (SSL_pending(l->ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(l->ssl)) > 0);
}

void io_tls_shutdown(struct link *l)
{
    if (l->ssl && l->hs_done)
        SSL_shutdown(l->ssl);
}

/* A TLS link the server closed: lws may report the hang-up before reading the last bytes,
 * and with TLS 1.3 those can hold the reason (e.g. the alert "certificate required", sent after
 * our side finished the handshake). Read what the socket still has and let OpenSSL parse it:
 * the info callback records the alert as the reason. */
void io_tls_last_words(struct link *l, struct lws *wsi)
{
    uint8_t buf[4096];
    int fd = lws_get_socket_fd(wsi);

    if (!l->tls || !l->ssl || l->why[0] || fd < 0 || l->phase < PH_TLS)
        return;
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n <= 0)
            break;
        if (BIO_write(SSL_get_rbio(l->ssl), buf, (int)n) != (int)n)
            break;
    }
    ERR_clear_error();
    if (!l->hs_done)
        SSL_do_handshake(l->ssl);
    while (!l->why[0] && SSL_read(l->ssl, buf, (int)sizeof(buf)) > 0)
        ;              /* application data past the close is of no use now; stop at the alert */
    ERR_clear_error(); /* what this dying link left must not fail the next one's I/O */
}
