"""TLS options (issue 13, item 4): tls.alpn, tls.ciphers, tls.ciphersuites, tls.min_version,
the system trust store when no ca_file is given, tls.keylog_file, and session resumption.

A TLS probe of ours (a Python ssl server in a thread, below) accepts the relay's handshake
under the options a test gives it and records what was negotiated (protocol version, cipher,
ALPN) and the first bytes after it (the MQTT CONNECT), then closes; Mosquitto TLS listeners
(listeners.py) serve what the probe cannot (TLS 1.3 suites) and the end-to-end cases.

  alpn        tls.alpn = ["mqtt", "x-amzn-mqtt-ca"] against a server that speaks only
              x-amzn-mqtt-ca (as AWS IoT Core on 443): it selected x-amzn-mqtt-ca, and the
              CONNECT followed; a wss:// link offers http/1.1 by default.
  ciphers     a TLS 1.2 server that allows one cipher: tls.ciphers naming another is refused
              (one clear line: the server's alert, with the options to look at); naming it
              connects with it.
  suites      a Mosquitto listener with one TLS 1.3 suite (ciphers_tls1.3): tls.ciphersuites
              naming another is refused; naming it connects.
  version     a server that stops at TLS 1.2: tls.min_version = "1.3" is refused with a line
              that names the version; "1.2" connects with TLS 1.2.
  bad option  tls.ciphers naming nothing OpenSSL knows: --check and a start exit 1 with
              FILE:LINE and the broker.
  store       no ca_file: the system trust store is used (--check says so): the test CA is not
              in it (unknown CA), and SSL_CERT_FILE naming the test CA makes it connect.
  keylog      tls.keylog_file: a WARN at start naming the file; after a TLS 1.3 connection the
              file (mode 0600) holds the NSS key log lines of it.
  resumption  Mosquitto behind a SOCKS5 proxy of ours that cuts the link three times: the reconnects
              resume the TLS session (mqtt_relay_tls_handshakes_total{resumed="true"} >= 2,
              one full handshake first), and messages still cross.
"""
import os
import socket
import ssl
import stat
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import listeners as ls  # noqa: E402
import proxies  # noqa: E402


class TlsProbe:
    """A TLS server on 127.0.0.1 (a free port) with the test CA's server certificate: each
    connection's handshake result is recorded in .seen as a dict (ok, version, cipher, alpn,
    first bytes after the handshake, error)."""

    def __init__(self, t, certs, max_version=None, min_version=None, ciphers=None, alpn=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certs.path("server"), certs.key("server"))
        if max_version:
            self.ctx.maximum_version = max_version
        if min_version:
            self.ctx.minimum_version = min_version
        if ciphers:
            self.ctx.set_ciphers(ciphers)
        if alpn:
            self.ctx.set_alpn_protocols(alpn)
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.seen = []
        self.stopping = False
        t._register(self)
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            c.settimeout(5)
            rec = {"ok": False}
            try:
                s = self.ctx.wrap_socket(c, server_side=True)
                rec.update(ok=True, version=s.version(), cipher=s.cipher()[0],
                           alpn=s.selected_alpn_protocol())
                try:
                    rec["first"] = s.recv(64)
                except (OSError, ssl.SSLError):
                    rec["first"] = b""
                s.close()
            except (OSError, ssl.SSLError) as e:
                rec["error"] = str(e)
                c.close()
            self.seen.append(rec)

    def wait(self, n=1, timeout=15):
        return rt.wait_until(lambda: len(self.seen) >= n, timeout)

    def stop(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass


def relay_for(t, name, url, tls, extra_broker=None, relay=None, env=None):
    """A relay with one broker `name` (url, tls group) and a plain anchor broker."""
    anchor = t.broker("anchor-" + name)
    b = {"name": name, "url": url, "tls": tls, "reconnect": {"min": 300, "max": 1000}}
    b.update(extra_broker or {})
    r = t.relay(relay=relay, brokers=[b, {"name": "anchor", "url": anchor.url}],
                routes=[{"from": "anchor", "to": name, "filter": "o/#"}], name="relay-" + name,
                start=False)
    r.env = env
    return r.start()


def lines_of(r, name, text):
    return [l for l in r.log_lines() if " %s#0: " % name in l and text in l]


def run(t):
    certs = ls.make_certs(t)
    ca = certs.path("ca")

    t.section("alpn: the server sees the names offered")
    probe = TlsProbe(t, certs, alpn=["x-amzn-mqtt-ca"])
    r = relay_for(t, "aws", "mqtts://127.0.0.1:%d" % probe.port,
                  {"ca_file": ca, "alpn": ["mqtt", "x-amzn-mqtt-ca"]})
    t.check(probe.wait(1), "the probe saw a handshake")
    rec = probe.seen[0]
    t.check(rec["ok"] and rec["alpn"] == "x-amzn-mqtt-ca",
            "the server selected x-amzn-mqtt-ca from what the relay offered", repr(rec))
    t.check(rec.get("first", b"")[:1] == b"\x10", "the MQTT CONNECT followed", repr(rec))
    r.stop()
    probe2 = TlsProbe(t, certs, alpn=["x-other", "http/1.1"])
    r = relay_for(t, "wssalpn", "wss://127.0.0.1:%d/mqtt" % probe2.port, {"ca_file": ca})
    t.check(probe2.wait(1) and probe2.seen[0].get("alpn") == "http/1.1",
            "a wss:// link offers http/1.1 when tls.alpn is not set", repr(probe2.seen[:1]))
    t.check(probe2.seen[0].get("first", b"")[:4] == b"GET ", "then the WebSocket upgrade")
    r.stop()

    t.section("ciphers: a TLS 1.2 server with one cipher")
    p12 = TlsProbe(t, certs, max_version=ssl.TLSVersion.TLSv1_2,
                   ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
    r = relay_for(t, "c12bad", "mqtts://127.0.0.1:%d" % p12.port,
                  {"ca_file": ca, "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"})
    t.check(rt.wait_until(lambda: lines_of(r, "c12bad", "TLS:"), 15),
            "another cipher: refused", "\n".join(r.log_lines()[-5:]))
    line = lines_of(r, "c12bad", "TLS:")[0]
    t.note(line)
    t.check("handshake failure" in line and "tls.ciphers" in line,
            "the line says the handshake failed and names tls.ciphers")
    r.stop()
    n0 = len(p12.seen)
    r = relay_for(t, "c12ok", "mqtts://127.0.0.1:%d" % p12.port,
                  {"ca_file": ca, "ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384"})
    t.check(rt.wait_until(lambda: any(x["ok"] for x in p12.seen[n0:]), 15),
            "the server's cipher: connects")
    rec = [x for x in p12.seen[n0:] if x["ok"]][0]
    t.check(rec["cipher"] == "ECDHE-ECDSA-AES256-GCM-SHA384" and rec["version"] == "TLSv1.2",
            "TLS 1.2 with ECDHE-ECDSA-AES256-GCM-SHA384", repr(rec))
    r.stop()

    t.section("suites: a Mosquitto listener with one TLS 1.3 suite")
    tls13 = ls.Tls("t13", certs)
    mb = ls.ListenerBroker(t, "suites", [tls13])
    mb.extra += ["tls_version tlsv1.3", "ciphers_tls1.3 TLS_AES_256_GCM_SHA384"]
    mb.start()
    r = relay_for(t, "s13bad", mb.url_of("t13"),
                  {"ca_file": ca, "ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"})
    t.check(rt.wait_until(lambda: lines_of(r, "s13bad", "TLS:"), 15),
            "another suite: refused", "\n".join(r.log_lines()[-5:]))
    t.note(lines_of(r, "s13bad", "TLS:")[0])
    t.check("tls.ciphersuites" in lines_of(r, "s13bad", "TLS:")[0], "the line names "
            "tls.ciphersuites")
    r.stop()
    r = relay_for(t, "s13ok", mb.url_of("t13"),
                  {"ca_file": ca, "ciphersuites": "TLS_AES_256_GCM_SHA384", "min_version": "1.3"})
    t.check(rt.wait_until(lambda: "itest-s13ok" in mb.connected_ids(), 15),
            "the listener's suite: connected (TLS 1.3 only, min_version 1.3)")
    r.stop()

    t.section("version: a server that stops at TLS 1.2")
    r = relay_for(t, "v13", "mqtts://127.0.0.1:%d" % p12.port,
                  {"ca_file": ca, "min_version": "1.3"})
    t.check(rt.wait_until(lambda: lines_of(r, "v13", "TLS:"), 15), "min_version 1.3: refused")
    t.note(lines_of(r, "v13", "TLS:")[0])
    t.check("protocol version" in lines_of(r, "v13", "TLS:")[0] and
            "tls.min_version" in lines_of(r, "v13", "TLS:")[0],
            "the line names the protocol version and tls.min_version")
    r.stop()
    n0 = len(p12.seen)
    r = relay_for(t, "v12", "mqtts://127.0.0.1:%d" % p12.port,
                  {"ca_file": ca, "min_version": "1.2"})
    t.check(rt.wait_until(lambda: any(x["ok"] for x in p12.seen[n0:]), 15) and
            [x for x in p12.seen[n0:] if x["ok"]][0]["version"] == "TLSv1.2",
            "min_version 1.2: connects with TLS 1.2")
    r.stop()

    t.section("bad option: OpenSSL knows none of the ciphers named")
    conf = rt.relay_config_text({"id": "x"}, [
        {"name": "a", "url": "mqtt://127.0.0.1:1883"},
        {"name": "b", "url": "mqtts://127.0.0.1:8883", "tls": {"ciphers": "NO-SUCH-CIPHER"}}],
        [{"from": "a", "to": "b", "filter": "x/#"}])
    lines = conf.splitlines()
    b_line = [i for i, l in enumerate(lines) if 'name = "b"' in l][0]  # 0-based: the group
    for args in (["--check"], []):          # starts on the line before, 1-based b_line
        st, out, err = t.run_relay_once(conf, args, "bad.conf")
        want = 'bad.conf:%d: broker "b": tls.ciphers "NO-SUCH-CIPHER"' % b_line
        t.check(st == 1 and want in err,
                "%s exits 1 naming the file, line and broker" % (" ".join(args) or "a start"),
                "status %d: %s (wanted %s)" % (st, err, want))
    t.note(err.strip())

    t.section("store: no ca_file means the system trust store")
    tb = ls.broker(t, "store", [ls.Tls("tls", certs)])
    r = relay_for(t, "sys", tb.url_of("tls"), {"server_name": "localhost"})
    t.check(rt.wait_until(lambda: lines_of(r, "sys", "unknown CA"), 15),
            "the test CA is not in the system store: unknown CA", "\n".join(r.log_lines()[-5:]))
    st, out, err = t.run_relay_once(open(r.conf_path).read(), ["--check"], "store.conf")
    t.check("ca: the system trust store" in out, "--check says the system trust store is used")
    r.stop()
    r = relay_for(t, "sysenv", tb.url_of("tls"), {"server_name": "localhost"},
                  env={"SSL_CERT_FILE": ca})
    t.check(rt.wait_until(lambda: "itest-sysenv" in tb.connected_ids(), 15),
            "with SSL_CERT_FILE naming the test CA (OpenSSL's default paths): connected")
    r.stop()

    t.section("keylog: session secrets written for debugging, with a warning")
    keylog = os.path.join(t.tmp, "keys.log")
    r = relay_for(t, "klog", tb.url_of("tls"),
                  {"ca_file": ca, "keylog_file": keylog, "min_version": "1.3"})
    t.check(rt.wait_until(lambda: "itest-klog" in tb.connected_ids(), 15), "connected")
    warn = [l for l in r.log_lines() if "WARN" in l and "tls.keylog_file" in l and keylog in l]
    t.check(warn, "a WARN at start names the key log file")
    t.note(warn[0])
    text = open(keylog).read() if os.path.exists(keylog) else ""
    t.check("CLIENT_HANDSHAKE_TRAFFIC_SECRET " in text and "CLIENT_TRAFFIC_SECRET_0 " in text,
            "the key log holds the TLS 1.3 secrets (SSLKEYLOGFILE format)", text[:300])
    t.check(stat.S_IMODE(os.stat(keylog).st_mode) == 0o600, "mode 0600")
    r.stop()

    t.section("resumption: reconnects resume the TLS session")
    fp = proxies.Socks5Proxy(t).start()  # transparent once open; cut() ends its tunnels
    mport = rt.free_port()
    r = relay_for(t, "resume", tb.url_of("tls"), {"ca_file": ca, "server_name": "localhost"},
                  extra_broker={"reconnect": {"min": 100, "max": 300},
                                "proxy": "socks5://127.0.0.1:%d" % fp.port},
                  relay={"metrics": "127.0.0.1:%d" % mport})

    def count(resumed):
        return rt.metric(rt.get_metrics(mport), "mqtt_relay_tls_handshakes_total",
                         broker="resume", resumed=resumed)

    t.check(rt.wait_until(lambda: "itest-resume" in tb.connected_ids(), 15), "connected")
    for i in range(3):
        n = len([x for x in tb.connected_ids() if x == "itest-resume"])
        time.sleep(0.5)  # the session ticket arrives after the handshake
        fp.cut()
        t.check(rt.wait_until(lambda: len([x for x in tb.connected_ids()
                                           if x == "itest-resume"]) > n, 15),
                "cut %d: reconnected" % (i + 1))
    full, resumed = count("false"), count("true")
    t.say("   handshakes: %d full, %d resumed" % (full, resumed))
    t.check(full == 1 and resumed >= 2, "one full handshake, then resumed ones")
    sub = t.client(tb, client_id="sub-resume")
    sub.subscribe("o/#", qos=1)
    pub = t.client(t.things[[i for i, x in enumerate(t.things)
                             if isinstance(x, rt.Broker) and x.name == "anchor-resume"][0]],
                   client_id="pub-resume")
    pub.publish("o/after-resume", b"still crossing", qos=1)
    pub.wait_published(10)
    t.check(sub.wait_for(lambda m: any(x.payload == b"still crossing" for x in m), 15),
            "messages cross the resumed session")
    r.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
