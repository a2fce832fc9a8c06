/* test_window.c: credits and byte marks (the pace: test_rate.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(credits),
        cmocka_unit_test(marks_with_hysteresis),
        cmocka_unit_test(qos0_room),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
