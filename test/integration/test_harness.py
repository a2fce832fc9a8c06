"""Harness self-test: brokers, clients and the bookkeeping work without the relay.

Publishes straight into one broker (no relay) at each protocol version and QoS, and checks what
the other tests rely on: byte-exact topics and payloads (binary, empty, 100 KiB), MQTT 5
properties as paho reports them, retained messages to a late subscriber, SIGSTOP/SIGCONT, and a
broker killed and restarted on the same port with its persistent session. If this fails, the
other integration tests' failures say nothing about the relay.
"""
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402


def run(t):
    t.section("broker start, client versions, byte-exact delivery")
    b = t.broker("b", max_inflight=100)
    for version in ("3.1", "3.1.1", "5"):
        sub = t.client(b, version).subscribe("h/#", 2)
        pub = t.client(b, version)
        expected = []
        for qos in (0, 1, 2):
            for topic, payload in [
                ("h/%s/q%d/bin" % (version, qos), bytes(range(256))),
                ("h/%s/q%d/empty" % (version, qos), b""),
                ("h/%s/q%d/big" % (version, qos), bytes(i * 7 % 251 for i in range(100 * 1024))),
                ("h/%s/q%d/\u00e9 \u6570\u636e" % (version, qos), b"utf8"),
            ]:
                pub.publish(topic, payload, qos)
                expected.append((topic.encode(), payload))
        pub.wait_published(30)
        sub.wait_for(lambda ms: len(ms) >= len(expected), 30)
        d = rt.Delivery(expected, sub.received())
        t.check(not d.missing and not d.unexpected and d.duplicates == 0,
                "MQTT %s: %d messages arrive byte for byte, once" % (version, len(expected)),
                d.describe())
        t.check(all(m.qos == int(m.topic.split(b"/")[2][1:]) for m in sub.received()),
                "MQTT %s: each arrives at the QoS it was published with" % version)
        sub.stop()
        pub.stop()

    t.section("MQTT 5 properties as paho reports them")
    sub = t.client(b, "5").subscribe("p/#", 1)
    pub = t.client(b, "5")
    props = rt.publish_props(UserProperty=[("k1", "v1"), ("k2", "v2"), ("k1", "v3")],
                             ContentType="text/plain", PayloadFormatIndicator=1,
                             ResponseTopic="reply/here", CorrelationData=b"\x00\x01corr\xff",
                             MessageExpiryInterval=3600)
    pub.publish("p/x", b"hello", 1, props=props)
    pub.wait_published()
    t.check(sub.wait_for(lambda ms: len(ms) == 1, 10), "the message arrives")
    p = sub.received()[0].props
    t.check(p.get("UserProperty") == [("k1", "v1"), ("k2", "v2"), ("k1", "v3")],
            "user properties in order", repr(p))
    t.check(p.get("ContentType") == "text/plain" and p.get("PayloadFormatIndicator") == 1 and
            p.get("ResponseTopic") == "reply/here" and
            p.get("CorrelationData") == b"\x00\x01corr\xff" and
            0 < p.get("MessageExpiryInterval", 0) <= 3600, "the other properties", repr(p))

    t.section("retained message to a late subscriber, marker ordering")
    pub.publish("r/state", b"kept", 1, retain=True)
    pub.wait_published()
    late = t.client(b, "5").subscribe("r/#", 1)
    pub.publish("r/marker", b"m", 1)
    pub.wait_published()
    t.check(late.wait_for(lambda ms: any(m.topic == b"r/marker" for m in ms), 10),
            "the marker reaches the late subscriber")
    got = late.received()
    t.check(got[0].topic == b"r/state" and got[0].retain and got[0].payload == b"kept",
            "the retained message came first, with retain set", repr(got))

    t.section("SIGSTOP / SIGCONT")
    s2 = t.client(b, "3.1.1", clean=False, client_id="h-stop").subscribe("s/#", 1)
    b.pause()
    pub2 = rt.Client(t, b, "3.1.1")
    b.resume()
    pub2.connect()
    pub2.publish("s/1", b"after", 1)
    pub2.wait_published()
    t.check(s2.wait_for(lambda ms: len(ms) == 1, 10), "delivery after SIGCONT")

    t.section("kill and restart on the same port with persistence")
    p = t.broker("p", persistence=True, autosave_interval=1)
    s3 = t.client(p, "5", clean=False, client_id="h-persist").subscribe("k/#", 1)
    n = s3.connects
    p.restart()  # a clean stop saves the subscription
    t.check(s3.wait_reconnected(n), "the persistent subscriber reconnects after a restart")
    n = s3.connects
    p.kill()
    p.start()
    t.check(s3.wait_reconnected(n), "and after SIGKILL and a restart on port %d" % p.port)
    pub3 = t.client(p, "5")
    pub3.publish("k/1", b"survived", 1)
    pub3.wait_published()
    t.check(s3.wait_for(lambda ms: len(ms) >= 1, 15),
            "its subscription survived the kill (saved before it)")
    t.check(len(p.log_paths) == 3 and "h-persist" in p.connected_ids(),
            "each run has its own log, and the log shows client ids")


if __name__ == "__main__":
    rt.main(run, __doc__, needs_relay=False)
