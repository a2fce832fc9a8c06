"""The loop guard (issue 4, SPEC "Loop guard"): two-way routes never loop, meshes stay loop-free.

1. Two MQTT 5 brokers A and B, one relay with routes A -> B and B -> A over the same filter
   "loop/#". One publish at A arrives exactly once at B (with relay-path = the relay's id) and
   never comes back to A; the same from B. Counted at both sides over a few seconds: 1 and 1.
2. A ring of three MQTT 5 brokers X, Y, Z and two relays: "r1" joins X <-> Y and Y <-> Z, "r2"
   joins Z <-> X, every route over "ring/#" (then again with r1's Y -> Z route over "ring/+",
   so that one message matches two subscriptions of one connection). A publish at each broker
   in turn: what each broker
   receives is compared with a model of SPEC's rules (No Local on each relay connection; a relay
   drops a message whose relay-path holds its own id or has max_hops entries; it appends its id):
   each broker gets each message at most once per path, the origin never gets it back, and the
   relay-path property lists the relay ids in the order crossed.
3. MQTT 3.1.1 both ways over overlapping topics cannot be guarded: --check and a normal start
   both exit 1 naming both routes.
4. max_hops = 3: messages arriving with a relay-path of 4 entries (longer than max_hops) or one
   holding the relay's own id are dropped and counted as mqtt_relay_messages_dropped_total
   {reason="loop"} (GET /metrics); a shorter foreign path is forwarded with the id appended.
5. Two routes from one MQTT 5 source with the same filter both forward (the broker keeps one
   subscription per filter: a second SUBSCRIBE must not silently take the first route's
   messages away).
"""
import re
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

SETTLE = 3.0  # seconds the counts must stay put after the expected messages arrived


def path_of(m):
    """The relay-path user property of a received message ("" when absent)."""
    for k, v in m.props.get("UserProperty", []) or []:
        if k == "relay-path":
            return v
    return ""


def settle(t, clients, want, timeout=20):
    """Waits (bounded) until every client in clients has at least want[i] messages, then SETTLE
    seconds more so that late copies (a loop) would show up."""
    rt.wait_until(lambda: all(c.count() >= n for c, n in zip(clients, want)), timeout)
    time.sleep(SETTLE)


def run_pair(t):
    t.section("two-way routes over the same topics between two MQTT 5 brokers")
    a = t.broker("a")
    b = t.broker("b")
    relay = t.relay(relay={"id": "pair"},
                    brokers=[{"name": "a", "url": a.url, "version": "5"},
                             {"name": "b", "url": b.url, "version": "5"}],
                    routes=[{"name": "a-to-b", "from": "a", "to": "b", "filter": "loop/#"},
                            {"name": "b-to-a", "from": "b", "to": "a", "filter": "loop/#"}])
    relay.wait_ready({"a": a, "b": b})
    # Mosquitto 2.0.11 does not log subscription options (No Local): the counts are the proof
    sa = t.client(a, "5").subscribe("loop/#", 1)
    sb = t.client(b, "5").subscribe("loop/#", 1)
    pa = t.client(a, "5")
    pb = t.client(b, "5")
    pa.publish("loop/one", b"from a", 1)
    pa.wait_published(10)
    settle(t, [sa, sb], [1, 1])
    t.check(sb.count() == 1, "published at A: exactly 1 copy at B (%d)" % sb.count(),
            repr(sb.received()))
    t.check(sa.count() == 1, "published at A: exactly 1 at A, the original: it never comes back "
            "(%d)" % sa.count(), repr(sa.received()))
    t.check(path_of(sb.received()[0]) == "pair", "the copy at B has relay-path \"pair\"",
            repr(sb.received()[0].props))
    t.check(sb.received()[0].payload == b"from a" and sb.received()[0].topic == b"loop/one",
            "topic and payload unchanged")
    sa.clear()
    sb.clear()
    pb.publish("loop/two", b"from b", 1)
    pb.wait_published(10)
    settle(t, [sa, sb], [1, 1])
    t.check(sa.count() == 1 and sb.count() == 1,
            "published at B: exactly 1 at A and 1 at B (%d and %d)" % (sa.count(), sb.count()),
            repr(sa.received() + sb.received()))
    # a burst both ways at once: still exactly once each
    sa.clear()
    sb.clear()
    for i in range(50):
        pa.publish("loop/burst/a%d" % i, b"a%d" % i, 1)
        pb.publish("loop/burst/b%d" % i, b"b%d" % i, 1)
    pa.wait_published(20)
    pb.wait_published(20)
    settle(t, [sa, sb], [100, 100])
    for name, c in (("A", sa), ("B", sb)):
        d = rt.Delivery([(("loop/burst/%s%d" % (x, i)).encode(), b"%s%d" % (x.encode(), i))
                         for x in ("a", "b") for i in range(50)], c.received())
        t.check(not d.missing and not d.unexpected and d.duplicates == 0,
                "50 publishes at each side at once: %s has each of the 100 exactly once" % name,
                d.describe())
    relay.stop()
    for c in (sa, sb, pa, pb):
        c.stop()


# ----------------------------------------------------------------------------------------------
# the ring

# relay id -> routes (from, to, filter); the test's topics are "ring/from-<broker>".
# RING: every route over "ring/#", so r1 has two routes from y with the very same filter.
RING = {
    "r1": [("x", "y", "ring/#"), ("y", "x", "ring/#"), ("y", "z", "ring/#"),
           ("z", "y", "ring/#")],
    "r2": [("z", "x", "ring/#"), ("x", "z", "ring/#")],
}
# RING_OVERLAP: r1's two routes from y use different filters that both match, so one message
# matches two subscriptions of one connection.
RING_OVERLAP = {
    "r1": [("x", "y", "ring/#"), ("y", "x", "ring/#"), ("y", "z", "ring/+"),
           ("z", "y", "ring/#")],
    "r2": [("z", "x", "ring/#"), ("x", "z", "ring/#")],
}


def model(ring, origin, max_hops=8):
    """What each broker receives when a client publishes at origin: {broker: [path tuples]}, by
    SPEC's rules: a relay's connection to a broker does not get back what it published there
    (No Local); a relay drops a message whose path holds its id or has max_hops entries;
    otherwise it forwards on each of its routes from that broker, appending its id."""
    got = {b: [] for b in "xyz"}
    work = [(origin, (), None)]  # (broker, path, publisher: relay id or None for the client)
    got[origin].append(())
    while work:
        broker, path, publisher = work.pop(0)
        for rid, routes in ring.items():
            if publisher == rid or rid in path or len(path) >= max_hops:
                continue
            for f, to, _ in routes:
                if f == broker:
                    p = path + (rid,)
                    got[to].append(p)
                    work.append((to, p, rid))
    return got


def run_ring(t, ring, what):
    t.section("a ring of three MQTT 5 brokers with two relays (%s)" % what)
    br = {n: t.broker(n) for n in "xyz"}
    relays = []
    for rid, routes in ring.items():
        names = sorted({b for r in routes for b in r[:2]})
        relays.append(t.relay(
            relay={"id": rid}, name=rid,
            brokers=[{"name": n, "url": br[n].url, "version": "5"} for n in names],
            routes=[{"name": "%s-%s" % r[:2], "from": r[0], "to": r[1], "filter": r[2]}
                    for r in routes]))
    for rl in relays:
        rl.wait_ready(br)
    subs = {n: t.client(br[n], "5").subscribe("ring/#", 1) for n in "xyz"}
    pubs = {n: t.client(br[n], "5") for n in "xyz"}
    for origin in "xyz":
        for c in subs.values():
            c.clear()
        want = model(ring, origin)
        topic = "ring/from-%s" % origin
        pubs[origin].publish(topic, b"hello from " + origin.encode(), 1)
        pubs[origin].wait_published(10)
        settle(t, [subs[n] for n in "xyz"], [len(want[n]) for n in "xyz"])
        for n in "xyz":
            msgs = subs[n].received()
            paths = sorted(tuple(p for p in path_of(m).split(",") if p) for m in msgs)
            t.check(all(m.topic == topic.encode() and m.payload == b"hello from " +
                        origin.encode() for m in msgs),
                    "published at %s: %s receives only that message, unchanged" % (origin, n))
            t.check(len(paths) == len(set(paths)),
                    "published at %s: %s gets it at most once per path: %s"
                    % (origin, n, ["/".join(p) or "(original)" for p in paths]))
            t.check(paths == sorted(want[n]),
                    "published at %s: %s receives exactly the copies of the model, relay-path "
                    "listing the relay ids in order: %s"
                    % (origin, n, [",".join(p) or "(original)" for p in sorted(want[n])]),
                    "got %s" % [",".join(p) or "(original)" for p in paths])
        t.check(len(subs[origin].received()) == 1,
                "published at %s: it never comes back to %s" % (origin, origin))
    for rl in relays:
        rl.stop()
    for c in list(subs.values()) + list(pubs.values()):
        c.stop()
    for b in br.values():
        b.stop()


def run_v311(t):
    t.section("MQTT 3.1.1 both ways over overlapping topics: refused")
    text = rt.relay_config_text(
        {"id": "v311", "log_level": "info"},
        [{"name": "edge", "url": "mqtt://127.0.0.1:1", "version": "3.1.1"},
         {"name": "cloud", "url": "mqtt://127.0.0.1:2", "version": "3.1.1"}],
        [{"name": "telemetry-up", "from": "edge", "to": "cloud", "filter": "site/#"},
         {"name": "commands-down", "from": "cloud", "to": "edge", "filter": "site/+/cmd"}])
    for args, what in ((["--check"], "--check"), ([], "a normal start")):
        rc, out, err = t.run_relay_once(text, args, "v311.conf", timeout=15)
        t.note("%s: exit %d: %s" % (what, rc, err.strip()))
        t.check(rc == 1, "%s exits 1 (got %d)" % (what, rc), err)
        t.check("telemetry-up" in err and "commands-down" in err,
                "%s names both routes" % what, err)
        t.check("v311.conf" in err, "%s names the file" % what, err)
    # the same routes between two MQTT 5 brokers are accepted: relay-path and No Local guard
    # them. (One side on MQTT 5 is not enough: the 3.1.1 side would echo the relay's own
    # publishes back to it, and the bridge bit that prevents it is only known at run time.)
    text5 = text.replace('version = "3.1.1";', 'version = "5";')
    rc, out, err = t.run_relay_once(text5, ["--check"], "v5.conf", timeout=15)
    t.check(rc == 0, "with both brokers on MQTT 5, --check accepts the same routes (exit %d)"
            % rc, err + out)


def metric_sum(text, name, **labels):
    tot = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not m:
            continue
        ls = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(ls.get(k) == v for k, v in labels.items()):
            tot += float(m.group(3))
    return tot


def get_metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


def run_max_hops(t):
    t.section("max_hops: a relay-path longer than max_hops is dropped and counted")
    a = t.broker("ha")
    b = t.broker("hb")
    port = rt.free_port()
    relay = t.relay(relay={"id": "hop", "max_hops": 3, "metrics": "127.0.0.1:%d" % port},
                    name="hops",
                    brokers=[{"name": "a", "url": a.url, "version": "5"},
                             {"name": "b", "url": b.url, "version": "5"}],
                    routes=[{"name": "hops-up", "from": "a", "to": "b", "filter": "hop/#"}])
    relay.wait_ready({"a": a, "b": b})
    sb = t.client(b, "5").subscribe("hop/#", 1)
    pa = t.client(a, "5")
    ok = rt.wait_until(lambda: rt.port_accepts(port), 10)
    t.check(ok, "the metrics listener answers on 127.0.0.1:%d" % port)
    before = metric_sum(get_metrics(port), "mqtt_relay_messages_dropped_total", reason="loop")
    cases = [  # (relay-path sent, forwarded?)
        ("m1,m2,m3,m4", False),    # 4 entries > max_hops 3
        ("m1,m2,m3,m4,m5", False),
        ("m1,hop", False),         # holds our id
        ("m1,m2", True),           # 2 entries: forwarded as m1,m2,hop (3 = max_hops)
        ("", True),                # none: forwarded as hop
    ]
    for i, (path, _) in enumerate(cases):
        props = rt.publish_props(UserProperty=[("relay-path", path)]) if path else None
        pa.publish("hop/%d" % i, b"case %d" % i, 1, props=props)
    pa.wait_published(10)
    n_fwd = sum(1 for _, f in cases if f)
    n_drop = len(cases) - n_fwd
    dropped = 0.0

    def counted():
        nonlocal dropped
        dropped = metric_sum(get_metrics(port), "mqtt_relay_messages_dropped_total",
                             reason="loop") - before
        return dropped >= n_drop and sb.count() >= n_fwd

    rt.wait_until(counted, 15, 0.2)
    time.sleep(1.0)
    counted()
    got = {m.topic.decode(): path_of(m) for m in sb.received()}
    t.check(dropped == n_drop,
            "mqtt_relay_messages_dropped_total{reason=\"loop\"} rose by %d (%g)"
            % (n_drop, dropped))
    t.check(sb.count() == n_fwd, "%d messages forwarded, the others dropped (%s)"
            % (n_fwd, sorted(got)))
    t.check(got.get("hop/3") == "m1,m2,hop" and got.get("hop/4") == "hop",
            "the forwarded ones carry the path with our id appended: %s" % got)
    lines = [l for l in get_metrics(port).splitlines()
             if l.startswith("mqtt_relay_messages_dropped_total") and 'reason="loop"' in l]
    t.note("metrics: %s" % "; ".join(lines))
    t.check(any('route="hops-up"' in l for l in lines),
            "the loop drops are labelled with the route", "; ".join(lines))
    relay.stop()


def run_same_filter(t):
    t.section("two routes from one MQTT 5 source with the same filter both forward")
    # Each route subscribes with its own Subscription Identifier; a broker keeps one
    # subscription per filter and client, so the second SUBSCRIBE replaces the first's
    # identifier. Both routes must still get the message.
    a, b, c = t.broker("sa"), t.broker("sb"), t.broker("sc")
    relay = t.relay(relay={"id": "same"}, name="same",
                    brokers=[{"name": n, "url": x.url, "version": "5"}
                             for n, x in (("a", a), ("b", b), ("c", c))],
                    routes=[{"name": "a-to-b", "from": "a", "to": "b", "filter": "same/#"},
                            {"name": "a-to-c", "from": "a", "to": "c", "filter": "same/#"}])
    relay.wait_ready({"a": a, "b": b, "c": c})
    sb = t.client(b, "5").subscribe("same/#", 1)
    sc = t.client(c, "5").subscribe("same/#", 1)
    pa = t.client(a, "5")
    pa.publish("same/x", b"to both", 1)
    pa.wait_published(10)
    settle(t, [sb, sc], [1, 1], timeout=10)
    t.check(sb.count() == 1 and sc.count() == 1,
            "route a-to-b delivered %d, route a-to-c %d (expected 1 and 1)"
            % (sb.count(), sc.count()))
    relay.stop()


def run(t):
    run_pair(t)
    run_ring(t, RING, "every route over ring/#")
    run_ring(t, RING_OVERLAP, "overlapping filters ring/# and ring/+ from one broker")
    run_v311(t)
    run_max_hops(t)
    run_same_filter(t)


if __name__ == "__main__":
    rt.main(run, __doc__)
