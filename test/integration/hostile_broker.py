"""hostile_broker: a fake MQTT broker for tests that accepts the relay's connection and then
misbehaves on cue. Standard library only (threads); run with /usr/bin/python3.

It answers CONNECT with CONNACK in the version of the CONNECT and SUBSCRIBE with SUBACK, like a
broker, and records everything the relay sends: each connection (Conn) with its open and close
times, client id, protocol version, CONNECT properties, every packet (type, flags, fields), the
reason code of a DISCONNECT, and who closed the link.

Scenarios (SCENARIOS below): the misbehaviour happens on every connection while the broker is
armed (arm()/disarm(); armed from the start unless armed=False), either in the CONNACK or as
soon as the relay is set up: after the first SUBACK in the role "source" (the relay subscribes
here), after the CONNACK in the role "dest" (the relay only publishes here).

    long_varint        a packet whose Remaining Length has 5 bytes           relay: 0x81
    bad_utf8_topic     PUBLISH with an ill-formed UTF-8 topic                 relay: 0x81
    wildcard_topic     PUBLISH whose topic name holds '+'                     relay: 0x90
    dup_prop_connack   CONNACK (5.0) with Receive Maximum twice               relay: 0x82
    unknown_puback     PUBACK for a packet id the relay never used           relay: 0x82
    too_large          PUBLISH over the relay's announced Maximum Packet Size relay: 0x95
    truncated          half a PUBLISH, then the broker closes                 (no DISCONNECT)
    over_receive_max   QoS 1/2 PUBLISHes past the relay's Receive Maximum,
                       all at once (the relay should hold them back)
    silence            never answers PINGREQ (nor anything else)              (no DISCONNECT)
    receive_max_1      CONNACK with Receive Maximum 1; acks slowly; counts
                       every time the relay had 2 unacknowledged PUBLISHes
    flood              QoS 0 and QoS 1 PUBLISHes as fast as the socket takes
                       them (QoS 1 within the relay's Receive Maximum)
    reason_codes       (5.0, role dest) answers a QoS 1/2 PUBLISH whose topic has a level
                       "rc-XX" with PUBACK / PUBREC reason code 0xXX (hex) the first
                       answer_times times that message (topic and payload) arrives, then 0x00;
                       every answer is recorded in Conn.answers as (topic, payload, code, dup)
    normal             behaves (the default while disarmed)

As a program: hostile_broker.py --scenario NAME [--role source|dest] [--port P]; it prints what
it records, one line per event, until interrupted.
"""

import argparse
import collections
import itertools
import socket
import struct
import threading
import time

# ----------------------------------------------------------------------------------------------
# MQTT wire format (enough for a broker facing a client, and for fault_proxy's packet counting)

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15)
TYPE_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
              7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
              12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}

V31, V311, V5 = 3, 4, 5

# MQTT 5 property identifiers and their value types
P_PAYLOAD_FORMAT, P_MESSAGE_EXPIRY, P_CONTENT_TYPE = 0x01, 0x02, 0x03
P_RESPONSE_TOPIC, P_CORRELATION, P_SUB_ID, P_SESSION_EXPIRY = 0x08, 0x09, 0x0B, 0x11
P_ASSIGNED_CLIENT_ID, P_SERVER_KEEP_ALIVE, P_AUTH_METHOD, P_AUTH_DATA = 0x12, 0x13, 0x15, 0x16
P_REQ_PROBLEM, P_WILL_DELAY, P_REQ_RESPONSE, P_RESPONSE_INFO = 0x17, 0x18, 0x19, 0x1A
P_SERVER_REF, P_REASON_STRING, P_RECEIVE_MAX, P_TOPIC_ALIAS_MAX = 0x1C, 0x1F, 0x21, 0x22
P_TOPIC_ALIAS, P_MAX_QOS, P_RETAIN_AVAIL, P_USER, P_MAX_PACKET = 0x23, 0x24, 0x25, 0x26, 0x27
P_WILDCARD_AVAIL, P_SUB_ID_AVAIL, P_SHARED_AVAIL = 0x28, 0x29, 0x2A

_PROP_TYPES = {}
for _i in (0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A):
    _PROP_TYPES[_i] = "byte"
for _i in (0x13, 0x21, 0x22, 0x23):
    _PROP_TYPES[_i] = "u16"
for _i in (0x02, 0x11, 0x18, 0x27):
    _PROP_TYPES[_i] = "u32"
_PROP_TYPES[0x0B] = "varint"
for _i in (0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F):
    _PROP_TYPES[_i] = "str"
for _i in (0x09, 0x16):
    _PROP_TYPES[_i] = "bin"
_PROP_TYPES[0x26] = "pair"


class WireError(Exception):
    """Bytes that are not MQTT as the relay should send it."""


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf, off):
    """(value, new offset); WireError if longer than 4 bytes or cut short."""
    mult, val = 1, 0
    for i in range(4):
        if off + i >= len(buf):
            raise WireError("varint cut short")
        b = buf[off + i]
        val += (b & 0x7F) * mult
        if not b & 0x80:
            return val, off + i + 1
        mult *= 128
    raise WireError("varint longer than 4 bytes")


def frame_check(buf):
    """Length of the first whole packet in buf, 0 if more bytes are needed."""
    if len(buf) < 2:
        return 0
    mult, val = 1, 0
    for i in range(1, 5):
        if i >= len(buf):
            return 0
        b = buf[i]
        val += (b & 0x7F) * mult
        if not b & 0x80:
            total = i + 1 + val
            return total if len(buf) >= total else 0
        mult *= 128
    raise WireError("remaining length longer than 4 bytes")


def u16(n):
    return struct.pack(">H", n)


def mstr(b):
    if isinstance(b, str):
        b = b.encode()
    return u16(len(b)) + b


def packet(type_, flags, body):
    return bytes([(type_ << 4) | flags]) + varint(len(body)) + body


def prop(pid, value):
    """One MQTT 5 property (its identifier picks the value type)."""
    t = _PROP_TYPES[pid]
    if t == "byte":
        return bytes([pid, value])
    if t == "u16":
        return bytes([pid]) + u16(value)
    if t == "u32":
        return bytes([pid]) + struct.pack(">I", value)
    if t == "varint":
        return bytes([pid]) + varint(value)
    if t in ("str", "bin"):
        return bytes([pid]) + mstr(value)
    return bytes([pid]) + mstr(value[0]) + mstr(value[1])


def props_block(*items):
    body = b"".join(items)
    return varint(len(body)) + body


def parse_props(buf, off):
    """({id: [values]}, new offset)."""
    n, off = read_varint(buf, off)
    end = off + n
    if end > len(buf):
        raise WireError("properties overrun the packet")
    out = collections.defaultdict(list)
    while off < end:
        pid = buf[off]
        off += 1
        t = _PROP_TYPES.get(pid)
        if t is None:
            raise WireError("unknown property 0x%02x" % pid)
        if t == "byte":
            v = buf[off]
            off += 1
        elif t == "u16":
            v = struct.unpack_from(">H", buf, off)[0]
            off += 2
        elif t == "u32":
            v = struct.unpack_from(">I", buf, off)[0]
            off += 4
        elif t == "varint":
            v, off = read_varint(buf, off)
        elif t in ("str", "bin"):
            ln = struct.unpack_from(">H", buf, off)[0]
            v = bytes(buf[off + 2:off + 2 + ln])
            off += 2 + ln
        else:
            ln = struct.unpack_from(">H", buf, off)[0]
            k = bytes(buf[off + 2:off + 2 + ln])
            off += 2 + ln
            ln = struct.unpack_from(">H", buf, off)[0]
            v = (k, bytes(buf[off + 2:off + 2 + ln]))
            off += 2 + ln
        out[pid].append(v)
    if off != end:
        raise WireError("property block length mismatch")
    return dict(out), end


def _str(buf, off):
    if off + 2 > len(buf):
        raise WireError("string length cut short")
    ln = struct.unpack_from(">H", buf, off)[0]
    if off + 2 + ln > len(buf):
        raise WireError("string overruns the packet")
    return bytes(buf[off + 2:off + 2 + ln]), off + 2 + ln


Packet = collections.namedtuple("Packet", "t type flags info raw")
# info: a dict of the fields that matter to tests (see decode())


def decode(pkt, version):
    """Decodes one whole packet the relay sent: a dict of fields. version is the connection's
    (CONNECT is decoded whatever it is)."""
    t = pkt[0] >> 4
    flags = pkt[0] & 0x0F
    _, off = read_varint(pkt, 1)
    body_start = off
    info = {"type": TYPE_NAMES.get(t, "type%d" % t)}
    if t == CONNECT:
        name, off = _str(pkt, off)
        level = pkt[off]
        cflags = pkt[off + 1]
        keepalive = struct.unpack_from(">H", pkt, off + 2)[0]
        off += 4
        v = level & 0x7F
        info.update(protocol=name, version=v, bridge=bool(level & 0x80),
                    clean=bool(cflags & 0x02), keepalive=keepalive, props={})
        if v == V5:
            info["props"], off = parse_props(pkt, off)
        cid, off = _str(pkt, off)
        info["client_id"] = cid
        if cflags & 0x04:
            if v == V5:
                info["will_props"], off = parse_props(pkt, off)
            info["will_topic"], off = _str(pkt, off)
            info["will_payload"], off = _str(pkt, off)
            info["will_qos"] = (cflags >> 3) & 3
            info["will_retain"] = bool(cflags & 0x20)
        if cflags & 0x80:
            info["username"], off = _str(pkt, off)
        if cflags & 0x40:
            info["password"], off = _str(pkt, off)
    elif t == PUBLISH:
        qos = (flags >> 1) & 3
        info.update(dup=bool(flags & 8), qos=qos, retain=bool(flags & 1))
        info["topic"], off = _str(pkt, off)
        info["pid"] = 0
        if qos:
            info["pid"] = struct.unpack_from(">H", pkt, off)[0]
            off += 2
        info["props"] = {}
        if version == V5:
            info["props"], off = parse_props(pkt, off)
        info["payload"] = bytes(pkt[off:])
    elif t in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        info["pid"] = struct.unpack_from(">H", pkt, off)[0]
        off += 2
        info["code"] = pkt[off] if version == V5 and off < len(pkt) else 0
    elif t in (SUBSCRIBE, UNSUBSCRIBE):
        info["pid"] = struct.unpack_from(">H", pkt, off)[0]
        off += 2
        info["props"] = {}
        if version == V5:
            info["props"], off = parse_props(pkt, off)
        subs = []
        while off < len(pkt):
            f, off = _str(pkt, off)
            if t == SUBSCRIBE:
                subs.append((f, pkt[off]))
                off += 1
            else:
                subs.append((f, None))
        info["subs"] = subs
    elif t == DISCONNECT:
        info["code"] = pkt[off] if version == V5 and off < len(pkt) else 0
        info["props"] = {}
        if version == V5 and off + 1 < len(pkt):
            info["props"], _ = parse_props(pkt, off + 1)
    info["body_len"] = len(pkt) - body_start
    return info


# builders for what a broker sends

def connack(version, code=0, session_present=False, props=b""):
    if version == V5:
        return packet(CONNACK, 0, bytes([1 if session_present else 0, code]) +
                      varint(len(props)) + props)
    return packet(CONNACK, 0, bytes([1 if session_present else 0, code]))


def suback(version, pid, codes):
    body = u16(pid) + (b"\x00" if version == V5 else b"") + bytes(codes)
    return packet(SUBACK, 0, body)


def unsuback(version, pid, n):
    if version == V5:
        return packet(UNSUBACK, 0, u16(pid) + b"\x00" + bytes(n))
    return packet(UNSUBACK, 0, u16(pid))


def publish(version, topic, payload, qos=0, pid=0, dup=False, retain=False, props=b""):
    if isinstance(topic, str):
        topic = topic.encode()
    body = mstr(topic) + (u16(pid) if qos else b"")
    if version == V5:
        body += varint(len(props)) + props
    body += payload
    flags = (8 if dup else 0) | (qos << 1) | (1 if retain else 0)
    return packet(PUBLISH, flags, body)


def ack(type_, pid, version=V311, code=0):
    flags = 2 if type_ == PUBREL else 0
    if version == V5 and code:
        return packet(type_, flags, u16(pid) + bytes([code]))
    return packet(type_, flags, u16(pid))


def pingresp():
    return b"\xd0\x00"


def disconnect(version, code=0):
    if version == V5:
        return packet(DISCONNECT, 0, bytes([code, 0]))
    return b"\xe0\x00"


class Stream:
    """Splits a byte stream into packets (fault_proxy uses it on both directions)."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            n = frame_check(self.buf)
            if not n:
                return out
            out.append(bytes(self.buf[:n]))
            del self.buf[:n]


# ----------------------------------------------------------------------------------------------
# the broker

SCENARIOS = ("normal", "long_varint", "bad_utf8_topic", "wildcard_topic", "dup_prop_connack",
             "unknown_puback", "too_large", "truncated", "over_receive_max", "silence",
             "receive_max_1", "flood", "reason_codes")

# misbehaviours in the CONNACK itself
_AT_CONNACK = ("dup_prop_connack", "receive_max_1")


class Conn:
    """One connection from the relay, as the broker saw it."""

    def __init__(self, index, sock, peer):
        self.index = index
        self.sock = sock
        self.peer = peer
        self.t_open = time.monotonic()
        self.t_close = None
        self.closed_by = None        # "relay" (EOF / reset from it) or "broker"
        self.close_error = None
        self.version = None
        self.client_id = None
        self.connect = None          # the decoded CONNECT
        self.scenario = None         # what this connection did (None: normal)
        self.misbehaved_at = None    # time of the misbehaviour
        self.packets = []            # Packet(t, type, flags, info, raw) from the relay
        self.disconnect_code = None  # reason code of the relay's DISCONNECT (0 for 3.x)
        self.setup_done = False      # CONNACK sent (dest) / first SUBACK sent (source)
        self.wlock = threading.Lock()
        # outgoing QoS 1 (flood): pid -> number, acked numbers
        self.out_q1 = {}
        self.acked = set()
        self.sent_q0 = 0
        self.sent_q1 = []
        # receive_max_1 / receive maximum accounting for PUBLISHes from the relay
        self.unacked = set()         # pids we have not finished acknowledging
        self.max_unacked = 0
        self.violations = []         # (pid, unacked set) when the relay went past our maximum
        self.alive = True
        self.answers = []            # reason_codes: (topic, payload, code, dup) per answer

    @property
    def open(self):
        return self.t_close is None

    def max_packet(self):
        """The Maximum Packet Size the relay announced (5.0), or None."""
        if self.connect:
            v = self.connect.get("props", {}).get(P_MAX_PACKET)
            return v[0] if v else None
        return None

    def receive_max(self):
        if self.connect:
            v = self.connect.get("props", {}).get(P_RECEIVE_MAX)
            return v[0] if v else 65535
        return 65535

    def types(self):
        return [p.type for p in self.packets]

    def publishes(self):
        return [p.info for p in self.packets if p.type == "PUBLISH"]

    def __repr__(self):
        return ("Conn#%d(%s v%s %s, %d packets, disconnect=%s, closed_by=%s)"
                % (self.index, self.client_id, self.version, self.scenario or "normal",
                   len(self.packets), self.disconnect_code, self.closed_by))


class HostileBroker:
    """A fake broker on 127.0.0.1:port. role "source": the relay subscribes here (misbehaves
    after the first SUBACK); "dest": the relay publishes here (misbehaves after CONNACK).

    Options: max_packet (too_large when the relay announces none: 3.x), ack_delay (seconds
    before acknowledging a PUBLISH in receive_max_1), flood_payload (bytes per message),
    flood_q0_per_q1 (QoS 0 messages between two QoS 1), over_rm_burst (PUBLISHes sent at once
    in over_receive_max), over_rm_qos (their QoS; None: 1 and 2 alternating), topic_prefix
    (topics this broker publishes on: PREFIX/...), hold_open (seconds the broker keeps a misbehaving link open waiting for the relay to close
    it before closing it itself), answer_times (reason_codes: how many times a message gets its
    code before 0x00), log (a function taking a line)."""

    def __init__(self, scenario="normal", role="source", name="hostile", port=0, armed=True,
                 max_packet=None, ack_delay=0.05, flood_payload=64, flood_q0_per_q1=4,
                 over_rm_burst=1000, over_rm_qos=None, topic_prefix="h", hold_open=30.0,
                 log=None, answer_times=1):
        if scenario not in SCENARIOS:
            raise ValueError("unknown scenario %r (one of %s)" % (scenario, ", ".join(SCENARIOS)))
        self.scenario = scenario
        self.role = role
        self.name = name
        self.armed = armed
        self.max_packet = max_packet
        self.ack_delay = ack_delay
        self.flood_payload = flood_payload
        self.flood_q0_per_q1 = flood_q0_per_q1
        self.over_rm_burst = over_rm_burst
        self.over_rm_qos = over_rm_qos
        self.topic_prefix = topic_prefix
        self.hold_open = hold_open
        self.answer_times = answer_times
        self._answered = collections.Counter()  # reason_codes: (topic, payload) -> answers
        self._log = log
        self.lock = threading.Lock()
        self.conns = []
        self.events = []             # (t, text)
        self.flooding = threading.Event()
        self.stopping = threading.Event()
        self._numbers = itertools.count()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.thread = None

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    def log(self, text):
        with self.lock:
            self.events.append((time.monotonic(), text))
        if self._log:
            self._log("%s: %s" % (self.name, text))

    # ---------------------------------------------------------------- control
    def start(self):
        self.thread = threading.Thread(target=self._accept, name="hb-" + self.name, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.flooding.clear()
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in self.snapshot():
            self._close(c, "broker")

    def arm(self, scenario=None):
        """Misbehave from now on. A misbehaviour that happens after setup is done at once on the
        live connection; one that lives in the CONNACK needs a new connection, so the broker
        closes the live one (the relay reconnects into it)."""
        with self.lock:
            if scenario is not None:
                self.scenario = scenario
            self.armed = True
            live = [c for c in self.conns if c.open]
        self.log("armed: %s" % self.scenario)
        for c in live:
            if self.scenario in _AT_CONNACK:
                self._close(c, "broker")
            elif c.setup_done and c.scenario is None:
                self._misbehave(c)

    def disarm(self):
        with self.lock:
            self.armed = False
        self.flooding.clear()
        self.log("disarmed")

    def start_flood(self):
        """flood: start on the live connection (and on each new one until stop_flood())."""
        self.flooding.set()
        c = self.live()
        if c is not None:
            self._flood_thread(c)

    def stop_flood(self):
        self.flooding.clear()

    # ---------------------------------------------------------------- queries
    def snapshot(self):
        with self.lock:
            return list(self.conns)

    def live(self):
        """The open connection whose setup is done, or None."""
        for c in reversed(self.snapshot()):
            if c.open and c.setup_done:
                return c
        return None

    def misbehaved(self, since=0.0):
        """Connections on which the misbehaviour happened (after time since)."""
        return [c for c in self.snapshot() if c.misbehaved_at is not None
                and c.t_open >= since]

    def wait(self, pred, timeout, interval=0.05):
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v or time.monotonic() >= deadline:
                return v
            time.sleep(interval)

    def publish(self, topic, payload, qos=0):
        """A well-formed PUBLISH on the live connection (QoS 1: acknowledged by the relay ->
        conn.acked gets its number). Returns the packet id (0 for QoS 0) or None if no link."""
        c = self.live()
        if c is None:
            return None
        n = next(self._numbers)
        pid = 0
        if qos:
            pid = self._pid(c)
            c.out_q1[pid] = n
        self._send(c, publish(c.version, topic, payload, qos, pid))
        return pid

    # ---------------------------------------------------------------- internals
    def _accept(self):
        while not self.stopping.is_set():
            try:
                s, peer = self.lsock.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                c = Conn(len(self.conns), s, peer)
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), name="hb-%s-%d" % (self.name,
                                                                              c.index),
                             daemon=True).start()

    def _send(self, c, data):
        if not c.alive:
            return False
        try:
            with c.wlock:
                c.sock.sendall(data)
            return True
        except OSError as e:
            c.close_error = c.close_error or str(e)
            return False

    def _close(self, c, by):
        with self.lock:
            if c.t_close is not None:
                return
            c.t_close = time.monotonic()
            c.closed_by = by
            c.alive = False
        try:
            c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            c.sock.close()
        except OSError:
            pass
        self.log("conn %d closed by %s%s" % (c.index, by, " (%s)" % c.close_error
                                              if c.close_error else ""))

    def _pid(self, c):
        for _ in range(65535):
            c.next_pid = getattr(c, "next_pid", 0) % 65535 + 1
            if c.next_pid not in c.out_q1:
                return c.next_pid
        raise RuntimeError("no free packet id")

    def _serve(self, c):
        st = Stream()
        try:
            c.sock.settimeout(None)
            while True:
                try:
                    data = c.sock.recv(65536)
                except OSError as e:
                    c.close_error = str(e)
                    data = b""
                if not data:
                    self._close(c, "relay" if c.alive else c.closed_by)
                    return
                try:
                    pkts = st.feed(data)
                except WireError as e:
                    self.log("conn %d: relay sent bad bytes: %s" % (c.index, e))
                    self._close(c, "broker")
                    return
                for raw in pkts:
                    self._handle(c, raw)
                    if not c.alive:
                        return
        finally:
            if c.alive:
                self._close(c, "broker")

    def _handle(self, c, raw):
        t = raw[0] >> 4
        try:
            info = decode(raw, c.version if c.version else V311)
        except (WireError, IndexError, struct.error) as e:
            self.log("conn %d: cannot decode %s: %s" % (c.index, TYPE_NAMES.get(t, t), e))
            info = {"type": TYPE_NAMES.get(t, "type%d" % t), "error": str(e)}
        c.packets.append(Packet(time.monotonic(), info["type"], raw[0] & 0x0F, info, raw))
        if t == CONNECT:
            self._on_connect(c, info)
        elif t == SUBSCRIBE:
            codes = [min(o & 3, 2) for _, o in info.get("subs", [])]
            self._send(c, suback(c.version, info["pid"], codes))
            if not c.setup_done:
                c.setup_done = True
                if self.role == "source":
                    self._after_setup(c)
        elif t == UNSUBSCRIBE:
            self._send(c, unsuback(c.version, info["pid"], len(info.get("subs", []))))
        elif t == PUBLISH:
            self._on_publish(c, info)
        elif t == PUBREL:
            if c.scenario == "receive_max_1":
                self._later(c, ack(PUBCOMP, info["pid"], c.version), release=info["pid"])
            else:
                c.unacked.discard(info["pid"])
                self._send(c, ack(PUBCOMP, info["pid"], c.version))
        elif t in (PUBACK, PUBREC, PUBCOMP):
            n = c.out_q1.get(info["pid"])
            if t == PUBREC:
                self._send(c, ack(PUBREL, info["pid"], c.version))
            elif n is not None:
                c.acked.add(n)
                del c.out_q1[info["pid"]]
        elif t == PINGREQ:
            if c.scenario != "silence":
                self._send(c, pingresp())
        elif t == DISCONNECT:
            c.disconnect_code = info.get("code", 0)
            self.log("conn %d: DISCONNECT 0x%02x from the relay" % (c.index, c.disconnect_code))

    def _on_connect(self, c, info):
        c.connect = info
        c.version = info.get("version", V311)
        c.client_id = info.get("client_id", b"").decode("utf-8", "replace")
        with self.lock:
            armed = self.armed
            scenario = self.scenario
        if armed and scenario != "normal":
            c.scenario = scenario
        v = c.version
        self.log("conn %d: CONNECT %s v%d (%s)" % (c.index, c.client_id, v,
                                                   c.scenario or "normal"))
        props = b""
        if c.scenario == "dup_prop_connack" and v == V5:
            props = prop(P_RECEIVE_MAX, 10) + prop(P_RECEIVE_MAX, 20)
            c.misbehaved_at = time.monotonic()
        elif c.scenario == "receive_max_1" and v == V5:
            props = prop(P_RECEIVE_MAX, 1)
            c.misbehaved_at = time.monotonic()
        elif c.scenario == "dup_prop_connack":
            # 3.x CONNACK has no properties: the same idea is a second CONNACK
            c.misbehaved_at = time.monotonic()
            self._send(c, connack(v) + connack(v))
            c.setup_done = True
            return
        self._send(c, connack(v, props=props))
        if c.scenario == "dup_prop_connack":
            self._hold(c)
        if self.role == "dest":
            c.setup_done = True
            self._after_setup(c)

    def _on_publish(self, c, info):
        qos, pid = info.get("qos", 0), info.get("pid", 0)
        if not qos:
            return
        new = pid not in c.unacked
        limit = 1 if c.scenario == "receive_max_1" else None
        if new and limit is not None and len(c.unacked) >= limit:
            c.violations.append((pid, sorted(c.unacked)))
            self.log("conn %d: PUBLISH pid %d while %s unacknowledged (Receive Maximum %d)"
                     % (c.index, pid, sorted(c.unacked), limit))
        c.unacked.add(pid)
        c.max_unacked = max(c.max_unacked, len(c.unacked))
        if c.scenario == "receive_max_1":
            if qos == 1:
                self._later(c, ack(PUBACK, pid, c.version), release=pid)
            else:
                self._later(c, ack(PUBREC, pid, c.version))
            return
        if c.scenario == "reason_codes" and c.version == V5:
            code = self._reason_code(info)
            c.answers.append((info.get("topic"), info.get("payload"), code, info.get("dup")))
            if qos == 1 or code >= 0x80:
                c.unacked.discard(pid)  # a refused QoS 2 exchange ends with its PUBREC
            self._send(c, ack(PUBACK if qos == 1 else PUBREC, pid, c.version, code))
            return
        if qos == 1:
            c.unacked.discard(pid)
            self._send(c, ack(PUBACK, pid, c.version))
        else:
            self._send(c, ack(PUBREC, pid, c.version))

    def _reason_code(self, info):
        """reason_codes: the code for this PUBLISH (its topic's "rc-XX" level, answer_times
        times per message, then 0)."""
        topic = info.get("topic") or b""
        code = 0
        for level in topic.split(b"/"):
            if level.startswith(b"rc-") and len(level) == 5:
                try:
                    code = int(level[3:], 16)
                except ValueError:
                    code = 0
        if not code:
            return 0
        key = (topic, info.get("payload"))
        with self.lock:
            self._answered[key] += 1
            n = self._answered[key]
        return code if n <= self.answer_times else 0

    def _later(self, c, data, release=None):
        """Sends data after ack_delay (a timer: the reader keeps reading meanwhile, so a
        PUBLISH that arrives before the acknowledgement went out is seen as such)."""
        def go():
            if release is not None:
                c.unacked.discard(release)
            self._send(c, data)
        # the pid leaves the unacknowledged set just before its acknowledgement is written
        threading.Timer(self.ack_delay, go).start()

    def _hold(self, c):
        """Keeps a misbehaving link open up to hold_open seconds for the relay to close it."""
        def watchdog():
            deadline = time.monotonic() + self.hold_open
            while c.open and time.monotonic() < deadline and not self.stopping.is_set():
                time.sleep(0.05)
            if c.open:
                self.log("conn %d: the relay kept the link open %.0fs; closing it"
                         % (c.index, self.hold_open))
                self._close(c, "broker")
        threading.Thread(target=watchdog, daemon=True).start()

    def _after_setup(self, c):
        if c.scenario is not None and c.scenario not in _AT_CONNACK:
            self._misbehave(c)
        if self.flooding.is_set():
            self._flood_thread(c)

    def _misbehave(self, c):
        s = self.scenario if c.scenario is None else c.scenario
        c.scenario = s
        v = c.version
        p = self.topic_prefix
        c.misbehaved_at = time.monotonic()
        self.log("conn %d: misbehaving: %s" % (c.index, s))
        if s == "long_varint":
            # Remaining Length in 5 bytes [MQTT-1.5.5-1]
            self._send(c, b"\x30\xff\xff\xff\xff\x01" + b"\x00" * 16)
        elif s == "bad_utf8_topic":
            self._send(c, publish(v, p.encode() + b"/bad\xc3\x28utf8", b"x", 0))
        elif s == "wildcard_topic":
            self._send(c, publish(v, p + "/+/wild", b"x", 0))
        elif s == "unknown_puback":
            self._send(c, ack(PUBACK, 4242, v))
        elif s == "too_large":
            limit = c.max_packet() or self.max_packet
            if not limit:
                raise RuntimeError("too_large: the relay announced no Maximum Packet Size; "
                                   "give max_packet=")
            base = len(publish(v, p + "/big", b"", 0))
            self._send(c, publish(v, p + "/big", b"L" * (limit + 64 - base), 0))
        elif s == "truncated":
            whole = publish(v, p + "/cut", b"T" * 200, 1, 7)
            self._send(c, whole[:len(whole) // 2])
            time.sleep(0.05)
            self._close(c, "broker")
            return
        elif s == "over_receive_max":
            # QoS 1 and QoS 2 alternating (over_rm_qos 1 or 2: only that), all at once;
            # c.burst holds (number, qos) in order, c.acked gets each number once PUBACK or
            # PUBCOMP comes back
            data = bytearray()
            c.burst = []
            for i in range(self.over_rm_burst):
                q = self.over_rm_qos or (1 + i % 2)
                pid = self._pid(c)
                n = next(self._numbers)
                c.out_q1[pid] = n
                c.burst.append((n, q))
                data += publish(v, "%s/rm/%d" % (p, n), b"r", q, pid)
            self._send(c, bytes(data))
            return
        elif s == "flood":
            self.start_flood()
            return
        elif s in ("normal", "reason_codes"):
            return
        # silence: nothing to send; the relay notices the missing PINGRESP
        self._hold(c)

    def _flood_thread(self, c):
        with self.lock:
            if getattr(c, "flood_started", False):
                return
            c.flood_started = True
        threading.Thread(target=self._flood, args=(c,), daemon=True,
                         name="hb-flood-%d" % c.index).start()

    def _flood(self, c):
        """QoS 0 and QoS 1 PUBLISHes, numbered in their topics (PREFIX/0/N, PREFIX/1/N), as
        fast as the socket takes them; QoS 1 within the relay's Receive Maximum (QoS 1 waiting
        for window space is skipped, QoS 0 goes on)."""
        v = c.version
        rm = c.receive_max() if v == V5 else 20
        pad = b"f" * max(0, self.flood_payload - 12)
        p = self.topic_prefix
        self.log("conn %d: flood starts (Receive Maximum %d)" % (c.index, rm))
        while c.open and self.flooding.is_set() and not self.stopping.is_set():
            batch = bytearray()
            for _ in range(64):
                for _ in range(self.flood_q0_per_q1):
                    n = next(self._numbers)
                    batch += publish(v, "%s/0/%d" % (p, n), b"%d:" % n + pad, 0)
                    c.sent_q0 += 1
                if len(c.out_q1) < rm:
                    n = next(self._numbers)
                    pid = self._pid(c)
                    c.out_q1[pid] = n
                    c.sent_q1.append(n)
                    batch += publish(v, "%s/1/%d" % (p, n), b"%d:" % n + pad, 1, pid)
            if not self._send(c, bytes(batch)):
                break
        with self.lock:
            c.flood_started = False
        self.log("conn %d: flood stops (%d QoS 0, %d QoS 1 sent, %d acknowledged)"
                 % (c.index, c.sent_q0, len(c.sent_q1), len(c.acked)))


# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="a misbehaving MQTT broker for tests")
    ap.add_argument("--scenario", default="normal", choices=SCENARIOS)
    ap.add_argument("--role", default="source", choices=("source", "dest"))
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--max-packet", type=int, default=None)
    args = ap.parse_args()
    hb = HostileBroker(args.scenario, args.role, port=args.port, max_packet=args.max_packet,
                       log=lambda s: print(s, flush=True))
    hb.start()
    if args.scenario == "flood":
        hb.start_flood()
    print("listening on 127.0.0.1:%d (%s, role %s)" % (hb.port, args.scenario, args.role),
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        hb.stop()
        for c in hb.snapshot():
            print(c, c.types()[:20])


if __name__ == "__main__":
    main()
