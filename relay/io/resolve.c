/*
 * resolve.c: name lookups off the event loop. A lookup is glibc's getaddrinfo() in a thread of
 * its own; the loop is told through lws_cancel_service() (LWS_CALLBACK_EVENT_WAIT_CANCELLED,
 * link.c) and delivers the answers to the links waiting for them. A name that never answers
 * holds one thread, never the loop: the other links go on.
 *
 * Why threads and getaddrinfo() rather than c-ares or getaddrinfo_a(): the relay then resolves
 * exactly as every other program of the machine (nsswitch, /etc/hosts read at each lookup,
 * resolv.conf reloaded when it changes and its timeout:/attempts: honoured), where c-ares 1.18
 * reads resolv.conf once, ignores those options (a hung name takes 75 s) and knows no nsswitch;
 * getaddrinfo_a() is the same glibc code with a thread per request and signal-based completion.
 * Every reconnect looks the name up again (glibc keeps no cache): addresses may change.
 *
 * Lookups of the same host running at once are shared (a pool of connections reconnecting
 * together asks once). At most MAX_THREADS run; the rest wait their turn. A thread outlives
 * the transport if its lookup hangs at shutdown: the shared state is reference-counted and the
 * thread only touches it under its lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "io/internal.h"

#define MAX_THREADS 16
#define MAX_WAITERS 4096 /* links waiting for one name: every connection of the pools */

/* One name being looked up, and the links waiting for it. */
struct dns_lookup {
    struct dns_lookup *next;
    struct io_resolver *r;
    char host[256];
    bool started, finished;
    /* the answer (written by the thread, read by the loop once finished) */
    int gai;         /* getaddrinfo()'s result */
    int sys_errno;   /* for EAI_SYSTEM */
    unsigned n_addr; /* IPv6 and IPv4 interleaved, as RFC 8305 asks */
    char addr[MAX_ADDRS][INET6_ADDRSTRLEN];
    /* the loop's side */
    struct link **waiters;
    size_t n_waiters, cap_waiters;
};

struct io_resolver {
    pthread_mutex_t mu;
    unsigned refs; /* the transport, and each running thread */
    bool dead;     /* the transport is gone: nobody to wake */
    struct lws_context *ctx;
    struct dns_lookup *lookups; /* queued, running and finished, oldest first */
    unsigned running;
};

static void resolver_unref(struct io_resolver *r)
{
    bool last;

    pthread_mutex_lock(&r->mu);
    last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (!last)
        return;
    while (r->lookups) {
        struct dns_lookup *d = r->lookups;

        r->lookups = d->next;
        free(d->waiters);
        free(d);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

struct io_resolver *io_resolver_new(struct lws_context *ctx)
{
    struct io_resolver *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    pthread_mutex_init(&r->mu, NULL);
    r->refs = 1;
    r->ctx = ctx;
    return r;
}

void io_resolver_stop(struct io_resolver *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->dead = true;
    r->ctx = NULL;
    pthread_mutex_unlock(&r->mu);
}

void io_resolver_free(struct io_resolver *r)
{
    if (!r)
        return;
    io_resolver_stop(r);
    resolver_unref(r);
}

/* The addresses of res, IPv6 and IPv4 alternating (RFC 8305 §4), duplicates removed. */
static void take_addrs(struct dns_lookup *d, const struct addrinfo *res)
{
    char v4[MAX_ADDRS][INET6_ADDRSTRLEN], v6[MAX_ADDRS][INET6_ADDRSTRLEN];
    unsigned n4 = 0, n6 = 0, i4 = 0, i6 = 0;

    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char a[INET6_ADDRSTRLEN];
        bool six = ai->ai_family == AF_INET6;
        char(*list)[INET6_ADDRSTRLEN] = six ? v6 : v4;
        unsigned *n = six ? &n6 : &n4, k;

        if ((ai->ai_family != AF_INET && !six) || *n == MAX_ADDRS ||
            getnameinfo(ai->ai_addr, ai->ai_addrlen, a, sizeof(a), NULL, 0, NI_NUMERICHOST))
            continue;
        for (k = 0; k < *n && strcmp(list[k], a); k++)
            ;
        if (k == *n)
            memcpy(list[(*n)++], a, sizeof(a));
    }
    /* getaddrinfo() sorted them (RFC 6724): the family of the first goes first */
    bool six_first = res && res->ai_family == AF_INET6;
    while (d->n_addr < MAX_ADDRS && (i4 < n4 || i6 < n6)) {
        bool take6 = i6 < n6 && (i4 >= n4 || (six_first ? i6 <= i4 : i6 < i4));

        memcpy(d->addr[d->n_addr++], take6 ? v6[i6++] : v4[i4++], INET6_ADDRSTRLEN);
    }
}

static void *lookup_thread(void *arg)
{
    struct dns_lookup *d = arg;
    struct io_resolver *r = d->r;
    struct addrinfo hints, *res = NULL;
    int gai, e;

    /* A and AAAA both, whatever addresses this machine has (no AI_ADDRCONFIG): an address of
     * a family we cannot reach fails at once when tried, and the next one is taken */
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    gai = getaddrinfo(d->host, NULL, &hints, &res);
    e = errno;
    pthread_mutex_lock(&r->mu);
    d->gai = gai;
    d->sys_errno = e;
    if (!gai)
        take_addrs(d, res);
    d->finished = true;
    r->running--;
    if (!r->dead && r->ctx)
        lws_cancel_service(r->ctx); /* thread-safe: wakes the loop */
    pthread_mutex_unlock(&r->mu);
    if (res)
        freeaddrinfo(res);
    resolver_unref(r);
    return NULL;
}

/* Starts queued lookups while threads are free (under r->mu). */
static void start_queued(struct io_resolver *r)
{
    for (struct dns_lookup *d = r->lookups; d && r->running < MAX_THREADS; d = d->next) {
        pthread_attr_t at;
        pthread_t th;

        if (d->started)
            continue;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        r->refs++;
        if (pthread_create(&th, &at, lookup_thread, d)) {
            r->refs--;
            pthread_attr_destroy(&at);
            d->started = d->finished = true; /* answered as a failure, from the loop */
            d->gai = EAI_SYSTEM;
            d->sys_errno = EAGAIN;
            if (!r->dead && r->ctx)
                lws_cancel_service(r->ctx);
            continue;
        }
        pthread_attr_destroy(&at);
        d->started = true;
        r->running++;
    }
}

static bool numeric(const char *host, struct dns_lookup *d)
{
    unsigned char a[16];

    if (inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1) {
        snprintf(d->addr[0], sizeof(d->addr[0]), "%s", host);
        d->n_addr = 1;
        return true;
    }
    return false;
}

int io_resolve(struct relay_transport *t, struct link *l, const char *host)
{
    struct io_resolver *r = t->resolver;
    struct dns_lookup *d = NULL, **tail;
    int rc = 0;

    pthread_mutex_lock(&r->mu);
    for (tail = &r->lookups; *tail; tail = &(*tail)->next)
        if (!(*tail)->finished && !strcmp((*tail)->host, host))
            d = *tail;
    if (!d) {
        d = calloc(1, sizeof(*d));
        if (!d) {
            rc = -ENOMEM;
            goto out;
        }
        d->r = r;
        snprintf(d->host, sizeof(d->host), "%s", host);
        if (numeric(host, d))
            d->started = d->finished = true;
        *tail = d;
    }
    if (d->n_waiters == d->cap_waiters) {
        size_t cap = d->cap_waiters ? 2 * d->cap_waiters : 4;
        struct link **w = cap <= MAX_WAITERS ? realloc(d->waiters, cap * sizeof(*w)) : NULL;

        if (!w) {
            rc = -ENOMEM;
            goto out;
        }
        d->waiters = w;
        d->cap_waiters = cap;
    }
    d->waiters[d->n_waiters++] = l;
    l->dns = d;
    l->dns_started_ms = relay_now_ms();
    if (d->finished)
        lws_cancel_service(t->ctx); /* numeric: answered from the loop's next turn */
    else
        start_queued(r);
out:
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void io_resolve_cancel(struct link *l)
{
    struct dns_lookup *d = l->dns;

    if (!d)
        return;
    pthread_mutex_lock(&d->r->mu);
    for (size_t i = 0; i < d->n_waiters; i++)
        if (d->waiters[i] == l)
            d->waiters[i] = NULL;
    pthread_mutex_unlock(&d->r->mu);
    l->dns = NULL;
}

static void answer(struct link *l, const struct dns_lookup *d)
{
    char why[WHY_LEN];

    if (d->gai) {
        snprintf(why, sizeof(why), "%s",
                 d->gai == EAI_SYSTEM ? strerror(d->sys_errno) : gai_strerror(d->gai));
        io_link_resolved(l, 0, NULL, why);
    } else if (!d->n_addr) {
        io_link_resolved(l, 0, NULL, "no IPv4 or IPv6 address");
    } else {
        io_link_resolved(l, (int)d->n_addr, (const char(*)[INET6_ADDRSTRLEN])d->addr, NULL);
    }
}

void io_resolver_run(struct relay_transport *t)
{
    struct io_resolver *r = t->resolver;

    for (;;) {
        struct dns_lookup *d, **pp;

        /* take one finished lookup out of the list; its links are told outside the lock
         * (a link told may connect again at once and ask for a lookup) */
        pthread_mutex_lock(&r->mu);
        for (pp = &r->lookups; *pp && !(*pp)->finished; pp = &(*pp)->next)
            ;
        d = *pp;
        if (d)
            *pp = d->next;
        start_queued(r);
        pthread_mutex_unlock(&r->mu);
        if (!d)
            return;
        for (size_t i = 0; i < d->n_waiters; i++) {
            struct link *l = d->waiters[i];

            if (!l)
                continue;
            l->dns = NULL;
            answer(l, d);
        }
        free(d->waiters);
        free(d);
    }
}
