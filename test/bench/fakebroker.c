/*
 * fakebroker: a fake source broker and a fake destination broker in one process, so that the
 * relay between them is the only thing being measured (issue 7, item 2).
 *
 *   fakebroker [-q 0|1] [-n N] [-s SIZE] [-t TOPIC] [-w WINDOW] [--subs K] [--hold]
 *              [--src-port P] [--dst-port P] [--no-nodelay] [--idle-ms MS] [--delay-ms MS]
 *
 * It listens on two loopback ports (0 = free ports, the default) and prints
 * "ports SRC DST" once it listens. The relay connects to both:
 *
 * - source: answers CONNECT with CONNACK and each SUBSCRIBE with a SUBACK granting what was
 *   asked. Once K topic filters (default 1) are subscribed and the destination is connected
 *   (and --delay-ms MS later, default 0), it sends N PUBLISH packets on TOPIC (default
 *   bench/t) at QoS q, copied from one pre-encoded packet (packet id, sequence number and
 *   time stamp patched in), as many per write() as fit in 256 KiB. QoS 0: as fast as the
 *   socket takes them. QoS 1: it keeps the relay's window full: WINDOW unacknowledged
 *   publishes (default: the Receive Maximum of the relay's MQTT 5 CONNECT, else 64, the
 *   relay's default receive_maximum), and answers PUBACKs.
 * - destination: answers CONNECT with CONNACK (MQTT 5: Receive Maximum 65535, so the relay's
 *   max_inflight decides its window) and acknowledges every QoS 1 PUBLISH at once (all the
 *   PUBACKs of one read() go out in one write()), unless --hold: then it acknowledges nothing.
 *   Both answer PINGREQ.
 *
 * In MQTT 5 each PUBLISH carries the Subscription Identifiers of the relay's subscriptions that
 * match TOPIC, as a broker does.
 *
 * The payload is SIZE bytes (>= 16): sequence number and CLOCK_MONOTONIC ns, little endian,
 * then padding, like loadgen's. The destination counts unique, duplicated and out-of-order
 * numbers and the latency from the stamp.
 *
 * It prints one line "fake ..." when the destination has all N (or after --idle-ms, default
 * 3000, without a message), then exits. With --hold it prints "held M" once M = N messages
 * sit unacknowledged at the destination, or M < N after --idle-ms without a new one (the relay
 * stopped reading its source), and waits for SIGTERM / SIGINT before printing its line.
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
#include <unistd.h>

#define CHUNK (256u * 1024u)

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

struct opts {
    int qos;
    uint64_t n;
    size_t size;
    const char *topic;
    uint32_t window; /* 0 = from the relay's CONNECT */
    uint32_t subs;
    bool hold, nodelay;
    uint16_t src_port, dst_port;
    int idle_ms;
    int delay_ms; /* wait this long once ready before sending (time to attach perf) */
};

struct end {
    int fd;
    uint8_t version;
    bool up;
    struct bn_in in;
    struct bn_out out;
};

static void die(const char *what, int err)
{
    fprintf(stderr, "fakebroker: %s: %s\n", what, err < 0 ? strerror(-err) : mqc_strerror(err));
    exit(2);
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

static void queue_packet(struct end *e, const struct mqc_packet *pk)
{
    size_t w;
    int r;
    if (bn_out_room(&e->out) < 64 * 1024)
        die("output buffer full", -ENOBUFS);
    r = mqc_encode(pk, e->version, e->out.p + e->out.len, e->out.cap - e->out.len, &w);
    if (r != MQC_OK)
        die("encode", r);
    e->out.len += w;
}

/* CONNECT -> CONNACK. Returns the Receive Maximum the client asked for (0 = none). */
static uint32_t on_connect(struct end *e, const uint8_t *p, size_t len, bool is_dst)
{
    struct mqc_packet pk, ack;
    uint8_t props[16];
    size_t plen = 0;
    uint32_t recv_max = 0;
    struct mqc_prop pr;
    int r = mqc_decode(p, len, MQC_V5, &pk);
    if (r != MQC_OK || pk.type != MQC_CONNECT)
        die("CONNECT expected", r ? r : -EPROTO);
    e->version = pk.u.connect.version;
    if (e->version == MQC_V5 &&
        mqc_props_find(&pk.u.connect.props, MQC_PROP_RECEIVE_MAXIMUM, &pr) == MQC_OK)
        recv_max = pr.num;
    memset(&ack, 0, sizeof ack);
    ack.type = MQC_CONNACK;
    if (e->version == MQC_V5 && is_dst) {
        struct mqc_prop rm = {.id = MQC_PROP_RECEIVE_MAXIMUM, .num = 65535};
        mqc_prop_put(&rm, props, sizeof props, &plen);
        ack.u.connack.props.p = props;
        ack.u.connack.props.len = plen;
    }
    queue_packet(e, &ack);
    e->up = true;
    return recv_max;
}

/* Subscription Identifiers (MQTT 5) of the subscriptions that match the source's topic: a real
 * broker puts them in each PUBLISH, and the relay uses them instead of matching its routes. */
struct sub_ids {
    uint32_t id[32];
    size_t n;
};

/* SUBSCRIBE -> SUBACK granting each requested QoS. Returns the number of filters. */
static uint32_t on_subscribe(struct end *e, const uint8_t *p, size_t len, const char *topic,
                             struct sub_ids *ids)
{
    struct mqc_packet pk, ack;
    static uint8_t codes[65536];
    size_t off = 0, n = 0;
    struct mqc_sub s;
    struct mqc_prop sid = {0};
    int r = mqc_decode(p, len, e->version, &pk);
    if (r != MQC_OK)
        die("SUBSCRIBE", r);
    if (e->version == MQC_V5)
        mqc_props_find(&pk.u.subscribe.props, MQC_PROP_SUBSCRIPTION_ID, &sid);
    while (mqc_subscribe_next(&pk.u.subscribe, e->version, &off, &s) == MQC_OK && n < 65536) {
        struct mqc_share sh;
        codes[n++] = MQC_SUB_QOS(s.options) > 1 ? 1 : MQC_SUB_QOS(s.options);
        if (sid.num && ids->n < 32 &&
            mqc_topic_share_parse(s.filter.p, s.filter.len, &sh) == MQC_OK &&
            mqc_topic_match(sh.filter.p, sh.filter.len, (const uint8_t *)topic, strlen(topic)))
            ids->id[ids->n++] = sid.num;
    }
    memset(&ack, 0, sizeof ack);
    ack.type = MQC_SUBACK;
    ack.u.suback.packet_id = pk.u.subscribe.packet_id;
    ack.u.suback.codes.p = codes;
    ack.u.suback.codes.len = n;
    queue_packet(e, &ack);
    return (uint32_t)n;
}

/* The PUBLISH every copy is made from (with the matching Subscription Identifiers in 5.0). */
static void build_template(const struct opts *o, uint8_t version, const struct sub_ids *ids,
                           uint8_t *tmpl, size_t cap, size_t *tlen, size_t *pid_off,
                           size_t *pay_off)
{
    static uint8_t pay[1500], props[256];
    struct mqc_publish pub = {.qos = (uint8_t)o->qos,
                              .topic = {(const uint8_t *)o->topic, strlen(o->topic)},
                              .packet_id = o->qos ? 1 : 0,
                              .payload = {pay, o->size}};
    size_t plen = 0;
    int r;
    memset(pay, 'x', sizeof pay);
    for (size_t i = 0; version == MQC_V5 && i < ids->n; i++) {
        struct mqc_prop pr = {.id = MQC_PROP_SUBSCRIPTION_ID, .num = ids->id[i]};
        if ((r = mqc_prop_put(&pr, props, sizeof props, &plen)) != MQC_OK)
            die("Subscription Identifier", r);
    }
    pub.props.p = props;
    pub.props.len = plen;
    r = mqc_encode_publish(&pub, version, tmpl, cap, tlen, pid_off);
    if (r != MQC_OK)
        die("PUBLISH template", r);
    *pay_off = *tlen - o->size; /* the payload ends the packet */
}

static void ping(struct end *e)
{
    struct mqc_packet pk;
    memset(&pk, 0, sizeof pk);
    pk.type = MQC_PINGRESP;
    queue_packet(e, &pk);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double cpu_secs(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"subs", required_argument, NULL, 'K'},     {"hold", no_argument, NULL, 'H'},
        {"src-port", required_argument, NULL, 'S'}, {"dst-port", required_argument, NULL, 'D'},
        {"no-nodelay", no_argument, NULL, 'N'},     {"idle-ms", required_argument, NULL, 'I'},
        {"delay-ms", required_argument, NULL, 'W'}, {NULL, 0, NULL, 0}};
    struct opts o = {.qos = 0,
                     .n = 1000000,
                     .size = 64,
                     .topic = "bench/t",
                     .subs = 1,
                     .nodelay = true,
                     .idle_ms = 3000};
    struct end src = {.fd = -1}, dst = {.fd = -1};
    int lsrc, ldst, c;
    uint16_t psrc, pdst;
    uint8_t tmpl[2048];
    size_t tlen = 0, pid_off = 0, pay_off = 0;
    uint8_t *busy = calloc(65536, 1), *seen;
    uint64_t *lat;
    uint64_t sent = 0, acked = 0, received = 0, unique = 0, dup = 0, reorder = 0, last_seq = 0;
    uint64_t t_src0 = 0, t_src_end = 0, t_first = 0, t_last = 0, t_ready = 0;
    uint32_t window = 0, inflight = 0, subscribed = 0;
    uint16_t next_pid = 0;
    bool held_said = false;
    struct sub_ids ids = {.n = 0};

    while ((c = getopt_long(argc, argv, "q:n:s:t:w:", lo, NULL)) != -1) {
        switch (c) {
        case 'q':
            o.qos = atoi(optarg);
            break;
        case 'n':
            o.n = strtoull(optarg, NULL, 10);
            break;
        case 's':
            o.size = (size_t)strtoul(optarg, NULL, 10);
            break;
        case 't':
            o.topic = optarg;
            break;
        case 'w':
            o.window = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'K':
            o.subs = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'H':
            o.hold = true;
            break;
        case 'S':
            o.src_port = (uint16_t)atoi(optarg);
            break;
        case 'D':
            o.dst_port = (uint16_t)atoi(optarg);
            break;
        case 'N':
            o.nodelay = false;
            break;
        case 'I':
            o.idle_ms = atoi(optarg);
            break;
        case 'W':
            o.delay_ms = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: fakebroker [-q 0|1] [-n N] [-s SIZE] [-t TOPIC] [-w WINDOW]"
                            " [--subs K] [--hold] [--src-port P] [--dst-port P]"
                            " [--no-nodelay] [--idle-ms MS] [--delay-ms MS]\n");
            return 2;
        }
    }
    if (o.qos < 0 || o.qos > 1 || o.n == 0 || o.size < 16 || o.size > 1500 || o.window > 65535)
        die("bad arguments", -EINVAL);
    seen = calloc(o.n / 8 + 1, 1);
    lat = malloc(o.n * sizeof *lat + 8);
    if (!busy || !seen || !lat || bn_in_init(&src.in, 1u << 20) || bn_in_init(&dst.in, 1u << 20) ||
        bn_out_init(&src.out, CHUNK + 65536) || bn_out_init(&dst.out, CHUNK + 65536))
        die("malloc", -ENOMEM);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    lsrc = bn_listen(o.src_port, &psrc);
    ldst = bn_listen(o.dst_port, &pdst);
    if (lsrc < 0 || ldst < 0)
        die("listen", lsrc < 0 ? lsrc : ldst);
    printf("ports %u %u\n", psrc, pdst);
    fflush(stdout);

    for (;;) {
        struct pollfd pf[4];
        int np = 0, isrc = -1, idst = -1, r, tmo = 1000;
        uint64_t now = bn_now_ns();
        bool blasting = src.up && dst.up && subscribed >= o.subs && window > 0;

        if (blasting && !t_ready) {
            t_ready = now;
            build_template(&o, src.version, &ids, tmpl, sizeof tmpl, &tlen, &pid_off, &pay_off);
        }
        if (blasting && now - t_ready < (uint64_t)o.delay_ms * 1000000u)
            blasting = false;

        if (stop)
            break;
        if (t_last && !o.hold && now - t_last > (uint64_t)o.idle_ms * 1000000u)
            break; /* idle: something was lost */
        if (!o.hold && unique == o.n && (o.qos == 0 || acked == o.n))
            break;
        if (o.hold && !held_said &&
            (unique == o.n || (t_last && now - t_last > (uint64_t)o.idle_ms * 1000000u))) {
            printf("held %llu\n", (unsigned long long)unique);
            fflush(stdout);
            held_said = true;
        }

        /* source: refill the output with the next packets the window allows */
        if (blasting && sent < o.n) {
            if (!t_src0)
                t_src0 = now;
            while (sent < o.n && (o.qos == 0 || inflight < window) && src.out.len + tlen <= CHUNK &&
                   bn_out_room(&src.out) >= tlen) {
                uint8_t *q = src.out.p + src.out.len;
                memcpy(q, tmpl, tlen);
                put_u64le(q + pay_off, sent);
                put_u64le(q + pay_off + 8, now);
                if (o.qos) {
                    do
                        next_pid = (uint16_t)(next_pid == 65535 ? 1 : next_pid + 1);
                    while (busy[next_pid]);
                    busy[next_pid] = 1;
                    q[pid_off] = (uint8_t)(next_pid >> 8);
                    q[pid_off + 1] = (uint8_t)next_pid;
                    inflight++;
                }
                src.out.len += tlen;
                sent++;
            }
            if (sent == o.n && o.qos == 0)
                t_src_end = now;
        }
        if (src.fd >= 0 && src.out.len > src.out.off && (r = bn_flush(src.fd, &src.out)) < 0)
            die("source write", r);
        if (dst.fd >= 0 && dst.out.len > dst.out.off && (r = bn_flush(dst.fd, &dst.out)) < 0)
            die("destination write", r);

        if (src.fd < 0) {
            pf[np] = (struct pollfd){.fd = lsrc, .events = POLLIN};
            np++;
        } else {
            isrc = np;
            pf[np] = (struct pollfd){.fd = src.fd, .events = POLLIN};
            if (src.out.len > src.out.off)
                pf[np].events |= POLLOUT;
            np++;
        }
        if (dst.fd < 0) {
            pf[np] = (struct pollfd){.fd = ldst, .events = POLLIN};
            np++;
        } else {
            idst = np;
            pf[np] = (struct pollfd){.fd = dst.fd, .events = POLLIN};
            if (dst.out.len > dst.out.off)
                pf[np].events |= POLLOUT;
            np++;
        }
        if (blasting && sent < o.n && (o.qos == 0 || inflight < window) &&
            src.out.len == src.out.off)
            tmo = 0;
        else if (t_ready && !t_src0)
            tmo = 10; /* --delay-ms */
        r = poll(pf, (nfds_t)np, tmo);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("poll", -errno);
        }
        for (int i = 0; i < np; i++) {
            if (!pf[i].revents)
                continue;
            if (pf[i].fd == lsrc || pf[i].fd == ldst) {
                bool is_src = pf[i].fd == lsrc;
                int fd = bn_accept(pf[i].fd, o.nodelay);
                if (fd < 0)
                    die("accept", fd);
                (is_src ? &src : &dst)->fd = fd;
                continue;
            }
            if (i == isrc || i == idst) {
                struct end *e = i == isrc ? &src : &dst;
                ssize_t n;
                if (!(pf[i].revents & (POLLIN | POLLERR | POLLHUP)))
                    continue;
                n = bn_read(e->fd, &e->in);
                if (n == -EAGAIN)
                    continue;
                if (n <= 0) {
                    fprintf(stderr, "fakebroker: the relay closed the %s connection\n",
                            e == &src ? "source" : "destination");
                    stop = 1;
                    break;
                }
                now = bn_now_ns();
                for (;;) {
                    struct mqc_frame f;
                    const uint8_t *p = e->in.p + e->in.off;
                    r = mqc_frame_check(p, e->in.len - e->in.off, 0, &f);
                    if (r == MQC_AGAIN)
                        break;
                    if (r != MQC_OK)
                        die("frame", r);
                    e->in.off += f.total;
                    switch (f.type) {
                    case MQC_CONNECT: {
                        uint32_t rm = on_connect(e, p, f.total, e == &dst);
                        if (e == &src) {
                            window = o.window ? o.window : rm ? rm : 64;
                            if (o.qos == 0)
                                window = 1;
                        }
                        break;
                    }
                    case MQC_SUBSCRIBE:
                        subscribed += on_subscribe(e, p, f.total, o.topic, &ids);
                        break;
                    case MQC_PINGREQ:
                        ping(e);
                        break;
                    case MQC_PUBACK:
                        if (e == &src) {
                            uint16_t pid = (uint16_t)((p[f.hdr_len] << 8) | p[f.hdr_len + 1]);
                            if (!busy[pid])
                                die("PUBACK for a packet id not in flight", -EPROTO);
                            busy[pid] = 0;
                            inflight--;
                            if (++acked == o.n)
                                t_src_end = now;
                        }
                        break;
                    case MQC_PUBLISH:
                        if (e == &dst) {
                            struct mqc_publish pub;
                            uint64_t seq, ts;
                            r = mqc_decode_publish(p, f.total, e->version, &pub);
                            if (r != MQC_OK)
                                die("destination PUBLISH", r);
                            if (pub.qos && !o.hold) {
                                uint8_t *q = e->out.p + e->out.len;
                                struct mqc_ack a = {.packet_id = pub.packet_id};
                                size_t w;
                                if (bn_out_room(&e->out) < 16)
                                    die("destination output full", -ENOBUFS);
                                q = e->out.p + e->out.len;
                                mqc_encode_ack(MQC_PUBACK, &a, e->version, q, 16, &w);
                                e->out.len += w;
                            }
                            received++;
                            if (pub.payload.len < 16)
                                break;
                            seq = get_u64le(pub.payload.p);
                            ts = get_u64le(pub.payload.p + 8);
                            if (seq >= o.n || (seen[seq / 8] & (1u << (seq % 8)))) {
                                dup++;
                                break;
                            }
                            seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
                            if (unique && seq < last_seq)
                                reorder++;
                            last_seq = seq;
                            lat[unique++] = now > ts ? now - ts : 0;
                            if (!t_first)
                                t_first = now;
                            t_last = now;
                        }
                        break;
                    case MQC_DISCONNECT:
                        break;
                    default:
                        break;
                    }
                }
            }
        }
    }
    {
        double secs = t_last > t_first ? (double)(t_last - t_first) / 1e9 : 0;
        double src_secs = t_src_end > t_src0 ? (double)(t_src_end - t_src0) / 1e9 : 0;
        double p50 = 0, p99 = 0;
        if (unique) {
            qsort(lat, unique, sizeof *lat, cmp_u64);
            p50 = (double)lat[(unique - 1) / 2] / 1e3;
            p99 = (double)lat[(unique * 99 - 1) / 100] / 1e3;
        }
        printf("fake sent=%llu acked=%llu received=%llu unique=%llu dup=%llu lost=%llu "
               "reordered=%llu window=%u secs=%.6f rate=%.0f src_rate=%.0f p50_us=%.1f "
               "p99_us=%.1f cpu_us=%.3f\n",
               (unsigned long long)sent, (unsigned long long)acked, (unsigned long long)received,
               (unsigned long long)unique, (unsigned long long)dup,
               (unsigned long long)(o.n - unique), (unsigned long long)reorder, window, secs,
               secs > 0 ? (double)(unique - 1) / secs : 0.0,
               src_secs > 0 ? (double)(o.qos ? acked : sent) / src_secs : 0.0, p50, p99,
               cpu_secs() * 1e6 / (double)o.n);
        fflush(stdout);
    }
    if (src.fd >= 0)
        close(src.fd);
    if (dst.fd >= 0)
        close(dst.fd);
    return unique == o.n && dup == 0 ? 0 : 1;
}
