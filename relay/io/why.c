/*
 * why.c: the texts that explain a failed connect, as a user reads them in the log: refused,
 * unreachable, timed out, a name that does not resolve, certificate and TLS failures, a
 * WebSocket upgrade refused. lws 4.1.6 says little by itself, so the facts are gathered here
 * (SO_ERROR, ICMP errors on a probe socket, OpenSSL's verification result, alerts).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "io/internal.h"

void io_probe_close(struct link *l)
{
    if (l->probe_fd >= 0)
        close(l->probe_fd);
    l->probe_fd = -1;
}

/* ws: keeps a dup of the connecting socket with IP_RECVERR on, so that after lws has read
 * (and cleared) SO_ERROR an ICMP error can still be read from the error queue. */
void io_probe_open(struct link *l, int fd)
{
    int one = 1;

    io_probe_close(l);
    if (fd < 0)
        return;
    setsockopt(fd, SOL_IP, IP_RECVERR, &one, sizeof(one));
    setsockopt(fd, SOL_IPV6, IPV6_RECVERR, &one, sizeof(one));
    l->probe_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/* The errno of a queued ICMP error on the probe socket, or 0. */
int io_probe_errno(const struct link *l)
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

/* Turns LWS_CALLBACK_CLIENT_CONNECTION_ERROR's text (4.1.6 passes short internal strings, and
 * for TLS an unreadable "connect SSL err 1: error:00000001:...") into a specific reason. */
void io_why_connect_error(struct link *l, struct lws *wsi, const char *in, size_t len)
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
            io_why_cert(l, v);
            return;
        }
    }
    if (starts(cce, len, "HS: ws upgrade response not 101") ||
        starts(cce, len, "HS: ws upgrade unauthorized")) {
        unsigned st = lws_http_client_http_response(wsi);
        if (st)
            io_why_set(l, "WebSocket upgrade refused: HTTP %u", st);
        else
            io_why_set(l, "WebSocket upgrade refused: %s", cce + 4);
        return;
    }
    if (starts(cce, len, "HS: ")) {
        io_why_set(l, "WebSocket upgrade refused: %s", cce + 4);
        return;
    }
    if (starts(cce, len, "ws protocol no match")) {
        io_why_set(l, "WebSocket upgrade refused: subprotocol not accepted");
        return;
    }
    if (starts(cce, len, "Timed out waiting SSL")) {
        io_why_set(l, "TLS: handshake timed out");
        return;
    }
    if (starts(cce, len, "connect SSL err") || starts(cce, len, "connect SYSCALL") ||
        starts(cce, len, "connect unk") || starts(cce, len, "server's cert")) {
        unsigned long e = ERR_peek_last_error();
        const char *r = e ? ERR_reason_error_string(e) : NULL;

        if (r)
            io_why_set(l, "TLS: handshake failed: %s", r);
        else if (starts(cce, len, "connect SYSCALL"))
            io_why_set(l, "TLS: handshake failed: connection closed by server");
        else
            io_why_set(l, "TLS: handshake failed: %s", cce);
        return;
    }
    /* "closed before established" (the POLLHUP path, see link_attempt: the socket is still
     * open and SO_ERROR unread), "Unable to connect" (lws read and so cleared SO_ERROR, or its
     * connect timer fired), "Closed before conn" */
    fd = lws_get_socket_fd(wsi);
    if (fd >= 0 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &sl) && so_err) {
        io_why_errno(l, so_err);
        return;
    }
    tls_pending = ssl && !SSL_is_init_finished(ssl);
    if (relay_now_ms() - l->started_ms + 500 >= TIMEOUT_SECS * 1000u) {
        io_why_set(l, "%s",
                   tls_pending ? "TLS: handshake timed out"
                   : l->tcp_up ? "WebSocket: upgrade timed out"
                               : "connection timed out");
        return;
    }
    if (!l->tcp_up && l->probe_fd >= 0) {
        /* a quick failure with no ICMP error queued was a TCP reset */
        so_err = io_probe_errno(l);
        io_why_errno(l, so_err ? so_err : ECONNREFUSED);
        return;
    }
    if (tls_pending) {
        io_why_set(l, "TLS: handshake failed: connection closed by server");
        return;
    }
    if (l->ws && l->tcp_up) {
        if (starts(cce, len, "read failed") || starts(cce, len, "Peer hung up") ||
            starts(cce, len, "closed before") || starts(cce, len, "Closed before"))
            io_why_set(l, "WebSocket upgrade failed: connection closed by server");
        else
            io_why_set(l, "WebSocket upgrade failed: %s", cce[0] ? cce : "unknown");
        return;
    }
    io_why_set(l, "connection failed (%s)", cce[0] ? cce : "unknown");
}

/* Why a link closed, when nothing more specific was recorded. */
const char *io_why_closed(const struct link *l)
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
