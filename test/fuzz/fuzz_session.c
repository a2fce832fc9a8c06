/*
 * fuzz_session: libFuzzer target for the relay's session state machine (relay/session/ with
 * relay/util/), driven in memory as test/unit/test_session.c drives it.
 *
 * Input: 5 configuration bytes, then a script of operations, one byte each (op = byte % 16),
 * some followed by argument bytes:
 *
 *   0 OPEN            link up: CONNECT is queued
 *   1 CLOSE           the link is gone (relay_session_closed)
 *   2 FEED n bytes    n = next byte; that many raw bytes from the broker
 *   3 TICK d          advance the clock d * 50 ms (d = 0: to the session's deadline), tick
 *   4 DRAIN c         next_tx with cap 1 + c until it gives nothing; the bytes are checked
 *   5 ENQUEUE q s     an outgoing PUBLISH: QoS q % 3, payload s * 8 bytes (s * 512 if q & 0x80),
 *                     retain if q & 8, 5.0 expiry if q & 4
 *   6 IN_DONE i       one destination of a held incoming message finished (i-th pending)
 *   7 CONNACK f r     a CONNACK (code, session present, 5.0 properties from f and r)
 *   8 SUBACK f        answers the oldest (UN)SUBSCRIBE the session sent (f & 1: one refusal)
 *   9 ACK i f         PUBACK/PUBREC/PUBCOMP for the i-th packet id the session has in flight
 *                     (f: reason >= 0x80, "busy" 0x97, or a split feed)
 *  10 PUBLISH q p     a PUBLISH from the broker: QoS q % 3, packet id 1 + p % 32, DUP if q & 4
 *  11 PUBREL p        PUBREL for packet id 1 + p % 32
 *  12 PING/DISC f     PINGRESP, or DISCONNECT when f & 1
 *  13 PURGE f         relay_session_purge of messages whose id % 2 == f % 2; when f & 2, a
 *                     reload instead: relay_session_change_subs to the other of two lists
 *  14 RXPAUSE f       set_rx_paused(f & 1), then resume_rx when unpaused
 *  15 DISCONNECT r    relay_session_disconnect(reason r)
 *
 * A negative result from feed/tick/resume_rx closes the link the way relay.c does (after
 * draining a queued DISCONNECT). Checked, besides ASan/UBSan/LSan:
 *  - every byte the session emits on a link is a stream of packets that mqc_decode accepts
 *    for the session's version (the first one a CONNECT);
 *  - done() is called at most once per enqueued message, for a message the session owns,
 *    with a valid drop reason; purged messages are never reported afterwards;
 *  - rx_full and window transitions alternate (on/off, over/under);
 *  - at the end, every enqueued message was reported done, purged, or is still on the
 *    session's queues (counted by walking them) -- none lost, none twice.
 *
 * FUZZ_SESSION_TRACE=1 prints each operation and the session's state (to read a crash input).
 * LLVMFuzzerInitialize writes seed scripts (valid exchanges for 3.1, 3.1.1 and 5.0) into the
 * directory named by FUZZ_SESSION_SEEDS and exits: the build makes the corpus that way.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/internal.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_session: %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum {
    OP_OPEN = 0,
    OP_CLOSE,
    OP_FEED,
    OP_TICK,
    OP_DRAIN,
    OP_ENQUEUE,
    OP_IN_DONE,
    OP_CONNACK,
    OP_SUBACK,
    OP_ACK,
    OP_PUBLISH,
    OP_PUBREL,
    OP_PING,
    OP_PURGE,
    OP_RXPAUSE,
    OP_DISCONNECT
};

#define MAX_MSGS 512
#define MAX_REFS 256
#define MAX_PIDS 128
#define MAX_SUBQ 64

enum { M_UNUSED = 0, M_QUEUED, M_DONE, M_PURGED };

struct fz {
    const uint8_t *in;
    size_t len, off;

    struct relay_session_cfg cfg;
    struct relay_session *s;
    struct relay_log log;
    struct relay_sub subs[3];
    struct relay_sub subs2[2][3]; /* the lists a reload switches between */
    bool fresh[2][3];
    uint64_t now;
    bool open;       /* a link exists (OPEN done, CLOSE not yet) */
    uint8_t pub_ret; /* publish hook answers, 2 bits per call */
    uint32_t pub_calls;

    /* outgoing messages by id (relay_msg.route holds the id: the session never reads it and
     * copies it when it re-encodes a message) */
    uint8_t mstate[MAX_MSGS];
    uint32_t n_msgs;

    /* incoming messages to finish: one entry per destination the publish hook announced */
    struct relay_in_ref refs[MAX_REFS];
    uint32_t n_refs;

    /* what the session sent on this link */
    uint8_t *tx;
    size_t tx_len, tx_cap;
    bool saw_connect;
    uint16_t subq[MAX_SUBQ]; /* (UN)SUBSCRIBE packet ids awaiting (UN)SUBACK, with counts */
    uint16_t subn[MAX_SUBQ];
    bool unsub[MAX_SUBQ];
    uint32_t n_subq;
    struct {
        uint16_t pid;
        uint8_t qos;
        bool rel; /* PUBREL seen: answer PUBCOMP */
    } pids[MAX_PIDS];
    uint32_t n_pids;

    bool rx_full_on, window_over;
};

static struct fz *F; /* the hooks reach the state through the session's owner pointer too */

/* ---- input ------------------------------------------------------------------------------ */

static bool more(const struct fz *f)
{
    return f->off < f->len;
}

static uint8_t next(struct fz *f)
{
    return f->off < f->len ? f->in[f->off++] : 0;
}

/* ---- hooks ------------------------------------------------------------------------------ */

static void h_up(struct relay_session *s, bool sp, uint64_t now)
{
    (void)s;
    (void)sp;
    (void)now;
}

static int h_publish(struct relay_session *s, const struct mqc_publish *p, struct relay_in_ref ref,
                     uint64_t now)
{
    struct fz *f = s->owner;
    int n = (int)((f->pub_ret >> (2u * (f->pub_calls++ % 4u))) & 3u) - 1; /* -1, 0, 1, 2 */

    (void)now;
    CHECK(p->qos <= 2, "QoS %u", p->qos);
    CHECK((ref.slot != 0) == (p->qos != 0), "ref.slot %u for QoS %u", ref.slot, p->qos);
    if (ref.slot && n > 0)
        for (int i = 0; i < n && f->n_refs < MAX_REFS; i++)
            f->refs[f->n_refs++] = ref;
    return n;
}

static void h_done(struct relay_session *s, struct relay_msg *m, int drop, uint64_t now)
{
    struct fz *f = s->owner;
    uint32_t id = m->route;

    (void)now;
    CHECK(id < f->n_msgs, "done() for a message never enqueued (id %u)", id);
    CHECK(f->mstate[id] == M_QUEUED, "done() twice or after purge for message %u (state %u)", id,
          f->mstate[id]);
    CHECK(drop >= -1 && drop < RELAY_DROP__COUNT, "drop reason %d", drop);
    f->mstate[id] = M_DONE;
    free(m);
}

static void h_suback(struct relay_session *s, const struct relay_sub *sub, uint8_t code)
{
    struct fz *f = s->owner;

    (void)code;
    CHECK((sub >= f->subs && sub < f->subs + 3) || (sub >= f->subs2[0] && sub < f->subs2[0] + 3) ||
              (sub >= f->subs2[1] && sub < f->subs2[1] + 3),
          "suback() for a subscription we did not give");
}

static void h_rx_full(struct relay_session *s, bool full)
{
    struct fz *f = s->owner;

    CHECK(full != f->rx_full_on, "rx_full(%d) twice in a row", full);
    f->rx_full_on = full;
}

static void h_window(struct relay_session *s, int t)
{
    struct fz *f = s->owner;

    CHECK(t == 1 || t == -1, "window(%d)", t);
    CHECK((t > 0) != f->window_over, "window(%d) twice in a row", t);
    f->window_over = t > 0;
}

static void h_rtt(struct relay_session *s, uint32_t base_ms, uint64_t now_ms)
{
    (void)s;
    (void)now_ms;
    CHECK(base_ms <= 3600000u, "rtt(%u): samples are clamped to an hour", base_ms);
}

static const struct relay_session_hooks HOOKS = {h_up,      h_publish, h_done, h_suback,
                                                 h_rx_full, h_window,  h_rtt};

/* ---- what the session sends ------------------------------------------------------------- */

static void note_packet(struct fz *f, const struct mqc_packet *p, uint8_t type)
{
    if (type == MQC_SUBSCRIBE && f->n_subq < MAX_SUBQ) {
        f->subq[f->n_subq] = p->u.subscribe.packet_id;
        f->unsub[f->n_subq] = false;
        f->subn[f->n_subq++] = (uint16_t)p->u.subscribe.count;
    } else if (type == MQC_UNSUBSCRIBE && f->n_subq < MAX_SUBQ) {
        f->subq[f->n_subq] = p->u.unsubscribe.packet_id;
        f->unsub[f->n_subq] = true;
        f->subn[f->n_subq++] = (uint16_t)p->u.unsubscribe.count;
    } else if (type == MQC_PUBLISH && p->u.publish.qos) {
        for (uint32_t i = 0; i < f->n_pids; i++)
            if (f->pids[i].pid == p->u.publish.packet_id) {
                f->pids[i].qos = p->u.publish.qos;
                f->pids[i].rel = false;
                return;
            }
        if (f->n_pids < MAX_PIDS) {
            f->pids[f->n_pids].pid = p->u.publish.packet_id;
            f->pids[f->n_pids].qos = p->u.publish.qos;
            f->pids[f->n_pids++].rel = false;
        }
    } else if (type == MQC_PUBREL) {
        for (uint32_t i = 0; i < f->n_pids; i++)
            if (f->pids[i].pid == p->u.ack.packet_id)
                f->pids[i].rel = true;
        if (f->n_pids < MAX_PIDS) {
            bool known = false;

            for (uint32_t i = 0; i < f->n_pids; i++)
                known |= f->pids[i].pid == p->u.ack.packet_id;
            if (!known) {
                f->pids[f->n_pids].pid = p->u.ack.packet_id;
                f->pids[f->n_pids].qos = 2;
                f->pids[f->n_pids++].rel = true;
            }
        }
    }
}

/* Checks the complete packets in the link's output so far and forgets them. */
static void check_tx(struct fz *f)
{
    size_t off = 0;

    while (off < f->tx_len) {
        struct mqc_frame fr;
        struct mqc_packet p;
        int rc = mqc_frame_check(f->tx + off, f->tx_len - off, 0, &fr);
        uint8_t type;

        if (rc == MQC_AGAIN)
            break;
        CHECK(rc == MQC_OK, "the session sent a bad frame: %s", mqc_strerror(rc));
        type = (uint8_t)(f->tx[off] >> 4);
        CHECK(f->saw_connect || type == MQC_CONNECT, "first packet on a link is type %u", type);
        CHECK(type != MQC_CONNECT || !f->saw_connect, "a second CONNECT on one link");
        rc = mqc_decode(f->tx + off, fr.total, type == MQC_CONNECT ? 0 : f->cfg.version, &p);
        CHECK(rc == MQC_OK, "the session sent a %s that does not decode: %s", mqc_type_name(type),
              mqc_strerror(rc));
        if (type == MQC_CONNECT) {
            f->saw_connect = true;
            CHECK(p.u.connect.version == f->cfg.version, "CONNECT version %u", p.u.connect.version);
        }
        note_packet(f, &p, type);
        off += fr.total;
    }
    memmove(f->tx, f->tx + off, f->tx_len - off);
    f->tx_len -= off;
}

static void link_reset(struct fz *f)
{
    f->tx_len = 0;
    f->saw_connect = false;
    f->n_subq = 0;
    f->n_pids = 0;
}

static void drain(struct fz *f, size_t cap)
{
    uint8_t buf[1024];

    if (cap > sizeof(buf))
        cap = sizeof(buf);
    for (int i = 0; i < 4096; i++) {
        size_t n = 0;

        CHECK(relay_session_next_tx(f->s, buf, cap, &n, f->now) == 0, "next_tx failed");
        CHECK(n <= cap, "next_tx wrote %zu > %zu", n, cap);
        if (!n)
            break;
        if (f->tx_len + n > f->tx_cap) {
            size_t nc = (f->tx_len + n) * 2;
            uint8_t *p = realloc(f->tx, nc);

            if (!p)
                abort();
            f->tx = p;
            f->tx_cap = nc;
        }
        memcpy(f->tx + f->tx_len, buf, n);
        f->tx_len += n;
        check_tx(f);
    }
}

static void link_closed(struct fz *f)
{
    relay_session_closed(f->s, f->now);
    f->open = false;
    /* closed() forgets the held messages and clears rx_full without calling rx_full(false):
     * relay.c reads s.rx_full itself, so the hook's state is per link */
    CHECK(!f->s->rx_full, "rx_full still set after close");
    f->rx_full_on = false;
    f->n_refs = 0; /* refs of this link are stale now; in_done ignores them, keep it simple */
    link_reset(f);
    CHECK(relay_session_unacked(f->s) == 0, "in flight after close");
}

/* What relay.c does with a negative result: send a queued DISCONNECT, then the link is gone. */
static void on_result(struct fz *f, int rc)
{
    if (rc >= 0 || !f->open)
        return;
    if (relay_session_closing(f->s))
        drain(f, 1024);
    link_closed(f);
}

static void feed(struct fz *f, const uint8_t *p, size_t n)
{
    uint8_t *copy;

    if (!f->open)
        return;
    copy = malloc(n ? n : 1); /* exact size: an over-read is a heap-buffer-overflow */
    if (!copy)
        abort();
    memcpy(copy, p, n);
    on_result(f, relay_session_feed(f->s, copy, n, f->now));
    free(copy);
}

static void feed_pkt(struct fz *f, const struct mqc_packet *p, uint8_t split)
{
    uint8_t buf[512];
    size_t n;

    if (mqc_encode(p, f->cfg.version, buf, sizeof(buf), &n) != MQC_OK)
        return;
    if (split && n > 1) {
        size_t cut = 1 + split % (n - 1);

        feed(f, buf, cut);
        feed(f, buf + cut, n - cut);
    } else {
        feed(f, buf, n);
    }
}

/* ---- operations ------------------------------------------------------------------------- */

static void op_enqueue(struct fz *f)
{
    uint8_t q = next(f), s = next(f);
    struct mqc_publish p = {.qos = (uint8_t)(q % 3u), .retain = (q & 8u) != 0};
    uint8_t props[16];
    size_t plen = 0, size, written, pid_off = 0;
    static uint8_t payload[255 * 512];
    char topic[16];
    struct relay_msg *m;
    bool expiry = (q & 4u) && f->cfg.version == MQC_V5;

    if (f->n_msgs >= MAX_MSGS)
        return;
    snprintf(topic, sizeof(topic), "o/%u", f->n_msgs % 7u);
    p.topic = (struct mqc_bytes){(const uint8_t *)topic, strlen(topic)};
    /* q & 0x80: a large one (up to 127 KiB), to cross the window's byte marks */
    p.payload = (struct mqc_bytes){payload, (size_t)s * ((q & 0x80u) ? 512u : 8u)};
    p.packet_id = p.qos ? 1 : 0;
    if (expiry) {
        struct mqc_prop pr = {.id = MQC_PROP_MESSAGE_EXPIRY, .num = 1u + (q >> 4)};

        mqc_prop_put(&pr, props, sizeof(props), &plen);
        p.props = (struct mqc_props){props, plen};
    }
    if (mqc_size_publish(&p, f->cfg.version, &size) != MQC_OK)
        return;
    m = calloc(1, sizeof(*m) + size);
    if (!m)
        abort();
    CHECK(mqc_encode_publish(&p, f->cfg.version, m->data, size, &written, &pid_off) == MQC_OK,
          "encode");
    m->len = (uint32_t)written;
    m->qos = p.qos;
    m->pid_off = p.qos ? (uint32_t)pid_off : 0;
    m->route = f->n_msgs;
    m->t_in_ms = f->now;
    if (expiry) {
        /* the property block follows the topic (and the packet id): its length (one byte
         * here), the identifier, then the 4 value bytes */
        uint32_t rem;
        size_t used, at;

        CHECK(mqc_varint_decode(m->data + 1, written - 1u, &rem, &used) == MQC_OK, "varint");
        at = 1u + used + 2u + strlen(topic) + (p.qos ? 2u : 0u);
        CHECK(m->data[at + 1u] == MQC_PROP_MESSAGE_EXPIRY, "expiry offset");
        m->expiry = 1u + (q >> 4);
        m->expiry_off = (uint32_t)(at + 2u);
    }
    f->mstate[f->n_msgs++] = M_QUEUED;
    relay_session_enqueue(f->s, m, f->now);
}

static void op_connack(struct fz *f)
{
    uint8_t a = next(f), b = next(f);
    struct mqc_packet p = {.type = MQC_CONNACK};
    uint8_t props[64];
    size_t plen = 0;

    p.u.connack.session_present = (a & 1u) != 0;
    if ((a & 0xF0u) == 0xF0u)
        p.u.connack.code = f->cfg.version == MQC_V5 ? 0x87 : (uint8_t)(1u + (a >> 1) % 5u);
    if (f->cfg.version == MQC_V5) {
        struct mqc_prop pr = {0};

        if (a & 2u) {
            pr.id = MQC_PROP_RECEIVE_MAXIMUM;
            pr.num = 1u + b % 8u;
            mqc_prop_put(&pr, props, sizeof(props), &plen);
        }
        if (a & 4u) {
            pr.id = MQC_PROP_MAXIMUM_PACKET_SIZE;
            pr.num = 16u + (uint32_t)b * 4u;
            mqc_prop_put(&pr, props, sizeof(props), &plen);
        }
        if (a & 8u) {
            pr.id = MQC_PROP_MAXIMUM_QOS;
            pr.num = (b >> 3) & 1u;
            mqc_prop_put(&pr, props, sizeof(props), &plen);
        }
        if (a & 16u) {
            pr.id = MQC_PROP_RETAIN_AVAILABLE;
            pr.num = 0;
            mqc_prop_put(&pr, props, sizeof(props), &plen);
        }
        if (a & 32u) {
            pr.id = MQC_PROP_SERVER_KEEP_ALIVE;
            pr.num = (b >> 4) % 3u;
            mqc_prop_put(&pr, props, sizeof(props), &plen);
        }
        if (a & 64u) {
            pr.id = MQC_PROP_SUB_ID_AVAILABLE;
            pr.num = 0;
            mqc_prop_put(&pr, props, sizeof(props), &plen);
        }
    }
    p.u.connack.props = (struct mqc_props){props, plen};
    feed_pkt(f, &p, (a & 0x80u) ? b : 0);
}

static void op_suback(struct fz *f)
{
    uint8_t a = next(f);
    struct mqc_packet p = {.type = MQC_SUBACK};
    uint8_t codes[16];
    size_t n;

    if (!f->n_subq)
        return;
    n = f->subn[0] <= 16 ? f->subn[0] : 16;
    if (f->unsub[0])
        p.type = MQC_UNSUBACK;
    p.u.suback.packet_id = f->subq[0];
    for (size_t i = 0; i < sizeof(codes); i++)
        codes[i] = f->unsub[0] ? ((a & 1u) && i == 0 ? 0x11 : 0) : ((a & 1u) && i == 0 ? 0x80 : 1);
    /* 3.x UNSUBACK has no codes */
    p.u.suback.codes =
        (struct mqc_bytes){codes, p.type == MQC_UNSUBACK && f->cfg.version != MQC_V5 ? 0 : n};
    memmove(f->subq, f->subq + 1, (f->n_subq - 1) * sizeof(f->subq[0]));
    memmove(f->subn, f->subn + 1, (f->n_subq - 1) * sizeof(f->subn[0]));
    memmove(f->unsub, f->unsub + 1, (f->n_subq - 1) * sizeof(f->unsub[0]));
    f->n_subq--;
    feed_pkt(f, &p, (a & 2u) ? a : 0);
}

/* A reload: the other of two subscription lists, some entries fresh, the rest gone. */
static void op_change_subs(struct fz *f, uint8_t b)
{
    static const char *const filters[2][3] = {{"f/#", "f/+/x", "$share/g/f/1/#"},
                                              {"g/#", "f/+/x", "h/1"}};
    const struct relay_sub *cur = f->s->subs;
    int next_set = cur == f->subs2[0] ? 1 : 0;
    size_t n = (size_t)((b >> 2) % 4u), n_gone = 0;
    const char *gone[3];

    for (size_t i = 0; i < n; i++) {
        f->subs2[next_set][i] =
            (struct relay_sub){filters[next_set][i], (uint8_t)(1u + i % 2u), (uint32_t)i + 7u};
        f->fresh[next_set][i] = (b >> (4u + i)) & 1u;
    }
    for (size_t i = 0; i < f->s->n_subs && n_gone < 3; i++) {
        bool kept = false;

        for (size_t k = 0; k < n; k++)
            kept |= !strcmp(f->s->subs[i].filter, f->subs2[next_set][k].filter);
        if (!kept)
            gone[n_gone++] = f->s->subs[i].filter;
    }
    CHECK(relay_session_change_subs(f->s, f->subs2[next_set], n, f->fresh[next_set], gone,
                                    n_gone) == 0,
          "change_subs failed");
}

static void op_ack(struct fz *f)
{
    uint8_t i = next(f), a = next(f);
    struct mqc_packet p;
    uint32_t k;

    if (!f->n_pids)
        return;
    k = i % f->n_pids;
    memset(&p, 0, sizeof(p));
    p.type = f->pids[k].rel ? MQC_PUBCOMP : (f->pids[k].qos == 1 ? MQC_PUBACK : MQC_PUBREC);
    p.u.ack.packet_id = f->pids[k].pid;
    if (f->cfg.version == MQC_V5 && p.type != MQC_PUBCOMP) {
        if ((a & 7u) == 7u)
            p.u.ack.code = 0x87; /* refused: dropped */
        else if ((a & 7u) == 6u)
            p.u.ack.code = 0x97; /* quota exceeded: resent later */
    }
    if (p.type == MQC_PUBCOMP || p.u.ack.code >= 0x80 || p.type == MQC_PUBACK) {
        f->pids[k] = f->pids[--f->n_pids];
    }
    feed_pkt(f, &p, (a & 8u) ? a : 0);
}

static void op_publish(struct fz *f)
{
    uint8_t q = next(f), id = next(f);
    struct mqc_packet p = {.type = MQC_PUBLISH};
    char topic[16];

    p.u.publish.qos = (uint8_t)(q % 3u);
    p.u.publish.dup = p.u.publish.qos && (q & 4u);
    p.u.publish.retain = (q & 8u) != 0;
    p.u.publish.packet_id = p.u.publish.qos ? (uint16_t)(1u + id % 32u) : 0;
    snprintf(topic, sizeof(topic), "f/%u/x", (unsigned)(q >> 4) % 3u);
    p.u.publish.topic = (struct mqc_bytes){(const uint8_t *)topic, strlen(topic)};
    p.u.publish.payload = (struct mqc_bytes){(const uint8_t *)"payload", (size_t)(id % 8u)};
    feed_pkt(f, &p, 0);
}

static bool purge_pred(const struct relay_msg *m, void *arg)
{
    struct fz *f = F;
    uint8_t parity = *(const uint8_t *)arg;

    CHECK(m->route < f->n_msgs && f->mstate[m->route] == M_QUEUED, "purge sees message %u",
          m->route);
    if (m->route % 2u != parity)
        return false;
    f->mstate[m->route] = M_PURGED;
    return true;
}

static bool trace; /* FUZZ_SESSION_TRACE set: one line per operation on stderr */

static void step(struct fz *f)
{
    uint8_t op = next(f) % 16u;

    if (trace)
        fprintf(stderr, "op %2u at %zu: state %d open %d held %u done/queued %u now %llu\n", op,
                f->off - 1, (int)relay_session_state(f->s), f->open, f->s->in_used, f->n_msgs,
                (unsigned long long)f->now);
    switch (op) {
    case OP_OPEN:
        if (!f->open) {
            link_reset(f);
            CHECK(relay_session_open(f->s, f->now) == 0, "open failed");
            f->open = true;
        }
        break;
    case OP_CLOSE:
        if (f->open)
            link_closed(f);
        break;
    case OP_FEED: {
        size_t n = next(f);

        if (n > f->len - f->off)
            n = f->len - f->off;
        feed(f, f->in + f->off, n);
        f->off += n;
        break;
    }
    case OP_TICK: {
        uint8_t d = next(f);
        uint64_t dl = relay_session_deadline(f->s);

        if (d == 0 && dl > f->now)
            f->now = dl;
        else
            f->now += (uint64_t)d * 50u;
        if (f->open)
            on_result(f, relay_session_tick(f->s, f->now));
        break;
    }
    case OP_DRAIN:
        if (f->open)
            drain(f, 1u + next(f));
        else
            (void)next(f);
        break;
    case OP_ENQUEUE:
        op_enqueue(f);
        break;
    case OP_IN_DONE: {
        uint8_t i = next(f);

        if (f->n_refs) {
            uint32_t k = i % f->n_refs;
            struct relay_in_ref r = f->refs[k];

            f->refs[k] = f->refs[--f->n_refs];
            relay_session_in_done(f->s, r, f->now);
        }
        break;
    }
    case OP_CONNACK:
        op_connack(f);
        break;
    case OP_SUBACK:
        op_suback(f);
        break;
    case OP_ACK:
        op_ack(f);
        break;
    case OP_PUBLISH:
        op_publish(f);
        break;
    case OP_PUBREL: {
        struct mqc_packet p = {.type = MQC_PUBREL};

        p.u.ack.packet_id = (uint16_t)(1u + next(f) % 32u);
        feed_pkt(f, &p, 0);
        break;
    }
    case OP_PING: {
        struct mqc_packet p = {.type = (next(f) & 1u) ? MQC_DISCONNECT : MQC_PINGRESP};

        if (p.type == MQC_DISCONNECT && f->cfg.version == MQC_V5)
            p.u.reason.code = 0x8B;
        feed_pkt(f, &p, 0);
        break;
    }
    case OP_PURGE: {
        uint8_t b = next(f), parity = b % 2u;

        if (b & 2u)
            op_change_subs(f, b);
        else
            relay_session_purge(f->s, purge_pred, &parity);
        break;
    }
    case OP_RXPAUSE: {
        bool paused = next(f) & 1u;

        relay_session_set_rx_paused(f->s, paused);
        if (!paused && f->open)
            on_result(f, relay_session_resume_rx(f->s, f->now));
        break;
    }
    case OP_DISCONNECT:
        relay_session_disconnect(f->s, next(f), f->now);
        break;
    }
    /* relay.c closes a link once its DISCONNECT is written */
    if (f->open && relay_session_closing(f->s) && !relay_session_wants_write(f->s, f->now))
        link_closed(f);
}

/* Messages still owned by the session: its queues, and a QoS 0 message half written. */
static uint32_t held(const struct relay_session *s)
{
    uint32_t n = 0;
    bool tx_listed = false;

    for (const struct relay_msg *m = s->pend_head; m; m = m->next) {
        n++;
        tx_listed |= m == s->tx_msg;
    }
    for (const struct relay_msg *m = s->fl_head; m; m = m->next) {
        n++;
        tx_listed |= m == s->tx_msg;
    }
    if (s->tx_msg && !tx_listed)
        n++;
    return n;
}

static void setup(struct fz *f, const uint8_t *data, size_t size)
{
    static const uint8_t versions[3] = {MQC_V31, MQC_V311, MQC_V5};
    static const char *const filters[3] = {"f/#", "f/+/x", "$share/g/f/1/#"};
    uint8_t b0, b1, b2, b3;
    size_t nsubs;

    memset(f, 0, sizeof(*f));
    f->in = data;
    f->len = size;
    b0 = next(f);
    b1 = next(f);
    b2 = next(f);
    b3 = next(f);
    f->pub_ret = next(f);
    f->cfg.version = versions[b0 % 3u];
    f->cfg.try_bridge = f->cfg.version != MQC_V5 && (b0 & 4u);
    f->cfg.client_id = "fuzz-session";
    if (b0 & 64u) {
        f->cfg.username = "user";
        f->cfg.password = "secret";
        f->cfg.password_len = 6;
    }
    f->cfg.clean_start = (b0 & 8u) != 0;
    f->cfg.will_topic = (b0 & 16u) ? "relay/status" : NULL;
    f->cfg.keepalive = (uint16_t)((b3 % 4u) * 10u);
    f->cfg.session_expiry = 3600;
    f->cfg.receive_maximum = (uint16_t)(1u + b1 % 16u);
    f->cfg.max_packet_size = (b1 & 0x80u) ? 128u : 262144u;
    f->cfg.max_inflight = (uint16_t)(b2 % 8u);
    f->cfg.ack_timeout_ms = 1000u + (uint32_t)(b3 >> 4) * 1000u;
    if (b0 & 32u) {
        f->cfg.rate_bytes = 1u + (uint64_t)b2 * 64u;
        f->cfg.rate_messages = 1u + (b2 >> 3);
    }
    relay_log_init(&f->log, RELAY_LOG_ERROR);
    nsubs = (b3 >> 2) % 4u;
    for (size_t i = 0; i < nsubs; i++)
        f->subs[i] = (struct relay_sub){filters[i], (uint8_t)(1u + i % 2u), (uint32_t)i + 1u};
    CHECK(relay_session_new(&f->cfg, &HOOKS, f, &f->log, "fuzz#0", &f->s) == 0, "init");
    relay_session_set_subs(f->s, f->subs, nsubs);
    f->now = 1000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fz fz;
    struct fz *f = &fz;
    uint32_t queued = 0;

    F = f;
    setup(f, data, size);
    for (int steps = 0; more(f) && steps < 2000; steps++)
        step(f);
    if (f->open)
        drain(f, 1024);

    for (uint32_t i = 0; i < f->n_msgs; i++)
        queued += f->mstate[i] == M_QUEUED;
    CHECK(held(f->s) == queued,
          "the session holds %u messages, %u were enqueued and neither reported done nor purged",
          held(f->s), queued);
    relay_session_free(f->s); /* frees what it holds, without hooks */
    free(f->tx);
    f->tx = NULL;
    return 0;
}

/* ---- seeds ------------------------------------------------------------------------------ */

struct seedbuf {
    uint8_t b[4096];
    size_t n;
};

static void put(struct seedbuf *s, int n, ...)
{
    va_list ap;

    va_start(ap, n);
    for (int i = 0; i < n; i++)
        if (s->n < sizeof(s->b))
            s->b[s->n++] = (uint8_t)va_arg(ap, int);
    va_end(ap);
}

static void put_raw(struct seedbuf *s, const struct mqc_packet *p, uint8_t version)
{
    uint8_t buf[256];
    size_t n;

    if (mqc_encode(p, version, buf, sizeof(buf), &n) != MQC_OK || n > 255)
        return;
    put(s, 2, OP_FEED, (int)n);
    for (size_t i = 0; i < n; i++)
        put(s, 1, buf[i]);
}

static void write_seed(const char *dir, const char *name, const struct seedbuf *s)
{
    char path[4096];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "wb");
    if (!fp) {
        perror(path);
        exit(1);
    }
    fwrite(s->b, 1, s->n, fp);
    fclose(fp);
}

/* Valid exchanges: connect, subscribe, messages both ways with their acknowledgements,
 * keepalive, a cut and a resumed session, for each version; and the same with raw bytes. */
static void write_seeds(const char *dir)
{
    static const char *const vname[3] = {"v31", "v311", "v5"};

    for (int v = 0; v < 3; v++) {
        uint8_t ver = (uint8_t)(v == 0 ? MQC_V31 : v == 1 ? MQC_V311 : MQC_V5);
        struct seedbuf s = {{0}, 0};
        char name[64];

        /* b0 version, b1 receive max 4, b2 max_inflight 2, b3: keepalive 10 s, 2 subs,
         * pub_ret: 1 destination each */
        put(&s, 5, v, 3, 2, 1 | (2 << 2) | (1 << 4), 0xAA);
        put(&s, 2, OP_OPEN, OP_DRAIN);
        put(&s, 1, 255);
        put(&s, 3, OP_CONNACK, 0x02 | 0x04 | 0x20, 0x33);
        put(&s, 2, OP_DRAIN, 255);
        put(&s, 4, OP_SUBACK, 0, OP_SUBACK, 0);
        put(&s, 2, OP_DRAIN, 255);
        for (int i = 0; i < 3; i++) {
            put(&s, 3, OP_ENQUEUE, i, 4);
            put(&s, 3, OP_PUBLISH, i, i + 1);
        }
        put(&s, 2, OP_DRAIN, 255);
        put(&s, 6, OP_ACK, 0, 0, OP_ACK, 1, 0);
        put(&s, 2, OP_DRAIN, 255);
        put(&s, 4, OP_IN_DONE, 0, OP_IN_DONE, 0);
        put(&s, 2, OP_DRAIN, 255);
        put(&s, 2, OP_PUBREL, 3);
        put(&s, 4, OP_TICK, 0, OP_DRAIN, 255);
        put(&s, 2, OP_PING, 0);
        put(&s, 3, OP_ENQUEUE, 1, 200); /* a long one, written in pieces */
        put(&s, 2, OP_DRAIN, 16);
        put(&s, 1, OP_CLOSE);
        put(&s, 3, OP_OPEN, OP_DRAIN, 255);
        put(&s, 3, OP_CONNACK, 0x01, 0);
        put(&s, 4, OP_DRAIN, 255, OP_SUBACK, 0);
        put(&s, 4, OP_SUBACK, 0, OP_DRAIN, 255);
        put(&s, 6, OP_ACK, 0, 0, OP_ACK, 0, 0);
        put(&s, 2, OP_DRAIN, 255);
        snprintf(name, sizeof(name), "exchange-%s", vname[v]);
        write_seed(dir, name, &s);

        /* raw bytes from the broker: CONNACK, SUBACK, PUBLISH QoS 1 and 2, PUBREL, PINGRESP */
        s.n = 0;
        put(&s, 5, v, 3, 0, 1 << 2, 0x55);
        put(&s, 3, OP_OPEN, OP_DRAIN, 255);
        {
            struct mqc_packet p = {.type = MQC_CONNACK};
            uint8_t props[16];
            size_t plen = 0;
            struct mqc_prop pr = {.id = MQC_PROP_RECEIVE_MAXIMUM, .num = 10};

            if (ver == MQC_V5)
                mqc_prop_put(&pr, props, sizeof(props), &plen);
            p.u.connack.props = (struct mqc_props){props, plen};
            put_raw(&s, &p, ver);
        }
        put(&s, 2, OP_DRAIN, 255);
        {
            struct mqc_packet p = {.type = MQC_SUBACK};
            uint8_t codes[1] = {1};

            p.u.suback.packet_id = 64512; /* the session's first SUBSCRIBE id */
            p.u.suback.codes = (struct mqc_bytes){codes, 1};
            put_raw(&s, &p, ver);
        }
        for (int q = 0; q < 3; q++) {
            struct mqc_packet p = {.type = MQC_PUBLISH};

            p.u.publish.qos = (uint8_t)q;
            p.u.publish.packet_id = q ? (uint16_t)(10 + q) : 0;
            p.u.publish.topic = (struct mqc_bytes){(const uint8_t *)"f/1/x", 5};
            p.u.publish.payload = (struct mqc_bytes){(const uint8_t *)"hello", 5};
            put_raw(&s, &p, ver);
        }
        put(&s, 6, OP_IN_DONE, 0, OP_IN_DONE, 0, OP_DRAIN, 255);
        {
            struct mqc_packet p = {.type = MQC_PUBREL};

            p.u.ack.packet_id = 12;
            put_raw(&s, &p, ver);
            p.type = MQC_PINGRESP;
            put_raw(&s, &p, ver);
        }
        put(&s, 2, OP_DRAIN, 255);
        snprintf(name, sizeof(name), "raw-%s", vname[v]);
        write_seed(dir, name, &s);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("FUZZ_SESSION_SEEDS");

    (void)argc;
    (void)argv;
    trace = getenv("FUZZ_SESSION_TRACE") != NULL;
    if (dir && *dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}
