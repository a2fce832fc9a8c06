/*
 * bench_spool: throughput of the store-and-forward spool (relay/store/) on this machine.
 *
 *   bench_spool [DIR [N64 [N1K]]]     defaults /tmp, 500000 and 200000 messages
 *
 * For a QoS 1 MQTT 3.1.1 PUBLISH with a 33-byte topic and a 64 B or 1 KiB payload:
 *   in      relay_spool_append() as fast as the loop can go, relay_spool_commit() called as the
 *           core calls it (whenever relay_spool_deadline() has passed: 2 ms after the first
 *           pending append, at once past 1 MiB pending), until every record was reported
 *           durable: messages/s, MB/s of journal, fsyncs/s, messages per fsync, mean commit
 *           time (write + fdatasync), and the ack delay (append -> durable()) mean and max
 *   drain   relay_spool_next() + free + relay_spool_delivered() over that whole backlog (read
 *           back from the segment files; segments are deleted as they empty)
 *   live    a destination that keeps up: append, commit when due, then hand out and deliver
 *           everything durable, in one loop (what flows when the broker is reachable)
 *   paced   64 B messages arriving at 1000, 20000 and 200000 per second for one second each:
 *           fsyncs/s, messages per fsync and the ack delay under the 2 ms group-commit window
 * beside the unspooled path: the same messages copied into a malloc'ed relay_msg queue and
 * popped and freed, which is what route.c and session.c do per message without a spool.
 * The spool directory's filesystem is printed (fsync cost depends on it); when /dev/shm is a
 * tmpfs the spool rows are repeated there, where fsync costs nothing: the CPU part alone.
 */
#include <errno.h>
#include <limits.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "mqttcodec.h"
#include "store/spool.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ms(void)
{
    return (uint64_t)(now_s() * 1000.0);
}

/* The encoded PUBLISH the relay would spool. */
static struct relay_msg *make_msg(size_t payload)
{
    static const char topic[] = "factory/line-7/cell-3/temperature";
    uint8_t *body = malloc(payload);
    struct mqc_publish p = {.qos = 1, .packet_id = 1};
    struct relay_msg *m;
    size_t size, written, pid_off;

    memset(body, 'x', payload);
    p.topic = (struct mqc_bytes){(const uint8_t *)topic, sizeof(topic) - 1};
    p.payload = (struct mqc_bytes){body, payload};
    if (mqc_size_publish(&p, MQC_V311, &size) != MQC_OK)
        abort();
    m = calloc(1, sizeof(*m) + size);
    if (!m || mqc_encode_publish(&p, MQC_V311, m->data, size, &written, &pid_off) != MQC_OK)
        abort();
    m->len = (uint32_t)written;
    m->qos = 1;
    m->pid_off = (uint32_t)pid_off;
    free(body);
    return m;
}

/* ---- the unspooled baseline ------------------------------------------------------------- */

static void baseline(const struct relay_msg *tmpl, size_t n, double *in_rate, double *out_rate)
{
    struct relay_msg *head = NULL, *tail = NULL;
    double t0 = now_s(), t1;

    for (size_t i = 0; i < n; i++) {
        struct relay_msg *m = malloc(sizeof(*m) + tmpl->len);

        if (!m)
            abort();
        memcpy(m, tmpl, sizeof(*m) + tmpl->len);
        m->t_in_ms = i;
        m->next = NULL;
        if (tail)
            tail->next = m;
        else
            head = m;
        tail = m;
    }
    t1 = now_s();
    while (head) {
        struct relay_msg *m = head;

        head = m->next;
        __asm__ volatile("" : : "r"(m->data) : "memory");
        free(m);
    }
    *in_rate = (double)n / (t1 - t0);
    *out_rate = (double)n / (now_s() - t1);
}

/* ---- the spool ---------------------------------------------------------------------------- */

struct run {
    size_t durable;
    double commit_s;  /* time inside relay_spool_commit */
    double lat_sum_s; /* append -> durable(), summed */
    double lat_max_s;
};

/* The append time travels in the ack (a benchmark may abuse it: nothing is acknowledged). */
static struct relay_spool_ack stamp(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (struct relay_spool_ack){.ref = {(uint32_t)ts.tv_sec, (uint32_t)ts.tv_nsec}};
}

static void on_durable(void *arg, const struct relay_spool_ack *ack)
{
    struct run *r = arg;
    double lat = now_s() - ((double)ack->ref.slot + (double)ack->ref.gen / 1e9);

    r->durable++;
    r->lat_sum_s += lat;
    if (lat > r->lat_max_s)
        r->lat_max_s = lat;
}

static struct relay_spool *open_spool(const char *dir, struct relay_log *log, struct run *r)
{
    struct relay_spool *sp;
    char err[256];

    struct relay_spool_opts o = {dir, 64ull << 30, "bench", log, on_durable, r, now_ms(), 0};

    if (relay_spool_open(&o, &sp, err, sizeof(err))) {
        fprintf(stderr, "bench_spool: %s\n", err);
        exit(1);
    }
    return sp;
}

/* Commits when the deadline has passed, as the core's timer would. */
static void maybe_commit(struct relay_spool *sp, struct run *r, bool force)
{
    uint64_t d = relay_spool_deadline(sp), now = now_ms();

    if (d && (force || d <= now)) {
        double t = now_s();

        if (relay_spool_commit(sp, now) < 0) {
            fprintf(stderr, "bench_spool: commit failed\n");
            exit(1);
        }
        r->commit_s += now_s() - t;
    }
}

struct result {
    double in_rate, in_mbs, fsync_rate, per_fsync, commit_ms, lat_ms, lat_max_ms, drain_rate,
        live_rate;
};

static void spool_rows(const char *dir, struct relay_msg *tmpl, size_t n, struct relay_log *log,
                       struct result *res)
{
    struct run r = {0};
    struct relay_spool *sp = open_spool(dir, log, &r);
    struct relay_spool_stats st;
    struct relay_msg *m;
    double t0, t1;
    size_t got = 0;

    /* in */
    t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        struct relay_spool_ack a = stamp();

        tmpl->t_in_ms = now_ms();
        if (relay_spool_append(sp, tmpl, 0, &a) != 0)
            abort();
        maybe_commit(sp, &r, false);
    }
    while (r.durable < n)
        maybe_commit(sp, &r, true);
    t1 = now_s();
    relay_spool_stats(sp, &st);
    res->in_rate = (double)n / (t1 - t0);
    res->in_mbs = (double)st.bytes / (t1 - t0) / 1e6;
    res->fsync_rate = (double)st.fsyncs / (t1 - t0);
    res->per_fsync = (double)n / (double)st.fsyncs;
    res->commit_ms = r.commit_s * 1000.0 / (double)st.fsyncs;
    res->lat_ms = r.lat_sum_s * 1000.0 / (double)n;
    res->lat_max_ms = r.lat_max_s * 1000.0;

    /* drain the backlog */
    t0 = now_s();
    while ((m = relay_spool_next(sp, now_ms(), NULL)) != NULL) {
        relay_spool_delivered(sp, m->spool_seq, now_ms());
        free(m);
        got++;
    }
    res->drain_rate = (double)got / (now_s() - t0);
    if (got != n)
        fprintf(stderr, "bench_spool: drained %zu of %zu\n", got, n);

    /* live: the destination keeps up */
    t0 = now_s();
    got = 0;
    for (size_t i = 0; i < n; i++) {
        tmpl->t_in_ms = now_ms();
        if (relay_spool_append(sp, tmpl, 0, NULL) != 0)
            abort();
        maybe_commit(sp, &r, i + 1 == n);
        while ((m = relay_spool_next(sp, now_ms(), NULL)) != NULL) {
            relay_spool_delivered(sp, m->spool_seq, now_ms());
            free(m);
            got++;
        }
    }
    while (got < n) {
        maybe_commit(sp, &r, true);
        while ((m = relay_spool_next(sp, now_ms(), NULL)) != NULL) {
            relay_spool_delivered(sp, m->spool_seq, now_ms());
            free(m);
            got++;
        }
    }
    res->live_rate = (double)n / (now_s() - t0);
    relay_spool_close(sp, now_ms());
}

/* Messages arriving at rate per second for one second; commit when due; then delivered. */
static void paced(const char *dir, struct relay_msg *tmpl, double rate, struct relay_log *log)
{
    struct run r = {0};
    struct relay_spool *sp = open_spool(dir, log, &r);
    struct relay_spool_stats st;
    struct relay_msg *m;
    double t0 = now_s(), t;
    size_t n = 0;

    while ((t = now_s()) - t0 < 1.0) {
        if ((double)n < (t - t0) * rate) {
            struct relay_spool_ack a = stamp();

            tmpl->t_in_ms = now_ms();
            if (relay_spool_append(sp, tmpl, 0, &a) != 0)
                abort();
            n++;
        }
        maybe_commit(sp, &r, false);
    }
    while (r.durable < n)
        maybe_commit(sp, &r, true);
    relay_spool_stats(sp, &st);
    printf("%10.0f %9.0f %9.1f %6.2f/%6.2f\n", (double)n / (now_s() - t0),
           (double)st.fsyncs / (now_s() - t0), (double)n / (double)st.fsyncs,
           r.lat_sum_s * 1000.0 / (double)n, r.lat_max_s * 1000.0);
    while ((m = relay_spool_next(sp, now_ms(), NULL)) != NULL) {
        relay_spool_delivered(sp, m->spool_seq, now_ms());
        free(m);
    }
    relay_spool_close(sp, now_ms());
}

/* "ext4 on /dev/vda (mounted at /)" */
static void describe_fs(const char *dir, char *out, size_t cap)
{
    FILE *f = setmntent("/proc/self/mounts", "r");
    struct mntent *e;
    size_t best = 0;

    snprintf(out, cap, "unknown filesystem");
    while (f && (e = getmntent(f)) != NULL) {
        size_t l = strlen(e->mnt_dir);

        if (strncmp(dir, e->mnt_dir, l) == 0 && (dir[l] == '/' || dir[l] == '\0' || l == 1) &&
            l >= best) {
            best = l;
            snprintf(out, cap, "%s on %s (mounted at %s)", e->mnt_type, e->mnt_fsname, e->mnt_dir);
        }
    }
    if (f)
        endmntent(f);
}

static void rm_dir(const char *dir)
{
    char cmd[PATH_MAX + 160];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_spool: could not remove %s\n", dir);
}

static void bench_dir(const char *base, const size_t *ns, struct relay_msg **tmpl,
                      struct relay_log *log)
{
    char dir[PATH_MAX + 64], fs[512], real[PATH_MAX];

    if (!realpath(base, real)) {
        fprintf(stderr, "bench_spool: %s: %s\n", base, strerror(errno));
        exit(1);
    }
    describe_fs(real, fs, sizeof(fs));
    printf("\nspool in %s: %s\n", real, fs);
    printf("%-8s %9s %10s %8s %9s %9s %9s %13s %11s %10s\n", "payload", "messages", "in msg/s",
           "in MB/s", "fsyncs/s", "msg/fsync", "commit ms", "ack ms avg/max", "drain msg/s",
           "live msg/s");
    for (int c = 0; c < 2; c++) {
        struct result r;

        snprintf(dir, sizeof(dir), "%s/bench_spool.%d.%d", real, (int)getpid(), c);
        spool_rows(dir, tmpl[c], ns[c], log, &r);
        rm_dir(dir);
        printf("%-8s %9zu %10.0f %8.1f %9.0f %9.0f %9.2f %6.2f/%6.2f %11.0f %10.0f\n",
               c ? "1 KiB" : "64 B", ns[c], r.in_rate, r.in_mbs, r.fsync_rate, r.per_fsync,
               r.commit_ms, r.lat_ms, r.lat_max_ms, r.drain_rate, r.live_rate);
    }
    printf("paced arrivals, 64 B, 1 s each (the 2 ms group-commit window at work):\n");
    printf("%10s %9s %9s %13s\n", "msg/s", "fsyncs/s", "msg/fsync", "ack ms avg/max");
    for (int k = 0; k < 3; k++) {
        static const double rates[] = {1000, 20000, 200000};

        snprintf(dir, sizeof(dir), "%s/bench_spool.%d.paced", real, (int)getpid());
        paced(dir, tmpl[0], rates[k], log);
        rm_dir(dir);
    }
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : "/tmp";
    size_t ns[2] = {argc > 2 ? strtoul(argv[2], NULL, 10) : 500000,
                    argc > 3 ? strtoul(argv[3], NULL, 10) : 200000};
    struct relay_msg *tmpl[2] = {make_msg(64), make_msg(1024)};
    struct relay_log log;
    struct statfs sfs;

    relay_log_init(&log, RELAY_LOG_WARN);
    printf("bench_spool: QoS 1 PUBLISH, 33-byte topic; encoded %u B and %u B; journal record "
           "= 56 B header + the PUBLISH\n",
           tmpl[0]->len, tmpl[1]->len);
    printf("\nunspooled baseline (malloc'ed relay_msg queue: copy in, pop and free)\n");
    printf("%-8s %10s %12s %12s\n", "payload", "messages", "in msg/s", "out msg/s");
    for (int c = 0; c < 2; c++) {
        double in, out;

        baseline(tmpl[c], ns[c], &in, &out);
        printf("%-8s %10zu %12.0f %12.0f\n", c ? "1 KiB" : "64 B", ns[c], in, out);
    }
    bench_dir(base, ns, tmpl, &log);
    if (statfs("/dev/shm", &sfs) == 0 && sfs.f_type == 0x01021994 && strcmp(base, "/dev/shm"))
        bench_dir("/dev/shm", ns, tmpl, &log);
    free(tmpl[0]);
    free(tmpl[1]);
    return 0;
}
