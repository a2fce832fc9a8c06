"""RabbitMQ 3.10 (rabbitmq_mqtt) on one side, Mosquitto on the other (issue 14).

RabbitMQ speaks MQTT 3.1.1 and 3.1; it grants QoS 1 at most (SUBACK 1 for a QoS 2 subscription,
PUBACK for a QoS 2 PUBLISH), delivers retained messages only to subscriptions without wildcards,
and keeps persistent sessions (durable queues) across a restart, even a SIGKILL. One private
RabbitMQ (brokers.py) and one Mosquitto, started once; one relay with default settings except
`version` for the RabbitMQ links (and `metrics`, `tls`, route names):

    m5 (Mosquitto, MQTT 5)  -> r311 (RabbitMQ, 3.1.1)  m2r/a/#
    r311                    -> m5                      r2m/a/#
    m5                      -> r31  (RabbitMQ, 3.1)    m2r/b/#
    r31                     -> m5                      r2m/b/#
    r311                    -> m5                      r2m/ret     (no wildcard: retained)
    mq2 (Mosquitto, MQTT 5) -> rq2  (RabbitMQ, 3.1.1)  q2/#  qos 2 (the QoS 2 case: links of
                                                  its own, rq2 through a recording proxy)
    m5 <-> rtls (RabbitMQ 3.1.1 over TLS)              m2r/t/#, r2m/t/#
    m5 <-> rws  (RabbitMQ 3.1.1 over WebSocket, /ws)   m2r/w/#, r2m/w/#

Sections (each runs even when an earlier one failed; setup stops the test):
  setup      every route carries a probe (readiness whatever the brokers log)
  traffic    QoS 0, 1, 2 published both ways at 3.1.1 and 3.1 with payloads of 0 B, 100 KiB and
             every byte value: each arrives once, byte for byte, at QoS min(published, 1)
  retained   RabbitMQ -> Mosquitto: a retained message stored on RabbitMQ before the relay came
             reaches a late Mosquitto subscriber as retained; Mosquitto -> RabbitMQ: a retained
             message reaches a late RabbitMQ subscriber as retained, and a 0-byte retained one
             clears it
  metrics    /metrics equal to that traffic: received = forwarded per route, nothing dropped,
             inflight 0, every connection up, mqtt_relay_reconnects_total 0 everywhere
  qos2       20 then 10 QoS 2 messages toward RabbitMQ: each arrives exactly once, no
             reconnect, and the second batch goes out at QoS 1 (RabbitMQ's PUBACK told the link)
  tls, ws    mqtts:// to RabbitMQ's TLS listener and ws:// to rabbitmq_web_mqtt (path /ws),
             5 messages each way (with --shim: only a test client on each listener)
  kill       RabbitMQ SIGKILLed in the middle of QoS 1 streams both ways, restarted on the same
             ports: the relay resumes its sessions, every message arrives (duplicates counted)

--shim: until the relay stops sending the 3.x bridge bit to RabbitMQ (which closes such a
CONNECT without CONNACK), the RabbitMQ links can go through brokers.BridgeBitShim, which clears
it; without --shim the test shows the relay as it is. Skipped (77) without rabbitmq-server.
"""
import random
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import brokers  # noqa: E402
import fault_proxy as fp  # noqa: E402
import listeners as ls  # noqa: E402

SHIM = "--shim" in sys.argv
if SHIM:
    sys.argv.remove("--shim")

BIG = random.Random(14).randbytes(100 * 1024)
PAYLOADS = {"empty": b"", "100k": BIG, "bytes": bytes(range(256))}
QOS2_FIRST, QOS2_SECOND = 20, 10
STREAM = 200  # messages each way in the kill section


def route(name, frm, to, filt, **kw):
    r = {"name": name, "from": frm, "to": to, "filter": filt}
    r.update(kw)
    return r


class RabbitTest:
    def __init__(self, t):
        self.t = t
        self.shims = []
        self.probes = {}        # route name -> probes that crossed it
        self.expect_route = {}  # route name -> messages it carried (besides probes)

    # ------------------------------------------------------------------ helpers
    def link_port(self, port, name):
        """Where the relay connects for RabbitMQ's TCP listener: itself, or a shim."""
        if not SHIM:
            return port
        s = brokers.BridgeBitShim(port, name="shim-" + name).start()
        self.shims.append(s)
        return s.port

    def link_url(self, port, name):
        return "mqtt://127.0.0.1:%d" % self.link_port(port, name)

    def metrics(self):
        return rt.get_metrics(self.mport)

    def m(self, name, **labels):
        return rt.metric(self.metrics(), name, **labels)

    # ------------------------------------------------------------------ setup
    def setup(self):
        t = self.t
        self.certs = ls.make_certs(t)
        self.rq = brokers.RabbitMQ(t, "rq", tls=self.certs, ws=True).start()
        self.mo = t.broker("m", log_all=False)
        rq, mo = self.rq, self.mo
        if SHIM:
            t.note("--shim: the RabbitMQ links go through BridgeBitShim (bridge bit cleared)")

        # the test's own clients; the RabbitMQ subscriber keeps its session (kill section)
        self.sub_r = rt.Client(t, rq, "3.1.1", client_id="t-sub-r", clean=False).connect()
        self.sub_r.subscribe("m2r/#", 1)
        self.sub_r.subscribe("q2/#", 1)
        self.sub_m = t.client(mo, "5").subscribe("r2m/#", 2)
        self.pub_m = t.client(mo, "5")
        self.pub_r311 = t.client(rq, "3.1.1")
        self.pub_r31 = t.client(rq, "3.1")
        granted = list(self.sub_r.subacks.values())
        t.check(all(getattr(g[0], "value", g[0]) == 1 for g in granted),
                "RabbitMQ grants QoS 1 to a QoS 1 subscription (granted %s)" % granted)

        # retained messages on RabbitMQ before the relay subscribes
        self.pub_r311.publish("r2m/ret", b"retained-on-rabbitmq", 1, retain=True)
        self.pub_r311.publish("r2m/a/ret-wild", b"retained, wildcard route", 1, retain=True)
        self.pub_r311.wait_published()

        # the QoS 2 link goes through a recording proxy (what QoS the relay sends it)
        self.q2_proxy = fp.FaultProxy(self.link_port(rq.port, "rq2"), name="q2-proxy").start()
        self.mport = rt.free_port()
        brokers_cfg = [
            {"name": "m5", "url": mo.url},
            # the QoS 2 route has a source link of its own: a destination link that cannot make
            # progress holds back the source links feeding it (SPEC: backpressure), and the
            # other sections must not depend on this one
            {"name": "mq2", "url": mo.url},
            {"name": "r311", "url": self.link_url(rq.port, "r311"), "version": "3.1.1"},
            {"name": "r31", "url": self.link_url(rq.port, "r31"), "version": "3.1"},
            {"name": "rq2", "url": self.q2_proxy.url, "version": "3.1.1"},
        ]
        routes = [
            route("m2r311", "m5", "r311", "m2r/a/#"),
            route("r311m", "r311", "m5", "r2m/a/#"),
            route("m2r31", "m5", "r31", "m2r/b/#"),
            route("r31m", "r31", "m5", "r2m/b/#"),
            route("rret", "r311", "m5", "r2m/ret"),
            route("m2q2", "mq2", "rq2", "q2/#", qos=2),
        ]
        if not SHIM:
            brokers_cfg += [{"name": "rtls", "url": rq.url_of("tls"), "version": "3.1.1",
                             "tls": {"ca_file": self.certs.path("ca")}},
                            {"name": "rws", "url": rq.url_of("ws", "/ws"), "version": "3.1.1"}]
            routes += [route("m2rtls", "m5", "rtls", "m2r/t/#"),
                       route("rtlsm", "rtls", "m5", "r2m/t/#"),
                       route("m2rws", "m5", "rws", "m2r/w/#"),
                       route("rwsm", "rws", "m5", "r2m/w/#")]
        self.relay = t.relay(relay={"id": "rq", "metrics": "127.0.0.1:%d" % self.mport},
                             brokers=brokers_cfg, routes=routes)
        probes = [("m2r311", self.pub_m, "m2r/a/probe", self.sub_r),
                  ("r311m", self.pub_r311, "r2m/a/probe", self.sub_m),
                  ("m2r31", self.pub_m, "m2r/b/probe", self.sub_r),
                  ("r31m", self.pub_r31, "r2m/b/probe", self.sub_m),
                  ("m2q2", self.pub_m, "q2/probe", self.sub_r)]
        # (the TLS and WebSocket links are probed in their own sections)
        for name, pub, topic, sub in probes:
            self.probes[name] = brokers.wait_route(t, pub, topic, sub, "route " + name,
                                                   relay=self.relay)
        ids = rq.connected_ids()
        t.check({"rq-r311", "rq-r31", "rq-rq2"} <= set(ids),
                "RabbitMQ's log shows the relay's client ids rq-r311, rq-r31 and rq-rq2",
                "it shows %s" % ids)
        for r in ("m2r311", "r311m", "m2r31", "r31m", "rret", "m2q2", "m2rtls", "rtlsm",
                  "m2rws", "rwsm"):
            self.expect_route[r] = 0

    # ------------------------------------------------------------------ traffic
    def traffic(self):
        t = self.t
        sent = []   # (route, publisher, topic, payload, qos, subscriber)
        for q in (0, 1, 2):
            for kind, pl in PAYLOADS.items():
                for rname, pub, topic, sub in (
                        ("m2r311", self.pub_m, "m2r/a/q%d/%s/ü" % (q, kind), self.sub_r),
                        ("m2r31", self.pub_m, "m2r/b/q%d/%s" % (q, kind), self.sub_r),
                        ("r311m", self.pub_r311, "r2m/a/q%d/%s/ü" % (q, kind), self.sub_m),
                        ("r31m", self.pub_r31, "r2m/b/q%d/%s" % (q, kind), self.sub_m)):
                    pub.publish(topic, pl, q)
                    sent.append((rname, topic.encode(), pl, q, sub))
                for pub in (self.pub_m, self.pub_r311, self.pub_r31):
                    pub.wait_published(30)

        def count(topic, sub):
            return sub.count(lambda m: m.topic == topic)

        rt.wait_until(lambda: all(count(tp, sub) for _, tp, _, _, sub in sent), 60, 0.1)
        bad = []
        for rname, tp, pl, q, sub in sent:
            got = sub.received(lambda m: m.topic == tp)
            if len(got) != 1:
                bad.append("%s: %d copies" % (tp.decode(), len(got)))
            elif got[0].payload != pl:
                bad.append("%s: payload %s" % (tp.decode(), brokers.payload_diff(got[0].payload,
                                                                                pl)))
            elif got[0].qos != min(q, 1) or got[0].retain:
                bad.append("%s: QoS %d retain %d, want QoS %d retain 0"
                           % (tp.decode(), got[0].qos, got[0].retain, min(q, 1)))
            self.expect_route[rname] += 1
        t.check(not bad, "all %d messages (QoS 0/1/2 x 0 B/100 KiB/every byte, both ways, MQTT "
                "3.1.1 and 3.1) arrive once, byte for byte, at QoS min(published, 1)"
                % len(sent), "; ".join(bad[:8]))

    # ------------------------------------------------------------------ retained
    def retained(self):
        t = self.t
        rq, mo = self.rq, self.mo
        late = t.client(mo, "3.1.1")
        late.subscribe("r2m/ret", 1)
        ok = late.wait_for(lambda ms: any(m.retain and m.payload == b"retained-on-rabbitmq"
                                          for m in ms), 20)
        t.check(ok, "a retained message stored on RabbitMQ before the relay came reaches a late "
                "Mosquitto subscriber as retained (route without wildcard)",
                "got %s" % late.received())
        self.expect_route["rret"] += 1
        late.stop()
        wild = self.sub_m.count(lambda m: m.topic == b"r2m/a/ret-wild")
        t.note("the retained message under the wildcard route r2m/a/# %s (RabbitMQ sends "
               "retained messages only to subscriptions without wildcards)"
               % ("also crossed" if wild else "did not cross"))
        self.expect_route["r311m"] += wild

        self.pub_m.publish("m2r/a/ret", b"retained-on-mosquitto", 1, retain=True)
        self.pub_m.wait_published()
        self.expect_route["m2r311"] += 1
        t.check(self.sub_r.wait_for(lambda ms: any(m.topic == b"m2r/a/ret" for m in ms), 20),
                "the retained message from Mosquitto reaches the RabbitMQ subscriber")
        late_r = t.client(rq, "3.1.1")
        late_r.subscribe("m2r/a/ret", 1)
        ok = late_r.wait_for(lambda ms: any(m.retain and m.payload == b"retained-on-mosquitto"
                                            for m in ms), 20)
        t.check(ok, "RabbitMQ stored it: a late RabbitMQ subscriber (no wildcard) gets it as "
                "retained", "got %s" % late_r.received())
        late_r.stop()
        self.pub_m.publish("m2r/a/ret", b"", 1, retain=True)
        self.pub_m.wait_published()
        self.expect_route["m2r311"] += 1
        t.check(self.sub_r.wait_for(lambda ms: any(m.topic == b"m2r/a/ret" and m.payload == b""
                                                   for m in ms), 20),
                "a 0-byte retained message from Mosquitto crosses")
        late_r2 = t.client(rq, "3.1.1")
        late_r2.subscribe("m2r/a/ret", 1)
        rt.wait_until(lambda: late_r2.count(), 2)  # a bounded look: nothing should come
        t.check(late_r2.count() == 0, "and clears the retained message on RabbitMQ (a late "
                "subscriber gets nothing)", "got %s" % late_r2.received())
        late_r2.stop()

    # ------------------------------------------------------------------ metrics
    def check_metrics(self):
        t = self.t
        want = {r: n + self.probes.get(r, 0) for r, n in self.expect_route.items()}
        if SHIM:
            for r in ("m2rtls", "rtlsm", "m2rws", "rwsm"):
                want.pop(r)

        def settled():
            ms = self.metrics()
            return all(rt.metric(ms, "mqtt_relay_messages_forwarded_total", route=r) == n
                       for r, n in want.items()) and \
                rt.metric(ms, "mqtt_relay_inflight") == 0 and ms
        ms = rt.wait_until(settled, 15, 0.1) or self.metrics()
        for r, n in sorted(want.items()):
            rec = rt.metric(ms, "mqtt_relay_messages_received_total", route=r)
            fwd = rt.metric(ms, "mqtt_relay_messages_forwarded_total", route=r)
            drop = rt.metric(ms, "mqtt_relay_messages_dropped_total", route=r)
            t.check(rec == fwd == n and drop == 0,
                    "route %s: received = forwarded = %d, dropped 0" % (r, n),
                    "received %s, forwarded %s, dropped %s" % (rec, fwd, drop))
        links = ["m5", "mq2", "r311", "r31", "rq2"] + ([] if SHIM else ["rtls", "rws"])
        for b in links:
            t.check(rt.metric(ms, "mqtt_relay_connection_up", broker=b) == 1,
                    "connection_up{broker=%s} = 1" % b)
            t.check(rt.metric(ms, "mqtt_relay_inflight", broker=b) == 0,
                    "inflight{broker=%s} = 0" % b)
        rec = {b: rt.metric(ms, "mqtt_relay_reconnects_total", broker=b) for b in links}
        t.check(not any(rec.values()), "mqtt_relay_reconnects_total = 0 for every link (a "
                "refused bridge bit is no reconnect)", "got %s" % rec)

    # ------------------------------------------------------------------ QoS 2 toward RabbitMQ
    def qos2(self):
        t = self.t
        before = self.m("mqtt_relay_reconnects_total")

        def batch(tag, n):
            for i in range(n):
                self.pub_m.publish("q2/%s/%d" % (tag, i), b"%s-%d" % (tag.encode(), i), 2)
            self.pub_m.wait_published(30)
            topics = [("q2/%s/%d" % (tag, i)).encode() for i in range(n)]
            ok = self.sub_r.wait_for(lambda ms: all(any(m.topic == tp for m in ms)
                                                    for tp in topics), 30)
            # once the relay says all were forwarded and nothing is in flight, no copy is on
            # its way: count
            rt.wait_until(lambda: self.m("mqtt_relay_messages_forwarded_total", route="m2q2")
                          >= self.probes["m2q2"] + self.expect_route["m2q2"] + n and
                          self.m("mqtt_relay_inflight", broker="rq2") == 0, 15, 0.1)
            got = [m for m in self.sub_r.received() if m.topic in topics]
            dups = len(got) - len(set(m.topic for m in got))
            t.check(ok and dups == 0 and len(got) == n,
                    "%d QoS 2 messages toward RabbitMQ: each arrives exactly once" % n,
                    "%d distinct of %d arrived, %d copies in all (%d duplicates); relay log: %s"
                    % (len(set(m.topic for m in got)), n, len(got), dups,
                       " | ".join(l for l in self.relay.log_lines()[-6:])))
            t.check(all(m.payload == b"%s-%s" % (tag.encode(), m.topic.split(b"/")[-1])
                        for m in got), "byte for byte")
            self.expect_route["m2q2"] += n

        batch("n1", QOS2_FIRST)
        batch("n2", QOS2_SECOND)
        rec = self.m("mqtt_relay_reconnects_total")
        t.check(rec == before == 0, "mqtt_relay_reconnects_total stays 0 (before %s, after %s)"
                % (before, rec))
        sent = []
        for ln in self.q2_proxy.snapshot():
            sent += [p for p in ln.sent("PUBLISH") if p["topic"].startswith(b"q2/n")]
        q2 = [p["topic"].decode() for p in sent if p["qos"] == 2]
        late_q2 = [tp for tp in q2 if tp.startswith("q2/n2/")]
        t.note("the relay sent %d PUBLISHes on the rq2 link, %d of them at QoS 2 (%s)"
               % (len(sent), len(q2), ", ".join(q2[:5]) + (" ..." if len(q2) > 5 else "")))
        t.check(not late_q2, "after RabbitMQ answered QoS 2 with PUBACK, the link sends at QoS 1 "
                "(the second batch: no QoS 2 PUBLISH)", "QoS 2: %s" % late_q2[:5])
        errs = [l for l in self.relay.log_lines() if " rq2#0: " in l and
                ("protocol error" in l or "unknown packet id" in l)]
        t.check(not errs, "no protocol error on the rq2 link", "\n     ".join(errs[:3]))
        for l in self.relay.log_lines():
            if " rq2#0: " in l and "connected to" not in l:
                t.note("relay: %s" % l)

    # ------------------------------------------------------------------ TLS
    def transport(self, kind):
        """kind "tls" (mqtts://, the test CA) or "ws" (ws://, RabbitMQ's path /ws)."""
        t = self.t
        what = {"tls": "over TLS (RabbitMQ's TLS listener, the test CA)",
                "ws": "over WebSocket (rabbitmq_web_mqtt on /ws)"}[kind]
        # the listener itself, with a test client (this part runs with --shim too)
        c = brokers.listener_client(t, self.rq, kind, "3.1.1", certs=self.certs, path="/ws")
        c.subscribe("%s/self" % kind, 1)
        c.publish("%s/self" % kind, b"self", 1)
        c.wait_published()
        t.check(c.wait_for(lambda ms: any(m.payload == b"self" for m in ms), 10),
                "a test client (3.1.1) works %s" % what)
        c.stop()
        if SHIM:
            t.note("--shim: the relay's %s link is not tested (a TCP shim cannot clear the "
                   "bridge bit inside %s)" % (kind, kind.upper()))
            return
        pre = kind[0]
        for name, pub, topic, sub in (("m2r" + kind, self.pub_m, "m2r/%s/probe" % pre,
                                       self.sub_r),
                                      ("r%sm" % kind, self.pub_r311, "r2m/%s/probe" % pre,
                                       self.sub_m)):
            self.probes[name] = brokers.wait_route(t, pub, topic, sub, "route " + name,
                                                   relay=self.relay)
        for tag, pub, topic, sub in (("up", self.pub_m, "m2r/%s/x" % pre, self.sub_r),
                                     ("down", self.pub_r311, "r2m/%s/x" % pre, self.sub_m)):
            for i in range(5):
                pub.publish(topic, b"%s-%s-%d" % (kind.encode(), tag.encode(), i), 1)
            pub.wait_published()
            want = {b"%s-%s-%d" % (kind.encode(), tag.encode(), i) for i in range(5)}
            ok = sub.wait_for(lambda ms: want <= {m.payload for m in ms
                                                  if m.topic == topic.encode()}, 20)
            t.check(ok, "%s: 5 QoS 1 messages %s" % (what, "Mosquitto -> RabbitMQ"
                                                     if tag == "up" else
                                                     "RabbitMQ -> Mosquitto"))
        scheme = {"tls": "mqtts", "ws": "ws"}[kind]
        lines = [l for l in self.relay.log_lines()
                 if " r%s#0: connected to %s://" % (kind, scheme) in l]
        t.check(lines, "the relay logs its %s connection to RabbitMQ" % kind.upper())

    # ------------------------------------------------------------------ kill and restart
    def kill(self):
        t = self.t
        rq = self.rq
        self.sub_m.clear()
        self.sub_r.clear()
        half = STREAM // 2
        for i in range(half):
            self.pub_m.publish("m2r/a/s/%d" % i, b"%d" % i, 1)
            self.pub_r311.publish("r2m/a/s/%d" % i, b"%d" % i, 1)
        # mid-stream: some of these are on their way through the relay right now
        n_pub, n_sub = self.pub_r311.connects, self.sub_r.connects
        rq.kill()
        t.check(not rq.leftovers(), "RabbitMQ's processes are gone (beam.smp, erl_child_setup, "
                "inet_gethost)", "left: %s" % rq.leftovers())
        for i in range(half, STREAM):
            self.pub_m.publish("m2r/a/s/%d" % i, b"%d" % i, 1)
        rq.start()
        t.check(self.pub_r311.wait_reconnected(n_pub, 30) and
                self.sub_r.wait_reconnected(n_sub, 30),
                "the test's RabbitMQ clients are back (the subscriber's session kept)")
        for i in range(half, STREAM):
            self.pub_r311.publish("r2m/a/s/%d" % i, b"%d" % i, 1)
        self.pub_m.wait_published(60)
        self.pub_r311.wait_published(60)

        def nums(sub, prefix):
            return [int(m.payload) for m in sub.received(lambda m: m.topic.startswith(prefix))]
        rt.wait_until(lambda: len(set(nums(self.sub_r, b"m2r/a/s/"))) >= STREAM and
                      len(set(nums(self.sub_m, b"r2m/a/s/"))) >= STREAM, 90, 0.2)
        for what, got in (("Mosquitto -> RabbitMQ", nums(self.sub_r, b"m2r/a/s/")),
                          ("RabbitMQ -> Mosquitto", nums(self.sub_m, b"r2m/a/s/"))):
            missing = sorted(set(range(STREAM)) - set(got))
            # on failure, what the relay said about the link (the log tail may be cut short)
            said = [l for l in self.relay.log_lines()
                    if " r311#0: " in l and " DEBUG " not in l][-15:]
            t.check(not missing, "%s: all %d QoS 1 messages arrive (%d duplicates)"
                    % (what, STREAM, len(got) - len(set(got))),
                    "%d missing, e.g. %s; the relay on r311:\n     %s"
                    % (len(missing), missing[:10], "\n     ".join(said)))
        resumed = [l for l in self.relay.log_lines() if " r311#0: connected to " in l]
        t.check(len(resumed) >= 2 and "session resumed" in resumed[-1],
                "RabbitMQ kept the relay's session across the SIGKILL (session resumed)",
                "\n     ".join(resumed))
        # (rq2 is the qos2 section's link: its state is that section's business)
        links = ["r311", "r31"] + ([] if SHIM else ["rtls", "rws"])

        def back():
            ms = self.metrics()
            return all(rt.metric(ms, "mqtt_relay_connection_up", broker=b) == 1
                       for b in links) and ms
        ms = rt.wait_until(back, 30, 0.2) or self.metrics()
        rec = {b: rt.metric(ms, "mqtt_relay_reconnects_total", broker=b) for b in links}
        up = {b: rt.metric(ms, "mqtt_relay_connection_up", broker=b) for b in links}
        t.check(all(v >= 1 for v in rec.values()) and all(v == 1 for v in up.values()),
                "/metrics: the RabbitMQ links reconnected and are up (reconnects %s)" % rec,
                "connection_up %s" % up)

    # ------------------------------------------------------------------ run
    def run(self):
        s = brokers.Sections(self.t)
        s.run("setup: RabbitMQ, Mosquitto, the relay; every route carries a probe", self.setup,
              fatal=True)
        s.run("traffic: QoS 0/1/2, 0 B / 100 KiB / every byte, both ways, 3.1.1 and 3.1",
              self.traffic)
        s.run("retained both ways (RabbitMQ: subscriptions without wildcards only)",
              self.retained)
        s.run("/metrics equal to the traffic", self.check_metrics)
        s.run("QoS 2 toward RabbitMQ (it answers PUBACK): no duplicates, no reconnects",
              self.qos2)
        s.run("TLS: mqtts:// to RabbitMQ's TLS listener", lambda: self.transport("tls"))
        s.run("WebSocket: ws:// to RabbitMQ's rabbitmq_web_mqtt", lambda: self.transport("ws"))
        s.run("RabbitMQ SIGKILLed mid-stream and restarted: nothing lost", self.kill)
        for sh in self.shims:
            self.t.note("%s: cleared the bridge bit in %d CONNECTs" % (sh.name, sh.patched))
        s.finish()
        self.relay.stop()


def run(t):
    brokers.require_rabbitmq()
    rtest = RabbitTest(t)
    try:
        rtest.run()
    finally:
        for s in rtest.shims:
            s.stop()
        if getattr(rtest, "q2_proxy", None):
            rtest.q2_proxy.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
