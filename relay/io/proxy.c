/*
 * proxy.c: the client side of the proxy handshakes (proxy.h): HTTP CONNECT and SOCKS5. Pure
 * bytes in, bytes out; link.c moves them. The texts in p->why are what the log says when a
 * proxy refuses: they never hold the password.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "io/proxy.h"

enum {
    ST_HTTP_HEAD = 1, /* waiting for the answer's status line and headers */
    ST_SOCKS_METHOD,  /* waiting for the chosen method */
    ST_SOCKS_AUTH,    /* waiting for the RFC 1929 status */
    ST_SOCKS_REPLY,   /* waiting for the CONNECT reply */
    ST_DONE,
};

size_t io_base64(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;

    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);

        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;

    while (n--)
        *v++ = 0;
}

void io_proxy_clear(struct io_proxy *p)
{
    wipe(p->pass, sizeof(p->pass));
    wipe(p->user, sizeof(p->user));
    p->pass_len = p->user_len = 0;
}

/* Records why (the user name may be in it: formatted before the credentials are wiped). */
static int fail(struct io_proxy *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct io_proxy *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(p->why, sizeof(p->why), fmt, ap);
    va_end(ap);
    io_proxy_clear(p);
    return IO_PROXY_FAIL;
}

/* ---- HTTP CONNECT ------------------------------------------------------------------------- */

static int http_request(struct io_proxy *p, uint8_t *out, size_t cap, size_t *n)
{
    bool v6 = strchr(p->host, ':') != NULL;
    char target[300];
    int k;

    snprintf(target, sizeof(target), "%s%s%s:%u", v6 ? "[" : "", p->host, v6 ? "]" : "",
             (unsigned)p->port);
    k = snprintf((char *)out, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: mqtt-relay\r\n",
                 target, target);
    if (k < 0 || (size_t)k >= cap)
        return -1;
    if (p->auth) {
        uint8_t cred[520];
        char b64[4 * (sizeof(cred) + 2) / 3 + 1];
        size_t cl = p->user_len + 1 + p->pass_len, bl;

        memcpy(cred, p->user, p->user_len);
        cred[p->user_len] = ':';
        memcpy(cred + p->user_len + 1, p->pass, p->pass_len);
        bl = io_base64(cred, cl, b64);
        wipe(cred, sizeof(cred));
        if ((size_t)k + 36 + bl >= cap) {
            wipe(b64, sizeof(b64));
            return -1;
        }
        k += snprintf((char *)out + k, cap - (size_t)k, "Proxy-Authorization: Basic %s\r\n", b64);
        wipe(b64, sizeof(b64));
    }
    if ((size_t)k + 3 > cap)
        return -1;
    memcpy(out + k, "\r\n", 2);
    *n = (size_t)k + 2;
    wipe(p->pass, sizeof(p->pass)); /* sent: no longer needed */
    return 0;
}

/* The reason phrase, printable and short, for the log. */
static void reason_of(const char *line, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < n && o + 1 < cap && o < 60; i++)
        out[o++] = isprint((unsigned char)line[i]) ? line[i] : '?';
    out[o] = '\0';
}

static int http_feed(struct io_proxy *p, const uint8_t *in, size_t len, size_t *used)
{
    size_t old = p->in_len, take = len, end = 0;
    char reason[64];
    unsigned status;

    if (take > sizeof(p->in) - p->in_len)
        take = sizeof(p->in) - p->in_len;
    memcpy(p->in + p->in_len, in, take);
    p->in_len += take;
    for (size_t i = old >= 3 ? old - 3 : 0; i + 3 < p->in_len; i++)
        if (!memcmp(p->in + i, "\r\n\r\n", 4)) {
            end = i + 4;
            break;
        }
    if (!end) {
        *used = take;
        if (memcmp(p->in, "HTTP/", p->in_len < 5 ? p->in_len : 5))
            return fail(p, "did not answer in HTTP (is it a SOCKS5 proxy?)");
        if (p->in_len == sizeof(p->in))
            return fail(p, "sent an answer longer than %u bytes", (unsigned)sizeof(p->in));
        return IO_PROXY_MORE;
    }
    *used = end - old;
    const char *s = (const char *)p->in;
    if (end < 12 || memcmp(s, "HTTP/1.", 7) || s[8] != ' ' || !isdigit((unsigned char)s[9]) ||
        !isdigit((unsigned char)s[10]) || !isdigit((unsigned char)s[11]))
        return fail(p, "did not answer in HTTP (is it a SOCKS5 proxy?)");
    status = (unsigned)((s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0'));
    const char *eol = memchr(s, '\r', end);
    size_t rl = eol && eol > s + 12 ? (size_t)(eol - s - 13) : 0;
    reason_of(s + 13, rl, reason, sizeof(reason));
    if (status >= 200 && status < 300) {
        p->state = ST_DONE;
        io_proxy_clear(p);
        return IO_PROXY_DONE;
    }
    if (status == 407 && p->auth)
        return fail(p, "refused the credentials of user \"%.*s\" (HTTP 407 %s)", (int)p->user_len,
                    p->user, reason);
    if (status == 407)
        return fail(p,
                    "requires authentication (HTTP 407 %s): give "
                    "http://USER:PASSWORD@host:port",
                    reason);
    return fail(p, "refused the tunnel to %s:%u: HTTP %u %s", p->host, (unsigned)p->port, status,
                reason);
}

/* ---- SOCKS5 ------------------------------------------------------------------------------- */

static size_t socks_connect_request(const struct io_proxy *p, uint8_t *out)
{
    size_t o = 0, hl = strlen(p->host);
    uint8_t a[16];

    out[o++] = 5;
    out[o++] = 1; /* CONNECT */
    out[o++] = 0;
    if (inet_pton(AF_INET, p->host, a) == 1) {
        out[o++] = 1;
        memcpy(out + o, a, 4);
        o += 4;
    } else if (inet_pton(AF_INET6, p->host, a) == 1) {
        out[o++] = 4;
        memcpy(out + o, a, 16);
        o += 16;
    } else {
        out[o++] = 3; /* the name: the proxy resolves it */
        out[o++] = (uint8_t)hl;
        memcpy(out + o, p->host, hl);
        o += hl;
    }
    out[o++] = (uint8_t)(p->port >> 8);
    out[o++] = (uint8_t)p->port;
    return o;
}

static const char *socks_reply_text(unsigned rep)
{
    static const char *const t[] = {
        "succeeded",           "general failure",       "connection not allowed by its rules",
        "network unreachable", "host unreachable",      "connection refused by the target",
        "TTL expired",         "command not supported", "address type not supported",
    };
    return rep < sizeof(t) / sizeof(t[0]) ? t[rep] : "unknown reply";
}

/* Takes the first k bytes of the gathered answer out. */
static void consume(struct io_proxy *p, size_t k)
{
    memmove(p->in, p->in + k, p->in_len - k);
    p->in_len -= k;
}

static int socks_step(struct io_proxy *p, uint8_t *out, size_t *n, bool *again)
{
    *again = false;
    switch (p->state) {
    case ST_SOCKS_METHOD:
        if (p->in_len < 2)
            return IO_PROXY_MORE;
        if (p->in[0] != 5)
            return fail(p, "did not answer in SOCKS5 (is it an HTTP proxy?)");
        if (p->in[1] == 0xff)
            return fail(p, "%s",
                        p->auth ? "accepts none of our authentication "
                                  "methods (no authentication, user name and password)"
                                : "requires authentication: give "
                                  "socks5://USER:PASSWORD@host:port");
        if (p->in[1] == 2 && p->auth) {
            size_t o = 0;

            out[o++] = 1;
            out[o++] = (uint8_t)p->user_len;
            memcpy(out + o, p->user, p->user_len);
            o += p->user_len;
            out[o++] = (uint8_t)p->pass_len;
            memcpy(out + o, p->pass, p->pass_len);
            o += p->pass_len;
            *n = o;
            wipe(p->pass, sizeof(p->pass)); /* sent */
            p->state = ST_SOCKS_AUTH;
        } else if (p->in[1] == 0) {
            *n = socks_connect_request(p, out);
            p->state = ST_SOCKS_REPLY;
        } else {
            return fail(p, "chose an authentication method we did not offer (%u)", p->in[1]);
        }
        consume(p, 2);
        *again = true;
        return IO_PROXY_MORE;
    case ST_SOCKS_AUTH:
        if (p->in_len < 2)
            return IO_PROXY_MORE;
        if (p->in[1] != 0)
            return fail(p, "refused the credentials of user \"%.*s\" (status %u)", (int)p->user_len,
                        p->user, p->in[1]);
        consume(p, 2);
        *n = socks_connect_request(p, out);
        p->state = ST_SOCKS_REPLY;
        *again = true;
        return IO_PROXY_MORE;
    case ST_SOCKS_REPLY: {
        size_t need;

        if (p->in_len < 5)
            return IO_PROXY_MORE;
        if (p->in[0] != 5)
            return fail(p, "sent a malformed reply");
        if (p->in[1] != 0)
            return fail(p, "could not reach %s:%u: %s (reply %u)", p->host, (unsigned)p->port,
                        socks_reply_text(p->in[1]), p->in[1]);
        switch (p->in[3]) {
        case 1:
            need = 4 + 4 + 2;
            break;
        case 4:
            need = 4 + 16 + 2;
            break;
        case 3:
            need = 4 + 1 + (size_t)p->in[4] + 2;
            break;
        default:
            return fail(p, "sent a reply with an unknown address type (%u)", p->in[3]);
        }
        if (p->in_len < need)
            return IO_PROXY_MORE;
        consume(p, need);
        p->state = ST_DONE;
        io_proxy_clear(p);
        return IO_PROXY_DONE;
    }
    default:
        return fail(p, "proxy handshake: internal state %d", p->state);
    }
}

/* SOCKS5 answers are short and fixed: gather them, step while a whole one is there. */
static int socks_feed(struct io_proxy *p, const uint8_t *in, size_t len, size_t *used, uint8_t *out,
                      size_t *n)
{
    size_t take = len;
    bool again;
    int rc;

    /* take only what the handshake can need: the rest comes from the target */
    if (take > 262 - p->in_len)
        take = 262 - p->in_len;
    memcpy(p->in + p->in_len, in, take);
    p->in_len += take;
    do {
        size_t k = 0;

        rc = socks_step(p, out + *n, &k, &again);
        *n += k;
    } while (rc == IO_PROXY_MORE && again);
    if (rc == IO_PROXY_DONE) {
        /* p->in holds what came after the reply: it was not the handshake's */
        *used = take - p->in_len;
        p->in_len = 0;
        return rc;
    }
    *used = take;
    return rc;
}

/* ---- the API ------------------------------------------------------------------------------ */

int io_proxy_start(struct io_proxy *p, enum io_proxy_kind kind, const char *host, uint16_t port,
                   const char *user, const char *pass, size_t pass_len, uint8_t *out, size_t cap,
                   size_t *n)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->port = port;
    *n = 0;
    if (strlen(host) > 255 || cap < IO_PROXY_OUT_MAX) {
        snprintf(p->why, sizeof(p->why), "proxy: host name too long");
        return -1;
    }
    snprintf(p->host, sizeof(p->host), "%s", host);
    if (user) {
        size_t ul = strlen(user);

        if (ul > 255 || pass_len > 255) {
            snprintf(p->why, sizeof(p->why), "proxy: user name or password too long");
            return -1;
        }
        memcpy(p->user, user, ul);
        p->user_len = ul;
        if (pass_len)
            memcpy(p->pass, pass, pass_len);
        p->pass_len = pass_len;
        p->auth = true;
    }
    if (kind == IO_PROXY_HTTP) {
        p->state = ST_HTTP_HEAD;
        if (http_request(p, out, cap, n) < 0) {
            io_proxy_clear(p);
            snprintf(p->why, sizeof(p->why), "proxy: request too long");
            return -1;
        }
        return 0;
    }
    out[0] = 5;
    if (p->auth) {
        out[1] = 2;
        out[2] = 0; /* no authentication */
        out[3] = 2; /* user name and password */
        *n = 4;
    } else {
        out[1] = 1;
        out[2] = 0;
        *n = 3;
    }
    p->state = ST_SOCKS_METHOD;
    return 0;
}

int io_proxy_feed(struct io_proxy *p, const uint8_t *in, size_t len, size_t *used, uint8_t *out,
                  size_t cap, size_t *n)
{
    *n = 0;
    *used = 0;
    if (cap < IO_PROXY_OUT_MAX)
        return fail(p, "proxy: output buffer too small");
    if (p->state == ST_DONE)
        return IO_PROXY_DONE;
    if (p->kind == IO_PROXY_HTTP)
        return http_feed(p, in, len, used);
    return socks_feed(p, in, len, used, out, n);
}
