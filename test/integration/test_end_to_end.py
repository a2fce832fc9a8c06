"""End-to-end acknowledgement: a message is acknowledged to its source only after the
destination acknowledged it.

Two MQTT 5 brokers, a route src -> dst on "e2e/#" at QoS 1, a persistent subscriber on dst. We
watch the source with Mosquitto's own eyes (log_type all): "Sending PUBLISH to <relay id> (...,
m<mid>, '<topic>', ...)" when it hands a message to the relay, "Received PUBACK from <relay id>
(Mid: <mid>, ...)" when the relay acknowledges it.

A. dst is SIGSTOPped; 40 QoS 1 messages are published at src. Mosquitto hands them to the relay
   and, while dst stays stopped, receives no PUBACK from the relay for any of them (the relay
   can not have had the destination's acknowledgement). The observation window is a bound (a
   correct relay passes whatever its length; an early-acknowledging one acknowledges within
   milliseconds of receiving). After SIGCONT every message arrives at dst and only then does the
   source get its PUBACKs.
B. Same, then the relay is killed with SIGKILL while dst is stopped, dst resumed and the relay
   started again: every message still arrives, because the source kept them unacknowledged in
   the relay's session and redelivered them (its log shows the redeliveries, DUP set).
"""
import re
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

N = 40
HOLD = 3.0  # seconds during which a stopped destination must not let an ack through


def sent_to(broker, cid, prefix, since):
    """{mid: topic} of PUBLISHes Mosquitto sent to cid on topics starting with prefix, in log
    lines[since:] (the last mid wins when Mosquitto reuses one)."""
    out = {}
    pat = re.compile(r"^Sending PUBLISH to %s \(d(\d), q\d, r\d, m(\d+), '([^']*)'"
                     % re.escape(cid))
    for line in broker.log_lines()[since:]:
        m = pat.match(line)
        if m and m.group(3).startswith(prefix):
            out[int(m.group(2))] = m.group(3)
    return out


def redelivered(broker, cid, prefix, since):
    pat = re.compile(r"^Sending PUBLISH to %s \(d1, q\d, r\d, m\d+, '([^']*)'" % re.escape(cid))
    return sum(1 for line in broker.log_lines()[since:]
               if pat.match(line) and pat.match(line).group(1).startswith(prefix))


def acked_by(broker, cid, since):
    pat = re.compile(r"^Received PUBACK from %s \(Mid: (\d+)" % re.escape(cid))
    out = []
    for line in broker.log_lines()[since:]:
        m = pat.match(line)
        if m:
            out.append(int(m.group(1)))
    return out


def run(t):
    src = t.broker("src")
    dst = t.broker("dst")
    relay = t.relay(
        brokers=[{"name": "src", "url": src.url, "version": "5",
                  "reconnect": {"min": 100, "max": 1000}},
                 {"name": "dst", "url": dst.url, "version": "5",
                  "reconnect": {"min": 100, "max": 1000}}],
        routes=[{"from": "src", "to": "dst", "filter": "e2e/#", "qos": 1}])
    relay.wait_ready({"src": src, "dst": dst})
    rid = relay.client_ids("src")[0]
    sub = t.client(dst, "5", clean=False).subscribe("e2e/#", 1)
    pub = t.client(src, "5")

    for part, prefix, kill in (("A", "e2e/a/", False), ("B", "e2e/b/", True)):
        t.section("%s: destination stopped%s" % (
            part, ", relay killed (SIGKILL) and restarted" if kill else ""))
        mark = len(src.log_lines())
        dst.pause()
        expected = []
        for i in range(N):
            payload = ("%s %d" % (part, i)).encode()
            pub.publish(prefix + str(i), payload, 1)
            expected.append(((prefix + str(i)).encode(), payload))
        pub.wait_published(30)  # the source broker acknowledged the publisher
        rt.wait_until(lambda: len(sent_to(src, rid, prefix, mark)) >= N, 5)
        handed = sent_to(src, rid, prefix, mark)
        t.check(len(handed) > 0, "the source handed %d of the %d messages to the relay (%s)"
                % (len(handed), N, rid))
        early = rt.wait_until(
            lambda: set(acked_by(src, rid, mark)) & set(handed), HOLD)
        t.check(not early, "while the destination is stopped, the source receives no PUBACK "
                "from the relay for them (watched %.0fs)" % HOLD,
                "PUBACKed mids: %s" % sorted(early or []))

        if kill:
            relay.kill()
            dst.resume()
            t.note("SIGCONT broker dst; starting the relay again")
            mark_restart = len(src.log_lines())
            relay.start()
        else:
            dst.resume()
            t.note("SIGCONT broker dst")

        want = set(expected)
        sub.wait_for(lambda ms: want <= set((m.topic, m.payload) for m in ms), 60)
        d = rt.Delivery(expected, sub.received(lambda m: m.topic.startswith(prefix.encode())))
        t.check(not d.missing and not d.unexpected,
                "after SIGCONT every one of the %d messages arrives (%d duplicates)"
                % (N, d.duplicates), d.describe())
        if not kill:
            rt.wait_until(lambda: set(handed) <= set(acked_by(src, rid, mark)), 15)
            left = set(handed) - set(acked_by(src, rid, mark))
            t.check(not left, "and the source now has the relay's PUBACK for each of them",
                    "still unacknowledged mids: %s" % sorted(left))
        else:
            n = redelivered(src, rid, prefix, mark_restart)
            t.note("the source redelivered %d of them with DUP set after the restart" % n)
            t.check(n > 0, "the source redelivered unacknowledged messages to the restarted "
                    "relay (its session held them)")

    pub.stop()
    sub.stop()
    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
