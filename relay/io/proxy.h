/*
 * proxy.h: the client side of a proxy handshake as a state machine over bytes (no socket, no
 * clock, no libwebsockets): HTTP CONNECT (RFC 9110 §9.3.6, Basic authentication) and SOCKS5
 * (RFC 1928, user name and password per RFC 1929, the target sent as a name: the proxy
 * resolves it). link.c runs it on a raw link before TLS and WebSocket; its unit tests feed it
 * bytes one at a time and all at once.
 *
 * The password is kept only until it was sent, then wiped (io_proxy_clear() wipes all).
 */
#ifndef RELAY_IO_PROXY_H
#define RELAY_IO_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum io_proxy_kind { IO_PROXY_HTTP = 1, IO_PROXY_SOCKS5 = 2 };

enum {
    IO_PROXY_DONE = 0,  /* the tunnel is open */
    IO_PROXY_MORE = 1,  /* more of the proxy's answer is needed (send *n bytes of out first) */
    IO_PROXY_FAIL = -1, /* refused or broken: p->why says why */
};

#define IO_PROXY_IN_MAX 8192 /* the longest HTTP answer head we read */
#define IO_PROXY_OUT_MAX 1024

struct io_proxy {
    enum io_proxy_kind kind;
    int state;
    char host[256]; /* the target as the proxy is asked for it */
    uint16_t port;
    char user[256];
    char pass[256];
    size_t user_len, pass_len;
    bool auth;
    uint8_t in[IO_PROXY_IN_MAX]; /* the answer gathered so far */
    size_t in_len;
    char why[200];
};

/* Starts a handshake to host:port (a name, or an IPv4/IPv6 literal without brackets) through a
 * proxy of kind; user NULL = no authentication. Writes the first request into out (cap >=
 * IO_PROXY_OUT_MAX), *n its length. 0, or -1 with why (a user name or password too long, a host
 * too long). */
int io_proxy_start(struct io_proxy *p, enum io_proxy_kind kind, const char *host, uint16_t port,
                   const char *user, const char *pass, size_t pass_len, uint8_t *out, size_t cap,
                   size_t *n);
/* Feeds bytes from the proxy. *used: how many of them belong to the handshake (with
 * IO_PROXY_DONE the rest already come from the target, through the tunnel). *n: bytes to send
 * next (out, cap >= IO_PROXY_OUT_MAX), 0 if none. Returns IO_PROXY_DONE, IO_PROXY_MORE or
 * IO_PROXY_FAIL (why set). */
int io_proxy_feed(struct io_proxy *p, const uint8_t *in, size_t len, size_t *used, uint8_t *out,
                  size_t cap, size_t *n);
/* Wipes the credentials. */
void io_proxy_clear(struct io_proxy *p);
/* The standard Base64 of in into out (NUL-terminated); out needs 4 * ((n + 2) / 3) + 1 bytes.
 * Returns the length. */
size_t io_base64(const uint8_t *in, size_t n, char *out);

#endif
