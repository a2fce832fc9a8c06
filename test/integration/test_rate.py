"""rate_limit (issue 4, SPEC "rate_limit"): per-connection token buckets pace what the relay sends;
nothing is dropped.

1. messages = 200: 1,000 QoS 1 messages published at the source all arrive at the destination,
   and the first-to-last arrival takes at least 4 s (less a small allowance for jitter).
2. bytes = 100,000: 500 QoS 1 messages of 1,000-byte payloads all arrive, no faster than the
   byte bucket allows (same arithmetic, in bytes).

The bound. SPEC: "per connection, per second, what we send ... a burst is at most one second's
worth". That is a token bucket of capacity C = one second's worth (200 messages), refilled at
r = 200/s, full when the relay has been idle. Sending N messages takes at least
(N - C) / r = (1000 - 200) / 200 = 4.0 s from the first send to the last: the first 200 go at
once (the burst), the other 800 at 200/s. The issue's "at least 5 s" is N / r, which holds only
for a bucket that starts empty; with the one-second burst SPEC allows, 4 s is the exact lower
bound, and the test asserts first-to-last arrival >= 4.0 s - 0.1 s (the first and the last
message do not see quite the same latency). For bytes: C = r = B bytes, each forwarded PUBLISH
is at least 1 + 2 (remaining length) + 2 + len(topic) + 2 (packet id) + len(payload) bytes, so
the sends take at least (sum of those - B) / B seconds.

The relay's window toward the destination and its Receive Maximum toward the source (64) mean
the source broker holds the backlog (the test broker has no queue limit): backpressure, not
loss. The arrival rate per second is printed.
"""
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

SLACK = 0.1  # seconds: latency differences between the first and the last message


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
    time.sleep(1.2)  # the bucket is full after a second idle (as it is at start anyway)
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
            "first-to-last arrival %.2fs >= %.2fs (token bucket with a one-second burst, "
            "less %.1fs)" % (span, need, SLACK))
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
        lambda exp: (len(exp) - msgs_rate) / float(msgs_rate),
        "rate_limit messages = 200: 1,000 QoS 1 messages")

    bytes_rate = 100000

    def min_bytes(exp):
        # a lower bound of each forwarded PUBLISH's size (without properties)
        total = sum(1 + 2 + 2 + len(tp) + 2 + len(p) for tp, p in exp)
        return (total - bytes_rate) / float(bytes_rate)

    one(t, "bytes", {"bytes": bytes_rate}, 500, 1000, min_bytes,
        "rate_limit bytes = 100000: 500 QoS 1 messages of 1,000 bytes")


if __name__ == "__main__":
    rt.main(run, __doc__)
