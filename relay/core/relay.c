/*
 * relay.c: the running relay as one object. It is built from the configuration (the brokers,
 * then the routes over them, then each connection's session), started, stopped with a drain,
 * and freed. It is also the one place that schedules: every entry point from the transport
 * ends with relay_flush(), which tells the transport what the touched connections now want
 * (write interest, rx pause) and when to call back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

static uint64_t earliest(uint64_t a, uint64_t b)
{
    return !a ? b : !b ? a : a < b ? a : b;
}

/* xorshift64*: jitter only, seeded by main */
uint32_t relay_rand(struct relay *r)
{
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return (uint32_t)((r->rng * 2685821657736338717ull) >> 32);
}

void relay_mark(struct relay_conn *c)
{
    struct relay *r = c->r;

    if (c->dirty)
        return;
    if (r->n_dirty == r->dirty_cap) {
        size_t cap = r->dirty_cap ? 2 * r->dirty_cap : 64;
        struct relay_conn **d = realloc(r->dirty, cap * sizeof(*d));

        if (!d)
            return; /* the next tick syncs every connection anyway */
        r->dirty = d;
        r->dirty_cap = cap;
    }
    c->dirty = true;
    r->dirty[r->n_dirty++] = c;
}

void relay_mark_feeders(struct relay *r, const struct relay_broker *b)
{
    for (size_t i = 0; i < r->n_brokers; i++)
        for (size_t k = 0; k < r->brokers[i].n_feeds; k++)
            if (r->brokers[i].feeds[k] == b)
                for (uint32_t j = 0; j < r->brokers[i].n_conns; j++)
                    relay_mark(&r->brokers[i].conns[j]);
}

int relay_index_conns(struct relay *r)
{
    size_t n = 0, k = 0;
    struct relay_conn **a;

    for (size_t i = 0; i < r->n_brokers; i++)
        n += r->brokers[i].n_conns;
    a = realloc(r->conns, (n ? n : 1) * sizeof(*a));
    if (!a)
        return -ENOMEM;
    for (size_t i = 0; i < r->n_brokers; i++)
        for (uint32_t j = 0; j < r->brokers[i].n_conns; j++)
            a[k++] = &r->brokers[i].conns[j];
    r->conns = a;
    r->n_conns = n;
    return 0;
}

/* ---- construction ------------------------------------------------------------------------- */

int relay_new(const struct relay_config *cfg, const struct relay_env *env, struct relay **out,
              char *err, size_t errlen)
{
    struct relay *r = calloc(1, sizeof(*r));
    int rc;

    *out = NULL;
    if (!r)
        return -ENOMEM;
    r->cfg = cfg;
    r->log = env->log;
    r->io = env->io;
    r->now_ms = env->now_ms;
    r->started_ms = env->now_ms;
    r->wall_offset_ms = env->wall_offset_ms;
    r->hooks = env->hooks;
    r->rng = env->seed * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)r;
    if (!r->rng)
        r->rng = 1;
    r->brokers = calloc(cfg->n_brokers ? cfg->n_brokers : 1, sizeof(*r->brokers));
    if (!r->brokers)
        goto nomem;
    for (size_t i = 0; i < cfg->n_brokers; i++) {
        rc = relay_broker_init(r, &r->brokers[i], &cfg->brokers[i], (uint32_t)i, err, errlen);
        r->n_brokers = i + 1;
        if (rc) {
            relay_free(r);
            return rc;
        }
    }
    rc = relay_routes_build(r->brokers, cfg, &r->routes, &r->n_routes, err, errlen);
    if (rc == -EINVAL) {
        relay_free(r);
        return rc;
    }
    if (rc || relay_scratch_init(r, cfg))
        goto nomem;
    for (size_t i = 0; i < r->n_routes; i++)
        r->routes[i].sub_id = ++r->next_sub_id;
    if (relay_routes_link(r) || relay_index_conns(r))
        goto nomem;
    for (size_t i = 0; i < r->n_brokers; i++)
        if (relay_broker_init_conns(&r->brokers[i]) != 0)
            goto nomem;
    *out = r;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    relay_free(r);
    return -ENOMEM;
}

void relay_free(struct relay *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_brokers; i++)
        relay_broker_cleanup(&r->brokers[i], r->now_ms);
    relay_msg_pool_cleanup(&r->pool);
    relay_routes_free(r->routes, r->n_routes);
    free(r->by_sub_id);
    free(r->scratch);
    free(r->brokers);
    free(r->conns);
    free(r->dirty);
    free(r);
}

void relay_start(struct relay *r, uint64_t now_ms)
{
    relay_netstats_start(r);
    relay_autospool_check_state_dir(r);
    for (size_t i = 0; i < r->n_conns; i++)
        relay_conn_connect(r->conns[i], now_ms);
    relay_flush(r, now_ms);
}

/* ---- scheduling --------------------------------------------------------------------------- */

/* Syncing can touch more connections (acknowledgements queued on sources): until quiet. */
static void sync_dirty(struct relay *r, uint64_t now_ms)
{
    while (r->n_dirty) {
        struct relay_conn *c = r->dirty[--r->n_dirty];

        c->dirty = false;
        relay_conn_sync(c, now_ms);
    }
}

static void check_drain(struct relay *r, uint64_t now_ms);

void relay_flush(struct relay *r, uint64_t now_ms)
{
    uint64_t next;

    r->now_ms = now_ms;
    relay_feed_run(r, now_ms, false);
    sync_dirty(r, now_ms);
    if (r->stopping)
        check_drain(r, now_ms);
    next = earliest(relay_feed_deadline(r), relay_status_deadline(r));
    for (size_t i = 0; i < r->n_conns; i++) {
        relay_conn_track(r->conns[i], now_ms);
        next = earliest(next, relay_conn_deadline(r->conns[i]));
    }
    if (r->stopping)
        next = earliest(next, r->stop_deadline);
    /* Only an earlier deadline re-arms the timer: most move later with every packet (the
     * keepalive counts from the last byte), and a tick that comes early finds nothing due and
     * asks again; so a busy link re-arms nothing per packet. */
    if (next && (!r->next_wake || next < r->next_wake)) {
        r->next_wake = next;
        r->io->wake_at(r->io->ctx, next);
    }
}

void relay_core_tick(void *core, uint64_t now_ms)
{
    struct relay *r = core;

    r->next_wake = 0;
    for (size_t i = 0; i < r->n_conns; i++)
        relay_conn_tick(r->conns[i], now_ms);
    relay_netstats_tick(r, now_ms);
    relay_status_sample(r, now_ms);
    relay_flush(r, now_ms);
}

/* ---- reload (the file is conf/'s: main reads it through the hook) ------------------------- */

int relay_request_reload(struct relay *r, const char *by, uint64_t now_ms, char *msg, size_t msglen)
{
    int rc = -ENOTSUP;

    if (msglen)
        msg[0] = '\0';
    relay_log(r->log, RELAY_LOG_INFO, NULL, "%s: reloading %s", by, r->cfg->path);
    if (r->hooks.reload)
        rc = r->hooks.reload(r->hooks.arg, now_ms, msg, msglen);
    else
        snprintf(msg, msglen, "this relay cannot reload its configuration");
    /* r->cfg may be the new configuration now; r itself stays */
    if (rc)
        relay_log(r->log, RELAY_LOG_ERROR, NULL, "reload: %s", msg);
    r->reloads.count++;
    r->reloads.at_ms = now_ms ? now_ms : 1;
    r->reloads.ok = rc == 0;
    snprintf(r->reloads.msg, sizeof(r->reloads.msg), "%s", msg);
    return rc;
}

/* ---- shutdown ----------------------------------------------------------------------------- */

void relay_stop(struct relay *r, uint64_t now_ms)
{
    uint64_t inflight = 0;

    if (r->stopping)
        return;
    r->stopping = true;
    r->stop_deadline = now_ms + r->cfg->drain_timeout_ms;
    for (size_t i = 0; i < r->n_conns; i++) {
        inflight += relay_session_unacked(r->conns[i]->s);
        relay_conn_stop(r->conns[i], now_ms);
    }
    relay_feed_run(r, now_ms, true); /* what is spooled is acknowledged before we go */
    relay_log(r->log, RELAY_LOG_INFO, NULL,
              "shutting down: waiting up to %u ms for %llu in-flight acknowledgements",
              r->cfg->drain_timeout_ms, (unsigned long long)inflight);
    relay_flush(r, now_ms);
}

/* Draining ends when no destination owes us an acknowledgement, nothing queued can still go
 * out on a live link, and the acknowledgements we owe our sources are written; or at the
 * deadline. Then every link says DISCONNECT. */
static void check_drain(struct relay *r, uint64_t now_ms)
{
    bool quiet = true, open = false;

    for (size_t i = 0; i < r->n_conns; i++) {
        const struct relay_conn *c = r->conns[i];

        if (c->st != RELAY_CONN_OPEN && c->st != RELAY_CONN_CONNECTING)
            continue;
        open = true;
        /* what can still go out on a live link (the status "offline" among it) goes */
        if (!relay_session_drained(c->s))
            quiet = false;
    }
    if (!open) {
        r->finished = true;
        return;
    }
    if (!quiet && now_ms < r->stop_deadline)
        return;
    for (size_t i = 0; i < r->n_conns; i++) {
        struct relay_conn *c = r->conns[i];
        enum relay_session_state s = relay_session_state(c->s);

        if (c->st == RELAY_CONN_OPEN && s != RELAY_SS_CLOSING) {
            if (s == RELAY_SS_CONNECTING) {
                relay_conn_close(c);
            } else {
                relay_session_disconnect(c->s, 0, now_ms);
                relay_mark(c);
            }
        } else if (c->st == RELAY_CONN_OPEN && now_ms >= r->stop_deadline + 1000u) {
            relay_conn_close(c);
        }
    }
    /* sync what we just queued; the loop in relay_flush has already run, so do it here */
    sync_dirty(r, now_ms);
}

bool relay_finished(const struct relay *r)
{
    return r->finished;
}

bool relay_overdue(const struct relay *r, uint64_t now_ms)
{
    return r->stopping && now_ms > r->stop_deadline + 2000u;
}
