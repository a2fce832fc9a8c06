/*
 * why.c: the texts that explain a failed connect or a lost link, as a user reads them in the
 * log: refused, unreachable, timed out, a peer that stopped answering (TCP keepalive or user
 * timeout), certificate and TLS failures, a proxy or a WebSocket upgrade that refused. lws
 * 4.1.6 says little by itself, so the facts are gathered here (SO_ERROR, TCP_INFO, OpenSSL's
 * verification result, alerts); stack.c and tls.c record the handshakes' own reasons.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "io/internal.h"

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

void io_why_cert(struct link *l, long err)
{
    const char *s = X509_verify_cert_error_string(err);

    if (err == X509_V_ERR_HOSTNAME_MISMATCH)
        io_why_set(l, "TLS: certificate name mismatch: the certificate is not valid for \"%s\"",
                   l->server_name);
    else if (err == X509_V_ERR_CERT_HAS_EXPIRED)
        io_why_set(l, "TLS: certificate has expired");
    else if (err == X509_V_ERR_CERT_NOT_YET_VALID)
        io_why_set(l, "TLS: certificate is not yet valid");
    else if (unknown_ca(err))
        io_why_set(l, "TLS: certificate verify failed: %s (unknown CA)", s);
    else
        io_why_set(l, "TLS: certificate verify failed: %s", s);
}

/* Lower-case first letter: strerror() says "Connection refused", our lines say "connection
 * refused". */
void io_why_errno(struct link *l, int e)
{
    char buf[128];

    snprintf(buf, sizeof(buf), "%s", strerror(e));
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
        buf[0] = (char)(buf[0] - 'A' + 'a');
    io_why_set(l, "%s", buf);
}

static bool starts(const char *s, size_t n, const char *prefix)
{
    size_t pl = strlen(prefix);

    return n >= pl && !memcmp(s, prefix, pl);
}

/* Turns LWS_CALLBACK_CLIENT_CONNECTION_ERROR's text into a specific reason. Every link is a
 * raw TCP client, so this is about the TCP connect ("closed before established" on the POLLHUP
 * path of link_attempt, where SO_ERROR is still unread; "Unable to connect" when lws read it or
 * its connect timer fired). */
void io_why_connect_error(struct link *l, struct lws *wsi, const char *in, size_t len)
{
    char cce[160];
    int fd, so_err = 0;
    socklen_t sl = sizeof(so_err);

    if (l->closing) {
        snprintf(l->why, sizeof(l->why), "closed by relay");
        return;
    }
    if (l->why[0])
        return;
    if (!in)
        len = 0;
    while (len && (((const char *)in)[len - 1] == '\0' || ((const char *)in)[len - 1] == '\n'))
        len--;
    if (len >= sizeof(cce))
        len = sizeof(cce) - 1;
    memcpy(cce, in ? in : "", len);
    cce[len] = '\0';
    fd = lws_get_socket_fd(wsi);
    if (fd >= 0 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &sl) && so_err) {
        io_why_errno(l, so_err);
        return;
    }
    if (relay_now_ms() - l->started_ms + 500 >= TIMEOUT_SECS * 1000u) {
        io_why_set(l, "connection timed out");
        return;
    }
    if (l->bind[0] && starts(cce, len, "Unable to connect")) {
        io_why_set(l, "connection failed (is bind_address %s an address of this machine?)",
                   l->bind);
        return;
    }
    io_why_set(l, "connection failed (%s)", cce[0] ? cce : "unknown");
}

/* An open link's socket died: a peer that stopped answering shows as a connection the kernel
 * gave up on (keepalive probes or retransmissions unanswered: tcp_keepalive,
 * tcp_user_timeout). NULL when it does not look like that. */
static const char *dead_peer(struct lws *wsi)
{
    struct tcp_info ti;
    socklen_t sl = sizeof(ti);
    int fd = wsi ? lws_get_socket_fd(wsi) : -1, so_err = 0;
    socklen_t el = sizeof(so_err);

    if (fd < 0)
        return NULL;
    if (!getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &el) && so_err == ETIMEDOUT)
        return "connection timed out: the broker stopped answering (TCP keepalive or user "
               "timeout)";
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &sl) || ti.tcpi_state != TCP_CLOSE)
        return NULL;
    if (ti.tcpi_probes || ti.tcpi_retransmits || ti.tcpi_backoff)
        return "connection timed out: the broker stopped answering (TCP keepalive or user "
               "timeout)";
    return NULL;
}

/* Why a link closed, when nothing more specific was recorded. */
const char *io_why_closed(const struct link *l, struct lws *wsi)
{
    bool late = relay_now_ms() - l->started_ms + 500 >= TIMEOUT_SECS * 1000u;
    const char *dead;

    if (l->state == LINK_OPEN) {
        dead = dead_peer(wsi);
        return dead ? dead : "connection closed by server";
    }
    switch (l->phase) {
    case PH_PROXY:
        return late ? "no answer to the proxy handshake in time"
                    : "connection closed during the proxy handshake";
    case PH_TLS:
        return late ? "TLS: handshake timed out"
                    : "TLS: handshake failed: connection closed by server";
    case PH_WS:
        return late ? "WebSocket: upgrade timed out"
                    : "WebSocket upgrade failed: connection closed";
    default:
        return late ? "connection timed out" : "connection failed";
    }
}
