"""Read batching (relay.batch_wait_us, issue 7): when the relay has to wait for a CPU it lets
packets gather between reads; nothing may be lost, duplicated or reordered by it, and
batch_wait_us = 0 turns it off (also through SIGHUP).

Two Mosquitto brokers A and B, one route A -> B on "bt/#" at QoS 1, the relay with /metrics.
The relay is pinned to CPU 0 next to a busy loop pinned there too, so it really waits for its
CPU (the condition under which it batches: /proc/self/schedstat run-queue time), and paho
publishers send numbered QoS 1 messages on two topics as fast as Mosquitto takes them.

1. Default setting (300 us): batches of messages are published until /metrics shows
   mqtt_relay_read_batch_waits_total > 0 (bounded: at most 12 batches), so the waiting path was
   taken with messages in flight. Every message arrives on B exactly once, and on each topic in
   publish order; the relay's wait time (mqtt_relay_read_batch_wait_seconds_total) is at most
   300 us per wait.
2. The file changed to batch_wait_us = 0 and SIGHUP: the same load again; every message
   arrives, in order, and the wait counter does not move.
"""
import os
import signal
import subprocess
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

BATCH = 1500  # messages per batch and topic
TOPICS = ("bt/x", "bt/y/z")


def start_hog(t):
    """A busy loop pinned to CPU 0; returns the Popen (stopped by the caller by PID)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           preexec_fn=rt._pdeathsig)
    os.sched_setaffinity(hog.pid, {0})
    t.note("busy loop pid %d pinned to CPU 0" % hog.pid)
    return hog


def publish_batch(pub, k):
    """BATCH messages on each topic, interleaved; returns the expected (topic, payload) list."""
    sent = []
    for i in range(BATCH):
        for tp in TOPICS:
            payload = b"%s #%d.%06d" % (tp.encode(), k, i)
            pub.publish(tp, payload, 1)
            sent.append((tp.encode(), payload))
    pub.wait_published(120)
    return sent


def check_delivery(t, sub, expected, what):
    ok = sub.wait_for(lambda ms: len(ms) >= len(expected), 120)
    got = sub.received()
    d = rt.Delivery(expected, got)
    t.check(ok and not d.missing and not d.unexpected and d.duplicates == 0,
            "%s: all %d messages arrive exactly once" % (what, len(expected)), d.describe())
    for tp in TOPICS:
        want = [p for (x, p) in expected if x == tp.encode()]
        have = [m.payload for m in got if m.topic == tp.encode()]
        t.check(have == want, "%s: %s in publish order" % (what, tp),
                "first difference at %s" % next(
                    (i for i, (a, b) in enumerate(zip(have, want)) if a != b),
                    min(len(have), len(want))))


def waits(mport):
    ms = rt.get_metrics(mport)
    return (rt.metric(ms, "mqtt_relay_read_batch_waits_total"),
            rt.metric(ms, "mqtt_relay_read_batch_wait_seconds_total"))


def run(t):
    a = t.broker("A", log_all=False)
    b = t.broker("B", log_all=False)
    mport = rt.free_port()
    brokers = [{"name": "A", "url": a.url, "receive_maximum": 100},
               {"name": "B", "url": b.url, "max_inflight": 100}]
    routes = [{"name": "bt", "from": "A", "to": "B", "filter": "bt/#", "qos": 1}]
    relay = t.relay(relay={"id": "bt", "metrics": "127.0.0.1:%d" % mport},
                    brokers=brokers, routes=routes)
    relay.wait_ready({"A": a, "B": b})
    os.sched_setaffinity(relay.pid, {0})
    hog = start_hog(t)
    try:
        sub = t.client(b).subscribe("bt/#", 1)
        pub = t.client(a)

        t.section("1. batching at its default, the relay sharing its CPU")
        expected = []
        k = 0
        while k < 12:
            expected += publish_batch(pub, k)
            k += 1
            sub.wait_for(lambda ms: len(ms) >= len(expected), 120)
            if waits(mport)[0] > 0:
                break
        n, secs = waits(mport)
        t.note("%d batches of %d; %d waits, %.6f s in all" % (k, 2 * BATCH, n, secs))
        have_schedstat = os.path.exists("/proc/self/schedstat")
        if have_schedstat:
            t.check(n > 0, "the relay waited to batch reads (read_batch_waits_total > 0)",
                    "0 waits after %d messages" % len(expected))
        else:
            t.note("no /proc/self/schedstat here: the relay never batches; not checked")
        t.check(secs <= n * 300e-6 + 1e-6, "each wait at most 300 us (%.6f s for %d waits)"
                % (secs, n))
        check_delivery(t, sub, expected, "default")
        t.check(relay.running(), "the relay is running")

        t.section("2. batch_wait_us = 0 through SIGHUP")
        relay.relay_cfg["batch_wait_us"] = 0
        with open(relay.conf_path, "w") as f:
            f.write(rt.relay_config_text(relay.relay_cfg, relay.brokers, relay.routes))
        start = len(relay.log_lines())
        os.kill(relay.pid, signal.SIGHUP)
        ok = rt.wait_until(lambda: any("reload" in ln.lower() and "SIGHUP" not in ln
                                       for ln in relay.log_lines()[start:]), 15)
        t.check(ok, "the relay logged the reload")
        t.check(not any("ERROR" in ln for ln in relay.log_lines()[start:]),
                "the reload was accepted")
        before = waits(mport)[0]
        sub.clear()
        expected = []
        for k in range(3):
            expected += publish_batch(pub, 100 + k)
        check_delivery(t, sub, expected, "off")
        t.check(waits(mport)[0] == before, "no wait with batch_wait_us = 0 (%d, then %d)"
                % (before, waits(mport)[0]))
        t.check(relay.running(), "the relay is running")
    finally:
        hog.kill()
        hog.wait(10)


if __name__ == "__main__":
    rt.main(run, __doc__)
