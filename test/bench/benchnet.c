/* benchnet: socket and buffer helpers for loadgen and fakebroker (see benchnet.h). */
#define _GNU_SOURCE
#include "benchnet.h"

#include "mqttcodec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t bn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int bn_set_nodelay(int fd, bool on)
{
    int v = on ? 1 : 0;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) < 0)
        return -errno;
    return 0;
}

static void loopback(struct sockaddr_in *sa, uint16_t port)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

int bn_connect(uint16_t port, bool nodelay)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), e;
    if (fd < 0)
        return -errno;
    loopback(&sa, port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || bn_set_nodelay(fd, nodelay) < 0 ||
        set_nonblock(fd) < 0) {
        e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int bn_listen(uint16_t port, uint16_t *bound)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int one = 1, e;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    loopback(&sa, port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        e = -errno;
        close(fd);
        return e;
    }
    if (bound)
        *bound = ntohs(sa.sin_port);
    return fd;
}

int bn_accept(int lfd, bool nodelay)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), e;
    if (fd < 0)
        return -errno;
    if (bn_set_nodelay(fd, nodelay) < 0 || set_nonblock(fd) < 0) {
        e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int bn_in_init(struct bn_in *b, size_t cap)
{
    b->p = malloc(cap);
    b->off = b->len = 0;
    b->cap = cap;
    return b->p ? 0 : -ENOMEM;
}

int bn_out_init(struct bn_out *b, size_t cap)
{
    b->p = malloc(cap);
    b->off = b->len = 0;
    b->cap = cap;
    return b->p ? 0 : -ENOMEM;
}

ssize_t bn_read(int fd, struct bn_in *b)
{
    ssize_t n;
    if (b->off > 0) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len == b->cap)
        return -ENOBUFS; /* a packet larger than the buffer: never happens here */
    n = read(fd, b->p + b->len, b->cap - b->len);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    b->len += (size_t)n;
    return n;
}

int bn_flush(int fd, struct bn_out *b)
{
    while (b->off < b->len) {
        ssize_t n = write(fd, b->p + b->off, b->len - b->off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            if (errno == EINTR)
                continue;
            return -errno;
        }
        b->off += (size_t)n;
    }
    b->off = b->len = 0;
    return 0;
}

size_t bn_out_room(struct bn_out *b)
{
    if (b->off > 0 && b->off == b->len)
        b->off = b->len = 0;
    else if (b->off > b->cap / 2) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    return b->cap - b->len;
}

int bn_wait(int fd, bool want_write, int timeout_ms)
{
    struct pollfd pf = {.fd = fd, .events = (short)(want_write ? POLLOUT : POLLIN)};
    int r = poll(&pf, 1, timeout_ms);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    return r > 0;
}

int bn_write_all(int fd, const uint8_t *p, size_t n, int timeout_ms)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            int r;
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
            r = bn_wait(fd, true, timeout_ms);
            if (r < 0)
                return r;
            if (r == 0)
                return -ETIMEDOUT;
            continue;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int bn_read_packet(int fd, struct bn_in *b, int timeout_ms, const uint8_t **pkt, size_t *len)
{
    uint64_t deadline = bn_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        struct mqc_frame f;
        int r = mqc_frame_check(b->p + b->off, b->len - b->off, 0, &f);
        ssize_t n;
        if (r == MQC_OK) {
            *pkt = b->p + b->off;
            *len = f.total;
            b->off += f.total;
            return 0;
        }
        if (r < 0)
            return -EPROTO;
        n = bn_read(fd, b);
        if (n == 0)
            return -ECONNRESET;
        if (n == -EAGAIN) {
            uint64_t now = bn_now_ns();
            if (now >= deadline)
                return -ETIMEDOUT;
            r = bn_wait(fd, false, (int)((deadline - now) / 1000000u) + 1);
            if (r < 0)
                return r;
        } else if (n < 0) {
            return (int)n;
        }
    }
}
