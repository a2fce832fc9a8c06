#!/usr/bin/env python3
"""status_mock: a stand-in for the relay's HTTP listener, for developing relay/io/status.html and
for a browser test that needs no relay.

    python3 test/integration/status_mock.py [--port 8080] [--down-after 8] [--stop-after 0]

serves
    GET <any path ending in />      the page (relay/io/status.html, read again on every request)
    GET <...>/api/v1/status         a fixture in the shape of /work/notes/status-api.md that moves:
                                    the n-th request shows the relay at BASE + 300 + n seconds,
                                    counters growing, the spool of "cloud" growing, and from the
                                    down_after-th request on, edge#1 and every connection of the
                                    broker 'lab"<i>&' down (so relay.healthy turns false)
    POST <...>/-/reload             200 {"ok": true, ...}
and prints "status_mock: http://127.0.0.1:PORT/" on stdout once it listens (--port 0: a free
port). Any path prefix works, so the page can be checked behind one (it must use relative URLs).

The fixture is deterministic: fixture(n, down_after) is what the n-th answer holds, so a test
that reads relay.now back from the page (BASE + 300 + n s) knows exactly what it must show.
Names, topics, errors and log lines carry hostile strings (markup, script, quotes, long words):
the page must show them as text. Those that would run set window.__pwned.

--stop-after M: after M answers, API requests hang (accepted, never answered) - what a page
sees when the relay is stopped with SIGSTOP. --fix-csp rewrites the page's Content-Security-
Policy script hash after the script was edited (--check-csp: exit 1 when it is stale).
"""

import argparse
import base64
import datetime
import hashlib
import http.server
import json
import math
import os
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.normpath(os.path.join(HERE, "..", "..", "relay", "io", "status.html"))

BASE = datetime.datetime(2026, 12, 6, 17, 0, 0, tzinfo=datetime.timezone.utc)
START = 300  # the relay has been up 300 s before the first answer
DOWN_AFTER = 8

LAB = 'lab"<i>&'  # a broker name that is not plain (the page must not trust names either)
HOSTILE_ERROR = 'connection lost: broker said "<img src=x onerror=window.__pwned=1>"'
HOSTILE_FILTER = "lab/<script>window.__pwned=3</script>/#"
LONG_TEMPLATE = "site-a/lab/${1}/" + "a-very-long-level-without-any-space-" * 6 + "${topic}"
HOSTILE_LOG = [
    "<img src=x onerror=alert(1)>",
    'route "up": message rejected by cloud (PUBACK 0x97 quota exceeded) "; DROP TABLE routes; --',
    "</td></tr></table><script>window.__pwned=2</script><b>bold?</b>",
    "unicode: \u00e9t\u00e9 \u2014 \u6e29\u5ea6 \U0001f321 and a long word " + "x" * 180,
]


def iso(sec):
    """RFC 3339 UTC with milliseconds, sec seconds after BASE."""
    t = BASE + datetime.timedelta(seconds=sec)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def wave(t):
    """Messages in second t on route "up": a deterministic wobble, always > 0."""
    return 12 + int(round(6 * math.sin(t / 6.0))) + (t * 7) % 3


def lab_rate(t, down_after):
    return 0 if t >= down_after or t < -50 else 3


def window(f, n):
    """The 60 one-second values of f ending at second n, oldest first."""
    return [f(t) for t in range(n - 59, n + 1)]


def total(f, n):
    """Messages counted up to second n (a history of 200 s before the first answer)."""
    return sum(f(t) for t in range(-200, n + 1))


def log_lines(n, down_after):
    ev = [
        (-290, "WARN", "cloud#0", "connection refused (not authorized), retry in 0.3s"),
        (-280, "WARN", LAB + "#0", HOSTILE_LOG[0]),
        (-270, "ERROR", "relay", HOSTILE_LOG[2]),
        (-260, "WARN", "edge#0", HOSTILE_LOG[3]),
        (-250, "WARN", "up", HOSTILE_LOG[1]),
    ]
    for t in range(3, n + 1, 4):
        ev.append((t, "WARN", "up", HOSTILE_LOG[1]))
    if n >= down_after:
        ev.append((down_after, "ERROR", "edge#1", HOSTILE_ERROR))
        ev.append((down_after, "ERROR", LAB + "#0", "connection lost: EOF from the broker"))
        for t in range(down_after + 2, n + 1, 2):
            ev.append((t, "WARN", LAB + "#0", "connect to mqtt://lab.example:1883 failed: "
                       "connection refused, retry in 1.0s"))
    ev.sort(key=lambda e: e[0])
    return [{"ts": iso(START + t), "level": lv, "who": who, "msg": msg,
             "repeated": 3 if msg == HOSTILE_LOG[1] and t % 8 == 3 else 0}
            for t, lv, who, msg in ev[-50:]]


def conn(index, client_id, url, up, n, since=2, reconnects=0, err=None, state_down="waiting",
         inflight=0, limit=20, **extra):
    c = {
        "index": index, "client_id": client_id, "state": "up" if up else state_down,
        "state_since": iso(since if up else START + n - 1), "url": url,
        "up_since": iso(since) if up else None,
        "connected_seconds": float(START + n - since) if up else 0.0,
        "reconnects": reconnects, "last_error": err,
        "retry_in_seconds": 0.0 if up or state_down != "waiting" else 2.5,
        "inflight": inflight if up else 0, "inflight_limit": limit,
        "queued_bytes": 1200 + 37 * n if up else 0, "rx_paused": False,
        "bytes_sent": 5000 + 800 * n, "bytes_received": 12000 + 1500 * n, "pace": None,
    }
    c.update(extra)
    return c


def fixture(n, down_after=DOWN_AFTER):
    """The n-th answer (n >= 1) of GET /api/v1/status."""
    down = n >= down_after
    went = START + down_after
    edge = {
        "name": "edge", "version": "3.1.1", "tls": True, "profile": None,
        "urls": ["mqtts://edge.example:8883", "mqtts://edge-b.example:8883"],
        "spool": None,
        "conns": [
            conn(0, "site-a-edge-0", "mqtts://edge.example:8883", True, n, inflight=n % 7),
            conn(1, "site-a-edge-1", "mqtts://edge-b.example:8883", not down, n,
                 reconnects=1 if down else 0,
                 err={"at": iso(went), "text": HOSTILE_ERROR} if down else None),
        ],
    }
    spooled = 40 + 7 * n
    cloud = {
        "name": "cloud", "version": "5", "tls": False, "profile": "bifromq",
        "urls": ["mqtt://cloud.example:1883"],
        "spool": {
            "messages": spooled, "bytes": spooled * 310, "max_bytes": 1073741824,
            "oldest_age_seconds": 20.0 + n, "full": False,
            "history": {"interval_seconds": 1,
                        "messages": [max(0, 40 + 7 * t) for t in range(n - 59, n + 1)]},
        },
        "conns": [conn(0, "site-a-cloud", "mqtt://cloud.example:1883", True, n, since=5,
                       reconnects=1, inflight=20, rx_paused=True,
                       err={"at": iso(4), "text": "connection refused (not authorized)"},
                       pace={"messages_per_second": 190, "limit": 200})],
    }
    lab = {
        "name": LAB, "version": "3.1", "tls": False, "profile": None,
        "urls": ["mqtt://lab.example:1883"], "spool": None,
        "conns": [conn(0, "site-a-" + LAB, "mqtt://lab.example:1883", not down, n,
                       reconnects=1 if down else 0,
                       state_down="connecting" if n % 2 else "waiting",
                       err={"at": iso(went), "text": "connection lost: EOF from the broker"}
                       if down else None)],
    }
    brokers = [edge, cloud, lab]
    for b in brokers:
        b["tls_cert_expiry"] = None
        b["connections"] = len(b["conns"])
        # up as the relay counts it: CONNACK received, not closing
        b["connections_up"] = sum(1 for c in b["conns"] if c["state"] in ("up", "subscribing"))
    healthy = all(b["connections_up"] > 0 for b in brokers)

    def drops(**kw):
        d = {"loop": 0, "expired": 0, "too_large": 0, "bad_topic": 0, "qos0_overflow": 0,
             "rejected": 0}
        d.update(kw)
        return d

    cmd = lambda t: 1 if t % 4 == 0 else 0  # noqa: E731
    lab_f = lambda t: lab_rate(t, down_after)  # noqa: E731
    up_in = total(wave, n)
    lab_in = total(lab_f, n)
    routes = [
        {"name": "up", "from": "edge", "to": "cloud", "filter": "sensors/#",
         "subscription": "$share/relay/sensors/#", "topic": "site-a/${topic}", "qos": 1,
         "received": up_in, "forwarded": up_in - 1, "dropped": drops(rejected=1),
         "rate": {"interval_seconds": 1, "in": window(wave, n),
                  "out": [max(0, v - (1 if i == 30 else 0)) for i, v in
                          enumerate(window(wave, n))]}},
        {"name": "down", "from": "cloud", "to": "edge", "filter": "cmd/site-a/+/set",
         "subscription": "cmd/site-a/+/set", "topic": "${topic}", "qos": 2,
         "received": total(cmd, n), "forwarded": total(cmd, n), "dropped": drops(),
         "rate": {"interval_seconds": 1, "in": window(cmd, n), "out": window(cmd, n)}},
        {"name": "lab", "from": LAB, "to": "cloud", "filter": HOSTILE_FILTER,
         "subscription": HOSTILE_FILTER, "topic": LONG_TEMPLATE, "qos": 0,
         "received": lab_in, "forwarded": lab_in - 2 - n // 2,
         "dropped": drops(bad_topic=2, qos0_overflow=n // 2),
         "rate": {"interval_seconds": 1, "in": window(lab_f, n), "out": window(lab_f, n)}},
    ]
    return {
        "api": 1,
        "relay": {
            "id": "site-a", "version": "0.2.0", "now": iso(START + n), "started": iso(0),
            "uptime_seconds": float(START + n), "healthy": healthy,
            "config_file": "/etc/mqtt-relay/relay.conf",
            "reload": {"count": 1, "last": {"at": iso(60), "ok": True,
                                            "message": "configuration reloaded: 3 routes"}},
        },
        "brokers": brokers,
        "routes": routes,
        "log": log_lines(n, down_after),
    }


def n_of(now_iso):
    """The request number n whose answer carries relay.now == now_iso (inverse of fixture)."""
    t = datetime.datetime.strptime(now_iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    return int(round((t - BASE).total_seconds())) - START


# ---------------------------------------------------------------------------------------------
# the page's Content-Security-Policy pins its one inline script by hash

SCRIPT_RE = re.compile(r"<script>(.*?)</script>", re.S)
CSP_RE = re.compile(r"script-src 'sha256-([^']*)'")


def csp_hashes(page):
    """(hash of the page's inline script, hash its CSP names)."""
    m = SCRIPT_RE.search(page)
    want = base64.b64encode(hashlib.sha256(m.group(1).encode("utf-8")).digest()).decode() \
        if m else None
    c = CSP_RE.search(page)
    return want, c.group(1) if c else None


def fix_csp(path):
    with open(path, encoding="utf-8") as f:
        page = f.read()
    want, have = csp_hashes(page)
    if want is None or have is None:
        raise SystemExit("%s: no <script> or no script-src 'sha256-...' in it" % path)
    if want != have:
        page = CSP_RE.sub("script-src 'sha256-%s'" % want, page, count=1)
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    return want, have


# ---------------------------------------------------------------------------------------------
# the server


class Mock(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, page, down_after, stop_after, verbose):
        super().__init__(addr, Handler)
        self.page = page
        self.down_after = down_after
        self.stop_after = stop_after
        self.verbose = verbose
        self.n = 0
        self.lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "status_mock"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("status_mock: " + (fmt % args) + "\n")

    def send(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        s = self.server
        if path.endswith("/api/v1/status"):
            with s.lock:
                s.n += 1
                n = s.n
            if s.stop_after and n > s.stop_after:
                time.sleep(3600)  # accepted, never answered (a daemon thread)
                return
            body = json.dumps(fixture(n, s.down_after), indent=1).encode()
            self.send(200, "application/json; charset=utf-8", body)
        elif path.endswith("/") or path.endswith("/index.html"):
            with open(s.page, "rb") as f:
                self.send(200, "text/html; charset=utf-8", f.read())
        else:
            self.send(404, "text/plain; charset=utf-8", b"not found\n")

    do_HEAD = do_GET

    def do_POST(self):
        if self.path.split("?", 1)[0].endswith("/-/reload"):
            self.send(200, "application/json; charset=utf-8",
                      b'{"ok": true, "message": "configuration reloaded: mock"}')
        else:
            self.send(404, "text/plain; charset=utf-8", b"not found\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--port", type=int, default=8080, help="0: a free port (printed)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--page", default=PAGE)
    ap.add_argument("--down-after", type=int, default=DOWN_AFTER)
    ap.add_argument("--stop-after", type=int, default=0)
    ap.add_argument("--fix-csp", action="store_true", help="update the page's script hash")
    ap.add_argument("--check-csp", action="store_true", help="exit 1 if the hash is stale")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if a.fix_csp:
        want, have = fix_csp(a.page)
        print("%s: script-src 'sha256-%s'%s" % (a.page, want, "" if want == have
                                                  else " (was %s)" % have))
        return 0
    with open(a.page, encoding="utf-8") as f:
        want, have = csp_hashes(f.read())
    if want != have:
        print("status_mock: WARNING: the page's CSP names script sha256-%s but the script is "
              "sha256-%s: browsers will not run it (run status_mock.py --fix-csp)"
              % (have, want), file=sys.stderr)
        if a.check_csp:
            return 1
    elif a.check_csp:
        return 0
    srv = Mock((a.host, a.port), a.page, a.down_after, a.stop_after, a.verbose)
    print("status_mock: http://%s:%d/" % srv.server_address[:2], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
