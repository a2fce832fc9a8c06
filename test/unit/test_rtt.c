/* test_rtt.c: a connection's round trip (session/rtt.c): the smoothed mean, the base (the lowest
 * recent sample, forgotten after two periods) and the window sized from it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "session/rtt.h"

static void nothing_measured(void **st)
{
    struct relay_rtt r;

    (void)st;
    relay_rtt_init(&r);
    assert_false(relay_rtt_known(&r));
    assert_int_equal(relay_rtt_base(&r), 0);
    assert_int_equal(relay_rtt_smoothed(&r), 0);
}

static void smoothed_and_base(void **st)
{
    struct relay_rtt r;

    (void)st;
    relay_rtt_init(&r);
    relay_rtt_sample(&r, 50, 1000);
    assert_true(relay_rtt_known(&r));
    assert_int_equal(relay_rtt_smoothed(&r), 50);
    assert_int_equal(relay_rtt_base(&r), 50);
    /* a queue in the broker: samples of 130 ms pull the mean up by an eighth each, the base
     * stays at the link's own 50 */
    relay_rtt_sample(&r, 130, 1100);
    assert_int_equal(relay_rtt_smoothed(&r), 60);
    for (int i = 0; i < 40; i++)
        relay_rtt_sample(&r, 130, 1200 + (uint64_t)i);
    assert_true(relay_rtt_smoothed(&r) >= 128);
    assert_int_equal(relay_rtt_base(&r), 50);
    assert_int_equal(r.last, 130);
}

static void base_forgets_old_samples(void **st)
{
    struct relay_rtt r;
    uint64_t t = 0;

    (void)st;
    relay_rtt_init(&r);
    relay_rtt_sample(&r, 2, t); /* a LAN, then the route moves to a satellite */
    t += RELAY_RTT_PERIOD_MS / 2;
    relay_rtt_sample(&r, 600, t);
    assert_int_equal(relay_rtt_base(&r), 2);
    t += RELAY_RTT_PERIOD_MS; /* a new period: the old one is still remembered */
    relay_rtt_sample(&r, 600, t);
    assert_int_equal(relay_rtt_base(&r), 2);
    t += RELAY_RTT_PERIOD_MS; /* two periods on: 2 ms is forgotten */
    relay_rtt_sample(&r, 600, t);
    assert_int_equal(relay_rtt_base(&r), 600);
    /* after a long silence both periods are forgotten at once */
    t += 5 * RELAY_RTT_PERIOD_MS;
    relay_rtt_sample(&r, 40, t);
    assert_int_equal(relay_rtt_base(&r), 40);
}

static void window_from_round_trip(void **st)
{
    (void)st;
    assert_int_equal(relay_rtt_window(0, 20, 4096), 20);
    assert_int_equal(relay_rtt_window(1, 20, 4096), 50);
    assert_int_equal(relay_rtt_window(50, 20, 4096), 2500);
    assert_int_equal(relay_rtt_window(100, 20, 4096), 4096);
    assert_int_equal(relay_rtt_window(100, 20, 10), 20); /* a cap under the floor: the floor */
}

/* The acknowledgement timeout (RFC 6298): 2 x smoothed + 4 x deviation, within floor and cap. */
static void ack_timeout(void **st)
{
    struct relay_rtt r;

    (void)st;
    relay_rtt_init(&r);
    assert_int_equal(relay_rtt_timeout(&r, 1000, 20000), 20000); /* no sample yet */
    relay_rtt_sample(&r, 100, 0);
    assert_int_equal(relay_rtt_smoothed(&r), 100);
    assert_int_equal(relay_rtt_timeout(&r, 100, 20000), 400); /* 200 + 4 x 50 */
    for (int i = 0; i < 100; i++)
        relay_rtt_sample(&r, 2, (uint64_t)i);
    assert_true(relay_rtt_smoothed(&r) <= 3);
    assert_int_equal(relay_rtt_timeout(&r, 1000, 20000), 1000); /* the floor */
    relay_rtt_sample(&r, 5000000, 200);                         /* absurd samples are clamped */
    assert_int_equal(relay_rtt_timeout(&r, 1000, 20000), 20000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing_measured),
        cmocka_unit_test(smoothed_and_base),
        cmocka_unit_test(base_forgets_old_samples),
        cmocka_unit_test(window_from_round_trip),
        cmocka_unit_test(ack_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
