/*
 * http.c: what the HTTP listener (relay.metrics) answers, and who may reload: /metrics,
 * /healthz, /api/v1/status, POST /-/reload (core/io.h lists them; the status page itself is
 * the transport's). Every request is hostile until it has been checked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "util/json.h"

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_JSON "application/json; charset=utf-8"

static void text(struct relay_http_response *resp, int status, const char *body)
{
    resp->status = status;
    resp->content_type = CT_TEXT;
    resp->body = strdup(body);
    resp->len = resp->body ? strlen(resp->body) : 0;
}

/* {"ok":..,"message":..} */
static void outcome(struct relay_http_response *resp, int status, bool ok, const char *msg)
{
    FILE *f = open_memstream(&resp->body, &resp->len);

    resp->status = status;
    resp->content_type = CT_JSON;
    if (!f) {
        resp->body = NULL;
        resp->len = 0;
        return;
    }
    fprintf(f, "{\"ok\":%s,\"message\":", ok ? "true" : "false");
    relay_json_cstr(f, msg);
    fputs("}\n", f);
    if (fclose(f) != 0) {
        free(resp->body);
        resp->body = NULL;
        resp->len = 0;
    }
}

/* The token sent equals the one configured. The time taken depends on the configured token's
 * length only, never on where the first difference is. */
static bool token_ok(const char *sent, size_t sent_len, const char *want, size_t want_len)
{
    unsigned diff = sent_len != want_len;

    for (size_t i = 0; i < want_len; i++)
        diff |= (unsigned char)(i < sent_len ? sent[i] : 0) ^ (unsigned char)want[i];
    return diff == 0;
}

/* "Bearer TOKEN" (the scheme's case does not matter, RFC 7235): TOKEN, or NULL. */
static const char *bearer(const char *auth, size_t *len)
{
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return NULL;
    auth += 7;
    while (*auth == ' ')
        auth++;
    *len = strlen(auth);
    while (*len && auth[*len - 1] == ' ')
        (*len)--;
    return *len ? auth : NULL;
}

/* POST /-/reload: who may, then what SIGHUP does. A configured token is always required (a
 * loopback listener may still be reached by every local user); without one, only a listener on
 * a loopback address takes it. Refusals are logged (rate-limited: a peer may hammer), the token
 * never. */
static void reload(struct relay *r, const struct relay_http_request *req, uint64_t now_ms,
                   struct relay_http_response *resp)
{
    const struct relay_config *cfg = r->cfg;
    const char *peer = req->peer && req->peer[0] ? req->peer : "?";
    char msg[1024], by[96];
    size_t len = 0;
    const char *tok;
    int rc;

    if (cfg->admin_token) {
        tok = bearer(req->authorization, &len);
        if (!tok || !token_ok(tok, len, cfg->admin_token, cfg->admin_token_len)) {
            relay_log_field(r->log, "peer", peer);
            relay_log_limited(r->log, now_ms, RELAY_LOG_WARN, "http",
                              "POST /-/reload from %s refused: %s bearer token", peer,
                              tok ? "wrong" : "no");
            outcome(resp, 401, false,
                    "POST /-/reload needs \"Authorization: Bearer <relay.admin_token>\"");
            resp->challenge = true;
            return;
        }
    } else if (!req->loopback) {
        relay_log_field(r->log, "peer", peer);
        relay_log_limited(r->log, now_ms, RELAY_LOG_WARN, "http",
                          "POST /-/reload from %s refused: the listener is not on a loopback "
                          "address and relay.admin_token is not set",
                          peer);
        outcome(resp, 403, false,
                "POST /-/reload is refused: the listener (relay.metrics) is not on a loopback "
                "address and relay.admin_token is not set");
        return;
    }
    if (r->stopping) {
        outcome(resp, 503, false, "shutting down");
        return;
    }
    snprintf(by, sizeof(by), "POST /-/reload from %.60s", peer);
    rc = relay_request_reload(r, by, now_ms, msg, sizeof(msg));
    outcome(resp, rc == 0 ? 200 : rc == -ENOMEM ? 500 : 409, rc == 0, msg);
}

void relay_core_http(void *core, const struct relay_http_request *req, uint64_t now_ms,
                     struct relay_http_response *resp)
{
    static const struct {
        const char *path, *method;
    } routes[] = {
        {"/metrics", "GET"},
        {"/healthz", "GET"},
        {"/api/v1/status", "GET"},
        {"/-/reload", "POST"},
    };
    struct relay *r = core;
    const char *path = req->path ? req->path : "";
    const char *method = req->method ? req->method : "";
    size_t k;

    memset(resp, 0, sizeof(*resp));
    for (k = 0; k < sizeof(routes) / sizeof(routes[0]); k++)
        if (!strcmp(path, routes[k].path))
            break;
    if (k == sizeof(routes) / sizeof(routes[0])) {
        text(resp, 404, "not found\n");
        return;
    }
    if (strcmp(method, routes[k].method)) {
        text(resp, 405, k == 3 ? "use POST\n" : "use GET\n");
        resp->allow = routes[k].method;
        return;
    }
    switch (k) {
    case 0:
        resp->status = relay_metrics_render(r, now_ms, &resp->body, &resp->len) == 0 ? 200 : 500;
        resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
        break;
    case 1:
        if (relay_healthy(r))
            text(resp, 200, "ok\n");
        else
            text(resp, 503, "unavailable\n");
        break;
    case 2:
        resp->status = relay_status_render(r, now_ms, &resp->body, &resp->len) == 0 ? 200 : 500;
        resp->content_type = CT_JSON;
        break;
    default:
        reload(r, req, now_ms, resp);
        break;
    }
    if (resp->status == 500 && !resp->body) {
        resp->content_type = CT_TEXT;
        resp->len = 0;
    }
}
