/*
 * status.c: GET /api/v1/status, what the relay is doing as one JSON object (the man page,
 * mqtt-relay.conf(5), documents every member; the names are stable: members may be added,
 * none renamed or removed).
 *
 * Nothing secret is read here: no password, no token, no client certificate. URLs cannot hold
 * user-info (the configuration refuses it), and any is cut anyway, with a WebSocket URL's query.
 * Every string goes through relay_json_string(): names, topics, URLs and log lines are shown as
 * text whatever they hold. Times are RFC 3339 UTC with milliseconds (monotonic times plus the
 * wall offset the relay was given); durations are seconds.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "util/json.h"

static const char *const view_names[] = {"idle", "connecting", "subscribing",
                                         "up",   "closing",    "waiting"};

static const char *version_text(uint8_t v)
{
    return v == MQC_V31 ? "3.1" : v == MQC_V311 ? "3.1.1" : "5";
}

static void key(FILE *f, const char *k)
{
    relay_json_cstr(f, k);
    fputc(':', f);
}

/* A monotonic time (the relay's clock) as RFC 3339. */
static void mono_time(FILE *f, const struct relay *r, uint64_t ms)
{
    char ts[RELAY_JSON_TIME_LEN];

    relay_json_time(ts, sizeof(ts), (int64_t)ms + r->wall_offset_ms);
    fprintf(f, "\"%s\"", ts);
}

static double seconds(uint64_t from, uint64_t to)
{
    return to > from ? (double)(to - from) / 1000.0 : 0.0;
}

/* A URL without user-info ("user:pass@") and without a query ("?token=..."): what may be
 * shown. */
static void public_url(FILE *f, const char *url)
{
    const char *auth = strstr(url, "://"), *at = NULL, *q;
    size_t alen;

    if (!auth) {
        relay_json_cstr(f, url);
        return;
    }
    auth += 3;
    alen = strcspn(auth, "/?#");
    for (size_t i = 0; i < alen; i++)
        if (auth[i] == '@')
            at = auth + i;
    q = auth + strcspn(auth, "?#");
    if (!at && !*q) {
        relay_json_cstr(f, url);
        return;
    }
    {
        size_t head = (size_t)(auth - url), tail = (size_t)(q - (at ? at + 1 : auth));
        char *buf = malloc(head + tail + 8);

        if (!buf) {
            fputs("null", f);
            return;
        }
        memcpy(buf, url, head);
        memcpy(buf + head, at ? at + 1 : auth, tail);
        strcpy(buf + head + tail, *q ? "?***" : "");
        relay_json_cstr(f, buf);
        free(buf);
    }
}

static void numbers(FILE *f, const uint32_t *v, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%" PRIu32, i ? "," : "", v[i]);
    fputc(']', f);
}

/* ---- relay ------------------------------------------------------------------------------- */

static void relay_part(FILE *f, const struct relay *r, uint64_t now)
{
    const struct relay_reload_info *rl = &r->reloads;

    fputs("\"relay\":{", f);
    key(f, "id");
    relay_json_cstr(f, r->cfg->id);
    fputs(",\"version\":", f);
    relay_json_cstr(f, RELAY_VERSION_STRING);
    fputs(",\"now\":", f);
    mono_time(f, r, now);
    fputs(",\"started\":", f);
    mono_time(f, r, r->started_ms);
    fprintf(f, ",\"uptime_seconds\":%.3f", seconds(r->started_ms, now));
    fprintf(f, ",\"healthy\":%s", relay_healthy(r) ? "true" : "false");
    fputs(",\"config_file\":", f);
    relay_json_cstr(f, r->cfg->path);
    fprintf(f, ",\"reload\":{\"count\":%" PRIu64 ",\"last\":", rl->count);
    if (!rl->at_ms) {
        fputs("null", f);
    } else {
        fputs("{\"at\":", f);
        mono_time(f, r, rl->at_ms);
        fprintf(f, ",\"ok\":%s,\"message\":", rl->ok ? "true" : "false");
        relay_json_cstr(f, rl->msg);
        fputc('}', f);
    }
    fputs("}}", f);
}

/* ---- brokers and their connections ----------------------------------------------------- */

/* The connection's pace (session/rate.h): null without one; else what it sends at most per
 * second now (configured, or learned from the broker's signals), the configured limit (null:
 * none, all learned) and how many signals lowered it. */
static void pace_part(FILE *f, const struct relay_conn *c)
{
    uint64_t now_limit = relay_pace_limit(&c->pace), signals = 0;

    if (!now_limit) {
        fputs("null", f);
        return;
    }
    for (unsigned k = 0; k < RELAY_PACE_SIG__COUNT; k++)
        signals += c->pace.signals[k];
    fprintf(f, "{\"messages_per_second\":%" PRIu64 ",\"limit\":", now_limit);
    if (c->b->cfg->rate_messages)
        fprintf(f, "%" PRIu32, c->b->cfg->rate_messages);
    else
        fputs("null", f);
    fprintf(f, ",\"signals\":%" PRIu64 "}", signals);
}

static void conn_part(FILE *f, const struct relay *r, const struct relay_conn *c, uint64_t now)
{
    enum relay_conn_view v = relay_conn_view(c);
    bool up = relay_conn_up(c);

    fprintf(f, "{\"index\":%" PRIu32 ",\"client_id\":", c->idx);
    relay_json_cstr(f, c->client_id);
    fputs(",\"state\":", f);
    relay_json_cstr(f, view_names[v]);
    fputs(",\"state_since\":", f);
    /* tracked at every entry point; a state not seen yet began now */
    if (c->view_known && c->view == v)
        mono_time(f, r, c->state_since);
    else
        mono_time(f, r, now);
    fputs(",\"url\":", f);
    public_url(f, c->b->cfg->urls[c->url_idx].text);
    fputs(",\"up_since\":", f);
    if (up && c->up_since)
        mono_time(f, r, c->up_since);
    else
        fputs("null", f);
    fprintf(f, ",\"connected_seconds\":%.3f", up && c->up_since ? seconds(c->up_since, now) : 0.0);
    fprintf(f, ",\"reconnects\":%" PRIu64 ",\"last_error\":", c->stats.reconnects);
    if (c->last_error_ms) {
        fputs("{\"at\":", f);
        mono_time(f, r, c->last_error_ms);
        fputs(",\"text\":", f);
        relay_json_cstr(f, c->last_error);
        fputc('}', f);
    } else {
        fputs("null", f);
    }
    fprintf(f, ",\"retry_in_seconds\":%.3f",
            v == RELAY_CV_WAITING ? seconds(now, c->retry_at) : 0.0);
    fprintf(f,
            ",\"inflight\":%" PRIu32 ",\"inflight_limit\":%" PRIu32 ",\"queued_bytes\":%" PRIu64
            ",\"rx_paused\":%s,\"bytes_sent\":%" PRIu64 ",\"bytes_received\":%" PRIu64 ",\"pace\":",
            relay_session_unacked(c->s), relay_session_window_limit(c->s),
            relay_session_queued_bytes(c->s), c->rx_paused ? "true" : "false", c->stats.bytes_sent,
            c->stats.bytes_received);
    pace_part(f, c);
    fputc('}', f);
}

static void spool_part(FILE *f, const struct relay_broker *b, uint64_t now)
{
    struct relay_spool_stats st;
    uint32_t hist[RELAY_HIST_LEN];

    if (!b->feed.spool) {
        fputs("null", f);
        return;
    }
    relay_spool_stats(b->feed.spool, &st);
    relay_hist_read(&b->feed.hist, now, hist);
    fprintf(f,
            "{\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"max_bytes\":%" PRIu64
            ",\"oldest_age_seconds\":%.3f,\"full\":%s,"
            "\"history\":{\"interval_seconds\":1,\"messages\":",
            st.messages, st.bytes, b->cfg->spool.max_size,
            st.oldest_ms ? seconds(st.oldest_ms, now) : 0.0, b->feed.full ? "true" : "false");
    numbers(f, hist, RELAY_HIST_LEN);
    fputs("}}", f);
}

static bool all_tls(const struct relay_broker_config *bc)
{
    for (size_t i = 0; i < bc->n_urls; i++)
        if (bc->urls[i].scheme != RELAY_MQTTS && bc->urls[i].scheme != RELAY_WSS)
            return false;
    return bc->n_urls > 0;
}

static void broker_part(FILE *f, const struct relay *r, const struct relay_broker *b, uint64_t now)
{
    const struct relay_broker_config *bc = b->cfg;
    uint32_t up = 0;

    for (uint32_t j = 0; j < b->n_conns; j++)
        up += relay_conn_up(&b->conns[j]);
    fputs("{\"name\":", f);
    relay_json_cstr(f, bc->name);
    fputs(",\"version\":", f);
    relay_json_cstr(f, version_text(bc->version));
    fputs(",\"urls\":[", f);
    for (size_t i = 0; i < bc->n_urls; i++) {
        if (i)
            fputc(',', f);
        public_url(f, bc->urls[i].text);
    }
    /* profile: a broker family's rules (null: none); tls_cert_expiry: the end of validity of
     * the client certificate its links use (null: none seen yet) */
    fprintf(f, "],\"tls\":%s,\"profile\":%s,\"tls_cert_expiry\":", all_tls(bc) ? "true" : "false",
            bc->profile == RELAY_PROFILE_BIFROMQ ? "\"bifromq\"" : "null");
    if (b->net.cert_not_after) {
        char ts[RELAY_JSON_TIME_LEN];

        relay_json_time(ts, sizeof(ts), b->net.cert_not_after * 1000);
        fprintf(f, "\"%s\"", ts);
    } else {
        fputs("null", f);
    }
    fprintf(f, ",\"connections_up\":%" PRIu32 ",\"connections\":%" PRIu32 ",\"spool\":", up,
            b->n_conns);
    spool_part(f, b, now);
    fputs(",\"conns\":[", f);
    for (uint32_t j = 0; j < b->n_conns; j++) {
        if (j)
            fputc(',', f);
        conn_part(f, r, &b->conns[j], now);
    }
    fputs("]}", f);
}

/* ---- routes ------------------------------------------------------------------------------- */

static void route_part(FILE *f, const struct relay_route *rt, uint64_t now)
{
    uint32_t v[RELAY_HIST_LEN];

    fputs("{\"name\":", f);
    relay_json_cstr(f, rt->cfg->name);
    fputs(",\"from\":", f);
    relay_json_cstr(f, rt->from->cfg->name);
    fputs(",\"to\":", f);
    relay_json_cstr(f, rt->to->cfg->name);
    fputs(",\"filter\":", f);
    relay_json_cstr(f, rt->cfg->filter);
    fputs(",\"subscription\":", f);
    relay_json_cstr(f, rt->sub_filter);
    fputs(",\"topic\":", f);
    relay_json_cstr(f, rt->cfg->topic);
    fprintf(f, ",\"qos\":%u,\"received\":%" PRIu64 ",\"forwarded\":%" PRIu64 ",\"dropped\":{",
            rt->cfg->qos, rt->stats.received, rt->stats.forwarded);
    for (int d = 0; d < RELAY_DROP__COUNT; d++) {
        if (d)
            fputc(',', f);
        key(f, relay_drop_name((enum relay_drop)d));
        fprintf(f, "%" PRIu64, rt->stats.dropped[d]);
    }
    fputs("},\"rate\":{\"interval_seconds\":1,\"in\":", f);
    relay_hist_read(&rt->stats.rate_in, now, v);
    numbers(f, v, RELAY_HIST_LEN);
    fputs(",\"out\":", f);
    relay_hist_read(&rt->stats.rate_out, now, v);
    numbers(f, v, RELAY_HIST_LEN);
    fputs("}}", f);
}

/* ---- the log's last warnings and errors ---------------------------------------------------- */

static void log_part(FILE *f, const struct relay_log *lg)
{
    size_t n = 0;

    while (relay_log_ring(lg, n))
        n++;
    fputs("\"log\":[", f);
    for (size_t i = n; i-- > 0;) { /* oldest first */
        const struct relay_log_entry *e = relay_log_ring(lg, i);
        char ts[RELAY_JSON_TIME_LEN];

        relay_json_time(ts, sizeof(ts), e->wall_ms);
        fprintf(f, "%s{\"ts\":\"%s\",\"level\":\"%s\",\"who\":", i + 1 == n ? "" : ",", ts,
                e->level == RELAY_LOG_ERROR ? "ERROR" : "WARN");
        relay_json_cstr(f, e->who);
        fputs(",\"msg\":", f);
        relay_json_cstr(f, e->msg);
        fprintf(f, ",\"repeated\":%" PRIu32 "}", e->repeated);
    }
    fputc(']', f);
}

int relay_status_render(const struct relay *r, uint64_t now_ms, char **body, size_t *len)
{
    FILE *f = open_memstream(body, len);

    if (!f)
        return -ENOMEM;
    fputs("{\"api\":1,", f);
    relay_part(f, r, now_ms);
    fputs(",\"brokers\":[", f);
    for (size_t i = 0; i < r->n_brokers; i++) {
        if (i)
            fputc(',', f);
        broker_part(f, r, &r->brokers[i], now_ms);
    }
    fputs("],\"routes\":[", f);
    for (size_t i = 0; i < r->n_routes; i++) {
        if (i)
            fputc(',', f);
        route_part(f, &r->routes[i], now_ms);
    }
    fputs("],", f);
    log_part(f, r->log);
    fputs("}\n", f);
    if (ferror(f)) {
        fclose(f);
        free(*body);
        *body = NULL;
        return -ENOMEM;
    }
    if (fclose(f) != 0) {
        free(*body);
        *body = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* ---- the gauges' histories, from the tick --------------------------------------------------- */

static bool any_spool(const struct relay *r)
{
    for (size_t i = 0; i < r->n_brokers; i++)
        if (r->brokers[i].feed.spool)
            return true;
    return false;
}

void relay_status_sample(struct relay *r, uint64_t now_ms)
{
    for (size_t i = 0; i < r->n_brokers; i++) {
        struct relay_broker *b = &r->brokers[i];
        struct relay_spool_stats st;

        if (!b->feed.spool)
            continue;
        relay_spool_stats(b->feed.spool, &st);
        relay_hist_set(&b->feed.hist, now_ms,
                       st.messages > UINT32_MAX ? UINT32_MAX : (uint32_t)st.messages);
    }
}

uint64_t relay_status_deadline(const struct relay *r)
{
    if (!r->cfg->metrics_host || !any_spool(r) || r->stopping)
        return 0;
    return (r->now_ms / 1000u + 1u) * 1000u;
}
