/*
 * service.c: the transport as one object: the lws context and its two vhosts (the links', raw
 * TCP; the metrics listener's), the name resolver, the io table the core
 * is given, the event loop (relay_transport_service) with read batching (the policy is
 * core/batch.c: measured and applied here), the core's wake-up timer, and the clock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/internal.h"

uint64_t relay_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t relay_wall_offset_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - (int64_t)relay_now_ms();
}

/* The core's wake-up requests, earliest first; one lws timer is armed for wakes[0]. */
static void wake_fire(lws_sorted_usec_list_t *sul);

static void wake_arm(struct relay_transport *t)
{
    uint64_t now = relay_now_ms(), at;

    if (!t->n_wakes) {
        lws_sul_cancel(&t->sul_wake);
        return;
    }
    at = t->wakes[0];
    lws_sul_schedule(t->ctx, 0, &t->sul_wake, wake_fire,
                     at > now ? (lws_usec_t)(at - now) * LWS_US_PER_MS : 0);
}

static void wake_fire(lws_sorted_usec_list_t *sul)
{
    struct relay_transport *t = lws_container_of(sul, struct relay_transport, sul_wake);
    uint64_t now = relay_now_ms();
    unsigned n = 0;

    while (n < t->n_wakes && t->wakes[n] <= now)
        n++;
    t->n_wakes -= n;
    memmove(t->wakes, t->wakes + n, t->n_wakes * sizeof(t->wakes[0]));
    if (t->core)
        relay_core_tick(t->core, now); /* may ask again: io_wake_at() re-arms */
    wake_arm(t);
}

/* Every request is honoured: a tick comes at or soon after each at_ms. With the table full,
 * the latest entry is moved earlier (a tick too early is harmless: the core asks again). */
static void io_wake_at(void *ctx, uint64_t at_ms)
{
    struct relay_transport *t = ctx;
    unsigned i;

    for (i = 0; i < t->n_wakes && t->wakes[i] < at_ms; i++)
        ;
    if (i < t->n_wakes && t->wakes[i] == at_ms)
        return;
    if (t->n_wakes == MAX_WAKES) {
        if (i == MAX_WAKES)
            return; /* later than all: the tick at wakes[last] comes first */
        t->n_wakes--;
    }
    memmove(t->wakes + i + 1, t->wakes + i, (t->n_wakes - i) * sizeof(t->wakes[0]));
    t->wakes[i] = at_ms;
    t->n_wakes++;
    if (i == 0)
        wake_arm(t);
}

/* ---------------------------------------------------------------------------------------- */
/* Public API                                                                                */
/* ---------------------------------------------------------------------------------------- */

int relay_transport_new(const struct relay_transport_opts *o, struct relay_transport **out,
                        char *err, size_t errlen)
{
    struct lws_context_creation_info info;
    struct relay_transport *t;
    int r;

    *out = NULL;
    if (errlen)
        err[0] = '\0';
    t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    t->core = o->core;
    t->log_level = o->log_level;
    relay_batch_init(&t->batch, o->batch_wait_us);
    t->sched_fd = -1;
    t->io.ctx = t;
    t->io.connect = io_link_connect;
    t->io.want_write = io_link_want_write;
    t->io.pause_rx = io_link_pause_rx;
    t->io.close = io_link_close;
    t->io.wake_at = io_wake_at;

    lws_set_log_level(io_lws_log_mask(o->log_level), io_lws_log_emit);

    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.user = t;
    info.timeout_secs = TIMEOUT_SECS;
    info.gid = -1;
    info.uid = -1;
    /* the buffer lws reads sockets into: 4 KiB by default, i.e. a read (and a callback) per
     * ~60 small PUBLISHes; 64 KiB takes a busy stream in far fewer */
    info.pt_serv_buf_size = RX_BUF;
    t->ctx = lws_create_context(&info);
    if (!t->ctx) {
        snprintf(err, errlen, "libwebsockets: cannot create the context");
        free(t);
        return -ENOMEM;
    }
    /* read batching's contention signal; without it (no such file) the relay never waits */
    t->sched_fd = open("/proc/self/schedstat", O_RDONLY | O_CLOEXEC);
    t->resolver = io_resolver_new(t->ctx);
    if (!t->resolver) {
        snprintf(err, errlen, "out of memory");
        relay_transport_free(t);
        return -ENOMEM;
    }
    /* the links' vhost: raw TCP clients (TLS, WebSocket and proxies run in stack.c) */
    memset(&info, 0, sizeof(info));
    info.vhost_name = "relay-client";
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = io_link_protocols;
    info.timeout_secs = TIMEOUT_SECS;
    info.connect_timeout_secs = CONNECT_TIMEOUT_SECS;
    info.gid = -1;
    info.uid = -1;
    t->vh_client = lws_create_vhost(t->ctx, &info);
    if (!t->vh_client) {
        snprintf(err, errlen, "libwebsockets: cannot create the client vhost");
        relay_transport_free(t);
        return -ENOMEM;
    }
    if (o->metrics_host) {
        r = io_http_listen(t, o, err, errlen);
        if (r) {
            relay_transport_free(t);
            return r;
        }
    }
    *out = t;
    return 0;
}

void relay_transport_free(struct relay_transport *t)
{
    if (!t)
        return;
    t->destroying = true;
    io_resolver_stop(t->resolver); /* no thread wakes the context from now on */
    if (t->ctx) {
        lws_sul_cancel(&t->sul_wake);
        lws_sul_cancel(&t->sul_service);
        lws_sul_cancel(&t->sul_flush);
        for (struct link *l = t->links; l; l = l->next)
            lws_sul_cancel(&l->sul);
        lws_context_destroy(t->ctx);
    }
    while (t->links)
        io_link_free(t->links);
    io_tls_ctx_free_all(t);
    io_resolver_free(t->resolver); /* a lookup still hanging ends alone, telling nobody */
    if (t->sched_fd >= 0)
        close(t->sched_fd);
    free(t);
}

void relay_transport_set_core(struct relay_transport *t, void *core)
{
    t->core = core;
}

const struct relay_io *relay_transport_io(struct relay_transport *t)
{
    return &t->io;
}

static void service_timeout(lws_sorted_usec_list_t *sul)
{
    (void)sul; /* only ends the poll() wait */
}

/* Read batching (core/batch.h): the process's run and run-queue times, every
 * RELAY_BATCH_SAMPLE_MS while rounds are busy enough to wait at all. */
static void batch_sample(struct relay_transport *t)
{
    uint64_t now = relay_now_ms();
    unsigned long long r, w;
    char buf[128];
    ssize_t n;

    if (now < t->sched_next_ms)
        return;
    t->sched_next_ms = now + RELAY_BATCH_SAMPLE_MS;
    n = t->sched_fd < 0 ? -1 : pread(t->sched_fd, buf, sizeof(buf) - 1, 0);
    if (n > 0)
        buf[n] = '\0';
    if (n <= 0 || sscanf(buf, "%llu %llu", &r, &w) != 2)
        relay_batch_sample(&t->batch, false, 0, 0);
    else
        relay_batch_sample(&t->batch, true, r, w);
}

static int batch_wait(struct relay_transport *t)
{
    uint32_t us;
    struct timespec ts;

    if (!t->core || !relay_batch_may_wait(&t->batch, t->round_packets, t->round_full))
        return 0;
    batch_sample(t);
    us = relay_batch_wait_us(&t->batch, t->round_packets, t->round_full);
    if (!us)
        return 0;
    /* (the writes this round asked for went out in io_link_flush() already) */
    ts.tv_sec = 0;
    ts.tv_nsec = (long)us * 1000L;
    nanosleep(&ts, NULL); /* a signal ends it early: fine */
    relay_core_batch_waited(t->core, us);
    return 0;
}

int relay_transport_service(struct relay_transport *t, int timeout_ms)
{
    /* lws 4.1.6 ignores a positive timeout (it waits for the next event or timer): bound
     * the wait with a timer of our own; 0 is lws' "don't wait" (-1); <0 waits for an event. */
    if (timeout_ms > 0)
        lws_sul_schedule(t->ctx, 0, &t->sul_service, service_timeout,
                         (lws_usec_t)timeout_ms * LWS_US_PER_MS);
    t->round_packets = 0;
    t->round_full = false;
    io_link_flush(t); /* what was asked for between two services (a signal, a reload) */
    if (lws_service(t->ctx, timeout_ms == 0 ? -1 : 0) < 0)
        return -EIO;
    io_link_flush(t); /* what this round's reads and timers produced, one send per socket */
    return batch_wait(t);
}

void relay_transport_set_batch_wait(struct relay_transport *t, uint32_t us)
{
    t->batch.max_us = us;
}

void relay_transport_cancel(struct relay_transport *t)
{
    lws_cancel_service(t->ctx);
}
