/* fake_io.h: an in-memory struct relay_io for core tests. */
#ifndef FAKE_IO_H
#define FAKE_IO_H

#include "core/internal.h"

#define FAKE_MAX_LINKS 8
#define FAKE_MAX_KEEP 4096

struct fake_link {
    struct relay_conn *c;
    uint8_t version; /* learnt from the CONNECT */
    uint16_t port;
    bool connecting, want_write, paused, close_asked;
    int connects, subscribed;
    uint8_t buf[1 << 19]; /* written by the relay, not yet parsed */
    size_t len;
    struct mqc_packet early[32]; /* packets that came right after CONNACK */
    int n_early;
};

struct fake_io {
    struct relay_io io;
    struct fake_link links[FAKE_MAX_LINKS];
    size_t n;
    uint64_t wake, now;
    uint8_t *keep[FAKE_MAX_KEEP]; /* bytes decoded packets point into */
    size_t n_keep;
};

void fake_io_init(struct fake_io *f);
void fake_io_cleanup(struct fake_io *f);
struct fake_link *fake_link(struct fake_io *f, struct relay_conn *c);
/* Completes a connect: CONNECT read, CONNACK fed, every SUBSCRIBE answered. */
void fake_open(struct fake_io *f, struct relay_conn *c, bool session_present);
/* The link is gone (relay_core_on_close). */
void fake_drop(struct fake_io *f, struct relay_conn *c, const char *why);
/* Reads what the relay wrote to c; decodes up to max packets into pk. */
int fake_tx(struct fake_io *f, struct relay_conn *c, struct mqc_packet *pk, int max);
/* Feeds c one packet from its broker; returns relay_core_on_rx's result. */
int fake_rx(struct fake_io *f, struct relay_conn *c, const struct mqc_packet *p);

#endif
