/* http.c: the HTTP listener (relay.metrics): each request is answered by the core
 * (relay_core_http); lws 4.1.6's bind errors are found out here, since it only logs them. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/internal.h"

/* Per HTTP transaction (lws allocates and zeroes it). */
struct http_pss {
    char *body;
    size_t len, off;
};

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);

static const struct lws_protocols http_protocols[] = {
    {"relay-http", cb_http, sizeof(struct http_pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

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

int io_http_listen(struct relay_transport *t, const struct relay_transport_opts *o, char *err,
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
