"""rate_limit (issue 4, SPEC "rate_limit"; the semantics of issue 12): per connection, no
window of one second, wherever it starts, holds more than the limit; nothing is dropped.

1. messages = 200: 1,000 QoS 1 messages published at the source all arrive at the destination,
   in order, and the first-to-last arrival takes at least the bound below.
2. bytes = 100,000: 500 QoS 1 messages of 1,000-byte payloads all arrive, no faster than the
   byte limit allows (same arithmetic, in bytes).

The bound. The relay keeps the limit L over windows of W = 1.025 s (session/rate.h: 25 ms of
margin for messages that bunch on the way). Cut the time from the first send into consecutive
windows of W: each holds at most L, so N messages need at least ceil(N / L) windows and the
last send is at least (ceil(N / L) - 1) x W after the first: (5 - 1) x 1.025 = 4.1 s for 1,000
messages at 200. For bytes the same with the PUBLISHes' sizes (at least 1 + 2 (remaining
length) + 2 + len(topic) + 2 (packet id) + len(payload) bytes each) against B. The test
asserts first-to-last arrival >= the bound - 0.1 s (the first and the last message do not see
quite the same latency). (A token bucket with a one-second burst, the relay's pacing before,
only guaranteed (N - L) / L = 4.0 s.)

The relay's window toward the destination and its Receive Maximum toward the source (64) mean
the source broker holds the backlog (the test broker has no queue limit): backpressure, not
loss. The arrival rate per second is printed.
"""
import math
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

SLACK = 0.1  # seconds: latency differences between the first and the last message
WINDOW = 1.025  # seconds: the window the relay keeps rate_limit in (session/rate.h)


def timed_sub(t, broker, filt):
    """A subscriber that also notes the monotonic time of each arrival."""
    c = t.client(broker, "5")
    times = []
    lock = threading.Lock()
    orig = c.c.on_message

    def on_message(cl, u, m):
        with lock:
            times.append(time.monotonic())
        orig(cl, u, m)

    c.c.on_message = on_message
    c.subscribe(filt, 1)
    return c, times


def per_second(times):
    if not times:
        return []
    t0 = times[0]
    out = [0] * (int(times[-1] - t0) + 1)
    for x in times:
        out[int(x - t0)] += 1
    return out


def one(t, name, rate, n, size, min_seconds_fn, what):
    t.section(what)
    src = t.broker(name + "-src")
    dst = t.broker(name + "-dst")
    relay = t.relay(relay={"id": "rate-" + name}, name=name,
                    brokers=[{"name": "src", "url": src.url, "version": "5"},
                             {"name": "dst", "url": dst.url, "version": "5",
                              "rate_limit": rate}],
                    routes=[{"name": "paced", "from": "src", "to": "dst", "filter": "rate/#",
                             "qos": 1}])
    relay.wait_ready({"src": src, "dst": dst})
    sub, times = timed_sub(t, dst, "rate/#")
    pub = t.client(src, "5", max_inflight=1000)
    time.sleep(1.2)  # a second idle: nothing of the set-up counts any more
    expected = []
    t0 = time.monotonic()
    for i in range(n):
        topic = "rate/%s/%04d" % (name, i)
        payload = (b"%04d:" % i) + bytes((i + k) % 256 for k in range(size - 5))
        pub.publish(topic, payload, 1)
        expected.append((topic.encode(), payload))
    pub.wait_published(120)
    t_pub = time.monotonic() - t0
    ok = sub.wait_for(lambda ms: len(ms) >= n, 120)
    d = rt.Delivery(expected, sub.received())
    t.check(ok and not d.missing and not d.unexpected,
            "all %d messages arrive (nothing dropped)" % n, d.describe())
    t.check(d.duplicates == 0, "no duplicates (%d)" % d.duplicates)
    order = [m.payload[:4] for m in sub.received()]
    t.check(order == sorted(order), "in publish order")
    span = times[n - 1] - times[0]
    need = min_seconds_fn(expected)
    t.note("published in %.2fs (the source broker took them all); arrivals per second: %s"
           % (t_pub, per_second(times[:n])))
    t.check(span >= need - SLACK,
            "first-to-last arrival %.2fs >= %.2fs (no 1.025 s window above the limit, less "
            "%.1fs)" % (span, need, SLACK))
    relay.check_alive()
    bad = [l for l in relay.log_lines() if " ERROR " in l or "dst#0: connection" in l]
    t.check(not bad, "no error and no lost connection on the paced link", "\n".join(bad[:5]))
    drops = [l for l in relay.log_lines() if "drop" in l.lower()]
    t.check(not drops, "no drop in the log", "\n".join(drops[:5]))
    relay.stop()
    for c in (sub, pub):
        c.stop()
    return span


def run(t):
    msgs_rate = 200
    one(t, "msgs", {"messages": msgs_rate}, 1000, 16,
        lambda exp: (math.ceil(len(exp) / msgs_rate) - 1) * WINDOW,
        "rate_limit messages = 200: 1,000 QoS 1 messages")

    bytes_rate = 100000

    def min_bytes(exp):
        # a lower bound of each forwarded PUBLISH's size (without properties)
        total = sum(1 + 2 + 2 + len(tp) + 2 + len(p) for tp, p in exp)
        return (math.ceil(total / bytes_rate) - 1) * WINDOW

    one(t, "bytes", {"bytes": bytes_rate}, 500, 1000, min_bytes,
        "rate_limit bytes = 100000: 500 QoS 1 messages of 1,000 bytes")


if __name__ == "__main__":
    rt.main(run, __doc__)
