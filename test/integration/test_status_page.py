"""The status page (issue 17) in a real browser: relay/io/status.html in headless Chromium.

Chromium is driven over the DevTools protocol (--remote-debugging-port, a small stdlib websocket
client below), not with one `chromium --dump-dom` per look: a browser starts in about 3 s here,
so fresh browsers cannot see a killed broker "within 2 s", and the stale state only exists in a
page that had data and then lost its relay. One browser keeps the page open; the test reads the
DOM through Runtime.evaluate every 100 ms and takes screenshots with Page.captureScreenshot.

--mock (integration.status_page_mock; no relay, no broker): the page served by status_mock.py
under a path prefix (/relay-x/: the page must use relative URLs). Asserted:
  - the page file: under 30 KiB, no innerHTML / insertAdjacentHTML / document.write / eval, no
    external URL, and its Content-Security-Policy script hash matches its script; in the
    browser, every request goes to the page's own directory (nothing else is fetched);
  - a snapshot of the DOM equals the fixture of the answer it shows (status_mock.fixture(n),
    n read back from #summary[data-updated]): per broker its state (up / degraded / down),
    per connection state, URL, reconnects, in flight / limit, last error text; per route
    received / forwarded (text and data-value), drops by reason with only the non-zero ones
    emphasised, the rate chart's polylines reproduce the 60 values of `rate.in` / `rate.out`;
    the spool's messages and chart; the 50 log lines, newest first, byte for byte;
  - hostile strings (`<img src=x onerror=...>`, `</td></table><script>`, `"; DROP`, a broker
    named 'lab"<i>&') appear as text: no element the page does not build itself exists
    (img, b, i, a, iframe, a second script), window.__pwned is unset, no dialog opened;
  - counters grow with later answers; after the mock's down_after-th answer edge#1 shows
    "waiting" (data-up false) with its error, the broker 'lab"<i>&' shows down, and
    #summary[data-healthy] turns false;
  - at 375 px (a phone) no element reaches past the viewport's right edge (no horizontal
    scroll);
  - mock SIGSTOPped (requests hang): within 10 s the page says "Relay not answering since",
    greys out, keeps the last data, data-healthy false; SIGCONT: fresh again; mock killed
    (connection refused): stale again.
  Screenshots (desktop, phone, stale) in the temp dir, copied to <build>/status-page-mock*.png.

default (integration.status_page; a real relay): two Mosquitto brokers A and B, the relay with
relay.metrics on a free port, route ab A->B and ba B->A, broker A with a password (it must
appear nowhere), B with a spool. GET / must answer the page: while it answers 404 (the C side of
issue 17 has not landed) the test exits 77 (skipped) saying so. 40 QoS 1 messages A->B and 25
B->A; then the DOM must show both brokers up and exactly 40/40 and 25/25, as /metrics counts
them; B SIGKILLed: the page shows B's connection down within 2 s of the kill (DOM polled), A
still up, data-healthy false; 15 messages for B are then spooled and the page's spool shows
what /metrics counts. Screenshots kept; the last copied to <build>/status-page.png.

Exit 77 when chromium (Debian package `chromium`) is missing.
"""
import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402

import relaytest as rt  # noqa: E402
import status_mock  # noqa: E402

PAGE_SRC = status_mock.PAGE
DESKTOP = (1280, 900)
PHONE = 375


# ----------------------------------------------------------------------------------------------
# a minimal DevTools-protocol client (RFC 6455 client frames, text only)


class CDPError(rt.Failure):
    pass


class DevTools:
    def __init__(self, ws_url, timeout=30):
        u = urllib.parse.urlsplit(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (u.path, u.hostname, u.port, key))
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            b = self.sock.recv(1)
            if not b:
                raise CDPError("DevTools closed the websocket handshake")
            head += b
        if not head.startswith(b"HTTP/1.1 101"):
            raise CDPError("DevTools refused the websocket: %r" % head[:200])
        self.next_id = 0
        self.events = []

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            b = self.sock.recv(n - len(buf))
            if not b:
                raise CDPError("DevTools closed the connection")
            buf += b
        return buf

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(hdr + mask + body)

    def _recv_message(self):
        data = b""
        while True:
            b0, b1 = self._recv_exact(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._recv_exact(8))[0]
            mask = self._recv_exact(4) if b1 & 0x80 else None
            p = self._recv_exact(n)
            if mask:
                p = bytes(b ^ mask[i % 4] for i, b in enumerate(p))
            if op == 0x9:  # ping
                self._send(0xA, p)
                continue
            if op == 0x8:
                raise CDPError("DevTools closed the websocket")
            if op in (0x0, 0x1, 0x2):
                data += p
                if b0 & 0x80:
                    return json.loads(data.decode("utf-8"))

    def call(self, method, timeout=30, **params):
        self.next_id += 1
        mid = self.next_id
        self._send(0x1, json.dumps({"id": mid, "method": method, "params": params}).encode())
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError("DevTools: no answer to %s within %ss" % (method, timeout))
            self.sock.settimeout(left)
            try:
                m = self._recv_message()
            except socket.timeout:
                raise CDPError("DevTools: no answer to %s within %ss" % (method, timeout))
            if m.get("id") == mid:
                if "error" in m:
                    raise CDPError("DevTools: %s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.on_event(m)

    def on_event(self, m):
        self.events.append(m)
        if m["method"] == "Page.javascriptDialogOpening":  # an alert() ran: never block on it
            self._send(0x1, json.dumps({"id": 0, "method": "Page.handleJavaScriptDialog",
                                        "params": {"accept": True}}).encode())

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def chromium_path():
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """Headless Chromium with one page, its own profile in tmp, stopped by PID (its process
    group: the renderer and helper processes it forks) in close()."""

    def __init__(self, tmp, size=DESKTOP):
        self.dir = os.path.join(tmp, "chromium")
        os.makedirs(self.dir, exist_ok=True)
        profile = os.path.join(self.dir, "profile")
        self.log_path = os.path.join(self.dir, "chromium.log")
        cmd = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
               "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
               "--disable-backgrounding-occluded-windows",
               "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
               "--user-data-dir=" + profile, "--window-size=%d,%d" % size, "about:blank"]
        with open(self.log_path, "wb") as lf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=rt._pdeathsig)
        self.dt = None
        port_file = os.path.join(profile, "DevToolsActivePort")

        def port():
            if self.proc.poll() is not None:
                return None
            try:
                with open(port_file) as f:
                    line = f.readline().strip()
                return int(line) if line else None
            except (OSError, ValueError):
                return None
        p = rt.wait_until(port, 60, 0.1)
        if not p:
            self.close()
            raise rt.Failure("chromium did not open its DevTools port within 60 s:\n%s"
                             % rt.tail(self.log_path))
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % p, timeout=10) as r:
            targets = json.loads(r.read().decode())
        page = next((x for x in targets if x.get("type") == "page"), None)
        if not page:
            self.close()
            raise rt.Failure("chromium has no page target: %r" % targets)
        self.dt = DevTools(page["webSocketDebuggerUrl"])
        for dom in ("Page.enable", "Runtime.enable", "Network.enable"):
            self.dt.call(dom)
        self.size = size

    def navigate(self, url, timeout=30):
        self.dt.events = []
        r = self.dt.call("Page.navigate", url=url)
        if r.get("errorText"):
            raise rt.Failure("chromium cannot open %s: %s" % (url, r["errorText"]))
        if not rt.wait_until(lambda: self._pump() or self.seen("Page.loadEventFired"), timeout):
            raise rt.Failure("%s: no load event within %ss" % (url, timeout))

    def _pump(self):
        # events arrive with answers: a cheap call collects what is queued
        self.dt.call("Runtime.evaluate", expression="0")
        return False

    def seen(self, method):
        return [e for e in self.dt.events if e.get("method") == method]

    def eval(self, expr, timeout=30):
        r = self.dt.call("Runtime.evaluate", timeout=timeout, expression=expr,
                         returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise rt.Failure("page script failed: %s" % json.dumps(r["exceptionDetails"])[:800])
        return r.get("result", {}).get("value")

    def viewport(self, width, height, mobile=False, scale=1):
        self.dt.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                     deviceScaleFactor=scale, mobile=mobile)

    def screenshot(self, path, width, mobile=False, scale=1):
        """The whole page at this width (the viewport grown to the page's height), as PNG."""
        self.viewport(width, 800, mobile, scale)
        h = int(self.eval("Math.ceil(document.documentElement.scrollHeight)") or 800)
        h = max(200, min(h, 6000))
        self.viewport(width, h, mobile, scale)
        data = self.dt.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        self.viewport(width, 800, mobile, scale)
        return path

    def close(self):
        if self.dt:
            try:
                self.dt.call("Browser.close", timeout=5)
            except Exception:
                pass
            self.dt.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        try:  # the renderers and helpers: the group this browser leads (start_new_session)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ----------------------------------------------------------------------------------------------
# what the page shows

SNAPSHOT_JS = r"""(() => {
  const A = (e, k) => e ? e.getAttribute(k) : null, T = e => e ? e.textContent : null;
  const fields = r => Object.fromEntries([...r.querySelectorAll('[data-field]')]
                                         .map(e => [A(e, 'data-field'), T(e)]));
  const poly = e => e ? A(e, 'points').trim().split(/\s+/).map(p => p.split(',').map(Number)) : [];
  const s = document.getElementById('summary'), ban = document.getElementById('stale');
  return {
    summary: {healthy: A(s, 'data-healthy'), updated: A(s, 'data-updated'),
              stale: A(s, 'data-stale'), text: T(s)},
    banner: {shown: getComputedStyle(ban).display !== 'none', text: T(ban),
             since: A(ban, 'data-stale-since')},
    bodyStale: document.body.classList.contains('stale'),
    greyed: getComputedStyle(document.querySelector('main')).filter,
    title: document.title,
    cards: [...document.querySelectorAll('section[data-broker-card]')].map(c => ({
      name: A(c, 'data-broker-card'), state: A(c, 'data-broker-state'),
      head: T(c.querySelector('h3')), meta: T(c.querySelector('h3').nextElementSibling)})),
    conns: [...document.querySelectorAll('tr[data-broker]')].map(r => ({
      broker: A(r, 'data-broker'), conn: A(r, 'data-conn'), state: A(r, 'data-state'),
      up: A(r, 'data-up'), f: fields(r)})),
    spools: [...document.querySelectorAll('[data-spool]')].map(e => ({
      broker: A(e, 'data-spool'), f: fields(e), points: poly(e.querySelector('polyline')),
      peak: A(e.querySelector('svg'), 'data-peak')})),
    routes: [...document.querySelectorAll('tr[data-route]')].map(r => ({
      name: A(r, 'data-route'), f: fields(r),
      received: A(r.querySelector('[data-field=received]'), 'data-value'),
      forwarded: A(r.querySelector('[data-field=forwarded]'), 'data-value'),
      dropped: A(r.querySelector('[data-field=dropped]'), 'data-value'),
      drops: [...r.querySelectorAll('[data-drop]')].map(e => ({
        reason: A(e, 'data-drop'), value: A(e, 'data-value'),
        weight: Number(getComputedStyle(e).fontWeight)})),
      viewBox: A(r.querySelector('svg'), 'viewBox'), peak: A(r.querySelector('svg'), 'data-peak'),
      in: poly(r.querySelector('polyline[data-series=in]')),
      out: poly(r.querySelector('polyline[data-series=out]'))})),
    log: [...document.querySelectorAll('tr[data-level]')].map(r => ({
      level: A(r, 'data-level'), who: T(r.children[2]),
      msg: T(r.querySelector('[data-field=msg]')),
      repeated: T(r.querySelector('[data-field=repeated]'))})),
    foreign: [...document.querySelectorAll(
      'img,iframe,object,embed,b,i,a,form,input,video,audio,style:not(head>style),' +
      'link:not([rel=icon])')]
      .map(e => e.outerHTML.slice(0, 100)),
    scripts: document.scripts.length,
    pwned: window.__pwned === undefined ? null : String(window.__pwned),
  };
})()"""

# Every element's box and every text's box must end inside the viewport (a text can overflow
# the box of an element that was shrunk: its element then looks fine).
OVERFLOW_JS = r"""(() => {
  const W = document.documentElement.clientWidth, bad = [];
  const name = e => e.tagName.toLowerCase() +
    (typeof e.className === 'string' && e.className ? '.' + e.className : '');
  for (const e of document.body.querySelectorAll('*')) {
    const r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > W + 0.5)
      bad.push(name(e) + ' right=' + Math.round(r.right) + ' "' +
               (e.textContent || '').slice(0, 40) + '"');
  }
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    if (!n.textContent.trim()) continue;
    const g = document.createRange(); g.selectNodeContents(n);
    const r = g.getBoundingClientRect();
    if (r.width > 0 && r.right > W + 0.5)
      bad.push('text in ' + name(n.parentElement) + ' right=' + Math.round(r.right) + ' "' +
               n.textContent.slice(0, 40) + '"');
  }
  return {W: W, scrollWidth: document.documentElement.scrollWidth, n: bad.length,
          bad: bad.slice(0, 8)};
})()"""


def snapshot(b):
    return b.eval(SNAPSHOT_JS)


def wait_dom(b, pred, timeout, interval=0.1):
    """Polls the DOM snapshot until pred(snapshot) is true (bounded); returns the last one."""
    last = [None]

    def f():
        last[0] = snapshot(b)
        return pred(last[0])
    ok = rt.wait_until(f, timeout, interval)
    return ok, last[0]


def by(items, key, value):
    return next((x for x in items if x[key] == value), None)


def fmt_int(v):
    return format(int(round(v)), ",")


def chart_values(points, view_box, peak):
    """The numbers a polyline was drawn from (the page's chart(): y = H-1 - v/peak*(H-3))."""
    h = float(view_box.split()[3])
    return [(h - 1 - y) / (h - 3) * float(peak) for _, y in points]


def close_to(a, b, tol=0.06):
    return len(a) == len(b) and all(abs(x - y) <= tol * max(1.0, abs(y)) for x, y in zip(a, b))


def build_dir(hints):
    """The CMake build directory: the first directory with CMakeCache.txt above one of hints."""
    for h in hints:
        d = os.path.abspath(h)
        while d and d != "/":
            if os.path.isfile(os.path.join(d, "CMakeCache.txt")):
                return d
            d = os.path.dirname(d)
    return None


def keep_artifact(t, path, name, hints):
    d = build_dir(hints)
    if not d:
        t.note("screenshot %s (no build directory found to copy it to)" % path)
        return
    dst = os.path.join(d, name)
    shutil.copyfile(path, dst)
    t.note("screenshot %s -> %s" % (path, dst))


def check_page_file(t):
    t.section("the page file")
    with open(PAGE_SRC, "rb") as f:
        raw = f.read()
    page = raw.decode("utf-8")
    t.check(len(raw) < 30 * 1024, "relay/io/status.html is %d bytes (< 30 KiB)" % len(raw))
    script = status_mock.SCRIPT_RE.search(page)
    t.check(script is not None and len(status_mock.SCRIPT_RE.findall(page)) == 1,
            "one inline script")
    bad = [w for w in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                       "eval(", "new Function", "setTimeout(\"", "srcdoc")
           if w in script.group(1)]
    t.check(not bad, "the script never parses data as HTML or code", "found %s" % bad)
    ext = re.findall(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:|//)[^"' >]*|@import|url\(""",
                     page)
    t.check(not ext, "no external URL, @import or url() in the page", "found %s" % ext[:5])
    want, have = status_mock.csp_hashes(page)
    t.check(want == have, "the CSP's script hash is the script's (sha256-%s)" % want,
            "the page names sha256-%s: run status_mock.py --fix-csp" % have)


# ----------------------------------------------------------------------------------------------
# --mock: against status_mock.py


class MockServer:
    def __init__(self, tmp, down_after):
        self.log_path = os.path.join(tmp, "status_mock.log")
        self.errf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "status_mock.py"),
             "--port", "0", "--down-after", str(down_after), "-v"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errf,
            preexec_fn=rt._pdeathsig)
        r, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline().decode() if r else ""
        m = re.match(r"status_mock: (http://\S+)", line)
        if not m:
            self.stop()
            raise rt.Failure("status_mock.py did not start: %r\n%s"
                             % (line, rt.tail(self.log_path)))
        self.url = m.group(1)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except OSError:
                pass
            self.proc.kill()
            self.proc.wait(10)
        self.errf.close()


def check_against_fixture(t, snap, down_after, what):
    """The DOM snapshot shows exactly the fixture answer whose relay.now it carries."""
    n = status_mock.n_of(snap["summary"]["updated"])
    fx = status_mock.fixture(n, down_after)
    t.note("%s: the page shows answer n=%d (relay.now %s)" % (what, n, snap["summary"]["updated"]))
    healthy = "true" if fx["relay"]["healthy"] else "false"
    t.check(snap["summary"]["healthy"] == healthy and snap["summary"]["stale"] == "false",
            "%s: #summary data-healthy=%s, data-stale=false" % (what, healthy),
            "got %s" % snap["summary"])
    t.check([c["name"] for c in snap["cards"]] == [b["name"] for b in fx["brokers"]],
            "%s: one card per broker, in order: %s" % (what, [b["name"] for b in fx["brokers"]]),
            "got %s" % [c["name"] for c in snap["cards"]])
    for b in fx["brokers"]:
        card = by(snap["cards"], "name", b["name"])
        up, total = b["connections_up"], b["connections"]
        st = "up" if up == total else "degraded" if up else "down"
        t.check(card and card["state"] == st and st in card["head"],
                "%s: broker %r shown %s (%d of %d up)" % (what, b["name"], st, up, total),
                "got %s" % card)
        t.check("MQTT " + b["version"] in card["meta"] and
                ("no TLS" not in card["meta"]) == b["tls"] and
                all(u in card["meta"] for u in b["urls"]),
                "%s: broker %r: version %s, TLS %s, URLs" % (what, b["name"], b["version"],
                                                             b["tls"]), card["meta"])
        for c in b["conns"]:
            row = next((r for r in snap["conns"] if r["broker"] == b["name"]
                        and r["conn"] == str(c["index"])), None)
            t.check(row is not None, "%s: a row for %r#%d" % (what, b["name"], c["index"]))
            f = row["f"]
            up = c["state"] in ("up", "subscribing")  # as the relay counts connections_up
            ok = (row["state"] == c["state"] and row["up"] == ("true" if up else "false")
                  and c["state"] in f["state"] and f["url"] == c["url"]
                  and f["reconnects"] == fmt_int(c["reconnects"])
                  and f["window"].startswith("%d / %d" % (c["inflight"], c["inflight_limit"])))
            err = c["last_error"]
            ok = ok and ((err is None and f["last_error"] == "\u2014") or
                         (err is not None and f["last_error"].endswith(err["text"])
                          and err["at"][11:19] + " UTC" in f["last_error"]))
            t.check(ok, "%s: %r#%d: %s, URL, %d reconnects, %d/%d in flight, last error %s"
                    % (what, b["name"], c["index"], c["state"], c["reconnects"], c["inflight"],
                       c["inflight_limit"], "none" if err is None else repr(err["text"][:30])),
                    "got %s" % row)
        if b["spool"]:
            sp = by(snap["spools"], "broker", b["name"])
            hist = b["spool"]["history"]["messages"]
            t.check(sp and sp["f"]["messages"] == fmt_int(b["spool"]["messages"])
                    and close_to(chart_values(sp["points"], "0 0 120 30", sp["peak"]), hist),
                    "%s: spool of %r: %d messages, its chart draws the 60 values of its history"
                    % (what, b["name"], b["spool"]["messages"]), "got %s" % sp)
    t.check([r["name"] for r in snap["routes"]] == [r["name"] for r in fx["routes"]],
            "%s: one row per route" % what)
    for r in fx["routes"]:
        row = by(snap["routes"], "name", r["name"])
        f = row["f"]
        t.check(f["received"] == fmt_int(r["received"]) and row["received"] == str(r["received"])
                and f["forwarded"] == fmt_int(r["forwarded"])
                and row["forwarded"] == str(r["forwarded"]),
                "%s: route %r: received %d, forwarded %d" % (what, r["name"], r["received"],
                                                            r["forwarded"]),
                "got %s / %s" % (f["received"], f["forwarded"]))
        t.check(f["path"] == "%s \u2192 %s" % (r["from"], r["to"]) and r["filter"] in f["mapping"]
                and r["topic"] in f["mapping"] and f["qos"] == str(r["qos"]),
                "%s: route %r: from -> to, filter -> template, QoS as text" % (what, r["name"]),
                "got %s" % f)
        nz = {k: v for k, v in r["dropped"].items() if v}
        shown = {d["reason"]: d for d in row["drops"]}
        if nz:
            ok = (row["dropped"] == str(sum(nz.values()))
                  and all(shown[k]["value"] == str(v) and shown[k]["weight"] >= 700
                          for k, v in nz.items())
                  and all(d["weight"] < 600 for k, d in shown.items() if k not in nz)
                  and set(shown) == set(r["dropped"]))
        else:
            ok = row["dropped"] == "0" and f["dropped"] == "none"
        t.check(ok, "%s: route %r: drops by reason %s, only non-zero ones emphasised"
                % (what, r["name"], nz or "none"), "got %s" % row["drops"])
        peak = max([1] + r["rate"]["in"] + r["rate"]["out"])
        t.check(len(row["in"]) == 60 and len(row["out"]) == 60 and float(row["peak"]) == peak
                and close_to(chart_values(row["in"], row["viewBox"], peak), r["rate"]["in"])
                and close_to(chart_values(row["out"], row["viewBox"], peak), r["rate"]["out"]),
                "%s: route %r: the chart draws rate.in and rate.out (60 points each, peak %d)"
                % (what, r["name"], peak))
    want_log = list(reversed(fx["log"]))
    t.check([(x["level"], x["who"], x["msg"]) for x in snap["log"]]
            == [(x["level"], x["who"], x["msg"]) for x in want_log],
            "%s: the %d log lines, newest first, text for text" % (what, len(want_log)),
            "first shown %s, expected %s" % (snap["log"][:1], want_log[:1]))
    t.check([bool(x["repeated"]) and str(w["repeated"]) in x["repeated"]
             for x, w in zip(snap["log"], want_log)]
            == [w["repeated"] > 0 for w in want_log],
            "%s: lines the rate limiter repeated say how many (%d of them)"
            % (what, sum(1 for w in want_log if w["repeated"])))
    return n, fx


def check_hostile(t, b, snap, what):
    t.check(not snap["foreign"] and snap["scripts"] == 1,
            "%s: no element from the data (img, b, i, a, iframe, script...)" % what,
            "found %s, %d scripts" % (snap["foreign"], snap["scripts"]))
    t.check(snap["pwned"] is None and not b.seen("Page.javascriptDialogOpening"),
            "%s: no hostile string ran (window.__pwned unset, no dialog)" % what,
            "window.__pwned=%s" % snap["pwned"])
    texts = [x["msg"] for x in snap["log"]]
    for s in status_mock.HOSTILE_LOG[:3]:
        t.check(s in texts, "%s: shown as text: %r" % (what, s[:50]))
    t.check(any(c["name"] == status_mock.LAB for c in snap["cards"])
            and any(r["broker"] == status_mock.LAB for r in snap["conns"]),
            "%s: the broker named %r keeps its name, as text and in data-broker"
            % (what, status_mock.LAB))


def run_mock(t, tmp, hints):
    check_page_file(t)
    down_after = 6
    mock = MockServer(tmp, down_after)
    browser = None
    shots = []
    try:
        browser = Browser(tmp)
        prefix = "/relay-x/"
        url = mock.url.rstrip("/") + prefix
        t.section("the page at %s (behind a path prefix)" % url)
        browser.navigate(url)
        ok, snap = wait_dom(browser, lambda s: s["summary"]["updated"], 15)
        t.check(ok, "#summary gets data-updated (the page polled api/v1/status)",
                "summary %s, banner %s" % (snap and snap["summary"], snap and snap["banner"]))
        reqs = [e["params"]["request"]["url"] for e in browser.seen("Network.requestWillBeSent")]
        base = mock.url.rstrip("/") + prefix
        t.check(reqs and all(u.startswith(base) for u in reqs),
                "every request the page makes stays under %s (%d requests)" % (base, len(reqs)),
                "requests: %s" % sorted(set(reqs)))
        t.check(base + "api/v1/status" in reqs, "the page polls %sapi/v1/status" % base)

        t.section("the page shows the fixture")
        n1, fx1 = check_against_fixture(t, snap, down_after, "first answer")
        t.check(n1 < down_after, "that answer is from before the links go down (n=%d)" % n1)
        check_hostile(t, browser, snap, "first answer")
        t.check(snap["title"].startswith("site-a"), "the title names the relay: %r"
                % snap["title"])

        t.section("counters grow, links go down")
        ok, snap = wait_dom(browser, lambda s: s["summary"]["updated"] and status_mock.n_of(
            s["summary"]["updated"]) >= down_after + 1, 30)
        t.check(ok, "the page moves on to answer %d and later" % (down_after + 1))
        n2, fx2 = check_against_fixture(t, snap, down_after, "later answer")
        r1 = by(fx1["routes"], "name", "up")["received"]
        r2 = by(fx2["routes"], "name", "up")["received"]
        t.check(r2 > r1 and by(snap["routes"], "name", "up")["received"] == str(r2),
                "route up: received grew from %d to %d on the page" % (r1, r2))
        e1 = by(snap["conns"], "broker", "edge") and next(
            r for r in snap["conns"] if r["broker"] == "edge" and r["conn"] == "1")
        t.check(e1["state"] == "waiting" and e1["up"] == "false" and "waiting" in e1["f"]["state"]
                and status_mock.HOSTILE_ERROR in e1["f"]["last_error"],
                "edge#1 shown down: state 'waiting' as text, data-up=false, its error as text")
        t.check(by(snap["cards"], "name", status_mock.LAB)["state"] == "down"
                and by(snap["cards"], "name", "edge")["state"] == "degraded",
                "broker %r shown down, edge degraded" % status_mock.LAB)
        t.check(snap["summary"]["healthy"] == "false" and "unhealthy" in snap["summary"]["text"],
                "#summary data-healthy=false, says unhealthy: %r" % snap["summary"]["text"])
        check_hostile(t, browser, snap, "later answer")
        shots.append(browser.screenshot(os.path.join(tmp, "status-mock-desktop.png"),
                                        DESKTOP[0]))

        t.section("a phone: %d px wide" % PHONE)
        browser.viewport(PHONE, 800, mobile=True, scale=2)
        before = snap["summary"]["updated"]
        wait_dom(browser, lambda s: s["summary"]["updated"] != before, 10)
        o = browser.eval(OVERFLOW_JS)
        t.check(o["W"] == PHONE and o["n"] == 0 and o["scrollWidth"] <= PHONE,
                "at %d px nothing reaches past the right edge (scrollWidth %d)"
                % (PHONE, o["scrollWidth"]), "layout width %d; %d elements overflow: %s"
                % (o["W"], o["n"], o["bad"]))
        shots.append(browser.screenshot(os.path.join(tmp, "status-mock-phone.png"), PHONE,
                                        mobile=True, scale=2))
        browser.viewport(DESKTOP[0], DESKTOP[1])

        t.section("the mock stops answering (SIGSTOP), answers again, is killed")
        rows = len(snap["conns"])
        mock.signal(signal.SIGSTOP)
        ok, snap = wait_dom(browser, lambda s: s["summary"]["stale"] == "true", 10)
        t.check(ok and snap["banner"]["shown"]
                and "Relay not answering since" in snap["banner"]["text"]
                and snap["banner"]["since"],
                "stale within 10 s: %r" % (snap["banner"]["text"][:110] if snap else None),
                "summary %s, banner %s" % (snap["summary"], snap["banner"]))
        t.check(snap["bodyStale"] and "grayscale" in snap["greyed"],
                "the data is greyed out (%s)" % snap["greyed"])
        t.check(len(snap["conns"]) == rows and snap["summary"]["healthy"] == "false"
                and "not answering" in snap["summary"]["text"],
                "the last data stays on the page; #summary says not answering, data-healthy=false")
        shots.append(browser.screenshot(os.path.join(tmp, "status-mock-stale.png"), DESKTOP[0]))
        mock.signal(signal.SIGCONT)
        stale_at = snap["summary"]["updated"]
        ok, snap = wait_dom(browser, lambda s: s["summary"]["stale"] == "false"
                            and s["summary"]["updated"] != stale_at, 15)
        t.check(ok and not snap["banner"]["shown"] and not snap["bodyStale"],
                "SIGCONT: fresh again, banner gone")
        mock.signal(signal.SIGKILL)
        mock.proc.wait(10)
        ok, snap = wait_dom(browser, lambda s: s["summary"]["stale"] == "true", 10)
        t.check(ok and "Relay not answering since" in snap["banner"]["text"],
                "mock killed (connection refused): stale again: %r"
                % (snap["banner"]["text"][:100] if snap else None))
        check_hostile(t, browser, snap, "at the end")
        for s in shots:
            keep_artifact(t, s, os.path.basename(s).replace("status-mock", "status-page-mock"),
                          hints)
    finally:
        if browser:
            browser.close()
        mock.stop()


def mock_main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mock", action="store_true")
    ap.add_argument("--relay", help="ignored with --mock (it locates the build directory)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="relay-status-mock-")
    t = rt.Test(None, tmp, args.verbose)
    status = 1
    print("# %s --mock (temp %s)" % (os.path.basename(sys.argv[0]), tmp), flush=True)
    try:
        run_mock(t, tmp, [os.getcwd()] + ([os.path.dirname(args.relay)] if args.relay else []))
        print("\nPASS: %d checks" % t.checks, flush=True)
        status = 0
    except rt.Failure as e:
        print("\nFAIL%s: %s" % (" [%s]" % t.section_name if t.section_name else "", e),
              flush=True)
        print("\n---- status_mock log (last lines)\n" + rt.tail(os.path.join(tmp,
                                                                          "status_mock.log")))
    except Exception:
        print("\nERROR in the test itself:", flush=True)
        traceback.print_exc(file=sys.stdout)
    finally:
        if args.keep or os.environ.get("RELAYTEST_KEEP"):
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(status)


# ----------------------------------------------------------------------------------------------
# default: against the relay


PASSWORD = "Pa55-w0rd-that-must-not-show"


def run_real(t):
    a = t.broker("A", log_all=False)
    b = t.broker("B", log_all=False)
    mport = rt.free_port()
    rec = {"min": 100, "max": 1000}
    spool_dir = os.path.join(t.tmp, "spool-B")
    routes = [{"name": "ab", "from": "A", "to": "B", "filter": "s/a/#", "qos": 1},
              {"name": "ba", "from": "B", "to": "A", "filter": "s/b/#", "qos": 1}]
    relay = t.relay(relay={"id": "site-a", "metrics": "127.0.0.1:%d" % mport},
                    brokers=[{"name": "A", "url": a.url, "reconnect": rec, "username": "relay",
                              "password": PASSWORD},
                             {"name": "B", "url": b.url, "reconnect": rec,
                              "spool": {"dir": spool_dir, "max_size": 64 * 1024 * 1024}}],
                    routes=routes)
    relay.wait_ready({"A": a, "B": b})

    t.section("GET / on the metrics listener")
    status, ctype, body = rt.http_get(mport, "/")
    if status == 404:
        print("SKIP: GET / on relay.metrics answers 404: the relay does not serve the status page "
              "yet (issue 17's C side); run test_status_page.py --mock for the page alone")
        sys.exit(rt.SKIP)
    t.check(status == 200 and ctype.startswith("text/html") and 'id="summary"' in body,
            "GET / answers the status page (%d, %s)" % (status, ctype))
    with open(PAGE_SRC, encoding="utf-8") as f:
        t.note("the page served %s relay/io/status.html" % (
            "is byte for byte" if f.read() == body else "DIFFERS from"))
    st, ctype, api = rt.http_get(mport, "/api/v1/status")
    try:
        version = json.loads(api).get("api")
    except ValueError as e:
        version = "not JSON (%s)" % e
    t.check(st == 200 and ctype.startswith("application/json") and version == 1,
            "GET /api/v1/status answers JSON, api 1 (%d, %s)" % (st, ctype),
            "api: %s; body starts %r" % (version, api[:120]))

    browser = Browser(t.tmp)
    try:
        run_real_page(t, a, b, mport, routes, browser)
    finally:
        browser.close()


def run_real_page(t, a, b, mport, routes, browser):
    url = "http://127.0.0.1:%d/" % mport
    browser.navigate(url)

    t.section("traffic both ways (the page open)")
    sub_b = t.client(b).subscribe("s/a/#", 1)
    sub_a = t.client(a).subscribe("s/b/#", 1)
    pub_a, pub_b = t.client(a), t.client(b)
    n_ab, n_ba = 40, 25
    # spread over a few seconds, so that the rate charts of the screenshot have a shape
    for k in range(8):
        for i in range(k * 5, k * 5 + 5):
            pub_a.publish("s/a/%d" % (i % 5), b"ab-%d" % i, 1)
        for i in range(k * n_ba // 8, (k + 1) * n_ba // 8):
            pub_b.publish("s/b/%d" % (i % 3), b"ba-%d" % i, 1)
        time.sleep(0.4)
    pub_a.wait_published()
    pub_b.wait_published()
    ok = sub_b.wait_for(lambda m: len(m) >= n_ab, 30) and sub_a.wait_for(lambda m: len(m) >= n_ba,
                                                                         30)
    t.check(ok, "%d messages arrive on B, %d on A (got %d, %d)" % (n_ab, n_ba, sub_b.count(),
                                                                   sub_a.count()))
    want = {"ab": (n_ab, n_ab), "ba": (n_ba, n_ba)}

    def metrics_settled():
        ms = rt.get_metrics(mport)
        return all(rt.metric(ms, "mqtt_relay_messages_forwarded_total", route=r) == w[1]
                   for r, w in want.items()) and ms
    ms = rt.wait_until(metrics_settled, 10, 0.1)
    t.check(ms, "/metrics counts %s forwarded" % {r: w[1] for r, w in want.items()})

    t.section("the page at %s" % url)

    def shows_traffic(s):
        rows = {r["name"]: r for r in s["routes"]}
        return (s["summary"]["stale"] == "false"
                and all(r in rows and (rows[r]["received"], rows[r]["forwarded"])
                        == (str(w[0]), str(w[1])) for r, w in want.items())
                and all(any(c["broker"] == x and c["state"] == "up" for c in s["conns"])
                        for x in ("A", "B")))
    ok, snap = wait_dom(browser, shows_traffic, 15)
    for r, (rec_n, fwd_n) in want.items():
        row = by(snap["routes"], "name", r) if snap else None
        t.check(row and row["f"]["received"] == fmt_int(rec_n) and row["received"] == str(rec_n)
                and row["f"]["forwarded"] == fmt_int(fwd_n)
                and row["forwarded"] == str(fwd_n) and row["dropped"] == "0",
                "route %s: the page shows received %d, forwarded %d, no drops"
                % (r, rec_n, fwd_n), "got %s" % row)
        t.check(row["f"]["path"] == {"ab": "A \u2192 B", "ba": "B \u2192 A"}[r]
                and row["f"]["mapping"].startswith(routes[0 if r == "ab" else 1]["filter"]),
                "route %s: %s, filter %s" % (r, row["f"]["path"], row["f"]["mapping"]))
    for x in ("A", "B"):
        row = next((c for c in snap["conns"] if c["broker"] == x and c["conn"] == "0"), None)
        card = by(snap["cards"], "name", x)
        t.check(row and row["state"] == "up" and row["up"] == "true" and card
                and card["state"] == "up" and row["f"]["url"] == {"A": a.url, "B": b.url}[x],
                "broker %s#0 shown up, URL %s" % (x, {"A": a.url, "B": b.url}[x]),
                "got %s / %s" % (row, card))
    t.check(snap["summary"]["healthy"] == "true", "#summary data-healthy=true")
    dom_text = browser.eval("document.documentElement.outerHTML")
    st, _, api = rt.http_get(mport, "/api/v1/status")
    t.check(PASSWORD not in dom_text and PASSWORD not in api,
            "broker A's password appears neither on the page nor in the API")
    shot = browser.screenshot(os.path.join(t.tmp, "status-page-up.png"), DESKTOP[0])
    t.note("screenshot %s" % shot)

    t.section("broker B SIGKILLed")
    t0 = time.monotonic()
    b.kill()

    def b_down(s):
        row = next((c for c in s["conns"] if c["broker"] == "B" and c["conn"] == "0"), None)
        return row and row["up"] == "false" and row["state"] != "up"
    ok, snap = wait_dom(browser, b_down, 10, 0.05)
    dt = time.monotonic() - t0
    row = next((c for c in snap["conns"] if c["broker"] == "B" and c["conn"] == "0"), None)
    t.check(ok and dt <= 2.0, "the page shows B#0 down (%r) %.2f s after the kill (<= 2 s)"
            % (row and row["state"], dt), "last seen %s" % row)
    t.check(by(snap["cards"], "name", "B")["state"] == "down"
            and by(snap["cards"], "name", "A")["state"] == "up"
            and snap["summary"]["healthy"] == "false",
            "broker B's card says down, A's up, #summary data-healthy=false")

    t.section("messages for B are spooled")
    k = 15
    for i in range(k):
        pub_a.publish("s/a/spool", b"sp-%d" % i, 1)
    pub_a.wait_published()
    ms = rt.wait_until(lambda: (lambda m: rt.metric(m, "mqtt_relay_spool_messages",
                                                    broker="B") == k and m)(
        rt.get_metrics(mport)), 10, 0.1)
    t.check(ms, "/metrics: mqtt_relay_spool_messages{broker=B} = %d" % k)
    ok, snap = wait_dom(browser, lambda s: any(
        sp["broker"] == "B" and sp["f"].get("messages") == fmt_int(k) for sp in s["spools"]),
        10)
    t.check(ok, "the page's spool of B shows %d messages" % k,
            "spools shown: %s" % (snap and snap["spools"]))
    shot = browser.screenshot(os.path.join(t.tmp, "status-page-down.png"), DESKTOP[0])
    browser.screenshot(os.path.join(t.tmp, "status-page-phone.png"), PHONE, mobile=True,
                       scale=2)
    keep_artifact(t, shot, "status-page.png", [os.getcwd(), os.path.dirname(t.relay_bin)])
    keep_artifact(t, os.path.join(t.tmp, "status-page-phone.png"), "status-page-phone.png",
                  [os.getcwd(), os.path.dirname(t.relay_bin)])


def main():
    if not chromium_path():
        print("SKIP: chromium is not installed (apt-get install chromium)")
        sys.exit(rt.SKIP)
    if "--mock" in sys.argv[1:]:
        mock_main()
    rt.main(run_real, __doc__)


if __name__ == "__main__":
    main()
