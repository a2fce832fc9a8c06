/*
 * http.c: the HTTP listener (relay.metrics). GET / is the status page (io/status.html, embedded
 * at build time); every other request is answered by the core (relay_core_http: /metrics,
 * /healthz, /api/v1/status, POST /-/reload). lws 4.1.6's bind errors are found out here, since
 * it only logs them.
 *
 * The listener serves operators and must shrug off anyone else: at most HTTP_MAX_CLIENTS
 * connections at once (the rest are closed as they are accepted: file descriptors stay for the
 * brokers); headers must be complete within HTTP_IDLE_SECS of the connection (lws' ah idle
 * timeout), a kept-alive connection may idle as long, a POST body is at most HTTP_BODY_MAX bytes
 * and must arrive within HTTP_IDLE_SECS, a response must be taken within HTTP_SEND_SECS; no
 * WebSocket upgrade, no CONNECT tunnel; every line a client can cause is rate-limited.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/internal.h"

#define HTTP_MAX_CLIENTS 32 /* connections at once */
#define HTTP_IDLE_SECS 5    /* to send the headers (and a body); idle between requests */
#define HTTP_SEND_SECS 10   /* to take a whole response */
#define HTTP_BODY_MAX 1024  /* bytes of a POST body (read and ignored) */

/* The listener's own state, kept by lws with the vhost (lws_protocol_vh_priv_zalloc). */
struct http_vh {
    bool loopback;     /* bound to a loopback address */
    unsigned clients;  /* connections alive */
    uint64_t refused;  /* connections closed at accept: HTTP_MAX_CLIENTS were open */
    bool said_refused; /* ... and said so since the last time there was room */
};

/* Per HTTP connection (lws allocates and zeroes it when the request's headers are in). */
struct http_pss {
    char *body; /* the response being written */
    size_t len, off;
    bool close_after;  /* close once the response is written (a body we will not read) */
    bool post_pending; /* a POST: answered when its body is in */
    size_t body_seen;
    uint64_t started_ms; /* the POST's headers */
    char path[32];       /* the POST's path */
};

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);

static const struct lws_protocols http_protocols[] = {
    {"relay-http", cb_http, sizeof(struct http_pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static struct http_vh *vh_of(struct lws *wsi)
{
    return lws_protocol_vh_priv_get(lws_get_vhost(wsi), &http_protocols[0]);
}

/* ---------------------------------------------------------------------------------------- */
/* Answers                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static int http_done(struct lws *wsi, struct http_pss *pss)
{
    if (pss && pss->close_after)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int add_header(struct lws *wsi, const char *name, const char *value, uint8_t **p,
                      uint8_t *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

/* Headers, then the body from WRITEABLE. body is malloc'ed and taken (freed here on failure);
 * page: the status page (static bytes, its CSP). */
static int respond(struct lws *wsi, struct http_pss *pss, int status, const char *ctype, char *body,
                   size_t blen, const struct relay_http_response *resp, bool page)
{
    uint8_t hdr[LWS_PRE + 2048], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;

    if (!body)
        blen = 0;
    if (lws_add_http_common_headers(wsi, (unsigned)status, ctype, (lws_filepos_t)blen, &p, end) ||
        add_header(wsi, "x-content-type-options:", "nosniff", &p, end) ||
        add_header(wsi, "cache-control:", page ? "no-cache" : "no-store", &p, end) ||
        (page && add_header(wsi, "content-security-policy:", io_status_page_csp, &p, end)) ||
        (page && add_header(wsi, "referrer-policy:", "no-referrer", &p, end)) ||
        (resp && resp->allow && add_header(wsi, "allow:", resp->allow, &p, end)) ||
        (resp && resp->challenge &&
         add_header(wsi, "www-authenticate:", "Bearer realm=\"mqtt-relay\"", &p, end)) ||
        (pss->close_after && add_header(wsi, "connection:", "close", &p, end)) ||
        lws_finalize_write_http_header(wsi, start, &p, end)) {
        if (!page)
            free(body);
        return -1;
    }
    pss->body = body;
    pss->len = blen;
    pss->off = 0;
    /* a client that does not read its answer is not waited for */
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, HTTP_SEND_SECS);
    lws_callback_on_writable(wsi);
    return 0;
}

static int respond_text(struct lws *wsi, struct http_pss *pss, int status, const char *text)
{
    char *b = strdup(text);

    return respond(wsi, pss, status, "text/plain; charset=utf-8", b, b ? strlen(b) : 0, NULL,
                   false);
}

/* The core answers path (every path but /). */
static int core_answer(struct lws *wsi, struct http_pss *pss, const char *method, const char *path)
{
    struct relay_transport *t = lws_context_user(lws_get_context(wsi));
    struct http_vh *vh = vh_of(wsi);
    struct relay_http_request req = {.method = method, .path = path, .peer = ""};
    struct relay_http_response resp;
    char peer[INET6_ADDRSTRLEN + 8] = "", *auth = NULL;
    int alen = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION), rc;

    if (!t->core) /* before relay_transport_set_core() */
        return respond_text(wsi, pss, 503, "starting\n");
    if (alen > 0 && alen <= 8192 && (auth = malloc((size_t)alen + 1)) &&
        lws_hdr_copy(wsi, auth, alen + 1, WSI_TOKEN_HTTP_AUTHORIZATION) < 0) {
        free(auth);
        auth = NULL;
    }
    lws_get_peer_simple(wsi, peer, sizeof(peer));
    req.authorization = auth;
    req.peer = peer;
    req.loopback = vh && vh->loopback;
    relay_core_http(t->core, &req, relay_now_ms(), &resp);
    if (auth) {
        memset(auth, 0, (size_t)alen); /* it may hold the admin token */
        free(auth);
    }
    if (resp.status < 100 || resp.status > 599) {
        free(resp.body);
        return respond_text(wsi, pss, 500, "internal error\n");
    }
    rc = respond(wsi, pss, resp.status, resp.content_type ? resp.content_type : "text/plain",
                 resp.body, resp.len, &resp, false);
    return rc;
}

/* A decimal Content-Length, or -1 when absent or not a number. */
static long long content_length(struct lws *wsi)
{
    char v[24];
    char *end;
    long long n;

    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0 ||
        lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0 || v[0] < '0' ||
        v[0] > '9')
        return -1;
    n = strtoll(v, &end, 10);
    return *end ? -1 : n;
}

static int http_request(struct lws *wsi, struct http_pss *pss, const char *in)
{
    char *uri = NULL, path[256];
    int ulen = 0, method = lws_http_get_uri_and_method(wsi, &uri, &ulen);
    long long clen = content_length(wsi);

    snprintf(path, sizeof(path), "%.*s", (int)strcspn(in, "?"), in);
    if (method == LWSHUMETH_POST) {
        pss->close_after = true; /* unless the body is read (below) */
        if (clen < 0 && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
            return respond_text(wsi, pss, 411, "a POST needs a Content-Length\n");
        if (clen < 0) /* no body (RFC 9112 6.3): answered now, lws would wait for one */
            return strlen(path) >= sizeof(pss->path) ? respond_text(wsi, pss, 404, "not found\n")
                                                     : core_answer(wsi, pss, "POST", path);
        if (clen > HTTP_BODY_MAX)
            return respond_text(wsi, pss, 413, "body too large\n");
        if (strlen(path) >= sizeof(pss->path))
            return respond_text(wsi, pss, 404, "not found\n");
        pss->close_after = false;
        pss->post_pending = true;
        pss->body_seen = 0;
        pss->started_ms = relay_now_ms();
        snprintf(pss->path, sizeof(pss->path), "%s", path);
        /* the body (HTTP_BODY, then HTTP_BODY_COMPLETION, at once for Content-Length: 0) */
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, HTTP_IDLE_SECS);
        return 0;
    }
    if (clen > 0) { /* a body we would have to read past */
        pss->close_after = true;
        return respond_text(wsi, pss, 400, "unexpected body\n");
    }
    if (method != LWSHUMETH_GET) {
        struct relay_http_response r = {.allow = "GET, POST"};

        pss->close_after = true;
        return respond(wsi, pss, 405, "text/plain; charset=utf-8", strdup("method not allowed\n"),
                       20, &r, false);
    }
    if (!strcmp(path, "/") || !strcmp(path, "/index.html"))
        return respond(wsi, pss, 200, "text/html; charset=utf-8", (char *)io_status_page,
                       io_status_page_len, NULL, true);
    return core_answer(wsi, pss, "GET", path);
}

static int http_writeable(struct lws *wsi, struct http_pss *pss)
{
    uint8_t buf[LWS_PRE + TX_CAP];
    size_t n;
    bool last;

    if (pss->off > pss->len || (!pss->body && pss->len))
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
    if (pss->body != (char *)io_status_page)
        free(pss->body);
    pss->body = NULL;
    pss->len = pss->off = 0;
    return http_done(wsi, pss);
}

static void pss_free(struct http_pss *pss)
{
    if (!pss)
        return;
    if (pss->body != (char *)io_status_page)
        free(pss->body);
    pss->body = NULL;
    pss->len = pss->off = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Who gets in                                                                               */
/* ---------------------------------------------------------------------------------------- */

/* A connection is being accepted: refused (closed at once) when HTTP_MAX_CLIENTS are open. */
static int admit(struct lws *wsi, void *user)
{
    struct relay_transport *t = lws_context_user(lws_get_context(wsi));
    struct lws_filter_network_conn_args *a = user;
    struct http_vh *vh = vh_of(wsi);
    char peer[INET6_ADDRSTRLEN + 8] = "?";

    if (!vh)
        return 0;
    if (vh->clients < HTTP_MAX_CLIENTS) {
        vh->said_refused = false;
        return 0;
    }
    vh->refused++;
    if (a)
        lws_get_peer_simple_fd(a->accept_fd, peer, sizeof(peer));
    io_log_limited(t, RELAY_LOG_WARN, "http",
                   "%u HTTP clients connected already: connection from %s refused (%llu refused "
                   "so far)",
                   vh->clients, peer, (unsigned long long)vh->refused);
    return 1;
}

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct http_pss *pss = user;
    struct http_vh *vh;

    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        return admit(wsi, user);
    case LWS_CALLBACK_WSI_CREATE:
        if ((vh = vh_of(wsi)))
            vh->clients++;
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if ((vh = vh_of(wsi)) && vh->clients)
            vh->clients--;
        return 0;

    case LWS_CALLBACK_HTTP:
        if (!pss)
            return -1;
        return http_request(wsi, pss, in ? (const char *)in : "");
    case LWS_CALLBACK_HTTP_BODY:
        if (!pss || !pss->post_pending)
            return -1;
        pss->body_seen += len;
        /* a slow trickle is cut like a large body */
        if (pss->body_seen > HTTP_BODY_MAX ||
            relay_now_ms() - pss->started_ms > HTTP_IDLE_SECS * 1000u)
            return -1;
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (!pss || !pss->post_pending)
            return -1;
        pss->post_pending = false;
        return core_answer(wsi, pss, "POST", pss->path);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!pss)
            return -1;
        return http_writeable(wsi, pss);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        pss_free(pss);
        break;

    /* not what this listener is for: hang up (lws would keep such a connection forever) */
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    case LWS_CALLBACK_RAW_ADOPT:
    case LWS_CALLBACK_RAW_RX:
    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_RECEIVE:
        return -1;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---------------------------------------------------------------------------------------- */
/* The listener                                                                              */
/* ---------------------------------------------------------------------------------------- */

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

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: only this machine can connect. */
static bool is_loopback(const char *numeric)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, numeric, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, numeric, &a6) != 1)
        return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

int io_http_listen(struct relay_transport *t, const struct relay_transport_opts *o, char *err,
                   size_t errlen)
{
    struct lws_context_creation_info info;
    char addr[INET6_ADDRSTRLEN + 8];
    struct http_vh *vh;
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
    info.timeout_secs_ah_idle = HTTP_IDLE_SECS; /* from accept to the end of the headers */
    info.keepalive_timeout = HTTP_IDLE_SECS;
    info.gid = -1;
    info.uid = -1;
    t->vh_http = lws_create_vhost(t->ctx, &info);
    if (!t->vh_http) {
        snprintf(err, errlen, "metrics: cannot listen on %s:%u", o->metrics_host, o->metrics_port);
        return -EADDRNOTAVAIL;
    }
    vh = lws_protocol_vh_priv_zalloc(t->vh_http, &http_protocols[0], sizeof(*vh));
    if (!vh) {
        snprintf(err, errlen, "metrics: out of memory");
        return -ENOMEM;
    }
    vh->loopback = is_loopback(addr);
    return 0;
}
