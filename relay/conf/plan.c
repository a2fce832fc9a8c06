/*
 * plan.c: the resolved plan `mqtt-relay -c FILE --check` prints for operators: what the relay
 * will connect to, with which client ids, what each route subscribes and how a topic maps.
 * Never prints a password.
 */
#include <errno.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "conf/plan.h"
#include "route/template.h"

static const char *version_name(uint8_t v)
{
    return v == MQC_V31 ? "MQTT 3.1" : v == MQC_V311 ? "MQTT 3.1.1" : "MQTT 5";
}

/* "2147483648 bytes (2.0 GiB)" */
static const char *human_bytes(char *buf, size_t cap, uint64_t n)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)n;
    int u = -1;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    if (u < 0)
        snprintf(buf, cap, "%" PRIu64 " bytes", n);
    else
        snprintf(buf, cap, "%" PRIu64 " bytes (%.1f %s)", n, v, unit[u]);
    return buf;
}

static const char *scheme_note(enum relay_scheme s)
{
    switch (s) {
    case RELAY_MQTTS:
        return "TCP + TLS";
    case RELAY_WS:
        return "WebSocket";
    case RELAY_WSS:
        return "WebSocket + TLS";
    default:
        return "TCP";
    }
}

static const char *level_name(enum relay_log_level l)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    return (unsigned)l <= RELAY_LOG_DEBUG ? names[l] : "?";
}

static void print_relay(const struct relay_config *cfg, FILE *out)
{
    fprintf(out, "relay (%s)\n", cfg->path ? cfg->path : "?");
    fprintf(out, "  id:              %s\n", cfg->id);
    fprintf(out, "  max_hops:        %" PRIu32 "\n", cfg->max_hops);
    fprintf(out, "  drain_timeout:   %" PRIu32 " ms\n", cfg->drain_timeout_ms);
    if (cfg->batch_wait_us)
        fprintf(out, "  batch_wait:      up to %" PRIu32 " us when short of CPU\n",
                cfg->batch_wait_us);
    else
        fprintf(out, "  batch_wait:      off\n");
    fprintf(out, "  log_level:       %s\n", level_name(cfg->log_level));
    if (cfg->state_dir && !cfg->state_dir_why)
        fprintf(out, "  state_dir:       %s (%s)\n", cfg->state_dir, cfg->state_dir_from);
    else
        fprintf(out,
                "  state_dir:       %s (%s): cannot be used: %s\n"
                "                   spool = \"auto\" is off: a destination across a long round "
                "trip is bound by\n"
                "                   end-to-end acknowledgement (receive_maximum held from a "
                "source for the\n"
                "                   round trip: 64 allow ~1300 msg/s per topic at 50 ms)\n",
                cfg->state_dir ? cfg->state_dir : "none", cfg->state_dir_from,
                cfg->state_dir_why ? cfg->state_dir_why : "none found");
    fprintf(out, "  log_format:      %s\n", cfg->log_format == RELAY_LOG_JSON ? "json" : "text");
    if (cfg->metrics_host) {
        const char *lb = strchr(cfg->metrics_host, ':') ? "[" : "";
        const char *rb = strchr(cfg->metrics_host, ':') ? "]" : "";

        fprintf(out,
                "  metrics:         http://%s%s%s:%u/ (status page), /api/v1/status, "
                "/metrics, /healthz\n",
                lb, cfg->metrics_host, rb, (unsigned)cfg->metrics_port);
        if (cfg->admin_token)
            fprintf(out, "  reload:          POST /-/reload with the bearer token "
                         "relay.admin_token (set; not shown)\n");
        else
            fprintf(out,
                    "  reload:          POST /-/reload from anyone who reaches the listener "
                    "when it is on a loopback address, else refused (set relay.admin_token)\n");
    } else {
        fprintf(out, "  metrics:         off\n");
    }
    if (cfg->proxy.kind != RELAY_PROXY_NONE)
        fprintf(out, "  proxy:           %s for every broker (see each broker)\n",
                cfg->proxy.kind == RELAY_PROXY_HTTP ? "HTTP CONNECT" : "SOCKS5");
    if (cfg->n_no_proxy) {
        fprintf(out, "  no_proxy:        ");
        for (size_t i = 0; i < cfg->n_no_proxy; i++)
            fprintf(out, "%s%s", i ? ", " : "", cfg->no_proxy[i]);
        fputc('\n', out);
    }
}

static void print_client_ids(const struct relay_broker_config *b, FILE *out)
{
    char id[65535 + 16];
    size_t col = 0;
    fprintf(out, "  connections:     %" PRIu32 ", client id%s ", b->connections,
            b->connections > 1 ? "s" : "");
    for (uint32_t i = 0; i < b->connections; i++) {
        if (relay_broker_client_id(b, i, id, sizeof(id)) < 0)
            continue;
        size_t n = strlen(id);
        if (i > 0 && col + n + 2 > 80) {
            fprintf(out, ",\n                   ");
            col = 0;
        } else if (i > 0) {
            fprintf(out, ", ");
        }
        fputs(id, out);
        col += n + 2;
    }
    fputc('\n', out);
}

static void print_tls(const struct relay_broker_config *b, FILE *out)
{
    bool secure = false;
    for (size_t i = 0; i < b->n_urls; i++)
        secure |= b->urls[i].scheme == RELAY_MQTTS || b->urls[i].scheme == RELAY_WSS;
    if (!secure)
        return;
    const struct relay_tls_config *t = &b->tls;
    if (t->ca_file)
        fprintf(out, "  tls:             ca %s (re-read at every reconnect)\n", t->ca_file);
    else
        fprintf(out, "  tls:             ca: the system trust store (OpenSSL's default paths; "
                     "SSL_CERT_FILE and\n                   SSL_CERT_DIR override them)\n");
    if (t->cert_file)
        fprintf(out,
                "                   client certificate %s, key %s (re-read at every "
                "reconnect)\n",
                t->cert_file, t->key_file ? t->key_file : "(in the certificate file)");
    fprintf(out, "                   verify %s, server name %s\n",
            t->verify ? "on" : "OFF (the server is not authenticated)",
            t->server_name ? t->server_name : "(the URL host)");
    fprintf(out, "                   min_version TLS %s, ciphers %s, ciphersuites %s\n",
            t->min_version == RELAY_TLS_1_3 ? "1.3" : "1.2",
            t->ciphers ? t->ciphers : "(OpenSSL's default)",
            t->ciphersuites ? t->ciphersuites : "(OpenSSL's default)");
    fprintf(out, "                   alpn ");
    if (!t->n_alpn)
        fprintf(out, "none (wss: http/1.1)");
    for (size_t i = 0; i < t->n_alpn; i++)
        fprintf(out, "%s\"%s\"", i ? ", " : "", t->alpn[i]);
    fprintf(out, "; sessions resumed across reconnects\n");
    if (t->keylog_file)
        fprintf(out,
                "                   keylog_file %s: WARNING: the session keys are written "
                "there;\n                   whoever reads it can decrypt this broker's "
                "traffic\n",
                t->keylog_file);
}

static const char *proxy_kind(enum relay_proxy_kind k)
{
    return k == RELAY_PROXY_HTTP ? "HTTP CONNECT proxy" : "SOCKS5 proxy";
}

/* Never the password: "(password set)". */
static void print_link(const struct relay_broker_config *b, FILE *out)
{
    const struct relay_proxy_config *p = &b->proxy;
    bool v6 = p->host && strchr(p->host, ':');

    if (p->kind != RELAY_PROXY_NONE) {
        size_t direct = 0;
        fprintf(out, "  proxy:           %s %s%s%s:%u", proxy_kind(p->kind), v6 ? "[" : "", p->host,
                v6 ? "]" : "", (unsigned)p->port);
        if (p->username)
            fprintf(out, ", user \"%s\" (password %s)", p->username,
                    p->password_len ? "set" : "empty");
        fprintf(out, "%s\n",
                p->kind == RELAY_PROXY_SOCKS5 ? "; the proxy resolves the broker's name" : "");
        for (size_t i = 0; i < b->n_urls; i++)
            direct += b->urls[i].direct;
        for (size_t i = 0; direct && i < b->n_urls; i++)
            if (b->urls[i].direct)
                fprintf(out, "                   %s: direct (relay.no_proxy)\n", b->urls[i].text);
    } else {
        fprintf(out, "  proxy:           none (direct)\n");
    }
    if (b->tcp_keepalive_s)
        fprintf(out,
                "  tcp_keepalive:   probes after %" PRIu32 " s of silence, every %" PRIu32
                " s, 3 unanswered = dead\n",
                b->tcp_keepalive_s, b->tcp_keepalive_s >= 3 ? b->tcp_keepalive_s / 3 : 1);
    else
        fprintf(out, "  tcp_keepalive:   off\n");
    if (b->tcp_user_timeout_ms)
        fprintf(out, "  tcp_user_timeout: %" PRIu32 " ms (data unacknowledged that long: dead)\n",
                b->tcp_user_timeout_ms);
    else
        fprintf(out, "  tcp_user_timeout: off (the kernel's retransmission limit)\n");
    fprintf(out, "  bind_address:    %s\n", b->bind_address ? b->bind_address : "any");
}

static void print_spool(const struct relay_broker_config *b, FILE *out)
{
    char size[32];

    if (b->spool.mode == RELAY_SPOOL_OFF)
        fprintf(out, "  spool:           false (always acknowledged end to end)\n");
    else if (!b->spool.dir)
        fprintf(out, "  spool:           auto, off: no usable state directory (see relay)\n");
    else if (b->spool.mode == RELAY_SPOOL_AUTO)
        fprintf(out,
                "  spool:           auto: %s, at most %s,\n"
                "                   used while the round trip to %s is %u ms or more\n",
                b->spool.dir, human_bytes(size, sizeof(size), b->spool.max_size), b->name,
                RELAY_AUTOSPOOL_ON_MS);
    else
        fprintf(out, "  spool:           %s, at most %s\n", b->spool.dir,
                human_bytes(size, sizeof(size), b->spool.max_size));
}

static void print_broker(const struct relay_broker_config *b, FILE *out)
{
    fprintf(out, "\nbroker %s\n", b->name);
    for (size_t i = 0; i < b->n_urls; i++) {
        fprintf(out, "  %s %s (%s, %s port %u%s%s)%s\n",
                i == 0 ? "url:            " : "                ", b->urls[i].text,
                scheme_note(b->urls[i].scheme), b->urls[i].host, (unsigned)b->urls[i].port,
                b->urls[i].path ? ", path " : "", b->urls[i].path ? b->urls[i].path : "",
                b->n_urls > 1 ? (i == 0 ? " preferred" : " fallback") : "");
    }
    fprintf(out, "  version:         %s\n", version_name(b->version));
    if (b->profile == RELAY_PROFILE_BIFROMQ)
        fprintf(
            out,
            "  profile:         bifromq (defaults: rate_limit %u messages and %u bytes a second "
            "per\n                   connection, max_inflight %u, bridge_bit false, "
            "max_packet_size %u,\n                   topic_aliases %u; a key in the file "
            "wins)\n",
            RELAY_BIFROMQ_RATE, RELAY_BIFROMQ_BYTES, RELAY_BIFROMQ_INFLIGHT, RELAY_BIFROMQ_PACKET,
            RELAY_BIFROMQ_ALIASES);
    print_client_ids(b, out);
    if (b->username)
        fprintf(out, "  username:        %s\n", b->username);
    fprintf(out, "  password:        %s\n", b->password ? "(set)" : "(none)");
    fprintf(out, "  keepalive:       %u s\n", (unsigned)b->keepalive);
    if (b->version == MQC_V5)
        fprintf(out, "  session:         clean_start %s, session_expiry %" PRIu32 " s\n",
                b->clean_start ? "true" : "false", b->session_expiry);
    else
        fprintf(out, "  session:         clean session %s\n", b->clean_start ? "true" : "false");
    if (b->version != MQC_V5)
        fprintf(out, "  bridge_bit:      %s\n",
                b->bridge_bit == RELAY_BRIDGE_ON
                    ? "true (always set; a broker that refuses it is retried with backoff)"
                : b->bridge_bit == RELAY_BRIDGE_OFF
                    ? "false (never set: loops are stopped by the configuration check alone)"
                    : "auto (set; if the broker refuses it, the relay connects without it from "
                      "then on and\n                   loops are stopped by the configuration "
                      "check alone)");
    fprintf(out, "  receive_maximum: %u\n", (unsigned)b->receive_maximum);
    if (b->max_inflight)
        fprintf(out, "  max_inflight:    %u%s\n", (unsigned)b->max_inflight,
                b->version == MQC_V5 ? " (or the peer's Receive Maximum if lower)" : "");
    else if (b->version == MQC_V5)
        fprintf(out, "  max_inflight:    auto: the peer's Receive Maximum\n");
    else
        fprintf(out,
                "  max_inflight:    auto: sized from the round trip, 20..%u (%u per ms of round "
                "trip),\n                   QoS 2 at most 20\n",
                (unsigned)b->max_inflight_cap, RELAY_INFLIGHT_PER_MS);
    fprintf(out, "  max_packet_size: %" PRIu32 " bytes\n", b->max_packet_size);
    fprintf(out, "  ack_timeout:     %" PRIu32 " ms\n", b->ack_timeout_ms);
    if (b->rate_bytes || b->rate_messages) {
        fprintf(out, "  rate_limit:      ");
        if (b->rate_bytes)
            fprintf(out, "%" PRIu64 " bytes/s", b->rate_bytes);
        else
            fprintf(out, "bytes unlimited");
        if (b->rate_messages)
            fprintf(out, ", %" PRIu32 " messages/s", b->rate_messages);
        else
            fprintf(out, ", messages unlimited");
        fprintf(out, " per connection, in any window of %u ms\n", RELAY_CONFIG_PACE_WINDOW_MS);
    } else {
        fprintf(out,
                "  rate_limit:      none set (the pace is learned from the broker's signals)\n");
    }
    if (b->version == MQC_V5)
        fprintf(out, "  topic_aliases:   %s%u per connection (at most the broker's maximum)\n",
                b->topic_aliases ? "" : "none, ", (unsigned)b->topic_aliases);
    print_spool(b, out);
    fprintf(out, "  reconnect:       %" PRIu32 "..%" PRIu32 " ms\n", b->reconnect_min_ms,
            b->reconnect_max_ms);
    print_link(b, out);
    if (b->status_topic)
        fprintf(out, "  status_topic:    %s (retained \"online\", Will \"offline\")\n",
                b->status_topic);
    print_tls(b, out);
}

/* An example topic matching filter: '+' -> "x1", "x2", ...; a trailing '#' -> "a/b", or
 * nothing at all (with its '/') when empty_rest. NULL when out of memory. */
static char *example_topic(const char *filter, bool empty_rest)
{
    size_t flen = strlen(filter), cap = flen * 6 + 8, o = 0;
    unsigned plus = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    for (size_t i = 0; i < flen; i++) {
        bool level_start = i == 0 || filter[i - 1] == '/';
        bool whole = i + 1 == flen || filter[i + 1] == '/';
        if (level_start && whole && filter[i] == '+') {
            o += (size_t)snprintf(s + o, cap - o, "x%u", ++plus);
        } else if (level_start && whole && filter[i] == '#') {
            if (empty_rest) {
                if (o > 0)
                    o--; /* the '/' before it */
            } else {
                memcpy(s + o, "a/b", 3);
                o += 3;
            }
        } else {
            s[o++] = filter[i];
        }
    }
    s[o] = '\0';
    return s;
}

static void print_example(const struct relay_tpl *t, const char *filter, bool empty_rest, FILE *out)
{
    char *topic = example_topic(filter, empty_rest);
    if (!topic)
        return;
    size_t len = 0, cap = 65535;
    uint8_t *res = malloc(cap + 1);
    int rc =
        res ? relay_tpl_expand(t, (const uint8_t *)topic, strlen(topic), res, cap, &len) : -ENOMEM;
    if (rc == 0)
        fprintf(out, "  example:         %s -> %.*s\n", topic, (int)len, (const char *)res);
    else
        fprintf(out, "  example:         %s -> (dropped as bad_topic)\n", topic);
    free(res);
    free(topic);
}

/* Into a broker with a pace: the most it will take, and what one topic can have. */
static void print_arithmetic(const struct relay_broker_config *dst, FILE *out)
{
    char bb[32];

    if (dst->rate_messages)
        fprintf(out,
                "  throughput:      at most %" PRIu32 " connection%s x %" PRIu32 " = %" PRIu64
                " messages/s into %s (rate_limit per\n                   connection, kept in "
                "any %u ms window: %.0f/s sustained each); one topic\n                   stays "
                "on one connection: at most %" PRIu32 "/s\n",
                dst->connections, dst->connections > 1 ? "s" : "", dst->rate_messages,
                (uint64_t)dst->connections * dst->rate_messages, dst->name,
                RELAY_CONFIG_PACE_WINDOW_MS,
                (double)dst->rate_messages * 1000.0 / (double)RELAY_CONFIG_PACE_WINDOW_MS,
                dst->rate_messages);
    if (dst->rate_bytes)
        fprintf(out, "%s at most %" PRIu32 " x %" PRIu64 " bytes/s = %s a second\n",
                dst->rate_messages ? "                  " : "  throughput:     ", dst->connections,
                dst->rate_bytes,
                human_bytes(bb, sizeof(bb), (uint64_t)dst->connections * dst->rate_bytes));
}

/* "~1000 / ~400 / ~200": what a window of w allows at 20, 50 and 100 ms of round trip. */
static const char *rates(char *buf, size_t cap, unsigned w)
{
    snprintf(buf, cap, "~%u / ~%u / ~%u", w * 1000u / 20u, w * 1000u / 50u, w * 1000u / 100u);
    return buf;
}

/* How a route's messages are acknowledged to its source, and the bounds windows set at a few
 * round trips (msg/s at 20 / 50 / 100 ms). End to end, a message is held for the destination's
 * round trip, at most receive_maximum per source connection. */
static void print_ack(const struct relay_broker_config *src, const struct relay_broker_config *dst,
                      FILE *out)
{
    char a[64];

    if (dst->spool.mode == RELAY_SPOOL_ALWAYS)
        fprintf(out, "  acknowledged:    once in the spool of %s (on local disk)\n", dst->name);
    else if (dst->spool.mode == RELAY_SPOOL_AUTO && dst->spool.dir)
        fprintf(out,
                "  acknowledged:    end to end; from the spool of %s while its round trip is %u "
                "ms or more\n",
                dst->name, RELAY_AUTOSPOOL_ON_MS);
    else
        fprintf(out,
                "  acknowledged:    end to end, always: %s msg/s per topic at most at 20 / 50 /\n"
                "                   100 ms of round trip to %s (receive_maximum %u held from "
                "%s)\n",
                rates(a, sizeof(a), src->receive_maximum), dst->name,
                (unsigned)src->receive_maximum, src->name);
    if (src->version == MQC_V5)
        fprintf(out,
                "  source window:   %s lets out at most receive_maximum %u (fewer if its limit "
                "is lower):\n                   %s msg/s per topic at 20 / 50 / 100 ms to %s\n",
                src->name, (unsigned)src->receive_maximum,
                rates(a, sizeof(a), src->receive_maximum), src->name);
    else
        fprintf(out,
                "  source window:   what %s lets out unacknowledged (its own limit; %u would "
                "allow\n                   %s msg/s per topic at 20 / 50 / 100 ms to %s)\n",
                src->name, RELAY_SOURCE_WINDOW, rates(a, sizeof(a), RELAY_SOURCE_WINDOW),
                src->name);
    if (dst->max_inflight)
        fprintf(out,
                "  window to %s:  max_inflight %u: %s msg/s per connection at most\n"
                "                   at 20 / 50 / 100 ms\n",
                dst->name, (unsigned)dst->max_inflight, rates(a, sizeof(a), dst->max_inflight));
    else if (dst->version == MQC_V5)
        fprintf(out,
                "  window to %s:  its Receive Maximum R: R x 1000 / round trip (ms) msg/s per "
                "connection\n                   at most (Mosquitto: R = 20, ~400 msg/s at 50 ms)\n",
                dst->name);
}

static void print_route(const struct relay_config *cfg, const struct relay_route_config *r,
                        FILE *out)
{
    const struct relay_broker_config *src = &cfg->brokers[r->from], *dst = &cfg->brokers[r->to];
    size_t cap = strlen(r->filter) + (r->share ? strlen(r->share) : 0) + 16;
    char *sub = malloc(cap);

    fprintf(out, "\nroute %s: %s -> %s\n", r->name, src->name, dst->name);
    if (sub && relay_route_subscription(r, sub, cap) >= 0) {
        if (r->share && src->connections > 1)
            fprintf(out,
                    "  subscribe:       %s QoS %u on %s#0..%s#%" PRIu32 " (all %" PRIu32
                    " connections)\n",
                    sub, (unsigned)r->qos, src->name, src->name, src->connections - 1,
                    src->connections);
        else if (r->share)
            fprintf(out, "  subscribe:       %s QoS %u on %s#0\n", sub, (unsigned)r->qos,
                    src->name);
        else
            fprintf(out, "  subscribe:       %s QoS %u on %s#0%s\n", sub, (unsigned)r->qos,
                    src->name, src->connections > 1 ? " only (no share: one subscriber)" : "");
    }
    free(sub);
    if (r->out_qos < 0)
        fprintf(out, "  publish:         QoS same as received");
    else
        fprintf(out, "  publish:         QoS at most %d", r->out_qos);
    fprintf(out, ", retain %s, properties ", r->retain == RELAY_RETAIN_KEEP ? "keep" : "clear");
    if (r->properties == RELAY_PROPS_DROP)
        fprintf(out, "drop\n");
    else if (src->version != MQC_V5)
        fprintf(out, "forward (none to forward: %s speaks %s)\n", src->name,
                version_name(src->version));
    else if (dst->version != MQC_V5)
        fprintf(out, "forward (lost: %s speaks %s)\n", dst->name, version_name(dst->version));
    else
        fprintf(out, "forward\n");
    fprintf(out, "  topic:           %s\n", r->topic);
    print_ack(src, dst, out);
    print_arithmetic(dst, out);

    char guard[128] = "";
    if (dst->version == MQC_V5)
        snprintf(guard, sizeof(guard), "relay-path user property");
    if (src->version == MQC_V5 && !r->share)
        snprintf(guard + strlen(guard), sizeof(guard) - strlen(guard), "%sNo Local",
                 guard[0] ? ", " : "");
    if (guard[0])
        fprintf(out, "  loop guard:      %s\n", guard);
    else
        fprintf(out, "  loop guard:      none on this hop (%s speaks %s%s)\n", dst->name,
                version_name(dst->version),
                src->version == MQC_V5 ? ", No Local does not apply to a shared subscription" : "");

    struct relay_tpl t;
    char err[160];
    if (relay_tpl_compile(&t, r->topic, r->filter, err, sizeof(err)) < 0) {
        fprintf(out, "  example:         (template error: %s)\n", err);
        return;
    }
    print_example(&t, r->filter, false, out);
    bool uses_rest = false;
    for (size_t i = 0; i < t.n_parts; i++)
        uses_rest |= t.parts[i].kind == RELAY_TPL_REST;
    if (t.hash_level > 0 && uses_rest)
        print_example(&t, r->filter, true, out);
    relay_tpl_cleanup(&t);
}

/* ---- warnings ----------------------------------------------------------------------------- */

static void warn_profile(const struct relay_config *cfg, const struct relay_broker_config *b,
                         FILE *out)
{
    if (b->rate_messages > RELAY_BIFROMQ_RATE || !b->rate_messages)
        fprintf(out,
                "%s:%d: warning: broker %s: rate_limit.messages = %" PRIu32
                " (%s) and BifroMQ allows %u PUBLISHes a second per connection by default: "
                "expect DISCONNECT 0x96 unless its tenant limit was raised (at most 1000)\n",
                cfg->path, b->line, b->name, b->rate_messages,
                b->rate_messages ? "above it" : "no limit", RELAY_BIFROMQ_RATE);
    if (b->max_inflight > RELAY_BIFROMQ_INFLIGHT)
        fprintf(out,
                "%s:%d: warning: broker %s: max_inflight = %u is above BifroMQ's Receive Maximum "
                "(%u): the relay obeys the lower value the broker announces\n",
                cfg->path, b->line, b->name, (unsigned)b->max_inflight, RELAY_BIFROMQ_INFLIGHT);
    if (b->max_packet_size > RELAY_BIFROMQ_PACKET)
        fprintf(out,
                "%s:%d: warning: broker %s: max_packet_size = %" PRIu32
                " is above 256 KiB: BifroMQ refuses such a CONNECT (CONNACK 0x83)\n",
                cfg->path, b->line, b->name, b->max_packet_size);
    if (b->version != MQC_V5 && b->bridge_bit == RELAY_BRIDGE_ON)
        fprintf(out,
                "%s:%d: warning: broker %s: bridge_bit = true: BifroMQ closes a CONNECT with the "
                "bridge bit without a CONNACK, so this broker is never reached\n",
                cfg->path, b->line, b->name);
}

void relay_config_print_warnings(const struct relay_config *cfg, FILE *out)
{
    for (size_t i = 0; i < cfg->n_brokers; i++)
        if (cfg->brokers[i].profile == RELAY_PROFILE_BIFROMQ)
            warn_profile(cfg, &cfg->brokers[i], out);
    /* BifroMQ as a source: it drops what a subscriber has not acknowledged after ~40 s and
     * queues at most 1,000 messages a session; the relay acknowledges only once the
     * destination did, so a destination down for longer loses messages at BifroMQ, unless
     * a spool takes them (acknowledged once on disk) */
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct relay_route_config *r = &cfg->routes[i];
        const struct relay_broker_config *src = &cfg->brokers[r->from], *dst = &cfg->brokers[r->to];

        if (src->profile != RELAY_PROFILE_BIFROMQ || r->qos == 0 ||
            (dst->spool.dir && dst->spool.mode == RELAY_SPOOL_ALWAYS))
            continue;
        fprintf(out,
                "%s:%d: warning: route %s: from %s (profile bifromq) to %s, which has no spool "
                "%s: BifroMQ drops a message not acknowledged within %u s and queues at most %u "
                "per session, so an outage of %s longer than that loses messages; add spool = "
                "true to broker %s\n",
                cfg->path, r->line, r->name, src->name, dst->name,
                dst->spool.mode == RELAY_SPOOL_AUTO && dst->spool.dir
                    ? "while its round trip is short (spool = \"auto\" engages across a WAN, not "
                      "for an outage)"
                    : "at all",
                RELAY_BIFROMQ_REDELIVER_S, RELAY_BIFROMQ_QUEUE, dst->name, dst->name);
    }
}

void relay_config_print_plan(const struct relay_config *cfg, FILE *out)
{
    print_relay(cfg, out);
    for (size_t i = 0; i < cfg->n_brokers; i++)
        print_broker(&cfg->brokers[i], out);
    if (cfg->n_routes == 0)
        fprintf(out, "\nno routes: nothing is forwarded\n");
    for (size_t i = 0; i < cfg->n_routes; i++)
        print_route(cfg, &cfg->routes[i], out);
}
