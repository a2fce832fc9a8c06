/*
 * session.c: one broker connection's MQTT client state, with no I/O.
 *
 * Bytes come in through relay_session_feed() and go out through relay_session_next_tx(); time
 * comes in as now_ms. The session owns: the CONNECT/CONNACK exchange and what the CONNACK
 * allows, SUBSCRIBE after every CONNACK, keepalive, packet identifiers, the outgoing queue and
 * its window (QoS 1/2 in flight, resent with DUP after a reconnect, QoS 2 resumed with PUBREL),
 * and the incoming QoS 1/2 messages held until the owner says their destinations acknowledged
 * them (then PUBACK/PUBREC in arrival order).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

enum { MS_PENDING = 0, MS_INFLIGHT = 1 };
#define MS_RESENT 0x80 /* flag on m->state: sent on an earlier link */

enum { SL_FREE = 0, SL_PUB = 1, SL_PUBCOMP = 2 };
enum { IN_FREE = 0, IN_WAIT, IN_DONE, IN_PUBREL };

#define SUB_PID_BASE 64512u      /* SUBSCRIBE ids live above every PUBLISH id */
#define SUB_PID_COUNT 1023u
#define MAX_PUB_SLOTS (SUB_PID_BASE - 1u)
#define CONNACK_TIMEOUT_MS 10000u
#define CLOSE_FLUSH_MS 1000u
#define RETRY_BUSY_MS 1000u
#define DEFAULT_INFLIGHT_V3 20u
#define RX_MIN 4096u
#define RX_HARD_CAP (16u * 1024u * 1024u) /* deferred PUBLISHes past this: reconnect */

/* ---- small helpers ---------------------------------------------------------------------- */

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    size_t n = *cap ? *cap : RX_MIN;
    uint8_t *p;

    if (need <= *cap)
        return 0;
    while (n < need)
        n *= 2;
    p = realloc(*buf, n);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

/* Encodes pkt at the end of the control queue. */
static int ctl_put(struct relay_session *s, const struct mqc_packet *pkt)
{
    size_t size, written;
    int rc;

    if (mqc_size(pkt, s->cfg->version, &size) != MQC_OK)
        return -EINVAL;
    if (s->ctl_off && s->ctl_off == s->ctl_len)
        s->ctl_off = s->ctl_len = 0;
    rc = grow(&s->ctl, &s->ctl_cap, s->ctl_len + size);
    if (rc)
        return rc;
    if (mqc_encode(pkt, s->cfg->version, s->ctl + s->ctl_len, size, &written) != MQC_OK)
        return -EINVAL;
    s->ctl_len += written;
    return 0;
}

static int ctl_ack(struct relay_session *s, uint8_t type, uint16_t pid, uint8_t code)
{
    uint8_t buf[8];
    struct mqc_ack a = {.packet_id = pid, .code = code};
    size_t n;
    int rc;

    if (mqc_encode_ack(type, &a, s->cfg->version, buf, sizeof(buf), &n) != MQC_OK)
        return -EINVAL;
    if (s->ctl_off && s->ctl_off == s->ctl_len)
        s->ctl_off = s->ctl_len = 0;
    rc = grow(&s->ctl, &s->ctl_cap, s->ctl_len + n);
    if (rc)
        return rc;
    memcpy(s->ctl + s->ctl_len, buf, n);
    s->ctl_len += n;
    return 0;
}

static void set_why(struct relay_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_why(struct relay_session *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
}

/* A packet from the broker broke the protocol: one log line, DISCONNECT with the reason code
 * (5.0), and the link closes. */
static int peer_error(struct relay_session *s, int err, const char *what, uint64_t now_ms)
{
    uint8_t reason = err < 0 ? mqc_reason_code(err) : (uint8_t)err;

    /* the owner logs it once, with the retry delay, when the link is gone */
    if (s->cfg->version == MQC_V5)
        set_why(s, "protocol error from broker: %s%s%s (DISCONNECT reason 0x%02X)", what,
                err < 0 ? ": " : "", err < 0 ? mqc_strerror(err) : "", reason);
    else /* 3.x has no reason codes: the link just closes */
        set_why(s, "protocol error from broker: %s%s%s", what, err < 0 ? ": " : "",
                err < 0 ? mqc_strerror(err) : "");
    relay_session_disconnect(s, reason, now_ms);
    return -EPROTO;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

int relay_session_init(struct relay_session *s, const struct relay_session_cfg *cfg,
                       const struct relay_session_hooks *hooks, void *owner,
                       struct relay_log *log, const char *who)
{
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->hooks = hooks;
    s->owner = owner;
    s->log = log;
    s->who = who;
    s->in_cap = cfg->receive_maximum ? cfg->receive_maximum : 1;
    s->in = calloc(s->in_cap, sizeof(*s->in));
    s->in_order = calloc(s->in_cap, sizeof(*s->in_order));
    s->in_free = calloc(s->in_cap, sizeof(*s->in_free));
    s->in_map = calloc(65536, sizeof(*s->in_map));
    s->subq = calloc(SUB_PID_COUNT, sizeof(*s->subq));
    if (!s->in || !s->in_order || !s->in_free || !s->in_map || !s->subq) {
        relay_session_cleanup(s);
        return -ENOMEM;
    }
    for (uint16_t i = 0; i < s->in_cap; i++)
        s->in_free[s->in_nfree++] = (uint16_t)(s->in_cap - 1u - i);
    relay_window_init(&s->win, DEFAULT_INFLIGHT_V3, RELAY_WINDOW_HIGH, RELAY_WINDOW_LOW);
    relay_bucket_init(&s->rate_bytes, cfg->rate_bytes, 0);
    relay_bucket_init(&s->rate_msgs, cfg->rate_messages, 0);
    s->next_pid = 1;
    s->peer_max_qos = 2;
    s->peer_retain = true;
    s->peer_max_packet = MQC_MAX_REMAINING + 5u;
    return 0;
}

static void free_list(struct relay_msg *m)
{
    while (m) {
        struct relay_msg *next = m->next;
        free(m);
        m = next;
    }
}

void relay_session_cleanup(struct relay_session *s)
{
    if (s->tx_msg && s->tx_msg->qos == 0)
        free(s->tx_msg); /* QoS 0 being written sits on no list */
    free_list(s->pend_head);
    free_list(s->fl_head);
    free(s->slots);
    free(s->slot_state);
    free(s->rx);
    free(s->ctl);
    free(s->in);
    free(s->in_order);
    free(s->in_free);
    free(s->in_map);
    free(s->subq);
    memset(s, 0, sizeof(*s));
}

void relay_session_set_subs(struct relay_session *s, const struct relay_sub *subs, size_t n)
{
    s->subs = subs;
    s->n_subs = n;
}

/* ---- CONNECT / SUBSCRIBE ------------------------------------------------------------------ */

static int queue_connect(struct relay_session *s)
{
    const struct relay_session_cfg *c = s->cfg;
    struct mqc_packet pkt = {.type = MQC_CONNECT};
    struct mqc_connect *cn = &pkt.u.connect;
    uint8_t props[32];
    size_t plen = 0;

    cn->version = c->version;
    cn->bridge = c->try_bridge && c->version != MQC_V5 && !s->bridge_refused;
    cn->clean_start = c->clean_start;
    cn->keepalive = c->keepalive;
    cn->client_id = (struct mqc_bytes){(const uint8_t *)c->client_id, strlen(c->client_id)};
    if (c->username) {
        cn->has_username = true;
        cn->username = (struct mqc_bytes){(const uint8_t *)c->username, strlen(c->username)};
    }
    if (c->password) {
        cn->has_password = true;
        cn->password = (struct mqc_bytes){(const uint8_t *)c->password, c->password_len};
    }
    if (c->will_topic) {
        cn->will = true;
        cn->will_qos = 1;
        cn->will_retain = true;
        cn->will_topic = (struct mqc_bytes){(const uint8_t *)c->will_topic, strlen(c->will_topic)};
        cn->will_payload = (struct mqc_bytes){(const uint8_t *)"offline", 7};
    }
    if (c->version == MQC_V5) {
        struct mqc_prop p = {0};

        if (c->session_expiry) {
            p.id = MQC_PROP_SESSION_EXPIRY;
            p.num = c->session_expiry;
            mqc_prop_put(&p, props, sizeof(props), &plen);
        }
        p.id = MQC_PROP_RECEIVE_MAXIMUM;
        p.num = s->in_cap;
        mqc_prop_put(&p, props, sizeof(props), &plen);
        p.id = MQC_PROP_MAXIMUM_PACKET_SIZE;
        p.num = c->max_packet_size;
        mqc_prop_put(&p, props, sizeof(props), &plen);
        cn->props = (struct mqc_props){props, plen};
    }
    return ctl_put(s, &pkt);
}

#define UNSUB_MARK 0xFFFFu /* subq entry of an UNSUBSCRIBE in flight */

/* A free SUBSCRIBE/UNSUBSCRIBE identifier slot, or -1 when all are in flight. */
static int sub_slot(struct relay_session *s)
{
    for (uint16_t k = 0; k < SUB_PID_COUNT; k++) {
        uint16_t idx = s->sub_seq;

        s->sub_seq = (uint16_t)((s->sub_seq + 1u) % SUB_PID_COUNT);
        if (!s->subq[idx].n)
            return idx;
    }
    return -1;
}

/* One SUBSCRIBE for subs[first .. first+n). */
static int send_subscribe(struct relay_session *s, size_t first, size_t n, uint16_t idx)
{
    struct mqc_sub batch[10];
    struct mqc_packet pkt = {.type = MQC_SUBSCRIBE};
    uint8_t props[8];
    size_t plen = 0;

    for (size_t k = 0; k < n; k++) {
        const struct relay_sub *sub = &s->subs[first + k];

        batch[k].filter = (struct mqc_bytes){(const uint8_t *)sub->filter, strlen(sub->filter)};
        batch[k].options = s->cfg->version == MQC_V5 ? sub->options : MQC_SUB_QOS(sub->options);
    }
    if (s->cfg->version == MQC_V5 && s->peer_sub_ids && n == 1 && s->subs[first].sub_id) {
        struct mqc_prop p = {.id = MQC_PROP_SUBSCRIPTION_ID, .num = s->subs[first].sub_id};
        mqc_prop_put(&p, props, sizeof(props), &plen);
    }
    pkt.u.subscribe.packet_id = (uint16_t)(SUB_PID_BASE + idx);
    pkt.u.subscribe.props = (struct mqc_props){props, plen};
    pkt.u.subscribe.subs = batch;
    pkt.u.subscribe.count = n;
    if (ctl_put(s, &pkt) != 0)
        return -ENOMEM;
    s->subq[idx].first = first;
    s->subq[idx].n = (uint16_t)n;
    s->sub_pending++;
    return 0;
}

/* Sends SUBSCRIBEs while identifiers are free; the rest go as SUBACKs come back. With MQTT 5
 * Subscription Identifiers each subscription needs its own packet (the identifier is a packet
 * property); otherwise up to 10 filters share one (BifroMQ refuses more per packet). */
static int queue_subscribes(struct relay_session *s)
{
    size_t per = s->cfg->version == MQC_V5 && s->peer_sub_ids ? 1 : 10;

    while (s->sub_next < s->n_subs) {
        size_t n = s->n_subs - s->sub_next < per ? s->n_subs - s->sub_next : per;
        int idx = sub_slot(s);

        if (idx < 0)
            return 0; /* the next SUBACK continues */
        if (send_subscribe(s, s->sub_next, n, (uint16_t)idx) != 0)
            return -ENOMEM;
        s->sub_next += n;
    }
    return 0;
}

int relay_session_change_subs(struct relay_session *s, const struct relay_sub *subs, size_t n,
                              const bool *fresh, const char *const *gone, size_t n_gone)
{
    s->subs = subs;
    s->n_subs = n;
    if (s->state == RELAY_SS_DOWN || s->state == RELAY_SS_CONNECTING ||
        s->state == RELAY_SS_CLOSING)
        return 0; /* the next CONNACK subscribes the new list */
    if (s->state == RELAY_SS_SUBSCRIBING) {
        s->sub_next = 0; /* again from the start: SUBSCRIBE is idempotent */
        return queue_subscribes(s);
    }
    s->sub_next = n;
    for (size_t i = 0; i < n; i++) {
        int idx;

        if (!fresh[i])
            continue;
        if ((idx = sub_slot(s)) < 0 || send_subscribe(s, i, 1, (uint16_t)idx) != 0)
            return -ENOMEM;
    }
    for (size_t i = 0; i < n_gone;) {
        struct mqc_bytes filters[10];
        struct mqc_packet pkt = {.type = MQC_UNSUBSCRIBE};
        size_t k = 0;
        int idx = sub_slot(s);

        if (idx < 0)
            return -ENOMEM;
        while (i < n_gone && k < 10) {
            filters[k] = (struct mqc_bytes){(const uint8_t *)gone[i], strlen(gone[i])};
            k++;
            i++;
        }
        pkt.u.unsubscribe.packet_id = (uint16_t)(SUB_PID_BASE + (uint16_t)idx);
        pkt.u.unsubscribe.filters = filters;
        pkt.u.unsubscribe.count = k;
        if (ctl_put(s, &pkt) != 0)
            return -ENOMEM;
        s->subq[idx].n = UNSUB_MARK;
    }
    return 0;
}

/* ---- outgoing messages -------------------------------------------------------------------- */

static void finish_out(struct relay_session *s, struct relay_msg *m, int drop, uint64_t now_ms)
{
    if (relay_window_remove(&s->win, m->len) < 0 && s->hooks->window)
        s->hooks->window(s, -1);
    s->hooks->done(s, m, drop, now_ms);
}

void relay_session_enqueue(struct relay_session *s, struct relay_msg *m, uint64_t now_ms)
{
    (void)now_ms;
    m->state = MS_PENDING;
    m->pid = 0;
    relay_msg_push_back(&s->pend_head, &s->pend_tail, m);
    if (relay_window_add(&s->win, m->len) > 0 && s->hooks->window)
        s->hooks->window(s, +1);
}

static int ensure_slots(struct relay_session *s, uint32_t want)
{
    if (want > MAX_PUB_SLOTS)
        want = MAX_PUB_SLOTS;
    if (want <= s->slots_cap)
        return 0;
    struct relay_msg **ns = realloc(s->slots, want * sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    s->slots = ns;
    uint8_t *st = realloc(s->slot_state, want);
    if (!st)
        return -ENOMEM;
    s->slot_state = st;
    for (uint32_t i = s->slots_cap; i < want; i++) {
        s->slots[i] = NULL;
        s->slot_state[i] = SL_FREE;
    }
    s->slots_cap = (uint16_t)want;
    return 0;
}

static uint16_t alloc_pid(struct relay_session *s)
{
    for (uint32_t n = 0; n < s->slots_cap; n++) {
        uint16_t pid = s->next_pid;

        s->next_pid = (uint16_t)(pid >= s->slots_cap ? 1 : pid + 1);
        if (s->slot_state[pid - 1] == SL_FREE)
            return pid;
    }
    return 0;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Re-encodes m at a lower QoS when the broker's Maximum QoS (from the latest CONNACK) is below
 * what m was encoded with. Returns the replacement (m freed) or NULL on allocation failure. */
static struct relay_msg *downgrade(struct relay_session *s, struct relay_msg *m, uint8_t qos)
{
    struct mqc_publish p;
    struct relay_msg *n;
    size_t size, written, pid_off = 0;

    if (mqc_decode_publish(m->data, m->len, s->cfg->version, &p) != MQC_OK)
        return NULL;
    p.qos = qos;
    p.dup = false;
    p.packet_id = qos ? 1 : 0;
    if (mqc_size_publish(&p, s->cfg->version, &size) != MQC_OK)
        return NULL;
    n = malloc(sizeof(*n) + size);
    if (!n)
        return NULL;
    *n = *m;
    n->next = n->prev = NULL;
    n->cache = 0; /* sized exactly, not one of relay_msg_alloc's classes */
    if (mqc_encode_publish(&p, s->cfg->version, n->data, size, &written, &pid_off) != MQC_OK) {
        free(n);
        return NULL;
    }
    /* the Message Expiry bytes moved by the size difference of the header */
    if (m->expiry_off)
        n->expiry_off = (uint32_t)(m->expiry_off - (m->len - written));
    n->len = (uint32_t)written;
    n->qos = qos;
    n->pid_off = qos ? (uint32_t)pid_off : 0;
    n->pid = 0;
    free(m);
    return n;
}

/* Drops what cannot be sent any more (expired, too large for the broker's limit) and fixes what
 * the latest CONNACK changed. Returns the message to send, or NULL if m was dropped. */
static struct relay_msg *vet(struct relay_session *s, struct relay_msg *m, uint64_t now_ms)
{
    if (m->expiry) {
        uint64_t held = (now_ms - m->t_in_ms) / 1000u;

        if (held >= m->expiry) {
            finish_out(s, m, RELAY_DROP_EXPIRED, now_ms);
            return NULL;
        }
        put_u32(m->data + m->expiry_off, (uint32_t)(m->expiry - held));
    }
    if (m->qos > s->peer_max_qos) {
        struct relay_msg *n;

        if (m->pid && m->pid <= s->slots_cap) {
            s->slot_state[m->pid - 1] = SL_FREE;
            s->slots[m->pid - 1] = NULL;
        }
        n = downgrade(s, m, s->peer_max_qos);
        if (!n) {
            relay_log(s->log, RELAY_LOG_ERROR, s->who, "out of memory re-encoding a message");
            finish_out(s, m, RELAY_DROP_TOO_LARGE, now_ms);
            return NULL;
        }
        m = n;
    }
    if (!s->peer_retain)
        m->data[0] &= (uint8_t)~0x01u;
    if (m->len > s->peer_max_packet) {
        if (m->pid && m->pid <= s->slots_cap) {
            s->slot_state[m->pid - 1] = SL_FREE;
            s->slots[m->pid - 1] = NULL;
        }
        finish_out(s, m, RELAY_DROP_TOO_LARGE, now_ms);
        return NULL;
    }
    return m;
}

static bool may_publish(const struct relay_session *s, uint64_t now_ms)
{
    const struct relay_msg *m = s->pend_head;

    if (s->state != RELAY_SS_UP || !m)
        return false;
    if (m->qos && !relay_window_can_send(&s->win))
        return false;
    return now_ms >= s->rate_ready_ms && now_ms >= s->retry_ready_ms;
}

/* Moves the next pending message into the window (QoS > 0) and returns it, or NULL when
 * nothing may be sent now. */
static struct relay_msg *take_next(struct relay_session *s, uint64_t now_ms)
{
    for (;;) {
        struct relay_msg *m;
        uint64_t ready;

        if (!may_publish(s, now_ms))
            return NULL;
        m = s->pend_head;
        relay_msg_unlink(&s->pend_head, &s->pend_tail, m);
        m = vet(s, m, now_ms);
        if (!m)
            continue;
        if (!relay_bucket_take(&s->rate_msgs, 1, now_ms, &ready) ||
            !relay_bucket_take(&s->rate_bytes, m->len, now_ms, &ready)) {
            s->rate_ready_ms = ready;
            relay_msg_push_front(&s->pend_head, &s->pend_tail, m);
            return NULL;
        }
        if (m->qos) {
            if (!m->pid) {
                if (ensure_slots(s, s->win.limit) != 0 || !(m->pid = alloc_pid(s))) {
                    relay_msg_push_front(&s->pend_head, &s->pend_tail, m);
                    return NULL;
                }
                s->slot_state[m->pid - 1] = SL_PUB;
                s->slots[m->pid - 1] = m;
            }
            put_u16(m->data + m->pid_off, m->pid);
            if ((m->state & MS_RESENT) && s->session_present)
                m->data[0] |= 0x08u;
            else
                m->data[0] &= (uint8_t)~0x08u;
            m->state = MS_INFLIGHT;
            m->sent_ms = now_ms;
            relay_window_sent(&s->win);
            relay_msg_push_back(&s->fl_head, &s->fl_tail, m);
        }
        return m;
    }
}

/* ---- link events ------------------------------------------------------------------------ */

int relay_session_open(struct relay_session *s, uint64_t now_ms)
{
    s->state = RELAY_SS_CONNECTING;
    s->link_open_ms = now_ms;
    s->last_tx_ms = now_ms;
    s->last_rx_ms = now_ms;
    s->ping_out = false;
    s->over_rm_said = false;
    s->rx_len = 0;
    s->rx_kept = 0;
    s->ctl_len = s->ctl_off = 0;
    s->sub_pending = 0;
    s->sub_next = 0;
    memset(s->subq, 0, SUB_PID_COUNT * sizeof(*s->subq));
    s->why[0] = '\0';
    return queue_connect(s);
}

static void in_reset(struct relay_session *s)
{
    for (uint16_t i = 0; i < s->in_cap; i++) {
        if (s->in[i].state != IN_FREE) {
            s->in_map[s->in[i].pid] = 0;
            s->in[i].state = IN_FREE;
        }
        s->in[i].gen++;
    }
    s->in_nfree = 0;
    for (uint16_t i = 0; i < s->in_cap; i++)
        s->in_free[s->in_nfree++] = (uint16_t)(s->in_cap - 1u - i);
    s->in_used = 0;
    s->in_pubrel = 0;
    s->in_head = s->in_count = 0;
    s->rx_full = false;
}

void relay_session_closed(struct relay_session *s, uint64_t now_ms)
{
    (void)now_ms;
    s->state = RELAY_SS_DOWN;
    s->epoch++;
    s->rx_len = 0;
    s->rx_kept = 0;
    s->ctl_len = s->ctl_off = 0;
    s->ping_out = false;
    s->sub_pending = 0;
    s->rx_paused = false;
    if (s->tx_msg && s->tx_msg->qos == 0) /* half-written QoS 0: send it again whole */
        relay_msg_push_front(&s->pend_head, &s->pend_tail, s->tx_msg);
    s->tx_msg = NULL;
    /* unacknowledged PUBLISHes go back to the head of the queue, in their original order, with
     * their packet identifiers: they are resent (DUP) after the next CONNACK */
    while (s->fl_tail) {
        struct relay_msg *m = s->fl_tail;

        relay_msg_unlink(&s->fl_head, &s->fl_tail, m);
        m->state = MS_PENDING | MS_RESENT;
        relay_msg_push_front(&s->pend_head, &s->pend_tail, m);
    }
    s->win.inflight = 0;
    in_reset(s);
}

bool relay_session_closing(const struct relay_session *s)
{
    return s->state == RELAY_SS_CLOSING;
}

void relay_session_disconnect(struct relay_session *s, uint8_t reason, uint64_t now_ms)
{
    if (s->state == RELAY_SS_DOWN || s->state == RELAY_SS_CLOSING)
        return;
    /* 3.x: a DISCONNECT means "all is well" and drops the Will; after a protocol error we
     * just close, so only a clean shutdown sends it there */
    if (s->cfg->version == MQC_V5 || reason == 0) {
        struct mqc_packet pkt = {.type = MQC_DISCONNECT};

        /* next_tx finishes a half-written PUBLISH before any control byte */
        pkt.u.reason.code = reason;
        (void)ctl_put(s, &pkt);
    }
    s->state = RELAY_SS_CLOSING;
    s->closing_ms = now_ms;
}

/* ---- incoming packets ------------------------------------------------------------------- */

static int on_connack(struct relay_session *s, const struct mqc_connack *ca, uint64_t now_ms)
{
    const struct relay_session_cfg *c = s->cfg;
    struct mqc_prop p;
    size_t off = 0;
    uint32_t limit;

    if (ca->code != 0) {
        bool v5 = c->version == MQC_V5;
        static const char *const v3_text[] = {"accepted", "unacceptable protocol version",
                                              "identifier rejected", "server unavailable",
                                              "bad user name or password", "not authorized"};
        const char *text = !v5 && ca->code < 6 ? v3_text[ca->code] : NULL;

        if (c->try_bridge && !s->bridge_refused && !v5 && ca->code == 1) {
            s->bridge_refused = true;
            set_why(s, "broker refused the bridge protocol bit; connecting without it");
            return -ECONNREFUSED;
        }
        if (v5) {
            switch (ca->code) {
            case 0x80: text = "unspecified error"; break;
            case 0x81: text = "malformed packet"; break;
            case 0x82: text = "protocol error"; break;
            case 0x84: text = "unsupported protocol version"; break;
            case 0x85: text = "client identifier not valid"; break;
            case 0x86: text = "bad user name or password"; break;
            case 0x87: text = "not authorized"; break;
            case 0x88: text = "server unavailable"; break;
            case 0x89: text = "server busy"; break;
            case 0x8A: text = "banned"; break;
            case 0x8C: text = "bad authentication method"; break;
            case 0x90: text = "topic name invalid"; break;
            case 0x95: text = "packet too large"; break;
            case 0x97: text = "quota exceeded"; break;
            case 0x99: text = "payload format invalid"; break;
            case 0x9A: text = "retain not supported"; break;
            case 0x9B: text = "QoS not supported"; break;
            case 0x9C: text = "use another server"; break;
            case 0x9D: text = "server moved"; break;
            case 0x9F: text = "connection rate exceeded"; break;
            default: text = "refused"; break;
            }
        }
        set_why(s, "connection refused (%s, code 0x%02X)", text, ca->code);
        return -ECONNREFUSED;
    }

    s->peer_receive_max = 65535;
    s->peer_max_packet = MQC_MAX_REMAINING + 5u;
    s->peer_max_qos = 2;
    s->peer_retain = true;
    s->peer_sub_ids = c->version == MQC_V5;
    s->peer_shared = true;
    s->keepalive = c->keepalive;
    while (mqc_props_next(&ca->props, &off, &p) == MQC_OK) {
        switch (p.id) {
        case MQC_PROP_RECEIVE_MAXIMUM: s->peer_receive_max = (uint16_t)p.num; break;
        case MQC_PROP_MAXIMUM_PACKET_SIZE: s->peer_max_packet = p.num; break;
        /* BifroMQ 3.3/4.0 put the Receive Maximum here (e.g. 200): clamp, don't refuse */
        case MQC_PROP_MAXIMUM_QOS: s->peer_max_qos = (uint8_t)(p.num > 2 ? 2 : p.num); break;
        case MQC_PROP_RETAIN_AVAILABLE: s->peer_retain = p.num != 0; break;
        case MQC_PROP_SUB_ID_AVAILABLE: s->peer_sub_ids = p.num != 0; break;
        case MQC_PROP_SHARED_SUB_AVAILABLE: s->peer_shared = p.num != 0; break;
        case MQC_PROP_SERVER_KEEP_ALIVE: s->keepalive = (uint16_t)p.num; break;
        case MQC_PROP_ASSIGNED_CLIENT_ID:
            relay_log(s->log, RELAY_LOG_DEBUG, s->who, "broker assigned client id %.*s",
                      (int)p.str.len, (const char *)p.str.p);
            break;
        default: break;
        }
    }
    limit = c->max_inflight ? c->max_inflight
                            : (c->version == MQC_V5 ? s->peer_receive_max : DEFAULT_INFLIGHT_V3);
    if (c->version == MQC_V5 && limit > s->peer_receive_max)
        limit = s->peer_receive_max;
    if (limit > MAX_PUB_SLOTS)
        limit = MAX_PUB_SLOTS;
    s->win.limit = limit;
    s->session_present = ca->session_present;
    s->state = RELAY_SS_SUBSCRIBING;

    /* QoS 2 exchanges waiting for PUBCOMP: resume them (PUBREL again), or, when the broker
     * has no session any more, they are finished: the PUBREC said it has the message */
    for (uint32_t i = 0; i < s->slots_cap; i++) {
        if (s->slot_state[i] != SL_PUBCOMP)
            continue;
        if (s->session_present) {
            relay_window_sent(&s->win);
            if (ctl_ack(s, MQC_PUBREL, (uint16_t)(i + 1), 0) != 0)
                return -ENOMEM;
        } else {
            s->slot_state[i] = SL_FREE;
        }
    }
    s->hooks->up(s, s->session_present, now_ms);

    if (queue_subscribes(s) != 0)
        return -ENOMEM;
    if (s->sub_pending == 0)
        s->state = RELAY_SS_UP;
    return 0;
}

static int on_suback(struct relay_session *s, const struct mqc_suback *sa, uint64_t now_ms)
{
    uint16_t idx = (uint16_t)(sa->packet_id - SUB_PID_BASE);
    size_t first;

    if (sa->packet_id < SUB_PID_BASE || idx >= SUB_PID_COUNT || !s->subq[idx].n ||
        s->subq[idx].n == UNSUB_MARK)
        return peer_error(s, 0x82, "SUBACK for a SUBSCRIBE we did not send", now_ms);
    if (sa->codes.len != s->subq[idx].n)
        return peer_error(s, 0x82, "SUBACK with the wrong number of codes", now_ms);
    first = s->subq[idx].first;
    s->subq[idx].n = 0;
    s->sub_pending--;
    for (size_t i = 0; i < sa->codes.len && first + i < s->n_subs; i++)
        if (s->hooks->suback)
            s->hooks->suback(s, &s->subs[first + i], sa->codes.p[i]);
    if (queue_subscribes(s) != 0)
        return -ENOMEM;
    if (s->sub_pending == 0 && s->state == RELAY_SS_SUBSCRIBING)
        s->state = RELAY_SS_UP;
    return 0;
}

static int on_ack(struct relay_session *s, uint8_t type, const struct mqc_ack *a,
                  uint64_t now_ms)
{
    uint16_t pid = a->packet_id;
    struct relay_msg *m;
    char what[80];

    if (pid == 0 || pid > s->slots_cap) {
        snprintf(what, sizeof(what), "%s for unknown packet id %u", mqc_type_name(type), pid);
        return peer_error(s, 0x82, what, now_ms);
    }
    if (type == MQC_PUBCOMP) {
        if (s->slot_state[pid - 1] != SL_PUBCOMP) {
            snprintf(what, sizeof(what), "PUBCOMP for packet id %u without PUBREL", pid);
            return peer_error(s, 0x82, what, now_ms);
        }
        s->slot_state[pid - 1] = SL_FREE;
        relay_window_acked(&s->win);
        return 0;
    }
    m = s->slots[pid - 1];
    if (s->slot_state[pid - 1] != SL_PUB || !m || (m->state & ~MS_RESENT) != MS_INFLIGHT ||
        m->qos != (type == MQC_PUBACK ? 1 : 2)) {
        snprintf(what, sizeof(what), "%s for unknown packet id %u", mqc_type_name(type), pid);
        return peer_error(s, 0x82, what, now_ms);
    }
    relay_msg_unlink(&s->fl_head, &s->fl_tail, m);
    if (a->code >= 0x80) {
        s->slots[pid - 1] = NULL;
        s->slot_state[pid - 1] = SL_FREE;
        relay_window_acked(&s->win);
        /* "server busy" / "quota exceeded" are worth another try (BifroMQ); the rest say the
         * broker will never take this message */
        if (a->code == 0x83 || a->code == 0x97) {
            relay_log_limited(s->log, now_ms, RELAY_LOG_WARN, s->who,
                              "broker busy (%s reason 0x%02X): resending in %u ms",
                              mqc_type_name(type), a->code, RETRY_BUSY_MS);
            m->pid = 0;
            m->state = MS_PENDING;
            relay_msg_push_front(&s->pend_head, &s->pend_tail, m);
            s->retry_ready_ms = now_ms + RETRY_BUSY_MS;
            return 0;
        }
        relay_log_limited(s->log, now_ms, RELAY_LOG_WARN, s->who,
                          "broker refused a message (%s reason 0x%02X); dropped",
                          mqc_type_name(type), a->code);
        finish_out(s, m, RELAY_DROP_REJECTED, now_ms);
        return 0;
    }
    s->slots[pid - 1] = NULL;
    if (type == MQC_PUBACK) {
        s->slot_state[pid - 1] = SL_FREE;
        relay_window_acked(&s->win);
    } else {
        s->slot_state[pid - 1] = SL_PUBCOMP; /* still counts against Receive Maximum */
        if (ctl_ack(s, MQC_PUBREL, pid, 0) != 0)
            return -ENOMEM;
    }
    finish_out(s, m, -1, now_ms);
    return 0;
}

/* Queues the acknowledgements that are due, oldest first [MQTT-4.6.0-2/3]. */
static void in_drain(struct relay_session *s)
{
    while (s->in_count) {
        uint16_t i = s->in_order[s->in_head];
        struct relay_in_slot *sl = &s->in[i];

        if (sl->state != IN_DONE)
            break;
        if (ctl_ack(s, sl->qos == 1 ? MQC_PUBACK : MQC_PUBREC, sl->pid, 0) != 0)
            break; /* out of memory: the broker's redelivery covers it */
        s->in_head = (uint16_t)((s->in_head + 1u) % s->in_cap);
        s->in_count--;
        if (sl->qos == 1) {
            s->in_map[sl->pid] = 0;
            sl->state = IN_FREE;
            sl->gen++;
            s->in_free[s->in_nfree++] = i;
            s->in_used--;
        } else {
            sl->state = IN_PUBREL;
            s->in_pubrel++;
        }
    }
    if (s->rx_full && s->in_used < s->in_cap) {
        s->rx_full = false;
        if (s->hooks->rx_full)
            s->hooks->rx_full(s, false);
    }
}

void relay_session_in_done(struct relay_session *s, struct relay_in_ref ref, uint64_t now_ms)
{
    struct relay_in_slot *sl;

    (void)now_ms;
    if (!ref.slot || ref.slot > s->in_cap)
        return;
    sl = &s->in[ref.slot - 1];
    if (sl->gen != ref.gen || sl->state != IN_WAIT)
        return; /* from an earlier link: the broker redelivers it on this one */
    if (sl->pending == UINT32_MAX || (sl->pending && --sl->pending))
        return;
    sl->state = IN_DONE;
    in_drain(s);
}

size_t relay_session_purge(struct relay_session *s,
                           bool (*pred)(const struct relay_msg *m, void *arg), void *arg)
{
    struct relay_msg *m = s->pend_head;
    size_t n = 0;

    while (m) {
        struct relay_msg *next = m->next;

        if (!(m->state & MS_RESENT) && pred(m, arg)) {
            relay_msg_unlink(&s->pend_head, &s->pend_tail, m);
            if (relay_window_remove(&s->win, m->len) < 0 && s->hooks->window)
                s->hooks->window(s, -1);
            free(m);
            n++;
        }
        m = next;
    }
    return n;
}

/* A PUBLISH from the broker. Returns 1 when it must wait (held-message cap reached, 3.x). */
static int on_publish(struct relay_session *s, const uint8_t *buf, size_t len, uint64_t now_ms)
{
    struct mqc_publish p;
    struct relay_in_ref ref = {0, 0};
    struct mqc_prop prop;
    int rc;

    rc = mqc_decode_publish(buf, len, s->cfg->version, &p);
    if (rc != MQC_OK)
        return peer_error(s, rc, "bad PUBLISH", now_ms);
    /* we advertise no Topic Alias Maximum, so any alias is invalid [MQTT-3.3.2-9] */
    if (s->cfg->version == MQC_V5 &&
        mqc_props_find(&p.props, MQC_PROP_TOPIC_ALIAS, &prop) == MQC_OK)
        return peer_error(s, 0x94, "PUBLISH with a Topic Alias we did not allow", now_ms);
    if (p.qos) {
        uint16_t known = s->in_map[p.packet_id];

        if (known) {
            struct relay_in_slot *sl = &s->in[known - 1];

            /* the same message again before we acknowledged it: forward it once */
            if (sl->state == IN_PUBREL && p.qos == 2) {
                /* PUBREC was lost with the previous link? it is resent below */
                if (ctl_ack(s, MQC_PUBREC, p.packet_id, 0) != 0)
                    return -ENOMEM;
            }
            return 0;
        }
        if (s->in_used >= s->in_cap) {
            /* More held messages than our Receive Maximum. A 5.0 broker may not do this
             * [MQTT-3.3.4-9], but Mosquitto 2.0.11 does under some acknowledgement patterns
             * (seen: 84 outstanding by its own log against our 64; a bare client with a
             * Receive Maximum of 5 got 9), and a 3.x broker has no such limit at all. Closing
             * would only loop; instead the rest waits, unread, until slots free up. */
            if (s->cfg->version == MQC_V5 && !s->over_rm_said) {
                s->over_rm_said = true; /* once per link: it is the broker's habit, not news */
                relay_log_limited(s->log, now_ms, RELAY_LOG_WARN, s->who,
                                  "broker sends more unacknowledged QoS 1/2 messages than our "
                                  "Receive Maximum (%u): holding them until earlier ones are "
                                  "acknowledged",
                                  s->in_cap);
            }
            if (!s->rx_full) {
                s->rx_full = true;
                if (s->hooks->rx_full)
                    s->hooks->rx_full(s, true);
            }
            return 1;
        }
        uint16_t i = s->in_free[--s->in_nfree];
        struct relay_in_slot *sl = &s->in[i];

        sl->pid = p.packet_id;
        sl->qos = p.qos;
        sl->state = IN_WAIT;
        s->in_map[p.packet_id] = (uint16_t)(i + 1u);
        s->in_used++;
        s->in_order[(s->in_head + s->in_count) % s->in_cap] = i;
        s->in_count++;
        ref.slot = i + 1u;
        ref.gen = sl->gen;
    }
    int n = s->hooks->publish(s, &p, ref, now_ms);

    if (ref.slot) {
        struct relay_in_slot *sl = &s->in[ref.slot - 1];

        if (n < 0) {
            sl->pending = UINT32_MAX; /* held: never acknowledged on this link */
        } else {
            sl->pending = (uint32_t)n;
            if (n == 0) {
                sl->state = IN_DONE;
                in_drain(s);
            }
        }
    }
    return 0;
}

static int on_pubrel(struct relay_session *s, const struct mqc_ack *a, uint64_t now_ms)
{
    uint16_t known = s->in_map[a->packet_id];

    if (known) {
        struct relay_in_slot *sl = &s->in[known - 1];

        if (sl->state != IN_PUBREL)
            return peer_error(s, 0x82, "PUBREL before our PUBREC", now_ms);
        s->in_pubrel--;
        s->in_map[sl->pid] = 0;
        sl->state = IN_FREE;
        sl->gen++;
        s->in_free[s->in_nfree++] = (uint16_t)(known - 1u);
        s->in_used--;
        in_drain(s);
    }
    /* unknown: we sent PUBREC on an earlier link (or before a restart) and only did so once the
     * destination had the message, so the exchange is complete either way */
    return ctl_ack(s, MQC_PUBCOMP, a->packet_id, 0);
}

/* Handles one whole packet. 0 = consumed, 1 = deferred (leave it in the buffer), <0 = close. */
static int handle(struct relay_session *s, const uint8_t *buf, size_t len, uint64_t now_ms)
{
    uint8_t type = (uint8_t)(buf[0] >> 4);
    struct mqc_packet pkt;
    int rc;
    char what[96];

    s->packets_in++;
    if (type == MQC_PUBLISH) {
        if (s->state < RELAY_SS_SUBSCRIBING)
            return peer_error(s, 0x82, "PUBLISH before CONNACK", now_ms);
        return on_publish(s, buf, len, now_ms);
    }
    /* the commonest packet after PUBLISH: a 4-byte acknowledgement (code 0, no properties in
     * 5.0's short form), checked here without the general decoder; anything else, including
     * every malformed variant, goes the long way */
    if (len == 4 && buf[1] == 2 && type >= MQC_PUBACK && type <= MQC_PUBCOMP &&
        (buf[0] & 0x0Fu) == (type == MQC_PUBREL ? 0x02u : 0x00u) && (buf[2] | buf[3]) &&
        s->state >= RELAY_SS_SUBSCRIBING && s->state != RELAY_SS_CLOSING) {
        struct mqc_ack a = {.packet_id = (uint16_t)(buf[2] << 8 | buf[3])};

        return type == MQC_PUBREL ? on_pubrel(s, &a, now_ms) : on_ack(s, type, &a, now_ms);
    }
    rc = mqc_decode(buf, len, s->cfg->version, &pkt);
    if (rc != MQC_OK) {
        snprintf(what, sizeof(what), "bad %s", mqc_type_name(type));
        return peer_error(s, rc, what, now_ms);
    }
    if (s->state == RELAY_SS_CONNECTING && type != MQC_CONNACK) {
        snprintf(what, sizeof(what), "%s before CONNACK", mqc_type_name(type));
        return peer_error(s, 0x82, what, now_ms);
    }
    switch (type) {
    case MQC_CONNACK:
        if (s->state != RELAY_SS_CONNECTING)
            return peer_error(s, 0x82, "a second CONNACK", now_ms);
        return on_connack(s, &pkt.u.connack, now_ms);
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBCOMP:
        return on_ack(s, type, &pkt.u.ack, now_ms);
    case MQC_PUBREL:
        return on_pubrel(s, &pkt.u.ack, now_ms);
    case MQC_SUBACK:
        return on_suback(s, &pkt.u.suback, now_ms);
    case MQC_UNSUBACK: {
        uint16_t idx = (uint16_t)(pkt.u.suback.packet_id - SUB_PID_BASE);

        if (pkt.u.suback.packet_id < SUB_PID_BASE || idx >= SUB_PID_COUNT ||
            s->subq[idx].n != UNSUB_MARK)
            return peer_error(s, 0x82, "UNSUBACK for an UNSUBSCRIBE we did not send", now_ms);
        s->subq[idx].n = 0;
        return 0;
    }
    case MQC_PINGRESP:
        s->ping_out = false;
        return 0;
    case MQC_DISCONNECT: {
        struct mqc_prop p;
        const char *reason = "";
        int rlen = 0;

        if (mqc_props_find(&pkt.u.reason.props, MQC_PROP_REASON_STRING, &p) == MQC_OK) {
            reason = (const char *)p.str.p;
            rlen = (int)p.str.len;
        }
        set_why(s, "broker sent DISCONNECT (reason 0x%02X%s%.*s)", pkt.u.reason.code,
                rlen ? ": " : "", rlen, reason);
        s->state = RELAY_SS_CLOSING; /* nothing more to send on this link */
        s->ctl_len = s->ctl_off = 0;
        return -ECONNRESET;
    }
    default:
        snprintf(what, sizeof(what), "%s from a broker", mqc_type_name(type));
        return peer_error(s, 0x82, what, now_ms);
    }
}

/* Processes whole packets from buf; *used says how many bytes were consumed. */
static int process(struct relay_session *s, const uint8_t *buf, size_t len, size_t *used,
                   uint64_t now_ms)
{
    size_t off = 0;
    int rc = 0;

    while (off < len && s->state != RELAY_SS_CLOSING && s->state != RELAY_SS_DOWN) {
        struct mqc_frame f;

        rc = mqc_frame_check(buf + off, len - off, s->cfg->max_packet_size, &f);
        if (rc == MQC_AGAIN) {
            rc = 0;
            break;
        }
        if (rc != MQC_OK) {
            rc = peer_error(s, rc, "bad packet header", now_ms);
            break;
        }
        rc = handle(s, buf + off, f.total, now_ms);
        if (rc == 1) {
            rc = 0;
            break;
        }
        if (rc < 0)
            break;
        off += f.total;
    }
    *used = off;
    return rc;
}

/* Processes the buffered bytes. PUBLISHes that must wait (held-message cap) stay in the buffer
 * in order, but the packets after them that are not PUBLISHes (acknowledgements, PINGRESP) are
 * handled and removed: an acknowledgement never waits behind a message we cannot take yet, so
 * two relays' worth of full windows cannot deadlock on each other. */
static int process_rx(struct relay_session *s, uint64_t now_ms)
{
    bool hold = s->rx_full;
    /* while holding, the front of the buffer is PUBLISHes already found to wait: start after
     * them instead of scanning (and moving) them again at every read */
    size_t rd = hold ? s->rx_kept : 0, w = rd;
    int rc = 0;

    while (rd < s->rx_len && s->state != RELAY_SS_CLOSING && s->state != RELAY_SS_DOWN) {
        struct mqc_frame f;
        bool keep = false;

        rc = mqc_frame_check(s->rx + rd, s->rx_len - rd, s->cfg->max_packet_size, &f);
        if (rc == MQC_AGAIN) {
            rc = 0;
            break;
        }
        if (rc != MQC_OK) {
            rc = peer_error(s, rc, "bad packet header", now_ms);
            break;
        }
        if (f.type == MQC_PUBLISH && hold) {
            keep = true;
        } else {
            rc = handle(s, s->rx + rd, f.total, now_ms);
            if (rc < 0)
                break;
            if (rc == 1) {
                keep = hold = true;
                rc = 0;
            }
        }
        if (keep) {
            if (w != rd)
                memmove(s->rx + w, s->rx + rd, f.total);
            w += f.total;
        }
        rd += f.total;
    }
    if (rc < 0)
        return rc;
    if (rd != w) {
        memmove(s->rx + w, s->rx + rd, s->rx_len - rd);
        s->rx_len = w + (s->rx_len - rd);
    }
    s->rx_kept = hold && s->rx_full ? w : 0;
    if (s->rx_len > RX_HARD_CAP) {
        set_why(s, "the broker sends more unacknowledged messages than receive_maximum (%u) "
                   "allows; closing to let it redeliver (raise receive_maximum?)",
                s->in_cap);
        relay_log(s->log, RELAY_LOG_WARN, s->who, "%s", s->why);
        return -ENOBUFS;
    }
    return 0;
}

int relay_session_feed(struct relay_session *s, const uint8_t *in, size_t n, uint64_t now_ms)
{
    size_t used = 0;
    int rc;

    if (s->state == RELAY_SS_DOWN || s->state == RELAY_SS_CLOSING)
        return 0; /* closing: what the broker still says no longer matters */
    s->in_feed = true;
    s->last_rx_ms = now_ms;
    if (s->rx_len == 0 && !s->rx_full) {
        /* common case: packets straight from the transport's buffer, no copy */
        rc = process(s, in, n, &used, now_ms);
        in += used;
        n -= used;
    } else {
        rc = 0;
    }
    if (rc == 0 && n) {
        if (grow(&s->rx, &s->rx_cap, s->rx_len + n) != 0) {
            s->in_feed = false;
            return -ENOMEM;
        }
        memcpy(s->rx + s->rx_len, in, n);
        s->rx_len += n;
        rc = process_rx(s, now_ms);
    }
    s->in_feed = false;
    return rc;
}

int relay_session_resume_rx(struct relay_session *s, uint64_t now_ms)
{
    int rc;

    if (s->in_feed || !s->rx_len || s->state == RELAY_SS_DOWN ||
        s->state == RELAY_SS_CLOSING)
        return 0;
    s->in_feed = true;
    rc = process_rx(s, now_ms);
    s->in_feed = false;
    return rc;
}

void relay_session_set_rx_paused(struct relay_session *s, bool paused)
{
    s->rx_paused = paused;
}

uint32_t relay_session_unacked(const struct relay_session *s)
{
    return s->win.inflight;
}

bool relay_session_needs_rx(const struct relay_session *s)
{
    return s->win.inflight > 0 || s->in_pubrel > 0;
}

/* ---- sending ------------------------------------------------------------------------------ */

bool relay_session_wants_write(const struct relay_session *s, uint64_t now_ms)
{
    if (s->state == RELAY_SS_DOWN)
        return false;
    if (s->tx_msg || s->ctl_off < s->ctl_len)
        return true;
    return may_publish(s, now_ms);
}

static void sent_whole(struct relay_session *s, struct relay_msg *m, uint64_t now_ms)
{
    if (m->qos == 0)
        finish_out(s, m, -1, now_ms); /* QoS 0 is delivered once written */
}

int relay_session_next_tx(struct relay_session *s, uint8_t *out, size_t cap, size_t *len,
                          uint64_t now_ms)
{
    size_t n = 0;

    *len = 0;
    if (s->state == RELAY_SS_DOWN)
        return 0;
    /* a PUBLISH larger than one write continues first: nothing may cut into it */
    if (s->tx_msg) {
        struct relay_msg *m = s->tx_msg;
        size_t k = m->len - s->tx_off;

        if (k > cap)
            k = cap;
        memcpy(out, m->data + s->tx_off, k);
        s->tx_off += (uint32_t)k;
        n = k;
        if (s->tx_off == m->len) {
            s->tx_msg = NULL;
            sent_whole(s, m, now_ms);
        }
    }
    if (!s->tx_msg && s->ctl_off < s->ctl_len) {
        size_t k = s->ctl_len - s->ctl_off;

        if (k > cap - n)
            k = cap - n;
        memcpy(out + n, s->ctl + s->ctl_off, k);
        s->ctl_off += k;
        n += k;
        if (s->ctl_off == s->ctl_len)
            s->ctl_off = s->ctl_len = 0;
    }
    while (!s->tx_msg && s->ctl_len == 0 && n < cap) {
        struct relay_msg *m = take_next(s, now_ms);
        size_t k;

        if (!m)
            break;
        k = m->len;
        if (k > cap - n) {
            k = cap - n;
            s->tx_msg = m;
            s->tx_off = (uint32_t)k;
        }
        memcpy(out + n, m->data, k);
        n += k;
        if (!s->tx_msg)
            sent_whole(s, m, now_ms);
    }
    if (n)
        s->last_tx_ms = now_ms;
    *len = n;
    return 0;
}

/* ---- timers ------------------------------------------------------------------------------- */

static uint64_t earliest(uint64_t a, uint64_t b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    return a < b ? a : b;
}

static uint64_t ping_due(const struct relay_session *s)
{
    /* a control packet at least every 3/4 of the keepalive, so the broker never waits the
     * whole interval [MQTT-3.1.2-23]; and a ping when the broker has been silent that long,
     * so a dead link is noticed even while we only send QoS 0 */
    uint64_t last = s->last_tx_ms < s->last_rx_ms ? s->last_tx_ms : s->last_rx_ms;

    return last + (uint64_t)s->keepalive * 750u;
}

uint64_t relay_session_deadline(const struct relay_session *s)
{
    uint64_t d = 0;

    switch (s->state) {
    case RELAY_SS_DOWN:
        return 0;
    case RELAY_SS_CLOSING:
        return s->closing_ms + CLOSE_FLUSH_MS;
    case RELAY_SS_CONNECTING:
        return s->link_open_ms + CONNACK_TIMEOUT_MS;
    default:
        break;
    }
    if (s->keepalive) {
        if (!s->ping_out)
            d = ping_due(s);
        else if (s->rx_paused)
            d = s->last_tx_ms + (uint64_t)s->keepalive * 750u;
        else
            d = s->ping_sent_ms + (uint64_t)s->keepalive * 1000u;
    }
    if (s->fl_head && s->cfg->ack_timeout_ms)
        d = earliest(d, s->fl_head->sent_ms + s->cfg->ack_timeout_ms);
    if (s->pend_head) {
        if (s->rate_ready_ms)
            d = earliest(d, s->rate_ready_ms);
        if (s->retry_ready_ms)
            d = earliest(d, s->retry_ready_ms);
    }
    return d;
}

int relay_session_tick(struct relay_session *s, uint64_t now_ms)
{
    switch (s->state) {
    case RELAY_SS_DOWN:
        return 0;
    case RELAY_SS_CLOSING:
        if (now_ms >= s->closing_ms + CLOSE_FLUSH_MS)
            return -ETIMEDOUT;
        return 0;
    case RELAY_SS_CONNECTING:
        if (now_ms >= s->link_open_ms + CONNACK_TIMEOUT_MS) {
            set_why(s, "no CONNACK within %u s", CONNACK_TIMEOUT_MS / 1000u);
            return -ETIMEDOUT;
        }
        return 0;
    default:
        break;
    }
    if (s->rate_ready_ms && now_ms >= s->rate_ready_ms)
        s->rate_ready_ms = 0;
    if (s->retry_ready_ms && now_ms >= s->retry_ready_ms)
        s->retry_ready_ms = 0;
    if (s->keepalive) {
        /* paused, we still ping (the broker must hear from us within the keepalive, and a
         * write is how a closed link shows), but we are not reading: no PINGRESP can arrive,
         * so none is missing */
        if (s->ping_out) {
            if (!s->rx_paused && now_ms >= s->ping_sent_ms + (uint64_t)s->keepalive * 1000u) {
                set_why(s, "no PINGRESP within %u s", s->keepalive);
                return -ETIMEDOUT;
            }
            if (s->rx_paused && now_ms >= s->last_tx_ms + (uint64_t)s->keepalive * 750u) {
                struct mqc_packet pkt = {.type = MQC_PINGREQ};

                if (ctl_put(s, &pkt) != 0)
                    return -ENOMEM;
            }
        } else if (now_ms >= ping_due(s)) {
            struct mqc_packet pkt = {.type = MQC_PINGREQ};

            if (ctl_put(s, &pkt) != 0)
                return -ENOMEM;
            s->ping_out = true;
            s->ping_sent_ms = now_ms;
        }
    }
    if (s->rx_paused)
        return 0; /* not reading: no acknowledgement can arrive, so none is missing */
    if (s->fl_head && s->cfg->ack_timeout_ms &&
        now_ms >= s->fl_head->sent_ms + s->cfg->ack_timeout_ms) {
        set_why(s, "no acknowledgement for packet id %u within %u ms: reconnecting to resend",
                s->fl_head->pid, s->cfg->ack_timeout_ms);
        return -ETIMEDOUT;
    }
    return 0;
}
