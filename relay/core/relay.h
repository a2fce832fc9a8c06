/*
 * relay.h: the running relay, as main.c sees it: build it from a configuration and a transport,
 * start it, reload it, stop it, free it.
 *
 * Errors: functions return 0 or a negative errno value (-EINVAL, -ENOMEM, ...).
 */
#ifndef RELAY_CORE_RELAY_H
#define RELAY_CORE_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/io.h"
#include "util/log.h"

#define RELAY_VERSION_STRING "0.1.0"

struct relay;

/* What the relay asks of the layers above it, which it cannot call (STYLE §1: a lower layer
 * tells an upper one through a hooks struct it is handed). */
struct relay_hooks {
    void *arg;
    /* Reload the configuration file, as SIGHUP does: read it again (conf/), then relay_reload()
     * with it. 0 with msg the outcome ("configuration reloaded: ..."), or a negative errno with
     * msg saying why nothing changed ("relay.conf:14: route \"x\": unknown broker \"y\";
     * keeping the running configuration"). Called from the event loop; relay_request_reload()
     * is the only caller. NULL: the relay cannot reload (-ENOTSUP). */
    int (*reload)(void *arg, uint64_t now_ms, char *msg, size_t msglen);
};

/* What the relay is given besides its configuration: no clock or randomness is read below
 * main and io, so they come in here (and as now_ms arguments after). */
struct relay_env {
    struct relay_log *log;
    const struct relay_io *io;
    uint64_t now_ms;        /* the transport's monotonic clock, now */
    int64_t wall_offset_ms; /* wall clock minus that clock (spooled records carry wall times) */
    uint64_t seed;          /* reconnect jitter: any value */
    struct relay_hooks hooks;
};

/* Builds the running relay from cfg (kept by pointer: it must outlive r, or be replaced by
 * relay_reload()) and env (copied). 0, or -ENOMEM / -EINVAL / a spool's -errno with a message
 * in err. */
int relay_new(const struct relay_config *cfg, const struct relay_env *env, struct relay **out,
              char *err, size_t errlen);
void relay_free(struct relay *r);
/* Starts connecting every connection. */
void relay_start(struct relay *r, uint64_t now_ms);
/* SIGINT/SIGTERM: stop taking messages, wait up to drain_timeout for acknowledgements, send
 * DISCONNECT, close. relay_finished() turns true when every link is closed; relay_overdue()
 * once the links had drain_timeout plus 2 s to close and did not. */
void relay_stop(struct relay *r, uint64_t now_ms);
bool relay_finished(const struct relay *r);
bool relay_overdue(const struct relay *r, uint64_t now_ms);

/* Applies a new configuration (SIGHUP). Routes are compared by what they do: unchanged ones
 * keep their counters and subscriptions; removed ones are unsubscribed, new ones subscribed on
 * the live connections; brokers whose connection settings changed reconnect with the new ones
 * (their queued messages kept); new brokers connect. A change that needs a restart (a broker
 * removed, its version, connections, receive_maximum or spool changed, relay.id or metrics
 * changed) is refused: -EINVAL with err, nothing changed. On 0, r uses ncfg (the caller frees
 * the old configuration after the call, and keeps ncfg alive) and err holds the outcome
 * ("configuration reloaded: 3 routes (...)", also logged). */
int relay_reload(struct relay *r, const struct relay_config *ncfg, uint64_t now_ms, char *err,
                 size_t errlen);

/* Reload the file (SIGHUP, POST /-/reload; by says which, for the log): hooks.reload, its
 * outcome logged and kept for the status API (relay.reload). Returns what the hook returned,
 * with msg its message. */
int relay_request_reload(struct relay *r, const char *by, uint64_t now_ms, char *msg,
                         size_t msglen);

#endif
