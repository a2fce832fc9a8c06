"""Interoperability beyond Mosquitto: the core forwarding checks with Aedes (an MQTT broker in
Node.js, test/integration/aedes/: version pinned by package-lock.json, installed with `npm ci`)
as one side and Mosquitto as the other.

Aedes speaks MQTT 3.1 and 3.1.1 (not 5), so the relay links to it at both of those versions,
while its Mosquitto side uses 5 and 3.1.1:

    m5   (Mosquitto, MQTT 5)     -> ae311 (Aedes, 3.1.1)   "p1/#"      QoS 2
    ae311                        -> m5                     "p2/+/#" -> "back/${1}/${#}"
    m311 (Mosquitto, 3.1.1)      -> ae31  (Aedes, 3.1)     "p3/#"      QoS 2
    ae31                         -> m311                   "p4/#"      retain kept

Checked: QoS 0, 1 and 2 messages both ways at each version arrive byte for byte (binary and
UTF-8 topics and payloads) at the QoS they were published with; a retained message on Aedes
reaches a late Mosquitto subscriber as retained; the MQTT 3.1 client id limit (23) is met;
and where Aedes behaves differently from Mosquitto the relay copes:
  * the bridge bit (protocol level | 0x80) on 3.x CONNECTs: whether Aedes takes it or refuses
    it, the relay ends up connected (recorded in the output);
  * Aedes keeps sessions in memory only: after an Aedes restart the relay gets
    session_present = 0, subscribes again, and the QoS 1 messages it held for Aedes while it
    was down are delivered (at least once);
  * a QoS 1 stream both ways through a cut of the Aedes link loses nothing.
Skipped (77) without node/npm; a failed `npm ci` is an error (like the diff test).
"""
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import fault_proxy as fp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
AEDES_SRC = os.path.join(HERE, "aedes")


def install_aedes(t):
    """npm ci of aedes/package-lock.json into AEDES_NPM_DIR (default: aedes-npm in the build
    tree, next to the relay's directory), offline from the npm cache first. Returns the
    node_modules path."""
    default = os.path.join(os.path.dirname(os.path.dirname(t.relay_bin)), "aedes-npm")
    work = os.path.abspath(os.environ.get("AEDES_NPM_DIR", default))
    stamp = os.path.join(work, ".installed-lock.json")
    lock = os.path.join(AEDES_SRC, "package-lock.json")
    mods = os.path.join(work, "node_modules")
    with open(lock, "rb") as f:
        want = f.read()
    have = b""
    if os.path.exists(stamp):
        with open(stamp, "rb") as f:
            have = f.read()
    if have != want or not os.path.exists(os.path.join(mods, "aedes", "package.json")):
        os.makedirs(work, exist_ok=True)
        for n in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(AEDES_SRC, n), work)
        if os.path.exists(stamp):
            os.remove(stamp)
        ok = False
        for extra in (["--offline"], []):
            p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"] +
                               extra, cwd=work, capture_output=True, timeout=600)
            if p.returncode == 0:
                ok = True
                break
        if not ok:
            raise rt.Failure("npm ci of test/integration/aedes failed (registry or cache "
                             "needed): %s" % p.stderr.decode("utf-8", "replace")[-1500:])
        with open(stamp, "wb") as f:
            f.write(want)
    with open(os.path.join(mods, "aedes", "package.json")) as f:
        ver = [l for l in f.read().splitlines() if '"version"' in l]
    t.note("Aedes %s from %s" % (ver[0].split(":")[1].strip(' ",') if ver else "?", mods))
    return mods


class AedesBroker(rt.Broker):
    """Aedes on 127.0.0.1:port (aedes/broker.js): same interface as relaytest.Broker, and a
    log in Mosquitto's words, so connected_ids() and subscriptions() work as they are."""

    def __init__(self, t, name, node_modules):
        super().__init__(t, name, log_all=True)
        self.node_modules = node_modules

    def start(self, timeout=20):
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("aedes %s already running" % self.name)
        n = len(self.log_paths) + 1
        log = os.path.join(self.dir, "aedes-%d.log" % n)
        self.log_paths.append(log)
        env = dict(os.environ)
        env["NODE_PATH"] = self.node_modules
        with open(log, "wb") as lf:
            self.proc = subprocess.Popen(
                ["node", os.path.join(AEDES_SRC, "broker.js"), str(self.port)],
                stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT, env=env,
                preexec_fn=rt._pdeathsig, cwd=self.dir)
        self.t._register(self)
        ok = rt.wait_until(lambda: self.proc.poll() is not None or rt.port_accepts(self.port),
                           timeout, 0.05)
        if self.proc.poll() is not None:
            raise rt.Failure("aedes %s exited at start (status %s):\n%s"
                             % (self.name, self.proc.returncode, rt.tail(log)))
        if not ok:
            raise rt.Failure("aedes %s does not accept on port %d" % (self.name, self.port))
        return self


def payload(tag, i):
    # binary, with NUL and high bytes, and UTF-8
    return ("%s-%d-ü☃" % (tag, i)).encode() + bytes([0, 1, 0xFE, 0xFF, i & 0xFF])


def run(t):
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            print("SKIP: %s is not installed (apt-get install nodejs npm)" % tool)
            sys.exit(rt.SKIP)
    mods = install_aedes(t)

    t.section("setup: Mosquitto m, Aedes ae (the relay's 3.1.1 link to it through a proxy)")
    m = t.broker("m")
    ae = AedesBroker(t, "ae", mods).start()
    proxy = fp.FaultProxy(ae.port, name="ae-proxy").start()
    try:
        # a retained message waits on Aedes before the relay subscribes
        ret_pub = t.client(ae, "3.1.1")
        ret_pub.publish("p4/ret", b"retained-on-aedes", 1, retain=True)
        ret_pub.wait_published()
        ret_pub.stop()

        reco = {"min": 200, "max": 1000}
        relay = t.relay(
            relay={"id": "ae"},
            brokers=[{"name": "m5", "url": m.url, "version": "5", "reconnect": reco},
                     {"name": "m311", "url": m.url, "version": "3.1.1", "reconnect": reco},
                     {"name": "ae311", "url": proxy.url, "version": "3.1.1", "reconnect": reco},
                     {"name": "ae31", "url": ae.url, "version": "3.1", "reconnect": reco}],
            routes=[{"name": "m5>ae311", "from": "m5", "to": "ae311", "filter": "p1/#",
                     "qos": 2},
                    {"name": "ae311>m5", "from": "ae311", "to": "m5", "filter": "p2/+/#",
                     "qos": 2, "topic": "back/${1}/${#}"},
                    {"name": "m311>ae31", "from": "m311", "to": "ae31", "filter": "p3/#",
                     "qos": 2},
                    {"name": "ae31>m311", "from": "ae31", "to": "m311", "filter": "p4/#",
                     "qos": 2, "retain": "keep"}])
        relay.wait_ready({"m5": m, "m311": m, "ae311": ae, "ae31": ae})
        ids = ae.connected_ids()
        t.check("ae-ae31" in ids and len("ae-ae31") <= 23,
                "Aedes shows the 3.1 link's client id (MQTT 3.1: at most 23 characters)")
        lines = [l for l in relay.log_lines() if "connected to" in l and ("ae31" in l or
                                                                          "ae311" in l)]
        bridge = [l for l in lines if ", bridge" in l]
        refused = [l for l in relay.log_lines() if "bridge protocol bit" in l]
        t.say("   bridge bit: %s" % ("Aedes took it (%d links)" % len(bridge) if bridge else
                                     "Aedes refused it, the relay connected without it"
                                     if refused else "not used"))
        t.check(lines, "the relay is connected to Aedes at 3.1 and 3.1.1",
                "\n".join(relay.log_lines()[-20:]))

        t.section("QoS 0, 1 and 2 both ways, byte for byte, at 5 / 3.1.1 / 3.1")
        sub_ae = t.client(ae, "3.1.1", max_inflight=100)
        sub_ae.subscribe("p1/#", 2)
        sub_ae.subscribe("p3/#", 2)
        sub_m = t.client(m, "5", max_inflight=100)
        sub_m.subscribe("back/#", 2)
        sub_m.subscribe("p4/#", 2)
        pub_m5 = t.client(m, "5")
        pub_m311 = t.client(m, "3.1.1")
        pub_ae311 = t.client(ae, "3.1.1")
        pub_ae31 = t.client(ae, "3.1")
        expect = {}  # (sub, topic) -> (payload, qos)
        for i in range(9):
            q = i % 3
            for pub, topic, seen, sub in (
                    (pub_m5, "p1/ü/%d" % i, "p1/ü/%d" % i, sub_ae),
                    (pub_m311, "p3/x/%d" % i, "p3/x/%d" % i, sub_ae),
                    (pub_ae311, "p2/a/b/%d" % i, "back/a/b/%d" % i, sub_m),
                    (pub_ae31, "p4/y/%d" % i, "p4/y/%d" % i, sub_m)):
                pl = payload(topic.split("/")[0], i)
                pub.publish(topic, pl, q)
                expect[(id(sub), seen.encode())] = (pl, q, sub)
            # one at a time per client: Mosquitto answers "quota exceeded" to a next QoS > 0
            # PUBLISH while a QoS 2 one of the same client waits for PUBREL
            for pub in (pub_m5, pub_m311, pub_ae311, pub_ae31):
                pub.wait_published(30)

        def all_in():
            for (_, topic), (pl, q, sub) in expect.items():
                if not sub.count(lambda mm: mm.topic == topic):
                    return False
            return True
        rt.wait_until(all_in, 60, 0.1)
        bad = []
        for (_, topic), (pl, q, sub) in expect.items():
            got = sub.received(lambda mm: mm.topic == topic)
            if not got:
                bad.append("%s: missing" % topic.decode())
            elif got[0].payload != pl or got[0].qos != q:
                bad.append("%s: payload %s qos %d (want qos %d)"
                           % (topic.decode(), rt.short(got[0].payload), got[0].qos, q))
        t.check(not bad, "all %d messages arrive byte for byte at the QoS published (QoS 0 "
                "included: nothing was lost on loopback)" % len(expect), "; ".join(bad[:10]))
        late = t.client(m, "3.1.1")
        late.subscribe("p4/ret", 1)
        t.check(rt.wait_until(lambda: late.count(lambda mm: mm.retain and
                                                 mm.payload == b"retained-on-aedes"), 20),
                "the retained message on Aedes reaches a late Mosquitto subscriber, retained")
        late.stop()

        t.section("Aedes restarted (it keeps sessions in memory only) while the relay holds "
                  "QoS 1 messages for it")
        proxy.refuse(True)
        proxy.cut()
        n_pub = pub_ae311.connects
        ae.restart()
        held = []
        for i in range(20):
            pub_m5.publish("p1/held/%d" % i, b"h%d" % i, 1)
            held.append(("p1/held/%d" % i).encode())
        pub_m5.wait_published(30)
        # the test's own subscriber comes back first (it lost its session too)
        n0 = sub_ae.connects
        t.check(sub_ae.wait_reconnected(n0, 30), "the test's subscriber is back on Aedes")
        rt.wait_until(lambda: sum(1 for s in ae.subscriptions() if s[2] == "p1/#") >= 1, 20)
        proxy.refuse(False)
        t.check(rt.wait_until(lambda: any(s[0] == "ae-ae311" and s[2] == "p2/+/#"
                                          for s in ae.subscriptions()), 30),
                "the relay subscribed again on the new Aedes (session_present was 0)")
        t.check(rt.wait_until(lambda: any(s[0] == "ae-ae31" and s[2] == "p4/#"
                                          for s in ae.subscriptions()), 30),
                "and so did its 3.1 link")
        t.check(rt.wait_until(lambda: all(sub_ae.count(lambda mm, tp=tp: mm.topic == tp)
                                          for tp in held), 60),
                "the 20 QoS 1 messages held while Aedes was down arrive")
        t.check(pub_ae311.wait_reconnected(n_pub, 30), "the test's publisher is back on Aedes")
        pub_ae311.publish("p2/after/restart", b"ok", 1)
        pub_ae311.wait_published(30)
        t.check(rt.wait_until(lambda: sub_m.count(lambda mm: mm.topic ==
                                                  b"back/after/restart"), 30),
                "messages from the new Aedes reach Mosquitto")

        t.section("QoS 1 streams both ways through a cut of the Aedes link")
        sub_ae.clear()
        sub_m.clear()
        n = 300
        for i in range(n):
            pub_m5.publish("p1/s/%d" % i, b"%d" % i, 1)
            pub_ae311.publish("p2/s/%d" % i, b"%d" % i, 1)
            if i == n // 2:
                proxy.cut()
            if i % 50 == 0:
                time.sleep(0.05)
        pub_m5.wait_published(60)
        pub_ae311.wait_published(60)

        def nums(sub, prefix):
            return set(int(mm.payload) for mm in sub.received(lambda mm:
                                                               mm.topic.startswith(prefix)))
        rt.wait_until(lambda: len(nums(sub_ae, b"p1/s/")) >= n and
                      len(nums(sub_m, b"back/s/")) >= n, 90, 0.1)
        a, b = nums(sub_ae, b"p1/s/"), nums(sub_m, b"back/s/")
        da = sub_ae.count(lambda mm: mm.topic.startswith(b"p1/s/")) - len(a)
        db = sub_m.count(lambda mm: mm.topic.startswith(b"back/s/")) - len(b)
        t.check(a == set(range(n)), "Mosquitto -> Aedes: all %d arrive (%d duplicates)"
                % (n, da), "missing %s" % sorted(set(range(n)) - a)[:10])
        t.check(b == set(range(n)), "Aedes -> Mosquitto: all %d arrive (%d duplicates)"
                % (n, db), "missing %s" % sorted(set(range(n)) - b)[:10])
        for c in (sub_ae, sub_m, pub_m5, pub_m311, pub_ae311, pub_ae31):
            c.stop()
        relay.stop()
    finally:
        proxy.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
