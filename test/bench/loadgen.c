/*
 * loadgen: the benchmarks' MQTT publisher and subscriber (raw sockets + mqttcodec).
 *
 *   loadgen pub   -p PORT [-t TOPIC] [-q 0|1] [-n N] [-s SIZE] [-r RATE] [-w WINDOW] [-V 4|5]
 *                 [--no-nodelay]
 *   loadgen sub   -p PORT [-t TOPIC] [-q 0|1] [-n N] [-V 4|5] [--idle-ms MS] [--first-ms MS]
 *                 [--no-nodelay]
 *   loadgen probe -p PUB_PORT -P SUB_PORT [-t TOPIC] [--first-ms MS]
 *
 * pub sends N PUBLISH packets on TOPIC whose payload is SIZE bytes (at least 16): the sequence
 * number 0..N-1 (8 bytes, little endian), the CLOCK_MONOTONIC time at which the packet was
 * encoded, in ns (8 bytes), then padding. At QoS 1 at most WINDOW publishes are unacknowledged
 * at any time (default 100), like a real client. RATE 0 (default) sends as fast as the broker
 * takes them; otherwise message i is due at start + i / RATE and the publisher sleeps between
 * due times (stamps are taken when a packet is encoded, not when it was due). Output: one line
 * "pub sent=... acked=... secs=... rate=... cpu_us=...".
 *
 * sub subscribes to TOPIC at QoS q, prints "ready" once the SUBACK is in, then counts what
 * arrives: unique sequence numbers, duplicates, numbers out of range, reorderings; latency is
 * arrival time minus the embedded stamp (same machine clock). It stops when all N numbers
 * arrived (after a 200 ms linger that catches late duplicates), or after --idle-ms (default
 * 3000) without a message once one arrived, or --first-ms (default 60000) before the first.
 * Output: one line "sub received=... unique=... dup=... lost=... ... rate=... p50_us=...".
 * rate is (unique - 1) / (time of the last unique - time of the first).
 *
 * probe publishes QoS 1 messages on TOPIC to PUB_PORT every 50 ms until one arrives at a
 * subscriber on SUB_PORT: exit 0 once a path (bridge, relay) carries messages, 1 on timeout.
 *
 * Both ends set TCP_NODELAY unless --no-nodelay. MQTT 3.1.1 by default (-V 5 for 5.0); clean
 * session, keepalive 0 (the sessions are short and a QoS 0 subscriber never sends anything).
 */
#define _GNU_SOURCE
#include "benchnet.h"
#include "mqttcodec.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 10000
#define IN_CAP (512u * 1024u)
#define OUT_CAP (256u * 1024u)

struct opts {
    uint16_t port, port2;
    const char *topic;
    int qos;
    uint64_t n;
    size_t size;
    double rate;
    uint32_t window;
    uint8_t version;
    bool nodelay;
    int idle_ms, first_ms;
};

static void die(const char *what, int err)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, err < 0 ? strerror(-err) : mqc_strerror(err));
    exit(2);
}

static double cpu_secs(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int send_packet(int fd, const struct mqc_packet *pkt, uint8_t version)
{
    uint8_t buf[1024];
    size_t n;
    int r = mqc_encode(pkt, version, buf, sizeof buf, &n);
    if (r != MQC_OK)
        return r;
    return bn_write_all(fd, buf, n, IO_TIMEOUT_MS);
}

/* Reads packets until one of type `type` arrives; decodes it into *out. */
static int expect(int fd, struct bn_in *in, uint8_t version, uint8_t type, struct mqc_packet *out)
{
    for (;;) {
        const uint8_t *p;
        size_t len;
        int r = bn_read_packet(fd, in, IO_TIMEOUT_MS, &p, &len);
        if (r < 0)
            return r;
        r = mqc_decode(p, len, version, out);
        if (r != MQC_OK)
            return r;
        if (out->type == type)
            return 0;
    }
}

/* TCP connect, MQTT CONNECT/CONNACK. recv_max: MQTT 5 Receive Maximum to advertise (0 = none). */
static int mqtt_open(const struct opts *o, uint16_t port, const char *client_id, uint16_t recv_max,
                     struct bn_in *in)
{
    struct mqc_packet pk;
    uint8_t props[8];
    size_t plen = 0;
    int fd = bn_connect(port, o->nodelay), r;
    if (fd < 0)
        die("connect", fd);
    memset(&pk, 0, sizeof pk);
    pk.type = MQC_CONNECT;
    pk.u.connect.version = o->version;
    pk.u.connect.clean_start = true;
    pk.u.connect.keepalive = 0;
    pk.u.connect.client_id.p = (const uint8_t *)client_id;
    pk.u.connect.client_id.len = strlen(client_id);
    if (o->version == MQC_V5 && recv_max) {
        struct mqc_prop pr = {.id = MQC_PROP_RECEIVE_MAXIMUM, .num = recv_max};
        if (mqc_prop_put(&pr, props, sizeof props, &plen) != MQC_OK)
            die("receive maximum", MQC_EINVAL);
        pk.u.connect.props.p = props;
        pk.u.connect.props.len = plen;
    }
    if ((r = send_packet(fd, &pk, o->version)) != 0)
        die("CONNECT", r);
    if ((r = expect(fd, in, o->version, MQC_CONNACK, &pk)) != 0)
        die("CONNACK", r);
    if (pk.u.connack.code != 0) {
        fprintf(stderr, "loadgen: CONNACK code 0x%02x\n", pk.u.connack.code);
        exit(2);
    }
    return fd;
}

static void mqtt_subscribe(int fd, const struct opts *o, const char *filter, int qos,
                           struct bn_in *in)
{
    struct mqc_packet pk;
    struct mqc_sub s = {.filter = {(const uint8_t *)filter, strlen(filter)},
                        .options = (uint8_t)qos};
    int r;
    memset(&pk, 0, sizeof pk);
    pk.type = MQC_SUBSCRIBE;
    pk.u.subscribe.packet_id = 1;
    pk.u.subscribe.subs = &s;
    pk.u.subscribe.count = 1;
    if ((r = send_packet(fd, &pk, o->version)) != 0)
        die("SUBSCRIBE", r);
    if ((r = expect(fd, in, o->version, MQC_SUBACK, &pk)) != 0)
        die("SUBACK", r);
    if (pk.u.suback.codes.len != 1 || pk.u.suback.codes.p[0] >= 0x80) {
        fprintf(stderr, "loadgen: subscription refused\n");
        exit(2);
    }
}

static void mqtt_disconnect(int fd, const struct opts *o)
{
    struct mqc_packet pk;
    memset(&pk, 0, sizeof pk);
    pk.type = MQC_DISCONNECT;
    send_packet(fd, &pk, o->version);
}

/* ---- publisher --------------------------------------------------------------------------- */

static int run_pub(const struct opts *o)
{
    struct bn_in in;
    struct bn_out out;
    uint8_t *payload = calloc(1, o->size);
    uint8_t *busy = calloc(65536, 1); /* packet ids in flight */
    uint64_t sent = 0, acked = 0, t0, t_end, period_ns = 0;
    uint32_t inflight = 0;
    uint16_t next_pid = 0;
    size_t maxpkt;
    char id[64];
    int fd;
    struct mqc_publish p = {.qos = (uint8_t)o->qos,
                            .topic = {(const uint8_t *)o->topic, strlen(o->topic)},
                            .payload = {NULL, o->size}};

    if (!payload || !busy || bn_in_init(&in, IN_CAP) || bn_out_init(&out, OUT_CAP))
        die("malloc", -ENOMEM);
    memset(payload + 16, 'x', o->size - 16);
    p.payload.p = payload;
    p.packet_id = o->qos ? 1 : 0;
    if (mqc_size_publish(&p, o->version, &maxpkt) != MQC_OK)
        die("PUBLISH size", MQC_EINVAL);
    snprintf(id, sizeof id, "lg-pub-%d", (int)getpid());
    fd = mqtt_open(o, o->port, id, 0, &in);
    if (o->rate > 0)
        period_ns = (uint64_t)(1e9 / o->rate);

    t0 = bn_now_ns();
    for (;;) {
        uint64_t now = bn_now_ns(), allowed = o->n;
        int timeout_ms = -1, r;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        struct timespec ts, *tsp = NULL;
        bool more;

        if (period_ns) {
            uint64_t due = (now - t0) / period_ns + 1;
            if (due < allowed)
                allowed = due;
        }
        /* fill the output buffer with every message that is due and allowed */
        while (sent < allowed && (o->qos == 0 || inflight < o->window) &&
               bn_out_room(&out) >= maxpkt) {
            size_t w;
            put_u64le(payload, sent);
            put_u64le(payload + 8, bn_now_ns());
            if (o->qos) {
                do
                    next_pid = (uint16_t)(next_pid == 65535 ? 1 : next_pid + 1);
                while (busy[next_pid]);
                busy[next_pid] = 1;
                p.packet_id = next_pid;
                inflight++;
            }
            if ((r = mqc_encode_publish(&p, o->version, out.p + out.len, out.cap - out.len, &w,
                                        NULL)) != MQC_OK)
                die("PUBLISH encode", r);
            out.len += w;
            sent++;
        }
        r = bn_flush(fd, &out);
        if (r < 0)
            die("write", r);
        if (o->qos == 0 && sent == o->n && r == 0)
            break;
        if (o->qos == 1 && acked == o->n)
            break;
        more = sent < allowed && (o->qos == 0 || inflight < o->window);
        if (r == 1)
            pf.events |= POLLOUT;
        if (more && r == 0) {
            timeout_ms = 0;
        } else if (r == 0 && period_ns && sent < o->n && (o->qos == 0 || inflight < o->window)) {
            uint64_t next_due = t0 + sent * period_ns, wait = 0;
            now = bn_now_ns();
            if (next_due > now)
                wait = next_due - now;
            ts.tv_sec = (time_t)(wait / 1000000000u);
            ts.tv_nsec = (long)(wait % 1000000000u);
            tsp = &ts;
        }
        if (timeout_ms == 0) {
            ts.tv_sec = 0;
            ts.tv_nsec = 0;
            tsp = &ts;
        }
        r = ppoll(&pf, 1, tsp, NULL);
        if (r < 0 && errno != EINTR)
            die("poll", -errno);
        if (r > 0 && (pf.revents & (POLLIN | POLLERR | POLLHUP))) {
            ssize_t n = bn_read(fd, &in);
            if (n == 0)
                die("broker closed the connection", -ECONNRESET);
            if (n < 0 && n != -EAGAIN)
                die("read", (int)n);
            for (;;) {
                struct mqc_frame f;
                struct mqc_packet pk;
                r = mqc_frame_check(in.p + in.off, in.len - in.off, 0, &f);
                if (r == MQC_AGAIN)
                    break;
                if (r != MQC_OK)
                    die("frame", r);
                if ((r = mqc_decode(in.p + in.off, f.total, o->version, &pk)) != MQC_OK)
                    die("decode", r);
                in.off += f.total;
                if (pk.type == MQC_PUBACK) {
                    if (!busy[pk.u.ack.packet_id])
                        die("PUBACK for a packet id not in flight", -EPROTO);
                    busy[pk.u.ack.packet_id] = 0;
                    inflight--;
                    acked++;
                }
            }
        }
    }
    t_end = bn_now_ns();
    mqtt_disconnect(fd, o);
    shutdown(fd, SHUT_WR);
    /* wait for the broker to close, so that everything sent has been read by it */
    while (bn_wait(fd, false, 2000) > 0) {
        ssize_t n = bn_read(fd, &in);
        if (n == 0 || (n < 0 && n != -EAGAIN))
            break;
        in.off = in.len;
    }
    close(fd);
    {
        double secs = (double)(t_end - t0) / 1e9;
        printf("pub sent=%llu acked=%llu secs=%.6f rate=%.0f cpu_us=%.3f\n",
               (unsigned long long)sent, (unsigned long long)acked, secs,
               secs > 0 ? (double)sent / secs : 0.0, cpu_secs() * 1e6 / (double)o->n);
    }
    fflush(stdout);
    return 0;
}

/* ---- subscriber -------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int run_sub(const struct opts *o)
{
    struct bn_in in;
    struct bn_out out;
    uint8_t *seen = calloc(o->n / 8 + 1, 1);
    uint64_t *lat = malloc(o->n * sizeof *lat + 8);
    uint64_t received = 0, unique = 0, dup = 0, range = 0, reorder = 0, foreign = 0;
    uint64_t t_first = 0, t_last = 0, t_prev = 0, last_seq = 0, linger_until = 0;
    size_t tlen = strlen(o->topic);
    char id[64];
    int fd;

    if (!seen || !lat || bn_in_init(&in, IN_CAP) || bn_out_init(&out, OUT_CAP))
        die("malloc", -ENOMEM);
    snprintf(id, sizeof id, "lg-sub-%d", (int)getpid());
    fd = mqtt_open(o, o->port, id, o->qos ? 65535 : 0, &in);
    mqtt_subscribe(fd, o, o->topic, o->qos, &in);
    printf("ready\n");
    fflush(stdout);

    for (;;) {
        uint64_t now = bn_now_ns(), deadline;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r, tmo;
        ssize_t n;

        if (unique == o->n) {
            if (!linger_until)
                linger_until = now + 200000000u;
            deadline = linger_until;
        } else if (received) {
            deadline = t_prev + (uint64_t)o->idle_ms * 1000000u;
        } else {
            deadline = 0; /* handled below: first_ms from the start */
        }
        if (deadline && now >= deadline)
            break;
        tmo = deadline ? (int)((deadline - now) / 1000000u) + 1 : o->first_ms;
        if (out.len > out.off)
            pf.events |= POLLOUT;
        r = poll(&pf, 1, tmo);
        if (r < 0 && errno != EINTR)
            die("poll", -errno);
        if (r == 0 && !received)
            break; /* nothing ever came */
        if (r <= 0)
            continue;
        if (pf.revents & POLLOUT) {
            if ((r = bn_flush(fd, &out)) < 0)
                die("write", r);
        }
        if (!(pf.revents & (POLLIN | POLLERR | POLLHUP)))
            continue;
        n = bn_read(fd, &in);
        if (n == 0)
            break;
        if (n == -EAGAIN)
            continue;
        if (n < 0)
            die("read", (int)n);
        now = bn_now_ns();
        for (;;) {
            struct mqc_frame f;
            struct mqc_publish p;
            r = mqc_frame_check(in.p + in.off, in.len - in.off, 0, &f);
            if (r == MQC_AGAIN)
                break;
            if (r != MQC_OK)
                die("frame", r);
            if (f.type != MQC_PUBLISH) {
                in.off += f.total;
                continue;
            }
            if ((r = mqc_decode_publish(in.p + in.off, f.total, o->version, &p)) != MQC_OK)
                die("decode", r);
            in.off += f.total;
            if (p.qos > 0) {
                struct mqc_ack a = {.packet_id = p.packet_id};
                size_t w;
                if (bn_out_room(&out) < 8) {
                    r = bn_write_all(fd, out.p + out.off, out.len - out.off, IO_TIMEOUT_MS);
                    if (r < 0)
                        die("write", r);
                    out.off = out.len = 0;
                }
                if ((r = mqc_encode_ack(MQC_PUBACK, &a, o->version, out.p + out.len,
                                        out.cap - out.len, &w)) != MQC_OK)
                    die("PUBACK encode", r);
                out.len += w;
            }
            if (p.topic.len != tlen || memcmp(p.topic.p, o->topic, tlen) != 0 ||
                p.payload.len < 16) {
                foreign++;
                continue;
            }
            {
                uint64_t seq = get_u64le(p.payload.p), ts = get_u64le(p.payload.p + 8);
                received++;
                t_prev = now;
                if (seq >= o->n) {
                    range++;
                    continue;
                }
                if (seen[seq / 8] & (1u << (seq % 8))) {
                    dup++;
                    continue;
                }
                seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
                if (unique > 0 && seq < last_seq)
                    reorder++;
                last_seq = seq;
                lat[unique++] = now > ts ? now - ts : 0;
                if (!t_first)
                    t_first = now;
                t_last = now;
            }
        }
        if (out.len > out.off && (r = bn_flush(fd, &out)) < 0)
            die("write", r);
    }
    mqtt_disconnect(fd, o);
    close(fd);
    {
        double secs = (double)(t_last - t_first) / 1e9, p50 = 0, p99 = 0, pmax = 0;
        if (unique) {
            qsort(lat, unique, sizeof *lat, cmp_u64);
            p50 = (double)lat[(unique - 1) / 2] / 1e3;
            p99 = (double)lat[(unique * 99 - 1) / 100] / 1e3;
            pmax = (double)lat[unique - 1] / 1e3;
        }
        printf("sub received=%llu unique=%llu dup=%llu lost=%llu out_of_range=%llu "
               "reordered=%llu foreign=%llu secs=%.6f rate=%.0f p50_us=%.1f p99_us=%.1f "
               "max_us=%.1f cpu_us=%.3f\n",
               (unsigned long long)received, (unsigned long long)unique, (unsigned long long)dup,
               (unsigned long long)(o->n - unique), (unsigned long long)range,
               (unsigned long long)reorder, (unsigned long long)foreign, secs,
               secs > 0 ? (double)(unique - 1) / secs : 0.0, p50, p99, pmax,
               cpu_secs() * 1e6 / (double)o->n);
    }
    fflush(stdout);
    return unique == o->n && dup == 0 ? 0 : 1;
}

/* ---- probe ------------------------------------------------------------------------------- */

static int run_probe(const struct opts *o)
{
    struct bn_in pin, sin;
    char id[64];
    uint8_t buf[256];
    uint64_t start = bn_now_ns();
    uint16_t pid = 0;
    int pfd, sfd;

    if (bn_in_init(&pin, 65536) || bn_in_init(&sin, 65536))
        die("malloc", -ENOMEM);
    snprintf(id, sizeof id, "lg-probe-sub-%d", (int)getpid());
    sfd = mqtt_open(o, o->port2, id, 0, &sin);
    mqtt_subscribe(sfd, o, o->topic, 0, &sin);
    snprintf(id, sizeof id, "lg-probe-pub-%d", (int)getpid());
    pfd = mqtt_open(o, o->port, id, 0, &pin);
    while (bn_now_ns() - start < (uint64_t)o->first_ms * 1000000u) {
        struct mqc_publish p = {.qos = 1,
                                .topic = {(const uint8_t *)o->topic, strlen(o->topic)},
                                .payload = {(const uint8_t *)"probe", 5}};
        size_t w;
        int r;
        pid = (uint16_t)(pid == 65535 ? 1 : pid + 1);
        p.packet_id = pid;
        r = mqc_encode_publish(&p, o->version, buf, sizeof buf, &w, NULL);
        if (r != MQC_OK || (r = bn_write_all(pfd, buf, w, IO_TIMEOUT_MS)) != 0)
            die("probe publish", r);
        if (bn_wait(sfd, false, 50) > 0) {
            const uint8_t *pk;
            size_t len;
            if (bn_read_packet(sfd, &sin, 1000, &pk, &len) == 0 && (pk[0] >> 4) == MQC_PUBLISH) {
                mqtt_disconnect(pfd, o);
                mqtt_disconnect(sfd, o);
                close(pfd);
                close(sfd);
                return 0;
            }
        }
        /* drop the PUBACKs */
        while (bn_wait(pfd, false, 0) > 0) {
            ssize_t n = bn_read(pfd, &pin);
            if (n <= 0)
                break;
            pin.off = pin.len;
        }
    }
    fprintf(stderr, "loadgen: probe: nothing arrived in %d ms\n", o->first_ms);
    return 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen pub|sub|probe -p PORT [-P SUB_PORT] [-t TOPIC] [-q 0|1] [-n N]\n"
            "               [-s SIZE] [-r RATE] [-w WINDOW] [-V 4|5] [--no-nodelay]\n"
            "               [--idle-ms MS] [--first-ms MS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"no-nodelay", no_argument, NULL, 'N'},
                                       {"idle-ms", required_argument, NULL, 'I'},
                                       {"first-ms", required_argument, NULL, 'F'},
                                       {NULL, 0, NULL, 0}};
    struct opts o = {.topic = "bench/t",
                     .qos = 0,
                     .n = 200000,
                     .size = 64,
                     .window = 100,
                     .version = MQC_V311,
                     .nodelay = true,
                     .idle_ms = 3000,
                     .first_ms = 60000};
    const char *mode;
    int c;

    if (argc < 2)
        usage();
    mode = argv[1];
    optind = 2;
    while ((c = getopt_long(argc, argv, "p:P:t:q:n:s:r:w:V:", lo, NULL)) != -1) {
        switch (c) {
        case 'p':
            o.port = (uint16_t)atoi(optarg);
            break;
        case 'P':
            o.port2 = (uint16_t)atoi(optarg);
            break;
        case 't':
            o.topic = optarg;
            break;
        case 'q':
            o.qos = atoi(optarg);
            break;
        case 'n':
            o.n = strtoull(optarg, NULL, 10);
            break;
        case 's':
            o.size = (size_t)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            o.rate = atof(optarg);
            break;
        case 'w':
            o.window = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'V':
            o.version = (uint8_t)atoi(optarg);
            break;
        case 'N':
            o.nodelay = false;
            break;
        case 'I':
            o.idle_ms = atoi(optarg);
            break;
        case 'F':
            o.first_ms = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (!o.port || o.qos < 0 || o.qos > 1 || o.n == 0 || o.size < 16 || o.window == 0 ||
        o.window > 65535 || (o.version != MQC_V311 && o.version != MQC_V5))
        usage();
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(mode, "pub"))
        return run_pub(&o);
    if (!strcmp(mode, "sub"))
        return run_sub(&o);
    if (!strcmp(mode, "probe")) {
        if (!o.port2)
            usage();
        return run_probe(&o);
    }
    usage();
    return 2;
}
