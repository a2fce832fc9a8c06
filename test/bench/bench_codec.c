/*
 * bench_codec: nanoseconds per PUBLISH decode / encode in mqttcodec, and heap allocations per
 * packet (must be 0: the codec never allocates).
 *
 *   bench_codec [ITERATIONS [RUNS]]     defaults 2000000 and 7
 *
 * Each case runs ITERATIONS operations RUNS times, timed with CLOCK_MONOTONIC; the table shows
 * the median run (and the fastest). The process pins itself to one CPU. malloc, calloc,
 * realloc and free are interposed in this executable and counted while the timed loops run.
 * Results are kept alive through an empty asm barrier so the work cannot be optimised away.
 */
#define _GNU_SOURCE
#include "mqttcodec.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- counting allocator ------------------------------------------------------------------ */
static unsigned long alloc_calls;
static int counting;

#if defined(__GLIBC__)
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
#define REAL(f) __libc_##f
#else
/* elsewhere: the next definition in link order, found once with dlsym(RTLD_NEXT) */
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static void resolve(void)
{
    if (!real_malloc) {
        real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
        real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
        real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
        real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    }
}
#define REAL(f) (resolve(), real_##f)
#endif

void *malloc(size_t n)
{
    if (counting)
        alloc_calls++;
    return REAL(malloc)(n);
}

void *calloc(size_t n, size_t m)
{
    if (counting)
        alloc_calls++;
    return REAL(calloc)(n, m);
}

void *realloc(void *p, size_t n)
{
    if (counting)
        alloc_calls++;
    return REAL(realloc)(p, n);
}

void free(void *p)
{
    REAL(free)(p);
}

/* ---- helpers -------------------------------------------------------------------------------- */
static inline void keep(const void *p)
{
    __asm__ volatile("" : : "g"(p) : "memory");
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_codec: %s failed: %s (%d)\n", what, mqc_strerror(rc), rc);
    exit(1);
}

/* one benchmark case: a PUBLISH and its encoding */
struct bcase {
    const char *name;
    uint8_t v;
    struct mqc_publish pub;
    uint8_t props[256];
    uint8_t wire[2048];
    size_t wire_len;
};

static void make_case(struct bcase *c, const char *name, uint8_t v, size_t payload_len,
                      int user_props, const uint8_t *payload)
{
    static const char topic[] = "factory/line-7/sensor/temperature";
    memset(c, 0, sizeof *c);
    c->name = name;
    c->v = v;
    c->pub.qos = 1;
    c->pub.packet_id = 4711;
    c->pub.topic = (struct mqc_bytes){(const uint8_t *)topic, sizeof topic - 1};
    c->pub.payload = (struct mqc_bytes){payload, payload_len};
    size_t plen = 0;
    static const char *const kv[3][2] = {
        {"relay-path", "site-a,site-b"}, {"trace-id", "4bf92f3577b34da6"}, {"source", "plc-17"}};
    for (int i = 0; i < user_props; i++) {
        struct mqc_prop p = {.id = MQC_PROP_USER};
        p.str = (struct mqc_bytes){(const uint8_t *)kv[i][0], strlen(kv[i][0])};
        p.val = (struct mqc_bytes){(const uint8_t *)kv[i][1], strlen(kv[i][1])};
        int rc = mqc_prop_put(&p, c->props, sizeof c->props, &plen);
        if (rc != MQC_OK)
            die("mqc_prop_put", rc);
    }
    c->pub.props = (struct mqc_props){c->props, plen};
    size_t sz = 0;
    int rc = mqc_size_publish(&c->pub, v, &sz);
    if (rc != MQC_OK)
        die("mqc_size_publish", rc);
    if (sz > sizeof c->wire)
        die("wire buffer", MQC_ENOSPC);
    rc = mqc_encode_publish(&c->pub, v, c->wire, sizeof c->wire, &c->wire_len, NULL);
    if (rc != MQC_OK)
        die("mqc_encode_publish", rc);
}

enum op { OP_DECODE, OP_DECODE_FAST, OP_ENCODE, OP_ROUNDTRIP };

/* Runs op n times on c; returns ns per operation. */
static double run_once(enum op op, const struct bcase *c, long n)
{
    static uint8_t out[2048];
    struct mqc_packet pkt;
    struct mqc_publish pub;
    size_t sz, wr, pid_off;
    double t0 = now_ns();
    switch (op) {
    case OP_DECODE:
        for (long i = 0; i < n; i++) {
            keep(c->wire);
            int rc = mqc_decode(c->wire, c->wire_len, c->v, &pkt);
            if (rc != MQC_OK)
                die("mqc_decode", rc);
            keep(&pkt);
        }
        break;
    case OP_DECODE_FAST:
        for (long i = 0; i < n; i++) {
            keep(c->wire);
            int rc = mqc_decode_publish(c->wire, c->wire_len, c->v, &pub);
            if (rc != MQC_OK)
                die("mqc_decode_publish", rc);
            keep(&pub);
        }
        break;
    case OP_ENCODE:
        for (long i = 0; i < n; i++) {
            keep(&c->pub);
            int rc = mqc_size_publish(&c->pub, c->v, &sz);
            if (rc == MQC_OK)
                rc = mqc_encode_publish(&c->pub, c->v, out, sz, &wr, &pid_off);
            if (rc != MQC_OK)
                die("mqc_encode_publish", rc);
            keep(out);
        }
        break;
    case OP_ROUNDTRIP:
        /* what the relay does per forwarded message: decode, size, encode */
        for (long i = 0; i < n; i++) {
            keep(c->wire);
            int rc = mqc_decode_publish(c->wire, c->wire_len, c->v, &pub);
            if (rc == MQC_OK)
                rc = mqc_size_publish(&pub, c->v, &sz);
            if (rc == MQC_OK)
                rc = mqc_encode_publish(&pub, c->v, out, sz, &wr, &pid_off);
            if (rc != MQC_OK)
                die("decode+encode", rc);
            keep(out);
        }
        break;
    }
    return (now_ns() - t0) / (double)n;
}

struct result {
    double median, best;
    double allocs_per_op;
};

static struct result measure(enum op op, const struct bcase *c, long n, int runs)
{
    double t[64];
    struct result r;
    run_once(op, c, n / 10 + 1); /* warm caches and branch predictors */
    alloc_calls = 0;
    counting = 1;
    for (int i = 0; i < runs; i++)
        t[i] = run_once(op, c, n);
    counting = 0;
    qsort(t, (size_t)runs, sizeof t[0], cmp_double);
    r.median = t[runs / 2];
    r.best = t[0];
    r.allocs_per_op = (double)alloc_calls / ((double)n * runs);
    return r;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 2000000;
    int runs = argc > 2 ? atoi(argv[2]) : 7;
    if (n < 1 || runs < 1 || runs > 64) {
        fprintf(stderr, "usage: bench_codec [ITERATIONS [RUNS(1..64)]]\n");
        return 2;
    }

    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    int pinned = sched_setaffinity(0, sizeof set, &set) == 0;

    /* the counter sees allocations at all (so that 0 below means something) */
    alloc_calls = 0;
    counting = 1;
    void *probe = malloc(32);
    keep(probe);
    counting = 0;
    free(probe);
    if (alloc_calls != 1) {
        fprintf(stderr, "bench_codec: malloc interposer not active (%lu calls seen)\n",
                alloc_calls);
        return 1;
    }

    static uint8_t payload[1024];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7u + 3u);
    static struct bcase cases[4];
    make_case(&cases[0], "3.1.1   64 B", MQC_V311, 64, 0, payload);
    make_case(&cases[1], "3.1.1 1 KiB", MQC_V311, 1024, 0, payload);
    make_case(&cases[2], "5.0+3UP 64 B", MQC_V5, 64, 3, payload);
    make_case(&cases[3], "5.0+3UP 1 KiB", MQC_V5, 1024, 3, payload);

    static const struct {
        enum op op;
        const char *name;
    } ops[] = {
        {OP_DECODE, "decode (mqc_decode)"},
        {OP_DECODE_FAST, "decode (mqc_decode_publish)"},
        {OP_ENCODE, "encode (size_publish+encode_publish)"},
        {OP_ROUNDTRIP, "decode+encode (relay forward path)"},
    };

    printf("mqttcodec PUBLISH benchmark: QoS 1, topic of 33 bytes, %ld iterations x %d runs, "
           "median (best) ns/op, %s\n",
           n, runs, pinned ? "pinned to CPU 0" : "not pinned");
    printf("%-38s %-14s %6s %10s %10s %10s\n", "operation", "packet", "bytes", "ns/op", "best",
           "allocs/op");
    unsigned long total_allocs = 0;
    double rt64 = 0;
    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
        for (size_t k = 0; k < 4; k++) {
            struct result r = measure(ops[o].op, &cases[k], n, runs);
            printf("%-38s %-14s %6zu %10.1f %10.1f %10.3g\n", ops[o].name, cases[k].name,
                   cases[k].wire_len, r.median, r.best, r.allocs_per_op);
            total_allocs += alloc_calls;
            if (ops[o].op == OP_ROUNDTRIP && k == 0)
                rt64 = r.median;
        }
    }
    printf("\ndecode+encode of a 64 B 3.1.1 PUBLISH: %.1f ns (target < 100 ns): %s\n", rt64,
           rt64 < 100.0 ? "met" : "NOT met");
    printf("heap allocations during all timed loops: %lu (must be 0): %s\n", total_allocs,
           total_allocs == 0 ? "ok" : "FAILED");
    return total_allocs == 0 ? 0 : 1;
}
