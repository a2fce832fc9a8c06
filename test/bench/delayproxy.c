/*
 * delayproxy: a TCP proxy that delivers every byte a fixed time after it read it, per
 * direction, with no bandwidth cap: a WAN link for the bench (issue 15), since this kernel has
 * no netem.
 *
 *   delayproxy -t HOST:PORT [-l [ADDR:]PORT] [-d MS] [-u MS] [-w MS] [-b SIZE] [-s]
 *
 *   -t HOST:PORT   where each accepted connection is forwarded (resolved once, at start)
 *   -l [ADDR:]PORT where to listen (default 127.0.0.1:0, a free port)
 *   -d MS          one-way delay in both directions, milliseconds (decimals allowed; default 0)
 *   -u MS          the delay client -> target only ("up")
 *   -w MS          the delay target -> client only ("down")
 *   -b SIZE        bytes held per direction per connection (default 32M; k and M suffixes):
 *                  past it the proxy stops reading that side (TCP back-pressure), so it must
 *                  exceed rate x delay (50 MB/s x 100 ms = 5 MB)
 *   -s             print the counters on stderr at exit (SIGINT or SIGTERM)
 *
 * It prints "listening ADDR:PORT" on stdout (flushed) once it listens, and runs until SIGINT or
 * SIGTERM. A 50 ms RTT link: `delayproxy -t 127.0.0.1:1883 -d 25`.
 *
 * How: one thread, epoll (edge-triggered). Each direction of each connection has a ring of
 * bytes and a ring of records (end offset, due time = read time + delay): a read() appends its
 * bytes and one record (reads of the same instant share one), nothing is done per byte. A
 * timerfd per direction (CLOCK_MONOTONIC, absolute, ns) fires at the due time of the oldest
 * record; everything due is then released and written with writev(). TCP_NODELAY on both
 * sides. An EOF is passed on (shutdown(SHUT_WR)) once the bytes before it are delivered, at its
 * own due time; an error or reset closes both sides at once.
 *
 * What it does not model: TCP's own round trips. The kernel ACKs at once on loopback, so the
 * sender's congestion window never sees the delay (no slow start over the WAN), and a TCP
 * connect() completes at once (the first bytes then take the one-way delay): application
 * round trips (MQTT CONNECT/CONNACK, PUBLISH/PUBACK, windows) take 2 x delay, as on a WAN.
 *
 * Counters (-s): connections, bytes and reads/writes per direction, the most bytes held, and
 * how late releases were against their due time (the maximum, and how many were over 1 ms).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define RECS (1u << 16) /* records per direction (reads in flight) */
#define READ_BUDGET 64  /* reads or writes per direction per turn, then others get a turn */

enum kind { K_LISTEN, K_SIGNAL, K_CLIENT, K_UPSTREAM, K_TIMER_UP, K_TIMER_DOWN };

struct tag {
    enum kind kind;
    struct conn *c;
};

struct rec {
    uint64_t end; /* ring offset just past the bytes of this record */
    uint64_t due; /* CLOCK_MONOTONIC ns */
};

struct dir {
    struct conn *c;
    int idx;        /* 0 up (client -> target), 1 down */
    int *src, *dst; /* the conn's fds */
    uint64_t delay;
    uint8_t *buf;
    uint64_t cap, mask;
    uint64_t rd, rel, wr; /* bytes read, released (due), written: wr <= rel <= rd */
    struct rec *recs;
    uint32_t rhead, rtail; /* records in [rhead, rtail) */
    int tfd;
    struct tag ttag;
    uint64_t timer_at; /* armed for this due time, 0 when not armed */
    bool readable, writable, eof, shut, pending;
    uint64_t eof_due;
};

struct conn {
    int cfd, ufd;
    struct tag ctag, utag;
    struct dir d[2];
    bool connecting, dead;
    struct conn *next; /* the dead list */
};

static struct {
    uint64_t conns, open, bytes[2], reads[2], writes[2], held_max, late_max, late_1ms, releases;
} st;

static int ep;
static uint64_t bufsize = 32u << 20, delay_up, delay_down;
static struct sockaddr_storage target;
static socklen_t target_len;
static struct dir **pendq; /* directions with more to do than one turn allowed */
static size_t npend, pendcap;
static struct conn *dead;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "delayproxy: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void ep_add(int fd, uint32_t events, struct tag *t)
{
    struct epoll_event ev = {.events = events, .data.ptr = t};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");
}

static void conn_close(struct conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    close(c->cfd);
    close(c->ufd);
    for (int i = 0; i < 2; i++)
        close(c->d[i].tfd);
    c->next = dead;
    dead = c;
    st.open--;
}

static void conn_free(struct conn *c)
{
    for (int i = 0; i < 2; i++) {
        free(c->d[i].buf);
        free(c->d[i].recs);
    }
    free(c);
}

static void mark_pending(struct dir *d)
{
    if (d->pending)
        return;
    if (npend == pendcap) {
        pendcap = pendcap ? 2 * pendcap : 64;
        pendq = realloc(pendq, pendcap * sizeof *pendq);
        if (!pendq)
            die("realloc");
    }
    d->pending = true;
    pendq[npend++] = d;
}

static void arm(struct dir *d, uint64_t now)
{
    uint64_t due = 0;
    if (d->rhead != d->rtail)
        due = d->recs[d->rhead & (RECS - 1)].due;
    else if (d->eof && !d->shut && d->eof_due > now)
        due = d->eof_due;
    if (!due || due == d->timer_at)
        return;
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(due / 1000000000u), .tv_nsec = (long)(due % 1000000000u)}};
    if (timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        die("timerfd_settime");
    d->timer_at = due;
}

/* Reads, releases and writes what it can; returns false when the connection was closed. */
static bool service(struct dir *d)
{
    struct conn *c = d->c;
    int budget = READ_BUDGET;
    for (;;) {
        bool progress = false;
        uint64_t now = now_ns();
        /* release what is due */
        while (d->rhead != d->rtail && d->recs[d->rhead & (RECS - 1)].due <= now) {
            struct rec *r = &d->recs[d->rhead & (RECS - 1)];
            uint64_t late = now - r->due;
            if (late > st.late_max)
                st.late_max = late;
            if (late > 1000000u)
                st.late_1ms++;
            st.releases++;
            d->rel = r->end;
            d->rhead++;
        }
        /* write what was released */
        if (d->wr < d->rel && d->writable && budget > 0) {
            uint64_t pos = d->wr & d->mask, n = d->rel - d->wr;
            struct iovec iov[2];
            int cnt = 1;
            iov[0].iov_base = d->buf + pos;
            iov[0].iov_len = n < d->cap - pos ? n : d->cap - pos;
            if (iov[0].iov_len < n) {
                iov[1].iov_base = d->buf;
                iov[1].iov_len = n - iov[0].iov_len;
                cnt = 2;
            }
            ssize_t w = writev(*d->dst, iov, cnt);
            budget--;
            if (w > 0) {
                d->wr += (uint64_t)w;
                st.writes[d->idx]++;
                progress = true;
            } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                d->writable = false;
            } else if (w < 0 && errno != EINTR) {
                conn_close(c);
                return false;
            }
        }
        /* read what came, if there is room */
        uint64_t held = d->rd - d->wr;
        if (d->readable && !d->eof && held < d->cap && d->rtail - d->rhead < RECS && budget > 0) {
            uint64_t pos = d->rd & d->mask, room = d->cap - held;
            struct iovec iov[2];
            int cnt = 1;
            iov[0].iov_base = d->buf + pos;
            iov[0].iov_len = room < d->cap - pos ? room : d->cap - pos;
            if (iov[0].iov_len < room) {
                iov[1].iov_base = d->buf;
                iov[1].iov_len = room - iov[0].iov_len;
                cnt = 2;
            }
            ssize_t r = readv(*d->src, iov, cnt);
            budget--;
            if (r > 0) {
                /* the clock after the read: data that came during this turn is never early */
                uint64_t due = now_ns() + d->delay;
                d->rd += (uint64_t)r;
                st.bytes[d->idx] += (uint64_t)r;
                st.reads[d->idx]++;
                if (d->rd - d->wr > st.held_max)
                    st.held_max = d->rd - d->wr;
                struct rec *last = &d->recs[(d->rtail - 1) & (RECS - 1)];
                if (d->rtail != d->rhead && last->due == due) {
                    last->end = d->rd;
                } else {
                    d->recs[d->rtail & (RECS - 1)] = (struct rec){d->rd, due};
                    d->rtail++;
                }
                progress = true;
            } else if (r == 0) {
                d->eof = true;
                d->eof_due = now_ns() + d->delay;
                progress = true;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                d->readable = false;
            } else if (errno != EINTR) {
                conn_close(c);
                return false;
            }
        }
        /* pass an EOF on once everything before it is delivered and it is due */
        if (d->eof && !d->shut && d->wr == d->rd && d->eof_due <= now) {
            shutdown(*d->dst, SHUT_WR);
            d->shut = true;
            if (c->d[0].shut && c->d[1].shut) {
                conn_close(c);
                return false;
            }
        }
        if (!progress)
            break;
        if (budget <= 0) {
            mark_pending(d); /* more to do: after the others had a turn */
            break;
        }
    }
    arm(d, now_ns());
    return true;
}

static void on_accept(int lfd)
{
    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                fprintf(stderr, "delayproxy: accept: %s\n", strerror(errno));
            return;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c)
            die("calloc");
        c->cfd = cfd;
        c->ufd = socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->ufd < 0)
            die("socket");
        nodelay(cfd);
        nodelay(c->ufd);
        if (connect(c->ufd, (struct sockaddr *)&target, target_len) < 0 && errno != EINPROGRESS) {
            fprintf(stderr, "delayproxy: connect to target: %s\n", strerror(errno));
            close(cfd);
            close(c->ufd);
            free(c);
            continue;
        }
        c->connecting = true;
        for (int i = 0; i < 2; i++) {
            struct dir *d = &c->d[i];
            d->c = c;
            d->idx = i;
            d->src = i == 0 ? &c->cfd : &c->ufd;
            d->dst = i == 0 ? &c->ufd : &c->cfd;
            d->cap = bufsize;
            d->mask = bufsize - 1;
            d->buf = malloc(bufsize);
            d->recs = malloc(RECS * sizeof *d->recs);
            if (!d->buf || !d->recs)
                die("malloc");
            d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
            if (d->tfd < 0)
                die("timerfd_create");
            d->ttag = (struct tag){i == 0 ? K_TIMER_UP : K_TIMER_DOWN, c};
            ep_add(d->tfd, EPOLLIN, &d->ttag);
        }
        c->d[0].delay = delay_up;
        c->d[1].delay = delay_down;
        c->d[1].writable = true; /* the client socket is connected */
        c->ctag = (struct tag){K_CLIENT, c};
        c->utag = (struct tag){K_UPSTREAM, c};
        ep_add(cfd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->ctag);
        ep_add(c->ufd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->utag);
        st.conns++;
        st.open++;
    }
}

static void on_sock(struct tag *t, uint32_t events)
{
    struct conn *c = t->c;
    int fd = t->kind == K_CLIENT ? c->cfd : c->ufd;
    struct dir *in = &c->d[t->kind == K_CLIENT ? 0 : 1];  /* fd is its source */
    struct dir *out = &c->d[t->kind == K_CLIENT ? 1 : 0]; /* fd is its destination */
    if (t->kind == K_UPSTREAM && c->connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fprintf(stderr, "delayproxy: connect to target: %s\n", strerror(err));
            conn_close(c);
            return;
        }
        c->connecting = false;
        events |= EPOLLOUT;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        in->readable = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        out->writable = true;
    if (service(in) && !c->dead)
        service(out);
}

static void on_timer(struct tag *t)
{
    struct dir *d = &t->c->d[t->kind == K_TIMER_UP ? 0 : 1];
    uint64_t n;
    if (read(d->tfd, &n, sizeof n) < 0 && errno != EAGAIN)
        die("read timerfd");
    d->timer_at = 0;
    service(d);
}

static void print_stats(void)
{
    fprintf(stderr,
            "delayproxy: connections %llu (open %llu); up: %llu bytes, %llu reads, %llu writes; "
            "down: %llu bytes, %llu reads, %llu writes; held max %llu bytes; releases %llu, "
            "late max %.3f ms, late > 1 ms %llu\n",
            (unsigned long long)st.conns, (unsigned long long)st.open,
            (unsigned long long)st.bytes[0], (unsigned long long)st.reads[0],
            (unsigned long long)st.writes[0], (unsigned long long)st.bytes[1],
            (unsigned long long)st.reads[1], (unsigned long long)st.writes[1],
            (unsigned long long)st.held_max, (unsigned long long)st.releases,
            (double)st.late_max / 1e6, (unsigned long long)st.late_1ms);
}

static uint64_t parse_ms(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || v < 0 || v > 600000) {
        fprintf(stderr, "delayproxy: bad delay %s (milliseconds)\n", s);
        exit(2);
    }
    return (uint64_t)(v * 1e6 + 0.5);
}

static uint64_t parse_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end == 'k' || *end == 'K')
        v <<= 10, end++;
    else if (*end == 'm' || *end == 'M')
        v <<= 20, end++;
    if (*end || v < 4096 || v > (1ull << 34)) {
        fprintf(stderr, "delayproxy: bad size %s\n", s);
        exit(2);
    }
    uint64_t p = 4096;
    while (p < v)
        p <<= 1; /* a power of two: ring offsets are masked */
    return p;
}

/* "host:port", "[v6]:port" or "port" (with defhost) into host and port strings. */
static void split_hostport(char *s, const char *defhost, const char **host, const char **port)
{
    char *colon = strrchr(s, ':');
    if (!colon) {
        *host = defhost;
        *port = s;
        return;
    }
    *colon = 0;
    *port = colon + 1;
    if (s[0] == '[' && colon > s && colon[-1] == ']') {
        colon[-1] = 0;
        s++;
    }
    *host = s;
}

static void usage(void)
{
    fprintf(stderr, "usage: delayproxy -t HOST:PORT [-l [ADDR:]PORT] [-d MS] [-u MS] [-w MS] "
                    "[-b SIZE] [-s]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    char *tgt = NULL, *lis = NULL;
    bool stats = false, have_up = false, have_down = false;
    uint64_t both = 0;
    int opt;
    while ((opt = getopt(argc, argv, "t:l:d:u:w:b:sh")) != -1) {
        switch (opt) {
        case 't':
            tgt = optarg;
            break;
        case 'l':
            lis = optarg;
            break;
        case 'd':
            both = parse_ms(optarg);
            break;
        case 'u':
            delay_up = parse_ms(optarg), have_up = true;
            break;
        case 'w':
            delay_down = parse_ms(optarg), have_down = true;
            break;
        case 'b':
            bufsize = parse_size(optarg);
            break;
        case 's':
            stats = true;
            break;
        default:
            usage();
        }
    }
    if (!tgt || optind != argc)
        usage();
    if (!have_up)
        delay_up = both;
    if (!have_down)
        delay_down = both;

    const char *th, *tp, *lh, *lp;
    split_hostport(tgt, "127.0.0.1", &th, &tp);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int e = getaddrinfo(th, tp, &hints, &ai);
    if (e) {
        fprintf(stderr, "delayproxy: target %s:%s: %s\n", th, tp, gai_strerror(e));
        return 1;
    }
    memcpy(&target, ai->ai_addr, ai->ai_addrlen);
    target_len = ai->ai_addrlen;
    freeaddrinfo(ai);

    char defl[] = "0";
    split_hostport(lis ? lis : defl, "127.0.0.1", &lh, &lp);
    hints.ai_flags = AI_PASSIVE;
    e = getaddrinfo(lh, lp, &hints, &ai);
    if (e) {
        fprintf(stderr, "delayproxy: listen %s:%s: %s\n", lh, lp, gai_strerror(e));
        return 1;
    }
    int lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (lfd < 0)
        die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, ai->ai_addr, ai->ai_addrlen) < 0)
        die("bind");
    freeaddrinfo(ai);
    if (listen(lfd, 128) < 0)
        die("listen");
    struct sockaddr_storage la;
    socklen_t ll = sizeof la;
    getsockname(lfd, (struct sockaddr *)&la, &ll);
    char hb[INET6_ADDRSTRLEN], pb[8];
    getnameinfo((struct sockaddr *)&la, ll, hb, sizeof hb, pb, sizeof pb,
                NI_NUMERICHOST | NI_NUMERICSERV);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        die("signalfd");

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct tag ltag = {K_LISTEN, NULL}, stag = {K_SIGNAL, NULL};
    ep_add(lfd, EPOLLIN, &ltag);
    ep_add(sfd, EPOLLIN, &stag);
    printf(strchr(hb, ':') ? "listening [%s]:%s\n" : "listening %s:%s\n", hb, pb);
    fflush(stdout);

    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, npend ? 0 : -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct tag *t = evs[i].data.ptr;
            if (t->c && t->c->dead)
                continue;
            switch (t->kind) {
            case K_LISTEN:
                on_accept(lfd);
                break;
            case K_SIGNAL:
                if (stats)
                    print_stats();
                return 0;
            case K_CLIENT:
            case K_UPSTREAM:
                on_sock(t, evs[i].events);
                break;
            case K_TIMER_UP:
            case K_TIMER_DOWN:
                on_timer(t);
                break;
            }
        }
        /* the directions that used their turn up, in order: those marked again go last */
        size_t np = npend;
        for (size_t i = 0; i < np; i++) {
            struct dir *d = pendq[i];
            d->pending = false;
            if (!d->c->dead)
                service(d);
        }
        size_t k = 0;
        for (size_t i = np; i < npend; i++)
            if (!pendq[i]->c->dead) /* none of a connection about to be freed */
                pendq[k++] = pendq[i];
        npend = k;
        while (dead) {
            struct conn *c = dead;
            dead = c->next;
            conn_free(c);
        }
    }
}
