"""Version pairs: 3.1 -> 3.1.1, 3.1.1 -> 5, 5 -> 3.1.1, 5 -> 5, at QoS 0, 1 and 2.

For each pair, two brokers A (the relay speaks the first version to it) and B (the second), a
route A -> B on "up/#" and a route B -> A on "down/#" (disjoint), both at subscription QoS 2 with
out_qos "same". Test clients speak the same version as the relay on each broker. Each direction
carries a binary payload (all 256 byte values), an empty payload, a 100 KiB payload, a topic
with non-ASCII UTF-8 and 20 numbered messages on one topic, at each QoS.

Checks: every (topic, payload) arrives byte for byte at the QoS it was published with and with
retain 0; QoS 0 exactly once (each QoS 0 message is published after the previous one arrived, so
a full window can not excuse a drop); QoS 1 and 2 at least once, both directions in flight at the
same time, duplicates reported; nothing unexpected arrives; the numbered messages keep their
order (first arrivals).
"""
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

PAIRS = [("3.1", "3.1.1"), ("3.1.1", "5"), ("5", "3.1.1"), ("5", "5")]
BIG = bytes((i * 31 + 7) % 256 for i in range(100 * 1024))
SEQ = 20


def message_set(prefix, qos, tag):
    """(topic, payload) pairs for one direction at one QoS, in publish order."""
    msgs = [
        ("%s/q%d/bin" % (prefix, qos), bytes(range(256))),
        ("%s/q%d/empty" % (prefix, qos), b""),
        ("%s/q%d/big" % (prefix, qos), BIG),
        ("%s/q%d/\u00e9t\u00e9/\u6570\u636e x" % (prefix, qos), ("utf8 " + tag).encode()),
    ]
    msgs += [("%s/q%d/seq" % (prefix, qos), ("%s n=%d" % (tag, i)).encode()) for i in range(SEQ)]
    return msgs


def run_pair(t, va, vb):
    tag = "%s->%s" % (va, vb)
    t.section("MQTT %s -> %s (and back on disjoint topics)" % (va, vb))
    a = t.broker("a-" + va.replace(".", ""), max_inflight=100)
    b = t.broker("b-" + vb.replace(".", ""), max_inflight=100)
    brokers = {"a": a, "b": b}
    relay = t.relay(
        brokers=[
            # Short client ids: MQTT 3.1 allows 23 characters.
            {"name": "a", "url": a.url, "version": va, "reconnect": {"min": 100, "max": 1000}},
            {"name": "b", "url": b.url, "version": vb, "reconnect": {"min": 100, "max": 1000}},
        ],
        routes=[
            {"name": "up", "from": "a", "to": "b", "filter": "up/#", "qos": 2,
             "out_qos": "same"},
            {"name": "down", "from": "b", "to": "a", "filter": "down/#", "qos": 2,
             "out_qos": "same"},
        ])
    relay.wait_ready(brokers)

    pub_a = t.client(a, va)
    pub_b = t.client(b, vb)
    sub_a = t.client(a, va).subscribe("down/#", 2)
    sub_b = t.client(b, vb).subscribe("up/#", 2)

    # QoS 0: one message each way at a time, waiting for both to arrive before the next, so the
    # relay's windows are empty: on an idle loopback a QoS 0 loss is a bug, not an overflow.
    up0 = message_set("up", 0, tag)
    down0 = message_set("down", 0, tag)
    for (tu, pu), (td, pd) in zip(up0, down0):
        want_b = sub_b.count(lambda m: m.topic == tu.encode() and m.payload == pu) + 1
        want_a = sub_a.count(lambda m: m.topic == td.encode() and m.payload == pd) + 1
        pub_a.publish(tu, pu, 0)
        pub_b.publish(td, pd, 0)
        ok = rt.wait_until(
            lambda: sub_b.count(lambda m: m.topic == tu.encode() and m.payload == pu) >= want_b
            and sub_a.count(lambda m: m.topic == td.encode() and m.payload == pd) >= want_a, 10)
        if not ok:
            break  # reported below with everything else that is missing
    for direction, sub, sent in (("up A->B", sub_b, up0), ("down B->A", sub_a, down0)):
        got = sub.received(lambda m: m.topic.split(b"/")[1] == b"q0")
        d = rt.Delivery([(x.encode(), p) for x, p in sent], got)
        t.check(not d.missing and not d.unexpected and d.duplicates == 0,
                "%s QoS 0: %d messages arrive byte for byte, exactly once" % (direction,
                                                                              len(sent)),
                d.describe())
        t.check(all(m.qos == 0 and not m.retain for m in got),
                "%s QoS 0: delivered at QoS 0, retain 0" % direction)

    # QoS 1 and 2: everything in flight at once, both directions interleaved.
    sent = {"up": [], "down": []}
    for qos in (1, 2):
        up = message_set("up", qos, tag)
        down = message_set("down", qos, tag)
        for (tu, pu), (td, pd) in zip(up, down):
            pub_a.publish(tu, pu, qos)
            pub_b.publish(td, pd, qos)
        sent["up"] += [(x.encode(), p, qos) for x, p in up]
        sent["down"] += [(x.encode(), p, qos) for x, p in down]
    pub_a.wait_published(60)
    pub_b.wait_published(60)

    def all_arrived(sub, expected):
        have = set((m.topic, m.payload) for m in sub.received())
        return all((x, p) in have for x, p, _ in expected)

    rt.wait_until(lambda: all_arrived(sub_b, sent["up"]) and all_arrived(sub_a, sent["down"]),
                  60)
    dups = {}
    for direction, sub, exp in (("up A->B", sub_b, sent["up"]), ("down B->A", sub_a,
                                                                 sent["down"])):
        for qos in (1, 2):
            got = sub.received(lambda m: m.topic.split(b"/")[1] == b"q%d" % qos)
            want = [(x, p) for x, p, q in exp if q == qos]
            d = rt.Delivery(want, got)
            dups["%s q%d" % (direction, qos)] = d.duplicates
            t.check(not d.missing and not d.unexpected,
                    "%s QoS %d: %d messages arrive byte for byte (%d duplicates)"
                    % (direction, qos, len(want), d.duplicates), d.describe())
            t.check(all(m.qos == qos for m in got),
                    "%s QoS %d: delivered at QoS %d" % (direction, qos, qos),
                    repr(sorted(set(m.qos for m in got))))
            t.check(not any(m.retain for m in got), "%s QoS %d: retain 0" % (direction, qos))
            seq_topic = ("%s/q%d/seq" % (direction.split()[0], qos)).encode()
            order = rt.first_occurrence_order([m for m in got if m.topic == seq_topic])
            expect_order = [p for x, p in want if x == seq_topic]
            t.check(order == expect_order,
                    "%s QoS %d: the %d numbered messages keep their order" % (direction, qos,
                                                                              SEQ),
                    "arrived %r" % order[:SEQ])
    t.note("duplicates %s: %s" % (tag, dups))

    for c in (pub_a, pub_b, sub_a, sub_b):
        c.stop()
    relay.stop()
    a.stop()
    b.stop()


def run(t):
    for va, vb in PAIRS:
        run_pair(t, va, vb)


if __name__ == "__main__":
    rt.main(run, __doc__)
