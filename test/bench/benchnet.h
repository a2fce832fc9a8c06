/*
 * benchnet: the few socket and buffer helpers shared by loadgen and fakebroker.
 *
 * Loopback only: every address is 127.0.0.1. Sockets are non-blocking once connected or
 * accepted. Errors come back as negative errno values.
 */
#ifndef BENCHNET_H
#define BENCHNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in nanoseconds: the one clock every bench process shares on this machine. */
uint64_t bn_now_ns(void);

/* Connects to 127.0.0.1:port (blocking connect, then non-blocking), TCP_NODELAY set to nodelay.
 * The socket, or -errno. */
int bn_connect(uint16_t port, bool nodelay);

/* Listens on 127.0.0.1:port (0 = any free port; *bound receives the port). The socket, or
 * -errno. */
int bn_listen(uint16_t port, uint16_t *bound);

/* Accepts one connection (blocking), made non-blocking, TCP_NODELAY set to nodelay. */
int bn_accept(int lfd, bool nodelay);

int bn_set_nodelay(int fd, bool on);

/* An input buffer: bytes [off, len) not consumed yet. */
struct bn_in {
    uint8_t *p;
    size_t off, len, cap;
};

/* An output buffer: bytes [off, len) not written yet. */
struct bn_out {
    uint8_t *p;
    size_t off, len, cap;
};

int bn_in_init(struct bn_in *b, size_t cap);
int bn_out_init(struct bn_out *b, size_t cap);

/* Reads once into b (moving unconsumed bytes to the front first). Bytes read (> 0), 0 at end
 * of stream, -EAGAIN when nothing is there, or -errno. */
ssize_t bn_read(int fd, struct bn_in *b);

/* Writes what b holds, as much as the socket takes. 0 when b is empty afterwards (and reset),
 * 1 when bytes remain, or -errno. */
int bn_flush(int fd, struct bn_out *b);

/* Free room at the end of b (compacting first when that gives more). */
size_t bn_out_room(struct bn_out *b);

/* Waits up to timeout_ms until fd is readable (or writable when want_write), -1 = forever.
 * 1 when ready, 0 on timeout, -errno. */
int bn_wait(int fd, bool want_write, int timeout_ms);

/* Writes all of p[0..n) to a non-blocking socket, waiting as needed (at most timeout_ms per
 * wait). 0 or -errno (-ETIMEDOUT). */
int bn_write_all(int fd, const uint8_t *p, size_t n, int timeout_ms);

/* Reads until one whole MQTT packet is in b, waiting at most timeout_ms in all; returns 0 with
 * *pkt / *len pointing at it (consumed from b), or -errno (-ETIMEDOUT, -ECONNRESET at end of
 * stream, -EPROTO for bytes that are not MQTT). */
int bn_read_packet(int fd, struct bn_in *b, int timeout_ms, const uint8_t **pkt, size_t *len);

#endif /* BENCHNET_H */
