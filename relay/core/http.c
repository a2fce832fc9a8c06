/* http.c: what the HTTP listener (relay.metrics) serves: /metrics and /healthz. */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

int relay_core_http(void *core, const char *path, uint64_t now_ms, char **body, size_t *body_len,
                    const char **content_type)
{
    struct relay *r = core;

    *content_type = "text/plain; charset=utf-8";
    if (!strcmp(path, "/metrics")) {
        *content_type = "text/plain; version=0.0.4; charset=utf-8";
        return relay_metrics_render(r, now_ms, body, body_len) == 0 ? 200 : 500;
    }
    if (!strcmp(path, "/healthz")) {
        bool ok = relay_healthy(r);

        *body = strdup(ok ? "ok\n" : "unavailable\n");
        *body_len = *body ? strlen(*body) : 0;
        return ok ? 200 : 503;
    }
    *body = strdup("not found\n");
    *body_len = *body ? strlen(*body) : 0;
    return 404;
}
