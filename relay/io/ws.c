/*
 * ws.c: the WebSocket client of ws.h: the upgrade (RFC 6455 §4.1, §4.2.2) and the framing
 * (§5). The Sec-WebSocket-Accept check uses OpenSSL's SHA-1.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/sha.h>

#include "io/proxy.h"
#include "io/ws.h"

#define GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

size_t io_ws_request(struct io_ws *w, const char *host, const char *path, const char *subproto,
                     const uint8_t nonce[16], char *out, size_t cap)
{
    char key[32], cat[96];
    uint8_t sha[SHA_DIGEST_LENGTH];
    int n;

    memset(w, 0, sizeof(*w));
    io_base64(nonce, 16, key);
    snprintf(cat, sizeof(cat), "%s%s", key, GUID);
    SHA1((const unsigned char *)cat, strlen(cat), sha);
    io_base64(sha, sizeof(sha), w->accept);
    snprintf(w->subproto, sizeof(w->subproto), "%s", subproto);
    n = snprintf(out, cap,
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: %s\r\n"
                 "User-Agent: mqtt-relay\r\n"
                 "\r\n",
                 path, host, key, subproto);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The value of header name in the answer head (lines after the status line), trimmed, or NULL.
 * *vl: its length. */
static const char *header(const struct io_ws *w, size_t end, const char *name, size_t *vl)
{
    size_t nl = strlen(name);
    const char *p = memchr(w->head, '\n', end), *stop = w->head + end;

    while (p && p + 1 < stop) {
        const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(stop - line));
        size_t ll;

        if (!eol)
            break;
        ll = (size_t)(eol - line);
        if (ll > nl && line[nl] == ':' && !strncasecmp(line, name, nl)) {
            const char *v = line + nl + 1, *e = eol;

            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *vl = (size_t)(e - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

/* token (e.g. "upgrade") is one of the comma-separated values in [v, v+n). */
static bool has_token(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token);

    while (n) {
        size_t k = 0;

        while (n && (*v == ' ' || *v == ','))
            v++, n--;
        while (k < n && v[k] != ',')
            k++;
        size_t e = k;
        while (e && v[e - 1] == ' ')
            e--;
        if (e == tl && !strncasecmp(v, token, tl))
            return true;
        v += k;
        n -= k;
    }
    return false;
}

int io_ws_response(struct io_ws *w, const uint8_t *in, size_t len, size_t *used, char *why,
                   size_t whylen)
{
    size_t old = w->head_len, take = len, end = 0, vl;
    const char *v;

    if (take > sizeof(w->head) - w->head_len)
        take = sizeof(w->head) - w->head_len;
    memcpy(w->head + w->head_len, in, take);
    w->head_len += take;
    for (size_t i = old >= 3 ? old - 3 : 0; i + 3 < w->head_len; i++)
        if (!memcmp(w->head + i, "\r\n\r\n", 4)) {
            end = i + 4;
            break;
        }
    *used = take;
    if (!end) {
        if (memcmp(w->head, "HTTP/", w->head_len < 5 ? w->head_len : 5)) {
            snprintf(why, whylen, "WebSocket upgrade failed: the server did not answer in HTTP");
            return IO_WS_FAIL;
        }
        if (w->head_len == sizeof(w->head)) {
            snprintf(why, whylen, "WebSocket upgrade failed: answer longer than %u bytes",
                     (unsigned)sizeof(w->head));
            return IO_WS_FAIL;
        }
        return IO_WS_MORE;
    }
    *used = end - old;
    if (end < 12 || memcmp(w->head, "HTTP/1.", 7) || w->head[8] != ' ' ||
        !isdigit((unsigned char)w->head[9]) || !isdigit((unsigned char)w->head[10]) ||
        !isdigit((unsigned char)w->head[11])) {
        snprintf(why, whylen, "WebSocket upgrade failed: the server did not answer in HTTP");
        return IO_WS_FAIL;
    }
    w->status =
        (unsigned)((w->head[9] - '0') * 100 + (w->head[10] - '0') * 10 + (w->head[11] - '0'));
    if (w->status != 101) {
        snprintf(why, whylen, "WebSocket upgrade refused: HTTP %u", w->status);
        return IO_WS_FAIL;
    }
    v = header(w, end, "Upgrade", &vl);
    if (!v || !has_token(v, vl, "websocket")) {
        snprintf(why, whylen, "WebSocket upgrade failed: no \"Upgrade: websocket\" in the answer");
        return IO_WS_FAIL;
    }
    v = header(w, end, "Connection", &vl);
    if (!v || !has_token(v, vl, "upgrade")) {
        snprintf(why, whylen, "WebSocket upgrade failed: no \"Connection: Upgrade\" in the answer");
        return IO_WS_FAIL;
    }
    v = header(w, end, "Sec-WebSocket-Accept", &vl);
    if (!v || vl != strlen(w->accept) || memcmp(v, w->accept, vl)) {
        snprintf(why, whylen, "WebSocket upgrade failed: wrong Sec-WebSocket-Accept");
        return IO_WS_FAIL;
    }
    /* no subprotocol named: the server took ours (lws and most brokers say it) */
    v = header(w, end, "Sec-WebSocket-Protocol", &vl);
    if (v && (vl != strlen(w->subproto) || strncasecmp(v, w->subproto, vl))) {
        snprintf(why, whylen, "WebSocket upgrade refused: subprotocol not accepted (\"%s\" asked)",
                 w->subproto);
        return IO_WS_FAIL;
    }
    if (header(w, end, "Sec-WebSocket-Extensions", &vl) && vl) {
        snprintf(why, whylen,
                 "WebSocket upgrade failed: the server chose an extension we did "
                 "not offer");
        return IO_WS_FAIL;
    }
    return IO_WS_OK;
}

/* ---- frames ------------------------------------------------------------------------------- */

size_t io_ws_frame_header(uint8_t *hdr, uint8_t opcode, uint64_t len, const uint8_t mask[4])
{
    size_t o = 0;

    hdr[o++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[o++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        hdr[o++] = 0x80 | 126;
        hdr[o++] = (uint8_t)(len >> 8);
        hdr[o++] = (uint8_t)len;
    } else {
        hdr[o++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[o++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(hdr + o, mask, 4);
    return o + 4;
}

void io_ws_mask(uint8_t *p, size_t n, const uint8_t mask[4])
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mask[i & 3];
}

size_t io_ws_control(uint8_t *out, uint8_t opcode, const uint8_t *payload, size_t n,
                     const uint8_t mask[4])
{
    size_t h;

    if (n > IO_WS_CTL_MAX)
        n = IO_WS_CTL_MAX;
    h = io_ws_frame_header(out, opcode, n, mask);
    if (n)
        memcpy(out + h, payload, n);
    io_ws_mask(out + h, n, mask);
    return h + n;
}

/* How long the header in w->hdr is once its first two bytes are there. */
static size_t hdr_need(const struct io_ws *w)
{
    uint8_t l = w->hdr[1] & 0x7f;

    return 2 + (l == 126 ? 2 : l == 127 ? 8 : 0) + (w->hdr[1] & 0x80 ? 4 : 0);
}

/* A complete header: checks it and starts its payload. */
static int frame_start(struct io_ws *w, char *why, size_t whylen)
{
    uint8_t b0 = w->hdr[0], l = w->hdr[1] & 0x7f, op = b0 & 0x0f;
    uint64_t len = l;

    if (l == 126)
        len = (uint64_t)w->hdr[2] << 8 | w->hdr[3];
    else if (l == 127)
        for (int i = 0; i < 8; i++)
            len = len << 8 | w->hdr[2 + i];
    if (w->hdr[1] & 0x80) {
        snprintf(why, whylen, "WebSocket: the server sent a masked frame");
        return IO_WS_FAIL;
    }
    if (b0 & 0x70) {
        snprintf(why, whylen, "WebSocket: frame with reserved bits set");
        return IO_WS_FAIL;
    }
    if (l == 127 && len >> 63) {
        snprintf(why, whylen, "WebSocket: invalid frame length");
        return IO_WS_FAIL;
    }
    if (op >= 8) {
        if (!(b0 & 0x80) || len > IO_WS_CTL_MAX ||
            (op != IO_WS_OP_CLOSE && op != IO_WS_OP_PING && op != IO_WS_OP_PONG)) {
            snprintf(why, whylen, "WebSocket: invalid control frame (opcode %u)", op);
            return IO_WS_FAIL;
        }
    } else if (op == IO_WS_OP_TEXT) {
        snprintf(why, whylen, "WebSocket: a text frame (MQTT is sent in binary frames)");
        return IO_WS_FAIL;
    } else if (op == IO_WS_OP_BINARY) {
        if (w->fragmented) {
            snprintf(why, whylen, "WebSocket: a new message inside a fragmented one");
            return IO_WS_FAIL;
        }
        w->fragmented = !(b0 & 0x80);
    } else if (op == IO_WS_OP_CONT) {
        if (!w->fragmented) {
            snprintf(why, whylen, "WebSocket: a continuation frame with no message open");
            return IO_WS_FAIL;
        }
        w->fragmented = !(b0 & 0x80);
    } else {
        snprintf(why, whylen, "WebSocket: unknown opcode %u", op);
        return IO_WS_FAIL;
    }
    w->opcode = op;
    w->left = len;
    w->in_frame = true;
    w->ctl_len = 0;
    return IO_WS_OK;
}

/* A control frame's payload is complete. */
static int control_done(struct io_ws *w, char *why, size_t whylen)
{
    if (w->opcode == IO_WS_OP_PING) {
        memcpy(w->pong, w->ctl, w->ctl_len);
        w->pong_len = w->ctl_len;
        w->pong_due = true;
        return IO_WS_OK;
    }
    if (w->opcode != IO_WS_OP_CLOSE)
        return IO_WS_OK; /* a Pong: nothing to do */
    w->close_code = w->ctl_len >= 2 ? (uint16_t)(w->ctl[0] << 8 | w->ctl[1]) : 1005;
    if (w->ctl_len > 2) {
        char reason[IO_WS_CTL_MAX];
        size_t n = 0;

        for (size_t i = 2; i < w->ctl_len && n < 100; i++)
            reason[n++] = isprint(w->ctl[i]) ? (char)w->ctl[i] : '?';
        reason[n] = '\0';
        snprintf(why, whylen, "WebSocket closed by server (%u: %s)", w->close_code, reason);
    } else {
        snprintf(why, whylen, "WebSocket closed by server (%u)", w->close_code);
    }
    return IO_WS_CLOSED;
}

int io_ws_decode(struct io_ws *w, const uint8_t *in, size_t len, io_ws_data_fn fn, void *arg,
                 char *why, size_t whylen)
{
    while (len) {
        int rc;

        if (!w->in_frame) {
            w->hdr[w->hdr_len++] = *in++;
            len--;
            if (w->hdr_len < 2 || w->hdr_len < hdr_need(w))
                continue;
            w->hdr_len = 0;
            if ((rc = frame_start(w, why, whylen)) != IO_WS_OK)
                return rc;
        } else {
            size_t n = w->left < len ? (size_t)w->left : len;

            if (w->opcode >= 8) {
                memcpy(w->ctl + w->ctl_len, in, n);
                w->ctl_len += n;
            } else if (n && (rc = fn(arg, in, n)) < 0) {
                w->left -= n;
                if (!w->left)
                    w->in_frame = false;
                return rc;
            }
            in += n;
            len -= n;
            w->left -= n;
        }
        if (w->in_frame && !w->left) {
            w->in_frame = false;
            if (w->opcode >= 8 && (rc = control_done(w, why, whylen)) != IO_WS_OK)
                return rc;
        }
    }
    return IO_WS_OK;
}
