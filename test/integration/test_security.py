"""Security: secrets stay secret, TLS never degrades to plain text, hostile configuration
values are refused at load.

A. Passwords never appear in what the relay prints. Three brokers need a password: "auth5"
   (MQTT 5, password inline), "auth3" (MQTT 3.1.1, password_file, mode 0600) and "wrong" (a
   wrong password: refused again and again, the error path). Mosquitto checks them against its
   own password_file. With log_level "debug" (libwebsockets' lines included) messages cross,
   the auth5 broker is restarted (reconnect, CONNECT again), SIGHUP reloads the file, SIGTERM
   stops the relay; then neither the relay's stderr/stdout, nor `--check`'s output, nor
   /metrics holds any of the passwords: as text, as hex (plain, spaced, upper case) or base64.
B. password_file readable by group or others (0644, 0640, 0604, 0660, 0444) is refused by
   `--check` and by a normal start: exit 1, "FILE:LINE:" naming the password_file line, and a
   message that names the file and its permissions. 0600 and 0400 are accepted.
C. TLS never falls back to plain text: mqtts:// and wss:// URLs pointed at a listener that
   does not speak TLS -- a raw TCP listener that records every byte the relay sends, and a
   plain Mosquitto port. Every connection the relay makes starts with a TLS handshake record
   (0x16 0x03), none holds an MQTT CONNECT or an HTTP request in clear, it retries (at least
   3 attempts, all TLS, verify = false included), logs a TLS failure naming the broker, and
   Mosquitto's log never shows the relay's client id connecting.
D. Hostile configuration values are refused at load, with "FILE:LINE:" naming the line:
   strings longer than MQTT allows (client id, user name, password, topic filter, template,
   share name, status topic, relay id, broker name, URL) and numbers out of range, negative,
   beyond 64 bits, or floats, for every numeric setting. Exit status 1, never a crash.
"""
import base64
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

RECO = {"min": 200, "max": 1000}


def forms(secret):
    """The ways a secret could leak into a log: text, hex in several layouts, base64."""
    b = secret.encode()
    hx = b.hex()
    return {
        "text": secret,
        "hex": hx,
        "HEX": hx.upper(),
        "spaced hex": " ".join(hx[i:i + 2] for i in range(0, len(hx), 2)),
        "SPACED HEX": " ".join(hx[i:i + 2] for i in range(0, len(hx), 2)).upper(),
        "base64": base64.b64encode(b).decode().rstrip("="),
        # a password is printable: a leak may also come cut in the middle of a hex dump line
        "half": secret[: len(secret) // 2 + 2],
    }


def leaks(text, secrets_):
    found = []
    for name, s in secrets_.items():
        for form, v in forms(s).items():
            if v and v in text:
                found.append("%s as %s" % (name, form))
    return found


def password_broker(t, name, users):
    """A Mosquitto that only lets users in: {user: password}."""
    d = os.path.join(t.tmp, "pw-" + name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "passwords")
    first = True
    for u, p in users.items():
        subprocess.run(["mosquitto_passwd"] + (["-c"] if first else []) + ["-b", path, u, p],
                       check=True, capture_output=True)
        first = False
    # the later allow_anonymous wins over the harness's "allow_anonymous true"
    return t.broker(name, extra=["allow_anonymous false", "password_file %s" % path])


def section_a(t):
    t.section("A: passwords in logs (debug level), --check and /metrics")
    pw = {"auth5": "P5-" + secrets.token_hex(10), "auth3": "P3-" + secrets.token_hex(10),
          "wrong": "PW-" + secrets.token_hex(10)}
    if not shutil.which("mosquitto_passwd"):
        t.note("mosquitto_passwd missing: section A skipped")
        return
    auth5 = password_broker(t, "auth5", {"relay5": pw["auth5"]})
    auth3 = password_broker(t, "auth3", {"relay3": pw["auth3"]})
    wrong = password_broker(t, "wrongpw", {"relayw": "the-right-one-" + secrets.token_hex(4)})
    plain = t.broker("plain", log_all=False)
    metrics_port = rt.free_port()
    relay = t.relay(
        relay={"id": "sec", "log_level": "debug", "metrics": "127.0.0.1:%d" % metrics_port},
        brokers=[
            {"name": "auth5", "url": auth5.url, "version": "5", "username": "relay5",
             "password": pw["auth5"], "reconnect": RECO},
            {"name": "auth3", "url": auth3.url, "version": "3.1.1", "username": "relay3",
             "password_file": "auth3.pw", "reconnect": RECO},
            {"name": "wrong", "url": wrong.url, "version": "5", "username": "relayw",
             "password": pw["wrong"], "reconnect": RECO},
            {"name": "plain", "url": plain.url, "version": "5", "reconnect": RECO},
        ],
        routes=[{"from": "plain", "to": "auth5", "filter": "s5/#", "qos": 1},
                {"from": "auth3", "to": "plain", "filter": "s3/#", "qos": 1},
                {"from": "plain", "to": "wrong", "filter": "sw/#", "qos": 1}],
        start=False)
    pwfile = os.path.join(relay.dir, "auth3.pw")
    with open(pwfile, "w") as f:
        f.write(pw["auth3"] + "\n")
    os.chmod(pwfile, 0o600)
    relay.start()

    def connected(b, cid):
        return cid in b.connected_ids()
    t.check(rt.wait_until(lambda: relay.check_alive() or (connected(auth5, "sec-auth5") and
                                                          connected(auth3, "sec-auth3")), 30),
            "the relay logged in to both password brokers (inline and password_file)")
    rt.wait_until(lambda: any(s[0] == "sec-auth3" for s in auth3.subscriptions()) and
                  any(s[0] == "sec-plain" for s in plain.subscriptions()), 30)
    # the test's own clients need a password too: they use the relay's (Mosquitto allows it)
    sub5 = rt.Client(t, auth5, "5", client_id="sub5")
    sub5.c.username_pw_set("relay5", pw["auth5"])
    sub5.connect()
    sub5.subscribe("s5/#", 1)
    subp = t.client(plain, "5").subscribe("s3/#", 1)
    pubp = t.client(plain, "5")
    pub3 = rt.Client(t, auth3, "3.1.1", client_id="pub3")
    pub3.c.username_pw_set("relay3", pw["auth3"])
    pub3.connect()
    for i in range(5):
        pubp.publish("s5/%d" % i, b"x", 1)
        pub3.publish("s3/%d" % i, b"y", 1)
    pubp.wait_published()
    pub3.wait_published()
    t.check(rt.wait_until(lambda: sub5.count() >= 5 and subp.count() >= 5, 30),
            "messages cross both password links")
    t.check(rt.wait_until(lambda: sum(1 for l in relay.log_lines() if "wrong#0" in l and
                                      re.search(r"WARN|ERROR", l)) >= 2, 30),
            "the wrong password is refused, and retried")
    auth5.restart()
    t.check(rt.wait_until(lambda: auth5.connected_ids().count("sec-auth5") >= 1, 30),
            "after a restart of auth5 the relay logs in again")
    relay.proc.send_signal(1)  # SIGHUP: the file (and password_file) read again
    rt.wait_until(lambda: any("reload" in l for l in relay.log_lines()), 20)
    status, body = 0, ""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port,
                                    timeout=5) as r:
            status, body = r.status, r.read().decode()
    except OSError as e:
        body = str(e)
    t.check(status == 200, "GET /metrics")
    api = ""
    try:  # the status API and page (issue 17) show the brokers, never their passwords
        for path in ("/api/v1/status", "/"):
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (metrics_port, path),
                                        timeout=5) as r:
                api += r.read().decode()
    except OSError as e:
        api += str(e)
    t.check('"brokers"' in api and "<!doctype html>" in api, "GET /api/v1/status and GET /")
    for c in (sub5, subp, pubp, pub3):
        c.stop()
    relay.stop()

    text = relay.stderr_text()
    with open(relay.stdout_path, "rb") as f:
        text += f.read().decode("utf-8", "replace")
    n_lines = len(relay.log_lines())
    t.note("%d log lines at debug level, %d of them from libwebsockets"
           % (n_lines, sum(1 for l in relay.log_lines() if " lws: " in l)))
    found = leaks(text, pw)
    t.check(not found, "no password in the relay's output (%d lines at debug level)" % n_lines,
            "found: %s" % found)
    found = leaks(body, pw)
    t.check(not found, "no password in /metrics", "found: %s" % found)
    found = leaks(api, pw)
    t.check(not found, "no password in /api/v1/status or the status page", "found: %s" % found)
    rc, out, err = check_with_pwfile(t, relay.text, pw["auth3"])
    t.check(rc == 0, "--check accepts the file (exit %d)" % rc, err[-2000:])
    found = leaks(out + err, pw)
    t.check(not found, "no password in --check's output", "found: %s" % found)


def check_with_pwfile(t, text, password, name="check.conf", mode=0o600):
    """--check on text in a fresh directory holding auth3.pw (mode) with password."""
    d = os.path.join(t.tmp, "once-" + name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "auth3.pw")
    with open(path, "w") as f:
        f.write(password + "\n")
    os.chmod(path, mode)
    return t.run_relay_once(text, ["--check"], name)


PW_CONF = """\
relay: { id = "perm"; };
brokers = (
  {
    name = "edge";
    url = "mqtt://127.0.0.1:1";
    username = "u";
    password_file = "auth3.pw";
  },
  { name = "cloud"; url = "mqtt://127.0.0.1:2"; }
);
routes = ( { from = "edge"; to = "cloud"; filter = "x/#"; } );
"""
PW_LINE = 7


def section_b(t):
    t.section("B: password_file readable by group or others is refused")
    for mode in (0o644, 0o640, 0o604, 0o660, 0o444):
        for args, what in ((["--check"], "--check"), ([], "a start")):
            name = "perm-%o%s.conf" % (mode, "-check" if args else "")
            d = os.path.join(t.tmp, "once-" + name)
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, "auth3.pw")
            with open(path, "w") as f:
                f.write("secret-" + secrets.token_hex(6) + "\n")
            os.chmod(path, mode)
            rc, out, err = t.run_relay_once(PW_CONF, args, name)
            first = err.strip().splitlines()[0] if err.strip() else ""
            t.check(rc == 1 and first.startswith("%s:%d:" % (name, PW_LINE)) and
                    "password_file" in first and re.search(r"permission|mode|group|other",
                                                           first, re.I),
                    "mode %04o refused by %s: exit 1, %r" % (mode, what, first[:140]),
                    "exit %s, stderr: %s" % (rc, err[-800:]))
            t.check("secret-" not in out + err, "and the password is not printed")
    for mode in (0o600, 0o400):
        rc, out, err = check_with_pwfile(t, PW_CONF, "secret-ok", "perm-ok-%o.conf" % mode,
                                         mode)
        t.check(rc == 0, "mode %04o accepted by --check" % mode, err[-800:])


class RawListener:
    """A TCP listener that records the first bytes of every connection, then closes it (so the
    relay retries)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []  # bytes received per connection
        self.lock = threading.Lock()
        self.stopping = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(s,), daemon=True).start()

    def _one(self, s):
        data = b""
        s.settimeout(1.0)
        try:
            while len(data) < 8192:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        # answer garbage that is neither TLS nor MQTT, then close
        try:
            s.sendall(b"\x00\x00\x00\x00not tls\r\n")
        except OSError:
            pass
        s.close()
        with self.lock:
            self.conns.append(data)

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass


def section_c(t):
    t.section("C: mqtts:// and wss:// to listeners that do not speak TLS")
    raw = RawListener()
    raw2 = RawListener()
    raw3 = RawListener()
    plain = t.broker("tlsplain")        # a plain Mosquitto (log_type all)
    other_a = t.broker("ta", log_all=False)
    other_b = t.broker("tb", log_all=False)
    try:
        relay = t.relay(
            relay={"id": "tlsno"},
            brokers=[
                {"name": "rawtls", "url": "mqtts://127.0.0.1:%d" % raw.port, "version": "5",
                 "username": "u", "password": "tls-secret-1", "reconnect": RECO},
                {"name": "rawwss", "url": "wss://127.0.0.1:%d/mqtt" % raw2.port,
                 "version": "3.1.1", "reconnect": RECO},
                {"name": "noverify", "url": "mqtts://127.0.0.1:%d" % raw3.port,
                 "version": "5", "reconnect": RECO, "tls": {"verify": False}},
                {"name": "mosq", "url": "mqtts://127.0.0.1:%d" % plain.port, "version": "5",
                 "reconnect": RECO},
                {"name": "ta", "url": other_a.url, "version": "5"},
                {"name": "tb", "url": other_b.url, "version": "5"},
            ],
            routes=[{"from": "rawtls", "to": "ta", "filter": "r/#"},
                    {"from": "rawwss", "to": "ta", "filter": "w/#"},
                    {"from": "noverify", "to": "ta", "filter": "n/#"},
                    {"from": "mosq", "to": "ta", "filter": "m/#"},
                    {"from": "ta", "to": "tb", "filter": "ok/#", "qos": 1}])
        t.check(rt.wait_until(lambda: relay.check_alive() or (
            len(raw.conns) >= 3 and len(raw2.conns) >= 3 and len(raw3.conns) >= 3), 60, 0.1),
            "the relay tried each TLS broker at least 3 times (%d, %d, %d)"
            % (len(raw.conns), len(raw2.conns), len(raw3.conns)))
        for name, lst in (("mqtts", raw), ("wss", raw2), ("mqtts, verify = false", raw3)):
            with lst.lock:
                conns = list(lst.conns)
            tls = [c for c in conns if len(c) >= 3 and c[0] == 0x16 and c[1] == 0x03]
            clear = [c for c in conns if b"MQTT" in c or b"MQIsdp" in c or b"GET " in c
                     or b"tls-secret-1" in c or b"tlsno-" in c]
            t.check(len(tls) == len(conns) and not clear,
                    "%s: all %d connections start with a TLS handshake record, none holds "
                    "MQTT or HTTP in clear" % (name, len(conns)),
                    "first bytes: %s" % [rt.short(c, 24) for c in conns[:6]])
        # Mosquitto's plain port: it sees garbage, never a CONNECT from our client id
        t.check(rt.wait_until(lambda: plain.log_text().count("New connection from") >= 3, 60,
                              0.1), "the relay tried Mosquitto's plain port at least 3 times")
        t.check("tlsno-mosq" not in plain.log_text(),
                "Mosquitto's log never shows the relay's client id (no CONNECT in plain text)",
                rt.tail(plain.log_paths[-1], 20))
        lines = relay.log_lines()
        for b in ("rawtls", "rawwss", "noverify", "mosq"):
            mine = [l for l in lines if (" %s#0:" % b) in l and re.search(r" (WARN |ERROR) ",
                                                                          l)]
            t.check(mine and all(re.search(r"TLS|SSL|handshake|certificate", l, re.I)
                                 for l in mine[:3]),
                    "%s: the relay logs the TLS failure: %s" % (b, mine[0].split(": ", 1)[1]
                                                                if mine else None),
                    "its lines: %s" % mine[:5])
        t.check(not any("connected to mqtts" in l or "connected to wss" in l for l in lines),
                "no TLS link ever counts as connected")
        # the plain route keeps flowing meanwhile
        sub = t.client(other_b, "5").subscribe("ok/#", 1)
        pub = t.client(other_a, "5")
        rt.wait_until(lambda: any(s[2] == "ok/#" for s in other_a.subscriptions()), 20)
        for i in range(10):
            pub.publish("ok/%d" % i, b"ok", 1)
        pub.wait_published()
        t.check(rt.wait_until(lambda: sub.count() >= 10, 30),
                "a plain route keeps flowing while the TLS links fail")
        relay.stop()
    finally:
        raw.stop()
        raw2.stop()
        raw3.stop()


# (what, the line to put in, where: "relay" | "broker" | "route")
def hostile_values():
    big = 70000
    out = [
        ("client_id of 70,000 bytes", 'client_id = "%s";' % ("c" * big), "broker"),
        ("username of 70,000 bytes", 'username = "%s";' % ("u" * big), "broker"),
        ("password of 70,000 bytes", 'password = "%s";' % ("p" * big), "broker"),
        ("status_topic of 70,000 bytes", 'status_topic = "%s";' % ("s" * big), "broker"),
        ("url of 100,000 bytes", 'url = "mqtt://%s:1883";' % ("h" * 100000), "broker-url"),
        ("broker name of 100,000 bytes", None, "broker-name"),
        ("relay id of 100,000 bytes", 'id = "%s";' % ("i" * 100000), "relay-id"),
        ("filter of 80,000 bytes", 'filter = "%s#";' % ("a/" * 40000), "route-filter"),
        ("topic template of 70,000 bytes", 'topic = "%s";' % ("t" * big), "route"),
        ("share name of 70,000 bytes", 'share = "%s";' % ("g" * big), "route"),
        ("keepalive = 65536", "keepalive = 65536;", "broker"),
        ("keepalive = -1", "keepalive = -1;", "broker"),
        ("keepalive beyond 64 bits", "keepalive = 99999999999999999999;", "broker"),
        ("keepalive = 1e300 (a float)", "keepalive = 1e300;", "broker"),
        ("session_expiry = 2^32", "session_expiry = 4294967296L;", "broker"),
        ("receive_maximum = 65536", "receive_maximum = 65536;", "broker"),
        ("receive_maximum = 0", "receive_maximum = 0;", "broker"),
        ("max_inflight = 2^31", "max_inflight = 2147483648L;", "broker"),
        ("max_packet_size = 2^32", "max_packet_size = 4294967296L;", "broker"),
        ("connections = 1,000,000", "connections = 1000000;", "broker"),
        ("ack_timeout = 2^40", "ack_timeout = 1099511627776L;", "broker"),
        ("reconnect.min = 2^63-1", "reconnect = { min = 9223372036854775807L; max = 1000; };",
         "broker"),
        ("rate_limit.bytes = -5", "rate_limit = { bytes = -5; messages = 0; };", "broker"),
        ("spool.max_size = -1", 'spool = { dir = "sp"; max_size = -1; };', "broker"),
        ("port 70000", 'url = "mqtt://127.0.0.1:70000";', "broker-url"),
        ("drain_timeout = 2^63-1", "drain_timeout = 9223372036854775807L;", "relay"),
        ("max_hops = 100000", "max_hops = 100000;", "relay"),
        ("qos = 3", "qos = 3;", "route"),
        ("qos = -1", "qos = -1;", "route"),
    ]
    return out


CONF_D = """\
relay: {
  @RELAY_ID@
  log_level = "info";
  @RELAY@
};
brokers = (
  {
    @BROKER_NAME@
    @BROKER_URL@
    @BROKER@
  },
  { name = "cloud"; url = "mqtt://127.0.0.1:2"; }
);
routes = (
  {
    from = @FROM@; to = "cloud";
    @ROUTE_FILTER@
    @ROUTE@
  }
);
"""


def section_d(t):
    t.section("D: very long strings and huge numbers in the configuration")
    defaults = {"@RELAY_ID@": 'id = "limits";', "@RELAY@": "",
                "@BROKER_NAME@": 'name = "edge";', "@BROKER_URL@": 'url = "mqtt://127.0.0.1:1";',
                "@BROKER@": "", "@FROM@": '"edge"', "@ROUTE_FILTER@": 'filter = "x/#";',
                "@ROUTE@": ""}
    marker = {"relay": "@RELAY@", "relay-id": "@RELAY_ID@", "broker": "@BROKER@",
              "broker-url": "@BROKER_URL@", "broker-name": "@BROKER_NAME@", "route": "@ROUTE@",
              "route-filter": "@ROUTE_FILTER@"}
    for k, (what, line, where) in enumerate(hostile_values()):
        vals = dict(defaults)
        if where == "broker-name":
            long_name = "n" * 100000
            vals["@BROKER_NAME@"] = 'name = "%s";' % long_name
            vals["@FROM@"] = '"%s"' % long_name
            line_no = CONF_D.splitlines().index("    @BROKER_NAME@") + 1
        else:
            vals[marker[where]] = line
            line_no = next(i for i, l in enumerate(CONF_D.splitlines(), 1)
                           if marker[where] in l)
        text = CONF_D
        for m, v in vals.items():
            text = text.replace(m, v)
        name = "limits-%02d.conf" % k
        rc, out, err = t.run_relay_once(text, ["--check"], name, timeout=60)
        first = err.strip().splitlines()[0] if err.strip() else ""
        t.check(rc == 1 and first.startswith("%s:%d:" % (name, line_no)),
                "%s: refused at load, exit 1, \"%s\"" % (what, first[:110]),
                "exit %s (negative: killed by a signal), expected %s:%d:, stderr: %s"
                % (rc, name, line_no, err[:600]))
        t.check(len(err) < 4096, "and the message is one short line (%d bytes)" % len(err))
        if k == 0:
            # a normal start refuses it the same way
            rc2, _, err2 = t.run_relay_once(text, [], name, timeout=60)
            t.check(rc2 == 1 and err2.startswith("%s:%d:" % (name, line_no)),
                    "a normal start refuses it the same way", err2[:300])


def run(t):
    section_a(t)
    section_b(t)
    section_c(t)
    section_d(t)


if __name__ == "__main__":
    rt.main(run, __doc__)
