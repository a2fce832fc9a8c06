"""A pool of 3 connections with a shared subscription.

The source broker "src" has connections = 3; the route from it has share = "g". Checks, from
Mosquitto's own log (log_type all): the three client ids "<client_id>-0", "-1", "-2" connect and
each subscribes "$share/g/pool/#". Then 300 QoS 1 messages (30 topics) are published at the
source: every one arrives exactly once at the destination. The spread over the three connections
(who Mosquitto sent each message to) is printed.

Then the other way round: a destination with connections = 3 (SPEC: messages spread by a hash of
the destination topic, so the order per topic is kept): 300 messages on 30 topics arrive exactly
once, in publish order per topic; the spread over the pool is printed.
"""
import collections
import re
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

N = 300


def run(t):
    t.section("pool of 3, shared subscription $share/g/pool/#")
    src = t.broker("src")
    dst = t.broker("dst")
    relay = t.relay(
        brokers=[{"name": "src", "url": src.url, "version": "5", "connections": 3,
                  "client_id": "pool-src"},
                 {"name": "dst", "url": dst.url, "version": "5"}],
        routes=[{"from": "src", "to": "dst", "filter": "pool/#", "share": "g", "qos": 1}])
    ids = ["pool-src-0", "pool-src-1", "pool-src-2"]
    t.check(relay.client_ids("src") == ids, "the harness expects client ids %s" % ids)
    relay.wait_ready({"src": src, "dst": dst})

    connected = src.connected_ids()
    t.check(sorted(set(connected) & set(ids)) == ids,
            "the source broker's log shows %s connecting" % ", ".join(ids), repr(connected))
    t.check(len([c for c in connected if c.startswith("pool-src")]) == 3,
            "exactly 3 connections from the pool", repr(connected))
    subs = src.subscriptions()
    for cid in ids:
        mine = [s for s in subs if s[0] == cid]
        t.check([s[2] for s in mine] == ["$share/g/pool/#"],
                "%s subscribes \"$share/g/pool/#\" (QoS %s)"
                % (cid, mine[0][1] if mine else "?"), repr(mine))

    sub = t.client(dst, "5").subscribe("pool/#", 1)
    pub = t.client(src, "5")
    expected = []
    for i in range(N):
        topic = "pool/t%02d" % (i % 30)
        payload = ("msg %d" % i).encode()
        pub.publish(topic, payload, 1)
        expected.append((topic.encode(), payload))
    pub.wait_published(60)
    sub.wait_for(lambda ms: len(set((m.topic, m.payload) for m in ms)) >= N, 60)
    d = rt.Delivery(expected, sub.received())
    t.check(not d.missing and not d.unexpected and d.duplicates == 0,
            "%d messages: every one arrives exactly once" % N, d.describe())

    # Which connection Mosquitto handed each message to: its "Sending PUBLISH to ID" lines.
    spread = collections.Counter()
    for line in src.log_lines():
        m = re.match(r"^Sending PUBLISH to (pool-src-\d) \(d\d, q\d, r\d, m\d+, 'pool/", line)
        if m:
            spread[m.group(1)] += 1
    t.note("messages per pool connection (source's view): %s" % dict(sorted(spread.items())))

    # Within one topic, order is kept end to end only if the pool does not reorder: the shared
    # subscription hands consecutive messages of one topic to different connections, so SPEC
    # promises order per topic only toward a pooled destination. Reported, not asserted.
    reordered = 0
    for k in range(30):
        topic = ("pool/t%02d" % k).encode()
        order = rt.first_occurrence_order([m for m in sub.received() if m.topic == topic])
        if order != [p for tp, p in expected if tp == topic]:
            reordered += 1
    t.note("topics whose messages arrived out of publish order: %d of 30" % reordered)

    pub.stop()
    sub.stop()
    relay.stop()

    t.section("pool of 3 as the destination: spread by topic, order per topic kept")
    src2 = t.broker("src2")
    dst2 = t.broker("dst2")
    relay2 = t.relay(
        name="relay2",
        brokers=[{"name": "src", "url": src2.url, "version": "5"},
                 {"name": "dst", "url": dst2.url, "version": "5", "connections": 3,
                  "client_id": "pool-dst"}],
        routes=[{"from": "src", "to": "dst", "filter": "pool/#", "qos": 1}])
    relay2.wait_ready({"src": src2, "dst": dst2})
    ids = relay2.client_ids("dst")
    t.check(sorted(set(dst2.connected_ids()) & set(ids)) == ids,
            "the destination's log shows %s connecting" % ", ".join(ids))
    sub = t.client(dst2, "5").subscribe("pool/#", 1)
    pub = t.client(src2, "5")
    for topic, payload in expected:
        pub.publish(topic.decode(), payload, 1)
    pub.wait_published(60)
    sub.wait_for(lambda ms: len(set((m.topic, m.payload) for m in ms)) >= N, 60)
    d = rt.Delivery(expected, sub.received())
    t.check(not d.missing and not d.unexpected and d.duplicates == 0,
            "%d messages: every one arrives exactly once" % N, d.describe())
    bad = []
    for k in range(30):
        topic = ("pool/t%02d" % k).encode()
        order = [m.payload for m in sub.received() if m.topic == topic]
        if order != [p for tp, p in expected if tp == topic]:
            bad.append(topic)
    t.check(not bad, "order per topic kept on all 30 topics", repr(bad))
    spread = collections.Counter()
    for line in dst2.log_lines():
        m = re.match(r"^Received PUBLISH from (pool-dst-\d) \(", line)
        if m:
            spread[m.group(1)] += 1
    t.note("messages per pool connection (destination's view): %s"
           % dict(sorted(spread.items())))
    pub.stop()
    sub.stop()
    relay2.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
