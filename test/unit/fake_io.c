/* fake_io.c: an in-memory transport for core tests (the seam struct relay_io gives us). A test
 * plays every broker: it opens links, reads what the relay writes and feeds it packets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_io.h"

static struct fake_link *link_of(struct fake_io *f, struct relay_conn *c)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->links[i].c == c)
            return &f->links[i];
    assert_true(f->n < FAKE_MAX_LINKS);
    f->links[f->n].c = c;
    return &f->links[f->n++];
}

static int f_connect(void *ctx, struct relay_conn *c, const struct relay_endpoint *ep)
{
    struct fake_link *l = link_of(ctx, c);

    l->connects++;
    l->connecting = true;
    l->port = ep->url->port;
    return 0;
}

static void f_want_write(void *ctx, struct relay_conn *c)
{
    link_of(ctx, c)->want_write = true;
}

static void f_pause_rx(void *ctx, struct relay_conn *c, bool pause)
{
    link_of(ctx, c)->paused = pause;
}

static void f_close(void *ctx, struct relay_conn *c)
{
    link_of(ctx, c)->close_asked = true;
}

static void f_wake_at(void *ctx, uint64_t at)
{
    ((struct fake_io *)ctx)->wake = at;
}

void fake_io_init(struct fake_io *f)
{
    memset(f, 0, sizeof(*f));
    f->io = (struct relay_io){f, f_connect, f_want_write, f_pause_rx, f_close, f_wake_at};
    f->now = 1000;
}

struct fake_link *fake_link(struct fake_io *f, struct relay_conn *c)
{
    return link_of(f, c);
}

int fake_tx(struct fake_io *f, struct relay_conn *c, struct mqc_packet *pk, int max)
{
    struct fake_link *l = link_of(f, c);
    size_t n;
    int count = 0;

    /* everything the relay wants to write, like the transport's WRITEABLE loop */
    for (;;) {
        l->want_write = false;
        assert_int_equal(
            relay_core_on_writeable(c, l->buf + l->len, sizeof(l->buf) - l->len, &n, f->now), 0);
        l->len += n;
        if (!n)
            break;
    }
    size_t off = 0;
    while (off < l->len) {
        struct mqc_frame fr;

        if (mqc_frame_check(l->buf + off, l->len - off, 0, &fr) != MQC_OK)
            break;
        if (count < max) {
            uint8_t type = (uint8_t)(l->buf[off] >> 4);
            /* keep the bytes: decoded views point into them */
            uint8_t *copy = malloc(fr.total);

            memcpy(copy, l->buf + off, fr.total);
            assert_true(f->n_keep < FAKE_MAX_KEEP);
            f->keep[f->n_keep++] = copy;
            assert_int_equal(
                mqc_decode(copy, fr.total, type == MQC_CONNECT ? 0 : l->version, &pk[count]),
                MQC_OK);
            pk[count].type = type;
            if (type == MQC_CONNECT)
                l->version = pk[count].u.connect.version;
            count++;
        }
        off += fr.total;
    }
    memmove(l->buf, l->buf + off, l->len - off);
    l->len -= off;
    return count;
}

int fake_rx(struct fake_io *f, struct relay_conn *c, const struct mqc_packet *p)
{
    struct fake_link *l = link_of(f, c);
    uint8_t buf[4096];
    size_t n;

    assert_int_equal(mqc_encode(p, l->version, buf, sizeof(buf), &n), MQC_OK);
    return relay_core_on_rx(c, buf, n, f->now);
}

void fake_open(struct fake_io *f, struct relay_conn *c, bool session_present)
{
    struct fake_link *l = link_of(f, c);
    struct mqc_packet pk[32], ca = {.type = MQC_CONNACK};
    int n;

    assert_true(l->connecting);
    l->connecting = false;
    l->close_asked = false;
    l->len = 0;
    relay_core_on_open(c, f->now);
    n = fake_tx(f, c, pk, 32);
    assert_int_equal(n, 1);
    assert_int_equal(pk[0].type, MQC_CONNECT);
    ca.u.connack.session_present = session_present;
    assert_int_equal(fake_rx(f, c, &ca), 0);
    n = fake_tx(f, c, pk, 32);
    for (int i = 0; i < n; i++) {
        if (pk[i].type != MQC_SUBSCRIBE) {
            /* publishes that follow at once (no subscriptions) are kept for the test */
            assert_true(l->n_early < 32);
            l->early[l->n_early++] = pk[i];
            continue;
        }
        struct mqc_packet sa = {.type = MQC_SUBACK};
        uint8_t codes[10];

        memset(codes, 1, sizeof(codes));
        sa.u.suback.packet_id = pk[i].u.subscribe.packet_id;
        sa.u.suback.codes = (struct mqc_bytes){codes, pk[i].u.subscribe.count};
        assert_int_equal(fake_rx(f, c, &sa), 0);
        l->subscribed++;
    }
}

void fake_drop(struct fake_io *f, struct relay_conn *c, const char *why)
{
    struct fake_link *l = link_of(f, c);

    l->len = 0;
    l->paused = false;
    relay_core_on_close(c, why, f->now);
}

void fake_io_cleanup(struct fake_io *f)
{
    for (size_t i = 0; i < f->n_keep; i++)
        free(f->keep[i]);
    f->n_keep = 0;
}
