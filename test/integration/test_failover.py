"""url as a list (issue 4, SPEC "url"): failover in order, the first taken back when it returns.

The destination broker "dst" has url = [FIRST, SECOND] and reconnect = {min = 250; max = 2000}.
FIRST is a port nothing listens on (a Mosquitto that ran there once, to leave a persistent
session with the test's subscriber in it, then stopped); SECOND is a running Mosquitto.

1. The relay starts, finds FIRST dead and uses SECOND: messages published at the source cross to
   SECOND's subscriber.
2. A publisher keeps sending one QoS 1 message every 20 ms from here to the end.
3. Mosquitto starts again on FIRST. SPEC: while on a fallback the first URL is probed every
   reconnect.max ms and taken back once it answers: FIRST's log shows the relay's client id
   connecting within two probes (2 x 2 s, plus 1 s for the connection itself and scheduling),
   and the relay logs "connected to" FIRST.
4. Messages published after the move arrive through FIRST (at its subscriber, whose persistent
   session was waiting there) and no longer at SECOND.
5. Nothing is lost on the way: every message of the steady stream arrived at FIRST or SECOND.
"""
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

RECONNECT_MAX_MS = 2000


def run(t):
    t.section("first URL dead, second used")
    src = t.broker("src")
    second = t.broker("second", persistence=False)
    first = rt.Broker(t, "first", persistence=True)
    # a persistent session on FIRST with a subscription, so nothing published there after the
    # broker comes back is missed by the test, however fast the relay moves
    first.start()
    sub1 = t.client(first, "5", client_id="fo-sub-first", clean=False,
                    session_expiry=3600).subscribe("fo/#", 1)
    sub1.disconnect()
    first.stop()
    t.check(not rt.port_accepts(first.port), "nothing listens on FIRST (%d)" % first.port)

    relay = t.relay(relay={"id": "fo"},
                    brokers=[{"name": "src", "url": src.url, "version": "5"},
                             {"name": "dst", "url": [first.url, second.url], "version": "5",
                              "reconnect": {"min": 250, "max": RECONNECT_MAX_MS}}],
                    routes=[{"name": "fo", "from": "src", "to": "dst", "filter": "fo/#",
                             "qos": 1}])
    relay.wait_ready({"src": src, "dst": second}, timeout=30)
    t.check(any(": connected to %s " % second.url in l for l in relay.log_lines()),
            "the relay logs \"connected to %s\" (the second URL)" % second.url)
    sub2 = t.client(second, "5").subscribe("fo/#", 1)
    pub = t.client(src, "5")
    expected = []
    for i in range(20):
        topic, payload = "fo/before/%d" % i, b"before %d" % i
        pub.publish(topic, payload, 1)
        expected.append((topic.encode(), payload))
    pub.wait_published(20)
    sub2.wait_for(lambda ms: len(ms) >= 20, 20)
    d = rt.Delivery(expected, sub2.received())
    t.check(not d.missing, "20 messages cross to SECOND while FIRST is dead", d.describe())

    t.section("FIRST comes back: the relay moves to it within reconnect.max")
    stream = []
    stop = threading.Event()
    lock = threading.Lock()
    spub = t.client(src, "5")

    def steady():
        k = 0
        while not stop.is_set():
            topic, payload = "fo/stream/%05d" % k, b"stream %d" % k
            spub.publish(topic, payload, 1)
            with lock:
                stream.append((topic.encode(), payload))
            k += 1
            time.sleep(0.02)

    th = threading.Thread(target=steady, daemon=True)
    th.start()
    try:
        time.sleep(0.5)
        first.start()
        t_up = time.monotonic()
        cid = "fo-dst"
        moved = rt.wait_until(lambda: relay.check_alive() or cid in first.connected_ids(),
                              RECONNECT_MAX_MS / 1000.0 + 10)
        took = time.monotonic() - t_up
        t.check(moved, "FIRST's log shows the relay (%s) connecting" % cid,
                repr(first.connected_ids()))
        t.note("the relay connected to FIRST %.2fs after it came back" % took)
        # at the first or second probe (one every reconnect.max): a probe that waits for a CPU
        # on a loaded machine is late, a relay that does not probe never comes back
        t.check(took <= 2 * RECONNECT_MAX_MS / 1000.0 + 1.0,
                "within two probes, 2 x reconnect.max = 2 x %d ms (+1 s): %.2fs"
                % (RECONNECT_MAX_MS, took))
        t.check(rt.wait_until(lambda: any(": connected to %s " % first.url in l
                                          for l in relay.log_lines()), 5),
                "the relay logs \"connected to %s\" (the first URL)" % first.url)
        time.sleep(1.0)  # the stream goes on through the move
    finally:
        stop.set()
        th.join(10)
    spub.wait_published(30)

    t.section("after the move: messages arrive through FIRST, nothing lost")
    sub1 = t.client(first, "5", client_id="fo-sub-first", clean=False, session_expiry=3600)
    n2_before = sub2.count()
    after = []
    for i in range(20):
        topic, payload = "fo/after/%d" % i, b"after %d" % i
        pub.publish(topic, payload, 1)
        after.append((topic.encode(), payload))
    pub.wait_published(20)
    sub1.wait_for(lambda ms: len([m for m in ms if m.topic.startswith(b"fo/after/")]) >= 20, 20)
    d1 = rt.Delivery(after, sub1.received(lambda m: m.topic.startswith(b"fo/after/")))
    t.check(not d1.missing and not d1.unexpected,
            "20 messages published after the move arrive at FIRST", d1.describe())
    time.sleep(1.0)
    late2 = [m for m in sub2.received()[n2_before:] if m.topic.startswith(b"fo/after/")]
    t.check(not late2, "none of them at SECOND (%d)" % len(late2))

    with lock:
        sent = list(stream)
    mine = lambda m: m.topic.startswith(b"fo/stream/")  # noqa: E731
    sub1.wait_for(lambda ms: len(set((m.topic, m.payload) for m in
                                     sub1.received(mine) + sub2.received(mine))) >= len(sent),
                  20)
    got = sub1.received(mine) + sub2.received(mine)
    d = rt.Delivery(sent, got)
    t.check(not d.missing and not d.unexpected,
            "the steady stream (%d messages, one every 20 ms through the move): every one "
            "arrived at FIRST or SECOND" % len(sent), d.describe())
    t.note("of the stream: %d at SECOND, %d at FIRST, %d duplicates (at least once allows "
           "them)" % (len(sub2.received(mine)), len(sub1.received(mine)), d.duplicates))
    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
