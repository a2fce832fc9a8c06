"""listeners: Mosquitto TLS and WebSocket listeners for the integration tests (issue 4).

relaytest.Broker starts one plain TCP listener (the one test clients use); the functions here
add more listeners to it through its `extra` lines, which come after that first listener in the
configuration, so every option below is per listener. TESTING.md: a WebSocket listener only
starts when the configuration has a plain TCP listener too, which the first one always is.

    certs = listeners.make_certs(t)               # certs/make-certs.sh into the test's temp dir
    b = listeners.broker(t, "tls", [
            listeners.Tls("ok", certs),           # mqtts://127.0.0.1:b.ports["ok"]
            listeners.Tls("mtls", certs, require_certificate=True),
            listeners.Tls("expired", certs, cert="expired"),
            listeners.Ws("ws"),                   # ws://127.0.0.1:b.ports["ws"]/mqtt (any path)
            listeners.Ws("wss", certs=certs)])    # wss://
    b.url_of("ok") == "mqtts://127.0.0.1:PORT"
"""

import os
import subprocess
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CERTS = os.path.join(HERE, "..", "..", "certs", "make-certs.sh")


class Certs:
    """The files certs/make-certs.sh wrote into dir: certs.path("ca") is DIR/ca.pem,
    certs.key("client") DIR/client.key."""

    def __init__(self, d):
        self.dir = d

    def path(self, name):
        return os.path.join(self.dir, name + ".pem")

    def key(self, name):
        return os.path.join(self.dir, name + ".key")


def make_certs(t, sub="certs"):
    """Runs certs/make-certs.sh into TMP/sub (bounded), returns Certs. A missing openssl is a
    failure of the test, not a skip: the relay needs OpenSSL anyway."""
    d = os.path.join(t.tmp, sub)
    try:
        p = subprocess.run(["sh", MAKE_CERTS, d], capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise rt.Failure("certs/make-certs.sh did not finish within 60s")
    if p.returncode != 0:
        raise rt.Failure("certs/make-certs.sh %s failed (%d): %s"
                         % (d, p.returncode, p.stderr.decode("utf-8", "replace")))
    c = Certs(d)
    for f in ("ca", "server", "client", "other-ca", "expired"):
        if not os.path.exists(c.path(f)):
            raise rt.Failure("certs/make-certs.sh did not make %s" % c.path(f))
    t.note("certificates made by certs/make-certs.sh in %s" % d)
    return c


class Tls:
    """A TLS (mqtts) listener: the server certificate `cert` (server | expired) signed by the
    test CA; require_certificate asks clients for a certificate signed by the test CA."""

    def __init__(self, name, certs, cert="server", require_certificate=False):
        self.name = name
        self.certs = certs
        self.cert = cert
        self.require_certificate = require_certificate
        self.scheme = "mqtts"

    def lines(self, port):
        out = ["", "listener %d 127.0.0.1" % port,
               "cafile %s" % self.certs.path("ca"),
               "certfile %s" % self.certs.path(self.cert),
               "keyfile %s" % self.certs.key(self.cert)]
        if self.require_certificate:
            out.append("require_certificate true")
        return out


class Ws:
    """A WebSocket listener (ws://, or wss:// with certs). Mosquitto serves MQTT on any path."""

    def __init__(self, name, certs=None, cert="server"):
        self.name = name
        self.certs = certs
        self.cert = cert
        self.scheme = "wss" if certs else "ws"

    def lines(self, port):
        out = ["", "listener %d 127.0.0.1" % port, "protocol websockets"]
        if self.certs:
            out += ["cafile %s" % self.certs.path("ca"),
                    "certfile %s" % self.certs.path(self.cert),
                    "keyfile %s" % self.certs.key(self.cert)]
        return out


class ListenerBroker(rt.Broker):
    """A relaytest Broker with extra listeners: ports[name], url_of(name, path="")."""

    def __init__(self, t, name, listeners, **kw):
        extra = list(kw.pop("extra", ()))
        self.ports = {}
        self.schemes = {}
        lines = []
        for ls in listeners:
            p = rt.free_port()
            self.ports[ls.name] = p
            self.schemes[ls.name] = ls.scheme
            lines += ls.lines(p)
        # Options global to the broker must come before the extra listeners: extra first.
        super().__init__(t, name, extra=extra + lines, **kw)

    def url_of(self, name, path=""):
        return "%s://127.0.0.1:%d%s" % (self.schemes[name], self.ports[name], path)

    def start(self, timeout=15):
        super().start(timeout)
        # every extra listener accepts too (the first one's wait is in Broker.start)
        left = []

        def all_up():
            left[:] = [n for n, p in self.ports.items() if not rt.port_accepts(p)]
            return not left

        if not rt.wait_until(all_up, timeout, 0.05):
            raise rt.Failure("broker %s: listeners %s do not accept after %ss:\n%s"
                             % (self.name, left, timeout, rt.tail(self.log_paths[-1])))
        return self


def broker(t, name, listeners, **kw):
    return ListenerBroker(t, name, listeners, **kw).start()
