/* test_window.c: credits, byte marks and token buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "session/rate.h"
#include "session/window.h"

static void credits(void **st)
{
    struct relay_window w;

    (void)st;
    relay_window_init(&w, 2, 100, 50);
    assert_true(relay_window_can_send(&w));
    relay_window_sent(&w);
    relay_window_sent(&w);
    assert_false(relay_window_can_send(&w));
    relay_window_acked(&w);
    assert_true(relay_window_can_send(&w));
    relay_window_acked(&w);
    relay_window_acked(&w); /* an extra ack never underflows */
    assert_int_equal(w.inflight, 0);
    relay_window_init(&w, 0, 100, 50); /* a limit of 0 would never send: 1 */
    assert_int_equal(w.limit, 1);
}

static void marks_with_hysteresis(void **st)
{
    struct relay_window w;

    (void)st;
    relay_window_init(&w, 10, 100, 50);
    assert_int_equal(relay_window_add(&w, 100), 0);   /* at the mark: not over */
    assert_int_equal(relay_window_add(&w, 1), 1);     /* over: pause */
    assert_int_equal(relay_window_add(&w, 50), 0);    /* still over: said once */
    assert_int_equal(relay_window_remove(&w, 60), 0); /* 91: under high, above low */
    assert_int_equal(relay_window_remove(&w, 40), 0); /* 51: still above low */
    assert_int_equal(relay_window_remove(&w, 1), -1); /* 50: at low, resume */
    assert_int_equal(w.queued, 50);
    assert_int_equal(relay_window_remove(&w, 100), 0); /* never below zero, said once */
    assert_int_equal(w.queued, 0);
}

static void qos0_room(void **st)
{
    struct relay_window w;

    (void)st;
    relay_window_init(&w, 10, 100, 50);
    assert_true(relay_window_qos0_room(&w, 200));
    assert_false(relay_window_qos0_room(&w, 201));
}

static void bucket_paces(void **st)
{
    struct relay_bucket b;
    uint64_t ready = 0;

    (void)st;
    relay_bucket_init(&b, 200, 0); /* 200/s, burst 200 */
    for (int i = 0; i < 200; i++)
        assert_true(relay_bucket_take(&b, 1, 0, &ready));
    assert_false(relay_bucket_take(&b, 1, 0, &ready));
    assert_int_equal(ready, 5); /* one token every 5 ms */
    assert_true(relay_bucket_take(&b, 1, 5, &ready));
    assert_false(relay_bucket_take(&b, 1, 5, &ready));
    /* 1000 taken over 0..5 s: never faster than the rate plus one burst */
    int taken = 0;
    for (uint64_t t = 5; t <= 5000; t++)
        while (relay_bucket_take(&b, 1, t, &ready))
            taken++;
    assert_true(taken <= 200 * 5);
    assert_true(taken >= 200 * 5 - 2);
    /* a request bigger than the burst passes when the bucket is full */
    relay_bucket_init(&b, 100, 0);
    assert_true(relay_bucket_take(&b, 500, 0, &ready));
    /* unlimited */
    relay_bucket_init(&b, 0, 0);
    for (int i = 0; i < 100000; i++)
        assert_true(relay_bucket_take(&b, 1000, 0, &ready));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(credits),
        cmocka_unit_test(marks_with_hysteresis),
        cmocka_unit_test(qos0_room),
        cmocka_unit_test(bucket_paces),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
