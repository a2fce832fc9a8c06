"""Fast across a long round trip by default, nothing lost (issue 15): spool = "auto".

Two Mosquitto brokers, src and dst (Mosquitto's defaults: 20 unacknowledged messages out to a
subscriber), and a delay proxy (fault_proxy.FaultProxy: every chunk delivered 25 ms after it was
read, both ways: a 50 ms round trip) between the relay and dst. The relay runs a new user's
configuration: names, URLs and versions only (spool = "auto", max_inflight "auto"); its state
directory is the test's ($STATE_DIRECTORY, as systemd sets it; relaytest gives each relay one).

1. kill -9 mid-stream: 3,000 numbered QoS 1 messages on two topics, paced. The relay measures the
   round trip to dst and says it acknowledges from the local spool (a log line naming the round
   trip and the bound end-to-end acknowledgement would set). Once a third has arrived, the
   relay is killed with SIGKILL and started again with the same configuration and state
   directory. Every message arrives at dst's subscriber, and on each topic the first arrivals
   come in publish order (duplicates are allowed: at least once).
2. back to end to end: with the relay spooling, the delay goes to 0 mid-stream; the relay says
   it acknowledges end to end again once its spool is empty. Every message arrives exactly
   once, in publish order per topic, across the switch.
3. spool = false: across the same link the relay names the bound in a WARN line ("end-to-end
   acknowledgement binds each topic into dst to ~N msg/s (receive_maximum 64 held ...)"), and
   every message still arrives
   exactly once, in order.
"""
import os
import re
import sys
import threading
import time

sys.dont_write_bytecode = True
import fault_proxy as fp  # noqa: E402
import relaytest as rt  # noqa: E402

TOPICS = (b"w/a", b"w/b/c")
DELAY = 0.025  # one way: a 50 ms round trip


class Publisher(threading.Thread):
    """Publishes n numbered QoS 1 messages on each topic, interleaved, at about rate per second
    (paho queues what src has not acknowledged)."""

    def __init__(self, client, tag, n, rate):
        super().__init__(daemon=True)
        self.client, self.tag, self.n, self.rate = client, tag, n, rate
        self.sent = []
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            start = time.monotonic()
            for i in range(self.n):
                for tp in TOPICS:
                    payload = b"%s.%s.%06d" % (self.tag, tp, i)
                    self.client.publish(tp.decode(), payload, 1)
                    self.sent.append((tp, payload))
                ahead = (i + 1) * len(TOPICS) / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        except Exception as e:  # reported by the main thread
            self.error = e
        finally:
            self.done.set()


def setup(t, name, spool=None):
    src = t.broker(name + "-src", log_all=False)
    dst = t.broker(name + "-dst", log_all=False)
    proxy = fp.FaultProxy(dst.port, name=name + "-proxy", log=t.note).start()
    proxy.delay(DELAY)
    dstcfg = {"name": "dst", "url": proxy.url, "version": "3.1.1"}
    if spool is not None:
        dstcfg["spool"] = spool
    relay = t.relay(name=name, relay={"id": name},
                    brokers=[{"name": "src", "url": src.url, "version": "3.1.1"}, dstcfg],
                    routes=[{"from": "src", "to": "dst", "filter": "w/#"}])
    relay.wait_ready({"src": src, "dst": dst})
    sub = t.client(dst, "3.1.1").subscribe("w/#", 1)
    pub = t.client(src, "3.1.1")
    return src, dst, proxy, relay, sub, pub


def log_has(relay, pattern, timeout=20):
    rx = re.compile(pattern)
    return rt.wait_until(lambda: any(rx.search(ln) for ln in relay.log_lines()), timeout, 0.1)


def check_delivery(t, what, sent, sub, exact, timeout=90):
    rt.wait_until(lambda: not rt.Delivery(sent, sub.received()).missing, timeout, 0.2)
    got = sub.received()
    d = rt.Delivery(sent, got)
    t.check(not d.missing and not d.unexpected, "%s: all %d messages arrive" % (what, len(sent)),
            d.describe())
    if exact:
        t.check(d.duplicates == 0, "%s: each exactly once" % what, d.describe())
    else:
        t.note("%s: %d duplicates (at least once across a SIGKILL)" % (what, d.duplicates))
    for tp in TOPICS:
        want = [p for (x, p) in sent if x == tp]
        have = rt.first_occurrence_order([m for m in got if m.topic == tp])
        t.check(have == want, "%s: %s in publish order" % (what, tp.decode()),
                "first difference at %s" % next(
                    (i for i, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have),
                                                                                   len(want))))


def run(t):
    # -------------------------------------------------------------------------------- 1
    t.section("1. defaults across a 50 ms round trip, the relay killed -9 mid-stream")
    src, dst, proxy, relay, sub, pub = setup(t, "wan-kill")
    state = os.path.join(relay.dir, "state")
    t.check(log_has(relay, r"dst#0: round trip (4[5-9]|[5-9]\d) ms: acknowledging messages for "
                           r"dst from the local spool \(%s/dst\)" % re.escape(state)),
            "the relay measures the round trip and acknowledges from the spool in the state "
            "directory", rt.tail(relay.stderr_path))
    pt = Publisher(pub, b"k", 1500, 600.0)
    pt.start()
    rt.wait_until(lambda: sub.count() >= 1000 or pt.done.is_set(), 60, 0.05)
    t.note("%d arrived when the relay is killed" % sub.count())
    relay.kill()
    time.sleep(0.3)
    relay.start()
    pt.done.wait(60)
    t.check(pt.error is None, "the publisher published all", repr(pt.error))
    pub.wait_published(60)
    check_delivery(t, "kill -9", pt.sent, sub, exact=False)
    lines = [ln for ln in relay.log_lines(True) if "left by an earlier run" in ln]
    t.note("after the restart: %s" % (lines[0] if lines else "the spool had delivered "
                                      "everything it held"))
    t.check(os.path.isdir(os.path.join(state, "dst")), "the spool lives in the state directory")
    relay.stop()
    proxy.stop()

    # -------------------------------------------------------------------------------- 2
    t.section("2. the round trip falls to 0 mid-stream: back to end-to-end acknowledgement")
    src, dst, proxy, relay, sub, pub = setup(t, "wan-back")
    t.check(log_has(relay, r"acknowledging messages for dst from the local spool"),
            "spooling across 50 ms", rt.tail(relay.stderr_path))
    pt = Publisher(pub, b"b", 1000, 400.0)
    pt.start()
    rt.wait_until(lambda: sub.count() >= 400 or pt.done.is_set(), 60, 0.05)
    proxy.delay(0)
    t.check(log_has(relay, r"spool dst: empty: messages for dst are acknowledged end to end "
                           r"again \(round trip [012] ms\)", 30),
            "back to end-to-end acknowledgement once the spool is empty",
            rt.tail(relay.stderr_path))
    pt.done.wait(60)
    t.check(pt.error is None, "the publisher published all", repr(pt.error))
    pub.wait_published(60)
    check_delivery(t, "across the switch", pt.sent, sub, exact=True)
    relay.stop()
    proxy.stop()

    # -------------------------------------------------------------------------------- 3
    t.section("3. spool = false: end to end across 50 ms, the bound named")
    src, dst, proxy, relay, sub, pub = setup(t, "wan-off", spool=False)
    t.check(log_has(relay, r"WARN  dst#0: round trip \d+ ms: end-to-end acknowledgement binds "
                           r"each topic into dst to ~\d+ msg/s \(receive_maximum 64 held from a "
                           r"source for \d+ ms; fewer if the source lets fewer out\): "
                           r"spool = false"),
            "a WARN line names the bound", rt.tail(relay.stderr_path))
    pt = Publisher(pub, b"f", 200, 300.0)
    pt.start()
    pt.done.wait(60)
    pub.wait_published(60)
    check_delivery(t, "spool = false", pt.sent, sub, exact=True)
    t.check(not os.path.exists(os.path.join(relay.dir, "state", "dst")),
            "no spool was made")
    relay.stop()
    proxy.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
