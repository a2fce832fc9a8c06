"""WebSocket links (issue 4, SPEC "Transports"): ws:// and wss:// to Mosquitto WebSocket listeners.

Mosquitto "web" has a plain listener (for the test's clients), a ws listener and a wss listener
(certificates from certs/make-certs.sh); Mosquitto "tls" has a TLS listener; "plain" is an
ordinary broker. Three of the relay's WebSocket links go through a tap (a small proxy in this
file) that records the HTTP upgrade request (path, Sec-WebSocket-Protocol) and, on the way from
Mosquitto to the relay, re-frames the MQTT byte stream so that the relay must cope with both
framings the MQTT spec allows (section 6: a WebSocket frame may hold part of a packet, or several):

  ws    ws://TAP (no path: /mqtt), MQTT 5, tap "split": frames of 1, 2, 3, 5, 700, 4096 bytes in
        turn, so fixed headers, lengths and payloads are cut everywhere; a ~10 KiB payload
        crosses both ways
  wsp   ws://TAP/custom/ws/path, MQTT 3.1.1, tap "pack": what arrives until 30 ms pass quietly
        with at least two whole packets waiting (or 200 ms with one) goes out as one frame, so
        a burst of small messages arrives packed; it is also the 3.1.1-over-
        WebSocket half of the mixed pair with "tls" (MQTT 5 over TLS), both ways
  ws31  ws://TAP, MQTT 3.1: subprotocol "mqttv3.1"; Mosquitto accepts it (its log says p3)
  wss   wss://web (no tap: TLS end to end), MQTT 5, both ways

Payloads stay small (TESTING.md: Mosquitto 2.0.11's WebSocket listener sends about 4 KiB per
100 ms). Every message is checked byte for byte and exactly once; the frames the relay sent are
described too (not asserted: Mosquitto takes any framing).
"""
import select
import socket
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import listeners as ls  # noqa: E402

RECO = {"min": 250, "max": 1000}
SPLIT_SIZES = (1, 2, 3, 5, 700, 4096)


# ----------------------------------------------------------------------------------------------
# WebSocket frames and MQTT packet boundaries


def parse_frames(buf):
    """Complete frames at the start of buf: ([(fin, opcode, payload bytes (unmasked), raw
    bytes)], rest)."""
    out = []
    i = 0
    while True:
        if len(buf) - i < 2:
            break
        b0, b1 = buf[i], buf[i + 1]
        n = b1 & 0x7F
        j = i + 2
        if n == 126:
            if len(buf) - j < 2:
                break
            n = struct.unpack(">H", buf[j:j + 2])[0]
            j += 2
        elif n == 127:
            if len(buf) - j < 8:
                break
            n = struct.unpack(">Q", buf[j:j + 8])[0]
            j += 8
        mask = None
        if b1 & 0x80:
            if len(buf) - j < 4:
                break
            mask = buf[j:j + 4]
            j += 4
        if len(buf) - j < n:
            break
        payload = bytes(buf[j:j + n])
        if mask:
            payload = bytes(c ^ mask[k % 4] for k, c in enumerate(payload))
        out.append((bool(b0 & 0x80), b0 & 0x0F, payload, bytes(buf[i:j + n])))
        i = j + n
    return out, buf[i:]


def make_frame(payload, opcode=2, fin=True):
    """A server frame (unmasked)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


def mqtt_packets(data):
    """(start, end, type) of each complete MQTT packet in a byte stream."""
    out = []
    i = 0
    while i < len(data):
        j = i + 1
        mult, n = 1, 0
        while True:
            if j >= len(data):
                return out
            b = data[j]
            n += (b & 0x7F) * mult
            mult *= 128
            j += 1
            if not b & 0x80:
                break
        if j + n > len(data):
            return out
        out.append((i, j + n, data[i] >> 4))
        i = j + n
    return out


def framing(frames):
    """Given the data frames' payloads in order: (packets, packets split across frames, frames
    holding two or more whole packets, largest packet)."""
    bounds = []
    pos = 0
    stream = b""
    for p in frames:
        bounds.append((pos, pos + len(p)))
        pos += len(p)
        stream += p
    pk = mqtt_packets(stream)
    split = sum(1 for s, e, _ in pk if not any(fs <= s and e <= fe for fs, fe in bounds))
    packed = sum(1 for fs, fe in bounds
                 if sum(1 for s, e, _ in pk if fs <= s and e <= fe) >= 2)
    return len(pk), split, packed, max((e - s for s, e, _ in pk), default=0)


# ----------------------------------------------------------------------------------------------
# the tap


class Tap:
    """A TCP proxy in front of a Mosquitto WebSocket listener. Records each connection's HTTP
    request head and the frames both ways; re-frames server-to-client data per mode."""

    def __init__(self, t, name, target_port, mode="pass"):
        self.t = t
        self.name = name
        self.target = target_port
        self.mode = mode
        self.lock = threading.Lock()
        self.conns = []  # dicts: head, c2s (frame payloads from the relay), s2c_out (sent on)
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.stopped = False
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path=""):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        self.stopped = True
        for s in [self.srv] + self.socks:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rec = {"head": None, "c2s": [], "s2c_in": [], "s2c_out": []}
            with self.lock:
                self.conns.append(rec)
                self.socks += [c, u]
            threading.Thread(target=self._c2s, args=(c, u, rec), daemon=True).start()
            threading.Thread(target=self._s2c, args=(u, c, rec), daemon=True).start()

    @staticmethod
    def _close(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _c2s(self, c, u, rec):
        buf = b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                u.sendall(d)
                buf += d
                if rec["head"] is None:
                    k = buf.find(b"\r\n\r\n")
                    if k < 0:
                        continue
                    rec["head"] = buf[:k].decode("latin-1")
                    buf = buf[k + 4:]
                frames, buf = parse_frames(buf)
                with self.lock:
                    rec["c2s"] += [p for fin, op, p, raw in frames if op in (0, 1, 2)]
        except OSError:
            pass
        self._close(c, u)

    def _emit(self, c, rec, data):
        """Sends data (MQTT bytes) to the relay in frames per mode."""
        out = []
        if self.mode == "split":
            k = rec.setdefault("k", 0)
            i = 0
            while i < len(data):
                n = SPLIT_SIZES[k % len(SPLIT_SIZES)]
                k += 1
                out.append(data[i:i + n])
                i += n
            rec["k"] = k
        else:
            out.append(data)
        c.sendall(b"".join(make_frame(p) for p in out))
        with self.lock:
            rec["s2c_out"] += out

    def _s2c(self, u, c, rec):
        buf = b""
        head_done = False
        pending = b""
        since = 0.0
        try:
            while True:
                wait = 0.03 if (self.mode == "pack" and pending) else None
                r, _, _ = select.select([u], [], [], wait)
                if not r:
                    # pack: nothing more within 30 ms. Send once two whole packets are
                    # waiting, or a lone one after 200 ms (CONNACK, SUBACK, PINGRESP...)
                    if (len(mqtt_packets(pending)) >= 2 or
                            time.monotonic() - since >= 0.2):
                        self._emit(c, rec, pending)
                        pending = b""
                    continue
                d = u.recv(65536)
                if not d:
                    break
                if not head_done:
                    buf += d
                    k = buf.find(b"\r\n\r\n")
                    if k < 0:
                        continue
                    c.sendall(buf[:k + 4])
                    head_done = True
                    d = buf[k + 4:]
                    buf = b""
                if self.mode == "pass":
                    c.sendall(d)
                buf += d
                frames, buf = parse_frames(buf)
                for fin, op, p, raw in frames:
                    with self.lock:
                        if op in (0, 1, 2):
                            rec["s2c_in"].append(p)
                            if self.mode == "pass":
                                rec["s2c_out"].append(p)
                    if self.mode == "pass":
                        continue
                    if op >= 8:  # control frames go on as they came
                        c.sendall(raw)
                    elif self.mode == "split":
                        self._emit(c, rec, p)
                    else:
                        if not pending:
                            since = time.monotonic()
                        pending += p
                if self.mode == "pack" and len(pending) > 256 * 1024:
                    self._emit(c, rec, pending)
                    pending = b""
        except OSError:
            pass
        self._close(c, u)

    def heads(self):
        with self.lock:
            return [r["head"] for r in self.conns if r["head"]]

    def stats(self, key):
        """framing() of every connection's frames in one direction, summed."""
        tot = [0, 0, 0, 0]
        with self.lock:
            recs = [list(r[key]) for r in self.conns]
        for frames in recs:
            n, s, p, m = framing(frames)
            tot = [tot[0] + n, tot[1] + s, tot[2] + p, max(tot[3], m)]
        return tot


def header(head, name):
    for line in (head or "").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def cross(t, pub, sub, prefix, payloads, what, qos=1, timeout=40):
    expected = []
    for i, payload in enumerate(payloads):
        topic = "%s/m%d" % (prefix, i)
        pub.publish(topic, payload, qos)
        expected.append((topic.encode(), payload))
    pub.wait_published(timeout)
    mine = lambda m: m.topic.startswith(prefix.encode() + b"/")  # noqa: E731
    sub.wait_for(lambda ms: len([m for m in ms if mine(m)]) >= len(expected), timeout)
    d = rt.Delivery(expected, sub.received(mine))
    t.check(not d.missing and not d.unexpected and d.duplicates == 0,
            "%s: %d messages cross byte for byte, once each" % (what, len(expected)),
            d.describe())


def payload(n, seed):
    return bytes((seed * 131 + k * 7 + (k >> 8)) % 256 for k in range(n))


def run(t):
    t.section("brokers, taps, one relay with four WebSocket links and a TLS one")
    certs = ls.make_certs(t)
    web = ls.broker(t, "web", [ls.Ws("ws"), ls.Ws("wss", certs=certs)])
    tls = ls.broker(t, "tls", [ls.Tls("tls", certs)])
    plain = t.broker("plain")
    tap_split = Tap(t, "split", web.ports["ws"], "split")
    tap_pack = Tap(t, "pack", web.ports["ws"], "pack")
    tap_31 = Tap(t, "v31", web.ports["ws"], "pass")
    try:
        run_links(t, certs, web, tls, plain, tap_split, tap_pack, tap_31)
    finally:
        for tp in (tap_split, tap_pack, tap_31):
            tp.stop()


def run_links(t, certs, web, tls, plain, tap_split, tap_pack, tap_31):
    brokers = [
        {"name": "plain", "url": plain.url, "version": "5"},
        {"name": "ws", "url": tap_split.url(), "version": "5", "reconnect": RECO},
        {"name": "wsp", "url": tap_pack.url("/custom/ws/path"), "version": "3.1.1",
         "reconnect": RECO},
        {"name": "ws31", "url": tap_31.url(), "version": "3.1", "client_id": "ws31-relay",
         "reconnect": RECO},
        {"name": "wss", "url": web.url_of("wss"), "version": "5",
         "tls": {"ca_file": certs.path("ca")}, "reconnect": RECO},
        {"name": "tls", "url": tls.url_of("tls"), "version": "5",
         "tls": {"ca_file": certs.path("ca")}, "reconnect": RECO},
        {"name": "wss311", "url": web.url_of("wss"), "version": "3.1.1",
         "tls": {"ca_file": certs.path("ca")}, "reconnect": RECO},
        {"name": "wss31", "url": web.url_of("wss"), "version": "3.1", "client_id": "wss31-relay",
         "tls": {"ca_file": certs.path("ca")}, "reconnect": RECO},
    ]
    routes = [
        {"name": "to-ws", "from": "plain", "to": "ws", "filter": "w/ws/#", "qos": 1},
        {"name": "from-ws", "from": "ws", "to": "plain", "filter": "w/back/#", "qos": 1},
        {"name": "to-wss", "from": "plain", "to": "wss", "filter": "w/wss/#", "qos": 1},
        {"name": "from-wss", "from": "wss", "to": "plain", "filter": "w/wssback/#", "qos": 1},
        {"name": "to-31", "from": "plain", "to": "ws31", "filter": "w/31/#", "qos": 1},
        {"name": "from-31", "from": "ws31", "to": "plain", "filter": "w/31back/#", "qos": 1},
        # the mixed pair: 3.1.1 over WebSocket <-> 5.0 over TLS, both ways
        {"name": "mix-up", "from": "wsp", "to": "tls", "filter": "mix/up/#", "qos": 1},
        {"name": "mix-down", "from": "tls", "to": "wsp", "filter": "mix/down/#", "qos": 1},
        {"name": "to-wss311", "from": "plain", "to": "wss311", "filter": "w/wss311/#", "qos": 1},
        {"name": "from-wss311", "from": "wss311", "to": "plain", "filter": "w/wss311back/#",
         "qos": 1},
        {"name": "to-wss31", "from": "plain", "to": "wss31", "filter": "w/wss31/#", "qos": 1},
        {"name": "from-wss31", "from": "wss31", "to": "plain", "filter": "w/wss31back/#",
         "qos": 1},
    ]
    relay = t.relay(relay={"id": "ws-it"}, brokers=brokers, routes=routes)
    relay.wait_ready({"plain": plain, "ws": web, "wsp": web, "ws31": web, "wss": web,
                      "tls": tls, "wss311": web, "wss31": web}, timeout=30)

    t.section("upgrade requests: path and subprotocol")
    hs = tap_split.heads()
    t.check(hs and hs[0].startswith("GET /mqtt HTTP/1.1"),
            "ws:// without a path asks for /mqtt", repr(hs[:1]))
    t.check(header(hs[0], "Sec-WebSocket-Protocol") == "mqtt",
            "MQTT 5 over WebSocket: subprotocol \"mqtt\"", repr(hs[0]))
    hp = tap_pack.heads()
    t.check(hp and hp[0].startswith("GET /custom/ws/path HTTP/1.1"),
            "ws://host:port/custom/ws/path asks for /custom/ws/path", repr(hp[:1]))
    t.check(header(hp[0], "Sec-WebSocket-Protocol") == "mqtt",
            "MQTT 3.1.1 over WebSocket: subprotocol \"mqtt\"", repr(hp[0]))
    h3 = tap_31.heads()
    t.check(h3 and header(h3[0], "Sec-WebSocket-Protocol") == "mqttv3.1",
            "MQTT 3.1 over WebSocket: subprotocol \"mqttv3.1\"", repr(h3[:1]))
    t.note("upgrade request of the 3.1 link:\n        " + h3[0].replace("\r\n", "\n        "))
    lines = [l for l in web.log_lines() if "as ws31-relay " in l]
    t.check(any("(p1," in l for l in lines),
            "Mosquitto accepts \"mqttv3.1\": its log shows the 3.1 client (p1: Mosquitto numbers 3.1, 3.1.1, 5 as p1, p2, p5)", repr(lines))
    t.note("Mosquitto: %s" % (lines[0] if lines else "?"))
    lines = [l for l in web.log_lines() if "as ws-it-wsp " in l]
    t.check(any("(p2," in l for l in lines), "the 3.1.1 WebSocket link is p2 in Mosquitto's log",
            repr(lines))

    p_pub = t.client(plain, "5")
    p_sub = t.client(plain, "5").subscribe("w/#", 1)
    w_pub = t.client(web, "5")
    w_sub = t.client(web, "5").subscribe("w/#", 1).subscribe("mix/#", 1)

    t.section("ws:// (MQTT 5), frames split anywhere on the way in; ~10 KiB payloads")
    small = [payload(n, i) for i, n in enumerate((0, 1, 2, 127, 128, 300, 16383, 16384))]
    big = [payload(10 * 1024 + i, 100 + i) for i in range(3)]
    cross(t, p_pub, w_sub, "w/ws", small + big, "plain -> ws:// (relay sends)")
    cross(t, w_pub, p_sub, "w/back", small + big, "ws:// -> plain (relay receives split frames)")
    n, split, packed, largest = tap_split.stats("s2c_out")
    t.check(split >= len(small + big),
            "the relay received %d MQTT packets, %d of them split across WebSocket frames "
            "(largest %d bytes), and put every one back together" % (n, split, largest))
    n_in, split_in, packed_in, _ = tap_split.stats("s2c_in")
    t.note("Mosquitto's own framing toward the relay: %d packets, %d split across frames, "
           "%d frames with several packets" % (n_in, split_in, packed_in))
    n, split, packed, largest = tap_split.stats("c2s")
    t.note("the relay's framing toward Mosquitto: %d packets, %d split across frames, %d frames "
           "with several packets, largest packet %d bytes" % (n, split, packed, largest))

    t.section("ws://host/custom/ws/path (MQTT 3.1.1): several packets per frame; mixed pair")
    t_pub = t.client(tls, "5")
    t_sub = t.client(tls, "5").subscribe("mix/#", 1)
    burst = [b"burst %03d " % i + payload(20 + i % 40, i) for i in range(150)]
    cross(t, w_pub, t_sub, "mix/up", burst,
          "3.1.1 over WebSocket -> 5.0 over TLS, a burst (relay receives packed frames)")
    n, split, packed, largest = tap_pack.stats("s2c_out")
    t.check(packed >= 1,
            "the relay received WebSocket frames with several MQTT packets in one (%d such "
            "frames for %d packets)" % (packed, n))
    cross(t, t_pub, w_sub, "mix/down", burst + [payload(6000, 7)],
          "5.0 over TLS -> 3.1.1 over WebSocket")
    cross(t, w_pub, t_sub, "mix/up/late", [payload(9000, 9), b"", b"x"],
          "3.1.1 over WebSocket -> 5.0 over TLS, odd sizes")

    t.section("ws:// MQTT 3.1 (mqttv3.1) and wss:// at MQTT 5, 3.1.1 and 3.1")
    cross(t, p_pub, w_sub, "w/31", small[:6], "plain -> ws:// MQTT 3.1")
    cross(t, w_pub, p_sub, "w/31back", small[:6], "ws:// MQTT 3.1 -> plain")
    cross(t, p_pub, w_sub, "w/wss", small + big[:1], "plain -> wss://")
    cross(t, w_pub, p_sub, "w/wssback", small + big[:1], "wss:// -> plain")
    cross(t, p_pub, w_sub, "w/wss311", small[:6], "plain -> wss:// MQTT 3.1.1")
    cross(t, w_pub, p_sub, "w/wss311back", small[:6], "wss:// MQTT 3.1.1 -> plain")
    cross(t, p_pub, w_sub, "w/wss31", small[:6], "plain -> wss:// MQTT 3.1")
    cross(t, w_pub, p_sub, "w/wss31back", small[:6], "wss:// MQTT 3.1 -> plain")

    relay.check_alive()
    bad = [l for l in relay.log_lines() if " ERROR " in l or
           (" WARN " in l and any(" %s#0: " % b in l
                                  for b in ("ws", "wsp", "ws31", "wss", "wss311", "wss31")))]
    t.check(not bad, "no WARN or ERROR for the WebSocket links", "\n".join(bad[:10]))
    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
