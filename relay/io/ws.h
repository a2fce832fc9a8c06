/*
 * ws.h: the client side of WebSocket (RFC 6455) as MQTT uses it (MQTT 5.0 §6): the upgrade
 * request and the check of its answer, then binary frames both ways. Bytes in, bytes out: no
 * socket, no clock (link.c moves the bytes; the masking keys and the nonce come from the
 * caller). MQTT treats the frames' payloads as one byte stream, so frame boundaries mean
 * nothing here: data frames are handed up as they are read, however they are split.
 */
#ifndef RELAY_IO_WS_H
#define RELAY_IO_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IO_WS_HEAD_MAX 8192 /* the longest upgrade answer head we read */
#define IO_WS_FRAME_HDR 14  /* the longest client frame header (64-bit length, mask) */
#define IO_WS_CTL_MAX 125   /* a control frame's payload */

enum {
    IO_WS_OK = 0,
    IO_WS_MORE = 1,   /* the upgrade answer is not complete yet */
    IO_WS_CLOSED = 2, /* the server sent a Close frame: answer it (io_ws_close_frame), end */
    IO_WS_FAIL = -1,  /* why says what was wrong; close the link */
};

struct io_ws {
    char accept[32]; /* the Sec-WebSocket-Accept the server must answer */
    char subproto[16];
    char head[IO_WS_HEAD_MAX]; /* the upgrade answer gathered so far */
    size_t head_len;
    unsigned status; /* the answer's HTTP status */
    /* frame decoding */
    uint8_t hdr[IO_WS_FRAME_HDR];
    size_t hdr_len;
    uint64_t left;   /* payload bytes of the current frame still to come */
    uint8_t opcode;  /* of the current frame */
    bool in_frame;   /* hdr complete, payload being read */
    bool fragmented; /* a data message is open (continuations allowed) */
    uint8_t ctl[IO_WS_CTL_MAX];
    size_t ctl_len;
    bool pong_due; /* a Ping arrived: answer ctl_pong[0..pong_len) */
    uint8_t pong[IO_WS_CTL_MAX];
    size_t pong_len;
    uint16_t close_code; /* from the server's Close frame; 1005 = none given */
};

/* The upgrade request for path on host (the Host header: "name" or "name:port"), offering
 * subprotocol subproto; nonce: 16 random bytes. Writes it into out (NUL-terminated), returns
 * its length, or 0 when cap is too small. */
size_t io_ws_request(struct io_ws *w, const char *host, const char *path, const char *subproto,
                     const uint8_t nonce[16], char *out, size_t cap);
/* Feeds the server's answer to the upgrade. IO_WS_MORE: not complete yet (all of in taken).
 * IO_WS_OK: upgraded; *used bytes were the answer, the rest are frames. IO_WS_FAIL: refused
 * (status 101 missing, wrong accept key or subprotocol, an extension); why says so. */
int io_ws_response(struct io_ws *w, const uint8_t *in, size_t len, size_t *used, char *why,
                   size_t whylen);

/* Receives application bytes from data frames; <0 stops decoding (returned as is). */
typedef int (*io_ws_data_fn)(void *arg, const uint8_t *p, size_t n);
/* Decodes frames from the server: data payloads go to fn as they come; a Ping sets pong_due
 * (answer with io_ws_frame(PONG)); a Close returns IO_WS_CLOSED with why (its code and reason).
 * A masked, reserved, text or malformed frame is IO_WS_FAIL with why. */
int io_ws_decode(struct io_ws *w, const uint8_t *in, size_t len, io_ws_data_fn fn, void *arg,
                 char *why, size_t whylen);

enum {
    IO_WS_OP_CONT = 0,
    IO_WS_OP_TEXT = 1,
    IO_WS_OP_BINARY = 2,
    IO_WS_OP_CLOSE = 8,
    IO_WS_OP_PING = 9,
    IO_WS_OP_PONG = 10
};
/* A client frame header (FIN set, masked with mask) for a payload of len bytes, into hdr
 * (IO_WS_FRAME_HDR bytes); returns its length (6, 8 or 14). */
size_t io_ws_frame_header(uint8_t *hdr, uint8_t opcode, uint64_t len, const uint8_t mask[4]);
/* Masks (or unmasks) p[0..n) in place, the payload starting at offset 0 of the frame. */
void io_ws_mask(uint8_t *p, size_t n, const uint8_t mask[4]);
/* A whole masked control frame (Close with code, Ping, Pong with payload) into out (at least
 * IO_WS_FRAME_HDR + IO_WS_CTL_MAX bytes); returns its length. */
size_t io_ws_control(uint8_t *out, uint8_t opcode, const uint8_t *payload, size_t n,
                     const uint8_t mask[4]);

#endif
