"""The relay.metrics listener under abuse (issue 17, item 6): it serves operators and must shrug
off anyone else.

Brokers A and B (Mosquitto), and C, started only while the attack runs; the relay with a
listener on 127.0.0.1, run with 128 file descriptors (prlimit), routes ab (A -> B, s/#) and ac
(A -> C, c/#). A publisher sends QoS 1 messages on s/ for the whole test. The attack (what was
tried by hand on main before: it left forwarding unharmed but wrote 375 "ERROR lws: Ran out of
header data space" lines):
  1. 20 request lines of 60 KB, 50 connections of random bytes, and the odd ones: a CONNECT
     tunnel, a WebSocket upgrade, an HTTP/2 preface, a chunked POST, a POST announcing 100 MB,
     a GET with a body, a client sending its headers one byte a second;
  2. 1,500 connections that send "GET / HTTP/1.1" and part of a header, and then nothing;
  3. while they hang on, broker C starts: the relay must still have a descriptor to reach it.
Asserted: every connection of 1 and 2 is closed by the relay within 15 s (idle and slow
clients are cut, the rest refused at once: never more than 32 at a time); the relay connects
to C and messages on c/ arrive there; every message on s/ arrives on B, none lost; GET /,
/metrics and /api/v1/status answer afterwards; the relay's log stays short: at most 40 lines
for the whole run and any one text at most 8 times (rate-limited; lws' lines included).
"""
import collections
import random
import re
import resource
import select
import selectors
import shutil
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import statustest as st  # noqa: E402

HELD = 1500
HTTP_MAX_CLIENTS = 32  # io/http.c


class Publisher(threading.Thread):
    """QoS 1 messages on s/<n>, about 50 a second, until stopped."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client = client
        self.sent = []
        self.halt = threading.Event()

    def run(self):
        n = 0
        while not self.halt.is_set():
            p = b"m-%d" % n
            self.client.publish("s/%d" % (n % 7), p, 1)
            self.sent.append(p)
            n += 1
            time.sleep(0.02)


def connect(port, timeout=5):
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return None


def until_closed(socks, timeout):
    """Reads every socket until the relay closes it (EOF or reset); returns how many were still
    open after timeout seconds, and the answers' first lines by count."""
    sel = selectors.DefaultSelector()
    heads = collections.Counter()
    buf = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        buf[s] = b""
    deadline = time.monotonic() + timeout
    left = len(socks)
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                buf[s] += data
                continue
            sel.unregister(s)
            heads[buf[s].split(b"\r\n", 1)[0].decode("latin-1")[:40] or "(closed)"] += 1
            s.close()
            left -= 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return left, heads


def odd_requests(port):
    """(name, bytes to send) of the hostile requests of step 1."""
    rnd = random.Random(17)
    out = [("60 KB request line %d" % i, b"GET /" + b"a" * 60000 + b" HTTP/1.1\r\n\r\n")
           for i in range(20)]
    out += [("random bytes %d" % i, bytes(rnd.getrandbits(8) for _ in range(4096)))
            for i in range(50)]
    out += [
        ("CONNECT tunnel", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n"),
        ("WebSocket upgrade", b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
         b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         b"Sec-WebSocket-Version: 13\r\n\r\n"),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 64),
        ("h2c upgrade", b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
         b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"),
        ("chunked POST", b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         b"\r\n5\r\nhello\r\n"),
        ("POST of 100 MB", b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000"
         b"\r\n\r\n" + b"x" * 5000),
        ("GET with a body", b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"),
        ("a thousand headers", b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i
                                                              for i in range(1000)) + b"\r\n"),
    ]
    return out


def run(t):
    if not shutil.which("prlimit"):
        print("SKIP: prlimit (util-linux) is not installed")
        sys.exit(rt.SKIP)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < HELD + 200:
        print("SKIP: this process may open %d files, the test needs %d" % (hard, HELD + 200))
        sys.exit(rt.SKIP)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    a = t.broker("A", log_all=False)
    b = t.broker("B", log_all=False)
    c = rt.Broker(t, "C", log_all=False)  # started during the attack
    port = rt.free_port()
    rec = {"min": 100, "max": 500}
    relay = t.relay(relay={"id": "abuse", "metrics": "127.0.0.1:%d" % port},
                    brokers=[{"name": "A", "url": a.url, "reconnect": rec},
                             {"name": "B", "url": b.url, "reconnect": rec},
                             {"name": "C", "url": c.url, "reconnect": rec}],
                    routes=[{"name": "ab", "from": "A", "to": "B", "filter": "s/#", "qos": 1},
                            {"name": "ac", "from": "A", "to": "C", "filter": "c/#", "qos": 1}],
                    start=False)
    relay.wrapper = ["prlimit", "--nofile=128:128", "--"]
    relay.start()
    rt.wait_until(lambda: rt.port_accepts(port), 10)
    t.check(rt.wait_until(lambda: rt.metric(rt.get_metrics(port), "mqtt_relay_connection_up",
                                            broker="B") == 1, 20), "the relay is up on A and B")
    sub = t.client(b).subscribe("s/#", 1)
    pub = Publisher(t.client(a))
    pub.start()
    lines_before = len(relay.log_lines())

    t.section("1. long request lines, random bytes, odd requests")
    socks, names = [], []
    for name, data in odd_requests(port):
        s = connect(port)
        if s is None:
            continue
        try:
            s.sendall(data)
        except OSError:
            pass  # the relay may close while we write (60 KB of headers): that is the point
        socks.append(s)
        names.append(name)
    slow = connect(port)
    slow.sendall(b"GET /metrics HTTP/1.1\r\n")
    t0 = time.monotonic()
    for ch in b"Host: slowloris\r\n\r\n":  # a byte a second: cut long before it is done
        if select.select([slow], [], [], 1)[0]:
            break  # the relay answered or closed
        try:
            slow.send(bytes([ch]))
        except OSError:
            break
    t.note("the slow client was cut after %.1f s" % (time.monotonic() - t0))
    left, heads = until_closed(socks + [slow], 15)
    t.check(left == 0, "the relay closed all %d connections" % (len(socks) + 1),
            "%d still open after 15 s" % left)
    t.note("what they got: %s" % dict(heads))
    t.check(not any(h.startswith("HTTP/1.1 200") for h in heads if h),
            "none of them got a 200", "%s" % dict(heads))
    relay.check_alive()

    t.section("2. %d connections with unfinished headers" % HELD)
    t0 = time.monotonic()
    held, refused_at_connect = [], 0
    for i in range(HELD):
        s = connect(port, timeout=2)
        if s is None:
            refused_at_connect += 1
            continue
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Unfinished-%d: " % i)
        except OSError:
            pass
        held.append(s)
    t.note("%d connected (%d not accepted) in %.1f s" % (len(held), refused_at_connect,
                                                          time.monotonic() - t0))

    t.section("3. broker C starts while they hang on")
    c.start()
    left, heads = until_closed(held, 15)
    t.check(left == 0, "every one of them was closed by the relay within 15 s (at most %d "
            "held for a few seconds, the rest refused at once)" % HTTP_MAX_CLIENTS,
            "%d still open" % left)
    t.check(rt.wait_until(lambda: rt.metric(rt.get_metrics(port), "mqtt_relay_connection_up",
                                            broker="C") == 1, 20),
            "the relay connected to C (a descriptor was left for it)")
    sub_c = t.client(c).subscribe("c/#", 1)
    pub_c = t.client(a)
    for i in range(10):
        pub_c.publish("c/%d" % i, b"c-%d" % i, 1)
    t.check(sub_c.wait_for(lambda m: len(m) >= 10, 20), "10 messages A -> C arrive",
            "got %d" % sub_c.count())

    t.section("forwarding unharmed, the listener still answers, the log short")
    pub.halt.set()
    pub.join(10)
    pub.client.wait_published()
    want = set(pub.sent)
    t.check(sub.wait_for(lambda m: want <= {x.payload for x in m}, 30),
            "all %d messages A -> B published during the attack arrived" % len(want),
            "missing %d" % len(want - {x.payload for x in sub.received()}))
    for path, ctype in (("/", "text/html"), ("/metrics", "text/plain"),
                        ("/api/v1/status", "application/json")):
        code, hdr, body = st.request(port, "GET", path)
        t.check(code == 200 and hdr.get("content-type", "").startswith(ctype) and body,
                "GET %s answers 200 (%d bytes)" % (path, len(body)))
    # the subscriber may see the last message before the relay has B's PUBACK for it
    s = rt.wait_until(lambda: (lambda x: x if x["routes"][0]["forwarded"] >= len(want)
                               else None)(st.status(port)), 10, 0.1)
    t.check(s and s["relay"]["healthy"],
            "the API counts them forwarded on ab (%s), relay healthy"
            % (s and s["routes"][0]["forwarded"]))
    lines = relay.log_lines()[lines_before:]
    texts = collections.Counter(re.sub(r"^\S+ \S+\s+", "", re.sub(r"\d+", "N", l))
                                for l in lines)
    lws = [l for l in lines if " lws: " in l]
    print("   . the relay's log during the attack (%d lines):" % len(lines))
    for l in lines:
        print("     | " + l[:160])
    t.check(len(lines) <= 40 and max(texts.values() or [0]) <= 8 and len(lws) <= 8,
            "%d lines in all (at most 40), no text more than %d times (at most 8), %d from lws"
            % (len(lines), max(texts.values() or [0]), len(lws)),
            "most repeated: %s" % texts.most_common(3))
    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
