/* rate.c: the pace of one connection (see rate.h). Pure arithmetic over now_ms. */
#include <string.h>

#include "session/rate.h"

const char *relay_pace_signal_name(enum relay_pace_signal s)
{
    static const char *const names[RELAY_PACE_SIG__COUNT] = {
        "disconnect_0x89", "disconnect_0x93", "disconnect_0x96", "disconnect_0x97",
        "ack_0x83",        "ack_0x97",        "missing_ack",     "ack_timeout"};

    return (unsigned)s < RELAY_PACE_SIG__COUNT ? names[s] : "unknown";
}

int relay_pace_disconnect_signal(uint8_t code)
{
    switch (code) {
    case 0x89:
        return RELAY_PACE_DISCONNECT_89;
    case 0x93:
        return RELAY_PACE_DISCONNECT_93;
    case 0x96:
        return RELAY_PACE_DISCONNECT_96;
    case 0x97:
        return RELAY_PACE_DISCONNECT_97;
    default:
        return -1;
    }
}

/* ---- the log: sends per slot over the last window ----------------------------------------- */

static void slog_reset(struct relay_slog *l)
{
    memset(l, 0, sizeof(*l));
}

/* Forgets the slots that are a whole window old at now_ms. */
static void slog_advance(struct relay_slog *l, uint64_t now_ms)
{
    uint64_t cur = now_ms / RELAY_PACE_SLOT_MS, d;

    if (cur <= l->slot)
        return;
    d = cur - l->slot;
    if (d >= RELAY_PACE_SLOTS) {
        memset(l->n, 0, sizeof(l->n));
        l->sum = 0;
    } else {
        for (uint64_t i = 1; i <= d; i++) {
            uint64_t *c = &l->n[(l->slot + i) % RELAY_PACE_SLOTS];

            l->sum -= *c;
            *c = 0;
        }
    }
    l->slot = cur;
}

static void slog_add(struct relay_slog *l, uint64_t amount)
{
    l->n[l->slot % RELAY_PACE_SLOTS] += amount;
    l->sum += amount;
}

/* When amount more fits under limit (or the log is empty, for an amount above the limit):
 * the time the oldest slots drop out. Only called when it does not fit now. */
static uint64_t slog_ready(const struct relay_slog *l, uint64_t amount, uint64_t limit)
{
    uint64_t left = l->sum;
    int64_t s0 = (int64_t)l->slot - (int64_t)RELAY_PACE_SLOTS + 1;

    for (int64_t s = s0; s <= (int64_t)l->slot; s++) {
        if (s >= 0)
            left -= l->n[(uint64_t)s % RELAY_PACE_SLOTS];
        if (left == 0 || left + amount <= limit)
            return (uint64_t)(s + (int64_t)RELAY_PACE_SLOTS) * RELAY_PACE_SLOT_MS;
    }
    return (l->slot + RELAY_PACE_SLOTS) * RELAY_PACE_SLOT_MS; /* not reached */
}

/* ---- the pace ----------------------------------------------------------------------------- */

void relay_pace_init(struct relay_pace *p, uint64_t msgs, uint64_t bytes)
{
    memset(p, 0, sizeof(*p));
    p->cap_msgs = msgs;
    p->cap_bytes = bytes;
}

void relay_pace_configure(struct relay_pace *p, uint64_t msgs, uint64_t bytes)
{
    p->cap_msgs = msgs; /* the lower of it and what was learned governs */
    p->cap_bytes = bytes;
}

void relay_pace_link(struct relay_pace *p, uint64_t now_ms)
{
    p->link_ms = now_ms;
    p->win_k = 0;
    p->win_n = 0;
    p->prev_n = 0;
    p->win_end_ms = now_ms + 1000u;
    slog_reset(&p->msgs);
    slog_reset(&p->bytes);
}

uint64_t relay_pace_limit(const struct relay_pace *p)
{
    if (!p->learned)
        return p->cap_msgs;
    if (!p->cap_msgs)
        return p->learned;
    return p->learned < p->cap_msgs ? p->learned : p->cap_msgs;
}

/* Additive increase: after a quiet period, 2 % a second up to the estimate of the broker's
 * count (5 % when there is none); after a long quiet one, beyond it. Back at the configured
 * limit (or past any sensible pace when none is configured), what was learned is forgotten. */
static void raise_pace(struct relay_pace *p, uint64_t now_ms)
{
    uint64_t step;

    if (!p->learned || now_ms < p->last_signal_ms + RELAY_PACE_QUIET_MS ||
        now_ms < p->raised_ms + RELAY_PACE_RAISE_MS)
        return;
    p->raised_ms = now_ms;
    if (p->ceiling && p->learned >= p->ceiling) {
        if (now_ms >= p->last_signal_ms + RELAY_PACE_PROBE_MS)
            p->ceiling = 0;
        return;
    }
    /* careful toward a known count (2 %), quicker without one (5 %) */
    step = p->learned / (p->ceiling ? 50u : 20u);
    p->learned += step ? step : 1u;
    if (p->ceiling && p->learned > p->ceiling)
        p->learned = p->ceiling;
    if ((p->cap_msgs && p->learned >= p->cap_msgs) || p->learned > RELAY_PACE_UNLIMITED) {
        p->learned = 0;
        p->ceiling = 0;
    }
}

static uint64_t ceil_ms(uint64_t us)
{
    return (us + 999u) / 1000u;
}

/* Counts a send in the broker's (estimated) current second; *nth: sends before it there. */
static void count_second(struct relay_pace *p, uint64_t now_ms, uint32_t *nth)
{
    if (now_ms >= p->win_end_ms) { /* a new second (no division per send) */
        uint64_t k = now_ms > p->link_ms ? (now_ms - p->link_ms) / 1000u : 0;

        p->prev_n = k == p->win_k + 1u ? p->win_n : 0;
        p->win_k = k;
        p->win_n = 0;
        p->win_end_ms = p->link_ms + (k + 1u) * 1000u;
    }
    if (nth)
        *nth = p->win_n > UINT32_MAX - 1u ? UINT32_MAX - 1u : (uint32_t)p->win_n;
    p->win_n++;
}

/* Sends lately, for a verdict with no limit to lower: the busier of this second and the last. */
static uint64_t sends_lately(const struct relay_pace *p, uint64_t now_ms)
{
    if (now_ms >= p->win_end_ms + 1000u)
        return 0;
    if (now_ms >= p->win_end_ms)
        return p->win_n;
    return p->win_n > p->prev_n ? p->win_n : p->prev_n;
}

/* relay_pace_take() with a limit of some kind. */
static bool __attribute__((noinline))
take_limited(struct relay_pace *p, uint64_t len, uint64_t now_ms, uint64_t *ready_ms, uint32_t *nth)
{
    const uint64_t now_us = now_ms * 1000u, win_us = (uint64_t)RELAY_PACE_WINDOW_MS * 1000u;
    uint64_t lim, iv_m = 0, iv_b = 0, ready = 0;
    bool wait = false;

    if (p->learned)
        raise_pace(p, now_ms);
    lim = relay_pace_limit(p);
    if (lim) {
        uint64_t tol;

        slog_advance(&p->msgs, now_ms);
        iv_m = win_us / lim;
        /* a few messages; at high rates at least 2 ms' worth, or millisecond ticks (now_ms)
         * would lose the spacing's fractions */
        tol = RELAY_PACE_BURST * iv_m < 2000u ? 2000u : RELAY_PACE_BURST * iv_m;
        if (p->tat_m_us > now_us + tol) {
            wait = true;
            ready = ceil_ms(p->tat_m_us - tol);
        }
        if (p->msgs.sum + 1u > lim) {
            uint64_t r = slog_ready(&p->msgs, 1u, lim);

            wait = true;
            ready = r > ready ? r : ready;
        }
    }
    if (p->cap_bytes) {
        const uint64_t tol = RELAY_PACE_BYTES_BURST_MS * 1000u;

        slog_advance(&p->bytes, now_ms);
        iv_b = len * win_us / p->cap_bytes;
        if (p->tat_b_us > now_us + tol) {
            wait = true;
            ready = ceil_ms(p->tat_b_us - tol) > ready ? ceil_ms(p->tat_b_us - tol) : ready;
        }
        if (p->bytes.sum && p->bytes.sum + len > p->cap_bytes) {
            uint64_t r = slog_ready(&p->bytes, len, p->cap_bytes);

            wait = true;
            ready = r > ready ? r : ready;
        }
    }
    if (wait) {
        if (ready_ms)
            *ready_ms = ready > now_ms ? ready : now_ms + 1u;
        p->behind = true;
        return false;
    }
    if (lim) {
        /* the spacing restarts from now after an idle spell; while messages wait for it, time
         * lost to a late wake-up (a busy machine) is made up, up to RELAY_PACE_CATCHUP_MS
         * behind, but only while the window holds no more than the sustained pace (limit x
         * 1000 / WINDOW): making up never eats the margin left for bunching on the way */
        if (p->tat_m_us < now_us &&
            !(p->behind && p->tat_m_us + RELAY_PACE_CATCHUP_MS * 1000u >= now_us &&
              p->msgs.sum < lim * 1000u / RELAY_PACE_WINDOW_MS)) {
            p->tat_m_us = now_us;
            p->behind = false;
        }
        p->tat_m_us += iv_m;
        slog_add(&p->msgs, 1u);
    }
    if (p->cap_bytes) {
        p->tat_b_us = (p->tat_b_us > now_us ? p->tat_b_us : now_us) + iv_b;
        slog_add(&p->bytes, len);
    }
    count_second(p, now_ms, nth);
    return true;
}

bool relay_pace_take(struct relay_pace *p, uint64_t len, uint64_t now_ms, uint64_t *ready_ms,
                     uint32_t *nth)
{
    if (p->learned || p->cap_msgs || p->cap_bytes)
        return take_limited(p, len, now_ms, ready_ms, nth);
    /* no limit: nothing to wait for or to log; only the count a verdict is judged by */
    count_second(p, now_ms, nth);
    return true;
}

/* A signal that says how many the broker took in its second: its rate count (0x96), or a 3.x
 * silent drop past it. The others (busy, quota, receive maximum) only say "slower". */
static bool counts(enum relay_pace_signal sig)
{
    return sig == RELAY_PACE_DISCONNECT_96 || sig == RELAY_PACE_NO_ACK ||
           sig == RELAY_PACE_ACK_TIMEOUT;
}

bool relay_pace_signal(struct relay_pace *p, enum relay_pace_signal sig, uint32_t nth,
                       uint64_t sent_ms, uint64_t now_ms)
{
    uint64_t cur, nw;

    if ((unsigned)sig >= RELAY_PACE_SIG__COUNT)
        return false;
    if (p->last_signal_ms && sent_ms <= p->last_signal_ms)
        return false; /* sent before we slowed down: the same verdict again */
    cur = relay_pace_limit(p);
    if (counts(sig) && nth != UINT32_MAX) {
        if (nth == 0)
            return false; /* the first of its second: not our pace that is the matter */
        if (sig == RELAY_PACE_ACK_TIMEOUT && nth < RELAY_PACE_SLOWER_MIN)
            return false; /* a silence after a trickle: a broker that stalled, not a rate */
        if (!cur) {
            /* no limit yet: the broker's count is the first estimate (the sends in our log may
             * be gone already: BifroMQ delays its verdict by up to 5 s) */
            nw = nth;
            p->ceiling = nth;
        } else {
            /* at least 10 % less than the pace we were at (multiplicative decrease), and no
             * more than the broker took in its second before it said no; rising stops just
             * under where it tripped (a trip at our own pace, bunching on the way, creeps
             * down by one each time instead of cycling) */
            nw = cur - cur / 10u;
            if (nw >= cur && cur > 1)
                nw = cur - 1u;
            if (nth < nw)
                nw = nth;
            /* a timeout may be a broker that stalled, not one that dropped: a quarter less at
             * most (repeated, it goes on down) */
            if (sig == RELAY_PACE_ACK_TIMEOUT && nw < cur - cur / 4u)
                nw = cur - cur / 4u;
            if (!nw)
                nw = 1;
            if (nw >= cur)
                return false; /* at one a second already */
            p->ceiling = nth < cur ? nth : cur - 1u;
        }
    } else {
        /* "slower", no count: a quarter less than the pace we were at (the limit, or with none
         * what we sent lately), not below RELAY_PACE_SLOWER_MIN (these verdicts come from a
         * busy broker as much as from our pace: the busy back-off answers them too); rising
         * again after the quiet period, with no ceiling */
        uint64_t base = cur ? cur : sends_lately(p, now_ms);

        if (base <= RELAY_PACE_SLOWER_MIN)
            return false; /* a trickle already: not our pace that is the matter */
        nw = base - base / 4u;
        if (nw < RELAY_PACE_SLOWER_MIN)
            nw = RELAY_PACE_SLOWER_MIN;
        p->ceiling = 0;
    }
    if (!nw)
        nw = 1;
    if (p->ceiling && p->ceiling < nw)
        p->ceiling = nw;
    p->learned = nw;
    p->last_signal_ms = now_ms;
    p->raised_ms = now_ms;
    p->signals[sig]++;
    return true;
}
