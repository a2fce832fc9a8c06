"""ejabberd 23.01 (mod_mqtt) on one side, Mosquitto on the other (issue 14).

ejabberd speaks MQTT 5 and 3.1.1 (not 3.1), QoS 0-2, retained messages (wildcards included) and
every MQTT 5 property; its logins are anonymous here but still need a user name and a password
(any); it keeps sessions in RAM only (a restart loses them, retained messages survive). One
private ejabberd (brokers.py, with TLS and WebSocket listeners) and one Mosquitto (persistence
on), started once; one relay with default settings except the ejabberd credentials, `version`
for the 3.1.1 link, QoS 2 routes, and `metrics`, `tls`, route names:

    m5 (Mosquitto, MQTT 5) -> e5   (ejabberd, 5)      m2e/5/#  qos 2
    e5                     -> m5                      e2m/5/#  qos 2
    m5                     -> e311 (ejabberd, 3.1.1)  m2e/3/#  qos 2
    e311                   -> m5                      e2m/3/#  qos 2
    m5 <-> etls (ejabberd 5 over mqtts://)            m2e/t/#, e2m/t/#
    m5 <-> ews  (ejabberd 5 over ws://.../mqtt)       m2e/w/#, e2m/w/#
The e5 link goes through a fault proxy (fault_proxy.py), used only to hold the relay off while
the test's own ejabberd clients come back after ejabberd's restart.

Sections (each runs even when an earlier one failed; setup stops the test):
  setup       every route carries a probe
  traffic     QoS 0, 1, 2 both ways at 5 and 3.1.1, payloads of 0 B, 100 KiB and every byte
              value: each arrives once, byte for byte, at the QoS published
  properties  MQTT 5 properties through ejabberd both ways (user properties in order, content
              type, payload format, response topic, correlation data, message expiry); through
              the 3.1.1 link they are gone and the payload is intact
  retained    retained messages stored on ejabberd before the relay came (5 and 3.1.1 links,
              wildcard routes) reach a late Mosquitto subscriber as retained; one from Mosquitto
              reaches a late ejabberd subscriber, and a 0-byte one clears it
  metrics     /metrics equal to that traffic; mqtt_relay_reconnects_total 0 everywhere (the
              bridge bit refused with CONNACK 1 on the 3.1.1 link is no reconnect)
  tls, ws     5 QoS 1 messages each way over mqtts:// and ws://
  mosquitto   Mosquitto SIGKILLed in the middle of QoS 1 streams ejabberd -> Mosquitto (both
              links) and restarted from its persistence (autosave every second, the test's
              subscriber's session in it). Nothing is lost by the relay: Mosquitto's log shows
              every message arriving from it, before the kill or after the restart (what
              Mosquitto had not acknowledged was sent again), and everything it sent after the
              restart reaches the subscriber. The subscriber itself may miss messages Mosquitto
              acknowledged just before the SIGKILL (0 in most runs, up to 16 seen): Mosquitto
              had written them to the subscriber's socket, the SIGKILL reset the connection
              before the subscriber read them, and Mosquitto's unsaved state went with it
              (TESTING.md). The test counts them and checks that Mosquitto had acknowledged
              every one.
  ejabberd    ejabberd SIGKILLed and restarted: its sessions are gone (the relay starts new ones
              and subscribes again), the QoS 1 messages the relay held for it while it was down
              arrive, and traffic flows both ways again. What ejabberd had acknowledged but not
              yet delivered when it died is lost with it: RAM sessions, nothing a client can
              do; so this section kills it between messages, not in the middle of a stream.
Skipped (77) without ejabberd.
"""
import random
import re
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import brokers  # noqa: E402
import fault_proxy as fp  # noqa: E402
import listeners as ls  # noqa: E402

BIG = random.Random(23).randbytes(100 * 1024)
PAYLOADS = {"empty": b"", "100k": BIG, "bytes": bytes(range(256))}
STREAM = 200  # messages per link in the mosquitto section
USER_PROPS = [("k", "v1"), ("ü", "☃"), ("k", "v2")]


def route(name, frm, to, filt, **kw):
    r = {"name": name, "from": frm, "to": to, "filter": filt}
    r.update(kw)
    return r


def original_user_props(m):
    """A message's user properties without the relay's relay-path."""
    return [kv for kv in (m.props.get("UserProperty") or []) if kv[0] != "relay-path"]


class EjabberdTest:
    def __init__(self, t):
        self.t = t
        self.probes = {}
        self.expect_route = {}

    def metrics(self):
        return rt.get_metrics(self.mport)

    def m(self, name, **labels):
        return rt.metric(self.metrics(), name, **labels)

    # ------------------------------------------------------------------ setup
    def setup(self):
        t = self.t
        self.certs = ls.make_certs(t)
        self.ej = brokers.Ejabberd(t, "ej", tls=self.certs, ws=True).start()
        # persistence with a save every second; no per-client inflight limit (see the doc)
        self.mo = t.broker("m", log_all=True, persistence=True, autosave_interval=1,
                           max_inflight=0)
        ej, mo = self.ej, self.mo
        user, password = ej.credentials

        self.sub_e = brokers.client(t, ej, "5").subscribe("m2e/#", 2)
        self.sub_m = t.client(mo, "5").subscribe("e2m/#", 2)
        # keeps its session on Mosquitto (the mosquitto section)
        self.sub_mk = rt.Client(t, mo, "5", client_id="t-sub-mk", clean=False).connect()
        self.sub_mk.subscribe("k/#", 1)
        self.pub_m = t.client(mo, "5")
        self.pub_e5 = brokers.client(t, ej, "5")
        self.pub_e3 = brokers.client(t, ej, "3.1.1")
        granted = [getattr(g[0], "value", g[0]) for g in self.sub_e.subacks.values()]
        t.check(granted == [2], "ejabberd grants QoS 2 (granted %s)" % granted)

        # retained on ejabberd before the relay subscribes (wildcard routes)
        self.pub_e5.publish("e2m/5/ret", b"retained-on-ejabberd-5", 1, retain=True)
        self.pub_e3.publish("e2m/3/ret", b"retained-on-ejabberd-3", 1, retain=True)
        self.pub_e5.wait_published()
        self.pub_e3.wait_published()

        self.e5_proxy = fp.FaultProxy(ej.port, name="e5-proxy").start()
        self.mport = rt.free_port()
        cred = {"username": user, "password": password}
        tls = {"ca_file": self.certs.path("ca")}
        bcfg = [
            {"name": "m5", "url": mo.url},
            dict(name="e5", url=self.e5_proxy.url, **cred),
            dict(name="e311", url=ej.url, version="3.1.1", **cred),
            dict(name="etls", url=ej.url_of("tls"), tls=tls, **cred),
            dict(name="ews", url=ej.url_of("ws"), **cred),
            # the ejabberd -> Mosquitto streams of the mosquitto section
            dict(name="ek5", url=ej.url, **cred),
            dict(name="ek3", url=ej.url, version="3.1.1", **cred),
        ]
        routes = [
            route("m2e5", "m5", "e5", "m2e/5/#", qos=2),
            route("e5m", "e5", "m5", "e2m/5/#", qos=2),
            route("m2e3", "m5", "e311", "m2e/3/#", qos=2),
            route("e3m", "e311", "m5", "e2m/3/#", qos=2),
            route("m2et", "m5", "etls", "m2e/t/#"),
            route("etm", "etls", "m5", "e2m/t/#"),
            route("m2ew", "m5", "ews", "m2e/w/#"),
            route("ewm", "ews", "m5", "e2m/w/#"),
            route("ek5m", "ek5", "m5", "k/5/#"),
            route("ek3m", "ek3", "m5", "k/3/#"),
        ]
        self.relay = t.relay(relay={"id": "ej", "metrics": "127.0.0.1:%d" % self.mport},
                             brokers=bcfg, routes=routes)
        probes = [("m2e5", self.pub_m, "m2e/5/probe", self.sub_e),
                  ("e5m", self.pub_e5, "e2m/5/probe", self.sub_m),
                  ("m2e3", self.pub_m, "m2e/3/probe", self.sub_e),
                  ("e3m", self.pub_e3, "e2m/3/probe", self.sub_m),
                  ("ek5m", self.pub_e5, "k/5/probe", self.sub_mk),
                  ("ek3m", self.pub_e3, "k/3/probe", self.sub_mk)]
        # (the TLS and WebSocket links are probed in their own sections)
        for name, pub, topic, sub in probes:
            self.probes[name] = brokers.wait_route(t, pub, topic, sub, "route " + name,
                                                   relay=self.relay)
        ids = ej.connected_ids()
        want = {"ej-e5", "ej-e311", "ej-ek5", "ej-ek3"}
        t.check(want <= set(ids), "ejabberd's log shows the relay's client ids %s"
                % ", ".join(sorted(want)), "it shows %s" % ids)
        for r in routes:
            self.expect_route[r["name"]] = 0

    # ------------------------------------------------------------------ traffic
    def traffic(self):
        t = self.t
        sent = []
        for q in (0, 1, 2):
            for kind, pl in PAYLOADS.items():
                for rname, pub, topic, sub in (
                        ("m2e5", self.pub_m, "m2e/5/q%d/%s/ü" % (q, kind), self.sub_e),
                        ("m2e3", self.pub_m, "m2e/3/q%d/%s" % (q, kind), self.sub_e),
                        ("e5m", self.pub_e5, "e2m/5/q%d/%s/ü" % (q, kind), self.sub_m),
                        ("e3m", self.pub_e3, "e2m/3/q%d/%s" % (q, kind), self.sub_m)):
                    pub.publish(topic, pl, q)
                    sent.append((rname, topic.encode(), pl, q, sub))
                # one at a time per client: Mosquitto answers "quota exceeded" to a next QoS > 0
                # PUBLISH while a QoS 2 one of the same client waits for PUBREL
                for pub in (self.pub_m, self.pub_e5, self.pub_e3):
                    pub.wait_published(30)
        rt.wait_until(lambda: all(sub.count(lambda m, tp=tp: m.topic == tp)
                                  for _, tp, _, _, sub in sent), 60, 0.1)
        bad = []
        for rname, tp, pl, q, sub in sent:
            got = sub.received(lambda m: m.topic == tp)
            if len(got) != 1:
                bad.append("%s: %d copies" % (tp.decode(), len(got)))
            elif got[0].payload != pl:
                bad.append("%s: payload %s" % (tp.decode(), brokers.payload_diff(got[0].payload,
                                                                                pl)))
            elif got[0].qos != q or got[0].retain:
                bad.append("%s: QoS %d retain %d, want QoS %d retain 0"
                           % (tp.decode(), got[0].qos, got[0].retain, q))
            self.expect_route[rname] += 1
        t.check(not bad, "all %d messages (QoS 0/1/2 x 0 B/100 KiB/every byte, both ways, MQTT "
                "5 and 3.1.1) arrive once, byte for byte, at the QoS published" % len(sent),
                "; ".join(bad[:8]))

    # ------------------------------------------------------------------ properties
    def properties(self):
        t = self.t
        props = dict(UserProperty=USER_PROPS, ContentType="text/plain; charset=utf-8",
                     PayloadFormatIndicator=1, ResponseTopic="reply/ü",
                     CorrelationData=b"\x00\x01corr\xff", MessageExpiryInterval=3600)
        cases = [("m2e5", self.pub_m, "m2e/5/props", self.sub_e, "Mosquitto -> ejabberd (5)"),
                 ("e5m", self.pub_e5, "e2m/5/props", self.sub_m, "ejabberd (5) -> Mosquitto")]
        for rname, pub, topic, sub, what in cases:
            pub.publish(topic, "ü payload".encode(), 1, props=rt.publish_props(**props))
            pub.wait_published()
            self.expect_route[rname] += 1
            ok = sub.wait_for(lambda ms: any(m.topic == topic.encode() for m in ms), 20)
            t.check(ok, "%s: the message with properties arrives" % what)
            m = sub.received(lambda m: m.topic == topic.encode())[0]
            p = m.props
            t.check(original_user_props(m) == USER_PROPS,
                    "%s: user properties, in order, repeated keys kept" % what,
                    "got %s" % p.get("UserProperty"))
            t.check(p.get("ContentType") == props["ContentType"] and
                    p.get("PayloadFormatIndicator") == 1 and
                    p.get("ResponseTopic") == props["ResponseTopic"] and
                    p.get("CorrelationData") == props["CorrelationData"] and
                    0 < p.get("MessageExpiryInterval", 0) <= 3600 and
                    m.payload == "ü payload".encode(),
                    "%s: content type, payload format, response topic, correlation data, "
                    "message expiry (<= 3600: %s)" % (what, p.get("MessageExpiryInterval")),
                    repr(p))
        # through the 3.1.1 link: no properties can cross, the message does
        self.pub_m.publish("m2e/3/props", b"props-dropped", 1, props=rt.publish_props(**props))
        self.pub_m.wait_published()
        self.expect_route["m2e3"] += 1
        ok = self.sub_e.wait_for(lambda ms: any(m.topic == b"m2e/3/props" for m in ms), 20)
        m = self.sub_e.received(lambda m: m.topic == b"m2e/3/props")
        t.check(ok and m[0].payload == b"props-dropped" and not original_user_props(m[0]) and
                "ContentType" not in m[0].props and "CorrelationData" not in m[0].props,
                "Mosquitto -> ejabberd (3.1.1): the message arrives, its properties cannot",
                repr(m[:1]))

    # ------------------------------------------------------------------ retained
    def retained(self):
        t = self.t
        ej, mo = self.ej, self.mo
        late = t.client(mo, "5")
        late.subscribe("e2m/+/ret", 1)
        want = {b"e2m/5/ret": b"retained-on-ejabberd-5", b"e2m/3/ret": b"retained-on-ejabberd-3"}
        ok = late.wait_for(lambda ms: {(m.topic, m.payload) for m in ms if m.retain} >=
                           set(want.items()), 20)
        t.check(ok, "retained messages stored on ejabberd before the relay came (wildcard "
                "routes, 5 and 3.1.1 links) reach a late Mosquitto subscriber as retained",
                "got %s" % [(m.topic, m.payload, m.retain) for m in late.received()])
        late.stop()
        self.expect_route["e5m"] += 1
        self.expect_route["e3m"] += 1

        self.pub_m.publish("m2e/5/ret", b"retained-on-mosquitto", 1, retain=True)
        self.pub_m.wait_published()
        self.expect_route["m2e5"] += 1
        late_e = brokers.client(t, ej, "3.1.1")
        late_e.subscribe("m2e/#", 1)
        ok = late_e.wait_for(lambda ms: any(m.retain and m.topic == b"m2e/5/ret" and
                                            m.payload == b"retained-on-mosquitto"
                                            for m in ms), 20)
        t.check(ok, "a retained message from Mosquitto reaches a late ejabberd subscriber "
                "(wildcard) as retained", "got %s" % late_e.received())
        late_e.stop()
        self.pub_m.publish("m2e/5/ret", b"", 1, retain=True)
        self.pub_m.wait_published()
        self.expect_route["m2e5"] += 1
        t.check(self.sub_e.wait_for(lambda ms: any(m.topic == b"m2e/5/ret" and m.payload == b""
                                                   for m in ms), 20),
                "a 0-byte retained message from Mosquitto crosses")
        late_e2 = brokers.client(t, ej, "5")
        late_e2.subscribe("m2e/5/ret", 1)
        rt.wait_until(lambda: late_e2.count(), 2)  # a bounded look: nothing should come
        t.check(late_e2.count() == 0, "and clears the retained message on ejabberd",
                "got %s" % late_e2.received())
        late_e2.stop()

    # ------------------------------------------------------------------ metrics
    def check_metrics(self, final=False):
        t = self.t
        want = {r: n + self.probes.get(r, 0) for r, n in self.expect_route.items()}

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
        links = ["m5", "e5", "e311", "etls", "ews", "ek5", "ek3"]
        for b in links:
            t.check(rt.metric(ms, "mqtt_relay_connection_up", broker=b) == 1 and
                    rt.metric(ms, "mqtt_relay_inflight", broker=b) == 0,
                    "connection_up{broker=%s} = 1, inflight 0" % b)
        rec = {b: rt.metric(ms, "mqtt_relay_reconnects_total", broker=b) for b in links}
        bridge = [l for l in self.relay.log_lines() if " e311#0: " in l or " ek3#0: " in l]
        t.check(not any(rec.values()), "mqtt_relay_reconnects_total = 0 for every link (the "
                "bridge bit refused by CONNACK 1 on the 3.1.1 links is no reconnect)",
                "got %s; the 3.1.1 links' log:\n     %s" % (rec, "\n     ".join(bridge[:6])))

    # ------------------------------------------------------------------ tls and ws
    def transport(self, pre, what):
        t = self.t
        for name, pub, topic, sub in (("m2e" + pre, self.pub_m, "m2e/%s/probe" % pre,
                                       self.sub_e),
                                      ("e%sm" % pre, self.pub_e5, "e2m/%s/probe" % pre,
                                       self.sub_m)):
            self.probes[name] = brokers.wait_route(t, pub, topic, sub, "route " + name,
                                                   relay=self.relay)
        for tag, pub, topic, sub in (("up", self.pub_m, "m2e/%s/x" % pre, self.sub_e),
                                     ("down", self.pub_e5, "e2m/%s/x" % pre, self.sub_m)):
            for i in range(5):
                pub.publish(topic, b"%s-%s-%d" % (pre.encode(), tag.encode(), i), 1)
            pub.wait_published()
            want = {b"%s-%s-%d" % (pre.encode(), tag.encode(), i) for i in range(5)}
            ok = sub.wait_for(lambda ms: want <= {m.payload for m in ms
                                                  if m.topic == topic.encode()}, 20)
            t.check(ok, "%s: 5 QoS 1 messages %s" % (what, "Mosquitto -> ejabberd"
                                                     if tag == "up" else
                                                     "ejabberd -> Mosquitto"))
            self.expect_route[("m2e" if tag == "up" else "e") + pre +
                              ("" if tag == "up" else "m")] += 5

    def tls(self):
        self.transport("t", "over TLS (ejabberd's mod_mqtt with tls: true, the test CA)")
        lines = [l for l in self.relay.log_lines() if " etls#0: connected to mqtts://" in l]
        self.t.check(lines and "ej-etls" in self.ej.connected_ids(),
                     "the relay logs its TLS connection to ejabberd; ejabberd logs ej-etls")

    def ws(self):
        self.transport("w", "over WebSocket (ejabberd_http serving mod_mqtt on /mqtt)")
        lines = [l for l in self.relay.log_lines() if " ews#0: connected to ws://" in l]
        self.t.check(lines and "ej-ews" in self.ej.connected_ids(),
                     "the relay logs its WebSocket connection to ejabberd; ejabberd logs ej-ews")

    # ------------------------------------------------------------------ Mosquitto killed
    def mosquitto_log(self, run):
        """What Mosquitto's log of run (an index into log_paths) says about the relay's k/
        PUBLISHes: (topics received, topics acknowledged). Packet ids are reused, so a PUBACK
        acknowledges the last PUBLISH received with its id."""
        received, acked, by_mid = set(), set(), {}
        for line in self.mo.log_lines(run):
            m = re.match(r"^Received PUBLISH from ej-m5 \(d\d, q\d, r\d, m(\d+), '(k/[^']*)'",
                         line)
            if m:
                by_mid[m.group(1)] = m.group(2)
                received.add(m.group(2))
                continue
            m = re.match(r"^Sending PUBACK to ej-m5 \(m(\d+), ", line)
            if m and m.group(1) in by_mid:
                acked.add(by_mid.pop(m.group(1)))
        return received, acked

    def mosquitto_killed(self):
        t = self.t
        mo = self.mo
        half = STREAM // 2
        for i in range(half):
            self.pub_e5.publish("k/5/%d" % i, b"%d" % i, 1)
            self.pub_e3.publish("k/3/%d" % i, b"%d" % i, 1)
        # mid-stream: some of these are on their way through the relay right now
        n_sub = self.sub_mk.connects
        killed_run = len(mo.log_paths) - 1
        mo.kill()
        t.note("SIGKILL Mosquitto (the destination of the k/ streams)")
        for i in range(half, STREAM):
            self.pub_e5.publish("k/5/%d" % i, b"%d" % i, 1)
            self.pub_e3.publish("k/3/%d" % i, b"%d" % i, 1)
        self.pub_e5.wait_published(30)
        self.pub_e3.wait_published(30)
        mo.start()
        t.note("Mosquitto restarted on port %d from its persistence file" % mo.port)
        t.check(self.sub_mk.wait_reconnected(n_sub, 30), "the test's persistent subscriber on "
                "Mosquitto is back")

        def arrived(prefix):
            return [m.topic.decode() for m in self.sub_mk.received(
                lambda m: m.topic.startswith(prefix) and m.payload.isdigit())]
        all_topics = {p: ["%s%d" % (p, i) for i in range(STREAM)] for p in ("k/5/", "k/3/")}

        def done():
            rec1, _ = self.mosquitto_log(killed_run)
            rec2, _ = self.mosquitto_log(-1)
            got = set(arrived(b"k/"))
            return all((tp in rec1 or tp in rec2) and (tp not in rec2 or tp in got)
                       for tps in all_topics.values() for tp in tps)
        rt.wait_until(done, 60, 0.2)
        rec1, acked1 = self.mosquitto_log(killed_run)
        rec2, _ = self.mosquitto_log(-1)
        for p, what in (("k/5/", "ejabberd (5) -> Mosquitto"),
                        ("k/3/", "ejabberd (3.1.1) -> Mosquitto")):
            tps = all_topics[p]
            got = arrived(p.encode())
            never = [tp for tp in tps if tp not in rec1 and tp not in rec2]
            t.check(not never, "%s: Mosquitto's log shows every one of the %d messages arriving "
                    "from the relay (%d before the SIGKILL, %d after the restart)"
                    % (what, STREAM, len([tp for tp in tps if tp in rec1]),
                       len([tp for tp in tps if tp in rec2])),
                    "never received: %s" % never[:10])
            late = [tp for tp in tps if tp in rec2 and tp not in got]
            t.check(not late, "%s: every message the relay sent after the restart reaches the "
                    "subscriber" % what, "missing: %s" % late[:10])
            lost = sorted(set(tps) - set(got), key=lambda x: int(x.split("/")[-1]))
            unacked = [tp for tp in lost if tp not in acked1]
            t.check(not unacked, "%s: %d of %d reach the subscriber (%d duplicates); %d "
                    "missing%s" % (what, len(set(got)), STREAM, len(got) - len(set(got)),
                                   len(lost), (" (%s), each acknowledged by Mosquitto before "
                                               "its SIGKILL: gone with its unsaved state"
                                               % ", ".join(lost[:5])) if lost else ""),
                    "lost although Mosquitto never acknowledged them: %s" % unacked[:10])
        t.check(rt.wait_until(lambda: self.pub_m.connected.is_set() and
                              self.sub_m.connected.is_set(), 30),
                "the test's other Mosquitto clients are back")

    # ------------------------------------------------------------------ ejabberd killed
    def ejabberd_killed(self):
        t = self.t
        ej = self.ej
        self.sub_e.clear()
        self.sub_m.clear()
        n_sub, n_pub = self.sub_e.connects, self.pub_e5.connects
        self.e5_proxy.refuse(True)   # the relay comes back after the test's own clients
        ej.kill()
        t.check(not ej.leftovers(), "ejabberd's processes are gone", "left: %s" % ej.leftovers())
        held = []
        for i in range(20):
            self.pub_m.publish("m2e/5/held/%d" % i, b"h%d" % i, 1)
            held.append(("m2e/5/held/%d" % i).encode())
        self.pub_m.wait_published(30)
        ej.start()
        t.check(self.sub_e.wait_reconnected(n_sub, 30) and
                self.pub_e5.wait_reconnected(n_pub, 30),
                "the test's ejabberd clients are back (session present 0: subscribed again)")
        rt.wait_until(lambda: len(self.sub_e.subacks) > 1, 10)  # its new subscription's SUBACK
        self.e5_proxy.cut()
        self.e5_proxy.refuse(False)
        ok = self.sub_e.wait_for(lambda ms: all(any(m.topic == tp for m in ms) for tp in held),
                                 60)
        got = self.sub_e.received(lambda m: m.topic in held)
        t.check(ok, "the 20 QoS 1 messages the relay held while ejabberd was down arrive "
                "(%d copies)" % len(got),
                "missing %s" % [tp for tp in held if not any(m.topic == tp for m in got)][:5])
        lines = [l for l in self.relay.log_lines() if " e5#0: connected to " in l]
        t.check(lines and "session new" in lines[-1],
                "the relay's e5 link starts a new session (ejabberd lost it)", lines[-1:])
        for rname, pub, topic, sub in (("m2e3", self.pub_m, "m2e/3/after", self.sub_e),
                                       ("e5m", self.pub_e5, "e2m/5/after", self.sub_m),
                                       ("e3m", self.pub_e3, "e2m/3/after", self.sub_m),
                                       ("m2et", self.pub_m, "m2e/t/after", self.sub_e),
                                       ("ewm", self.pub_e5, "e2m/w/after", self.sub_m)):
            tb = topic.encode()
            ok = False
            for k in range(40):   # the relay subscribes again at its own pace: bounded retries
                pub.publish(topic, b"after %d" % k, 1)
                if sub.wait_for(lambda ms: any(m.topic == tb for m in ms), 0.5):
                    ok = True
                    break
            t.check(ok, "after the restart, route %s carries messages again" % rname)

    # ------------------------------------------------------------------ run
    def run(self):
        s = brokers.Sections(self.t)
        s.run("setup: ejabberd, Mosquitto, the relay; every route carries a probe", self.setup,
              fatal=True)
        s.run("traffic: QoS 0/1/2, 0 B / 100 KiB / every byte, both ways, 5 and 3.1.1",
              self.traffic)
        s.run("MQTT 5 properties through ejabberd", self.properties)
        s.run("retained both ways", self.retained)
        s.run("TLS: mqtts:// to ejabberd", self.tls)
        s.run("WebSocket: ws:// to ejabberd", self.ws)
        s.run("/metrics equal to the traffic", self.check_metrics)
        s.run("Mosquitto SIGKILLed mid-stream (ejabberd -> Mosquitto) and restarted: nothing "
              "lost by the relay", self.mosquitto_killed)
        s.run("ejabberd SIGKILLed and restarted: the relay starts over, held messages arrive",
              self.ejabberd_killed)
        s.finish()
        self.relay.stop()


def run(t):
    brokers.require_ejabberd()
    et = EjabberdTest(t)
    try:
        et.run()
    finally:
        if getattr(et, "e5_proxy", None):
            et.e5_proxy.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
