"""--from-mosquitto: realistic Mosquitto bridge configurations convert to files --check accepts,
and the converted relay forwards what Mosquitto's own bridge forwarded.

- Conversions: `mqtt-relay --from-mosquitto FILE` exits 0 on each configuration below and
  `mqtt-relay -c OUT --check` exits 0 on its output as it is: a plain `topic # both 1`; prefixes
  in both directions; `in`/`out` mixes at QoS 0/1/2; mqttv50; two connections; the TLS options
  with a CA, a client certificate and key generated into the temporary directory; a Debian-style
  mosquitto.conf whose bridge sits in conf.d/ (include_dir). The plan printed by --check shows
  the subscriptions the topic lines imply.
- A Mosquitto file error exits 1 with "FILE:LINE: ..." on stderr and nothing on stdout.
- Equivalence (MQTT 3.1.1 and MQTT 5 bridges): broker A runs Mosquitto's own bridge to broker B
  with a bridge section of six topic lines (prefixes both ways, "" as prefix and as pattern, '+'
  and '#', QoS 0/1/2 maxima, one `both`); clients publish a fixed set of messages at QoS 0, 1
  and 2 on A and on B, matching and not matching; subscribers on "#" at QoS 2 on both brokers
  record (broker, topic, payload, QoS). Then the same with fresh brokers, A without its bridge
  section and mqtt-relay running the conversion of A's file. The two records are equal, message
  for message (duplicates included).
- TLS: B listens with TLS only; the bridge section names bridge_cafile, bridge_certfile and
  bridge_keyfile; the converted relay connects with them (mTLS) and a message crosses.
"""
import collections
import os
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

HOST = socket.gethostname()


# ----------------------------------------------------------------------------------------------
# running the binary once


def run_bin(t, args, timeout=20):
    try:
        p = subprocess.run([t.relay_bin] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout, cwd=t.tmp)
    except subprocess.TimeoutExpired:
        raise rt.Failure("mqtt-relay %s did not exit within %ss" % (" ".join(args), timeout))
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def convert(t, mosq_path, name):
    """--from-mosquitto, then --check on the output: both exit 0. Returns (text, plan)."""
    rc, out, err = run_bin(t, ["--from-mosquitto", mosq_path])
    t.check(rc == 0 and out and not err, "%s: --from-mosquitto exits 0 with a configuration"
            % name, "status %s, stderr: %s" % (rc, err.strip()))
    conf = os.path.join(os.path.dirname(mosq_path), "converted-%s.conf" % name)
    write(conf, out)
    rc, plan, err = run_bin(t, ["-c", conf, "--check"])
    t.check(rc == 0, "%s: --check accepts the output as it is" % name,
            "status %s: %s\n--- output:\n%s" % (rc, err.strip(), out))
    return out, plan


def plan_subs(plan):
    """{route name: (subscription, qos, broker)} from --check's plan."""
    subs, name = {}, None
    for line in plan.splitlines():
        if line.startswith("route "):
            name = line.split()[1].rstrip(":")
        elif line.strip().startswith("subscribe:") and name:
            parts = line.split()
            subs[name] = (parts[1], int(parts[3]), parts[5].split("#")[0])
    return subs


# ----------------------------------------------------------------------------------------------
# certificates


def openssl(t, *args):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, cwd=t.tmp)
    if p.returncode != 0:
        raise rt.Failure("openssl %s: %s" % (" ".join(args), p.stderr.decode()))


def make_pki(t):
    """A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate,
    in TMP/pki (EC keys: fast)."""
    d = os.path.join(t.tmp, "pki")
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(t, "req", "-x509", *ec, "-keyout", d + "/ca.key", "-out", d + "/ca.pem",
            "-days", "2", "-subj", "/CN=relay-test-ca")
    ext = write(d + "/server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who, subj, extra in (("server", "/CN=localhost", ["-extfile", ext]),
                             ("client", "/CN=relay-client", [])):
        openssl(t, "req", *ec, "-keyout", "%s/%s.key" % (d, who), "-out",
                "%s/%s.csr" % (d, who), "-subj", subj)
        openssl(t, "x509", "-req", "-in", "%s/%s.csr" % (d, who), "-CA", d + "/ca.pem",
                "-CAkey", d + "/ca.key", "-CAcreateserial", "-out", "%s/%s.pem" % (d, who),
                "-days", "2", *extra)
    for f in os.listdir(d):  # Mosquitto drops to its own user unless "user root": keep readable
        os.chmod(os.path.join(d, f), 0o644)
    return d


# ----------------------------------------------------------------------------------------------
# conversions


def conversions(t):
    t.section("conversions accepted by --check")
    d = os.path.join(t.tmp, "conv")

    # 1. the plainest bridge
    out, plan = convert(t, write(d + "/both/mosquitto.conf", """\
listener 1883
allow_anonymous true

connection cloud
address 192.0.2.10
topic # both 1
"""), "both")
    subs = plan_subs(plan)
    t.check(subs.get("cloud-out-1") == ("#", 1, "local") and
            subs.get("cloud-in-1") == ("#", 1, "cloud"),
            "topic # both 1: \"#\" at QoS 1 on both sides", repr(subs))
    t.check('client_id = "%s.cloud";' % HOST in out,
            "remote client id defaults to Mosquitto's <host name>.<connection>")
    t.check('version = "5";' in out and "raised to MQTT 5" in out,
            "both ways over \"#\" on 3.1.1: raised to MQTT 5 with a comment saying why")

    # 2. prefixes in both directions
    out, plan = convert(t, write(d + "/prefix/mosquitto.conf", """\
listener 1884 0.0.0.0
connection site
address cloud.example:8883
remote_clientid site-a
remote_username site-a
remote_password pa"ss\\word
topic sensors/# out 1 site-a/ cloud/site-a/
topic cmd/+/set in 1 devices/ cloud/cmd/
"""), "prefix")
    subs = plan_subs(plan)
    t.check(subs.get("site-out-1") == ("site-a/sensors/#", 1, "local") and
            subs.get("site-in-2") == ("cloud/cmd/cmd/+/set", 1, "site"),
            "prefixes: LOCAL-PREFIX + PATTERN subscribed locally, REMOTE-PREFIX + PATTERN "
            "remotely", repr(subs))
    t.check("cloud/site-a/sensors/a/b" in plan and "devices/cmd/x1/set" in plan,
            "prefixes: the plan's examples map the prefix")
    t.check('password = "pa\\"ss\\\\word";' in out and "chmod 600" in out,
            "password copied (escaped for libconfig) with a comment about the file's privacy")

    # 3. in/out mixes with QoS 0/1/2
    _, plan = convert(t, write(d + "/mix/mosquitto.conf", """\
port 1885
connection mix
address 10.1.1.1:1883 10.1.1.2:1883
round_robin false
topic a/# out 0
topic b/# in 1
topic c/+/d out 2
topic e/# in 2 local/e/ remote/e/
topic f in
"""), "mix")
    subs = plan_subs(plan)
    want = {"mix-out-1": ("a/#", 0, "local"), "mix-in-2": ("b/#", 1, "mix"),
            "mix-out-3": ("c/+/d", 2, "local"), "mix-in-4": ("remote/e/e/#", 2, "mix"),
            "mix-in-5": ("f", 0, "mix")}
    t.check(subs == want, "in/out at QoS 0/1/2: one route each, QoS as given (default 0)",
            repr(subs))
    t.check("QoS at most 2" in plan and "QoS at most 0" in plan,
            "the topic line's QoS is the route's maximum (out_qos)")

    # 4. MQTT 5
    out, _ = convert(t, write(d + "/v5/mosquitto.conf", """\
listener 1886 127.0.0.1
connection v5
address 127.0.0.1:1999
bridge_protocol_version mqttv50
cleansession true
keepalive_interval 20
restart_timeout 2 10
notification_topic bridge/v5/state
topic x/# both 2 l/ r/
"""), "mqttv50")
    for key in ('version = "5";', "clean_start = true;", "keepalive = 20;",
                "reconnect = { min = 2000; max = 10000; };",
                'status_topic = "bridge/v5/state";'):
        t.check(key in out, "mqttv50 options: %s" % key)

    # 5. two connections
    out, plan = convert(t, write(d + "/two/mosquitto.conf", """\
listener 1887
connection north
address north.example
topic n/# out 1
connection south
address south.example
bridge_protocol_version mqttv31
remote_clientid south-bridge
notifications false
topic s/# in 1
"""), "two")
    subs = plan_subs(plan)
    t.check(set(subs) == {"north-out-1", "south-in-1"} and
            'relay: {\n  id = "north-relay";' in out,
            "two connections: two remote brokers, routes named after them", repr(subs))
    south = out.split('name = "south";')[1].split("\n  }")[0]
    t.check('version = "3.1";' in south and "status_topic =" not in south,
            "mqttv31 kept; notifications false: no status topic", south)

    # 6. TLS options
    pki = make_pki(t)
    out, plan = convert(t, write(d + "/tls/mosquitto.conf", """\
listener 1888 127.0.0.1
connection secure
address broker.example:8883
bridge_cafile {pki}/ca.pem
bridge_certfile {pki}/client.pem
bridge_keyfile {pki}/client.key
bridge_insecure false
bridge_tls_version tlsv1.2
topic t/# out 1
""".format(pki=pki)), "tls")
    t.check('url = "mqtts://broker.example:8883";' in out and
            'ca_file = "%s/ca.pem";' % pki in out and "verify = true;" in out,
            "TLS: mqtts:// with ca_file, cert_file, key_file, verify on")
    t.check("client certificate %s/client.pem" % pki in plan,
            "TLS: --check's plan shows the client certificate")
    t.check("# bridge_tls_version tlsv1.2" in out, "bridge_tls_version named in a comment")

    # 7. Debian's layout: the bridge in conf.d/, brought in by include_dir
    deb = d + "/debian"
    write(deb + "/conf.d/local.conf", "listener 1889\nallow_anonymous true\n")
    write(deb + "/conf.d/bridge.conf", """\
connection hq
address hq.example:1883
try_private true
start_type automatic
topic telemetry/# out 1 "" site-7/
""")
    out, plan = convert(t, write(deb + "/mosquitto.conf", """\
# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir {deb}/conf.d
""".format(deb=deb)), "include_dir")
    t.check('url = "mqtt://127.0.0.1:1889";' in out and "hq-out-1" in plan and
            "site-7/telemetry/a/b" in plan,
            "include_dir: the listener and the bridge of conf.d/*.conf are found")
    t.check("pid_file, persistence, persistence_location, log_dest" in out.replace("\n# ", " "),
            "broker options are listed once, as ignored")

    t.section("errors in the Mosquitto file")
    bad = write(d + "/bad/mosquitto.conf",
                "listener 1883\nconnection c\naddress h\ntopic # sideways 1\n")
    rc, out, err = run_bin(t, ["--from-mosquitto", bad])
    t.check(rc == 1 and out == "" and err.startswith(bad + ":4: "),
            "unknown direction: exit 1, \"FILE:4: ...\" on stderr, nothing on stdout",
            "status %s, stdout %r, stderr %r" % (rc, out[:80], err))
    bad = write(d + "/bad2/mosquitto.conf", "topic # out 1\n")
    rc, out, err = run_bin(t, ["--from-mosquitto", bad])
    t.check(rc == 1 and err.startswith(bad + ":1: "), "topic without a connection: exit 1",
            err)


# ----------------------------------------------------------------------------------------------
# equivalence


BRIDGE = """\
connection eq
address 127.0.0.1:{bport}
bridge_protocol_version {version}
remote_clientid eq-bridge
cleansession true
restart_timeout 1 2
topic sensors/# out 1 site-a/ cloud/site-a/
topic cmd/+/set in 2 devices/ cloud/cmd/
topic alarms/# both 2
topic telemetry/+/raw out 0
topic config/# in 1 "" fleet/
topic "" out 2 status/main cloud/status/site-a
"""

# (broker, topic, qos) published in this order; the payload is unique per message.
PUBLISHES = []
for q in (0, 1, 2):
    PUBLISHES += [
        ("A", "site-a/sensors/t1", q), ("A", "alarms/fire", q), ("A", "telemetry/d1/raw", q),
        ("A", "status/main", q), ("B", "cloud/cmd/cmd/d1/set", q), ("B", "alarms/smoke", q),
        ("B", "fleet/config/a/b", q),
    ]
PUBLISHES += [
    ("A", "site-a/sensors", 1),          # the '#' matches nothing: the '/' goes too
    ("A", "site-a/sensors/x/y/z", 2),
    ("A", "sensors/t1", 1),              # no local prefix: not bridged
    ("A", "telemetry/d1/cooked", 1),     # not bridged
    ("A", "status/other", 2),            # not bridged
    ("A", "config/x", 1),                # config is "in" only
    ("A", "alarms", 1),
    ("B", "fleet/config", 1),
    ("B", "cloud/cmd/cmd/d1/get", 2),    # not bridged
    ("B", "cloud/site-a/sensors/t9", 1),  # the remote side of an "out" topic: not bridged
    ("B", "devices/cmd/x/set", 1),       # a local topic published remotely: not bridged
    ("B", "alarms/a/b", 0),
]


def log_ids(broker):
    ids = []
    for line in broker.log_lines():
        parts = line.split(" as ")
        if line.startswith("New ") and " connected from " in line and len(parts) > 1:
            ids.append(parts[1].split(" ")[0])
    return ids


def subs_by(broker, cid):
    out = []
    for line in broker.log_lines():
        p = line.split(" ")
        if len(p) == 3 and p[0] == cid and p[1] in ("0", "1", "2"):
            out.append(p[2])
    return out


def exchange(t, a, b, label):
    """Subscribers on both brokers, the publishes, and what arrived once quiet: a Counter of
    (broker, topic, payload, qos)."""
    subs = {"A": t.client(a, "5").subscribe("#", 2), "B": t.client(b, "5").subscribe("#", 2)}
    pubs = {"A": t.client(a, "5"), "B": t.client(b, "5")}
    for i, (side, topic, q) in enumerate(PUBLISHES):
        pubs[side].publish(topic, ("%s-%d" % (side, i)).encode(), q)
    for p in pubs.values():
        p.wait_published()

    def total():
        return sum(s.count() for s in subs.values())

    # Quiet for two seconds (bounded): every forwarded copy has arrived.
    last, stable_since = -1, None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        n = total()
        now = time.monotonic()
        if n != last:
            last, stable_since = n, now
        elif now - stable_since >= 2.0:
            break
        time.sleep(0.1)
    got = collections.Counter()
    for side, s in subs.items():
        for m in s.received():
            got[(side, m.topic.decode(), m.payload.decode(), m.qos)] += 1
    for c in list(subs.values()) + list(pubs.values()):
        c.stop()
    t.note("%s: %d deliveries recorded" % (label, sum(got.values())))
    return got


def wait_for(t, what, pred, timeout=20):
    if not rt.wait_until(pred, timeout, 0.1):
        raise rt.Failure("not ready after %ss: %s" % (timeout, what))


def equivalence(t, version):
    t.section("equivalence with Mosquitto's bridge (%s)" % version)
    b = t.broker("B-" + version)
    bridge = BRIDGE.format(bport=b.port, version=version).splitlines()
    a = t.broker("A-" + version, extra=bridge)
    # ready: the bridge is connected to B and has made its remote ("in") subscriptions
    wait_for(t, "Mosquitto's bridge subscribed on B",
             lambda: sorted(subs_by(b, "eq-bridge")) ==
             sorted(["cloud/cmd/cmd/+/set", "alarms/#", "fleet/config/#"]))
    mosq = exchange(t, a, b, "Mosquitto's bridge")

    # The migration: convert A's own file, take the bridge out of A, run the relay.
    out, _ = convert(t, a.conf_path, "eq-" + version)
    a.stop()
    b.stop()
    a.extra = []
    b.start()
    a.start()
    relay = rt.Relay(t, {"id": "eq-relay"}, name="relay-" + version, text=out).start()
    wait_for(t, "the relay subscribed on A and B",
             lambda: relay.check_alive() is None and
             sorted(subs_by(a, "eq-relay-local")) ==
             sorted(["site-a/sensors/#", "alarms/#", "telemetry/+/raw", "status/main"]) and
             sorted(subs_by(b, "eq-bridge")) ==
             sorted(["cloud/cmd/cmd/+/set", "alarms/#", "fleet/config/#"]))
    mine = exchange(t, a, b, "mqtt-relay")
    relay.stop()

    t.check(sum(mosq.values()) > len(PUBLISHES),
            "Mosquitto's bridge forwarded messages (%d deliveries for %d publishes)"
            % (sum(mosq.values()), len(PUBLISHES)))
    only_m = mosq - mine
    only_r = mine - mosq
    t.check(not only_m and not only_r,
            "%s: mqtt-relay delivers exactly what Mosquitto's bridge delivered (%d deliveries: "
            "broker, topic, payload, QoS)" % (version, sum(mosq.values())),
            "only with Mosquitto's bridge: %s; only with mqtt-relay: %s"
            % (sorted(only_m.elements()), sorted(only_r.elements())))
    for side, topic in (("B", "cloud/site-a/sensors"), ("A", "config"),
                        ("B", "cloud/status/site-a"), ("A", "devices/cmd/d1/set")):
        t.check(any(k[0] == side and k[1] == topic for k in mine),
                "%s: %s receives %r" % (version, side, topic))
    a.stop()
    b.stop()


# ----------------------------------------------------------------------------------------------
# TLS


def tls_forward(t):
    t.section("TLS options carried over (mTLS)")
    pki = os.path.join(t.tmp, "pki")
    tls_port = rt.free_port()
    b = t.broker("B-tls", extra=[
        "listener %d 127.0.0.1" % tls_port,
        "cafile %s/ca.pem" % pki, "certfile %s/server.pem" % pki,
        "keyfile %s/server.key" % pki, "require_certificate true"])
    a = t.broker("A-tls")
    mosq = write(os.path.join(t.tmp, "tls-a", "mosquitto.conf"), """\
listener {aport} 127.0.0.1
connection secure
address 127.0.0.1:{port}
remote_clientid tls-bridge
bridge_cafile {pki}/ca.pem
bridge_certfile {pki}/client.pem
bridge_keyfile {pki}/client.key
topic up/# out 1
""".format(aport=a.port, port=tls_port, pki=pki))
    out, _ = convert(t, mosq, "tls-run")
    t.check('url = "mqtts://127.0.0.1:%d";' % tls_port in out and a.url in out,
            "mqtts:// URL with its port; the local broker at A's listener")
    relay = rt.Relay(t, {"id": "tls"}, name="relay-tls", text=out).start()
    wait_for(t, "the relay connected to B over TLS",
             lambda: relay.check_alive() is None and "tls-bridge" in log_ids(b) and
             "up/#" in subs_by(a, "secure-relay-local"))
    sub = t.client(b, "5").subscribe("up/#", 1)
    t.client(a, "5").publish("up/x", b"over tls", 1)
    t.check(sub.wait_for(lambda ms: any(m.payload == b"over tls" for m in ms), 15),
            "a message crosses to the TLS-only broker with the converted TLS options")
    relay.stop()


def run(t):
    conversions(t)
    equivalence(t, "mqttv311")
    equivalence(t, "mqttv50")
    tls_forward(t)


if __name__ == "__main__":
    rt.main(run, __doc__)
