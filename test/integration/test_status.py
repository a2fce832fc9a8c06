"""status_topic (SPEC, issue 6): retained "online" (QoS 1) on connect, a retained Will "offline"
(QoS 1), kept under BifroMQ's 128-byte Will limit.

Two Mosquitto brokers, A (MQTT 5) and B (MQTT 3.1.1), each with a status_topic in the relay's
configuration and keepalive 5 s. Asserted:
  * Mosquitto's log of each CONNECT: a Will of 7 bytes with retain and QoS 1 ("Will message
    specified (7 bytes) (r1, q1)." then the topic), topic + payload under 128 bytes.
  * After the relay connects, a subscriber arriving later gets the retained "online" (retain
    flag set), and Mosquitto's log shows the relay's PUBLISH of it at QoS 1 with retain.
  * The connection stays up while idle for more than 1.5 keepalives (the relay pings).
  * SIGKILL of the relay: the broker publishes the Will (the killed process's socket closes
    uncleanly): a subscriber that was there sees "offline", a later one gets it retained.
  * Restarted: "online" again. A broker restarted (without persistence: its retained messages
    are gone): the relay reconnects and publishes "online" again.
  * SIGTERM: "offline" retained too, published by the relay before its DISCONNECT (Mosquitto's
    log: the PUBLISH, then "Received DISCONNECT").
"""
import re
import sys
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

KEEPALIVE = 5


def retained(t, broker, topic, version="5", timeout=10):
    """The retained payload a new subscriber gets on topic (None if none within timeout)."""
    c = t.client(broker, version)
    c.subscribe(topic, 1)
    got = c.wait_for(lambda ms: any(m.retain for m in ms), timeout)
    msgs = [m for m in c.received() if m.retain]
    c.stop()
    return msgs[-1].payload if got and msgs else None


def wait_retained(t, broker, topic, want, version="5", timeout=20):
    last = [None]

    def ok():
        last[0] = retained(t, broker, topic, version, 2)
        return last[0] == want
    rt.wait_until(ok, timeout, 0.2)
    return last[0]


def run(t):
    a = t.broker("A")
    b = t.broker("B")
    topics = {"A": "relay/st-site/status", "B": "relay/st-site/status-b"}
    versions = {"A": "5", "B": "3.1.1"}
    brokers = {"A": a, "B": b}
    rec = {"min": 100, "max": 1000}
    relay = t.relay(relay={"id": "st"},
                    brokers=[{"name": n, "url": brokers[n].url, "version": versions[n],
                              "keepalive": KEEPALIVE, "status_topic": topics[n],
                              "reconnect": rec} for n in ("A", "B")],
                    routes=[{"from": "A", "to": "B", "filter": "s/#"}])
    # subscribers that stay through the kill (they see the Will as it is published)
    watchers = {n: t.client(brokers[n]).subscribe(topics[n], 1) for n in ("A", "B")}
    relay.wait_ready({"A": a, "B": b})

    t.section("connect: the Will in the CONNECT, retained \"online\"")
    for n in ("A", "B"):
        br, topic = brokers[n], topics[n]
        cid = relay.client_ids(n)[0]
        lines = br.log_lines()
        pat = r"^New (?:client|bridge) connected .* as %s " % re.escape(cid)
        i = next(i for i, l in enumerate(lines) if re.match(pat, l))
        will = lines[i + 1] if i + 1 < len(lines) else ""
        wtopic = lines[i + 2].strip() if i + 2 < len(lines) else ""
        t.check(will == "Will message specified (7 bytes) (r1, q1)." and wtopic == topic,
                "%s: the CONNECT carries a Will of 7 bytes, retain, QoS 1, on %s" % (n, topic),
                "log after the CONNECT: %r %r" % (will, wtopic))
        t.check(len(topic.encode()) + 7 < 128, "%s: Will topic + payload = %d bytes, under "
                "BifroMQ's 128" % (n, len(topic.encode()) + 7))
        got = wait_retained(t, br, topic, b"online", versions[n])
        t.check(got == b"online", "%s: a new subscriber gets retained \"online\" (got %r)"
                % (n, got))
        pubs = [l for l in br.log_lines() if re.match(
            r"^Received PUBLISH from %s \(d0, q1, r1, m\d+, '%s', \.\.\. \(6 bytes\)\)"
            % (re.escape(cid), re.escape(topic)), l)]
        t.check(len(pubs) == 1, "%s: Mosquitto's log: the relay published it at QoS 1 with "
                "retain, once: %s" % (n, pubs[0] if pubs else None))

    t.section("idle for %.1f keepalives" % (12.0 / KEEPALIVE))
    time.sleep(12)
    for n in ("A", "B"):
        cid = relay.client_ids(n)[0]
        log = brokers[n].log_lines()
        t.check(not any("%s has exceeded timeout" % cid in l for l in log)
                and any(l.startswith("Received PINGREQ from %s" % cid) for l in log),
                "%s: the relay pings: PINGREQs in the log, no keepalive timeout" % n)
        t.check(brokers[n].connected_ids().count(cid) == 1, "%s: still the first connection"
                % n)

    t.section("SIGKILL: the broker publishes the Will")
    for w in watchers.values():
        w.clear()
    relay.kill()
    for n in ("A", "B"):
        ok = watchers[n].wait_for(lambda ms: any(m.payload == b"offline" for m in ms), 15)
        t.check(ok, "%s: the subscriber that was there sees \"offline\" after the kill" % n,
                "it got %r" % [m.payload for m in watchers[n].received()])
        got = wait_retained(t, brokers[n], topics[n], b"offline", versions[n])
        t.check(got == b"offline", "%s: a new subscriber gets retained \"offline\" (got %r)"
                % (n, got))

    t.section("restarted: \"online\" again; a broker restarted: \"online\" again")
    relay.start()
    relay.wait_ready({"A": a, "B": b})
    for n in ("A", "B"):
        got = wait_retained(t, brokers[n], topics[n], b"online", versions[n])
        t.check(got == b"online", "%s: retained \"online\" after the relay's restart (got %r)"
                % (n, got))
    b.restart()
    t.note("broker B restarted without persistence: its retained messages are gone")
    got = wait_retained(t, b, topics["B"], b"online", versions["B"], 30)
    t.check(got == b"online", "B: the relay reconnected and published \"online\" again (got %r)"
            % got)

    t.section("SIGTERM: \"offline\" published before DISCONNECT")
    for w in watchers.values():
        w.clear()
    relay.stop()
    for n in ("A", "B"):
        cid = relay.client_ids(n)[0]
        got = wait_retained(t, brokers[n], topics[n], b"offline", versions[n])
        t.check(got == b"offline", "%s: retained \"offline\" after SIGTERM (got %r)" % (n, got))
        log = brokers[n].log_lines()
        off = [i for i, l in enumerate(log) if re.match(
            r"^Received PUBLISH from %s \(d0, q1, r1, m\d+, '%s', \.\.\. \(7 bytes\)\)"
            % (re.escape(cid), re.escape(topics[n])), l)]
        disc = [i for i, l in enumerate(log) if l == "Received DISCONNECT from %s" % cid]
        t.check(off and disc and off[-1] < disc[-1],
                "%s: Mosquitto's log: the relay's retained QoS 1 \"offline\" PUBLISH, then its "
                "DISCONNECT" % n, "PUBLISH at %s, DISCONNECT at %s" % (off, disc))


if __name__ == "__main__":
    rt.main(run, __doc__)
