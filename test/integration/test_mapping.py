"""Route mapping: topic templates, out_qos, retain keep/clear, MQTT 5 properties forward/drop.

Two MQTT 5 brokers, src and dst, one route per feature from src to dst (disjoint filters), a
subscriber on dst on "#" at QoS 2 with Retain As Published (so a live delivery shows the retain
flag the relay published with).

- templates: "${topic}" (the default and inside text), "${1}"/"${2}" (in swapped order), "${#}",
  and the dropped '/': filter "th/#" with topic "th" and template "site/${#}" gives "site";
  filter "tm/+/#" with "m/${1}/r/${#}": "tm/k" gives "m/k/r".
- out_qos: 1 turns a QoS 2 publish into QoS 1 (QoS 0 and 1 unchanged); "same" keeps 0, 1, 2.
- retain keep: a retained publish is retained on dst (a subscriber that subscribes later gets it
  with retain set); clear: it is not retained there (the late subscriber gets nothing; a marker
  published afterwards proves the retained messages had been sent).
- properties forward: user properties in order (a repeated key too), content type, payload
  format indicator, response topic, correlation data, message expiry present and not larger than
  sent; drop: none of them arrive. Both: SPEC's loop-guard "relay-path" user property toward an
  MQTT 5 destination holds our relay id.
"""
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

USER_PROPS = [("k1", "v1"), ("k2", "v2 \u00e9"), ("k1", "v3")]
CORR = b"\x00\x01corr\xfe\xff"
EXPIRY = 3600


def run(t):
    src = t.broker("src")
    dst = t.broker("dst")
    brokers = {"src": src, "dst": dst}
    R = {"from": "src", "to": "dst"}
    routes = [
        dict(R, name="tpl-default", filter="td/#"),
        dict(R, name="tpl-topic", filter="tt/#", topic="copy/${topic}/end"),
        dict(R, name="tpl-levels", filter="tl/+/x/+", topic="lv/${2}/${1}"),
        dict(R, name="tpl-hash", filter="th/#", topic="site/${#}"),
        dict(R, name="tpl-mixed", filter="tm/+/#", topic="m/${1}/r/${#}"),
        dict(R, name="outqos-1", filter="oq/#", qos=2, out_qos=1, topic="oq1/${#}"),
        dict(R, name="outqos-same", filter="os/#", qos=2, out_qos="same", topic="oqs/${#}"),
        dict(R, name="retain-keep", filter="rk/#", retain="keep", topic="rkout/${#}"),
        dict(R, name="retain-clear", filter="rc/#", retain="clear", topic="rcout/${#}"),
        dict(R, name="props-forward", filter="pf/#", properties="forward", topic="pfout/${#}"),
        dict(R, name="props-drop", filter="pd/#", properties="drop", topic="pdout/${#}"),
    ]
    relay = t.relay(
        brokers=[{"name": "src", "url": src.url, "version": "5"},
                 {"name": "dst", "url": dst.url, "version": "5"}],
        routes=routes)
    relay.wait_ready(brokers)
    sub = t.client(dst, "5").subscribe("#", 2, retainAsPublished=True)
    pub = t.client(src, "5")

    def arrived(topic, timeout=15):
        topic = topic.encode()
        rt.wait_until(lambda: sub.count(lambda m: m.topic == topic) > 0, timeout)
        return sub.received(lambda m: m.topic == topic)

    # ------------------------------------------------------------------------------------
    t.section("topic templates")
    cases = [
        ("td/a/b", "td/a/b", "default template ${topic}"),
        ("tt/a/b", "copy/tt/a/b/end", "copy/${topic}/end"),
        ("tl/p/x/q", "lv/q/p", "tl/+/x/+ -> lv/${2}/${1}"),
        ("th/a/b/c", "site/a/b/c", "th/# -> site/${#}"),
        ("th", "site", "th/# with topic \"th\" -> site/${#} gives \"site\" (the '/' dropped)"),
        ("tm/k/z/w", "m/k/r/z/w", "tm/+/# -> m/${1}/r/${#}"),
        ("tm/k", "m/k/r", "tm/+/# with topic \"tm/k\" -> \"m/k/r\" (the '/' dropped)"),
        ("tl/\u00e9/x/\u6570", "lv/\u6570/\u00e9", "levels with non-ASCII UTF-8"),
    ]
    for i, (topic, _, _) in enumerate(cases):
        pub.publish(topic, ("tpl %d" % i).encode(), 1)
    pub.wait_published()
    for i, (topic, out, what) in enumerate(cases):
        got = arrived(out)
        t.check([m.payload for m in got] == [("tpl %d" % i).encode()],
                "%s: %r arrives as %r" % (what, topic, out),
                "on %r: %r" % (out, [m.payload for m in got]))
    # Nothing arrived under another name (e.g. "site/" instead of "site").
    outs = set(o.encode() for _, o, _ in cases)
    stray = [m.topic for m in sub.received() if m.payload.startswith(b"tpl ") and
             m.topic not in outs]
    t.check(not stray, "no template output on any other topic", repr(stray))

    # ------------------------------------------------------------------------------------
    t.section("out_qos")
    for q in (0, 1, 2):
        pub.publish("oq/q%d" % q, b"oq", q)
        pub.publish("os/q%d" % q, b"os", q)
    pub.wait_published()
    for q in (0, 1, 2):
        got = arrived("oq1/q%d" % q)
        t.check(got and all(m.qos == min(q, 1) for m in got),
                "out_qos 1: a QoS %d publish arrives at QoS %d" % (q, min(q, 1)),
                repr([m.qos for m in got]))
        got = arrived("oqs/q%d" % q)
        t.check(got and all(m.qos == q for m in got),
                "out_qos \"same\": a QoS %d publish stays QoS %d" % (q, q),
                repr([m.qos for m in got]))

    # ------------------------------------------------------------------------------------
    t.section("retain keep / clear")
    pub.publish("rk/state", b"kept", 1, retain=True)
    pub.publish("rc/state", b"cleared", 1, retain=True)
    pub.wait_published()
    live_k = arrived("rkout/state")
    live_c = arrived("rcout/state")
    t.check(live_k and live_k[0].retain,
            "keep: the live copy is published retained (seen with Retain As Published)",
            repr(live_k))
    t.check(live_c and not live_c[0].retain,
            "clear: the live copy is published with retain 0", repr(live_c))
    for version in ("5", "3.1.1"):
        late = t.client(dst, version).subscribe("rkout/#", 1).subscribe("rcout/#", 1)
        # Mosquitto sends retained messages while handling SUBSCRIBE: a marker published after
        # the SUBACKs arrives after all of them.
        marker = t.client(dst, "5")
        marker.publish("rcout/marker", b"marker", 1)
        marker.wait_published()
        t.check(late.wait_for(lambda ms: any(m.topic == b"rcout/marker" for m in ms), 15),
                "late %s subscriber: the marker arrives" % version)
        got = late.received()
        k = [m for m in got if m.topic == b"rkout/state"]
        c = [m for m in got if m.topic == b"rcout/state"]
        t.check(len(k) == 1 and k[0].retain and k[0].payload == b"kept",
                "keep: a subscriber (MQTT %s) that subscribes later gets it, retained" % version,
                repr(k))
        t.check(not c, "clear: a subscriber (MQTT %s) that subscribes later gets nothing"
                % version, repr(c))
        late.stop()
        marker.stop()

    # ------------------------------------------------------------------------------------
    t.section("MQTT 5 properties forward / drop")
    for prefix in ("pf", "pd"):
        props = rt.publish_props(UserProperty=USER_PROPS, ContentType="text/plain; charset=utf-8",
                                 PayloadFormatIndicator=1, ResponseTopic="reply/to/me",
                                 CorrelationData=CORR, MessageExpiryInterval=EXPIRY)
        pub.publish(prefix + "/x", b"with properties \xc3\xa9", 1, props=props)
    pub.wait_published()
    fwd = arrived("pfout/x")
    drp = arrived("pdout/x")
    t.check(len(fwd) == 1 and len(drp) == 1, "both messages arrive once",
            "%d and %d" % (len(fwd), len(drp)))
    p = fwd[0].props
    ups = p.get("UserProperty", [])
    mine = [kv for kv in ups if kv[0] != "relay-path"]
    t.check(mine == USER_PROPS, "forward: user properties, in order (repeated key too)",
            repr(ups))
    t.check(p.get("ContentType") == "text/plain; charset=utf-8", "forward: content type",
            repr(p))
    t.check(p.get("PayloadFormatIndicator") == 1, "forward: payload format indicator",
            repr(p))
    t.check(p.get("ResponseTopic") == "reply/to/me", "forward: response topic (not remapped)",
            repr(p))
    t.check(p.get("CorrelationData") == CORR, "forward: correlation data byte for byte",
            repr(p))
    t.check(0 < p.get("MessageExpiryInterval", 0) <= EXPIRY,
            "forward: message expiry present and not larger than sent (%s <= %d)"
            % (p.get("MessageExpiryInterval"), EXPIRY), repr(p))
    q = drp[0].props
    leaked = {k: v for k, v in q.items() if k != "UserProperty"}
    leaked_up = [kv for kv in q.get("UserProperty", []) if kv[0] != "relay-path"]
    t.check(not leaked and not leaked_up, "drop: none of the properties arrive", repr(q))
    for name, m in (("forward", fwd[0]), ("drop", drp[0])):
        path = [v for k, v in m.props.get("UserProperty", []) if k == "relay-path"]
        t.check(path == [relay.id], "%s: the relay-path user property is \"%s\" (SPEC loop "
                                    "guard)" % (name, relay.id), repr(path))
    t.check(fwd[0].payload == b"with properties \xc3\xa9" and
            drp[0].payload == b"with properties \xc3\xa9", "payloads unchanged")

    pub.stop()
    sub.stop()
    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
