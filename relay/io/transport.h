/*
 * transport.h: the libwebsockets transport under the core (STYLE §6): links (mqtt://, mqtts://,
 * ws://, wss://), the HTTP listener, timers and the event loop. io/ is the only folder that
 * includes <libwebsockets.h>; it reaches the core only through core/io.h.
 */
#ifndef RELAY_IO_TRANSPORT_H
#define RELAY_IO_TRANSPORT_H

#include <stdint.h>

#include "core/io.h"
#include "util/log.h"

struct relay_transport;
struct relay_transport_opts {
    void *core;               /* passed back to relay_core_tick() / relay_core_http() */
    const char *metrics_host; /* NULL = no HTTP listener */
    uint16_t metrics_port;
    enum relay_log_level log_level; /* libwebsockets' lines are shown through relay_log_raw */
    uint32_t batch_wait_us;         /* read batching: the longest wait under load; 0 = off */
};
/* 0 and *out, or -errno with a message in err (e.g. the metrics port cannot be bound:
 * -EADDRINUSE). */
int relay_transport_new(const struct relay_transport_opts *o, struct relay_transport **out,
                        char *err, size_t errlen);
void relay_transport_free(struct relay_transport *t);
/* The core is created after the transport (it needs the io table): this sets the pointer passed
 * to relay_core_tick() / relay_core_http(), replacing opts->core. */
void relay_transport_set_core(struct relay_transport *t, void *core);
/* The io table for the core; valid as long as t. */
const struct relay_io *relay_transport_io(struct relay_transport *t);
/* Runs the event loop once (waits at most timeout_ms); returns <0 on a fatal error. */
int relay_transport_service(struct relay_transport *t, int timeout_ms);
/* Read batching's longest wait (relay.batch_wait_us), e.g. after a reload; 0 = off. */
void relay_transport_set_batch_wait(struct relay_transport *t, uint32_t us);
/* Wakes a blocked relay_transport_service() from a signal handler (async-signal-safe). */
void relay_transport_cancel(struct relay_transport *t);
/* What OpenSSL says of each broker's TLS option strings (tls.ciphers, tls.ciphersuites): 0, or
 * -EINVAL with "FILE:LINE: broker "NAME": ..." in err. For --check, start and reload (conf/
 * checks their syntax only: it has no OpenSSL). */
int relay_transport_check_tls(const struct relay_config *cfg, char *err, size_t errlen);
/* Monotonic milliseconds (the one clock the core is given). */
uint64_t relay_now_ms(void);
/* The wall clock minus relay_now_ms(), in ms (for struct relay_env). */
int64_t relay_wall_offset_ms(void);

#endif
