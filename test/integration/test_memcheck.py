"""The relay under valgrind's memcheck through a small scenario that walks its main paths:
no invalid read or write, no use of uninitialised memory, no leak.

    valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect

Scenario (message counts small: memcheck runs the relay some 20-50 times slower):
  * QoS 0, 1 and 2 forwarded both ways between an MQTT 5 and an MQTT 3.1.1 Mosquitto, with
    MQTT 5 properties and a topic template;
  * a pool of 2 connections with a spool (store and forward) and a shared subscription, a
    status topic (Will), GET /metrics and /healthz;
  * the destination's link cut twice by fault_proxy.py while messages flow (resend with DUP,
    QoS 2 resumed with PUBREL), then stalled past the ack timeout;
  * a hostile broker (hostile_broker.py) sending a malformed packet, a PUBLISH over the
    maximum packet size and a flood of QoS 1 past the Receive Maximum: the error paths;
  * SIGHUP with a changed route, then SIGTERM: a clean shutdown, so that what is still
    allocated at exit is a leak.

The test passes when every message arrives, the relay exits 0 after SIGTERM, and valgrind
reports 0 errors ("ERROR SUMMARY: 0 errors", nothing "definitely" or "indirectly" lost).
Skipped (77) for a binary built with AddressSanitizer (the two do not mix: CI runs the ASan
build's leak checker instead) and when valgrind is not installed.
"""
import os
import re
import shutil
import stat
import sys
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import fault_proxy as fp  # noqa: E402
import hostile_broker as hbm  # noqa: E402


def asan_binary(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def wrapper(t, real, log_path):
    """A script that runs the relay under memcheck: relaytest starts it as the relay binary."""
    path = os.path.join(t.tmp, "mqtt-relay-memcheck")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec valgrind --error-exitcode=99 --leak-check=full "
                "--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect "
                "--track-origins=yes --num-callers=30 --log-file=%s %s \"$@\"\n"
                % (log_path, real))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


class HostileView:
    """What relaytest's Relay.wait_ready() asks of a broker, read from a HostileBroker's
    records: the client ids that connected and the (client id, qos, filter) subscribed."""

    def __init__(self, hb):
        self.hb = hb
        self.name = hb.name

    def connected_ids(self):
        return [c.client_id for c in self.hb.snapshot() if c.client_id]

    def subscriptions(self):
        out = []
        for c in self.hb.snapshot():
            for p in c.packets:
                if p.type == "SUBSCRIBE":
                    for f, o in p.info.get("subs", []):
                        out.append((c.client_id, o & 3, f.decode("utf-8", "replace")))
        return out


def http_get(port, path):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def arrived(sub, topics):
    return all(sub.count(lambda m, tp=tp: m.topic == tp) >= 1 for tp in topics)


def run(t):
    if asan_binary(t.relay_bin):
        print("SKIP: the relay is built with AddressSanitizer (its leak checker covers this)")
        sys.exit(rt.SKIP)
    if shutil.which("valgrind") is None:
        print("SKIP: valgrind is not installed (apt-get install valgrind)")
        sys.exit(rt.SKIP)
    vlog = os.path.join(t.tmp, "valgrind.log")
    t.relay_bin = wrapper(t, t.relay_bin, vlog)

    t.section("setup: three Mosquitto (5.0 and 3.1.1 links, a pool with a spool), a fault "
              "proxy, a hostile broker")
    a = t.broker("a", log_all=False)
    b = t.broker("b", log_all=False)
    c = t.broker("c", log_all=False)
    pb = fp.FaultProxy(b.port, name="b-proxy").start()
    hb = hbm.HostileBroker("normal", "source", name="h", armed=False, max_packet=1024,
                           topic_prefix="h", over_rm_burst=100).start()
    try:
        reconnect = {"min": 200, "max": 2000}
        routes = [
            {"name": "a-b", "from": "a", "to": "b", "filter": "up/+/#", "qos": 2,
             "topic": "from-a/${1}/${#}"},
            {"name": "b-a", "from": "b", "to": "a", "filter": "down/#", "qos": 2},
            {"name": "h-a", "from": "h", "to": "a", "filter": "h/#", "qos": 1},
            {"name": "a-c", "from": "a", "to": "c", "filter": "sp/#", "qos": 1},
            {"name": "c-a", "from": "c", "to": "a", "filter": "sh/#", "qos": 1, "share": "g"},
        ]
        metrics_port = rt.free_port()
        relay = t.relay(
            relay={"id": "mc", "drain_timeout": 3000, "metrics": "127.0.0.1:%d" % metrics_port},
            brokers=[{"name": "a", "url": a.url, "version": "5", "reconnect": reconnect,
                      "status_topic": "mc/status"},
                     {"name": "c", "url": c.url, "version": "5", "reconnect": reconnect,
                      "connections": 2, "spool": {"dir": "spool-c", "max_size": 1 << 20}},
                     {"name": "b", "url": pb.url, "version": "3.1.1", "reconnect": reconnect,
                      "ack_timeout": 3000},
                     {"name": "h", "url": hb.url, "version": "5", "reconnect": reconnect,
                      "max_packet_size": 1024}],
            routes=routes)
        relay.wait_ready({"a": a, "b": b, "c": c, "h": HostileView(hb)}, timeout=120)

        sub_b = t.client(b, "3.1.1").subscribe("from-a/#", 2)
        sub_a = t.client(a, "5").subscribe("#", 2)
        pub_a = t.client(a, "5", max_inflight=20)
        pub_b = t.client(b, "3.1.1", max_inflight=1)

        t.section("QoS 0/1/2 both ways, with properties and a template")
        want_b, want_a = [], []
        props = rt.publish_props(UserProperty=[("k", "v")], ContentType="text/plain",
                                 MessageExpiryInterval=600)
        for i in range(30):
            pub_a.publish("up/%d/x/y" % i, b"a%d" % i, i % 3, props=props)
            want_b.append(("from-a/%d/x/y" % i).encode())
        for i in range(15):
            pub_b.publish("down/%d" % i, b"b%d" % i, i % 3)
            pub_b.wait_published(120)
            want_a.append(("down/%d" % i).encode())
        pub_a.wait_published(120)
        t.check(rt.wait_until(lambda: arrived(sub_b, want_b), 120, 0.2),
                "a -> b: all 30 arrive (5.0 -> 3.1.1, template applied)")
        t.check(rt.wait_until(lambda: arrived(sub_a, want_a), 120, 0.2),
                "b -> a: all 15 arrive (3.1.1 -> 5.0)")

        t.section("a pool of 2 with a spool and a shared subscription; /metrics, /healthz")
        sub_c = t.client(c, "5").subscribe("sp/#", 1)
        pub_c = t.client(c, "5", max_inflight=20)
        want_c = [("sp/%d" % i).encode() for i in range(20)]
        want_sh = [("sh/%d" % i).encode() for i in range(10)]
        for i in range(20):
            pub_a.publish("sp/%d" % i, b"s", 1)
        for i in range(10):
            pub_c.publish("sh/%d" % i, b"h", 1)
        pub_a.wait_published(120)
        pub_c.wait_published(120)
        t.check(rt.wait_until(lambda: arrived(sub_c, want_c), 120, 0.2),
                "a -> c: all 20 arrive through the spool, over the 2 connections")
        t.check(rt.wait_until(lambda: arrived(sub_a, want_sh), 120, 0.2),
                "c -> a: all 10 arrive from the shared subscription")
        t.check(arrived(sub_a, [b"mc/status"]), "the status topic says online")
        st, _, body = http_get(metrics_port, "/metrics")
        t.check(st == 200 and "mqtt_relay_messages_forwarded_total" in body, "GET /metrics")
        st, _, body = http_get(metrics_port, "/healthz")
        t.check(st == 200, "GET /healthz answers 200 (%s)" % body.strip())
        pub_c.stop()
        sub_c.stop()

        t.section("the b link cut twice while messages flow, then stalled past the ack timeout")
        want2 = []
        for k in range(2):
            for i in range(10):
                n = 100 + k * 10 + i
                pub_a.publish("up/%d/c" % n, b"c", 1 + n % 2)
                want2.append(("from-a/%d/c" % n).encode())
            time.sleep(0.3)
            before = len(pb.snapshot())
            pb.cut()
            rt.wait_until(lambda: any(ln.open and ln.received("CONNACK")
                                      for ln in pb.snapshot()[before:]), 120, 0.2)
        before = len(pb.snapshot())
        pb.stall_reads(True)
        for i in range(5):
            pub_a.publish("up/%d/s" % (200 + i), b"s", 1)
            want2.append(("from-a/%d/s" % (200 + i)).encode())
        rt.wait_until(lambda: len(pb.snapshot()) > before, 120, 0.2)
        pb.resume()
        pub_a.wait_published(120)
        t.check(rt.wait_until(lambda: arrived(sub_b, want2), 180, 0.2),
                "all 25 arrive through the cuts and the stall")

        t.section("a hostile broker: malformed packet, packet too large, flood past Receive "
                  "Maximum")
        for scenario in ("long_varint", "too_large"):
            t0 = time.monotonic()
            hb.arm(scenario)
            rt.wait_until(lambda: any(c.misbehaved_at and c.misbehaved_at >= t0 and not c.open
                                      for c in hb.snapshot()), 120, 0.2)
            hb.disarm()
            rt.wait_until(lambda: hb.live() is not None and hb.live().scenario is None, 120,
                          0.2)
            relay.check_alive()
        hb.arm("over_receive_max")
        c = hb.live()
        want_h = set(n for n, _ in getattr(c, "burst", []))
        rt.wait_until(lambda: want_h <= c.acked, 180, 0.2)
        hb.disarm()
        t.check(want_h and want_h <= c.acked, "the burst of %d QoS 1/2 was relayed and "
                "acknowledged" % len(want_h), "%d not acknowledged" % len(want_h - c.acked))

        t.section("SIGHUP with a changed route, then SIGTERM")
        text = relay.text.replace('filter = "down/#"', 'filter = "down2/#"')
        with open(relay.conf_path, "w") as f:
            f.write(text)
        relay.proc.send_signal(1)
        rt.wait_until(lambda: any(s[2] == "down2/#" for s in b.subscriptions()), 60, 0.2)
        pub_b.publish("down2/x", b"r", 1)
        pub_b.wait_published(60)
        t.check(rt.wait_until(lambda: arrived(sub_a, [b"down2/x"]), 60, 0.2),
                "after SIGHUP the new route carries a message")
        for cl in (sub_a, sub_b, pub_a, pub_b):
            cl.stop()
        rc = relay.stop(timeout=120, expect=None)
    finally:
        pb.stop()
        hb.stop()

    t.section("valgrind's report")
    with open(vlog) as f:
        report = f.read()
    summary = re.findall(r"ERROR SUMMARY: (\d+) errors", report)
    lost = re.findall(r"(definitely|indirectly) lost: ([\d,]+) bytes", report)
    t.say("   " + "\n   ".join(l for l in report.splitlines()
                               if re.search(r"ERROR SUMMARY|lost:|reachable:|in use at exit",
                                            l))[-1200:])
    t.check(summary and summary[-1] == "0", "memcheck: 0 errors",
            "valgrind log %s:\n%s" % (vlog, report[-6000:]))
    t.check(all(v == "0" for _, v in lost), "nothing definitely or indirectly lost",
            report[-6000:])
    t.check(rc == 0, "the relay exited 0 after SIGTERM (valgrind exits 99 on errors)",
            "exit status %s" % rc)


if __name__ == "__main__":
    rt.main(run, __doc__)
