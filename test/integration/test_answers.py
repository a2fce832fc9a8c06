"""The destination-answer policy (issue 13 item 6; mqtt-relay.conf(5), "What a destination's
answer means"): what the relay does with each PUBACK / PUBREC reason code, against
hostile_broker.py's reason_codes scenario (a destination that answers a PUBLISH whose topic has
a level "rc-XX" with reason code 0xXX once, then 0x00).

  0x00, 0x10                    delivered: forwarded and acknowledged to the source
  0x83, 0x97                    retry later: the message goes again after a back-off, in its
                                topic's order (the broker saw each once refused, then again;
                                the second copies arrive in publish order); the link stays up
  0x80, 0x87, 0x90, 0x91, 0x99  dropped and counted by reason (rejected, not_authorized,
                                topic_invalid, rejected, payload_invalid): never sent again;
                                the source is acknowledged (nothing is redelivered for ever)

Each at QoS 1 (PUBACK) and QoS 2 (PUBREC). Then 0x95, which MQTT 5 does not allow in a PUBACK:
the link is closed (DISCONNECT 0x81), and the message goes again on the next link. Asserted: what the destination saw (every answer it
gave, in order), /metrics (forwarded and dropped by reason), one link all along, and the source
acknowledged for every message (the relay holds nothing).

    /usr/bin/python3 test_answers.py --relay build/relay/mqtt-relay [--keep] [-v]
"""
import collections
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import hostile_broker as hbm  # noqa: E402

# code -> drop reason label, None: delivered, "retry": sent again
POLICY = collections.OrderedDict([
    (0x00, None), (0x10, None), (0x83, "retry"), (0x97, "retry"), (0x80, "rejected"),
    (0x87, "not_authorized"), (0x90, "topic_invalid"), (0x91, "rejected"),
    (0x99, "payload_invalid"),
])
PER_CODE = 5


def run(t):
    t.section("each PUBACK / PUBREC reason code: delivered, retried in order, or dropped by "
              "reason")
    src = t.broker("src")
    hb = hbm.HostileBroker("reason_codes", "dest", name="answers", answer_times=1).start()
    t._register(hb)
    mport = rt.free_port()
    relay = t.relay(relay={"id": "answers", "metrics": "127.0.0.1:%d" % mport},
                    brokers=[{"name": "src", "url": src.url, "version": "5"},
                             {"name": "dst", "url": hb.url, "version": "5"}],
                    routes=[{"name": "q1", "from": "src", "to": "dst", "filter": "q1/#",
                             "qos": 1},
                            {"name": "q2", "from": "src", "to": "dst", "filter": "q2/#",
                             "qos": 2}])
    rid = relay.client_ids("src")[0]
    t.check(rt.wait_until(lambda: hb.live() and sum(1 for s in src.subscriptions()
                                                     if s[0] == rid) >= 2, 20),
            "the relay is connected to the destination and subscribed at the source")
    # within Mosquitto's Receive Maximum (20): past it, it answers QoS 2 with PUBREC 0x97
    pub = t.client(src, "5", max_inflight=20)
    sent = collections.defaultdict(list)  # topic -> payloads in publish order
    for q in (1, 2):
        for i in range(PER_CODE):
            for code in POLICY:
                topic = "q%d/rc-%02x/t" % (q, code)
                payload = b"%d" % i
                pub.publish(topic, payload, q)
                sent[topic.encode()].append(payload)
    pub.wait_published(30)
    n_all = sum(len(v) for v in sent.values())

    def answered():
        got = collections.Counter()
        for c in hb.snapshot():
            for topic, payload, code, dup in c.answers:
                got[(topic, payload, code)] += 1
        return got

    def settled():
        got = answered()
        for topic, payloads in sent.items():
            code = int(topic.split(b"/")[1][3:], 16)
            for p in payloads:
                if not got[(topic, p, code)] and code:
                    return False
                if POLICY[code] == "retry" and not got[(topic, p, 0)]:
                    return False
                if not code and not got[(topic, p, 0)]:
                    return False
        return True

    t.check(rt.wait_until(settled, 30), "the destination answered every message as planned")
    conns = hb.snapshot()
    t.check(len(conns) == 1 and conns[0].open,
            "one link all along, still open (%s)" % conns)
    answers = conns[0].answers
    for topic, payloads in sorted(sent.items()):
        code = int(topic.split(b"/")[1][3:], 16)
        mine = [(p, c, dup) for tp, p, c, dup in answers if tp == topic]
        if POLICY[code] == "retry":
            refused = [p for p, c, _ in mine if c == code]
            taken = [p for p, c, _ in mine if c == 0]
            t.check(refused == payloads and taken == payloads,
                    "%s: each refused once (0x%02x), then taken, in publish order"
                    % (topic.decode(), code), "refused %s, taken %s" % (refused, taken))
        elif POLICY[code] is None:
            t.check([p for p, _, _ in mine] == payloads,
                    "%s: sent once each, in order, delivered" % topic.decode())
        else:
            t.check([p for p, _, _ in mine] == payloads and all(c == code for _, c, _ in mine),
                    "%s: sent once each, refused 0x%02x, never again" % (topic.decode(), code))

    ms = rt.get_metrics(mport)
    for q in (1, 2):
        route = "q%d" % q
        want_fwd = PER_CODE * sum(1 for v in POLICY.values() if v in (None, "retry"))
        fwd = rt.metric(ms, "mqtt_relay_messages_forwarded_total", route=route)
        t.check(fwd == want_fwd, "%s: %g forwarded (delivered + retried) = %d"
                % (route, fwd, want_fwd))
        for reason in sorted(set(v for v in POLICY.values() if v not in (None, "retry"))):
            want = PER_CODE * sum(1 for v in POLICY.values() if v == reason)
            got = rt.metric(ms, "mqtt_relay_messages_dropped_total", route=route, reason=reason)
            t.check(got == want, "%s: dropped %s = %g (%d)" % (route, reason, got, want))
    t.check(rt.metric(ms, "mqtt_relay_inflight", broker="dst") == 0,
            "nothing left in flight toward the destination")
    # every source message was acknowledged to the source, whatever the destination said: the
    # source broker's log counts the relay's PUBACKs (QoS 1) and PUBCOMPs (QoS 2)
    def acks(kind):
        return sum(1 for l in src.log_lines() if l.startswith("Received %s from %s " % (kind, rid)))
    t.check(rt.wait_until(lambda: acks("PUBACK") == n_all // 2 and acks("PUBCOMP") == n_all // 2,
                          10),
            "the source got %d PUBACKs and %d PUBCOMPs from the relay (%d each)"
            % (acks("PUBACK"), acks("PUBCOMP"), n_all // 2))
    recv = sum(rt.metric(ms, "mqtt_relay_messages_received_total", route="q%d" % q)
               for q in (1, 2))
    t.check(recv == n_all, "%g of %d received from the source, each once (no redelivery)"
            % (recv, n_all))
    relay.check_alive()
    lines = [l for l in relay.log_lines() if "refused a message" in l or "busy" in l]
    t.note("%d log lines about refusals (rate-limited), e.g. %s"
           % (len(lines), lines[0].split(": ", 1)[1] if lines else "-"))

    t.section("a code MQTT 5 does not allow in PUBACK (0x95): a protocol error, the link "
              "closes (DISCONNECT 0x81) and the message goes again on the next one")
    pub.publish("q1/rc-95/t", b"big", 1)
    pub.wait_published(10)
    t.check(rt.wait_until(lambda: len(hb.snapshot()) >= 2 and
                          any(a[2] == 0 and a[0] == b"q1/rc-95/t"
                              for a in hb.snapshot()[-1].answers), 20),
            "a second link, where the message is taken")
    first = hb.snapshot()[0]
    t.check(first.disconnect_code == 0x81 and not first.open,
            "the first link ended with the relay's DISCONNECT 0x81 (%s)" % first)
    t.check(any("0x81" in l and "dst#0" in l for l in relay.log_lines()),
            "one log line says why")
    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
