"""bifromq_broker.py self-test: each rule of /work/shared/BIFROMQ.md, checked with plain clients
(raw sockets speaking exact bytes, and paho-mqtt), no relay.

One section per rule. Each asserts outcomes: the packets a client gets (reason codes, packet
ids, DUP flags, properties), what arrives where, and the broker's own tally (accepted,
dropped by reason, disconnects by reason code, the count of the busiest fixed one-second
window). Time-scaled options (redeliver period, keepalive minimum, refusal delay) keep the run
short; nothing asserts how long something took.

Brokers run in this process (a thread each) except in the "program" section, which starts
bifromq_broker.py as a process and uses its --stats-file, --control-port and SIGTERM.

    /usr/bin/python3 test_bifromq_rules.py [--relay IGNORED] [--bench]

--bench also measures throughput (16 connections of QoS 1 publishes, one subscriber) and
prints it; not part of the registered test.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import bifromq_broker as bb  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BROKERS = []
RAWS = []
BENCH_ON = False


def broker(**kw):
    kw.setdefault("refuse_delay", 0.05)
    b = bb.BifroBroker(port=0, **kw).start()
    b.name = "bifromq"
    BROKERS.append(b)
    return b


def raw(b, version=5):
    c = bb.RawClient(b.port, version)
    RAWS.append(c)
    return c


def connect(b, cid, version=5, **kw):
    c = raw(b, version)
    ack = c.connect(cid, **kw)
    return c, ack


def conn_stats(b, cid, times=False):
    """The tally of the last connection with client id cid."""
    cs = [c for c in b.stats(times)["connections"] if c["client_id"] == cid]
    return cs[-1] if cs else None


def wait_stats(b, cid, pred, timeout=5):
    return rt.wait_until(lambda: (lambda s: s is not None and pred(s))(conn_stats(b, cid)),
                         timeout)


def kinds(pkts, kind):
    return [p for p in pkts if p["type"] == kind]


def pids(pkts, kind):
    return [p["pid"] for p in pkts if p["type"] == kind]


def subscribe(c, filters, pid=1, props=None):
    """filters: [(filter, options)]; returns the SUBACK codes."""
    c.send(bb.enc_subscribe(c.version, pid, filters, props))
    p = c.read()
    assert p is not None and p["type"] == "SUBACK", p
    return p["codes"]


def drain_publishes(c, n, timeout=5, ack=True, idle=None):
    """Reads until n PUBLISHes arrived (acknowledging QoS 1/2), timeout passed, or (idle)
    nothing came for idle seconds; the PUBLISHes."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        left = max(0.05, deadline - time.monotonic())
        try:
            p = c.read(min(left, idle) if idle else left)
        except socket.timeout:
            break
        if p is None:
            break
        if p["type"] == "PUBLISH":
            got.append(p)
            if ack and p["qos"] == 1:
                c.send(bb.enc_ack(bb.PUBACK, p["pid"], c.version))
            elif ack and p["qos"] == 2:
                c.send(bb.enc_ack(bb.PUBREC, p["pid"], c.version))
        elif p["type"] == "PUBREL" and ack:
            c.send(bb.enc_ack(bb.PUBCOMP, p["pid"], c.version))
    return got


# ----------------------------------------------------------------------------------------------


def sec_connect(t):
    t.section("CONNECT/CONNACK at 3.1, 3.1.1 and 5.0; CONNACK properties; paho interop")
    b = broker()
    for v, name in ((3, "3.1"), (4, "3.1.1"), (5, "5")):
        c, ack = connect(b, "cv%d" % v, v)
        t.check(ack is not None and ack["type"] == "CONNACK" and ack["code"] == 0,
                "MQTT %s: CONNACK 0" % name, repr(ack))
    c, ack = connect(b, "cprops", 5)
    p = ack["props"]
    t.check(p.get(bb.P_RECEIVE_MAX) == [200] and p.get(bb.P_TOPIC_ALIAS_MAX) == [10] and
            p.get(bb.P_MAX_PACKET) == [256 * 1024] and bb.P_MAX_QOS not in p,
            "5.0 CONNACK: Receive Maximum 200, Topic Alias Maximum 10, Maximum Packet Size "
            "262144, no Maximum QoS", repr(p))
    # paho at each version, QoS 0/1/2 both ways
    for version in ("3.1", "3.1.1", "5"):
        sub = t.client(b, version).subscribe("paho/#", 2)
        pub = t.client(b, version)
        for q in (0, 1, 2):
            pub.publish("paho/%s/%d" % (version, q), b"q%d" % q, q)
        pub.wait_published(10)
        sub.wait_for(lambda ms: len(ms) >= 3, 10)
        got = sorted((m.topic, m.payload, m.qos) for m in sub.received())
        want = sorted((("paho/%s/%d" % (version, q)).encode(), b"q%d" % q, q) for q in range(3))
        t.check(got == want, "paho MQTT %s: QoS 0, 1, 2 arrive once each at their QoS"
                % version, repr(got))
        sub.stop()
        pub.stop()


def sec_rate(t):
    t.section("PUBLISH rate: 200 per fixed one-second window from connection accept")
    b = broker()
    c, _ = connect(b, "rate5", 5)
    c.send(b"".join(bb.enc_publish(5, "r/5", b"%d" % i, 1, i) for i in range(1, 251)))
    pk = c.read_all(timeout=3, until=lambda p: p["type"] == "DISCONNECT")
    d = kinds(pk, "DISCONNECT")
    t.check(len(d) == 1 and d[0]["code"] == 0x96,
            "5.0 client, 250 QoS 1 in its first second: DISCONNECT 0x96",
            repr([p["type"] for p in pk][-3:]))
    t.check(pids(pk, "PUBACK") == list(range(1, 201)),
            "it got PUBACKs for exactly the first 200", "%d PUBACKs" % len(pids(pk, "PUBACK")))
    s = b.stats()
    t.check(s["totals"]["disconnects"] == {"0x96": 1} and
            s["totals"]["disconnect_packets"] == {"0x96": 1},
            "the broker's tally shows exactly one 0x96", repr(s["totals"]["disconnects"]))
    cs = conn_stats(b, "rate5")
    t.check(cs["accepted"] == 200 and cs["max_fixed"] == 200,
            "it accepted 200, the busiest fixed window holds 200", repr(cs))

    c, _ = connect(b, "rate311", 4)
    c.send(b"".join(bb.enc_publish(4, "r/311", b"%d" % i, 1, i) for i in range(1, 251)))
    pk = c.read_all(timeout=1.5)
    t.check(pids(pk, "PUBACK") == list(range(1, 201)) and not c.closed,
            "3.1.1 client, 250 QoS 1 in its first second: PUBACKs for exactly the first 200, "
            "no more, the connection stays", "%d PUBACKs, closed=%s"
            % (len(pids(pk, "PUBACK")), c.closed))
    cs = conn_stats(b, "rate311")
    t.check(cs["dropped"] == {"rate": 50} and cs["disconnect"] is None and cs["accepted"] == 200,
            "the tally: 50 dropped for the rate, no disconnect", repr(cs["dropped"]))
    # the next window starts a new count
    w0 = conn_stats(b, "rate311", True)["windows"]
    rt.wait_until(lambda: False, 1.1)
    c.send(bb.enc_publish(4, "r/311", b"later", 1, 300))
    p = c.read()
    t.check(p["type"] == "PUBACK" and p["pid"] == 300,
            "a PUBLISH in a later window is acknowledged", repr(p))
    w1 = conn_stats(b, "rate311", True)["windows"]
    t.check(w0 == {"0": 200} and len(w1) == 2 and max(int(k) for k in w1) >= 1,
            "the broker counted 200 in window 0, then one in a later window", repr(w1))

    b3 = broker(v3_over_limit="close")
    c, _ = connect(b3, "rate311c", 4)
    c.send(b"".join(bb.enc_publish(4, "r/311", b"%d" % i, 1, i) for i in range(1, 251)))
    pk = c.read_all(timeout=2)
    cs = conn_stats(b3, "rate311c")
    t.check(pids(pk, "PUBACK") == list(range(1, 201)) and c.closed and
            cs["disconnect"] == "0x96" and not cs["disconnect_sent"],
            "v3_over_limit=close: the 3.1.1 client gets 200 PUBACKs, then the socket closes "
            "(tally 0x96, no DISCONNECT packet)", repr(cs))

    t.section("PUBLISH rate: a paced client (<= 200 per fixed window) is never disconnected")
    c, _ = connect(b, "paced", 5)
    t0 = time.monotonic()  # the broker's t0 is a little earlier (accept): bursts at +0.3 s
    pid = 0
    for k in range(3):
        rt.wait_until(lambda: time.monotonic() >= t0 + k + 0.3, 2)
        burst = []
        for _ in range(200):
            pid += 1
            burst.append(bb.enc_publish(5, "r/paced", b"%d" % pid, 1, pid))
        c.send(b"".join(burst))
    pk = c.read_all(timeout=1.0)
    cs = conn_stats(b, "paced", True)
    t.check(len(pids(pk, "PUBACK")) == 600 and not kinds(pk, "DISCONNECT") and
            cs["disconnect"] is None and cs["max_fixed"] == 200 and cs["accepted"] == 600,
            "600 PUBLISHes in 3 windows of 200: all acknowledged, max_fixed 200, no disconnect",
            "PUBACKs %d, %r" % (len(pids(pk, "PUBACK")), {k: cs[k] for k in (
                "disconnect", "max_fixed", "max_sliding", "accepted", "windows")}))

    t.section("PUBLISH rate: changed at run time (set_rate)")
    c, _ = connect(b, "lowered", 5)
    c.send(b"".join(bb.enc_publish(5, "r/low", b"x", 1, i) for i in range(1, 51)))
    pk = c.read_all(timeout=0.5)
    t.check(len(pids(pk, "PUBACK")) == 50, "50 QoS 1 at rate 200: all acknowledged")
    b.set_rate(20)
    rt.wait_until(lambda: False, 1.05)  # the next window
    c.send(b"".join(bb.enc_publish(5, "r/low", b"x", 1, i) for i in range(51, 81)))
    pk = c.read_all(timeout=2, until=lambda p: p["type"] == "DISCONNECT")
    d = kinds(pk, "DISCONNECT")
    t.check(d and d[0]["code"] == 0x96 and len(pids(pk, "PUBACK")) == 20,
            "after set_rate(20), 30 in a window: 20 acknowledged, then DISCONNECT 0x96",
            "%d PUBACKs, %r" % (len(pids(pk, "PUBACK")), d))
    b.set_rate(200)


def sec_receive_max(t):
    t.section("Receive Maximum 200, checked before the rate")
    b = broker(puback_delay=1.5)
    c, _ = connect(b, "rm5", 5)
    c.send(b"".join(bb.enc_publish(5, "rm/5", b"x", 1, i) for i in range(1, 202)))
    pk = c.read_all(timeout=3, until=lambda p: p["type"] == "DISCONNECT")
    d = kinds(pk, "DISCONNECT")
    t.check(d and d[0]["code"] == 0x93,
            "5.0 client with 200 unacknowledged sends a 201st: DISCONNECT 0x93", repr(d))
    cs = conn_stats(b, "rm5")
    t.check(cs["disconnect"] == "0x93" and cs["accepted"] == 200,
            "the tally: 0x93, 200 accepted", repr(cs))

    c, _ = connect(b, "rm311", 4)
    c.send(b"".join(bb.enc_publish(4, "rm/311", b"x", 1, i) for i in range(1, 251)))
    pk = c.read_all(timeout=3)
    cs = conn_stats(b, "rm311")
    t.check(pids(pk, "PUBACK") == list(range(1, 201)) and not c.closed,
            "3.1.1 client, 250 QoS 1 while acks are held: PUBACKs for the first 200 only",
            "%d PUBACKs" % len(pids(pk, "PUBACK")))
    t.check(cs["dropped"] == {"receive_max": 50},
            "the 50 past it are dropped for Receive Maximum, not for the rate (checked "
            "first)", repr(cs["dropped"]))


def sec_packet_size(t):
    t.section("Maximum Packet Size 256 KiB")
    b = broker()
    c, _ = connect(b, "big5", 5)
    c.send(bb.enc_publish(5, "big/5", b"x" * (256 * 1024), 1, 1))
    pk = c.read_all(timeout=2)
    d = kinds(pk, "DISCONNECT")
    t.check(d and d[0]["code"] == 0x95 and c.closed,
            "5.0 PUBLISH above 256 KiB: DISCONNECT 0x95, closed", repr(d))
    c, _ = connect(b, "big311", 4)
    c.send(bb.enc_publish(4, "big/311", b"x" * (256 * 1024), 1, 1))
    pk = c.read_all(timeout=2)
    t.check(pk == [] and c.closed, "3.1.1 PUBLISH above 256 KiB: closed without a packet")
    c, ack = connect(b, "okbig", 5)
    c.send(bb.enc_publish(5, "big/ok", b"x" * (256 * 1024 - 100), 1, 1))
    p = c.read()
    t.check(p["type"] == "PUBACK", "a PUBLISH of 256 KiB - 100 bytes is accepted", repr(p))
    c, ack = connect(b, "mps+1", 5, props=[(bb.P_MAX_PACKET, 256 * 1024 + 1)])
    t.check(ack is not None and ack["type"] == "CONNACK" and ack["code"] == 0x83,
            "CONNECT asking Maximum Packet Size 262145: CONNACK 0x83", repr(ack))
    c, ack = connect(b, "mps", 5, props=[(bb.P_MAX_PACKET, 256 * 1024)])
    t.check(ack["code"] == 0, "CONNECT asking 262144: accepted")
    sub, ack = connect(b, "mps-small", 5, props=[(bb.P_MAX_PACKET, 200)])
    subscribe(sub, [("mps/#", 1)])
    pub, _ = connect(b, "mps-pub", 5)
    pub.send(bb.enc_publish(5, "mps/a", b"y" * 300, 1, 1) + bb.enc_publish(5, "mps/b", b"ok", 1, 2))
    got = drain_publishes(sub, 1, 2)
    t.check([p["payload"] for p in got] == [b"ok"],
            "a client announcing Maximum Packet Size 200 never gets a bigger packet",
            repr(got))
    t.check(conn_stats(b, "mps-small")["dropped"] == {"too_large_for_client": 1},
            "the tally: 1 dropped as too large for that client")


def sec_topics(t):
    t.section("topic length / levels / characters per level: 255 / 16 / 40")
    b = broker()
    sub, _ = connect(b, "tsub", 5)
    subscribe(sub, [("#", 1)])
    ok_topics = ["/".join(["l"] * 16), "a" * 40 + "/b", "/".join(["x" * 15] * 16)]
    t.check(len(ok_topics[2]) == 255, "(a 255-character, 16-level topic)")
    c, _ = connect(b, "tok", 5)
    for i, tp in enumerate(ok_topics, 1):
        c.send(bb.enc_publish(5, tp, b"ok", 1, i))
    pk = c.read_all(timeout=0.5)
    t.check([p["code"] for p in kinds(pk, "PUBACK")] == [0, 0, 0],
            "16 levels, a 40-character level, 255 characters: accepted")
    bad = {"17 levels": "/".join(["l"] * 17), "a 41-character level": "a" * 41,
           "256 characters": "/".join(["x" * 15] * 16) + "y"}
    for i, (what, tp) in enumerate(bad.items(), 1):
        c.send(bb.enc_publish(5, tp, b"bad", 1 + (i % 2), 10 + i))
        p = c.read()
        t.check(p["type"] == ("PUBREC" if i % 2 else "PUBACK") and p["code"] == 0x90,
                "QoS %d topic with %s: %s 0x90" % (1 + (i % 2), what,
                                                    "PUBREC" if i % 2 else "PUBACK"), repr(p))
    c.send(bb.enc_ack(bb.PUBREL, 11, 5))  # for the refused QoS 2 one
    c.read_all(timeout=0.3)
    cs = conn_stats(b, "tok")
    t.check(cs["dropped"] == {"topic_invalid": 3} and cs["disconnect"] is None,
            "the connection stays; the tally: 3 dropped topic_invalid", repr(cs))
    got = drain_publishes(sub, 3, 2)
    t.check(sorted(p["topic"].decode() for p in got) == sorted(ok_topics),
            "only the valid ones were delivered", repr([p["topic"] for p in got]))
    c.send(bb.enc_publish(5, "/".join(["l"] * 17), b"bad", 0))
    pk = c.read_all(timeout=2)
    d = kinds(pk, "DISCONNECT")
    t.check(d and d[0]["code"] == 0x90, "QoS 0 with 17 levels: DISCONNECT 0x90", repr(d))
    c, _ = connect(b, "t311", 4)
    c.send(bb.enc_publish(4, "a" * 41, b"bad", 1, 1))
    pk = c.read_all(timeout=2)
    t.check(pk == [] and c.closed, "3.1.1 QoS 1 with a 41-character level: closed")
    # filters past the limits
    c, _ = connect(b, "tfilt", 5)
    codes = subscribe(c, [("/".join(["+"] * 17), 1), ("a/b", 1)])
    t.check(codes == [0x8F, 1], "a 17-level filter: SUBACK 0x8F (the other granted)",
            repr(codes))


def sec_aliases(t):
    t.section("Topic Alias Maximum 10, both ways")
    b = broker()
    c, ack = connect(b, "ta11", 5, props=[(bb.P_TOPIC_ALIAS_MAX, 11)])
    t.check(ack is not None and ack["code"] == 0x97,
            "CONNECT asking Topic Alias Maximum 11: CONNACK 0x97", repr(ack))
    sub, ack = connect(b, "ta-sub", 5, props=[(bb.P_TOPIC_ALIAS_MAX, 2)])
    t.check(ack["code"] == 0, "asking 2: accepted")
    subscribe(sub, [("al/#", 1)])
    pub, _ = connect(b, "ta-pub", 5)
    pub.send(bb.enc_publish(5, "al/ten", b"1", 1, 1, props=[(bb.P_TOPIC_ALIAS, 10)]))
    pub.send(bb.enc_publish(5, "", b"2", 1, 2, props=[(bb.P_TOPIC_ALIAS, 10)]))
    pk = pub.read_all(timeout=0.5)
    t.check([p["code"] for p in kinds(pk, "PUBACK")] == [0, 0],
            "client alias 10 set, then used with an empty topic: accepted", repr(pk))
    for i, tp in enumerate(["al/x", "al/y", "al/z", "al/x"], 3):
        pub.send(bb.enc_publish(5, tp, b"%d" % i, 1, i))
    got = drain_publishes(sub, 6, 3)
    seen = {}
    topics = []
    for p in got:
        a = p["props"].get(bb.P_TOPIC_ALIAS, [None])[0]
        if p["topic"]:
            if a is not None:
                seen[a] = p["topic"]
            topics.append(p["topic"])
        else:
            topics.append(seen.get(a))
    t.check(topics == [b"al/ten", b"al/ten", b"al/x", b"al/y", b"al/z", b"al/x"],
            "the subscriber resolves every topic through the broker's aliases", repr(topics))
    t.check(got[1]["topic"] == b"" and all(
        1 <= p["props"].get(bb.P_TOPIC_ALIAS, [0])[0] <= 2 for p in got),
        "the broker uses aliases 1..2 (the client's maximum); a repeat goes with an empty "
        "topic", repr([(p["topic"], p["props"].get(bb.P_TOPIC_ALIAS)) for p in got]))
    pub.send(bb.enc_publish(5, "al/eleven", b"x", 1, 20, props=[(bb.P_TOPIC_ALIAS, 11)]))
    pk = pub.read_all(timeout=2)
    d = kinds(pk, "DISCONNECT")
    t.check(d and d[0]["code"] == 0x94, "client alias 11: DISCONNECT 0x94", repr(d))
    b2 = broker(use_aliases=False)
    sub, _ = connect(b2, "na-sub", 5, props=[(bb.P_TOPIC_ALIAS_MAX, 10)])
    subscribe(sub, [("na/#", 1)])
    pub, _ = connect(b2, "na-pub", 5)
    pub.send(bb.enc_publish(5, "na/a", b"1", 1, 1) + bb.enc_publish(5, "na/a", b"2", 1, 2))
    got = drain_publishes(sub, 2, 2)
    t.check(len(got) == 2 and all(p["topic"] == b"na/a" and bb.P_TOPIC_ALIAS not in p["props"]
                                  for p in got),
            "use_aliases=False: no aliases toward the client", repr(got))


def sec_subscribe_limits(t):
    t.section("filters per SUBSCRIBE 10; subscriptions per session 100")
    b = broker()
    c, _ = connect(b, "f11", 5)
    c.send(bb.enc_subscribe(5, 1, [("f/%d" % i, 1) for i in range(11)]))
    pk = c.read_all(timeout=2)
    d = kinds(pk, "DISCONNECT")
    t.check(d and d[0]["code"] == 0x98 and not kinds(pk, "SUBACK"),
            "11 filters in one SUBSCRIBE: DISCONNECT 0x98", repr(pk))
    c, _ = connect(b, "f11v3", 4)
    c.send(bb.enc_subscribe(4, 1, [("f/%d" % i, 1) for i in range(11)]))
    pk = c.read_all(timeout=2)
    t.check(pk == [] and c.closed, "3.1.1: closed without SUBACK")
    for v, refused in ((5, 0x97), (4, 0x80)):
        c, _ = connect(b, "s100v%d" % v, v)
        codes = []
        for k in range(10):
            codes += subscribe(c, [("s/%d/%d" % (k, i), 1) for i in range(10)], pid=k + 1)
        t.check(codes == [1] * 100, "MQTT %s: 100 subscriptions in 10 SUBSCRIBEs of 10 granted"
                % ("5" if v == 5 else "3.1.1"))
        codes = subscribe(c, [("s/x", 1), ("s/0/0", 0)], pid=11)
        t.check(codes == [refused, 0],
                "the 101st: SUBACK 0x%02x; re-subscribing an existing filter is not new"
                % refused, repr(codes))


def sec_expiry_keepalive(t):
    t.section("session expiry clamped to 60 s .. 24 h; keepalive raised to 60 s")
    b = broker()
    _, ack = connect(b, "se5", 5, clean=False, props=[(bb.P_SESSION_EXPIRY, 5)])
    t.check(ack["props"].get(bb.P_SESSION_EXPIRY) == [60],
            "Session Expiry 5 asked: CONNACK says 60", repr(ack["props"]))
    _, ack = connect(b, "se1e5", 5, clean=False, props=[(bb.P_SESSION_EXPIRY, 100000)])
    t.check(ack["props"].get(bb.P_SESSION_EXPIRY) == [86400],
            "Session Expiry 100000 asked: CONNACK says 86400", repr(ack["props"]))
    _, ack = connect(b, "se300", 5, clean=False, props=[(bb.P_SESSION_EXPIRY, 300)])
    t.check(bb.P_SESSION_EXPIRY not in ack["props"], "300 asked: kept (no property)")
    _, ack = connect(b, "ka5", 5, keepalive=5)
    t.check(ack["props"].get(bb.P_SERVER_KEEP_ALIVE) == [60],
            "keepalive 5: Server Keep Alive 60", repr(ack["props"]))
    _, ack = connect(b, "ka120", 5, keepalive=120)
    t.check(bb.P_SERVER_KEEP_ALIVE not in ack["props"], "keepalive 120: kept")
    b2 = broker(min_keepalive=1)
    c, ack = connect(b2, "idle", 5, keepalive=1)
    pk = c.read_all(timeout=4)
    d = kinds(pk, "DISCONNECT")
    t.check(d and d[0]["code"] == 0x8D, "(min_keepalive 1) a client silent past 1.5 x "
            "keepalive: DISCONNECT 0x8D", repr(pk))
    c, ack = connect(b2, "pinger", 5, keepalive=1)
    for _ in range(4):
        rt.wait_until(lambda: False, 0.5)
        c.send(b"\xc0\x00")
    pk = c.read_all(timeout=0.3)
    t.check(len(kinds(pk, "PINGRESP")) == 4 and not c.closed,
            "a client that pings stays connected")


def sec_will(t):
    t.section("Will topic + payload 128 bytes")
    b = broker()
    will = {"topic": "w/" + "t" * 8, "payload": b"p" * 119}  # 10 + 119 = 129
    c, ack = connect(b, "will5", 5, will=will)
    t.check(ack is not None and ack["code"] == 0x95, "5.0 Will of 129 bytes: CONNACK 0x95",
            repr(ack))
    c, ack = connect(b, "will311", 4, will=will)
    t.check(ack is None and c.closed, "3.1.1 Will of 129 bytes: closed without CONNACK")
    s = b.stats()["totals"]
    t.check(s["connacks"].get("0x95") == 1 and s["closed_without_connack"] == {"will_too_big": 1},
            "the tally counts both", repr(s))
    sub, _ = connect(b, "wsub", 5)
    subscribe(sub, [("w/#", 1)])
    ok = {"topic": "w/" + "t" * 8, "payload": b"p" * 118, "qos": 1}  # 128
    c, ack = connect(b, "will-ok", 5, will=ok)
    t.check(ack["code"] == 0, "a Will of 128 bytes: accepted")
    c2, _ = connect(b, "will-clean", 4, will=dict(ok, payload=b"clean"))
    c2.send(bb.enc_disconnect(4))
    c2.close()
    c.close()  # no DISCONNECT: the Will goes
    got = drain_publishes(sub, 2, 2)
    t.check([p["payload"] for p in got] == [b"p" * 118],
            "the Will goes on an abrupt close, not after DISCONNECT", repr(got))


def sec_session_queue(t):
    t.section("persistent session and its queue of 1000 messages")
    b = broker(rate=5000)
    c, ack = connect(b, "pq", 5, clean=False, props=[(bb.P_SESSION_EXPIRY, 300)])
    subscribe(c, [("q/#", 1)])
    c.close()
    wait_stats(b, "pq", lambda s: not s["open"])
    pub, _ = connect(b, "pq-pub", 5)
    pub.send(b"".join(bb.enc_publish(5, "q/%d" % i, b"%d" % i, 1, i) for i in range(1, 1101)))
    pk = pub.read_all(timeout=1, until=lambda p: p["type"] == "PUBACK" and p["pid"] == 1100)
    t.check(len(kinds(pk, "PUBACK")) == 1100, "1,100 QoS 1 published to the offline session")
    s = b.stats()
    t.check(s["sessions"]["pq"]["queued"] == 1000 and
            s["clients"]["pq"]["dropped"] == {"queue_full": 100},
            "it queued 1,000 and dropped 100 (queue_full)", repr(s["sessions"]["pq"]))
    c, ack = connect(b, "pq", 5, clean=False, props=[(bb.P_SESSION_EXPIRY, 300)])
    t.check(ack["session_present"], "reconnect: session present")
    got = drain_publishes(c, 1100, 5)
    t.check([p["payload"] for p in got] == [b"%d" % i for i in range(1, 1001)],
            "the first 1,000 arrive, in order, and nothing else", "%d arrived" % len(got))
    # 3.1.1 clean session 0 keeps the subscription
    c, _ = connect(b, "p311", 4, clean=False)
    subscribe(c, [("q311", 2)])
    c.send(bb.enc_disconnect(4))
    c.close()
    wait_stats(b, "p311", lambda s: not s["open"])
    pub.send(bb.enc_publish(5, "q311", b"while away", 2, 5000))
    c, ack = connect(b, "p311", 4, clean=False)
    got = drain_publishes(c, 1, 3)
    t.check(ack["session_present"] and [(p["payload"], p["qos"]) for p in got] ==
            [(b"while away", 2)], "3.1.1 clean session 0: a QoS 2 message waits for it")


def sec_redelivery(t):
    t.section("redelivery of unacknowledged QoS 1/2 (scaled: period 0.4 s, 4 sends)")
    b = broker(redeliver_period=0.4, redeliver_tries=4)
    sub, _ = connect(b, "rd", 5)
    subscribe(sub, [("rd/#", 2)])
    pub, _ = connect(b, "rd-pub", 5)
    pub.send(bb.enc_publish(5, "rd/1", b"one", 1, 1) + bb.enc_publish(5, "rd/2", b"two", 2, 2))
    pk = sub.read_all(timeout=2.5)
    p1 = [p for p in kinds(pk, "PUBLISH") if p["payload"] == b"one"]
    p2 = [p for p in kinds(pk, "PUBLISH") if p["payload"] == b"two"]
    t.check(len(p1) == 4 and len(p2) == 4,
            "a subscriber that never acknowledges gets each message 4 times (0, 1, 2, 3 "
            "periods)", "%d and %d" % (len(p1), len(p2)))
    t.check([p["dup"] for p in p1] == [False, True, True, True] and
            len({p["pid"] for p in p1}) == 1,
            "the first send without DUP, the resends with DUP, one packet id")
    s = wait_stats(b, "rd", lambda s: s["dropped"].get("redelivery_exhausted") == 2, 3)
    t.check(s, "after the 4th period both are dropped (redelivery_exhausted 2)",
            repr(conn_stats(b, "rd")))
    t.check(conn_stats(b, "rd")["redelivered"] == 6 and b.stats()["sessions"]["rd"]["inflight"]
            == 0, "6 resends counted, nothing left in flight")
    # acknowledged on the second send: no more resends, not dropped
    pub.send(bb.enc_publish(5, "rd/3", b"three", 1, 3))
    first = sub.read()
    second = sub.read(2)
    sub.send(bb.enc_ack(bb.PUBACK, second["pid"], 5))
    more = sub.read_all(timeout=1.5)
    t.check(first["payload"] == second["payload"] == b"three" and second["dup"] and not more,
            "acknowledged after one resend: no further sends", repr(more))
    t.check(conn_stats(b, "rd")["dropped"] == {"redelivery_exhausted": 2}, "and not dropped")


def sec_takeover_bridge(t):
    t.section("same client id: DISCONNECT 0x8E to the older; the bridge bit")
    b = broker()
    for v in (5, 4):
        old, _ = connect(b, "dup%d" % v, v)
        new, ack = connect(b, "dup%d" % v, v)
        pk = old.read_all(timeout=2)
        if v == 5:
            d = kinds(pk, "DISCONNECT")
            t.check(ack["code"] == 0 and d and d[0]["code"] == 0x8E and old.closed,
                    "5.0: the new one connects, the older gets DISCONNECT 0x8E", repr(pk))
        else:
            t.check(ack["code"] == 0 and pk == [] and old.closed,
                    "3.1.1: the new one connects, the older is closed")
    t.check(b.stats()["totals"]["disconnects"] == {"0x8e": 2}, "the tally: two 0x8E")
    for level in (0x84, 0x83):
        c = raw(b, 4)
        c.send(bb.enc_connect(4 if level == 0x84 else 3, "bridge%x" % level, level=level))
        pk = c.read_all(timeout=2)
        t.check(pk == [] and c.closed,
                "CONNECT with protocol level 0x%02x: closed, no CONNACK" % level)
    t.check(b.stats()["totals"]["closed_without_connack"] == {"bridge_bit": 2},
            "the tally: two bridge_bit")


def sec_no_match_maxqos(t):
    t.section("PUBACK 0x10 with no subscriber; Maximum QoS in CONNACK")
    b = broker()
    c, _ = connect(b, "nm5", 5)
    c.send(bb.enc_publish(5, "nobody/here", b"x", 1, 1) + bb.enc_publish(5, "nobody/2", b"x", 2, 2))
    pk = c.read_all(timeout=0.5)
    t.check([(p["type"], p["code"]) for p in pk] == [("PUBACK", 0x10), ("PUBREC", 0x10)],
            "5.0 QoS 1 / QoS 2 nobody subscribes to: PUBACK 0x10, PUBREC 0x10", repr(pk))
    c, _ = connect(b, "nm311", 4)
    c.send(bb.enc_publish(4, "nobody/here", b"x", 1, 1))
    p = c.read()
    t.check(p["type"] == "PUBACK" and p["raw"] == b"\x40\x02\x00\x01",
            "3.1.1: a plain PUBACK")
    b2 = broker(connack_max_qos=200)
    _, ack = connect(b2, "mq", 5)
    t.check(ack["props"].get(bb.P_MAX_QOS) == [200],
            "connack_max_qos=200: Maximum QoS 200 in the CONNACK (3.3.x / 4.0.0)",
            repr(ack["props"]))
    pc = t.client(b2, "5")
    t.check(pc.connected.is_set(), "(paho 1.6 connects anyway)")
    pc.stop()


def sec_shared(t):
    t.section("$share (random member), $oshare (per-publisher member), retained, 200 members")
    b = broker(max_share_members=4)
    members = []
    for i in range(4):
        c, _ = connect(b, "sh%d" % i, 5)
        subscribe(c, [("$share/g/sh/#", 1), ("$oshare/o/os/#", 1)])
        members.append(c)
    pubs = []
    for i in range(5):  # pubs[4] for $share: 200 + 40 would pass the rate in one window
        p, _ = connect(b, "shp%d" % i, 5)
        pubs.append(p)
    pubs[4].send(b"".join(bb.enc_publish(5, "sh/x", b"%d" % i, 1, i + 1) for i in range(200)))
    for k, p in enumerate(pubs[:4]):
        p.send(b"".join(bb.enc_publish(5, "os/%d" % k, b"%d/%03d" % (k, i), 1, 1000 + i)
                        for i in range(40)))
    got = {i: drain_publishes(m, 1000, 3, idle=0.5) for i, m in enumerate(members)}
    share = {i: [p["payload"] for p in g if p["topic"] == b"sh/x"] for i, g in got.items()}
    allp = sorted(x for v in share.values() for x in v)
    t.check(allp == sorted(b"%d" % i for i in range(200)),
            "$share: 200 messages, each to exactly one member")
    t.check(all(len(v) > 0 for v in share.values()),
            "every member got some (random pick)", repr({i: len(v) for i, v in share.items()}))
    owner = {}
    ok = True
    for i, g in got.items():
        for p in g:
            if p["topic"].startswith(b"os/"):
                k = int(p["topic"][3:])
                if owner.setdefault(k, i) != i:
                    ok = False
    per = {i: [p["payload"] for p in g if p["topic"].startswith(b"os/")] for i, g in got.items()}
    t.check(ok and len(owner) == 4 and sum(len(v) for v in per.values()) == 160,
            "$oshare: all 40 messages of each publisher reach one member",
            repr({k: v for k, v in owner.items()}))
    t.check(all([x for x in per[owner[k]] if x.startswith(b"%d/" % k)] ==
                [b"%d/%03d" % (k, i) for i in range(40)] for k in range(4)),
            "each publisher's messages in publish order")
    # retained: not on shared subscriptions
    pubs[0].send(bb.enc_publish(5, "ret/a", b"kept", 1, 3000, retain=True))
    pubs[0].read()
    s1, _ = connect(b, "ret-share", 5)
    subscribe(s1, [("$share/r/ret/#", 1)])
    s2, _ = connect(b, "ret-plain", 5)
    subscribe(s2, [("ret/#", 1)])
    g1 = drain_publishes(s1, 1, 0.7)
    g2 = drain_publishes(s2, 1, 2)
    t.check(g1 == [] and [(p["payload"], p["retain"]) for p in g2] == [(b"kept", True)],
            "a retained message goes to a new plain subscriber, not to a shared one")
    c, _ = connect(b, "sh-extra", 5)
    codes = subscribe(c, [("$share/g/sh/#", 1)])
    c3, _ = connect(b, "sh-extra3", 4)
    codes3 = subscribe(c3, [("$share/g/sh/#", 1)])
    t.check(codes == [0x97] and codes3 == [0x80],
            "(max_share_members 4) a 5th member: SUBACK 0x97 / 0x80 (3.1.1)",
            repr((codes, codes3)))
    b200 = broker()
    codes = []
    for i in range(201):
        c = raw(b200, 4)
        c.connect("m%d" % i, clean=False)  # a persistent session stays a member
        codes += subscribe(c, [("$share/big/m/#", 0)])
        c.close()
        RAWS.remove(c)
    t.check(codes == [0] * 200 + [0x80], "default: 200 members, the 201st refused")


def sec_v5_options(t):
    t.section("MQTT 5: Subscription Identifiers, No Local, Retain As Published")
    b = broker()
    c, _ = connect(b, "opt", 5)
    subscribe(c, [("o/a/#", 1)], pid=1, props=[(bb.P_SUB_ID, 7)])
    subscribe(c, [("o/+/x", 1 | 0x08)], pid=2, props=[(bb.P_SUB_ID, 300)])
    subscribe(c, [("o/self", 1 | 0x04)], pid=3)
    c.send(bb.enc_publish(5, "o/self", b"mine", 1, 1))
    other, _ = connect(b, "opt-other", 5)
    other.send(bb.enc_publish(5, "o/a/x", b"both", 1, 1, retain=True))
    other.send(bb.enc_publish(5, "o/self", b"theirs", 1, 2))
    got = drain_publishes(c, 4, 2)
    ids = sorted((p["payload"], tuple(p["props"].get(bb.P_SUB_ID, [])), p["retain"])
                 for p in got if p["type"] == "PUBLISH")
    t.check(ids == [(b"both", (7,), False), (b"both", (300,), True), (b"theirs", (), False)],
            "one copy per matching subscription with its identifier; Retain As Published "
            "keeps the retain flag only where asked; No Local drops our own", repr(ids))


def sec_bandwidth(t):
    t.section("bandwidth in/out: throttled, not cut (scaled: 64 KiB/s in, 32 KiB/s out)")
    b = broker(bandwidth_in=65536, bandwidth_out=32768)
    sub, _ = connect(b, "bw-sub", 5)
    subscribe(sub, [("bw/#", 1)])
    pub, _ = connect(b, "bw-pub", 5)
    payloads = [bytes((i + k) % 251 for k in range(40000)) for i in range(5)]
    pub.send(b"".join(bb.enc_publish(5, "bw/%d" % i, p, 1, i + 1)
                      for i, p in enumerate(payloads)))
    got = drain_publishes(sub, 5, 15)
    acks = pub.read_all(timeout=1, until=lambda p: p["type"] == "PUBACK" and p["pid"] == 5)
    t.check([p["payload"] for p in got] == payloads and len(kinds(acks, "PUBACK")) == 5,
            "200 kB through 64 / 32 KiB/s limits: all arrive intact, all acknowledged")
    ps, ss = conn_stats(b, "bw-pub"), conn_stats(b, "bw-sub")
    t.check(ps["throttled_in"] > 0 and ss["throttled_out"] > 0 and ps["disconnect"] is None
            and ss["disconnect"] is None,
            "the broker throttled reading and writing, and cut nobody",
            "in %d, out %d" % (ps["throttled_in"], ss["throttled_out"]))


def sec_program(t):
    t.section("as a program: flags, --stats-file, --control-port, SIGTERM")
    stats_file = os.path.join(t.tmp, "stats.json")
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "bifromq_broker.py"), "--port", "0",
                          "--control-port", "0", "--ws-port", "0", "--stats-file", stats_file,
                          "--refuse-delay", "0.05", "--rate", "100"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=rt._pdeathsig)
    try:
        line = p.stdout.readline().decode().split()
        port = int(line[0])
        kv = dict(x.split("=") for x in line[1:])
        ctl, wsp = int(kv["control_port"]), int(kv["ws_port"])
        t.check(port > 0 and ctl > 0 and wsp > 0, "it prints its ports: %s" % " ".join(line))
        c = bb.RawClient(port, 5)
        RAWS.append(c)
        c.connect("prog")
        c.send(b"".join(bb.enc_publish(5, "p/x", b"x", 1, i) for i in range(1, 61)))
        pk = c.read_all(timeout=0.5)
        t.check(len(kinds(pk, "PUBACK")) == 60, "60 QoS 1 at --rate 100: all acknowledged")
        st, _, body = rt.http_get(ctl, "/stats")
        s = json.loads(body)
        t.check(st == 200 and s["totals"]["accepted"] == 60 and
                s["limits"]["rate"] == 100, "GET /stats: 60 accepted, rate 100")
        st, _, body = rt.http_get(ctl, "/set?rate=10")
        t.check(st == 200 and json.loads(body)["rate"] == 10, "GET /set?rate=10")
        rt.wait_until(lambda: False, 1.05)
        c.send(b"".join(bb.enc_publish(5, "p/x", b"x", 1, i) for i in range(61, 81)))
        pk = c.read_all(timeout=2, until=lambda p: p["type"] == "DISCONNECT")
        d = kinds(pk, "DISCONNECT")
        t.check(len(kinds(pk, "PUBACK")) == 10 and d and d[0]["code"] == 0x96,
                "then 20 in a window: 10 acknowledged and DISCONNECT 0x96", repr(d))
        st, _, body = rt.http_get(ctl, "/stats?times=1")
        cs = json.loads(body)["connections"][0]
        t.check(len(cs["publish_times"]) == 70 and cs["windows"]["0"] == 60,
                "GET /stats?times=1: 70 publish times, 60 in window 0", repr(cs["windows"]))
        ok = rt.wait_until(lambda: os.path.exists(stats_file) and json.load(
            open(stats_file))["totals"]["disconnects"] == {"0x96": 1}, 3)
        t.check(ok, "the stats file follows within a second")
        # WebSocket: the same broker over /mqtt
        ws = socket.create_connection(("127.0.0.1", wsp), timeout=5)
        ws.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade"
                   b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
                   b"13\r\nSec-WebSocket-Protocol: mqttv3.1.1\r\n\r\n")
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += ws.recv(4096)
        head, _, rest = resp.partition(b"\r\n\r\n")
        t.check(head.startswith(b"HTTP/1.1 101") and
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head and
                b"Sec-WebSocket-Protocol: mqttv3.1.1" in head,
                "WebSocket /mqtt: 101, the accept key, subprotocol mqttv3.1.1", repr(head))

        def ws_send(data):
            key = b"\x01\x02\x03\x04"
            ws.sendall(bytes((0x82, 0x80 | len(data))) + key + bb._unmask(data, key))

        mq = [b""]

        def ws_read():
            """The next MQTT packet (a frame may hold several, or part of one)."""
            nonlocal rest
            while True:
                n = bb.frame_len(mq[0])
                if n:
                    pkt, mq[0] = mq[0][:n], mq[0][n:]
                    return pkt
                if len(rest) >= 2 and len(rest) >= 2 + rest[1] and rest[1] < 126:
                    n = rest[1]
                    mq[0] += rest[2:2 + n]
                    rest = rest[2 + n:]
                    continue
                rest += ws.recv(4096)

        ws_send(bb.enc_connect(4, "ws-client"))
        ack = bb.decode(ws_read(), 4)
        ws_send(bb.enc_subscribe(4, 1, [("ws/#", 1)]))
        sa = bb.decode(ws_read(), 4)
        ws_send(bb.enc_publish(4, "ws/t", b"over ws", 1, 9))
        frames = [bb.decode(ws_read(), 4), bb.decode(ws_read(), 4)]
        t.check(ack["code"] == 0 and sa["codes"] == [1] and
                sorted(f["type"] for f in frames) == ["PUBACK", "PUBLISH"] and
                [f["payload"] for f in frames if f["type"] == "PUBLISH"] == [b"over ws"],
                "over WebSocket: CONNACK, SUBACK, PUBACK and our own message back")
        ws.close()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(10)
        s = json.load(open(stats_file))
        t.check(rc == 0 and s["totals"]["accepted"] == 71 and
                s["totals"]["disconnects"] == {"0x96": 1},
                "SIGTERM: exit 0, the stats file holds the final tally", repr(s["totals"]))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)


def bench(t):
    t.section("bench: 16 connections x 1,500 QoS 1 (300/s each), one subscriber")
    b = subprocess.Popen([sys.executable, os.path.join(HERE, "bifromq_broker.py"), "--port",
                          "0", "--control-port", "0", "--rate", "1000"], stdout=subprocess.PIPE,
                         preexec_fn=rt._pdeathsig)
    try:
        line = b.stdout.readline().split()
        port, ctl = int(line[0]), int(line[2].split(b"=")[1])
        out = subprocess.run([sys.executable, "-c", BENCH, str(port)], capture_output=True,
                             timeout=120, text=True)
        t.note(out.stdout.strip() + out.stderr.strip())
        tot = json.loads(rt.http_get(ctl, "/stats")[2])["totals"]
        t.note("broker: accepted %d, delivered %d, acked %d, dropped %r, disconnects %r" % (
            tot["accepted"], tot["delivered"], tot["acked"], tot["dropped"],
            tot["disconnects"]))
    finally:
        b.kill()
        b.wait(5)


BENCH = r'''
import asyncio, sys, time
sys.path.insert(0, %r)
import bifromq_broker as bb
N, CONNS, PER = 1500, 16, 300.0
st = {"acked": 0, "got": 0}
async def rd(r, buf):
    while True:
        n = bb.frame_len(buf[0])
        if n:
            p, buf[0] = buf[0][:n], buf[0][n:]
            return p
        d = await r.read(65536)
        if not d:
            return None
        buf[0] += d
async def pub(port, i):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(bb.enc_connect(5, "bp%%d" %% i)); buf = [b""]; await rd(r, buf)
    pk = [bb.enc_publish(5, "bench/%%d" %% i, b"x" * 32, 1, k %% 65535 + 1) for k in range(N)]
    sent = acked = 0; t0 = time.monotonic()
    while acked < N:
        allow = min(N, int((time.monotonic() - t0) * PER) + 1)
        if sent < allow and sent - acked < 100:
            k = min(allow, acked + 100); w.write(b"".join(pk[sent:k])); sent = k
        try:
            p = await asyncio.wait_for(rd(r, buf), 0.02)
        except asyncio.TimeoutError:
            continue
        if p is None:
            return
        acked += p[0] >> 4 == 4
    st["acked"] += acked
async def sub(port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(bb.enc_connect(5, "bs") + bb.enc_subscribe(5, 1, [("bench/#", 1)]))
    buf = b""
    while True:
        d = await r.read(65536)
        if not d:
            return
        buf += d; acks = []
        while True:
            n = bb.frame_len(buf)
            if not n:
                break
            p, buf = buf[:n], buf[n:]
            if p[0] >> 4 == 3:
                st["got"] += 1; acks.append(bb.enc_ack(bb.PUBACK, bb.decode(p, 5)["pid"], 5))
        w.write(b"".join(acks))
async def main():
    port = int(sys.argv[1]); keep = asyncio.create_task(sub(port)); await asyncio.sleep(0.3)
    t0 = time.monotonic()
    await asyncio.gather(*[pub(port, i) for i in range(CONNS)])
    dt = time.monotonic() - t0
    while st["got"] < CONNS * N and time.monotonic() - t0 < dt + 10:
        await asyncio.sleep(0.05)
    print("%%d PUBLISHes acknowledged in %%.2f s (%%.0f/s); the subscriber got %%d" %% (st["acked"], dt, st["acked"] / dt, st["got"]))
asyncio.run(main())
''' % HERE


def run(t):
    try:
        sec_connect(t)
        sec_rate(t)
        sec_receive_max(t)
        sec_packet_size(t)
        sec_topics(t)
        sec_aliases(t)
        sec_subscribe_limits(t)
        sec_expiry_keepalive(t)
        sec_will(t)
        sec_session_queue(t)
        sec_redelivery(t)
        sec_takeover_bridge(t)
        sec_no_match_maxqos(t)
        sec_shared(t)
        sec_v5_options(t)
        sec_bandwidth(t)
        sec_program(t)
        if BENCH_ON:
            bench(t)
    finally:
        for c in RAWS:
            c.close()
        for b in BROKERS:
            b.stop()


if __name__ == "__main__":
    if "--bench" in sys.argv:
        sys.argv.remove("--bench")  # relaytest's argparse does not know it
        BENCH_ON = True
    rt.main(run, __doc__, needs_relay=False)
