/*
 * test_rate.c: the pace (session/rate.h). The guarantee is checked as a property: random send
 * attempts (random gaps, bursts of attempts, random sizes and limits, new links at random),
 * then every window of RELAY_PACE_WINDOW_MS, in millisecond resolution, wherever it starts,
 * holds at most the limit of one link's sends; and the pace still delivers close to the
 * limit when saturated. Then the learning: signals, the estimate of the broker's count, the
 * additive increase, probing, and the round-trip estimator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "session/rate.h"

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return n ? rng % n : 0;
}

struct sent {
    uint64_t t;
    uint64_t len;
    uint32_t link;
};

/* The most of one link's sends (count, or bytes when bytes) in any window [a, a + w). */
static uint64_t max_in_window(const struct sent *v, size_t n, uint64_t w, int bytes)
{
    uint64_t best = 0, cur = 0;
    size_t lo = 0;

    for (size_t hi = 0; hi < n; hi++) {
        if (hi > 0 && v[hi].link != v[hi - 1].link) {
            lo = hi;
            cur = 0;
        }
        cur += bytes ? v[hi].len : 1;
        while (v[hi].t - v[lo].t >= w) {
            cur -= bytes ? v[lo].len : 1;
            lo++;
        }
        if (cur > best)
            best = cur;
    }
    return best;
}

/* A run of random attempts against a pace limited to msgs per second (and bytes); returns the
 * sends. */
static struct sent *run(struct relay_pace *p, uint64_t ms, uint64_t len_max, int links,
                        size_t *n_out)
{
    size_t cap = 1024, n = 0;
    struct sent *v = malloc(cap * sizeof(*v));
    uint32_t link = 0;
    uint64_t t = 1000 + rnd(5000), end = t + ms;

    assert_non_null(v);
    relay_pace_link(p, t);
    while (t < end) {
        uint64_t tries = 1 + rnd(6), ready = 0;

        if (links && rnd(4000) == 0) {
            link++;
            relay_pace_link(p, t);
        }
        for (uint64_t i = 0; i < tries; i++) {
            uint64_t len = 1 + rnd(len_max);
            uint32_t nth = 0;

            if (!relay_pace_take(p, len, t, &ready, &nth)) {
                assert_true(ready > t);
                break;
            }
            if (n == cap) {
                cap *= 2;
                v = realloc(v, cap * sizeof(*v));
                assert_non_null(v);
            }
            v[n++] = (struct sent){t, len, link};
        }
        /* mostly eager (the next millisecond, or when told), sometimes idle a while */
        switch (rnd(10)) {
        case 0:
            t += rnd(2000);
            break;
        case 1:
        case 2:
            t = ready > t ? ready : t + 1;
            break;
        default:
            t += 1 + rnd(3);
        }
    }
    *n_out = n;
    return v;
}

static void property_messages(void **st)
{
    (void)st;
    for (int round = 0; round < 60; round++) {
        struct relay_pace *p = malloc(sizeof(*p));
        uint64_t lim = round < 20 ? 1 + rnd(20) : round < 40 ? 150 + rnd(100) : 1 + rnd(3000);
        size_t n;
        struct sent *v;

        assert_non_null(p);
        relay_pace_init(p, lim, 0);
        v = run(p, 20000, 1000, 1, &n);
        assert_true(n > 0);
        /* the guarantee, over the margin window and so over every one-second window */
        assert_true(max_in_window(v, n, RELAY_PACE_WINDOW_MS, 0) <= lim);
        free(v);
        free(p);
    }
}

static void property_bytes(void **st)
{
    (void)st;
    for (int round = 0; round < 40; round++) {
        struct relay_pace *p = malloc(sizeof(*p));
        uint64_t blim = 1000 + rnd(600000), len_max = 1 + rnd(blim / 4);
        size_t n;
        struct sent *v;

        assert_non_null(p);
        relay_pace_init(p, round % 2 ? 0 : 100 + rnd(200), blim);
        v = run(p, 20000, len_max, 1, &n);
        assert_true(n > 0);
        assert_true(max_in_window(v, n, RELAY_PACE_WINDOW_MS, 1) <= blim);
        if (round % 2 == 0)
            assert_true(max_in_window(v, n, RELAY_PACE_WINDOW_MS, 0) <= p->cap_msgs);
        free(v);
        free(p);
    }
    /* a single message over the byte limit still goes, alone in its window */
    struct relay_pace p;
    uint64_t ready;

    relay_pace_init(&p, 0, 100);
    relay_pace_link(&p, 10);
    assert_true(relay_pace_take(&p, 500, 10, &ready, NULL));
    assert_false(relay_pace_take(&p, 1, 11, &ready, NULL));
    assert_true(ready >= 10 + RELAY_PACE_WINDOW_MS);
}

/* Saturated, the pace delivers what it promises: the limit per window, less a slot's rounding. */
static void saturated_throughput(void **st)
{
    (void)st;
    static const uint64_t lims[] = {1, 10, 199, 200, 1000, 5000};

    for (size_t i = 0; i < sizeof(lims) / sizeof(lims[0]); i++) {
        struct relay_pace p;
        uint64_t t = 5000, ready, n = 0, secs = 60;

        relay_pace_init(&p, lims[i], 0);
        relay_pace_link(&p, t);
        while (t < 5000 + secs * 1000) {
            if (relay_pace_take(&p, 100, t, &ready, NULL))
                n++;
            else
                t = ready;
        }
        /* at least lim per (window + a slot), whatever rounding does */
        double floor = (double)lims[i] * (double)(secs * 1000) /
                           (double)(RELAY_PACE_WINDOW_MS + RELAY_PACE_SLOT_MS) -
                       (double)lims[i];
        if ((double)n < floor)
            fail_msg("limit %llu: %llu sent in %llu s, expected at least %.0f",
                     (unsigned long long)lims[i], (unsigned long long)n, (unsigned long long)secs,
                     floor);
        assert_true(n <= lims[i] * (secs * 1000 / RELAY_PACE_WINDOW_MS + 1));
    }
}

/* A new link: a burst of a few, never a second's worth; then spaced. */
static void burst_is_a_few(void **st)
{
    struct relay_pace p;
    uint64_t ready;
    int n = 0;

    (void)st;
    relay_pace_init(&p, 200, 0);
    relay_pace_link(&p, 1000);
    while (relay_pace_take(&p, 10, 1000, &ready, NULL))
        n++;
    assert_int_equal(n, RELAY_PACE_BURST + 1);
    assert_true(ready > 1000 && ready <= 1000 + 6);
    /* in the first 100 ms: the burst and the spacing (100 / 5.125 ms), far from 200 */
    for (uint64_t t = 1001; t < 1100; t++)
        while (relay_pace_take(&p, 10, t, &ready, NULL))
            n++;
    assert_true(n <= (int)RELAY_PACE_BURST + 1 + 20);
    /* unlimited: everything goes */
    relay_pace_init(&p, 0, 0);
    relay_pace_link(&p, 0);
    for (int i = 0; i < 100000; i++)
        assert_true(relay_pace_take(&p, 1000, 0, &ready, NULL));
}

/* nth counts this link's sends in the broker's (estimated) current second. */
static void nth_counts_the_broker_second(void **st)
{
    struct relay_pace p;
    uint64_t ready;
    uint32_t nth = 99;

    (void)st;
    relay_pace_init(&p, 0, 0);
    relay_pace_link(&p, 500);
    for (uint32_t i = 0; i < 300; i++) {
        assert_true(relay_pace_take(&p, 1, 500 + i, &ready, &nth));
        assert_int_equal(nth, i);
    }
    assert_true(relay_pace_take(&p, 1, 1500, &ready, &nth)); /* the next second */
    assert_int_equal(nth, 0);
    relay_pace_link(&p, 1700); /* a new connection: a new count */
    assert_true(relay_pace_take(&p, 1, 1700, &ready, &nth));
    assert_int_equal(nth, 0);
}

static void signals_lower_and_learn(void **st)
{
    struct relay_pace p;
    uint64_t ready, t = 10000;
    uint32_t nth;

    (void)st;
    /* unlimited, the broker refuses the 201st of its second: the pace is its count */
    relay_pace_init(&p, 0, 0);
    relay_pace_link(&p, t);
    for (int i = 0; i < 400; i++)
        assert_true(relay_pace_take(&p, 10, t + 100, &ready, &nth));
    assert_true(relay_pace_signal(&p, RELAY_PACE_DISCONNECT_96, 200, t + 100, t + 200));
    assert_int_equal(relay_pace_limit(&p), 200);
    assert_int_equal(p.signals[RELAY_PACE_DISCONNECT_96], 1);
    /* the same verdict about a message sent before the decrease changes nothing */
    assert_false(relay_pace_signal(&p, RELAY_PACE_DISCONNECT_96, 150, t + 150, t + 300));
    assert_int_equal(relay_pace_limit(&p), 200);
    assert_int_equal(p.signals[RELAY_PACE_DISCONNECT_96], 1);
    /* the broker lowers its limit to 50: refused at its 51st */
    assert_true(relay_pace_signal(&p, RELAY_PACE_DISCONNECT_96, 50, t + 400, t + 500));
    assert_int_equal(relay_pace_limit(&p), 50);
    /* a refusal at about our own pace (bunching on the way): at least 10 % less */
    assert_true(relay_pace_signal(&p, RELAY_PACE_DISCONNECT_96, 50, t + 600, t + 700));
    assert_int_equal(relay_pace_limit(&p), 45);
    /* "slower" (busy, quota): a quarter less, and no ceiling */
    assert_true(relay_pace_signal(&p, RELAY_PACE_ACK_97, 40, t + 750, t + 750));
    assert_int_equal(relay_pace_limit(&p), 34);
    assert_int_equal(p.ceiling, 0);
    /* a count with nothing to estimate from (QoS 0, nothing in flight): a quarter less */
    assert_true(relay_pace_signal(&p, RELAY_PACE_DISCONNECT_96, UINT32_MAX, t + 800, t + 800));
    assert_int_equal(relay_pace_limit(&p), 26);
    /* "slower" verdicts stop at 20 a second */
    for (int i = 0; i < 20; i++)
        relay_pace_signal(&p, RELAY_PACE_NO_ACK, UINT32_MAX, t + 900 + i, t + 900 + i);
    assert_int_equal(relay_pace_limit(&p), 20);
    assert_int_equal(p.signals[RELAY_PACE_NO_ACK], 1);
    /* counts take it lower, never below one a second */
    for (int i = 0; i < 40; i++)
        relay_pace_signal(&p, RELAY_PACE_NO_ACK, 1, t + 950 + i, t + 950 + i);
    assert_int_equal(relay_pace_limit(&p), 1);
    assert_int_equal(p.signals[RELAY_PACE_NO_ACK], 2);
    /* "slower" with no limit yet: from what we sent in the last window (20 at least) */
    relay_pace_init(&p, 0, 0);
    relay_pace_link(&p, t);
    assert_false(relay_pace_signal(&p, RELAY_PACE_ACK_83, 5, t, t)); /* we sent nothing */
    for (int i = 0; i < 100; i++)
        assert_true(relay_pace_take(&p, 10, t + i, &ready, &nth));
    assert_true(relay_pace_signal(&p, RELAY_PACE_ACK_83, 5, t + 50, t + 100));
    assert_int_equal(relay_pace_limit(&p), 75);
    relay_pace_init(&p, 0, 0);
    relay_pace_link(&p, t);
    assert_true(relay_pace_take(&p, 10, t, &ready, &nth));
    assert_false(relay_pace_signal(&p, RELAY_PACE_ACK_97, 5, t, t + 1)); /* a trickle */
    assert_int_equal(relay_pace_limit(&p), 0);
    /* a count signal for the first message of the broker's second is no verdict on the pace */
    assert_false(relay_pace_signal(&p, RELAY_PACE_DISCONNECT_96, 0, t + 5, t + 5));
    /* with a configured limit the learned one never exceeds it */
    relay_pace_init(&p, 100, 0);
    relay_pace_link(&p, t);
    assert_true(relay_pace_signal(&p, RELAY_PACE_DISCONNECT_96, 300, t, t));
    assert_int_equal(relay_pace_limit(&p), 90);
    assert_string_equal(relay_pace_signal_name(RELAY_PACE_DISCONNECT_96), "disconnect_0x96");
    assert_string_equal(relay_pace_signal_name(RELAY_PACE_NO_ACK), "missing_ack");
    assert_int_equal(relay_pace_disconnect_signal(0x96), RELAY_PACE_DISCONNECT_96);
    assert_int_equal(relay_pace_disconnect_signal(0x93), RELAY_PACE_DISCONNECT_93);
    assert_int_equal(relay_pace_disconnect_signal(0x8E), -1);
    assert_int_equal(relay_pace_disconnect_signal(0x00), -1);
}

static void additive_increase_and_probe(void **st)
{
    struct relay_pace p;
    uint64_t ready, t = 1000;

    (void)st;
    relay_pace_init(&p, 0, 0);
    relay_pace_link(&p, t);
    assert_true(relay_pace_take(&p, 1, t, &ready, NULL));
    assert_true(relay_pace_signal(&p, RELAY_PACE_DISCONNECT_96, 200, t, t));
    assert_int_equal(relay_pace_limit(&p), 200);
    /* a trip at our own pace of 200 (bunching on the way): 180, rising again up to 199 */
    assert_true(relay_pace_signal(&p, RELAY_PACE_DISCONNECT_96, 200, t + 10, t + 10));
    assert_int_equal(relay_pace_limit(&p), 180);
    /* quiet for less than RELAY_PACE_QUIET_MS: nothing moves */
    relay_pace_take(&p, 1, t + 10 + RELAY_PACE_QUIET_MS - 1, &ready, NULL);
    assert_int_equal(relay_pace_limit(&p), 180);
    /* then 2 % a second, up to the ceiling, not beyond */
    uint64_t last = 180;
    for (uint64_t s = 0; s < 60; s++) {
        relay_pace_take(&p, 1, t + 10 + RELAY_PACE_QUIET_MS + s * RELAY_PACE_RAISE_MS, &ready,
                        NULL);
        assert_true(relay_pace_limit(&p) >= last);
        assert_true(relay_pace_limit(&p) <= 199);
        last = relay_pace_limit(&p);
    }
    assert_int_equal(relay_pace_limit(&p), 199);
    /* after RELAY_PACE_PROBE_MS without a signal: above it */
    uint64_t t2 = t + 10 + RELAY_PACE_PROBE_MS;
    relay_pace_take(&p, 1, t2, &ready, NULL); /* the ceiling is forgotten */
    relay_pace_take(&p, 1, t2 + RELAY_PACE_RAISE_MS, &ready, NULL);
    assert_true(relay_pace_limit(&p) > 199);
    /* with a configured limit: rising stops at the estimate; after the probe period it goes on
     * to the configured limit, which then governs again */
    relay_pace_init(&p, 150, 0);
    relay_pace_link(&p, t);
    assert_true(relay_pace_signal(&p, RELAY_PACE_DISCONNECT_96, 140, t, t));
    assert_int_equal(relay_pace_limit(&p), 135);
    for (uint64_t s = 0; s < 30; s++)
        relay_pace_take(&p, 1, t + RELAY_PACE_QUIET_MS + s * RELAY_PACE_RAISE_MS, &ready, NULL);
    assert_int_equal(relay_pace_limit(&p), 140);
    for (uint64_t s = 0; s < 30; s++)
        relay_pace_take(&p, 1, t + RELAY_PACE_PROBE_MS + s * RELAY_PACE_RAISE_MS, &ready, NULL);
    assert_int_equal(relay_pace_limit(&p), 150);
    assert_int_equal(p.learned, 0);
    /* reload: a lower configured limit governs, the learned one stays under it */
    relay_pace_init(&p, 0, 0);
    assert_true(relay_pace_signal(&p, RELAY_PACE_DISCONNECT_96, 200, t, t));
    relay_pace_configure(&p, 100, 0);
    assert_int_equal(relay_pace_limit(&p), 100);
    relay_pace_configure(&p, 300, 0);
    assert_int_equal(relay_pace_limit(&p), 200); /* what was learned is kept */
}

/* After a signal the lower pace is kept by the log and the spacing at once. */
static void lower_pace_takes_effect(void **st)
{
    struct relay_pace *p = malloc(sizeof(*p));
    struct sent *v = malloc(4000 * sizeof(*v));
    size_t n = 0;
    uint64_t ready, t = 2000;

    (void)st;
    assert_non_null(p);
    assert_non_null(v);
    relay_pace_init(p, 0, 0);
    relay_pace_link(p, t);
    assert_true(relay_pace_signal(p, RELAY_PACE_DISCONNECT_96, 50, t, t));
    relay_pace_link(p, t + 100); /* reconnected */
    for (t = 2100; t < 2100 + 10000 && n < 4000; t++)
        while (relay_pace_take(p, 1, t, &ready, NULL))
            v[n++] = (struct sent){t, 1, 0};
    assert_true(max_in_window(v, n, 1000, 0) <= 50);
    assert_true(n >= 50 * 9);
    free(v);
    free(p);
}

/* Backlogged, with every wake-up 30 ms late (a busy machine): the time lost is made up, the
 * pace delivers what it promises, and no window goes over the limit. */
static void late_wakeups_made_up(void **st)
{
    struct relay_pace *p = malloc(sizeof(*p));
    struct sent *v = malloc(8000 * sizeof(*v));
    uint64_t t = 3000, ready = 0;
    size_t n = 0;

    (void)st;
    assert_non_null(p);
    assert_non_null(v);
    relay_pace_init(p, 200, 0);
    relay_pace_link(p, t);
    while (t < 3000 + 20000 && n < 8000) {
        while (relay_pace_take(p, 10, t, &ready, NULL))
            v[n++] = (struct sent){t, 10, 0};
        t = ready + 30;
    }
    assert_true(max_in_window(v, n, RELAY_PACE_WINDOW_MS, 0) <= 200);
    if ((double)n < 0.95 * 20.0 * 200.0 * 1000.0 / RELAY_PACE_WINDOW_MS)
        fail_msg("%zu sent in 20 s with late wake-ups", n);
    free(v);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(property_messages),
        cmocka_unit_test(property_bytes),
        cmocka_unit_test(saturated_throughput),
        cmocka_unit_test(burst_is_a_few),
        cmocka_unit_test(nth_counts_the_broker_second),
        cmocka_unit_test(signals_lower_and_learn),
        cmocka_unit_test(additive_increase_and_probe),
        cmocka_unit_test(lower_pace_takes_effect),
        cmocka_unit_test(late_wakeups_made_up),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
