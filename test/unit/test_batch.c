/* test_batch.c: the read-batching policy (core/batch.c): when to wait, how long, and the
 * hysteresis of the CPU-contention test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/batch.h"

/* Feeds cumulative samples: each step the process ran run_ns more and waited wait_ns more. */
static void step(struct relay_batch *b, uint64_t *run, uint64_t *wait, uint64_t dr, uint64_t dw)
{
    *run += dr;
    *wait += dw;
    relay_batch_sample(b, true, *run, *wait);
}

static void off_at_zero(void **st)
{
    struct relay_batch b;
    uint64_t run = 0, wait = 0;

    (void)st;
    relay_batch_init(&b, 0);
    step(&b, &run, &wait, 1000000, 0);
    step(&b, &run, &wait, 1000000, 1000000);
    assert_true(b.contended);
    assert_false(relay_batch_may_wait(&b, 100, false));
    assert_int_equal(relay_batch_wait_us(&b, 100, false), 0);
}

static void light_load_and_full_reads_never_wait(void **st)
{
    struct relay_batch b;
    uint64_t run = 0, wait = 0;

    (void)st;
    relay_batch_init(&b, 300);
    step(&b, &run, &wait, 1000000, 0);
    step(&b, &run, &wait, 1000000, 500000);
    assert_true(b.contended);
    assert_int_equal(relay_batch_wait_us(&b, RELAY_BATCH_MIN_PACKETS - 1, false), 0);
    assert_false(relay_batch_may_wait(&b, RELAY_BATCH_MIN_PACKETS - 1, false));
    assert_int_equal(relay_batch_wait_us(&b, 50, true), 0); /* a read filled the buffer */
    assert_int_equal(relay_batch_wait_us(&b, RELAY_BATCH_MIN_PACKETS, false),
                     RELAY_BATCH_MIN_PACKETS * RELAY_BATCH_US_PER_PACKET);
}

static void wait_grows_with_packets_up_to_the_limit(void **st)
{
    struct relay_batch b;
    uint64_t run = 0, wait = 0;

    (void)st;
    relay_batch_init(&b, 300);
    step(&b, &run, &wait, 1000000, 0);
    step(&b, &run, &wait, 1000000, 1000000);
    /* RELAY_BATCH_US_PER_PACKET (50) a packet, up to the limit */
    assert_int_equal(relay_batch_wait_us(&b, 1, false), 50);
    assert_int_equal(relay_batch_wait_us(&b, 5, false), 250);
    assert_int_equal(relay_batch_wait_us(&b, 6, false), 300);
    assert_int_equal(relay_batch_wait_us(&b, 1000, false), 300);
    relay_batch_init(&b, 1000);
    step(&b, &run, &wait, 1000000, 0);
    step(&b, &run, &wait, 1000000, 1000000);
    assert_int_equal(relay_batch_wait_us(&b, 19, false), 950);
    assert_int_equal(relay_batch_wait_us(&b, 20, false), 1000);
}

static void contention_has_hysteresis(void **st)
{
    struct relay_batch b;
    uint64_t run = 0, wait = 0;

    (void)st;
    relay_batch_init(&b, 300);
    step(&b, &run, &wait, 1000, 900); /* the first sample has nothing to compare with */
    assert_false(b.contended);
    step(&b, &run, &wait, 1000, 200); /* under a quarter: still off */
    assert_false(b.contended);
    assert_int_equal(relay_batch_wait_us(&b, 10, false), 0);
    step(&b, &run, &wait, 1000, 250); /* a quarter: on */
    assert_true(b.contended);
    step(&b, &run, &wait, 1000, 70); /* over a sixteenth: stays on */
    assert_true(b.contended);
    step(&b, &run, &wait, 1000, 60); /* under a sixteenth: off */
    assert_false(b.contended);
    step(&b, &run, &wait, 1000, 200); /* off until a quarter again */
    assert_false(b.contended);
    step(&b, &run, &wait, 0, 500); /* no run time: no verdict, off */
    assert_false(b.contended);
}

static void unreadable_sample_means_not_contended(void **st)
{
    struct relay_batch b;
    uint64_t run = 0, wait = 0;

    (void)st;
    relay_batch_init(&b, 300);
    step(&b, &run, &wait, 1000, 0);
    step(&b, &run, &wait, 1000, 1000);
    assert_true(b.contended);
    relay_batch_sample(&b, false, 0, 0);
    assert_false(b.contended);
    assert_int_equal(relay_batch_wait_us(&b, 10, false), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(off_at_zero),
        cmocka_unit_test(light_load_and_full_reads_never_wait),
        cmocka_unit_test(wait_grows_with_packets_up_to_the_limit),
        cmocka_unit_test(contention_has_hysteresis),
        cmocka_unit_test(unreadable_sample_means_not_contended),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
