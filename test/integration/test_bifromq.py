"""BifroMQ out of the box (issue 12; issue 13 item 6's answer codes are in test_answers.py):
the relay against bifromq_broker.py, a broker that enforces BifroMQ's per-connection rules
(fixed one-second publish windows, Receive Maximum 200, silent drops at 3.x, redelivery and a
session queue; see its docstring). Each section asserts what arrived (counts, order per topic
or per publisher) and what the broker itself counted: its disconnects by reason code, the most
PUBLISHes it accepted in one fixed window of each of the relay's connections (max_fixed), and
the count of every fixed window. Nothing asserts how long something took; the figures each
section prints (msg/s per connection, the broker's busiest window) are for the report.

Sections:
  default MQTT 5        url and version only: the relay learns the pace from DISCONNECT 0x96
                        (at most 2 disconnects for 2,000 messages), then no window of the last
                        connection above 200, and it runs at the pace (3 full windows at 185 or
                        more; every window is printed)
  profile               profile = "bifromq": 0 disconnects, no window above 200, at the pace,
                        2,000 messages
  pool of 4 / of 16     connections = N: 0 disconnects, no window above 200, every connection
                        reaches the pace
                        (topics picked by the relay's hash so each connection gets its share;
                        with 16, nobody subscribes: the broker's tally counts what it accepted)
  MQTT 3.1.1            plain defaults: the bridge-bit refusal (a close without CONNACK) costs
                        one attempt, then the unpaced burst is dropped silently past 200 and the
                        missing acknowledgements (a few round trips) teach the pace: nothing lost;
                        with the profile: connected at the first attempt, nothing dropped
  limit lowered         profile, then the broker's limit goes to 100 mid-stream (set(rate=100),
                        as GET /set?rate=100 does): at most 2 disconnects, then no window above 100
  source outage         BifroMQ as the source, the destination paused (SIGSTOP) for 7 s while
                        300 messages are published; scaled redelivery (--redeliver-period 1
                        --redeliver-tries 4: dropped after 4 s instead of 40 s) and session
                        queue (--queue-limit 100 instead of 1,000). With a spool on the
                        destination: the broker drops nothing and every message arrives. Without:
                        the broker's tally shows drops and messages are missing at the destination
  ingress pools         BifroMQ as the source over 4 connections: $share (every message once)
                        and $oshare (each publisher's messages in order)

Scaling: message counts are sized so the file runs in about 100 s here (the default and profile
sections keep the 2,000 messages of the issue's acceptance figures).

    /usr/bin/python3 test_bifromq.py --relay build/relay/mqtt-relay [--keep] [-v]

BIFROMQ_SECTIONS=default,pool4 (names: default profile pool4 pool16 v311 lowered outage
ingress) runs only those.
"""
import os
import re
import statistics
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import bifromq_broker as bb  # noqa: E402

PACE = 200  # BifroMQ's default PUBLISHes per second per connection
# "at the pace": a full fixed window of a connection holding at least this share of 200 (the
# relay sends 195 a second: 0.975). The checks say the relay reaches the pace (AT_PACE_RUN such
# windows); how many of its windows do is printed, not asserted: the broker counts what
# reaches it, and on this shared machine (load 4 to 7 while other engineers' benchmarks run) a
# relay, broker or source without the CPU for a moment sends or reads less in that second.
NEAR = 0.925
NEAR_POOL = 0.85
AT_PACE_RUN = 3


def at_pace(fw, pace=PACE):
    """Full windows at the pace."""
    return sum(1 for x in fw if x >= NEAR * pace)


FIGURES = []  # (section, text) for the summary at the end


# ----------------------------------------------------------------------------------------------
# the rules broker as a relaytest broker


class Bifro:
    """bifromq_broker.BifroBroker in this process, with what relaytest expects of a broker
    (name, port, connected_ids, subscriptions) and the tally per client id."""

    def __init__(self, t, name, **limits):
        limits.setdefault("refuse_delay", 0.1)
        self.name = name
        self.b = bb.BifroBroker(port=0, log=lambda s: None, **limits).start()
        self.port = self.b.port
        t._register(self)

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    def stats(self, times=False):
        return self.b.stats(times)

    def set(self, **kw):
        return self.b.set(**kw)

    def conns(self, cids, times=True):
        """The tally of every connection (open or closed) from these client ids, in order."""
        cids = set(cids)
        return [c for c in self.stats(times)["connections"] if c["client_id"] in cids]

    def connected_ids(self, i=-1):
        return [c["client_id"] for c in self.stats()["connections"]
                if c["open"] and c["connack"] == 0]

    def subscriptions(self, i=-1):
        out = []
        for cid, s in self.stats()["sessions"].items():
            if s["online"]:
                out.extend((cid, 1, f) for f in s["subscriptions"])
        return out

    def stop(self):
        self.b.stop()


# ----------------------------------------------------------------------------------------------
# helpers


def relay_hash(b):
    """route/route.c's relay_hash (FNV-1a): the pool connection a topic goes to."""
    h = 2166136261
    for x in b:
        h = ((h ^ x) * 16777619) & 0xFFFFFFFF
    return h


def pool_topics(prefix, n_conns, per_conn):
    """per_conn topics for each connection of a pool of n_conns: [[topic, ...], ...]."""
    out = [[] for _ in range(n_conns)]
    i = 0
    while any(len(x) < per_conn for x in out):
        t = "%s/%d" % (prefix, i)
        k = relay_hash(t.encode()) % n_conns
        if len(out[k]) < per_conn:
            out[k].append(t)
        i += 1
    return out


def full_windows(c):
    """Counts of the fixed windows of connection c between its first and its last (both left
    out: the first holds the set-up, the last is cut short)."""
    w = {int(k): v for k, v in c.get("windows", {}).items()}
    if len(w) < 3:
        return []
    ks = sorted(w)
    return [w.get(k, 0) for k in range(ks[0] + 1, ks[-1])]


def pace_disconnects(c_list):
    return [c for c in c_list if c["disconnect"] in ("0x96", "0x93", "0x97", "0x89")]


def per_topic_order_ok(msgs, expected):
    """Every topic's payloads, first arrivals only, in publish order."""
    want = {}
    for tp, p in expected:
        want.setdefault(tp, []).append(p)
    got = {}
    seen = set()
    for m in msgs:
        if (m.topic, m.payload) in seen:
            continue
        seen.add((m.topic, m.payload))
        got.setdefault(m.topic, []).append(m.payload)
    bad = [tp for tp in want if got.get(tp) != want[tp]]
    return not bad, bad[:3]


def publish(pub, topics, n, qos=1, size=16):
    """n messages round-robin over topics; payload "<seq>:" padded to size. Returns expected."""
    expected = []
    for i in range(n):
        tp = topics[i % len(topics)]
        payload = (b"%06d:" % i).ljust(size, b".")
        pub.publish(tp, payload, qos)
        expected.append((tp.encode(), payload))
    return expected


def delivered(t, sub, expected, timeout, what, order=True):
    n = len(expected)
    ok = sub.wait_for(lambda ms: len(set((m.topic, m.payload) for m in ms)) >= n, timeout)
    d = rt.Delivery(expected, sub.received())
    t.check(ok and not d.missing and not d.unexpected, "%s: all %d arrived" % (what, n),
            d.describe())
    if order:
        good, bad = per_topic_order_ok(sub.received(), expected)
        t.check(good, "%s: in publish order on every topic" % what, "out of order: %s" % bad)
    return d


def rate_of(conns):
    """msg/s of each connection: accepted over the span of its full windows, and overall."""
    out = []
    for c in conns:
        fw = full_windows(c)
        if fw:
            out.append(statistics.mean(fw))
    return out


def note_figures(t, section, conns, extra=""):
    per = rate_of([c for c in conns if c["accepted"]])
    busiest = max((c["max_fixed"] for c in conns), default=0)
    sliding = max((c["max_sliding"] for c in conns), default=0)
    disc = {}
    for c in conns:
        if c["disconnect"]:
            disc[c["disconnect"]] = disc.get(c["disconnect"], 0) + 1
    text = ("%d connections; msg/s per connection over full windows: %s; the broker's busiest "
            "fixed window %d, sliding %d; disconnects %s%s"
            % (len(conns), ", ".join("%.1f" % x for x in per) or "-", busiest, sliding,
               disc or "none", extra))
    t.note(text)
    FIGURES.append((section, text))


def metrics_port():
    return rt.free_port()


# ----------------------------------------------------------------------------------------------
# sections


def into_bifromq(t, name, bq_cfg, n, topics, version="5", sub_timeout=60, src_cfg=None,
                 subscribe=True):
    """src (Mosquitto) -> relay -> bq (rules broker); n QoS 1 messages over topics. The test's
    subscriber on bq (one Python client for the whole pool) gets a session queue of 100,000:
    BifroMQ's 1,000 would drop what it does not read fast enough, which is not what is tested
    here (the source-outage section tests that limit)."""
    src = t.broker(name + "-src")
    bq = Bifro(t, name + "-bq", queue_limit=100000)
    mport = metrics_port()
    b = {"name": "bq", "url": bq.url, "version": version}
    b.update(bq_cfg)
    # two seconds of the destination's pace held from the source: a source that gets the CPU
    # late (this machine is shared) does not leave the paced connection without messages
    src_cfg = dict({"receive_maximum": 400}, **(src_cfg or {}))
    relay = t.relay(relay={"id": name, "metrics": "127.0.0.1:%d" % mport}, name=name,
                    brokers=[dict({"name": "src", "url": src.url, "version": "5"},
                                  **(src_cfg or {})), b],
                    routes=[{"name": "up", "from": "src", "to": "bq", "filter": "up/#",
                             "qos": 1}])
    sub = None
    if subscribe:
        sub = t.client(bq, "5")
        sub.subscribe("up/#", 1)
    relay.wait_ready({"src": src, "bq": bq})
    cids = relay.client_ids("bq")
    pub = t.client(src, "5", max_inflight=1000)
    expected = publish(pub, topics, n)
    pub.wait_published(120)
    if sub:
        delivered(t, sub, expected, sub_timeout, name)
    else:
        # nobody subscribes: the broker answers PUBACK 0x10, and its tally is the outcome
        t.check(rt.wait_until(lambda: sum(c["accepted"] for c in bq.conns(cids, False)) >= n,
                              sub_timeout),
                "%s: the broker accepted all %d" % (name, n))
    conns = bq.conns(cids)
    ms = rt.get_metrics(mport)
    return relay, bq, sub, pub, conns, ms, cids


def section_default_v5(t):
    t.section("default MQTT 5 (url and version only): learns the pace, then runs at it")
    relay, bq, sub, pub, conns, ms, cids = into_bifromq(
        t, "dflt5", {}, 2000, ["up/a/%d" % i for i in range(4)])
    pd = pace_disconnects(conns)
    t.check(1 <= len(pd) <= 2, "at most 2 pace disconnects, by the broker's tally (%d: %s)"
            % (len(pd), [c["disconnect"] for c in pd]))
    t.check(all(c["disconnect"] in (None, "0x96") for c in conns),
            "no disconnect other than 0x96 (%s)" % [c["disconnect"] for c in conns])
    last = conns[-1]
    fw = full_windows(last)
    t.check(last["max_fixed"] <= PACE,
            "after learning, no fixed window of the last connection above %d (%d)"
            % (PACE, last["max_fixed"]))
    pace = rt.metric(ms, "mqtt_relay_pace_messages_per_second", broker="bq")
    sig = rt.metric(ms, "mqtt_relay_pace_signals_total", broker="bq", signal="disconnect_0x96")
    # at the pace it learned (200, or a little less after a second trip: a busy machine can
    # bunch messages past the 25 ms margin)
    t.check(at_pace(fw, pace) >= AT_PACE_RUN,
            "then at the pace it learned (%g): %d full windows at %d or more (%s)"
            % (pace, at_pace(fw, pace), NEAR * pace, fw))
    t.check(0 < pace <= PACE, "/metrics: the learned pace %g (<= %d)" % (pace, PACE))
    t.check(sig == len(pd), "/metrics: %g disconnect_0x96 signals = the broker's count" % sig)
    note_figures(t, "default MQTT 5", conns, "; learned pace %g" % pace)
    relay.stop()


def section_profile(t):
    t.section("profile = \"bifromq\": 2,000 messages, no disconnect, no window above 200")
    relay, bq, sub, pub, conns, ms, cids = into_bifromq(
        t, "prof", {"profile": "bifromq"}, 2000, ["up/p/%d" % i for i in range(4)])
    t.check(len(conns) == 1 and conns[0]["disconnect"] is None,
            "one connection, never disconnected (%s)" % [c["disconnect"] for c in conns])
    # fixed windows are what BifroMQ counts; the sliding count at the broker also moves with
    # the broker's own stalls (it reads late, then a burst at once), so it is only reported
    t.check(conns[0]["max_fixed"] <= PACE,
            "the broker's busiest fixed window %d <= %d (sliding: %d)"
            % (conns[0]["max_fixed"], PACE, conns[0]["max_sliding"]))
    fw = full_windows(conns[0])
    t.check(at_pace(fw) >= AT_PACE_RUN,
            "at the pace: %d full windows at %d or more (%s)"
            % (at_pace(fw), NEAR * PACE, fw))
    t.check(rt.metric(ms, "mqtt_relay_pace_messages_per_second", broker="bq") == PACE,
            "/metrics: pace %d" % PACE)
    note_figures(t, "profile", conns)
    relay.stop()


def section_pool(t, n_conns, per_conn, subscribe=True):
    t.section("pool of %d (profile): %d messages, no disconnect, every connection at the pace"
              % (n_conns, n_conns * per_conn))
    topics = pool_topics("up/pool%d" % n_conns, n_conns, 2)
    flat = [tp for i in range(2) for group in topics for tp in [group[i]]]
    # the source's receive_maximum bounds what the relay holds for the whole pool (each message
    # is acknowledged to the source once the pool connection delivered it): room for a few
    # seconds' backlog on every connection, as config/pool-shared.conf advises
    relay, bq, sub, pub, conns, ms, cids = into_bifromq(
        t, "pool%d" % n_conns, {"profile": "bifromq", "connections": n_conns},
        n_conns * per_conn, flat, src_cfg={"receive_maximum": 50 * n_conns},
        subscribe=subscribe)
    t.check(len(conns) == n_conns and not any(c["disconnect"] for c in conns),
            "%d connections, none disconnected (%s)"
            % (len(conns), [c["disconnect"] for c in conns if c["disconnect"]]))
    t.check(max(c["max_fixed"] for c in conns) <= PACE,
            "no connection's fixed window above %d (busiest %d)"
            % (PACE, max(c["max_fixed"] for c in conns)))
    t.check(all(c["accepted"] == per_conn for c in conns),
            "each connection carried its share: %s" % [c["accepted"] for c in conns])
    # N connections share the source's stream, this process's broker and the machine: on a busy
    # machine they all slow together (seen: every one at 175 while another benchmark ran)
    best = [max(full_windows(c), default=0) for c in conns]
    t.check(all(m >= NEAR_POOL * PACE for m in best),
            "every connection reached the pace: its best full window at %d or more (%s)"
            % (NEAR_POOL * PACE, best))
    # the total: the connections' windows overlap in time; their accepted over the common span
    opened = [c["opened"] for c in conns]
    t0 = max(opened)
    ends = []
    for c in conns:
        ts = c.get("publish_times") or [0]
        ends.append(c["opened"] + ts[-1])
    starts = [c["opened"] + (c.get("publish_times") or [0])[0] for c in conns]
    span = max(ends) - min(starts)
    total = sum(c["accepted"] for c in conns)
    note_figures(t, "pool of %d" % n_conns, conns,
                 "; total %d messages in %.2f s = %.0f msg/s (N x pace = %d)"
                 % (total, span, total / span if span > 0 else 0, n_conns * PACE))
    del t0
    relay.stop()


def section_v311(t):
    t.section("MQTT 3.1.1, plain defaults: connects at the second attempt (the bridge bit), "
              "silent drops teach the pace, nothing lost")
    relay, bq, sub, pub, conns, ms, cids = into_bifromq(
        t, "v311", {}, 1000, ["up/v3/%d" % i for i in range(4)], version="3.1.1")
    tot = bq.stats()["totals"]
    nc = tot["closed_without_connack"]
    t.check(sum(nc.values()) <= 1,
            "at most one CONNECT closed without CONNACK (the bridge bit): %s" % nc)
    t.check(conns and conns[0]["connack"] == 0 or (len(conns) > 1 and conns[1]["connack"] == 0),
            "connected by the second attempt at the latest")
    dropped = sum(c["dropped"].get("rate", 0) for c in conns)
    t.check(dropped > 0, "the broker dropped %d PUBLISHes silently (past 200 in a window)"
            % dropped)
    sig = (rt.metric(ms, "mqtt_relay_pace_signals_total", broker="bq", signal="missing_ack") +
           rt.metric(ms, "mqtt_relay_pace_signals_total", broker="bq", signal="ack_timeout"))
    t.check(sig >= 1, "/metrics: %g missing_ack + ack_timeout signals" % sig)
    waits = [int(m.group(1)) for m in (re.search(r"no acknowledgement for packet id \d+ within "
                                                 r"(\d+) ms \(", l)
                                       for l in relay.log_lines()) if m]
    t.check(waits and max(waits) < 20000,
            "the relay gave up waiting after a few round trips, not ack_timeout (%s ms)" % waits)
    last = conns[-1]
    t.check(last["max_fixed"] <= PACE and not last["dropped"],
            "the last connection: no window above %d, nothing dropped (%d, %s)"
            % (PACE, last["max_fixed"], last["dropped"]))
    note_figures(t, "MQTT 3.1.1 defaults", conns, "; silently dropped and resent %d" % dropped)
    relay.stop()

    t.section("MQTT 3.1.1, profile: connected at once, nothing dropped")
    relay, bq, sub, pub, conns, ms, cids = into_bifromq(
        t, "v311p", {"profile": "bifromq"}, 1000, ["up/v3p/%d" % i for i in range(4)],
        version="3.1.1")
    tot = bq.stats()["totals"]
    t.check(not tot["closed_without_connack"] and len(conns) == 1 and conns[0]["connack"] == 0,
            "one connection, accepted at the first CONNECT (%s)" % tot["closed_without_connack"])
    t.check(not conns[0]["dropped"] and conns[0]["max_fixed"] <= PACE,
            "nothing dropped, no window above %d (%s, %d)"
            % (PACE, conns[0]["dropped"], conns[0]["max_fixed"]))
    note_figures(t, "MQTT 3.1.1 profile", conns)
    relay.stop()


def section_lowered(t):
    t.section("the broker lowers its limit to 100 mid-stream (profile)")
    src = t.broker("low-src")
    bq = Bifro(t, "low-bq")
    mport = metrics_port()
    relay = t.relay(relay={"id": "low", "metrics": "127.0.0.1:%d" % mport}, name="low",
                    brokers=[{"name": "src", "url": src.url, "version": "5"},
                             {"name": "bq", "url": bq.url, "profile": "bifromq"}],
                    routes=[{"from": "src", "to": "bq", "filter": "up/#", "qos": 1}])
    sub = t.client(bq, "5")
    sub.subscribe("up/#", 1)
    relay.wait_ready({"src": src, "bq": bq})
    cids = relay.client_ids("bq")
    pub = t.client(src, "5", max_inflight=1000)
    expected = publish(pub, ["up/low/%d" % i for i in range(4)], 1400)
    pub.wait_published(60)
    t.check(sub.wait_for(lambda ms: len(ms) >= 400, 30), "400 arrived at the old pace")
    bq.set(rate=100)
    changed = time.time()
    delivered(t, sub, expected, 60, "lowered")
    conns = bq.conns(cids)
    pd = pace_disconnects(conns)
    t.check(1 <= len(pd) <= 2, "1 or 2 disconnects 0x96 after the change (%s)"
            % [c["disconnect"] for c in conns])
    after = [c for c in conns if c["opened"] > changed]
    t.check(after and after[-1]["disconnect"] is None and after[-1]["max_fixed"] <= 100,
            "the last connection: never disconnected, no window above 100 (%s)"
            % [(c["disconnect"], c["max_fixed"]) for c in after])
    pace = rt.get_metrics(mport)
    p = rt.metric(pace, "mqtt_relay_pace_messages_per_second", broker="bq")
    # the relay's estimate of the broker's count may be off by one or two (it places the broker's
    # seconds from its own link open): kept over 1.025 s windows, 102 is still 99.5 a second
    t.check(0 < p <= 105, "/metrics: pace %g, about 100 (the broker's windows above: none "
            "over 100)" % p)
    note_figures(t, "limit lowered to 100", after, "; pace now %g" % p)
    relay.stop()


def section_source_outage(t):
    for spool in (True, False):
        t.section("BifroMQ as the source, the destination paused 7 s, %s spool"
                  % ("with a" if spool else "without a"))
        name = "out%s" % ("s" if spool else "n")
        bq = Bifro(t, name + "-bq", redeliver_period=1.0, redeliver_tries=4, queue_limit=100)
        dst = t.broker(name + "-dst")
        d = {"name": "dst", "url": dst.url, "version": "5"}
        if spool:
            d["spool"] = {"dir": "spool-dst"}
        relay = t.relay(relay={"id": name}, name=name,
                        brokers=[{"name": "bq", "url": bq.url, "profile": "bifromq"}, d],
                        routes=[{"from": "bq", "to": "dst", "filter": "src/#", "qos": 1}])
        sub = t.client(dst, "5", clean=False)
        sub.subscribe("src/#", 1)
        relay.wait_ready({"bq": bq, "dst": dst})
        pub = t.client(bq, "5")
        expected = []
        dst.pause()
        try:
            t0 = time.monotonic()
            for i in range(300):  # 100/s: under the broker's 200/s for the publisher
                payload = b"%05d" % i
                pub.publish("src/o/%d" % (i % 3), payload, 1)
                expected.append((("src/o/%d" % (i % 3)).encode(), payload))
                time.sleep(0.01)
            pub.wait_published(30)
            while time.monotonic() - t0 < 7.0:
                time.sleep(0.1)
        finally:
            dst.resume()
        tot = bq.stats()["totals"]["dropped"]
        lost = {k: v for k, v in tot.items() if k in ("redelivery_exhausted", "queue_full")}
        if spool:
            delivered(t, sub, expected, 60, "with a spool")
            t.check(not lost, "the broker dropped nothing (%s)" % tot)
            FIGURES.append(("source outage, spool", "300 published, 300 arrived, broker drops %s"
                            % (tot or "none")))
        else:
            sub.wait_for(lambda ms: False, 8)  # whatever still comes
            d = rt.Delivery(expected, sub.received())
            t.check(sum(lost.values()) > 0,
                    "the broker dropped messages it could not deliver in time: %s" % lost)
            t.check(d.missing and not d.unexpected,
                    "and %d of 300 never arrived (%s)" % (len(d.missing), d.describe()))
            FIGURES.append(("source outage, no spool", "300 published, %d missing, broker drops %s"
                            % (len(d.missing), lost)))
        relay.stop()


def section_ingress_pools(t):
    for ordered in (False, True):
        kind = "$oshare" if ordered else "$share"
        t.section("BifroMQ as the source, a pool of 4 on %s" % kind)
        name = "in%s" % ("o" if ordered else "s")
        bq = Bifro(t, name + "-bq")
        dst = t.broker(name + "-dst")
        relay = t.relay(relay={"id": name}, name=name,
                        brokers=[{"name": "bq", "url": bq.url, "profile": "bifromq",
                                  "connections": 4},
                                 {"name": "dst", "url": dst.url, "version": "5"}],
                        routes=[{"from": "bq", "to": "dst", "filter": "in/#", "qos": 1,
                                 "share": "relay", "ordered": ordered}])
        sub = t.client(dst, "5")
        sub.subscribe("in/#", 1)
        relay.wait_ready({"bq": bq, "dst": dst})
        pubs = [t.client(bq, "5", client_id="%s-pub%d" % (name, i)) for i in range(6)]
        expected = []
        for k in range(150):
            for i, p in enumerate(pubs):
                # all on one topic: only the publisher tells their messages apart
                payload = b"p%d:%04d" % (i, k)
                p.publish("in/all", payload, 1)
                expected.append((b"in/all", payload))
        for p in pubs:
            p.wait_published(30)
        n = len(expected)
        ok = sub.wait_for(lambda ms: len(set(m.payload for m in ms)) >= n, 60)
        d = rt.Delivery(expected, sub.received())
        t.check(ok and not d.missing and not d.unexpected, "%s: all %d arrived" % (kind, n),
                d.describe())
        cids = relay.client_ids("bq")
        per = [c["delivered"] for c in bq.conns(cids)]
        t.check(sum(per) >= n, "the broker spread them over the pool: %s" % per)
        if ordered:
            order = rt.first_occurrence_order(sub.received())
            bad = []
            for i in range(len(pubs)):
                mine = [x for x in order if x.startswith(b"p%d:" % i)]
                if mine != sorted(mine):
                    bad.append(i)
            t.check(not bad, "$oshare: every publisher's messages in order (%s out of order)"
                    % bad)
        relay.stop()


SECTIONS = [
    ("default", section_default_v5),
    ("profile", section_profile),
    ("pool4", lambda t: section_pool(t, 4, 500)),
    # 16 x 200 a second into the broker and out to one Python subscriber in this process is
    # more than the two share of one core under the GIL on a busy machine: the subscriber is
    # left out (the broker's tally counts what it accepted, per connection)
    ("pool16", lambda t: section_pool(t, 16, 500, subscribe=False)),
    ("v311", section_v311),
    ("lowered", section_lowered),
    ("outage", section_source_outage),
    ("ingress", section_ingress_pools),
]


def run(t):
    only = [x for x in os.environ.get("BIFROMQ_SECTIONS", "").split(",") if x]
    t0 = time.monotonic()
    for name, fn in SECTIONS:
        if not only or name in only:
            fn(t)
    t.say("\nfigures (this machine; the relay, the brokers and the clients share its CPUs):")
    for s, text in FIGURES:
        t.say("  %s: %s" % (s, text))
    t.say("  (whole file: %.0f s)" % (time.monotonic() - t0))


if __name__ == "__main__":
    rt.main(run, __doc__)
